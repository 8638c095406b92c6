"""openai-custom: any OpenAI-compatible Chat Completions endpoint, by API key."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property

import orjson

from ..errors import UpstreamProtocolError
from ..protocols import ApiProtocol
from .base import ModelList, Provider, base_url

__all__ = ["OpenAIProvider"]

DEFAULT_BASE_URL = "https://api.openai.com/v1"


class OpenAIProvider(Provider):
    type_name = "openai-custom"
    protocol = ApiProtocol.OPENAI
    key_field = "OPENAI_API_KEY"
    url_field = "OPENAI_BASE_URL"

    # A provider lives exactly as long as its instance's config: a changed key or URL
    # makes a new provider, so what is derived from the config is computed once.
    @cached_property
    def base(self) -> str:
        return base_url(self.setting(self.url_field), DEFAULT_BASE_URL)

    @cached_property
    def _chat_url(self) -> str:
        return self.base + "/chat/completions"

    @cached_property
    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.setting(self.key_field) or ''}",
            "Content-Type": "application/json",
        }

    def url(self, model: str, stream: bool) -> str:
        return self._chat_url

    def headers(self, client_headers: Mapping[str, str]) -> dict[str, str]:
        return self._headers

    async def list_models(self, client_headers: Mapping[str, str]) -> ModelList:
        up = await self._request(
            "GET", self.base + "/models", None, self.headers(client_headers)
        )
        raw = await up.read()
        try:
            data = orjson.loads(raw)
            ids = [str(m["id"]) for m in data["data"]]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise UpstreamProtocolError(
                "the upstream model list is not an OpenAI model list",
                node_uuid=self.node.uuid,
            ) from exc
        return ModelList(ids, raw)
