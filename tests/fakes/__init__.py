"""Fake upstream LLM servers (real HTTP on 127.0.0.1) for the proxy's tests."""

from .claude import FakeClaude
from .common import RecordedRequest, SSEEvent
from .gemini import FakeGemini
from .openai import FakeOpenAI
from .upstream import FakeUpstream

__all__ = [
    "FakeClaude",
    "FakeGemini",
    "FakeOpenAI",
    "FakeUpstream",
    "RecordedRequest",
    "SSEEvent",
]
