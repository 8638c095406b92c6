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

Text deltas mostly differ only in their text: Anthropic's always, OpenAI-compatible
servers' mostly (Gemini's and OpenAI's own carry running counts or padding that change).
So once a chunk has ended with a text delta, that event's bytes before and after its
text's JSON string are a *template*: the next chunk's events made of the same bytes
around another JSON string (orjson parses just that string, escapes and all) are the
same document with one string changed, so text deltas of those strings; they go to the
encoder with no SSE decoding, full parse or decoder, one per chunk (an upstream writing
as the tokens come) or several (a busy connection). A template is learnt only from an
event whose bytes alone read as that event, hold no backslash (so the text's string is
written as orjson writes it) and hold that string once (so it is the text's and no other
string's). The decoder is skipped for the events that fit, so its `feed_text` must leave
the same state for them as for the template's (what it keeps of a text delta may come
only from outside the text, and keeping it twice must change nothing). The template is
dropped whenever the general path runs; a stream whose text deltas keep missing it (a
running count, padding) stops learning, and one whose decoder says they always differ
(`text_deltas_vary`: Gemini's) never starts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import orjson

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

_BACKSLASH = 0x5C
# Text deltas that missed the last one's template, after which a stream stops learning:
# its deltas differ outside the text (a running count, padding).
_MISSES = 2


def _template(
    chunk: bytes, event: SSEEvent | None, text: str
) -> tuple[bytes, bytes] | None:
    """The bytes around `text`'s JSON string in the event that ends `chunk`, a text
    delta of `text`: the whole chunk (`event` None), or its last block, which must read
    as `event` alone. None where the bytes cannot be told for sure."""
    if event is None:
        block = chunk
    else:
        blank = b"\r\n\r\n" if chunk.endswith(b"\r\n\r\n") else b"\n\n"
        cut = chunk.rfind(blank, 0, len(chunk) - len(blank))
        block = chunk[cut + len(blank) :] if cut >= 0 else chunk
        if SSEDecoder().feed(block) != [event]:
            return None
    if _BACKSLASH in block:  # the text's string may be escaped otherwise than orjson's
        return None
    string = orjson.dumps(text)
    at = block.find(string)
    if at < 0 or block.rfind(string) != at:  # not there as orjson writes it, or twice
        return None
    return block[: at + 1], block[at + len(string) - 1 :]


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
        # The last text delta's chunk around its text (module docstring).
        self._template: tuple[bytes, bytes] | None = None
        self._learning = (
            self._text_in is not None
            and self._text_out is not None
            and not getattr(decoder, "text_deltas_vary", False)
        )
        self._misses = 0

    def _frame(self, events: Iterable[SSEEvent], out: list[bytes]) -> None:
        for event in events:
            if not self._started:
                self._started = True
                out.append(self._framer.start())
            out.append(self._framer.frame(event))

    def _events(self, events: Iterable[SSEEvent], out: list[bytes]) -> str | None:
        """Convert `events` into `out`; the last one's text if it took the fast path."""
        if self._decoder is None or self._encoder is None:
            self._frame(events, out)
            return None
        text_in, text_out = self._text_in, self._text_out
        if text_in is None or text_out is None:
            for event in events:
                self._canonical(self._decoder.feed(event), out)
            return None
        text: str | None = None
        for event in events:
            got = text_in(event)
            if isinstance(got, str):
                data = text_out(got) if self._started else None
                if data is not None:
                    out.append(data)
                    text = got
                    continue
                got = (TextDelta(got),)
            text = None
            self._canonical(got, out)
        return text

    def _canonical(self, events: Iterable[StreamEvent], out: list[bytes]) -> None:
        assert self._encoder is not None
        for event in events:
            if self._on_event is not None:
                self._on_event(event)
            self._frame(self._encoder.feed(event), out)

    def feed(self, chunk: bytes) -> bytes:
        template = self._template
        if template is not None:  # so nothing is held: the last chunk ended an event
            head, tail = template
            if chunk.startswith(head):
                end = chunk.find(tail, len(head))
                if end == len(chunk) - len(tail):
                    # Most often one delta: the template's bytes around another JSON
                    # string, that string's text if it is one (orjson says; module
                    # docstring).
                    try:
                        text = orjson.loads(chunk[len(head) - 1 : end + 1])
                    except orjson.JSONDecodeError:
                        text = None
                    if text:
                        assert self._text_out is not None
                        data = self._text_out(text)
                        return data if data is not None else self._text_delta(text)
                elif end > 0:
                    return self._templated(chunk, head, tail)
            self._template = None
            return self._learn(chunk, missed=True)
        if self._learning:
            return self._learn(chunk, missed=False)
        out: list[bytes] = []
        try:
            self._events(self._sse.feed(chunk), out)
        except UNREADABLE as exc:
            raise UpstreamProtocolError(_UNREADABLE_EVENT) from exc
        return b"".join(out)  # one piece (the usual case) is returned as it is

    def _templated(self, chunk: bytes, head: bytes, tail: bytes) -> bytes:
        """`feed` with a template: the deltas that fit it at the chunk's start read from
        their strings, the rest (from an event's start) by the general path."""
        assert self._text_out is not None
        out: list[bytes] = []
        at = 0
        while chunk.startswith(head, at):
            end = chunk.find(tail, at + len(head))
            if end < 0:
                break
            try:
                text = orjson.loads(chunk[at + len(head) - 1 : end + 1])
            except orjson.JSONDecodeError:
                break
            if not text:
                break
            data = self._text_out(text)
            out.append(data if data is not None else self._text_delta(text))
            at = end + len(tail)
        if at < len(chunk):
            self._template = None
            out.append(self._learn(chunk[at:] if at else chunk, missed=not at))
        return b"".join(out)

    def _learn(self, chunk: bytes, *, missed: bool) -> bytes:
        """`feed`'s general path, taking the chunk's last event as the template when it
        was a text delta; `missed`: the last chunk was a text delta in other bytes."""
        sse = self._sse
        alone = not sse.held  # so far: the chunk starts an event
        out: list[bytes] = []
        try:
            events = sse.feed(chunk)
            text = self._events(events, out)
        except UNREADABLE as exc:
            raise UpstreamProtocolError(_UNREADABLE_EVENT) from exc
        if text is not None and not sse.held:
            if missed:
                self._misses += 1
                self._learning = self._misses < _MISSES
            if self._learning:
                alone = alone and len(events) == 1
                self._template = _template(chunk, None if alone else events[-1], text)
        return b"".join(out)

    def _text_delta(self, text: str) -> bytes:
        out: list[bytes] = []
        try:
            self._canonical((TextDelta(text),), out)
        except UNREADABLE as exc:
            raise UpstreamProtocolError(_UNREADABLE_EVENT) from exc
        return b"".join(out)

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
