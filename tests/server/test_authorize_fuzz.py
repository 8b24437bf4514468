"""Authorize fuzz: generated bodies, in both modes, never a 5xx and never the API key.

A seeded generator (so a failure reproduces) makes bodies of every class that once answered
500 or leaked — nesting far past any limit, lone surrogates in any string, NaN/Infinity,
wrong types for every field, over-size metadata, broken and non-UTF-8 JSON, resume attempts
with made-up ids and tokens — mixed with valid ones. Each body goes to the cloud proxy (a local
stand-in for Layercode, which succeeds) and to the embedded pipeline's authorizer.
"""

from __future__ import annotations

import collections
import json
import random

from server.app import create_app
from server.config import Settings
from tests.server.light import light_client

API_KEY = "lc_live_FUZZKEY_0a1b2c3d4e5f"
BODIES = 1200
SEED = 11
FIELDS = ("pipeline_id", "agent_id", "session_id", "conversation_id", "sdk_version")
ODD_STRINGS = ["", " ", "\x00", "é", "\ufeff", "🎤" * 50, "x" * 5000, API_KEY, "sess_" + "0" * 24]
ODD_HEADERS = [
    {},
    {"origin": "http://testserver"},
    {"origin": "http://["},
    {"origin": "null"},
    {"origin": "https://evil.example"},
    {"host": "evil.example", "origin": "http://evil.example"},
    {"host": "[::1"},
    {"x-forwarded-for": "not-an-ip, 1.2.3.4,,"},
    {"x-authorize-secret": "guess"},
]
ODD_VALUES = [None, True, 0, -1, 2**70, 1.5, [], {}, [1, "a"], {"a": None}]


def random_string(rng: random.Random) -> str:
    alphabet = 'abcXYZ019_-. ~"\\/\n\t\u00e9\u4e2d\U0001f600'
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))


def random_value(rng: random.Random, depth: int = 0):
    kind = rng.random()
    if depth > 3 or kind < 0.4:
        return rng.choice(
            [random_string(rng), rng.randint(-(10**6), 10**6), rng.random(), True, None]
        )
    if kind < 0.7:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {random_string(rng): random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def valid_body(rng: random.Random) -> dict:
    body = {rng.choice(["pipeline_id", "agent_id"]): random_string(rng) or "p"}
    if rng.random() < 0.7:
        body["metadata"] = {random_string(rng): random_value(rng) for _ in range(rng.randint(0, 5))}
    if rng.random() < 0.3:
        body["audio"] = {"input_sample_rates": rng.choice([[16000], [8000], [44100], []])}
    return body


def nested(depth: int, leaf: str = "1") -> str:
    opener, closer = ("[", "]") if depth % 2 else ('{"a":', "}")
    return opener * depth + leaf + closer * depth


def generate(rng: random.Random) -> tuple[str, bytes]:
    """One (class, raw body)."""
    kind = rng.choice(
        ["valid", "deep", "surrogate", "constant", "types", "huge", "broken", "resume"]
    )
    body = valid_body(rng)
    if kind == "valid":
        return kind, json.dumps(body).encode()
    if kind == "deep":
        depth = rng.choice([33, 100, 800, 1000, 5000, 20000])
        where = rng.choice(["metadata", "top", "pipeline_id", "audio"])
        inner = nested(depth)
        text = {
            "metadata": '{"pipeline_id": "p", "metadata": {"x": ' + inner + "}}",
            "top": inner,
            "pipeline_id": '{"pipeline_id": ' + inner + "}",
            "audio": '{"pipeline_id": "p", "audio": {"input_sample_rates": ' + inner + "}}",
        }[where]
        return kind, text.encode()
    if kind == "surrogate":
        surrogate = rng.choice(["\\ud800", "\\udfff", "\\udbff", "a\\ud83d"])
        field = rng.choice([*FIELDS, "metadata-key", "metadata-value", "resume_token"])
        if field == "metadata-key":
            text = '{"pipeline_id": "p", "metadata": {"' + surrogate + '": 1}}'
        elif field == "metadata-value":
            text = '{"pipeline_id": "p", "metadata": {"k": ["x' + surrogate + '"]}}'
        else:
            text = '{"pipeline_id": "p", "' + field + '": "id' + surrogate + '"}'
        return kind, text.encode()
    if kind == "constant":
        constant = rng.choice(["NaN", "Infinity", "-Infinity"])
        return kind, ('{"pipeline_id": "p", "metadata": {"n": ' + constant + "}}").encode()
    if kind == "types":
        field = rng.choice([*FIELDS, "metadata", "audio", "resume_token"])
        body[field] = rng.choice([*ODD_VALUES, *ODD_STRINGS])
        return kind, json.dumps(body).encode()
    if kind == "huge":
        body["metadata"] = {"blob": "x" * rng.choice([17_000, 60_000, 70_000])}
        return kind, json.dumps(body).encode()
    if kind == "broken":
        raw = json.dumps(body).encode()
        return kind, rng.choice(
            [raw[: rng.randint(0, len(raw))], b"\xff\xfe" + raw, raw + b"}", b"", b"null"]
        )
    # resume with a made-up (or real-looking) id and token
    body["session_id"] = rng.choice([*ODD_STRINGS, f"sess_{rng.getrandbits(96):024x}"])
    if rng.random() < 0.5:
        body["resume_token"] = rng.choice([*ODD_STRINGS, "lcrt_" + random_string(rng)])
    return kind, json.dumps(body).encode()


def fuzz(client, *, key_in_play: bool) -> collections.Counter:
    """`key_in_play`: the server holds API_KEY (cloud mode), so no answer may carry it."""
    rng = random.Random(SEED)
    seen: collections.Counter = collections.Counter()
    for _ in range(BODIES):
        kind, raw = generate(rng)
        headers = {"content-type": "application/json"}
        if rng.random() < 0.2:
            headers.update(rng.choice(ODD_HEADERS))
        response = client.post("/api/authorize", content=raw, headers=headers)
        # The stand-in always succeeds: any 5xx (500, or 502 for a body we sent) is ours.
        assert response.status_code < 500, (kind, raw[:200], response.text[:300])
        if key_in_play:
            assert API_KEY.lower() not in response.text.lower()
        json.loads(response.text)  # always JSON
        seen[(kind, response.status_code)] += 1
    return seen


def test_cloud_proxy_fuzz(standin):
    from starlette.testclient import TestClient

    settings = Settings(
        layercode_api_key=API_KEY,
        layercode_authorize_url=f"{standin.url}/v1/pipelines/authorize_session",
        allowed_hosts=("testserver",),
        authorize_rate_limit=10**6,
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        seen = fuzz(client, key_in_play=True)
    statuses = collections.Counter(status for _, status in seen.elements())
    print(f"cloud proxy: {BODIES} bodies, statuses {dict(statuses)}")
    assert statuses[200] > 50 and statuses[400] > 300
    assert not any(status >= 500 for status in statuses)  # the stand-in always succeeds


def test_embedded_authorizer_fuzz(tmp_path):
    client = light_client(tmp_path, authorize_rate_limit=10**6, max_sessions=10**6)
    seen = fuzz(client, key_in_play=False)
    statuses = collections.Counter(status for _, status in seen.elements())
    print(f"embedded: {BODIES} bodies, statuses {dict(statuses)}")
    assert statuses[200] > 50 and statuses[403] > 20
    assert not any(status >= 500 for status in statuses)
