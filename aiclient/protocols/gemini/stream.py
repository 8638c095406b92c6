"""Gemini streamGenerateContent chunks <-> canonical events (protocols.md §5.4, §9.6).

Decoder: each chunk is a response fragment; text and thought parts are deltas, a
functionCall arrives whole (one start and one argument delta), a signature on a thought
part closes that thought. The finish reason and the last usage are kept until the
stream ends; a stream that ends without a finish reason is an error. An `{"error": ...}`
chunk raises.

Encoder: `data:` chunks only (no sentinel, no comments). Gemini clients expect whole
functionCall parts, so a call's argument fragments are collected and the call is sent
as soon as the next part starts (or at the end); everything else is sent as it comes.
The last chunk carries finishReason and usageMetadata.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from ...canonical import (
    MessageStart,
    MessageStop,
    ReasoningDelta,
    ReasoningPart,
    ReasoningSignature,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
)
from ...errors import UpstreamProtocolError
from ...sse import SSEEvent
from ..base import EncoderFacts, JSONObject, dumps, error_event, new_id, text_hole_of
from .request import get
from .response import (
    finish_reason,
    part_from_canonical,
    parts_to_canonical,
    stop_reason,
    usage_from_canonical,
    usage_to_canonical,
)

__all__ = ["GeminiStreamDecoder", "GeminiStreamEncoder"]

_TEXT_START = b'data: {"candidates":[{"content":{"role":"model","parts":[{"text":'


class GeminiStreamDecoder:
    # Every chunk carries the running usageMetadata, the last of which is kept: the
    # pipeline's templates leave a hole there (pipeline.py), and hand over the last.
    text_hole = text_hole_of("usageMetadata")

    def __init__(self) -> None:
        self._started = False
        self._finish: Any = None
        self._blocked = False
        # The last usageMetadata seen, read only when the stream ends: every chunk
        # carries one, and reading each would cost more than the rest of the chunk.
        self._usage_meta: JSONObject | None = None
        self._tools = 0

    def feed(self, event: SSEEvent) -> Iterable[StreamEvent]:
        chunk = self._parse(event)
        return self._events(chunk) if chunk is not None else []

    def feed_text(self, event: SSEEvent) -> str | Iterable[StreamEvent]:
        """`feed`, except that a chunk whose only content is one `{"text": ...}` part
        (most of a stream) comes back as the text itself, its usage and finish reason
        kept as `_events` keeps them: the pipeline's fast path."""
        if not self._started:
            return self.feed(event)
        try:
            chunk = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            chunk = None
        if chunk.__class__ is not dict:
            return self.feed(event)  # not an object: `feed` says what it is
        if "error" in chunk or "promptFeedback" in chunk or "prompt_feedback" in chunk:
            return self._events(chunk)
        try:  # a candidate and a part alone, in dicts (else a TypeError or ValueError)
            [candidate] = chunk["candidates"]
            [part] = candidate["content"]["parts"]
            text = part["text"]
        except (KeyError, TypeError, ValueError):
            return self._events(chunk)
        if (
            text.__class__ is not str
            or not text
            or len(part) != 1
            or candidate.get("index", 0) != 0
        ):
            return self._events(chunk)
        # get(chunk, "usageMetadata") and get(candidate, "finishReason"), inlined
        meta = chunk.get("usageMetadata")
        if meta is None:
            meta = chunk.get("usage_metadata")
        if meta.__class__ is dict:
            self._usage_meta = meta
        finish = candidate.get("finishReason")
        if finish is None:
            finish = candidate.get("finish_reason")
        if finish:
            self._finish = finish
        return text

    def keep_hole(self, meta: JSONObject) -> None:
        """The usageMetadata of the last text delta the pipeline read from a template,
        kept as `feed_text` keeps a text delta's."""
        self._usage_meta = meta

    @staticmethod
    def _parse(event: SSEEvent) -> JSONObject | None:
        try:
            chunk = orjson.loads(event.data)
        except orjson.JSONDecodeError as exc:
            raise UpstreamProtocolError(
                "the upstream sent a chunk that is not JSON"
            ) from exc
        if isinstance(chunk, list) and chunk:  # an error wrapped in an array
            chunk = chunk[0]
        return chunk if isinstance(chunk, dict) else None

    def _events(self, chunk: JSONObject) -> list[StreamEvent]:
        error = chunk.get("error")
        if isinstance(error, dict):
            status = error.get("code")
            raise error_event(status if isinstance(status, int) else 500, chunk)
        out: list[StreamEvent] = []
        # `x.get(key) or get(x, key)` is `get(x, key)`, a call fewer for camelCase.
        meta = chunk.get("usageMetadata") or get(chunk, "usageMetadata")
        if isinstance(meta, dict):
            self._usage_meta = meta
        if not self._started:
            self._started = True
            response_id = str(chunk.get("responseId") or get(chunk, "responseId") or "")
            model = str(chunk.get("modelVersion") or get(chunk, "modelVersion") or "")
            out.append(MessageStart(response_id, model, usage_to_canonical(meta)))
        if ("promptFeedback" in chunk or "prompt_feedback" in chunk) and get(
            get(chunk, "promptFeedback"), "blockReason"
        ) is not None:
            self._blocked = True
        for candidate in chunk.get("candidates") or ():
            if not isinstance(candidate, dict) or candidate.get("index", 0) != 0:
                continue
            content = candidate.get("content")
            parts = content.get("parts") if isinstance(content, dict) else None
            for part in parts_to_canonical(parts):
                out += self._part(part)
            finish = candidate.get("finishReason")
            if finish is None:
                finish = candidate.get("finish_reason")
            if finish:
                self._finish = finish
        return out

    def _part(self, part: Any) -> list[StreamEvent]:
        if isinstance(part, ReasoningPart):
            out: list[StreamEvent] = [ReasoningDelta(part.text)] if part.text else []
            if part.signature is not None or part.redacted is not None:
                out.append(ReasoningSignature(part.signature, part.redacted))
            return out
        if isinstance(part, ToolCallPart):
            index, self._tools = self._tools, self._tools + 1
            return [
                ToolCallStart(index, part.id, part.name, part.signature),
                ToolCallDelta(index, part.arguments),
            ]
        text = getattr(part, "text", None)
        if isinstance(text, str):
            return [TextDelta(text, getattr(part, "signature", None))]
        return []  # an inline image answer: no stream event carries media

    def close(self) -> Iterable[StreamEvent]:
        if self._finish is None and not self._blocked:
            raise UpstreamProtocolError("the upstream stream ended without a finishReason")
        out: list[StreamEvent] = [] if self._started else [MessageStart("", "")]
        reason = stop_reason("SAFETY" if self._blocked else self._finish, self._tools > 0)
        return [*out, MessageStop(reason, usage_to_canonical(self._usage_meta))]


class GeminiStreamEncoder:
    def __init__(self, request: EncoderFacts) -> None:
        self._model = request.model
        self._call: ToolCallPart | None = None
        self._set_id("")

    def _set_id(self, response_id: str) -> None:
        self._id = response_id
        # What `text` writes after each delta's JSON string.
        self._text_end = (
            f'}}]}},"index":0}}],"modelVersion":{dumps(self._model)},'
            f'"responseId":{dumps(response_id)}}}\n\n'
        ).encode()

    def _chunk(self, parts: list[JSONObject], **extra: Any) -> SSEEvent:
        candidate: JSONObject = {"content": {"role": "model", "parts": parts}, "index": 0}
        candidate.update(extra.pop("candidate", {}))
        body = {
            "candidates": [candidate],
            **extra,
            "modelVersion": self._model,
            "responseId": self._id,
        }
        return SSEEvent(None, dumps(body))

    def _flush(self) -> list[JSONObject]:
        call, self._call = self._call, None
        part = part_from_canonical(call) if call is not None else None
        return [part] if part is not None else []

    def text(self, text: str) -> bytes | None:
        """A text delta as SSE bytes, ready for the client (the pipeline's fast path):
        the bytes `feed(TextDelta(text))` and the SSE framer produce. None while a tool
        call waits to be flushed (`feed` does that). Pure, and the bytes around the
        text's JSON are the same for every text until `feed` runs: the pipeline copies
        texts between them."""
        if not text or self._call is not None:
            return None
        # Bytes spliced around orjson's: no str formatting and encoding per delta.
        return _TEXT_START + orjson.dumps(text) + self._text_end

    def feed(self, event: StreamEvent) -> Iterable[SSEEvent]:
        if isinstance(event, ToolCallDelta):
            if self._call is not None:
                call = self._call
                self._call = ToolCallPart(
                    id=call.id,
                    name=call.name,
                    arguments=call.arguments + event.arguments,
                    signature=call.signature,
                )
            return []
        pending = self._flush()
        part: JSONObject | None = None
        match event:
            case MessageStart(id=message_id):
                self._set_id(message_id or new_id(""))
            case TextDelta(text=text, signature=signature):
                part = {"text": text}
                if signature is not None and signature.vendor == "google":
                    part["thoughtSignature"] = signature.value
                elif not text:
                    part = None
            case ReasoningDelta(text=text):
                part = {"text": text, "thought": True} if text else None
            case ReasoningSignature(signature=signature, redacted=redacted):
                if signature is not None or redacted is not None:
                    part = part_from_canonical(
                        ReasoningPart(text="", signature=signature, redacted=redacted)
                    )
            case ToolCallStart(id=call_id, name=name, signature=signature):
                self._call = ToolCallPart(
                    id=call_id, name=name, arguments="", signature=signature
                )
            case MessageStop(stop_reason=reason, usage=usage):
                final = {"finishReason": finish_reason(reason)}
                return [
                    self._chunk(
                        pending, candidate=final, usageMetadata=usage_from_canonical(usage)
                    )
                ]
        parts = pending + ([part] if part is not None else [])
        return [self._chunk(parts)] if parts else []
