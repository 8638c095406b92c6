"""Anthropic Messages requests <-> canonical.

Read: `system` (string or text blocks; cache_control dropped), string or block content,
text / image (base64, url) / document (base64 or url PDF, text source) / tool_use /
tool_result / thinking / redacted_thinking blocks, custom tools, tool_choice with
disable_parallel_tool_use, sampling, stop_sequences, thinking (enabled budget, disabled,
adaptive with output_config.effort), metadata.user_id, stream. Server tools
(web_search_..., bash_..., ...) and their result blocks have no equivalent elsewhere and
are dropped; a `file` source is refused (it names a file on Anthropic's side).

Written for an Anthropic upstream, after the history rules of protocols/history.py:
system messages hoisted, turns merged, tool results first and paired. Thinking blocks
are kept only with an Anthropic signature (others cannot be verified and are dropped).
Images must be jpeg/png/gif/webp and documents PDF or plain text, else refused; tool
names outside [a-zA-Z0-9_-] are refused; tool ids are sanitised to that alphabet on both
calls and results. temperature is clamped to 1; top_p is dropped when temperature is
set; seed and penalties are dropped. With thinking on, temperature/top_k are dropped and
a forced tool choice becomes auto (Anthropic's rules). A JSON response format becomes a
system instruction (with the schema), there being no portable structured-output field.
"""

from __future__ import annotations

import re
from typing import Any

from ...canonical import (
    ChatRequest,
    ContentPart,
    MediaPart,
    Message,
    Part,
    PlainChat,
    Reasoning,
    ReasoningPart,
    ResponseFormat,
    Role,
    TextPart,
    ToolCallPart,
    ToolChoice,
    ToolResultPart,
    ToolSpec,
)
from ...errors import InvalidRequest, UnsupportedConversion
from ..base import JSONObject, array, dumps, parse_arguments
from ..history import normalise_history
from ..signatures import claude_signature_in, claude_signature_out

__all__ = [
    "plain_request_in",
    "plain_request_out",
    "request_from_canonical",
    "request_to_canonical",
    "sanitise_id",
    "thinking_part",
]

_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,128}")
_NOT_ID = re.compile(r"[^a-zA-Z0-9_-]")
EFFORT_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384}


def sanitise_id(value: str) -> str:
    return _NOT_ID.sub("_", value) or "toolu_"


# -- client -> canonical ---------------------------------------------------------------


def _source(block: JSONObject, where: str, default_type: str) -> MediaPart | TextPart:
    source = block.get("source")
    if not isinstance(source, dict):
        raise InvalidRequest(f"{where}.source: required")
    kind = source.get("type")
    if kind == "base64" and isinstance(source.get("data"), str):
        media_type = source.get("media_type") or default_type
        return MediaPart(media_type=str(media_type), data=source["data"])
    if kind == "url" and isinstance(source.get("url"), str):
        return MediaPart(media_type=default_type, url=source["url"])
    if kind == "text" and isinstance(source.get("data"), str):
        return TextPart(text=source["data"])
    raise UnsupportedConversion(f"{where}.source: a {kind!r} source cannot be converted")


def _blocks(content: Any, where: str) -> list[JSONObject]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise InvalidRequest(f"{where}: expected a string or an array of blocks")
    for j, block in enumerate(content):
        if not isinstance(block, dict):
            raise InvalidRequest(f"{where}[{j}]: expected an object")
    return content


def _content_parts(content: Any, where: str) -> tuple[ContentPart, ...]:
    parts: list[ContentPart] = []
    for j, block in enumerate(_blocks(content, where) if content is not None else []):
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            parts.append(TextPart(text=block["text"]))
        elif kind == "image":
            parts.append(_source(block, f"{where}[{j}]", "image/jpeg"))
        elif kind == "document":
            parts.append(_source(block, f"{where}[{j}]", "application/pdf"))
    return tuple(parts)


def thinking_part(block: JSONObject) -> ReasoningPart:
    """A thinking or redacted_thinking block (request history or answer)."""
    if block.get("type") == "redacted_thinking":
        return ReasoningPart(text="", redacted=str(block.get("data") or ""))
    return ReasoningPart(
        text=str(block.get("thinking") or ""),
        signature=claude_signature_in(block.get("signature")),
    )


def _part(block: JSONObject, i: int, j: int, names: dict[str, str]) -> Part | None:
    """Block j of message i. Its place is spelt out only for an error: a long
    conversation has hundreds of blocks, and most requests have no error."""
    kind = block.get("type")
    if kind == "text":
        text = block.get("text")
        if not isinstance(text, str):
            raise InvalidRequest(f"messages[{i}].content[{j}].text: required")
        return TextPart(text=text)
    if kind == "tool_use":
        call_id, name = block.get("id"), block.get("name")
        if not isinstance(call_id, str) or not isinstance(name, str):
            raise InvalidRequest(f"messages[{i}].content[{j}]: tool_use needs id and name")
        names[call_id] = name
        return ToolCallPart(
            id=call_id, name=name, arguments=dumps(block.get("input") or {})
        )
    if kind == "tool_result":
        call_id = block.get("tool_use_id")
        if not isinstance(call_id, str):
            raise InvalidRequest(f"messages[{i}].content[{j}].tool_use_id: required")
        content = block.get("content")
        return ToolResultPart(
            call_id=call_id,
            name=names.get(call_id),
            content=(TextPart(text=content),)
            if isinstance(content, str)
            else _content_parts(content, f"messages[{i}].content[{j}].content"),
            is_error=block.get("is_error") is True,
        )
    if kind == "image":
        return _source(block, f"messages[{i}].content[{j}]", "image/jpeg")
    if kind == "document":
        return _source(block, f"messages[{i}].content[{j}]", "application/pdf")
    if kind in ("thinking", "redacted_thinking"):
        return thinking_part(block)
    return None  # server-tool artefacts and other blocks without an equivalent


_ROLES = {"user": Role.USER, "assistant": Role.ASSISTANT}


def _messages(raw: Any) -> tuple[Message, ...]:
    if not isinstance(raw, list) or not raw:
        raise InvalidRequest("messages: required, a non-empty array")
    names: dict[str, str] = {}
    messages = []
    for i, message in enumerate(raw):
        role = message.get("role") if isinstance(message, dict) else None
        if role != "user" and role != "assistant":  # (not `in` a dict: it may be a list)
            raise InvalidRequest(f"messages[{i}].role: must be user or assistant")
        content = message.get("content")
        if isinstance(content, str):
            messages.append(Message(_ROLES[role], (TextPart(text=content),)))
            continue
        if not isinstance(content, list):
            raise InvalidRequest(
                f"messages[{i}].content: expected a string or an array of blocks"
            )
        parts = []
        for j, block in enumerate(content):
            if not isinstance(block, dict):
                raise InvalidRequest(f"messages[{i}].content[{j}]: expected an object")
            part = _part(block, i, j, names)
            if part is not None:
                parts.append(part)
        messages.append(Message(_ROLES[role], tuple(parts)))
    return tuple(messages)


def _system(raw: Any) -> tuple[TextPart, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str):
        return (TextPart(text=raw),) if raw else ()
    if not isinstance(raw, list):
        raise InvalidRequest("system: expected a string or an array of text blocks")
    return tuple(
        TextPart(text=b["text"])
        for b in raw
        if isinstance(b, dict) and isinstance(b.get("text"), str)
    )


def _tools(raw: Any) -> tuple[ToolSpec, ...]:
    specs = []
    for k, tool in enumerate(array(raw, "tools")):
        if not isinstance(tool, dict):
            raise InvalidRequest(f"tools[{k}]: expected an object")
        if tool.get("type") not in (None, "custom"):
            continue  # a server tool: nothing to call it on elsewhere
        if not isinstance(tool.get("name"), str):
            raise InvalidRequest(f"tools[{k}].name: required")
        schema = tool.get("input_schema")
        specs.append(
            ToolSpec(
                name=tool["name"],
                description=tool.get("description"),
                parameters=schema if isinstance(schema, dict) else None,
            )
        )
    return tuple(specs)


def _tool_choice(raw: Any) -> ToolChoice | None:
    if not isinstance(raw, dict):
        return None
    parallel = False if raw.get("disable_parallel_tool_use") is True else None
    modes = {"auto": "auto", "any": "required", "none": "none", "tool": "tool"}
    mode = modes.get(str(raw.get("type")))
    if mode is None:
        raise InvalidRequest("tool_choice.type: expected auto, any, tool or none")
    name = raw.get("name") if mode == "tool" else None
    return ToolChoice(mode=mode, name=name, parallel=parallel)  # type: ignore[arg-type]


def _reasoning(body: JSONObject) -> Reasoning | None:
    thinking = body.get("thinking")
    if not isinstance(thinking, dict):
        return None
    kind = thinking.get("type")
    if kind == "disabled":
        return Reasoning(enabled=False)
    if kind == "adaptive":
        config = body.get("output_config") or {}
        return Reasoning(effort=str(config.get("effort") or "medium"))
    budget = thinking.get("budget_tokens")
    return Reasoning(budget=budget if isinstance(budget, int) else None)


def _response_format(body: JSONObject) -> ResponseFormat | None:
    config = body.get("output_config") or body.get("output_format")
    fmt = config.get("format", config) if isinstance(config, dict) else None
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        return ResponseFormat(kind="json_schema", schema=fmt.get("schema"))
    return None


def request_to_canonical(body: JSONObject, *, model: str | None = None) -> ChatRequest:
    name = body.get("model", model)
    if not isinstance(name, str) or not name:
        raise InvalidRequest("model: required, a non-empty string")
    max_tokens = body.get("max_tokens")
    stop = body.get("stop_sequences")
    metadata = body.get("metadata")
    user = metadata.get("user_id") if isinstance(metadata, dict) else None
    return ChatRequest(
        model=name,
        messages=_messages(body.get("messages")),
        system=_system(body.get("system")),
        tools=_tools(body.get("tools")),
        tool_choice=_tool_choice(body.get("tool_choice")),
        max_tokens=max_tokens if isinstance(max_tokens, int) else None,
        temperature=_float(body.get("temperature")),
        top_p=_float(body.get("top_p")),
        top_k=body.get("top_k") if isinstance(body.get("top_k"), int) else None,
        stop=tuple(s for s in stop if isinstance(s, str)) if isinstance(stop, list) else (),
        reasoning=_reasoning(body),
        response_format=_response_format(body),
        user=user if isinstance(user, str) else None,
        stream=body.get("stream") is True,
    )


def _float(value: Any) -> float | None:
    # A tuple, not `int | float`: that builds a union object on every call.
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


_PLAIN_KEYS = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "temperature",
        "top_p",
        "top_k",
        "stop_sequences",
        "stream",
        "metadata",
    }
)
_PLAIN_MESSAGE_KEYS = frozenset({"role", "content"})
_PLAIN_BLOCK_KEYS = frozenset({"type", "text", "cache_control"})
_TURN_ROLES = ("user", "assistant")


def _plain_text(content: Any) -> str | None:
    """A message's one text given as a single text block."""
    if type(content) is list and len(content) == 1:
        block = content[0]
        if (
            type(block) is dict
            and block.get("type") == "text"
            and type(block.get("text")) is str
            and _PLAIN_BLOCK_KEYS.issuperset(block)
        ):
            return block["text"]  # type: ignore[no-any-return]
    return None


def plain_request_in(body: JSONObject, *, model: str | None = None) -> PlainChat | None:
    """The body as a PlainChat when it is one (each message one text, user and
    assistant alternating from the user, no blank turn, only the fields below), else
    None: `request_to_canonical` reads it then (and raises for what is wrong)."""
    if not _PLAIN_KEYS.issuperset(body):
        return None
    name = body.get("model", model)
    raw = body.get("messages")
    if not isinstance(name, str) or not name or not isinstance(raw, list) or not raw:
        return None
    turns: list[str] = []
    for message in raw:
        if type(message) is not dict or not _PLAIN_MESSAGE_KEYS.issuperset(message):
            return None
        content = message.get("content")
        text = content if type(content) is str else _plain_text(content)
        if (
            text is None
            or not text.strip()
            or message.get("role") != _TURN_ROLES[len(turns) % 2]
        ):
            return None
        turns.append(text)
    raw_system = body.get("system")
    system: tuple[str, ...] = ()
    if isinstance(raw_system, str):
        system = (raw_system,) if raw_system else ()
    elif isinstance(raw_system, list):
        system = tuple(p.text for p in _system(raw_system))
    elif raw_system is not None:
        return None
    max_tokens = body.get("max_tokens")
    top_k = body.get("top_k")
    stop = body.get("stop_sequences")
    metadata = body.get("metadata")
    user = metadata.get("user_id") if isinstance(metadata, dict) else None
    return PlainChat(
        name,
        system,
        tuple(turns),
        max_tokens if isinstance(max_tokens, int) else None,
        _float(body.get("temperature")),
        _float(body.get("top_p")),
        top_k if isinstance(top_k, int) else None,
        tuple(s for s in stop if isinstance(s, str)) if isinstance(stop, list) else (),
        None,
        None,
        None,
        user if isinstance(user, str) else None,
        body.get("stream") is True,
    )


# -- canonical -> upstream ---------------------------------------------------------------


def _media_block(part: MediaPart, where: str) -> JSONObject:
    if part.is_image:
        if part.url is not None:
            return {"type": "image", "source": {"type": "url", "url": part.url}}
        if part.media_type not in _IMAGE_TYPES:
            raise UnsupportedConversion(
                f"{where}: Anthropic takes jpeg, png, gif or webp images, not "
                f"{part.media_type}"
            )
        source = {"type": "base64", "media_type": part.media_type, "data": part.data}
        return {"type": "image", "source": source}
    if part.media_type == "application/pdf":
        if part.url is not None:
            return {"type": "document", "source": {"type": "url", "url": part.url}}
        source = {"type": "base64", "media_type": part.media_type, "data": part.data}
        return {"type": "document", "source": source}
    raise UnsupportedConversion(
        f"{where}: Anthropic Messages cannot take {part.media_type}"
    )


def _content_blocks(parts: tuple[ContentPart, ...], i: int) -> list[JSONObject]:
    out: list[JSONObject] = []
    for part in parts:
        if isinstance(part, TextPart):
            text = part.text
            if text and not text.isspace():
                out.append({"type": "text", "text": text})
        else:
            out.append(_media_block(part, f"messages[{i}]"))
    return out


def _block(part: Part, i: int) -> JSONObject | None:
    """Part of message i as a block (its place is spelt out only in an error)."""
    match part:
        case TextPart(text=text):
            return {"type": "text", "text": text} if text and not text.isspace() else None
        case ToolResultPart(call_id=call_id, content=content, is_error=is_error):
            result: JSONObject = {
                "type": "tool_result",
                "tool_use_id": sanitise_id(call_id),
            }
            blocks = _content_blocks(content, i)
            if blocks:
                result["content"] = blocks
            if is_error:
                result["is_error"] = True
            return result
        case ToolCallPart(id=call_id, name=name, arguments=arguments):
            return {
                "type": "tool_use",
                "id": sanitise_id(call_id),
                "name": name,
                "input": parse_arguments(arguments),
            }
        case MediaPart():
            return _media_block(part, f"messages[{i}]")
        case ReasoningPart(redacted=str() as data):
            return {"type": "redacted_thinking", "data": data}
        case ReasoningPart(text=text, signature=signature):
            if signature is None or signature.vendor != "anthropic":
                return None
            return {
                "type": "thinking",
                "thinking": text,
                "signature": claude_signature_out(signature),
            }


def _late_result(blocks: list[JSONObject]) -> bool:
    """Whether a tool_result block follows another kind of block."""
    other = False
    for block in blocks:
        if block["type"] != "tool_result":
            other = True
        elif other:
            return True
    return False


def _messages_out(messages: list[Message]) -> list[JSONObject]:
    """The turns, already normalised (user and assistant alternating)."""
    out = []
    last = len(messages) - 1
    for i, message in enumerate(messages):
        blocks = []
        for part in message.parts:
            block = _block(part, i)
            if block is not None:
                blocks.append(block)
        user = message.role is Role.USER
        role = "user" if user else "assistant"
        if user and _late_result(blocks):  # tool results must come first
            blocks.sort(key=lambda b: b["type"] != "tool_result")
        if not user and i == last and blocks and blocks[-1]["type"] == "text":
            # Anthropic rejects a prefill that ends in white space
            blocks[-1] = {"type": "text", "text": blocks[-1]["text"].rstrip()}
        if blocks:
            out.append({"role": role, "content": blocks})
        elif i != last or user:  # a turn whose only content could not be kept
            out.append({"role": role, "content": [{"type": "text", "text": "."}]})
    return out


def _format_instruction(fmt: ResponseFormat) -> str:
    text = "Respond with a single valid JSON object only, with no other text."
    if fmt.schema is not None:
        text += " It must match this JSON Schema: " + dumps(fmt.schema)
    return text


def _tools_out(tools: tuple[ToolSpec, ...]) -> list[JSONObject]:
    out = []
    for tool in tools:
        if _TOOL_NAME.fullmatch(tool.name) is None:
            raise UnsupportedConversion(
                f"tool name {tool.name!r}: Anthropic tool names are 1-128 of [a-zA-Z0-9_-]"
            )
        schema = dict(tool.parameters or {})
        schema.setdefault("type", "object")
        if schema["type"] != "object":
            schema = {"type": "object", "properties": {"value": schema}}
        spec: JSONObject = {"name": tool.name, "input_schema": schema}
        if tool.description:
            spec["description"] = tool.description
        out.append(spec)
    return out


def _thinking(reasoning: Reasoning, body: JSONObject) -> None:
    if not reasoning.enabled:
        return
    budget = reasoning.budget or EFFORT_BUDGETS.get(reasoning.effort or "", 8192)
    budget = max(1024, budget)
    body["thinking"] = {"type": "enabled", "budget_tokens": budget}
    if body["max_tokens"] <= budget:
        body["max_tokens"] = budget + 4096
    body.pop("temperature", None)
    body.pop("top_k", None)
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice["type"] in ("any", "tool"):
        body["tool_choice"] = {"type": "auto"}


def request_from_canonical(request: ChatRequest) -> JSONObject:
    hoisted, messages = normalise_history(request.messages)
    system = [p.text for p in (*request.system, *hoisted) if p.text.strip()]
    if request.response_format is not None:
        system.append(_format_instruction(request.response_format))
    body: JSONObject = {
        "model": request.model,
        "max_tokens": request.max_tokens or 8192,
        "messages": _messages_out(messages),
    }
    if system:
        body["system"] = [{"type": "text", "text": t} for t in system]
    if request.tools:
        body["tools"] = _tools_out(request.tools)
    choice = request.tool_choice
    if choice is not None and request.tools:
        modes = {"auto": "auto", "required": "any", "none": "none", "tool": "tool"}
        out: JSONObject = {"type": modes[choice.mode]}
        if choice.mode == "tool":
            out["name"] = choice.name
        if choice.parallel is False and choice.mode != "none":
            out["disable_parallel_tool_use"] = True
        body["tool_choice"] = out
    _sampling_out(request, body)
    if request.reasoning is not None:
        _thinking(request.reasoning, body)
    if request.stream:
        body["stream"] = True
    return body


def _sampling_out(request: ChatRequest | PlainChat, body: JSONObject) -> None:
    if request.temperature is not None:
        body["temperature"] = min(1.0, request.temperature)
    elif request.top_p is not None:
        body["top_p"] = request.top_p
    if request.top_k is not None:
        body["top_k"] = request.top_k
    stops = [s for s in request.stop if s.strip()]
    if stops:
        body["stop_sequences"] = stops
    if request.user:
        body["metadata"] = {"user_id": request.user}


def plain_request_out(chat: PlainChat) -> JSONObject:
    """What `request_from_canonical(chat.as_request())` writes, without building it:
    a plain chat already obeys the history rules (alternating, from the user, no blank
    text), and a closing assistant turn (a prefill) loses its trailing white space."""
    turns = chat.turns
    messages: list[JSONObject] = [
        {"role": _TURN_ROLES[i % 2], "content": [{"type": "text", "text": text}]}
        for i, text in enumerate(turns)
    ]
    if turns and not len(turns) % 2:  # a closing assistant turn, a prefill
        messages[-1]["content"][0]["text"] = turns[-1].rstrip()
    body: JSONObject = {
        "model": chat.model,
        "max_tokens": chat.max_tokens or 8192,
        "messages": messages,
    }
    if chat.system:
        system = [{"type": "text", "text": t} for t in chat.system if t.strip()]
        if system:
            body["system"] = system
    _sampling_out(chat, body)
    if chat.stream:
        body["stream"] = True
    return body
