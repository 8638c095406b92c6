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
servers' mostly (Gemini's and OpenAI's own carry running counts or padding: holes).
So a text delta's event, its data before and after its text's JSON string, is a
*template* (a `Shape`): a next event of the same name made of the same data around
another JSON string (orjson parses just that string, escapes and all) is the same
document with one string changed, so a text delta of that string, and goes to the
encoder without the full parse or the decoder. When the delta came alone in its chunk,
the chunk's bytes around the string are a template too, and a next chunk that fits it
skips SSE decoding as well: upstreams writing as the tokens come send one event a chunk,
a busy connection delivers several. A template is learnt only from bytes or data that
hold no backslash (so the text's string is written as orjson writes it) and hold that
string once (so it is the text's and no other string's). The decoder is skipped for the
events that fit, so its `feed_text` must leave the same state for them as for the
template's (what it keeps of a text delta may come only from outside the text, and
keeping it twice must change nothing); an event that does not fit drops the template
before the decoder reads it. A stream whose text deltas keep missing the last one's
template stops learning. A decoder may name a top-level key whose value changes from
delta to delta (`text_hole`, a TextHole); a template then has a hole there, in its data
after the text. The value is either a string the decoder ignores (the random padding
OpenAI's own API puts in every chunk: any string with nothing escaped fits, whatever its
length) or a JSON object the decoder keeps the last of (Gemini's running counts: any
object fits, orjson says, and the last one read from a template is handed to the
decoder's `keep_hole` before it reads anything else, or the stream ends; a template has
such a hole only where its key is there once, at the top level). The text's string ends
where the template's bytes between it and the hole first come after it (they hold a raw
quote after their first, so cannot be inside it), and orjson checks that it is one JSON
string. Runs are not read for such templates.

A busy connection delivers many events a read, most of them text deltas that fit the
template. A run of them in a read is converted whole (`Run`): split at the
bytes between two deltas (the last one's end and the next one's start, which no text
can hold: they break the line the data is on), the texts whose strings need no escape
(no quote, backslash or control byte: orjson would write them as they are) are put
between the client's bytes for a text: what the encoder's `text` writes around any text
(so it must write the same around every one, and keep nothing), found by writing one no
client's bytes hold. Inside a run, a delta that needs escapes is read from its string
(orjson, as for a fitting event) and anything else between two deltas the usual way;
the run goes on after them unless they changed the template. The events before the
first delta are read one at a time, the rest of the read after the last delta together,
and a read is split for runs or has events split off it only a bounded number of times,
so its cost stays linear in its length.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, AnyStr

import orjson

from .canonical import StreamEvent, TextDelta
from .errors import AiclientError, UpstreamProtocolError
from .protocols import ApiProtocol
from .protocols.base import StreamDecoder, StreamEncoder, TextHole
from .protocols.errors import error_payload
from .sse import SSEDecoder, SSEEvent, encode_sse

__all__ = ["Framer", "JSONArrayFramer", "SSEFramer", "StreamPipeline", "TextTap"]

# What a codec raises on an upstream event of an unexpected shape (a list where an
# object belongs, a string index, ...): the stream is then broken, like a cut one
# (before the client's response starts the call fails over, after it the client gets
# an in-band error), as a whole answer that cannot be read is.
UNREADABLE = (TypeError, KeyError, AttributeError, ValueError, IndexError)
_UNREADABLE_EVENT = "the upstream sent a stream event that could not be read"

# Text deltas that missed the last one's template, after which a stream stops learning:
# its deltas differ outside the text (a running count, padding).
_MISSES = 2


def _around(
    data: AnyStr, string: AnyStr, backslash: AnyStr
) -> tuple[AnyStr, AnyStr] | None:
    """`data` before and after `string`, a text's JSON string as orjson writes it (its
    quotes kept on either side); None where that cannot be told for sure: `data` holds
    a backslash (the text's string may be escaped otherwise) or `string` twice."""
    if data.find(backslash) >= 0:  # `find`: `in` with a bytes needle costs 2-3x
        return None
    at = data.find(string)
    if at < 0 or data.rfind(string) != at:
        return None
    return data[: at + 1], data[at + len(string) - 1 :]


def _holed(
    head: AnyStr,
    tail: AnyStr,
    key: AnyStr,
    value: re.Pattern[AnyStr] | None,
    brace: AnyStr,
) -> tuple[AnyStr, AnyStr, AnyStr, object]:
    """A template's bytes around a text, with the value after `key` (a TextHole's: OpenAI's
    padding, Gemini's running counts) cut out of its tail: the head, what follows the
    value, what comes between the text and the value (the text's closing quote up to
    the key's end: empty when the tail has no such value), and the value if it is a
    JSON object (no `value` regex: it ends at the first `}` where orjson reads one)."""
    at = tail.find(key)
    if at >= 0:
        gap = at + len(key)
        if value is not None:
            found = value.match(tail, gap)
            if found is not None:
                return head, tail[found.end() :], tail[:gap], None
        else:
            close = gap
            for _ in range(_BRACES):
                close = tail.find(brace, close) + 1
                if not close:
                    break
                try:  # JSON that ends at a `}` is an object
                    kept = orjson.loads(tail[gap:close])
                except orjson.JSONDecodeError:
                    continue
                return head, tail[close:], tail[:gap], kept
    return head, tail, tail[:0], None


def _hole(
    data: AnyStr,
    mid: AnyStr,
    start: int,
    end: int,
    value: re.Pattern[AnyStr] | None,
) -> tuple[Any, Any]:
    """The text of `data`, an event that fits a holed template up to `end` (where what
    follows the hole starts) with its text's JSON string from `start`, and the hole's
    value if it is kept; None for the text when it does not fit. `mid` (the template's
    bytes from the text's closing quote to the hole) comes first after the text, and
    what is between it and `end` is a value `value` fits, or with no `value` (a kept
    hole's) a JSON object (orjson says). `mid` holds a raw quote after its first and no
    backslash, so it cannot begin inside the text's string but at an escaped quote, and
    then the bytes before it are no JSON string."""
    at = data.find(mid[0], start + 1, end)  # the first quote, most often the text's end
    if not data.startswith(mid, at):
        at = data.find(mid, start + 1, end)
        if at < 0:
            return None, None
    try:
        if value is not None:
            if value.fullmatch(data, at + len(mid), end) is None:
                return None, None
            return orjson.loads(data[start : at + 1]), None
        kept = orjson.loads(data[at + len(mid) : end])
        if kept.__class__ is not dict:
            return None, None
        return orjson.loads(data[start : at + 1]), kept
    except orjson.JSONDecodeError:
        return None, None


def _template(
    chunk: bytes, text: str, hole: TextHole | None
) -> tuple[bytes, bytes, bytes] | None:
    """The bytes around `text`'s JSON string in `chunk`, a chunk that was one text delta
    of `text` alone, with the hole cut out (`_holed`)."""
    around = _around(chunk, orjson.dumps(text), b"\\")
    if around is None:
        return None
    if hole is None:
        return around[0], around[1], b""
    return _holed(*around, hole.key.encode(), hole.value_bytes, b"}")[:3]


# An event's name, its data before and after a text's JSON string (after the hole, if
# the template has one), where that string starts and how far before the data's end it
# stops (no hole), and what comes between the string and the hole.
Shape = tuple[str | None, str, str, int, int, str]
_NO_SHAPE: Shape = (None, "", "", 0, 0, "")


# A run of text deltas that fit a Shape, read whole: the bytes of one such event before
# and after its text (quotes included), the bytes between two of them (end, then
# start), and the client's bytes before a text, between two and after the last.
Run = tuple[bytes, bytes, bytes, bytes, bytes, bytes]
# What a text's JSON string holds besides the text when orjson writes it, or the text
# cannot be told from the bytes around it: a quote, a backslash, a control byte.
_ESCAPED = re.compile(rb'["\\\x00-\x1f]')
# The `}` a kept hole's value may end at, tried one after another, at most.
_BRACES = 16
# Events split off a read one at a time, and runs read in it, at most (each copies or
# splits the rest of the read: a bound keeps a read's cost linear in its length).
_PEELED = 4
_RUNS = 2
# A text no client's bytes hold (a private use character): where the encoder puts it
# is where every text goes.
_PROBE = "\ue000"


def _utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


def _shape(event: SSEEvent, text: str, hole: TextHole | None) -> Shape | None:
    """`_template` for an event, a text delta of `text`: its name and data. The text's
    string is spelt as orjson would: data without a backslash has nothing escaped."""
    around = _around(event.data, f'"{text}"', "\\")
    if around is None:
        return None
    head, tail = around
    mid = ""
    if hole is not None:
        head, tail, mid, kept = _holed(head, tail, hole.key, hole.value, "}")
        # A kept value is the decoder's only where its key is the top-level one, once.
        if kept is not None and (
            event.data.count(hole.key) != 1
            or orjson.loads(event.data).get(hole.name) != kept
        ):
            head, tail, mid = around[0], around[1], ""
    return event.event, head, tail, len(head) - 1, len(tail) - 1, mid


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
        # The last text delta around its text: its chunk's bytes, its event's name and
        # data (module docstring).
        self._template: tuple[bytes, bytes, bytes] | None = None
        self._shape: Shape | None = None
        # A key of a text delta whose value changes from delta to delta (OpenAI's
        # padding, Gemini's running counts): a hole in the templates.
        self._hole: TextHole | None = getattr(decoder, "text_hole", None)
        # Where the decoder keeps a hole's value (a JSON object), the value of the last
        # delta read from a template, not yet given to it: given before the decoder
        # reads anything else, or the stream ends (`_catch_up`).
        self._keep: Callable[[object], None] | None = getattr(decoder, "keep_hole", None)
        if self._hole is not None and self._hole.value is None and self._keep is None:
            self._hole = None
        self._kept: object = None
        self._learning = self._text_in is not None and self._text_out is not None
        self._misses = 0
        # The run read for `_shape` (None: none can be), computed when first needed.
        self._run: Run | None = None
        self._run_shape: Shape | None = None

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

    def _shaped(self, events: list[SSEEvent], out: list[bytes]) -> str | None:
        """`_events` with templates: the events that fit the last text delta's read from
        their strings, every other one as `_events` reads it, and a text delta among
        these the new template (module docstring). The last event's text, if it was a
        text delta."""
        text_in, text_out = self._text_in, self._text_out
        assert text_in is not None
        assert text_out is not None
        text: str | None = None
        shape = self._shape
        name, head, tail, start, cut, mid = shape or _NO_SHAPE
        value = self._hole.value if self._hole is not None else None
        for event in events:
            missed = shape is not None
            if missed:
                kind, string = event  # an SSEEvent, unpacked: a field read costs more
                if string.startswith(head) and string.endswith(tail) and kind == name:
                    # The last delta's data around another JSON string: that string's
                    # text, if it is one (orjson says).
                    if mid:
                        text, kept = _hole(string, mid, start, len(string) - cut - 1, value)
                    else:
                        kept = None
                        try:
                            text = orjson.loads(string[start : len(string) - cut])
                        except orjson.JSONDecodeError:
                            text = None
                    if text:
                        if kept is not None:
                            self._kept = kept
                        data = text_out(text)
                        out.append(data if data is not None else self._text_delta(text))
                        continue
                shape = self._shape = None
                if self._kept is not None:
                    self._catch_up()
            got = text_in(event)
            if isinstance(got, str):
                data = text_out(got) if self._started else None
                if data is not None:
                    out.append(data)
                    text = got
                    if self._learning:
                        if missed:  # a text delta in other bytes than the last one:
                            # the next one teaches (a stream's last is often unlike)
                            self._misses += 1
                            self._learning = self._misses < _MISSES
                        else:
                            shape = self._shape = _shape(event, got, self._hole)
                            name, head, tail, start, cut, mid = shape or _NO_SHAPE
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
        if template is not None:  # so nothing is held: the last chunk was one event
            head, tail, mid = template
            end = len(chunk) - len(tail)
            # The last chunk's bytes around another JSON string: that string's text, if
            # it is one (orjson says; module docstring).
            text = kept = None
            if mid:
                if chunk.startswith(head) and chunk.endswith(tail):
                    assert self._hole is not None
                    text, kept = _hole(
                        chunk,
                        mid,
                        len(head) - 1,
                        end,
                        self._hole.value_bytes,
                    )
            elif chunk.startswith(head) and chunk.find(tail, len(head)) == end:
                try:
                    text = orjson.loads(chunk[len(head) - 1 : end + 1])
                except orjson.JSONDecodeError:
                    pass
            if text:
                if kept is not None:
                    self._kept = kept
                assert self._text_out is not None
                data = self._text_out(text)
                return data if data is not None else self._text_delta(text)
            self._template = None
            if self._kept is not None:
                self._catch_up()
        elif not self._learning and self._shape is None:
            out: list[bytes] = []
            try:
                self._events(self._sse.feed(chunk), out)
            except UNREADABLE as exc:
                raise UpstreamProtocolError(_UNREADABLE_EVENT) from exc
            return b"".join(out)  # one piece (the usual case) is returned as it is
        return self._learn(chunk)

    def _learn(self, chunk: bytes) -> bytes:
        """`feed`'s general path, taking the chunk as the template when it was one text
        delta alone, and reading the runs of deltas that fit the last one's whole: the
        events before them are split off one at a time (to learn a template), the events
        after them read together."""
        sse = self._sse
        out: list[bytes] = []
        try:
            peeled = runs = 0
            while not sse.held:  # at an event's start: what follows can be read apart
                # The first event's end (a blank line: `\n\n` is one, CRs or not), if
                # it is whole and more follow
                end = chunk.find(b"\n\n") + 2
                if end < 2 or end == len(chunk) or peeled == _PEELED:
                    break
                shape = self._shape
                if shape is None:
                    if not self._learning:
                        break
                else:
                    if self._run_shape is not shape:
                        self._run_shape = shape
                        self._run = self._new_run(shape)
                    run = self._run
                    if run is None:
                        break
                    if chunk.startswith(run[0]) and runs < _RUNS:
                        runs += 1
                        rest = self._read_run(chunk, run, out)
                        if rest is not chunk:  # a run was read
                            if not rest:
                                return b"".join(out)
                            chunk = rest
                            continue
                    if chunk.find(run[0], end) < 0:  # no delta after this event
                        break
                peeled += 1
                self._shaped(sse.feed(chunk[:end]), out)
                chunk = chunk[end:]
            alone = not sse.held
            events = sse.feed(chunk)
            text = self._shaped(events, out)
        except UNREADABLE as exc:
            raise UpstreamProtocolError(_UNREADABLE_EVENT) from exc
        shape = self._shape  # the event's, if it fit or taught one
        if (
            self._learning
            and text is not None
            and shape is not None
            and alone
            and len(events) == 1
            and not sse.held
        ):
            # A hole where the event's shape has one (a kept value checked there).
            self._template = _template(chunk, text, self._hole if shape[5] else None)
        return b"".join(out)

    def _new_run(self, shape: Shape) -> Run | None:
        """The run for deltas that fit `shape`, written as the SSE decoder reads an event
        (`event: ` and `data: ` lines); None when the encoder's bytes for a text do not
        show where the text goes."""
        name, head, tail, _, _, mid = shape
        if mid or "\n" in head or "\n" in tail:  # a hole, or data of several lines
            return None
        assert self._text_out is not None
        written = self._text_out(_PROBE)
        if written is None:
            return None
        around = written.split(orjson.dumps(_PROBE))
        if len(around) != 2:
            return None
        start = f"event: {name}\ndata: {head}" if name is not None else f"data: {head}"
        before, after = start.encode(), f"{tail}\n\n".encode()
        first, last = around[0] + b'"', b'"' + around[1]
        return before, after, after + before, first, last + first, last

    def _read_run(self, chunk: bytes, run: Run, out: list[bytes]) -> bytes:
        """The client's bytes for the run of fitting text deltas `chunk` starts with
        (onto `out`), with the events between them that cannot be copied read the usual
        way; what follows the run, or what is left when one of those events changed the
        template (`chunk` itself when it starts with no such delta)."""
        before, after, between, first, joint, last = run
        texts = chunk.split(between)  # once: each text, then the bytes after the last
        end = texts.pop()  # the last delta and the rest of the chunk, if it was one
        if texts:
            texts[0] = texts[0][len(before) :]
        else:
            end = end[len(before) :]
        quote = end.find(0x22)
        if quote > 0 and end.startswith(after, quote):
            texts.append(end[:quote])
            rest = end[quote + len(after) :]
        elif texts:
            rest = before + end
        else:
            return chunk
        spread = b" ".join(texts)  # spaced: UTF-8 is checked text by text
        if (
            all(texts)
            and not _ESCAPED.search(spread)
            and (spread.isascii() or _utf8(spread))
        ):
            out.append(first + joint.join(texts) + last)
            return rest
        # Texts that cannot be copied: a delta's that needs escapes is read from its
        # string as `_shaped` reads a fitting event's; anything else between two deltas
        # (not JSON: more events, or a broken one) the usual way, from its bytes: whole
        # events, so the SSE decoder holds nothing after them.
        shape, text_out = self._shape, self._text_out
        assert text_out is not None
        copied: list[bytes] = []
        for at, text in enumerate(texts):
            if text and not _ESCAPED.search(text) and _utf8(text):
                copied.append(text)
                continue
            if copied:
                out.append(first + joint.join(copied) + last)
                copied = []
            # A JSON string holds no raw line end, so one that parses is one event's.
            try:
                string = orjson.loads(b'"' + text + b'"')
            except orjson.JSONDecodeError:  # or bad UTF-8: decoded as SSE does
                string = None
            data = text_out(string) if string else None
            if data is not None:
                out.append(data)
                continue
            self._shaped(self._sse.feed(before + text + after), out)
            if self._shape is not shape:  # another template: the rest goes back
                return b"".join([before + t + after for t in texts[at + 1 :]]) + rest
        if copied:
            out.append(first + joint.join(copied) + last)
        return rest

    def _catch_up(self) -> None:
        """Give the decoder the kept value of the last text delta read from a template
        (Gemini's counts): what it keeps of those deltas, the last one's."""
        kept, self._kept = self._kept, None
        assert self._keep is not None
        self._keep(kept)

    def _text_delta(self, text: str) -> bytes:
        out: list[bytes] = []
        try:
            self._canonical((TextDelta(text),), out)
        except UNREADABLE as exc:
            raise UpstreamProtocolError(_UNREADABLE_EVENT) from exc
        return b"".join(out)

    def close(self) -> bytes:
        if self._kept is not None:
            self._catch_up()
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
