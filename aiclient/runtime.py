"""The state the handlers share, reached through one typed AppKey."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .bootstrap import PoolSetup
from .config import Settings
from .http_server import Key
from .metrics import Metrics
from .metrics_share import MetricsShare
from .pool import ProviderPool
from .pool.schema import TYPE_SPECS
from .pool.writer import PoolWriter
from .probes import HealthChecker
from .prompts import Prompts
from .protocols import ApiProtocol
from .relay import Call, Relay

__all__ = ["CALL", "CORS_HEADERS", "RUNTIME", "Runtime"]

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": (
        "Content-Type, Authorization, x-api-key, x-goog-api-key, Model-Provider, "
        "anthropic-version, anthropic-beta"
    ),
    "Access-Control-Max-Age": "86400",
}


@dataclass(slots=True)
class Runtime:
    """Everything the handlers share; filled in by the lifecycle context."""

    settings: Settings
    pool: ProviderPool
    setup: PoolSetup
    metrics: Metrics
    relay: Relay | None = None
    writer: PoolWriter | None = None
    demo_url: str | None = None
    prompts: Prompts | None = None
    checker: HealthChecker | None = None
    share: MetricsShare | None = None  # --workers: the group's metrics
    started: float = field(default_factory=time.time)
    # default_provider's answers for the pool's current set of types
    _defaults: dict[ApiProtocol | None, str | None] = field(default_factory=dict)
    _defaults_for: object = None

    def default_provider(self, client: ApiProtocol | None = None) -> str | None:
        """MODEL_PROVIDER; without it, the pool's first type speaking the client's
        protocol (so no conversion is needed), else the pool's first type."""
        if self.settings.model_provider:
            return self.settings.model_provider
        generation = self.pool.layout
        if self._defaults_for is not generation:
            self._defaults = {}
            self._defaults_for = generation
        if client in self._defaults:
            return self._defaults[client]
        answer = self._defaults[client] = self._default_for(client)
        return answer

    def _default_for(self, client: ApiProtocol | None) -> str | None:
        types = self.pool.types()
        for ptype in types:
            if (
                client is not None
                and ptype in TYPE_SPECS
                and (TYPE_SPECS[ptype].protocol is client)
            ):
                return ptype
        return types[0] if types else None


RUNTIME = Key("runtime", Runtime)
CALL = Key("call", Call)
