"""The proxy's own HTTP/1.1 server (aiclient.http_server), spoken to in raw bytes.

Each test starts a `Server` on 127.0.0.1, writes exact request bytes over a plain TCP
connection and checks the exact framing of what comes back: status lines, headers,
Content-Length and chunked bodies, when the connection closes. A few use aiohttp's
client where a real client is the clearer witness.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import re
import socket
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from aiclient import http_server
from aiclient.http_server import (
    App,
    Handler,
    HTTPError,
    Request,
    Response,
    Server,
    StreamResponse,
)

# -- harness -------------------------------------------------------------------------

WAIT = 2.0  # the bound on any single wait for the server; tests never get near it


async def render_errors(request: Request, handler: Handler) -> StreamResponse:
    """The smallest middleware: an HTTPError (404, 405, 413...) becomes its answer."""
    try:
        return await handler(request)
    except HTTPError as exc:
        return Response(status=exc.status, headers=exc.headers, body=exc.reason.encode())


def make_app(client_max_size: int = 1024**2) -> App:
    return App(middleware=render_errors, client_max_size=client_max_size)


def text(body: str, **headers: str) -> Handler:
    async def handler(request: Request) -> StreamResponse:
        return Response(text=body, headers=headers, content_type="text/plain")

    return handler


async def echo(request: Request) -> StreamResponse:
    return Response(body=await request.read())


def streaming(*parts: bytes, eof: bool = True) -> Handler:
    async def handler(request: Request) -> StreamResponse:
        resp = StreamResponse(headers={"Content-Type": "text/plain"})
        await resp.prepare(request)
        for part in parts:
            await resp.write(part)
        if eof:
            await resp.write_eof()
        return resp

    return handler


def hanging() -> tuple[Handler, asyncio.Event, asyncio.Event]:
    """A handler that never answers, and the events it sets when it starts and when
    it is cancelled."""
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def hang(request: Request) -> StreamResponse:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return Response()

    return hang, started, cancelled


@dataclass
class Reply:
    """One answer as it came over the wire."""

    status: int
    status_line: str
    headers: list[tuple[str, str]]
    body: bytes
    chunks: list[bytes] | None = None  # a chunked body's chunks, as they were framed

    def values(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def get(self, name: str) -> str | None:
        found = self.values(name)
        assert len(found) <= 1, f"{name} sent {len(found)} times: {found}"
        return found[0] if found else None

    def json(self) -> object:
        return json.loads(self.body)


async def read_chunked(reader: asyncio.StreamReader) -> list[bytes]:
    """A chunked body, strictly: lower-case hex sizes, CRLF after each chunk, no
    extensions and no trailers."""
    chunks: list[bytes] = []
    while True:
        line = await reader.readuntil(b"\r\n")
        assert re.fullmatch(rb"[0-9a-f]+\r\n", line), line
        size = int(line[:-2], 16)
        if size == 0:
            assert await reader.readexactly(2) == b"\r\n"
            return chunks
        chunks.append(await reader.readexactly(size))
        assert await reader.readexactly(2) == b"\r\n"


class Client:
    """A raw TCP client: writes bytes, reads answers by their framing."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def reply(self, *, head_only: bool = False, within: float = WAIT) -> Reply:
        async with asyncio.timeout(within):
            return await self._reply(head_only)

    async def _reply(self, head_only: bool) -> Reply:
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *lines = head[:-4].decode("latin-1").split("\r\n")
        match = re.fullmatch(r"HTTP/1\.1 (\d{3}) .+", status_line)
        assert match, status_line
        status = int(match[1])
        headers = []
        for line in lines:
            name, sep, value = line.partition(":")
            assert sep and name and name == name.strip(), line
            headers.append((name, value.strip()))
        reply = Reply(status, status_line, headers, b"")
        if head_only or status in (204, 304) or status < 200:
            return reply
        encoding = reply.get("Transfer-Encoding")
        length = reply.get("Content-Length")
        if encoding is not None:
            assert encoding == "chunked" and length is None, reply.headers
            reply.chunks = await read_chunked(self.reader)
            reply.body = b"".join(reply.chunks)
        elif length is not None:
            reply.body = await self.reader.readexactly(int(length))
        else:  # close-delimited: the body ends when the server closes
            reply.body = await self.reader.read()
        return reply

    async def eof(self, within: float = WAIT) -> bytes:
        """Whatever arrives until the server closes the connection (a reset counts
        as closed); TimeoutError if it stays open for `within` seconds."""
        received = b""
        async with asyncio.timeout(within):
            try:
                while chunk := await self.reader.read(65536):
                    received += chunk
            except ConnectionError:
                pass
        return received

    async def silent_for(self, seconds: float) -> None:
        """Nothing arrives, and the connection stays open, for `seconds`."""
        try:
            async with asyncio.timeout(seconds):
                data = await self.reader.read(1)
        except TimeoutError:
            return
        raise AssertionError(f"expected silence, got {data!r}")

    def close(self) -> None:
        self.writer.close()


StartServer = Callable[..., Awaitable[Server]]
Connect = Callable[[Server], Awaitable[Client]]


@pytest.fixture
async def serve() -> AsyncIterator[StartServer]:
    servers: list[Server] = []

    async def start(
        app: App, *, keepalive_timeout: float = 5.0, shutdown_timeout: float = 0.5
    ) -> Server:
        server = Server(
            app, keepalive_timeout=keepalive_timeout, shutdown_timeout=shutdown_timeout
        )
        await server.start("127.0.0.1", 0)
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    clients: list[Client] = []

    async def open_client(server: Server) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        client = Client(reader, writer)
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        client.writer.transport.abort()


def get(path: str, *headers: str, method: str = "GET", version: str = "1.1") -> bytes:
    lines = [f"{method} {path} HTTP/{version}", "Host: test", *headers, "", ""]
    return "\r\n".join(lines).encode()


def post(path: str, body: bytes, *headers: str) -> bytes:
    return get(path, f"Content-Length: {len(body)}", *headers, method="POST") + body


async def still_serves(server: Server, connect: Connect) -> None:
    """A new connection gets a normal answer."""
    client = await connect(server)
    client.send(get("/", "Connection: close"))
    reply = await client.reply()
    assert (reply.status, reply.body) == (200, b"ok")
    assert await client.eof() == b""


def assert_date(reply: Reply) -> None:
    date = reply.get("Date")
    assert date is not None
    assert re.fullmatch(
        r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT", date
    )
    assert abs(parsedate_to_datetime(date).timestamp() - time.time()) < 5


# -- keep-alive and pipelining -------------------------------------------------------


async def test_keep_alive_serves_two_requests_on_one_connection(
    serve: StartServer, connect: Connect
) -> None:
    app = make_app()
    app.router.add_get("/a", text("alpha"))
    app.router.add_get("/b", text("bravo!"))
    server = await serve(app)
    client = await connect(server)

    client.send(get("/a"))
    first = await client.reply()
    client.send(get("/b"))
    second = await client.reply()

    assert (first.status_line, first.body) == ("HTTP/1.1 200 OK", b"alpha")
    assert (second.status_line, second.body) == ("HTTP/1.1 200 OK", b"bravo!")
    for reply, size in ((first, "5"), (second, "6")):
        assert reply.get("Content-Length") == size
        assert reply.get("Transfer-Encoding") is None
        assert reply.get("Connection") is None  # HTTP/1.1: persistent by default
        assert reply.get("Content-Type") == "text/plain; charset=utf-8"
        assert_date(reply)
    await client.silent_for(0.05)  # and the connection is still open


async def test_pipelined_requests_are_answered_in_order(
    serve: StartServer, connect: Connect
) -> None:
    app = make_app()
    finished: list[str] = []

    def delayed(name: str, delay: float) -> Handler:
        async def handler(request: Request) -> StreamResponse:
            await asyncio.sleep(delay)
            finished.append(name)
            return Response(body=name.encode())

        return handler

    app.router.add_get("/slow", delayed("slow", 0.05))
    app.router.add_get("/fast", delayed("fast", 0))
    app.router.add_get("/mid", delayed("mid", 0.02))
    server = await serve(app)
    client = await connect(server)

    client.send(get("/slow") + get("/fast") + get("/mid"))  # one write
    bodies = [(await client.reply()).body for _ in range(3)]

    assert bodies == [b"slow", b"fast", b"mid"]
    assert finished == ["slow", "fast", "mid"]


# -- HTTP/1.0 ------------------------------------------------------------------------


async def test_http10_whole_response_has_length_and_closes(
    serve: StartServer, connect: Connect
) -> None:
    app = make_app()
    app.router.add_get("/", text("ok"))
    server = await serve(app)
    client = await connect(server)

    client.send(b"GET / HTTP/1.0\r\n\r\n")
    reply = await client.reply()

    assert reply.status == 200 and reply.body == b"ok"
    assert reply.get("Content-Length") == "2"
    assert reply.get("Transfer-Encoding") is None
    assert reply.get("Connection") == "close"
    assert await client.eof() == b""


async def test_http10_stream_is_close_delimited(
    serve: StartServer, connect: Connect
) -> None:
    app = make_app()
    app.router.add_get("/stream", streaming(b"one ", b"two ", b"three"))
    server = await serve(app)
    client = await connect(server)

    client.send(b"GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    reply = await client.reply()  # read to EOF: it must come

    assert reply.status == 200
    assert reply.get("Transfer-Encoding") is None
    assert reply.get("Content-Length") is None
    assert reply.get("Connection") == "close"
    assert reply.body == b"one two three"  # raw, no chunk framing


async def test_http10_keep_alive_with_whole_response_stays_open(
    serve: StartServer, connect: Connect
) -> None:
    app = make_app()
    app.router.add_get("/", text("ok"))
    server = await serve(app)
    client = await connect(server)

    for _ in range(2):
        client.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        reply = await client.reply()
        assert reply.status == 200 and reply.body == b"ok"
        assert reply.get("Connection") == "keep-alive"
        assert reply.get("Content-Length") == "2"
    await client.silent_for(0.05)


# -- request bodies ------------------------------------------------------------------


async def test_chunked_request_body_is_read_whole(
    serve: StartServer, connect: Connect
) -> None:
    app = make_app()
    app.router.add_post("/echo", echo)
    server = await serve(app)
    client = await connect(server)

    head = get("/echo", "Transfer-Encoding: chunked", method="POST")
    body = b"3\r\nHel\r\n4\r\nlo, \r\n" + b"1a\r\n" + b"w" * 26 + b"\r\n0\r\n\r\n"
    client.send(head + body[:9])  # split inside the second chunk-size line
    await client.writer.drain()
    await asyncio.sleep(0.02)
    client.send(body[9:])
    reply = await client.reply()

    assert reply.status == 200
    assert reply.body == b"Hello, " + b"w" * 26
    client.send(get("/echo", method="POST", version="1.1"))  # and the framing held
    assert (await client.reply()).body == b""


async def test_content_length_over_limit_is_refused_before_the_body(
    serve: StartServer, connect: Connect
) -> None:
    app = make_app(client_max_size=1000)
    read = []

    async def handler(request: Request) -> StreamResponse:
        read.append(await request.read())
        return Response(body=b"read it")

    app.router.add_post("/upload", handler)
    app.router.add_get("/", text("ok"))
    server = await serve(app)
    client = await connect(server)

    client.send(
        get("/upload", "Content-Length: 5000", "Expect: 100-continue", method="POST")
    )
    reply = await client.reply()

    assert reply.status == 413  # first thing on the wire: no "100 Continue" before it
    assert read == []
    assert await client.eof() == b""
    await still_serves(server, connect)
    # the server closes after this answer, so the answer must say so
    assert reply.get("Connection") == "close"


async def test_large_upload_from_aiohttp_gets_413(serve: StartServer) -> None:
    app = make_app(client_max_size=1024**2)
    app.router.add_post("/echo", echo)
    server = await serve(app)
    url = f"http://127.0.0.1:{server.port}/echo"
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=io.BytesIO(b"x" * 8 * 1024**2)) as resp:
            assert resp.status == 413
            assert await resp.read() == b"Request Entity Too Large"
        at_limit = io.BytesIO(b"x" * 1024**2)
        async with session.post(url, data=at_limit) as resp:
            assert resp.status == 200
            assert len(await resp.read()) == 1024**2


async def test_chunked_body_growing_past_the_limit_is_413(
    serve: StartServer, connect: Connect
) -> None:
    app = make_app(client_max_size=1000)
    app.router.add_post("/echo", echo)
    server = await serve(app)
    client = await connect(server)

    chunk = b"x" * 400
    body = b"".join(b"190\r\n%s\r\n" % chunk for _ in range(4)) + b"0\r\n\r\n"
    client.send(get("/echo", "Transfer-Encoding: chunked", method="POST") + body)
    reply = await client.reply()

    assert reply.status == 413
    assert b"x" not in reply.body


async def test_expect_100_continue_is_answered_when_the_handler_reads(
    serve: StartServer, connect: Connect
) -> None:
    app = make_app()
    gate = asyncio.Event()

    async def handler(request: Request) -> StreamResponse:
        await gate.wait()
        return Response(body=b"got " + await request.read())

    app.router.add_post("/upload", handler)
    server = await serve(app)
    client = await connect(server)

    client.send(get("/upload", "Content-Length: 5", "Expect: 100-continue", method="POST"))
    await client.silent_for(0.1)  # the handler has not read yet: no 100
    gate.set()
    async with asyncio.timeout(WAIT):
        interim = await client.reader.readuntil(b"\r\n\r\n")
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    client.send(b"hello")
    reply = await client.reply()

    assert (reply.status, reply.body) == (200, b"got hello")
    assert reply.get("Content-Length") == "9"


# -- malformed input -----------------------------------------------------------------

MALFORMED = {
    "garbage request line": (b"THIS IS NOT HTTP AT ALL\r\n\r\n", 400),
    "length and chunked": (
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    "non-numeric length": (
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 12abc\r\n\r\n",
        400,
    ),
    "header block over 64 KiB": (
        b"GET / HTTP/1.1\r\nHost: t\r\n"
        + b"".join(b"X-Fill-%d: %s\r\n" % (i, b"v" * 1000) for i in range(70))
        + b"\r\n",
        431,
    ),
    "one header over 64 KiB": (
        b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"v" * 70_000 + b"\r\n\r\n",
        431,
    ),
    "url over 64 KiB": (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414),
}


@pytest.mark.parametrize(("wire", "status"), MALFORMED.values(), ids=MALFORMED.keys())
async def test_malformed_request_is_refused_with_json_and_closed(
    serve: StartServer, connect: Connect, wire: bytes, status: int
) -> None:
    app = make_app()
    app.router.add_get("/", text("ok"))
    app.router.add_post("/echo", echo)
    server = await serve(app)
    client = await connect(server)

    client.send(wire)
    reply = await client.reply()

    assert reply.status == status
    assert reply.get("Content-Type") == "application/json"
    error = reply.json()
    assert isinstance(error, dict)
    assert error["error"]["type"] == "invalid_request_error"
    assert reply.get("Connection") == "close"
    assert await client.eof() == b""
    await still_serves(server, connect)


# -- routing -------------------------------------------------------------------------


def routed_app() -> App:
    app = make_app()
    app.router.add_get("/", text("ok"))
    app.router.add_get("/thing", text("a thing"))
    app.router.add_post("/thing", text("posted"))
    app.router.add_put("/only-put", text("put"))
    app.router.add_get("/stream", streaming(b"streamed"))

    async def params(request: Request) -> StreamResponse:
        body = json.dumps(request.match_info, sort_keys=True).encode()
        return Response(body=body, content_type="application/json")

    async def query(request: Request) -> StreamResponse:
        pairs = list(request.query.items())
        return Response(body=json.dumps(pairs).encode(), content_type="application/json")

    async def path(request: Request) -> StreamResponse:
        return Response(text=request.path)

    app.router.add_get("/users/{uid}/posts/{pid}", params)
    app.router.add_get("/files/{name}", params)
    app.router.add_delete("/files/{name}", params)
    app.router.add_get("/café", path)
    app.router.add_get("/q", query)
    return app


async def test_unknown_path_is_404(serve: StartServer, connect: Connect) -> None:
    server = await serve(routed_app())
    client = await connect(server)

    client.send(get("/nothing-here") + get("/thing/"))
    assert (await client.reply()).status == 404
    assert (await client.reply()).status == 404
    client.send(get("/thing"))  # keep-alive survives a 404
    assert (await client.reply()).body == b"a thing"


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/thing", {"GET", "HEAD", "POST"}),
        ("/only-put", {"PUT"}),
        ("/files/x", {"GET", "HEAD", "DELETE"}),
    ],
)
async def test_wrong_method_is_405_with_allow(
    serve: StartServer, connect: Connect, path: str, allowed: set[str]
) -> None:
    server = await serve(routed_app())
    client = await connect(server)

    client.send(get(path, method="PATCH"))
    reply = await client.reply()

    assert reply.status == 405
    allow = reply.get("Allow")
    assert allow is not None
    assert {m.strip() for m in allow.split(",")} == allowed


@pytest.mark.parametrize(("path", "length"), [("/thing", "7"), ("/stream", None)])
async def test_head_on_get_route_sends_headers_only(
    serve: StartServer, connect: Connect, path: str, length: str | None
) -> None:
    server = await serve(routed_app())
    client = await connect(server)

    client.send(get(path, method="HEAD"))
    head = await client.reply(head_only=True)
    client.send(get(path))
    full = await client.reply()  # parses only if HEAD's answer carried no body bytes

    assert head.status == 200
    assert head.get("Content-Length") == length
    assert full.status == 200
    assert full.body == (b"a thing" if length else b"streamed")
    assert head.get("Transfer-Encoding") == full.get("Transfer-Encoding")


async def test_header_values_are_read_as_utf8_and_never_fail(
    serve: StartServer, connect: Connect
) -> None:
    """UTF-8 in a header value reads as the client meant it; bytes that are not UTF-8
    still read (as Latin-1) instead of failing the request."""
    app = make_app()
    seen: list[str] = []

    async def echo(request: Request) -> StreamResponse:
        seen.append(request.headers["X-Name"])
        return Response(body=b"ok")

    app.router.add_get("/h", echo)
    server = await serve(app)
    client = await connect(server)
    for raw in ("Zoë 名前".encode(), b"caf\xe9"):
        client.send(get("/h").replace(b"Host: test", b"X-Name: " + raw))
        assert (await client.reply()).status == 200
    assert seen == ["Zoë 名前", "café"]


async def test_path_parameters_and_percent_decoding(
    serve: StartServer, connect: Connect
) -> None:
    server = await serve(routed_app())
    client = await connect(server)

    client.send(get("/users/42/posts/7"))
    assert json.loads((await client.reply()).body) == {"pid": "7", "uid": "42"}
    client.send(get("/files/hello%20w%C3%B6rld"))
    assert json.loads((await client.reply()).body) == {"name": "hello wörld"}
    client.send(get("/caf%C3%A9"))
    reply = await client.reply()
    assert (reply.status, reply.body.decode()) == (200, "/café")
    client.send(get("/users/1/2/posts/3"))  # {uid} is one segment
    assert (await client.reply()).status == 404


async def test_query_parsing_with_aiohttp(serve: StartServer) -> None:
    server = await serve(routed_app())
    url = URL(f"http://127.0.0.1:{server.port}/q?a=1&b=&a=2&c&d=x%20y+z", encoded=True)
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        assert resp.status == 200
        pairs = await resp.json()
    assert pairs == [["a", "1"], ["b", ""], ["a", "2"], ["c", ""], ["d", "x y z"]]


async def test_routes_through_aiohttp_session_reuse_one_connection(
    serve: StartServer,
) -> None:
    server = await serve(routed_app())
    base = f"http://127.0.0.1:{server.port}"
    opened: list[object] = []

    async def on_connection(*args: object) -> None:
        opened.append(args)

    trace = aiohttp.TraceConfig()
    trace.on_connection_create_end.append(on_connection)
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        for _ in range(3):
            async with session.get(f"{base}/users/u1/posts/p9") as resp:
                assert await resp.json() == {"pid": "p9", "uid": "u1"}
        async with session.post(f"{base}/thing", data=b"ignored") as resp:
            assert await resp.text() == "posted"
        async with session.delete(f"{base}/thing") as resp:
            assert resp.status == 405
            assert set(resp.headers["Allow"].split(", ")) == {"GET", "HEAD", "POST"}
    assert len(opened) == 1  # one kept-alive connection served them all


# -- streamed answers ----------------------------------------------------------------


async def test_chunked_framing_is_exact(serve: StartServer, connect: Connect) -> None:
    app = make_app()
    app.router.add_get("/stream", streaming(b"hello", b"", b"world!", b"x" * 300))
    server = await serve(app)
    client = await connect(server)

    client.send(get("/stream"))
    async with asyncio.timeout(WAIT):
        head = await client.reader.readuntil(b"\r\n\r\n")
        expected = b"5\r\nhello\r\n6\r\nworld!\r\n12c\r\n" + b"x" * 300 + b"\r\n0\r\n\r\n"
        body = await client.reader.readexactly(len(expected))

    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nTransfer-Encoding: chunked\r\n" in head
    assert b"Content-Length" not in head
    assert body == expected
    client.send(get("/stream"))  # nothing stray between the two answers
    assert (await client.reply()).chunks == [b"hello", b"world!", b"x" * 300]


async def test_a_stream_written_in_one_step_is_one_send(
    serve: StartServer, connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Head and first chunk, or last chunk and end mark, written in one step of the
    handler go out in one send (each send is a system call and a wake-up of the
    client); a step that awaits in between sends what it had."""
    sends: list[bytes] = []
    made = http_server._HttpConnection.connection_made

    def counting(
        conn: http_server._HttpConnection, transport: asyncio.BaseTransport
    ) -> None:
        made(conn, transport)
        write = transport.write  # type: ignore[attr-defined]

        def counted(data: bytes) -> None:
            sends.append(bytes(data))
            write(data)

        transport.write = counted  # type: ignore[attr-defined]

    monkeypatch.setattr(http_server._HttpConnection, "connection_made", counting)
    gate = asyncio.Event()

    async def handler(request: Request) -> StreamResponse:
        resp = StreamResponse(headers={"Content-Type": "text/plain"})
        await resp.prepare(request)
        await resp.write(b"first")
        await gate.wait()
        await resp.write(b"last")
        await resp.write_eof()
        return resp

    app = make_app()
    app.router.add_get("/s", handler)
    server = await serve(app)
    client = await connect(server)
    client.send(get("/s"))
    async with asyncio.timeout(WAIT):
        await client.reader.readuntil(b"5\r\nfirst\r\n")
    assert len(sends) == 1
    assert sends[0].startswith(b"HTTP/1.1 200 OK\r\n")
    gate.set()
    reply_tail = b"4\r\nlast\r\n0\r\n\r\n"
    async with asyncio.timeout(WAIT):
        assert await client.reader.readexactly(len(reply_tail)) == reply_tail
    assert sends[1:] == [reply_tail]


async def test_stream_without_write_eof_is_terminated(
    serve: StartServer, connect: Connect
) -> None:
    app = make_app()
    app.router.add_get("/open", streaming(b"partial", eof=False))
    server = await serve(app)
    client = await connect(server)

    for _ in range(2):
        client.send(get("/open"))
        reply = await client.reply()
        assert reply.chunks == [b"partial"]


@pytest.mark.parametrize("status", [204, 304])
async def test_no_content_answer_has_no_length_and_no_body(
    serve: StartServer, connect: Connect, status: int
) -> None:
    app = make_app()

    async def handler(request: Request) -> StreamResponse:
        return Response(status=status, body=b"must not be sent")

    app.router.add_get("/empty", handler)
    app.router.add_get("/", text("ok"))
    server = await serve(app)
    client = await connect(server)

    client.send(get("/empty") + get("/"))
    async with asyncio.timeout(WAIT):
        head = await client.reader.readuntil(b"\r\n\r\n")
        following = await client.reader.readuntil(b"\r\n")

    assert head.startswith(b"HTTP/1.1 %d " % status)
    assert b"Content-Length" not in head
    assert b"Transfer-Encoding" not in head
    assert following == b"HTTP/1.1 200 OK\r\n"  # the next answer, not a body


# -- disconnects and timeouts --------------------------------------------------------


@pytest.mark.parametrize("how", ["close", "reset"])
async def test_client_disconnect_cancels_the_handler(
    serve: StartServer, connect: Connect, how: str
) -> None:
    """ "close" is how clients hang up (an ordinary close: FIN); "reset" is an abortive
    close (RST). Either way the handler, and the upstream request it makes, ends."""
    app = make_app()
    hang, started, cancelled = hanging()
    app.router.add_get("/hang", hang)
    server = await serve(app)
    client = await connect(server)

    client.send(get("/hang"))
    async with asyncio.timeout(WAIT):
        await started.wait()
    if how == "reset":
        sock = client.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()

    async with asyncio.timeout(1.0):
        await cancelled.wait()


@pytest.mark.parametrize("after_request", [True, False], ids=["kept-alive", "fresh"])
async def test_idle_connection_is_closed(
    serve: StartServer, connect: Connect, after_request: bool
) -> None:
    app = make_app()
    app.router.add_get("/", text("ok"))
    server = await serve(app, keepalive_timeout=0.2)
    loop = asyncio.get_running_loop()
    opened = loop.time()
    client = await connect(server)

    if after_request:
        client.send(get("/"))
        assert (await client.reply()).body == b"ok"
        opened = loop.time()
    assert await client.eof(within=1.0) == b""
    idle = loop.time() - opened

    assert 0.15 <= idle <= 0.5


async def test_slow_handler_is_not_cut_by_the_idle_timeout(
    serve: StartServer, connect: Connect
) -> None:
    app = make_app()

    async def slow(request: Request) -> StreamResponse:
        await asyncio.sleep(0.5)
        return Response(body=b"finally")

    app.router.add_get("/slow", slow)
    server = await serve(app, keepalive_timeout=0.2)
    client = await connect(server)

    client.send(get("/slow"))
    reply = await client.reply()

    assert (reply.status, reply.body) == (200, b"finally")


async def test_client_silent_mid_body_is_disconnected(
    serve: StartServer, connect: Connect
) -> None:
    app = make_app()
    bodies: list[bytes] = []

    async def handler(request: Request) -> StreamResponse:
        bodies.append(await request.read())
        return Response(body=b"read")

    app.router.add_post("/upload", handler)
    server = await serve(app, keepalive_timeout=0.2)
    client = await connect(server)

    client.send(get("/upload", "Content-Length: 10", method="POST") + b"abc")

    assert await client.eof(within=1.0) == b""
    assert bodies == []


async def test_client_silent_mid_head_is_disconnected(
    serve: StartServer, connect: Connect
) -> None:
    app = make_app()
    app.router.add_get("/", text("ok"))
    server = await serve(app, keepalive_timeout=0.2)
    client = await connect(server)

    client.send(b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow")

    assert await client.eof(within=1.0) == b""


# -- handler errors ------------------------------------------------------------------


async def test_handler_exception_is_500_json_and_the_server_goes_on(
    serve: StartServer, connect: Connect
) -> None:
    app = make_app()

    async def broken(request: Request) -> StreamResponse:
        raise ValueError("secret internals")

    app.router.add_get("/broken", broken)
    app.router.add_get("/", text("ok"))
    server = await serve(app)
    client = await connect(server)

    client.send(get("/broken"))
    reply = await client.reply()
    assert reply.status == 500
    assert reply.get("Content-Type") == "application/json"
    assert reply.json() == {
        "error": {"message": "Internal server error", "type": "server_error"}
    }
    assert b"secret" not in reply.body
    client.send(get("/"))  # same connection
    assert (await client.reply()).body == b"ok"


async def test_exception_after_prepare_sends_what_was_written_then_eof(
    serve: StartServer, connect: Connect
) -> None:
    """The stream is cut where the handler broke (no terminating chunk: visibly
    incomplete to the client), and the server goes on serving."""
    app = make_app()

    async def half(request: Request) -> StreamResponse:
        resp = StreamResponse()
        await resp.prepare(request)
        await resp.write(b"partial")
        raise ValueError("broken mid-stream")

    app.router.add_get("/half", half)
    app.router.add_get("/", text("ok"))
    server = await serve(app)
    client = await connect(server)

    client.send(get("/half"))
    received = await client.eof()

    assert received.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Transfer-Encoding: chunked" in received
    assert received.endswith(b"\r\n\r\n7\r\npartial\r\n")  # what was written, then EOF
    assert not received.endswith(b"0\r\n\r\n")
    await still_serves(server, connect)


async def test_another_answer_after_a_stream_began_drops_the_connection(
    serve: StartServer, connect: Connect
) -> None:
    """A middleware that turns a failure into an error answer after the stream began
    cannot put it on the wire: the connection is dropped (never left open with a
    stream that looks unfinished to the client and finished to the server)."""
    app = make_app()

    async def changes_its_mind(request: Request) -> StreamResponse:
        resp = StreamResponse()
        await resp.prepare(request)
        await resp.write(b"partial")
        return Response(status=500, body=b"too late")

    app.router.add_get("/s", changes_its_mind)
    app.router.add_get("/", text("ok"))
    server = await serve(app)
    client = await connect(server)

    client.send(get("/s"))
    received = await client.eof()

    assert received.endswith(b"7\r\npartial\r\n")
    assert b"too late" not in received
    await still_serves(server, connect)


# -- back-pressure -------------------------------------------------------------------


async def test_streaming_to_a_client_that_does_not_read_blocks_the_handler(
    serve: StartServer, connect: Connect
) -> None:
    total, size = 64 * 1024**2, 64 * 1024
    block = bytes(range(256)) * (size // 256)
    written = [0]
    finished = asyncio.Event()

    def piece(i: int) -> bytes:
        return i.to_bytes(4, "big") + block[4:]

    async def flood(request: Request) -> StreamResponse:
        resp = StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await resp.prepare(request)
        for i in range(total // size):
            await resp.write(piece(i))
            written[0] += size
        await resp.write_eof()
        finished.set()
        return resp

    app = make_app()
    app.router.add_get("/flood", flood)
    server = await serve(app)
    client = await connect(server)

    client.send(get("/flood"))
    await asyncio.sleep(0.5)  # the client reads nothing meanwhile

    assert not finished.is_set()
    assert written[0] < 16 * 1024**2, f"{written[0]} bytes accepted without a reader"
    [conn] = server.connections
    assert conn.transport is not None
    assert conn.transport.get_write_buffer_size() < 1024**2

    digest = hashlib.sha256()
    count = 0
    async with asyncio.timeout(20):
        head = await client.reader.readuntil(b"\r\n\r\n")
        assert b"Transfer-Encoding: chunked" in head
        while True:
            line = await client.reader.readuntil(b"\r\n")
            length = int(line[:-2], 16)
            data = await client.reader.readexactly(length + 2)
            if length == 0:
                break
            digest.update(data[:-2])
            count += length
    expected = hashlib.sha256()
    for i in range(total // size):
        expected.update(piece(i))
    assert count == total
    assert digest.digest() == expected.digest()
    async with asyncio.timeout(WAIT):
        await finished.wait()


# -- stop ----------------------------------------------------------------------------


async def test_stop_finishes_in_flight_requests_and_runs_cleanup(
    connect: Connect,
) -> None:
    app = make_app()
    events: list[str] = []
    started, done = asyncio.Event(), asyncio.Event()

    def context(name: str) -> Callable[[App], AsyncIterator[None]]:
        async def ctx(app: App) -> AsyncIterator[None]:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", server.port)
                writer.close()
                events.append(f"{name} start while accepting connections")
            except ConnectionRefusedError:
                events.append(f"{name} start")
            yield
            events.append(f"{name} stop")

        return ctx

    async def slow(request: Request) -> StreamResponse:
        started.set()
        await asyncio.sleep(0.2)
        events.append("handler done")
        done.set()
        return Response(body=b"finished")

    app.router.add_get("/slow", slow)
    app.router.add_get("/", text("ok"))
    app.cleanup_ctx.append(context("a"))
    app.cleanup_ctx.append(context("b"))
    server = Server(app, keepalive_timeout=5.0, shutdown_timeout=2.0)
    await server.start("127.0.0.1", 0)
    port = server.port
    assert events == ["a start", "b start"]

    idle = await connect(server)
    idle.send(get("/"))
    assert (await idle.reply()).body == b"ok"
    busy = await connect(server)
    busy.send(get("/slow"))
    async with asyncio.timeout(WAIT):
        await started.wait()

    async def idle_closed_early() -> bool:
        assert await idle.eof() == b""
        return not done.is_set()

    async with asyncio.timeout(WAIT):
        _, reply, early = await asyncio.gather(
            server.stop(), busy.reply(), idle_closed_early()
        )

    assert (reply.status, reply.body) == (200, b"finished")
    assert reply.get("Connection") == "close"
    assert await busy.eof() == b""
    assert early, "the idle connection was kept until the busy one finished"
    assert events == ["a start", "b start", "handler done", "b stop", "a stop"]
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)


async def test_the_port_is_the_servers_before_any_start_up_work() -> None:
    """The port is bound before the cleanup contexts start: nothing they bind (the
    demo upstream asks the kernel for any free port) can take it. A port in use
    fails the start before any context has run."""
    app = make_app()
    events: list[str] = []

    async def binds(app: App) -> AsyncIterator[None]:
        events.append("start")
        with socket.socket() as other:
            try:
                other.bind(("127.0.0.1", server.port))
                events.append("a context took the server's port")
            except OSError:
                pass
        yield
        events.append("stop")

    app.cleanup_ctx.append(binds)
    server = Server(app)
    await server.start("127.0.0.1", 0)
    port = server.port
    await server.stop()
    assert events == ["start", "stop"]

    events.clear()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        second = Server(app)
        with pytest.raises(OSError, match="in use"):
            await second.start("127.0.0.1", port)
    assert events == []
    with pytest.raises(RuntimeError):
        _ = second.port


async def test_a_failed_start_closes_what_had_started() -> None:
    """A cleanup context that fails to start: those before it are closed again (the
    server's resources never outlive a start that raised), and nothing listens."""
    app = make_app()
    events: list[str] = []

    async def first(app: App) -> AsyncIterator[None]:
        events.append("first start")
        yield
        events.append("first stop")

    def cannot_open() -> None:
        raise OSError("cannot open the pool file")

    async def second(app: App) -> AsyncIterator[None]:
        cannot_open()
        yield

    app.cleanup_ctx += [first, second]
    server = Server(app)
    with pytest.raises(OSError, match="pool file"):
        await server.start("127.0.0.1", 0)
    assert events == ["first start", "first stop"]
    with pytest.raises(RuntimeError):
        _ = server.port


async def test_stop_cancels_what_outlives_the_grace_period(connect: Connect) -> None:
    app = make_app()
    hang, started, cancelled = hanging()
    app.router.add_get("/hang", hang)
    server = Server(app, keepalive_timeout=5.0, shutdown_timeout=0.1)
    await server.start("127.0.0.1", 0)
    client = await connect(server)
    client.send(get("/hang"))
    async with asyncio.timeout(WAIT):
        await started.wait()

    async with asyncio.timeout(1.0):
        await server.stop()

    assert cancelled.is_set()
    assert await client.eof() == b""


# -- protocol details ----------------------------------------------------------------

H2C = (
    "Connection: Upgrade, HTTP2-Settings",
    "Upgrade: h2c",
    "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA",
)


@pytest.mark.parametrize("together", [False, True], ids=["separate", "one-write"])
async def test_h2c_upgrade_is_served_as_http11(
    serve: StartServer, connect: Connect, together: bool
) -> None:
    app = make_app()
    app.router.add_get("/", text("ok"))
    app.router.add_get("/second", text("second"))
    server = await serve(app)
    client = await connect(server)

    if together:
        client.send(get("/", *H2C) + get("/second"))
    else:
        client.send(get("/", *H2C))
    first = await client.reply()
    if not together:
        client.send(get("/second"))
    second = await client.reply()

    assert first.status_line == "HTTP/1.1 200 OK" and first.body == b"ok"
    assert first.get("Upgrade") is None
    assert second.body == b"second"


async def test_h2c_upgrade_with_a_body_gets_its_body(
    serve: StartServer, connect: Connect
) -> None:
    """The body of a POST that asks to upgrade is that POST's body, not a second
    request (which would let a client smuggle one past a front proxy)."""
    app = make_app()
    app.router.add_post("/echo", echo)
    seen: list[str] = []

    async def secret(request: Request) -> StreamResponse:
        seen.append(request.path)
        return Response(body=b"smuggled")

    app.router.add_get("/secret", secret)
    server = await serve(app)
    client = await connect(server)

    inner = get("/secret")
    client.send(post("/echo", inner, *H2C))
    reply = await client.reply()
    try:
        async with asyncio.timeout(0.1):
            more = await client.reader.read(65536)
    except TimeoutError:
        more = b""

    assert seen == [], f"the body was served as a request; the client got {more!r}"
    assert (reply.status, reply.body) == (200, inner)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("X-Evil", "a\r\nSet-Cookie: injected=1"),
        ("X-Evil", "a\nSet-Cookie: injected=1"),
        ("X-Evil", "a\rSet-Cookie: injected=1"),
        ("X-Evil\r\nSet-Cookie", "injected=1"),
        ("X-Evil\rSet-Cookie", "injected=1"),
    ],
    ids=["value-crlf", "value-lf", "value-cr", "name-crlf", "name-cr"],
)
async def test_header_with_cr_or_lf_is_not_emitted(
    serve: StartServer, connect: Connect, name: str, value: str
) -> None:
    app = make_app()
    app.router.add_get("/", text("ok", **{name: value, "X-Fine": "yes"}))
    server = await serve(app)
    client = await connect(server)

    client.send(get("/"))
    async with asyncio.timeout(WAIT):
        head = await client.reader.readuntil(b"\r\n\r\n")
        assert await client.reader.readexactly(2) == b"ok"
    client.send(get("/"))
    reply = await client.reply()  # the stream is still in sync

    lines = head[:-4].split(b"\r\n")
    assert all(b"\r" not in line and b"\n" not in line for line in lines), lines
    assert b"injected" not in head
    assert b"X-Fine: yes" in lines
    assert reply.body == b"ok"


async def test_connection_header_reflects_what_the_server_does(
    serve: StartServer, connect: Connect
) -> None:
    app = make_app()
    app.router.add_get("/events", text("data", Connection="keep-alive"))
    server = await serve(app)
    client = await connect(server)

    client.send(get("/events"))
    kept = await client.reply()
    assert kept.values("Connection") == ["keep-alive"]
    await client.silent_for(0.05)

    client.send(get("/events", "Connection: close"))
    closing = await client.reply()
    assert closing.values("Connection") == ["close"]
    assert closing.body == b"data"
    assert await client.eof() == b""


# -- fuzzing -------------------------------------------------------------------------

VALID = [
    get("/"),
    get("/", "Connection: close"),
    post("/echo", b"hello"),
    get("/echo", "Transfer-Encoding: chunked", method="POST") + b"5\r\nhello\r\n0\r\n\r\n",
    get("/stream", version="1.0"),
    get("/stream"),
    get("/", method="HEAD"),
    get("/nope?a=1&b=%zz"),
    post("/echo", b"x", "Expect: 100-continue"),
]


@st.composite
def mutated_requests(draw: st.DrawFn) -> bytes:
    data = bytearray(
        b"".join(draw(st.lists(st.sampled_from(VALID), min_size=1, max_size=3)))
    )
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["insert", "delete", "replace", "truncate"]))
        if kind == "insert":
            data[at:at] = draw(
                st.binary(min_size=1, max_size=8)
                | st.sampled_from([b"\r\n", b"\n", b"\r", b":", b" ", b"\x00", b"%", b"0"])
            )
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 6))]
        elif kind == "replace" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif kind == "truncate":
            del data[at:]
    return bytes(data)


@dataclass
class Fuzz:
    """One server for all of a fuzz test's examples."""

    server: Server | None = None


@pytest.fixture
def fuzz() -> Fuzz:
    return Fuzz()


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.binary(max_size=200) | mutated_requests())
async def test_arbitrary_bytes_never_break_the_server(
    serve: StartServer, connect: Connect, fuzz: Fuzz, data: bytes
) -> None:
    if fuzz.server is None:
        app = make_app(client_max_size=64)
        app.router.add_get("/", text("ok"))
        app.router.add_post("/echo", echo)
        app.router.add_get("/stream", streaming(b"a", b"b"))
        fuzz.server = await serve(app, keepalive_timeout=0.2)
    server = fuzz.server

    client = await connect(server)
    client.send(data)
    client.writer.write_eof()
    received = await client.eof()
    client.close()

    assert received == b"" or received.startswith(b"HTTP/1.1 "), received[:80]
    assert not received.startswith(b"HTTP/1.1 5"), received[:200]
    await still_serves(server, connect)
