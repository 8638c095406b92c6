"""Converted requests over HTTP: what reaches the upstream, what comes back, and the
rules for what one side cannot express (errors, parallel calls, images, thinking,
system prompts, usage, Gemini's endpoints)."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import anthropic
import openai
import pytest

from tests.conftest import (
    API_KEY,
    Proxy,
    StartProxy,
    claude_instance,
    gemini_instance,
    openai_instance,
)
from tests.fakes import FakeClaude, FakeGemini, FakeOpenAI

HEADERS = {
    "openai": {"Authorization": f"Bearer {API_KEY}"},
    "claude": {"x-api-key": API_KEY, "anthropic-version": "2023-06-01"},
    "gemini": {"x-goog-api-key": API_KEY},
}
PTYPES = {"openai": "openai-custom", "claude": "claude-custom", "gemini": "gemini-custom"}


@pytest.fixture
async def proxy(
    start_proxy: StartProxy,
    fake_openai: FakeOpenAI,
    fake_claude: FakeClaude,
    fake_gemini: FakeGemini,
) -> Proxy:
    return await start_proxy(
        {
            "openai-custom": [openai_instance(fake_openai, "oa")],
            "claude-custom": [claude_instance(fake_claude, "cl")],
            "gemini-custom": [gemini_instance(fake_gemini, "gm")],
        }
    )


def hello(client: str, text: str = "Hi", stream: bool = False) -> tuple[str, Any]:
    """(path, body) of a minimal request in `client`'s protocol."""
    if client == "gemini":
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        path = f"/v1beta/models/gemini-2.5-flash:{method}"
        return path, {"contents": [{"role": "user", "parts": [{"text": text}]}]}
    body: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": text}]}
    if stream:
        body["stream"] = True
    if client == "claude":
        return "/v1/messages", {**body, "max_tokens": 50}
    return "/v1/chat/completions", body


async def post(
    proxy: Proxy, client: str, upstream: str, path: str, body: Any
) -> tuple[int, bytes, aiohttp.ClientResponse]:
    async with aiohttp.ClientSession() as http:
        resp = await http.post(
            f"{proxy.url}/{PTYPES[upstream]}{path}", json=body, headers=HEADERS[client]
        )
        return resp.status, await resp.read(), resp


CROSS = [(c, u) for c in PTYPES for u in PTYPES if c != u]
CROSS_IDS = [f"{c}-client-on-{u}" for c, u in CROSS]


@pytest.mark.parametrize(("client", "upstream"), CROSS, ids=CROSS_IDS)
async def test_upstream_errors_keep_status_and_message_in_client_shape(
    proxy: Proxy, client: str, upstream: str, request: pytest.FixtureRequest
) -> None:
    fake = request.getfixturevalue(f"fake_{upstream}")
    fake.reply_status(429, headers={"retry-after": "7"})
    path, body = hello(client)
    status, raw, resp = await post(proxy, client, upstream, path, body)
    assert status == 429
    assert resp.headers["retry-after"] == "7"
    error = json.loads(raw)
    if client == "claude":
        assert error["error"]["type"] == "rate_limit_error"
    elif client == "gemini":
        assert error["error"]["status"] == "RESOURCE_EXHAUSTED"
    else:
        assert error["error"]["type"] == "rate_limit_error"
    message = {
        "openai": "Invalid request.",
        "claude": "Invalid request.",
        "gemini": "HTTP 400",
    }
    pool = proxy.runtime.pool
    for entry in pool.entries():  # the 429 put the instance in a cooldown
        pool.reset(entry)
    fake.reply_status(400)
    status, raw, _ = await post(proxy, client, upstream, path, body)
    assert status == 400
    assert json.loads(raw)["error"]["message"] == message[upstream]


async def test_upstream_validation_message_reaches_the_client(
    proxy: Proxy, fake_claude: FakeClaude
) -> None:
    """The fake Anthropic rejects an image type it does not know; Gemini's client
    hears about it in Gemini's shape with Anthropic's words."""
    body = {
        "contents": [
            {
                "role": "user",
                "parts": [{"inlineData": {"mimeType": "image/bmp", "data": "Qk0="}}],
            }
        ]
    }
    path = "/v1beta/models/m:generateContent"
    status, raw, _ = await post(proxy, "gemini", "claude", path, body)
    assert status == 400
    error = json.loads(raw)["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    assert "image/bmp" in error["message"]
    assert fake_claude.hits == 0  # refused before any upstream call


async def test_mid_stream_upstream_error_becomes_the_clients_error_event(
    proxy: Proxy, fake_claude: FakeClaude
) -> None:
    start = {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "model": "c",
            "content": [],
            "usage": {"input_tokens": 3},
        },
    }
    fake_claude.reply_sse(
        [
            ("message_start", start),
            (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            ),
            (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": "Hel"},
                },
            ),
            (
                "error",
                {
                    "type": "error",
                    "error": {"type": "overloaded_error", "message": "Overloaded"},
                },
            ),
        ]
    )
    fake_claude.delay_between_chunks = 0.05  # the client's response starts before the error
    async with openai.AsyncOpenAI(
        base_url=f"{proxy.url}/claude-custom/v1", api_key=API_KEY, max_retries=0
    ) as client:
        stream = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "Hi"}], stream=True
        )
        seen: list[str | None] = []

        async def read_all() -> None:
            async for chunk in stream:
                seen.append(chunk.choices[0].delta.content if chunk.choices else None)

        with pytest.raises(openai.APIError, match="Overloaded"):
            await read_all()
    assert "Hel" in seen


async def test_cut_converted_stream_ends_with_an_error_event(
    proxy: Proxy, fake_openai: FakeOpenAI
) -> None:
    fake_openai.stream_chunks = 6
    fake_openai.reply_cut_stream(3)
    path, body = hello("gemini", stream=True)
    status, raw, _ = await post(proxy, "gemini", "openai", path, body)
    assert status == 200
    lines = [line for line in raw.decode().split("\n") if line]
    assert all(line.startswith("data: ") for line in lines)
    last = json.loads(lines[-1][6:])
    assert last["error"]["code"] == 502


def _openai_chunk(delta: dict[str, Any], finish: str | None = None) -> Any:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return (
        None,
        {
            "id": "c1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": [choice],
        },
    )


def _call_delta(index: int, **function: str) -> dict[str, Any]:
    call: dict[str, Any] = {"index": index, "function": function}
    if "name" in function:
        call.update(id=f"call_{index}", type="function")
    return {"tool_calls": [call]}


PARALLEL = [
    _openai_chunk({"role": "assistant", "content": None}),
    _openai_chunk(_call_delta(0, name="get_weather", arguments="")),
    _openai_chunk(_call_delta(0, arguments='{"city":')),
    _openai_chunk(_call_delta(0, arguments='"Paris"}')),
    _openai_chunk(_call_delta(1, name="get_time", arguments='{"tz":"CET"}')),
    _openai_chunk({}, "tool_calls"),
    (None, "[DONE]"),
]
TOOLS_CLAUDE: Any = [
    {"name": n, "input_schema": {"type": "object", "properties": {k: {"type": "string"}}}}
    for n, k in (("get_weather", "city"), ("get_time", "tz"))
]


async def test_parallel_calls_stream_to_a_claude_client_and_come_back(
    proxy: Proxy, fake_openai: FakeOpenAI
) -> None:
    """Two calls streamed by OpenAI become two tool_use blocks, arguments streamed as
    they arrive; both results go back as two tool messages in order."""
    fake_openai.reply_sse(PARALLEL)
    question: Any = {"role": "user", "content": "Weather and time in Paris?"}
    async with anthropic.AsyncAnthropic(
        base_url=f"{proxy.url}/openai-custom", api_key=API_KEY, max_retries=0
    ) as client:
        deltas = []
        async with client.messages.stream(
            model="m",
            max_tokens=50,
            messages=[question],
            tools=TOOLS_CLAUDE,
        ) as stream:
            async for event in stream:
                if (
                    event.type == "content_block_delta"
                    and event.delta.type == "input_json_delta"
                ):
                    deltas.append(event.delta.partial_json)
            first = await stream.get_final_message()
        uses = [b for b in first.content if b.type == "tool_use"]
        assert [(u.name, u.input) for u in uses] == [
            ("get_weather", {"city": "Paris"}),
            ("get_time", {"tz": "CET"}),
        ]
        assert deltas == ['{"city":', '"Paris"}', '{"tz":"CET"}']
        assert first.stop_reason == "tool_use"
        results: Any = [
            {"type": "tool_result", "tool_use_id": u.id, "content": f"result {i}"}
            for i, u in enumerate(uses)
        ]
        await client.messages.create(
            model="m",
            max_tokens=50,
            tools=TOOLS_CLAUDE,
            messages=[
                question,
                {"role": "assistant", "content": first.content},
                {"role": "user", "content": results},
            ],
        )
    sent = fake_openai.last_request.json["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "tool"]
    assert [c["id"] for c in sent[1]["tool_calls"]] == ["call_0", "call_1"]
    assert [m["content"] for m in sent[2:]] == ["result 0", "result 1"]


async def test_parallel_calls_reach_a_gemini_client_whole_and_pair_back(
    proxy: Proxy, fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply_sse(PARALLEL)
    path, body = hello("gemini", "Weather and time?", stream=True)
    status, raw, _ = await post(proxy, "gemini", "openai", path, body)
    assert status == 200
    chunks = [json.loads(line[6:]) for line in raw.decode().split("\n") if line]
    calls = [
        p["functionCall"]
        for c in chunks
        for p in c["candidates"][0].get("content", {}).get("parts", [])
        if "functionCall" in p
    ]
    assert [(c["name"], c["args"]) for c in calls] == [
        ("get_weather", {"city": "Paris"}),
        ("get_time", {"tz": "CET"}),
    ]
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    # The Gemini client answers by name (ids optional): paired with the calls in order.
    history = {
        "contents": [
            body["contents"][0],
            {"role": "model", "parts": [{"functionCall": c} for c in calls]},
            {
                "role": "user",
                "parts": [
                    {
                        "functionResponse": {
                            "name": "get_time",
                            "response": {"output": "9:00"},
                        }
                    },
                    {
                        "functionResponse": {
                            "name": "get_weather",
                            "response": {"output": "sun"},
                        }
                    },
                ],
            },
        ]
    }
    status, _, _ = await post(
        proxy, "gemini", "openai", "/v1beta/models/m:generateContent", history
    )
    assert status == 200
    sent = fake_openai.last_request.json["messages"]
    assert [(m.get("tool_call_id"), m.get("content")) for m in sent[2:]] == [
        ("call_1", "9:00"),
        ("call_0", "sun"),
    ]


async def test_system_prompts_and_consecutive_messages_to_claude(
    proxy: Proxy, fake_claude: FakeClaude
) -> None:
    """Every OpenAI system message is hoisted, in order, into Anthropic's system;
    consecutive user messages are merged and blank ones dropped."""
    body = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "one"},
            {"role": "user", "content": [{"type": "text", "text": "two"}]},
            {"role": "assistant", "content": "ok"},
            {"role": "system", "content": "Now answer in French."},
            {"role": "user", "content": " "},
            {"role": "user", "content": "three"},
        ],
    }
    status, raw, _ = await post(proxy, "openai", "claude", "/v1/chat/completions", body)
    assert status == 200, raw
    sent = fake_claude.last_request.json
    assert sent["system"] == [
        {"type": "text", "text": "Be brief."},
        {"type": "text", "text": "Now answer in French."},
    ]
    assert [(m["role"], [b["text"] for b in m["content"]]) for m in sent["messages"]] == [
        ("user", ["one", "two"]),
        ("assistant", ["ok"]),
        ("user", ["three"]),
    ]
    assert sent["max_tokens"] == 8192


IMAGE = "iVBORw0KGgo="


async def test_images_base64_and_url(
    proxy: Proxy, fake_claude: FakeClaude, fake_gemini: FakeGemini
) -> None:
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{IMAGE}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]
    body = {"model": "m", "messages": [{"role": "user", "content": content}]}
    status, _, _ = await post(proxy, "openai", "claude", "/v1/chat/completions", body)
    assert status == 200
    blocks = fake_claude.last_request.json["messages"][0]["content"]
    assert blocks[1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": IMAGE},
    }
    assert blocks[2] == {
        "type": "image",
        "source": {"type": "url", "url": "https://example.com/cat.jpg"},
    }
    status, _, _ = await post(proxy, "openai", "gemini", "/v1/chat/completions", body)
    assert status == 200
    parts = fake_gemini.last_request.json["contents"][0]["parts"]
    assert parts[1] == {"inlineData": {"mimeType": "image/png", "data": IMAGE}}
    assert parts[2] == {
        "fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/cat.jpg"}
    }


async def test_untranslatable_requests_are_refused_by_name(proxy: Proxy) -> None:
    body = {"model": "m", "n": 2, "messages": [{"role": "user", "content": "Hi"}]}
    status, raw, _ = await post(proxy, "openai", "claude", "/v1/chat/completions", body)
    assert status == 400
    assert "n > 1" in json.loads(raw)["error"]["message"]
    tool = {"type": "function", "function": {"name": "1bad", "parameters": {}}}
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [tool]}
    status, raw, _ = await post(proxy, "openai", "gemini", "/v1/chat/completions", body)
    assert status == 400
    assert "1bad" in json.loads(raw)["error"]["message"]


async def test_claude_code_style_schemas_are_cleaned_for_gemini(
    proxy: Proxy, fake_gemini: FakeGemini
) -> None:
    """$schema, $ref/$defs, additionalProperties, type arrays, exclusive bounds,
    const and no-argument tools would each be a 400 from Gemini."""
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "path": {"type": ["string", "null"], "format": "uri"},
            "limit": {"type": "integer", "exclusiveMinimum": 0},
            "mode": {"const": "fast"},
            "item": {"$ref": "#/$defs/item"},
        },
        "required": ["path", "ghost"],
        "$defs": {
            "item": {
                "type": "object",
                "properties": {"id": {"type": "string"}},
                "propertyNames": {"pattern": "^x"},
            }
        },
    }
    body = {
        "model": "m",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": "weather?"}],
        "tools": [
            {"name": "read", "input_schema": schema},
            {"name": "noop", "input_schema": {"type": "object", "properties": {}}},
        ],
    }
    status, raw, _ = await post(proxy, "claude", "gemini", "/v1/messages", body)
    assert status == 200, raw
    decls = fake_gemini.last_request.json["tools"][0]["functionDeclarations"]
    params = decls[0]["parameters"]
    assert params["properties"]["path"] == {"type": "string", "nullable": True}
    assert params["properties"]["limit"] == {"type": "integer", "minimum": 1}
    assert params["properties"]["mode"] == {"type": "string", "enum": ["fast"]}
    assert params["properties"]["item"]["properties"] == {"id": {"type": "string"}}
    assert params["required"] == ["path"]
    assert "parameters" not in decls[1]


async def test_usage_counts_map_between_protocols(
    proxy: Proxy, fake_claude: FakeClaude
) -> None:
    fake_claude.reply_json(
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "c",
            "content": [{"type": "text", "text": "ok"}],
            "stop_reason": "max_tokens",
            "stop_sequence": None,
            "usage": {
                "input_tokens": 10,
                "cache_read_input_tokens": 30,
                "cache_creation_input_tokens": 5,
                "output_tokens": 7,
            },
        }
    )
    path, body = hello("openai")
    status, raw, _ = await post(proxy, "openai", "claude", path, body)
    assert status == 200
    answer = json.loads(raw)
    assert answer["choices"][0]["finish_reason"] == "length"
    assert answer["usage"]["prompt_tokens"] == 45
    assert answer["usage"]["prompt_tokens_details"] == {"cached_tokens": 30}
    assert answer["usage"]["completion_tokens"] == 7
    assert answer["model"] == "m"  # the client's model name is echoed


async def test_claude_thinking_signature_rides_through_a_gemini_client(
    proxy: Proxy, fake_claude: FakeClaude
) -> None:
    """Anthropic's signed thinking reaches a Gemini client as a thought part and comes
    back to Anthropic unchanged, so thinking with tools keeps working."""
    fake_claude.reply_json(
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "c",
            "content": [
                {"type": "thinking", "thinking": "Let me check.", "signature": "SIG+/=="},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
            ],
            "stop_reason": "tool_use",
            "stop_sequence": None,
            "usage": {"input_tokens": 1, "output_tokens": 1},
        }
    )
    tools = [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "parameters": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}},
                    },
                }
            ]
        }
    ]
    question = {"role": "user", "parts": [{"text": "Weather?"}]}
    body = {"contents": [question], "tools": tools}
    path = "/v1beta/models/m:generateContent"
    status, raw, _ = await post(proxy, "gemini", "claude", path, body)
    assert status == 200
    parts = json.loads(raw)["candidates"][0]["content"]["parts"]
    assert parts[0]["thought"] is True and parts[0]["text"] == "Let me check."
    assert parts[1]["functionCall"]["name"] == "get_weather"
    body["contents"] = [
        question,
        {"role": "model", "parts": parts},
        {
            "role": "user",
            "parts": [
                {
                    "functionResponse": {
                        "id": parts[1]["functionCall"]["id"],
                        "name": "get_weather",
                        "response": {"output": "sunny"},
                    }
                }
            ],
        },
    ]
    status, raw, _ = await post(proxy, "gemini", "claude", path, body)
    assert status == 200, raw
    assistant = fake_claude.last_request.json["messages"][1]["content"]
    assert assistant[0] == {
        "type": "thinking",
        "thinking": "Let me check.",
        "signature": "SIG+/==",
    }
    assert assistant[1]["id"] == "toolu_1"


async def test_gemini_signature_rides_through_a_claude_client(
    proxy: Proxy, fake_gemini: FakeGemini
) -> None:
    fake_gemini.reply_sse(
        [
            (
                None,
                {
                    "candidates": [
                        {
                            "content": {
                                "role": "model",
                                "parts": [{"text": "Thinking...", "thought": True}],
                            }
                        }
                    ],
                    "responseId": "r1",
                },
            ),
            (
                None,
                {
                    "candidates": [
                        {
                            "content": {
                                "role": "model",
                                "parts": [
                                    {
                                        "functionCall": {
                                            "name": "get_weather",
                                            "args": {"city": "Paris"},
                                        },
                                        "thoughtSignature": "R0VNSU5JU0lH",
                                    }
                                ],
                            },
                            "finishReason": "STOP",
                        }
                    ],
                    "usageMetadata": {
                        "promptTokenCount": 5,
                        "candidatesTokenCount": 2,
                        "thoughtsTokenCount": 3,
                    },
                },
            ),
        ]
    )
    tools: Any = [
        {
            "name": "get_weather",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ]
    question: Any = {"role": "user", "content": "Weather?"}
    async with anthropic.AsyncAnthropic(
        base_url=f"{proxy.url}/gemini-custom", api_key=API_KEY, max_retries=0
    ) as client:
        async with client.messages.stream(
            model="m",
            max_tokens=50,
            messages=[question],
            tools=tools,
        ) as stream:
            first = await stream.get_final_message()
        assert first.content[0].type == "thinking"
        assert first.content[0].signature == "gm1:R0VNSU5JU0lH"
        assert first.usage.output_tokens == 5
        use = first.content[1]
        assert use.type == "tool_use"
        await client.messages.create(
            model="m",
            max_tokens=50,
            tools=tools,
            messages=[
                question,
                {"role": "assistant", "content": first.content},
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": use.id, "content": "sun"}
                    ],
                },
            ],
        )
    model_turn = fake_gemini.last_request.json["contents"][1]["parts"]
    assert model_turn == [
        {
            "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
            "thoughtSignature": "R0VNSU5JU0lH",
        }
    ]


async def test_gemini_stream_without_alt_sse_is_a_json_array(
    proxy: Proxy, fake_claude: FakeClaude, fake_gemini: FakeGemini
) -> None:
    path = "/v1beta/models/m:streamGenerateContent"
    body = {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}
    for upstream, fake in (("claude", fake_claude), ("gemini", fake_gemini)):
        status, raw, resp = await post(proxy, "gemini", upstream, path, body)
        assert status == 200
        assert resp.headers["Content-Type"].startswith("application/json")
        chunks = json.loads(raw)
        text = "".join(
            p.get("text", "")
            for c in chunks
            for p in c["candidates"][0].get("content", {}).get("parts", [])
        )
        assert text == fake.default_text
        assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"


@pytest.mark.parametrize(
    ("client", "upstream", "path", "body", "expected"),
    [
        (
            "gemini",
            "claude",
            "/v1beta/models/m:countTokens",
            {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]},
            "totalTokens",
        ),
        (
            "claude",
            "gemini",
            "/v1/messages/count_tokens",
            {"model": "m", "messages": [{"role": "user", "content": "Hi"}]},
            "input_tokens",
        ),
        (
            "gemini",
            "gemini",
            "/v1beta/models/m:countTokens",
            {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]},
            "totalTokens",
        ),
        (
            "claude",
            "claude",
            "/v1/messages/count_tokens",
            {"model": "m", "messages": [{"role": "user", "content": "Hi"}]},
            "input_tokens",
        ),
    ],
)
async def test_count_tokens_where_the_upstream_can(
    proxy: Proxy, client: str, upstream: str, path: str, body: Any, expected: str
) -> None:
    status, raw, _ = await post(proxy, client, upstream, path, body)
    assert status == 200, raw
    assert isinstance(json.loads(raw)[expected], int)


async def test_count_tokens_on_openai_is_a_clear_error(proxy: Proxy) -> None:
    body = {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}
    status, raw, _ = await post(
        proxy, "gemini", "openai", "/v1beta/models/m:countTokens", body
    )
    assert status == 501
    assert json.loads(raw)["error"]["status"] == "UNIMPLEMENTED"


async def test_model_lists_in_the_clients_shape(
    proxy: Proxy, fake_openai: FakeOpenAI, fake_gemini: FakeGemini
) -> None:
    async with aiohttp.ClientSession() as http:
        resp = await http.get(
            f"{proxy.url}/openai-custom/v1beta/models", headers=HEADERS["gemini"]
        )
        gemini_shape = await resp.json()
        resp = await http.get(
            f"{proxy.url}/gemini-custom/v1/models", headers=HEADERS["openai"]
        )
        openai_shape = await resp.json()
        resp = await http.get(
            f"{proxy.url}/gemini-custom/v1beta/models/gemini-2.5-pro",
            headers=HEADERS["gemini"],
        )
        one = await resp.json()
        resp = await http.get(
            f"{proxy.url}/gemini-custom/v1beta/models/nope", headers=HEADERS["gemini"]
        )
        missing = (resp.status, await resp.json())
    assert [m["name"] for m in gemini_shape["models"]] == [
        f"models/{m}" for m in fake_openai.models
    ]
    assert [m["id"] for m in openai_shape["data"]] == fake_gemini.models
    assert openai_shape["data"][0]["owned_by"] == "google"
    assert one["name"] == "models/gemini-2.5-pro"
    assert missing[0] == 404 and missing[1]["error"]["status"] == "NOT_FOUND"


async def test_configured_model_list_needs_no_upstream(
    start_proxy: StartProxy, fake_claude: FakeClaude
) -> None:
    proxy = await start_proxy(
        {
            "claude-custom": [
                claude_instance(fake_claude, "c", supportedModels=["x-1", "x-2"])
            ]
        }
    )
    async with aiohttp.ClientSession() as http:
        resp = await http.get(f"{proxy.url}/v1beta/models", headers=HEADERS["gemini"])
        body = await resp.json()
    assert [m["name"] for m in body["models"]] == ["models/x-1", "models/x-2"]
    assert not fake_claude.requests


async def test_gemini_errors_and_auth_in_gemini_shape(proxy: Proxy) -> None:
    async with aiohttp.ClientSession() as http:
        resp = await http.post(
            f"{proxy.url}/v1beta/models/m:generateContent?key=wrong", json={}
        )
        body = await resp.json()
        ok = await http.post(
            f"{proxy.url}/gemini-custom/v1beta/models/m:generateContent?key={API_KEY}",
            json=hello("gemini")[1],
        )
    assert resp.status == 401
    assert body == {
        "error": {
            "code": 401,
            "message": "Unauthorized: API key is invalid or missing.",
            "status": "UNAUTHENTICATED",
        }
    }
    assert ok.status == 200


async def test_error_before_the_first_converted_byte_is_an_http_error(
    proxy: Proxy, fake_gemini: FakeGemini
) -> None:
    """An in-band upstream error that comes before anything was translated is answered
    with a real status (and would have failed over to another instance)."""
    fake_gemini.reply_sse(
        [
            (
                None,
                {
                    "error": {
                        "code": 429,
                        "message": "Quota",
                        "status": "RESOURCE_EXHAUSTED",
                    }
                },
            )
        ]
    )
    path, body = hello("claude", stream=True)
    status, raw, _ = await post(proxy, "claude", "gemini", path, body)
    assert status == 429
    assert json.loads(raw)["error"] == {"type": "rate_limit_error", "message": "Quota"}


async def test_a_malformed_upstream_event_breaks_a_converted_stream_cleanly(
    proxy: Proxy, fake_gemini: FakeGemini
) -> None:
    """An upstream event of an unexpected shape is a broken stream, not a crash: first,
    it is an HTTP error in the client's shape (another instance would have been tried);
    after text reached the client, the stream ends with an in-band error event."""
    text = {"candidates": [{"content": {"parts": [{"text": "Hel"}]}, "index": 0}]}
    broken = {"candidates": 3}
    path, body = hello("openai", stream=True)
    fake_gemini.reply_sse([(None, broken)])
    status, raw, _ = await post(proxy, "openai", "gemini", path, body)
    assert status == 502
    assert "could not be read" in json.loads(raw)["error"]["message"]
    fake_gemini.delay_between_chunks = 0.05  # the text is sent on before `broken` comes
    fake_gemini.reply_sse([(None, text), (None, broken)])
    status, raw, _ = await post(proxy, "openai", "gemini", path, body)
    assert status == 200
    events = [line[6:] for line in raw.decode().splitlines() if line.startswith("data: ")]
    assert '"Hel"' in events[1]
    assert "could not be read" in json.loads(events[-1])["error"]["message"]


async def test_converted_streams_are_not_buffered(
    proxy: Proxy, fake_openai: FakeOpenAI
) -> None:
    """The first converted events reach the client while the upstream is still
    producing the rest."""
    fake_openai.stream_chunks = 10
    fake_openai.delay_between_chunks = 0.2
    path, body = hello("claude", stream=True)
    async with aiohttp.ClientSession() as http:
        resp = await http.post(
            f"{proxy.url}/openai-custom{path}", json=body, headers=HEADERS["claude"]
        )
        first = await resp.content.readany()
        resp.close()
    assert first.startswith(b"event: message_start")
    assert b"message_stop" not in first


async def test_a_count_error_from_another_protocol_is_in_the_clients_shape(
    proxy: Proxy, fake_gemini: FakeGemini
) -> None:
    """An upstream's error body passes through verbatim only to a client of the same
    protocol: Gemini's 400 for a bad key reaches an Anthropic client as an Anthropic
    error."""
    fake_gemini.api_keys = {"another-key"}
    body = {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}
    status, raw, _ = await post(
        proxy, "claude", "gemini", "/v1/messages/count_tokens", body
    )
    assert status == 400
    error = json.loads(raw)
    assert error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    assert "status" not in error["error"]  # not Gemini's {"error": {"code", "status"}}
