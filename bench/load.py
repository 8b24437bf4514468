"""How many sessions one 2-core machine carries: concurrent talkers, and connected listeners.

The server runs as its own process (as users run it), so its CPU and memory are measured apart
from the simulated clients. Each simulated client is a Python WebSocket client streaming real
speech (made with Piper) in real time, 100 ms per chunk:

- talking: N clients each hold a conversation — speak a question, wait for the answer, let
  it "play" for its length, pause, speak again — started at random offsets, as people do.
  The figure is the p95 voice-to-voice latency (end of speech → first agent audio) compared
  with a lone session measured in the same run: the largest N within 1.5× of it.
- connected: M clients stream room noise continuously (a microphone left open) while one
  client talks; its latency against the lone figure, and the server's CPU and memory.

With `--nodes 1,2` the talking levels run twice in the same run, side by side: on one node as
`./dev start` runs it (keys in memory, history in SQLite), then on two nodes behind HAProxy
sharing a real Redis and PostgreSQL (tests/support/cluster.py: `PUBLIC_URL` is the balancer,
so every authorize and every socket goes through it). Both share this machine's cores, so the
comparison shows what the balancer and the shared stores cost, not more capacity: expect
about the same figures. The CPU column of a cluster sums its nodes, HAProxy, Redis and
PostgreSQL (and their children).

A warm-up at the highest level comes first (its figure is printed, not compared): the server
grows its speech-recogniser pool to the load it meets, once. Every level measures at least
`--samples` turns (a lone session talks longer than each of ten), so the lone p95 the others
are compared with is not the maximum of a handful of turns. Each answer's playback gaps (audio
arriving after what came before it has played) are counted too.

With `--compare` the talking levels run twice on one node, side by side in the same run: with
the scheduling before the queues were traced (`PREVIOUS_SCHEDULING`: first come, first served
in the recogniser's workers, at the server's priority, the words asked after the turn-end
model's answer), then as
configured. Every level also prints the trace of the shared queues (server/pipeline/timing.py
`STAGES`): how long each turn's requests waited for the turn-end model's thread, a recogniser
worker and a Piper thread, against how long they worked.

    python bench/load.py [--talkers 1,4,8,10,12,14] [--connected 50] [--turns 4]
                         [--samples 20] [--no-warmup] [--nodes 1,2] [--compare]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
from common import ROOT, median, p95, print_table, save

from server.pipeline.timing import STAGES
from tests.support.cluster import cluster
from tests.support.engines import engine_folder, postgres_server, redis_server, stop_process
from tests.support.servers import free_port
from tests.support.speech import silence, speak, voiced_span
from tests.support.voice_client import VoiceClient

QUESTIONS = ["What time is it?", "Hello, how are you?", "Can you help me?", "Thank you."]
TOLERANCE = 1.5
SPLITS: list[dict] = []  # the server's per-turn split, for the level being measured
GAPS: list[float] = []  # per turn, ms of silence inside the answer (audio arriving too late)
SPLIT_NAMES = ("endpointing_ms", "transcript_ms", "webhook_ms", "tts_first_audio_ms")
START_TIMEOUT_S = 180.0  # loading the speech models on a busy machine
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# The bench is one client address opening more sessions than a node's defaults allow.
BENCH_ENV = {"LOG_LEVEL": "warning", "MAX_SESSIONS": "1000", "AUTHORIZE_RATE_LIMIT": "100000"}


class ProcessTrees:
    """CPU and memory of some processes and their children (recursively), from /proc."""

    def __init__(self, roots, url: str = ""):
        self.roots = roots  # callable: the root pids now
        self.url = url  # where the clients connect

    def _processes(self) -> list[int]:
        found, todo = [], list(self.roots())
        while todo:
            pid = todo.pop()
            found.append(pid)
            for children in Path(f"/proc/{pid}/task").glob("*/children"):
                with contextlib.suppress(FileNotFoundError):
                    todo.extend(int(child) for child in children.read_text().split())
        return found

    def _summed(self, name: str, value) -> int:
        """`value(text of /proc/<pid>/<name>)` summed over the processes."""
        total = 0
        for pid in self._processes():
            try:
                total += value(Path(f"/proc/{pid}/{name}").read_text())
            except (FileNotFoundError, ProcessLookupError):
                continue  # a worker that has just exited
        return total

    def cpu_seconds(self) -> float:
        """User + system time of the processes, the cores' share of the load."""

        def ticks(stat: str) -> int:
            fields = stat.rsplit(")", 1)[1].split()
            return int(fields[11]) + int(fields[12])

        return self._summed("stat", ticks) / CLOCK_TICKS

    def rss_mib(self) -> float:
        pages = self._summed("statm", lambda statm: int(statm.split()[1]))
        return pages * PAGE / 2**20


SERVER_NICE = os.nice(0)  # the priority the bench started with, before its clients yield


def server_priority() -> None:
    """In the server's child before it runs: the priority the bench started with, not the
    clients' lowered one (run as root, as CI does; otherwise it stays lowered). On a shared
    machine a server at the clients' priority is starved by everyone else's work."""
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, SERVER_NICE)


class ServerProcess(ProcessTrees):
    """`python -m server` on a free port: one node, keys in memory and history in SQLite."""

    def __init__(self, data_dir: str, log_file: Path | None = None, cwd: Path = ROOT,
                 env: dict[str, str] | None = None):  # fmt: skip
        super().__init__(lambda: [self.process.pid])
        self.port = free_port()
        env = {**os.environ, "DATA_DIR": data_dir, **BENCH_ENV, **(env or {})}
        env.pop("LAYERCODE_API_KEY", None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "server", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=cwd,
            env=env,
            preexec_fn=server_priority,
            stdout=log_file.open("w") if log_file else subprocess.DEVNULL,
            stderr=subprocess.STDOUT if log_file else None,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the server did not start in {START_TIMEOUT_S:g} s")

    def own_rss_mib(self) -> float:
        """The server process alone, without its speech-recogniser workers."""
        statm = Path(f"/proc/{self.process.pid}/statm").read_text()
        return int(statm.split()[1]) * PAGE / 2**20

    def stop(self) -> None:
        stop_process(self.process)  # SIGTERM, then SIGKILL if it does not end


@contextlib.contextmanager
def one_node(env: dict[str, str] | None = None) -> Iterator[ServerProcess]:
    with tempfile.TemporaryDirectory() as data:
        server = ServerProcess(data, env=env)
        try:
            yield server
        finally:
            server.stop()


@contextlib.contextmanager
def nodes_behind_haproxy(count: int) -> Iterator[ProcessTrees]:
    """`count` nodes behind HAProxy on a real Redis and PostgreSQL, with the single node's
    voice (the cluster's tests use espeak), measured together with the engines."""
    with (
        engine_folder("lc-load-") as folder,
        redis_server() as redis,
        postgres_server() as postgres,
        cluster(
            folder,
            redis_url=redis.url,
            database_url=postgres.create_database(),
            nodes=count,
            env={**BENCH_ENV, "TTS_ENGINE": os.environ.get("TTS_ENGINE", "piper")},
        ) as (balancer, nodes),
    ):
        engines = [redis.process, postgres.process, balancer.process]
        yield ProcessTrees(
            lambda: [p.pid for p in engines + [n.process for n in nodes]], balancer.url
        )


def room_noise(seconds: float) -> bytes:
    """Quiet broadband noise, as an open microphone in a quiet room picks up."""
    rng = np.random.default_rng(7)
    return (rng.normal(0, 60, int(seconds * 16000))).astype("<i2").tobytes()


async def converse(url: str, turns: int, start_delay: float) -> list[float]:
    latencies = []
    async with VoiceClient(url) as client:
        await client.connect()
        welcome = await client.wait_for("turn.start", lambda m: m["role"] == "assistant")
        await client.finish_playback(welcome.message["turn_id"], timeout=60)
        await asyncio.sleep(start_delay)
        for n in range(turns):
            speech = speak(QUESTIONS[n % len(QUESTIONS)])
            mark = len(client.received)
            started = await client.stream(silence(0.3) + speech + silence(1.2))
            speech_end = started + 0.3 + voiced_span(speech)[1]
            first = await client.wait_for("response.audio", after=mark, timeout=60)
            latencies.append((first.at - speech_end) * 1000)
            end = await client.wait_for("response.end", after=mark, timeout=60)
            SPLITS.append(end.message.get("timings") or {})
            GAPS.append(playback_gap_ms(client.received[mark:], end.message["turn_id"]))
            played = len(client.audio_of_turn(end.message["turn_id"])) / 32000
            await asyncio.sleep(max(0.0, played - (time.monotonic() - first.at)))
            await client.send({"type": "trigger.response.audio.replay_finished"})
            await asyncio.sleep(random.uniform(0.2, 1.0))
    return latencies


def playback_gap_ms(received: list, turn_id: str) -> float:
    """Silence a listener would hear inside the answer: audio that arrived after the audio
    before it had finished playing (playing from the first chunk's arrival)."""
    gap, playing_until = 0.0, None
    for item in received:
        if item.type != "response.audio" or item.message.get("turn_id") != turn_id:
            continue
        seconds = len(base64.b64decode(item.message["content"])) / 32000
        if playing_until is not None and item.at > playing_until:
            gap += item.at - playing_until
        playing_until = max(playing_until or item.at, item.at) + seconds
    return gap * 1000


async def keep_streaming(url: str, stop: asyncio.Event, opened: list) -> None:
    noise = room_noise(0.1)
    async with VoiceClient(url) as client:
        await client.connect()
        opened.append(client)
        while not stop.is_set():
            await client.stream(noise)


async def talking(url: str, n: int, turns: int) -> list[float]:
    delays = [random.uniform(0, 2.5) for _ in range(n)]
    results = await asyncio.gather(*(converse(url, turns, d) for d in delays))
    return [ms for session in results for ms in session]


async def connected(url: str, m: int, turns: int) -> tuple[list[float], int]:
    stop = asyncio.Event()
    opened: list = []
    streams = [asyncio.create_task(keep_streaming(url, stop, opened)) for _ in range(m)]
    while len(opened) < m:
        await asyncio.sleep(0.1)
    try:
        latencies = await converse(url, turns, 1.0)
    finally:
        stop.set()
        await asyncio.gather(*streams, return_exceptions=True)
    return latencies, len(opened)


CLIENT_CPU: list[float] = []  # the simulated clients' own CPU %, per level, for the record


def measured(server: ServerProcess, run) -> tuple[object, float, float]:
    cpu0, own0, t0 = server.cpu_seconds(), sum(os.times()[:2]), time.monotonic()
    result = asyncio.run(run)
    elapsed = time.monotonic() - t0
    cpu = (server.cpu_seconds() - cpu0) / elapsed * 100
    CLIENT_CPU.append((sum(os.times()[:2]) - own0) / elapsed * 100)
    return result, cpu, server.rss_mib()


# `--compare`: the scheduling before the queues were traced (docs/scaling.md), as a reference
PREVIOUS_SCHEDULING = {
    "STT_PRIORITY_LANE": "false",
    "TURN_END_RULES_OFF": "words-at-look",
    "STT_WORKER_NICE": "0",
}
PREVIOUS = 0  # the reference's key among the deployments
COMPARING = "--compare" in sys.argv


def label(nodes: int) -> str:
    if nodes == PREVIOUS:
        return "1 node, previous scheduling"
    if nodes == 1 and COMPARING:
        return "1 node, as configured"
    if nodes == 1:
        return "1 node, memory + SQLite"
    return f"{nodes} nodes + HAProxy, Redis + PostgreSQL"


def talking_levels(server, levels: list[int], args) -> dict:
    """The talking levels on one deployment: warm-up, then each level against the lone p95."""
    rows, talk_runs, lone, warmup = [], {}, None, None
    if args.warmup:
        # The server sizes its recogniser pool to the load it meets (a new worker process
        # costs ~1 s of CPU once); measure it as it runs after that first burst.
        latencies, cpu, _ = measured(server, talking(server.url, max(levels), 2))
        warmup = {"talking": max(levels), "p95_ms": p95(latencies), "cpu_percent": cpu}
        print(f"  warm-up, {max(levels)} talking (not compared): p95 "
              f"{warmup['p95_ms']:.0f} ms, server CPU {cpu:.0f}%")  # fmt: skip
    for n in levels:
        SPLITS.clear()
        GAPS.clear()
        turns = max(args.turns, -(-args.samples // n))
        latencies, cpu, rss = measured(server, talking(server.url, n, turns))
        figure = p95(latencies)
        split = {k: p95([t[k] for t in SPLITS if k in t]) for k in SPLIT_NAMES}
        lone = lone or figure
        ok = figure <= TOLERANCE * lone
        gaps = {"answers": len(GAPS), "with_gap_over_50ms": sum(g > 50 for g in GAPS),
                "worst_ms": max(GAPS, default=0.0)}  # fmt: skip
        talk_runs[n] = {"p95_ms": figure, "p50_ms": median(latencies), "cpu_percent": cpu,
                        "rss_mib": rss, "ok": ok, "turns": len(latencies),
                        "p95_split_ms": split, "playback_gaps": gaps}  # fmt: skip
        verdict = "yes" if ok else "no"
        rows.append([f"{n} talking", figure, f"{figure / lone:.2f}", cpu, rss, verdict])
        parts = ", ".join(f"{k[:-3]} {v:.0f}" for k, v in split.items())
        print(f"  {n:3d} talking: p95 {figure:.0f} ms, server CPU {cpu:.0f}%, "
              f"clients CPU {CLIENT_CPU[-1]:.0f}% ({parts}); answers with a gap "
              f"> 50 ms: {gaps['with_gap_over_50ms']}/{gaps['answers']}, "
              f"worst {gaps['worst_ms']:.0f} ms")  # fmt: skip
        talk_runs[n]["queues_ms"] = queues = queue_trace(SPLITS)
        print("        queue / work, p50 / p95 ms: " + "; ".join(
            f"{name} {q[0]:.0f} / {q[1]:.0f}" for name, q in queues.items()))  # fmt: skip
    best = 0  # the largest N such that it and every smaller level measured kept within
    for n in sorted(talk_runs):
        if not talk_runs[n]["ok"]:
            break
        best = n
    return {"rows": rows, "talking": talk_runs, "lone_p95_ms": lone, "warmup": warmup,
            "largest_talking_within_tolerance": best}  # fmt: skip


def queue_trace(splits: list[dict]) -> dict[str, tuple[float, float]]:
    """p50 and p95 of each traced stage (server/pipeline/timing.py STAGES) over the turns:
    where each turn's requests waited for the shared model thread, recogniser and voice."""
    found = {}
    for name in STAGES:
        values = [t[f"{name}_ms"] for t in splits if f"{name}_ms" in t]
        if values:
            found[name] = (median(values), p95(values))
    return found


def connected_level(server, args, lone: float) -> tuple[list, dict]:
    turns = max(args.turns, args.samples)
    (latencies, opened), cpu, rss = measured(server, connected(server.url, args.connected, turns))
    figure = p95(latencies)
    ok = figure <= TOLERANCE * lone
    row = [f"{opened} streaming + 1 talking", figure, f"{figure / lone:.2f}", cpu, rss,
           "yes" if ok else "no"]  # fmt: skip
    run = {"sessions": opened, "p95_ms": figure, "cpu_percent": cpu, "rss_mib": rss, "ok": ok}
    return row, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--talkers", default="1,4,8,10,12,14")
    parser.add_argument("--connected", type=int, default=50, help="0 to skip (one node only)")
    parser.add_argument("--turns", type=int, default=4, help="at least, per talker")
    parser.add_argument("--samples", type=int, default=20, help="at least, turns per level")
    parser.add_argument(
        "--no-warmup",
        dest="warmup",
        action="store_false",
        help="measure from a cold server (the pool grows during the first level)",
    )
    parser.add_argument(
        "--compare",
        action="store_true",
        help="run the talking levels on one node twice, side by side: first with the "
        f"previous scheduling ({' '.join(f'{k}={v}' for k, v in PREVIOUS_SCHEDULING.items())}), "
        "then as configured",
    )
    parser.add_argument(
        "--nodes",
        default="1",
        help="deployments compared side by side: 1 = one node as ./dev start runs it, "
        "N > 1 = N nodes behind HAProxy on Redis + PostgreSQL (e.g. 1,2)",
    )
    args = parser.parse_args()
    random.seed(1)
    for question in QUESTIONS:
        speak(question)  # synthesize the inputs before anything is timed
    levels = [int(x) for x in args.talkers.split(",")]
    deployments = [int(x) for x in args.nodes.split(",")]
    if args.compare:
        deployments = [PREVIOUS, 1]
    # The simulated clients stand in for people on other machines: they yield the CPU to the
    # servers (a starved client only delays its own measurements, against us).
    os.nice(10)
    load_before = os.getloadavg()
    results: dict[int, dict] = {}
    connected_run = None
    for count in deployments:
        print(f"{label(count)}:")
        if count == PREVIOUS:
            deployment = one_node(PREVIOUS_SCHEDULING)
        else:
            deployment = one_node() if count == 1 else nodes_behind_haproxy(count)
        with deployment as server:
            results[count] = talking_levels(server, levels, args)
            if args.connected and count == 1:
                row, connected_run = connected_level(server, args, results[count]["lone_p95_ms"])
                results[count]["rows"].append(row)
    load_after = os.getloadavg()

    header = ["sessions", "p95 ms", "× lone", "server CPU %", "server RSS MiB", f"≤ {TOLERANCE}×"]
    for count, result in results.items():
        print_table(
            f"{label(count)}, {os.cpu_count()} cores: p95 voice-to-voice vs a lone session "
            f"(≤ ×{TOLERANCE})",
            header,
            result["rows"],
        )
        print(f"largest N talking within {TOLERANCE}× of a lone session: "
              f"{result['largest_talking_within_tolerance']}")  # fmt: skip
    if len(results) > 1:
        print_table(
            "Side by side, same machine and cores: p50 / p95 voice-to-voice ms (× lone p95), CPU %",
            ["talking", *(label(c) for c in results)],
            [
                [f"{n}"] + [f"{r['talking'][n]['p50_ms']:.0f} / {r['talking'][n]['p95_ms']:.0f} "
                            f"({r['talking'][n]['p95_ms'] / r['lone_p95_ms']:.2f}×), "
                            f"{r['talking'][n]['cpu_percent']:.0f}%" for r in results.values()]
                for n in levels
            ],
        )  # fmt: skip
        print_table(
            "Side by side: where the turns waited, p50 / p95 ms per turn (queue vs work)",
            ["talking", "stage", *(label(c) for c in results)],
            [
                [f"{n}", stage] + [
                    "{:.0f} / {:.0f}".format(*r["talking"][n]["queues_ms"].get(stage, (0, 0)))
                    for r in results.values()]
                for n in levels for stage in STAGES
            ],
        )  # fmt: skip
    print("load average (1, 5, 15 min): before "
          f"{' '.join(f'{x:.2f}' for x in load_before)}, after "
          f"{' '.join(f'{x:.2f}' for x in load_after)}")  # fmt: skip
    first = results[1] if 1 in results else results[deployments[0]]  # as configured
    report = {
        "warmup": first["warmup"],
        "lone_p95_ms": first["lone_p95_ms"],
        "talking": first["talking"],
        "largest_talking_within_tolerance": first["largest_talking_within_tolerance"],
        "connected": connected_run,
        "load_average": {"before": load_before, "after": load_after},
    }
    if len(results) > 1:
        report["deployments"] = {
            label(c): {k: v for k, v in r.items() if k != "rows"} for c, r in results.items()
        }
    save("load", report)


if __name__ == "__main__":
    main()
