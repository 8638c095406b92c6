"""Instructions per request inside the proxy, counted by valgrind (callgrind): within a
few percent on every run (the proxy's once-a-second tasks fall into the window), where
timings on a shared machine move by tens of percent.

    .venv/bin/python scripts/bench_instructions.py                 # every path, plain
    .venv/bin/python scripts/bench_instructions.py --stream --paths openai,openai-to-gemini
    .venv/bin/python scripts/bench_instructions.py --payload agent --paths claude-to-gemini
    PYTHONPATH=/path/to/other/checkout .venv/bin/python scripts/bench_instructions.py

Needs valgrind (`apt install valgrind`). The proxy runs under callgrind (some 50x
slower, so a few hundred requests per path); the benchmark's own fake upstream and load
generator drive it. Each path gets an unmeasured warm-up, then the counters are zeroed,
the measured load runs, and the counters are dumped: instructions / answers. The
count covers the proxy's process in user space (its threads included), not the kernel
(socket calls), nor cache misses: compare paths and versions with it, not with timings.

To count another version, put its checkout first on PYTHONPATH (last example): the
proxy runs in a temporary folder and otherwise imports the installed aiclient.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib.paths import PATHS
from benchlib.payloads import PAYLOADS
from benchlib.session import BenchError, Session, SessionConfig
from benchlib.system import plan_cores

_PROXY_CMD = (
    "valgrind --tool=callgrind --callgrind-out-file={out} {{python}} -m aiclient "
    "--config {{config}} --provider-pools-file {{pools}} --host 127.0.0.1 "
    "--port {{port}} --api-key {{api_key}} --log-level warning"
)


def _dumped(out: Path, pid: int, before: set[Path]) -> int:
    """Dump the counters since the last zeroing and return their instruction total."""
    subprocess.run(
        ["callgrind_control", "--dump", str(pid)], check=True, capture_output=True
    )
    for _ in range(100):
        new = set(out.parent.glob(out.name + ".*")) - before
        if new:
            text = max(new, key=lambda p: int(p.suffix[1:])).read_text()
            found = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
            if found:
                return int(found.group(1))
        time.sleep(0.2)
    raise BenchError("callgrind wrote no dump")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Instructions per request inside the proxy, counted by valgrind "
        "(callgrind). To count another checkout, put it first on PYTHONPATH.",
    )
    parser.add_argument("--paths", default=",".join(PATHS), help="comma-separated")
    parser.add_argument("--stream", action="store_true", help="streams, not whole answers")
    parser.add_argument(
        "--payload", choices=PAYLOADS, default="small", help="what each request asks"
    )
    parser.add_argument("--duration", type=float, default=4.0, help="measured seconds")
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("valgrind is not installed (apt install valgrind)", file=sys.stderr)
        return 2
    names = [n for n in args.paths.split(",") if n]
    unknown = [n for n in names if n not in PATHS]
    if unknown:
        parser.error(f"unknown paths: {', '.join(unknown)}")
    work = Path(tempfile.mkdtemp(prefix="aiclient-instr-"))
    out = work / "callgrind.out"
    session = Session(
        SessionConfig(
            workdir=work,
            cores=plan_cores(pin=False),
            proxy_cmd=_PROXY_CMD.format(out=out),
            payload=args.payload,
            start_timeout=600.0,
        )
    )
    kind = "streams" if args.stream else "requests"
    print(f"| path | {kind} counted | errors | instructions per {kind[:-1]} |")
    print("|---|---:|---:|---:|")
    try:
        session.start()
        pid = session.proxy_pid
        for name in names:

            def load(seconds: float, name: str = name) -> tuple[int, int]:
                job = session._job(
                    "load",
                    PATHS[name],
                    "proxy",
                    stream=args.stream,
                    connections=args.connections,
                    duration=seconds,
                    timeout=120,
                )
                result, _ = session.run_job(job)
                return result.requests, result.errors

            load(2.0)  # warm-up: imports, caches, the pool's first picks
            before = set(work.glob(out.name + ".*"))
            subprocess.run(
                ["callgrind_control", "--zero", str(pid)], check=True, capture_output=True
            )
            answers, errors = load(args.duration)
            total = _dumped(out, pid, before)
            print(
                f"| {name} | {answers} | {errors} | {total / max(answers, 1):,.0f} |",
                flush=True,
            )
    finally:
        session.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
