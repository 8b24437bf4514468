"""No input makes a route answer 500: hostile bodies, paths, disconnects and signed webhooks.

Each case here answered 500 (with a multi-kilobyte traceback in the log) before: bodies nested
~800 deep, lone surrogates, NaN/Infinity, `%00` or over-long static paths, a client leaving
mid-body, a signed webhook nested deep.
"""

from __future__ import annotations

import json
import logging

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from server import logs
from server.agent.app import agent_routes
from server.pipeline.signature import HEADER, sign
from tests.server.light import light_app, light_client
from tests.support.aio import run

DEEP = "[" * 5000 + "]" * 5000


@pytest.fixture
def client(tmp_path):
    return light_client(tmp_path)


def post_raw(client, raw: str | bytes):
    return client.post("/api/authorize", content=raw, headers={"content-type": "application/json"})


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ('{"pipeline_id": "p", "metadata": {"a": ' + "[" * 800 + "]" * 800 + "}}", "nested"),
        ('{"pipeline_id": "p", "metadata": {"a": ' + DEEP + "}}", "nested"),
        ('{"pipeline_id": "p", "metadata": {"a": NaN}}', "NaN"),
        ('{"pipeline_id": "p", "metadata": {"a": -Infinity}}', "NaN and Infinity"),
        ('{"pipeline_id": "p\\ud800"}', "surrogate"),
        ('{"pipeline_id": "p", "metadata": {"\\udfff": 1}}', "surrogate"),
    ],
)
def test_hostile_bodies_get_400_with_a_reason(client, raw, reason):
    response = post_raw(client, raw)
    assert response.status_code == 400
    assert reason in response.json()["error"]


def test_metadata_over_the_limit_is_413(tmp_path):
    client = light_client(tmp_path, max_metadata_bytes=1000)
    response = client.post(
        "/api/authorize", json={"pipeline_id": "p", "metadata": {"a": "x" * 1000}}
    )
    assert response.status_code == 413
    assert "MAX_METADATA_BYTES" in response.json()["error"]
    small = client.post("/api/authorize", json={"pipeline_id": "p", "metadata": {"a": "x" * 900}})
    assert small.status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/runtime/%00",
        "/runtime/pyodide/%00.js",
        "/assets/x%00y",
        "/assets/" + "a" * 5000,
        "/runtime/" + "/".join(["b" * 255] * 20),
    ],
)
def test_impossible_file_names_are_404(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert "not found" in response.json()["error"]


def test_a_client_that_leaves_mid_body_gets_no_500(tmp_path):
    app = light_app(tmp_path)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/authorize",
        "raw_path": b"/api/authorize",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    incoming = [
        {"type": "http.request", "body": b'{"pipeline_id": ', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent = []

    async def receive():
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    run(app(scope, receive, send))  # off Playwright's loop, should a browser test have run
    assert sent[0]["type"] == "http.response.start"
    assert sent[0]["status"] == 400


@pytest.mark.parametrize(
    "body", [DEEP.encode(), b'{"type": "message", "x": ' + DEEP.encode() + b"}"]
)
def test_a_signed_webhook_nested_deep_is_a_400(body):
    secret = "webhook-secret"
    client = TestClient(Starlette(routes=agent_routes(secret)), raise_server_exceptions=False)
    response = client.post("/api/agent", content=body, headers={HEADER: sign(body, secret)})
    assert response.status_code == 400
    assert "nested too deeply" in response.json()["error"]


def test_errors_are_one_line_at_info_and_session_ids_are_hashed(capsys):
    logs.configure("info", ["s3cret"])
    log = logging.getLogger("test.one_line")
    try:
        raise RuntimeError("boom with s3cret in sess_0123456789abcdef01234567")
    except RuntimeError:
        log.exception("failed for session %s", "sess_0123456789abcdef01234567")
    log.info("said", extra={"ctx": {"session": "sess_0123456789abcdef01234567"}})
    logging.getLogger().handlers[:] = []
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "RuntimeError: boom" in err
    assert "s3cret" not in err
    assert "sess_0123456789abcdef01234567" not in err
    tag = logs.session_tag("sess_0123456789abcdef01234567")
    assert err.count(tag) >= 3
    assert len(err.strip().splitlines()) == 2


def test_debug_level_keeps_the_traceback(capsys):
    logs.configure("debug", [])
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("test.debug").exception("failed")
    logging.getLogger().handlers[:] = []
    assert "Traceback" in capsys.readouterr().err


def test_json_answers_only(client):
    """Even a refused body gets JSON a caller can parse, never text or HTML."""
    for raw in (b"\xff\xfe", b"{", DEEP.encode(), b'"\\ud800"'):
        response = post_raw(client, raw)
        assert response.status_code == 400
        json.loads(response.text)
