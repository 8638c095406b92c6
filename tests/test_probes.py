"""Health probes: out instances come back when they pass; time and rounds injected."""

from __future__ import annotations

import asyncio

from aiclient.probes import HealthChecker
from tests.conftest import (
    Proxy,
    StartProxy,
    claude_instance,
    gemini_instance,
    openai_instance,
    read_pools,
)
from tests.fakes import FakeClaude, FakeGemini, FakeOpenAI


def checker(proxy: Proxy) -> HealthChecker:
    assert proxy.runtime.checker is not None
    return proxy.runtime.checker


async def test_a_probe_that_fails_then_passes_brings_the_instance_back(
    start_proxy: StartProxy, fake_openai: FakeOpenAI
) -> None:
    proxy = await start_proxy(
        {
            "openai-custom": [
                openai_instance(fake_openai, "a", isHealthy=False, errorCount=3),
                openai_instance(
                    fake_openai,
                    "off",
                    isHealthy=False,
                    stateReason="manual",
                    state="standby",
                ),
            ]
        }
    )
    fake_openai.reply_status(500)
    assert await checker(proxy).run_once() == {"a": False}  # "off" waits for the admin
    entry = proxy.runtime.pool.get("a")
    assert entry is not None
    assert (entry.state.status, entry.state.reason) == ("standby", "health_check_failed")
    assert await checker(proxy).run_once() == {"a": True}
    assert (entry.state.status, entry.state.error_count) == ("active", 0)
    sent = fake_openai.requests[-1].json
    assert sent["model"] == "gpt-4o-mini"  # checkModelName
    assert sent["max_tokens"] == 16  # enough for a reasoning model
    await proxy.flush()
    written = read_pools(proxy.pools_path)["openai-custom"][0]  # type: ignore[arg-type]
    assert (written["isHealthy"], written["errorCount"], written["state"]) == (
        True,
        0,
        "active",
    )


async def test_cooling_instances_are_probed_only_after_their_deadline(
    start_proxy: StartProxy, fake_claude: FakeClaude
) -> None:
    proxy = await start_proxy({"claude-custom": [claude_instance(fake_claude, "c")]})
    pool = proxy.runtime.pool
    now = [pool.now()]
    pool.clock = lambda: now[0]
    entry = pool.get("c")
    assert entry is not None
    pool.failed(entry, "rate_limited", 30, now[0])
    assert await checker(proxy).run_once() == {}
    now[0] += 30
    assert await checker(proxy).run_once() == {"c": True}
    assert entry.state.status == "active"
    sent = fake_claude.requests[-1].json
    assert sent["max_tokens"] == 16 and sent["model"] == "claude-3-7-sonnet-20250219"


async def test_check_health_instances_are_probed_and_taken_out_on_failure(
    start_proxy: StartProxy, fake_gemini: FakeGemini
) -> None:
    proxy = await start_proxy(
        {"gemini-custom": [gemini_instance(fake_gemini, "g", checkHealth=True)]}
    )
    fake_gemini.reply_status(503)
    assert await checker(proxy).run_once() == {"g": False}
    entry = proxy.runtime.pool.get("g")
    assert entry is not None
    assert (entry.state.status, entry.state.reason) == ("standby", "health_check_failed")
    body = fake_gemini.requests[-1].json
    assert body["generationConfig"]["maxOutputTokens"] == 16


async def test_at_most_one_probe_per_instance_at_a_time(
    start_proxy: StartProxy, fake_openai: FakeOpenAI
) -> None:
    proxy = await start_proxy(
        {"openai-custom": [openai_instance(fake_openai, "a", isHealthy=False)]}
    )
    fake_openai.reply_slow_first_byte(0.1)
    entry = proxy.runtime.pool.get("a")
    assert entry is not None
    results = await asyncio.gather(*(checker(proxy).check(entry) for _ in range(5)))
    assert results == [True] * 5
    assert fake_openai.hits == 1


async def test_a_rate_limited_probe_cools_down_again(
    start_proxy: StartProxy, fake_openai: FakeOpenAI
) -> None:
    proxy = await start_proxy(
        {"openai-custom": [openai_instance(fake_openai, "a", isHealthy=False)]}
    )
    fake_openai.reply_status(429, headers={"retry-after": "12"})
    assert await checker(proxy).run_once() == {"a": False}
    entry = proxy.runtime.pool.get("a")
    assert entry is not None
    assert (entry.state.status, entry.state.reason) == ("cooling", "rate_limited")
    assert checker(proxy).due() == []


async def test_the_lifecycle_probes_on_its_period(
    start_proxy: StartProxy, fake_openai: FakeOpenAI
) -> None:
    proxy = await start_proxy(
        {"openai-custom": [openai_instance(fake_openai, "a", isHealthy=False)]},
        health_check_interval_ms=30,
    )
    entry = proxy.runtime.pool.get("a")
    assert entry is not None
    for _ in range(200):
        if entry.state.healthy:
            break
        await asyncio.sleep(0.01)
    assert entry.state.healthy
