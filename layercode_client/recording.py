"""Recording a conversation as a WAV: stereo, the microphone left, the agent right, 16-bit 16 kHz.

`Recording` files the base64 chunks as they pass through the client (no decoding while the call
runs: MicroPython's base64 is slow) at their place on one timeline, in samples at 16 kHz from
the start:

- the microphone's chunks follow each other: the recorder worklet delivers them without gaps, so
  their place is counted, not read from the clock (a main thread that stalls gets the chunks
  late, in a burst: by the clock that would record silence that never was, and shift the
  microphone against the agent). A chunk dropped while muted counts as silence of its length.
  Only a microphone that (re)started (switched, reopened, turned on) has a new start: its first
  chunk goes where the clock says it began, after a gap of silence;
- the agent's chunks are placed where the player plays them: right after the audio queued
  before them, or now when the player is idle (the worklet plays back to back from arrival); an
  interruption cuts what was queued at that moment.

`wav()` lays the chunks out (`pieces()`: which chunk goes where, on which channel) and hands
them to a builder that decodes and interleaves; the recording stops growing at its maximum
duration (`recording_max_s`). `build_wav` here does it in pure Python: on CPython and Pyodide
slices do the per-sample work in C, while on MicroPython (no extended slices) it is a
per-sample loop, about 0.6 s per recorded second under Node on a loaded 2-core machine, so a
MicroPython page has the recorder worklet build the file (the microphone port's `build_wav`).
With no worklet left (the session ended), Python builds it there too, the browser decoding the
base64 (the browser port's `decode_base64`: MicroPython's `binascii` is pure Python, slow).
"""

import binascii
import struct

RATE = 16000


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
        self._microphone_started = True  # the next chunk begins a new run: placed by the clock
        self._agent_end = 0  # the sample after the agent's queued audio
        self.full = False  # reached max_samples: nothing more is kept

    def _position(self, now):
        return max(0, int((now - self.started_at) * RATE // 1000))

    def _microphone_position(self, length, now):
        """Where a microphone chunk of `length` samples that arrived `now` begins."""
        position = self._microphone_end
        if self._microphone_started:
            self._microphone_started = False
            position = max(position, self._position(now) - length)  # where the clock says
        return position

    def add_microphone(self, audio, sample_rate, now):
        repeat = max(1, RATE // sample_rate)
        length = base64_samples(audio) * repeat
        position = self._microphone_position(length, now)
        self._keep(self._microphone, [position, audio, repeat], position + length)
        self._microphone_end = position + length

    def skip_microphone(self, audio, sample_rate, now):
        """A chunk not recorded (muted): silence of its length."""
        length = base64_samples(audio) * max(1, RATE // sample_rate)
        end = self._microphone_position(length, now) + length
        self._microphone_end = min(end, self.max_samples)
        if end >= self.max_samples:
            self.full = True

    def microphone_started(self):
        """A microphone (re)started: its first chunk is placed by the clock."""
        self._microphone_started = True

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

    def pieces(self, frames):
        """The chunks to write, in order (a later one overwrites an earlier one where they
        overlap): `[channel (0 left, 1 right), first sample, base64, repeat, end sample]`."""
        pieces = [[0, position, audio, repeat, frames] for position, audio, repeat in
                  self._microphone]  # fmt: skip
        for position, audio, limit in self._agent:
            pieces.append([1, position, audio, 1, min(limit, frames)])
        return pieces

    def layout(self):
        """`(frames, pieces)`: what a builder (`build_wav`) needs."""
        frames = self._frames()
        return frames, self.pieces(frames)

    def wav(self, decode=None):
        """The WAV file as bytes, built in Python; `decode` (base64 → bytes) defaults to
        `binascii`'s."""
        return build_wav(*self.layout(), decode)


def build_wav(frames, pieces, decode=None):
    """The stereo WAV of `frames` frames with `pieces` (Recording.pieces) placed, in Python."""
    decode = decode or _decode
    tracks = (bytearray(frames * 2), bytearray(frames * 2))
    for channel, position, audio, repeat, end in pieces:
        _place(tracks[channel], decode(audio), position, min(end, frames), repeat)
    return wav_header(frames) + bytes(interleave(tracks[0], tracks[1]))
