"""OpenAI chat.completion bodies <-> canonical, and the finish/usage tables.

Only `choices[0]` is read (requests with n > 1 are refused before they get here). The
non-standard `reasoning_content` (DeepSeek, vLLM) is read as reasoning and written when
the answer has reasoning text; signatures have no OpenAI field and are dropped.
"""

from __future__ import annotations

import time
from typing import Any

from ...canonical import (
    ChatResponse,
    Part,
    PlainAnswer,
    ReasoningPart,
    StopReason,
    TextPart,
    ToolCallPart,
    Usage,
)
from ...errors import InvalidRequest
from ..base import JSONObject, as_int, mapped_stop, new_id

__all__ = [
    "assistant_message",
    "finish_reason",
    "plain_response_in",
    "plain_response_out",
    "response_from_canonical",
    "response_to_canonical",
    "stop_reason",
    "usage_from_canonical",
    "usage_to_canonical",
]

_STOP = {
    "stop": StopReason.END_TURN,
    "length": StopReason.MAX_TOKENS,
    "tool_calls": StopReason.TOOL_USE,
    "function_call": StopReason.TOOL_USE,
    "content_filter": StopReason.CONTENT_FILTER,
}
_FINISH = {
    StopReason.END_TURN: "stop",
    StopReason.STOP_SEQUENCE: "stop",
    StopReason.MAX_TOKENS: "length",
    StopReason.TOOL_USE: "tool_calls",
    StopReason.CONTENT_FILTER: "content_filter",
}


def stop_reason(finish: Any, saw_tool: bool) -> StopReason:
    return mapped_stop(_STOP, finish, saw_tool)


def finish_reason(reason: StopReason) -> str:
    return _FINISH[reason]


def usage_to_canonical(usage: Any) -> Usage | None:
    if not isinstance(usage, dict):
        return None
    prompt = usage.get("prompt_tokens_details") or {}
    completion = usage.get("completion_tokens_details") or {}
    reasoning = completion.get("reasoning_tokens") if isinstance(completion, dict) else None
    return Usage(
        input_tokens=as_int(usage.get("prompt_tokens")),
        output_tokens=as_int(usage.get("completion_tokens")),
        cache_read=as_int(prompt.get("cached_tokens")) if isinstance(prompt, dict) else 0,
        cache_write=(
            as_int(prompt.get("cache_write_tokens")) if isinstance(prompt, dict) else 0
        ),
        reasoning=reasoning if isinstance(reasoning, int) else None,
    )


def usage_from_canonical(usage: Usage | None) -> JSONObject:
    usage = usage or Usage()
    out: JSONObject = {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cache_read},
    }
    if usage.reasoning is not None:
        out["completion_tokens_details"] = {"reasoning_tokens": usage.reasoning}
    return out


def _message_parts(message: JSONObject) -> list[Part]:
    parts: list[Part] = []
    reasoning = message.get("reasoning_content", message.get("reasoning"))
    if isinstance(reasoning, str) and reasoning:
        parts.append(ReasoningPart(text=reasoning))
    content = message.get("content")
    if isinstance(content, str) and content:
        parts.append(TextPart(text=content))
    elif isinstance(content, list):
        parts += [
            TextPart(text=p["text"])
            for p in content
            if isinstance(p, dict) and isinstance(p.get("text"), str) and p["text"]
        ]
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal:
        parts.append(TextPart(text=refusal))
    for k, call in enumerate(message.get("tool_calls") or []):
        function = call.get("function") or {}
        arguments = function.get("arguments")
        parts.append(
            ToolCallPart(
                id=call.get("id") or f"call_{k}",
                name=str(function.get("name", "")),
                arguments=arguments if isinstance(arguments, str) else "{}",
            )
        )
    return parts


def response_to_canonical(body: JSONObject) -> ChatResponse:
    choices = body.get("choices")
    if not isinstance(choices, list):
        raise InvalidRequest("an OpenAI chat.completion needs choices")
    choice = choices[0] if choices else {}
    message = choice.get("message") or {}
    parts = _message_parts(message)
    saw_tool = any(isinstance(p, ToolCallPart) for p in parts)
    return ChatResponse(
        id=str(body.get("id") or new_id("chatcmpl-")),
        model=str(body.get("model") or ""),
        parts=tuple(parts),
        stop_reason=stop_reason(choice.get("finish_reason"), saw_tool),
        usage=usage_to_canonical(body.get("usage")),
    )


def plain_response_in(body: JSONObject) -> PlainAnswer | None:
    """The answer as a PlainAnswer when its first choice is one text (no reasoning,
    refusal or tool call), else None (then `response_to_canonical` reads it)."""
    choices = body.get("choices")
    if type(choices) is not list or not choices:
        return None
    choice = choices[0]
    message = choice.get("message") if type(choice) is dict else None
    if type(message) is not dict:
        return None
    text = message.get("content")
    reasoning = message.get("reasoning_content", message.get("reasoning"))
    refusal = message.get("refusal")
    if (
        type(text) is not str
        or not text
        or (isinstance(reasoning, str) and reasoning)
        or (isinstance(refusal, str) and refusal)
        or message.get("tool_calls")
    ):
        return None
    finish = choice.get("finish_reason")
    return PlainAnswer(
        str(body.get("id") or new_id("chatcmpl-")),
        str(body.get("model") or ""),
        text,
        stop_reason(finish, False),
        None,
        usage_to_canonical(body.get("usage")),
    )


def completion_id(response_id: str) -> str:
    return response_id if response_id.startswith("chatcmpl-") else "chatcmpl-" + response_id


def assistant_message(parts: tuple[Part, ...]) -> JSONObject:
    """An assistant message: its text (null with only tool calls) and its calls."""
    texts: list[str] = []
    calls: list[JSONObject] = []
    for p in parts:
        if isinstance(p, TextPart):
            texts.append(p.text)
        elif isinstance(p, ToolCallPart):
            function = {"name": p.name, "arguments": p.arguments or "{}"}
            calls.append({"id": p.id, "type": "function", "function": function})
    text = texts[0] if len(texts) == 1 else "".join(texts)
    message: JSONObject = {"role": "assistant", "content": text or (None if calls else "")}
    if calls:
        message["tool_calls"] = calls
    return message


def response_from_canonical(response: ChatResponse) -> JSONObject:
    parts = response.parts
    if len(parts) == 1 and type(parts[0]) is TextPart:  # the usual answer: one text
        return _completion(response, _text_message(parts[0].text))
    message = assistant_message(parts)
    message["refusal"] = None
    reasoning = "".join(p.text for p in parts if isinstance(p, ReasoningPart))
    if reasoning:
        message["reasoning_content"] = reasoning
    return _completion(response, message)


def plain_response_out(answer: PlainAnswer) -> JSONObject:
    """What `response_from_canonical(answer.as_response())` writes, without building
    it."""
    return _completion(answer, _text_message(answer.text))


def _text_message(text: str) -> JSONObject:
    return {"role": "assistant", "content": text, "refusal": None}


def _completion(answer: ChatResponse | PlainAnswer, message: JSONObject) -> JSONObject:
    return {
        "id": completion_id(answer.id),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": answer.model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason(answer.stop_reason),
            }
        ],
        "usage": usage_from_canonical(answer.usage),
    }
