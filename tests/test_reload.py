"""Editing provider_pools.json while the proxy runs: reloads, merges, survives bad edits."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from aiclient.pool import store
from tests.conftest import (
    API_KEY,
    Proxy,
    StartProxy,
    claude_instance,
    openai_instance,
    read_pools,
    send_chats,
)
from tests.fakes import FakeClaude, FakeOpenAI


def editor_save(path: Path, data: Any) -> None:
    """Save the way editors do: write a new file, rename it over the old one."""
    tmp = path.with_name(f"{path.name}.editor~")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


async def wait_for(condition: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def uuids(proxy: Proxy) -> set[str]:
    return {e.node.uuid for e in proxy.runtime.pool.entries()}


@pytest.fixture
async def proxy(start_proxy: StartProxy, fake_openai: FakeOpenAI) -> Proxy:
    return await start_proxy(
        {
            "openai-custom": [
                openai_instance(fake_openai, "a"),
                openai_instance(fake_openai, "b"),
            ]
        }
    )


def pools(proxy: Proxy) -> Path:
    assert proxy.pools_path is not None
    return proxy.pools_path


async def test_added_instance_joins_and_is_filled_in(
    proxy: Proxy, fake_openai: FakeOpenAI
) -> None:
    await send_chats(proxy, 4)
    await proxy.flush()
    data = read_pools(pools(proxy))
    new = openai_instance(fake_openai, "x")
    del new["uuid"]
    new["customName"] = "added by hand"
    data["openai-custom"].append(new)
    editor_save(pools(proxy), data)
    await wait_for(lambda: len(uuids(proxy)) == 3)
    added = next(e for e in proxy.runtime.pool.entries() if e.node.custom_name)
    await wait_for(
        lambda: all(
            "usageCount" in inst for inst in read_pools(pools(proxy))["openai-custom"]
        )
    )
    written = read_pools(pools(proxy))["openai-custom"][2]
    assert written["uuid"] == added.node.uuid
    assert written["isHealthy"] is True
    assert (written["usageCount"], written["errorCount"]) == (0, 0)
    assert written["customName"] == "added by hand"
    await send_chats(proxy, 6)
    assert added.state.usage_count == 2
    a, b = proxy.runtime.pool.get("a"), proxy.runtime.pool.get("b")
    assert a is not None and b is not None
    assert a.state.usage_count + b.state.usage_count == 8  # untouched instances kept


async def test_removed_instance_leaves_but_its_request_finishes(
    proxy: Proxy, fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply_slow_first_byte(0.5)
    in_flight = asyncio.ensure_future(send_chats(proxy, 1))
    await fake_openai.wait_for_hits(1)
    data = read_pools(pools(proxy))
    serving = next(i for i in data["openai-custom"] if i["uuid"] == "a")
    data["openai-custom"].remove(serving)
    editor_save(pools(proxy), data)
    await wait_for(lambda: uuids(proxy) == {"b"})
    await in_flight  # finishes on the removed instance
    await send_chats(proxy, 3)
    await proxy.flush()
    written = read_pools(pools(proxy))["openai-custom"]
    assert [i["uuid"] for i in written] == ["b"]
    assert written[0]["usageCount"] == 3


async def test_rotated_key_is_used_from_the_next_request(
    proxy: Proxy, fake_openai: FakeOpenAI
) -> None:
    fake_openai.api_keys.add("sk-rotated")
    await send_chats(proxy, 2)
    data = read_pools(pools(proxy))
    for inst in data["openai-custom"]:
        inst["OPENAI_API_KEY"] = "sk-rotated"
    editor_save(pools(proxy), data)
    await wait_for(
        lambda: all(
            e.node.settings["OPENAI_API_KEY"] == "sk-rotated"
            for e in proxy.runtime.pool.entries()
        )
    )
    fake_openai.clear()
    await send_chats(proxy, 4)
    keys = {r.headers["authorization"] for r in fake_openai.requests}
    assert keys == {"Bearer sk-rotated"}
    entry = proxy.runtime.pool.get("a")
    assert entry is not None and entry.state.usage_count == 3  # counters kept


async def test_disabling_and_adding_a_type_take_effect(
    proxy: Proxy, fake_openai: FakeOpenAI, fake_claude: FakeClaude
) -> None:
    data = read_pools(pools(proxy))
    data["openai-custom"][0]["isDisabled"] = True
    data["claude-custom"] = [claude_instance(fake_claude, "c")]
    editor_save(pools(proxy), data)
    await wait_for(lambda: proxy.runtime.pool.has_type("claude-custom"))
    await send_chats(proxy, 4)
    a = proxy.runtime.pool.get("a")
    assert a is not None and a.state.usage_count == 0
    async with aiohttp.ClientSession() as http:
        resp = await http.post(
            f"{proxy.url}/v1/messages",
            headers={"x-api-key": API_KEY},
            json={
                "model": "c",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "x"}],
            },
        )
    assert resp.status == 200
    assert fake_claude.hits == 1


async def test_user_resets_win_over_memory(proxy: Proxy) -> None:
    """Setting isHealthy back to true or usageCount to 0 by hand means it."""
    entry = proxy.runtime.pool.get("a")
    assert entry is not None
    await send_chats(proxy, 6)
    entry.state.healthy = False
    entry.state.error_count = 3
    await proxy.flush()
    data = read_pools(pools(proxy))
    data["openai-custom"][0].update(isHealthy=True, errorCount=0, usageCount=0)
    editor_save(pools(proxy), data)
    await wait_for(lambda: entry.state.healthy)
    assert entry.state.usage_count == 0
    assert entry.state.error_count == 0


async def test_own_writes_never_trigger_a_reload(
    proxy: Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = proxy.runtime.writer
    assert writer is not None
    reloads: list[int] = []
    real = writer._apply_config

    def counting(nodes: Any) -> None:
        reloads.append(1)
        real(nodes)

    monkeypatch.setattr(writer, "_apply_config", counting)
    for _ in range(5):
        await send_chats(proxy, 3)
        await proxy.flush()
    await asyncio.sleep(0.6)  # let the watcher see our own writes
    assert reloads == []


async def test_bad_edit_is_reported_kept_and_survived(
    proxy: Proxy, caplog: pytest.LogCaptureFixture
) -> None:
    await send_chats(proxy, 2)
    await proxy.flush()
    good = read_pools(pools(proxy))
    broken = pools(proxy).read_text().replace('"uuid": "b"', '"uuid": "b",,', 1)
    pools(proxy).write_text(broken)
    await wait_for(lambda: proxy.runtime.writer is not None and proxy.runtime.writer.paused)
    await send_chats(proxy, 5)  # still served, from the last good pool
    await proxy.flush()
    await proxy.flush()
    assert pools(proxy).read_text() == broken  # never overwritten
    errors = [
        r
        for r in caplog.records
        if "invalid JSON at line" in r.getMessage() and r.levelno >= logging.ERROR
    ]
    assert len(errors) == 1  # reported once, with the place
    async with aiohttp.ClientSession() as http, http.get(f"{proxy.url}/health") as resp:
        health = await resp.json()
    assert health["poolFile"]["writeBack"] == "paused"
    editor_save(pools(proxy), good)  # the fix
    await wait_for(lambda: not proxy.runtime.writer.paused)  # type: ignore[union-attr]
    await proxy.flush()
    total = sum(i["usageCount"] for i in read_pools(pools(proxy))["openai-custom"])
    assert total == 7  # no counter lost across the broken period


async def test_invalid_instance_edit_names_the_field(
    proxy: Proxy, caplog: pytest.LogCaptureFixture
) -> None:
    data = read_pools(pools(proxy))
    data["openai-custom"][1]["usageCount"] = "lots"
    editor_save(pools(proxy), data)
    await wait_for(lambda: "openai-custom[1].usageCount" in caplog.text)
    await send_chats(proxy, 2)
    assert uuids(proxy) == {"a", "b"}


async def test_a_save_racing_our_write_is_merged_not_lost(
    proxy: Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The user saves between the server's read and its rename: both survive."""
    real = store.atomic_write
    raced = False

    def racing_write(path: Path, data: bytes) -> bytes | None:
        nonlocal raced
        if not raced:
            raced = True
            edited = json.loads(path.read_text())
            edited["openai-custom"][0]["note"] = "saved mid-write"
            editor_save(path, edited)
        return real(path, data)

    monkeypatch.setattr(store, "atomic_write", racing_write)
    await send_chats(proxy, 3)
    await proxy.flush()
    written = read_pools(pools(proxy))["openai-custom"]
    assert raced
    assert written[0]["note"] == "saved mid-write"
    assert sum(i["usageCount"] for i in written) == 3


async def test_concurrent_requests_edits_and_a_polling_reader(
    start_proxy: StartProxy, fake_openai: FakeOpenAI
) -> None:
    """200 requests while the file is edited repeatedly and read every few ms."""
    proxy = await start_proxy(
        {"openai-custom": [openai_instance(fake_openai, f"n{i}") for i in range(3)]},
        pool_write_debounce_ms=5,
    )
    path = pools(proxy)
    problems: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                problems.append(repr(exc))
            time.sleep(0.002)

    async def editor() -> None:
        for k in range(10):
            data = await asyncio.to_thread(read_pools, path)
            data["openai-custom"][k % 3]["note"] = f"edit {k}"
            data.setdefault("notes", []).append(k)
            await asyncio.to_thread(editor_save, path, data)
            await asyncio.sleep(0.03)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        await asyncio.gather(send_chats(proxy, 200, concurrency=200), editor())
        await asyncio.sleep(0.6)  # the watcher picks up the last edit
        await proxy.flush()
    finally:
        stop.set()
        await asyncio.to_thread(thread.join)
    final = read_pools(path)
    assert problems == []
    assert final["notes"] == list(range(10))  # no edit lost
    notes = {inst["uuid"]: inst.get("note") for inst in final["openai-custom"]}
    assert notes == {"n0": "edit 9", "n1": "edit 7", "n2": "edit 8"}
    assert sum(inst["usageCount"] for inst in final["openai-custom"]) == 200
