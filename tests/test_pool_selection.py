"""Selection strategies: fair under concurrency, weights honoured, retries never repeat."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import aiohttp
import pytest

from aiclient.config import STRATEGIES, PoolStrategy
from aiclient.pool import ProviderNode, ProviderPool
from tests.conftest import API_KEY, StartProxy, openai_instance
from tests.fakes import FakeOpenAI

UIDS = ("a", "b", "c", "d")
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}


def node(uid: str, **settings: object) -> ProviderNode:
    return ProviderNode(
        uuid=uid,
        provider_type="openai-custom",
        settings={"OPENAI_API_KEY": "k", "uuid": uid, **settings},
    )


def make_pool(strategy: str, weights: dict[str, float] | None = None) -> ProviderPool:
    pool = ProviderPool(
        timer=lambda: 0.0,
        rng=random.Random(7),
        strategies={"openai-custom": PoolStrategy(strategy, weights)},
    )
    pool.load([node(u) for u in UIDS])
    return pool


async def concurrent_picks(pool: ProviderPool, count: int, seed: int) -> Counter[str]:
    """`count` requests at once; each holds its instance a random number of loop
    turns, so requests start and finish interleaved, as on a busy server."""
    rng = random.Random(seed)
    picks: Counter[str] = Counter()

    async def one() -> None:
        lease = pool.acquire("openai-custom")
        assert lease is not None
        picks[lease.node.uuid] += 1
        for _ in range(rng.randrange(5)):
            await asyncio.sleep(0)
        lease.success()

    await asyncio.gather(*(one() for _ in range(count)))
    return picks


@pytest.mark.parametrize("strategy", [s for s in STRATEGIES if s != "weighted"])
@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_100_concurrent_requests_spread_evenly(strategy: str, seed: int) -> None:
    picks = await concurrent_picks(make_pool(strategy), 100, seed)
    assert set(picks) == set(UIDS)
    assert all(20 <= n <= 30 for n in picks.values()), picks


async def test_weighted_follows_the_weights_exactly() -> None:
    pool = make_pool("weighted", {"a": 3, "b": 1, "c": 1, "d": 0})
    picks = await concurrent_picks(pool, 100, 1)
    assert picks == {"a": 60, "b": 20, "c": 20}


def test_weighted_uses_each_instances_own_weight_field() -> None:
    pool = ProviderPool(strategies={"openai-custom": PoolStrategy("weighted")})
    pool.load([node("a", weight=2), node("b")])
    order = []
    for _ in range(6):
        lease = pool.acquire("openai-custom")
        assert lease is not None
        order.append(lease.node.uuid)
        lease.release()
    assert Counter(order) == {"a": 4, "b": 2}
    assert order[:3] != ["a", "a", "b"] or order[3:] == ["a", "a", "b"]  # interleaved


def test_adaptive_prefers_the_faster_and_healthier_instance() -> None:
    now = [0.0]
    pool = ProviderPool(
        timer=lambda: now[0],
        strategies={"openai-custom": PoolStrategy("adaptive")},
    )
    pool.load([node("slow"), node("fast")])
    for uid, seconds in (("slow", 2.0), ("fast", 0.2)):
        lease = pool.acquire("openai-custom", exclude={"slow", "fast"} - {uid})
        assert lease is not None
        now[0] += seconds
        lease.success()
    picks: Counter[str] = Counter()
    for _ in range(10):
        lease = pool.acquire("openai-custom")
        assert lease is not None
        picks[lease.node.uuid] += 1
        lease.release()
    assert picks["fast"] == 10  # released at once: in flight never builds up


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_retries_never_pick_a_member_that_already_failed(strategy: str) -> None:
    pool = make_pool(strategy, {u: 1 for u in UIDS})
    for _ in range(20):
        tried: list[str] = []
        while (lease := pool.acquire("openai-custom", exclude=tried)) is not None:
            assert lease.node.uuid not in tried
            tried.append(lease.node.uuid)
            lease.release()
        assert sorted(tried) == list(UIDS)


def test_strategy_changes_at_run_time() -> None:
    pool = make_pool("round_robin")
    pool.set_strategy(
        "openai-custom", PoolStrategy("weighted", {"a": 1, "b": 0, "c": 0, "d": 0})
    )
    for _ in range(5):
        lease = pool.acquire("openai-custom")
        assert lease is not None and lease.node.uuid == "a"
        lease.release()


async def test_fair_through_the_proxy(
    start_proxy: StartProxy, fake_openai: FakeOpenAI
) -> None:
    """100 concurrent client requests over 4 instances: 25 each (round robin)."""
    proxy = await start_proxy(
        {"openai-custom": [openai_instance(fake_openai, u) for u in UIDS]}
    )
    async with aiohttp.ClientSession() as http:

        async def one() -> int:
            async with http.post(
                f"{proxy.url}/v1/chat/completions",
                json=CHAT,
                headers={"Authorization": f"Bearer {API_KEY}"},
            ) as resp:
                await resp.read()
                return resp.status

        statuses = await asyncio.gather(*(one() for _ in range(100)))
    assert set(statuses) == {200}
    usage = {e.node.uuid: e.state.usage_count for e in proxy.runtime.pool.entries()}
    assert usage == dict.fromkeys(UIDS, 25)


async def test_concurrency_limit_queues_then_refuses(
    start_proxy: StartProxy, fake_openai: FakeOpenAI
) -> None:
    proxy = await start_proxy(
        {
            "openai-custom": [
                openai_instance(fake_openai, "a", concurrencyLimit=1, queueLimit=1)
            ]
        }
    )
    fake_openai.reply_slow_first_byte(1.0)  # the other two arrive meanwhile
    fake_openai.reply_slow_first_byte(0)
    async with aiohttp.ClientSession() as http:

        async def one() -> tuple[int, str]:
            async with http.post(
                f"{proxy.url}/v1/chat/completions",
                json=CHAT,
                headers={"Authorization": f"Bearer {API_KEY}"},
            ) as resp:
                return resp.status, await resp.text()

        first = asyncio.ensure_future(one())
        await fake_openai.wait_for_hits(1)
        second = asyncio.ensure_future(one())  # waits in the queue
        for _ in range(100):
            if proxy.runtime.pool.waiters.get("openai-custom"):
                break
            await asyncio.sleep(0.005)
        third_status, third_text = await one()  # the queue is full
        assert (await first)[0] == 200
        assert (await second)[0] == 200
    assert third_status == 429
    assert "concurrency limit" in third_text
    assert fake_openai.hits == 2
