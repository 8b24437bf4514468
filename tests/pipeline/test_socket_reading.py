"""The session reads what has arrived on its socket without waiting for the event loop.

bench/soak.py (50 sessions streaming at real time, load 4) refused 38 of them with
`audio_too_fast` while the loop's lag read 0.00 s: each frame the session waited for went
through a task raced against the stop, three turns of the loop per frame, so on a loop whose
every turn took more than 33 ms (many sessions' work, no turn late enough to count as a
hold-up) a session read less than real time, and its backlog came at once when the loop was
quiet again.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import threading
import time

from server.app import create_app
from server.config import Settings
from server.pipeline.connections import Connection
from server.pipeline.websocket import _text_frames
from tests.pipeline.test_conversation import hear_welcome, utterance
from tests.support.aio import run
from tests.support.servers import serve
from tests.support.voice_client import VoiceClient


class QueuedSocket:
    """A socket whose frames have all arrived already; then the client leaves."""

    def __init__(self, frames: int):
        self.messages = collections.deque(
            {"type": "websocket.receive", "text": f'{{"n": {n}}}'} for n in range(frames)
        )

    async def receive(self) -> dict:
        if self.messages:
            return self.messages.popleft()
        return {"type": "websocket.disconnect", "code": 1000}

    async def send_text(self, text: str) -> None:
        pass


def test_frames_that_have_arrived_are_read_without_waiting_for_the_loop():
    """Thirty frames already arrived are read in a few turns of the loop (3), not three turns
    each (the old reading took 93)."""

    async def scenario() -> tuple[int, int]:
        turns = 0
        counting = True

        def count() -> None:  # runs once per turn of the loop
            nonlocal turns
            turns += 1
            if counting:
                asyncio.get_running_loop().call_soon(count)

        connection = Connection("sess")
        frames = _text_frames(QueuedSocket(30), connection, Settings(), idle_s=60.0)
        asyncio.get_running_loop().call_soon(count)
        read = [frame async for frame in frames]
        counting = False
        return len(read), turns

    read, turns = run(scenario())
    assert read == 30
    assert turns <= 6, turns


def test_a_real_time_client_on_a_busy_loop_is_not_refused(tmp_path):
    """The server's loop is busy (each turn takes 50 ms: many sessions' work; no tick is late
    enough to count as a hold-up in `LoopLag`) while a client streams at real time; then it
    is quiet again. None of the client's audio is refused (`audio_too_fast`, the burst 1.5 s
    here): the session read it as it came, it had no backlog to read at once."""
    app = create_app(Settings(data_dir=tmp_path / "data", tts_engine="espeak", audio_burst_s=1.5))

    async def scenario(url):
        async with VoiceClient(url, input_sample_rates=[16000]) as client:
            await client.connect()
            await hear_welcome(client)
            loop = app.state.pipeline._loop_lag_task.get_loop()
            busy = threading.Event()
            busy.set()

            def work() -> None:  # 50 ms of work in every turn of the server's loop
                if busy.is_set():
                    time.sleep(0.05)
                    loop.call_soon(work)

            loop.call_soon_threadsafe(work)
            chunk = base64.b64encode(bytes(3200)).decode("ascii")
            start = time.monotonic()
            for n in range(1, 81):  # 8 s of a microphone, 100 ms at a time
                await asyncio.sleep(max(0.0, start + n * 0.1 - time.monotonic()))
                await client.send({"type": "client.audio", "content": chunk})
            busy.clear()
            mark = len(client.received)
            await client.stream(utterance("What time is it?"))  # at real time too
            heard = await client.wait_for("user.transcript", after=mark)
            return heard.message["content"], client.of_type("error")

    with serve(app) as url:
        heard, errors = run(scenario(url))
    assert "time" in heard
    assert errors == []
