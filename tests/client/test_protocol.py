"""The wire messages: this project's interruption report, and that it leaves Layercode's own
messages as they were (docs/protocol.md)."""

from __future__ import annotations

import base64
import json

import pytest

from layercode_client import protocol as p
from layercode_client.errors import ProtocolError, UnknownMessageType


def test_the_interruption_report_round_trips():
    report = p.PlaybackInterrupted(turn_id="turn_1", last_delta_id_played="turn_1-4", played_ms=830)
    payload = json.loads(report.encode())
    assert payload == {
        "type": "trigger.response.audio.interrupted",
        "turn_id": "turn_1",
        "last_delta_id_played": "turn_1-4",
        "played_ms": 830,
    }
    assert p.decode(report.encode(), allowed=p.CLIENT_MESSAGES) == report


def test_a_notice_names_the_error_it_resolves():
    frame = (
        '{"type":"notice","code":"history_stored","message":"m","resolves":"history_unavailable"}'
    )
    notice = p.decode(frame, allowed=p.SERVER_MESSAGES)
    assert notice == p.Notice(code="history_stored", message="m", resolves="history_unavailable")
    assert notice.encode() == frame


def test_every_field_of_the_interruption_report_is_optional():
    message = p.decode('{"type": "trigger.response.audio.interrupted"}')
    assert message == p.PlaybackInterrupted()
    assert message.encode() == '{"type":"trigger.response.audio.interrupted"}'


@pytest.mark.parametrize(
    "frame",
    [
        '{"type": "trigger.response.audio.interrupted", "played_ms": "830"}',
        '{"type": "trigger.response.audio.interrupted", "played_ms": true}',
        '{"type": "trigger.response.audio.interrupted", "turn_id": {"id": 1}}',
    ],
)
def test_a_malformed_interruption_report_is_a_protocol_error(frame):
    with pytest.raises(ProtocolError):
        p.decode(frame)


def test_it_is_a_client_message_only():
    assert "trigger.response.audio.interrupted" in p.CLIENT_MESSAGES
    frame = p.PlaybackInterrupted(played_ms=1).encode()
    with pytest.raises(UnknownMessageType):
        p.decode(frame, allowed=p.SERVER_MESSAGES)


def test_replay_finished_is_unchanged():
    message = p.decode('{"type": "trigger.response.audio.replay_finished"}')
    assert message == p.ReplayFinished(reason="completed", last_delta_id_played=None)


def test_client_settings_carry_the_sessions_false_interruption_window():
    message = p.decode('{"type": "client.settings", "false_interruption_ms": 300}')
    assert message == p.ClientSettings(false_interruption_ms=300)
    assert p.decode('{"type": "client.settings"}') == p.ClientSettings()
    with pytest.raises(ProtocolError):
        p.decode('{"type": "client.settings", "false_interruption_ms": "300"}')


def test_client_audio_framing_wraps_any_base64_into_the_encoded_message():
    # The recorder worklet builds each chunk's message from these: it must equal encode().
    before, after = p.ClientAudio.framing()
    for raw in (b"", b"\x00", b"\xff\xfe\x00\x01" * 300, bytes(range(256)) * 5):
        content = base64.b64encode(raw).decode()
        text = before + content + after
        assert text == p.ClientAudio(content=content).encode()
        assert p.decode(text) == p.ClientAudio(content=content)
        assert p.ClientAudio.content_of(text) == content
