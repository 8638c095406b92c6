"""Gemini generateContent requests <-> canonical.

Read (camelCase or snake_case keys): contents with text, thought, inlineData, fileData,
functionCall and functionResponse parts (a response without an id is paired with the
earliest unanswered call of that name; calls without ids get deterministic ones),
systemInstruction, functionDeclarations (`parameters` converted back to JSON Schema, or
`parametersJsonSchema`), toolConfig, generationConfig (sampling, stop, seed, penalties,
JSON response, thinkingConfig). `candidateCount` > 1 is refused. Built-in tools
(googleSearch, codeExecution, urlContext), executableCode/codeExecutionResult parts,
safetySettings and cachedContent have no equivalent and are dropped.

Written for a Gemini upstream, after the history rules of protocols/history.py. Tool
schemas go through the §5.7 cleaner (schema.py). Thinking text is not sent back (Gemini
does not take thoughts as input) but a Gemini signature is: on its tool call, or on the
part it came with. In the current turn, the first call of each model turn without a
Gemini signature gets `skip_thought_signature_validator` (Gemini 3 rejects it bare). An
image URL becomes `fileData` (Gemini fetches Files-API and some public URLs itself).
Tool names must start with a letter or `_` and use [a-zA-Z0-9_.:-]; others are refused.
"""

from __future__ import annotations

import functools
import re
from collections import deque
from typing import Any

import orjson

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
from ..history import normalise_history, result_text
from ..signatures import SKIP_SIGNATURE, gemini_signature_in, gemini_signature_out
from .schema import from_gemini_schema, to_gemini_schema

__all__ = [
    "get",
    "plain_request_in",
    "plain_request_out",
    "request_from_canonical",
    "request_to_canonical",
    "snake_case",
]

_TOOL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_.:-]{0,63}")
_CAMEL = re.compile(r"(?<!^)([A-Z])")
EFFORT_BUDGETS = {"none": 0, "minimal": 512, "low": 2048, "medium": 8192, "high": 24576}


@functools.cache
def snake_case(key: str) -> str:
    return _CAMEL.sub(r"_\1", key).lower()


def get(obj: Any, key: str) -> Any:
    """`obj[key]` in camelCase or its snake_case spelling (both are valid input)."""
    if not isinstance(obj, dict):
        return None
    value = obj.get(key)
    if value is None:
        value = obj.get(snake_case(key))
    return value


# -- client -> canonical ---------------------------------------------------------------


def _media(part: JSONObject) -> MediaPart | None:
    inline = get(part, "inlineData")
    if isinstance(inline, dict) and isinstance(inline.get("data"), str):
        mime = get(inline, "mimeType") or "application/octet-stream"
        return MediaPart(media_type=str(mime), data=inline["data"])
    file = get(part, "fileData")
    if isinstance(file, dict) and isinstance(get(file, "fileUri"), str):
        mime = get(file, "mimeType") or "image/jpeg"
        return MediaPart(media_type=str(mime), url=get(file, "fileUri"))
    return None


def _response_content(response: Any) -> tuple[tuple[ContentPart, ...], bool]:
    if isinstance(response, dict) and set(response) <= {"output", "error"}:
        is_error = "error" in response and "output" not in response
        value = response.get("error" if is_error else "output")
        text = value if isinstance(value, str) else dumps(value)
        return (TextPart(text=text),), is_error
    return (TextPart(text=dumps(response if response is not None else {})),), False


class _Reader:
    """Turns `contents` into messages, pairing responses with calls."""

    def __init__(self) -> None:
        self.pending: dict[str, deque[str]] = {}

    def part(self, part: Any, where: str, i: int, j: int) -> list[Part]:
        if not isinstance(part, dict):
            raise InvalidRequest(f"{where}: expected an object")
        signature, redacted = gemini_signature_in(get(part, "thoughtSignature"))
        text = part.get("text")
        if isinstance(text, str):
            if part.get("thought") is True or redacted is not None:
                return [ReasoningPart(text=text, signature=signature, redacted=redacted)]
            return [TextPart(text=text, signature=signature)]
        call = get(part, "functionCall")
        if isinstance(call, dict):
            if not isinstance(call.get("name"), str):
                raise InvalidRequest(f"{where}.functionCall.name: required")
            call_id = call.get("id") or f"call_{i}_{j}"
            self.pending.setdefault(call["name"], deque()).append(call_id)
            arguments = dumps(call.get("args") or {})
            return [
                ToolCallPart(
                    id=call_id, name=call["name"], arguments=arguments, signature=signature
                )
            ]
        response = get(part, "functionResponse")
        if isinstance(response, dict):
            return [self._result(response, where)]
        media = _media(part)
        return [media] if media is not None else []

    def _result(self, response: JSONObject, where: str) -> ToolResultPart:
        name = response.get("name")
        if not isinstance(name, str):
            raise InvalidRequest(f"{where}.functionResponse.name: required")
        queue = self.pending.get(name) or deque()
        call_id = response.get("id")
        if isinstance(call_id, str) and call_id in queue:
            queue.remove(call_id)
        elif queue:
            call_id = queue.popleft()
        elif not isinstance(call_id, str):
            call_id = f"call_unmatched_{name}"
        content, is_error = _response_content(response.get("response"))
        media = tuple(
            m
            for m in (
                _media(p)
                for p in array(response.get("parts"), f"{where}.functionResponse.parts")
                if isinstance(p, dict)
            )
            if m is not None
        )
        return ToolResultPart(
            call_id=call_id, name=name, content=content + media, is_error=is_error
        )


def _contents(raw: Any) -> tuple[Message, ...]:
    if not isinstance(raw, list) or not raw:
        raise InvalidRequest("contents: required, a non-empty array")
    reader = _Reader()
    messages = []
    for i, content in enumerate(raw):
        where = f"contents[{i}]"
        if not isinstance(content, dict):
            raise InvalidRequest(f"{where}: expected an object")
        role = Role.ASSISTANT if content.get("role") == "model" else Role.USER
        parts = content.get("parts")
        if not isinstance(parts, list):
            raise InvalidRequest(f"{where}.parts: required, an array")
        out: list[Part] = []
        for j, part in enumerate(parts):
            out += reader.part(part, f"{where}.parts[{j}]", i, j)
        messages.append(Message(role, tuple(out)))
    return tuple(messages)


def _system(raw: Any) -> tuple[TextPart, ...]:
    if isinstance(raw, str):
        return (TextPart(text=raw),)
    parts = (
        array(raw.get("parts"), "systemInstruction.parts") if isinstance(raw, dict) else ()
    )
    return tuple(
        TextPart(text=p["text"])
        for p in parts
        if isinstance(p, dict) and isinstance(p.get("text"), str)
    )


def _tools(raw: Any) -> tuple[ToolSpec, ...]:
    specs = []
    for i, tool in enumerate(array(raw, "tools")):
        where = f"tools[{i}].functionDeclarations"
        for decl in array(get(tool, "functionDeclarations"), where):
            if not isinstance(decl, dict) or not isinstance(decl.get("name"), str):
                raise InvalidRequest("tools: every function declaration needs a name")
            schema = get(decl, "parametersJsonSchema")
            if schema is None and get(decl, "parameters") is not None:
                schema = from_gemini_schema(get(decl, "parameters"))
            specs.append(
                ToolSpec(
                    name=decl["name"],
                    description=decl.get("description"),
                    parameters=schema if isinstance(schema, dict) else None,
                )
            )
    return tuple(specs)


def _tool_choice(raw: Any) -> ToolChoice | None:
    config = get(get(raw, "functionCallingConfig"), "mode")
    if not isinstance(config, str):
        return None
    mode = config.upper()
    if mode in ("ANY", "VALIDATED"):
        names = array(
            get(get(raw, "functionCallingConfig"), "allowedFunctionNames"),
            "toolConfig.functionCallingConfig.allowedFunctionNames",
        )
        if len(names) == 1:
            return ToolChoice(mode="tool", name=str(names[0]))
        return ToolChoice(mode="required")
    return ToolChoice(mode="none" if mode == "NONE" else "auto")


def _reasoning(raw: Any) -> Reasoning | None:
    if not isinstance(raw, dict):
        return None
    budget = get(raw, "thinkingBudget")
    level = get(raw, "thinkingLevel")
    include = get(raw, "includeThoughts") is True
    if budget == 0:
        return Reasoning(enabled=False, include_thoughts=include)
    return Reasoning(
        budget=budget if isinstance(budget, int) and budget > 0 else None,
        effort=str(level).lower() if isinstance(level, str) else None,
        include_thoughts=include,
    )


def _response_format(config: Any) -> ResponseFormat | None:
    if get(config, "responseMimeType") != "application/json":
        return None
    schema = get(config, "responseJsonSchema")
    if schema is None and get(config, "responseSchema") is not None:
        schema = from_gemini_schema(get(config, "responseSchema"))
    if isinstance(schema, dict):
        return ResponseFormat(kind="json_schema", schema=schema)
    return ResponseFormat(kind="json_object")


def _number(config: Any, key: str) -> float | None:
    value = get(config, key)
    return (
        float(value)
        if isinstance(value, int | float) and not isinstance(value, bool)
        else None
    )


def _integer(config: Any, key: str) -> int | None:
    value = get(config, key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def request_to_canonical(body: JSONObject, *, model: str | None = None) -> ChatRequest:
    if not model:
        raise InvalidRequest("model: required in the URL (models/{model}:generateContent)")
    config = get(body, "generationConfig") or {}
    count = _integer(config, "candidateCount")
    if count is not None and count > 1:
        raise UnsupportedConversion(
            "candidateCount > 1: only one candidate can be converted"
        )
    stop = get(config, "stopSequences")
    return ChatRequest(
        model=model,
        messages=_contents(body.get("contents")),
        system=_system(get(body, "systemInstruction")),
        tools=_tools(body.get("tools")),
        tool_choice=_tool_choice(get(body, "toolConfig")),
        max_tokens=_integer(config, "maxOutputTokens"),
        temperature=_number(config, "temperature"),
        top_p=_number(config, "topP"),
        top_k=_integer(config, "topK"),
        stop=tuple(s for s in stop if isinstance(s, str)) if isinstance(stop, list) else (),
        seed=_integer(config, "seed"),
        presence_penalty=_number(config, "presencePenalty"),
        frequency_penalty=_number(config, "frequencyPenalty"),
        reasoning=_reasoning(get(config, "thinkingConfig")),
        response_format=_response_format(config),
    )


_PLAIN_KEYS = frozenset(
    {"contents", "systemInstruction", "generationConfig", "safetySettings"}
)
_PLAIN_CONTENT_KEYS = frozenset({"role", "parts"})
_PLAIN_CONFIG_KEYS = frozenset(
    {
        "maxOutputTokens",
        "temperature",
        "topP",
        "topK",
        "seed",
        "presencePenalty",
        "frequencyPenalty",
        "stopSequences",
        "candidateCount",
    }
)
_TURN_ROLES = ("user", "model")


def _plain_part(parts: Any) -> str | None:
    """The text of a parts list that is one bare `{"text": ...}` part."""
    if type(parts) is list and len(parts) == 1:
        part = parts[0]
        if type(part) is dict and len(part) == 1:
            text = part.get("text")
            if type(text) is str:
                return text
    return None


def _plain_system(raw: Any) -> tuple[str, ...] | None:
    """systemInstruction's texts when it is a string or bare text parts, else None."""
    if raw is None:
        return ()
    if type(raw) is str:
        return (raw,)
    if type(raw) is not dict or not _PLAIN_CONTENT_KEYS.issuperset(raw):
        return None
    parts = raw.get("parts")
    if parts is not None and type(parts) is not list:
        return None
    texts = []
    for part in parts or ():
        text = _plain_part([part])
        if text is None:
            return None
        texts.append(text)
    return tuple(texts)


def _plain_config(config: Any) -> tuple[Any, ...] | None:
    """generationConfig's (maxOutputTokens, temperature, topP, topK, stop, seed,
    presencePenalty, frequencyPenalty) when every field is of its type, else None."""
    if config is None:
        config = {}
    elif type(config) is not dict or not _PLAIN_CONFIG_KEYS.issuperset(config):
        return None
    max_tokens, top_k = config.get("maxOutputTokens"), config.get("topK")
    seed, count = config.get("seed"), config.get("candidateCount")
    if any(v is not None and type(v) is not int for v in (max_tokens, top_k, seed, count)):
        return None
    if count is not None and count > 1:
        return None
    numbers = []
    for key in ("temperature", "topP", "presencePenalty", "frequencyPenalty"):
        value = config.get(key)
        if value is not None and type(value) is not float and type(value) is not int:
            return None
        numbers.append(None if value is None else float(value))
    stop = config.get("stopSequences")
    if stop is not None and (
        type(stop) is not list or not all(type(s) is str for s in stop)
    ):
        return None
    temperature, top_p, presence, frequency = numbers
    stops = tuple(stop) if stop else ()
    return max_tokens, temperature, top_p, top_k, stops, seed, presence, frequency


def plain_request_in(body: JSONObject, *, model: str | None = None) -> PlainChat | None:
    """The body as a PlainChat when it is one (each content one bare text part, user
    and model alternating from the user, no blank turn, a plain systemInstruction,
    generationConfig with sampling fields only, camelCase keys), else None:
    `request_to_canonical` reads it then (and raises for what is wrong). `model` is
    the one in the URL."""
    if not model or not _PLAIN_KEYS.issuperset(body):
        return None
    raw = body.get("contents")
    if type(raw) is not list or not raw:
        return None
    turns: list[str] = []
    for content in raw:
        if (
            type(content) is not dict
            or not _PLAIN_CONTENT_KEYS.issuperset(content)
            or content.get("role") != _TURN_ROLES[len(turns) % 2]
        ):
            return None
        text = _plain_part(content.get("parts"))
        if text is None or not text.strip():
            return None
        turns.append(text)
    system = _plain_system(body.get("systemInstruction"))
    config = _plain_config(body.get("generationConfig"))
    if system is None or config is None:
        return None
    return PlainChat(model, system, tuple(turns), *config)


# -- canonical -> upstream ---------------------------------------------------------------


def _media_out(part: MediaPart) -> JSONObject:
    if part.url is not None:
        return {"fileData": {"mimeType": part.media_type, "fileUri": part.url}}
    return {"inlineData": {"mimeType": part.media_type, "data": part.data}}


def _response_out(result: ToolResultPart) -> JSONObject:
    text = result_text(result)
    # Only an object is taken as structured; most results are plain text (file
    # contents, command output), and a failed parse costs an exception each.
    if not result.is_error and text.lstrip()[:1] == "{":
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            value = None
        if isinstance(value, dict):
            return value
    return {"error" if result.is_error else "output": text}


def _with_signature(part: JSONObject, signature: Any) -> JSONObject:
    if signature is not None and signature.vendor == "google":
        part["thoughtSignature"] = gemini_signature_out(signature)
    return part


def _model_parts(message: Message, current_turn: bool) -> list[JSONObject]:
    parts = message.parts
    carried = None  # a Google signature for the first call, from a thought part
    has_call = False
    for part in parts:
        if type(part) is ToolCallPart:
            has_call = True
        elif type(part) is ReasoningPart and carried is None:
            sig = part.signature
            if sig is not None and sig.vendor == "google":
                carried = sig
    out: list[JSONObject] = []
    first_call = True
    for part in parts:
        if isinstance(part, TextPart):
            text: JSONObject = {"text": part.text}
            out.append(
                text if part.signature is None else _with_signature(text, part.signature)
            )
        elif isinstance(part, ToolCallPart):
            call: JSONObject = {
                "functionCall": {"name": part.name, "args": parse_arguments(part.arguments)}
            }
            signature = part.signature
            if first_call and (signature is None or signature.vendor != "google"):
                signature = carried
            if signature is not None:
                _with_signature(call, signature)
            if first_call and current_turn and "thoughtSignature" not in call:
                call["thoughtSignature"] = SKIP_SIGNATURE
            first_call = False
            out.append(call)
        elif isinstance(part, MediaPart):
            out.append(_media_out(part))
        elif isinstance(part, ReasoningPart):
            sig = part.signature
            if not has_call and sig is not None and sig.vendor == "google":
                out.append(_with_signature({"text": part.text, "thought": True}, sig))
    return out


def _user_parts(message: Message) -> list[JSONObject]:
    responses: list[JSONObject] = []
    rest: list[JSONObject] = []
    for part in message.parts:
        if isinstance(part, ToolResultPart):
            response = {"name": part.name or part.call_id, "response": _response_out(part)}
            responses.append({"functionResponse": response})
            rest += [_media_out(p) for p in part.content if isinstance(p, MediaPart)]
        elif isinstance(part, TextPart):
            rest.append({"text": part.text})
        elif isinstance(part, MediaPart):
            rest.append(_media_out(part))
    return responses + rest


def _contents_out(messages: list[Message]) -> list[JSONObject]:
    turn_start = 0  # the last user turn that is more than tool results
    for i in range(len(messages) - 1, -1, -1):
        message = messages[i]
        if message.role is Role.USER and any(
            type(p) is not ToolResultPart for p in message.parts
        ):
            turn_start = i
            break
    out = []
    for i, message in enumerate(messages):
        if message.role is Role.ASSISTANT:
            parts = _model_parts(message, i > turn_start)
            role = "model"
        else:
            parts = _user_parts(message)
            role = "user"
        out.append({"role": role, "parts": parts or [{"text": "."}]})
    return out


def _declaration(tool: ToolSpec) -> JSONObject:
    if _TOOL_NAME.fullmatch(tool.name) is None:
        raise UnsupportedConversion(
            f"tool name {tool.name!r}: Gemini function names start with a letter or _ "
            "and use up to 64 of [a-zA-Z0-9_.:-]"
        )
    decl: JSONObject = {"name": tool.name}
    if tool.description:
        decl["description"] = tool.description
    params = to_gemini_schema(tool.parameters) if tool.parameters else None
    if params is not None:
        decl["parameters"] = params
    return decl


def _sampling_config(request: ChatRequest | PlainChat) -> JSONObject:
    config: JSONObject = {}
    if request.max_tokens is not None:
        config["maxOutputTokens"] = request.max_tokens
    if request.temperature is not None:
        config["temperature"] = request.temperature
    if request.top_p is not None:
        config["topP"] = request.top_p
    if request.top_k is not None:
        config["topK"] = request.top_k
    if request.seed is not None:
        config["seed"] = request.seed
    if request.presence_penalty is not None:
        config["presencePenalty"] = request.presence_penalty
    if request.frequency_penalty is not None:
        config["frequencyPenalty"] = request.frequency_penalty
    if request.stop:
        config["stopSequences"] = list(request.stop[:5])
    return config


def _generation_config(request: ChatRequest) -> JSONObject:
    config = _sampling_config(request)
    fmt = request.response_format
    if fmt is not None:
        config["responseMimeType"] = "application/json"
        schema = to_gemini_schema(fmt.schema) if fmt.schema else None
        if schema is not None:
            config["responseSchema"] = schema
    reasoning = request.reasoning
    if reasoning is not None:
        if not reasoning.enabled:
            config["thinkingConfig"] = {"thinkingBudget": 0}
        else:
            budget = reasoning.budget or EFFORT_BUDGETS.get(reasoning.effort or "", -1)
            thinking: JSONObject = {"thinkingBudget": budget}
            if reasoning.include_thoughts:
                thinking["includeThoughts"] = True
            config["thinkingConfig"] = thinking
    return config


def request_from_canonical(request: ChatRequest) -> JSONObject:
    hoisted, messages = normalise_history(request.messages)
    body: JSONObject = {"contents": _contents_out(messages)}
    system = [p.text for p in (*request.system, *hoisted) if p.text.strip()]
    if system:
        body["systemInstruction"] = {"parts": [{"text": t} for t in system]}
    if request.tools:
        body["tools"] = [{"functionDeclarations": [_declaration(t) for t in request.tools]}]
        choice = request.tool_choice
        if choice is not None:
            modes = {"auto": "AUTO", "none": "NONE", "required": "ANY", "tool": "ANY"}
            calling: JSONObject = {"mode": modes[choice.mode]}
            if choice.mode == "tool" and choice.name:
                calling["allowedFunctionNames"] = [choice.name]
            body["toolConfig"] = {"functionCallingConfig": calling}
    config = _generation_config(request)
    if config:
        body["generationConfig"] = config
    return body


def plain_request_out(chat: PlainChat) -> JSONObject:
    """What `request_from_canonical(chat.as_request())` writes, without building it: a
    plain chat already obeys the history rules (alternating, from the user, no blank
    text)."""
    body: JSONObject = {
        "contents": [
            {"role": _TURN_ROLES[i % 2], "parts": [{"text": text}]}
            for i, text in enumerate(chat.turns)
        ]
    }
    if chat.system:
        system = [{"text": t} for t in chat.system if t.strip()]
        if system:
            body["systemInstruction"] = {"parts": system}
    config = _sampling_config(chat)
    if config:
        body["generationConfig"] = config
    return body
