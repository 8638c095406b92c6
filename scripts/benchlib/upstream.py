"""The fake upstream: OpenAI, Anthropic and Gemini endpoints on a raw asyncio Protocol.

Run as `python -m benchlib.upstream --port 0`; it prints `PORT <n>` once listening and
serves until SIGTERM. HTTP/1.1 with keep-alive; a request is parsed only as far as the
request line, the headers and a Content-Length body. Every answer is prebuilt bytes:

* POST .../chat/completions and .../messages: a fixed chat.completion / Message, or,
  when the JSON body has `"stream": true`, an SSE stream (chunked transfer encoding)
  of `--chunks` content events plus the protocol's closing events.
* POST .../models/{model}:generateContent: a fixed GenerateContentResponse;
  ...:streamGenerateContent: an SSE stream of `--chunks` of them, the last finished.
* Streams are written one SSE event per chunk: without `--gap-ms`, one event per event
  loop iteration (so a busy reader may receive several in one read); for the model
  `bench-slow`, one event every `--slow-gap-ms`, to hold streams open cheaply.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from dataclasses import dataclass
from typing import cast

import orjson

from .payloads import (
    SLOW_MODEL,
    WireProtocol,
    anthropic_message,
    anthropic_stream,
    gemini_response,
    gemini_stream,
    openai_completion,
    openai_stream,
)
from .system import raise_nofile_limit, run
from .wire import LAST_CHUNK, chunk

__all__ = ["Upstream", "main"]

_MAX_HEAD = 64 * 1024
_STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)


def _response(status: str, body: bytes, *, close: bool = False) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
    )
    if close:
        head += "Connection: close\r\n"
    return head.encode() + b"\r\n" + body


def _error(status: str, message: str, *, close: bool = False) -> bytes:
    body = orjson.dumps({"error": {"message": message, "type": "invalid_request_error"}})
    return _response(status, body, close=close)


def _stream_writes(frames: list[bytes]) -> list[bytes]:
    """One write per SSE event: the head rides with the first, the end with the last."""
    writes = [chunk(frame) for frame in frames]
    writes[0] = _STREAM_HEAD + writes[0]
    writes[-1] += LAST_CHUNK
    return writes


@dataclass(frozen=True, slots=True)
class StreamPlan:
    writes: list[bytes]
    gap: float


class Upstream:
    """Prebuilt answers and counters shared by every connection."""

    def __init__(
        self, *, chunks: int, gap_ms: float, slow_chunks: int, slow_gap_ms: float
    ) -> None:
        self.requests = 0
        self.connections = 0
        self.json: dict[WireProtocol, bytes] = {
            "openai": _response("200 OK", openai_completion()),
            "anthropic": _response("200 OK", anthropic_message()),
            "gemini": _response("200 OK", gemini_response()),
        }
        self.streams: dict[tuple[WireProtocol, bool], StreamPlan] = {
            ("openai", False): StreamPlan(
                _stream_writes(openai_stream(chunks)), gap_ms / 1e3
            ),
            ("anthropic", False): StreamPlan(
                _stream_writes(anthropic_stream(chunks)), gap_ms / 1e3
            ),
            ("openai", True): StreamPlan(
                _stream_writes(openai_stream(slow_chunks)), slow_gap_ms / 1e3
            ),
            ("anthropic", True): StreamPlan(
                _stream_writes(anthropic_stream(slow_chunks)), slow_gap_ms / 1e3
            ),
            ("gemini", False): StreamPlan(
                _stream_writes(gemini_stream(chunks)), gap_ms / 1e3
            ),
            ("gemini", True): StreamPlan(
                _stream_writes(gemini_stream(slow_chunks)), slow_gap_ms / 1e3
            ),
        }
        self.models = _response(
            "200 OK",
            orjson.dumps({"object": "list", "data": [{"id": "bench", "object": "model"}]}),
        )
        self.health = _response("200 OK", b'{"status":"healthy"}')
        self.not_found = _error("404 Not Found", "no such route")
        self.bad_json = _error("400 Bad Request", "the body is not a JSON object")

    def protocol(self) -> UpstreamConnection:
        return UpstreamConnection(self)


class _Stream:
    """Writes a StreamPlan's events one at a time, honouring write flow control."""

    __slots__ = ("_conn", "_handle", "_index", "_loop", "_plan")

    def __init__(self, conn: UpstreamConnection, plan: StreamPlan) -> None:
        self._conn = conn
        self._plan = plan
        self._index = 0
        self._handle: asyncio.Handle | None = None
        self._loop = asyncio.get_running_loop()

    def step(self) -> None:
        self._handle = None
        conn = self._conn
        transport = conn.transport
        if transport is None or conn.paused:
            return  # resume_writing calls step again
        writes = self._plan.writes
        transport.write(writes[self._index])
        self._index += 1
        if self._index == len(writes):
            conn.stream_done()
        elif self._plan.gap:
            self._handle = self._loop.call_later(self._plan.gap, self.step)
        else:
            self._handle = self._loop.call_soon(self.step)

    def resume(self) -> None:
        if self._handle is None:
            self.step()

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class UpstreamConnection(asyncio.Protocol):
    __slots__ = ("_buf", "_close_after", "_stream", "_upstream", "paused", "transport")

    def __init__(self, upstream: Upstream) -> None:
        self._upstream = upstream
        self._buf = bytearray()
        self._stream: _Stream | None = None
        self._close_after = False
        self.transport: asyncio.Transport | None = None
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self._upstream.connections += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self._stream is not None:
            self._stream.cancel()
            self._stream = None

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self._stream is not None:
            self._stream.resume()

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if self._stream is None:
            self._serve()

    def stream_done(self) -> None:
        self._stream = None
        if self._close_after:
            self._close()
        elif self._buf:
            self._serve()

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _reject(self, response: bytes) -> None:
        if self.transport is not None:
            self.transport.write(response)
        self._buf.clear()
        self._close()

    def _serve(self) -> None:
        buf = self._buf
        while self._stream is None and self.transport is not None and buf:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > _MAX_HEAD:
                    self._reject(
                        _error("431 Request Header Fields Too Large", "", close=True)
                    )
                return
            request_line, _, header_block = bytes(buf[:end]).partition(b"\r\n")
            parts = request_line.split(b" ")
            if len(parts) != 3:
                self._reject(_error("400 Bad Request", "bad request line", close=True))
                return
            method, target, version = parts
            close = version != b"HTTP/1.1"
            length = 0
            for line in header_block.split(b"\r\n"):
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    if not value.strip().isdigit():
                        self._reject(
                            _error("400 Bad Request", "bad Content-Length", close=True)
                        )
                        return
                    length = int(value)
                elif name == b"connection":
                    value = value.lower()
                    close = b"close" in value or (close and b"keep-alive" not in value)
                elif name == b"transfer-encoding":
                    self._reject(
                        _error("411 Length Required", "send Content-Length", close=True)
                    )
                    return
            total = end + 4 + length
            if len(buf) < total:
                return
            body = bytes(buf[end + 4 : total])
            del buf[:total]
            self._close_after = close
            streaming = self._respond(method, target.partition(b"?")[0], body)
            if close and not streaming:
                self._close()
                return

    def _respond(self, method: bytes, path: bytes, body: bytes) -> bool:
        """Answer one request; True when the answer is a stream still being written."""
        upstream = self._upstream
        upstream.requests += 1
        transport = self.transport
        assert transport is not None
        protocol: WireProtocol | None = None
        gemini_model, gemini_stream = None, False
        if method == b"POST":
            if path.endswith(b"/chat/completions"):
                protocol = "openai"
            elif path.endswith(b"/messages"):
                protocol = "anthropic"
            elif b"/models/" in path and path.endswith(b"enerateContent"):
                protocol = "gemini"
                name, _, action = path.rpartition(b"/models/")[2].partition(b":")
                gemini_model = name.decode()
                gemini_stream = action == b"streamGenerateContent"
        if protocol is None:
            if method == b"GET" and path.endswith(b"/models"):
                transport.write(upstream.models)
            elif method == b"GET" and path.endswith(b"/health"):
                transport.write(upstream.health)
            else:
                transport.write(upstream.not_found)
            return False
        try:
            request = orjson.loads(body)
        except orjson.JSONDecodeError:
            request = None
        if not isinstance(request, dict):
            transport.write(upstream.bad_json)
        elif gemini_stream or (protocol != "gemini" and request.get("stream") is True):
            model = gemini_model if protocol == "gemini" else request.get("model")
            plan = upstream.streams[protocol, model == SLOW_MODEL]
            self._stream = _Stream(self, plan)
            self._stream.step()
            return True
        else:
            transport.write(upstream.json[protocol])
        return False


async def serve(args: argparse.Namespace) -> None:
    upstream = Upstream(
        chunks=args.chunks,
        gap_ms=args.gap_ms,
        slow_chunks=args.slow_chunks,
        slow_gap_ms=args.slow_gap_ms,
    )
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        upstream.protocol, args.host, args.port, backlog=args.backlog
    )
    port = server.sockets[0].getsockname()[1]
    print(f"PORT {port}", flush=True)
    done = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, done.set)
    await done.wait()
    server.close()
    print(
        f"fake upstream: served {upstream.requests} requests on "
        f"{upstream.connections} connections",
        file=sys.stderr,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="benchlib.upstream", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--backlog", type=int, default=4096)
    parser.add_argument("--chunks", type=int, default=20, help="content events per stream")
    parser.add_argument("--gap-ms", type=float, default=0.0)
    parser.add_argument("--slow-chunks", type=int, default=100)
    parser.add_argument("--slow-gap-ms", type=float, default=100.0)
    args = parser.parse_args(argv)
    raise_nofile_limit()
    run(serve(args))


if __name__ == "__main__":
    main()
