"""The plain fast paths (canonical.PlainChat, PlainAnswer) write exactly what the
general path writes.

A reader may decline any body, but one it reads must mean what the general reader
makes of it; a writer must write what the general writer writes for that value.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiclient.canonical import PlainAnswer, PlainChat, StopReason, Usage
from aiclient.errors import InvalidRequest, UnsupportedConversion
from aiclient.protocols import ApiProtocol
from aiclient.protocols.codecs import CODECS

READERS = [p for p in ApiProtocol if CODECS[p].plain_request_in is not None]
WRITERS = [p for p in ApiProtocol if CODECS[p].plain_request_out is not None]

texts = st.sampled_from(["Hi", "", "  ", "hello \n", " two words ", "ünï"]) | st.text(
    max_size=8
)
numbers = st.none() | st.integers(-2, 3000) | st.floats(-1, 3, allow_nan=False)
odd_values = st.sampled_from([True, False, "1", [], {}, [1], ["a", ""], {"a": 1}])
values = numbers | texts | odd_values | st.lists(texts, max_size=3)

# The fields each client protocol's plain reader may see, plus some it must refuse.
FIELDS = {
    ApiProtocol.OPENAI: [
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "stop",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "user",
        "stream",
        "stream_options",
        "n",
        "tools",
        "reasoning_effort",
        "logit_bias",
    ],
    ApiProtocol.CLAUDE: [
        "max_tokens",
        "system",
        "temperature",
        "top_p",
        "top_k",
        "stop_sequences",
        "stream",
        "metadata",
        "thinking",
        "tools",
    ],
}
ROLES = {
    ApiProtocol.OPENAI: ["user", "assistant", "system", "developer", "tool"],
    ApiProtocol.CLAUDE: ["user", "assistant", "system"],
}


def contents() -> st.SearchStrategy[Any]:
    block = st.fixed_dictionaries(
        {"type": st.sampled_from(["text", "image"]), "text": texts},
        optional={"cache_control": st.just({"type": "ephemeral"})},
    )
    return texts | st.lists(block, min_size=1, max_size=2) | st.none() | st.just(3)


@st.composite
def bodies(draw: st.DrawFn, protocol: ApiProtocol) -> dict[str, Any]:
    """Bodies near the plain shape: mostly turns alternating from the user, with
    now and then a rule broken (a role out of turn, a blank or missing text, a
    block list, an extra key, a field of the wrong type)."""
    count = draw(st.integers(1, 5))
    messages: list[Any] = []
    if protocol is ApiProtocol.OPENAI and draw(st.booleans()):
        messages.append({"role": "system", "content": draw(texts)})
    for i in range(count):
        role = ("user", "assistant")[i % 2]
        if draw(st.integers(0, 9)) == 0:
            role = draw(st.sampled_from(ROLES[protocol]))
        content = draw(texts.filter(str.strip)) if draw(st.booleans()) else draw(contents())
        message: dict[str, Any] = {"role": role, "content": content}
        if draw(st.integers(0, 14)) == 0:
            message[draw(st.sampled_from(["name", "tool_calls", "extra"]))] = "x"
        messages.append(message)
    models = ["gpt-4o"] * 8 + ["claude-sonnet-4", "", None, 5]  # mostly a valid one
    body: dict[str, Any] = {"model": draw(st.sampled_from(models)), "messages": messages}
    for field in draw(st.lists(st.sampled_from(FIELDS[protocol]), max_size=5, unique=True)):
        if field in ("stream_options", "metadata"):
            key = "include_usage" if field == "stream_options" else "user_id"
            body[field] = {key: draw(st.booleans() | texts)}
        elif field == "stream":
            body[field] = draw(st.booleans() | st.none())
        else:
            body[field] = draw(values)
    return body


def _general(protocol: ApiProtocol, body: dict[str, Any]) -> Any:
    """The general reading, or the error it ends in (the endpoints turn any of these
    into a 400)."""
    try:
        return CODECS[protocol].request_to_canonical(body, model=None)
    except (InvalidRequest, UnsupportedConversion, TypeError, AttributeError) as exc:
        return exc


@pytest.mark.parametrize("protocol", READERS, ids=[p.value for p in READERS])
@settings(max_examples=250, deadline=None)
@given(data=st.data())
def test_a_plain_reading_is_the_general_reading(
    protocol: ApiProtocol, data: st.DataObject
) -> None:
    body = data.draw(bodies(protocol))
    reader = CODECS[protocol].plain_request_in
    assert reader is not None
    plain = reader(body)
    if plain is not None:
        assert plain.as_request() == _general(protocol, body)


PAIRS = [(c, u) for c in READERS for u in WRITERS if c is not u]


@pytest.mark.parametrize(
    ("client", "upstream"), PAIRS, ids=[f"{c.value}-to-{u.value}" for c, u in PAIRS]
)
@settings(max_examples=250, deadline=None)
@given(data=st.data())
def test_the_fast_path_sends_what_the_general_path_sends(
    client: ApiProtocol, upstream: ApiProtocol, data: st.DataObject
) -> None:
    """Reader then writer, against the general reader then writer: the upstream gets
    the same body either way."""
    body = data.draw(bodies(client))
    reader, writer = CODECS[client].plain_request_in, CODECS[upstream].plain_request_out
    assert reader is not None and writer is not None
    plain = reader(body)
    if plain is not None:
        general = _general(client, body)
        assert writer(plain) == CODECS[upstream].request_from_canonical(general)


plain_chats = st.builds(
    PlainChat,
    model=st.sampled_from(["m", "claude-sonnet-4", "gpt-4o"]),
    system=st.lists(texts, max_size=3).map(tuple),
    turns=st.lists(texts.filter(str.strip), min_size=1, max_size=5).map(tuple),
    max_tokens=st.none() | st.integers(0, 100_000),
    temperature=st.none() | st.floats(0, 2, allow_nan=False),
    top_p=st.none() | st.floats(0, 1, allow_nan=False),
    top_k=st.none() | st.integers(0, 500),
    stop=st.lists(texts, max_size=6).map(tuple),
    seed=st.none() | st.integers(-5, 10**9),
    presence_penalty=st.none() | st.floats(-2, 2, allow_nan=False),
    frequency_penalty=st.none() | st.floats(-2, 2, allow_nan=False),
    user=st.none() | texts,
    stream=st.booleans(),
    include_usage=st.booleans(),
)


@pytest.mark.parametrize("protocol", WRITERS, ids=[p.value for p in WRITERS])
@settings(max_examples=200, deadline=None)
@given(chat=plain_chats)
def test_a_plain_writing_is_the_general_writing(
    protocol: ApiProtocol, chat: PlainChat
) -> None:
    writer = CODECS[protocol].plain_request_out
    assert writer is not None
    general = CODECS[protocol].request_from_canonical(chat.as_request())
    assert writer(chat) == general
    assert list(writer(chat)) == list(general)  # the same order of fields on the wire


SDK_BODIES = {
    ApiProtocol.OPENAI: {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "How are you?"},
        ],
        "max_tokens": 100,
        "temperature": 0.7,
        "stream": True,
        "stream_options": {"include_usage": True},
    },
    ApiProtocol.CLAUDE: {
        "model": "claude-sonnet-4",
        "max_tokens": 1024,
        "system": [
            {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}
        ],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "How are you?"},
        ],
        "temperature": 1,
        "stop_sequences": ["END"],
        "metadata": {"user_id": "u-1"},
    },
}


@pytest.mark.parametrize("protocol", READERS, ids=[p.value for p in READERS])
def test_everyday_chats_take_the_fast_path(protocol: ApiProtocol) -> None:
    """A chat as the SDKs send it is read plain (the fast path is not dead code)."""
    reader = CODECS[protocol].plain_request_in
    assert reader is not None
    plain = reader(SDK_BODIES[protocol])
    assert plain is not None
    assert plain.as_request() == _general(protocol, SDK_BODIES[protocol])
    assert len(plain.turns) == 3


# -- answers ---------------------------------------------------------------------------

ANSWER_READERS = [p for p in ApiProtocol if CODECS[p].plain_response_in is not None]
ANSWER_WRITERS = [p for p in ApiProtocol if CODECS[p].plain_response_out is not None]
counts = st.none() | st.integers(0, 10**6) | st.sampled_from([True, "3", 1.5])
ids = st.sampled_from(["msg_01", "chatcmpl-9", "abc-def", "", None])


def claude_usage() -> st.SearchStrategy[Any]:
    return st.none() | st.fixed_dictionaries(
        {"input_tokens": counts, "output_tokens": counts},
        optional={"cache_read_input_tokens": counts, "cache_creation_input_tokens": counts},
    )


def openai_usage() -> st.SearchStrategy[Any]:
    return st.none() | st.fixed_dictionaries(
        {"prompt_tokens": counts, "completion_tokens": counts},
        optional={
            "prompt_tokens_details": st.fixed_dictionaries({"cached_tokens": counts}),
            "completion_tokens_details": st.fixed_dictionaries(
                {"reasoning_tokens": counts}
            ),
        },
    )


@st.composite
def answer_bodies(draw: st.DrawFn, protocol: ApiProtocol) -> dict[str, Any]:
    """Answers near the plain shape: mostly one text, now and then reasoning, a tool
    call, a refusal, no text, or a field of the wrong type."""
    body: dict[str, Any] = {
        "id": draw(ids),
        "model": draw(st.sampled_from(["m", "", None])),
    }
    text = draw(texts.filter(bool)) if draw(st.booleans()) else draw(texts | st.none())
    if protocol is ApiProtocol.CLAUDE:
        block: Any = {"type": "text", "text": text}
        others: list[Any] = [
            {"type": "thinking", "thinking": "hm", "signature": "sig"},
            {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}},
            {"type": "text", "text": "more"},
            "junk",
        ]
        extra = draw(st.lists(st.sampled_from(others), max_size=1))
        body["content"] = draw(st.permutations([block, *extra]))
        body["stop_reason"] = draw(
            st.sampled_from(
                ["end_turn", "max_tokens", "stop_sequence", "tool_use", None, 7]
            )
        )
        body["stop_sequence"] = draw(st.none() | texts | st.just(5))
        body["usage"] = draw(claude_usage())
        return body
    message: dict[str, Any] = {"role": "assistant", "content": text}
    for key, value in draw(
        st.lists(
            st.sampled_from(
                [
                    ("refusal", None),
                    ("refusal", "no"),
                    ("reasoning_content", "hm"),
                    ("reasoning_content", None),
                    ("reasoning", "hm"),
                    ("tool_calls", []),
                    (
                        "tool_calls",
                        [{"id": "c1", "function": {"name": "f", "arguments": "{}"}}],
                    ),
                ]
            ),
            max_size=2,
        )
    ):
        message[key] = value
    choice = {"index": 0, "message": message}
    choice["finish_reason"] = draw(
        st.sampled_from(["stop", "length", "tool_calls", None, 3])
    )
    body["choices"] = draw(st.sampled_from([[choice], [], [choice, choice]]))
    body["usage"] = draw(openai_usage())
    return body


def _general_answer(protocol: ApiProtocol, body: dict[str, Any]) -> Any:
    try:
        return CODECS[protocol].response_to_canonical(body)
    except (InvalidRequest, TypeError, AttributeError, KeyError) as exc:
        return exc


def _same_clock(written: dict[str, Any], general: dict[str, Any]) -> dict[str, Any]:
    """`written` with the general answer's `created` second (both read the clock)."""
    return {**written, "created": general["created"]} if "created" in general else written


@pytest.mark.parametrize("protocol", ANSWER_READERS, ids=[p.value for p in ANSWER_READERS])
@settings(max_examples=250, deadline=None)
@given(data=st.data())
def test_a_plain_answer_reading_is_the_general_reading(
    protocol: ApiProtocol, data: st.DataObject
) -> None:
    body = data.draw(answer_bodies(protocol))
    reader = CODECS[protocol].plain_response_in
    assert reader is not None
    plain = reader(body)
    if plain is not None:
        general = _general_answer(protocol, body)
        if not body.get("id"):  # each made up an id
            general = replace(general, id=plain.id)
        assert plain.as_response() == general


plain_answers = st.builds(
    PlainAnswer,
    id=st.sampled_from(["msg_01", "chatcmpl-9", "abc-def", "x"]),
    model=st.sampled_from(["m", "", "claude-sonnet-4"]),
    text=texts,
    stop_reason=st.sampled_from(list(StopReason)),
    stop_sequence=st.none() | texts,
    usage=st.none()
    | st.builds(
        Usage,
        input_tokens=st.integers(0, 10**6),
        output_tokens=st.integers(0, 10**6),
        cache_read=st.integers(0, 1000),
        cache_write=st.integers(0, 1000),
        reasoning=st.none() | st.integers(0, 1000),
    ),
)


@pytest.mark.parametrize("protocol", ANSWER_WRITERS, ids=[p.value for p in ANSWER_WRITERS])
@settings(max_examples=200, deadline=None)
@given(answer=plain_answers)
def test_a_plain_answer_writing_is_the_general_writing(
    protocol: ApiProtocol, answer: PlainAnswer
) -> None:
    writer = CODECS[protocol].plain_response_out
    assert writer is not None
    general = CODECS[protocol].response_from_canonical(answer.as_response())
    written = _same_clock(writer(answer), general)
    assert written == general
    assert list(written) == list(general)


ANSWER_PAIRS = [(u, c) for u in ANSWER_READERS for c in ANSWER_WRITERS if u is not c]


@pytest.mark.parametrize(
    ("upstream", "client"),
    ANSWER_PAIRS,
    ids=[f"{u.value}-to-{c.value}" for u, c in ANSWER_PAIRS],
)
@settings(max_examples=250, deadline=None)
@given(data=st.data())
def test_the_fast_path_answers_what_the_general_path_answers(
    upstream: ApiProtocol, client: ApiProtocol, data: st.DataObject
) -> None:
    body = data.draw(answer_bodies(upstream))
    reader, writer = CODECS[upstream].plain_response_in, CODECS[client].plain_response_out
    assert reader is not None and writer is not None
    plain = reader(body)
    if plain is not None:
        general = _general_answer(upstream, body)
        if not body.get("id"):
            general = replace(general, id=plain.id)
        expected = CODECS[client].response_from_canonical(general)
        assert _same_clock(writer(plain), expected) == expected


def test_everyday_answers_take_the_fast_path() -> None:
    claude = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4",
        "content": [{"type": "text", "text": "Hello!"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 3},
    }
    openai = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello!", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
    }
    for protocol, body in ((ApiProtocol.CLAUDE, claude), (ApiProtocol.OPENAI, openai)):
        reader = CODECS[protocol].plain_response_in
        assert reader is not None
        plain = reader(body)
        assert plain is not None
        assert plain.text == "Hello!"
        assert plain.as_response() == _general_answer(protocol, body)
