"""Reading a certificate someone presented, so that a malformed one fails where it is read.

cryptography parses parts of a certificate lazily: a duplicate extension (RFC 5280 §4.2: "A certificate MUST NOT
include more than one instance of a particular extension"), an unreadable name or an unknown signature algorithm
surfaces only when that part is first read, deep inside path validation. :func:`read_certificate` reads every such
part once, so callers can refuse the certificate as malformed with a reason of their own.
"""

from __future__ import annotations

from cryptography import x509


class UnreadableCertificate(ValueError):
    """The bytes are not a well-formed X.509 certificate; the message names what failed."""


def read_certificate(data: bytes, *, pem: bool = False) -> x509.Certificate:
    """The certificate in ``data`` (DER, or PEM when ``pem``), each lazily parsed field read once.

    Raises :class:`UnreadableCertificate`; cryptography reports the failures with several exception types
    (ValueError, DuplicateExtension, UnsupportedAlgorithm, ...), all of which mean the same here.
    """
    try:
        cert = x509.load_pem_x509_certificate(data) if pem else x509.load_der_x509_certificate(data)
        _ = (cert.subject, cert.issuer, cert.serial_number, cert.not_valid_before_utc, cert.not_valid_after_utc,
             cert.signature_hash_algorithm, cert.extensions)
    except Exception as exc:
        raise UnreadableCertificate(f"not an X.509 certificate ({type(exc).__name__})") from None
    return cert
