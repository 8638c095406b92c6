"""What an upstream failure means for the instance: the error policy (pure).

`failure_class` (errors.py) names the failure; the policy maps it to an action, per
provider type, from config.json's `ERROR_POLICY`:

    "ERROR_POLICY": {
      "*":             {"429": "rate_limited", "403": "count"},
      "openai-custom": {"quota": "quota_exhausted", "timeout": "ignore"}
    }

Keys are an HTTP status ("429") or a failure class (rate_limited, auth, quota,
server, timeout, network, protocol, http); a status beats a class, a type's entry
beats "*", which beats the defaults below. Actions:

* `rate_limited`: cooldown until Retry-After / the reset the upstream names, else an
  exponential backoff (RATE_LIMIT_COOLDOWN_MS doubling up to ..._MAX_MS). Not counted.
* `quota_exhausted`: out until the reset the upstream names (clamped to a day), else
  standby until a probe passes.
* `auth_failed`: standby at once.
* `count`: errorCount +1; standby(error_threshold) at MAX_ERROR_COUNT.
* `ignore`: nothing is recorded against the instance.

A 429 whose body speaks of quota or billing (OpenAI's `insufficient_quota`, "exceeded
your current quota") is a quota failure, not a rate limit. 400/404/413/422 never get
here: the relay relays them as the client's fault.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError, UpstreamError, UpstreamHTTPError, failure_class

__all__ = ["ACTIONS", "ErrorPolicy", "Verdict", "parse_error_policy", "reset_after"]

ACTIONS = ("rate_limited", "quota_exhausted", "auth_failed", "count", "ignore")
_CLASSES = ("rate_limited", "auth", "quota", "server", "timeout", "network", "protocol")
_DEFAULTS: dict[str, str] = {
    "rate_limited": "rate_limited",
    "auth": "auth_failed",
    "quota": "quota_exhausted",
    "server": "count",
    "timeout": "count",
    "network": "count",
    "protocol": "count",
    "http": "count",
}
_QUOTA_TEXT = re.compile(
    rb"insufficient_quota|exceeded your current quota|quota[ _]exceeded|"
    rb"usage[ _]limit|billing|credit balance",
    re.IGNORECASE,
)
_RETRY_DELAY = re.compile(rb'"retryDelay"\s*:\s*"(\d+(?:\.\d+)?)s"')
_RESETS_AT = re.compile(rb'"resets?_at"\s*:\s*"?(\d{9,13})')
_RESET_TEXT = re.compile(
    rb"(?:try again|retry|resets?|available again)\s+(?:in|after)\s+"
    rb"(\d+(?:\.\d+)?)\s*(ms|milliseconds?|s|sec(?:ond)?s?|m|min(?:ute)?s?|h|hours?)\b",
    re.IGNORECASE,
)
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True, slots=True)
class Verdict:
    action: str
    reset_in: float | None  # seconds until the upstream says it resets, if it said


def reset_after(error: UpstreamHTTPError, now: float | None = None) -> float | None:
    """Seconds until the upstream's limit resets, from Retry-After or its body."""
    if error.retry_after is not None:
        return error.retry_after
    body = error.body[:65536]
    match = _RETRY_DELAY.search(body)
    if match:
        return float(match.group(1))
    match = _RESETS_AT.search(body)
    if match:
        stamp = float(match.group(1))
        if stamp > 1e12:  # milliseconds
            stamp /= 1000
        return max(0.0, stamp - (time.time() if now is None else now))
    match = _RESET_TEXT.search(body)
    if match:
        unit = match.group(2).decode().lower()
        scale = _UNIT["ms"] if unit.startswith(("ms", "milli")) else 0.0
        if not scale:
            scale = _UNIT.get(unit[0], 1.0)
        return float(match.group(1)) * scale
    return None


@dataclass(frozen=True, slots=True)
class ErrorPolicy:
    """Per provider type overrides of the default classification."""

    rules: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def action(self, provider_type: str, error: UpstreamError) -> str:
        kind = failure_class(error)
        if (
            kind == "rate_limited"
            and isinstance(error, UpstreamHTTPError)
            and _QUOTA_TEXT.search(error.body[:65536])
        ):
            kind = "quota"
        status = (
            str(error.upstream_status) if isinstance(error, UpstreamHTTPError) else None
        )
        for scope in (provider_type, "*"):
            rules = self.rules.get(scope)
            if not rules:
                continue
            if status is not None and status in rules:
                return rules[status]
            if kind in rules:
                return rules[kind]
        return _DEFAULTS.get(kind, "count")

    def judge(
        self, provider_type: str, error: UpstreamError, now: float | None = None
    ) -> Verdict:
        action = self.action(provider_type, error)
        reset = None
        if isinstance(error, UpstreamHTTPError) and action in (
            "rate_limited",
            "quota_exhausted",
        ):
            reset = reset_after(error, now)
        return Verdict(action, reset)


def parse_error_policy(key: str, value: Any) -> ErrorPolicy:
    """config.json's ERROR_POLICY; raises ConfigError naming the bad entry."""
    if value is None:
        return ErrorPolicy()
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: expected an object keyed by provider type or '*'")
    rules: dict[str, dict[str, str]] = {}
    for scope, table in value.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{key}.{scope}: expected an object")
        parsed: dict[str, str] = {}
        for match, action in table.items():
            if not (match.isdigit() or match in _CLASSES or match == "http"):
                raise ConfigError(
                    f"{key}.{scope}.{match}: expected an HTTP status or one of "
                    f"{', '.join((*_CLASSES, 'http'))}"
                )
            if action not in ACTIONS:
                raise ConfigError(
                    f"{key}.{scope}.{match}: expected one of {', '.join(ACTIONS)}, "
                    f"got {action!r}"
                )
            parsed[match] = action
        rules[scope] = parsed
    return ErrorPolicy(rules)
