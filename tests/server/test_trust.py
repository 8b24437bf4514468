"""Who may authorize, how often, and who may resume or delete a conversation.

DNS rebinding (Host and Origin both a foreign name) is refused; `websocket_url` comes from
PUBLIC_URL or an allowed Host; the rate limit counts the real client behind a trusted proxy
only; resuming and deleting need the conversation's resume token or the app backend's secret.
"""

from __future__ import annotations

import pytest

from tests.server.light import light_client
from tests.support.aio import run

BODY = {"pipeline_id": "p"}


def post(client, body=BODY, **headers):
    return client.post("/api/authorize", json=body, headers=headers)


def test_dns_rebinding_is_refused(tmp_path):
    client = light_client(tmp_path, allowed_hosts=())
    response = post(client, host="evil.example", origin="http://evil.example")
    assert response.status_code == 403
    assert response.json()["code"] == "host_not_allowed"
    assert "ALLOWED_HOSTS" in response.json()["error"]
    assert post(client, host="evil.example").status_code == 403  # no Origin: Host still counts


@pytest.mark.parametrize("host", ["localhost:8000", "127.0.0.1:9", "[::1]:8000", "LOCALHOST"])
def test_loopback_names_are_allowed_and_build_the_websocket_url(tmp_path, host):
    client = light_client(tmp_path, allowed_hosts=())
    response = post(client, host=host, origin=f"http://{host}")
    assert response.status_code == 200
    assert response.json()["websocket_url"] == f"ws://{host}/v1/pipelines/websocket"


def test_public_url_builds_the_websocket_url_and_its_host_is_allowed(tmp_path):
    client = light_client(tmp_path, allowed_hosts=(), public_url="https://voice.example.com")
    response = post(client, host="voice.example.com", origin="https://voice.example.com")
    assert response.status_code == 200
    assert response.json()["websocket_url"] == "wss://voice.example.com/v1/pipelines/websocket"
    assert post(client, host="other.example").status_code == 403


def test_a_foreign_origin_on_an_allowed_host_is_refused(tmp_path):
    client = light_client(tmp_path)
    response = post(client, origin="https://evil.example")
    assert response.status_code == 403
    assert response.json()["code"] == "origin_not_allowed"


def test_the_rate_limit_answers_429_with_retry_after(tmp_path):
    client = light_client(tmp_path, authorize_rate_limit=3)
    assert [post(client).status_code for _ in range(3)] == [200, 200, 200]
    refused = post(client)
    assert refused.status_code == 429
    assert refused.json()["code"] == "rate_limited"
    assert 1 <= int(refused.headers["retry-after"]) <= 60


def test_forwarded_for_counts_only_behind_a_trusted_proxy(tmp_path):
    # TestClient's peer is "testclient"; it is the proxy here.
    behind = light_client(tmp_path, authorize_rate_limit=1, trusted_proxies=("testclient",))
    assert post(behind, **{"x-forwarded-for": "203.0.113.1"}).status_code == 200
    assert post(behind, **{"x-forwarded-for": "203.0.113.2"}).status_code == 200
    assert post(behind, **{"x-forwarded-for": "203.0.113.1"}).status_code == 429
    # Not trusted: a spoofed header per request does not escape the limit.
    direct = light_client(tmp_path / "2", authorize_rate_limit=1)
    assert post(direct, **{"x-forwarded-for": "198.51.100.1"}).status_code == 200
    assert post(direct, **{"x-forwarded-for": "198.51.100.2"}).status_code == 429


def test_a_full_node_answers_503(tmp_path):
    client = light_client(tmp_path, max_sessions=2)
    assert [post(client).status_code for _ in range(2)] == [200, 200]
    full = post(client)
    assert full.status_code == 503
    assert full.json()["code"] == "server_full"


def test_draining_refuses_sessions_and_fails_health(tmp_path):
    client = light_client(tmp_path)
    client.app.state.draining = True
    response = post(client)
    assert response.status_code == 503
    assert response.json()["code"] == "draining"
    assert client.get("/health").status_code == 503


# -- ownership ------------------------------------------------------------------------------------


def test_resuming_needs_the_latest_resume_token(tmp_path):
    client = light_client(tmp_path)
    first = post(client).json()
    session_id, token = first["session_id"], first["resume_token"]
    assert token.startswith("lcrt_")

    stranger = post(client, {"pipeline_id": "p", "session_id": session_id})
    assert stranger.status_code == 403
    assert stranger.json()["code"] == "resume_token_required"
    assert session_id not in stranger.text
    forged = post(client, {"pipeline_id": "p", "session_id": session_id, "resume_token": "x"})
    assert forged.status_code == 403
    assert forged.json()["code"] == "resume_token_invalid"

    owner = post(client, {"pipeline_id": "p", "session_id": session_id, "resume_token": token})
    assert owner.status_code == 200
    assert owner.json()["session_id"] == session_id
    rotated = owner.json()["resume_token"]
    assert rotated != token
    stale = post(client, {"pipeline_id": "p", "conversation_id": session_id, "resume_token": token})
    assert stale.status_code == 403
    again = post(
        client, {"pipeline_id": "p", "conversation_id": session_id, "resume_token": rotated}
    )
    assert again.status_code == 200


def test_an_app_backend_vouches_with_the_authorize_secret(tmp_path):
    client = light_client(tmp_path, authorize_secret="backend-only")
    session_id = post(client).json()["session_id"]
    body = {"pipeline_id": "p", "session_id": session_id}
    assert post(client, body, **{"x-authorize-secret": "wrong"}).status_code == 403
    vouched = post(client, body, **{"x-authorize-secret": "backend-only"})
    assert vouched.status_code == 200
    assert vouched.json()["session_id"] == session_id


def test_deleting_a_conversation_needs_the_same_proof(tmp_path):
    client = light_client(tmp_path, authorize_secret="backend-only")
    first = post(client).json()
    session_id, token = first["session_id"], first["resume_token"]
    store = client.app.state.pipeline.stores.history
    run(store.append(session_id, "user", "my secret plans"))
    path = f"/api/conversations/{session_id}"

    refused = client.delete(path)
    assert refused.status_code == 403
    assert client.delete(path, headers={"x-resume-token": "lcrt_nope"}).status_code == 403
    assert run(store.history(session_id))

    assert client.delete(path, headers={"x-resume-token": token}).status_code == 204
    assert not run(store.exists(session_id))
    assert run(store.history(session_id)) == []
    gone = post(client, {"pipeline_id": "p", "session_id": session_id, "resume_token": token})
    assert gone.status_code == 403
    vouched = client.delete(path, headers={"x-authorize-secret": "backend-only"})
    assert vouched.status_code == 404


def test_cloud_mode_has_no_conversations_to_delete(tmp_path):
    from starlette.testclient import TestClient

    from server.app import create_app
    from server.config import Settings

    settings = Settings(layercode_api_key="k", allowed_hosts=("testserver",), data_dir=tmp_path)
    client = TestClient(create_app(settings), raise_server_exceptions=False)
    response = client.delete("/api/conversations/sess_x", headers={"x-resume-token": "t"})
    assert response.status_code in (404, 405)
    assert "error" in response.json()
