"""Fakes of the browser ports (layercode_client/ports.py), recording what the client does.

Written in the subset MicroPython runs too: the MicroPython test runner (tests/micropython/)
drives the client with these same fakes.
"""

import asyncio
import binascii
import json


def b64(pcm):
    return binascii.b2a_base64(pcm, newline=False).decode()


class FramedChunk:
    """A framed microphone chunk (ports.Microphone), opaque as the browser's (a JS String
    object): not a `str`, so the client can only send it as it came or read it via `text_of`."""

    __slots__ = ("text",)

    def __init__(self, text):
        self.text = text


class FakeSocket:
    def __init__(self, url, on_message, on_close):
        self.url = url
        self.on_message = on_message
        self.on_close = on_close
        self.sent = []  # every message, parsed
        self.framed_sent = []  # the framed microphone chunks sent, as the client passed them
        self.closed = None  # (code, reason) once closed

    def send(self, text):
        assert self.closed is None, "sent on a closed socket"
        if isinstance(text, FramedChunk):
            self.framed_sent.append(text)
            text = text.text
        self.sent.append(json.loads(text))

    def close(self, code=1000, reason=""):
        self.closed = (code, reason)

    def types(self):
        return [m["type"] for m in self.sent]

    # the server's side
    def receive(self, message):
        self.on_message(message if isinstance(message, str) else json.dumps(message))

    def drop(self, code, reason=""):
        self.closed = (code, reason)
        self.on_close(code, reason)


class FakeMicrophone:
    def __init__(self, sample_rate, chunk_ms, on_chunk, device_id=None, framing=None):
        self.framing = framing  # given: chunks come as FramedChunk messages
        self.framed = framing is not None
        self.sample_rate = sample_rate
        self.chunk_ms = chunk_ms
        self.on_chunk = on_chunk
        self.device_id = device_id
        self.stream = ("stream", device_id)
        self.stopped = False
        self.muted = False  # the track's `enabled`, inverted

    def set_muted(self, muted):
        self.muted = muted

    def stop(self):
        self.stopped = True

    def text_of(self, chunk):
        return chunk.text if self.framed else chunk

    def chunk(self, audio):
        """What `on_chunk` gets for this base64 audio: it framed, where asked (FramedChunk)."""
        return FramedChunk(self.framing[0] + audio + self.framing[1]) if self.framed else audio

    def speak(self, pcm, level=0.5, zero_crossings=None):
        if not self.stopped:
            audio = self.chunk(b64(pcm))
            if zero_crossings is None:
                self.on_chunk(audio, level)
            else:
                self.on_chunk(audio, level, zero_crossings)


class FakePlayer:
    def __init__(self, on_drained, on_started=None, outputs=()):
        self.on_drained = on_drained
        self.on_started = on_started
        self.outputs = outputs  # the deviceIds set_output_device accepts
        self.output_device = None
        self.prepared = False  # made by prepare_player, before a session
        self.started = on_drained is not None  # playing (a prepared one: after start())
        self.resumed = 0  # resume() calls
        self.failure = None  # what start() raises (a preparation that failed)
        self.preparing = None  # an asyncio.Event start() waits for while set (addModule)
        self.level = 0.0
        self.played = []  # (pcm, turn_id) per chunk
        self.delta_ids = []
        self.interrupts = 0
        self.closed = False
        self.last_delta_id = None

    def play(self, audio, turn_id, delta_id=None):
        self.played.append((binascii.a2b_base64(audio.encode()), turn_id))
        self.delta_ids.append(delta_id)
        self.last_delta_id = delta_id
        self.level = 0.6

    def interrupt(self, on_stopped=None):
        """Stops as if every chunk handed to it had played: answers with the last one's turn,
        delta id and that turn's milliseconds (16 kHz PCM16: 32 bytes a millisecond)."""
        self.interrupts += 1
        self.level = 0.0
        if on_stopped is not None and self.played:
            turn = self.played[-1][1]
            played = sum(len(pcm) for pcm, t in self.played if t == turn)
            on_stopped(turn, self.delta_ids[-1], played // 32)

    def resume(self):
        self.resumed += 1

    async def start(self, on_drained, on_started=None):
        """As BrowserPlayer's: wait for the preparation, then play, or close and raise."""
        assert self.prepared and not self.started and not self.closed
        try:
            if self.preparing is not None:
                await self.preparing.wait()
        except asyncio.CancelledError:
            self.close()
            raise
        if self.failure is not None:
            self.close()
            raise self.failure
        self.on_drained, self.on_started = on_drained, on_started
        self.started = True

    def close(self):
        self.closed = True
        self.level = 0.0

    def drain(self):
        self.level = 0.0
        self.on_drained(self.last_delta_id)

    def start_playing(self, turn_id):
        """The worklet played the first sample of `turn_id`."""
        self.on_started(turn_id)

    async def set_output_device(self, device_id):
        from layercode_client.errors import OutputDeviceNotFound

        if device_id is not None and device_id not in self.outputs:
            raise OutputDeviceNotFound(f"no audio output {device_id!r}")
        self.output_device = device_id


def device(device_id, label, kind="audioinput"):
    return {"deviceId": device_id, "device_id": device_id, "groupId": "g", "kind": kind,
            "label": label, "default": device_id == "default"}  # fmt: skip


AUTHORIZED = {
    "client_session_key": "lcsk_test",
    "session_id": "sess_1",
    "config": {
        "transcription": {"trigger": "automatic", "can_interrupt": True},
        "audio": {"input_sample_rate": 16000},
        "vad": {"enabled": False},  # as this project's pipeline: it detects turns itself
    },
    "websocket_url": "ws://127.0.0.1:9/v1/pipelines/websocket",
}


class FakeBrowser:
    secure_context = True
    origin = "http://127.0.0.1:8000"
    can_choose_output = True

    def __init__(self, answer=(200, AUTHORIZED)):
        self.answer = answer
        self.posts = []  # (url, body)
        self.sockets = []
        self.microphones = []
        self.players = []
        self.microphone_error = None
        self.framed_microphone = True  # the microphone frames its chunks when asked (browser.py)
        self.before_microphone = None  # an async callable run while "asking for the microphone"
        self.unreachable = False
        self.socket_error = None  # raised by open_socket while set (a server not back yet)
        self.devices = [device("default", "Default"), device("mic-1", "USB microphone")]
        self.watchers = []  # on_change callbacks being called on device changes
        self.outputs = [device("default", "Speakers", "audiooutput"),
                        device("spk-1", "Headphones", "audiooutput")]  # fmt: skip
        self.output_watchers = []
        self.clock = 1000.0  # ms: now(); tests move it
        self.player_failure = None  # a prepared player's start() raises this
        self.player_preparing = None  # an asyncio.Event a prepared player's start() waits for

    def now(self):
        return self.clock

    def change_devices(self, devices):
        self.devices = devices
        for watcher in list(self.watchers):
            watcher(list(devices))

    async def list_input_devices(self, request_permission=False):
        return list(self.devices)

    def watch_devices(self, on_change, kind="audioinput"):
        watchers, devices = (
            (self.watchers, self.devices)
            if kind == "audioinput"
            else (self.output_watchers, self.outputs)
        )
        watchers.append(on_change)
        on_change(list(devices))
        return lambda: watchers.remove(on_change)

    async def list_output_devices(self, request_permission=False):
        return list(self.outputs)

    @property
    def socket(self):
        return self.sockets[-1]

    @property
    def microphone(self):
        return self.microphones[-1]

    @property
    def player(self):
        return self.players[-1]

    async def post_json(self, url, body):
        self.posts.append((url, body))
        if self.unreachable:
            raise OSError("Failed to fetch")
        status, answer = self.answer
        return status, answer if isinstance(answer, str) else json.dumps(answer)

    async def open_socket(self, url, on_message, on_close):
        if self.socket_error is not None:
            raise self.socket_error
        self.sockets.append(FakeSocket(url, on_message, on_close))
        return self.sockets[-1]

    async def open_microphone(self, sample_rate, chunk_ms, on_chunk, device_id=None, framing=None):
        if self.before_microphone is not None:
            await self.before_microphone()
        if self.microphone_error is not None:
            raise self.microphone_error
        framing = framing if self.framed_microphone else None  # as a browser that cannot frame
        self.microphones.append(FakeMicrophone(sample_rate, chunk_ms, on_chunk, device_id, framing))
        return self.microphones[-1]

    async def open_player(self, sample_rate, on_drained, on_started=None):
        assert sample_rate == 16000
        outputs = [d["deviceId"] for d in self.outputs]
        self.players.append(FakePlayer(on_drained, on_started, outputs))
        return self.players[-1]

    def prepare_player(self, sample_rate):
        """A player made before a session (browser.py's BrowserPlayer.prepare): started later;
        `player_failure` is what its start() raises, `player_preparing` an Event it waits for."""
        assert sample_rate == 16000
        player = FakePlayer(None, None, [d["deviceId"] for d in self.outputs])
        player.prepared = True
        player.failure = self.player_failure
        player.preparing = self.player_preparing
        self.players.append(player)
        return player
