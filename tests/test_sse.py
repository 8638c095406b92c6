"""The incremental SSE and JSON-array decoders: any split of the bytes parses the same."""

from __future__ import annotations

import json

from hypothesis import example, given, settings
from hypothesis import strategies as st

from aiclient.protocols import ApiProtocol
from aiclient.relay import StreamWatch
from aiclient.sse import JSONArrayDecoder, SSEDecoder, SSEEvent, encode_sse

_text = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\r\n"), max_size=30
)
events = st.lists(
    st.builds(
        SSEEvent,
        st.none() | st.sampled_from(["message_start", "content_block_delta", "error"]),
        st.lists(_text, min_size=1, max_size=3).map("\n".join),
    ),
    max_size=8,
)


def _wire(items: list[SSEEvent], newline: str, comments: bool) -> bytes:
    out = []
    for item in items:
        if comments:
            out.append(": keep-alive" + newline)
        if item.event is not None:
            out.append(f"event: {item.event}{newline}")
        for i, line in enumerate(item.data.split("\n")):
            # "data:x" and "data: x" mean the same unless x itself starts with a space
            space = " " if i % 2 == 0 or line.startswith(" ") else ""
            out.append(f"data:{space}{line}{newline}")
        out.append("id: 7" + newline + newline)
    return "".join(out).encode()


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, start = [], 0
    for point in points:
        pieces.append(data[start:point])
        start = point
    pieces.append(data[start:])
    return pieces


def _decode(pieces: list[bytes]) -> list[SSEEvent]:
    decoder = SSEDecoder()
    out = []
    for piece in pieces:
        out += decoder.feed(piece)
    return out + decoder.close()


@settings(max_examples=150)
@given(
    events,
    st.sampled_from(["\n", "\r\n", "\r"]),
    st.booleans(),
    st.lists(st.integers(min_value=0), max_size=12),
)
@example([SSEEvent(None, "a")], "\r\n", False, [3, 4])  # `\r` and `\n` in two chunks
def test_any_split_parses_the_same(
    items: list[SSEEvent], newline: str, comments: bool, cuts: list[int]
) -> None:
    """Events survive any chunking, any line ending, comments and id lines."""
    data = _wire(items, newline, comments)
    expected = list(items)
    assert _decode(_split(data, cuts)) == expected
    assert _decode([data]) == expected


@settings(max_examples=200)
@given(
    events,
    st.lists(st.integers(min_value=1, max_value=3), max_size=8),
    st.sampled_from(["\n", "\r\n"]),
)
def test_whole_events_per_chunk_parse_the_same(
    items: list[SSEEvent], group: list[int], newline: str
) -> None:
    """Upstreams usually send whole events, one or a few per chunk (Google with CRLF
    line ends): those shortcuts read them exactly as the general path does (named or
    not, one data line or several)."""
    wire = [encode_sse(item).replace(b"\n", newline.encode()) for item in items]
    pieces, i = [], 0
    for size in group or [1]:
        pieces.append(b"".join(wire[i : i + size]))
        i += size
    pieces.append(b"".join(wire[i:]))
    assert _decode(pieces) == items


def test_missing_final_blank_line_and_encode_round_trip() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"event: ping\ndata: {}") == []
    assert decoder.close() == [SSEEvent("ping", "{}")]
    event = SSEEvent("x", "line one\nline two")
    assert _decode([encode_sse(event)]) == [event]
    assert encode_sse(SSEEvent(None, "[DONE]")) == b"data: [DONE]\n\n"


@settings(max_examples=100)
@given(
    st.lists(
        st.dictionaries(
            st.text(max_size=5), st.text(max_size=8) | st.integers(), max_size=3
        ),
        max_size=5,
    ),
    st.lists(st.integers(min_value=0), max_size=10),
)
def test_json_array_stream_any_split(
    objects: list[dict[str, object]], cuts: list[int]
) -> None:
    """Gemini's stream without alt=sse: one element per object, braces in strings too."""
    data = ("[" + ",\r\n".join(json.dumps(o) for o in objects) + "]").encode()
    decoder = JSONArrayDecoder()
    out = []
    for piece in _split(data, cuts):
        out += decoder.feed(piece)
    out += decoder.close()
    assert [json.loads(e.data) for e in out] == objects


_ENDINGS = {
    ApiProtocol.OPENAI: [b'data: {"x":1}\n\n', b"data: [DONE]\n\n"],
    ApiProtocol.CLAUDE: [
        b"event: ping\ndata: {}\n\n",
        b"event: message_stop\ndata: {}\n\n",
    ],
    ApiProtocol.GEMINI: [b'data: {"a":1}\n\n', b'data: {"finishReason":"STOP"}\n\n'],
}
_ERRORS = {
    ApiProtocol.OPENAI: b'data: {"error":{"message":"x"}}\n\n',
    ApiProtocol.CLAUDE: b'event: error\ndata: {"type":"error"}\n\n',
    ApiProtocol.GEMINI: b'data: {"error":{"code":500}}\n\n',
}


@settings(max_examples=300)
@given(
    st.sampled_from(list(ApiProtocol)),
    st.integers(min_value=0, max_value=60),
    st.booleans(),
    st.booleans(),
    st.lists(st.integers(min_value=0), max_size=12),
)
def test_stream_watch_sees_the_end_and_errors_across_any_split(
    protocol: ApiProtocol, padding: int, ended: bool, errored: bool, cuts: list[int]
) -> None:
    """The passthrough relay's check for a complete stream and an in-band error must
    not depend on where TCP cut the bytes (a miss would report a good stream as cut)."""
    body, last = _ENDINGS[protocol]
    stream = b"data: " + b"x" * padding + b"\n\n" + body
    if errored:
        stream += _ERRORS[protocol]
    if ended:
        stream += last
    watch = StreamWatch(protocol)
    for chunk in _split(stream, cuts):
        watch.feed(chunk)
    assert (watch.finished, watch.upstream_error) == (ended, errored)
