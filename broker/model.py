"""Frozen value types shared by the core packages."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from broker.lru import by_identity


@dataclass(frozen=True, order=True)
class Loa:
    """An assurance level: ``rank`` orders levels, ``uri`` is the AuthnContextClassRef.

    URIs from the Swedish eID framework ("Tillitsramverk för Svensk e-legitimation")
    and Sambi; see REFERENCE in the docs.
    """

    rank: int
    name: str
    uri: str


LOA2: Final = Loa(2, "loa2", "http://id.elegnamnden.se/loa/1.0/loa2")
LOA3: Final = Loa(3, "loa3", "http://id.elegnamnden.se/loa/1.0/loa3")
LOA4: Final = Loa(4, "loa4", "http://id.elegnamnden.se/loa/1.0/loa4")
SAMBI_LOA2: Final = Loa(2, "sambi-loa2", "http://id.sambi.se/loa/loa2")
SAMBI_LOA3: Final = Loa(3, "sambi-loa3", "http://id.sambi.se/loa/loa3")

KNOWN_LOAS: Final = {loa.name: loa for loa in (LOA2, LOA3, LOA4, SAMBI_LOA2, SAMBI_LOA3)}
LOA_BY_URI: Final = {loa.uri: loa for loa in KNOWN_LOAS.values()}


def satisfies(loa: Loa, requested: tuple[str, ...], comparison: str) -> bool:
    """Does ``loa`` meet a RequestedAuthnContext (SAML Core §3.3.2.2.1)?

    ``exact``: the issued ClassRef is one of those requested. The ordered
    comparisons use the ranks of the requested LoAs the broker knows:
    ``minimum``: at least as strong as one of them; ``better``: stronger than
    all of them; ``maximum``: no stronger than one of them. A ClassRef the
    broker does not know has no rank: it meets no ``minimum`` or ``maximum``
    by itself, and ``better`` is not met beside it (the broker cannot deem
    its level stronger than a context it cannot rank).
    """
    if not requested:
        return True
    if comparison == "exact":
        return loa.uri in requested
    ranks = [LOA_BY_URI[uri].rank for uri in requested if uri in LOA_BY_URI]
    if not ranks:
        return False
    if comparison == "minimum":
        return loa.rank >= min(ranks)
    if comparison == "better":
        return len(ranks) == len(requested) and loa.rank > max(ranks)
    return loa.rank <= max(ranks)  # maximum


IdentityKind = Literal["hsa_id", "personnummer", "opaque"]


@dataclass(frozen=True)
class Identity:
    """Who the user is, as mapped from a certificate (or, later, an upstream assertion).

    ``key`` is the value the identity rule produced: an HSA-id, a personnummer
    or an opaque identifier. A personnummer must never be logged as is; the
    audit trail pseudonymises it.
    """

    kind: IdentityKind
    key: str
    municipality_id: str
    given_name: str | None = None
    surname: str | None = None
    display_name: str | None = None


@dataclass(frozen=True)
class CertificateFacts:
    """What may be recorded about a certificate: never the PEM, never the subject."""

    fingerprint_sha256: str
    serial_hex: str
    issuer: str
    not_before: dt.datetime
    not_after: dt.datetime

    @staticmethod
    def of(cert: x509.Certificate) -> CertificateFacts:
        """The facts of ``cert``, worked out once per certificate object (a login needs them twice, and the
        issuer's RFC 4514 string alone costs more than the cache)."""
        return _facts(cert)


# as many as broker.pki.sources keeps decoded certificates (whose objects these are): an entry keeps its
# certificate alive, so more would hold re-decoded copies of the same certificates without being found again
@by_identity(1024)
def certificate_der(cert: x509.Certificate) -> bytes:
    """``cert``'s DER, encoded once per certificate object: cryptography writes the whole certificate out again at
    each ``public_bytes`` (a login keeps its card's DER in the session)."""
    return cert.public_bytes(serialization.Encoding.DER)


@by_identity(1024)
def issuer_der(cert: x509.Certificate) -> bytes:
    """The DER of ``cert``'s issuer name, once per certificate object: ``cert.issuer`` parses the name into Python
    objects and ``public_bytes`` writes it out again (the municipality is chosen by it at every login)."""
    return cert.issuer.public_bytes()


@by_identity(1024)
def _facts(cert: x509.Certificate) -> CertificateFacts:
    der = certificate_der(cert)
    return CertificateFacts(
        fingerprint_sha256=hashlib.sha256(der).hexdigest(),
        serial_hex=format(cert.serial_number, "x"),
        issuer=cert.issuer.rfc4514_string(),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
    )


@dataclass(frozen=True)
class ReplyTarget:
    """Where and how the broker may answer a service provider with a SAML Response.

    Only built once the request's Issuer is a registered SP and the ACS URL is
    one of its registered endpoints (SAML Profiles §4.1.4.1), so an error
    Response never goes anywhere unvetted.
    """

    sp_entity_id: str
    acs_url: str
    in_response_to: str | None
    relay_state: str | None


@dataclass(frozen=True)
class ProxyRestriction:
    """A municipal IdP's limits on assertions the broker issues on the strength of its assertion (SAML Core
    §2.5.1.6): at most ``count`` further indirections (None: no limit) and, when ``audiences`` is not empty,
    only to those audiences."""

    count: int | None
    audiences: tuple[str, ...] = ()

    def allows(self, audience: str) -> bool:
        """Whether an assertion for ``audience`` may be issued on the strength of the restricted one (a count of
        zero allows none; the IdP's assertion is refused before that)."""
        return self.count != 0 and (not self.audiences or audience in self.audiences)

    def onward(self) -> ProxyRestriction:
        """The restriction the broker's own assertion must carry: a count one less (§2.5.1.6: "at most one less
        than this value"), the same audiences."""
        return ProxyRestriction(None if self.count is None else max(self.count - 1, 0), self.audiences)

    def to_fields(self) -> dict[str, str]:
        """As kept in a session's upstream record (flat strings; audiences are URIs, which hold no newline)."""
        return {"proxy_count": "" if self.count is None else str(self.count),
                "proxy_audiences": "\n".join(self.audiences)}

    @classmethod
    def from_fields(cls, fields: Mapping[str, str] | None) -> ProxyRestriction | None:
        """The restriction a session's upstream record keeps, or None when its assertion had none."""
        if not fields or "proxy_count" not in fields:
            return None
        count = fields["proxy_count"]
        audiences = fields.get("proxy_audiences", "")
        return cls(int(count) if count else None, tuple(audiences.split("\n")) if audiences else ())
