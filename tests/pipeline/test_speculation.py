"""Speculative answers (speculation.py) in one session, with fake stages.

The user speaks, pauses (`PausingDetector`: one silent chunk is a pause, a second ends the
turn) with an interim transcript that looks whole: the agent is asked at once, `speculative:
true`, and its first sentence made, nothing sent. The turn's end with the same words releases
the answer; the user going on, or other final words, cancel it: nothing of it reaches the
client or the history, and the agent gets `message.cancel`.
"""

from __future__ import annotations

import asyncio

from server.pipeline.agent_turn import AgentState
from server.pipeline.session import InterruptionSettings
from server.pipeline.webhook import MESSAGE_CANCEL
from tests.support.aio import run
from tests.support.session_runner import (
    SILENCE,
    FakeTTS,
    PausingDetector,
    SessionRunner,
    StreamingAgent,
)

ANSWER = ["It is noon.", "Anything else?"]
QUESTION = "what time is it"


def speculative_runner(tmp_path, agent: StreamingAgent, **options) -> SessionRunner:
    return SessionRunner(
        tmp_path, agent, make_detector=PausingDetector, speculative=True, **options
    )


async def welcomed(runner: SessionRunner) -> None:
    """The welcome is answered and played: the session is free to answer the user."""
    await runner.send({"type": "client.ready"})
    end = await runner.wait_for("response.end")
    await runner.send({"type": "trigger.response.audio.replay_finished"})
    await runner.wait_for("turn.end", lambda m: m["turn_id"] == end.message["turn_id"])


async def speak_and_pause(runner: SessionRunner, interim: str, final: str) -> None:
    runner.recognizers.interim = interim
    await runner.speak(final, end=False)
    await runner.audio(SILENCE)  # a pause: the turn is not over


async def history(runner: SessionRunner, turns: int) -> list[tuple[str, str]]:
    """The session's history once it holds `turns` turns (an answer is recorded after it
    played)."""
    found: list = []

    async def recorded() -> bool:
        found[:] = await runner.store.history(runner.session_id)
        return len(found) >= turns

    while not await recorded():
        await runner.eventually(lambda: True)  # one pass of the loop
    return [(t.role, t.text) for t in found]


def in_flight(name: str) -> bool:
    """Is a task by that name still running (the session names its speculation "speculate")?"""
    return any(t.get_name() == name and not t.done() for t in asyncio.all_tasks())


def speculative_messages(agent: StreamingAgent) -> list:
    return [e for e in agent.events if e.type == "message" and e.speculative]


async def speculated(runner: SessionRunner, agent: StreamingAgent, tts: FakeTTS) -> str:
    """Wait for the speculation: the agent asked, and its first sentence made. Its turn id."""
    await runner.eventually(lambda: speculative_messages(agent) and ANSWER[0] in tts.made)
    return speculative_messages(agent)[0].turn_id


def test_a_confirmed_speculation_goes_out_as_the_turn_ends_already_made(tmp_path):
    agent = StreamingAgent(ANSWER, interval_s=0.1)
    agent.welcome = ["Hi."]
    tts = FakeTTS()

    async def scenario():
        async with speculative_runner(tmp_path, agent, tts=tts) as runner:
            await welcomed(runner)
            mark = len(runner.sent)
            await speak_and_pause(runner, QUESTION, QUESTION)
            answer_id = await speculated(runner, agent, tts)
            body = speculative_messages(agent)[0].to_body()
            assert body["speculative"] is True and body["text"] == QUESTION
            assert runner.of_turn(answer_id) == []  # nothing sent while speculating
            assert [s.message["role"] for s in runner.sent[mark:] if s.type == "turn.start"] == [
                "user"
            ]
            assert "response.text" not in runner.types(mark)
            made_before_the_end = list(tts.made)

            await runner.audio(SILENCE)  # the turn ends, with the same words
            end = await runner.wait_for("response.end", lambda m: m["turn_id"] == answer_id)
            transcript = await runner.wait_for("user.transcript", after=mark)
            start = await runner.wait_for(
                "turn.start", lambda m: m["turn_id"] == answer_id, after=mark
            )
            assert runner.sent.index(transcript) < runner.sent.index(start)
            assert ANSWER[0] in made_before_the_end  # the first audio was ready at the end
            assert [e.type for e in agent.events] == ["session.start", "message"]  # one call
            assert runner.audio_seconds(answer_id) > 0
            timings = end.message["timings"]
            assert timings["webhook_ms"] == 0 and timings["speculative_ms"] > 0, timings

            await runner.send({"type": "trigger.response.audio.replay_finished"})
            await runner.wait_for("turn.end", lambda m: m["turn_id"] == answer_id)
            assert (await history(runner, 3))[-2:] == [
                ("user", QUESTION),
                ("assistant", " ".join(ANSWER)),
            ]

    run(scenario())


def test_the_user_going_on_cancels_the_speculation_and_nothing_of_it_is_sent_or_kept(tmp_path):
    agent = StreamingAgent(ANSWER, interval_s=0.5)  # still streaming when the user goes on
    agent.welcome = ["Hi."]
    tts = FakeTTS()

    async def scenario():
        async with speculative_runner(tmp_path, agent, tts=tts) as runner:
            await welcomed(runner)
            mark = len(runner.sent)
            await speak_and_pause(runner, QUESTION, QUESTION)
            speculative_id = await speculated(runner, agent, tts)

            runner.recognizers.interim = None
            await runner.speak("what time is it in paris")  # goes on, then the turn ends
            await runner.audio(SILENCE)
            answer = await runner.wait_for("response.end", after=mark)
            assert runner.of_turn(speculative_id) == [], "the speculation reached the client"
            # The speculative stream was closed after its first sentence; the answer's went on.
            assert agent.sent == ["Hi.", ANSWER[0], *ANSWER], agent.sent
            cancels = [e for e in agent.events if e.type == MESSAGE_CANCEL]
            assert [e.turn_id for e in cancels] == [speculative_id]
            final = agent.events[-1] if agent.events[-1].type == "message" else agent.events[-2]
            assert final.text == "what time is it in paris" and not final.speculative
            assert all(h["role"] == "user" or h["text"] == "Hi." for h in final.extra["history"])

            await runner.send({"type": "trigger.response.audio.replay_finished"})
            await runner.wait_for("turn.end", lambda m: m["turn_id"] == answer.message["turn_id"])
            assert await history(runner, 3) == [
                ("assistant", "Hi."),
                ("user", "what time is it in paris"),
                ("assistant", " ".join(ANSWER)),
            ]

    run(scenario())


def test_other_final_words_discard_the_speculation_and_answer_them(tmp_path):
    agent = StreamingAgent(ANSWER, interval_s=0.1)
    agent.welcome = ["Hi."]
    tts = FakeTTS()

    async def scenario():
        async with speculative_runner(tmp_path, agent, tts=tts) as runner:
            await welcomed(runner)
            mark = len(runner.sent)
            await speak_and_pause(runner, "what time is it", "what time is it now")
            speculative_id = await speculated(runner, agent, tts)
            await runner.audio(SILENCE)  # the turn ends: the final transcript differs
            user = await runner.wait_for("user.transcript", after=mark)
            end = await runner.wait_for("response.end", after=mark)
            assert end.message["turn_id"] == user.message["turn_id"] != speculative_id
            assert runner.of_turn(speculative_id) == []
            await runner.eventually(lambda: any(e.type == MESSAGE_CANCEL for e in agent.events))
            messages = [e for e in agent.events if e.type == "message"]
            assert [(m.text, m.speculative) for m in messages] == [
                ("what time is it", True),
                ("what time is it now", False),
            ]

    run(scenario())


def test_no_speculation_on_words_that_do_not_look_whole_or_when_it_is_off(tmp_path):
    agent = StreamingAgent(ANSWER, interval_s=0.1)
    agent.welcome = ["Hi."]

    async def scenario(speculative: bool, interim: str) -> None:
        runner = SessionRunner(
            tmp_path / f"{speculative}{len(interim)}",
            agent,
            make_detector=PausingDetector,
            speculative=speculative,
        )
        (tmp_path / f"{speculative}{len(interim)}").mkdir()
        async with runner:
            await welcomed(runner)
            mark = len(runner.sent)
            await speak_and_pause(runner, interim, interim)
            await runner.audio(SILENCE)
            await runner.wait_for("response.end", after=mark)
        assert speculative_messages(agent) == []

    run(scenario(True, "book a table for"))
    run(scenario(False, QUESTION))


def test_no_speculation_while_an_answer_being_spoken_is_held_by_the_users_words(tmp_path):
    """The welcome is still playing and the user's first words hold it (too few to confirm a
    barge-in): a pause whose words look whole must not start a speculative answer, which would
    supersede the held welcome before the interruption is decided. The turn's end decides it;
    the answer to it is an ordinary message."""
    agent = StreamingAgent(ANSWER, interval_s=0.1)
    agent.welcome = ["Hi there, how can I help you today?"]
    needs_three_words = InterruptionSettings(min_words=3)

    async def scenario():
        async with speculative_runner(tmp_path, agent, interruptions=needs_three_words) as runner:
            await runner.send({"type": "client.ready"})
            welcome = (await runner.wait_for("response.audio")).message["turn_id"]
            mark = len(runner.sent)
            runner.recognizers.interim = "what time"  # looks whole; two words hold, not confirm
            await runner.speak(QUESTION, end=False)
            await runner.audio(SILENCE)  # a pause, while the welcome is held
            session = runner.session
            await runner.eventually(lambda: session.user_turn and session.user_turn.pauses)
            await runner.eventually(lambda: not in_flight("speculate"))
            assert session.speculation is None, "speculated over the held welcome"
            assert session.agent_turn.state is AgentState.HELD

            await runner.audio(SILENCE)  # the end: four words confirm the interruption
            await runner.wait_for("response.end", lambda m: m["turn_id"] != welcome, after=mark)
            assert speculative_messages(agent) == []
            assert [e.type for e in agent.events] == ["session.start", "message"]
            assert agent.events[-1].text == QUESTION and not agent.events[-1].speculative

    run(scenario())
