"""Malformed input never crashes a conversion.

A client's request, however malformed, is read or refused with a 4xx error: any node of
a full request (tools, images, tool calls and results, system, sampling, response
formats) replaced by any JSON value, then read by the client's codec and written by
every other one. The server answers anything else with a 500.

An upstream's stream event, however malformed, is converted or breaks the stream as an
upstream error (failover, or the client's in-band error), never with a crash.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiclient.errors import InvalidRequest, UnsupportedConversion, UpstreamError
from aiclient.pipeline import Framer, StreamPipeline
from aiclient.protocols import ApiProtocol
from aiclient.protocols.codecs import CODECS
from aiclient.relay import Conversion
from aiclient.sse import SSEEvent, encode_sse

PNG = (  # a 1x1 image
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQ"
    "AAAABJRU5ErkJggg=="
)
WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string", "enum": ["Paris", "Rome"]}},
    "required": ["city"],
}

FULL: dict[ApiProtocol, dict[str, Any]] = {
    ApiProtocol.OPENAI: {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather here?"},
                    {
                        "type": "image_url",
                        "image_url": {"url": f"data:image/png;base64,{PNG}"},
                    },
                    {
                        "type": "input_audio",
                        "input_audio": {"data": "AAAA", "format": "wav"},
                    },
                    {
                        "type": "file",
                        "file": {"file_data": f"data:application/pdf;base64,{PNG}"},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        ],
        "tools": [
            {
                "type": "function",
                "function": {"name": "weather", "description": "d", "parameters": WEATHER},
            }
        ],
        "tool_choice": {"type": "function", "function": {"name": "weather"}},
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": WEATHER},
        },
        "stop": ["END"],
        "max_tokens": 100,
        "temperature": 0.5,
        "stream_options": {"include_usage": True},
        "reasoning_effort": "low",
    },
    ApiProtocol.CLAUDE: {
        "model": "claude-sonnet-4",
        "max_tokens": 100,
        "system": [{"type": "text", "text": "Be brief."}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather here?"},
                    {
                        "type": "image",
                        "source": {
                            "type": "base64",
                            "media_type": "image/png",
                            "data": PNG,
                        },
                    },
                    {
                        "type": "document",
                        "source": {"type": "url", "url": "https://example.com/a.pdf"},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hm", "signature": "c2ln"},
                    {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": [{"type": "text", "text": "sunny"}],
                    }
                ],
            },
        ],
        "tools": [{"name": "weather", "description": "d", "input_schema": WEATHER}],
        "tool_choice": {"type": "tool", "name": "weather"},
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "stop_sequences": ["END"],
        "metadata": {"user_id": "u"},
    },
    ApiProtocol.GEMINI: {
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "Weather here?"},
                    {"inlineData": {"mimeType": "image/png", "data": PNG}},
                    {"fileData": {"mimeType": "application/pdf", "fileUri": "gs://b/a"}},
                ],
            },
            {
                "role": "model",
                "parts": [
                    {"text": "hm", "thought": True, "thoughtSignature": "c2ln"},
                    {"functionCall": {"name": "weather", "args": {"city": "Paris"}}},
                ],
            },
            {
                "role": "user",
                "parts": [
                    {"functionResponse": {"name": "weather", "response": {"out": "sunny"}}}
                ],
            },
        ],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "tools": [
            {"functionDeclarations": [{"name": "weather", "parameters": WEATHER}]},
            {"googleSearch": {}},
        ],
        "toolConfig": {
            "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["weather"]}
        },
        "generationConfig": {
            "maxOutputTokens": 100,
            "stopSequences": ["END"],
            "responseMimeType": "application/json",
            "responseSchema": WEATHER,
            "thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": True},
        },
    },
}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.floats(-2, 2, allow_nan=False)
    | st.sampled_from(["", "x", "user", "text", "image/png", "data:,", "weather"]),
    lambda inner: (
        st.lists(inner, max_size=2)
        | st.dictionaries(st.sampled_from(["type", "text", "name", "a"]), inner, max_size=2)
    ),
    max_leaves=4,
)


def _paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every node below the root, as the keys and indexes leading to it."""
    if path:
        yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*path, index))


def _mutated(body: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(body)
    node: Any = out
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return out


PROTOCOLS = list(ApiProtocol)


@pytest.mark.parametrize("client", PROTOCOLS, ids=[p.value for p in PROTOCOLS])
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_a_malformed_request_is_refused_not_crashed_on(
    client: ApiProtocol, data: st.DataObject
) -> None:
    body = FULL[client]
    for _ in range(data.draw(st.integers(1, 2))):
        path = data.draw(st.sampled_from(list(_paths(body))))
        body = _mutated(body, path, data.draw(json_values))
    model = "gemini-2.5-flash" if client is ApiProtocol.GEMINI else None
    reader = CODECS[client].plain_request_in
    assert reader is not None
    reader(body, model=model)  # a plain reader declines; it never raises
    try:
        canonical = CODECS[client].request_to_canonical(body, model=model)
    except (InvalidRequest, UnsupportedConversion):
        return
    for upstream in PROTOCOLS:
        if upstream is not client:
            try:
                CODECS[upstream].request_from_canonical(canonical)
            except UnsupportedConversion:
                pass


@pytest.mark.parametrize("client", PROTOCOLS, ids=[p.value for p in PROTOCOLS])
def test_the_full_requests_are_read_whole(client: ApiProtocol) -> None:
    """The starting points are valid, so the mutations reach every part of the readers
    (and the writers: each full request converts, a medium a target cannot take aside)."""
    model = "gemini-2.5-flash" if client is ApiProtocol.GEMINI else None
    canonical = CODECS[client].request_to_canonical(FULL[client], model=model)
    assert canonical.tools and len(canonical.messages) >= 3
    written, refused = [], []
    for upstream in PROTOCOLS:
        if upstream is not client:
            try:
                written.append(CODECS[upstream].request_from_canonical(canonical))
            except UnsupportedConversion as exc:
                refused.append(str(exc))
    assert written
    assert all("cannot take" in r for r in refused)  # audio for Anthropic, a PDF URL


# -- upstream streams --------------------------------------------------------------------

_TEXT_AND_CALL: dict[ApiProtocol, list[tuple[str | None, Any]]] = {
    ApiProtocol.OPENAI: [
        (None, {"id": "c1", "choices": [{"index": 0, "delta": {"role": "assistant"}}]}),
        (None, {"id": "c1", "choices": [{"index": 0, "delta": {"content": "Hi"}}]}),
        (
            None,
            {
                "id": "c1",
                "choices": [
                    {
                        "index": 0,
                        "delta": {
                            "tool_calls": [
                                {
                                    "index": 0,
                                    "id": "call_1",
                                    "type": "function",
                                    "function": {"name": "f", "arguments": '{"a":'},
                                }
                            ]
                        },
                    }
                ],
            },
        ),
        (
            None,
            {
                "id": "c1",
                "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2},
            },
        ),
        (None, "[DONE]"),
    ],
    ApiProtocol.CLAUDE: [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {"id": "msg_1", "model": "m", "usage": {"input_tokens": 3}},
            },
        ),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "Hi"},
            },
        ),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {"type": "tool_use", "id": "toolu_1", "name": "f"},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": '{"a":1}'},
            },
        ),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use"},
                "usage": {"output_tokens": 2},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ],
    ApiProtocol.GEMINI: [
        (None, {"candidates": [{"content": {"parts": [{"text": "Hi"}]}, "index": 0}]}),
        (None, {"candidates": [{"content": {"parts": [{"text": " there"}]}, "index": 0}]}),
        (
            None,
            {
                "candidates": [
                    {
                        "content": {"parts": [{"functionCall": {"name": "f", "args": {}}}]},
                        "finishReason": "STOP",
                        "index": 0,
                    }
                ],
                "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2},
            },
        ),
    ],
}
CONVERSIONS = [(u, c) for u in PROTOCOLS for c in PROTOCOLS if u is not c]


def _stream_chunks(events: list[tuple[str | None, Any]]) -> list[bytes]:
    return [
        encode_sse(SSEEvent(name, data if isinstance(data, str) else json.dumps(data)))
        for name, data in events
    ]


def _converted(
    upstream: ApiProtocol, client: ApiProtocol, chunks: list[bytes], fast: bool = True
) -> bytes:
    """The client's bytes for an upstream stream sent one event per chunk (the text
    fast path's case)."""
    pipeline = StreamPipeline(
        client,
        Framer(),
        CODECS[upstream].stream_decoder(),
        CODECS[client].stream_encoder(Conversion(upstream, "m", True)),
        fast=fast,
    )
    return b"".join(pipeline.feed(chunk) for chunk in chunks) + pipeline.close()


# What differs between two conversions of one stream: generated ids and the time.
_VARYING = re.compile(rb'"(id|responseId|created)":("[^"]*"|\d+)')


def _outcome(
    upstream: ApiProtocol, client: ApiProtocol, chunks: list[bytes], fast: bool
) -> object:
    try:
        return _VARYING.sub(rb"\1", _converted(upstream, client, chunks, fast))
    except UpstreamError as exc:
        return type(exc), str(exc)


@pytest.mark.parametrize(
    ("upstream", "client"),
    CONVERSIONS,
    ids=[f"{u.value}-to-{c.value}" for u, c in CONVERSIONS],
)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_a_malformed_upstream_stream_breaks_cleanly(
    upstream: ApiProtocol, client: ApiProtocol, data: st.DataObject
) -> None:
    """An upstream event of any shape is converted or ends the stream as broken (an
    UpstreamError: failover before the client's first byte, an in-band error after),
    never with a crash that would cut the client's stream without an error; and the
    text fast path reads it exactly as the general path does."""
    events = list(_TEXT_AND_CALL[upstream])
    index = data.draw(st.integers(0, len(events) - 1))
    name, event = events[index]
    paths = list(_paths(event)) if isinstance(event, dict) else []
    if paths:
        event = _mutated(event, data.draw(st.sampled_from(paths)), data.draw(json_values))
    events[index] = (name, event)
    chunks = _stream_chunks(events)
    fast = _outcome(upstream, client, chunks, fast=True)
    assert fast == _outcome(upstream, client, chunks, fast=False)


@pytest.mark.parametrize(
    ("upstream", "client"),
    CONVERSIONS,
    ids=[f"{u.value}-to-{c.value}" for u, c in CONVERSIONS],
)
def test_the_streams_convert_whole(upstream: ApiProtocol, client: ApiProtocol) -> None:
    """The starting points convert: the mutations start from a stream with a text and
    a tool call that every decoder and encoder walks."""
    out = _converted(upstream, client, _stream_chunks(_TEXT_AND_CALL[upstream]))
    assert b"Hi" in out and b'"f"' in out
