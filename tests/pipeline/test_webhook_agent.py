"""The pipeline's agent client against real local webhook servers misbehaving in every way."""

from __future__ import annotations

import asyncio
import json
import threading

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from server.errors import AgentError, ServerError
from server.pipeline.agent import WebhookAgent
from server.pipeline.signature import HEADER, verify
from server.pipeline.webhook import AgentData, AgentEnd, AgentHangup, AgentSpeech, WebhookEvent
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
            signature = request.headers.get(HEADER)
            self.received.append(
                {"signed": verify(signature, body, SECRET), "signature": signature}
                | json.loads(body)
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

    async def kept_alive(self):
        async def chunks():
            yield sse({"type": "response.tts", "content": "Let me look."})
            for _ in range(6):  # 0.6 s of keep-alives, each well inside the idle timeout
                await asyncio.sleep(0.1)
                yield b": keep-alive\n\n"
            yield sse({"type": "response.tts", "content": "Found it."})
            yield sse({"type": "response.end"})

        return self.stream(chunks())

    async def keep_alive_only(self):
        async def chunks():
            for _ in range(50):
                await asyncio.sleep(0.05)
                yield b": keep-alive\n\n"
            yield sse({"type": "response.end"})

        return self.stream(chunks())

    async def pause(self):
        async def chunks():
            yield sse({"type": "response.tts", "content": "Thinking."})
            await asyncio.sleep(0.6)
            yield sse({"type": "response.end"})

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

    async def forbidden(self):
        return JSONResponse({"error": "forbidden"}, status_code=403)

    async def empty(self):
        return Response(status_code=200)

    async def no_content(self):
        return Response(status_code=204)


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


def replies(url: str, kind: str = "message", client_timeout: float = 5.0, **timeouts) -> list:
    async def collect():
        async with httpx.AsyncClient(timeout=client_timeout) as http:
            agent = WebhookAgent(url, SECRET, http, **timeouts)
            return [reply async for reply in agent.respond(event(kind))]

    return run(collect())


def failure(url: str, **timeouts) -> AgentError:
    with pytest.raises(AgentError) as caught:
        replies(url, **timeouts)
    assert SECRET not in caught.value.message
    assert isinstance(caught.value, ServerError)  # one error base, one stable `code`
    assert caught.value.code.startswith("agent_")
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


def test_the_first_reply_arrives_while_the_stream_is_still_open(webhook):
    webhook.release.clear()

    async def scenario():
        async with httpx.AsyncClient() as http:
            agent = WebhookAgent(f"{webhook.url}/held", SECRET, http)
            stream = agent.respond(event())
            # The server sends the rest only after the test has the first reply in hand.
            first = await asyncio.wait_for(anext(stream), 5)
            webhook.release.set()
            return [first, *[reply async for reply in stream]]

    assert run(scenario()) == [AgentSpeech("First."), AgentEnd()]


def test_closing_the_generator_closes_the_server_side_stream(webhook):
    webhook.release.clear()
    webhook.stream_closed.clear()

    async def scenario():
        async with httpx.AsyncClient() as http:
            stream = WebhookAgent(f"{webhook.url}/held", SECRET, http).respond(event())
            first = await asyncio.wait_for(anext(stream), 5)
            await stream.aclose()  # barge-in: the consumer stops listening
            return first

    assert run(scenario()) == AgentSpeech("First.")
    assert webhook.stream_closed.wait(5), "the server-side stream was left open"


def test_cancelling_the_consuming_task_closes_the_server_side_stream(webhook):
    webhook.release.clear()
    webhook.stream_closed.clear()

    async def scenario():
        async with httpx.AsyncClient() as http:
            agent = WebhookAgent(f"{webhook.url}/held", SECRET, http)
            got_first = asyncio.Event()

            async def consume():
                async for _ in agent.respond(event()):
                    got_first.set()

            task = asyncio.create_task(consume())
            await asyncio.wait_for(got_first.wait(), 5)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    run(scenario())
    assert webhook.stream_closed.wait(5), "the server-side stream was left open"


def test_a_broken_stream(webhook):
    assert failure(f"{webhook.url}/broken").code == "agent_stream_broken"


def test_a_stalled_stream_times_out_quickly(webhook):
    error = failure(f"{webhook.url}/slow", idle_timeout_s=0.3)
    assert error.code == "agent_timeout" and "stalled" in error.message


def test_no_first_event_times_out(webhook):
    error = failure(f"{webhook.url}/silent", first_event_timeout_s=0.3)
    assert error.code == "agent_timeout" and "did not answer" in error.message


def test_keep_alives_after_the_first_event_keep_the_stream_alive(webhook):
    assert replies(f"{webhook.url}/kept-alive", idle_timeout_s=0.4) == [
        AgentSpeech("Let me look."),
        AgentSpeech("Found it."),
        AgentEnd(),
    ]


def test_keep_alives_alone_do_not_count_as_a_first_answer(webhook):
    error = failure(f"{webhook.url}/keep-alive-only", first_event_timeout_s=0.4)
    assert error.code == "agent_timeout" and "did not answer" in error.message


def test_the_http_clients_own_timeout_does_not_cut_a_pause_the_agent_allows(webhook):
    # An httpx client built with a short read timeout: the agent's deadlines govern instead.
    got = replies(f"{webhook.url}/pause", client_timeout=0.2, idle_timeout_s=2)
    assert got == [AgentSpeech("Thinking."), AgentEnd()]


def test_a_stream_that_just_ends_ends_the_turn(webhook):
    assert replies(f"{webhook.url}/ends-without-end") == [AgentSpeech("Bye."), AgentEnd()]


def test_answers_that_are_not_sse(webhook):
    assert failure(f"{webhook.url}/html").code == "agent_bad_response"
    assert failure(f"{webhook.url}/bad-json").code == "agent_bad_response"
    error = failure(f"{webhook.url}/error")
    assert error.code == "agent_http_error" and "500" in error.message
    assert error.status == 500 and error.retryable
    for path in ("denied", "forbidden"):
        error = failure(f"{webhook.url}/{path}")
        assert error.code == "agent_unauthorized" and "AGENT_WEBHOOK_SECRET" in error.message


def test_an_unreachable_agent():
    error = failure(f"http://127.0.0.1:{free_port()}/agent")
    assert error.code == "agent_unreachable"


def test_session_end_accepts_an_empty_answer(webhook):
    for path in ("empty", "no-content", "html"):
        assert replies(f"{webhook.url}/{path}", kind="session.end") == [], path
    assert replies(f"{webhook.url}/ok", kind="session.end")[-1] == AgentEnd()
    with pytest.raises(AgentError):
        replies(f"{webhook.url}/error", kind="session.end")


def test_an_unsigned_agent_sends_no_signature(webhook):
    async def collect():
        async with httpx.AsyncClient() as http:
            agent = WebhookAgent(f"{webhook.url}/ok", None, http)
            return [reply async for reply in agent.respond(event())]

    assert run(collect())[-1] == AgentEnd()
    assert webhook.received[-1]["signature"] is None


def test_the_request_body_follows_protocol_section_3():
    body = WebhookEvent(
        type="data",
        session_id="s",
        conversation_id="s",
        connection_id="c",
        data={"clicked": True},
        extra={"history": [], "resumed": None},
    ).to_body()
    assert body == {
        "type": "data",
        "session_id": "s",
        "conversation_id": "s",
        "connection_id": "c",
        "metadata": {},
        "custom_metadata": {},
        "data": {"clicked": True},
        "history": [],
    }
