"""The Anthropic Messages codec (request, response and stream halves)."""

from __future__ import annotations

from ...canonical import ChatRequest, ChatResponse
from ..base import JSONObject
from . import request, response
from .stream import ClaudeStreamDecoder, ClaudeStreamEncoder

__all__ = ["CODEC", "ClaudeCodec"]


class ClaudeCodec:
    def request_to_canonical(self, body: JSONObject, *, model: str | None) -> ChatRequest:
        return request.request_to_canonical(body, model=model)

    def request_from_canonical(self, req: ChatRequest) -> JSONObject:
        return request.request_from_canonical(req)

    def response_to_canonical(self, body: JSONObject) -> ChatResponse:
        return response.response_to_canonical(body)

    def response_from_canonical(self, resp: ChatResponse) -> JSONObject:
        return response.response_from_canonical(resp)

    def stream_decoder(self) -> ClaudeStreamDecoder:
        return ClaudeStreamDecoder()

    def stream_encoder(self, req: ChatRequest) -> ClaudeStreamEncoder:
        return ClaudeStreamEncoder(req)


CODEC = ClaudeCodec()
