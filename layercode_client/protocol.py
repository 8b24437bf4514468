"""Every message of the Layercode wire protocol, defined once.

Pure Python with no browser imports: the browser client, the server's authorize endpoint and the
embedded pipeline all import this module, so both ends of the socket agree by construction.
Each WebSocket message is a small dataclass registered under its `type` string; `decode()`
dispatches on `type` and rejects malformed frames with `ProtocolError` and unknown types with
`UnknownMessageType` (which receivers log and ignore, as the protocol requires).

The authorize request and response (PROTOCOL §1, with this project's §4 additions) live here
too, so the client and the server validate them the same way.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar

from .errors import ProtocolError, UnknownMessageType

# -- Constants ------------------------------------------------------------------------------------

CLOUD_PIPELINE_WEBSOCKET_URL = "wss://api.layercode.com/v1/pipelines/websocket"
CLOUD_AGENT_WEBSOCKET_URL = "wss://api.layercode.com/v1/agents/web/websocket"
CLOUD_PIPELINE_AUTHORIZE_URL = "https://api.layercode.com/v1/pipelines/authorize_session"
CLOUD_AGENT_AUTHORIZE_URL = "https://api.layercode.com/v1/agents/web/authorize_session"

DEFAULT_INPUT_SAMPLE_RATE = 8000  # what Layercode and its official SDK send
OUTPUT_SAMPLE_RATE = 16000  # response.audio is always 16 kHz
SUPPORTED_INPUT_SAMPLE_RATES = (16000, 8000)

TRIGGER_AUTOMATIC = "automatic"
TRIGGER_PUSH_TO_TALK = "push_to_talk"
TRIGGERS = (TRIGGER_AUTOMATIC, TRIGGER_PUSH_TO_TALK)


class CloseCode:
    """WebSocket close codes the embedded pipeline uses; each close also carries a reason."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012  # the server is draining: authorize again and resume
    TRY_AGAIN_LATER = 1013  # the node is full or a store is unreachable: try again shortly
    SESSION_KEY_INVALID = 4001  # unknown or expired client_session_key
    SESSION_KEY_USED = 4002  # the key was already used for a connection
    SESSION_ENDED = 4003  # the agent hung up
    CONVERSATION_DELETED = 4004  # DELETE /api/conversations/{id} ended it
    IDLE_TIMEOUT = 4008  # nothing received for IDLE_TIMEOUT seconds
    AUDIO_FLOOD = 4009  # client.audio far faster than real time
    ORIGIN_REFUSED = 4010  # the page's Origin (or the Host) is not allowed
    SESSION_REPLACED = 4011  # a newer connection took over this session


# -- WebSocket messages ---------------------------------------------------------------------------

_ANNOTATION_TYPES: dict[str, tuple[type, ...] | None] = {
    "str": (str,),
    "int": (int,),
    "dict": (dict,),
    "Id": (str, int),
    "Any": None,
}


@dataclass
class Message:
    """Base of every wire message. `type` is a class attribute, not a field."""

    type: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"type": self.type}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                payload[f.name] = value
        return payload

    def encode(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))


MESSAGES: dict[str, type[Message]] = {}
CLIENT_MESSAGES: set[str] = set()  # client → server
SERVER_MESSAGES: set[str] = set()  # server → client


def _register(type_name: str, direction: set[str]):
    def wrap(cls: type[Message]) -> type[Message]:
        cls.type = type_name
        MESSAGES[type_name] = cls
        direction.add(type_name)
        return cls

    return wrap


def client_message(type_name: str):
    return _register(type_name, CLIENT_MESSAGES)


def server_message(type_name: str):
    return _register(type_name, SERVER_MESSAGES)


# Client → server (PROTOCOL §2)


@client_message("client.ready")
@dataclass
class ClientReady(Message):
    pass


@client_message("client.audio")
@dataclass
class ClientAudio(Message):
    content: str  # base64 PCM16 mono at the session's input rate


@client_message("trigger.turn.start")
@dataclass
class TriggerTurnStart(Message):
    role: str = "user"


@client_message("trigger.turn.end")
@dataclass
class TriggerTurnEnd(Message):
    role: str = "user"


@client_message("trigger.response.audio.replay_finished")
@dataclass
class ReplayFinished(Message):
    reason: str = "completed"
    last_delta_id_played: Id | None = None


@client_message("trigger.response.audio.interrupted")
@dataclass
class PlaybackInterrupted(Message):
    """This project's addition (docs/protocol.md): where playback stopped on a barge-in."""

    turn_id: Id | None = None
    last_delta_id_played: Id | None = None
    played_ms: int | None = None  # of this turn's audio, in all


@client_message("client.settings")
@dataclass
class ClientSettings(Message):
    """This project's addition (docs/protocol.md): this session's barge-in window, in ms."""

    false_interruption_ms: int | None = None


@client_message("vad_events")
@dataclass
class VadEvent(Message):
    event: str  # vad_start | vad_end | vad_model_failed


@client_message("client.response.text")
@dataclass
class ClientResponseText(Message):
    content: str


@client_message("client.response.data")
@dataclass
class ClientResponseData(Message):
    data: Any


# Server → client (PROTOCOL §2)


@server_message("turn.start")
@dataclass
class TurnStart(Message):
    role: str
    turn_id: Id | None = None


@server_message("turn.end")
@dataclass
class TurnEnd(Message):
    role: str
    turn_id: Id | None = None


@server_message("response.audio")
@dataclass
class ResponseAudio(Message):
    content: str  # base64 PCM16 mono, 16 kHz
    turn_id: Id | None = None
    delta_id: Id | None = None


@server_message("response.text")
@dataclass
class ResponseText(Message):
    content: str
    turn_id: Id | None = None


@server_message("response.text.delta")
@dataclass
class ResponseTextDelta(Message):
    content: str
    turn_id: Id | None = None


@server_message("user.transcript.interim_delta")
@dataclass
class UserTranscriptInterimDelta(Message):
    content: str
    turn_id: Id | None = None
    delta_counter: int | None = None


@server_message("user.transcript.delta")
@dataclass
class UserTranscriptDelta(Message):
    content: str
    turn_id: Id | None = None
    delta_counter: int | None = None


@server_message("user.transcript")
@dataclass
class UserTranscript(Message):
    content: str
    turn_id: Id | None = None


@server_message("response.data")
@dataclass
class ResponseData(Message):
    content: Any
    turn_id: Id | None = None


@server_message("response.end")
@dataclass
class ResponseEnd(Message):
    turn_id: Id | None = None
    # This project's addition: per-turn timings in milliseconds (see docs/protocol.md §4).
    timings: dict | None = None


@server_message("error")
@dataclass
class ErrorMessage(Message):
    """This project's addition: a turn failed; the session goes on. Unknown to Layercode's SDK."""

    code: str
    message: str
    turn_id: Id | None = None


Id = str | int  # turn and delta ids: Layercode sends strings; integers are accepted too


def _check_field(type_name: str, name: str, annotation: str, value: Any) -> None:
    optional = annotation.endswith("| None")
    base = annotation.removesuffix("| None").strip()
    if value is None:
        if not optional:
            raise ProtocolError(f"{type_name}: field {name!r} must not be null")
        return
    allowed = _ANNOTATION_TYPES[base]
    if allowed is None:
        return
    if isinstance(value, bool) or not isinstance(value, allowed):
        wanted = " or ".join(t.__name__ for t in allowed)
        raise ProtocolError(f"{type_name}: field {name!r} must be {wanted}")


def from_dict(payload: Any, *, allowed: set[str] | None = None) -> Message:
    """Build the message a parsed JSON object describes; extra fields are ignored."""
    if not isinstance(payload, dict):
        raise ProtocolError("a message must be a JSON object")
    type_name = payload.get("type")
    if not isinstance(type_name, str) or not type_name:
        raise ProtocolError("a message needs a string 'type'")
    cls = MESSAGES.get(type_name)
    if cls is None or (allowed is not None and type_name not in allowed):
        raise UnknownMessageType(type_name)
    kwargs = {}
    for f in fields(cls):
        if f.name in payload:
            _check_field(type_name, f.name, f.type, payload[f.name])
            kwargs[f.name] = payload[f.name]
        elif f.default is MISSING and f.default_factory is MISSING:
            raise ProtocolError(f"{type_name}: missing field {f.name!r}")
    return cls(**kwargs)


def decode(frame: str | bytes, *, allowed: set[str] | None = None) -> Message:
    """Parse one text frame. Raises ProtocolError (malformed) or UnknownMessageType."""
    try:
        payload = json.loads(frame)
    except (ValueError, UnicodeDecodeError) as error:
        raise ProtocolError(f"a frame is not valid JSON: {error}") from error
    return from_dict(payload, allowed=allowed)


# -- Session authorization (PROTOCOL §1 and §4) ---------------------------------------------------


def _optional_str(body: dict, name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ProtocolError(f"'{name}' must be a non-empty string")
    return value


@dataclass
class AuthorizeRequest:
    """What the browser POSTs to the app's authorize endpoint."""

    pipeline_id: str | None = None
    agent_id: str | None = None
    session_id: str | None = None
    conversation_id: str | None = None
    metadata: dict = field(default_factory=dict)
    sdk_version: str | None = None
    input_sample_rates: list[int] | None = None  # §4 addition: rates the client can send

    @property
    def target_id(self) -> str:
        """The pipeline (seed generation) or agent (newer generation) to talk to."""
        return self.pipeline_id or self.agent_id or ""

    @property
    def resume_id(self) -> str | None:
        return self.session_id or self.conversation_id

    @classmethod
    def from_json(cls, body: Any) -> AuthorizeRequest:
        if not isinstance(body, dict):
            raise ProtocolError("the request body must be a JSON object")
        request = cls(
            pipeline_id=_optional_str(body, "pipeline_id"),
            agent_id=_optional_str(body, "agent_id"),
            session_id=_optional_str(body, "session_id"),
            conversation_id=_optional_str(body, "conversation_id"),
            sdk_version=_optional_str(body, "sdk_version"),
        )
        if not request.target_id:
            raise ProtocolError("'pipeline_id' (or 'agent_id') is required")
        metadata = body.get("metadata", {})
        if metadata is None:
            metadata = {}
        if not isinstance(metadata, dict):
            raise ProtocolError("'metadata' must be a JSON object")
        request.metadata = metadata
        audio = body.get("audio")
        if audio is not None:
            if not isinstance(audio, dict):
                raise ProtocolError("'audio' must be a JSON object")
            rates = audio.get("input_sample_rates")
            if rates is not None:
                if not isinstance(rates, list) or not all(
                    isinstance(r, int) and not isinstance(r, bool) and r > 0 for r in rates
                ):
                    raise ProtocolError("'audio.input_sample_rates' must be a list of integers")
                request.input_sample_rates = rates
        return request

    def to_json(self) -> dict:
        """The body a client sends (our additions included; the cloud proxy strips them)."""
        body = self.cloud_body()
        if self.input_sample_rates:
            body["audio"] = {"input_sample_rates": list(self.input_sample_rates)}
        return body

    def cloud_body(self) -> dict:
        """Only the documented fields: what goes to Layercode's cloud."""
        body: dict[str, Any] = {}
        for name in ("pipeline_id", "agent_id", "session_id", "conversation_id", "sdk_version"):
            value = getattr(self, name)
            if value is not None:
                body[name] = value
        body["metadata"] = self.metadata
        return body


@dataclass
class SessionConfig:
    """The parts of the authorize response's `config` the client acts on."""

    trigger: str = TRIGGER_AUTOMATIC
    can_interrupt: bool = True
    input_sample_rate: int = DEFAULT_INPUT_SAMPLE_RATE
    vad: dict = field(default_factory=dict)

    @property
    def push_to_talk(self) -> bool:
        return self.trigger == TRIGGER_PUSH_TO_TALK

    @classmethod
    def from_json(cls, config: Any) -> SessionConfig:
        if config is None:
            return cls()
        if not isinstance(config, dict):
            raise ProtocolError("'config' must be a JSON object")
        transcription = config.get("transcription") or {}
        if not isinstance(transcription, dict):
            raise ProtocolError("'config.transcription' must be a JSON object")
        trigger = transcription.get("trigger", TRIGGER_AUTOMATIC)
        if trigger not in TRIGGERS:
            raise ProtocolError(
                f"unknown transcription trigger {trigger!r}: expected one of {', '.join(TRIGGERS)}"
            )
        can_interrupt = transcription.get("can_interrupt", True)
        if not isinstance(can_interrupt, bool):
            raise ProtocolError("'config.transcription.can_interrupt' must be true or false")
        audio = config.get("audio") or {}
        rate = (
            audio.get("input_sample_rate", DEFAULT_INPUT_SAMPLE_RATE)
            if isinstance(audio, dict)
            else DEFAULT_INPUT_SAMPLE_RATE
        )
        if rate not in SUPPORTED_INPUT_SAMPLE_RATES:
            raise ProtocolError(
                f"unsupported 'config.audio.input_sample_rate' {rate!r}: "
                f"expected one of {', '.join(map(str, SUPPORTED_INPUT_SAMPLE_RATES))}"
            )
        vad = config.get("vad") if isinstance(config.get("vad"), dict) else {}
        return cls(trigger=trigger, can_interrupt=can_interrupt, input_sample_rate=rate, vad=vad)

    def to_json(self) -> dict:
        return {
            "transcription": {
                "trigger": self.trigger,
                "can_interrupt": self.can_interrupt,
                "automatic": self.trigger == TRIGGER_AUTOMATIC,
            },
            "audio": {"input_sample_rate": self.input_sample_rate},
            "vad": dict(self.vad),
        }


@dataclass
class AuthorizeResponse:
    """What the authorize endpoint answers (Layercode's body, passed through unchanged)."""

    client_session_key: str
    session_id: str | None = None
    config: SessionConfig = field(default_factory=SessionConfig)
    websocket_url: str | None = None  # §4 addition; absent → Layercode's cloud

    @classmethod
    def from_json(cls, body: Any) -> AuthorizeResponse:
        if not isinstance(body, dict):
            raise ProtocolError("the authorize response must be a JSON object")
        key = body.get("client_session_key")
        if not isinstance(key, str) or not key:
            raise ProtocolError("the authorize response has no 'client_session_key'")
        session_id = body.get("session_id") or body.get("conversation_id")
        if session_id is not None and not isinstance(session_id, str):
            raise ProtocolError("'session_id' must be a string")
        websocket_url = body.get("websocket_url")
        if websocket_url is not None and not isinstance(websocket_url, str):
            raise ProtocolError("'websocket_url' must be a string")
        return cls(
            client_session_key=key,
            session_id=session_id,
            config=SessionConfig.from_json(body.get("config")),
            websocket_url=websocket_url,
        )
