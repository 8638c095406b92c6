"""What one benchmark row measured: the load generator's Result plus /proc samples."""

from __future__ import annotations

from dataclasses import dataclass

from .loadgen import Result

__all__ = ["Measurement", "MemoryMeasurement", "Sample"]


@dataclass(frozen=True, slots=True)
class Sample:
    at: float
    proxy_cpu: float  # CPU seconds used so far by the proxy's processes
    load_cpu: float  # ... by the fake upstream, the load generator and this process
    busy: float  # non-idle time of the cores the benchmark uses, whoever used them
    rss_kib: int
    hwm_kib: int


@dataclass(slots=True)
class Measurement:
    path: str
    target: str  # "proxy" or "direct"
    stream: bool
    connections: int
    result: Result
    proxy_cpu_s: float
    load_cpu_s: float
    other_cpu_s: float  # other processes on the benchmark's cores (noise)

    @property
    def cpu_ms_per_request(self) -> float | None:
        if self.target == "direct" or not self.result.requests:
            return None
        return self.proxy_cpu_s / self.result.requests * 1000

    def core_pct(self, cpu_s: float) -> float:
        elapsed = self.result.elapsed
        return cpu_s / elapsed * 100 if elapsed > 0 else 0.0


@dataclass(slots=True)
class MemoryMeasurement:
    path: str
    streams: int
    result: Result
    rss_before_kib: int
    rss_open_kib: int | None  # when every stream had its first byte
    rss_peak_kib: int
    rss_after_kib: int
    hwm_kib: int
    samples: int
    proxy_cpu_s: float  # CPU the proxy used while the streams were open
    seconds: float
