"""Values and pure helpers shared by the fake upstreams (no I/O here)."""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = [
    "Answer",
    "JSONAnswer",
    "JSONObject",
    "RawAnswer",
    "RecordedRequest",
    "Rejected",
    "SSEAnswer",
    "SSEEvent",
    "encode_sse",
    "estimate_tokens",
    "mentions_weather",
    "new_id",
    "sample_arguments",
    "split_text",
]

JSONObject = dict[str, Any]
SSEEvent = tuple[str | None, JSONObject | str]
"""`(event name or None, data)`; a dict is JSON-encoded, a str is sent verbatim."""


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the fake received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case keys
    body: bytes
    json: Any  # parsed body, or None when it is empty or not JSON


@dataclass(frozen=True, slots=True)
class JSONAnswer:
    body: JSONObject
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SSEAnswer:
    events: Sequence[SSEEvent]
    headers: Mapping[str, str] = field(default_factory=dict)
    drop_after: int | None = None  # close the socket after this many events


@dataclass(frozen=True, slots=True)
class RawAnswer:
    body: bytes
    status: int = 200
    content_type: str = "application/json"


Answer = JSONAnswer | SSEAnswer | RawAnswer


class Rejected(Exception):
    """Raised by request validators; carries the error answer to send."""

    def __init__(self, answer: JSONAnswer) -> None:
        super().__init__(answer.body)
        self.answer = answer


def encode_sse(event: str | None, data: JSONObject | str) -> bytes:
    """Encode one SSE event with `\\n` line endings and a blank-line terminator."""
    payload = data.encode() if isinstance(data, str) else orjson.dumps(data)
    head = b"event: " + event.encode() + b"\n" if event is not None else b""
    return head + b"data: " + payload + b"\n\n"


def split_text(text: str, pieces: int) -> list[str]:
    """Split `text` into `min(pieces, len(text))` non-empty, nearly equal parts."""
    count = max(1, min(pieces, len(text)))
    size, extra = divmod(len(text), count)
    parts: list[str] = []
    start = 0
    for i in range(count):
        end = start + size + (1 if i < extra else 0)
        parts.append(text[start:end])
        start = end
    return parts


def estimate_tokens(text: str) -> int:
    """Deterministic stand-in for a tokenizer (about four characters a token)."""
    return max(1, (len(text) + 3) // 4)


def new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


def mentions_weather(text: str) -> bool:
    return re.search(r"\bweather\b", text, re.IGNORECASE) is not None


def sample_arguments(schema: object) -> JSONObject:
    """Arguments satisfying a JSON schema's required properties (shallowly)."""
    if not isinstance(schema, dict):
        return {}
    props = schema.get("properties")
    props = props if isinstance(props, dict) else {}
    required = schema.get("required")
    keys = required if isinstance(required, list) else list(props)
    return {str(key): _sample_value(props.get(key)) for key in keys}


def _sample_value(spec: object) -> object:
    if not isinstance(spec, dict):
        return "Paris"
    enum = spec.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    kind = spec.get("type")
    samples: dict[str, object] = {
        "integer": 1,
        "number": 1.5,
        "boolean": True,
        "array": [],
        "object": sample_arguments(spec),
        "null": None,
    }
    return samples.get(kind, "Paris") if isinstance(kind, str) else "Paris"
