"""AWS event-stream framing (application/vnd.amazon.eventstream), decoded incrementally.

A message is: total length (4 bytes, big-endian, the whole message), headers length (4),
CRC32 of those 8 bytes (4), the headers, the payload, and a CRC32 of everything before
it (4). A header is a 1-byte name length, the name, a 1-byte value type and the value.
The decoder is fed bytes split anywhere and returns the messages completed so far; a
bad length or CRC raises EventStreamError. Pure: no I/O.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from uuid import UUID

__all__ = ["EventStreamDecoder", "EventStreamError", "Message", "encode_message"]

HeaderValue = bool | int | bytes | str | UUID

_PRELUDE = 12
_MIN_MESSAGE = _PRELUDE + 4
_MAX_MESSAGE = 16 * 1024 * 1024
_FIXED = {2: ">b", 3: ">h", 4: ">i", 5: ">q", 8: ">q"}  # byte, short, int, long, timestamp


class EventStreamError(ValueError):
    """The bytes are not a valid event stream."""


@dataclass(frozen=True, slots=True)
class Message:
    headers: dict[str, HeaderValue] = field(default_factory=dict)
    payload: bytes = b""

    def header(self, name: str) -> str | None:
        value = self.headers.get(name)
        return value if isinstance(value, str) else None


def _parse_headers(data: bytes) -> dict[str, HeaderValue]:
    headers: dict[str, HeaderValue] = {}
    pos, end = 0, len(data)
    try:
        while pos < end:
            size = data[pos]
            name = data[pos + 1 : pos + 1 + size].decode("utf-8")
            pos += 1 + size
            kind = data[pos]
            pos += 1
            value: HeaderValue
            if kind in (0, 1):
                value = kind == 0
            elif kind in _FIXED:
                fmt = _FIXED[kind]
                width = struct.calcsize(fmt)
                (value,) = struct.unpack_from(fmt, data, pos)
                pos += width
            elif kind in (6, 7):
                (length,) = struct.unpack_from(">H", data, pos)
                raw = data[pos + 2 : pos + 2 + length]
                if len(raw) != length:
                    raise EventStreamError("a header value runs past the headers")
                value = raw.decode("utf-8") if kind == 7 else bytes(raw)
                pos += 2 + length
            elif kind == 9:
                value = UUID(bytes=bytes(data[pos : pos + 16]))
                pos += 16
            else:
                raise EventStreamError(f"unknown header value type {kind}")
            if pos > end:
                raise EventStreamError("a header runs past the headers")
            headers[name] = value
    except (IndexError, struct.error, UnicodeDecodeError, ValueError) as exc:
        if isinstance(exc, EventStreamError):
            raise
        raise EventStreamError("malformed event-stream headers") from None
    return headers


class EventStreamDecoder:
    """Bytes in, complete Messages out."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        """Bytes of an unfinished message (non-zero at the end means a cut stream)."""
        return len(self._buffer)

    def feed(self, chunk: bytes) -> list[Message]:
        buffer = self._buffer
        buffer += chunk
        messages: list[Message] = []
        start = 0
        while len(buffer) - start >= _PRELUDE:
            total, headers_len, prelude_crc = struct.unpack_from(">III", buffer, start)
            if zlib.crc32(buffer[start : start + 8]) != prelude_crc:
                raise EventStreamError("event-stream prelude checksum mismatch")
            if (
                not _MIN_MESSAGE <= total <= _MAX_MESSAGE
                or headers_len > total - _MIN_MESSAGE
            ):
                raise EventStreamError(f"bad event-stream message length {total}")
            if len(buffer) - start < total:
                break
            end = start + total
            (message_crc,) = struct.unpack_from(">I", buffer, end - 4)
            if zlib.crc32(buffer[start : end - 4]) != message_crc:
                raise EventStreamError("event-stream message checksum mismatch")
            body = start + _PRELUDE
            headers = _parse_headers(bytes(buffer[body : body + headers_len]))
            payload = bytes(buffer[body + headers_len : end - 4])
            messages.append(Message(headers, payload))
            start = end
        del buffer[:start]
        return messages


def encode_message(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One message with string headers (what AWS services send for events)."""
    head = bytearray()
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        head += bytes([len(raw_name)]) + raw_name + b"\x07"
        head += struct.pack(">H", len(raw_value)) + raw_value
    total = _PRELUDE + len(head) + len(payload) + 4
    prelude = struct.pack(">II", total, len(head))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    message = prelude + bytes(head) + payload
    return message + struct.pack(">I", zlib.crc32(message))
