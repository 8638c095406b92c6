"""ProviderPool: who serves the next request, and what happened to each instance.

Every method is synchronous, so the event loop is the lock: a selection and its
in-flight accounting can never interleave with another. No I/O here; the writer task
persists what `snapshot_fields` reports. The state machine is in health.py, the
strategies in selection.py, the meaning of a failure in ../policy.py; this module
wires them to leases. Time comes from `clock` (wall, for cooldowns and the pool
file's stamps) and `timer` (monotonic, for latency), both injectable.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any

from ..config import PoolStrategy
from ..errors import UpstreamError, failure_class
from ..policy import ErrorPolicy
from . import health
from .models import SERVER_FIELDS, NodeState, ProviderNode, iso_now
from .selection import Candidate, Selector

__all__ = ["Entry", "Lease", "ProviderPool"]

logger = logging.getLogger(__name__)

_EWMA = 0.2
DEFAULT_QUEUE_LIMIT = 100


class Entry:
    """One instance in the pool: its config, its state and its cached provider client."""

    __slots__ = ("client", "node", "state")

    def __init__(self, node: ProviderNode, state: NodeState) -> None:
        self.node = node
        self.state = state
        self.client: Any = None  # built lazily by the relay, dropped on config change

    def serves(self, model: str | None) -> bool:
        return model is None or model not in self.node.not_supported_models

    def full(self) -> bool:
        limit = self.node.concurrency_limit
        return bool(limit) and self.state.in_flight >= limit


class Lease:
    """One attempt on one instance; exactly one of success/failure/release ends it."""

    __slots__ = ("_done", "_pool", "entry", "started")

    def __init__(self, pool: ProviderPool, entry: Entry) -> None:
        self._pool = pool
        self.entry = entry
        self._done = False
        self.started = pool.timer()
        entry.state.in_flight += 1

    @property
    def node(self) -> ProviderNode:
        return self.entry.node

    def _finish(self) -> bool:
        if self._done:
            return False
        self._done = True
        self.entry.state.in_flight -= 1
        self._pool.wake(self.entry.node.provider_type)
        return True

    def success(self) -> None:
        if self._finish():
            self._pool._record_success(self.entry, self._pool.timer() - self.started)

    def failure(self, error: UpstreamError) -> None:
        if self._finish():
            self._pool._record_failure(self.entry, error)

    def release(self) -> None:
        """End without blaming or crediting the instance (client fault, disconnect)."""
        if self._finish() and self.entry.state.status == health.RECOVERING:
            self._pool._trial_undecided(self.entry)


class ProviderPool:
    """All instances of all provider types, with round-robin selection per type."""

    def __init__(
        self,
        *,
        max_error_count: int = 3,
        clock: Callable[[], float] | None = None,
        timer: Callable[[], float] | None = None,
        on_change: Callable[[], None] | None = None,
        policy: ErrorPolicy | None = None,
        rate_limit_cooldown: float = 30.0,
        rate_limit_cooldown_max: float = 300.0,
        quota_cooldown_max: float = 86400.0,
        strategies: Mapping[str, PoolStrategy] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.max_error_count = max_error_count
        self.clock = clock or time.time
        self.timer = timer or time.monotonic
        self.on_change = on_change or (lambda: None)
        self.policy = policy or ErrorPolicy()
        self.rate_limit_cooldown = rate_limit_cooldown
        self.rate_limit_cooldown_max = rate_limit_cooldown_max
        self.quota_cooldown_max = quota_cooldown_max
        self._rng = rng or random.Random()
        self._by_type: dict[str, list[Entry]] = {}
        self._by_uuid: dict[str, Entry] = {}
        self.selectors: dict[str, Selector] = {}
        for ptype, spec in (strategies or {}).items():
            self.set_strategy(ptype, spec)
        self._seq = 0
        self.failures: dict[tuple[str, str], int] = {}  # (uuid, failure class) -> count
        self.picks: dict[str, int] = {}  # provider type -> selections
        self.events: dict[str, int] = {}  # provider type -> state transitions
        self.waiters: dict[str, deque[asyncio.Future[None]]] = {}

    # -- configuration -------------------------------------------------------------

    def load(self, nodes: Sequence[ProviderNode]) -> tuple[int, int, int]:
        """Replace the configured instances; state and clients survive by uuid.

        A new instance starts from the server fields written in its settings. An
        instance whose config changed keeps its state but gets a fresh client, so a
        rotated key is used from the next request on. Requests in flight on a removed
        instance finish on it. Returns how many instances were added, removed, changed.
        """
        by_type: dict[str, list[Entry]] = {}
        by_uuid: dict[str, Entry] = {}
        added = changed = 0
        for node in nodes:
            old = self._by_uuid.get(node.uuid)
            if old is not None and old.node.provider_type == node.provider_type:
                entry = Entry(node, old.state)
                if old.node.config_key() == node.config_key():
                    entry.client = old.client
                else:
                    changed += 1
            else:
                added += 1
                entry = Entry(node, NodeState.from_fields(node.settings))
            health.sync_disabled(entry.state, node, self.clock())
            by_type.setdefault(node.provider_type, []).append(entry)
            by_uuid[node.uuid] = entry
        removed = len(set(self._by_uuid) - set(by_uuid))
        self._by_type = by_type
        self._by_uuid = by_uuid
        return added, removed, changed

    def selector(self, provider_type: str) -> Selector:
        selector = self.selectors.get(provider_type)
        if selector is None:
            selector = self.selectors[provider_type] = Selector(rng=self._rng)
        return selector

    def set_strategy(self, provider_type: str, spec: PoolStrategy) -> None:
        """Change a type's strategy and weights at run time (its memory restarts)."""
        self.selectors[provider_type] = Selector(
            spec.strategy, dict(spec.weights) if spec.weights else None, rng=self._rng
        )

    def types(self) -> list[str]:
        return list(self._by_type)

    @property
    def layout(self) -> object:
        """Changes (by identity) whenever the pool is reloaded."""
        return self._by_type

    def has_type(self, provider_type: str) -> bool:
        return provider_type in self._by_type

    def entries(self, provider_type: str | None = None) -> Iterator[Entry]:
        if provider_type is not None:
            yield from self._by_type.get(provider_type, ())
            return
        for group in self._by_type.values():
            yield from group

    def get(self, uuid: str) -> Entry | None:
        return self._by_uuid.get(uuid)

    # -- selection -----------------------------------------------------------------

    def _candidates(
        self, provider_type: str, model: str | None, exclude: Collection[str]
    ) -> tuple[list[Candidate], bool]:
        """Instances that may take a request now, and whether any usable one was
        left out only because it is at its concurrencyLimit."""
        now = self.clock()
        selector = self.selector(provider_type)
        found: list[Candidate] = []
        full = False
        for index, entry in enumerate(self._by_type.get(provider_type, ())):
            node, state = entry.node, entry.state
            if node.uuid in exclude or not entry.serves(model):
                continue
            if (node.disabled or state.status != health.ACTIVE) and not health.selectable(
                state, node, now
            ):
                continue
            if entry.full():
                full = True
                continue
            weight = selector.weight_of(node.uuid, node.weight)
            found.append(Candidate(index, node.uuid, state, weight))
        return found, full

    def acquire(
        self,
        provider_type: str,
        model: str | None = None,
        exclude: Collection[str] = (),
    ) -> Lease | None:
        """An instance for one attempt, by the type's strategy, or None.

        An instance out with a passed deadline is taken as the half-open trial: it
        turns `recovering` and takes nothing else until that request decides.
        """
        candidates, _ = self._candidates(provider_type, model, exclude)
        if not candidates:
            return None
        pick = self.selector(provider_type).choose(candidates)
        entry = self._by_type[provider_type][pick.pos]
        state = entry.state
        if state.status != health.ACTIVE:
            self._move(entry, health.RECOVERING, state.reason, state.cooldown_until)
        self._seq += 1
        state.picked = self._seq
        self.picks[provider_type] = self.picks.get(provider_type, 0) + 1
        logger.debug(
            "selected %s instance %s (%d in flight)",
            provider_type,
            entry.node.label,
            state.in_flight,
        )
        return Lease(self, entry)

    def available(
        self, provider_type: str, model: str | None = None, exclude: Collection[str] = ()
    ) -> bool:
        """Whether another attempt could find an instance (now or after a queue)."""
        candidates, full = self._candidates(provider_type, model, exclude)
        return bool(candidates) or full

    def saturated(
        self, provider_type: str, model: str | None = None, exclude: Collection[str] = ()
    ) -> int:
        """0 when a request could not wait for a slot; else how many may queue."""
        _, full = self._candidates(provider_type, model, exclude)
        if not full:
            return 0
        limit = 0
        for entry in self._by_type.get(provider_type, ()):
            if entry.full() and entry.node.uuid not in exclude:
                queue = entry.node.queue_limit
                if queue == 0:
                    return 1 << 30  # the original's 0: unlimited
                limit += DEFAULT_QUEUE_LIMIT if queue is None else queue
        return limit

    def soonest_return(
        self, provider_type: str, model: str | None = None, exclude: Collection[str] = ()
    ) -> float | None:
        """Seconds until the first cooling instance that could serve is tried again,
        when every such instance is cooling (else None: they are out for good
        reasons, or there are none)."""
        now = self.clock()
        soonest: float | None = None
        for entry in self._by_type.get(provider_type, ()):
            state = entry.state
            if entry.node.uuid in exclude or not entry.serves(model):
                continue
            if entry.node.disabled or state.status != health.COOLING:
                continue
            until = state.cooldown_until or now
            soonest = until if soonest is None else min(soonest, until)
        return None if soonest is None else max(0.0, soonest - now)

    def wake(self, provider_type: str) -> None:
        """A slot of `provider_type` may have freed: the first waiter tries again."""
        queue = self.waiters.get(provider_type)
        while queue:
            waiter = queue.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    # -- bookkeeping ---------------------------------------------------------------

    def now(self) -> float:
        return self.clock()

    def _now_iso(self) -> str:
        return iso_now(self.clock())

    def _move(
        self, entry: Entry, status: str, reason: str | None, until: float | None = None
    ) -> None:
        if health.transition(entry.state, entry.node, status, reason, self.clock(), until):
            ptype = entry.node.provider_type
            self.events[ptype] = self.events.get(ptype, 0) + 1
            self.on_change()

    def _record_success(self, entry: Entry, seconds: float) -> None:
        state = entry.state
        state.usage_count += 1
        state.last_used = self._now_iso()
        state.error_count = 0
        state.strikes = 0
        state.latency = (
            seconds
            if state.latency is None
            else state.latency + _EWMA * (seconds - state.latency)
        )
        state.error_rate -= _EWMA * state.error_rate
        if state.status != health.ACTIVE:
            self.activate(entry)
        self.on_change()

    def _trial_undecided(self, entry: Entry) -> None:
        """A trial ended without a verdict (client gone): the next request tries."""
        state = entry.state
        status = health.STANDBY if state.cooldown_until is None else health.COOLING
        self._move(
            entry,
            status,
            state.reason or "error_threshold",
            state.cooldown_until or self.clock(),
        )

    def _record_failure(self, entry: Entry, error: UpstreamError) -> None:
        node, state = entry.node, entry.state
        key = (node.uuid, failure_class(error))
        self.failures[key] = self.failures.get(key, 0) + 1
        now = self.clock()
        verdict = self.policy.judge(node.provider_type, error, now)
        if verdict.action == "ignore":
            if state.status == health.RECOVERING:
                self._trial_undecided(entry)
            return
        state.error_rate += _EWMA * (1 - state.error_rate)
        state.last_error = error.message
        state.last_error_time = self._now_iso()
        self.failed(entry, verdict.action, verdict.reset_in, now)
        self.on_change()

    def failed(self, entry: Entry, action: str, reset_in: float | None, now: float) -> None:
        """Apply one failure's verdict (a request's or a probe's) to the instance."""
        state = entry.state
        ptype = entry.node.provider_type
        if action == "rate_limited":
            state.strikes += 1
            delay = (
                reset_in
                if reset_in is not None
                else self.rate_limit_cooldown * (1 << min(state.strikes - 1, 16))
            )
            delay = min(delay, self.rate_limit_cooldown_max)
            self._cool(entry, "rate_limited", now + delay)
        elif action == "quota_exhausted":
            if reset_in is not None:
                self._cool(
                    entry, "quota_exhausted", now + min(reset_in, self.quota_cooldown_max)
                )
            else:
                self._move(entry, health.STANDBY, "quota_exhausted")
        elif action == "auth_failed":
            self._move(entry, health.STANDBY, "auth_failed")
        elif action == "probe_failed":
            self._move(entry, health.STANDBY, "health_check_failed")
        else:
            state.error_count += 1
            if state.status == health.RECOVERING or (
                self.max_error_count and state.error_count >= self.max_error_count
            ):
                if state.status == health.ACTIVE:
                    logger.warning(
                        "%s instance %s out after %d errors in a row",
                        ptype,
                        entry.node.label,
                        state.error_count,
                    )
                self._move(entry, health.STANDBY, "error_threshold")

    def _cool(self, entry: Entry, reason: str, until: float) -> None:
        state = entry.state
        if state.status == health.COOLING and state.cooldown_until is not None:
            until = max(until, state.cooldown_until)
        self._move(entry, health.COOLING, reason, until)

    # -- operator actions (admin API) ----------------------------------------------

    def activate(self, entry: Entry) -> None:
        entry.state.error_count = 0
        entry.state.strikes = 0
        self._move(entry, health.ACTIVE, None)

    def disable(self, entry: Entry) -> None:
        self._move(entry, health.STANDBY, "manual")

    def reset(self, entry: Entry) -> None:
        """Back to active with clean counters (usage is kept: it is history)."""
        entry.state.error_rate = 0.0
        entry.state.last_error = None
        entry.state.last_error_time = None
        self.activate(entry)
        self.on_change()

    # -- persistence support -------------------------------------------------------

    def snapshot_fields(self) -> dict[str, dict[str, Any]]:
        return {uid: e.state.to_fields() for uid, e in self._by_uuid.items()}

    def apply_merged(
        self,
        snapshot: Mapping[str, Mapping[str, Any]],
        merged: Mapping[str, Mapping[str, Any]],
    ) -> None:
        """Adopt what a sync decided, keeping changes made since `snapshot` was taken."""
        for uid, result in merged.items():
            entry = self._by_uuid.get(uid)
            snap = snapshot.get(uid)
            if entry is None or snap is None:
                continue
            state = entry.state
            now = state.to_fields()
            for name in (*SERVER_FIELDS[1:], SERVER_FIELDS[0]):
                target = result[name]
                if target == snap[name]:
                    continue
                if name in ("usageCount", "errorCount"):
                    state.set_field(name, max(0, now[name] + target - snap[name]))
                elif now[name] == snap[name]:
                    state.set_field(name, target)

    def summary(self) -> dict[str, dict[str, int]]:
        """Per provider type: instance counts by health (no secrets)."""
        result: dict[str, dict[str, int]] = {}
        for ptype, group in self._by_type.items():
            result[ptype] = _count(group)
        return result


def _count(group: Iterable[Entry]) -> dict[str, int]:
    counts = dict.fromkeys(
        ("total", "healthy", "unhealthy", "disabled", "cooling", "standby", "recovering"),
        0,
    )
    for entry in group:
        counts["total"] += 1
        status = entry.state.status
        if entry.node.disabled:
            counts["disabled"] += 1
        elif status == health.ACTIVE:
            counts["healthy"] += 1
        else:
            counts["unhealthy"] += 1
        if status != health.ACTIVE and not entry.node.disabled:
            counts[status] += 1
    return counts
