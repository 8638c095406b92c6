"""Failures the client need not see are failed over; the rest arrive clearly."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import anthropic
import openai
import pytest

from tests.conftest import API_KEY, Proxy, StartProxy, claude_instance, openai_instance
from tests.fakes import FakeClaude, FakeOpenAI

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}


def client(proxy: Proxy) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{proxy.url}/v1", api_key=API_KEY, max_retries=0)


def state(proxy: Proxy, uid: str) -> Any:
    entry = proxy.runtime.pool.get(uid)
    assert entry is not None
    return entry.state


def two_instances(first: FakeOpenAI, second: FakeOpenAI) -> dict[str, Any]:
    """Two instances on two upstreams; round robin starts with "first"."""
    return {
        "openai-custom": [
            openai_instance(first, "first"),
            openai_instance(second, "second"),
        ]
    }


@pytest.fixture
async def two(
    start_proxy: StartProxy, fake_openai: FakeOpenAI, fake_openai_2: FakeOpenAI
) -> Proxy:
    return await start_proxy(two_instances(fake_openai, fake_openai_2), read_timeout_ms=300)


@pytest.mark.parametrize("failure", ["500", "429", "503", "reset", "hang", "cut", "401"])
async def test_retryable_failure_fails_over_to_another_instance(
    two: Proxy, fake_openai: FakeOpenAI, fake_openai_2: FakeOpenAI, failure: str
) -> None:
    if failure == "reset":
        fake_openai.reply_reset()
    elif failure == "hang":
        fake_openai.reply_hang(5)
    elif failure == "cut":
        fake_openai.reply_cut_stream(0)
    else:
        fake_openai.reply_status(int(failure), headers={"retry-after": "1"})
    async with client(two) as c:
        result = await c.chat.completions.create(**CHAT)  # type: ignore[call-overload]
    assert result.choices[0].message.content == fake_openai_2.default_text
    assert (fake_openai.hits, fake_openai_2.hits) == (1, 1)
    first, second = state(two, "first"), state(two, "second")
    counted = failure not in ("429", "401")  # a cooldown and a standby instead
    assert (first.error_count, first.usage_count) == (int(counted), 0)
    assert first.last_error_time is not None
    assert first.status == {"429": "cooling", "401": "standby"}.get(failure, "active")
    assert (second.error_count, second.usage_count) == (0, 1)


async def test_stream_fails_over_before_the_first_byte(
    two: Proxy, fake_openai: FakeOpenAI, fake_openai_2: FakeOpenAI
) -> None:
    fake_openai.reply_status(502)
    async with client(two) as c:
        stream = await c.chat.completions.create(**CHAT, stream=True)  # type: ignore[call-overload]
        text = "".join(
            [ch.choices[0].delta.content or "" async for ch in stream if ch.choices]
        )
    assert text == fake_openai_2.default_text


@pytest.mark.parametrize("status", [400, 404, 413, 422])
async def test_client_errors_come_back_as_they_came_and_do_not_count(
    two: Proxy, fake_openai: FakeOpenAI, fake_openai_2: FakeOpenAI, status: int
) -> None:
    body = {
        "error": {
            "message": f"upstream says {status}",
            "type": "invalid_request_error",
            "param": "messages",
            "code": None,
        }
    }
    fake_openai.reply_status(status, body)
    async with aiohttp.ClientSession() as http:
        resp = await http.post(
            f"{two.url}/v1/chat/completions",
            json=CHAT,
            headers={"Authorization": f"Bearer {API_KEY}"},
        )
        got = await resp.json()
    assert resp.status == status
    assert got == body
    assert fake_openai_2.hits == 0
    assert state(two, "first").error_count == 0


async def test_upstream_validation_error_reaches_the_sdk(
    start_proxy: StartProxy, fake_claude: FakeClaude
) -> None:
    """The fake validates like Anthropic: an empty text block is a 400 for the SDK."""
    proxy = await start_proxy({"claude-custom": [claude_instance(fake_claude, "c")]})
    async with anthropic.AsyncAnthropic(
        base_url=proxy.url, api_key=API_KEY, max_retries=0
    ) as c:
        with pytest.raises(anthropic.BadRequestError) as info:
            await c.messages.create(
                model="claude-proxy-test",
                max_tokens=10,
                messages=[{"role": "user", "content": [{"type": "text", "text": ""}]}],
            )
    assert "non-empty" in str(info.value)


async def test_retries_are_bounded_and_the_last_error_is_returned(
    start_proxy: StartProxy, fake_openai: FakeOpenAI
) -> None:
    """429 from every instance: the client gets a 429 (with Retry-After), not a hang."""
    instances = [openai_instance(fake_openai, f"i{n}") for n in range(5)]
    proxy = await start_proxy({"openai-custom": instances}, request_max_retries=2)
    for _ in range(5):
        fake_openai.reply_status(429, headers={"retry-after": "7"})
    async with aiohttp.ClientSession() as http:
        resp = await http.post(
            f"{proxy.url}/v1/chat/completions",
            json=CHAT,
            headers={"Authorization": f"Bearer {API_KEY}"},
        )
        body = await resp.json()
    assert resp.status == 429
    assert resp.headers["retry-after"] == "7"
    assert body["error"]["message"]
    assert fake_openai.hits == 3  # the first try plus REQUEST_MAX_RETRIES=2


async def test_the_log_says_giving_up_when_no_other_instance_is_left(
    start_proxy: StartProxy, fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    """One instance that fails: retries remain, but nothing to fail over to."""
    proxy = await start_proxy(
        {"openai-custom": [openai_instance(fake_openai, "only")]}, request_max_retries=3
    )
    fake_openai.reply_status(500)
    caplog.set_level("INFO", logger="aiclient.relay")
    async with client(proxy) as c:
        with pytest.raises(openai.InternalServerError):
            await c.chat.completions.create(**CHAT)  # type: ignore[call-overload]
    failed = [r.getMessage() for r in caplog.records if "failed (" in r.getMessage()]
    assert len(failed) == 1
    assert failed[0].endswith("giving up")
    assert fake_openai.hits == 1


async def test_backoff_grows_from_request_base_delay(
    start_proxy: StartProxy, fake_openai: FakeOpenAI
) -> None:
    """The first failover is immediate; later retries wait base, 2*base, ..."""
    instances = [openai_instance(fake_openai, f"i{n}") for n in range(4)]
    proxy = await start_proxy({"openai-custom": instances}, request_base_delay_ms=40)
    relay = proxy.runtime.relay
    assert relay is not None
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    relay._sleep = fake_sleep
    for _ in range(3):
        fake_openai.reply_status(500)
    async with client(proxy) as c:
        await c.chat.completions.create(**CHAT)  # type: ignore[call-overload]
    assert slept == [0.04, 0.08]


async def test_instance_becomes_unhealthy_at_max_error_count(
    start_proxy: StartProxy, fake_openai: FakeOpenAI, fake_openai_2: FakeOpenAI
) -> None:
    proxy = await start_proxy(
        {
            "openai-custom": [
                openai_instance(fake_openai, "bad"),
                openai_instance(fake_openai_2, "good"),
            ]
        },
        max_error_count=2,
        request_max_retries=0,
    )
    for _ in range(2):
        fake_openai.reply_status(500)
    async with client(proxy) as c:
        for _ in range(6):
            try:
                await c.chat.completions.create(**CHAT)  # type: ignore[call-overload]
            except openai.InternalServerError:
                pass
    bad = state(proxy, "bad")
    assert bad.healthy is False
    assert bad.error_count == 2
    assert fake_openai.hits == 2  # never picked again once unhealthy
    assert fake_openai_2.hits == 4


async def test_no_healthy_instance_is_503_at_once(
    start_proxy: StartProxy, fake_openai: FakeOpenAI
) -> None:
    proxy = await start_proxy(
        {
            "openai-custom": [
                openai_instance(fake_openai, "a", isHealthy=False),
                openai_instance(fake_openai, "b", isDisabled=True),
            ]
        }
    )
    async with aiohttp.ClientSession() as http:
        resp = await http.post(
            f"{proxy.url}/v1/chat/completions",
            json=CHAT,
            headers={"Authorization": f"Bearer {API_KEY}"},
        )
        body = await resp.json()
    assert resp.status == 503
    assert "openai-custom" in body["error"]["message"]
    assert fake_openai.hits == 0


async def test_stream_cut_midway_ends_with_an_in_band_error(
    start_proxy: StartProxy, fake_openai: FakeOpenAI
) -> None:
    proxy = await start_proxy({"openai-custom": [openai_instance(fake_openai, "a")]})
    fake_openai.stream_chunks = 10
    fake_openai.reply_cut_stream(4)
    received: list[str] = []

    async def consume(stream: Any) -> None:
        async for chunk in stream:
            if chunk.choices:
                received.append(chunk.choices[0].delta.content or "")

    async with client(proxy) as c:
        stream = await c.chat.completions.create(**CHAT, stream=True)  # type: ignore[call-overload]
        with pytest.raises(openai.APIError) as info:
            await consume(stream)
    assert "before the answer was complete" in str(info.value.message)
    assert 0 < len(received) < 10
    assert state(proxy, "a").error_count == 1


async def test_claude_stream_cut_midway_raises_in_the_anthropic_sdk(
    start_proxy: StartProxy, fake_claude: FakeClaude
) -> None:
    proxy = await start_proxy({"claude-custom": [claude_instance(fake_claude, "a")]})
    fake_claude.stream_chunks = 10
    fake_claude.reply_cut_stream(5)
    async with anthropic.AsyncAnthropic(
        base_url=proxy.url, api_key=API_KEY, max_retries=0
    ) as c:
        with pytest.raises(anthropic.APIStatusError) as info:
            async with c.messages.stream(
                model="claude-proxy-test",
                max_tokens=50,
                messages=[{"role": "user", "content": "Hi"}],
            ) as stream:
                await stream.get_final_message()
    assert info.value.body["error"]["type"] == "api_error"  # type: ignore[index]
    assert state(proxy, "a").error_count == 1


async def test_stream_that_ends_without_its_terminator_is_an_error(
    start_proxy: StartProxy, fake_openai: FakeOpenAI
) -> None:
    """A clean close without `data: [DONE]` is not a complete answer."""
    proxy = await start_proxy({"openai-custom": [openai_instance(fake_openai, "a")]})
    chunk = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": "partial"}, "finish_reason": None}],
    }
    fake_openai.reply_sse([(None, chunk)])
    async with aiohttp.ClientSession() as http:
        resp = await http.post(
            f"{proxy.url}/v1/chat/completions",
            json={**CHAT, "stream": True},
            headers={"Authorization": f"Bearer {API_KEY}"},
        )
        text = await resp.text()
    assert resp.status == 200
    assert text.rstrip().splitlines()[-1].startswith('data: {"error"')
    assert state(proxy, "a").error_count == 1


async def test_silent_upstream_mid_stream_is_detected(
    start_proxy: StartProxy, fake_openai: FakeOpenAI
) -> None:
    """A read timeout catches an upstream that stops talking after it started."""
    proxy = await start_proxy(
        {"openai-custom": [openai_instance(fake_openai, "a")]}, read_timeout_ms=200
    )
    fake_openai.stream_chunks = 5
    fake_openai.delay_between_chunks = 2.0
    async with client(proxy) as c:
        stream = await c.chat.completions.create(**CHAT, stream=True)  # type: ignore[call-overload]
        with pytest.raises(openai.APIError, match="did not answer in time"):
            async for _ in stream:
                pass


async def test_a_slow_instance_never_delays_another(
    start_proxy: StartProxy, fake_openai: FakeOpenAI, fake_openai_2: FakeOpenAI
) -> None:
    proxy = await start_proxy(
        two_instances(fake_openai, fake_openai_2), read_timeout_ms=10_000
    )
    # Answers, slowly, well under the read timeout; the other request has a second,
    # ample on a busy machine (0.25 s with a 0.3 s timeout was not, once in CI).
    fake_openai.reply_slow_first_byte(1.0)
    finished: list[str] = []

    async def one(name: str) -> None:
        async with client(proxy) as c:
            await c.chat.completions.create(**CHAT)  # type: ignore[call-overload]
        finished.append(name)

    slow = asyncio.ensure_future(one("slow"))
    while fake_openai.hits == 0:
        await asyncio.sleep(0.005)
    await one("fast")
    await slow
    assert finished == ["fast", "slow"]


async def test_client_disconnect_mid_stream_closes_the_upstream_at_once(
    start_proxy: StartProxy, fake_openai: FakeOpenAI
) -> None:
    """A client that goes away stops the upstream stream within a second; the
    instance is not blamed."""
    proxy = await start_proxy({"openai-custom": [openai_instance(fake_openai, "a")]})
    fake_openai.stream_chunks = 50
    fake_openai.default_text = " ".join(f"w{i}" for i in range(60))
    fake_openai.delay_between_chunks = 0.05
    async with aiohttp.ClientSession() as http:
        resp = await http.post(
            f"{proxy.url}/v1/chat/completions",
            json={**CHAT, "stream": True},
            headers={"Authorization": f"Bearer {API_KEY}"},
        )
        await resp.content.readany()
        resp.close()
        closed_at = asyncio.get_running_loop().time()
    for _ in range(100):
        if fake_openai.disconnects:
            break
        await asyncio.sleep(0.02)
    assert fake_openai.disconnects
    assert fake_openai.disconnects[0] - closed_at < 1.0
    a = state(proxy, "a")
    for _ in range(50):
        if a.in_flight == 0:
            break
        await asyncio.sleep(0.02)
    assert (a.in_flight, a.error_count, a.usage_count) == (0, 0, 0)


async def test_stream_request_answered_with_json_fails_over(
    two: Proxy, fake_openai: FakeOpenAI, fake_openai_2: FakeOpenAI
) -> None:
    """An upstream that ignores `stream: true` is not relayed as a broken stream."""
    fake_openai.reply_json({"id": "x", "object": "chat.completion", "choices": []})
    async with client(two) as c:
        stream = await c.chat.completions.create(**CHAT, stream=True)  # type: ignore[call-overload]
        text = "".join(
            [ch.choices[0].delta.content or "" async for ch in stream if ch.choices]
        )
    assert text == fake_openai_2.default_text
    assert state(two, "first").error_count == 1


async def test_a_long_healthy_stream_is_never_cut(
    start_proxy: StartProxy, fake_openai: FakeOpenAI
) -> None:
    """The read timeout bounds silence, not length: a stream three times longer than
    it completes."""
    proxy = await start_proxy(
        {"openai-custom": [openai_instance(fake_openai, "a")]}, read_timeout_ms=300
    )
    fake_openai.default_text = " ".join(f"w{i}" for i in range(12))
    fake_openai.stream_chunks = 12
    fake_openai.delay_between_chunks = 0.08  # about 1 s in all
    async with client(proxy) as c:
        stream = await c.chat.completions.create(**CHAT, stream=True)  # type: ignore[call-overload]
        text = "".join(
            [ch.choices[0].delta.content or "" async for ch in stream if ch.choices]
        )
    assert text == fake_openai.default_text
    assert state(proxy, "a").error_count == 0
