"""The write-back task: persists pool state at most once per debounce period.

Runs the blocking read-merge-write of store.PoolFile in a worker thread, so the event
loop never waits on the disk. A failed write (full disk, read-only file, vanished
folder) is logged once and retried; a pool file the user broke is left alone until
it parses again.
"""

from __future__ import annotations

import asyncio
import logging

from .manager import ProviderPool
from .store import PoolFile, SyncResult

__all__ = ["PoolWriter"]

logger = logging.getLogger(__name__)


class PoolWriter:
    def __init__(self, pool: ProviderPool, pool_file: PoolFile, debounce: float) -> None:
        self.pool = pool
        self.pool_file = pool_file
        self.debounce = debounce
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._problem: str | None = None
        self.paused = False
        pool.on_change = self._wake.set
        if pool_file.dirty_doc:
            self._wake.set()

    def request(self) -> None:
        """Ask for a write soon (after the current debounce period)."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.flush()
            await asyncio.sleep(self.debounce)

    async def flush(self) -> SyncResult | None:
        """Sync memory and file now. Returns None when the disk refused the write."""
        async with self._lock:
            snapshot = self.pool.snapshot_fields()
            try:
                result = await asyncio.to_thread(self.pool_file.sync, snapshot)
            except OSError as exc:
                self._report(
                    f"cannot write {self.pool_file.path}: {exc.strerror or exc}; will retry"
                )
                self._wake.set()
                return None
            if result.error is not None:
                self.paused = True
                self._report(
                    f"{result.error.message}; write-back paused until the "
                    "file is fixed (the server keeps the last good pool)"
                )
                return result
            if self._problem is not None:
                logger.info("pool file %s written again", self.pool_file.path)
                self._problem = None
            self.paused = False
            self.pool.apply_merged(snapshot, result.merged)
            return result

    def _report(self, message: str) -> None:
        if message != self._problem:
            logger.error("%s", message)
            self._problem = message
        else:
            logger.debug("%s", message)
