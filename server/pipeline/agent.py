"""The agent, reached over Layercode's Webhook SSE API (docs/protocol.md, "Agent webhook").

For each event the pipeline POSTs JSON, signed with `layercode-signature`, and reads the
`text/event-stream` answer as it streams: each `response.tts` becomes speech the moment its
bytes arrive, so the agent's first words are synthesised while it is still writing the rest.
Every way the call can go wrong ends the turn with an `AgentError` whose code is stable and
whose message a person can act on — never a hang: the first event and each later one have
deadlines, and the consumer cancelling (barge-in) closes the HTTP stream at once.

Two decisions the protocol leaves open:

- A stream that ends cleanly (the final chunk arrives) without `response.end` counts as the end
  of the answer: `AgentEnd` is yielded. Agents written against Layercode's cloud often just
  return; the words they sent are good. A connection that drops mid-stream is different:
  `agent_stream_broken`, because the answer may have been cut in the middle of a sentence.
- Before the first event only real events count, so keep-alives cannot hold a turn hostage
  past `first_event_timeout_s`. After it, any bytes (a keep-alive too) prove the stream alive
  and restart the `idle_timeout_s` clock, so a slow tool call can keep its stream open.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

import httpx

from ..errors import AgentError
from .signature import HEADER, sign
from .sse import SSEParser
from .webhook import NOTIFICATIONS, AgentEnd, AgentReply, WebhookEvent, parse_reply

__all__ = ["AgentError", "WebhookAgent"]

log = logging.getLogger("server.pipeline.agent")


class WebhookAgent:
    """Calls one agent webhook; one instance serves every session (it holds no per-call state)."""

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
        """The agent's replies to `event`, each yielded as soon as it arrives.

        Ends after `AgentEnd`. Raises `AgentError`. Closing the generator or cancelling its
        task closes the HTTP stream. For a notification (`session.end`, `message.cancel`) a 2xx
        answer that is not an event stream (an empty 200 or 204) yields nothing.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.first_event_timeout_s
        response = await self._post(event, deadline)
        try:
            self._check(response, event)
            if event.type in NOTIFICATIONS and not self._is_sse(response):
                return
            parser = SSEParser()
            chunks = response.aiter_bytes()
            answered = False
            while True:
                try:
                    async with asyncio.timeout_at(deadline):
                        chunk = await anext(chunks)
                except StopAsyncIteration:
                    yield AgentEnd()  # a clean end of stream ends the answer (module docstring)
                    return
                except TimeoutError:
                    raise self._timeout(first=not answered) from None
                except httpx.TransportError as error:
                    raise AgentError(
                        "agent_stream_broken",
                        "The agent's answer broke off before response.end "
                        f"({type(error).__name__}).",
                        retryable=True,
                    ) from error
                if answered:
                    deadline = loop.time() + self.idle_timeout_s
                for sse in parser.feed(chunk):
                    answered = True
                    deadline = loop.time() + self.idle_timeout_s
                    reply = parse_reply(sse.data)
                    if reply is None:
                        continue
                    yield reply
                    if isinstance(reply, AgentEnd):
                        return
        finally:
            await response.aclose()

    async def _post(self, event: WebhookEvent, deadline: float) -> httpx.Response:
        body = json.dumps(event.to_body(), separators=(",", ":")).encode()
        headers = {
            "content-type": "application/json",
            "accept": "text/event-stream",
            "accept-encoding": "identity",  # a compressor may hold back the first words
        }
        if self.secret:
            headers[HEADER] = sign(body, self.secret)
        # timeout=None: this class's own deadlines bound every wait, and the client's default
        # (5 s read) would otherwise cut a slow stream with the wrong error.
        request = self.http.build_request(
            "POST", self.url, content=body, headers=headers, timeout=None
        )
        try:
            async with asyncio.timeout_at(deadline):
                return await self.http.send(request, stream=True)
        except TimeoutError:
            raise self._timeout(first=True) from None
        except httpx.TransportError as error:
            raise AgentError(
                "agent_unreachable",
                f"Could not reach the agent webhook at {self.url} ({type(error).__name__}: "
                f"{error or 'no details'}); is it running?",
                retryable=True,
            ) from error

    def _timeout(self, first: bool) -> AgentError:
        if first:
            message = f"The agent did not answer within {self.first_event_timeout_s:g} s."
        else:
            message = f"The agent's answer stalled for more than {self.idle_timeout_s:g} s."
        return AgentError("agent_timeout", message, retryable=True)

    @staticmethod
    def _is_sse(response: httpx.Response) -> bool:
        kind = response.headers.get("content-type", "")
        return kind.split(";")[0].strip().lower() == "text/event-stream"

    def _check(self, response: httpx.Response, event: WebhookEvent) -> None:
        status = response.status_code
        if status in (401, 403):
            raise AgentError(
                "agent_unauthorized",
                f"The agent webhook refused the call (HTTP {status}); check that it uses the "
                "same AGENT_WEBHOOK_SECRET as the pipeline.",
                status=status,
            )
        if not 200 <= status < 300:
            raise AgentError(
                "agent_http_error",
                f"The agent webhook answered HTTP {status} at {self.url}.",
                retryable=status >= 500 or status == 429,
                status=status,
            )
        if event.type not in NOTIFICATIONS and not self._is_sse(response):
            kind = response.headers.get("content-type") or "no content type"
            raise AgentError(
                "agent_bad_response",
                f"The agent webhook answered {kind}, not text/event-stream.",
                status=status,
            )
