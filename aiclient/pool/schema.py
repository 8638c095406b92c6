"""Validate a parsed provider_pools.json into ProviderNodes (pure; no I/O).

Errors name the file, the provider type, the instance index and the field. Unknown
provider types and unknown fields are kept in the file and merely not served.
"""

from __future__ import annotations

import logging
import uuid as uuid_mod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..protocols import ApiProtocol
from .models import ProviderNode

__all__ = [
    "TYPE_SPECS",
    "TypeSpec",
    "assign_missing_uuids",
    "unknown_types",
    "validate_pools",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TypeSpec:
    """What an instance of a provider type must or may carry."""

    name: str
    protocol: ApiProtocol
    required: tuple[str, ...] = ()  # at least one of these must be set
    string_keys: tuple[str, ...] = ()
    url_keys: tuple[str, ...] = ()
    default_check_model: str = ""


TYPE_SPECS: dict[str, TypeSpec] = {
    spec.name: spec
    for spec in (
        TypeSpec(
            "openai-custom",
            ApiProtocol.OPENAI,
            ("OPENAI_API_KEY",),
            ("OPENAI_API_KEY",),
            ("OPENAI_BASE_URL",),
            "gpt-4o-mini",
        ),
        TypeSpec(
            "claude-custom",
            ApiProtocol.CLAUDE,
            ("CLAUDE_API_KEY",),
            ("CLAUDE_API_KEY",),
            ("CLAUDE_BASE_URL",),
            "claude-3-7-sonnet-20250219",
        ),
        TypeSpec(
            "gemini-custom",
            ApiProtocol.GEMINI,
            ("GEMINI_API_KEY",),
            ("GEMINI_API_KEY",),
            ("GEMINI_BASE_URL",),
            "gemini-2.5-flash",
        ),
        TypeSpec(
            "gemini-cli-oauth",
            ApiProtocol.GEMINI,
            (),
            ("GEMINI_OAUTH_CREDS_FILE_PATH", "GEMINI_OAUTH_CREDS_BASE64", "PROJECT_ID"),
            ("GEMINI_BASE_URL", "GEMINI_OAUTH_TOKEN_URL"),
            "gemini-2.5-flash",
        ),
        TypeSpec(
            "claude-kiro-oauth",
            ApiProtocol.CLAUDE,
            (),
            ("KIRO_OAUTH_CREDS_FILE_PATH", "KIRO_OAUTH_CREDS_BASE64"),
            ("KIRO_BASE_URL", "KIRO_REFRESH_URL", "KIRO_REFRESH_IDC_URL"),
            "claude-haiku-4-5",
        ),
        TypeSpec(
            "openai-qwen-oauth",
            ApiProtocol.OPENAI,
            (),
            ("QWEN_OAUTH_CREDS_FILE_PATH",),
            ("QWEN_BASE_URL", "QWEN_OAUTH_BASE_URL"),
            "qwen3-coder-flash",
        ),
    )
}

_BOOL_FIELDS = ("isHealthy", "isDisabled", "checkHealth")
_COUNT_FIELDS = ("usageCount", "errorCount", "concurrencyLimit", "queueLimit")
_OPT_STR_FIELDS = ("customName", "checkModelName", "lastUsed", "lastErrorTime")


def assign_missing_uuids(data: dict[str, Any]) -> int:
    """Give every instance object without a usable uuid a fresh one; return how many."""
    added = 0
    for ptype, instances in data.items():
        if ptype not in TYPE_SPECS or not isinstance(instances, list):
            continue
        for inst in instances:
            if isinstance(inst, dict) and not inst.get("uuid"):
                inst["uuid"] = str(uuid_mod.uuid4())
                added += 1
    return added


def _check_instance(
    where: str,
    spec: TypeSpec,
    inst: dict[str, Any],
    global_value: Callable[[str], Any],
) -> None:
    def fail(field: str, problem: str) -> ConfigError:
        return ConfigError(f"{where}.{field}: {problem}")

    if not isinstance(inst.get("uuid"), str) or not inst["uuid"].strip():
        raise fail("uuid", "must be a non-empty string")
    for name in _BOOL_FIELDS:
        if name in inst and not isinstance(inst[name], bool):
            raise fail(name, f"must be true or false, got {inst[name]!r}")
    for name in _COUNT_FIELDS:
        value = inst.get(name)
        if (
            name in inst
            and value is not None
            and (not isinstance(value, int) or isinstance(value, bool) or value < 0)
        ):
            raise fail(name, f"must be a whole number >= 0, got {value!r}")
    for name in _OPT_STR_FIELDS:
        if inst.get(name) is not None and not isinstance(inst[name], str):
            raise fail(name, "must be a string or null")
    unsupported = inst.get("notSupportedModels")
    if unsupported is not None and (
        not isinstance(unsupported, list)
        or not all(isinstance(m, str) for m in unsupported)
    ):
        raise fail("notSupportedModels", "must be a list of model names")
    _check_type_keys(fail, spec, inst, global_value)


def _check_type_keys(
    fail: Callable[[str, str], ConfigError],
    spec: TypeSpec,
    inst: dict[str, Any],
    global_value: Callable[[str], Any],
) -> None:
    for name in (*spec.string_keys, *spec.url_keys):
        value = inst.get(name)
        if value is not None and not isinstance(value, str):
            raise fail(name, "must be a string")
    for name in spec.url_keys:
        value = inst.get(name)
        if value and not value.startswith(("http://", "https://")):
            raise fail(name, "must be an http:// or https:// URL")
    if spec.required and not any(inst.get(k) or global_value(k) for k in spec.required):
        raise fail(spec.required[0], "is required (in the instance or in config.json)")


def unknown_types(data: dict[str, Any]) -> list[str]:
    """Top-level keys that are not provider types this version serves."""
    return [key for key in data if key not in TYPE_SPECS]


def validate_pools(
    data: dict[str, Any],
    path: Path | str,
    global_value: Callable[[str], Any],
) -> list[ProviderNode]:
    """Check every instance and build the nodes, in file order. Raises ConfigError.

    `global_value(key)` gives config.json's value for a credential an instance omits.
    """
    nodes: list[ProviderNode] = []
    seen: dict[str, str] = {}
    for ptype, instances in data.items():
        spec = TYPE_SPECS.get(ptype)
        if spec is None:
            continue  # kept in the file as it is, not served (see unknown_types)
        if not isinstance(instances, list):
            raise ConfigError(
                f"{path}: {ptype}: must be an array of instances, "
                f"got {type(instances).__name__}"
            )
        for index, inst in enumerate(instances):
            where = f"{path}: {ptype}[{index}]"
            if not isinstance(inst, dict):
                raise ConfigError(f"{where}: must be an object, got {type(inst).__name__}")
            _check_instance(where, spec, inst, global_value)
            uid = inst["uuid"]
            if uid in seen:
                raise ConfigError(f"{where}.uuid: {uid!r} is already used by {seen[uid]}")
            seen[uid] = f"{ptype}[{index}]"
            nodes.append(
                ProviderNode(
                    uuid=uid,
                    provider_type=ptype,
                    settings=dict(inst),
                    custom_name=inst.get("customName"),
                    disabled=bool(inst.get("isDisabled", False)),
                    check_model=inst.get("checkModelName") or None,
                    not_supported_models=frozenset(inst.get("notSupportedModels") or ()),
                )
            )
    return nodes
