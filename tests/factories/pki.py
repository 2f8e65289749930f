"""A PKI factory that can build every acceptance and rejection case.

Built on the demo's certificate builder (broker.demo.certificates); adds what
production code must never do, such as SHA-1 signatures (cryptography refuses
to make them, so pyOpenSSL's legacy API re-signs a certificate here).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.verification import Store

from broker.clock import FixedClock
from broker.config.schema import CrlConfig, IdentityRule, RevocationConfig
from broker.demo.certificates import CertificateAuthority, Issued, LeafProfile
from broker.model import KNOWN_LOAS
from broker.pki.path import VerifiedPath, verify_path
from broker.pki.revocation.crls import CrlStore
from broker.pki.revocation.engine import RevocationChecker, RevocationOutcome, RevocationPolicy
from broker.pki.revocation.http import HttpFetcher
from broker.pki.truststore import TrustDomain, revocation_policy

POLICY_LOA3 = "2.999.1.3"
POLICY_LOA2 = "2.999.2.2"
HSA_ID = "SE2120001009-anna"
PERSONNUMMER = "191212121212"


def sha1_resign(cert: x509.Certificate, issuer_key: object) -> x509.Certificate:
    """The same certificate, re-signed with SHA-1 (pyOpenSSL's deprecated API; tests only)."""
    from OpenSSL import crypto

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        legacy = crypto.X509.from_cryptography(cert)
        legacy.sign(crypto.PKey.from_cryptography_key(issuer_key), "sha1")  # type: ignore[arg-type]
        return legacy.to_cryptography()


@dataclass
class Hierarchy:
    """A municipality's root and issuing CA at instant ``now``."""

    now: dt.datetime
    root: CertificateAuthority
    issuing: CertificateAuthority
    policies: dict[str, str] = field(default_factory=lambda: {POLICY_LOA3: "loa3", POLICY_LOA2: "loa2"})

    @classmethod
    def build(cls, now: dt.datetime, name: str = "Kommun A", *, key: str = "ec256") -> Hierarchy:
        root = CertificateAuthority.root(f"{name} Test Root CA", now, organization=name, key=key)
        issuing = root.subordinate(f"{name} Test Person CA", organization=name)
        return cls(now, root, issuing)

    def profile(self, **overrides: object) -> LeafProfile:
        base = LeafProfile(common_name="Anna Andersson", given_name="Anna", surname="Andersson",
                           serial_number=HSA_ID, policies=(POLICY_LOA3,))
        return replace(base, **overrides)  # type: ignore[arg-type]

    def leaf(self, **overrides: object) -> Issued:
        """A client certificate from the issuing CA; defaults are valid for login."""
        return self.issuing.issue(self.profile(**overrides))

    def sha1_leaf(self) -> x509.Certificate:
        return sha1_resign(self.leaf().certificate, self.issuing.key)

    def domain(self, *, identity: IdentityRule | None = None,
               crls: Sequence[x509.CertificateRevocationList] | None = None,
               status: str = "active", max_chain_depth: int = 4,
               intermediates: Sequence[x509.Certificate] | None = None) -> TrustDomain:
        """A trust domain as the loader would build it for this hierarchy."""
        inter = tuple(intermediates) if intermediates is not None else (self.issuing.certificate,)
        cas = (self.root.certificate, *inter)
        return TrustDomain(
            id="kommun-a",
            anchors=(self.root.certificate,),
            intermediates=inter,
            store=Store([self.root.certificate]),
            max_chain_depth=max_chain_depth,
            revocation=crl_policy(cas, crls) if crls is not None else None,
            policies=MappingProxyType({oid: KNOWN_LOAS[loa] for oid, loa in self.policies.items()}),
            identity=identity or IdentityRule(type="hsa_id"),
            status=status,
        )

    def fresh_crls(self) -> list[x509.CertificateRevocationList]:
        return [self.issuing.crl(), self.root.crl()]

    def renamed_issuing(self, name: str = "Kommun A Test Person CA v2") -> CertificateAuthority:
        """A second issuing CA with the issuing CA's key under another name (a renamed re-issue): its
        certificates, CRLs and OCSP answers verify with the same key, and must still not answer for the
        first CA's certificates (RFC 5280 §6.3.3 (b)(1), RFC 6960 §4.1.1)."""
        original = self.issuing.certificate
        subject = x509.Name([x509.NameAttribute(x509.NameOID.COUNTRY_NAME, "SE"),
                             x509.NameAttribute(x509.NameOID.COMMON_NAME, name)])
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(original.issuer)
                   .public_key(original.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(original.not_valid_before_utc).not_valid_after(original.not_valid_after_utc))
        for extension in original.extensions:
            builder = builder.add_extension(extension.value, extension.critical)
        return replace(self.issuing, certificate=builder.sign(self.root.key, hashes.SHA256()), revoked={})


def crl_policy(cas: Sequence[x509.Certificate], crls: Sequence[x509.CertificateRevocationList],
               **config: object) -> RevocationPolicy:
    """A CRL-only policy over ``crls`` (as configured files, verified now; a bad one raises ValueError)."""
    revocation = RevocationConfig(mode="check", methods=("crl",), crl=CrlConfig(distribution_points=False),
                                  **config)  # type: ignore[arg-type]
    # Each CRL gets a location of its own (named after its content): a checker holds sources by location,
    # so two domains registered with one checker must not both claim "crl-0".
    files = [(f"/nonexistent/crl-{i}-{hashlib.sha256(c.public_bytes(Encoding.DER)).hexdigest()[:16]}.pem", c)
             for i, c in enumerate(crls)]
    policy, problems = revocation_policy(revocation, cas, files)  # type: ignore[arg-type]
    if problems:
        raise ValueError("; ".join(message for _, message in problems))
    return policy


def checker(now: dt.datetime, *, online: bool = False) -> RevocationChecker:
    """A revocation checker on a fixed clock, without a shared store or background thread."""
    clock = FixedClock(now)
    fetcher = HttpFetcher() if online else None
    return RevocationChecker(clock, crls=CrlStore(clock, fetcher=fetcher, shared=None), fetcher=fetcher,
                             shared=None, refresh_interval=0)


def verify_with_revocation(leaf: x509.Certificate, domain: TrustDomain, now: dt.datetime,
                           presented: Sequence[x509.Certificate] = ()) -> tuple[VerifiedPath, RevocationOutcome]:
    """The path, then revocation under the domain's policy: what `broker cert verify --crl` does."""
    path = verify_path(leaf, domain, now, presented)
    check = checker(now)
    if domain.revocation is not None:
        check.register(domain.revocation)
    return path, check.check(path.chain, domain.revocation)
