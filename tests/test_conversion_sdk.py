"""Each official SDK (openai, anthropic, google-genai) against each upstream protocol:
create, stream and a full tool round trip, through the proxy, against fakes that
validate the converted requests the way the real APIs do."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest

from aiclient.protocols import ApiProtocol
from aiclient.protocols.codecs import CODECS
from tests.conftest import (
    Proxy,
    StartProxy,
    claude_instance,
    gemini_instance,
    openai_instance,
)
from tests.fakes import FakeClaude, FakeGemini, FakeOpenAI, FakeUpstream
from tests.sdk_drivers import DRIVERS, Driver

PTYPES = {"openai": "openai-custom", "claude": "claude-custom", "gemini": "gemini-custom"}
PAIRS = list(itertools.product(DRIVERS, PTYPES))


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


@pytest.fixture
def fakes(
    fake_openai: FakeOpenAI, fake_claude: FakeClaude, fake_gemini: FakeGemini
) -> dict[str, FakeUpstream]:
    return {"openai": fake_openai, "claude": fake_claude, "gemini": fake_gemini}


@pytest.fixture
async def driver(request: pytest.FixtureRequest, proxy: Proxy) -> AsyncIterator[Driver]:
    client, upstream = request.param
    sdk = DRIVERS[client](f"{proxy.url}/{PTYPES[upstream]}")
    yield sdk
    await sdk.close()


def pair_ids(pair: tuple[str, str]) -> str:
    return f"{pair[0]}-client-on-{pair[1]}"


parametrize_pairs = pytest.mark.parametrize(
    ("driver", "pair"),
    [(p, p) for p in PAIRS],
    ids=[pair_ids(p) for p in PAIRS],
    indirect=["driver"],
)


@parametrize_pairs
async def test_create(
    driver: Driver, pair: tuple[str, str], fakes: dict[str, FakeUpstream]
) -> None:
    """A plain answer arrives with the upstream's text and a normal stop."""
    fake = fakes[pair[1]]
    text, stop = await driver.create("Hi", system="Be brief.")
    assert text == fake.default_text
    assert stop in ("stop", "end_turn", "STOP")
    assert fake.hits == 1


CONVERTED = [p for p in PAIRS if p[0] != p[1]]
PROTOCOLS = {
    "openai": ApiProtocol.OPENAI,
    "claude": ApiProtocol.CLAUDE,
    "gemini": ApiProtocol.GEMINI,
}


@pytest.mark.parametrize(
    ("driver", "pair"),
    [(p, p) for p in CONVERTED],
    ids=[pair_ids(p) for p in CONVERTED],
    indirect=["driver"],
)
async def test_everyday_requests_take_the_plain_fast_path(
    driver: Driver, pair: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chat with a system prompt, as each SDK sends it, and the fake upstream's
    answer of one text are read by the plain readers (canonical.PlainChat and
    PlainAnswer), not the general ones: the fast path is what real clients get."""
    client, upstream = PROTOCOLS[pair[0]], PROTOCOLS[pair[1]]
    read: list[str] = []

    def spy(codec: Any, name: str) -> None:
        reader = getattr(codec, name)

        def recording(*args: Any, **kwargs: Any) -> Any:
            result = reader(*args, **kwargs)
            read.append(f"{name}: {'plain' if result is not None else 'declined'}")
            return result

        monkeypatch.setattr(codec, name, recording)

    spy(CODECS[client], "plain_request_in")
    spy(CODECS[upstream], "plain_response_in")
    await driver.create("Hi", system="Be brief.")
    assert read == ["plain_request_in: plain", "plain_response_in: plain"]


@parametrize_pairs
async def test_stream(
    driver: Driver, pair: tuple[str, str], fakes: dict[str, FakeUpstream]
) -> None:
    fake = fakes[pair[1]]
    fake.stream_chunks = 7
    assert await driver.stream("Hi") == fake.default_text


@parametrize_pairs
async def test_stream_written_token_by_token(
    driver: Driver,
    pair: tuple[str, str],
    fakes: dict[str, FakeUpstream],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An upstream writing its text a delta at a time, as tokens come: every SDK reads
    the whole text, newlines, quotes, backslashes and non-ASCII included. Converted
    from an Anthropic or OpenAI upstream, the proxy reads most deltas from the last
    one's bytes (the pipeline's templates): the upstream decoder sees only those up to
    the first it can learn from (one written without escapes)."""
    client, upstream = PROTOCOLS[pair[0]], PROTOCOLS[pair[1]]
    decoder = type(CODECS[upstream].stream_decoder())
    texts: list[str] = []
    read = decoder.feed_text  # type: ignore[attr-defined]

    def counted(self: Any, event: Any) -> Any:
        got = read(self, event)
        if isinstance(got, str):
            texts.append(got)
        return got

    monkeypatch.setattr(decoder, "feed_text", counted)
    fake = fakes[pair[1]]
    fake.default_text = 'Line one,\nsays "hi" \\ é 汉字 — done. ' * 5
    fake.stream_chunks = 30
    fake.delay_between_chunks = 0.002
    assert await driver.stream("Hi") == fake.default_text
    if client is not upstream and upstream is not ApiProtocol.GEMINI:
        assert len(texts) <= fake.stream_chunks // 5


@parametrize_pairs
@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
async def test_tool_round_trip(
    driver: Driver, pair: tuple[str, str], fakes: dict[str, FakeUpstream], stream: bool
) -> None:
    """The model calls a tool, the client answers it, the model answers the client."""
    fake = fakes[pair[1]]
    turn = await driver.tool_round_trip(stream=stream)
    assert turn.name == "get_weather"
    assert turn.arguments == {"city": "Paris"}
    assert turn.final_text == fake.default_text
    assert fake.hits == 2
