"""Turn detection: where the user's speech starts and where their turn ends.

webrtcvad classifies 20 ms frames as voiced or not; a frame must also be louder than an energy
floor, so steady hum or faint noise never opens a turn. A turn starts after `start_ms` of
mostly-voiced frames and ends after `end_silence_ms` without voice (the endpointing wait, the
largest part of voice-to-voice latency). The audio before the start is kept as pre-roll so the
recogniser hears the first syllable.

Times are stream seconds: samples fed so far / 16000. `SpeechEnded.speech_end_s` is where the
voice stopped, not when the silence timer ran out, so latency is measured from the user's
last sound.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

import webrtcvad

from .audio import RATE, rms


@dataclass
class TurnSettings:
    frame_ms: int = 20
    aggressiveness: int = 2  # webrtcvad 0 (permissive) … 3 (strict)
    start_ms: int = 120  # voiced audio within the start window that opens a turn
    start_window_ms: int = 200
    end_silence_ms: int = 400  # silence that ends a turn
    preroll_ms: int = 300  # audio kept from before the start
    min_rms: float = 0.004  # energy floor (full scale 1.0) a voiced frame must pass

    @property
    def frame_bytes(self) -> int:
        return RATE * self.frame_ms // 1000 * 2


@dataclass
class SpeechStarted:
    preroll: bytes  # audio from before the start through the frames that triggered it
    start_s: float


@dataclass
class SpeechAudio:
    pcm: bytes


@dataclass
class SpeechEnded:
    speech_end_s: float


Event = SpeechStarted | SpeechAudio | SpeechEnded


class TurnDetector:
    def __init__(self, settings: TurnSettings | None = None):
        self.settings = settings or TurnSettings()
        self._vad = webrtcvad.Vad(self.settings.aggressiveness)
        self.reset()

    def reset(self) -> None:
        s = self.settings
        self._partial = b""
        self._frames_fed = 0
        self._recent: collections.deque[tuple[bytes, bool]] = collections.deque(
            maxlen=max(1, (s.preroll_ms + s.start_window_ms) // s.frame_ms)
        )
        self._window: collections.deque[bool] = collections.deque(
            maxlen=max(1, s.start_window_ms // s.frame_ms)
        )
        self._in_speech = False
        self._silent_frames = 0
        self._last_voice_end_s = 0.0

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    def _is_voiced(self, frame: bytes) -> bool:
        return rms(frame) >= self.settings.min_rms and self._vad.is_speech(frame, RATE)

    def feed(self, pcm: bytes) -> list[Event]:
        s = self.settings
        data = self._partial + pcm
        size = s.frame_bytes
        whole = len(data) - len(data) % size
        self._partial = data[whole:]
        events: list[Event] = []
        audio = bytearray()  # speech audio of this call, flushed before any boundary event
        for offset in range(0, whole, size):
            frame = data[offset : offset + size]
            voiced = self._is_voiced(frame)
            self._frames_fed += 1
            frame_end_s = self._frames_fed * s.frame_ms / 1000
            if not self._in_speech:
                self._recent.append((frame, voiced))
                self._window.append(voiced)
                if sum(self._window) * s.frame_ms >= s.start_ms:
                    self._in_speech = True
                    self._silent_frames = 0
                    self._last_voice_end_s = frame_end_s
                    first_voiced = len(self._window) - list(self._window).index(True)
                    start_s = frame_end_s - first_voiced * s.frame_ms / 1000
                    preroll = b"".join(f for f, _ in self._recent)
                    self._recent.clear()
                    self._window.clear()
                    events.append(SpeechStarted(preroll=preroll, start_s=round(start_s, 3)))
                continue
            audio += frame
            if voiced:
                self._silent_frames = 0
                self._last_voice_end_s = frame_end_s
            else:
                self._silent_frames += 1
                if self._silent_frames * s.frame_ms >= s.end_silence_ms:
                    events.append(SpeechAudio(bytes(audio)))
                    audio.clear()
                    events += self._end()
        if audio:
            events.append(SpeechAudio(bytes(audio)))
        return events

    def _end(self) -> list[Event]:
        self._in_speech = False
        self._silent_frames = 0
        return [SpeechEnded(speech_end_s=round(self._last_voice_end_s, 3))]

    def force_end(self) -> list[SpeechEnded]:
        """End the turn in progress now (the client's own VAD said the speech is over)."""
        if not self._in_speech:
            return []
        return self._end()
