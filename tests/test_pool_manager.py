"""Selection and bookkeeping of the pool: who gets the next request, what is recorded."""

from __future__ import annotations

from collections import Counter

from aiclient.errors import UpstreamConnectError
from aiclient.pool import ProviderNode, ProviderPool


def node(uid: str, ptype: str = "openai-custom", **settings: object) -> ProviderNode:
    return ProviderNode(
        uuid=uid,
        provider_type=ptype,
        settings={"OPENAI_API_KEY": "k", "uuid": uid, **settings},
        disabled=bool(settings.get("isDisabled", False)),
        not_supported_models=frozenset(settings.get("notSupportedModels", ())),  # type: ignore[call-overload]
    )


def pick(pool: ProviderPool, ptype: str = "openai-custom", **kw: object) -> str | None:
    lease = pool.acquire(ptype, **kw)  # type: ignore[arg-type]
    if lease is None:
        return None
    lease.release()
    return lease.node.uuid


def test_round_robin_over_healthy_enabled_instances() -> None:
    pool = ProviderPool()
    pool.load(
        [node("a"), node("b", isHealthy=False), node("c", isDisabled=True), node("d")]
    )
    picks = Counter(pick(pool) for _ in range(10))
    assert picks == {"a": 5, "d": 5}


def test_failures_reach_max_error_count_then_unhealthy() -> None:
    changes: list[int] = []
    pool = ProviderPool(
        max_error_count=3,
        clock=lambda: 1_700_000_000.0,
        on_change=lambda: changes.append(1),
    )
    pool.load([node("a"), node("b")])
    entry = pool.get("a")
    assert entry is not None
    for _ in range(3):
        lease = pool.acquire("openai-custom", exclude={"b"})
        assert lease is not None and lease.node.uuid == "a"
        lease.failure(UpstreamConnectError("HTTP 500"))
    assert entry.state.healthy is False
    assert entry.state.error_count == 3
    assert entry.state.last_error_time == "2023-11-14T22:13:20.000Z"
    assert [pick(pool) for _ in range(3)] == ["b", "b", "b"]
    assert len(changes) >= 3  # each failure asks for a write-back


def test_success_resets_error_count_and_sets_last_used() -> None:
    pool = ProviderPool(max_error_count=3, clock=lambda: 1_700_000_000.25)
    pool.load([node("a", errorCount=2, usageCount=7)])
    lease = pool.acquire("openai-custom")
    assert lease is not None
    lease.success()
    state = pool.get("a").state  # type: ignore[union-attr]
    assert (state.usage_count, state.error_count) == (8, 0)
    assert state.last_used == "2023-11-14T22:13:20.250Z"


def test_release_neither_blames_nor_credits() -> None:
    pool = ProviderPool()
    pool.load([node("a")])
    lease = pool.acquire("openai-custom")
    assert lease is not None
    assert pool.get("a").state.in_flight == 1  # type: ignore[union-attr]
    lease.release()
    lease.failure(UpstreamConnectError("late"))  # ignored: a lease ends once
    state = pool.get("a").state  # type: ignore[union-attr]
    assert (state.in_flight, state.usage_count, state.error_count) == (0, 0, 0)


def test_max_error_count_zero_never_marks_unhealthy() -> None:
    pool = ProviderPool(max_error_count=0)
    pool.load([node("a")])
    for _ in range(10):
        lease = pool.acquire("openai-custom")
        assert lease is not None
        lease.failure(UpstreamConnectError("x"))
    assert pool.get("a").state.healthy  # type: ignore[union-attr]


def test_not_supported_models_are_skipped() -> None:
    pool = ProviderPool()
    pool.load([node("a", notSupportedModels=["gpt-4o"]), node("b")])
    assert {pick(pool, model="gpt-4o") for _ in range(4)} == {"b"}


def test_reload_keeps_state_by_uuid_and_drops_client_on_credential_change() -> None:
    pool = ProviderPool()
    pool.load([node("a"), node("b")])
    a, b = pool.get("a"), pool.get("b")
    assert a is not None and b is not None
    a.state.usage_count = b.state.usage_count = 4
    a.client = b.client = object()
    pool.load([node("a"), node("b", OPENAI_API_KEY="rotated"), node("c")])
    a2, b2 = pool.get("a"), pool.get("b")
    assert a2 is not None and b2 is not None
    assert a2.state.usage_count == b2.state.usage_count == 4
    assert a2.client is a.client
    assert b2.client is None
    assert pool.get("c") is not None


def test_summary_counts_by_health() -> None:
    pool = ProviderPool()
    pool.load([node("a"), node("b", isHealthy=False), node("c", isDisabled=True)])
    assert pool.summary() == {
        "openai-custom": {
            "total": 3,
            "healthy": 1,
            "unhealthy": 1,
            "disabled": 1,
            "cooling": 0,
            "standby": 1,
            "recovering": 0,
        }
    }
