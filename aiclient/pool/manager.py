"""ProviderPool: who serves the next request, and what happened to each instance.

Every method is synchronous, so the event loop is the lock: a selection and its
in-flight accounting can never interleave with another. No I/O here; the writer task
persists what `snapshot_fields` reports.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any

from ..errors import UpstreamError, failure_class
from .models import SERVER_FIELDS, NodeState, ProviderNode, iso_now

__all__ = ["Entry", "Lease", "ProviderPool"]

logger = logging.getLogger(__name__)


class Entry:
    """One instance in the pool: its config, its state and its cached provider client."""

    __slots__ = ("client", "node", "state")

    def __init__(self, node: ProviderNode, state: NodeState) -> None:
        self.node = node
        self.state = state
        self.client: Any = None  # built lazily by the relay, dropped on config change

    def usable_for(self, model: str | None) -> bool:
        return (
            self.state.healthy
            and not self.node.disabled
            and (model is None or model not in self.node.not_supported_models)
        )


class Lease:
    """One attempt on one instance; exactly one of success/failure/release ends it."""

    __slots__ = ("_done", "_pool", "entry")

    def __init__(self, pool: ProviderPool, entry: Entry) -> None:
        self._pool = pool
        self.entry = entry
        self._done = False
        entry.state.in_flight += 1

    @property
    def node(self) -> ProviderNode:
        return self.entry.node

    def _finish(self) -> bool:
        if self._done:
            return False
        self._done = True
        self.entry.state.in_flight -= 1
        return True

    def success(self) -> None:
        if self._finish():
            self._pool._record_success(self.entry)

    def failure(self, error: UpstreamError) -> None:
        if self._finish():
            self._pool._record_failure(self.entry, error)

    def release(self) -> None:
        """End without blaming or crediting the instance (client fault, disconnect)."""
        self._finish()


class ProviderPool:
    """All instances of all provider types, with round-robin selection per type."""

    def __init__(
        self,
        *,
        max_error_count: int = 3,
        clock: Callable[[], float] | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.max_error_count = max_error_count
        self._clock = clock
        self.on_change = on_change or (lambda: None)
        self._by_type: dict[str, list[Entry]] = {}
        self._by_uuid: dict[str, Entry] = {}
        self._cursor: dict[str, int] = {}
        self.failures: dict[tuple[str, str], int] = {}  # (uuid, failure class) -> count

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
            by_type.setdefault(node.provider_type, []).append(entry)
            by_uuid[node.uuid] = entry
        removed = len(set(self._by_uuid) - set(by_uuid))
        self._by_type = by_type
        self._by_uuid = by_uuid
        self._cursor = {t: self._cursor.get(t, 0) for t in by_type}
        return added, removed, changed

    def types(self) -> list[str]:
        return list(self._by_type)

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

    def acquire(
        self,
        provider_type: str,
        model: str | None = None,
        exclude: Collection[str] = (),
    ) -> Lease | None:
        """The next usable instance after the last one picked, or None."""
        group = self._by_type.get(provider_type)
        if not group:
            return None
        count = len(group)
        start = self._cursor.get(provider_type, 0) % count
        for step in range(count):
            index = (start + step) % count
            entry = group[index]
            if entry.usable_for(model) and entry.node.uuid not in exclude:
                self._cursor[provider_type] = index + 1
                logger.debug(
                    "selected %s instance %s (%d in flight)",
                    provider_type,
                    entry.node.label,
                    entry.state.in_flight,
                )
                return Lease(self, entry)
        return None

    # -- bookkeeping ---------------------------------------------------------------

    def _now_iso(self) -> str:
        return iso_now(self._clock() if self._clock else None)

    def _record_success(self, entry: Entry) -> None:
        state = entry.state
        state.usage_count += 1
        state.last_used = self._now_iso()
        state.error_count = 0
        self.on_change()

    def _record_failure(self, entry: Entry, error: UpstreamError) -> None:
        key = (entry.node.uuid, failure_class(error))
        self.failures[key] = self.failures.get(key, 0) + 1
        reason = error.message
        state = entry.state
        state.error_count += 1
        state.last_error_time = self._now_iso()
        if (
            self.max_error_count
            and state.error_count >= self.max_error_count
            and state.healthy
        ):
            state.healthy = False
            logger.warning(
                "%s instance %s marked unhealthy after %d errors (last: %s)",
                entry.node.provider_type,
                entry.node.label,
                state.error_count,
                reason,
            )
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
            for name in SERVER_FIELDS:
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
    counts = {"total": 0, "healthy": 0, "unhealthy": 0, "disabled": 0}
    for entry in group:
        counts["total"] += 1
        if entry.node.disabled:
            counts["disabled"] += 1
        elif entry.state.healthy:
            counts["healthy"] += 1
        else:
            counts["unhealthy"] += 1
    return counts
