"""The application: middleware (CORS, auth, errors, access log) and lifecycle.

`build_app` only assembles: settings, pool, relay and endpoints reach handlers through
typed AppKeys. The lifecycle context owns the one upstream ClientSession, the demo
upstream when there is one, and the pool write-back task (flushed on shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import math
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

import aiohttp

from . import admin, endpoints, observe
from .bootstrap import PoolSetup
from .config import Settings
from .demo import DemoUpstream, demo_nodes
from .endpoints import models_protocol
from .errors import (
    AiclientError,
    ClientError,
    MethodNotAllowed,
    PayloadTooLarge,
    PoolCoolingDown,
    RouteNotFound,
    Unauthorized,
)
from .http_client import HttpClient
from .http_server import App, Handler, HTTPError, Request, Response, StreamResponse
from .log import redact_bytes, register_secrets
from .metrics import Metrics
from .metrics_share import MetricsShare
from .pool import Entry, ProviderPool
from .pool.models import ProviderNode
from .pool.writer import PoolWriter, watch_folder
from .probes import HealthChecker
from .prompts import Prompts
from .protocols import ApiProtocol
from .protocols.errors import render_error
from .refresher import refresher_context
from .relay import Relay
from .runtime import CALL, CORS_HEADERS, RUNTIME, Runtime
from .tasks import spawn

__all__ = ["build_app"]

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("aiclient.access")

_UNAUTHORIZED = "Unauthorized: API key is invalid or missing."


def _client_protocol(request: Request) -> ApiProtocol | None:
    path = request.path
    if path.endswith(("/v1/messages", "/v1/messages/count_tokens")):
        return ApiProtocol.CLAUDE
    if "/v1beta/" in path or (":" in path and "/v1/models/" in path):
        return ApiProtocol.GEMINI
    return models_protocol(request.headers)


def _authorized(request: Request, key: bytes) -> bool:
    """Any of the four ways a client may present the key; compared in constant time."""
    headers = request.headers
    candidates: list[str] = []
    auth = headers.get("Authorization")
    if auth and auth[:7].lower() == "bearer ":
        candidates.append(auth[7:].strip())
    for name in ("x-api-key", "x-goog-api-key"):
        value = headers.get(name)
        if value:
            candidates.append(value)
    query_key = request.query.get("key") if request.query_string else None
    if query_key:
        candidates.append(query_key)
    ok = False
    for candidate in candidates:
        ok |= hmac.compare_digest(candidate.encode(), key)
    return ok


def _error_response(request: Request, err: AiclientError) -> Response:
    reply = render_error(
        _client_protocol(request),
        err,
        # the upstream last tried (a fallback may change it): only an upstream's own
        # error, which comes after the call exists, has a body to pass through
        upstream_protocol=call.upstream_protocol if (call := request.get(CALL)) else None,
    )
    headers = {**reply.headers, "Content-Type": reply.content_type}
    if isinstance(err, ClientError):
        headers["x-should-retry"] = "false"
    if isinstance(err, PoolCoolingDown):
        headers["retry-after"] = str(max(1, math.ceil(err.retry_after)))
    # An upstream may echo a credential in its error; the client never sees it.
    return Response(status=reply.status, body=redact_bytes(reply.body), headers=headers)


def _admin_gate(request: Request, admin_key: bytes | None) -> None:
    """The admin API: 404 without ADMIN_API_KEY; else its own bearer key, only."""
    if admin_key is None:
        raise RouteNotFound("Not Found")
    auth = request.headers.get("Authorization", "")
    given = auth[7:].strip().encode() if auth[:7].lower() == "bearer " else b""
    if not hmac.compare_digest(given, admin_key):
        raise Unauthorized("Unauthorized: the admin API needs ADMIN_API_KEY.")


def _make_middleware(runtime: Runtime) -> Callable[..., Awaitable[StreamResponse]]:
    key = runtime.settings.required_api_key.encode()
    admin = runtime.settings.admin_api_key
    admin_key = admin.encode() if admin else None
    public_paths = {"/health", "/status"}
    if runtime.settings.metrics_public:
        public_paths.add("/metrics")

    def public(request: Request) -> bool:
        path = request.path
        return path in public_paths or (path.endswith("/health") and path.count("/") == 2)

    async def middleware(request: Request, handler: Handler) -> StreamResponse:
        started = time.perf_counter()
        if request.method == "OPTIONS":
            return Response(status=204)  # the CORS headers go with every response
        response: StreamResponse
        try:
            if request.path.startswith("/admin/"):
                _admin_gate(request, admin_key)
            elif key and not public(request) and not _authorized(request, key):
                raise Unauthorized(_UNAUTHORIZED)
            response = await handler(request)
        except AiclientError as err:
            response = _error_response(request, err)
        except HTTPError as exc:
            response = _error_response(request, _from_http_exception(exc))
            response.headers.update(exc.headers)  # 405's Allow
        except ConnectionResetError:
            raise  # the client is gone: nothing to answer, nothing went wrong here
        except Exception:
            logger.exception("unexpected error serving %s %s", request.method, request.path)
            response = _error_response(request, AiclientError("Internal server error"))
        elapsed = time.perf_counter() - started
        call = request.get(CALL)
        node = call.served_by if call else None
        runtime.metrics.observe(
            request.route,
            call.provider_type if call else "",
            node.uuid if node else "",
            response.status,
            elapsed,
        )
        if access_logger.isEnabledFor(logging.INFO):
            access_logger.info(
                "%s %s %s %s %d %.1fms",
                request.method,
                request.path,
                call.provider_type if call else "-",
                node.label if node else "-",
                response.status,
                elapsed * 1000,
            )
        return response

    return middleware


def _from_http_exception(exc: HTTPError) -> AiclientError:
    if exc.status == 413:
        return PayloadTooLarge(
            "Request body too large: the limit is MAX_REQUEST_BODY_BYTES"
        )
    if exc.status == 405:
        allowed = exc.headers.get("Allow", "")
        return MethodNotAllowed(f"Method Not Allowed: this path takes {allowed}")
    return RouteNotFound("Not Found")


def _lifecycle(runtime: Runtime) -> Callable[[App], AsyncIterator[None]]:
    async def context(app: App) -> AsyncIterator[None]:
        settings = runtime.settings
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=30)
        timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=settings.connect_timeout_ms / 1000,
            sock_read=settings.read_timeout_ms / 1000,
        )
        session = aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            skip_auto_headers=("User-Agent",),
            # One session serves every instance and account: an upstream's cookies
            # must never travel with another instance's requests.
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        # The request path's own lean keep-alive client (see http_client.py); the
        # ClientSession above only serves OAuth token exchanges.
        http = HttpClient(
            connect_timeout=settings.connect_timeout_ms / 1000,
            read_timeout=settings.read_timeout_ms / 1000,
            # the system's CA bundle is read from disk: in a thread, not on the loop
            ssl_context=await asyncio.to_thread(ssl.create_default_context),
        )
        demo: DemoUpstream | None = None
        tasks: list[asyncio.Task[None]] = []
        stop_watching = asyncio.Event()
        try:
            if runtime.setup.mode == "demo":
                demo = DemoUpstream()
                runtime.demo_url = await demo.start()
                runtime.pool.load(demo_nodes(runtime.demo_url))
                logger.warning(
                    "DEMO MODE: no provider_pools.json and no credentials found; serving "
                    "a built-in demo upstream at %s (models demo-gpt, demo-claude). "
                    "Create provider_pools.json to use real providers.",
                    runtime.demo_url,
                )
            if runtime.share is not None:
                await runtime.share.restore(runtime.metrics)
                tasks.append(
                    spawn(runtime.share.run(runtime.metrics, stop_watching), name="metrics")
                )
            runtime.relay = Relay(settings, runtime.pool, session, http)
            checker = runtime.checker = HealthChecker(settings, runtime.pool, runtime.relay)
            tasks.append(spawn(checker.run(stop_watching), name="health-checks"))
            if settings.warmup_connections:
                tasks.append(spawn(_warm_up(runtime.relay), name="warm-up"))
            pool_file = runtime.setup.pool_file
            if pool_file is not None:
                writer = PoolWriter(
                    runtime.pool,
                    pool_file,
                    settings.pool_write_debounce_ms / 1000,
                    on_reload=_register_node_secrets,
                )
                runtime.writer = writer
                tasks.append(spawn(writer.run(), name="pool-writer"))
                if settings.hot_reload:
                    watcher = watch_folder(
                        pool_file.path,
                        writer.sync,
                        stop_watching,
                        polling=settings.hot_reload_polling,
                    )
                    tasks.append(spawn(watcher, name="pool-watcher"))
            yield
        finally:
            # Stop the background tasks between syncs, never in the middle of one.
            stop_watching.set()
            if runtime.checker is not None:
                runtime.checker.close()
            if runtime.writer is not None:
                runtime.writer.close()
            for task in tasks:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(task, 5)
            if runtime.writer is not None:
                try:
                    await runtime.writer.sync()
                except Exception:
                    logger.exception("final write of the pool file failed")
            await http.close()
            await session.close()
            if demo is not None:
                await demo.close()

    return context


async def _warm_up(relay: Relay) -> None:
    """Open a connection to every upstream before the first request (a model-list
    call: not billed); failures only log, they judge nothing."""

    async def one(entry: Entry) -> None:
        try:
            await relay.provider_for(entry).models({})
        except AiclientError as exc:
            logger.info("warm-up of %s failed: %s", entry.node.label, exc.message)

    await asyncio.gather(*(one(e) for e in list(relay.pool.entries())))


def build_app(
    settings: Settings, setup: PoolSetup, share: MetricsShare | None = None
) -> App:
    """Assemble the application for `settings` and the pool `setup` describes;
    `share` when it is one of `--workers N` (its metrics are the group's)."""
    pool = ProviderPool(
        max_error_count=settings.max_error_count,
        policy=settings.error_policy,
        rate_limit_cooldown=settings.rate_limit_cooldown_ms / 1000,
        rate_limit_cooldown_max=settings.rate_limit_cooldown_max_ms / 1000,
        quota_cooldown_max=settings.quota_cooldown_max_ms / 1000,
        strategies=settings.pool_strategies,
    )
    pool.load(setup.nodes)
    metrics = Metrics(pool)
    prompts = Prompts(settings)
    runtime = Runtime(settings, pool, setup, metrics, prompts=prompts, share=share)
    metrics.paused = lambda: runtime.writer is not None and runtime.writer.paused
    register_secrets(settings.secrets())
    _register_node_secrets(setup.nodes)
    app = App(
        middleware=_make_middleware(runtime),
        default_headers=CORS_HEADERS,
        client_max_size=settings.max_body_bytes,
    )
    app[RUNTIME] = runtime
    app.cleanup_ctx.append(_lifecycle(runtime))
    app.cleanup_ctx.append(refresher_context(runtime))
    app.cleanup_ctx.append(prompts.context)
    endpoints.add_routes(app)
    observe.add_routes(app)
    admin.add_routes(app)
    return app


def _register_node_secrets(nodes: Iterable[ProviderNode]) -> None:
    for node in nodes:
        register_secrets(v for k, v in node.settings.items() if _is_secret_key(k))


def _is_secret_key(name: str) -> bool:
    upper = name.upper()
    return upper.endswith(("_KEY", "_TOKEN", "_SECRET", "_BASE64")) or "PASSWORD" in upper
