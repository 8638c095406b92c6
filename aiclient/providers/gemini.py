"""gemini-custom: the Gemini API (generativelanguage, v1beta) by API key, no OAuth."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property, lru_cache
from urllib.parse import quote, urlsplit

import orjson

from ..errors import UpstreamProtocolError
from ..protocols import ApiProtocol
from .base import ModelList, Provider

__all__ = ["GeminiProvider"]


@lru_cache(maxsize=256)  # a pool serves a few models; `quote` costs ~1 µs
def _url_name(model: str) -> str:
    """A model's name as a URL path segment (`models/` prefix or not)."""
    return quote(model.removeprefix("models/"), safe="-._~")


DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com/v1beta"


class GeminiProvider(Provider):
    type_name = "gemini-custom"
    protocol = ApiProtocol.GEMINI

    @cached_property  # a provider is rebuilt whenever its instance's config changes
    def base(self) -> str:
        """GEMINI_BASE_URL without a trailing slash; a bare host gets `/v1beta`."""
        url = str(self.setting("GEMINI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        if not urlsplit(url).path:
            url += "/v1beta"
        return url

    def _model_url(self, model: str, method: str) -> str:
        return f"{self.base}/models/{_url_name(model)}:{method}"

    def url(self, model: str, stream: bool) -> str:
        if stream:
            return self._model_url(model, "streamGenerateContent") + "?alt=sse"
        return self._model_url(model, "generateContent")

    def count_url(self, model: str) -> str | None:
        return self._model_url(model, "countTokens")

    def headers(self, client_headers: Mapping[str, str]) -> dict[str, str]:
        return {
            "x-goog-api-key": str(self.setting("GEMINI_API_KEY") or ""),
            "Content-Type": "application/json",
        }

    async def list_models(self, client_headers: Mapping[str, str]) -> ModelList:
        up = await self._request(
            "GET", self.base + "/models?pageSize=1000", None, self.headers(client_headers)
        )
        raw = await up.read()
        try:
            data = orjson.loads(raw)
            ids = [str(m["name"]).removeprefix("models/") for m in data["models"]]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise UpstreamProtocolError(
                "the upstream model list is not a Gemini model list",
                node_uuid=self.node.uuid,
            ) from exc
        return ModelList(ids, raw)
