"""Store backends for the pipeline's store tests: every contract runs against each backend.

Redis and PostgreSQL are real servers (tests/support/engines.py; the `redis_engine` and
`postgres_engine` fixtures in tests/conftest.py), started once per test run and only when a
test asks for them; each test gets a database of its own.
"""

from __future__ import annotations

import pytest

from server.pipeline.keys import SessionKeys
from server.pipeline.keys_redis import RedisKeys
from server.pipeline.store import SessionStore
from server.pipeline.store_postgres import PostgresStore


@pytest.fixture(params=["memory", "redis"])
def open_keys(request):
    """An async factory of key stores of one backend; stores of one test share their data
    (two "nodes" on the same Redis)."""
    if request.param == "memory":
        shared = SessionKeys()

        async def open_memory(ttl_s: float = 60.0):
            shared.ttl_s = ttl_s
            return shared

        return open_memory
    url = request.getfixturevalue("redis_engine").url

    async def open_redis(ttl_s: float = 60.0):
        return await RedisKeys.open(url, ttl_s=ttl_s)

    return open_redis


@pytest.fixture(params=["sqlite", "postgresql"])
def open_history(request, tmp_path):
    """An async factory of history stores of one backend, all on the same (fresh) data;
    keyword arguments set retention (`max_turns`, `max_age_s`)."""
    if request.param == "sqlite":
        path = tmp_path / "sessions.sqlite3"

        async def open_sqlite(**retention):
            return SessionStore(path, **retention)

        return open_sqlite
    url = request.getfixturevalue("postgres_engine").create_database()

    async def open_postgres(pool_size: int = 10, **retention):
        return await PostgresStore.open(url, pool_size=pool_size, **retention)

    return open_postgres
