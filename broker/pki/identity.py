"""Mapping a validated certificate to an :class:`Identity` by the municipality's rule.

SITHS cards carry the identity in the subject ``serialNumber`` (OID 2.5.4.5):
either the HSA-id (``SE2321000016-1003``) or the personnummer (YYYYMMDDNNNN,
last digit a Luhn check). Some issuers put it in the subjectAltName instead.
"""

from __future__ import annotations

import datetime as dt
import re

from cryptography import x509
from cryptography.x509.oid import NameOID

from broker.config.schema import IdentityRule
from broker.config.values import luhn_valid
from broker.errors import CertificateRejected
from broker.model import Identity
from broker.pki.naming import mask_personnummer_in

# SE, the 10-digit organisation number of the directory's owner, a hyphen and 1 to 18 letters or digits: an HSA-id
# is at most 31 characters long (Inera's HSA-id format)
DEFAULT_HSA_ID_PATTERN = r"SE[0-9]{10}-[A-Za-z0-9]{1,18}"
UPN_OID = x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")


def check_personnummer(value: str, today: dt.date | None) -> None:
    """Raise ValueError unless ``value`` is a 12-digit personnummer or samordningsnummer.

    The date part must exist (a samordningsnummer adds 60 to the day) and not lie after ``today``: it is the
    holder's date of birth (None: the caller has no date to judge by, and says so). The last digit is the Luhn
    check over the 10-digit form YYMMDDNNNC.
    """
    if not re.fullmatch(r"[0-9]{12}", value):  # not \d: it matches digits of every script
        raise ValueError("a personnummer has 12 digits (YYYYMMDDNNNN)")
    year, month, day = int(value[0:4]), int(value[4:6]), int(value[6:8])
    if day > 60:  # samordningsnummer
        day -= 60
    try:
        born = dt.date(year, month, day)
    except ValueError:
        raise ValueError("the date part of the personnummer is not a valid date") from None
    if today is not None and born > today:
        raise ValueError("the date part of the personnummer (the date of birth) lies in the future")
    if not luhn_valid(value[2:]):
        raise ValueError("the personnummer's check digit is wrong")


def _single_subject_value(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> str | None:
    attrs = cert.subject.get_attributes_for_oid(oid)
    if not attrs:
        return None
    if len(attrs) > 1:
        raise CertificateRejected("identity_invalid", f"the subject has {len(attrs)} {oid.dotted_string} values")
    value = attrs[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def _san_value(cert: x509.Certificate, source: str) -> str | None:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    if source == "san_email":
        values = san.get_values_for_type(x509.RFC822Name)
    else:
        values = []
        for other in san.get_values_for_type(x509.OtherName):
            if other.type_id == UPN_OID:
                values.append(_decode_utf8_string(other.value))
    if len(values) > 1:
        raise CertificateRejected("identity_invalid", f"the subjectAltName has {len(values)} {source} values")
    return values[0] if values else None


def _decode_utf8_string(der: bytes) -> str:
    """The UTF8String inside an OtherName value (DER: tag 0x0c, short or long length)."""
    if len(der) < 2 or der[0] != 0x0C:
        raise CertificateRejected("identity_invalid", "the UPN is not a UTF8String")
    length, offset = der[1], 2
    if length & 0x80:
        n = length & 0x7F
        if n == 0 or n > 2 or len(der) < 2 + n:
            raise CertificateRejected("identity_invalid", "the UPN's length is malformed")
        length, offset = int.from_bytes(der[2:2 + n], "big"), 2 + n
    if offset + length != len(der):
        raise CertificateRejected("identity_invalid", "the UPN's length is malformed")
    try:
        return der[offset:].decode("utf-8")
    except UnicodeDecodeError:
        raise CertificateRejected("identity_invalid", "the UPN is not valid UTF-8") from None


_NOT_XML_CHAR = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

_FIELD_NAMES = {
    "subject_serial_number": "subject serialNumber",
    "san_upn": "subjectAltName UPN",
    "san_email": "subjectAltName e-mail",
}


IDENTITY_SPACE = " \t\r\n"
"""What may surround an identity value and is not part of it: XML's white space (XML 1.0 §2.3 S), as a pretty-
printed AttributeValue or a padded certificate field carries it. Other characters Unicode calls space (U+3000,
U+2028) and control characters are no padding: the value with them is another value, and is refused."""


def extract_identity(cert: x509.Certificate, rule: IdentityRule, municipality_id: str,
                     today: dt.date | None) -> Identity:
    """Apply ``rule`` to ``cert``; raise ``identity_missing`` or ``identity_invalid``. ``today``: a personnummer
    born after it is refused (:func:`check_personnummer`; None only where no personnummer can be asked for)."""
    if rule.source == "subject_serial_number":
        value = _single_subject_value(cert, NameOID.SERIAL_NUMBER)
    else:
        value = _san_value(cert, rule.source)
    field = _FIELD_NAMES[rule.source]
    if value is None or not value.strip(IDENTITY_SPACE):
        raise CertificateRejected("identity_missing", f"the certificate has no {field}",
                                  params={"field": field})
    value = value.strip(IDENTITY_SPACE)
    if rule.type == "personnummer":
        try:
            check_personnummer(value, today)
        except ValueError as exc:
            # the value itself is personal data: never put it in the detail
            raise CertificateRejected("identity_invalid", f"{field}: {exc}") from None
    else:
        pattern = rule.pattern or DEFAULT_HSA_ID_PATTERN
        if not re.fullmatch(pattern, value, re.ASCII):
            # not the value: a personnummer where an HSA-id belongs is personal data too
            raise CertificateRejected("identity_invalid", f"{field} ({value_shape(value)}) does not match the "
                                                          f"{rule.type} pattern {pattern}")
    given = _single_subject_value(cert, NameOID.GIVEN_NAME)
    surname = _single_subject_value(cert, NameOID.SURNAME)
    display = _single_subject_value(cert, NameOID.COMMON_NAME)
    if display is None and (given or surname):
        display = " ".join(p for p in (given, surname) if p)
    for what, text in ((field, value), ("givenName", given), ("surname", surname), ("commonName", display)):
        # these become SAML attribute values: XML 1.0 (§2.2 Char) cannot carry control characters
        if text is not None and _NOT_XML_CHAR.search(text):
            raise CertificateRejected("identity_invalid", f"the certificate's {what} holds characters XML cannot "
                                                          "carry (control characters)")
    return Identity(
        kind=rule.type,
        key=value,
        municipality_id=municipality_id,
        given_name=given,
        surname=surname,
        display_name=display,
    )


def mask_personnummer(value: str) -> str:
    """``19121212-****``: enough for an operator to recognise, not the whole number on screen."""
    return value[:8] + "-****"


def display_identity(kind: str, key: str) -> str:
    """An identity as an operator may see it: a personnummer masked, and one inside any other identifier too (an
    opaque rule's account named by it, ``191212121212@kommun.se``), as the audit trail pseudonymises those."""
    return mask_personnummer(key) if kind == "personnummer" else mask_personnummer_in(key)


def value_shape(value: str) -> str:
    """What a refused identity value looks like without saying what it is: its length and kinds of
    characters, for the operator to tell a personnummer (12 digits) from a mistyped HSA-id."""
    kinds = [name for name, test in (("digits", str.isdigit), ("letters", str.isalpha)) if any(map(test, value))]
    others = sum(1 for c in value if not c.isalnum())
    if others:
        kinds.append(f"{others} other")
    return f"{len(value)} characters: {', '.join(kinds) or 'none'}"


_ORGANIZATION_IDENTIFIER = x509.ObjectIdentifier("2.5.4.97")
_HSA_ORGANIZATION = re.compile(r"SE([0-9]{10})-")


def named_organization(cert: x509.Certificate, source: str, rule: IdentityRule) -> str | None:
    """The organisation number (10 digits) ``cert`` names where ``source`` says (``certificate.organization_from``),
    or None when it names none there: how a certificate from a CA that issues to several municipalities (Efos,
    SITHS e-id) tells which one is its own. An HSA-id the identity rule refuses raises that refusal
    (``identity_missing``, ``identity_invalid``), which says more than that no organisation was named.

    ``hsa_id``: the HSA-id the identity ``rule`` reads, whose form is SE + the issuing organisation's number + "-"
    + a local part. ``organization_identifier``: the subject's organizationIdentifier (X.520 2.5.4.97), as
    "SE2120001009", ETSI EN 319 412-1's "NTRSE-2120001009", or the plain number with or without its hyphen.
    """
    if source == "hsa_id":
        # no birth date to judge: organization_from hsa_id goes with identity.type hsa_id (the config check)
        key = extract_identity(cert, rule, "", None).key
        found = _HSA_ORGANIZATION.match(key)
        return found.group(1) if found else None
    if source == "organization_identifier":
        attributes = cert.subject.get_attributes_for_oid(_ORGANIZATION_IDENTIFIER)
        if len(attributes) != 1 or not isinstance(attributes[0].value, str):
            return None
        value = attributes[0].value.strip(IDENTITY_SPACE).upper()
        for prefix in ("NTRSE-", "SE"):
            if value.startswith(prefix):
                value = value[len(prefix):]
                break
        value = value.replace("-", "", 1) if len(value) == 11 and value[6] == "-" else value
        return value if re.fullmatch(r"[0-9]{10}", value) else None
    return None
