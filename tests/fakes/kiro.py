"""Fake Kiro / CodeWhisperer `POST /generateAssistantResponse`, answering AWS
event-stream frames (aiclient-2-api.md §5.4).

Checks `Authorization: Bearer` against the access tokens a FakeOAuth issued (anything
else is 403, as Kiro answers expired tokens) and the request shape (conversationState,
a known modelId, a non-empty current user message, history items of one kind each,
profileArn for social logins). Answers with `assistantResponseEvent` text pieces, or a
`toolUseEvent` call split in fragments when tools are declared and the user asks about
the weather, then a `meteringEvent`. `write_size` splits the bytes on the wire; `gate`
holds everything after the first frame until it is set.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from aiclient.eventstream import encode_message

from .common import JSONAnswer, mentions_weather, sample_arguments, split_text
from .upstream import FakeUpstream

__all__ = ["FakeKiro", "event_frame"]

MODEL_IDS = {"CLAUDE_SONNET_4_20250514_V1_0", "CLAUDE_3_7_SONNET_20250219_V1_0"}


def event_frame(event_type: str, payload: bytes) -> bytes:
    return encode_message(
        {
            ":event-type": event_type,
            ":content-type": "application/json",
            ":message-type": "event",
        },
        payload,
    )


class FakeKiro(FakeUpstream):
    name = "Kiro"

    def __init__(self, access_tokens: set[str]) -> None:
        super().__init__()
        self.access_tokens = access_tokens
        self.require_profile_arn = True
        self.write_size = 0  # 0: one write per frame
        self.gate: asyncio.Event | None = None
        self.app.router.add_post("/generateAssistantResponse", self.handle)

    def _reject(self, status: int, message: str) -> web.Response:
        return web.json_response({"message": message, "__type": "ValidationException"},
                                 status=status)  # fmt: skip

    def _check(self, body: Any) -> str | None:
        if not isinstance(body, dict):
            return "body must be a JSON object"
        state = body.get("conversationState")
        if not isinstance(state, dict) or state.get("chatTriggerType") != "MANUAL":
            return "conversationState.chatTriggerType: expected MANUAL"
        if not isinstance(state.get("conversationId"), str):
            return "conversationState.conversationId: required"
        for i, item in enumerate(state.get("history") or ()):
            if not isinstance(item, dict) or len(item) != 1:
                return f"history[{i}]: exactly one message kind expected"
        current = (state.get("currentMessage") or {}).get("userInputMessage")
        if not isinstance(current, dict) or not current.get("content"):
            return "currentMessage.userInputMessage.content: required"
        if current.get("modelId") not in MODEL_IDS:
            return f"Invalid model ID: {current.get('modelId')}"
        if self.require_profile_arn and not body.get("profileArn"):
            return "profileArn: required"
        return None

    def frames(self, body: dict[str, Any]) -> list[bytes]:
        current = body["conversationState"]["currentMessage"]["userInputMessage"]
        context = current.get("userInputMessageContext") or {}
        tools = context.get("tools") or []
        frames: list[bytes] = []
        if (
            tools
            and not context.get("toolResults")
            and mentions_weather(current["content"])
        ):
            spec = tools[0]["toolSpecification"]
            args = sample_arguments(spec["inputSchema"]["json"])
            raw = json.dumps(args)
            half = len(raw) // 2
            name, tid = spec["name"], "tooluse_fake1"
            for fragment in (raw[:half], raw[half:]):
                payload = {"name": name, "toolUseId": tid, "input": fragment}
                frames.append(event_frame("toolUseEvent", _dumps(payload)))
            stop = {"name": name, "toolUseId": tid, "stop": True}
            frames.append(event_frame("toolUseEvent", _dumps(stop)))
        else:
            for piece in split_text(self.default_text, self.stream_chunks):
                frames.append(
                    event_frame("assistantResponseEvent", _dumps({"content": piece}))
                )
        frames.append(
            event_frame("meteringEvent", _dumps({"unit": "credit", "usage": 0.01}))
        )
        return frames

    async def handle(self, request: web.Request) -> web.StreamResponse:
        recorded = await self.record(request)
        self.hits += 1
        reply = self._script.popleft() if self._script else None
        if isinstance(reply, JSONAnswer):
            return web.json_response(reply.body, status=reply.status)
        scheme, _, token = recorded.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or token not in self.access_tokens:
            return self._reject(403, "The bearer token included in the request is invalid.")
        problem = self._check(recorded.json)
        if problem is not None:
            return self._reject(400, problem)
        frames = self.frames(recorded.json)
        response = web.StreamResponse(
            headers={"Content-Type": "application/vnd.amazon.eventstream"}
        )
        await response.prepare(request)
        try:
            for index, frame in enumerate(frames):
                if index == 1 and self.gate is not None:
                    await self.gate.wait()
                size = self.write_size or len(frame)
                for start in range(0, len(frame), size):
                    await response.write(frame[start : start + size])
            await response.write_eof()
        except ConnectionError:
            pass
        return response


def _dumps(value: Any) -> bytes:
    return json.dumps(value).encode()
