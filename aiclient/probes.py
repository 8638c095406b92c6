"""Health probes: bring instances back when they work again, and watch `checkHealth` ones.

Every HEALTH_CHECK_INTERVAL_MS (and as soon as a cooldown's deadline passes) the
checker probes instances that are out for a reason a probe can clear (standby
error_threshold / auth_failed / health_check_failed / quota_exhausted, a cooldown
whose deadline passed) plus every active instance with `checkHealth: true`. Never
`manual` or `disabled` ones, and never a healthy pool with billable calls unless asked
(LiteLLM #26987). A probe is one tiny, valid generation through the provider's own
`send`: `checkModelName` or the type's default model, max tokens HEALTH_CHECK_MAX_TOKENS
(16: enough for a reasoning model to answer at all, where LiteLLM's 1 fails), a
timeout, at most one probe per instance at a time. HTTP 2xx passes. A pass makes the
instance active with errorCount 0; a failure is judged by the error policy (a 429
cools, a 401 is auth_failed, anything else health_check_failed). Results reach the
pool file through the pool's normal write-back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson

from .config import Settings
from .errors import AiclientError, UpstreamError, UpstreamTimeout
from .pool import Entry, ProviderPool
from .pool import health as states
from .pool.schema import TYPE_SPECS
from .protocols import ApiProtocol
from .relay import Relay
from .tasks import spawn

__all__ = ["HealthChecker", "probe_body"]

logger = logging.getLogger(__name__)

_PROMPT = "Hi"


def probe_body(protocol: ApiProtocol, model: str, max_tokens: int) -> dict[str, Any]:
    """The smallest valid generation request in `protocol`."""
    if protocol is ApiProtocol.GEMINI:
        return {
            "contents": [{"role": "user", "parts": [{"text": _PROMPT}]}],
            "generationConfig": {"maxOutputTokens": max_tokens},
        }
    return {
        "model": model,
        "messages": [{"role": "user", "content": _PROMPT}],
        "max_tokens": max_tokens,
        "stream": False,
    }


class HealthChecker:
    def __init__(self, settings: Settings, pool: ProviderPool, relay: Relay) -> None:
        self.settings = settings
        self.pool = pool
        self.relay = relay
        self._running: dict[str, asyncio.Task[bool]] = {}
        self.probes = 0

    def due(self) -> list[Entry]:
        """The instances the next round probes."""
        now = self.pool.now()
        result = []
        for entry in self.pool.entries():
            node, state = entry.node, entry.state
            if node.disabled or state.probing:
                continue
            if state.status == states.ACTIVE:
                if node.check_health:
                    result.append(entry)
            elif state.status == states.RECOVERING:
                if state.in_flight == 0:
                    result.append(entry)
            elif state.cooldown_until is not None:
                if states.due_for_trial(state, now):
                    result.append(entry)
            elif state.reason in states.PROBED_REASONS:
                result.append(entry)
        return result

    async def run_once(self) -> dict[str, bool]:
        """Probe every due instance (concurrently); uuid -> passed."""
        entries = self.due()
        results = await asyncio.gather(*(self.check(e) for e in entries))
        return {e.node.uuid: ok for e, ok in zip(entries, results, strict=True)}

    def _next_wait(self) -> float:
        interval = self.settings.health_check_interval_ms / 1000
        now = self.pool.now()
        for entry in self.pool.entries():
            until = entry.state.cooldown_until
            if until is not None and not entry.node.disabled:
                interval = min(interval, max(until - now, 0.0) + 0.05)
        return max(interval, 0.05)

    async def run(self, stop: asyncio.Event) -> None:
        """Probe on the period until `stop` is set (the app lifecycle's task)."""
        if not self.settings.health_check_interval_ms:
            return
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._next_wait())
            if stop.is_set():
                return
            try:
                await self.run_once()
            except Exception:  # a bug must not end health checking for good
                logger.exception("health check round failed")

    def close(self) -> None:
        for task in self._running.values():
            task.cancel()

    async def check(self, entry: Entry) -> bool:
        """Probe one instance now; joins the probe already running for it."""
        uid = entry.node.uuid
        task = self._running.get(uid)
        if task is None:
            task = spawn(self._probe(entry), name=f"probe-{uid}")
            self._running[uid] = task
            task.add_done_callback(lambda _: self._running.pop(uid, None))
        return await asyncio.shield(task)

    async def _probe(self, entry: Entry) -> bool:
        node, state = entry.node, entry.state
        spec = TYPE_SPECS.get(node.provider_type)
        model = node.check_model or (spec.default_check_model if spec else "")
        provider = self.relay.provider_for(entry)
        body = orjson.dumps(
            probe_body(provider.protocol, model, self.settings.health_check_max_tokens)
        )
        state.probing = True
        self.probes += 1
        try:
            async with asyncio.timeout(self.settings.health_check_timeout_ms / 1000):
                up = await provider.send(body, model=model, stream=False, client_headers={})
                await up.read()
        except TimeoutError:
            self._failed(entry, UpstreamTimeout("the health probe timed out"))
            return False
        except UpstreamError as exc:
            self._failed(entry, exc)
            return False
        except AiclientError as exc:  # e.g. a type that cannot be probed
            logger.warning("cannot probe %s: %s", node.label, exc.message)
            return False
        finally:
            state.probing = False
        logger.info(
            "%s instance %s passed its health probe", node.provider_type, node.label
        )
        self.pool.reset(entry)
        return True

    def _failed(self, entry: Entry, error: UpstreamError) -> None:
        pool = self.pool
        now = pool.now()
        verdict = pool.policy.judge(entry.node.provider_type, error, now)
        action = verdict.action
        if action in ("count", "ignore"):
            action = "probe_failed"
        entry.state.last_error = error.message
        logger.info(
            "%s instance %s failed its health probe: %s",
            entry.node.provider_type,
            entry.node.label,
            error.message,
        )
        pool.failed(entry, action, verdict.reset_in, now)
        pool.on_change()
