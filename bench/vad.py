"""Voice activity: today's webrtcvad (with its energy floor) against Silero VAD, same audio.

- False starts: noise-only audio (synthetic: white, pink and brown noise, mains hum, keyboard
  clicks, a chord of steady tones), 30 s of each at two levels; a false start is a turn the
  start rule opens. Reported per minute of audio.
- Missed starts: 20 questions (Piper, synthetic: no recorded speech offline) with 1.5 s of
  silence between them, mixed into the same noises at 10 dB SNR; a miss is a question during
  which no turn opened. Also the start delay (first voiced sound → turn opened), p50.

Both classifiers feed the same start/end rule as `TurnDetector` (120 ms voiced within 200 ms
opens a turn, 400 ms unvoiced closes it): webrtcvad decides per 20 ms frame (and the frame
must pass the energy floor, as in the server), Silero per 32 ms (512 samples, its only size
at 16 kHz) with probability > 0.5. Silero comes from the pipecat-ai wheel (`silero_vad.onnx`,
the same install as the turn-end model), run with onnxruntime on one thread; its cost per
second of audio is printed. Ran on a shared 2-core machine under contention.

    python bench/vad.py [--seconds 30]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import webrtcvad
from common import median, print_table, save

from server.pipeline.audio import rms
from server.pipeline.turns import TurnSettings
from server.pipeline.vad import FRAME_SAMPLES, SileroVad
from tests.support.sentences import ASKED
from tests.support.speech import silence, speak, voiced_span

RATE = 16000
SETTINGS = TurnSettings()


class WebrtcFrames:
    name = "webrtcvad + energy floor (today)"
    frame = RATE * SETTINGS.frame_ms // 1000

    def __init__(self) -> None:
        self._vad = webrtcvad.Vad(SETTINGS.aggressiveness)

    def voiced(self, frame: bytes) -> bool:
        return rms(frame) >= SETTINGS.min_rms and self._vad.is_speech(frame, RATE)


class SileroFrames:
    """Silero VAD v5 (server/pipeline/vad.py) on 512-sample frames."""

    name = "Silero VAD (onnx)"
    frame = FRAME_SAMPLES

    def __init__(self) -> None:
        self._vad = SileroVad()

    def voiced(self, frame: bytes) -> bool:
        return self._vad.is_speech(frame)


def turn_starts(classifier, pcm: bytes) -> tuple[list[float], float]:
    """Seconds at which the start rule opens a turn (closing it after 400 ms unvoiced), and
    the share of the audio spent inside turns."""
    step = classifier.frame
    frame_ms = 1000 * step / RATE
    window: list[bool] = []
    size = max(1, round(SETTINGS.start_window_ms / frame_ms))
    in_turn, unvoiced_ms, starts, inside = False, 0.0, [], 0
    frames = len(pcm) // 2 // step
    for index in range(frames):
        voiced = classifier.voiced(pcm[index * step * 2 : (index + 1) * step * 2])
        end_s = (index + 1) * step / RATE
        if not in_turn:
            window = [*window[-(size - 1) :], voiced] if size > 1 else [voiced]
            if sum(window) * frame_ms >= SETTINGS.start_ms:
                in_turn, unvoiced_ms, window = True, 0.0, []
                starts.append(end_s)
            continue
        inside += 1
        unvoiced_ms = 0.0 if voiced else unvoiced_ms + frame_ms
        if unvoiced_ms >= SETTINGS.end_silence_ms:
            in_turn = False
    return starts, inside / max(1, frames)


def noises(seconds: float) -> dict[str, np.ndarray]:
    """Unit-RMS noise-only signals, the same every run."""
    rng = np.random.default_rng(7)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE

    def coloured(power: float) -> np.ndarray:
        spectrum = np.fft.rfft(rng.normal(size=n))
        spectrum /= np.maximum(np.arange(spectrum.size), 1) ** (power / 2)
        return np.fft.irfft(spectrum, n)

    clicks = np.zeros(n)
    for at in rng.integers(0, n - 400, size=int(seconds * 6)):  # ~6 key presses a second
        clicks[at : at + 400] += rng.normal(size=400) * np.exp(-np.arange(400) / 60)
    chord = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6, 440.0))
    hum = sum(np.sin(2 * np.pi * 50 * k * t) / k for k in range(1, 8))
    signals = {
        "white": rng.normal(size=n),
        "pink": coloured(1.0),
        "brown": coloured(2.0),
        "hum": hum,
        "clicks": clicks,
        "tones": chord,
    }
    return {name: s / np.sqrt(np.mean(s**2)) for name, s in signals.items()}


def to_pcm(x: np.ndarray) -> bytes:
    return np.clip(np.rint(x), -32768, 32767).astype("<i2").tobytes()


def questions(count: int) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """`count` questions with 1.5 s of silence around each; their voiced spans in seconds."""
    parts, spans, at = [], [], 0.0
    for text in ASKED[:count]:
        speech = silence(1.5) + speak(text)
        start, end = voiced_span(speech)
        spans.append((at + start, at + end))
        parts.append(speech)
        at += len(speech) / 2 / RATE
    pcm = b"".join(parts) + silence(1.5)
    return np.frombuffer(pcm, dtype="<i2").astype(np.float64), spans


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--questions", type=int, default=20)
    args = parser.parse_args()
    classifiers = [WebrtcFrames, SileroFrames]
    background = noises(args.seconds)
    speech, spans = questions(args.questions)
    voiced_power = np.mean(
        np.concatenate([speech[int(a * RATE) : int(b * RATE)] for a, b in spans]) ** 2
    )
    rows, results = [], {}
    for make in classifiers:
        name = make.name
        results[name] = {"false_starts": {}, "in_turn_pct": {}, "missed": {}, "start_delay_ms": {}}
        spent = audio_s = 0.0
        for noise, signal in background.items():
            for level_dbfs in (-45, -30):
                pcm = to_pcm(signal * 32768 * 10 ** (level_dbfs / 20))
                started = time.process_time()
                starts, inside = turn_starts(make(), pcm)
                spent += time.process_time() - started
                audio_s += len(pcm) / 2 / RATE
                per_minute = len(starts) / (args.seconds / 60)
                key = f"{noise} {level_dbfs} dBFS"
                results[name]["false_starts"][key] = round(per_minute, 1)
                results[name]["in_turn_pct"][key] = round(100 * inside, 1)
            mixed = speech + np.resize(signal, speech.size) * np.sqrt(voiced_power / 10)
            starts, _ = turn_starts(make(), to_pcm(mixed))
            missed, delays = 0, []
            for begin, end in spans:
                inside = [s for s in starts if begin - 0.1 <= s <= end]
                if inside:
                    delays.append(1000 * (inside[0] - begin))
                else:
                    missed += 1
            results[name]["missed"][noise] = missed
            results[name]["start_delay_ms"][noise] = round(median(delays), 1)
        results[name]["cpu_per_audio_s"] = round(spent / audio_s, 4)

    def row(label: str, figure: str, key: str) -> list:
        return [label] + [results[m.name][figure][key] for m in classifiers]

    for noise in background:
        for level_dbfs in (-45, -30):
            key = f"{noise} {level_dbfs} dBFS"
            rows.append(row(f"false starts/min, {key}", "false_starts", key))
            rows.append(row(f"  time inside a turn %, {key}", "in_turn_pct", key))
        rows.append(row(f"missed of {len(spans)} at 10 dB SNR, {noise}", "missed", noise))
        rows.append(row(f"start delay p50 ms, {noise}", "start_delay_ms", noise))
    rows.append(
        ["CPU ms per audio s"]
        + [f"{1000 * results[m.name]['cpu_per_audio_s']:.1f}" for m in classifiers]
    )
    print_table(
        "Voice activity on synthetic audio (noise-only, and Piper questions in noise)",
        ["measure"] + [m.name for m in classifiers],
        [[r[0], *(f"{c:.1f}" if isinstance(c, float) else str(c) for c in r[1:])] for r in rows],
    )
    save(
        "vad",
        {
            "note": "synthetic audio only (no recorded speech or noise offline); ran on a "
            "shared 2-core machine under contention",
            "seconds_per_noise": args.seconds,
            "questions": len(spans),
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
