"""Whether one certificate issued another (RFC 5280 §6.1.3 (a)(1) and (a)(4): its name and key), for the places
that look for an issuer among certificates they hold: the trust store's configured CAs, the CRL-signing keys of a
CA's name, the configured CA behind a refused card."""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm


def directly_issued(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """``issuer`` (its name and key) issued ``cert``: cryptography's check, every way it can say no as False."""
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True
