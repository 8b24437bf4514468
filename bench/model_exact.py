"""The turn-end model's exact int8 sums against its fast kernels, on this machine's CPU.

On x86 CPUs without VNNI onnxruntime's fast int8 kernels add pairs of products in 16 bits that
saturate, so the same audio can score on the other side of a threshold; exact sums
(`session.x64quantprecision`, TURN_END_MODEL_EXACT) avoid that at a price in CPU
(server/pipeline/endpointing.py `_session`). The saturation was found under qemu's emulated
Haswell; this bench measures both on the CPU it runs on: the CPU time of one look each way
and how many looks change side of the thresholds the turn-end rules use.

Looks: the 52 finished questions of tests/support/sentences.py with 96 ms of silence after the
voice (the first look), and the 24 sentences with a hesitation inside at 96, 256 and 450 ms
into their pause (the three looks a pause can get). Piper speech only (no recorded speech
offline). Each look runs both ways, alternately, on one thread; CPU is that thread's own time.

    python bench/model_exact.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from common import median, p95, print_table, save

from server.pipeline import endpointing
from tests.support.sentences import ASKED, PAUSED
from tests.support.speech import silence, speak, voiced_span, with_pause

RATE = 16000
THRESHOLDS = (0.5, 0.6, 0.8, 0.9, 0.95)  # the bars the turn-end rules compare scores with
LOOKS_IN_A_PAUSE_MS = (96, 256, 450)


def looks() -> list[tuple[str, bytes]]:
    """(label, the turn's audio up to the look) for every look of both sets."""
    found = []
    for text in ASKED:
        pcm = speak(text)
        end = int(voiced_span(pcm)[1] * RATE) * 2
        found.append((f"{text} @96", pcm[:end] + silence(0.096)))
    for text in PAUSED:
        pcm, pause_s = with_pause(text, 0.6)
        start = int(pause_s * RATE) * 2
        for ms in LOOKS_IN_A_PAUSE_MS:
            found.append((f"{text} @{ms}", pcm[:start] + silence(ms / 1000)))
    return found


def score(session, features: np.ndarray) -> tuple[float, float]:
    """(probability, CPU seconds of this thread)."""
    cpu = time.thread_time()
    (logits,) = session.run(None, {"input_features": features})
    return float(np.asarray(logits).reshape(-1)[0]), time.thread_time() - cpu


def cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("flags"):
                    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
                    return [flag for flag in line.split() if flag in wanted]
    except OSError:
        pass
    return []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="times each look runs each way")
    args = parser.parse_args()

    sessions = {
        "fast": endpointing._new_session(1, exact=False),
        "exact": endpointing._new_session(1, exact=True),
    }
    probe = {"input_features": endpointing.probe_features()}
    probe_scores = {
        name: float(s.run(None, probe)[0].reshape(-1)[0]) for name, s in sessions.items()
    }
    chosen = endpointing._session(1, "auto")[1]
    all_looks = looks()
    print(f"{len(all_looks)} looks, {args.rounds} rounds each way; CPU flags: {cpu_flags()}")
    scores: dict[str, list[float]] = {name: [] for name in sessions}
    cpu_ms: dict[str, list[float]] = {name: [] for name in sessions}
    for n, (_, pcm) in enumerate(all_looks):
        features = endpointing.input_features(pcm)
        order = list(sessions) if n % 2 == 0 else list(reversed(sessions))
        for round_ in range(args.rounds):
            for name in order:
                probability, cpu = score(sessions[name], features)
                cpu_ms[name].append(cpu * 1000)
                if round_ == 0:
                    scores[name].append(probability)
    fast, exact = np.array(scores["fast"]), np.array(scores["exact"])
    differ = np.abs(fast - exact)
    sides = {
        f"{bar}": int(np.sum((fast > bar) != (exact > bar))) for bar in THRESHOLDS
    }  # fmt: skip
    worst = int(np.argmax(differ))
    print_table(
        "CPU ms of one look (one thread), p50 / p95",
        ["sums", "p50", "p95"],
        [[name, f"{median(v):.1f}", f"{p95(v):.1f}"] for name, v in cpu_ms.items()],
    )
    ratio = median(cpu_ms["exact"]) / median(cpu_ms["fast"])
    print(f"exact / fast CPU (p50): {ratio:.2f}×")
    print(f"scores: identical in {int(np.sum(differ == 0))} of {len(differ)} looks; "
          f"largest difference {differ[worst]:.3f} ({all_looks[worst][0]!r}: fast "
          f"{fast[worst]:.3f}, exact {exact[worst]:.3f})")  # fmt: skip
    print("looks on the other side of each bar (fast against exact): "
          + ", ".join(f"{bar}: {count}" for bar, count in sides.items()))  # fmt: skip
    print(
        f"the probe: fast {probe_scores['fast']:.3f}, exact {probe_scores['exact']:.3f}; "
        f"TURN_END_MODEL_EXACT=auto chose {'exact' if chosen else 'fast'} sums here"
    )
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    save("model_exact", {
        "cpu_flags": cpu_flags(), "looks": len(all_looks), "rounds": args.rounds,
        "cpu_ms": {name: {"p50": median(v), "p95": p95(v)} for name, v in cpu_ms.items()},
        "exact_over_fast_cpu": ratio, "identical": int(np.sum(differ == 0)),
        "largest_difference": float(differ[worst]), "other_side_of": sides,
        "probe": probe_scores, "auto_chose_exact": chosen,
        "scores": [{"look": label, "fast": f, "exact": e} for (label, _), f, e
                   in zip(all_looks, fast.tolist(), exact.tolist(), strict=True)],
        "load_average": os.getloadavg(),
    })  # fmt: skip


if __name__ == "__main__":
    main()
