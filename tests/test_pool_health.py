"""The instance state machine: cooldowns, standby reasons, trials; time is injected."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiclient.errors import (
    UpstreamConnectError,
    UpstreamError,
    UpstreamHTTPError,
    UpstreamTimeout,
)
from aiclient.policy import ErrorPolicy, parse_error_policy
from aiclient.pool import NodeState, ProviderNode, ProviderPool
from aiclient.pool.models import iso_now
from aiclient.pool.store import merge_field, reconcile

T0 = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def node(uid: str, **settings: object) -> ProviderNode:
    return ProviderNode(
        uuid=uid,
        provider_type="openai-custom",
        settings={"OPENAI_API_KEY": "k", "uuid": uid, **settings},
        disabled=settings.get("isDisabled") is True,
    )


def make_pool(clock: Clock, *uids: str, **kw: object) -> ProviderPool:
    pool = ProviderPool(clock=clock, timer=clock, **kw)  # type: ignore[arg-type]
    pool.load([node(u) for u in uids or ("a",)])
    return pool


def http(status: int, body: object = b"", **headers: str) -> UpstreamHTTPError:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    retry = headers.get("retry-after")
    return UpstreamHTTPError(
        status, raw, headers, retry_after=float(retry) if retry else None
    )


def fail(pool: ProviderPool, error: UpstreamError, uid: str = "a") -> None:
    lease = pool.acquire("openai-custom")
    assert lease is not None and lease.node.uuid == uid
    lease.failure(error)


def state(pool: ProviderPool, uid: str = "a") -> NodeState:
    entry = pool.get(uid)
    assert entry is not None
    return entry.state


def test_cooldown_ends_when_retry_after_passes_and_one_trial_decides() -> None:
    clock = Clock()
    pool = make_pool(clock)
    fail(pool, http(429, **{"retry-after": "7"}))
    s = state(pool)
    assert (s.status, s.reason, s.cooldown_until) == ("cooling", "rate_limited", T0 + 7)
    assert s.error_count == 0  # a rate limit is not an error
    assert s.healthy is False
    clock.now = T0 + 6.9
    assert pool.acquire("openai-custom") is None
    assert pool.soonest_return("openai-custom") == pytest.approx(0.1)
    clock.now = T0 + 7
    trial = pool.acquire("openai-custom")
    assert trial is not None and s.status == "recovering"
    assert pool.acquire("openai-custom") is None  # half-open: one trial at a time
    trial.success()
    assert (s.status, s.reason, s.cooldown_until, s.healthy) == (
        "active",
        None,
        None,
        True,
    )
    assert [h[1:] for h in s.history] == [
        ("cooling", "rate_limited"),
        ("recovering", "rate_limited"),
        ("active", None),
    ]


def test_rate_limit_without_a_reset_backs_off_exponentially_and_is_clamped() -> None:
    clock = Clock()
    pool = make_pool(clock, rate_limit_cooldown=10, rate_limit_cooldown_max=35)
    waits = []
    for _ in range(4):
        fail(pool, http(429))
        until = state(pool).cooldown_until
        assert until is not None
        waits.append(until - clock.now)
        clock.now = until  # the trial fails again
    assert waits == [10, 20, 35, 35]


def test_a_repeated_cooldown_keeps_the_later_deadline() -> None:
    clock = Clock()
    pool = make_pool(clock, "a", "b")
    entry = pool.get("a")
    assert entry is not None
    pool.failed(entry, "rate_limited", 60, clock.now)
    pool.failed(entry, "rate_limited", 5, clock.now)
    assert entry.state.cooldown_until == T0 + 60


@pytest.mark.parametrize(
    ("error", "reset"),
    [
        (http(402, {"error": {"message": "quota", "resets_at": int(T0) + 3600}}), 3600),
        (http(429, {"error": {"code": "insufficient_quota"}}, **{"retry-after": "90"}), 90),
        (http(429, b"You exceeded your current quota, try again in 2 minutes"), 120),
        (
            http(
                429,
                {
                    "error": {
                        "message": "quota exceeded",
                        "details": [{"retryDelay": "45s"}],
                    }
                },
            ),
            45,
        ),
    ],
)
def test_quota_is_out_until_its_reset_then_returns(
    error: UpstreamHTTPError, reset: float
) -> None:
    clock = Clock()
    pool = make_pool(clock)
    fail(pool, error)
    s = state(pool)
    assert (s.status, s.reason) == ("cooling", "quota_exhausted")
    assert s.cooldown_until == pytest.approx(T0 + reset)
    clock.now = T0 + reset - 1
    assert pool.acquire("openai-custom") is None
    clock.now = T0 + reset
    lease = pool.acquire("openai-custom")
    assert lease is not None
    lease.success()
    assert s.status == "active"


def test_quota_without_a_reset_waits_in_standby_for_a_probe() -> None:
    clock = Clock()
    pool = make_pool(clock)
    fail(pool, http(402, {"error": {"message": "payment required"}}))
    s = state(pool)
    assert (s.status, s.reason, s.cooldown_until) == ("standby", "quota_exhausted", None)
    clock.now += 10**6
    assert pool.acquire("openai-custom") is None


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failures_go_to_standby_at_once(status: int) -> None:
    pool = make_pool(Clock(), "a", "b")
    fail(pool, http(status))
    s = state(pool)
    assert (s.status, s.reason, s.error_count) == ("standby", "auth_failed", 0)
    assert {pool.acquire("openai-custom").node.uuid for _ in range(3)} == {"b"}  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "error",
    [http(500), http(503), UpstreamTimeout("t"), UpstreamConnectError("n")],
    ids=["500", "503", "timeout", "network"],
)
def test_server_errors_count_to_max_error_count(error: UpstreamError) -> None:
    clock = Clock()
    pool = make_pool(clock, max_error_count=3)
    for count in (1, 2):
        fail(pool, error)
        assert (state(pool).status, state(pool).error_count) == ("active", count)
    fail(pool, error)
    s = state(pool)
    assert (s.status, s.reason, s.healthy) == ("standby", "error_threshold", False)
    assert s.since == iso_now(T0)


def test_error_policy_overrides_per_provider_type() -> None:
    policy = parse_error_policy(
        "ERROR_POLICY",
        {
            "*": {"403": "count"},
            "openai-custom": {"timeout": "ignore", "500": "auth_failed"},
        },
    )
    assert policy.action("openai-custom", http(403)) == "count"
    assert policy.action("openai-custom", UpstreamTimeout("t")) == "ignore"
    assert policy.action("openai-custom", http(500)) == "auth_failed"
    assert policy.action("claude-custom", http(500)) == "count"
    assert policy.action("claude-custom", http(401)) == "auth_failed"
    pool = make_pool(Clock(), policy=policy)
    fail(pool, UpstreamTimeout("t"))
    assert (state(pool).status, state(pool).error_count) == ("active", 0)


@pytest.mark.parametrize(
    "bad",
    [{"*": {"429": "explode"}}, {"*": {"teapot": "count"}}, {"*": "count"}, []],
)
def test_error_policy_is_validated(bad: object) -> None:
    from aiclient.errors import ConfigError

    with pytest.raises(ConfigError, match="ERROR_POLICY"):
        parse_error_policy("ERROR_POLICY", bad)
    assert ErrorPolicy().action("x", http(429)) == "rate_limited"


def test_state_round_trips_through_the_pool_file_fields() -> None:
    clock = Clock()
    pool = make_pool(clock)
    fail(pool, http(429, **{"retry-after": "30"}))
    fields = pool.snapshot_fields()["a"]
    assert fields["isHealthy"] is False
    assert fields["state"] == "cooling"
    assert fields["stateReason"] == "rate_limited"
    assert fields["stateSince"] == iso_now(T0)
    assert fields["cooldownUntil"] == iso_now(T0 + 30)
    again = NodeState.from_fields(fields)  # a restart keeps the cooldown
    assert (again.status, again.reason, again.cooldown_until) == (
        "cooling",
        "rate_limited",
        T0 + 30,
    )
    legacy = NodeState.from_fields({"isHealthy": False})  # the original's file
    assert (legacy.status, legacy.reason) == ("standby", "error_threshold")


def test_user_setting_is_healthy_true_brings_an_instance_back() -> None:
    base = {"isHealthy": False, "state": "cooling", "stateReason": "rate_limited"}
    disk = {**base, "isHealthy": True}
    merged = {
        name: merge_field(name, base.get(name), disk.get(name), base.get(name))
        for name in ("isHealthy", "state", "stateReason")
    }
    merged["cooldownUntil"] = "2030-01-01T00:00:00.000Z"
    reconcile(base, disk, merged)
    assert merged["isHealthy"] is True
    assert (merged["state"], merged["stateReason"], merged["cooldownUntil"]) == (
        "active",
        None,
        None,
    )
    # Writing state "active" by hand works too; isHealthy follows.
    disk2 = {**base, "state": "active"}
    merged2 = {**base, "state": "active"}
    reconcile(base, disk2, merged2)
    assert merged2["isHealthy"] is True
    assert merge_field(
        "cooldownUntil", None, "2030-01-01T00:00:00.000Z", "2031-01-01T00:00:00.000Z"
    ) == ("2031-01-01T00:00:00.000Z")


def test_is_disabled_is_standby_disabled_until_cleared() -> None:
    clock = Clock()
    pool = ProviderPool(clock=clock)
    pool.load([node("a", isDisabled=True)])
    assert (state(pool).status, state(pool).reason) == ("standby", "disabled")
    pool.load([node("a")])
    assert state(pool).status == "active"


@given(st.lists(st.floats(min_value=0, max_value=4e9), min_size=1, max_size=20))
def test_iso_now_matches_a_fresh_format_whatever_it_cached(times: list[float]) -> None:
    """lastUsed/lastErrorTime are formatted from a per-second cache: any sequence of
    times (same ms, same second, going back) must read as if formatted afresh."""
    for t in times + times[::-1]:
        millis = int(t * 1000)
        fresh = datetime.fromtimestamp(millis / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        assert iso_now(t) == f"{fresh}{millis % 1000:03d}Z"
