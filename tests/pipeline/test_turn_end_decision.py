"""The turn-end model answers in a thread (turns.py); the session acts on the answer the moment
it comes, not when the next chunk of audio happens to arrive."""

from __future__ import annotations

from concurrent.futures import Future
from typing import ClassVar

from server.pipeline.turns import SpeechAudio, SpeechEnded, WordsWanted
from tests.support.aio import run
from tests.support.session_runner import SILENCE, FakeDetector, SessionRunner, StreamingAgent


class DecidingDetector(FakeDetector):
    """The first silent chunk after speech asks a "model" whose answer the test gives."""

    asked: ClassVar[list[Future]] = []

    def __init__(self, settings=None):
        super().__init__(settings)
        self.pending_decision: Future | None = None

    def feed(self, pcm: bytes):
        if self.pending_decision is not None and self.pending_decision.done():
            self.pending_decision = None
            self.in_speech = False
            return [SpeechEnded(speech_end_s=self.fed / 16000)]
        if self.in_speech and not any(pcm[:2]):
            self.fed += len(pcm) // 2
            if self.pending_decision is None:
                self.pending_decision = Future()
                DecidingDetector.asked.append(self.pending_decision)
            return []
        return super().feed(pcm)


def test_the_models_answer_ends_the_turn_without_waiting_for_more_audio(tmp_path):
    agent = StreamingAgent(["It is noon."], interval_s=0.1)
    agent.welcome = ["Hi."]
    DecidingDetector.asked = []

    async def scenario():
        async with SessionRunner(tmp_path, agent, make_detector=DecidingDetector) as runner:
            await runner.send({"type": "client.ready"})
            await runner.wait_for("response.end")
            mark = len(runner.sent)
            await runner.speak("what time is it", end=False)
            await runner.audio(SILENCE)  # the model is asked; no more audio comes
            await runner.eventually(lambda: DecidingDetector.asked)
            DecidingDetector.asked[0].set_result(True)  # from the model's thread, in truth
            transcript = await runner.wait_for("user.transcript", after=mark, timeout=5)
            assert transcript.message["content"] == "what time is it"

    run(scenario())


class AskingDetector(FakeDetector):
    """The first silent chunk after speech asks for the words (WordsWanted); the turn ends
    once they are told."""

    told: ClassVar[list[tuple[str, int]]] = []

    def feed(self, pcm: bytes):
        if self.in_speech and AskingDetector.told:
            self.in_speech = False
            return [SpeechEnded(speech_end_s=self.fed / 16000)]
        if self.in_speech and not any(pcm[:2]):
            self.fed += len(pcm) // 2
            return [SpeechAudio(pcm), WordsWanted(look=7)]
        return super().feed(pcm)

    def hint(self, words: str, look: int) -> None:
        AskingDetector.told.append((words, look))


def test_the_detector_is_told_the_words_of_all_the_audio_not_the_last_interim(tmp_path):
    """The periodic interim lags the voice (stt.py); the words that confirm the model's
    "finished" are asked of the recogniser when the detector wants them."""
    agent = StreamingAgent(["It is noon."], interval_s=0.1)
    agent.welcome = ["Hi."]
    AskingDetector.told = []

    async def scenario():
        async with SessionRunner(tmp_path, agent, make_detector=AskingDetector) as runner:
            await runner.send({"type": "client.ready"})
            await runner.wait_for("response.end")
            mark = len(runner.sent)
            runner.recognizers.interim = "what time"  # the periodic interims lag the voice
            runner.recognizers.words = "what time is it"  # all the audio, decoded
            await runner.speak("what time is it", end=False)
            await runner.audio(SILENCE)
            transcript = await runner.wait_for("user.transcript", after=mark, timeout=5)
            assert transcript.message["content"] == "what time is it"
            assert AskingDetector.told == [("what time is it", 7)]

    run(scenario())
