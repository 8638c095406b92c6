"""A converted stream, bytes in and bytes out: SSE decoder -> upstream StreamDecoder ->
canonical events -> client StreamEncoder -> client framing. Pure (no I/O), fed one
upstream chunk at a time, so nothing is buffered beyond the event being completed.

The client framing is SSE, or for a Gemini client that did not ask for `alt=sse` the
streamed JSON array Google's own endpoints produce. Reframing alone (a Gemini upstream
relayed to such a client) runs the same pipeline without codecs.

Text deltas are most of any real stream, so when the decoder has `feed_text` (a text
delta comes back as the text itself) and the encoder has `text` (the client's SSE bytes
for it, or None when the general path must run, e.g. to open a block first), they go
from one to the other without canonical objects or framing. The bytes are the same as
the general path's (a test checks it on generated streams).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from .canonical import StreamEvent, TextDelta
from .errors import AiclientError, UpstreamProtocolError
from .protocols import ApiProtocol
from .protocols.base import StreamDecoder, StreamEncoder
from .protocols.errors import error_payload
from .sse import SSEDecoder, SSEEvent, encode_sse

__all__ = ["Framer", "JSONArrayFramer", "SSEFramer", "StreamPipeline", "TextTap"]

# What a codec raises on an upstream event of an unexpected shape (a list where an
# object belongs, a string index, ...): the stream is then broken, like a cut one
# (before the client's response starts the call fails over, after it the client gets
# an in-band error), as a whole answer that cannot be read is.
UNREADABLE = (TypeError, KeyError, AttributeError, ValueError, IndexError)
_UNREADABLE_EVENT = "the upstream sent a stream event that could not be read"


class Framer:
    """Client framing of wire events. SSE: one event each, nothing around them."""

    def start(self) -> bytes:
        return b""

    def frame(self, event: SSEEvent) -> bytes:
        return encode_sse(event)

    def end(self) -> bytes:
        return b""


SSEFramer = Framer


class JSONArrayFramer(Framer):
    """`[` first, then the events' JSON separated by commas, then `]`."""

    def __init__(self) -> None:
        self._first = True

    def start(self) -> bytes:
        return b"["

    def frame(self, event: SSEEvent) -> bytes:
        if self._first:
            self._first = False
            return event.data.encode()
        return b",\r\n" + event.data.encode()

    def end(self) -> bytes:
        return b"]"


class StreamPipeline:
    """Upstream bytes -> client bytes. `feed`/`close` raise UpstreamError subclasses for
    in-band upstream errors and broken streams; `error_bytes` renders one for the client.
    """

    def __init__(
        self,
        client: ApiProtocol,
        framer: Framer,
        decoder: StreamDecoder | None = None,
        encoder: StreamEncoder | None = None,
        on_event: Callable[[StreamEvent], None] | None = None,
        *,
        fast: bool = True,
    ) -> None:
        self._client = client
        self._sse = SSEDecoder()
        self._framer = framer
        self._decoder = decoder
        self._encoder = encoder
        self._on_event = on_event
        self._started = False
        # The text fast path (see the module docstring): SSE out, nobody watching events.
        self._text_in: Callable[[SSEEvent], str | Iterable[StreamEvent]] | None = None
        self._text_out: Callable[[str], bytes | None] | None = None
        if fast and on_event is None and type(framer) is Framer:
            self._text_in = getattr(decoder, "feed_text", None)
            self._text_out = getattr(encoder, "text", None)

    def _frame(self, events: Iterable[SSEEvent], out: list[bytes]) -> None:
        for event in events:
            if not self._started:
                self._started = True
                out.append(self._framer.start())
            out.append(self._framer.frame(event))

    def _events(self, events: Iterable[SSEEvent], out: list[bytes]) -> None:
        if self._decoder is None or self._encoder is None:
            self._frame(events, out)
            return
        text_in, text_out = self._text_in, self._text_out
        if text_in is None or text_out is None:
            for event in events:
                self._canonical(self._decoder.feed(event), out)
            return
        for event in events:
            got = text_in(event)
            if isinstance(got, str):
                data = text_out(got) if self._started else None
                if data is not None:
                    out.append(data)
                    continue
                got = (TextDelta(got),)
            self._canonical(got, out)

    def _canonical(self, events: Iterable[StreamEvent], out: list[bytes]) -> None:
        assert self._encoder is not None
        for event in events:
            if self._on_event is not None:
                self._on_event(event)
            self._frame(self._encoder.feed(event), out)

    def feed(self, chunk: bytes) -> bytes:
        out: list[bytes] = []
        try:
            self._events(self._sse.feed(chunk), out)
        except UNREADABLE as exc:
            raise UpstreamProtocolError(_UNREADABLE_EVENT) from exc
        return b"".join(out)  # one piece (the usual case) is returned as it is

    def close(self) -> bytes:
        out: list[bytes] = []
        try:
            self._events(self._sse.close(), out)
            if self._decoder is not None:
                self._canonical(self._decoder.close(), out)
        except UNREADABLE as exc:
            raise UpstreamProtocolError(_UNREADABLE_EVENT) from exc
        if not self._started:
            out.append(self._framer.start())
        out.append(self._framer.end())
        return b"".join(out)

    def error_bytes(self, err: AiclientError) -> bytes:
        out: list[bytes] = []
        self._frame([error_payload(self._client, err)], out)
        out.append(self._framer.end())
        return b"".join(out)


class TextTap:
    """Collects a stream's answer text (for the prompt log) from the bytes relayed in
    passthrough; runs only when prompt logging is on, and never fails the stream."""

    def __init__(self, decoder: StreamDecoder, parts: list[str]) -> None:
        self._sse = SSEDecoder()
        self._decoder = decoder
        self.parts = parts

    def feed(self, chunk: bytes) -> None:
        try:
            for event in self._sse.feed(chunk):
                for item in self._decoder.feed(event):
                    if isinstance(item, TextDelta):
                        self.parts.append(item.text)
        except (AiclientError, *UNREADABLE):
            pass
