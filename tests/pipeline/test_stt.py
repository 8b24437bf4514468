"""Speech-to-text with pocketsphinx on speech made with Piper."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from server.pipeline.audio import resample
from server.pipeline.stt import RecognizerPool, new_decoder
from tests.support.aio import run
from tests.support.speech import silence, speak


@pytest.fixture(scope="module")
def pool():
    recognizers = RecognizerPool()
    recognizers.warm()
    yield recognizers
    recognizers.close()


async def transcribe(pool: RecognizerPool, pcm: bytes, chunk: int = 3200, speaker=None):
    """One utterance; by default of a new speaker, on a fresh decoder of its own."""
    interims = []
    fresh = speaker is None
    speaker = {"decoder": new_decoder(), "lock": threading.Lock()} if fresh else speaker
    async with pool.utterance(speaker) as recognizer:
        for offset in range(0, len(pcm), chunk):
            interim = await recognizer.feed(pcm[offset : offset + chunk])
            if interim:
                interims.append(interim)
        started = time.perf_counter()
        final = await recognizer.finish()
        return final, interims, time.perf_counter() - started


@pytest.mark.parametrize(
    "text,words",
    [
        ("What time is it?", ["what", "time"]),
        ("Can you help me?", ["help", "me"]),
        ("Thank you very much.", ["thank", "you"]),
        ("Can you help me book a table for two tonight?", ["book", "table", "tonight"]),
    ],
)
def test_key_words_are_recognised(pool, text, words):
    final, _, _ = run(transcribe(pool, silence(0.2) + speak(text) + silence(0.3)))
    for word in words:
        assert word in final.split(), (word, final)


def test_interims_stream_and_the_final_is_quick(pool):
    pcm = speak("Can you help me book a table for two tonight?")
    final, interims, finish_s = run(transcribe(pool, pcm))
    assert len(interims) >= 2
    assert len(set(interims)) == len(interims), "an interim repeated the last one"
    assert "table" in final
    assert finish_s < 0.5  # decoding happened as the audio came; only the tail is left


def test_decoding_leaves_the_event_loop_responsive(pool):
    """pocketsphinx holds the GIL while it decodes, so a thread cannot make decoding free for
    the loop: what keeps the loop responsive is decoding in 100 ms pieces (~15 ms each); the
    final pass over a whole utterance is the longest stall."""
    pcm = speak("Can you help me book a table for two tonight?")

    async def scenario():
        ticks, gaps = 0, []
        stop = asyncio.Event()

        async def ticker():
            nonlocal ticks
            last = time.perf_counter()
            while not stop.is_set():
                await asyncio.sleep(0.005)
                now = time.perf_counter()
                gaps.append(now - last)
                last, ticks = now, ticks + 1

        pool.warm(2)  # loading a decoder holds the GIL ~0.3 s: the server does it at start
        task = asyncio.create_task(ticker())
        await transcribe(pool, pcm, chunk=3200)
        stop.set()
        await task
        return ticks, max(gaps)

    ticks, worst_gap = run(scenario())
    assert ticks > 10
    assert worst_gap < 0.12


def test_a_speaker_keeps_a_decoder_and_a_cancelled_utterance_gives_it_back(pool):
    async def scenario():
        speaker: dict = {}

        async def abandoned():
            async with pool.utterance(speaker) as recognizer:
                await recognizer.feed(speak("What time is it?"))
                await asyncio.sleep(10)

        task = asyncio.create_task(abandoned())
        await asyncio.sleep(0.3)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        decoder = speaker["decoder"]
        # The same speaker's next utterance runs on the same decoder, after the abandoned one.
        result = await transcribe(pool, speak("Thank you very much."), speaker=speaker)
        assert speaker["decoder"] is decoder
        pool.release(speaker)
        await asyncio.sleep(0.3)
        return result, decoder in pool._idle

    (final, _, _), returned = run(scenario())
    assert "thank" in final
    assert returned


def test_a_pooled_decoder_forgets_its_last_speaker(pool):
    """The decoder adapts to a voice: a new speaker on a reused decoder hears as a fresh one."""
    phrase = silence(0.2) + speak("Can you help me book a table for two tonight?")
    other = resample(silence(0.5) + speak("Thank you very much.") * 3, 16000, 8000)
    fresh, _, _ = run(transcribe(pool, phrase))

    async def after_another_speaker():
        first: dict = {}
        async with pool.utterance(first) as recognizer:
            await recognizer.feed(resample(other, 8000, 16000))
            await recognizer.finish()
        decoder = first["decoder"]
        pool.release(first)
        await asyncio.sleep(0.3)
        second = {"decoder": decoder, "lock": threading.Lock()}
        pool._idle.remove(decoder)
        return await transcribe(pool, phrase, speaker=second)

    reused, _, _ = run(after_another_speaker())
    assert reused == fresh
