"""The SSE reader copes with however the network cuts the stream."""

from __future__ import annotations

from server.pipeline.sse import SSEEvent, SSEParser, iter_sse
from tests.support.aio import run

STREAM = (
    ": keep-alive\n\n"
    'data: {"type":"response.tts","content":"Héllo — wörld 👋"}\n\n'
    "event: custom\r\nid: 7\r\ndata: line one\r\ndata: line two\r\n\r\n"
    ":another comment\r"
    "data: cr only\r\r"
    'data:{"type":"response.data"}\n'
    'data: {"type":"response.end"}\n\n'
).encode()

EXPECTED = [
    SSEEvent(data='{"type":"response.tts","content":"Héllo — wörld 👋"}'),
    SSEEvent(event="custom", data="line one\nline two", id="7"),
    SSEEvent(data="cr only", id="7"),
    SSEEvent(data='{"type":"response.data"}\n{"type":"response.end"}', id="7"),
]


def parse(chunks: list[bytes]) -> list[SSEEvent]:
    parser = SSEParser()
    return [event for chunk in chunks for event in parser.feed(chunk)]


def test_whole_stream_in_one_chunk():
    assert parse([STREAM]) == EXPECTED


def test_split_at_every_byte_position():
    for cut in range(1, len(STREAM)):
        assert parse([STREAM[:cut], STREAM[cut:]]) == EXPECTED, cut


def test_split_at_every_pair_of_positions_in_the_utf8_part():
    start = STREAM.index("Héllo".encode())
    end = STREAM.index(b"\n\nevent")
    for first in range(start, end):
        for second in range(first + 1, end + 2):
            chunks = [STREAM[:first], STREAM[first:second], STREAM[second:]]
            assert parse(chunks) == EXPECTED, (first, second)


def test_one_byte_at_a_time():
    assert parse([bytes([b]) for b in STREAM]) == EXPECTED


def test_a_cr_at_a_chunk_end_and_its_lf_in_the_next_make_one_line_end():
    assert parse([b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]) == [SSEEvent(data="a\nb")]
    # ...but a CR followed by CR is two line ends: the event is complete.
    assert parse([b"data: a\r", b"\r"]) == [SSEEvent(data="a")]


def test_several_events_per_chunk_and_only_comments():
    chunk = b"data: 1\n\ndata: 2\n\n: ping\n\n:\n\ndata: 3\n\n"
    assert [e.data for e in parse([chunk])] == ["1", "2", "3"]
    assert parse([b": keep-alive\n\n" * 5]) == []


def test_field_rules():
    events = parse(
        [
            b"data\n\n"  # no colon: the field name is the line, the value empty
            b"data:  two spaces\n\n"  # only the first space is dropped
            b"event: only\n\n"  # no data: nothing dispatched, the event type resets
            b"data: x\n\n"
            b"id: a\0b\ndata: y\n\n"  # an id with NUL is ignored
            b"retry: 10\nunknown: z\ndata: z\n\n"
        ]
    )
    assert events == [
        SSEEvent(data=""),
        SSEEvent(data=" two spaces"),
        SSEEvent(data="x"),
        SSEEvent(data="y"),
        SSEEvent(data="z"),
    ]


def test_an_unfinished_event_is_not_dispatched_and_a_bom_is_ignored():
    assert parse([b"data: half"]) == []
    assert parse([b"data: half\n"]) == []
    assert parse([b"\xef\xbb", b"\xbfdata: x\n\n"]) == [SSEEvent(data="x")]
    # Invalid UTF-8 becomes U+FFFD, never an exception: here it spoils the field name.
    assert parse([b"\xff\xfedata: x\n\n"]) == []
    assert parse([b"data: \xff\n\n"]) == [SSEEvent(data="\ufffd")]


def test_iter_sse_yields_each_event_as_its_last_byte_arrives():
    seen: list[str] = []

    async def chunks():
        yield b"data: one\n"
        yield b"\ndata: tw"
        assert seen == ["one"], "the first event must come out before more bytes are read"
        yield b"o\n\n"

    async def collect():
        async for event in iter_sse(chunks()):
            seen.append(event.data)

    run(collect())
    assert seen == ["one", "two"]
