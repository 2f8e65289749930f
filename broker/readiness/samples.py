"""A real certificate of the municipality, through the same validator logins use: path, profile,
revocation (online, now), identity and LoA. The proof that the configuration fits the cards."""

from __future__ import annotations

import datetime as dt

from cryptography import x509

from broker.errors import CertificateRejected
from broker.pki.identity import display_identity
from broker.pki.path import operator_hint
from broker.pki.validator import CertificateValidator
from broker.readiness.model import Check
from broker.readiness.trust import name_of, validity_check
from broker.reasons import REASONS


def sample_checks(municipality_id: str, sample: x509.Certificate | None, validator: CertificateValidator,
                  now: dt.datetime, window: dt.timedelta) -> list[Check]:
    if sample is None:
        return [Check("sample.certificate", "warn", "no sample certificate",
                      "readiness.sample_certificate is not configured: no real card was checked end to end",
                      "Ask the municipality for one user certificate (the public part, e.g. exported from a test "
                      "card) and set readiness.sample_certificate.")]
    subject = name_of(sample)
    expiry = validity_check("sample.expiry", "sample certificate", sample, now, window,
                            fix="Replace the sample with a current certificate of the municipality.")
    try:
        validated = validator.validate(sample)
    except CertificateRejected as exc:
        hint = operator_hint(exc, sample) if REASONS.get(exc.reason) else None
        refused = Check("sample.certificate", "fail", f"sample certificate refused: {exc.reason}",
                        f"{subject}: {exc.detail}", hint, subject)
        # an expired (or not yet valid) sample is refused for that: its own check says to replace it
        return [refused, expiry] if expiry.status == "fail" else [refused]
    if validated.municipality_id != municipality_id:
        return [Check("sample.certificate", "fail", "sample certificate belongs to another municipality",
                      f"{subject} maps to {validated.municipality_id}", "Configure a certificate of this "
                      "municipality as its sample.", subject)]
    identity = validated.identity
    checks = [Check("sample.certificate", "pass", "sample certificate accepted",
                    f"{subject}: {identity.kind} {display_identity(identity.kind, identity.key)}, "
                    f"{validated.loa.name} (policy {validated.policy_oid}), revocation "
                    f"{validated.revocation.summary}", None, subject)]
    if expiry.status != "pass":
        checks.append(expiry)
    return checks


def sample_key_check(municipality_id: str, path: str) -> Check:
    """``sample.key``: a sample's private key in a production configuration (readiness.environment: production). It
    is a real card's key: whoever reads the configuration (backups, a repository, a support bundle) can log in as its
    holder, at every SP of the municipality. Only ``--login`` uses it, and only a test installation needs that."""
    return Check("sample.key", "warn", "a card's private key in a production configuration",
                 f"{municipality_id}: readiness.sample_key {path}: whoever reads the configuration (backups, a "
                 "repository, a support bundle) can log in as the card's holder",
                 "Remove readiness.sample_key (and the key file) from the production configuration; run the "
                 "synthetic login (--login) from a test installation, or set readiness.environment: test in one.",
                 municipality_id)
