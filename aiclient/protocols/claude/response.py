"""Anthropic Message bodies <-> canonical, and the stop/usage tables.

Anthropic's `input_tokens` excludes cache reads and writes; canonical input includes
them. Server-tool blocks and citations have no equivalent and are dropped. Written for a
Claude client: a Gemini signature on a tool call rides in the thinking block before the
tool_use (an empty one is added when the answer had none), see protocols/signatures.py.
"""

from __future__ import annotations

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
from ..base import JSONObject, as_int, dumps, mapped_stop, new_id, parse_arguments
from ..signatures import claude_signature_out
from .request import sanitise_id, thinking_part

__all__ = [
    "claude_stop_reason",
    "plain_response_in",
    "plain_response_out",
    "response_from_canonical",
    "response_to_canonical",
    "stop_reason",
    "usage_from_canonical",
    "usage_to_canonical",
]

_STOP = {
    "end_turn": StopReason.END_TURN,
    "stop_sequence": StopReason.STOP_SEQUENCE,
    "max_tokens": StopReason.MAX_TOKENS,
    "model_context_window_exceeded": StopReason.MAX_TOKENS,
    "tool_use": StopReason.TOOL_USE,
    "refusal": StopReason.CONTENT_FILTER,
    "pause_turn": StopReason.END_TURN,
}
_CLAUDE_STOP = {
    StopReason.END_TURN: "end_turn",
    StopReason.STOP_SEQUENCE: "stop_sequence",
    StopReason.MAX_TOKENS: "max_tokens",
    StopReason.TOOL_USE: "tool_use",
    StopReason.CONTENT_FILTER: "refusal",
}


def stop_reason(value: Any, saw_tool: bool) -> StopReason:
    return mapped_stop(_STOP, value, saw_tool)


def claude_stop_reason(reason: StopReason) -> str:
    return _CLAUDE_STOP[reason]


def usage_to_canonical(usage: Any, base: Usage | None = None) -> Usage | None:
    """Anthropic usage (possibly a message_delta's partial one, over `base`)."""
    if not isinstance(usage, dict):
        return base
    if base is None:
        return _whole_usage(usage)
    read = usage.get("cache_read_input_tokens")
    write = usage.get("cache_creation_input_tokens")
    cache_read = as_int(read) if read is not None else base.cache_read
    cache_write = as_int(write) if write is not None else base.cache_write
    fresh = usage.get("input_tokens")
    if fresh is not None:
        input_tokens = as_int(fresh) + cache_read + cache_write
    else:
        input_tokens = base.input_tokens
    output = usage.get("output_tokens")
    return Usage(
        input_tokens=input_tokens,
        output_tokens=as_int(output) if output is not None else base.output_tokens,
        cache_read=cache_read,
        cache_write=cache_write,
        reasoning=base.reasoning,
    )


def _whole_usage(usage: JSONObject) -> Usage:
    """`usage_to_canonical` of a whole answer's usage (no base), in one step: the
    common case, on every converted answer."""
    fresh, output = usage.get("input_tokens"), usage.get("output_tokens")
    read = usage.get("cache_read_input_tokens")
    write = usage.get("cache_creation_input_tokens")
    read = read if type(read) is int else as_int(read)
    write = write if type(write) is int else as_int(write)
    if fresh is not None:
        fresh = (fresh if type(fresh) is int else as_int(fresh)) + read + write
    return Usage(  # (input, output, cache read, cache write): positional is cheaper
        fresh or 0, output if type(output) is int else as_int(output), read, write
    )


def usage_from_canonical(usage: Usage | None) -> JSONObject:
    usage = usage or Usage()
    fresh = max(0, usage.input_tokens - usage.cache_read - usage.cache_write)
    return {
        "input_tokens": fresh,
        "output_tokens": usage.output_tokens,
        "cache_creation_input_tokens": usage.cache_write,
        "cache_read_input_tokens": usage.cache_read,
    }


def _part(block: Any) -> Part | None:
    if not isinstance(block, dict):
        return None
    kind = block.get("type")
    if kind == "text" and isinstance(block.get("text"), str):
        return TextPart(text=block["text"])
    if kind in ("thinking", "redacted_thinking"):
        return thinking_part(block)
    if kind == "tool_use":
        return ToolCallPart(
            id=str(block.get("id") or new_id("toolu_")),
            name=str(block.get("name") or ""),
            arguments=dumps(block.get("input") or {}),
        )
    return None


def response_to_canonical(body: JSONObject) -> ChatResponse:
    content = body.get("content")
    if not isinstance(content, list):
        raise InvalidRequest("an Anthropic message needs content")
    parts = [p for p in (_part(b) for b in content) if p is not None]
    saw_tool = any(isinstance(p, ToolCallPart) for p in parts)
    sequence = body.get("stop_sequence")
    return ChatResponse(
        id=str(body.get("id") or new_id("msg_")),
        model=str(body.get("model") or ""),
        parts=tuple(parts),
        stop_reason=stop_reason(body.get("stop_reason"), saw_tool),
        stop_sequence=sequence if isinstance(sequence, str) else None,
        usage=usage_to_canonical(body.get("usage")),
    )


def plain_response_in(body: JSONObject) -> PlainAnswer | None:
    """The answer as a PlainAnswer when it is one text block, else None (then
    `response_to_canonical` reads it)."""
    content = body.get("content")
    if type(content) is not list or len(content) != 1:
        return None
    block = content[0]
    if type(block) is not dict or block.get("type") != "text":
        return None
    text = block.get("text")
    if type(text) is not str:
        return None
    sequence, stop = body.get("stop_sequence"), body.get("stop_reason")
    usage = body.get("usage")
    return PlainAnswer(
        str(body.get("id") or new_id("msg_")),
        str(body.get("model") or ""),
        text,
        stop_reason(stop, False),
        sequence if isinstance(sequence, str) else None,
        _whole_usage(usage) if isinstance(usage, dict) else None,
    )


def message_id(response_id: str) -> str:
    return (
        response_id if response_id.startswith("msg_") else "msg_" + sanitise_id(response_id)
    )


def blocks_from_parts(parts: tuple[Part, ...]) -> list[JSONObject]:
    if len(parts) == 1 and type(parts[0]) is TextPart:  # the usual answer: one text
        text = parts[0].text
        return [{"type": "text", "text": text}] if text else []
    blocks: list[JSONObject] = []
    for part in parts:
        match part:
            case TextPart(text=text) if text:
                blocks.append({"type": "text", "text": text})
            case ReasoningPart(redacted=str() as data):
                blocks.append({"type": "redacted_thinking", "data": data})
            case ReasoningPart(text=text, signature=signature):
                blocks.append(
                    {
                        "type": "thinking",
                        "thinking": text,
                        "signature": claude_signature_out(signature),
                    }
                )
            case ToolCallPart(id=call_id, name=name, arguments=arguments, signature=sig):
                if sig is not None and sig.vendor == "google":
                    last = blocks[-1] if blocks else None
                    if (
                        last is not None
                        and last["type"] == "thinking"
                        and not last["signature"]
                    ):
                        last["signature"] = claude_signature_out(sig)
                    else:
                        blocks.append(
                            {
                                "type": "thinking",
                                "thinking": "",
                                "signature": claude_signature_out(sig),
                            }
                        )
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": sanitise_id(call_id),
                        "name": name,
                        "input": parse_arguments(arguments),
                    }
                )
            case MediaPart() | TextPart():
                pass  # an empty text, or an image answer (no Anthropic output block)
    return blocks


def response_from_canonical(response: ChatResponse) -> JSONObject:
    return _message(response, blocks_from_parts(response.parts))


def plain_response_out(answer: PlainAnswer) -> JSONObject:
    """What `response_from_canonical(answer.as_response())` writes, without building
    it."""
    text = answer.text
    return _message(answer, [{"type": "text", "text": text}] if text else [])


def _message(answer: ChatResponse | PlainAnswer, content: list[JSONObject]) -> JSONObject:
    return {
        "id": message_id(answer.id),
        "type": "message",
        "role": "assistant",
        "model": answer.model,
        "content": content,
        "stop_reason": claude_stop_reason(answer.stop_reason),
        "stop_sequence": answer.stop_sequence,
        "usage": usage_from_canonical(answer.usage),
    }
