"""Upstream providers, one class per provider type of provider_pools.json."""

from __future__ import annotations

from .base import ModelList, Provider, UpstreamResponse
from .claude import ClaudeProvider
from .gemini import GeminiProvider
from .gemini_cli import GeminiCLIProvider
from .kiro import KiroProvider
from .openai import OpenAIProvider
from .qwen import QwenProvider

__all__ = ["PROVIDERS", "ModelList", "Provider", "UpstreamResponse"]

PROVIDERS: dict[str, type[Provider]] = {
    OpenAIProvider.type_name: OpenAIProvider,
    ClaudeProvider.type_name: ClaudeProvider,
    GeminiProvider.type_name: GeminiProvider,
    GeminiCLIProvider.type_name: GeminiCLIProvider,
    QwenProvider.type_name: QwenProvider,
    KiroProvider.type_name: KiroProvider,
}
