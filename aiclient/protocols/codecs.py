"""The codec of each protocol (a literal registry)."""

from __future__ import annotations

from . import ApiProtocol
from .base import Codec
from .claude import CODEC as CLAUDE
from .gemini import CODEC as GEMINI
from .openai import CODEC as OPENAI

__all__ = ["CODECS"]

CODECS: dict[ApiProtocol, Codec] = {
    ApiProtocol.OPENAI: OPENAI,
    ApiProtocol.CLAUDE: CLAUDE,
    ApiProtocol.GEMINI: GEMINI,
}
