"""The codec interfaces, and small pure helpers every codec shares.

A codec translates one wire protocol to and from the canonical form (aiclient.canonical).
Requests are validated on the way in: `request_to_canonical` raises only InvalidRequest.
What the target cannot express is refused by `request_from_canonical` with
UnsupportedConversion (a 400 naming the feature) or dropped by a rule its module
docstring states. Streaming halves are small stateful objects, one per response.

A codec may also have a fast path for the most common shapes, a plain chat and an
answer of one text (canonical.PlainChat, PlainAnswer): `plain_request_in` /
`plain_response_in` read one or return None, and `plain_request_out` /
`plain_response_out` write exactly what the general writer writes for it.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple, Protocol

import orjson

from ..canonical import (
    ChatRequest,
    ChatResponse,
    MediaPart,
    PlainAnswer,
    PlainChat,
    StopReason,
    StreamEvent,
)
from ..errors import InvalidRequest, UpstreamHTTPError
from ..sse import SSEEvent

__all__ = [
    "Codec",
    "EncoderFacts",
    "FunctionCodec",
    "JSONObject",
    "array",
    "StreamDecoder",
    "StreamEncoder",
    "TextHole",
    "as_int",
    "dumps",
    "error_event",
    "mapped_stop",
    "new_id",
    "parse_arguments",
    "parse_data_url",
    "text_hole_of",
    "to_data_url",
]

JSONObject = dict[str, Any]


class StreamDecoder(Protocol):
    """Upstream wire events -> canonical events. One instance per response.

    `feed` raises UpstreamHTTPError for an in-band upstream error event and
    UpstreamProtocolError for a malformed one; `close` raises UpstreamProtocolError
    when the stream ended before it was complete.
    """

    def feed(self, event: SSEEvent) -> Iterable[StreamEvent]: ...
    def close(self) -> Iterable[StreamEvent]: ...


class TextHole(NamedTuple):
    """A top-level key of an upstream's text-delta chunks whose value changes from chunk
    to chunk (random padding, running token counts), for the stream pipeline's
    templates: its name, what comes before the value (`key`), and a regex of what the
    value may be (`value`, for text and bytes): a string's inside, which the decoder
    ignores. No regex: the value is a JSON object, any one of which fills the hole
    (orjson says), and the decoder keeps the last one seen, which the pipeline hands
    it (`keep_hole`) before anything else. `text_hole_of` builds one."""

    name: str
    key: str
    value: re.Pattern[str] | None
    value_bytes: re.Pattern[bytes] | None


def text_hole_of(name: str, value: str | None = None) -> TextHole:
    if value is None:
        return TextHole(name, f'"{name}":', None, None)
    return TextHole(name, f'"{name}":"', re.compile(value), re.compile(value.encode()))


class StreamEncoder(Protocol):
    """Canonical events -> client wire events. One instance per response."""

    def feed(self, event: StreamEvent) -> Iterable[SSEEvent]: ...


class EncoderFacts(Protocol):
    """What a stream encoder needs of the request (a ChatRequest has it)."""

    @property
    def model(self) -> str: ...
    @property
    def include_usage(self) -> bool: ...


class PlainIn(Protocol):
    """A plain reader; `model` as for `Codec.request_to_canonical`."""

    def __call__(
        self, body: JSONObject, *, model: str | None = None
    ) -> PlainChat | None: ...


PlainOut = Callable[[PlainChat], JSONObject]
PlainAnswerIn = Callable[[JSONObject], PlainAnswer | None]
PlainAnswerOut = Callable[[PlainAnswer], JSONObject]


class Codec(Protocol):
    # The fast paths for plain chats and answers (canonical.PlainChat, PlainAnswer),
    # where the codec has them.
    plain_request_in: PlainIn | None
    plain_request_out: PlainOut | None
    plain_response_in: PlainAnswerIn | None
    plain_response_out: PlainAnswerOut | None

    def request_to_canonical(self, body: JSONObject, *, model: str | None) -> ChatRequest:
        """`model` is the model named outside the body (Gemini's URL), if any."""
        ...

    def request_from_canonical(self, request: ChatRequest) -> JSONObject: ...
    def response_to_canonical(self, body: JSONObject) -> ChatResponse: ...
    def response_from_canonical(self, response: ChatResponse) -> JSONObject: ...
    def stream_decoder(self) -> StreamDecoder: ...
    def stream_encoder(self, request: EncoderFacts) -> StreamEncoder: ...


class FunctionCodec:
    """A Codec made of one protocol's module functions and stream classes."""

    def __init__(
        self,
        request_to: Callable[..., ChatRequest],
        request_from: Callable[[ChatRequest], JSONObject],
        response_to: Callable[[JSONObject], ChatResponse],
        response_from: Callable[[ChatResponse], JSONObject],
        decoder: Callable[[], StreamDecoder],
        encoder: Callable[[EncoderFacts], StreamEncoder],
        *,
        plain_in: PlainIn | None = None,
        plain_out: PlainOut | None = None,
        plain_answer_in: PlainAnswerIn | None = None,
        plain_answer_out: PlainAnswerOut | None = None,
    ) -> None:
        self._request_to = request_to
        self.request_from_canonical = request_from
        self.response_to_canonical = response_to
        self.response_from_canonical = response_from
        self.stream_decoder = decoder
        self.stream_encoder = encoder
        self.plain_request_in = plain_in
        self.plain_request_out = plain_out
        self.plain_response_in = plain_answer_in
        self.plain_response_out = plain_answer_out

    def request_to_canonical(self, body: JSONObject, *, model: str | None) -> ChatRequest:
        return self._request_to(body, model=model)


def as_int(value: Any) -> int:
    """A token count from an upstream body: 0 unless it is a real integer."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def mapped_stop(table: Mapping[str, StopReason], value: Any, saw_tool: bool) -> StopReason:
    """An upstream stop value through `table`; a plain stop with tool calls (how
    Gemini and some OpenAI-compatible servers report them) is a tool-use stop."""
    reason = table.get(value, StopReason.END_TURN) if isinstance(value, str) else None
    if saw_tool and reason in (None, StopReason.END_TURN):
        return StopReason.TOOL_USE
    return reason or StopReason.END_TURN


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


def parse_arguments(text: str) -> dict[str, Any]:
    """Tool-call arguments as an object, for targets that need one (Claude, Gemini).

    Empty text is `{}`; text that is not a JSON object is kept under `_raw` / `value`
    rather than lost (the model produced it, the client should see it).
    """
    if not text.strip():
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {"_raw": text}
    return value if isinstance(value, dict) else {"value": value}


_BASE64 = re.compile(r"[A-Za-z0-9+/=_\s-]*")
_DATA_URL = re.compile(r"data:([\w.+/-]+)?((?:;[\w.+-]+=[^;,]*)*)(;base64)?,(.*)", re.S)


def array(value: Any, where: str) -> list[Any]:
    """A client's optional array field: [] when absent (null), InvalidRequest when it
    is anything else but an array (iterating it would fail, or walk a string)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidRequest(f"{where}: expected an array")
    return value


def parse_data_url(url: str, where: str) -> MediaPart:
    """A `data:` URL as an inline MediaPart, or an http(s) URL as a linked one."""
    if not url.startswith("data:"):
        return MediaPart(media_type=_guess_media_type(url), url=url)
    match = _DATA_URL.fullmatch(url)
    if match is None or match.group(3) is None:
        raise InvalidRequest(f"{where}: a data URL must be base64 (data:<type>;base64,...)")
    data = match.group(4)
    if _BASE64.fullmatch(data) is None:
        raise InvalidRequest(f"{where}: the data URL's payload is not base64")
    return MediaPart(media_type=match.group(1) or "application/octet-stream", data=data)


def to_data_url(part: MediaPart) -> str:
    if part.url is not None:
        return part.url
    return f"data:{part.media_type};base64,{part.data}"


_EXTENSIONS = {
    "png": "image/png",
    "gif": "image/gif",
    "webp": "image/webp",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "pdf": "application/pdf",
}


def _guess_media_type(url: str) -> str:
    path = url.split("?", 1)[0].split("#", 1)[0]
    ext = path.rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else ""
    return _EXTENSIONS.get(ext, "image/jpeg")


def error_event(status: int, payload: JSONObject) -> UpstreamHTTPError:
    """An in-band upstream error event, as the error the relay renders for the client."""
    return UpstreamHTTPError(status, orjson.dumps(payload), {})
