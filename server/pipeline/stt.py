"""Speech-to-text with pocketsphinx: offline, its en-US model shipped inside the package.

pocketsphinx holds the GIL while it decodes (two decoders in two threads take as long as one
after the other) and while it loads a model (~0.3 s). In the server's process that would stall
every session's audio, so decoders live in worker processes: the event loop only sends audio
down a pipe and awaits answers, and decoding uses the machine's other cores.

Audio is decoded as it arrives (`feed`), so when the turn ends only the tail is left and the
final transcript is ready in tens of milliseconds. A decoder adapts to a voice as it listens
(its cepstral mean and noise estimates carry over), so each speaker — a session — keeps one
decoder in one worker while it lasts; `release` resets it (`reinit_feat`) for the next speaker.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import multiprocessing
import os
import threading
from collections.abc import AsyncIterator
from concurrent.futures import Future, InvalidStateError

RATE = 16000
INTERIM_EVERY_BYTES = RATE * 2 * 300 // 1000  # an interim hypothesis at most every 300 ms
DECODER_CONFIG = {"samprate": RATE, "maxhmmpf": 3000, "loglevel": "FATAL"}


def new_decoder():
    from pocketsphinx import Decoder

    return Decoder(**DECODER_CONFIG)


# -- the worker process -------------------------------------------------------------------------


def _hypothesis(decoder) -> str:
    found = decoder.hyp()
    return found.hypstr if found else ""


def serve_decoders(connection, spares: int) -> None:
    """A worker's loop: requests `(id, op, speaker, payload)` in, `(id, result, error)` out."""
    idle = [new_decoder() for _ in range(spares)]
    speakers: dict[str, dict] = {}
    connection.send(("ready", None, None))
    while True:
        try:
            request_id, op, speaker, payload = connection.recv()
        except EOFError:
            return
        try:
            result = None
            if op == "feed":
                state = speakers.get(speaker)
                if state is None:
                    state = speakers[speaker] = {
                        "decoder": idle.pop() if idle else new_decoder(), "open": False,
                        "since": 0,
                    }  # fmt: skip
                if not state["open"]:
                    state["decoder"].start_utt()
                    state["open"], state["since"] = True, 0
                state["decoder"].process_raw(payload, False, False)
                state["since"] += len(payload)
                if state["since"] >= INTERIM_EVERY_BYTES:
                    state["since"] = 0
                    result = _hypothesis(state["decoder"])
            elif op == "finish":
                state = speakers.get(speaker)
                if state is not None and state["open"]:
                    state["decoder"].end_utt()
                    state["open"] = False
                    result = _hypothesis(state["decoder"])
                else:
                    result = ""
            elif op == "release":
                state = speakers.pop(speaker, None)
                if state is not None:
                    if state["open"]:
                        state["decoder"].end_utt()
                    state["decoder"].reinit_feat()
                    idle.append(state["decoder"])
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
        self.speakers = 0
        self._ids = itertools.count()
        self._pending: dict[int, Future] = {}
        self._send_lock = threading.Lock()
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, name="stt-reader", daemon=True)
        self._reader.start()

    def wait_ready(self, timeout: float = 60.0) -> None:
        if not self._ready.wait(timeout):
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

    def call(self, op: str, speaker: str, payload=None) -> Future:
        future: Future = Future()
        with self._send_lock:
            request_id = next(self._ids)
            self._pending[request_id] = future
            self._connection.send((request_id, op, speaker, payload))
        return future

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.call("stop", "").result(2)
        self._connection.close()
        self.process.join(2)
        if self.process.is_alive():
            self.process.kill()


class Recognizer:
    """One utterance of one speaker. Calls must not overlap (the session awaits each)."""

    def __init__(self, worker: SpeechWorker, speaker: str):
        self._worker = worker
        self._speaker = speaker
        self._last_interim = ""
        self._finished = False

    async def feed(self, pcm: bytes) -> str | None:
        """Decode more audio; a new interim hypothesis when it changed, else None."""
        usable = pcm[: len(pcm) - len(pcm) % 2]
        if not usable:
            return None
        interim = await asyncio.wrap_future(self._worker.call("feed", self._speaker, usable))
        if interim and interim != self._last_interim:
            self._last_interim = interim
            return interim
        return None

    async def finish(self) -> str:
        """The final transcript of everything fed."""
        self._finished = True
        return (await asyncio.wrap_future(self._worker.call("finish", self._speaker))).strip()

    def abandon(self) -> None:
        if not self._finished:
            self._worker.call("finish", self._speaker)  # close the utterance, answer unused


class RecognizerPool:
    """Decoders in worker processes, shared by every session; each speaker sticks to one."""

    def __init__(self, workers: int | None = None, spares: int = 2):
        self._count = workers or max(1, min(4, (os.cpu_count() or 2)))
        self._spares = spares
        self._workers: list[SpeechWorker] = []
        self._lock = threading.Lock()
        self._speakers = itertools.count(1)

    def warm(self, count: int | None = None) -> None:
        """Start the workers and load their first decoders (blocking: call it in a thread)."""
        with self._lock:
            if not self._workers:
                spares = count if count is not None else self._spares
                self._workers = [SpeechWorker(spares) for _ in range(self._count)]
        for worker in self._workers:
            worker.wait_ready()

    def _assign(self, speaker: dict) -> SpeechWorker:
        if "worker" not in speaker:
            if not self._workers:
                self.warm()
            worker = min(self._workers, key=lambda w: w.speakers)
            worker.speakers += 1
            speaker["worker"], speaker["id"] = worker, f"speaker-{next(self._speakers)}"
        return speaker["worker"]

    @contextlib.asynccontextmanager
    async def utterance(self, speaker: dict | None = None) -> AsyncIterator[Recognizer]:
        """One utterance of `speaker` (a dict the session keeps for its lifetime)."""
        speaker = {} if speaker is None else speaker
        if "worker" not in speaker and not self._workers:
            await asyncio.to_thread(self.warm)
        worker = self._assign(speaker)
        recognizer = Recognizer(worker, speaker["id"])
        try:
            yield recognizer
        finally:
            recognizer.abandon()

    def release(self, speaker: dict) -> None:
        """The speaker is gone: their decoder is reset and kept for the next one."""
        worker = speaker.pop("worker", None)
        if worker is not None:
            worker.speakers -= 1
            worker.call("release", speaker.pop("id"))

    def close(self) -> None:
        for worker in self._workers:
            worker.stop()
        self._workers = []
