"""Settings are validated once, at start, with messages that name the variable."""

from __future__ import annotations

import pytest

from server.__main__ import main
from server.config import Settings, SettingsError


def test_defaults_use_no_cloud_and_same_origin_only():
    settings = Settings.from_env({})
    assert not settings.uses_cloud
    assert settings.cors_allow_origins == ()
    assert settings.port == 8000
    assert settings.agent_webhook_secret  # generated for the demo agent


def test_key_is_not_in_repr():
    settings = Settings.from_env({"LAYERCODE_API_KEY": "sekrit-123"})
    assert settings.uses_cloud
    assert "sekrit-123" not in repr(settings)
    assert "sekrit-123" in settings.secrets


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"PORT": "http"}, "PORT"),
        ({"PORT": "70000"}, "PORT"),
        ({"LAYERCODE_TIMEOUT": "soon"}, "LAYERCODE_TIMEOUT"),
        ({"LAYERCODE_TIMEOUT": "0"}, "LAYERCODE_TIMEOUT"),
        ({"CORS_ALLOW_ORIGINS": "example.com"}, "CORS_ALLOW_ORIGINS"),
        ({"TRANSCRIPTION_TRIGGER": "sometimes"}, "TRANSCRIPTION_TRIGGER"),
        ({"CAN_INTERRUPT": "maybe"}, "CAN_INTERRUPT"),
        ({"TTS_ENGINE": "sam"}, "TTS_ENGINE"),
        ({"FALSE_INTERRUPTION_MS": "-1"}, "FALSE_INTERRUPTION_MS"),
        ({"FALSE_INTERRUPTION_MS": "0.5"}, "FALSE_INTERRUPTION_MS"),
        ({"INTERRUPTION_MIN_WORDS": "0"}, "INTERRUPTION_MIN_WORDS"),
        ({"PLAYBACK_LEAD_MS": "soon"}, "PLAYBACK_LEAD_MS"),
        ({"ECHO_DEFENCE": "sometimes"}, "ECHO_DEFENCE"),
        ({"ECHO_MAX_DELAY_MS": "1.5s"}, "ECHO_MAX_DELAY_MS"),
        ({"ECHO_MAX_DELAY_MS": "50"}, "ECHO_MAX_DELAY_MS"),
        ({"LAYERCODE_AUTHORIZE_URL": "ftp://x"}, "LAYERCODE_AUTHORIZE_URL"),
        ({"AGENT_WEBHOOK_URL": "https://a.example/hook"}, "AGENT_WEBHOOK_SECRET"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL"),
    ],
)
def test_bad_values_name_the_variable(env, named):
    with pytest.raises(SettingsError, match=named):
        Settings.from_env(env)


def test_echo_defence_is_on_and_searches_up_to_1200ms_by_default():
    settings = Settings.from_env({})
    assert settings.echo_defence and settings.echo_max_delay_ms == 1200
    settings = Settings.from_env({"ECHO_DEFENCE": "off", "ECHO_MAX_DELAY_MS": "2000"})
    assert not settings.echo_defence and settings.echo_max_delay_ms == 2000


def test_origins_are_normalised():
    settings = Settings.from_env({"CORS_ALLOW_ORIGINS": " https://a.example/ ,http://b:8080"})
    assert settings.cors_allow_origins == ("https://a.example", "http://b:8080")


def test_entry_point_exits_with_the_reason(monkeypatch):
    monkeypatch.setenv("PORT", "nope")
    with pytest.raises(SystemExit, match="configuration error: PORT"):
        main([])
