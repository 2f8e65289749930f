"""The revocation checker: per-municipality policy over OCSP and CRLs, with a shared, verified cache.

For every certificate of a validated path below its trust anchor, the
policy's methods are tried in order (``ocsp`` then ``crl``, or the reverse)
until one gives a definite answer (good or revoked). ``revoked`` ends the
check at once. When no method answers, the policy decides: fail closed (the
default; the most telling reason code is raised) or soft fail (the login
continues and the outcome carries the reason, which the flow audits as
``revocation_soft_fail``).

An OCSP request goes by GET or POST as the municipality's ``ocsp.http_method`` and the responder's past refusals
say (RFC 5019 §5, :mod:`broker.pki.revocation.transport`); how each answer was asked for travels with it, into the
caches and the outcome.

OCSP answers are cached until their nextUpdate, capped by ``max_cache_time``:
in this process (a dict lookup, so a warm login costs microseconds) and in the
shared store (Redis) as the raw signed response, which every instance verifies
again before use, so the cache never holds unverified trust; a revocation for good (not a hold) is final and
stays shared until the certificate's notAfter, for every instance to refuse the card. A responder that
just failed is not asked again for ``retry_after`` (the login falls through to
the next method at once), and answers close to expiry are refreshed in the
background before they are needed.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import itertools
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from cryptography import x509

from broker.clock import Clock, passed
from broker.config.schema import RevocationConfig
from broker.errors import CertificateRejected, DependencyUnavailable
from broker.pki.naming import describe
from broker.pki.revocation.crls import (
    CrlSource,
    CrlStore,
    VerifiedCrl,
    crl_signers,
    distribution_point_urls,
    shared_record,
    spki,
    subject_der,
)
from broker.pki.revocation.http import FetchError, FetchLimits, HttpFetcher
from broker.pki.revocation.ocsp import OcspAnswer, build_request, responder_urls, verify_response
from broker.pki.revocation.transport import HttpMethod, OcspTransport
from broker.session.store import KeyValueStore

log = logging.getLogger("broker.revocation")

# which failure explains the most when no method answered
_SEVERITY = {"revocation_unknown": 4, "revocation_response_invalid": 3, "revocation_stale": 2,
             "revocation_unavailable": 1}
# definite answers, which a soft-fail policy does not override
_NEVER_SOFT = frozenset({"revoked", "revocation_unknown"})
# how long the shared copy of a revocation for good is kept at most: until the certificate's notAfter, which for
# SITHS and Efos cards is a few years off at most; a certificate valid for decades (a test card, a misissued one)
# does not hold its entry for as long
_FINAL_SHARED_AT_MOST = dt.timedelta(days=6 * 366)


def _final_key(key: str) -> str:
    """Where the shared copy of a revocation for good (RFC 5280 §3.3) is kept, beside ``key``'s latest answer."""
    return key + ":final"


@dataclass(frozen=True)
class RevocationPolicy:
    """A municipality's revocation settings, with its configured CRL sources."""

    config: RevocationConfig
    crl_sources: tuple[CrlSource, ...]
    preloaded: tuple[tuple[str, VerifiedCrl], ...] = ()   # verified CRL files, by source id
    cas: tuple[x509.Certificate, ...] = ()   # the municipality's CA certificates (trust anchors, intermediates)

    @functools.cached_property
    def cas_by_name(self) -> dict[bytes, tuple[x509.Certificate, ...]]:
        """The municipality's CA certificates (every configured CRL source's CAs are among them) by subject, as
        each encodes it: which CA names have more than one key (a separate CRL-signing key, a key rollover)."""
        named: dict[bytes, list[x509.Certificate]] = {}
        for ca in self.cas or tuple(itertools.chain(*(s.cas for s in self.crl_sources))):
            named.setdefault(subject_der(ca), []).append(ca)
        return {name: tuple(certs) for name, certs in named.items()}

    @property
    def skew(self) -> dt.timedelta:
        return self.config.clock_skew.timedelta

    def ocsp_limits(self) -> FetchLimits:
        o = self.config.ocsp
        return FetchLimits(o.connect_timeout.seconds, o.timeout.seconds, o.max_response_bytes)

    def crl_limits(self) -> FetchLimits:
        c = self.config.crl
        return FetchLimits(c.connect_timeout.seconds, c.timeout.seconds, c.max_bytes)


@dataclass(frozen=True)
class CertStatus:
    """How one certificate's status was established."""

    certificate: str            # described without personal data (see crls.describe)
    serial_hex: str
    status: str                 # good | revoked
    method: str                 # ocsp | crl
    source: str                 # responder URL or CRL location
    this_update: dt.datetime
    next_update: dt.datetime | None
    cached: bool
    valid_until: dt.datetime    # until when this answer may be relied on without asking again
    # OCSP: how the answer was asked for (GET or POST, broker.pki.revocation.transport), also when it is served
    # from a cache; None for a CRL, or a shared copy written by an earlier release
    http_method: HttpMethod | None = None

    def as_dict(self) -> dict[str, object]:
        return {"certificate": self.certificate, "serial": self.serial_hex, "status": self.status,
                "method": self.method, "source": self.source, "http_method": self.http_method,
                "this_update": self.this_update.isoformat(),
                "next_update": self.next_update.isoformat() if self.next_update else None, "cached": self.cached}


@dataclass(frozen=True)
class RevocationOutcome:
    """The result for a whole path. ``valid_until``: when the answer must be established again."""

    checked: tuple[CertStatus, ...]
    valid_until: dt.datetime | None
    soft_fail: CertificateRejected | None = None

    @property
    def summary(self) -> str:
        if self.soft_fail is not None:
            return "soft_fail"
        methods = sorted({c.method for c in self.checked})
        return "+".join(methods) if methods else "not_checked"


NOT_CHECKED = RevocationOutcome((), None)


@dataclass(frozen=True)
class _Cached:
    answer: OcspAnswer
    url: str
    expires: dt.datetime        # under the policy that fetched it
    lifetime: dt.timedelta
    fetched: dt.datetime        # when it was fetched, by whichever instance
    nonced: bool                # whether its nonce was checked
    http_method: HttpMethod | None = None   # how it was asked for (None: a shared copy from an earlier release)

    def until(self, policy: RevocationPolicy) -> dt.datetime:
        """How long the answer serves ``policy``, the one asking now: another municipality's (a shared CA), or the
        same after a reload, may allow an answer less time than the policy that fetched it."""
        return min(self.expires, _serves_until(self.answer, self.fetched, policy))

    def serves(self, policy: RevocationPolicy, now: dt.datetime) -> bool:
        """Fresh enough for ``policy`` now, and fetched with a nonce if ``policy`` asks for one. Fetched no later
        than now, give or take the clock skew (instances' clocks differ a little): a fetch time further ahead means
        the clock has been stepped back since, and max_cache_time counted from it would rely on the answer for
        the size of the step longer."""
        return (now < self.until(policy) and self.fetched <= now + policy.skew
                and (self.nonced or not policy.config.ocsp.nonce))


# How long an "unknown" answer is held: the responder does not know the serial (RFC 6960 §2.2), which for a card
# issued minutes ago changes as soon as the CA's database reaches the responder. Held this long, retries are
# answered from the cache; held to nextUpdate (up to max_cache_time), a new card would be refused for an hour.
_UNKNOWN_SERVES_AT_MOST = dt.timedelta(seconds=60)


def _serves_until(answer: OcspAnswer, fetched: dt.datetime, policy: RevocationPolicy) -> dt.datetime:
    """Until when ``answer`` serves ``policy``: its nextUpdate (or thisUpdate + ``max_age_without_next_update``),
    and no longer than ``max_cache_time`` counted from when it was fetched (a shared copy read later is no fresher
    for it); an "unknown" no longer than :data:`_UNKNOWN_SERVES_AT_MOST`."""
    config = policy.config
    fresh_until = answer.next_update or (answer.this_update + config.ocsp.max_age_without_next_update.timedelta)
    held_for = config.max_cache_time.timedelta
    if answer.status == "unknown":
        held_for = min(held_for, _UNKNOWN_SERVES_AT_MOST)
    return min(fresh_until, fetched + held_for)


def _status_key(url: str) -> str:
    """Where a responder's last success and failure are recorded for `broker revocation status`."""
    return "ocsp-status:" + hashlib.sha256(url.encode()).hexdigest()[:40]


class RevocationChecker:
    """Establishes revocation status for validated paths. One per process; thread-safe."""

    def __init__(self, clock: Clock, *, crls: CrlStore, fetcher: HttpFetcher | None,
                 shared: KeyValueStore | None, retry_after: dt.timedelta = dt.timedelta(seconds=10),
                 refresh_interval: float = 30.0, observe: Callable[[str, str], None] | None = None) -> None:
        """``observe(method, result)`` hears of every lookup: result cache_hit, shared_hit, fetched or error."""
        self._clock = clock
        self._observe = observe or (lambda _method, _result: None)
        self.crls = crls
        self._fetcher = fetcher
        self.ocsp_transport = OcspTransport(fetcher) if fetcher is not None else None
        self._shared = shared
        self._retry_after = retry_after
        self._refresh_interval = refresh_interval
        self._cache: dict[str, _Cached] = {}
        self._down: dict[str, tuple[dt.datetime, str]] = {}  # responder URL -> (when it failed, why)
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._pending: set[str] = set()
        self._stop = threading.Event()

    def register(self, policy: RevocationPolicy) -> None:
        """Hold a policy's configured CRL sources, seeded with the CRL files verified at load."""
        preloaded = dict(policy.preloaded)
        for source in policy.crl_sources:
            self.crls.add(source, preloaded.get(source.id))

    # --- the check -----------------------------------------------------------------------

    def check(self, chain: Sequence[x509.Certificate], policy: RevocationPolicy | None) -> RevocationOutcome:
        """Check ``chain`` (leaf first, anchor last) under ``policy``; None means checking is off.

        Every certificate below the anchor is checked (RFC 5280 §6.3), also after a soft failure on one of
        them: a revoked CA above an unanswerable certificate still refuses the login. ``revoked`` and
        ``revocation_unknown`` (a responder's definite answer that it did not issue the status of this
        serial, RFC 6960 §2.2) are never soft-failed. The outcome's ``valid_until`` is the earliest moment an
        answer relied on stops being fresh (a cached answer's own expiry, not the time of this check plus
        the cache time).
        """
        if policy is None or policy.config.mode == "none":
            return NOT_CHECKED
        self._ensure_background()
        now = self._clock.now()
        checked: list[CertStatus] = []
        soft_fail: CertificateRejected | None = None
        for index, (cert, issuer) in enumerate(itertools.pairwise(chain)):
            try:
                checked.append(self._check_one(cert, issuer, policy, now, leaf=index == 0, above=chain[index + 2:]))
            except CertificateRejected as exc:
                if exc.reason in _NEVER_SOFT or policy.config.failure == "fail_closed":
                    raise
                # soft fail, explicitly configured: the caller audits why; the rest of the path is still checked
                soft_fail = soft_fail or exc
        until = min((c.valid_until for c in checked), default=None)
        cap = now + policy.config.max_cache_time.timedelta
        if soft_fail is not None:  # look again soon
            cap = now + min(self._retry_after * 30, policy.config.max_cache_time.timedelta)
        return RevocationOutcome(tuple(checked), min(until, cap) if until else cap, soft_fail=soft_fail)

    def _check_one(self, cert: x509.Certificate, issuer: x509.Certificate, policy: RevocationPolicy,
                   now: dt.datetime, *, leaf: bool, above: Sequence[x509.Certificate] = ()) -> CertStatus:
        failures: list[CertificateRejected] = []
        for method in policy.config.methods:
            if method == "ocsp" and not self._ocsp_urls(cert, policy, leaf=leaf):
                # not applicable: no exception on the hot path of a login that goes on to the CRL
                failures.append(CertificateRejected("revocation_unavailable",
                                                    f"no OCSP responder for {describe(cert)}"))
                continue
            try:
                if method == "ocsp":
                    return self._ocsp(cert, issuer, policy, now, leaf=leaf)
                return self._crl(cert, issuer, policy, now, above)
            except CertificateRejected as exc:
                if exc.reason == "revoked":
                    raise
                failures.append(exc)
        worst = max(failures, key=lambda e: _SEVERITY.get(e.reason, 0))
        detail = "; ".join(f"{m}: {f.detail}" for m, f in zip(policy.config.methods, failures, strict=False))
        raise CertificateRejected(worst.reason, detail, params=dict(worst.params))

    # --- CRL -------------------------------------------------------------------------------

    def _crl(self, cert: x509.Certificate, issuer: x509.Certificate, policy: RevocationPolicy,
             now: dt.datetime, above: Sequence[x509.Certificate] = ()) -> CertStatus:
        """The CRL check of ``cert``; ``above``: the path above ``issuer``, the trust anchor last. CRLs signed by
        another key of ``issuer``'s name count when that key's certificate leads to the same anchor
        (:func:`crl_signers`, RFC 5280 §6.3.3 (f))."""
        sources = list(policy.crl_sources)
        # other keys of the issuer's name: only looked for when the path or the configuration holds another
        # certificate of that name (this runs on every login)
        name, own = subject_der(issuer), spki(issuer)
        configured = policy.cas_by_name.get(name, ())
        another = any(spki(ca) != own for ca in configured) or (above and subject_der(above[0]) == name)
        signers = crl_signers(issuer, above, configured, now) if another else ()
        if policy.config.crl.distribution_points:
            known = {s.location for s in sources}
            margin = policy.config.crl.refresh_margin.timedelta
            sources += [CrlSource(url, "url", (issuer, *(signer for signer, _ in signers)), policy.crl_limits(),
                                  margin)
                        for url in distribution_point_urls(cert) if url not in known]
            # and where the status of a CRL-signing certificate off the path is found: its own distribution points
            sources += [CrlSource(url, "url", (signed_by,), policy.crl_limits(), margin)
                        for signer, signed_by in signers if signed_by is not None
                        for url in distribution_point_urls(signer) if url not in known]
        try:
            crl, state = self.crls.check(cert, issuer, sources, now, policy.skew, signers)
        except CertificateRejected as exc:
            self._observe("crl", "revoked" if exc.reason == "revoked" else "error")
            raise
        self._observe("crl", "cache_hit")
        # a usable CRL has a nextUpdate (VerifiedCrl.usable)
        return CertStatus(describe(cert), f"{cert.serial_number:x}", "good", "crl", state.source.location,
                          crl.this_update, crl.next_update, cached=True, valid_until=crl.next_update or now)

    # --- OCSP ------------------------------------------------------------------------------

    @staticmethod
    def _key(cert: x509.Certificate, issuer: x509.Certificate) -> str:
        # a CertID is the issuer's name and key (RFC 6960 §4.1.1): two CAs may share a key under different
        # names, and a serial number is unique only per issuer name (RFC 5280 §4.1.2.2)
        issuer_id = hashlib.sha256(cert.issuer.public_bytes() + spki(issuer)).hexdigest()[:32]
        return f"ocsp:{issuer_id}:{cert.serial_number:x}"

    @staticmethod
    def _ocsp_urls(cert: x509.Certificate, policy: RevocationPolicy, *, leaf: bool) -> tuple[str, ...]:
        override = policy.config.ocsp.url
        return (override,) if (leaf and override) else responder_urls(cert)

    def _ocsp(self, cert: x509.Certificate, issuer: x509.Certificate, policy: RevocationPolicy,
              now: dt.datetime, *, leaf: bool) -> CertStatus:
        urls = self._ocsp_urls(cert, policy, leaf=leaf)
        key = self._key(cert, issuer)
        cached = self._cached(key, cert, issuer, policy, now)
        if cached is not None:
            if not cached.answer.final and cached.expires - now < cached.lifetime / 5:
                self._refresh_ahead(key, cert, issuer, policy, cached.url)
            return self._status(cert, cached, cached=True, until=cached.until(policy))
        # the responders of the certificate's AIA are alternatives (RFC 5280 §4.2.2.1): when one gives no answer
        # that can be used, the next is asked, all of them within the one ocsp.timeout; a "revoked" ends it at once
        limits = policy.ocsp_limits()
        deadline = time.monotonic() + limits.total_timeout
        failures: list[CertificateRejected] = []
        for url in urls:
            left = deadline - time.monotonic()
            if failures and left <= 0:
                break
            try:
                fetched = self._fetch_ocsp(key, url, cert, issuer, policy, now, limits=limits if not failures else
                                           replace(limits, connect_timeout=min(limits.connect_timeout, left),
                                                   total_timeout=left))
            except CertificateRejected as exc:
                self._observe("ocsp", "error")
                if exc.reason == "revoked":
                    raise
                failures.append(exc)
                continue
            self._observe("ocsp", "fetched")
            return self._status(cert, fetched, cached=False, until=fetched.until(policy))
        skipped = len(urls) - len(failures)
        if len(failures) == 1 and not skipped:
            raise failures[0]
        worst = max(failures, key=lambda e: _SEVERITY.get(e.reason, 0))
        raise CertificateRejected(worst.reason, "; ".join(f.detail for f in failures) + (
            f"; {skipped} more responder(s) not asked: ocsp.timeout reached" if skipped else ""),
                                  params=dict(worst.params))

    def _cached(self, key: str, cert: x509.Certificate, issuer: x509.Certificate, policy: RevocationPolicy,
                now: dt.datetime) -> _Cached | None:
        with self._lock:
            entry = self._cache.get(key)
        # a revocation for good held from before still answers once stale (RFC 5280 §3.3, as a CRL held past its
        # nextUpdate does): neither a responder that is down now (soft fail) nor a later "good" lifts it
        if entry is not None and (entry.serves(policy, now) or entry.answer.final):
            self._observe("ocsp", "cache_hit")
            return entry
        if self._shared is None:
            return None
        try:
            # a revocation for good first: it is kept under a key of its own, which no later answer overwrites
            raw = self._shared.get(_final_key(key)) or self._shared.get(key)
        except DependencyUnavailable:
            return None
        if raw is None:
            return None
        try:
            stored = json.loads(raw)
            if "fetched" not in stored:  # written by an earlier release: fetched anew, silently
                return None
            der = bytes.fromhex(stored["der"])
            url = str(stored["url"])
            method = stored.get("http_method")
            http_method: HttpMethod | None = method if method in ("GET", "POST") else None
            fetched = dt.datetime.fromisoformat(stored["fetched"])
            shared_expiry = dt.datetime.fromisoformat(stored["expires"])
            if shared_expiry.tzinfo is None or fetched.tzinfo is None:
                return None
            # past its freshness (judged by this instance's clock, not by the store's wall-clock TTL), or asked for
            # under a nonce policy (a shared copy's nonce was no request of ours), only a revocation for good still
            # answers (RFC 5280 §3.3), as it does from this process's own cache; the "final" mark only spares
            # verifying a copy that cannot serve: what counts is the signed answer's own status
            only_final = now >= shared_expiry or policy.config.ocsp.nonce
            if only_final and stored.get("final") is not True:
                return None
            # the shared copy is raw, signed data: verified here before it is trusted; a revocation for good kept
            # past its freshness as of when it was fetched, as its fetcher verified it (its delegated responder's
            # certificate may have expired since)
            answer = verify_response(der, cert, issuer, now=fetched if only_final else now, skew=policy.skew,
                                     max_age_without_next_update=policy.config.ocsp
                                     .max_age_without_next_update.timedelta)
            self._check_delegate_status(answer, issuer, policy, now)
        except (CertificateRejected, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("ignoring unusable shared OCSP response for %s: %s", key, exc)
            return None
        if only_final and not answer.final:
            return None
        entry = self._remember(key, url, answer, policy, now, der=None, fetched=fetched, nonced=False,
                               not_after=shared_expiry, http_method=http_method)
        if not (entry.serves(policy, now) or answer.final):
            return None
        self._observe("ocsp", "shared_hit")
        return entry

    def _remember(self, key: str, url: str, answer: OcspAnswer, policy: RevocationPolicy, now: dt.datetime,
                  *, der: bytes | None, fetched: dt.datetime, nonced: bool, http_method: HttpMethod | None,
                  not_after: dt.datetime | None = None, certificate_ends: dt.datetime | None = None) -> _Cached:
        """Hold ``answer`` in this process, and share it when ``der`` is given: until it stops serving, or, a
        revocation for good (RFC 5280 §3.3), until ``certificate_ends`` (the certificate's notAfter: after it no
        path through the card validates), at most :data:`_FINAL_SHARED_AT_MOST`, so that every instance refuses
        the card as this one does once the answer is no longer fresh."""
        expires = _serves_until(answer, fetched, policy)
        if not_after is not None:  # a shared copy keeps the expiry its fetcher gave it
            expires = min(expires, not_after)
        entry = _Cached(answer, url, expires, max(expires - now, dt.timedelta(seconds=1)), fetched, nonced,
                        http_method)
        with self._lock:
            self._cache[key] = entry
            if len(self._cache) > 100_000:  # bound memory: drop expired entries
                for k in [k for k, v in self._cache.items() if v.expires <= now]:
                    del self._cache[k]
        kept = expires
        if answer.final and certificate_ends is not None:
            kept = max(expires, min(certificate_ends, now + _FINAL_SHARED_AT_MOST))
        if der is not None and self._shared is not None and kept > now:
            try:
                # a revocation for good under a key of its own: an instance that still held a "good" from before
                # and refreshes it from a responder that says "good" again (a replica behind) does not replace it
                shared = {"der": der.hex(), "url": url, "fetched": fetched.isoformat(),
                          "expires": expires.isoformat(), "final": answer.final, "http_method": http_method}
                self._shared.put(_final_key(key) if answer.final else key, json.dumps(shared).encode(),
                                 (kept - now).total_seconds())
            except DependencyUnavailable as exc:
                log.warning("could not share the OCSP response for %s: %s", key, exc)
        return entry

    def _fetch_ocsp(self, key: str, url: str, cert: x509.Certificate, issuer: x509.Certificate,
                    policy: RevocationPolicy, now: dt.datetime, *, limits: FetchLimits | None = None) -> _Cached:
        ocsp_cfg = policy.config.ocsp
        with self._lock:
            down = self._down.get(url)
        if down is not None and not passed(down[0], self._retry_after, now):
            raise CertificateRejected("revocation_unavailable",
                                      f"OCSP responder {url} failed {int((now - down[0]).total_seconds())} s ago "
                                      f"({down[1]})")
        transport = self.ocsp_transport
        if transport is None:
            raise CertificateRejected("revocation_unavailable", "online OCSP checking is off")
        nonce = os.urandom(16) if ocsp_cfg.nonce else None
        request = build_request(cert, issuer, nonce=nonce, cert_id_hash=ocsp_cfg.cert_id_hash)
        try:
            # GET or POST (RFC 5019 §5), and the other once when the responder refuses the method
            exchange = transport.ask(url, request, setting=ocsp_cfg.http_method, nonced=nonce is not None,
                                     limits=limits or policy.ocsp_limits())
        except FetchError as exc:
            self._record_ocsp(url, issuer, str(exc), now)
            raise CertificateRejected("revocation_unavailable", f"OCSP responder {url}: {exc}") from None
        try:
            answer = verify_response(exchange.der, cert, issuer, now=now, skew=policy.skew, nonce=nonce,
                                     max_age_without_next_update=ocsp_cfg.max_age_without_next_update.timedelta)
            self._check_delegate_status(answer, issuer, policy, now)
        except CertificateRejected as exc:
            self._record_ocsp(url, issuer, f"{exc.reason}: {exc.detail} (by {exchange.method})", now)
            raise CertificateRejected(exc.reason, f"OCSP responder {url} (by {exchange.method}): {exc.detail}",
                                      params=dict(exc.params)) from None
        self._record_ocsp(url, issuer, None, now, method=exchange.method)
        return self._remember(key, url, answer, policy, now, der=exchange.der, fetched=now,
                              nonced=nonce is not None, http_method=exchange.method,
                              certificate_ends=cert.not_valid_after_utc + policy.skew)

    def _check_delegate_status(self, answer: OcspAnswer, issuer: x509.Certificate, policy: RevocationPolicy,
                               now: dt.datetime) -> None:
        """RFC 6960 §4.2.2.2.1: a delegated responder without id-pkix-ocsp-nocheck leaves its own status to the
        client's policy. The broker's: a delegate that a CRL of the CA held now lists (from the municipality's
        sources, or the delegate's distribution point where one is held already) signs nothing it accepts. Nothing
        is fetched for it on the login path; when no CRL held can say, the answer stands (asking the responder
        about itself would prove nothing)."""
        delegate = answer.unchecked_delegate
        if delegate is None:
            return
        sources = [*policy.crl_sources, *(CrlSource(url, "url", (issuer,), policy.crl_limits(),
                                                    policy.config.crl.refresh_margin.timedelta)
                                          for url in distribution_point_urls(delegate))]
        revoked_at = self.crls.held_revocation(delegate, issuer, sources, now, policy.skew)
        if revoked_at is not None:
            raise CertificateRejected("revocation_response_invalid",
                                      f"the delegated responder's certificate {describe(delegate)} is revoked "
                                      f"({revoked_at.isoformat()})")

    def _status(self, cert: x509.Certificate, entry: _Cached, *, cached: bool, until: dt.datetime) -> CertStatus:
        answer = entry.answer
        asked = f"{entry.url}, by {entry.http_method}" if entry.http_method else entry.url
        if answer.status == "revoked":
            at = answer.revoked_at or answer.this_update
            reason = f", reason {answer.revocation_reason}" if answer.revocation_reason else ""
            raise CertificateRejected("revoked", f"OCSP ({asked}): serial {cert.serial_number:x} revoked "
                                                 f"{at.isoformat()}{reason}",
                                      params={"revocation_date": at.date().isoformat()})
        if answer.status == "unknown":
            raise CertificateRejected("revocation_unknown",
                                      f"OCSP ({asked}) does not know serial {cert.serial_number:x}")
        # how long it serves the asking policy: nextUpdate, or thisUpdate + max_age_without_next_update, capped by
        # the cache time counted from when the answer was fetched
        return CertStatus(describe(cert), f"{cert.serial_number:x}", "good", "ocsp", entry.url,
                          answer.this_update, answer.next_update, cached=cached, valid_until=until,
                          http_method=entry.http_method)

    def _record_ocsp(self, url: str, issuer: x509.Certificate, error: str | None, now: dt.datetime, *,
                     method: HttpMethod | None = None) -> None:
        with self._lock:
            if error is None:
                self._down.pop(url, None)
            else:
                self._down[url] = (now, error)
        if error is not None:
            log.warning("OCSP responder %s: %s", url, error)
        if self._shared is None:
            return
        record_key = _status_key(url)
        try:
            record = shared_record(self._shared.get(record_key)) \
                or {"responder": url, "issuer": issuer.subject.rfc4514_string()}
            if error is None:
                record["last_ok"] = now.isoformat()
                record["last_ok_method"] = method
            else:
                record["last_error"] = error
                record["last_error_at"] = now.isoformat()
            self._shared.put(record_key, json.dumps(record).encode(), 30 * 86400)
        except DependencyUnavailable:
            pass

    def ocsp_status(self, url: str) -> dict[str, object] | None:
        if self._shared is None:
            return None
        return shared_record(self._shared.get(_status_key(url)))

    def last_ocsp_error(self, url: str) -> tuple[dt.datetime, str] | None:
        with self._lock:
            return self._down.get(url)

    # --- background work -------------------------------------------------------------------

    def _ensure_background(self) -> None:
        """Start this process's refresher on first use (after a fork, each worker starts its own)."""
        pid = os.getpid()
        if self._pid == pid or self._refresh_interval <= 0:
            return
        with self._lock:
            if self._pid == pid:
                return
            self._pid = pid
            self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="revocation")
            self._pending = set()
        thread = threading.Thread(target=self._loop, name="crl-refresher", daemon=True)
        thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._refresh_interval):
            try:
                self.crls.refresh_due()
            except Exception:  # a background pass must never die
                log.exception("CRL refresh pass failed")

    def _refresh_ahead(self, key: str, cert: x509.Certificate, issuer: x509.Certificate,
                       policy: RevocationPolicy, url: str) -> None:
        executor = self._executor
        with self._lock:
            if executor is None or key in self._pending:
                return
            self._pending.add(key)

        def task() -> None:
            try:
                self._fetch_ocsp(key, url, cert, issuer, policy, self._clock.now())
            except CertificateRejected as exc:
                log.info("background OCSP refresh of %s: %s", key, exc.detail)
            finally:
                with self._lock:
                    self._pending.discard(key)

        executor.submit(task)

    def refresh_now(self) -> int:
        """Run one CRL refresh pass in the caller's thread (operators' tools and tests)."""
        return self.crls.refresh_due()

    def close(self) -> None:
        self._stop.set()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
