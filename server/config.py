"""Server settings, read once from the environment and validated at start.

A wrong value stops the server before it listens, with a message naming the variable, rather
than failing later in a request. The README's configuration table mirrors `ENVIRONMENT`.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from layercode_client.protocol import CLOUD_PIPELINE_AUTHORIZE_URL, TRIGGERS

from .errors import SettingsError

__all__ = ["ENVIRONMENT", "Settings", "SettingsError"]

ROOT = Path(__file__).resolve().parent.parent

# name → (default, what it does); the README's table is generated from the same words.
ENVIRONMENT: dict[str, tuple[str, str]] = {
    "HOST": ("127.0.0.1", "Interface to listen on (`--host` overrides)."),
    "PORT": ("8000", "Port to listen on (`--port` overrides)."),
    "LAYERCODE_API_KEY": (
        "",
        "Set it to proxy `/api/authorize` to Layercode's cloud; unset, the embedded pipeline "
        "answers. Never sent to the browser, never logged.",
    ),
    "LAYERCODE_AUTHORIZE_URL": (
        CLOUD_PIPELINE_AUTHORIZE_URL,
        "Layercode's authorize URL (the agents generation: "
        "`https://api.layercode.com/v1/agents/web/authorize_session`).",
    ),
    "LAYERCODE_TIMEOUT": ("10", "Seconds to wait for Layercode's cloud before answering 504."),
    "CORS_ALLOW_ORIGINS": (
        "",
        "Comma-separated origins (e.g. `https://app.example.com`) whose pages may call "
        "`/api/authorize`; empty means same origin only.",
    ),
    "PIPELINE_ID": ("demo", "Pipeline id the demo page asks for (embedded pipeline accepts any)."),
    "TRANSCRIPTION_TRIGGER": (
        "automatic",
        "Embedded pipeline turn-taking: `automatic` (voice activity) or `push_to_talk`.",
    ),
    "CAN_INTERRUPT": ("true", "Embedded pipeline: may the user interrupt the agent (barge-in)."),
    "FALSE_INTERRUPTION_MS": (
        "600",
        "Embedded pipeline: how long the agent's answer is held (not lost) when the user starts "
        "speaking over it; speech without enough words by then resumes it. 0: interrupt at once.",
    ),
    "INTERRUPTION_MIN_WORDS": (
        "1",
        "Embedded pipeline: words the user must say over the agent to interrupt it (fewer, "
        'e.g. a cough or an "mm", is a false interruption).',
    ),
    "PLAYBACK_LEAD_MS": (
        "500",
        "Embedded pipeline: agent audio sent ahead of the play position (absorbs network "
        "jitter; a barge-in drops at most this much in the browser).",
    ),
    "TTS_ENGINE": ("piper", "Embedded pipeline voice: `piper` (natural) or `espeak` (light)."),
    "ECHO_DEFENCE": (
        "true",
        "Embedded pipeline: remove the agent's own voice (heard back through the user's "
        "speakers) from the microphone before turn detection, so it never interrupts the agent.",
    ),
    "ECHO_MAX_DELAY_MS": (
        "1200",
        "Echo defence: the longest delay, from when agent audio was due to play to when the "
        "microphone hears it (browser output latency + network + input latency), searched.",
    ),
    "AGENT_WEBHOOK_URL": (
        "",
        "A Layercode-style agent webhook (Webhook SSE API); empty means the built-in demo "
        "agent at `/api/agent`.",
    ),
    "AGENT_WEBHOOK_SECRET": (
        "",
        "Secret that signs webhook calls (`layercode-signature`); generated per run when empty "
        "and the demo agent is used.",
    ),
    "DATA_DIR": (".data", "Where the embedded pipeline keeps session history (SQLite)."),
    "LOG_LEVEL": ("info", "debug, info, warning or error."),
}


def _env(name: str, environ: dict[str, str]) -> str:
    return environ.get(name, ENVIRONMENT[name][0]).strip()


def _positive_float(name: str, environ: dict[str, str]) -> float:
    raw = _env(name, environ)
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds, not {raw!r}") from None
    if value <= 0:
        raise SettingsError(f"{name} must be greater than zero")
    return value


def _milliseconds(name: str, environ: dict[str, str], most: int = 10_000) -> float:
    """A duration in milliseconds, 0..`most`, as seconds."""
    raw = _env(name, environ)
    if not raw.isdigit() or int(raw) > most:
        raise SettingsError(
            f"{name} must be a whole number of milliseconds (0-{most}), not {raw!r}"
        )
    return int(raw) / 1000


def _count(name: str, environ: dict[str, str], most: int = 20) -> int:
    raw = _env(name, environ)
    if not raw.isdigit() or not 1 <= int(raw) <= most:
        raise SettingsError(f"{name} must be a whole number from 1 to {most}, not {raw!r}")
    return int(raw)


def _port(raw: str, name: str = "PORT") -> int:
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise SettingsError(f"{name} must be a port number (1-65535), not {raw!r}")
    return int(raw)


def _bool(name: str, environ: dict[str, str]) -> bool:
    raw = _env(name, environ).lower()
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false, not {raw!r}")


def _milliseconds(name: str, environ: dict[str, str], low: int, high: int) -> int:
    raw = _env(name, environ)
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise SettingsError(f"{name} must be a whole number of milliseconds, {low}-{high}")
    return int(raw)


def _origins(raw: str) -> tuple[str, ...]:
    origins = tuple(o.strip().rstrip("/") for o in raw.split(",") if o.strip())
    for origin in origins:
        if origin != "*" and not origin.startswith(("http://", "https://")):
            raise SettingsError(
                f"CORS_ALLOW_ORIGINS entries must look like https://host[:port], not {origin!r}"
            )
    return origins


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    layercode_api_key: str = field(default="", repr=False)
    layercode_authorize_url: str = CLOUD_PIPELINE_AUTHORIZE_URL
    layercode_timeout: float = 10.0
    cors_allow_origins: tuple[str, ...] = ()
    pipeline_id: str = "demo"
    transcription_trigger: str = "automatic"
    can_interrupt: bool = True
    false_interruption_s: float = 0.6
    interruption_min_words: int = 1
    playback_lead_s: float = 0.5
    tts_engine: str = "piper"
    echo_defence: bool = True
    echo_max_delay_ms: int = 1200
    agent_webhook_url: str = ""
    agent_webhook_secret: str = field(default="", repr=False)
    data_dir: Path = ROOT / ".data"
    log_level: str = "info"

    @property
    def uses_cloud(self) -> bool:
        return bool(self.layercode_api_key)

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in a response or a log line."""
        return tuple(s for s in (self.layercode_api_key, self.agent_webhook_secret) if s)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)
        trigger = _env("TRANSCRIPTION_TRIGGER", env)
        if trigger not in TRIGGERS:
            raise SettingsError(f"TRANSCRIPTION_TRIGGER must be one of {', '.join(TRIGGERS)}")
        tts_engine = _env("TTS_ENGINE", env)
        if tts_engine not in ("piper", "espeak"):
            raise SettingsError("TTS_ENGINE must be piper or espeak")
        log_level = _env("LOG_LEVEL", env).lower()
        if log_level not in ("debug", "info", "warning", "error"):
            raise SettingsError("LOG_LEVEL must be debug, info, warning or error")
        authorize_url = _env("LAYERCODE_AUTHORIZE_URL", env)
        if not authorize_url.startswith(("http://", "https://")):
            raise SettingsError("LAYERCODE_AUTHORIZE_URL must be an http(s) URL")
        webhook_url = _env("AGENT_WEBHOOK_URL", env)
        if webhook_url and not webhook_url.startswith(("http://", "https://")):
            raise SettingsError("AGENT_WEBHOOK_URL must be an http(s) URL")
        webhook_secret = _env("AGENT_WEBHOOK_SECRET", env)
        if webhook_url and not webhook_secret:
            raise SettingsError("AGENT_WEBHOOK_SECRET is required with AGENT_WEBHOOK_URL")
        data_dir = Path(_env("DATA_DIR", env))
        return cls(
            host=_env("HOST", env),
            port=_port(_env("PORT", env)),
            layercode_api_key=_env("LAYERCODE_API_KEY", env),
            layercode_authorize_url=authorize_url,
            layercode_timeout=_positive_float("LAYERCODE_TIMEOUT", env),
            cors_allow_origins=_origins(_env("CORS_ALLOW_ORIGINS", env)),
            pipeline_id=_env("PIPELINE_ID", env) or "demo",
            transcription_trigger=trigger,
            can_interrupt=_bool("CAN_INTERRUPT", env),
            false_interruption_s=_milliseconds("FALSE_INTERRUPTION_MS", env),
            interruption_min_words=_count("INTERRUPTION_MIN_WORDS", env),
            playback_lead_s=_milliseconds("PLAYBACK_LEAD_MS", env),
            tts_engine=tts_engine,
            echo_defence=_bool("ECHO_DEFENCE", env),
            echo_max_delay_ms=_milliseconds("ECHO_MAX_DELAY_MS", env, 100, 5000),
            agent_webhook_url=webhook_url,
            agent_webhook_secret=webhook_secret or secrets.token_urlsafe(32),
            data_dir=data_dir if data_dir.is_absolute() else ROOT / data_dir,
            log_level=log_level,
        )
