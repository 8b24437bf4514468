"""Speech-to-text with pocketsphinx (in worker processes) on speech made with Piper."""

from __future__ import annotations

import asyncio
import contextlib
import time

import numpy as np
import pytest

from server.pipeline.audio import resample
from server.pipeline.stt import NarrowbandFold, NoiseSuppressor, RecognizerPool
from tests.support.aio import run
from tests.support.sentences import edit_distance, words
from tests.support.speech import add_noise, silence, speak, voiced_span


@pytest.fixture(scope="module")
def pool():
    recognizers = RecognizerPool(workers=1)
    recognizers.warm()
    yield recognizers
    recognizers.close()


async def transcribe(pool: RecognizerPool, pcm: bytes, chunk: int = 3200):
    """The final transcript, the interims, and the audio (bytes) the worker still had to
    decode when the utterance was finished."""
    interims = []
    async with pool.utterance() as recognizer:
        for offset in range(0, len(pcm), chunk):
            interim = await recognizer.feed(pcm[offset : offset + chunk])
            if interim:
                interims.append(interim)
        worker = recognizer._worker
        left = worker.backlog_bytes + worker.queued_bytes
        final = await recognizer.finish()
    return final, interims, left


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


def test_interims_stream_and_only_the_tail_is_left_for_the_final(pool):
    """Decoding happens as the audio comes, so the final transcript is quick: by event order,
    not by the clock. Each feed is answered once its audio is decoded, so when the turn ends
    none of it waits in the worker (the final costs only the tail a profile holds back), and
    the interims already carry the words. How quick the final is: bench/latency.py."""
    pcm = speak("Can you help me book a table for two tonight?")
    final, interims, left = run(transcribe(pool, pcm))
    assert left == 0, f"{left} bytes of audio were still to decode when the turn ended"
    assert len(interims) >= 2
    assert len(set(interims)) == len(interims), "an interim repeated the last one"
    assert "table" in interims[-1], interims  # decoded before the end, not by the final
    assert "table" in final


def test_decoding_never_blocks_the_event_loop(pool):
    """The decoders run in another process: the loop goes on while a piece is being decoded.

    By event order, not by the clock: a ticker on the loop looks, at every turn, whether the
    worker holds audio it has not answered yet. Decoding on the loop's thread (even piece by
    piece) would never let the ticker run while a piece is out. How long the loop stalls is a
    bench figure (bench/stt_flood.py, "event loop").
    """
    pcm = speak("Can you help me book a table for two tonight?") * 3
    worker = pool._workers[0]

    async def scenario():
        in_flight_ticks = 0
        stop = asyncio.Event()

        async def ticker():
            nonlocal in_flight_ticks
            while not stop.is_set():
                in_flight_ticks += worker.queued_bytes > 0
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        final, _, _ = await transcribe(pool, pcm, chunk=len(pcm))  # one feed, many pieces
        stop.set()
        await task
        return in_flight_ticks, final

    in_flight_ticks, final = run(scenario())
    assert in_flight_ticks > 0
    assert "table" in final


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


def still_loading(connection, *args) -> None:
    """A worker loop that never gets ready (a worker still loading its decoders on a busy
    machine): it reads requests, answers none, and ends when the server's end is gone."""
    with contextlib.suppress(EOFError, OSError):
        while True:
            connection.recv()


def test_stopping_a_worker_that_never_got_ready_closes_its_pipe_after_the_reader_ends():
    """A pool's growth gives up on a worker that is too slow to load (`wait_ready` times out)
    and stops it. The pipe was closed while the reader thread was inside `recv`, so a "ready"
    arriving late had its body read from the closed handle (a TypeError in `stt-reader`)."""
    import threading

    from server.pipeline.stt import SpeechWorker

    worker = SpeechWorker(1, target=still_loading)
    connection = worker._connection
    closed_while_reading = []

    class WatchedPipe:
        def __getattr__(self, name):
            return getattr(connection, name)

        def close(self):
            closed_while_reading.append(worker._reader.is_alive())
            connection.close()

    failures = []
    previous_hook = threading.excepthook
    threading.excepthook = lambda failure: failures.append(failure.exc_value)
    try:
        worker._connection = WatchedPipe()
        worker.stop()
        worker._reader.join(10)
    finally:
        threading.excepthook = previous_hook
    assert closed_while_reading == [False], "the pipe was closed under the reader thread"
    assert not failures and not worker.process.is_alive()


@pytest.mark.parametrize("nice", [0, 7])
def test_the_workers_run_below_the_servers_priority_by_worker_nice(nice):
    """Streaming recognition yields the cores to what a turn's end waits for (STT_WORKER_NICE):
    the workers lower their own priority before they load a decoder or answer anyone."""
    import os

    pool = RecognizerPool(workers=1, decoders_per_worker=1, spare=0, worker_nice=nice)
    pool.warm()
    try:
        (worker,) = pool._workers
        ours = os.getpriority(os.PRIO_PROCESS, 0)
        assert os.getpriority(os.PRIO_PROCESS, worker.process.pid) == min(19, ours + nice)
    finally:
        pool.close()


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


def test_a_new_utterance_goes_to_the_worker_with_less_audio_left_to_decode():
    """Two workers each decoding a backlog fed in one call: a minute on the first, a few
    seconds on the second. Each has one piece in its queue at a time, so counting queued
    pieces (or utterances) calls them equal; the audio still to decode does not."""
    pool = RecognizerPool(workers=2, decoders_per_worker=2, spare=0, max_workers=2)
    pool.warm()
    phrase = speak("Can you help me book a table for two tonight?")
    fed = {}

    async def backlog(name: str, pcm: bytes) -> None:
        async with pool.utterance() as recognizer:
            fed[name] = recognizer
            await recognizer.feed(pcm)
            await asyncio.sleep(30)

    async def scenario():
        long = asyncio.create_task(backlog("long", phrase * 20))
        while "long" not in fed:
            await asyncio.sleep(0.01)
        short = asyncio.create_task(backlog("short", phrase * 4))
        while "short" not in fed or not fed["short"].sent_bytes:
            await asyncio.sleep(0.01)
        async with pool.utterance() as third:
            chosen = third._worker
        for task in (long, short):
            task.cancel()
        await asyncio.gather(long, short, return_exceptions=True)
        return chosen

    try:
        chosen = run(scenario())
    finally:
        pool.close()
    assert fed["long"]._worker is not fed["short"]._worker
    assert chosen is fed["short"]._worker


def test_workers_are_chosen_by_queued_audio_not_by_utterance_count():
    from types import SimpleNamespace

    from server.pipeline.stt import least_loaded

    decoding_a_flood = SimpleNamespace(load=(5_000_000, 1), name="flooded")
    two_quiet = SimpleNamespace(load=(3200, 2), name="quiet")
    assert least_loaded([decoding_a_flood, two_quiet]).name == "quiet"


# -- narrowband audio (8 kHz microphones) -------------------------------------------------------


def eight_khz(pcm: bytes) -> bytes:
    """What the session hands the recogniser from an 8 kHz microphone: brought to 16 kHz."""
    return resample(resample(pcm, 16000, 8000), 8000, 16000)


def test_narrowband_audio_is_recognised_as_such_and_wideband_passes_untouched():
    wide = silence(0.2) + speak("Can you help me book a table for two tonight?")
    untouched = NarrowbandFold()
    assert untouched.process(wide) == wide and untouched.narrowband is False
    folded = NarrowbandFold()
    narrow = eight_khz(wide)
    out = folded.process(narrow)
    assert folded.narrowband is True
    assert len(out) == len(narrow) and out != narrow
    assert NarrowbandFold(enabled=False).process(narrow) == narrow


def test_folding_is_the_same_whatever_the_chunks():
    narrow = eight_khz(speak("What time is it?"))
    start, _ = voiced_span(narrow)
    narrow = narrow[int(start * 16000) * 2 :]  # sound from the first chunk on
    whole = NarrowbandFold().process(narrow)
    for chunk in (3202, 1998, 16000):  # odd sample counts keep the mirror's sign in step
        fold = NarrowbandFold()
        pieces = [fold.process(narrow[o : o + chunk]) for o in range(0, len(narrow), chunk)]
        assert b"".join(pieces) + fold.process(b"", final=True) == whole


def test_a_short_utterance_is_judged_when_it_finishes():
    fold = NarrowbandFold()
    quiet = eight_khz(silence(0.3))
    assert fold.process(quiet) == quiet and fold.narrowband is None  # nothing to judge by
    yes = eight_khz(speak("Yes."))
    start, _ = voiced_span(yes)
    sound = yes[int(start * 16000) * 2 :][: NarrowbandFold.JUDGE_SAMPLES]  # less than it needs
    assert fold.process(sound[:1000]) == b""  # held back until judged
    assert len(fold.process(sound[1000:], final=True)) == len(sound)
    assert fold.narrowband is True


NARROWBAND_PHRASES = [
    "What time is it?",
    "Can you help me?",
    "What is the date today?",
    "Can you help me book a table for two tonight?",
]


def word_errors_by_profile(phrases: list[str], recording) -> tuple[dict, dict]:
    """Word errors per profile over `phrases`, each heard as `recording(index, text)` makes it."""
    heard = {}
    for profile in ("baseline", "tuned"):
        pool = RecognizerPool(workers=1, decoders_per_worker=1, spare=0, profile=profile)
        pool.warm()
        try:
            heard[profile] = [
                run(transcribe(pool, recording(n, t)))[0] for n, t in enumerate(phrases)
            ]
        finally:
            pool.close()
    errors = {
        profile: sum(edit_distance(words(t), words(h)) for t, h in zip(phrases, said, strict=True))
        for profile, said in heard.items()
    }
    return errors, heard


def test_the_tuned_profile_hears_8_khz_speech_better_than_the_baseline():
    """The tuned profile mirrors the empty top band of 8 kHz speech; the baseline does not."""
    errors, heard = word_errors_by_profile(
        NARROWBAND_PHRASES, lambda _, t: eight_khz(silence(0.3) + speak(t) + silence(0.3))
    )
    assert errors["tuned"] < errors["baseline"], heard


def test_each_utterance_is_prepared_on_its_own_piece_by_piece(pool):
    """An 8 kHz and a 16 kHz caller decoded at once on one worker, their 100 ms pieces
    interleaved: each is folded (or not) and denoised as it is alone, so each hears the same
    words as alone — a worker-wide preparation would judge both by whichever came first."""
    narrow = eight_khz(silence(0.3) + speak("What is the date today?") + silence(0.3))
    wide = silence(0.3) + speak("Can you help me book a table for two tonight?") + silence(0.3)

    async def together():
        return await asyncio.gather(transcribe(pool, narrow), transcribe(pool, wide))

    alone = [run(transcribe(pool, narrow))[0], run(transcribe(pool, wide))[0]]
    both = [final for final, _, _ in run(together())]
    assert both == alone


def test_an_unknown_profile_is_refused():
    with pytest.raises(ValueError, match="decoder profile"):
        RecognizerPool(profile="loud")


# -- steady noise -------------------------------------------------------------------------------


def suppressed(pcm: bytes, chunk: int) -> bytes:
    suppressor = NoiseSuppressor()
    pieces = [suppressor.process(pcm[o : o + chunk]) for o in range(0, len(pcm), chunk)]
    return b"".join(pieces) + suppressor.process(b"", final=True)


def level(pcm: bytes) -> float:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    return float(np.sqrt(np.mean(samples**2)))


def test_noise_suppression_lowers_steady_noise_and_keeps_the_speech():
    speech = silence(1.0) + speak("Can you help me book a table for two tonight?") + silence(0.5)
    noisy = add_noise(speech, 16000, 10.0, seed=3)
    out = suppressed(noisy, 3200)
    assert len(out) >= len(noisy)
    out = out[: len(noisy)]  # sample for sample in line with the input
    start, end = voiced_span(speech)
    noise_only = slice(int(0.3 * 16000) * 2, int((start - 0.1) * 16000) * 2)
    voiced = slice(int(start * 16000) * 2, int(end * 16000) * 2)
    assert level(out[noise_only]) < 0.8 * level(noisy[noise_only])  # the noise went down
    assert level(out[voiced]) > 0.7 * level(noisy[voiced])  # the speech stayed


def test_quiet_audio_passes_the_noise_suppressor_untouched_and_in_line():
    clean = silence(0.5) + speak("What time is it?")
    assert suppressed(clean, 3200)[: len(clean)] == clean


def test_noise_suppression_is_the_same_whatever_the_chunks():
    noisy = add_noise(silence(0.5) + speak("What time is it?"), 16000, 10.0, seed=4)
    whole = suppressed(noisy, len(noisy))
    for chunk in (3202, 1000, 510):  # whole samples: the recogniser is only ever sent those
        assert suppressed(noisy, chunk) == whole


NOISY_PHRASES = [
    "What time is it?",
    "Thank you very much.",
    "Can you help me book a table for two tonight?",
    "What is the weather like today?",
]


def test_the_tuned_profile_hears_speech_in_noise_better_than_the_baseline():
    errors, heard = word_errors_by_profile(
        NOISY_PHRASES,
        lambda n, t: add_noise(silence(0.5) + speak(t) + silence(0.3), 16000, 10.0, n),
    )
    assert errors["tuned"] < errors["baseline"], heard


def test_words_asked_for_cover_all_the_audio_fed_not_only_the_last_interim(pool):
    """An interim comes every 300 ms of audio; `words()` is the hypothesis now (what the
    turn detector asks for at a pause)."""

    async def scenario():
        async with pool.utterance() as recognizer:
            pcm = speak("Can you help me book a table for two tonight?") + silence(0.2)
            for offset in range(0, len(pcm), 640):
                await recognizer.feed(pcm[offset : offset + 640])
            words = await recognizer.words()
            return words, await recognizer.finish()

    words, final = run(scenario())
    assert words == final and "tonight" in words.split(), (words, final)


class FakeDecoder:
    """pocketsphinx's decoder as the worker uses it, hearing nothing."""

    def __init__(self, options=None):
        self.options = options

    def start_utt(self):
        pass

    def process_raw(self, audio, no_search, full_utt):
        pass

    def hyp(self):
        return None

    def end_utt(self):
        pass

    def reinit_feat(self):
        pass


def served_order(monkeypatch, requests: list[tuple]) -> list:
    """The ids of `requests`, all already in the worker's pipe, in the order it answers them
    (its loop runs in a thread here, on fake decoders)."""
    import multiprocessing
    import threading

    from server.pipeline import stt

    monkeypatch.setattr(stt, "new_decoder", FakeDecoder)
    ours, theirs = multiprocessing.Pipe()
    for request in requests:
        ours.send(request)
    ours.send(("end", "stop", "", None, False, False))
    worker = threading.Thread(target=stt.serve_decoders, args=(theirs, 3, "baseline"))
    worker.start()
    answered = [ours.recv()[0] for _ in range(len(requests) + 2)]  # "ready" first
    worker.join()
    return answered[1:-1]


def test_a_turn_ends_words_overtake_other_utterances_streaming_pieces(monkeypatch):
    piece = b"\x01\x00" * 1600
    order = served_order(
        monkeypatch,
        [
            (1, "feed", "streaming-a", piece, False, False),
            (2, "feed", "streaming-b", piece, False, False),
            (3, "feed", "ending", piece, True, False),  # its last piece, then its words
            (4, "words", "ending", None, True, False),
            (5, "feed", "streaming-a", piece, False, False),
        ],
    )
    # All were waiting when the worker looked: the urgent ones first, each lane in order.
    assert order == [3, 4, 1, 2, 5]


def test_the_worker_serves_utterances_pieces_in_turn_not_one_utterances_run(monkeypatch):
    """An utterance with several pieces in the queue (a flood of its own) holds another
    utterance's piece up for one of them, not for all (round robin)."""
    piece = b"\x01\x00" * 1600
    requests = [(n, "feed", "behind", piece, False, False) for n in (1, 2, 3)]
    requests.append((4, "feed", "keeping-up", piece, False, False))
    assert served_order(monkeypatch, requests) == [1, 4, 2, 3]


def test_an_urgent_request_takes_its_utterances_queued_pieces_first(monkeypatch):
    """A look starts waiting while the utterance's streaming pieces are still queued: they
    go before its urgent ones (its audio is never decoded out of order), ahead of others."""
    piece = b"\x01\x00" * 1600
    order = served_order(
        monkeypatch,
        [
            (1, "feed", "ending", piece, False, False),
            (2, "feed", "streaming", piece, False, False),
            (3, "feed", "ending", piece, False, False),
            (4, "feed", "ending", piece, True, False),
            (5, "words", "ending", None, True, False),
        ],
    )
    assert order == [1, 3, 4, 5, 2]


def test_without_urgent_requests_the_worker_serves_in_arrival_order(monkeypatch):
    piece = b"\x01\x00" * 1600
    requests = [(n, "feed", f"u{n % 2}", piece, False, False) for n in range(1, 6)]
    requests.append((6, "cancel", "u1", None, False, False))
    assert served_order(monkeypatch, requests) == [1, 2, 3, 4, 5, 6]


def test_a_worker_decodes_a_turns_end_at_the_servers_priority_and_streaming_below(
    monkeypatch,
):
    """Other sessions' streaming pieces yield the cores (STT_WORKER_NICE); the pieces and
    words a turn's end waits for go back to the server's priority, where the OS lets a process
    raise its priority again (root here, as CI runs), else they stay below too."""
    import multiprocessing
    import os
    import threading

    from server.pipeline import stt

    heard = []

    class PriorityDecoder(FakeDecoder):
        def process_raw(self, audio, no_search, full_utt):
            heard.append(os.getpriority(os.PRIO_PROCESS, 0))  # this thread's, on Linux

    monkeypatch.setattr(stt, "new_decoder", PriorityDecoder)
    piece = b"\x01\x00" * 1600
    ours, theirs = multiprocessing.Pipe()
    for request in [
        (1, "feed", "streaming", piece, False, False),
        (2, "feed", "ending", piece, True, False),
        (3, "feed", "streaming", piece, False, False),
        (4, "feed", "behind", piece, False, True),  # catching up (STT_CATCH_UP_MS)
    ]:
        ours.send(request)
    ours.send(("end", "stop", "", None, False, False))
    base = os.getpriority(os.PRIO_PROCESS, 0)
    worker = threading.Thread(target=stt.serve_decoders, args=(theirs, 3, "baseline", 5))
    worker.start()
    answered = [ours.recv()[0] for _ in range(6)]
    worker.join()
    assert answered == ["ready", 2, 1, 4, 3, "end"]
    urgent = base if os.geteuid() == 0 else base + 5
    assert heard == [urgent, base + 5, urgent, base + 5]


def test_a_worker_that_may_not_raise_its_priority_again_stays_below_for_everything(
    monkeypatch,
):
    """Without root (or CAP_SYS_NICE) a process may lower its priority but not raise it: the
    worker then decodes a turn's end below the server too, and stops trying."""
    import os

    from server.pipeline.stt import WorkerPriority

    now = {"nice": 0}
    tried = []

    def setpriority(which, who, value):
        tried.append(value)
        if value < now["nice"]:
            raise PermissionError("raising a priority needs CAP_SYS_NICE")
        now["nice"] = value

    monkeypatch.setattr(os, "getpriority", lambda which, who: now["nice"])
    monkeypatch.setattr(os, "setpriority", setpriority)
    priority = WorkerPriority(10)
    for urgent in (True, False, True):
        priority.serve(urgent)
    assert now["nice"] == 10 and not priority.may_raise
    assert tried == [10, 0]  # lowered once, refused once going back up, then never asked


class RecordingWorker:
    """A SpeechWorker that records each call and answers at once (or, `holding`, when the
    test answers: `answer()`)."""

    def __init__(self, holding: bool = False):
        self.calls: list[tuple[str, bool]] = []
        self.sizes: list[int] = []  # each feed's audio, in bytes
        self.catching_up: list[bool] = []  # each feed's
        self.holding = holding
        self.unanswered: list = []

    def add_backlog(self, size):
        pass

    def call(self, op, utterance, payload=None, urgent=False, catching_up=False):
        from concurrent.futures import Future

        self.calls.append((op, urgent))
        if op == "feed":
            self.sizes.append(len(payload))
            self.catching_up.append(catching_up)
        future = Future()
        self.unanswered.append(future)
        if not self.holding:
            self.answer()
        return future

    def answer(self):
        from server.pipeline.stt import Reply

        self.unanswered.pop(0).set_result(Reply("", 0.0, 0.0, 0.0))


@pytest.mark.parametrize("lane", [True, False])
def test_an_utterance_someone_waits_for_sends_its_pieces_and_words_urgent(lane):
    from server.pipeline.stt import FEED_PIECE_BYTES, Recognizer

    async def scenario():
        worker = RecordingWorker()
        recognizer = Recognizer(worker, "u", priority_lane=lane)
        await recognizer.feed(b"\x00" * FEED_PIECE_BYTES)
        recognizer.urgent = True
        await recognizer.feed(b"\x00" * FEED_PIECE_BYTES)
        await recognizer.words()
        await recognizer.finish()
        return worker.calls

    calls = run(scenario())
    assert calls == [("feed", False), ("feed", lane), ("words", lane), ("finish", lane)]


@pytest.mark.parametrize("lane", [True, False])
def test_a_waited_for_backlog_goes_in_one_request_not_piece_by_piece(lane):
    """Piece by piece, a loaded worker took another utterance's streaming piece between two of
    a waited-for utterance's: its backlog was decoded at half speed. Once someone waits (with
    the priority lane), the rest of a feed goes at once; a streaming feed stays in pieces."""
    from server.pipeline.stt import FEED_PIECE_BYTES, Recognizer

    worker = RecordingWorker()
    recognizer = Recognizer(worker, "u", priority_lane=lane)

    def urgent_after_two_pieces(op, utterance, payload=None, urgent=False, catching_up=False):
        future = RecordingWorker.call(worker, op, utterance, payload, urgent, catching_up)
        if len(worker.sizes) == 2:
            recognizer.urgent = True  # a look starts waiting while the feed is under way
        return future

    worker.call = urgent_after_two_pieces
    run(recognizer.feed(b"\x00" * FEED_PIECE_BYTES * 10))
    if lane:
        assert worker.sizes == [FEED_PIECE_BYTES] * 2 + [FEED_PIECE_BYTES * 8]
        assert [urgent for _, urgent in worker.calls] == [False, False, True]
    else:
        assert worker.sizes == [FEED_PIECE_BYTES] * 10


async def settle():
    """Let every task run until each waits on something the test holds."""
    for _ in range(20):
        await asyncio.sleep(0)


def test_a_feed_sends_one_piece_at_a_time_each_once_the_last_is_answered():
    """Pieces go one at a time (three at once measured no better: docs/scaling.md), so a
    cancelled utterance leaves at most one piece to decode."""
    from server.pipeline.stt import FEED_PIECE_BYTES, Recognizer

    async def scenario():
        worker = RecordingWorker(holding=True)
        recognizer = Recognizer(worker, "u")
        feeding = asyncio.ensure_future(recognizer.feed(b"\x00" * FEED_PIECE_BYTES * 5))
        sent = []
        while True:
            await settle()
            if feeding.done():
                break
            sent.append(len(worker.sizes))
            worker.answer()
        await feeding
        return sent, recognizer.decoded_bytes

    sent, decoded = run(scenario())
    assert sent == [1, 2, 3, 4, 5]
    assert decoded == FEED_PIECE_BYTES * 5


def test_audio_that_arrives_while_a_piece_is_decoded_goes_in_the_same_feed():
    """A stream goes on across its caller's chunks: `more` is asked once the piece at the
    worker is answered, and the feed returns only when it has nothing more."""
    from server.pipeline.stt import FEED_PIECE_BYTES, Recognizer

    async def scenario():
        worker = RecordingWorker(holding=True)
        recognizer = Recognizer(worker, "u")
        queued = []

        def more():
            taken = b"".join(queued)
            queued.clear()
            return taken

        feeding = asyncio.ensure_future(recognizer.feed(b"\x00" * FEED_PIECE_BYTES, more=more))
        await settle()
        queued.append(b"\x00" * FEED_PIECE_BYTES)  # the next chunk comes meanwhile
        before = len(worker.sizes)
        worker.answer()
        await settle()
        during = len(worker.sizes), feeding.done()
        worker.answer()
        await settle()
        return before, during, feeding.done()

    assert run(scenario()) == (1, (2, False), True)


@pytest.mark.parametrize("catch_up_pieces", [0, 2])
def test_an_utterance_behind_its_voice_is_decoded_at_the_servers_priority(catch_up_pieces):
    """Below the server's priority (STT_WORKER_NICE) a worker on a busy machine starved, and
    its utterances fell seconds behind. A feed with more than `catch_up_bytes` not yet decoded
    marks its pieces catching up (decoded at the server's priority) until it is back under."""
    from server.pipeline.stt import FEED_PIECE_BYTES, Recognizer

    worker = RecordingWorker()
    recognizer = Recognizer(worker, "u", catch_up_bytes=catch_up_pieces * FEED_PIECE_BYTES)
    run(recognizer.feed(b"\x00" * FEED_PIECE_BYTES * 5))
    behind = [True, True, True, False, False] if catch_up_pieces else [False] * 5
    assert worker.catching_up == behind


@pytest.mark.parametrize(("setting", "maxwpf"), [(10, 10), (0, -1)])
def test_the_pools_words_per_frame_reach_every_workers_decoders(setting, maxwpf):
    """STT_MAX_WORDS_PER_FRAME: the pool's decoder options go to the workers it starts, over
    DECODER_CONFIG; 0 is pocketsphinx's own "no limit" (-1), the previous behaviour."""
    from server.pipeline.stt import RecognizerPool, new_decoder

    pool = RecognizerPool(max_words_per_frame=setting)
    assert pool.decoder_options == {"maxwpf": maxwpf}
    decoder = new_decoder(pool.decoder_options)
    assert decoder.config["maxwpf"] == maxwpf


def test_a_worker_makes_its_decoders_with_the_pools_options(monkeypatch):
    import multiprocessing
    import threading

    from server.pipeline import stt

    made = []
    monkeypatch.setattr(
        stt, "new_decoder", lambda options=None: made.append(options) or FakeDecoder()
    )
    ours, theirs = multiprocessing.Pipe()
    ours.send((1, "feed", "u", b"\x00\x00" * 160, False, False))
    ours.send((2, "stop", "", None, False, False))
    args = (theirs, 1, "baseline", 0, {"maxwpf": 7})
    worker = threading.Thread(target=stt.serve_decoders, args=args)
    worker.start()
    answered = [ours.recv()[0] for _ in range(3)]
    worker.join()
    assert answered == ["ready", 1, 2]
    assert made == [{"maxwpf": 7}]
