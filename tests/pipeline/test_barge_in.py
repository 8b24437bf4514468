"""Barge-in end to end: a real socket, real speech, and an agent webhook that streams its answer
a sentence every 700 ms (tests/support/streaming_agent.py), as LLM-backed agents do.

The agent's answer then stays open (`hold_after`) until the pipeline hangs up: on a loaded
machine the interruption is confirmed only once the speech recogniser has heard a word, which
can be after a whole answer of ten sentences streamed to its end (a held answer's stream is
still read, into a bounded queue), and then no hang-up could be seen."""

from __future__ import annotations

import asyncio
import time

from server.app import create_app
from server.config import Settings
from tests.support.aio import run
from tests.support.servers import serve
from tests.support.speech import silence, speak
from tests.support.streaming_agent import PATH, SENTENCES, StreamingAgentApp
from tests.support.voice_client import VoiceClient

SECRET = "streaming-agent-secret"


def test_barge_in_stops_a_streaming_agent_and_history_keeps_what_was_heard(tmp_path):
    agent = StreamingAgentApp(SECRET, hold_after=4)

    question = silence(0.2) + speak("Stop. What time is it?") + silence(1.0)  # made before

    async def scenario(url: str) -> None:
        async with VoiceClient(url) as client:
            await client.connect()
            first = await client.wait_for("response.audio")
            welcome = first.message["turn_id"]
            await asyncio.sleep(max(0.0, first.at + 1.5 - time.monotonic()))
            mark = len(client.received)
            await client.stream(question)
            user = await client.wait_for("turn.start", lambda m: m["role"] == "user", after=mark)
            transcript = await client.wait_for("user.transcript", after=mark)
            assert "time" in transcript.message["content"]
            answer = await client.wait_for(
                "response.audio", lambda m: m["turn_id"] != welcome, after=mark
            )
            later = client.received[client.received.index(user) + 1 :]
            leaked = [r.type for r in later if r.message.get("turn_id") == welcome]
            assert leaked == [], leaked
            assert answer.message["turn_id"] != welcome
            # The pipeline closed the interrupted answer's stream, while the session goes on.
            await asyncio.to_thread(agent.wait_for_hang_up, welcome)
            assert welcome not in agent.completed

        message = agent.messages()[0]
        said = next(h for h in message["history"] if h["role"] == "assistant")
        assert said["interrupted"] is True
        story = " ".join(SENTENCES)
        assert story.startswith(said["text"]), said["text"]
        heard = len(said["text"].split())
        # About two seconds of a sentence every 700 ms had played: some words, far from all.
        assert 1 <= heard < len(" ".join(SENTENCES[:3]).split()), said["text"]

    with serve(agent.app) as agent_url:
        settings = Settings(
            data_dir=tmp_path / "data",
            agent_webhook_url=agent_url + PATH,
            agent_webhook_secret=SECRET,
        )
        with serve(create_app(settings)) as url:
            run(scenario(url))
