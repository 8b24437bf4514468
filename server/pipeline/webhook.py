"""The agent webhook's messages, defined once: the event the pipeline POSTs and the replies the
agent streams back (docs/protocol.md, "Agent webhook"). The pipeline's client (agent.py) and the
demo agent (server/agent/) both use these classes, so the two ends agree by construction.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from ..errors import AgentError

log = logging.getLogger("server.pipeline.agent")

EVENT_TYPES = (
    "session.start",
    "message",
    "data",
    "session.update",
    "session.end",
    "message.cancel",
)
# This project's addition (docs/protocol.md §4): a `message` sent with `speculative: true` on
# the user's words at a pause, before the turn is known to be over, is followed by this event
# (same `turn_id`) when the user went on or said something else. Its answer is never heard.
MESSAGE_CANCEL = "message.cancel"
# Events whose answer nobody hears: a 2xx that is not an event stream is a good answer.
NOTIFICATIONS = ("session.end", MESSAGE_CANCEL)


@dataclass
class WebhookEvent:
    """One webhook call's payload; `extra` holds this project's additions (history, resumed)."""

    type: str  # one of EVENT_TYPES
    session_id: str
    conversation_id: str
    connection_id: str
    metadata: dict = field(default_factory=dict)
    turn_id: str | None = None
    text: str | None = None
    data: Any = None
    speculative: bool = False  # a `message` on words at a pause, before the turn is over
    extra: dict = field(default_factory=dict)

    def to_body(self) -> dict:
        """The request JSON (docs/protocol.md's field names), None fields left out.

        `custom_metadata` repeats `metadata` because agents of both Layercode generations read
        one or the other. `extra` is merged last (documented in docs/protocol.md §4).
        """
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
        if self.speculative:  # absent, not false, on every other event: agents may ignore it
            body["speculative"] = True
        body.update({k: v for k, v in self.extra.items() if v is not None})
        return body


@dataclass
class AgentSpeech:
    """`response.tts`: words to speak."""

    text: str

    def to_payload(self, turn_id: Any = None) -> dict:
        return {"type": "response.tts", "content": self.text, "turn_id": turn_id}


@dataclass
class AgentData:
    """`response.data`: handed to the browser as it is."""

    content: Any

    def to_payload(self, turn_id: Any = None) -> dict:
        return {"type": "response.data", "content": self.content, "turn_id": turn_id}


@dataclass
class AgentEnd:
    """`response.end`, or a stream that ended cleanly: the answer is complete."""

    def to_payload(self, turn_id: Any = None) -> dict:
        return {"type": "response.end", "turn_id": turn_id}


@dataclass
class AgentHangup:
    """`response.hangup`: the agent ends the session after its last words."""

    def to_payload(self, turn_id: Any = None) -> dict:
        return {"type": "response.hangup", "turn_id": turn_id}


AgentReply = AgentSpeech | AgentData | AgentEnd | AgentHangup


def parse_reply(data: str) -> AgentReply | None:
    """One SSE event's data as a reply; None for events the pipeline has no use for."""
    try:
        payload = json.loads(data)
    except ValueError:
        raise AgentError(
            "agent_bad_response", "The agent sent an event whose data is not JSON."
        ) from None
    if not isinstance(payload, dict):
        raise AgentError("agent_bad_response", "The agent sent an event that is not a JSON object.")
    kind = payload.get("type")
    if kind == "response.tts":
        content = payload.get("content")
        if isinstance(content, str) and content.strip():
            return AgentSpeech(content)
        log.debug("ignored a response.tts without words: %r", content)
        return None
    if kind == "response.data":
        return AgentData(payload.get("content"))
    if kind == "response.end":
        return AgentEnd()
    if kind == "response.hangup":
        return AgentHangup()
    log.debug("ignored agent event of type %r", kind)
    return None


def to_sse(reply: AgentReply, turn_id: Any = None) -> bytes:
    """One reply as a `text/event-stream` event."""
    return f"data: {json.dumps(reply.to_payload(turn_id), separators=(',', ':'))}\n\n".encode()
