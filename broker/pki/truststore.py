"""Trust domains: the preloaded trust material of one municipality (or of an ad-hoc CLI check).

Built once at start-up: certificates parsed, the verifier's :class:`Store`
constructed, configured CRL files verified and indexed. Requests only read
these objects.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from cryptography import x509
from cryptography.x509.verification import Store

from broker.config.schema import (
    CertificateLogin,
    IdentityRule,
    MunicipalityConfig,
    OrganizationSource,
    RevocationConfig,
)
from broker.config.yamlsource import KeyPath
from broker.errors import CertificateRejected
from broker.model import KNOWN_LOAS, Loa, issuer_der
from broker.pki.algorithms import weak_key_reason, weak_signature_reason
from broker.pki.identity import named_organization
from broker.pki.issuance import directly_issued
from broker.pki.revocation.crls import CrlSource, VerifiedCrl, verify_crl
from broker.pki.revocation.engine import RevocationPolicy
from broker.pki.revocation.http import FetchLimits
from broker.pki.revocation.ocsp import responder_urls


@dataclass(frozen=True)
class TrustDomain:
    """Everything needed to validate a certificate of one issuer family.

    ``revocation`` is None when revocation checking is explicitly off (``mode: none``).
    ``policies`` maps accepted policy OIDs to their LoA; ``identity`` is the
    rule that maps a certificate to a user. Both are absent for the stateless
    ``broker cert verify``, which checks the path only.
    """

    id: str
    anchors: tuple[x509.Certificate, ...]
    intermediates: tuple[x509.Certificate, ...]
    store: Store
    max_chain_depth: int
    revocation: RevocationPolicy | None
    policies: Mapping[str, Loa] = field(default_factory=lambda: MappingProxyType({}))
    identity: IdentityRule | None = None
    status: str = "active"
    organization_number: str = ""
    organization_from: OrganizationSource = "none"   # certificate.organization_from

    def issuing_names(self) -> set[bytes]:
        """DER subject names of every CA that may issue this domain's leaf certificates."""
        return {c.subject.public_bytes() for c in (*self.anchors, *self.intermediates)}

    def named_organization(self, cert: x509.Certificate) -> str | None:
        """The organisation number ``cert`` names where this municipality's configuration looks
        (``certificate.organization_from``; None for ``none``). Raises the identity rule's refusal of an HSA-id."""
        if self.organization_from == "none" or self.identity is None:
            return None
        return named_organization(cert, self.organization_from, self.identity)


def build_domain(
    domain_id: str,
    anchors: Sequence[x509.Certificate],
    intermediates: Sequence[x509.Certificate] = (),
    revocation: RevocationPolicy | None = None,
    max_chain_depth: int = 4,
) -> TrustDomain:
    """A path-only domain (no certificate policies, no identity rule), e.g. for ``broker cert verify``."""
    return TrustDomain(
        id=domain_id,
        anchors=tuple(anchors),
        intermediates=tuple(intermediates),
        store=Store(list(anchors)),
        max_chain_depth=max_chain_depth,
        revocation=revocation,
    )


def revocation_policy(config: RevocationConfig, cas: Sequence[x509.Certificate],
                      crl_files: Sequence[tuple[Path, x509.CertificateRevocationList]] = ()
                      ) -> tuple[RevocationPolicy, list[tuple[int, str]]]:
    """The policy for ``config``, its CRL files verified against ``cas`` now (index, problem) if they fail."""
    limits = FetchLimits(config.crl.connect_timeout.seconds, config.crl.timeout.seconds, config.crl.max_bytes)
    margin = config.crl.refresh_margin.timedelta
    sources: list[CrlSource] = []
    preloaded: list[tuple[str, VerifiedCrl]] = []
    problems: list[tuple[int, str]] = []
    for index, (path, crl) in enumerate(crl_files):
        source = CrlSource(str(path), "file", tuple(cas), limits, margin)
        sources.append(source)
        try:
            preloaded.append((source.id, verify_crl(crl, cas, path)))
        except ValueError as exc:
            problems.append((index, str(exc)))
    sources += [CrlSource(url, "url", tuple(cas), limits, margin) for url in config.crl.urls]
    return RevocationPolicy(config, tuple(sources), tuple(preloaded), tuple(cas)), problems


def municipality_domain(
    municipality_id: str, config: MunicipalityConfig, cl: CertificateLogin
) -> tuple[TrustDomain | None, list[tuple[KeyPath, str]]]:
    """The domain of a configured municipality, or the problems (key path, message) that prevent it.

    Checks what needs all of the municipality's certificates at once: every CA's key is strong enough
    (:func:`weak_key_reason`: no RSA under 2048 bits, trust anchors included), every
    intermediate is signed by a configured CA with an accepted algorithm, and
    every CRL verifies against its issuer (:func:`verify_crl`).
    """
    anchors, intermediates = cl.anchors(), cl.intermediate_certificates()
    cas = (*anchors, *intermediates)
    problems: list[tuple[KeyPath, str]] = []
    # a CA's key signs every certificate below it: a weak one (RSA under 2048 bits) makes each of them forgeable,
    # the trust anchor's most of all (its self-signature proves nothing, its key is what trust rests on). The path
    # verifier refuses such chains at every login; refused here, the configuration says so at once
    for key, files in (("trust_anchors", cl.trust_anchors), ("intermediates", cl.intermediates)):
        for fi, f in enumerate(files):
            for cert in f.certificates:
                weak_key = weak_key_reason(cert)
                if weak_key:
                    problems.append((("certificate", key, fi), f"{cert.subject.rfc4514_string()}: {weak_key}"))
    for fi, f in enumerate(cl.intermediates):
        for cert in f.certificates:
            who = cert.subject.rfc4514_string()
            issuers = [c for c in cas if c.subject == cert.issuer and c is not cert]
            if not any(directly_issued(cert, c) for c in issuers):
                problems.append((("certificate", "intermediates", fi),
                                 f"{who}: no configured CA ({cert.issuer.rfc4514_string()}) signed this "
                                 "intermediate; add its issuer to trust_anchors or intermediates"))
            weak = weak_signature_reason(cert)
            if weak:
                problems.append((("certificate", "intermediates", fi), f"{who}: {weak}"))
    policy = None
    if cl.revocation.mode == "check" and "crl" not in cl.revocation.methods:
        # OCSP alone: every CA below the root must name a responder, or every login would fail
        for fi, f in enumerate(cl.intermediates):
            for cert in f.certificates:
                if not responder_urls(cert):
                    problems.append((("certificate", "revocation", "methods"),
                                     f"methods has no crl, but intermediate {cert.subject.rfc4514_string()} "
                                     f"(intermediates[{fi}]) names no OCSP responder; add crl to methods"))
    if cl.revocation.mode == "check":
        policy, crl_problems = revocation_policy(cl.revocation, cas,
                                                 [(f.path, f.crl) for f in cl.revocation.crl.files])
        problems += [(("certificate", "revocation", "crl", "files", i), message) for i, message in crl_problems]
    if problems:
        return None, problems
    domain = TrustDomain(
        id=municipality_id,
        anchors=anchors,
        intermediates=intermediates,
        store=Store(list(anchors)),
        max_chain_depth=cl.max_chain_depth,
        revocation=policy,
        policies=MappingProxyType({p.oid: KNOWN_LOAS[p.loa] for p in cl.policies}),
        identity=cl.identity,
        status=config.status,
        organization_number=config.organization_number,
        organization_from=cl.organization_from,
    )
    return domain, []


class TrustIndex:
    """Finds the trust domain of a certificate by its issuer name (and, for a CA that issues to several
    municipalities, by the organisation the certificate names). Immutable once built."""

    __slots__ = ("_by_issuer", "_domains")
    _domains: Mapping[str, TrustDomain]
    _by_issuer: Mapping[bytes, tuple[TrustDomain, ...]]

    def __init__(self, domains: Iterable[TrustDomain]) -> None:
        by_id = MappingProxyType({d.id: d for d in domains})
        by_name: dict[bytes, tuple[TrustDomain, ...]] = {}
        for d in by_id.values():
            for name in d.issuing_names():
                by_name[name] = (*by_name.get(name, ()), d)
        for sharing in by_name.values():
            alone = [d.id for d in sharing if d.organization_from == "none"]
            if len(sharing) > 1 and alone:  # the loader says so, with file and line (broker.config.loader)
                raise ValueError(f"a CA of {', '.join(d.id for d in sharing)} issues to several municipalities, "
                                 f"but {', '.join(alone)} does not say how its certificates name it")
        object.__setattr__(self, "_domains", by_id)
        object.__setattr__(self, "_by_issuer", MappingProxyType(by_name))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"TrustIndex is immutable (cannot set {name})")

    @property
    def domains(self) -> Mapping[str, TrustDomain]:
        return self._domains

    def _written_otherwise(self, issuer: x509.Name) -> str:
        """Why an issuer name that matches no configured CA's name as encoded may look as if it did: a configured
        CA with the same name after RFC 4518 string preparation (other string types, letter case, spacing), which
        RFC 5280 §7.1 counts as the same name. The path validator (cryptography's) compares names as encoded, so
        such a certificate has no path: a deviation inherited from it (docs/standards.md), named here so the operator
        sees the cause."""
        wanted = _prepared(issuer)
        for domain in self._domains.values():
            for ca in (*domain.anchors, *domain.intermediates):
                if _prepared(ca.subject) == wanted:
                    return (f": the configured CA {ca.subject.rfc4514_string()} of {domain.id} has this name in other "
                            "string types, letter case or spacing (RFC 5280 §7.1 calls them the same name; the path "
                            "validator compares names as encoded, so the CA must write its name in the certificates "
                            "it issues as its own certificate does)")
        return ""

    def for_issuer(self, cert: x509.Certificate) -> TrustDomain:
        """The domain whose configured CA issued ``cert`` (by name: the path must still verify against its
        anchors). Of the municipalities a CA issues to, the one whose organisation number the certificate names
        (:meth:`TrustDomain.named_organization`); a municipality that says where its certificates name it
        gets only those, even from a CA of its own.

        Raises ``issuer_unknown``; the identity rule's refusal of an HSA-id that should name the organisation
        (``identity_missing``, ``identity_invalid``); or ``organization_mismatch``.
        """
        candidates = self._by_issuer.get(issuer_der(cert), ())
        if not candidates:
            raise CertificateRejected("issuer_unknown", f"issuer {cert.issuer.rfc4514_string()}"
                                      + self._written_otherwise(cert.issuer))
        if len(candidates) == 1 and candidates[0].organization_from == "none":
            return candidates[0]
        named: list[TrustDomain] = []
        found: dict[str, str] = {}     # what the certificate names, by where it was looked for
        refused: list[CertificateRejected] = []
        for domain in candidates:
            try:
                number = domain.named_organization(cert)
            except CertificateRejected as exc:  # the HSA-id itself is no good: that is the reason to give
                refused.append(exc)
                continue
            found[domain.organization_from] = number or "none"
            if number == domain.organization_number:
                named.append(domain)
        if len(named) == 1:
            return named[0]
        if refused and all(number == "none" for number in found.values()):
            raise refused[0]  # nothing names an organisation: the refused HSA-id is why
        looked = ", ".join(f"{d.id} ({d.organization_number}, by {d.organization_from})" for d in candidates)
        names = ", ".join(f"{number} by {where}" for where, number in sorted(found.items()))
        raise CertificateRejected("organization_mismatch", f"issuer {cert.issuer.rfc4514_string()} issues to "
                                                           f"{looked}; the certificate names {names}")


def _prepared(name: x509.Name) -> tuple[tuple[tuple[str, str], ...], ...]:
    """A name as RFC 4518 string preparation roughly leaves it, for comparing: each RDN's attributes (sorted), each
    value case-folded with its white space collapsed, the string type ignored."""
    return tuple(tuple(sorted((a.oid.dotted_string, " ".join(str(a.value).casefold().split())) for a in rdn))
                 for rdn in name.rdns)
