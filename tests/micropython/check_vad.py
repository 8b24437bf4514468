"""Client-side VAD (layercode_client/vad.py): the detector, and the client gating the microphone
with it, with fake browser ports, on any Python."""

from layercode_client.vad import MAX_BUFFER_CHUNKS, VAD_END, VAD_START, SpeechDetector, VoiceGate
from tests.micropython.check_client import answer, make, settle, unb64

QUIET = 0.005  # a room: about -60 dBFS RMS
VOICE = 0.3
VOICED_ZCR = 0.08
HISS_ZCR = 0.5
CLOUD_VAD = {"enabled": True, "gate_audio": True, "buffer_frames": 3}


def chunk(n):
    """A microphone chunk, numbered so the test can tell chunks apart (short: MicroPython's
    base64 in PyScript's build is pure Python, and the client does not look at the samples)."""
    return bytes([n % 256]) * 30


def events(detector, levels, zcr=VOICED_ZCR):
    return [(i, e) for i, e in enumerate(detector.push(level, zcr) for level in levels) if e]


def test_speech_starts_after_min_speech_and_ends_after_redemption():
    detector = SpeechDetector(100, min_speech_ms=200, redemption_ms=500)
    levels = [QUIET] * 10 + [VOICE] * 10 + [QUIET] * 10
    assert events(detector, levels) == [(11, VAD_START), (24, VAD_END)]


def test_a_click_and_a_short_pause_change_nothing():
    detector = SpeechDetector(100, min_speech_ms=200, redemption_ms=500)
    levels = [QUIET] * 10 + [VOICE] + [QUIET] * 5 + [VOICE] * 5 + [QUIET] * 4 + [VOICE] * 5
    assert events(detector, levels) == [(17, VAD_START)]


def test_hiss_is_not_speech_however_loud():
    detector = SpeechDetector(100)
    assert events(detector, [QUIET] * 10 + [VOICE] * 20, zcr=HISS_ZCR) == []


def test_the_noise_floor_follows_the_room():
    """A steady hum is "speech" at first, ends within about 10 s, and speech over it starts."""
    detector = SpeechDetector(100)
    found = events(detector, [0.1] * 150)
    assert found[0] == (1, VAD_START) and found[1][1] == VAD_END and found[1][0] < 100, found
    assert len(found) == 2
    assert events(detector, [0.1] * 30 + [0.6] * 3) == [(31, VAD_START)]


def test_config_vad_in_silero_frames_is_converted_and_bounded():
    gate = VoiceGate(100, {"min_speech_frames": 10, "redemption_frames": 25})  # 320 / 800 ms
    assert (gate.detector._min_speech, gate.detector._redemption) == (4, 8)
    assert VoiceGate(100, {"buffer_frames": 10**6})._held_max == MAX_BUFFER_CHUNKS
    assert VoiceGate(100, {"buffer_frames": "x", "redemption_frames": -5})._held_max == 10
    assert VoiceGate(100, {"redemption_frames": -5}).detector._redemption == 1


def test_the_gate_holds_back_silence_and_sends_the_preroll_at_speech_start():
    gate = VoiceGate(100, CLOUD_VAD)
    for n in range(5):
        assert gate.push(n, QUIET) == (None, [])
    assert gate.push(5, VOICE, VOICED_ZCR) == (None, [])
    assert gate.push(6, VOICE, VOICED_ZCR) == (VAD_START, [3, 4, 5, 6])  # 3 held + this one
    assert gate.push(7, QUIET) == (None, [7])  # speech goes on through the pause
    assert VoiceGate(100, {"gate_audio": False}).push(0, QUIET) == (None, [0])


async def test_the_client_gates_the_microphone_and_sends_vad_events_like_the_sdk():
    config = {"transcription": {"trigger": "automatic"}, "vad": CLOUD_VAD}
    speaking = []
    client, browser, calls = make(  # 100 ms chunks: the counts below are of those
        answer(config=config), chunk_ms=100, on_user_is_speaking_change=speaking.append
    )
    await client.connect()
    mic, socket = browser.microphone, browser.socket
    for n in range(5):
        mic.speak(chunk(n), QUIET, 0.3)
    assert socket.types() == ["client.ready"]  # silence is not sent
    for n in range(5, 15):
        mic.speak(chunk(n), VOICE, VOICED_ZCR)
    for n in range(15, 25):
        mic.speak(chunk(n), QUIET, 0.3)
    sent = socket.sent[1:]
    assert sent[0] == {"type": "vad_events", "event": "vad_start"}
    heard = [unb64(m["content"])[0] for m in sent if m["type"] == "client.audio"]
    # The 3 chunks held back (pre-roll), then all until speech ends, 500 ms into the silence.
    assert heard == list(range(3, 19))
    assert sent[-1] == {"type": "vad_events", "event": "vad_end"}
    assert speaking == [True, False] and not client.user_speaking
    vad_messages = [m for (m,) in calls.of("on_message") if m["type"] == "vad_events"]
    assert [(m["event"], m["userSpeaking"]) for m in vad_messages] == [
        ("vad_start", True),
        ("vad_end", False),
    ]
    await client.disconnect()


async def test_mute_and_disconnect_end_speech_for_the_pipeline():
    config = {"transcription": {"trigger": "automatic"}, "vad": CLOUD_VAD}
    client, browser, _ = make(answer(config=config), chunk_ms=100)  # 100 ms chunks
    await client.connect()
    for _ in range(3):
        browser.microphone.speak(chunk(0), VOICE, VOICED_ZCR)
    client.mute()
    assert browser.socket.sent[-1] == {"type": "vad_events", "event": "vad_end"}
    client.unmute()
    for _ in range(3):
        browser.microphone.speak(chunk(0), VOICE, VOICED_ZCR)
    socket = browser.socket
    await client.disconnect()
    assert socket.sent[-1] == {"type": "vad_events", "event": "vad_end"} and socket.closed
    assert not client.user_speaking


async def test_no_client_vad_where_the_pipeline_says_so_in_push_to_talk_or_when_disabled():
    cases = (
        ({"transcription": {"trigger": "automatic"}, "vad": {"enabled": False}}, {}),
        ({"transcription": {"trigger": "automatic"}}, {"enable_vad": False}),
        ({"transcription": {"trigger": "automatic"}}, {"enableVAD": False}),
    )
    for config, options in cases:
        client, browser, _ = make(answer(config=config), **options)
        await client.connect()
        browser.microphone.speak(chunk(1), QUIET, 0.3)
        assert browser.socket.types() == ["client.ready", "client.audio"], (config, options)
        await client.disconnect()
    ptt = {"transcription": {"trigger": "push_to_talk"}, "vad": CLOUD_VAD}
    client, browser, _ = make(answer(config=ptt))
    await client.connect()
    for _ in range(5):
        browser.microphone.speak(chunk(1), VOICE, VOICED_ZCR)
    await settle()
    assert "vad_events" not in browser.socket.types()
    await client.disconnect()


async def test_the_default_follows_the_official_sdk_vad_on_unless_the_pipeline_turns_it_off():
    client, browser, _ = make(answer(config={"transcription": {"trigger": "automatic"}}))
    await client.connect()
    browser.microphone.speak(chunk(1), QUIET, 0.3)
    assert browser.socket.types() == ["client.ready"]
    await client.disconnect()


def test_a_shorter_chunk_keeps_the_vads_times_in_ms():
    """The floor's rates and `buffer_frames` are per 100 ms chunk (the official SDK's): at 50 ms
    chunks the floor moves as far in two chunks as in one of 100 ms, and the pre-roll keeps
    twice as many chunks (the same ms); min speech and redemption stay in ms."""
    assert VoiceGate(50, CLOUD_VAD)._held_max == 2 * VoiceGate(100, CLOUD_VAD)._held_max == 6
    long, short = SpeechDetector(100), SpeechDetector(50)
    long.push(0.002)  # quieter than the floor: it falls
    short.push(0.002)
    short.push(0.002)
    assert abs(long.floor - short.floor) < 1e-9
    long.push(0.015)  # louder, not voice: it rises
    short.push(0.015)
    short.push(0.015)
    assert abs(long.floor - short.floor) < 1e-9
    assert short._redemption == 2 * long._redemption and short._min_speech == 2 * long._min_speech
