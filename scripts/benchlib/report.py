"""The benchmark's report: Markdown tables on stdout, and the same data as JSON."""

from __future__ import annotations

import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .paths import PATHS
from .results import Measurement, MemoryMeasurement

__all__ = ["Report", "markdown_table", "render"]

_NONE = "n/a"


@dataclass(slots=True)
class Report:
    setup: list[str]  # bullet lines describing the machine and the options
    measurements: list[Measurement] = field(default_factory=list)
    memory: list[MemoryMeasurement] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # path name -> reason
    notes: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    wall_seconds: float = 0.0

    def find(self, path: str, target: str, stream: bool, conns: int) -> Measurement | None:
        for m in self.measurements:
            if (m.path, m.target, m.stream, m.connections) == (path, target, stream, conns):
                return m
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "setup": self.setup,
            "python": platform.python_version(),
            "options": self.options,
            "measurements": [asdict(m) for m in self.measurements],
            "memory": [asdict(m) for m in self.memory],
            "skipped": self.skipped,
            "notes": self.notes,
            "wall_seconds": self.wall_seconds,
        }


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table; every column but the first is right-aligned (numbers)."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        padded = [
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(
        "-" * (w + 1) + ":" if i else "-" * (w + 2) for i, w in enumerate(widths)
    )
    return "\n".join([line(headers), rule + "|", *map(line, rows)])


def _num(value: float | None, digits: int = 1) -> str:
    if value is None:
        return _NONE
    return f"{value:,.{digits}f}"


def _rate(value: float) -> str:
    return f"{value:,.0f}"


def _pct(m: Measurement | None, key: str, field_name: str = "latency_ms") -> float | None:
    if m is None:
        return None
    values: dict[str, float] = getattr(m.result, field_name)
    return values.get(key)


def _errors(*measurements: Measurement | None) -> str:
    return " / ".join(
        _NONE if m is None else str(m.result.errors + m.result.unfinished)
        for m in measurements
    )


def _other(*measurements: Measurement) -> str:
    return " / ".join(f"{m.core_pct(m.other_cpu_s):.0f}" for m in measurements)


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _row_keys(
    report: Report, paths: Sequence[str], conns: Sequence[int]
) -> list[tuple[str, str, int]]:
    """(path, target, connections) of each row: the proxy's, then the bare relay's
    where it was measured."""
    targets = ["proxy"]
    if any(m.target == "bare" for m in report.measurements):
        targets.append("bare")
    return [(p, t, c) for p in paths for t in targets for c in conns]


def _label(path: str, target: str) -> str:
    return f"{path} (bare relay)" if target == "bare" else path


def _plain_rows(
    report: Report, paths: Sequence[str], conns: Sequence[int]
) -> list[list[str]]:
    rows = []
    for path, target, c in _row_keys(report, paths, conns):
        proxy = report.find(path, target, False, c)
        direct = report.find(path, "direct", False, c)
        if proxy is None or direct is None:
            continue
        rows.append(
            [
                _label(path, target),
                str(c),
                _rate(proxy.result.rate),
                _num(_pct(proxy, "p50"), 2),
                _num(_pct(proxy, "p99"), 2),
                _num(proxy.cpu_ms_per_request, 3),
                _num(proxy.core_pct(proxy.proxy_cpu_s), 0),
                _num(proxy.core_pct(proxy.load_cpu_s), 0),
                _rate(direct.result.rate),
                _num(_pct(direct, "p50"), 2),
                _num(_pct(direct, "p99"), 2),
                _errors(proxy, direct),
                _other(proxy, direct),
            ]
        )
    return rows


def _stream_rows(
    report: Report, paths: Sequence[str], conns: Sequence[int]
) -> list[list[str]]:
    rows = []
    for path, target, c in _row_keys(report, paths, conns):
        proxy = report.find(path, target, True, c)
        direct = report.find(path, "direct", True, c)
        if proxy is None or direct is None:
            continue
        ttfb50 = _pct(proxy, "p50", "ttfb_ms")
        ttfb99 = _pct(proxy, "p99", "ttfb_ms")
        rows.append(
            [
                _label(path, target),
                str(c),
                _rate(proxy.result.rate),
                _num(_pct(proxy, "p50"), 2),
                _num(ttfb50, 2),
                _num(_diff(ttfb50, _pct(direct, "p50", "ttfb_ms")), 2),
                _num(_diff(ttfb99, _pct(direct, "p99", "ttfb_ms")), 2),
                _num(proxy.cpu_ms_per_request, 3),
                _num(proxy.core_pct(proxy.proxy_cpu_s), 0),
                _rate(direct.result.rate),
                _num(_pct(direct, "p50"), 2),
                _num(_pct(direct, "p50", "ttfb_ms"), 2),
                _errors(proxy, direct),
                _other(proxy, direct),
            ]
        )
    return rows


def _mib(kib: int | None) -> str:
    return _NONE if kib is None else f"{kib / 1024:,.1f}"


def _memory_rows(report: Report) -> list[list[str]]:
    rows = []
    for m in report.memory:
        added = m.rss_peak_kib - m.rss_before_kib
        result = m.result
        rows.append(
            [
                m.path,
                f"{m.streams:,}",
                f"{result.requests:,}",
                f"{result.open_max:,}",
                _NONE if result.all_open_s is None else f"{result.all_open_s:.2f}",
                _mib(m.rss_before_kib),
                _mib(m.rss_open_kib),
                _mib(m.rss_peak_kib),
                _num(added / m.streams if m.streams else None, 1),
                _mib(m.hwm_kib),
                _mib(m.rss_after_kib),
                _num(m.proxy_cpu_s / m.seconds * 100 if m.seconds > 0 else None, 0),
            ]
        )
    return rows


def render(report: Report) -> str:
    measured = {m.path for m in report.measurements}
    paths = [p for p in PATHS if p in measured] + sorted(measured - set(PATHS))
    plain = sorted({m.connections for m in report.measurements if not m.stream})
    stream = sorted({m.connections for m in report.measurements if m.stream})
    out = ["# aiclient benchmark", "", "## Set-up", ""]
    out += [f"- {line}" for line in report.setup]
    out += ["", "Paths:", ""]
    for name in paths:
        out.append(f"- `{name}`: {PATHS[name].title if name in PATHS else name}")
    for name, reason in report.skipped.items():
        title = PATHS[name].title if name in PATHS else name
        out.append(f"- `{name}`: {title}: **skipped**, {reason}")
    plain_rows = _plain_rows(report, paths, plain)
    if plain_rows:
        out += ["", "## Non-streaming requests", ""]
        out.append(
            markdown_table(
                [
                    "path",
                    "conns",
                    "proxy req/s",
                    "p50 ms",
                    "p99 ms",
                    "CPU ms/req",
                    "proxy CPU %",
                    "load-side CPU %",
                    "direct req/s",
                    "direct p50 ms",
                    "direct p99 ms",
                    "errors proxy / direct",
                    "other CPU % proxy / direct",
                ],
                plain_rows,
            )
        )
    stream_rows = _stream_rows(report, paths, stream)
    if stream_rows:
        out += ["", "## Streaming requests", ""]
        out.append(
            markdown_table(
                [
                    "path",
                    "conns",
                    "proxy streams/s",
                    "p50 ms",
                    "TTFB p50 ms",
                    "added TTFB p50 ms",
                    "added TTFB p99 ms",
                    "CPU ms/stream",
                    "proxy CPU %",
                    "direct streams/s",
                    "direct p50 ms",
                    "direct TTFB p50 ms",
                    "errors proxy / direct",
                    "other CPU % proxy / direct",
                ],
                stream_rows,
            )
        )
    if report.memory:
        streams = max(m.streams for m in report.memory)
        out += ["", f"## Proxy memory with {streams:,} concurrent open streams", ""]
        out.append(
            markdown_table(
                [
                    "path",
                    "streams",
                    "completed",
                    "open at once",
                    "all open after s",
                    "RSS before MiB",
                    "RSS all open MiB",
                    "peak RSS MiB",
                    "KiB/stream (peak - before)",
                    "VmHWM MiB",
                    "RSS after MiB",
                    "proxy CPU %",
                ],
                _memory_rows(report),
            )
        )
    if report.notes:
        out += ["", "## Notes", ""]
        out += [f"- {note}" for note in report.notes]
    return "\n".join(out) + "\n"
