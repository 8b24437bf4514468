"""The agent, reached over Layercode's Webhook SSE API (PROTOCOL §3).

For each event the pipeline POSTs JSON, signed with `layercode-signature`, and reads the
`text/event-stream` answer as it streams: each `response.tts` becomes speech the moment it
arrives, so the agent's first words are synthesised while it is still writing the rest. Every
way the call can go wrong ends the turn with an `AgentError` whose code is stable and whose
message a person can act on — never a hang: the first event and each later one have deadlines.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from .signature import HEADER, sign
from .sse import SSEParser

log = logging.getLogger("server.pipeline.agent")


@dataclass
class WebhookEvent:
    type: str  # session.start | message | data | session.update | session.end
    session_id: str
    conversation_id: str
    connection_id: str
    metadata: dict = field(default_factory=dict)
    turn_id: str | None = None
    text: str | None = None
    data: Any = None
    extra: dict = field(default_factory=dict)  # this project's additions: history, resumed

    def to_body(self) -> dict:
        body: dict[str, Any] = {
            "type": self.type,
            "session_id": self.session_id,
            "conversation_id": self.conversation_id,
            "connection_id": self.connection_id,
            "metadata": self.metadata,
            "custom_metadata": self.metadata,
        }
        for name in ("turn_id", "text", "data"):
            if getattr(self, name) is not None:
                body[name] = getattr(self, name)
        return {**body, **self.extra}


@dataclass
class AgentSpeech:
    text: str


@dataclass
class AgentData:
    content: Any


@dataclass
class AgentEnd:
    pass


@dataclass
class AgentHangup:
    pass


AgentReply = AgentSpeech | AgentData | AgentEnd | AgentHangup


class AgentError(Exception):
    """The agent could not answer this turn. `code` is stable; `message` says what to fix."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def parse_reply(data: str) -> AgentReply | None:
    try:
        payload = json.loads(data)
    except ValueError:
        raise AgentError("agent_bad_response", "the agent sent an event that is not JSON") from None
    if not isinstance(payload, dict):
        raise AgentError("agent_bad_response", "the agent sent an event that is not an object")
    kind = payload.get("type")
    if kind == "response.tts":
        content = payload.get("content")
        return AgentSpeech(content) if isinstance(content, str) and content.strip() else None
    if kind == "response.data":
        return AgentData(payload.get("content"))
    if kind == "response.end":
        return AgentEnd()
    if kind == "response.hangup":
        return AgentHangup()
    log.debug("ignored agent event of type %r", kind)
    return None


class WebhookAgent:
    def __init__(
        self,
        url: str,
        secret: str | None,
        http: httpx.AsyncClient,
        *,
        first_event_timeout_s: float = 10.0,
        idle_timeout_s: float = 10.0,
    ):
        self.url = url
        self.secret = secret
        self.http = http
        self.first_event_timeout_s = first_event_timeout_s
        self.idle_timeout_s = idle_timeout_s

    async def respond(self, event: WebhookEvent) -> AsyncIterator[AgentReply]:
        """The agent's replies to `event`, as they stream; ends after `response.end`."""
        body = json.dumps(event.to_body(), separators=(",", ":")).encode()
        headers = {"content-type": "application/json", "accept": "text/event-stream"}
        if self.secret:
            headers[HEADER] = sign(body, self.secret)
        request = self.http.build_request("POST", self.url, content=body, headers=headers)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.first_event_timeout_s
        try:
            response = await asyncio.wait_for(
                self.http.send(request, stream=True), self._left(deadline)
            )
        except TimeoutError:
            raise self._timeout(first=True) from None
        except httpx.TransportError as error:
            raise AgentError(
                "agent_unreachable", f"could not reach the agent webhook at {self.url} ({error})"
            ) from None
        try:
            self._check(response, event)
            if event.type == "session.end" and not self._is_sse(response):
                return
            parser = SSEParser()
            chunks = response.aiter_raw()
            answered = False
            while True:
                try:
                    chunk = await asyncio.wait_for(anext(chunks), self._left(deadline))
                except StopAsyncIteration:
                    yield AgentEnd()  # a clean end of stream counts as the end of the answer
                    return
                except TimeoutError:
                    raise self._timeout(first=not answered) from None
                except httpx.TransportError as error:
                    raise AgentError(
                        "agent_stream_broken",
                        "the agent's answer broke off before response.end "
                        f"({type(error).__name__})",
                    ) from None
                for sse in parser.feed(chunk):
                    reply = parse_reply(sse.data)
                    answered = True
                    deadline = loop.time() + self.idle_timeout_s
                    if reply is None:
                        continue
                    yield reply
                    if isinstance(reply, AgentEnd):
                        return
        finally:
            await response.aclose()

    @staticmethod
    def _left(deadline: float) -> float:
        return max(0.001, deadline - asyncio.get_running_loop().time())

    def _timeout(self, first: bool) -> AgentError:
        if first:
            return AgentError(
                "agent_timeout",
                f"the agent did not answer within {self.first_event_timeout_s:g} s",
            )
        return AgentError(
            "agent_timeout", f"the agent's answer stalled for {self.idle_timeout_s:g} s"
        )

    @staticmethod
    def _is_sse(response: httpx.Response) -> bool:
        return response.headers.get("content-type", "").startswith("text/event-stream")

    def _check(self, response: httpx.Response, event: WebhookEvent) -> None:
        status = response.status_code
        if status in (401, 403):
            raise AgentError(
                "agent_unauthorized",
                f"the agent webhook refused the call ({status}): check AGENT_WEBHOOK_SECRET",
            )
        if not 200 <= status < 300:
            raise AgentError("agent_http_error", f"the agent webhook answered HTTP {status}")
        if event.type != "session.end" and not self._is_sse(response):
            kind = response.headers.get("content-type", "no content type")
            raise AgentError(
                "agent_bad_response",
                f"the agent webhook answered {kind}, not text/event-stream",
            )
