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

Fair sharing under a flood: a worker answering requests in the order they arrive would make
every other utterance wait while one request holding minutes of audio is decoded. So a `feed`
goes down in pieces of at most `FEED_PIECE_BYTES` (0.1 s of audio, ~7 ms of decoding), each
sent once the last is answered, and the worker takes the utterances' streaming pieces in turn
(`Requests`), so another utterance waits at most one piece per utterance sharing its worker.
(Sending up to three pieces at once, so the worker need not wait for each answer's round trip
through the server's event loop, measured no better in three A/Bs: docs/scaling.md.)
A cancelled utterance stops after the piece in flight — its decode is cancelled with it —
and its decoder counts as busy until the worker has really let it go. Workers are chosen by
the audio they still have to decode (every piece of the feeds in progress, not only those
in their queue) and the decoders they hold, not by a count that drops before the work does.

A turn's end jumps the queue (`Requests`, `RecognizerPool(priority_lane=True)`, the
`STT_PRIORITY_LANE` setting): when the session waits for an utterance's words (a look at a
pause, the final transcript), that utterance's remaining pieces and the request for its words
go before other utterances' streaming pieces on the same worker, which lose nothing but a few
milliseconds: their words are wanted only at their own turn's end. Its backlog then goes in
one request, not piece by piece (`Recognizer.feed`).

Other sessions' streaming pieces are decoded below the server's priority
(`RecognizerPool(worker_nice=...)`, the `STT_WORKER_NICE` setting, 10 by default;
`WorkerPriority`): streaming recognition is most of a loaded node's CPU (at ten talkers about
half of it, more than the voice and the turn-end model together) and nobody waits for it until
their own turn ends, while the turn-end model and the first sentence's synthesis, in the
server's process, are what a turn's end waits for. Urgent requests go back to the server's
priority where the OS allows it (root with CAP_SYS_NICE, or RLIMIT_NICE); elsewhere they stay
below too (docs/scaling.md, "Where a turn waits under load", has the figures for both). So do
the streaming pieces of an utterance that has fallen more than `STT_CATCH_UP_MS` (when set)
behind its voice: below the server, a worker on a machine busy with other work starved
and a lone talker's words came seconds late.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, InvalidStateError
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .audio import RATE

log = logging.getLogger("server.pipeline")

INTERIM_EVERY_BYTES = RATE * 2 * 300 // 1000  # an interim hypothesis at most every 300 ms
# 100 ms of audio per request, what a client sends per message: an utterance behind a flood
# waits one piece of the same size per request, so each gets an equal share of the worker
# (measured, bench/stt_flood.py: 0.5 s pieces left a short phrase 5.6x slower beside a flood,
# since it waited 0.5 s of decoding per 0.1 s of its own).
FEED_PIECE_BYTES = RATE * 2 // 10
# At most this many distinct words may end in one frame of the search (pocketsphinx's -maxwpf;
# STT_MAX_WORDS_PER_FRAME, 0: no limit, as before). Measured on the 52 questions of
# bench/wer.py (Piper voice): the same words in every condition, and decoding 3-4% cheaper on
# clean speech and 6-17% in noise, where more words compete (docs/scaling.md).
DEFAULT_MAX_WORDS_PER_FRAME = 10
# The first (forward tree) pass only, with at most 2000 active HMMs per frame. Measured on 60
# Piper utterances (12 phrases x 5 renditions): pocketsphinx's defaults make 15.1% word errors
# at 0.13x real time and leave ~80 ms (p95) of work when the turn ends; the forward pass alone
# 17.5% at 0.105x with ~5 ms left; maxhmmpf 2000 on top 16.9% at 0.065x with ~3 ms (3000:
# 17.5% at 0.077x; 1000: 22.5%). Narrower beams, topn 2 and ds 2 cost more accuracy than they
# save time. On 120 renditions of the test phrases 2000 and 3000 gave identical words.
# The language model is pocketsphinx's general en-US one, or, with a phrase list (STT_PHRASES,
# `RecognizerPool(phrases=...)`; the demo agent's by default), that model mixed with a model of
# the phrases where they know the context (phrase_lm.py), built once and read as `lm` in its
# place: the same memory and decoding cost. Piper, 52 questions, general → the demo agent's
# phrases: 16 kHz clean 15.6 → 15.6 % (the 14 on the agent's topics 16.2 → 13.2 %), in noise
# 64.6 → 61.4 %; other sentences moved by a flip or two either way, with an unrelated list too
# (-2.5 to +1.3 points; docs/scaling.md).
DECODER_CONFIG = {
    "samprate": RATE,
    "maxhmmpf": 2000,
    "maxwpf": DEFAULT_MAX_WORDS_PER_FRAME,
    "fwdflat": False,
    "bestpath": False,
    "loglevel": "FATAL",
}
# Profiles, selectable per pool (`RecognizerPool(profile=...)`, STT_PROFILE) and side by side in
# bench/wer.py; all decode with DECODER_CONFIG and differ in how audio is prepared first.
# "baseline" hears audio as it comes. "narrowband" restores the top band of 8 kHz audio
# (`NarrowbandFold`): pocketsphinx's only English model was trained on 16 kHz speech, and
# upsampled 8 kHz audio leaves its filters above 4 kHz empty. "tuned" also subtracts steady
# noise first (`NoiseSuppressor`). Measured on 52 synthetic questions (bench/wer.py), word
# errors baseline → tuned: Piper 16 kHz clean 15.6% → 15.6%, 8 kHz clean 74.4% → 43.2%, 16 kHz
# in pink noise at 10 dB SNR 87.0% → 64.3%, 8 kHz in noise 95.8% → 84.4%; espeak stays ~83%
# (pocketsphinx barely follows that voice). 8 kHz figures swing ~±6 points with a few ms of
# alignment (NoiseSuppressor's note). The preparation costs
# ~5 ms of CPU per second of audio (noise suppression; the fold ~0.3 ms), against ~65–150 ms
# for decoding it: the worker capacity load needs stays.
PROFILES: dict[str, dict[str, bool]] = {
    "baseline": {"denoise": False, "fold": False},
    "narrowband": {"denoise": False, "fold": True},
    "tuned": {"denoise": True, "fold": True},
}
DEFAULT_PROFILE = "tuned"
# How far (ms of audio not yet decoded) an utterance may fall behind its voice before its
# streaming pieces are decoded at the server's priority (`Recognizer`; STT_CATCH_UP_MS;
# docs/scaling.md has the figures).
DEFAULT_CATCH_UP_MS = 0  # never: off until a quiet A/B settles it (docs/scaling.md)
QUIET_LEVEL = 30.0  # RMS in PCM16 units (-60 dBFS): audio too quiet to judge the band by


def new_decoder(options: dict | None = None):
    """A decoder with DECODER_CONFIG, `options` over it (bench/wer.py's variants)."""
    from pocketsphinx import Decoder

    return Decoder(**{**DECODER_CONFIG, **(options or {})})


class AudioPreparation:
    """What a profile does to an utterance's audio before the decoder hears it, in order."""

    def __init__(self, profile: str = DEFAULT_PROFILE):
        steps = PROFILES[profile]
        self._denoise = NoiseSuppressor() if steps["denoise"] else None
        self._fold = NarrowbandFold(enabled=steps["fold"])

    def process(self, pcm: bytes, final: bool = False) -> bytes:
        if self._denoise is not None:
            pcm = self._denoise.process(pcm, final)
        return self._fold.process(pcm, final)


class NarrowbandFold:
    """Mirror the 0–4 kHz band into the empty 4–8 kHz band of upsampled narrowband audio.

    Whether the audio is narrowband is judged once, on its first `JUDGE_SAMPLES` from the first
    chunk with sound in it (quiet chunks before it pass untouched):
    the share of energy above 4.2 kHz is ~1e-8 after our 8 → 16 kHz resampler and 1e-4 or more
    for any 16 kHz microphone (its own noise floor fills the band). Audio is held back until
    then (a quarter second, once per utterance), and wideband audio passes untouched.
    Folding is `x[n] + GAIN * (-1)^n x[n]`: multiplying by (-1)^n moves frequency f to
    8 kHz - f. GAIN 0.7 measured best of 0.3/0.5/0.7/1.0 on Piper speech.
    """

    GAIN = 0.7
    JUDGE_SAMPLES = 4000
    NARROW_SHARE = 1e-5  # energy above 4.2 kHz / total, below which audio is narrowband

    def __init__(self, enabled: bool = True):
        self.narrowband: bool | None = None if enabled else False
        self._held = bytearray()
        self._parity = 0  # the sign of the next sample's mirror term

    def process(self, pcm: bytes, final: bool = False) -> bytes:
        if self.narrowband is None:
            if not self._held and not final and _is_quiet(pcm):
                return pcm  # nothing to judge by yet, and nothing worth folding
            self._held += pcm
            samples = np.frombuffer(bytes(self._held), dtype="<i2").astype(np.float64)
            if samples.size < self.JUDGE_SAMPLES and not final:
                return b""
            self.narrowband = _is_narrowband(samples, self.NARROW_SHARE)
            pcm, self._held = bytes(self._held), bytearray()
        if not self.narrowband or not pcm:
            return pcm
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
        signs = np.where((np.arange(samples.size) + self._parity) % 2, -1.0, 1.0)
        self._parity = (self._parity + samples.size) % 2
        folded = samples * (1.0 + self.GAIN * signs)
        return np.clip(np.rint(folded), -32768, 32767).astype("<i2").tobytes()


class NoiseSuppressor:
    """Streaming spectral subtraction in front of the recogniser, for speech in steady noise.

        Short-time spectra (32 ms frames every 16 ms, square-root Hann windows, so unchanged frames
        add back to the input exactly); the noise in each frequency bin is the minimum of the
        smoothed power over the last second, times a bias (minimum statistics: speech pauses often
        enough for the minimum to be the noise); each bin keeps `1 - OVER * noise / power` of its
        power, never less than `FLOOR`. Where the noise is below -50 dBFS nothing is subtracted: on
        clean speech subtraction only cost words (8 kHz Piper speech 32% → 45% word errors on 15
        questions). Output lines up with the input sample for sample (its first 16 ms, the padding
    of the first frame, is dropped): pocketsphinx on 8 kHz speech was measured swinging between
    32% and 45% word errors with a 6 ms shift of its 10 ms frames. `final` flushes the rest.
    """

    SIZE, HOP = 512, 256
    OVER = 1.0  # over-subtraction (1.0 and 2.0 measured alike; 1.0 is gentler on clean speech)
    FLOOR = 0.3  # the least gain a bin keeps: deeper subtraction leaves "musical" artefacts
    BIAS = 1.5  # the minimum of a noisy power underestimates its mean
    MEMORY = 188  # frames (3 s) the minimum is taken over: 1 s measured worse
    SMOOTH = 0.8
    QUIET = 100.0  # noise RMS (PCM16, -50 dBFS) below which audio passes untouched

    def __init__(self) -> None:
        self._window = np.sqrt(np.hanning(self.SIZE + 1)[:-1])
        self._input = np.zeros(self.HOP)  # the second half of the last frame
        self._pending = np.zeros(0)  # input short of a hop
        self._overlap = np.zeros(self.HOP)  # the last frame's output still to be added to
        self._lead = self.HOP  # output samples still to drop: they stand for the first frame's pad
        self._smoothed: np.ndarray | None = None
        self._history = np.zeros((0, self.SIZE // 2 + 1))

    def process(self, pcm: bytes, final: bool = False) -> bytes:
        fresh = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2").astype(np.float64)
        pending = np.concatenate([self._pending, fresh])
        if final:  # whole hops, then one of silence to bring out the last one
            pending = np.pad(pending, (0, -pending.size % self.HOP + self.HOP))
        out = []
        while pending.size >= self.HOP:
            frame = np.concatenate([self._input, pending[: self.HOP]])
            self._input, pending = frame[self.HOP :], pending[self.HOP :]
            cleaned = self._frame(frame)
            out.append(self._overlap + cleaned[: self.HOP])
            self._overlap = cleaned[self.HOP :]
        self._pending = pending
        if not out:
            return b""
        samples = np.concatenate(out)
        dropped, self._lead = (
            min(self._lead, samples.size),
            self._lead - min(self._lead, samples.size),
        )
        samples = samples[dropped:]
        return np.clip(np.rint(samples), -32768, 32767).astype("<i2").tobytes()

    def _frame(self, frame: np.ndarray) -> np.ndarray:
        spectrum = np.fft.rfft(frame * self._window)
        power = np.abs(spectrum) ** 2
        if self._smoothed is None:
            self._smoothed = power
        self._smoothed = self.SMOOTH * self._smoothed + (1 - self.SMOOTH) * power
        self._history = np.vstack([self._history[-(self.MEMORY - 1) :], self._smoothed])
        noise = self.BIAS * self._history.min(axis=0)
        # Parseval with a sqrt-Hann window: mean x² ≈ (P0 + 2 Σ Pk) / (SIZE² / 2).
        if (noise[0] + 2 * noise[1:].sum()) * 2 / self.SIZE**2 < self.QUIET**2:
            return frame * self._window**2  # quiet: subtracting would only thin the speech
        gain = np.maximum(1.0 - self.OVER * noise / np.maximum(power, 1e-9), self.FLOOR)
        return np.fft.irfft(spectrum * gain, self.SIZE) * self._window


def _is_quiet(pcm: bytes) -> bool:
    samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2").astype(np.float64)
    return samples.size == 0 or float(np.sqrt(np.mean(samples**2))) < QUIET_LEVEL


def _is_narrowband(samples: np.ndarray, share: float) -> bool:
    power = np.abs(np.fft.rfft(samples * np.hanning(samples.size))) ** 2
    total = power.sum()
    if total <= 0:
        return False  # digital silence says nothing; treat it as wideband
    high = power[int(power.size * 4200 / (RATE / 2)) :].sum()
    return bool(high / total < share)


# -- the worker process -------------------------------------------------------------------------


def _hypothesis(decoder) -> str:
    found = decoder.hyp()
    return found.hypstr if found else ""


def serve_decoders(
    connection,
    decoders: int,
    profile: str = DEFAULT_PROFILE,
    nice: int = 0,
    options: dict | None = None,
) -> None:
    """A worker's loop: requests `(id, op, utterance, payload, urgent, catching_up)` in,
    `(id, result, error, started, ended)` out, `started` and `ended` on the machine's
    monotonic clock (one clock for every process), so the server can tell a request's wait in
    the queue from its work.

    Urgent requests go first (`Requests`): those of an utterance whose words someone waits for
    now, at the end of a turn, before other utterances' streaming pieces.

    Each utterance has its own decoder and its own `AudioPreparation` (the profile's noise
    estimate and narrowband judgement), made at its first `feed` and dropped at `finish` or
    `cancel`: its pieces pass through them in order, so one voice never colours another's.

    `nice`: how much lower than the server's this process decodes streaming pieces
    (`RecognizerPool`'s `worker_nice`, `WorkerPriority`); a piece of an utterance that has
    fallen behind its voice (`catching_up`, `Recognizer`) is decoded at the server's.
    """
    priority = WorkerPriority(nice)
    idle = [new_decoder(options) for _ in range(decoders)]
    active: dict[str, dict] = {}
    connection.send(("ready", None, None, 0.0, 0.0))
    requests = Requests(connection)
    while (request := requests.next()) is not None:
        request_id, op, utterance, payload, urgent, catching_up = request
        priority.serve(urgent or catching_up)
        started = time.monotonic()
        try:
            result = None
            if op == "feed":
                state = active.get(utterance)
                if state is None:
                    decoder = idle.pop() if idle else new_decoder(options)
                    decoder.start_utt()
                    state = active[utterance] = {
                        "decoder": decoder,
                        "since": 0,
                        "prepare": AudioPreparation(profile),
                    }
                audio = state["prepare"].process(payload)
                if audio:
                    state["decoder"].process_raw(audio, False, False)
                state["since"] += len(audio)
                if state["since"] >= INTERIM_EVERY_BYTES:
                    state["since"] = 0
                    result = _hypothesis(state["decoder"])
            elif op == "words":  # the hypothesis of every piece decoded so far, now
                state = active.get(utterance)
                result = _hypothesis(state["decoder"]) if state is not None else ""
            elif op in ("finish", "cancel"):
                state = active.pop(utterance, None)
                result = ""
                if state is not None:
                    decoder = state["decoder"]
                    try:
                        if op == "finish":  # a cancelled utterance's held-back audio is dropped
                            tail = state["prepare"].process(b"", final=True)
                            if tail:
                                decoder.process_raw(tail, False, False)
                        decoder.end_utt()
                        result = _hypothesis(decoder) if op == "finish" else ""
                    finally:
                        decoder.reinit_feat()  # the next utterance starts fresh
                        idle.append(decoder)
            elif op == "stop":
                connection.send((request_id, None, None, started, time.monotonic()))
                return
            connection.send((request_id, result, None, started, time.monotonic()))
        except Exception as error:  # reported to the caller, the worker goes on
            failure = f"{type(error).__name__}: {error}"
            connection.send((request_id, None, failure, started, time.monotonic()))


class WorkerPriority:
    """A worker's priority, request by request: `nice` below the server's for other
    sessions' streaming pieces, the server's own for urgent requests (a turn's end waits).

    Lowering one's priority is always allowed; raising it back needs root with
    CAP_SYS_NICE or a high enough RLIMIT_NICE (`ulimit -e`). Where it is refused, the worker
    stays below for everything (the first request that may not go back up finds out).
    """

    def __init__(self, nice: int):
        self.base = os.getpriority(os.PRIO_PROCESS, 0)  # the server's, inherited
        self.low = min(19, self.base + nice)
        self.may_raise = True
        self.current = self.base
        self.serve(False)

    def serve(self, urgent: bool) -> None:
        wanted = self.base if urgent and self.may_raise else self.low
        if wanted == self.current:
            return
        try:
            os.setpriority(os.PRIO_PROCESS, 0, wanted)
        except PermissionError:
            self.may_raise = False  # below for good: it only ever failed going up
            return
        self.current = wanted


class Requests:
    """A worker's requests in two lanes: urgent ones first, in arrival order; then the
    streaming lane, one request per utterance in turn (round robin).

    Everything already in the pipe is read before each pick, so an urgent request sent behind
    streaming pieces is seen at once. An urgent request is one a turn's end waits for: its
    words, its final transcript, and the pieces of its audio still to decode before them
    (`Recognizer.urgent`); it takes its utterance's streaming requests still queued with it,
    ahead of it, so one utterance's requests are always served in the order sent. Round robin
    keeps the streaming lane fair: another utterance waits at most one piece per utterance
    sharing the worker. The server sends one piece per utterance at a time, plus a `words`,
    `finish` or `cancel`, so both lanes are bounded by the utterances the worker holds. A
    `cancel` goes in the streaming lane behind its utterance's piece in flight.
    """

    def __init__(self, connection):
        self._connection = connection
        self._urgent: collections.deque = collections.deque()
        self._streaming: collections.OrderedDict[str, collections.deque] = (
            collections.OrderedDict()
        )  # by utterance, in turn
        self._stop: tuple | None = None  # served last, after everything sent before it
        self._closed = False

    def next(self) -> tuple | None:
        """The next request to serve (waiting for one if there is none); None once the
        server has hung up and every request it sent is served."""
        while not self._closed and not (self._urgent or self._streaming or self._stop):
            self._read()  # blocks for the next request
        while not self._closed and self._stop is None and self._connection.poll():
            self._read()
        if self._urgent:
            return self._urgent.popleft()
        if not self._streaming:
            return self._stop
        utterance, queue = next(iter(self._streaming.items()))
        request = queue.popleft()
        if queue:
            self._streaming.move_to_end(utterance)  # its next piece after the others'
        else:
            del self._streaming[utterance]
        return request

    def _read(self) -> None:
        try:
            request = self._connection.recv()
        except EOFError:
            self._closed = True
            return
        utterance = request[2]
        if request[1] == "stop":
            self._stop = request
        elif request[4]:  # urgent: with what of its utterance is still queued, in order
            self._urgent.extend(self._streaming.pop(utterance, ()))
            self._urgent.append(request)
        else:
            self._streaming.setdefault(utterance, collections.deque()).append(request)


# -- the server's side --------------------------------------------------------------------------


class Reply(NamedTuple):
    """A worker's answer to one request, and when: sent by the server, taken up by the worker,
    answered (monotonic seconds). `waited` is its time in the queue, behind other requests;
    `ran` the worker's work on it."""

    result: object
    sent: float
    started: float
    ended: float

    @property
    def waited(self) -> float:
        return max(0.0, self.started - self.sent)

    @property
    def ran(self) -> float:
        return max(0.0, self.ended - self.started)


class SpeechWorker:
    """One decoder process: requests are pipelined; a reader thread resolves their futures."""

    def __init__(
        self,
        decoders: int,
        profile: str = DEFAULT_PROFILE,
        nice: int = 0,
        target=None,
        options: dict | None = None,
    ):
        context = multiprocessing.get_context("spawn")  # no copy of the server's threads
        self._connection, child = context.Pipe()
        self.process = context.Process(
            target=target or serve_decoders,  # `target`: a stand-in worker loop, for tests
            args=(child, decoders, profile, nice, options),
            name="stt-worker",
            daemon=True,
        )
        self.process.start()
        child.close()
        self.decoders = decoders  # loaded, so utterances it can take at once
        self.utterances = 0  # decoders held: claimed, and not yet handed back by the worker
        self.queued_bytes = 0  # audio sent and not yet decoded: in the worker's queue
        self.backlog_bytes = 0  # audio its utterances were fed and it has not decoded yet
        self._counts = threading.Lock()  # the counters change on the loop and the reader thread
        self._ids = itertools.count()
        self._pending: dict[int, tuple[Future, int, float]] = {}  # future, bytes, sent at
        self._send_lock = threading.Lock()
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, name="stt-reader", daemon=True)
        self._reader.start()

    @property
    def free_decoders(self) -> int:
        return max(0, self.decoders - self.utterances)

    @property
    def load(self) -> tuple[int, int]:
        """How busy the worker really is: audio it still has to decode (a flood's whole
        backlog, not only the piece in its queue), then decoders held."""
        return self.backlog_bytes, self.utterances

    def add_backlog(self, size: int) -> None:
        with self._counts:
            self.backlog_bytes += size

    def claim(self) -> None:
        with self._counts:
            self.utterances += 1

    def release(self) -> None:
        with self._counts:
            self.utterances -= 1

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
                request_id, result, error, started, ended = self._connection.recv()
            except (EOFError, OSError):
                break
            if request_id == "ready":
                self._ready.set()
                continue
            future, size, sent = self._pending.pop(request_id, (None, 0, 0.0))
            if future is None:
                continue
            with self._counts:
                self.queued_bytes -= size
            with contextlib.suppress(InvalidStateError):  # the caller gave up (cancelled)
                if error:
                    future.set_exception(RuntimeError(f"the speech recogniser failed: {error}"))
                else:
                    future.set_result(Reply(result, sent, started, ended))
        for future, _, _ in self._pending.values():
            with contextlib.suppress(InvalidStateError):
                future.set_exception(RuntimeError("the speech recogniser stopped"))
        self._pending.clear()
        with self._counts:
            self.queued_bytes = 0

    def call(
        self,
        op: str,
        utterance: str,
        payload=None,
        urgent: bool = False,
        catching_up: bool = False,
    ) -> Future:
        """Send one request (`urgent`: before other utterances' streaming pieces;
        `catching_up`: a streaming piece decoded at the server's priority); the future
        resolves to its `Reply`."""
        future: Future = Future()
        size = len(payload) if isinstance(payload, bytes) else 0
        with self._send_lock:
            request_id = next(self._ids)
            with self._counts:
                self.queued_bytes += size
            self._pending[request_id] = (future, size, time.monotonic())
            self._connection.send((request_id, op, utterance, payload, urgent, catching_up))
        return future

    def stop(self) -> None:
        """Stop the worker, then close the pipe once the reader thread has seen it end.

        Closing the pipe under the reader broke it: a worker still loading its decoders when
        a pool's growth gave up on it (`wait_ready` timed out) answered "ready" after the
        close, and the reader, inside `recv`, read the message's length from the old handle
        and its body from the closed one (a `TypeError` in the `stt-reader` thread; with the
        handle's number reused meanwhile, another file's bytes)."""
        with contextlib.suppress(Exception):
            self.call("stop", "").result(2)
        self.process.join(2)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self._reader.join(5)  # the worker's end is closed: the reader sees EOF and ends
        self._connection.close()


class Recognizer:
    """One utterance, on one worker. Calls must not overlap (the session awaits each).

    `catch_up_bytes`: a feed with more than this much audio not yet decoded sends its
    streaming pieces to be decoded at the server's priority, not `worker_nice` below it
    (`STT_CATCH_UP_MS`; 0: never): below it, a worker on a busy machine starved and its
    utterances fell seconds behind, which a turn's end then waited for.
    """

    def __init__(
        self,
        worker: SpeechWorker,
        utterance: str,
        on_release=None,
        priority_lane: bool = True,
        catch_up_bytes: int = 0,
    ):
        self._worker = worker
        self._utterance = utterance
        self._lane = priority_lane
        self._catch_up_bytes = catch_up_bytes
        # Someone waits for this utterance's words now (a look at a pause, the final
        # transcript): with the priority lane its pieces go before other utterances' streaming.
        self.urgent = False
        self._on_release = on_release
        self._last_interim = ""
        self._finished = False
        self._released = False
        self.sent_bytes = 0  # audio handed to the worker so far
        self.decoded_bytes = 0  # of it, answered by the worker
        # Every request's time in the worker's queue and at work, summed (the trace of a turn:
        # timing.py), and the last `words` or `finish` answer.
        self.waited_s = 0.0
        self.ran_s = 0.0
        self.last_reply: Reply | None = None

    async def feed(
        self,
        pcm: bytes,
        more: Callable[[], bytes] | None = None,
        on_interim: Callable[[str], None] | None = None,
    ) -> str | None:
        """Decode more audio; a new interim hypothesis when it changed, else None.

        Sent in pieces, each once the last is decoded (see the module's docstring); cancelling
        the caller stops it after the piece in flight. Once someone waits for the words
        (`urgent`, with the priority lane), the rest goes in one request: piece by piece, the
        worker took another utterance's streaming piece in each round trip between two of ours,
        so a loaded worker decoded a waited-for backlog at about half its speed.

        A stream goes on across its caller's chunks: once everything given is sent and
        decoded, `more` is asked for audio that came meanwhile (b"": none, and the feed
        returns), so the audio not yet decoded, which the catch-up bound is measured against,
        counts what came while a piece was at the worker. `on_interim` hears each new interim
        as it comes.
        """
        changed = None
        pending, offset = _whole_samples(pcm), 0  # audio not yet sent: pending[offset:]
        self.decoded_bytes += len(pcm) - len(pending)  # an odd byte: dropped
        unanswered = len(pending)  # counted in the worker's backlog until decoded (or given up)
        self._worker.add_backlog(unanswered)
        try:
            while True:
                if offset == len(pending) and more is not None:
                    came = more()
                    pending, offset = _whole_samples(came), 0
                    self.decoded_bytes += len(came) - len(pending)
                    unanswered += len(pending)
                    self._worker.add_backlog(len(pending))
                if offset == len(pending):
                    return changed
                urgent = self._lane and self.urgent
                size = len(pending) - offset if urgent else FEED_PIECE_BYTES
                piece = pending[offset : offset + size]
                offset += len(piece)
                self.sent_bytes += len(piece)
                behind = 0 < self._catch_up_bytes < unanswered
                future = self._worker.call(
                    "feed", self._utterance, piece, urgent, not urgent and behind
                )
                interim = self._count(await asyncio.wrap_future(future))
                unanswered -= len(piece)
                self.decoded_bytes += len(piece)
                self._worker.add_backlog(-len(piece))
                if interim and interim != self._last_interim:
                    self._last_interim = changed = interim
                    if on_interim is not None:
                        on_interim(interim)
        finally:
            self._worker.add_backlog(-unanswered)

    async def words(self) -> str:
        """The hypothesis of everything fed so far, now: a `feed`'s interim comes only every
        `INTERIM_EVERY_BYTES` (300 ms) of audio, so it may lack the last word spoken."""
        future = self._worker.call("words", self._utterance, urgent=self._lane)
        return self._count(await asyncio.wrap_future(future), last=True)

    async def finish(self) -> str:
        """The final transcript of everything fed."""
        self._finished = True
        future = self._worker.call("finish", self._utterance, urgent=self._lane)
        return self._count(await asyncio.wrap_future(future), last=True).strip()

    def _count(self, reply: Reply, last: bool = False):
        self.waited_s += reply.waited
        self.ran_s += reply.ran
        if last:
            self.last_reply = reply
        return reply.result

    def close(self) -> None:
        """Hand the decoder back, whether or not the utterance was finished.

        Unfinished, the worker is told to `cancel` (the audio a profile still holds back is
        dropped, not decoded) and the decoder stays counted as busy until the worker answers
        (it may still be decoding the piece in flight).
        """
        if not self._finished:
            self._finished = True
            future = self._worker.call("cancel", self._utterance)  # the answer is not needed
            future.add_done_callback(lambda _: self._release())
        else:
            self._release()

    def _release(self) -> None:
        if self._released:
            return
        self._released = True
        self._worker.release()
        if self._on_release is not None:
            self._on_release()


class RecognizerPool:
    """Decoders in worker processes, shared by every session.

    Loading a decoder takes ~0.25 s of a worker's time (much more on a busy machine) and ~90 MiB,
    and a worker answers nobody meanwhile, so decoders are never loaded while sessions talk:
    an utterance takes a ready decoder, or waits for one while its audio queues (once it has
    one, decoding catches up at ~15x real time). And the pool keeps `spare` decoders ready: when
    utterances take them, one more worker process starts beside the others (up to
    `max_workers`), loading its decoders without stalling anyone.
    """

    def __init__(
        self,
        workers: int | None = None,
        decoders_per_worker: int = 3,
        spare: int = 2,
        max_workers: int = 8,
        profile: str = DEFAULT_PROFILE,
        priority_lane: bool = True,
        worker_nice: int = 0,
        catch_up_ms: int = DEFAULT_CATCH_UP_MS,
        max_words_per_frame: int = DEFAULT_MAX_WORDS_PER_FRAME,
        phrases: str = "",
        lm_cache: Path | None = None,
    ):
        if profile not in PROFILES:
            known = ", ".join(PROFILES)
            raise ValueError(f"unknown decoder profile {profile!r} (known: {known})")
        self.profile = profile
        self.priority_lane = priority_lane  # a turn's end before others' streaming (Requests)
        self.worker_nice = worker_nice  # the workers' priority below the server's (0-19)
        self.catch_up_bytes = catch_up_ms * RATE * 2 // 1000  # behind by more: full priority
        # over DECODER_CONFIG, in every worker's decoders (0: no limit, pocketsphinx's -1)
        self.decoder_options = {"maxwpf": max_words_per_frame or -1}
        # A phrase list (STT_PHRASES): its language model, mixed into the general one, is
        # built or found in `lm_cache` when the workers first start (phrase_lm.py)
        self.phrases = phrases
        self._lm_cache = lm_cache
        self._count = workers or max(1, min(4, os.cpu_count() or 2))
        self._decoders = decoders_per_worker
        self._spare = spare
        self._max_workers = max(max_workers, self._count)
        self._workers: list[SpeechWorker] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._grower: threading.Thread | None = None
        self._waiters: list[asyncio.Future] = []  # utterances waiting for a decoder
        self._closed = False

    @property
    def workers(self) -> int:
        return len(self._workers)

    def warm(self) -> None:
        """Start the workers and load their first decoders (blocking: call it in a thread)."""
        with self._lock:
            if not self._workers:
                self._use_phrases()
                self._workers = [self._new_worker() for _ in range(self._count)]
        for worker in self._workers:
            worker.wait_ready()

    @contextlib.asynccontextmanager
    async def utterance(self) -> AsyncIterator[Recognizer]:
        """One utterance on a ready decoder, on the least busy worker that has one."""
        if not self._workers:
            await asyncio.to_thread(self.warm)
        worker = await self._claim_decoder()
        recognizer = Recognizer(
            worker,
            f"utt-{next(self._ids)}",
            self._wake_waiters,
            self.priority_lane,
            self.catch_up_bytes,
        )
        try:
            yield recognizer
        finally:
            recognizer.close()

    async def _claim_decoder(self) -> SpeechWorker:
        while True:
            ready = [w for w in self._workers if w.free_decoders]
            if ready:
                worker = least_loaded(ready)
                worker.claim()
                self._grow_if_short()
                return worker
            self._grow_if_short()
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)

    def _wake_waiters(self) -> None:
        """A decoder was freed or added: every waiting utterance looks again (thread-safe)."""
        for waiter in list(self._waiters):
            with contextlib.suppress(RuntimeError):  # its loop has closed
                waiter.get_loop().call_soon_threadsafe(_resolve, waiter)

    def _grow_if_short(self) -> None:
        ready = sum(w.free_decoders for w in self._workers)
        if ready >= self._spare or len(self._workers) >= self._max_workers:
            return
        if self._grower is not None and self._grower.is_alive():
            return
        self._grower = threading.Thread(target=self._add_worker, name="stt-grow", daemon=True)
        self._grower.start()

    def _use_phrases(self) -> None:
        """Decode with the phrase list's mixed language model, once it is built or found.

        A build that fails (a pocketsphinx other than the 5.1.1 its reader is written for)
        leaves the general model in use, said in the log: recognition works, less adapted."""
        if not self.phrases or "lm" in self.decoder_options:
            return
        from . import phrase_lm

        try:
            model = phrase_lm.ensure(self.phrases, self._lm_cache or phrase_lm.CACHE_DIR)
            self.decoder_options["lm"] = str(model)
        except Exception as error:
            log.error("the phrase language model is not used, the general one is: %s", error)
            return
        log.info("speech recogniser: the phrases of %s mixed in", self.phrases)

    def _new_worker(self) -> SpeechWorker:
        """A worker process as this pool's settings make them (its decoders load in it)."""
        return SpeechWorker(
            self._decoders, self.profile, self.worker_nice, options=self.decoder_options
        )

    def _add_worker(self) -> None:
        worker = self._new_worker()
        try:
            worker.wait_ready()
        except RuntimeError as error:
            log.warning("could not add a speech recogniser worker: %s", error)
            worker.stop()
            return
        with self._lock:
            if self._closed:
                worker.stop()
                return
            self._workers = [*self._workers, worker]  # a new list: readers never see it change
        log.info("speech recogniser workers: %d", len(self._workers))
        self._wake_waiters()

    def close(self) -> None:
        with self._lock:
            self._closed = True
        if self._grower is not None:
            self._grower.join(30)
        for worker in self._workers:
            worker.stop()
        self._workers = []


def least_loaded(workers: list[SpeechWorker]) -> SpeechWorker:
    """The worker with the least audio still to decode, then the fewest decoders held."""
    return min(workers, key=lambda w: w.load)


def _whole_samples(pcm: bytes) -> bytes:
    return pcm[: len(pcm) - len(pcm) % 2]


def _resolve(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(None)
