"""Pool values: ProviderNode (operator-owned config) and NodeState (server-owned record).

A ProviderNode is frozen and replaced when the operator edits the instance; NodeState
survives such replacements by uuid. Timestamps are kept in the pool file's own text form
(ISO-8601, UTC, milliseconds, `Z`) so that an untouched value is written back unchanged.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "SERVER_FIELDS",
    "STATUSES",
    "NodeState",
    "ProviderNode",
    "iso_now",
    "parse_iso",
]

# The fields the server keeps up to date in provider_pools.json, in the order it adds them.
# `isHealthy` keeps the original's meaning (false while the instance is out); `state`,
# `stateReason`, `stateSince` and `cooldownUntil` say why and until when.
SERVER_FIELDS: tuple[str, ...] = (
    "isHealthy",
    "usageCount",
    "errorCount",
    "lastUsed",
    "lastErrorTime",
    "state",
    "stateReason",
    "stateSince",
    "cooldownUntil",
)

STATUSES = ("active", "cooling", "standby", "recovering")

_iso_cache: tuple[int, str] = (-1, "")
_second_cache: tuple[int, str] = (-1, "")


def iso_now(now: float | None = None) -> str:
    """`now` (default: the wall clock) as `2025-10-08T05:46:52.123Z`: the date and time
    are formatted once per second, the milliseconds appended (every success writes one)."""
    global _iso_cache, _second_cache
    if now is None:
        now = time.time()
    millis = int(now * 1000)
    if millis == _iso_cache[0]:
        return _iso_cache[1]
    second, ms = divmod(millis, 1000)
    if second != _second_cache[0]:
        stamp = datetime.fromtimestamp(second, UTC)
        _second_cache = (second, stamp.strftime("%Y-%m-%dT%H:%M:%S."))
    text = f"{_second_cache[1]}{ms:03d}Z"
    _iso_cache = (millis, text)
    return text


def parse_iso(text: Any) -> float | None:
    """Seconds since the epoch of an ISO-8601 stamp (as `iso_now` writes), else None."""
    if not isinstance(text, str) or not text:
        return None
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderNode:
    """One instance of a pool as the operator configured it (credentials included)."""

    uuid: str
    provider_type: str
    settings: Mapping[str, Any]  # every field of the instance as written in the file
    custom_name: str | None = None
    disabled: bool = False
    check_model: str | None = None
    not_supported_models: frozenset[str] = frozenset()

    @property
    def check_health(self) -> bool:
        return self.settings.get("checkHealth") is True

    # Read from `settings` once (the selection path asks for them per request).
    concurrency_limit: int = field(init=False, repr=False, compare=False)
    queue_limit: int | None = field(init=False, repr=False, compare=False)
    weight: float | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        settings = self.settings
        limit = settings.get("concurrencyLimit")
        queue = settings.get("queueLimit")
        weight = settings.get("weight")
        derived = {
            "concurrency_limit": limit if _is_int(limit) else 0,
            "queue_limit": queue if _is_int(queue) else None,
            "weight": float(weight)
            if isinstance(weight, int | float)
            and not isinstance(weight, bool)
            and weight >= 0
            else None,
        }
        for name, value in derived.items():
            object.__setattr__(self, name, value)

    @property
    def label(self) -> str:
        """How logs and the admin surface name this instance (never a secret)."""
        return self.custom_name or self.uuid

    def config_key(self) -> tuple[tuple[str, Any], ...]:
        """Identity of the operator's config, ignoring server-written fields."""
        return tuple(
            (k, repr(v)) for k, v in self.settings.items() if k not in SERVER_FIELDS
        )


@dataclass(slots=True)
class NodeState:
    """What the server records about an instance; mirrors the pool file's fields.

    `status` is one of STATUSES; the transitions live in pool/health.py. The fields
    after `in_flight` are memory only.
    """

    status: str = "active"
    reason: str | None = None
    since: str | None = None
    cooldown_until: float | None = None  # seconds since the epoch
    usage_count: int = 0
    error_count: int = 0
    last_used: str | None = None
    last_error_time: str | None = None
    in_flight: int = 0
    strikes: int = 0  # rate limits in a row (exponential cooldown)
    probing: bool = False  # a health probe is running
    picked: int = 0  # selection sequence number of the last pick (lru)
    latency: float | None = None  # EWMA of successful attempts, seconds
    error_rate: float = 0.0  # EWMA of failures (1) and successes (0)
    last_error: str | None = None
    history: deque[tuple[str, str, str | None]] = field(
        default_factory=lambda: deque(maxlen=8)
    )  # (time, status, reason) of the last transitions

    @property
    def healthy(self) -> bool:
        """The pool file's `isHealthy`: true only while the instance takes traffic."""
        return self.status == "active"

    @healthy.setter
    def healthy(self, value: bool) -> None:
        if value and self.status != "active":
            self.status, self.reason, self.cooldown_until = "active", None, None
            self.strikes = 0
        elif not value and self.status == "active":
            self.status, self.reason = "standby", "manual"

    def to_fields(self) -> dict[str, Any]:
        until = self.cooldown_until
        return {
            "isHealthy": self.healthy,
            "usageCount": self.usage_count,
            "errorCount": self.error_count,
            "lastUsed": self.last_used,
            "lastErrorTime": self.last_error_time,
            "state": self.status,
            "stateReason": self.reason,
            "stateSince": self.since,
            "cooldownUntil": None if until is None else iso_now(until),
        }

    @classmethod
    def from_fields(cls, data: Mapping[str, Any]) -> NodeState:
        state = cls(
            usage_count=int(data.get("usageCount") or 0),
            error_count=int(data.get("errorCount") or 0),
            last_used=data.get("lastUsed"),
            last_error_time=data.get("lastErrorTime"),
        )
        for name in ("state", "stateReason", "stateSince", "cooldownUntil"):
            if name in data:
                state.set_field(name, data[name])
        if data.get("isHealthy") is False and state.status == "active":
            state.status, state.reason = "standby", "error_threshold"
        elif data.get("isHealthy", True) is not False:
            state.healthy = True
        return state

    def set_field(self, name: str, value: Any) -> None:
        if name == "isHealthy":
            self.healthy = bool(value)
        elif name == "usageCount":
            self.usage_count = int(value)
        elif name == "errorCount":
            self.error_count = int(value)
        elif name == "lastUsed":
            self.last_used = value
        elif name == "lastErrorTime":
            self.last_error_time = value
        elif name == "state":
            if value in STATUSES:
                self.status = value
        elif name == "stateReason":
            self.reason = value if isinstance(value, str) else None
        elif name == "stateSince":
            self.since = value if isinstance(value, str) else None
        elif name == "cooldownUntil":
            self.cooldown_until = parse_iso(value)
