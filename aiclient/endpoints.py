"""HTTP endpoints: parse and route the client's request, hand it to the relay.

Every endpoint is also served under a `/{provider-type}` prefix. Handlers raise
AiclientError subclasses; the middleware in server.py renders them in the client's shape.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from . import __version__
from .errors import InvalidRequest, UnsupportedFeature
from .pool.models import iso_now
from .protocols import ApiProtocol
from .protocols.models import render_model_list
from .providers import PROVIDERS, Provider
from .relay import Call, Relay
from .routing import resolve_provider_type
from .runtime import CALL, CORS_HEADERS, RUNTIME, UPSTREAM_PROTOCOL, Runtime

__all__ = ["add_routes"]

_PROTOCOL_NAMES = {
    ApiProtocol.OPENAI: "OpenAI Chat Completions",
    ApiProtocol.CLAUDE: "Anthropic Messages",
    ApiProtocol.GEMINI: "Gemini generateContent",
}
_OWNERS = {
    ApiProtocol.OPENAI: "openai",
    ApiProtocol.CLAUDE: "anthropic",
    ApiProtocol.GEMINI: "google",
}


def _runtime(request: web.Request) -> Runtime:
    return request.app[RUNTIME]


def _relay(runtime: Runtime) -> Relay:
    assert runtime.relay is not None, "the app lifecycle has not started"
    return runtime.relay


class _StreamSink:
    """The relay's ResponseSink on an aiohttp StreamResponse."""

    __slots__ = ("request", "response")

    def __init__(self, request: web.Request) -> None:
        self.request = request
        self.response: web.StreamResponse | None = None

    async def start(self, headers: Mapping[str, str]) -> None:
        response = web.StreamResponse(status=200, headers={**headers, **CORS_HEADERS})
        await response.prepare(self.request)
        self.response = response

    async def write(self, data: bytes) -> None:
        assert self.response is not None
        await self.response.write(data)

    async def finish(self) -> None:
        assert self.response is not None
        await self.response.write_eof()


async def _read_json(request: web.Request) -> tuple[bytes, dict[str, Any]]:
    body = await request.read()
    if not body.strip():
        raise InvalidRequest("Request body is empty: expected a JSON object")
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"Invalid JSON in request body: {exc}") from None
    if not isinstance(parsed, dict):
        raise InvalidRequest(
            f"Request body must be a JSON object, got {type(parsed).__name__}"
        )
    return body, parsed


def _target(
    request: web.Request, runtime: Runtime, client: ApiProtocol
) -> tuple[str, type[Provider]]:
    ptype = resolve_provider_type(
        request.match_info.get("ptype"),
        request.headers.get("model-provider"),
        runtime.default_provider(client),
    )
    provider_cls = PROVIDERS.get(ptype)
    if provider_cls is None:
        raise UnsupportedFeature(
            f"Provider type {ptype!r} is not available in this version of aiclient"
        )
    return ptype, provider_cls


async def _generate(request: web.Request, client: ApiProtocol) -> web.StreamResponse:
    runtime = _runtime(request)
    body, parsed = await _read_json(request)
    ptype, provider_cls = _target(request, runtime, client)
    upstream = provider_cls.protocol
    request[UPSTREAM_PROTOCOL] = upstream
    model = parsed.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest("model: required, a non-empty string")
    stream = parsed.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidRequest("stream: must be true or false")
    if upstream is not client:
        raise UnsupportedFeature(
            f"{ptype} speaks {_PROTOCOL_NAMES[upstream]}; converting "
            f"{_PROTOCOL_NAMES[client]} requests to it is not supported yet"
        )
    if client is ApiProtocol.CLAUDE and "max_tokens" not in parsed:
        parsed["max_tokens"] = runtime.settings.default_max_tokens
        body = orjson.dumps(parsed)
    call = Call(client, ptype, model, stream, body, request.headers)
    request[CALL] = call
    relay = _relay(runtime)
    if stream:
        sink = _StreamSink(request)
        await relay.stream(call, sink)
        assert sink.response is not None
        return sink.response
    reply = await relay.complete(call)
    return web.Response(
        status=reply.status,
        body=reply.body,
        headers={"Content-Type": reply.content_type},
    )


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await _generate(request, ApiProtocol.OPENAI)


async def messages(request: web.Request) -> web.StreamResponse:
    return await _generate(request, ApiProtocol.CLAUDE)


async def models(request: web.Request) -> web.StreamResponse:
    runtime = _runtime(request)
    client = (
        ApiProtocol.CLAUDE if "anthropic-version" in request.headers else ApiProtocol.OPENAI
    )
    ptype, _ = _target(request, runtime, client)
    call = Call(client, ptype, None, False, b"", request.headers)
    request[CALL] = call
    model_list, provider = await _relay(runtime).list_models(ptype, request.headers)
    call.served_by = provider.node
    if model_list.raw is not None and provider.protocol is client:
        return web.Response(body=model_list.raw, content_type="application/json")
    data = render_model_list(
        client,
        model_list.ids,
        owned_by=_OWNERS[provider.protocol],
        created=int(time.time()),
    )
    return web.Response(body=orjson.dumps(data), content_type="application/json")


async def health(request: web.Request) -> web.StreamResponse:
    runtime = _runtime(request)
    data: dict[str, Any] = {
        "status": "healthy",
        "timestamp": iso_now(),
        "provider": runtime.default_provider(),
        "version": __version__,
        "mode": runtime.setup.mode,
        "uptimeSeconds": round(time.time() - runtime.started, 1),
        "pid": os.getpid(),
        "pools": runtime.pool.summary(),
    }
    if runtime.writer is not None and runtime.writer.paused:
        data["poolFile"] = {"writeBack": "paused", "reason": "the pool file is invalid"}
    return web.Response(body=orjson.dumps(data), content_type="application/json")


def add_routes(app: web.Application) -> None:
    router = app.router
    for prefix in ("", "/{ptype}"):
        router.add_post(prefix + "/v1/chat/completions", chat_completions)
        router.add_post(prefix + "/v1/messages", messages)
        router.add_get(prefix + "/v1/models", models)
        router.add_get(prefix + "/health", health)
