"""How messages name a certificate. They reach the audit trail and the operator log, which must hold no
personnummer (REFERENCE.md, "Logging law and privacy"), and a user's certificate can carry one in its subject
(serialNumber, sometimes commonName): a CA is named by its subject, a user's certificate by serial number and
issuer, never by its subject."""

from __future__ import annotations

import re

from cryptography import x509
from cryptography.x509.oid import NameOID

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


# a personnummer inside a serialNumber as CAs write it: bare, padded (white space, which the identity rule strips and
# accepts), with its hyphen or plus, or after a prefix (ETSI EN 319 412-1 "PNOSE-"); not within a longer number.
# Also in its ten-digit form without the century (YYMMDD-NNNN, "+" past 100 years of age): there only where the
# date part can be a birth date (month 01-12; day 01-31, or 61-91 for a samordningsnummer), since an organisation
# number (in an HSA-id) has ten digits too, with 20 or more where the month would be
_PERSONNUMMER_IN_TEXT = re.compile(r"(?<![0-9])([0-9]{8}|[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01]|6[1-9]"
                                   r"|[78][0-9]|9[01]))[-+]?[0-9]{4}(?![0-9])")
_SERIAL_NUMBER_NAME = {NameOID.SERIAL_NUMBER: "serialNumber"}
# the names a user's subject is read by (RFC 4519 §2), which RFC 4514 §3 leaves out, so cryptography writes their
# OIDs (2.5.4.5=, 2.5.4.42=): "serialNumber=SE2321000016-1234,givenName=Anna,surname=Andersson"
_PERSON_NAMES = {**_SERIAL_NUMBER_NAME, NameOID.GIVEN_NAME: "givenName", NameOID.SURNAME: "surname",
                 NameOID.TITLE: "title"}
# where a CA puts a personnummer in a user's subject: its serialNumber, and sometimes its commonName ("Anna Andersson
# 191212121212"); not organizationIdentifier and the like, whose 12-digit organisation numbers ("16" + the number)
# would read as one
_MASKED_ATTRIBUTES = frozenset({NameOID.SERIAL_NUMBER, NameOID.COMMON_NAME})


def mask_personnummer_in(text: str) -> str:
    """``text`` with every personnummer in it (bare, padded, with its hyphen or plus, after a prefix; the ten-digit
    form too) masked as :func:`broker.pki.identity.mask_personnummer` masks one: ``19121212-****``,
    ``121212-****``."""
    return _PERSONNUMMER_IN_TEXT.sub(r"\1-****", text)


def display_subject(cert: x509.Certificate) -> str:
    """The subject as RFC 4514 text, with a personnummer in the serialNumber or commonName masked
    (:func:`mask_personnummer_in`): /diagnose, the CLI and configuration messages show it to whoever the user or
    the operator shares them with, and a configuration reload's refusal goes into the audit trail."""
    rdns = []
    for rdn in reversed(cert.subject.rdns):
        parts = []
        for attr in rdn:
            value = attr.value if isinstance(attr.value, str) else ""
            masked = mask_personnummer_in(value) if attr.oid in _MASKED_ATTRIBUTES else value
            if masked != value:
                # escaped as a serialNumber value, which has no length limit, under the attribute's own name: a
                # commonName of 64 characters is longer once masked, and NameAttribute refuses it as a commonName
                name = _SERIAL_NUMBER_NAME.get(attr.oid) or attr.rfc4514_attribute_name
                parts.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, masked)
                             .rfc4514_string({NameOID.SERIAL_NUMBER: name}))
            else:
                parts.append(attr.rfc4514_string(_PERSON_NAMES))
        rdns.append("+".join(parts))
    return ",".join(rdns)
