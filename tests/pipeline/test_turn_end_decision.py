"""The turn-end model answers in a thread (turns.py); the session acts on the answer the moment
it comes, not when the next chunk of audio happens to arrive."""

from __future__ import annotations

from concurrent.futures import Future
from typing import ClassVar

from server.pipeline.turns import SpeechEnded
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
