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
from terminal.core.trust import EnvelopeError, open_envelope, open_trust_list, seal_envelope
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
