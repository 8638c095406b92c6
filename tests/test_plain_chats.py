"""The plain fast paths (canonical.PlainChat, PlainAnswer) write exactly what the
general path writes.

A reader may decline any body, but one it reads must mean what the general reader
makes of it; a writer must write what the general writer writes for that value.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
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
# Gemini: generationConfig's fields and the body's, each with some to refuse.
GEMINI_CONFIG = [
    "maxOutputTokens",
    "temperature",
    "topP",
    "topK",
    "seed",
    "presencePenalty",
    "frequencyPenalty",
    "stopSequences",
    "candidateCount",
    "thinkingConfig",
    "responseMimeType",
    "max_output_tokens",
]
GEMINI_FIELDS = [
    "systemInstruction",
    "system_instruction",
    "safetySettings",
    "tools",
    "toolConfig",
    "generation_config",
]
# Values of the right type for generationConfig's sampling fields (drawn most of the
# time, so that whole bodies are often plain).
GEMINI_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "maxOutputTokens": st.integers(1, 5000),
    "temperature": st.floats(0, 2, allow_nan=False) | st.integers(0, 2),
    "topP": st.floats(0, 1, allow_nan=False),
    "topK": st.integers(1, 100),
    "seed": st.integers(-5, 10**6),
    "presencePenalty": st.floats(-2, 2, allow_nan=False),
    "frequencyPenalty": st.integers(-2, 2),
    "stopSequences": st.lists(texts, min_size=1, max_size=3),
    "candidateCount": st.sampled_from([0, 1, 2, 5]),
}
# A Gemini client names the model in the URL (request_to_canonical's `model`).
URL_MODEL = "gemini-2.5-flash"


def _url_model(protocol: ApiProtocol) -> str | None:
    return URL_MODEL if protocol is ApiProtocol.GEMINI else None


def contents() -> st.SearchStrategy[Any]:
    block = st.fixed_dictionaries(
        {"type": st.sampled_from(["text", "image"]), "text": texts},
        optional={"cache_control": st.just({"type": "ephemeral"})},
    )
    return texts | st.lists(block, min_size=1, max_size=2) | st.none() | st.just(3)


gemini_systems = (
    texts
    | st.none()
    | st.just(3)
    | st.fixed_dictionaries(
        {"parts": st.lists(st.fixed_dictionaries({"text": texts}), max_size=2)},
        optional={"role": st.just("user")},
    )
    | st.sampled_from(
        [
            {"parts": [{"text": "a"}, {"inlineData": {"mimeType": "image/png"}}]},
            {"parts": "x"},
            {"parts": [{"text": "a", "thought": True}]},
            {"role": "user"},
        ]
    )
)
odd_gemini_parts = st.sampled_from(
    [
        [],
        [{"text": "a"}, {"text": "b"}],
        [{"inlineData": {"mimeType": "image/png", "data": "AA=="}}],
        [{"text": "a", "thought": True}],
        [{"text": "a", "thoughtSignature": "c2ln"}],
        [{"functionCall": {"name": "f", "args": {}}}],
        "x",
    ]
)


@st.composite
def gemini_bodies(draw: st.DrawFn) -> dict[str, Any]:
    """Gemini bodies: half of them plain, the others near the plain shape with a
    rule broken here and there (as `bodies`)."""
    broken = draw(st.booleans())

    def now_and_then(odds: int) -> bool:  # a rule broken, 1 in `odds` times
        return broken and draw(st.integers(1, odds)) == 1

    contents: list[Any] = []
    for i in range(draw(st.integers(1, 5))):
        role: Any = ("user", "model")[i % 2]
        if now_and_then(10):
            role = draw(st.sampled_from(["user", "model", "system", None]))
        text = draw(texts if now_and_then(5) else texts.filter(str.strip))
        parts = draw(odd_gemini_parts) if now_and_then(10) else [{"text": text}]
        content: dict[str, Any] = {"parts": parts, "role": role}
        if role is None:
            del content["role"]
        if now_and_then(15):
            content["extra"] = 1
        contents.append(content)
    body: dict[str, Any] = {"contents": contents}
    if now_and_then(20):
        body["contents"] = draw(st.sampled_from([[], None, "x", [3]]))
    fields = GEMINI_FIELDS if broken else ["systemInstruction", "safetySettings"]
    for field in draw(st.lists(st.sampled_from(fields), max_size=2, unique=True)):
        body[field] = draw(gemini_systems if "system" in field else values)
    if draw(st.booleans()):
        fields = GEMINI_CONFIG if broken else list(GEMINI_VALUES)
        chosen = draw(st.lists(st.sampled_from(fields), max_size=5, unique=True))
        body["generationConfig"] = {
            f: draw(values if now_and_then(3) else GEMINI_VALUES.get(f, values))
            for f in chosen
        }
    elif now_and_then(10):
        body["generationConfig"] = draw(values)
    return body


@st.composite
def bodies(draw: st.DrawFn, protocol: ApiProtocol) -> dict[str, Any]:
    """Bodies near the plain shape: mostly turns alternating from the user, with
    now and then a rule broken (a role out of turn, a blank or missing text, a
    block list, an extra key, a field of the wrong type)."""
    if protocol is ApiProtocol.GEMINI:
        return draw(gemini_bodies())
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
        return CODECS[protocol].request_to_canonical(body, model=_url_model(protocol))
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
    plain = reader(body, model=_url_model(protocol))
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
    plain = reader(body, model=_url_model(client))
    if plain is not None:
        general = _general(client, body)
        expected = CODECS[upstream].request_from_canonical(general)
        # As bytes: what goes on the wire, so 1 and 1.0 or a field order differ too.
        assert orjson.dumps(writer(plain)) == orjson.dumps(expected)


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


SDK_BODIES: dict[ApiProtocol, dict[str, Any]] = {
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
    ApiProtocol.GEMINI: {  # as google-genai sends it
        "contents": [
            {"parts": [{"text": "Hi"}], "role": "user"},
            {"parts": [{"text": "Hello!"}], "role": "model"},
            {"parts": [{"text": "How are you?"}], "role": "user"},
        ],
        "systemInstruction": {"parts": [{"text": "Be brief."}], "role": "user"},
        "generationConfig": {"temperature": 0.7, "maxOutputTokens": 100},
    },
}


@pytest.mark.parametrize("protocol", READERS, ids=[p.value for p in READERS])
def test_everyday_chats_take_the_fast_path(protocol: ApiProtocol) -> None:
    """A chat as the SDKs send it is read plain (the fast path is not dead code)."""
    reader = CODECS[protocol].plain_request_in
    assert reader is not None
    plain = reader(SDK_BODIES[protocol], model=_url_model(protocol))
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


def gemini_usage() -> st.SearchStrategy[Any]:
    return st.none() | st.fixed_dictionaries(
        {"promptTokenCount": counts, "candidatesTokenCount": counts},
        optional={
            "totalTokenCount": counts,
            "cachedContentTokenCount": counts,
            "thoughtsTokenCount": counts,
        },
    )


# Where each protocol's answer keeps its id (without one, each reader makes one up).
ID_KEYS = {
    ApiProtocol.OPENAI: "id",
    ApiProtocol.CLAUDE: "id",
    ApiProtocol.GEMINI: "responseId",
}


@st.composite
def gemini_answer_bodies(draw: st.DrawFn) -> dict[str, Any]:
    text = draw(texts.filter(bool)) if draw(st.booleans()) else draw(texts | st.none())
    others: list[Any] = [
        {"text": "hm", "thought": True},
        {"functionCall": {"name": "f", "args": {"a": 1}}},
        {"text": "more"},
        {"text": "x", "thoughtSignature": "c2ln"},
        "junk",
    ]
    extra = draw(st.lists(st.sampled_from(others), max_size=1))
    parts = draw(st.permutations([{"text": text}, *extra]))
    candidate: dict[str, Any] = {
        "content": draw(
            st.sampled_from([{"role": "model", "parts": parts}, {"parts": parts}, None])
        ),
        "finishReason": draw(st.sampled_from(["STOP", "MAX_TOKENS", "SAFETY", None, 7])),
        "index": 0,
    }
    return {
        "candidates": draw(
            st.sampled_from([[candidate], [], [candidate, candidate], ["junk"], None])
        ),
        "usageMetadata": draw(gemini_usage()),
        "modelVersion": draw(st.sampled_from(["m", "", None])),
        "responseId": draw(ids),
    }


@st.composite
def answer_bodies(draw: st.DrawFn, protocol: ApiProtocol) -> dict[str, Any]:
    """Answers near the plain shape: mostly one text, now and then reasoning, a tool
    call, a refusal, no text, or a field of the wrong type."""
    if protocol is ApiProtocol.GEMINI:
        return draw(gemini_answer_bodies())
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
        if not body.get(ID_KEYS[protocol]):  # each made up an id
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
        if not body.get(ID_KEYS[upstream]):
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
    gemini = {
        "candidates": [
            {
                "content": {"parts": [{"text": "Hello!"}], "role": "model"},
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {
            "promptTokenCount": 12,
            "candidatesTokenCount": 3,
            "totalTokenCount": 15,
        },
        "modelVersion": "gemini-2.5-flash",
        "responseId": "r-1",
    }
    for protocol, body in (
        (ApiProtocol.CLAUDE, claude),
        (ApiProtocol.OPENAI, openai),
        (ApiProtocol.GEMINI, gemini),
    ):
        reader = CODECS[protocol].plain_response_in
        assert reader is not None
        plain = reader(body)
        assert plain is not None
        assert plain.text == "Hello!"
        assert plain.as_response() == _general_answer(protocol, body)
