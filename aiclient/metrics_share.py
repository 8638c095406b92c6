"""`--workers N`: the workers' request metrics, added up whichever worker is scraped.

The kernel hands each connection to any worker, so a Prometheus scrape lands on one of
them at random; if each reported only its own counters, the series would jump between
two processes' values and read as counter resets. So every worker writes a snapshot of
its counters to a folder the supervisor made (one small JSON file each, replaced
atomically, about once a second and at exit), and the worker answering a scrape adds
the others' files to its own live counters. A restarted worker starts from its
previous life's file, so the group's counters never go back; requests in flight are
only counted from files fresh enough to still mean something.

File I/O runs in a thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Any

import orjson

from .metrics import Metrics

__all__ = ["MetricsShare"]

logger = logging.getLogger(__name__)


class MetricsShare:
    def __init__(self, folder: Path, index: int, interval: float = 1.0) -> None:
        self.folder = folder
        self.index = index
        self.interval = max(0.05, interval)  # 0 or less would spin
        self._failing = False  # warned about a failing publish; quiet until it works

    def _path(self, index: int) -> Path:
        return self.folder / f"worker-{index}.json"

    async def restore(self, metrics: Metrics) -> None:
        """Take over the counters this worker had before it was restarted."""
        snapshot = await asyncio.to_thread(_load, self._path(self.index))
        if snapshot is not None:
            metrics.absorb(snapshot)

    async def publish(self, metrics: Metrics) -> None:
        data = orjson.dumps(metrics.snapshot())
        try:
            await asyncio.to_thread(_write, self._path(self.index), data)
        except OSError as exc:
            if not self._failing:
                self._failing = True
                logger.warning(
                    "cannot share this worker's metrics (scrapes miss its counts "
                    "until this works again): %s",
                    exc,
                )
            return
        if self._failing:
            self._failing = False
            logger.warning("sharing this worker's metrics works again")

    async def peers(self) -> list[dict[str, Any]]:
        """The other workers' latest snapshots (stale ones without requests in flight)."""
        return await asyncio.to_thread(self._read_peers, time.time())

    def _read_peers(self, now: float) -> list[dict[str, Any]]:
        mine = self._path(self.index).name
        found: list[dict[str, Any]] = []
        try:
            paths = sorted(self.folder.glob("worker-*.json"))
        except OSError:
            return found
        for path in paths:
            if path.name == mine:
                continue
            snapshot = _load(path)
            if snapshot is None:
                continue
            with contextlib.suppress(OSError):
                if now - path.stat().st_mtime > 5 * self.interval:
                    snapshot["in_flight"] = {}  # its worker stopped publishing
            found.append(snapshot)
        return found

    async def run(self, metrics: Metrics, stop: asyncio.Event) -> None:
        """Publish until `stop`, then once more (the final counts)."""
        while not stop.is_set():
            await self.publish(metrics)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)
        await self.publish(metrics)


def _load(path: Path) -> dict[str, Any] | None:
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _write(path: Path, data: bytes) -> None:
    """Readers see the old or the new snapshot, whole. Lighter than the pool file's
    `atomic_write` on purpose: no fsync (this runs every second, and a snapshot lost
    in a crash is a second behind at worst) and no existing file needed."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
    os.replace(temp, path)
