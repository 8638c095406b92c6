"""The official SDKs, pointed at the proxy, get what the upstream said (create, stream,
tools)."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import anthropic
import openai
import pytest

from tests.conftest import (
    API_KEY,
    CLAUDE_KEY,
    OPENAI_KEY,
    Proxy,
    StartProxy,
    claude_instance,
    openai_instance,
)
from tests.fakes import FakeClaude, FakeOpenAI

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
CLAUDE_WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


@pytest.fixture
async def proxy(
    start_proxy: StartProxy, fake_openai: FakeOpenAI, fake_claude: FakeClaude
) -> Proxy:
    return await start_proxy(
        {
            "openai-custom": [openai_instance(fake_openai, "oa-1")],
            "claude-custom": [claude_instance(fake_claude, "cl-1")],
        }
    )


def openai_client(proxy: Proxy) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{proxy.url}/v1", api_key=API_KEY, max_retries=0)


def claude_client(proxy: Proxy) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=proxy.url, api_key=API_KEY, max_retries=0)


async def test_openai_sdk_create(proxy: Proxy, fake_openai: FakeOpenAI) -> None:
    """A non-streaming chat completion arrives as the upstream sent it."""
    async with openai_client(proxy) as client:
        result = await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}]
        )
    assert result.choices[0].message.content == fake_openai.default_text
    assert result.choices[0].finish_reason == "stop"
    sent = fake_openai.last_request
    assert sent.headers["authorization"] == f"Bearer {OPENAI_KEY}"  # the pool's key
    assert sent.json["model"] == "gpt-4o-mini"


async def test_openai_sdk_stream(proxy: Proxy, fake_openai: FakeOpenAI) -> None:
    fake_openai.stream_chunks = 20
    async with openai_client(proxy) as client:
        stream = await client.chat.completions.create(
            model="gpt-4o-mini",
            stream=True,
            stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "Hi"}],
        )
        parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    assert "".join(parts) == fake_openai.default_text
    assert len(parts) >= 20


async def test_openai_sdk_tool_calls(proxy: Proxy) -> None:
    """Tool calls pass through, non-streaming and streamed argument by argument."""
    messages: Any = [{"role": "user", "content": "What's the weather in Paris?"}]
    async with openai_client(proxy) as client:
        result = await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=messages,
            tools=[WEATHER_TOOL],  # type: ignore[list-item]
        )
        async with client.chat.completions.stream(
            model="gpt-4o-mini",
            messages=messages,
            tools=[WEATHER_TOOL],  # type: ignore[list-item]
        ) as stream:
            final = await stream.get_final_completion()
    call = result.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert result.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    streamed = final.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert streamed.function.name == "get_weather"
    assert json.loads(streamed.function.arguments) == json.loads(
        call.function.arguments  # type: ignore[union-attr]
    )


async def test_anthropic_sdk_create_and_stream(
    proxy: Proxy, fake_claude: FakeClaude
) -> None:
    async with claude_client(proxy) as client:
        message = await client.messages.create(
            model="claude-proxy-test",
            max_tokens=100,
            messages=[{"role": "user", "content": "Hi"}],
        )
        async with client.messages.stream(
            model="claude-proxy-test",
            max_tokens=100,
            messages=[{"role": "user", "content": "Hi"}],
        ) as stream:
            final = await stream.get_final_message()
    assert message.content[0].text == fake_claude.default_text  # type: ignore[union-attr]
    assert final.content[0].text == fake_claude.default_text  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"
    sent = fake_claude.last_request
    assert sent.headers["x-api-key"] == CLAUDE_KEY
    assert sent.headers["anthropic-version"]  # the client's own version is forwarded


async def test_anthropic_sdk_tool_round_trip(proxy: Proxy) -> None:
    question = {"role": "user", "content": "What's the weather in Paris?"}
    async with claude_client(proxy) as client:
        first = await client.messages.create(
            model="claude-proxy-test",
            max_tokens=100,
            tools=[CLAUDE_WEATHER_TOOL],  # type: ignore[list-item]
            messages=[question],  # type: ignore[list-item]
        )
        tool_use = next(b for b in first.content if b.type == "tool_use")
        second = await client.messages.create(
            model="claude-proxy-test",
            max_tokens=100,
            tools=[CLAUDE_WEATHER_TOOL],  # type: ignore[list-item]
            messages=[
                question,  # type: ignore[list-item]
                {"role": "assistant", "content": first.content},
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": tool_use.id,
                            "content": "Sunny, 21 C",
                        }
                    ],
                },
            ],
        )
    assert first.stop_reason == "tool_use"
    assert tool_use.name == "get_weather"
    assert second.stop_reason == "end_turn"


async def test_claude_request_without_max_tokens_gets_the_default(
    proxy: Proxy, fake_claude: FakeClaude
) -> None:
    """AIClient-2-API's test sends no max_tokens; the upstream would answer 400."""
    async with aiohttp.ClientSession() as http:
        resp = await http.post(
            f"{proxy.url}/v1/messages",
            headers={"x-api-key": API_KEY},
            json={
                "model": "claude-opus-4-20250514",
                "messages": [{"role": "user", "content": "Hello, what is 2+2?"}],
            },
        )
        body = await resp.json()
    assert resp.status == 200
    assert body["content"][0]["text"] == fake_claude.default_text
    assert fake_claude.last_request.json["max_tokens"] == 8192
    assert fake_claude.last_request.headers["anthropic-version"] == "2023-06-01"


async def test_stream_is_relayed_byte_for_byte_with_sse_headers(
    proxy: Proxy, fake_openai: FakeOpenAI
) -> None:
    """Same protocol on both sides: the client gets exactly the upstream's bytes."""
    events: list[tuple[str | None, dict[str, object] | str]] = [
        (
            None,
            {
                "id": "c1",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "m",
                "choices": [
                    {"index": 0, "delta": {"content": f"part {i} "}, "finish_reason": None}
                ],
            },
        )
        for i in range(25)
    ]
    events.append((None, "[DONE]"))
    fake_openai.reply_sse(events)
    fake_openai.reply_sse(events)
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]}
    async with aiohttp.ClientSession() as http:
        direct = await http.post(
            f"{fake_openai.base_url}/v1/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {OPENAI_KEY}"},
        )
        expected = await direct.read()
        resp = await http.post(
            f"{proxy.url}/v1/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {API_KEY}"},
        )
        got = await resp.read()
    assert got == expected
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    assert resp.headers["Cache-Control"] == "no-cache"
    assert resp.headers["Connection"] == "keep-alive"
    assert resp.headers["Access-Control-Allow-Origin"] == "*"


async def test_stream_chunks_arrive_before_the_upstream_finishes(
    proxy: Proxy, fake_openai: FakeOpenAI
) -> None:
    """Nothing is buffered whole: the first event reaches the client while the
    upstream is still producing the rest."""
    fake_openai.stream_chunks = 10
    fake_openai.delay_between_chunks = 0.2
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]}
    async with aiohttp.ClientSession() as http:
        resp = await http.post(
            f"{proxy.url}/v1/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {API_KEY}"},
        )
        first = await resp.content.readany()
        received_early = len(fake_openai.requests) == 1 and b"[DONE]" not in first
        resp.close()
    assert first.startswith(b"data: ")
    assert received_early


async def test_prefix_and_header_choose_the_provider(
    proxy: Proxy, fake_openai: FakeOpenAI, fake_claude: FakeClaude
) -> None:
    """/{provider-type}/... wins over the model-provider header."""
    async with aiohttp.ClientSession() as http:
        r1 = await http.post(
            f"{proxy.url}/claude-custom/v1/messages",
            headers={"x-api-key": API_KEY, "model-provider": "openai-custom"},
            json={
                "model": "c",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "x"}],
            },
        )
        r2 = await http.post(
            f"{proxy.url}/v1/chat/completions",
            headers={
                "Authorization": f"Bearer {API_KEY}",
                "Model-Provider": "openai-custom",
            },
            json={"model": "m", "messages": [{"role": "user", "content": "x"}]},
        )
    assert (r1.status, r2.status) == (200, 200)
    assert fake_claude.hits == 1
    assert fake_openai.hits == 1
