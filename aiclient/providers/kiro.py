"""claude-kiro-oauth: Claude models through Kiro (CodeWhisperer) on a Kiro login.

The provider speaks Claude: the Claude body is converted to a generateAssistantResponse
request (protocols/kiro.py) and Kiro's AWS event-stream answer is converted back while
it arrives, so a Claude client gets a real stream. Claude model names map to Kiro model
ids; an unknown name maps to KIRO_DEFAULT_MODEL (default claude-sonnet-4-20250514).

Credentials: KIRO_OAUTH_CREDS_FILE_PATH (default ~/.aws/sso/cache/kiro-auth-token.json)
or KIRO_OAUTH_CREDS_BASE64 (memory only). `authMethod: "social"` refreshes at
KIRO_REFRESH_URL with `{refreshToken}`; anything else (IdC) at KIRO_REFRESH_IDC_URL with
`{refreshToken, clientId, clientSecret, grantType}`. The answer's accessToken,
refreshToken (the old one is kept when none comes back), expiresAt and profileArn are
merged into the file. Kiro rejects an expired token with 403, so 401 and 403 both cause
one refresh and one retry.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from ..credentials import Credential, CredentialError, RefreshFailed
from ..errors import InvalidRequest, UpstreamHTTPError
from ..protocols import ApiProtocol
from ..protocols.errors import render_error
from ..protocols.kiro import KiroStream, kiro_message, kiro_request
from .base import ModelList, UpstreamResponse
from .oauth import OAuthProvider, RewrittenResponse

__all__ = ["KIRO_MODELS", "KiroCredential", "KiroProvider"]

logger = logging.getLogger(__name__)

DEFAULT_CREDS_PATH = "~/.aws/sso/cache/kiro-auth-token.json"
DEFAULT_MODEL = "claude-sonnet-4-20250514"
KIRO_MODELS = {
    "claude-sonnet-4-20250514": "CLAUDE_SONNET_4_20250514_V1_0",
    "claude-3-7-sonnet-20250219": "CLAUDE_3_7_SONNET_20250219_V1_0",
    "amazonq-claude-sonnet-4-20250514": "CLAUDE_SONNET_4_20250514_V1_0",
    "amazonq-claude-3-7-sonnet-20250219": "CLAUDE_3_7_SONNET_20250219_V1_0",
}
_MACHINE = hashlib.sha256(str(uuid.getnode()).encode()).hexdigest()
_KIRO_UA = f"KiroIDE-0.1.25-{_MACHINE}"
_SDK_UA = f"aws-sdk-js/1.0.7 ua/2.1 api/codewhispererstreaming#1.0.7 m/E {_KIRO_UA}"


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


class KiroCredential(Credential):
    kind = "claude-kiro-oauth"

    def __init__(
        self,
        path: Path | None,
        inline: dict[str, Any] | None,
        *,
        refresh_url: str | None,
        refresh_idc_url: str | None,
    ) -> None:
        super().__init__(path, inline)
        self.refresh_url = refresh_url
        self.refresh_idc_url = refresh_idc_url

    @property
    def region(self) -> str:
        return str((self.data or {}).get("region") or "us-east-1")

    @property
    def social(self) -> bool:
        return (self.data or {}).get("authMethod") == "social"

    def access_token(self) -> str | None:
        value = (self.data or {}).get("accessToken")
        return value if isinstance(value, str) and value else None

    def expires_at(self) -> float | None:
        value = (self.data or {}).get("expiresAt")
        if not isinstance(value, str) or not value:
            return None
        try:
            stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
        return stamp.timestamp()

    async def exchange(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        data = self.data or {}
        refresh_token = data.get("refreshToken")
        if not isinstance(refresh_token, str) or not refresh_token:
            raise RefreshFailed("the credentials have no refreshToken: log in again")
        if self.social:
            url = (
                self.refresh_url
                or f"https://prod.{self.region}.auth.desktop.kiro.dev/refreshToken"
            )
            body: dict[str, Any] = {"refreshToken": refresh_token}
        else:
            url = self.refresh_idc_url or f"https://oidc.{self.region}.amazonaws.com/token"
            if not data.get("clientId") or not data.get("clientSecret"):
                raise RefreshFailed("IdC credentials need clientId and clientSecret")
            body = {
                "refreshToken": refresh_token,
                "clientId": data["clientId"],
                "clientSecret": data["clientSecret"],
                "grantType": "refresh_token",
            }
        try:
            async with session.post(url, json=body) as resp:
                raw = await resp.read()
                status = resp.status
        except (TimeoutError, aiohttp.ClientError, OSError):
            raise RefreshFailed("the Kiro token endpoint could not be reached") from None
        try:
            answer = orjson.loads(raw)
        except orjson.JSONDecodeError:
            answer = {}
        answer = answer if isinstance(answer, dict) else {}
        token = answer.get("accessToken")
        if status != 200 or not isinstance(token, str) or not token:
            raise RefreshFailed(
                f"the Kiro token endpoint refused the refresh (HTTP {status})"
            )
        fields: dict[str, Any] = {
            "accessToken": token,
            "refreshToken": answer.get("refreshToken") or refresh_token,
        }
        expires_in = answer.get("expiresIn")
        if isinstance(expires_in, int | float):
            fields["expiresAt"] = _iso(self.clock() + expires_in)
        if isinstance(answer.get("profileArn"), str):
            fields["profileArn"] = answer["profileArn"]
        return fields


class KiroProvider(OAuthProvider):
    type_name = "claude-kiro-oauth"
    protocol = ApiProtocol.CLAUDE
    auth_statuses = frozenset({401, 403})
    static_models = tuple(KIRO_MODELS)

    def credential_source(self) -> tuple[tuple[str, str], Callable[[], Credential]]:
        def make(path: Path | None, data: dict[str, Any] | None) -> Credential:
            return KiroCredential(
                path,
                data,
                refresh_url=self.setting("KIRO_REFRESH_URL") or None,
                refresh_idc_url=self.setting("KIRO_REFRESH_IDC_URL") or None,
            )

        return self.file_or_inline(
            "KIRO_OAUTH_CREDS_FILE_PATH",
            "KIRO_OAUTH_CREDS_BASE64",
            DEFAULT_CREDS_PATH,
            make,
        )

    @property
    def kiro(self) -> KiroCredential:
        credential = self.credential
        assert isinstance(credential, KiroCredential)
        return credential

    def model_id(self, model: str) -> str:
        if model in KIRO_MODELS:
            return KIRO_MODELS[model]
        default = str(self.setting("KIRO_DEFAULT_MODEL") or DEFAULT_MODEL)
        return KIRO_MODELS.get(default, default)

    def url(self, model: str, stream: bool) -> str:
        base = self.setting("KIRO_BASE_URL") or (
            f"https://codewhisperer.{self.kiro.region}.amazonaws.com"
        )
        base = str(base).rstrip("/")
        method = (
            "SendMessageStreaming"
            if model.startswith("amazonq")
            else ("generateAssistantResponse")
        )
        if base.endswith(("/generateAssistantResponse", "/SendMessageStreaming")):
            return base
        return f"{base}/{method}"

    def auth_headers(self, token: str) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "amz-sdk-invocation-id": str(uuid.uuid4()),
            "amz-sdk-request": "attempt=1; max=1",
            "x-amz-user-agent": f"aws-sdk-js/1.0.7 {_KIRO_UA}",
            "User-Agent": _SDK_UA,
            "x-amzn-kiro-agent-mode": "vibe",
        }

    def _kiro_body(self, body: bytes, model: str) -> bytes:
        parsed = orjson.loads(body)
        if not isinstance(parsed, dict):
            raise InvalidRequest("Request body must be a JSON object")
        try:
            request = kiro_request(
                parsed,
                model_id=self.model_id(model),
                profile_arn=(self.kiro.data or {}).get("profileArn")
                if self.kiro.social
                else None,
            )
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None
        return orjson.dumps(request)

    async def send(
        self,
        body: bytes,
        *,
        model: str,
        stream: bool,
        client_headers: Mapping[str, str],
    ) -> UpstreamResponse:
        async def attempt(token: str) -> UpstreamResponse:
            payload = self._kiro_body(body, model)  # after the token: profileArn may change
            return await self._request(
                "POST", self.url(model, stream), payload, self.auth_headers(token)
            )

        try:
            up = await self.authorized(attempt)
        except UpstreamHTTPError as exc:
            if isinstance(exc, CredentialError):
                raise
            raise _as_claude_error(exc) from None
        if stream:
            return RewrittenResponse(
                up, rewriter=KiroStream(model), content_type="text/event-stream"
            )
        return RewrittenResponse(
            up,
            rewrite_body=lambda raw: kiro_message(raw, model),
            content_type="application/json",
        )

    async def list_models(self, client_headers: Mapping[str, str]) -> ModelList:
        await self.access_token()
        return ModelList(list(self.static_models))


def _as_claude_error(exc: UpstreamHTTPError) -> UpstreamHTTPError:
    """Kiro's error body, reshaped as Claude's (it is relayed to Claude clients)."""
    body = render_error(ApiProtocol.CLAUDE, exc).body
    headers = {**exc.headers, "content-type": "application/json"}
    return UpstreamHTTPError(
        exc.upstream_status,
        body,
        headers,
        node_uuid=exc.node_uuid,
        retry_after=exc.retry_after,
    )
