"""openai-qwen-oauth: Qwen's OpenAI-compatible API on a Qwen Code login.

The credentials file (`~/.qwen/oauth_creds.json` by default) holds access_token,
refresh_token, token_type, resource_url and expiry_date (ms since the epoch). A refresh
is a form POST to `{QWEN_OAUTH_BASE_URL}/api/v1/oauth2/token`; the answer's tokens,
expiry and resource_url are written back atomically (the old refresh_token is kept when
none comes back). The API base is the credentials' resource_url when present (a bare
host gets `https://` and `/v1`), else QWEN_BASE_URL. Unlike the original, a refused
refresh never deletes the credentials file: the instance fails over until a new login.
Requests go up as they came (no model substitution, no dummy tool).
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from ..credentials import Credential, RefreshFailed, SnakeCaseCredential
from ..protocols import ApiProtocol
from .base import UpstreamResponse, base_url
from .oauth import OAuthProvider

__all__ = ["QwenCredential", "QwenProvider", "normalise_resource_url"]

DEFAULT_BASE_URL = "https://portal.qwen.ai/v1"
DEFAULT_OAUTH_BASE_URL = "https://chat.qwen.ai"
DEFAULT_CREDS_PATH = "~/.qwen/oauth_creds.json"
TOKEN_PATH = "/api/v1/oauth2/token"
# The public client id of Qwen Code's device-flow login; overridable in config.json.
QWEN_CODE_CLIENT_ID = "f0304373b74a44d2b584a3fb70ca9e56"
_DASHSCOPE_UA = f"QwenCode/0.0.9 ({platform.system().lower()}; {platform.machine()})"


def normalise_resource_url(value: str) -> str:
    """`portal.qwen.ai` -> `https://portal.qwen.ai/v1`; a full URL keeps its scheme."""
    url = value.strip().rstrip("/")
    if "://" not in url:
        url = "https://" + url
    if not url.endswith("/v1"):
        url += "/v1"
    return url


class QwenCredential(SnakeCaseCredential):
    kind = "openai-qwen-oauth"

    def __init__(self, path: Path, *, token_url: str, client_id: str) -> None:
        super().__init__(path)
        self.token_url = token_url
        self.client_id = client_id

    async def exchange(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        refresh_token = self.refresh_token()
        form = {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": self.client_id,
        }
        try:
            async with session.post(
                self.token_url, data=form, headers={"Accept": "application/json"}
            ) as resp:
                raw = await resp.read()
                status = resp.status
        except (TimeoutError, aiohttp.ClientError, OSError):
            raise RefreshFailed("the Qwen token endpoint could not be reached") from None
        answer = _json_object(raw)
        token = answer.get("access_token")
        if status != 200 or not isinstance(token, str) or not token:
            error = answer.get("error") or "no access_token"
            raise RefreshFailed(
                f"the Qwen token endpoint refused the refresh (HTTP {status}, {error})"
            )
        fields: dict[str, Any] = {
            "access_token": token,
            "token_type": answer.get("token_type") or "Bearer",
            "refresh_token": answer.get("refresh_token") or refresh_token,
        }
        expires_in = answer.get("expires_in")
        if isinstance(expires_in, int | float):
            fields["expiry_date"] = int((self.clock() + expires_in) * 1000)
        if isinstance(answer.get("resource_url"), str) and answer["resource_url"]:
            fields["resource_url"] = answer["resource_url"]
        return fields


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


class QwenProvider(OAuthProvider):
    type_name = "openai-qwen-oauth"
    protocol = ApiProtocol.OPENAI
    auth_statuses = frozenset({401, 403})
    static_models = ("qwen3-coder-plus", "qwen3-coder-flash")

    def credential_source(self) -> tuple[tuple[str, str], Callable[[], Credential]]:
        path = (
            self.path_setting("QWEN_OAUTH_CREDS_FILE_PATH")
            or Path(DEFAULT_CREDS_PATH).expanduser()
        )
        oauth_base = str(self.setting("QWEN_OAUTH_BASE_URL") or DEFAULT_OAUTH_BASE_URL)

        def build() -> Credential:
            return QwenCredential(
                path,
                token_url=oauth_base.rstrip("/") + TOKEN_PATH,
                client_id=str(self.setting("QWEN_OAUTH_CLIENT_ID") or QWEN_CODE_CLIENT_ID),
            )

        return (self.type_name, str(path)), build

    @property
    def base(self) -> str:
        resource = (self.credential.data or {}).get("resource_url")
        if isinstance(resource, str) and resource.strip():
            return normalise_resource_url(resource)
        return base_url(self.setting("QWEN_BASE_URL"), DEFAULT_BASE_URL)

    def auth_headers(self, token: str) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "X-DashScope-CacheControl": "enable",
            "X-DashScope-UserAgent": _DASHSCOPE_UA,
            "X-DashScope-AuthType": "qwen-oauth",
        }

    async def send(
        self,
        body: bytes,
        *,
        model: str,
        stream: bool,
        client_headers: Mapping[str, str],
    ) -> UpstreamResponse:
        async def attempt(token: str) -> UpstreamResponse:
            url = self.base + "/chat/completions"  # after the token: it may move the base
            return await self._request("POST", url, body, self.auth_headers(token))

        return await self.authorized(attempt)
