"""The WebSocket's own limits, over a real socket to the real server: idle timeout, one live
socket per session, over-long messages, a deleted conversation's socket, Origin checks, a node
that filled up. No session here says a word: these are the endpoint's rules, not the agent's.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses

import httpx
import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from layercode_client.protocol import CloseCode
from server.app import create_app
from server.config import Settings
from tests.server.light import light_client
from tests.support.aio import run
from tests.support.servers import serve
from tests.support.voice_client import VoiceClient

IDLE_S = 1.5


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("data"),
        tts_engine="espeak",
        idle_timeout=IDLE_S,
        max_message_chars=100,
    )
    with serve(create_app(settings)) as base:
        yield base


@contextlib.asynccontextmanager
async def kept_alive(client: VoiceClient):
    """Binary frames every 0.3 s: activity the endpoint answers itself (no session involved)."""

    async def beat():
        while True:
            await client._socket.send(b"\x00")
            await asyncio.sleep(0.3)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


def test_a_silent_socket_is_closed_with_4008(url):
    async def scenario():
        async with VoiceClient(url) as client:
            await client.connect(ready=False)
            code, reason = await client.wait_closed(timeout=IDLE_S + 10)
            assert code == CloseCode.IDLE_TIMEOUT
            assert "idle" in reason

    run(scenario())


def test_a_second_socket_replaces_the_first(url):
    async def scenario():
        async with VoiceClient(url) as first, VoiceClient(url) as second:
            await first.connect(ready=False)
            async with kept_alive(first):
                second.session_id, second.resume_token = first.session_id, first.resume_token
                await second.authorize()
                async with kept_alive(second):
                    await second.connect(ready=False)
                    code, reason = await first.wait_closed()
                    assert code == CloseCode.SESSION_REPLACED
                    assert "newer connection" in reason
                    assert second.close_code is None

    run(scenario())


def test_an_over_long_text_gets_an_error_and_the_socket_goes_on(url):
    async def scenario():
        async with VoiceClient(url) as client:
            await client.connect(ready=False)
            async with kept_alive(client):
                await client.send({"type": "client.response.text", "content": "x" * 101})
                error = await client.wait_for(
                    "error", lambda m: m["code"] == "message_too_long", timeout=5
                )
                assert "MAX_MESSAGE_CHARS" in error.message["message"]
                assert client.close_code is None

    run(scenario())


@pytest.mark.parametrize(
    "frame",
    [
        '{"type": "client.response.data", "content": ' + "[" * 5000 + "]" * 5000 + "}",
        '{"type": "client.response.text", "content": "hello \\ud800"}',
        '{"type": "client.response.data", "content": {"score": NaN}}',
        '{"type": "client.response.data", "content": {"score": -Infinity}}',
    ],
    ids=["deep", "surrogate", "nan", "infinity"],
)
def test_frames_the_session_cannot_use_get_protocol_error_and_the_session_goes_on(url, frame):
    async def scenario():
        async with VoiceClient(url) as client:
            await client.connect(ready=False)
            async with kept_alive(client):
                mark = len(client.received)
                await client._socket.send(frame)
                await client.wait_for(
                    "error",
                    lambda m: m["code"] == "protocol_error" and "binary" not in m["message"],
                    after=mark,
                    timeout=5,
                )
                mark = len(client.received)
                await client.send({"type": "client.response.text", "content": "z" * 101})
                await client.wait_for(
                    "error", lambda m: m["code"] == "message_too_long", after=mark
                )
                assert client.close_code is None

    run(scenario())


def test_deleting_a_conversation_closes_its_live_socket(url):
    async def scenario():
        async with VoiceClient(url) as client:
            await client.connect(ready=False)
            async with kept_alive(client):
                async with httpx.AsyncClient() as http:
                    response = await http.delete(
                        f"{url}/api/conversations/{client.session_id}",
                        headers={"x-resume-token": client.resume_token},
                    )
                assert response.status_code == 204
                code, _ = await client.wait_closed()
                assert code == CloseCode.CONVERSATION_DELETED

    run(scenario())


def test_a_foreign_origin_may_not_open_the_socket(url):
    async def scenario():
        async with VoiceClient(url) as client:
            await client.authorize()
            await client.connect(ready=False, origin="http://evil.example")
            code, reason = await client.wait_closed()
            assert code == CloseCode.ORIGIN_REFUSED
            assert "CORS_ALLOW_ORIGINS" in reason
        # The key was not spent on a refused page: the app's own page can still use it.
        async with VoiceClient(url, authorization=client.authorization) as own_page:
            await own_page.connect(ready=False, origin=url)
            await own_page.send({"type": "client.response.text", "content": "y" * 101})
            await own_page.wait_for("error", lambda m: m["code"] == "message_too_long")

    run(scenario())


def test_a_node_that_filled_up_after_authorize_refuses_with_1013(tmp_path):
    client: TestClient = light_client(tmp_path)
    key = client.post("/api/authorize", json={"pipeline_id": "p"}).json()["client_session_key"]
    client.app.state.settings = dataclasses.replace(client.app.state.settings, max_sessions=0)
    with (
        pytest.raises(WebSocketDisconnect) as closed,
        client.websocket_connect(f"/v1/pipelines/websocket?client_session_key={key}") as socket,
    ):
        socket.receive_text()
    assert closed.value.code == CloseCode.TRY_AGAIN_LATER


def test_push_to_talk_sessions_get_their_own_idle_timeout(tmp_path):
    """A push-to-talk client sends nothing between presses: IDLE_TIMEOUT does not apply."""
    settings = Settings(
        data_dir=tmp_path,
        tts_engine="espeak",
        transcription_trigger="push_to_talk",
        idle_timeout=0.5,
        push_to_talk_idle_timeout=2.0,
    )

    async def scenario(base):
        async with VoiceClient(base) as client:
            await client.connect(ready=False)
            return await client.wait_closed(timeout=15)

    with serve(create_app(settings)) as base:
        code, reason = run(scenario(base))
    assert code == CloseCode.IDLE_TIMEOUT
    assert "nothing received for 2 s" in reason
