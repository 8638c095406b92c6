"""The admin API: its own key, per-instance state and actions, strategies persisted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import (
    API_KEY,
    OPENAI_KEY,
    Proxy,
    StartProxy,
    openai_instance,
    read_pools,
)
from tests.fakes import FakeOpenAI

ADMIN_KEY = "admin-test-key"
BASE = "/admin/api/v1"


async def admin(
    proxy: Proxy, method: str, path: str, *, key: str = ADMIN_KEY, body: Any = None
) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.request(
            method,
            f"{proxy.url}{BASE}{path}",
            json=body,
            headers={"Authorization": f"Bearer {key}"},
        ) as resp,
    ):
        return resp.status, await resp.json(content_type=None)


@pytest.fixture
async def proxy(start_proxy: StartProxy, fake_openai: FakeOpenAI, tmp_path: Path) -> Proxy:
    config = tmp_path / "config.json"
    config.write_text('{\n    "SERVER_PORT": 3000,\n    "myOwnKey": [1, 2]\n}\n')
    return await start_proxy(
        {
            "openai-custom": [
                openai_instance(fake_openai, "a", customName="main"),
                openai_instance(fake_openai, "b"),
            ]
        },
        admin_api_key=ADMIN_KEY,
        config_file=str(config),
    )


@pytest.mark.parametrize("key", [API_KEY, "", "wrong"])
async def test_admin_api_refuses_the_client_key_and_any_other(
    proxy: Proxy, key: str
) -> None:
    status, body = await admin(proxy, "GET", "/providers/status", key=key)
    assert status == 401
    assert "ADMIN_API_KEY" in body["error"]["message"]


async def test_admin_api_is_absent_without_its_key(
    start_proxy: StartProxy, fake_openai: FakeOpenAI
) -> None:
    plain = await start_proxy({"openai-custom": [openai_instance(fake_openai, "a")]})
    for key in (API_KEY, ""):
        status, _ = await admin(plain, "GET", "/providers/status", key=key)
        assert status == 404


async def test_providers_status_shows_state_and_no_secrets(
    proxy: Proxy, fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply_status(429, headers={"retry-after": "40"})
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{proxy.url}/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "Hi"}]},
            headers={"Authorization": f"Bearer {API_KEY}"},
        ) as resp,
    ):
        assert resp.status == 200  # failed over to b
    status, body = await admin(proxy, "GET", "/providers/status")
    assert status == 200
    assert OPENAI_KEY not in json.dumps(body)
    by_uuid = {p["uuid"]: p for p in body["providers"]}
    a = by_uuid["a"]
    assert (a["type"], a["customName"], a["state"], a["reason"]) == (
        "openai-custom",
        "main",
        "cooling",
        "rate_limited",
    )
    assert a["cooldownUntil"] and a["isHealthy"] is False
    assert by_uuid["b"]["state"] == "active" and by_uuid["b"]["usageCount"] == 1
    status, body = await admin(proxy, "GET", "/pools")
    pool = body["pools"]["openai-custom"]
    assert (pool["strategy"], pool["active"], pool["standby"]) == ("round_robin", 1, 1)
    assert pool["totalRequests"] == 2 and pool["rotationEvents"] == 1


async def test_disable_enable_reset_are_written_back(proxy: Proxy) -> None:
    status, body = await admin(proxy, "POST", "/providers/a/disable")
    assert status == 200
    assert (body["provider"]["state"], body["provider"]["reason"]) == ("standby", "manual")
    await proxy.flush()
    written = read_pools(proxy.pools_path)["openai-custom"][0]  # type: ignore[arg-type]
    assert (written["isHealthy"], written["state"], written["stateReason"]) == (
        False,
        "standby",
        "manual",
    )
    status, body = await admin(proxy, "POST", "/providers/a/enable")
    assert body["provider"]["state"] == "active"
    entry = proxy.runtime.pool.get("a")
    assert entry is not None
    entry.state.error_count = 2
    status, body = await admin(proxy, "POST", "/providers/a/reset")
    assert body["provider"]["errorCount"] == 0
    status, body = await admin(proxy, "POST", "/providers/nope/reset")
    assert status == 404


async def test_check_probes_at_once(proxy: Proxy, fake_openai: FakeOpenAI) -> None:
    await admin(proxy, "POST", "/providers/b/disable")
    fake_openai.reply_status(401)
    status, body = await admin(proxy, "POST", "/providers/b/check")
    assert status == 200
    assert body["passed"] is False
    assert (body["provider"]["state"], body["provider"]["reason"]) == (
        "standby",
        "auth_failed",
    )
    status, body = await admin(proxy, "POST", "/providers/b/check")
    assert body["passed"] is True and body["provider"]["state"] == "active"


async def test_put_pool_changes_strategy_now_and_keeps_config_json(
    proxy: Proxy, tmp_path: Path
) -> None:
    status, body = await admin(
        proxy,
        "PUT",
        "/pools/openai-custom",
        body={"strategy": "weighted", "weights": {"a": 3, "b": 1}},
    )
    assert status == 200
    assert body["pool"]["strategy"] == "weighted"
    assert body["pool"]["weights"] == {"a": 3, "b": 1}
    picks = []
    for _ in range(8):
        lease = proxy.runtime.pool.acquire("openai-custom")
        assert lease is not None
        picks.append(lease.node.uuid)
        lease.release()
    assert picks.count("a") == 6
    text = (tmp_path / "config.json").read_text()
    assert text.startswith('{\n    "SERVER_PORT": 3000')  # formatting kept
    saved = json.loads(text)
    assert saved["myOwnKey"] == [1, 2]
    assert saved["poolStrategies"]["openai-custom"] == {
        "strategy": "weighted",
        "weights": {"a": 3, "b": 1},
    }
    status, body = await admin(proxy, "PUT", "/pools/openai-custom", body={"strategy": "x"})
    assert status == 400


async def test_health_status_and_metrics_show_state_and_reason(proxy: Proxy) -> None:
    await admin(proxy, "POST", "/providers/a/disable")
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{proxy.url}/health") as resp:
            health = await resp.json()
        async with http.get(f"{proxy.url}/status.json", headers=headers) as resp:
            status = await resp.json()
        async with http.get(f"{proxy.url}/metrics", headers=headers) as resp:
            metrics = await resp.text()
    assert health["outOfRotation"] == [
        {
            "type": "openai-custom",
            "instance": "main",
            "state": "standby",
            "reason": "manual",
            "cooldownUntil": None,
        }
    ]
    assert health["pools"]["openai-custom"]["standby"] == 1
    a = status["pools"]["openai-custom"][0]
    assert (a["status"], a["reason"]) == ("standby", "manual")
    assert 'state="standby"' in metrics and 'reason="manual"' in metrics
