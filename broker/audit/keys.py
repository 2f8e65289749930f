"""The audit signing key (Ed25519, RFC 8032) and how checkpoints are signed and checked.

A checkpoint signs the chain's head: the chain id, the sequence number and
hash of the last record it covers, and its own time. The key id is the first
16 hex digits of the SHA-256 of the raw public key; reviewers verify with the
public half only (`broker audit verify --key`).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

DOMAIN = b"broker-audit-checkpoint-v2"


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def checkpoint_message(chain: str, seq: int, record_hash: str, time: str, final: bool) -> bytes:
    """The bytes a checkpoint signs (no JSON canonicalisation needed: fixed fields, fixed order). ``final`` is
    signed too: a final checkpoint says the writer closed the chain, and nothing may follow it; unsigned, the
    flag could be turned off to append records after it."""
    return b"|".join([DOMAIN, chain.encode(), str(seq).encode(), record_hash.encode(), time.encode(),
                      b"final" if final else b"open"])


@dataclass(frozen=True)
class AuditSigner:
    private: Ed25519PrivateKey

    @property
    def key_id(self) -> str:
        return key_id(self.private.public_key())

    def sign(self, chain: str, seq: int, record_hash: str, time: str, final: bool) -> str:
        return base64.b64encode(self.private.sign(checkpoint_message(chain, seq, record_hash, time, final))).decode()


class AuditKeyring:
    """Public keys a verifier trusts, by key id."""

    def __init__(self, keys: Iterable[Ed25519PublicKey]) -> None:
        self._keys: Mapping[str, Ed25519PublicKey] = {key_id(k): k for k in keys}

    def __contains__(self, kid: str) -> bool:
        return kid in self._keys

    def ids(self) -> list[str]:
        return sorted(self._keys)

    def verify(self, kid: str, signature_b64: str, chain: str, seq: int, record_hash: str, time: str,
               final: bool) -> bool:
        key = self._keys[kid]
        try:
            key.verify(base64.b64decode(signature_b64, validate=True),
                       checkpoint_message(chain, seq, record_hash, time, final))
        except (InvalidSignature, ValueError):
            return False
        return True


def load_public_key(data: bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM (SubjectPublicKeyInfo) or from the PEM private key it belongs to."""
    if b"PRIVATE KEY" in data:
        private = serialization.load_pem_private_key(data, password=None)
        if not isinstance(private, Ed25519PrivateKey):
            raise ValueError("not an Ed25519 private key")
        return private.public_key()
    public = serialization.load_pem_public_key(data)
    if not isinstance(public, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return public


def public_pem(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
