"""Logging set-up, with redaction of every configured secret as a last line of defence.

The code never logs credentials on purpose (instances are named by uuid or customName,
URLs without their query); the formatter also scrubs every registered secret from every
line and traceback it renders.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

__all__ = [
    "RedactingFormatter",
    "redact",
    "redact_bytes",
    "register_secrets",
    "secrets",
    "setup_logging",
]

_SECRETS: set[str] = set()
_MIN_SECRET_LENGTH = 4


def register_secrets(values: Iterable[object]) -> None:
    """Add values that must never appear in a log line."""
    for value in values:
        if isinstance(value, str) and len(value) >= _MIN_SECRET_LENGTH:
            _SECRETS.add(value)


def redact(text: str) -> str:
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, "***")
    return text


def redact_bytes(data: bytes) -> bytes:
    """`redact` for a body about to leave the server (an upstream's error, say)."""
    for secret in _SECRETS:
        raw = secret.encode()
        if raw in data:
            data = data.replace(raw, b"***")
    return data


def secrets() -> frozenset[str]:
    return frozenset(_SECRETS)


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        RedactingFormatter("%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("aiclient").setLevel(level.upper())
