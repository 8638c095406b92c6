"""/metrics in Prometheus format, the status page (in headless Chromium) and its JSON."""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aiclient.metrics import Metrics
from aiclient.metrics_share import MetricsShare
from aiclient.pool import ProviderPool
from tests.conftest import API_KEY, OPENAI_KEY, Proxy, StartProxy, openai_instance
from tests.fakes import FakeOpenAI
from tests.test_pool_manager import node

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}


@pytest.fixture
async def proxy(start_proxy: StartProxy, fake_openai: FakeOpenAI) -> Proxy:
    return await start_proxy(
        {
            "openai-custom": [
                openai_instance(fake_openai, "a", customName="primary"),
                openai_instance(fake_openai, "b"),
                openai_instance(fake_openai, "c", isDisabled=True),
            ]
        },
        request_max_retries=0,
    )


async def traffic(proxy: Proxy, fake: FakeOpenAI) -> None:
    fake.reply_status(500)  # instance a fails once
    async with openai.AsyncOpenAI(
        base_url=f"{proxy.url}/v1", api_key=API_KEY, max_retries=0
    ) as client:
        for _ in range(5):
            try:
                await client.chat.completions.create(**CHAT)  # type: ignore[call-overload]
            except openai.InternalServerError:
                pass


async def get(proxy: Proxy, path: str, **headers: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(proxy.url + path, headers=headers) as resp,
    ):
        return resp.status, await resp.text()


async def test_metrics_need_the_key_and_count_by_instance(
    proxy: Proxy, fake_openai: FakeOpenAI
) -> None:
    await traffic(proxy, fake_openai)
    status, _ = await get(proxy, "/metrics")
    assert status == 401
    status, text = await get(proxy, "/metrics", Authorization=f"Bearer {API_KEY}")
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(text)}
    requests = {
        (s.labels["instance"], s.labels["status"]): s.value
        for s in families["aiclient_requests"].samples
        if s.name == "aiclient_requests_total"
        and s.labels["route"] == "/v1/chat/completions"
    }
    assert requests == {("a", "500"): 1.0, ("a", "200"): 2.0, ("b", "200"): 2.0}
    names = {
        s.labels["instance"]: s.labels["name"]
        for s in families["aiclient_requests"].samples
    }
    assert names["a"] == "primary"
    counts = {
        s.labels["instance"]: s.value
        for s in families["aiclient_request_duration_seconds"].samples
        if s.name == "aiclient_request_duration_seconds_count"
    }
    assert counts == {"a": 3.0, "b": 2.0}
    failures = {
        (s.labels["instance"], s.labels["class"]): s.value
        for s in families["aiclient_upstream_failures"].samples
        if s.name == "aiclient_upstream_failures_total"
    }
    assert failures == {("a", "server"): 1.0}
    healthy = {
        s.labels["instance"]: s.value for s in families["aiclient_instance_healthy"].samples
    }
    assert healthy == {"a": 1.0, "b": 1.0, "c": 0.0}
    assert OPENAI_KEY not in text


async def test_metrics_can_be_opened_by_config(
    start_proxy: StartProxy, fake_openai: FakeOpenAI
) -> None:
    proxy = await start_proxy(
        {"openai-custom": [openai_instance(fake_openai, "a")]}, metrics_public=True
    )
    status, text = await get(proxy, "/metrics")
    assert status == 200
    assert "aiclient_instance_in_flight" in text


async def test_status_json_shows_each_instance_without_secrets(
    proxy: Proxy, fake_openai: FakeOpenAI
) -> None:
    await traffic(proxy, fake_openai)
    status, _ = await get(proxy, "/status.json")
    assert status == 401
    status, text = await get(proxy, f"/status.json?key={API_KEY}")
    assert status == 200
    import json

    data = json.loads(text)
    instances = {i["uuid"]: i for i in data["pools"]["openai-custom"]}
    assert instances["a"]["customName"] == "primary"
    assert instances["a"]["state"] == "healthy"
    assert instances["c"]["state"] == "disabled"
    assert instances["a"]["usageCount"] + instances["b"]["usageCount"] == 4
    assert instances["b"]["latencyMs"] is not None
    assert OPENAI_KEY not in text
    assert API_KEY not in text


def _browser() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(
    _browser() is None,
    reason="no Chromium on this machine "
    "(scripts/install installs Debian's chromium where apt can)",
)
async def test_status_page_renders_live_state_in_a_browser(
    proxy: Proxy, fake_openai: FakeOpenAI
) -> None:
    await traffic(proxy, fake_openai)
    browser = _browser()
    assert browser is not None
    with tempfile.TemporaryDirectory() as profile:
        process = await asyncio.create_subprocess_exec(
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=3000",
            "--dump-dom",
            f"{proxy.url}/status?key={API_KEY}",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        dom, _ = await asyncio.wait_for(process.communicate(), 60)
    page = dom.decode()
    assert 'data-provider-type="openai-custom"' in page
    assert "primary (a)" in page
    assert 'class="state healthy"' in page
    assert 'class="state disabled"' in page
    assert OPENAI_KEY not in page


def test_the_secret_check_of_the_whole_run_catches_a_leak() -> None:
    """The check in tests/conftest.py sees every log line of the run and would fail
    the whole run on a secret."""
    from tests.conftest import LEAKS, LINES_CHECKED, leaked_secrets

    assert leaked_secrets(
        ["aiclient INFO POST /v1/messages key=sk-live-123"], {"sk-live-123", "other"}
    ) == ["sk-live-123"]
    before = LINES_CHECKED[0]
    logging.getLogger("aiclient.test").info("a line with no secret")
    assert LINES_CHECKED[0] == before + 1
    assert LEAKS == []


async def test_upstream_error_echoing_a_key_is_scrubbed(
    proxy: Proxy, fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply_status(
        401,
        {"error": {"message": f"bad key {OPENAI_KEY}", "type": "invalid_request_error"}},
    )
    async with aiohttp.ClientSession() as http:
        resp = await http.post(
            f"{proxy.url}/v1/chat/completions",
            json=CHAT,
            headers={"Authorization": f"Bearer {API_KEY}"},
        )
        text = await resp.text()
    assert resp.status == 401
    assert "bad key ***" in text
    assert OPENAI_KEY not in text


def test_a_scrape_adds_the_other_workers_snapshots_and_skips_broken_ones() -> None:
    """--workers: the answering worker's counters plus its peers'; a peer file that is
    malformed (a half-written or foreign file) is skipped, never a failed scrape."""
    pool = ProviderPool()
    pool.load([node("a"), node("b")])
    mine = Metrics(pool)
    mine.observe("/v1/chat/completions", "openai-custom", "a", 200, 0.02)
    peer = Metrics(pool)
    for _ in range(3):
        peer.observe("/v1/chat/completions", "openai-custom", "a", 200, 0.3)
    peer.observe("/v1/chat/completions", "openai-custom", "b", 502, 0.1)
    broken: list[dict[str, Any]] = [
        {"requests": [["/v1/chat/completions", "x"]]},
        {"latency": "nope"},
        {},
    ]
    text = mine.render([peer.snapshot(), *broken]).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    requests = {
        (s.labels["instance"], s.labels["status"]): s.value
        for s in families["aiclient_requests"].samples
        if s.name == "aiclient_requests_total"
    }
    assert requests == {("a", "200"): 4.0, ("b", "502"): 1.0}
    counts = {
        s.labels["instance"]: s.value
        for s in families["aiclient_request_duration_seconds"].samples
        if s.name == "aiclient_request_duration_seconds_count"
    }
    assert counts == {"a": 4.0, "b": 1.0}
    # A restarted worker takes over its previous life's counts.
    reborn = Metrics(pool)
    reborn.absorb(peer.snapshot())
    assert reborn.snapshot()["requests"] == peer.snapshot()["requests"]
    # Its own render (no peers) is unchanged by the scrape above.
    assert b'status="502"' not in mine.render()


async def test_a_failing_metrics_share_warns_once_then_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The shared folder vanishing (a tmp cleaner) must not log every second."""
    pool = ProviderPool()
    pool.load([node("a")])
    metrics = Metrics(pool)
    share = MetricsShare(tmp_path / "gone", 0)
    caplog.set_level("WARNING", logger="aiclient.metrics_share")
    for _ in range(5):
        await share.publish(metrics)
    assert len(caplog.records) == 1
    (tmp_path / "gone").mkdir()
    await share.publish(metrics)
    assert (tmp_path / "gone" / "worker-0.json").exists()
    assert "works again" in caplog.records[-1].getMessage()
    assert len(caplog.records) == 2
