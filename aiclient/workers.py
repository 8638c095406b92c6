"""`--workers N`: N forked processes serving one port through SO_REUSEPORT.

The kernel spreads connections over the workers; they share the pool file through its
locked, merging write-back, so counters on disk add up, and their metrics through a
private folder the parent makes (metrics_share.py). The parent only supervises: it
forwards SIGINT/SIGTERM, restarts a worker that died on its own, and removes the folder
at the end.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

__all__ = ["run_workers"]

logger = logging.getLogger(__name__)

_RESTART_DELAY = 1.0


def _start(index: int, serve: Callable[[int], int]) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        code = serve(index)
    except BaseException:
        logger.exception("worker %d failed", index)
    finally:
        logging.shutdown()  # os._exit skips it: write the last log lines first
        os._exit(code)


def run_workers(count: int, serve: Callable[[int, Path], int]) -> int:
    """Fork `count` workers running `serve(index, shared_folder)`; return when all have
    stopped."""
    folder = Path(tempfile.mkdtemp(prefix="aiclient-workers-"))
    try:
        return _supervise(count, lambda index: serve(index, folder))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _supervise(count: int, serve: Callable[[int], int]) -> int:
    children: dict[int, int] = {}
    stopping = False

    def forward(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    for index in range(count):
        children[_start(index, serve)] = index
    logger.info("started %d workers: %s", count, ", ".join(map(str, children)))
    worst = 0
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        index = children.pop(pid, -1)
        code = os.waitstatus_to_exitcode(status)
        if stopping or index < 0:
            worst = max(worst, code if code > 0 else 0)
            continue
        logger.error("worker %d (pid %d) exited with %d; restarting it", index, pid, code)
        time.sleep(_RESTART_DELAY)
        if not stopping:
            children[_start(index, serve)] = index
    return worst
