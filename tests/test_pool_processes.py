"""Real processes on one pool file: two servers add up, kill -9 never corrupts it."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from aiclient.bootstrap import open_pools
from aiclient.config import Settings
from tests.conftest import openai_instance, read_pools, write_pools
from tests.fakes import FakeOpenAI
from tests.procs import serve

CHAT = {"model": "m", "messages": [{"role": "user", "content": "x"}]}


def config(tmp_path: Path, **extra: Any) -> None:
    (tmp_path / "config.json").write_text(
        json.dumps({"REQUIRED_API_KEY": "k", "LOG_LEVEL": "warning", **extra})
    )


async def hammer(url: str, count: int, concurrency: int = 16) -> int:
    ok = 0
    gate = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession() as http:

        async def one() -> None:
            nonlocal ok
            async with (
                gate,
                http.post(f"{url}/v1/chat/completions?key=k", json=CHAT) as resp,
            ):
                await resp.read()
                ok += resp.status == 200

        await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)
    return ok


async def flood(url: str, workers: int) -> None:
    """Send requests from `workers` loops until cancelled."""
    async with aiohttp.ClientSession() as http:

        async def loop() -> None:
            while True:
                try:
                    async with http.post(
                        f"{url}/v1/chat/completions?key=k", json=CHAT
                    ) as resp:
                        await resp.read()
                except aiohttp.ClientError:
                    await asyncio.sleep(0.01)

        await asyncio.gather(*(loop() for _ in range(workers)))


async def test_two_servers_on_one_file_add_up(tmp_path: Path) -> None:
    async with FakeOpenAI() as fake:
        path = write_pools(
            tmp_path / "provider_pools.json",
            {"openai-custom": [openai_instance(fake, "a"), openai_instance(fake, "b")]},
        )
        config(tmp_path, POOL_WRITE_DEBOUNCE_MS=20)
        (first, url1), (second, url2) = await asyncio.gather(
            serve(cwd=tmp_path), serve(cwd=tmp_path)
        )
        try:
            served = await asyncio.gather(hammer(url1, 150), hammer(url2, 150))
        finally:
            for process in (first, second):
                process.send_signal(signal.SIGTERM)
            await asyncio.gather(first.communicate(), second.communicate())
    assert list(served) == [150, 150]
    assert (first.returncode, second.returncode) == (0, 0)
    total = sum(inst["usageCount"] for inst in read_pools(path)["openai-custom"])
    assert total == 300


async def test_kill_9_under_load_leaves_a_valid_file(tmp_path: Path) -> None:
    """At any moment: the file parses and validates, and nothing written is lost."""
    async with FakeOpenAI() as fake:
        path = write_pools(
            tmp_path / "provider_pools.json",
            {"openai-custom": [openai_instance(fake, f"n{i}") for i in range(3)]},
        )
        config(tmp_path, POOL_WRITE_DEBOUNCE_MS=1)
        rng = random.Random(7)
        for _ in range(4):
            process, url = await serve(cwd=tmp_path)
            load = asyncio.ensure_future(flood(url, 8))
            await asyncio.sleep(0.3 + rng.random() * 0.4)
            before = sum(i.get("usageCount", 0) for i in read_pools(path)["openai-custom"])
            process.kill()
            await process.communicate()
            load.cancel()
            await asyncio.gather(load, return_exceptions=True)
            after = await asyncio.to_thread(open_pools, Settings(pools_file=str(path)))
            counts = [i["usageCount"] for i in read_pools(path)["openai-custom"]]
            assert after.nodes  # validates, every instance intact
            assert sum(counts) >= before > 0
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []  # a restart removes what a killed write left behind


async def test_folder_vanishing_and_coming_back(tmp_path: Path) -> None:
    """The server keeps serving; writes resume (with every count) once it is back."""
    folder = tmp_path / "pools"
    folder.mkdir()
    async with FakeOpenAI() as fake:
        path = write_pools(
            folder / "provider_pools.json", {"openai-custom": [openai_instance(fake, "a")]}
        )
        config(tmp_path, POOL_WRITE_DEBOUNCE_MS=20, PROVIDER_POOLS_FILE_PATH=str(path))
        process, url = await serve(cwd=tmp_path)
        try:
            assert await hammer(url, 5) == 5
            await asyncio.sleep(0.2)
            moved = tmp_path / "elsewhere"
            folder.rename(moved)
            assert await hammer(url, 7) == 7
            await asyncio.sleep(0.2)
            moved.rename(folder)
            assert await hammer(url, 1) == 1
            for _ in range(100):
                if read_pools(path)["openai-custom"][0]["usageCount"] == 13:
                    break
                await asyncio.sleep(0.05)
        finally:
            process.send_signal(signal.SIGTERM)
            _, err = await process.communicate()
    assert process.returncode == 0
    assert read_pools(path)["openai-custom"][0]["usageCount"] == 13
    assert "No such file or directory; will retry" in err.decode()


async def test_read_only_file_is_respected_then_resumed(tmp_path: Path) -> None:
    async with FakeOpenAI() as fake:
        path = write_pools(
            tmp_path / "provider_pools.json",
            {"openai-custom": [openai_instance(fake, "a")]},
        )
        config(tmp_path, POOL_WRITE_DEBOUNCE_MS=20)
        process, url = await serve(cwd=tmp_path)
        try:
            path.chmod(0o444)
            before = path.read_bytes()
            assert await hammer(url, 4) == 4
            await asyncio.sleep(0.3)
            assert path.read_bytes() == before
            path.chmod(0o644)
            assert await hammer(url, 1) == 1
            for _ in range(100):
                if read_pools(path)["openai-custom"][0].get("usageCount") == 5:
                    break
                await asyncio.sleep(0.05)
        finally:
            process.send_signal(signal.SIGTERM)
            _, err = await process.communicate()
    assert read_pools(path)["openai-custom"][0]["usageCount"] == 5
    assert "read-only" in err.decode()


async def test_workers_share_the_port_and_the_file(tmp_path: Path) -> None:
    """--workers 2: both processes serve one port; the counts on disk add up."""
    async with FakeOpenAI() as fake:
        path = write_pools(
            tmp_path / "provider_pools.json",
            {"openai-custom": [openai_instance(fake, "a")]},
        )
        config(tmp_path, POOL_WRITE_DEBOUNCE_MS=20)
        process, url = await serve("--workers", "2", cwd=tmp_path)
        pids: set[int] = set()
        try:
            async with aiohttp.ClientSession() as http:
                for _ in range(200):
                    # a new connection each time, so the kernel can pick either worker
                    async with http.get(
                        f"{url}/health", headers={"Connection": "close"}
                    ) as resp:
                        pids.add((await resp.json())["pid"])
                    if len(pids) == 2:
                        break
            assert await hammer(url, 120) == 120
        finally:
            process.send_signal(signal.SIGTERM)
            await process.communicate()
    assert process.returncode == 0
    assert len(pids) == 2
    assert process.pid not in pids
    assert read_pools(path)["openai-custom"][0]["usageCount"] == 120


async def chat_requests_seen(http: aiohttp.ClientSession, url: str) -> float:
    """The chat requests /metrics reports, from whichever worker takes the connection."""
    async with http.get(f"{url}/metrics?key=k", headers={"Connection": "close"}) as resp:
        text = await resp.text()
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "aiclient_requests_total"
        and s.labels["route"] == "/v1/chat/completions"
    )


async def settles_on(http: aiohttp.ClientSession, url: str, expected: float) -> None:
    """Twenty scrapes in a row (each on a new connection, so either worker may answer)
    all report `expected`. A worker's shared snapshot lags its live counts by up to one
    interval, hence the retries; without sharing, no worker alone could report it."""
    last: set[float] = set()
    async with asyncio.timeout(15):
        while last != {expected}:
            last = {await chat_requests_seen(http, url) for _ in range(20)}
            await asyncio.sleep(0.05)


async def worker_pids(http: aiohttp.ClientSession, url: str) -> set[int]:
    pids: set[int] = set()
    for _ in range(200):
        async with http.get(f"{url}/health", headers={"Connection": "close"}) as resp:
            pids.add((await resp.json())["pid"])
        if len(pids) == 2:
            break
    return pids


async def test_metrics_of_workers_add_up_whichever_answers(tmp_path: Path) -> None:
    """--workers 2: every scrape reports the group's requests, not one worker's (a
    series jumping between two processes' counts reads as resets), and a restarted
    worker carries on from its last snapshot instead of starting from zero."""
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    async with FakeOpenAI() as fake:
        write_pools(
            tmp_path / "provider_pools.json",
            {"openai-custom": [openai_instance(fake, "a")]},
        )
        config(tmp_path, WORKER_METRICS_INTERVAL_MS=50)
        process, url = await serve(
            "--workers", "2", cwd=tmp_path, env={"TMPDIR": str(private_tmp)}
        )
        try:
            async with aiohttp.ClientSession() as http:
                for _ in range(60):  # a new connection each: both workers serve some
                    async with http.post(
                        f"{url}/v1/chat/completions?key=k",
                        json=CHAT,
                        headers={"Connection": "close"},
                    ) as resp:
                        assert resp.status == 200
                pids = await worker_pids(http, url)
                assert len(pids) == 2
                (shared,) = private_tmp.glob("aiclient-workers-*")
                assert sorted(p.name for p in shared.glob("worker-*.json")) == [
                    "worker-0.json",
                    "worker-1.json",
                ]
                await settles_on(http, url, 60)
                victim = min(pids)
                os.kill(victim, signal.SIGKILL)
                async with asyncio.timeout(15):
                    while True:  # the parent restarts it (after a second)
                        try:
                            now = await worker_pids(http, url)
                        except aiohttp.ClientConnectionError:
                            # a connection the kernel had already queued on the killed
                            # worker's socket is reset with it
                            now = set()
                        if len(now) == 2 and victim not in now:
                            break
                        await asyncio.sleep(0.1)
                await settles_on(http, url, 60)
        finally:
            process.send_signal(signal.SIGTERM)
            await process.communicate()
    assert process.returncode == 0
    assert list(private_tmp.iterdir()) == []  # the parent removed the shared folder
