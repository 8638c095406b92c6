"""Incremental stream framing: SSE bytes <-> events, and Gemini's streamed JSON array.

Decoders are fed bytes as they arrive, split anywhere, and return the events completed
so far; `close()` flushes what a missing final blank line left open. The SSE decoder is
tolerant the way upstreams need it to be: `\\n`, `\\r\\n` and `\\r` line ends, several
`data:` lines joined with `\\n`, `:` comments and `id:`/`retry:` ignored. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["JSONArrayDecoder", "SSEDecoder", "SSEEvent", "encode_sse"]


@dataclass(frozen=True, slots=True)
class SSEEvent:
    event: str | None
    data: str


def encode_sse(event: SSEEvent) -> bytes:
    """One event as SSE bytes (`event:` only when named), ending in a blank line."""
    head = f"event: {event.event}\n" if event.event is not None else ""
    if "\n" in event.data:
        body = "".join(f"data: {line}\n" for line in event.data.split("\n"))
    else:
        body = f"data: {event.data}\n"
    return (head + body + "\n").encode()


class SSEDecoder:
    """Bytes in, complete SSEEvents out."""

    __slots__ = ("_buffer", "_data", "_event")

    def __init__(self) -> None:
        self._buffer = b""
        self._event: str | None = None
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        buffer = self._buffer + chunk if self._buffer else chunk
        held = b""
        if b"\r" in buffer:
            if buffer[-1] == 0x0D:  # a `\r` at the end: wait to see whether `\n` follows
                buffer, held = buffer[:-1], b"\r"
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        cut = buffer.rfind(b"\n")
        if cut < 0:
            self._buffer = buffer + held
            return []
        self._buffer = buffer[cut + 1 :] + held
        # No UTF-8 sequence spans a line end, so whole lines decode on their own.
        return self._lines(buffer[:cut].decode("utf-8", "replace").split("\n"))

    def close(self) -> list[SSEEvent]:
        rest = self._buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        self._buffer = b""
        lines = rest.decode("utf-8", "replace").split("\n") if rest else []
        lines.append("")
        return self._lines(lines)

    def _lines(self, lines: list[str]) -> list[SSEEvent]:
        events: list[SSEEvent] = []
        data = self._data
        event = self._event
        for line in lines:
            if not line:
                if data:
                    events.append(SSEEvent(event, "\n".join(data)))
                    data = []
                event = None
            elif line.startswith("data:"):
                data.append(line[6:] if line[5:6] == " " else line[5:])
            elif line[0] != ":":
                name, colon, value = line.partition(":")
                if colon and value[:1] == " ":
                    value = value[1:]
                if name == "data":
                    data.append(value)
                elif name == "event":
                    event = value or None
        self._data = data
        self._event = event
        return events


_OPEN = frozenset(b"{[")
_CLOSE = frozenset(b"}]")


class JSONArrayDecoder:
    """A streamed top-level JSON array (`[{...},{...}]`) in, one event per element out.

    Elements are found by bracket depth outside strings; their text is not parsed here.
    """

    __slots__ = ("_depth", "_element", "_escape", "_in_string")

    def __init__(self) -> None:
        self._depth = 0
        self._in_string = False
        self._escape = False
        self._element = bytearray()

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        events: list[SSEEvent] = []
        element = self._element
        for byte in chunk:
            if self._in_string:
                element.append(byte)
                if self._escape:
                    self._escape = False
                elif byte == 0x5C:  # backslash
                    self._escape = True
                elif byte == 0x22:  # quote
                    self._in_string = False
                continue
            if byte in _OPEN:
                self._depth += 1
                if self._depth == 1:
                    continue  # the array itself
            elif byte in _CLOSE:
                self._depth -= 1
                if self._depth == 0:
                    continue
            elif self._depth == 1 and (byte == 0x2C or byte in b" \t\r\n"):
                continue  # separators between elements
            elif byte == 0x22:
                self._in_string = True
            element.append(byte)
            if self._depth == 1 and byte in _CLOSE:
                events.append(SSEEvent(None, element.decode("utf-8", "replace")))
                element.clear()
        return events

    def close(self) -> list[SSEEvent]:
        rest = self._element.decode("utf-8", "replace").strip()
        self._element.clear()
        return [SSEEvent(None, rest)] if rest else []
