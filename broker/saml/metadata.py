"""SAML metadata of peers (SAML Metadata 2.0), converted at load time into frozen values.

Parsing goes through pysaml2's generated classes, which parse with defusedxml
(no DTDs, no entity expansion). Certificates in metadata are key containers:
their validity dates are not checked (REFERENCE: metadata trust).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from defusedxml import DefusedXmlException
from lxml import etree
from saml2 import md

from broker.config.typed import ParseContext
from broker.config.values import read_configured_file
from broker.config.yamlsource import KeyPath
from broker.pki.algorithms import weak_key_reason
from broker.saml.bindings import HTTP_POST, HTTP_REDIRECT
from broker.saml.xmldsig import SignatureMissing, SignatureRejected, XmlVerifier
from broker.saml.xmlparse import UnsafeXml, parse_untrusted
from broker.saml.xmltime import parse_duration, parse_instant
from broker.saml.xstypes import boolean, unsigned_short

PROTOCOL = "urn:oasis:names:tc:SAML:2.0:protocol"
MD = "urn:oasis:names:tc:SAML:2.0:metadata"
MAX_METADATA_BYTES = 5 * 1024 * 1024
_DS = "http://www.w3.org/2000/09/xmldsig#"
_XENC11 = "http://www.w3.org/2009/xmlenc11#"


@dataclass(frozen=True)
class Endpoint:
    binding: str
    location: str
    response_location: str | None = None
    index: int | None = None
    is_default: bool | None = None   # isDefault as written: None when absent (SAML Metadata §2.2.3 tells them apart)


@dataclass(frozen=True)
class EncryptionMethod:
    """One EncryptionMethod of a KeyDescriptor (SAML Metadata §2.4.1.1: an algorithm the entity supports with the
    key, with its settings): for RSA-OAEP the digest and mask generation function it names (XML Encryption 1.1
    §5.5.2; none named: SHA-1 and MGF1 with SHA-1), and whether it names OAEPparams (a label)."""

    algorithm: str
    digest: str | None = None
    mgf: str | None = None
    oaep_params: bool = False


@dataclass(frozen=True)
class EncryptionKey:
    """A certificate an entity receives encrypted keys for, with the EncryptionMethods its KeyDescriptor lists
    (SAML Metadata §2.4.1.1: the algorithms the entity supports with it; none listed, no restriction)."""

    certificate: x509.Certificate
    methods: tuple[EncryptionMethod, ...]


@dataclass(frozen=True)
class SpMetadata:
    """What the broker needs from a service provider's SPSSODescriptor."""

    entity_id: str
    assertion_consumer_services: tuple[Endpoint, ...]
    single_logout_services: tuple[Endpoint, ...]
    signing_certificates: tuple[x509.Certificate, ...]
    encryption_keys: tuple[EncryptionKey, ...]
    authn_requests_signed: bool
    want_assertions_signed: bool
    nameid_formats: tuple[str, ...]
    valid_until: dt.datetime | None = None   # the earliest validUntil covering the SP (readiness reports it)

    def default_acs(self) -> Endpoint | None:
        """The default HTTP-POST ACS (SAML Metadata §2.2.3): the first with isDefault="true", else the first
        without isDefault="false", else the first."""
        posts = [e for e in self.assertion_consumer_services if e.binding == HTTP_POST]
        marked = [e for e in posts if e.is_default] or [e for e in posts if e.is_default is None] or posts
        return marked[0] if marked else None

    def acs_by_url(self, url: str, binding: str) -> Endpoint | None:
        """The ACS at Location ``url`` with ``binding`` (SAML Metadata §2.2.3: an endpoint is the pair; Core
        §3.4.1: AssertionConsumerServiceURL is read together with ProtocolBinding). An SP may list one URL for
        several bindings (SimpleSAMLphp puts HTTP-Artifact before HTTP-POST), so the Location alone does not
        name an endpoint."""
        for e in self.assertion_consumer_services:
            if e.location == url and e.binding == binding:
                return e
        return None

    def acs_by_index(self, index: int) -> Endpoint | None:
        for e in self.assertion_consumer_services:
            if e.index == index:
                return e
        return None

    def slo(self) -> Endpoint | None:
        return _slo(self.single_logout_services)


def _slo(endpoints: tuple[Endpoint, ...]) -> Endpoint | None:
    """The SingleLogoutService to use: HTTP-Redirect first (front-channel logout, Profiles §4.4.3), else POST."""
    for binding in (HTTP_REDIRECT, HTTP_POST):
        for e in endpoints:
            if e.binding == binding:
                return e
    return None


def _bool(text: str | None, name: str) -> bool:
    """An xs:boolean attribute; absent is false (the default of every boolean attribute the broker reads).
    Anything else is refused: AuthnRequestsSigned="yes" read as false would drop the signature requirement the
    SP meant to state."""
    if text is None:
        return False
    try:
        return boolean(text)
    except ValueError as exc:
        raise ValueError(f"{name} {exc}") from None


def _optional_bool(text: str | None, name: str) -> bool | None:
    """An optional xs:boolean attribute: None when absent."""
    return None if text is None else _bool(text, name)




def _key_descriptors(descriptor: Any, element: Any, use: str) -> Iterator[tuple[Any, x509.Certificate]]:
    """Each KeyDescriptor for ``use`` (or without a use: SAML Metadata §2.4.1.1, both) with each key-bearing
    certificate it holds (:func:`_key_bearing`). ``element`` is the role descriptor as lxml parsed it: pysaml2
    keeps only the last X509Certificate of an X509Data, so the certificates are read from there."""
    for kd, kd_element in zip(descriptor.key_descriptor or [], element.findall(f"{{{MD}}}KeyDescriptor"),
                              strict=True):
        if kd.use not in (None, use):
            continue
        for data in kd_element.findall(f"{{{_DS}}}KeyInfo/{{{_DS}}}X509Data"):
            certificates = []
            for text in (c.text for c in data.findall(f"{{{_DS}}}X509Certificate")):
                if not text:
                    continue
                b64 = "".join(text.split())
                try:
                    cert = x509.load_der_x509_certificate(base64.b64decode(b64, validate=True))
                    cert.public_key()   # the key is what the broker uses: a malformed one is refused here, at load
                except UnsupportedAlgorithm:
                    # a key type the broker cannot use at all (a binary curve, SM2, GOST): not one of its keys, like
                    # a KeyDescriptor for another use; the entity's usable keys still serve (and with none left, the
                    # checks that need one say so)
                    continue
                except (ValueError, binascii.Error, x509.InvalidVersion) as exc:  # InvalidVersion is no ValueError
                    raise ValueError(f"a KeyDescriptor holds an unreadable certificate or key ({exc})") from None
                certificates.append(cert)
            for cert in _key_bearing(certificates):
                yield kd, cert


def _key_bearing(certificates: list[x509.Certificate]) -> list[x509.Certificate]:
    """The certificates of one X509Data that bear the entity's key (XML-DSig §4.4.4: the others, if any, are of its
    certification chain): those that issued none of the others. A CA's key signs no SAML message of the entity's;
    self-signed certificates (key containers, two of them at a rollover) issue nothing else and are all kept."""
    issuers = {c.issuer for c in certificates if c.issuer != c.subject}
    return [c for c in certificates if c.subject not in issuers]


def _signing_certificates(descriptor: Any, element: Any) -> tuple[x509.Certificate, ...]:
    """The certificates of the entity's signing keys (SAML Metadata §2.4.1.1), every one strong enough to trust a
    signature from: its signatures are the entity's word (an SP's requests, an IdP's assertions), so an RSA key
    under 2048 bits or a small curve, which whoever breaks it could sign with, refuses the metadata, as it refuses
    a CA (:func:`broker.pki.algorithms.weak_key_reason`). Key types no verifier here uses are left as they are."""
    found = []
    for _, cert in _key_descriptors(descriptor, element, "signing"):
        weak = weak_key_reason(cert) if isinstance(cert.public_key(), rsa.RSAPublicKey | ec.EllipticCurvePublicKey) \
            else None
        if weak:
            raise ValueError(f"a signing key is too weak: {weak}; its certificate: "
                             f"{cert.subject.rfc4514_string()[:200]}")
        found.append(cert)
    return tuple(found)


def _encryption_method(method: Any) -> EncryptionMethod:
    settings = {(e.namespace, e.tag): e.attributes.get("Algorithm") for e in method.extension_elements or []}
    return EncryptionMethod(method.algorithm, digest=settings.get((_DS, "DigestMethod")),
                            mgf=settings.get((_XENC11, "MGF")), oaep_params=method.oae_pparams is not None)


def _encryption_keys(descriptor: Any, element: Any) -> tuple[EncryptionKey, ...]:
    return tuple(EncryptionKey(cert, tuple(_encryption_method(m) for m in kd.encryption_method or [] if m.algorithm))
                 for kd, cert in _key_descriptors(descriptor, element, "encryption"))


def _http_location(url: str) -> bool:
    """Whether ``url`` is an absolute http(s) URL with a host: the only place a browser can carry a message of the
    HTTP-POST and HTTP-Redirect bindings to (SAML Bindings §3.4.4, §3.5.4), which are all the broker speaks."""
    try:
        parts = urlsplit(url)
        return parts.scheme.lower() in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a port past 65535, an unclosed [IPv6 literal
        return False


def _endpoints(items: Any, indexed: bool) -> tuple[Endpoint, ...]:
    out = []
    for e in items or []:
        if not e.binding or not e.location:
            raise ValueError("an endpoint lacks Binding or Location")
        # a javascript: or data: Location would be the action of the form the broker's page posts, a relative one
        # the broker's own path: neither is the peer's endpoint
        for attribute, url in (("Location", e.location), ("ResponseLocation", e.response_location)):
            if url is not None and not _http_location(url.strip()):
                raise ValueError(f"{type(e).__name__} {attribute} {url[:200]!r} is no absolute http(s) URL")
        index = None
        if indexed:
            try:
                index = unsigned_short(e.index or "")  # int() would take "1_0" (as 10) and other scripts' digits
            except ValueError as exc:
                raise ValueError(f"endpoint {e.location} has no valid index: index {exc}") from None
        out.append(
            Endpoint(
                binding=e.binding,
                location=e.location,
                response_location=e.response_location,
                index=index,
                is_default=_optional_bool(getattr(e, "is_default", None), "isDefault"),
            )
        )
    return tuple(out)


def _entity(xml: bytes, entity_id: str, max_bytes: int = MAX_METADATA_BYTES) -> Any:
    """The EntityDescriptor of ``entity_id`` (pysaml2's object) from an EntityDescriptor or
    EntitiesDescriptor document; ValueError with an operator-readable message."""
    if len(xml) > max_bytes:
        raise ValueError(f"metadata larger than {max_bytes} bytes")
    try:
        text = xml.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("metadata is not UTF-8") from None
    try:
        # the broker's own hardened parser first: no DOCTYPE at all (pysaml2's defusedxml allows DTDs)
        parse_untrusted(xml, max_bytes)
    except UnsafeXml as exc:
        raise ValueError(f"metadata is not well-formed, safe XML ({exc})") from None
    try:
        entity = md.entity_descriptor_from_string(text)
        candidates = [entity] if entity is not None else []
        if entity is None:
            group = md.entities_descriptor_from_string(text)
            if group is None:
                raise ValueError("root element is neither EntityDescriptor nor EntitiesDescriptor")
            candidates = list(_members(group))
    except DefusedXmlException as exc:
        raise ValueError(f"metadata is not well-formed, safe XML ({type(exc).__name__})") from None
    except ValueError:
        raise
    except Exception as exc:  # defusedxml and ElementTree raise a variety of types
        raise ValueError(f"metadata is not well-formed, safe XML ({type(exc).__name__}: {exc})") from None
    matching = [e for e in candidates if e.entity_id == entity_id]
    if not matching:
        found = ", ".join(sorted({str(e.entity_id) for e in candidates})) or "none"
        raise ValueError(f"metadata describes no entity {entity_id!r} (found: {found})")
    if len(matching) > 1:
        # which one's endpoints and keys are the entity's would be up to the order a reader walks the groups in
        # (pysaml2 lists a group's EntityDescriptors before its nested groups', lxml in document order)
        raise ValueError(f"metadata describes entity {entity_id!r} {len(matching)} times")
    return matching[0]


def _members(group: Any) -> Iterator[Any]:
    """Every EntityDescriptor of an EntitiesDescriptor (pysaml2's object), also those of the groups nested in it
    (SAML Metadata §2.3.1: an EntitiesDescriptor holds EntityDescriptor and EntitiesDescriptor elements)."""
    yield from group.entity_descriptor or []
    for nested in group.entities_descriptor or []:
        yield from _members(nested)


def _role_element(xml: bytes, entity_id: str, role: str, max_bytes: int = MAX_METADATA_BYTES) -> Any:
    """The role descriptor :func:`_entity` and the parser found, as lxml reads it: in the entity it chose (the
    root, or the first EntityDescriptor of the aggregate naming ``entity_id``), the one SAML 2.0 ``role``."""
    root = parse_untrusted(xml, max_bytes)
    entities = [root] if root.tag == f"{{{MD}}}EntityDescriptor" else _entity_elements(root)
    for entity in (e for e in entities if e.get("entityID") == entity_id):
        for descriptor in entity.findall(f"{{{MD}}}{role}"):
            if PROTOCOL in (descriptor.get("protocolSupportEnumeration") or ""):
                return descriptor
    raise ValueError(f"entity {entity_id!r} has no SAML 2.0 {role}")


def _entity_elements(group: etree._Element) -> list[etree._Element]:
    """The EntityDescriptors of an EntitiesDescriptor document, in its nested groups too (:func:`_members`): its
    children and theirs, through EntitiesDescriptors only (not, say, an EntityDescriptor inside Extensions)."""
    found = []
    for child in group:
        if child.tag == f"{{{MD}}}EntityDescriptor":
            found.append(child)
        elif child.tag == f"{{{MD}}}EntitiesDescriptor":
            found.extend(_entity_elements(child))
    return found


def parse_sp_metadata(xml: bytes, entity_id: str) -> SpMetadata:
    """The SPSSODescriptor of ``entity_id``. Raises ValueError with an operator-readable message."""
    entity = _entity(xml, entity_id)
    sps = [d for d in entity.spsso_descriptor or [] if PROTOCOL in (d.protocol_support_enumeration or "")]
    if len(sps) != 1:
        raise ValueError(f"entity {entity_id!r} needs exactly one SAML 2.0 SPSSODescriptor, found {len(sps)}")
    sp = sps[0]
    element = _role_element(xml, entity_id, "SPSSODescriptor")
    acs = _endpoints(sp.assertion_consumer_service, indexed=True)
    if not any(e.binding == HTTP_POST for e in acs):
        raise ValueError("the SP has no AssertionConsumerService with the HTTP-POST binding")
    return SpMetadata(
        entity_id=entity_id,
        assertion_consumer_services=acs,
        single_logout_services=_endpoints(sp.single_logout_service, indexed=False),
        signing_certificates=_signing_certificates(sp, element),
        encryption_keys=_encryption_keys(sp, element),
        authn_requests_signed=_bool(sp.authn_requests_signed, "AuthnRequestsSigned"),
        want_assertions_signed=_bool(sp.want_assertions_signed, "WantAssertionsSigned"),
        nameid_formats=tuple(f.text.strip() for f in sp.name_id_format or [] if f.text),
        valid_until=_valid_until(xml, entity_id, role="SPSSODescriptor"),
    )


@dataclass(frozen=True)
class MetadataFile:
    """A local file with a peer's SAML metadata (an SP's, or a municipal IdP's). Parsed at load time; the
    entity it must describe is checked against the configured entity ID."""

    path: Path
    xml: bytes

    @classmethod
    def from_config(cls, value: Any, ctx: ParseContext, path: KeyPath) -> MetadataFile:
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"expected a path to a metadata file, got {value!r}")
        p = ctx.resolve(value)
        # one entity's metadata (parsing refuses more than MAX_METADATA_BYTES); room for a local aggregate
        return cls(p, read_configured_file(p, "metadata", 16 * MAX_METADATA_BYTES))

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        return {"type": "string", "description": "path to a SAML metadata XML file"}


@dataclass(frozen=True)
class IdpMetadata:
    """What the broker needs from a municipal IdP's IDPSSODescriptor."""

    entity_id: str
    single_sign_on_services: tuple[Endpoint, ...]
    single_logout_services: tuple[Endpoint, ...]
    signing_certificates: tuple[x509.Certificate, ...]
    want_authn_requests_signed: bool
    valid_until: dt.datetime | None
    attributes: tuple[str, ...] = ()     # the saml:Attribute names the IdP declares it can send (may be none)
    # how soon this copy should be fetched again (SAML Metadata §2.3.1): the shortest cacheDuration covering the IdP
    cache_duration: dt.timedelta | None = None

    def sso(self) -> Endpoint:
        """The SSO endpoint to send AuthnRequests to: HTTP-Redirect preferred, else HTTP-POST."""
        for binding in (HTTP_REDIRECT, HTTP_POST):
            for e in self.single_sign_on_services:
                if e.binding == binding:
                    return e
        raise ValueError("the IdP has no SingleSignOnService with the HTTP-Redirect or HTTP-POST binding")

    def slo(self) -> Endpoint | None:
        return _slo(self.single_logout_services)


def parse_idp_metadata(xml: bytes, entity_id: str, max_bytes: int = MAX_METADATA_BYTES) -> IdpMetadata:
    """The IDPSSODescriptor of ``entity_id``. Several signing keys (rollover) are all kept."""
    entity = _entity(xml, entity_id, max_bytes)
    idps = [d for d in entity.idpsso_descriptor or [] if PROTOCOL in (d.protocol_support_enumeration or "")]
    if len(idps) != 1:
        raise ValueError(f"entity {entity_id!r} needs exactly one SAML 2.0 IDPSSODescriptor, found {len(idps)}")
    idp = idps[0]
    signing = _signing_certificates(idp, _role_element(xml, entity_id, "IDPSSODescriptor", max_bytes))
    if not signing:
        raise ValueError(f"the IdP {entity_id!r} publishes no signing key")
    result = IdpMetadata(
        entity_id=entity_id,
        single_sign_on_services=_endpoints(idp.single_sign_on_service, indexed=False),
        single_logout_services=_endpoints(idp.single_logout_service, indexed=False),
        signing_certificates=signing,
        want_authn_requests_signed=_bool(idp.want_authn_requests_signed, "WantAuthnRequestsSigned"),
        valid_until=_valid_until(xml, entity_id, max_bytes),
        attributes=tuple(a.name for a in idp.attribute or [] if a.name),
        cache_duration=_cache_duration(xml, entity_id, max_bytes),
    )
    result.sso()  # raises if there is no usable SSO endpoint
    return result


def _covering(xml: bytes, entity_id: str | None, max_bytes: int, role: str) -> list[Any]:
    """The elements whose validUntil and cacheDuration cover the entity in ``role`` (SAML Metadata §2.3.1, §2.3.2,
    §2.4.1): the root, the EntitiesDescriptors nested in it that hold the entity, the entity's EntityDescriptor
    inside an aggregate, and its role descriptor. Other entities' and other groups' do not count."""
    root = parse_untrusted(xml, max_bytes)
    covering = [root]
    if entity_id is not None:
        entities = [root] if root.tag == f"{{{MD}}}EntityDescriptor" else _entity_elements(root)
        for entity in entities:
            if entity.get("entityID") == entity_id:
                covering.extend(group for group in entity.iterancestors(f"{{{MD}}}EntitiesDescriptor")
                                if group is not root)
                covering.append(entity)
                covering.extend(entity.findall(f"{{{MD}}}{role}"))
    return covering


_Ordered = TypeVar("_Ordered", dt.timedelta, dt.datetime)


def _cache_duration(xml: bytes, entity_id: str, max_bytes: int = MAX_METADATA_BYTES, *,
                    role: str = "IDPSSODescriptor") -> dt.timedelta | None:
    """The shortest cacheDuration that covers the entity in ``role`` (SAML Metadata §2.3.1; errata E76: of nested
    ones the smaller applies, E94: it says when to fetch again, not when the copy stops being valid)."""
    return _least(xml, entity_id, max_bytes, role, "cacheDuration", parse_duration, "a non-negative xs:duration")


def _valid_until(xml: bytes, entity_id: str | None, max_bytes: int = MAX_METADATA_BYTES, *,
                 role: str = "IDPSSODescriptor") -> dt.datetime | None:
    """The earliest validUntil that covers the entity in ``role`` (:func:`_covering`)."""
    return _least(xml, entity_id, max_bytes, role, "validUntil", parse_instant, "a UTC dateTime")


def _least(xml: bytes, entity_id: str | None, max_bytes: int, role: str, attribute: str,
           parse: Callable[[str], _Ordered], expected: str) -> _Ordered | None:
    """The least value of ``attribute`` among the elements that cover the entity in ``role`` (:func:`_covering`),
    each read with ``parse``; one that cannot be read refuses the document."""
    found = []
    for element in _covering(xml, entity_id, max_bytes, role):
        text = element.get(attribute)
        if text is None:
            continue
        try:
            found.append(parse(text))
        except ValueError:
            raise ValueError(f"{attribute} {text[:40]!r} is not {expected}") from None
    return min(found) if found else None


def verify_metadata_signature(xml: bytes, certificates: tuple[x509.Certificate, ...], now: dt.datetime,
                              entity_id: str | None = None, max_bytes: int = MAX_METADATA_BYTES) -> None:
    """Metadata fetched over the network is used only if signed, by one of ``certificates``, and not expired.

    The signature element is required (pysaml2 would accept metadata without
    one); it must envelop the root element (SAML Metadata §3.1, XML-DSig).
    """
    try:
        root = parse_untrusted(xml, max_bytes)
    except UnsafeXml as exc:
        raise ValueError(f"metadata is not well-formed, safe XML ({exc})") from None
    try:
        # an aggregate from its configured URL may be large by nature: no namespace bound (messages have one)
        XmlVerifier(certificates, bounded=False).verify(root)
    except SignatureMissing:
        raise ValueError("the metadata is not signed (a signature is required)") from None
    except SignatureRejected as exc:
        raise ValueError(f"the metadata signature is not valid: {exc}") from None
    until = _valid_until(xml, entity_id, max_bytes)
    if until is not None and until <= now:
        raise ValueError(f"the metadata expired at {until.isoformat()} (validUntil)")
