"""An incremental Server-Sent Events reader (WHATWG HTML §9.2 rules), fed bytes as they arrive.

Events may be split across network chunks at any byte — inside a UTF-8 character or between a
`\\r` and its `\\n` — and one chunk may hold several events; comment lines (`:`) are keep-alives.
An event still unfinished when the stream ends is dropped, as the spec says: a reader must not
act on half an answer.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

_LINE_END = re.compile(r"\r\n|\r|\n")


@dataclass
class SSEEvent:
    event: str = "message"
    data: str = ""
    id: str | None = None  # the last event ID seen so far; it carries over, as in browsers


class SSEParser:
    """Feed it bytes, get back the events those bytes completed."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._tail = ""  # an unterminated line; never holds "\r" or "\n"
        self._skip_lf = False  # the last chunk ended in "\r": a leading "\n" belongs to it
        self._at_start = True
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        text = self._decoder.decode(chunk)
        if not text:
            return []
        if self._at_start:
            text = text.removeprefix("\ufeff")  # one byte-order mark may open the stream
            self._at_start = False
        if self._skip_lf:
            self._skip_lf = False
            text = text.removeprefix("\n")
        buffer = self._tail + text
        events: list[SSEEvent] = []
        start = 0
        for end in _LINE_END.finditer(buffer, len(self._tail)):
            event = self._line_done(buffer[start : end.start()])
            start = end.end()
            if event is not None:
                events.append(event)
        if buffer.endswith("\r"):
            self._skip_lf = True
        self._tail = buffer[start:]
        return events

    def _line_done(self, line: str) -> SSEEvent | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        # `retry` and unknown fields are ignored: this reader never reconnects by itself.
        return None

    def _dispatch(self) -> SSEEvent | None:
        if not self._data:
            self._event = ""
            return None
        event = SSEEvent(event=self._event or "message", data="\n".join(self._data), id=self._id)
        self._data, self._event = [], ""
        return event


async def iter_sse(chunks: AsyncIterator[bytes]) -> AsyncIterator[SSEEvent]:
    """The events of a byte stream, each yielded as soon as its last byte arrives."""
    parser = SSEParser()
    async for chunk in chunks:
        for event in parser.feed(chunk):
            yield event
