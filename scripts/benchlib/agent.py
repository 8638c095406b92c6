"""The `agent` payload: a coding agent's request, in each client protocol.

What Claude Code, Cline or gemini-cli send on every turn of a session: a long system
prompt, a set of tools with JSON schemas, and the whole conversation so far, tool calls
and their results included (~50 KB here: 16 tools, 20 tool rounds). The small payload
measures the proxy's fixed cost per request; this one measures what converting a real
request costs, since an agent resends and the proxy reconverts the whole history on
every turn.

The same conversation is written out in each protocol by hand, not by aiclient's
codecs, so the benchmark does not measure the proxy with its own output.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

__all__ = ["agent_request"]

_TOOLS = 16
_ROUNDS = 20
_SYSTEM = (
    "You are an interactive coding assistant. Use the tools available to you to "
    "read, search and edit the user's project; keep answers short and concrete. "
) * 60
_ENVIRONMENT = "Working directory: /home/user/project\nPlatform: linux\nShell: bash\n"
_TASK = (
    "The tests in tests/test_parser.py fail since the last change to the tokenizer. "
    "Find out why and fix it; run the tests afterwards. "
) * 4
_FILE = "".join(
    f"{n:>5}\tdef function_{n}(value: int) -> int: return value * {n}\n" for n in range(14)
)


# One edit of the edit list: the same in every protocol.
_EDIT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "old": {"type": "string"},
        "new": {"type": "string"},
        "all": {"type": "boolean", "default": False},
    },
    "required": ["old", "new"],
}


def _properties(i: int, limit: dict[str, Any], edit: dict[str, Any]) -> dict[str, Any]:
    return {
        "path": {"type": "string", "description": f"The absolute path to use ({i})."},
        "offset": {"type": "integer", "minimum": 0, "description": "First line."},
        "limit": {"type": "integer", **limit},
        "mode": {"type": "string", "enum": ["read", "write", "append"]},
        "edits": {"type": "array", "items": edit},
    }


def _schema(i: int) -> dict[str, Any]:
    """Tool i's input schema, shaped like the ones agents send (draft-07 header,
    additionalProperties, enums, bounds, arrays of objects)."""
    edit = {**_EDIT, "additionalProperties": False}
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "additionalProperties": False,
        "properties": _properties(i, {"exclusiveMinimum": 0}, edit),
        "required": ["path"],
    }


def _gemini_schema(i: int) -> dict[str, Any]:
    """Tool i's schema as a Gemini client writes it (Gemini's OpenAPI subset)."""
    return {
        "type": "object",
        "properties": _properties(i, {"minimum": 1}, _EDIT),
        "required": ["path"],
    }


def _tool_name(i: int) -> str:
    return f"tool_{i}"


def _description(i: int) -> str:
    return f"Tool {i}: reads, searches or edits files in the project. " * 12


def _arguments(r: int) -> dict[str, Any]:
    return {"path": f"/home/user/project/src/module_{r}.py", "offset": r * 10, "limit": 40}


def _claude(model: str, stream: bool) -> dict[str, Any]:
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": [{"type": "text", "text": _TASK}]}
    ]
    for r in range(_ROUNDS):
        call_id = f"toolu_{r:04d}"
        messages.append(
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": f"Let me look at module {r}."},
                    {
                        "type": "tool_use",
                        "id": call_id,
                        "name": _tool_name(r % _TOOLS),
                        "input": _arguments(r),
                    },
                ],
            }
        )
        messages.append(
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": call_id, "content": _FILE}
                ],
            }
        )
    messages[-1]["content"].append(
        {"type": "text", "text": "Go on.", "cache_control": {"type": "ephemeral"}}
    )
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": 32000,
        "system": [
            {"type": "text", "text": _SYSTEM},
            {"type": "text", "text": _ENVIRONMENT, "cache_control": {"type": "ephemeral"}},
        ],
        "tools": [
            {
                "name": _tool_name(i),
                "description": _description(i),
                "input_schema": _schema(i),
            }
            for i in range(_TOOLS)
        ],
        "messages": messages,
        "metadata": {"user_id": "bench-user"},
    }
    if stream:
        body["stream"] = True
    return body


def _openai(model: str, stream: bool) -> dict[str, Any]:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": _SYSTEM + "\n" + _ENVIRONMENT},
        {"role": "user", "content": _TASK},
    ]
    for r in range(_ROUNDS):
        call_id = f"call_{r:04d}"
        messages.append(
            {
                "role": "assistant",
                "content": f"Let me look at module {r}.",
                "tool_calls": [
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {
                            "name": _tool_name(r % _TOOLS),
                            "arguments": json.dumps(_arguments(r)),
                        },
                    }
                ],
            }
        )
        messages.append({"role": "tool", "tool_call_id": call_id, "content": _FILE})
    messages.append({"role": "user", "content": "Go on."})
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": 32000,
        "messages": messages,
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": _tool_name(i),
                    "description": _description(i),
                    "parameters": _schema(i),
                },
            }
            for i in range(_TOOLS)
        ],
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def _gemini() -> dict[str, Any]:
    contents: list[dict[str, Any]] = [{"role": "user", "parts": [{"text": _TASK}]}]
    for r in range(_ROUNDS):
        name = _tool_name(r % _TOOLS)
        contents.append(
            {
                "role": "model",
                "parts": [
                    {"text": f"Let me look at module {r}."},
                    {"functionCall": {"name": name, "args": _arguments(r)}},
                ],
            }
        )
        contents.append(
            {
                "role": "user",
                "parts": [
                    {"functionResponse": {"name": name, "response": {"output": _FILE}}}
                ],
            }
        )
    contents[-1]["parts"].append({"text": "Go on."})
    return {
        "contents": contents,
        "systemInstruction": {"parts": [{"text": _SYSTEM}, {"text": _ENVIRONMENT}]},
        "tools": [
            {
                "functionDeclarations": [
                    {
                        "name": _tool_name(i),
                        "description": _description(i),
                        "parameters": _gemini_schema(i),
                    }
                    for i in range(_TOOLS)
                ]
            }
        ],
        "generationConfig": {"maxOutputTokens": 32000},
    }


@cache
def agent_request(protocol: str, *, stream: bool, model: str) -> bytes:
    """The agent's request as a client of `protocol` sends it (a Gemini client names
    the model and whether it streams in the URL)."""
    if protocol == "gemini":
        body = _gemini()
    elif protocol == "openai":
        body = _openai(model, stream)
    else:
        body = _claude(model, stream)
    return json.dumps(body, separators=(",", ":")).encode()
