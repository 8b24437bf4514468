"""Turn-taking in one session, with fake stages: barge-in, what was heard, false interruptions.

The agent streams its answer a sentence at a time, as an LLM-backed agent does; the voice makes
0.2 s of audio a word; the microphone is a fake whose speech the test scripts (see
tests/support/session_runner.py). Real time runs, but only for a few seconds per test.
"""

from __future__ import annotations

import asyncio
import time

from server.pipeline.agent_turn import Pacing
from server.pipeline.echo import EchoSettings
from server.pipeline.session import InterruptionSettings
from tests.support.aio import run
from tests.support.session_runner import (
    CHUNK_S,
    RATE,
    SILENCE,
    FakeTTS,
    SessionRunner,
    StreamingAgent,
)

ANSWER = [
    "One two three four five.",
    "Six seven eight nine ten.",
    "Eleven twelve thirteen fourteen fifteen.",
    "Sixteen seventeen eighteen nineteen twenty.",
]


def assistant_starts(runner: SessionRunner, after: int = 0) -> list[str]:
    return [
        s.message["turn_id"]
        for s in runner.sent[after:]
        if s.type == "turn.start" and s.message["role"] == "assistant"
    ]


async def first_audio(runner: SessionRunner) -> tuple[str, float]:
    await runner.send({"type": "client.ready"})
    audio = await runner.wait_for("response.audio")
    return audio.message["turn_id"], audio.at


def test_barge_in_stops_a_streaming_agent_at_once(tmp_path):
    """After the user's turn.start nothing of the interrupted turn leaves the server, and the
    webhook stream and synthesis stop — also for sentences that had already arrived."""
    agent = StreamingAgent(["Okay."], hold_open=True)
    agent.welcome = [" ".join(ANSWER)]  # four sentences at once, then the stream stays open
    slow_voice = FakeTTS(delay_s=0.3)  # Piper on a busy machine
    pacing = Pacing(lead_s=0.2, synthesis_ahead_s=1.0)

    async def scenario():
        async with SessionRunner(tmp_path, agent, tts=slow_voice, pacing=pacing) as runner:
            welcome, _ = await first_audio(runner)
            await asyncio.sleep(0.3)
            await runner.speak("stop please")
            user = await runner.wait_for("turn.start", lambda m: m["role"] == "user")
            await runner.wait_for("response.audio", lambda m: m["turn_id"] != welcome)
            await asyncio.sleep(1.0)  # time enough for the old turn's synthesis to go on
            after = runner.sent.index(user) + 1
            assert runner.of_turn(welcome, after) == []
            assert agent.closed == 1, "the webhook stream was left open"
            assert ANSWER[3] not in slow_voice.made, slow_voice.made  # synthesis stopped

    run(scenario())


def test_history_holds_only_the_words_heard_marked_interrupted(tmp_path):
    agent = StreamingAgent(ANSWER, interval_s=0.1)
    agent.welcome = ANSWER

    async def scenario():
        async with SessionRunner(tmp_path, agent) as runner:
            welcome, started = await first_audio(runner)
            await asyncio.sleep(max(0.0, started + 0.6 - time.monotonic()))
            played = time.monotonic() - started  # when the user's voice reaches the session
            await runner.speak("wait a moment")
            await runner.wait_for("response.end", lambda m: m["turn_id"] != welcome)
            history = agent.events[-1].extra["history"]
            said = next(h for h in history if h["role"] == "assistant")
            words = said["text"].split()
            assert said.get("interrupted") is True
            assert " ".join(ANSWER).startswith(said["text"])
            # The voice makes 0.2 s a word: the words whole by then, give or take one.
            assert abs(len(words) - played / 0.2) <= 1.5, (played, said)

    run(scenario())


def test_the_clients_interruption_report_sets_what_was_heard(tmp_path):
    """`trigger.response.audio.interrupted` with played_ms: 400 ms is two words exactly."""
    agent = StreamingAgent(ANSWER, interval_s=0.1)

    async def scenario():
        async with SessionRunner(tmp_path, agent) as runner:
            welcome, _ = await first_audio(runner)
            await asyncio.sleep(1.2)
            runner.recognizers.text = "hold on"
            await runner.audio(b"\x00\x04" * 1600)
            await runner.send(
                {
                    "type": "trigger.response.audio.interrupted",
                    "turn_id": welcome,
                    "last_delta_id_played": f"{welcome}-1",
                    "played_ms": 400,
                }
            )
            await runner.audio(b"\x00\x00" * 1600)
            transcript = await runner.wait_for("user.transcript")
            mark = runner.sent.index(transcript)
            await runner.wait_for("turn.start", lambda m: m["role"] == "assistant", after=mark)
            history = agent.events[-1].extra["history"]
            said = next(h for h in history if h["role"] == "assistant")
            assert said == {"role": "assistant", "text": "One two", "interrupted": True}

    run(scenario())


def test_a_false_interruption_resumes_the_answer_as_a_new_turn(tmp_path):
    agent = StreamingAgent(ANSWER[:2], interval_s=0.1)

    async def scenario():
        async with SessionRunner(tmp_path, agent) as runner:
            welcome, _ = await first_audio(runner)
            await asyncio.sleep(0.7)
            await runner.speak("", chunks=2)  # a cough: voice, but no words
            user = await runner.wait_for("turn.start", lambda m: m["role"] == "user")
            mark = runner.sent.index(user)
            resumed = await runner.wait_for(
                "turn.start", lambda m: m["role"] == "assistant", after=mark
            )
            resumed_id = resumed.message["turn_id"]
            assert resumed_id != welcome
            assert runner.of_turn(welcome, mark + 1) == []
            assert resumed.at - user.at >= 0.6  # the window (default 600 ms) was waited out
            end = await runner.wait_for("response.end", lambda m: m["turn_id"] == resumed_id)
            heard = runner.audio_seconds(welcome)
            rest = runner.audio_seconds(resumed_id)
            total = 10 * 0.2
            # Resumed from the start of the word being heard: a little is said twice (what was
            # sent ahead, 0.2 s lead + a 0.25 s chunk, and the word cut short), no more.
            assert total - heard <= rest <= total - heard + 0.7, (heard, rest)
            assert "user.transcript" not in runner.types(mark)
            assert len(agent.events) == 1, "a cough is not a message to the agent"
            await runner.send({"type": "trigger.response.audio.replay_finished"})
            await runner.wait_for("turn.end", lambda m: m["turn_id"] == resumed_id)
            assert end
            await asyncio.sleep(0.1)
            history = await runner.store.history(runner.session_id)
            assert [t.text for t in history] == [" ".join(ANSWER[:2])]
            assert not history[0].interrupted

    run(scenario())


def test_too_few_words_are_a_false_interruption_too(tmp_path):
    agent = StreamingAgent(ANSWER[:2], interval_s=0.1)
    settings = InterruptionSettings(false_interruption_s=0.3, min_words=2)

    async def scenario():
        async with SessionRunner(tmp_path, agent, interruptions=settings) as runner:
            welcome, _ = await first_audio(runner)
            await asyncio.sleep(0.5)
            await runner.speak("mhm", chunks=2)
            user = await runner.wait_for("turn.start", lambda m: m["role"] == "user")
            mark = runner.sent.index(user)
            resumed = await runner.wait_for(
                "turn.start", lambda m: m["role"] == "assistant", after=mark
            )
            assert resumed.message["turn_id"] != welcome
            assert runner.of_turn(welcome, mark + 1) == []
            assert "user.transcript" not in runner.types(mark)
            assert len(agent.events) == 1, "a backchannel is not a message to the agent"

    run(scenario())


def test_words_in_the_interim_transcript_confirm_the_interruption_before_the_turn_ends(tmp_path):
    agent = StreamingAgent(ANSWER, interval_s=0.1)

    async def scenario():
        async with SessionRunner(tmp_path, agent) as runner:
            await first_audio(runner)
            runner.recognizers.interim_after_bytes = 1
            await runner.speak("no wait stop", chunks=8, end=False)
            assert agent.closed == 1  # cancelled while the user was still speaking
            await runner.audio(b"\x00\x00" * 1600)
            await runner.wait_for("user.transcript")

    run(scenario())


def test_replay_finished_while_the_stream_is_open_ends_the_turn(tmp_path):
    """A short reply, then a slow tool call: the player drains, the turn must end (and with
    can_interrupt off, the user must be heard again)."""
    agent = StreamingAgent(["Let me check."], hold_open=True)

    async def scenario():
        async with SessionRunner(tmp_path, agent, can_interrupt=False) as runner:
            welcome, _ = await first_audio(runner)
            await runner.until(lambda: runner.audio_seconds(welcome) >= 0.6)  # all of it sent
            await runner.send(
                {"type": "trigger.response.audio.replay_finished", "reason": "completed"}
            )
            await runner.wait_for("turn.end", lambda m: m["turn_id"] == welcome, timeout=3)
            await runner.speak("hello there")
            await runner.wait_for("turn.start", lambda m: m["role"] == "user", timeout=3)
            transcript = await runner.wait_for("user.transcript")
            mark = runner.sent.index(transcript)
            await runner.wait_for("turn.start", lambda m: m["role"] == "assistant", after=mark)
            assert agent.closed == 1  # the new message replaced the open stream
            agent.release()

    run(scenario())


def test_agent_audio_is_the_echo_guards_reference_at_its_due_stream_time(tmp_path):
    """Each chunk sent goes to the guard, placed where the microphone's stream will be when it
    is due to play (back to back, as the pacing plans them); a barge-in drops what will not
    play."""
    agent = StreamingAgent(ANSWER, interval_s=0.1)
    references = []  # (mic stream time when sent, seconds of audio, due stream time)

    async def scenario():
        async with SessionRunner(tmp_path, agent, echo=EchoSettings()) as runner:
            session = runner.session
            add = session.echo.add_reference

            def spy(pcm, due_stream_s):
                references.append((session.clock.seconds, len(pcm) / 2 / RATE, due_stream_s))
                add(pcm, due_stream_s)

            session.echo.add_reference = spy
            await runner.send({"type": "client.ready"})
            while len(references) < 3:
                await runner.audio(SILENCE)
                await asyncio.sleep(CHUNK_S)
            (heard, length, due), (_, _, next_due) = references[:2]
            assert due >= heard - 0.01  # due now or later on the microphone's timeline
            assert abs(next_due - (due + length)) < 1e-6  # planned back to back, no jitter
            await runner.speak("stop please", end=False)
            await runner.wait_for("turn.start", lambda m: m["role"] == "user")
            cut = round(session.clock.seconds * RATE)
            assert all(start + len(chunk) <= cut for start, chunk in session.echo._chunks)

    run(scenario())


def test_nothing_is_held_when_false_interruptions_are_off(tmp_path):
    agent = StreamingAgent(ANSWER, interval_s=0.1)
    settings = InterruptionSettings(false_interruption_s=0)

    async def scenario():
        async with SessionRunner(tmp_path, agent, interruptions=settings) as runner:
            await first_audio(runner)
            await runner.speak("", chunks=2)
            await runner.wait_for("turn.end", lambda m: m["role"] == "user")
            await asyncio.sleep(0.8)
            assert agent.closed == 1
            assert len(assistant_starts(runner)) == 1  # cancelled, not resumed

    run(scenario())


def test_a_hangup_closes_the_session_once_the_last_words_have_played(tmp_path):
    agent = StreamingAgent(["Goodbye now."])
    agent.hangup = True

    async def scenario():
        async with SessionRunner(tmp_path, agent) as runner:
            welcome, _ = await first_audio(runner)
            await runner.wait_for("response.end", lambda m: m["turn_id"] == welcome)
            assert runner.closed_with is None  # its audio is still playing
            await runner.send({"type": "trigger.response.audio.replay_finished"})
            code, reason = await runner.wait_closed()
            assert code == 4003 and "ended" in reason

    run(scenario())


def test_the_client_sets_the_window_for_its_session(tmp_path):
    """`client.settings` (the SDK's vadResumeDelay): 0 makes the cough final, as the setting
    would; a value out of range is refused with an error and changes nothing."""
    agent = StreamingAgent(ANSWER, interval_s=0.1)

    async def scenario():
        async with SessionRunner(tmp_path, agent) as runner:
            await runner.send({"type": "client.settings", "false_interruption_ms": 99_999})
            error = await runner.wait_for("error")
            assert "false_interruption_ms" in error.message["message"]
            await runner.send({"type": "client.settings", "false_interruption_ms": 0})
            await first_audio(runner)
            await runner.speak("", chunks=2)
            await runner.wait_for("turn.end", lambda m: m["role"] == "user")
            await asyncio.sleep(0.8)
            assert agent.closed == 1
            assert len(assistant_starts(runner)) == 1  # cancelled, not resumed
            assert runner.session.interruptions.false_interruption_s == 0
            assert runner.session.services.interruptions.false_interruption_s == 0.6

    run(scenario())


def test_drain_lets_the_answer_being_spoken_finish_and_starts_nothing_new(tmp_path):
    agent = StreamingAgent(ANSWER[:2], interval_s=0.1)

    async def scenario():
        async with SessionRunner(tmp_path, agent) as runner:
            welcome, _ = await first_audio(runner)
            loop = asyncio.get_running_loop()
            drained = asyncio.ensure_future(runner.session.drain(loop.time() + 10))
            await runner.send({"type": "client.response.text", "content": "are you there?"})
            await runner.speak("hello")
            await runner.wait_for("response.end", lambda m: m["turn_id"] == welcome)
            assert not drained.done()  # the answer is still playing
            await runner.send({"type": "trigger.response.audio.replay_finished"})
            await asyncio.wait_for(drained, 5)
            assert runner.of_turn(welcome)[-1]["type"] == "turn.end"  # it ended normally
            assert assistant_starts(runner) == [welcome]  # nothing new started
            assert "user.transcript" not in runner.types() and len(agent.events) == 1
            history = await runner.store.history(runner.session_id)
            assert [(t.text, t.interrupted) for t in history] == [(" ".join(ANSWER[:2]), False)]

    run(scenario())


def test_drain_cut_by_its_deadline_keeps_only_what_was_heard(tmp_path):
    agent = StreamingAgent(ANSWER, interval_s=0.1)

    async def scenario():
        async with SessionRunner(tmp_path, agent) as runner:
            welcome, started = await first_audio(runner)
            loop = asyncio.get_running_loop()
            await asyncio.wait_for(runner.session.drain(loop.time() + 1.0), 5)
            played = time.monotonic() - started
            history = await runner.store.history(runner.session_id)
            assert len(history) == 1 and history[0].interrupted
            words = history[0].text.split()
            assert " ".join(ANSWER).startswith(history[0].text)
            # 0.2 s a word (FakeTTS): what had played by the deadline, give or take one word.
            assert abs(len(words) - played / 0.2) <= 1.5, (played, words)
            assert runner.of_turn(welcome)[-1]["type"] == "response.audio"  # no end: cut

    run(scenario())


def test_messages_waiting_for_the_agent_are_bounded(tmp_path):
    agent = StreamingAgent(["Working on it."], hold_open=True)  # every answer stays open

    async def scenario():
        async with SessionRunner(tmp_path, agent) as runner:
            await first_audio(runner)  # the welcome answers, its stream open: later turns wait
            limit = runner.session.services.queued_messages
            for n in range(limit + 3):
                await runner.send({"type": "client.response.data", "data": {"n": n}})
            await runner.until(lambda: sum(m.type == "error" for m in runner.sent) == 3, timeout=5)
            errors = [m.message for m in runner.sent if m.type == "error"]
            assert {e["code"] for e in errors} == {"too_many_messages"}
            assert len(runner.session.waiting_turns) == limit
            agent.release()

    run(scenario())
