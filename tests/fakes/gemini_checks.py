"""Request validation for the fake Gemini upstream, as generativelanguage.googleapis.com
does it (protocols.md §5): proto field names only, roles user/model, non-empty parts,
function responses that answer the previous turn's calls by name and count, and the
function-declaration schema subset (§5.7).

Validators raise `Rejected` with Google's error body
(`{"error": {"code", "message", "status"}}`).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Collection
from typing import Any

import orjson

from .common import JSONAnswer, JSONObject, RecordedRequest, Rejected

__all__ = ["check_key", "check_request", "error"]

_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
           404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
           503: "UNAVAILABLE"}  # fmt: skip
_TOP = {"contents", "systemInstruction", "tools", "toolConfig", "safetySettings",
        "generationConfig", "cachedContent", "model"}  # fmt: skip
_PART_DATA = {"text", "inlineData", "fileData", "functionCall", "functionResponse",
              "executableCode", "codeExecutionResult"}  # fmt: skip
_PART_META = {"thought", "thoughtSignature", "videoMetadata", "partMetadata"}
_GENERATION = {"stopSequences", "candidateCount", "maxOutputTokens", "temperature", "topP",
               "topK", "seed", "presencePenalty", "frequencyPenalty", "responseMimeType",
               "responseSchema", "responseJsonSchema", "responseLogprobs", "logprobs",
               "responseModalities", "mediaResolution", "speechConfig",
               "thinkingConfig"}  # fmt: skip
_SCHEMA = {"type", "format", "title", "description", "nullable", "enum", "items",
           "properties", "required", "propertyOrdering", "minItems", "maxItems",
           "minProperties", "maxProperties", "minLength", "maxLength", "pattern",
           "minimum", "maximum", "default", "example", "anyOf"}  # fmt: skip
_TYPES = {"string", "number", "integer", "boolean", "array", "object"}
_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_.:-]{0,63}")
SKIP = "skip_thought_signature_validator"


def error(status: int, message: str) -> Rejected:
    body = {
        "error": {
            "code": status,
            "message": message,
            "status": _STATUS.get(status, "UNKNOWN"),
        }
    }
    return Rejected(JSONAnswer(body, status))


def _bad(message: str) -> Rejected:
    return error(400, message)


def _unknown(name: str, where: str) -> Rejected:
    return _bad(
        f"Invalid JSON payload received. Unknown name \"{name}\" at '{where}': "
        "Cannot find field."
    )


def check_key(request: RecordedRequest, api_keys: Collection[str]) -> None:
    key = request.headers.get("x-goog-api-key") or request.query.get("key")
    if not key:
        raise error(
            403,
            "Method doesn't allow unregistered callers (callers without established"
            " identity). Please use API Key or other form of API consumer identity.",
        )
    if key not in api_keys:
        raise error(400, "API key not valid. Please pass a valid API key.")


def _object(value: Any, where: str) -> JSONObject:
    if not isinstance(value, dict):
        raise _bad(f"Invalid value at '{where}': expected an object")
    return value


def _check_signature(value: Any, where: str) -> None:
    if value == SKIP:
        return
    try:
        base64.b64decode(str(value), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise _bad(f"Invalid value at '{where}.thought_signature' (TYPE_BYTES)") from None


def _check_part(raw: Any, where: str) -> JSONObject:
    part = _object(raw, where)
    for key in part:
        if key not in _PART_DATA | _PART_META:
            raise _unknown(key, where)
    data = [k for k in part if k in _PART_DATA]
    if len(data) != 1:
        raise _bad(f"{where}: a part needs exactly one data field, got {data or 'none'}")
    if "thoughtSignature" in part:
        _check_signature(part["thoughtSignature"], where)
    if "text" in part and not isinstance(part["text"], str):
        raise _bad(f"Invalid value at '{where}.text' (TYPE_STRING)")
    inline = part.get("inlineData")
    if inline is not None and not (
        isinstance(inline, dict)
        and inline.get("mimeType")
        and isinstance(inline.get("data"), str)
    ):
        raise _bad(f"{where}.inline_data: mime_type and data are required")
    response = part.get("functionResponse")
    if response is not None and not isinstance(
        _object(response, where).get("response"), dict
    ):
        raise _bad(f"{where}.function_response.response: must be a JSON object")
    return part


def _check_contents(contents: Any) -> None:
    if not isinstance(contents, list) or not contents:
        raise _bad("* GenerateContentRequest.contents: contents is not specified")
    calls: list[str] = []  # names called by the previous model turn
    for i, content in enumerate(contents):
        where = f"contents[{i}]"
        content = _object(content, where)
        for key in content:
            if key not in ("role", "parts"):
                raise _unknown(key, where)
        role = content.get("role", "user")
        if role not in ("user", "model"):
            raise _bad(f"Please use a valid role: user, model. Got {role!r} at {where}.")
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            raise _bad(
                f"* GenerateContentRequest.{where}.parts: contents.parts must not be empty."
            )
        checked = [_check_part(p, f"{where}.parts[{j}]") for j, p in enumerate(parts)]
        answers = [
            p["functionResponse"]["name"] for p in checked if "functionResponse" in p
        ]
        if (answers or (calls and role == "user")) and (
            role != "user" or sorted(answers) != sorted(calls)
        ):
            raise _bad(
                "Please ensure that the number of function response parts is equal to"
                " the number of function call parts of the function call turn."
            )
        calls = [p["functionCall"]["name"] for p in checked if "functionCall" in p]
        if calls and role != "model":
            raise _bad(f"{where}: function calls can only come from the model")


def _check_schema(schema: Any, where: str, root: bool) -> None:
    schema = _object(schema, where)
    for key, value in schema.items():
        if key not in _SCHEMA:
            raise _unknown(key, where)
        if key == "type":
            if isinstance(value, list):
                raise _bad(
                    "Invalid JSON payload received. Proto field is not repeating,"
                    f" cannot start list at '{where}.type'."
                )
            if str(value).lower() not in _TYPES:
                raise _bad(f"Invalid value at '{where}.type': {value!r}")
        if key == "enum" and not all(isinstance(v, str) for v in value):
            raise _bad(f"Invalid value at '{where}.enum': enum values must be strings")
    for name, prop in (schema.get("properties") or {}).items():
        _check_schema(prop, f"{where}.properties[{name}].value", False)
    if "items" in schema:
        _check_schema(schema["items"], f"{where}.items", False)
    for k, branch in enumerate(schema.get("anyOf") or ()):
        _check_schema(branch, f"{where}.any_of[{k}]", False)
    if (
        root
        and str(schema.get("type", "")).lower() == "object"
        and not schema.get("properties")
    ):
        raise _bad(
            f"* GenerateContentRequest.{where}.properties:"
            " should be non-empty for OBJECT type"
        )


def _check_tools(tools: Any) -> set[str]:
    names: set[str] = set()
    if tools is None:
        return names
    if not isinstance(tools, list):
        raise _bad("Invalid value at 'tools': expected a list")
    for t, tool in enumerate(tools):
        tool = _object(tool, f"tools[{t}]")
        for key in tool:
            if key not in (
                "functionDeclarations",
                "googleSearch",
                "codeExecution",
                "urlContext",
            ):
                raise _unknown(key, f"tools[{t}]")
        for d, decl in enumerate(tool.get("functionDeclarations") or ()):
            where = f"tools[{t}].function_declarations[{d}]"
            decl = _object(decl, where)
            for key in decl:
                if key not in ("name", "description", "parameters", "parametersJsonSchema",
                               "response", "responseJsonSchema", "behavior"):  # fmt: skip
                    raise _unknown(key, where)
            name = decl.get("name")
            if not isinstance(name, str) or _NAME.fullmatch(name) is None:
                raise _bad(f"* GenerateContentRequest.{where}.name: Invalid function name.")
            if "parameters" in decl and "parametersJsonSchema" in decl:
                raise _bad(f"{where}: parameters and parametersJsonSchema are exclusive")
            if "parameters" in decl:
                _check_schema(decl["parameters"], f"{where}.parameters", True)
            names.add(name)
    return names


def _check_config(config: Any, tool_config: Any, names: set[str]) -> None:
    if config is not None:
        for key in _object(config, "generation_config"):
            if key not in _GENERATION:
                raise _unknown(key, "generation_config")
        thinking = config.get("thinkingConfig") or {}
        if "thinkingLevel" in thinking and "thinkingBudget" in thinking:
            raise _bad("You cannot use both thinking_level and thinking_budget.")
        temperature = config.get("temperature")
        if isinstance(temperature, int | float) and not 0 <= temperature <= 2:
            raise _bad(
                "* GenerateContentRequest.generation_config.temperature: must be in [0, 2]"
            )
    if tool_config is not None:
        calling = _object(tool_config, "tool_config").get("functionCallingConfig") or {}
        mode = calling.get("mode")
        if mode not in (None, "AUTO", "ANY", "NONE", "VALIDATED"):
            raise _bad(
                f"Invalid value at 'tool_config.function_calling_config.mode': {mode}"
            )
        for name in calling.get("allowedFunctionNames") or ():
            if name not in names:
                raise _bad(f"allowed_function_names: {name} is not a declared function")


_OPAQUE = {"args", "response", "parametersJsonSchema", "responseJsonSchema", "default",
           "example", "enum"}  # fmt: skip


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.title() for word in rest)


def camel_case(value: Any, *, names: bool = False) -> Any:
    """Proto field names in camelCase (Google accepts snake_case spellings too); user
    data (call arguments, responses, raw JSON schemas, property names) untouched."""
    if isinstance(value, list):
        return [camel_case(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        field = key if names else _camel(key)
        if field in _OPAQUE:
            out[field] = item
        else:
            out[field] = camel_case(item, names=field == "properties")
    return out


def check_request(request: RecordedRequest, api_keys: Collection[str]) -> JSONObject:
    """Return the parsed GenerateContentRequest (in camelCase) or raise `Rejected`."""
    check_key(request, api_keys)
    try:
        body: Any = orjson.loads(request.body)
    except orjson.JSONDecodeError:
        raise _bad("Invalid JSON payload received.") from None
    body = camel_case(_object(body, "request"))
    assert isinstance(body, dict)
    for key in body:
        if key not in _TOP:
            raise _unknown(key, "request")
    _check_contents(body.get("contents"))
    system = body.get("systemInstruction")
    if system is not None:
        for j, part in enumerate(_object(system, "system_instruction").get("parts") or ()):
            _check_part(part, f"system_instruction.parts[{j}]")
    names = _check_tools(body.get("tools"))
    _check_config(body.get("generationConfig"), body.get("toolConfig"), names)
    return body
