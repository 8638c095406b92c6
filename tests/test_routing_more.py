"""Routing by model prefix and `provider` field; fallback chains across protocols."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from aiclient.routing import split_model_prefix
from tests.conftest import (
    API_KEY,
    Proxy,
    StartProxy,
    claude_instance,
    gemini_instance,
    openai_instance,
)
from tests.fakes import FakeClaude, FakeGemini, FakeOpenAI


async def chat(proxy: Proxy, body: dict[str, Any]) -> tuple[int, Any, str]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{proxy.url}/v1/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {API_KEY}"},
        ) as resp,
    ):
        text = await resp.text()
        data = None if body.get("stream") else await resp.json(content_type=None)
        return resp.status, data, text


def hello(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "Hi"}], **extra}


def test_split_model_prefix() -> None:
    assert split_model_prefix("openai-custom/gpt-4o") == ("openai-custom", "gpt-4o")
    assert split_model_prefix("meta-llama/Llama-3") == (None, "meta-llama/Llama-3")
    assert split_model_prefix("gpt-4o") == (None, "gpt-4o")


@pytest.fixture
async def both(
    start_proxy: StartProxy, fake_openai: FakeOpenAI, fake_claude: FakeClaude
) -> Proxy:
    return await start_proxy(
        {
            "openai-custom": [openai_instance(fake_openai, "o")],
            "claude-custom": [claude_instance(fake_claude, "c")],
        }
    )


async def test_model_prefix_picks_the_pool_and_is_stripped(
    both: Proxy, fake_openai: FakeOpenAI, fake_claude: FakeClaude
) -> None:
    status, data, _ = await chat(both, hello("claude-custom/claude-proxy-test"))
    assert status == 200
    assert data["object"] == "chat.completion"
    assert fake_claude.hits == 1 and fake_openai.hits == 0
    assert fake_claude.last_request.json["model"] == "claude-proxy-test"


async def test_provider_field_picks_the_pool_and_is_removed(
    both: Proxy, fake_openai: FakeOpenAI, fake_claude: FakeClaude
) -> None:
    status, _, _ = await chat(both, hello("gpt-4o-mini", provider="openai-custom"))
    assert status == 200
    assert fake_openai.hits == 1
    assert "provider" not in fake_openai.last_request.json
    assert fake_openai.last_request.json["model"] == "gpt-4o-mini"
    status, data, _ = await chat(both, hello("m", provider="nope"))
    assert status == 400 and "provider" in data["error"]["message"]


@pytest.mark.parametrize("stream", [False, True])
async def test_fallback_chain_serves_from_another_protocol(
    start_proxy: StartProxy,
    fake_openai: FakeOpenAI,
    fake_claude: FakeClaude,
    stream: bool,
) -> None:
    proxy = await start_proxy(
        {
            "openai-custom": [openai_instance(fake_openai, "o")],
            "claude-custom": [claude_instance(fake_claude, "c")],
        },
        model_providers=("openai-custom",),
        fallback_chain={"openai-custom": ("claude-custom",)},
        request_max_retries=1,
    )
    fake_openai.reply_status(401)  # out: auth_failed; no other openai instance
    status, data, text = await chat(proxy, hello("claude-proxy-test", stream=stream))
    assert status == 200
    assert fake_openai.hits == 1 and fake_claude.hits == 1
    if stream:
        assert "data: [DONE]" in text and fake_claude.default_text.split()[0] in text
    else:
        assert data["choices"][0]["message"]["content"] == fake_claude.default_text
    status, _, _ = await chat(proxy, hello("claude-proxy-test", stream=stream))
    assert status == 200  # straight to the fallback while openai-custom is out
    assert fake_openai.hits == 1 and fake_claude.hits == 2


async def test_model_fallback_mapping_changes_type_and_model(
    start_proxy: StartProxy, fake_openai: FakeOpenAI, fake_gemini: FakeGemini
) -> None:
    proxy = await start_proxy(
        {
            "openai-custom": [openai_instance(fake_openai, "o", isDisabled=True)],
            "gemini-custom": [gemini_instance(fake_gemini, "g")],
        },
        model_providers=("openai-custom",),
        model_fallbacks={"gpt-4o": ("gemini-custom", "gemini-2.5-flash")},
    )
    status, data, _ = await chat(proxy, hello("gpt-4o"))
    assert status == 200
    assert fake_gemini.hits == 1
    assert "gemini-2.5-flash" in fake_gemini.last_request.path
    assert data["choices"][0]["message"]["content"] == fake_gemini.default_text


def test_fallback_config_is_validated() -> None:
    from aiclient.config import parse_fallback_chain, parse_model_fallbacks
    from aiclient.errors import ConfigError

    assert parse_fallback_chain("c", {"openai-custom": "claude-custom"}) == {
        "openai-custom": ("claude-custom",)
    }
    with pytest.raises(ConfigError, match="not a provider type"):
        parse_fallback_chain("c", {"openai-custom": ["nope"]})
    assert parse_model_fallbacks(
        "m", {"gpt-4o": {"targetProviderType": "claude-custom", "targetModel": "x"}}
    ) == {"gpt-4o": ("claude-custom", "x")}
    with pytest.raises(ConfigError, match="targetProviderType"):
        parse_model_fallbacks("m", {"gpt-4o": {"targetModel": "x"}})
