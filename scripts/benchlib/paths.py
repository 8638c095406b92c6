"""The request paths the benchmark can measure, and the load-generator jobs for them.

A path is a client protocol plus the pool type that serves it. Passthrough paths use
the proxy's default routing; converted paths pick the upstream type with the
`model-provider` header. Each is compared with the same load sent straight to the
fake upstream in the upstream's own protocol.
"""

from __future__ import annotations

from dataclasses import dataclass

from .loadgen import Job
from .payloads import MODEL, WireProtocol, gemini_path, request_body, response_marker

__all__ = ["PATHS", "BenchPath", "request_job"]

ENDPOINTS: dict[WireProtocol, str] = {
    "openai": "/v1/chat/completions",
    "anthropic": "/v1/messages",
}  # a Gemini client's path names the model: payloads.gemini_path


@dataclass(frozen=True, slots=True)
class BenchPath:
    name: str
    title: str
    client: WireProtocol
    upstream: WireProtocol
    provider: str | None = None  # the model-provider header, when routing needs it


PATHS: dict[str, BenchPath] = {
    p.name: p
    for p in (
        BenchPath(
            "openai", "OpenAI client → openai-custom (passthrough)", "openai", "openai"
        ),
        BenchPath(
            "anthropic",
            "Anthropic client → claude-custom (passthrough)",
            "anthropic",
            "anthropic",
        ),
        BenchPath(
            "openai-to-claude",
            "OpenAI client → claude-custom (converted)",
            "openai",
            "anthropic",
            "claude-custom",
        ),
        BenchPath(
            "claude-to-openai",
            "Anthropic client → openai-custom (converted)",
            "anthropic",
            "openai",
            "openai-custom",
        ),
        BenchPath(
            "gemini",
            "Gemini client → gemini-custom (passthrough)",
            "gemini",
            "gemini",
            "gemini-custom",
        ),
        BenchPath(
            "openai-to-gemini",
            "OpenAI client → gemini-custom (converted)",
            "openai",
            "gemini",
            "gemini-custom",
        ),
        BenchPath(
            "claude-to-gemini",
            "Anthropic client → gemini-custom (converted)",
            "anthropic",
            "gemini",
            "gemini-custom",
        ),
    )
}


def request_job(
    kind: str,
    protocol: WireProtocol,
    port: int,
    *,
    api_key: str,
    provider: str | None = None,
    stream: bool = False,
    model: str = MODEL,
    payload: str = "small",
    connections: int = 1,
    duration: float = 0.0,
    warmup: float = 0.0,
    timeout: float = 30.0,
) -> Job:
    """A job sending `protocol`'s chat request, authenticated as its SDK would."""
    headers = {"Content-Type": "application/json"}
    if protocol == "openai":
        headers["Authorization"] = f"Bearer {api_key}"
    elif protocol == "gemini":
        headers["x-goog-api-key"] = api_key
    else:
        headers["x-api-key"] = api_key
        headers["anthropic-version"] = "2023-06-01"
    if provider is not None:
        headers["model-provider"] = provider
    return Job(
        kind=kind,
        port=port,
        path=(
            gemini_path(model, stream=stream)
            if protocol == "gemini"
            else ENDPOINTS[protocol]
        ),
        headers=headers,
        body=request_body(protocol, stream=stream, model=model, payload=payload).decode(),
        stream=stream,
        marker=response_marker(protocol, stream=stream).decode(),
        connections=connections,
        duration=duration,
        warmup=warmup,
        timeout=timeout,
    )
