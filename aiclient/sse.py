"""Incremental stream framing: SSE bytes <-> events, and Gemini's streamed JSON array.

Decoders are fed bytes as they arrive, split anywhere, and return the events completed
so far; `close()` flushes what a missing final blank line left open. The SSE decoder is
tolerant the way upstreams need it to be: `\\n`, `\\r\\n` and `\\r` line ends, several
`data:` lines joined with `\\n`, `:` comments and `id:`/`retry:` ignored. Pure: no I/O.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["JSONArrayDecoder", "SSEDecoder", "SSEEvent", "encode_sse"]


class SSEEvent(NamedTuple):  # a tuple: built per event, twice (in and out)
    event: str | None
    data: str


# `SSEEvent(event, data)` without the Python-level `__new__` a NamedTuple has: a third
# less, and the decoder builds one per upstream event.
_new_event = tuple.__new__


def encode_sse(event: SSEEvent) -> bytes:
    """One event as SSE bytes (`event:` only when named), ending in a blank line."""
    head = f"event: {event.event}\n" if event.event is not None else ""
    if "\n" in event.data:
        body = "".join(f"data: {line}\n" for line in event.data.split("\n"))
    else:
        body = f"data: {event.data}\n"
    return (head + body + "\n").encode()


_CR = 0x0D


class SSEDecoder:
    """Bytes in, complete SSEEvents out.

    Events end at a blank line, so the decoder keeps only the bytes after the last
    one (`held`: empty between whole events) and parses whole events: the usual shapes
    (`data: ...` alone, or after one `event: ...` line) without going line by line,
    anything else line by line.
    """

    __slots__ = ("held",)

    def __init__(self) -> None:
        self.held = b""

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        # `_CR in chunk`, an integer: with a bytes needle, `in` costs bytes 2-3x as much
        # (it tries the needle as an integer first, raising and clearing a TypeError).
        if not self.held:
            # The usual chunk: whole events, nothing held over, most often one alone.
            if chunk[-2:] == b"\n\n" and _CR not in chunk:
                text: str | None = chunk[:-2].decode("utf-8", "replace")
            elif chunk[-4:] == b"\r\n\r\n" and chunk.find(_CR) == len(chunk) - 4:
                # Google's CRLF framing: no CR before the final blank line
                text = chunk[:-4].decode("utf-8", "replace")
            else:
                text = None
            if text is not None:
                if text.startswith("data: ") and "\n" not in text:  # `_usual`, inlined
                    return [_new_event(SSEEvent, (None, text[6:]))]
                event = _usual(text)  # None for several events (a blank line in text)
                if event is not None:
                    return [event]
                return _events(text.split("\n\n"))
        buffer = self.held + chunk if self.held else chunk
        held = b""
        if _CR in buffer:
            if buffer[-1] == 0x0D:  # a `\r` at the end: wait to see whether `\n` follows
                buffer, held = buffer[:-1], b"\r"
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        cut = buffer.rfind(b"\n\n")
        if cut < 0:
            self.held = buffer + held
            return []
        self.held = buffer[cut + 2 :] + held
        # No UTF-8 sequence spans a line end, so whole events decode on their own.
        return _events(buffer[:cut].decode("utf-8", "replace").split("\n\n"))

    def close(self) -> list[SSEEvent]:
        rest = self.held.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        self.held = b""
        return _events(rest.decode("utf-8", "replace").split("\n\n")) if rest else []


def _events(blocks: list[str]) -> list[SSEEvent]:
    """The events of complete blocks (the text between blank lines)."""
    events: list[SSEEvent] = []
    for block in blocks:
        found = _usual(block) or (_slow(block) if block else None)
        if found is not None:
            events.append(found)
    return events


def _usual(block: str) -> SSEEvent | None:
    """The event of a block in the usual shape (`data: ...` alone, or after one
    `event: ...` line), read without the line loop; None for any other block (so for
    any with a blank line in it)."""
    event: str | None = None
    data = block
    if block.startswith("event: "):
        end = block.find("\n")
        if end > 0:
            event, data = block[7:end] or None, block[end + 1 :]
    if data.startswith("data: ") and "\n" not in data:
        return _new_event(SSEEvent, (event, data[6:]))
    return None


def _slow(block: str) -> SSEEvent | None:
    """One event's lines, as the SSE spec reads them."""
    event: str | None = None
    data: list[str] = []
    for line in block.split("\n"):
        if not line or line[0] == ":":
            continue
        name, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value or None
    return SSEEvent(event, "\n".join(data)) if data else None


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
