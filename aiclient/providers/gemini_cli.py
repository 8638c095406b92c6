"""gemini-cli-oauth: Gemini through Google's Code Assist API on a Gemini CLI login.

The provider speaks Gemini: a Gemini request is wrapped in the Code Assist envelope
(`{model, project, request}`) and every answer is unwrapped from `{"response": ...}`,
the whole body or SSE event by SSE event, so a Gemini client gets plain Gemini and the
other clients go through the usual codecs. The access token is refreshed with
google-auth (in a thread: it is blocking) against GEMINI_OAUTH_TOKEN_URL. The project
is PROJECT_ID, else discovered once per credential with loadCodeAssist / onboardUser.

For this type GEMINI_BASE_URL is the Code Assist endpoint (default
https://cloudcode-pa.googleapis.com); for gemini-custom it is the Gemini API's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import UTC
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from ..credentials import Credential, RefreshFailed, SnakeCaseCredential
from ..errors import UpstreamProtocolError
from ..protocols import ApiProtocol
from ..sse import SSEDecoder
from .base import ModelList, UpstreamResponse
from .oauth import OAuthProvider, RewrittenResponse

__all__ = ["GeminiCLIProvider", "GoogleCredential"]

logger = logging.getLogger(__name__)

DEFAULT_CODE_ASSIST_URL = "https://cloudcode-pa.googleapis.com"
API_VERSION = "v1internal"
DEFAULT_TOKEN_URL = "https://oauth2.googleapis.com/token"
DEFAULT_CREDS_PATH = "~/.gemini/oauth_creds.json"
# The public installed-app client of Google's open-source Gemini CLI (not confidential
# by Google's own rules for installed apps); overridable in config.json.
GEMINI_CLI_CLIENT_ID = (
    "681255809395-oo8ft2oprdrnp9e3aqf6av3hmdib135j.apps.googleusercontent.com"
)
GEMINI_CLI_CLIENT_SECRET = "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"
USER_AGENT = "GeminiCLI/0.1.0 (aiclient)"
_METADATA = {
    "ideType": "IDE_UNSPECIFIED",
    "platform": "PLATFORM_UNSPECIFIED",
    "pluginType": "GEMINI",
}
ONBOARD_POLLS = 30
ONBOARD_POLL_SECONDS = 2.0


def _google_refresh(
    refresh_token: str, token_url: str, client_id: str, client_secret: str
) -> dict[str, Any]:
    """One refresh with google-auth. Blocking (requests): run it in a thread."""
    from google.auth import exceptions
    from google.auth.transport.requests import Request
    from google.oauth2.credentials import Credentials

    creds = Credentials(  # type: ignore[no-untyped-call]
        token=None,
        refresh_token=refresh_token,
        token_uri=token_url,
        client_id=client_id,
        client_secret=client_secret,
    )
    try:
        creds.refresh(Request())  # type: ignore[no-untyped-call]
    except exceptions.RefreshError as exc:
        detail = exc.args[0] if exc.args and isinstance(exc.args[0], str) else "refused"
        raise RefreshFailed(
            f"the Google token endpoint refused the refresh ({detail})"
        ) from None
    except exceptions.TransportError:
        raise RefreshFailed("the Google token endpoint could not be reached") from None
    fields: dict[str, Any] = {"access_token": creds.token, "token_type": "Bearer"}
    if creds.expiry is not None:
        fields["expiry_date"] = int(creds.expiry.replace(tzinfo=UTC).timestamp() * 1000)
    if creds.refresh_token:
        fields["refresh_token"] = creds.refresh_token
    if creds.id_token:
        fields["id_token"] = creds.id_token
    return fields


class GoogleCredential(SnakeCaseCredential):
    """google-auth-library's oauth_creds.json: access_token, refresh_token, expiry_date
    (ms since the epoch), scope, token_type, id_token."""

    kind = "gemini-cli-oauth"

    def __init__(
        self,
        path: Path | None,
        inline: dict[str, Any] | None,
        *,
        token_url: str,
        client_id: str,
        client_secret: str,
    ) -> None:
        super().__init__(path, inline)
        self.token_url = token_url
        self.client_id = client_id
        self.client_secret = client_secret
        self.project: str | None = None  # discovered once, shared by its providers
        self.project_lock = asyncio.Lock()

    async def exchange(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        return await asyncio.to_thread(
            _google_refresh,
            self.refresh_token(),
            self.token_url,
            self.client_id,
            self.client_secret,
        )


def _fill_roles(request: dict[str, Any]) -> dict[str, Any]:
    """Code Assist wants camelCase systemInstruction and a role on every content."""
    if "system_instruction" in request and "systemInstruction" not in request:
        request["systemInstruction"] = request.pop("system_instruction")
    system = request.get("systemInstruction")
    if isinstance(system, dict):
        system.setdefault("role", "user")
    contents = request.get("contents")
    if isinstance(contents, list):
        previous = None
        for content in contents:
            if isinstance(content, dict):
                if not content.get("role"):
                    content["role"] = "model" if previous == "user" else "user"
                previous = content["role"]
    return request


def unwrap_body(raw: bytes) -> bytes:
    """`{"response": {...}}` -> `{...}`; anything else is returned as it is."""
    data = orjson.loads(raw)
    if isinstance(data, dict) and isinstance(data.get("response"), dict):
        return orjson.dumps(data["response"])
    if isinstance(data, dict) and "error" in data:
        return raw
    raise ValueError("not a Code Assist answer")


class EnvelopeStream:
    """Code Assist SSE in, Gemini SSE out: one event out per event in."""

    __slots__ = ("_decoder",)

    def __init__(self) -> None:
        self._decoder = SSEDecoder()

    def _emit(self, events: list[Any]) -> bytes:
        out = bytearray()
        for event in events:
            data = event.data.strip()
            if not data:
                continue
            parsed = orjson.loads(data)
            if isinstance(parsed, dict) and isinstance(parsed.get("response"), dict):
                out += b"data: " + orjson.dumps(parsed["response"]) + b"\r\n\r\n"
            else:  # an in-band error, relayed as Gemini sends it
                out += b"data: " + orjson.dumps(parsed) + b"\r\n\r\n"
        return bytes(out)

    def feed(self, chunk: bytes) -> bytes:
        return self._emit(self._decoder.feed(chunk))

    def close(self) -> bytes:
        return self._emit(self._decoder.close())


class GeminiCLIProvider(OAuthProvider):
    type_name = "gemini-cli-oauth"
    protocol = ApiProtocol.GEMINI
    static_models = (
        "gemini-2.5-pro",
        "gemini-2.5-flash",
        "gemini-2.5-flash-lite",
        "gemini-2.5-pro-preview-06-05",
    )

    def credential_source(self) -> tuple[tuple[str, str], Callable[[], Credential]]:
        def make(path: Path | None, data: dict[str, Any] | None) -> Credential:
            return GoogleCredential(
                path,
                data,
                token_url=str(self.setting("GEMINI_OAUTH_TOKEN_URL") or DEFAULT_TOKEN_URL),
                client_id=str(
                    self.setting("GEMINI_OAUTH_CLIENT_ID") or GEMINI_CLI_CLIENT_ID
                ),
                client_secret=str(
                    self.setting("GEMINI_OAUTH_CLIENT_SECRET") or GEMINI_CLI_CLIENT_SECRET
                ),
            )

        return self.file_or_inline(
            "GEMINI_OAUTH_CREDS_FILE_PATH",
            "GEMINI_OAUTH_CREDS_BASE64",
            DEFAULT_CREDS_PATH,
            make,
        )

    @property
    def google(self) -> GoogleCredential:
        credential = self.credential
        assert isinstance(credential, GoogleCredential)
        return credential

    def method_url(self, method: str) -> str:
        base = str(self.setting("GEMINI_BASE_URL") or DEFAULT_CODE_ASSIST_URL).rstrip("/")
        if not base.endswith(API_VERSION):
            base += "/" + API_VERSION
        return f"{base}:{method}"

    def auth_headers(self, token: str) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
        }

    async def _post_json(self, method: str, body: dict[str, Any], token: str) -> Any:
        up = await self._request(
            "POST", self.method_url(method), orjson.dumps(body), self.auth_headers(token)
        )
        return self._parse(await up.read(), method)

    def _parse(self, raw: bytes, what: str) -> Any:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError(
                f"Code Assist answered {what} with something that is not JSON",
                node_uuid=self.node.uuid,
            ) from None

    # -- project discovery -------------------------------------------------------------

    async def project(self, token: str) -> str:
        configured = self.setting("PROJECT_ID")
        if configured:
            return str(configured)
        google = self.google
        async with google.project_lock:
            if google.project is None:
                google.project = await self._discover(token)
                logger.info(
                    "%s instance %s: using Code Assist project %s",
                    self.type_name,
                    self.node.label,
                    google.project,
                )
            return google.project

    async def _discover(self, token: str) -> str:
        loaded = await self._post_json("loadCodeAssist", {"metadata": _METADATA}, token)
        if not isinstance(loaded, dict):
            raise self._no_project("loadCodeAssist answered with something unexpected")
        project = _project_id(loaded.get("cloudaicompanionProject"))
        if loaded.get("currentTier") and project:
            return project
        tier = next(
            (
                t.get("id")
                for t in loaded.get("allowedTiers") or ()
                if isinstance(t, dict) and t.get("isDefault")
            ),
            None,
        )
        tier = str(tier or "legacy-tier")
        onboard: dict[str, Any] = {"tierId": tier, "metadata": dict(_METADATA)}
        if tier != "free-tier" and project:
            onboard["cloudaicompanionProject"] = project
            onboard["metadata"]["duetProject"] = project
        for poll in range(ONBOARD_POLLS):
            if poll:
                await asyncio.sleep(ONBOARD_POLL_SECONDS)
            operation = await self._post_json("onboardUser", onboard, token)
            if isinstance(operation, dict) and operation.get("done"):
                response = operation.get("response") or {}
                found = _project_id(response.get("cloudaicompanionProject"))
                if found:
                    return found
                raise self._no_project("onboardUser finished without a project")
        raise self._no_project("onboardUser did not finish")

    def _no_project(self, why: str) -> UpstreamProtocolError:
        return UpstreamProtocolError(
            f"could not discover a Google Cloud project ({why}); set PROJECT_ID",
            node_uuid=self.node.uuid,
        )

    # -- requests ----------------------------------------------------------------------

    def _envelope(self, body: bytes, model: str, project: str) -> bytes:
        request = orjson.loads(body)
        if not isinstance(request, dict):
            raise TypeError("a Gemini request is a JSON object")
        request.pop("model", None)
        return orjson.dumps(
            {
                "model": model.removeprefix("models/"),
                "project": project,
                "request": _fill_roles(request),
            }
        )

    async def send(
        self,
        body: bytes,
        *,
        model: str,
        stream: bool,
        client_headers: Mapping[str, str],
    ) -> UpstreamResponse:
        method = "streamGenerateContent" if stream else "generateContent"
        url = self.method_url(method) + ("?alt=sse" if stream else "")

        async def attempt(token: str) -> UpstreamResponse:
            project = await self.project(token)
            payload = self._envelope(body, model, project)
            return await self._request("POST", url, payload, self.auth_headers(token))

        up = await self.authorized(attempt)
        if stream:
            return RewrittenResponse(up, rewriter=EnvelopeStream())
        return RewrittenResponse(up, rewrite_body=unwrap_body)

    async def count_tokens(
        self, body: bytes, *, model: str, client_headers: Mapping[str, str]
    ) -> UpstreamResponse:
        parsed = orjson.loads(body)
        inner = parsed.get("generateContentRequest", parsed)
        request = {
            "model": "models/" + model.removeprefix("models/"),
            "contents": _fill_roles({"contents": inner.get("contents") or []})["contents"],
        }
        payload = orjson.dumps({"request": request})
        url = self.method_url("countTokens")

        async def attempt(token: str) -> UpstreamResponse:
            return await self._request("POST", url, payload, self.auth_headers(token))

        return await self.authorized(attempt)

    async def list_models(self, client_headers: Mapping[str, str]) -> ModelList:
        # Code Assist has no model list; a usable credential is still required.
        await self.access_token()
        return ModelList(list(self.static_models))


def _project_id(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value and value != "default" else None
