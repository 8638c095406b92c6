"""Shared fixtures: environment hygiene, blocking-call checks, fakes, a proxy factory."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import openai
import pytest
from blockbuster import BlockBuster, blockbuster_ctx

from aiclient import log as aiclient_log
from aiclient.bootstrap import open_pools
from aiclient.config import Settings
from aiclient.http_server import Server
from aiclient.runtime import RUNTIME, Runtime
from aiclient.server import build_app
from tests.fakes import FakeClaude, FakeGemini, FakeOpenAI
from tests.fakes.oauth import FakeOAuth

API_KEY = "test-client-key"
OPENAI_KEY = "sk-test"
CLAUDE_KEY = "sk-ant-test"
GEMINI_KEY = "gm-test"

_DIRTY_ENV = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "OPENAI_BASE_URL",
    "ANTHROPIC_BASE_URL",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
)


# -- every log line of the whole run is checked for secrets -----------------------

LEAKS: list[str] = []  # log lines that contained a secret (with the secret masked)
LINES_CHECKED = [0]


def leaked_secrets(lines: list[str], secrets: set[str]) -> list[str]:
    """The secrets that appear in any of `lines`."""
    return sorted(s for s in secrets if any(s in line for line in lines))


class _SecretCheck(logging.Handler):
    """Checks each formatted record as it is emitted; keeps only offending lines."""

    def emit(self, record: logging.LogRecord) -> None:
        line = self.format(record)
        LINES_CHECKED[0] += 1
        secrets = {API_KEY, OPENAI_KEY, CLAUDE_KEY} | aiclient_log.secrets()
        for secret in leaked_secrets([line], set(secrets)):
            LEAKS.append(line.replace(secret, f"<{len(secret)}-char secret>"))


def pytest_configure(config: pytest.Config) -> None:
    check = _SecretCheck(logging.DEBUG)
    check.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    for name in ("aiclient", "aiohttp"):
        logging.getLogger(name).addHandler(check)
    logging.getLogger("aiclient").setLevel(logging.DEBUG)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if any configured secret reached any log line of any test."""
    if LEAKS:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                f"SECRETS IN LOGS ({len(LEAKS)} lines), e.g.: {LEAKS[0]}", red=True
            )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """A test that runs the CLI in-process (which sets up logging) leaves no trace."""
    root, ours = logging.getLogger(), logging.getLogger("aiclient")
    handlers, root_level, our_level = list(root.handlers), root.level, ours.level
    switches = (logging._srcfile, logging.logThreads, logging.logMultiprocessing)
    yield
    root.handlers[:] = handlers
    root.setLevel(root_level)
    ours.setLevel(our_level)
    logging._srcfile, logging.logThreads, logging.logMultiprocessing = switches


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests never depend on the developer's proxies, keys, AICLIENT_* settings or the
    config.json / provider_pools.json of the folder they were started in."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.upper() in _DIRTY_ENV or name.upper().startswith("AICLIENT_"):
            monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def blockbuster() -> Iterator[BlockBuster]:
    """Any blocking call (file I/O, time.sleep) made by aiclient inside the loop fails."""
    with blockbuster_ctx("aiclient") as bb:
        yield bb


@pytest.fixture
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
async def fake_openai_2() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
async def fake_claude() -> AsyncIterator[FakeClaude]:
    async with FakeClaude() as fake:
        yield fake


@pytest.fixture
async def oauth() -> AsyncIterator[FakeOAuth]:
    """Google's, Qwen's and Kiro's token endpoints on one fake."""
    async with FakeOAuth() as fake:
        yield fake


@pytest.fixture
async def fake_gemini() -> AsyncIterator[FakeGemini]:
    async with FakeGemini() as fake:
        yield fake


def openai_instance(fake: FakeOpenAI, uuid: str, **extra: Any) -> dict[str, Any]:
    return {
        "OPENAI_API_KEY": OPENAI_KEY,
        "OPENAI_BASE_URL": f"{fake.base_url}/v1",
        "uuid": uuid,
        "checkModelName": "gpt-4o-mini",
        **extra,
    }


def claude_instance(fake: FakeClaude, uuid: str, **extra: Any) -> dict[str, Any]:
    return {
        "CLAUDE_API_KEY": CLAUDE_KEY,
        "CLAUDE_BASE_URL": f"{fake.base_url}/v1",
        "uuid": uuid,
        **extra,
    }


def gemini_instance(fake: FakeGemini, uuid: str, **extra: Any) -> dict[str, Any]:
    return {
        "GEMINI_API_KEY": GEMINI_KEY,
        "GEMINI_BASE_URL": f"{fake.base_url}/v1beta",
        "uuid": uuid,
        **extra,
    }


def write_pools(path: Path, data: Any, *, indent: int | None = 2) -> Path:
    path.write_text(json.dumps(data, indent=indent) + "\n", encoding="utf-8")
    return path


def read_pools(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def make_settings(**overrides: Any) -> Settings:
    base = Settings(
        required_api_key=API_KEY,
        request_base_delay_ms=1,
        pool_write_debounce_ms=20,
        connect_timeout_ms=2000,
        read_timeout_ms=5000,
        log_level="debug",
    )
    return replace(base, **overrides)


@dataclass
class Proxy:
    server: Server
    pools_path: Path | None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    @property
    def runtime(self) -> Runtime:
        return self.server.app[RUNTIME]

    async def flush(self) -> None:
        writer = self.runtime.writer
        assert writer is not None
        await writer.sync()


StartProxy = Callable[..., Awaitable[Proxy]]

CHAT_REQUEST = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}


async def send_chats(proxy: Proxy, count: int = 1, concurrency: int = 20) -> None:
    """`count` chat completions through the proxy with the openai SDK, `concurrency` at
    a time; any failure raises."""
    async with openai.AsyncOpenAI(
        base_url=f"{proxy.url}/v1", api_key=API_KEY, max_retries=0
    ) as client:
        gate = asyncio.Semaphore(concurrency)

        async def one() -> None:
            async with gate:
                await client.chat.completions.create(**CHAT_REQUEST)  # type: ignore[call-overload]

        await asyncio.gather(*(one() for _ in range(count)))


@pytest.fixture
async def start_proxy(tmp_path: Path) -> AsyncIterator[StartProxy]:
    """Start the proxy on 127.0.0.1 with a pool file written from `pools`."""
    servers: list[Server] = []

    async def start(pools: dict[str, Any] | None = None, **overrides: Any) -> Proxy:
        path = None
        if pools is not None:
            folder = tmp_path / "pools"  # not the working directory
            folder.mkdir(exist_ok=True)
            path = write_pools(folder / "provider_pools.json", pools)
            overrides.setdefault("pools_file", str(path))
        settings = make_settings(**overrides)
        setup = await asyncio.to_thread(open_pools, settings)
        server = Server(build_app(settings, setup))
        await server.start("127.0.0.1", 0)
        servers.append(server)
        return Proxy(server, path)

    yield start
    for server in servers:
        await server.close()
