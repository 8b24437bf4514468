"""Text-to-speech: both engines give 16 kHz speech of plausible length, streamed, stoppable.

How fast is measured in bench/ (latency.py, load.py), not here.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from server.pipeline.audio import rms
from server.pipeline.tts import make_tts
from server.pipeline.tts.bridge import stream_from_thread
from tests.support.aio import run


@pytest.fixture(scope="module", params=["piper", "espeak"])
def tts(request):
    engine = make_tts(request.param)
    engine.warm()
    return engine


async def collect(tts, text: str) -> list[bytes]:
    return [pcm async for pcm in tts.synthesize(text)]


def test_speech_is_16khz_audible_and_of_plausible_length(tts):
    text = "The quick brown fox jumps over the lazy dog."
    chunks = run(collect(tts, text))
    pcm = b"".join(chunks)
    seconds = len(pcm) / 2 / 16000
    words = len(text.split())
    assert tts.sample_rate == 16000
    assert 0.25 * words <= seconds <= 0.6 * words + 0.5, seconds
    assert rms(pcm) > 0.02
    assert all(len(c) % 2 == 0 and len(c) <= 8000 for c in chunks)  # ≤ 250 ms per chunk
    spectrum = np.abs(np.fft.rfft(np.frombuffer(pcm, "<i2").astype(float)))
    freqs = np.fft.rfftfreq(len(pcm) // 2, 1 / 16000)
    assert spectrum[(freqs > 100) & (freqs < 4000)].sum() > spectrum[freqs > 7500].sum() * 5


def test_unknown_engine_names_the_choices():
    with pytest.raises(ValueError, match="piper or espeak"):
        make_tts("festival")


def test_a_consumer_that_stops_reading_holds_the_worker_back():
    """The worker may run only `ahead` chunks past its consumer, then waits, then ends on stop."""
    made = []

    def produce(emit):
        for index in range(100):
            emit(bytes([index]))
            made.append(index)

    async def scenario():
        stream = stream_from_thread(produce, ahead=3)
        first = await anext(stream)
        await asyncio.sleep(0.3)  # the worker has filled its credits and waits
        waiting = len(made)
        await stream.aclose()
        await asyncio.sleep(0.3)
        return first, waiting, len(made)

    first, waiting, after_close = run(scenario())
    assert first == b"\x00"
    assert waiting <= 4  # 3 credits, plus the one the consumer handed back
    assert after_close == waiting  # closing ended the worker instead of letting it run on


def test_piper_makes_what_is_due_first_first():
    """A new answer's first sentence goes before other answers' later ones, queued earlier."""
    piper = make_tts("piper")

    async def first_audio(text: str, due: float | None, heard: list[str]) -> None:
        async for _ in piper.synthesize(text, due=due):
            heard.append(text)
            return

    async def scenario() -> list[str]:
        heard: list[str] = []
        later = time.monotonic() + 5
        tails = [
            asyncio.create_task(first_audio(f"Later sentence number {n}.", later, heard))
            for n in range(4)
        ]
        await asyncio.sleep(0.01)  # all four are submitted; some may already run
        started = 4 - piper._executor.queued
        await first_audio("Right now.", None, heard)
        await asyncio.gather(*tails)
        return heard, started

    piper.warm()
    try:
        heard, started = run(scenario())
    finally:
        piper.close()
    assert started < 4, "every later sentence had started: nothing to overtake"
    assert heard.index("Right now.") <= started, heard  # only those already running


class RecordedVoices:
    """Piper's pool of one-thread voices, noting in `taken` each time one is taken."""

    def __init__(self, pool, taken: list):
        self.pool, self.taken = pool, taken

    def get(self):
        self.taken.append(True)
        return self.pool.get()

    def put(self, voice):
        self.pool.put(voice)


def note_one_thread_voices_taken(piper) -> list:
    """A list that gets an entry each time `piper` makes a sentence on a one-thread voice."""
    taken: list = []
    piper._shared = RecordedVoices(piper._shared, taken)
    return taken


async def whole(piper, text: str) -> bytes:
    return b"".join([pcm async for pcm in piper.synthesize(text)])


def test_piper_makes_overlapping_sentences_side_by_side():
    """With two workers, sentences due together run at once, on the one-thread voices."""
    piper = make_tts("piper")
    piper.warm()
    taken = note_one_thread_voices_taken(piper)

    async def scenario() -> list[bytes]:
        texts = [f"This is sentence number {n}, spoken by the agent." for n in range(4)]
        return await asyncio.gather(*(whole(piper, t) for t in texts))

    try:
        results = run(scenario())
    finally:
        piper.close()
    if piper.workers > 1:
        assert taken, "no two sentences were made side by side"
    for pcm in results:
        assert len(pcm) / 2 / 16000 > 1.5  # each is a whole spoken sentence
        assert rms(pcm) > 0.02


@pytest.mark.parametrize("solo", [True, False])
def test_piper_makes_a_sentence_alone_on_two_threads_unless_solo_is_off(solo):
    """TTS_PIPER_SOLO=off: even a sentence made alone leaves one core to the rest (the
    turn-end model's look, the recogniser) instead of taking the two-thread voice."""
    from server.pipeline.tts.piper import PiperTTS

    piper = PiperTTS(solo=solo)
    piper.warm()
    taken = note_one_thread_voices_taken(piper)

    try:
        pcm = run(whole(piper, "A sentence made alone."))
    finally:
        piper.close()
    assert taken == ([] if solo else [True]), "the two-thread voice was taken or not"
    assert len(pcm) / 2 / 16000 > 0.8 and rms(pcm) > 0.02
