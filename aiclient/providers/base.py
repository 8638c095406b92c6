"""The Provider interface: one upstream instance, one narrow `send`.

A provider knows its URL, auth headers and how the upstream reports failure; it knows
nothing of other protocols. Every transport failure and every non-2xx answer becomes an
UpstreamError subclass here, so the relay sees one taxonomy.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit

import aiohttp

from .. import http_client
from ..config import Settings
from ..errors import (
    UnsupportedFeature,
    UpstreamConnectError,
    UpstreamError,
    UpstreamHTTPError,
    UpstreamProtocolError,
    UpstreamTimeout,
)
from ..pool.models import ProviderNode
from ..protocols import ApiProtocol

__all__ = ["ModelList", "Provider", "UpstreamResponse", "base_url", "map_client_error"]

_ERROR_BODY_LIMIT = 1 << 20


def base_url(value: str | None, default: str) -> str:
    """The upstream API root without a trailing slash; a bare host gets `/v1`."""
    url = (value or default).rstrip("/")
    if not urlsplit(url).path:
        url += "/v1"
    return url


def map_client_error(exc: BaseException, node_uuid: str | None) -> UpstreamError:
    """Translate a transport failure into our taxonomy (no URLs, no secrets)."""
    if isinstance(exc, UpstreamError):
        return exc
    if isinstance(exc, http_client.InvalidRequest):
        return UpstreamProtocolError(
            f"the upstream request cannot be sent: {exc}", node_uuid=node_uuid
        )
    if isinstance(exc, http_client.InvalidResponse):
        return UpstreamProtocolError(
            f"the upstream answer is not valid HTTP: {exc}", node_uuid=node_uuid
        )
    if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return UpstreamTimeout("the upstream did not answer in time", node_uuid=node_uuid)
    if isinstance(exc, http_client.ConnectError):
        return UpstreamConnectError(str(exc), node_uuid=node_uuid)
    if isinstance(exc, http_client.Disconnected | aiohttp.ClientPayloadError):
        return UpstreamConnectError(
            "the upstream connection broke before the answer was complete",
            node_uuid=node_uuid,
        )
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = exc.os_error.strerror or type(exc.os_error).__name__
        return UpstreamConnectError(
            f"cannot connect to the upstream ({reason})", node_uuid=node_uuid
        )
    if isinstance(exc, aiohttp.ClientError | OSError | http_client.HttpClientError):
        return UpstreamConnectError(
            f"the upstream connection failed ({type(exc).__name__})",
            node_uuid=node_uuid,
        )
    return UpstreamProtocolError(
        f"unexpected upstream failure ({type(exc).__name__})", node_uuid=node_uuid
    )


_TRANSPORT_ERRORS = (TimeoutError, http_client.HttpClientError, OSError)


def _retry_after(headers: Mapping[str, str]) -> float | None:
    if "retry-after-ms" in headers:
        try:
            return float(headers["retry-after-ms"]) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class UpstreamResponse:
    """A 2xx upstream answer whose body has not been read yet."""

    __slots__ = ("_resp", "headers", "node_uuid", "status")

    def __init__(self, resp: http_client.Response, node_uuid: str) -> None:
        self._resp = resp
        self.status = resp.status
        self.headers = resp.headers
        self.node_uuid = node_uuid

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "application/json")

    async def read(self) -> bytes:
        """The whole body; a cut or stalled body raises an UpstreamError."""
        try:
            return await self._resp.read()
        except _TRANSPORT_ERRORS as exc:
            raise map_client_error(exc, self.node_uuid) from exc

    async def chunks(self) -> AsyncIterator[bytes]:
        """Body bytes as they arrive; a cut or stalled stream raises an UpstreamError."""
        resp = self._resp  # next_chunk directly: one async generator per chunk, not two
        try:
            while chunk := await resp.next_chunk():
                yield chunk
        except _TRANSPORT_ERRORS as exc:
            resp.close()
            raise map_client_error(exc, self.node_uuid) from exc
        except BaseException:
            resp.close()
            raise

    def close(self) -> None:
        """Drop the upstream connection (used when the client went away mid-stream)."""
        self._resp.close()

    def release(self) -> None:
        self._resp.release()


@dataclass(frozen=True, slots=True)
class ModelList:
    """An upstream's model list: its raw body (in its protocol) and the model ids."""

    ids: list[str]
    raw: bytes | None = None


class Provider:
    """Base for HTTP upstreams. Subclasses set the class vars and the three hooks."""

    type_name: ClassVar[str]
    protocol: ClassVar[ApiProtocol]
    static_models: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        node: ProviderNode,
        settings: Settings,
        session: aiohttp.ClientSession,
        http: http_client.HttpClient,
    ) -> None:
        self.node = node
        self.settings = settings
        self.session = session  # token exchanges (rare; full client features)
        self.http = http  # the request path (lean keep-alive client)

    def setting(self, key: str) -> Any:
        """The instance's value for a config key, else config.json's."""
        value = self.node.settings.get(key)
        if value is None or value == "":
            value = self.settings.global_value(key)
        return value

    def url(self, model: str, stream: bool) -> str:
        raise NotImplementedError

    def headers(self, client_headers: Mapping[str, str]) -> dict[str, str]:
        raise NotImplementedError

    async def send(
        self,
        body: bytes,
        *,
        model: str,
        stream: bool,
        client_headers: Mapping[str, str],
    ) -> UpstreamResponse:
        """POST a request already in this provider's protocol. Raises UpstreamError."""
        return await self._request(
            "POST", self.url(model, stream), body, self.headers(client_headers)
        )

    async def _request(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]
    ) -> UpstreamResponse:
        uid = self.node.uuid
        try:
            resp = await self.http.request(method, url, body, headers)
        except _TRANSPORT_ERRORS as exc:
            raise map_client_error(exc, uid) from exc
        if resp.status >= 300:
            try:
                payload = await resp.read(_ERROR_BODY_LIMIT)
            except _TRANSPORT_ERRORS:
                payload = b""
            raise UpstreamHTTPError(
                resp.status,
                payload,
                {k.lower(): v for k, v in resp.headers.items()},
                node_uuid=uid,
                retry_after=_retry_after(resp.headers),
            )
        return UpstreamResponse(resp, uid)

    def count_url(self, model: str) -> str | None:
        """The upstream's token-counting endpoint, if it has one."""
        return None

    async def count_tokens(
        self, body: bytes, *, model: str, client_headers: Mapping[str, str]
    ) -> UpstreamResponse:
        """POST a token-count request in this provider's protocol. Raises
        UnsupportedFeature when the upstream cannot count, else as `send`."""
        url = self.count_url(model)
        if url is None:
            raise UnsupportedFeature(
                f"{self.type_name} has no token-counting endpoint to answer this"
            )
        return await self._request("POST", url, body, self.headers(client_headers))

    async def models(self, client_headers: Mapping[str, str]) -> ModelList:
        """The instance's configured `supportedModels`, else the upstream's list."""
        configured = self.node.settings.get("supportedModels")
        if isinstance(configured, list) and configured:
            return ModelList([str(m) for m in configured])
        return await self.list_models(client_headers)

    async def list_models(self, client_headers: Mapping[str, str]) -> ModelList:
        """The upstream's models; raises UpstreamError when it cannot answer."""
        return ModelList(list(self.static_models))
