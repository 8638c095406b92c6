"""Which provider type serves a request (pure): path prefix, else header, else default.

The original's order: `/{provider-type}/...` wins over the `model-provider` header,
which wins over MODEL_PROVIDER.
"""

from __future__ import annotations

from .config import PROVIDER_TYPES
from .errors import InvalidRequest, NoProviderAvailable, RouteNotFound

__all__ = ["resolve_provider_type"]


def resolve_provider_type(
    path_prefix: str | None, header: str | None, default: str | None
) -> str:
    """The target provider type. Raises RouteNotFound, InvalidRequest or
    NoProviderAvailable with a message naming what was wrong."""
    if path_prefix is not None:
        if path_prefix not in PROVIDER_TYPES:
            raise RouteNotFound("Not Found")
        return path_prefix
    if header is not None and header.strip():
        name = header.strip().lower()
        if name not in PROVIDER_TYPES:
            raise InvalidRequest(
                f"Unknown provider type {header.strip()!r} in the model-provider header; "
                f"expected one of: {', '.join(PROVIDER_TYPES)}"
            )
        return name
    if default is None:
        raise NoProviderAvailable(
            "No provider type configured: set MODEL_PROVIDER or add instances to "
            "provider_pools.json"
        )
    return default
