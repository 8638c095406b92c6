"""Fake OpenAI Chat Completions upstream (`POST /v1/chat/completions`, models).

Checks auth and request shape the way api.openai.com does (400/401/404 with the
OpenAI error body) and answers with a canned text or a tool call, as a JSON
`chat.completion` or as the canonical chunk sequence of protocols.md §3.4, each chunk
padded with random characters (`obfuscation`) as the real API pads them unless
`stream_options.include_obfuscation` is false.
"""

from __future__ import annotations

import random
import string
import time
from collections.abc import Iterable, Sequence

import orjson

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
from .openai_checks import check_bearer, check_chat_body, no_model
from .upstream import FakeUpstream

__all__ = ["FakeOpenAI"]

_DEFAULT_ERRORS: dict[int, tuple[str, str, str | None]] = {
    400: ("Invalid request.", "invalid_request_error", None),
    401: ("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
    403: (
        "You are not allowed to access this resource.",
        "invalid_request_error",
        None,
    ),
    404: ("The model does not exist.", "invalid_request_error", "model_not_found"),
    429: (
        "Rate limit reached for requests. Please try again in 1s.",
        "requests",
        "rate_limit_exceeded",
    ),
    500: (
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
        None,
    ),
    503: (
        "The engine is currently overloaded, please try again later.",
        "server_error",
        None,
    ),
}


def _text_of(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


class FakeOpenAI(FakeUpstream):
    """Fake `api.openai.com`: `POST /v1/chat/completions`, `GET /v1/models[/{id}]`.

    Attributes (besides FakeUpstream's): `api_keys` accepted as `Bearer` keys;
    `models` listed by `/v1/models`; `unknown_models` answered with 404
    `model_not_found` (any other model name is accepted); `force_tool_call`
    `(name, arguments_json)` makes every answer that tool call. Otherwise a tool
    call is made when `tools` are sent and the last user message mentions
    "weather" (or `tool_choice` is "required" / names a function).
    """

    name = "OpenAI"

    def __init__(
        self,
        api_keys: Iterable[str] = ("sk-test",),
        models: Sequence[str] = ("gpt-4o-mini", "gpt-4.1"),
    ) -> None:
        super().__init__(api_keys, models)
        router = self.app.router
        router.add_post("/v1/chat/completions", self.generation_route(self.answer_chat))
        router.add_get("/v1/models", self.plain_route(self.answer_models))
        router.add_get("/v1/models/{model_id}", self.plain_route(self.answer_model))

    def error_body(self, status: int) -> JSONObject:
        fallback_kind = "server_error" if status >= 500 else "invalid_request_error"
        message, kind, code = _DEFAULT_ERRORS.get(
            status, (f"HTTP {status}", fallback_kind, None)
        )
        return {"error": {"message": message, "type": kind, "param": None, "code": code}}

    # -- routes ------------------------------------------------------------------

    def answer_models(self, request: RecordedRequest) -> Answer:
        try:
            check_bearer(request, self.api_keys)
        except Rejected as exc:
            return exc.answer
        data = [self._model_object(m) for m in self.models]
        return JSONAnswer({"object": "list", "data": data})

    def answer_model(self, request: RecordedRequest) -> Answer:
        model = request.path.removeprefix("/v1/models/")
        try:
            check_bearer(request, self.api_keys)
            if model not in self.models:
                raise no_model(model)
        except Rejected as exc:
            return exc.answer
        return JSONAnswer(self._model_object(model))

    def answer_chat(self, request: RecordedRequest) -> Answer:
        try:
            check_bearer(request, self.api_keys)
            body = check_chat_body(request, self.unknown_models)
        except Rejected as exc:
            return exc.answer
        call = self._tool_call(body)
        text = None if call is not None else self.default_text
        prompt_tokens = estimate_tokens(orjson.dumps(body["messages"]).decode())
        completion = estimate_tokens(text if text is not None else "".join(call or ()))
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": prompt_tokens + completion,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
        head: JSONObject = {
            "id": new_id("chatcmpl-"),
            "created": int(time.time()),
            "model": body["model"],
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
        }
        headers = {"x-request-id": new_id("req_")}
        if body.get("stream") is True:
            options = body.get("stream_options") or {}
            with_usage = options.get("include_usage") is True
            events = self._chunks(head, text, call, usage if with_usage else None)
            if options.get("include_obfuscation") is not False:
                events = [_pad(event) for event in events]
            return SSEAnswer(events, headers)
        message: JSONObject = {"role": "assistant", "content": text, "refusal": None}
        if call is not None:
            message["tool_calls"] = [_tool_call_object(call)]
        choice = {
            "index": 0,
            "message": message,
            "logprobs": None,
            "finish_reason": "stop" if call is None else "tool_calls",
        }
        completion_body = {
            **head,
            "object": "chat.completion",
            "choices": [choice],
            "usage": usage,
        }
        return JSONAnswer(completion_body, 200, headers)

    # -- answer building ---------------------------------------------------------

    def _chunks(
        self,
        head: JSONObject,
        text: str | None,
        call: tuple[str, str] | None,
        usage: JSONObject | None,
    ) -> list[SSEEvent]:
        def chunk(delta: JSONObject, finish: str | None = None) -> SSEEvent:
            body: JSONObject = {
                **head,
                "object": "chat.completion.chunk",
                "choices": [
                    {
                        "index": 0,
                        "delta": delta,
                        "logprobs": None,
                        "finish_reason": finish,
                    }
                ],
            }
            if usage is not None:
                body["usage"] = None
            return (None, body)

        first = {"role": "assistant", "content": "" if call is None else None}
        events = [chunk({**first, "refusal": None})]
        if text is not None:
            events += [chunk({"content": p}) for p in split_text(text, self.stream_chunks)]
        if call is not None:
            opening = {**_tool_call_object((call[0], "")), "index": 0}
            events.append(chunk({"tool_calls": [opening]}))
            for fragment in split_text(call[1], 3):
                delta = {"index": 0, "function": {"arguments": fragment}}
                events.append(chunk({"tool_calls": [delta]}))
        events.append(chunk({}, "stop" if call is None else "tool_calls"))
        if usage is not None:
            tail = {**head, "object": "chat.completion.chunk", "choices": []}
            events.append((None, {**tail, "usage": usage}))
        events.append((None, "[DONE]"))
        return events

    def _tool_call(self, body: JSONObject) -> tuple[str, str] | None:
        if self.force_tool_call is not None:
            return self.force_tool_call
        tools: list[JSONObject] = body.get("tools") or []
        choice = body.get("tool_choice", "auto")
        if not tools or choice == "none":
            return None
        by_name = {t["function"]["name"]: t["function"] for t in tools}
        if isinstance(choice, dict):
            name = choice["function"]["name"]
        else:
            last = body["messages"][-1]
            asked = last["role"] == "user" and mentions_weather(_text_of(last["content"]))
            if choice != "required" and not asked:
                return None
            weather = [n for n in by_name if "weather" in n.lower()]
            name = weather[0] if weather else next(iter(by_name))
        arguments = sample_arguments(by_name[name].get("parameters"))
        return name, orjson.dumps(arguments).decode()

    @staticmethod
    def _model_object(model: str) -> JSONObject:
        return {
            "id": model,
            "object": "model",
            "created": 1715367049,
            "owned_by": "system",
        }


_PADDING = string.ascii_letters + string.digits


def _pad(event: SSEEvent) -> SSEEvent:
    """A chunk with the random padding api.openai.com adds to every one unless asked
    not to (`obfuscation`, last, a different length each time)."""
    name, body = event
    if not isinstance(body, dict):
        return event
    padding = "".join(random.choices(_PADDING, k=random.randint(1, 16)))
    return name, {**body, "obfuscation": padding}


def _tool_call_object(call: tuple[str, str]) -> JSONObject:
    return {
        "id": new_id("call_"),
        "type": "function",
        "function": {"name": call[0], "arguments": call[1]},
    }
