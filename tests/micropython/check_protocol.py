"""Protocol checks: messages built, encoded, decoded and refused the same on every Python."""

import json

from layercode_client import protocol as p
from layercode_client.errors import ProtocolError, UnknownMessageType
from tests.micropython.runner import raises


def test_keyword_construction_encoding_and_equality():
    message = p.ResponseAudio(content="AAA=", turn_id="t1", delta_id="t1-1")
    assert message.type == "response.audio"
    assert json.loads(message.encode()) == {
        "type": "response.audio",
        "content": "AAA=",
        "turn_id": "t1",
        "delta_id": "t1-1",
    }
    assert message == p.ResponseAudio(content="AAA=", turn_id="t1", delta_id="t1-1")
    assert message != p.ResponseAudio(content="AAA=", turn_id="t2", delta_id="t1-1")
    assert p.ErrorMessage(code="x", message="y").to_dict() == {
        "type": "error",
        "code": "x",
        "message": "y",
    }
    assert p.TriggerTurnStart().role == "user" and p.ClientReady().to_dict() == {
        "type": "client.ready"
    }
    assert "ResponseAudio(content='AAA='" in repr(message)


def test_construction_mistakes_are_type_errors():
    raises(TypeError, lambda: p.ClientAudio(), "content")
    raises(TypeError, lambda: p.ClientAudio(content="a", colour="red"), "colour")


def test_registries_know_each_direction():
    assert p.MESSAGES["client.audio"] is p.ClientAudio
    assert "client.audio" in p.CLIENT_MESSAGES and "client.audio" not in p.SERVER_MESSAGES
    assert "response.audio" in p.SERVER_MESSAGES and "error" in p.SERVER_MESSAGES
    assert len(p.MESSAGES) == len(p.CLIENT_MESSAGES) + len(p.SERVER_MESSAGES)


def test_decode_dispatches_on_type_and_checks_fields():
    message = p.decode('{"type": "turn.start", "role": "user", "turn_id": 7, "extra": 1}')
    assert isinstance(message, p.TurnStart) and message.turn_id == 7
    assert p.decode('{"type": "response.end"}') == p.ResponseEnd()
    raises(ProtocolError, lambda: p.decode("{nope"), "not valid JSON")
    raises(ProtocolError, lambda: p.decode("[1]"), "JSON object")
    raises(ProtocolError, lambda: p.decode('{"type": "client.audio"}'), "missing field")
    raises(ProtocolError, lambda: p.decode('{"type": "client.audio", "content": 3}'), "str")
    raises(ProtocolError, lambda: p.decode('{"type": "turn.start", "role": null}'), "null")
    raises(ProtocolError, lambda: p.decode('{"type": "turn.end", "role": "u", "turn_id": true}'))
    unknown = raises(UnknownMessageType, lambda: p.decode('{"type": "future.thing"}'))
    assert unknown.message_type == "future.thing"
    raises(
        UnknownMessageType,
        lambda: p.decode('{"type": "client.ready"}', allowed=p.SERVER_MESSAGES),
    )


def test_authorize_request_and_response():
    request = p.AuthorizeRequest(pipeline_id="pl", metadata={"a": 1}, input_sample_rates=[16000])
    assert request.to_json() == {
        "pipeline_id": "pl",
        "metadata": {"a": 1},
        "audio": {"input_sample_rates": [16000]},
    }
    parsed = p.AuthorizeRequest.from_json(request.to_json())
    assert parsed == request and parsed.target_id == "pl" and parsed.resume_id is None
    assert p.AuthorizeRequest().metadata == {} and p.AuthorizeRequest().metadata is not (
        p.AuthorizeRequest().metadata
    )
    raises(ProtocolError, lambda: p.AuthorizeRequest.from_json({"metadata": {}}), "required")
    response = p.AuthorizeResponse.from_json(
        {
            "client_session_key": "k",
            "conversation_id": "c",
            "config": {"transcription": {"trigger": "push_to_talk"}},
        }
    )
    assert response.session_id == "c" and response.config.push_to_talk
    assert response.config.input_sample_rate == p.DEFAULT_INPUT_SAMPLE_RATE
    assert p.AuthorizeResponse(client_session_key="k").config == p.SessionConfig()
    raises(ProtocolError, lambda: p.AuthorizeResponse.from_json({}), "client_session_key")
    bad_rate = {"client_session_key": "k", "config": {"audio": {"input_sample_rate": 44100}}}
    raises(ProtocolError, lambda: p.AuthorizeResponse.from_json(bad_rate), "44100")
