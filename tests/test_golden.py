"""Golden wire samples: a rich request, answer and stream in each protocol, converted in
each direction, compared with the reviewed output in tests/data/golden/.

Set REGEN_GOLDEN=1 to rewrite the golden files after an intended change (and
review the diff)."""

from __future__ import annotations

import json
import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from aiclient.pipeline import Framer, StreamPipeline
from aiclient.protocols import ApiProtocol
from aiclient.protocols.codecs import CODECS

DATA = Path(__file__).parent / "data"
GOLDEN = DATA / "golden"
PAIRS = [(a, b) for a in ApiProtocol for b in ApiProtocol if a is not b]
IDS = [f"{a.value}-to-{b.value}" for a, b in PAIRS]
_CREATED = re.compile(rb'"created":\d+')


def _check(name: str, actual: str) -> None:
    path = GOLDEN / name
    if os.environ.get("REGEN_GOLDEN"):
        path.write_text(actual, encoding="utf-8")
    assert actual == path.read_text(encoding="utf-8"), f"{name} changed"


def _json(value: Any) -> str:
    return json.dumps(value, indent=1, ensure_ascii=False) + "\n"


def _load(kind: str, protocol: ApiProtocol) -> Any:
    return json.loads((DATA / kind / f"{protocol.value}.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize(("client", "upstream"), PAIRS, ids=IDS)
def test_request(client: ApiProtocol, upstream: ApiProtocol) -> None:
    """What an upstream receives for a client's request."""
    body = _load("requests", client)
    model = "gemini-2.5-flash" if client is ApiProtocol.GEMINI else None
    canonical = CODECS[client].request_to_canonical(body, model=model)
    if canonical.max_tokens is None:
        canonical = replace(canonical, max_tokens=8192)
    sent = CODECS[upstream].request_from_canonical(canonical)
    _check(f"request.{client.value}-to-{upstream.value}.json", _json(sent))


@pytest.mark.parametrize(("upstream", "client"), PAIRS, ids=IDS)
def test_answer(upstream: ApiProtocol, client: ApiProtocol) -> None:
    """What a client receives for an upstream's whole answer."""
    answer = CODECS[upstream].response_to_canonical(_load("answers", upstream))
    body = CODECS[client].response_from_canonical(replace(answer, model="client-model"))
    body.pop("created", None)
    _check(f"answer.{upstream.value}-to-{client.value}.json", _json(body))


@pytest.mark.parametrize(("upstream", "client"), PAIRS, ids=IDS)
def test_stream(upstream: ApiProtocol, client: ApiProtocol) -> None:
    """What a client receives, event by event, for an upstream's stream."""
    wire = (DATA / "streams" / f"{upstream.value}.sse").read_bytes()
    request = CODECS[client].request_to_canonical(
        _load("requests", client), model="gemini-2.5-flash"
    )
    request = replace(request, model="client-model", include_usage=True)
    pipeline = StreamPipeline(
        client,
        Framer(),
        CODECS[upstream].stream_decoder(),
        CODECS[client].stream_encoder(request),
    )
    out = b"".join(pipeline.feed(wire[i : i + 37]) for i in range(0, len(wire), 37))
    out += pipeline.close()
    out = _CREATED.sub(b'"created":0', out)
    _check(f"stream.{upstream.value}-to-{client.value}.sse", out.decode())
