"""How messages name a certificate. They reach the audit trail and the operator log, which must hold no
personnummer (REFERENCE.md, "Logging law and privacy"), and a user's certificate can carry one in its subject
(serialNumber, sometimes commonName): a CA is named by its subject, a user's certificate by serial number and
issuer, never by its subject."""

from __future__ import annotations

from cryptography import x509

from broker.lru import by_identity


@by_identity(16384)
def subject_text(cert: x509.Certificate) -> str:
    """RFC 4514 text of the subject (cached: formatting names is slow and CAs recur on every login). For CA
    certificates; a user's certificate is named by :func:`describe`."""
    return cert.subject.rfc4514_string()


@by_identity(16384)
def is_ca(cert: x509.Certificate) -> bool:
    """basicConstraints cA (RFC 5280 §4.2.1.9); absent means an end entity."""
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def not_a_ca(cert: x509.Certificate) -> str | None:
    """Why ``cert`` cannot be a CA certificate of a path, or None: basicConstraints with cA=TRUE (RFC 5280
    §4.2.1.9) and, where key usage is present, keyCertSign (§4.2.1.3). The rule for every certificate an
    operator gives as a trust anchor or intermediate, in the configuration and on the command line."""
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return "is not a CA certificate (no basicConstraints)"
    if not bc.ca:
        return "is not a CA certificate (basicConstraints cA is false)"
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None
    return None if ku.key_cert_sign else "may not sign certificates (key usage lacks keyCertSign)"


@by_identity(16384)
def describe(cert: x509.Certificate) -> str:
    """A CA by its subject; a user's certificate by serial and issuer (so is one whose extensions cannot be
    read: only the name is decided here, never what the certificate may do)."""
    try:
        ca = is_ca(cert)
    except (ValueError, x509.DuplicateExtension):
        ca = False
    if ca:
        return f"CA {subject_text(cert)}"
    return f"certificate serial {cert.serial_number:x} from {cert.issuer.rfc4514_string()}"
