"""Codec properties: what every protocol can express survives any trip through them."""

from __future__ import annotations

import dataclasses
import itertools
import re

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
from aiclient.errors import InvalidRequest, UnsupportedConversion
from aiclient.pipeline import Framer, StreamPipeline
from aiclient.protocols import ApiProtocol
from aiclient.protocols.claude.stream import ClaudeStreamEncoder
from aiclient.protocols.codecs import CODECS
from aiclient.protocols.openai.stream import OpenAIStreamEncoder
from aiclient.sse import SSEDecoder, encode_sse
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
    decoder = CODECS[upstream].stream_decoder()
    canonical: list[StreamEvent] = []
    sse = SSEDecoder()
    for event in sse.feed(upstream_bytes) + sse.close():
        canonical += decoder.feed(event)
    canonical += decoder.close()
    client_encoder = CODECS[client].stream_encoder(request)
    client_bytes = b"".join(
        encode_sse(e) for ev in canonical for e in client_encoder.feed(ev)
    )
    client_decoder = CODECS[client].stream_decoder()
    final: list[StreamEvent] = []
    sse = SSEDecoder()
    for event in sse.feed(client_bytes) + sse.close():
        final += client_decoder.feed(event)
    final += client_decoder.close()
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
    outputs = []
    for fast in (True, False):
        pipeline = StreamPipeline(
            client,
            Framer(),
            CODECS[upstream].stream_decoder(),
            CODECS[client].stream_encoder(request),
            fast=fast,
        )
        if fast:
            assert pipeline._text_in is not None
            assert pipeline._text_out is not None
        out = b"".join(pipeline.feed(chunk) for chunk in chunks)
        outputs.append(re.sub(rb'"created":\d+', b"", out + pipeline.close()))
    assert outputs[0] == outputs[1]


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
        outputs.append(re.sub(rb'"created":\d+', b'"created":0', out))
    assert outputs[0] == outputs[1]
    folded: list[StreamEvent] = []
    sse = SSEDecoder()
    decoder = CODECS[client].stream_decoder()
    for event in sse.feed(outputs[0]) + sse.close():
        folded += decoder.feed(event)
    folded += decoder.close()
    answer = fold(folded)
    assert [p.text for p in answer.parts if isinstance(p, TextPart)] == ["Hello, world"]
    assert answer.stop_reason is StopReason.MAX_TOKENS
    assert answer.usage is not None
    assert answer.usage.output_tokens == 3


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
