"""SAML requests that a well-behaved SP would not send, encoded per SAML Bindings by the test itself.

The XML comes from the real pysaml2 SP (``sp.client.create_authn_request``; enveloped signatures by
pysaml2's xmlsec1 backend) and is then changed as a tree where a case needs what pysaml2 would not
produce. The bindings are applied here, independently of both pysaml2 and the broker:

* HTTP-Redirect (Bindings §3.4.4): raw DEFLATE (RFC 1951), base64, URL-encoding; the signature
  covers the octets ``SAMLRequest=..&RelayState=..&SigAlg=..`` (§3.4.4.1), signed with
  ``cryptography`` and the SP's key (or any other key a case needs).
* HTTP-POST (Bindings §3.5.4): the base64 of the XML in a form field.

Responses coming back are decoded here too: the auto-submitting form of an HTTP-POST Response, or
the Location of an HTTP-Redirect LogoutResponse.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from flask import Flask
from lxml import etree
from saml2 import BINDING_HTTP_POST, xmldsig
from saml2.response import AuthnResponse
from saml2.saml import NAMEID_FORMAT_PERSISTENT
from werkzeug.test import TestResponse

from broker.demo.sp import DemoSp
from broker.reasons import reason
from tests.factories.saml import BASE_URL, Browser, saml_response_form

SSO_URL = BASE_URL + "/saml/idp/sso"
SLO_URL = BASE_URL + "/saml/idp/slo"
ACS_URL = BASE_URL + "/demo-sp/acs"
SP_ENTITY_ID = BASE_URL + "/demo-sp/metadata"
SP_SLO_URL = BASE_URL + "/demo-sp/slo"

RSA_SHA256 = xmldsig.SIG_RSA_SHA256
RSA_SHA1 = xmldsig.SIG_RSA_SHA1
DIGEST_SHA256 = xmldsig.DIGEST_SHA256
DIGEST_SHA1 = xmldsig.DIGEST_SHA1

NS = {
    "samlp": "urn:oasis:names:tc:SAML:2.0:protocol",
    "saml": "urn:oasis:names:tc:SAML:2.0:assertion",
    "ds": "http://www.w3.org/2000/09/xmldsig#",
}

_HASHES: dict[str, hashes.HashAlgorithm] = {
    RSA_SHA256: hashes.SHA256(),
    RSA_SHA1: hashes.SHA1(),  # only to prove that the broker refuses it
}


def load_key(path: Path) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


# --- changing a message ------------------------------------------------------------------


def edit(xml: str | bytes, change: Callable[[etree._Element], None]) -> bytes:
    """``xml`` with ``change`` applied to its root element."""
    data = xml.encode() if isinstance(xml, str) else xml
    root = etree.fromstring(data)
    change(root)
    return etree.tostring(root)


def with_attributes(xml: str | bytes, **attributes: str | None) -> bytes:
    """Set (or, with None, remove) attributes of the root element."""

    def change(root: etree._Element) -> None:
        for name, value in attributes.items():
            if value is None:
                if name in root.attrib:
                    del root.attrib[name]
            else:
                root.set(name, value)

    return edit(xml, change)


def with_issuer(xml: str | bytes, issuer: str) -> bytes:
    def change(root: etree._Element) -> None:
        element = root.find("saml:Issuer", NS)
        assert element is not None
        element.text = issuer

    return edit(xml, change)


# --- HTTP-Redirect (SAML Bindings §3.4) ----------------------------------------------------


def deflate(data: bytes) -> bytes:
    """Raw DEFLATE (RFC 1951, no zlib header), as §3.4.4.1 requires."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


def redirect_url(xml: str | bytes | None = None, *, encoded: str | None = None, relay_state: str | None = None,
                 key: rsa.RSAPrivateKey | None = None, sig_alg: str = RSA_SHA256,
                 parameter: str = "SAMLRequest", endpoint: str = SSO_URL) -> str:
    """The URL of an HTTP-Redirect message, signed with ``key`` when one is given.

    ``encoded`` replaces the DEFLATE+base64 value of ``xml`` (for broken encodings).
    """
    if encoded is None:
        assert xml is not None
        data = xml.encode() if isinstance(xml, str) else xml
        encoded = base64.b64encode(deflate(data)).decode()
    query = f"{parameter}={quote(encoded, safe='')}"
    if relay_state is not None:
        query += f"&RelayState={quote(relay_state, safe='')}"
    if key is not None:
        query += f"&SigAlg={quote(sig_alg, safe='')}"
        signature = key.sign(query.encode("ascii"), padding.PKCS1v15(), _HASHES[sig_alg])
        query += f"&Signature={quote(base64.b64encode(signature).decode(), safe='')}"
    return f"{endpoint}?{query}"


def replace_parameter(url: str, name: str, value: str) -> str:
    """``url`` with the raw (still URL-encoded) value of one query parameter replaced."""
    base, _, query = url.partition("?")
    parts = []
    for part in query.split("&"):
        key, _, _old = part.partition("=")
        parts.append(f"{key}={value}" if key == name else part)
    return base + "?" + "&".join(parts)


# --- HTTP-POST (SAML Bindings §3.5) ---------------------------------------------------------


def post_fields(xml: str | bytes, relay_state: str | None = None, parameter: str = "SAMLRequest") -> dict[str, str]:
    data = xml.encode() if isinstance(xml, str) else xml
    fields = {parameter: base64.b64encode(data).decode()}
    if relay_state is not None:
        fields["RelayState"] = relay_state
    return fields


# --- AuthnRequests from the real SP ---------------------------------------------------------


@dataclass(frozen=True)
class Crafted:
    request_id: str
    xml: bytes


class AuthnRequests:
    """AuthnRequests of the demo SP (pysaml2), signed or not, with fields a case chooses."""

    def __init__(self, sp: DemoSp, key_path: Path) -> None:
        self.sp = sp
        self.key = load_key(key_path)

    def build(self, *, sign: bool = False, sign_alg: str = RSA_SHA256, digest_alg: str = DIGEST_SHA256,
              destination: str | None = SSO_URL, nameid_format: str | None = NAMEID_FORMAT_PERSISTENT,
              **fields: Any) -> Crafted:
        """An AuthnRequest; ``sign`` adds an enveloped signature (for the HTTP-POST binding).

        ``fields`` go to pysaml2's AuthnRequest (is_passive, force_authn, issue_instant, version,
        requested_authn_context, assertion_consumer_service_url ...).
        """
        fields.setdefault("binding", BINDING_HTTP_POST)
        request_id, request = self.sp.client.create_authn_request(
            destination or "", sign=sign, sign_alg=sign_alg if sign else None,
            digest_alg=digest_alg if sign else None, nameid_format=nameid_format, **fields)
        return Crafted(request_id, str(request).encode())

    def redirect(self, crafted: Crafted | bytes, *, relay_state: str | None = "/", signed: bool = True,
                 sig_alg: str = RSA_SHA256, key: rsa.RSAPrivateKey | None = None) -> str:
        """HTTP-Redirect URL; signed with the SP's own key unless ``key`` or ``signed=False`` say otherwise."""
        xml = crafted.xml if isinstance(crafted, Crafted) else crafted
        signer = (key or self.key) if signed else None
        return redirect_url(xml, relay_state=relay_state, key=signer, sig_alg=sig_alg)


def sp_accepts(sp: DemoSp, saml_response: str, request_id: str) -> AuthnResponse:
    """pysaml2's verdict on a Response to ``request_id`` (signature, audience, InResponseTo, times).

    Raises pysaml2's exceptions, e.g. ``StatusNoPassive`` for a (validly signed) error Response.
    """
    response = sp.client.parse_authn_request_response(saml_response, BINDING_HTTP_POST, {request_id: "/"})
    assert response is not None, "pysaml2 did not accept the Response"
    return response


def sp_verifies_response_signature(sp: DemoSp, xml: bytes) -> None:
    """pysaml2 (xmlsec1 with the broker's key from its metadata) verifies the signature on the Response
    element itself; it raises if the signature is missing or wrong."""
    sp.client.sec.correctly_signed_response(xml.decode(), require_response_signature=True)


# --- browsers ----------------------------------------------------------------------------------


def open_browser(app: Flask, certificate_pem: str | None) -> Browser:
    """Another browser (its own cookie jar) on ``app``, set up like the ``browser`` fixture."""
    client = app.test_client()
    client.environ_base["wsgi.url_scheme"] = "https"
    client.environ_base["HTTP_HOST"] = BASE_URL.split("://", 1)[1]
    return Browser(client, certificate_pem)


def login(browser: Browser, craft: AuthnRequests, relay_state: str | None = "/",
          **fields: Any) -> tuple[Crafted, PostedResponse]:
    """Send a signed HTTP-Redirect AuthnRequest built from ``fields``; expect the Response form."""
    crafted = craft.build(**fields)
    return crafted, posted_response(browser.get(craft.redirect(crafted, relay_state=relay_state)))


# --- what comes back --------------------------------------------------------------------------


@dataclass(frozen=True)
class PostedResponse:
    """The SAMLResponse form the broker's page would auto-submit."""

    action: str
    fields: dict[str, str]
    xml: bytes
    root: etree._Element

    @property
    def status(self) -> tuple[str | None, str | None]:
        return status_codes(self.root)


def posted_response(response: TestResponse) -> PostedResponse:
    assert response.status_code == 200, (response.status_code, response.headers.get("X-Broker-Reason"))
    assert "X-Broker-Reason" not in response.headers
    action, fields = saml_response_form(response)
    xml = base64.b64decode(fields["SAMLResponse"])
    return PostedResponse(action, fields, xml, etree.fromstring(xml))


def status_codes(root: etree._Element) -> tuple[str | None, str | None]:
    """(top-level, second-level) StatusCode values of a Response or LogoutResponse."""
    top = root.find("samlp:Status/samlp:StatusCode", NS)
    assert top is not None
    second = top.find("samlp:StatusCode", NS)
    return top.get("Value"), second.get("Value") if second is not None else None


def signature_algorithms(element: etree._Element) -> dict[str, str | None]:
    """The algorithms of the enveloped signature that is a direct child of ``element``."""
    signature = element.find("ds:Signature", NS)
    assert signature is not None, f"{element.tag} carries no enveloped signature"
    reference = signature.find("ds:SignedInfo/ds:Reference", NS)
    assert reference is not None
    return {
        "c14n": signature.find("ds:SignedInfo/ds:CanonicalizationMethod", NS).get("Algorithm"),  # type: ignore[union-attr]
        "signature": signature.find("ds:SignedInfo/ds:SignatureMethod", NS).get("Algorithm"),  # type: ignore[union-attr]
        "digest": reference.find("ds:DigestMethod", NS).get("Algorithm"),  # type: ignore[union-attr]
        "reference": reference.get("URI"),
    }


def all_algorithms(element: etree._Element) -> list[str]:
    """Every Algorithm attribute inside the signatures in ``element``."""
    found = element.xpath(".//ds:Signature//@Algorithm", namespaces=NS)
    assert isinstance(found, list)
    return [str(a) for a in found]


@dataclass(frozen=True)
class RedirectedMessage:
    """A SAML message delivered by HTTP-Redirect (a 303 to the SP's endpoint)."""

    url: str
    parameters: dict[str, str]
    xml: bytes
    root: etree._Element
    signed_octets: bytes


def redirect_message(url: str, parameter: str = "SAMLResponse") -> RedirectedMessage:
    """Decode the SAML message carried by an HTTP-Redirect URL."""
    parts = urlsplit(url)
    values = {k: v[0] for k, v in parse_qs(parts.query, strict_parsing=True).items()}
    xml = zlib.decompress(base64.b64decode(values[parameter]), -15)
    raw = dict(p.split("=", 1) for p in parts.query.split("&"))
    octets = "&".join(f"{k}={raw[k]}" for k in (parameter, "RelayState", "SigAlg") if k in raw).encode()
    return RedirectedMessage(f"{parts.scheme}://{parts.netloc}{parts.path}", values, xml, etree.fromstring(xml),
                             octets)


def redirected_message(response: TestResponse, parameter: str = "SAMLResponse") -> RedirectedMessage:
    """The message of a 303 that sends the browser to the SP by HTTP-Redirect."""
    assert response.status_code == 303, (response.status_code, response.headers.get("X-Broker-Reason"))
    return redirect_message(response.headers["Location"], parameter)


def assert_refused(response: TestResponse, code: str) -> None:
    """The user got the error page for ``code``, with the HTTP status the reason table gives it."""
    got = (response.headers.get("X-Broker-Reason"), response.status_code)
    want = (code, reason(code).http_status)
    assert got == want, f"got reason and status {got}, expected {want}"


class _ErrorPage(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refid: str | None = None
        self.retry: str | None = None
        self._in_refid = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if "refid" in classes:
            self._in_refid = True
        if tag == "a" and "button" in classes:
            self.retry = a.get("href")

    def handle_data(self, data: str) -> None:
        if self._in_refid and data.strip():
            self.refid = data.strip()
            self._in_refid = False


def error_page(response: TestResponse) -> tuple[str | None, str | None]:
    """(reference ID shown to the user, "try again" link) of an error page."""
    parser = _ErrorPage()
    parser.feed(response.get_data(as_text=True))
    return parser.refid, parser.retry
