"""Gemini GenerateContentResponse bodies <-> canonical, and the finish/usage tables.

Only `candidates[0]` is read (candidateCount > 1 is refused before). Gemini reports STOP
for tool calls, so a function call makes the stop a tool-use stop; a prompt blocked
without candidates is a content-filter stop with no content. executableCode and
codeExecutionResult parts have no equivalent and are dropped. Written for a Gemini
client: calls carry their id (from another vendor it must come back with the result),
thought parts carry signatures as protocols/signatures.py describes.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from ...canonical import (
    ChatResponse,
    MediaPart,
    Part,
    PlainAnswer,
    ReasoningPart,
    StopReason,
    TextPart,
    ToolCallPart,
    Usage,
)
from ...errors import InvalidRequest
from ..base import JSONObject, dumps, new_id, parse_arguments
from ..signatures import gemini_signature_in, gemini_signature_out
from .request import get, snake_case

__all__ = [
    "finish_reason",
    "part_from_canonical",
    "parts_to_canonical",
    "plain_response_in",
    "plain_response_out",
    "response_from_canonical",
    "response_to_canonical",
    "stop_reason",
    "usage_from_canonical",
    "usage_to_canonical",
]

_FILTERS = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "LANGUAGE",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
    }
)
_FINISH = {
    StopReason.END_TURN: "STOP",
    StopReason.STOP_SEQUENCE: "STOP",
    StopReason.TOOL_USE: "STOP",
    StopReason.MAX_TOKENS: "MAX_TOKENS",
    StopReason.CONTENT_FILTER: "SAFETY",
}


def stop_reason(finish: Any, saw_tool: bool) -> StopReason:
    if finish == "MAX_TOKENS":
        return StopReason.MAX_TOKENS
    if finish in _FILTERS:
        return StopReason.CONTENT_FILTER
    return StopReason.TOOL_USE if saw_tool else StopReason.END_TURN


def finish_reason(reason: StopReason) -> str:
    return _FINISH[reason]


_USAGE_KEYS = (
    "promptTokenCount",
    "toolUsePromptTokenCount",
    "candidatesTokenCount",
    "thoughtsTokenCount",
    "cachedContentTokenCount",
)
_SNAKE_USAGE = frozenset(map(snake_case, _USAGE_KEYS))


def usage_to_canonical(meta: Any) -> Usage | None:
    if not isinstance(meta, dict):
        return None
    # The API writes camelCase; only a usage with a snake_case count needs `get`.
    read = meta.get if meta.keys().isdisjoint(_SNAKE_USAGE) else partial(get, meta)
    prompt, tool, output, thoughts, cached = map(read, _USAGE_KEYS)
    thoughts = thoughts if type(thoughts) is int else None
    return Usage(
        (prompt if type(prompt) is int else 0) + (tool if type(tool) is int else 0),
        (output if type(output) is int else 0) + (thoughts or 0),
        cached if type(cached) is int else 0,
        0,
        thoughts,
    )


def usage_from_canonical(usage: Usage | None) -> JSONObject:
    usage = usage or Usage()
    reasoning = usage.reasoning or 0
    out: JSONObject = {
        "promptTokenCount": usage.input_tokens,
        "candidatesTokenCount": max(0, usage.output_tokens - reasoning),
        "totalTokenCount": usage.input_tokens + usage.output_tokens,
    }
    if usage.cache_read:
        out["cachedContentTokenCount"] = usage.cache_read
    if reasoning:
        out["thoughtsTokenCount"] = reasoning
    return out


def parts_to_canonical(parts: Any) -> list[Part]:
    out: list[Part] = []
    for part in parts or ():
        if not isinstance(part, dict):
            continue
        text = part.get("text")
        if len(part) == 1 and isinstance(text, str):  # a bare text, the usual part
            if text:
                out.append(TextPart(text=text))
            continue
        signature, redacted = gemini_signature_in(get(part, "thoughtSignature"))
        call = get(part, "functionCall")
        inline = get(part, "inlineData")
        if isinstance(text, str):
            if part.get("thought") is True or redacted is not None:
                out.append(ReasoningPart(text=text, signature=signature, redacted=redacted))
            elif text or signature is not None:
                out.append(TextPart(text=text, signature=signature))
        elif isinstance(call, dict):
            out.append(
                ToolCallPart(
                    id=str(call.get("id") or new_id("call_")),
                    name=str(call.get("name") or ""),
                    arguments=dumps(call.get("args") or {}),
                    signature=signature,
                )
            )
        elif isinstance(inline, dict) and isinstance(inline.get("data"), str):
            mime = str(get(inline, "mimeType") or "application/octet-stream")
            out.append(MediaPart(media_type=mime, data=inline["data"]))
    return out


def response_to_canonical(body: JSONObject) -> ChatResponse:
    candidates = body.get("candidates")
    if candidates is not None and not isinstance(candidates, list):
        raise InvalidRequest("a Gemini response's candidates must be an array")
    usage = usage_to_canonical(get(body, "usageMetadata"))
    response_id = str(get(body, "responseId") or new_id(""))
    model = str(get(body, "modelVersion") or "")
    if not candidates:
        blocked = get(get(body, "promptFeedback"), "blockReason") is not None
        reason = StopReason.CONTENT_FILTER if blocked else StopReason.END_TURN
        return ChatResponse(
            id=response_id, model=model, parts=(), stop_reason=reason, usage=usage
        )
    candidate = candidates[0] if isinstance(candidates[0], dict) else {}
    parts = parts_to_canonical(
        get(candidate, "content") and candidate["content"].get("parts")
    )
    saw_tool = any(isinstance(p, ToolCallPart) for p in parts)
    return ChatResponse(
        id=response_id,
        model=model,
        parts=tuple(parts),
        stop_reason=stop_reason(get(candidate, "finishReason"), saw_tool),
        usage=usage,
    )


def plain_response_in(body: JSONObject) -> PlainAnswer | None:
    """The answer as a PlainAnswer when its first candidate is one bare, non-empty
    text part, else None (then `response_to_canonical` reads it)."""
    candidates = body.get("candidates")
    if type(candidates) is not list or not candidates:
        return None
    candidate = candidates[0]
    content = candidate.get("content") if type(candidate) is dict else None
    if type(content) is not dict:
        return None
    parts = content.get("parts")
    if type(parts) is not list or len(parts) != 1:
        return None
    part = parts[0]
    text = part.get("text") if type(part) is dict and len(part) == 1 else None
    if type(text) is not str or not text:
        return None
    # `x.get(key) or get(x, key)` is `get(x, key)`, a call fewer for camelCase.
    return PlainAnswer(
        str(body.get("responseId") or get(body, "responseId") or new_id("")),
        str(body.get("modelVersion") or get(body, "modelVersion") or ""),
        text,
        stop_reason(candidate.get("finishReason") or get(candidate, "finishReason"), False),
        None,
        usage_to_canonical(body.get("usageMetadata") or get(body, "usageMetadata")),
    )


def plain_response_out(answer: PlainAnswer) -> JSONObject:
    """What `response_from_canonical(answer.as_response())` writes, without building
    it."""
    text = answer.text
    return _response(answer, [{"text": text}] if text else [])


def part_from_canonical(part: Part) -> JSONObject | None:
    match part:
        case TextPart(text=text, signature=signature):
            out: JSONObject = {"text": text}
            if signature is not None and signature.vendor == "google":
                out["thoughtSignature"] = signature.value
            return out if text or "thoughtSignature" in out else None
        case ReasoningPart(text=text, signature=signature, redacted=redacted):
            out = {"text": text, "thought": True}
            encoded = gemini_signature_out(signature, redacted)
            if encoded:
                out["thoughtSignature"] = encoded
            return out
        case ToolCallPart(id=call_id, name=name, arguments=arguments, signature=signature):
            out = {
                "functionCall": {
                    "id": call_id,
                    "name": name,
                    "args": parse_arguments(arguments),
                }
            }
            if signature is not None and signature.vendor == "google":
                out["thoughtSignature"] = signature.value
            return out
        case MediaPart(media_type=media_type, data=str() as data):
            return {"inlineData": {"mimeType": media_type, "data": data}}
    return None


def response_from_canonical(response: ChatResponse) -> JSONObject:
    parts = [p for p in (part_from_canonical(x) for x in response.parts) if p is not None]
    return _response(response, parts)


def _response(response: ChatResponse | PlainAnswer, parts: list[JSONObject]) -> JSONObject:
    return {
        "candidates": [
            {
                "content": {"role": "model", "parts": parts},
                "finishReason": finish_reason(response.stop_reason),
                "index": 0,
            }
        ],
        "usageMetadata": usage_from_canonical(response.usage),
        "modelVersion": response.model,
        "responseId": response.id,
    }
