"""claude-kiro-oauth: the event-stream decoder, the Claude ⇄ Kiro conversion, and the
provider against fake Kiro refresh endpoints and a fake generateAssistantResponse."""

from __future__ import annotations

import asyncio
import base64
import json
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from aiclient.eventstream import EventStreamDecoder, EventStreamError, encode_message
from aiclient.protocols.kiro import KiroStream, kiro_message, kiro_request
from tests.conftest import API_KEY, Proxy, StartProxy
from tests.fakes.kiro import FakeKiro, event_frame
from tests.fakes.oauth import FakeOAuth
from tests.oauth_helpers import kiro_creds, read_json
from tests.sdk_drivers import DRIVERS

PTYPE = "claude-kiro-oauth"
HEADERS = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01"}
MESSAGE = {
    "model": "claude-sonnet-4-20250514",
    "max_tokens": 100,
    "messages": [{"role": "user", "content": "Hi"}],
}


def _stream_bytes() -> bytes:
    frames = [
        event_frame("assistantResponseEvent", b'{"content": "Hel"}'),
        event_frame("assistantResponseEvent", b'{"content": "lo \\u00e9t\\u00e9"}'),
        event_frame(
            "toolUseEvent", b'{"name": "f", "toolUseId": "t1", "input": "{\\"a\\""}'
        ),
        event_frame("toolUseEvent", b'{"name": "f", "toolUseId": "t1", "input": ": 1}"}'),
        event_frame("toolUseEvent", b'{"name": "f", "toolUseId": "t1", "stop": true}'),
        event_frame("meteringEvent", b'{"unit": "credit", "usage": 0.5}'),
    ]
    return b"".join(frames)


# -- event-stream framing -------------------------------------------------------------


def test_every_split_point_decodes_the_same_messages() -> None:
    data = _stream_bytes()
    whole = EventStreamDecoder().feed(data)
    assert len(whole) == 6
    assert whole[0].header(":event-type") == "assistantResponseEvent"
    for cut in range(len(data) + 1):
        decoder = EventStreamDecoder()
        assert decoder.feed(data[:cut]) + decoder.feed(data[cut:]) == whole
        assert decoder.pending == 0
    decoder = EventStreamDecoder()
    assert [m for i in range(len(data)) for m in decoder.feed(data[i : i + 1])] == whole


def test_every_split_point_gives_the_same_claude_stream() -> None:
    data = _stream_bytes()
    reference = KiroStream("m")
    expected = reference.feed(data) + reference.close()
    strip = reference.message_id.encode()
    for cut in range(len(data) + 1):
        stream = KiroStream("m")
        out = stream.feed(data[:cut]) + stream.feed(data[cut:]) + stream.close()
        assert out.replace(stream.message_id.encode(), strip) == expected
    text = expected.decode()
    assert text.count("event: content_block_start") == 2
    assert '"partial_json":"{\\"a\\""' in text
    assert text.endswith('event: message_stop\ndata: {"type":"message_stop"}\n\n')


def test_non_stream_message_has_text_and_tool_input_as_object() -> None:
    message = json.loads(kiro_message(_stream_bytes(), "claude-x"))
    assert message["content"][0] == {"type": "text", "text": "Hello été"}
    assert message["content"][1] == {"type": "tool_use", "id": "t1", "name": "f",
                                     "input": {"a": 1}}  # fmt: skip
    assert message["stop_reason"] == "tool_use"
    assert message["model"] == "claude-x"


def test_corrupt_or_cut_streams_are_errors() -> None:
    frame = bytearray(encode_message({":event-type": "x"}, b"{}"))
    frame[-6] ^= 0xFF
    with pytest.raises(EventStreamError, match="checksum"):
        EventStreamDecoder().feed(bytes(frame))
    stream = KiroStream("m")
    stream.feed(_stream_bytes()[:-3])
    with pytest.raises(ValueError, match="cut"):
        stream.close()
    exception = encode_message(
        {":message-type": "exception", ":exception-type": "ThrottlingException"},
        b'{"message": "slow down"}',
    )
    with pytest.raises(ValueError, match="ThrottlingException"):
        KiroStream("m").feed(exception)


# -- Claude -> Kiro request ---------------------------------------------------------------


def test_request_conversion_with_system_tools_and_tool_history() -> None:
    body = {
        "system": [{"type": "text", "text": "Be brief."}],
        "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Checking."},
                    {
                        "type": "tool_use",
                        "id": "t1",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": "Sunny"},
                    {
                        "type": "image",
                        "source": {
                            "type": "base64",
                            "media_type": "image/jpeg",
                            "data": "AAAA",
                        },
                    },
                ],
            },
        ],
    }
    out = kiro_request(body, model_id="MID", profile_arn="arn:x", conversation_id="c1")
    state = out["conversationState"]
    assert out["profileArn"] == "arn:x"
    assert state["conversationId"] == "c1"
    first, second = state["history"]
    assert first["userInputMessage"]["content"] == "Be brief.\n\nWeather in Paris?"
    assert second["assistantResponseMessage"] == {
        "content": "Checking.",
        "toolUses": [
            {"input": {"city": "Paris"}, "name": "get_weather", "toolUseId": "t1"}
        ],
    }
    current = state["currentMessage"]["userInputMessage"]
    assert current["modelId"] == "MID"
    context = current["userInputMessageContext"]
    assert context["toolResults"] == [
        {"content": [{"text": "Sunny"}], "status": "success", "toolUseId": "t1"}
    ]
    assert context["tools"][0]["toolSpecification"]["name"] == "get_weather"
    assert current["images"] == [{"format": "jpeg", "source": {"bytes": "AAAA"}}]


def test_single_message_gets_the_system_prompt_and_a_final_assistant_turn_continues() -> (
    None
):
    out = kiro_request(
        {"system": "S", "messages": [{"role": "user", "content": "Q"}]}, model_id="M"
    )
    assert out["conversationState"]["currentMessage"]["userInputMessage"]["content"] == (
        "S\n\nQ"
    )
    assert "profileArn" not in out
    out = kiro_request(
        {
            "messages": [
                {"role": "user", "content": "Q"},
                {"role": "assistant", "content": "A"},
            ]
        },
        model_id="M",
    )
    state = out["conversationState"]
    assert len(state["history"]) == 2
    assert state["currentMessage"]["userInputMessage"]["content"] == "Continue"
    with pytest.raises(ValueError, match="messages"):
        kiro_request({"messages": []}, model_id="M")


# -- the provider ------------------------------------------------------------------------


@pytest.fixture
async def kiro(oauth: FakeOAuth) -> AsyncIterator[FakeKiro]:
    async with FakeKiro(oauth.access_tokens) as fake:
        yield fake


def instance(
    kiro: FakeKiro, oauth: FakeOAuth, creds: Path | None, uuid: str, **extra: Any
) -> dict[str, Any]:
    inst: dict[str, Any] = {
        "uuid": uuid,
        "KIRO_BASE_URL": kiro.base_url,
        "KIRO_REFRESH_URL": f"{oauth.base_url}/refreshToken",
        "KIRO_REFRESH_IDC_URL": f"{oauth.base_url}/idc/token",
        **extra,
    }
    if creds is not None:
        inst["KIRO_OAUTH_CREDS_FILE_PATH"] = str(creds)
    return inst


async def post(proxy: Proxy, body: dict[str, Any] = MESSAGE) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{proxy.url}/{PTYPE}/v1/messages", json=body, headers=HEADERS
        ) as resp,
    ):
        return resp.status, await resp.json()


@pytest.mark.parametrize("method", ["social", "IdC"])
async def test_expired_token_is_refreshed_by_its_flow_and_written_back(
    start_proxy: StartProxy, oauth: FakeOAuth, kiro: FakeKiro, tmp_path: Path, method: str
) -> None:
    creds = kiro_creds(tmp_path / "kiro-auth-token.json", oauth, method=method, mode=0o640)
    before = read_json(creds)
    kiro.require_profile_arn = method == "social"
    proxy = await start_proxy({PTYPE: [instance(kiro, oauth, creds, "k1")]})
    status, body = await post(proxy)
    assert status == 200, body
    assert body["content"] == [{"type": "text", "text": kiro.default_text}]
    assert oauth.refreshes == {"social" if method == "social" else "idc": 1}
    after = read_json(creds)
    assert after["accessToken"] in oauth.access_tokens
    assert after["refreshToken"] != before["refreshToken"]
    assert after["refreshToken"] in oauth.refresh_tokens
    assert after["authMethod"] == method  # merged, not replaced
    expires = after["expiresAt"].replace("Z", "+00:00")
    from datetime import datetime

    assert datetime.fromisoformat(expires).timestamp() > time.time() + 1800
    assert stat.S_IMODE(creds.stat().st_mode) == 0o640
    sent = kiro.last_request.json["conversationState"]["currentMessage"]
    assert sent["userInputMessage"]["modelId"] == "CLAUDE_SONNET_4_20250514_V1_0"


async def test_rejected_token_403_is_refreshed_once_and_retried(
    start_proxy: StartProxy, oauth: FakeOAuth, kiro: FakeKiro, tmp_path: Path
) -> None:
    creds = kiro_creds(tmp_path / "k.json", oauth, expired=False)
    proxy = await start_proxy({PTYPE: [instance(kiro, oauth, creds, "k1")]})
    oauth.revoke(read_json(creds)["accessToken"])
    status, body = await post(proxy)
    assert status == 200, body
    assert oauth.total_refreshes == 1
    assert kiro.hits == 2
    assert proxy.runtime.pool.failures == {}


async def test_hundred_concurrent_requests_share_one_refresh(
    start_proxy: StartProxy, oauth: FakeOAuth, kiro: FakeKiro, tmp_path: Path
) -> None:
    oauth.delay = 0.05
    creds = kiro_creds(tmp_path / "k.json", oauth)
    proxy = await start_proxy({PTYPE: [instance(kiro, oauth, creds, "k1")]})
    results = await asyncio.gather(*(post(proxy) for _ in range(100)))
    assert [status for status, _ in results] == [200] * 100
    assert oauth.hits == 1


async def test_refresh_failure_fails_over_to_another_instance(
    start_proxy: StartProxy, oauth: FakeOAuth, kiro: FakeKiro, tmp_path: Path
) -> None:
    dead = kiro_creds(tmp_path / "dead.json", oauth)
    oauth.refresh_tokens.discard(read_json(dead)["refreshToken"])
    good = kiro_creds(tmp_path / "good.json", oauth)
    proxy = await start_proxy(
        {PTYPE: [instance(kiro, oauth, dead, "dead"), instance(kiro, oauth, good, "good")]}
    )
    status, body = await post(proxy)
    assert status == 200, body
    assert proxy.runtime.pool.failures == {("dead", "auth"): 1}


async def test_unknown_models_map_to_the_configured_default(
    start_proxy: StartProxy, oauth: FakeOAuth, kiro: FakeKiro, tmp_path: Path
) -> None:
    creds = kiro_creds(tmp_path / "k.json", oauth, expired=False)
    inst = instance(
        kiro, oauth, creds, "k1", KIRO_DEFAULT_MODEL="claude-3-7-sonnet-20250219"
    )
    proxy = await start_proxy({PTYPE: [inst]})
    status, body = await post(proxy, {**MESSAGE, "model": "claude-4-sonnet"})
    assert status == 200, body
    assert body["model"] == "claude-4-sonnet"
    sent = kiro.last_request.json["conversationState"]["currentMessage"]
    assert sent["userInputMessage"]["modelId"] == "CLAUDE_3_7_SONNET_20250219_V1_0"


async def test_kiro_errors_reach_claude_clients_in_claude_shape(
    start_proxy: StartProxy, oauth: FakeOAuth, kiro: FakeKiro, tmp_path: Path
) -> None:
    creds = kiro_creds(tmp_path / "k.json", oauth, expired=False)
    proxy = await start_proxy({PTYPE: [instance(kiro, oauth, creds, "k1")]})
    kiro.reply_status(400, {"message": "Improperly formed request.", "reason": None})
    status, body = await post(proxy)
    assert status == 400
    assert body["type"] == "error"
    assert body["error"]["message"] == "Improperly formed request."


async def test_stream_reaches_the_client_while_kiro_is_still_answering(
    start_proxy: StartProxy, oauth: FakeOAuth, kiro: FakeKiro, tmp_path: Path
) -> None:
    creds = kiro_creds(tmp_path / "k.json", oauth, expired=False)
    kiro.write_size = 5  # frames split across many socket writes
    kiro.gate = asyncio.Event()
    proxy = await start_proxy({PTYPE: [instance(kiro, oauth, creds, "k1")]})
    url = f"{proxy.url}/{PTYPE}/v1/messages"
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json={**MESSAGE, "stream": True}, headers=HEADERS) as resp,
    ):
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        seen = b""
        while b"text_delta" not in seen:
            seen += await asyncio.wait_for(resp.content.readany(), 5)
        assert b"message_stop" not in seen
        kiro.gate.set()
        seen += await resp.read()
    text = "".join(
        json.loads(line[6:])["delta"]["text"]
        for line in seen.decode().splitlines()
        if line.startswith("data: ") and '"text_delta"' in line
    )
    assert text == kiro.default_text
    assert seen.decode().rstrip().endswith('data: {"type":"message_stop"}')


async def test_inline_base64_credentials(
    start_proxy: StartProxy, oauth: FakeOAuth, kiro: FakeKiro, tmp_path: Path
) -> None:
    creds = kiro_creds(tmp_path / "k.json", oauth)
    encoded = base64.b64encode(creds.read_bytes()).decode()
    creds.unlink()
    proxy = await start_proxy(
        {PTYPE: [instance(kiro, oauth, None, "k1", KIRO_OAUTH_CREDS_BASE64=encoded)]}
    )
    status, body = await post(proxy)
    assert status == 200, body
    assert not creds.exists()


@pytest.mark.parametrize("client", ["claude", "openai"])
async def test_official_sdks(
    start_proxy: StartProxy, oauth: FakeOAuth, kiro: FakeKiro, tmp_path: Path, client: str
) -> None:
    creds = kiro_creds(tmp_path / "k.json", oauth)
    proxy = await start_proxy({PTYPE: [instance(kiro, oauth, creds, "k1")]})
    sdk = DRIVERS[client](f"{proxy.url}/{PTYPE}")
    try:
        text, _ = await sdk.create("Hello", system="Be brief.")
        assert text == kiro.default_text
        assert await sdk.stream("Hello again") == kiro.default_text
        for stream in (False, True):
            turn = await sdk.tool_round_trip(stream=stream)
            assert turn.name == "get_weather"
            assert turn.arguments == {"city": "Paris"}
    finally:
        await sdk.close()
    assert oauth.total_refreshes == 1
