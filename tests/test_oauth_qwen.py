"""openai-qwen-oauth against a fake Qwen token endpoint and a fake OpenAI-compatible API;
plus the CRON_REFRESH_TOKEN background round."""

from __future__ import annotations

import asyncio
import json
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from aiclient.config import load_settings
from aiclient.providers.qwen import normalise_resource_url
from aiclient.refresher import refresh_all
from tests.conftest import API_KEY, Proxy, StartProxy
from tests.fakes import FakeOpenAI
from tests.fakes.oauth import FakeOAuth
from tests.oauth_helpers import HOUR_MS, qwen_creds, read_json, write_json
from tests.sdk_drivers import DRIVERS

PTYPE = "openai-qwen-oauth"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
CHAT = {"model": "qwen3-coder-plus", "messages": [{"role": "user", "content": "Hi"}]}


@pytest.fixture
async def qwen(oauth: FakeOAuth) -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(models=("qwen3-coder-plus",)) as fake:
        fake.api_keys = oauth.access_tokens  # tokens the fake token endpoint issued
        yield fake


def instance(
    qwen: FakeOpenAI, oauth: FakeOAuth, creds: Path, uuid: str, **extra: Any
) -> dict[str, Any]:
    return {
        "uuid": uuid,
        "QWEN_OAUTH_CREDS_FILE_PATH": str(creds),
        "QWEN_BASE_URL": f"{qwen.base_url}/v1",
        "QWEN_OAUTH_BASE_URL": oauth.base_url,
        **extra,
    }


async def chat(proxy: Proxy) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{proxy.url}/{PTYPE}/v1/chat/completions", json=CHAT, headers=AUTH
        ) as resp,
    ):
        return resp.status, await resp.json()


def test_resource_url_is_normalised() -> None:
    assert normalise_resource_url("portal.qwen.ai") == "https://portal.qwen.ai/v1"
    assert normalise_resource_url("http://127.0.0.1:9/v1/") == "http://127.0.0.1:9/v1"


async def test_expired_token_is_refreshed_and_resource_url_becomes_the_base(
    start_proxy: StartProxy, oauth: FakeOAuth, qwen: FakeOpenAI, tmp_path: Path
) -> None:
    creds = qwen_creds(tmp_path / "oauth_creds.json", oauth, mode=0o640)
    old_refresh = read_json(creds)["refresh_token"]
    oauth.qwen_resource_url = qwen.base_url  # "http://127.0.0.1:port": no /v1 yet
    inst = instance(qwen, oauth, creds, "q1", QWEN_BASE_URL="http://127.0.0.1:9/v1")
    proxy = await start_proxy({PTYPE: [inst]})
    status, body = await chat(proxy)
    assert status == 200, body
    assert body["choices"][0]["message"]["content"] == qwen.default_text
    assert oauth.refreshes["qwen"] == 1
    after = read_json(creds)
    assert after["access_token"] in oauth.access_tokens
    assert after["refresh_token"] != old_refresh  # rotated, and saved
    assert after["resource_url"] == qwen.base_url
    assert after["expiry_date"] > time.time() * 1000 + HOUR_MS / 2
    assert stat.S_IMODE(creds.stat().st_mode) == 0o640
    headers = qwen.last_request.headers
    assert headers["authorization"] == f"Bearer {after['access_token']}"
    assert headers["x-dashscope-authtype"] == "qwen-oauth"


async def test_rejected_token_mid_life_is_refreshed_once_and_retried(
    start_proxy: StartProxy, oauth: FakeOAuth, qwen: FakeOpenAI, tmp_path: Path
) -> None:
    creds = qwen_creds(tmp_path / "c.json", oauth, expired=False)
    proxy = await start_proxy({PTYPE: [instance(qwen, oauth, creds, "q1")]})
    oauth.revoke(read_json(creds)["access_token"])
    status, body = await chat(proxy)
    assert status == 200, body
    assert oauth.refreshes["qwen"] == 1
    assert len(qwen.requests) == 2
    assert proxy.runtime.pool.failures == {}


async def test_hundred_concurrent_requests_share_one_refresh(
    start_proxy: StartProxy, oauth: FakeOAuth, qwen: FakeOpenAI, tmp_path: Path
) -> None:
    oauth.delay = 0.05
    creds = qwen_creds(tmp_path / "c.json", oauth)
    proxy = await start_proxy({PTYPE: [instance(qwen, oauth, creds, "q1")]})
    results = await asyncio.gather(*(chat(proxy) for _ in range(100)))
    assert [status for status, _ in results] == [200] * 100
    assert oauth.hits == 1


async def test_refused_refresh_fails_over_and_keeps_the_file(
    start_proxy: StartProxy, oauth: FakeOAuth, qwen: FakeOpenAI, tmp_path: Path
) -> None:
    dead = qwen_creds(tmp_path / "dead.json", oauth)
    content = dead.read_bytes()
    oauth.refresh_tokens.discard(read_json(dead)["refresh_token"])
    good = qwen_creds(tmp_path / "good.json", oauth)
    proxy = await start_proxy(
        {PTYPE: [instance(qwen, oauth, dead, "dead"), instance(qwen, oauth, good, "good")]}
    )
    for _ in range(2):
        status, body = await chat(proxy)
        assert status == 200, body
    # The refused refresh takes the instance out (standby, auth_failed) at once, so
    # the second request goes straight to the good one.
    assert proxy.runtime.pool.failures == {("dead", "auth"): 1}
    state = proxy.runtime.pool.get("dead").state  # type: ignore[union-attr]
    assert (state.status, state.reason) == ("standby", "auth_failed")
    assert oauth.hits == 2  # one refused refresh (dead) and one good one
    assert dead.read_bytes() == content  # never deleted, never rewritten


async def test_background_round_refreshes_near_expiry_and_reports_failures(
    start_proxy: StartProxy, oauth: FakeOAuth, qwen: FakeOpenAI, tmp_path: Path
) -> None:
    near = qwen_creds(tmp_path / "near.json", oauth, expired=False)
    data = read_json(near)
    data["expiry_date"] = int(time.time() * 1000) + 60_000  # inside CRON_NEAR_MINUTES
    write_json(near, data)
    fresh = qwen_creds(tmp_path / "fresh.json", oauth, expired=False)
    dead = qwen_creds(tmp_path / "dead.json", oauth)
    oauth.refresh_tokens.discard(read_json(dead)["refresh_token"])
    proxy = await start_proxy(
        {
            PTYPE: [
                instance(qwen, oauth, near, "near"),
                instance(qwen, oauth, fresh, "fresh"),
                instance(qwen, oauth, dead, "dead"),
            ]
        }
    )
    assert await refresh_all(proxy.runtime) == (3, 1)
    assert oauth.refreshes["qwen"] == 1
    assert read_json(near)["access_token"] != data["access_token"]
    assert proxy.runtime.pool.failures == {("dead", "auth"): 1}


@pytest.mark.parametrize("client", ["openai", "claude"])
async def test_official_sdks(
    start_proxy: StartProxy,
    oauth: FakeOAuth,
    qwen: FakeOpenAI,
    tmp_path: Path,
    client: str,
) -> None:
    creds = qwen_creds(tmp_path / "c.json", oauth)
    proxy = await start_proxy({PTYPE: [instance(qwen, oauth, creds, "q1")]})
    sdk = DRIVERS[client](f"{proxy.url}/{PTYPE}")
    try:
        text, _ = await sdk.create("Hello")
        assert text == qwen.default_text
        assert await sdk.stream("Hello again") == qwen.default_text
        turn = await sdk.tool_round_trip(stream=False)
        assert turn.name == "get_weather"
    finally:
        await sdk.close()
    assert oauth.refreshes["qwen"] == 1


async def test_urls_from_config_json_apply_to_instances_without_them(
    start_proxy: StartProxy, oauth: FakeOAuth, qwen: FakeOpenAI, tmp_path: Path
) -> None:
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {"QWEN_BASE_URL": f"{qwen.base_url}/v1", "QWEN_OAUTH_BASE_URL": oauth.base_url}
        )
    )
    settings = await asyncio.to_thread(load_settings, str(config), env={})
    assert settings.qwen_base_url == f"{qwen.base_url}/v1"
    creds = qwen_creds(tmp_path / "c.json", oauth)
    proxy = await start_proxy(
        {PTYPE: [{"uuid": "q1", "QWEN_OAUTH_CREDS_FILE_PATH": str(creds)}]},
        qwen_base_url=settings.qwen_base_url,
        qwen_oauth_base_url=settings.qwen_oauth_base_url,
    )
    status, body = await chat(proxy)
    assert status == 200, body
    assert oauth.refreshes["qwen"] == 1
