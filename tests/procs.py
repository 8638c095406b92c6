"""Run the real `aiclient` command in a child process for end-to-end tests."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import Mapping
from pathlib import Path

import aiohttp


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def start_process(
    *args: str, cwd: Path, env: Mapping[str, str] | None = None
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aiclient",
        *args,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=None if env is None else {**os.environ, **env},
    )


async def wait_healthy(url: str, process: asyncio.subprocess.Process) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(300):
            if process.returncode is not None:
                _, err = await process.communicate()
                raise AssertionError(f"the server exited early: {err.decode()[-2000:]}")
            try:
                async with http.get(f"{url}/health") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError("the server did not start")


async def serve(
    *args: str, cwd: Path, env: Mapping[str, str] | None = None
) -> tuple[asyncio.subprocess.Process, str]:
    """Start `aiclient ARGS --port <free>` and wait until /health answers. A port that
    another process takes between being picked and being bound is picked again."""
    for attempt in range(3):
        port = free_port()
        process = await start_process(*args, "--port", str(port), cwd=cwd, env=env)
        url = f"http://127.0.0.1:{port}"
        try:
            await wait_healthy(url, process)
        except AssertionError as exc:
            if attempt < 2 and "address already in use" in str(exc):
                continue
            raise
        return process, url
    raise AssertionError("no free port could be bound")
