"""The demo agent as a webhook on a real port, called the way the pipeline calls it."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest
from starlette.applications import Starlette

from server.agent.app import MAX_BODY_BYTES, agent_routes
from server.errors import AgentError
from server.pipeline.agent import WebhookAgent
from server.pipeline.signature import sign
from server.pipeline.webhook import AgentData, AgentEnd, AgentSpeech, WebhookEvent
from tests.support.aio import run
from tests.support.servers import serve

SECRET = "demo-secret"
AFTERNOON = dt.datetime(2026, 11, 24, 15, 41)


@pytest.fixture(scope="module")
def agent_url():
    with serve(Starlette(routes=agent_routes(SECRET, clock=lambda: AFTERNOON))) as url:
        yield f"{url}/api/agent"


def call(url: str, kind: str, secret: str | None = SECRET, **fields) -> list:
    async def collect():
        async with httpx.AsyncClient() as http:
            agent = WebhookAgent(url, secret, http)
            event = WebhookEvent(
                type=kind, session_id="s", conversation_id="s", connection_id="c", **fields
            )
            return [reply async for reply in agent.respond(event)]

    return run(collect())


def test_welcome_is_spoken_sentence_by_sentence(agent_url):
    welcome = call(agent_url, "session.start", extra={"history": [], "resumed": False})
    assert welcome == [
        AgentSpeech("Hi! I'm the demo agent running on this machine."),
        AgentSpeech("Ask me the time, or say help."),
        AgentEnd(),
    ]


def test_the_time_intent_streams_tts_events_then_data_then_end(agent_url):
    history = [{"role": "user", "text": "hello"}, {"role": "assistant", "text": "Hello there!"}]
    answer = call(
        agent_url, "message", turn_id="t2", text="what time is it", extra={"history": history}
    )
    assert answer == [
        AgentSpeech("You said: what time is it."),
        AgentSpeech("It's 3:41 PM."),
        AgentData({"heard": "what time is it", "intent": "time", "turn": 2}),
        AgentEnd(),
    ]


def test_every_event_carries_the_turn_id(agent_url):
    body = b'{"type":"message","turn_id":"turn_9","text":"hello"}'
    response = httpx.post(
        agent_url, content=body, headers={"layercode-signature": sign(body, SECRET)}
    )
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [line for line in response.text.split("\n\n") if line]
    assert len(events) == 4
    assert all(event.startswith("data: {") and '"turn_id":"turn_9"' in event for event in events)
    assert '"type":"response.end"' in events[-1]


def test_data_events_are_acknowledged(agent_url):
    replies = call(agent_url, "data", turn_id="t3", data={"clicked": "help"})
    assert replies == [
        AgentSpeech("Thanks, I got the data you sent."),
        AgentData({"received": {"clicked": "help"}}),
        AgentEnd(),
    ]


def test_welcome_back_uses_the_history(agent_url):
    history = [{"role": "user", "text": "my name is Ada"}]
    replies = call(agent_url, "session.start", extra={"history": history, "resumed": True})
    assert replies[:2] == [
        AgentSpeech("Welcome back! We had one earlier turn."),
        AgentSpeech("Last time you said: my name is Ada."),
    ]


def test_session_end_is_acknowledged_quietly(agent_url):
    assert call(agent_url, "session.end") == []
    body = b'{"type":"session.end"}'
    quiet = httpx.post(agent_url, content=body, headers={"layercode-signature": sign(body, SECRET)})
    assert quiet.status_code == 200 and quiet.content == b""


def test_a_speculative_message_is_answered_and_its_cancel_acknowledged_quietly(agent_url):
    """Speculative answers (docs/protocol.md §4): the demo agent has no side effects to defer,
    so it answers `speculative: true` as usual; `message.cancel` gets an empty 200, which the
    pipeline's client takes as a complete answer (no `agent_bad_response`)."""
    spoken = call(agent_url, "message", text="what time is it", turn_id="t1", speculative=True)
    assert spoken[:2] == [AgentSpeech("You said: what time is it."), AgentSpeech("It's 3:41 PM.")]
    assert call(agent_url, "message.cancel", turn_id="t1") == []
    body = b'{"type":"message.cancel","turn_id":"t1"}'
    quiet = httpx.post(agent_url, content=body, headers={"layercode-signature": sign(body, SECRET)})
    assert quiet.status_code == 200 and quiet.content == b""


def test_the_speculative_flag_is_on_the_wire_only_when_set():
    event = WebhookEvent(type="message", session_id="s", conversation_id="s", connection_id="c")
    assert "speculative" not in event.to_body()
    event.speculative = True
    assert event.to_body()["speculative"] is True


def test_a_caller_with_the_wrong_secret_gets_agent_unauthorized(agent_url):
    with pytest.raises(AgentError) as caught:
        call(agent_url, "message", secret="not-the-secret", text="hi")
    assert caught.value.code == "agent_unauthorized"
    with pytest.raises(AgentError) as caught:
        call(agent_url, "message", secret=None, text="hi")
    assert caught.value.code == "agent_unauthorized"


def test_bad_signature_and_bad_json_are_refused_with_json_reasons(agent_url):
    body = b'{"type":"message","text":"hi"}'
    refused = httpx.post(agent_url, content=body, headers={"layercode-signature": "t=1,v1=00"})
    assert refused.status_code == 401 and "signature" in refused.json()["error"]
    stale = httpx.post(
        agent_url, content=body, headers={"layercode-signature": sign(body, SECRET, timestamp=1)}
    )
    assert stale.status_code == 401
    unsigned = httpx.post(agent_url, content=body)
    assert unsigned.status_code == 401 and unsigned.json()["error"]
    for garbage in (b"{not json", b"[1, 2]", b'{"type": 3}', b"\xff\xfe"):
        bad = httpx.post(
            agent_url, content=garbage, headers={"layercode-signature": sign(garbage, SECRET)}
        )
        assert bad.status_code == 400 and bad.json()["error"], garbage
    assert "Traceback" not in bad.text


def test_an_oversized_event_is_refused(agent_url):
    body = b'{"type":"message","text":"' + b"a" * MAX_BODY_BYTES + b'"}'
    response = httpx.post(
        agent_url, content=body, headers={"layercode-signature": sign(body, SECRET)}
    )
    assert response.status_code == 413 and response.json()["error"]


def test_without_a_secret_the_signature_is_not_checked():
    with serve(Starlette(routes=agent_routes(None))) as url:
        replies = call(f"{url}/api/agent", "message", secret=None, text="hello")
    assert replies[0] == AgentSpeech("You said: hello.")
