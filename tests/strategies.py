"""Hypothesis strategies for canonical values that every protocol can express, and the
summaries two requests or answers are compared by after a trip through codecs."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

from aiclient.canonical import (
    ChatRequest,
    ChatResponse,
    Message,
    MessageStart,
    MessageStop,
    Part,
    ReasoningDelta,
    ReasoningPart,
    ReasoningSignature,
    Role,
    StopReason,
    StreamEvent,
    TextDelta,
    TextPart,
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
    ToolResultPart,
    ToolSpec,
    Usage,
)

words = st.lists(
    st.sampled_from(["Paris", "is", "sunny", "21 °C", "漢字", "a\nb", '"q"', "{x}", "0"]),
    min_size=1,
    max_size=4,
).map(" ".join)
names = st.sampled_from(["get_weather", "lookup", "a", "run_tool_2"])
arguments = st.dictionaries(
    st.sampled_from(["city", "n", "flag"]),
    st.integers(-5, 5) | words | st.booleans(),
    max_size=3,
).map(json.dumps)
ids = st.integers(0, 10**6).map(lambda n: f"call_{n}")


@st.composite
def conversations(draw: st.DrawFn) -> tuple[Message, ...]:
    """Alternating turns that start with the user; tool calls answered in order."""
    messages: list[Message] = []
    for _ in range(draw(st.integers(1, 3))):
        messages.append(Message(Role.USER, (TextPart(text=draw(words)),)))
        text = draw(st.none() | words)
        calls = draw(st.lists(st.tuples(names, arguments), max_size=2))
        parts: list[Part] = [TextPart(text=text)] if text else []
        call_ids = draw(
            st.lists(ids, min_size=len(calls), max_size=len(calls), unique=True)
        )
        parts += [
            ToolCallPart(id=i, name=n, arguments=a)
            for i, (n, a) in zip(call_ids, calls, strict=True)
        ]
        if not parts:
            parts = [TextPart(text=draw(words))]
        messages.append(Message(Role.ASSISTANT, tuple(parts)))
        if calls:
            results = tuple(
                ToolResultPart(call_id=i, name=n, content=(TextPart(text=draw(words)),))
                for i, (n, _) in zip(call_ids, calls, strict=True)
            )
            messages.append(Message(Role.USER, results))
            messages.append(Message(Role.ASSISTANT, (TextPart(text=draw(words)),)))
    messages.append(Message(Role.USER, (TextPart(text=draw(words)),)))
    return tuple(messages)


schemas = st.fixed_dictionaries(
    {
        "type": st.just("object"),
        "properties": st.dictionaries(
            names,
            st.sampled_from([{"type": "string"}, {"type": "integer"}]),
            min_size=1,
            max_size=3,
        ),
    }
)

requests = st.builds(
    ChatRequest,
    model=st.just("m"),
    messages=conversations(),
    system=st.lists(words.map(lambda t: TextPart(text=t)), max_size=1).map(tuple),
    tools=st.lists(
        st.builds(ToolSpec, name=names, description=st.none() | words, parameters=schemas),
        max_size=2,
        unique_by=lambda t: t.name,
    ).map(tuple),
    max_tokens=st.integers(1, 4096),  # Anthropic cannot express "no limit"
    temperature=st.none() | st.sampled_from([0.0, 0.5, 1.0]),
    stop=st.lists(words, max_size=2).map(tuple),
)

usages = st.builds(
    lambda input_tokens, output_tokens: Usage(input_tokens, output_tokens),
    st.integers(0, 999),
    st.integers(0, 999),
)


@st.composite
def responses(draw: st.DrawFn, mixed: bool = False) -> ChatResponse:
    """An answer: text, then tool calls; `mixed` adds thinking and more texts, and puts
    all the parts in any order (what a stream of a thinking model can carry)."""
    text = draw(st.none() | words)
    calls = draw(
        st.lists(st.tuples(ids, names, arguments), max_size=3, unique_by=lambda c: c[0])
    )
    parts: list[Part] = [TextPart(text=text)] if text else []
    parts += [ToolCallPart(id=i, name=n, arguments=a) for i, n, a in calls]
    if mixed:
        more = st.builds(TextPart, text=words) | st.builds(ReasoningPart, text=words)
        parts = draw(st.permutations(parts + draw(st.lists(more, max_size=3))))
    reason = draw(st.sampled_from([StopReason.END_TURN, StopReason.MAX_TOKENS]))
    if calls:
        reason = StopReason.TOOL_USE
    return ChatResponse(
        id="r1", model="m", parts=tuple(parts), stop_reason=reason, usage=draw(usages)
    )


def summary(request: ChatRequest) -> dict[str, Any]:
    turns: list[tuple[str, str, list[Any], list[Any]]] = []
    for message in request.messages:
        texts = "".join(p.text for p in message.parts if isinstance(p, TextPart))
        calls = [
            (p.name, json.loads(p.arguments or "{}"))
            for p in message.parts
            if isinstance(p, ToolCallPart)
        ]
        results = [
            ("".join(c.text for c in p.content if isinstance(c, TextPart)), p.is_error)
            for p in message.parts
            if isinstance(p, ToolResultPart)
        ]
        if turns and turns[-1][0] == message.role.value:  # one turn, however split
            role, text0, calls0, results0 = turns[-1]
            turns[-1] = (role, text0 + texts, calls0 + calls, results0 + results)
        else:
            turns.append((message.role.value, texts, calls, results))
    return {
        "system": "\n\n".join(p.text for p in request.system),
        "turns": turns,
        "tools": [(t.name, t.description, dict(t.parameters or {})) for t in request.tools],
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "stop": request.stop,
    }


def answer_summary(response: ChatResponse) -> dict[str, Any]:
    return {
        "text": "".join(p.text for p in response.parts if isinstance(p, TextPart)),
        "reasoning": "".join(
            p.text for p in response.parts if isinstance(p, ReasoningPart)
        ),
        "calls": [
            (p.name, json.loads(p.arguments or "{}"))
            for p in response.parts
            if isinstance(p, ToolCallPart)
        ],
        "stop": response.stop_reason,
        "usage": (response.usage.input_tokens, response.usage.output_tokens)
        if response.usage
        else None,
    }


def events_of(response: ChatResponse, pieces: int) -> list[StreamEvent]:
    """The canonical stream of `response`, text and arguments cut into `pieces`."""
    events: list[StreamEvent] = [MessageStart(response.id, response.model)]
    tool = 0
    for part in response.parts:
        if isinstance(part, TextPart):
            events += [TextDelta(t) for t in _cut(part.text, pieces)]
        elif isinstance(part, ReasoningPart):
            events += [ReasoningDelta(t) for t in _cut(part.text, pieces)]
            events.append(ReasoningSignature(part.signature))
        elif isinstance(part, ToolCallPart):
            events.append(ToolCallStart(tool, part.id, part.name))
            events += [ToolCallDelta(tool, t) for t in _cut(part.arguments, pieces)]
            tool += 1
    events.append(MessageStop(response.stop_reason, response.usage))
    return events


def fold(events: list[StreamEvent]) -> ChatResponse:
    """A canonical stream folded back into one answer."""
    parts: list[Part] = []
    text: list[str] = []
    reasoning: list[str] = []
    calls: dict[int, list[str]] = {}
    starts: dict[int, ToolCallStart] = {}
    stop = MessageStop(StopReason.END_TURN)
    for event in events:
        if isinstance(event, TextDelta):
            text.append(event.text)
        elif isinstance(event, ReasoningDelta):
            reasoning.append(event.text)
        elif isinstance(event, ToolCallStart):
            starts[event.index] = event
            calls[event.index] = []
        elif isinstance(event, ToolCallDelta):
            calls[event.index].append(event.arguments)
        elif isinstance(event, MessageStop):
            stop = event
    if reasoning:
        parts.append(ReasoningPart(text="".join(reasoning)))
    if text:
        parts.append(TextPart(text="".join(text)))
    for index, start in sorted(starts.items()):
        parts.append(
            ToolCallPart(id=start.id, name=start.name, arguments="".join(calls[index]))
        )
    return ChatResponse(
        id="", model="", parts=tuple(parts), stop_reason=stop.stop_reason, usage=stop.usage
    )


def _cut(text: str, pieces: int) -> list[str]:
    if not text:
        return []
    size = max(1, len(text) // pieces)
    return [text[i : i + size] for i in range(0, len(text), size)]
