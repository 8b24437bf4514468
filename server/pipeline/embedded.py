"""The embedded pipeline as the server runs it: its parts built once, its routes, its lifetime.

`EmbeddedPipeline` owns what every session shares — the session keys, the SQLite history, the
speech recognisers, the voice, the agent client — and loads the speech models before the server
says it is ready, so the first caller does not wait for them. The agent is the demo agent this
same server serves at `/api/agent` unless `AGENT_WEBHOOK_URL` names another one.
"""

from __future__ import annotations

import asyncio
import logging
import time

import httpx
from starlette.routing import BaseRoute, WebSocketRoute
from starlette.types import Scope

from ..config import Settings
from .agent import WebhookAgent
from .agent_turn import Pacing
from .authorizer import AGENT_WEBSOCKET_PATH, WEBSOCKET_PATH, EmbeddedAuthorizer
from .echo import EchoSettings
from .keys import SessionKeys
from .session import InterruptionSettings, PipelineServices
from .store import SessionStore
from .stt import RecognizerPool
from .tts import make_tts
from .turns import TurnSettings
from .websocket import pipeline_socket

log = logging.getLogger("server.pipeline")

DEMO_AGENT_PATH = "/api/agent"


class EmbeddedPipeline:
    def __init__(self, settings: Settings, http: httpx.AsyncClient):
        self.settings = settings
        self.http = http
        self.webhook_secret = settings.agent_webhook_secret
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = SessionStore(settings.data_dir / "sessions.sqlite3")
        self.keys = SessionKeys()
        self.authorizer = EmbeddedAuthorizer(
            self.keys,
            self.store,
            trigger=settings.transcription_trigger,
            can_interrupt=settings.can_interrupt,
        )
        self.recognizers = RecognizerPool()
        self.tts = make_tts(settings.tts_engine)
        self.turn_settings = TurnSettings()
        self.interruptions = InterruptionSettings(
            false_interruption_s=settings.false_interruption_s,
            min_words=settings.interruption_min_words,
        )
        self.pacing = Pacing(lead_s=settings.playback_lead_s)
        self.echo_settings = EchoSettings(
            enabled=settings.echo_defence, max_delay_s=settings.echo_max_delay_ms / 1000
        )
        self.on_turn_timings = None  # benchmarks and tests listen here
        self._agents: dict[str, WebhookAgent] = {}

    async def start(self) -> None:
        """Load the models now (in threads), so the first session starts at full speed."""
        started = time.perf_counter()
        await asyncio.gather(
            asyncio.to_thread(self.recognizers.warm), asyncio.to_thread(self.tts.warm)
        )
        log.info(
            "embedded pipeline ready",
            extra={"ctx": {"tts": self.settings.tts_engine,
                           "load_ms": round((time.perf_counter() - started) * 1000)}},
        )  # fmt: skip

    def close(self) -> None:
        self.recognizers.close()
        self.tts.close()
        self.store.close()

    def agent_url(self, scope: Scope) -> str:
        if self.settings.agent_webhook_url:
            return self.settings.agent_webhook_url
        host, port = scope.get("server") or ("127.0.0.1", self.settings.port)
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}{DEMO_AGENT_PATH}"

    def services_for(self, scope: Scope) -> PipelineServices:
        """The shared parts, with the agent reached on the address this connection came in on."""
        url = self.agent_url(scope)
        agent = self._agents.get(url)
        if agent is None:
            agent = self._agents[url] = WebhookAgent(url, self.webhook_secret, self.http)
        return PipelineServices(
            store=self.store,
            recognizers=self.recognizers,
            tts=self.tts,
            agent=agent,
            turn_settings=self.turn_settings,
            interruptions=self.interruptions,
            pacing=self.pacing,
            echo_settings=self.echo_settings,
            on_turn_timings=self.on_turn_timings,
        )


def websocket_routes() -> list[BaseRoute]:
    """Layercode's WebSocket paths, both generations."""
    return [
        WebSocketRoute(WEBSOCKET_PATH, pipeline_socket),
        WebSocketRoute(AGENT_WEBSOCKET_PATH, pipeline_socket),
    ]
