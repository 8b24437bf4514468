"""What the client has beyond `@layercode/js-sdk`, with fake browser ports, on any Python: the
output device, per-turn latency (`on_metrics`), recording to a WAV, and the insecure-context
error. Runs on CPython (pytest, tests/client/test_extras.py) and on MicroPython (runner.py).
"""

import binascii
import struct

from layercode_client import (
    BrowserUnsupported,
    ConfigurationError,
    InsecureContextError,
    InvalidArgument,
    InvalidStateError,
    LayercodeClient,
    OutputDeviceNotFound,
    list_audio_output_devices,
    watch_audio_output_devices,
)
from layercode_client.recording import Recording, base64_samples, interleave
from tests.client.fakes import FakeBrowser, b64, device
from tests.micropython.check_client import settle
from tests.micropython.check_sdk import make
from tests.micropython.runner import raises, raises_async


def pcm_of(value, samples):
    """`samples` PCM16 samples, all `value`."""
    return struct.pack("<h", value) * samples


ENCODED = {}  # (value, samples) → base64: MicroPython's b2a_base64 is slow (quadratic)


def chunk(value, samples=1600):
    """Base64 of `pcm_of(value, samples)`, encoded once."""
    key = (value, samples)
    if key not in ENCODED:
        ENCODED[key] = b64(pcm_of(value, samples))
    return ENCODED[key]


def hear(browser, value, samples=1600, level=0.5):
    browser.microphone.on_chunk(browser.microphone.chunk(chunk(value, samples)), level)


def frames_of(wav):
    """(left, right) sample lists of a 16-bit stereo WAV made by the client."""
    assert wav[:4] == b"RIFF" and wav[8:16] == b"WAVEfmt "
    _size, fmt, channels, rate, byte_rate, block, bits = struct.unpack("<IHHIIHH", wav[16:36])
    assert (fmt, channels, rate, byte_rate, block, bits) == (1, 2, 16000, 64000, 4, 16)
    assert wav[36:40] == b"data"
    (size,) = struct.unpack("<I", wav[40:44])
    data = wav[44:]
    assert len(data) == size and struct.unpack("<I", wav[4:8])[0] == 36 + size
    left, right = [], []
    for i in range(0, len(data), 4):
        pair = struct.unpack("<hh", data[i : i + 4])
        left.append(pair[0])
        right.append(pair[1])
    return left, right


# -- the output device -----------------------------------------------------------------------


async def test_output_devices_are_listed_and_the_chosen_one_plays_now_and_later():
    client, browser, calls = make()
    outputs = await client.listOutputDevices()
    assert [d["deviceId"] for d in outputs] == ["default", "spk-1"]
    assert outputs[1]["kind"] == "audiooutput"
    await client.set_output_device("spk-1")  # before connecting: used when the player opens
    await client.connect()
    assert browser.player.output_device == "spk-1" == client.output_device == client.outputDevice
    await client.setOutputDevice("default")  # back to the system default, the session goes on
    assert browser.player.output_device is None and client.output_device is None
    await client.set_output_device("spk-1")
    assert browser.player.output_device == "spk-1" and len(browser.sockets) == 1
    assert calls.of("on_error") == []
    await client.disconnect()


async def test_an_unknown_output_device_is_refused_and_the_current_one_stays():
    client, browser, calls = make()
    await client.connect()
    await raises_async(OutputDeviceNotFound, client.set_output_device("gone"), "gone")
    assert browser.player.output_device is None and client.output_device is None
    assert [e.code for e in calls.of("on_error")] == ["output_device_not_found"]
    raises(InvalidArgument, lambda: client.set_output_device(""), "device id")
    raises(InvalidArgument, lambda: client.set_output_device(3), "device id")
    await client.disconnect()


async def test_a_browser_without_set_sink_id_gets_a_clear_typed_error():
    browser = FakeBrowser()
    browser.can_choose_output = False
    client, browser, _calls = make(browser)
    error = raises(BrowserUnsupported, lambda: client.set_output_device("spk-1"), "setSinkId")
    assert error.code == "browser_unsupported"


async def test_module_functions_list_and_watch_output_devices():
    browser = FakeBrowser()
    outputs = await list_audio_output_devices(browser=browser)
    assert [d["label"] for d in outputs] == ["Speakers", "Headphones"]
    seen = []
    stop = watch_audio_output_devices(seen.append, browser=browser)
    assert [len(d) for d in seen] == [2] and browser.output_watchers
    stop()
    assert browser.output_watchers == []
    raises(InvalidArgument, lambda: watch_audio_output_devices(None, browser=browser), "function")


# -- measured latency --------------------------------------------------------------------------


def speak_then_end(client, browser, voiced_at, ended_at):
    """The microphone hears speech until `voiced_at`, then silence; the server ends the user's
    turn at `ended_at`."""
    browser.clock = voiced_at - 200
    hear(browser, 3000, 160, level=0.4)
    browser.clock = voiced_at
    hear(browser, 3000, 160, level=0.4)
    browser.clock = voiced_at + 100
    hear(browser, 0, 160, level=0.0)
    browser.clock = ended_at
    browser.socket.receive({"type": "turn.end", "role": "user", "turn_id": "u1"})


def agent_turn(browser, turn_id, arrives_at, plays_at, timings=None):
    browser.clock = arrives_at
    browser.socket.receive({"type": "response.audio", "content": chunk(100, 160),
                            "turn_id": turn_id, "delta_id": turn_id + "-1"})  # fmt: skip
    browser.clock = plays_at
    browser.player.start_playing(turn_id)
    end = {"type": "response.end", "turn_id": turn_id}
    if timings is not None:
        end["timings"] = timings
    browser.socket.receive(end)


async def test_metrics_measure_from_the_heard_end_of_speech_to_the_first_sample_played():
    client, browser, calls = make()
    await client.connect()
    agent_turn(browser, "welcome", 1100, 1150)  # no user speech before it: no latency
    speak_then_end(client, browser, voiced_at=5000, ended_at=5700)
    timings = {"endpointing_ms": 650, "voice_to_voice_ms": 1300}
    agent_turn(browser, "a1", 6100, 6420, timings)
    await settle()
    welcome, answer = calls.of("on_metrics")
    assert welcome == {"turn_id": "welcome", "voice_to_voice_ms": None,
                       "user_speech_end": None, "timings": None}  # fmt: skip
    assert answer == {"turn_id": "a1", "voice_to_voice_ms": 1420,
                      "user_speech_end": "microphone", "timings": timings}  # fmt: skip
    await client.disconnect()


async def test_metrics_fall_back_to_the_turn_end_when_nothing_was_heard_and_wait_for_playback():
    client, browser, calls = make()
    await client.connect()
    client.mute()  # the microphone hears nothing: the server's turn.end is the end
    browser.clock = 2000
    browser.socket.receive({"type": "turn.end", "role": "user", "turn_id": "u1"})
    browser.clock = 2500
    browser.socket.receive({"type": "response.audio", "content": chunk(1, 160), "turn_id": "a1"})
    browser.socket.receive({"type": "response.end", "turn_id": "a1"})
    assert calls.of("on_metrics") == []  # not played yet
    browser.clock = 2900
    browser.player.start_playing("a1")
    (metric,) = calls.of("on_metrics")
    assert metric["voice_to_voice_ms"] == 900 and metric["user_speech_end"] == "turn.end"
    await client.disconnect()


async def test_metrics_for_typed_text_and_for_an_interrupted_turn():
    client, browser, calls = make()
    await client.connect()
    browser.clock = 3000
    client.send_client_response_text("hello")
    agent_turn(browser, "a1", 3300, 3350)
    # A turn interrupted before it played, then ended: reported without a latency.
    browser.socket.receive({"type": "response.audio", "content": chunk(1, 160), "turn_id": "a2"})
    browser.socket.receive({"type": "turn.start", "role": "user", "turn_id": "u2"})
    browser.socket.receive({"type": "response.end", "turn_id": "a2"})
    await settle()
    text, interrupted = calls.of("on_metrics")
    assert text["voice_to_voice_ms"] == 350 and text["user_speech_end"] == "text"
    assert interrupted["turn_id"] == "a2" and interrupted["voice_to_voice_ms"] is None
    await client.disconnect()


async def test_metrics_with_audio_output_off_report_at_the_response_end():
    client, browser, calls = make(audioOutput=False)
    await client.connect()
    browser.socket.receive({"type": "response.audio", "content": chunk(1, 160), "turn_id": "a1"})
    browser.socket.receive({"type": "response.end", "turn_id": "a1", "timings": {"x": 1}})
    (metric,) = calls.of("on_metrics")
    assert metric["voice_to_voice_ms"] is None and metric["timings"] == {"x": 1}
    await client.disconnect()


# -- recording -----------------------------------------------------------------------------------


async def test_recording_gives_a_stereo_wav_microphone_left_agent_right_in_time():
    client, browser, _calls = make()
    await client.connect()
    await raises_async(InvalidStateError, client.stop_recording(), "start_recording() first")
    browser.clock = 10_000
    client.startRecording()
    assert client.is_recording and client.isRecording
    for n in range(5):  # 50 ms of microphone at 1000, a 10 ms chunk every 10 ms
        browser.clock = 10_010 + 10 * n
        hear(browser, 1000, 160)
    browser.clock = 10_020  # the agent answers 20 ms in: 10 ms of 2000
    browser.socket.receive({"type": "response.audio", "content": chunk(2000, 160), "turn_id": "a1"})
    wav = await client.stopRecording()
    assert not client.is_recording
    left, right = frames_of(wav)
    assert len(left) == 800 and set(left) == {1000}
    assert right[:320] == [0] * 320 and right[320:480] == [2000] * 160
    assert set(right[480:]) == {0}
    await raises_async(InvalidStateError, client.stop_recording(), "start_recording() first")
    await client.disconnect()


async def test_recording_fills_gaps_with_silence_and_cuts_an_interrupted_answer():
    client, browser, _calls = make()
    await client.connect()
    browser.clock = 0
    client.start_recording()
    browser.clock = 10
    hear(browser, 1000, 160)
    client.mute()  # 580 ms muted: the chunks it drops are silence
    for n in range(58):
        browser.clock = 20 + 10 * n
        hear(browser, 1000, 160)
    client.unmute()
    browser.clock = 600
    hear(browser, 1000, 160)
    for _ in range(10):  # 100 ms of agent queued at 600 ms, interrupted at 650 ms
        browser.socket.receive(
            {"type": "response.audio", "content": chunk(2000, 160), "turn_id": "a1"}
        )
    browser.clock = 650
    browser.socket.receive({"type": "turn.start", "role": "user", "turn_id": "u2"})
    left, right = frames_of(await client.stop_recording())
    assert left[:160] == [1000] * 160 and set(left[160:9440]) == {0}
    assert left[9440:9600] == [1000] * 160
    assert set(right[:9600]) == {0} and right[9600:10400] == [2000] * 800
    assert len(right) == 10400  # the recording ends where the cut answer ends
    await client.disconnect()


async def test_recording_counts_chunks_that_come_late_and_dates_a_new_microphone_by_the_clock():
    """A stalled page gets the worklet's chunks late, in a burst: they still follow each other
    (by the clock there would be silence that never was). A microphone that starts anew (another
    device) begins where the clock says."""
    client, browser, _calls = make()
    await client.connect()
    browser.clock = 0
    client.start_recording()
    browser.clock = 100
    hear(browser, 1000)  # 100 ms chunks
    browser.clock = 800  # the page stalled for 600 ms: six chunks arrive at once
    for _ in range(6):
        hear(browser, 1000)
    await client.set_input_device("mic-1")
    browser.clock = 1500
    hear(browser, 2000)
    left, _right = frames_of(await client.stop_recording())
    assert set(left[:11200]) == {1000}, left.index(0)
    assert set(left[11200:22400]) == {0} and set(left[22400:24000]) == {2000}
    assert len(left) == 24000
    await client.disconnect()


class DecodingBrowser(FakeBrowser):
    """A page's browser port that decodes base64 itself (`Uint8Array.fromBase64` there)."""

    def __init__(self):
        super().__init__()
        self.decoded = []  # the texts it decoded

    def decode_base64(self, text):
        self.decoded.append(text)
        return binascii.a2b_base64(text.encode())


async def test_a_recording_stopped_after_the_session_ended_is_decoded_by_the_browser():
    """No microphone is left to build the WAV (its worklet does on MicroPython), so Python
    builds it, and the browser's decoder decodes the chunks: MicroPython's `binascii` is pure
    Python, slow."""
    client, browser, _calls = make(DecodingBrowser())
    await client.connect()
    browser.clock = 0
    client.start_recording()
    for n in range(3):  # 300 ms of microphone, then 100 ms of the agent
        browser.clock = 100 * (n + 1)
        hear(browser, 1000)
    browser.socket.receive({"type": "response.audio", "content": chunk(2000), "turn_id": "a1"})
    await client.disconnect()
    left, right = frames_of(await client.stop_recording())
    assert browser.decoded == [chunk(1000)] * 3 + [chunk(2000)]
    assert set(left[:4800]) == {1000} and set(left[4800:]) == {0} and len(left) == 6400
    assert set(right[:4800]) == {0} and set(right[4800:]) == {2000}


EIGHT_KHZ = b64(struct.pack("<hh", 10, 20) * 400)  # 100 ms at 8 kHz


async def test_recording_stops_at_its_maximum_and_upsamples_an_8_khz_microphone():
    browser = FakeBrowser()
    browser.answer = (200, dict(browser.answer[1], config={"audio": {"input_sample_rate": 8000}}))
    client, browser, _calls = make(browser, recording_max_s=1)
    await client.connect()
    browser.clock = 0
    client.start_recording()
    for n in range(15):  # 1.5 s at 8 kHz, of which 1 s is kept
        browser.clock = 100 * (n + 1)
        browser.microphone.on_chunk(browser.microphone.chunk(EIGHT_KHZ), 0.5)
    left, right = frames_of(await client.stop_recording())
    assert len(left) == 16000 and left[:8] == [10, 10, 20, 20, 10, 10, 20, 20]
    assert set(right) == {0}
    await client.disconnect()


async def test_recording_needs_a_session_and_its_maximum_is_bounded():
    client, _browser, _calls = make()
    raises(InvalidStateError, client.start_recording, "connect() first")
    for bad in (0, 3601, "60", None):
        raises(ConfigurationError, lambda b=bad: make(recording_max_s=b), "recording_max_s")


def test_recording_helpers():
    assert base64_samples(b64(pcm_of(1, 1))) == 1 and base64_samples(b64(pcm_of(1, 3))) == 3
    assert base64_samples(b64(pcm_of(1, 1600))) == 1600
    left = bytearray(pcm_of(1, 3))
    right = bytearray(pcm_of(-2, 3))
    assert bytes(interleave(left, right)) == struct.pack("<hhhhhh", 1, -2, 1, -2, 1, -2)
    empty = Recording(0, 5)
    assert empty.wav()[40:44] == b"\x00\x00\x00\x00" and empty.duration_s() == 0
    assert binascii.a2b_base64(b64(b"ab").encode()) == b"ab"


# -- secure context ------------------------------------------------------------------------------


async def test_an_insecure_page_gets_a_typed_error_that_says_how_to_fix_it():
    browser = FakeBrowser()
    browser.secure_context = False
    browser.origin = "http://192.168.1.20:8000"
    client, browser, calls = make(browser)
    error = await raises_async(InsecureContextError, client.connect(), "not a secure context")
    for words in ("http://192.168.1.20:8000", "HTTPS", "--ssl-certfile", "localhost"):
        assert words in error.message, words
    assert error.code == "insecure_context" and client.status == "error"
    assert browser.posts == [] and browser.microphones == []
    assert calls.of("on_error") == [error]
    # A session without audio needs neither microphone nor worklets: it works.
    text_only = LayercodeClient(agent_id="a", authorize_session_endpoint="/a", audio_input=False,
                                audio_output=False, browser=browser)  # fmt: skip
    await text_only.connect()
    assert text_only.status == "connected"
    await text_only.disconnect()
    assert device("x", "y")["kind"] == "audioinput"
