"""The session's side of one utterance's recognition (server/pipeline/session.py `Utterance`):
it marks the utterance urgent while someone waits for its words, for the recogniser's
priority lane (stt.py), and traces the waits."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from server.pipeline.session import Utterance
from tests.support.aio import run


class RecordingRecognizer:
    """Records each call and whether the utterance was urgent when it was made."""

    def __init__(self):
        self.urgent = False
        self.calls: list[tuple[str, bool]] = []
        self.waited_s = self.ran_s = 0.0
        self.decoded_bytes = 0

    async def feed(self, pcm: bytes, more=None, on_interim=None):
        self.calls.append(("feed", self.urgent))
        self.decoded_bytes += len(pcm)
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
        # the final decodes everything fed, not the look's words (those are final_from_look's)
        utterance = Utterance(pool, lambda text: None, max_bytes=10**6, final_from_look=False)
        utterance.feed(b"\x01\x00" * 1600)
        await utterance.hypothesis()  # streaming: decoded as it comes
        assert await utterance.words_now() == "what time"  # a look waits for the words
        utterance.feed(b"\x01\x00" * 1600)  # the user went on
        await utterance.hypothesis()
        assert await utterance.finish() == "what time is it"
        return pool.recognizer.calls, utterance.trace

    calls, trace = run(scenario())
    assert calls == [("feed", False), ("words", True), ("feed", False), ("finish", True)]
    stages = {f"{stage}{part}" for stage in ("words", "final")
              for part in ("", "_queue", "_work", "_behind")}  # fmt: skip
    assert set(trace) == stages | {"stt_claim"}


class SlowRecognizer(RecordingRecognizer):
    """Decodes each feed only when the test lets it (`gate`), remembering what it fed."""

    def __init__(self):
        super().__init__()
        self.gate = asyncio.Event()
        self.feeding = asyncio.Event()  # a feed is in the recogniser
        self.decoded = b""

    async def feed(self, pcm: bytes, more=None, on_interim=None):
        self.calls.append(("feed", self.urgent))
        self.feeding.set()
        await self.gate.wait()
        self.decoded += pcm
        self.decoded_bytes += len(pcm)

    async def words(self) -> str:
        await super().words()
        return f"{len(self.decoded)} bytes"


@pytest.mark.parametrize("at_ask", [True, False])
def test_the_words_of_a_look_cover_the_audio_fed_until_the_ask_not_what_came_after(at_ask):
    """Under load the recogniser decodes about as fast as the audio comes: the words asked for
    at a look are answered once the audio fed before the ask is decoded, ahead of the silence
    fed since. Before (`words_at_ask` False) they waited until nothing was left to decode:
    they chased the stream."""

    async def scenario():
        pool = RecordingPool()
        pool.recognizer = recognizer = SlowRecognizer()
        utterance = Utterance(pool, lambda text: None, max_bytes=10**6, words_at_ask=at_ask)
        utterance.feed(b"\x01\x00" * 1600)  # the voice, being decoded (slowly)
        await recognizer.feeding.wait()
        utterance.feed(b"\x02\x00" * 1600)  # more of it, queued
        look = asyncio.ensure_future(utterance.words_now())
        await asyncio.sleep(0)  # one step of the look's task: it asks
        utterance.feed(b"\x00\x00" * 1600)  # the silence after the look, arriving meanwhile
        recognizer.gate.set()
        words = await look
        await utterance.hypothesis()
        return words, recognizer.calls

    words, calls = run(scenario())
    if not at_ask:
        assert words == f"{3 * 3200} bytes"  # the silence that came after too
        assert calls == [("feed", False), ("feed", True), ("words", True)]
        return
    assert words == f"{2 * 3200} bytes"  # the voice, not the silence that came after
    assert calls == [("feed", False), ("feed", True), ("words", True), ("feed", False)]


@pytest.mark.parametrize(
    ("from_look", "resumed", "final"),
    [
        (True, False, "what time"),
        (True, True, "what time is it"),
        (False, False, "what time is it"),
    ],
)
def test_a_turn_that_ends_at_a_look_takes_its_words_as_the_final_transcript(
    from_look, resumed, final
):
    """STT_FINAL_FROM_LOOK: what was fed after a look's ask is the pause's silence, and under
    load the final transcript waited for the recogniser to decode it. A turn ending at that
    pause takes the look's words; once the voice came back (`voice_resumed`) they no longer
    cover the turn, and off, the final is decoded as before."""

    async def scenario():
        pool = RecordingPool()
        utterance = Utterance(pool, lambda text: None, max_bytes=10**6, final_from_look=from_look)
        utterance.feed(b"\x01\x00" * 1600)
        assert await utterance.words_now() == "what time"  # the look at the pause
        if resumed:
            utterance.voice_resumed()
        utterance.feed(b"\x00\x00" * 1600)  # the silence (or the voice) after the ask
        text = await utterance.finish()
        return text, [op for op, _ in pool.recognizer.calls], utterance.trace

    text, ops, trace = run(scenario())
    assert text == final
    assert ("finish" in ops) == (final == "what time is it")  # the recogniser asked, or not
    assert "final" in trace  # traced either way


class LookingDetector:
    """Speech is non-zero samples. The first silence after it is a look that wants the words;
    once told, the turn ends at once (`ends_when_told`), or else the voice comes back and the
    next silence ends it, with no look."""

    pending_decision = None  # no turn-end model thread
    ends_when_told = True

    def __init__(self, settings=None):
        self.in_speech = self.looked = self.told = False
        self.fed = 0

    def hint(self, words: str, look: int) -> None:
        self.told = True

    def feed(self, pcm: bytes):
        from server.pipeline.turns import (
            SpeechAudio,
            SpeechEnded,
            SpeechResumed,
            SpeechStarted,
            WordsWanted,
        )

        self.fed += len(pcm) // 2
        voiced = any(pcm[:2])
        if voiced and not self.in_speech:
            self.in_speech = True
            return [SpeechStarted(preroll=pcm, start_s=self.fed / 16000)]
        if voiced and self.looked:
            return [SpeechResumed(), SpeechAudio(pcm)]
        if voiced:
            return [SpeechAudio(pcm)]
        if not self.in_speech:
            return []
        if not self.looked and pcm:
            self.looked = True
            return [SpeechAudio(pcm), WordsWanted(look=1)]
        if (self.told and self.ends_when_told) or (self.looked and pcm):
            self.in_speech = False
            return [SpeechEnded(speech_end_s=self.fed / 16000)]
        return []


@pytest.mark.parametrize("resumed", [False, True])
def test_a_session_ends_a_turn_at_its_look_with_the_looks_words_unless_the_voice_came_back(
    tmp_path, resumed
):
    """The session's side of STT_FINAL_FROM_LOOK: the voice coming back (SpeechResumed) tells
    the utterance, so a turn that goes on is finished by the recogniser, all of it."""
    from tests.support.session_runner import SILENCE, VOICE, SessionRunner, StreamingAgent

    agent = StreamingAgent(["It is noon."], interval_s=0.1)
    agent.welcome = ["Hi."]

    class Detector(LookingDetector):
        ends_when_told = not resumed

    async def scenario():
        async with SessionRunner(tmp_path, agent, make_detector=Detector) as runner:
            await runner.send({"type": "client.ready"})
            await runner.wait_for("response.end")
            mark = len(runner.sent)
            runner.recognizers.words = "what time"  # the words at the look
            await runner.speak("what time is it", end=False)  # the final, all the audio
            if resumed:
                await runner.audio(SILENCE)  # the look
                await runner.eventually(lambda: runner.session.user_turn.utterance._look_words)
                await runner.audio(VOICE)  # the voice comes back
            await runner.audio(SILENCE)
            transcript = await runner.wait_for("user.transcript", after=mark, timeout=5)
            return transcript.message["content"]

    assert run(scenario()) == ("what time is it" if resumed else "what time")
