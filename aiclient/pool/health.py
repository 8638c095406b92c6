"""The one state machine of an instance: active, cooling, standby, recovering.

    active ──429──────────────▶ cooling(rate_limited, until)  ─┐
      │ ──402 / quota─────────▶ cooling(quota_exhausted, until)│ until passes:
      │ ──401/403─────────────▶ standby(auth_failed)           ├▶ recovering
      │ ──MAX_ERROR_COUNT─────▶ standby(error_threshold)       │  (half-open: one
      │ ──probe failed────────▶ standby(health_check_failed)   │   trial request or
      │ ──admin / isDisabled──▶ standby(manual | disabled)    ─┘   probe decides)
      ◀──────── trial or probe passed, admin enable/reset ──────────┘

Pure functions over NodeState with the time passed in (`now`, seconds since the
epoch), so every timing rule is tested without sleeping. Rules taken from the
gateways' users' complaints: a repeated cooldown keeps the later deadline (LiteLLM
#40130); a cooldown is clamped and ends in a trial, never in a days-long wait
(CLIProxyAPI #4724); standby instances are probed, not forgotten (sub2api #1981).
The pool (manager.py) decides *when* to call these; nothing here does I/O.
"""

from __future__ import annotations

import logging

from .models import NodeState, ProviderNode, iso_now

__all__ = [
    "ACTIVE",
    "COOLING",
    "PROBED_REASONS",
    "REASONS",
    "RECOVERING",
    "STANDBY",
    "due_for_trial",
    "selectable",
    "sync_disabled",
    "transition",
]

logger = logging.getLogger(__name__)

ACTIVE, COOLING, STANDBY, RECOVERING = "active", "cooling", "standby", "recovering"

REASONS = (
    "error_threshold",
    "rate_limited",
    "quota_exhausted",
    "auth_failed",
    "health_check_failed",
    "disabled",
    "manual",
)
# Standby reasons the periodic health check probes; `manual` and `disabled` wait for
# the operator.
PROBED_REASONS = frozenset(
    {
        "error_threshold",
        "auth_failed",
        "health_check_failed",
        "quota_exhausted",
        "rate_limited",
    }
)


def transition(
    state: NodeState,
    node: ProviderNode,
    status: str,
    reason: str | None,
    now: float,
    until: float | None = None,
) -> bool:
    """Move to `status`; record when and why. Returns whether anything changed."""
    if (state.status, state.reason, state.cooldown_until) == (status, reason, until):
        return False
    moved = state.status != status or state.reason != reason
    state.status, state.reason, state.cooldown_until = status, reason, until
    if moved:
        state.since = iso_now(now)
        state.history.append((state.since, status, reason))
        level = logging.INFO if status in (ACTIVE, RECOVERING) else logging.WARNING
        logger.log(
            level,
            "%s instance %s is %s%s%s",
            node.provider_type,
            node.label,
            status,
            f" ({reason})" if reason else "",
            f" until {iso_now(until)}" if until is not None else "",
        )
    return True


def sync_disabled(state: NodeState, node: ProviderNode, now: float) -> None:
    """`isDisabled` in the pool file is the operator's word: standby(disabled) while
    set, and back to active the moment it is cleared."""
    if node.disabled:
        transition(state, node, STANDBY, "disabled", now)
    elif state.status == STANDBY and state.reason == "disabled":
        state.error_count = 0
        transition(state, node, ACTIVE, None, now)


def due_for_trial(state: NodeState, now: float) -> bool:
    """Out with a deadline that has passed: the next request or probe is a trial."""
    return (
        state.status in (COOLING, STANDBY)
        and state.cooldown_until is not None
        and state.cooldown_until <= now
    )


def selectable(state: NodeState, node: ProviderNode, now: float) -> bool:
    """May a client request be sent to this instance now?

    Active: yes. Recovering, or out with a passed deadline: only as the single
    trial (nothing else in flight, no probe running).
    """
    if node.disabled:
        return False
    if state.status == ACTIVE:
        return True
    if state.status == RECOVERING or due_for_trial(state, now):
        return state.in_flight == 0 and not state.probing
    return False
