"""The fake upstreams speak the real wire protocols: official SDKs drive them directly."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import httpx2
import openai
import pytest
from anthropic.types import Message, ToolParam
from openai.types.chat import ChatCompletionToolParam

from tests.fakes import FakeClaude, FakeOpenAI

GPT = "gpt-4o-mini"
CLAUDE = "claude-sonnet-4-6"
HELLO: list[Any] = [{"role": "user", "content": "Hi there"}]
WEATHER_SCHEMA: dict[str, object] = {
    "type": "object",
    "properties": {"location": {"type": "string"}},
    "required": ["location"],
}
OPENAI_TOOLS: list[ChatCompletionToolParam] = [
    {
        "type": "function",
        "function": {"name": "get_weather", "parameters": WEATHER_SCHEMA},
    }
]
CLAUDE_TOOLS: list[ToolParam] = [{"name": "get_weather", "input_schema": WEATHER_SCHEMA}]
WEATHER_QUESTION: list[Any] = [{"role": "user", "content": "What's the weather in Paris?"}]


@pytest.fixture
async def oai(fake_openai: FakeOpenAI) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(
        base_url=fake_openai.base_url + "/v1", api_key="sk-test", max_retries=0
    )
    async with client:
        yield client


@pytest.fixture
async def ant(fake_claude: FakeClaude) -> AsyncIterator[anthropic.AsyncAnthropic]:
    client = anthropic.AsyncAnthropic(
        base_url=fake_claude.base_url, api_key="sk-ant-test", max_retries=0
    )
    async with client:
        yield client


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def read_sse(response: aiohttp.ClientResponse) -> list[tuple[str | None, str]]:
    """Split a raw SSE body into (event, data) pairs."""
    text = (await response.read()).decode()
    events: list[tuple[str | None, str]] = []
    for frame in text.split("\n\n"):
        if not frame:
            continue
        name: str | None = None
        data = ""
        for line in frame.split("\n"):
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data = line.removeprefix("data: ")
        events.append((name, data))
    return events


# -- OpenAI ----------------------------------------------------------------------


async def test_openai_create_answers_default_text(
    fake_openai: FakeOpenAI, oai: openai.AsyncOpenAI
) -> None:
    """A plain create() returns a full chat.completion echoing the model."""
    completion = await oai.chat.completions.create(model=GPT, messages=HELLO)
    assert completion.id.startswith("chatcmpl-")
    assert completion.object == "chat.completion"
    assert completion.model == GPT
    choice = completion.choices[0]
    assert choice.message.content == fake_openai.default_text
    assert choice.message.role == "assistant"
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    usage = completion.usage
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    recorded = fake_openai.last_request
    assert (recorded.method, recorded.path) == ("POST", "/v1/chat/completions")
    assert recorded.headers["authorization"] == "Bearer sk-test"
    assert recorded.json["messages"] == HELLO
    assert fake_openai.hits == 1


async def test_openai_stream_has_canonical_chunks(
    fake_openai: FakeOpenAI, oai: openai.AsyncOpenAI
) -> None:
    """Role chunk, content chunks, finish chunk, then the usage chunk on request."""
    fake_openai.default_text = "The quick brown fox jumps over the lazy dog " * 2
    fake_openai.stream_chunks = 20
    stream = await oai.chat.completions.create(
        model=GPT,
        messages=HELLO,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.choices[0].delta.role is None for c in chunks[1:-1])
    pieces = [c.choices[0].delta.content for c in chunks[1:-2]]
    assert len(pieces) == 20
    assert "".join(p or "" for p in pieces) == fake_openai.default_text
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert len({c.id for c in chunks}) == 1


async def test_openai_stream_without_usage_and_done_sentinel(
    fake_openai: FakeOpenAI, http: aiohttp.ClientSession
) -> None:
    """Without include_usage no usage chunk is sent; the stream ends with [DONE]."""
    async with http.post(
        fake_openai.base_url + "/v1/chat/completions",
        json={"model": GPT, "messages": HELLO, "stream": True},
        headers={"Authorization": "Bearer sk-test"},
    ) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events = await read_sse(response)
    assert all(name is None for name, _ in events)
    assert events[-1] == (None, "[DONE]")
    chunks = [json.loads(data) for _, data in events[:-1]]
    assert all("usage" not in chunk for chunk in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"][0]["delta"] == {}


@pytest.mark.parametrize("padded", [True, False])
async def test_openai_stream_chunks_are_padded_unless_asked_not_to_be(
    fake_openai: FakeOpenAI, http: aiohttp.ClientSession, padded: bool
) -> None:
    """As api.openai.com does, every chunk carries random padding of random length
    (`obfuscation`, its last key) unless `stream_options.include_obfuscation` is false."""
    fake_openai.stream_chunks = 20
    options = {"include_usage": True} | ({} if padded else {"include_obfuscation": False})
    async with http.post(
        fake_openai.base_url + "/v1/chat/completions",
        json={"model": GPT, "messages": HELLO, "stream": True, "stream_options": options},
        headers={"Authorization": "Bearer sk-test"},
    ) as response:
        events = await read_sse(response)
    chunks = [json.loads(data) for _, data in events[:-1]]
    pads = [chunk.get("obfuscation") for chunk in chunks]
    if not padded:
        assert pads == [None] * len(chunks)
        return
    assert all(isinstance(pad, str) and pad.isalnum() for pad in pads)
    assert len({len(pad) for pad in pads}) > 1
    assert all(list(chunk)[-1] == "obfuscation" for chunk in chunks)


async def test_openai_stream_helper_accumulates(
    fake_openai: FakeOpenAI, oai: openai.AsyncOpenAI
) -> None:
    """The SDK's .stream() helper reassembles exactly the default text."""
    async with oai.chat.completions.stream(model=GPT, messages=HELLO) as stream:
        final = await stream.get_final_completion()
    assert final.choices[0].message.content == fake_openai.default_text
    assert final.choices[0].finish_reason == "stop"


async def test_openai_tool_call(oai: openai.AsyncOpenAI) -> None:
    """A weather question with tools yields a tool call with schema-valid arguments."""
    completion = await oai.chat.completions.create(
        model=GPT, messages=WEATHER_QUESTION, tools=OPENAI_TOOLS
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.id.startswith("call_")
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"location": "Paris"}


async def test_openai_streamed_tool_call(oai: openai.AsyncOpenAI) -> None:
    """Streamed tool-call deltas accumulate into one well-formed call."""
    async with oai.chat.completions.stream(
        model=GPT, messages=WEATHER_QUESTION, tools=OPENAI_TOOLS
    ) as stream:
        final = await stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    (call,) = choice.message.tool_calls
    assert call.id.startswith("call_")
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"location": "Paris"}


async def test_openai_tool_result_round_trip(
    fake_openai: FakeOpenAI, oai: openai.AsyncOpenAI
) -> None:
    """After the tool message the fake answers with text again."""
    first = await oai.chat.completions.create(
        model=GPT, messages=WEATHER_QUESTION, tools=OPENAI_TOOLS
    )
    assert first.choices[0].message.tool_calls is not None
    call = first.choices[0].message.tool_calls[0]
    history: list[Any] = [
        *WEATHER_QUESTION,
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "18C, sunny"},
    ]
    second = await oai.chat.completions.create(
        model=GPT, messages=history, tools=OPENAI_TOOLS
    )
    assert second.choices[0].message.content == fake_openai.default_text


async def test_openai_force_tool_call(
    fake_openai: FakeOpenAI, oai: openai.AsyncOpenAI
) -> None:
    fake_openai.force_tool_call = ("lookup", '{"q": "x"}')
    completion = await oai.chat.completions.create(model=GPT, messages=HELLO)
    assert completion.choices[0].message.tool_calls is not None
    call = completion.choices[0].message.tool_calls[0]
    assert call.type == "function"
    assert (call.function.name, call.function.arguments) == ("lookup", '{"q": "x"}')


async def test_openai_wrong_key_is_authentication_error(
    fake_openai: FakeOpenAI,
) -> None:
    client = openai.AsyncOpenAI(
        base_url=fake_openai.base_url + "/v1", api_key="sk-wrong", max_retries=0
    )
    async with client:
        with pytest.raises(openai.AuthenticationError) as caught:
            await client.chat.completions.create(model=GPT, messages=HELLO)
    assert caught.value.status_code == 401
    assert caught.value.code == "invalid_api_key"


async def test_openai_scripted_429_then_default(
    fake_openai: FakeOpenAI, oai: openai.AsyncOpenAI
) -> None:
    """One scripted reply is consumed per request; then the default answers."""
    fake_openai.reply_status(429, headers={"retry-after": "7"})
    with pytest.raises(openai.RateLimitError) as caught:
        await oai.chat.completions.create(model=GPT, messages=HELLO)
    assert caught.value.response.headers["retry-after"] == "7"
    assert caught.value.code == "rate_limit_exceeded"
    completion = await oai.chat.completions.create(model=GPT, messages=HELLO)
    assert completion.choices[0].message.content == fake_openai.default_text
    assert fake_openai.hits == 2


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        pytest.param([], "messages", id="empty"),
        pytest.param([{"role": "robot", "content": "x"}], "messages[0].role", id="role"),
        pytest.param(
            [{"role": "tool", "content": "x"}], "messages[0].tool_call_id", id="tool-id"
        ),
        pytest.param(
            [
                {"role": "user", "content": "x"},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "f"}}
                    ],
                },
            ],
            "messages[1].tool_calls[0].function.arguments",
            id="arguments",
        ),
        pytest.param(
            [
                {"role": "user", "content": "x"},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "f", "arguments": "{}"},
                        }
                    ],
                },
                {"role": "user", "content": "y"},
            ],
            "messages.[1].role",
            id="dangling-call",
        ),
    ],
)
async def test_openai_rejects_invalid_messages(
    oai: openai.AsyncOpenAI, messages: list[Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await oai.chat.completions.create(model=GPT, messages=messages)
    assert caught.value.param == param


async def test_openai_rejects_non_json_and_bad_stream_flag(
    fake_openai: FakeOpenAI, http: aiohttp.ClientSession
) -> None:
    url = fake_openai.base_url + "/v1/chat/completions"
    auth = {"Authorization": "Bearer sk-test"}
    async with http.post(url, data=b"{nope", headers=auth) as response:
        assert response.status == 400
        body = await response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    payload = {"model": GPT, "messages": HELLO, "stream": "yes"}
    async with http.post(url, json=payload, headers=auth) as response:
        assert response.status == 400
        assert (await response.json())["error"]["code"] == "invalid_type"


async def test_openai_unknown_model_and_model_list(
    fake_openai: FakeOpenAI, oai: openai.AsyncOpenAI
) -> None:
    fake_openai.unknown_models.add("gpt-nope")
    with pytest.raises(openai.NotFoundError) as caught:
        await oai.chat.completions.create(model="gpt-nope", messages=HELLO)
    assert caught.value.code == "model_not_found"
    listed = [model.id async for model in oai.models.list()]
    assert listed == fake_openai.models
    assert fake_openai.hits == 1  # model listing is not a generation


# -- Claude ----------------------------------------------------------------------


async def test_claude_create_answers_default_text(
    fake_claude: FakeClaude, ant: anthropic.AsyncAnthropic
) -> None:
    message = await ant.messages.create(model=CLAUDE, max_tokens=64, messages=HELLO)
    assert message.id.startswith("msg_")
    assert message.model == CLAUDE
    assert message.stop_reason == "end_turn"
    assert message.stop_sequence is None
    assert message.content[0].type == "text"
    assert message.content[0].text == fake_claude.default_text
    assert message.usage.output_tokens > 0
    assert "anthropic-version" in fake_claude.last_request.headers


async def test_claude_stream_final_message(
    fake_claude: FakeClaude, ant: anthropic.AsyncAnthropic
) -> None:
    fake_claude.stream_chunks = 7
    texts: list[str] = []
    async with ant.messages.stream(model=CLAUDE, max_tokens=64, messages=HELLO) as s:
        async for text in s.text_stream:
            texts.append(text)
        final = await s.get_final_message()
    assert len(texts) == 7
    assert final.content[0].type == "text"
    assert final.content[0].text == fake_claude.default_text == "".join(texts)
    assert final.stop_reason == "end_turn"
    assert (
        final.usage.output_tokens
        == (
            await ant.messages.create(model=CLAUDE, max_tokens=64, messages=HELLO)
        ).usage.output_tokens
    )


async def test_claude_stream_event_order(
    fake_claude: FakeClaude, http: aiohttp.ClientSession
) -> None:
    """Every event carries an `event:` line naming its data's type, in §4.4 order."""
    async with http.post(
        fake_claude.base_url + "/v1/messages",
        json={"model": CLAUDE, "max_tokens": 9, "messages": HELLO, "stream": True},
        headers={"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"},
    ) as response:
        events = await read_sse(response)
    names = [name for name, _ in events]
    assert all(json.loads(data)["type"] == name for name, data in events)
    deltas = names.count("content_block_delta")
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * deltas,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = json.loads(events[0][1])["message"]
    assert start["content"] == []
    assert {"input_tokens", "output_tokens"} <= set(start["usage"])


async def test_claude_tool_use(ant: anthropic.AsyncAnthropic) -> None:
    message = await ant.messages.create(
        model=CLAUDE, max_tokens=64, messages=WEATHER_QUESTION, tools=CLAUDE_TOOLS
    )
    assert message.stop_reason == "tool_use"
    block = message.content[0]
    assert block.type == "tool_use"
    assert block.id.startswith("toolu_")
    assert (block.name, block.input) == ("get_weather", {"location": "Paris"})


async def test_claude_streamed_tool_use_and_round_trip(
    fake_claude: FakeClaude, ant: anthropic.AsyncAnthropic
) -> None:
    """Streamed input_json_delta fragments parse into the tool input; a tool_result
    then gets a text answer."""
    async with ant.messages.stream(
        model=CLAUDE, max_tokens=64, messages=WEATHER_QUESTION, tools=CLAUDE_TOOLS
    ) as stream:
        final: Message = await stream.get_final_message()
    block = final.content[0]
    assert block.type == "tool_use"
    assert block.input == {"location": "Paris"}
    history: list[Any] = [
        *WEATHER_QUESTION,
        {"role": "assistant", "content": [block.model_dump(exclude_none=True)]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "18C"}],
        },
    ]
    answer = await ant.messages.create(
        model=CLAUDE, max_tokens=64, messages=history, tools=CLAUDE_TOOLS
    )
    assert answer.content[0].type == "text"
    assert answer.content[0].text == fake_claude.default_text


async def test_claude_wrong_key_is_authentication_error(
    fake_claude: FakeClaude,
) -> None:
    client = anthropic.AsyncAnthropic(
        base_url=fake_claude.base_url, api_key="sk-ant-wrong", max_retries=0
    )
    async with client:
        with pytest.raises(anthropic.AuthenticationError) as caught:
            await client.messages.create(model=CLAUDE, max_tokens=8, messages=HELLO)
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "invalid x-api-key"},
        "request_id": caught.value.request_id,
    }


async def test_claude_headers_x_api_key_and_version(
    fake_claude: FakeClaude, http: aiohttp.ClientSession
) -> None:
    url = fake_claude.base_url + "/v1/messages"
    payload = {"model": CLAUDE, "max_tokens": 8, "messages": HELLO}
    async with http.post(url, json=payload, headers={"x-api-key": "sk-ant-test"}) as r:
        assert r.status == 400
        assert (await r.json())["error"]["message"] == (
            "anthropic-version: header is required"
        )
    fake_claude.allow_bearer = False
    headers = {"Authorization": "Bearer sk-ant-test", "anthropic-version": "2023-06-01"}
    async with http.post(url, json=payload, headers=headers) as r:
        assert r.status == 401


async def test_claude_missing_max_tokens_is_bad_request(
    ant: anthropic.AsyncAnthropic,
) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        await ant.post(
            "/v1/messages", cast_to=Message, body={"model": CLAUDE, "messages": HELLO}
        )
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "max_tokens: Field required"},
        "request_id": caught.value.request_id,
    }


TOOL_USE = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}


@pytest.mark.parametrize(
    ("messages", "fragment"),
    [
        pytest.param([], "at least one message", id="empty"),
        pytest.param(
            [{"role": "assistant", "content": "hi"}], "first message", id="first-role"
        ),
        pytest.param(
            [{"role": "system", "content": "hi"}], "Input should be 'user'", id="role"
        ),
        pytest.param(
            [{"role": "user", "content": [{"type": "text", "text": ""}]}],
            "messages: text content blocks must be non-empty",
            id="empty-text",
        ),
        pytest.param(
            [{"role": "user", "content": []}], "non-empty content", id="empty-content"
        ),
        pytest.param(
            [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": [TOOL_USE]},
                {"role": "user", "content": "well?"},
            ],
            "`tool_use` ids were found without `tool_result` blocks immediately after",
            id="missing-result",
        ),
        pytest.param(
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_x", "content": "1"}
                    ],
                }
            ],
            "unexpected `tool_use_id` found in `tool_result` blocks",
            id="orphan-result",
        ),
        pytest.param(
            [{"role": "user", "content": [{"type": ["text"], "text": "hi"}]}],
            "does not match any of the expected tags",
            id="unhashable-block-type",
        ),
    ],
)
async def test_claude_rejects_invalid_messages(
    ant: anthropic.AsyncAnthropic, messages: list[Any], fragment: str
) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        await ant.messages.create(model=CLAUDE, max_tokens=8, messages=messages)
    assert fragment in caught.value.message


async def test_claude_rejects_bad_tools_and_system(
    ant: anthropic.AsyncAnthropic,
) -> None:
    bad_tool: Any = {"name": "t", "input_schema": {"type": "array"}}
    with pytest.raises(anthropic.BadRequestError, match=r"input_schema\.type"):
        await ant.messages.create(
            model=CLAUDE, max_tokens=8, messages=HELLO, tools=[bad_tool]
        )
    bad_system: Any = [{"type": "text", "text": ""}]
    with pytest.raises(anthropic.BadRequestError, match="system"):
        await ant.messages.create(
            model=CLAUDE, max_tokens=8, messages=HELLO, system=bad_system
        )


async def test_claude_scripted_529_and_models(
    fake_claude: FakeClaude, ant: anthropic.AsyncAnthropic
) -> None:
    fake_claude.reply_status(529)
    with pytest.raises(anthropic.OverloadedError) as caught:
        await ant.messages.create(model=CLAUDE, max_tokens=8, messages=HELLO)
    assert caught.value.type == "overloaded_error"
    listed = [model.id async for model in ant.models.list()]
    assert listed == fake_claude.models
    counted = await ant.messages.count_tokens(model=CLAUDE, messages=HELLO)
    assert counted.input_tokens > 0


# -- failure injection -------------------------------------------------------------


async def test_cut_stream_breaks_both_sdks(
    fake_openai: FakeOpenAI,
    fake_claude: FakeClaude,
    oai: openai.AsyncOpenAI,
    ant: anthropic.AsyncAnthropic,
) -> None:
    """A cut stream surfaces as an error, never as a clean end of stream."""
    fake_openai.reply_cut_stream(after_events=3)
    stream = await oai.chat.completions.create(model=GPT, messages=HELLO, stream=True)
    seen: list[str] = []

    async def drain() -> None:
        async for chunk in stream:
            seen.append(chunk.choices[0].delta.content or "")

    with pytest.raises(openai.APIConnectionError):
        await drain()
    assert seen == ["", "Hello", " from"]  # exactly the 3 events before the cut

    fake_claude.reply_cut_stream(after_events=4)
    with pytest.raises(httpx2.RemoteProtocolError):
        async with ant.messages.stream(
            model=CLAUDE, max_tokens=8, messages=HELLO
        ) as claude_stream:
            await claude_stream.get_final_message()


async def test_cut_stream_is_incomplete_payload_for_aiohttp(
    fake_openai: FakeOpenAI, http: aiohttp.ClientSession
) -> None:
    fake_openai.reply_cut_stream(after_events=2)
    async with http.post(
        fake_openai.base_url + "/v1/chat/completions",
        json={"model": GPT, "messages": HELLO, "stream": True},
        headers={"Authorization": "Bearer sk-test"},
    ) as response:
        assert response.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()


async def test_reset_and_invalid_json(
    fake_openai: FakeOpenAI,
    fake_claude: FakeClaude,
    oai: openai.AsyncOpenAI,
    ant: anthropic.AsyncAnthropic,
) -> None:
    fake_openai.reply_reset()
    with pytest.raises(openai.APIConnectionError):
        await oai.chat.completions.create(model=GPT, messages=HELLO)
    fake_claude.reply_reset()
    with pytest.raises(anthropic.APIConnectionError):
        await ant.messages.create(model=CLAUDE, max_tokens=8, messages=HELLO)
    fake_openai.reply_invalid_json()
    with pytest.raises(json.JSONDecodeError):
        await oai.chat.completions.create(model=GPT, messages=HELLO)
    fake_claude.reply_invalid_json()
    with pytest.raises(json.JSONDecodeError):
        await ant.messages.create(model=CLAUDE, max_tokens=8, messages=HELLO)


async def test_close_during_hang_returns_promptly(
    fake_openai: FakeOpenAI, http: aiohttp.ClientSession
) -> None:
    fake_openai.reply_hang(60)
    request = asyncio.ensure_future(
        http.post(
            fake_openai.base_url + "/v1/chat/completions",
            json={"model": GPT, "messages": HELLO},
            headers={"Authorization": "Bearer sk-test"},
        )
    )
    await fake_openai.wait_for_hits(1)
    started = time.monotonic()
    await fake_openai.close()
    assert time.monotonic() - started < 1.0
    with pytest.raises(aiohttp.ClientError):
        async with await request:
            pass


async def test_hang_then_answer_and_slow_first_byte(
    fake_openai: FakeOpenAI, http: aiohttp.ClientSession
) -> None:
    """A short hang still answers; a slow first byte sends headers before data."""
    url = fake_openai.base_url + "/v1/chat/completions"
    auth = {"Authorization": "Bearer sk-test"}
    fake_openai.reply_hang(0.2)
    started = time.monotonic()
    async with http.post(url, json={"model": GPT, "messages": HELLO}, headers=auth) as r:
        assert r.status == 200
    assert time.monotonic() - started >= 0.2

    fake_openai.reply_slow_first_byte(0.6)
    payload = {"model": GPT, "messages": HELLO, "stream": True}
    started = time.monotonic()
    async with http.post(url, json=payload, headers=auth) as r:
        headers_at = time.monotonic() - started
        await r.content.readany()
        first_data_at = time.monotonic() - started
    assert headers_at < 0.5 <= first_data_at


async def test_reply_sse_and_json_are_sent_verbatim(
    fake_claude: FakeClaude, ant: anthropic.AsyncAnthropic, http: aiohttp.ClientSession
) -> None:
    fake_claude.reply_sse(
        [
            (
                "error",
                {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}},
            )
        ]
    )
    with pytest.raises(anthropic.APIStatusError) as caught:
        async with ant.messages.stream(model=CLAUDE, max_tokens=8, messages=HELLO) as s:
            await s.get_final_message()
    assert caught.value.type == "overloaded_error"
    fake_claude.reply_json({"anything": True}, status=418)
    async with http.post(fake_claude.base_url + "/v1/messages", json={}) as response:
        assert response.status == 418
        assert await response.json() == {"anything": True}


async def test_recording_and_clear(
    fake_openai: FakeOpenAI, http: aiohttp.ClientSession
) -> None:
    fake_openai.reply_status(500)
    async with http.get(
        fake_openai.base_url + "/v1/models?limit=2", headers={"X-Custom": "Yes"}
    ) as response:
        assert response.status == 401  # no key
    recorded = fake_openai.last_request
    assert recorded.query == {"limit": "2"}
    assert recorded.headers["x-custom"] == "Yes"
    assert recorded.json is None
    assert fake_openai.pending_replies == 1  # listing does not consume the script
    fake_openai.clear()
    assert (fake_openai.requests, fake_openai.hits, fake_openai.pending_replies) == (
        [],
        0,
        0,
    )


async def test_cut_json_body_and_chunk_delay(
    fake_openai: FakeOpenAI, http: aiohttp.ClientSession
) -> None:
    """A cut non-stream answer is a truncated body; delays space out SSE events."""
    url = fake_openai.base_url + "/v1/chat/completions"
    auth = {"Authorization": "Bearer sk-test"}
    fake_openai.reply_cut_stream(after_events=0)
    async with http.post(url, json={"model": GPT, "messages": HELLO}, headers=auth) as r:
        with pytest.raises(aiohttp.ClientPayloadError):
            await r.read()
    fake_openai.delay_between_chunks = 0.02
    payload = {"model": GPT, "messages": HELLO, "stream": True}
    started = time.monotonic()
    async with http.post(url, json=payload, headers=auth) as r:
        events = await read_sse(r)
    assert len(events) == 8  # role, 5 pieces, finish, [DONE]
    assert time.monotonic() - started >= 0.02 * 7
