"""Where the pool comes from at start-up: the pool file, config credentials, or the demo.

Blocking (runs before the event loop, or in a thread). Raises ConfigError for a pool
file that is named but missing, unreadable or invalid, so the CLI can exit 2.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .config import Settings
from .errors import ConfigError
from .pool.models import ProviderNode
from .pool.schema import TYPE_SPECS, unknown_types
from .pool.store import PoolFile

__all__ = ["DEFAULT_POOLS_PATH", "PoolSetup", "open_pools"]

logger = logging.getLogger(__name__)

DEFAULT_POOLS_PATH = "provider_pools.json"

# config.json credentials that make a single-instance pool when there is no pool file.
_SINGLE_PROVIDER_KEYS = {
    "openai-custom": "OPENAI_API_KEY",
    "claude-custom": "CLAUDE_API_KEY",
    "gemini-custom": "GEMINI_API_KEY",
}


@dataclass(slots=True)
class PoolSetup:
    mode: Literal["file", "config", "demo"]
    nodes: list[ProviderNode] = field(default_factory=list)
    pool_file: PoolFile | None = None


def open_pools(settings: Settings) -> PoolSetup:
    """Load the pool the settings describe. Raises ConfigError."""
    path_text = settings.pools_file
    if path_text is None and Path(DEFAULT_POOLS_PATH).is_file():
        path_text = DEFAULT_POOLS_PATH
    if path_text is not None:
        path = Path(path_text).expanduser().resolve()
        pool_file = PoolFile(path, settings.global_value)
        try:
            loaded = pool_file.load()
        except FileNotFoundError:
            raise ConfigError(f"{path}: pool file not found") from None
        except (IsADirectoryError, PermissionError, OSError) as exc:
            raise ConfigError(f"{path}: cannot read pool file: {exc}") from None
        for key in unknown_types(loaded.data):
            logger.warning(
                "%s: %r is not a provider type aiclient serves; kept as it is", path, key
            )
        return PoolSetup("file", loaded.nodes, pool_file)
    nodes = [
        ProviderNode(
            uuid=f"config-{ptype}",
            provider_type=ptype,
            settings={},
            custom_name=f"{ptype} from config",
        )
        for ptype, key in _SINGLE_PROVIDER_KEYS.items()
        if settings.global_value(key) and ptype in TYPE_SPECS
    ]
    if nodes:
        return PoolSetup("config", nodes)
    return PoolSetup("demo")
