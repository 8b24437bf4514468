"""Voice-to-voice latency of the embedded pipeline: end of the user's speech → first agent audio.

A Python client streams real speech (made with Piper) in real time, in 100 ms chunks as a
microphone does, over a real WebSocket, and times the first `response.audio` of each answer
from the moment the speech in its input ended. The server's own per-turn split (endpointing
wait, final transcript, webhook first event, first TTS chunk) comes with each `response.end`.

Side by side in the same run: the Piper voice (the default) and espeak-ng (the light engine),
against the targets p50 ≤ 700 ms of which ≤ 150 ms after endpointing.

    python bench/latency.py [--turns 20] [--engines piper,espeak]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from common import median, p95, print_table, save, serve

from server.app import create_app
from server.config import Settings
from tests.support.speech import silence, speak, voiced_span
from tests.support.voice_client import VoiceClient

QUESTIONS = [
    "What time is it?",
    "Hello, how are you?",
    "Can you help me?",
    "What is the date today?",
    "Thank you very much.",
]
LEAD_S = 0.5
TAIL_S = 1.5
SPLIT = ("endpointing_ms", "transcript_ms", "webhook_ms", "tts_first_audio_ms", "after_endpoint_ms")


async def one_turn(client: VoiceClient, question: str) -> dict:
    speech = speak(question)
    pcm = silence(LEAD_S) + speech + silence(TAIL_S)
    mark = len(client.received)
    started = await client.stream(pcm)
    speech_end = started + LEAD_S + voiced_span(speech)[1]  # the last voiced 10 ms
    end = await client.wait_for("response.end", lambda m: m.get("timings"), after=mark)
    turn_id = end.message["turn_id"]
    first_audio = next(
        r
        for r in client.received[mark:]
        if r.type == "response.audio" and r.message["turn_id"] == turn_id
    )
    await client.send({"type": "trigger.response.audio.replay_finished"})
    heard = next(m["content"] for m in client.of_type("user.transcript", mark))
    return {
        "question": question,
        "heard": heard,
        "client_ms": round((first_audio.at - speech_end) * 1000, 1),
        **end.message["timings"],
    }


async def measure(url: str, turns: int) -> list[dict]:
    async with VoiceClient(url) as client:
        await client.connect()
        welcome = await client.wait_for("turn.start", lambda m: m["role"] == "assistant")
        await client.finish_playback(welcome.message["turn_id"])
        results = []
        for n in range(turns):
            results.append(await one_turn(client, QUESTIONS[n % len(QUESTIONS)]))
            last = results[-1]
            print(f"  turn {n + 1:2d}: {last['client_ms']:6.0f} ms  {last['heard']!r}")
        return results


def run_engine(engine: str, turns: int) -> list[dict]:
    with tempfile.TemporaryDirectory() as data:
        settings = Settings(tts_engine=engine, data_dir=Path(data))
        with serve(create_app(settings)) as url:
            print(f"\n{engine}: {turns} turns streamed in real time")
            return asyncio.run(measure(url, turns))


def summary(results: list[dict]) -> dict:
    figures = {"voice_to_voice_ms": [r["client_ms"] for r in results]}
    for name in SPLIT:
        figures[name] = [r[name] for r in results if name in r]
    return {name: {"p50": median(v), "p95": p95(v)} for name, v in figures.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--engines", default="piper,espeak")
    args = parser.parse_args()

    runs = {engine: run_engine(engine, args.turns) for engine in args.engines.split(",")}
    summaries = {engine: summary(results) for engine, results in runs.items()}
    rows = []
    for name in ("voice_to_voice_ms", *SPLIT):
        row = [name]
        for engine in runs:
            row += [summaries[engine][name]["p50"], summaries[engine][name]["p95"]]
        target = {"voice_to_voice_ms": "≤ 700", "after_endpoint_ms": "≤ 150"}.get(name, "")
        rows.append([*row, target])
    header = ["ms (server sent → client got)"]
    for engine in runs:
        header += [f"{engine} p50", f"{engine} p95"]
    print_table(
        "Voice-to-voice: end of speech → first agent audio at the client",
        [*header, "target p50"],
        rows,
    )
    save("latency", {"turns": args.turns, "summary": summaries, "turns_detail": runs})


if __name__ == "__main__":
    main()
