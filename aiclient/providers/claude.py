"""claude-custom: the Anthropic Messages API (or a compatible gateway), by API key."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property

import orjson

from ..errors import UpstreamError
from ..protocols import ApiProtocol
from .base import ModelList, Provider, base_url

__all__ = ["ClaudeProvider"]

DEFAULT_BASE_URL = "https://api.anthropic.com/v1"
ANTHROPIC_VERSION = "2023-06-01"


class ClaudeProvider(Provider):
    type_name = "claude-custom"
    protocol = ApiProtocol.CLAUDE
    # AIClient-2-API's fixed list, served when the upstream has no /models endpoint.
    static_models = (
        "claude-4-sonnet",
        "claude-sonnet-4-20250514",
        "claude-opus-4-20250514",
        "claude-3-7-sonnet-20250219",
        "claude-3-5-sonnet-20241022",
        "claude-3-5-haiku-20241022",
        "claude-3-opus-20240229",
        "claude-3-haiku-20240307",
    )

    @cached_property  # a provider is rebuilt whenever its instance's config changes
    def base(self) -> str:
        return base_url(self.setting("CLAUDE_BASE_URL"), DEFAULT_BASE_URL)

    @cached_property
    def _messages_url(self) -> str:
        return self.base + "/messages"

    def url(self, model: str, stream: bool) -> str:
        return self._messages_url

    def count_url(self, model: str) -> str | None:
        return self.base + "/messages/count_tokens"

    def headers(self, client_headers: Mapping[str, str]) -> dict[str, str]:
        headers = {
            "x-api-key": self.setting("CLAUDE_API_KEY") or "",
            "anthropic-version": client_headers.get("anthropic-version")
            or ANTHROPIC_VERSION,
            "Content-Type": "application/json",
        }
        beta = client_headers.get("anthropic-beta")
        if beta:
            headers["anthropic-beta"] = beta
        return headers

    async def list_models(self, client_headers: Mapping[str, str]) -> ModelList:
        try:
            up = await self._request(
                "GET", self.base + "/models", None, self.headers(client_headers)
            )
            raw = await up.read()
            data = orjson.loads(raw)
            ids = [str(m["id"]) for m in data["data"]]
        except (UpstreamError, orjson.JSONDecodeError, KeyError, TypeError):
            return ModelList(list(self.static_models))
        return ModelList(ids, raw)
