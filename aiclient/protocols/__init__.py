"""Wire protocols (OpenAI Chat Completions, Anthropic Messages, Gemini generateContent).

Pure, sans-I/O code only: no aiohttp, no files. (The one clock read is OpenAI's
`created` timestamp, which has no source in the other protocols.)

Layout: base.py (codec interfaces, shared helpers), history.py (the turn rules of the
strict targets), signatures.py (carrying signatures across vendors), one package per
protocol (request / response / stream halves), codecs.py (the registry), errors.py and
models.py (error bodies and model lists in each protocol's shape).
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["ApiProtocol", "protocol_of"]


class ApiProtocol(StrEnum):
    OPENAI = "openai"
    CLAUDE = "claude"
    GEMINI = "gemini"


def protocol_of(provider_type: str) -> ApiProtocol:
    """The protocol a provider type speaks: the text before its first '-'.

    Raises ValueError for a type whose prefix is not a protocol.
    """
    return ApiProtocol(provider_type.split("-", 1)[0])
