"""What the client needs from the browser, as small interfaces.

`browser.py` implements them through PyScript (on Pyodide or MicroPython); the tests implement
them with fakes, so everything else in the package runs in plain CPython. These classes only
document the shape (no `typing.Protocol`: MicroPython has no `typing`); nothing inherits them.
"""


class Socket:
    def send(self, text: str) -> None:
        """Send a text frame: a `str`, or a framed microphone chunk as the microphone gave it."""

    def close(self, code: int = 1000, reason: str = "") -> None: ...


class Microphone:
    """Delivers base64 PCM16 chunks at the requested rate to `on_chunk(audio, level)`.

    Opened with `framing` (protocol.py's `ClientAudio.framing()`), a microphone may deliver
    each chunk as its whole `client.audio` message instead, ready for `Socket.send` as it
    is (an opaque object: the browser's keeps the text in JS); it then says `framed`."""

    stream = None  # the MediaStream
    framed = False  # chunks are whole `client.audio` messages (`framing`)

    def text_of(self, chunk) -> str:
        """A chunk as `str`: a framed one's message text, otherwise its base64 audio."""

    def set_muted(self, muted: bool) -> None:
        """Disable (or enable) the track: a disabled track captures silence only. On enabling,
        the chunk being filled goes out after a short stretch of live audio."""

    async def build_wav(self, frames: int, pieces: list):
        """Optional: a recording's WAV built by the microphone's audio worklet, or None
        (recording.py's `build_wav` does the same in Python, slowly on MicroPython)."""

    def stop(self) -> None: ...


class Player:
    """Plays 16 kHz PCM16 (base64) gaplessly; reports `on_drained(last_delta_id)`, its level.

    One from `Browser.prepare_player` is not started yet: `resume()`, then `start()`."""

    level = 0.0

    def resume(self) -> None:
        """A prepared player: let its audio run, called in the user's gesture (connect())."""

    async def start(self, on_drained, on_started=None) -> None:
        """A prepared player: wait for its preparation, then play. Raises what the preparation
        failed with (`AudioError`, `BrowserUnsupported`, ...), the player then closed."""

    def play(self, audio: str, turn_id, delta_id=None) -> None: ...

    def interrupt(self) -> None: ...

    async def set_output_device(self, device_id) -> None:
        """Play on this output (None: the default); raises OutputDeviceNotFound."""

    def close(self) -> None: ...


class Browser:
    secure_context = True  # False: no microphone, no audio worklets (InsecureContextError)
    origin = ""  # the page's origin, for error messages
    can_choose_output = True  # AudioContext.setSinkId exists

    def now(self) -> float:
        """Milliseconds on a monotonic clock (`performance.now()`)."""

    def decode_base64(self, text: str) -> bytes:
        """Optional: base64 decoded by the browser, for a recording's WAV built in Python
        (recording.py's `build_wav`; MicroPython's `binascii` is pure Python, slow)."""

    async def post_json(self, url: str, body: dict) -> tuple:
        """POST JSON; `(status, text of the body)`. Raises OSError when unreachable."""

    async def open_socket(self, url: str, on_message, on_close) -> Socket:
        """Open a WebSocket; `on_message(text)` per text frame, `on_close(code, reason)` once.

        Raises ConnectionFailed when it cannot open."""

    async def open_microphone(
        self, sample_rate: int, chunk_ms: int, on_chunk, device_id=None, framing=None
    ) -> Microphone:
        """Start the microphone (`device_id`, or the default when None); `on_chunk(audio,
        level: float, zero_crossings)` every `chunk_ms`, `audio` a framed message where the
        microphone takes `framing` (Microphone above)."""

    async def list_input_devices(self, request_permission: bool = False) -> list:
        """The audio inputs as dicts: `deviceId`, `device_id`, `groupId`, `kind`, `label`,
        `default`."""

    async def list_output_devices(self, request_permission: bool = False) -> list:
        """The audio outputs, the same dicts (`kind` `audiooutput`)."""

    def watch_devices(self, on_change, kind: str = "audioinput"):
        """Call `on_change(devices)` now and on every `devicechange`; returns `stop()`."""

    def prepare_player(self, sample_rate: int) -> Player:
        """Optional: a player whose audio (AudioContext, worklet) starts being made now, idle
        until `Player.start` (`LayercodeClient.prepare_audio`). Never raises: its failure is
        `start()`'s."""

    async def open_player(self, sample_rate: int, on_drained, on_started=None) -> Player:
        """Start the speaker; `on_drained(last_delta_id or None)` whenever its queue runs dry,
        `on_started(turn_id)` when a turn's first sample plays."""
