"""The cost of the shared stores: authorize and history append, p50/p95, on each backend.

Single node (in-memory keys + SQLite history) side by side with shared stores (Redis keys +
PostgreSQL history), on real servers started for the run (tests/support/engines.py):

- **authorize**: a real `POST /api/authorize` over HTTP to a real server whose only route is
  the authorize endpoint (the speech models are not loaded: they play no part in it). It
  counts the caller's rate limit (in Redis with the shared stores, as a node does), creates
  the session in the history store and issues a key in the key store.
- **key redeem**: what the WebSocket does first.
- **history append**: one turn, as a session stores it; `history read` is what each agent
  `message` fetches (the last 50 turns of a 20-turn conversation).

Each is run with `--concurrency` callers at once (default 10: the ~10 people one node carries).

    ./dev bench stores [--requests 400] [--concurrency 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time

import httpx
from common import median, p95, print_table, save, serve
from starlette.applications import Starlette
from starlette.routing import Route

from layercode_client.protocol import SessionConfig
from server.authorize import authorize
from server.config import Settings
from server.limits import RateLimiter
from server.limits_redis import RedisRateLimiter
from server.pipeline.authorizer import EmbeddedAuthorizer
from server.pipeline.connections import Connections
from server.pipeline.keys import SessionGrant
from server.pipeline.stores import open_stores
from tests.support.engines import engine_folder, postgres_server, redis_server

# The benchmark measures the stores, not the per-node limits it would otherwise hit.
NO_LIMITS = {"max_sessions": 1_000_000, "authorize_rate_limit": 1_000_000}


def authorize_app(settings: Settings) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        stores = await open_stores(settings)
        app.state.authorizer = EmbeddedAuthorizer(stores, Connections(), settings)
        if settings.redis_url:  # as a node does: the rate limit counted in Redis too
            app.state.rate_limiter = RedisRateLimiter(
                stores.keys.client, settings.authorize_rate_limit
            )
        try:
            yield
        finally:
            await stores.close()

    app = Starlette(
        routes=[Route("/api/authorize", authorize, methods=["POST"])], lifespan=lifespan
    )
    app.state.settings = settings
    app.state.draining = False
    app.state.rate_limiter = RateLimiter(settings.authorize_rate_limit)
    return app


async def timed_calls(call, requests: int, concurrency: int) -> list[float]:
    """Latencies in ms of `requests` calls, `concurrency` at a time."""
    latencies: list[float] = []
    queue = iter(range(requests))

    async def worker():
        for n in queue:
            started = time.perf_counter()
            await call(n)
            latencies.append((time.perf_counter() - started) * 1000)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


async def measure_http(url: str, requests: int, concurrency: int) -> list[float]:
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits) as http:

        async def call(_):
            response = await http.post("/api/authorize", json={"pipeline_id": "bench"})
            response.raise_for_status()

        await timed_calls(call, concurrency * 2, concurrency)  # warm connections
        return await timed_calls(call, requests, concurrency)


async def measure_stores(settings: Settings, requests: int, concurrency: int) -> dict:
    stores = await open_stores(settings)
    try:
        grant = SessionGrant(session_id="sess_bench", pipeline_id="p", config=SessionConfig())
        keys = [await stores.keys.issue(grant) for _ in range(requests)]
        sessions = [await stores.history.create("bench", {}) for _ in range(concurrency)]
        for session_id in sessions:
            for n in range(20):
                await stores.history.append(session_id, "user", f"earlier turn {n}")

        async def redeem(n):
            await stores.keys.redeem(keys[n])

        async def append(n):
            await stores.history.append(sessions[n % concurrency], "user", "what time is it")

        async def read(n):
            await stores.history.history(sessions[n % concurrency])

        return {
            "key redeem": await timed_calls(redeem, requests, concurrency),
            "history append": await timed_calls(append, requests, concurrency),
            "history read": await timed_calls(read, requests, concurrency),
        }
    finally:
        await stores.close()


def run_backend(settings: Settings, requests: int, concurrency: int) -> dict[str, list[float]]:
    with serve(authorize_app(settings)) as url:
        results = {"authorize (HTTP)": asyncio.run(measure_http(url, requests, concurrency))}
    results.update(asyncio.run(measure_stores(settings, requests, concurrency)))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args()
    figures: dict[str, dict] = {}
    with engine_folder("lc-bench-") as folder, redis_server() as redis, postgres_server() as pg:
        backends = {
            "memory + sqlite": Settings(data_dir=folder / "data", **NO_LIMITS),
            "redis + postgresql": Settings(
                data_dir=folder / "data",
                **NO_LIMITS,
                redis_url=redis.url,
                database_url=pg.create_database(),
                agent_webhook_secret="bench",
            ),
        }
        for name, settings in backends.items():
            for what, latencies in run_backend(settings, args.requests, args.concurrency).items():
                figures.setdefault(what, {})[name] = {
                    "p50_ms": round(median(latencies), 3),
                    "p95_ms": round(p95(latencies), 3),
                    "n": len(latencies),
                }
    names = list(backends)
    rows = [
        [what] + [f"{by[n]['p50_ms']:.2f} / {by[n]['p95_ms']:.2f}" for n in names]
        for what, by in figures.items()
    ]
    print_table(
        f"Store latency, ms p50 / p95 ({args.concurrency} callers at once, "
        f"{args.requests} calls each)",
        ["operation", *names],
        rows,
    )
    save("stores", {"requests": args.requests, "concurrency": args.concurrency, "figures": figures})


if __name__ == "__main__":
    main()
