"""The SSE reader copes with however the network cuts the stream."""

from __future__ import annotations

from server.pipeline.sse import SSEEvent, SSEParser

STREAM = (
    ": keep-alive\n\n"
    'data: {"type":"response.tts","content":"Héllo — wörld"}\n\n'
    "event: custom\r\nid: 7\r\ndata: line one\r\ndata: line two\r\n\r\n"
    ":another comment\r"
    "data: cr only\r\r"
    'data: {"type":"response.end"}\n\n'
).encode()

EXPECTED = [
    SSEEvent(data='{"type":"response.tts","content":"Héllo — wörld"}'),
    SSEEvent(data="line one\nline two", event="custom", id="7"),
    SSEEvent(data="cr only", id="7"),
    SSEEvent(data='{"type":"response.end"}', id="7"),
]


def parse(chunks: list[bytes]) -> list[SSEEvent]:
    parser = SSEParser()
    return [event for chunk in chunks for event in parser.feed(chunk)]


def test_whole_stream_in_one_chunk():
    assert parse([STREAM]) == EXPECTED


def test_split_at_every_byte_position():
    for cut in range(1, len(STREAM)):
        assert parse([STREAM[:cut], STREAM[cut:]]) == EXPECTED, cut


def test_one_byte_at_a_time():
    assert parse([bytes([b]) for b in STREAM]) == EXPECTED


def test_an_unfinished_event_is_not_dispatched():
    assert parse([b"data: half"]) == []
    assert parse([b"\xef\xbb\xbfdata: x\n\n"]) == [SSEEvent(data="x")]  # BOM ignored
