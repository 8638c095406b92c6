"""The canonical chat form every codec translates to and from (pure values, no I/O).

Hub and spoke: each protocol has one codec to and from these values, so three protocols
need six translations instead of nine pairwise converters. The form holds what we
translate, not the union of every vendor feature: what one side cannot express is dropped
or refused by the *target* codec, which knows its own limits.

Positions are kept where a source has them (a system message in the middle of an OpenAI
conversation stays a SYSTEM message) and each target applies its own rule. Opaque vendor
data that must be echoed back (Anthropic thinking signatures, Gemini thought signatures)
travels as a `Signature` tagged with the vendor that issued it, so no codec ever forwards
one vendor's signature to another.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

if TYPE_CHECKING:
    from dataclasses import dataclass
else:

    def dataclass(cls=None, /, *, frozen=False, **options):
        """Values are immutable for the type checker (it sees `frozen=True` and rejects
        assignment) but built with a plain `__init__` at run time: a frozen one sets
        each field through `object.__setattr__`, and building these values was a
        third of a converted request's cost. Hashing stays as frozen gives it."""
        options.setdefault("unsafe_hash", frozen)
        if cls is None:
            return dataclasses.dataclass(**options)
        return dataclasses.dataclass(cls, **options)


__all__ = [
    "ChatRequest",
    "ChatResponse",
    "ContentPart",
    "MediaPart",
    "Message",
    "MessageStart",
    "MessageStop",
    "Part",
    "PlainAnswer",
    "PlainChat",
    "Reasoning",
    "ReasoningDelta",
    "ReasoningPart",
    "ReasoningSignature",
    "ResponseFormat",
    "Role",
    "Signature",
    "StopReason",
    "StreamEvent",
    "TextDelta",
    "TextPart",
    "ToolCallDelta",
    "ToolCallPart",
    "ToolCallStart",
    "ToolChoice",
    "ToolResultPart",
    "ToolSpec",
    "Usage",
]

Vendor = Literal["anthropic", "google"]


class Role(StrEnum):
    USER = "user"
    ASSISTANT = "assistant"
    SYSTEM = "system"  # only a system message after the first turn (the leading ones
    # are ChatRequest.system)


class StopReason(StrEnum):
    END_TURN = "end_turn"
    MAX_TOKENS = "max_tokens"
    STOP_SEQUENCE = "stop_sequence"
    TOOL_USE = "tool_use"
    CONTENT_FILTER = "content_filter"


@dataclass(frozen=True, slots=True)
class Signature:
    """An opaque value a vendor issued and wants back unchanged."""

    vendor: Vendor
    value: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TextPart:
    text: str
    signature: Signature | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaPart:
    """An image or a document: inline base64 `data` or a `url`, exactly one of them."""

    media_type: str
    data: str | None = None
    url: str | None = None

    @property
    def is_image(self) -> bool:
        return self.media_type.startswith("image/")


@dataclass(frozen=True, slots=True, kw_only=True)
class ReasoningPart:
    """Thinking text (possibly empty) with its signature; `redacted` holds Anthropic's
    opaque redacted_thinking data."""

    text: str
    signature: Signature | None = None
    redacted: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCallPart:
    id: str
    name: str
    arguments: str  # the JSON text of the arguments object, as the model produced it
    signature: Signature | None = None


ContentPart = TextPart | MediaPart


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolResultPart:
    call_id: str
    name: str | None
    content: tuple[ContentPart, ...]
    is_error: bool = False


Part = TextPart | MediaPart | ReasoningPart | ToolCallPart | ToolResultPart


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    parts: tuple[Part, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolSpec:
    name: str
    description: str | None = None
    parameters: Mapping[str, Any] | None = None  # JSON Schema of the arguments object


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolChoice:
    mode: Literal["auto", "none", "required", "tool"] = "auto"
    name: str | None = None  # with mode "tool"
    parallel: bool | None = None  # False: at most one call per turn


@dataclass(frozen=True, slots=True, kw_only=True)
class Reasoning:
    """A request for thinking: a token budget, an effort level, or both unknown.

    `enabled=False` asks for no thinking at all.
    """

    enabled: bool = True
    budget: int | None = None
    effort: str | None = None  # low / medium / high (OpenAI's words)
    include_thoughts: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseFormat:
    kind: Literal["json_object", "json_schema"]
    schema: Mapping[str, Any] | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatRequest:
    model: str
    messages: tuple[Message, ...]
    system: tuple[TextPart, ...] = ()
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: ToolChoice | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    reasoning: Reasoning | None = None
    response_format: ResponseFormat | None = None
    user: str | None = None
    stream: bool = False
    include_usage: bool = False  # OpenAI clients: a final usage chunk was asked for


class Usage(NamedTuple):
    """Token counts. `input_tokens` includes cached ones; `output_tokens` includes
    reasoning ones (OpenAI's convention; each codec converts at its edge).

    A NamedTuple, not a frozen dataclass: every converted answer builds one or two,
    and a frozen dataclass's `__init__` costs half as much again as a tuple."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read: int = 0
    cache_write: int = 0
    reasoning: int | None = None


class PlainChat(NamedTuple):
    """A plain chat, the most common request, in a compact form: the fast path of
    request conversion (codecs' `plain_request_in` / `plain_request_out`).

    It stands for exactly `as_request()`: system texts, then turns of text that
    alternate user, assistant, user, ... (each one text, none blank), and sampling.
    A reader returns one only for a body whose general reading is that request, and a
    writer must write what `request_from_canonical(chat.as_request())` writes (both
    checked by property tests), so the fast path never answers differently; it just
    skips building and walking the general form."""

    model: str
    system: tuple[str, ...]
    turns: tuple[str, ...]
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    user: str | None = None
    stream: bool = False
    include_usage: bool = False

    def as_request(self) -> ChatRequest:
        roles = (Role.USER, Role.ASSISTANT)
        return ChatRequest(
            model=self.model,
            messages=tuple(
                Message(roles[i % 2], (TextPart(text=text),))
                for i, text in enumerate(self.turns)
            ),
            system=tuple(TextPart(text=text) for text in self.system),
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            stop=self.stop,
            seed=self.seed,
            presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty,
            user=self.user,
            stream=self.stream,
            include_usage=self.include_usage,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatResponse:
    id: str
    model: str
    parts: tuple[Part, ...]
    stop_reason: StopReason = StopReason.END_TURN
    stop_sequence: str | None = None
    usage: Usage | None = None


class PlainAnswer(NamedTuple):
    """An answer of one text, the most common one, in a compact form: the fast path of
    answer conversion (codecs' `plain_response_in` / `plain_response_out`), under the
    same contract as PlainChat: it stands for exactly `as_response()`."""

    id: str
    model: str
    text: str
    stop_reason: StopReason
    stop_sequence: str | None
    usage: Usage | None

    def as_response(self) -> ChatResponse:
        return ChatResponse(
            id=self.id,
            model=self.model,
            parts=(TextPart(text=self.text),),
            stop_reason=self.stop_reason,
            stop_sequence=self.stop_sequence,
            usage=self.usage,
        )


# -- streaming -----------------------------------------------------------------------
#
# A stream is MessageStart, then parts in order, then MessageStop. Text and reasoning
# deltas of the same kind continue the open part; any other kind closes it. A tool call
# is open from its ToolCallStart until another part starts (a decoder may interleave
# argument deltas of parallel calls only if its source does; see the encoders).


@dataclass(frozen=True, slots=True)
class MessageStart:
    id: str
    model: str
    usage: Usage | None = None  # what is known up front (input tokens)


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str
    signature: Signature | None = None


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ReasoningSignature:
    """Closes the open reasoning part with its signature (or a redacted block)."""

    signature: Signature | None = None
    redacted: str | None = None


@dataclass(frozen=True, slots=True)
class ToolCallStart:
    index: int  # 0-based position among this message's tool calls
    id: str
    name: str
    signature: Signature | None = None


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    index: int
    arguments: str  # a fragment of the arguments' JSON text


@dataclass(frozen=True, slots=True)
class MessageStop:
    stop_reason: StopReason
    usage: Usage | None = None
    stop_sequence: str | None = None


StreamEvent = (
    MessageStart
    | TextDelta
    | ReasoningDelta
    | ReasoningSignature
    | ToolCallStart
    | ToolCallDelta
    | MessageStop
)
