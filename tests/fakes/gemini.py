"""Fake Gemini API upstream (`/v1beta/models/{model}:generateContent` and friends).

Checks the API key (`x-goog-api-key` or `?key=`) and the request the way Google does
(gemini_checks.py), and answers with a canned text or a whole functionCall part, as a
GenerateContentResponse, as `data:` SSE chunks (`alt=sse`), or as the JSON array Google
streams without `alt=sse`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence

import orjson
from aiohttp import web

from .common import (
    Answer,
    JSONAnswer,
    JSONObject,
    RawAnswer,
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
from .gemini_checks import check_key, check_request, error
from .upstream import FakeUpstream

__all__ = ["FakeGemini"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class FakeGemini(FakeUpstream):
    """Fake `generativelanguage.googleapis.com/v1beta`.

    Attributes (besides FakeUpstream's): `api_keys`; `models` listed by
    `GET /v1beta/models`; `unknown_models` answered with 404 NOT_FOUND;
    `force_tool_call` `(name, arguments_json_object)`. Otherwise a functionCall is
    made when tools are declared and the last user text mentions "weather" (or the
    mode is ANY).
    """

    name = "Gemini"

    def __init__(
        self,
        api_keys: Iterable[str] = ("gm-test",),
        models: Sequence[str] = ("gemini-2.5-flash", "gemini-2.5-pro"),
    ) -> None:
        super().__init__(api_keys, models)
        self._generate = self.generation_route(self.answer_generate)
        self._count = self.plain_route(self.answer_count)
        router = self.app.router
        router.add_post("/v1beta/models/{tail}", self.dispatch)
        router.add_get("/v1beta/models", self.plain_route(self.answer_models))
        router.add_get("/v1beta/models/{model}", self.plain_route(self.answer_model))

    def error_body(self, status: int) -> JSONObject:
        return error(status, f"HTTP {status}").answer.body

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["tail"].rpartition(":")[2]
        if method in ("generateContent", "streamGenerateContent"):
            return await self._generate(request)
        if method == "countTokens":
            return await self._count(request)
        raise web.HTTPNotFound()

    # -- routes ------------------------------------------------------------------

    @staticmethod
    def _model_object(model: str) -> JSONObject:
        return {
            "name": f"models/{model}",
            "version": "001",
            "displayName": model.replace("-", " ").title(),
            "inputTokenLimit": 1048576,
            "outputTokenLimit": 65536,
            "supportedGenerationMethods": ["generateContent", "countTokens"],
        }

    def answer_models(self, request: RecordedRequest) -> Answer:
        try:
            check_key(request, self.api_keys)
        except Rejected as exc:
            return exc.answer
        return JSONAnswer({"models": [self._model_object(m) for m in self.models]})

    def answer_model(self, request: RecordedRequest) -> Answer:
        model = request.path.rpartition("/")[2]
        try:
            check_key(request, self.api_keys)
            if model not in self.models:
                raise error(404, f"models/{model} is not found for API version v1beta")
        except Rejected as exc:
            return exc.answer
        return JSONAnswer(self._model_object(model))

    def answer_count(self, request: RecordedRequest) -> Answer:
        try:
            check_key(request, self.api_keys)
            body = orjson.loads(request.body)
            inner = body.get("generateContentRequest", body)
            if not inner.get("contents"):
                raise error(400, "* CountTokensRequest.contents: contents is not specified")
        except Rejected as exc:
            return exc.answer
        return JSONAnswer({"totalTokens": _prompt_tokens(inner)})

    def answer_generate(self, request: RecordedRequest) -> Answer:
        tail = request.path.rpartition("/")[2]
        model, _, method = tail.rpartition(":")
        try:
            body = check_request(request, self.api_keys)
            if model in self.unknown_models:
                raise error(404, f"models/{model} is not found for API version v1beta")
        except Rejected as exc:
            return exc.answer
        call = self._tool_call(body)
        prompt = _prompt_tokens(body)
        if call is None:
            parts: list[JSONObject] = [{"text": self.default_text}]
            output = estimate_tokens(self.default_text)
        else:
            parts = [{"functionCall": {"name": call[0], "args": orjson.loads(call[1])}}]
            output = estimate_tokens(call[0] + call[1])
        usage = {
            "promptTokenCount": prompt,
            "candidatesTokenCount": output,
            "totalTokenCount": prompt + output,
        }
        head = {"modelVersion": model, "responseId": new_id("")}
        if method == "generateContent":
            candidate = {
                "content": {"role": "model", "parts": parts},
                "finishReason": "STOP",
                "index": 0,
            }
            return JSONAnswer({"candidates": [candidate], "usageMetadata": usage, **head})
        chunks = self._chunks(parts, usage, head)
        if request.query.get("alt") != "sse":
            return RawAnswer(orjson.dumps([data for _, data in chunks]))
        return SSEAnswer(chunks)

    # -- answer building ---------------------------------------------------------

    def _chunks(
        self, parts: list[JSONObject], usage: JSONObject, head: JSONObject
    ) -> list[SSEEvent]:
        def chunk(part: JSONObject, last: bool) -> SSEEvent:
            candidate: JSONObject = {
                "content": {"role": "model", "parts": [part]},
                "index": 0,
            }
            data: JSONObject = {"candidates": [candidate], **head}
            if last:
                candidate["finishReason"] = "STOP"
                data["usageMetadata"] = usage
            else:
                data["usageMetadata"] = {"promptTokenCount": usage["promptTokenCount"]}
            return (None, data)

        if "text" in parts[0]:
            pieces = split_text(parts[0]["text"], self.stream_chunks)
            return [chunk({"text": p}, i == len(pieces) - 1) for i, p in enumerate(pieces)]
        return [chunk(parts[0], False), chunk({"text": ""}, True)]

    def _tool_call(self, body: JSONObject) -> tuple[str, str] | None:
        if self.force_tool_call is not None:
            return self.force_tool_call
        declarations = [
            d
            for tool in body.get("tools") or ()
            for d in tool.get("functionDeclarations") or ()
        ]
        calling = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
        mode = calling.get("mode", "AUTO")
        if not declarations or mode == "NONE":
            return None
        by_name = {d["name"]: d for d in declarations}
        allowed = calling.get("allowedFunctionNames") or []
        last = body["contents"][-1]
        asked = last.get("role", "user") == "user" and mentions_weather(
            " ".join(p.get("text", "") for p in last["parts"] if isinstance(p, dict))
        )
        if mode != "ANY" and not asked:
            return None
        weather = [n for n in by_name if "weather" in n.lower()]
        name = allowed[0] if allowed else weather[0] if weather else next(iter(by_name))
        decl = by_name[name]
        arguments = sample_arguments(
            decl.get("parameters") or decl.get("parametersJsonSchema")
        )
        return name, orjson.dumps(arguments).decode()


def _prompt_tokens(body: JSONObject) -> int:
    parts = [body.get("systemInstruction"), body.get("contents"), body.get("tools")]
    return estimate_tokens(orjson.dumps(parts).decode())
