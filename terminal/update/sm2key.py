"""SM2/SM3 as a TUF key type: securesystemslib's Key and Signer for the project's own SM2.

TUF metadata names a key by ``keytype``/``scheme`` and carries opaque ``keyval``; python-tuf
looks the pair up in ``securesystemslib.signer.KEY_FOR_TYPE_AND_SCHEME`` and calls the class's
``verify_signature``. Registering ("sm2", "sm2-sm3") here is all the TUF client needs: the
signature is SM2 over SM3 with the standard's default user id (GB/T 32918, the same as every
other signature of the project), 64 bytes r‖s, hex in the metadata. Importing this module
registers the type; :mod:`terminal.update.fetch` does so before TUF parses any metadata.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

from securesystemslib.exceptions import UnverifiedSignatureError
from securesystemslib.signer import KEY_FOR_TYPE_AND_SCHEME, Key, Signature, Signer

from terminal.crypto.sm2 import PrivateKey, PublicKey, SM2Error

KEYTYPE = "sm2"
SCHEME = "sm2-sm3"


class SM2Key(Key):
    """The public half: ``keyval = {"public": "04‖X‖Y" hex}``."""

    @classmethod
    def from_public(cls, public: PublicKey) -> "SM2Key":
        keyval = {"public": public.hex()}
        # Key ids are the SHA-256 of the key's canonical JSON, as TUF's own key types do.
        canonical = json.dumps({"keytype": KEYTYPE, "scheme": SCHEME, "keyval": keyval},
                               sort_keys=True, separators=(",", ":")).encode()
        return cls(hashlib.sha256(canonical).hexdigest(), KEYTYPE, SCHEME, keyval)

    @classmethod
    def from_dict(cls, keyid: str, key_dict: dict[str, Any]) -> "SM2Key":
        keytype, scheme, keyval = cls._from_dict(key_dict)
        if not isinstance(keyval.get("public"), str):
            raise ValueError("sm2 key: keyval.public must be a hex string")
        return cls(keyid, keytype, scheme, keyval, key_dict)

    def to_dict(self) -> dict[str, Any]:
        return self._to_dict()

    def public(self) -> PublicKey:
        return PublicKey.from_hex(self.keyval["public"])

    def verify_signature(self, signature: Signature, data: bytes) -> None:
        try:
            ok = self.public().verify(data, bytes.fromhex(signature.signature))
        except (SM2Error, ValueError, TypeError) as e:
            raise UnverifiedSignatureError(f"sm2 key {self.keyid[:16]}: {e}") from None
        if not ok:
            raise UnverifiedSignatureError(f"sm2 key {self.keyid[:16]}: signature does not verify")


class SM2Signer(Signer):
    """Signs with a private key held in memory (the hub's repository tooling)."""

    def __init__(self, private: PrivateKey):
        self._private = private
        self._public = SM2Key.from_public(private.public_key)

    @classmethod
    def from_priv_key_uri(cls, priv_key_uri, public_key, secrets_handler=None):
        raise ValueError("SM2Signer is made from a key in memory, not from a URI")

    @property
    def public_key(self) -> SM2Key:
        return self._public

    def sign(self, payload: bytes) -> Signature:
        return Signature(self._public.keyid, self._private.sign(payload).hex())


KEY_FOR_TYPE_AND_SCHEME[(KEYTYPE, SCHEME)] = SM2Key
