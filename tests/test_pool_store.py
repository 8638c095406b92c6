"""The pool file: validation messages, and write-back that never loses or corrupts."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from aiclient.errors import ConfigError, UpstreamConnectError
from aiclient.pool import ProviderPool
from aiclient.pool.store import JsonStyle, PoolFile, merge_field, parse_pools

REPO = Path(__file__).resolve().parent.parent


def no_globals(key: str) -> Any:
    return None


def pools_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pools" / "provider_pools.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def load(path: Path) -> tuple[PoolFile, ProviderPool]:
    store = PoolFile(path, no_globals)
    loaded = store.load()
    pool = ProviderPool(max_error_count=3)
    pool.load(loaded.nodes)
    return store, pool


def test_invalid_json_reports_line_and_column(tmp_path: Path) -> None:
    path = pools_file(tmp_path, '{\n  "openai-custom": [\n    {"uuid": "a",}\n  ]\n}\n')
    with pytest.raises(ConfigError) as info:
        parse_pools(path.read_bytes(), path, no_globals)
    assert "line 3 column 18" in info.value.message
    assert str(path) in info.value.message


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ([], "top level must be an object"),
        ({"openai-custom": {"uuid": "a"}}, "openai-custom: must be an array"),
        ({"openai-custom": ["x"]}, r"openai-custom\[0\]: must be an object"),
        (
            {"openai-custom": [{"uuid": "a", "OPENAI_API_KEY": "k", "usageCount": -1}]},
            r"openai-custom\[0\].usageCount: must be a whole number",
        ),
        (
            {"claude-custom": [{"uuid": "a", "CLAUDE_API_KEY": "k"}, {"uuid": "b"}]},
            r"claude-custom\[1\].CLAUDE_API_KEY: is required",
        ),
        (
            {"openai-custom": [{"uuid": "a", "OPENAI_API_KEY": "k", "isHealthy": "yes"}]},
            r"openai-custom\[0\].isHealthy: must be true or false",
        ),
        (
            {
                "openai-custom": [
                    {"uuid": "a", "OPENAI_API_KEY": "k", "OPENAI_BASE_URL": "ftp://x"}
                ]
            },
            r"openai-custom\[0\].OPENAI_BASE_URL: must be an http",
        ),
        (
            {
                "openai-custom": [{"uuid": "a", "OPENAI_API_KEY": "k"}],
                "claude-custom": [{"uuid": "a", "CLAUDE_API_KEY": "k"}],
            },
            r"claude-custom\[0\].uuid: 'a' is already used by openai-custom\[0\]",
        ),
    ],
)
def test_invalid_pools_name_type_index_and_field(
    tmp_path: Path, data: Any, expected: str
) -> None:
    path = pools_file(tmp_path, json.dumps(data))
    with pytest.raises(ConfigError, match=expected):
        parse_pools(path.read_bytes(), path, no_globals)


def test_global_credentials_satisfy_required_keys(tmp_path: Path) -> None:
    """An instance may omit a credential that config.json provides."""
    path = pools_file(tmp_path, json.dumps({"openai-custom": [{"uuid": "a"}]}))
    glob = {"OPENAI_API_KEY": "sk-global"}
    loaded = parse_pools(path.read_bytes(), path, glob.get)
    assert [n.uuid for n in loaded.nodes] == ["a"]


def test_unknown_types_and_fields_are_kept(tmp_path: Path) -> None:
    data = {
        "future-provider": [{"anything": 1}],
        "openai-custom": [{"OPENAI_API_KEY": "k", "uuid": "a", "note": "mine"}],
    }
    path = pools_file(tmp_path, json.dumps(data, indent=2))
    store, pool = load(path)
    assert pool.types() == ["openai-custom"]
    lease = pool.acquire("openai-custom")
    assert lease is not None
    lease.success()
    store.sync(pool.snapshot_fields())
    written = json.loads(path.read_text())
    assert list(written) == ["future-provider", "openai-custom"]
    assert written["future-provider"][0]["anything"] == 1
    assert written["openai-custom"][0]["note"] == "mine"
    assert list(written["openai-custom"][0])[:3] == ["OPENAI_API_KEY", "uuid", "note"]


def test_missing_uuid_is_generated_and_written_back(tmp_path: Path) -> None:
    path = pools_file(tmp_path, json.dumps({"openai-custom": [{"OPENAI_API_KEY": "k"}]}))
    store, pool = load(path)
    assert store.dirty_doc
    (uid,) = [e.node.uuid for e in pool.entries()]
    store.sync(pool.snapshot_fields())
    assert json.loads(path.read_text())["openai-custom"][0]["uuid"] == uid


def test_write_back_changes_only_server_fields_and_keeps_formatting(
    tmp_path: Path,
) -> None:
    """A diff across a write-back shows only the server's fields (4-space indent kept)."""
    original = {
        "openai-custom": [
            {
                "customName": "main",
                "OPENAI_API_KEY": "k1",
                "uuid": "a",
                "usageCount": 5,
                "isHealthy": True,
                "errorCount": 0,
                "lastUsed": None,
                "lastErrorTime": None,
                "state": "active",
                "stateReason": None,
                "stateSince": None,
                "cooldownUntil": None,
                "note": "ünïcode kept",
            },
            {
                "OPENAI_API_KEY": "k2",
                "uuid": "b",
                "usageCount": 1,
                "isHealthy": True,
                "errorCount": 0,
                "lastUsed": None,
                "lastErrorTime": None,
                "state": "active",
                "stateReason": None,
                "stateSince": None,
                "cooldownUntil": None,
            },
        ]
    }
    text = json.dumps(original, indent=4, ensure_ascii=False) + "\n"
    path = pools_file(tmp_path, text)
    store, pool = load(path)
    lease = pool.acquire("openai-custom")
    assert lease is not None and lease.node.uuid == "a"
    lease.success()
    store.sync(pool.snapshot_fields())
    after = path.read_text(encoding="utf-8")
    changed = [
        (old, new)
        for old, new in zip(text.splitlines(), after.splitlines(), strict=True)
        if old != new
    ]
    assert len(changed) == 2
    assert '"usageCount": 6' in changed[0][1]
    assert '"lastUsed": "20' in changed[1][1]


def test_write_is_atomic_keeps_mode_and_leaves_no_temp_files(tmp_path: Path) -> None:
    path = pools_file(tmp_path, json.dumps({"openai-custom": [{"OPENAI_API_KEY": "k"}]}))
    os.chmod(path, 0o640)
    inode = path.stat().st_ino
    store, pool = load(path)
    store.sync(pool.snapshot_fields())
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert path.stat().st_ino != inode  # replaced by rename, never truncated in place
    leftovers = [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_user_edit_on_disk_wins_and_counts_merge(tmp_path: Path) -> None:
    """Fields the user changed win (even server fields); usage adds up as increments."""
    data = {
        "openai-custom": [
            {
                "OPENAI_API_KEY": "k",
                "uuid": "a",
                "usageCount": 10,
                "isHealthy": False,
                "errorCount": 3,
                "note": "old",
            },
        ]
    }
    path = pools_file(tmp_path, json.dumps(data, indent=2))
    store, pool = load(path)
    entry = pool.get("a")
    assert entry is not None
    entry.state.usage_count += 2  # two requests served since the last sync
    edited = json.loads(path.read_text())
    edited["openai-custom"][0].update(usageCount=0, isHealthy=True, note="new")
    path.write_text(json.dumps(edited, indent=2))
    snapshot = pool.snapshot_fields()
    result = store.sync(snapshot)
    pool.apply_merged(snapshot, result.merged)
    written = json.loads(path.read_text())["openai-custom"][0]
    assert written["usageCount"] == 2
    assert written["isHealthy"] is True
    assert written["note"] == "new"
    assert entry.state.healthy is True
    assert entry.state.usage_count == 2


def test_broken_file_is_never_overwritten(tmp_path: Path) -> None:
    path = pools_file(
        tmp_path, json.dumps({"openai-custom": [{"OPENAI_API_KEY": "k", "uuid": "a"}]})
    )
    store, pool = load(path)
    broken = b'{"openai-custom": [ {"uuid": "a", '
    path.write_bytes(broken)
    pool.get("a").state.usage_count += 1  # type: ignore[union-attr]
    result = store.sync(pool.snapshot_fields())
    assert result.error is not None and "invalid JSON" in result.error.message
    assert path.read_bytes() == broken


def test_merge_field_rules() -> None:
    assert merge_field("usageCount", 10, 10, 15) == 15
    assert merge_field("usageCount", 10, 20, 15) == 25  # another process served 10
    assert merge_field("isHealthy", True, True, False) is False
    assert merge_field("isHealthy", False, True, False) is True  # the user re-enabled it
    assert merge_field(
        "lastUsed",
        "2025-01-01T00:00:00.000Z",
        "2025-01-02T00:00:00.000Z",
        "2025-01-03T00:00:00.000Z",
    ) == ("2025-01-03T00:00:00.000Z")


def test_json_style_detection() -> None:
    assert JsonStyle.detect('{\n\t"a": 1\n}').indent == "\t"
    assert JsonStyle.detect('{\n    "a": 1\n}\n').indent == "    "
    compact = JsonStyle.detect('{"a":[1,2]}')
    assert compact.render({"a": [1, 2]}) == b'{"a":[1,2]}'


def test_pools_example_is_valid() -> None:
    """provider_pools.json.example stays valid."""
    path = REPO / "provider_pools.json.example"
    loaded = parse_pools(path.read_bytes(), path, no_globals)
    assert {n.provider_type for n in loaded.nodes} == {"openai-custom", "claude-custom"}


def test_a_stale_copy_saved_later_loses_no_counts(tmp_path: Path) -> None:
    """An editor saves a copy read several writes ago: its old counters are not a reset,
    but its own edits (a note, re-enabling an instance) win."""
    data = {
        "openai-custom": [
            {"OPENAI_API_KEY": "k", "uuid": "a"},
            {"OPENAI_API_KEY": "k", "uuid": "b"},
        ]
    }
    path = pools_file(tmp_path, json.dumps(data, indent=2))
    store, pool = load(path)
    clock = iter(range(1_700_000_000, 1_700_000_100)).__next__
    pool.clock = lambda: float(clock())

    def serve(uid: str, count: int, *, fail: bool = False) -> None:
        for _ in range(count):
            lease = pool.acquire("openai-custom", exclude={"a", "b"} - {uid})
            assert lease is not None
            if fail:
                lease.failure(UpstreamConnectError("HTTP 500"))
            else:
                lease.success()
        snapshot = pool.snapshot_fields()
        pool.apply_merged(snapshot, store.sync(snapshot).merged)

    serve("a", 5)
    serve("b", 3, fail=True)  # b is now unhealthy
    stale = json.loads(path.read_text())  # the editor opens the file here
    serve("a", 7)
    serve("a", 4)
    stale["openai-custom"][1]["isHealthy"] = True
    stale["openai-custom"][1]["errorCount"] = 0
    stale["openai-custom"][0]["note"] = "edited"
    path.write_text(json.dumps(stale, indent=2))
    snapshot = pool.snapshot_fields()
    result = store.sync(snapshot)
    pool.apply_merged(snapshot, result.merged)
    written = {i["uuid"]: i for i in json.loads(path.read_text())["openai-custom"]}
    assert written["a"]["usageCount"] == 16
    assert written["a"]["note"] == "edited"
    assert written["b"]["isHealthy"] is True
    assert written["b"]["errorCount"] == 0
    assert pool.get("b").state.healthy  # type: ignore[union-attr]


def test_a_stale_copy_is_dated_by_its_counters_when_its_timestamps_repeat(
    tmp_path: Path,
) -> None:
    """Two writes within one millisecond carry the same timestamps (a burst of
    requests). A copy an editor read between them is dated by its counters too, so
    the requests served after it are neither lost nor counted twice."""
    path = pools_file(
        tmp_path, json.dumps({"openai-custom": [{"OPENAI_API_KEY": "k", "uuid": "a"}]})
    )
    store, pool = load(path)
    pool.clock = lambda: 1_700_000_000.0  # every write within the same millisecond

    def serve(count: int) -> None:
        for _ in range(count):
            lease = pool.acquire("openai-custom")
            assert lease is not None
            lease.success()
        snapshot = pool.snapshot_fields()
        pool.apply_merged(snapshot, store.sync(snapshot).merged)

    serve(5)
    first = json.loads(path.read_text())
    serve(3)
    second = json.loads(path.read_text())
    serve(2)
    assert first["openai-custom"][0]["lastUsed"] == second["openai-custom"][0]["lastUsed"]
    for copy, note in ((first, "from the first"), (second, "from the second")):
        copy["openai-custom"][0]["note"] = note
        path.write_text(json.dumps(copy, indent=2))
        snapshot = pool.snapshot_fields()
        pool.apply_merged(snapshot, store.sync(snapshot).merged)
        written = json.loads(path.read_text())["openai-custom"][0]
        assert (written["note"], written["usageCount"]) == (note, 10)


def test_a_copy_from_before_the_first_write_takes_no_instance_out(tmp_path: Path) -> None:
    """A copy saved from before the server first wrote its fields lacks them; missing
    is not an edit, so nothing goes out of rotation, even once the version it started
    from is older than the merge history (it went out: standby, manual)."""
    original = json.dumps(
        {"openai-custom": [{"OPENAI_API_KEY": "k", "uuid": "a"}]}, indent=2
    )
    path = pools_file(tmp_path, original)
    store, pool = load(path)
    for _ in range(300):  # more syncs than the history keeps
        lease = pool.acquire("openai-custom")
        assert lease is not None
        lease.success()
        store.sync(pool.snapshot_fields())
    assert "state" in json.loads(path.read_text())["openai-custom"][0]
    stale = json.loads(original)
    stale["openai-custom"][0]["note"] = "edited"
    path.write_text(json.dumps(stale, indent=2))
    snapshot = pool.snapshot_fields()
    result = store.sync(snapshot)
    pool.apply_merged(snapshot, result.merged)
    written = json.loads(path.read_text())["openai-custom"][0]
    assert written["note"] == "edited"
    assert written["isHealthy"] is True
    assert written["state"] == "active"
    assert written["usageCount"] == 300
    assert pool.get("a").state.healthy  # type: ignore[union-attr]
