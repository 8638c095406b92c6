"""Benchmark the proxy: throughput, latency, CPU per request and memory per open stream.

    .venv/bin/python scripts/bench.py                 # the full run, about 2.5 minutes
    .venv/bin/python scripts/bench.py --quick         # a few seconds; figures meaningless
    .venv/bin/python scripts/bench.py --paths openai --connections 64 --duration 10
    .venv/bin/python scripts/bench.py --bare-relay    # the bare relay beside the proxy
    .venv/bin/python scripts/bench.py --payload agent --paths claude-to-gemini

Three processes: a fake upstream (benchlib/upstream.py), the proxy, and a load
generator (benchlib/loadgen.py), all on 127.0.0.1. With two or more cores the proxy
gets core 0 to itself and the other two share core 1, so each row's "direct" figures
(the same load sent straight to the upstream) show what the load side can do alone.
`--bare-relay` also runs scripts/bare_relay.py on the proxy's core and measures it on
the passthrough paths in the same rounds, so the yardstick shares the machine's mood.
The report (Markdown) goes to stdout, progress to stderr; `--json` also writes the
raw results; BENCH_KEEP_LOGS=1 prints the end of each child's log when done. This is a
benchmark, not a test: nothing here fails on a slow figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from types import FrameType

from benchlib.paths import PATHS, BenchPath
from benchlib.payloads import PAYLOADS, request_body
from benchlib.report import Report, render
from benchlib.results import Measurement
from benchlib.session import DEFAULT_PROXY_CMD, BenchError, Session, SessionConfig
from benchlib.system import (
    CorePlan,
    busy_core_seconds,
    plan_cores,
    raise_nofile_limit,
    uvloop_version,
)

_NOISE_PCT = 10.0  # other processes' share of a core that makes a row unreliable

QUICK = {
    "duration": 0.2,
    "warmup": 0.05,
    "connections": "1,16",
    "stream_connections": "16",
    "memory_streams": 50,
    "slow_chunks": 5,
    "slow_gap_ms": 20.0,
}
DEFAULTS = {
    "duration": 5.0,
    "warmup": 0.5,
    "connections": "1,16,64,256",
    "stream_connections": "1,256",
    "memory_streams": 1000,
    "slow_chunks": 100,
    "slow_gap_ms": 100.0,
}


def _counts(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers like 1,16,64: {text!r}"
        ) from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError("connection counts must be at least 1")
    return values


def _paths(text: str) -> list[BenchPath]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in PATHS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown path {', '.join(unknown) or '(none)'}; choose from {', '.join(PATHS)}"
        )
    return [PATHS[n] for n in names]


@dataclass(frozen=True, slots=True)
class Options:
    duration: float
    warmup: float
    connections: list[int]
    stream_connections: list[int]
    paths: list[BenchPath]
    chunks: int
    memory_streams: int
    slow_chunks: int
    slow_gap_ms: float
    proxy_cmd: str
    json_out: Path | None
    quick: bool
    pin: bool
    repeat: int = 1
    bare_relay: bool = False
    payload: str = "small"


BARE_RELAY_CMD = "{python} {scripts}/bare_relay.py --pools {pools} --port {port}"


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="bench.py",
        description="Benchmark aiclient against a fake upstream (loopback only).",
    )
    parser.add_argument("--quick", action="store_true", help="a tiny run (smoke test)")
    parser.add_argument(
        "--duration", type=float, help="seconds measured per row (default 5; quick 0.2)"
    )
    parser.add_argument(
        "--warmup", type=float, help="unmeasured seconds before each row (default 0.5)"
    )
    parser.add_argument(
        "--connections", help="non-streaming connection counts (default 1,16,64,256)"
    )
    parser.add_argument(
        "--stream-connections", help="streaming connection counts (default 1,256)"
    )
    parser.add_argument(
        "--paths",
        default="openai,anthropic",
        help=f"comma-separated, from: {', '.join(PATHS)} (default openai,anthropic); "
        "a path the proxy answers with non-200 is skipped with a note",
    )
    parser.add_argument("--chunks", type=int, default=20, help="content events per stream")
    parser.add_argument(
        "--payload",
        choices=PAYLOADS,
        default="small",
        help="what each request asks: small, one short question (the proxy's cost per "
        "request); agent, a coding agent's turn, ~50 KB of tools and history "
        "(what converting a real request costs)",
    )
    parser.add_argument(
        "--memory-streams",
        type=int,
        help="concurrent slow streams for the memory row, on the first path "
        "(default 1000; 0 skips it)",
    )
    parser.add_argument("--slow-chunks", type=int, help="events per slow stream (100)")
    parser.add_argument("--slow-gap-ms", type=float, help="ms between slow events (100)")
    parser.add_argument(
        "--proxy-cmd",
        default=DEFAULT_PROXY_CMD,
        help="how to start the proxy; {python} {port} {pools} {config} {api_key} are "
        f"filled in (default: {DEFAULT_PROXY_CMD!r})",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds over every row (each round runs all rows in turn, so a slow "
        "spell of a shared machine hits every row alike); each row reports its "
        "median round by requests/s (default 1)",
    )
    parser.add_argument("--json", dest="json_out", type=Path, help="also write raw results")
    parser.add_argument(
        "--no-pin", action="store_true", help="do not pin processes to cores"
    )
    parser.add_argument(
        "--bare-relay",
        action="store_true",
        help="also measure scripts/bare_relay.py (a bare aiohttp + uvloop relay) on "
        "the passthrough paths, in the same rounds as the proxy, on the same core",
    )
    args = parser.parse_args(argv)
    base = QUICK if args.quick else DEFAULTS

    def pick(name: str) -> object:
        value = getattr(args, name)
        return base[name] if value is None else value

    try:
        connections = _counts(str(pick("connections")))
        stream_connections = _counts(str(pick("stream_connections")))
        paths = _paths(args.paths)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return Options(
        duration=float(str(pick("duration"))),
        warmup=float(str(pick("warmup"))),
        connections=connections,
        stream_connections=stream_connections,
        paths=paths,
        chunks=args.chunks,
        memory_streams=int(str(pick("memory_streams"))),
        slow_chunks=int(str(pick("slow_chunks"))),
        slow_gap_ms=float(str(pick("slow_gap_ms"))),
        proxy_cmd=args.proxy_cmd,
        json_out=args.json_out,
        quick=args.quick,
        pin=not args.no_pin,
        repeat=args.repeat,
        bare_relay=args.bare_relay,
        payload=args.payload,
    )


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _setup_lines(options: Options, cores: CorePlan, session: Session) -> list[str]:
    uvloop = uvloop_version()
    streams = options.memory_streams
    slow_s = options.slow_chunks * options.slow_gap_ms / 1000
    lines = [
        f"machine: {os.cpu_count()} cores ({_cpu_model()}), Linux {platform.release()}, "
        f"Python {platform.python_version()}, aiohttp {_version('aiohttp')}",
        f"uvloop: {'yes, ' + uvloop if uvloop else 'no'} (fake upstream and load "
        "generator; aiclient runs on it too when it is installed)",
        f"pinning: {cores.describe()}",
        f"proxy: `{' '.join(session.proxy_argv)}`",
        f"load: {options.duration:g} s measured per row after {options.warmup:g} s of "
        "warm-up, keep-alive connections, one request at a time per connection; "
        "latency is per request (a stream: until its last byte), TTFB is the first "
        "body byte",
        f"streams: {options.chunks} content events + the protocol's closing events, "
        "one chunk each, written one per upstream event-loop iteration",
        _payload_line(options.payload),
    ]
    if streams:
        lines.append(
            f"memory: {streams:,} streams held open at once, each {options.slow_chunks} "
            f"events {options.slow_gap_ms:g} ms apart (~{slow_s:g} s); RSS sampled "
            "from /proc/<pid>/status"
        )
    if options.quick:
        lines.append("**quick mode**: a smoke test; the figures mean nothing")
    return lines


def _payload_line(payload: str) -> str:
    sizes = ", ".join(
        f"{protocol} {len(request_body(protocol, stream=False, payload=payload)):,} B"
        for protocol in ("openai", "anthropic", "gemini")
    )
    what = (
        "a coding agent's turn: system prompt, 16 tools, 20 tool rounds"
        if payload == "agent"
        else "one short question"
    )
    return f"payload: {payload}, {what} (request body: {sizes})"


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _summary(m: Measurement) -> str:
    r = m.result
    unit = "streams/s" if m.stream else "req/s"
    p50 = r.latency_ms.get("p50", 0.0)
    errors = f", {r.errors} errors" if r.errors else ""
    return f"{r.rate:,.0f} {unit}, p50 {p50:.2f} ms{errors}"


def _capacity_note(report: Report) -> str | None:
    direct = [m for m in report.measurements if m.target == "direct" and not m.stream]
    proxied = [m for m in report.measurements if m.target == "proxy" and not m.stream]
    if not direct or not proxied:
        return None
    best_direct = max(m.result.rate for m in direct)
    best_proxy = max(m.result.rate for m in proxied)
    streams = [
        m.result.rate for m in report.measurements if m.target == "direct" and m.stream
    ]
    stream_text = f" and {max(streams):,.0f} streams/s" if streams else ""
    share = best_proxy / best_direct * 100 if best_direct else 0.0
    return (
        f"fake upstream capacity: {best_direct:,.0f} req/s{stream_text} when hit directly "
        f"(with the load generator on the same core); the proxy's best, "
        f"{best_proxy:,.0f} req/s, is {share:.0f}% of that, so the upstream is not the "
        "bottleneck"
        if share < 50
        else f"fake upstream capacity: {best_direct:,.0f} req/s{stream_text} directly; "
        f"the proxy reached {share:.0f}% of it, so the load side may limit the proxy rows"
    )


def run(options: Options, session: Session, report: Report) -> None:
    paths: list[BenchPath] = []
    bare: set[str] = set()
    for path in options.paths:
        direct = session.probe(path, "direct")
        if direct.status != 200:
            raise BenchError(
                f"the fake upstream failed a {path.name} probe: {direct.sample}"
            )
        if options.bare_relay and path.client == path.upstream:
            bare.add(path.name)  # the bare relay only passes through
        probe = session.probe(path, "proxy")
        if probe.status == 200 and not probe.errors:
            paths.append(path)
            continue
        detail = " ".join(probe.sample.split())[:160] or ", ".join(probe.error_kinds)
        report.skipped[path.name] = f"the proxy answered {probe.status}: {detail}"
        _progress(f"skipping {path.name}: {report.skipped[path.name]}")
    plan = [(p, False, c) for p in paths for c in options.connections]
    plan += [(p, True, c) for p in paths for c in options.stream_connections]
    rounds: dict[tuple[str, bool, int, str], list[Measurement]] = {}
    for round_ in range(1, options.repeat + 1):
        for index, (path, stream, conns) in enumerate(plan, 1):
            targets = (
                ("direct", "proxy", "bare") if path.name in bare else ("direct", "proxy")
            )
            for target in targets:
                m = session.measure(
                    path,
                    target,
                    stream=stream,
                    connections=conns,
                    duration=options.duration,
                    warmup=options.warmup,
                )
                rounds.setdefault((path.name, stream, conns, target), []).append(m)
                kind = "stream" if stream else "plain"
                where = f"round {round_}/{options.repeat} " if options.repeat > 1 else ""
                _progress(
                    f"[{where}{index}/{len(plan)}] {path.name} {kind} {target} "
                    f"c={conns}: " + _summary(m)
                )
    for measured in rounds.values():
        report.measurements.append(median_round(measured))
    if options.repeat > 1:
        report.notes.append(_spread_note(rounds, options.repeat))
        report.notes += _ratio_notes(rounds, paths)
    if options.memory_streams and paths:
        every = 0.02 if options.quick else 0.05
        for path in paths[:1]:
            mem = session.hold_streams(path, options.memory_streams, every)
            report.memory.append(mem)
            _progress(
                f"memory {path.name}: {mem.streams} streams, peak RSS "
                f"{mem.rss_peak_kib / 1024:.1f} MiB "
                f"(before {mem.rss_before_kib / 1024:.1f})"
            )


def _spread_note(
    rounds: dict[tuple[str, bool, int, str], list[Measurement]], repeat: int
) -> str:
    spreads = []
    for (path, stream, conns, target), measured in rounds.items():
        rates = [m.result.rate for m in measured]
        if target == "proxy" and min(rates) > 0:
            spreads.append((max(rates) / min(rates) - 1, path, stream, conns))
    text = (
        f"every row is the median of {repeat} rounds by requests/s (each round runs "
        "all rows in turn)"
    )
    if spreads:
        worst, path, stream, conns = max(spreads)
        kind = "streaming" if stream else "non-streaming"
        text += (
            f"; the proxy's rounds differed by up to {worst:.0%} ({path}, {kind}, "
            f"{conns} connections)"
        )
    return text


def _ratio_notes(
    rounds: dict[tuple[str, bool, int, str], list[Measurement]], paths: list[BenchPath]
) -> list[str]:
    """Each converted path against the passthrough of its client's protocol and of its
    upstream's, round by round: the two rows of a round ran seconds apart, so their
    ratio is steadier than the ratio of two medians."""
    notes = []
    passthrough = {p.client: p for p in paths if p.client == p.upstream}
    for path in paths:
        if path.client == path.upstream:
            continue
        for (name, stream, conns, target), converted in rounds.items():
            if name != path.name or target != "proxy":
                continue
            for side in dict.fromkeys((path.client, path.upstream)):
                base = passthrough.get(side)
                plain = rounds.get((base.name, stream, conns, "proxy")) if base else None
                if base is None or plain is None or len(plain) != len(converted):
                    continue
                pairs = list(zip(converted, plain, strict=True))
                rate = sorted(
                    c.result.rate / p.result.rate for c, p in pairs if p.result.rate
                )
                cpu = sorted(
                    (p.cpu_ms_per_request or 0) / c.cpu_ms_per_request
                    for c, p in pairs
                    if c.cpu_ms_per_request
                )
                if not rate or not cpu:
                    continue
                kind = "streams" if stream else "requests"
                plural = "s" if conns != 1 else ""
                notes.append(
                    f"{path.name} against {base.name}, {kind} at {conns} connection"
                    f"{plural}, "
                    f"round by round: {_median(rate):.2f}x by rate ({rate[0]:.2f}-"
                    f"{rate[-1]:.2f}), {_median(cpu):.2f}x by CPU per request "
                    f"({cpu[0]:.2f}-{cpu[-1]:.2f})"
                )
    return notes


def _median(values: list[float]) -> float:
    middle = len(values) // 2
    if len(values) % 2:
        return values[middle]
    return (values[middle - 1] + values[middle]) / 2


def median_round(measured: list[Measurement]) -> Measurement:
    """The round with the median requests/s (the lower middle of an even count)."""
    ranked = sorted(measured, key=lambda m: m.result.rate)
    return ranked[(len(ranked) - 1) // 2]


def _error_notes(report: Report) -> list[str]:
    notes = []
    for m in report.measurements:
        r = m.result
        if r.errors or r.unfinished:
            kinds = ", ".join(f"{k} x{v}" for k, v in r.error_kinds.items())
            kind = "stream" if m.stream else "plain"
            notes.append(
                f"{m.path} {kind} {m.target} c={m.connections}: {r.errors} errors "
                f"({kinds or 'none'}), {r.unfinished} unfinished"
            )
    for mem in report.memory:
        r = mem.result
        if r.errors or r.unfinished:
            kinds = ", ".join(f"{k} x{v}" for k, v in r.error_kinds.items())
            notes.append(
                f"memory {mem.path}: {r.errors} errors ({kinds}), {r.unfinished} unfinished"
            )
    return notes


def _noise_note(report: Report) -> str | None:
    noisy = [m for m in report.measurements if m.core_pct(m.other_cpu_s) >= _NOISE_PCT]
    if not noisy:
        return None
    worst = max(m.core_pct(m.other_cpu_s) for m in noisy)
    return (
        f"other processes used the benchmark's cores during {len(noisy)} of "
        f"{len(report.measurements)} rows (up to {worst:.0f}% of a core; see the "
        "'other CPU %' column): their rates and latencies are depressed, CPU ms/req "
        "much less so. Re-run on a quiet machine for comparable figures."
    )


def _background_load(cores: CorePlan, seconds: float) -> float:
    """Percent of a core the rest of the machine used on our cores before we started."""
    before = busy_core_seconds(cores.used)
    time.sleep(seconds)
    return (busy_core_seconds(cores.used) - before) / seconds * 100


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally that stops children


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    # Interruptible even when started with SIGINT ignored (a shell's background job).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    raise_nofile_limit()
    cores = plan_cores(options.pin)
    if cores.loadgen:
        os.sched_setaffinity(0, cores.loadgen)  # keep this process off the proxy's core
    started = time.perf_counter()
    background = _background_load(cores, 0.3 if options.quick else 1.0)
    report = Report(setup=[])
    report.options = {
        "duration": options.duration,
        "warmup": options.warmup,
        "connections": options.connections,
        "stream_connections": options.stream_connections,
        "repeat": options.repeat,
        "paths": [p.name for p in options.paths],
        "chunks": options.chunks,
        "payload": options.payload,
        "memory_streams": options.memory_streams,
        "slow_chunks": options.slow_chunks,
        "slow_gap_ms": options.slow_gap_ms,
        "proxy_cmd": options.proxy_cmd,
        "quick": options.quick,
        "pin": options.pin,
    }
    with tempfile.TemporaryDirectory(prefix="aiclient-bench-") as tmp:
        config = SessionConfig(
            workdir=Path(tmp),
            cores=cores,
            proxy_cmd=options.proxy_cmd,
            chunks=options.chunks,
            payload=options.payload,
            slow_chunks=options.slow_chunks,
            slow_gap_ms=options.slow_gap_ms,
            baseline_cmd=BARE_RELAY_CMD if options.bare_relay else None,
        )
        session = Session(config)
        try:
            session.start()
            report.setup = _setup_lines(options, cores, session)
            report.setup.append(
                f"background load on those cores before the run: {background:.0f}% of a "
                "core (the 'other CPU %' columns show it during each row)"
            )
            run(options, session, report)
        except BenchError as exc:
            print(f"bench.py: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("bench.py: interrupted", file=sys.stderr)
            return 130
        finally:
            session.close()
    report.wall_seconds = time.perf_counter() - started
    capacity = _capacity_note(report)
    if capacity:
        report.setup.append(capacity)
    report.setup.append(f"total wall time: {report.wall_seconds:.0f} s")
    report.notes = [*report.notes, *_error_notes(report)]
    noise = _noise_note(report)
    if noise:
        report.notes.append(noise)
    print(render(report), end="")
    if options.json_out is not None:
        options.json_out.write_text(json.dumps(report.to_json(), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
