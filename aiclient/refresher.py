"""CRON_REFRESH_TOKEN: a background task that keeps OAuth tokens fresh.

Every half CRON_NEAR_MINUTES (at least every 30 s) it asks each enabled instance whose
provider refreshes credentials (`RefreshingProvider`) to refresh if its token expires
within CRON_NEAR_MINUTES. Instances are refreshed concurrently, so one slow token
endpoint delays no other; a failure is recorded against that instance (with the reason)
like a failed request, so the pool's health rules apply to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from .credentials import RefreshingProvider
from .errors import UpstreamError
from .http_server import App
from .pool import Entry, Lease
from .runtime import Runtime
from .tasks import spawn

__all__ = ["refresh_all", "refresher_context"]

logger = logging.getLogger(__name__)


async def _refresh_one(runtime: Runtime, entry: Entry) -> bool:
    assert runtime.relay is not None
    provider = runtime.relay.provider_for(entry)
    if not isinstance(provider, RefreshingProvider):
        return True
    try:
        await provider.refresh_credentials()
    except UpstreamError as exc:
        Lease(runtime.pool, entry).failure(exc)
        logger.warning(
            "%s instance %s: background token refresh failed: %s",
            entry.node.provider_type,
            entry.node.label,
            exc.message,
        )
        return False
    return True


async def refresh_all(runtime: Runtime) -> tuple[int, int]:
    """One round over every enabled instance; returns (refreshable, failed)."""
    entries = [e for e in runtime.pool.entries() if not e.node.disabled]
    results = await asyncio.gather(*(_refresh_one(runtime, e) for e in entries))
    return len(results), results.count(False)


def refresher_context(
    runtime: Runtime,
) -> Callable[[App], AsyncIterator[None]]:
    async def context(app: App) -> AsyncIterator[None]:
        settings = runtime.settings
        task = None
        if settings.cron_refresh_token and runtime.relay is not None:
            interval = max(30.0, settings.cron_near_minutes * 30.0)

            async def loop() -> None:
                while True:
                    try:
                        await refresh_all(runtime)
                    except Exception:  # a supervisor: keep refreshing next round
                        logger.exception("background token refresh round failed")
                    await asyncio.sleep(interval)

            task = spawn(loop(), name="token-refresher")
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    return context
