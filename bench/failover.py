"""Failover: a node killed mid-conversation → the next answered turn, on another node.

Two nodes behind HAProxy on a real Redis and PostgreSQL (tests/support/cluster.py). Each
round: a conversation with one stored turn, its node killed with SIGKILL (a crash), the client
reconnecting at once through the balancer with its session id, and the time measured from the
kill to the first audio of the agent's answer on the surviving node (which greets the caller
back with the history). The victim is then restarted and the balancer waits for it, outside the
measured time.

    ./dev bench failover [--rounds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from common import median, p95, print_table, save

from tests.support.cluster import cluster
from tests.support.engines import engine_folder, postgres_server, redis_server
from tests.support.voice_client import VoiceClient


async def one_round(balancer, nodes) -> dict:
    client = VoiceClient(balancer.url)
    await client.connect()
    mark = len(client.received)
    await client.send({"type": "client.response.text", "content": "my name is Ada"})
    await client.wait_for("response.end", after=mark)
    victim = next(n for n in nodes if n.name == client._socket.response.headers["x-served-by"])
    killed = time.perf_counter()
    await asyncio.to_thread(victim.kill)
    await client.wait_closed()
    noticed = time.perf_counter()
    again = VoiceClient(
        balancer.url, session_id=client.session_id, resume_token=client.resume_token
    )
    await again.connect()
    await again.wait_for("response.audio")
    answered = time.perf_counter()
    history_kept = "ada" in " ".join(m["content"] for m in again.of_type("response.text")).lower()
    await again.close()
    return {
        "victim": victim.name,
        "close_seen_ms": (noticed - killed) * 1000,
        "next_audio_ms": (answered - killed) * 1000,
        "history_kept": history_kept,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    rounds = []
    with (
        engine_folder("lc-failover-") as folder,
        redis_server() as redis,
        postgres_server() as postgres,
        cluster(folder, redis_url=redis.url, database_url=postgres.create_database()) as (
            balancer,
            nodes,
        ),
    ):
        for _ in range(args.rounds):
            result = asyncio.run(one_round(balancer, nodes))
            rounds.append(result)
            victim = next(n for n in nodes if n.name == result["victim"])
            victim.spawn().wait_healthy()
            balancer.wait_for_states({n.name: "UP" for n in nodes})
    close_seen = [r["close_seen_ms"] for r in rounds]
    next_audio = [r["next_audio_ms"] for r in rounds]
    kept = sum(r["history_kept"] for r in rounds)
    print_table(
        f"Failover, {len(rounds)} kills (ms from SIGKILL)",
        ["measure", "p50", "p95"],
        [
            ["client sees the close", median(close_seen), p95(close_seen)],
            ["first audio from another node", median(next_audio), p95(next_audio)],
        ],
    )
    print(f"  history carried to the next node: {kept} of {len(rounds)}")
    save("failover", {"rounds": rounds, "history_kept": kept})


if __name__ == "__main__":
    main()
