"""The session's side of one utterance's recognition (server/pipeline/session.py `Utterance`):
it marks the utterance urgent while someone waits for its words, for the recogniser's
priority lane (stt.py), and traces the waits."""

from __future__ import annotations

import contextlib

from server.pipeline.session import Utterance
from tests.support.aio import run


class RecordingRecognizer:
    """Records each call and whether the utterance was urgent when it was made."""

    def __init__(self):
        self.urgent = False
        self.calls: list[tuple[str, bool]] = []
        self.waited_s = self.ran_s = 0.0

    async def feed(self, pcm: bytes):
        self.calls.append(("feed", self.urgent))
        self.waited_s += 0.01
        self.ran_s += 0.002
        return None

    async def words(self) -> str:
        self.calls.append(("words", self.urgent))
        return "what time"

    async def finish(self) -> str:
        self.calls.append(("finish", self.urgent))
        return "what time is it"


class RecordingPool:
    def __init__(self):
        self.recognizer = RecordingRecognizer()

    @contextlib.asynccontextmanager
    async def utterance(self):
        yield self.recognizer


def test_an_utterance_is_urgent_only_while_its_words_are_awaited():
    async def scenario():
        pool = RecordingPool()
        utterance = Utterance(pool, lambda text: None, max_bytes=10**6)
        utterance.feed(b"\x01\x00" * 1600)
        await utterance.hypothesis()  # streaming: decoded as it comes
        assert await utterance.words_now() == "what time"  # a look waits for the words
        utterance.feed(b"\x01\x00" * 1600)  # the user went on
        await utterance.hypothesis()
        assert await utterance.finish() == "what time is it"
        return pool.recognizer.calls, utterance.trace

    calls, trace = run(scenario())
    assert calls == [("feed", False), ("words", True), ("feed", False), ("finish", True)]
    assert set(trace) == {f"{stage}{part}" for stage in ("words", "final")
                          for part in ("", "_queue", "_work")}  # fmt: skip
