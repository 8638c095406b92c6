"""Conversation rules shared by the strict targets (Anthropic Messages and Gemini).

Both want alternating user/assistant turns that start with the user, no empty turns, and
every tool call answered in the very next user turn. OpenAI accepts looser histories, so
a request from an OpenAI client is normalised here before it is rendered:

1. System messages after the first turn are hoisted into the system prompt, in order
   (their position is lost; the targets have one system slot).
2. Blank text parts are dropped (both targets reject them).
3. Consecutive turns of the same role are merged.
4. Each assistant tool call gets its result in the next user turn, results first and in
   call order; a call left unanswered gets an error result ("no result: the tool call was
   interrupted"); a result whose call is not in the previous assistant turn becomes user
   text, since both targets reject it.
5. A history that would start with the assistant gets a "." user turn first.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..canonical import (
    Message,
    Part,
    Role,
    TextPart,
    ToolCallPart,
    ToolResultPart,
)

__all__ = ["INTERRUPTED", "normalise_history", "result_text"]

INTERRUPTED = "No result: the tool call was interrupted."


def result_text(result: ToolResultPart) -> str:
    content = result.content
    if len(content) == 1 and type(content[0]) is TextPart:  # the usual result
        return content[0].text
    return "\n".join(p.text for p in content if isinstance(p, TextPart))


def _keep(part: Part) -> bool:
    if type(part) is TextPart:
        text = part.text  # (isspace, not strip: no copy of a long text)
        return (bool(text) and not text.isspace()) or part.signature is not None
    return True


def _merged(messages: Iterable[Message]) -> list[Message]:
    out: list[Message] = []
    for message in messages:
        parts = message.parts
        if not all(map(_keep, parts)):
            parts = tuple(p for p in parts if _keep(p))
            if not parts:
                continue
            message = Message(message.role, parts)
        if out and out[-1].role is message.role:
            out[-1] = Message(message.role, out[-1].parts + parts)
        else:
            out.append(message)  # unchanged: values are immutable, so no copy
    return out


def _answered(calls: list[ToolCallPart], turn: Message) -> bool:
    """Whether `turn` already is the answer to `calls`: their results first, in call
    order, named, and no other result after them (the usual history)."""
    parts = turn.parts
    if len(parts) < len(calls):
        return False
    for call, part in zip(calls, parts, strict=False):
        if type(part) is not ToolResultPart or part.call_id != call.id or part.name is None:
            return False
    return not any(type(p) is ToolResultPart for p in parts[len(calls) :])


def _answer(calls: list[ToolCallPart], turn: Message | None) -> tuple[Message, list[Part]]:
    """The user turn after `calls`: their results first, in order; plus leftovers."""
    by_id: dict[str, ToolResultPart] = {}
    rest: list[Part] = []
    for part in turn.parts if turn is not None else ():
        if (
            isinstance(part, ToolResultPart)
            and part.call_id not in by_id
            and any(c.id == part.call_id for c in calls)
        ):
            by_id[part.call_id] = part
            continue
        rest.append(part)
    results: list[Part] = []
    for call in calls:
        found = by_id.get(call.id)
        if found is None:
            found = ToolResultPart(
                call_id=call.id,
                name=call.name,
                content=(TextPart(text=INTERRUPTED),),
                is_error=True,
            )
        elif found.name is None:
            found = ToolResultPart(
                call_id=found.call_id,
                name=call.name,
                content=found.content,
                is_error=found.is_error,
            )
        results.append(found)
    return Message(Role.USER, tuple(results)), rest


def _orphan(part: ToolResultPart) -> TextPart:
    label = part.name or part.call_id
    prefix = "error" if part.is_error else "result"
    return TextPart(text=f"[tool {prefix} for {label}]: {result_text(part)}")


def normalise_history(
    messages: Iterable[Message],
) -> tuple[tuple[TextPart, ...], list[Message]]:
    """(hoisted system parts, user/assistant turns obeying the rules above)."""
    hoisted: list[TextPart] = []
    turns: list[Message] = []
    for message in messages:
        if message.role is Role.SYSTEM:
            hoisted.extend(p for p in message.parts if isinstance(p, TextPart))
        else:
            turns.append(message)
    merged = _merged(turns)
    out: list[Message] = []
    i = 0
    while i < len(merged):
        message = merged[i]
        if message.role is Role.USER:
            if any(isinstance(p, ToolResultPart) for p in message.parts):
                parts = tuple(
                    _orphan(p) if isinstance(p, ToolResultPart) else p
                    for p in message.parts
                )
                message = Message(Role.USER, parts)
            out.append(message)
            i += 1
            continue
        out.append(message)
        calls = [p for p in message.parts if type(p) is ToolCallPart]
        i += 1
        if not calls:
            continue
        following = merged[i] if i < len(merged) and merged[i].role is Role.USER else None
        if following is not None and _answered(calls, following):
            out.append(following)
            i += 1
            continue
        answer, rest = _answer(calls, following)
        rest_parts = tuple(_orphan(p) if isinstance(p, ToolResultPart) else p for p in rest)
        out.append(Message(Role.USER, answer.parts + rest_parts))
        if following is not None:
            i += 1
    if out and out[0].role is Role.ASSISTANT:
        out.insert(0, Message(Role.USER, (TextPart(text="."),)))
    return tuple(p for p in hoisted if p.text.strip()), out
