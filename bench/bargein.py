"""Barge-in on a streaming agent: how fast the agent's voice stops, and what leaks after.

The agent is a webhook that streams its answer a sentence every 700 ms, as LLM-backed agents do
(tests/support/streaming_agent.py). A Python client (tests/support/voice_client.py) talks over a
real WebSocket and, while each answer is streaming and playing, says "Stop. What time is it?"
in real time (Piper speech), then lets the next answer start and interrupts that one too.

Per interruption:

- stop_ms: from the moment the chunk carrying the user's first voiced sample reached the server
  (sent over loopback) to the last byte of the interrupted turn's audio the client received —
  0 when nothing of it arrived after that moment;
- leaked_bytes: audio of the interrupted turn received after the user's `turn.start`;
- turn_start_ms: from that same moment to the user's `turn.start` (what the echo defence in
  front of the VAD could delay).

Side by side, each server a `python -m server` process with the same agent: this tree, this
tree with FALSE_INTERRUPTION_MS=0 (cancel at once instead of holding), this tree with the echo
defence's gate off (ECHO_GATE=false: what the gate costs a person), and, with
`--reference DIR`, another checkout (e.g. `git archive main | tar -x -C /tmp/main`), with
`--reference-env KEY=VALUE` settings of its own (e.g. ECHO_GATE=true for a gate of before).
Goal: stop_ms p95 ≤ 250, leaked bytes 0.

    python bench/bargein.py [--interruptions 20] [--reference DIR [--reference-env K=V]]
                            [--without NAME]
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
from pathlib import Path

import httpx
from common import ROOT, median, p95, print_table, save, serve

from tests.support.servers import free_port
from tests.support.speech import silence, speak, voiced_span
from tests.support.streaming_agent import PATH, StreamingAgentApp
from tests.support.voice_client import CHUNK_S, VoiceClient

SECRET = "bench-bargein-secret"
QUESTION = "Stop. What time is it?"
LEAD_S = 0.2


@contextlib.contextmanager
def pipeline_process(tree: Path, agent_url: str, **env):
    """`python -m server` from `tree`, on a free port, talking to `agent_url`."""
    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        environ = {
            **os.environ,
            "PORT": str(port),
            "DATA_DIR": data,
            "AGENT_WEBHOOK_URL": agent_url,
            "AGENT_WEBHOOK_SECRET": SECRET,
            "LOG_LEVEL": "warning",
            "PYTHONPATH": str(tree),
            **env,
        }
        process = subprocess.Popen([sys.executable, "-m", "server"], cwd=tree, env=environ)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"the server in {tree} exited ({process.returncode})")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(url + "/", timeout=1).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the server in {tree} did not start")
                time.sleep(0.2)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=15)


def audio_bytes(message: dict) -> int:
    return len(base64.b64decode(message["content"]))


class Conversation:
    """A client and what it has interrupted so far."""

    def __init__(self, client: VoiceClient):
        self.client = client
        self.interrupted: set[str] = set()
        self.mark = 0  # received messages before this index belong to earlier rounds


async def interrupt_once(talk: Conversation, question: bytes, voice_at_s: float, delay: float):
    """Wait for an answer to be playing, talk over it; return the figures of this one."""
    client = talk.client
    first = await client.wait_for(
        "response.audio",
        lambda m: m["turn_id"] not in talk.interrupted,
        after=talk.mark,
        timeout=30,
    )
    target = first.message["turn_id"]
    await asyncio.sleep(max(0.0, first.at + delay - time.monotonic()))
    mark = len(client.received)
    started = await client.stream(question)
    # The chunk holding the first voiced sample is sent once its last sample is "captured".
    voice_reached = started + (int(voice_at_s / CHUNK_S) + 1) * CHUNK_S
    try:
        user = await client.wait_for("turn.start", lambda m: m["role"] == "user", after=mark)
        await client.wait_for("user.transcript", after=mark)
    except TimeoutError:  # the person was not heard: a missed barge-in
        talk.interrupted.add(target)
        talk.mark = len(client.received)
        return {"missed": True, "stop_ms": None, "leaked_bytes": 0, "turn_start_ms": None}
    talk.interrupted.add(target)
    talk.mark = len(client.received)
    of_target = [
        r for r in client.received if r.type == "response.audio" and r.message["turn_id"] == target
    ]
    after_start = client.received.index(user)
    leaked = sum(
        audio_bytes(r.message)
        for r in client.received[after_start:]
        if r.type == "response.audio" and r.message["turn_id"] == target
    )
    last = max(r.at for r in of_target)
    return {
        "missed": False,
        "stop_ms": round(max(0.0, last - voice_reached) * 1000, 1),
        "leaked_bytes": leaked,
        "turn_start_ms": round((user.at - voice_reached) * 1000, 1),
    }


async def measure(url: str, interruptions: int) -> list[dict]:
    question = silence(LEAD_S) + speak(QUESTION) + silence(1.0)
    voice_at_s = LEAD_S + voiced_span(speak(QUESTION))[0]
    rng = random.Random(8)
    results = []
    async with VoiceClient(url) as client:
        await client.connect()
        talk = Conversation(client)
        for n in range(interruptions):
            delay = rng.uniform(0.8, 2.5)  # into the answer's audio
            result = await interrupt_once(talk, question, voice_at_s, delay)
            results.append(result)
            if result["missed"]:
                print(f"  {n + 1:2d}: missed (no user turn)")
                # Nobody was heard, so no new answer comes until someone is: the person
                # asks again (not measured), or the next round would wait in vain.
                await client.stream(question)
                continue
            print(
                f"  {n + 1:2d}: stop {result['stop_ms']:6.0f} ms, "
                f"leaked {result['leaked_bytes']:7d} bytes"
            )
    return results


def summary(results: list[dict]) -> dict:
    missed = sum(1 for r in results if r["missed"])
    results = [r for r in results if not r["missed"]]
    stops = [r["stop_ms"] for r in results]
    leaks = [r["leaked_bytes"] for r in results]
    starts = [r["turn_start_ms"] for r in results]
    return {
        "stop_ms": {"p50": median(stops), "p95": p95(stops)},
        "turn_start_ms": {"p50": median(starts), "p95": p95(starts)},
        "leaked_bytes": {"total": sum(leaks), "max": max(leaks, default=0)},
        "interruptions_leaking": sum(1 for x in leaks if x),
        "missed": missed,
        "n": len(results) + missed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interruptions", type=int, default=20)
    parser.add_argument("--reference", type=Path, help="a checkout of the code to compare with")
    parser.add_argument(
        "--reference-env", action="append", default=[], help="KEY=VALUE for the reference's server"
    )
    parser.add_argument(
        "--without", action="append", default=[], help="leave out a configuration by name"
    )
    args = parser.parse_args()

    configurations = {
        "this tree": (ROOT, {}),
        "this tree, no hold": (ROOT, {"FALSE_INTERRUPTION_MS": "0"}),
        "this tree, ECHO_GATE=false": (ROOT, {"ECHO_GATE": "false"}),
    }
    if args.reference:
        env = dict(pair.split("=", 1) for pair in args.reference_env)
        label = ", ".join([args.reference.name, *args.reference_env])
        configurations[f"reference ({label})"] = (args.reference.resolve(), env)
    for name in args.without:
        configurations.pop(name)

    agent = StreamingAgentApp(SECRET)
    runs = {}
    with serve(agent.app) as agent_base:
        for name, (tree, env) in configurations.items():
            print(f"\n{name}: {args.interruptions} interruptions of a streaming agent")
            with pipeline_process(tree, agent_base + PATH, **env) as url:
                runs[name] = asyncio.run(measure(url, args.interruptions))
    summaries = {name: summary(results) for name, results in runs.items()}
    rows = [
        [
            name,
            s["stop_ms"]["p50"],
            s["stop_ms"]["p95"],
            s["leaked_bytes"]["total"],
            f"{s['interruptions_leaking']}/{s['n']}",
            f"{s['missed']}/{s['n']}",
            s["turn_start_ms"]["p50"],
            s["turn_start_ms"]["p95"],
        ]
        for name, s in summaries.items()
    ]
    print_table(
        "Barge-in: first voiced frame at the server → last agent audio byte (goal p95 ≤ 250 ms, "
        "0 bytes after turn.start)",
        [
            "server",
            "stop p50 ms",
            "stop p95 ms",
            "bytes leaked",
            "leaking",
            "missed",
            "turn.start p50 ms",
            "turn.start p95 ms",
        ],
        rows,
    )
    save("bargein", {"summary": summaries, "interruptions": runs})


if __name__ == "__main__":
    main()
