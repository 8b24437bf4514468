"""Fakes of the browser ports (layercode_client/ports.py), recording what the client does."""

from __future__ import annotations

import json
from dataclasses import dataclass, field


@dataclass
class FakeSocket:
    url: str
    on_message: object
    on_close: object
    sent: list[dict] = field(default_factory=list)
    closed: tuple[int, str] | None = None

    def send(self, text: str) -> None:
        assert self.closed is None, "sent on a closed socket"
        self.sent.append(json.loads(text))

    def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed = (code, reason)

    def types(self) -> list[str]:
        return [m["type"] for m in self.sent]

    # the server's side
    def receive(self, message: dict | str) -> None:
        self.on_message(message if isinstance(message, str) else json.dumps(message))

    def drop(self, code: int, reason: str = "") -> None:
        self.closed = (code, reason)
        self.on_close(code, reason)


@dataclass
class FakeMicrophone:
    sample_rate: int
    chunk_ms: int
    on_chunk: object
    stopped: bool = False

    def stop(self) -> None:
        self.stopped = True

    def speak(self, pcm: bytes, level: float = 0.5) -> None:
        self.on_chunk(pcm, level)


@dataclass
class FakePlayer:
    on_drained: object
    level: float = 0.0
    played: list[tuple[bytes, str | None]] = field(default_factory=list)
    interrupts: int = 0
    closed: bool = False
    last_delta_id: str | None = None

    def play(self, pcm: bytes, turn_id: str | None, delta_id: str | None = None) -> None:
        self.played.append((pcm, turn_id))
        self.last_delta_id = delta_id
        self.level = 0.6

    def interrupt(self) -> None:
        self.interrupts += 1
        self.level = 0.0

    def close(self) -> None:
        self.closed = True
        self.level = 0.0

    def drain(self) -> None:
        self.level = 0.0
        self.on_drained(self.last_delta_id)


AUTHORIZED = {
    "client_session_key": "lcsk_test",
    "session_id": "sess_1",
    "config": {
        "transcription": {"trigger": "automatic", "can_interrupt": True},
        "audio": {"input_sample_rate": 16000},
    },
    "websocket_url": "ws://127.0.0.1:9/v1/pipelines/websocket",
}


class FakeBrowser:
    def __init__(self, answer: tuple[int, dict | str] = (200, AUTHORIZED)):
        self.answer = answer
        self.posts: list[tuple[str, dict]] = []
        self.sockets: list[FakeSocket] = []
        self.microphones: list[FakeMicrophone] = []
        self.players: list[FakePlayer] = []
        self.microphone_error: Exception | None = None
        self.before_microphone = None  # an async callable run while "asking for the microphone"
        self.unreachable = False

    @property
    def socket(self) -> FakeSocket:
        return self.sockets[-1]

    @property
    def microphone(self) -> FakeMicrophone:
        return self.microphones[-1]

    @property
    def player(self) -> FakePlayer:
        return self.players[-1]

    async def post_json(self, url: str, body: dict) -> tuple[int, str]:
        self.posts.append((url, body))
        if self.unreachable:
            raise OSError("Failed to fetch")
        status, answer = self.answer
        return status, answer if isinstance(answer, str) else json.dumps(answer)

    async def open_socket(self, url, on_message, on_close) -> FakeSocket:
        self.sockets.append(FakeSocket(url, on_message, on_close))
        return self.sockets[-1]

    async def open_microphone(self, sample_rate, chunk_ms, on_chunk) -> FakeMicrophone:
        if self.before_microphone is not None:
            await self.before_microphone()
        if self.microphone_error is not None:
            raise self.microphone_error
        self.microphones.append(FakeMicrophone(sample_rate, chunk_ms, on_chunk))
        return self.microphones[-1]

    async def open_player(self, sample_rate, on_drained) -> FakePlayer:
        assert sample_rate == 16000
        self.players.append(FakePlayer(on_drained))
        return self.players[-1]
