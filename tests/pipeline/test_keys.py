"""Client session keys: unguessable, single-use, short-lived, bound to their session."""

from __future__ import annotations

import pytest

from layercode_client.protocol import CloseCode, SessionConfig
from server.pipeline.keys import KeyRefused, SessionGrant, SessionKeys


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def grant(session_id="sess_1") -> SessionGrant:
    return SessionGrant(session_id=session_id, pipeline_id="p", config=SessionConfig())


def test_a_key_redeems_once_for_its_own_session():
    keys = SessionKeys()
    first, second = keys.issue(grant("sess_a")), keys.issue(grant("sess_b"))
    assert first != second and len(first) > 40
    assert keys.redeem(second).session_id == "sess_b"
    assert keys.redeem(first).session_id == "sess_a"
    with pytest.raises(KeyRefused) as refused:
        keys.redeem(first)
    assert refused.value.close_code == CloseCode.SESSION_KEY_USED
    assert "already used" in refused.value.reason


def test_an_unused_key_expires_after_the_ttl():
    clock = FakeClock()
    keys = SessionKeys(ttl_s=60, clock=clock)
    key = keys.issue(grant())
    clock.now += 59
    other = keys.issue(grant())
    clock.now += 2
    with pytest.raises(KeyRefused) as refused:
        keys.redeem(key)
    assert refused.value.close_code == CloseCode.SESSION_KEY_INVALID
    assert "expired" in refused.value.reason
    assert keys.redeem(other).session_id == "sess_1"
    clock.now += 100
    assert len(keys) == 0  # swept


@pytest.mark.parametrize("key", [None, "", "lcsk_guess", "x" * 60])
def test_unknown_or_missing_keys_are_refused(key):
    keys = SessionKeys()
    keys.issue(grant())
    with pytest.raises(KeyRefused) as refused:
        keys.redeem(key)
    assert refused.value.close_code == CloseCode.SESSION_KEY_INVALID


def test_resume_tokens_prove_ownership_and_rotate():
    keys = SessionKeys()
    first = keys.issue_resume_token("sess_a")
    assert keys.resume_token_valid("sess_a", first)
    assert not keys.resume_token_valid("sess_b", first)
    assert not keys.resume_token_valid("sess_a", None)
    assert not keys.resume_token_valid("sess_a", first + "x")
    second = keys.issue_resume_token("sess_a")
    assert keys.resume_token_valid("sess_a", second)
    assert not keys.resume_token_valid("sess_a", first)
    assert first not in repr(keys.tokens.__dict__)  # only digests are kept
