"""The admin API under /admin/api/v1: see and steer the pool. JSON in, JSON out.

Guarded by its own key, ADMIN_API_KEY, sent as `Authorization: Bearer <key>` and
checked in server.py's middleware (constant time); the client key never opens it, and
without ADMIN_API_KEY the whole API answers 404. Nothing here shows a credential.

Where changes live: enable / disable / reset / check change server-owned state, which
the pool file's write-back persists (`state`, `stateReason`, `isHealthy`, ...); the
operator's own fields (`isDisabled`, keys) are never rewritten. Strategy and weights
are operator config: PUT pools/{type} applies them at once and saves them in
config.json under `poolStrategies` (atomic write, the file's formatting and unknown
keys kept); per-instance default weights may also be written as `weight` in the pool
file by hand.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import orjson

from .config import PROVIDER_TYPES, PoolStrategy, parse_strategy
from .errors import AiclientError, ConfigError, InvalidRequest, RouteNotFound
from .http_server import App, Request, Response
from .pool import Entry
from .pool.store import JsonStyle, atomic_write
from .runtime import RUNTIME, Runtime

__all__ = ["PREFIX", "add_routes"]

PREFIX = "/admin/api/v1"

_config_lock = asyncio.Lock()


class Conflict(AiclientError):
    status = 409
    kind = "invalid_request_error"


def _json(data: Any, status: int = 200) -> Response:
    return Response(status=status, body=orjson.dumps(data), content_type="application/json")


def _entry(runtime: Runtime, request: Request) -> Entry:
    uid = request.match_info["uuid"]
    entry = runtime.pool.get(uid)
    if entry is None:
        raise RouteNotFound(f"No instance with uuid {uid!r}")
    return entry


def instance_view(runtime: Runtime, entry: Entry) -> dict[str, Any]:
    node, state = entry.node, entry.state
    fields = state.to_fields()
    return {
        "type": node.provider_type,
        "uuid": node.uuid,
        "customName": node.custom_name,
        "state": state.status,
        "reason": state.reason,
        "since": state.since,
        "cooldownUntil": fields["cooldownUntil"],
        "isHealthy": state.healthy,
        "isDisabled": node.disabled,
        "usageCount": state.usage_count,
        "errorCount": state.error_count,
        "inFlight": state.in_flight,
        "latencyMs": None if state.latency is None else round(state.latency * 1000, 1),
        "errorRate": round(state.error_rate, 3),
        "lastUsed": state.last_used,
        "lastErrorTime": state.last_error_time,
        "lastError": state.last_error,
        "probing": state.probing,
        "history": [{"time": t, "state": s, "reason": r} for t, s, r in state.history],
    }


def pool_view(runtime: Runtime, ptype: str) -> dict[str, Any]:
    pool = runtime.pool
    selector = pool.selector(ptype)
    entries = list(pool.entries(ptype))
    counts = pool.summary().get(ptype, {})
    return {
        "strategy": selector.strategy,
        "weights": {
            e.node.uuid: selector.weight_of(e.node.uuid, e.node.weight) for e in entries
        },
        "active": counts.get("healthy", 0),
        "standby": counts.get("total", 0) - counts.get("healthy", 0),
        "counts": counts,
        "inFlight": sum(e.state.in_flight for e in entries),
        "totalRequests": pool.picks.get(ptype, 0),
        "rotationEvents": pool.events.get(ptype, 0),
    }


async def providers_status(request: Request) -> Response:
    runtime = request.app[RUNTIME]
    return _json({"providers": [instance_view(runtime, e) for e in runtime.pool.entries()]})


async def pools(request: Request) -> Response:
    runtime = request.app[RUNTIME]
    return _json({"pools": {t: pool_view(runtime, t) for t in runtime.pool.types()}})


def _save_strategy(path: Path, ptype: str, spec: dict[str, Any]) -> None:
    """Set poolStrategies[ptype] in config.json, keeping everything else (blocking)."""
    text = path.read_text(encoding="utf-8")
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a JSON object")
    strategies = data.get("poolStrategies")
    if not isinstance(strategies, dict):
        strategies = data["poolStrategies"] = {}
    strategies[ptype] = spec
    atomic_write(path, JsonStyle.detect(text).render(data))


async def put_pool(request: Request) -> Response:
    runtime = request.app[RUNTIME]
    ptype = request.match_info["ptype"]
    if ptype not in PROVIDER_TYPES:
        raise RouteNotFound(f"Unknown provider type {ptype!r}")
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"Invalid JSON in request body: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidRequest("Request body must be a JSON object")
    current = runtime.pool.selector(ptype)
    body.setdefault("strategy", current.strategy)
    if "weights" not in body and current.weights is not None:
        body["weights"] = dict(current.weights)
    try:
        spec: PoolStrategy = parse_strategy(ptype, body)
    except ConfigError as exc:
        raise InvalidRequest(exc.message) from None
    runtime.pool.set_strategy(ptype, spec)
    saved: str | None = None
    config_file = runtime.settings.config_file
    if config_file is not None:
        record: dict[str, Any] = {"strategy": spec.strategy}
        if spec.weights is not None:
            record["weights"] = dict(spec.weights)
        async with _config_lock:
            await asyncio.to_thread(_save_strategy, Path(config_file), ptype, record)
        saved = config_file
    return _json({"pool": pool_view(runtime, ptype), "savedTo": saved})


async def instance_action(request: Request) -> Response:
    runtime = request.app[RUNTIME]
    entry = _entry(runtime, request)
    action = request.match_info["action"]
    pool = runtime.pool
    result: dict[str, Any] = {}
    if action == "enable":
        if entry.node.disabled:
            raise Conflict(
                "isDisabled is set for this instance in the pool file; clear it there"
            )
        pool.activate(entry)
        pool.on_change()
    elif action == "disable":
        pool.disable(entry)
    elif action == "reset":
        pool.reset(entry)
    elif action == "check":
        if runtime.checker is None:
            raise Conflict("health checks are not running")
        result["passed"] = await runtime.checker.check(entry)
    else:
        raise RouteNotFound(f"Unknown action {action!r}")
    return _json({**result, "provider": instance_view(runtime, entry)})


def add_routes(app: App) -> None:
    router = app.router
    router.add_get(PREFIX + "/providers/status", providers_status)
    router.add_get(PREFIX + "/pools", pools)
    router.add_put(PREFIX + "/pools/{ptype}", put_pool)
    router.add_post(PREFIX + "/providers/{uuid}/{action}", instance_action)
