"""Client session keys: unguessable, single-use, short-lived, bound to their session — on
every backend (in memory, Redis), and single-use across nodes sharing Redis."""

from __future__ import annotations

import asyncio

import pytest

from layercode_client.protocol import CloseCode, SessionConfig
from server.pipeline.keys import KeyRefused, SessionGrant, SessionKeys
from server.pipeline.keys_redis import NAMESPACE
from tests.support.aio import run


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def grant(session_id="sess_1") -> SessionGrant:
    return SessionGrant(session_id=session_id, pipeline_id="p", config=SessionConfig())


async def refusal(keys, key) -> KeyRefused:
    with pytest.raises(KeyRefused) as refused:
        await keys.redeem(key)
    return refused.value


def test_a_grant_survives_json():
    original = SessionGrant(
        session_id="sess_9",
        pipeline_id="pl",
        config=SessionConfig(trigger="push_to_talk", can_interrupt=False, input_sample_rate=16000),
        metadata={"user": {"id": 7}},
        resumed=True,
        client_address="10.0.0.66",
    )
    assert SessionGrant.from_json(original.to_json()) == original


def test_a_key_redeems_once_for_its_own_session(open_keys):
    async def scenario():
        keys = await open_keys()
        first, second = await keys.issue(grant("sess_a")), await keys.issue(grant("sess_b"))
        assert first != second and len(first) > 40
        assert (await keys.redeem(second)).session_id == "sess_b"
        assert (await keys.redeem(first)) == grant("sess_a")
        refused = await refusal(keys, first)
        assert refused.close_code == CloseCode.SESSION_KEY_USED
        assert "already used" in refused.reason
        await keys.close()

    run(scenario())


@pytest.mark.parametrize("key", [None, "", "lcsk_guess", "x" * 60])
def test_unknown_or_missing_keys_are_refused(open_keys, key):
    async def scenario():
        keys = await open_keys()
        await keys.issue(grant())
        refused = await refusal(keys, key)
        assert refused.close_code == CloseCode.SESSION_KEY_INVALID
        await keys.close()

    run(scenario())


def test_a_key_issued_by_one_node_redeems_once_on_another(open_keys):
    async def scenario():
        node_a, node_b = await open_keys(), await open_keys()
        key = await node_a.issue(grant("sess_x"))
        assert (await node_b.redeem(key)).session_id == "sess_x"
        assert (await refusal(node_a, key)).close_code == CloseCode.SESSION_KEY_USED
        assert (await refusal(node_b, key)).close_code == CloseCode.SESSION_KEY_USED
        await asyncio.gather(node_a.close(), node_b.close())

    run(scenario())


def test_racing_redeems_on_two_nodes_let_exactly_one_win(open_keys):
    async def scenario():
        nodes = [await open_keys(), await open_keys()]
        for attempt in range(5):
            key = await nodes[0].issue(grant(f"sess_{attempt}"))
            results = await asyncio.gather(
                *(nodes[n % 2].redeem(key) for n in range(20)), return_exceptions=True
            )
            won = [r for r in results if isinstance(r, SessionGrant)]
            lost = [r for r in results if isinstance(r, KeyRefused)]
            assert len(won) == 1 and won[0].session_id == f"sess_{attempt}"
            assert len(lost) == 19
            assert {r.close_code for r in lost} == {CloseCode.SESSION_KEY_USED}
        await asyncio.gather(*(n.close() for n in nodes))

    run(scenario())


def test_outstanding_counts_the_issuing_nodes_unused_keys_until_any_node_redeems_them(open_keys):
    """Keys about to connect take a place under MAX_SESSIONS on the node that issued them."""

    async def scenario():
        node_a, node_b = await open_keys(), await open_keys()
        first, second = await node_a.issue(grant("sess_1")), await node_a.issue(grant("sess_2"))
        assert await node_a.outstanding() == 2
        await node_b.redeem(first)
        assert await node_a.outstanding() == 1
        await node_a.redeem(second)
        assert await node_a.outstanding() == 0
        await asyncio.gather(node_a.close(), node_b.close())

    run(scenario())


def test_outstanding_counted_by_many_authorizes_at_once_on_keys_used_meanwhile(open_keys):
    """Authorize calls `outstanding()` concurrently: each one reads Redis, and both find the
    same used keys to forget. The second must not fail on a key the first already forgot
    (it did: a KeyError, a 500 on /api/authorize, seen by bench/load.py with 8 talkers on
    two nodes)."""

    async def scenario():
        node_a, node_b = await open_keys(), await open_keys()
        keys = [await node_a.issue(grant(f"sess_{n}")) for n in range(3)]
        for key in keys:
            await node_b.redeem(key)
        counts = await asyncio.gather(*(node_a.outstanding() for _ in range(4)))
        assert counts == [0, 0, 0, 0]
        await asyncio.gather(node_a.close(), node_b.close())

    run(scenario())


def test_an_unused_key_expires_after_the_ttl_in_memory():
    async def scenario():
        clock = FakeClock()
        keys = SessionKeys(ttl_s=60, clock=clock)
        key = await keys.issue(grant())
        clock.now += 59
        other = await keys.issue(grant())
        clock.now += 2
        refused = await refusal(keys, key)
        assert refused.close_code == CloseCode.SESSION_KEY_INVALID
        assert "expired" in refused.reason
        assert (await keys.redeem(other)).session_id == "sess_1"
        clock.now += 100
        assert len(keys) == 0  # swept

    run(scenario())


async def _until_all_expired(keys) -> None:
    """Wait for Redis itself to expire the entries (their TTL), not for a guessed duration."""
    async with asyncio.timeout(10):
        while await keys.client.keys(NAMESPACE + "*"):
            await asyncio.sleep(0.01)


def test_redis_expires_keys_by_ttl_and_remembers_used_ones_until_then(redis_engine):
    from server.pipeline.keys_redis import RedisKeys

    async def scenario():
        keys = await RedisKeys.open(redis_engine.url, ttl_s=0.5)
        await keys.client.flushdb()
        unused, used = await keys.issue(grant()), await keys.issue(grant())
        entries = await keys.client.keys(NAMESPACE + "*")
        ttls = [await keys.client.pttl(e) for e in entries]
        assert len(entries) == 2 and all(0 < t <= 500 for t in ttls)
        assert all(used not in e and unused not in e for e in entries)  # stored hashed
        await keys.redeem(used)
        assert (await refusal(keys, used)).close_code == CloseCode.SESSION_KEY_USED
        ttls = [await keys.client.pttl(e) for e in entries]
        assert all(0 < t <= 500 for t in ttls)  # the used marker kept the key's TTL
        await _until_all_expired(keys)
        for key in (unused, used):
            refused = await refusal(keys, key)
            assert refused.close_code == CloseCode.SESSION_KEY_INVALID
            assert "expired" in refused.reason
        await keys.close()

    run(scenario())
