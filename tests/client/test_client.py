"""The client's state machine in plain CPython, with the browser faked (tests/client/fakes.py)."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest

from layercode_client import (
    AuthorizationError,
    ConnectionClosed,
    InvalidStateError,
    LayercodeClient,
    LayercodeError,
    MicrophonePermissionDenied,
    ProtocolError,
    ServerError,
)
from layercode_client.protocol import CLOUD_PIPELINE_WEBSOCKET_URL
from tests.client.fakes import AUTHORIZED, FakeBrowser
from tests.support.aio import run

PCM = bytes(range(256)) * 12  # 3072 bytes


class Recorder:
    """Every callback, in order."""

    def __init__(self):
        self.calls: list[tuple] = []

    def options(self) -> dict:
        names = ("on_connect", "on_disconnect", "on_error", "on_data_message", "on_message",
                 "on_status_change")  # fmt: skip
        return {name: (lambda *a, n=name: self.calls.append((n, *a))) for name in names}

    def of(self, name: str) -> list[tuple]:
        return [c[1:] for c in self.calls if c[0] == name]


def make(browser=None, **options) -> tuple[LayercodeClient, FakeBrowser, Recorder]:
    browser = browser or FakeBrowser()
    recorder = Recorder()
    client = LayercodeClient(
        browser=browser,
        pipeline_id="pl_1",
        authorize_session_endpoint="/api/authorize",
        metadata={"user": "ada"},
        **{**recorder.options(), **options},
    )
    return client, browser, recorder


def authorized(**changes) -> dict:
    answer = json.loads(json.dumps(AUTHORIZED))
    for key, value in changes.items():
        if value is None:
            answer.pop(key, None)
        else:
            answer[key] = value
    return answer


def test_connect_authorizes_opens_socket_player_microphone_then_reports_connected():
    async def scenario():
        client, browser, calls = make()
        await client.connect()
        return client, browser, calls

    client, browser, calls = run(scenario())
    url, body = browser.posts[0]
    assert url == "/api/authorize"
    assert body["pipeline_id"] == "pl_1" and body["metadata"] == {"user": "ada"}
    assert body["audio"]["input_sample_rates"] == [16000, 8000]
    assert "session_id" not in body
    assert browser.socket.url == AUTHORIZED["websocket_url"] + "?client_session_key=lcsk_test"
    assert browser.microphone.sample_rate == 16000 and browser.microphone.chunk_ms == 100
    assert browser.socket.types() == ["client.ready"]
    assert calls.of("on_status_change") == [("connecting",), ("connected",)]
    assert [i["sessionId"] for (i,) in calls.of("on_connect")] == ["sess_1"]
    assert client.status == "connected" and client.session_id == "sess_1"


def test_microphone_chunks_stream_as_client_audio():
    async def scenario():
        client, browser, _ = make()
        await client.connect()
        browser.microphone.speak(PCM, level=0.4)
        assert client.user_audio_amplitude == 0.4
        return browser

    browser = run(scenario())
    audio = browser.socket.sent[1]
    assert audio["type"] == "client.audio" and base64.b64decode(audio["content"]) == PCM


def test_without_config_or_websocket_url_the_cloud_defaults_apply():
    answer = authorized(config=None, websocket_url=None)

    async def scenario():
        client, browser, _ = make(FakeBrowser((200, answer)))
        await client.connect()
        return client, browser

    client, browser = run(scenario())
    assert browser.socket.url.startswith(CLOUD_PIPELINE_WEBSOCKET_URL + "?client_session_key=")
    assert browser.microphone.sample_rate == 8000
    assert not client.push_to_talk


def test_connect_twice_opens_one_session():
    async def scenario():
        client, browser, _ = make()
        await asyncio.gather(client.connect(), client.connect())
        await client.connect()
        return browser

    browser = run(scenario())
    assert len(browser.posts) == 1 and len(browser.sockets) == 1


def test_reconnect_resumes_the_session():
    async def scenario():
        client, browser, calls = make()
        await client.connect()
        await client.disconnect()
        await client.connect()
        return browser, calls

    browser, calls = run(scenario())
    assert browser.posts[1][1]["session_id"] == "sess_1"
    assert len(calls.of("on_disconnect")) == 1


@pytest.mark.parametrize(
    "answer,status,reason",
    [
        ((401, {"error": "invalid pipeline id"}), 401, "invalid pipeline id"),
        ((503, "upstream exploded"), 503, "upstream exploded"),
    ],
)
def test_authorization_refused(answer, status, reason):
    async def scenario():
        client, browser, calls = make(FakeBrowser(answer))
        with pytest.raises(AuthorizationError) as caught:
            await client.connect()
        return client, browser, calls, caught.value

    client, browser, calls, error = run(scenario())
    assert (
        error.status == status and error.reason == reason and error.code == "authorization_failed"
    )
    assert reason in error.message
    assert calls.of("on_error") == [(error,)]
    assert client.status == "error" and browser.sockets == []
    assert calls.of("on_disconnect") == []  # it never connected


def test_authorize_endpoint_unreachable_and_unknown_trigger():
    async def scenario(browser):
        client, _, _ = make(browser)
        with pytest.raises(AuthorizationError) as caught:
            await client.connect()
        return caught.value

    unreachable = FakeBrowser()
    unreachable.unreachable = True
    assert "could not reach" in run(scenario(unreachable)).message
    odd = authorized(config={"transcription": {"trigger": "telepathy"}})
    assert "telepathy" in run(scenario(FakeBrowser((200, odd)))).message


def test_microphone_denied_closes_what_was_opened():
    browser = FakeBrowser()
    browser.microphone_error = MicrophonePermissionDenied("microphone access was denied")

    async def scenario():
        client, _, calls = make(browser)
        with pytest.raises(MicrophonePermissionDenied):
            await client.connect()
        return client, calls

    client, calls = run(scenario())
    assert client.status == "error"
    assert calls.of("on_error")[0][0].code == "microphone_permission_denied"
    assert browser.socket.closed is not None and browser.player.closed


def audio(turn_id: str, delta: int = 1, pcm: bytes = PCM) -> dict:
    return {
        "type": "response.audio",
        "content": base64.b64encode(pcm).decode(),
        "turn_id": turn_id,
        "delta_id": f"{turn_id}-{delta}",
    }


def test_agent_audio_plays_and_replay_finished_follows_the_drain():
    async def scenario():
        client, browser, _ = make()
        await client.connect()
        browser.socket.receive(audio("t1", 1))
        browser.socket.receive(audio("t1", 2))
        assert client.agent_audio_amplitude > 0
        browser.player.drain()
        browser.socket.receive(audio("t2", 1))
        browser.player.drain()
        return browser

    browser = run(scenario())
    assert browser.player.played == [(PCM, "t1"), (PCM, "t1"), (PCM, "t2")]
    finished = [m for m in browser.socket.sent if m["type"].endswith("replay_finished")]
    assert [m["last_delta_id_played"] for m in finished] == ["t1-2", "t2-1"]
    assert all(m["reason"] == "completed" for m in finished)


@pytest.mark.parametrize("can_interrupt,stops", [(True, True), (False, False)])
def test_barge_in_stops_the_agent_and_drops_the_rest_of_its_turn(can_interrupt, stops):
    config = {"transcription": {"trigger": "automatic", "can_interrupt": can_interrupt}}

    async def scenario():
        client, browser, calls = make(FakeBrowser((200, authorized(config=config))))
        await client.connect()
        browser.socket.receive(audio("t1", 1))
        browser.socket.receive({"type": "turn.start", "role": "user", "turn_id": "u1"})
        browser.socket.receive(audio("t1", 2))  # already in flight: must not play
        browser.socket.receive(audio("t2", 1))
        return browser, calls

    browser, calls = run(scenario())
    assert (browser.player.interrupts == 1) is stops
    played = [turn for _, turn in browser.player.played]
    assert played == (["t1", "t2"] if stops else ["t1", "t1", "t2"])
    assert calls.of("on_message")[0][0]["type"] == "turn.start"


@pytest.mark.parametrize("ours", [True, False])
def test_a_barge_in_tells_our_pipeline_where_playback_stopped(ours):
    """`trigger.response.audio.interrupted` goes to this project's pipeline only (its history
    keeps what was heard); Layercode's cloud gets only the official SDK's messages."""
    answer = authorized() if ours else authorized(websocket_url=None)

    async def scenario():
        client, browser, _ = make(FakeBrowser((200, answer)))
        await client.connect()
        browser.socket.receive(audio("t1", 1))
        browser.socket.receive(audio("t1", 2))
        browser.socket.receive({"type": "turn.start", "role": "user", "turn_id": "u1"})
        browser.socket.receive({"type": "turn.start", "role": "user", "turn_id": "u2"})
        return browser

    browser = run(scenario())
    reports = [m for m in browser.socket.sent if m["type"] == "trigger.response.audio.interrupted"]
    expected = {"type": "trigger.response.audio.interrupted", "turn_id": "t1",
                "last_delta_id_played": "t1-2", "played_ms": 2 * len(PCM) // 32}  # fmt: skip
    assert reports == ([expected] if ours else [])  # the second barge-in had nothing playing


def test_every_server_message_reaches_a_callback_and_bad_frames_do_not_end_the_session():
    async def scenario():
        client, browser, calls = make()
        await client.connect()
        socket = browser.socket
        socket.receive({"type": "response.data", "content": {"heard": "hi"}, "turn_id": "t"})
        socket.receive({"type": "user.transcript", "content": "hi", "turn_id": "t"})
        socket.receive({"type": "response.text", "content": "Hello.", "turn_id": "t"})
        socket.receive({"type": "something.new", "x": 1})
        socket.receive("{not json")
        socket.receive({"type": "response.audio", "content": "%%%", "turn_id": "t"})
        socket.receive({"type": "error", "code": "agent_timeout", "message": "slow agent"})
        socket.receive({"type": "response.end", "turn_id": "t"})
        return client, calls

    client, calls = run(scenario())
    assert calls.of("on_data_message") == [({"type": "response.data", "content": {"heard": "hi"},
                                             "turn_id": "t"},)]  # fmt: skip
    kinds = [m[0]["type"] for m in calls.of("on_message")]
    assert kinds == ["user.transcript", "response.text", "response.end"]
    errors = [e[0] for e in calls.of("on_error")]
    assert [type(e) for e in errors] == [ProtocolError, ProtocolError, ServerError]
    assert errors[2].code == "agent_timeout" and errors[2].message == "slow agent"
    assert client.status == "connected"


def test_push_to_talk_gates_audio_with_preroll_and_interrupts_the_agent():
    config = {"transcription": {"trigger": "push_to_talk"}, "audio": {"input_sample_rate": 16000}}

    async def scenario():
        # The chunks below are 100 ms long.
        client, browser, _ = make(FakeBrowser((200, authorized(config=config))), chunk_ms=100)
        await client.connect()
        mic, socket = browser.microphone, browser.socket
        for n in range(5):  # before the press: kept, last 300 ms only
            mic.speak(bytes([n]) * 3200)
        assert socket.types() == ["client.ready"]
        socket.receive(audio("t1"))
        client.trigger_user_turn_started()
        client.trigger_user_turn_started()  # a repeat is ignored
        mic.speak(b"\x09" * 3200)
        client.trigger_user_turn_finished()
        mic.speak(b"\x0a" * 3200)  # after release: not sent
        return browser

    browser = run(scenario())
    sent = browser.socket.sent
    assert [m["type"] for m in sent] == ["client.ready", "trigger.turn.start", "client.audio",
                                         "client.audio", "client.audio", "client.audio",
                                         "trigger.turn.end"]  # fmt: skip
    assert sent[1]["role"] == "user" and sent[-1]["role"] == "user"
    firsts = [base64.b64decode(m["content"])[0] for m in sent if m["type"] == "client.audio"]
    assert firsts == [2, 3, 4, 9]
    assert browser.player.interrupts == 1


def test_push_to_talk_methods_need_a_push_to_talk_session():
    async def scenario():
        client, _, _ = make()
        with pytest.raises(InvalidStateError, match="not connected"):
            client.trigger_user_turn_started()
        await client.connect()
        with pytest.raises(InvalidStateError, match="automatic"):
            client.triggerUserTurnStarted()

    run(scenario())


def test_amplitudes_are_reported_steadily_and_zero_when_idle():
    levels: dict[str, list[float]] = {"user": [], "agent": []}

    async def scenario():
        client, browser, _ = make(
            amplitude_hz=50,
            on_user_amplitude_change=levels["user"].append,
            on_agent_amplitude_change=levels["agent"].append,
        )
        await client.connect()
        browser.microphone.speak(PCM, level=0.7)
        browser.socket.receive(audio("t1"))
        await asyncio.sleep(0.2)
        user_seen, agent_seen = max(levels["user"]), max(levels["agent"])
        await asyncio.sleep(0.4)  # no microphone chunk for a while: the level falls to 0
        quiet = levels["user"][-1]
        await client.disconnect()
        return user_seen, agent_seen, quiet, client

    user_seen, agent_seen, quiet, client = run(scenario())
    assert user_seen == 0.7 and agent_seen > 0.5 and quiet == 0.0
    assert len(levels["user"]) >= 20  # ~50 Hz over 0.6 s
    assert levels["user"][-1] == levels["agent"][-1] == 0.0
    assert client.user_audio_amplitude == client.agent_audio_amplitude == 0.0


def test_disconnect_releases_everything_once():
    async def scenario():
        client, browser, calls = make()
        before = asyncio.all_tasks()
        await client.connect()
        await client.disconnect()
        await client.disconnect()
        pending = asyncio.all_tasks() - before
        return client, browser, calls, pending

    client, browser, calls, pending = run(scenario())
    assert browser.microphone.stopped and browser.player.closed
    assert browser.socket.closed == (1000, "client disconnected")
    assert calls.of("on_disconnect") == [()]
    assert client.status == "disconnected"
    assert pending == set()


def test_a_server_close_cleans_up_and_an_abnormal_one_is_an_error():
    async def scenario(code, reason):
        client, browser, calls = make(reconnect=False)  # tests/client/test_reconnect.py: on
        await client.connect()
        browser.socket.drop(code, reason)
        await asyncio.sleep(0.01)
        return client, browser, calls

    client, browser, calls = run(scenario(1000, "bye"))
    assert client.status == "disconnected" and calls.of("on_error") == []
    assert calls.of("on_disconnect") == [()] and browser.microphone.stopped

    # The agent hanging up is a normal end, with its reason: not an error.
    client, browser, calls = run(scenario(4003, "the agent ended the session"))
    assert client.status == "disconnected" and calls.of("on_error") == []
    assert client.disconnect_reason == {"code": 4003, "reason": "the agent ended the session"}
    assert calls.of("on_disconnect") == [()] and browser.player.closed

    client, browser, calls = run(scenario(1011, "internal error"))
    (error,) = [e[0] for e in calls.of("on_error")]
    assert isinstance(error, ConnectionClosed)
    assert error.close_code == 1011 and error.reason == "internal error"
    assert client.status == "error" and calls.of("on_disconnect") == [()]
    assert browser.player.closed


def test_coroutine_callbacks_are_awaited():
    seen = []

    async def on_connect(info):
        await asyncio.sleep(0)
        seen.append(info["session_id"])

    async def scenario():
        client, _, _ = make(on_connect=on_connect)
        await client.connect()
        await asyncio.sleep(0.01)
        await client.disconnect()

    run(scenario())
    assert seen == ["sess_1"]


def test_disconnect_while_connecting_returns_quietly_and_leaves_nothing_open():
    async def scenario():
        client, browser, calls = make()
        asking = asyncio.Event()

        async def ask_forever():
            asking.set()
            await asyncio.Event().wait()  # the permission prompt is still open

        browser.before_microphone = ask_forever
        connecting = asyncio.ensure_future(client.connect())
        await asking.wait()
        await client.disconnect()
        await connecting  # returns, does not raise
        return client, browser, calls

    client, browser, calls = run(scenario())
    assert client.status == "disconnected"
    assert browser.socket.closed is not None and browser.player.closed
    assert browser.microphones == []
    assert calls.of("on_status_change") == [("connecting",), ("disconnected",)]
    assert calls.of("on_error") == []


def test_a_close_while_the_microphone_opens_fails_the_connect():
    async def scenario():
        client, browser, calls = make()

        async def server_hangs_up():
            browser.socket.drop(4001, "client_session_key expired")

        browser.before_microphone = server_hangs_up
        with pytest.raises(ConnectionClosed) as caught:
            await client.connect()
        return client, browser, calls, caught.value

    client, browser, calls, error = run(scenario())
    assert error.close_code == 4001 and "expired" in error.reason
    assert client.status == "error" and browser.microphone.stopped and browser.player.closed
    assert calls.of("on_connect") == [] and [e[0] for e in calls.of("on_error")] == [error]
    assert "client.ready" not in browser.socket.types()


def test_an_unexpected_failure_while_connecting_is_reported_and_cleaned_up():
    browser = FakeBrowser()
    browser.microphone_error = RuntimeError("the browser did something odd")

    async def scenario():
        client, _, calls = make(browser)
        with pytest.raises(LayercodeError) as caught:
            await client.connect()
        return client, calls, caught.value

    client, calls, error = run(scenario())
    assert "something odd" in error.message and isinstance(error.__cause__, RuntimeError)
    assert client.status == "error" and calls.of("on_error") == [(error,)]
    assert browser.socket.closed is not None and browser.player.closed


def test_replay_finished_names_the_chunk_the_player_finished_last():
    async def scenario():
        client, browser, _ = make()
        await client.connect()
        browser.socket.receive(audio("t1", 1))
        browser.socket.receive(audio("t1", 2))
        browser.player.on_drained("t1-1")  # chunk 2 reached the player after it ran dry
        browser.player.drain()
        return browser

    browser = run(scenario())
    finished = [m for m in browser.socket.sent if m["type"].endswith("replay_finished")]
    assert [m["last_delta_id_played"] for m in finished] == ["t1-1", "t1-2"]


def test_the_session_key_is_url_encoded():
    answer = authorized(client_session_key="a+b/c=", websocket_url="ws://h/ws?v=1")

    async def scenario():
        client, browser, _ = make(FakeBrowser((200, answer)))
        await client.connect()
        return browser

    assert run(scenario()).socket.url == "ws://h/ws?v=1&client_session_key=a%2Bb%2Fc%3D"


def test_connect_starts_at_once_like_the_seeds_promise():
    async def scenario():
        client, _, calls = make()
        client.connect()  # the seed's `window.layercode.connect();`, not awaited
        for _ in range(20):
            await asyncio.sleep(0)
        connected = client.status
        client.disconnect()
        for _ in range(20):
            await asyncio.sleep(0)
        return connected, client, calls

    connected, client, calls = run(scenario())
    assert connected == "connected" and client.status == "disconnected"
    assert calls.of("on_disconnect") == [()]
