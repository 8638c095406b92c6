"""The system prompt file and the prompt log (AIClient-2-API's SYSTEM_PROMPT_FILE_PATH /
SYSTEM_PROMPT_MODE and PROMPT_LOG_MODE / PROMPT_LOG_BASE_NAME).

The system prompt file is read once at start-up (off the event loop); an empty or
missing file means no system prompt, as in the original. It is applied to the client's
body in the client's own protocol, before any conversion, so passthrough and converted
requests get the same result: `overwrite` replaces the request's system prompt,
`append` adds the file's text after it (on a new line, or as a new block/part).
Unlike the original, a request without a system prompt never has its first user
message copied into one, and no per-request mirror file is written.

The prompt log records each request's last message ([INPUT]) and the answer's text
([OUTPUT]) in the original's entry format. `console` logs through the
`aiclient.prompts` logger; `file` appends to `<PROMPT_LOG_BASE_NAME>-YYYYMMDD-HHMMSS.log`
(named at start-up) from a background task that batches entries, so the request path
only puts a string on a queue; the queue is flushed on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from .config import Settings
from .http_server import App
from .protocols import ApiProtocol
from .tasks import spawn

__all__ = ["Prompts", "apply_system_prompt", "last_message_text"]

logger = logging.getLogger(__name__)
prompt_logger = logging.getLogger("aiclient.prompts")

_RULE = "-" * 38


def _texts(content: Any, key: str = "text") -> list[str]:
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [
            p[key] for p in content if isinstance(p, dict) and isinstance(p.get(key), str)
        ]
    return []


def apply_system_prompt(
    protocol: ApiProtocol, body: dict[str, Any], text: str, mode: str
) -> dict[str, Any]:
    """A copy of the client's `body` with the configured system prompt applied."""
    body = dict(body)
    append = mode == "append"
    if protocol is ApiProtocol.OPENAI:
        messages = list(body.get("messages") or [])
        for i, message in enumerate(messages):
            if isinstance(message, dict) and message.get("role") in ("system", "developer"):
                joined = "\n".join(_texts(message.get("content")))
                new = f"{joined}\n{text}" if append and joined else text
                messages[i] = {**message, "content": new}
                break
        else:
            messages.insert(0, {"role": "system", "content": text})
        body["messages"] = messages
    elif protocol is ApiProtocol.CLAUDE:
        existing = body.get("system")
        if append and isinstance(existing, list) and existing:
            body["system"] = [*existing, {"type": "text", "text": text}]
        elif append and isinstance(existing, str) and existing:
            body["system"] = f"{existing}\n{text}"
        else:
            body["system"] = text
    else:
        existing = body.pop("systemInstruction", None) or body.pop(
            "system_instruction", None
        )
        parts = existing.get("parts") if isinstance(existing, dict) else None
        if append and isinstance(parts, list) and parts:
            body["systemInstruction"] = {**existing, "parts": [*parts, {"text": text}]}
        else:
            body["systemInstruction"] = {"parts": [{"text": text}]}
    return body


def last_message_text(protocol: ApiProtocol, body: dict[str, Any]) -> str:
    """The text of the request's last message (what the original logs as [INPUT])."""
    key = "contents" if protocol is ApiProtocol.GEMINI else "messages"
    items = body.get(key)
    if not isinstance(items, list) or not items or not isinstance(items[-1], dict):
        return ""
    last = items[-1]
    if protocol is ApiProtocol.GEMINI:
        return "".join(_texts(last.get("parts")))
    joiner = "" if protocol is ApiProtocol.CLAUDE else "\n"
    return joiner.join(_texts(last.get("content")))


def _read_text(path: Path) -> str:
    return path.expanduser().read_text(encoding="utf-8")


class Prompts:
    """The configured system prompt and the prompt log writer of one server."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.system_text: str | None = None
        self.logging = settings.prompt_log_mode in ("console", "file")
        self.log_path: Path | None = None
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()  # None: stop

    def log(self, kind: str, text: str) -> None:
        """Record an [INPUT] or [OUTPUT] entry (never blocks)."""
        if not self.logging or not text:
            return
        entry = f"{time.strftime('%Y-%m-%d %H:%M:%S')} [{kind}]:\n{text}\n{_RULE}\n"
        if self.settings.prompt_log_mode == "console":
            prompt_logger.info("%s", entry.rstrip("\n"))
        else:
            self._queue.put_nowait(entry)

    async def _write(self, entries: list[str]) -> None:
        assert self.log_path is not None
        path = self.log_path

        def append() -> None:
            # Prompts are private: a new log file is readable by its owner only.
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as file:
                file.write("".join(entries))

        try:
            await asyncio.to_thread(append)
        except OSError as exc:
            logger.error("cannot write the prompt log %s: %s", path, exc)

    async def _writer(self) -> None:
        """Write queued entries in batches until the None that closes the queue."""
        while True:
            entries: list[str] = []
            item = await self._queue.get()
            while item is not None:
                entries.append(item)
                if self._queue.empty():
                    break
                item = self._queue.get_nowait()
            if entries:
                await self._write(entries)
            if item is None:
                return

    async def context(self, app: App) -> AsyncIterator[None]:
        """cleanup_ctx: read the system prompt file, run the log writer, flush it."""
        if self.settings.system_prompt_file:
            path = Path(self.settings.system_prompt_file)
            try:
                text = await asyncio.to_thread(_read_text, path)
            except (OSError, UnicodeDecodeError) as exc:
                logger.warning("system prompt file %s not used: %s", path, exc)
            else:
                self.system_text = text.strip() or None
        task = None
        if self.logging and self.settings.prompt_log_mode == "file":
            stamp = time.strftime("%Y%m%d-%H%M%S")
            self.log_path = Path(f"{self.settings.prompt_log_base_name}-{stamp}.log")
            task = spawn(self._writer(), name="prompt-log")
        try:
            yield
        finally:
            if task is not None:
                # Never cancel a write half-way: close the queue and let it finish.
                self._queue.put_nowait(None)
                await task
