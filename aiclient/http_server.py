"""The proxy's own HTTP/1.1 server: httptools (llhttp) on a plain asyncio Protocol.

aiohttp's server cost the proxy more than everything else it does together (a profile
at 64 connections: ~38% of the CPU in aiohttp's request and response machinery, ~27% in
aiclient). This module is the small part of a web framework the proxy needs, written for
one job:

* `App` holds typed state (`Key`), a `Router` (exact paths in a dict, `{name}` patterns
  in order, 405 with `Allow` when only the method is wrong, HEAD served by GET routes),
  one middleware and cleanup contexts (async generators run at start and stop).
* `Request` is parsed once: method, path (percent-decoded), query (parsed on first use),
  headers (a CIMultiDict), and the body, read whole with `await request.read()` and
  capped at `App.client_max_size` (413; a too-long Content-Length is refused before a
  byte of it is read, and `Expect: 100-continue` is answered only when a body is read).
* `Response` (a whole body, with Content-Length) and `StreamResponse` (chunked, or
  close-delimited for an HTTP/1.0 client) with write back-pressure.
* Keep-alive and pipelining (answers go out in order), request smuggling refused by the
  parser (Content-Length with chunked, bad lengths: 400), header block capped (431),
  an Upgrade request (h2c) served as HTTP/1.1 with its body read as its body, a client
  silent for `keepalive_timeout` seconds between requests or in the middle of one
  disconnected (one sweeping timer, none per request), and a client that disconnects
  (FIN or reset) cancels its handler, so the upstream request is closed at once.
* A streamed answer is corked for the rest of the handler's step: its head goes out
  with the first chunk, the last chunk with the end mark, in one send each.
* `Server` starts and stops an App: start binds the port before the cleanup contexts
  start and accepts connections after; stop stops listening, lets running requests
  finish for a grace period, then cancels them and runs the cleanup contexts.

Handlers raise `HTTPError` for 4xx the server itself decides; the app's middleware
renders them (and everything else) in the client's protocol. An exception that escapes
the middleware is logged and answered 500 with a generic JSON body.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import signal
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from http import HTTPStatus
from typing import Any, Generic, TypeVar, cast
from urllib.parse import parse_qsl, unquote

import httptools
from multidict import CIMultiDict, MultiDict, MultiDictProxy

__all__ = [
    "App",
    "HTTPError",
    "Key",
    "Request",
    "Response",
    "Router",
    "Server",
    "StreamResponse",
    "run",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

_MAX_HEAD_BYTES = 64 * 1024  # request line and headers together
_MAX_HEADERS = 200
_CORK_MAX = 16 * 1024  # a stream write this big is sent at once, not corked
_MAX_PIPELINE = 16  # parsed requests waiting behind the running one: stop reading
_FRAMING = frozenset({"connection", "content-length", "transfer-encoding", "keep-alive"})
_INTERNAL_ERROR = b'{"error":{"message":"Internal server error","type":"server_error"}}'


class Key(Generic[T]):
    """A typed key for `App` and `Request` state."""

    __slots__ = ("name",)

    def __init__(self, name: str, kind: type[T]) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<Key {self.name}>"


class HTTPError(Exception):
    """A request the server or router refuses: 400, 404, 405, 413, 431."""

    def __init__(self, status: int, headers: Mapping[str, str] | None = None) -> None:
        self.status = status
        self.reason = HTTPStatus(status).phrase
        super().__init__(f"{status} {self.reason}")
        self.headers = dict(headers or {})


Handler = Callable[["Request"], Awaitable["StreamResponse"]]
Middleware = Callable[["Request", Handler], Awaitable["StreamResponse"]]
CleanupContext = Callable[["App"], AsyncIterator[None]]


class _Pattern:
    __slots__ = ("canonical", "handlers", "regex")

    def __init__(self, canonical: str) -> None:
        self.canonical = canonical
        parts = re.split(r"\{(\w+)\}", canonical)
        expr = "".join(
            re.escape(part) if i % 2 == 0 else f"(?P<{part}>[^/]+)"
            for i, part in enumerate(parts)
        )
        self.regex = re.compile(expr)
        self.handlers: dict[str, Handler] = {}


class Router:
    """Exact paths first (one dict lookup), then `{name}` patterns in the order added;
    a `{name}` matches one path segment."""

    def __init__(self) -> None:
        self._exact: dict[str, dict[str, Handler]] = {}
        self._patterns: list[_Pattern] = []

    def add_route(self, method: str, path: str, handler: Handler) -> None:
        method = method.upper()
        if "{" not in path:
            self._exact.setdefault(path, {})[method] = handler
            return
        for pattern in self._patterns:
            if pattern.canonical == path:
                break
        else:
            pattern = _Pattern(path)
            self._patterns.append(pattern)
        pattern.handlers[method] = handler

    def add_get(self, path: str, handler: Handler) -> None:
        self.add_route("GET", path, handler)

    def add_post(self, path: str, handler: Handler) -> None:
        self.add_route("POST", path, handler)

    def add_put(self, path: str, handler: Handler) -> None:
        self.add_route("PUT", path, handler)

    def add_delete(self, path: str, handler: Handler) -> None:
        self.add_route("DELETE", path, handler)

    def resolve(self, method: str, path: str) -> tuple[Handler, dict[str, str], str]:
        """The handler, path parameters and route pattern for a request; HTTPError
        404 or 405 when there is none."""
        allowed: set[str] = set()
        exact = self._exact.get(path)
        if exact is not None:
            handler = _pick(exact, method)
            if handler is not None:
                return handler, {}, path
            allowed.update(exact)
        for pattern in self._patterns:
            match = pattern.regex.fullmatch(path)
            if match is None:
                continue
            handler = _pick(pattern.handlers, method)
            if handler is not None:
                return handler, match.groupdict(), pattern.canonical
            allowed.update(pattern.handlers)
        if allowed:
            if "GET" in allowed:
                allowed.add("HEAD")
            raise HTTPError(405, {"Allow": ", ".join(sorted(allowed))})
        raise HTTPError(404)


def _pick(handlers: dict[str, Handler], method: str) -> Handler | None:
    handler = handlers.get(method)
    if handler is None and method == "HEAD":
        handler = handlers.get("GET")
    return handler


class App:
    """Routes, one middleware, typed state and cleanup contexts."""

    def __init__(
        self,
        *,
        middleware: Middleware | None = None,
        client_max_size: int = 1024**2,
        default_headers: Mapping[str, str] | None = None,
    ) -> None:
        self.router = Router()
        self.middleware = middleware
        self.client_max_size = client_max_size
        # Sent with every response (CORS): formatted once, not per response; a
        # handler's header of the same name is dropped.
        defaults = dict(default_headers or {})
        self.head_extra = "".join(f"{k}: {v}\r\n" for k, v in defaults.items())
        self.head_skip = _FRAMING | {k.lower() for k in defaults}
        self.cleanup_ctx: list[CleanupContext] = []
        self._state: dict[Key[Any], Any] = {}

    def __getitem__(self, key: Key[T]) -> T:
        return cast(T, self._state[key])

    def __setitem__(self, key: Key[T], value: T) -> None:
        self._state[key] = value


class Request:
    """One parsed request. `read()` returns the whole body."""

    __slots__ = (
        "_body",
        "_body_done",
        "_conn",
        "_continue",
        "_parts",
        "_query",
        "_size",
        "_state",
        "_waiter",
        "app",
        "headers",
        "keep_alive",
        "match_info",
        "method",
        "path",
        "query_string",
        "route",
        "too_large",
        "version",
    )

    def __init__(
        self,
        conn: _HttpConnection,
        method: str,
        path: str,
        query_string: str,
        headers: CIMultiDict[str],
        version: str,
        keep_alive: bool,
    ) -> None:
        self._conn = conn
        self.app = conn.app
        self.method = method
        self.path = path
        self.query_string = query_string
        self.headers = headers
        self.version = version
        self.keep_alive = keep_alive
        self.match_info: dict[str, str] = {}
        self.route = "unmatched"
        self.too_large = False
        self._query: MultiDictProxy[str] | None = None
        self._state: dict[Key[Any], Any] | None = None
        self._parts: list[bytes] = []
        self._size = 0
        self._body: bytes | None = None
        self._body_done = False
        self._waiter: asyncio.Future[None] | None = None
        self._continue = version == "1.1" and (
            headers.get("Expect", "").lower() == "100-continue"
        )

    @property
    def query(self) -> MultiDictProxy[str]:
        query = self._query
        if query is None:
            pairs = parse_qsl(self.query_string, keep_blank_values=True)
            query = self._query = MultiDictProxy(MultiDict(pairs))
        return query

    def __getitem__(self, key: Key[T]) -> T:
        if self._state is None:
            raise KeyError(key)
        return cast(T, self._state[key])

    def __setitem__(self, key: Key[T], value: T) -> None:
        if self._state is None:
            self._state = {}
        self._state[key] = value

    def get(self, key: Key[T], default: T | None = None) -> T | None:
        if self._state is None:
            return default
        return cast("T | None", self._state.get(key, default))

    async def read(self) -> bytes:
        """The whole body; HTTPError 413 above the app's `client_max_size`."""
        if self.too_large:
            raise HTTPError(413)
        if not self._body_done:
            if self._continue:
                self._continue = False
                self._conn.send_continue()
            waiter = self._waiter = self._conn.loop.create_future()
            self._conn.waiting_for_body(True)
            try:
                await waiter
            finally:
                self._waiter = None
                self._conn.waiting_for_body(False)
            if self.too_large:
                raise HTTPError(413)
        body = self._body
        if body is None:
            parts = self._parts
            body = self._body = parts[0] if len(parts) == 1 else b"".join(parts)
            self._parts = []
        return body

    # -- fed by the connection ---------------------------------------------------------

    def _feed(self, data: bytes, limit: int) -> None:
        if self.too_large:
            return
        self._size += len(data)
        if self._size > limit:
            self.too_large = True
            self._parts = []
            return
        self._parts.append(data)

    def _end(self, error: BaseException | None = None) -> None:
        self._body_done = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(error)


class StreamResponse:
    """A response written as it is produced: `prepare`, `write`..., `write_eof`."""

    __slots__ = ("_conn", "_eof", "_head_only", "headers", "status")

    def __init__(
        self, *, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> None:
        self.status = status
        self.headers: CIMultiDict[str] = CIMultiDict(headers or {})
        self._conn: _HttpConnection | None = None
        self._eof = False
        self._head_only = False

    @property
    def prepared(self) -> bool:
        return self._conn is not None

    async def prepare(self, request: Request) -> None:
        if self._conn is not None:
            return
        conn = self._conn = request._conn
        self._head_only = request.method == "HEAD"
        conn.start_response(self, request)

    async def write(self, data: bytes) -> None:
        conn = self._conn
        if conn is None or self._eof:
            raise RuntimeError("write() before prepare() or after write_eof()")
        if not data or self._head_only:
            return
        await conn.write_body(data, last=False)

    async def write_eof(self) -> None:
        conn = self._conn
        if conn is None or self._eof:
            return
        self._eof = True
        if not self._head_only:
            await conn.write_body(b"", last=True)


class Response(StreamResponse):
    """A whole response: the body is known before the head is written."""

    __slots__ = ("body",)

    def __init__(
        self,
        *,
        body: bytes = b"",
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        content_type: str | None = None,
        text: str | None = None,
    ) -> None:
        super().__init__(status=status, headers=headers)
        if text is not None:
            body = text.encode()
            content_type = content_type or "text/plain"
            if "charset" not in content_type:
                content_type += "; charset=utf-8"
        if content_type is not None:
            self.headers["Content-Type"] = content_type
        self.body = body


# -- the wire ------------------------------------------------------------------------

_STATUS_LINES: dict[int, str] = {}
_date_cache: tuple[int, str] = (0, "")


def _status_line(status: int) -> str:
    line = _STATUS_LINES.get(status)
    if line is None:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Unknown"
        line = _STATUS_LINES[status] = f"HTTP/1.1 {status} {phrase}\r\n"
    return line


def _date() -> str:
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now)))
    return _date_cache[1]


def _head(
    status: int,
    headers: CIMultiDict[str],
    *,
    length: int | None,
    chunked: bool,
    keep_alive: bool,
    version: str,
    extra: str = "",
    skip: frozenset[str] = _FRAMING,
) -> bytes:
    lines = [_status_line(status), "Date: ", _date(), "\r\n", extra]
    connection = False
    for name, value in headers.items():
        if "\n" in value or "\r" in value or "\n" in name or "\r" in name:
            continue
        lowered = name.lower()
        if lowered in skip:
            if lowered not in _FRAMING:
                continue
            # The server owns framing; a handler's "Connection: keep-alive" (the SSE
            # headers clients expect) goes out only while it is true.
            if lowered != "connection" or not keep_alive or value != "keep-alive":
                continue
            connection = True
        lines.append(f"{name}: {value}\r\n")
    if length is not None:
        lines.append(f"Content-Length: {length}\r\n")
    elif chunked:
        lines.append("Transfer-Encoding: chunked\r\n")
    if not keep_alive:
        lines.append("Connection: close\r\n")
    elif version == "1.0" and not connection:
        lines.append("Connection: keep-alive\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("latin-1", "replace")


class _HttpConnection(asyncio.Protocol):
    """One client connection: parses requests, runs their handlers one at a time."""

    __slots__ = (
        "_chunked",
        "_closing",
        "_drain",
        "_head_size",
        "_headers",
        "_last_data",
        "_parser",
        "_pending",
        "_pipeline",
        "_reading_paused",
        "_request",
        "_response",
        "_task",
        "_upgrade_body",
        "_url",
        "_waiting_body",
        "_write_paused",
        "app",
        "keep_alive",
        "loop",
        "server",
        "transport",
    )

    def __init__(self, server: Server) -> None:
        self.server = server
        self.app = server.app
        self.loop = server.loop
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._headers: list[tuple[str, str]] = []
        self._head_size = 0
        self._request: Request | None = None  # being parsed
        self._pipeline: deque[Request] = deque()
        self._task: asyncio.Task[None] | None = None
        self._response: StreamResponse | None = None
        self._chunked = False
        self.keep_alive = True
        self._closing = False
        self._write_paused = False
        self._reading_paused = False
        self._drain: asyncio.Future[None] | None = None
        self._last_data = 0.0  # when the client last sent bytes (or was last answered)
        self._waiting_body = False
        self._upgrade_body = 0  # body bytes of an Upgrade request still to come
        self._pending: list[bytes] | None = None  # corked stream bytes (see _cork)

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.server.connections.add(self)
        self._last_data = self.loop.time()

    def data_received(self, data: bytes) -> None:
        self._last_data = self.loop.time()
        if self._upgrade_body:
            data = self._raw_body(data)
            if not data:
                return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            # Upgrade (h2c, websocket) is not offered: the request is served as plain
            # HTTP/1.1. llhttp stops at the end of its head, so its body (if any) is
            # taken here, and a fresh parser goes on after it: never is a body parsed
            # as requests of its own.
            self._parser = httptools.HttpRequestParser(self)
            rest = data[exc.args[0] :] if exc.args and isinstance(exc.args[0], int) else b""
            if self._upgrade_body:
                rest = self._raw_body(rest)
            if rest:
                self.data_received(rest)
        except httptools.HttpParserError as exc:
            # An HTTPError raised in a callback arrives as the parser error's context.
            cause = exc.__context__
            self._refuse(cause.status if isinstance(cause, HTTPError) else 400)

    def _raw_body(self, data: bytes) -> bytes:
        """Feed an upgrade request's Content-Length body; returns the bytes after it."""
        size = self._upgrade_body
        part, rest = data[:size], data[size:]
        self._upgrade_body -= len(part)
        request = self._request
        if request is not None:
            request._feed(part, self.app.client_max_size)
            if not self._upgrade_body:
                self._request = None
                request._end()
        return rest

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._pending = None
        self.server.connections.discard(self)
        gone = ConnectionResetError("the client disconnected")
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_exception(gone)
        request = self._request
        if request is not None and not request._body_done:
            request._end(gone)
        for queued in self._pipeline:
            queued._end(gone)
        self._pipeline.clear()
        task = self._task
        if task is not None and not task.done():
            task.cancel()  # the client is gone: stop its upstream request now

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_result(None)

    # -- httptools callbacks -------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._head_size = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_size += len(url)
        if self._head_size > _MAX_HEAD_BYTES:
            raise HTTPError(414)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + 4
        if self._head_size > _MAX_HEAD_BYTES or len(self._headers) >= _MAX_HEADERS:
            raise HTTPError(431)
        try:
            text = value.decode()  # UTF-8, as clients send it (and aiohttp read it)
        except UnicodeDecodeError:
            text = value.decode("latin-1")  # never fails; a key like this never matches
        self._headers.append((name.decode("latin-1"), text))

    def on_headers_complete(self) -> None:
        parser = self._parser
        url = self._url
        if url[:1] != b"/":
            if url == b"*":
                url = b"/"
            else:  # absolute form (a client configured to use us as a forward proxy)
                parsed = httptools.parse_url(url)
                url = (parsed.path or b"/") + (b"?" + parsed.query if parsed.query else b"")
        raw_path, _, query = url.partition(b"?")
        raw_path = raw_path.partition(b"#")[0]
        path = raw_path.decode("latin-1")
        if "%" in path:
            path = unquote(raw_path.decode("utf-8", "replace"))
        headers: CIMultiDict[str] = CIMultiDict(self._headers)
        length = headers.get("Content-Length")
        if parser.should_upgrade():
            if "chunked" in headers.get("Transfer-Encoding", "").lower():
                raise HTTPError(400)  # llhttp would skip it: refuse, never misparse
            self._upgrade_body = int(length) if length and length.isdigit() else 0
        request = Request(
            self,
            parser.get_method().decode("ascii", "replace"),
            path,
            query.partition(b"#")[0].decode("latin-1"),
            headers,
            parser.get_http_version(),
            parser.should_keep_alive(),
        )
        self._request = request
        if (
            length is not None
            and length.isdigit()
            and int(length) > self.app.client_max_size
        ):
            request.too_large = True  # refused before a byte of the body is read
        if self._task is None:
            self._start(request)
        else:
            self._pipeline.append(request)
            if len(self._pipeline) >= _MAX_PIPELINE and not self._reading_paused:
                self._reading_paused = True
                assert self.transport is not None
                self.transport.pause_reading()

    def on_body(self, body: bytes) -> None:
        request = self._request
        if request is not None:
            request._feed(body, self.app.client_max_size)

    def on_message_complete(self) -> None:
        request = self._request
        if request is not None and not self._upgrade_body:
            self._request = None
            request._end()

    # -- requests --------------------------------------------------------------------------

    def _start(self, request: Request) -> None:
        self._task = self.loop.create_task(self._serve(request))

    async def _serve(self, request: Request) -> None:
        app = self.app
        try:
            try:
                handler, request.match_info, request.route = app.router.resolve(
                    request.method, request.path
                )
            except HTTPError as exc:
                handler = _raiser(exc)
            middleware = app.middleware
            if middleware is not None:
                response = await middleware(request, handler)
            else:
                response = await handler(request)
        except asyncio.CancelledError:
            self._abort()
            raise
        except ConnectionError:  # the client went away while being answered
            self._abort()
            return
        except Exception:
            logger.exception("unhandled error serving %s %s", request.method, request.path)
            if self._response is not None:
                self._abort()
                return
            response = Response(
                status=500, body=_INTERNAL_ERROR, content_type="application/json"
            )
        try:
            await self._finish(request, response)
        except ConnectionError:
            self._abort()
            return
        self._next()

    async def _finish(self, request: Request, response: StreamResponse) -> None:
        started = self._response
        if started is None:
            self.start_response(response, request)
            response._eof = True
        elif started is not response:  # a stream began, then another answer came back
            logger.error(
                "%s %s: answered after its stream began", request.method, request.path
            )
            raise ConnectionResetError("the answer cannot be finished")  # drops the socket
        elif not response._eof:
            await response.write_eof()
        if not request._body_done:  # an unread body (refused early): do not read on
            self.keep_alive = False
        self._response = None
        if not self.keep_alive:
            self._close()

    def _next(self) -> None:
        self._task = None
        if self._closing:
            return
        if self._pipeline:
            request = self._pipeline.popleft()
            if self._reading_paused and len(self._pipeline) < _MAX_PIPELINE // 2:
                self._reading_paused = False
                assert self.transport is not None
                self.transport.resume_reading()
            self._start(request)
            return
        if self.server.stopping:
            self._close()
            return
        self._last_data = self.loop.time()  # the keep-alive wait starts now

    def start_response(self, response: StreamResponse, request: Request) -> None:
        """Write `response`'s head; a `Response` carries its Content-Length."""
        if self._response is not None:
            raise RuntimeError("a response has already been started for this request")
        self._response = response
        response._conn = self
        response._head_only = request.method == "HEAD"
        keep_alive = self.keep_alive = (
            self.keep_alive
            and request.keep_alive
            and request._body_done  # else the unread rest is dropped with the socket
            and not self.server.stopping
        )
        length: int | None = None
        chunked = False
        if response.status in (204, 304) or response.status < 200:
            response._head_only = True  # no body, no length: the head says it all
        elif isinstance(response, Response):
            length = len(response.body)
        elif request.version == "1.1":
            chunked = True
        else:  # HTTP/1.0 has no chunking: the body ends when the connection does
            keep_alive = self.keep_alive = False
        self._chunked = chunked
        app = self.app
        head = _head(
            response.status,
            response.headers,
            length=length,
            chunked=chunked,
            keep_alive=keep_alive,
            version=request.version,
            extra=app.head_extra,
            skip=app.head_skip,
        )
        if length and not response._head_only:
            # One write for head and body: one send, one wake-up of the client.
            self._write(head + cast(Response, response).body)
        elif isinstance(response, Response):
            self._write(head)
        else:
            self._cork(head)  # goes out with the first chunk

    def _cork(self, data: bytes) -> None:
        """Queue bytes of a streamed answer until the handler's current step ends:
        the head and the first chunk, or the last chunk and the end mark, then go out
        in one send (one system call, one wake-up of the client) instead of two."""
        pending = self._pending
        if pending is None:
            transport = self.transport
            if transport is None or transport.is_closing():
                raise ConnectionResetError("the client disconnected")
            self._pending = [data]
            self.loop.call_soon(self._flush)
        else:
            pending.append(data)

    def _flush(self) -> None:
        pending, self._pending = self._pending, None
        transport = self.transport
        if pending and transport is not None and not transport.is_closing():
            transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    async def write_body(self, data: bytes, *, last: bool) -> None:
        if self._closing:
            raise ConnectionResetError("the client disconnected")
        if self._chunked:
            if data:
                self._cork(b"%x\r\n%b\r\n" % (len(data), data))
            if last:
                self._cork(b"0\r\n\r\n")
        elif data:
            self._cork(data)
        if len(data) > _CORK_MAX:
            self._flush()  # big writes go at once: back-pressure sees them
        if self._write_paused:
            await self._drained()

    async def _drained(self) -> None:
        drain = self._drain = self.loop.create_future()
        try:
            await drain
        finally:
            self._drain = None

    def _write(self, data: bytes) -> None:
        if self._pending is not None:
            self._flush()  # keep the order
        transport = self.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("the client disconnected")
        transport.write(data)

    def send_continue(self) -> None:
        if not self._closing:
            self._write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def waiting_for_body(self, waiting: bool) -> None:
        """While a handler waits for the body, the client's silence is timed too."""
        self._waiting_body = waiting

    def idle_too_long(self, now: float, timeout: float) -> bool:
        """Waiting on a client (between requests, or for the rest of one) that has
        sent nothing for `timeout` seconds."""
        return (
            not self._closing
            and (self._task is None or self._waiting_body)
            and now - self._last_data >= timeout
        )

    def close_if_idle(self) -> bool:
        if self._task is None and self._request is None:
            self._close()
            return True
        return False

    def _refuse(self, status: int) -> None:
        """A request that cannot be parsed: answer it (unless another answer is being
        written) and close."""
        self.keep_alive = False
        if self._task is None and not self._closing:
            body = (
                b'{"error":{"message":"%b","type":"invalid_request_error"}}'
                % HTTPStatus(status).phrase.encode()
            )
            headers: CIMultiDict[str] = CIMultiDict({"Content-Type": "application/json"})
            with contextlib.suppress(ConnectionError):
                self._write(
                    _head(
                        status,
                        headers,
                        length=len(body),
                        chunked=False,
                        keep_alive=False,
                        version="1.1",
                        extra=self.app.head_extra,
                        skip=self.app.head_skip,
                    )
                    + body
                )
            self._close()
        else:
            self._pipeline.clear()

    def _abort(self) -> None:
        """Drop the connection (a half-written answer cannot be finished)."""
        self._flush()  # what was written is sent, as far as the socket takes it
        self._closing = True
        if self.transport is not None:
            self.transport.abort()

    def _close(self) -> None:
        self._flush()
        self._closing = True
        if self.transport is not None:
            self.transport.close()


def _raiser(error: HTTPError) -> Handler:
    async def handler(request: Request) -> StreamResponse:
        raise error

    return handler


class Server:
    """An App on a listening socket: `start`, then `stop` (or `close`)."""

    def __init__(
        self,
        app: App,
        *,
        keepalive_timeout: float = 75.0,
        shutdown_timeout: float = 8.0,
    ) -> None:
        self.app = app
        self.keepalive_timeout = keepalive_timeout
        self.shutdown_timeout = shutdown_timeout
        self.connections: set[_HttpConnection] = set()
        self.stopping = False
        self.loop = asyncio.get_running_loop()
        self._server: asyncio.Server | None = None
        self._contexts: list[AsyncIterator[None]] = []
        self._sweeper: asyncio.TimerHandle | None = None

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the server is not listening")
        return int(self._server.sockets[0].getsockname()[1])

    async def start(
        self, host: str, port: int, *, reuse_port: bool = False, backlog: int = 2048
    ) -> None:
        """Bind the port, run the cleanup contexts' start-up halves, then accept
        connections; a failure on the way runs the closing halves of the contexts
        that had started and lets the port go.

        The port is bound first so that nothing a context binds (the demo upstream
        asks for any free port) can take it, and a port in use fails before any
        start-up work; connections are refused until every context has started."""
        self._server = await self.loop.create_server(
            lambda: _HttpConnection(self),
            host,
            port,
            reuse_port=reuse_port or None,
            backlog=backlog,
            family=socket.AF_UNSPEC,
            start_serving=False,
        )
        try:
            for factory in self.app.cleanup_ctx:
                context = factory(self.app)
                await anext(context)
                self._contexts.append(context)
            await self._server.start_serving()
        except BaseException:
            self._server.close()
            self._server = None
            await self._cleanup()
            raise
        self._sweep()

    def _sweep(self) -> None:
        """Close connections whose client went silent: one timer for all of them, so
        a request costs no timer of its own (a silent client goes within 1.25x
        `keepalive_timeout`)."""
        now = self.loop.time()
        timeout = self.keepalive_timeout
        for conn in [c for c in self.connections if c.idle_too_long(now, timeout)]:
            conn._close()
        self._sweeper = self.loop.call_later(timeout / 4, self._sweep)

    async def stop(self) -> None:
        """Stop listening, let running requests finish for `shutdown_timeout`
        seconds, cancel what is left, then run the cleanup contexts' closing halves."""
        if self.stopping:
            return
        self.stopping = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._server is not None:
            self._server.close()
        deadline = self.loop.time() + self.shutdown_timeout
        while self.connections and self.loop.time() < deadline:
            for conn in list(self.connections):
                conn.close_if_idle()
            busy = [c._task for c in self.connections if c._task is not None]
            if not busy:
                await asyncio.sleep(0.01)
                continue
            await asyncio.wait(busy, timeout=max(0.0, deadline - self.loop.time()))
        left = [c._task for c in self.connections if c._task is not None]
        for task in left:
            task.cancel()
        for conn in list(self.connections):
            conn._abort()
        if left:  # let the cancelled handlers unwind before their resources close
            await asyncio.wait(left, timeout=1.0)
        await self._cleanup()

    close = stop

    async def _cleanup(self) -> None:
        errors: list[BaseException] = []
        while self._contexts:
            context = self._contexts.pop()
            try:
                await anext(context)
            except StopAsyncIteration:
                pass
            except Exception as exc:
                errors.append(exc)
            else:
                errors.append(RuntimeError(f"{context!r} has more than one yield"))
        if errors:
            raise errors[0]


def run(
    app: App,
    *,
    host: str,
    port: int,
    reuse_port: bool = False,
    backlog: int = 2048,
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
) -> None:
    """Serve `app` until SIGINT or SIGTERM; OSError when the port cannot be bound."""

    async def main() -> None:
        server = Server(app)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await server.start(host, port, reuse_port=reuse_port, backlog=backlog)
        try:
            await stop.wait()
        finally:
            await server.stop()

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(main())
