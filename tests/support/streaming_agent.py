"""A streaming agent webhook, as users bring them: a sentence every ~700 ms, like an LLM.

A small Starlette app speaking Layercode's Webhook SSE API with the pipeline's own message
classes (server/pipeline/webhook.py). It checks the signature, answers `session.start` and
every `message` with `sentences` spread over time, and keeps what it was sent (the `history`
especially) and which answers it streamed to the end, so tests and bench/bargein.py can see
that an interrupted answer's stream was closed from the pipeline's side (Starlette cancels an
answer whose caller hung up; the agent records it).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from server.pipeline.signature import HEADER, verify
from server.pipeline.webhook import AgentEnd, AgentSpeech, to_sse

PATH = "/agent"
KEEP_ALIVE = b": thinking\n\n"  # an SSE comment: the stream is alive, nothing to say yet
SENTENCES = [
    "Let me tell you a long story about the sea.",
    "The waves rolled in slowly under a grey sky.",
    "A small boat drifted far away from the harbour.",
    "Nobody on the shore could see where it was going.",
    "Then the wind changed and brought it back again.",
    "The fisherman waved from the deck with a smile.",
    "His dog barked at the gulls above the mast.",
    "They tied the boat to the old wooden pier.",
    "Children ran along the beach to meet them.",
    "And that is how the story of the boat ends.",
]


class StreamingAgentApp:
    def __init__(
        self,
        secret: str,
        sentences: list[str] | None = None,
        interval_s: float = 0.7,
        hold_after: int | None = None,
    ):
        self.secret = secret
        self.sentences = sentences or SENTENCES
        self.interval_s = interval_s
        # After this many sentences an answer stays open saying nothing more (an LLM still
        # thinking, a slow tool call), sending keep-alives, until its caller hangs up: a test
        # of the hang-up then races neither the answer's end nor the pipeline's idle timeout.
        self.hold_after = hold_after
        self.events: list[dict] = []
        self.completed: list = []  # turn ids of the answers streamed to their end
        self.hung_up: list = []  # turn ids of the answers whose caller closed the stream
        self._lock = threading.Condition()  # notified on every event received
        self.app = Starlette(routes=[Route(PATH, self.webhook, methods=["POST"])])

    async def webhook(self, request: Request) -> Response:
        body = await request.body()
        if not verify(request.headers.get(HEADER), body, self.secret):
            return JSONResponse({"error": "bad signature"}, status_code=401)
        event = json.loads(body)
        with self._lock:
            self.events.append(event)
            self._lock.notify_all()
        if event["type"] == "session.end":
            return Response(status_code=204)
        return StreamingResponse(self.answer(event.get("turn_id")), media_type="text/event-stream")

    async def answer(self, turn_id) -> AsyncIterator[bytes]:
        try:
            for n, sentence in enumerate(self.sentences):
                while n == self.hold_after:  # thinking: keep-alives until the caller hangs up
                    yield KEEP_ALIVE
                    await asyncio.sleep(self.interval_s)
                if n:
                    await asyncio.sleep(self.interval_s)
                yield to_sse(AgentSpeech(sentence), turn_id)
            yield to_sse(AgentEnd(), turn_id)
        except (asyncio.CancelledError, GeneratorExit):  # the caller hung up
            with self._lock:
                self.hung_up.append(turn_id)
                self._lock.notify_all()
            raise
        with self._lock:
            self.completed.append(turn_id)

    @property
    def answer_s(self) -> float:
        """How long one whole answer takes to stream."""
        return self.interval_s * (len(self.sentences) - 1)

    def messages(self) -> list[dict]:
        with self._lock:
            return [e for e in self.events if e["type"] == "message"]

    def wait_for(self, found, what: str, timeout: float = 60.0) -> dict:
        """The first event `found(event)` accepts, once it arrives (from a test's thread)."""

        def first():
            return next((e for e in self.events if found(e)), None)

        with self._lock:
            if not self._lock.wait_for(first, timeout):
                raise TimeoutError(f"the agent was never sent {what}")
            return first()

    def wait_for_hang_up(self, turn_id: str, timeout: float = 60.0) -> None:
        """Once the caller closed the stream of the answer to `turn_id` (from a test's
        thread)."""
        with self._lock:
            if not self._lock.wait_for(lambda: turn_id in self.hung_up, timeout):
                raise TimeoutError(
                    f"the answer {turn_id} was never hung up: its stream was left open"
                )

    def wait_for_message(self, text: str, timeout: float = 60.0) -> dict:
        """The `message` event whose text is `text`, once it arrives."""
        return self.wait_for(
            lambda e: e["type"] == "message" and e.get("text") == text, repr(text), timeout
        )
