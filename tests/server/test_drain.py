"""SIGTERM drains the real server process: sessions refused, the socket closed with 1012.

The process is `python -m server` as users run it. While it drains, `/health` answers 503 (a
load balancer stops sending traffic), authorize answers 503 `draining`, and the open session
is closed with 1012 ("service restart": reconnect) once its answer has finished or the grace
period has run out.
"""

from __future__ import annotations

import asyncio
import signal
import time

import httpx

from layercode_client.protocol import CloseCode
from tests.support.aio import run
from tests.support.servers import free_port, spawn_server
from tests.support.voice_client import VoiceClient

GRACE_S = 3


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
            await client.connect(ready=False)
            process.send_signal(signal.SIGTERM)
            await wait_for_status(f"{base}/health", 503, timeout=10)
            async with httpx.AsyncClient() as http:
                refused = await http.post(f"{base}/api/authorize", json={"pipeline_id": "p"})
            assert refused.status_code == 503
            assert refused.json()["code"] == "draining"
            assert client.close_code is None  # the session is still being served
            code, reason = await client.wait_closed(timeout=GRACE_S + 10)
            assert code == CloseCode.SERVICE_RESTART
            assert "reconnect" in reason

    try:
        run(scenario(), timeout=120)
        assert process.wait(timeout=20) in (0, -signal.SIGTERM)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = log_file.read_text()
    assert "draining" in output
    assert "Traceback" not in output
