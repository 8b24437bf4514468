"""The pipeline's agent client against real local webhook servers misbehaving in every way."""

from __future__ import annotations

import asyncio
import json
import threading

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route

from server.pipeline.agent import (
    AgentData,
    AgentEnd,
    AgentError,
    AgentHangup,
    AgentSpeech,
    WebhookAgent,
    WebhookEvent,
)
from server.pipeline.signature import HEADER, verify
from tests.support.aio import run
from tests.support.servers import free_port, serve

SECRET = "webhook-secret"


def sse(payload: dict) -> bytes:
    return f"data: {json.dumps(payload)}\n\n".encode()


class Webhook:
    """Answers per path; records what it received; lets a test hold the stream open."""

    def __init__(self):
        self.received: list[dict] = []
        self.release = threading.Event()
        self.stream_closed = threading.Event()

    def app(self) -> Starlette:
        async def handle(request: Request):
            body = await request.body()
            self.received.append(
                {"signed": verify(request.headers.get(HEADER), body, SECRET), **json.loads(body)}
            )
            return await getattr(self, request.path_params["mode"].replace("-", "_"))()

        return Starlette(routes=[Route("/{mode}", handle, methods=["POST"])])

    @staticmethod
    def stream(chunks) -> StreamingResponse:
        return StreamingResponse(chunks, media_type="text/event-stream")

    async def ok(self):
        async def chunks():
            yield sse({"type": "response.tts", "content": "Hello there."})
            yield b": keep-alive\n\n"
            both = sse({"type": "response.data", "content": {"n": 1}}) + sse(
                {"type": "response.tts", "content": "Second."}
            )
            yield both[:7]
            yield both[7:]
            yield sse({"type": "something.new"})
            yield sse({"type": "response.hangup"})
            yield sse({"type": "response.end"})
            yield sse({"type": "response.tts", "content": "never read"})

        return self.stream(chunks())

    async def held(self):
        async def chunks():
            try:
                yield sse({"type": "response.tts", "content": "First."})
                while not self.release.is_set():
                    await asyncio.sleep(0.01)
                yield sse({"type": "response.end"})
            finally:
                self.stream_closed.set()

        return self.stream(chunks())

    async def broken(self):
        async def chunks():
            yield sse({"type": "response.tts", "content": "Half"})
            raise RuntimeError("the agent crashed mid-answer")

        return self.stream(chunks())

    async def slow(self):
        async def chunks():
            yield sse({"type": "response.tts", "content": "One."})
            await asyncio.sleep(5)
            yield sse({"type": "response.end"})

        return self.stream(chunks())

    async def silent(self):
        async def chunks():
            await asyncio.sleep(5)
            yield sse({"type": "response.end"})

        return self.stream(chunks())

    async def ends_without_end(self):
        async def chunks():
            yield sse({"type": "response.tts", "content": "Bye."})

        return self.stream(chunks())

    async def html(self):
        return PlainTextResponse("<html>oops</html>", media_type="text/html")

    async def bad_json(self):
        return self.stream(iter([b"data: {not json\n\n"]))

    async def error(self):
        return JSONResponse({"error": "boom"}, status_code=500)

    async def denied(self):
        return JSONResponse({"error": "bad signature"}, status_code=401)


@pytest.fixture(scope="module")
def webhook():
    hook = Webhook()
    with serve(hook.app()) as url:
        hook.url = url
        yield hook


def event(kind: str = "message") -> WebhookEvent:
    return WebhookEvent(
        type=kind,
        session_id="sess_1",
        conversation_id="sess_1",
        connection_id="conn_1",
        metadata={"user": "ada"},
        turn_id="turn_1",
        text="hello",
        extra={"history": []},
    )


def replies(url: str, kind: str = "message", **timeouts) -> list:
    async def collect():
        async with httpx.AsyncClient() as http:
            agent = WebhookAgent(url, SECRET, http, **timeouts)
            return [reply async for reply in agent.respond(event(kind))]

    return run(collect())


def failure(url: str, **timeouts) -> AgentError:
    with pytest.raises(AgentError) as caught:
        replies(url, **timeouts)
    assert SECRET not in caught.value.message
    return caught.value


def test_a_normal_stream_signed_and_parsed_across_chunks(webhook):
    assert replies(f"{webhook.url}/ok") == [
        AgentSpeech("Hello there."),
        AgentData({"n": 1}),
        AgentSpeech("Second."),
        AgentHangup(),
        AgentEnd(),
    ]
    sent = webhook.received[-1]
    assert sent["signed"]
    assert sent["type"] == "message" and sent["text"] == "hello" and sent["turn_id"] == "turn_1"
    assert sent["session_id"] == sent["conversation_id"] == "sess_1"
    assert sent["metadata"] == {"user": "ada"} and sent["history"] == []


def test_the_first_reply_arrives_while_the_stream_is_still_open_and_cancel_closes_it(webhook):
    webhook.release.clear()
    webhook.stream_closed.clear()

    async def scenario():
        async with httpx.AsyncClient() as http:
            agent = WebhookAgent(f"{webhook.url}/held", SECRET, http)
            stream = agent.respond(event())
            first = await asyncio.wait_for(anext(stream), 5)  # before the server may finish
            await stream.aclose()  # barge-in: the consumer stops listening
            return first

    assert run(scenario()) == AgentSpeech("First.")
    assert webhook.stream_closed.wait(5), "the server-side stream was left open"


def test_a_broken_stream(webhook):
    assert failure(f"{webhook.url}/broken").code == "agent_stream_broken"


def test_a_stalled_stream_times_out_quickly(webhook):
    error = failure(f"{webhook.url}/slow", idle_timeout_s=0.3)
    assert error.code == "agent_timeout" and "stalled" in error.message


def test_no_first_event_times_out(webhook):
    error = failure(f"{webhook.url}/silent", first_event_timeout_s=0.3)
    assert error.code == "agent_timeout" and "did not answer" in error.message


def test_a_stream_that_just_ends_ends_the_turn(webhook):
    assert replies(f"{webhook.url}/ends-without-end") == [AgentSpeech("Bye."), AgentEnd()]


def test_answers_that_are_not_sse(webhook):
    assert failure(f"{webhook.url}/html").code == "agent_bad_response"
    assert failure(f"{webhook.url}/bad-json").code == "agent_bad_response"
    error = failure(f"{webhook.url}/error")
    assert error.code == "agent_http_error" and "500" in error.message
    assert failure(f"{webhook.url}/denied").code == "agent_unauthorized"


def test_an_unreachable_agent():
    error = failure(f"http://127.0.0.1:{free_port()}/agent")
    assert error.code == "agent_unreachable"


def test_session_end_accepts_an_empty_answer(webhook):
    assert replies(f"{webhook.url}/html", kind="session.end") == []
