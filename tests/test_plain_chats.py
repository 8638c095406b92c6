"""The plain-chat fast path (canonical.PlainChat) answers exactly as the general path.

A reader may decline any body, but one it reads must mean what the general reader
makes of it; a writer must write what the general writer writes for that request.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiclient.canonical import PlainChat
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
    ApiProtocol.GEMINI: [],
}
ROLES = {
    ApiProtocol.OPENAI: ["user", "assistant", "system", "developer", "tool"],
    ApiProtocol.CLAUDE: ["user", "assistant", "system"],
    ApiProtocol.GEMINI: [],
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
    body: dict[str, Any] = {
        "model": draw(st.sampled_from(["m", "", None, 5])),
        "messages": messages,
    }
    if draw(st.integers(0, 12)) == 0:
        body["model"] = "claude-sonnet-4"
    else:
        body["model"] = body["model"] if draw(st.integers(0, 6)) == 0 else "gpt-4o"
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
