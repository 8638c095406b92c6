"""One benchmark session: the fake upstream, the proxy and the load generator as
pinned processes, the jobs sent to the load generator, and /proc sampling of the proxy.

Raises BenchError when something outside the measured code fails (a process will not
start or dies); `close` always stops every process the session started.
"""

from __future__ import annotations

import json
import os
import select
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from . import loadgen, upstream
from .loadgen import Job, Result
from .paths import BenchPath, request_job
from .payloads import SLOW_MODEL
from .results import Measurement, MemoryMeasurement, Sample
from .system import (
    CorePlan,
    busy_core_seconds,
    cpu_seconds,
    memory_kib,
    process_tree,
    spawn,
    stop,
)

__all__ = ["DEFAULT_PROXY_CMD", "BenchError", "Session", "SessionConfig"]

DEFAULT_PROXY_CMD = (
    "{python} -m aiclient --config {config} --provider-pools-file {pools} "
    "--host 127.0.0.1 --port {port} --api-key {api_key} --log-level warning"
)
_START_TIMEOUT = 30.0
_LOG_TAIL = 2000


class BenchError(Exception):
    """The benchmark cannot go on (a process failed to start or died)."""


@dataclass(frozen=True, slots=True)
class SessionConfig:
    workdir: Path
    cores: CorePlan
    proxy_cmd: str = DEFAULT_PROXY_CMD
    api_key: str = "bench-key"
    chunks: int = 20
    payload: str = "small"  # what the measured requests ask (payloads.PAYLOADS)
    slow_chunks: int = 100
    slow_gap_ms: float = 100.0
    # A second proxy measured beside the first (target "bare"), e.g. the bare relay.
    baseline_cmd: str | None = None
    # How long the proxy may take to answer /health (longer under valgrind).
    start_timeout: float = _START_TIMEOUT


@dataclass(slots=True)
class _Lines:
    """Lines from a child's stdout pipe, with a timeout on each read."""

    fd: int
    buffer: bytearray = field(default_factory=bytearray)

    def read(self, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while (end := self.buffer.find(b"\n")) < 0:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                return None
            data = os.read(self.fd, 65536)
            if not data:
                raise EOFError
            self.buffer += data
        line = bytes(self.buffer[:end]).decode()
        del self.buffer[: end + 1]
        return line


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _tail(path: Path) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return text[-_LOG_TAIL:].strip()


class Session:
    def __init__(self, config: SessionConfig) -> None:
        self.config = config
        self.workdir = config.workdir
        self.upstream_port = 0
        self.proxy_port = 0
        self.baseline_port = 0
        self._baseline: subprocess.Popen[bytes] | None = None
        self._upstream: subprocess.Popen[bytes] | None = None
        self._loadgen: subprocess.Popen[bytes] | None = None
        self._proxy: subprocess.Popen[bytes] | None = None
        self._loadgen_lines: _Lines | None = None
        self._proxy_log = "proxy"
        self._proxy_pids: list[int] = []
        self._proxy_starts = 0
        self._env_vars: dict[str, str] = {}
        self._logs: list[BinaryIO] = []
        self.proxy_argv: list[str] = []

    # -- lifecycle -----------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AICLIENT_")}
        scripts = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [scripts, env.get("PYTHONPATH")]))
        return env

    def _log(self, name: str) -> int:
        handle = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115 - closed in close()
        self._logs.append(handle)
        return handle.fileno()

    def start(self) -> None:
        config = self.config
        env = self._env_vars = self._env()
        self._upstream = spawn(
            [
                sys.executable,
                "-m",
                upstream.__name__,
                "--port",
                "0",
                "--chunks",
                str(config.chunks),
                "--slow-chunks",
                str(config.slow_chunks),
                "--slow-gap-ms",
                str(config.slow_gap_ms),
            ],
            cores=config.cores.upstream,
            env=env,
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log("upstream"),
        )
        assert self._upstream.stdout is not None
        line = _Lines(self._upstream.stdout.fileno()).read(_START_TIMEOUT)
        if line is None or not line.startswith("PORT "):
            raise BenchError(
                f"the fake upstream did not start: {_tail(self._path('upstream'))}"
            )
        self.upstream_port = int(line.split()[1])
        self._loadgen = spawn(
            [sys.executable, "-m", loadgen.__name__],
            cores=config.cores.loadgen,
            env=env,
            cwd=self.workdir,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log("loadgen"),
        )
        assert self._loadgen.stdout is not None
        self._loadgen_lines = _Lines(self._loadgen.stdout.fileno())
        self._start_proxy()
        if config.baseline_cmd:
            self._start_baseline(config.baseline_cmd)

    def _path(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    @property
    def _pools_path(self) -> Path:
        return self.workdir / "provider_pools.json"

    @property
    def _config_path(self) -> Path:
        return self.workdir / "config.json"

    def _write_files(self) -> None:
        base = f"http://127.0.0.1:{self.upstream_port}/v1"
        pools = {
            "openai-custom": [
                {
                    "uuid": "bench-openai",
                    "OPENAI_API_KEY": "sk-bench",
                    "OPENAI_BASE_URL": base,
                }
            ],
            "claude-custom": [
                {
                    "uuid": "bench-claude",
                    "CLAUDE_API_KEY": "sk-bench",
                    "CLAUDE_BASE_URL": base,
                }
            ],
            "gemini-custom": [
                {
                    "uuid": "bench-gemini",
                    "GEMINI_API_KEY": "bench-key",
                    "GEMINI_BASE_URL": f"http://127.0.0.1:{self.upstream_port}/v1beta",
                }
            ],
        }
        config = {
            "REQUIRED_API_KEY": self.config.api_key,
            # One instance per type: a transient error must not take it out of service.
            "MAX_ERROR_COUNT": 0,
            "LOG_LEVEL": "warning",
        }
        self._pools_path.write_text(json.dumps(pools, indent=2))
        self._config_path.write_text(json.dumps(config, indent=2))

    def _start_proxy(self) -> None:
        self._write_files()
        self._proxy_starts += 1
        log = "proxy" if self._proxy_starts == 1 else f"proxy-{self._proxy_starts}"
        self.proxy_port = _free_port()
        self.proxy_argv, self._proxy = self._launch(
            self.config.proxy_cmd, self.proxy_port, log
        )
        self._proxy_log = log
        self._await_health(self.proxy_port, self._check_proxy, "proxy", log)

    def _start_baseline(self, command: str) -> None:
        self.baseline_port = _free_port()
        _, baseline = self._launch(command, self.baseline_port, "baseline")
        self._baseline = baseline

        def alive() -> None:
            if baseline.poll() is not None:
                raise BenchError(
                    f"the baseline proxy exited: {_tail(self._path('baseline'))}"
                )

        self._await_health(self.baseline_port, alive, "baseline proxy", "baseline")

    def _launch(
        self, command: str, port: int, log: str
    ) -> tuple[list[str], subprocess.Popen[bytes]]:
        """Start a proxy command on the proxy's cores, its placeholders filled in."""
        values = {
            "python": sys.executable,
            "port": str(port),
            "pools": str(self._pools_path),
            "config": str(self._config_path),
            "api_key": self.config.api_key,
            "scripts": str(Path(__file__).resolve().parent.parent),
        }
        argv = [part.format_map(values) for part in shlex.split(command)]
        process = spawn(
            argv,
            cores=self.config.cores.proxy,
            env=self._env_vars,
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=self._log(log),
            stderr=subprocess.STDOUT,
        )
        return argv, process

    def _await_health(
        self, port: int, alive: Callable[[], None], what: str, log: str
    ) -> None:
        deadline = time.monotonic() + self.config.start_timeout
        health = Job("probe", port, method="GET", path="/health", timeout=2.0)
        while time.monotonic() < deadline:
            alive()
            if self.run_job(health)[0].status == 200:
                return
            time.sleep(0.1)
        raise BenchError(f"the {what} did not answer /health: {_tail(self._path(log))}")

    def restart_proxy(self) -> None:
        """A fresh proxy process (same command, new port), e.g. for a memory baseline."""
        if self._proxy is not None:
            stop(self._proxy)
            self._proxy = None
        self._start_proxy()

    def _check_proxy(self) -> None:
        if self._proxy is not None and self._proxy.poll() is not None:
            raise BenchError(
                f"the proxy exited with status {self._proxy.returncode}: "
                f"{_tail(self._path(self._proxy_log))}"
            )

    def close(self) -> None:
        for process in (self._baseline, self._proxy, self._loadgen, self._upstream):
            if process is not None:
                stop(process)
        if os.environ.get("BENCH_KEEP_LOGS"):
            for log in sorted(self.workdir.glob("*.log")):
                print(f"--- {log.name}\n{_tail(log)}", file=sys.stderr)
        self._proxy = self._loadgen = self._upstream = self._baseline = None
        for handle in self._logs:
            handle.close()
        self._logs.clear()

    # -- sampling and jobs -----------------------------------------------------------

    @property
    def proxy_pid(self) -> int:
        assert self._proxy is not None
        return self._proxy.pid

    def _sample(self) -> Sample:
        load = [p.pid for p in (self._upstream, self._loadgen) if p is not None]
        load.append(os.getpid())
        rss, hwm = memory_kib(self._proxy_pids)
        return Sample(
            at=time.perf_counter(),
            proxy_cpu=cpu_seconds(self._proxy_pids),
            load_cpu=cpu_seconds(load),
            busy=busy_core_seconds(self.config.cores.used),
            rss_kib=rss,
            hwm_kib=hwm,
        )

    def run_job(
        self,
        job: Job,
        *,
        every: float | None = None,
        on_sample: Callable[[Sample], None] | None = None,
        watch: int | None = None,
    ) -> tuple[Result, dict[str, Sample]]:
        """Run `job`; returns its result and a Sample at each mark (START, STOP, OPEN).

        With `every`, `on_sample` also gets a Sample that often while the job runs.
        The Samples' proxy figures are those of process `watch` (default the proxy).
        """
        assert self._loadgen is not None
        assert self._loadgen.stdin is not None
        assert self._loadgen_lines is not None
        self._proxy_pids = process_tree(watch or self.proxy_pid)
        self._loadgen.stdin.write(job.to_json().encode() + b"\n")
        self._loadgen.stdin.flush()
        marks: dict[str, Sample] = {}
        deadline = time.monotonic() + job.warmup + job.duration + job.timeout + 30
        while time.monotonic() < deadline:
            try:
                line = self._loadgen_lines.read(every if every else 1.0)
            except EOFError:
                raise BenchError(
                    f"the load generator died: {_tail(self._path('loadgen'))}"
                ) from None
            if line is None:
                if on_sample is not None:
                    on_sample(self._sample())
                continue
            if line.startswith("RESULT "):
                return Result.from_json(json.loads(line[7:])), marks
            sample = self._sample()
            marks[line] = sample
            if on_sample is not None:
                on_sample(sample)
        raise BenchError(f"the load generator did not finish a {job.kind} job in time")

    def _job(
        self,
        kind: str,
        path: BenchPath,
        target: str,
        *,
        stream: bool = False,
        connections: int = 1,
        duration: float = 0.0,
        warmup: float = 0.0,
        timeout: float = 30.0,
    ) -> Job:
        proxy = target in ("proxy", "bare")
        ports = {"proxy": self.proxy_port, "bare": self.baseline_port}
        return request_job(
            kind,
            path.client if proxy else path.upstream,
            ports.get(target, self.upstream_port),
            api_key=self.config.api_key,
            provider=path.provider if proxy else None,
            stream=stream,
            payload=self.config.payload,
            connections=connections,
            duration=duration,
            warmup=warmup,
            timeout=timeout,
        )

    def probe(self, path: BenchPath, target: str, *, stream: bool = False) -> Result:
        result, _ = self.run_job(
            self._job("probe", path, target, stream=stream, timeout=10)
        )
        return result

    def measure(
        self,
        path: BenchPath,
        target: str,
        *,
        stream: bool,
        connections: int,
        duration: float,
        warmup: float,
    ) -> Measurement:
        job = self._job(
            "load",
            path,
            target,
            stream=stream,
            connections=connections,
            duration=duration,
            warmup=warmup,
            timeout=30.0,
        )
        baseline = self._baseline if target == "bare" else None
        result, marks = self.run_job(job, watch=baseline.pid if baseline else None)
        self._check_proxy()
        start, end = marks.get("START"), marks.get("STOP")
        proxy_cpu = load_cpu = other_cpu = 0.0
        if start is not None and end is not None:
            proxy_cpu = end.proxy_cpu - start.proxy_cpu
            load_cpu = end.load_cpu - start.load_cpu
            other_cpu = max(0.0, end.busy - start.busy - proxy_cpu - load_cpu)
        return Measurement(
            path.name, target, stream, connections, result, proxy_cpu, load_cpu, other_cpu
        )

    def hold_streams(
        self, path: BenchPath, streams: int, every: float
    ) -> MemoryMeasurement:
        """Open `streams` slow streams through a fresh proxy at once; sample its memory.

        The baseline is taken after a few ordinary streams, so it includes what the
        first request on a path allocates once (imports, the upstream session).
        """
        self.restart_proxy()
        warm = self._job("hold", path, "proxy", stream=True, connections=16, timeout=10)
        self.run_job(warm)
        self._proxy_pids = process_tree(self.proxy_pid)
        before = self._sample()
        peak = [before.rss_kib]
        hwm = [before.hwm_kib]
        samples = [0]

        def track(sample: Sample) -> None:
            peak.append(sample.rss_kib)
            hwm.append(sample.hwm_kib)
            samples[0] += 1

        stream_seconds = self.config.slow_chunks * self.config.slow_gap_ms / 1000
        job = request_job(
            "hold",
            path.client,
            self.proxy_port,
            api_key=self.config.api_key,
            provider=path.provider,
            stream=True,
            model=SLOW_MODEL,
            connections=streams,
            timeout=stream_seconds + 30,
        )
        result, marks = self.run_job(job, every=every, on_sample=track)
        self._check_proxy()
        after = self._sample()
        opened = marks.get("OPEN")
        return MemoryMeasurement(
            path=path.name,
            streams=streams,
            result=result,
            rss_before_kib=before.rss_kib,
            rss_open_kib=opened.rss_kib if opened else None,
            rss_peak_kib=max(peak),
            rss_after_kib=after.rss_kib,
            hwm_kib=max([*hwm, after.hwm_kib]),
            samples=samples[0],
            proxy_cpu_s=after.proxy_cpu - before.proxy_cpu,
            seconds=after.at - before.at,
        )
