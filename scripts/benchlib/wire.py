"""Just enough HTTP/1.1 for the benchmark: request bytes, chunk framing, and an
incremental response parser (Content-Length and chunked bodies, keep-alive)."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["LAST_CHUNK", "ParseError", "ResponseParser", "build_request", "chunk"]

LAST_CHUNK = b"0\r\n\r\n"
_MAX_HEAD = 64 * 1024

# Parser states.
_HEAD, _BODY, _SIZE, _DATA, _DATA_END, _TRAILER, _DONE = range(7)


class ParseError(Exception):
    """The peer sent something that is not a well-framed HTTP/1.1 response."""


def chunk(data: bytes) -> bytes:
    """`data` framed as one chunk of a chunked transfer-encoded body."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def build_request(
    method: str, path: str, host: str, headers: Mapping[str, str], body: bytes
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines.extend(f"{name}: {value}" for name, value in headers.items())
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class ResponseParser:
    """Feeds on bytes as they arrive; `feed` returns True once a response is whole.

    `body` holds the decoded body (chunk framing removed). `reset` readies the parser
    for the next response on the same connection.
    """

    __slots__ = (
        "_buf",
        "_remaining",
        "_state",
        "body",
        "body_started",
        "keep_alive",
        "status",
    )

    def __init__(self) -> None:
        self._buf = bytearray()
        self.reset()

    def reset(self) -> None:
        self._buf.clear()
        self._state = _HEAD
        self._remaining = 0
        self.status = 0
        self.keep_alive = True
        self.body_started = False
        self.body = bytearray()

    @property
    def idle(self) -> bool:
        """Nothing of a response has arrived yet."""
        return self._state == _HEAD and not self._buf

    def feed(self, data: bytes) -> bool:
        self._buf += data
        while self._state != _DONE:
            if not _STEPS[self._state](self):
                return False
        if self._buf:
            raise ParseError("bytes after the end of the response")
        return True

    def _take(self) -> bool:
        buf = self._buf
        take = min(len(buf), self._remaining)
        if take:
            self.body += buf[:take]
            del buf[:take]
            self._remaining -= take
            self.body_started = True
        return not self._remaining

    def _body(self) -> bool:
        if not self._take():
            return False
        self._state = _DONE
        return True

    def _size(self) -> bool:
        buf = self._buf
        end = buf.find(b"\r\n")
        if end < 0:
            return False
        try:
            size = int(bytes(buf[:end]).split(b";", 1)[0], 16)
        except ValueError:
            raise ParseError("bad chunk size") from None
        del buf[: end + 2]
        self._remaining = size
        self._state = _DATA if size else _TRAILER
        return True

    def _data(self) -> bool:
        if not self._take():
            return False
        self._state = _DATA_END
        return True

    def _data_end(self) -> bool:
        buf = self._buf
        if len(buf) < 2:
            return False
        if buf[:2] != b"\r\n":
            raise ParseError("chunk not followed by CRLF")
        del buf[:2]
        self._state = _SIZE
        return True

    def _trailer(self) -> bool:
        buf = self._buf
        if buf[:2] == b"\r\n":
            del buf[:2]
        else:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return False
            del buf[: end + 4]
        self._state = _DONE
        return True

    def _head(self) -> bool:
        buf = self._buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > _MAX_HEAD:
                raise ParseError("response head too large")
            return False
        lines = bytes(buf[:end]).split(b"\r\n")
        del buf[: end + 4]
        status_line = lines[0]
        if not status_line.startswith(b"HTTP/1.") or len(status_line) < 12:
            raise ParseError("bad status line")
        try:
            self.status = int(status_line[9:12])
        except ValueError:
            raise ParseError("bad status code") from None
        self.keep_alive = status_line.startswith(b"HTTP/1.1")
        length: int | None = None
        chunked = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    raise ParseError("bad Content-Length") from None
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                self.keep_alive = b"close" not in value.lower()
        if self.status in (204, 304):
            self._state = _DONE
        elif chunked:
            self._state = _SIZE
        elif length is not None:
            self._remaining = length
            self._state = _BODY
        else:
            raise ParseError("response without Content-Length or chunked framing")
        return True


# The parser's step for each state, indexed by state number (_DONE has none).
_STEPS = (
    ResponseParser._head,
    ResponseParser._body,
    ResponseParser._size,
    ResponseParser._data,
    ResponseParser._data_end,
    ResponseParser._trailer,
)
