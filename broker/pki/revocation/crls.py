"""Certificate revocation lists as verified, indexed data, kept fresh in the background (RFC 5280 §5, §6.3).

A CRL is verified once when loaded (issuer, signature, scope) and indexed by
serial number, so a lookup is a set membership test even for a CRL of
100,000 entries. Freshness (thisUpdate/nextUpdate) is judged at check time
with the injected clock.

Where CRLs come from: configured files and URLs, and the CRL distribution
points of the certificates themselves. :class:`CrlStore` refreshes them in
the background before they expire; the login path fetches only when nothing
usable is held, and then at most once per ``retry_after`` per source, so a
dead CRL server does not make every login wait. With a shared store (Redis)
the downloaded CRL is shared between broker instances: one instance fetches
(under a lock), the others verify and adopt its copy. A failed refresh keeps
the last valid CRL until its nextUpdate and is recorded for
``broker revocation status``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import json
import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from broker.clock import Clock, passed
from broker.errors import CertificateRejected, DependencyUnavailable
from broker.lru import by_identity
from broker.pki.algorithms import weak_signature_reason
from broker.pki.issuance import directly_issued
from broker.pki.naming import describe, is_ca, subject_text
from broker.pki.reading import read_crl
from broker.pki.revocation.http import FetchError, FetchLimits, HttpFetcher
from broker.session.store import KeyValueStore

log = logging.getLogger("broker.revocation")

# a CRL issued a little ahead of our clock is fine; much further ahead, it is not ours to use yet
CRL_FUTURE_TOLERANCE = dt.timedelta(minutes=5)


@by_identity(16384)
def distribution_point_names(cert: x509.Certificate) -> frozenset[x509.GeneralName]:
    """Every name the certificate's CRL distribution points give (RFC 5280 §4.2.1.13): full names, relative
    names made full under the CRL issuer (or the certificate's issuer), and the cRLIssuer names of points
    without a name, which §6.3.3 (b)(2)(i) matches against a CRL's distribution point name."""
    try:
        points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound:
        return frozenset()
    names: set[x509.GeneralName] = set()
    for point in points:
        if point.full_name:
            names.update(point.full_name)
        elif point.relative_name is not None:
            issuers = [n.value for n in point.crl_issuer or () if isinstance(n, x509.DirectoryName)]
            for issuer in issuers or [cert.issuer]:
                names.add(x509.DirectoryName(x509.Name([*issuer.rdns, point.relative_name])))
        else:
            names.update(point.crl_issuer or ())
    return frozenset(names)


@by_identity(16384)
def partial_reasons_only(cert: x509.Certificate) -> bool:
    """Whether each of the certificate's CRL distribution points covers only some revocation reasons (RFC 5280
    §4.2.1.13 ``reasons``): then no CRL settles the others (§6.3.3: the reasons mask never reaches all-reasons,
    the status stays UNDETERMINED). Partitioning by reason is not supported, as CRLs for only some reasons are
    not (:func:`verify_crl`)."""
    try:
        points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound:
        return False
    return len(points) > 0 and all(point.reasons for point in points)


def _reason(entry: x509.RevokedCertificate) -> x509.ReasonFlags | None:
    """An entry's reasonCode (RFC 5280 §5.3.1), None when it gives none."""
    try:
        return entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    except x509.ExtensionNotFound:
        return None


@by_identity(4096)
def subject_der(ca: x509.Certificate) -> bytes:
    """A CA's name as its own certificate encodes it: what its CRLs are filed and looked up under, whatever
    string types a CRL or a certificate it issued writes the same name in (RFC 5280 §7.1 compares names, not
    bytes)."""
    return ca.subject.public_bytes()


@by_identity(4096)
def spki(cert: x509.Certificate) -> bytes:
    """The DER SubjectPublicKeyInfo (cached: CA certificates are asked about on every login)."""
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
    revoked: frozenset[int]
    crl: x509.CertificateRevocationList
    number: int | None = None   # cRLNumber (RFC 5280 §5.2.3): of two CRLs of one instant, the higher is the later
    # the issuing distribution point's scope (RFC 5280 §5.2.5): the distribution point names the CRL is for
    # (None: every certificate of the issuer), and whether it lists only end-entity or only CA certificates
    scope_names: frozenset[x509.GeneralName] | None = None
    only_user_certs: bool = False
    only_ca_certs: bool = False
    # the serials listed on hold only (certificateHold, RFC 5280 §5.3.1): every entry of theirs is a hold, which a
    # later CRL may lift; a serial listed twice, once on hold and once for good, is revoked for good
    on_hold: frozenset[int] = frozenset()

    def __len__(self) -> int:
        return len(self.revoked)

    def __bool__(self) -> bool:  # a held CRL is something even when it lists nobody
        return True

    @property
    def key(self) -> tuple[bytes, bytes]:
        """The CA this CRL answers for: its issuer name and signing key. A CRL answers only for certificates
        whose issuer is the CRL issuer (RFC 5280 §6.3.3 (b)(1); no indirect CRLs), and two CAs may share a key
        under different names (a renamed re-issue), so the signing key alone does not say."""
        return self.issuer_der, self.signer_spki

    def revoked_at(self, serial: int) -> dt.datetime | None:
        """When ``serial`` was revoked, or None. Set lookup first; the date only on a hit."""
        if serial not in self.revoked:
            return None
        entry = self.crl.get_revoked_certificate_by_serial_number(serial)
        return entry.revocation_date_utc if entry is not None else self.this_update

    def revoked_for_good(self, serial: int) -> dt.datetime | None:
        """:meth:`revoked_at`, but None for a serial listed on hold only (certificateHold, RFC 5280 §5.3.1), which
        a later CRL may lift: the part of a CRL that still says something once it is stale (revocation is final).
        Every entry of the serial counts, not the first alone: a hold listed before a revocation for good of the
        same serial does not hide it."""
        return None if serial in self.on_hold else self.revoked_at(serial)

    def covers(self, cert: x509.Certificate) -> bool:
        """Whether the CRL's scope takes in ``cert`` (RFC 5280 §6.3.3 (b)(2)): a CRL with a distribution point
        name in its issuing distribution point answers only for certificates whose CRL distribution points name
        it; one for user certificates only, or CA certificates only, answers for those alone."""
        if self.only_user_certs and is_ca(cert):
            return False
        if self.only_ca_certs and not is_ca(cert):
            return False
        return self.scope_names is None or not self.scope_names.isdisjoint(distribution_point_names(cert))

    @property
    def inverted(self) -> bool:
        """nextUpdate before thisUpdate: a window that holds no instant (RFC 5280 §5.1.2.5: the next CRL is issued
        no later than nextUpdate), which the clock skew at each end must not make usable. Its revocations for good
        still count (revocation is final)."""
        return self.next_update is not None and self.next_update < self.this_update

    def usable(self, now: dt.datetime, skew: dt.timedelta) -> bool:
        return (self.next_update is not None and not self.inverted and self.this_update <= now + skew
                and now - skew <= self.next_update)


def parse_crl(data: bytes) -> x509.CertificateRevocationList:
    """A CRL from PEM or DER bytes (:func:`broker.pki.reading.read_crl`); ValueError if it is neither."""
    return read_crl(data)


def verify_crl(crl: x509.CertificateRevocationList, cas: Iterable[x509.Certificate],
               source: Path | None = None) -> VerifiedCrl:
    """Verify ``crl`` against the CA among ``cas`` that issued it; raise ValueError saying why not.

    Refused: an issuer that is not among ``cas``, or whose keyUsage lacks cRLSign (RFC 5280 §6.3.3 (f)); a
    bad signature; delta CRLs (§5.2.4: never a complete list, whether or not the indicator is marked
    critical); a critical extension, or a critical entry extension, the broker does not process (§5.2,
    §5.3: such a CRL must not be used at all); indirect CRLs and CRLs for only some reasons, which do not
    cover every certificate of the CA for every reason (§5.2.5). A CRL partitioned by distribution point
    or by certificate kind is kept with its scope (:meth:`VerifiedCrl.covers`).
    """
    try:
        return _verify_crl(crl, cas, source)
    except ValueError:
        raise
    except Exception as exc:  # cryptography reads parts of a CRL (its names ...) only when first asked, and may refuse
        # one with an exception of its own (a TypeError for a name value of a type no name holds): a CRL that cannot
        # be read is refused as the ValueError every caller expects (configuration, command line, readiness)
        raise ValueError(f"the CRL cannot be read ({type(exc).__name__}: {exc})") from None


def _verify_crl(crl: x509.CertificateRevocationList, cas: Iterable[x509.Certificate],
                source: Path | None) -> VerifiedCrl:
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
    # held to the floor of everything else the broker trusts a signature on (certificates, OCSP answers):
    # cryptography refuses a SHA-1 CRL under PKCS #1 v1.5, but verifies one under RSASSA-PSS
    weak = weak_signature_reason(crl)
    if weak is not None:
        raise ValueError(f"the CRL is refused: {weak}")
    try:
        usage = signer.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is not None and not usage.crl_sign:
        raise ValueError(f"the CRL's issuer {subject_text(signer)} may not sign CRLs (its keyUsage lacks cRLSign)")
    extensions = _extensions(crl, "the CRL")
    for ext in extensions:
        if ext.oid == x509.oid.ExtensionOID.DELTA_CRL_INDICATOR:
            raise ValueError("delta CRLs are not supported; configure the full CRL")
        if ext.critical and ext.oid != x509.oid.ExtensionOID.ISSUING_DISTRIBUTION_POINT:
            raise ValueError(f"the CRL has an unsupported critical extension {ext.oid.dotted_string}")
    try:
        idp = extensions.get_extension_for_class(x509.IssuingDistributionPoint).value
    except x509.ExtensionNotFound:
        idp = None
    if idp is not None and (idp.only_contains_attribute_certs or idp.only_some_reasons or idp.indirect_crl):
        raise ValueError("indirect CRLs and CRLs for only some reasons are not supported; configure the full CRL")
    revoked: set[int] = set()
    on_hold: set[int] = set()
    for entry in crl:
        for ext in _extensions(entry, f"the CRL entry for serial {entry.serial_number:x}"):
            if ext.critical:  # e.g. certificateIssuer, which only indirect CRLs carry
                raise ValueError(f"the CRL entry for serial {entry.serial_number:x} has an unsupported critical "
                                 f"extension {ext.oid.dotted_string}")
        reason = _reason(entry)
        if reason == x509.ReasonFlags.remove_from_crl:
            continue  # RFC 5280 §6.3.3 (k): UNREVOKED (§5.3.1: it belongs in delta CRLs, which are not used)
        serial = entry.serial_number
        # a serial may be listed more than once: on hold only while every entry of it is a hold
        if reason == x509.ReasonFlags.certificate_hold:
            if serial not in revoked:
                on_hold.add(serial)
        else:
            on_hold.discard(serial)
        revoked.add(serial)
    try:
        number: int | None = extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        number = None
    return VerifiedCrl(
        source=source,
        issuer_der=subject_der(signer),
        signer_spki=spki(signer),
        this_update=crl.last_update_utc,
        next_update=crl.next_update_utc,
        revoked=frozenset(revoked),
        crl=crl,
        scope_names=_scope_names(idp, crl.issuer) if idp is not None else None,
        only_user_certs=idp is not None and idp.only_contains_user_certs,
        only_ca_certs=idp is not None and idp.only_contains_ca_certs,
        number=number,
        on_hold=frozenset(on_hold),
    )


def _extensions(owner: x509.CertificateRevocationList | x509.RevokedCertificate, what: str) -> x509.Extensions:
    """The extensions of a CRL or of one of its entries, each at most once (RFC 5280 §5.2, §5.3, as §4.2 has it for
    certificates: one instance of a particular extension). cryptography notices a repeated one only when they are
    read, and says so with an exception of its own: turned into the ValueError :func:`verify_crl` promises, so that
    every caller (configuration, refresh, readiness, the command line) refuses the CRL instead of failing."""
    try:
        return owner.extensions
    except x509.DuplicateExtension as exc:
        raise ValueError(f"{what} has extension {exc.oid.dotted_string} more than once (RFC 5280 §5.2, §5.3)") \
            from None


def _scope_names(idp: x509.IssuingDistributionPoint, issuer: x509.Name) -> frozenset[x509.GeneralName] | None:
    """The distribution point names of an issuing distribution point, a relative name made full under the CRL
    issuer (RFC 5280 §5.2.5); None when it names none."""
    if idp.full_name:
        return frozenset(idp.full_name)
    if idp.relative_name is not None:
        return frozenset({x509.DirectoryName(x509.Name([*issuer.rdns, idp.relative_name]))})
    return None


# --- sources and the store ---------------------------------------------------------------


@dataclass(frozen=True)
class CrlSource:
    """Where one CRL comes from and who may have signed it."""

    location: str                               # a file path or an http(s) URL
    kind: Literal["file", "url"]
    cas: tuple[x509.Certificate, ...]           # the CAs the CRL may be issued by
    limits: FetchLimits
    refresh_margin: dt.timedelta

    @functools.cached_property
    def id(self) -> str:
        """Location plus the keys that may sign it: one URL shared by an old and a new CA key is two sources."""
        keys = hashlib.sha256(b"".join(sorted(spki(ca) for ca in self.cas))).hexdigest()[:12]
        return f"{self.kind}:{self.location}#{keys}"

    @functools.cached_property
    def _names(self) -> frozenset[bytes]:
        return frozenset(ca.subject.public_bytes() for ca in self.cas)

    def issuer_names(self) -> frozenset[bytes]:
        return self._names


@dataclass
class SourceState:
    """What this process holds for one source (mutable; guarded by ``lock``)."""

    source: CrlSource
    crl: VerifiedCrl | None = None      # the CRL adopted last (what the source serves now)
    # the newest CRL adopted per issuer (name and key): a source may serve the CRLs of several of its CAs,
    # and one issuer's CRL says nothing about, and must not displace, another's
    held: dict[tuple[bytes, bytes], VerifiedCrl] = field(default_factory=dict)
    fetched_at: dt.datetime | None = None
    last_attempt: dt.datetime | None = None
    last_error: str | None = None
    file_mtime: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


@by_identity(16384)
def distribution_point_urls(cert: x509.Certificate) -> tuple[str, ...]:
    """http(s) URLs of the certificate's CRL distribution points (RFC 5280 §4.2.1.13)."""
    try:
        points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound:
        return ()
    urls = []
    for point in points:
        for name in point.full_name or ():
            if isinstance(name, x509.UniformResourceIdentifier) and name.value.lower().startswith(
                    ("http://", "https://")):
                urls.append(name.value)
    return tuple(urls)


def _shared_key(source: CrlSource, kind: str) -> str:
    return f"crl-{kind}:" + hashlib.sha256(source.id.encode()).hexdigest()[:40]


class CrlStore:
    """The CRLs this process holds, by source; refreshes them and answers revocation lookups."""

    def __init__(self, clock: Clock, *, fetcher: HttpFetcher | None, shared: KeyValueStore | None,
                 retry_after: dt.timedelta = dt.timedelta(seconds=10)) -> None:
        self._clock = clock
        self._fetcher = fetcher
        self._shared = shared
        self._retry_after = retry_after
        self._states: dict[str, SourceState] = {}
        self._lock = threading.Lock()

    # --- registration ------------------------------------------------------------------

    def add(self, source: CrlSource, initial: VerifiedCrl | None = None) -> SourceState:
        state = self._states.get(source.id)
        if state is None:
            with self._lock:
                state = self._states.setdefault(source.id, SourceState(source))
        if initial is not None and state.crl is None:
            state.crl = initial
            state.held[initial.key] = initial
            state.fetched_at = self._clock.now()
            if source.kind == "file":
                with contextlib.suppress(OSError):
                    state.file_mtime = Path(source.location).stat().st_mtime
        return state

    def states(self) -> list[SourceState]:
        with self._lock:
            return list(self._states.values())

    # --- lookups -------------------------------------------------------------------------

    def check(self, cert: x509.Certificate, issuer: x509.Certificate, sources: Sequence[CrlSource],
              now: dt.datetime, skew: dt.timedelta,
              signers: Sequence[tuple[x509.Certificate, x509.Certificate | None]] = ()
              ) -> tuple[VerifiedCrl, SourceState]:
        """The freshest usable CRL of ``issuer`` among ``sources``; raise ``revoked`` or why none is usable.

        ``signers``: the other certificates of ``issuer``'s name whose keys may sign its CRLs
        (:func:`crl_signers`: a separate CRL-signing key, the CA's other key across a key rollover; RFC 5280
        §6.3.3 (f)), each with the certificate on the path that issued it, or None when it is on the path itself.
        One that is not on the path signs CRLs for ``issuer`` only while its own status is established good by a
        CRL of the certificate that issued it: signed by that certificate's own key, or, for one ``issuer`` issued
        itself (a self-issued CRL-signing certificate, PKITS 4.5.6), by either key of the CA; the CRLs of all the
        keys accepted count together, as CRLs of the one CA they are.

        Fetches (bounded by each source's limits) only when no usable CRL is
        held, and not again within ``retry_after`` of a failed attempt.
        """
        name = subject_der(issuer)
        states = [self.add(s) for s in sources if name in s.issuer_names()]
        who = subject_text(issuer)
        if not states:
            raise CertificateRejected("revocation_unavailable", f"no CRL source is configured for {who}")
        keys = [spki(issuer)]
        refused: list[str] = []
        for signer, signed_by in signers:
            if signed_by is not None:
                # a CRL-signing certificate the CA issued itself (self-issued) may be covered by the CRLs it signs
                # (PKITS 4.5.6); one from above, only by its issuer's
                own_crls = ((signer, None),) if signed_by is issuer else ()
                try:
                    self.check(signer, signed_by, sources, now, skew, own_crls)
                except CertificateRejected as exc:
                    refused.append(f"the CRL signing certificate {describe(signer)} is not used: {exc.detail}")
                    continue
            if spki(signer) not in keys:
                keys.append(spki(signer))
        best = self._best(states, cert, name, keys, now, skew)
        if best is None or best[0].signer_spki != keys[0]:
            # nothing usable held, or only CRLs of another key of the CA: a source that has served nothing yet (the
            # certificate's distribution point) may serve the CRL of the certificate's own issuing key (a CA that
            # keeps one CRL per key, each for the certificates of that key), which must not go unasked because
            # another key's CRL is at hand
            for state in states:
                if (state.last_attempt is None or passed(state.last_attempt, self._retry_after, now)) and (
                        best is None or state.crl is None):
                    self.refresh(state, force=True)
            best = self._best(states, cert, name, keys, now, skew)
        from_issuer = [crl for crl, _ in _held(states, name, keys)]
        held = [crl for crl in from_issuer if crl.covers(cert)]
        # revocation is final (RFC 5280 §3.3; only a hold may be lifted): whichever held CRL of the CA lists the
        # certificate for good decides, stale or not, and whether or not another (older, or newer with a
        # shorter life) is usable: the CRL chosen as freshest usable must not hide it
        serial = cert.serial_number
        for listing in sorted((c for c in held if serial in c.revoked), key=_recency, reverse=True):
            revoked_at = listing.revoked_for_good(serial)
            if revoked_at is not None:
                stale = "" if listing.usable(now, skew) else "; the CRL is past its nextUpdate"
                raise CertificateRejected("revoked", f"{describe(cert)} is on the CRL from {who} (revoked "
                                                     f"{revoked_at.isoformat()}{stale})",
                                          params={"revocation_date": revoked_at.date().isoformat()})
        newest = max(held, key=_recency, default=None) if len(held) != 1 else held[0]
        if best is None:
            errors = "; ".join([*(f"{s.source.location}: {s.last_error}" for s in states if s.last_error), *refused])
            if from_issuer and not held:
                raise CertificateRejected(
                    "revocation_unavailable",
                    f"no CRL held from {who} covers {describe(cert)}: each is for other distribution points or "
                    "another kind of certificate" + (f" ({errors})" if errors else ""))
            if newest is not None and newest.inverted and newest.next_update is not None:
                raise CertificateRejected(
                    "revocation_response_invalid",
                    f"the newest CRL from {who} has its nextUpdate {newest.next_update.isoformat()} before its "
                    f"thisUpdate {newest.this_update.isoformat()}" + (f" ({errors})" if errors else ""))
            if newest is not None and newest.next_update is not None and newest.next_update < now - skew:
                raise CertificateRejected(
                    "revocation_stale",
                    f"the newest CRL from {who} expired at {newest.next_update.isoformat()}"
                    + (f" ({errors})" if errors else ""),
                    params={"next_update": newest.next_update.date().isoformat()})
            raise CertificateRejected("revocation_unavailable",
                                      f"no usable CRL from {who}" + (f" ({errors})" if errors else ""))
        crl, state = best
        if serial not in crl.revoked and crl.scope_names is not None and partial_reasons_only(cert):
            # the CRL is for a distribution point of the certificate's, and each of those covers only some reasons
            # (RFC 5280 §6.3.3 (d): the reasons mask never reaches all-reasons); a complete CRL of the issuer
            # settles them all (§6.3.3, the CRLs "not specified in a distribution point"): the freshest usable one
            complete = max(((c, st) for c, st in _held(states, name, keys)
                            if c.scope_names is None and c.usable(now, skew) and c.covers(cert)),
                           key=lambda pair: _recency(pair[0]), default=None)
            if complete is None:
                raise CertificateRejected("revocation_unavailable", f"each CRL distribution point of "
                                                                    f"{describe(cert)} covers only some revocation "
                                                                    "reasons (RFC 5280 §6.3.3), and no complete CRL "
                                                                    "of its issuer is held")
            crl, state = complete
        revoked_at = crl.revoked_at(serial)
        if revoked_at is not None:
            raise CertificateRejected("revoked", f"{describe(cert)} is on the CRL from {who} (revoked "
                                                 f"{revoked_at.isoformat()})",
                                      params={"revocation_date": revoked_at.date().isoformat()})
        # a point's CRL for some reasons says nothing of a hold: when the card's points are such, only complete
        # CRLs count as later ones
        later = newest if crl.scope_names is not None or not partial_reasons_only(cert) \
            else max((c for c in held if c.scope_names is None), key=_recency, default=None)
        if later is not None and later is not crl and serial in later.revoked and _recency(later) > _recency(crl):
            # on hold in a later CRL, which is no longer usable: an older CRL's "good" is superseded, and whether
            # the hold was lifted since is not known
            raise CertificateRejected("revocation_stale", f"{describe(cert)} is on hold on a later CRL from {who} "
                                                          f"(thisUpdate {later.this_update.isoformat()}), which is "
                                                          "past its nextUpdate")
        return crl, state

    def held_revocation(self, cert: x509.Certificate, issuer: x509.Certificate, sources: Sequence[CrlSource],
                        now: dt.datetime, skew: dt.timedelta) -> dt.datetime | None:
        """When ``cert`` was revoked, if a CRL held now among ``sources`` says so: the freshest usable one, or any
        one for good (revocation is final), or one later than the freshest usable (a hold it may since have
        lifted counts: this judges a responder's certificate, which must be beyond doubt); None otherwise (not
        listed, or no such CRL held). Nothing is fetched and no source registered."""
        with self._lock:
            states = [state for s in sources if (state := self._states.get(s.id)) is not None]
        name, key = subject_der(issuer), spki(issuer)
        best = self._best(states, cert, name, (key,), now, skew)
        serial = cert.serial_number
        held = [crl for s in states if (crl := s.held.get((name, key))) is not None and crl.covers(cert)]
        for crl in held:
            at = crl.revoked_for_good(serial)
            if at is None and (best is None or crl is best[0] or _recency(crl) > _recency(best[0])):
                at = crl.revoked_at(serial) if best is not None else None
            if at is not None:
                return at
        return None

    @staticmethod
    def _best(states: Sequence[SourceState], cert: x509.Certificate, issuer_der: bytes, keys: Sequence[bytes],
              now: dt.datetime, skew: dt.timedelta) -> tuple[VerifiedCrl, SourceState] | None:
        """The freshest usable CRL, signed with one of ``keys``, among those whose scope takes in ``cert``: a
        fresher CRL for another partition says nothing about it."""
        usable = [(crl, s) for crl, s in _held(states, issuer_der, keys) if crl.usable(now, skew) and crl.covers(cert)]
        return max(usable, key=lambda pair: _recency(pair[0]), default=None)

    # --- refreshing ----------------------------------------------------------------------

    def due(self, state: SourceState, now: dt.datetime) -> bool:
        """Refresh when nothing is held, at half the CRL's validity, or within the margin of nextUpdate."""
        crl = state.crl
        if crl is None or crl.next_update is None:
            return True
        if state.source.kind == "file":
            with contextlib.suppress(OSError):
                if Path(state.source.location).stat().st_mtime != state.file_mtime:
                    return True
        halfway = crl.this_update + (crl.next_update - crl.this_update) / 2
        return now >= min(halfway, crl.next_update - state.source.refresh_margin)

    def refresh_due(self) -> int:
        """One background pass: refresh every source that is due; returns how many were refreshed."""
        now = self._clock.now()
        count = 0
        for state in self.states():
            if self.due(state, now) and (state.last_attempt is None
                                         or passed(state.last_attempt, self._retry_after, now)):
                self.refresh(state)
                count += 1
        return count

    def refresh(self, state: SourceState, *, force: bool = False) -> None:
        """Bring ``state`` up to date; failures are recorded, never raised (the last valid CRL stays)."""
        if not state.lock.acquire(timeout=state.source.limits.total_timeout + 1):
            return
        try:
            now = self._clock.now()
            if not force and not self.due(state, now):
                return
            state.last_attempt = now
            try:
                if state.source.kind == "file":
                    self._refresh_file(state)
                else:
                    self._refresh_url(state, now, force=force)
            except (FetchError, ValueError, OSError) as exc:
                state.last_error = str(exc)
                log.warning("CRL refresh failed for %s: %s", state.source.location, exc)
                self._publish_meta(state)
            except DependencyUnavailable as exc:
                state.last_error = f"shared store: {exc.detail}"
                log.warning("CRL refresh for %s could not use the shared store: %s", state.source.location, exc)
            except Exception as exc:  # one source's surprise must not end the pass, nor fail a login
                state.last_error = f"unexpected {type(exc).__name__}: {exc}"
                log.exception("CRL refresh failed unexpectedly for %s", state.source.location)
                self._publish_meta(state)
        finally:
            state.lock.release()

    def _adopt(self, state: SourceState, crl: VerifiedCrl) -> bool:
        """Take ``crl`` unless it is older than the one held from the same issuer (no rollback to an older CRL,
        RFC 5280 §6.3.3; another CA's CRL served at the same place is no rollback) or not valid yet (it would
        displace a usable one with one nobody may use)."""
        held = state.held.get(crl.key)
        if held is not None and _recency(crl) < _recency(held):
            raise ValueError(f"the CRL is older ({crl.this_update.isoformat()}, cRLNumber {crl.number}) than the one "
                             f"held from its issuer ({held.this_update.isoformat()}, cRLNumber {held.number}); kept "
                             "the newer one")
        if crl.this_update > self._clock.now() + CRL_FUTURE_TOLERANCE:
            raise ValueError(f"the CRL's thisUpdate {crl.this_update.isoformat()} is in the future; "
                             "kept the one held")
        changed = held is None or _recency(crl) > _recency(held)
        state.held[crl.key] = crl
        state.crl = crl
        state.fetched_at = self._clock.now()
        state.last_error = None
        return changed

    def _refresh_file(self, state: SourceState) -> None:
        path = Path(state.source.location)
        # remember the version read even if it is refused, so it is not re-read until it changes again
        state.file_mtime = path.stat().st_mtime
        crl = verify_crl(parse_crl(path.read_bytes()), state.source.cas, path)
        self._adopt(state, crl)

    def _refresh_url(self, state: SourceState, now: dt.datetime, *, force: bool) -> None:
        source = state.source
        if self._shared is not None:
            # another instance may already have fetched a newer copy: verify it ourselves and adopt it
            der = self._shared.get(_shared_key(source, "der"))
            if der is not None:
                with contextlib.suppress(ValueError):
                    crl = verify_crl(parse_crl(der), source.cas)
                    held = state.held.get(crl.key)
                    if held is None or _recency(crl) > _recency(held):
                        self._adopt(state, crl)
                if not self.due(state, now):
                    return
        locked = False
        if self._shared is not None:
            lock_ttl = source.limits.total_timeout + 5
            locked = self._shared.put_if_absent(_shared_key(source, "lock"), b"1", lock_ttl)
            if not locked and not force:
                return  # another instance is fetching; its copy will be adopted on the next pass
        try:
            if self._fetcher is None:
                raise FetchError("network fetching is off")
            data = self._fetcher.get(source.location, source.limits, accept="application/pkix-crl")
            crl = verify_crl(parse_crl(data), source.cas)
            self._adopt(state, crl)
            if self._shared is not None:
                der = crl.crl.public_bytes(serialization.Encoding.DER)
                keep = (crl.next_update - now).total_seconds() + 86400 if crl.next_update else 86400
                self._shared.put(_shared_key(source, "der"), der, max(keep, 60))
        finally:
            if locked and self._shared is not None:
                # released after success and failure alike: a failed fetch must not silence the others
                with contextlib.suppress(DependencyUnavailable):
                    self._shared.delete(_shared_key(source, "lock"))
        self._publish_meta(state)

    def _publish_meta(self, state: SourceState) -> None:
        """Record the source's state where `broker revocation status` on any instance can read it."""
        if self._shared is None:
            return
        with contextlib.suppress(DependencyUnavailable):
            self._shared.put(_shared_key(state.source, "meta"), json.dumps(source_status(state)).encode(),
                             7 * 86400)

    def shared_status(self, source: CrlSource) -> dict[str, object] | None:
        """The source's state as an instance last recorded it (:meth:`_publish_meta`); None when none is recorded,
        or the value in its place is no such record (not JSON, not a JSON object: corrupted, written by something
        else), which the next refresh writes afresh."""
        if self._shared is None:
            return None
        return shared_record(self._shared.get(_shared_key(source, "meta")))


def shared_record(raw: bytes | None) -> dict[str, object] | None:
    """A bookkeeping record from the shared store (a CRL source's state, a responder's status), or None: absent,
    or not a JSON object (a corrupted value, one written by something else). An unreadable one is written afresh,
    and never fails the lookup whose outcome it records."""
    if not raw:
        return None
    try:
        record = json.loads(raw)
    except ValueError:  # not JSON, or not UTF-8 (UnicodeDecodeError)
        return None
    return record if isinstance(record, dict) else None


def _held(states: Sequence[SourceState], issuer_der: bytes, keys: Sequence[bytes]
          ) -> list[tuple[VerifiedCrl, SourceState]]:
    """The CRLs held among ``states`` from the CA named ``issuer_der``, signed with any of ``keys``."""
    return [(crl, s) for s in states for key in keys if (crl := s.held.get((issuer_der, key))) is not None]


def crl_signers(issuer: x509.Certificate, above: Sequence[x509.Certificate], cas: Iterable[x509.Certificate],
                now: dt.datetime) -> tuple[tuple[x509.Certificate, x509.Certificate | None], ...]:
    """The other certificates of ``issuer``'s name whose keys may sign its CRLs (RFC 5280 §6.3.3 (f): the CRL
    issuer's path validated to the trust anchor of the certificate's, and its keyUsage, when present, allowing
    cRLSign), each with the certificate that issued it (None when on the path itself).

    ``above``: the validated path above ``issuer``, the trust anchor last; ``cas``: the configured CA
    certificates. Taken: a certificate of the path above with ``issuer``'s name (a key rollover certificate,
    RFC 5280 §6.1), and a configured one with that name, valid now, whose signature (not a weak one) verifies
    with the key of ``issuer`` or of a certificate above it: a separate CRL-signing key, or the CA's other key
    across a rollover. Its own status is the caller's to establish (:meth:`CrlStore.check`)."""
    own, name = spki(issuer), subject_der(issuer)
    path = (issuer, *above)
    found: list[tuple[x509.Certificate, x509.Certificate | None]] = []
    seen = {own}
    for cert in above:  # names compared as each CA's certificate encodes them (cached: this runs on every login)
        if subject_der(cert) == name and spki(cert) not in seen and _may_sign_crls(cert):
            seen.add(spki(cert))
            found.append((cert, None))
    for cert in cas:
        if subject_der(cert) != name or spki(cert) in seen or not _may_sign_crls(cert) \
                or weak_signature_reason(cert) is not None \
                or not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            continue
        parent = next((p for p in path if p.subject == cert.issuer and _signed_by(cert, p)), None)
        if parent is not None:
            seen.add(spki(cert))
            found.append((cert, parent))
    return tuple(found)


@by_identity(4096)
def _may_sign_crls(cert: x509.Certificate) -> bool:
    """Its keyUsage, when present, allows cRLSign (RFC 5280 §6.3.3 (f))."""
    try:
        return cert.extensions.get_extension_for_class(x509.KeyUsage).value.crl_sign
    except x509.ExtensionNotFound:
        return True


@by_identity(4096)
def _signature_checks(cert: x509.Certificate) -> dict[bytes, bool]:
    """Whether ``cert``'s signature verified with each key it was checked with (by SubjectPublicKeyInfo): a
    configured CRL-signing certificate is looked at on every login, its signature verified once."""
    return {}


def _signed_by(cert: x509.Certificate, parent: x509.Certificate) -> bool:
    """``parent`` (its name and key) issued ``cert``."""
    checks, key = _signature_checks(cert), spki(parent)
    known = checks.get(key)
    if known is None:
        known = checks[key] = directly_issued(cert, parent)
    return known and cert.issuer == parent.subject


def source_status(state: SourceState) -> dict[str, object]:
    crl = state.crl
    # `is not None` throughout: an empty CRL (no entries) is falsy
    return {
        "source": state.source.location,
        "this_update": crl.this_update.isoformat() if crl is not None else None,
        "next_update": crl.next_update.isoformat() if crl is not None and crl.next_update else None,
        "entries": len(crl) if crl is not None else None,
        "fetched_at": state.fetched_at.isoformat() if state.fetched_at else None,
        "last_attempt": state.last_attempt.isoformat() if state.last_attempt else None,
        "last_error": state.last_error,
    }


def _recency(crl: VerifiedCrl) -> tuple[dt.datetime, int]:
    """Which of two CRLs of one CA is the later: thisUpdate, then cRLNumber (RFC 5280 §5.2.3: "monotonically
    increasing"), so that a CRL replayed from the same second cannot displace the one that followed it."""
    return crl.this_update, crl.number if crl.number is not None else -1
