"""The demo agent as a webhook on a real port, called the way the pipeline calls it."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette

from server.agent.app import agent_routes
from server.pipeline.agent import AgentData, AgentEnd, AgentSpeech, WebhookAgent, WebhookEvent
from server.pipeline.signature import sign
from tests.support.aio import run
from tests.support.servers import serve

SECRET = "demo-secret"


@pytest.fixture(scope="module")
def agent_url():
    with serve(Starlette(routes=agent_routes(SECRET))) as url:
        yield f"{url}/api/agent"


def call(url: str, kind: str, **fields) -> list:
    async def collect():
        async with httpx.AsyncClient() as http:
            agent = WebhookAgent(url, SECRET, http)
            event = WebhookEvent(
                type=kind, session_id="s", conversation_id="s", connection_id="c", **fields
            )
            return [reply async for reply in agent.respond(event)]

    return run(collect())


def test_welcome_then_an_answer_streamed_as_several_tts_events_and_data(agent_url):
    welcome = call(agent_url, "session.start", extra={"history": [], "resumed": False})
    assert isinstance(welcome[0], AgentSpeech) and isinstance(welcome[-1], AgentEnd)

    answer = call(agent_url, "message", turn_id="t1", text="what time is it")
    speech = [r.text for r in answer if isinstance(r, AgentSpeech)]
    data = [r.content for r in answer if isinstance(r, AgentData)]
    assert len(speech) >= 2 and speech[0] == "You said: what time is it."
    assert data == [{"heard": "what time is it", "intent": "time", "turn": 1}]
    assert isinstance(answer[-1], AgentEnd)


def test_welcome_back_uses_the_history(agent_url):
    history = [{"role": "user", "text": "my name is Ada"}]
    replies = call(agent_url, "session.start", extra={"history": history, "resumed": True})
    assert "Welcome back" in replies[0].text


def test_session_end_is_acknowledged_quietly(agent_url):
    assert call(agent_url, "session.end") == []


def test_bad_signature_and_bad_json_are_refused_with_json_reasons(agent_url):
    body = b'{"type":"message","text":"hi"}'
    refused = httpx.post(agent_url, content=body, headers={"layercode-signature": "t=1,v1=00"})
    assert refused.status_code == 401 and "signature" in refused.json()["error"]
    unsigned = httpx.post(agent_url, content=body)
    assert unsigned.status_code == 401
    garbage = b"{not json"
    bad = httpx.post(
        agent_url, content=garbage, headers={"layercode-signature": sign(garbage, SECRET)}
    )
    assert bad.status_code == 400 and bad.json()["error"]
    no_type = b"[1, 2]"
    wrong = httpx.post(
        agent_url, content=no_type, headers={"layercode-signature": sign(no_type, SECRET)}
    )
    assert wrong.status_code == 400
