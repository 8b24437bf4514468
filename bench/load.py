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

    python bench/load.py [--talkers 1,4,8,10,12,16] [--connected 50] [--turns 4]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from common import ROOT, p95, print_table, save

from tests.support.servers import free_port
from tests.support.speech import silence, speak, voiced_span
from tests.support.voice_client import VoiceClient

QUESTIONS = ["What time is it?", "Hello, how are you?", "Can you help me?", "Thank you."]
TOLERANCE = 1.5
SPLITS: list[dict] = []  # the server's per-turn split, for the level being measured
SPLIT_NAMES = ("endpointing_ms", "transcript_ms", "webhook_ms", "tts_first_audio_ms")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


class ServerProcess:
    """`python -m server` on a free port, with CPU and memory read from /proc."""

    def __init__(self, data_dir: str):
        self.port = free_port()
        env = {**os.environ, "DATA_DIR": data_dir, "LOG_LEVEL": "warning"}
        env.pop("LAYERCODE_API_KEY", None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "server", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        raise RuntimeError("the server did not start")

    def cpu_seconds(self) -> float:
        stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def rss_mib(self) -> float:
        pages = int(Path(f"/proc/{self.process.pid}/statm").read_text().split()[1])
        return pages * PAGE / 2**20

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


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
            played = len(client.audio_of_turn(end.message["turn_id"])) / 32000
            await asyncio.sleep(max(0.0, played - (time.monotonic() - first.at)))
            await client.send({"type": "trigger.response.audio.replay_finished"})
            await asyncio.sleep(random.uniform(0.2, 1.0))
    return latencies


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


def measured(server: ServerProcess, run) -> tuple[object, float, float]:
    cpu0, t0 = server.cpu_seconds(), time.monotonic()
    result = asyncio.run(run)
    cpu = (server.cpu_seconds() - cpu0) / (time.monotonic() - t0) * 100
    return result, cpu, server.rss_mib()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--talkers", default="1,4,8,10,12,16")
    parser.add_argument("--connected", type=int, default=50)
    parser.add_argument("--turns", type=int, default=4)
    args = parser.parse_args()
    random.seed(1)
    for question in QUESTIONS:
        speak(question)  # synthesize the inputs before anything is timed

    with tempfile.TemporaryDirectory() as data:
        server = ServerProcess(data)
        # The simulated clients stand in for people on other machines: they yield the CPU to
        # the server (a starved client only delays its own measurements, against us).
        os.nice(10)
        try:
            rows, talk_runs = [], {}
            lone = None
            for n in [int(x) for x in args.talkers.split(",")]:
                SPLITS.clear()
                latencies, cpu, rss = measured(server, talking(server.url, n, args.turns))
                figure = p95(latencies)
                split = {k: p95([t[k] for t in SPLITS if k in t]) for k in SPLIT_NAMES}
                lone = lone or figure
                ok = figure <= TOLERANCE * lone
                talk_runs[n] = {"p95_ms": figure, "cpu_percent": cpu, "rss_mib": rss, "ok": ok,
                                "p95_split_ms": split}  # fmt: skip
                verdict = "yes" if ok else "no"
                rows.append([f"{n} talking", figure, figure / lone, cpu, rss, verdict])
                parts = ", ".join(f"{k[:-3]} {v:.0f}" for k, v in split.items())
                print(f"  {n:3d} talking: p95 {figure:.0f} ms, server CPU {cpu:.0f}% ({parts})")

            m = args.connected
            (latencies, opened), cpu, rss = measured(server, connected(server.url, m, args.turns))
            figure = p95(latencies)
            ok = figure <= TOLERANCE * lone
            rows.append([f"{opened} streaming + 1 talking", figure, figure / lone, cpu, rss,
                         "yes" if ok else "no"])  # fmt: skip
        finally:
            server.stop()

    print_table(
        f"Load on {os.cpu_count()} cores: p95 voice-to-voice vs a lone session (≤ ×{TOLERANCE})",
        ["sessions", "p95 ms", "× lone", "server CPU %", "server RSS MiB", f"≤ {TOLERANCE}×"],
        rows,
    )
    best = max((n for n, r in talk_runs.items() if r["ok"]), default=0)
    print(f"\nlargest N talking within {TOLERANCE}× of a lone session: {best}")
    save(
        "load",
        {
            "lone_p95_ms": lone,
            "talking": talk_runs,
            "largest_talking_within_tolerance": best,
            "connected": {"sessions": opened, "p95_ms": figure, "cpu_percent": cpu,
                          "rss_mib": rss, "ok": ok},
        },
    )  # fmt: skip


if __name__ == "__main__":
    main()
