"""Model lists in each client protocol's shape (pure)."""

from __future__ import annotations

from typing import Any

from . import ApiProtocol

__all__ = ["render_model_list"]


def render_model_list(
    protocol: ApiProtocol, ids: list[str], *, owned_by: str, created: int
) -> dict[str, Any]:
    if protocol is ApiProtocol.CLAUDE:
        data = [
            {
                "type": "model",
                "id": m,
                "display_name": m,
                "created_at": "1970-01-01T00:00:00Z",
            }
            for m in ids
        ]
        return {
            "data": data,
            "has_more": False,
            "first_id": ids[0] if ids else None,
            "last_id": ids[-1] if ids else None,
        }
    if protocol is ApiProtocol.GEMINI:
        return {
            "models": [
                {
                    "name": m if m.startswith("models/") else f"models/{m}",
                    "displayName": m.removeprefix("models/"),
                    "supportedGenerationMethods": [
                        "generateContent",
                        "streamGenerateContent",
                    ],
                }
                for m in ids
            ]
        }
    return {
        "object": "list",
        "data": [
            {"id": m, "object": "model", "created": created, "owned_by": owned_by}
            for m in ids
        ],
    }
