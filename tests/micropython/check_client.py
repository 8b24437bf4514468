"""The client's state machine with fake browser ports (tests/client/fakes.py), on any Python."""

import asyncio
import binascii
import json

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
from layercode_client import protocol as p
from tests.client.fakes import AUTHORIZED, FakeBrowser, b64
from tests.micropython.runner import raises, raises_async

PCM = bytes(range(256)) * 12


class Calls:
    """Every callback, in order."""

    NAMES = ("on_connect", "on_disconnect", "on_error", "on_data_message", "on_message",
             "on_status_change")  # fmt: skip

    def __init__(self):
        self.calls = []

    def options(self):
        return {name: self._recorder(name) for name in self.NAMES}

    def _recorder(self, name):
        return lambda *args: self.calls.append((name, args))

    def of(self, name):
        return [args for called, args in self.calls if called == name]


def make(browser=None, **options):
    browser = browser or FakeBrowser()
    calls = Calls()
    given = calls.options()
    given.update(options)
    client = LayercodeClient(
        browser=browser,
        pipeline_id="pl_1",
        authorize_session_endpoint="/api/authorize",
        metadata={"user": "ada"},
        **given,
    )
    return client, browser, calls


def answer(**changes):
    body = json.loads(json.dumps(AUTHORIZED))
    body.update(changes)
    return FakeBrowser((200, body))


def audio(turn_id, delta=1):
    return {"type": "response.audio", "content": b64(PCM), "turn_id": turn_id,
            "delta_id": f"{turn_id}-{delta}"}  # fmt: skip


def unb64(text):
    return binascii.a2b_base64(text.encode())


async def settle(turns=20):
    for _ in range(turns):
        await asyncio.sleep(0)


async def test_connect_authorizes_opens_player_socket_microphone_then_connected():
    client, browser, calls = make()
    await client.connect()
    url, body = browser.posts[0]
    assert url == "/api/authorize" and body["pipeline_id"] == "pl_1"
    assert body["audio"]["input_sample_rates"] == [16000, 8000]
    assert browser.socket.url == AUTHORIZED["websocket_url"] + "?client_session_key=lcsk_test"
    assert browser.microphone.sample_rate == 16000 and browser.socket.types() == ["client.ready"]
    assert client.status == "connected" and client.session_id == "sess_1"
    assert calls.of("on_status_change") == [("connecting",), ("connected",)]
    assert [i["sessionId"] for (i,) in calls.of("on_connect")] == ["sess_1"]
    browser.microphone.speak(PCM, level=0.4)
    assert client.user_audio_amplitude == 0.4
    sent = browser.socket.sent[1]
    assert sent["type"] == "client.audio" and unb64(sent["content"]) == PCM
    await client.disconnect()


async def test_a_framed_microphone_chunk_goes_to_the_socket_as_it_came():
    # The browser's recorder worklet frames each chunk as its whole client.audio message (a JS
    # String object): the client sends that object, never building the JSON in Python.
    client, browser, _calls = make()
    await client.connect()
    mic = browser.microphone
    assert mic.framed and mic.framing == p.ClientAudio.framing()
    mic.speak(PCM, level=0.4)
    chunk = browser.socket.framed_sent[0]
    assert chunk.text == p.ClientAudio(content=b64(PCM)).encode()
    assert len(browser.socket.framed_sent) == 1 and unb64(browser.socket.sent[1]["content"]) == PCM
    await client.disconnect()


async def test_a_microphone_that_cannot_frame_gets_its_chunks_encoded():
    browser = FakeBrowser()
    browser.framed_microphone = False
    client, browser, _calls = make(browser)
    await client.connect()
    browser.microphone.speak(PCM, level=0.4)
    assert browser.socket.framed_sent == [] and browser.socket.types()[1] == "client.audio"
    assert unb64(browser.socket.sent[1]["content"]) == PCM
    await client.disconnect()


async def test_connect_twice_opens_one_session_and_reconnect_resumes():
    client, browser, calls = make()
    # MicroPython's gather and create_task take coroutines: `wait()` is the connect's coroutine.
    await asyncio.gather(client.connect().wait(), client.connect().wait())
    await client.connect()
    assert len(browser.posts) == 1 and len(browser.sockets) == 1
    await client.disconnect()
    await client.connect()
    assert browser.posts[1][1]["session_id"] == "sess_1"
    assert len(calls.of("on_disconnect")) == 1
    await client.disconnect()


async def test_the_session_key_is_url_encoded():
    client, browser, _ = make(answer(client_session_key="a+b/c=", websocket_url="ws://h/ws?v=1"))
    await client.connect()
    assert browser.socket.url == "ws://h/ws?v=1&client_session_key=a%2Bb%2Fc%3D"
    await client.disconnect()


async def test_authorization_refused_is_an_error_with_its_reason():
    client, browser, calls = make(FakeBrowser((401, {"error": "invalid pipeline id"})))
    error = await raises_async(AuthorizationError, client.connect())
    assert error.status == 401 and error.reason == "invalid pipeline id"
    assert calls.of("on_error") == [(error,)] and client.status == "error"
    assert browser.sockets == [] and calls.of("on_disconnect") == []
    unreachable = FakeBrowser()
    unreachable.unreachable = True
    client, _, _ = make(unreachable)
    assert "could not reach" in (await raises_async(AuthorizationError, client.connect())).message


async def test_microphone_denied_closes_what_was_opened():
    browser = FakeBrowser()
    browser.microphone_error = MicrophonePermissionDenied("microphone access was denied")
    client, _, calls = make(browser)
    await raises_async(MicrophonePermissionDenied, client.connect())
    assert client.status == "error" and calls.of("on_error")[0][0].code == (
        "microphone_permission_denied"
    )
    assert browser.socket.closed is not None and browser.player.closed


async def test_an_unexpected_failure_is_wrapped_reported_and_cleaned_up():
    browser = FakeBrowser()
    browser.microphone_error = RuntimeError("the browser did something odd")
    client, _, calls = make(browser)
    error = await raises_async(LayercodeError, client.connect())
    assert "something odd" in error.message and calls.of("on_error") == [(error,)]
    assert browser.socket.closed is not None and browser.player.closed


async def test_agent_audio_plays_drains_and_barge_in_drops_the_rest_of_the_turn():
    client, browser, _ = make()
    await client.connect()
    browser.socket.receive(audio("t1", 1))
    browser.socket.receive(audio("t1", 2))
    assert client.agent_audio_amplitude > 0
    browser.player.drain()
    finished = [m for m in browser.socket.sent if m["type"].endswith("replay_finished")]
    assert [m["last_delta_id_played"] for m in finished] == ["t1-2"]
    browser.socket.receive({"type": "turn.start", "role": "user", "turn_id": "u1"})
    browser.socket.receive(audio("t1", 3))  # already in flight: must not play
    browser.socket.receive(audio("t2", 1))
    assert browser.player.interrupts == 1
    assert [turn for _, turn in browser.player.played] == ["t1", "t1", "t2"]
    assert browser.player.played[0][0] == PCM
    # A long frame (0.6 s, 25 600 characters): too long for one MicroPython `re` match.
    browser.socket.receive({"type": "response.audio", "content": "AAAA" * 6400, "turn_id": "t3"})
    assert browser.player.played[-1] == (bytes(19200), "t3")
    await client.disconnect()


async def test_server_messages_reach_callbacks_and_bad_frames_do_not_end_the_session():
    client, browser, calls = make()
    await client.connect()
    socket = browser.socket
    socket.receive({"type": "response.data", "content": {"heard": "hi"}, "turn_id": "t"})
    socket.receive({"type": "user.transcript", "content": "hi", "turn_id": "t"})
    socket.receive({"type": "something.new", "x": 1})
    socket.receive("{not json")
    socket.receive({"type": "response.audio", "content": "%%%", "turn_id": "t"})
    socket.receive({"type": "error", "code": "agent_timeout", "message": "slow agent"})
    assert calls.of("on_data_message")[0][0]["content"] == {"heard": "hi"}
    assert [m[0]["type"] for m in calls.of("on_message")] == ["user.transcript"]
    errors = [e[0] for e in calls.of("on_error")]
    assert [type(e) for e in errors] == [ProtocolError, ProtocolError, ServerError]
    assert errors[2].code == "agent_timeout" and client.status == "connected"
    await client.disconnect()


async def test_a_notice_reaches_on_message_with_the_error_it_resolves():
    client, browser, calls = make()
    await client.connect()
    notice = {"type": "notice", "code": "history_stored", "message": "saved again",
              "resolves": "history_unavailable"}  # fmt: skip
    browser.socket.receive(notice)
    assert [m[0] for m in calls.of("on_message")] == [notice]
    assert calls.of("on_error") == [] and client.status == "connected"
    await client.disconnect()


async def test_push_to_talk_gates_audio_with_preroll():
    config = {"transcription": {"trigger": "push_to_talk"}, "audio": {"input_sample_rate": 16000}}
    client, browser, _ = make(answer(config=config), chunk_ms=100)  # the chunks below: 100 ms
    raises(InvalidStateError, client.trigger_user_turn_started, "not connected")
    await client.connect()
    mic, socket = browser.microphone, browser.socket
    for n in range(5):  # before the press: kept, last 300 ms only
        mic.speak(bytes([n]) * 3200)
    assert socket.types() == ["client.ready"]
    client.trigger_user_turn_started()
    client.trigger_user_turn_started()  # a repeat is ignored
    mic.speak(b"\x09" * 3200)
    client.trigger_user_turn_finished()
    mic.speak(b"\x0a" * 3200)  # after release: not sent
    assert socket.types() == ["client.ready", "trigger.turn.start"] + ["client.audio"] * 4 + [
        "trigger.turn.end"
    ]
    sent = [unb64(m["content"])[0] for m in socket.sent if "content" in m]
    assert sent == [2, 3, 4, 9] and len(socket.framed_sent) == 4  # as the microphone framed them
    await client.disconnect()


async def test_disconnect_while_connecting_returns_quietly_and_leaves_nothing_open():
    client, browser, calls = make()
    asking = asyncio.Event()

    async def ask_forever():
        asking.set()
        await asyncio.Event().wait()  # the permission prompt is still open

    browser.before_microphone = ask_forever
    connecting = client.connect()
    await asking.wait()
    await client.disconnect()
    await connecting  # returns, does not raise
    assert client.status == "disconnected" and browser.microphones == []
    assert browser.socket.closed is not None and browser.player.closed
    assert calls.of("on_status_change") == [("connecting",), ("disconnected",)]


async def test_a_close_while_the_microphone_opens_fails_the_connect():
    client, browser, _ = make()

    async def server_hangs_up():
        browser.socket.drop(4001, "client_session_key expired")

    browser.before_microphone = server_hangs_up
    error = await raises_async(ConnectionClosed, client.connect())
    assert error.close_code == 4001 and client.status == "error"
    assert browser.microphone.stopped and "client.ready" not in browser.socket.types()


async def test_an_abnormal_server_close_is_an_error_and_cleans_up():
    client, browser, calls = make(reconnect=False)  # with it on: check_reconnect.py
    await client.connect()
    browser.socket.drop(1011, "boom")
    await settle()
    assert client.status == "error" and browser.microphone.stopped and browser.player.closed
    assert calls.of("on_error")[0][0].close_code == 1011
    assert len(calls.of("on_disconnect")) == 1


async def test_coroutine_callbacks_are_awaited_and_failing_ones_do_not_break_the_client():
    seen = []

    async def on_connect(info):
        await asyncio.sleep(0)
        seen.append(info["session_id"])

    def on_message(message):
        raise ValueError("a bug in the app's callback")

    client, browser, _ = make(on_connect=on_connect, on_message=on_message)
    await client.connect()
    browser.socket.receive({"type": "response.text", "content": "hi", "turn_id": "t"})
    await settle()
    assert seen == ["sess_1"] and client.status == "connected"
    await client.disconnect()


async def test_connect_starts_at_once_like_the_seeds_promise():
    client, _, calls = make()
    client.connect()  # the seed's `layercode.connect();`, not awaited
    await settle()
    assert client.status == "connected"
    client.disconnect()
    await settle()
    assert client.status == "disconnected" and calls.of("on_disconnect") == [()]
