"""RFC 5280 path validation, wrapping ``cryptography.x509.verification``.

cryptography's verifier API is marked unstable; this module is the only one
that touches it. It also does what the verifier leaves to us (REFERENCE:
"What cryptography's verifier leaves to us"): key strength of the leaf,
the login purpose rules (EKU, key usage) and algorithm floors with precise
reasons. Revocation is :mod:`broker.pki.revocation`'s.

Deliberate deviations from cryptography's webpki defaults, each for a reason:

* ``subjectAltName`` may be absent on the end-entity certificate: many real
  SITHS and Efos client certificates have none (the verifier requires one by
  default).
* CA certificates may carry policyMappings, policyConstraints and
  inhibitAnyPolicy, critical or not: the verifier does no policy processing,
  :mod:`broker.pki.policy` does it over the verified path (here, for every
  path: a path it finds invalid is refused, also where no municipality's
  policy list is asked, as in ``broker cert verify``).

What the verifier leaves undone for name constraints (RFC 5280 §4.2.1.10), done
here over the verified path: directoryName constraints (the verifier ignores them
when not critical and stops at a critical one with a "fatal error": such a CA's
paths are built through a stand-in, see :func:`_build_under_directory_constraints`)
and rfc822Name constraints on the subject's emailAddress of a certificate without
subjectAltName (the verifier checks alternative names only).

Also deviating from webpki for RFC 5280's path validation: a CA certificate's basicConstraints need not be marked
critical (PKITS 4.6.4), a CA certificate may lack keyUsage (§6.1.4 (n) checks keyCertSign where it is present),
and an end-entity certificate may lack authorityKeyIdentifier (§4.2.1.1 binds the CA).
Kept from webpki, deliberately: an authorityKeyIdentifier marked critical, on a CA certificate or a login
certificate, is refused (§4.2.1.1: "Conforming CAs MUST mark this extension as non-critical"; a relying party may
process one, but a CA that marks it critical is misissuing, and nothing is gained by accepting it), as
``chain_invalid`` with a detail that names the certificate and the rule.

Inherited from the verifier and not worked around: names are compared as encoded, not after RFC 4518 string
preparation (§7.1), so a certificate whose issuer name differs from its CA's subject in string types, letter case
or spacing has no path (``issuer_unknown``, whose detail names the CA it resembles); a validity date before 2050
written as GeneralizedTime is refused (§4.1.2.5 has CAs write UTCTime; PKITS 4.2.4 accepts it). And (building paths
is its job): a self-issued CA certificate
(a key rollover: subject and issuer the same CA) counts against a pathLenConstraint above it, which RFC 5280
§4.2.1.9 and §6.1.4 (l) do not count, so root -> CA (pathLen 0) -> its rollover certificate -> leaf is refused
as ``chain_invalid``. Readiness's sample certificate (``sample.certificate``) shows it before go-live.

docs/standards.md lists these with the broker's other departures from the standards.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from broker.errors import CertificateRejected
from broker.lru import LruCache, by_identity
from broker.model import certificate_der
from broker.pki.algorithms import weak_key_reason, weak_signature_reason
from broker.pki.issuance import directly_issued
from broker.pki.naming import describe, is_ca
from broker.pki.policy import valid_policies
from broker.pki.truststore import TrustDomain


class _PolicyMappings(x509.ExtensionType):
    """policyMappings (RFC 5280 §4.2.1.5), which cryptography has no extension type for.

    Only names the extension to the verifier: :class:`ExtensionPolicy` keys its rules by the type's ``oid``, and
    cryptography 50 takes any OID there (a verifier that knew only its own types would refuse this one when this
    module is imported, never silently). Never instantiated: a certificate's policyMappings reads as an
    :class:`x509.UnrecognizedExtension`, parsed by :mod:`broker.pki.policy`.
    """

    oid = ExtensionOID.POLICY_MAPPINGS

    def public_bytes(self) -> bytes:
        raise NotImplementedError("a name for the verifier's extension policy, never an extension value")


# A login certificate need not name a host (subjectAltName, checked by check_subject_name), may mark its EKU and
# its certificatePolicies critical as RFC 5280 §4.2.1.12 and §4.2.1.4 allow: check_purpose and broker.pki.policy
# process both. Any other unknown critical extension is still refused.
# Its authorityKeyIdentifier may be absent: §4.2.1.1's MUST is the issuing CA's duty, and the key identifier is only
# a hint for building the path, which the issuer's name and signature decide.
_EE_POLICY = (ExtensionPolicy.webpki_defaults_ee()
              .may_be_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, None)
              .may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, None)
              .may_be_present(x509.CertificatePolicies, Criticality.AGNOSTIC, None)
              .may_be_present(x509.AuthorityKeyIdentifier, Criticality.NON_CRITICAL, None))


def _asserts_ca(_policy: object, _cert: x509.Certificate, constraints: x509.BasicConstraints) -> None:
    """basicConstraints of a CA certificate on the path: cA must be asserted (RFC 5280 §6.1.4 (k)); its
    criticality is the issuing CA's duty (§4.2.1.9 "MUST mark the extension as critical"), which path validation
    does not check (PKITS 4.6.4: a non-critical basicConstraints is a valid path). The verifier checks cA and
    pathLenConstraint itself too; this keeps the cA rule whatever its own validator does."""
    if not constraints.ca:
        raise ValueError("basicConstraints.cA is not asserted in a CA certificate")


def _may_sign_certificates(_policy: object, _cert: x509.Certificate, usage: x509.KeyUsage | None) -> None:
    """keyUsage of a CA certificate on the path (the trust anchor's too, which the verifier judges as a CA): where
    present, keyCertSign must be asserted (RFC 5280 §6.1.4 (n)); absent, the path is not refused for it. Including
    one is the issuing CA's duty (§4.2.1.3 "MUST include"), which path validation does not check, as webpki does,
    and the configuration takes such a CA as a trust anchor or intermediate (:func:`broker.pki.naming.not_a_ca`)."""
    if usage is not None and not usage.key_cert_sign:
        raise ValueError("keyUsage.keyCertSign must be asserted in a CA certificate")


# certificatePolicies (critical or not, §4.2.1.4) and policyMappings, policyConstraints and inhibitAnyPolicy, which
# RFC 5280 §4.2.1.5, §4.2.1.11 and §4.2.1.14 have CAs mark critical (SHOULD, MUST, MUST), are processed by
# broker.pki.policy over the verified path: the verifier must not refuse them as unknown critical extensions. Any
# other unknown critical extension is still refused.
_CA_POLICY = (ExtensionPolicy.webpki_defaults_ca()
              .require_present(x509.BasicConstraints, Criticality.AGNOSTIC, _asserts_ca)
              .may_be_present(x509.KeyUsage, Criticality.AGNOSTIC, _may_sign_certificates)
              .may_be_present(x509.CertificatePolicies, Criticality.AGNOSTIC, None)
              .may_be_present(_PolicyMappings, Criticality.AGNOSTIC, None)
              .may_be_present(x509.PolicyConstraints, Criticality.AGNOSTIC, None)
              .may_be_present(x509.InhibitAnyPolicy, Criticality.AGNOSTIC, None))
_SHA256 = hashes.SHA256()
_Candidate = TypeVar("_Candidate")
_Outcome = TypeVar("_Outcome")


@dataclass(frozen=True)
class VerifiedPath:
    """A path from the leaf (first) to a trust anchor (last), checked at ``checked_at``; ``fingerprints``: the
    SHA-256 of each certificate on it, what identifies the path (worked out once per path, not per login)."""

    chain: tuple[x509.Certificate, ...]
    checked_at: dt.datetime
    fingerprints: tuple[bytes, ...]

    @property
    def not_after(self) -> dt.datetime:
        """The last instant the path is valid: the earliest notAfter among its certificates (RFC 5280 §6.1.3 (a)(2)
        checks the validity of each below the trust anchor), the anchor's included: §6.1.1 (d) leaves the anchor's
        own validity to the relying party, and cryptography's verifier refuses a path whose anchor has expired, so
        validating the path again after that instant refuses it. What the certificate proves ends there."""
        return min(c.not_valid_after_utc for c in self.chain)


def check_purpose(leaf: x509.Certificate) -> None:
    """The login purpose rules for the leaf (RFC 5280 §4.2.1.3, §4.2.1.12).

    EKU, when present, must contain id-kp-clientAuth; anyExtendedKeyUsage alone
    is not enough. Key usage must be present and include digitalSignature, which
    separates a SITHS card's authentication certificate from its signing one.
    """
    # a CA certificate checked as a user's (the CA file given by mistake) fails here too: said so, as the reason's
    # hint (the card's signing certificate) would mislead
    ca = CA_CERTIFICATE if is_ca(leaf) else ""
    try:
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        eku = None
    if eku is not None and ExtendedKeyUsageOID.CLIENT_AUTH not in eku:
        names = ", ".join(o._name if o._name != "Unknown OID" else o.dotted_string for o in eku)
        raise CertificateRejected("eku_not_client_auth", f"{ca}extended key usage is {names or 'empty'}")
    try:
        ku = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        raise CertificateRejected("key_usage_not_digital_signature", f"{ca}the certificate has no key usage") \
            from None
    if not ku.digital_signature:
        raise CertificateRejected("key_usage_not_digital_signature", f"{ca}key usage lacks digitalSignature")


CA_CERTIFICATE = "a CA certificate (basicConstraints cA=TRUE), not a user's: "
CA_CERTIFICATE_HINT = ("This is a CA certificate, not a user's: check a user's certificate (from the card, or the "
                       "municipality's sample), not the CA's.")


def operator_hint(exc: CertificateRejected, cert: x509.Certificate) -> str:
    """The hint for an operator checking ``cert`` (``broker cert``, a readiness sample): the reason's, except for a
    CA certificate refused by the purpose rules, where the reason's hint (the user picked the card's signing or
    another certificate) would send the operator after the wrong thing."""
    if exc.reason in ("eku_not_client_auth", "key_usage_not_digital_signature") and is_ca(cert):
        return CA_CERTIFICATE_HINT
    return exc.row.hint


def check_subject_name(leaf: x509.Certificate) -> None:
    """RFC 5280 §4.2.1.6: "If the subject field contains an empty sequence, then the issuing CA MUST include a
    subjectAltName extension that is marked as critical" (the verifier's own check of this is part of the
    subjectAltName rule that login certificates are exempt from)."""
    if len(leaf.subject) > 0:
        return
    try:
        critical = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical
    except x509.ExtensionNotFound:
        raise CertificateRejected("chain_invalid", "the subject is empty and there is no subjectAltName "
                                                   "(RFC 5280 §4.2.1.6)") from None
    if not critical:
        raise CertificateRejected("chain_invalid", "the subject is empty and the subjectAltName is not marked "
                                                   "critical (RFC 5280 §4.2.1.6)")


def check_validity(cert: x509.Certificate, now: dt.datetime) -> None:
    """RFC 5280 §4.1.2.5: valid from notBefore through notAfter, both inclusive."""
    if now < cert.not_valid_before_utc:
        raise CertificateRejected(
            "certificate_not_yet_valid",
            f"valid from {cert.not_valid_before_utc.isoformat()}",
            params={"not_before": cert.not_valid_before_utc.date().isoformat()},
        )
    if now > cert.not_valid_after_utc:
        raise CertificateRejected(
            "certificate_expired",
            f"expired at {cert.not_valid_after_utc.isoformat()}",
            params={"not_after": cert.not_valid_after_utc.date().isoformat()},
        )


def verify_path(
    leaf: x509.Certificate,
    domain: TrustDomain,
    now: dt.datetime,
    presented: Sequence[x509.Certificate] = (),
) -> VerifiedPath:
    """Validate ``leaf`` against ``domain`` at ``now``; raise :class:`CertificateRejected`.

    ``presented`` are untrusted intermediates sent along with the leaf; they are
    only path-building hints (the anchors decide). Revocation is established
    separately (:mod:`broker.pki.revocation`). The first valid path of :func:`verify_paths`.
    """
    return verify_paths(leaf, domain, now, presented)[0]


def verify_paths(
    leaf: x509.Certificate,
    domain: TrustDomain,
    now: dt.datetime,
    presented: Sequence[x509.Certificate] = (),
    limit: int = 8,
) -> tuple[VerifiedPath, ...]:
    """Every valid path from ``leaf`` to ``domain``'s anchors at ``now`` (at most ``limit``), the verifier's own
    choice first; raise :class:`CertificateRejected` when there is none.

    cryptography's verifier returns one path, the first its builder finds, and backtracks only over its own
    checks. Where a CA on that path has another certificate under the same name (a re-issued CA certificate with
    other certificatePolicies, a cross-certificate, a root in two generations), another path may be the one that
    holds: RFC 5280 §6.1 validates a path, and a relying party may use any valid one. What the broker checks
    after the verifier (name constraints, algorithms) or over the path (policy processing, RFC 5280 §6.1.3 (d))
    may then hold on one and fail on the other, so each alternative is found by leaving out, in turn, a
    certificate whose name has another certificate, and verifying again. So is a path the verifier never reached:
    at some certificates (critical directoryName constraints) it stops with a "fatal error" instead of trying the
    others of the same name, so when it finds no path, each configured certificate whose name has another is left
    out in turn before giving up. A path with
    no such name (nearly every card) costs nothing more; the search is bounded (``limit`` paths, twice as many
    verifier runs). The first refusal is the one raised when no path holds.
    """
    weak = weak_signature_reason(leaf)
    if weak:
        raise CertificateRejected("weak_signature_algorithm", weak)
    weak = weak_key_reason(leaf)
    if weak:
        raise CertificateRejected("weak_key", weak)
    check_validity(leaf, now)
    check_purpose(leaf)
    check_subject_name(leaf)
    # What the client sent along is judged only where it ends up on the path (below): an unrelated or legacy
    # SHA-1 certificate beside a good path is no reason to refuse (RFC 5280 §6.1 judges the path's certificates).
    candidates = [*domain.intermediates, *presented]
    named: dict[x509.Name, list[x509.Certificate]] = {}
    for cert in (*domain.anchors, *candidates):
        if cert not in named.setdefault(cert.subject, []):
            named[cert.subject].append(cert)
    shared = [cert for certs in named.values() if len(certs) > 1 for cert in certs]  # in a fixed order
    configured = {*domain.anchors, *domain.intermediates}
    paths: list[VerifiedPath] = []
    first_refusal: CertificateRejected | None = None
    seen: set[tuple[x509.Certificate, ...]] = set()
    tried: set[frozenset[x509.Certificate]] = set()
    pending: list[frozenset[x509.Certificate]] = [frozenset()]  # what to leave out, the verifier's own try first
    while pending and len(paths) < limit and len(tried) <= 2 * limit:
        left_out = pending.pop(0)
        if left_out in tried:
            continue
        tried.add(left_out)
        anchors = [a for a in domain.anchors if a not in left_out]
        if not anchors:
            continue
        store = domain.store if len(anchors) == len(domain.anchors) else Store(anchors)
        try:
            # only the first try's refusal may be the one raised: it alone is explained
            found = _build(leaf, domain, store, [c for c in candidates if c not in left_out], now,
                           explain=len(tried) == 1, anchors=anchors)
        except CertificateRejected as exc:
            first_refusal = first_refusal or exc
            # the verifier gives up at some certificates without trying the others of the same name (critical
            # directoryName constraints are a "fatal error"): which one stopped it is not said, so each configured
            # one is left out in turn (they come before what the client sent, which cannot hide them; a client
            # sending copies of a CA's name must not multiply the work of a refusal)
            pending += [left_out | {cert} for cert in shared if cert in configured and cert not in left_out]
            continue
        if found not in seen:
            seen.add(found)
            try:
                paths.append(_judged(found, now))
            except CertificateRejected as exc:
                first_refusal = first_refusal or exc
        pending += [left_out | {ca} for ca in found[1:] if ca in shared]
    if not paths:
        assert first_refusal is not None  # every chain found was refused
        raise first_refusal
    return tuple(paths)


def first_unrevoked(candidates: Sequence[_Candidate], check: Callable[[_Candidate], _Outcome]
                    ) -> tuple[_Candidate, _Outcome]:
    """The first of ``candidates`` (paths, best first) that ``check`` (revocation) does not refuse, with what it
    answered; the first refusal when it refuses them all. A revoked certificate of a CA ends the paths through
    it, not a card that another certificate of the same CA carries (RFC 5280 §6.1.3 (a)(3) judges each path)."""
    refusal: CertificateRejected | None = None
    for candidate in candidates:
        try:
            return candidate, check(candidate)
        except CertificateRejected as exc:
            refusal = refusal or exc
    if refusal is None:
        raise ValueError("no path to check")
    raise refusal


def _build(leaf: x509.Certificate, domain: TrustDomain, store: Store, candidates: Sequence[x509.Certificate],
           now: dt.datetime, *, explain: bool = True, anchors: Sequence[x509.Certificate] | None = None
           ) -> tuple[x509.Certificate, ...]:
    """The verifier's path from ``leaf`` through ``candidates`` to an anchor in ``store`` (``anchors``, the domain's
    by default), leaf first. Without ``explain``, a refusal is the verifier's own words (for a try whose refusal is
    never shown)."""
    if anchors is None:
        anchors = domain.anchors
    verifier = (
        PolicyBuilder()
        .store(store)
        .time(now)
        .max_chain_depth(domain.max_chain_depth)
        .extension_policies(ca_policy=_CA_POLICY, ee_policy=_EE_POLICY)
        .build_client_verifier()
    )
    try:
        return tuple(verifier.verify(leaf, list(candidates)).chain)
    except VerificationError as exc:
        if _DIRECTORY_NAME_FATAL in str(exc):
            built = _build_under_directory_constraints(leaf, domain, anchors, candidates, now)
            if built is not None:
                return built
        if not explain:
            raise CertificateRejected("chain_invalid", _verification_detail(exc)) from exc
        # The verifier refuses SHA-1 CAs and CAs with short keys with a generic message; name the real reason
        # when a CA that issued the leaf (or a CA above it) is weakly signed or holds a weak key.
        weak_ca = _weak_ca_on_name_path(leaf, candidates, now, domain.anchors)
        if weak_ca is not None:
            raise CertificateRejected(weak_ca[0], weak_ca[1]) from exc
        critical = _critical_aki_on_name_path(leaf, candidates, now, domain.anchors)
        if critical is not None:
            raise CertificateRejected("chain_invalid", critical) from exc
        out_of_date = _out_of_date_ca_on_name_path(leaf, candidates, now, domain.anchors)
        if out_of_date is not None:
            raise CertificateRejected("chain_invalid", out_of_date) from exc
        raise CertificateRejected("chain_invalid", _verification_detail(exc)) from exc


def _judged(chain: tuple[x509.Certificate, ...], now: dt.datetime) -> VerifiedPath:
    """``chain`` as a :class:`VerifiedPath` once what the verifier leaves undone holds on it."""
    for cert in chain[1:-1]:  # the anchor's self-signature carries no trust, so it is not judged
        weak = weak_signature_reason(cert)
        if weak:
            raise CertificateRejected("weak_signature_algorithm", f"{describe(cert)}: {weak}")
    for depth, ca in enumerate(chain[1:], start=1):  # runs inside PathCache: once per path, not per login
        constraints = _name_constraints(ca)
        if constraints is not None:
            _check_directory_name_constraints(chain[:depth], ca, constraints.value)
            _check_email_address_constraints(chain[:depth], ca, constraints.value)
    # RFC 5280 §6.1 policy processing is part of validating the path, whoever asks (a login, `broker cert verify`,
    # readiness): a CA mapping to or from anyPolicy, or an explicit policy required and none valid, makes the path
    # invalid whatever policies a municipality accepts; which valid policy gives which LoA is the validator's
    valid_policies(chain)
    return VerifiedPath(chain, now, tuple(c.fingerprint(_SHA256) for c in chain))


@dataclass(frozen=True)
class _KnownPaths:
    paths: tuple[VerifiedPath, ...]  # as first verified
    valid_from: dt.datetime          # the latest notBefore on any of them
    valid_until: dt.datetime         # the earliest notAfter on any of them


class PathCache:
    """Verified paths, so that a card seen before is not path-validated again on every login.

    What :func:`verify_paths` decides depends on the leaf, the untrusted intermediates sent with it, the
    domain's anchors and intermediates (fixed for the life of this cache: the validator owning it is rebuilt
    with the configuration), and the time, only through the validity periods on the paths. So a success is
    kept with the window in which every certificate on every path found is valid, and reused only inside it
    (RFC 5280 §6.1.3 (a)(2)); outside it, or for anything not seen before, the full validation runs.
    Refusals are never kept. Revocation is not part of this: it is checked on every login.
    """

    def __init__(self, max_entries: int = 10_000) -> None:
        # keyed by the certificates' DER (equal exactly when the certificates are), each encoded once per certificate
        # object (broker.model.certificate_der) and so hashed once: cryptography hashes a Certificate by walking
        # its parsed fields again at every lookup, a SHA-256 fingerprint costs four times that
        self._paths: LruCache[tuple[str, bytes, tuple[bytes, ...]], _KnownPaths] = LruCache(max_entries)

    def verify(self, leaf: x509.Certificate, domain: TrustDomain, now: dt.datetime,
               presented: Sequence[x509.Certificate] = ()) -> tuple[VerifiedPath, ...]:
        """:func:`verify_paths`, answered from the cache when the same paths were verified and are still in date."""
        key = (domain.id, certificate_der(leaf), tuple(certificate_der(c) for c in presented))
        known = self._paths.get(key)
        if known is not None and known.valid_from <= now <= known.valid_until:
            return tuple(replace(path, checked_at=now) for path in known.paths)
        paths = verify_paths(leaf, domain, now, presented)
        certs = [cert for path in paths for cert in path.chain]
        self._paths.put(key, _KnownPaths(paths, max(c.not_valid_before_utc for c in certs),
                                         min(c.not_valid_after_utc for c in certs)))
        return paths

    def __len__(self) -> int:
        return len(self._paths)


def _name_constraints(ca: x509.Certificate) -> x509.Extension[x509.NameConstraints] | None:
    try:
        return ca.extensions.get_extension_for_class(x509.NameConstraints)
    except x509.ExtensionNotFound:
        return None


def _subtrees(constraints: x509.NameConstraints, form: type[x509.GeneralName]) -> tuple[list[Any], list[Any]]:
    """The values of ``constraints``' permitted and excluded subtrees of one name form."""
    return ([s.value for s in constraints.permitted_subtrees or () if isinstance(s, form)],
            [s.value for s in constraints.excluded_subtrees or () if isinstance(s, form)])


def _constrained_by(below: Sequence[x509.Certificate]) -> Iterator[tuple[int, x509.Certificate]]:
    """The certificates ``below`` a CA on the path (leaf first, with their positions) its name constraints apply to:
    all but self-issued CA certificates (RFC 5280 §6.1.3 (b))."""
    return ((i, cert) for i, cert in enumerate(below) if i == 0 or cert.issuer != cert.subject)


def _check_directory_name_constraints(below: Sequence[x509.Certificate], ca: x509.Certificate,
                                      constraints: x509.NameConstraints) -> None:
    """Apply ``ca``'s directoryName constraints to each certificate ``below`` it on the path (leaf first): its
    subject, when not empty, and every directoryName of its subjectAltName must be within one of the permitted
    subtrees, if there are any, and within none of the excluded ones (RFC 5280 §4.2.1.10, §6.1.3 (b)-(c); one CA
    at a time, which is the intersection §6.1.4 (g) builds). Self-issued CA certificates are skipped (§6.1.3 (b)).

    A name is within a subtree when the subtree's relative distinguished names begin it (§4.2.1.10: "any name
    whose ... RDN sequence ... begins with" the subtree's), each attribute value compared as §7.1 has names compared:
    prepared as RFC 4518 prepares it (case folded, insignificant spaces removed, whichever string type), so that an
    excluded subtree is not left by writing a name in another case.
    cryptography's verifier does none of this: it ignores a non-critical extension's directory names and stops at
    a critical one (:func:`_build_under_directory_constraints` builds such a path)."""
    permitted, excluded = _subtrees(constraints, x509.DirectoryName)
    if not permitted and not excluded:
        return
    by = ca.subject.rfc4514_string()
    for position, cert in _constrained_by(below):
        names = [cert.subject] if len(cert.subject) > 0 else []
        with contextlib.suppress(x509.ExtensionNotFound):
            names += cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value \
                .get_values_for_type(x509.DirectoryName)
        # the leaf's subject is personal data: a refusal names the CA's subtrees, not the name
        who = "the certificate" if position == 0 else describe(cert)
        for name in names:
            if permitted and not any(_within(name, subtree) for subtree in permitted):
                raise CertificateRejected("chain_invalid", f"{who}: a directory name is outside every subtree "
                                                           f"{by} permits (RFC 5280 §4.2.1.10)")
            if excluded_by := next((subtree for subtree in excluded if _within(name, subtree)), None):
                raise CertificateRejected("chain_invalid", f"{who}: a directory name is within "
                                                           f"{excluded_by.rfc4514_string()!r}, which {by} excludes "
                                                           "(RFC 5280 §4.2.1.10)")


def _within(name: x509.Name, subtree: x509.Name) -> bool:
    prefix = subtree.rdns
    return len(name.rdns) >= len(prefix) and all(
        _prepared_rdn(rdn) == _prepared_rdn(part) for rdn, part in zip(name.rdns, prefix, strict=False))


def _prepared_rdn(rdn: x509.RelativeDistinguishedName) -> frozenset[tuple[x509.ObjectIdentifier, str | bytes]]:
    """An RDN as a set of attribute types and values prepared for comparison (RFC 5280 §7.1, RFC 4518 §2: NFKC,
    case folding, insignificant space handling); a value that is no string (a BIT STRING) as it is."""
    return frozenset((attribute.oid, " ".join(unicodedata.normalize("NFKC", attribute.value).casefold().split())
                      if isinstance(attribute.value, str) else attribute.value) for attribute in rdn)


# How cryptography's verifier stops at a CA certificate whose critical nameConstraints limit directory names
_DIRECTORY_NAME_FATAL = "unsupported directoryName constraint"
# The extensions a CA certificate may mark critical, as _CA_POLICY lets the verifier accept them (for a CA checked
# here in the verifier's place)
_CA_CRITICAL = {x509.BasicConstraints.oid, x509.KeyUsage.oid, x509.NameConstraints.oid,
                x509.CertificatePolicies.oid, ExtensionOID.POLICY_MAPPINGS, x509.PolicyConstraints.oid,
                x509.InhibitAnyPolicy.oid, x509.ExtendedKeyUsage.oid, x509.SubjectAlternativeName.oid}


def _directory_constrained(ca: x509.Certificate) -> bool:
    try:
        constraints = _name_constraints(ca)
    except ValueError:  # extensions cryptography cannot read (what the client sent along is anyone's bytes)
        return False
    return constraints is not None and constraints.critical and any(
        isinstance(s, x509.DirectoryName)
        for s in (*(constraints.value.permitted_subtrees or ()), *(constraints.value.excluded_subtrees or ())))


@by_identity(1024)
def _stand_in(ca: x509.Certificate) -> x509.Certificate:
    """A trust anchor for the verifier with ``ca``'s name, key, validity, pathLenConstraint and keyUsage, and its
    name constraints without the directory names (which the verifier cannot process). RFC 5280 §6.1.1 (d): a trust
    anchor is a name and a key (its signature is not checked, and is made with a key of its own here); what
    ``ca`` asserts beyond that is checked by :func:`_build_under_directory_constraints`."""
    basic = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    builder = (x509.CertificateBuilder().subject_name(ca.subject).issuer_name(ca.subject).public_key(
        ca.public_key())
        .serial_number(1).not_valid_before(ca.not_valid_before_utc).not_valid_after(ca.not_valid_after_utc)
        .add_extension(x509.BasicConstraints(ca=True, path_length=basic.path_length), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca.public_key()), critical=False))
    with contextlib.suppress(x509.ExtensionNotFound):
        builder = builder.add_extension(ca.extensions.get_extension_for_class(x509.KeyUsage).value, critical=True)
    constraints = ca.extensions.get_extension_for_class(x509.NameConstraints).value
    permitted = [s for s in constraints.permitted_subtrees or () if not isinstance(s, x509.DirectoryName)]
    excluded = [s for s in constraints.excluded_subtrees or () if not isinstance(s, x509.DirectoryName)]
    if permitted or excluded:
        builder = builder.add_extension(x509.NameConstraints(permitted or None, excluded or None), critical=True)
    return builder.sign(ec.generate_private_key(ec.SECP256R1()), _SHA256)


def _build_under_directory_constraints(leaf: x509.Certificate, domain: TrustDomain,
                                       anchors: Sequence[x509.Certificate], candidates: Sequence[x509.Certificate],
                                       now: dt.datetime) -> tuple[x509.Certificate, ...] | None:
    """A path from ``leaf`` through a CA certificate whose critical nameConstraints limit directory names, which
    cryptography's verifier refuses outright (a "fatal error"); None when there is none to offer.

    Supported where such a CA is a trust anchor or is issued directly by one (an issuing CA under the root, as a
    municipality's CA is): the verifier builds and checks the path below it to a stand-in anchor of its name and key
    (:func:`_stand_in`), which applies its other name constraints; what the verifier would have checked of the CA
    itself and of the anchor above it is checked here (the signature, validity at ``now``, basicConstraints cA and
    pathLenConstraint over the whole path, keyCertSign, critical extensions, key strength), and
    :func:`_judged` applies the directory names over the whole path, as for every path. Elsewhere (a constrained CA
    further down, name constraints on the anchor above it as well) the path is refused, as before."""
    for ca in [c for c in (*anchors, *candidates) if _directory_constrained(c)]:
        if ca in anchors:
            above: tuple[x509.Certificate, ...] = ()
        else:
            issuer = next((a for a in anchors if a.subject == ca.issuer and directly_issued(ca, a)), None)
            if issuer is None or _name_constraints(issuer) is not None:
                continue
            above = (issuer,)
        if domain.max_chain_depth < len(above):
            continue
        try:
            verifier = (PolicyBuilder().store(Store([_stand_in(ca)])).time(now)
                        .max_chain_depth(domain.max_chain_depth - len(above))
                        .extension_policies(ca_policy=_CA_POLICY, ee_policy=_EE_POLICY).build_client_verifier())
        # a key the stand-in cannot carry, or no basicConstraints to give it (no CA: nothing issued by it validates)
        except (ValueError, TypeError, UnsupportedAlgorithm, x509.ExtensionNotFound):
            continue
        try:
            below = tuple(verifier.verify(leaf, [c for c in candidates if c is not ca]).chain)
        except VerificationError:
            continue
        path = (*below[:-1], ca, *above)
        if all(_acts_as_ca(c, path[:i], now) for i, c in enumerate(path) if i > 0):
            return path
    return None


def _acts_as_ca(ca: x509.Certificate, below: Sequence[x509.Certificate], now: dt.datetime) -> bool:
    """``ca`` may issue the path ``below`` it (leaf first) at ``now``: what the verifier checks of a CA certificate
    (RFC 5280 §6.1.3 (a)(2), §6.1.4 (k)-(n), §4.2: critical extensions; an extendedKeyUsage, where present, that
    includes client authentication or anyExtendedKeyUsage, §4.2.1.12) and of its key (the broker's floor)."""
    if not ca.not_valid_before_utc <= now <= ca.not_valid_after_utc or weak_key_reason(ca):
        return False
    try:
        extensions = ca.extensions
        basic = extensions.get_extension_for_class(x509.BasicConstraints).value
        usage = extensions.get_extension_for_class(x509.KeyUsage).value \
            if any(e.oid == x509.KeyUsage.oid for e in extensions) else None
        purposes = extensions.get_extension_for_class(x509.ExtendedKeyUsage).value \
            if any(e.oid == x509.ExtendedKeyUsage.oid for e in extensions) else None
    except (x509.ExtensionNotFound, ValueError):
        return False
    if not basic.ca or (usage is not None and not usage.key_cert_sign):
        return False
    if purposes is not None and not {ExtendedKeyUsageOID.CLIENT_AUTH,
                                     ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE} & set(purposes):
        return False
    if any(e.critical and e.oid not in _CA_CRITICAL for e in extensions):
        return False
    # pathLenConstraint counts the CA certificates below, self-issued ones aside (§4.2.1.9, §6.1.4 (l)-(m))
    intermediates = sum(1 for c in below[1:] if c.issuer != c.subject)
    return basic.path_length is None or intermediates <= basic.path_length


def _check_email_address_constraints(below: Sequence[x509.Certificate], ca: x509.Certificate,
                                     constraints: x509.NameConstraints) -> None:
    """Apply ``ca``'s rfc822Name constraints to the emailAddress attributes in the subject of each certificate
    ``below`` it on the path (leaf first) that has no subjectAltName.

    RFC 5280 §4.2.1.10: "When constraints are imposed on the rfc822Name name form, but the certificate does not
    include a subject alternative name, the rfc822Name constraint MUST be applied to the attribute of type
    emailAddress in the subject distinguished name." cryptography's verifier checks alternative names only. Each
    address must be within one of the permitted rfc822Name subtrees, if there are any, and within none of the
    excluded ones (§6.1.3 (b)-(c); one CA at a time, which is the intersection §6.1.4 (g) builds). Self-issued
    CA certificates are skipped (§6.1.3 (b)). Matching: :func:`_mailbox_within`.
    """
    permitted, excluded = _subtrees(constraints, x509.RFC822Name)
    if not permitted and not excluded:
        return
    by = ca.subject.rfc4514_string()
    for position, cert in _constrained_by(below):
        try:
            cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            continue  # the verifier has applied the constraints to its alternative names
        except x509.ExtensionNotFound:
            pass
        # the leaf's subject is personal data: name its address by the host part alone
        whose = "the certificate's" if position == 0 else f"{cert.subject.rfc4514_string()}:"
        for attribute in cert.subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS):
            value = attribute.value if isinstance(attribute.value, str) else attribute.value.decode("latin-1")
            local, _, host = value.rpartition("@")
            if not local or not host:
                raise CertificateRejected(
                    "chain_invalid", f"{whose} subject emailAddress is not a mailbox, so {by}'s rfc822Name "
                                     "constraints cannot be applied to it (RFC 5280 §4.2.1.10)")
            if permitted and not any(_mailbox_within(local, host, s) for s in permitted):
                raise CertificateRejected(
                    "chain_invalid", f"{whose} subject emailAddress (at {host}) is outside the rfc822Name "
                                     f"subtrees {by} permits ({', '.join(permitted)}) (RFC 5280 §4.2.1.10)")
            hit = next((s for s in excluded if _mailbox_within(local, host, s)), None)
            if hit is not None:
                raise CertificateRejected(
                    "chain_invalid", f"{whose} subject emailAddress (at {host}) is within the rfc822Name "
                                     f"subtree {hit} that {by} excludes (RFC 5280 §4.2.1.10)")


def _mailbox_within(local: str, host: str, subtree: str) -> bool:
    """Whether the mailbox ``local``@``host`` is within an rfc822Name constraint (RFC 5280 §4.2.1.10).

    "A constraint MAY specify a particular mailbox, all addresses at a particular host, or all mailboxes in a
    domain": a mailbox (``anna@example.com``) matches that mailbox; a host (``example.com``) matches mailboxes
    at exactly that host; a domain (``.example.com``) matches mailboxes at any host in it, not at the host
    ``example.com`` itself. Host parts compare case-insensitively, local parts exactly (§7.5).
    """
    host = host.lower()
    if "@" in subtree:
        sub_local, _, sub_host = subtree.rpartition("@")
        return local == sub_local and host == sub_host.lower()
    if subtree.startswith("."):
        return host.endswith(subtree.lower())
    return host == subtree.lower()


def _weak_ca_on_name_path(leaf: x509.Certificate, candidates: Sequence[x509.Certificate],
                          now: dt.datetime, anchors: Sequence[x509.Certificate] = ()) -> tuple[str, str] | None:
    """Follow the issuers up from ``leaf``: the reason code and description of the first weakly signed CA, or
    CA with a weak key, met, if any; at a trust anchor, its key only (its self-signature carries no trust).
    Only a CA that really issued the certificate below it (its key verifies that signature), is valid at
    ``now`` and leads on to a trust anchor counts: a weak copy of an expired CA sent along, or a legacy SHA-1
    cross-certificate from a root nobody trusts, is no path, and must not hide why the path really failed."""
    child, seen = leaf, 0
    while seen < 8:
        for anchor in (a for a in anchors if _issued_at(child, a, now)):
            weak = weak_key_reason(anchor)
            if weak:
                return "weak_key", f"{describe(anchor)}: {weak}"
        matches = [c for c in candidates if c.issuer != c.subject and _issued_at(child, c, now)
                   and _reaches_anchor(c, candidates, anchors, now, set())]
        if not matches:
            return None
        for cert in matches:
            weak = weak_signature_reason(cert)
            if weak:
                return "weak_signature_algorithm", f"{describe(cert)}: {weak}"
            weak = weak_key_reason(cert)
            if weak:
                return "weak_key", f"{describe(cert)}: {weak}"
        child, seen = matches[0], seen + 1
    return None


def _out_of_date_ca_on_name_path(leaf: x509.Certificate, candidates: Sequence[x509.Certificate],
                                 now: dt.datetime, anchors: Sequence[x509.Certificate]) -> str | None:
    """Why the path failed when every CA that issued a certificate on it (by name and key, RFC 5280 §6.1.3 (a)(4))
    is out of date at ``now`` (§6.1.3 (a)(2)): that CA and its validity, followed up from ``leaf`` through the
    CAs valid at ``now``. The verifier says only "cert is not valid at validation time", naming no certificate,
    so the operator could not tell which CA certificate to renew."""
    child, seen = leaf, 0
    while seen < 8:
        issuers = [c for c in (*anchors, *candidates) if c.subject == child.issuer and _issued(child, c)]
        current = [c for c in issuers if c.not_valid_before_utc <= now <= c.not_valid_after_utc]
        if issuers and not current:
            ca = issuers[0]
            whose = "the login certificate" if child is leaf else describe(child)
            if now < ca.not_valid_before_utc:
                when = f"is not valid before {ca.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
            else:
                when = f"expired {ca.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
            return (f"{describe(ca)}, which issued {whose}, {when}: configure the CA's current certificate "
                    "from the certificate issuer")
        following = [c for c in current if c.issuer != c.subject and not any(c is a for a in anchors)]
        if not following or len(current) != len(following):
            return None  # reached a trust anchor valid at ``now``, or no issuer at all: not a matter of dates
        child, seen = following[0], seen + 1
    return None


def _critical_aki_on_name_path(leaf: x509.Certificate, candidates: Sequence[x509.Certificate], now: dt.datetime,
                               anchors: Sequence[x509.Certificate]) -> str | None:
    """Why the path failed when a certificate on it marks its authorityKeyIdentifier critical: the leaf, or a CA
    that issued it (or a CA above, each leading on to a trust anchor, as :func:`_weak_ca_on_name_path` follows
    them). RFC 5280 §4.2.1.1 has conforming CAs mark it non-critical, and the broker refuses one that does not,
    for CA and login certificates alike (the verifier's own message, "incorrect criticality", names neither the
    certificate nor the extension in words)."""
    child, seen = leaf, 0
    while seen < 8:
        if _aki_critical(child):
            whose = "the login certificate" if child is leaf else describe(child)
            return (f"{whose} marks its authorityKeyIdentifier critical, which RFC 5280 §4.2.1.1 forbids "
                    "(\"Conforming CAs MUST mark this extension as non-critical\"); the issuing CA must re-issue it")
        matches = [c for c in candidates if c.issuer != c.subject and _issued_at(child, c, now)
                   and _reaches_anchor(c, candidates, anchors, now, set())]
        if not matches:
            return None
        child = next((c for c in matches if _aki_critical(c)), matches[0])
        seen += 1
    return None


def _aki_critical(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).critical
    except x509.ExtensionNotFound:
        return False


def _reaches_anchor(cert: x509.Certificate, candidates: Sequence[x509.Certificate],
                    anchors: Sequence[x509.Certificate], now: dt.datetime, visited: set[x509.Certificate]) -> bool:
    """Whether ``cert`` was issued, by name and key and in date (:func:`_issued_at`), by a trust anchor or by a
    candidate that was, and so on up; each candidate is looked at once (``visited``)."""
    if any(_issued_at(cert, anchor, now) for anchor in anchors):
        return True
    visited.add(cert)
    return any(_reaches_anchor(c, candidates, anchors, now, visited) for c in candidates
               if c not in visited and c.issuer != c.subject and _issued_at(cert, c, now))


def _issued_at(child: x509.Certificate, issuer: x509.Certificate, now: dt.datetime) -> bool:
    """``issuer`` is valid at ``now`` and issued ``child`` (its name and key)."""
    return issuer.subject == child.issuer and issuer.not_valid_before_utc <= now <= issuer.not_valid_after_utc \
        and _issued(child, issuer)


def _issued(child: x509.Certificate, issuer: x509.Certificate) -> bool:
    """``issuer``'s name and key issued ``child``, whatever hash its signature uses: cryptography's check does not
    verify SHA-1 (ECDSA), and a weak link is what this module looks for when it names why a path failed."""
    try:
        child.verify_directly_issued_by(issuer)
    except (TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    except ValueError:
        return child.issuer == issuer.subject and _signature_verifies(child, issuer)
    return True


def _signature_verifies(child: x509.Certificate, issuer: x509.Certificate) -> bool:
    """``child``'s signature checked with ``issuer``'s key and the algorithm it names, SHA-1 included. False when
    that key cannot be read (an unknown algorithm, a point off its curve): a certificate the client sent along is
    anyone's bytes, and what it cannot have issued is no reason for a refusal."""
    try:
        key = issuer.public_key()
        # cryptography names no parameters for the SHA-1 algorithms (None): PKCS #1 v1.5, or ECDSA with the hash
        algorithm, parameters = child.signature_hash_algorithm, child.signature_algorithm_parameters
        if algorithm is None:
            return False
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(child.signature, child.tbs_certificate_bytes,
                       parameters if isinstance(parameters, padding.PSS) else padding.PKCS1v15(), algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(child.signature, child.tbs_certificate_bytes, ec.ECDSA(algorithm))
        else:
            return False
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _verification_detail(exc: VerificationError) -> str:
    """cryptography's message, without the certificate repr it appends."""
    text = str(exc)
    return text.split(" (encountered processing", 1)[0]
