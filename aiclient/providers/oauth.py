"""What the OAuth-backed provider types share: a token per request, one refresh and one
retry when the upstream rejects it, and answers rewritten into the provider's protocol.

`OAuthProvider.authorized(attempt)` runs `attempt(token)` with a token valid for
CRON_NEAR_MINUTES more minutes (refreshing ahead of expiry); when the upstream answers
one of `auth_statuses` it refreshes once (shared with every concurrent caller that saw
the same stale token) and runs `attempt` again. Anything else, including a second
rejection, goes to the relay, which fails over. A credential that cannot be refreshed
raises CredentialError (an auth failure of this instance only).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
from abc import abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

import aiohttp
import orjson

from ..config import Settings
from ..credentials import Credential, CredentialError, RefreshFailed, shared_credential
from ..errors import UpstreamHTTPError, UpstreamProtocolError
from ..http_client import HttpClient
from ..pool.models import ProviderNode
from .base import Provider, UpstreamResponse

__all__ = [
    "OAuthProvider",
    "RewrittenResponse",
    "StreamRewriter",
    "decode_inline",
    "inline_key",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")


def decode_inline(value: str, what: str) -> dict[str, Any]:
    """A base64 JSON object (…_CREDS_BASE64). Raises RefreshFailed."""
    try:
        data = orjson.loads(base64.b64decode(value, validate=False))
    except (binascii.Error, ValueError):
        raise RefreshFailed(f"{what} is not base64-encoded JSON") from None
    if not isinstance(data, dict):
        raise RefreshFailed(f"{what} does not hold a JSON object")
    return data


def inline_key(value: str) -> str:
    return "b64:" + hashlib.sha256(value.encode()).hexdigest()[:32]


class OAuthProvider(Provider):
    """Base for providers whose credential is an expiring OAuth token."""

    auth_statuses: ClassVar[frozenset[int]] = frozenset({401})

    def __init__(
        self,
        node: ProviderNode,
        settings: Settings,
        session: aiohttp.ClientSession,
        http: HttpClient,
    ) -> None:
        super().__init__(node, settings, session, http)
        self._credential: Credential | None = None

    @abstractmethod
    def credential_source(self) -> tuple[tuple[str, str], Callable[[], Credential]]:
        """The registry key of this instance's credential and how to build it."""

    @property
    def credential(self) -> Credential:
        if self._credential is None:
            key, build = self.credential_source()
            self._credential = shared_credential(self.session, key, build)
        return self._credential

    @property
    def margin(self) -> float:
        """Refresh this many seconds before the token expires (CRON_NEAR_MINUTES)."""
        return self.settings.cron_near_minutes * 60.0

    def path_setting(self, key: str) -> Path | None:
        value = self.setting(key)
        return Path(str(value)).expanduser() if value else None

    def file_or_inline(
        self,
        file_key: str,
        inline_key_name: str,
        default_path: str,
        make: Callable[[Path | None, dict[str, Any] | None], Credential],
    ) -> tuple[tuple[str, str], Callable[[], Credential]]:
        """The credential_source of a type read from a file (`file_key`, else
        `default_path`) or from inline base64 JSON (`inline_key_name`)."""
        inline = self.setting(inline_key_name)
        path = self.path_setting(file_key)
        if path is None and not inline:
            path = Path(default_path).expanduser()
        key = (self.type_name, str(path) if path is not None else inline_key(str(inline)))

        def build() -> Credential:
            data = None
            if path is None:
                try:
                    data = decode_inline(str(inline), inline_key_name)
                except RefreshFailed as exc:
                    logger.warning(
                        "%s instance %s: %s", self.type_name, self.node.label, exc
                    )
                    data = {}
            return make(path, data)

        return key, build

    def credential_failure(self, exc: RefreshFailed) -> CredentialError:
        return CredentialError(
            f"{self.type_name} instance {self.node.label}: {exc}",
            self.protocol,
            node_uuid=self.node.uuid,
        )

    async def access_token(self) -> str:
        try:
            return await self.credential.token(self.session, self.margin)
        except RefreshFailed as exc:
            raise self.credential_failure(exc) from None

    async def refresh_credentials(self, *, force: bool = False) -> None:
        """RefreshingProvider: refresh now if forced, else only when near expiry."""
        credential = self.credential
        try:
            if force:
                await credential.load()
                await credential.refresh(self.session, stale=credential.access_token())
            else:
                await credential.token(self.session, self.margin)
        except RefreshFailed as exc:
            raise self.credential_failure(exc) from None

    async def authorized(self, attempt: Callable[[str], Awaitable[T]]) -> T:
        """`attempt(token)`, refreshed and retried once when the token is rejected."""
        token = await self.access_token()
        try:
            return await attempt(token)
        except UpstreamHTTPError as exc:
            if exc.upstream_status not in self.auth_statuses or isinstance(
                exc, CredentialError
            ):
                raise
            logger.info(
                "%s instance %s: the upstream rejected the access token (HTTP %d); "
                "refreshing it once",
                self.type_name,
                self.node.label,
                exc.upstream_status,
            )
        try:
            await self.credential.refresh(self.session, stale=token)
        except RefreshFailed as exc:
            raise self.credential_failure(exc) from None
        return await attempt(await self.access_token())


class StreamRewriter(Protocol):
    """Upstream stream bytes in, the provider protocol's stream bytes out."""

    def feed(self, chunk: bytes) -> bytes: ...
    def close(self) -> bytes: ...


class RewrittenResponse(UpstreamResponse):
    """A 2xx upstream answer presented in the provider's protocol: the whole body goes
    through `rewrite_body`, a stream through a `StreamRewriter` as bytes arrive."""

    __slots__ = ("_content_type", "_rewrite_body", "_rewriter")

    def __init__(
        self,
        up: UpstreamResponse,
        *,
        rewrite_body: Callable[[bytes], bytes] | None = None,
        rewriter: StreamRewriter | None = None,
        content_type: str | None = None,
    ) -> None:
        super().__init__(up._resp, up.node_uuid)
        self._rewrite_body = rewrite_body
        self._rewriter = rewriter
        self._content_type = content_type

    @property
    def content_type(self) -> str:
        return self._content_type or super().content_type

    async def read(self) -> bytes:
        raw = await super().read()
        if self._rewrite_body is None:
            return raw
        try:
            return self._rewrite_body(raw)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise UpstreamProtocolError(
                "the upstream answer could not be read", node_uuid=self.node_uuid
            ) from exc

    async def chunks(self) -> AsyncIterator[bytes]:
        rewriter = self._rewriter
        if rewriter is None:
            async for chunk in super().chunks():
                yield chunk
            return
        try:
            async for chunk in super().chunks():
                out = rewriter.feed(chunk)
                if out:
                    yield out
            tail = rewriter.close()
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise UpstreamProtocolError(
                "the upstream stream could not be read", node_uuid=self.node_uuid
            ) from exc
        if tail:
            yield tail
