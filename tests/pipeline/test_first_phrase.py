"""An answer's first sentence made as two inferences, its opening phrase first
(`Pacing.first_phrase_words`, TTS_FIRST_PHRASE_WORDS): the first audio goes out once the phrase
alone is made, the rest follows in order with no audio lost or repeated, and the turn stays
one unit — cancelled (a barge-in) while either part is being made, nothing more is made or sent.

The voice here is scripted: each `synthesize` call waits until the test lets it finish, so
the order of events is the test's, not the clock's.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import itertools

import pytest

from layercode_client import protocol as p
from server.pipeline.agent_turn import PHRASE_S_PER_CHAR, AgentState, AgentTurn, Pacing
from server.pipeline.webhook import AgentEnd, AgentSpeech, WebhookEvent
from tests.support.aio import run

RATE = 16000
FIRST = "You said: What time is it?"
SECOND = "It's three o'clock."


class ScriptedVoice:
    """Makes each text's audio (one distinct sample value per call, 0.1 s a word) only when
    the test calls `finish()` (the oldest call waiting) or `finish(text)`; records what it was
    asked, when each was due, and what it finished."""

    sample_rate = RATE
    idle = True  # a test sets it False for a busy voice

    def __init__(self):
        self.asked: list[str] = []
        self.dues: list[float | None] = []
        self.finished: list[str] = []
        self.closed: list[str] = []  # asked, then abandoned by the consumer (cancelled)
        self._pending: list[tuple[str, asyncio.Event]] = []  # calls waiting, oldest first
        self.waiting = asyncio.Event()  # a call is waiting for `finish()`

    def warm(self) -> None:
        pass

    def close(self) -> None:
        pass

    def finish(self, text: str | None = None) -> None:
        for index, (asked, go) in enumerate(self._pending):
            if text is None or asked == text:
                del self._pending[index]
                go.set()
                break
        if not self._pending:
            self.waiting.clear()

    async def synthesize(self, text, due=None, on_timing=None):
        self.asked.append(text)
        self.dues.append(due)
        value = len(self.asked)
        go = asyncio.Event()
        try:
            self._pending.append((text, go))
            self.waiting.set()
            await go.wait()
            self.finished.append(text)
            pcm = value.to_bytes(2, "little") * int(len(text.split()) * 0.1 * RATE)
            for offset in range(0, len(pcm), 3200):
                yield pcm[offset : offset + 3200]
        except (asyncio.CancelledError, GeneratorExit):
            self._pending = [(t, g) for t, g in self._pending if g is not go]
            if not self._pending:
                self.waiting.clear()
            self.closed.append(text)
            raise


class Agent:
    def __init__(self, sentences):
        self.sentences = sentences

    async def respond(self, event):
        for sentence in self.sentences:
            yield AgentSpeech(sentence)
        yield AgentEnd()


class Outbox:
    def __init__(self):
        self.messages: list[p.Message] = []
        self.dropped: list[str] = []

    def put(self, message) -> None:
        if message.turn_id not in self.dropped:
            self.messages.append(message)

    def drop_turn(self, turn_id) -> None:
        self.dropped.append(turn_id)

    def audio(self) -> bytes:
        return b"".join(
            base64.b64decode(m.content) for m in self.messages if isinstance(m, p.ResponseAudio)
        )


def new_turn(voice, outbox, phrase_words=2, speculative=False, sentences=(FIRST, SECOND),
             rest_beside=False):  # fmt: skip
    """`rest_beside`: TTS_REST_BESIDE_PHRASE (the tests before it ask for the rest after the
    phrase, as before; those after it, at once)."""
    event = WebhookEvent(type="message", session_id="s", conversation_id="c",
                         connection_id="k", text="what time is it")  # fmt: skip
    pacing = Pacing(lead_s=60.0, first_phrase_words=phrase_words, rest_beside_phrase=rest_beside)
    return AgentTurn(event, agent=Agent(list(sentences)), tts=voice, outbox=outbox,
                     pacing=pacing, speculative=speculative)  # fmt: skip


def in_a_loop(test):
    """Run the async test body in an event loop of its own, in a thread of its own
    (tests.support.aio: once a browser test has run, Playwright owns the main thread's loop)."""

    @functools.wraps(test)
    def in_its_loop(*args, **kwargs):
        run(test(*args, **kwargs))

    return in_its_loop


async def played_out(turn, outbox, task) -> None:
    """All made and sent: the listener's player reports it played it all; the turn ends."""
    await until(lambda: not turn.synthesising and outbox.audio() == bytes(turn.audio))
    turn.playback_finished(None)
    await task


async def until(condition) -> None:
    """Let the turn's tasks run until `condition()` holds (no clock: they never sleep here)."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never held")


@in_a_loop
async def test_the_first_audio_goes_out_once_the_opening_phrase_alone_is_made():
    voice, outbox = ScriptedVoice(), Outbox()
    turn = new_turn(voice, outbox)
    task = asyncio.create_task(turn.run())
    await until(voice.waiting.is_set)
    assert voice.asked == ["You said:"]  # not the whole sentence
    voice.finish()
    await until(lambda: outbox.audio())
    assert voice.asked == ["You said:", "What time is it?"]  # the rest is made meanwhile
    assert set(outbox.audio()) == {1, 0}  # the phrase's samples only (value 1)
    voice.finish()
    await until(lambda: len(voice.asked) == 3)
    voice.finish()
    await played_out(turn, outbox, task)
    assert turn.state is AgentState.DONE
    assert voice.finished == ["You said:", "What time is it?", SECOND]


@in_a_loop
async def test_the_parts_play_in_order_as_one_continuous_answer():
    voice, outbox = ScriptedVoice(), Outbox()
    turn = new_turn(voice, outbox)
    task = asyncio.create_task(turn.run())
    for _ in range(3):
        await until(voice.waiting.is_set)
        voice.finish()
    await played_out(turn, outbox, task)
    audio = outbox.audio()
    assert audio == bytes(turn.audio)  # all of it sent, once
    # each part's samples follow the part before, none interleaved: phrase, rest, second
    values = [int.from_bytes(audio[i : i + 2], "little") for i in range(0, len(audio), 2)]
    runs = [v for i, v in enumerate(values) if i == 0 or v != values[i - 1]]
    assert runs == [1, 2, 3]
    spans = [(s.text, s.start, s.end) for s in turn.spans]
    assert [text for text, _, _ in spans] == ["You said:", "What time is it?", SECOND]
    assert all(a[2] == b[1] for a, b in itertools.pairwise(spans))  # contiguous, no gap
    assert turn.heard_text() == f"{FIRST} {SECOND}"  # the history keeps the sentence whole
    texts = [m.content for m in outbox.messages if isinstance(m, p.ResponseText)]
    assert texts == [FIRST, SECOND]  # the client's text is the agent's, not the cut


@pytest.mark.parametrize("part", [0, 1])
@in_a_loop
async def test_a_barge_in_while_a_part_is_made_cancels_the_whole_turn(part):
    voice, outbox = ScriptedVoice(), Outbox()
    turn = new_turn(voice, outbox)
    task = asyncio.create_task(turn.run())
    for _ in range(part):
        await until(voice.waiting.is_set)
        voice.finish()
        await until(lambda: outbox.audio())
    await until(voice.waiting.is_set)
    being_made = voice.asked[-1]
    sent = outbox.audio()
    await turn.cancel()
    assert task.done() and turn.state is AgentState.CANCELLED
    assert voice.closed == [being_made]  # the part in progress was abandoned with the turn
    voice.finish()
    for _ in range(20):
        await asyncio.sleep(0)
    assert len(voice.asked) == part + 1  # nothing after it was asked for
    assert outbox.audio() == sent  # and nothing more went out


@in_a_loop
async def test_a_speculation_makes_the_whole_first_sentence_and_no_more():
    voice, outbox = ScriptedVoice(), Outbox()
    turn = new_turn(voice, outbox, speculative=True)
    task = asyncio.create_task(turn.run())
    for _ in range(2):
        await until(voice.waiting.is_set)
        voice.finish()
    await until(lambda: voice.finished == ["You said:", "What time is it?"])
    for _ in range(20):
        await asyncio.sleep(0)
    assert voice.asked == ["You said:", "What time is it?"]  # not the second sentence
    assert outbox.messages == []  # nothing goes out before release
    assert turn.release()
    await until(voice.waiting.is_set)
    voice.finish()
    await played_out(turn, outbox, task)


@pytest.mark.parametrize(
    ("phrase_words", "idle"),
    [(0, True), (2, False)],
    ids=["zero: as before", "a busy voice"],
)
@in_a_loop
async def test_the_first_sentence_is_made_whole_with_zero_or_while_the_voice_is_busy(
    phrase_words, idle
):
    """With 0 the first sentence is made whole, as before. Under load the rest, queued behind
    other answers' first audio, came after the phrase had played: while the voice is busy as
    the answer starts, the sentence is made whole too."""
    voice, outbox = ScriptedVoice(), Outbox()
    voice.idle = idle
    turn = new_turn(voice, outbox, phrase_words=phrase_words)
    task = asyncio.create_task(turn.run())
    await until(voice.waiting.is_set)
    assert voice.asked == [FIRST]
    voice.finish()
    await until(lambda: len(voice.asked) == 2)
    voice.finish()
    await played_out(turn, outbox, task)


# -- the rest made beside its phrase (TTS_REST_BESIDE_PHRASE) ------------------------------------


def played_runs(outbox) -> list[int]:
    """The calls' sample values in the order they were sent, each run of them once."""
    audio = outbox.audio()
    values = [int.from_bytes(audio[i : i + 2], "little") for i in range(0, len(audio), 2)]
    return [v for i, v in enumerate(values) if i == 0 or v != values[i - 1]]


@pytest.mark.parametrize("idle", [True, False], ids=["idle voice", "busy voice"])
@in_a_loop
async def test_the_rest_is_asked_for_with_its_phrase_due_when_the_phrase_has_played(idle):
    """Busy or idle, the sentence is split and both parts are in the voice's queue before
    either is made: the rest due the phrase's playing time after it, so an earliest-deadline
    queue makes it after the phrase but before other answers' later sentences."""
    voice, outbox = ScriptedVoice(), Outbox()
    voice.idle = idle
    turn = new_turn(voice, outbox, rest_beside=True)
    task = asyncio.create_task(turn.run())
    await until(lambda: len(voice.asked) == 2)
    assert voice.asked == ["You said:", "What time is it?"]  # phrase first, then the rest
    assert voice.finished == [] and outbox.audio() == b""
    phrase_due, rest_due = voice.dues
    assert rest_due - phrase_due == pytest.approx(len("You said:") * PHRASE_S_PER_CHAR)
    voice.finish("You said:")
    await until(lambda: outbox.audio())
    assert played_runs(outbox) == [1]  # the first audio: the phrase alone
    voice.finish("What time is it?")
    await until(lambda: len(voice.asked) == 3)
    assert voice.asked[2] == SECOND  # the next sentence only once the first is made
    voice.finish()
    await played_out(turn, outbox, task)
    assert played_runs(outbox) == [1, 2, 3]
    assert outbox.audio() == bytes(turn.audio)
    assert turn.heard_text() == f"{FIRST} {SECOND}"


@in_a_loop
async def test_a_rest_made_before_its_phrase_still_plays_after_it():
    voice, outbox = ScriptedVoice(), Outbox()
    turn = new_turn(voice, outbox, rest_beside=True)
    task = asyncio.create_task(turn.run())
    await until(lambda: len(voice.asked) == 2)
    voice.finish("What time is it?")
    for _ in range(20):
        await asyncio.sleep(0)
    assert outbox.audio() == b""  # nothing plays before the phrase
    voice.finish("You said:")
    await until(lambda: len(voice.asked) == 3)
    voice.finish()
    await played_out(turn, outbox, task)
    assert played_runs(outbox) == [1, 2, 3]
    spans = [(s.text, s.start, s.end) for s in turn.spans]
    assert [text for text, _, _ in spans] == ["You said:", "What time is it?", SECOND]
    assert all(a[2] == b[1] for a, b in itertools.pairwise(spans))  # contiguous, no gap


@pytest.mark.parametrize("made", [0, 1], ids=["neither made", "the phrase made"])
@in_a_loop
async def test_a_barge_in_with_both_parts_asked_for_cancels_both(made):
    voice, outbox = ScriptedVoice(), Outbox()
    turn = new_turn(voice, outbox, rest_beside=True)
    task = asyncio.create_task(turn.run())
    await until(lambda: len(voice.asked) == 2)
    if made:
        voice.finish("You said:")
        await until(lambda: outbox.audio())
    sent = outbox.audio()
    await turn.cancel()
    assert task.done() and turn.state is AgentState.CANCELLED
    assert voice.closed == ["You said:", "What time is it?"][made:]  # abandoned with the turn
    voice.finish()
    for _ in range(20):
        await asyncio.sleep(0)
    assert len(voice.asked) == 2  # nothing after them was asked for
    assert outbox.audio() == sent  # and nothing more went out


@in_a_loop
async def test_a_speculation_with_the_rest_beside_makes_the_first_sentence_and_no_more():
    voice, outbox = ScriptedVoice(), Outbox()
    turn = new_turn(voice, outbox, speculative=True, rest_beside=True)
    task = asyncio.create_task(turn.run())
    await until(lambda: len(voice.asked) == 2)
    voice.finish()
    voice.finish()
    await until(lambda: voice.finished == ["You said:", "What time is it?"])
    for _ in range(20):
        await asyncio.sleep(0)
    assert voice.asked == ["You said:", "What time is it?"]
    assert outbox.messages == []
    assert turn.release()
    await until(voice.waiting.is_set)
    voice.finish()
    await played_out(turn, outbox, task)
    assert played_runs(outbox) == [1, 2, 3]
