"""Claude Messages ⇄ Kiro (CodeWhisperer generateAssistantResponse). Pure: no I/O.

Request: a Claude body becomes `{conversationState: {chatTriggerType, conversationId,
history, currentMessage}, profileArn?}` (aiclient-2-api.md §5.4): the system prompt is
put before the first user text, every message but the last goes to `history` as a
`userInputMessage` (text, images, tool results) or an `assistantResponseMessage` (text,
tool uses), and the last one is the `currentMessage` carrying the tool definitions. A
conversation that ends with an assistant turn gets a "Continue" user turn, and so does a
current message without text (tool results only).

Response: the AWS event-stream messages are turned into Claude events as they arrive
(`KiroStream`, one instance per response): `assistantResponseEvent` text becomes
text deltas, `toolUseEvent` fragments become a tool_use block with `input_json_delta`s.
`kiro_message` builds the non-stream Claude message from the same events; tool inputs
are JSON objects (the original returned the raw string). Unlike the original, nothing is
parsed out of the text (`[Called fn with args: …]`) and errors are never turned into
assistant text: an exception event raises, so the relay reports it.
"""

from __future__ import annotations

import math
import uuid
from typing import Any

import orjson

from ..eventstream import EventStreamDecoder, Message

__all__ = ["KiroStream", "kiro_message", "kiro_request"]

JSONObject = dict[str, Any]
ORIGIN = "AI_EDITOR"


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(b.get("text", ""))
            for b in content
            if isinstance(b, dict) and b.get("type") == "text"
        )
    return ""


def _tool_result(block: JSONObject) -> JSONObject:
    content = block.get("content")
    text = _text_of(content) if not isinstance(content, str) else content
    return {
        "content": [{"text": text}],
        "status": "error" if block.get("is_error") else "success",
        "toolUseId": block.get("tool_use_id"),
    }


def _image(block: JSONObject) -> JSONObject | None:
    source = block.get("source")
    if not isinstance(source, dict) or source.get("type") != "base64":
        return None
    media = str(source.get("media_type", "image/png"))
    return {"format": media.partition("/")[2] or "png", "source": {"bytes": source["data"]}}


def _user(message: JSONObject, model_id: str, prefix: str = "") -> JSONObject:
    content = message.get("content")
    blocks = content if isinstance(content, list) else []
    text = prefix + _text_of(content)
    results = [_tool_result(b) for b in blocks if b.get("type") == "tool_result"]
    images = [i for b in blocks if b.get("type") == "image" and (i := _image(b))]
    item: JSONObject = {"content": text, "modelId": model_id, "origin": ORIGIN}
    if images:
        item["images"] = images
    if results:
        item["userInputMessageContext"] = {"toolResults": results}
    return item


def _assistant(message: JSONObject) -> JSONObject:
    content = message.get("content")
    blocks = content if isinstance(content, list) else []
    item: JSONObject = {"content": _text_of(content)}
    uses = [
        {"input": b.get("input") or {}, "name": b.get("name"), "toolUseId": b.get("id")}
        for b in blocks
        if isinstance(b, dict) and b.get("type") == "tool_use"
    ]
    if uses:
        item["toolUses"] = uses
    return item


def _tools(tools: Any) -> list[JSONObject]:
    specs = []
    for tool in tools or ():
        if not isinstance(tool, dict) or "name" not in tool:
            continue
        specs.append(
            {
                "toolSpecification": {
                    "name": tool["name"],
                    "description": tool.get("description") or "",
                    "inputSchema": {"json": tool.get("input_schema") or {}},
                }
            }
        )
    return specs


def kiro_request(
    body: JSONObject,
    *,
    model_id: str,
    profile_arn: str | None = None,
    conversation_id: str | None = None,
) -> JSONObject:
    """The generateAssistantResponse body for a Claude Messages request.

    Raises ValueError when there is no message to send."""
    messages = [m for m in body.get("messages") or () if isinstance(m, dict)]
    if not messages:
        raise ValueError("messages: at least one message is required")
    system = _text_of(body.get("system"))
    if messages[-1].get("role") == "assistant":
        messages.append({"role": "user", "content": "Continue"})
    history: list[JSONObject] = []
    prefix = f"{system}\n\n" if system else ""
    for message in messages[:-1]:
        if message.get("role") == "assistant":
            if prefix:  # the conversation starts with the assistant
                history.append({"userInputMessage": _user({}, model_id, system)})
                prefix = ""
            history.append({"assistantResponseMessage": _assistant(message)})
        else:
            history.append({"userInputMessage": _user(message, model_id, prefix)})
            prefix = ""
    current = _user(messages[-1], model_id, prefix)
    if not current["content"]:  # Kiro refuses an empty one, even with tool results
        current["content"] = "Continue"
    tools = _tools(body.get("tools"))
    if tools:
        current.setdefault("userInputMessageContext", {})["tools"] = tools
    result: JSONObject = {
        "conversationState": {
            "chatTriggerType": "MANUAL",
            "conversationId": conversation_id or str(uuid.uuid4()),
            "history": history,
            "currentMessage": {"userInputMessage": current},
        }
    }
    if profile_arn:
        result["profileArn"] = profile_arn
    return result


# -- response ----------------------------------------------------------------------------


def _sse(event: str, data: JSONObject) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class KiroStream:
    """Kiro event-stream bytes in, Claude SSE bytes out, event by event."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.message_id = "msg_" + uuid.uuid4().hex[:24]
        self._decoder = EventStreamDecoder()
        self._started = False
        self._index = -1
        self._open: str | None = None  # "text" or the toolUseId of the open block
        self.output_chars = 0
        self._tool_ids: set[str] = set()
        self.blocks: list[JSONObject] = []  # the whole message, for non-stream answers
        self.stop_reason = "end_turn"

    def feed(self, chunk: bytes) -> bytes:
        out = bytearray()
        for message in self._decoder.feed(chunk):
            self._message(message, out)
        return bytes(out)

    def close(self) -> bytes:
        if self._decoder.pending:
            raise ValueError("the Kiro event stream was cut inside a message")
        out = bytearray()
        self._start(out)
        self._close_block(out)
        stop = "tool_use" if self._tool_ids else "end_turn"
        usage = {"output_tokens": math.ceil(self.output_chars / 4)}
        out += _sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": usage,
            },
        )
        out += _sse("message_stop", {"type": "message_stop"})
        self.stop_reason = stop
        return bytes(out)

    def _start(self, out: bytearray) -> None:
        if self._started:
            return
        self._started = True
        message: JSONObject = {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        out += _sse("message_start", {"type": "message_start", "message": message})

    def _close_block(self, out: bytearray) -> None:
        if self._open is None:
            return
        block = self.blocks[-1]
        if block["type"] == "tool_use":
            raw = block.pop("_json")
            block["input"] = orjson.loads(raw) if raw.strip() else {}
        out += _sse(
            "content_block_stop", {"type": "content_block_stop", "index": self._index}
        )
        self._open = None

    def _open_block(self, out: bytearray, kind: str, block: JSONObject) -> None:
        self._close_block(out)
        self._index += 1
        self._open = kind
        self.blocks.append(dict(block))
        out += _sse(
            "content_block_start",
            {"type": "content_block_start", "index": self._index, "content_block": block},
        )

    def _message(self, message: Message, out: bytearray) -> None:
        kind = message.header(":message-type") or "event"
        if kind != "event":
            detail = message.payload.decode("utf-8", "replace")[:300]
            name = message.header(":exception-type") or message.header(":error-code")
            raise ValueError(f"Kiro sent an {kind} ({name}): {detail}")
        try:
            data = orjson.loads(message.payload) if message.payload else {}
        except orjson.JSONDecodeError as exc:
            raise ValueError("a Kiro event payload is not JSON") from exc
        if not isinstance(data, dict):
            return
        if "toolUseId" in data and "name" in data:
            self._tool(data, out)
        elif isinstance(data.get("content"), str) and "followupPrompt" not in data:
            text = data["content"]
            if not text:
                return
            self._start(out)
            if self._open != "text":
                self._open_block(out, "text", {"type": "text", "text": ""})
            self.blocks[-1]["text"] += text
            self.output_chars += len(text)
            delta = {"type": "text_delta", "text": text}
            out += _sse(
                "content_block_delta",
                {"type": "content_block_delta", "index": self._index, "delta": delta},
            )

    def _tool(self, data: JSONObject, out: bytearray) -> None:
        tool_id = str(data["toolUseId"])
        self._start(out)
        if self._open != tool_id:
            if tool_id in self._tool_ids:
                return  # a late fragment of a tool call already closed
            self._tool_ids.add(tool_id)
            block = {"type": "tool_use", "id": tool_id, "name": data["name"], "input": {}}
            self._open_block(out, tool_id, block)
            self.blocks[-1]["_json"] = ""
        fragment = data.get("input")
        if isinstance(fragment, dict):
            fragment = orjson.dumps(fragment).decode()
        if isinstance(fragment, str) and fragment:
            self.blocks[-1]["_json"] += fragment
            self.output_chars += len(fragment)
            delta = {"type": "input_json_delta", "partial_json": fragment}
            out += _sse(
                "content_block_delta",
                {"type": "content_block_delta", "index": self._index, "delta": delta},
            )
        if data.get("stop"):
            self._close_block(out)


def kiro_message(raw: bytes, model: str) -> bytes:
    """The non-stream Claude message for a whole Kiro event stream."""
    stream = KiroStream(model)
    stream.feed(raw)
    stream.close()
    return orjson.dumps(
        {
            "id": stream.message_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": stream.blocks,
            "stop_reason": stream.stop_reason,
            "stop_sequence": None,
            "usage": {
                "input_tokens": 0,
                "output_tokens": math.ceil(stream.output_chars / 4),
            },
        }
    )
