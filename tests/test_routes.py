"""Routes, auth, CORS and error shapes, as AIClient-2-API's clients and tests expect."""

from __future__ import annotations

from typing import Any

import aiohttp
import anthropic
import openai
import pytest

from tests.conftest import (
    API_KEY,
    CLAUDE_KEY,
    OPENAI_KEY,
    Proxy,
    StartProxy,
    claude_instance,
    openai_instance,
)
from tests.fakes import FakeClaude, FakeOpenAI

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}
MESSAGES = {"model": "c", "max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}]}


@pytest.fixture
async def proxy(
    start_proxy: StartProxy, fake_openai: FakeOpenAI, fake_claude: FakeClaude
) -> Proxy:
    return await start_proxy(
        {
            "openai-custom": [openai_instance(fake_openai, "oa-1", customName="main")],
            "claude-custom": [claude_instance(fake_claude, "cl-1")],
        }
    )


async def call(
    proxy: Proxy,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    json: Any = None,
    data: str | None = None,
) -> tuple[int, Any, aiohttp.ClientResponse]:
    async with aiohttp.ClientSession() as http:
        resp = await http.request(
            method, proxy.url + path, headers=headers or {}, json=json, data=data
        )
        text = await resp.text()
    try:
        import json as jsonlib

        body = jsonlib.loads(text) if text else None
    except ValueError:
        body = text
    return resp.status, body, resp


BEARER = {"Authorization": f"Bearer {API_KEY}"}


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/v1/models", {"Authorization": f"Bearer {API_KEY}"}),
        ("/v1/models", {"x-api-key": API_KEY}),
        ("/v1/models", {"x-goog-api-key": API_KEY}),
        (f"/v1/models?key={API_KEY}", {}),
    ],
)
async def test_each_auth_method_is_accepted(
    proxy: Proxy, path: str, headers: dict[str, str]
) -> None:
    status, body, _ = await call(proxy, "GET", path, headers=headers)
    assert status == 200
    assert isinstance(body["data"], list)


async def test_missing_or_wrong_key_is_401_before_any_pool_work(
    proxy: Proxy, fake_openai: FakeOpenAI
) -> None:
    status, body, resp = await call(proxy, "POST", "/v1/chat/completions", json={})
    assert status == 401
    assert resp.headers["Content-Type"].startswith("application/json")
    assert "Unauthorized" in body["error"]["message"]
    status, body, _ = await call(
        proxy, "POST", "/v1/messages", headers={"x-api-key": "wrong"}, json=MESSAGES
    )
    assert status == 401
    assert body["type"] == "error"
    assert body["error"]["type"] == "authentication_error"
    assert fake_openai.hits == 0
    entry = proxy.runtime.pool.get("oa-1")
    assert entry is not None and entry.state.usage_count == 0


async def test_sdks_see_authentication_errors(proxy: Proxy) -> None:
    async with openai.AsyncOpenAI(
        base_url=f"{proxy.url}/v1", api_key="nope", max_retries=0
    ) as client:
        with pytest.raises(openai.AuthenticationError):
            await client.chat.completions.create(**CHAT)  # type: ignore[call-overload]
    async with anthropic.AsyncAnthropic(
        base_url=proxy.url, api_key="nope", max_retries=0
    ) as claude:
        with pytest.raises(anthropic.AuthenticationError):
            await claude.messages.create(**MESSAGES)  # type: ignore[call-overload]


async def test_options_preflight_is_answered_before_auth(proxy: Proxy) -> None:
    status, _, resp = await call(
        proxy,
        "OPTIONS",
        "/v1/models",
        headers={
            "Origin": "http://localhost:3000",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Content-Type, Authorization",
        },
    )
    assert status == 204
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert "x-api-key" in resp.headers["Access-Control-Allow-Headers"]
    assert "POST" in resp.headers["Access-Control-Allow-Methods"]


async def test_cors_headers_on_ordinary_and_error_responses(proxy: Proxy) -> None:
    for headers in (BEARER, {}):
        _, _, resp = await call(proxy, "GET", "/v1/models", headers=headers)
        assert resp.headers["Access-Control-Allow-Origin"] == "*"


async def test_health_needs_no_auth_and_shows_no_secrets(proxy: Proxy) -> None:
    status, body, _ = await call(proxy, "GET", "/health")
    assert status == 200
    assert body["status"] == "healthy"
    assert body["pools"]["openai-custom"] == {
        "total": 1,
        "healthy": 1,
        "unhealthy": 0,
        "disabled": 0,
        "cooling": 0,
        "standby": 0,
        "recovering": 0,
    }
    text = str(body)
    for secret in (API_KEY, OPENAI_KEY, CLAUDE_KEY):
        assert secret not in text
    status, body, _ = await call(proxy, "GET", "/claude-custom/health")
    assert status == 200


async def test_unknown_route_is_404_json(proxy: Proxy) -> None:
    status, body, _ = await call(
        proxy, "POST", "/unsupported/endpoint", headers=BEARER, json={}
    )
    assert status == 404
    assert "Not Found" in body["error"]["message"]


async def test_wrong_method_is_405_json(proxy: Proxy) -> None:
    status, body, _ = await call(proxy, "GET", "/v1/chat/completions", headers=BEARER)
    assert status == 405
    assert body["error"]["message"]


async def test_unknown_provider_header_is_400_naming_it(proxy: Proxy) -> None:
    status, body, _ = await call(
        proxy,
        "POST",
        "/v1/chat/completions",
        headers={**BEARER, "model-provider": "bogus-type"},
        json=CHAT,
    )
    assert status == 400
    assert "bogus-type" in body["error"]["message"]


async def test_invalid_json_is_400_in_the_client_shape(proxy: Proxy) -> None:
    status, body, _ = await call(
        proxy, "POST", "/v1/chat/completions", headers=BEARER, data="invalid json"
    )
    assert status == 400
    assert "Invalid JSON" in body["error"]["message"]
    status, body, _ = await call(
        proxy, "POST", "/v1/messages", headers={"x-api-key": API_KEY}, data="[1, 2]"
    )
    assert status == 400
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"


async def test_missing_model_is_400(proxy: Proxy) -> None:
    status, body, _ = await call(
        proxy, "POST", "/v1/chat/completions", headers=BEARER, json={"messages": []}
    )
    assert status == 400
    assert "model" in body["error"]["message"]


async def test_cross_protocol_requests_are_converted(
    proxy: Proxy, fake_openai: FakeOpenAI
) -> None:
    status, body, _ = await call(
        proxy,
        "POST",
        "/v1/messages",
        headers={"x-api-key": API_KEY, "model-provider": "openai-custom"},
        json=MESSAGES,
    )
    assert status == 200
    assert body["type"] == "message"
    assert body["content"] == [{"type": "text", "text": fake_openai.default_text}]
    assert fake_openai.hits == 1


async def test_models_in_openai_and_anthropic_shapes(
    proxy: Proxy, fake_openai: FakeOpenAI
) -> None:
    status, body, _ = await call(proxy, "GET", "/v1/models", headers=BEARER)
    assert status == 200
    assert [m["id"] for m in body["data"]] == fake_openai.models
    status, body, _ = await call(
        proxy,
        "GET",
        "/claude-custom/v1/models",
        headers={"x-api-key": API_KEY, "anthropic-version": "2023-06-01"},
    )
    assert status == 200
    assert body["data"][0]["type"] == "model"
    assert "has_more" in body
    status, body, _ = await call(
        proxy, "GET", "/v1/models", headers={**BEARER, "model-provider": "claude-custom"}
    )
    assert body["object"] == "list"
    assert body["data"][0]["owned_by"] == "anthropic"


async def test_anthropic_sdk_lists_models(proxy: Proxy) -> None:
    async with anthropic.AsyncAnthropic(
        base_url=f"{proxy.url}/claude-custom", api_key=API_KEY, max_retries=0
    ) as client:
        page = await client.models.list()
    assert [m.id for m in page.data]


async def test_body_over_the_limit_is_413(
    start_proxy: StartProxy, fake_openai: FakeOpenAI
) -> None:
    proxy = await start_proxy(
        {"openai-custom": [openai_instance(fake_openai, "a")]}, max_body_bytes=1000
    )
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * 5000}]}
    status, body, _ = await call(
        proxy, "POST", "/v1/chat/completions", headers=BEARER, json=big
    )
    assert status == 413
    assert "too large" in body["error"]["message"]
    assert fake_openai.hits == 0


async def test_no_instances_of_the_type_is_503(
    start_proxy: StartProxy, fake_openai: FakeOpenAI
) -> None:
    proxy = await start_proxy({"openai-custom": [openai_instance(fake_openai, "a")]})
    status, body, _ = await call(
        proxy,
        "POST",
        "/v1/messages",
        headers={"x-api-key": API_KEY, "model-provider": "claude-custom"},
        json=MESSAGES,
    )
    assert status == 503
    assert "claude-custom" in body["error"]["message"]


async def test_auth_disabled_when_the_key_is_empty(
    start_proxy: StartProxy, fake_openai: FakeOpenAI
) -> None:
    proxy = await start_proxy(
        {"openai-custom": [openai_instance(fake_openai, "a")]}, required_api_key=""
    )
    status, _, _ = await call(proxy, "POST", "/v1/chat/completions", json=CHAT)
    assert status == 200
