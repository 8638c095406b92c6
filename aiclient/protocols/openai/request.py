"""OpenAI Chat Completions requests <-> canonical.

Read: every message role (system/developer, user, assistant, tool, legacy function),
text, image_url (data or http URL), input_audio and file (data URL) parts, tools (and
legacy functions), tool_choice, parallel_tool_calls, sampling, stop, seed, penalties,
reasoning_effort, response_format, user, stream and stream_options. `n` > 1 is refused
(one answer is translated); a `file_id` is refused (it names a file on OpenAI's side).
Other fields (logit_bias, logprobs, store, metadata, ...) have no equivalent and are
dropped.

Written for an OpenAI-compatible upstream: system messages keep their position; thinking
is dropped (no standard field takes it back); tool results become `tool` messages, and
images inside them a user message right after the run of tool messages (tool messages
are text-only). Images and PDFs pass as data URLs or http URLs; audio is refused except
wav/mp3; `top_k` has no OpenAI field and is dropped. `max_tokens` is sent, or
`max_completion_tokens` when reasoning is requested (reasoning models reject the other).
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
from ..base import JSONObject, array, dumps, new_id, parse_data_url, to_data_url
from ..history import result_text
from .response import assistant_message

__all__ = [
    "plain_request_in",
    "plain_request_out",
    "request_from_canonical",
    "request_to_canonical",
]

_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_AUDIO_FORMATS = {"audio/wav": "wav", "audio/x-wav": "wav", "audio/mpeg": "mp3"}
_AUDIO_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg"}
EFFORT_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 24576}


def effort_of(reasoning: Reasoning) -> str:
    """An effort word for a reasoning request (budget thresholds: ≤2048 low, ≤8192
    medium, more is high)."""
    if reasoning.effort in EFFORT_BUDGETS or reasoning.effort == "none":
        return reasoning.effort
    if reasoning.budget is None:
        return "medium"
    if reasoning.budget <= 2048:
        return "low"
    return "medium" if reasoning.budget <= 8192 else "high"


# -- client -> canonical ---------------------------------------------------------------


def _text_of(content: Any, i: int) -> list[TextPart]:
    """The text parts of message i's content. (Its place is spelt out only in an error:
    a long conversation has hundreds of parts, and most requests have no error.)"""
    if content is None:
        return []
    if isinstance(content, str):
        return [TextPart(text=content)]
    if not isinstance(content, list):
        raise InvalidRequest(
            f"messages[{i}].content: expected a string or an array of parts"
        )
    parts = []
    for j, part in enumerate(content):
        if not isinstance(part, dict):
            raise InvalidRequest(f"messages[{i}].content[{j}]: expected an object")
        text = part.get("text", part.get("refusal"))
        if isinstance(text, str):
            parts.append(TextPart(text=text))
        elif part.get("type") not in ("text", "refusal"):
            raise InvalidRequest(
                f"messages[{i}].content[{j}]: only text parts are allowed here"
            )
    return parts


def _user_parts(content: Any, i: int) -> list[ContentPart]:
    if isinstance(content, str) or content is None:
        return _text_of(content, i)  # type: ignore[return-value]
    if not isinstance(content, list):
        raise InvalidRequest(
            f"messages[{i}].content: expected a string or an array of parts"
        )
    parts: list[ContentPart] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            parts.append(TextPart(text=part["text"]))
            continue
        at = f"messages[{i}].content[{j}]"
        if kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if not isinstance(url, str):
                raise InvalidRequest(f"{at}.image_url.url: required")
            parts.append(parse_data_url(url, f"{at}.image_url.url"))
        elif kind == "input_audio":
            audio = part.get("input_audio")
            fmt = audio.get("format") if isinstance(audio, dict) else None
            media_type = _AUDIO_TYPES.get(fmt) if isinstance(fmt, str) else None
            if media_type is None or not isinstance(audio.get("data"), str):
                raise InvalidRequest(f"{at}.input_audio: needs data and format wav|mp3")
            parts.append(MediaPart(media_type=media_type, data=audio["data"]))
        elif kind == "file":
            file = part.get("file")
            if not isinstance(file, dict):
                raise InvalidRequest(f"{at}.file: expected an object")
            if not isinstance(file.get("file_data"), str):
                raise UnsupportedConversion(
                    f"{at}.file: only inline file_data can be converted, not file_id"
                )
            parts.append(parse_data_url(file["file_data"], f"{at}.file.file_data"))
        else:
            raise InvalidRequest(f"{at}: unsupported content part type {kind!r}")
    return parts


def _tool_calls(message: JSONObject, i: int) -> list[Part]:
    calls: list[Part] = []
    raw = message.get("tool_calls") or []
    if not isinstance(raw, list):
        raise InvalidRequest(f"messages[{i}].tool_calls: expected an array")
    for k, call in enumerate(raw):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise InvalidRequest(f"messages[{i}].tool_calls[{k}].function.name: required")
        arguments = function.get("arguments")
        if not isinstance(arguments, str):
            arguments = dumps(arguments) if arguments is not None else ""
        call_id = call.get("id")
        calls.append(
            ToolCallPart(
                id=call_id if isinstance(call_id, str) and call_id else f"call_{k}",
                name=function["name"],
                arguments=arguments,
            )
        )
    legacy = message.get("function_call")
    if isinstance(legacy, dict) and isinstance(legacy.get("name"), str):
        calls.append(
            ToolCallPart(
                id=f"call_fn_{legacy['name']}",
                name=legacy["name"],
                arguments=str(legacy.get("arguments") or ""),
            )
        )
    return calls


def _messages(
    raw: Any,
) -> tuple[tuple[TextPart, ...], tuple[Message, ...]]:
    if not isinstance(raw, list) or not raw:
        raise InvalidRequest("messages: required, a non-empty array")
    system: list[TextPart] = []
    messages: list[Message] = []
    names: dict[str, str] = {}
    for i, message in enumerate(raw):
        if not isinstance(message, dict):
            raise InvalidRequest(f"messages[{i}]: expected an object")
        role = message.get("role")
        content = message.get("content")
        if role in ("system", "developer"):
            parts = _text_of(content, i)
            if messages:
                messages.append(Message(Role.SYSTEM, tuple(parts)))
            else:
                system.extend(parts)
        elif role == "user":
            messages.append(Message(Role.USER, tuple(_user_parts(content, i))))
        elif role == "assistant":
            parts_a: list[Part] = []
            reasoning = message.get("reasoning_content")
            if isinstance(reasoning, str) and reasoning:
                parts_a.append(ReasoningPart(text=reasoning))
            parts_a += _text_of(content, i)
            calls = _tool_calls(message, i)
            names.update((c.id, c.name) for c in calls if isinstance(c, ToolCallPart))
            messages.append(Message(Role.ASSISTANT, tuple(parts_a + calls)))
        elif role in ("tool", "function"):
            call_id = message.get("tool_call_id")
            if role == "function":
                call_id = f"call_fn_{message.get('name')}"
            if not isinstance(call_id, str):
                raise InvalidRequest(f"messages[{i}].tool_call_id: required")
            result = ToolResultPart(
                call_id=call_id,
                name=names.get(call_id),
                content=tuple(_text_of(content, i)),
            )
            messages.append(Message(Role.USER, (result,)))
        else:
            raise InvalidRequest(f"messages[{i}].role: unknown role {role!r}")
    return tuple(system), tuple(messages)


def _tools(body: JSONObject) -> tuple[ToolSpec, ...]:
    if "tools" not in body and "functions" not in body:
        return ()
    raw = array(body.get("tools"), "tools")
    functions = [t.get("function") for t in raw if isinstance(t, dict)]
    functions += array(body.get("functions"), "functions")
    specs = []
    for k, fn in enumerate(functions):
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise InvalidRequest(f"tools[{k}].function.name: required")
        params = fn.get("parameters")
        specs.append(
            ToolSpec(
                name=fn["name"],
                description=fn.get("description"),
                parameters=params if isinstance(params, dict) else None,
            )
        )
    return tuple(specs)


def _tool_choice(body: JSONObject) -> ToolChoice | None:
    choice = body.get("tool_choice", body.get("function_call"))
    parallel = body.get("parallel_tool_calls")
    parallel = parallel if isinstance(parallel, bool) else None
    if choice is None:
        return ToolChoice(parallel=parallel) if parallel is not None else None
    if choice in ("auto", "none", "required"):
        return ToolChoice(mode=choice, parallel=parallel)
    if isinstance(choice, dict):
        fn = choice.get("function", choice)
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            return ToolChoice(mode="tool", name=fn["name"], parallel=parallel)
    raise InvalidRequest("tool_choice: expected auto, none, required or a function")


def _number(body: JSONObject, key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequest(f"{key}: expected a number")
    return float(value)


def _integer(body: JSONObject, *keys: str) -> int | None:
    for key in keys:
        value = body.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidRequest(f"{key}: expected an integer")
        return value
    return None


def _response_format(body: JSONObject) -> ResponseFormat | None:
    fmt = body.get("response_format")
    if not isinstance(fmt, dict) or fmt.get("type") not in ("json_object", "json_schema"):
        return None
    if fmt["type"] == "json_object":
        return ResponseFormat(kind="json_object")
    spec = fmt.get("json_schema") or {}
    if not isinstance(spec, dict):
        raise InvalidRequest("response_format.json_schema: expected an object")
    return ResponseFormat(
        kind="json_schema", schema=spec.get("schema"), name=spec.get("name")
    )


def _stop(stop: Any) -> tuple[str, ...]:
    if isinstance(stop, str):
        return (stop,)
    stops = array(stop, "stop")
    if not all(isinstance(s, str) for s in stops):
        raise InvalidRequest("stop: a string or an array of strings")
    return tuple(stops)


def request_to_canonical(body: JSONObject, *, model: str | None = None) -> ChatRequest:
    name = body.get("model", model)
    if not isinstance(name, str) or not name:
        raise InvalidRequest("model: required, a non-empty string")
    n = _integer(body, "n")
    if n is not None and n > 1:
        raise UnsupportedConversion("n > 1: only one choice can be converted")
    system, messages = _messages(body.get("messages"))
    stop = body.get("stop")
    effort = body.get("reasoning_effort")
    options = body.get("stream_options")
    return ChatRequest(
        model=name,
        messages=messages,
        system=system,
        tools=_tools(body),
        tool_choice=_tool_choice(body),
        max_tokens=_integer(body, "max_completion_tokens", "max_tokens"),
        temperature=_number(body, "temperature"),
        top_p=_number(body, "top_p"),
        stop=_stop(stop),
        seed=_integer(body, "seed"),
        presence_penalty=_number(body, "presence_penalty"),
        frequency_penalty=_number(body, "frequency_penalty"),
        reasoning=(
            Reasoning(enabled=effort != "none", effort=effort)
            if isinstance(effort, str)
            else None
        ),
        response_format=_response_format(body),
        user=user if isinstance(user := body.get("user"), str) else None,
        stream=body.get("stream") is True,
        include_usage=isinstance(options, dict) and options.get("include_usage") is True,
    )


_PLAIN_KEYS = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "stop",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "user",
        "stream",
        "stream_options",
        "n",
    }
)
_PLAIN_MESSAGE_KEYS = frozenset({"role", "content", "name"})
_TURN_ROLES = ("user", "assistant")


def _plain_texts(raw: list[Any]) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """(system texts, turns) of plain messages, else None."""
    system: list[str] = []
    turns: list[str] = []
    for message in raw:
        if type(message) is not dict or not _PLAIN_MESSAGE_KEYS.issuperset(message):
            return None
        role, content = message.get("role"), message.get("content")
        if type(content) is not str:
            return None
        if role == _TURN_ROLES[len(turns) % 2] and content.strip():
            turns.append(content)
        elif role in ("system", "developer") and not turns:
            system.append(content)
        else:
            return None
    return (tuple(system), tuple(turns)) if turns else None


def plain_request_in(body: JSONObject, *, model: str | None = None) -> PlainChat | None:
    """The body as a PlainChat when it is one (string contents, system messages
    only before the first turn, user and assistant alternating from the user, no
    blank turn, only the fields below), else None: `request_to_canonical` reads it
    then (and raises for what is wrong)."""
    if not _PLAIN_KEYS.issuperset(body):
        return None
    name = body.get("model", model)
    raw = body.get("messages")
    n = body.get("n")
    if not isinstance(name, str) or not name or not isinstance(raw, list) or not raw:
        return None
    if n is not None and (type(n) is not int or n > 1):
        return None
    texts = _plain_texts(raw)
    if texts is None:
        return None
    max_tokens = body.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = body.get("max_tokens")
    seed = body.get("seed")
    if not (max_tokens is None or type(max_tokens) is int) or not (
        seed is None or type(seed) is int
    ):
        return None
    temperature, top_p = body.get("temperature"), body.get("top_p")
    presence, frequency = body.get("presence_penalty"), body.get("frequency_penalty")
    for number in (temperature, top_p, presence, frequency):
        if number is not None and type(number) is not float and type(number) is not int:
            return None
    stop = body.get("stop")
    if isinstance(stop, str):
        stops: tuple[str, ...] = (stop,)
    elif stop is None:
        stops = ()
    elif type(stop) is list and all(type(s) is str for s in stop):
        stops = tuple(stop)
    else:
        return None
    user = body.get("user")
    options = body.get("stream_options")
    return PlainChat(
        name,
        *texts,
        max_tokens,
        None if temperature is None else float(temperature),
        None if top_p is None else float(top_p),
        None,
        stops,
        seed,
        None if presence is None else float(presence),
        None if frequency is None else float(frequency),
        user if isinstance(user, str) else None,
        body.get("stream") is True,
        isinstance(options, dict) and options.get("include_usage") is True,
    )


# -- canonical -> upstream ---------------------------------------------------------------


def _content_part(part: ContentPart, where: str) -> JSONObject:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    if part.is_image:
        return {"type": "image_url", "image_url": {"url": to_data_url(part)}}
    if part.media_type == "application/pdf" and part.data is not None:
        return {
            "type": "file",
            "file": {"filename": "document.pdf", "file_data": to_data_url(part)},
        }
    fmt = _AUDIO_FORMATS.get(part.media_type)
    if fmt is not None and part.data is not None:
        return {"type": "input_audio", "input_audio": {"data": part.data, "format": fmt}}
    raise UnsupportedConversion(
        f"{where}: OpenAI Chat Completions cannot take {part.media_type}"
        + (" by URL" if part.url else "")
    )


def _content(parts: list[ContentPart], i: int) -> str | list[JSONObject]:
    if len(parts) == 1 and isinstance(parts[0], TextPart):  # the usual turn
        return parts[0].text
    if all(isinstance(p, TextPart) for p in parts):
        return "".join(p.text for p in parts if isinstance(p, TextPart))
    return [_content_part(p, f"messages[{i}]") for p in parts]


def _user(message: Message, i: int) -> list[JSONObject]:
    out: list[JSONObject] = []
    attached: list[ContentPart] = []
    rest: list[ContentPart] = []
    for part in message.parts:
        if isinstance(part, ToolResultPart):
            text = result_text(part)
            content = part.content
            if len(content) != 1 or not isinstance(content[0], TextPart):
                media = [p for p in content if isinstance(p, MediaPart)]
                if media and not text:
                    text = "(attached below)"
                attached += media
            out.append(
                {
                    "role": "tool",
                    "tool_call_id": part.call_id,
                    "content": f"Error: {text}" if part.is_error else text,
                }
            )
        elif isinstance(part, (TextPart, MediaPart)):
            rest.append(part)
    if attached:
        out.append({"role": "user", "content": _content(attached, i)})
    if rest:
        out.append({"role": "user", "content": _content(rest, i)})
    return out


def _messages_out(request: ChatRequest) -> list[JSONObject]:
    out: list[JSONObject] = []
    if request.system:
        out.append(
            {"role": "system", "content": "\n\n".join(p.text for p in request.system)}
        )
    for i, message in enumerate(request.messages):
        if message.role is Role.SYSTEM:
            text = "\n\n".join(p.text for p in message.parts if isinstance(p, TextPart))
            out.append({"role": "system", "content": text})
        elif message.role is Role.ASSISTANT:
            out.append(assistant_message(message.parts))
        else:
            out += _user(message, i)
    return out


def _check_tool_name(name: str) -> str:
    if _TOOL_NAME.fullmatch(name) is None:
        raise UnsupportedConversion(
            f"tool name {name!r}: OpenAI tool names are 1-64 of [a-zA-Z0-9_-]"
        )
    return name


def _tool_choice_out(choice: ToolChoice, body: JSONObject) -> None:
    if choice.parallel is False and body.get("tools"):
        body["parallel_tool_calls"] = False
    if not body.get("tools"):
        return
    if choice.mode == "tool":
        body["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
    else:
        body["tool_choice"] = choice.mode


def request_from_canonical(request: ChatRequest) -> JSONObject:
    body: JSONObject = {"model": request.model, "messages": _messages_out(request)}
    if request.tools:
        body["tools"] = []
        for tool in request.tools:
            fn: JSONObject = {"name": _check_tool_name(tool.name)}
            if tool.description:
                fn["description"] = tool.description
            fn["parameters"] = dict(tool.parameters or {"type": "object", "properties": {}})
            body["tools"].append({"type": "function", "function": fn})
    if request.tool_choice is not None:
        _tool_choice_out(request.tool_choice, body)
    if request.max_tokens is not None:
        key = "max_completion_tokens" if request.reasoning else "max_tokens"
        body[key] = request.max_tokens
    _sampling_out(request, body)
    if request.reasoning is not None:
        body["reasoning_effort"] = (
            effort_of(request.reasoning) if request.reasoning.enabled else "none"
        )
    fmt = request.response_format
    if fmt is not None:
        if fmt.kind == "json_object" or fmt.schema is None:
            body["response_format"] = {"type": "json_object"}
        else:
            schema = {"name": fmt.name or "response", "schema": dict(fmt.schema)}
            body["response_format"] = {"type": "json_schema", "json_schema": schema}
    if request.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def _sampling_out(request: ChatRequest | PlainChat, body: JSONObject) -> None:
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.seed is not None:
        body["seed"] = request.seed
    if request.presence_penalty is not None:
        body["presence_penalty"] = request.presence_penalty
    if request.frequency_penalty is not None:
        body["frequency_penalty"] = request.frequency_penalty
    if request.user is not None:
        body["user"] = request.user
    if request.stop:
        body["stop"] = list(request.stop[:4])


def plain_request_out(chat: PlainChat) -> JSONObject:
    """What `request_from_canonical(chat.as_request())` writes, without building it."""
    messages: list[JSONObject] = []
    if chat.system:
        messages.append({"role": "system", "content": "\n\n".join(chat.system)})
    for i, text in enumerate(chat.turns):
        messages.append({"role": _TURN_ROLES[i % 2], "content": text})
    body: JSONObject = {"model": chat.model, "messages": messages}
    if chat.max_tokens is not None:
        body["max_tokens"] = chat.max_tokens
    _sampling_out(chat, body)
    if chat.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def new_call_id() -> str:
    return new_id("call_")
