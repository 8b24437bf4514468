"""`POST /api/authorize` against a stand-in Layercode server really listening on a local port."""

from __future__ import annotations

import json
import logging
import time

import pytest
from starlette.testclient import TestClient

from server.app import create_app
from server.config import Settings
from server.logs import RedactSecrets
from tests.support.layercode_cloud import SESSION_RESPONSE
from tests.support.servers import free_port, spawn_server

API_KEY = "lc_live_TOPSECRET_9f8e7d6c5b4a"


@pytest.fixture
def cloud(standin):
    standin.mode = "ok"
    standin.received.clear()
    return standin


def make_client(**overrides) -> TestClient:
    # Starlette's TestClient sends `Host: testserver`: a name this server must be told about.
    overrides.setdefault("allowed_hosts", ("testserver",))
    settings = Settings(**overrides)
    return TestClient(create_app(settings), raise_server_exceptions=False)


@pytest.fixture
def client(cloud):
    settings = dict(
        layercode_api_key=API_KEY,
        layercode_authorize_url=f"{cloud.url}/v1/pipelines/authorize_session",
        layercode_timeout=1.0,
    )
    with make_client(**settings) as test_client:
        yield test_client


@pytest.fixture(autouse=True)
def no_secret_in_logs(caplog):
    """Every test here also proves no log line, at any level, carries the key."""
    caplog.set_level(logging.DEBUG)
    yield
    assert API_KEY not in caplog.text
    for record in caplog.records:
        assert API_KEY not in record.getMessage()


def assert_clean(response):
    assert API_KEY not in response.text
    assert all(API_KEY not in value for value in response.headers.values())


def post(client, body, **kwargs):
    return client.post("/api/authorize", json=body, **kwargs)


def test_success_forwards_documented_fields_with_bearer_key_and_returns_json_unchanged(
    client, cloud
):
    body = {
        "pipeline_id": "pl_123",
        "session_id": "sess_old",
        "metadata": {"userId": "123", "nested": {"a": [1, 2]}},
        "audio": {"input_sample_rates": [16000, 8000]},  # ours: not for the cloud
    }
    response = post(client, body)
    assert response.status_code == 200
    assert response.json() == SESSION_RESPONSE
    assert_clean(response)
    [received] = cloud.received
    assert received["authorization"] == f"Bearer {API_KEY}"
    assert received["content_type"] == "application/json"
    assert received["body"] == {
        "pipeline_id": "pl_123",
        "session_id": "sess_old",
        "metadata": {"userId": "123", "nested": {"a": [1, 2]}},
    }


def test_response_bytes_are_passed_through_exactly(client, cloud):
    cloud.response = {"client_session_key": "k", "extra": {"unicode": "héllo"}, "n": 1.5}
    try:
        response = post(client, {"pipeline_id": "p"})
    finally:
        cloud.response = dict(SESSION_RESPONSE)
    assert response.json() == {"client_session_key": "k", "extra": {"unicode": "héllo"}, "n": 1.5}


def test_agent_generation_fields_are_accepted_and_forwarded(client, cloud):
    response = post(client, {"agent_id": "ag_1", "conversation_id": "conv_1"})
    assert response.status_code == 200
    assert cloud.received[0]["body"] == {
        "agent_id": "ag_1",
        "conversation_id": "conv_1",
        "metadata": {},
    }


def test_agent_id_goes_to_the_agents_endpoint_when_no_url_is_configured(cloud):
    from layercode_client.protocol import AuthorizeRequest
    from server.authorize import CloudAuthorizer

    default = CloudAuthorizer(
        "https://api.layercode.com/v1/pipelines/authorize_session", API_KEY, 1, None
    )
    assert default.url_for(AuthorizeRequest(agent_id="a")).endswith(
        "/v1/agents/web/authorize_session"
    )
    assert default.url_for(AuthorizeRequest(pipeline_id="p")).endswith(
        "/v1/pipelines/authorize_session"
    )
    custom = CloudAuthorizer("http://127.0.0.1:9/custom", API_KEY, 1, None)
    assert custom.url_for(AuthorizeRequest(agent_id="a")) == "http://127.0.0.1:9/custom"


def test_layercode_4xx_becomes_502_with_its_reason_and_never_our_key(client, cloud):
    cloud.mode = "4xx"
    response = post(client, {"pipeline_id": "p"})
    assert response.status_code == 502
    error = response.json()["error"]
    assert "HTTP 401" in error and "invalid pipeline id" in error
    assert_clean(response)
    assert "Bearer" not in error or "[redacted]" in error


def test_layercode_5xx_becomes_502(client, cloud):
    cloud.mode = "5xx"
    response = post(client, {"pipeline_id": "p"})
    assert response.status_code == 502
    assert "HTTP 503" in response.json()["error"]
    assert "upstream exploded" in response.json()["error"]


def test_layercode_non_json_becomes_502(client, cloud):
    cloud.mode = "not-json"
    response = post(client, {"pipeline_id": "p"})
    assert response.status_code == 502
    assert "not a JSON object" in response.json()["error"]


def test_layercode_hang_becomes_504_within_the_timeout(client, cloud):
    cloud.mode = "hang"
    started = time.monotonic()
    response = post(client, {"pipeline_id": "p"})
    elapsed = time.monotonic() - started
    assert response.status_code == 504
    assert "did not answer within 1 seconds" in response.json()["error"]
    assert elapsed < 5


def test_layercode_unreachable_becomes_504():
    url = f"http://127.0.0.1:{free_port()}/v1/pipelines/authorize_session"
    with make_client(layercode_api_key=API_KEY, layercode_authorize_url=url) as client:
        response = post(client, {"pipeline_id": "p"})
    assert response.status_code == 504
    assert "could not be reached" in response.json()["error"]
    assert_clean(response)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b"", "empty"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"metadata": {}}', "'pipeline_id' (or 'agent_id') is required"),
        (b'{"pipeline_id": 42}', "'pipeline_id' must be a non-empty string"),
        (b'{"pipeline_id": ""}', "'pipeline_id' must be a non-empty string"),
        (b'{"pipeline_id": "p", "metadata": "x"}', "'metadata' must be a JSON object"),
        (b'{"pipeline_id": "p", "session_id": 7}', "'session_id' must be a non-empty string"),
        (b'{"pipeline_id": "p", "audio": {"input_sample_rates": ["x"]}}', "list of integers"),
    ],
)
def test_bad_requests_get_400_with_a_reason_and_never_reach_layercode(client, cloud, raw, reason):
    response = client.post(
        "/api/authorize", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert reason in response.json()["error"]
    assert cloud.received == []


def test_body_too_large_gets_413(client, cloud):
    body = {"pipeline_id": "p", "metadata": {"blob": "x" * 70_000}}
    response = post(client, body)
    assert response.status_code == 413
    assert "larger than 64 KiB" in response.json()["error"]
    assert cloud.received == []


def test_body_too_large_without_content_length_gets_413(client, cloud):
    def chunks():
        yield b'{"pipeline_id": "p", "metadata": {"blob": "'
        for _ in range(70):
            yield b"x" * 1024
        yield b'"}}'

    response = client.post(
        "/api/authorize", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413


def test_get_is_not_allowed(client):
    response = client.get("/api/authorize")
    assert response.status_code == 405
    assert "error" in response.json()


def test_foreign_origin_is_refused_by_default(client, cloud):
    response = post(client, {"pipeline_id": "p"}, headers={"origin": "https://evil.example"})
    assert response.status_code == 403
    assert "CORS_ALLOW_ORIGINS" in response.json()["error"]
    assert cloud.received == []


def test_same_origin_is_allowed(client):
    response = post(client, {"pipeline_id": "p"}, headers={"origin": "http://testserver"})
    assert response.status_code == 200


def test_allowlisted_origin_gets_cors_headers_and_preflight(cloud):
    settings = dict(
        layercode_api_key=API_KEY,
        layercode_authorize_url=f"{cloud.url}/v1/pipelines/authorize_session",
        cors_allow_origins=("https://app.example",),
    )
    with make_client(**settings) as client:
        preflight = client.options(
            "/api/authorize",
            headers={
                "origin": "https://app.example",
                "access-control-request-method": "POST",
                "access-control-request-headers": "content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://app.example"
        response = post(client, {"pipeline_id": "p"}, headers={"origin": "https://app.example"})
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "https://app.example"
        refused = post(client, {"pipeline_id": "p"}, headers={"origin": "https://other.example"})
        assert refused.status_code == 403
        assert "access-control-allow-origin" not in refused.headers


def test_redaction_filter_scrubs_a_secret_that_slips_into_a_log_record():
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed with %s", (API_KEY,), None)
    RedactSecrets([API_KEY]).filter(record)
    assert API_KEY not in record.getMessage()
    assert "[redacted]" in record.getMessage()
    try:
        raise RuntimeError(f"boom {API_KEY}")
    except RuntimeError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "oops", (), sys.exc_info())
    RedactSecrets([API_KEY]).filter(record)
    formatted = logging.Formatter().format(record)
    assert "boom" in formatted and API_KEY not in formatted


def test_server_process_logs_never_contain_the_key(cloud, tmp_path):
    """The real entry point, its real log configuration, a refused and a failed session."""
    import urllib.request

    port = free_port()
    cloud.mode = "4xx"
    log_file = tmp_path / "server.log"
    process = spawn_server(
        port,
        log_file,
        LAYERCODE_API_KEY=API_KEY,
        LAYERCODE_AUTHORIZE_URL=f"{cloud.url}/v1/pipelines/authorize_session",
        LOG_LEVEL="debug",
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/authorize",
            data=json.dumps({"pipeline_id": "p"}).encode(),
            headers={"content-type": "application/json"},
        )
        try:
            urllib.request.urlopen(request, timeout=5)
        except urllib.error.HTTPError as error:
            assert error.code == 502
            assert API_KEY not in error.read().decode()
    finally:
        process.terminate()
        process.wait(timeout=10)
    output = log_file.read_text()
    assert "Layercode refused the session" in output
    assert API_KEY not in output


def test_session_keys_in_logged_urls_are_redacted():
    """uvicorn logs each WebSocket's URL as it opens: its client_session_key never shows."""
    line = '127.0.0.1:1 - "WebSocket /v1/pipelines/websocket?client_session_key=lcsk_abc-DEF_1&x=1"'
    record = logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1, "%s", (line,), None)
    RedactSecrets([]).filter(record)
    assert "lcsk_abc" not in record.getMessage()
    assert "client_session_key=[redacted]&x=1" in record.getMessage()


# -- a misbehaving upstream -----------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["echo-2xx", "echo-escaped"])
def test_a_success_body_carrying_the_key_is_never_passed_on(client, cloud, mode):
    cloud.mode = mode
    response = post(client, {"pipeline_id": "p"})
    assert response.status_code == 502
    assert "could not be passed on safely" in response.json()["error"]
    assert_clean(response)
    assert API_KEY.lower() not in response.text.lower()


@pytest.mark.parametrize("mode", ["echo-upper", "echo-late", "echo-text"])
def test_the_key_is_redacted_from_a_refusal_in_any_case_and_position(client, cloud, mode):
    cloud.mode = mode
    response = post(client, {"pipeline_id": "p"})
    assert response.status_code == 502
    assert "Layercode refused the session" in response.json()["error"]
    text = response.text.lower()
    for start in range(0, len(API_KEY) - 8):  # no 8-character piece of it, in any case
        assert API_KEY[start : start + 8].lower() not in text


def test_the_key_never_reaches_the_log_in_another_case(client, cloud, caplog):
    cloud.mode = "echo-upper"
    post(client, {"pipeline_id": "p"})
    assert API_KEY.upper() not in caplog.text
    assert "[redacted]" in caplog.text


def test_a_dripping_upstream_answers_504_within_the_total_deadline(client, cloud):
    """One byte every 0.2 s never trips a read timeout; the whole exchange is bounded."""
    cloud.mode = "drip"
    started = time.monotonic()
    response = post(client, {"pipeline_id": "p"})
    elapsed = time.monotonic() - started
    assert response.status_code == 504
    assert "did not answer within 1 seconds" in response.json()["error"]
    assert elapsed < 3  # LAYERCODE_TIMEOUT is 1 s; the answer took ~20 s to drip


def test_a_huge_upstream_answer_is_cut_off_with_502(client, cloud):
    cloud.mode = "huge"
    response = post(client, {"pipeline_id": "p"})
    assert response.status_code == 502
    assert "larger than 256 KiB" in response.json()["error"]
    assert len(response.content) < 1000


def test_a_redirect_is_not_followed_and_is_a_502(client, cloud):
    cloud.mode = "redirect"
    response = post(client, {"pipeline_id": "p"})
    assert response.status_code == 502
    assert "redirect (HTTP 302)" in response.json()["error"]
    assert len(cloud.received) == 1
