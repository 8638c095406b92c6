"""Request validation for the fake OpenAI upstream, as api.openai.com does it.

Validators raise `Rejected` carrying a ready 4xx answer in OpenAI's error shape
(`{"error": {"message", "type", "param", "code"}}`).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

import orjson

from .common import JSONAnswer, JSONObject, RecordedRequest, Rejected, new_id

__all__ = ["check_bearer", "check_chat_body", "error", "no_model"]

_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_ROLES = ("system", "developer", "user", "assistant", "tool", "function")
_PART_TYPES = {
    "system": {"text"},
    "developer": {"text"},
    "user": {"text", "image_url", "input_audio", "file"},
    "assistant": {"text", "refusal"},
    "tool": {"text"},
    "function": {"text"},
}
_NOT_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means"
    " you aren't using your HTTP library correctly. The OpenAI API expects a JSON"
    " payload, but what was sent was not valid JSON.)"
)


def error(
    status: int,
    message: str,
    param: str | None = None,
    code: str | None = None,
    kind: str = "invalid_request_error",
) -> Rejected:
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return Rejected(JSONAnswer(body, status, {"x-request-id": new_id("req_")}))


def _type_name(value: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "a number"
    return names.get(type(value), "an unknown value")


def _invalid_type(param: str, expected: str, value: object) -> Rejected:
    message = (
        f"Invalid type for '{param}': expected {expected}, "
        f"but got {_type_name(value)} instead."
    )
    return error(400, message, param, "invalid_type")


def _missing(param: str) -> Rejected:
    message = f"Missing required parameter: '{param}'."
    return error(400, message, param, "missing_required_parameter")


def no_model(model: str) -> Rejected:
    message = f"The model `{model}` does not exist or you do not have access to it."
    return error(404, message, None, "model_not_found")


def check_bearer(request: RecordedRequest, api_keys: Collection[str]) -> None:
    """401 unless `Authorization: Bearer <key>` names one of `api_keys`."""
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise error(
            401,
            "You didn't provide an API key. You need to provide your API key in an"
            " Authorization header using Bearer auth (i.e. Authorization: Bearer"
            " YOUR_KEY).",
        )
    if key.strip() not in api_keys:
        raise error(401, "Incorrect API key provided", None, "invalid_api_key")


def check_chat_body(
    request: RecordedRequest, unknown_models: Collection[str]
) -> JSONObject:
    """Return the parsed chat.completions body or raise `Rejected`."""
    try:
        body: Any = orjson.loads(request.body)
    except orjson.JSONDecodeError:
        raise error(400, _NOT_JSON) from None
    if not isinstance(body, dict):
        raise error(400, _NOT_JSON)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise error(400, "you must provide a model parameter")
    if model in unknown_models:
        raise no_model(model)
    _check_messages(body.get("messages"))
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _invalid_type("stream", "a boolean", stream)
    options = body.get("stream_options")
    if options is not None:
        if stream is not True:
            raise error(
                400,
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                "stream_options",
            )
        if not isinstance(options, dict):
            raise _invalid_type("stream_options", "an object", options)
    _check_tools(body.get("tools"), body.get("tool_choice"))
    return body


def _check_messages(messages: object) -> None:
    if messages is None:
        raise _missing("messages")
    if not isinstance(messages, list):
        raise _invalid_type("messages", "an array", messages)
    if not messages:
        raise error(
            400,
            "Invalid 'messages': empty array. Expected an array with minimum length 1,"
            " but got an empty array instead.",
            "messages",
            "empty_array",
        )
    pending: list[str] = []  # tool_call ids still waiting for their tool message
    pending_from = 0
    for i, message in enumerate(messages):
        role = _check_role(message, i)
        if pending and role != "tool":
            raise _dangling(pending, pending_from)
        if role == "tool":
            _answer_pending(message, i, pending)
        content = message.get("content")
        if role == "assistant" and message.get("tool_calls") is not None:
            pending = _check_tool_calls(message["tool_calls"], f"messages[{i}]")
            pending_from = i
        elif content is None and not (role == "assistant" and "function_call" in message):
            raise _missing(f"messages[{i}].content")
        if content is not None:
            _check_content(content, f"messages[{i}].content", _PART_TYPES[role])
    if pending:
        raise _dangling(pending, pending_from)


def _check_role(message: object, i: int) -> str:
    where = f"messages[{i}]"
    if not isinstance(message, dict):
        raise _invalid_type(where, "an object", message)
    role = message.get("role")
    if role is None:
        raise _missing(f"{where}.role")
    if role not in _ROLES:
        supported = ", ".join(f"'{r}'" for r in _ROLES)
        raise error(
            400,
            f"Invalid value: '{role}'. Supported values are: {supported}.",
            f"{where}.role",
            "invalid_value",
        )
    return str(role)


def _answer_pending(message: JSONObject, i: int, pending: list[str]) -> None:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str):
        raise _missing(f"messages[{i}].tool_call_id")
    if call_id not in pending:
        raise error(
            400,
            "Invalid parameter: messages with role 'tool' must be a response"
            " to a preceeding message with 'tool_calls'.",
            f"messages.[{i}].role",
        )
    pending.remove(call_id)


def _dangling(ids: list[str], index: int) -> Rejected:
    return error(
        400,
        "An assistant message with 'tool_calls' must be followed by tool messages"
        " responding to each 'tool_call_id'. The following tool_call_ids did not"
        f" have response messages: {', '.join(ids)}",
        f"messages.[{index}].role",
    )


def _check_content(content: object, where: str, part_types: set[str]) -> None:
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise _invalid_type(where, "one of a string or array of objects", content)
    for j, part in enumerate(content):
        if not isinstance(part, dict):
            raise _invalid_type(f"{where}[{j}]", "an object", part)
        kind = part.get("type")
        if kind not in part_types:
            supported = ", ".join(f"'{t}'" for t in sorted(part_types))
            raise error(
                400,
                f"Invalid value: '{kind}'. Supported values are: {supported}.",
                f"{where}[{j}].type",
                "invalid_value",
            )
        if kind == "text" and not isinstance(part.get("text"), str):
            raise _missing(f"{where}[{j}].text")


def _check_tool_calls(calls: object, where: str) -> list[str]:
    if not isinstance(calls, list):
        raise _invalid_type(f"{where}.tool_calls", "an array", calls)
    ids: list[str] = []
    for k, call in enumerate(calls):
        at = f"{where}.tool_calls[{k}]"
        if not isinstance(call, dict):
            raise _invalid_type(at, "an object", call)
        if not isinstance(call.get("id"), str):
            raise _missing(f"{at}.id")
        if call.get("type") != "function":
            raise _missing(f"{at}.type")
        function = call.get("function")
        if not isinstance(function, dict):
            raise _missing(f"{at}.function")
        if not isinstance(function.get("name"), str):
            raise _missing(f"{at}.function.name")
        arguments = function.get("arguments")
        if not isinstance(arguments, str):
            raise _invalid_type(f"{at}.function.arguments", "a string", arguments)
        ids.append(call["id"])
    return ids


def _check_tools(tools: object, choice: object) -> None:
    names: set[str] = set()
    if tools is not None:
        if not isinstance(tools, list):
            raise _invalid_type("tools", "an array", tools)
        for k, tool in enumerate(tools):
            if not isinstance(tool, dict) or tool.get("type") != "function":
                raise _missing(f"tools[{k}].type")
            function = tool.get("function")
            if not isinstance(function, dict):
                raise _missing(f"tools[{k}].function")
            name = function.get("name")
            if not isinstance(name, str):
                raise _missing(f"tools[{k}].function.name")
            if _TOOL_NAME.fullmatch(name) is None:
                raise error(
                    400,
                    f"Invalid 'tools[{k}].function.name': string does not match"
                    " pattern. Expected a string that matches the pattern"
                    " '^[a-zA-Z0-9_-]+$'.",
                    f"tools[{k}].function.name",
                    "invalid_value",
                )
            names.add(name)
    if choice is None:
        return
    if not names:
        raise error(
            400,
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when"
            " 'tools' are specified.",
            "tool_choice",
        )
    if choice in ("none", "auto", "required"):
        return
    function = choice.get("function") if isinstance(choice, dict) else None
    wanted = function.get("name") if isinstance(function, dict) else None
    if wanted not in names:
        raise error(
            400,
            f"Invalid value for 'tool_choice': tool '{wanted}' is not among 'tools'.",
            "tool_choice",
            "invalid_value",
        )
