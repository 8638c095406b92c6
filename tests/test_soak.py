"""10,000 requests through random upstream faults: all succeed, nothing leaks."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import random
from collections.abc import Callable, Iterator
from types import FunctionType
from typing import Any

import aiohttp
import pytest

from aiclient.policy import ErrorPolicy
from tests.conftest import API_KEY, StartProxy, claude_instance, openai_instance
from tests.fakes import FakeClaude, FakeOpenAI

TOTAL = 10_000
WARMUP = 1_000
WORKERS = 64


def script_faults(fake: FakeOpenAI, count: int, rng: random.Random) -> None:
    """Every fault an upstream can throw before the first byte, mixed with answers."""
    for _ in range(count):
        roll = rng.random()
        if roll < 0.15:
            fake.reply_status(500)
        elif roll < 0.30:
            fake.reply_status(429, headers={"retry-after": "1"})
        elif roll < 0.42:
            fake.reply_reset()
        elif roll < 0.46:
            fake.reply_hang(1.2)  # longer than the read timeout
        elif roll < 0.60:
            fake.reply_cut_stream(0)  # a cut JSON body, or a stream cut before its start
        elif roll < 0.70:
            fake.reply_slow_first_byte(0.02)
        else:
            fake.reply_slow_first_byte(0)  # a normal answer


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


@pytest.fixture
def quiet_logs() -> Iterator[None]:
    """pytest keeps every captured log record; 40,000 of them would look like a leak."""
    logger = logging.getLogger("aiclient")
    level = logger.level
    logger.setLevel(logging.WARNING)
    yield
    logger.setLevel(level)


@pytest.mark.usefixtures("quiet_logs")
async def test_random_faults_never_reach_the_client_and_nothing_leaks(
    start_proxy: StartProxy, fake_openai: FakeOpenAI, fake_openai_2: FakeOpenAI
) -> None:
    faulty, healthy = fake_openai, fake_openai_2
    proxy = await start_proxy(
        {
            "openai-custom": [
                openai_instance(faulty, "flaky-1"),
                openai_instance(faulty, "flaky-2"),
                openai_instance(healthy, "steady"),
            ]
        },
        max_error_count=0,
        error_policy=ErrorPolicy({"*": {"rate_limited": "count"}}),  # no cooldowns
        request_max_retries=2,
        read_timeout_ms=1000,
    )
    relay = proxy.runtime.relay
    assert relay is not None
    script_faults(faulty, TOTAL + WARMUP + 1000, random.Random(2026))
    await asyncio.sleep(0.1)
    gc.collect()
    tasks_at_start, fds_at_start = len(asyncio.all_tasks()), open_fds()
    failures: list[Any] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=WORKERS)) as http:

        async def one(index: int) -> None:
            stream = index % 2 == 0
            body = {
                "model": "m",
                "stream": stream,
                "messages": [{"role": "user", "content": f"request {index}"}],
            }
            async with http.post(
                f"{proxy.url}/v1/chat/completions",
                json=body,
                headers={"Authorization": f"Bearer {API_KEY}"},
            ) as resp:
                text = await resp.text()
            complete = "[DONE]" in text if stream else '"choices"' in text
            if resp.status != 200 or not complete or '{"error"' in text:
                failures.append((index, resp.status, text[:200]))

        async def run(count: int) -> None:
            """WORKERS loops share the requests (no 10,000 tasks alive at once)."""
            numbers = iter(range(count))

            async def worker() -> None:
                for index in numbers:
                    await one(index)
                    if index % 1000 == 0:  # the fakes' request logs are not under test
                        faulty.requests.clear()
                        healthy.requests.clear()

            await asyncio.gather(*(worker() for _ in range(WORKERS)))

        await run(WARMUP)
        gc.collect()
        rss_after_warmup = rss_mib()
        await run(TOTAL)
    # Close every idle keep-alive connection (client's above, proxy's here) and let
    # the fake's hung handlers run out: then nothing may be left over.
    # Every upstream connection left is an idle keep-alive one (none stuck busy).
    assert relay.http.open_connections <= WORKERS * 3
    relay.http.close_idle()
    assert relay.http.open_connections == 0
    await asyncio.sleep(1.4)
    gc.collect()
    assert failures == []
    assert faulty.hits > TOTAL // 2
    assert healthy.hits > TOTAL // 4
    assert len(asyncio.all_tasks()) <= tasks_at_start
    assert open_fds() <= fds_at_start
    assert rss_mib() - rss_after_warmup < 25
    steady = proxy.runtime.pool.get("steady")
    assert steady is not None
    assert steady.state.in_flight == 0


def _ours(obj: object) -> bool:
    module = getattr(obj, "__module__", None) if isinstance(obj, FunctionType) else None
    return (module or type(obj).__module__ or "").startswith("aiclient")


async def test_requests_leave_nothing_for_the_cyclic_collector(
    start_proxy: StartProxy, fake_openai: FakeOpenAI, fake_claude: FakeClaude
) -> None:
    """A request's objects are freed when it ends, not when the cyclic collector next
    runs: a reference cycle per request (a closure holding the request whose state
    holds the closure) kept ~25 objects per request, the parsed body and the canonical
    request among them, alive until then, and the collector's passes cost ~5% of the
    CPU under load. Every kind of request: passthrough and converted, streamed or
    not, failed over, cut mid-stream, refused."""
    proxy = await start_proxy(
        {
            "openai-custom": [
                openai_instance(fake_openai, "o-1"),
                openai_instance(fake_openai, "o-2"),
            ],
            "claude-custom": [claude_instance(fake_claude, "c-1")],
        },
        max_error_count=0,
    )
    chat = {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}
    stream = {**chat, "stream": True}
    auth = {"Authorization": f"Bearer {API_KEY}"}
    to_claude = {**auth, "model-provider": "claude-custom"}
    gemini = f"/v1beta/models/m:generateContent?key={API_KEY}"

    def cut(fake: FakeOpenAI | FakeClaude) -> Callable[[], None]:
        return lambda: fake.reply_cut_stream(2)

    def nothing() -> None:
        pass

    # (path, body, headers, what the fakes do first, the status the client gets)
    calls: list[tuple[str, dict[str, Any], dict[str, str], Callable[[], None], int]] = [
        ("/v1/chat/completions", chat, auth, lambda: fake_openai.reply_status(500), 200),
        ("/v1/chat/completions", stream, auth, fake_openai.reply_reset, 200),
        ("/v1/chat/completions", stream, auth, cut(fake_openai), 200),
        ("/v1/chat/completions", chat, to_claude, nothing, 200),
        ("/v1/chat/completions", stream, to_claude, nothing, 200),
        ("/v1/chat/completions", stream, to_claude, cut(fake_claude), 200),
        ("/v1/messages", {**chat, "max_tokens": 10}, auth, nothing, 200),
        ("/v1/messages", {**stream, "max_tokens": 10}, auth, nothing, 200),
        (gemini, {"contents": [{"parts": [{"text": "Hi"}]}]}, {}, nothing, 200),
        ("/v1/chat/completions", {"model": "m", "messages": "no"}, auth, nothing, 400),
        ("/v1/messages", chat, {}, nothing, 401),
    ]

    async def run_all(http: aiohttp.ClientSession) -> None:
        for path, body, headers, prepare, status in calls:
            prepare()
            async with http.post(f"{proxy.url}{path}", json=body, headers=headers) as r:
                await r.read()
                assert r.status == status, path

    async with aiohttp.ClientSession() as http:
        await run_all(http)  # first-use caches are not garbage
        gc.collect()
        gc.disable()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            for _ in range(3):
                await run_all(http)
            gc.collect()
            left = sorted({type(o).__qualname__ for o in gc.garbage if _ours(o)})
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
    assert left == []
