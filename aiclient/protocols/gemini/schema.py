"""JSON Schema <-> the Schema subset Gemini accepts in function declarations (§5.7).

Gemini answers 400 ("Unknown name ... Cannot find field") for any keyword outside its
OpenAPI-3.0 subset, so `to_gemini_schema` rewrites instead of deleting blindly: local
`$ref`s are inlined (a cycle is cut at a fixed depth), `allOf` merged, `oneOf` read as
`anyOf`, null branches and `["t", "null"]` types turned into `nullable`, `const` and
non-string enums stringified, exclusive bounds turned into inclusive ones, unsupported
formats and every other keyword dropped, and `required` names filtered to the declared
properties. `from_gemini_schema` goes back: lower-case types, `nullable` as a union with
null, no `propertyOrdering`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

__all__ = ["from_gemini_schema", "to_gemini_schema"]

_KEEP = frozenset(
    {
        "description",
        "title",
        "nullable",
        "pattern",
        "minItems",
        "maxItems",
        "minProperties",
        "maxProperties",
        "minLength",
        "maxLength",
        "minimum",
        "maximum",
        "default",
        "example",
        "propertyOrdering",
    }
)
_FORMATS = {
    "string": frozenset({"date-time", "enum"}),
    "number": frozenset({"float", "double"}),
    "integer": frozenset({"int32", "int64"}),
}
_MAX_DEPTH = 12
# What makes a node more than its kept keywords and type; a node without any of them
# (most leaves: {"type": "string", "description": ...}) is done after one pass.
_VALUE_KEYS = frozenset({"const", "enum", "format", "exclusiveMinimum", "exclusiveMaximum"})
_SPECIAL = _VALUE_KEYS | {"anyOf", "oneOf", "properties", "items"}


def _resolve(ref: str, root: dict[str, Any]) -> Any:
    if not ref.startswith("#/"):
        return None
    node: Any = root
    for key in ref[2:].split("/"):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _merge_all_of(schema: dict[str, Any]) -> dict[str, Any]:
    merged = {k: v for k, v in schema.items() if k != "allOf"}
    branches = schema["allOf"]
    for branch in branches if isinstance(branches, list) else ():
        if not isinstance(branch, dict):
            continue
        for key, value in branch.items():
            if key == "properties" and isinstance(value, dict):
                base = merged.get("properties")
                merged["properties"] = {**(base if isinstance(base, dict) else {}), **value}
            elif key == "required" and isinstance(value, list):
                base = merged.get("required")
                merged["required"] = [*(base if isinstance(base, list) else []), *value]
            else:
                merged.setdefault(key, value)
    return merged


def _clean_any_of(branches: list[Any], out: dict[str, Any], root: Any, depth: int) -> None:
    kept = [b for b in branches if isinstance(b, dict) and b.get("type") != "null"]
    if len(kept) < len(branches):
        out["nullable"] = True
    if len(kept) == 1:
        for key, value in _clean(kept[0], root, depth + 1).items():
            out.setdefault(key, value)
    elif kept:
        out["anyOf"] = [_clean(b, root, depth + 1) for b in kept]


def _clean_values(schema: dict[str, Any], out: dict[str, Any]) -> None:
    """enum/const, format and exclusive bounds, which depend on the cleaned type."""
    enum = [schema["const"]] if "const" in schema else schema.get("enum")
    if isinstance(enum, list) and enum:
        out["enum"] = [v if isinstance(v, str) else str(v) for v in enum]
        out["type"] = "string"
    fmt = schema.get("format")
    if isinstance(fmt, str) and fmt in _FORMATS.get(str(out.get("type")), ()):
        out["format"] = fmt
    for bound, key, step in (
        ("exclusiveMinimum", "minimum", 1),
        ("exclusiveMaximum", "maximum", -1),
    ):
        value = schema.get(bound)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = value + step if out.get("type") == "integer" else value


def _clean_children(
    schema: dict[str, Any], out: dict[str, Any], root: Any, depth: int
) -> None:
    properties = schema.get("properties")
    if isinstance(properties, dict):
        cleaned = {str(k): _clean(v, root, depth + 1) for k, v in properties.items()}
        out["properties"] = cleaned
        required = schema.get("required")
        if isinstance(required, list):
            names = [r for r in required if isinstance(r, str) and r in cleaned]
            if names:
                out["required"] = names
    items = schema.get("items")
    if isinstance(items, dict):
        out["items"] = _clean(items, root, depth + 1)
    elif out.get("type") == "array":
        out["items"] = {"type": "string"}


def _clean(schema: Any, root: Any, depth: int) -> dict[str, Any]:
    """One node. Schemas are parsed JSON: a node has few keys, so it is read key by key
    rather than asked for every keyword it might have (Claude Code's tool list is some
    hundred nodes, rewritten on every request)."""
    if not isinstance(schema, dict):
        return {}
    if depth > _MAX_DEPTH:
        return {"type": "object", "description": "(nested too deeply to describe)"}
    if "$ref" in schema and isinstance(schema["$ref"], str):
        target = _resolve(schema["$ref"], root)
        if not isinstance(target, dict) or not target:  # dangling, or not a schema
            target = {"type": "object"}
        extra = {k: v for k, v in schema.items() if k != "$ref"}
        return _clean({**target, **extra}, root, depth + 1)
    return _clean_node(_merge_all_of(schema) if "allOf" in schema else schema, root, depth)


def _clean_node(schema: dict[str, Any], root: Any, depth: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    special = False
    for key, value in schema.items():
        if key in _KEEP:
            out[key] = value
        elif key in _SPECIAL:
            special = True
    kind = schema.get("type")
    if isinstance(kind, list):
        types = [t for t in kind if t != "null"]
        if len(types) < len(kind):
            out["nullable"] = True
        if len(types) > 1:
            out["anyOf"] = [_clean({**schema, "type": t}, root, depth + 1) for t in types]
            return out
        kind = types[0] if types else None
    if isinstance(kind, str):
        out["type"] = kind = kind.lower()
    if special:
        branches = schema.get("anyOf", schema.get("oneOf"))
        if isinstance(branches, list):
            _clean_any_of(branches, out, root, depth)
        if not _VALUE_KEYS.isdisjoint(schema):
            _clean_values(schema, out)
    if special or kind == "array":
        _clean_children(schema, out, root, depth)
    return out


# Agents send the same tools on every turn of a session, so the rewrite of a schema is
# kept, keyed by the schema's JSON: serialising it is a tenth of rewriting it. (Two
# schemas with one JSON are one schema: they come from parsed JSON, which has no NaN or
# infinity, the only values orjson writes alike.) The kept values are shared between
# requests and never changed: the writers only embed them. Bounded in count and in size
# (a tool schema is a few KB; a client sending huge ones must not fill the memory).
_CACHE_SIZE = 256
_CACHE_MAX_BYTES = 16 * 1024
_cache: dict[bytes, dict[str, Any] | None] = {}


def to_gemini_schema(schema: Mapping[str, Any]) -> dict[str, Any] | None:
    """A function's parameters for Gemini, or None when it takes no arguments (Gemini
    rejects an OBJECT with no properties at the root). The result may be shared with
    other requests: embed it, never change it."""
    if not isinstance(schema, dict):  # parsed JSON: anything but an object is no schema
        return None
    try:
        key = orjson.dumps(schema)
    except orjson.JSONEncodeError:  # nested too deeply to serialise: not kept
        return _rewritten(schema)
    if len(key) > _CACHE_MAX_BYTES:
        return _rewritten(schema)
    if key in _cache:
        return _cache[key]
    if len(_cache) >= _CACHE_SIZE:
        del _cache[next(iter(_cache))]  # the oldest
    cleaned = _cache[key] = _rewritten(schema)
    return cleaned


def _rewritten(schema: dict[str, Any]) -> dict[str, Any] | None:
    cleaned = _clean(schema, schema, 0)
    if cleaned.get("type", "object") == "object" and not cleaned.get("properties"):
        return None
    return cleaned


def from_gemini_schema(schema: Any) -> Any:
    if isinstance(schema, list):
        return [from_gemini_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("propertyOrdering", "nullable"):
            continue
        if key == "type" and isinstance(value, str):
            out["type"] = value.lower()
        elif key == "properties" and isinstance(value, dict):
            out["properties"] = {k: from_gemini_schema(v) for k, v in value.items()}
        elif key in ("items", "anyOf"):
            out[key] = from_gemini_schema(value)
        else:
            out[key] = value
    if schema.get("nullable") is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out
