"""The command line: flags, exit codes, --check, the real process (demo, SIGTERM)."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
from pathlib import Path

import aiohttp
import pytest

from aiclient import __version__
from aiclient.cli import main
from tests.conftest import OPENAI_KEY, openai_instance, read_pools, write_pools
from tests.fakes import FakeOpenAI
from tests.procs import serve, start_process


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert __version__ in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "--provider-pools-file" in out
    assert "--request-max-retries" in out


def test_check_summarises_the_pool_without_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_pools(
        tmp_path / "pools.json",
        {
            "openai-custom": [
                {"uuid": "a", "OPENAI_API_KEY": "sk-very-secret-1"},
                {"uuid": "b", "OPENAI_API_KEY": "sk-very-secret-2", "isHealthy": False},
                {"uuid": "c", "OPENAI_API_KEY": "sk-very-secret-3", "isDisabled": True},
            ]
        },
    )
    assert main(["--check", f"--provider-pools-file={path}"]) == 0
    out = capsys.readouterr().out
    assert "openai-custom: 3 instances (1 healthy, 1 unhealthy, 1 disabled)" in out
    assert "sk-very-secret" not in out


def test_invalid_pool_file_exits_2_naming_the_place(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "pools.json"
    path.write_text('{\n  "openai-custom": [\n    {"uuid": }\n  ]\n}\n')
    assert main(["--check", "--provider-pools-file", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err
    assert "line 3 column 14" in err
    write_pools(path, {"openai-custom": [{"uuid": "a"}]})
    assert main(["--provider-pools-file", str(path)]) == 2
    assert "openai-custom[0].OPENAI_API_KEY" in capsys.readouterr().err


def test_invalid_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.json"
    config.write_text('{"SERVER_PORT": }')
    assert main(["--config", str(config)]) == 2
    assert "config.json: invalid JSON at line 1 column 17" in capsys.readouterr().err
    assert main(["--port", "http"]) == 2


def test_missing_named_pool_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--provider-pools-file", str(tmp_path / "nope.json")]) == 2
    assert "pool file not found" in capsys.readouterr().err


async def test_fresh_install_serves_the_demo_pool(tmp_path: Path) -> None:
    """No pool file and no credentials: a real answer at once, clearly a demo."""
    process, url = await serve(cwd=tmp_path)
    try:
        async with aiohttp.ClientSession() as http:
            resp = await http.post(
                f"{url}/v1/chat/completions",
                headers={"Authorization": "Bearer 123456"},
                json={"model": "demo-gpt", "messages": [{"role": "user", "content": "hi"}]},
            )
            body = await resp.json()
            claude = await http.post(
                f"{url}/v1/messages",
                headers={"x-api-key": "123456"},
                json={
                    "model": "demo-claude",
                    "max_tokens": 20,
                    "messages": [{"role": "user", "content": "hi"}],
                },
            )
            claude_body = await claude.json()
    finally:
        process.send_signal(signal.SIGINT)
        _, err = await process.communicate()
    assert "demo upstream" in body["choices"][0]["message"]["content"]
    assert "demo upstream" in claude_body["content"][0]["text"]
    assert "DEMO MODE" in err.decode()
    assert process.returncode == 0


async def test_a_port_in_use_is_reported_before_anything_starts(tmp_path: Path) -> None:
    """Another program has the port: the server says so and exits 1, without first
    starting the demo upstream (or anything else) only to tear it down again."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = await start_process("--port", str(port), cwd=tmp_path)
        _, err = await asyncio.wait_for(process.communicate(), 30)
    log = err.decode()
    assert process.returncode == 1
    assert f"cannot serve on 127.0.0.1:{port}" in log
    assert "address already in use" in log
    assert "DEMO MODE" not in log


async def test_sigterm_flushes_counters_and_logs_no_secrets(tmp_path: Path) -> None:
    async with FakeOpenAI() as fake:
        pools = write_pools(
            tmp_path / "provider_pools.json",
            {"openai-custom": [openai_instance(fake, "a", customName="primary")]},
        )
        config = tmp_path / "config.json"
        config.write_text(
            json.dumps(
                {"REQUIRED_API_KEY": "client-secret-key", "POOL_WRITE_DEBOUNCE_MS": 60000}
            )
        )
        process, url = await serve("--log-level", "debug", cwd=tmp_path)
        try:
            async with aiohttp.ClientSession() as http:
                for _ in range(3):
                    resp = await http.post(
                        f"{url}/v1/chat/completions?key=client-secret-key",
                        json={"model": "m", "messages": [{"role": "user", "content": "x"}]},
                    )
                    assert resp.status == 200
        finally:
            process.send_signal(signal.SIGTERM)
            _, err = await process.communicate()
    log = err.decode()
    assert process.returncode == 0
    assert read_pools(pools)["openai-custom"][0]["usageCount"] == 3
    assert "POST /v1/chat/completions openai-custom primary 200" in log
    assert "client-secret-key" not in log
    assert OPENAI_KEY not in log
