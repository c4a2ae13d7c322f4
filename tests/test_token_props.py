"""Property tests: whatever arrives at the camera, the verifier answers with a spec reason and
never lets a damaged or forged token in."""
from __future__ import annotations

import base45
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from terminal.core import reasons as R
from terminal.core import token as tok
from terminal.config import load
from terminal.core.policy import ALLOW
from terminal.verifier import Verifier

from conftest import load_cases

CASES = {c["name"]: c for c in load_cases()}
GOOD = CASES["green_mall_0"]
NOW = GOOD["now"]
B45 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
MANY = settings(max_examples=300)


@pytest.fixture
def verifier(vector_config, tmp_path):
    v = Verifier.open(load(vector_config), tmp_path / "state")
    yield v
    v.close()


def assess(v: Verifier, text: str):
    return v.assess(text, NOW, v.cfg.policy("mall"))


def test_good_token_is_allowed(verifier):
    a = assess(verifier, GOOD["text"])
    assert (a.decision, a.reason) == ("allow", "ok")


@MANY
@given(st.binary(max_size=400))
def test_random_binary(verifier, raw):
    a = assess(verifier, tok.PREFIX + base45.b45encode(raw).decode())
    assert a.reason in R.TOKEN_REASONS and a.decision != ALLOW


@MANY
@given(st.text(alphabet=B45, max_size=400))
def test_random_base45(verifier, text):
    a = assess(verifier, tok.PREFIX + text)
    assert a.reason in R.TOKEN_REASONS and a.decision != ALLOW


@MANY
@given(st.text(max_size=300))
def test_random_text(verifier, text):
    a = assess(verifier, text)
    assert a.reason in R.TOKEN_REASONS and a.decision != ALLOW


def expected_reason(pos: int) -> set[str]:
    """What a corrupted byte at ``pos`` must give, by the field it lands in."""
    if pos in (0, 1):
        return {R.UNSUPPORTED_VERSION}
    if 2 <= pos < 6:
        return {R.UNKNOWN_ISSUER, R.ISSUER_REVOKED}
    if 6 <= pos < 10:  # iat: the issuer's validity window is judged (step 2) before the signature
        return {R.ISSUER_REVOKED, R.BAD_SIGNATURE}
    if pos in (21, 22):
        return {R.BAD_FORMAT}
    return {R.BAD_SIGNATURE}  # iat, ttl, nonce, dkid, body, sig: all signed


def test_every_single_byte_mutation(verifier):
    raw = base45.b45decode(GOOD["text"].strip()[len(tok.PREFIX):])
    for pos in range(len(raw)):
        for mask in (0x01, 0x80, 0xFF):
            bad = bytearray(raw)
            bad[pos] ^= mask
            a = assess(verifier, tok.PREFIX + base45.b45encode(bytes(bad)).decode())
            assert a.decision != ALLOW, (pos, mask)
            assert a.reason in expected_reason(pos), (pos, mask, a.reason)


@MANY
@given(st.data())
def test_any_single_byte_value(verifier, data):
    raw = base45.b45decode(GOOD["text"].strip()[len(tok.PREFIX):])
    pos = data.draw(st.integers(0, len(raw) - 1))
    value = data.draw(st.integers(0, 255).filter(lambda v: v != raw[pos]))
    bad = bytearray(raw)
    bad[pos] = value
    a = assess(verifier, tok.PREFIX + base45.b45encode(bytes(bad)).decode())
    assert a.decision != ALLOW
    assert a.reason in expected_reason(pos)


def test_every_text_character_mutation(verifier):
    text = GOOD["text"].strip()
    for i in range(len(tok.PREFIX), len(text)):
        for c in "0Z:":
            if c == text[i]:
                continue
            a = assess(verifier, text[:i] + c + text[i + 1:])
            assert a.decision != ALLOW and a.reason in R.TOKEN_REASONS, (i, c, a.reason)


def test_truncations_and_extensions(verifier):
    text = GOOD["text"].strip()
    for n in range(len(text)):
        a = assess(verifier, text[:n])
        assert a.decision != ALLOW and a.reason in R.TOKEN_REASONS
    for extra in ("0", "00", "000", "A$:"):
        assert assess(verifier, text + extra).reason == R.BAD_FORMAT
