"""`layercode-signature`: made and checked as docs/protocol.md §3 says."""

from __future__ import annotations

import hashlib
import hmac

from server.pipeline.signature import sign, verify

BODY = b'{"type":"message","text":"hi"}'
T = 1_700_000_000


def test_round_trip_and_the_documented_format():
    header = sign(BODY, "s3cret", timestamp=T)
    expected = hmac.new(b"s3cret", b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
    assert verify(header, BODY, "s3cret", now=T + 10)
    assert verify(sign(BODY, "s3cret"), BODY, "s3cret")  # stamped with the real clock


def test_tampered_body_wrong_secret_and_stale_timestamps_fail():
    header = sign(BODY, "s3cret", timestamp=T)
    assert not verify(header, BODY + b" ", "s3cret", now=T)
    assert not verify(header, BODY, "other", now=T)
    assert verify(header, BODY, "s3cret", now=T + 300)
    assert not verify(header, BODY, "s3cret", now=T + 301)
    assert not verify(header, BODY, "s3cret", now=T - 301)
    assert verify(header, BODY, "s3cret", now=T + 500, tolerance_s=600)


def test_a_moved_timestamp_breaks_the_signature():
    digest = sign(BODY, "s3cret", timestamp=T).split("v1=")[1]
    assert not verify(f"t={T + 1},v1={digest}", BODY, "s3cret", now=T)


def test_spacing_order_and_several_v1_entries_are_accepted():
    digest = sign(BODY, "s3cret", timestamp=T).split("v1=")[1]
    assert verify(f"v1={digest}, t={T}", BODY, "s3cret", now=T)
    assert verify(f"t={T},v1={'0' * 64},v1={digest.upper()}", BODY, "s3cret", now=T)


def test_malformed_headers_are_refused_without_raising():
    digest = sign(BODY, "s3cret", timestamp=T).split("v1=")[1]
    for header in (
        None,
        "",
        "garbage",
        ",,,",
        "t=abc,v1=00",
        "v1=00",
        f"v1={digest}",
        f"t={T}",
        "t=,v1=",
        f"t=²,v1={digest}",  # str.isdigit() says yes, int() says no
        f"t=-{T},v1={digest}",
        f"t={T}.5,v1={digest}",
        f"t={T},v1={digest[:-1]}é",  # hmac.compare_digest raises on non-ASCII str
        f"t={T},v1={digest}00",
        f"t={'9' * 400},v1={digest}",
    ):
        assert not verify(header, BODY, "s3cret", now=T), header
    assert not verify(12345, BODY, "s3cret", now=T)  # type: ignore[arg-type]
    assert not verify(sign(BODY, "s3cret"), BODY, "")
