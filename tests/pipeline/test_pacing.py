"""The audio pacer: real time plus a burst passes, a flood is dropped and then closed."""

from __future__ import annotations

import pytest

from server.pipeline import pacing
from server.pipeline.pacing import AudioPacer

RATE = 16000
CHUNK = RATE // 10  # 100 ms, as the browser client sends


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def stream(pacer, clock, seconds: float, speed: float) -> list[str]:
    """Send `seconds` of audio in 100 ms chunks at `speed`x real time."""
    verdicts = []
    for _ in range(round(seconds * 10)):
        clock.now += 0.1 / speed
        verdicts.append(pacer.admit(CHUNK))
    return verdicts


def test_real_time_audio_always_passes():
    clock = Clock()
    pacer = AudioPacer(RATE, clock=clock)
    assert set(stream(pacer, clock, 600, speed=1.0)) == {pacing.ACCEPT}


def test_a_slightly_fast_clock_passes_for_an_hour():
    """A sound card whose clock runs 0.1% fast (ten times the usual drift) is not a flood."""
    clock = Clock()
    pacer = AudioPacer(RATE, clock=clock)
    assert set(stream(pacer, clock, 3600, speed=1.001)) == {pacing.ACCEPT}


def test_the_pre_roll_goes_through_at_once():
    """The official SDK's buffered pre-roll (about a second) arrives in one go at start."""
    clock = Clock()
    pacer = AudioPacer(RATE, clock=clock)
    assert all(pacer.admit(CHUNK) == pacing.ACCEPT for _ in range(int(pacing.DEFAULT_BURST_S * 10)))
    assert stream(pacer, clock, 60, speed=1.0).count(pacing.ACCEPT) == 600


def test_catching_up_after_a_stall_passes():
    clock = Clock()
    pacer = AudioPacer(RATE, clock=clock)
    stream(pacer, clock, 30, speed=1.0)
    clock.now += 3.0  # the network stalled for 3 s; the tab sends what it buffered
    assert all(pacer.admit(CHUNK) == pacing.ACCEPT for _ in range(30))
    assert set(stream(pacer, clock, 30, speed=1.0)) == {pacing.ACCEPT}


def test_a_flood_is_dropped_with_one_warning_then_closed():
    clock = Clock()
    pacer = AudioPacer(RATE, burst_s=2.0, flood_s=5.0, clock=clock)
    verdicts = stream(pacer, clock, 60, speed=10.0)
    assert verdicts[:20] == [pacing.ACCEPT] * 20  # the burst allowance (plus what time refilled)
    first_drop = verdicts.index(pacing.DROP_AND_WARN)
    assert pacing.DROP_AND_WARN not in verdicts[first_drop + 1 :]
    assert pacing.FLOOD in verdicts
    flood_at = verdicts.index(pacing.FLOOD)
    dropped_s = (flood_at - first_drop) * 0.1 * 0.9  # each 100 ms chunk beyond ~10 ms of refill
    assert 5.0 <= dropped_s <= 6.5


def test_the_issue_flood_is_refused_in_well_under_a_second():
    """159 minutes of audio in 15 s: the session is told to close within the first second."""
    clock = Clock()
    pacer = AudioPacer(RATE, clock=clock)
    speed = 159 * 60 / 15
    sent = 0
    while True:
        clock.now += 0.1 / speed
        sent += CHUNK
        if pacer.admit(CHUNK) == pacing.FLOOD:
            break
    assert clock.now < 1.0
    assert pacer.dropped_samples <= (pacing.DEFAULT_FLOOD_S + 0.2) * RATE
    assert sent - pacer.dropped_samples <= (pacing.DEFAULT_BURST_S + 1) * RATE  # accepted


def test_occasional_bursts_over_a_long_session_are_never_a_flood():
    clock = Clock()
    pacer = AudioPacer(RATE, burst_s=2.0, flood_s=5.0, clock=clock)
    for _ in range(100):
        stream(pacer, clock, 20, speed=1.0)
        verdicts = [pacer.admit(CHUNK) for _ in range(40)]  # 4 s at once: 2 s too many
        assert pacing.FLOOD not in verdicts
        assert verdicts.count(pacing.DROP_AND_WARN) == 1
        clock.now += 2.0  # the client pauses, as a client catching up would


@pytest.mark.parametrize("bad", [{"sample_rate": 0}, {"burst_s": 0}, {"flood_s": -1}])
def test_settings_are_checked(bad):
    with pytest.raises(ValueError):
        AudioPacer(**{"sample_rate": RATE, **bad})


class Lag:
    """Stands in for `LoopLag`: how long the server's loop has been held up, in total."""

    def __init__(self):
        self.stalled_s = 0.0

    def __call__(self) -> float:
        return self.stalled_s


@pytest.mark.parametrize("lag_seen_first", [True, False])
def test_audio_that_waited_for_a_stalled_server_is_not_a_flood(lag_seen_first):
    """The server's loop is held up 8 s (longer than the burst) while a client streams at real
    time: its audio waits in the socket and is read all at once. None of it is dropped, whether
    the loop's lag is counted before the first chunk is read or after."""
    clock, lag = Clock(), Lag()
    pacer = AudioPacer(RATE, clock=clock, lag=lag)
    assert set(stream(pacer, clock, 10, speed=1.0)) == {pacing.ACCEPT}
    clock.now += 8.0
    if lag_seen_first:
        lag.stalled_s += 8.0
    verdicts = [pacer.admit(CHUNK)]
    lag.stalled_s = 8.0
    verdicts += [pacer.admit(CHUNK) for _ in range(79)]
    assert set(verdicts) == {pacing.ACCEPT}
    assert set(stream(pacer, clock, 60, speed=1.0)) == {pacing.ACCEPT}


def test_a_stall_credit_is_bounded_and_a_flood_is_still_refused():
    """A client cannot tell the server "my audio waited for you" apart from "I sent nothing
    then": after an 8 s stall, one that sends nothing for 20 s and then floods gets the burst
    plus the stall (never more than real time since it connected), and is still closed."""
    clock, lag = Clock(), Lag()
    pacer = AudioPacer(RATE, clock=clock, lag=lag)
    clock.now += 8.0
    lag.stalled_s = 8.0
    pacer.admit(CHUNK)  # the credit arrives with this chunk
    clock.now += 20.0
    verdicts = [pacer.admit(CHUNK) for _ in range(300)]  # 30 s at once
    accepted = verdicts.count(pacing.ACCEPT)
    assert accepted <= (5 + 8) / 0.1 + 1, accepted
    assert pacing.FLOOD in verdicts


def test_the_loop_lag_adds_up_how_late_the_loop_wakes():
    import asyncio
    import time

    from server.pipeline.pacing import LoopLag
    from tests.support.aio import run

    async def scenario():
        lag = LoopLag(interval_s=0.01, slack_s=0.1)
        task = asyncio.create_task(lag.run())
        await asyncio.sleep(0.05)
        before = lag()
        time.sleep(0.3)  # the loop is held up
        while lag() == before:
            await asyncio.sleep(0.01)
        task.cancel()
        return lag() - before

    assert run(scenario()) >= 0.3 - 0.01


def test_a_busy_loop_is_not_a_held_up_loop():
    """Ticks that wake a little late (the loop busy with other callbacks, a flood's frames among
    them) earn no credit: only a hold-up longer than the slack counts. A busy loop holds no
    audio up beyond a turn or so: each session reads every frame that has arrived in each turn
    (test_socket_reading.py, a real-time client on a loop busy 50 ms a turn is not refused). The
    slack is not what stops a flooder (the credit is bounded by its shortfall from real time,
    `test_the_credit_never_admits_more_than_real_time_plus_the_burst`); it keeps a merely busy
    server from crediting clients that are behind real time with a burst beyond the setting."""
    from server.pipeline.pacing import LoopLag

    lag = LoopLag(slack_s=0.25)
    for _ in range(1000):
        lag.woke(late=0.2)
    assert lag() == 0.0
    lag.woke(late=3.0)
    assert lag() == 3.0


def test_a_flooder_gains_nothing_from_the_servers_hold_ups():
    """A client sending 3x real time while the server is held up 1 s in every 2: it is
    admitted the burst plus real time, as without the hold-ups, and still closed."""
    clock, lag = Clock(), Lag()
    pacer = AudioPacer(RATE, clock=clock, lag=lag, flood_s=1000)
    accepted = 0
    for tick in range(600):  # 60 s in 100 ms steps, 3 chunks each
        clock.now += 0.1
        if tick % 20 == 10:
            lag.stalled_s += 1.0
        accepted += [pacer.admit(CHUNK) for _ in range(3)].count(pacing.ACCEPT)
    assert accepted * 0.1 <= 5 + 60 + 0.2, accepted


def test_audio_that_waited_while_the_session_was_busy_is_not_a_flood():
    """The session holds its reading 8 s (a final transcript from a loaded recogniser) while the
    loop runs on: a client streaming at real time has 8 s of audio waiting in the socket, read
    at once. None of it is dropped (before `holding`, the 3 s beyond the burst were)."""
    clock = Clock()
    pacer = AudioPacer(RATE, clock=clock, lag=Lag())
    assert set(stream(pacer, clock, 10, speed=1.0)) == {pacing.ACCEPT}
    with pacer.holding():
        assert pacer.admit(CHUNK) == pacing.ACCEPT  # the chunk that ended the turn
        clock.now += 8.0
    verdicts = [pacer.admit(CHUNK) for _ in range(80)]
    assert set(verdicts) == {pacing.ACCEPT}
    assert set(stream(pacer, clock, 60, speed=1.0)) == {pacing.ACCEPT}


def test_a_hold_during_a_loop_stall_is_credited_once():
    """The loop's lag during a hold is already counted: a client gets the 8 s back, not 16."""
    clock, lag = Clock(), Lag()
    pacer = AudioPacer(RATE, clock=clock, lag=lag, flood_s=1000)
    clock.now += 10.0  # the bucket is full
    with pacer.holding():
        pacer.admit(CHUNK)
        clock.now += 8.0
        lag.stalled_s += 8.0
    verdicts = [pacer.admit(CHUNK) for _ in range(200)]  # 20 s at once
    assert verdicts.count(pacing.ACCEPT) <= (5 + 8) / 0.1 + 1


def test_a_flooder_gains_nothing_from_the_sessions_hold_ups():
    """A client sending 3x real time whose session is held 1 s now and then: it is admitted the
    burst plus the real time that passed, as without the holds."""
    clock = Clock()
    pacer = AudioPacer(RATE, clock=clock, flood_s=1000)
    accepted = 0
    for tick in range(600):  # 60 s in 100 ms steps, 3 chunks each
        clock.now += 0.1
        with pacer.holding():
            accepted += [pacer.admit(CHUNK) for _ in range(3)].count(pacing.ACCEPT)
            if tick % 20 == 10:
                clock.now += 1.0
    assert accepted * 0.1 <= 5 + clock.now + 0.2, (accepted, clock.now)


def test_a_server_that_stays_behind_longer_than_the_burst_drops_nothing():
    """The soak on a loaded machine: the server's loop, starved, is held up 1 s in every 2 for
    24 s, so it falls 12 s behind a client streaming at real time, then reads the backlog at
    once. None of it is dropped (when the credit expired at real time, 7 s of it were)."""
    clock, lag = Clock(), Lag()
    pacer = AudioPacer(RATE, clock=clock, lag=lag)
    assert set(stream(pacer, clock, 10, speed=1.0)) == {pacing.ACCEPT}
    verdicts = []
    for _ in range(12):
        clock.now += 1.0  # held up: nothing read
        lag.stalled_s += 1.0
        verdicts += stream(pacer, clock, 1, speed=1.0)  # then 1 s of the backlog in 1 s
    verdicts += [pacer.admit(CHUNK) for _ in range(120)]  # the 12 s left, at once
    verdicts += stream(pacer, clock, 60, speed=1.0)
    assert set(verdicts) == {pacing.ACCEPT}


def test_the_credit_never_admits_more_than_real_time_plus_the_burst():
    """Stalls before the session opened credit nothing; later ones no more than the client is
    short of real time since it opened."""
    clock, lag = Clock(), Lag()
    lag.stalled_s = 20.0  # before the session opened
    pacer = AudioPacer(RATE, clock=clock, lag=lag, flood_s=1000)
    verdicts = [pacer.admit(CHUNK) for _ in range(300)]  # 30 s at once
    assert verdicts.count(pacing.ACCEPT) <= 5 / 0.1 + 1
    clock.now += 3.0
    lag.stalled_s += 3.0  # a stall while it is 27 s ahead of real time: nothing to catch up
    verdicts = [pacer.admit(CHUNK) for _ in range(300)]
    assert verdicts.count(pacing.ACCEPT) <= 3 / 0.1 + 1


def test_sessions_opened_at_once_from_one_address_share_one_burst():
    """A flooder opens 5 sessions at once and sends 10x real time on each: together they get
    one burst (plus a second of slack each, plus real time), not five."""
    from server.pipeline.pacing import AddressBursts

    clock = Clock()
    bursts = AddressBursts(5.0, clock=clock)
    pacers = []
    for _ in range(5):
        pacer = AudioPacer(RATE, clock=clock, flood_s=1000)
        pacer.share(bursts.open("198.51.100.7"))
        pacers.append(pacer)
    accepted = 0
    for _ in range(100):  # 10 s
        clock.now += 0.01
        accepted += sum(pacer.admit(CHUNK) == pacing.ACCEPT for pacer in pacers)
    # one burst refilling at real time, 1 s of slack each, real time each: 16 s (was 30 s)
    assert accepted * 0.1 <= (5 + clock.now) + 5 * 1.0 + 5 * clock.now + 0.5, accepted


def test_many_people_behind_one_address_talking_at_real_time_are_never_refused():
    """NAT: 30 sessions from one address, each streaming at real time with network jitter."""
    import random

    from server.pipeline.pacing import AddressBursts

    rng = random.Random(7)
    clock = Clock()
    bursts = AddressBursts(5.0, clock=clock)
    pacers = [AudioPacer(RATE, clock=clock) for _ in range(30)]
    for pacer in pacers:
        pacer.share(bursts.open("203.0.113.9"))
    due = [[] for _ in pacers]  # each chunk arrives 0-300 ms after it was captured
    for tick in range(1, 3001):  # 5 minutes in 100 ms steps
        for n in range(len(pacers)):
            due[n].append(tick * 0.1 + rng.uniform(0.0, 0.3))
    events = sorted((at, n) for n, times in enumerate(due) for at in times)
    verdicts = set()
    for at, n in events:
        clock.now = max(clock.now, at)
        verdicts.add(pacers[n].admit(CHUNK))
    assert verdicts == {pacing.ACCEPT}


def test_an_address_burst_outlives_its_sessions_until_refilled_and_is_bounded():
    from server.pipeline.pacing import AddressBursts

    clock = Clock()
    bursts = AddressBursts(5.0, max_addresses=2, clock=clock)
    shared = bursts.open("a")
    assert shared.take(5.0)
    bursts.release("a")
    assert bursts.open("a") is shared  # reconnecting: no fresh burst
    assert not shared.take(1.0)
    bursts.release("a")
    assert bursts.open("b") is not None and len(bursts) == 2
    assert bursts.open("c") is None  # full of addresses in use or still refilling
    clock.now += 5.0
    assert bursts.open("c") is not None and len(bursts) == 2  # "a" refilled: forgotten
    assert AddressBursts(0.0).open("a") is None  # 0 turns sharing off


def test_a_backlog_whose_lag_is_learnt_at_its_end_drops_nothing():
    """The 50-session soak: a busy server reads every session at half real time for 24 s and
    learns its lag only at the end (one late tick), then reads the 12 s backlog at once. What
    the bucket's top cut off meanwhile is given back (before, only the last refill's was: 29
    sessions got `audio_too_fast` with 9 s of credit and an empty bucket)."""
    clock, lag = Clock(), Lag()
    pacer = AudioPacer(RATE, clock=clock, lag=lag)
    assert set(stream(pacer, clock, 10, speed=1.0)) == {pacing.ACCEPT}
    verdicts = stream(pacer, clock, 12, speed=0.5)  # 12 s of audio read in 24 s
    lag.stalled_s += 12.0
    verdicts += [pacer.admit(CHUNK) for _ in range(120)]  # the 12 s left, at once
    verdicts += stream(pacer, clock, 60, speed=1.0)
    assert set(verdicts) == {pacing.ACCEPT}
