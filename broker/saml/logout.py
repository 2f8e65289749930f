"""Single logout messages (SAML Core §3.7, Profiles §4.4) at either of the broker's two
SingleLogoutService endpoints.

The broker is a session authority toward the regional SPs (its IdP endpoint,
``/saml/idp/slo``) and a session participant toward the municipal IdPs (its SP
endpoint, ``/saml/sp/slo``). Both read and write the same messages; a
:class:`LogoutMessages` is one endpoint: its entity ID, URL, signing key and
the peers it talks to.

Every LogoutRequest and LogoutResponse must be signed by the peer that issued
it (Profiles §4.4.4.1 and §4.4.4.2: requester and responder MUST authenticate
themselves): the query-string signature for HTTP-Redirect (Bindings
§3.4.4.1), an enveloped XML signature for HTTP-POST. A signed message must
name this endpoint as its Destination (Bindings §3.4.5.2, §3.5.5.2). The
broker's own messages are signed and sent over HTTP-Redirect where the peer
offers it (front-channel, as the profile's usual binding), else HTTP-POST.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from lxml import etree
from saml2 import saml, samlp

from broker.clock import Clock
from broker.errors import SamlRejected
from broker.pki.identity import IDENTITY_SPACE
from broker.saml.bindings import (
    HTTP_POST,
    HTTP_REDIRECT,
    NAMEID_ENTITY,
    STATUS_PARTIAL_LOGOUT,
    STATUS_SUCCESS,
    InboundMessage,
    check_relay_state,
    decode,
    verify_query_signature,
)
from broker.saml.metadata import Endpoint
from broker.saml.outbound import MessageSender, OutboundMessage
from broker.saml.response import new_id
from broker.saml.xmldsig import SignatureMissing, SignatureRejected, XmlVerifier
from broker.saml.xmlenc import Decrypter, DecryptionRefused
from broker.saml.xmlparse import UnsafeXml, is_ncname, parse_untrusted
from broker.saml.xmltime import format_instant, parse_instant

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
NS = {"samlp": SAMLP, "saml": SAML}
# SAML V2.0 Asynchronous Single Logout Profile Extension (OASIS CS01, 2012): the requester expects no answer
ASYNC_SLO = "urn:oasis:names:tc:SAML:2.0:protocol:ext:async-slo"

UNKNOWN_PRINCIPAL = "urn:oasis:names:tc:SAML:2.0:status:UnknownPrincipal"
_MAX_STATUS_CODES = 4   # nested StatusCode values read from a LogoutResponse
# SessionIndexes read from a LogoutRequest (SAML Core §3.7.1: zero or more): each costs a store lookup (an SP's) or
# is remembered with the IdP's logout; an SP holds one per session it has with the broker for the principal
_MAX_SESSION_INDEXES = 32
REASON_USER = "urn:oasis:names:tc:SAML:2.0:logout:user"


@dataclass(frozen=True)
class LogoutPeer:
    """The other side of a logout message: a regional SP or a municipal IdP."""

    entity_id: str
    certificates: tuple[x509.Certificate, ...]
    endpoint: Endpoint | None          # its SingleLogoutService, None when it has none

    @property
    def can_logout(self) -> bool:
        return self.endpoint is not None


@dataclass(frozen=True)
class LogoutRequestInfo:
    """A verified LogoutRequest (SAML Core §3.7.1)."""

    request_id: str
    peer: LogoutPeer
    name_id: str
    name_id_format: str | None
    session_indexes: tuple[str, ...]
    relay_state: str | None
    asynchronous: bool = False   # <aslo:Asynchronous> in Extensions: no LogoutResponse is wanted
    # the NameID's qualifiers, when it names them (SAML Core §2.2.2, §8.3.7: part of a persistent identifier)
    name_qualifier: str | None = None
    sp_name_qualifier: str | None = None
    # when the peer issued it: an IdP's logout applies to its assertions of authentications before it that arrive
    # after it (Core §3.7.3.2)
    issued: dt.datetime | None = None


@dataclass(frozen=True)
class LogoutResponseInfo:
    """A verified LogoutResponse (SAML Core §3.7.2): the status codes, top level first."""

    in_response_to: str
    peer: LogoutPeer
    status: tuple[str, ...]
    message: str | None
    relay_state: str | None

    @property
    def complete(self) -> bool:
        """Success, and not a partial logout at the peer (Core §3.2.2.2)."""
        return self.status[0] == STATUS_SUCCESS and STATUS_PARTIAL_LOGOUT not in self.status

    def describe(self) -> str:
        return " / ".join(c.rsplit(":", 1)[-1] for c in self.status) + (f": {self.message}" if self.message else "")


def _text_only(element: etree._Element, what: str) -> str:
    """The text of an element that holds nothing but text (SAML Core §2.2.3 NameID, §3.7.1 SessionIndex: strings),
    XML's white space around it stripped, as an assertion's NameID is read (broker.saml.upstream_response). Comments
    are gone at parse time; an element inside would leave the first text node short of the value the peer named."""
    if len(element):
        raise SamlRejected("logout_request_invalid", f"{what} has child elements (SAML Core §3.7.1: a string)")
    return (element.text or "").strip(IDENTITY_SPACE)


class LogoutMessages:
    """Reads and writes the logout messages of one of the broker's SingleLogoutService endpoints.

    ``peer`` finds the issuer of an inbound message by entity ID (None: not a
    party the broker knows, refused with ``unknown_issuer_reason``).
    """

    def __init__(self, *, entity_id: str, slo_url: str, sender: MessageSender, clock: Clock, max_bytes: int,
                 skew: dt.timedelta, max_age: dt.timedelta, peer: Callable[[str], LogoutPeer | None],
                 unknown_issuer_reason: str, relay_state_max_bytes: int | None = None,
                 decrypter: Decrypter | None = None) -> None:
        """``decrypter``: the keys of the certificate this endpoint's metadata publishes for encryption, which a
        peer may encrypt the principal's identifier to (an EncryptedID, SAML Core §3.7.1); None: no such key."""
        self.entity_id = entity_id
        self.slo_url = slo_url
        self._sender = sender
        self._clock = clock
        self._max_bytes = max_bytes
        self._skew = skew
        self._max_age = max_age
        self._find_peer = peer
        self._unknown_issuer = unknown_issuer_reason
        self._relay_max = relay_state_max_bytes
        self._decrypter = decrypter
        self._verifiers: dict[str, XmlVerifier] = {}
        self._lock = threading.Lock()

    def peer(self, entity_id: str) -> LogoutPeer | None:
        return self._find_peer(entity_id)

    # --- inbound ---------------------------------------------------------------------------

    def read(self, message: InboundMessage) -> LogoutRequestInfo | LogoutResponseInfo:
        """Decode, authenticate and check a LogoutRequest (SAMLRequest) or LogoutResponse (SAMLResponse).

        Raises :class:`SamlRejected`: ``logout_request_invalid`` or
        ``logout_response_invalid`` for the protocol checks, the issuer's
        reason for an unknown issuer, the ``saml_*`` codes for signatures,
        algorithms, Destination, Version and freshness.
        """
        is_request = message.parameter == "SAMLRequest"
        invalid = "logout_request_invalid" if is_request else "logout_response_invalid"
        kind = "LogoutRequest" if is_request else "LogoutResponse"
        xml = decode(message, self._max_bytes)
        try:
            root = parse_untrusted(xml, self._max_bytes)
        except UnsafeXml as exc:
            raise SamlRejected(invalid, str(exc)) from None
        if root.tag != f"{{{SAMLP}}}{kind}":
            # cut short: anyone can post this, and it goes to the audit trail (a namespace may be 200 kB long)
            raise SamlRejected(invalid, f"expected a {kind}, got {str(root.tag)[:200]}")
        issuer_el = root.find("saml:Issuer", NS)
        issuer = (issuer_el.text or "").strip(IDENTITY_SPACE) if issuer_el is not None else ""
        if not issuer:
            raise SamlRejected(invalid, f"the {kind} names no Issuer")
        peer = self._find_peer(issuer)
        if peer is None:
            raise SamlRejected(self._unknown_issuer, f"Issuer {issuer[:200]!r} is not a known party")
        try:
            return self._vet(message, root, peer, invalid, kind)
        except SamlRejected as exc:
            # every later refusal names the party the Issuer names: the operator's remedy (its key, algorithms,
            # the broker's URL in its configuration, its clock) is there, which the audit record must say
            exc.issuer = exc.issuer or peer.entity_id
            raise

    def _vet(self, message: InboundMessage, root: etree._Element, peer: LogoutPeer, invalid: str,
             kind: str) -> LogoutRequestInfo | LogoutResponseInfo:
        """Everything after the Issuer: signature, Issuer Format, Version, Destination, time, RelayState, content."""
        is_request = kind == "LogoutRequest"
        issuer_el = root.find("saml:Issuer", NS)
        self._authenticate(message, root, peer, invalid, kind)
        # Profiles §4.4.4.1, §4.4.4.2: the Format "MUST be omitted or have a value of" entity
        if issuer_el is not None and issuer_el.get("Format") not in (None, NAMEID_ENTITY):
            raise SamlRejected(invalid, f"the {kind}'s Issuer Format must be entity, not "
                                        f"{issuer_el.get('Format', '')[:200]!r}")
        if root.get("Version") != "2.0":
            raise SamlRejected("saml_version_unsupported", f"Version {root.get('Version')!r}")
        if root.get("Destination") != self.slo_url:
            raise SamlRejected("saml_destination_mismatch",
                               f"Destination {root.get('Destination')!r}, expected {self.slo_url}")
        issued = self._check_instant(root, invalid)
        # the SSO endpoint's length limit toward the SPs (none toward the IdPs); toward both, no character a
        # browser would not send back unchanged
        check_relay_state(message.relay_state, self._relay_max)
        if is_request:
            return self._request(root, peer, message.relay_state, issued)
        return self._response(root, peer, message.relay_state)

    def _authenticate(self, message: InboundMessage, root: etree._Element, peer: LogoutPeer, invalid: str,
                      kind: str) -> None:
        if message.binding == HTTP_REDIRECT:
            if message.signature is None:
                raise SamlRejected(invalid, f"the {kind} is not signed")
            verify_query_signature(message, peer.certificates)
            return
        try:
            self._verifier(peer).verify(root)
        except SignatureMissing:
            raise SamlRejected(invalid, f"the {kind} is not signed") from None
        except SignatureRejected as exc:
            raise SamlRejected("saml_algorithm_not_allowed" if exc.algorithm else "saml_signature_invalid",
                               str(exc)) from None

    def _verifier(self, peer: LogoutPeer) -> XmlVerifier:
        """One verifier per set of peer keys (metadata refreshes may change them)."""
        digest = hashlib.sha256(b"".join(c.fingerprint(hashes.SHA256()) for c in peer.certificates)).hexdigest()
        key = f"{peer.entity_id}#{digest}"
        with self._lock:
            verifier = self._verifiers.get(key)
            if verifier is None:
                verifier = self._verifiers[key] = XmlVerifier(peer.certificates)
        return verifier

    def _check_instant(self, root: etree._Element, invalid: str) -> dt.datetime:
        try:
            issued = parse_instant(root.get("IssueInstant") or "")
        except ValueError as exc:
            raise SamlRejected(invalid, f"IssueInstant: {exc}") from None
        now = self._clock.now()
        if issued > now + self._skew or issued < now - self._max_age - self._skew:
            raise SamlRejected("saml_request_stale", f"IssueInstant {issued.isoformat()}")
        return issued

    def _request(self, root: etree._Element, peer: LogoutPeer, relay_state: str | None,
                 issued: dt.datetime) -> LogoutRequestInfo:
        request_id = root.get("ID")
        if not request_id or len(request_id) > 256 or not is_ncname(request_id):
            raise SamlRejected("logout_request_invalid", "no usable ID (an xs:ID, SAML Core §3.2.1)")
        not_on_or_after = root.get("NotOnOrAfter")
        if not_on_or_after is not None:
            try:
                expires = parse_instant(not_on_or_after)
            except ValueError:
                raise SamlRejected("logout_request_invalid", "NotOnOrAfter is not a dateTime") from None
            if self._clock.now() - self._skew >= expires:
                raise SamlRejected("saml_request_stale", f"NotOnOrAfter {not_on_or_after}")
        name_id_el = root.find("saml:NameID", NS)
        if name_id_el is None:
            name_id_el = self._decrypted_name_id(root)
        # XML's white space only, as the assertions' NameIDs are read (broker.saml.upstream_response)
        name_id = _text_only(name_id_el, "the NameID") if name_id_el is not None else ""
        if name_id_el is None or not name_id:
            raise SamlRejected("logout_request_invalid", "no NameID (base identifiers are not supported)")
        index_els = root.findall("samlp:SessionIndex", NS)
        if len(index_els) > _MAX_SESSION_INDEXES:
            raise SamlRejected("logout_request_invalid", f"the LogoutRequest names {len(index_els)} SessionIndexes "
                                                         f"(at most {_MAX_SESSION_INDEXES})")
        return LogoutRequestInfo(
            request_id=request_id,
            peer=peer,
            name_id=name_id,
            name_id_format=name_id_el.get("Format"),
            session_indexes=tuple(_text_only(e, "a SessionIndex") for e in index_els),
            relay_state=relay_state,
            asynchronous=root.find(f"samlp:Extensions/{{{ASYNC_SLO}}}Asynchronous", NS) is not None,
            name_qualifier=name_id_el.get("NameQualifier"),
            sp_name_qualifier=name_id_el.get("SPNameQualifier"),
            issued=issued,
        )

    def _decrypted_name_id(self, root: etree._Element) -> etree._Element | None:
        """The NameID in the request's EncryptedID (SAML Core §2.2.4, §3.7.1), decrypted with this endpoint's keys
        as an EncryptedAssertion is (the same algorithms and limits); None when there is no EncryptedID. Called
        once the request's signature holds, which covers the ciphertext: no decryption oracle."""
        encrypted = root.find("saml:EncryptedID", NS)
        if encrypted is None:
            return None
        if self._decrypter is None:
            raise SamlRejected("logout_request_invalid", "an EncryptedID, and this endpoint publishes no "
                                                         "encryption key")
        try:
            decrypted = self._decrypter.decrypt(encrypted, self._max_bytes)
        except DecryptionRefused as exc:
            raise SamlRejected("saml_algorithm_not_allowed" if exc.algorithm else "logout_request_invalid",
                               f"the EncryptedID: {exc}") from None
        if decrypted.tag != f"{{{SAML}}}NameID":
            raise SamlRejected("logout_request_invalid", f"the EncryptedID holds a {decrypted.tag}")
        return decrypted

    @staticmethod
    def _response(root: etree._Element, peer: LogoutPeer, relay_state: str | None) -> LogoutResponseInfo:
        in_response_to = root.get("InResponseTo")
        if not in_response_to:
            raise SamlRejected("logout_response_invalid", "no InResponseTo")
        code = root.find("samlp:Status/samlp:StatusCode", NS)
        if code is None or not code.get("Value"):
            raise SamlRejected("logout_response_invalid", "no StatusCode")
        # quoted into the audit trail (logout_propagated's status): as an IdP's status is read at the ACS, no deeper
        # than SAML's codes go (a top-level code, a second-level one, which may nest one more) and each cut short
        codes: list[str] = []
        while code is not None and len(codes) < _MAX_STATUS_CODES:
            codes.append((code.get("Value") or "")[:200])
            code = code.find("samlp:StatusCode", NS)
        text = root.find("samlp:Status/samlp:StatusMessage", NS)
        return LogoutResponseInfo(in_response_to=in_response_to[:256], peer=peer, status=tuple(codes),
                                  message=(text.text or "").strip()[:300] if text is not None else None,
                                  relay_state=relay_state)

    # --- outbound --------------------------------------------------------------------------

    def request(self, peer: LogoutPeer, name_id: str, name_id_format: str | None, session_indexes: Sequence[str],
                relay_state: str | None, *, lifetime: dt.timedelta, name_qualifier: str | None = None,
                sp_name_qualifier: str | None = None) -> tuple[str, OutboundMessage]:
        """A signed LogoutRequest to ``peer`` (Core §3.7.1); returns (its ID, the message).

        The NameID is given exactly as it was issued, qualifiers included: participants such as ADFS and
        pysaml2 match the whole identifier, not only its value. ``session_indexes`` are the peer's own (Core
        §3.7.1: zero or more <SessionIndex>; none asks it to end all of the principal's sessions).
        """
        if peer.endpoint is None:
            raise ValueError(f"{peer.entity_id} has no SingleLogoutService")
        now = self._clock.now()
        request_id = new_id()
        message = samlp.LogoutRequest(
            id=request_id,
            version="2.0",
            issue_instant=format_instant(now),
            destination=peer.endpoint.location,
            not_on_or_after=format_instant(now + lifetime),
            reason=REASON_USER,
            issuer=saml.Issuer(text=self.entity_id, format=NAMEID_ENTITY),
            name_id=saml.NameID(text=name_id, format=name_id_format or None, name_qualifier=name_qualifier or None,
                                sp_name_qualifier=sp_name_qualifier or None),
            session_index=[samlp.SessionIndex(text=index) for index in session_indexes] or None,
        )
        return request_id, self._encode(message, peer.endpoint, peer.endpoint.location, "SAMLRequest", relay_state)

    def response(self, peer: LogoutPeer, in_response_to: str, relay_state: str | None, status: str = STATUS_SUCCESS,
                 sub_status: str | None = None) -> OutboundMessage:
        """A signed LogoutResponse to ``peer``'s SingleLogoutService (its ResponseLocation if given)."""
        if peer.endpoint is None:
            raise SamlRejected("logout_request_invalid", f"{peer.entity_id}'s metadata has no SingleLogoutService")
        url = peer.endpoint.response_location or peer.endpoint.location
        code = samlp.StatusCode(value=status)
        if sub_status:
            code.status_code = samlp.StatusCode(value=sub_status)
        message = samlp.LogoutResponse(
            id=new_id(),
            version="2.0",
            issue_instant=format_instant(self._clock.now()),
            destination=url,
            in_response_to=in_response_to,
            issuer=saml.Issuer(text=self.entity_id, format=NAMEID_ENTITY),
            status=samlp.Status(status_code=code),
        )
        return self._encode(message, peer.endpoint, url, "SAMLResponse", relay_state)

    def _encode(self, message: samlp.LogoutRequest | samlp.LogoutResponse, endpoint: Endpoint, url: str,
                parameter: str, relay_state: str | None) -> OutboundMessage:
        root = parse_untrusted(message.to_string(), 1 << 20)
        binding = HTTP_POST if endpoint.binding == HTTP_POST else HTTP_REDIRECT
        return self._sender.encode(root, binding, url, parameter, relay_state)
