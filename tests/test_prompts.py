"""SYSTEM_PROMPT_FILE_PATH / SYSTEM_PROMPT_MODE in every client protocol, and the
prompt log (console and file)."""

from __future__ import annotations

import asyncio
import logging
import stat
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from aiclient.prompts import apply_system_prompt
from aiclient.protocols import ApiProtocol
from tests.conftest import (
    API_KEY,
    StartProxy,
    claude_instance,
    gemini_instance,
    openai_instance,
)
from tests.fakes import FakeClaude, FakeGemini, FakeOpenAI


@pytest.mark.parametrize(
    ("protocol", "body", "mode", "expected"),
    [
        (
            ApiProtocol.OPENAI,
            {"messages": [{"role": "user", "content": "u"}]},
            "append",
            {
                "messages": [
                    {"role": "system", "content": "F"},
                    {"role": "user", "content": "u"},
                ]
            },
        ),
        (
            ApiProtocol.OPENAI,
            {"messages": [{"role": "system", "content": "S"}]},
            "append",
            {"messages": [{"role": "system", "content": "S\nF"}]},
        ),
        (
            ApiProtocol.OPENAI,
            {"messages": [{"role": "system", "content": "S"}]},
            "overwrite",
            {"messages": [{"role": "system", "content": "F"}]},
        ),
        (ApiProtocol.CLAUDE, {"system": "S"}, "append", {"system": "S\nF"}),
        (
            ApiProtocol.CLAUDE,
            {"system": [{"type": "text", "text": "S"}]},
            "append",
            {"system": [{"type": "text", "text": "S"}, {"type": "text", "text": "F"}]},
        ),
        (ApiProtocol.CLAUDE, {"system": "S"}, "overwrite", {"system": "F"}),
        (ApiProtocol.CLAUDE, {}, "append", {"system": "F"}),
        (
            ApiProtocol.GEMINI,
            {"system_instruction": {"parts": [{"text": "S"}]}},
            "append",
            {"systemInstruction": {"parts": [{"text": "S"}, {"text": "F"}]}},
        ),
        (
            ApiProtocol.GEMINI,
            {"systemInstruction": {"parts": [{"text": "S"}]}},
            "overwrite",
            {"systemInstruction": {"parts": [{"text": "F"}]}},
        ),
    ],
)
def test_apply_system_prompt(
    protocol: ApiProtocol, body: dict[str, Any], mode: str, expected: dict[str, Any]
) -> None:
    assert apply_system_prompt(protocol, body, "F", mode) == expected


async def test_system_prompt_file_reaches_every_upstream_and_prompts_are_logged(
    start_proxy: StartProxy,
    fake_openai: FakeOpenAI,
    fake_claude: FakeClaude,
    fake_gemini: FakeGemini,
    tmp_path: Path,
) -> None:
    prompt = tmp_path / "system.txt"
    await asyncio.to_thread(prompt.write_text, "Always be kind.\n")
    proxy = await start_proxy(
        {
            "openai-custom": [openai_instance(fake_openai, "oa")],
            "claude-custom": [claude_instance(fake_claude, "cl")],
            "gemini-custom": [gemini_instance(fake_gemini, "gm")],
        },
        system_prompt_file=str(prompt),
        system_prompt_mode="append",
        prompt_log_mode="file",
        prompt_log_base_name=str(tmp_path / "prompts"),
    )
    body = {
        "model": "m",
        "max_tokens": 20,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "Tell me a joke"}],
    }
    async with aiohttp.ClientSession() as http:
        for ptype in ("claude-custom", "openai-custom", "gemini-custom"):
            resp = await http.post(
                f"{proxy.url}/{ptype}/v1/messages",
                json={**body, "stream": ptype == "gemini-custom"},
                headers={"x-api-key": API_KEY},
            )
            assert resp.status == 200
            await resp.read()
    assert fake_claude.last_request.json["system"] == "Be brief.\nAlways be kind."
    assert fake_openai.last_request.json["messages"][0] == {
        "role": "system",
        "content": "Be brief.\nAlways be kind.",
    }
    assert fake_gemini.last_request.json["systemInstruction"] == {
        "parts": [{"text": "Be brief.\nAlways be kind."}]
    }
    await proxy.server.close()  # flushes the prompt log
    logs = await asyncio.to_thread(lambda: list(tmp_path.glob("prompts-*.log")))
    assert len(logs) == 1
    assert stat.S_IMODE(logs[0].stat().st_mode) == 0o600  # prompts are private
    text = await asyncio.to_thread(logs[0].read_text)
    assert text.count("[INPUT]:\nTell me a joke\n") == 3
    for fake in (fake_claude, fake_openai, fake_gemini):
        assert f"[OUTPUT]:\n{fake.default_text}\n" in text
    assert text.count("-" * 38 + "\n") == 6


async def test_console_prompt_log(
    start_proxy: StartProxy, fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = await start_proxy(
        {"openai-custom": [openai_instance(fake_openai, "oa")]}, prompt_log_mode="console"
    )
    caplog.set_level(logging.INFO, logger="aiclient.prompts")
    async with aiohttp.ClientSession() as http:
        resp = await http.post(
            f"{proxy.url}/v1/chat/completions",
            json={
                "model": "m",
                "stream": True,
                "messages": [{"role": "user", "content": "Q?"}],
            },
            headers={"Authorization": f"Bearer {API_KEY}"},
        )
        await resp.read()
    logged = "\n".join(
        r.getMessage() for r in caplog.records if r.name == "aiclient.prompts"
    )
    assert "[INPUT]:\nQ?" in logged
    assert f"[OUTPUT]:\n{fake_openai.default_text}" in logged
