"""A plain-Python voice client for tests and benchmarks: authorize, connect, stream, listen.

It speaks the same wire protocol as the browser client (docs/protocol.md §1–§2) over a real
WebSocket, so the pipeline under test cannot tell it from a browser. Every message received is
kept, with its arrival time, so a test can assert on order and a benchmark on latency.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import websockets

CHUNK_S = 0.1  # the browser client sends about 100 ms per client.audio


@dataclass
class Received:
    message: dict
    at: float  # time.monotonic() on arrival

    @property
    def type(self) -> str:
        return self.message.get("type", "")


@dataclass
class VoiceClient:
    base_url: str  # http://127.0.0.1:PORT
    input_sample_rates: list[int] | None = field(default_factory=lambda: [16000, 8000])
    session_id: str | None = None
    resume_token: str | None = None  # the proof of ownership the last authorize returned
    authorization: dict | None = None
    authorize_headers: dict = field(default_factory=dict)  # the last authorize answer's headers
    received: list[Received] = field(default_factory=list)
    close_code: int | None = None
    close_reason: str = ""
    _socket: Any = None
    _reader: asyncio.Task | None = None
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def authorize(self, headers: dict | None = None, **extra) -> dict:
        body: dict[str, Any] = {"pipeline_id": "test", "metadata": {"from": "tests"}, **extra}
        body = {name: value for name, value in body.items() if value is not None}
        if self.session_id:
            body["session_id"] = self.session_id
            if self.resume_token:
                body["resume_token"] = self.resume_token
        if self.input_sample_rates is not None:
            body["audio"] = {"input_sample_rates": self.input_sample_rates}
        async with httpx.AsyncClient() as http:
            response = await http.post(
                f"{self.base_url}/api/authorize", json=body, headers=headers, timeout=10
            )
        response.raise_for_status()
        self.authorization = response.json()
        self.authorize_headers = dict(response.headers)
        self.session_id = self.authorization["session_id"]
        self.resume_token = self.authorization.get("resume_token")
        return self.authorization

    @property
    def input_rate(self) -> int:
        audio = ((self.authorization or {}).get("config") or {}).get("audio") or {}
        return audio.get("input_sample_rate", 8000)

    async def connect(
        self, *, key: str | None = None, ready: bool = True, origin: str | None = None
    ) -> None:
        if self.authorization is None:
            await self.authorize()
        key = key or self.authorization["client_session_key"]
        url = f"{self.authorization['websocket_url']}?client_session_key={key}"
        self._socket = await websockets.connect(url, max_size=2**22, origin=origin)
        self._reader = asyncio.create_task(self._read(), name="voice-client-reader")
        if ready:
            await self.send({"type": "client.ready"})

    async def _read(self) -> None:
        try:
            async for frame in self._socket:
                self.received.append(Received(json.loads(frame), time.monotonic()))
                self._arrived.set()
        except websockets.ConnectionClosed:
            pass
        finally:
            self.close_code = self._socket.close_code
            self.close_reason = self._socket.close_reason or ""
            self._arrived.set()

    async def send(self, message: dict) -> None:
        await self._socket.send(json.dumps(message))

    async def stream(self, pcm: bytes, *, speed: float = 1.0, chunk_s: float = CHUNK_S) -> float:
        """Send `pcm` (at the session's input rate) in `chunk_s` chunks (100 ms, as the
        official SDK; the demo page's MicroPython default is 40), paced at `speed`× real time
        like a microphone: each chunk goes out once its last sample has been "captured".
        Returns the monotonic time the stream's first sample was captured."""
        step = int(self.input_rate * chunk_s) * 2
        start = time.monotonic()
        for n, offset in enumerate(range(0, len(pcm), step)):
            due = start + (n + 1) * chunk_s / speed
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            chunk = pcm[offset : offset + step]
            await self.send(
                {"type": "client.audio", "content": base64.b64encode(chunk).decode("ascii")}
            )
        return start

    async def wait_for(
        self,
        type_: str,
        where: Callable[[dict], bool] = lambda m: True,
        *,
        after: int = 0,
        timeout: float = 20.0,
    ) -> Received:
        """The first message of `type_` (index ≥ `after`) that satisfies `where`."""
        deadline = time.monotonic() + timeout
        while True:
            for item in self.received[after:]:
                if item.type == type_ and where(item.message):
                    return item
            if self.close_code is not None:
                raise AssertionError(
                    f"closed ({self.close_code} {self.close_reason!r}) before {type_}; got "
                    f"{self.types(after)}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {type_} within {timeout} s; got {self.types(after)}")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)

    async def wait_closed(self, timeout: float = 10.0) -> tuple[int | None, str]:
        if self._reader is not None:
            await asyncio.wait_for(asyncio.shield(self._reader), timeout)
        return self.close_code, self.close_reason

    def types(self, after: int = 0) -> list[str]:
        return [item.type for item in self.received[after:]]

    def of_type(self, type_: str, after: int = 0) -> list[dict]:
        return [item.message for item in self.received[after:] if item.type == type_]

    def audio_of_turn(self, turn_id: str) -> bytes:
        return b"".join(
            base64.b64decode(m["content"])
            for m in self.of_type("response.audio")
            if m.get("turn_id") == turn_id
        )

    async def finish_playback(self, turn_id: str, timeout: float = 20.0) -> None:
        """Answer the agent's turn as a player would once its audio has played."""
        await self.wait_for("response.end", lambda m: m.get("turn_id") == turn_id, timeout=timeout)
        await self.send({"type": "trigger.response.audio.replay_finished", "reason": "completed"})

    async def close(self) -> None:
        if self._socket is not None:
            await self._socket.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    async def __aenter__(self) -> VoiceClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()


def pcm_seconds(pcm: bytes, rate: int) -> float:
    return len(pcm) / 2 / rate
