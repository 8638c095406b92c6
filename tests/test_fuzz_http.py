"""Malformed bodies of every kind, at every endpoint and on every upstream protocol, get
a 4xx JSON error: never a 500, never a crash."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiclient.bootstrap import open_pools
from aiclient.http_server import Server
from aiclient.server import build_app
from tests.conftest import (
    API_KEY,
    claude_instance,
    gemini_instance,
    make_settings,
    openai_instance,
    write_pools,
)
from tests.fakes import FakeClaude, FakeGemini, FakeOpenAI

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "30"))  # per endpoint and upstream


@pytest.fixture(scope="module")
def live_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The proxy and three fakes on an event loop of their own, in a thread."""
    folder: Path = tmp_path_factory.mktemp("fuzz")
    ready = threading.Event()
    found: dict[str, Any] = {}
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def main() -> None:
        async with FakeOpenAI() as oa, FakeClaude() as cl, FakeGemini() as gm:
            path = write_pools(
                folder / "provider_pools.json",
                {
                    "openai-custom": [openai_instance(oa, "oa")],
                    "claude-custom": [claude_instance(cl, "cl")],
                    "gemini-custom": [gemini_instance(gm, "gm")],
                },
            )
            config = make_settings(
                pools_file=str(path),
                max_error_count=0,
                request_max_retries=0,
                hot_reload=False,
            )
            setup = await asyncio.to_thread(open_pools, config)
            server = Server(build_app(config, setup))
            await server.start("127.0.0.1", 0)
            found["url"] = f"http://127.0.0.1:{server.port}"
            ready.set()
            await stop.wait()
            await server.close()

    thread = threading.Thread(target=lambda: loop.run_until_complete(main()))
    thread.start()
    assert ready.wait(20), "the proxy did not start"
    yield found["url"]
    loop.call_soon_threadsafe(stop.set)
    thread.join(20)
    loop.close()


leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
values = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)
FIELDS = [
    "model",
    "messages",
    "max_tokens",
    "stream",
    "system",
    "tools",
    "tool_choice",
    "temperature",
    "stop",
    "contents",
    "systemInstruction",
    "generationConfig",
    "thinking",
    "n",
    "response_format",
    "stream_options",
]
ROLES = ["user", "assistant", "system", "developer", "tool", "model", "function", "x"]
BLOCKS = ["text", "image", "image_url", "tool_use", "tool_result", "thinking", "document"]
block = st.fixed_dictionaries(
    {"type": st.sampled_from(BLOCKS) | values},
    optional={
        "text": values,
        "source": values,
        "image_url": values,
        "id": values,
        "name": values,
        "input": values,
        "tool_use_id": values,
        "content": values,
    },
)
message = st.fixed_dictionaries(
    {"role": st.sampled_from(ROLES) | values},
    optional={
        "content": st.text(max_size=10) | st.lists(block, max_size=3) | values,
        "parts": st.lists(
            values
            | st.fixed_dictionaries(
                {},
                optional={
                    "text": values,
                    "functionCall": values,
                    "functionResponse": values,
                    "inlineData": values,
                },
            ),
            max_size=3,
        ),
        "tool_calls": values,
        "tool_call_id": values,
        "name": values,
    },
)
near_valid = st.fixed_dictionaries(
    {"model": st.sampled_from(["m", "gpt-4o-mini"]) | values},
    optional={
        "messages": st.lists(message, max_size=3) | values,
        "contents": st.lists(message, max_size=3) | values,
        "max_tokens": st.integers(-5, 100) | values,
        "stream": values,
        "tools": st.lists(values, max_size=2) | values,
        "system": values,
    },
)
bodies = (
    st.binary(max_size=120)
    | values.map(lambda v: json.dumps(v).encode())
    | st.dictionaries(st.sampled_from(FIELDS), values, max_size=5).map(
        lambda v: json.dumps(v).encode()
    )
    | near_valid.map(lambda v: json.dumps(v).encode())
)

TARGETS = [
    (path.format(ptype=ptype), ptype)
    for ptype in ("openai-custom", "claude-custom", "gemini-custom")
    for path in (
        "/{ptype}/v1/chat/completions",
        "/{ptype}/v1/messages",
        "/{ptype}/v1beta/models/m:generateContent",
        "/{ptype}/v1beta/models/m:streamGenerateContent?alt=sse",
        "/{ptype}/v1beta/models/m:streamGenerateContent",
    )
] + [  # token counting: answered by Anthropic and Gemini upstreams (OpenAI's is a 501)
    (path.format(ptype=ptype), ptype)
    for ptype in ("claude-custom", "gemini-custom")
    for path in (
        "/{ptype}/v1/messages/count_tokens",
        "/{ptype}/v1beta/models/m:countTokens",
    )
]


def post(url: str, body: bytes) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=20) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


@pytest.mark.parametrize(("path", "ptype"), TARGETS, ids=[p for p, _ in TARGETS])
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(body=bodies)
def test_malformed_bodies_get_a_4xx_json_error(
    live_proxy: str, path: str, ptype: str, body: bytes
) -> None:
    status, answer = post(live_proxy + path, body)
    assert status < 500, (status, answer[:300])
    if status >= 400:
        error = json.loads(answer)
        assert "error" in error, answer[:300]
