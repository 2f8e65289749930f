"""SAML bindings (SAML Bindings §3.4 HTTP-Redirect, §3.5 HTTP-POST) and protocol identifiers."""

from __future__ import annotations

import base64
import binascii
import zlib
from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote_plus

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from broker.errors import SamlRejected
from broker.saml.xmldsig import SIGNATURE_HASHES, signature_value_verifies

HTTP_REDIRECT: Final = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
HTTP_POST: Final = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"

NAMEID_PERSISTENT: Final = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
NAMEID_TRANSIENT: Final = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"
NAMEID_UNSPECIFIED: Final = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"
NAMEID_ENTITY: Final = "urn:oasis:names:tc:SAML:2.0:nameid-format:entity"

NAMEID_FORMATS: Final = {"persistent": NAMEID_PERSISTENT, "transient": NAMEID_TRANSIENT}

ATTRNAME_URI: Final = "urn:oasis:names:tc:SAML:2.0:attrname-format:uri"
CM_BEARER: Final = "urn:oasis:names:tc:SAML:2.0:cm:bearer"

STATUS_SUCCESS: Final = "urn:oasis:names:tc:SAML:2.0:status:Success"
STATUS_REQUESTER: Final = "urn:oasis:names:tc:SAML:2.0:status:Requester"
STATUS_RESPONDER: Final = "urn:oasis:names:tc:SAML:2.0:status:Responder"
STATUS_VERSION_MISMATCH: Final = "urn:oasis:names:tc:SAML:2.0:status:VersionMismatch"
STATUS_PARTIAL_LOGOUT: Final = "urn:oasis:names:tc:SAML:2.0:status:PartialLogout"


# --- inbound messages ----------------------------------------------------------------


@dataclass(frozen=True)
class InboundMessage:
    """A SAML protocol message as it arrived, before decoding.

    For HTTP-Redirect, ``signed_octets`` is the exact byte string covered by
    the query-string signature (Bindings §3.4.4.1), rebuilt from the raw,
    still URL-encoded parameters as they appeared in the URL.
    """

    binding: str
    parameter: str                      # "SAMLRequest" or "SAMLResponse"
    encoded: str
    relay_state: str | None
    sig_alg: str | None = None
    signature: str | None = None
    signed_octets: bytes | None = None
    # the query parameters of the URL the message was sent to besides the binding's own, raw and in their order
    # (an SP's SSO URL may carry ``?municipality=``): part of the location a Destination names (§3.4.5.2, §3.5.5.2)
    endpoint_query: tuple[str, ...] = ()


DEFLATE_ENCODING = "urn:oasis:names:tc:SAML:2.0:bindings:URL-Encoding:DEFLATE"
# the parameters of the HTTP-Redirect binding itself (Bindings §3.4.4, §3.4.4.1): the rest of a query is the URL's
_BINDING_PARAMETERS = frozenset({"SAMLRequest", "SAMLResponse", "RelayState", "SigAlg", "Signature", "SAMLEncoding"})


def from_redirect(raw_query: str, parameter: str) -> InboundMessage:
    """Parse the query string of an HTTP-Redirect binding request.

    Every parameter may occur once; the signed octets are taken from the raw
    query, since re-encoding the decoded values need not reproduce what the
    sender signed.
    """
    if not raw_query.isascii():
        # RFC 3986 §2.1: a URL's query is percent-encoded ASCII; raw other bytes would make the signed octets
        # (rebuilt below) differ from what the sender signed in ways a signature cannot cover
        raise SamlRejected("saml_request_malformed", "the query string holds characters that are not percent-encoded")
    raw: dict[str, str] = {}
    others: list[str] = []
    for part in raw_query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        name = _unquote(name, "a parameter name")
        if name in raw:
            raise SamlRejected("saml_request_malformed", f"parameter {name} occurs more than once")
        raw[name] = value
        if name not in _BINDING_PARAMETERS:
            others.append(part)
    if parameter not in raw:
        raise SamlRejected("saml_request_missing", f"no {parameter} parameter")
    encoding = _unquote(raw["SAMLEncoding"], "SAMLEncoding") if "SAMLEncoding" in raw else DEFLATE_ENCODING
    if encoding != DEFLATE_ENCODING:
        # Bindings §3.4.4: another encoding names itself here; the broker reads DEFLATE only, and the parameter is
        # outside the signed octets, so the message is refused rather than read as something it may not be
        raise SamlRejected("saml_request_malformed", f"SAMLEncoding {encoding[:200]!r} is not supported (only "
                                                     "DEFLATE, SAML Bindings §3.4.4.1)")
    octets = None
    if "Signature" in raw:
        if "SigAlg" not in raw:
            raise SamlRejected("saml_request_malformed", "Signature without SigAlg")
        pieces = [f"{parameter}={raw[parameter]}"]
        if "RelayState" in raw:
            pieces.append(f"RelayState={raw['RelayState']}")
        pieces.append(f"SigAlg={raw['SigAlg']}")
        octets = "&".join(pieces).encode("ascii")
    return InboundMessage(
        binding=HTTP_REDIRECT,
        parameter=parameter,
        encoded=_unquote(raw[parameter], parameter),
        relay_state=_unquote(raw["RelayState"], "RelayState") if "RelayState" in raw else None,
        sig_alg=_unquote(raw["SigAlg"], "SigAlg") if "SigAlg" in raw else None,
        signature=_unquote(raw["Signature"], "Signature") if "Signature" in raw else None,
        signed_octets=octets,
        endpoint_query=tuple(others),
    )


def _unquote(value: str, what: str) -> str:
    """A query parameter's value (or name) decoded from percent-encoded UTF-8 (RFC 3986 §2.5), strictly.

    The default of :func:`unquote_plus` replaces invalid UTF-8 with U+FFFD: ``RelayState=%FF%FE`` would come
    back to the SP as something else, while Bindings §3.4.3 wants RelayState returned exactly as received,
    and two different values could decode alike. Such a parameter is refused instead.
    """
    try:
        return unquote_plus(value, errors="strict")
    except UnicodeDecodeError as exc:
        raise SamlRejected("saml_request_malformed",
                           f"{what} is not percent-encoded UTF-8: the octet 0x{exc.object[exc.start]:02X} does "
                           "not decode (SAML Bindings §3.4.4.1, RFC 3986 §2.5)") from None


def form_fields(body: bytes) -> dict[str, list[str]]:
    """The fields of an ``application/x-www-form-urlencoded`` body (HTML §4.10.21.7: what the HTTP-POST binding's
    form sends), names and values decoded strictly as :func:`_unquote` decodes a query: a field that is not
    percent-encoded UTF-8 is refused rather than changed (Bindings §3.5.3: RelayState goes back exactly)."""
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise SamlRejected("saml_request_malformed", "the form body holds octets that are not percent-encoded "
                                                     "(application/x-www-form-urlencoded)") from None
    fields: dict[str, list[str]] = {}
    for pair in text.split("&"):
        if not pair:
            continue
        name, _, value = pair.partition("=")
        fields.setdefault(_unquote(name, "a form field's name"), []).append(_unquote(value, "a form field"))
    return fields


def from_post(form: dict[str, list[str]], parameter: str, raw_query: str = "") -> InboundMessage:
    """The fields of an HTTP-POST binding form (each at most once); ``raw_query``: the query of the URL it was
    posted to, as sent."""
    for name, values in form.items():
        if len(values) > 1:
            raise SamlRejected("saml_request_malformed", f"form field {name} occurs more than once")
    found = form.get(parameter)
    if not found or not found[0]:
        raise SamlRejected("saml_request_missing", f"no {parameter} form field")
    relay = form.get("RelayState")
    return InboundMessage(
        binding=HTTP_POST,
        parameter=parameter,
        encoded=found[0],
        relay_state=relay[0] if relay else None,
        endpoint_query=tuple(part for part in raw_query.split("&") if part),
    )


def names_endpoint(destination: str, endpoint: str, message: InboundMessage) -> bool:
    """Whether a message's Destination names the location it was received at (Bindings §3.4.5.2, §3.5.5.2): the
    endpoint's URL, or that URL with a query of parameters the message was sent with, as sent (an SP whose
    configured SSO URL carries ``?municipality=`` names that URL; the HTTP-Redirect binding's own parameters
    follow it, and a page's language link may add one)."""
    if destination == endpoint:
        return True
    base, mark, query = destination.partition("?")
    parts = [part for part in query.split("&") if part]
    return base == endpoint and bool(mark) and bool(parts) and "#" not in query and \
        all(part in message.endpoint_query for part in parts)


def check_relay_state(relay_state: str | None, max_bytes: int | None) -> None:
    """Refuse a RelayState past ``max_bytes`` (SAML Bindings §3.4.3, §3.5.3: 80; the broker stores it and sends
    it back; None: no limit) with ``relay_state_too_long``, and one that cannot come back unchanged with
    ``saml_request_malformed``: the broker must return it exactly (Bindings §3.4.3, §3.5.3), and in the HTTP-POST
    form it travels in, a browser turns NUL into U+FFFD, CR into LF (HTML §13.2.3.5) and LF into CR LF when it
    submits the form (HTML §4.10.21.8)."""
    size = len(relay_state.encode("utf-8")) if relay_state is not None else 0
    if max_bytes is not None and size > max_bytes:
        raise SamlRejected("relay_state_too_long", f"RelayState of {size} bytes (limit {max_bytes})")
    if relay_state is not None and any(c in relay_state for c in "\x00\r\n"):
        raise SamlRejected("saml_request_malformed", "the RelayState holds NUL, CR or LF, which a browser does not "
                                                     "send back unchanged")


def decode(message: InboundMessage, max_bytes: int) -> bytes:
    """The XML of ``message``: base64, and for HTTP-Redirect also DEFLATE (RFC 1951), which must end where the
    data ends (SAML Bindings §3.4.4.1).

    Inflation is bounded by ``max_bytes`` so a small deflate bomb cannot
    exhaust memory.
    """
    if len(message.encoded) > max_bytes * 2:
        raise SamlRejected("saml_request_too_large", "encoded message too large")
    try:
        raw = base64.b64decode("".join(message.encoded.split()), validate=True)
    except (binascii.Error, ValueError):
        raise SamlRejected("saml_request_malformed", "the message is not valid base64") from None
    if message.binding == HTTP_POST:
        if len(raw) > max_bytes:
            raise SamlRejected("saml_request_too_large", f"message larger than {max_bytes} bytes")
        return raw
    inflater = zlib.decompressobj(-15)
    try:
        # one byte more than allowed: output beyond it proves the message too large
        xml = inflater.decompress(raw, max_bytes + 1)
    except zlib.error:
        raise SamlRejected("saml_request_malformed", "the message is not valid DEFLATE data") from None
    if len(xml) > max_bytes or inflater.unconsumed_tail:
        raise SamlRejected("saml_request_too_large", f"inflated message larger than {max_bytes} bytes")
    if not inflater.eof:
        raise SamlRejected("saml_request_malformed", "the DEFLATE data is truncated")
    if inflater.unused_data:
        # RFC 1951 §3.2.3: the block with BFINAL set is the last; octets after it (a zlib or gzip trailer, another
        # message) are no part of the DEFLATE encoding Bindings §3.4.4.1 names, and would be read past unseen
        raise SamlRejected("saml_request_malformed", f"{len(inflater.unused_data)} octets follow the end of the "
                                                     "DEFLATE data (SAML Bindings §3.4.4.1, RFC 1951)")
    return xml


def verify_query_signature(message: InboundMessage, certificates: tuple[x509.Certificate, ...]) -> None:
    """Verify an HTTP-Redirect signature with one of ``certificates`` (Bindings §3.4.4.1): the SigAlg values and
    signature encodings of XML-DSig (:func:`broker.saml.xmldsig.signature_value_verifies`), no SHA-1.

    Raises ``saml_algorithm_not_allowed`` or ``saml_signature_invalid``.
    """
    if message.sig_alg is None or message.signature is None or message.signed_octets is None:
        raise SamlRejected("saml_signature_invalid", "the message carries no query signature")
    if message.sig_alg not in SIGNATURE_HASHES:
        raise SamlRejected("saml_algorithm_not_allowed", f"SigAlg {message.sig_alg[:100]}")
    try:
        signature = base64.b64decode(message.signature, validate=True)
    except (binascii.Error, ValueError):
        raise SamlRejected("saml_signature_invalid", "the Signature parameter is not base64") from None
    for cert in certificates:
        key = cert.public_key()
        if isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey) and \
                signature_value_verifies(key, message.sig_alg, signature, message.signed_octets):
            return
    raise SamlRejected("saml_signature_invalid", "the query signature does not verify with the SP's keys")
