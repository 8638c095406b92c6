"""The Gemini generateContent codec (request, response and stream halves)."""

from __future__ import annotations

from ..base import FunctionCodec
from . import request, response
from .stream import GeminiStreamDecoder, GeminiStreamEncoder

__all__ = ["CODEC"]

CODEC = FunctionCodec(
    request.request_to_canonical,
    request.request_from_canonical,
    response.response_to_canonical,
    response.response_from_canonical,
    GeminiStreamDecoder,
    GeminiStreamEncoder,
    plain_in=request.plain_request_in,
    plain_out=request.plain_request_out,
    plain_answer_in=response.plain_response_in,
    plain_answer_out=response.plain_response_out,
)
