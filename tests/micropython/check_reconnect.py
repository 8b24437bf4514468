"""Reconnect and resume with fake browser ports, on any Python: which close codes bring the
client back and which end the session, the backoff, one re-authorization for a refused key,
the microphone and player kept open, and each `response.data` delivered once across a resume.
Runs on CPython (pytest, tests/client/test_reconnect.py) and on MicroPython (runner.py)."""

import asyncio

from layercode_client import (
    AuthorizationError,
    ConnectionClosed,
    ConnectionFailed,
    InvalidStateError,
    LayercodeClient,
    MicrophoneNotFound,
)
from tests.client.fakes import AUTHORIZED, FakeBrowser
from tests.micropython.runner import raises

RECONNECT_CODES = (1001, 1006, 1011, 1012, 1013)
ENDING_CODES = (1000, 4003, 4004, 4008, 4009, 4010, 4011)
ENDED_NORMALLY = (1000, 4003)


def authorization(**changes):
    body = dict(AUTHORIZED)
    body["resume_token"] = "lcrt_1"
    body["data_seq"] = 0
    body.update(changes)
    return body


class Calls:
    def __init__(self):
        self.calls = []

    def options(self):
        names = ("on_connect", "on_disconnect", "on_error", "on_data_message", "on_status_change",
                 "on_reconnecting", "on_reconnected")  # fmt: skip
        return {name: self._recorder(name) for name in names}

    def _recorder(self, name):
        return lambda *args: self.calls.append((name, args))

    def of(self, name):
        return [args[0] if args else None for called, args in self.calls if called == name]


def make(answer=None, **options):
    browser = FakeBrowser((200, answer or authorization()))
    calls = Calls()
    given = calls.options()
    given.update({"reconnect_delay_ms": 1, "reconnect_max_delay_ms": 4})
    given.update(options)
    client = LayercodeClient(
        browser=browser, agent_id="ag_1", authorize_session_endpoint="/api/authorize", **given
    )
    return client, browser, calls


async def until(condition):
    """Wait for `condition()` (the runner's time limit bounds the wait)."""
    while not condition():
        await asyncio.sleep(0.001)


def types(socket):
    return [m["type"] for m in socket.sent]


def data(seq, n):
    return {"type": "response.data", "content": {"n": n}, "turn_id": f"t{n}", "seq": seq}


async def test_each_reconnect_code_brings_the_session_back_with_the_same_audio():
    for code in RECONNECT_CODES:
        client, browser, calls = make()
        await client.connect()
        microphone, player = browser.microphone, browser.player
        browser.socket.drop(code, "gone")
        assert client.status == "reconnecting"
        await until(lambda c=client: c.status == "connected")
        assert len(browser.posts) == 2 and len(browser.sockets) == 2, code
        body = browser.posts[1][1]
        assert body["conversation_id"] == "sess_1" and body["resume_token"] == "lcrt_1"
        # The microphone and the player never closed: no permission is asked again.
        assert browser.microphones == [microphone] and not microphone.stopped
        assert browser.players == [player] and not player.closed
        assert types(browser.socket) == ["client.resume", "client.ready"]
        statuses = calls.of("on_status_change")
        assert statuses == ["connecting", "connected", "reconnecting", "connected"], statuses
        (reconnecting,) = calls.of("on_reconnecting")
        assert reconnecting["code"] == code and reconnecting["attempt"] == 1
        (reconnected,) = calls.of("on_reconnected")
        assert reconnected["conversationId"] == "sess_1" and reconnected["attempts"] == 1
        assert calls.of("on_connect") != [] and len(calls.of("on_connect")) == 1
        assert calls.of("on_disconnect") == [] and calls.of("on_error") == []
        microphone.speak(b"\x01\x00" * 800)  # audio flows on the new socket
        assert types(browser.socket)[-1] == "client.audio"
        await client.disconnect()


async def test_a_server_taking_another_input_rate_gets_the_microphone_at_that_rate():
    """The reconnect lands on a pipeline whose config asks for 8 kHz: the microphone opens
    again at 8 kHz (muted if it was), then the 16 kHz one stops; its chunks meanwhile never
    reach the wire. Back at the same rate, nothing is reopened."""
    client, browser, calls = make()
    await client.connect()
    old = browser.microphone
    assert old.sample_rate == 16000
    client.mute()
    config = dict(AUTHORIZED["config"], audio={"input_sample_rate": 8000})
    browser.answer = (200, authorization(config=config))

    async def while_asking():  # the new socket opens side by side; the old microphone runs
        await until(lambda: len(browser.sockets) == 2)
        client.unmute()
        old.speak(b"\x01\x00" * 1600)
        client.mute()

    browser.before_microphone = while_asking
    browser.socket.drop(1012, "restarting")
    await until(lambda: client.status == "connected")
    assert client.config.input_sample_rate == 8000
    new = browser.microphone
    assert new is not old and new.sample_rate == 8000 and new.muted
    assert old.stopped and not new.stopped and client.get_stream() == new.stream
    assert "client.audio" not in types(browser.socket)
    client.unmute()
    new.speak(b"\x02\x00" * 800)
    assert types(browser.socket)[-1] == "client.audio"
    assert calls.of("on_error") == []
    browser.before_microphone = None
    browser.socket.drop(1006, "")  # the same rate again: the microphone is kept
    await until(lambda: client.status == "connected" and len(browser.sockets) == 3)
    assert browser.microphone is new and not new.stopped
    await client.disconnect()
    assert new.stopped


async def test_a_microphone_that_cannot_reopen_at_the_new_rate_leaves_a_text_session():
    client, browser, calls = make()
    await client.connect()
    old = browser.microphone
    config = dict(AUTHORIZED["config"], audio={"input_sample_rate": 8000})
    browser.answer = (200, authorization(config=config))
    browser.microphone_error = MicrophoneNotFound("no usable microphone was found")
    browser.socket.drop(1012, "restarting")
    await until(lambda: client.status == "connected")
    assert old.stopped and client.get_stream() is None
    assert [e.code for e in calls.of("on_error")] == ["microphone_not_found"]
    client.send_client_response_text("typed instead")
    assert types(browser.socket)[-1] == "client.response.text"
    await client.disconnect()


async def test_other_codes_end_the_session():
    for code in ENDING_CODES:
        client, browser, calls = make()
        await client.connect()
        browser.socket.drop(code, "over")
        await until(lambda c=client: c.status in ("disconnected", "error"))
        assert len(browser.posts) == 1 and calls.of("on_reconnecting") == [], code
        assert client.status == ("disconnected" if code in ENDED_NORMALLY else "error"), code
        assert browser.microphone.stopped and browser.player.closed


async def test_the_off_switch():
    client, browser, calls = make(reconnect=False)
    await client.connect()
    browser.socket.drop(1006, "")
    await until(lambda: client.status == "error")
    assert len(browser.posts) == 1 and calls.of("on_reconnecting") == []
    assert calls.of("on_error")[0].close_code == 1006


def test_the_default_backoff_doubles_to_its_cap():
    client = LayercodeClient(agent_id="a", authorize_session_endpoint="/a", browser=FakeBrowser())
    assert [client._reconnect_delay(n) for n in range(7)] == [0.25, 0.5, 1, 2, 4, 4, 4]
    assert client.options.reconnect and client.options.reconnect_attempts == 20


async def test_backoff_while_the_server_is_away_then_it_gives_up():
    client, browser, calls = make(reconnect_attempts=5)
    await client.connect()
    browser.unreachable = True  # the authorize endpoint is down too
    browser.socket.drop(1006, "")
    await until(lambda: client.status == "error")
    delays = [info["delay_ms"] for info in calls.of("on_reconnecting")]
    assert delays == [1, 2, 4, 4, 4], delays  # 1 ms doubling to the 4 ms cap, 5 attempts
    assert len(browser.posts) == 6
    (error,) = calls.of("on_error")
    assert isinstance(error, AuthorizationError) and "could not reach" in error.message
    assert calls.of("on_disconnect") == [None] and browser.microphone.stopped
    browser.unreachable = False  # connecting again later starts with every attempt available
    await client.connect()
    browser.socket.drop(1006, "")
    await until(lambda: client.status == "connected" and len(browser.sockets) == 3)


async def test_a_server_coming_back_after_failed_attempts():
    client, browser, calls = make()
    await client.connect()
    browser.socket_error = ConnectionFailed("the voice connection failed (code 1006)")
    browser.socket.drop(1012, "the server is restarting: reconnect to resume")
    await until(lambda: len(calls.of("on_reconnecting")) == 3)
    browser.socket_error = None
    await until(lambda: client.status == "connected")
    assert [i["attempt"] for i in calls.of("on_reconnecting")][:3] == [1, 2, 3]
    assert calls.of("on_reconnected")[0]["attempts"] >= 3
    browser.socket.receive({"type": "turn.start", "role": "assistant", "turn_id": "a1"})
    assert client._reconnect_attempt == 0  # the server spoke: the next drop starts afresh


async def test_a_refused_authorization_ends_the_session():
    client, browser, calls = make()
    await client.connect()
    browser.answer = (403, {"error": "the resume_token does not match this conversation"})
    browser.socket.drop(1006, "")
    await until(lambda: client.status == "error")
    (error,) = calls.of("on_error")
    assert isinstance(error, AuthorizationError) and error.status == 403
    assert len(calls.of("on_reconnecting")) == 1


async def test_a_refused_key_is_authorized_again_once():
    client, browser, calls = make()
    await client.connect()
    browser.socket.drop(4001, "client_session_key is unknown or expired")
    await until(lambda: client.status == "connected" and len(browser.sockets) == 2)
    assert calls.of("on_reconnecting")[0]["delay_ms"] == 0  # at once
    browser.socket.drop(4002, "client_session_key was already used")  # again, no frame between
    await until(lambda: client.status == "error")
    assert len(browser.posts) == 2
    (error,) = calls.of("on_error")
    assert isinstance(error, ConnectionClosed) and error.close_code == 4002


async def test_while_reconnecting_sending_says_so_and_disconnect_stops_it():
    client, browser, calls = make(reconnect_delay_ms=60_000, reconnect_max_delay_ms=60_000)
    await client.connect()
    browser.socket.drop(1006, "")
    raises(InvalidStateError, lambda: client.send_client_response_text("hi"), "reconnecting")
    await client.connect()  # a reconnect is on its way: no second session
    assert len(browser.posts) == 1 and client.status == "reconnecting"
    await client.disconnect()
    assert client.status == "disconnected" and len(browser.posts) == 1
    assert calls.of("on_disconnect") == [None] and calls.of("on_error") == []
    assert browser.microphone.stopped and browser.player.closed


async def test_each_data_message_is_delivered_once_across_a_resume():
    client, browser, calls = make()
    await client.connect()
    assert types(browser.socket) == ["client.resume", "client.ready"]  # new: nothing to replay
    assert browser.socket.sent[0]["last_data_seq"] == 0
    browser.socket.receive(data(1, 1))
    browser.socket.receive(data(2, 2))
    browser.socket.drop(1012, "restarting")
    await until(lambda: client.status == "connected")
    resume = browser.socket.sent[0]
    assert resume == {"type": "client.resume", "last_data_seq": 2}
    for message in (data(2, 2), data(3, 3), data(1, 1), data(4, 4)):  # replayed, then new
        browser.socket.receive(message)
    assert [m["content"]["n"] for m in calls.of("on_data_message")] == [1, 2, 3, 4]
    assert calls.of("on_data_message")[2]["seq"] == 3


async def test_a_gap_is_filled_at_the_next_resume_and_never_delivered_twice():
    client, browser, calls = make()
    await client.connect()
    browser.socket.receive(data(1, 1))
    browser.socket.receive(data(3, 3))  # 2 went to a socket another node had not seen die
    browser.socket.drop(1006, "")
    await until(lambda: client.status == "connected")
    assert browser.socket.sent[0] == {"type": "client.resume", "last_data_seq": 1}
    for message in (data(2, 2), data(3, 3), data(4, 4)):
        browser.socket.receive(message)
    assert [m["seq"] for m in calls.of("on_data_message")] == [1, 3, 2, 4]
    browser.socket.drop(1006, "")
    await until(lambda: client.status == "connected")
    assert browser.socket.sent[0] == {"type": "client.resume", "last_data_seq": 4}


async def test_a_resumed_conversation_starts_counting_where_the_server_is():
    client, browser, calls = make(authorization(data_seq=7), conversation_id="sess_1")
    await client.connect()
    assert browser.socket.sent[0] == {"type": "client.resume", "last_data_seq": 7}
    browser.socket.receive(data(7, 7))  # delivered to an earlier page: not again
    browser.socket.receive(data(8, 8))
    assert [m["seq"] for m in calls.of("on_data_message")] == [8]


async def test_against_the_cloud_nothing_beyond_the_official_messages_is_sent():
    cloud = {"client_session_key": "k", "session_id": "sess_1"}  # no additions
    client, browser, calls = make(cloud)
    await client.connect()
    browser.socket.receive({"type": "response.data", "content": {"a": 1}, "turn_id": "t"})
    browser.socket.drop(1006, "")
    await until(lambda: client.status == "connected")
    assert "resume_token" not in browser.posts[1][1]
    assert browser.posts[1][1]["conversation_id"] == "sess_1"
    assert [types(s) for s in browser.sockets] == [["client.ready"], ["client.ready"]]
    browser.socket.receive({"type": "response.data", "content": {"a": 1}, "turn_id": "t"})
    assert len(calls.of("on_data_message")) == 2  # no seq: nothing is taken for a repeat


def test_reconnect_options_in_both_spellings_and_bounds():
    client = LayercodeClient(
        {"agentId": "a", "authorizeSessionEndpoint": "/a", "reconnect": False,
         "reconnectDelayMs": 100, "reconnectMaxDelayMs": 1000, "reconnectAttempts": 3,
         "onReconnecting": print, "onReconnected": print},
        browser=FakeBrowser(),
    )  # fmt: skip
    assert client.options.reconnect is False and client.options.reconnect_attempts == 3
    from layercode_client import ConfigurationError

    for name, value in (("reconnect", 1), ("reconnect_attempts", 0), ("reconnect_delay_ms", -1),
                        ("reconnect_max_delay_ms", "4")):  # fmt: skip
        options = {"agent_id": "a", "authorize_session_endpoint": "/a", name: value}
        raises(ConfigurationError, lambda o=options: LayercodeClient(o), name)
