"""Wire protocols (OpenAI Chat Completions, Anthropic Messages, Gemini generateContent).

Pure, sans-I/O code only: no aiohttp, no files, no clock.
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
