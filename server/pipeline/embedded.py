"""The embedded pipeline as the server runs it: its parts built once, its routes, its lifetime.

`EmbeddedPipeline` owns what every session shares — the session keys and the history (in this
process and SQLite, or in Redis and PostgreSQL shared with other nodes: `stores.py`), the live
connections (one per session; drained together on SIGTERM), the speech recognisers, the voice,
the agent client — and opens the stores and loads the speech
models before the server says it is ready, so the first caller does not wait for them. The
agent is the demo agent this same server serves at `/api/agent` unless `AGENT_WEBHOOK_URL`
names another one.
"""

from __future__ import annotations

import asyncio
import logging
import time

import httpx
from starlette.routing import BaseRoute, WebSocketRoute
from starlette.types import Scope

from ..config import Settings
from . import sentence_end
from .agent import WebhookAgent
from .agent_turn import Pacing
from .authorizer import AGENT_WEBSOCKET_PATH, WEBSOCKET_PATH, EmbeddedAuthorizer
from .connections import Connections
from .echo import EchoSettings
from .echo_gate import GateSettings
from .endpointing import SmartTurn
from .pacing import AddressBursts, LoopLag
from .session import InterruptionSettings, PipelineServices
from .speculation import speculation_enabled
from .stores import Stores, StoreUnavailable, open_stores
from .stt import RecognizerPool
from .tts import make_tts
from .turns import TurnSettings, rules_off
from .vad import SileroVad
from .websocket import pipeline_socket

log = logging.getLogger("server.pipeline")

DEMO_AGENT_PATH = "/api/agent"


class EmbeddedPipeline:
    def __init__(self, settings: Settings, http: httpx.AsyncClient):
        self.settings = settings
        self.http = http
        self.webhook_secret = settings.agent_webhook_secret
        self.stores: Stores | None = None  # opened by start()
        self.authorizer: EmbeddedAuthorizer | None = None  # made by start(), on the stores
        self.connections = Connections()
        self.recognizers = RecognizerPool(
            profile=settings.stt_profile,
            priority_lane=settings.stt_priority_lane,
            worker_nice=settings.stt_worker_nice,
            catch_up_ms=settings.stt_catch_up_ms,
            decoders_per_worker=settings.stt_decoders_per_worker,
            max_workers=settings.stt_max_workers,
            max_words_per_frame=settings.stt_max_words_per_frame,
            phrases=settings.stt_phrases,
        )
        self.tts = make_tts(settings.tts_engine, piper_solo=settings.tts_piper_solo)
        self.turn_settings = TurnSettings(
            vad=settings.vad,
            end_model=settings.turn_end_model,
            late_words_end_ms=settings.turn_end_late_words_ms,
            recognised_silence_ms=settings.stt_silence_ms,
            model_exact=settings.turn_end_model_exact,
            # a rule turned off by name (TURN_END_RULES_OFF=middle-look) wins over its setting
            **{
                "middle_look_ms": settings.turn_end_middle_look_ms,
                "clear_words_confirm_ms": settings.turn_end_clear_words_confirm_ms,
                "middle_clear_end_model_min": settings.turn_end_middle_clear_words_min,
                "look_ahead_ms": settings.turn_end_look_ahead_ms,
            }
            | rules_off(settings.turn_end_rules_off),
        )
        self.interruptions = InterruptionSettings(
            false_interruption_s=settings.false_interruption_s,
            min_words=settings.interruption_min_words,
        )
        self.pacing = Pacing(
            lead_s=settings.playback_lead_s,
            first_phrase_words=settings.tts_first_phrase_words,
            rest_beside_phrase=settings.tts_rest_beside_phrase,
        )
        self.echo_settings = EchoSettings(
            enabled=settings.echo_defence,
            max_delay_s=settings.echo_max_delay_ms / 1000,
            gate=GateSettings(enabled=settings.echo_gate),
        )
        self.speculative = speculation_enabled(
            settings.speculative_answers, external_agent=bool(settings.agent_webhook_url)
        )
        self.on_turn_timings = None  # benchmarks and tests listen here
        self.loop_lag = LoopLag()  # the pacers credit this node's own lag (pacing.py)
        self.address_bursts = AddressBursts(settings.audio_address_burst_s)  # (pacing.py)
        self._loop_lag_task: asyncio.Task | None = None
        self._agents: dict[str, WebhookAgent] = {}
        self.ready = False  # models loaded and stores open: the node takes sessions

    async def start(self) -> None:
        """Open the stores and load the models (in threads), so the first session starts at
        full speed; `StoreUnavailable` if a configured store cannot be reached."""
        started = time.perf_counter()
        self._loop_lag_task = asyncio.create_task(self.loop_lag.run(), name="loop-lag")
        self.stores = await open_stores(self.settings)
        if self.settings.redis_url:  # imported here: Redis's driver loads only when configured
            from .session_bus import SessionBus

            self.connections.bus = await SessionBus.open(self.settings.redis_url, self.connections)
        self.authorizer = EmbeddedAuthorizer(self.stores, self.connections, self.settings)
        loads = [asyncio.to_thread(self.recognizers.warm), asyncio.to_thread(self.tts.warm)]
        if self.turn_settings.end_model == "smart-turn":
            loads.append(asyncio.to_thread(SmartTurn(exact=self.turn_settings.model_exact).warm))
            if self.turn_settings.text_veto:  # the language model the words are judged by
                loads.append(asyncio.to_thread(sentence_end.warm))
        if self.turn_settings.vad == "silero":
            loads.append(asyncio.to_thread(SileroVad))
        await asyncio.gather(*loads)
        self.ready = True
        log.info(
            "embedded pipeline ready",
            extra={"ctx": {"tts": self.settings.tts_engine, **self.stores.describe(),
                           "load_ms": round((time.perf_counter() - started) * 1000)}},
        )  # fmt: skip

    async def drain(self, grace_s: float) -> None:
        """Let answers being spoken finish, up to `grace_s`, then close every socket (1012)."""
        deadline = asyncio.get_running_loop().time() + grace_s
        log.info("draining %d sessions", len(self.connections))
        await self.connections.drain(deadline)

    async def unready_reason(self) -> str | None:
        """Why this node should not take a new session now, or None if it should."""
        if not self.ready or self.stores is None:
            return "starting: the speech models or the stores are not ready yet"
        try:
            await self.stores.check()
        except StoreUnavailable as error:
            return str(error)
        return None

    async def close(self) -> None:
        self.ready = False
        if self._loop_lag_task is not None:
            self._loop_lag_task.cancel()
        self.recognizers.close()
        self.tts.close()
        if self.connections.bus is not None:
            await self.connections.bus.close()
        if self.stores is not None:
            await self.stores.close()

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
            store=self.stores.history,
            recognizers=self.recognizers,
            tts=self.tts,
            agent=agent,
            turn_settings=self.turn_settings,
            interruptions=self.interruptions,
            pacing=self.pacing,
            echo_settings=self.echo_settings,
            audio_burst_s=self.settings.audio_burst_s,
            audio_flood_s=self.settings.audio_flood_s,
            queued_messages=self.settings.max_queued_messages,
            history_retry_s=self.settings.history_retry_s,
            loop_lag=self.loop_lag,
            on_turn_timings=self.on_turn_timings,
            speculative=self.speculative,
            words_at_ask=self.settings.stt_words_at_ask,
            final_from_look=self.settings.stt_final_from_look,
        )


def websocket_routes() -> list[BaseRoute]:
    """Layercode's WebSocket paths, both generations."""
    return [
        WebSocketRoute(WEBSOCKET_PATH, pipeline_socket),
        WebSocketRoute(AGENT_WEBSOCKET_PATH, pipeline_socket),
    ]
