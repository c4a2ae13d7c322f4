"""Trust list envelopes: pinned roots, rollback refused, last good list kept across restarts."""
from __future__ import annotations

import base64
import json

import pytest

from sim.devkeys import make_trust_list
from sim.issuer import Issuer, Person
from terminal.config import load
from terminal.crypto.keyfiles import load_private_key
from terminal.crypto.sm2 import PrivateKey, PublicKey
from terminal.state.store import Store
from terminal.core.trust import (EnvelopeError, envelope_payload, json_payload, open_envelope, open_trust_list,
                                 parse_trust_list, seal_envelope, trust_list)
from terminal.core.trust import Issuer as Listed
from terminal.verifier import SetupError, Verifier, load_trust

from conftest import VECTORS


def roots(*keys):
    return {k.kid(): k for k in keys}


def test_vector_envelope():
    root = PublicKey.from_hex((VECTORS / "root.pub.hex").read_text())
    tl = open_trust_list((VECTORS / "trust.envelope.json").read_bytes(), roots(root))
    assert tl.seq == 5
    assert {k: i.status for k, i in tl.issuers.items()} == {"dbd19bd9": "active", "b6d49fb2": "revoked"}


def test_envelope_forgeries():
    root, other = PrivateKey.generate(), PrivateKey.generate()
    env = seal_envelope(b'{"x":1}', root)
    assert open_envelope(env, roots(root.public_key)) == b'{"x":1}'
    with pytest.raises(EnvelopeError, match="not a pinned key"):
        open_envelope(seal_envelope(b'{"x":1}', other), roots(root.public_key))
    doc = json.loads(env)
    doc["payload"] = base64.b64encode(b'{"x":2}').decode()
    with pytest.raises(EnvelopeError, match="does not verify"):
        open_envelope(json.dumps(doc), roots(root.public_key))
    doc["signer"] = other.public_key.kid()  # claims another signer: that one is not pinned
    with pytest.raises(EnvelopeError):
        open_envelope(json.dumps(doc), roots(root.public_key))
    for garbage in (b"", b"[]", b'{"payload": "!!"}', b"\xff\xfe"):
        with pytest.raises(EnvelopeError):
            open_envelope(garbage, roots(root.public_key))


def test_envelope_payload_is_read_without_a_key():
    """What a relay without the root key reads (the hub simulator's seq): never a verification."""
    assert envelope_payload(seal_envelope(b'{"x":1}', PrivateKey.generate())) == b'{"x":1}'
    for garbage in (b"", b"[]", b'{"payload": "!!", "signer": "a", "sig": "00"}', b'{"payload": "e30="}',
                    b"[" * 100_000):
        with pytest.raises(EnvelopeError):
            envelope_payload(garbage)


def test_trust_list_round_trip():
    root, a, b = PrivateKey.generate(), PrivateKey.generate(), PrivateKey.generate()
    issuers = [Listed(a.public_key.kid(), a.public_key, 10, 20, "active"),
               Listed(b.public_key.kid(), b.public_key, 0, 2 ** 63 - 1, "revoked")]
    tl = open_trust_list(trust_list(7, 15, issuers, root), roots(root.public_key))
    assert (tl.seq, tl.issued_at, tl.issuers) == (7, 15, {i.kid: i for i in issuers})
    with pytest.raises(EnvelopeError, match="not a pinned key"):
        open_trust_list(trust_list(7, 15, issuers, a), roots(root.public_key))


def test_kid_must_match_key():
    root, issuer = PrivateKey.generate(), PrivateKey.generate()
    doc = json.loads(base64.b64decode(json.loads(make_trust_list(issuer, root, seq=1, now=10**9))["payload"]))
    doc["issuers"][0]["kid"] = "00000000"
    with pytest.raises(EnvelopeError, match="kid"):
        open_trust_list(seal_envelope(json.dumps(doc).encode(), root), roots(root.public_key))


def test_newer_accepted_rollback_refused_kept_across_restarts(keyset, tmp_path):
    cfg = load(keyset / "config.toml")
    root, issuer = load_private_key(keyset / "root.pem"), load_private_key(keyset / "issuer.pem")
    state = tmp_path / "state"

    def trust_now():
        s = Store(state)
        try:
            return load_trust(s, cfg)
        finally:
            s.close()

    assert trust_now().seq == 1
    cfg.trust_list.write_bytes(make_trust_list(issuer, root, seq=3, now=10**9, status="revoked"))
    assert trust_now().seq == 3
    cfg.trust_list.write_bytes(make_trust_list(issuer, root, seq=2, now=10**9))  # rollback
    tl = trust_now()
    assert tl.seq == 3 and next(iter(tl.issuers.values())).status == "revoked"
    cfg.trust_list.write_bytes(b"garbage")  # damaged file: the kept list stands
    assert trust_now().seq == 3
    cfg.trust_list.unlink()
    assert trust_now().seq == 3
    # the revoked issuer's tokens are refused by the verifier that kept seq 3
    v = Verifier.open(cfg, state)
    assert v.verify(Issuer.from_dir(keyset).issue(Person())).reason == "issuer_revoked"
    v.close()


def test_no_trust_list_at_all_is_a_setup_error(keyset, tmp_path):
    cfg = load(keyset / "config.toml")
    cfg.trust_list.write_bytes(seal_envelope(b"{}", PrivateKey.generate()))
    with pytest.raises(SetupError, match="trust list .* not a pinned key"):
        Verifier.open(cfg, tmp_path / "state")
    # the state dir is released for the next attempt
    Store(tmp_path / "state").close()


def test_unknown_and_revoked_issuers(vector_config, tmp_path):
    from conftest import load_cases
    cases = {c["name"]: c for c in load_cases()}
    v = Verifier.open(load(vector_config), tmp_path / "s")
    for name, reason in (("unknown_issuer_0", "unknown_issuer"), ("revoked_issuer_0", "issuer_revoked")):
        r = v.verify(cases[name]["text"], now=cases[name]["now"])
        assert (r.decision, r.reason, r.name) == ("deny", reason, None)
    v.close()


# --- the trust list's shape (parse_trust_list) and the envelope's, field by field ----------------

KEY_A, KEY_B = PrivateKey.generate().public_key, PrivateKey.generate().public_key


def entry(key=KEY_A, **over):
    e = {"kid": key.kid(), "public_key": key.hex(), "not_before": 100, "not_after": 200, "status": "active"}
    e.update(over)
    return {k: v for k, v in e.items() if v is not MISSING}


MISSING = object()


def doc(*entries, **over):
    d = {"type": "trust-list", "seq": 7, "issued_at": 50, "issuers": list(entries)}
    d.update(over)
    return json.dumps({k: v for k, v in d.items() if v is not MISSING}).encode()


def test_a_good_list_parses_every_field():
    tl = parse_trust_list(doc(entry(), entry(KEY_B, not_before=0, not_after=0, status="revoked")))
    assert (tl.seq, tl.issued_at) == (7, 50)
    a, b = tl.issuers[KEY_A.kid()], tl.issuers[KEY_B.kid()]
    assert (a.kid, a.public_key, a.not_before, a.not_after, a.status) == (KEY_A.kid(), KEY_A, 100, 200, "active")
    assert (b.kid, b.public_key, b.not_before, b.not_after, b.status) == (KEY_B.kid(), KEY_B, 0, 0, "revoked")
    assert parse_trust_list(doc()).issuers == {}


def test_issued_at_defaults_to_zero():
    assert parse_trust_list(doc(entry(), issued_at=MISSING)).issued_at == 0


@pytest.mark.parametrize("payload, message", [
    (b"not json", "trust list: payload is not JSON"),
    (b"\xff\xfe", "trust list: payload is not JSON"),
    (b"[]", "trust list: not a {type: trust-list, issuers: [...]} document"),
    (b'"trust-list"', "trust list: not a {type: trust-list, issuers: [...]} document"),
    (doc(type="policy"), "trust list: not a {type: trust-list, issuers: [...]} document"),
    (doc(type=MISSING), "trust list: not a {type: trust-list, issuers: [...]} document"),
    (doc(issuers=MISSING), "trust list: not a {type: trust-list, issuers: [...]} document"),
    (doc(issuers={"a": 1}), "trust list: not a {type: trust-list, issuers: [...]} document"),
    (doc(issuers="x"), "trust list: not a {type: trust-list, issuers: [...]} document"),
    (doc(entry(), "x"), "trust list: issuers[1] is not an object"),
    (doc([]), "trust list: issuers[0] is not an object"),
    (doc(entry(public_key=MISSING)), "trust list: issuers[0].public_key is not an SM2 public key"),
    (doc(entry(public_key="04abcd")), "trust list: issuers[0].public_key is not an SM2 public key"),
    (doc(entry(public_key=5)), "trust list: issuers[0].public_key is not an SM2 public key"),
    (doc(entry(public_key=None)), "trust list: issuers[0].public_key is not an SM2 public key"),
    (doc(entry(public_key="zz" * 65)), "trust list: issuers[0].public_key is not an SM2 public key"),
    (doc(entry(kid=MISSING)), "trust list: issuers[0].kid does not match its public key"),
    (doc(entry(kid=KEY_B.kid())), "trust list: issuers[0].kid does not match its public key"),
    (doc(entry(status=MISSING)), "trust list: issuers[0].status must be active or revoked"),
    (doc(entry(status="expired")), "trust list: issuers[0].status must be active or revoked"),
    (doc(entry(status="Active")), "trust list: issuers[0].status must be active or revoked"),
])
def test_malformed_lists_are_refused_with_what_is_wrong(payload, message):
    with pytest.raises(EnvelopeError) as e:
        parse_trust_list(payload)
    assert str(e.value) == message


INTEGERS = {"issuers[0].not_before": lambda v: doc(entry(not_before=v)),
            "issuers[0].not_after": lambda v: doc(entry(not_after=v)),
            "seq": lambda v: doc(entry(), seq=v), "issued_at": lambda v: doc(entry(), issued_at=v)}


# missing is bad for each but issued_at, the one optional integer (test_issued_at_defaults_to_zero)
@pytest.mark.parametrize("where, bad", [
    (where, bad) for where in INTEGERS for bad in (-1, True, False, 1.0, "5", None, MISSING)
    if not (where == "issued_at" and bad is MISSING)])
def test_integers_must_be_non_negative_integers(where, bad):
    make = INTEGERS[where]
    with pytest.raises(EnvelopeError) as e:
        parse_trust_list(make(bad))
    assert str(e.value) == f"trust list: {where} must be a non-negative integer"


@pytest.mark.parametrize("where", list(INTEGERS))
def test_integers_end_at_what_sqlite_holds(where):
    """Issue #12 finding 9: 2^63 and beyond used to reach the store and raise OverflowError there."""
    assert parse_trust_list(INTEGERS[where](2 ** 63 - 1))
    for beyond in (2 ** 63, 2 ** 70):
        with pytest.raises(EnvelopeError) as e:
            parse_trust_list(INTEGERS[where](beyond))
        assert str(e.value) == f"trust list: {where} is beyond 2^63-1"


def test_integers_accept_zero():
    tl = parse_trust_list(doc(entry(not_before=0, not_after=0), seq=0, issued_at=0))
    i = tl.issuers[KEY_A.kid()]
    assert (tl.seq, tl.issued_at, i.not_before, i.not_after) == (0, 0, 0, 0)


def test_valid_at_is_inclusive_at_both_ends():
    i = parse_trust_list(doc(entry())).issuers[KEY_A.kid()]
    assert [i.valid_at(t) for t in (99, 100, 150, 200, 201)] == [False, True, True, True, False]
    revoked = parse_trust_list(doc(entry(status="revoked"))).issuers[KEY_A.kid()]
    assert [revoked.valid_at(t) for t in (99, 100, 150, 200, 201)] == [False] * 5


def test_envelope_shape_errors():
    root = PrivateKey.generate()
    keys = roots(root.public_key)
    good = json.loads(seal_envelope(b'{"x":1}', root))
    not_env = "not a signed envelope {payload, signer, sig}"
    for broken in ({k: v for k, v in good.items() if k != "payload"},
                   {k: v for k, v in good.items() if k != "signer"},
                   {k: v for k, v in good.items() if k != "sig"},
                   good | {"payload": "eyJ4IjoxfQ"},        # unpadded base64
                   good | {"payload": "eyJ4Ijox fQ=="},     # not base64 at all
                   good | {"payload": 5},
                   good | {"sig": "zz" + good["sig"][2:]},
                   good | {"sig": None}):
        with pytest.raises(EnvelopeError) as e:
            open_envelope(json.dumps(broken), keys)
        assert str(e.value) == not_env
    for signer in (None, 5, ["x"], "00000000"):
        with pytest.raises(EnvelopeError) as e:
            open_envelope(json.dumps(good | {"signer": signer}), keys)
        assert str(e.value) == f"signer {str(signer)[:16]!r} is not a pinned key"
    with pytest.raises(EnvelopeError) as e:
        open_envelope(json.dumps(good | {"signer": "a" * 40}), keys)
    assert str(e.value) == f"signer {'a' * 16!r} is not a pinned key"   # cut: it is the sender's text
    with pytest.raises(EnvelopeError) as e:
        open_envelope(json.dumps(good | {"sig": good["sig"][:-1] + ("1" if good["sig"][-1] == "0" else "0")}), keys)
    assert str(e.value) == f"signature by {root.public_key.kid()} does not verify"
    # str and bytes both open, and a second pinned key does not get in the way
    other = PrivateKey.generate().public_key
    assert open_envelope(json.dumps(good), keys | roots(other)) == b'{"x":1}'
    assert open_envelope(json.dumps(good).encode(), keys) == b'{"x":1}'


def test_sealed_envelope_fields():
    root = PrivateKey.generate()
    env = json.loads(seal_envelope(b"payload bytes", root))
    assert set(env) == {"payload", "signer", "sig"}
    assert base64.b64decode(env["payload"]) == b"payload bytes" and env["signer"] == root.public_key.kid()
    assert len(env["sig"]) == 128 and root.public_key.verify(b"payload bytes", bytes.fromhex(env["sig"]))


def test_open_trust_list_checks_the_signature_then_the_shape():
    root = PrivateKey.generate()
    tl = open_trust_list(seal_envelope(doc(entry()), root), roots(root.public_key))
    assert tl.seq == 7 and set(tl.issuers) == {KEY_A.kid()}
    with pytest.raises(EnvelopeError, match="not JSON"):
        open_trust_list(seal_envelope(b"nope", root), roots(root.public_key))
    with pytest.raises(EnvelopeError, match="not a pinned key"):
        open_trust_list(seal_envelope(doc(entry()), PrivateKey.generate()), roots(root.public_key))


def test_a_parsed_list_cannot_be_changed_in_place():
    """The verifier's threads share the list; a new list replaces it, never an edit."""
    import dataclasses
    tl = parse_trust_list(doc(entry()))
    with pytest.raises(dataclasses.FrozenInstanceError):
        tl.seq = 8
    with pytest.raises(dataclasses.FrozenInstanceError):
        tl.issuers[KEY_A.kid()].status = "active"


def test_payloads_too_deep_are_refused_unparsed_with_who_refused():
    deep = b"[" * 100 + b"]" * 100
    with pytest.raises(EnvelopeError) as e:
        open_envelope(deep, {})
    assert str(e.value).startswith("envelope refused unparsed: ")
    with pytest.raises(EnvelopeError) as e:
        parse_trust_list(deep)
    assert str(e.value).startswith("trust list: payload refused unparsed: ")
    with pytest.raises(EnvelopeError) as e:
        json_payload(deep)
    assert str(e.value).startswith("payload refused unparsed: ")
    with pytest.raises(EnvelopeError) as e:
        json_payload(b"not json")
    assert str(e.value) == "payload is not JSON"
    assert json_payload(b'{"a": [1]}') == {"a": [1]}


def test_the_trust_list_builder_writes_compact_json():
    root = PrivateKey.generate()
    key = PrivateKey.generate().public_key
    raw = trust_list(3, 100, [Listed(key.kid(), key, 0, 10, "active")], root)
    payload = base64.b64decode(json.loads(raw)["payload"])
    doc = json.loads(payload)
    assert payload == json.dumps(doc, separators=(",", ":")).encode()
    assert open_trust_list(raw, roots(root.public_key)).seq == 3
