"""samlify (Node.js) as a municipality's SAML IdP: an implementation independent of pysaml2, libxmlsec1 and lxml,
for interoperability tests of the broker's SP side (tests/flows/test_interop_samlify.py).

:class:`SamlifyIdp` runs ``tests/peers/samlify/idp.js`` with ``node`` on a free loopback port (the script listens on
port 0 and reports the one it got) and talks to it over HTTP, as a browser and as the IdP's operator:

* the operator: :meth:`SamlifyIdp.metadata` (samlify's own IdP metadata), :meth:`SamlifyIdp.trust` (the broker's
  SP metadata becomes a relying party), :meth:`SamlifyIdp.logout_request` (an IdP-initiated single logout);
* the browser: :meth:`SamlifyIdp.authn_request` follows the broker's redirect (or form) to samlify, which verifies
  the AuthnRequest (schema and signature) before it shows its login page; :meth:`SamlifyIdp.respond` logs the
  user in with a :class:`ResponseProfile` and returns the auto-submitting form with samlify's Response;
  :meth:`SamlifyIdp.logout` and :meth:`SamlifyIdp.logout_response` carry the broker's logout messages to samlify.

What samlify refuses comes back as :class:`SamlifyRefused` with samlify's error. The Node packages are pinned in
``tests/peers/samlify/package-lock.json``; without them the tests fail with the command that installs them
(:data:`tests.factories.samlify_peer.INSTALL_COMMAND`), never a skip.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Literal, TypeAlias
from urllib.parse import urlencode, urlsplit

from lxml import etree
from werkzeug.test import TestResponse

from tests.factories.idp import discovery_form
from tests.factories.saml import Browser, forms
from tests.factories.samlify_peer import PEER_DIR, Answer, KeyFiles, NodePeer

URI_FORMAT = "urn:oasis:names:tc:SAML:2.0:attrname-format:uri"
PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"

# samlify's encryption algorithms (Constants.algorithms.encryption; its defaults: AES256_CBC, RSA_OAEP_MGF1P)
AES128_CBC = "http://www.w3.org/2001/04/xmlenc#aes128-cbc"
AES256_CBC = "http://www.w3.org/2001/04/xmlenc#aes256-cbc"
AES128_GCM = "http://www.w3.org/2009/xmlenc11#aes128-gcm"
TRIPLEDES_CBC = "http://www.w3.org/2001/04/xmlenc#tripledes-cbc"
RSA_OAEP_MGF1P = "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p"
RSA_1_5 = "http://www.w3.org/2001/04/xmlenc#rsa-1_5"
# samlify's signature algorithms (Constants.algorithms.signature)
RSA_SHA1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
RSA_SHA512 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512"
RSA_PSS_SHA256 = "http://www.w3.org/2007/05/xmldsig-more#sha256-rsa-MGF1"


# --- what the IdP sends ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attribute:
    """One saml:Attribute with one value (samlify's loginResponseTemplate.attributes, one AttributeValue each)."""

    name: str
    value: str
    name_format: str = URI_FORMAT
    xsi_type: str = "xs:string"


@dataclass(frozen=True)
class Encryption:
    """samlify's isAssertionEncrypted with these algorithms (its dataEncryptionAlgorithm and keyEncryptionAlgorithm;
    its defaults are AES-256-CBC and RSA-OAEP-MGF1P) and its signing order (createLoginResponse's encryptThenSign)."""

    data: str = AES256_CBC
    key: str = RSA_OAEP_MGF1P
    order: Literal["sign-then-encrypt", "encrypt-then-sign"] = "sign-then-encrypt"


@dataclass(frozen=True)
class ErrorStatus:
    """An error Response instead of an assertion (SAML Core §3.2.2.2)."""

    code: str
    second_level: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class ResponseProfile:
    """How samlify answers one login: the user, what it signs and encrypts, and the template.

    ``template``: ``"eid"`` is samlify's default login response template plus an AuthnStatement, filled by
    ``customTagReplacement`` with these attributes; ``"samlify-default"`` is samlify's own default template as is.
    ``prefixes``: samlify's ``tagPrefix`` (protocol, assertion) instead of ``samlp`` and ``saml``.
    ``session_index`` and ``authn_instant`` (xs:dateTime) default to a fresh ID and the time of the Response.
    ``signature_algorithm``: samlify's requestSignatureAlgorithm (RSA-SHA256 by default), which also picks the digest.
    ``transforms``: the Reference transforms of its signatures (the SP setting transformationAlgorithms; by default
    the enveloped-signature transform and exclusive c14n).
    """

    name_id: str
    authn_context_class_ref: str
    attributes: tuple[Attribute, ...] = ()
    name_id_format: str = PERSISTENT
    sign: Literal["assertion", "response", "both"] = "assertion"
    encrypt: Encryption | None = None
    status: ErrorStatus | None = None
    template: Literal["eid", "samlify-default"] = "eid"
    prefixes: tuple[str, str] | None = None
    session_index: str | None = None
    authn_instant: str | None = None
    signature_algorithm: str | None = None
    transforms: tuple[str, ...] | None = None

    def to_json(self) -> str:
        document = asdict(self)
        document["prefixes"] = {"protocol": self.prefixes[0], "assertion": self.prefixes[1]} if self.prefixes else None
        return json.dumps({k: v for k, v in document.items() if v is not None})


# --- what the IdP saw ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeenAuthnRequest:
    """An AuthnRequest samlify verified, with what samlify's extractor read from it; ``login`` names the pending
    login on samlify's login page."""

    login: str
    extract: dict[str, Any]

    @property
    def request(self) -> dict[str, str]:
        found: dict[str, str] = self.extract["request"]
        return found

    @property
    def issuer(self) -> str:
        return str(self.extract["issuer"])

    @property
    def name_id_format(self) -> str | None:
        policy = self.extract.get("nameIDPolicy") or {}
        return policy.get("format")

    @property
    def class_refs(self) -> list[str]:
        found = self.extract.get("authnContextClassRef")
        if found is None:
            return []
        return [str(found)] if isinstance(found, str) else [str(v) for v in found]

    @property
    def sig_alg(self) -> str | None:
        return self.extract.get("sigAlg")

    @property
    def binding(self) -> str:
        return str(self.extract["binding"])


@dataclass(frozen=True)
class FormPost:
    """An auto-submitting HTTP-POST form (SAML Bindings §3.5.4): where it posts and its fields."""

    action: str
    fields: dict[str, str]

    @property
    def xml(self) -> bytes:
        """The SAML message it carries (SAMLResponse or SAMLRequest)."""
        return base64.b64decode(self.fields["SAMLResponse" if "SAMLResponse" in self.fields else "SAMLRequest"])

    @property
    def root(self) -> etree._Element:
        return etree.fromstring(self.xml)


Binding: TypeAlias = Literal["redirect", "post"]
Delivery: TypeAlias = str | FormPost  # where samlify sends the browser: a URL (HTTP-Redirect) or a form (HTTP-POST)


class _Form(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form" and self.action is None:
            self.action = a.get("action") or ""
        elif tag == "input" and a.get("name"):
            self.fields[str(a["name"])] = a.get("value") or ""


def logout_request_at(request: Callable[..., Answer], sent: Delivery,
                      reply: Binding) -> tuple[Delivery, dict[str, Any]]:
    """The broker's LogoutRequest delivered to a samlify peer through ``request`` (its ``_request``): the peer's
    LogoutResponse by the binding ``reply`` (the URL of its 303, or its form) and what it read from the request."""
    query = "reply=post" if reply == "post" else ""
    if isinstance(sent, FormPost):
        answer = request("POST", sent.action + ("?" + query if query else ""), urlencode(sent.fields).encode(),
                         "application/x-www-form-urlencoded")
    else:
        answer = request("GET", sent + ("&" + query if query else ""))
    if reply == "redirect":
        answer.refused_unless(303)
        return answer.headers["location"], answer.extract
    answer.refused_unless(200)
    return _form(answer.body), answer.extract


def _form(html: bytes) -> FormPost:
    parser = _Form()
    parser.feed(html.decode())
    assert parser.action is not None, f"no form in {html[:300]!r}"
    return FormPost(parser.action, parser.fields)


# --- the peer ------------------------------------------------------------------------------------------------------


class SamlifyIdp(NodePeer):
    """``node idp.js`` on 127.0.0.1 (a free port), as the IdP ``entity_id`` signing with ``keys``."""

    script = PEER_DIR / "idp.js"

    def __init__(self, workdir: Path, entity_id: str, keys: KeyFiles, start_timeout: float = 60.0) -> None:
        super().__init__(workdir, start_timeout)
        self.entity_id = entity_id
        self.keys = keys

    def arguments(self) -> list[str]:
        return ["--entity-id", self.entity_id, "--key", str(self.keys.key_file), "--cert", str(self.keys.cert_file)]

    # --- HTTP ---------------------------------------------------------------------------------------------

    def _request(self, method: str, target: str, body: bytes | None = None,
                 content_type: str | None = None) -> Answer:
        """``target``: a path with its query, or a URL on this peer."""
        parts = urlsplit(target)
        if parts.netloc:
            assert f"{parts.scheme}://{parts.netloc}" == self.base_url, f"{target} is not on {self.base_url}"
            target = parts.path + ("?" + parts.query if parts.query else "")
        return self.exchange(method, target, body, content_type)

    # --- the operator ---------------------------------------------------------------------------------------

    def metadata(self, sso_bindings: tuple[Binding, ...] = ("redirect",),
                 slo_bindings: tuple[Binding, ...] = ("redirect", "post")) -> bytes:
        """samlify's IdP metadata (IdentityProvider.getMetadata) with SingleSignOnService for ``sso_bindings`` and
        SingleLogoutService for ``slo_bindings``."""
        query = urlencode({"sso": ",".join(sso_bindings), "slo": ",".join(slo_bindings)})
        answer = self._request("GET", "/metadata?" + query)
        answer.refused_unless(200)
        return answer.body

    def trust(self, sp_metadata: bytes) -> dict[str, Any]:
        """Make the SP of ``sp_metadata`` a relying party; what samlify read from its metadata."""
        answer = self._request("POST", "/relying-parties", sp_metadata, "application/samlmetadata+xml")
        answer.refused_unless(200)
        found: dict[str, Any] = json.loads(answer.body)
        return found

    def logout_request(self, sp_entity_id: str, name_id: str, *, name_id_format: str = PERSISTENT,
                       session_index: str | None = None, relay_state: str = "",
                       binding: Binding = "redirect") -> Delivery:
        """samlify's signed LogoutRequest for ``name_id`` to the SP (IdP-initiated): the URL (HTTP-Redirect) or the
        form (HTTP-POST) that takes the browser there."""
        wanted = {"sp": sp_entity_id, "name_id": name_id, "name_id_format": name_id_format,
                  "session_index": session_index, "relay_state": relay_state, "binding": binding}
        answer = self._request("POST", "/logout-requests", json.dumps(wanted).encode(), "application/json")
        answer.refused_unless(200)
        made = json.loads(answer.body)
        if binding == "redirect":
            return str(made["url"])
        return FormPost(str(made["action"]), {k: str(v) for k, v in made["fields"].items() if v})

    # --- the browser ------------------------------------------------------------------------------------------

    def authn_request(self, url: str, fields: dict[str, str] | None = None) -> SeenAuthnRequest:
        """The browser at samlify's SSO endpoint: ``url`` from the broker's redirect (HTTP-Redirect), or the
        ``fields`` of the broker's form posted to ``url`` (HTTP-POST). samlify's login page, or SamlifyRefused."""
        if fields is None:
            answer = self._request("GET", url)
        else:
            answer = self._request("POST", url, urlencode(fields).encode(), "application/x-www-form-urlencoded")
        answer.refused_unless(200)
        return SeenAuthnRequest(_form(answer.body).fields["login"], answer.extract)

    def respond(self, seen: SeenAuthnRequest, profile: ResponseProfile) -> FormPost:
        """The user logs in on samlify's login page: samlify's Response in its auto-submitting form."""
        body = urlencode({"login": seen.login, "profile": profile.to_json()}).encode()
        answer = self._request("POST", "/login", body, "application/x-www-form-urlencoded")
        answer.refused_unless(200)
        return _form(answer.body)

    def logout(self, sent: Delivery, *, reply: Binding = "redirect") -> tuple[Delivery, dict[str, Any]]:
        """The broker's LogoutRequest at samlify (the URL of an HTTP-Redirect, or the form of an HTTP-POST): samlify's
        LogoutResponse by the binding ``reply`` (the URL of its 303, or its form) and what samlify read from the
        request once verified."""
        return logout_request_at(self._request, sent, reply)

    def logout_response(self, url: str) -> dict[str, Any]:
        """The broker's HTTP-Redirect LogoutResponse at samlify: what samlify read from it once verified."""
        answer = self._request("GET", url)
        answer.refused_unless(200)
        return answer.extract


# --- the browser's walk through the broker ------------------------------------------------------------------------


def to_samlify(browser: Browser, samlify: SamlifyIdp, first: TestResponse,
               municipality: str = "kommun-c") -> SeenAuthnRequest:
    """From the broker's answer to the SP's AuthnRequest (discovery page, redirect or form) to samlify's login page."""
    response = first
    if response.status_code == 200 and any("login" in fields for _, fields in forms(response)):
        response = browser.post("/discovery", {**discovery_form(response), "municipality": municipality})
    sso = samlify.base_url + "/sso"
    if response.status_code == 303:  # HTTP-Redirect (SAML Bindings §3.4)
        location = response.headers["Location"]
        assert location.startswith(sso + "?"), location
        return samlify.authn_request(location)
    assert response.status_code == 200, (response.status_code, response.headers.get("X-Broker-Reason"))
    (action, fields), = [(a, f) for a, f in forms(response) if "SAMLRequest" in f]  # HTTP-POST (§3.5)
    assert action == sso, action
    return samlify.authn_request(action, fields)


def deliver(browser: Browser, delivery: Delivery) -> TestResponse:
    """The browser takes samlify's message to the broker: follows the redirect, or submits the form."""
    if isinstance(delivery, FormPost):
        return browser.post(delivery.action, delivery.fields)
    return browser.get(delivery)


def back_to_broker(browser: Browser, post: FormPost, acs_url: str) -> TestResponse:
    """samlify's HTTP-POST form submitted to the broker's ACS."""
    assert post.action == acs_url, post.action
    return browser.post(post.action, post.fields)
