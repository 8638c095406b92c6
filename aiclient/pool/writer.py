"""Keeps memory and provider_pools.json in step: write-back of state, reload of edits.

One `sync` does both: under the file lock it reads the file, merges, writes, and hands
back the new config when the file changed. It runs in a worker thread, so the event loop
never waits on the disk. Triggers: state changes (at most once per debounce period) and
the folder watcher (an edit). A failed write (full disk, read-only file, vanished folder)
is logged once and retried; a pool file the user broke is left alone, and the server
keeps serving the last good pool, until it parses again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from watchfiles import awatch

from .manager import ProviderPool
from .models import ProviderNode
from .store import PoolFile, SyncResult

__all__ = ["PoolWriter", "watch_folder"]

logger = logging.getLogger(__name__)

_RETRY_SECONDS = 1.0  # how soon a failed folder watcher starts again


class PoolWriter:
    def __init__(
        self,
        pool: ProviderPool,
        pool_file: PoolFile,
        debounce: float,
        *,
        on_reload: Callable[[list[ProviderNode]], None] | None = None,
    ) -> None:
        self.pool = pool
        self.pool_file = pool_file
        self.debounce = debounce
        self.on_reload = on_reload or (lambda nodes: None)
        self._wake = asyncio.Event()
        self._closed = asyncio.Event()
        self._lock = asyncio.Lock()
        self._problem: str | None = None
        self.paused = False
        self.error: str | None = None
        pool.on_change = self._wake.set
        if pool_file.dirty_doc:
            self._wake.set()

    def request(self) -> None:
        """Ask for a sync soon (after the current debounce period)."""
        self._wake.set()

    def close(self) -> None:
        """Make `run` return after the sync in progress, if any (never mid-sync)."""
        self._closed.set()
        self._wake.set()

    async def run(self) -> None:
        while not self._closed.is_set():
            await self._wake.wait()
            if self._closed.is_set():
                return
            self._wake.clear()
            try:
                await self.sync()
            except Exception:  # a bug must not end write-back for good
                logger.exception("pool file sync failed; will retry")
                self._wake.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closed.wait(), self.debounce)

    async def sync(self) -> SyncResult | None:
        """Sync memory and file now. Returns None when the disk refused the write.

        The file work runs in a thread that finishes even if this coroutine is
        cancelled; its outcome is adopted in any case, or memory and file would
        disagree about what was already merged.
        """
        async with self._lock:
            snapshot = self.pool.snapshot_fields()
            work = asyncio.get_running_loop().run_in_executor(
                None, self.pool_file.sync, snapshot
            )
            try:
                result = await asyncio.shield(work)
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    self._adopt(snapshot, await work)
                raise
            except OSError as exc:
                self._report(
                    f"cannot write {self.pool_file.path}: {exc.strerror or exc}; "
                    "will retry (the server keeps serving)"
                )
                self._wake.set()
                return None
            self._adopt(snapshot, result)
            return result

    def _adopt(self, snapshot: dict[str, dict[str, Any]], result: SyncResult) -> None:
        if result.error is not None:
            self.paused = True
            self.error = result.error.message
            self._report(
                f"{result.error.message}; write-back paused until the file is "
                "fixed (the server keeps serving the last good pool)"
            )
            return
        if self._problem is not None:
            logger.info("pool file %s is in sync again", self.pool_file.path)
            self._problem = None
        self.paused = False
        self.error = None
        if result.nodes is not None:
            self._apply_config(result.nodes)
        self.pool.apply_merged(snapshot, result.merged)

    def _apply_config(self, nodes: list[ProviderNode]) -> None:
        added, removed, changed = self.pool.load(nodes)
        self.on_reload(nodes)
        if added or removed or changed:
            logger.info(
                "reloaded %s: %d added, %d removed, %d changed",
                self.pool_file.path,
                added,
                removed,
                changed,
            )

    def _report(self, message: str) -> None:
        if message != self._problem:
            logger.error("%s", message)
            self._problem = message
        else:
            logger.debug("%s", message)


def _only(path: Path) -> Callable[[Any, str], bool]:
    name = path.name

    def accept(change: Any, changed: str) -> bool:
        return Path(changed).name == name

    return accept


async def _watch_changes(
    path: Path, stop: asyncio.Event, *, polling: bool
) -> AsyncIterator[object]:
    async for changes in awatch(
        path.parent,
        watch_filter=_only(path),
        debounce=400,
        step=50,
        stop_event=stop,
        force_polling=polling,
        poll_delay_ms=100,
    ):
        yield changes


async def watch_folder(
    path: Path,
    on_change: Callable[[], Any],
    stop: asyncio.Event,
    *,
    polling: bool = False,
    changes: Callable[[], AsyncIterator[object]] | None = None,
) -> None:
    """Call `on_change` (awaitable) after every change of `path`, until `stop` is set.

    Watches the folder, not the file: editors save by writing a new file and renaming
    it over the old one. Survives the folder vanishing and coming back. `changes`
    replaces the real watcher in tests.
    """
    source = changes or (lambda: _watch_changes(path, stop, polling=polling))
    missed = False
    while not stop.is_set():
        try:
            if missed:  # edits made while the watcher was down
                await on_change()
            async for _ in source():
                await on_change()
                if stop.is_set():
                    return
        except Exception as exc:  # the watcher itself failed: log, wait, watch again
            logger.warning("cannot watch %s (%s); retrying", path.parent, exc)
            missed = True
        if changes is not None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), _RETRY_SECONDS)
