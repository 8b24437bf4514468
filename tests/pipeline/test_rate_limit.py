"""The authorize rate limit in Redis: one budget per caller shared by every node, counted
atomically, and counted by each node alone while Redis cannot be reached (never an error)."""

from __future__ import annotations

import asyncio

import redis.asyncio as redis

from server.limits_redis import RedisRateLimiter
from tests.support.aio import run
from tests.support.engines import RedisServer, engine_folder


def test_nodes_share_one_budget_per_caller_and_count_alone_while_redis_is_gone():
    with engine_folder("lc-rate-") as folder:
        server = RedisServer(folder).start()

        async def scenario():
            clients = [redis.Redis.from_url(server.url, socket_timeout=1) for _ in range(2)]
            node_a, node_b = (RedisRateLimiter(c, per_minute=10) for c in clients)
            # ten hits at once from one caller, spread over two nodes: all allowed
            hits = [(node_a, node_b)[n % 2].hit("203.0.113.1") for n in range(10)]
            assert await asyncio.gather(*hits) == [None] * 10
            refused_a, refused_b = await node_a.hit("203.0.113.1"), await node_b.hit("203.0.113.1")
            assert refused_a is not None and 1 <= refused_a <= 60
            assert refused_b is not None
            assert await node_b.hit("203.0.113.2") is None  # another caller, its own budget

            server.stop()
            assert await node_a.hit("203.0.113.1") is None  # counted by node A alone now
            for client in clients:
                await client.aclose()

        try:
            run(scenario())
        finally:
            server.stop()
