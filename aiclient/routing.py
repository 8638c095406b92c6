"""Which provider type serves a request (pure).

Order: the `/{provider-type}/...` path prefix; the request body's choice (a
`"provider": "<type>"` field, else a `<type>/` prefix on the model, Aurora's "pool name
as model prefix", e.g. `openai-custom/gpt-4o`); the `model-provider` header;
MODEL_PROVIDER. The body's choice is removed before the request goes upstream.
"""

from __future__ import annotations

from .config import PROVIDER_TYPES
from .errors import InvalidRequest, NoProviderAvailable, RouteNotFound

__all__ = ["resolve_provider_type", "split_model_prefix"]


def split_model_prefix(model: str) -> tuple[str | None, str]:
    """`openai-custom/gpt-4o` -> ("openai-custom", "gpt-4o"); anything else as is."""
    prefix, slash, rest = model.partition("/")
    if slash and rest and prefix in PROVIDER_TYPES:
        return prefix, rest
    return None, model


def resolve_provider_type(
    path_prefix: str | None,
    header: str | None,
    default: str | None,
    body_choice: str | None = None,
) -> str:
    """The target provider type. Raises RouteNotFound, InvalidRequest or
    NoProviderAvailable with a message naming what was wrong."""
    if path_prefix is not None:
        if path_prefix not in PROVIDER_TYPES:
            raise RouteNotFound("Not Found")
        return path_prefix
    if body_choice is not None:
        return body_choice
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
