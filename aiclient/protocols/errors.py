"""Render an AiclientError in a client protocol's error shape, before or inside a stream.

Before a response starts: a real HTTP status with the protocol's JSON error body. After a
stream started: the protocol's in-band error event. An upstream's own error body is relayed
verbatim when it already speaks the client's protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from ..errors import AiclientError, UpstreamHTTPError
from ..sse import SSEEvent, encode_sse
from . import ApiProtocol

__all__ = [
    "ErrorReply",
    "error_payload",
    "render_error",
    "stream_error_event",
    "upstream_message",
]

_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}
_CLAUDE_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_GEMINI_STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_COPIED_HEADERS = ("retry-after", "retry-after-ms")


@dataclass(frozen=True, slots=True)
class ErrorReply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


def upstream_message(err: UpstreamHTTPError) -> str:
    """The message of an upstream error body in any of the three shapes, or its text."""
    try:
        data: Any = orjson.loads(err.body)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, list) and data:  # Gemini sometimes wraps errors in a list
        data = data[0]
    if isinstance(data, dict):
        inner = data.get("error")
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return str(inner["message"])
        if isinstance(inner, str):
            return inner
        if isinstance(data.get("message"), str):
            return str(data["message"])
    text = err.body.decode("utf-8", "replace").strip()
    return text[:500] or f"upstream answered HTTP {err.upstream_status}"


def _error_object(
    protocol: ApiProtocol | None, status: int, kind: str, message: str
) -> dict[str, Any]:
    if protocol is ApiProtocol.CLAUDE:
        claude_type = _CLAUDE_TYPES.get(status) or (
            "api_error" if status >= 500 else "invalid_request_error"
        )
        return {"type": "error", "error": {"type": claude_type, "message": message}}
    if protocol is ApiProtocol.GEMINI:
        gemini_status = _GEMINI_STATUSES.get(status) or (
            "INTERNAL" if status >= 500 else "FAILED_PRECONDITION"
        )
        return {"error": {"code": status, "message": message, "status": gemini_status}}
    openai_type = _OPENAI_TYPES.get(status) or ("server_error" if status >= 500 else kind)
    code = "model_not_found" if status == 404 and kind == "model_not_found" else None
    return {"error": {"message": message, "type": openai_type, "param": None, "code": code}}


def _client_status(protocol: ApiProtocol | None, status: int) -> int:
    # 529 is Anthropic's "overloaded"; other clients know it as 503.
    if status == 529 and protocol is not ApiProtocol.CLAUDE:
        return 503
    return status


def render_error(
    protocol: ApiProtocol | None,
    err: AiclientError,
    *,
    upstream_protocol: ApiProtocol | None = None,
) -> ErrorReply:
    """The HTTP reply for `err` in `protocol`'s shape (OpenAI's when None)."""
    headers: dict[str, str] = {}
    if isinstance(err, UpstreamHTTPError):
        for name in _COPIED_HEADERS:
            if name in err.headers:
                headers[name] = err.headers[name]
        if upstream_protocol is not None and upstream_protocol == protocol and err.body:
            ctype = err.headers.get("content-type", "application/json")
            return ErrorReply(err.upstream_status, err.body, headers, ctype)
        status = _client_status(protocol, err.upstream_status)
        message = upstream_message(err)
    else:
        status = _client_status(protocol, err.http_status)
        message = err.message
    body = orjson.dumps(_error_object(protocol, status, err.kind, message))
    return ErrorReply(status, body, headers)


def error_payload(protocol: ApiProtocol | None, err: AiclientError) -> SSEEvent:
    """The in-band error event that ends a stream which already started."""
    status = _client_status(protocol, err.http_status if err.http_status >= 400 else 500)
    message = upstream_message(err) if isinstance(err, UpstreamHTTPError) else err.message
    payload = orjson.dumps(_error_object(protocol, status, err.kind, message)).decode()
    return SSEEvent("error" if protocol is ApiProtocol.CLAUDE else None, payload)


def stream_error_event(protocol: ApiProtocol | None, err: AiclientError) -> bytes:
    """The in-band SSE error event that ends a stream which already started."""
    return encode_sse(error_payload(protocol, err))
