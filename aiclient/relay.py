"""One client request, end to end: pool → provider → client, with failover.

Retry and failover happen only before the first byte reaches the client: a non-stream
answer is read whole from the upstream first, and a stream's first chunk is read before
the client's response starts. After that, a failure becomes the client protocol's
in-band error event; a stream never ends as if it were complete when it was cut.
Contains no HTTP server types: the server hands in a ResponseSink.

A converted call (the client's protocol differs from the upstream's) follows the same
rules: its non-stream answer is translated inside the attempt (an untranslatable answer
fails over like a broken one), and its stream goes through a StreamPipeline event by
event, reading until the first translated bytes exist before the client's response
starts. Passthrough calls never touch a codec.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol, TypeVar

import aiohttp
import orjson

from .canonical import StreamEvent, TextDelta
from .config import Settings
from .errors import (
    AiclientError,
    ConcurrencyLimited,
    NoProviderAvailable,
    PoolCoolingDown,
    UpstreamError,
    UpstreamHTTPError,
    UpstreamProtocolError,
)
from .http_client import HttpClient
from .pipeline import Framer, JSONArrayFramer, StreamPipeline, TextTap
from .pool import Entry, Lease, ProviderNode, ProviderPool
from .protocols import ApiProtocol
from .protocols.codecs import CODECS
from .protocols.errors import stream_error_event
from .providers import PROVIDERS, ModelList, Provider, UpstreamResponse

__all__ = ["Call", "Conversion", "Relay", "Reply", "ResponseSink"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
E = TypeVar("E", bound=BaseException)

SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "Connection": "keep-alive",
    "X-Accel-Buffering": "no",
}

# Bytes that end a complete stream, and bytes that mark an in-band upstream error. Each
# can only occur as SSE framing or a JSON key: inside a JSON string a newline or a quote
# is escaped. The scan window starts with a newline so a first line matches too.
_STREAM_END: dict[ApiProtocol, bytes] = {
    ApiProtocol.OPENAI: b"\ndata: [DONE]",
    ApiProtocol.CLAUDE: b"\nevent: message_stop",
    ApiProtocol.GEMINI: b'"finishReason"',
}
_STREAM_ERROR: dict[ApiProtocol, bytes] = {
    ApiProtocol.OPENAI: b'data: {"error"',
    ApiProtocol.CLAUDE: b"\nevent: error",
    ApiProtocol.GEMINI: b'data: {"error"',
}
_TAIL = 32


class StreamWatch:
    """Whether a relayed stream (seen chunk by chunk, split anywhere) has ended
    properly and whether it carried an in-band error, without copying the chunks."""

    __slots__ = ("_end", "_error", "_tail", "finished", "upstream_error")

    def __init__(self, protocol: ApiProtocol) -> None:
        self._end = _STREAM_END[protocol]
        self._error = _STREAM_ERROR[protocol]
        self._tail = b"\n"
        self.finished = False
        self.upstream_error = False

    def feed(self, chunk: bytes) -> None:
        # The marks are shorter than _TAIL: one straddling two chunks lies within the
        # old tail and the new chunk's first _TAIL bytes.
        # `find`, not `in`: with a bytes needle, `in` costs bytes 2-3x as much (it tries
        # the needle as an integer first, raising and clearing a TypeError).
        seam = self._tail + chunk[:_TAIL]
        if chunk.find(self._end) >= 0 or seam.find(self._end) >= 0:
            self.finished = True
        if chunk.find(self._error) >= 0 or seam.find(self._error) >= 0:
            self.upstream_error = True
        self._tail = chunk[-_TAIL:] if len(chunk) >= _TAIL else seam[-_TAIL:]


class ResponseSink(Protocol):
    async def start(self, headers: Mapping[str, str]) -> None: ...
    async def write(self, data: bytes) -> None: ...
    async def finish(self) -> None: ...


JSON_STREAM_HEADERS = {
    "Content-Type": "application/json",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


@dataclass(frozen=True, slots=True)
class Conversion:
    """A call whose upstream speaks another protocol than its client: what the
    answer's translation needs of the request (see EncoderFacts)."""

    upstream: ApiProtocol
    model: str
    include_usage: bool = False


@dataclass(slots=True)
class Call:
    """What the relay needs of one client request, already routed."""

    client_protocol: ApiProtocol
    provider_type: str
    model: str | None
    stream: bool
    body: bytes
    client_headers: Mapping[str, str]
    tried: list[str] = field(default_factory=list)
    served_by: ProviderNode | None = None
    conversion: Conversion | None = None
    json_array: bool = False  # a Gemini client streaming without alt=sse
    transcript: list[str] | None = None  # collects the answer text (prompt log)
    # providerFallbackChain / modelFallbackMapping: (type, model) to try, in order,
    # when the current type has no usable instance left; `retarget` rewrites the
    # call for one (body, conversion, model).
    fallbacks: list[tuple[str, str]] = field(default_factory=list)
    retarget: Callable[[Call, str, str], None] | None = None
    # The protocol of the upstream being tried, where the endpoint knows it (an upstream
    # error body in the client's own protocol is passed through verbatim).
    upstream_protocol: ApiProtocol | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes
    content_type: str = "application/json"


class Relay:
    def __init__(
        self,
        settings: Settings,
        pool: ProviderPool,
        session: aiohttp.ClientSession,
        http: HttpClient,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.session = session
        self.http = http
        self._sleep = sleep

    def provider_for(self, entry: Entry) -> Provider:
        client = entry.client
        if client is None:
            client = PROVIDERS[entry.node.provider_type](
                entry.node, self.settings, self.session, self.http
            )
            entry.client = client
        assert isinstance(client, Provider)
        return client

    def _backoff(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (1-based) on another instance.

        The first failover is immediate: another instance owes nothing to the one that
        failed. Later ones back off exponentially from REQUEST_BASE_DELAY.
        """
        if retry <= 1:
            return 0.0
        return self.settings.request_base_delay_ms / 1000 * (1 << (retry - 2))

    async def _with_failover(
        self, call: Call, attempt: Callable[[Lease, Provider], Awaitable[T]]
    ) -> T:
        last: UpstreamError | None = None
        retry = -1
        while retry < self.settings.request_max_retries:
            retry += 1
            if retry:
                delay = self._backoff(retry)
                if delay:
                    await self._sleep(delay)
            lease = await self._acquire(call)
            while lease is None and call.fallbacks and call.retarget is not None:
                ptype, model = call.fallbacks.pop(0)
                logger.info(
                    "%s has no usable instance; falling back to %s (model %s)",
                    call.provider_type,
                    ptype,
                    model,
                )
                call.retarget(call, ptype, model)
                lease = await self._acquire(call)
            if lease is None:
                break
            call.served_by = lease.node
            try:
                return await attempt(lease, self.provider_for(lease.entry))
            except UpstreamHTTPError as exc:
                if exc.client_fault:
                    lease.release()
                    raise
                lease.failure(exc)
                last = _forget_frames(exc)
            except UpstreamError as exc:
                lease.failure(exc)
                last = _forget_frames(exc)
            except BaseException:
                lease.release()
                raise
            call.tried.append(lease.node.uuid)
            going_on = retry < self.settings.request_max_retries and (
                bool(call.fallbacks)
                or self.pool.available(call.provider_type, call.model, call.tried)
            )
            logger.info(
                "%s instance %s failed (%s); %s",
                call.provider_type,
                lease.node.label,
                last.message,
                "failing over" if going_on else "giving up",
            )
        if last is not None:
            raise last
        model = f" for model {call.model!r}" if call.model else ""
        wait = self.pool.soonest_return(call.provider_type, call.model, call.tried)
        if wait is not None:
            raise PoolCoolingDown(
                f"every instance of provider type {call.provider_type!r}{model} is "
                f"cooling down; retry in {math.ceil(wait)} s",
                wait,
            )
        raise NoProviderAvailable(
            f"no healthy instance of provider type {call.provider_type!r}{model}"
        )

    async def _acquire(self, call: Call) -> Lease | None:
        """An instance for the next attempt; when every usable one is at its
        concurrencyLimit, wait in the type's bounded queue (QUEUE_TIMEOUT_MS)."""
        pool, ptype = self.pool, call.provider_type
        lease = pool.acquire(ptype, call.model, call.tried)
        if lease is not None:
            return lease
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.queue_timeout_ms / 1000
        while lease is None:
            room = pool.saturated(ptype, call.model, call.tried)
            if not room:
                return None
            queue = pool.waiters.setdefault(ptype, deque())
            if len(queue) >= room:
                raise ConcurrencyLimited(
                    "Too many requests: account concurrency limit and queue reached"
                )
            waiter: asyncio.Future[None] = loop.create_future()
            queue.append(waiter)
            try:
                async with asyncio.timeout_at(deadline):
                    await waiter
            except TimeoutError:
                raise ConcurrencyLimited(
                    "Too many requests: no instance slot freed within QUEUE_TIMEOUT_MS"
                ) from None
            finally:
                if waiter in queue:
                    queue.remove(waiter)
            lease = pool.acquire(ptype, call.model, call.tried)
        return lease

    async def complete(self, call: Call) -> Reply:
        """A non-streaming request: the upstream answer is read whole, then returned."""

        async def attempt(lease: Lease, provider: Provider) -> Reply:
            up = await provider.send(
                call.body,
                model=call.model or "",
                stream=False,
                client_headers=call.client_headers,
            )
            body = await up.read()
            if call.conversion is not None:
                body = _convert_answer(call.client_protocol, call.conversion, body, lease)
            lease.success()
            return Reply(up.status, body, up.content_type)

        return await self._with_failover(call, attempt)

    async def stream(self, call: Call, sink: ResponseSink) -> None:
        """A stream, relayed chunk by chunk as it arrives (translated if need be)."""
        if call.conversion is not None or call.json_array or call.fallbacks:
            # A fallback may change the upstream's protocol: the pipeline is chosen
            # per attempt there.
            await self._stream_converted(call, sink)
            return

        async def attempt(
            lease: Lease, provider: Provider
        ) -> tuple[Lease, UpstreamResponse, AsyncIterator[bytes], bytes]:
            up = await provider.send(
                call.body,
                model=call.model or "",
                stream=True,
                client_headers=call.client_headers,
            )
            _require_event_stream(up, lease)
            chunks = up.chunks()
            try:
                first = await anext(chunks)
            except StopAsyncIteration:
                up.release()
                raise UpstreamProtocolError(
                    "the upstream closed the stream without sending anything",
                    node_uuid=lease.node.uuid,
                ) from None
            except BaseException:
                up.close()
                raise
            return lease, up, chunks, first

        lease, up, chunks, first = await self._with_failover(call, attempt)
        await self._pump(call, sink, lease, up, chunks, first)

    async def _pump(
        self,
        call: Call,
        sink: ResponseSink,
        lease: Lease,
        up: UpstreamResponse,
        chunks: AsyncIterator[bytes],
        first: bytes,
    ) -> None:
        protocol = call.client_protocol
        watch = StreamWatch(protocol)
        drained = False

        tap = None
        if call.transcript is not None:
            tap = TextTap(CODECS[protocol].stream_decoder(), call.transcript)
            tap.feed(first)
        try:
            await sink.start(SSE_HEADERS)
            watch.feed(first)
            await sink.write(first)
            try:
                async for chunk in chunks:
                    watch.feed(chunk)
                    if tap is not None:
                        tap.feed(chunk)
                    await sink.write(chunk)
                drained = True
            except UpstreamError as exc:
                await _broke(call, lease, sink, exc, stream_error_event(protocol, exc))
                return
            if watch.upstream_error:
                lease.failure(
                    UpstreamProtocolError(
                        "the upstream reported an error inside the stream",
                        node_uuid=lease.node.uuid,
                    )
                )
            elif not watch.finished:
                cut = UpstreamProtocolError(
                    "the upstream stream ended before it was complete",
                    node_uuid=lease.node.uuid,
                )
                lease.failure(cut)
                logger.warning(
                    "%s instance %s ended a stream early",
                    call.provider_type,
                    lease.node.label,
                )
                await sink.write(stream_error_event(protocol, cut))
            else:
                lease.success()
            await sink.finish()
        finally:
            _settle(lease, up, drained)

    async def count(self, call: Call, translate: Callable[[bytes], bytes] | None) -> Reply:
        """A token count: the upstream's answer, translated for the client if need be."""

        async def attempt(lease: Lease, provider: Provider) -> Reply:
            up = await provider.count_tokens(
                call.body, model=call.model or "", client_headers=call.client_headers
            )
            body = await up.read()
            if translate is not None:
                try:
                    body = translate(body)
                except (orjson.JSONDecodeError, TypeError, KeyError) as exc:
                    raise UpstreamProtocolError(
                        "the upstream token count could not be read",
                        node_uuid=lease.node.uuid,
                    ) from exc
            lease.success()
            return Reply(up.status, body, up.content_type)

        return await self._with_failover(call, attempt)

    def _pipeline(self, call: Call) -> StreamPipeline:
        framer = JSONArrayFramer() if call.json_array else Framer()
        conversion = call.conversion
        if conversion is None:
            return StreamPipeline(call.client_protocol, framer)
        transcript = call.transcript

        def on_event(event: StreamEvent) -> None:
            if transcript is not None and isinstance(event, TextDelta):
                transcript.append(event.text)

        return StreamPipeline(
            call.client_protocol,
            framer,
            CODECS[conversion.upstream].stream_decoder(),
            CODECS[call.client_protocol].stream_encoder(conversion),
            on_event if transcript is not None else None,
        )

    async def _stream_converted(self, call: Call, sink: ResponseSink) -> None:
        async def attempt(
            lease: Lease, provider: Provider
        ) -> tuple[
            Lease, UpstreamResponse, AsyncIterator[bytes] | None, StreamPipeline, bytes
        ]:
            up = await provider.send(
                call.body,
                model=call.model or "",
                stream=True,
                client_headers=call.client_headers,
            )
            _require_event_stream(up, lease)
            pipeline = self._pipeline(call)
            chunks = up.chunks()
            first = b""
            try:
                while not first:
                    try:
                        chunk = await anext(chunks)
                    except StopAsyncIteration:
                        return lease, up, None, pipeline, pipeline.close()
                    first = pipeline.feed(chunk)
            except UpstreamError as exc:
                up.close()
                exc.node_uuid = exc.node_uuid or lease.node.uuid
                raise
            except BaseException:
                up.close()
                raise
            return lease, up, chunks, pipeline, first

        lease, up, chunks, pipeline, first = await self._with_failover(call, attempt)
        drained = False
        try:
            await sink.start(JSON_STREAM_HEADERS if call.json_array else SSE_HEADERS)
            await sink.write(first)
            tail = b""
            try:
                if chunks is not None:  # else the whole stream came with the first bytes
                    async for chunk in chunks:
                        out = pipeline.feed(chunk)
                        if out:
                            await sink.write(out)
                    tail = pipeline.close()
                drained = True
            except UpstreamError as exc:
                await _broke(call, lease, sink, exc, pipeline.error_bytes(exc))
                return
            if tail:
                await sink.write(tail)
            lease.success()
            await sink.finish()
        finally:
            _settle(lease, up, drained)

    async def list_models(
        self, provider_type: str, client_headers: Mapping[str, str]
    ) -> tuple[ModelList, Provider]:
        """The model list from a healthy instance of `provider_type`, with failover."""
        call = Call(ApiProtocol.OPENAI, provider_type, None, False, b"", client_headers)

        async def attempt(lease: Lease, provider: Provider) -> tuple[ModelList, Provider]:
            models = await provider.models(client_headers)
            lease.release()
            return models, provider

        return await self._with_failover(call, attempt)


async def _broke(
    call: Call, lease: Lease, sink: ResponseSink, exc: UpstreamError, error: bytes
) -> None:
    """A stream that broke after the client's response started: in-band error, end."""
    lease.failure(exc)
    logger.warning(
        "%s instance %s broke mid-stream: %s",
        call.provider_type,
        lease.node.label,
        exc.message,
    )
    await sink.write(error)
    await sink.finish()


def _convert_answer(
    client: ApiProtocol, conversion: Conversion, body: bytes, lease: Lease
) -> bytes:
    """A whole upstream answer in the client's protocol; UpstreamProtocolError when it
    cannot be read (so the call fails over like any broken answer)."""
    read_plain = CODECS[conversion.upstream].plain_response_in
    write_plain = CODECS[client].plain_response_out
    try:
        parsed = orjson.loads(body)
        if not isinstance(parsed, dict):
            raise TypeError("not an object")
        plain = read_plain(parsed) if read_plain and write_plain else None
        if write_plain and plain is not None:  # the fast path (canonical.PlainAnswer)
            if plain.model != conversion.model:
                plain = plain._replace(model=conversion.model)
            return orjson.dumps(write_plain(plain))
        answer = CODECS[conversion.upstream].response_to_canonical(parsed)
    except (
        orjson.JSONDecodeError,
        AiclientError,
        TypeError,
        KeyError,
        AttributeError,
    ) as exc:
        raise UpstreamProtocolError(
            "the upstream answer could not be read", node_uuid=lease.node.uuid
        ) from exc
    if answer.model != conversion.model:
        answer = replace(answer, model=conversion.model)
    return orjson.dumps(CODECS[client].response_from_canonical(answer))


def _forget_frames(exc: E) -> E:
    """`exc` without its traceback, kept to raise if no other instance answers. The
    traceback holds this frame, which holds `exc`: a reference cycle that would keep
    the failed attempt's objects (its lease, its upstream response) for the cyclic
    collector. The error is rendered for the client, never logged with a traceback."""
    return exc.with_traceback(None)


def _settle(lease: Lease, up: UpstreamResponse, drained: bool) -> None:
    """A relayed stream is over, however it ended (client gone, cancelled, broken):
    free the lease without blaming the instance for the client, and never leave the
    upstream stream running (a drained one goes back to the pool)."""
    lease.release()
    if drained:
        up.release()
    else:
        up.close()


def _require_event_stream(up: UpstreamResponse, lease: Lease) -> None:
    """A stream request answered with anything but SSE is a failure to fail over from."""
    if "event-stream" not in up.content_type:
        up.close()
        raise UpstreamProtocolError(
            f"the upstream answered a stream request with {up.content_type}",
            node_uuid=lease.node.uuid,
        )
