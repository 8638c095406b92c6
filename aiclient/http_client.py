"""A lean keep-alive HTTP/1.1 client for the proxy's upstream leg.

aiohttp's ClientSession spent ~45% of the proxy's CPU per relayed request (py-spy at 64
connections): URL objects, cookie and redirect machinery, tracing hooks, a StreamReader
per response and a handful of futures, none of which a relay needs. This client does
only what the relay does: POST or GET a body, read the status and headers, then the
body whole or as it arrives. httptools (llhttp, the parser Node.js uses) does the
parsing, so Content-Length, chunked and read-until-close bodies are handled by a
proven parser rather than by hand.

What it keeps from a full client: a keep-alive pool per (scheme, host, port), idle
connections closed after `keepalive_timeout` or as soon as the server closes them, TLS
with the system's trust store and SNI, a connect timeout, a per-read timeout (a stalled
upstream raises `ReadTimeout` while a slow stream that keeps sending never does), read
flow control (a client that reads slowly pauses the upstream socket, so memory per
stream stays bounded), gzip/deflate bodies decoded, and header values checked for CR/LF
so no configured value can split a request. A connection goes back to the pool only
when its response was read to the end and both sides allow keep-alive; anything else
closes it.

It does not retry: a POST to an LLM costs money, so a request that failed on a reused
connection is reported like any other failure and the relay decides (failover).

Errors are `HttpClientError` subclasses that name no URL and no header value.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import time
import zlib
from collections import deque
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import httptools
from multidict import CIMultiDict

__all__ = [
    "ConnectError",
    "ConnectTimeout",
    "Disconnected",
    "HttpClient",
    "HttpClientError",
    "InvalidRequest",
    "InvalidResponse",
    "ReadTimeout",
    "Response",
]

_HIGH_WATER = 256 * 1024
_LOW_WATER = 64 * 1024
_URL_CACHE_MAX = 4096


class HttpClientError(Exception):
    """Base of the client's failures. Messages never contain URLs or header values."""


class ConnectError(HttpClientError):
    """No connection could be made (refused, unreachable, DNS, TLS handshake)."""


class ConnectTimeout(HttpClientError, TimeoutError):
    """The connection was not established within the connect timeout."""


class ReadTimeout(HttpClientError, TimeoutError):
    """The upstream sent nothing for longer than the read timeout."""


class Disconnected(HttpClientError):
    """The connection closed or broke before the response was complete."""


class InvalidResponse(HttpClientError):
    """The upstream's bytes are not valid HTTP/1.x (or use an unsupported encoding)."""


class InvalidRequest(HttpClientError):
    """The request cannot be sent: a bad URL, or a header with CR, LF or NUL in it."""


_Key = tuple[bool, str, int]


class _Target:
    __slots__ = ("host_header", "key", "server_hostname", "target")

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise InvalidRequest(f"unsupported URL scheme {parts.scheme!r}")
        host = parts.hostname
        if not host:
            raise InvalidRequest("the upstream URL has no host")
        tls = parts.scheme == "https"
        try:
            port = parts.port or (443 if tls else 80)
        except ValueError as exc:
            raise InvalidRequest("the upstream URL has an invalid port") from exc
        self.key: _Key = (tls, host, port)
        self.server_hostname = host if tls else None
        shown = f"[{host}]" if ":" in host else host
        if port != (443 if tls else 80):
            shown = f"{shown}:{port}"
        self.host_header = shown
        path = parts.path or "/"
        self.target = f"{path}?{parts.query}" if parts.query else path


class _Connection(asyncio.Protocol):
    """One upstream socket. Holds at most one response in flight (no pipelining)."""

    __slots__ = (
        "_body_done",
        "_buffered",
        "_chunks",
        "_decoder",
        "_error",
        "_head_waiter",
        "_headers",
        "_keep_alive",
        "_loop",
        "_parser",
        "_paused",
        "_read_timeout",
        "_spare",
        "_status",
        "_until_close",
        "_waiter",
        "client",
        "idle_since",
        "key",
        "transport",
    )

    def __init__(
        self, client: HttpClient, key: _Key, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.client = client
        self.key = key
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self.idle_since = 0.0
        self._read_timeout = client.read_timeout
        self._parser: Any = None
        self._spare: Any = None
        self._reset()

    def _reset(self) -> None:
        self._status = 0
        self._headers: CIMultiDict[str] = CIMultiDict()
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._body_done = False
        self._until_close = False
        self._keep_alive = False
        self._error: HttpClientError | None = None
        self._head_waiter: asyncio.Future[None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._decoder: Any = None
        self._paused = False

    # -- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        parser = self._parser
        if parser is None:
            # Bytes nobody asked for (an idle connection): it cannot be trusted again.
            self._fail(InvalidResponse("the upstream sent data with no request pending"))
            return
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(InvalidResponse("the upstream switched protocols"))
        except httptools.HttpParserError:
            if self._body_done:  # bytes after the complete answer (on_message_begin)
                self._extra_bytes()
            else:
                self._fail(InvalidResponse("the upstream's answer is not valid HTTP"))

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.client._forget(self)
        if self._parser is None or self._body_done:
            return
        if self._until_close and exc is None and self._head_waiter is None:
            # A body without Content-Length or chunking ends when the server closes.
            self._body_done = True
            self._flush_decoder()
            self._wake()
            return
        self._fail(Disconnected("the upstream closed the connection mid-answer"))

    def pause_writing(self) -> None:  # the whole body is already in memory
        pass

    def resume_writing(self) -> None:
        pass

    # -- httptools callbacks ---------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._body_done:  # a second answer to one request: stop parsing (see above)
            raise InvalidResponse("the upstream sent more than one answer")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.add(name.decode("latin-1"), value.decode("latin-1"))

    def on_headers_complete(self) -> None:
        parser = self._parser
        status = parser.get_status_code()
        if 100 <= status < 200:  # interim answer (103 Early Hints): wait for the real one
            self._headers = CIMultiDict()
            return
        self._status = status
        headers = self._headers
        self._keep_alive = parser.should_keep_alive()
        if (
            "content-length" not in headers
            and "chunked" not in headers.get("transfer-encoding", "").lower()
            and status not in (204, 304)
        ):
            self._until_close = True
            self._keep_alive = False
        encoding = headers.get("content-encoding", "").strip().lower()
        if encoding in ("gzip", "x-gzip"):
            self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._decoder = zlib.decompressobj()
        elif encoding not in ("", "identity"):
            self._fail(InvalidResponse(f"unsupported content-encoding {encoding!r}"))
            return
        waiter = self._head_waiter
        self._head_waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def on_body(self, body: bytes) -> None:
        if self._status == 0:
            return
        decoder = self._decoder
        if decoder is not None:
            try:
                body = decoder.decompress(body)
            except zlib.error:
                self._fail(InvalidResponse("the upstream's compressed body is corrupt"))
                return
            if not body:
                return
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > _HIGH_WATER and not self._paused and self.transport:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self._status == 0:  # the end of an interim 1xx answer
            return
        self._body_done = True
        self._flush_decoder()
        self._wake()

    # -- internals -------------------------------------------------------------------

    def _flush_decoder(self) -> None:
        decoder = self._decoder
        if decoder is not None:
            self._decoder = None
            try:
                tail = decoder.flush()
            except zlib.error:
                tail = b""
            if tail:
                self._chunks.append(tail)
                self._buffered += len(tail)

    def _extra_bytes(self) -> None:
        """Bytes after the complete answer: the answer stands (its body and headers
        untouched), but the socket is out of step and is never reused."""
        self._keep_alive = False
        if self.transport is not None:
            self.transport.close()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _fail(self, error: HttpClientError) -> None:
        """Record the connection's failure and wake its reader, who raises it.

        The reader raises a copy (`_raise_failure`), and the waiter is woken with a
        result, not the error: a raised error holds the frames it passed through, which
        hold this connection, so keeping that error here (or in a waiter the frames
        hold) would make a reference cycle of every failed answer."""
        if self._error is None:
            self._error = error
        transport = self.transport
        if transport is not None:
            transport.close()
        for waiter in (self._head_waiter, self._waiter):
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        self._head_waiter = self._waiter = None

    def _raise_failure(self) -> None:
        error = self._error
        if error is not None:
            raise type(error)(*error.args)

    async def _wait(self, waiter: asyncio.Future[None]) -> None:
        timer = self._loop.call_later(self._read_timeout, self._timed_out, waiter)
        try:
            await waiter
        finally:
            timer.cancel()

    def _timed_out(self, waiter: asyncio.Future[None]) -> None:
        if not waiter.done():
            self._fail(ReadTimeout("the upstream sent nothing within the read timeout"))

    # -- used by HttpClient and Response ---------------------------------------------

    def usable(self) -> bool:
        transport = self.transport
        return transport is not None and not transport.is_closing() and self._error is None

    async def send(self, head: bytes, body: bytes | None) -> None:
        self._reset()
        # A parser that read a whole answer on this socket is ready for the next.
        parser, self._spare = self._spare, None
        self._parser = parser or httptools.HttpResponseParser(self)
        waiter = self._head_waiter = self._loop.create_future()
        transport = self.transport
        assert transport is not None
        if body and len(body) > 16384:
            transport.writelines((head, body))
        else:
            transport.write(head + body if body else head)
        await self._wait(waiter)
        self._raise_failure()

    async def next_chunk(self) -> bytes:
        """The body bytes buffered so far (waiting for some), or b"" at the end."""
        while True:
            chunks = self._chunks
            if chunks:
                data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
                chunks.clear()
                self._buffered = 0
                if self._paused and self.transport is not None:
                    self._paused = False
                    self.transport.resume_reading()
                return data
            self._raise_failure()
            if self._body_done:
                return b""
            waiter = self._waiter = self._loop.create_future()
            await self._wait(waiter)

    def finish(self) -> None:
        """The response is over (read or abandoned): pool the socket or close it."""
        parser_done = self._body_done and not self._chunks and self._error is None
        parser, self._parser = self._parser, None
        if parser_done and self._keep_alive and self.usable():
            self._spare = parser
            self.client._release(self)
        else:
            self.close()

    def close(self) -> None:
        self._parser = None
        if self.transport is not None:
            self.transport.close()
        self.client._forget(self)
        if not self._body_done:
            # connection_lost will not report it (no parser): fail a reader waiting
            # on this answer (HttpClient.close()) now rather than at the read timeout
            self._fail(Disconnected("the connection was closed mid-answer"))


class Response:
    """An upstream answer: status and headers now, the body through `read` or `chunks`.

    Call `release()` when done (a fully read body returns the socket to the pool), or
    `close()` to drop the connection. Reading the body to its end releases it too.
    """

    __slots__ = ("_conn", "headers", "status")

    def __init__(self, conn: _Connection) -> None:
        self._conn: _Connection | None = conn
        self.status: int = conn._status
        self.headers: CIMultiDict[str] = conn._headers

    async def read(self, limit: int | None = None) -> bytes:
        """The whole body (at most `limit` bytes, the rest dropped with the connection)."""
        parts: list[bytes] = []
        size = 0
        while chunk := await self.next_chunk():
            parts.append(chunk)
            size += len(chunk)
            if limit is not None and size >= limit:
                break
        self.release()  # cut short at `limit`: the unread rest closes the connection
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        return data if limit is None else data[:limit]

    async def next_chunk(self) -> bytes:
        """The body bytes that arrived since the last call (waiting for some), or b""
        at the end, when the connection has been released."""
        conn = self._conn
        if conn is None:
            return b""
        try:
            chunk = await conn.next_chunk()
        except BaseException:
            self.close()
            raise
        if not chunk:
            self.release()
        return chunk

    async def chunks(self) -> AsyncIterator[bytes]:
        """Body bytes as they arrive; the connection is released after the last, and
        closed if the iteration stops early."""
        try:
            while chunk := await self.next_chunk():
                yield chunk
        except BaseException:
            self.close()
            raise

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.finish()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


class HttpClient:
    """A pool of keep-alive upstream connections; safe to share across all instances."""

    def __init__(
        self,
        *,
        connect_timeout: float,
        read_timeout: float,
        keepalive_timeout: float = 15.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.keepalive_timeout = keepalive_timeout
        self._ssl = ssl_context
        self._idle: dict[_Key, list[_Connection]] = {}
        self._open: set[_Connection] = set()
        self._targets: dict[str, _Target] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def _target(self, url: str) -> _Target:
        target = self._targets.get(url)
        if target is None:
            target = _Target(url)
            if len(self._targets) >= _URL_CACHE_MAX:
                self._targets.clear()
            self._targets[url] = target
        return target

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    async def request(
        self,
        method: str,
        url: str,
        body: bytes | None,
        headers: Mapping[str, str],
    ) -> Response:
        """Send one request; returns once the status line and headers have arrived."""
        if self._closed:
            raise ConnectError("the HTTP client is closed")
        if method == "HEAD":  # its answer has no body whatever Content-Length says
            raise InvalidRequest("HEAD is not supported (the relay never sends it)")
        target = self._target(url)
        head = _head(method, target, body, headers)
        conn = self._acquire(target.key)
        if conn is None:
            conn = await self._connect(target)
        try:
            await conn.send(head, body)
        except BaseException:
            conn.close()
            raise
        return Response(conn)

    def _acquire(self, key: _Key) -> _Connection | None:
        idle = self._idle.get(key)
        if not idle:
            return None
        deadline = time.monotonic() - self.keepalive_timeout
        while idle:
            conn = idle.pop()
            if conn.usable() and conn.idle_since > deadline:
                return conn
            conn.close()
        return None

    async def _connect(self, target: _Target) -> _Connection:
        loop = asyncio.get_running_loop()
        tls, host, port = target.key
        conn = _Connection(self, target.key, loop)
        try:
            async with asyncio.timeout(self.connect_timeout):
                transport, _ = await loop.create_connection(
                    lambda: conn,
                    host,
                    port,
                    ssl=self._ssl_context() if tls else None,
                    server_hostname=target.server_hostname,
                )
        except TimeoutError as exc:
            conn.close()
            raise ConnectTimeout(
                "the upstream did not accept a connection in time"
            ) from exc
        except ssl.SSLError as exc:
            conn.close()
            raise ConnectError(f"TLS handshake failed ({exc.reason or 'ssl'})") from exc
        except OSError as exc:
            conn.close()
            reason = _os_reason(exc)
            raise ConnectError(f"cannot connect to the upstream ({reason})") from exc
        except BaseException:
            conn.close()
            raise
        conn.transport = transport  # uvloop may call connection_made only later
        self._open.add(conn)
        return conn

    def _release(self, conn: _Connection) -> None:
        if self._closed:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        self._idle.setdefault(conn.key, []).append(conn)
        if self._sweeper is None:
            loop = asyncio.get_running_loop()
            self._sweeper = loop.call_later(self.keepalive_timeout, self._sweep)

    def _forget(self, conn: _Connection) -> None:
        self._open.discard(conn)
        idle = self._idle.get(conn.key)
        if idle and conn in idle:
            idle.remove(conn)

    def _sweep(self) -> None:
        self._sweeper = None
        deadline = time.monotonic() - self.keepalive_timeout
        for idle in list(self._idle.values()):
            for conn in [c for c in idle if c.idle_since <= deadline]:
                conn.close()
        if any(self._idle.values()) and not self._closed:
            loop = asyncio.get_running_loop()
            self._sweeper = loop.call_later(self.keepalive_timeout / 2, self._sweep)

    def close_idle(self) -> None:
        """Close the pooled connections nobody is using."""
        for idle in list(self._idle.values()):
            for conn in list(idle):
                conn.close()
        self._idle.clear()

    async def close(self) -> None:
        """Close every connection, idle or busy."""
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conn in list(self._open):
            conn.close()
        self._idle.clear()
        await asyncio.sleep(0)


def _head(
    method: str, target: _Target, body: bytes | None, headers: Mapping[str, str]
) -> bytes:
    block = _header_block(headers)
    length = "" if body is None else f"Content-Length: {len(body)}\r\n"
    return (
        f"{method} {target.target} HTTP/1.1\r\nHost: {target.host_header}\r\n"
        f"{block}{length}\r\n"
    ).encode()


_blocks: dict[tuple[tuple[str, str], ...], str] = {}
_BLOCKS_MAX = 256


def _header_block(headers: Mapping[str, str]) -> str:
    """The header lines for `headers` (checked, framing headers left to us), cached:
    an instance sends the same few header sets over and over."""
    key = tuple(headers.items())
    block = _blocks.get(key)
    if block is not None:
        return block
    lines = []
    has_encoding = False
    for name, value in key:
        if _unsafe(name) or _unsafe(value):
            shown = name.replace("\r", " ").replace("\n", " ").strip()
            raise InvalidRequest(f"the {shown!r} header contains CR, LF or NUL")
        lowered = name.lower()
        if lowered in ("host", "content-length", "transfer-encoding", "connection"):
            continue
        if lowered == "accept-encoding":
            has_encoding = True
        lines.append(f"{name}: {value}\r\n")
    if not has_encoding:
        lines.append("Accept-Encoding: gzip, deflate\r\n")
    block = "".join(lines)
    if len(_blocks) >= _BLOCKS_MAX:
        _blocks.clear()
    _blocks[key] = block
    return block


def _os_reason(exc: OSError) -> str:
    """Why a connect failed, without the address asyncio puts in its own messages
    ("Connect call failed ('10.0.0.1', 443)")."""
    if isinstance(exc, socket.gaierror):
        return exc.strerror or "DNS lookup failed"  # names no host
    if isinstance(exc.errno, int) and exc.errno > 0:
        return os.strerror(exc.errno)
    return type(exc).__name__


def _unsafe(text: str) -> bool:
    return "\n" in text or "\r" in text or "\0" in text
