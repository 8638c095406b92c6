"""Fake Anthropic Messages upstream (`POST /v1/messages`, count_tokens, models).

Checks `x-api-key`, `anthropic-version` and the request rules the real API
enforces (protocols.md §4.1-4.2) with Anthropic's error body, and answers with a
canned text or a tool_use block, as a Message or the event sequence of §4.4.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from .claude_checks import check_headers, check_request, error
from .common import (
    Answer,
    JSONAnswer,
    JSONObject,
    RecordedRequest,
    Rejected,
    SSEAnswer,
    SSEEvent,
    estimate_tokens,
    mentions_weather,
    new_id,
    sample_arguments,
    split_text,
)
from .upstream import FakeUpstream

__all__ = ["FakeClaude"]

_DEFAULT_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Your credit balance is too low."),
    403: ("permission_error", "Your API key does not have permission to use this."),
    404: ("not_found_error", "Not found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of requests has exceeded your rate limit."),
    500: ("api_error", "Internal server error"),
    504: ("timeout_error", "Request timed out"),
    529: ("overloaded_error", "Overloaded"),
}


class FakeClaude(FakeUpstream):
    """Fake `api.anthropic.com`: `POST /v1/messages[/count_tokens]`, `GET /v1/models`.

    Attributes (besides FakeUpstream's): `api_keys` accepted in `x-api-key` (or
    `Authorization: Bearer` while `allow_bearer` is True, which is what
    anthropic-sdk-python 2.x sends); `models`; `unknown_models` answered with 404
    `not_found_error`; `force_tool_call` `(name, arguments_json_object)`. As in
    FakeOpenAI, "weather" in the last user message with `tools` (or `tool_choice`
    any/tool) yields a `tool_use` block.
    """

    name = "Claude"

    def __init__(
        self,
        api_keys: Iterable[str] = ("sk-ant-test",),
        models: Sequence[str] = ("claude-sonnet-4-6", "claude-haiku-4-5"),
    ) -> None:
        super().__init__(api_keys, models)
        self.allow_bearer = True  # False: only `x-api-key` authenticates
        router = self.app.router
        router.add_post("/v1/messages", self.generation_route(self.answer_messages))
        router.add_post("/v1/messages/count_tokens", self.plain_route(self.answer_count))
        router.add_get("/v1/models", self.plain_route(self.answer_models))
        router.add_get("/v1/models/{model_id}", self.plain_route(self.answer_model))

    def error_body(self, status: int) -> JSONObject:
        fallback = "api_error" if status >= 500 else "invalid_request_error"
        kind, message = _DEFAULT_ERRORS.get(status, (fallback, f"HTTP {status}"))
        return {"type": "error", "error": {"type": kind, "message": message}}

    # -- routes ------------------------------------------------------------------

    def answer_models(self, request: RecordedRequest) -> Answer:
        try:
            check_headers(request, self.api_keys, allow_bearer=self.allow_bearer)
        except Rejected as exc:
            return exc.answer
        data = [_model_object(m) for m in self.models]
        return JSONAnswer(
            {
                "data": data,
                "has_more": False,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
            }
        )

    def answer_model(self, request: RecordedRequest) -> Answer:
        model = request.path.removeprefix("/v1/models/")
        try:
            check_headers(request, self.api_keys, allow_bearer=self.allow_bearer)
            if model not in self.models:
                raise error(404, f"model: {model}", "not_found_error")
        except Rejected as exc:
            return exc.answer
        return JSONAnswer(_model_object(model))

    def answer_count(self, request: RecordedRequest) -> Answer:
        try:
            body = check_request(
                request,
                self.api_keys,
                self.unknown_models,
                needs_max_tokens=False,
                allow_bearer=self.allow_bearer,
            )
        except Rejected as exc:
            return exc.answer
        return JSONAnswer({"input_tokens": _input_tokens(body)})

    def answer_messages(self, request: RecordedRequest) -> Answer:
        try:
            body = check_request(
                request,
                self.api_keys,
                self.unknown_models,
                needs_max_tokens=True,
                allow_bearer=self.allow_bearer,
            )
        except Rejected as exc:
            return exc.answer
        call = self._tool_call(body)
        message_id = new_id("msg_")
        request_id = {"request-id": new_id("req_")}
        input_tokens = _input_tokens(body)
        if call is None:
            block: JSONObject = {"type": "text", "text": self.default_text}
            output_tokens = estimate_tokens(self.default_text)
        else:
            block = {
                "type": "tool_use",
                "id": new_id("toolu_"),
                "name": call[0],
                "input": orjson.loads(call[1]),
            }
            output_tokens = estimate_tokens(call[0] + call[1])
        stop_reason = "end_turn" if call is None else "tool_use"
        message: JSONObject = {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": [block],
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {
                "input_tokens": input_tokens,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": output_tokens,
                "service_tier": "standard",
            },
        }
        if body.get("stream") is not True:
            return JSONAnswer(message, 200, request_id)
        return SSEAnswer(self._events(message, call), request_id)

    # -- answer building ---------------------------------------------------------

    def _events(self, message: JSONObject, call: tuple[str, str] | None) -> list[SSEEvent]:
        usage = message["usage"]
        block = message["content"][0]
        start = {
            **message,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {**usage, "output_tokens": 1},
        }
        events: list[SSEEvent] = [
            ("message_start", {"type": "message_start", "message": start})
        ]

        def event(kind: str, **fields: Any) -> None:
            events.append((kind, {"type": kind, **fields}))

        if call is None:
            event(
                "content_block_start",
                index=0,
                content_block={"type": "text", "text": ""},
            )
            event("ping")
            for piece in split_text(block["text"], self.stream_chunks):
                event(
                    "content_block_delta",
                    index=0,
                    delta={"type": "text_delta", "text": piece},
                )
        else:
            opening = {**block, "input": {}}
            event("content_block_start", index=0, content_block=opening)
            event("ping")
            for piece in ["", *split_text(call[1], 3)]:
                delta = {"type": "input_json_delta", "partial_json": piece}
                event("content_block_delta", index=0, delta=delta)
        event("content_block_stop", index=0)
        event(
            "message_delta",
            delta={"stop_reason": message["stop_reason"], "stop_sequence": None},
            usage={"output_tokens": usage["output_tokens"]},
        )
        event("message_stop")
        return events

    def _tool_call(self, body: JSONObject) -> tuple[str, str] | None:
        if self.force_tool_call is not None:
            return self.force_tool_call
        tools = [t for t in body.get("tools") or [] if "input_schema" in t]
        choice = body.get("tool_choice") or {"type": "auto"}
        if not tools or choice["type"] == "none":
            return None
        by_name = {t["name"]: t for t in tools}
        if choice["type"] == "tool":
            name = choice["name"]
            if name not in by_name:
                return None
        else:
            last = body["messages"][-1]
            asked = last["role"] == "user" and mentions_weather(_text_of(last["content"]))
            if choice["type"] != "any" and not asked:
                return None
            weather = [n for n in by_name if "weather" in n.lower()]
            name = weather[0] if weather else next(iter(by_name))
        arguments = sample_arguments(by_name[name]["input_schema"])
        return name, orjson.dumps(arguments).decode()


def _model_object(model: str) -> JSONObject:
    return {
        "type": "model",
        "id": model,
        "display_name": model.replace("-", " ").title(),
        "created_at": "2025-10-01T00:00:00Z",
    }


def _input_tokens(body: JSONObject) -> int:
    parts = [body.get("system"), body.get("messages"), body.get("tools")]
    return estimate_tokens(orjson.dumps(parts).decode())


def _text_of(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [b.get("text") for b in content if isinstance(b, dict)]
        return " ".join(t for t in texts if isinstance(t, str))
    return ""
