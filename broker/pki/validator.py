"""Certificate login validation through the configured municipalities.

Order of checks (cheap and most explanatory first): issuer → municipality and
its status; the path (algorithms, key, validity, purpose, chain); the
municipality's certificate profile (the policy OIDs valid on the path → LoA,
identity rule); revocation last, because it is the only step that may need fresh data.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from broker.clock import Clock
from broker.config.schema import IdentityRule
from broker.errors import CertificateRejected
from broker.lru import LruCache
from broker.model import CertificateFacts, Identity, Loa
from broker.pki.identity import extract_identity
from broker.pki.issuance import directly_issued
from broker.pki.path import PathCache, VerifiedPath, first_unrevoked
from broker.pki.policy import ANY_POLICY, valid_policies
from broker.pki.revocation.engine import RevocationChecker, RevocationOutcome
from broker.pki.truststore import TrustDomain, TrustIndex


@dataclass(frozen=True)
class ValidatedCertificate:
    """A certificate that passed every check, with what it proves."""

    municipality_id: str
    identity: Identity
    loa: Loa
    policy_oid: str
    facts: CertificateFacts
    path: VerifiedPath
    revocation: RevocationOutcome


@dataclass(frozen=True)
class _Profile:
    policy_oid: str
    loa: Loa
    identity: Identity


def certificate_policies(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(p.policy_identifier.dotted_string for p in ext)


def assurance_level(chain: Sequence[x509.Certificate], domain: TrustDomain) -> tuple[str, Loa]:
    """The LoA the leaf (``chain[0]``) proves in ``domain`` on its verified ``chain`` (leaf first, trust anchor
    last): the highest of the accepted policies.

    The LoA comes from the policy, never from the issuer's name (REFERENCE), and a configured policy counts
    only when it is valid on the path (RFC 5280 §6.1, :func:`broker.pki.policy.valid_policies`): valid for the
    leaf as the trust anchor's domain names it, or asserted by the leaf itself where a branch of anyPolicy
    reaches the leaf (the leaf and every CA above it assert anyPolicy). So a CA that does not assert the leaf's
    policy caps the LoA, and a CA's policy mapping lets the leaf's own OID stand for the configured one it maps
    from.
    """
    found = certificate_policies(chain[0])
    path = valid_policies(chain)

    def valid(oid: str) -> bool:
        return oid in path.valid or (ANY_POLICY in path.valid and oid in found)

    # the leaf's order first, then what mappings named: of equal LoAs, the first listed wins as before
    candidates = [*found, *sorted(path.valid - set(found))]
    accepted = [(oid, domain.policies[oid]) for oid in candidates if oid in domain.policies and valid(oid)]
    if not accepted:
        shown = ", ".join(found) if found else "none"
        blocked = [path.explain(oid) for oid in found if oid in domain.policies]
        # none of the certificate's policies configured: name the configured ones, so that a mistyped OID, or the
        # OID of the CA's other policy (a level-2 card under a level-3 configuration), shows beside the card's
        configured = [] if blocked else [f"the municipality accepts {', '.join(domain.policies)}"]
        raise CertificateRejected("policy_not_accepted", "; ".join(
            (f"certificate policies: {shown}", *configured, *blocked, *path.notes)))
    return max(accepted, key=lambda pair: pair[1].rank)


def trust_digest(domain: TrustDomain) -> str:
    """A digest of what a certificate validated in ``domain`` proves under its configuration: its CAs, chain depth,
    accepted policies and their LoA, identity rule, organisation rule and revocation settings. An SSO session keeps
    the digest it was validated under (:attr:`broker.session.sessions.SsoSession.trust`): when a reload changes it
    (a CA replaced or removed, a policy's LoA lowered, revocation turned on), the session's certificate is
    validated again on its next use (:meth:`broker.flow.certificate.CertificateStep.still_valid`) rather than once
    its revocation answer runs out, which may be days later (a CRL's nextUpdate) or never (``mode: none``). The same
    on every instance with the same configuration: made of values, not of file paths."""
    sha256 = hashes.SHA256()
    revocation = domain.revocation.config if domain.revocation is not None else None
    identity = domain.identity
    described = {
        "anchors": sorted(c.fingerprint(sha256).hex() for c in domain.anchors),
        "intermediates": sorted(c.fingerprint(sha256).hex() for c in domain.intermediates),
        "max_chain_depth": domain.max_chain_depth,
        "policies": sorted((oid, loa.uri) for oid, loa in domain.policies.items()),
        "identity": [identity.type, identity.source, identity.pattern] if identity is not None else None,
        "organization": [domain.organization_number, domain.organization_from],
        "revocation": [revocation.mode, list(revocation.methods), revocation.failure]
        if revocation is not None else None,
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()


class CertificateValidator:
    """Validates client certificates against the configured municipalities."""

    def __init__(self, trust: TrustIndex, clock: Clock, revocation: RevocationChecker) -> None:
        self._trust = trust
        self._clock = clock
        self.revocation = revocation
        # one cache per configuration: a reload builds a new validator, so nothing outlives its trust anchors
        self._paths = PathCache()
        # what a leaf proves in a domain (policy → LoA, identity) depends on the leaf, the path it was verified
        # on (the CAs' certificate policies, RFC 5280 §6.1) and the domain's rules, fixed for this validator:
        # worked out once per path
        self._profiles: LruCache[tuple[str, tuple[bytes, ...]], _Profile] = LruCache(10_000)
        for domain in trust.domains.values():
            if domain.revocation is not None:
                revocation.register(domain.revocation)
        self._trust_digests = {domain.id: trust_digest(domain) for domain in trust.domains.values()}

    def trust_digest(self, municipality_id: str) -> str | None:
        """:func:`trust_digest` of the municipality's trust domain as configured now; None when it has none (removed,
        or it logs in through its own IdP)."""
        return self._trust_digests.get(municipality_id)

    def domain_of(self, leaf: x509.Certificate, presented: Sequence[x509.Certificate] = ()) -> TrustDomain:
        """The municipality whose configured CA issued ``leaf``, by issuer name.

        The leaf's issuer must be one of the municipality's configured CAs. Intermediates the client sent
        (``presented``) never select a municipality: otherwise any issuing CA under a configured root (under
        SITHS e-id Root CA v2, the sibling Function, Mobile and level-2 CAs) would be accepted as soon as a
        browser sends it along. They only help build the path (:meth:`validate`). Names only choose where to
        look; the path must still verify against that domain's anchors.
        """
        del presented  # kept in the signature: callers pass what the client sent; it does not choose
        return self._trust.for_issuer(leaf)

    def claimed_identity(self, leaf: x509.Certificate,
                         presented: Sequence[x509.Certificate] = ()) -> Identity | None:
        """Whose certificate a refused (or not yet validated) ``leaf`` is, for the audit trail: the identity its
        municipality's rule reads from it, when one of that municipality's configured CAs signed it (a revoked,
        expired or wrong-purpose card); None when none did (another key under a configured CA's name, an unknown
        issuer: text anyone could have chosen) or the rule reads no identity from it."""
        try:
            domain = self.domain_of(leaf, presented)
        except CertificateRejected:
            return None
        if domain.identity is None or not any(ca.subject == leaf.issuer and directly_issued(leaf, ca)
                                              for ca in (*domain.intermediates, *domain.anchors)):
            return None
        try:
            return extract_identity(leaf, domain.identity, domain.id, self._clock.now().date())
        except CertificateRejected:
            return None

    def validate(self, leaf: x509.Certificate,
                 presented: Sequence[x509.Certificate] = ()) -> ValidatedCertificate:
        """Return what the certificate proves or raise :class:`CertificateRejected`.

        ``presented``: intermediates the client sent (through a trusted proxy's chain header), untrusted
        path-building hints next to the municipality's configured intermediates.
        """
        domain = self.domain_of(leaf, presented)
        if domain.status == "suspended":
            raise CertificateRejected("municipality_suspended", f"municipality {domain.id!r} is suspended",
                                      params={"municipality": domain.id})
        if domain.identity is None:  # pragma: no cover - municipality domains always have a rule
            raise RuntimeError(f"domain {domain.id!r} has no identity rule")
        now = self._clock.now()
        ranked = self._ranked(self._paths.verify(leaf, domain, now, presented), domain, domain.identity,
                              now.date())
        # nearly always one path: a second only where a CA has two certificates under one name
        (path, profile), revocation = first_unrevoked(
            ranked, lambda candidate: self.revocation.check(candidate[0].chain, domain.revocation))
        return ValidatedCertificate(
            municipality_id=domain.id,
            identity=profile.identity,
            loa=profile.loa,
            policy_oid=profile.policy_oid,
            facts=CertificateFacts.of(leaf),  # kept per certificate by CertificateFacts itself
            path=path,
            revocation=revocation,
        )

    def _ranked(self, paths: Sequence[VerifiedPath], domain: TrustDomain, rule: IdentityRule,
                today: dt.date) -> list[tuple[VerifiedPath, _Profile]]:
        """The valid paths on which the municipality's profile holds, the highest LoA the leaf proves on them
        first (equals in the verifier's order: its own choice first); the first path's refusal when the profile
        holds on none. A CA certificate re-issued with fewer certificatePolicies must not cap, or refuse, a card
        that another certificate of the same CA carries at its full LoA (RFC 5280 §6.1: any valid path)."""
        ranked: list[tuple[VerifiedPath, _Profile]] = []
        refusal: CertificateRejected | None = None
        for path in paths:
            try:
                ranked.append((path, self._profile(path, domain, rule, today)))
            except CertificateRejected as exc:
                refusal = refusal or exc
        if not ranked:
            assert refusal is not None  # there is always at least one path
            raise refusal
        ranked.sort(key=lambda pair: -pair[1].loa.rank)  # stable: equals keep their order
        return ranked

    def _profile(self, path: VerifiedPath, domain: TrustDomain, rule: IdentityRule, today: dt.date) -> _Profile:
        """The municipality's certificate profile applied to the path's leaf; only successes are kept (a refusal
        is worked out again each time, so its detail is always fresh). Kept per path, not per leaf: the same
        card under another intermediate (a cross-certificate, a re-issued CA) may be worth another LoA."""
        key = (domain.id, path.fingerprints)
        profile = self._profiles.get(key)
        if profile is None:
            policy_oid, loa = assurance_level(path.chain, domain)
            identity = extract_identity(path.chain[0], rule, domain.id, today)
            profile = _Profile(policy_oid, loa, identity)
            self._profiles.put(key, profile)
        return profile

