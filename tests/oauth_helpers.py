"""Credential files and pool instances for the OAuth-backed provider types' tests."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.fakes.oauth import FakeOAuth

HOUR_MS = 3_600_000


def write_json(path: Path, data: dict[str, Any], mode: int = 0o600) -> Path:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    path.chmod(mode)
    return path


def read_json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def google_creds(
    path: Path, oauth: FakeOAuth, *, expired: bool = True, mode: int = 0o600
) -> Path:
    """An oauth_creds.json as the Gemini CLI writes it."""
    now_ms = int(time.time() * 1000)
    return write_json(
        path,
        {
            "access_token": "at-stale" if expired else oauth.issue_access_token(),
            "refresh_token": oauth.issue_refresh_token(),
            "scope": "https://www.googleapis.com/auth/cloud-platform",
            "token_type": "Bearer",
            "expiry_date": now_ms - 1000 if expired else now_ms + HOUR_MS,
        },
        mode,
    )


def qwen_creds(
    path: Path,
    oauth: FakeOAuth,
    *,
    expired: bool = True,
    resource_url: str | None = None,
    mode: int = 0o600,
) -> Path:
    now_ms = int(time.time() * 1000)
    data: dict[str, Any] = {
        "access_token": "at-stale" if expired else oauth.issue_access_token(),
        "refresh_token": oauth.issue_refresh_token(),
        "token_type": "Bearer",
        "expiry_date": now_ms - 1000 if expired else now_ms + HOUR_MS,
    }
    if resource_url is not None:
        data["resource_url"] = resource_url
    return write_json(path, data, mode)


def kiro_creds(
    path: Path,
    oauth: FakeOAuth,
    *,
    expired: bool = True,
    method: str = "social",
    mode: int = 0o600,
) -> Path:
    expires = time.time() + (-60 if expired else 3600)
    data: dict[str, Any] = {
        "accessToken": "at-stale" if expired else oauth.issue_access_token(),
        "refreshToken": oauth.issue_refresh_token(),
        "expiresAt": datetime.fromtimestamp(expires, UTC)
        .isoformat()
        .replace("+00:00", "Z"),
        "authMethod": method,
        "region": "us-east-1",
    }
    if method == "social":
        data["profileArn"] = "arn:aws:codewhisperer:us-east-1:123456789012:profile/FAKE"
    else:
        data["clientId"] = "idc-client"
        data["clientSecret"] = "idc-client-secret"
    return write_json(path, data, mode)
