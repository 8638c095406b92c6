"""The OpenAI Chat Completions codec (request, response and stream halves)."""

from __future__ import annotations

from ...canonical import ChatRequest, ChatResponse
from ..base import JSONObject
from . import request, response
from .stream import OpenAIStreamDecoder, OpenAIStreamEncoder

__all__ = ["CODEC", "OpenAICodec"]


class OpenAICodec:
    def request_to_canonical(self, body: JSONObject, *, model: str | None) -> ChatRequest:
        return request.request_to_canonical(body, model=model)

    def request_from_canonical(self, req: ChatRequest) -> JSONObject:
        return request.request_from_canonical(req)

    def response_to_canonical(self, body: JSONObject) -> ChatResponse:
        return response.response_to_canonical(body)

    def response_from_canonical(self, resp: ChatResponse) -> JSONObject:
        return response.response_from_canonical(resp)

    def stream_decoder(self) -> OpenAIStreamDecoder:
        return OpenAIStreamDecoder()

    def stream_encoder(self, req: ChatRequest) -> OpenAIStreamEncoder:
        return OpenAIStreamEncoder(req)


CODEC = OpenAICodec()
