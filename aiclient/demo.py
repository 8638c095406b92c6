"""The built-in demo upstream: a tiny local OpenAI- and Anthropic-compatible echo server.

Started in-process only when there is no pool file and no credential, so that a fresh
install answers `curl` and the SDKs at once. It is clearly not a model.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
from aiohttp import web

from .pool.models import ProviderNode

__all__ = ["DEMO_KEY", "DemoUpstream", "demo_nodes"]

DEMO_KEY = "demo-key"
_MODELS = ("demo-gpt", "demo-claude")


def _last_user_text(messages: Any) -> str:
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(
                    str(b.get("text", "")) for b in content if isinstance(b, dict)
                )
    return ""


def _answer(body: dict[str, Any]) -> str:
    said = _last_user_text(body.get("messages"))[:200]
    return f"Hello from the aiclient demo upstream. You said: {said}"


def _pieces(text: str) -> list[str]:
    words = text.split(" ")
    return [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]


def _sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + orjson.dumps(data) + b"\n\n"


class DemoUpstream:
    def __init__(self) -> None:
        self.app = web.Application()
        self.app.router.add_post("/v1/chat/completions", self._openai)
        self.app.router.add_post("/v1/messages", self._claude)
        self.app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(self.app, access_log=None)
        self.base_url = ""

    async def start(self) -> str:
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    async def close(self) -> None:
        await self._runner.cleanup()

    async def _models(self, request: web.Request) -> web.Response:
        data = [
            {"id": m, "object": "model", "created": 0, "owned_by": "aiclient-demo"}
            for m in _MODELS
        ]
        return web.json_response({"object": "list", "data": data})

    async def _openai(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        text, model = _answer(body), str(body.get("model", "demo-gpt"))
        cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        if not body.get("stream"):
            return web.json_response(
                {
                    "id": cid,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": "stop",
                            "logprobs": None,
                            "message": {"role": "assistant", "content": text},
                        }
                    ],
                    "usage": {
                        "prompt_tokens": 1,
                        "completion_tokens": 1,
                        "total_tokens": 2,
                    },
                }
            )
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        base = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
        }
        await resp.write(
            _sse(
                {
                    **base,
                    "choices": [
                        {
                            "index": 0,
                            "delta": {"role": "assistant", "content": ""},
                            "finish_reason": None,
                        }
                    ],
                }
            )
        )
        for piece in _pieces(text):
            await resp.write(
                _sse(
                    {
                        **base,
                        "choices": [
                            {
                                "index": 0,
                                "delta": {"content": piece},
                                "finish_reason": None,
                            }
                        ],
                    }
                )
            )
        await resp.write(
            _sse(
                {
                    **base,
                    "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                }
            )
        )
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def _claude(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        text, model = _answer(body), str(body.get("model", "demo-claude"))
        mid = f"msg_{uuid.uuid4().hex[:24]}"
        usage = {"input_tokens": 1, "output_tokens": 1}
        if not body.get("stream"):
            return web.json_response(
                {
                    "id": mid,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [{"type": "text", "text": text}],
                    "stop_reason": "end_turn",
                    "stop_sequence": None,
                    "usage": usage,
                }
            )
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        events: list[tuple[str, dict[str, Any]]] = [
            (
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "id": mid,
                        "type": "message",
                        "role": "assistant",
                        "model": model,
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": {"input_tokens": 1, "output_tokens": 0},
                    },
                },
            ),
            (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            ),
        ]
        events += [
            (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": piece},
                },
            )
            for piece in _pieces(text)
        ]
        events += [
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "usage": {"output_tokens": 1},
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
        for name, data in events:
            await resp.write(_sse(data, name))
        await resp.write_eof()
        return resp


def demo_nodes(base_url: str) -> list[ProviderNode]:
    """An openai-custom and a claude-custom instance pointing at the demo upstream."""
    return [
        ProviderNode(
            uuid="demo-openai",
            provider_type="openai-custom",
            custom_name="demo (OpenAI-compatible)",
            settings={"OPENAI_API_KEY": DEMO_KEY, "OPENAI_BASE_URL": f"{base_url}/v1"},
        ),
        ProviderNode(
            uuid="demo-claude",
            provider_type="claude-custom",
            custom_name="demo (Anthropic-compatible)",
            settings={"CLAUDE_API_KEY": DEMO_KEY, "CLAUDE_BASE_URL": f"{base_url}/v1"},
        ),
    ]
