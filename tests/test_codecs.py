"""Codec properties: what every protocol can express survives any trip through them."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import re
from collections.abc import Iterable
from typing import Any

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from aiclient import pipeline as pipeline_module
from aiclient.canonical import (
    ChatRequest,
    ChatResponse,
    Message,
    MessageStart,
    MessageStop,
    ReasoningDelta,
    Role,
    StopReason,
    StreamEvent,
    TextDelta,
    TextPart,
    Usage,
)
from aiclient.errors import InvalidRequest, UnsupportedConversion, UpstreamError
from aiclient.pipeline import Framer, StreamPipeline
from aiclient.protocols import ApiProtocol
from aiclient.protocols.claude.stream import ClaudeStreamEncoder
from aiclient.protocols.codecs import CODECS
from aiclient.protocols.openai.stream import OpenAIStreamEncoder
from aiclient.sse import SSEDecoder, SSEEvent, encode_sse
from tests.strategies import (
    answer_summary,
    events_of,
    fold,
    requests,
    responses,
    summary,
)

PAIRS = list(itertools.product(ApiProtocol, ApiProtocol))
IDS = [f"{a.value}-to-{b.value}" for a, b in PAIRS]


def _through(protocol: ApiProtocol, request: ChatRequest) -> ChatRequest:
    codec = CODECS[protocol]
    body = codec.request_from_canonical(request)
    model = request.model if protocol is ApiProtocol.GEMINI else None
    return codec.request_to_canonical(body, model=model)


@pytest.mark.parametrize(("first", "second"), PAIRS, ids=IDS)
@settings(max_examples=40, deadline=None)
@given(request=requests)
def test_request_round_trips_keep_the_common_subset(
    first: ApiProtocol, second: ApiProtocol, request: ChatRequest
) -> None:
    """Text, system, history, tools, calls, results and sampling survive X then Y."""
    assert summary(_through(second, _through(first, request))) == summary(request)


@pytest.mark.parametrize("protocol", list(ApiProtocol), ids=[p.value for p in ApiProtocol])
@settings(max_examples=40, deadline=None)
@given(response=responses())
def test_response_round_trip(protocol: ApiProtocol, response: ChatResponse) -> None:
    codec = CODECS[protocol]
    back = codec.response_to_canonical(codec.response_from_canonical(response))
    assert answer_summary(back) == answer_summary(response)


@pytest.mark.parametrize(("client", "upstream"), PAIRS, ids=IDS)
@settings(max_examples=30, deadline=None)
@given(response=responses(), pieces=st.integers(1, 5))
def test_streams_agree_with_whole_answers(
    client: ApiProtocol, upstream: ApiProtocol, response: ChatResponse, pieces: int
) -> None:
    """An answer streamed by `upstream` and re-encoded for `client` folds back to the
    same answer a client decoder reads."""
    request = ChatRequest(model="m", messages=(), include_usage=True)
    encoder = CODECS[upstream].stream_encoder(request)
    upstream_bytes = b"".join(
        encode_sse(e) for ev in events_of(response, pieces) for e in encoder.feed(ev)
    )
    canonical = _read_back(upstream, upstream_bytes)
    client_encoder = CODECS[client].stream_encoder(request)
    client_bytes = b"".join(
        encode_sse(e) for ev in canonical for e in client_encoder.feed(ev)
    )
    final = _read_back(client, client_bytes)
    assert answer_summary(fold(final)) == answer_summary(response)


@pytest.mark.parametrize("protocol", list(ApiProtocol), ids=[p.value for p in ApiProtocol])
@settings(max_examples=60, deadline=None)
@given(
    body=st.dictionaries(
        st.sampled_from(["model", "messages", "contents", "system", "tools", "stream"]),
        st.none()
        | st.integers()
        | st.text(max_size=3)
        | st.lists(st.integers(), max_size=2),
    )
)
def test_arbitrary_bodies_fail_only_with_typed_errors(
    protocol: ApiProtocol, body: dict[str, object]
) -> None:
    try:
        CODECS[protocol].request_to_canonical(body, model="m")
    except (InvalidRequest, UnsupportedConversion):
        pass


@pytest.mark.parametrize(
    "text", ["hi", 'quote " and \\ backslash', "line\nbreak\ttab", "émoji 🦀 \u2028", "</"]
)
def test_text_delta_fast_paths_write_what_the_general_encoders_write(text: str) -> None:
    """Text deltas skip building a dict (the hot path of a converted stream); the bytes
    must be exactly those of the general path, or clients would see a different stream."""
    request = ChatRequest(
        model='m "quoted"', messages=(Message(Role.USER, (TextPart(text="x"),)),)
    )
    openai = OpenAIStreamEncoder(request)
    openai.feed(MessageStart("abc", "upstream-model"))
    (fast,) = openai.feed(TextDelta(text))
    assert fast == openai._chunk({"content": text})
    claude = ClaudeStreamEncoder(request)
    claude.feed(MessageStart("abc", "upstream-model"))
    claude.feed(ReasoningDelta("thinking first, so the text block is index 1"))
    *_, delta = claude.feed(TextDelta(text))
    assert delta == claude._delta({"type": "text_delta", "text": text})
    assert orjson.loads(delta.data)["index"] == 1


FAST_PAIRS = list(itertools.product(ApiProtocol, ApiProtocol))


def _pipeline(client: ApiProtocol, upstream: ApiProtocol, *, fast: bool) -> StreamPipeline:
    request = ChatRequest(model="m", messages=(), include_usage=True)
    return StreamPipeline(
        client,
        Framer(),
        CODECS[upstream].stream_decoder(),
        CODECS[client].stream_encoder(request),
        fast=fast,
    )


@pytest.mark.parametrize(
    ("client", "upstream"),
    FAST_PAIRS,
    ids=[f"{u.value}-to-{c.value}" for c, u in FAST_PAIRS],
)
@settings(max_examples=40, deadline=None)
@given(response=responses(mixed=True), pieces=st.integers(1, 6), cut=st.integers(0, 97))
def test_text_fast_path_gives_the_general_paths_bytes(
    client: ApiProtocol,
    upstream: ApiProtocol,
    response: ChatResponse,
    pieces: int,
    cut: int,
) -> None:
    """A converted stream's client bytes are the same with the text fast path (text
    deltas straight from the upstream decoder to the client encoder) as without it,
    for any answer (text, reasoning, tool calls in any order) split anywhere, or sent
    one event per chunk as upstreams do (`cut` 0)."""
    request = ChatRequest(model="m", messages=(), include_usage=True)
    encoder = CODECS[upstream].stream_encoder(request)
    events = [encode_sse(e) for ev in events_of(response, pieces) for e in encoder.feed(ev)]
    wire = b"".join(events)
    chunks = [wire[i : i + cut] for i in range(0, len(wire), cut)] if cut else events
    shortcut = _pipeline(client, upstream, fast=True)
    assert shortcut._text_in is not None
    assert shortcut._text_out is not None
    fast = _stream_outcome(client, upstream, chunks, fast=True)
    assert isinstance(fast, bytes)
    assert fast == _stream_outcome(client, upstream, chunks, fast=False)


# Bytes to put where a text delta's text goes: plain ones, escapes, quotes that change the
# JSON around them, control bytes, invalid and valid UTF-8 (cut and whole), a second event.
_SPLICE_PIECES = [
    b"a",
    b" tok",
    b'"',
    b"\\",
    b"\\n",
    b'\\"',
    b"\\u00e9",
    b"\x00",
    b"\x1f",
    b"\n",
    b"\r",
    b"\xff",
    b"\xc3",
    b"\xa9",
    "é".encode(),
    "汉字".encode(),
    "\u2028".encode(),
    b"}",
    b'","extra":"',
    b'"}}\n\nevent: ping\ndata: {"type":"ping","x":"',
]
_SPLICES = st.lists(st.sampled_from(_SPLICE_PIECES), max_size=5).map(b"".join)
_MARK = "\u2603MARK\u2603"


def _uncreated(data: bytes) -> bytes:
    """A stream's bytes with every `created` time 0, to compare two of them."""
    return re.sub(rb'"created":\d+', b'"created":0', data)


def _read_back(protocol: ApiProtocol, data: bytes) -> list[StreamEvent]:
    """A stream's SSE bytes read as `protocol`'s client reads them."""
    events: list[StreamEvent] = []
    sse = SSEDecoder()
    decoder = CODECS[protocol].stream_decoder()
    for event in sse.feed(data) + sse.close():
        events += decoder.feed(event)
    return events + list(decoder.close())


def _watched_pipeline(
    client: ApiProtocol, upstream: ApiProtocol, monkeypatch: pytest.MonkeyPatch
) -> tuple[StreamPipeline, list[str], list[bytes]]:
    """A pipeline, the texts its upstream decoder reads and the chunks its SSE decoder
    is fed."""
    seen: list[str] = []
    parsed: list[bytes] = []
    decoder = CODECS[upstream].stream_decoder()

    class Watched(type(decoder)):  # type: ignore[misc]
        def feed_text(self, event: SSEEvent) -> str | Iterable[StreamEvent]:
            got: str | Iterable[StreamEvent] = super().feed_text(event)
            if isinstance(got, str):
                seen.append(got)
            return got

    class Counted(SSEDecoder):
        def feed(self, chunk: bytes) -> list[SSEEvent]:
            parsed.append(chunk)
            return super().feed(chunk)

    monkeypatch.setattr(pipeline_module, "SSEDecoder", Counted)
    request = ChatRequest(model="m", messages=(), include_usage=True)
    encoder = CODECS[client].stream_encoder(request)
    return StreamPipeline(client, Framer(), Watched(), encoder), seen, parsed


def _stream_outcome(
    client: ApiProtocol, upstream: ApiProtocol, chunks: list[bytes], fast: bool
) -> object:
    """The client's bytes (`created` as 0), and the error if the stream broke."""
    pipeline = _pipeline(client, upstream, fast=fast)
    out: list[bytes] = []
    try:
        out += [pipeline.feed(chunk) for chunk in chunks]
        out.append(pipeline.close())
        error = None
    except UpstreamError as exc:
        error = type(exc), str(exc)
    written = _uncreated(b"".join(out))
    return written if error is None else (written, error)


@pytest.mark.parametrize(
    ("client", "upstream"),
    FAST_PAIRS,
    ids=[f"{u.value}-to-{c.value}" for c, u in FAST_PAIRS],
)
@settings(max_examples=60, deadline=None)
@given(response=responses(mixed=True), pieces=st.integers(1, 4), data=st.data())
def test_text_deltas_read_from_the_last_ones_bytes_as_when_parsed(
    client: ApiProtocol,
    upstream: ApiProtocol,
    response: ChatResponse,
    pieces: int,
    data: st.DataObject,
) -> None:
    """After a text delta, the pipeline reads a chunk that is the same bytes around
    another JSON string without parsing it, and a run of such deltas whole. Whatever is
    spliced there (escapes, quotes that make it other JSON, control bytes, bad UTF-8, a
    second event, the bytes between two deltas), and however the chunks fall (split,
    two in one, repeated, many in one read), the client gets what the general path
    gives, or the same error."""
    request = ChatRequest(model="m", messages=(), include_usage=True)
    encoder = CODECS[upstream].stream_encoder(request)
    chunks: list[bytes] = []
    for event in events_of(response, pieces):
        chunks += [encode_sse(e) for e in encoder.feed(event)]
        if isinstance(event, TextDelta):
            probe = copy.deepcopy(encoder)
            marked = b"".join(encode_sse(e) for e in probe.feed(TextDelta(_MARK)))
            head, _, tail = marked.partition(orjson.dumps(_MARK))
            # the bytes between two such deltas, whole and cut, inside a text
            joints = [b'a"' + tail + head + b'"b', tail + head, b'"' + tail[:-2]]
            splices = st.one_of(_SPLICES, st.sampled_from(joints))
            for splice in data.draw(st.lists(splices, max_size=6)):
                chunks.append(head + b'"' + splice + b'"' + tail)
    edits = st.tuples(
        st.sampled_from(["split", "merge", "repeat", "coalesce"]), st.integers(0, 999)
    )
    for edit, n in data.draw(st.lists(edits, max_size=6)):
        at = n % len(chunks)
        if edit == "split":
            cut = n % max(len(chunks[at]), 1)
            chunks[at : at + 1] = [chunks[at][:cut], chunks[at][cut:]]
        elif edit == "merge" and at + 1 < len(chunks):
            chunks[at : at + 2] = [chunks[at] + chunks[at + 1]]
        elif edit == "repeat":
            chunks.insert(at, chunks[at])
        elif edit == "coalesce":  # a busy connection's read: up to 10 chunks
            chunks[at : at + 2 + n % 9] = [b"".join(chunks[at : at + 2 + n % 9])]
    fast = _stream_outcome(client, upstream, chunks, fast=True)
    assert fast == _stream_outcome(client, upstream, chunks, fast=False)


def _reads(wire: list[bytes], ends: list[int], byte_cut: int | None) -> list[bytes]:
    """A stream's events as a busy connection reads them: reads ending between events
    (where `ends` say), one of them maybe inside an event (`byte_cut`)."""
    cuts = sorted({0, len(wire), *(n % (len(wire) + 1) for n in ends)})
    chunks = [b"".join(wire[a:b]) for a, b in itertools.pairwise(cuts)]
    if byte_cut is not None:
        at = byte_cut % len(chunks)
        cut = byte_cut % (len(chunks[at]) + 1)
        chunks[at : at + 1] = [chunks[at][:cut], chunks[at][cut:]]
    return chunks


@pytest.mark.parametrize(
    ("client", "upstream"),
    FAST_PAIRS,
    ids=[f"{u.value}-to-{c.value}" for c, u in FAST_PAIRS],
)
@settings(max_examples=200, deadline=None)
@given(
    strings=st.lists(
        st.one_of(
            # mostly texts (as their JSON strings), so that runs are long
            *[st.text(min_size=1, max_size=6).map(lambda t: orjson.dumps(t)[1:-1])] * 6,
            _SPLICES,
            st.sampled_from(["joint", "cut joint", "joint in text", "cut char"]),
        ),
        max_size=24,
    ),
    reads=st.lists(st.integers(0, 10**6), max_size=5),
    byte_cut=st.integers(0, 10**6) | st.none(),
)
def test_many_text_deltas_in_a_read_read_as_one_by_one(
    client: ApiProtocol,
    upstream: ApiProtocol,
    strings: list[bytes | str],
    reads: list[int],
    byte_cut: int | None,
) -> None:
    """A busy connection's read holds many text deltas: the pipeline converts a run of
    them that fit the last delta's bytes whole. Whatever their strings hold (text of
    any kind, escapes, raw quotes and control bytes, bad UTF-8, the bytes that come
    between two deltas) and wherever the reads end, the client gets what the general
    path gives, delta by delta, or the same error."""
    request = ChatRequest(model="m", messages=(), include_usage=True)
    encoder = CODECS[upstream].stream_encoder(request)
    events = [
        *encoder.feed(MessageStart("r1", "m")),
        *encoder.feed(TextDelta("first")),
    ]
    marked = b"".join(encode_sse(e) for e in copy.deepcopy(encoder).feed(TextDelta(_MARK)))
    head, _, tail = marked.partition(orjson.dumps(_MARK))
    joints = {
        "joint": [tail + head],
        "cut joint": [tail[:-1]],
        "joint in text": [b'a"' + tail + head + b'"b'],
        "cut char": [b"a\xc3", b"\xa9b"],  # é's UTF-8 across two deltas
    }
    wire = [encode_sse(e) for e in events]
    for string in strings:
        for spliced in joints[string] if isinstance(string, str) else [string]:
            wire.append(head + b'"' + spliced + b'"' + tail)
    wire += [encode_sse(e) for e in encoder.feed(MessageStop(StopReason.END_TURN))]
    chunks = _reads(wire, reads, byte_cut)
    fast = _stream_outcome(client, upstream, chunks, fast=True)
    assert fast == _stream_outcome(client, upstream, chunks, fast=False)


@pytest.mark.parametrize(
    ("client", "upstream"),
    FAST_PAIRS,
    ids=[f"{u.value}-to-{c.value}" for c, u in FAST_PAIRS],
)
def test_a_stream_read_at_once_is_converted_a_run_at_a_time(
    client: ApiProtocol, upstream: ApiProtocol, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream in two reads of many events, as a busy proxy gets a fast upstream's
    (the second one opening with a keep-alive comment): after the delta that teaches
    the pipeline its bytes, no text delta reaches the upstream decoder or is even split
    into events, those with newlines or quotes in them included (read from their
    strings, the runs going on after them). The client gets every text, in order, in
    the general path's bytes."""
    texts = [
        f"tok{i} " if i % 7 else "line\n" if i % 2 else 'say "hi"' for i in range(1, 41)
    ]
    texts[20] = "é汉\u2028"
    request = ChatRequest(model="m", messages=(), include_usage=True)
    encoder = CODECS[upstream].stream_encoder(request)
    opening = [*encoder.feed(MessageStart("r1", "m")), *encoder.feed(TextDelta("first"))]
    deltas = [b"".join(encode_sse(e) for e in encoder.feed(TextDelta(t))) for t in texts]
    closing = [*encoder.feed(MessageStop(StopReason.END_TURN, Usage(3, 41)))]
    wire = [
        encode_sse(opening[0]),
        b"".join([*map(encode_sse, opening[1:]), *deltas[:20]]),
        b"".join([b": keep-alive\n\n", *deltas[20:], *map(encode_sse, closing)]),
    ]
    pipeline, seen, parsed = _watched_pipeline(client, upstream, monkeypatch)
    out = b"".join(pipeline.feed(chunk) for chunk in wire) + pipeline.close()
    # the decoder reads the deltas that teach the pipeline, and none after them
    assert len(seen) <= 2
    assert set(seen) <= {"first", texts[0]}
    assert not [d for d in deltas[1:] if any(d in chunk for chunk in parsed)]
    monkeypatch.undo()
    general = _stream_outcome(client, upstream, wire, fast=False)
    assert _uncreated(out) == general
    answer = fold(_read_back(client, out))
    assert [p.text for p in answer.parts if isinstance(p, TextPart)] == [
        "first" + "".join(texts)
    ]


@pytest.mark.parametrize(
    ("client", "upstream"),
    FAST_PAIRS,
    ids=[f"{u.value}-to-{c.value}" for c, u in FAST_PAIRS],
)
def test_a_run_ends_where_the_events_inside_it_change_the_clients_bytes(
    client: ApiProtocol, upstream: ApiProtocol
) -> None:
    """Thinking between two text deltas of one read: the client's next text goes in
    another block (an Anthropic client's index changes), so the deltas after it,
    though their upstream bytes are the same, are not copied with the old bytes."""
    request = ChatRequest(model="m", messages=(), include_usage=True)
    encoder = CODECS[upstream].stream_encoder(request)
    events: list[StreamEvent] = [MessageStart("r1", "m"), TextDelta("first")]
    opening = b"".join(encode_sse(e) for event in events for e in encoder.feed(event))
    events = [TextDelta("a"), TextDelta("b"), ReasoningDelta("hmm")]
    events += [TextDelta("c\n"), TextDelta("d"), TextDelta("e")]
    events.append(MessageStop(StopReason.END_TURN, Usage(3, 7)))
    rest = b"".join(encode_sse(e) for event in events for e in encoder.feed(event))
    fast = _stream_outcome(client, upstream, [opening, rest], fast=True)
    assert fast == _stream_outcome(client, upstream, [opening, rest], fast=False)
    assert isinstance(fast, bytes)
    answer = fold(_read_back(client, fast))
    texts = [p.text for p in answer.parts if isinstance(p, TextPart)]
    assert "".join(texts) == "firstabc\nde"


def test_orjson_writes_a_text_as_it_is_but_for_quotes_backslashes_and_controls() -> None:
    """What lets the pipeline copy a run's texts to the client without parsing them: a
    JSON string with no quote, backslash or control byte in it is exactly orjson's
    spelling of its text (every other character, non-ASCII, U+2028 and DEL included,
    is written as it is)."""
    text = "".join(
        chr(c)
        for c in range(0x20, 0x110000)
        if c not in (0x22, 0x5C) and not 0xD800 <= c < 0xE000
    )
    assert orjson.dumps(text) == b'"' + text.encode() + b'"'
    assert all(b"\\" in orjson.dumps(chr(c)) for c in [*range(0x20), 0x22, 0x5C])


def _claude_delta(text: str) -> bytes:
    return (
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        b'"delta":{"type":"text_delta","text":' + orjson.dumps(text) + b"}}\n\n"
    )


_CLAUDE_OPENING = [
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1",'
    b'"type":"message","role":"assistant","model":"claude-x","content":[],'
    b'"stop_reason":null,"usage":{"input_tokens":5,"output_tokens":1}}}\n\n',
    b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
    b'"content_block":{"type":"text","text":""}}\n\n',
    _claude_delta("first"),
]


_CLAUDE_PING = b'event: ping\ndata: {"type":"ping"}\n\n'


def _untyped_delta(name: str, text: str) -> bytes:
    """A text delta whose data has no type: its event's name says what it is."""
    return (
        b"event: " + name.encode() + b'\ndata: {"index":0,'
        b'"delta":{"type":"text_delta","text":' + orjson.dumps(text) + b"}}\n\n"
    )


def _two_lines(text: str, joint: bytes = b"\ndata: ") -> bytes:
    """A text delta whose data is written on two lines."""
    return (
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        + joint
        + b'"delta":{"type":"text_delta","text":'
        + orjson.dumps(text)
        + b"}}\n\n"
    )


def _one_line(text: str) -> bytes:
    """`_two_lines` without the second `data: `: no JSON, and no text delta."""
    return _two_lines(text, b"\n")


def _claude_block(index: int, kind: str) -> bytes:
    return (
        b'event: content_block_start\ndata: {"type":"content_block_start","index":%d,'
        b'"content_block":{"type":"%s","%s":""}}\n\n'
        % (index, kind.encode(), kind.encode())
    )


def _claude_thought(text: str) -> bytes:
    return (
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":1,'
        b'"delta":{"type":"thinking_delta","thinking":' + orjson.dumps(text) + b"}}\n\n"
    )


_CLAUDE_CLOSING = [
    b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n',
    b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":'
    b'"end_turn"},"usage":{"output_tokens":20}}\n\n',
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n',
]


def test_anthropic_text_deltas_are_read_without_parsing_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Anthropic's text deltas differ only in their text: after the first two, the
    pipeline reads the rest from their bytes (the upstream decoder sees none of them;
    sent one a chunk, neither does the SSE decoder), one per chunk or several (as a
    busy connection delivers them), and the OpenAI client gets the same stream, each
    text where it belongs."""
    texts = [f"tok{i} " for i in range(18)] + ["é\u2028汉", 'say "hi"\n']
    deltas = [_claude_delta(text) for text in texts]
    coalesced = [b"".join(deltas[i : i + 3]) for i in range(10, len(deltas), 3)]
    wire = [*_CLAUDE_OPENING[:2], *deltas[:10], *coalesced, *_CLAUDE_CLOSING]
    pipeline, seen, parsed = _watched_pipeline(
        ApiProtocol.OPENAI, ApiProtocol.CLAUDE, monkeypatch
    )
    out = b"".join(pipeline.feed(chunk) for chunk in wire) + pipeline.close()
    assert len(seen) <= 2
    # one delta a chunk: after the first two, not even split into events
    assert not set(deltas[2:10]) & set(parsed)
    general = _stream_outcome(ApiProtocol.OPENAI, ApiProtocol.CLAUDE, wire, fast=False)
    assert _uncreated(out) == general
    contents = [
        choice["delta"].get("content")
        for line in out.split(b"\n\n")
        if line.startswith(b"data: {")
        for choice in orjson.loads(line[6:])["choices"]
    ]
    assert [c for c in contents if c] == texts


def _padded(text: bytes, pad: bytes, delta: bytes = b'{"content":"%s"}') -> bytes:
    """A chunk as OpenAI's own API writes it: `delta` (its string `text`) and the random
    padding after it (`obfuscation`, another length in every chunk)."""
    return (
        b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,'
        b'"model":"gpt-4o","service_tier":"default","system_fingerprint":"fp_1",'
        b'"choices":[{"index":0,"delta":' + delta.replace(b"%s", text) + b',"logprobs"'
        b':null,"finish_reason":null}],"obfuscation":"' + pad + b'"}\n\n'
    )


_PADDED_OPENING = _padded(b"", b"Hk2", b'{"role":"assistant","content":"%s"}')
_PADDED_CLOSING = [
    _padded(b"", b"x", b"{}").replace(b'"finish_reason":null', b'"finish_reason":"stop"'),
    b"data: [DONE]\n\n",
]
_PADS = [b"ZGF", b"lRK2aBv", b"kJ", b"0wmdEAC", b"", b"a", b"YhS7A", b"eLeR83E5F"]


@pytest.mark.parametrize("client", [ApiProtocol.CLAUDE, ApiProtocol.GEMINI])
def test_openais_padded_text_deltas_are_read_without_parsing_each(
    client: ApiProtocol, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OpenAI's own API pads every chunk with random characters of random length
    (`obfuscation`): the pipeline's templates leave a hole for them, so after the first
    two deltas it reads the rest from their bytes (the upstream decoder sees none of
    them, and sent one a chunk, neither does the SSE decoder), and the client gets the
    same stream as from the general path, each text where it belongs."""
    texts = [f"tok{i} " for i in range(18)] + ["é\u2028汉", 'say "hi"\n']
    deltas = [
        _padded(orjson.dumps(text)[1:-1], _PADS[i % len(_PADS)])
        for i, text in enumerate(texts)
    ]
    coalesced = [b"".join(deltas[i : i + 3]) for i in range(10, len(deltas), 3)]
    wire = [_PADDED_OPENING, *deltas[:10], *coalesced, *_PADDED_CLOSING]
    pipeline, seen, parsed = _watched_pipeline(client, ApiProtocol.OPENAI, monkeypatch)
    out = b"".join(pipeline.feed(chunk) for chunk in wire) + pipeline.close()
    assert len(seen) <= 2
    assert not set(deltas[2:10]) & set(parsed)
    monkeypatch.undo()
    assert _uncreated(out) == _stream_outcome(client, ApiProtocol.OPENAI, wire, fast=False)
    answer = fold(_read_back(client, out))
    assert [p.text for p in answer.parts if isinstance(p, TextPart)] == ["".join(texts)]


# What may be where the padding goes besides letters: the bytes that would end its
# string, or the chunk, and more JSON, and what comes between a text and the padding.
_PAD_SPLICES = st.lists(
    st.sampled_from(
        [
            b"Ab9",
            *_SPLICE_PIECES,
            b'"}\n\ndata: {"x":"',
            b'","usage":{"prompt_tokens":1},"y":"',
            b'"},"logprobs":null,"finish_reason":null}],"obfuscation":"',
        ]
    ),
    max_size=3,
).map(b"".join)


@pytest.mark.parametrize("client", [ApiProtocol.CLAUDE, ApiProtocol.GEMINI])
@settings(max_examples=150, deadline=None)
@given(
    deltas=st.lists(
        st.tuples(
            _SPLICES
            | st.text(min_size=1, max_size=5).map(lambda t: orjson.dumps(t)[1:-1])
            | st.just(b'"},"logprobs":null,"finish_reason":null}],"obfuscation":"'),
            _PAD_SPLICES,
        ),
        max_size=12,
    ),
    reads=st.lists(st.integers(0, 10**6), max_size=4),
    byte_cut=st.integers(0, 10**6) | st.none(),
)
def test_whatever_fills_the_padding_the_client_gets_the_general_paths_bytes(
    client: ApiProtocol,
    deltas: list[tuple[bytes, bytes]],
    reads: list[int],
    byte_cut: int | None,
) -> None:
    """Whatever an OpenAI chunk holds where its text and its padding go (quotes that end
    the padding's string early and add keys, a usage that the decoder must read, an
    event's end, the bytes that come between a text and the padding, escapes, control
    bytes, bad UTF-8), and wherever the reads end, the client gets what the general path
    gives, or the same error."""
    wire = [_PADDED_OPENING, _padded(b"first", b"Hk2"), _padded(b"second", b"Z")]
    wire += [_padded(text, pad) for text, pad in deltas]
    wire += _PADDED_CLOSING
    chunks = _reads(wire, reads, byte_cut)
    fast = _stream_outcome(client, ApiProtocol.OPENAI, chunks, fast=True)
    assert fast == _stream_outcome(client, ApiProtocol.OPENAI, chunks, fast=False)


_A_AND_MOST_OF_B = _claude_delta("a") + _claude_delta("b")[:-6]
_REST_OF_B = _claude_delta("b")[-6:]


def test_a_read_is_parsed_once_however_its_deltas_fall(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A read whose deltas keep breaking the run (a ping after every two, so the
    template is dropped and learnt again, and half of them with escapes) costs the
    pipeline work in proportion to its length: the runs read in it and the events
    split off it one at a time are bounded, and no byte of it is given to the SSE
    decoder twice."""
    texts = [f"t{i}\n" if i % 2 else f"t{i}" for i in range(400)]
    pairs = zip(texts[::2], texts[1::2], strict=True)
    read = b"".join(_claude_delta(a) + _claude_delta(b) + _CLAUDE_PING for a, b in pairs)
    read += b"".join(_CLAUDE_CLOSING)
    runs: list[int] = []
    read_run = StreamPipeline._read_run

    def counted(self: StreamPipeline, chunk: bytes, run: Any, out: list[bytes]) -> bytes:
        runs.append(len(chunk))
        return read_run(self, chunk, run, out)

    monkeypatch.setattr(StreamPipeline, "_read_run", counted)
    pipeline, _, parsed = _watched_pipeline(
        ApiProtocol.OPENAI, ApiProtocol.CLAUDE, monkeypatch
    )
    out = b"".join(pipeline.feed(chunk) for chunk in [*_CLAUDE_OPENING, read])
    assert len(runs) <= 2 * (len(_CLAUDE_OPENING) + 1)
    assert sum(map(len, parsed)) <= sum(map(len, _CLAUDE_OPENING)) + len(read)
    assert len(parsed) < 20  # a few events split off one at a time, then the rest
    answer = fold(_read_back(ApiProtocol.OPENAI, out + pipeline.close()))
    assert [p.text for p in answer.parts if isinstance(p, TextPart)] == [
        "first" + "".join(texts)
    ]


@pytest.mark.parametrize(
    "layout",
    [
        # two deltas in a chunk, twice: the second chunk is not the second delta alone
        [_claude_delta("a") + _claude_delta("b")] * 2,
        # a delta completing a held one, then the same bytes with nothing held
        [_claude_delta("a")[:30], _claude_delta("a")[30:], _claude_delta("a")[30:]],
        # a delta and the start of the next, twice (after a template, and with none)
        [_A_AND_MOST_OF_B, _A_AND_MOST_OF_B, _REST_OF_B],
        [_CLAUDE_PING, _A_AND_MOST_OF_B, _A_AND_MOST_OF_B, _REST_OF_B],
        # deltas named by their event alone, then one under another name
        [
            _CLAUDE_PING,
            _untyped_delta("content_block_delta", "a") + _untyped_delta("ping", "b"),
        ],
        # deltas whose data is on two lines, then bytes that are those lines as one
        [_CLAUDE_PING, _two_lines("a") + _two_lines("b"), _one_line("c") + _one_line("d")],
        # a text delta, then a thinking delta of the same text: that block is no text's
        [
            _CLAUDE_PING,
            _claude_delta("a") + _claude_block(1, "thinking") + _claude_thought("a"),
            _claude_thought("b"),
        ],
    ],
    ids=[
        "two-in-one",
        "completing",
        "half-after",
        "half-after-fresh",
        "renamed",
        "two-lines",
        "then-thinking",
    ],
)
def test_only_a_chunk_that_was_one_whole_delta_is_a_template(layout: list[bytes]) -> None:
    """A chunk teaches the pipeline where its text sits only when it was one text
    delta, whole, and nothing else: chunks that hold two events, end one begun before
    or begin the next read as the general path reads them, however they repeat."""
    wire = [*_CLAUDE_OPENING, *layout, _claude_delta("last"), *_CLAUDE_CLOSING]
    fast = _stream_outcome(ApiProtocol.OPENAI, ApiProtocol.CLAUDE, wire, fast=True)
    assert fast == _stream_outcome(ApiProtocol.OPENAI, ApiProtocol.CLAUDE, wire, fast=False)


@pytest.mark.parametrize("spelling", ['"\\u0062ench"', '"bench"'], ids=["escaped", "plain"])
def test_a_text_is_not_taken_for_another_string(spelling: str) -> None:
    """The pipeline learns where a text delta's text sits only where no other string
    of the chunk could be it: not from a text written with escapes (`\\u0062ench` for
    `bench`: orjson's spelling is then another string's, here the model's), nor from
    one spelt like another string. The next chunk's text is its own, not the model's."""

    def chunk(model: str, content: str) -> bytes:
        return (
            b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"'
            + model.encode()
            + b'","choices":[{"index":0,"delta":{"content":'
            + content.encode()
            + b'},"finish_reason":null}]}\n\n'
        )

    wire = [
        chunk("bench", '""'),
        chunk("bench", '"hi"'),  # opens the client's text block: nothing learnt
        chunk("bench", spelling),
        chunk("other", spelling),
        b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"bench",'
        b'"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n',
        b"data: [DONE]\n\n",
    ]
    out = _stream_outcome(ApiProtocol.CLAUDE, ApiProtocol.OPENAI, wire, fast=True)
    assert out == _stream_outcome(ApiProtocol.CLAUDE, ApiProtocol.OPENAI, wire, fast=False)
    assert isinstance(out, bytes)
    texts = [
        orjson.loads(line.partition(b"data: ")[2])["delta"].get("text")
        for line in out.split(b"\n\n")
        if b"text_delta" in line
    ]
    assert texts == ["hi", "bench", "bench"]


def _gemini_chunk(text: str, tokens: int, finish: str | None = None) -> bytes:
    candidate: dict[str, object] = {
        "content": {"parts": [{"text": text}], "role": "model"},
        "index": 0,
    }
    if finish is not None:
        candidate["finishReason"] = finish
    chunk = {
        "candidates": [candidate],
        "usageMetadata": {
            "promptTokenCount": 5,
            "candidatesTokenCount": tokens,
            "totalTokenCount": 5 + tokens,
        },
        "modelVersion": "gemini-2.5-flash",
        "responseId": "resp-1",
    }
    return b"data: " + orjson.dumps(chunk) + b"\r\n\r\n"


@pytest.mark.parametrize("client", list(ApiProtocol), ids=[p.value for p in ApiProtocol])
def test_text_fast_path_keeps_gemini_usage_and_finish(client: ApiProtocol) -> None:
    """Gemini sends usage with every chunk and its finish reason with the last text:
    the fast path keeps both, so the client gets the same end (stop reason, tokens)."""
    wire = [
        _gemini_chunk("Hel", 1),
        _gemini_chunk("lo, ", 2),
        _gemini_chunk("world", 3, finish="MAX_TOKENS"),
    ]
    request = ChatRequest(model="m", messages=(), include_usage=True)
    outputs = []
    for fast in (True, False):
        pipeline = StreamPipeline(
            client,
            Framer(),
            CODECS[ApiProtocol.GEMINI].stream_decoder(),
            CODECS[client].stream_encoder(request),
            fast=fast,
        )
        out = b"".join(pipeline.feed(chunk) for chunk in wire) + pipeline.close()
        outputs.append(_uncreated(out))
    assert outputs[0] == outputs[1]
    answer = fold(_read_back(client, outputs[0]))
    assert [p.text for p in answer.parts if isinstance(p, TextPart)] == ["Hello, world"]
    assert answer.stop_reason is StopReason.MAX_TOKENS
    assert answer.usage is not None
    assert answer.usage.output_tokens == 3


def _counted(
    text: bytes,
    usage: bytes,
    *,
    candidate: bytes = b"",
    key: bytes = b'"usageMetadata": ',
) -> bytes:
    """A text delta's chunk as Gemini writes one (a space after each colon): its text's
    JSON string `text`, then after `key` its running counts `usage`; `candidate` goes
    in the candidate (a finish reason)."""
    return (
        b'data: {"candidates": [{"content": {"parts": [{"text": "' + text + b'"}],'
        b'"role": "model"}'
        + candidate
        + b',"index": 0}],'
        + key
        + usage
        + b',"modelVersion": "gemini-2.5-flash","responseId": "r-1"}\r\n\r\n'
    )


def _counts(tokens: int) -> bytes:
    return (
        b'{"promptTokenCount": 8,"candidatesTokenCount": %d,"totalTokenCount": %d,'
        b'"promptTokensDetails": [{"modality": "TEXT","tokenCount": 8}]}'
    ) % (tokens, tokens + 8)


# Gemini's last chunk: the finish reason, no text and (here) no counts of its own, so the
# usage the client gets is the last text delta's.
_COUNTED_CLOSING = (
    b'data: {"candidates": [{"content": {"parts": [{"text": ""}],"role": "model"},'
    b'"finishReason": "STOP","index": 0}],"modelVersion": "gemini-2.5-flash",'
    b'"responseId": "r-1"}\r\n\r\n'
)


@pytest.mark.parametrize("client", [ApiProtocol.OPENAI, ApiProtocol.CLAUDE])
def test_geminis_counted_text_deltas_are_read_without_parsing_each(
    client: ApiProtocol, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Gemini's text deltas carry the running token counts, different in every chunk:
    the pipeline's templates leave a hole there, so after the first two deltas it reads
    the rest from their bytes (the upstream decoder sees none of them, and sent one a
    chunk, neither does the SSE decoder), yet the usage the client gets at the end is
    the last delta's, as from the general path."""
    texts = [f"tok{i} " for i in range(18)] + ["é\u2028汉", 'say "hi"\n']
    deltas = [
        _counted(orjson.dumps(text)[1:-1], _counts(i + 1)) for i, text in enumerate(texts)
    ]
    coalesced = [b"".join(deltas[i : i + 3]) for i in range(10, len(deltas), 3)]
    wire = [*deltas[:10], *coalesced, _COUNTED_CLOSING]
    pipeline, seen, parsed = _watched_pipeline(client, ApiProtocol.GEMINI, monkeypatch)
    out = b"".join(pipeline.feed(chunk) for chunk in wire) + pipeline.close()
    assert len(seen) <= 2
    assert not set(deltas[3:10]) & set(parsed)
    monkeypatch.undo()
    assert _uncreated(out) == _stream_outcome(client, ApiProtocol.GEMINI, wire, fast=False)
    answer = fold(_read_back(client, out))
    assert [p.text for p in answer.parts if isinstance(p, TextPart)] == ["".join(texts)]
    assert answer.usage is not None
    assert answer.usage.output_tokens == len(texts)


# What may be where Gemini's counts go: counts, other objects (a nested key of the same
# name, strings holding braces), other JSON, JSON that ends the object early and adds
# keys, broken JSON, and the bytes that may come between a text and the counts.
_COUNT_SPLICES = st.one_of(
    st.integers(0, 10**4).map(_counts),
    st.sampled_from(
        [
            b"{}",
            b'{"a": "}"}',
            b'{"usageMetadata": {"candidatesTokenCount": 1}}',
            b'{"x": {"y": [1, {"z": "}}"}]}}',
            b'{"candidatesTokenCount": 5}}',
            b'{"candidatesTokenCount": 5},"candidates": []',
            b'{"candidatesTokenCount": 5},"usageMetadata": {"candidatesTokenCount": 9}',
            b"null",
            b"[]",
            b"7",
            b'"text"',
            b"{",
            b'{"a": 1,}',
            b'{"a": 01}',
            b'{"a": 1}\r\n\r\ndata: {"b": 2}',
            b'"}],"role": "model"},"index": 0}],"usageMetadata": ',
        ]
    ),
    _SPLICES,
)


@pytest.mark.parametrize("client", [ApiProtocol.OPENAI, ApiProtocol.CLAUDE])
@settings(max_examples=150, deadline=None)
@given(
    deltas=st.lists(
        st.tuples(
            _SPLICES
            | st.text(min_size=1, max_size=5).map(lambda t: orjson.dumps(t)[1:-1])
            | st.just(b'"}],"role": "model"},"index": 0}],"usageMetadata": '),
            _COUNT_SPLICES,
            st.sampled_from(
                [b"", b',"finishReason": "STOP"', b',"usageMetadata": {"n": 1}']
            ),
            st.sampled_from(
                [b'"usageMetadata": ', b'"usage_metadata": ', b'"x": ', b'"usageMetadata":']
            ),
        ),
        max_size=12,
    ),
    closing=st.sampled_from(
        [_COUNTED_CLOSING, _counted(b"", _counts(99), candidate=b',"finishReason": "STOP"')]
    ),
    reads=st.lists(st.integers(0, 10**6), max_size=4),
    byte_cut=st.integers(0, 10**6) | st.none(),
)
# A template whose counts are not the ones the decoder keeps: under a key of their name
# inside the candidate (the top-level ones under another), once or beside the top-level
# ones; then counts that are no object, which the decoder ignores.
@example(
    deltas=[
        (b"a", _counts(50), b',"usageMetadata": ' + _counts(3), b'"usage_metadata": '),
        (b"b", _counts(50), b',"usageMetadata": ' + _counts(4), b'"usage_metadata": '),
    ],
    closing=_COUNTED_CLOSING,
    reads=[],
    byte_cut=None,
)
@example(
    deltas=[
        (b"a", _counts(5), b',"usageMetadata": ' + _counts(5), b'"usageMetadata": '),
        (b"b", _counts(5), b',"usageMetadata": ' + _counts(6), b'"usageMetadata": '),
    ],
    closing=_COUNTED_CLOSING,
    reads=[],
    byte_cut=None,
)
@example(
    deltas=[(b"a", b"7", b"", b'"usageMetadata": ')],
    closing=_COUNTED_CLOSING,
    reads=[],
    byte_cut=None,
)
def test_whatever_fills_geminis_counts_the_client_gets_the_general_paths_bytes(
    client: ApiProtocol,
    deltas: list[tuple[bytes, bytes, bytes, bytes]],
    closing: bytes,
    reads: list[int],
    byte_cut: int | None,
) -> None:
    """Whatever a Gemini chunk holds where its text and its counts go (objects of any
    kind, a key of the counts' name inside them or inside the candidate, JSON that ends
    the counts early and adds keys, broken JSON, an event's end), under whatever key
    (snake_case, another), with a finish reason before more text, and wherever the
    reads end, the client gets what the general path gives, the usage included, or the
    same error."""
    wire = [_counted(b"first", _counts(1)), _counted(b"second", _counts(2))]
    wire += [
        _counted(text, usage, candidate=candidate, key=key)
        for text, usage, candidate, key in deltas
    ]
    wire.append(closing)
    chunks = _reads(wire, reads, byte_cut)
    fast = _stream_outcome(client, ApiProtocol.GEMINI, chunks, fast=True)
    assert fast == _stream_outcome(client, ApiProtocol.GEMINI, chunks, fast=False)


def _snake_keys(value: object) -> object:
    """`value` with every key in snake_case, as some Gemini-compatible servers and
    the SDKs' dict dumps write answers (a call's `args` are the model's, kept)."""
    if isinstance(value, list):
        return [_snake_keys(v) for v in value]
    if not isinstance(value, dict):
        return value
    return {
        re.sub(r"(?<!^)([A-Z])", r"_\1", k).lower(): v if k == "args" else _snake_keys(v)
        for k, v in value.items()
    }


@settings(max_examples=40, deadline=None)
@given(response=responses(mixed=True), pieces=st.integers(1, 4))
def test_gemini_answers_in_snake_case_read_as_in_camel_case(
    response: ChatResponse, pieces: int
) -> None:
    """Whole or streamed, a snake_case Gemini answer means what its camelCase form
    means: usage (thoughts and cached tokens too), finish, ids, parts."""
    usage = Usage(input_tokens=90, output_tokens=40, cache_read=10, reasoning=12)
    response = dataclasses.replace(response, usage=usage)
    codec = CODECS[ApiProtocol.GEMINI]
    read_plain = codec.plain_response_in
    assert read_plain is not None
    camel = codec.response_from_canonical(response)
    snake = _snake_keys(camel)
    assert isinstance(snake, dict)
    assert snake != camel
    whole = codec.response_to_canonical(camel)
    assert whole.usage == usage
    assert codec.response_to_canonical(snake) == whole
    assert read_plain(snake) == read_plain(camel)

    def stream(snake_case: bool) -> list[StreamEvent]:
        request = ChatRequest(model="m", messages=(), include_usage=True)
        encoder = codec.stream_encoder(request)
        decoder = codec.stream_decoder()
        out: list[StreamEvent] = []
        for event in events_of(response, pieces):
            for sse in encoder.feed(event):
                chunk = orjson.loads(sse.data)
                data = orjson.dumps(_snake_keys(chunk) if snake_case else chunk)
                out += decoder.feed(sse._replace(data=data.decode()))
        return out + list(decoder.close())

    camel_events = stream(False)
    assert isinstance(camel_events[-1], MessageStop)
    assert camel_events[-1].usage == usage
    assert stream(True) == camel_events
