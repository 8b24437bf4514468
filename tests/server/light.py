"""An app with the embedded pipeline's authorization parts only: no speech models loaded.

For tests of `/api/authorize`, deletion and the WebSocket's refusals, which never reach a
session: the keys, the SQLite history and the connection registry are the real ones; the
lifespan (which loads the models) is not run.
"""

from __future__ import annotations

from types import SimpleNamespace

from starlette.testclient import TestClient

from server.app import create_app
from server.config import Settings
from server.pipeline.authorizer import EmbeddedAuthorizer
from server.pipeline.connections import Connections
from server.pipeline.keys import SessionKeys
from server.pipeline.store import SessionStore
from server.pipeline.stores import Stores


def light_app(tmp_path, **overrides):
    overrides.setdefault("allowed_hosts", ("testserver",))
    settings = Settings(data_dir=tmp_path, **overrides)
    app = create_app(settings)
    stores = Stores(SessionKeys(), SessionStore(tmp_path / "sessions.sqlite3"))
    connections = Connections()
    app.state.pipeline = SimpleNamespace(stores=stores, connections=connections)
    app.state.authorizer = EmbeddedAuthorizer(stores, connections, settings)
    app.state.pipeline_kind = "embedded"
    return app


def light_client(tmp_path, **overrides) -> TestClient:
    return TestClient(light_app(tmp_path, **overrides), raise_server_exceptions=False)
