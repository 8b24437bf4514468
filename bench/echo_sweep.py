"""Short answers' browser-processed echo, swept: how many open a user turn with no one talking.

`bench/echo.py` plays whole answers at two delays and two levels; this sweep is finer where the
echo gate was weakest: the demo agent's short answers (the welcome, "thanks", "hello"), whose
echo ends before the gate has learned it, each at three delays × three levels × `--seeds`
(the browser's capture processing is random: tests/support/echo.py), all processed the way a
browser's capture processing does, so the linear filter cancels only part of it. The real turn
detector listens behind the echo guard with its default settings; the figure is how many cases
start a turn (goal 0). Stream time only: the machine's load does not change it.

    python bench/echo_sweep.py [--seeds 1,2,3] [--workers 2]
"""

from __future__ import annotations

import argparse
import itertools
from concurrent.futures import ProcessPoolExecutor

from common import print_table, save

from server.agent.brain import WELCOME
from server.pipeline.echo import EchoGuard, EchoSettings
from server.pipeline.echo_gate import GateSettings
from tests.pipeline.test_echo import DUE_S, HELLO, THANKS
from tests.support.echo import microphone, turn_starts
from tests.support.speech import speak

ANSWERS = {"welcome": " ".join(WELCOME), "thanks": THANKS, "hello": HELLO}
DELAYS_S = (0.15, 0.3, 0.6)
LEVELS_DB = (-6, -10, -20)


def starts_of(case: tuple[str, float, int, int]) -> list[float]:
    """Stream times (s) of the user turns the echo alone started, in one case."""
    name, delay_s, level_db, seed = case
    answer = speak(ANSWERS[name])
    mic = microphone(answer, DUE_S, delay_s, level_db, processed=True, seed=seed)
    guard = EchoGuard(EchoSettings(gate=GateSettings(enabled=True)))
    guard.add_reference(answer, DUE_S)
    return [round(s, 2) for s in turn_starts(mic, guard)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    cases = list(itertools.product(ANSWERS, DELAYS_S, LEVELS_DB, seeds))
    with ProcessPoolExecutor(args.workers) as pool:
        results = dict(zip(cases, pool.map(starts_of, cases), strict=True))
    opened = {case: starts for case, starts in results.items() if starts}
    rows = [[name, sum(1 for c in opened if c[0] == name), sum(1 for c in cases if c[0] == name)]
            for name in ANSWERS]  # fmt: skip
    rows.append(["all", len(opened), len(cases)])
    title = "Short answers' processed echo: cases that opened a user turn"
    print_table(title, ["answer", "opened", "cases"], rows)
    for (name, delay_s, level_db, seed), starts in opened.items():
        print(f"  {name} at {delay_s} s, {level_db} dB, seed {seed}: turns at {starts} s")
    save("echo_sweep", {
        "seeds": seeds,
        "cases": len(cases),
        "opened": [{"answer": c[0], "delay_s": c[1], "level_db": c[2], "seed": c[3],
                    "starts_s": s} for c, s in opened.items()],
    })  # fmt: skip


if __name__ == "__main__":
    main()
