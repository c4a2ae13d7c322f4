"""Body validation (spec/token.md §3, §4 step 5) and the binary and text limits, on both sides.

Every token here is signed by the vectors' issuer, so it reaches decryption and body parsing
through the real verifier; the property tests find defects, the examples pin each limit.
"""
from __future__ import annotations

import base45
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.issuer import Issuer, Person
from terminal.core import reasons as R
from terminal.core import token as tok
from drivers.idnumber import check_character, mask_id, mask_name
from terminal.core.policy import DENY, VENUES, HealthStatus, decide

from token_strategies import (DATA_KEY, DKID, ID_NUMBER, ISSUER, NOW, Broken, badly_padded, bodies, body_bytes, broken_bodies,
                              fresh_nonce, open_verifier, pkcs7, raw, seal, seal_blocks)


@pytest.fixture
def verifier(vector_config, tmp_path):
    v = open_verifier(vector_config, tmp_path / "state")
    yield v
    v.close()


def assess(v, text: str):
    return v.assess(text, NOW, v.policy("mall"))


def assert_bad_format(v, text: str, why: str) -> None:
    """``deny``/``bad_format`` with no body; each presentation still commits its event, and no
    nonce is spent on a body that failed, so a second look is not ``replayed``."""
    a = assess(v, text)
    assert (a.decision, a.reason, a.body) == (DENY, R.BAD_FORMAT, None), why
    assert a.env is not None
    before = v.store.last_seq()
    for _ in range(2):
        r = v.verify(text, now=NOW)
        assert (r.decision, r.reason, r.status, r.flags, r.name, r.id) == \
            (DENY, R.BAD_FORMAT, None, None, None, None), why
    events = v.store.events(after_seq=before)
    assert [(e["decision"], e["reason"], e["subject"]) for e in events] == [(DENY, R.BAD_FORMAT, None)] * 2


# --- properties ------------------------------------------------------------------------

@settings(max_examples=150)
@given(body=bodies, venue=st.sampled_from(VENUES))
def test_valid_body_round_trips_and_gets_the_policy_decision(verifier, body, venue):
    policy = verifier.policy(venue)
    text = seal(raw(body))
    a = verifier.assess(text, NOW, policy)
    assert a.body == body
    expected = decide(policy, HealthStatus(body.status, body.flags, body.nat_at, body.nat_result,
                                           body.vax_doses), NOW)
    assert (a.decision, a.reason) == expected
    before = verifier.store.last_seq()
    r = verifier.verify(text, now=NOW, venue=venue)
    assert (r.decision, r.reason) == expected
    assert (r.status, r.flags, r.name, r.id) == \
        (body.status, body.flags, mask_name(body.name), mask_id(body.id_number))
    [event] = verifier.store.events(after_seq=before)
    assert (event["seq"], event["decision"], event["reason"], event["status"], event["flags"]) == \
        (r.seq, *expected, body.status, body.flags)
    assert event["subject"]


# Which check must refuse each defect: the first one that applies, in the order of §3.
FIRST_CHECK = {
    "status": "status ", "reserved_flag": "reserved flag bits set", "nat_result": "nat_result ",
    "vax": "vax_doses ", "id_not_ascii": "id_number not ASCII", "id_not_digit": "id_number check character",
    "id_check": "id_number check character", "name_len_0": "name_len 0", "name_len_over_60": "name_len ",
    "name_len_mismatch": "body length does not match name_len",
    "trailing": "body length does not match name_len", "name_not_utf8": "name not UTF-8",
    "short": "body too short",
}


def refusal(plain: bytes) -> str:
    with pytest.raises(tok.TokenError) as e:
        tok.parse_body(plain)
    assert e.value.reason == R.BAD_FORMAT
    return str(e.value)


@settings(max_examples=200)
@given(broken_bodies())
def test_any_body_defect_is_bad_format(verifier, case: Broken):
    assert refusal(case.plain).startswith("bad_format: " + FIRST_CHECK[case.defect])
    assert_bad_format(verifier, seal(case.plain), case.defect)


@settings(max_examples=100)
@given(badly_padded())
def test_any_bad_padding_is_bad_format(verifier, case: Broken):
    text = seal_blocks(case.plain)
    with pytest.raises(tok.TokenError) as e:
        tok.decrypt_body(tok.parse_text(text), DATA_KEY)
    assert str(e.value) == "bad_format: bad PKCS#7 padding"
    assert_bad_format(verifier, text, case.defect)


# --- each limit, both sides ------------------------------------------------------------

ID_X = next(f for f in (f"3701021990010112{i}" for i in range(10)) if check_character(f) == "X") + "X"
NAME60 = "张" * 20  # 60 UTF-8 bytes

GOOD_FIELDS = [
    ("status 2", dict(status=2), "status", 2),
    ("flags 0x07", dict(flags=0x07), "flags", 0x07),
    ("nat_result 3", dict(nat_result=3), "nat_result", 3),
    ("vax 9", dict(vax=9), "vax_doses", 9),
    ("nat_at 2^32-1", dict(nat_at=2**32 - 1), "nat_at", 2**32 - 1),
    ("check character X", dict(id_number=ID_X.encode()), "id_number", ID_X),
    ("name_len 1 (the 28-byte minimum)", dict(name=b"a"), "name", "a"),
    ("name_len 60", dict(name=NAME60.encode()), "name", NAME60),
]


@pytest.mark.parametrize("fields, attr, value", [c[1:] for c in GOOD_FIELDS], ids=[c[0] for c in GOOD_FIELDS])
def test_limit_inside_is_accepted(verifier, fields, attr, value):
    a = assess(verifier, seal(body_bytes(**fields)))
    assert getattr(a.body, attr) == value


BAD_BODIES = [
    ("status 3", body_bytes(status=3), "status 3"),
    ("status 255", body_bytes(status=255), "status 255"),
    *[(f"flags {1 << bit:#04x}", body_bytes(flags=1 << bit), "reserved flag bits set") for bit in range(3, 8)],
    ("nat_result 4", body_bytes(nat_result=4), "nat_result 4"),
    ("vax 10", body_bytes(vax=10), "vax_doses 10"),
    ("check character x", body_bytes(id_number=ID_X[:17].encode() + b"x"), "id_number check character"),
    ("wrong check character", body_bytes(id_number=ID_NUMBER[:17].encode()
                                         + (b"9" if ID_NUMBER[17] != "9" else b"8")), "id_number check character"),
    ("id not ASCII", body_bytes(id_number=b"\xb3" + ID_NUMBER[1:].encode()), "id_number not ASCII"),
    ("id letter", body_bytes(id_number=b"A" + ID_NUMBER[1:].encode()), "id_number check character"),
    ("name_len 0", body_bytes(name=b"a", name_len=0), "name_len 0"),
    ("name_len 61", body_bytes(name=b"a" * 61), "name_len 61"),
    ("name_len 2, name 1 byte", body_bytes(name=b"a", name_len=2), "body length does not match name_len"),
    ("one trailing byte", body_bytes(name=b"ab", name_len=1), "body length does not match name_len"),
    ("name not UTF-8", body_bytes(name=b"\xe5\xbc"), "name not UTF-8"),
    ("27 bytes", body_bytes(name=b"a")[:27], "body too short"),
    ("empty", b"", "body too short"),
]


@pytest.mark.parametrize("plain, why", [c[1:] for c in BAD_BODIES], ids=[c[0] for c in BAD_BODIES])
def test_limit_outside_is_bad_format(verifier, plain, why):
    assert refusal(plain) == "bad_format: " + why
    assert_bad_format(verifier, seal(plain), why)


def test_body_exactly_27_plus_name_len_is_accepted_one_more_byte_is_not(verifier):
    plain = body_bytes(name="王五".encode())
    assert len(plain) == 27 + 6
    assert assess(verifier, seal(plain)).body.name == "王五"
    assert_bad_format(verifier, seal(plain + b"\x00"), "trailing")


def test_full_padding_block_is_accepted(verifier):
    """A 32-byte body: PKCS#7 adds a whole block of 0x10."""
    plain = body_bytes(name=b"abcde")
    assert len(plain) == 32 and pkcs7(plain)[32:] == b"\x10" * 16
    assert assess(verifier, seal(plain)).body.name == "abcde"


@pytest.mark.parametrize("tail", [b"\x00", b"\x11", b"\xff", b"\x02\x03", b"\x03" + b"\x04" * 3],
                         ids=["pad 0", "pad 17", "pad 255", "pad 3 / 2", "pad 4 with a 3"])
def test_bad_padding(verifier, tail):
    plain = body_bytes(name=b"abcdef")  # 33 bytes: 15 bytes to the block end
    assert_bad_format(verifier, seal_blocks(plain + b"\x01" * (15 - len(tail)) + tail), "")


def test_pad_one_is_accepted(verifier):
    plain = body_bytes(name=b"a" * 20)  # 47 bytes: one byte of padding
    assert pkcs7(plain)[-1:] == b"\x01"
    assert assess(verifier, seal_blocks(plain + b"\x01")).body.name == "a" * 20


# --- parse_binary ------------------------------------------------------------------------

KID, IAT, TTL, NONCE, HDR_DKID = bytes.fromhex("dbd19bd9"), 1768844563, 0x0102, bytes(range(1, 9)), 7
SIG = bytes(range(64))


def binary(body: bytes, *, body_len: int | None = None, version: int = 1, alg: int = 1) -> bytes:
    n = len(body) if body_len is None else body_len
    return (bytes([version, alg]) + KID + IAT.to_bytes(4, "big") + TTL.to_bytes(2, "big") + NONCE
            + bytes([HDR_DKID]) + n.to_bytes(2, "big") + body + SIG)


def refused(parse, data) -> str:
    """The refusal's message: reason and detail, which names the check that refused."""
    with pytest.raises(tok.TokenError) as e:
        parse(data)
    return str(e.value)


@pytest.mark.parametrize("n", [16, 32, 240, 256])
def test_parse_binary_fields(n):
    body = bytes(range(n))
    raw = binary(body)
    env = tok.parse_binary(raw)
    assert env == tok.Envelope(kid="dbd19bd9", iat=IAT, ttl=TTL, nonce=NONCE, dkid=HDR_DKID, body=body,
                               signed=raw[:23 + n], sig=SIG)
    assert env.iv == tok.body_iv(NONCE, IAT)


@pytest.mark.parametrize("raw, message", [
    (b"", "bad_format: too short"),
    (b"\x01", "bad_format: too short"),
    (b"\x02", "bad_format: too short"),                     # too short to judge the version
    (b"\x01\x01", "bad_format: too short"),
    (b"\x02\x01", "unsupported_version: version 2 alg 1"),  # judged before any length
    (b"\x01\x02", "unsupported_version: version 1 alg 2"),
    (b"\x00\x01", "unsupported_version: version 0 alg 1"),
    (b"\x01\x00", "unsupported_version: version 1 alg 0"),
    (binary(bytes(16), version=2), "unsupported_version: version 2 alg 1"),
    (binary(bytes(16), alg=2), "unsupported_version: version 1 alg 2"),
    (binary(bytes(16))[:22], "bad_format: too short"),       # header one byte short
    (binary(bytes(16))[:23], "bad_format: length 23 != 103"),  # whole header: its body_len is read
], ids=["empty", "1 byte", "1 byte v2", "2 bytes", "v2", "alg 2", "v0", "alg 0", "full v2", "full alg 2",
        "22 bytes", "23 bytes"])
def test_parse_binary_short_and_version(raw, message):
    assert refused(tok.parse_binary, raw) == message


@pytest.mark.parametrize("body_len, body", [(0, b""), (272, bytes(272)), (17, bytes(17)), (15, bytes(15)),
                                            (255, bytes(255)), (257, bytes(257))])
def test_parse_binary_body_len_refused(body_len, body):
    assert refused(tok.parse_binary, binary(body, body_len=body_len)) == f"bad_format: body_len {body_len}"


@pytest.mark.parametrize("delta", [-1, 1])
def test_parse_binary_total_length_exact(delta):
    raw = binary(bytes(32))
    assert tok.parse_binary(raw).body == bytes(32)
    assert refused(tok.parse_binary, raw + b"\x00" if delta > 0 else raw[:-1]) == \
        f"bad_format: length {len(raw) + delta} != {len(raw)}"


# --- the text form -----------------------------------------------------------------------

GOOD_RAW = binary(bytes(16))
GOOD_TEXT = tok.PREFIX + base45.b45encode(GOOD_RAW).decode()


@pytest.mark.parametrize("text", [GOOD_TEXT, "\r\n " + GOOD_TEXT + "\r\n\t ", GOOD_TEXT + "\n"])
def test_text_form_accepted_with_surrounding_whitespace(text):
    assert tok.parse_text(text) == tok.parse_binary(GOOD_RAW)


PAYLOAD = GOOD_TEXT[len(tok.PREFIX):]


@pytest.mark.parametrize("text, message", [
    ("SDHC2:" + PAYLOAD, "unsupported_version: unknown text version"),
    ("SDHC10:" + PAYLOAD, "unsupported_version: unknown text version"),
    (" SDHC0:", "unsupported_version: unknown text version"),
    ("xSDHC2:" + PAYLOAD, R.NOT_HEALTH_CODE),      # a version prefix only at the start
    ("SDHC:" + PAYLOAD, R.NOT_HEALTH_CODE),
    ("sdhc1:" + PAYLOAD, R.NOT_HEALTH_CODE),
    ("SDHC1" + PAYLOAD, R.NOT_HEALTH_CODE),
    ("", R.NOT_HEALTH_CODE),
    ("https://example.org/SDHC1:" + PAYLOAD, R.NOT_HEALTH_CODE),
    ("SDHC1:abc", "bad_format: not Base45"),       # lower case is not Base45
    ("SDHC1:" + PAYLOAD[:-2] + "\n" + PAYLOAD[-2:], "bad_format: not Base45"),  # only the ends are stripped
    ("SDHC1:", "bad_format: too short"),
], ids=["SDHC2", "SDHC10", "SDHC0 after space", "xSDHC2", "no version", "lower case", "no colon", "empty",
        "url", "not Base45", "inner newline", "empty payload"])
def test_text_form_refused(text, message):
    assert refused(tok.parse_text, text) == message


@pytest.mark.parametrize("payload", ["0", "0000", PAYLOAD + "00", PAYLOAD + "00000"])
def test_base45_length_3n_plus_1_is_refused_before_decoding(payload):
    assert len(payload) % 3 == 1
    assert refused(tok.parse_text, tok.PREFIX + payload) == "bad_format: Base45 length 3n+1"


def test_base45_length_3n_decodes():
    """3n characters (an even byte count) are Base45: the binary checks judge them next."""
    payload = base45.b45encode(GOOD_RAW + b"\x00").decode()
    assert len(payload) % 3 == 0 and len(PAYLOAD) % 3 == 2
    assert refused(tok.parse_text, tok.PREFIX + payload) == f"bad_format: length {len(GOOD_RAW) + 1} != {len(GOOD_RAW)}"


def test_encode_builds_the_layout_of_the_spec():
    """``encode`` (the simulator's issuer) against this file's own construction of the layout."""
    body = tok.Body(1, 0x05, NOW - 60, 1, 2, ID_NUMBER, "李四")
    nonce = fresh_nonce()
    text = tok.encode(ISSUER, dkid=DKID, data_key=DATA_KEY, iat=NOW, ttl=45, nonce=nonce, body=body)
    env = tok.parse_text(text)
    assert env.signed == tok.parse_text(seal(raw(body), iat=NOW, ttl=45, nonce=nonce)).signed
    assert ISSUER.public_key.verify(env.signed, env.sig)
    assert tok.decrypt_body(env, DATA_KEY) == body


def test_reason_alone_is_the_message():
    e = tok.TokenError(R.EXPIRED)
    assert (str(e), e.reason, e.detail) == ("expired", R.EXPIRED, "")
    e = tok.TokenError(R.BAD_FORMAT, "too short")
    assert (str(e), e.reason, e.detail) == ("bad_format: too short", R.BAD_FORMAT, "too short")


@pytest.mark.parametrize("status, name", [(0, "green"), (1, "yellow"), (2, "red")])
def test_status_names_in_the_json_result(verifier, status, name):
    r = verifier.verify(seal(body_bytes(status=status)), now=NOW)
    assert r.as_json()["status"] == name


@pytest.mark.parametrize("person, flags, nat_result", [
    (Person(star=True), 0x01, 1), (Person(close_contact=True), 0x02, 1), (Person(monitored=True), 0x04, 1),
    (Person(nat="none"), 0, 0), (Person(nat="positive"), 0, 2), (Person(nat="pending"), 0, 3)])
def test_simulator_issuer_codes_flags_and_results_as_the_spec(verifier, person, flags, nat_result):
    """The token module's named flag bits and results, as the simulator's issuer uses them."""
    text = Issuer(ISSUER, {DKID: DATA_KEY}).issue(person, iat=NOW)
    body = assess(verifier, text).body
    assert (body.flags, body.nat_result, body.name, body.id_number) == \
        (flags, nat_result, person.name, person.id_number)
