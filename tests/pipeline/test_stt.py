"""Speech-to-text with pocketsphinx (in worker processes) on speech made with Piper."""

from __future__ import annotations

import asyncio
import time

import pytest

from server.pipeline.audio import resample
from server.pipeline.stt import RecognizerPool
from tests.support.aio import run
from tests.support.speech import silence, speak


@pytest.fixture(scope="module")
def pool():
    recognizers = RecognizerPool(workers=1)
    recognizers.warm()
    yield recognizers
    recognizers.close()


async def transcribe(pool: RecognizerPool, pcm: bytes, chunk: int = 3200):
    interims = []
    async with pool.utterance() as recognizer:
        for offset in range(0, len(pcm), chunk):
            interim = await recognizer.feed(pcm[offset : offset + chunk])
            if interim:
                interims.append(interim)
        started = time.perf_counter()
        final = await recognizer.finish()
        elapsed = time.perf_counter() - started
    return final, interims, elapsed


@pytest.mark.parametrize(
    "text,words",
    [
        ("What time is it?", ["what", "time"]),
        ("Can you help me?", ["can", "help"]),
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
    assert finish_s < 0.3  # decoding happened as the audio came; only the tail is left


def test_decoding_never_blocks_the_event_loop(pool):
    """The decoders run in another process: the loop keeps ticking while they work."""
    pcm = speak("Can you help me book a table for two tonight?") * 3

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

        task = asyncio.create_task(ticker())
        await transcribe(pool, pcm, chunk=32000)  # 1 s pieces: long decodes
        stop.set()
        await task
        return ticks, max(gaps)

    ticks, worst_gap = run(scenario())
    assert ticks > 10
    assert worst_gap < 0.05


def test_an_abandoned_utterance_hands_its_decoder_back(pool):
    async def scenario():
        async def abandoned():
            async with pool.utterance() as recognizer:
                await recognizer.feed(speak("What time is it?"))
                await asyncio.sleep(10)

        tasks = [asyncio.create_task(abandoned()) for _ in range(5)]  # more than the spares
        await asyncio.sleep(1.0)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # A decoder is handed back once its worker has let it go (it may be mid-piece).
        deadline = time.monotonic() + 10
        while (busy := sum(worker.utterances for worker in pool._workers)) and (
            time.monotonic() < deadline
        ):
            await asyncio.sleep(0.01)
        return busy, await transcribe(pool, speak("Thank you very much."))

    busy, (final, _, _) = run(scenario())
    assert busy == 0
    assert "thank" in final


def test_a_reused_decoder_forgets_the_last_utterance(pool):
    """A decoder adapts to a voice; the next utterance on it hears as on a fresh one."""
    phrase = silence(0.2) + speak("Can you help me book a table for two tonight?")
    other = resample(resample(silence(0.5) + speak("Thank you very much.") * 3, 16000, 8000),
                     8000, 16000)  # fmt: skip
    fresh, _, _ = run(transcribe(pool, phrase))
    run(transcribe(pool, other))
    again, _, _ = run(transcribe(pool, phrase))
    assert again == fresh


def test_the_pool_grows_a_worker_before_its_ready_decoders_run_out():
    """Loading a decoder stalls its worker: a new worker loads beside the busy ones instead."""
    pool = RecognizerPool(workers=1, decoders_per_worker=1, spare=1, max_workers=2)
    pool.warm()

    async def scenario():
        async with pool.utterance() as first:  # takes the only ready decoder
            await first.feed(silence(0.1))
            deadline = time.monotonic() + 20
            while pool.workers < 2:
                assert time.monotonic() < deadline, "no worker was added"
                await asyncio.sleep(0.1)
            async with pool.utterance() as second:
                assert second._worker is not first._worker  # the new one, decoder ready
                await second.feed(speak("Thank you very much."))
                return await second.finish()

    try:
        assert "thank" in run(scenario())
    finally:
        pool.close()
    assert pool.workers == 0


def test_with_every_decoder_busy_an_utterance_waits_for_one_instead_of_loading_one():
    pool = RecognizerPool(workers=1, decoders_per_worker=1, spare=0, max_workers=1)
    pool.warm()
    order = []

    async def second():
        async with pool.utterance() as recognizer:
            order.append("second has a decoder")
            await recognizer.feed(speak("Thank you very much."))
            return await recognizer.finish()

    async def scenario():
        async with pool.utterance() as first:
            await first.feed(silence(0.1))
            waiting = asyncio.create_task(second())
            await asyncio.sleep(0.3)
            order.append("first ends")
        return await asyncio.wait_for(waiting, 10)

    try:
        heard = run(scenario())
    finally:
        pool.close()
    assert order == ["first ends", "second has a decoder"]
    assert "thank" in heard


def test_a_flooding_utterance_cannot_hold_up_another_and_stops_when_cancelled(pool):
    """One utterance sends a minute of audio in one call (as a flooding client's queue would);
    another, started after it on the same worker, is transcribed while the flood is still
    being decoded, and cancelling the flood stops its decoding after the piece in flight."""
    flood = speak("Can you help me book a table for two tonight?") * 20  # ~60 s
    flood_fed = asyncio.Event()
    sent = {}

    async def flooder():
        async with pool.utterance() as recognizer:
            sent["recognizer"] = recognizer
            try:
                await recognizer.feed(flood)
                flood_fed.set()
                await asyncio.sleep(30)
            finally:
                sent["bytes"] = recognizer.sent_bytes

    async def scenario():
        task = asyncio.create_task(flooder())
        while "recognizer" not in sent or not sent["recognizer"].sent_bytes:
            await asyncio.sleep(0.01)
        final, _, _ = await transcribe(pool, speak("Thank you very much."))
        flood_still_decoding = not flood_fed.is_set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        worker = sent["recognizer"]._worker
        deadline = time.monotonic() + 10
        while (worker.queued_bytes or worker.utterances) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return final, flood_still_decoding, worker.load

    final, flood_still_decoding, load = run(scenario())
    assert "thank" in final
    assert flood_still_decoding, "the short utterance waited for the whole flood"
    assert sent["bytes"] < len(flood) // 2, "the cancelled flood kept being sent"
    assert load == (0, 0), "the worker still counts the cancelled flood"


def test_workers_are_chosen_by_queued_audio_not_by_utterance_count():
    from types import SimpleNamespace

    from server.pipeline.stt import least_loaded

    decoding_a_flood = SimpleNamespace(load=(5_000_000, 1), name="flooded")
    two_quiet = SimpleNamespace(load=(3200, 2), name="quiet")
    assert least_loaded([decoding_a_flood, two_quiet]).name == "quiet"
