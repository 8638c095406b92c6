"""Logging set-up, with redaction of every configured secret as a last line of defence.

The code never logs credentials on purpose (instances are named by uuid or customName,
URLs without their query); the formatter also scrubs every registered secret from every
line and traceback it renders.

The server logs a line per request, so the handler is built for that: lines are
formatted with a timestamp cached per second and written in batches by a flusher
thread (at most 0.1 s late; at once for warnings and errors), so a slow stderr (a pipe
to a log collector) never stalls the event loop and a line costs no system call.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from collections.abc import Iterable
from typing import TextIO

__all__ = [
    "BatchingHandler",
    "RedactingFormatter",
    "redact",
    "redact_bytes",
    "register_secrets",
    "secrets",
    "setup_logging",
]

_SECRETS: set[str] = set()
_MIN_SECRET_LENGTH = 4
_pattern: re.Pattern[str] | None = None


def register_secrets(values: Iterable[object]) -> None:
    """Add values that must never appear in a log line."""
    global _pattern
    added = False
    for value in values:
        if (
            isinstance(value, str)
            and len(value) >= _MIN_SECRET_LENGTH
            and value not in _SECRETS
        ):
            _SECRETS.add(value)
            added = True
    if added:  # one alternation, longest first: one scan per line however many keys
        ordered = sorted(_SECRETS, key=len, reverse=True)
        _pattern = re.compile("|".join(map(re.escape, ordered)))


def redact(text: str) -> str:
    pattern = _pattern
    return text if pattern is None else pattern.sub("***", text)


def redact_bytes(data: bytes) -> bytes:
    """`redact` for a body about to leave the server (an upstream's error, say)."""
    for secret in _SECRETS:
        raw = secret.encode()
        if raw in data:
            data = data.replace(raw, b"***")
    return data


def secrets() -> frozenset[str]:
    return frozenset(_SECRETS)


class RedactingFormatter(logging.Formatter):
    """`time level [pid] logger: message`, redacted; the time text is cached per second."""

    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._stamp = ""

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        line = (
            f"{self._stamp},{int(record.msecs):03d} {record.levelname} "
            f"[{record.process}] {record.name}: {record.getMessage()}"
        )
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return redact(line)


class BatchingHandler(logging.Handler):
    """Formats on the caller's thread, writes from a flusher thread in batches."""

    def __init__(self, stream: TextIO, interval: float = 0.1) -> None:
        super().__init__()
        self.stream = stream
        self._lines: list[str] = []
        self._wake = threading.Event()
        self._interval = interval
        self._thread = threading.Thread(target=self._run, name="log-flusher", daemon=True)
        self._thread.start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        with self.lock:  # type: ignore[union-attr]
            self._lines.append(line)
        if record.levelno >= logging.WARNING:
            self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait(self._interval)
            self._wake.clear()
            self.flush()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            lines, self._lines = self._lines, []
        if lines:
            try:
                self.stream.write("\n".join(lines) + "\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass  # stderr is gone: nothing sensible left to do with a log line


def setup_logging(level: str) -> None:
    # Our lines carry no caller, thread or multiprocessing name: skip computing them
    # (the logging HOWTO's "optimization" switches), a third of a record's cost.
    logging._srcfile = None
    logging.logThreads = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    ours = [h for h in root.handlers if isinstance(h, BatchingHandler)]
    if ours:
        handler = ours[0]
    else:
        handler = BatchingHandler(sys.stderr)
        handler.setFormatter(RedactingFormatter())
    for old in root.handlers:
        old.flush()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("aiclient").setLevel(level.upper())
