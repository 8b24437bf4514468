"""Flood: how much one client flooding audio delays another session's transcript.

Two parts, each side by side in the same run with its reference.

Session (the issue's figure, `--session-runs`): the real server (`python -m server`, bench/
load.py's `ServerProcess`) and real sockets. Session B speaks a short phrase at real time, 100 ms
per message; the figure is the time from the end of its voice to its final `user.transcript`.
Alone, and while client A floods: speech as fast as the socket takes it, reconnecting (a fresh
authorize) each time the server closes it for flooding (4009), until B's transcript arrives.
A runs in a process of its own (as on another machine), so it cannot hold up B's client. With
`--reference REV` the same runs go against a server built from that commit (`git archive`) in
the same run: the previous behaviour, measured beside today's.

Worker (`--runs`): one speech worker (as on a busy node, where utterances share workers). A
short phrase, fed in 100 ms chunks as fast as the worker answers, alone and while another
utterance hands the same worker a minute of audio in one call — against the older feeding, the
whole backlog in one request (`FEED_PIECE_BYTES` as large as the flood). Fed as fast as it can
go, the phrase shares the worker evenly with the flood (about 2x); a session feeds at real time
and needs a fraction of it (the session part). Also the event loop's worst stall while a worker
decodes 1 s pieces (tests/pipeline/test_stt.py checks by event order that it never waits on a
decode; how long a turn of the loop takes is this figure).

    ./dev bench stt_flood [--session-runs 5] [--reference 3929da4] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import websockets
from common import ROOT, median, print_table, save
from load import ServerProcess

from server.pipeline import stt
from server.pipeline.stt import RecognizerPool
from tests.support.speech import silence, speak, voiced_span
from tests.support.voice_client import VoiceClient

CHUNK = 3200  # 100 ms at 16 kHz
PHRASE = "What time is it?"
FLOOD = "Please tell me what time it is and what the weather is like today."


# -- session: the real server -------------------------------------------------------------------


async def flood_until(url: str, stop: asyncio.Event, counts: dict) -> None:
    """Speech as fast as the socket takes it; a new session each time the server closes one."""
    speech = speak(FLOOD) * 4
    frames = [
        json.dumps({"type": "client.audio", "content": base64.b64encode(speech[i : i + CHUNK])
                    .decode()})
        for i in range(0, len(speech), CHUNK)
    ]  # fmt: skip
    while not stop.is_set():
        client = VoiceClient(url, input_sample_rates=[16000])
        try:
            await client.authorize(headers={"X-Forwarded-For": "10.0.0.66"})
            await client.connect()
            counts["sessions"] += 1
            while not stop.is_set():
                for frame in frames:
                    await client._socket.send(frame)
                    counts["seconds"] += 0.1
                    if stop.is_set():
                        break
        except (websockets.ConnectionClosed, OSError):
            pass  # closed for flooding (4009): connect again
        except Exception:
            await asyncio.sleep(0.2)  # refused (full, rate-limited): try again
        finally:
            await client.close()


async def speak_once(url: str, flood: bool) -> tuple[float, dict]:
    pcm = silence(0.3) + speak(PHRASE) + silence(1.2)
    voice_end = 0.3 + voiced_span(speak(PHRASE))[1]
    counts = {"sessions": 0, "seconds": 0.0}
    async with VoiceClient(url, input_sample_rates=[16000]) as client:
        await client.authorize(headers={"X-Forwarded-For": "10.0.0.1"})
        await client.connect()
        welcome = await client.wait_for("turn.start", lambda m: m["role"] == "assistant")
        await client.finish_playback(welcome.message["turn_id"], timeout=60)
        flooder = await start_flooder(url) if flood else None
        mark = len(client.received)
        try:
            started = await client.stream(pcm)
            transcript = await client.wait_for("user.transcript", after=mark, timeout=120)
        finally:
            if flooder:
                counts = await stop_flooder(flooder)
    return (transcript.at - (started + voice_end)) * 1000, counts


async def start_flooder(url: str) -> asyncio.subprocess.Process:
    """Client A in a process of its own, as on another machine: in this one, its send loop
    (which seldom has to wait for the socket) held up B's sending and receiving, and the
    figure measured this benchmark's own loop, not the server. Returns once A's first
    session is flooding."""
    flooder = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--flood", url, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    await flooder.stdout.readline()  # "flooding"
    return flooder


async def stop_flooder(flooder: asyncio.subprocess.Process) -> dict:
    flooder.send_signal(signal.SIGTERM)
    out, _ = await flooder.communicate()
    return json.loads(out.decode().strip().splitlines()[-1])


def flood_main(url: str) -> None:
    """`--flood URL`: client A until SIGTERM; prints "flooding" once, then its counts."""
    counts = {"sessions": 0, "seconds": 0.0}

    async def main():
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        task = asyncio.create_task(flood_until(url, stop, counts))
        while counts["sessions"] == 0 and not task.done():
            await asyncio.sleep(0.05)
        print("flooding", flush=True)
        await task

    asyncio.run(main())
    print(json.dumps(counts), flush=True)


def source_tree(revision: str, into: Path) -> Path:
    """The repository at `revision`, extracted (with this checkout's vendored runtimes)."""
    archive = subprocess.run(
        ["git", "archive", revision], cwd=ROOT, check=True, capture_output=True
    ).stdout
    into.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    with contextlib.suppress(FileExistsError):
        (into / ".vendor").symlink_to(ROOT / ".vendor")
    return into


# The node's defaults for one client address (its authorizes per minute), each client at an
# address of its own: the server trusts 127.0.0.1 as a proxy that names the client.
SERVER_ENV = {"AUTHORIZE_RATE_LIMIT": "60", "TRUSTED_PROXIES": "127.0.0.1"}


def session_part(runs: int, reference: str | None) -> dict:
    builds = {"today": ROOT}
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        if reference:
            builds[f"reference {reference}"] = source_tree(reference, Path(tmp) / "ref")
        for name, root in builds.items():
            with tempfile.TemporaryDirectory() as data:
                server = ServerProcess(data, cwd=root, env=SERVER_ENV)
                try:
                    results[name] = measure_sessions(server.url, name, runs)
                finally:
                    server.stop()
    return results


def measure_sessions(url: str, name: str, runs: int) -> dict:
    ms: dict[str, list] = {"alone": [], "while flooded": [], "flood_counts": []}
    for n in range(runs):
        order = ["alone", "while flooded"]
        for case in order if n % 2 else order[::-1]:
            flooded = case == "while flooded"
            latency, counts = asyncio.run(speak_once(url, flooded))
            ms[case].append(latency)
            if flooded:
                ms["flood_counts"].append(counts)
            print(f"  {name}, {case}: {latency:.0f} ms {counts if flooded else ''}", flush=True)
    return ms


# -- worker: one speech worker, in process ------------------------------------------------------


async def short_phrase(pool: RecognizerPool, pcm: bytes) -> tuple[float, str]:
    started = time.perf_counter()
    async with pool.utterance() as recognizer:
        for offset in range(0, len(pcm), CHUNK):
            await recognizer.feed(pcm[offset : offset + CHUNK])
        final = await recognizer.finish()
    return (time.perf_counter() - started) * 1000, final


async def with_flood(pool: RecognizerPool, phrase: bytes, flood: bytes) -> tuple[float, str]:
    started = asyncio.Event()

    async def flooder():
        async with pool.utterance() as recognizer:
            started.set()
            await recognizer.feed(flood)

    task = asyncio.create_task(flooder())
    await started.wait()
    await asyncio.sleep(0.05)  # the flood's first request is in the worker's queue
    try:
        return await short_phrase(pool, phrase)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def loop_stall_ms(pool: RecognizerPool, pcm: bytes) -> float:
    """The longest gap between turns of a 5 ms ticker while `pcm` is decoded in 1 s pieces."""
    gaps: list[float] = []
    stop = asyncio.Event()

    async def ticker():
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last - 0.005)
            last = now

    task = asyncio.create_task(ticker())
    async with pool.utterance() as recognizer:
        for offset in range(0, len(pcm), 32000):
            await recognizer.feed(pcm[offset : offset + 32000])
        await recognizer.finish()
    stop.set()
    await task
    return max(gaps) * 1000


def worker_part(runs: int) -> dict:
    phrase = speak("Thank you very much.")
    flood = speak("Can you help me book a table for two tonight?") * 20  # ~60 s
    pool = RecognizerPool(workers=1, spare=0, max_workers=1)
    pool.warm()
    piece = stt.FEED_PIECE_BYTES
    results: dict[str, list[float]] = {"alone": [], "flood, 0.1 s pieces": [],
                                       "flood, one request (old)": [],
                                       "loop stall": []}  # fmt: skip
    try:
        for _ in range(runs):
            results["alone"].append(asyncio.run(short_phrase(pool, phrase))[0])
            stt.FEED_PIECE_BYTES = piece
            results["flood, 0.1 s pieces"].append(asyncio.run(with_flood(pool, phrase, flood))[0])
            stt.FEED_PIECE_BYTES = len(flood)
            results["flood, one request (old)"].append(
                asyncio.run(with_flood(pool, phrase, flood))[0]
            )
            stt.FEED_PIECE_BYTES = piece
            # Let the worker finish what the old-style flood left queued before the next run.
            while pool._workers[0].queued_bytes:
                time.sleep(0.05)
            results["loop stall"].append(asyncio.run(loop_stall_ms(pool, flood[: 32000 * 6])))
    finally:
        stt.FEED_PIECE_BYTES = piece
        pool.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--session-runs", type=int, default=5, help="0 to skip")
    parser.add_argument("--reference", help="also measure the server at this git revision")
    parser.add_argument("--runs", type=int, default=3, help="worker part; 0 to skip")
    parser.add_argument("--flood", metavar="URL", help=argparse.SUPPRESS)  # client A's process
    args = parser.parse_args()
    if args.flood:
        flood_main(args.flood)
        return
    speak(PHRASE), speak(FLOOD)  # synthesised before anything is timed
    saved: dict = {"load_average_before": os.getloadavg()}
    if args.session_runs:
        sessions = session_part(args.session_runs, args.reference)
        rows = []
        for name, ms in sessions.items():
            alone, flooded = median(ms["alone"]), median(ms["while flooded"])
            rows.append([name, alone, flooded, f"{flooded / alone:.2f}x"])
        print_table(
            f"Session B, end of voice to final transcript, median of {args.session_runs} "
            f"(load average {os.getloadavg()[0]:.1f})",
            ["server", "alone ms", "while A floods ms", "ratio (goal ≤ 1.2x)"],
            rows,
        )
        saved["session_ms"] = sessions
    if args.runs:
        worker = worker_part(args.runs)
        alone = median(worker["alone"])
        rows = [[name, median(ms), f"{median(ms) / alone:.2f}x"]
                for name, ms in worker.items() if name != "loop stall"]  # fmt: skip
        print_table(
            f"Worker: short phrase fed as fast as it goes, first chunk to final transcript "
            f"(median of {args.runs}; one worker; load average {os.getloadavg()[0]:.1f})",
            ["case", "ms", "vs alone"],
            rows,
        )
        stall = max(worker["loop stall"])
        print(f"\nevent loop: worst stall while decoding 1 s pieces {stall:.1f} ms")
        saved["worker_ms"] = worker
    saved["load_average_after"] = os.getloadavg()
    save("stt_flood", saved)


if __name__ == "__main__":
    main()
