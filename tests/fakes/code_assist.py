"""Fake Gemini Code Assist API (`cloudcode-pa.googleapis.com/v1internal:{method}`).

Built from protocols.md §6: checks `Authorization: Bearer` against the access tokens a
FakeOAuth issued (anything else is 401 UNAUTHENTICATED), answers loadCodeAssist and
onboardUser (a long-running operation that is done after `onboard_polls` calls), and
checks the envelope of generateContent / streamGenerateContent (`model` without
`models/`, the discovered `project`, a `request` whose every content carries a role).
The inner request is validated and answered by FakeGemini's own logic, and the answer is
wrapped as `{"response": ...}` (per SSE event for `alt=sse`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from .common import Answer, JSONAnswer, JSONObject, RecordedRequest, Rejected, SSEAnswer
from .gemini import FakeGemini
from .gemini_checks import error

__all__ = ["FakeCodeAssist"]

_INNER_KEY = "inner-key"


class FakeCodeAssist(FakeGemini):
    name = "CodeAssist"

    def __init__(self, access_tokens: set[str]) -> None:
        super().__init__(api_keys=(_INNER_KEY,))
        self.access_tokens = access_tokens  # shared with FakeOAuth
        self.project = "fake-project-4711"
        self.onboarded = False
        self.onboard_polls = 2
        self.onboard_calls = 0
        self.load_calls = 0
        self.envelopes: list[JSONObject] = []
        self._generate_envelope = self.generation_route(self.answer_envelope)
        self._plain: dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]] = {
            "loadCodeAssist": self.plain_route(self.answer_load),
            "onboardUser": self.plain_route(self.answer_onboard),
            "countTokens": self.plain_route(self.answer_count_envelope),
        }
        self.app.router.add_post("/v1internal:{method}", self.dispatch_internal)

    async def dispatch_internal(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        if method in ("generateContent", "streamGenerateContent"):
            return await self._generate_envelope(request)
        if method in self._plain:
            return await self._plain[method](request)
        raise web.HTTPNotFound()

    def _check_bearer(self, request: RecordedRequest) -> None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or token not in self.access_tokens:
            raise error(
                401,
                "Request had invalid authentication credentials. Expected OAuth 2 access"
                " token, login cookie or other valid authentication credential.",
            )

    def answer_load(self, request: RecordedRequest) -> Answer:
        try:
            self._check_bearer(request)
        except Rejected as exc:
            return exc.answer
        self.load_calls += 1
        if self.onboarded:
            return JSONAnswer(
                {
                    "currentTier": {"id": "free-tier", "name": "Gemini Code Assist"},
                    "cloudaicompanionProject": self.project,
                }
            )
        return JSONAnswer(
            {"allowedTiers": [{"id": "free-tier", "isDefault": True}, {"id": "legacy"}]}
        )

    def answer_onboard(self, request: RecordedRequest) -> Answer:
        try:
            self._check_bearer(request)
            body = request.json
            if not isinstance(body, dict) or body.get("tierId") != "free-tier":
                raise error(400, "tierId: expected free-tier")
            if "cloudaicompanionProject" in body:
                raise error(412, "Precondition Failed")
        except Rejected as exc:
            return exc.answer
        self.onboard_calls += 1
        if self.onboard_calls < self.onboard_polls:
            return JSONAnswer({"name": "operations/onboard-1", "done": False})
        self.onboarded = True
        return JSONAnswer(
            {
                "name": "operations/onboard-1",
                "done": True,
                "response": {
                    "cloudaicompanionProject": {"id": self.project, "name": "Fake"}
                },
            }
        )

    def answer_count_envelope(self, request: RecordedRequest) -> Answer:
        try:
            self._check_bearer(request)
            inner = (request.json or {}).get("request")
            if not isinstance(inner, dict) or not str(inner.get("model")).startswith(
                "models/"
            ):
                raise error(400, "request.model: expected models/<id>")
        except Rejected as exc:
            return exc.answer
        text = orjson.dumps(inner.get("contents")).decode()
        return JSONAnswer({"totalTokens": max(1, len(text) // 4)})

    def answer_envelope(self, request: RecordedRequest) -> Answer:
        method = request.path.rpartition(":")[2]
        try:
            self._check_bearer(request)
            envelope = request.json
            if not isinstance(envelope, dict):
                raise error(400, "Invalid JSON payload received.")
            self.envelopes.append(envelope)
            model, project, inner = (
                envelope.get("model"),
                envelope.get("project"),
                envelope.get("request"),
            )
            if not isinstance(model, str) or model.startswith("models/"):
                raise error(400, "model: expected a plain model id")
            if project != self.project:
                raise error(403, f"Permission denied on resource project {project}.")
            if not isinstance(inner, dict):
                raise error(400, "request: required")
            for i, content in enumerate(inner.get("contents") or ()):
                if not isinstance(content, dict) or not content.get("role"):
                    raise error(400, f"request.contents[{i}].role: required")
        except Rejected as exc:
            return exc.answer
        forwarded = RecordedRequest(
            method="POST",
            path=f"/v1beta/models/{model}:{method}",
            query=dict(request.query),
            headers={"x-goog-api-key": _INNER_KEY},
            body=orjson.dumps(inner),
            json=inner,
        )
        answer = self.answer_generate(forwarded)
        if isinstance(answer, JSONAnswer) and answer.status < 300:
            return JSONAnswer({"response": answer.body, "traceId": "trace-1"})
        if isinstance(answer, SSEAnswer):
            events = [
                (name, {"response": data, "traceId": "trace-1"})
                for name, data in answer.events
            ]
            return SSEAnswer(events, answer.headers, answer.drop_after)
        return answer
