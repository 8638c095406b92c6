"""Pool values: ProviderNode (operator-owned config) and NodeState (server-owned record).

A ProviderNode is frozen and replaced when the operator edits the instance; NodeState
survives such replacements by uuid. Timestamps are kept in the pool file's own text form
(ISO-8601, UTC, milliseconds, `Z`) so that an untouched value is written back unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "SERVER_FIELDS",
    "NodeState",
    "ProviderNode",
    "iso_now",
]

# The fields the server keeps up to date in provider_pools.json, in the order it adds them.
SERVER_FIELDS: tuple[str, ...] = (
    "isHealthy",
    "usageCount",
    "errorCount",
    "lastUsed",
    "lastErrorTime",
)

_iso_cache: tuple[int, str] = (-1, "")


def iso_now(now: float | None = None) -> str:
    """`now` (default: the wall clock) as `2025-10-08T05:46:52.123Z`, cached per ms."""
    global _iso_cache
    if now is None:
        now = time.time()
    millis = int(now * 1000)
    if millis == _iso_cache[0]:
        return _iso_cache[1]
    stamp = datetime.fromtimestamp(millis / 1000, UTC)
    text = stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis % 1000:03d}Z"
    _iso_cache = (millis, text)
    return text


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
    """What the server records about an instance; mirrors the pool file's fields."""

    healthy: bool = True
    usage_count: int = 0
    error_count: int = 0
    last_used: str | None = None
    last_error_time: str | None = None
    in_flight: int = 0

    def to_fields(self) -> dict[str, Any]:
        return {
            "isHealthy": self.healthy,
            "usageCount": self.usage_count,
            "errorCount": self.error_count,
            "lastUsed": self.last_used,
            "lastErrorTime": self.last_error_time,
        }

    @classmethod
    def from_fields(cls, data: Mapping[str, Any]) -> NodeState:
        return cls(
            healthy=bool(data.get("isHealthy", True)),
            usage_count=int(data.get("usageCount") or 0),
            error_count=int(data.get("errorCount") or 0),
            last_used=data.get("lastUsed"),
            last_error_time=data.get("lastErrorTime"),
        )

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
