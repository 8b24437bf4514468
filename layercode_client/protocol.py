"""Every message of the Layercode wire protocol, defined once.

Pure Python with no browser imports: the browser client, the server's authorize endpoint and the
embedded pipeline all import this module, so both ends of the socket agree by construction.
It runs on CPython, Pyodide and MicroPython alike, so there are no dataclasses: each WebSocket
message is a small class with a field table, registered under its `type` string; `decode()`
dispatches on `type` and rejects malformed frames with `ProtocolError` and unknown types with
`UnknownMessageType` (which receivers log and ignore, as the protocol requires).

A new message is three lines: the decorator with its `type`, the class, its `fields`:

    @client_message("client.example")
    class ClientExample(Message):
        fields = (("content", STR), ("turn_id", ID, None))

Each field is `(name, kind)` (required) or `(name, kind, default)`; a default of None also
lets the wire carry `null` there. Kinds: STR, INT, BOOL, DICT, LIST, ID (string or integer), ANY.

The authorize request and response (docs/protocol.md) live here too, so the client and
the server validate them the same way.
"""

import json

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

    # What a client reconnects after (authorizing again with the conversation id and its resume
    # token): the connection was lost or the server asked for a retry; the conversation lives
    # on. 1006 never travels on the wire: the browser reports it when the socket just died.
    # Every other code ends the session: 1000 and the 40xx codes say it is over.
    ABNORMAL = 1006
    RECONNECT = (GOING_AWAY, ABNORMAL, INTERNAL_ERROR, SERVICE_RESTART, TRY_AGAIN_LATER)
    # The key was refused: a client that was reconnecting authorizes once more, then gives up.
    KEY_REFUSED = (SESSION_KEY_INVALID, SESSION_KEY_USED)


# -- Records: plain classes built from a field table ---------------------------------------------

# Field kinds: the Python types a JSON value of that field may have (None: anything).
STR = (str,)
INT = (int,)
BOOL = (bool,)
DICT = (dict,)
LIST = (list,)
ID = (str, int)  # turn and delta ids: Layercode sends strings; integers are accepted too
ANY = None


def kind_name(kind):
    return " or ".join(t.__name__ for t in kind)


class Record:
    """A plain class whose attributes are listed in `fields` (see the module docstring).

    Built with keyword arguments (or positionally, in table order); a missing required field or
    an unknown name is a TypeError, as with a dataclass. A mutable default (dict or list) is
    copied for each instance. Equal when of the same class with equal fields.
    """

    fields = ()

    def __init__(self, *args, **values):
        if len(args) > len(self.fields):
            raise TypeError(f"{type(self).__name__} takes at most {len(self.fields)} arguments")
        for spec, value in zip(self.fields, args):
            if spec[0] in values:
                raise TypeError(f"{type(self).__name__} got {spec[0]!r} twice")
            values[spec[0]] = value
        for spec in self.fields:
            name = spec[0]
            if name in values:
                value = values.pop(name)
            elif len(spec) > 2:
                value = spec[2]
                if isinstance(value, (dict, list)):
                    value = type(value)(value)
            else:
                raise TypeError(f"{type(self).__name__} needs the field {name!r}")
            setattr(self, name, value)
        if values:
            raise TypeError(f"{type(self).__name__} has no field {sorted(values)[0]!r}")

    def field_values(self):
        return [(spec[0], getattr(self, spec[0])) for spec in self.fields]

    def __eq__(self, other):
        return type(self) is type(other) and self.field_values() == other.field_values()

    def __ne__(self, other):
        return not self == other

    def __repr__(self):
        shown = ", ".join(f"{name}={value!r}" for name, value in self.field_values())
        return f"{type(self).__name__}({shown})"


# -- WebSocket messages ---------------------------------------------------------------------------


class Message(Record):
    """Base of every wire message. `type` is a class attribute, not a field."""

    type = ""

    def to_dict(self):
        payload = {"type": self.type}
        for name, value in self.field_values():
            if value is not None:
                payload[name] = value
        return payload

    def encode(self):
        return json.dumps(self.to_dict(), separators=(",", ":"))


MESSAGES = {}  # type string → message class
CLIENT_MESSAGES = set()  # client → server
SERVER_MESSAGES = set()  # server → client


def _register(type_name, direction):
    def wrap(cls):
        cls.type = type_name
        MESSAGES[type_name] = cls
        direction.add(type_name)
        return cls

    return wrap


def client_message(type_name):
    return _register(type_name, CLIENT_MESSAGES)


def server_message(type_name):
    return _register(type_name, SERVER_MESSAGES)


# Client → server (docs/protocol.md lists the whole protocol)


@client_message("client.ready")
class ClientReady(Message):
    fields = ()


@client_message("client.audio")
class ClientAudio(Message):
    fields = (("content", STR),)  # base64 PCM16 mono at the session's input rate
    _framing = None  # (before, after), made once: `content_of` runs per recorded chunk

    @classmethod
    def framing(cls):
        """The message's text before and after its content. Base64 has no character JSON
        escapes, so `before + content + after` is exactly `encode()`: the recorder worklet
        wraps each microphone chunk in them and the chunk goes out without being built in
        Python (on MicroPython `encode()` of a 40 ms chunk took ~0.5 ms, the string's trip
        into Python and back ~0.1 ms: most of the page's CPU per chunk)."""
        if cls._framing is None:
            marker = "CONTENT"
            before, _, after = cls(content=marker).encode().partition(marker)
            cls._framing = (before, after)
        return cls._framing

    @classmethod
    def content_of(cls, text):
        """The content of a message `framing()` made (the recording reads it back)."""
        before, after = cls.framing()
        return text[len(before) : len(text) - len(after)]


@client_message("trigger.turn.start")
class TriggerTurnStart(Message):
    fields = (("role", STR, "user"),)


@client_message("trigger.turn.end")
class TriggerTurnEnd(Message):
    fields = (("role", STR, "user"),)


@client_message("trigger.response.audio.replay_finished")
class ReplayFinished(Message):
    fields = (("reason", STR, "completed"), ("last_delta_id_played", ID, None))


@client_message("trigger.response.audio.interrupted")
class PlaybackInterrupted(Message):
    """This project's addition (docs/protocol.md): where playback stopped on a barge-in."""

    fields = (
        ("turn_id", ID, None),
        ("last_delta_id_played", ID, None),
        ("played_ms", INT, None),  # of this turn's audio, in all
    )


@client_message("vad_events")
class VadEvent(Message):
    fields = (("event", STR),)  # vad_start | vad_end | vad_model_failed


@client_message("client.response.text")
class ClientResponseText(Message):
    fields = (("content", STR),)


@client_message("client.response.data")
class ClientResponseData(Message):
    fields = (("data", ANY),)


@client_message("client.resume")
class ClientResume(Message):
    """This project's addition (docs/protocol.md): sent first on a resumed connection, it names
    the last `response.data` `seq` the client delivered; the server sends the conversation's
    later ones again, in order, before anything else. Never sent to Layercode's cloud."""

    fields = (("last_data_seq", INT),)


@client_message("client.settings")
class ClientSettings(Message):
    """This project's addition (docs/protocol.md): this session's barge-in window, in
    ms (the SDK's `vadResumeDelay`). Sent only to this project's pipeline, never to the cloud."""

    fields = (("false_interruption_ms", INT, None),)


# Server → client


@server_message("turn.start")
class TurnStart(Message):
    fields = (("role", STR), ("turn_id", ID, None))


@server_message("turn.end")
class TurnEnd(Message):
    fields = (("role", STR), ("turn_id", ID, None))


@server_message("response.audio")
class ResponseAudio(Message):
    fields = (("content", STR), ("turn_id", ID, None), ("delta_id", ID, None))  # 16 kHz PCM16


@server_message("response.text")
class ResponseText(Message):
    fields = (("content", STR), ("turn_id", ID, None))


@server_message("response.text.delta")
class ResponseTextDelta(Message):
    fields = (("content", STR), ("turn_id", ID, None))


@server_message("user.transcript.interim_delta")
class UserTranscriptInterimDelta(Message):
    fields = (("content", STR), ("turn_id", ID, None), ("delta_counter", INT, None))


@server_message("user.transcript.delta")
class UserTranscriptDelta(Message):
    fields = (("content", STR), ("turn_id", ID, None), ("delta_counter", INT, None))


@server_message("user.transcript")
class UserTranscript(Message):
    fields = (("content", STR), ("turn_id", ID, None))


@server_message("response.data")
class ResponseData(Message):
    # `seq`: this project's addition, the message's number in its conversation (from 1), by
    # which a resumed client asks for what it missed and drops what it already has.
    fields = (("content", ANY), ("turn_id", ID, None), ("seq", INT, None))


@server_message("response.end")
class ResponseEnd(Message):
    # `timings`: this project's addition, per-turn timings in ms (docs/protocol.md §4).
    fields = (("turn_id", ID, None), ("timings", DICT, None))


@server_message("error")
class ErrorMessage(Message):
    """This project's addition: a turn failed; the session goes on. Unknown to Layercode's SDK."""

    fields = (("code", STR), ("message", STR), ("turn_id", ID, None))


@server_message("notice")
class Notice(Message):
    """This project's addition: a state the user was told of is over (code `history_stored`:
    the history is saved again). `resolves` names the `error` code whose state it ends, so a
    page can take that error down. Unknown to Layercode's SDK."""

    fields = (("code", STR), ("message", STR), ("resolves", STR, None))


def _check_field(type_name, spec, value):
    name, kind = spec[0], spec[1]
    if value is None:
        if len(spec) < 3 or spec[2] is not None:
            raise ProtocolError(f"{type_name}: field {name!r} must not be null")
        return
    if kind is None:
        return
    # bool is an int in CPython (not in MicroPython): never accept it as a number or a string.
    if (isinstance(value, bool) and kind is not BOOL) or not isinstance(value, kind):
        raise ProtocolError(f"{type_name}: field {name!r} must be {kind_name(kind)}")


def from_dict(payload, *, allowed=None):
    """Build the message a parsed JSON object describes; extra fields are ignored."""
    if not isinstance(payload, dict):
        raise ProtocolError("a message must be a JSON object")
    type_name = payload.get("type")
    if not isinstance(type_name, str) or not type_name:
        raise ProtocolError("a message needs a string 'type'")
    cls = MESSAGES.get(type_name)
    if cls is None or (allowed is not None and type_name not in allowed):
        raise UnknownMessageType(type_name)
    values = {}
    for spec in cls.fields:
        name = spec[0]
        if name in payload:
            _check_field(type_name, spec, payload[name])
            values[name] = payload[name]
        elif len(spec) < 3:
            raise ProtocolError(f"{type_name}: missing field {name!r}")
    return cls(**values)


def decode(frame, *, allowed=None):
    """Parse one text frame. Raises ProtocolError (malformed) or UnknownMessageType.

    Nothing else, whatever the frame: JSON nested too deeply for the parser's recursion
    (`[[[[...`) is malformed too (tests/client/test_protocol_properties.py).
    """
    try:
        payload = json.loads(frame)
    except (ValueError, UnicodeError) as error:
        raise ProtocolError(f"a frame is not valid JSON: {error}") from error
    except RuntimeError as error:  # CPython's RecursionError; MicroPython has no such name
        raise ProtocolError("a frame nests too deeply") from error
    return from_dict(payload, allowed=allowed)


# -- Session authorization (docs/protocol.md) -------------------------------------------


def _optional_str(body, name):
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ProtocolError(f"'{name}' must be a non-empty string")
    return value


def _is_count(value):
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


class AuthorizeRequest(Record):
    """What the browser POSTs to the app's authorize endpoint."""

    fields = (
        ("pipeline_id", STR, None),
        ("agent_id", STR, None),
        ("session_id", STR, None),
        ("conversation_id", STR, None),
        ("metadata", DICT, {}),
        ("sdk_version", STR, None),
        ("input_sample_rates", LIST, None),  # our addition: rates the client can send
        ("resume_token", STR, None),  # our addition: proof for resuming a conversation
    )
    CLOUD_FIELDS = ("pipeline_id", "agent_id", "session_id", "conversation_id", "sdk_version")

    @property
    def target_id(self):
        """The pipeline (seed generation) or agent (newer generation) to talk to."""
        return self.pipeline_id or self.agent_id or ""

    @property
    def resume_id(self):
        return self.session_id or self.conversation_id

    @classmethod
    def from_json(cls, body):
        if not isinstance(body, dict):
            raise ProtocolError("the request body must be a JSON object")
        request = cls(**{name: _optional_str(body, name) for name in cls.CLOUD_FIELDS})
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
                if not isinstance(rates, list) or not all(_is_count(r) for r in rates):
                    raise ProtocolError("'audio.input_sample_rates' must be a list of integers")
                request.input_sample_rates = rates
        request.resume_token = _optional_str(body, "resume_token")
        return request

    def to_json(self):
        """The body a client sends (our additions included; the cloud proxy strips them)."""
        body = self.cloud_body()
        if self.input_sample_rates:
            body["audio"] = {"input_sample_rates": list(self.input_sample_rates)}
        if self.resume_token:
            body["resume_token"] = self.resume_token
        return body

    def cloud_body(self):
        """Only the documented fields: what goes to Layercode's cloud."""
        body = {}
        for name in self.CLOUD_FIELDS:
            value = getattr(self, name)
            if value is not None:
                body[name] = value
        body["metadata"] = self.metadata
        return body


class SessionConfig(Record):
    """The parts of the authorize response's `config` the client acts on."""

    fields = (
        ("trigger", STR, TRIGGER_AUTOMATIC),
        ("can_interrupt", BOOL, True),
        ("input_sample_rate", INT, DEFAULT_INPUT_SAMPLE_RATE),
        ("vad", DICT, {}),
    )

    @property
    def push_to_talk(self):
        return self.trigger == TRIGGER_PUSH_TO_TALK

    @classmethod
    def from_json(cls, config):
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
        rate = DEFAULT_INPUT_SAMPLE_RATE
        if isinstance(audio, dict):
            rate = audio.get("input_sample_rate", DEFAULT_INPUT_SAMPLE_RATE)
        if rate not in SUPPORTED_INPUT_SAMPLE_RATES:
            rates = ", ".join(str(r) for r in SUPPORTED_INPUT_SAMPLE_RATES)
            raise ProtocolError(
                f"unsupported 'config.audio.input_sample_rate' {rate!r}: expected one of {rates}"
            )
        vad = config.get("vad") if isinstance(config.get("vad"), dict) else {}
        return cls(trigger=trigger, can_interrupt=can_interrupt, input_sample_rate=rate, vad=vad)

    def to_json(self):
        return {
            "transcription": {
                "trigger": self.trigger,
                "can_interrupt": self.can_interrupt,
                "automatic": self.trigger == TRIGGER_AUTOMATIC,
            },
            "audio": {"input_sample_rate": self.input_sample_rate},
            "vad": dict(self.vad),
        }


class AuthorizeResponse(Record):
    """What the authorize endpoint answers (Layercode's body, passed through unchanged)."""

    fields = (
        ("client_session_key", STR),
        ("session_id", STR, None),
        ("config", ANY, None),  # a SessionConfig; None → the defaults
        ("websocket_url", STR, None),  # our addition; absent → Layercode's cloud
        ("resume_token", STR, None),  # our addition: keep it to resume the conversation
        ("raw_config", DICT, None),  # `config` as it came, for on_connect
        ("data_seq", INT, None),  # our addition: the conversation's last response.data seq
    )

    @property
    def ours(self):
        """True when the answer carries this project's additions (not Layercode's cloud)."""
        return self.websocket_url is not None or self.resume_token is not None

    def __init__(self, *args, **values):
        super().__init__(*args, **values)
        if self.config is None:
            self.config = SessionConfig()

    @classmethod
    def from_json(cls, body):
        if not isinstance(body, dict):
            raise ProtocolError("the authorize response must be a JSON object")
        key = body.get("client_session_key")
        if not isinstance(key, str) or not key:
            raise ProtocolError("the authorize response has no 'client_session_key'")
        session_id = body.get("session_id") or body.get("conversation_id")
        if session_id is not None and not isinstance(session_id, str):
            raise ProtocolError("'session_id' must be a string")
        for name in ("websocket_url", "resume_token"):
            if body.get(name) is not None and not isinstance(body[name], str):
                raise ProtocolError(f"'{name}' must be a string")
        data_seq = body.get("data_seq")
        if data_seq is not None and (
            isinstance(data_seq, bool) or not isinstance(data_seq, int) or data_seq < 0
        ):
            raise ProtocolError("'data_seq' must be an integer ≥ 0")
        config = body.get("config")
        return cls(
            client_session_key=key,
            session_id=session_id,
            config=SessionConfig.from_json(config),
            websocket_url=body.get("websocket_url"),
            resume_token=body.get("resume_token"),
            raw_config=config if isinstance(config, dict) else None,
            data_seq=data_seq,
        )
