"""Accepting AuthnRequests from registered service providers (SAML Core §3.4, Profiles §4.1.4.1).

The request is parsed once, by the hardened lxml parser; its signature (if
any) is verified on that same tree, and every field is read from the
verified root element. Parsing twice with different parsers invites parser
differential attacks.

Checks, in order: decoding and size; root element; Issuer is a
registered SP; signature (required when the SP's metadata says
AuthnRequestsSigned or its config says require_signed_requests; verified
whenever present); Destination; IssueInstant window; Version; the ACS endpoint
(registered in metadata, HTTP-POST); RelayState size; then the request's
options (NameIDPolicy, RequestedAuthnContext, ForceAuthn, IsPassive). Once
the SP and its ACS are known, refusals carry a :class:`ReplyTarget` so that
the SP gets a SAML error Response instead of the user a dead end.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any

from lxml import etree

from broker.clock import Clock
from broker.config.loader import ServiceProvider, Settings
from broker.errors import SamlRejected
from broker.model import ReplyTarget
from broker.saml.bindings import (
    HTTP_POST,
    HTTP_REDIRECT,
    NAMEID_FORMATS,
    NAMEID_UNSPECIFIED,
    InboundMessage,
    check_relay_state,
    decode,
    names_endpoint,
    verify_query_signature,
)
from broker.saml.xmldsig import SignatureMissing, SignatureRejected, XmlVerifier
from broker.saml.xmlparse import UnsafeXml, is_ncname, parse_untrusted
from broker.saml.xmltime import parse_instant
from broker.saml.xstypes import XML_SPACE, boolean, non_negative_integer, unsigned_short

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
NS = {"samlp": SAMLP, "saml": SAML}
ENTITY_FORMAT = "urn:oasis:names:tc:SAML:2.0:nameid-format:entity"
COMPARISONS = ("exact", "minimum", "maximum", "better")
_TUPLES = ("requested_contexts", "idp_hints", "requester_ids")
_VERSION = re.compile(r"([0-9]{1,4})\.([0-9]{1,4})")
# What a request's Scoping may bring into a pending login (stored in Redis): an SP suggests a few IdPs at most
_MAX_SCOPING_ENTRIES = 32
_MAX_SCOPING_VALUE = 1024
# ... and its RequestedAuthnContext: the few LoA URIs an SP may ask for (a ClassRef is at most _MAX_SCOPING_VALUE long)
_MAX_CLASS_REFS = 32


@dataclass(frozen=True)
class AuthnRequestInfo:
    """A vetted AuthnRequest: only what the rest of the login needs. JSON-serialisable."""

    request_id: str
    sp_entity_id: str
    acs_url: str
    binding: str
    nameid_format: str
    force_authn: bool
    is_passive: bool
    requested_contexts: tuple[str, ...]
    comparison: str
    relay_state: str | None
    signed: bool
    # Scoping (SAML Core §3.4.1.2): the IdPs (or municipalities) the SP suggests, in its order (IDPList, or the
    # ?municipality= of the SSO URL); how many proxying steps it allows (None: no limit); the entities on whose
    # behalf it asks (RequesterID), which a proxied request passes on
    idp_hints: tuple[str, ...] = ()
    proxy_count: int | None = None
    requester_ids: tuple[str, ...] = ()

    def reply_target(self) -> ReplyTarget:
        return ReplyTarget(self.sp_entity_id, self.acs_url, self.request_id, self.relay_state)

    def to_dict(self) -> dict[str, Any]:
        """As a pending login is stored. Readable by the previous release too (a rolling upgrade): its one
        ``idp_hint`` is written, and the Scoping fields it does not know only when the request has them."""
        data = asdict(self)
        for name in _TUPLES:
            data[name] = list(data[name])
        data["idp_hint"] = self.idp_hints[0] if self.idp_hints else None
        if len(self.idp_hints) <= 1:  # idp_hint says it all
            del data["idp_hints"]
        for name in ("proxy_count", "requester_ids"):
            if data[name] in ([], None):
                del data[name]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AuthnRequestInfo:
        data = dict(data)
        legacy_hint = data.pop("idp_hint", None)  # all the previous release kept of the hints
        if legacy_hint and not data.get("idp_hints"):
            data["idp_hints"] = [legacy_hint]
        return cls(**{**data, **{name: tuple(data.get(name, ())) for name in _TUPLES}})

    def with_hint(self, hint: str) -> AuthnRequestInfo:
        return replace(self, idp_hints=(hint,))


def _bool_attr(element: etree._Element, name: str, target: ReplyTarget) -> bool:
    """An xs:boolean attribute (XML Schema Part 2 §3.2.2: "true", "false", "1", "0", whitespace collapsed);
    absent is false (the default of ForceAuthn, IsPassive and AllowCreate: SAML Core §3.4.1, §3.4.1.1)."""
    value = element.get(name)
    if value is None:
        return False
    try:
        return boolean(value)
    except ValueError as exc:
        raise SamlRejected("saml_request_malformed", f"{name}={exc}", reply_to=target) from None


def _scoping(root: etree._Element, target: ReplyTarget) -> tuple[tuple[str, ...], int | None, tuple[str, ...]]:
    """The request's Scoping (SAML Core §3.4.1.2): every IDPEntry's ProviderID in order, ProxyCount and the
    RequesterIDs. IDPList's GetComplete (a URL to fetch the rest of the list from) is not followed."""
    scoping = root.find("samlp:Scoping", NS)
    if scoping is None:
        return (), None, ()
    proxy_count = None
    if (count := scoping.get("ProxyCount")) is not None:
        try:
            proxy_count = non_negative_integer(count)
        except ValueError as exc:
            raise SamlRejected("saml_request_malformed", f"Scoping ProxyCount: {exc}", reply_to=target) from None
    # both lists are advisory or informational: entries that are no usable URI (empty, overlong) are passed
    # over, and only the first few are kept (a pending login is stored with them)
    providers = _usable(e.get("ProviderID") for e in scoping.findall("samlp:IDPList/samlp:IDPEntry", NS))
    requesters = _usable((e.text or "").strip(XML_SPACE) for e in scoping.findall("samlp:RequesterID", NS))
    return providers, proxy_count, requesters


def _usable(values: Iterable[str | None]) -> tuple[str, ...]:
    return tuple(itertools.islice((v for v in values if v and len(v) <= _MAX_SCOPING_VALUE), _MAX_SCOPING_ENTRIES))


class AuthnRequestParser:
    """Turns an :class:`InboundMessage` into an :class:`AuthnRequestInfo` or a :class:`SamlRejected`."""

    def __init__(self, settings: Settings, clock: Clock, sso_url: str) -> None:
        idp = settings.broker.idp
        self._settings = settings
        self._clock = clock
        self._sso_url = sso_url
        self._max_bytes = idp.max_message_bytes
        self._skew = idp.clock_skew.timedelta
        self._max_age = idp.request_max_age.timedelta
        self._relay_max = idp.relay_state_max_bytes
        # Verification keys from each SP's metadata, loaded once.
        self._verifiers = {
            sp.entity_id: XmlVerifier(sp.metadata.signing_certificates)
            for sp in settings.service_providers.values()
        }

    def parse(self, message: InboundMessage) -> tuple[AuthnRequestInfo, ServiceProvider]:
        xml = decode(message, self._max_bytes)
        try:
            root = parse_untrusted(xml, self._max_bytes)
        except UnsafeXml as exc:
            raise SamlRejected("saml_request_malformed", str(exc)) from None
        if root.tag != f"{{{SAMLP}}}AuthnRequest":
            # cut short: anyone can send this, and it goes to the audit trail (a namespace may be 60 kB long)
            raise SamlRejected("saml_request_malformed", f"expected an AuthnRequest, got {str(root.tag)[:200]}")
        request_id = root.get("ID")
        if not request_id or len(request_id) > 256 or not is_ncname(request_id):
            # an xs:ID (SAML Core §3.2.1), which the answer's InResponseTo (an NCName) repeats
            raise SamlRejected("saml_request_malformed", "the AuthnRequest has no usable ID (an xs:ID)")

        issuer_el = root.find("saml:Issuer", NS)
        issuer = (issuer_el.text or "").strip(XML_SPACE) if issuer_el is not None else ""
        if not issuer:
            raise SamlRejected("saml_request_malformed", "the AuthnRequest has no Issuer")
        if issuer_el is not None and issuer_el.get("Format") not in (None, ENTITY_FORMAT):
            raise SamlRejected("saml_request_malformed", "the Issuer's Format must be entity")
        sp = self._settings.sp_by_entity_id(issuer)
        if sp is None:
            raise SamlRejected("sp_unknown", f"Issuer {issuer[:200]!r} is not a registered service provider",
                               params={"issuer": issuer[:200]})
        try:
            return self._vet(message, root, request_id, sp)
        except SamlRejected as exc:
            # every later refusal names the SP the Issuer names: its remedy (keys, algorithms, the broker's URL and
            # the ACS in its configuration, its clock) is at that SP, which the audit record must say
            exc.issuer = exc.issuer or sp.entity_id
            raise

    def _vet(self, message: InboundMessage, root: etree._Element, request_id: str,
             sp: ServiceProvider) -> tuple[AuthnRequestInfo, ServiceProvider]:
        """Everything after the Issuer: signature, Destination, time, version, RelayState, ACS and options."""
        signed = self._check_signature(message, root, sp)

        destination = root.get("Destination")
        if destination is not None and not names_endpoint(destination, self._sso_url, message):
            raise SamlRejected("saml_destination_mismatch",
                               f"Destination {destination[:200]!r}, expected {self._sso_url}")
        if signed and destination is None:
            # Bindings §3.4.5.2 / §3.5.5.2: a signed message must name its Destination
            raise SamlRejected("saml_destination_mismatch", "a signed request must carry Destination")

        try:
            issued = parse_instant(root.get("IssueInstant") or "")
        except ValueError as exc:
            raise SamlRejected("saml_request_malformed", f"IssueInstant: {exc}") from None
        now = self._clock.now()
        if issued > now + self._skew or issued < now - self._max_age - self._skew:
            raise SamlRejected("saml_request_stale", f"IssueInstant {issued.isoformat()} at {now.isoformat()}")
        # after Destination and IssueInstant: a request for another endpoint, or one replayed after its time
        # window, is discarded, not answered (SAML Core §3.2.1); within the window the same request is answered
        # again (a reload of the page), each time with a new assertion
        version = root.get("Version")
        if version != "2.0":
            raise SamlRejected("saml_version_unsupported", f"Version {version!r}",
                               reply_to=self._version_reply(version, sp, request_id, message.relay_state))

        relay_state = message.relay_state
        check_relay_state(relay_state, self._relay_max)

        acs_url = self._acs_url(root, sp)
        target = ReplyTarget(sp.entity_id, acs_url, request_id, relay_state)
        binding = root.get("ProtocolBinding")
        if binding is not None and binding != HTTP_POST:
            raise SamlRejected("saml_binding_unsupported", f"ProtocolBinding {binding}", reply_to=target)

        if root.find("saml:Subject", NS) is not None:
            raise SamlRejected("saml_feature_unsupported", "a requested Subject", reply_to=target)

        nameid_format = self._nameid_format(root, sp, target)
        contexts, comparison = self._requested_context(root, target)
        hints, proxy_count, requesters = _scoping(root, target)
        info = AuthnRequestInfo(
            request_id=request_id,
            sp_entity_id=sp.entity_id,
            acs_url=acs_url,
            binding=message.binding,
            nameid_format=nameid_format,
            force_authn=_bool_attr(root, "ForceAuthn", target),
            is_passive=_bool_attr(root, "IsPassive", target),
            requested_contexts=contexts,
            comparison=comparison,
            relay_state=relay_state,
            signed=signed,
            idp_hints=hints,
            proxy_count=proxy_count,
            requester_ids=requesters,
        )
        return info, sp

    def _version_reply(self, version: str | None, sp: ServiceProvider, request_id: str,
                       relay_state: str | None) -> ReplyTarget | None:
        """Where a registered SP asking in a higher SAML version gets its VersionMismatch Response (SAML Core
        §4.1.3.2: a responder rejects a request of a version it does not support; RequestVersionTooHigh): its
        default ACS, since the request's own fields are not read. None for a lower or unreadable version: no
        SAML 2.0 Response answers those."""
        parts = _VERSION.fullmatch(version or "")
        default = sp.metadata.default_acs()
        if parts is None or (int(parts[1]), int(parts[2])) <= (2, 0) or default is None:
            return None
        try:
            check_relay_state(relay_state, self._relay_max)
        except SamlRejected:
            relay_state = None  # not sent back
        return ReplyTarget(sp.entity_id, default.location, request_id, relay_state)

    def _check_signature(self, message: InboundMessage, root: etree._Element, sp: ServiceProvider) -> bool:
        required = sp.requires_signed_requests
        certs = sp.metadata.signing_certificates
        if message.binding == HTTP_REDIRECT:
            # Bindings §3.4.4.1: a Redirect message is signed in the query string only
            if message.signature is None:
                if required:
                    raise SamlRejected("saml_request_unsigned", "no query-string signature")
                return False
            verify_query_signature(message, certs)
            return True
        try:
            self._verifiers[sp.entity_id].verify(root)
        except SignatureMissing:
            if required:
                raise SamlRejected("saml_request_unsigned", "no enveloped signature") from None
            return False
        except SignatureRejected as exc:
            code = "saml_algorithm_not_allowed" if exc.algorithm else "saml_signature_invalid"
            raise SamlRejected(code, str(exc)) from None
        return True

    def _acs_url(self, root: etree._Element, sp: ServiceProvider) -> str:
        url = root.get("AssertionConsumerServiceURL")
        index = root.get("AssertionConsumerServiceIndex")
        # Core §3.4.1 makes the index exclusive of ProtocolBinding too, but SPs sending both are common and the
        # indexed endpoint must be HTTP-POST anyway: only the contradiction of two endpoints is refused
        # (docs/standards.md)
        if url is not None and index is not None:
            raise SamlRejected("saml_request_malformed",
                               "AssertionConsumerServiceURL and Index are mutually exclusive (Core §3.4.1)")
        meta = sp.metadata
        if url is not None:
            # the broker answers over HTTP-POST only, so the URL must be registered with that binding whatever
            # ProtocolBinding asks (Metadata §2.2.3: an endpoint is Location and Binding): where the SP asked
            # for another binding, the UnsupportedBinding error Response goes there (parse); a URL registered
            # only with the other binding has no endpoint the broker could answer at
            requested = root.get("ProtocolBinding") or HTTP_POST
            endpoint = meta.acs_by_url(url, HTTP_POST)
            if endpoint is None:
                registered = requested != HTTP_POST and meta.acs_by_url(url, requested) is not None
                raise SamlRejected("acs_url_not_registered",
                                   f"AssertionConsumerServiceURL {url!r} is not registered with HTTP-POST"
                                   + (f" (only with {requested})" if registered else ""))
            return endpoint.location
        if index is not None:
            # xs:unsignedShort ("+1" and "01" are 1); int() would also take "0_1" and other scripts' digits
            try:
                number: int | None = unsigned_short(index)
            except ValueError:
                number = None
            endpoint = meta.acs_by_index(number) if number is not None else None
            if endpoint is None or endpoint.binding != HTTP_POST:
                raise SamlRejected("acs_url_not_registered", f"AssertionConsumerServiceIndex {index!r}")
            return endpoint.location
        default = meta.default_acs()
        if default is None:  # pragma: no cover - the loader requires an HTTP-POST ACS
            raise SamlRejected("acs_url_not_registered", "no HTTP-POST ACS in metadata")
        return default.location

    def _nameid_format(self, root: etree._Element, sp: ServiceProvider, target: ReplyTarget) -> str:
        allowed = [NAMEID_FORMATS[f] for f in sp.config.nameid_formats]
        policy = root.find("samlp:NameIDPolicy", NS)
        requested = policy.get("Format") if policy is not None else None
        qualifier = policy.get("SPNameQualifier") if policy is not None else None
        if qualifier is not None and qualifier != sp.entity_id:
            # Core §3.4.1.1: identifiers in another SP's or an affiliation's namespace, which the broker does not
            # keep (its NameIDs are per SP: §8.3.7)
            raise SamlRejected("nameid_format_unsupported", f"NameIDPolicy SPNameQualifier {qualifier[:200]!r}",
                               reply_to=target)
        if policy is not None:
            # AllowCreate (§3.4.1.1) is vetted but changes nothing: a persistent NameID is a pseudonym derived for
            # every user in advance (§8.3.7), and a transient one is no lasting identifier to be created
            _bool_attr(policy, "AllowCreate", target)
        if requested in (None, NAMEID_UNSPECIFIED):
            return allowed[0]
        if requested not in allowed:
            raise SamlRejected("nameid_format_unsupported", f"NameIDPolicy Format {requested}", reply_to=target)
        return requested

    def _requested_context(self, root: etree._Element, target: ReplyTarget) -> tuple[tuple[str, ...], str]:
        rac = root.find("samlp:RequestedAuthnContext", NS)
        if rac is None:
            return (), "exact"
        comparison = rac.get("Comparison", "exact")
        if comparison not in COMPARISONS:
            raise SamlRejected("saml_request_malformed", f"Comparison {comparison!r}", reply_to=target)
        if rac.find("saml:AuthnContextDeclRef", NS) is not None:
            raise SamlRejected("saml_feature_unsupported", "AuthnContextDeclRef", reply_to=target)
        refs = tuple((e.text or "").strip(XML_SPACE) for e in rac.findall("saml:AuthnContextClassRef", NS))
        if not refs or not all(refs):
            raise SamlRejected("saml_request_malformed", "RequestedAuthnContext without ClassRefs", reply_to=target)
        # kept with a pending login and written into its login_started record: bounded as the Scoping's lists are,
        # but refused rather than cut (which ClassRefs an SP asks for decides the login)
        if len(refs) > _MAX_CLASS_REFS:
            raise SamlRejected("saml_request_malformed", f"RequestedAuthnContext names {len(refs)} ClassRefs (at most "
                                                         f"{_MAX_CLASS_REFS})", reply_to=target)
        longest = max(len(ref) for ref in refs)
        if longest > _MAX_SCOPING_VALUE:
            raise SamlRejected("saml_request_malformed", f"RequestedAuthnContext names a ClassRef of {longest} "
                                                         f"characters (at most {_MAX_SCOPING_VALUE})", reply_to=target)
        return refs, comparison
