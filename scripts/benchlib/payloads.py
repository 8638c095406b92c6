"""What goes over the wire: client request bodies and the fake upstream's answers.

The upstream's answers are built once, at start-up, as the exact bytes each response
writes, so serving a request costs no JSON encoding. A stream's events are returned
as separate SSE frames: the upstream writes each as its own chunk.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from .agent import agent_request

__all__ = [
    "MODEL",
    "PAYLOADS",
    "SLOW_MODEL",
    "WireProtocol",
    "anthropic_message",
    "anthropic_stream",
    "gemini_path",
    "gemini_response",
    "gemini_stream",
    "openai_completion",
    "openai_stream",
    "request_body",
    "response_marker",
]

WireProtocol = Literal["openai", "anthropic", "gemini"]

# What a client asks: `small`, one short question (the proxy's fixed cost per request);
# `agent`, a coding agent's turn with its tools and whole history (agent.py).
PAYLOADS = ("small", "agent")

MODEL = "bench"
# Streams for this model come slowly (see upstream.py): the memory scenario holds
# many of them open at once.
SLOW_MODEL = "bench-slow"

_CREATED = 1_700_000_000
_TEXT = "Hello from the benchmark upstream."
_USER = "Say hello to the benchmark."


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def request_body(
    protocol: WireProtocol, *, stream: bool, model: str = MODEL, payload: str = "small"
) -> bytes:
    """A chat request a client of `protocol` would send (a Gemini client names the
    model and whether it streams in the URL: see gemini_path)."""
    if payload == "agent":
        return agent_request(protocol, stream=stream, model=model)
    if protocol == "gemini":
        return _dumps(
            {
                "contents": [{"role": "user", "parts": [{"text": _USER}]}],
                "generationConfig": {"maxOutputTokens": 64},
            }
        )
    messages = [{"role": "user", "content": _USER}]
    body: dict[str, Any] = {"model": model, "max_tokens": 64, "messages": messages}
    if stream:
        body["stream"] = True
    return _dumps(body)


def response_marker(protocol: WireProtocol, *, stream: bool) -> bytes:
    """Bytes every well-formed answer of `protocol` contains (a stream: near its end)."""
    if protocol == "openai":
        return b"data: [DONE]" if stream else b'"choices"'
    if protocol == "gemini":
        return b'"finishReason"' if stream else b'"candidates"'
    return b"message_stop" if stream else b'"content"'


def gemini_path(model: str, *, stream: bool) -> str:
    """Where a Gemini client (google-genai) posts a request for `model`."""
    if stream:
        return f"/v1beta/models/{model}:streamGenerateContent?alt=sse"
    return f"/v1beta/models/{model}:generateContent"


def openai_completion() -> bytes:
    return _dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": _CREATED,
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": _TEXT},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 12, "completion_tokens": 8, "total_tokens": 20},
        }
    )


def _openai_chunk(delta: dict[str, str], finish: str | None) -> bytes:
    data = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": _CREATED,
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + _dumps(data) + b"\n\n"


def openai_stream(chunks: int) -> list[bytes]:
    """`chunks` content chunks, a finish chunk and `data: [DONE]`, one SSE frame each."""
    frames = [
        _openai_chunk(
            {"role": "assistant", "content": "tok0 "}
            if i == 0
            else {"content": f"tok{i} "},
            None,
        )
        for i in range(chunks)
    ]
    frames.append(_openai_chunk({}, "stop"))
    frames.append(b"data: [DONE]\n\n")
    return frames


def anthropic_message() -> bytes:
    return _dumps(
        {
            "id": "msg_bench",
            "type": "message",
            "role": "assistant",
            "model": MODEL,
            "content": [{"type": "text", "text": _TEXT}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 12, "output_tokens": 8},
        }
    )


def _event(name: str, data: dict[str, Any]) -> bytes:
    return (
        b"event: " + name.encode() + b"\ndata: " + _dumps({"type": name, **data}) + b"\n\n"
    )


def anthropic_stream(chunks: int) -> list[bytes]:
    """message_start, content_block_start, `chunks` deltas, then three closing events."""
    message: dict[str, Any] = {
        "id": "msg_bench",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 1},
    }
    frames = [
        _event("message_start", {"message": message}),
        _event(
            "content_block_start",
            {"index": 0, "content_block": {"type": "text", "text": ""}},
        ),
    ]
    frames.extend(
        _event(
            "content_block_delta",
            {"index": 0, "delta": {"type": "text_delta", "text": f"tok{i} "}},
        )
        for i in range(chunks)
    )
    frames.append(_event("content_block_stop", {"index": 0}))
    frames.append(
        _event(
            "message_delta",
            {
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": chunks},
            },
        )
    )
    frames.append(_event("message_stop", {}))
    return frames


def _gemini_chunk(text: str, finish: bool, output_tokens: int) -> dict[str, Any]:
    candidate: dict[str, Any] = {
        "content": {"role": "model", "parts": [{"text": text}]},
        "index": 0,
    }
    if finish:
        candidate["finishReason"] = "STOP"
    return {
        "candidates": [candidate],
        "usageMetadata": {
            "promptTokenCount": 12,
            "candidatesTokenCount": output_tokens,
            "totalTokenCount": 12 + output_tokens,
        },
        "modelVersion": MODEL,
        "responseId": "bench-response",
    }


def gemini_response() -> bytes:
    return _dumps(_gemini_chunk(_TEXT, True, 8))


def gemini_stream(chunks: int) -> list[bytes]:
    """`chunks` text events, the last one with the finishReason (as Gemini ends a
    stream: no closing event of its own), framed as Google frames SSE."""
    return [
        b"data: " + _dumps(_gemini_chunk(f"tok{i} ", i == chunks - 1, i + 1)) + b"\r\n\r\n"
        for i in range(chunks)
    ]
