"""Tool schemas for Gemini: whatever JSON a client sends as a schema, what goes up is a
schema Gemini accepts (its OpenAPI subset), and nothing a client sends crashes it."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from aiclient.protocols.gemini import schema as schema_module
from aiclient.protocols.gemini.schema import to_gemini_schema

# What Gemini's function declarations accept (protocols.md §5.7).
GEMINI_KEYS = frozenset(
    {
        "type",
        "format",
        "description",
        "title",
        "nullable",
        "enum",
        "properties",
        "required",
        "items",
        "anyOf",
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
# The values of these are taken from the client's schema as they are; the rest is
# rewritten and checked below.
PASSED_THROUGH = GEMINI_KEYS - {"type", "enum", "properties", "required", "items", "anyOf"}

KEYWORDS = st.sampled_from(
    [
        "type",
        "description",
        "properties",
        "items",
        "required",
        "anyOf",
        "oneOf",
        "allOf",
        "enum",
        "const",
        "format",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minimum",
        "$ref",
        "$defs",
        "additionalProperties",
        "nullable",
        "x",
    ]
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.floats(-2, 2, allow_nan=False)
    | st.sampled_from(
        ["string", "INTEGER", "array", "object", "null", "#/$defs/a", "#/x", "int32", "a"]
    )
)
TYPES = st.sampled_from(["string", "integer", "array", "object", "null"]) | st.lists(
    st.sampled_from(["string", "integer", "null", "array"]), max_size=3
)
# Any JSON, keyed by schema keywords often: every keyword may hold any value.
SCHEMAS = st.recursive(
    st.dictionaries(KEYWORDS, SCALARS | TYPES, max_size=4),
    lambda inner: st.dictionaries(
        KEYWORDS,
        inner
        | SCALARS
        | TYPES
        | st.lists(inner | SCALARS, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "x", "$ref"]), inner | SCALARS, max_size=3),
        max_size=5,
    ),
    max_leaves=30,
)


def _check(node: Any) -> None:
    assert isinstance(node, dict), node
    assert set(node) <= GEMINI_KEYS, node
    kind = node.get("type")
    assert kind is None or (isinstance(kind, str) and kind == kind.lower()), node
    if "enum" in node:
        assert all(isinstance(v, str) for v in node["enum"]) and node["type"] == "string"
    if "required" in node:
        assert set(node["required"]) <= set(node["properties"]), node
    for child in node.get("properties", {}).values():
        _check(child)
    for child in node.get("anyOf", ()):
        _check(child)
    if "items" in node:
        _check(node["items"])


@settings(max_examples=1500, deadline=None)
@given(SCHEMAS)
def test_any_schema_a_client_sends_becomes_one_gemini_accepts(schema: Any) -> None:
    cleaned = to_gemini_schema(schema)
    if cleaned is not None:
        _check(cleaned)


def test_malformed_keywords_are_dropped_not_crashed_on() -> None:
    schema = {"type": "object", "allOf": True, "properties": {"a": {"allOf": 3}}}
    assert to_gemini_schema(schema) == {"type": "object", "properties": {"a": {}}}
    schema = {"properties": {"a": {"$ref": "#/x"}, "b": {"$ref": "#/y"}}, "x": True}
    assert to_gemini_schema(schema) == {
        "properties": {"a": {"type": "object"}, "b": {"type": "object"}}
    }


def test_the_rewrites_gemini_needs() -> None:
    schema = {
        "type": "object",
        "$defs": {"pt": {"type": "object", "properties": {"x": {"type": "number"}}}},
        "properties": {
            "at": {"$ref": "#/$defs/pt", "description": "where"},
            "tags": {"type": "array"},
            "kind": {"oneOf": [{"type": "string"}, {"type": "null"}]},
            "size": {"type": ["integer", "null"], "exclusiveMaximum": 10},
            "mode": {"const": 3},
            "when": {"type": "string", "format": "date-time"},
            "uri": {"type": "string", "format": "uri"},
            "both": {"allOf": [{"properties": {"a": {"type": "string"}}}, {"title": "B"}]},
        },
        "required": ["at", "ghost"],
        "additionalProperties": False,
    }
    assert to_gemini_schema(schema) == {
        "type": "object",
        "properties": {
            "at": {
                "type": "object",
                "description": "where",
                "properties": {"x": {"type": "number"}},
            },
            "tags": {"type": "array", "items": {"type": "string"}},
            "kind": {"nullable": True, "type": "string"},
            "size": {"nullable": True, "type": "integer", "maximum": 9},
            "mode": {"enum": ["3"], "type": "string"},
            "when": {"type": "string", "format": "date-time"},
            "uri": {"type": "string"},
            "both": {"title": "B", "properties": {"a": {"type": "string"}}},
        },
        "required": ["at"],
    }
    assert to_gemini_schema({"type": "object", "properties": {}}) is None


def test_a_rewrite_is_kept_for_the_same_schema_and_only_for_it() -> None:
    """Agents resend their tools every turn: the second rewrite of a schema is the kept
    one, a schema that differs in anything is rewritten, and what is kept is bounded."""
    first = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}}}
    again = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}}}
    other = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1.0}}}
    kept = to_gemini_schema(first)
    assert to_gemini_schema(again) is kept
    assert to_gemini_schema(other) == {
        "type": "object",
        "properties": {"n": {"type": "integer", "minimum": 1.0}},
    }
    assert to_gemini_schema(other) is not kept
    for n in range(2 * schema_module._CACHE_SIZE):
        to_gemini_schema({"type": "object", "properties": {f"p{n}": {"type": "string"}}})
    assert len(schema_module._cache) <= schema_module._CACHE_SIZE
    huge = {"type": "object", "properties": {"a": {"description": "x" * 20_000}}}
    assert to_gemini_schema(huge) == huge
    assert all(len(key) <= schema_module._CACHE_MAX_BYTES for key in schema_module._cache)
