"""Anthropic Messages event streams <-> canonical events (protocols.md §4.4, §8.5, §10.5).

Decoder: dispatches on the event type; usage is cumulative (message_start's input
counts, message_delta's output counts); an `error` event raises; a stream that ends
before `message_stop` is an error.

Encoder: message_start first (with the client's model and the usage known so far), then
blocks numbered 0, 1, 2... in order: a block opens when a part of another kind starts
and closes before the next one; a thinking block gets its signature_delta right before
its stop (a Gemini signature riding on the following tool call is put there, or in an
empty thinking block of its own). message_delta carries the stop reason and the final
usage, then message_stop. Argument fragments for a tool call whose block is already
closed (parallel calls interleaved by an OpenAI-compatible upstream) cannot be expressed
and end the stream with an error rather than a corrupted call.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from ...canonical import (
    MessageStart,
    MessageStop,
    ReasoningDelta,
    ReasoningSignature,
    Signature,
    StopReason,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    Usage,
)
from ...errors import UpstreamProtocolError
from ...sse import SSEEvent
from ..base import EncoderFacts, JSONObject, dumps, error_event
from ..signatures import claude_signature_in, claude_signature_out
from .request import sanitise_id
from .response import (
    claude_stop_reason,
    message_id,
    stop_reason,
    usage_from_canonical,
    usage_to_canonical,
)

__all__ = ["ClaudeStreamDecoder", "ClaudeStreamEncoder"]

_ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


class ClaudeStreamDecoder:
    def __init__(self) -> None:
        self._usage: Usage | None = None
        self._stop: Any = None
        self._sequence: str | None = None
        self._tools: dict[int, int] = {}  # block index -> tool position
        self._done = False

    def feed(self, event: SSEEvent) -> Iterable[StreamEvent]:
        data = self._parse(event)
        return self._events(data, event) if data is not None else []

    def feed_text(self, event: SSEEvent) -> str | Iterable[StreamEvent]:
        """`feed`, except that a text delta (most of a stream) comes back as the text
        itself: the pipeline's fast path. It keeps nothing of a text delta, so the
        pipeline may skip it for one that differs only in its text (templates)."""
        try:
            data = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            data = None
        if data.__class__ is not dict:
            return self.feed(event)  # not an object: `feed` says what it is
        if (data.get("type") or event.event) == "content_block_delta":
            delta = data.get("delta")
            if delta.__class__ is dict and delta.get("type") == "text_delta":
                text = delta.get("text")
                if text.__class__ is str and text:
                    return text
        return self._events(data, event)

    @staticmethod
    def _parse(event: SSEEvent) -> JSONObject | None:
        try:
            data = orjson.loads(event.data)
        except orjson.JSONDecodeError as exc:
            raise UpstreamProtocolError(
                "the upstream sent an event that is not JSON"
            ) from exc
        return data if isinstance(data, dict) else None

    def _events(self, data: JSONObject, event: SSEEvent) -> list[StreamEvent]:
        kind = data.get("type") or event.event
        if kind == "message_start":
            message = data.get("message") or {}
            self._usage = usage_to_canonical(message.get("usage"))
            return [
                MessageStart(
                    str(message.get("id") or ""),
                    str(message.get("model") or ""),
                    self._usage,
                )
            ]
        if kind == "content_block_start":
            return self._block_start(data)
        if kind == "content_block_delta":
            return self._delta(data)
        if kind == "message_delta":
            delta = data.get("delta") or {}
            self._stop = delta.get("stop_reason") or self._stop
            sequence = delta.get("stop_sequence")
            self._sequence = sequence if isinstance(sequence, str) else self._sequence
            self._usage = usage_to_canonical(data.get("usage"), self._usage)
            return []
        if kind == "message_stop":
            self._done = True
            reason = stop_reason(self._stop, bool(self._tools))
            return [MessageStop(reason, self._usage, self._sequence)]
        if kind == "error":
            error = data.get("error") or {}
            raise error_event(_ERROR_STATUS.get(str(error.get("type")), 500), data)
        return []  # ping, content_block_stop, unknown future events

    def _block_start(self, data: JSONObject) -> list[StreamEvent]:
        block = data.get("content_block") or {}
        kind = block.get("type")
        if kind == "text" and block.get("text"):
            return [TextDelta(str(block["text"]))]
        if kind == "thinking" and block.get("thinking"):
            return [ReasoningDelta(str(block["thinking"]))]
        if kind == "redacted_thinking":
            return [ReasoningSignature(redacted=str(block.get("data") or ""))]
        if kind == "tool_use":
            position = len(self._tools)
            self._tools[int(data.get("index", position))] = position
            out: list[StreamEvent] = [
                ToolCallStart(position, str(block.get("id") or ""), str(block.get("name")))
            ]
            if block.get("input"):
                out.append(ToolCallDelta(position, dumps(block["input"])))
            return out
        return []

    def _delta(self, data: JSONObject) -> list[StreamEvent]:
        delta = data.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta" and delta.get("text"):
            return [TextDelta(str(delta["text"]))]
        if kind == "thinking_delta" and delta.get("thinking"):
            return [ReasoningDelta(str(delta["thinking"]))]
        if kind == "signature_delta":
            return [ReasoningSignature(claude_signature_in(delta.get("signature")))]
        if kind == "input_json_delta" and delta.get("partial_json"):
            position = self._tools.get(int(data.get("index", -1)))
            if position is None:
                raise UpstreamProtocolError("input_json_delta outside a tool_use block")
            return [ToolCallDelta(position, str(delta["partial_json"]))]
        return []

    def close(self) -> Iterable[StreamEvent]:
        if not self._done:
            raise UpstreamProtocolError("the upstream stream ended before message_stop")
        return []


class ClaudeStreamEncoder:
    def __init__(self, request: EncoderFacts) -> None:
        self._model = request.model
        self._index = -1  # the open block's index, -1 when none is open
        self._open: str | None = None  # "text" | "thinking" | "tool"
        self._open_tool = -1
        self._signed = False
        self._usage: Usage | None = None
        self._saw_tool = False
        self._text_head = ""
        self._text_prefix = b""

    @staticmethod
    def _event(kind: str, **fields: Any) -> SSEEvent:
        return SSEEvent(kind, dumps({"type": kind, **fields}))

    def _close(self, out: list[SSEEvent]) -> None:
        if self._open is not None:
            out.append(self._event("content_block_stop", index=self._index))
            self._open = None

    def _start(self, kind: str, block: JSONObject, out: list[SSEEvent]) -> None:
        self._close(out)
        self._index += 1
        self._open = kind
        if kind == "text":  # a text delta's JSON up to its text, as str and as SSE bytes
            self._text_head = (
                f'{{"type":"content_block_delta","index":{self._index},'
                '"delta":{"type":"text_delta","text":'
            )
            self._text_prefix = (
                f"event: content_block_delta\ndata: {self._text_head}".encode()
            )
        self._signed = False
        out.append(
            self._event("content_block_start", index=self._index, content_block=block)
        )

    def _delta(self, delta: JSONObject) -> SSEEvent:
        return self._event("content_block_delta", index=self._index, delta=delta)

    def _sign(self, signature: Signature | None, out: list[SSEEvent]) -> None:
        """Give the open thinking block (or a new empty one) `signature`, and close it."""
        if self._open != "thinking" or self._signed:
            self._start(
                "thinking", {"type": "thinking", "thinking": "", "signature": ""}, out
            )
        if signature is not None:
            text = claude_signature_out(signature)
            out.append(self._delta({"type": "signature_delta", "signature": text}))
        self._signed = True
        self._close(out)

    def _message_start(self, message: str, usage: Usage | None) -> SSEEvent:
        start: JSONObject = {
            "id": message_id(message) if message else "msg_aiclient",
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {**usage_from_canonical(usage), "output_tokens": 0},
        }
        return self._event("message_start", message=start)

    def _message_stop(
        self, reason: StopReason, usage: Usage | None, sequence: str | None
    ) -> list[SSEEvent]:
        if reason is StopReason.END_TURN and self._saw_tool:
            reason = StopReason.TOOL_USE
        delta = {"stop_reason": claude_stop_reason(reason), "stop_sequence": sequence}
        return [
            self._event("message_delta", delta=delta, usage=usage_from_canonical(usage)),
            self._event("message_stop"),
        ]

    def _arguments(self, index: int, fragment: str, out: list[SSEEvent]) -> None:
        if self._open != "tool" or index != self._open_tool:
            raise UpstreamProtocolError(
                "the upstream interleaved the arguments of parallel tool calls"
            )
        if fragment:
            out.append(self._delta({"type": "input_json_delta", "partial_json": fragment}))

    def text(self, text: str) -> bytes | None:
        """A text delta inside an open text block as SSE bytes, ready for the client
        (the pipeline's fast path): the bytes `feed(TextDelta(text))` and the SSE framer
        produce. None elsewhere (a block must be opened first: `feed` does that).
        Pure, and the bytes around the text's JSON are the same for every text until
        `feed` runs: the pipeline copies texts between them."""
        if not text or self._open != "text":
            return None
        # Bytes spliced around orjson's: no str formatting and encoding per delta.
        return self._text_prefix + orjson.dumps(text) + b"}}\n\n"

    def _text_data(self, text: str) -> str:
        """The text delta's JSON as `_delta` would write it, without the dict."""
        return self._text_head + dumps(text) + "}}"

    def feed(self, event: StreamEvent) -> Iterable[SSEEvent]:
        out: list[SSEEvent] = []
        match event:
            case MessageStart(id=message, usage=usage):
                self._usage = usage
                out.append(self._message_start(message, usage))
            case TextDelta(text=text):
                if text:
                    if self._open != "text":
                        self._start("text", {"type": "text", "text": ""}, out)
                    out.append(SSEEvent("content_block_delta", self._text_data(text)))
            case ReasoningDelta(text=text):
                if self._open != "thinking" or self._signed:
                    block = {"type": "thinking", "thinking": "", "signature": ""}
                    self._start("thinking", block, out)
                out.append(self._delta({"type": "thinking_delta", "thinking": text}))
            case ReasoningSignature(redacted=str() as data):
                self._start("redacted", {"type": "redacted_thinking", "data": data}, out)
                self._close(out)
            case ReasoningSignature(signature=signature):
                self._sign(signature, out)
            case ToolCallStart(index=index, id=call_id, name=name, signature=signature):
                if signature is not None and signature.vendor == "google":
                    self._sign(signature, out)
                block = {"type": "tool_use", "id": sanitise_id(call_id), "name": name}
                self._start("tool", {**block, "input": {}}, out)
                self._open_tool = index
                self._saw_tool = True
            case ToolCallDelta(index=index, arguments=fragment):
                self._arguments(index, fragment, out)
            case MessageStop(stop_reason=reason, usage=usage, stop_sequence=sequence):
                self._close(out)
                out += self._message_stop(reason, usage or self._usage, sequence)
        return out
