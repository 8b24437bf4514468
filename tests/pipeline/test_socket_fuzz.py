"""WebSocket fuzz: 1,200 generated frames on one session; it never closes, another is unharmed.

A seeded generator (so a failure reproduces) sends what a buggy or hostile client might:
unknown and missing types, JSON that is not an object or not JSON at all, every client message
with fields of the wrong type, audio that is not base64 or not whole samples, frames nested
thousands deep, lone surrogates, NaN/Infinity, over-long texts, binary frames. Frames that would
start agent turns (valid `client.response.text`/`data`) are left out: their queueing is the
session's bound, tested with the session. After the frames, the same socket still answers, and
a second session, opened beside it, is greeted as usual.
"""

from __future__ import annotations

import base64
import collections
import json
import random

import pytest

from server.app import create_app
from server.config import Settings
from tests.support.aio import run
from tests.support.servers import serve
from tests.support.voice_client import VoiceClient

FRAMES = 1200
SEED = 11
ODD = [None, True, 0, -1, 1.5, 2**70, "", "x" * 300, [], {}, [1, "a"], {"a": None}]
TYPES = [
    "client.audio",
    "trigger.turn.start",
    "trigger.turn.end",
    "trigger.response.audio.replay_finished",
    "vad_events",
    "client.response.text",
    "client.response.data",
]


def generate(rng: random.Random) -> tuple[str, str | bytes]:
    kind = rng.choice(
        ["unknown", "no_type", "not_object", "broken", "deep", "constant", "surrogate",
         "audio", "wrong_fields", "long", "binary"]
    )  # fmt: skip
    if kind == "unknown":
        return kind, json.dumps({"type": rng.choice(["", "x", "client", "response.audio", 7])})
    if kind == "no_type":
        return kind, json.dumps({"content": "hi"})
    if kind == "not_object":
        return kind, json.dumps(rng.choice([[], [1], "client.ready", 3, None, True]))
    if kind == "broken":
        return kind, rng.choice(['{"type": "client.audio"', "{", "", "nul", '{"type": }'])
    if kind == "deep":
        depth = rng.choice([65, 1000, 5000])
        return kind, '{"type": "client.response.data", "data": ' + "[" * depth + "]" * depth + "}"
    if kind == "constant":
        constant = rng.choice(["NaN", "Infinity", "-Infinity"])
        return kind, '{"type": "client.response.data", "data": {"x": ' + constant + "}}"
    if kind == "surrogate":
        type_ = rng.choice(TYPES)
        return kind, '{"type": "' + type_ + '", "content": "a\\udc00", "data": "\\ud800"}'
    if kind == "audio":
        content = rng.choice(
            [
                "not base64!",
                base64.b64encode(b"\x00").decode(),  # half a sample
                base64.b64encode(b"\x00" * 320).decode(),  # 10 ms of silence: valid
                "=" * 8,
                *ODD,
            ]
        )
        return kind, json.dumps({"type": "client.audio", "content": content})
    if kind == "wrong_fields":
        type_ = rng.choice(TYPES)
        field = rng.choice(["content", "data", "role", "reason", "event", "last_delta_id_played"])
        value = rng.choice(ODD)
        if type_.startswith("client.response") and field in ("content", "data"):
            value = rng.choice([None, 0, [], {"a": None}, True])  # never a valid turn
            field = "content" if type_.endswith("text") else "nodata"
        return kind, json.dumps({"type": type_, field: value})
    if kind == "long":
        return kind, json.dumps({"type": "client.response.text", "content": "w" * 200})
    return kind, rng.randbytes(rng.randint(0, 64))


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("data"), tts_engine="espeak", max_message_chars=100
    )
    with serve(create_app(settings)) as base:
        yield base


def test_a_thousand_bad_frames_never_close_the_session_nor_harm_another(url):
    rng = random.Random(SEED)
    sent: collections.Counter = collections.Counter()

    async def scenario():
        async with VoiceClient(url) as fuzzed:
            await fuzzed.connect(ready=False)
            for _ in range(FRAMES):
                kind, frame = generate(rng)
                sent[kind] += 1
                await fuzzed._socket.send(frame)
                assert fuzzed.close_code is None, (kind, frame[:200], fuzzed.close_reason)
            # Frames are answered in order: once the last one's answer is in, all are.
            await fuzzed.send({"type": "client.response.text", "content": "v" * 101})
            sent["long"] += 1

            def too_long(message: dict) -> bool:
                return message["code"] == "message_too_long"

            while sum(map(too_long, fuzzed.of_type("error"))) < sent["long"]:
                await fuzzed.wait_for("error", too_long, after=len(fuzzed.received))
            assert fuzzed.close_code is None
            errors = collections.Counter(m["code"] for m in fuzzed.of_type("error"))
            async with VoiceClient(url) as other:
                await other.connect()
                start = await other.wait_for("turn.start", lambda m: m["role"] == "assistant")
                await other.wait_for(
                    "response.end", lambda m: m["turn_id"] == start.message["turn_id"]
                )
            assert fuzzed.close_code is None
            return errors

    errors = run(scenario(), timeout=300)
    print(f"websocket fuzz: {FRAMES} frames {dict(sent)}, errors answered {dict(errors)}")
    refused_on_receipt = sent["deep"] + sent["constant"] + sent["surrogate"] + sent["binary"]
    assert errors["protocol_error"] >= refused_on_receipt
