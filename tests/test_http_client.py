"""The upstream HTTP client against raw asyncio servers that write exact bytes.

Each server is a handler per accepted connection, so framing, pauses between TCP
writes, stalls and abrupt closes are all under the test's control.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import inspect
import socket
import ssl
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
import trustme

from aiclient import http_client
from aiclient.http_client import (
    ConnectError,
    Disconnected,
    HttpClient,
    InvalidRequest,
    InvalidResponse,
    ReadTimeout,
    Response,
    _Target,
)

# -- raw servers -------------------------------------------------------------------


@dataclass
class Request:
    """One request as the server received it."""

    line: str
    headers: list[tuple[str, str]]
    body: bytes

    def values(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


class Peer:
    """One accepted connection, as a handler sees it."""

    def __init__(
        self, server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer

    async def request(self) -> Request | None:
        """The next request on this connection, or None once the client closed it."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        line, *rest = head.decode("latin-1").split("\r\n")
        headers = [
            (name, value.strip())
            for name, _, value in (h.partition(":") for h in rest if h)
        ]
        request = Request(line, headers, b"")
        lengths = request.values("content-length")
        if lengths:
            request.body = await self.reader.readexactly(int(lengths[0]))
        self.server.requests.append(request)
        return request

    async def send(self, *pieces: bytes, pause: float = 0.0) -> None:
        """Write `pieces` as separate TCP writes, `pause` seconds apart."""
        for i, piece in enumerate(pieces):
            if i and pause:
                await asyncio.sleep(pause)
            self.writer.write(piece)
            await self.writer.drain()


Handler = Callable[[Peer], Awaitable[None]]


@dataclass
class RawServer:
    handler: Handler
    connections: int = 0
    requests: list[Request] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _writers: list[asyncio.StreamWriter] = field(default_factory=list)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    tls: ssl.SSLContext | None = None

    def url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{host}:{self.port}{path}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.append(writer)
        try:
            await self.handler(Peer(self, reader, writer))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client hung up first
        finally:
            writer.close()
            self._tasks.discard(task)

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        # Handlers are ended, not cancelled: Python 3.11's start_server logs an error
        # for a handler task that was cancelled.
        self.stopping.set()
        for writer in self._writers:
            writer.close()
        async with asyncio.timeout(2):
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()


StartServer = Callable[[Handler], Awaitable[RawServer]]
MakeClient = Callable[..., HttpClient]


@asynccontextmanager
async def raw_servers() -> AsyncIterator[StartServer]:
    servers: list[RawServer] = []

    async def start(handler: Handler) -> RawServer:
        server = RawServer(handler)
        await server.start()
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in servers:
            await server.stop()


@asynccontextmanager
async def http_clients() -> AsyncIterator[MakeClient]:
    clients: list[HttpClient] = []

    def make(*, read_timeout: float = 1.0, keepalive_timeout: float = 5.0) -> HttpClient:
        client = HttpClient(
            connect_timeout=1.0,
            read_timeout=read_timeout,
            keepalive_timeout=keepalive_timeout,
        )
        clients.append(client)
        return client

    try:
        yield make
    finally:
        for client in clients:
            await client.close()


@pytest.fixture
async def serve() -> AsyncIterator[StartServer]:
    async with raw_servers() as start:
        yield start


@pytest.fixture
async def make_client() -> AsyncIterator[MakeClient]:
    async with http_clients() as make:
        yield make


@pytest.fixture
def client(make_client: MakeClient) -> HttpClient:
    return make_client()


def answer(body: bytes = b"ok", *headers: str, status: str = "200 OK") -> bytes:
    """A complete HTTP/1.1 answer with a Content-Length."""
    extra = "".join(f"{h}\r\n" for h in headers)
    head = f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    return head.encode() + body


def replies(*answers: bytes | tuple[bytes, ...], pause: float = 0.0) -> Handler:
    """Answer the n-th request the server receives with answers[n] (the last one from
    then on), on every connection, until the client hangs up. A tuple answer is sent
    as separate TCP writes `pause` seconds apart."""

    async def handler(peer: Peer) -> None:
        while await peer.request() is not None:
            item = answers[min(len(peer.server.requests), len(answers)) - 1]
            await peer.send(*(item if isinstance(item, tuple) else (item,)), pause=pause)

    return handler


def numbered(make_answer: Callable[[int], bytes]) -> Handler:
    """Answer each request with make_answer(n), n counting requests server-wide from 1."""

    async def handler(peer: Peer) -> None:
        while await peer.request() is not None:
            await peer.send(make_answer(len(peer.server.requests)))

    return handler


async def stall(peer: Peer) -> None:
    """Send nothing more until the test ends."""
    await peer.server.stopping.wait()


async def body_of(resp: Response, via: str) -> bytes:
    if via == "read":
        return await resp.read()
    return b"".join([chunk async for chunk in resp.chunks()])


async def collect(resp: Response, into: list[bytes]) -> None:
    """Read the body with chunks(), keeping what arrived even if it then fails."""
    async for chunk in resp.chunks():
        into.append(chunk)


async def get(client: HttpClient, server: RawServer, path: str = "/") -> Response:
    async with asyncio.timeout(3):
        return await client.request("GET", server.url(path), None, {})


async def until(condition: Callable[[], bool], within: float = 2.0) -> None:
    async with asyncio.timeout(within):
        while not condition():
            await asyncio.sleep(0.005)


def chunked(*parts: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"

# -- body framing --------------------------------------------------------------------

BODY = b"The quick brown fox jumps over the lazy dog. " * 50


@pytest.mark.parametrize("via", ["read", "chunks"])
async def test_content_length_body(
    serve: StartServer, client: HttpClient, via: str
) -> None:
    wire = answer(BODY, "X-Kind: cl")
    server = await serve(
        replies(tuple(wire[i : i + 700] for i in range(0, len(wire), 700)))
    )
    resp = await get(client, server)
    assert resp.status == 200
    assert resp.headers["x-kind"] == "cl"
    assert await body_of(resp, via) == BODY
    assert client.open_connections == 1  # pooled, not closed


@pytest.mark.parametrize("via", ["read", "chunks"])
async def test_chunked_body_split_at_awkward_places(
    serve: StartServer, client: HttpClient, via: str
) -> None:
    parts = [b"a" * 17, b"b" * 300, b"c", b"d" * 4096]
    wire = CHUNKED_HEAD + chunked(*parts)
    # cut inside the head, inside a chunk-size line ("1|1\r\n"), between "\r" and "\n",
    # inside chunk data and inside the final "0\r\n\r\n"
    size_line = wire.index(b"\r\n", len(CHUNKED_HEAD)) - 1
    data = wire.index(b"b" * 300) + 150
    crlf = wire.index(b"\r\n", data) + 1
    cuts = sorted([10, size_line, crlf, data, len(wire) - 3, len(wire)])
    pieces = tuple(wire[a:b] for a, b in zip([0, *cuts], cuts, strict=False))
    assert b"".join(pieces) == wire
    server = await serve(replies(pieces, pause=0.01))
    resp = await get(client, server)
    assert await body_of(resp, via) == b"".join(parts)
    assert client.open_connections == 1


@pytest.mark.parametrize("via", ["read", "chunks"])
async def test_read_until_close_body(
    serve: StartServer, client: HttpClient, via: str
) -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(
            b"HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\n", b"first ", b"second", pause=0.02
        )
        # the handler returns: the server closes, which ends the body

    server = await serve(handler)
    resp = await get(client, server)
    assert resp.status == 200
    assert await body_of(resp, via) == b"first second"
    await until(lambda: client.open_connections == 0)  # never pooled


# -- keep-alive ----------------------------------------------------------------------


async def test_sequential_requests_reuse_one_connection(
    serve: StartServer, client: HttpClient
) -> None:
    server = await serve(numbered(lambda n: answer(f"answer {n}".encode())))
    for n in (1, 2, 3):
        resp = await get(client, server)
        assert await resp.read() == f"answer {n}".encode()
    assert server.connections == 1
    assert client.open_connections == 1


@pytest.mark.parametrize(
    "wire",
    [
        answer(b"bye", "Connection: close"),
        b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nbye",
    ],
    ids=["connection-close", "http-1.0"],
)
async def test_answer_that_refuses_keep_alive_is_not_reused(
    serve: StartServer, client: HttpClient, wire: bytes
) -> None:
    server = await serve(replies(wire))  # the server itself keeps the socket open
    for _ in range(2):
        resp = await get(client, server)
        assert await resp.read() == b"bye"
        assert client.open_connections == 0
    assert server.connections == 2


@pytest.mark.parametrize("how", ["release", "read-limit", "chunks-break"])
async def test_unfinished_body_is_not_reused(
    serve: StartServer, client: HttpClient, how: str
) -> None:
    first_body = b"x" * 5000 + b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nEVIL!"

    async def handler(peer: Peer) -> None:
        while (request := await peer.request()) is not None:
            if len(peer.server.requests) == 1:
                wire = answer(first_body)
                # the rest of the body comes after the client has given up on it
                await peer.send(wire[:1000], wire[1000:], pause=0.1)
            else:
                await peer.send(answer(b"second " + request.line.split()[1].encode()))

    server = await serve(handler)
    resp = await get(client, server, "/1")
    if how == "release":
        resp.release()
    elif how == "read-limit":
        assert await resp.read(10) == b"x" * 10
    else:
        async for chunk in resp.chunks():
            assert chunk.startswith(b"x")
            break
        resp.release()
    assert client.open_connections == 0
    resp2 = await get(client, server, "/2")
    assert await resp2.read() == b"second /2"
    assert server.connections == 2


async def test_idle_connection_closed_by_server_is_dropped(
    serve: StartServer, client: HttpClient
) -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(answer(b"once"))  # keep-alive answer, then the server hangs up

    server = await serve(handler)
    resp = await get(client, server)
    assert await resp.read() == b"once"
    await until(lambda: client.open_connections == 0)  # the close was noticed
    resp = await get(client, server)
    assert await resp.read() == b"once"
    assert server.connections == 2


async def test_idle_connection_past_keepalive_timeout_is_not_reused(
    serve: StartServer, make_client: MakeClient
) -> None:
    client = make_client(keepalive_timeout=0.05)
    server = await serve(numbered(lambda n: answer(b"%d" % n)))
    assert await (await get(client, server)).read() == b"1"
    assert client.open_connections == 1
    await asyncio.sleep(0.12)
    assert await (await get(client, server)).read() == b"2"
    assert server.connections == 2


async def test_expired_idle_connection_is_not_reused_before_the_sweep(
    serve: StartServer, client: HttpClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pool itself checks the age: the periodic sweep may not have run yet."""
    server = await serve(numbered(lambda n: answer(b"%d" % n)))
    assert await (await get(client, server)).read() == b"1"
    later = time.monotonic() + client.keepalive_timeout + 1
    monkeypatch.setattr(http_client, "time", SimpleNamespace(monotonic=lambda: later))
    assert await (await get(client, server)).read() == b"2"
    assert server.connections == 2


async def test_idle_connection_within_keepalive_timeout_is_reused(
    serve: StartServer, make_client: MakeClient
) -> None:
    client = make_client(keepalive_timeout=0.5)
    server = await serve(numbered(lambda n: answer(b"%d" % n)))
    assert await (await get(client, server)).read() == b"1"
    await asyncio.sleep(0.05)
    assert await (await get(client, server)).read() == b"2"
    assert server.connections == 1


async def test_unsolicited_bytes_on_idle_connection_drop_it(
    serve: StartServer, client: HttpClient
) -> None:
    async def handler(peer: Peer) -> None:
        while await peer.request() is not None:
            await peer.send(answer(b"fine"))
            await asyncio.sleep(0.05)
            await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil")

    server = await serve(handler)
    assert await (await get(client, server)).read() == b"fine"
    await until(lambda: client.open_connections == 0)
    assert await (await get(client, server)).read() == b"fine"
    assert server.connections == 2


@pytest.mark.parametrize("pause", [0.0, 0.05], ids=["same-write", "later-write"])
async def test_second_answer_to_one_request_is_not_mixed_in(
    serve: StartServer, client: HttpClient, pause: float
) -> None:
    """An upstream out of step sends two answers to one request: the caller gets the
    first one untouched and the socket is not reused."""
    extra = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nX-Extra: 1\r\n\r\nevil!!"
    first = answer(b"fine", "X-First: 1")

    async def handler(peer: Peer) -> None:
        while await peer.request() is not None:
            if len(peer.server.requests) == 1:
                await peer.send(
                    *((first, extra) if pause else (first + extra,)), pause=pause
                )
            else:
                await peer.send(answer(b"second"))

    server = await serve(handler)
    resp = await get(client, server)
    await asyncio.sleep(pause + 0.05)  # everything has arrived before the body is read
    assert await resp.read() == b"fine"
    assert resp.headers["x-first"] == "1"
    assert "x-extra" not in resp.headers
    assert resp.headers.getall("content-length") == ["4"]
    await until(lambda: client.open_connections == 0)
    assert await (await get(client, server)).read() == b"second"
    assert server.connections == 2


# -- timeouts ------------------------------------------------------------------------


async def test_stall_after_head_raises_read_timeout(
    serve: StartServer, make_client: MakeClient
) -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nsome")
        await stall(peer)

    server = await serve(handler)
    client = make_client(read_timeout=0.2)
    resp = await get(client, server)
    loop = asyncio.get_running_loop()
    start = loop.time()
    got: list[bytes] = []
    with pytest.raises(ReadTimeout) as info:
        await collect(resp, got)
    elapsed = loop.time() - start
    assert isinstance(info.value, TimeoutError)
    assert got == [b"some"]
    assert 0.15 <= elapsed < 1.0
    assert client.open_connections == 0


async def test_no_head_raises_read_timeout(
    serve: StartServer, make_client: MakeClient
) -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await stall(peer)

    server = await serve(handler)
    client = make_client(read_timeout=0.2)
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(ReadTimeout):
        await get(client, server)
    assert 0.15 <= loop.time() - start < 1.0
    assert client.open_connections == 0


async def test_slow_stream_that_keeps_sending_does_not_time_out(
    serve: StartServer, make_client: MakeClient
) -> None:
    parts = [b"part %d;" % i for i in range(10)]
    wire = (CHUNKED_HEAD, *(chunked(p)[: -len(b"0\r\n\r\n")] for p in parts), b"0\r\n\r\n")
    server = await serve(replies(wire, pause=0.05))
    client = make_client(read_timeout=0.2)
    loop = asyncio.get_running_loop()
    start = loop.time()
    resp = await get(client, server)
    got = [chunk async for chunk in resp.chunks()]
    assert loop.time() - start > 0.4  # well past read_timeout in total
    assert b"".join(got) == b"".join(parts)
    assert len(got) >= 5  # it really arrived piece by piece


# -- connection and protocol errors ------------------------------------------------


async def test_refused_connection_raises_connect_error_naming_no_address(
    client: HttpClient,
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # nothing listens on `port` any more
    with pytest.raises(ConnectError) as info:
        await client.request("POST", f"http://127.0.0.1:{port}/v1/chat", b"{}", {})
    message = str(info.value)
    assert "127.0.0.1" not in message
    assert str(port) not in message
    assert "http" not in message
    assert client.open_connections == 0


@pytest.mark.parametrize("via", ["read", "chunks"])
@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789", b"0123456789"),
        (CHUNKED_HEAD + b"5\r\nhello\r\n6\r\n world\r\n10\r\nabc", b"hello worldabc"),
    ],
    ids=["content-length", "chunked"],
)
async def test_connection_cut_mid_body_raises_disconnected(
    serve: StartServer, client: HttpClient, wire: bytes, expected: bytes, via: str
) -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(wire)  # then the server closes

    server = await serve(handler)
    resp = await get(client, server)
    got: list[bytes] = []
    with pytest.raises(Disconnected):
        await (resp.read() if via == "read" else collect(resp, got))
    if via == "chunks":
        assert b"".join(got) == expected
    assert client.open_connections == 0


async def test_connection_closed_before_head_raises_disconnected(
    serve: StartServer, client: HttpClient
) -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-")

    server = await serve(handler)
    with pytest.raises(Disconnected):
        await get(client, server)


@pytest.mark.parametrize(
    "wire",
    [
        b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
    ],
    ids=["not-http", "bad-status", "bad-length"],
)
async def test_garbage_raises_invalid_response(
    serve: StartServer, client: HttpClient, wire: bytes
) -> None:
    server = await serve(replies(wire))
    with pytest.raises(InvalidResponse):
        await get(client, server)
    assert client.open_connections == 0


async def test_garbage_in_chunked_body_raises_invalid_response(
    serve: StartServer, client: HttpClient
) -> None:
    server = await serve(replies((CHUNKED_HEAD + b"5\r\nhello\r\n", b"zz\r\n"), pause=0.02))
    resp = await get(client, server)
    with pytest.raises(InvalidResponse):
        await resp.read()
    assert client.open_connections == 0


# -- content encodings ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [("gzip", gzip.compress), ("x-gzip", gzip.compress), ("deflate", zlib.compress)],
)
@pytest.mark.parametrize("via", ["read", "chunks"])
async def test_compressed_body_is_decoded(
    serve: StartServer,
    client: HttpClient,
    encoding: str,
    compress: Callable[[bytes], bytes],
    via: str,
) -> None:
    plain = b'{"choices": [{"text": "hello"}]}\n' * 500
    packed = compress(plain)
    assert len(packed) < len(plain) // 10
    wire = answer(packed, f"Content-Encoding: {encoding}")
    half = len(wire) - len(packed) // 2
    server = await serve(replies((wire[:half], wire[half:]), pause=0.01))
    resp = await get(client, server)
    assert await body_of(resp, via) == plain
    assert client.open_connections == 1


async def test_compressed_read_until_close_body_is_decoded(
    serve: StartServer, client: HttpClient
) -> None:
    plain = b"stream me " * 1000

    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n")
        await peer.send(gzip.compress(plain))

    server = await serve(handler)
    assert await (await get(client, server)).read() == plain


async def test_unknown_encoding_raises_invalid_response(
    serve: StartServer, client: HttpClient
) -> None:
    server = await serve(replies(answer(b"\x1b\x00", "Content-Encoding: br")))
    with pytest.raises(InvalidResponse):
        await get(client, server)
    assert client.open_connections == 0


async def test_corrupt_compressed_body_raises_invalid_response(
    serve: StartServer, client: HttpClient
) -> None:
    server = await serve(replies(answer(b"not gzip at all", "Content-Encoding: gzip")))
    with pytest.raises(InvalidResponse):
        await (await get(client, server)).read()


# -- the request as the server sees it -----------------------------------------------

SECRET = "sk-very-secret-value"


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": f"Bearer {SECRET}\r\nX-Injected: 1"},
        {"Authorization": f"Bearer {SECRET}\nX-Injected: 1"},
        {"Authorization": f"Bearer {SECRET}\r"},
        {"Authorization": f"Bearer {SECRET}\0"},
        {"X-Name\r\nX-Injected": "1"},
    ],
    ids=["crlf", "lf", "cr", "nul", "in-name"],
)
async def test_header_with_cr_lf_nul_is_rejected_before_sending(
    serve: StartServer, client: HttpClient, headers: dict[str, str]
) -> None:
    server = await serve(replies(answer()))
    with pytest.raises(InvalidRequest) as info:
        await client.request("POST", server.url("/v1"), b"{}", headers)
    assert SECRET not in str(info.value)
    assert "Bearer" not in str(info.value)
    await asyncio.sleep(0.05)
    assert server.connections == 0
    assert server.requests == []
    assert client.open_connections == 0


async def test_request_framing(serve: StartServer, client: HttpClient) -> None:
    server = await serve(replies(answer()))
    body = bytes(range(256)) * 400  # 100 KiB, every byte value
    headers = {
        "host": "evil.example",
        "Content-Length": "3",
        "connection": "close",
        "Transfer-Encoding": "chunked",
        "Authorization": "Bearer k",
        "X-Multi": "a, b",
    }
    resp = await client.request("POST", server.url("/v1/chat?x=1&y=2"), body, headers)
    assert await resp.read() == b"ok"
    (request,) = server.requests
    assert request.line == "POST /v1/chat?x=1&y=2 HTTP/1.1"
    assert request.values("host") == [f"127.0.0.1:{server.port}"]
    assert request.values("content-length") == [str(len(body))]
    assert request.values("connection") == []
    assert request.values("transfer-encoding") == []
    assert request.values("authorization") == ["Bearer k"]
    assert request.values("x-multi") == ["a, b"]
    assert request.values("accept-encoding") == ["gzip, deflate"]
    assert hashlib.sha256(request.body).digest() == hashlib.sha256(body).digest()


async def test_request_framing_without_body_and_own_accept_encoding(
    serve: StartServer, client: HttpClient
) -> None:
    server = await serve(replies(answer()))
    resp = await client.request("GET", server.url(), None, {"Accept-Encoding": "identity"})
    assert await resp.read() == b"ok"
    resp = await client.request("POST", server.url("/empty"), b"", {})
    assert await resp.read() == b"ok"
    first, second = server.requests
    assert first.line == "GET / HTTP/1.1"
    assert first.values("content-length") == []
    assert first.values("accept-encoding") == ["identity"]
    assert second.values("content-length") == ["0"]
    assert server.connections == 1


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("http://example.com/v1", "example.com"),
        ("https://example.com:443/v1", "example.com"),
        ("https://example.com:8443/v1", "example.com:8443"),
        ("http://[::1]:8080/v1", "[::1]:8080"),
    ],
)
def test_host_header_omits_only_the_default_port(url: str, host: str) -> None:
    assert _Target(url).host_header == host


@pytest.mark.parametrize("url", ["ftp://example.com/", "http:///x", "http://h:99999/"])
async def test_bad_url_raises_invalid_request(client: HttpClient, url: str) -> None:
    with pytest.raises(InvalidRequest):
        await client.request("GET", url, None, {})


# -- flow control --------------------------------------------------------------------


async def test_slow_reader_keeps_buffered_bytes_bounded(
    serve: StartServer, client: HttpClient
) -> None:
    block = hashlib.sha256(b"seed").digest() * 2048  # 64 KiB
    body = b"".join(block[i:] + block[:i] for i in range(80))  # 5 MiB
    server = await serve(replies(answer(body)))
    resp = await get(client, server)
    conn = resp._conn
    assert conn is not None
    got: list[bytes] = []
    most = 0
    async for chunk in resp.chunks():
        got.append(chunk)
        # a slow consumer: plenty of time for the server to push the whole body
        await asyncio.sleep(0.2 if len(got) == 1 else 0.002)
        most = max(most, conn._buffered)
    assert hashlib.sha256(b"".join(got)).digest() == hashlib.sha256(body).digest()
    assert most < 1024 * 1024, most  # reading paused well before the 5 MiB arrived
    assert client.open_connections == 1  # and resumed properly: the body completed


# -- interim answers -----------------------------------------------------------------


@pytest.mark.parametrize("pause", [0.0, 0.02])
async def test_early_hints_are_skipped(
    serve: StartServer, client: HttpClient, pause: float
) -> None:
    hints = b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
    final = answer(b"final", "X-Final: yes", status="201 Created")
    server = await serve(replies((hints, hints, final), pause=pause))
    resp = await get(client, server)
    assert resp.status == 201
    assert resp.headers["x-final"] == "yes"
    assert "link" not in resp.headers
    assert await resp.read() == b"final"
    assert client.open_connections == 1


# -- closing -------------------------------------------------------------------------


async def test_close_closes_busy_and_idle_connections(
    serve: StartServer, make_client: MakeClient
) -> None:
    client = make_client(read_timeout=5.0)  # an error must come from close(), not this
    idle_server = await serve(replies(answer(b"idle")))

    async def streaming(peer: Peer) -> None:
        await peer.request()
        await peer.send(CHUNKED_HEAD + b"5\r\nfirst\r\n")
        await stall(peer)

    busy_server = await serve(streaming)
    assert await (await get(client, idle_server)).read() == b"idle"
    resp = await get(client, busy_server)
    assert client.open_connections == 2
    got: list[bytes] = []
    first = asyncio.Event()

    async def reader() -> None:
        async for chunk in resp.chunks():
            got.append(chunk)
            first.set()

    async def close_soon() -> None:
        await first.wait()
        await asyncio.sleep(0.02)  # the reader now waits for the next chunk
        await client.close()
        assert client.open_connections == 0

    async with asyncio.timeout(2):
        failed, closed = await asyncio.gather(
            reader(), close_soon(), return_exceptions=True
        )
    assert closed is None
    assert isinstance(failed, Disconnected)  # at once, not a ReadTimeout later
    assert got == [b"first"]
    with pytest.raises(ConnectError):
        await get(client, idle_server)


async def test_close_fails_a_request_waiting_for_its_head(
    serve: StartServer, make_client: MakeClient
) -> None:
    client = make_client(read_timeout=5.0)

    async def silent(peer: Peer) -> None:
        await peer.request()
        await stall(peer)

    server = await serve(silent)

    async def close_soon() -> None:
        await until(lambda: len(server.requests) == 1)
        await client.close()

    async with asyncio.timeout(2):
        failed, closed = await asyncio.gather(
            get(client, server), close_soon(), return_exceptions=True
        )
    assert closed is None
    assert isinstance(failed, Disconnected)  # at once, not a ReadTimeout later
    assert client.open_connections == 0


async def test_close_idle_keeps_busy_connections(
    serve: StartServer, client: HttpClient
) -> None:
    idle_server = await serve(replies(answer(b"idle")))
    busy_server = await serve(
        replies((CHUNKED_HEAD + b"3\r\none\r\n", b"3\r\ntwo\r\n0\r\n\r\n"), pause=0.05)
    )
    assert await (await get(client, idle_server)).read() == b"idle"
    resp = await get(client, busy_server)
    client.close_idle()
    assert client.open_connections == 1
    assert await resp.read() == b"onetwo"
    assert client.open_connections == 1
    assert await (await get(client, idle_server)).read() == b"idle"
    assert idle_server.connections == 2


# -- the same behaviour on uvloop (the proxy's loop in production) -----------------

ON_UVLOOP = [
    test_content_length_body,
    test_chunked_body_split_at_awkward_places,
    test_read_until_close_body,
    test_unfinished_body_is_not_reused,
    test_idle_connection_closed_by_server_is_dropped,
    test_second_answer_to_one_request_is_not_mixed_in,
    test_stall_after_head_raises_read_timeout,
    test_refused_connection_raises_connect_error_naming_no_address,
    test_connection_cut_mid_body_raises_disconnected,
    test_slow_reader_keeps_buffered_bytes_bounded,
    test_early_hints_are_skipped,
    test_close_closes_busy_and_idle_connections,
]
_ARGS: dict[str, dict[str, Any]] = {
    "test_content_length_body": {"via": "chunks"},
    "test_chunked_body_split_at_awkward_places": {"via": "chunks"},
    "test_read_until_close_body": {"via": "read"},
    "test_unfinished_body_is_not_reused": {"how": "read-limit"},
    "test_second_answer_to_one_request_is_not_mixed_in": {"pause": 0.0},
    "test_connection_cut_mid_body_raises_disconnected": {
        "wire": CHUNKED_HEAD + b"5\r\nhello\r\n6\r\n world\r\n10\r\nabc",
        "expected": b"hello worldabc",
        "via": "chunks",
    },
    "test_early_hints_are_skipped": {"pause": 0.0},
}


async def _standalone(test: Callable[..., Awaitable[None]]) -> None:
    """Run `test` with this module's fixtures made in the running loop."""
    async with raw_servers() as start, http_clients() as make:
        wanted = inspect.signature(test).parameters
        fixtures = {"serve": start, "make_client": make, "client": make()}
        kwargs = {k: v for k, v in fixtures.items() if k in wanted}
        await test(**kwargs, **_ARGS.get(test.__name__, {}))


@pytest.mark.parametrize("test", ON_UVLOOP, ids=[t.__name__[5:] for t in ON_UVLOOP])
async def test_on_uvloop(test: Callable[..., Awaitable[None]]) -> None:
    uvloop = pytest.importorskip("uvloop")
    await asyncio.to_thread(uvloop.run, _standalone(test))


# -- TLS ------------------------------------------------------------------------------


async def test_tls_upstream_with_sni_and_keep_alive(client_ca: trustme.CA) -> None:
    """Every real upstream is HTTPS: the handshake verifies the certificate against the
    given trust store, sends the URL's host name as SNI, and the TLS connection is kept
    alive like a plain one."""
    names: list[str | None] = []
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    client_ca.issue_cert("localhost").configure_cert(server_tls)
    server_tls.sni_callback = lambda sock, name, ctx: names.append(name)
    trusting = ssl.create_default_context()
    client_ca.configure_trust(trusting)
    server = RawServer(numbered(lambda n: answer(f"secure {n}".encode())), tls=server_tls)
    await server.start()
    client = HttpClient(connect_timeout=2, read_timeout=2, ssl_context=trusting)
    try:
        for n in (1, 2):
            resp = await client.request("GET", server.url(host="localhost"), None, {})
            assert (resp.status, await resp.read()) == (200, f"secure {n}".encode())
        assert server.connections == 1
        assert names == ["localhost"]
        assert server.requests[0].values("host") == [f"localhost:{server.port}"]
    finally:
        await client.close()
        await server.stop()


async def test_untrusted_certificate_is_a_clean_connect_error(
    client_ca: trustme.CA,
) -> None:
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    client_ca.issue_cert("localhost").configure_cert(server_tls)
    server = RawServer(replies(answer()), tls=server_tls)
    await server.start()
    client = HttpClient(connect_timeout=2, read_timeout=2)  # the system's trust store
    try:
        with pytest.raises(ConnectError) as caught:
            await client.request("GET", server.url(host="localhost"), None, {})
        message = str(caught.value)
        assert "TLS handshake failed" in message
        assert "localhost" not in message and str(server.port) not in message
        assert server.requests == []
    finally:
        await client.close()
        await server.stop()


@pytest.fixture(scope="session")
def client_ca() -> trustme.CA:
    return trustme.CA()


async def test_head_is_refused_rather_than_left_waiting_for_a_body(
    serve: StartServer, client: HttpClient
) -> None:
    server = await serve(replies(answer()))
    with pytest.raises(InvalidRequest, match="HEAD"):
        await client.request("HEAD", server.url(), None, {})
    assert server.requests == []
