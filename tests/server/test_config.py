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
    assert (settings.turn_end_model, settings.stt_profile) == ("smart-turn", "tuned")


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
        ({"TURN_END_MODEL": "psychic"}, "TURN_END_MODEL"),
        ({"VAD": "ears"}, "VAD"),
        ({"STT_PROFILE": "loud"}, "STT_PROFILE"),
        ({"STT_WORKER_NICE": "20"}, "STT_WORKER_NICE"),
        ({"STT_WORKER_NICE": "-5"}, "STT_WORKER_NICE"),
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
        ({"REDIS_URL": "localhost:6379", "AGENT_WEBHOOK_SECRET": "s"}, "REDIS_URL"),
        ({"DATABASE_URL": "mysql://db/x", "AGENT_WEBHOOK_SECRET": "s"}, "DATABASE_URL"),
        ({"DATABASE_POOL_SIZE": "0"}, "DATABASE_POOL_SIZE"),
        ({"REDIS_URL": "redis://r:6379/0"}, "AGENT_WEBHOOK_SECRET"),
        ({"DATABASE_URL": "postgresql://db/x"}, "AGENT_WEBHOOK_SECRET"),
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


def test_the_recognisers_workers_run_10_below_the_server_unless_set():
    from server.pipeline.embedded import EmbeddedPipeline  # what the pool is given

    assert Settings.from_env({}).stt_worker_nice == 10
    assert EmbeddedPipeline(Settings.from_env({}), http=None).recognizers.worker_nice == 10
    same = Settings.from_env({"STT_WORKER_NICE": "0"})
    assert EmbeddedPipeline(same, http=None).recognizers.worker_nice == 0


def test_the_echo_gate_is_on_unless_turned_off():
    assert Settings.from_env({}).echo_gate
    assert not Settings.from_env({"ECHO_GATE": "off"}).echo_gate


def test_origins_are_normalised():
    settings = Settings.from_env({"CORS_ALLOW_ORIGINS": " https://a.example/ ,http://b:8080"})
    assert settings.cors_allow_origins == ("https://a.example", "http://b:8080")


def test_entry_point_exits_with_the_reason(monkeypatch):
    monkeypatch.setenv("PORT", "nope")
    with pytest.raises(SystemExit, match="configuration error: PORT"):
        main([])


@pytest.mark.parametrize(
    "name",
    [
        "MAX_SESSIONS",
        "AUTHORIZE_RATE_LIMIT",
        "MAX_METADATA_BYTES",
        "MAX_MESSAGE_CHARS",
        "HISTORY_MAX_TURNS",
        "LAYERCODE_MAX_REPLY_KB",
        "IDLE_TIMEOUT",
        "PUSH_TO_TALK_IDLE_TIMEOUT",
        "DRAIN_GRACE",
        "HISTORY_MAX_DAYS",
        "AUDIO_BURST_SECONDS",
        "AUDIO_FLOOD_SECONDS",
    ],
)
def test_limits_must_be_positive(name):
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: "0"})


@pytest.mark.parametrize("raw", ["-1", "301", "nan", "soon"])
def test_the_history_retry_interval_is_bounded(raw):
    assert Settings.from_env({"HISTORY_RETRY_SECONDS": "0"}).history_retry_s == 0
    with pytest.raises(SettingsError, match="HISTORY_RETRY_SECONDS"):
        Settings.from_env({"HISTORY_RETRY_SECONDS": raw})


def test_hardening_settings_are_read():
    settings = Settings.from_env(
        {
            "PUBLIC_URL": "https://voice.example.com/",
            "ALLOWED_HOSTS": "App.Example, other.example",
            "TRUSTED_PROXIES": "10.0.0.1",
            "AUTHORIZE_SECRET": "backend-secret",
            "MAX_SESSIONS": "7",
            "IDLE_TIMEOUT": "30",
        }
    )
    assert settings.public_url == "https://voice.example.com"
    assert {"voice.example.com", "app.example", "other.example", "localhost"} <= (
        settings.host_allowlist
    )
    assert settings.trusted_proxies == ("10.0.0.1",)
    assert "backend-secret" in settings.secrets and "backend-secret" not in repr(settings)
    assert (settings.max_sessions, settings.idle_timeout) == (7, 30.0)


@pytest.mark.parametrize("raw", ["-1", "3601", "nan", "soon"])
def test_the_flood_penalty_is_bounded(raw):
    with pytest.raises(SettingsError, match="FLOOD_PENALTY_SECONDS"):
        Settings.from_env({"FLOOD_PENALTY_SECONDS": raw})


@pytest.mark.parametrize("raw", ["-1", "61", "nan", "soon"])
def test_the_address_burst_is_bounded(raw):
    with pytest.raises(SettingsError, match="AUDIO_ADDRESS_BURST_SECONDS"):
        Settings.from_env({"AUDIO_ADDRESS_BURST_SECONDS": raw})
    assert Settings.from_env({"AUDIO_ADDRESS_BURST_SECONDS": "0"}).audio_address_burst_s == 0


def test_the_flood_penalty_can_be_turned_off():
    assert Settings.from_env({"FLOOD_PENALTY_SECONDS": "0"}).flood_penalty_s == 0
    with pytest.raises(SettingsError, match="PUBLIC_URL"):
        Settings.from_env({"PUBLIC_URL": "voice.example.com"})


def test_readme_documents_every_setting():
    from server.config import ENVIRONMENT
    from tests.conftest import ROOT

    readme = (ROOT / "README.md").read_text()
    for name in ENVIRONMENT:
        assert f"| `{name}` |" in readme, name


def test_shared_stores_need_a_shared_webhook_secret_and_keep_their_passwords_secret():
    with pytest.raises(SettingsError, match="same secret"):
        Settings.from_env({"REDIS_URL": "redis://r:6379/0"})
    settings = Settings.from_env(
        {
            "REDIS_URL": "redis://:redispw-1@r:6379/0",
            "DATABASE_URL": "postgresql://app:pgpw-2@db/voice",
            "AGENT_WEBHOOK_SECRET": "hooksecret-3",
        }
    )
    assert settings.agent_webhook_secret == "hooksecret-3"
    assert {"redispw-1", "pgpw-2", "hooksecret-3"} <= set(settings.secrets)
    assert "pw-" not in repr(settings)
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"DATABASE_URL": "mysql://app:pgpw-2@db/x", "AGENT_WEBHOOK_SECRET": "s"})
    assert "pgpw-2" not in str(refused.value)


def test_entry_point_refuses_a_shared_store_without_the_secret(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://db/voice")
    monkeypatch.delenv("AGENT_WEBHOOK_SECRET", raising=False)
    with pytest.raises(SystemExit, match="configuration error: AGENT_WEBHOOK_SECRET must be set"):
        main([])


def test_speculative_answers_are_on_by_default_only_for_the_demo_agent():
    from server.pipeline.speculation import speculation_enabled

    demo = Settings.from_env({})
    external = Settings.from_env({"AGENT_WEBHOOK_URL": "https://a.example/hook",
                                  "AGENT_WEBHOOK_SECRET": "s"})  # fmt: skip
    assert demo.speculative_answers == external.speculative_answers == "auto"
    assert speculation_enabled(demo.speculative_answers, external_agent=False)
    assert not speculation_enabled(external.speculative_answers, external_agent=True)
    assert speculation_enabled("on", external_agent=True)
    assert not speculation_enabled("off", external_agent=False)
    with pytest.raises(SettingsError, match="SPECULATIVE_ANSWERS"):
        Settings.from_env({"SPECULATIVE_ANSWERS": "maybe"})

    from server.pipeline.embedded import EmbeddedPipeline  # what the sessions are given

    assert EmbeddedPipeline(demo, http=None).speculative
    assert not EmbeddedPipeline(external, http=None).speculative
    on = Settings.from_env({"AGENT_WEBHOOK_URL": "https://a.example/hook",
                            "AGENT_WEBHOOK_SECRET": "s", "SPECULATIVE_ANSWERS": "on"})  # fmt: skip
    assert EmbeddedPipeline(on, http=None).speculative


def test_the_server_runs_numpys_blas_on_one_thread_unless_told_otherwise():
    """OpenBLAS's helper threads spin-wait on the cores the sessions share (server/__init__.py):
    the server's process sets one thread before numpy loads, and an operator's value stands."""
    import os
    import subprocess
    import sys

    check = "import server, numpy, os; print(os.environ['OPENBLAS_NUM_THREADS'])"
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    for given, expected in ((None, "1"), ("2", "2")):
        run_env = env if given is None else {**env, "OPENBLAS_NUM_THREADS": given}
        out = subprocess.run([sys.executable, "-c", check], env=run_env, capture_output=True,
                             text=True, check=True)  # fmt: skip
        assert out.stdout.strip() == expected


def test_the_middle_look_is_bounded_and_turned_off_by_zero():
    assert Settings.from_env({}).turn_end_middle_look_ms == 256
    assert Settings.from_env({"TURN_END_MIDDLE_LOOK_MS": "0"}).turn_end_middle_look_ms == 0
    for bad in ("50", "1001", "-1", "soon"):
        with pytest.raises(SettingsError, match="TURN_END_MIDDLE_LOOK_MS"):
            Settings.from_env({"TURN_END_MIDDLE_LOOK_MS": bad})
    assert (
        "middle-look" in Settings.from_env({"TURN_END_RULES_OFF": "middle-look"}).turn_end_rules_off
    )


def test_the_turn_end_models_arithmetic_is_chosen_per_cpu_unless_set():
    assert Settings.from_env({}).turn_end_model_exact == "auto"
    assert Settings.from_env({"TURN_END_MODEL_EXACT": "TRUE"}).turn_end_model_exact == "true"
    with pytest.raises(SettingsError, match="TURN_END_MODEL_EXACT"):
        Settings.from_env({"TURN_END_MODEL_EXACT": "yes"})
    from server.pipeline.embedded import EmbeddedPipeline

    exact = Settings.from_env({"TURN_END_MODEL_EXACT": "true"})
    assert EmbeddedPipeline(exact, http=None).turn_settings.model_exact == "true"


def test_piper_makes_a_sentence_alone_on_two_threads_unless_turned_off():
    from server.pipeline.embedded import EmbeddedPipeline

    assert Settings.from_env({}).tts_piper_solo is True
    settings = Settings.from_env({"TTS_PIPER_SOLO": "off"})
    assert settings.tts_piper_solo is False
    assert EmbeddedPipeline(settings, http=None).tts.solo is False
    for bad in ("sometimes", "between-looks"):  # a mode that was measured and taken out
        with pytest.raises(SettingsError, match="TTS_PIPER_SOLO"):
            Settings.from_env({"TTS_PIPER_SOLO": bad})
