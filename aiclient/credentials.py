"""OAuth credentials of the OAuth-backed provider types, refreshed single-flight.

One `Credential` per source (a credentials file, or an inline base64 value), shared by
every provider that names it: the registry lives as long as the app's ClientSession, so
a provider rebuilt by a pool reload finds the same credential, its token and its
in-flight refresh. Concurrent requests on an expiring credential share one refresh (one
task, awaited through `asyncio.shield` so a client that goes away cannot cancel it for
the others). A refresh that fails is remembered for `FAILED_REFRESH_HOLD` seconds, so a
dead refresh token costs one token-endpoint call, not one per request.

Before refreshing, a file credential is read again: when another process (the vendor's
CLI, a second proxy) already wrote a fresh token there, that token is adopted instead.
A refreshed credential is written back atomically with the file's mode kept (a new file
is created 0600); an inline credential lives in memory only. Credential files are never
deleted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import aiohttp

from .errors import Unauthorized, UpstreamHTTPError
from .log import register_secrets
from .pool.store import atomic_write
from .protocols import ApiProtocol
from .protocols.errors import render_error
from .tasks import spawn

__all__ = [
    "FAILED_REFRESH_HOLD",
    "Credential",
    "CredentialError",
    "RefreshFailed",
    "RefreshingProvider",
    "shared_credential",
    "write_credentials_file",
]

logger = logging.getLogger(__name__)

FAILED_REFRESH_HOLD = 30.0
_ADOPT_MARGIN = 60.0
_SECRET_FIELDS = (
    "access_token",
    "refresh_token",
    "accessToken",
    "refreshToken",
    "id_token",
)


class CredentialError(UpstreamHTTPError):
    """An instance's credential cannot be loaded or refreshed.

    Counted as an auth failure (HTTP 401) of that instance, so the relay fails over; the
    body is a 401 in the provider's protocol and names no token.
    """

    def __init__(
        self, message: str, protocol: ApiProtocol, *, node_uuid: str | None = None
    ) -> None:
        body = render_error(protocol, Unauthorized(message)).body
        super().__init__(
            401, body, {"content-type": "application/json"}, node_uuid=node_uuid
        )
        self.message = message
        self.args = (message,)


class RefreshFailed(Exception):
    """Raised by `Credential.exchange`; the message is safe to log (no tokens)."""


@runtime_checkable
class RefreshingProvider(Protocol):
    """A provider whose credential expires; the background refresher calls this."""

    async def refresh_credentials(self, *, force: bool = False) -> None: ...


def _read_json_file(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    if not isinstance(data, dict):
        raise ValueError("the top level is not a JSON object")
    return data


def write_credentials_file(path: Path, data: dict[str, Any]) -> None:
    """Replace `path` atomically keeping its mode; a missing file is created 0600 (and
    missing folders 0700). Blocking: call it in a thread."""
    payload = (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode()
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            os.close(fd)
    atomic_write(path, payload)


class Credential(ABC):
    """One OAuth credential. Subclasses read tokens from `data` and do the exchange."""

    kind: ClassVar[str]

    def __init__(
        self,
        path: Path | None,
        inline: dict[str, Any] | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self._inline = inline
        self.clock = clock
        self.data: dict[str, Any] | None = None
        self.refresh_count = 0  # successful exchanges with the token endpoint
        self._inflight: asyncio.Task[str | None] | None = None
        self._failed: tuple[float, str] | None = None
        self._lifetime: float | None = None  # of the last token this process obtained

    @property
    def label(self) -> str:
        return (
            self.path.name if self.path is not None else f"inline {self.kind} credentials"
        )

    # -- what subclasses provide ---------------------------------------------------

    @abstractmethod
    def access_token(self) -> str | None: ...

    @abstractmethod
    def expires_at(self) -> float | None:
        """Epoch seconds; None when the credential does not say."""

    @abstractmethod
    async def exchange(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        """Refresh with the token endpoint; the fields to merge into `data`.

        Raises RefreshFailed with a loggable reason."""

    # -- loading -------------------------------------------------------------------

    async def load(self) -> dict[str, Any]:
        """The credential's fields, read once. Raises RefreshFailed when unreadable."""
        if self.data is None:
            self.data = await self._read()
        return self.data

    async def _read(self) -> dict[str, Any]:
        if self.path is None:
            data = dict(self._inline or {})
        else:
            try:
                data = await asyncio.to_thread(_read_json_file, self.path)
            except FileNotFoundError:
                raise RefreshFailed(
                    f"credentials file {self.path} does not exist"
                ) from None
            except (OSError, ValueError) as exc:
                raise RefreshFailed(
                    f"credentials file {self.path} cannot be read ({type(exc).__name__})"
                ) from None
        register_secrets(data.get(name) for name in _SECRET_FIELDS)
        return data

    def fresh(self, margin: float) -> bool:
        """The access token exists and is valid for more than `margin` seconds (or
        half its lifetime, for tokens that live less than twice `margin`)."""
        expires = self.expires_at()
        if self._lifetime is not None:
            margin = min(margin, self._lifetime / 2)
        return bool(self.access_token()) and (
            expires is None or expires - margin > self.clock()
        )

    # -- the single-flight refresh -------------------------------------------------

    async def token(self, session: aiohttp.ClientSession, margin: float) -> str:
        """An access token valid for `margin` more seconds, refreshing if need be."""
        await self.load()
        if not self.fresh(margin):
            await self.refresh(session, stale=self.access_token())
        token = self.access_token()
        if not token:
            raise RefreshFailed("the refreshed credentials carry no access token")
        return token

    async def refresh(self, session: aiohttp.ClientSession, *, stale: str | None) -> None:
        """Replace the `stale` token, unless another caller already did; concurrent
        callers share one exchange. Raises RefreshFailed."""
        await self.load()
        task = self._inflight
        if task is None:
            if stale is not None and self.access_token() != stale:
                return  # refreshed while this caller was using the old token
            if self._failed is not None and self._failed[0] > self.clock():
                raise RefreshFailed(self._failed[1])
            task = spawn(self._run(session), name=f"refresh {self.kind} {self.label}")
            self._inflight = task
        reason = await asyncio.shield(task)
        if reason is not None:
            raise RefreshFailed(reason)

    async def _run(self, session: aiohttp.ClientSession) -> str | None:
        try:
            if self.path is not None:
                current = await self._read()
                before = self.access_token()
                self.data = current
                if self.access_token() != before and self.fresh(_ADOPT_MARGIN):
                    logger.info("adopted a newer token written to %s", self.label)
                    return None
            fields = await self.exchange(session)
            register_secrets(fields.get(name) for name in _SECRET_FIELDS)
            self.data = {**(self.data or {}), **fields}
            self.refresh_count += 1
            expires = self.expires_at()
            self._lifetime = None if expires is None else max(0.0, expires - self.clock())
            self._failed = None
            logger.info("refreshed %s OAuth credentials %s", self.kind, self.label)
            await self._persist()
            return None
        except RefreshFailed as exc:
            reason = str(exc)
            self._failed = (self.clock() + FAILED_REFRESH_HOLD, reason)
            logger.warning(
                "refreshing %s credentials %s failed: %s", self.kind, self.label, reason
            )
            return reason
        finally:
            self._inflight = None

    async def _persist(self) -> None:
        if self.path is None or self.data is None:
            return
        try:
            await asyncio.to_thread(write_credentials_file, self.path, self.data)
        except OSError as exc:
            logger.warning(
                "could not write the refreshed credentials back to %s (%s); "
                "keeping them in memory",
                self.path,
                exc.strerror or type(exc).__name__,
            )


_REGISTRIES: weakref.WeakKeyDictionary[
    aiohttp.ClientSession, dict[tuple[str, str], Credential]
] = weakref.WeakKeyDictionary()


class SnakeCaseCredential(Credential):
    """Files in the Google / Qwen CLI layout: `access_token`, `refresh_token` and
    `expiry_date` in milliseconds."""

    def access_token(self) -> str | None:
        value = (self.data or {}).get("access_token")
        return value if isinstance(value, str) and value else None

    def expires_at(self) -> float | None:
        value = (self.data or {}).get("expiry_date")
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value) / 1000
        return None

    def refresh_token(self) -> str:
        """The refresh token to exchange. Raises RefreshFailed when there is none."""
        value = (self.data or {}).get("refresh_token")
        if not isinstance(value, str) or not value:
            raise RefreshFailed("the credentials have no refresh_token: log in again")
        return value


def shared_credential(
    session: aiohttp.ClientSession, key: tuple[str, str], build: Callable[[], Credential]
) -> Credential:
    """The credential registered under `key` for this app (its session), built once."""
    registry = _REGISTRIES.setdefault(session, {})
    credential = registry.get(key)
    if credential is None:
        credential = registry[key] = build()
    return credential
