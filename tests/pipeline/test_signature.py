"""`layercode-signature`: made and checked as PROTOCOL §3 says."""

from __future__ import annotations

import hashlib
import hmac

from server.pipeline.signature import sign, verify

BODY = b'{"type":"message","text":"hi"}'


def test_round_trip_and_the_documented_format():
    header = sign(BODY, "s3cret", timestamp=1_700_000_000)
    expected = hmac.new(b"s3cret", b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
    assert verify(header, BODY, "s3cret", now=1_700_000_010)


def test_tampered_body_wrong_secret_and_stale_timestamps_fail():
    header = sign(BODY, "s3cret", timestamp=1_700_000_000)
    assert not verify(header, BODY + b" ", "s3cret", now=1_700_000_000)
    assert not verify(header, BODY, "other", now=1_700_000_000)
    assert not verify(header, BODY, "s3cret", now=1_700_000_000 + 301)
    assert not verify(header, BODY, "s3cret", now=1_700_000_000 - 301)


def test_malformed_headers_are_refused_without_raising():
    for header in (None, "", "garbage", "t=abc,v1=00", "v1=00", "t=1700000000", "t=,v1="):
        assert not verify(header, BODY, "s3cret", now=1_700_000_000)
    assert not verify(sign(BODY, "s3cret"), BODY, "")
