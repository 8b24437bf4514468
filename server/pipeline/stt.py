"""Speech-to-text with pocketsphinx: offline, its en-US model shipped inside the package.

pocketsphinx holds the GIL while it decodes (measured: two decoders in two threads took 2.73 s
for what one after the other did in 2.48 s, and a 1 ms ticker in the main thread stalled for
up to 19 ms behind each 100 ms chunk) and while it loads a model (~0.3 s). In the server's
process that would stall every session's audio, so decoders live in worker processes: the
event loop only sends audio down a pipe and awaits answers, and decoding uses the other cores.

Audio is decoded as it arrives (`feed`), so when the turn ends only the tail is left and the
final transcript is ready in tens of milliseconds. A decoder adapts to the voice as it listens
(its cepstral mean and noise estimates); each utterance starts from a reset decoder
(`reinit_feat`, a fraction of a millisecond), so results never depend on who spoke before, and a
worker needs only as many decoders (~90 MB each) as utterances in progress at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import multiprocessing
import os
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import Future, InvalidStateError

RATE = 16000
INTERIM_EVERY_BYTES = RATE * 2 * 300 // 1000  # an interim hypothesis at most every 300 ms
# The first (forward tree) pass only, with at most 2000 active HMMs per frame. Measured on 60
# Piper utterances (12 phrases x 5 renditions): pocketsphinx's defaults make 15.1% word errors
# at 0.13x real time and leave ~80 ms (p95) of work when the turn ends; the forward pass alone
# 17.5% at 0.105x with ~5 ms left; maxhmmpf 2000 on top 16.9% at 0.065x with ~3 ms (3000:
# 17.5% at 0.077x; 1000: 22.5%). Narrower beams, topn 2 and ds 2 cost more accuracy than they
# save time. On 120 renditions of the test phrases 2000 and 3000 gave identical words.
DECODER_CONFIG = {
    "samprate": RATE,
    "maxhmmpf": 2000,
    "fwdflat": False,
    "bestpath": False,
    "loglevel": "FATAL",
}


def new_decoder():
    from pocketsphinx import Decoder

    return Decoder(**DECODER_CONFIG)


# -- the worker process -------------------------------------------------------------------------


def _hypothesis(decoder) -> str:
    found = decoder.hyp()
    return found.hypstr if found else ""


def serve_decoders(connection, spares: int) -> None:
    """A worker's loop: requests `(id, op, utterance, payload)` in, `(id, result, error)` out."""
    idle = [new_decoder() for _ in range(spares)]
    active: dict[str, dict] = {}
    connection.send(("ready", None, None))
    while True:
        try:
            request_id, op, utterance, payload = connection.recv()
        except EOFError:
            return
        try:
            result = None
            if op == "feed":
                state = active.get(utterance)
                if state is None:
                    decoder = idle.pop() if idle else new_decoder()
                    decoder.start_utt()
                    state = active[utterance] = {"decoder": decoder, "since": 0}
                state["decoder"].process_raw(payload, False, False)
                state["since"] += len(payload)
                if state["since"] >= INTERIM_EVERY_BYTES:
                    state["since"] = 0
                    result = _hypothesis(state["decoder"])
            elif op == "finish":
                state = active.pop(utterance, None)
                result = ""
                if state is not None:
                    decoder = state["decoder"]
                    decoder.end_utt()
                    result = _hypothesis(decoder)
                    decoder.reinit_feat()  # the next utterance starts fresh
                    idle.append(decoder)
            elif op == "stop":
                connection.send((request_id, None, None))
                return
            connection.send((request_id, result, None))
        except Exception as error:  # reported to the caller, the worker goes on
            connection.send((request_id, None, f"{type(error).__name__}: {error}"))


# -- the server's side --------------------------------------------------------------------------


class SpeechWorker:
    """One decoder process: requests are pipelined; a reader thread resolves their futures."""

    def __init__(self, spares: int):
        context = multiprocessing.get_context("spawn")  # no copy of the server's threads
        self._connection, child = context.Pipe()
        self.process = context.Process(
            target=serve_decoders, args=(child, spares), name="stt-worker", daemon=True
        )
        self.process.start()
        child.close()
        self.utterances = 0  # in progress, for choosing the least busy worker
        self._ids = itertools.count()
        self._pending: dict[int, Future] = {}
        self._send_lock = threading.Lock()
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, name="stt-reader", daemon=True)
        self._reader.start()

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Block until the worker's decoders are loaded; a worker that died says so at once."""
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.1):
            if not self.process.is_alive():
                raise RuntimeError(
                    f"the speech recogniser exited while starting (code {self.process.exitcode})"
                )
            if time.monotonic() > deadline:
                raise RuntimeError("the speech recogniser did not start")

    def _read(self) -> None:
        while True:
            try:
                request_id, result, error = self._connection.recv()
            except (EOFError, OSError):
                break
            if request_id == "ready":
                self._ready.set()
                continue
            future = self._pending.pop(request_id, None)
            if future is None:
                continue
            with contextlib.suppress(InvalidStateError):  # the caller gave up (cancelled)
                if error:
                    future.set_exception(RuntimeError(f"the speech recogniser failed: {error}"))
                else:
                    future.set_result(result)
        for future in self._pending.values():
            with contextlib.suppress(InvalidStateError):
                future.set_exception(RuntimeError("the speech recogniser stopped"))
        self._pending.clear()

    def call(self, op: str, utterance: str, payload=None) -> Future:
        future: Future = Future()
        with self._send_lock:
            request_id = next(self._ids)
            self._pending[request_id] = future
            self._connection.send((request_id, op, utterance, payload))
        return future

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.call("stop", "").result(2)
        self._connection.close()
        self.process.join(2)
        if self.process.is_alive():
            self.process.kill()


class Recognizer:
    """One utterance, on one worker. Calls must not overlap (the session awaits each)."""

    def __init__(self, worker: SpeechWorker, utterance: str):
        self._worker = worker
        self._utterance = utterance
        self._last_interim = ""
        self._finished = False

    async def feed(self, pcm: bytes) -> str | None:
        """Decode more audio; a new interim hypothesis when it changed, else None."""
        usable = pcm[: len(pcm) - len(pcm) % 2]
        if not usable:
            return None
        future = self._worker.call("feed", self._utterance, usable)
        interim = await asyncio.wrap_future(future)
        if interim and interim != self._last_interim:
            self._last_interim = interim
            return interim
        return None

    async def finish(self) -> str:
        """The final transcript of everything fed."""
        self._finished = True
        future = self._worker.call("finish", self._utterance)
        return (await asyncio.wrap_future(future)).strip()

    def close(self) -> None:
        """Hand the decoder back, whether or not the utterance was finished."""
        if not self._finished:
            self._finished = True
            self._worker.call("finish", self._utterance)  # the answer is not needed
        self._worker.utterances -= 1


class RecognizerPool:
    """Decoders in worker processes, shared by every session."""

    def __init__(self, workers: int | None = None, spares: int = 3):
        self._count = workers or max(1, min(4, os.cpu_count() or 2))
        self._spares = spares
        self._workers: list[SpeechWorker] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    def warm(self) -> None:
        """Start the workers and load their first decoders (blocking: call it in a thread)."""
        with self._lock:
            if not self._workers:
                self._workers = [SpeechWorker(self._spares) for _ in range(self._count)]
        for worker in self._workers:
            worker.wait_ready()

    @contextlib.asynccontextmanager
    async def utterance(self) -> AsyncIterator[Recognizer]:
        """One utterance on the least busy worker."""
        if not self._workers:
            await asyncio.to_thread(self.warm)
        worker = min(self._workers, key=lambda w: w.utterances)
        worker.utterances += 1
        recognizer = Recognizer(worker, f"utt-{next(self._ids)}")
        try:
            yield recognizer
        finally:
            recognizer.close()

    def close(self) -> None:
        for worker in self._workers:
            worker.stop()
        self._workers = []
