"""scripts/bench.py runs end to end in quick mode and reports every row it promises.

A smoke test of the benchmark's plumbing (processes, load generator, parsers, report),
not of speed: no figure is compared with anything.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "scripts" / "bench.py"


def _row_cells(table_line: str) -> list[str]:
    return [cell.strip() for cell in table_line.strip().strip("|").split("|")]


def _quick_bench(out: Path, *args: str) -> str:
    """The report of `bench.py --quick --bare-relay ARGS`, raw results in `out`."""
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--bare-relay", "--json", str(out), *args],
        capture_output=True,
        text=True,
        timeout=40,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_quick_run_prints_the_tables(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    report = _quick_bench(
        out, "--paths", "openai,anthropic,openai-to-claude", "--repeat", "2"
    )
    for heading in (
        "## Set-up",
        "## Non-streaming requests",
        "## Streaming requests",
        "## Proxy memory with 50 concurrent open streams",
    ):
        assert heading in report
    assert "uvloop: " in report
    assert "quick mode" in report
    rows = [_row_cells(line) for line in report.splitlines() if line.startswith("| ")]
    keys = {(cells[0], cells[1]) for cells in rows}
    for path in ("openai", "anthropic"):
        assert (path, "1") in keys  # non-streaming, 1 connection
        assert (path, "16") in keys  # non-streaming and streaming, 16 connections
    assert ("openai", "50") in keys  # the memory row (first path): 50 streams
    # The bare relay beside the proxy, on the passthrough paths only, with its CPU.
    bare = [cells for cells in rows if cells[0] == "openai (bare relay)"]
    assert {cells[1] for cells in bare} >= {"1", "16"}
    assert all(float(cells[5]) > 0 for cells in bare if cells[1] == "1")
    assert not any(cells[0] == "openai-to-claude (bare relay)" for cells in rows)
    # With rounds, each converted path is compared with both passthroughs round by round.
    assert "openai-to-claude against openai, requests at 16 connections" in report
    assert "openai-to-claude against anthropic, streams at 16 connections" in report
    # Until conversion lands the proxy answers 501 and the path is skipped with a note;
    # afterwards it is measured like the others.
    assert "`openai-to-claude`" in report
    assert ("openai-to-claude", "16") in keys or "**skipped**" in report

    assert "every row is the median of 2 rounds" in report

    data = json.loads(out.read_text())
    measured = data["measurements"]
    rows_measured = [
        (m["path"], m["target"], m["stream"], m["connections"]) for m in measured
    ]
    assert len(rows_measured) == len(set(rows_measured))  # one (median) entry per row
    assert {(m["path"], m["target"], m["stream"]) for m in measured} >= {
        ("openai", "proxy", False),
        ("openai", "direct", True),
        ("anthropic", "proxy", True),
    }
    for m in measured:
        assert m["result"]["errors"] == 0, m
        assert m["result"]["requests"] > 0, m
    assert [m["path"] for m in data["memory"]] == ["openai"]
    for m in data["memory"]:
        assert m["result"]["requests"] == 50, m


def test_gemini_paths_are_measured_like_the_others(tmp_path: Path) -> None:
    """The fake upstream, the load generator and the bare relay speak Gemini too: its
    passthrough and a conversion to it are measured without an error, streams
    included (a Gemini stream ends with a finishReason, not an event of its own)."""
    out = tmp_path / "bench.json"
    report = _quick_bench(
        out, "--paths", "gemini,openai-to-gemini", "--memory-streams", "0"
    )
    assert "**skipped**" not in report
    measured = json.loads(out.read_text())["measurements"]
    assert {(m["path"], m["target"], m["stream"]) for m in measured} == {
        (path, target, stream)
        for path, targets in (
            ("gemini", ("direct", "proxy", "bare")),
            ("openai-to-gemini", ("direct", "proxy")),
        )
        for target in targets
        for stream in (False, True)
    }
    for m in measured:
        assert m["result"]["errors"] == 0, m
        assert m["result"]["requests"] > 0, m


def test_the_agent_payload_is_served_on_every_kind_of_path(tmp_path: Path) -> None:
    """`--payload agent` sends a coding agent's turn (tools, tool calls and results,
    ~50 KB) in each client's protocol: the proxy serves it on passthrough and on
    conversion to each upstream protocol, streaming too, without an error."""
    out = tmp_path / "bench.json"
    paths = "gemini,claude-to-openai,openai-to-claude,claude-to-gemini"
    report = _quick_bench(
        out,
        *("--payload", "agent", "--paths", paths, "--memory-streams", "0"),
        *("--connections", "4", "--stream-connections", "4"),
    )
    assert "payload: agent" in report and "**skipped**" not in report
    measured = json.loads(out.read_text())["measurements"]
    assert {(m["path"], m["target"]) for m in measured} >= {
        (path, "proxy") for path in paths.split(",")
    }
    for m in measured:
        assert m["result"]["errors"] == 0, m
        assert m["result"]["requests"] > 0, m


def test_workers_benchmark_runs_both_proxies(tmp_path: Path) -> None:
    """scripts/bench_workers.py measures one and two workers and prints their ratio."""
    done = subprocess.run(
        [sys.executable, str(BENCH.parent / "bench_workers.py"), "--quick", "--quota", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rows = [_row_cells(line) for line in done.stdout.splitlines() if line.startswith("| ")]
    workers = {cells[0]: cells for cells in rows if cells[0].isdigit()}
    assert set(workers) == {"1", "2"}
    assert workers["1"][2] == "1.00"
    assert len(workers["2"][4].split(" / ")) == 2  # a CPU figure for each worker
    assert float(workers["2"][1].replace(",", "")) > 0
