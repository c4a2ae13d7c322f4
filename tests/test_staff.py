"""The staff list and the staff QR code (terminal/core/staff.py, docs/protocol/staff.md): builders,
parsers, bounds on both sides, and what a bundle reveals."""
from __future__ import annotations

import base64
import json
import os
import time
import re

import base45
import pytest

from sim.issuer import random_id_number
from terminal.core import staff as st
from terminal.crypto.sm2 import PrivateKey
from terminal.hub import wire

HUB = PrivateKey.generate()
PIN = {HUB.public_key.kid(): HUB.public_key}
T = 1_800_000_000


def code(sid: bytes = b"H0001-017", *, ttl: int = 30, iat: int = T, version: int = 1, key: PrivateKey = HUB,
         kid: bytes | None = None, sid_len: int | None = None, tail: bytes = b"") -> str:
    """A staff code built byte by byte, so a test can sign what the builder refuses."""
    signed = (bytes([version]) + (kid or bytes.fromhex(key.public_key.kid())) + iat.to_bytes(4, "big")
              + ttl.to_bytes(2, "big") + os.urandom(8) + bytes([len(sid) if sid_len is None else sid_len]) + sid)
    return st.PREFIX + base45.b45encode(signed + key.sign(signed) + tail).decode()


def reason(text: str) -> str:
    with pytest.raises(st.StaffError) as e:
        st.open_staff_qr(text, PIN)
    return e.value.reason


# --- staff list ------------------------------------------------------------------------------

def test_a_staff_list_finds_its_staff_and_nobody_else():
    staff = [random_id_number() for _ in range(20)]
    lst = st.parse_staff_list(st.staff_list(os.urandom(16), staff))
    assert len(lst) == 20
    assert all(n in lst for n in staff)
    assert all(random_id_number() not in lst for _ in range(200))
    assert None not in lst and 42 not in lst and "" not in lst
    x = next((n for n in (random_id_number() for _ in range(2000)) if n.endswith("X")))
    lst = st.parse_staff_list(st.staff_list(os.urandom(16), [x]))
    assert x.lower() in lst and f" {x}\r\n" in lst      # the same check character, scanner whitespace
    assert random_id_number() not in st.NO_STAFF and len(st.NO_STAFF) == 0


def test_the_bundle_never_carries_a_number_and_two_bundles_do_not_link():
    """What a leaked bundle shows: a key and digests — not a number, nor its first 14 digits, and
    a digest under one bundle's key matches nothing under the next bundle's key."""
    staff = [random_id_number() for _ in range(50)]
    k1, k2 = os.urandom(16), os.urandom(16)
    raw = wire.policy(1, {"hospital": {"red": "review"}}, HUB, st.staff_list(k1, staff))
    payload = base64.b64decode(json.loads(raw)["payload"])
    for blob in (raw, payload):
        for n in staff:
            assert n.encode() not in blob
            assert n[:14].encode() not in blob   # nor its district and birth date
    doc = json.loads(payload)["staff"]
    assert set(doc) == {"key", "digests"} and doc["digests"] == sorted(doc["digests"])
    assert all(re.fullmatch(r"[0-9a-f]{32}", d) for d in doc["digests"])
    other = st.staff_list(k2, staff)["digests"]
    assert not set(doc["digests"]) & set(other)
    assert wire.open_policy(raw, PIN).staff == st.parse_staff_list(doc)


def test_the_digest_is_hmac_sm3_of_the_labelled_number_cut_to_16_bytes():
    from terminal.crypto.gmcrypto import hmac_sm3, sm3_gmssl
    key, n = os.urandom(16), random_id_number()
    # the HMAC construction spelled out over gmssl's SM3 (the OpenSSL one is held to it elsewhere)
    pad = key.ljust(64, b"\0")
    inner = sm3_gmssl(bytes(b ^ 0x36 for b in pad) + b"gate-terminal staff v1\0" + n.encode())
    expected = sm3_gmssl(bytes(b ^ 0x5C for b in pad) + inner)[:16]
    assert st.staff_digest(key, n) == expected == hmac_sm3(key, b"gate-terminal staff v1\0" + n.encode())[:16]


@pytest.mark.parametrize("doc, why", [
    (None, "staff: not a {key, digests} object"),
    ([], "staff: not a {key, digests} object"),
    ({"key": "00" * 16}, "staff: not a {key, digests} object"),
    ({"key": "00" * 16, "digests": [], "names": []}, "staff: not a {key, digests} object"),
    ({"key": "00" * 15, "digests": []}, "staff.key must be 32 lowercase hex characters"),
    ({"key": "00" * 17, "digests": []}, "staff.key must be 32 lowercase hex characters"),
    ({"key": "AB" * 16, "digests": []}, "staff.key must be 32 lowercase hex characters"),
    ({"key": "zz" * 16, "digests": []}, "staff.key must be 32 lowercase hex characters"),
    ({"key": 1, "digests": []}, "staff.key must be 32 lowercase hex characters"),
    ({"key": "00" * 16, "digests": "00" * 16}, f"staff.digests: not a list of at most {st.MAX_STAFF}"),
    ({"key": "00" * 16, "digests": ["00" * 16, "00" * 15]}, "staff.digests[1] must be 32 lowercase hex characters"),
    ({"key": "00" * 16, "digests": ["00" * 32]}, "staff.digests[0] must be 32 lowercase hex characters"),
    ({"key": "00" * 16, "digests": [None]}, "staff.digests[0] must be 32 lowercase hex characters"),
    ({"key": "00" * 16, "digests": [random_id_number()]}, "staff.digests[0] must be 32 lowercase hex characters"),
])
def test_a_malformed_staff_list_is_refused_by_name(doc, why):
    with pytest.raises(ValueError) as e:
        st.parse_staff_list(doc)
    assert str(e.value) == why


def test_the_staff_list_bound_on_both_sides():
    key = "00" * 16
    full = {"key": key, "digests": [f"{i:032x}" for i in range(st.MAX_STAFF)]}
    assert len(st.parse_staff_list(full)) == st.MAX_STAFF
    with pytest.raises(ValueError, match="at most 5000"):
        st.parse_staff_list({"key": key, "digests": full["digests"] + ["ff" * 16]})
    with pytest.raises(ValueError, match="at most 5000"):
        st.staff_list(os.urandom(16), [random_id_number() for _ in range(st.MAX_STAFF + 1)])
    # the largest list, in its bundle, is under the policy topic's inbound limit
    from terminal.hub.link import INBOUND_LIMITS
    assert len(wire.policy(1, {}, HUB, full)) < INBOUND_LIMITS["policy"]


def test_a_bundle_with_a_bad_staff_list_is_refused_whole():
    raw = wire.policy(2, {"hospital": {"override_seconds": 30}}, HUB, {"key": "00" * 16, "digests": ["x"]})
    with pytest.raises(wire.EnvelopeError, match="policy: staff.digests"):
        wire.open_policy(raw, PIN)
    ok = wire.open_policy(wire.policy(2, {"hospital": {"override_seconds": 30}}, HUB), PIN)
    assert ok.staff == st.NO_STAFF and ok.venues == {"hospital": {"override_seconds": 30}}


# --- staff QR code -----------------------------------------------------------------------------

def test_a_staff_code_round_trips_and_fits_a_small_qr():
    text = st.staff_qr(HUB, "H0001-017", iat=T, ttl=30, nonce=b"N" * 8)
    assert re.fullmatch(r"SDST1:[0-9A-Z $%*+\-./:]+", text)     # QR alphanumeric mode
    assert st.is_staff_qr(text) and not st.is_staff_qr("SDHC1:ABC") and st.is_staff_qr(" SDST9:x")
    assert st.open_staff_qr(f"  {text}\r\n", PIN) == st.StaffQr("H0001-017", T, 30, b"N" * 8)
    longest = st.staff_qr(HUB, "x" * st.MAX_SID, iat=T, ttl=st.MAX_TTL, nonce=b"N" * 8)
    assert len(longest) == st.MAX_TEXT and st.open_staff_qr(longest, PIN).sid == "x" * 32


def test_the_builder_refuses_what_the_parser_would():
    for sid, ttl, nonce in [("", 30, b"N" * 8), ("x" * 33, 30, b"N" * 8), ("张三", 30, b"N" * 8),
                            ("a b", 30, b"N" * 8), ("ok", 0, b"N" * 8), ("ok", 301, b"N" * 8), ("ok", 30, b"N")]:
        with pytest.raises(ValueError):
            st.staff_qr(HUB, sid, iat=T, ttl=ttl, nonce=nonce)


@pytest.mark.parametrize("text, expect", [
    ("", "bad_format"),
    ("SDST", "bad_format"),
    ("SDHC1:ABC", "bad_format"),
    ("SDST2:ABC", "unsupported_version"),
    ("SDST1:", "bad_format"),
    ("SDST1:abc", "bad_format"),                  # lower case is not Base45
    ("SDST1:A", "bad_format"),                    # Base45 length 3n+1
])
def test_malformed_texts(text, expect):
    assert reason(text) == expect


def test_a_text_one_character_longer_than_the_longest_code_is_refused_before_decoding(mocker):
    decode = mocker.spy(base45, "b45decode")
    for n in (st.MAX_TEXT + 1, 100_000):
        with pytest.raises(st.StaffError) as e:
            st.open_staff_qr(st.PREFIX + "0" * (n - len(st.PREFIX)), PIN)
        assert (e.value.reason, str(e.value)) == ("bad_format", f"bad_format: {n} characters")
    assert decode.call_count == 0


def test_malformed_binaries():
    enc = lambda b: st.PREFIX + base45.b45encode(b).decode()  # noqa: E731
    assert reason(enc(b"")) == "bad_format"
    assert reason(enc(b"\x02" + bytes(100))) == "unsupported_version"   # a later layout: judged first
    assert reason(enc(b"\x01" + bytes(20))) == "bad_format"             # too short
    assert reason(code(sid=b"", sid_len=0)) == "bad_format"
    assert reason(code(sid=b"x" * 33)) == "bad_format"
    assert reason(code(sid_len=5)) == "bad_format"                      # sid_len disagrees with the length
    assert reason(code(tail=b"\x00")) == "bad_format"                   # a byte after the signature
    text = code()
    assert reason(text[:-3]) == "bad_format"                            # cut short


def test_forged_codes():
    stranger = PrivateKey.generate()
    assert reason(code(key=stranger)) == "bad_signature"                       # not the hub's key
    assert reason(code(key=stranger, kid=bytes.fromhex(HUB.public_key.kid()))) == "bad_signature"  # claims it
    raw = bytearray(base45.b45decode(code()[len(st.PREFIX):]))
    for i in (1, 5, 9, 11, 19, 20, len(raw) - 1):                           # any byte changed
        forged = bytearray(raw)
        forged[i] ^= 0x04
        assert reason(st.PREFIX + base45.b45encode(bytes(forged)).decode()) in ("bad_signature", "bad_format"), i
    raw[st.HEADER_LEN] ^= 0x01                                              # a sid character
    assert reason(st.PREFIX + base45.b45encode(bytes(raw)).decode()) == "bad_signature"


def test_hub_signed_but_out_of_range_fields_are_refused():
    assert reason(code(ttl=0)) == "bad_format"
    assert reason(code(ttl=st.MAX_TTL + 1)) == "bad_format"
    assert st.open_staff_qr(code(ttl=st.MAX_TTL), PIN).ttl == st.MAX_TTL
    assert st.open_staff_qr(code(ttl=1), PIN).ttl == 1
    assert reason(code(sid="张".encode())) == "bad_format"
    assert reason(code(sid=b"a b")) == "bad_format"


def test_freshness_on_both_sides():
    q = st.StaffQr("H0001-017", T, 30, b"N" * 8)
    assert st.freshness(q, None, 30) == "clock_untrusted"
    assert st.freshness(q, T + 30, 30) is None              # at iat + ttl: still good
    assert st.freshness(q, T + 30.001, 30) == "expired"
    assert st.freshness(q, T - 30, 30) is None              # iat max_skew ahead of the clock
    assert st.freshness(q, T - 30.001, 30) == "not_yet_valid"


def test_subjects():
    assert st.Staff("id_card", id_number="370102199001011234", name="周医生").subject() == \
        {"id_number": "370102199001011234", "name": "周医生"}
    assert st.Staff("qr", sid="H0001-017").subject() == {"staff_id": "H0001-017", "via": "qr"}


# --- the simulator's command line --------------------------------------------------------------

def test_sim_staff_qr_mints_a_code_the_hub_key_verifies(keyset, capsys):
    from terminal.cli import main
    from terminal.crypto.keyfiles import load_private_key
    hub = load_private_key(keyset / "hub.pem").public_key
    assert main(["sim", "staff-qr", "--keys", str(keyset), "--sid", "H0001-017", "--ttl", "300",
                 "--iat", str(T)]) == 0
    q = st.open_staff_qr(capsys.readouterr().out, {hub.kid(): hub})
    assert (q.sid, q.iat, q.ttl) == ("H0001-017", T, 300)


@pytest.mark.parametrize("args, message", [
    (["--sid", "x" * 33], "--sid must be 1-32 characters"),
    (["--sid", "周医生"], "--sid must be 1-32 characters"),
    (["--sid", "H1", "--ttl", "0"], "--ttl must be 1-300"),
    (["--sid", "H1", "--ttl", "301"], "--ttl must be 1-300"),
    (["--sid", "H1", "--iat", str(1 << 32)], "--iat must be unix seconds"),
])
def test_sim_staff_qr_usage_errors(keyset, capsys, args, message):
    from terminal.cli import main
    assert main(["sim", "staff-qr", "--keys", str(keyset), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("staff", [{"a": 1}, {"id_numbers": ["370102199001011230"]}, {"id_numbers": [1]},
                                   {"id_numbers": "370102199001011234"}, {"id_numbers": ["370102199001011234"] * 5001}])
def test_sim_hub_refuses_a_staff_file_that_is_not_id_numbers(keyset, tmp_path, capsys, staff):
    from terminal.cli import main
    f = tmp_path / "staff.json"
    f.write_text(json.dumps(staff))
    assert main(["sim", "hub", "--broker", "mqtt://127.0.0.1:1", "--keys", str(keyset), "--group", "g" * 16,
                 "--staff", str(f)]) == 2
    err = capsys.readouterr().err
    assert "--staff" in err and "id_numbers is not a list of at most 5000 valid ID numbers" in err
    assert "370102199001011230" not in err   # a number is never echoed


# --- the pending review, on the verifier (the decide thread's side) ------------------------------

@pytest.fixture
def door(keyset, keyset_config):
    """A verifier at a mall whose hub bundle sends red codes to review, with a staff list."""
    from sim.issuer import Issuer
    from terminal.verifier import PolicyUpdate, Verifier
    from terminal.crypto.keyfiles import load_private_key
    v = Verifier.open(keyset_config)
    staff_id = random_id_number()
    v.apply(PolicyUpdate({"mall": {"red": "review", "override_seconds": 5}},
                         st.parse_staff_list(st.staff_list(os.urandom(16), [staff_id]))))
    clock = [100.0]
    v.mono = lambda: clock[0]
    yield {"v": v, "clock": clock, "issuer": Issuer.from_dir(keyset), "staff_id": staff_id,
           "hub": load_private_key(keyset / "hub.pem")}
    v.close()


def _red(d):
    from sim.issuer import Person
    r = d["v"].verify(d["issuer"].issue(Person(status="red")))
    assert (r.decision, r.reason) == ("review", "red_code")
    return r


def _card(id_number, name="周医生"):
    from drivers.cards import CardRead
    return CardRead("id_card", name, id_number)


def test_the_bundle_s_override_seconds_holds_on_both_sides(door):
    d = door
    staff = d["v"].staff_card(_card(d["staff_id"]))
    assert staff == st.Staff("id_card", id_number=d["staff_id"], name="周医生")
    assert d["v"].staff_card(_card(random_id_number())) is None          # not on the list: a visitor
    review = _red(d)
    d["clock"][0] += 5                                                        # the bundle says 5 s
    r = d["v"].override(staff)
    assert (r.method, r.decision, r.reason, r.ref, r.status) == ("staff", "allow", "staff_override",
                                                                  review.event_id, None)
    review = _red(d)
    d["clock"][0] += 5.001
    r = d["v"].override(staff)
    assert (r.decision, r.reason, r.ref) == ("deny", "review_expired", review.event_id)
    assert d["v"].pending is None
    stored = {e["seq"]: e for e in d["v"].store.events()}
    assert stored[r.seq]["ref"] == review.event_id and stored[review.seq]["ref"] is None


def test_what_ends_a_pending_review_and_what_does_not(door):
    from sim.issuer import Person
    d = door
    v, staff = d["v"], st.Staff("remote", sid="cmd-1")
    _red(d)
    assert v.verify("SDHC1:NOT-A-TOKEN").decision == "deny"                   # the next person, turned away
    assert v.override(staff).reason == "no_pending_review"
    _red(d)
    assert v.verify(d["issuer"].issue(Person())).decision == "allow"          # the next person, let in
    assert v.override(staff).reason == "no_pending_review"
    _red(d)
    newer = _red(d)                                                           # a newer review replaces it
    stranger = st.staff_qr(PrivateKey.generate(), "H1", iat=int(time.time()), nonce=os.urandom(8))
    for text in (stranger, "SDST1:A"):                                        # refused credentials leave it
        r = v.verify_staff_qr(text)
        assert (r.method, r.decision, r.ref) == ("staff", "deny", None)
    r = v.verify_staff_qr(st.staff_qr(d["hub"], "H1", iat=int(time.time()), nonce=os.urandom(8)))
    assert (r.decision, r.reason, r.ref) == ("allow", "staff_override", newer.event_id)
    assert v.override(staff).reason == "no_pending_review"                    # used up
