"""The client's options: every name of the seed (1.x) and of `@layercode/js-sdk` 2.8.10, in
Python's spelling or the SDK's camelCase.

`LayercodeClient(agent_id=..., on_connect=...)` and the SDK's word-for-word
`LayercodeClient({"agentId": ..., "onConnect": ...})` build the same options; the seed's
`pipelineId` and `sessionId` still work (`sessionId` and `conversationId` are one option). A
missing required option, an unknown one or one of the wrong kind fails at construction, naming it.
"""

from .compat import MICROPYTHON
from .errors import ConfigurationError
from .protocol import ANY, DICT, STR, SUPPORTED_INPUT_SAMPLE_RATES, Record

CALLBACKS = (
    "on_connect",
    "on_disconnect",
    "on_error",
    "on_data_message",
    "on_message",
    "on_user_amplitude_change",
    "on_agent_amplitude_change",
    "on_status_change",
    "on_user_is_speaking_change",
    "on_agent_speaking_change",
    "on_mute_state_change",
    "on_device_switched",
    "on_devices_changed",
    "audio_input_changed",
    "audio_output_changed",
    "on_reconnecting",  # beyond the SDK: the connection dropped, the client is coming back
    "on_reconnected",
    "on_metrics",  # beyond the SDK: per-turn latency (metrics.py)
)
FUNCTIONS = CALLBACKS + ("authorize_session_request",)
FLAGS = (
    "audio_input",
    "audio_output",
    "enable_vad",
    "enable_amplitude_monitoring",
    "defer_audio_init",
    "reconnect",
)
RECONNECT_BOUNDS = (
    ("reconnect_delay_ms", 0, 60_000),
    ("reconnect_max_delay_ms", 0, 300_000),
    ("reconnect_attempts", 1, 1000),
)
# The microphone's chunk (`chunk_ms`): each goes out as one `client.audio`. Shorter chunks bring
# the end of the user's voice to the server sooner (the turn-end look waits for the chunk that
# carries its silence), each costs main-thread time. Since the recorder worklet frames each chunk
# as its whole message (protocol.py's `ClientAudio.framing`), 40 ms chunks cost the MicroPython
# page (the default) 0.66-0.81x the official SDK's CPU (100 ms chunks), so that is its default;
# the Pyodide page (and CPython) keeps 100 ms, as the official SDK: at 40 ms it read 1.01-1.06x
# (docs/client.md has the measurements).
CHUNK_MS_ON = {"micropython": 40, "other": 100}
CHUNK_MS = CHUNK_MS_ON["micropython" if MICROPYTHON else "other"]
CHUNK_MS_BOUNDS = (10, 1000)
RECORDING_MAX_S = 300
RECORDING_LIMIT_S = 3600  # the longest `recording_max_s` allowed (about 230 MB of WAV)
ALIASES = {"session_id": "conversation_id"}  # the seed's name → the SDK 2.x name


def snake_case(name):
    """`authorizeSessionEndpoint` → `authorize_session_endpoint`; `enableVAD` → `enable_vad`."""
    out = []
    for i, char in enumerate(name):
        if char.isupper() and i and (name[i - 1].islower() or name[i - 1].isdigit()):
            out.append("_")
        out.append(char)
    return "".join(out).lower()


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class ClientOptions(Record):
    fields = (
        (
            ("agent_id", STR, None),  # SDK 2.x; `pipeline_id` is the seed's name for it
            ("pipeline_id", STR, None),
            ("authorize_session_endpoint", STR, None),
            ("authorize_session_request", ANY, None),  # f(url, body) → the authorization dict
            ("conversation_id", STR, None),  # `session_id` in the seed
            ("resume_token", STR, None),  # proof for resuming on this project's server
            ("metadata", DICT, {}),
            ("audio_input", ANY, True),  # False: no microphone at all (a text session)
            ("audio_output", ANY, True),  # False: nothing plays (transcripts still arrive)
            ("enable_vad", ANY, True),
            ("vad_resume_delay", ANY, None),  # ms; sent to our pipeline as its barge-in window
            ("enable_amplitude_monitoring", ANY, True),
            ("defer_audio_init", ANY, False),  # no audio hardware until set_audio_*(True)
        )
        + tuple((name, ANY, None) for name in CALLBACKS)
        + (
            # Beyond the SDK: what this client can tune.
            ("input_sample_rates", ANY, SUPPORTED_INPUT_SAMPLE_RATES),  # offered, preferred first
            ("websocket_url", STR, None),  # overrides the authorize response's and the cloud's
            ("chunk_ms", ANY, CHUNK_MS),  # client.audio chunk length, ms
            ("preroll_ms", ANY, 300),  # push-to-talk: audio kept from before the button went down
            ("amplitude_hz", ANY, 15.0),  # how often the amplitude callbacks run
            # Reconnecting after a dropped connection (docs/client.md): on/off, the first wait,
            # doubled each attempt up to the cap, and how many attempts before giving up.
            ("reconnect", ANY, True),
            ("reconnect_delay_ms", ANY, 250),
            ("reconnect_max_delay_ms", ANY, 4000),
            ("reconnect_attempts", ANY, 20),  # ≈ 1 min with the default delays
            ("recording_max_s", ANY, RECORDING_MAX_S),  # start_recording(): longest kept
        )
    )

    @property
    def session_id(self):
        return self.conversation_id

    @classmethod
    def build(cls, options=None, **kwargs):
        given = {}
        for source in (options or {}, kwargs):
            for name, value in source.items():
                name = snake_case(name)
                given[ALIASES.get(name, name)] = value
        known = [spec[0] for spec in cls.fields]
        unknown = sorted(name for name in given if name not in known)
        if unknown:
            raise ConfigurationError(f"unknown option {unknown[0]!r}")
        if not (given.get("agent_id") or given.get("pipeline_id")):
            raise ConfigurationError("the option 'agent_id' (the seed's 'pipeline_id') is required")
        if not (given.get("authorize_session_endpoint") or given.get("authorize_session_request")):
            raise ConfigurationError(
                "the option 'authorize_session_endpoint' (or 'authorize_session_request') "
                "is required"
            )
        for name in ("agent_id", "pipeline_id", "authorize_session_endpoint", "conversation_id",
                     "resume_token", "websocket_url"):  # fmt: skip
            if given.get(name) is not None and not isinstance(given[name], str):
                raise ConfigurationError(f"the option {name!r} must be a string")
        for name in FUNCTIONS:
            if given.get(name) is not None and not callable(given[name]):
                raise ConfigurationError(f"the option {name!r} must be a function")
        for name in FLAGS:
            if name in given and not isinstance(given[name], bool):
                raise ConfigurationError(f"the option {name!r} must be True or False")
        for name, low, high in RECONNECT_BOUNDS:
            value = given.get(name)
            if value is not None and (not _is_number(value) or not low <= value <= high):
                raise ConfigurationError(f"the option {name!r} must be a number {low}..{high}")
        low, high = CHUNK_MS_BOUNDS
        chunk_ms = given.get("chunk_ms", CHUNK_MS)
        if (
            not isinstance(chunk_ms, int)
            or isinstance(chunk_ms, bool)
            or not low <= chunk_ms <= high
        ):
            raise ConfigurationError(f"the option 'chunk_ms' must be a whole number {low}..{high}")
        delay = given.get("vad_resume_delay")
        if delay is not None and (not _is_number(delay) or delay < 0):
            raise ConfigurationError("the option 'vad_resume_delay' must be a number of ms ≥ 0")
        longest = given.get("recording_max_s", RECORDING_MAX_S)
        if not _is_number(longest) or not 1 <= longest <= RECORDING_LIMIT_S:
            raise ConfigurationError(
                "the option 'recording_max_s' must be a number of seconds, "
                f"1 to {RECORDING_LIMIT_S}"
            )
        if given.get("metadata") is None:
            given.pop("metadata", None)
        elif not isinstance(given["metadata"], dict):
            raise ConfigurationError("the option 'metadata' must be a dict")
        return cls(**given)
