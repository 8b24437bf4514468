"""The `@layercode/js-sdk` 2.8.10 surface of the client, with fake browser ports, on any Python.

Every option, callback, method and getter of the SDK's `LayercodeClient`, under its camelCase and
snake_case names; what each does; wrong-state calls and bad arguments. Runs on CPython (pytest,
tests/client/test_sdk.py) and on MicroPython (runner.py).
"""

import asyncio

from layercode_client import (
    AuthorizationError,
    ConfigurationError,
    InvalidArgument,
    InvalidStateError,
    LayercodeClient,
    MicrophonePermissionDenied,
    list_audio_input_devices,
    watch_audio_input_devices,
)
from layercode_client.options import CALLBACKS
from tests.client.fakes import AUTHORIZED, FakeBrowser, device
from tests.micropython.check_client import PCM, answer, audio, settle
from tests.micropython.runner import raises, raises_async


class Calls:
    """Every callback of the SDK, in order."""

    def __init__(self):
        self.calls = []

    def options(self):
        return {name: self._recorder(name) for name in CALLBACKS}

    def _recorder(self, name):
        return lambda *args: self.calls.append((name, args))

    def of(self, name):
        return [args[0] if len(args) == 1 else args for n, args in self.calls if n == name]


def make(browser=None, **options):
    browser = browser or FakeBrowser()
    calls = Calls()
    given = calls.options()
    given.update(options)
    if "agentId" not in given and "pipeline_id" not in given:
        given["agent_id"] = "ag_1"
    if "authorizeSessionRequest" not in given:
        given.setdefault("authorize_session_endpoint", "/api/authorize")
    return LayercodeClient(given, browser=browser), browser, calls


def sent(browser, kind):
    return [m for m in browser.socket.sent if m["type"] == kind]


# -- options -------------------------------------------------------------------------------------


def test_every_sdk_option_is_accepted_in_camel_case_and_snake_case():
    def noop(*args):
        pass

    camel = {
        "agentId": "ag_1",
        "conversationId": "conv_1",
        "authorizeSessionEndpoint": "/api/authorize",
        "authorizeSessionRequest": noop,
        "metadata": {"u": 1},
        "audioInput": False,
        "audioOutput": False,
        "enableVAD": False,
        "vadResumeDelay": 300,
        "enableAmplitudeMonitoring": False,
        "deferAudioInit": True,
        "audioInputChanged": noop,
        "audioOutputChanged": noop,
        "onConnect": noop,
        "onDisconnect": noop,
        "onError": noop,
        "onDeviceSwitched": noop,
        "onDevicesChanged": noop,
        "onDataMessage": noop,
        "onMessage": noop,
        "onUserAmplitudeChange": noop,
        "onAgentAmplitudeChange": noop,
        "onStatusChange": noop,
        "onUserIsSpeakingChange": noop,
        "onAgentSpeakingChange": noop,
        "onMuteStateChange": noop,
    }
    client = LayercodeClient(camel)
    o = client.options
    assert o.agent_id == "ag_1" and o.conversation_id == "conv_1" and o.vad_resume_delay == 300
    assert o.audio_input is False and o.audio_output is False and o.defer_audio_init is True
    assert o.enable_amplitude_monitoring is False and o.on_mute_state_change is noop
    assert o.authorize_session_request is noop and o.on_user_is_speaking_change is noop
    assert client.conversationId == client.conversation_id == "conv_1"
    assert client.enableVAD is False and client.enable_vad is False
    assert client.audioInputEnabled is False and client.audio_input_enabled is False
    snake = LayercodeClient(agent_id="a", authorize_session_request=noop, on_devices_changed=noop)
    assert snake.options.on_devices_changed is noop and snake.options.audio_input is True
    # The seed's 1.x names still work: sessionId is the conversation id.
    seed = LayercodeClient(pipelineId="pl", sessionId="s1", authorizeSessionEndpoint="/a")
    assert seed.options.pipeline_id == "pl" and seed.conversationId == seed.sessionId == "s1"


def test_bad_options_fail_at_construction_naming_the_option():
    base = {"agentId": "a", "authorizeSessionEndpoint": "/a"}
    for change, named in (
        ({"audioInput": "yes"}, "audio_input"),
        ({"enableVAD": 1}, "enable_vad"),
        ({"deferAudioInit": None}, "defer_audio_init"),
        ({"vadResumeDelay": -5}, "vad_resume_delay"),
        ({"vadResumeDelay": "500"}, "vad_resume_delay"),
        ({"onMuteStateChange": 3}, "on_mute_state_change"),
        ({"authorizeSessionRequest": "fetch"}, "authorize_session_request"),
        ({"conversationId": 7}, "conversation_id"),
        ({"agentId": None}, "agent_id"),
        ({"authorizeSessionEndpoint": None}, "authorize_session_endpoint"),
    ):
        options = dict(base)
        options.update(change)
        raises(ConfigurationError, lambda o=options: LayercodeClient(o), named)


# -- connecting ----------------------------------------------------------------------------------


async def test_agent_and_conversation_ids_reach_the_authorize_endpoint_and_on_connect():
    client, browser, calls = make(conversationId="conv_9")
    await client.connect()
    _url, body = browser.posts[0]
    assert body["agent_id"] == "ag_1" and body["conversation_id"] == "conv_9"
    assert "pipeline_id" not in body and "session_id" not in body
    (info,) = calls.of("on_connect")
    assert info["conversationId"] == info["sessionId"] == "sess_1" == client.conversationId
    assert info["config"]["transcription"]["trigger"] == "automatic"
    await client.disconnect()


async def test_authorize_session_request_plain_or_async_gets_url_and_body():
    seen = []

    def plain(url, body):
        seen.append((url, body))
        return dict(AUTHORIZED)

    async def later(url, body):
        await asyncio.sleep(0)
        seen.append((url, body))
        return dict(AUTHORIZED)

    for function in (plain, later):
        client, browser, _ = make(authorizeSessionRequest=function, metadata={"u": 1})
        await client.connect()
        assert client.status == "connected" and browser.posts == []
        url, body = seen[-1]
        assert url is None and body["agent_id"] == "ag_1" and body["metadata"] == {"u": 1}
        await client.disconnect()
    client, _, _ = make(authorizeSessionRequest=plain, authorize_session_endpoint="/mine")
    await client.connect()
    assert seen[-1][0] == "/mine"
    await client.disconnect()


async def test_authorize_session_request_failures_are_authorization_errors():
    def broken(url, body):
        raise RuntimeError("backend down")

    def wrong(url, body):
        return "lcsk_1"

    def missing_key(url, body):
        return {"session_id": "s"}

    for function, words in ((broken, "backend down"), (wrong, "dict"),
                            (missing_key, "client_session_key")):  # fmt: skip
        client, browser, _calls = make(authorizeSessionRequest=function)
        await raises_async(AuthorizationError, client.connect(), words)
        assert client.status == "error" and browser.sockets == []


async def test_resume_token_is_kept_and_sent_to_resume_our_server_only():
    browser = answer(resume_token="lcrt_1")
    client, browser, _ = make(browser)
    await client.connect()
    assert "resume_token" not in browser.posts[0][1] and client.resume_token == "lcrt_1"
    await client.disconnect()
    browser.answer = (200, dict(AUTHORIZED, resume_token="lcrt_2"))
    await client.connect()
    body = browser.posts[1][1]
    assert body["conversation_id"] == "sess_1" and body["resume_token"] == "lcrt_1"
    assert client.resume_token == "lcrt_2"
    await client.disconnect()
    # Given back by the app (kept across page loads), it is sent with the conversation id.
    client, browser, _ = make(conversationId="sess_1", resume_token="lcrt_7")
    await client.connect()
    assert browser.posts[0][1]["resume_token"] == "lcrt_7"
    await client.disconnect()


async def test_vad_resume_delay_goes_to_our_pipeline_as_client_settings_never_to_the_cloud():
    client, browser, _ = make(vadResumeDelay=350)
    await client.connect()
    assert browser.socket.types() == ["client.ready", "client.settings"]
    assert sent(browser, "client.settings")[0]["false_interruption_ms"] == 350
    await client.disconnect()
    cloud = answer()
    cloud.answer[1].pop("websocket_url")
    client, browser, _ = make(cloud, vadResumeDelay=350)
    await client.connect()
    assert browser.socket.types() == ["client.ready"]
    assert browser.socket.url.startswith("wss://api.layercode.com/v1/agents/web/websocket?")
    await client.disconnect()
    client, browser, _ = make()  # not set: nothing sent
    await client.connect()
    assert browser.socket.types() == ["client.ready"]
    await client.disconnect()


# -- mute ----------------------------------------------------------------------------------------


async def test_mute_sends_no_audio_reads_zero_and_unmute_resumes_at_once():
    client, browser, calls = make()
    client.mute()  # before connecting: starts muted
    assert client.isMuted is True and calls.of("on_mute_state_change") == [True]
    await client.connect()
    mic = browser.microphone
    assert mic.muted is True
    mic.on_chunk(mic.chunk("AAAA"), 0.8)  # a chunk already on its way when the track was disabled
    assert browser.socket.types() == ["client.ready"] and client.userAudioAmplitude == 0.0
    await client.unmute()
    assert mic.muted is False and client.is_muted is False
    mic.speak(PCM, level=0.5)
    assert browser.socket.types() == ["client.ready", "client.audio"]
    assert client.user_audio_amplitude == 0.5
    client.mute()
    client.mute()  # a repeat changes nothing
    assert client.user_audio_amplitude == 0.0
    assert calls.of("on_mute_state_change") == [True, False, True]
    await client.disconnect()


# -- audio input and output ----------------------------------------------------------------------


async def test_audio_input_false_opens_no_microphone_and_the_session_works_by_text():
    client, browser, calls = make(audioInput=False)
    await client.connect()
    assert browser.microphones == [] and client.getStream() is None
    await client.sendClientResponseText("hello there")
    await client.send_client_response_data({"clicked": "yes"})
    assert sent(browser, "client.response.text") == [
        {"type": "client.response.text", "content": "hello there"}
    ]
    assert sent(browser, "client.response.data")[0]["data"] == {"clicked": "yes"}
    browser.socket.receive(audio("t1"))
    assert len(browser.player.played) == 1  # the agent still speaks
    await client.setAudioInput(True)
    assert len(browser.microphones) == 1 and client.audioInputEnabled
    assert client.get_stream() == browser.microphone.stream
    await client.set_audio_input(False)
    assert browser.microphone.stopped and client.get_stream() is None
    assert calls.of("audio_input_changed") == [True, False]
    await client.disconnect()


async def test_a_microphone_refused_later_is_reported_and_the_session_goes_on():
    client, browser, calls = make(audioInput=False)
    await client.connect()
    browser.microphone_error = MicrophonePermissionDenied("microphone access was denied")
    await raises_async(MicrophonePermissionDenied, client.set_audio_input(True), "denied")
    assert [e.code for e in calls.of("on_error")] == ["microphone_permission_denied"]
    assert client.status == "connected" and client.audio_input_enabled is False
    await client.send_client_response_text("still here")
    await client.disconnect()


async def test_audio_output_false_plays_nothing_but_text_arrives_and_the_turn_ends():
    client, browser, calls = make(audioOutput=False)
    await client.connect()
    assert browser.players == []
    socket = browser.socket
    socket.receive({"type": "turn.start", "role": "assistant", "turn_id": "t1"})
    assert client.agentSpeaking is True
    socket.receive(audio("t1", 1))
    socket.receive(audio("t1", 2))
    socket.receive({"type": "response.text", "content": "hi", "turn_id": "t1"})
    socket.receive({"type": "response.end", "turn_id": "t1"})
    finished = sent(browser, "trigger.response.audio.replay_finished")
    assert [m["last_delta_id_played"] for m in finished] == ["t1-2"]
    assert [m["type"] for m in calls.of("on_message")] == ["turn.start", "response.text",
                                                            "response.end"]  # fmt: skip
    assert client.agent_speaking is False and client.agentAudioAmplitude == 0.0
    assert calls.of("on_agent_speaking_change") == [True, False]
    await client.setAudioOutput(True)
    socket.receive(audio("t2"))
    assert len(browser.player.played) == 1 and calls.of("audio_output_changed") == [True]
    # Turned off while t2 plays (its response.end already came): t2 counts as played now.
    socket.receive({"type": "response.end", "turn_id": "t2"})
    await client.set_audio_output(False)
    assert browser.player.interrupts == 1 and client.agent_speaking is False
    finished = sent(browser, "trigger.response.audio.replay_finished")
    assert [m["last_delta_id_played"] for m in finished] == ["t1-2", "t2-1"]
    await client.disconnect()


async def test_defer_audio_init_touches_no_audio_until_asked():
    client, browser, _ = make(deferAudioInit=True)
    await client.connect()
    assert browser.microphones == [] and browser.players == [] and client.status == "connected"
    await client.audioInputConnect()
    assert len(browser.microphones) == 1
    await client.audio_input_disconnect()
    assert browser.microphone.stopped and client.get_stream() is None
    await client.set_audio_output(True)
    assert len(browser.players) == 1
    await client.disconnect()


# -- speaking states -----------------------------------------------------------------------------


async def test_speaking_states_follow_turns_and_playback():
    client, browser, calls = make()
    await client.connect()
    socket = browser.socket
    socket.receive({"type": "turn.start", "role": "user", "turn_id": "u1"})
    assert client.userSpeaking is True
    socket.receive({"type": "turn.end", "role": "user", "turn_id": "u1"})
    socket.receive(audio("t1"))
    assert client.user_speaking is False and client.agentSpeaking is True
    browser.player.drain()
    assert client.agent_speaking is False
    socket.receive(audio("t2"))
    socket.receive({"type": "turn.start", "role": "user", "turn_id": "u2"})  # barge-in
    assert client.agent_speaking is False and client.user_speaking is True
    await client.disconnect()
    assert client.user_speaking is False
    assert calls.of("on_user_is_speaking_change") == [True, False, True, False]
    assert calls.of("on_agent_speaking_change") == [True, False, True, False]


async def test_push_to_talk_triggers_are_awaitable_and_set_user_speaking():
    config = {"transcription": {"trigger": "push_to_talk"}, "audio": {"input_sample_rate": 16000}}
    client, _browser, calls = make(answer(config=config))
    raises(InvalidStateError, client.triggerUserTurnStarted, "call connect() first")
    await client.connect()
    await client.triggerUserTurnStarted()
    assert client.userSpeaking is True
    await client.triggerUserTurnFinished()
    assert calls.of("on_user_is_speaking_change") == [True, False]
    await client.disconnect()


# -- wrong state and bad arguments ---------------------------------------------------------------


async def test_wrong_state_calls_say_what_to_call_first():
    client, _browser, _ = make()
    for call in (lambda: client.send_client_response_text("hi"),
                 lambda: client.sendClientResponseData({}),
                 client.audio_input_connect, client.trigger_user_turn_started):  # fmt: skip
        raises(InvalidStateError, call, "call connect() first")
    await client.connect()
    raises(InvalidStateError, client.trigger_user_turn_started, "not push-to-talk")
    await client.disconnect()
    raises(InvalidStateError, lambda: client.send_client_response_text("hi"), "connect()")


async def test_bad_arguments_are_refused_saying_what_is_needed():
    client, browser, _ = make()
    await client.connect()
    for call, words in (
        (lambda: client.send_client_response_text(""), "non-empty text"),
        (lambda: client.send_client_response_text(3), "non-empty text"),
        (lambda: client.send_client_response_data({"x": object()}), "JSON"),
        (lambda: client.set_audio_input("on"), "True or False"),
        (lambda: client.set_audio_output(None), "True or False"),
        (lambda: client.set_input_device(""), "device id"),
        (lambda: client.set_preferred_input_device(5), "device id"),
        (lambda: watch_audio_input_devices(None, browser=browser), "function"),
    ):
        raises(InvalidArgument, call, words)
    assert browser.socket.types() == ["client.ready"]
    await client.disconnect()


# -- devices -------------------------------------------------------------------------------------


async def test_devices_are_listed_and_a_chosen_one_is_used_without_dropping_the_session():
    client, browser, calls = make()
    await client.connect()
    devices = await client.listDevices()
    assert [d["deviceId"] for d in devices] == ["default", "mic-1"] and devices[0]["default"]
    assert calls.of("on_devices_changed") == [devices]
    first = browser.microphone
    await client.setInputDevice("mic-1")
    assert first.stopped and browser.microphone.device_id == "mic-1"
    assert calls.of("on_device_switched") == ["mic-1"] and len(browser.sockets) == 1
    await client.set_preferred_input_device(None)  # follow the system default again
    assert browser.microphone.device_id is None and calls.of("on_device_switched")[-1] == "default"
    await client.disconnect()
    assert browser.watchers == []


async def test_hot_swap_moves_to_the_default_when_the_device_in_use_goes_away():
    client, browser, calls = make()
    await client.connect()
    await client.set_input_device("mic-1")
    browser.change_devices([device("default", "Default"), device("mic-2", "Headset")])
    await settle()
    assert calls.of("on_device_switched") == ["mic-1", "default"]
    assert browser.microphone.device_id is None and not browser.microphone.stopped
    assert client.status == "connected" and len(browser.sockets) == 1
    assert [d["deviceId"] for d in calls.of("on_devices_changed")[-1]] == ["default", "mic-2"]
    # A device that comes and goes while the default is in use changes nothing.
    browser.change_devices([device("default", "Default")])
    await settle()
    assert calls.of("on_device_switched") == ["mic-1", "default"]
    await client.disconnect()


async def test_module_functions_list_and_watch_devices():
    browser = FakeBrowser()
    devices = await list_audio_input_devices(browser=browser)
    assert [d["label"] for d in devices] == ["Default", "USB microphone"]
    seen = []
    stop = watch_audio_input_devices(seen.append, browser=browser)
    browser.change_devices([device("default", "Default")])
    stop()
    browser.change_devices([])
    assert [len(d) for d in seen] == [2, 1]


# -- hang-up -------------------------------------------------------------------------------------


async def test_an_agent_hang_up_is_a_normal_disconnect_with_its_reason():
    client, browser, calls = make()
    await client.connect()
    browser.socket.drop(4003, "the agent ended the call")
    await settle()
    assert client.status == "disconnected" and calls.of("on_error") == []
    assert calls.of("on_disconnect") == [()] and browser.microphone.stopped
    assert client.disconnect_reason == {"code": 4003, "reason": "the agent ended the call"}
    assert calls.of("on_status_change") == ["connecting", "connected", "disconnected"]


async def test_amplitude_monitoring_can_be_turned_off():
    client, _browser, calls = make(enableAmplitudeMonitoring=False, amplitude_hz=200.0)
    await client.connect()
    await asyncio.sleep(0.03)
    await client.disconnect()
    assert calls.of("on_user_amplitude_change") == calls.of("on_agent_amplitude_change") == []
