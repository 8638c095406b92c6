"""`--workers` scaling: one worker against two, each on a core of its own with the same
CPU budget.

    sudo .venv/bin/python scripts/bench_workers.py            # quota 35% of a core each
    .venv/bin/python scripts/bench_workers.py --quota 0       # pinning only, no quota

The claim under test is that N workers serve N times what one does when each has a
core: nothing is shared but the port (SO_REUSEPORT) and the pool file's merging
write-back. Shown plainly, that needs two free cores beside the load generator and the
fake upstream. On a two-core machine those two must share the workers' cores, so here
each worker instead gets a CPU quota (a cgroup, v1 or v2: root only) well below a core
and a core of its own; the load side takes the rest of both cores. Two free cores
become two equal budgets, and the ratio of the two rows is the scaling. Without a
quota the workers compete with the load side and the figures say little.

Both proxies (1 and 2 workers) stay up for the whole run and take turns, round after
round, so a slow spell of a shared machine hits both alike; each row is the median
round. The report (Markdown) goes to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from benchlib.paths import PATHS
from benchlib.results import Measurement
from benchlib.session import DEFAULT_PROXY_CMD, BenchError, Session, SessionConfig
from benchlib.system import CorePlan, cpu_seconds, process_tree, raise_nofile_limit

_PERIOD_US = 100_000
_V1 = Path("/sys/fs/cgroup/cpu")
_V2 = Path("/sys/fs/cgroup")


class Quota:
    """One cgroup per worker with a CPU quota, removed again on close."""

    def __init__(self, share: float) -> None:
        self.share = share
        self.groups: list[Path] = []
        v2 = (_V2 / "cgroup.controllers").exists()
        self.root = _V2 if v2 else _V1
        self.v2 = v2

    def hold(self, name: str, pid: int) -> None:
        group = self.root / name
        group.mkdir(exist_ok=True)
        self.groups.append(group)
        quota = int(self.share * _PERIOD_US)
        if self.v2:
            with contextlib.suppress(OSError):
                (self.root / "cgroup.subtree_control").write_text("+cpu")
            (group / "cpu.max").write_text(f"{quota} {_PERIOD_US}")
        else:
            (group / "cpu.cfs_period_us").write_text(str(_PERIOD_US))
            (group / "cpu.cfs_quota_us").write_text(str(quota))
        (group / "cgroup.procs").write_text(str(pid))

    def close(self) -> None:
        for group in self.groups:
            with contextlib.suppress(OSError):
                for pid in (group / "cgroup.procs").read_text().split():
                    (self.root / "cgroup.procs").write_text(pid)
            with contextlib.suppress(OSError):
                group.rmdir()


def _pin(pid: int, core: int) -> None:
    """Every thread of `pid` (the pool writer's and the log flusher's too) to `core`."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            os.sched_setaffinity(int(task.name), {core})


def _workers(session: Session, count: int) -> list[int]:
    """The serving processes: the proxy itself with one worker, else its children."""
    if count == 1:
        return [session.proxy_pid]
    deadline = time.monotonic() + 10
    while True:
        pids = process_tree(session.proxy_pid)[1:]
        if len(pids) >= count or time.monotonic() > deadline:
            return sorted(pids)
        time.sleep(0.05)


@contextlib.contextmanager
def _sessions(counts: Sequence[int]) -> Iterator[dict[int, Session]]:
    sessions: dict[int, Session] = {}
    try:
        for count in counts:
            workdir = Path(tempfile.mkdtemp(prefix=f"aiclient-workers-{count}-"))
            config = SessionConfig(
                workdir=workdir,
                cores=CorePlan(None, None, None, len(os.sched_getaffinity(0))),
                proxy_cmd=f"{DEFAULT_PROXY_CMD} --workers {count}",
            )
            sessions[count] = session = Session(config)
            session.start()
        yield sessions
    finally:
        for session in sessions.values():
            session.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quota", type=float, default=0.35, help="share of a core per worker; 0: none"
    )
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per round")
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--quick", action="store_true", help="a smoke test; figures meaningless"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.warmup, args.rounds, args.connections = 0.3, 0.1, 1, 8
    raise_nofile_limit()
    cores = sorted(os.sched_getaffinity(0))
    path = PATHS["openai"]
    quota = Quota(args.quota) if args.quota > 0 else None
    rows: dict[int, list[tuple[Measurement, list[float]]]] = {1: [], 2: []}
    try:
        with _sessions((1, 2)) as sessions:
            workers: dict[int, list[int]] = {}
            for count, session in sessions.items():
                workers[count] = _workers(session, count)
                for index, pid in enumerate(workers[count]):
                    _pin(pid, cores[index % len(cores)])
                    if quota is not None:
                        quota.hold(f"aiclient-bench-{count}-{index}", pid)
            for round_ in range(args.rounds):
                for count, session in sessions.items():
                    before = [cpu_seconds([pid]) for pid in workers[count]]
                    measured = session.measure(
                        path,
                        "proxy",
                        stream=False,
                        connections=args.connections,
                        duration=args.duration,
                        warmup=args.warmup,
                    )
                    spent = [
                        cpu_seconds([p]) - b
                        for p, b in zip(workers[count], before, strict=True)
                    ]
                    rows[count].append((measured, spent))
                    print(
                        f"round {round_ + 1}: {count} worker(s) "
                        f"{measured.result.rate:,.0f} req/s",
                        file=sys.stderr,
                    )
    except (BenchError, PermissionError, FileNotFoundError) as exc:
        print(f"bench_workers: {exc}", file=sys.stderr)
        if quota is not None and isinstance(exc, PermissionError | FileNotFoundError):
            print(
                "a CPU quota needs root and the cgroup cpu controller; try --quota 0",
                file=sys.stderr,
            )
        return 1
    finally:
        if quota is not None:
            quota.close()
    print(_report(args, rows, len(cores)))
    return 0


def _report(
    args: argparse.Namespace,
    rows: dict[int, list[tuple[Measurement, list[float]]]],
    ncores: int,
) -> str:
    budget = (
        f"{args.quota:.0%} of a core each (cgroup quota)" if args.quota > 0 else "no quota"
    )
    lines = [
        "# aiclient `--workers` scaling",
        "",
        f"- {ncores} cores; each worker pinned to a core of its own, {budget}; the fake "
        "upstream and the load generator unpinned",
        f"- OpenAI passthrough, non-streaming, {args.connections} connections, "
        f"{args.rounds} rounds of {args.duration:g} s (after {args.warmup:g} s of "
        "warm-up), the two proxies taking turns; each row is the median round by "
        "requests/s",
        "",
        "| workers | req/s | x one worker | p50 ms | CPU % per worker | CPU ms/req |",
        "|---:|---:|---:|---:|---|---:|",
    ]
    base = 0.0
    for count, runs in rows.items():
        runs.sort(key=lambda run: run[0].result.rate)
        measured, spent = runs[len(runs) // 2]
        rate = measured.result.rate
        base = base or rate
        # `spent` spans the warm-up too: split the measured window's CPU by it.
        window = measured.proxy_cpu_s
        shares = [s / sum(spent) * window if sum(spent) else 0.0 for s in spent]
        elapsed = measured.result.elapsed or args.duration
        per_worker = " / ".join(f"{s / elapsed * 100:.0f}" for s in shares)
        ms_per_req = window / max(1, measured.result.requests) * 1000
        p50 = measured.result.latency_ms.get("p50", 0.0)
        lines.append(
            f"| {count} | {rate:,.0f} | {rate / base:.2f} | {p50:.2f} | {per_worker} | "
            f"{ms_per_req:.3f} |"
        )
    rates = [run[0].result.rate for run in rows[2]]
    if len(rates) > 1:
        lines += [
            "",
            f"- two-worker rounds ranged {min(rates):,.0f}-{max(rates):,.0f} req/s",
        ]
    if args.quick:
        lines += ["", "**quick mode**: a smoke test; the figures mean nothing"]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
