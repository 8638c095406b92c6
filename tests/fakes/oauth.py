"""Fake OAuth token endpoints for the OAuth-backed provider types, on 127.0.0.1.

One server, four endpoints, built from the documented wire formats
(aiclient-2-api.md §5.3-5.5, protocols.md §6.4):

* `POST /token` — Google: form `grant_type=refresh_token, refresh_token, client_id,
  client_secret` → `{access_token, expires_in, scope, token_type}` (no new
  refresh_token, as Google does);
* `POST /api/v1/oauth2/token` — Qwen: form `grant_type, refresh_token, client_id` →
  `{access_token, token_type, refresh_token, resource_url?, expires_in}`;
* `POST /refreshToken` — Kiro social: JSON `{refreshToken}` →
  `{accessToken, refreshToken, profileArn, expiresIn}`;
* `POST /idc/token` — AWS SSO OIDC (Kiro IdC): JSON `{refreshToken, clientId,
  clientSecret, grantType}` → `{accessToken, refreshToken, expiresIn}`.

Every access token issued is added to `access_tokens`, the set the fake upstreams
accept; `revoke(token)` makes an upstream answer it with 401/403. `fail_next(status)`
makes the next refresh fail; `delay` holds each answer back (so concurrent callers
really overlap).
"""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter, deque
from typing import Any

from aiohttp import web

from aiclient.providers.gemini_cli import GEMINI_CLI_CLIENT_ID, GEMINI_CLI_CLIENT_SECRET

from .upstream import FakeUpstream

__all__ = ["FakeOAuth"]

GOOGLE_CLIENT_ID = GEMINI_CLI_CLIENT_ID
QWEN_CLIENT_ID = "f0304373b74a44d2b584a3fb70ca9e56"


class FakeOAuth(FakeUpstream):
    name = "OAuth"

    def __init__(self) -> None:
        super().__init__()
        self.access_tokens: set[str] = set()
        self.refresh_tokens: set[str] = set()
        self.refreshes: Counter[str] = Counter()  # by endpoint: google/qwen/social/idc
        self.expires_in = 3600
        self.delay = 0.0
        self.rotate = True  # Qwen and Kiro hand out a new refresh token each time
        self.qwen_resource_url: str | None = None
        self.google_client_secret = GEMINI_CLI_CLIENT_SECRET
        self._failures: deque[int] = deque()
        router = self.app.router
        router.add_post("/token", self.google)
        router.add_post("/api/v1/oauth2/token", self.qwen)
        router.add_post("/refreshToken", self.kiro_social)
        router.add_post("/idc/token", self.kiro_idc)

    # -- helpers for tests ---------------------------------------------------------

    def issue_refresh_token(self) -> str:
        token = "rt-" + secrets.token_hex(8)
        self.refresh_tokens.add(token)
        return token

    def issue_access_token(self) -> str:
        token = "at-" + secrets.token_hex(8)
        self.access_tokens.add(token)
        return token

    def revoke(self, token: str) -> None:
        self.access_tokens.discard(token)

    def fail_next(self, status: int = 400, count: int = 1) -> None:
        self._failures.extend([status] * count)

    @property
    def total_refreshes(self) -> int:
        return sum(self.refreshes.values())

    # -- endpoints -----------------------------------------------------------------

    async def _begin(self, request: web.Request) -> tuple[dict[str, Any], int]:
        if request.content_type == "application/json":
            body: dict[str, Any] = await request.json()
        else:
            body = dict(await request.post())
        self.hits += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        status = self._failures.popleft() if self._failures else 200
        return body, status

    def _refresh_ok(self, token: Any) -> bool:
        return isinstance(token, str) and token in self.refresh_tokens

    def _rotate(self, old: str) -> str:
        if not self.rotate:
            return old
        self.refresh_tokens.discard(old)
        return self.issue_refresh_token()

    async def google(self, request: web.Request) -> web.Response:
        body, status = await self._begin(request)
        bad = (
            status != 200
            or body.get("grant_type") != "refresh_token"
            or body.get("client_id") != GOOGLE_CLIENT_ID
            or body.get("client_secret") != self.google_client_secret
            or not self._refresh_ok(body.get("refresh_token"))
        )
        if bad:
            return web.json_response(
                {"error": "invalid_grant", "error_description": "Bad Request"},
                status=status if status != 200 else 400,
            )
        self.refreshes["google"] += 1
        return web.json_response(
            {
                "access_token": self.issue_access_token(),
                "expires_in": self.expires_in,
                "scope": "https://www.googleapis.com/auth/cloud-platform",
                "token_type": "Bearer",
            }
        )

    async def qwen(self, request: web.Request) -> web.Response:
        body, status = await self._begin(request)
        old = body.get("refresh_token")
        bad = (
            status != 200
            or body.get("grant_type") != "refresh_token"
            or body.get("client_id") != QWEN_CLIENT_ID
            or not self._refresh_ok(old)
        )
        if bad:
            return web.json_response(
                {"error": "invalid_request", "error_description": "invalid refresh token"},
                status=status if status != 200 else 400,
            )
        self.refreshes["qwen"] += 1
        answer: dict[str, Any] = {
            "access_token": self.issue_access_token(),
            "token_type": "Bearer",
            "refresh_token": self._rotate(str(old)),
            "expires_in": self.expires_in,
        }
        if self.qwen_resource_url is not None:
            answer["resource_url"] = self.qwen_resource_url
        return web.json_response(answer)

    async def kiro_social(self, request: web.Request) -> web.Response:
        body, status = await self._begin(request)
        old = body.get("refreshToken")
        if status != 200 or not self._refresh_ok(old):
            return web.json_response(
                {"message": "Invalid refresh token"},
                status=status if status != 200 else 401,
            )
        self.refreshes["social"] += 1
        return web.json_response(
            {
                "accessToken": self.issue_access_token(),
                "refreshToken": self._rotate(str(old)),
                "profileArn": "arn:aws:codewhisperer:us-east-1:123456789012:profile/FAKE",
                "expiresIn": self.expires_in,
            }
        )

    async def kiro_idc(self, request: web.Request) -> web.Response:
        body, status = await self._begin(request)
        old = body.get("refreshToken")
        bad = (
            status != 200
            or body.get("grantType") != "refresh_token"
            or not body.get("clientId")
            or not body.get("clientSecret")
            or not self._refresh_ok(old)
        )
        if bad:
            return web.json_response(
                {"error": "invalid_grant", "error_description": "Invalid refresh token"},
                status=status if status != 200 else 400,
            )
        self.refreshes["idc"] += 1
        return web.json_response(
            {
                "accessToken": self.issue_access_token(),
                "refreshToken": self._rotate(str(old)),
                "expiresIn": self.expires_in,
                "tokenType": "Bearer",
            }
        )
