"""Offline checks of a municipality's trust anchors and intermediates (RFC 5280 §4.1.2.5, §4.2.1.9).

The loader already refused what cannot work at all (an anchor that is no CA, an intermediate no
configured CA signed). What is left to say before go-live: when each CA expires, and whether a test
hierarchy (SITHS and Efos test CAs carry TEST, PP or SYSTEMTEST in their names) slipped into a
production configuration.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import replace

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID

from broker.config.schema import CertificateLogin
from broker.pki.naming import display_subject, mask_personnummer_in
from broker.readiness.model import Check

# a marker on its own, not inside a word: letters are any script's (Teståtkomst, Knäpp: Swedish words), digits and
# punctuation end a word (TEST2, PP-CA)
TEST_HIERARCHY = re.compile(r"(?<![^\W\d_])(TEST|PP|SYSTEMTEST)(?![^\W\d_])", re.IGNORECASE)


def name_of(cert: x509.Certificate) -> str:
    """The certificate as the report names it: its CN, else its whole subject, a personnummer in either masked (a
    user certificate, such as a sample: the report is operational output)."""
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return mask_personnummer_in(str(cns[0].value)) if cns else display_subject(cert)


def validity_check(check_id: str, what: str, cert: x509.Certificate, now: dt.datetime, window: dt.timedelta, *,
                   fix: str, never_fail: bool = False) -> Check:
    """PASS while valid beyond ``window``; WARN within it; FAIL once expired or not yet valid (WARN when
    ``never_fail``: e.g. keys in metadata, which are only containers)."""
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    subject = name_of(cert)
    if now < start:
        return Check(check_id, "warn" if never_fail else "fail", f"{what} not yet valid",
                     f"{subject} is valid from {start:%Y-%m-%d %H:%M} UTC", fix, subject, end)
    if now >= end:
        return Check(check_id, "warn" if never_fail else "fail", f"{what} expired",
                     f"{subject} expired {end:%Y-%m-%d} ({(now - end).days} days ago)", fix, subject, end)
    left = end - now
    if left <= window:
        return Check(check_id, "warn", f"{what} expires soon",
                     f"{subject} expires {end:%Y-%m-%d} (in {left.days} days)", fix, subject, end)
    return Check(check_id, "pass", f"{what} valid", f"{subject} valid until {end:%Y-%m-%d} ({left.days} days)",
                 None, subject, end)


def _not_self_signed(cert: x509.Certificate) -> str | None:
    """Why ``cert`` is no self-signed root, or None when it is one."""
    if cert.issuer != cert.subject:
        return f"{name_of(cert)} is issued by {cert.issuer.rfc4514_string()}"
    try:
        cert.verify_directly_issued_by(cert)
    except InvalidSignature:
        return f"{name_of(cert)} names itself as issuer, but its signature does not verify with its own key"
    except (ValueError, TypeError) as exc:  # e.g. a signature algorithm cryptography does not verify (SHA-1)
        return f"{name_of(cert)} names itself as issuer, but its signature cannot be checked ({exc})"
    return None


def _expired_fix(check: Check, cert: x509.Certificate, now: dt.datetime, key: str) -> Check:
    """``check`` with the fix for an expired CA: to remove it. The advice for one that expires soon (add the renewed
    one, keep the old) would keep it, and the run failing, though no card validates under it any more."""
    if check.status != "fail" or now < cert.not_valid_after_utc:
        return check
    return replace(check, fix=f"Remove it from {key}: no card validates under an expired CA any more. If its cards "
                              "are still in use, get the CA's renewed certificate from the certificate issuer and "
                              "configure it.")


def trust_checks(cl: CertificateLogin, now: dt.datetime, window: dt.timedelta, environment: str) -> list[Check]:
    checks: list[Check] = []
    configured_cas = (*cl.anchors(), *cl.intermediate_certificates())
    for cert in cl.anchors():
        checks.append(_expired_fix(validity_check(
            "trust.anchor", "trust anchor", cert, now, window,
            fix="Get the CA's renewed root certificate from the municipality's certificate issuer and add it to "
                "trust_anchors (keep the old one until every card issued under it has expired)."),
            cert, now, "trust_anchors"))
        why = _not_self_signed(cert)
        if why is not None:
            fix = "Prefer the self-signed root of the hierarchy as anchor, unless trusting only this branch is intended"
            if cert.issuer != cert.subject and not any(ca.subject == cert.issuer for ca in configured_cas):
                # the proxy verifies the cards up to a self-signed root: none is in the bundle written from here
                fix += (f"; then put that root ({cert.issuer.rfc4514_string()}) in the proxy's verification store "
                        "(nginx: ssl_trusted_certificate), as no bundle written from this configuration holds it and "
                        "Apache ends the handshake of every card without it")
            checks.append(Check("trust.anchor_self_signed", "warn", "trust anchor is not a self-signed root",
                                f"{why}; the path stops at it because it is configured as an anchor", fix + ".",
                                name_of(cert)))
    for cert in cl.intermediate_certificates():
        checks.append(_expired_fix(validity_check(
            "trust.intermediate", "intermediate CA", cert, now, window,
            fix="Get the renewed CA certificate from the certificate issuer and add it to intermediates."),
            cert, now, "intermediates"))
    configured = {cert.subject for cert in (*cl.anchors(), *cl.intermediate_certificates())}
    for cert in (*cl.anchors(), *cl.intermediate_certificates()):
        match = TEST_HIERARCHY.search(cert.subject.rfc4514_string())
        named = "its name"
        if match is None and cert.issuer not in configured:
            # an anchor below the root (the path stops there) is a test CA when the CA above it is one, whatever it
            # is called itself (a configured issuer is judged by its own name above)
            issuer = cert.issuer.rfc4514_string()
            match = TEST_HIERARCHY.search(issuer)
            named = f"the name of its issuer {issuer}"
        if match is None:
            continue
        if environment == "production":
            checks.append(Check("trust.test_hierarchy", "fail", "test hierarchy in a production configuration",
                                f"{name_of(cert)} carries {match.group(1)!r} in {named}: a test CA",
                                "Remove the test CA; configure the production hierarchy (or set "
                                "readiness.environment: test in a test installation).", name_of(cert)))
        else:
            checks.append(Check("trust.test_hierarchy", "pass", "test hierarchy (test environment)",
                                f"{name_of(cert)} is a test CA; allowed because readiness.environment is test",
                                None, name_of(cert)))
    if not any(c.id == "trust.test_hierarchy" for c in checks):
        checks.append(Check("trust.test_hierarchy", "pass", "no test hierarchy",
                            "no configured CA carries TEST, PP or SYSTEMTEST in its name or its issuer's"))
    return checks


def issuing_cas(cl: CertificateLogin) -> tuple[x509.Certificate, ...]:
    """The CAs that issue users' certificates: intermediates no other configured CA is issued by (or the
    anchors, when there are no intermediates)."""
    intermediates = cl.intermediate_certificates()
    parents = {c.issuer.public_bytes() for c in intermediates}
    issuing = tuple(c for c in intermediates if c.subject.public_bytes() not in parents or c.issuer == c.subject)
    return issuing or cl.anchors()
