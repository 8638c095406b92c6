"""gemini-cli-oauth against a fake Google token endpoint and a fake Code Assist API."""

from __future__ import annotations

import asyncio
import base64
import json
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from aiclient.providers import gemini_cli
from tests.conftest import API_KEY, Proxy, StartProxy
from tests.fakes.code_assist import FakeCodeAssist
from tests.fakes.oauth import FakeOAuth
from tests.oauth_helpers import google_creds, read_json
from tests.sdk_drivers import DRIVERS

PTYPE = "gemini-cli-oauth"
HEADERS = {"x-goog-api-key": API_KEY}
PROMPT = {"contents": [{"parts": [{"text": "Hi"}]}]}


@pytest.fixture(autouse=True)
def no_onboard_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gemini_cli, "ONBOARD_POLL_SECONDS", 0.0)


@pytest.fixture
async def code_assist(oauth: FakeOAuth) -> AsyncIterator[FakeCodeAssist]:
    async with FakeCodeAssist(oauth.access_tokens) as fake:
        yield fake


def instance(
    ca: FakeCodeAssist, oauth: FakeOAuth, creds: Path | None, uuid: str, **extra: Any
) -> dict[str, Any]:
    inst: dict[str, Any] = {
        "uuid": uuid,
        "GEMINI_BASE_URL": ca.base_url,
        "GEMINI_OAUTH_TOKEN_URL": f"{oauth.base_url}/token",
        **extra,
    }
    if creds is not None:
        inst["GEMINI_OAUTH_CREDS_FILE_PATH"] = str(creds)
    return inst


async def generate(proxy: Proxy, model: str = "gemini-2.5-flash") -> tuple[int, Any]:
    url = f"{proxy.url}/{PTYPE}/v1beta/models/{model}:generateContent"
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json=PROMPT, headers=HEADERS) as resp,
    ):
        return resp.status, await resp.json()


async def test_expired_token_is_refreshed_written_back_and_used(
    start_proxy: StartProxy, oauth: FakeOAuth, code_assist: FakeCodeAssist, tmp_path: Path
) -> None:
    creds = google_creds(tmp_path / "oauth_creds.json", oauth, mode=0o640)
    before = read_json(creds)
    proxy = await start_proxy({PTYPE: [instance(code_assist, oauth, creds, "g1")]})
    status, body = await generate(proxy)
    assert status == 200, body
    assert body["candidates"][0]["content"]["parts"][0]["text"] == code_assist.default_text
    assert "response" not in body
    assert oauth.refreshes["google"] == 1
    after = read_json(creds)
    assert after["access_token"] in oauth.access_tokens
    assert after["refresh_token"] == before["refresh_token"]  # Google sends none back
    assert after["expiry_date"] > before["expiry_date"] + 3_000_000
    assert after["scope"] == before["scope"]
    assert stat.S_IMODE(creds.stat().st_mode) == 0o640
    # The project was discovered (onboarding polled until done), then remembered.
    assert code_assist.onboard_calls == 2
    envelope = code_assist.envelopes[-1]
    assert envelope["project"] == code_assist.project
    assert envelope["model"] == "gemini-2.5-flash"
    assert envelope["request"]["contents"][0]["role"] == "user"
    status, _ = await generate(proxy)
    assert status == 200
    assert code_assist.load_calls == 1
    assert oauth.refreshes["google"] == 1


async def test_project_id_from_the_instance_skips_discovery(
    start_proxy: StartProxy, oauth: FakeOAuth, code_assist: FakeCodeAssist, tmp_path: Path
) -> None:
    creds = google_creds(tmp_path / "c.json", oauth, expired=False)
    inst = instance(code_assist, oauth, creds, "g1", PROJECT_ID=code_assist.project)
    proxy = await start_proxy({PTYPE: [inst]})
    status, _ = await generate(proxy)
    assert status == 200
    assert code_assist.load_calls == 0
    assert oauth.total_refreshes == 0


async def test_hundred_concurrent_requests_share_one_refresh(
    start_proxy: StartProxy, oauth: FakeOAuth, code_assist: FakeCodeAssist, tmp_path: Path
) -> None:
    oauth.delay = 0.05
    creds = google_creds(tmp_path / "c.json", oauth)
    inst = instance(code_assist, oauth, creds, "g1", PROJECT_ID=code_assist.project)
    proxy = await start_proxy({PTYPE: [inst]})
    url = f"{proxy.url}/{PTYPE}/v1beta/models/gemini-2.5-flash:generateContent"
    async with aiohttp.ClientSession() as session:

        async def one() -> int:
            async with session.post(url, json=PROMPT, headers=HEADERS) as resp:
                await resp.read()
                return resp.status

        statuses = await asyncio.gather(*(one() for _ in range(100)))
    assert statuses == [200] * 100
    assert oauth.refreshes["google"] == 1
    assert oauth.hits == 1


async def test_rejected_token_mid_life_is_refreshed_once_and_retried(
    start_proxy: StartProxy, oauth: FakeOAuth, code_assist: FakeCodeAssist, tmp_path: Path
) -> None:
    creds = google_creds(tmp_path / "c.json", oauth, expired=False)
    inst = instance(code_assist, oauth, creds, "g1", PROJECT_ID=code_assist.project)
    proxy = await start_proxy({PTYPE: [inst]})
    oauth.revoke(read_json(creds)["access_token"])  # still "valid" by its expiry date
    status, body = await generate(proxy)
    assert status == 200, body
    assert oauth.refreshes["google"] == 1
    assert proxy.runtime.pool.failures == {}


async def test_refresh_failure_fails_over_to_another_instance(
    start_proxy: StartProxy, oauth: FakeOAuth, code_assist: FakeCodeAssist, tmp_path: Path
) -> None:
    dead = google_creds(tmp_path / "dead.json", oauth)
    oauth.refresh_tokens.discard(read_json(dead)["refresh_token"])  # revoked login
    good = google_creds(tmp_path / "good.json", oauth)
    project = code_assist.project
    proxy = await start_proxy(
        {
            PTYPE: [
                instance(code_assist, oauth, dead, "dead", PROJECT_ID=project),
                instance(code_assist, oauth, good, "good", PROJECT_ID=project),
            ]
        }
    )
    for _ in range(3):
        status, body = await generate(proxy)
        assert status == 200, body
    failures = proxy.runtime.pool.failures
    assert failures.get(("dead", "auth"), 0) >= 1
    assert ("good", "auth") not in failures
    # A failed refresh is not retried for every request: the token endpoint saw one
    # failed attempt for the dead credential.
    assert oauth.hits == 2
    assert dead.exists()


async def test_refresh_failure_of_the_only_instance_is_a_clean_401(
    start_proxy: StartProxy, oauth: FakeOAuth, code_assist: FakeCodeAssist, tmp_path: Path
) -> None:
    creds = google_creds(tmp_path / "c.json", oauth)
    secret_refresh = read_json(creds)["refresh_token"]
    oauth.fail_next(400)
    proxy = await start_proxy(
        {PTYPE: [instance(code_assist, oauth, creds, "g1")]}, request_max_retries=0
    )
    status, body = await generate(proxy)
    assert status == 401
    assert body["error"]["status"] == "UNAUTHENTICATED"
    assert "refresh" in body["error"]["message"]
    assert secret_refresh not in json.dumps(body)


async def test_quota_error_is_a_rate_limit_for_the_pool(
    start_proxy: StartProxy, oauth: FakeOAuth, code_assist: FakeCodeAssist, tmp_path: Path
) -> None:
    project = code_assist.project
    insts = [
        instance(code_assist, oauth, google_creds(tmp_path / f"{u}.json", oauth), u,
                 PROJECT_ID=project)
        for u in ("a", "b")
    ]  # fmt: skip
    proxy = await start_proxy({PTYPE: insts})
    code_assist.reply_status(
        429,
        {
            "error": {
                "code": 429,
                "message": "You have exhausted your capacity on this model.",
                "status": "RESOURCE_EXHAUSTED",
                "details": [
                    {
                        "@type": "type.googleapis.com/google.rpc.RetryInfo",
                        "retryDelay": "1.5s",
                    }
                ],
            }
        },
    )
    status, body = await generate(proxy)
    assert status == 200, body
    assert proxy.runtime.pool.failures == {("a", "rate_limited"): 1}


async def test_stream_is_unwrapped_event_by_event(
    start_proxy: StartProxy, oauth: FakeOAuth, code_assist: FakeCodeAssist, tmp_path: Path
) -> None:
    creds = google_creds(tmp_path / "c.json", oauth)
    proxy = await start_proxy({PTYPE: [instance(code_assist, oauth, creds, "g1")]})
    url = f"{proxy.url}/{PTYPE}/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json=PROMPT, headers=HEADERS) as resp,
    ):
        assert resp.status == 200
        raw = (await resp.read()).decode()
    events = [
        json.loads(line[6:]) for line in raw.splitlines() if line.startswith("data: ")
    ]
    assert len(events) == code_assist.stream_chunks
    assert all("response" not in e and "candidates" in e for e in events)
    text = "".join(e["candidates"][0]["content"]["parts"][0]["text"] for e in events)
    assert text == code_assist.default_text
    assert code_assist.last_request.query == {"alt": "sse"}


async def test_inline_base64_credentials_refresh_in_memory(
    start_proxy: StartProxy, oauth: FakeOAuth, code_assist: FakeCodeAssist, tmp_path: Path
) -> None:
    creds = google_creds(tmp_path / "c.json", oauth)
    encoded = base64.b64encode(creds.read_bytes()).decode()
    creds.unlink()
    inst = instance(
        code_assist, oauth, None, "g1", GEMINI_OAUTH_CREDS_BASE64=encoded,
        PROJECT_ID=code_assist.project,
    )  # fmt: skip
    proxy = await start_proxy({PTYPE: [inst]})
    for _ in range(2):
        status, _ = await generate(proxy)
        assert status == 200
    assert oauth.refreshes["google"] == 1
    assert not creds.exists()


async def test_model_list_and_count_tokens(
    start_proxy: StartProxy, oauth: FakeOAuth, code_assist: FakeCodeAssist, tmp_path: Path
) -> None:
    creds = google_creds(tmp_path / "c.json", oauth)
    proxy = await start_proxy({PTYPE: [instance(code_assist, oauth, creds, "g1")]})
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{proxy.url}/{PTYPE}/v1beta/models", headers=HEADERS) as r:
            names = [m["name"] for m in (await r.json())["models"]]
        assert "models/gemini-2.5-pro" in names
        url = f"{proxy.url}/{PTYPE}/v1beta/models/gemini-2.5-pro:countTokens"
        async with session.post(url, json=PROMPT, headers=HEADERS) as r:
            assert r.status == 200
            assert (await r.json())["totalTokens"] >= 1


@pytest.mark.parametrize("client", sorted(DRIVERS))
async def test_official_sdks_create_and_stream(
    start_proxy: StartProxy,
    oauth: FakeOAuth,
    code_assist: FakeCodeAssist,
    tmp_path: Path,
    client: str,
) -> None:
    creds = google_creds(tmp_path / "c.json", oauth)
    proxy = await start_proxy({PTYPE: [instance(code_assist, oauth, creds, "g1")]})
    sdk = DRIVERS[client](f"{proxy.url}/{PTYPE}")
    try:
        text, _ = await sdk.create("Hello there", system="Be brief.")
        assert text == code_assist.default_text
        assert await sdk.stream("Hello again") == code_assist.default_text
        turn = await sdk.tool_round_trip(stream=True)
        assert turn.name == "get_weather"
    finally:
        await sdk.close()
    assert oauth.refreshes["google"] == 1
