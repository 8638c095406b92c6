"""How a vendor's opaque signature rides through another vendor's protocol and back.

Signatures are only meaningful to the vendor that issued them, so each crossing is
tagged and recognised on the way back; a foreign signature is never sent upstream.

* To a Claude client, a Gemini thought signature becomes a thinking block's
  `signature` prefixed `gm1:` (Claude clients echo thinking blocks verbatim).
* To a Gemini client, an Anthropic thinking signature (or redacted_thinking data)
  becomes a `thoughtSignature`: base64 of `aic:anthropic:` (or `aic:redacted:`) plus
  the value, since google-genai treats the field as base64 bytes.
* OpenAI has no carrier: signatures are dropped (replayed Gemini calls then get
  Gemini's documented `skip_thought_signature_validator`).
"""

from __future__ import annotations

import base64
import binascii

from ..canonical import Signature

__all__ = [
    "SKIP_SIGNATURE",
    "claude_signature_in",
    "claude_signature_out",
    "gemini_signature_in",
    "gemini_signature_out",
]

SKIP_SIGNATURE = "skip_thought_signature_validator"
_GEMINI_IN_CLAUDE = "gm1:"
_ANTHROPIC_IN_GEMINI = b"aic:anthropic:"
_REDACTED_IN_GEMINI = b"aic:redacted:"


def claude_signature_in(value: object) -> Signature | None:
    if not isinstance(value, str) or not value:
        return None
    if value.startswith(_GEMINI_IN_CLAUDE):
        return Signature("google", value.removeprefix(_GEMINI_IN_CLAUDE))
    return Signature("anthropic", value)


def claude_signature_out(signature: Signature | None) -> str:
    if signature is None:
        return ""
    if signature.vendor == "google":
        return _GEMINI_IN_CLAUDE + signature.value
    return signature.value


def gemini_signature_in(value: object) -> tuple[Signature | None, str | None]:
    """A thoughtSignature as (signature, redacted_thinking data)."""
    if not isinstance(value, str) or not value:
        return None, None
    if value.startswith("YWljO"):  # base64 of "aic:"
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if raw.startswith(_ANTHROPIC_IN_GEMINI):
            return Signature("anthropic", raw[len(_ANTHROPIC_IN_GEMINI) :].decode()), None
        if raw.startswith(_REDACTED_IN_GEMINI):
            return None, raw[len(_REDACTED_IN_GEMINI) :].decode()
    return Signature("google", value), None


def gemini_signature_out(signature: Signature | None, redacted: str | None = None) -> str:
    if redacted is not None:
        return base64.b64encode(_REDACTED_IN_GEMINI + redacted.encode()).decode()
    if signature is None:
        return ""
    if signature.vendor == "anthropic":
        return base64.b64encode(_ANTHROPIC_IN_GEMINI + signature.value.encode()).decode()
    return signature.value
