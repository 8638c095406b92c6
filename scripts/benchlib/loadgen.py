"""The load generator: C keep-alive connections on a raw asyncio Protocol (uvloop).

Run as `python -m benchlib.loadgen`; it reads one JSON Job per line on stdin and
answers each with a `RESULT {...}` line on stdout. While a job runs it also prints
`START` and `STOP` (the measured window opens and closes: the benchmark samples the
proxy's CPU time then) and, in hold mode, `OPEN` once every stream is open.

Kinds of job:

* `load`: every connection sends a request as soon as its previous answer is whole,
  for `warmup` + `duration` seconds. The rate counts the answers completed in the
  measured window; latencies only those also sent in it (so the cold first burst of
  the warm-up never shows up as a tail). A connection that breaks is replaced.
* `hold`: `connections` connections send one request each and wait for the whole
  answers (used to hold many streams open). At most `_HOLD_RAMP` requests are waiting
  for their first byte at a time, so the proxy's accept queue (aiohttp's default
  backlog is 128) never overflows into SYN retransmits.
* `probe`: one request; the result carries its status and the start of its body.

An answer counts as an error unless it is a 200 whose body contains `marker`
(for a stream: within its last bytes, where the protocol's end event is).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, cast

from .system import raise_nofile_limit, run
from .wire import ParseError, ResponseParser, build_request

__all__ = ["Job", "Result", "execute", "main", "summarize"]

_CONNECT_CONCURRENCY = 64
_HOLD_RAMP = 64
_STREAM_TAIL = 512  # a Gemini stream's last event carries its finishReason mid-way
_POLL = 0.01
_RECONNECT_DELAY = 0.05


@dataclass(frozen=True, slots=True)
class Job:
    kind: str  # "load", "hold" or "probe"
    port: int
    method: str = "POST"
    path: str = "/"
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    stream: bool = False
    marker: str = ""
    connections: int = 1
    duration: float = 0.0
    warmup: float = 0.0
    timeout: float = 30.0

    def to_json(self) -> str:
        return json.dumps(asdict(self))


@dataclass(slots=True)
class Result:
    kind: str
    connections: int
    requests: int = 0  # good answers completed in the measured window
    sampled: int = 0  # ... of which were also sent in it: the latency samples
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    elapsed: float = 0.0  # seconds the measured window lasted
    latency_ms: dict[str, float] = field(default_factory=dict)
    ttfb_ms: dict[str, float] = field(default_factory=dict)
    unfinished: int = 0  # answers still incomplete when the job gave up waiting
    connects: int = 0  # connections opened, first ones included
    open_max: int = 0  # hold: most answers in progress (first byte seen) at once
    all_open_s: float | None = None  # hold: when every stream had its first byte
    status: int = 0  # probe
    sample: str = ""  # probe: the start of the body

    @property
    def rate(self) -> float:
        return self.requests / self.elapsed if self.elapsed > 0 else 0.0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Result:
        return cls(**data)


def summarize(seconds: list[float]) -> dict[str, float]:
    """p50, p90, p99 (nearest rank), max and mean, in milliseconds."""
    if not seconds:
        return {}
    values = sorted(seconds)
    count = len(values)

    def rank(pct: float) -> float:
        return values[min(count - 1, max(0, math.ceil(pct / 100 * count) - 1))] * 1000

    return {
        "p50": rank(50),
        "p90": rank(90),
        "p99": rank(99),
        "max": values[-1] * 1000,
        "mean": sum(values) / count * 1000,
    }


def _say(word: str) -> None:
    print(word, flush=True)


class _Conn(asyncio.Protocol):
    __slots__ = ("busy", "first_at", "parser", "run", "sent_at", "started", "transport")

    def __init__(self, run: _Run) -> None:
        self.run = run
        self.parser = ResponseParser()
        self.transport: asyncio.Transport | None = None
        self.busy = False
        self.sent_at = 0.0
        self.first_at = 0.0
        self.started: asyncio.Future[None] | None = None  # hold: first byte or end

    def _wake(self) -> None:
        if self.started is not None and not self.started.done():
            self.started.set_result(None)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def send(self) -> None:
        assert self.transport is not None
        self.parser.reset()
        self.busy = True
        self.first_at = 0.0
        self.sent_at = time.perf_counter()
        self.transport.write(self.run.request)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if not self.busy:
            self.run.failed(self, "data before a request was sent")
            self.close()
            return
        parser = self.parser
        try:
            done = parser.feed(data)
        except ParseError as exc:
            self.busy = False
            self.run.failed(self, f"malformed response: {exc}")
            self._wake()
            self.close()
            return
        if not self.first_at and parser.body_started:
            self.first_at = time.perf_counter()
            self.run.first_byte()
            self._wake()
        if done:
            self.busy = False
            self._wake()
            self.run.completed(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.busy:
            self.busy = False
            self.run.failed(self, "connection closed mid-response")
        self._wake()
        self.run.lost(self)


class _Run:
    """One job's connections and what they recorded."""

    def __init__(self, job: Job, tasks: asyncio.TaskGroup) -> None:
        self.job = job
        self.tasks = tasks
        self.loop = asyncio.get_running_loop()
        host = f"127.0.0.1:{job.port}"
        self.request = build_request(
            job.method, job.path, host, job.headers, job.body.encode()
        )
        self.marker = job.marker.encode()
        self.connect_slots = asyncio.Semaphore(_CONNECT_CONCURRENCY)
        self.conns: set[_Conn] = set()
        self.reconnecting = 0
        self.measuring = False
        self.stopping = False
        self.began = self.ended = 0.0
        self.latencies: list[float] = []
        self.ttfbs: list[float] = []
        self.errors: Counter[str] = Counter()
        self.finished = 0
        self.good = 0
        self.open_now = self.open_max = 0
        self.all_open_s: float | None = None
        self.last_status = 0
        self.last_body = b""
        self.unfinished = 0
        self.connects = 0
        self.closed = False
        self.all_finished = asyncio.Event()

    # -- events from connections ---------------------------------------------------

    def first_byte(self) -> None:
        self.open_now += 1
        if self.open_now > self.open_max:
            self.open_max = self.open_now
            if self.open_max == self.job.connections and self.job.kind == "hold":
                self.all_open_s = time.perf_counter() - self.began
                _say("OPEN")

    def _valid(self, body: bytearray) -> bool:
        if not self.marker:
            return True
        if self.job.stream:
            return self.marker in body[-_STREAM_TAIL:]
        return self.marker in body

    def _finish_one(self) -> None:
        self.finished += 1
        if self.finished >= self.job.connections and self.stopping:
            self.all_finished.set()

    def completed(self, conn: _Conn) -> None:
        now = time.perf_counter()
        parser = conn.parser
        self._finish_one()
        if conn.first_at:
            self.open_now -= 1
        self.last_status = parser.status
        if self.job.kind == "probe":
            self.last_body = bytes(parser.body[:300])
        if self.measuring:
            if parser.status != 200:
                self.errors[f"HTTP {parser.status}"] += 1
            elif not self._valid(parser.body):
                self.errors["200 without the protocol's end marker"] += 1
            else:
                self.good += 1
                if conn.sent_at >= self.began:
                    self.latencies.append(now - conn.sent_at)
                    if self.job.stream and conn.first_at:
                        self.ttfbs.append(conn.first_at - conn.sent_at)
        if not parser.keep_alive:
            conn.close()  # lost() replaces it
        elif not self.stopping:
            conn.send()

    def failed(self, conn: _Conn, kind: str) -> None:
        self._finish_one()
        if conn.first_at:
            self.open_now -= 1
        if self.measuring:
            self.errors[kind] += 1

    def lost(self, conn: _Conn) -> None:
        self.conns.discard(conn)
        if not self.stopping:
            self.reconnecting += 1
            self.tasks.create_task(self._reconnect())

    # -- connecting ----------------------------------------------------------------

    async def connect(self) -> _Conn | None:
        """A new connection, or None when the run closed while it was being made."""
        async with self.connect_slots:
            _, conn = await self.loop.create_connection(
                lambda: _Conn(self), "127.0.0.1", self.job.port
            )
        if self.closed:
            conn.close()
            return None
        self.conns.add(conn)
        self.connects += 1
        return conn

    async def _reconnect(self) -> None:
        try:
            while not self.stopping:
                try:
                    conn = await self.connect()
                    if conn is not None and not self.stopping:
                        conn.send()
                    return
                except OSError as exc:
                    if self.measuring:
                        self.errors[f"connect failed: {exc.strerror or exc}"] += 1
                    await asyncio.sleep(_RECONNECT_DELAY)
        finally:
            self.reconnecting -= 1

    async def _hold_one(self, ramp: asyncio.Semaphore) -> None:
        async with ramp:
            try:
                conn = await self.connect()
            except OSError as exc:
                self._finish_one()
                self.errors[f"connect failed: {exc.strerror or exc}"] += 1
                return
            if conn is None:
                return
            conn.started = self.loop.create_future()
            conn.send()
            await conn.started

    # -- phases --------------------------------------------------------------------

    def _begin(self) -> None:
        self.began = time.perf_counter()
        self.measuring = True
        _say("START")

    def _end(self, ended: asyncio.Future[None]) -> None:
        self.ended = time.perf_counter()
        self.measuring = False
        self.stopping = True
        _say("STOP")
        ended.set_result(None)

    async def _drain(self, deadline: float) -> int:
        """Wait for answers in progress; returns how many never completed."""
        while self.loop.time() < deadline:
            busy = sum(1 for c in self.conns if c.busy)
            if not busy and not self.reconnecting:
                return 0
            await asyncio.sleep(_POLL)
        return sum(1 for c in self.conns if c.busy)

    async def load(self) -> None:
        job = self.job
        attempts = [self.connect() for _ in range(job.connections)]
        conns = await asyncio.gather(*attempts, return_exceptions=True)
        for conn in conns:
            if isinstance(conn, BaseException):
                raise conn
        for conn in conns:
            if isinstance(conn, _Conn):
                conn.send()
        ended: asyncio.Future[None] = self.loop.create_future()
        self.loop.call_later(job.warmup, self._begin)
        self.loop.call_later(job.warmup + job.duration, self._end, ended)
        await ended
        self.unfinished = await self._drain(self.loop.time() + job.timeout)

    async def hold(self) -> None:
        job = self.job
        self.stopping = True  # one request per connection
        self._begin()
        deadline = self.loop.time() + job.timeout
        ramp = asyncio.Semaphore(_HOLD_RAMP)
        async with asyncio.TaskGroup() as group:
            for _ in range(job.connections):
                group.create_task(self._hold_one(ramp))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.all_finished.wait(), deadline - self.loop.time())
        self.ended = time.perf_counter()
        self.measuring = False
        _say("STOP")
        self.unfinished = job.connections - self.finished

    def result(self) -> Result:
        return Result(
            kind=self.job.kind,
            connections=self.job.connections,
            requests=self.good,
            sampled=len(self.latencies),
            errors=sum(self.errors.values()),
            error_kinds=dict(self.errors),
            elapsed=self.ended - self.began,
            latency_ms=summarize(self.latencies),
            ttfb_ms=summarize(self.ttfbs),
            unfinished=self.unfinished,
            connects=self.connects,
            open_max=self.open_max,
            all_open_s=self.all_open_s,
            status=self.last_status,
            sample=self.last_body.decode("utf-8", "replace"),
        )

    def close(self) -> None:
        self.stopping = self.closed = True
        for conn in list(self.conns):
            conn.close()


async def execute(job: Job) -> Result:
    async with asyncio.TaskGroup() as tasks:
        run = _Run(job, tasks)
        try:
            if job.kind == "load":
                await run.load()
            else:
                await run.hold()
        except OSError as exc:
            run.errors[f"connect failed: {exc.strerror or exc}"] += 1
        finally:
            run.close()
    return run.result()


def main() -> None:
    raise_nofile_limit()
    while line := sys.stdin.readline():
        if not line.strip():
            continue
        job = Job(**json.loads(line))
        try:
            result = run(execute(job))
        except Exception as exc:
            result = Result(
                job.kind, job.connections, errors=1, error_kinds={f"loadgen: {exc!r}": 1}
            )
        print("RESULT " + json.dumps(asdict(result)), flush=True)


if __name__ == "__main__":
    main()
