"""HTTP endpoints: parse and route the client's request, hand it to the relay.

Every endpoint is also served under a `/{provider-type}` prefix. Handlers raise
AiclientError subclasses; the middleware in server.py renders them in the client's shape.

Generation: same protocol on both sides is passthrough (the body goes up as it came,
plus a default max_tokens for Anthropic and the configured system prompt); otherwise the
client's codec reads it into the canonical form and the upstream's codec writes it, and
the relay translates the answer back. Gemini's paths are `/v1beta/models/{model}:{method}`
(and `/v1/models/...`, google-genai's default), split on the last `:`; a
streamGenerateContent without `alt=sse` is answered as a streamed JSON array.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import orjson

from . import __version__
from .canonical import ChatRequest, TextPart
from .config import PROVIDER_TYPES
from .errors import (
    AiclientError,
    InvalidRequest,
    ModelNotFound,
    RouteNotFound,
    UnsupportedFeature,
)
from .http_server import App, Request, Response, StreamResponse
from .pool.models import iso_now
from .prompts import apply_system_prompt, last_message_text
from .protocols import ApiProtocol
from .protocols.codecs import CODECS
from .protocols.models import render_model_list
from .providers import PROVIDERS, Provider
from .relay import Call, Conversion, Relay
from .routing import resolve_provider_type, split_model_prefix
from .runtime import CALL, RUNTIME, Runtime

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


def _runtime(request: Request) -> Runtime:
    return request.app[RUNTIME]


def _relay(runtime: Runtime) -> Relay:
    assert runtime.relay is not None, "the app lifecycle has not started"
    return runtime.relay


class _StreamSink:
    """The relay's ResponseSink on a StreamResponse."""

    __slots__ = ("request", "response")

    def __init__(self, request: Request) -> None:
        self.request = request
        self.response: StreamResponse | None = None

    async def start(self, headers: Mapping[str, str]) -> None:
        response = StreamResponse(status=200, headers=headers)
        await response.prepare(self.request)
        self.response = response

    async def write(self, data: bytes) -> None:
        assert self.response is not None
        await self.response.write(data)

    async def finish(self) -> None:
        assert self.response is not None
        await self.response.write_eof()


async def _read_json(request: Request) -> tuple[bytes, dict[str, Any]]:
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
    request: Request,
    runtime: Runtime,
    client: ApiProtocol,
    body_choice: str | None = None,
) -> tuple[str, type[Provider]]:
    ptype = resolve_provider_type(
        request.match_info.get("ptype"),
        request.headers.get("model-provider"),
        runtime.default_provider(client),
        body_choice,
    )
    return ptype, _provider_class(ptype)


def _provider_class(ptype: str) -> type[Provider]:
    provider_cls = PROVIDERS.get(ptype)
    if provider_cls is None:
        raise UnsupportedFeature(
            f"Provider type {ptype!r} is not available in this version of aiclient"
        )
    return provider_cls


def _body_choice(parsed: dict[str, Any]) -> str | None:
    """The provider type the body asks for, if it does.

    Removes a string `provider` field and the prefix from `parsed` (an object-valued
    `provider`, OpenRouter's routing preferences, is left for the upstream)."""
    choice: str | None = None
    provider = parsed.get("provider")
    if isinstance(provider, str):
        del parsed["provider"]
        name = provider.strip().lower()
        if name not in PROVIDER_TYPES:
            raise InvalidRequest(
                f"provider: unknown provider type {provider!r}; expected one of: "
                f"{', '.join(PROVIDER_TYPES)}"
            )
        choice = name
    model = parsed.get("model")
    if isinstance(model, str):
        prefix, rest = split_model_prefix(model)
        if prefix is not None:
            parsed["model"] = rest
            choice = choice or prefix
    return choice


def _fallbacks(runtime: Runtime, ptype: str, model: str) -> list[tuple[str, str]]:
    """providerFallbackChain then modelFallbackMapping, for types this pool serves."""
    settings = runtime.settings
    if not settings.fallback_chain and not settings.model_fallbacks:
        return []
    chain = [(t, model) for t in settings.fallback_chain.get(ptype, ())]
    if model in settings.model_fallbacks:
        chain.append(settings.model_fallbacks[model])
    seen = {(ptype, model)}
    result = []
    for target in chain:
        if (
            target not in seen
            and target[0] in PROVIDERS
            and runtime.pool.has_type(target[0])
        ):
            seen.add(target)
            result.append(target)
    return result


def _body_model(parsed: dict[str, Any]) -> str:
    model = parsed.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest("model: required, a non-empty string")
    return model


def _body_stream(parsed: dict[str, Any]) -> bool:
    stream = parsed.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidRequest("stream: must be true or false")
    return stream


def _canonical(
    client: ApiProtocol,
    parsed: dict[str, Any],
    model: str,
    path_model: str | None,
    max_tokens: int | None = None,
    **changes: Any,
) -> ChatRequest:
    """The client's request in canonical form for `model`, with `changes` applied (and
    `max_tokens` where the request has none): one copy of the (18-field, frozen) request
    rather than one per change."""
    canonical = CODECS[client].request_to_canonical(parsed, model=path_model)
    changes["model"] = model
    if max_tokens is not None and canonical.max_tokens is None:
        changes["max_tokens"] = max_tokens
    changes = {k: v for k, v in changes.items() if getattr(canonical, k) != v}
    return replace(canonical, **changes) if changes else canonical


async def _generate(
    request: Request,
    client: ApiProtocol,
    *,
    path_model: str | None = None,
    stream: bool | None = None,
    json_array: bool = False,
) -> StreamResponse:
    runtime = _runtime(request)
    settings = runtime.settings
    body, parsed = await _read_json(request)
    choice = _body_choice(parsed)
    changed = choice is not None
    ptype, provider_cls = _target(request, runtime, client, choice)
    model = path_model if path_model is not None else _body_model(parsed)
    if stream is None:
        stream = _body_stream(parsed)
    prompts = runtime.prompts
    if prompts is not None and prompts.system_text is not None:
        parsed = apply_system_prompt(
            client, parsed, prompts.system_text, settings.system_prompt_mode
        )
        changed = True
    transcript: list[str] | None = None
    if prompts is not None and prompts.logging:
        prompts.log("INPUT", last_message_text(client, parsed))
        transcript = []
    streaming = stream

    # `build` and `retarget` must not hold the request: the call they hang on is kept
    # in the request's state, and that cycle would leave every request (its body,
    # parsed JSON and canonical form) to the cyclic collector instead of freeing it
    # when the request ends.
    def build(upstream: ApiProtocol, target_model: str) -> tuple[bytes, Conversion | None]:
        """The upstream body for `upstream` and `target_model`."""
        if upstream is client:
            out, dirty = parsed, changed
            if path_model is None and out.get("model") != target_model:
                out, dirty = {**out, "model": target_model}, True
            if client is ApiProtocol.CLAUDE and "max_tokens" not in out:
                out, dirty = {**out, "max_tokens": settings.default_max_tokens}, True
            return (orjson.dumps(out) if dirty else body), None
        needs_max = upstream is ApiProtocol.CLAUDE  # Anthropic requires max_tokens
        default_max = settings.default_max_tokens if needs_max else None
        read_plain = CODECS[client].plain_request_in
        write_plain = CODECS[upstream].plain_request_out
        plain = read_plain(parsed, model=path_model) if read_plain and write_plain else None
        if write_plain and plain is not None:  # the fast path (canonical.PlainChat)
            max_tokens = default_max if plain.max_tokens is None else plain.max_tokens
            if (plain.model, plain.stream, plain.max_tokens) != (
                target_model,
                streaming,
                max_tokens,
            ):
                plain = plain._replace(
                    model=target_model, stream=streaming, max_tokens=max_tokens
                )
            converted = orjson.dumps(write_plain(plain))
            return converted, Conversion(upstream, target_model, plain.include_usage)
        canonical = _canonical(
            client, parsed, target_model, path_model, default_max, stream=streaming
        )
        converted = orjson.dumps(CODECS[upstream].request_from_canonical(canonical))
        return converted, Conversion(upstream, target_model, canonical.include_usage)

    def retarget(call: Call, target_type: str, target_model: str) -> None:
        upstream = _provider_class(target_type).protocol
        call.body, call.conversion = build(upstream, target_model)
        call.provider_type, call.model = target_type, target_model
        call.upstream_protocol = upstream

    body, conversion = build(provider_cls.protocol, model)
    call = Call(
        client,
        ptype,
        model,
        stream,
        body,
        request.headers,
        conversion=conversion,
        json_array=json_array,
        transcript=transcript,
        fallbacks=_fallbacks(runtime, ptype, model),
        retarget=retarget,
        upstream_protocol=provider_cls.protocol,
    )
    request[CALL] = call
    relay = _relay(runtime)
    if stream:
        sink = _StreamSink(request)
        await relay.stream(call, sink)
        assert sink.response is not None
        if prompts is not None and transcript is not None:
            prompts.log("OUTPUT", "".join(transcript))
        return sink.response
    reply = await relay.complete(call)
    if prompts is not None and transcript is not None:
        prompts.log("OUTPUT", _answer_text(client, reply.body))
    return Response(
        status=reply.status,
        body=reply.body,
        headers={"Content-Type": reply.content_type},
    )


def _answer_text(client: ApiProtocol, body: bytes) -> str:
    try:
        answer = CODECS[client].response_to_canonical(orjson.loads(body))
    except (orjson.JSONDecodeError, AiclientError, TypeError, KeyError, AttributeError):
        return ""
    return "".join(p.text for p in answer.parts if isinstance(p, TextPart))


async def chat_completions(request: Request) -> StreamResponse:
    return await _generate(request, ApiProtocol.OPENAI)


async def messages(request: Request) -> StreamResponse:
    return await _generate(request, ApiProtocol.CLAUDE)


def _gemini_tail(request: Request) -> tuple[str, str]:
    model, colon, method = request.match_info["tail"].rpartition(":")
    if not colon or not model:
        raise RouteNotFound("Not Found")
    return model.removeprefix("models/"), method


async def gemini_method(request: Request) -> StreamResponse:
    """POST /v1beta/models/{model}:{generateContent|streamGenerateContent|countTokens}."""
    model, method = _gemini_tail(request)
    if method == "generateContent":
        return await _generate(request, ApiProtocol.GEMINI, path_model=model, stream=False)
    if method == "streamGenerateContent":
        json_array = request.query.get("alt") != "sse"
        return await _generate(
            request,
            ApiProtocol.GEMINI,
            path_model=model,
            stream=True,
            json_array=json_array,
        )
    if method == "countTokens":
        return await _count(request, ApiProtocol.GEMINI, model)
    raise RouteNotFound(f"Not Found: unknown method {method!r}")


async def count_tokens(request: Request) -> StreamResponse:
    """POST /v1/messages/count_tokens."""
    return await _count(request, ApiProtocol.CLAUDE, None)


def _count_body(upstream: ApiProtocol, canonical: ChatRequest) -> dict[str, Any]:
    body = CODECS[upstream].request_from_canonical(canonical)
    if upstream is ApiProtocol.GEMINI:
        return {"generateContentRequest": {"model": f"models/{canonical.model}", **body}}
    keep = ("model", "messages", "system", "tools", "tool_choice", "thinking")
    return {k: body[k] for k in keep if k in body}


def _count_answer(client: ApiProtocol, upstream: ApiProtocol, raw: bytes) -> bytes:
    data = orjson.loads(raw)
    key = "totalTokens" if upstream is ApiProtocol.GEMINI else "input_tokens"
    tokens = data[key]
    if not isinstance(tokens, int):
        raise TypeError(f"{key} is not an integer")
    if client is ApiProtocol.GEMINI:
        return orjson.dumps({"totalTokens": tokens})
    return orjson.dumps({"input_tokens": tokens})


async def _count(
    request: Request, client: ApiProtocol, path_model: str | None
) -> StreamResponse:
    runtime = _runtime(request)
    body, parsed = await _read_json(request)
    ptype, provider_cls = _target(request, runtime, client)
    upstream = provider_cls.protocol
    if client is ApiProtocol.GEMINI and isinstance(
        parsed.get("generateContentRequest"), dict
    ):
        parsed = parsed["generateContentRequest"]
    model = path_model if path_model is not None else _body_model(parsed)
    translate = None
    if upstream is not client:
        canonical = _canonical(client, parsed, model, path_model)
        if upstream is ApiProtocol.CLAUDE:
            canonical = replace(canonical, max_tokens=runtime.settings.default_max_tokens)
        body = orjson.dumps(_count_body(upstream, canonical))

        def translate(raw: bytes) -> bytes:
            return _count_answer(client, upstream, raw)

    call = Call(
        client, ptype, model, False, body, request.headers, upstream_protocol=upstream
    )
    request[CALL] = call
    reply = await _relay(runtime).count(call, translate)
    return Response(
        status=reply.status, body=reply.body, headers={"Content-Type": reply.content_type}
    )


async def _model_list(
    request: Request, client: ApiProtocol
) -> tuple[list[str], bytes | None, ApiProtocol]:
    """The model ids, the raw upstream list when it is already in `client`'s shape, and
    the upstream's protocol."""
    runtime = _runtime(request)
    ptype, provider_cls = _target(request, runtime, client)
    call = Call(
        client,
        ptype,
        None,
        False,
        b"",
        request.headers,
        upstream_protocol=provider_cls.protocol,
    )
    request[CALL] = call
    model_list, provider = await _relay(runtime).list_models(ptype, request.headers)
    call.served_by = provider.node
    raw = model_list.raw if provider.protocol is client else None
    return model_list.ids, raw, provider.protocol


def models_protocol(headers: Mapping[str, str]) -> ApiProtocol:
    """Who is asking `GET /v1/models` (shared by three protocols): Anthropic's SDK sends
    `anthropic-version`, Google's SDKs `x-goog-api-client`; anyone else gets OpenAI's."""
    if "anthropic-version" in headers:
        return ApiProtocol.CLAUDE
    if "x-goog-api-client" in headers:
        return ApiProtocol.GEMINI
    return ApiProtocol.OPENAI


async def models(request: Request) -> StreamResponse:
    return await _models_response(request, models_protocol(request.headers))


async def model(request: Request) -> StreamResponse:
    """GET /v1/models/{model}: one model, in the asking client's shape."""
    client = models_protocol(request.headers)
    wanted = request.match_info["tail"].removeprefix("models/")
    ids, _, upstream = await _model_list(request, client)
    if wanted not in ids:
        raise ModelNotFound(f"The model {wanted!r} does not exist")
    data = render_model_list(client, [wanted], owned_by=_OWNERS[upstream], created=0)
    item = data["models" if client is ApiProtocol.GEMINI else "data"][0]
    return Response(body=orjson.dumps(item), content_type="application/json")


async def gemini_models(request: Request) -> StreamResponse:
    return await _models_response(request, ApiProtocol.GEMINI)


async def _models_response(request: Request, client: ApiProtocol) -> StreamResponse:
    ids, raw, upstream = await _model_list(request, client)
    if raw is not None:
        return Response(body=raw, content_type="application/json")
    data = render_model_list(
        client, ids, owned_by=_OWNERS[upstream], created=int(time.time())
    )
    return Response(body=orjson.dumps(data), content_type="application/json")


async def gemini_model(request: Request) -> StreamResponse:
    """GET /v1beta/models/{model}: one entry of the model list, in Gemini's shape."""
    wanted = request.match_info["tail"].removeprefix("models/")
    ids, _, _ = await _model_list(request, ApiProtocol.GEMINI)
    if wanted not in ids:
        raise ModelNotFound(f"models/{wanted} is not found")
    data = render_model_list(ApiProtocol.GEMINI, [wanted], owned_by="google", created=0)
    return Response(body=orjson.dumps(data["models"][0]), content_type="application/json")


async def health(request: Request) -> StreamResponse:
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
        "outOfRotation": [
            {
                "type": e.node.provider_type,
                "instance": e.node.label,
                "state": e.state.status,
                "reason": e.state.reason,
                "cooldownUntil": e.state.to_fields()["cooldownUntil"],
            }
            for e in runtime.pool.entries()
            if e.state.status != "active"
        ],
    }
    if runtime.writer is not None and runtime.writer.paused:
        data["poolFile"] = {"writeBack": "paused", "reason": "the pool file is invalid"}
    return Response(body=orjson.dumps(data), content_type="application/json")


def add_routes(app: App) -> None:
    router = app.router
    for prefix in ("", "/{ptype}"):
        router.add_post(prefix + "/v1/chat/completions", chat_completions)
        router.add_post(prefix + "/v1/messages", messages)
        router.add_get(prefix + "/v1/models", models)
        router.add_post(prefix + "/v1/messages/count_tokens", count_tokens)
        router.add_get(prefix + "/v1/models/{tail}", model)
        router.add_post(prefix + "/v1/models/{tail}", gemini_method)  # Gemini's v1 paths
        router.add_post(prefix + "/v1beta/models/{tail}", gemini_method)
        router.add_get(prefix + "/v1beta/models", gemini_models)
        router.add_get(prefix + "/v1beta/models/{tail}", gemini_model)
        router.add_get(prefix + "/health", health)
