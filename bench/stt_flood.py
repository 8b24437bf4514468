"""Flood: how long one utterance's transcript takes while another utterance floods the worker.

One speech worker (as on a busy node, where utterances share workers). A short phrase (~2 s of
speech, fed in 100 ms chunks as a session feeds it) is transcribed alone, then while another
utterance hands the same worker a minute of audio in one call — what a client sending audio
faster than real time leaves in its session's queue. Side by side in the same run with the
reference: the old feeding, the whole backlog in one request (`FEED_PIECE_BYTES` as large as
the flood), against today's 0.1 s pieces, one in flight per utterance. The figure is the
short phrase's wall time from its first chunk to its final transcript, median of N runs.

    ./dev bench stt_flood [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time

from common import median, print_table, save

from server.pipeline import stt
from server.pipeline.stt import RecognizerPool
from tests.support.speech import speak

CHUNK = 3200  # 100 ms at 16 kHz


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    phrase = speak("Thank you very much.")
    flood = speak("Can you help me book a table for two tonight?") * 20  # ~60 s
    pool = RecognizerPool(workers=1, spare=0, max_workers=1)
    pool.warm()
    piece = stt.FEED_PIECE_BYTES
    results: dict[str, list[float]] = {"alone": [], "flood, 0.1 s pieces": [],
                                       "flood, one request (old)": []}  # fmt: skip
    try:
        for _ in range(args.runs):
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
    finally:
        stt.FEED_PIECE_BYTES = piece
        pool.close()
    alone = median(results["alone"])
    rows = [[name, median(ms), f"{median(ms) / alone:.2f}x"] for name, ms in results.items()]
    print_table(
        f"Short phrase, first chunk to final transcript (median of {args.runs}; one worker)",
        ["case", "ms", "vs alone"],
        rows,
    )
    save("stt_flood", {"runs": args.runs, "ms": results})


if __name__ == "__main__":
    main()
