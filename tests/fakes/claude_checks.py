"""Request validation for the fake Anthropic upstream, as api.anthropic.com does it.

Validators raise `Rejected` carrying a ready 4xx answer in Anthropic's error
shape (`{"type": "error", "error": {"type", "message"}, "request_id"}`).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

import orjson

from .common import JSONAnswer, JSONObject, RecordedRequest, Rejected, new_id

__all__ = ["check_headers", "check_request", "error"]

_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,128}")
_TOOL_ID = re.compile(r"[a-zA-Z0-9_-]+")
_BLOCK_TYPES = {
    "text", "image", "document", "search_result", "tool_use", "tool_result",
    "thinking", "redacted_thinking", "server_tool_use", "web_search_tool_result",
}  # fmt: skip


def error(status: int, message: str, kind: str = "invalid_request_error") -> Rejected:
    request_id = new_id("req_")
    body = {
        "type": "error",
        "error": {"type": kind, "message": message},
        "request_id": request_id,
    }
    return Rejected(JSONAnswer(body, status, {"request-id": request_id}))


def _bad(message: str) -> Rejected:
    return error(400, message)


def check_headers(
    request: RecordedRequest, api_keys: Collection[str], *, allow_bearer: bool = True
) -> None:
    """401 unless `x-api-key` (or `Authorization: Bearer`) names one of `api_keys`;
    400 without an `anthropic-version` header.

    anthropic-sdk-python 2.x sends its api_key as `Authorization: Bearer`, so
    bearer auth is accepted unless `allow_bearer` is False.
    """
    key = request.headers.get("x-api-key")
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if not key and allow_bearer and scheme.lower() == "bearer":
        key = token.strip()
    if not key:
        raise error(401, "x-api-key header is required", "authentication_error")
    if key not in api_keys:
        raise error(401, "invalid x-api-key", "authentication_error")
    if not request.headers.get("anthropic-version"):
        raise _bad("anthropic-version: header is required")


def check_request(
    request: RecordedRequest,
    api_keys: Collection[str],
    unknown_models: Collection[str],
    *,
    needs_max_tokens: bool,
    allow_bearer: bool = True,
) -> JSONObject:
    """Return the parsed Messages (or count_tokens) body or raise `Rejected`."""
    check_headers(request, api_keys, allow_bearer=allow_bearer)
    try:
        body: Any = orjson.loads(request.body)
    except orjson.JSONDecodeError:
        raise _bad("There was an issue with the formatting of your request body.") from None
    if not isinstance(body, dict):
        raise _bad("Input should be a valid dictionary or object")
    model = body.get("model")
    if model is None:
        raise _bad("model: Field required")
    if not isinstance(model, str):
        raise _bad("model: Input should be a valid string")
    if needs_max_tokens:
        if "max_tokens" not in body:
            raise _bad("max_tokens: Field required")
        _check_max_tokens(body["max_tokens"])
    _check_messages(body.get("messages"))
    _check_system(body.get("system"))
    if "stream" in body and not isinstance(body["stream"], bool):
        raise _bad("stream: Input should be a valid boolean")
    temperature = body.get("temperature")
    if isinstance(temperature, int | float) and not 0 <= temperature <= 1:
        raise _bad("temperature: Input should be less than or equal to 1")
    _check_tools(body.get("tools"), body.get("tool_choice"))
    if model in unknown_models:
        raise error(404, f"model: {model}", "not_found_error")
    return body


def _check_max_tokens(value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _bad("max_tokens: Input should be a valid integer")
    if value < 1:
        raise _bad("max_tokens: Input should be greater than or equal to 1")


def _check_messages(messages: object) -> None:
    if messages is None:
        raise _bad("messages: Field required")
    if not isinstance(messages, list):
        raise _bad("messages: Input should be a valid list")
    if not messages:
        raise _bad("messages: at least one message is required")
    open_uses: list[str] = []  # tool_use ids of the previous assistant message
    last = len(messages) - 1
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _bad(f"messages.{i}: Input should be a valid dictionary")
        role = message.get("role")
        if role not in ("user", "assistant"):
            raise _bad(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        if i == 0 and role != "user":
            raise _bad('messages: first message must use the "user" role')
        blocks = _blocks_of(message, i, final_assistant=role == "assistant" and i == last)
        uses, results = _check_blocks(blocks, i, role)
        if role == "user":
            for j, used_id in results:
                if used_id not in open_uses:
                    raise _bad(
                        f"messages.{i}.content.{j}: unexpected `tool_use_id` found in"
                        f" `tool_result` blocks: {used_id}. Each `tool_result` block"
                        " must have a corresponding `tool_use` block in the previous"
                        " message."
                    )
        answered = {used_id for _, used_id in results}
        missing = [u for u in open_uses if u not in answered]
        if missing:
            raise _unanswered(i - 1, missing)
        open_uses = uses
    if open_uses:
        raise _unanswered(last, open_uses)


def _unanswered(index: int, ids: list[str]) -> Rejected:
    return _bad(
        f"messages.{index}: `tool_use` ids were found without `tool_result` blocks"
        f" immediately after: {', '.join(ids)}. Each `tool_use` block must have a"
        " corresponding `tool_result` block in the next message."
    )


def _blocks_of(message: JSONObject, i: int, *, final_assistant: bool) -> list[Any]:
    if "content" not in message:
        raise _bad(f"messages.{i}.content: Field required")
    content = message["content"]
    if isinstance(content, str):
        blocks: list[Any] = [{"type": "text", "text": content}] if content else []
    elif isinstance(content, list):
        blocks = content
    else:
        raise _bad(f"messages.{i}.content: Input should be a valid list")
    if not blocks and not final_assistant:
        raise _bad(
            f"messages.{i}: all messages must have non-empty content except for the"
            " optional final assistant message"
        )
    if final_assistant and blocks and isinstance(blocks[-1], dict):
        text = blocks[-1].get("text")
        if isinstance(text, str) and text != text.rstrip():
            raise _bad(
                "messages: final assistant content cannot end with trailing whitespace"
            )
    return blocks


def _check_blocks(
    blocks: list[Any], i: int, role: str
) -> tuple[list[str], list[tuple[int, str]]]:
    uses: list[str] = []
    results: list[tuple[int, str]] = []
    for j, block in enumerate(blocks):
        where = f"messages.{i}.content.{j}"
        if not isinstance(block, dict):
            raise _bad(f"{where}: Input should be a valid dictionary")
        kind = block.get("type")
        if not isinstance(kind, str) or kind not in _BLOCK_TYPES:
            raise _bad(
                f"{where}: Input tag '{kind}' found using 'type' does not match any of"
                " the expected tags"
            )
        if kind == "text":
            _check_text(block.get("text"), f"{where}.text", "messages")
        elif kind == "tool_use":
            if role != "assistant":
                raise _bad(
                    f"{where}: tool_use blocks are only allowed in assistant messages"
                )
            block_id = block.get("id")
            if not isinstance(block_id, str) or _TOOL_ID.fullmatch(block_id) is None:
                raise _bad(f"{where}.id: String should match pattern '^[a-zA-Z0-9_-]+$'")
            if not isinstance(block.get("name"), str):
                raise _bad(f"{where}.name: Field required")
            if not isinstance(block.get("input"), dict):
                raise _bad(f"{where}.input: Input should be a valid dictionary")
            uses.append(block_id)
        elif kind == "tool_result":
            if role != "user":
                raise _bad(f"{where}: tool_result blocks are only allowed in user messages")
            used_id = block.get("tool_use_id")
            if not isinstance(used_id, str):
                raise _bad(f"{where}.tool_use_id: Field required")
            results.append((j, used_id))
    return uses, results


def _check_text(text: object, where: str, scope: str) -> None:
    if not isinstance(text, str):
        raise _bad(f"{where}: Input should be a valid string")
    if not text:
        raise _bad(f"{scope}: text content blocks must be non-empty")
    if not text.strip():
        raise _bad(f"{scope}: text content blocks must contain non-whitespace text")


def _check_system(system: object) -> None:
    if system is None or isinstance(system, str):
        return
    if not isinstance(system, list):
        raise _bad("system: Input should be a valid list")
    for k, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise _bad(f"system.{k}.type: Input should be 'text'")
        _check_text(block.get("text"), f"system.{k}.text", "system")


def _check_tools(tools: object, choice: object) -> None:
    names: list[str] = []
    if tools is not None:
        if not isinstance(tools, list):
            raise _bad("tools: Input should be a valid list")
        for k, tool in enumerate(tools):
            if not isinstance(tool, dict):
                raise _bad(f"tools.{k}: Input should be a valid dictionary")
            names.append(_check_tool(tool, k))
        if len(set(names)) != len(names):
            raise _bad("tools: Tool names must be unique.")
    if choice is None:
        return
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind not in ("auto", "any", "tool", "none"):
        raise _bad(
            "tool_choice: Input tag found using 'type' does not match any of the"
            " expected tags: 'auto', 'any', 'tool', 'none'"
        )
    if kind == "tool":
        assert isinstance(choice, dict)
        if choice.get("name") not in names:
            raise _bad(
                f"tool_choice.tool.name: tool '{choice.get('name')}' not found in tools"
            )


def _check_tool(tool: JSONObject, k: int) -> str:
    kind = tool.get("type")
    name = tool.get("name")
    if kind not in (None, "custom"):  # a server tool such as web_search_20250305
        if not isinstance(name, str):
            raise _bad(f"tools.{k}.name: Field required")
        return name
    where = f"tools.{k}.custom"
    if not isinstance(name, str):
        raise _bad(f"{where}.name: Field required")
    if _TOOL_NAME.fullmatch(name) is None:
        raise _bad(f"{where}.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'")
    schema = tool.get("input_schema")
    if schema is None:
        raise _bad(f"{where}.input_schema: Field required")
    if not isinstance(schema, dict):
        raise _bad(f"{where}.input_schema: Input should be a valid dictionary")
    if schema.get("type") != "object":
        raise _bad(f"{where}.input_schema.type: Input should be 'object'")
    return name
