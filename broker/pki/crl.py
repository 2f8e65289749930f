"""Certificate revocation lists held as verified, indexed data (RFC 5280 §5, §6.3).

A CRL is verified once when loaded (issuer, signature, scope) and indexed by
serial number, so a lookup is a dict access even for a CRL of 100,000 entries.
Freshness (thisUpdate/nextUpdate) is judged at check time with the injected
clock.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from broker.errors import CertificateRejected


def spki(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@dataclass(frozen=True)
class VerifiedCrl:
    """A CRL whose signature verified with ``signer_spki`` (the issuing CA's key)."""

    source: Path | None
    issuer_der: bytes
    signer_spki: bytes
    this_update: dt.datetime
    next_update: dt.datetime | None
    revoked: Mapping[int, dt.datetime]


def verify_crl(crl: x509.CertificateRevocationList, cas: Iterable[x509.Certificate],
               source: Path | None = None) -> VerifiedCrl:
    """Verify ``crl`` against the CA among ``cas`` that issued it; raise ValueError saying why not.

    Refused: an issuer that is not among ``cas``; a bad signature; unsupported
    critical extensions (delta CRLs); partitioned or indirect CRLs, which
    would not cover every certificate of the CA (RFC 5280 §5.2.5).
    """
    candidates = [c for c in cas if c.subject == crl.issuer]
    if not candidates:
        raise ValueError(f"CRL issuer {crl.issuer.rfc4514_string()} is not a configured CA")
    signer = None
    for ca in candidates:
        key = ca.public_key()
        if isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey) and crl.is_signature_valid(key):
            signer = ca
            break
    if signer is None:
        raise ValueError("the CRL's signature does not verify with its issuer's key")
    for ext in crl.extensions:
        if ext.critical and ext.oid != x509.oid.ExtensionOID.ISSUING_DISTRIBUTION_POINT:
            raise ValueError(f"the CRL has an unsupported critical extension {ext.oid.dotted_string} "
                             "(delta CRLs are not supported)")
    try:
        idp = crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint).value
    except x509.ExtensionNotFound:
        idp = None
    if idp is not None and (idp.only_contains_ca_certs or idp.only_contains_attribute_certs
                            or idp.only_some_reasons or idp.indirect_crl or idp.only_contains_user_certs):
        raise ValueError("partitioned or indirect CRLs are not supported; configure the full CRL")
    revoked = {entry.serial_number: entry.revocation_date_utc for entry in crl}
    return VerifiedCrl(
        source=source,
        issuer_der=crl.issuer.public_bytes(),
        signer_spki=spki(signer),
        this_update=crl.last_update_utc,
        next_update=crl.next_update_utc,
        revoked=MappingProxyType(revoked),
    )


class CrlIndex:
    """Verified CRLs by issuer; answers "is this certificate revoked?" for a validated path."""

    def __init__(self, crls: Sequence[VerifiedCrl]) -> None:
        by_issuer: dict[bytes, list[VerifiedCrl]] = {}
        for crl in crls:
            by_issuer.setdefault(crl.issuer_der, []).append(crl)
        self._by_issuer = by_issuer

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_issuer.values())

    def covering(self, cert: x509.Certificate, issuer: x509.Certificate) -> VerifiedCrl | None:
        """The most recent CRL signed by ``issuer``'s key that covers ``cert``."""
        issuer_key = spki(issuer)
        usable = [c for c in self._by_issuer.get(cert.issuer.public_bytes(), ())
                  if c.signer_spki == issuer_key]
        return max(usable, key=lambda c: c.this_update, default=None)

    def check_path(self, chain: Sequence[x509.Certificate], now: dt.datetime,
                   skew: dt.timedelta = dt.timedelta(0)) -> dt.datetime:
        """Check every certificate of ``chain`` below its anchor (RFC 5280 §6.3).

        ``chain`` is leaf first, anchor last. Returns the earliest nextUpdate of
        the CRLs used: the instant until which this answer holds. Raises
        :class:`CertificateRejected` with ``revoked``, ``revocation_stale`` or
        ``revocation_unavailable``.
        """
        valid_until: dt.datetime | None = None
        for cert, issuer in itertools.pairwise(chain):
            crl = self.covering(cert, issuer)
            who = "the certificate" if cert is chain[0] else f"CA {cert.subject.rfc4514_string()}"
            if crl is None:
                raise CertificateRejected("revocation_unavailable",
                                          f"no CRL from {issuer.subject.rfc4514_string()} covers {who}")
            if crl.next_update is None:
                raise CertificateRejected("revocation_unavailable",
                                          f"the CRL from {issuer.subject.rfc4514_string()} has no nextUpdate")
            if crl.this_update > now + skew:
                raise CertificateRejected("revocation_unavailable",
                                          f"the CRL from {issuer.subject.rfc4514_string()} is not valid until "
                                          f"{crl.this_update.isoformat()}")
            if crl.next_update < now - skew:
                raise CertificateRejected(
                    "revocation_stale",
                    f"the CRL from {issuer.subject.rfc4514_string()} expired at {crl.next_update.isoformat()}",
                    params={"next_update": crl.next_update.date().isoformat()},
                )
            revoked_at = crl.revoked.get(cert.serial_number)
            if revoked_at is not None:
                raise CertificateRejected(
                    "revoked",
                    f"{who} (serial {cert.serial_number:x}) was revoked at {revoked_at.isoformat()}",
                    params={"revocation_date": revoked_at.date().isoformat()},
                )
            if valid_until is None or crl.next_update < valid_until:
                valid_until = crl.next_update
        if valid_until is None:  # a path of the anchor alone: nothing below it to revoke
            return now
        return valid_until
