"""Reading a certificate someone presented, so that a malformed one fails where it is read; and reading a CRL.

cryptography parses parts of a certificate lazily: a duplicate extension (RFC 5280 §4.2: "A certificate MUST NOT
include more than one instance of a particular extension"), an unreadable name or an unknown signature algorithm
surfaces only when that part is first read, deep inside path validation. :func:`check_fields` reads every such
part once, so callers can refuse the certificate as malformed with a reason of their own: the login path
(:func:`read_certificate`, for the TLS and proxy-header sources) and the command line
(:mod:`broker.commands.common`) alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from cryptography import x509


class UnreadableCertificate(ValueError):
    """The bytes are not a well-formed X.509 certificate; the message names what failed."""


# The parts cryptography parses only when first read (RFC 5280 §4.1), each with what an operator calls it.
_LAZY_FIELDS: tuple[tuple[str, Callable[[x509.Certificate], object]], ...] = (
    ("subject", lambda cert: cert.subject),
    ("issuer", lambda cert: cert.issuer),
    ("serial number", lambda cert: cert.serial_number),
    ("validity", lambda cert: (cert.not_valid_before_utc, cert.not_valid_after_utc)),
    ("signature algorithm", lambda cert: cert.signature_hash_algorithm),
    ("extensions", lambda cert: cert.extensions),
)


def check_fields(cert: x509.Certificate) -> None:
    """Read each lazily parsed field of ``cert`` once; raise :class:`UnreadableCertificate` naming the first
    that cannot be read.

    cryptography reports the failures with several exception types (ValueError, DuplicateExtension,
    UnsupportedAlgorithm, ...), all of which mean the same here.
    """
    for name, read in _LAZY_FIELDS:
        try:
            read(cert)
        except Exception as exc:
            raise UnreadableCertificate(f"malformed X.509 certificate: its {name} cannot be read "
                                        f"({type(exc).__name__}: {exc})") from None


def check_each(certs: Sequence[x509.Certificate], source: object) -> None:
    """:func:`check_fields` for each certificate read from ``source`` (a file): the refusal names the file, and
    which of its certificates when it holds several, so that an operator finds the broken one."""
    for number, cert in enumerate(certs, start=1):
        try:
            check_fields(cert)
        except UnreadableCertificate as exc:
            where = f"certificate {number} of {len(certs)} in {source}" if len(certs) > 1 else str(source)
            raise UnreadableCertificate(f"{where}: {exc}") from None


def read_certificate(data: bytes, *, pem: bool = False) -> x509.Certificate:
    """The certificate in ``data`` (DER, or PEM when ``pem``), each lazily parsed field read once
    (:func:`check_fields`).

    Raises :class:`UnreadableCertificate`.
    """
    try:
        cert = x509.load_pem_x509_certificate(data) if pem else x509.load_der_x509_certificate(data)
    except Exception as exc:
        raise UnreadableCertificate(f"not an X.509 certificate ({type(exc).__name__})") from None
    check_fields(cert)
    return cert


def read_crl(data: bytes) -> x509.CertificateRevocationList:
    """A CRL from PEM or DER bytes; ValueError if it is neither, whatever the parser raised (cryptography raises
    ``x509.InvalidVersion``, no ValueError, for a version other than v1/v2).

    PEM wherever its encapsulation boundary is: RFC 7468 §2 lets text come before it ("parsers MUST NOT
    malfunction when processing such data"), as ``openssl crl -text`` writes its dump there, and a certificate
    file is read the same way (:func:`broker.config.values.load_certificates`).
    """
    try:
        return x509.load_pem_x509_crl(data) if b"-----BEGIN" in data else x509.load_der_x509_crl(data)
    except ValueError:
        raise
    except Exception as exc:  # a server's bytes must never become anything but "not a CRL"
        raise ValueError(f"not a CRL ({type(exc).__name__}: {exc})") from None
