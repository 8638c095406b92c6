"""Counters reach the pool file named by the settings: debounced, atomic, and on exit."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import pytest

from aiclient.pool import store
from tests.conftest import StartProxy, openai_instance, read_pools, send_chats
from tests.fakes import FakeOpenAI


async def test_counters_are_written_to_the_named_file_not_the_cwd(
    start_proxy: StartProxy, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    proxy = await start_proxy(
        {
            "openai-custom": [
                openai_instance(fake_openai, "a"),
                openai_instance(fake_openai, "b"),
            ]
        },
    )
    fake_openai.reply_status(500)
    await send_chats(proxy, 9)
    await proxy.flush()
    assert proxy.pools_path is not None
    written = read_pools(proxy.pools_path)["openai-custom"]
    by_uuid = {inst["uuid"]: inst for inst in written}
    assert by_uuid["a"]["usageCount"] + by_uuid["b"]["usageCount"] == 9
    assert sum(inst["errorCount"] for inst in written) == 0  # reset by later successes
    assert any(inst["lastErrorTime"] for inst in written)
    assert all(inst["lastUsed"].endswith("Z") for inst in written)
    assert all(inst["isHealthy"] is True for inst in written)
    assert Path.cwd() == tmp_path != proxy.pools_path.parent
    assert not Path("provider_pools.json").exists()


async def test_writes_are_debounced_not_one_per_request(
    start_proxy: StartProxy, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[int] = []
    real = store.atomic_write

    def counting(path: Path, data: bytes) -> None:
        writes.append(len(data))
        real(path, data)

    monkeypatch.setattr(store, "atomic_write", counting)
    proxy = await start_proxy(
        {"openai-custom": [openai_instance(fake_openai, "a")]}, pool_write_debounce_ms=300
    )
    await send_chats(proxy, 100)
    await proxy.flush()
    assert 1 <= len(writes) <= 6
    assert proxy.pools_path is not None
    assert read_pools(proxy.pools_path)["openai-custom"][0]["usageCount"] == 100


async def test_a_reader_never_sees_a_partial_file(
    start_proxy: StartProxy, fake_openai: FakeOpenAI
) -> None:
    proxy = await start_proxy(
        {"openai-custom": [openai_instance(fake_openai, "a")]}, pool_write_debounce_ms=1
    )
    assert proxy.pools_path is not None
    path = proxy.pools_path
    problems: list[str] = []
    reads = 0
    stop = threading.Event()

    def reader() -> None:
        nonlocal reads
        while not stop.is_set():
            try:
                json.loads(path.read_text(encoding="utf-8"))
                reads += 1
            except (OSError, ValueError) as exc:
                problems.append(repr(exc))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        await send_chats(proxy, 200)
        await proxy.flush()
    finally:
        stop.set()
        await asyncio.to_thread(thread.join)
    assert problems == []
    assert reads > 0
    assert read_pools(path)["openai-custom"][0]["usageCount"] == 200


async def test_state_is_flushed_when_the_server_stops(
    start_proxy: StartProxy, fake_openai: FakeOpenAI
) -> None:
    proxy = await start_proxy(
        {"openai-custom": [openai_instance(fake_openai, "a")]},
        pool_write_debounce_ms=60_000,
    )
    await send_chats(proxy, 1)  # the first change is written at once ...
    await send_chats(proxy, 3)  # ... the rest waits for the debounce period, or shutdown
    await proxy.server.close()
    assert proxy.pools_path is not None
    assert read_pools(proxy.pools_path)["openai-custom"][0]["usageCount"] == 4


async def test_unwritable_folder_is_logged_and_retried(
    start_proxy: StartProxy, fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    """A failing write never crashes the server, and succeeds once the disk recovers."""
    proxy = await start_proxy(
        {"openai-custom": [openai_instance(fake_openai, "a")]}, pool_write_debounce_ms=10
    )
    assert proxy.pools_path is not None
    folder = proxy.pools_path.parent
    folder.chmod(0o500)
    real = store.atomic_write
    failures = 0

    def failing(path: Path, data: bytes) -> None:
        nonlocal failures
        if failures < 3:
            failures += 1
            raise OSError(28, "No space left on device")
        real(path, data)

    folder.chmod(0o700)
    store_module_write = store.atomic_write
    store.atomic_write = failing
    try:
        await send_chats(proxy, 2)
        writer = proxy.runtime.writer
        assert writer is not None
        for _ in range(200):
            if read_pools(proxy.pools_path)["openai-custom"][0].get("usageCount") == 2:
                break
            await asyncio.sleep(0.01)
    finally:
        store.atomic_write = store_module_write
    assert failures == 3
    assert read_pools(proxy.pools_path)["openai-custom"][0]["usageCount"] == 2
    assert "No space left on device" in caplog.text
    assert [p for p in folder.iterdir() if p.name.endswith(".tmp")] == []
