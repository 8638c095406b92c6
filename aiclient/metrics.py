"""Request statistics and the Prometheus exposition of them and of the pool's state.

The hot path only bumps plain dict counters (no locks: one event loop per process);
prometheus-client renders them at scrape time through a custom collector, together
with gauges read straight from the pool (in flight, health, counters). With
`--workers N` the workers publish snapshots of their counters to each other
(metrics_share.py) and whichever answers a scrape adds them up, so the counters are the
group's and never jump between one worker's and another's.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from .pool import ProviderPool

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
)
_EWMA_WEIGHT = 0.2

InstanceKey = tuple[str, str]  # provider type, uuid


@dataclass(slots=True)
class _Latency:
    buckets: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0
    count: int = 0
    ewma: float | None = None

    def observe(self, seconds: float) -> None:
        self.buckets[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds
        self.count += 1
        self.ewma = (
            seconds
            if self.ewma is None
            else (self.ewma + _EWMA_WEIGHT * (seconds - self.ewma))
        )


class Metrics:
    """Per-process counters; `observe` is called once per request by the middleware."""

    def __init__(self, pool: ProviderPool) -> None:
        self.pool = pool
        self.requests: dict[tuple[str, str, str, str], int] = {}
        self.latency: dict[InstanceKey, _Latency] = {}
        self.paused: Callable[[], bool] = lambda: False
        self._registry = CollectorRegistry(auto_describe=False)
        self._collector = _Collector(self)
        self._registry.register(self._collector)

    def observe(
        self, route: str, provider_type: str, uuid: str, status: int, seconds: float
    ) -> None:
        key = (route, provider_type, uuid, str(status))
        self.requests[key] = self.requests.get(key, 0) + 1
        if uuid:
            stats = self.latency.get((provider_type, uuid))
            if stats is None:
                stats = self.latency[(provider_type, uuid)] = _Latency()
            stats.observe(seconds)

    def snapshot(self) -> dict[str, Any]:
        """This process's counters, JSON-ready (what peers add to theirs)."""
        return {
            "requests": [[*key, count] for key, count in self.requests.items()],
            "latency": [
                [ptype, uid, stats.buckets, stats.total, stats.count]
                for (ptype, uid), stats in self.latency.items()
            ],
            "failures": [[*key, count] for key, count in self.pool.failures.items()],
            "in_flight": {e.node.uuid: e.state.in_flight for e in self.pool.entries()},
        }

    def absorb(self, snapshot: Mapping[str, Any]) -> None:
        """Add the counters of this worker's previous life (it was restarted), so the
        group's counters never go back. Requests in flight then died with it."""
        view = _Totals([snapshot])
        for key, count in view.requests.items():
            self.requests[key] = self.requests.get(key, 0) + count
        for lkey, (buckets, total, count) in view.latency.items():
            stats = self.latency.setdefault(lkey, _Latency())
            stats.buckets = [a + b for a, b in zip(stats.buckets, buckets, strict=True)]
            stats.total += total
            stats.count += count
        for fkey, count in view.failures.items():
            self.pool.failures[fkey] = self.pool.failures.get(fkey, 0) + count

    def latency_ms(self, provider_type: str, uuid: str) -> float | None:
        """Smoothed latency of an instance's recent requests, in milliseconds."""
        stats = self.latency.get((provider_type, uuid))
        return None if stats is None or stats.ewma is None else round(stats.ewma * 1000, 1)

    def render(self, peers: Sequence[Mapping[str, Any]] = ()) -> bytes:
        """The exposition of this process's counters plus the other workers' snapshots."""
        self._collector.totals = _Totals([self.snapshot(), *peers])
        return generate_latest(self._registry)


class _Totals:
    """Snapshots (ours and the other workers'), summed and keyed like our counters.
    Anything malformed in a snapshot is skipped: a peer's file never breaks a scrape."""

    def __init__(self, snapshots: Sequence[Mapping[str, Any]]) -> None:
        self.requests: dict[tuple[str, str, str, str], int] = {}
        self.latency: dict[InstanceKey, tuple[list[int], float, int]] = {}
        self.failures: dict[tuple[str, str], int] = {}
        self.in_flight: dict[str, int] = {}
        for snap in snapshots:
            try:
                self._add(snap)
            except (TypeError, ValueError, KeyError, AttributeError):
                continue

    def _add(self, snap: Mapping[str, Any]) -> None:
        for route, ptype, uid, status, count in snap.get("requests", ()):
            key = (str(route), str(ptype), str(uid), str(status))
            self.requests[key] = self.requests.get(key, 0) + int(count)
        for ptype, uid, buckets, total, count in snap.get("latency", ()):
            if len(buckets) != len(BUCKETS) + 1:
                continue
            lkey = (str(ptype), str(uid))
            old, old_total, old_count = self.latency.get(lkey, ([0] * len(buckets), 0.0, 0))
            merged = [a + int(b) for a, b in zip(old, buckets, strict=True)]
            self.latency[lkey] = (merged, old_total + float(total), old_count + int(count))
        for uid, kind, count in snap.get("failures", ()):
            fkey = (str(uid), str(kind))
            self.failures[fkey] = self.failures.get(fkey, 0) + int(count)
        for uid, count in (snap.get("in_flight") or {}).items():
            self.in_flight[str(uid)] = self.in_flight.get(str(uid), 0) + int(count)


def _names(pool: ProviderPool) -> dict[str, str]:
    return {e.node.uuid: e.node.custom_name or "" for e in pool.entries()}


class _Collector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self.m = metrics
        self.totals = _Totals(())

    def collect(self) -> Iterator[Metric]:
        names = _names(self.m.pool)
        requests = CounterMetricFamily(
            "aiclient_requests",
            "Requests answered, by route, instance and status.",
            labels=["route", "provider_type", "instance", "name", "status"],
        )
        for (route, ptype, uid, status), count in self.totals.requests.items():
            requests.add_metric([route, ptype, uid, names.get(uid, ""), status], count)
        yield requests
        latency = HistogramMetricFamily(
            "aiclient_request_duration_seconds",
            "Time to answer a request (a stream: until its end), by instance.",
            labels=["provider_type", "instance", "name"],
        )
        for (ptype, uid), (buckets, total, _) in self.totals.latency.items():
            cumulative, running = [], 0
            for bound, count in zip((*BUCKETS, float("inf")), buckets, strict=True):
                running += count
                cumulative.append((_bound(bound), float(running)))
            latency.add_metric([ptype, uid, names.get(uid, "")], cumulative, total)
        yield latency
        failures = CounterMetricFamily(
            "aiclient_upstream_failures",
            "Upstream failures by instance and class (rate_limited, auth, quota, server, "
            "timeout, network, protocol, http).",
            labels=["provider_type", "instance", "name", "class"],
        )
        types = {e.node.uuid: e.node.provider_type for e in self.m.pool.entries()}
        for (uid, kind), count in self.totals.failures.items():
            if uid in types:
                failures.add_metric([types[uid], uid, names[uid], kind], count)
        yield failures
        yield from self._pool_gauges(names)

    def _pool_gauges(self, names: dict[str, str]) -> Iterator[Metric]:
        labels = ["provider_type", "instance", "name"]
        gauges: dict[str, GaugeMetricFamily] = {
            "in_flight": GaugeMetricFamily(
                "aiclient_instance_in_flight", "Requests in flight.", labels=labels
            ),
            "healthy": GaugeMetricFamily(
                "aiclient_instance_healthy",
                "1 when the instance takes traffic.",
                labels=labels,
            ),
            "usage": GaugeMetricFamily(
                "aiclient_instance_usage_count",
                "usageCount of the pool file.",
                labels=labels,
            ),
            "errors": GaugeMetricFamily(
                "aiclient_instance_error_count",
                "errorCount of the pool file (errors in a row).",
                labels=labels,
            ),
        }
        states = GaugeMetricFamily(
            "aiclient_instance_state",
            "1 for the instance's current state (active, cooling, standby, recovering), "
            "labelled with its reason.",
            labels=[*labels, "state", "reason"],
        )
        until = GaugeMetricFamily(
            "aiclient_instance_cooldown_until_seconds",
            "When a cooling instance is tried again (Unix time); 0 when not cooling.",
            labels=labels,
        )
        for entry in self.m.pool.entries():
            key = [entry.node.provider_type, entry.node.uuid, names[entry.node.uuid]]
            state = entry.state
            states.add_metric([*key, state.status, state.reason or ""], 1.0)
            until.add_metric(key, state.cooldown_until or 0.0)
            usable = state.healthy and not entry.node.disabled
            in_flight = self.totals.in_flight.get(entry.node.uuid, 0)
            gauges["in_flight"].add_metric(key, in_flight)
            gauges["healthy"].add_metric(key, 1.0 if usable else 0.0)
            gauges["usage"].add_metric(key, state.usage_count)
            gauges["errors"].add_metric(key, state.error_count)
        yield from gauges.values()
        yield states
        yield until
        paused = GaugeMetricFamily(
            "aiclient_pool_file_paused",
            "1 while write-back waits for a broken pool file to be fixed.",
        )
        paused.add_metric([], 1.0 if self.m.paused() else 0.0)
        yield paused


def _bound(value: float) -> str:
    return "+Inf" if value == float("inf") else repr(value)


def instance_status(metrics: Metrics) -> dict[str, Any]:
    """Per provider type, every instance's state, counters and latency (no secrets)."""
    result: dict[str, Any] = {}
    for entry in metrics.pool.entries():
        node, state = entry.node, entry.state
        status = (
            "disabled" if node.disabled else ("healthy" if state.healthy else "unhealthy")
        )
        result.setdefault(node.provider_type, []).append(
            {
                "uuid": node.uuid,
                "customName": node.custom_name,
                "state": status,
                "status": state.status,
                "reason": state.reason,
                "since": state.since,
                "cooldownUntil": state.to_fields()["cooldownUntil"],
                "usageCount": state.usage_count,
                "errorCount": state.error_count,
                "inFlight": state.in_flight,
                "lastUsed": state.last_used,
                "lastErrorTime": state.last_error_time,
                "latencyMs": metrics.latency_ms(node.provider_type, node.uuid),
            }
        )
    return result
