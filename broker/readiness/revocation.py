"""Can the broker learn, on go-live day, whether a municipality's certificates are revoked?

Every CRL the broker would use (configured files and URLs, the distribution points the CA
certificates and the sample certificate name) is fetched now, verified against its issuer and
judged fresh (RFC 5280 §5.1.2.5); every OCSP responder the CA certificates name is asked about
that CA (RFC 6960 §4.2), so a responder that is down, slow or signs wrongly shows before users
meet it. The users' responder is asked about the sample certificate through the revocation engine
itself, the way a login asks (methods in the configured order), while :class:`RevocationLookups`
listens to the engine's ``observe`` hook: the engine falls back to the CRL silently, so a dead
responder behind a working CRL would otherwise pass unseen while logins wait for it.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from broker.config.schema import CertificateLogin
from broker.errors import CertificateRejected
from broker.pki.revocation.crls import CRL_FUTURE_TOLERANCE, distribution_point_urls, parse_crl, verify_crl
from broker.pki.revocation.engine import RevocationChecker, RevocationPolicy
from broker.pki.revocation.http import FetchError, HttpFetcher
from broker.pki.revocation.ocsp import build_request, responder_urls, verify_response
from broker.pki.revocation.transport import OcspTransport
from broker.readiness.model import Check
from broker.readiness.trust import issuing_cas, name_of

_NOT_FETCHED = "CRL not fetched"
_FILE_LAPSES = "CRL file lapses soon"
# how long before its nextUpdate a configured CRL file is warned of: its replacement is due (CAs publish CRLs that
# live days, so a longer window would warn of every such file at every run)
CRL_FILE_WARNING = dt.timedelta(days=1)


class RevocationLookups:
    """What a :class:`RevocationChecker` did, heard through its ``observe(method, result)`` hook: ``method``
    ocsp or crl, ``result`` cache_hit, shared_hit, fetched, error or revoked, in the order of the lookups."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def __call__(self, method: str, result: str) -> None:
        self.events.append((method, result))

    def clear(self) -> None:
        self.events.clear()


@dataclass(frozen=True)
class UsersRevocation:
    """The engine a login uses (readiness builds one per run) and what it hears from it."""

    checker: RevocationChecker
    lookups: RevocationLookups


def revocation_checks(cl: CertificateLogin, policy: RevocationPolicy | None, fetcher: HttpFetcher | None,
                      now: dt.datetime, sample: x509.Certificate | None,
                      users: UsersRevocation | None = None, *, at: dt.datetime | None = None,
                      window: dt.timedelta = dt.timedelta(0)) -> list[Check]:
    """``at`` (default ``now``) and ``window``: when CRL files, which nothing renews but the operator, must still be
    current (the go-live date, ``--at``); what is fetched is judged ``now``."""
    config = cl.revocation
    if config.mode == "none" or policy is None:
        return [Check("revocation.mode", "warn", "revocation checking is off",
                      "mode: none: a revoked card would still log in",
                      "Set revocation.mode: check with the CA's OCSP responder or CRLs before go-live.")]
    checks = [Check("revocation.mode", "pass", "revocation checked",
                    f"methods {', '.join(config.methods)}, failure {config.failure}")]
    if config.failure != "fail_closed":
        checks.append(Check("revocation.failure", "warn", "revocation soft-fail",
                            f"failure: {config.failure}: when no source answers, logins go on (audited)",
                            "Use fail_closed unless the municipality accepts the risk in writing."))
    cas = (*cl.anchors(), *cl.intermediate_certificates())
    issuers = CrlIssuers()   # the CAs a CRL was read from, by the kind of certificate it answers for
    crl_checks = _crl_checks(cl, policy, fetcher, now, cas, sample, issuers, at or now, window) \
        if "crl" in config.methods else []
    checks += crl_checks
    if "ocsp" in config.methods:
        # the users' engine's transport when there is one: a CA responder that refused GET is asked by POST
        # for the sample too, as one process of the broker would
        transport = users.checker.ocsp_transport if users is not None else None
        if transport is None and fetcher is not None:
            transport = OcspTransport(fetcher)
        checks += _ocsp_checks(cl, policy, transport, now, sample)
        if sample is not None and fetcher is not None and users is not None:
            users_check = users_ocsp_check(cl, policy, users, sample)
            if users_check is not None:
                checks.append(users_check)
    # a CRL source that failed to read is reported already, and may be the one that answers for a CA (a warning,
    # such as "no CRL source known" or one without nextUpdate, read what there was)
    crls_read = not any(c.status == "fail" or c.title == _NOT_FETCHED for c in crl_checks)
    checks += _unanswerable_cas(cl, issuers.of_cas if crls_read else None)
    return checks


@dataclass(frozen=True)
class CrlIssuers:
    """The CAs (their names, DER) a CRL was read from: one for end-entity certificates (``of_users``), one for CA
    certificates (``of_cas``), or both. A CRL for one kind only (onlyContainsUserCerts, onlyContainsCACerts: RFC 5280
    §5.2.5, §6.3.3 (b)(2)) says nothing of the other."""

    of_users: set[bytes] = field(default_factory=set)
    of_cas: set[bytes] = field(default_factory=set)


def _unanswerable_cas(cl: CertificateLogin, crl_issuers: set[bytes] | None) -> list[Check]:
    """``revocation.ca_status``: every CA certificate below the anchor needs a definite status at each login, as
    the users' certificates do (RFC 5280 §6.3; the engine checks the whole path): from its OCSP responder (its
    own Authority Information Access: ``ocsp.url`` serves the users' certificates only), its CRL distribution
    point (``distribution_points: true``), or a configured CRL from the CA above it. A CA certificate with none
    of these refuses every login below it as revocation_unavailable (soft fail: lets them through unchecked),
    however well the users' own sources work. ``crl_issuers``: the CAs a configured CRL for CA certificates was read
    from, None when a CRL source could not be read (it may be the missing one, and is reported already)."""
    methods = cl.revocation.methods
    dp = cl.revocation.crl.distribution_points
    cas = (*cl.intermediate_certificates(), *cl.anchors())
    after = "logins go on unchecked (soft_fail, audited)" if cl.revocation.failure == "soft_fail" \
        else "every login with a card below it is refused (revocation_unavailable)"
    checks = []
    for ca in cl.intermediate_certificates():
        parent = next((c for c in cas if c.subject == ca.issuer and c is not ca), None)
        if parent is None or ca.issuer == ca.subject:
            continue  # not below a configured CA (the trust checks say so), or self-issued
        ways = []
        if "ocsp" in methods and responder_urls(ca):
            ways.append("its OCSP responder")
        if "crl" in methods:
            if crl_issuers is None or parent.subject.public_bytes() in crl_issuers:
                ways.append(f"a CRL from {name_of(parent)}")
            elif dp and distribution_point_urls(ca):
                ways.append("its CRL distribution point")
        if ways:
            continue
        missing = []
        if "ocsp" in methods:
            missing.append("it names no OCSP responder (Authority Information Access)")
        if "crl" in methods:
            missing.append(f"no CRL from {name_of(parent)} is configured"
                           + (" and it names no CRL distribution point" if dp else " (distribution_points: false)"))
        looked = ", and ".join(missing)
        checks.append(Check(
            "revocation.ca_status", "fail", "no source for the CA certificate's status",
            f"{name_of(ca)}: {looked}; the broker checks every certificate below the root, so {after}",
            f"Add the CRL of {name_of(parent)} to certificate.revocation.crl (files or urls)"
            + (", or list crl in revocation.methods" if "crl" not in methods else "") + ".", name_of(ca)))
    return checks


def _crl_checks(cl: CertificateLogin, policy: RevocationPolicy, fetcher: HttpFetcher | None, now: dt.datetime,
                cas: Sequence[x509.Certificate], sample: x509.Certificate | None, issuers: CrlIssuers,
                at: dt.datetime, window: dt.timedelta) -> list[Check]:
    """``issuers`` gathers the CAs a CRL was read from, by the kind of certificate it answers for."""
    checks: list[Check] = []
    for f in cl.revocation.crl.files:
        checks.append(_judge_crl(f"file {f.path}", lambda f=f: Path(f.path).read_bytes(), cas, now, policy,
                                 kind="file", issuers=issuers, lapse=(at, window)))
    urls: list[str] = [str(u) for u in cl.revocation.crl.urls]
    if cl.revocation.crl.distribution_points:
        for cert in (*cl.intermediate_certificates(), *((sample,) if sample is not None else ())):
            urls += [u for u in distribution_point_urls(cert) if u not in urls]
    for url in urls:
        if fetcher is None:
            checks.append(Check("revocation.crl", "warn", _NOT_FETCHED, f"{url}: network checks are off",
                                "Run readiness without --offline.", url))
            continue
        checks.append(_judge_crl(url, lambda url=url: fetcher.get(url, policy.crl_limits(), "application/pkix-crl"),
                                 cas, now, policy, kind="url", issuers=issuers))
    if checks and all(c.status == "pass" or c.title == _FILE_LAPSES for c in checks):  # a failed source is reported
        checks += _uncovered_cas(cl, issuers.of_users)
    if not checks:
        checks.append(Check("revocation.crl", "warn", "no CRL source known",
                            "no CRL files or URLs are configured and no CA certificate names a distribution point; "
                            "the users' certificates may name one",
                            "Configure the CA's CRL URL, or a sample certificate, so the source can be checked "
                            "before go-live."))
    return checks


def _uncovered_cas(cl: CertificateLogin, issuers: set[bytes]) -> list[Check]:
    """An issuing CA of which no CRL for end-entity certificates was read, where CRLs are the only method and the
    users' certificates' own distribution points are not used: every login with its cards ends in
    revocation_unavailable."""
    if cl.revocation.methods != ("crl",) or cl.revocation.crl.distribution_points:
        return []
    return [Check("revocation.crl", "fail", "no CRL source for the issuing CA",
                  f"no CRL file or URL gives a CRL from {name_of(ca)}, and CRLs are the only method: every login "
                  "with its cards is refused (or soft-fails) as revocation_unavailable",
                  "Add the CA's CRL to certificate.revocation.crl (files or urls).", name_of(ca))
            for ca in issuing_cas(cl) if ca.subject.public_bytes() not in issuers]


def _judge_crl(where: str, read: object, cas: Sequence[x509.Certificate], now: dt.datetime,
               policy: RevocationPolicy, *, kind: str, issuers: CrlIssuers | None = None,
               lapse: tuple[dt.datetime, dt.timedelta] | None = None) -> Check:
    """``lapse``: (instant, window) a CRL file must stay current through: nothing fetches a new one, so logins refuse
    (fail closed) once its nextUpdate passes unless the operator replaces the file. FAIL when it has passed at the
    instant (``--at``, the go-live date), WARN when it passes within the window after it."""
    assert callable(read)
    try:
        verified = verify_crl(parse_crl(read()), cas)
    except (OSError, FetchError) as exc:
        if kind != "url":
            fix = "Restore the CRL file."
        elif "CERTIFICATE_VERIFY_FAILED" in str(exc) or "certificate verify failed" in str(exc):
            # the server answered; its TLS certificate is not one the host trusts (a CRL is signed itself, so
            # plain http is the usual and sufficient way to publish one)
            fix = ("The CRL server's TLS certificate is not trusted by this host: add its CA to the system trust "
                   "store, or use the CA's http:// CRL URL (a CRL is signed, so plain HTTP is the usual way to "
                   "publish one: RFC 5280 §4.2.1.13).")
        else:
            fix = "Make sure the broker's hosts reach the CRL URL (proxy, firewall, DNS)."
        return Check("revocation.crl", "fail", "CRL unreachable", f"{where}: {exc}", fix, where)
    except ValueError as exc:
        return Check("revocation.crl", "fail", "CRL not valid", f"{where}: {exc}",
                     "Ask the CA why its CRL does not verify; check that the configured CA certificates are "
                     "the ones that sign it.", where)
    issuer = verified.crl.issuer.rfc4514_string()
    if issuers is not None:
        if not verified.only_ca_certs:
            issuers.of_users.add(verified.issuer_der)
        if not verified.only_user_certs:
            issuers.of_cas.add(verified.issuer_der)
    if verified.this_update > now + CRL_FUTURE_TOLERANCE:  # the broker refuses it so (broker.pki.revocation.crls)
        return Check("revocation.crl", "fail", "CRL not yet valid",
                     f"{where}: issued by {issuer}; thisUpdate {verified.this_update:%Y-%m-%d %H:%M} UTC lies in the "
                     "future: logins cannot use it", "Check the CA's clock (and this host's), and publish it again.",
                     where)
    if verified.next_update is None:
        return Check("revocation.crl", "warn", "CRL without nextUpdate", f"{where}: issued by {issuer} "
                     f"{verified.this_update:%Y-%m-%d %H:%M}, no nextUpdate", "Ask the CA for CRLs with nextUpdate.",
                     where)
    if verified.inverted:  # the broker never takes it for "good" (broker.pki.revocation.crls)
        return Check("revocation.crl", "fail", "CRL window inverted",
                     f"{where}: issued by {issuer}; nextUpdate {verified.next_update:%Y-%m-%d %H:%M:%S} UTC is before "
                     f"its thisUpdate {verified.this_update:%Y-%m-%d %H:%M:%S} UTC: logins cannot use it",
                     "Check the CA's clock, and have it publish the CRL again.", where)
    if verified.next_update <= now - policy.skew:  # (not nextUpdate + skew: 9999-12-31 has no later instant)
        return Check("revocation.crl", "fail", "CRL stale",
                     f"{where}: issued by {issuer}; nextUpdate {verified.next_update:%Y-%m-%d %H:%M} UTC has passed",
                     "Ask the CA to publish a fresh CRL" + (" and replace the file." if kind == "file" else "."),
                     where, verified.next_update)
    if lapse is not None:
        at, window = lapse
        until = f"{verified.next_update:%Y-%m-%d %H:%M} UTC"
        fix = ("Replace the file with the CA's current CRL before then and have it replaced on every CA publication "
               "(or let the broker fetch it: certificate.revocation.crl.urls).")
        if verified.next_update <= at - policy.skew:
            return Check("revocation.crl", "fail", "CRL file lapses before the date judged",
                         f"{where}: issued by {issuer}; nextUpdate {until} is before {at:%Y-%m-%d %H:%M} UTC: nothing "
                         "fetches a newer one, so from then every login it answers for is refused (soft fail: goes "
                         "unchecked) unless the file is replaced", fix, where, verified.next_update)
        if verified.next_update - at <= window:
            left = verified.next_update - at
            return Check("revocation.crl", "warn", _FILE_LAPSES,
                         f"{where}: issued by {issuer}; nextUpdate {until} (in {left.days} days): nothing fetches a "
                         "newer one, so once it passes every login it answers for is refused (soft fail: goes "
                         "unchecked) unless the file is replaced", fix, where, verified.next_update)
    return Check("revocation.crl", "pass", "CRL fresh and signed",
                 f"{where}: issued by {issuer}, {len(verified)} entries, next update "
                 f"{verified.next_update:%Y-%m-%d %H:%M} UTC", None, where, verified.next_update)


def _ocsp_checks(cl: CertificateLogin, policy: RevocationPolicy, transport: OcspTransport | None,
                 now: dt.datetime, sample: x509.Certificate | None) -> list[Check]:
    checks: list[Check] = []
    cas = (*cl.anchors(), *cl.intermediate_certificates())
    for cert in cl.intermediate_certificates():  # CA certificates always use their own AIA responder
        issuer = next((c for c in cas if c.subject == cert.issuer and c is not cert), None)
        if issuer is None:
            continue
        for url in responder_urls(cert):
            checks.append(_ask(url, cert, issuer, policy, transport, now))
    if sample is None:
        configured = cl.revocation.ocsp.url
        what = f"the configured responder {configured}" if configured else \
            "the responder named in the users' certificates"
        checks.append(Check("revocation.ocsp_users", "warn", "the users' OCSP responder not exercised",
                            f"{what} was not asked: no sample certificate",
                            "Configure readiness.sample_certificate so the responder is asked before go-live."))
    return checks


def _ask(url: str, cert: x509.Certificate, issuer: x509.Certificate, policy: RevocationPolicy,
         transport: OcspTransport | None, now: dt.datetime) -> Check:
    """Ask ``url`` about the CA certificate ``cert`` as a login would (the municipality's nonce, CertID hash and
    HTTP method, broker.pki.revocation.transport)."""
    subject = name_of(cert)
    if transport is None:
        return Check("revocation.ocsp", "warn", "OCSP responder not asked", f"{url}: network checks are off",
                     "Run readiness without --offline.", url)
    ocsp = policy.config.ocsp
    nonce = os.urandom(16) if ocsp.nonce else None
    try:
        exchange = transport.ask(url, build_request(cert, issuer, nonce=nonce, cert_id_hash=ocsp.cert_id_hash),
                                 setting=ocsp.http_method, nonced=nonce is not None, limits=policy.ocsp_limits())
        answer = verify_response(exchange.der, cert, issuer, now=now, skew=policy.skew, nonce=nonce,
                                 max_age_without_next_update=ocsp.max_age_without_next_update.timedelta)
    except FetchError as exc:
        return Check("revocation.ocsp", "fail", "OCSP responder unreachable", f"{url} (asked about {subject}): "
                     f"{exc}", "Make sure the broker's hosts reach the responder (proxy, firewall, DNS).", url)
    except CertificateRejected as exc:
        return Check("revocation.ocsp", "fail", "OCSP answer not valid", f"{url} (about {subject}): "
                     f"{exc.reason}: {exc.detail}", "Ask the CA about its responder's signing certificate and "
                     "clock.", url)
    if answer.status != "good":
        return Check("revocation.ocsp", "fail", f"OCSP says the CA is {answer.status}",
                     f"{url}: {subject} is {answer.status}", "The CA certificate itself is not good: ask the CA "
                     "before go-live.", url)
    return Check("revocation.ocsp", "pass", "OCSP responder answers", f"{url}: {subject} good (asked by "
                 f"{exchange.method}), produced {answer.produced_at:%Y-%m-%d %H:%M} UTC", None, url)


def users_ocsp_check(cl: CertificateLogin, policy: RevocationPolicy, users: UsersRevocation,
                     sample: x509.Certificate) -> Check | None:
    """``revocation.ocsp_users``: the users' responder (``ocsp.url``, else the sample's Authority Information
    Access, RFC 5280 §4.2.2.1), asked about the sample as a login asks it (RFC 6960 §4.1, §4.2).

    PASS when it answers; WARN when it fails and a later method (the CRL) answers instead, because logins
    then wait for the responder before falling back; FAIL when it fails and nothing else answers. None when
    OCSP is not asked for the users' certificates: no responder is configured or named, the sample's issuer
    is not configured (the sample check says so), or a method before OCSP answered.
    """
    url = policy.config.ocsp.url or next(iter(responder_urls(sample)), None)
    issuer = _issuer_of(sample, cl)
    if url is None or issuer is None:
        return None
    subject = name_of(sample)
    users.lookups.clear()
    failure: CertificateRejected | None
    outcome_source: str | None = None   # another responder of the sample's AIA, when it answered instead
    try:
        outcome = users.checker.check((sample, issuer), policy)
    except CertificateRejected as exc:
        failure = exc
        # a revocation is a definite answer, from the method that gave it
        answered = users.lookups.events[-1][0] if exc.reason == "revoked" and users.lookups.events else None
    else:
        failure = outcome.soft_fail
        answered = outcome.checked[0].method if outcome.checked else None
        if answered == "ocsp" and outcome.checked[0].source != url:
            outcome_source = outcome.checked[0].source
    ocsp = [result for method, result in users.lookups.events if method == "ocsp"]
    if not ocsp:
        return None
    reached = ocsp[0] != "error"
    if reached and answered == "ocsp" and outcome_source is None:
        verdict = "revoked" if failure is not None else "good"
        by = outcome.checked[0].http_method if failure is None and outcome.checked else None
        return Check("revocation.ocsp_users", "pass", "the users' OCSP responder answers",
                     f"{url}: asked about the sample {subject}{f' by {by}' if by else ''}: {verdict}", None, url)
    down = users.checker.last_ocsp_error(url)
    if reached:
        error = "no definite answer (the responder does not know the sample: status unknown)"
    elif down is not None:
        error = _without_url(down[1], url)  # a FetchError names the URL; the evidence already does
    else:
        error = failure.detail if failure is not None else "no answer"
    o = policy.config.ocsp
    wait = f"up to {o.connect_timeout.seconds:g} s to connect and {o.timeout.seconds:g} s in all"
    if answered == "ocsp" and outcome_source is not None:
        # the first responder of the sample's AIA failed and a later one answered (RFC 5280 §4.2.2.1 alternatives)
        return Check("revocation.ocsp_users", "warn", "the users' first OCSP responder fails; the next one in the "
                     "certificate answers instead",
                     f"{url} (asked about the sample {subject}): {error}. Logins ask it first and, while it fails, "
                     f"wait for it (its responders share {o.timeout.seconds:g} s in all) before {outcome_source} "
                     "answers",
                     "Make sure the broker's hosts reach the users' first OCSP responder (proxy, firewall, DNS) and "
                     "ask the CA about it.", url)
    if answered is not None:
        return Check("revocation.ocsp_users", "warn", f"the users' OCSP responder fails; the {answered.upper()} "
                     "answers instead",
                     f"{url} (asked about the sample {subject}): {error}. Logins ask it first and, while it fails, "
                     f"wait for it ({wait}) before the {answered.upper()} answers",
                     "Make sure the broker's hosts reach the users' OCSP responder (proxy, firewall, DNS) and ask "
                     "the CA about it; if it is not meant to be used, list crl before ocsp in revocation.methods.",
                     url)
    others = [m.upper() for m in policy.config.methods if m != "ocsp"]
    tail = f"the {', '.join(others)} did not answer either" if others else "no other method is configured"
    after = "logins go on unchecked (soft_fail, audited)" if policy.config.failure == "soft_fail" \
        else "logins are refused"
    fallback = "the revocation.crl checks say why the CRL did not answer" if others else \
        "configure the CA's CRL as a fallback (revocation.methods: [ocsp, crl])"
    return Check("revocation.ocsp_users", "fail", "the users' OCSP responder fails and nothing else answers",
                 f"{url} (asked about the sample {subject}): {error}; {tail}: {after}",
                 "Make sure the broker's hosts reach the users' OCSP responder (proxy, firewall, DNS) and ask the "
                 f"CA about it; {fallback}.", url)


def _without_url(error: str, url: str) -> str:
    """A failed exchange's ``error`` ("GET http://responder/: HTTP 500") without the responder's URL, which the
    check names already: "HTTP 500 (by GET)"; each attempt of a fallback with its own method ("GET ...: HTTP 405;
    then POST ...: HTTP 501": "HTTP 405 (by GET); then HTTP 501 (by POST)")."""
    attempts = [(method, a.removeprefix(f"{method} {url}: ")) for a in error.split("; then ")
                for method in ("GET", "POST") if a.startswith(f"{method} {url}: ")]
    if attempts and len(attempts) == error.count("; then ") + 1:
        return "; then ".join(f"{text} (by {method})" for method, text in attempts)
    return error.removeprefix(f"{url}: ")


def _issuer_of(cert: x509.Certificate, cl: CertificateLogin) -> x509.Certificate | None:
    """The configured CA that signed ``cert``: its name and signature (RFC 5280 §6.1.3 (a)(1), (a)(4))."""
    for ca in (*cl.intermediate_certificates(), *cl.anchors()):
        if ca.subject != cert.issuer:
            continue
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return ca
    return None
