"""OpenAI chat.completion.chunk streams <-> canonical events (protocols.md §3.4, §8.5-6).

Decoder: role/content/reasoning/refusal deltas and tool-call fragments by `index`; a
call whose name arrives after its id (some compatible servers) starts once the name is
known. The finish reason and the usage chunk are held until `[DONE]`; a stream that
ends after a finish reason but without `[DONE]` is accepted, one that ends before is an
error. A `stop` finish with tool calls counts as a tool-use stop.

Encoder: role once in the first chunk; id/type/name only in a call's first delta (the
SDK concatenates every string field across deltas); the finish in a chunk of its own,
then the usage chunk when the client asked for it, then `data: [DONE]`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import orjson

from ...canonical import (
    MessageStart,
    MessageStop,
    ReasoningDelta,
    ReasoningSignature,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    Usage,
)
from ...errors import UpstreamProtocolError
from ...sse import SSEEvent
from ..base import EncoderFacts, JSONObject, dumps, error_event, new_id, text_hole_of
from .response import completion_id, finish_reason, stop_reason, usage_from_canonical
from .response import usage_to_canonical as _usage

__all__ = ["OpenAIStreamDecoder", "OpenAIStreamEncoder"]

_ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "rate_limit_error": 429,
    "requests": 429,
    "tokens": 429,
    "insufficient_quota": 429,
}


_TEXT_TAIL = '},"logprobs":null,"finish_reason":null}]}'
_TEXT_END = (_TEXT_TAIL + "\n\n").encode()  # the tail and the end of the SSE event
# A delta with only these keys (role and content null or empty aside) is plain text.
_TEXT_ONLY = frozenset({"content", "role"})


class OpenAIStreamDecoder:
    # OpenAI's own API pads every chunk with random characters (`obfuscation`, last in
    # the chunk, a different length each time); nothing reads them, so the pipeline's
    # templates leave a hole there: a string's inside with nothing escaped.
    text_hole = text_hole_of("obfuscation", r'[^"\\\x00-\x1f]*')

    def __init__(self) -> None:
        self._started = False
        self._done = False
        self._finish: Any = None
        self._usage: Usage | None = None
        self._calls: dict[int, str] = {}  # upstream index -> id, once started
        self._pending: dict[int, JSONObject] = {}  # upstream index -> call awaiting name

    def feed(self, event: SSEEvent) -> Iterable[StreamEvent]:
        chunk = self._parse(event)
        return chunk if isinstance(chunk, list) else self._events(chunk)

    def feed_text(self, event: SSEEvent) -> str | Iterable[StreamEvent]:
        """`feed`, except that a chunk carrying nothing but text (most of a stream)
        comes back as the text itself: the pipeline's fast path. Once started, it keeps
        nothing of such a chunk, so the pipeline may skip it for one that differs only
        in its text and its padding (templates)."""
        if not self._started:
            return self.feed(event)
        try:
            chunk = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            chunk = None  # `[DONE]`, a blank event, or not JSON
        if chunk.__class__ is not dict:
            return self.feed(event)  # `feed` says what it is
        try:  # one choice, in a dict, with a delta (else a TypeError or ValueError)
            [choice] = chunk["choices"]
            delta = choice["delta"]
            text = delta.get("content")
        except (KeyError, TypeError, ValueError, AttributeError):
            return self._events(chunk)
        if (
            text.__class__ is str
            and text
            and delta.keys() <= _TEXT_ONLY
            and choice.get("index", 0) == 0
            and not choice.get("finish_reason")
            and chunk.get("usage") is None
            and not chunk.get("error")
        ):
            return text
        return self._events(chunk)

    def _parse(self, event: SSEEvent) -> JSONObject | list[StreamEvent]:
        """The chunk's JSON object, or the events it stands for ([DONE], nothing)."""
        data = event.data.strip()
        if not data:
            return []
        if data == "[DONE]":
            return self._stop()
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise UpstreamProtocolError(
                "the upstream sent a chunk that is not JSON"
            ) from exc
        if not isinstance(chunk, dict):
            return []
        return chunk

    def _events(self, chunk: JSONObject) -> list[StreamEvent]:
        if chunk.get("error"):
            error = chunk["error"]
            kind = error.get("type") if isinstance(error, dict) else None
            raise error_event(_ERROR_STATUS.get(str(kind), 500), chunk)
        out: list[StreamEvent] = []
        if not self._started:
            self._started = True
            out.append(
                MessageStart(str(chunk.get("id") or ""), str(chunk.get("model") or ""))
            )
        usage = _usage(chunk.get("usage"))
        if usage is not None:
            self._usage = usage
        for choice in chunk.get("choices") or ():
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                self._choice(choice, out)
        return out

    def _choice(self, choice: JSONObject, out: list[StreamEvent]) -> None:
        delta = choice.get("delta") or {}
        reasoning = delta.get("reasoning_content", delta.get("reasoning"))
        if isinstance(reasoning, str) and reasoning:
            out.append(ReasoningDelta(reasoning))
        for key in ("content", "refusal"):
            text = delta.get(key)
            if isinstance(text, str) and text:
                out.append(TextDelta(text))
        for call in delta.get("tool_calls") or ():
            self._tool_delta(call, out)
        if choice.get("finish_reason"):
            self._finish = choice["finish_reason"]

    def _tool_delta(self, call: JSONObject, out: list[StreamEvent]) -> None:
        index = call.get("index", len(self._calls))
        function = call.get("function") or {}
        fragment = function.get("arguments") or ""
        if index not in self._calls:
            pending = self._pending.setdefault(
                index, {"id": None, "name": None, "args": ""}
            )
            pending["id"] = pending["id"] or call.get("id")
            pending["name"] = pending["name"] or function.get("name")
            pending["args"] += fragment
            if not pending["name"]:
                return
            del self._pending[index]
            call_id = pending["id"] or new_id("call_")
            self._calls[index] = call_id
            out.append(ToolCallStart(len(self._calls) - 1, call_id, pending["name"]))
            fragment = pending["args"]
        if fragment:
            position = list(self._calls).index(index)
            out.append(ToolCallDelta(position, fragment))

    def _stop(self) -> list[StreamEvent]:
        if self._done:
            return []
        self._done = True
        out: list[StreamEvent] = []
        if not self._started:
            out.append(MessageStart("", ""))
        reason = stop_reason(self._finish, bool(self._calls))
        return [*out, MessageStop(reason, self._usage)]

    def close(self) -> Iterable[StreamEvent]:
        if self._done:
            return []
        if self._finish is None:
            raise UpstreamProtocolError("the upstream stream ended before it was complete")
        return self._stop()


class OpenAIStreamEncoder:
    def __init__(self, request: EncoderFacts) -> None:
        self._model = request.model
        self._include_usage = request.include_usage
        self._id = ""
        self._created = int(time.time())
        self._set_head()

    def _set_head(self) -> None:
        self._text_head = self._head()
        self._text_prefix = b"data: " + self._text_head.encode()  # for `text`

    def _head(self) -> str:
        """A content chunk's JSON up to its text: text deltas are most of a stream, so
        they are spliced into this (the bytes `_chunk` would produce) instead."""
        return (
            f'{{"id":{dumps(self._id)},"object":"chat.completion.chunk",'
            f'"created":{self._created},"model":{dumps(self._model)},'
            '"choices":[{"index":0,"delta":{"content":'
        )

    def _chunk(self, delta: JSONObject, finish: str | None = None) -> SSEEvent:
        return SSEEvent(
            None,
            dumps(
                {
                    "id": self._id,
                    "object": "chat.completion.chunk",
                    "created": self._created,
                    "model": self._model,
                    "choices": [
                        {
                            "index": 0,
                            "delta": delta,
                            "logprobs": None,
                            "finish_reason": finish,
                        }
                    ],
                }
            ),
        )

    def feed(self, event: StreamEvent) -> Iterable[SSEEvent]:
        match event:
            case MessageStart(id=message_id):
                self._id = completion_id(message_id or new_id(""))
                self._set_head()
                return [self._chunk({"role": "assistant", "content": ""})]
            case TextDelta(text=text):
                if not text:
                    return []
                return [SSEEvent(None, self._text_data(text))]
            case ReasoningDelta(text=text):
                return [self._chunk({"reasoning_content": text})] if text else []
            case ReasoningSignature():
                return []
            case ToolCallStart(index=index, id=call_id, name=name):
                call = {
                    "index": index,
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": ""},
                }
                return [self._chunk({"tool_calls": [call]})]
            case ToolCallDelta(index=index, arguments=fragment):
                if not fragment:
                    return []
                call = {"index": index, "function": {"arguments": fragment}}
                return [self._chunk({"tool_calls": [call]})]
            case MessageStop(stop_reason=reason, usage=usage):
                out = [self._chunk({}, finish_reason(reason))]
                if self._include_usage:
                    tail = {
                        "id": self._id,
                        "object": "chat.completion.chunk",
                        "created": self._created,
                        "model": self._model,
                        "choices": [],
                        "usage": usage_from_canonical(usage),
                    }
                    out.append(SSEEvent(None, dumps(tail)))
                out.append(SSEEvent(None, "[DONE]"))
                return out

    def text(self, text: str) -> bytes | None:
        """A text delta as SSE bytes, ready for the client (the pipeline's fast path):
        the bytes `feed(TextDelta(text))` and the SSE framer produce. Pure, and the
        bytes around the text's JSON are the same for every text until `feed` runs:
        the pipeline copies texts between them."""
        if not text:
            return None
        # Bytes spliced around orjson's: no str formatting and encoding per delta.
        return self._text_prefix + orjson.dumps(text) + _TEXT_END

    def _text_data(self, text: str) -> str:
        return self._text_head + dumps(text) + _TEXT_TAIL
