"""Client-side voice activity detection: `vad_start`/`vad_end`, and the microphone gated by it.

The official SDK runs Silero VAD, an ONNX model and runtime fetched from a CDN (offline, or
behind a strict content policy, it fails). This detector needs nothing fetched and costs next
to nothing: per microphone chunk (100 ms by default) the recorder worklet measures the level
(RMS) and the zero-crossing rate, and `SpeechDetector` compares the level with a noise floor it
keeps learning, with hysteresis (start above the floor + 10 dB, stay above + 6 dB) and a
ceiling on the zero-crossing rate (steady hiss and broadband noise cross zero about every other
sample, voiced speech far less often). Speech starts after `min_speech` voiced chunks in a row
and ends after `redemption` unvoiced ones. The floor's rates below are per 100 ms chunk (the
official SDK's), and `buffer_frames` counts such chunks: both are scaled to the chunk length in
use, so a shorter `chunk_ms` changes neither how fast the floor moves nor how much pre-roll is
kept.

`VoiceGate` does what the official SDK does with its VAD: while the user is not speaking, the
microphone's chunks are held back (the newest `buffer_frames` kept as pre-roll); at speech
start it sends `vad_events` `vad_start`, then the pre-roll, then the live audio; at speech end
`vad_events` `vad_end`, and holds back again. It runs only where the session's `config.vad`
does not say `enabled: false` (this project's pipeline says so: it detects turns on the
server, from all the audio) and never in push-to-talk.
"""

VAD_START = "vad_start"
VAD_END = "vad_end"

# Levels are the recorder's: min(1, 4 × RMS) of the chunk's samples in [-1, 1].
START_RATIO = 10 ** (10 / 20)  # +10 dB over the noise floor starts speech …
STAY_RATIO = 10 ** (6 / 20)  # … and above +6 dB it goes on (hysteresis)
MIN_LEVEL = 0.02  # about -46 dBFS: quieter is never speech, whatever the floor
INITIAL_FLOOR = 0.01
MIN_FLOOR = 0.002  # digital silence must not make every breath "speech"
FLOOR_FALL = 0.5  # per chunk, towards a quieter level: the floor finds silence at once
FLOOR_RISE = 0.05  # per unvoiced chunk, towards a louder level (about 2 s at 100 ms chunks)
FLOOR_RISE_IN_SPEECH = 0.01  # a noise that never stops ends "speech" in about 10 s
MAX_SPEECH_ZCR = 0.4  # zero crossings per sample above which a chunk is noise, not voice

# config.vad (Layercode's names, in Silero frames) → ours, in ms; each bounded.
SILERO_FRAME_MS = 32  # 512 samples at 16 kHz, Silero v5's frame
DEFAULT_MIN_SPEECH_MS = 200
DEFAULT_REDEMPTION_MS = 500
DEFAULT_BUFFER_CHUNKS = 10  # the official SDK's `buffer_frames` default: about 1 s of pre-roll
MAX_MS = 5000
MAX_BUFFER_CHUNKS = 50
REFERENCE_CHUNK_MS = 100  # the chunk the rates above and `buffer_frames` are counted in


def _per_chunk(rate, chunk_ms):
    """A rate per 100 ms chunk as the same rate over time, per chunk of `chunk_ms`."""
    return 1 - (1 - rate) ** (chunk_ms / REFERENCE_CHUNK_MS)


def _bounded(value, low, high, default):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return default
    return max(low, min(high, value))


class SpeechDetector:
    """Speech start and end from each chunk's level and zero-crossing rate."""

    __slots__ = ("_fall", "_min_speech", "_redemption", "_rise", "_rise_in_speech", "_unvoiced",
                 "_voiced", "floor", "speaking")  # fmt: skip

    def __init__(self, chunk_ms, min_speech_ms=DEFAULT_MIN_SPEECH_MS,
                 redemption_ms=DEFAULT_REDEMPTION_MS):  # fmt: skip
        self._min_speech = max(1, -(-int(min_speech_ms) // chunk_ms))  # chunks, rounded up
        self._redemption = max(1, -(-int(redemption_ms) // chunk_ms))
        self._fall = _per_chunk(FLOOR_FALL, chunk_ms)
        self._rise = _per_chunk(FLOOR_RISE, chunk_ms)
        self._rise_in_speech = _per_chunk(FLOOR_RISE_IN_SPEECH, chunk_ms)
        self.floor = INITIAL_FLOOR
        self.speaking = False
        self._voiced = 0  # voiced chunks in a row
        self._unvoiced = 0  # unvoiced chunks in a row while speaking

    def push(self, level, zcr=None):
        """One chunk: returns VAD_START, VAD_END or None."""
        ratio = STAY_RATIO if self.speaking else START_RATIO
        voiced = level >= MIN_LEVEL and level >= self.floor * ratio
        if voiced and zcr is not None and zcr > MAX_SPEECH_ZCR:
            voiced = False
        self._learn_floor(level, voiced)
        if not self.speaking:
            self._voiced = self._voiced + 1 if voiced else 0
            if self._voiced >= self._min_speech:
                self.speaking, self._unvoiced = True, 0
                return VAD_START
            return None
        self._unvoiced = 0 if voiced else self._unvoiced + 1
        if self._unvoiced >= self._redemption:
            self.speaking, self._voiced = False, 0
            return VAD_END
        return None

    def stop(self):
        """Speech ends now, whatever the audio; returns whether it was on."""
        was_speaking, self.speaking, self._voiced = self.speaking, False, 0
        return was_speaking

    def _learn_floor(self, level, voiced):
        if level < self.floor:
            self.floor += (level - self.floor) * self._fall
        elif not voiced:
            self.floor += (level - self.floor) * self._rise
        elif self.speaking:
            self.floor += (level - self.floor) * self._rise_in_speech
        self.floor = max(MIN_FLOOR, self.floor)


class VoiceGate:
    """The microphone's chunks in, what to send out: `vad_events` and gated audio."""

    __slots__ = ("_held", "_held_max", "detector", "gate_audio")

    def __init__(self, chunk_ms, vad_config=None):
        config = vad_config or {}
        frame_ms = _bounded(config.get("frame_samples"), 256, 4096, 512) * SILERO_FRAME_MS / 512
        min_speech = config.get("min_speech_frames")
        redemption = config.get("redemption_frames")
        self.detector = SpeechDetector(
            chunk_ms,
            _bounded(min_speech, 0, MAX_MS, DEFAULT_MIN_SPEECH_MS / frame_ms) * frame_ms,
            _bounded(redemption, 0, MAX_MS, DEFAULT_REDEMPTION_MS / frame_ms) * frame_ms,
        )
        self.gate_audio = config.get("gate_audio") is not False
        frames = _bounded(config.get("buffer_frames"), 0, MAX_BUFFER_CHUNKS, DEFAULT_BUFFER_CHUNKS)
        self._held_max = int(frames * REFERENCE_CHUNK_MS // chunk_ms)  # the same pre-roll in ms
        self._held = []  # the pre-roll: at most _held_max chunks, the oldest dropped first

    @classmethod
    def for_session(cls, options, config):
        """The gate this session needs, or None: `enable_vad` off, push-to-talk, or a pipeline
        whose `config.vad` says `enabled: false`."""
        if not options.enable_vad or config is None or config.push_to_talk:
            return None
        if config.vad.get("enabled") is False:
            return None
        return cls(options.chunk_ms, config.vad)

    @property
    def speaking(self):
        return self.detector.speaking

    def push(self, audio, level, zcr=None):
        """One chunk: returns (event or None, the chunks to send now, oldest first)."""
        event = self.detector.push(level, zcr)
        if not self.gate_audio:
            return event, [audio]
        if self.detector.speaking:
            out, self._held = self._held + [audio], []
            return event, out
        if event == VAD_END:
            self._held = []  # as the official SDK: the pre-roll starts afresh
        self._held.append(audio)
        if len(self._held) > self._held_max:
            self._held.pop(0)
        return event, []

    def end(self):
        """Speech ends now (mute, microphone stopped, disconnect): VAD_END if it was on."""
        self._held = []
        return VAD_END if self.detector.stop() else None
