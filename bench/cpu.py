"""CPU per second of audio, stage by stage, of one session's audio path (in-process).

`bench/load.py` says how many sessions a node carries; this says where each one's CPU goes, so
a change to a stage can be weighed without a long, noisy load run. Two microphones, as the
load bench streams them (Piper speech, 16 kHz, 100 ms chunks):

- talker: the load bench's four questions, each with 0.3 s of silence before and 1.2 s after,
  repeated;
- listener: an open microphone in a quiet room (the load bench's room noise), as long.

Each chunk goes through the session's stages in order: pacing (`AudioPacer.admit`), 8 → 16 kHz
resampling (an 8 kHz microphone, the official SDK's rate), the echo guard with no agent audio
due, and the turn detector (Silero VAD on each 32 ms frame above the energy floor, the turn-end
model at pauses, the sentence-end lookup on the words it asks for). Speech recognition runs in
worker processes in the server: its cost is measured here by decoding the user turns' audio the
way a worker does (the default profile). A speculative answer's extra cost is one agent call
and one first-sentence synthesis per abandoned speculation (a pause the voice resumed after):
the synthesis of a first sentence is timed, the pauses and resumptions counted.

Times are the process's CPU time (`time.process_time`: every thread of it, so a math
library's helper threads count), per second of microphone audio. CPU time, not wall time: it
holds under contention (others share the cores), though a loaded machine runs slower per
instruction (caches), so state the load average beside it.

Each chunk arrives as a `client.audio` message: its decoding (JSON, then base64) is a stage of
its own, since a shorter chunk means more messages for the same audio (`--chunk-ms`: the demo
page sends 40 ms at 16 kHz, the official SDK 100 ms at 8 kHz; the stages after the decoding
see the load bench's 8 kHz audio either way).

    python bench/cpu.py [--repeat 3] [--chunk-ms 100]
"""

from __future__ import annotations

import argparse
import base64
import os
import time
from contextlib import contextmanager

from common import print_table, save

from layercode_client import protocol as p
from server.pipeline.audio import RATE, Resampler, resample
from server.pipeline.echo import EchoGuard
from server.pipeline.pacing import AudioPacer
from server.pipeline.stt import AudioPreparation, _hypothesis, new_decoder
from server.pipeline.turns import (
    SpeechAudio,
    SpeechEnded,
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
    TurnDetector,
    TurnSettings,
    WordsWanted,
)
from tests.support.speech import silence, speak

QUESTIONS = ["What time is it?", "Hello, how are you?", "Can you help me?", "Thank you."]
CHUNK_S = 0.1
FIRST_SENTENCE = "It is a quarter past ten."  # about what the demo agent says first


class Stages:
    """CPU seconds per stage name."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    @contextmanager
    def timing(self, name: str):
        start = time.process_time()
        try:
            yield
        finally:
            self.add(name, time.process_time() - start)

    def add(self, name: str, seconds: float) -> None:
        self.cpu[name] = self.cpu.get(name, 0.0) + seconds
        self.calls[name] = self.calls.get(name, 0) + 1


def talker_audio(repeat: int) -> bytes:
    return b"".join(silence(0.3) + speak(q) + silence(1.2) for q in QUESTIONS) * repeat


def room_noise(samples: int) -> bytes:
    import numpy as np

    return np.random.default_rng(7).normal(0, 60, samples).astype("<i2").tobytes()


def session_path(pcm16k: bytes, settings: TurnSettings) -> tuple[Stages, dict]:
    """One session's microphone through pacing, resampling, echo guard and turn detector."""
    stages = Stages()
    pcm8k = resample(pcm16k, RATE, 8000)
    pacer = AudioPacer(8000)
    resampler = Resampler(8000, RATE)
    echo = EchoGuard()
    detector = TurnDetector(settings)
    model = detector._model
    if model is not None:  # the model's own share of the detector's time
        asked = model.probability

        def timed(pcm: bytes) -> float:
            with stages.timing("turn-end model (asks)"):
                return asked(pcm)

        model.probability = timed
    turns, pauses, resumed, turn_audio, turn_pcm = 0, 0, 0, 0, bytearray()
    turn_pcms: list[bytes] = []
    words_asked: list[int] = []  # bytes of the turn when the words were asked
    step = int(8000 * CHUNK_S) * 2
    for offset in range(0, len(pcm8k), step):
        chunk = pcm8k[offset : offset + step]
        frame = p.ClientAudio(content=base64.b64encode(chunk).decode()).encode()
        with stages.timing("client.audio message (JSON, base64)"):  # as session.py decodes it
            message = p.decode(frame, allowed=p.CLIENT_MESSAGES)
            chunk = base64.b64decode(message.content, validate=True)
        with stages.timing("pacing"):
            pacer.admit(len(chunk) // 2)
        with stages.timing("resample 8->16 kHz"):
            pcm = resampler.process(chunk)
        with stages.timing("echo guard (no agent audio)"):
            pcm = echo.clean(pcm)
        start = time.process_time()
        events = detector.feed(pcm)
        while events:
            more = []
            for event in events:
                if isinstance(event, SpeechStarted):
                    turns += 1
                    turn_pcm = bytearray(event.preroll)
                elif isinstance(event, SpeechAudio):
                    turn_pcm += event.pcm
                elif isinstance(event, SpeechPaused):
                    pauses += 1  # a speculative answer may start here
                elif isinstance(event, SpeechResumed):
                    resumed += 1  # ... and be abandoned here
                elif isinstance(event, WordsWanted):
                    words_asked.append(len(turn_pcm))
                    with stages.timing("sentence-end words"):
                        detector.hint("what time is it", event.look)
                    more += detector.feed(b"")
                elif isinstance(event, SpeechEnded):
                    turn_pcms.append(bytes(turn_pcm))
                    turn_audio += len(turn_pcm)
            events = more
        own = time.process_time() - start
        stages.add("turn detector (VAD, rules)", own)
    model_cpu = stages.cpu.get("turn-end model (asks)", 0.0)
    stages.cpu["turn detector (VAD, rules)"] -= model_cpu
    info = {"turns": turns, "model_asks": stages.calls.get("turn-end model (asks)", 0),
            "words_asked": len(words_asked), "pauses": pauses, "resumed": resumed,
            "turn_pcms": turn_pcms}  # fmt: skip
    return stages, info


def recognition(turn_pcms: list[bytes], stages: Stages) -> None:
    """What a worker does with each user turn's audio (stt.py `serve_decoders`)."""
    decoder = new_decoder()
    piece = RATE * 2 // 10
    for pcm in turn_pcms:
        prepare = AudioPreparation()
        decoder.start_utt()
        for offset in range(0, len(pcm), piece):
            with stages.timing("speech recognition (worker)"):
                audio = prepare.process(pcm[offset : offset + piece])
                if audio:
                    decoder.process_raw(audio, False, False)
        with stages.timing("speech recognition (worker)"):
            tail = prepare.process(b"", final=True)
            if tail:
                decoder.process_raw(tail, False, False)
            decoder.end_utt()
            _hypothesis(decoder)
            decoder.reinit_feat()


def first_sentence_cpu() -> float:
    from server.pipeline.tts.piper import PiperTTS

    tts = PiperTTS(workers=1)
    tts.warm()
    tts._synthesize(FIRST_SENTENCE)
    start = time.process_time()
    for _ in range(3):
        tts._synthesize(FIRST_SENTENCE)
    tts.close()
    return (time.process_time() - start) / 3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="times the four questions")
    parser.add_argument(
        "--chunk-ms", type=int, default=100, help="the microphone's chunk, 10-1000 ms"
    )
    args = parser.parse_args()
    global CHUNK_S
    CHUNK_S = max(10, min(1000, args.chunk_ms)) / 1000
    settings = TurnSettings(vad="silero", end_model="smart-turn", model_wait=True)
    talker = talker_audio(args.repeat)
    listener = room_noise(len(talker) // 2)
    seconds = len(talker) / 2 / RATE
    load_before = os.getloadavg()
    TurnDetector(settings)  # load the models before anything is timed
    results, rows = {}, {}
    for name, pcm in (("talker", talker), ("listener", listener)):
        stages, info = session_path(pcm, settings)
        if name == "talker":
            recognition(info["turn_pcms"], stages)
        per_s = {stage: cpu / seconds * 1000 for stage, cpu in stages.cpu.items()}
        per_s["total"] = sum(per_s.values())
        results[name] = {"ms_cpu_per_audio_s": per_s, "audio_s": seconds,
                         "turns": info["turns"], "model_asks": info["model_asks"],
                         "words_asked": info["words_asked"], "pauses": info["pauses"],
                         "resumed_after_pause": info["resumed"]}  # fmt: skip
        for stage, value in per_s.items():
            rows.setdefault(stage, {})[name] = value
    speculation = first_sentence_cpu() * 1000
    load_after = os.getloadavg()
    print_table(
        f"CPU ms per second of microphone audio ({seconds:.0f} s each, {CHUNK_S * 1000:.0f} ms "
        "chunks, in-process)",
        ["stage", "talker", "listener"],
        [[stage, f"{v.get('talker', 0):.2f}", f"{v.get('listener', 0):.2f}"]
         for stage, v in rows.items()],
    )  # fmt: skip
    talk = results["talker"]
    print(f"talker: {talk['turns']} turns, {talk['model_asks']} turn-end model asks "
          f"({talk['model_asks'] / max(1, talk['turns']):.2f} per turn), "
          f"{talk['words_asked']} sentence-end look-ups; {talk['pauses']} pauses (a speculation "
          f"may start), {talk['resumed_after_pause']} resumed after one (abandoned)")  # fmt: skip
    print(
        f"an abandoned speculation costs one first-sentence synthesis: {speculation:.0f} ms CPU "
        "(and an agent call)"
    )
    print("load average (1, 5, 15 min): before "
          f"{' '.join(f'{x:.2f}' for x in load_before)}, after "
          f"{' '.join(f'{x:.2f}' for x in load_after)}")  # fmt: skip
    save("cpu", {**results, "speculation_first_sentence_ms_cpu": speculation,
                 "blas_threads_env": os.environ.get("OPENBLAS_NUM_THREADS"),
                 "load_average": {"before": load_before, "after": load_after}})  # fmt: skip


if __name__ == "__main__":
    main()
