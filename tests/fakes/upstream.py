"""Base class for fake LLM upstreams: a real aiohttp server on 127.0.0.1:0.

It owns the request log, the FIFO of scripted replies and all socket-level
behaviour (SSE writing, delays, cut streams, resets). Subclasses only turn a
recorded request into an answer value (`JSONAnswer` or `SSEAnswer`); they never
touch the transport.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import orjson
from aiohttp import web

from .common import (
    Answer,
    JSONAnswer,
    JSONObject,
    RawAnswer,
    RecordedRequest,
    SSEAnswer,
    SSEEvent,
    encode_sse,
)

__all__ = ["CutStream", "Delay", "FakeUpstream", "Reply", "Reset"]


@dataclass(frozen=True, slots=True)
class Reset:
    """Close the connection without writing a single byte."""


@dataclass(frozen=True, slots=True)
class Delay:
    """Answer normally after `seconds`; before the headers or before the first event."""

    seconds: float
    before_headers: bool


@dataclass(frozen=True, slots=True)
class CutStream:
    """Answer normally but drop the connection after `after_events` SSE events."""

    after_events: int


Reply = Answer | Reset | Delay | CutStream


class FakeUpstream:
    """A fake LLM API server: request log + FIFO of scripted replies.

    Every generation request (chat completions / messages) consumes at most one
    scripted reply; model listing never does. Without a script the subclass's
    default behaviour answers (auth, validation, canned text or tool call).
    """

    name = "upstream"

    def __init__(self, api_keys: Iterable[str] = (), models: Sequence[str] = ()) -> None:
        self.api_keys: set[str] = set(api_keys)
        self.models: list[str] = list(models)
        self.unknown_models: set[str] = set()
        self.force_tool_call: tuple[str, str] | None = None
        self.app = web.Application()
        self.requests: list[RecordedRequest] = []
        self.hits = 0
        self.default_text = f"Hello from fake {self.name}"
        self.stream_chunks = 5
        self.delay_between_chunks = 0.0
        self.port = 0
        self.base_url = ""
        self.disconnects: list[float] = []  # when a client dropped a stream
        self._script: deque[Reply] = deque()
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()
        self._hit = asyncio.Condition()

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> Self:
        """Listen on an ephemeral loopback port; sets `port` and `base_url`."""
        self._closing.clear()
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runner = runner
        self.port = runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        return self

    async def close(self) -> None:
        """Stop the server; pending hangs and slow streams are dropped at once."""
        self._closing.set()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- script ----------------------------------------------------------------

    def reply_status(
        self,
        status: int,
        body: JSONObject | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Answer the next generation request with `status` and an error body.

        Without `body` the protocol's own error shape for that status is used.
        """
        payload = body if body is not None else self.error_body(status)
        self._script.append(JSONAnswer(payload, status, dict(headers or {})))

    def reply_json(self, body: JSONObject, status: int = 200) -> None:
        self._script.append(JSONAnswer(body, status))

    def reply_sse(
        self, raw_events: Sequence[SSEEvent], *, drop_after: int | None = None
    ) -> None:
        """Stream exactly these events (status 200, `text/event-stream`).

        With `drop_after` the socket is closed after that many events, without
        finishing the chunked body (as `reply_cut_stream` does).
        """
        self._script.append(SSEAnswer(list(raw_events), drop_after=drop_after))

    def reply_invalid_json(self) -> None:
        """200 with `Content-Type: application/json` and a body that is not JSON."""
        self._script.append(RawAnswer(b'{"id": "broken", "choices": [tru'))

    def reply_reset(self) -> None:
        """Close the TCP connection without sending any response."""
        self._script.append(Reset())

    def reply_hang(self, seconds: float) -> None:
        """Send nothing (not even headers) for `seconds`, then answer normally."""
        self._script.append(Delay(seconds, before_headers=True))

    def reply_slow_first_byte(self, seconds: float) -> None:
        """Delay the first body byte by `seconds`.

        For a stream the 200 headers go out at once and the first SSE event is
        late (a time-to-first-token stall); a JSON answer is delayed entirely.
        """
        self._script.append(Delay(seconds, before_headers=False))

    def reply_cut_stream(self, after_events: int) -> None:
        """Answer normally but close the socket after `after_events` SSE events.

        No terminal event and no final zero-length chunk are sent, so clients
        see an incomplete chunked body. A JSON answer is cut after half its bytes.
        Error answers (4xx/5xx) are not cut.
        """
        self._script.append(CutStream(after_events))

    def clear(self) -> None:
        """Forget recorded requests, hits and any unconsumed scripted replies."""
        self.requests.clear()
        self._script.clear()
        self.hits = 0

    async def wait_for_hits(self, count: int = 1, within: float = 5.0) -> None:
        """Wait until `hits >= count` (e.g. until a proxy has reached the fake).

        Raises TimeoutError after `within` seconds.
        """
        async with asyncio.timeout(within), self._hit:
            await self._hit.wait_for(lambda: self.hits >= count)

    @property
    def pending_replies(self) -> int:
        return len(self._script)

    @property
    def last_request(self) -> RecordedRequest:
        return self.requests[-1]

    # -- hooks for subclasses ----------------------------------------------------

    def error_body(self, status: int) -> JSONObject:
        """Protocol-specific error body for a scripted status without a body."""
        return {"error": {"message": f"HTTP {status}"}}

    async def record(self, request: web.Request) -> RecordedRequest:
        body = await request.read()
        try:
            parsed: Any = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            parsed = None
        recorded = RecordedRequest(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            json=parsed,
        )
        self.requests.append(recorded)
        return recorded

    def generation_route(
        self, produce: Callable[[RecordedRequest], Answer]
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """Wrap a pure `produce(request) -> Answer` into a scripted aiohttp handler."""

        async def handler(request: web.Request) -> web.StreamResponse:
            recorded = await self.record(request)
            async with self._hit:
                self.hits += 1
                self._hit.notify_all()
            reply = self._script.popleft() if self._script else None
            if isinstance(reply, Reset):
                return _drop(request)
            answer = reply if isinstance(reply, Answer) else produce(recorded)
            first_delay = 0.0
            if isinstance(reply, Delay):
                if reply.before_headers or not isinstance(answer, SSEAnswer):
                    if not await self._pause(reply.seconds):
                        return _drop(request)
                else:
                    first_delay = reply.seconds
            cut = reply.after_events if isinstance(reply, CutStream) else None
            return await self._send(request, answer, cut, first_delay)

        return handler

    def plain_route(
        self, produce: Callable[[RecordedRequest], Answer]
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """Wrap `produce` for a non-generation route (no script, no hit count)."""

        async def handler(request: web.Request) -> web.StreamResponse:
            return await self._send(request, produce(await self.record(request)))

        return handler

    # -- I/O ---------------------------------------------------------------------

    async def _pause(self, seconds: float) -> bool:
        """Sleep up to `seconds`; False when the fake started closing meanwhile."""
        if self._closing.is_set():
            return False
        if seconds <= 0:
            return True
        try:
            await asyncio.wait_for(self._closing.wait(), seconds)
        except TimeoutError:
            return True
        return False

    async def _send(
        self,
        request: web.Request,
        answer: Answer,
        cut: int | None = None,
        first_delay: float = 0.0,
    ) -> web.StreamResponse:
        if isinstance(answer, RawAnswer):
            return web.Response(
                status=answer.status,
                body=answer.body,
                headers={"Content-Type": answer.content_type},
            )
        if isinstance(answer, JSONAnswer):
            data = orjson.dumps(answer.body)
            headers = {"Content-Type": "application/json", **answer.headers}
            if cut is None or answer.status >= 400:
                return web.Response(status=answer.status, body=data, headers=headers)
            return await _send_truncated(request, answer.status, data, headers)
        return await self._stream(request, answer, cut, first_delay)

    async def _stream(
        self, request: web.Request, answer: SSEAnswer, cut: int | None, first: float
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                **answer.headers,
            },
        )
        if cut is None:
            cut = answer.drop_after
        try:
            await response.prepare(request)
            for index, (event, data) in enumerate(answer.events):
                if cut is not None and index >= cut:
                    return _drop(request, response)
                delay = first if index == 0 else self.delay_between_chunks
                if delay > 0 and not await self._pause(delay):
                    return _drop(request, response)
                await response.write(encode_sse(event, data))
            if cut is not None:
                return _drop(request, response)
            await response.write_eof()
        except ConnectionError:
            self.disconnects.append(time.monotonic())  # the client went away
        return response


def _drop(
    request: web.Request, response: web.StreamResponse | None = None
) -> web.StreamResponse:
    """Close the socket (flushing what was written) without finishing the body."""
    if request.transport is not None:
        request.transport.close()
    return response if response is not None else web.Response()


async def _send_truncated(
    request: web.Request, status: int, data: bytes, headers: Mapping[str, str]
) -> web.StreamResponse:
    response = web.StreamResponse(status=status, headers=headers)
    response.content_length = len(data)
    try:
        await response.prepare(request)
        await response.write(data[: len(data) // 2])
    except ConnectionError:
        return response
    return _drop(request, response)
