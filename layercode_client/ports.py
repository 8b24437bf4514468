"""What the client needs from the browser, as small interfaces.

`browser.py` implements them with Pyodide's `js` module; the tests implement them with fakes,
so everything else in the package runs in plain CPython.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class Socket(Protocol):
    def send(self, text: str) -> None: ...

    def close(self, code: int = 1000, reason: str = "") -> None: ...


class Microphone(Protocol):
    """Delivers PCM16 chunks at the requested rate to `on_chunk(pcm, level)` once opened."""

    def stop(self) -> None: ...


class Player(Protocol):
    """Plays 16 kHz PCM16 gaplessly; reports `on_drained(last_delta_id)` and its level."""

    level: float

    def play(self, pcm: bytes, turn_id: str | None, delta_id: str | None = None) -> None: ...

    def interrupt(self) -> None: ...

    def close(self) -> None: ...


class Browser(Protocol):
    async def post_json(self, url: str, body: dict) -> tuple[int, str]:
        """POST JSON; the status and the body's text. Raises OSError when unreachable."""

    async def open_socket(
        self,
        url: str,
        on_message: Callable[[str], None],
        on_close: Callable[[int, str], None],
    ) -> Socket: ...

    async def open_microphone(
        self, sample_rate: int, chunk_ms: int, on_chunk: Callable[[bytes, float], None]
    ) -> Microphone: ...

    async def open_player(
        self, sample_rate: int, on_drained: Callable[[str | None], None]
    ) -> Player: ...
