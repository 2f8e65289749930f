"""NameIDs for the broker's assertions (SAML Core §8.3.7 persistent, §8.3.8 transient).

A persistent NameID is a keyed pseudonym: HMAC-SHA256 over the SP's entityID
and the user's identity. It is stable for one user at one SP, differs between
SPs (so SPs cannot correlate users through it), and reveals nothing about the
HSA-id or personnummer behind it.

An HSA-id or a personnummer names one person nationally: the same person gets
the same NameID whichever way (certificate or municipal IdP) they log in. An
opaque identifier is a municipality's own name for its user (an account name,
an employee number): the same value at two municipalities is two people, so
the municipality is part of the pseudonym (SAML Core §8.3.7: a persistent
identifier belongs to one principal).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from broker.model import Identity
from broker.saml.bindings import NAMEID_PERSISTENT, NAMEID_TRANSIENT


class NameIdIssuer:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def persistent(self, sp_entity_id: str, identity: Identity) -> str:
        parts = [b"persistent-nameid-v1", sp_entity_id.encode(), identity.kind.encode(), identity.key.encode()]
        if identity.kind == "opaque":
            parts.append(identity.municipality_id.encode())
        message = b"\x00".join(parts)
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    @staticmethod
    def transient() -> str:
        return "_" + secrets.token_hex(20)

    def issue(self, name_id_format: str, sp_entity_id: str, identity: Identity) -> str:
        if name_id_format == NAMEID_PERSISTENT:
            return self.persistent(sp_entity_id, identity)
        if name_id_format == NAMEID_TRANSIENT:
            return self.transient()
        raise ValueError(f"unsupported NameID format {name_id_format}")
