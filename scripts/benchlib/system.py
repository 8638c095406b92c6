"""The machine side of the benchmark: cores, limits, child processes and /proc."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib.metadata
import os
import resource
import signal
import subprocess
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "CorePlan",
    "busy_core_seconds",
    "cpu_seconds",
    "memory_kib",
    "plan_cores",
    "process_tree",
    "raise_nofile_limit",
    "run",
    "spawn",
    "stop",
    "uvloop_version",
]

T = TypeVar("T")

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PR_SET_PDEATHSIG = 1


def raise_nofile_limit(wanted: int = 65536) -> int:
    """Raise this process's open-file limit as far as allowed; returns the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


@dataclass(frozen=True, slots=True)
class CorePlan:
    """Which cores each process may run on; None leaves it to the scheduler."""

    proxy: frozenset[int] | None
    upstream: frozenset[int] | None
    loadgen: frozenset[int] | None
    available: int

    @property
    def used(self) -> frozenset[int]:
        """The cores the benchmark's processes may run on."""
        if self.proxy is None:
            return frozenset(os.sched_getaffinity(0))
        return self.proxy | (self.upstream or frozenset()) | (self.loadgen or frozenset())

    def describe(self) -> str:
        if self.proxy is None:
            return f"{self.available} core(s) available: no pinning"

        def name(cores: frozenset[int] | None) -> str:
            return ",".join(str(c) for c in sorted(cores or ()))

        return (
            f"{self.available} cores available: proxy pinned to core {name(self.proxy)}, "
            f"fake upstream to core {name(self.upstream)}, load generator to core "
            f"{name(self.loadgen)}"
        )


def plan_cores(pin: bool = True) -> CorePlan:
    """The proxy gets a core of its own; the upstream and load generator share the next
    one (or get one each when there are three or more)."""
    cores = sorted(os.sched_getaffinity(0))
    if not pin or len(cores) < 2:
        return CorePlan(None, None, None, len(cores))
    proxy = frozenset(cores[:1])
    upstream = frozenset(cores[1:2])
    loadgen = frozenset(cores[2:3]) if len(cores) >= 3 else upstream
    return CorePlan(proxy, upstream, loadgen, len(cores))


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the benchmark dies, however it dies."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def spawn(
    argv: Sequence[str],
    *,
    cores: frozenset[int] | None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    stdin: int | None = None,
    stdout: int | None = None,
    stderr: int | None = None,
) -> subprocess.Popen[bytes]:
    """Start `argv` pinned to `cores`, in a session of its own (so the terminal's Ctrl-C
    reaches only the benchmark, which then stops every child itself)."""

    def prepare() -> None:
        if cores:
            os.sched_setaffinity(0, cores)
        _die_with_parent()

    return subprocess.Popen(
        list(argv),
        env=env,
        cwd=cwd,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        preexec_fn=prepare,
        start_new_session=True,
    )


def stop(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM the child's process group (it leads it), then SIGKILL if it lingers."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


def _parent_of(pid: str) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: skip past it.
    return int(stat[stat.rindex(")") + 2 :].split()[1])


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (a wrapper's children count as the proxy too)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            parent = _parent_of(entry.name)
            if parent is not None:
                children.setdefault(parent, []).append(int(entry.name))
    result: list[int] = []
    todo = [pid]
    while todo:
        current = todo.pop()
        result.append(current)
        todo.extend(children.get(current, ()))
    return result


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU time the processes have used so far."""
    ticks = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / _CLOCK_TICKS


def busy_core_seconds(cores: Iterable[int]) -> float:
    """Non-idle time of the given cores so far, whoever used it (from /proc/stat)."""
    wanted = {f"cpu{c}" for c in cores}
    ticks = 0
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return 0.0
    for line in lines:
        name, _, rest = line.partition(" ")
        if name in wanted:
            # user nice system idle iowait irq softirq steal (guest time is in user)
            values = [int(v) for v in rest.split()[:8]]
            ticks += sum(values) - values[3] - values[4]
    return ticks / _CLOCK_TICKS


def memory_kib(pids: Iterable[int]) -> tuple[int, int]:
    """(VmRSS, VmHWM) in KiB, summed over the processes."""
    rss = hwm = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                rss += int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm += int(line.split()[1])
    return rss, hwm


def uvloop_version() -> str | None:
    try:
        return importlib.metadata.version("uvloop")
    except importlib.metadata.PackageNotFoundError:
        return None


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` on uvloop when it is installed, else on the stock asyncio loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)
