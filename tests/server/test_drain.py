"""SIGTERM drains the real server process: sessions refused, the socket closed with 1012.

The process is `python -m server` as users run it. While it drains, `/health` answers 503 (a
load balancer stops sending traffic), authorize answers 503 `draining`, and the open session
is closed with 1012 ("service restart": reconnect) once its answer has finished or the grace
period has run out. Here the agent is speaking its welcome when the signal comes: it plays to
its end, and the history keeps it whole.
"""

from __future__ import annotations

import asyncio
import signal
import time

import httpx

from layercode_client.protocol import CloseCode
from server.pipeline.store import SessionStore
from tests.support.aio import run
from tests.support.servers import free_port, spawn_server
from tests.support.voice_client import VoiceClient

GRACE_S = 20  # far longer than the welcome: it ends by playing out, not by the deadline


async def wait_for_status(url: str, status: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as http:
        while True:
            try:
                if (await http.get(url, timeout=2)).status_code == status:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} never answered {status}")
            await asyncio.sleep(0.05)


def test_sigterm_drains_then_closes_with_1012(tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_file = tmp_path / "server.log"
    process = spawn_server(
        port,
        log_file,
        DATA_DIR=str(tmp_path),
        TTS_ENGINE="espeak",
        DRAIN_GRACE=str(GRACE_S),
        LOG_LEVEL="info",
    )

    async def scenario():
        await wait_for_status(f"{base}/health", 200, timeout=90)
        async with VoiceClient(base) as client:
            await client.connect()
            start = await client.wait_for("turn.start", lambda m: m["role"] == "assistant")
            welcome = start.message["turn_id"]
            await client.wait_for("response.audio")
            process.send_signal(signal.SIGTERM)
            await wait_for_status(f"{base}/health", 503, timeout=10)
            async with httpx.AsyncClient() as http:
                refused = await http.post(f"{base}/api/authorize", json={"pipeline_id": "p"})
            assert refused.status_code == 503
            assert refused.json()["code"] == "draining"
            assert client.close_code is None  # the session is still being served
            await client.finish_playback(welcome)  # the welcome played to its end
            code, reason = await client.wait_closed(timeout=GRACE_S + 10)
            assert code == CloseCode.SERVICE_RESTART
            assert "reconnect" in reason
            ends = [m for m in client.of_type("turn.end") if m["turn_id"] == welcome]
            assert ends, "the answer being spoken was cut"
            return client.session_id, " ".join(
                m["content"] for m in client.of_type("response.text") if m["turn_id"] == welcome
            )

    try:
        session_id, said = run(scenario(), timeout=120)
        assert process.wait(timeout=20) in (0, -signal.SIGTERM)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = log_file.read_text()
    assert "draining" in output
    assert "Traceback" not in output
    store = SessionStore(tmp_path / "sessions.sqlite3")
    history = run(store.history(session_id))
    run(store.close())
    assert [(t.role, t.interrupted) for t in history] == [("assistant", False)]
    assert history[0].text.split() == said.split()  # all of it was heard, and recorded
