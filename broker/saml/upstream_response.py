"""Accepting a municipal IdP's Response (SAML Core §2, §3.2; Profiles §4.1.4.3; Bindings §3.5.5.2).

The broker validates upstream Responses itself instead of relying on pysaml2's
response module, which (7.5) lets through a wrong SubjectConfirmationData
Recipient unless told what to expect, returns a Response with a wrong
Destination as an object without assertion instead of an error, accepts SHA-1
signatures, and accepts an Assertion whose Version is not 2.0.

Parsed once, by the hardened parser (no DTDs, no entities, comments dropped);
signatures verified on that tree (:class:`XmlVerifier`: one enveloped
signature referencing the element's unique ID, allow-listed algorithms); data
read only from the element whose signature was verified. Exactly one Assertion
may exist anywhere in the document, and it must be the Response's child: an
Assertion moved, duplicated or wrapped elsewhere (Extensions, ds:Object ...) is
refused, which closes the signature-wrapping attacks.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from lxml import etree

from broker.errors import UpstreamRejected
from broker.model import ProxyRestriction
from broker.pki.identity import IDENTITY_SPACE
from broker.saml.bindings import CM_BEARER
from broker.saml.xmldsig import SignatureMissing, SignatureRejected, XmlVerifier
from broker.saml.xmlenc import Decrypter, DecryptionRefused
from broker.saml.xmlparse import UnsafeXml, parse_untrusted
from broker.saml.xmltime import parse_instant
from broker.saml.xstypes import non_negative_integer

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
DS = "http://www.w3.org/2000/09/xmldsig#"
NS = {"samlp": SAMLP, "saml": SAML, "ds": DS}
SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
ENTITY_FORMAT = "urn:oasis:names:tc:SAML:2.0:nameid-format:entity"
_MAX_AUTHORITIES = 16                      # AuthenticatingAuthority entries kept (a session holds them)
_MAX_STATUS_CODES = 4                      # nested StatusCode values read from an error Response
_WHITESPACE = re.compile(r"\s")
_MAX_REPLAY_MEMORY = dt.timedelta(days=366)

SignedElement = Literal["assertion", "response", "both", "either"]


@dataclass(frozen=True)
class UpstreamStatus:
    """A non-success status from the IdP: top-level and second-level codes, and its message."""

    codes: tuple[str, ...]
    message: str | None


@dataclass(frozen=True)
class UpstreamAssertion:
    """What a verified upstream Assertion says; read from the verified element only."""

    issuer: str
    assertion_id: str
    in_response_to: str | None
    name_id: str
    name_id_format: str | None
    session_index: str | None
    authn_instant: dt.datetime
    authn_context: str | None
    attributes: Mapping[str, tuple[str, ...]]
    expires: dt.datetime          # the latest NotOnOrAfter that bounds its use (for the replay cache)
    name_qualifier: str | None = None      # kept to name the user exactly so at logout (SAML Core §3.7.1)
    sp_name_qualifier: str | None = None
    session_not_on_or_after: dt.datetime | None = None   # the IdP's end of the session (Core §2.7.2)
    proxy_restriction: ProxyRestriction | None = None      # the IdP's limits on passing this on (Core §2.5.1.6)
    # the authorities the IdP itself relied on (Core §3.4.1.5.1: the broker's assertion names them, then the IdP)
    authenticating_authorities: tuple[str, ...] = ()


@dataclass(frozen=True)
class Expectations:
    """What the broker expects of this Response."""

    idp_entity_id: str
    sp_entity_id: str
    acs_url: str
    request_id: str | None        # None: unsolicited (only if allowed)
    signed_element: SignedElement
    skew: dt.timedelta
    now: dt.datetime
    # the oldest Assertion accepted, by its IssueInstant (plus the skew); None: no limit but its own conditions
    max_age: dt.timedelta | None = None


def _reject(code: str, detail: str) -> UpstreamRejected:
    return UpstreamRejected(code, detail)


def _text_only(element: etree._Element, what: str) -> str:
    """The text of an element that must hold nothing but text (no child elements)."""
    if len(element):
        raise _reject("upstream_assertion_invalid", f"{what} has child elements")
    # XML's white space only (XML 1.0 §2.3 S), as around a certificate's identity value: other characters Unicode
    # calls space make another value, which the identity rule and the comparisons then refuse
    return (element.text or "").strip(IDENTITY_SPACE)


def _instant(value: str | None, what: str) -> dt.datetime | None:
    if value is None:
        return None
    try:
        return parse_instant(value)
    except ValueError:
        raise _reject("upstream_response_malformed", f"{what} is not a UTC dateTime: {value[:100]!r}") from None


def _verify(verifier: XmlVerifier, element: etree._Element, what: str) -> bool:
    """True if ``element`` carries a signature that verifies; False if it carries none."""
    try:
        verifier.verify(element, signed_parts=True)
    except SignatureMissing:
        return False
    except SignatureRejected as exc:
        code = "upstream_algorithm_not_allowed" if exc.algorithm else "upstream_signature_invalid"
        raise _reject(code, f"{what}: {exc}") from None
    return True


def parse_response(xml: bytes, max_bytes: int) -> etree._Element:
    try:
        root = parse_untrusted(xml, max_bytes)
    except UnsafeXml as exc:
        code = "upstream_response_too_large" if "larger than" in str(exc) else "upstream_response_malformed"
        raise _reject(code, str(exc)) from None
    if root.tag != f"{{{SAMLP}}}Response":
        # cut short: anyone can post this, and it goes to the audit trail (a namespace may be 200 kB long)
        raise _reject("upstream_response_malformed", f"expected a Response, got {str(root.tag)[:200]}")
    return root


def status_of(root: etree._Element) -> UpstreamStatus | None:
    """None for Success, else the status (SAML Core §3.2.2.2)."""
    code = root.find("samlp:Status/samlp:StatusCode", NS)
    if code is None:
        raise _reject("upstream_response_malformed", "the Response has no StatusCode")
    top = code.get("Value")
    if top == SUCCESS:
        return None
    # read before any signature, from whoever posted it, and audited: each code cut short, and no deeper than
    # SAML's codes go (a top-level code and a second-level one, which may nest one more)
    codes = [(top or "")[:200]]
    inner = code.find("samlp:StatusCode", NS)
    while inner is not None and len(codes) < _MAX_STATUS_CODES:
        codes.append((inner.get("Value") or "")[:200])
        inner = inner.find("samlp:StatusCode", NS)
    message = root.find("samlp:Status/samlp:StatusMessage", NS)
    return UpstreamStatus(tuple(codes), (message.text or "").strip()[:300] if message is not None else None)


class ResponseValidator:
    """Validates Responses of one IdP against its metadata keys and the broker's decryption keys."""

    def __init__(self, verifier: XmlVerifier, decrypter: Decrypter) -> None:
        self._verifier = verifier
        self._decrypter = decrypter

    def validate(self, root: etree._Element, expect: Expectations) -> UpstreamAssertion:
        """Check ``root`` (a parsed Response with Success status); raise :class:`UpstreamRejected`."""
        self.check_response(root, expect)
        # exactly one Assertion in the whole document, before any signature is looked at: an assertion
        # moved, duplicated or wrapped (Extensions, ds:Object ...) is the attack, whatever its signatures say
        found = len(root.findall(f".//{{{SAML}}}Assertion")) + len(root.findall(f".//{{{SAML}}}EncryptedAssertion"))
        if found != 1:
            raise _reject("upstream_assertion_invalid", f"{found} assertions in the document; exactly one is allowed")
        response_signed = _verify(self._verifier, root, "the Response")
        # Bindings §3.5.5.2 requires Destination of signed messages (an unsigned one may omit it)
        if response_signed and root.get("Destination") is None:
            raise _reject("upstream_destination_mismatch", "a signed Response must carry Destination")
        if expect.signed_element in ("response", "both") and not response_signed:
            # refused for what the IdP left unsigned, before anything is decrypted: the Response's signature is
            # what authenticates an EncryptedAssertion's ciphertext (the stronger setting for IdPs that encrypt
            # with CBC), and a ciphertext nothing signed is not worth an RSA and an AES operation and a parse
            raise _reject("upstream_unsigned", f"the IdP must sign: {expect.signed_element}")

        encrypted_element = root.find("saml:EncryptedAssertion", NS)
        encrypted = encrypted_element is not None
        # a decrypted Assertion stands in a document of its own until its signature is verified: moved into the
        # Response first, it would be rebound to the Response's prefixes (Decrypter.decrypt_detached)
        assertion = self._the_assertion(root)
        try:
            assertion_signed = _verify(self._verifier, assertion, "the Assertion")
            required = expect.signed_element
            missing = {
                "assertion": not assertion_signed,
                "response": not response_signed,
                "both": not (assertion_signed and response_signed),
                "either": not (assertion_signed or response_signed),
            }[required]
            if missing:
                raise _reject("upstream_unsigned", f"the IdP must sign: {required}")
        except UpstreamRejected as exc:
            if encrypted and not response_signed:
                # nothing authenticated the ciphertext yet (AES-CBC is malleable): telling a bad or missing
                # signature from a bad decryption would be an oracle (XML Encryption attacks); once the
                # decrypted Assertion's signature holds, its content is authentic and later reasons are specific
                raise _reject("upstream_decryption_failed", f"after decryption: {exc.reason}: {exc.detail}") from None
            raise
        if encrypted_element is not None:
            root.replace(encrypted_element, assertion)  # read in its place, as a plain one is
            # verified in a document of its own, its ID was unique there; an xs:ID is unique in the Response too
            # (SAML Core §1.3.4)
            assertion_id = assertion.get("ID")
            if assertion_id and sum(1 for e in root.iter() if e.get("ID") == assertion_id) != 1:
                raise _reject("upstream_assertion_invalid",
                              f"the Assertion's ID {assertion_id[:100]!r} occurs more than once in the Response")
        # the only Assertion in the document is the one just verified (or covered by the Response's signature);
        # decryption must not have added another
        if len(root.findall(f".//{{{SAML}}}Assertion")) != 1:
            raise _reject("upstream_assertion_invalid", "more than one Assertion in the Response")
        return self._read_assertion(assertion, expect)

    @staticmethod
    def check_response(root: etree._Element, expect: Expectations) -> None:
        """The Response's own fields (SAML Core §3.2.2, Bindings §3.5.5.2, Profiles §4.1.4.3): Version 2.0, an ID,
        an IssueInstant not in the future, Destination, Issuer and InResponseTo as expected. Also on its own for
        a Response with an error status, before the status means anything (it carries no Assertion)."""
        if root.get("Version") != "2.0":
            raise _reject("upstream_version_unsupported", f"Response Version {(root.get('Version') or '')[:100]!r}")
        if not root.get("ID"):
            raise _reject("upstream_response_malformed", "the Response has no ID")
        issued = _instant(root.get("IssueInstant"), "IssueInstant")
        if issued is None:
            raise _reject("upstream_response_malformed", "the Response has no IssueInstant")
        if issued > expect.now + expect.skew:
            raise _reject("upstream_not_yet_valid", f"the Response was issued at {issued.isoformat()}")
        destination = root.get("Destination")
        if destination is not None and destination != expect.acs_url:
            raise _reject("upstream_destination_mismatch", f"Destination {destination[:200]!r}, expected "
                                                           f"{expect.acs_url}")
        issuer = root.find("saml:Issuer", NS)
        if issuer is None and (root.find("ds:Signature", NS) is not None
                               or root.find("saml:EncryptedAssertion", NS) is not None):
            # Profiles §4.1.4.2 (errata): the Response's Issuer MUST be there when the Response is signed or an
            # enclosed assertion is encrypted
            raise _reject("upstream_issuer_mismatch", "a signed Response, or one with an encrypted assertion, "
                                                      "without an Issuer (SAML Profiles §4.1.4.2)")
        if issuer is not None:
            if issuer.get("Format") not in (None, ENTITY_FORMAT):
                raise _reject("upstream_issuer_mismatch", "the Response Issuer's Format must be entity")
            if _text_only(issuer, "Issuer") != expect.idp_entity_id:
                raise _reject("upstream_issuer_mismatch", f"Response Issuer {(issuer.text or '')[:200]!r}")
        in_response_to = root.get("InResponseTo")
        if expect.request_id is not None and in_response_to != expect.request_id:
            raise _reject("upstream_in_response_to_mismatch", f"InResponseTo {in_response_to!r}")
        if expect.request_id is None and in_response_to is not None:
            raise _reject("upstream_in_response_to_mismatch", "InResponseTo names no pending request of the broker")

    def _the_assertion(self, root: etree._Element) -> etree._Element:
        plain = root.findall("saml:Assertion", NS)
        encrypted = root.findall("saml:EncryptedAssertion", NS)
        if len(plain) + len(encrypted) != 1:
            raise _reject("upstream_assertion_invalid",
                          f"expected one Assertion, found {len(plain)} plain and {len(encrypted)} encrypted")
        if plain:
            return plain[0]
        try:
            decrypted = self._decrypter.decrypt_detached(encrypted[0])
        except DecryptionRefused as exc:
            code = "upstream_algorithm_not_allowed" if exc.algorithm else "upstream_decryption_failed"
            raise _reject(code, str(exc)) from None
        if decrypted.tag != f"{{{SAML}}}Assertion":
            raise _reject("upstream_decryption_failed", f"the EncryptedAssertion holds a {decrypted.tag}")
        return decrypted

    def _decrypt_attributes(self, assertion: etree._Element) -> None:
        """Replace each EncryptedAttribute of the (verified) Assertion by the Attribute it holds (SAML Core §2.7.3.2,
        §6.1), decrypted as an EncryptedAssertion is: the same algorithms, limits and keys. The Assertion's
        signature, checked before, covers the ciphertext: no decryption oracle."""
        for encrypted in assertion.findall("saml:AttributeStatement/saml:EncryptedAttribute", NS):
            try:
                decrypted = self._decrypter.decrypt(encrypted)
            except DecryptionRefused as exc:
                code = "upstream_algorithm_not_allowed" if exc.algorithm else "upstream_decryption_failed"
                raise _reject(code, f"an EncryptedAttribute: {exc}") from None
            if decrypted.tag != f"{{{SAML}}}Attribute":
                raise _reject("upstream_decryption_failed", f"an EncryptedAttribute holds a {decrypted.tag}")

    def _read_assertion(self, assertion: etree._Element, expect: Expectations) -> UpstreamAssertion:
        now, skew = expect.now, expect.skew
        if assertion.get("Version") != "2.0":
            raise _reject("upstream_version_unsupported", f"Assertion Version {assertion.get('Version')!r}")
        assertion_id = assertion.get("ID")
        if not assertion_id:
            raise _reject("upstream_assertion_invalid", "the Assertion has no ID")
        issued = _instant(assertion.get("IssueInstant"), "Assertion IssueInstant")
        if issued is None:  # Core §2.3.3: [Required]
            raise _reject("upstream_assertion_invalid", "the Assertion has no IssueInstant")
        if expect.max_age is not None and issued < now - expect.max_age - skew:
            raise _reject("upstream_expired", f"the Assertion was issued at {issued.isoformat()}, more than "
                                              f"{expect.max_age} ago")
        issuer = assertion.find("saml:Issuer", NS)
        if issuer is None or _text_only(issuer, "Issuer") != expect.idp_entity_id:
            raise _reject("upstream_issuer_mismatch",
                          f"Assertion Issuer {(issuer.text if issuer is not None else None)!r}")
        if issuer.get("Format") not in (None, ENTITY_FORMAT):  # Profiles §4.1.4.2
            raise _reject("upstream_issuer_mismatch", "the Assertion Issuer's Format must be entity")

        subject = assertion.find("saml:Subject", NS)
        if subject is None:
            raise _reject("upstream_assertion_invalid", "the Assertion has no Subject")
        name_id_el = subject.find("saml:NameID", NS)
        if name_id_el is None:
            raise _reject("upstream_assertion_invalid", "the Subject has no NameID (EncryptedID is not supported)")
        name_id = _text_only(name_id_el, "NameID")
        if not name_id:
            raise _reject("upstream_assertion_invalid", "the NameID is empty")
        confirmed_until = _bearer_confirmation(subject, expect)

        all_conditions = assertion.findall("saml:Conditions", NS)
        if len(all_conditions) > 1:
            # Core §2.3.3: at most one; reading only the first would ignore what the others restrict
            raise _reject("upstream_assertion_invalid", f"{len(all_conditions)} Conditions in the Assertion (SAML "
                                                        "Core §2.3.3: at most one)")
        conditions = all_conditions[0] if all_conditions else None
        not_on_or_after = confirmed_until
        if conditions is not None:
            not_before = _instant(conditions.get("NotBefore"), "Conditions NotBefore")
            until = _instant(conditions.get("NotOnOrAfter"), "Conditions NotOnOrAfter")
            if not_before is not None and until is not None and not_before >= until:
                # Core §2.5.1.2: NotBefore MUST be earlier than NotOnOrAfter; such an assertion is valid at no
                # instant, and the clock skew must not make it valid at some
                raise _reject("upstream_assertion_invalid", f"Conditions NotBefore {not_before.isoformat()} is not "
                                                            f"earlier than NotOnOrAfter {until.isoformat()}")
            if not_before is not None and now + skew < not_before:
                raise _reject("upstream_not_yet_valid", f"NotBefore {not_before.isoformat()}")
            if until is not None:
                if now - skew >= until:
                    raise _reject("upstream_expired", f"Conditions NotOnOrAfter {until.isoformat()}")
                not_on_or_after = max(not_on_or_after, until)
            restrictions = conditions.findall("saml:AudienceRestriction", NS)
            proxy_restriction = _other_conditions(conditions)
        else:
            restrictions = []
            proxy_restriction = None
        if not restrictions:
            raise _reject("upstream_audience_mismatch", "the Assertion has no AudienceRestriction")
        for restriction in restrictions:  # SAML Core §2.5.1.4: every restriction must hold
            audiences = [_text_only(a, "Audience") for a in restriction.findall("saml:Audience", NS)]
            if expect.sp_entity_id not in audiences:
                raise _reject("upstream_audience_mismatch", f"Audience {audiences}")

        statements = assertion.findall("saml:AuthnStatement", NS)
        if not statements:
            raise _reject("upstream_assertion_invalid", "the Assertion has no AuthnStatement")
        if len(statements) > 1:
            # Core §2.7.2 gives several AuthnStatements no order and no combined meaning: which sign-on, at which
            # ClassRef (LoA), AuthnInstant and SessionNotOnOrAfter, the Assertion vouches for would be the broker's
            # guess; reading only the first would let a stronger one hide a weaker one beside it
            raise _reject("upstream_assertion_invalid", f"{len(statements)} AuthnStatements in the Assertion; the "
                                                        "broker accepts exactly one (Profiles §4.1.4.2)")
        statement = statements[0]
        authn_instant = _instant(statement.get("AuthnInstant"), "AuthnInstant")
        if authn_instant is None:
            raise _reject("upstream_assertion_invalid", "the AuthnStatement has no AuthnInstant")
        # a login that has not happened yet (an IdP clock far ahead): passed on to the SPs, it would defeat their
        # own checks of how recent the login is
        for instant, what in ((authn_instant, "AuthnInstant"),
                              (issued, "the Assertion's IssueInstant")):
            if instant > now + skew:
                raise _reject("upstream_not_yet_valid", f"{what} {instant.isoformat()} is in the future")
        session_until = _instant(statement.get("SessionNotOnOrAfter"), "SessionNotOnOrAfter")
        if session_until is not None and now - skew >= session_until:
            raise _reject("upstream_expired", f"SessionNotOnOrAfter {session_until.isoformat()}")
        class_ref = statement.find("saml:AuthnContext/saml:AuthnContextClassRef", NS)
        # informational (Core §2.7.2.2): entries that are no URI (empty, whitespace) are passed over
        authorities = tuple(name for name in (_text_only(a, "AuthenticatingAuthority") for a in statement.findall(
            "saml:AuthnContext/saml:AuthenticatingAuthority", NS)) if name and not _WHITESPACE.search(name))

        self._decrypt_attributes(assertion)
        attributes: dict[str, tuple[str, ...]] = {}
        for attribute in assertion.findall("saml:AttributeStatement/saml:Attribute", NS):
            name = attribute.get("Name")
            if not name:
                continue
            values = tuple(_text_only(v, f"attribute {name}") for v in attribute.findall("saml:AttributeValue", NS)
                           if not len(v))  # complex values (e.g. a NameID inside) are not attributes we use
            attributes[name] = attributes.get(name, ()) + values

        name_format = name_id_el.get("Format")
        return UpstreamAssertion(
            issuer=expect.idp_entity_id,
            assertion_id=assertion_id,
            in_response_to=expect.request_id,
            name_id=name_id,
            name_id_format=name_format,
            session_index=statement.get("SessionIndex"),
            authn_instant=authn_instant,
            authn_context=_text_only(class_ref, "AuthnContextClassRef") if class_ref is not None else None,
            attributes=attributes,
            # the replay cache keeps the ID this long: a year at most (an IdP writing 9999-12-31 made the TTL
            # arithmetic overflow), far past any Response a pending login or the skew would still admit
            expires=min(not_on_or_after, now + _MAX_REPLAY_MEMORY),
            name_qualifier=name_id_el.get("NameQualifier"),
            sp_name_qualifier=name_id_el.get("SPNameQualifier"),
            session_not_on_or_after=session_until,
            proxy_restriction=proxy_restriction,
            authenticating_authorities=authorities[:_MAX_AUTHORITIES],
        )


def _bearer_confirmation(subject: etree._Element, expect: Expectations) -> dt.datetime:
    """Check that a bearer SubjectConfirmation holds (SAML Profiles §4.1.4.2, §4.1.4.3); return the latest
    NotOnOrAfter of all the bearer confirmations, for the replay cache: the assertion's ID must be kept as long as
    any of them could still confirm it (§4.1.4.5), not only as long as the one that holds now."""
    problems: list[UpstreamRejected] = []
    holds = False
    latest: dt.datetime | None = None
    for confirmation in subject.findall("saml:SubjectConfirmation", NS):
        if confirmation.get("Method") != CM_BEARER:
            continue
        data = confirmation.find("saml:SubjectConfirmationData", NS)
        until: dt.datetime | None
        try:
            if data is None:
                raise _reject("upstream_subject_confirmation_invalid", "no SubjectConfirmationData")
            until = _bearer_data(data, expect)
            holds = True
        except UpstreamRejected as exc:
            # one confirmation that holds is enough (§4.1.4.2: "at least one"); others may name other recipients
            problems.append(exc)
            try:
                until = _instant(data.get("NotOnOrAfter"), "SubjectConfirmationData NotOnOrAfter") \
                    if data is not None else None
            except UpstreamRejected:
                until = None
        if until is not None and (latest is None or until > latest):
            latest = until
    if holds and latest is not None:
        return latest
    if not problems:
        raise _reject("upstream_subject_confirmation_invalid", "no bearer SubjectConfirmation")
    raise problems[0]  # the first confirmation's own reason (the usual case: there is only one)


def _bearer_data(data: etree._Element, expect: Expectations) -> dt.datetime:
    recipient = data.get("Recipient")
    if recipient != expect.acs_url:
        raise _reject("upstream_recipient_mismatch", f"Recipient {recipient!r}, expected {expect.acs_url}")
    until = _instant(data.get("NotOnOrAfter"), "SubjectConfirmationData NotOnOrAfter")
    if until is None:
        raise _reject("upstream_subject_confirmation_invalid", "no NotOnOrAfter")
    not_before = _instant(data.get("NotBefore"), "SubjectConfirmationData NotBefore")
    if not_before is not None and not_before >= until:
        # Core §2.4.1.2: NotBefore MUST be earlier than NotOnOrAfter (a confirmation valid at no instant)
        raise _reject("upstream_subject_confirmation_invalid", f"SubjectConfirmationData NotBefore "
                                                               f"{not_before.isoformat()} is not earlier than "
                                                               f"NotOnOrAfter {until.isoformat()}")
    if expect.now - expect.skew >= until:
        raise _reject("upstream_expired", f"SubjectConfirmationData NotOnOrAfter {until.isoformat()}")
    if not_before is not None and expect.now + expect.skew < not_before:
        raise _reject("upstream_not_yet_valid", f"SubjectConfirmationData NotBefore {not_before.isoformat()}")
    in_response_to = data.get("InResponseTo")
    if expect.request_id is not None and in_response_to != expect.request_id:
        raise _reject("upstream_in_response_to_mismatch", f"SubjectConfirmationData InResponseTo {in_response_to!r}")
    if expect.request_id is None and in_response_to is not None:
        raise _reject("upstream_in_response_to_mismatch", "SubjectConfirmationData names an unknown request")
    return until


def _other_conditions(conditions: etree._Element) -> ProxyRestriction | None:
    """SAML Core §2.5.1: a condition the broker does not understand makes the assertion Indeterminate, so it
    is refused. OneTimeUse (§2.5.1.5, at most one) is kept by the replay cache. ProxyRestriction (§2.5.1.6, at most
    one) limits what the broker does, issue assertions of its own on the strength of this one: Count="0" forbids
    it, so the assertion is refused here; otherwise it is returned, for the broker's assertions to honour and
    carry on."""
    restriction = None
    one_time_use = False
    for condition in conditions:
        if not isinstance(condition.tag, str) or condition.tag == f"{{{SAML}}}AudienceRestriction":
            continue
        if condition.tag == f"{{{SAML}}}OneTimeUse":
            if one_time_use:
                raise _reject("upstream_assertion_invalid", "more than one OneTimeUse (SAML Core §2.5.1.5)")
            one_time_use = True
            continue
        if condition.tag == f"{{{SAML}}}ProxyRestriction":
            if restriction is not None:
                raise _reject("upstream_assertion_invalid", "more than one ProxyRestriction (SAML Core §2.5.1.6)")
            count = _count(condition.get("Count"))
            if count == 0:
                raise _reject("upstream_assertion_invalid", "ProxyRestriction Count=0: the IdP forbids passing "
                                                            "this authentication on")
            audiences = tuple(_text_only(a, "Audience") for a in condition.findall("saml:Audience", NS))
            if any(not audience or _WHITESPACE.search(audience) for audience in audiences):
                # an Audience is an anyURI: an empty one, or one with whitespace, names nobody it can be matched to
                raise _reject("upstream_assertion_invalid", "a ProxyRestriction Audience is empty or holds "
                                                            "whitespace (SAML Core §2.5.1.6: a URI)")
            restriction = ProxyRestriction(count, audiences)
            continue
        raise _reject("upstream_assertion_invalid", f"unknown condition {condition.tag} (SAML Core §2.5.1)")
    return restriction


def _count(text: str | None) -> int | None:
    """ProxyRestriction's Count ("0", "00", "+0" are all zero); None when absent. Anything else is refused:
    a limit that cannot be read cannot be honoured."""
    if text is None:
        return None
    try:
        return non_negative_integer(text)
    except ValueError as exc:
        raise _reject("upstream_assertion_invalid", f"ProxyRestriction Count: {exc}") from None
