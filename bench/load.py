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

With `--reference KEY=VALUE` (repeatable, e.g. `--reference ECHO_GATE=false`) the talking levels
run on two one-node servers side by side in the same run: the reference (these settings over the
environment), then as configured. `--compare` is the shorthand for the scheduling before the
queues were traced (`PREVIOUS_SCHEDULING`: first come, first served in the recogniser's workers,
at the server's priority, the words asked after the turn-end model's answer, a look's words
waiting for all audio fed, a look whose words are late waiting for them to the 1 s
fallback, one piece of an utterance at its worker at a time, and no catching up at the
server's priority). With more than one
column the servers run together and the levels are interleaved: each level on every column in
turn, `--rounds N` times (alternating which column goes first), every column's figures pooled
over its rounds, and each round's p95 printed (the spread). At 8-10 talkers the spread from run
to run is larger than the effects compared, so only columns measured this way compare. Every
level also prints the trace of the shared queues (server/pipeline/timing.py `STAGES`): how long
each turn's requests waited for the turn-end model's thread, a recogniser worker and a Piper
thread, against how long they worked, and the echo guard's own CPU (`echo_work`).

What the talkers' microphones send while the answer plays (`--mic`): by default nothing (the
stream pauses, as this bench always did; the echo guard then sees agent audio due only over the
question's trailing silence and, the stream's time being behind the wall clock, over the start
of the next question: no echo, so the gate holds nothing long). A browser's microphone never
pauses: `noise` streams room noise all the session (a headset), `echo` adds the answer as the
speakers play it, heard back 150 ms later 10 dB down (the linear filter cancels it; the gate
stands aside), `processed-echo` the same through a browser's capture processing
(tests/support/echo.py), which only the echo gate keeps out: its expensive path. With
`ECHO_GATE=false` that echo interrupts the agent, which the last table counts.

    python bench/load.py [--talkers 1,4,8,10,12,14] [--connected 50] [--turns 4]
                         [--samples 20] [--no-warmup] [--nodes 1,2] [--compare]
                         [--reference KEY=VALUE ...] [--rounds N]
                         [--mic pause|noise|echo|processed-echo]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
from common import ROOT, median, p95, print_table, save

from server.pipeline.timing import STAGES
from tests.support.cluster import cluster
from tests.support.echo import capture_processing
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


def _ticks(stat: str) -> int:
    """User + system clock ticks from the text of /proc/<pid>/stat."""
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


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
        return self._summed("stat", _ticks) / CLOCK_TICKS

    def own_cpu_seconds(self) -> float:
        """The root processes alone (the server: sockets, the turn detector, the turn-end
        model, Piper), without their children (the speech recogniser's workers)."""
        total = 0
        for pid in self.roots():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                total += _ticks(Path(f"/proc/{pid}/stat").read_text())
        return total / CLOCK_TICKS

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


MIC = "pause"  # --mic: what a talker's microphone sends while the answer plays
MIC_MODES = {
    "pause": "nothing (the stream pauses while the answer plays, then goes on)",
    "noise": "room noise, the whole session, as a browser's open microphone does (a headset)",
    "echo": "room noise and the answer's echo, 150 ms late, 10 dB down (speakers: the linear "
    "filter cancels it)",
    "processed-echo": "the same echo through a browser's capture processing "
    "(tests/support/echo.py): the linear filter cannot cancel it, the echo gate works",
}
ECHO_DELAY_S, ECHO_DB = 0.15, -10.0
EXTRA_TURNS: list[int] = []  # per session, user turns the talker did not start (echo, noise)


class OpenMic:
    """A talker's microphone left open for the whole session (`--mic` other than "pause"),
    100 ms a chunk in real time: room noise, what `say()` queues, and with an echo the
    answer being played (`play()`), as heard back through the speakers."""

    def __init__(self, client: VoiceClient, mode: str):
        self.client, self.mode = client, mode
        self._said: list[list] = []  # [pcm, samples sent, future of its capture time]
        self._playing: tuple[str, float] | None = None  # (turn id, when it starts playing)
        self._echo: tuple = ("", 0, None)  # the answer's made echo and its schedule, cached
        self._noise = np.frombuffer(room_noise(10.0), "<i2").astype(np.float64)
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> OpenMic:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def say(self, pcm: bytes) -> float:
        """Queue `pcm` (16 kHz); the monotonic time its first sample is captured."""
        captured = asyncio.get_running_loop().create_future()
        self._said.append([np.frombuffer(pcm, "<i2").astype(np.float64), 0, captured])
        return await captured

    def play(self, turn_id: str, at: float) -> None:
        self._playing = (turn_id, at)

    async def _run(self) -> None:
        step, start = 1600, time.monotonic()
        for n in itertools.count():
            await asyncio.sleep(max(0.0, start + (n + 1) * 0.1 - time.monotonic()))
            at = start + n * 0.1  # when this chunk's first sample was captured
            noise = self._noise[(n * step) % (self._noise.size - step) :][:step]
            chunk = noise + self._speech(step, at) + self._echo_at(at, step)
            pcm = np.clip(np.rint(chunk), -32768, 32767).astype("<i2").tobytes()
            await self.client.send(
                {"type": "client.audio", "content": base64.b64encode(pcm).decode("ascii")}
            )

    def _speech(self, step: int, at: float) -> np.ndarray:
        out = np.zeros(step)
        if self._said:
            said = self._said[0]
            if said[1] == 0:
                said[2].set_result(at)
            part = said[0][said[1] : said[1] + step]
            out[: part.size] = part
            said[1] += step
            if said[1] >= said[0].size:
                self._said.pop(0)
        return out

    def _echo_at(self, at: float, step: int) -> np.ndarray:
        out = np.zeros(step)
        if self.mode not in ("echo", "processed-echo") or self._playing is None:
            return out
        turn_id, _ = self._playing
        made, starts, offsets = self._made_echo(turn_id)
        if not starts.size:
            return out
        # Played as a player plays it: each chunk on arrival or when the one before ends,
        # whichever is later (the server's due times, which the guard's reference follows).
        heard = at - ECHO_DELAY_S + np.arange(step) / 16000
        k = np.searchsorted(starts, heard, side="right") - 1
        ok = k >= 0
        position = np.where(ok, offsets[k] + np.rint((heard - starts[k]) * 16000), -1).astype(int)
        ends = np.append(offsets[1:], made.size)
        ok &= (position >= 0) & (position < ends[k]) & (position < made.size)
        out[ok] = made[position[ok]]
        return out

    def _made_echo(self, turn_id: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The answer's audio so far as the microphone hears it (made again as more comes),
        and each chunk's start of play and offset in it."""
        chunks = [
            (item.at, base64.b64decode(item.message["content"]))
            for item in self.client.received
            if item.type == "response.audio" and item.message.get("turn_id") == turn_id
        ]
        if self._echo[:2] != (turn_id, len(chunks)):
            audio = b"".join(pcm for _, pcm in chunks)
            echo = np.frombuffer(audio, "<i2").astype(np.float64) * 10 ** (ECHO_DB / 20)
            if self.mode == "processed-echo" and echo.size:
                echo = capture_processing(echo, seed=7)
            starts, offsets, ends, offset = [], [], 0.0, 0
            for arrived, pcm in chunks:
                starts.append(max(arrived, ends))
                offsets.append(offset)
                ends = starts[-1] + len(pcm) / 32000
                offset += len(pcm) // 2
            self._echo = (turn_id, len(chunks), (echo, np.array(starts), np.array(offsets, int)))
        return self._echo[2]


async def converse(url: str, turns: int, start_delay: float) -> list[float]:
    latencies = []
    async with VoiceClient(url) as client:
        await client.connect()
        mic = OpenMic(client, MIC) if MIC != "pause" else None
        async with mic or contextlib.nullcontext():
            welcome = await client.wait_for("turn.start", lambda m: m["role"] == "assistant")
            if mic:
                mic.play(welcome.message["turn_id"], welcome.at)
            # The welcome's end, or (its echo interrupted it: `--mic processed-echo` without
            # the gate) the end of the answer to its echo.
            await client.wait_for("response.end", timeout=60)
            await client.send(
                {"type": "trigger.response.audio.replay_finished", "reason": "completed"}
            )
            await asyncio.sleep(start_delay)
            for n in range(turns):
                speech = speak(QUESTIONS[n % len(QUESTIONS)])
                mark = len(client.received)
                said = silence(0.3) + speech + silence(1.2)
                started = await (mic.say(said) if mic else client.stream(said))
                speech_end = started + 0.3 + voiced_span(speech)[1]
                first = await client.wait_for("response.audio", after=mark, timeout=60)
                if mic:
                    mic.play(first.message["turn_id"], first.at)
                latencies.append((first.at - speech_end) * 1000)
                end = await client.wait_for("response.end", after=mark, timeout=60)
                SPLITS.append(end.message.get("timings") or {})
                GAPS.append(playback_gap_ms(client.received[mark:], end.message["turn_id"]))
                played = len(client.audio_of_turn(end.message["turn_id"])) / 32000
                await asyncio.sleep(max(0.0, played - (time.monotonic() - first.at)))
                await client.send({"type": "trigger.response.audio.replay_finished"})
                await asyncio.sleep(random.uniform(0.2, 1.0))
        users = client.of_type("turn.start")
        EXTRA_TURNS.append(sum(m.get("role") == "user" for m in users) - turns)
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
# Per level: the server's CPU seconds split into its own process(es) and their children (the
# speech recogniser's workers), and the level's wall-clock seconds.
CPU_SPLIT: list[dict[str, float]] = []


def measured(server: ServerProcess, run) -> tuple[object, float, float]:
    cpu0, own0, t0 = server.cpu_seconds(), sum(os.times()[:2]), time.monotonic()
    server0 = server.own_cpu_seconds()
    result = asyncio.run(run)
    elapsed = time.monotonic() - t0
    spent = server.cpu_seconds() - cpu0
    cpu = spent / elapsed * 100
    CLIENT_CPU.append((sum(os.times()[:2]) - own0) / elapsed * 100)
    own = server.own_cpu_seconds() - server0
    CPU_SPLIT.append({"server_s": own, "workers_s": spent - own, "elapsed_s": elapsed})
    return result, cpu, server.rss_mib()


def cpu_per_session(splits: list[dict[str, float]], talkers: int) -> dict[str, float]:
    """CPU ms per 100 ms of one talker's session, in the server's own process and in the
    recogniser's workers: the budget each session spends, whatever the machine's other load."""
    session_s = talkers * sum(s["elapsed_s"] for s in splits) or 1.0
    return {
        part: 100 * sum(s[f"{part}_s"] for s in splits) / session_s
        for part in ("server", "workers")
    }


# `--compare`: the scheduling before the queues were traced (docs/scaling.md), as a reference
PREVIOUS_SCHEDULING = {
    "STT_PRIORITY_LANE": "false",
    "TURN_END_RULES_OFF": "words-at-look",
    "STT_WORKER_NICE": "0",
    "STT_WORDS_AT_ASK": "false",
    "TURN_END_LATE_WORDS_MS": "0",
    "STT_CATCH_UP_MS": "0",
}


def reference_env(args, parser: argparse.ArgumentParser) -> dict[str, str]:
    """The reference column's environment: `--compare`'s previous scheduling, then every
    `--reference KEY=VALUE` over it (empty: no reference column)."""
    env = dict(PREVIOUS_SCHEDULING) if args.compare else {}
    for item in args.reference:
        key, equals, value = item.partition("=")
        if not equals or not key.isidentifier():
            parser.error(f"--reference {item!r}: expected KEY=VALUE, e.g. ECHO_GATE=false")
        env[key] = value
    return env


def columns(args, reference: dict[str, str]) -> list[tuple[str, Callable]]:
    """The deployments side by side, the reference first: (label, opener of the server)."""
    if reference:
        named = " ".join(f"{k}={v}" for k, v in reference.items())
        name = "previous scheduling" if reference == PREVIOUS_SCHEDULING else named
        return [(f"1 node, {name}", lambda: one_node(reference)), (CONFIGURED, one_node)]
    found: list[tuple[str, Callable]] = []
    for count in (int(x) for x in args.nodes.split(",")):
        if count == 1:
            found.append(("1 node, memory + SQLite", one_node))
        else:
            found.append((f"{count} nodes + HAProxy, Redis + PostgreSQL",
                          lambda count=count: nodes_behind_haproxy(count)))  # fmt: skip
    return found


CONFIGURED = "1 node, as configured"


def interleaved(servers: dict, levels: list[int], args) -> dict[str, dict]:
    """Every column at one level, then the next level, `--rounds` times (each round in the
    other order of columns): the columns see the same machine minute by minute, and a level's
    figures pool all its rounds. Run-to-run spread at 8-10 talkers is larger than the effects
    compared, so figures from separate runs cannot be compared."""
    warmups = {}
    for name, server in servers.items():
        print(f"{name}:")
        warmups[name] = warm_up(server, max(levels)) if args.warmup else None
    once = argparse.Namespace(**{**vars(args), "warmup": False})
    runs: dict[str, dict[int, list]] = {name: {n: [] for n in levels} for name in servers}
    for round_ in range(args.rounds):
        order = list(servers) if round_ % 2 == 0 else list(servers)[::-1]
        for n in levels:
            for name in order:
                print(f"{name}, round {round_ + 1}/{args.rounds}:")
                EXTRA_TURNS.clear()
                started = time.monotonic()
                run = talking_levels(servers[name], [n], once)["talking"][n]
                seconds = time.monotonic() - started
                run.update(splits=list(SPLITS), gaps=list(GAPS), extra=sum(EXTRA_TURNS),
                           session_s=n * seconds)  # fmt: skip
                runs[name][n].append(run)
    return {name: pooled(runs[name], levels, warmups[name]) for name in servers}


def pooled(runs: dict[int, list[dict]], levels: list[int], warmup: dict | None) -> dict:
    """One column's rounds, level by level, as talking_levels() reports one run (plus the
    spread of the rounds' p95s, the echo guard's CPU and the user turns nobody started)."""
    rows, talk_runs, lone = [], {}, None
    for n in levels:
        rounds = runs[n]
        latencies = [ms for r in rounds for ms in r["latencies_ms"]]
        splits = [t for r in rounds for t in r["splits"]]
        gaps = [g for r in rounds for g in r["gaps"]]
        figure = p95(latencies)
        lone = lone or figure
        cpu = sum(r["cpu_percent"] for r in rounds) / len(rounds)
        rss = max(r["rss_mib"] for r in rounds)
        echo_ms = sum(t.get("echo_work_ms", 0.0) for t in splits)
        talk_runs[n] = {
            "p95_ms": figure, "p50_ms": median(latencies), "cpu_percent": cpu, "rss_mib": rss,
            "ok": figure <= TOLERANCE * lone, "turns": len(latencies), "latencies_ms": latencies,
            "p95_split_ms": {k: p95([t[k] for t in splits if k in t]) for k in SPLIT_NAMES},
            "playback_gaps": {"answers": len(gaps), "with_gap_over_50ms": sum(g > 50 for g in gaps),
                              "worst_ms": max(gaps, default=0.0)},
            "queues_ms": queue_trace(splits),
            "end_rules": end_rules(splits),
            "rounds_p95_ms": [r["p95_ms"] for r in rounds],
            # the guard's CPU (its filter, and the gate when on) per 100 ms of session
            "echo_ms_per_100ms": echo_ms / (sum(r["session_s"] for r in rounds) * 10),
            "unstarted_user_turns": sum(r["extra"] for r in rounds),
            "cpu_ms_per_100ms": cpu_per_session([r["cpu_split"] for r in rounds], n),
        }  # fmt: skip
        verdict = "yes" if talk_runs[n]["ok"] else "no"
        rows.append([f"{n} talking", figure, f"{figure / lone:.2f}", cpu, rss, verdict])
    return {"rows": rows, "talking": talk_runs, "lone_p95_ms": lone, "warmup": warmup,
            "largest_talking_within_tolerance": largest_within(talk_runs)}  # fmt: skip


def print_spread(results: dict[str, dict], levels: list[int]) -> None:
    print_table(
        "Side by side: each round's p95 ms (the spread), the echo guard's CPU (ms per 100 ms of "
        "session), user turns the talkers did not start; CPU ms per 100 ms of a talker's "
        "session in the server's process / the recogniser's workers",
        ["talking", *results],
        [
            [f"{n}"] + [
                f"{' '.join(f'{x:.0f}' for x in r['talking'][n]['rounds_p95_ms'])}; "
                f"echo {r['talking'][n]['echo_ms_per_100ms']:.3f}; "
                f"{r['talking'][n]['unstarted_user_turns']}; "
                "CPU {server:.1f} / {workers:.1f}".format(**r['talking'][n]['cpu_ms_per_100ms'])
                for r in results.values()]
            for n in levels
        ],
    )  # fmt: skip


def largest_within(talk_runs: dict[int, dict]) -> int:
    """The largest N such that it and every smaller level measured kept within."""
    best = 0
    for n in sorted(talk_runs):
        if not talk_runs[n]["ok"]:
            break
        best = n
    return best


def warm_up(server, talkers: int) -> dict:
    """The server sizes its recogniser pool to the load it meets (a new worker process costs
    ~1 s of CPU once): measure it as it runs after that first burst."""
    latencies, cpu, _ = measured(server, talking(server.url, talkers, 2))
    warmup = {"talking": talkers, "p95_ms": p95(latencies), "cpu_percent": cpu}
    print(f"  warm-up, {talkers} talking (not compared): p95 "
          f"{warmup['p95_ms']:.0f} ms, server CPU {cpu:.0f}%")  # fmt: skip
    return warmup


def talking_levels(server, levels: list[int], args) -> dict:
    """The talking levels on one deployment: warm-up, then each level against the lone p95."""
    rows, talk_runs, lone = [], {}, None
    warmup = warm_up(server, max(levels)) if args.warmup else None
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
                        "latencies_ms": latencies, "cpu_split": dict(CPU_SPLIT[-1]),
                        "p95_split_ms": split, "playback_gaps": gaps}  # fmt: skip
        verdict = "yes" if ok else "no"
        rows.append([f"{n} talking", figure, f"{figure / lone:.2f}", cpu, rss, verdict])
        parts = ", ".join(f"{k[:-3]} {v:.0f}" for k, v in split.items())
        print(f"  {n:3d} talking: p95 {figure:.0f} ms, server CPU {cpu:.0f}%, "
              f"clients CPU {CLIENT_CPU[-1]:.0f}% ({parts}); answers with a gap "
              f"> 50 ms: {gaps['with_gap_over_50ms']}/{gaps['answers']}, "
              f"worst {gaps['worst_ms']:.0f} ms")  # fmt: skip
        per = cpu_per_session(CPU_SPLIT[-1:], n)
        print(f"        CPU ms per 100 ms of a talker's session: server process "
              f"{per['server']:.1f}, recogniser workers {per['workers']:.1f}")  # fmt: skip
        talk_runs[n]["queues_ms"] = queues = queue_trace(SPLITS)
        print("        queue / work, p50 / p95 ms: " + "; ".join(
            f"{name} {q[0]:.0f} / {q[1]:.0f}" for name, q in queues.items()))  # fmt: skip
        talk_runs[n]["end_rules"] = rules = end_rules(SPLITS)
        print("        turns ended by (endpointing p50 / p95 ms): " + rules_line(rules))
    return {"rows": rows, "talking": talk_runs, "lone_p95_ms": lone, "warmup": warmup,
            "largest_talking_within_tolerance": largest_within(talk_runs)}  # fmt: skip


def end_rules(splits: list[dict]) -> dict[str, dict]:
    """The turns by the rule that ended them (`end_rule`, turns.END_RULES), each rule's count
    and its endpointing and voice-to-voice p50 / p95: which rule the slow turns ended on."""
    by_rule: dict[str, list[dict]] = {}
    for timings in splits:
        by_rule.setdefault(timings.get("end_rule", "?"), []).append(timings)
    found = {}
    for rule, turns in sorted(by_rule.items(), key=lambda item: -len(item[1])):
        found[rule] = {"turns": len(turns)}
        for name in ("endpointing_ms", "voice_to_voice_ms"):
            values = [t[name] for t in turns if name in t]
            if values:
                found[rule][name] = (median(values), p95(values))
    return found


def rules_line(rules: dict[str, dict]) -> str:
    def one(rule, found):
        ends = found.get("endpointing_ms", (0, 0))
        return f"{rule} {found['turns']} ({ends[0]:.0f} / {ends[1]:.0f})"

    return "; ".join(one(rule, found) for rule, found in rules.items())


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
        help="shorthand for --reference "
        f"{' --reference '.join(f'{k}={v}' for k, v in PREVIOUS_SCHEDULING.items())}: "
        "the previous scheduling",
    )
    parser.add_argument(
        "--reference",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="run the talking levels on one node twice, side by side and interleaved: first "
        "with these settings (repeatable, e.g. ECHO_GATE=false), then as configured",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="with more than one column: run every level this many times per column, "
        "interleaved, and pool them (the spread of the rounds is printed)",
    )
    parser.add_argument(
        "--mic",
        choices=list(MIC_MODES),
        default="pause",
        help="what the talkers' microphones send while the answer plays: "
        + "; ".join(f"{k}: {v}" for k, v in MIC_MODES.items()),
    )
    parser.add_argument(
        "--nodes",
        default="1",
        help="deployments compared side by side: 1 = one node as ./dev start runs it, "
        "N > 1 = N nodes behind HAProxy on Redis + PostgreSQL (e.g. 1,2)",
    )
    args = parser.parse_args()
    if not 1 <= args.rounds <= 20:
        parser.error("--rounds must be in 1..20")
    global MIC
    MIC = args.mic
    random.seed(1)
    for question in QUESTIONS:
        speak(question)  # synthesize the inputs before anything is timed
    levels = [int(x) for x in args.talkers.split(",")]
    reference = reference_env(args, parser)
    deployments = columns(args, reference)
    # The simulated clients stand in for people on other machines: they yield the CPU to the
    # servers (a starved client only delays its own measurements, against us).
    os.nice(10)
    load_before = os.getloadavg()
    connected_run = None
    with contextlib.ExitStack() as stack:
        servers = {name: stack.enter_context(opener()) for name, opener in deployments}
        if len(servers) == 1 and args.rounds == 1:
            name, server = next(iter(servers.items()))
            print(f"{name}:")
            results = {name: talking_levels(server, levels, args)}
        else:
            results = interleaved(servers, levels, args)
        one = CONFIGURED if reference else "1 node, memory + SQLite"
        if args.connected and one in servers:
            row, connected_run = connected_level(servers[one], args, results[one]["lone_p95_ms"])
            results[one]["rows"].append(row)
    load_after = os.getloadavg()

    header = ["sessions", "p95 ms", "× lone", "server CPU %", "server RSS MiB", f"≤ {TOLERANCE}×"]
    for name, result in results.items():
        print_table(
            f"{name}, {os.cpu_count()} cores: p95 voice-to-voice vs a lone session "
            f"(≤ ×{TOLERANCE})",
            header,
            result["rows"],
        )
        print(f"largest N talking within {TOLERANCE}× of a lone session: "
              f"{result['largest_talking_within_tolerance']}")  # fmt: skip
    if len(results) > 1:
        print_table(
            "Side by side, same machine and cores: p50 / p95 voice-to-voice ms (× lone p95), CPU %",
            ["talking", *results],
            [
                [f"{n}"] + [f"{r['talking'][n]['p50_ms']:.0f} / {r['talking'][n]['p95_ms']:.0f} "
                            f"({r['talking'][n]['p95_ms'] / r['lone_p95_ms']:.2f}×), "
                            f"{r['talking'][n]['cpu_percent']:.0f}%" for r in results.values()]
                for n in levels
            ],
        )  # fmt: skip
        print_table(
            "Side by side: where the turns waited, p50 / p95 ms per turn (queue vs work)",
            ["talking", "stage", *results],
            [
                [f"{n}", stage] + [
                    "{:.0f} / {:.0f}".format(*r["talking"][n]["queues_ms"].get(stage, (0, 0)))
                    for r in results.values()]
                for n in levels for stage in STAGES
            ],
        )  # fmt: skip
        print("Side by side: the turns by the rule that ended them, count (endpointing p50 / "
              "p95 ms)")  # fmt: skip
        for n in levels:
            for name, r in results.items():
                print(f"  {n} talking, {name}: {rules_line(r['talking'][n]['end_rules'])}")
    if "rounds_p95_ms" in next(iter(results.values()))["talking"][levels[0]]:
        print_spread(results, levels)
    print("load average (1, 5, 15 min): before "
          f"{' '.join(f'{x:.2f}' for x in load_before)}, after "
          f"{' '.join(f'{x:.2f}' for x in load_after)}")  # fmt: skip
    first = results[CONFIGURED if reference else deployments[0][0]]  # as configured
    report = {
        "mic": MIC,
        "reference": reference,
        "rounds": args.rounds,
        "warmup": first["warmup"],
        "lone_p95_ms": first["lone_p95_ms"],
        "talking": first["talking"],
        "largest_talking_within_tolerance": first["largest_talking_within_tolerance"],
        "connected": connected_run,
        "load_average": {"before": load_before, "after": load_after},
    }
    if len(results) > 1:
        report["deployments"] = {
            name: {k: v for k, v in r.items() if k != "rows"} for name, r in results.items()
        }
    save("load", report)


if __name__ == "__main__":
    main()
