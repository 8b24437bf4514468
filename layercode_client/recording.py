"""Recording a conversation as a WAV: stereo, the microphone left, the agent right, 16-bit 16 kHz.

`Recording` files the base64 chunks as they pass through the client (no decoding while the call
runs: MicroPython's base64 is slow) at their place on one timeline, in samples at 16 kHz from
the start:

- the microphone's chunks follow each other (the recorder worklet delivers them without gaps);
  when the clock says a chunk came later than the previous one's end by more than `GAP_MS` (the
  microphone was stopped, switched or muted), silence fills the gap;
- the agent's chunks are placed where the player plays them: right after the audio queued
  before them, or now when the player is idle (the worklet plays back to back from arrival); an
  interruption cuts what was queued at that moment.

`wav()` decodes and interleaves; the recording stops growing at its maximum duration
(`recording_max_s`). Pure Python: CPython, Pyodide and MicroPython. On MicroPython the
interleaving is a per-sample loop (no extended slices there): 0.4-0.5 s per recorded second,
measured under Node on a loaded 2-core machine, plus the copy of each decoded chunk out of JS
(about 0.15 s per second of audio), so a long recording takes a while to stop there; on
CPython/Pyodide slices do it in C.
"""

import binascii
import struct

RATE = 16000
GAP_MS = 200


def base64_samples(text):
    """PCM16 samples in a base64 text, counted without decoding it."""
    padding = 2 if text.endswith("==") else 1 if text.endswith("=") else 0
    return (len(text) * 3 // 4 - padding) // 2


def wav_header(frames, channels=2, rate=RATE, bits=16):
    data = frames * channels * bits // 8
    block = channels * bits // 8
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * block, block, bits)
        + b"data"
        + struct.pack("<I", data)
    )


def _place(track, pcm, position, limit, repeat):
    """Write PCM16 `pcm` into `track` (bytearray) from sample `position`, each sample `repeat`
    times (8 kHz → 16 kHz), never past sample `limit`."""
    if repeat == 1:
        end = min(position + len(pcm) // 2, limit)
        if end > position:
            track[position * 2 : end * 2] = pcm[: (end - position) * 2]
        return
    j = position * 2
    stop = limit * 2
    for i in range(0, len(pcm) - 1, 2):
        for _ in range(repeat):
            if j >= stop:
                return
            track[j] = pcm[i]
            track[j + 1] = pcm[i + 1]
            j += 2


def _decode(text):
    return binascii.a2b_base64(text.encode())  # MicroPython's takes bytes only


def interleave(left, right):
    """Two mono PCM16 tracks of equal length → stereo frames."""
    out = bytearray(len(left) * 2)
    try:
        out[0::4] = left[0::2]  # CPython: in C
        out[1::4] = left[1::2]
        out[2::4] = right[0::2]
        out[3::4] = right[1::2]
        return out
    except NotImplementedError:  # MicroPython: no extended slices
        pass
    j = 0
    for i in range(0, len(left), 2):
        out[j] = left[i]
        out[j + 1] = left[i + 1]
        out[j + 2] = right[i]
        out[j + 3] = right[i + 1]
        j += 4
    return out


class Recording:
    def __init__(self, started_at, max_s):
        self.started_at = started_at  # ms, the client's clock
        self.max_samples = int(max_s * RATE)
        self._microphone = []  # [position, base64, repeat]
        self._agent = []  # [position, base64, limit]
        self._microphone_end = 0  # the sample after the last microphone chunk
        self._agent_end = 0  # the sample after the agent's queued audio
        self.full = False  # reached max_samples: nothing more is kept

    def _position(self, now):
        return max(0, int((now - self.started_at) * RATE // 1000))

    def add_microphone(self, audio, sample_rate, now):
        repeat = max(1, RATE // sample_rate)
        length = base64_samples(audio) * repeat
        position = self._microphone_end
        arrived = self._position(now) - length  # where the clock says it began
        if arrived - position > GAP_MS * RATE // 1000:
            position = arrived
        self._keep(self._microphone, [position, audio, repeat], position + length)
        self._microphone_end = position + length

    def add_agent(self, audio, now):
        position = max(self._agent_end, self._position(now))
        length = base64_samples(audio)
        self._keep(self._agent, [position, audio, self.max_samples], position + length)
        self._agent_end = position + length

    def interrupt_agent(self, now):
        """What was queued and not yet played is cut off here."""
        cut = self._position(now)
        for chunk in self._agent:
            if chunk[0] + base64_samples(chunk[1]) > cut:
                chunk[2] = min(chunk[2], cut)
        self._agent_end = min(self._agent_end, cut)

    def _keep(self, track, chunk, end):
        if chunk[0] >= self.max_samples:
            self.full = True
            return
        track.append(chunk)
        if end >= self.max_samples:
            self.full = True

    def duration_s(self):
        return self._frames() / RATE

    def _frames(self):
        ends = [self._microphone_end, self._agent_end]
        return min(max(ends), self.max_samples)

    def wav(self, decode=None):
        """The WAV file as bytes. `decode(base64) → bytes` defaults to `binascii`'s (the browser
        port offers the browser's own: MicroPython's is pure Python, and quadratic)."""
        decode = decode or _decode
        frames = self._frames()
        left = bytearray(frames * 2)
        right = bytearray(frames * 2)
        for position, audio, repeat in self._microphone:
            _place(left, decode(audio), position, frames, repeat)
        for position, audio, limit in self._agent:
            _place(right, decode(audio), position, min(limit, frames), 1)
        return wav_header(frames) + bytes(interleave(left, right))
