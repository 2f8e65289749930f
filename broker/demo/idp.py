"""The demo municipality's own IdP (Kommun C, standing in for its ADFS): a real pysaml2 IdP.

It answers the broker's signed AuthnRequests with a Response whose Assertion
it signs (RSA-SHA256), speaking ADFS's dialect: claim-URI attribute names, an
AuthnContextClassRef per login method. It takes part in single logout in both
directions. The demo server mounts its pages at /demo-idp; the test suite
drives the same class directly, and also makes it misbehave (SHA-1, 3DES,
unsigned, other status codes) to check what the broker refuses.

Encryption: pysaml2 7.5 encrypts assertions only with 3DES-CBC, which the
broker refuses; :func:`encrypt_assertion` encrypts with AES-GCM and RSA-OAEP
as the broker does toward its own SPs (ADFS encrypts with AES by default).
"""

from __future__ import annotations

import base64
import hashlib
import html
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from flask import Flask, Response, make_response, request
from lxml import etree
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, saml, samlp, xmldsig
from saml2.config import IdPConfig
from saml2.metadata import entity_descriptor
from saml2.request import AuthnRequest

with warnings.catch_warnings():
    # pysaml2 7.5 touches cryptography's deprecated CFB mode at import; the IdP never uses it
    warnings.filterwarnings("ignore", message="CFB has been moved")
    from saml2.server import Server
from saml2.sigver import verify_redirect_signature

from broker.saml.xmlenc import AssertionEncrypter, choose_encryption

CLASS_X509 = "urn:oasis:names:tc:SAML:2.0:ac:classes:X509"
CLASS_PASSWORD = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"  # noqa: S105 (a URI)
CLAIMS = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims"
SAML_NS = "urn:oasis:names:tc:SAML:2.0:assertion"


@dataclass(frozen=True)
class DemoIdpSettings:
    base_url: str                  # e.g. https://localhost:8443/demo-idp
    key_file: Path
    cert_file: Path
    xmlsec_binary: str | None = None


@dataclass(frozen=True)
class IdpUser:
    name: str
    about: str
    class_ref: str
    attributes: dict[str, list[str]]


DEMO_IDP_USERS: tuple[IdpUser, ...] = (
    IdpUser("karin", "home-care nurse; SITHS card at Kommun C's IdP (LoA 3)", CLASS_X509, {
        "http://sambi.se/attributes/1/employeeHsaId": ["SE2120003005-K001"],
        f"{CLAIMS}/givenname": ["Karin"],
        f"{CLAIMS}/surname": ["Kommunsson"],
        "http://schemas.microsoft.com/identity/claims/displayname": ["Karin Kommunsson"],
    }),
    IdpUser("lars", "social services; password at Kommun C's IdP (LoA 2)", CLASS_PASSWORD, {
        "http://sambi.se/attributes/1/employeeHsaId": ["SE2120003005-L002"],
        f"{CLAIMS}/givenname": ["Lars"],
        f"{CLAIMS}/surname": ["Larsson"],
    }),
)


def idp_config(settings: DemoIdpSettings, sp_metadata: bytes | None) -> IdPConfig:
    base = settings.base_url
    conf: dict[str, Any] = {
        "entityid": f"{base}/metadata",
        "key_file": str(settings.key_file),
        "cert_file": str(settings.cert_file),
        "service": {
            "idp": {
                "name": "Kommun C demo IdP",
                "endpoints": {
                    "single_sign_on_service": [(f"{base}/sso", BINDING_HTTP_REDIRECT),
                                               (f"{base}/sso", BINDING_HTTP_POST)],
                    "single_logout_service": [(f"{base}/slo", BINDING_HTTP_REDIRECT)],
                },
                "want_authn_requests_signed": True,
                "sign_assertion": True,
                "sign_response": False,
                "signing_algorithm": xmldsig.SIG_RSA_SHA256,
                "digest_algorithm": xmldsig.DIGEST_SHA256,
                "name_id_format": [saml.NAMEID_FORMAT_PERSISTENT],
                "policy": {"default": {"lifetime": {"minutes": 5}, "attribute_restrictions": None,
                                       "name_form": saml.NAME_FORMAT_URI}},
            }
        },
        "metadata": {"inline": [sp_metadata.decode()]} if sp_metadata else {},
    }
    if settings.xmlsec_binary:
        conf["xmlsec_binary"] = settings.xmlsec_binary
    config = IdPConfig()
    config.load(conf)
    return config


def idp_metadata(settings: DemoIdpSettings) -> bytes:
    """The IdP's metadata as the municipality would hand it to regional IT (a local file in the demo)."""
    return str(entity_descriptor(idp_config(settings, None))).encode()


@dataclass(frozen=True)
class FormPost:
    """An HTTP-POST binding message for the browser to carry."""

    url: str
    fields: dict[str, str]


@dataclass
class _Login:
    name_id: str
    session_index: str
    sp_entity_id: str


@dataclass
class DemoIdp:
    """A pysaml2 IdP with memory of whom it logged in (for single logout)."""

    settings: DemoIdpSettings
    sp_metadata: bytes
    server: Server = field(init=False)
    logins: dict[str, _Login] = field(default_factory=dict)
    last_logout_request: samlp.LogoutRequest | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.server = Server(config=idp_config(self.settings, self.sp_metadata))

    @property
    def entity_id(self) -> str:
        return f"{self.settings.base_url}/metadata"

    # --- login ---------------------------------------------------------------------------

    def parse_redirect(self, url: str) -> tuple[AuthnRequest, str | None]:
        """An AuthnRequest arriving by HTTP-Redirect: its query signature must verify (SAML Bindings §3.4.4.1)."""
        query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        return self.parse(query, BINDING_HTTP_REDIRECT)

    def parse(self, fields: dict[str, str], binding: str) -> tuple[AuthnRequest, str | None]:
        """pysaml2 checks the signature: the query's for HTTP-Redirect, the XML signature for HTTP-POST."""
        req = self.server.parse_authn_request(fields["SAMLRequest"], binding, relay_state=fields.get("RelayState"),
                                              sigalg=fields.get("SigAlg"), signature=fields.get("Signature"))
        if req is None:
            raise ValueError("pysaml2 did not accept the AuthnRequest")
        return req, fields.get("RelayState")

    def _verify_query(self, fields: dict[str, str], issuer: str) -> None:
        if "Signature" not in fields:
            raise ValueError("the message is not signed")
        for _, cert in self.server.metadata.certs(issuer, "any", "signing"):
            if verify_redirect_signature(fields, self.server.sec.sec_backend, cert):
                return
        raise ValueError("the query signature does not verify")

    def respond(self, req: AuthnRequest, relay_state: str | None, user: IdpUser, *, class_ref: str | None = None,
                sign_assertion: bool = True, sign_response: bool = False, sha1: bool = False,
                encrypt: Literal["aes", "pysaml2-3des"] | None = None,
                attributes: dict[str, list[str]] | None = None) -> FormPost:
        """A Response for ``user`` to ``req`` (as pysaml2 builds it), delivered by HTTP-POST."""
        args = self.server.response_args(req.message, [BINDING_HTTP_POST])
        name_id = saml.NameID(format=saml.NAMEID_FORMAT_PERSISTENT, text=self.name_id_of(user),
                              sp_name_qualifier=args["sp_entity_id"])
        sig_alg = xmldsig.SIG_RSA_SHA1 if sha1 else xmldsig.SIG_RSA_SHA256
        digest_alg = xmldsig.DIGEST_SHA1 if sha1 else xmldsig.DIGEST_SHA256
        extra: dict[str, Any] = {}
        if encrypt == "pysaml2-3des":
            extra = {"encrypt_assertion": True, "encrypt_cert_assertion": None}
        response = self.server.create_authn_response(
            attributes if attributes is not None else user.attributes,
            name_id=name_id,
            authn={"class_ref": class_ref or user.class_ref, "authn_auth": self.entity_id},
            sign_assertion=sign_assertion, sign_response=sign_response and encrypt != "aes",
            sign_alg=sig_alg, digest_alg=digest_alg, **args, **extra)
        xml = str(response).encode()
        if encrypt == "aes":
            xml = encrypt_assertion(xml, self._sp_encryption_certificate(args["sp_entity_id"]), args["sp_entity_id"])
        session_index = _session_index(xml)
        with self._lock:
            self.logins[user.name] = _Login(name_id.text, session_index or "", args["sp_entity_id"])
        return self._post(args["destination"], xml, relay_state)

    def error(self, req: AuthnRequest, relay_state: str | None, status: str, message: str | None = None
              ) -> FormPost:
        """An error Response (e.g. NoPassive, AuthnFailed) to ``req``."""
        args = self.server.response_args(req.message, [BINDING_HTTP_POST])
        # pysaml2 puts the code under a Responder top-level status itself
        response = self.server.create_error_response(args["in_response_to"], args["destination"],
                                                     (status, message or ""), sign=True)
        return self._post(args["destination"], str(response).encode(), relay_state)

    def name_id_of(self, user: IdpUser) -> str:
        """A stable pseudonym per user, as ADFS's persistent identifiers are."""
        return hashlib.sha256(f"kommun-c:{user.name}".encode()).hexdigest()[:32]

    def _sp_encryption_certificate(self, sp_entity_id: str) -> bytes:
        certs = self.server.metadata.certs(sp_entity_id, "spsso", "encryption")
        if not certs:
            raise ValueError(f"{sp_entity_id} publishes no encryption certificate")
        body: str = certs[0][1]
        return b"-----BEGIN CERTIFICATE-----\n" + body.encode() + b"\n-----END CERTIFICATE-----\n"

    def _post(self, url: str, xml: bytes, relay_state: str | None) -> FormPost:
        fields = {"SAMLResponse": base64.b64encode(xml).decode()}
        if relay_state is not None:
            fields["RelayState"] = relay_state
        return FormPost(url, fields)

    # --- single logout -------------------------------------------------------------------------

    def logout_request(self, user: IdpUser, *, session_index: bool = True) -> str:
        """IdP-initiated logout of ``user``: the HTTP-Redirect URL of a signed LogoutRequest to the broker."""
        with self._lock:
            login = self.logins[user.name]
        slo = self.server.metadata.single_logout_service(login.sp_entity_id, BINDING_HTTP_REDIRECT, "spsso")
        destination = slo[0]["location"]
        _, message = self.server.create_logout_request(
            destination, self.entity_id, name_id=saml.NameID(format=saml.NAMEID_FORMAT_PERSISTENT,
                                                              text=login.name_id),
            session_indexes=[login.session_index] if session_index and login.session_index else None,
            reason="urn:oasis:names:tc:SAML:2.0:logout:user", sign=False)
        args = self.server.apply_binding(BINDING_HTTP_REDIRECT, str(message), destination, relay_state="idp-slo",
                                         sign=True, sigalg=xmldsig.SIG_RSA_SHA256)
        return str(dict(args["headers"])["Location"])

    def handle_slo(self, url: str) -> str:
        """The broker's LogoutRequest (HTTP-Redirect): verify it, forget the login, answer with a URL.

        A LogoutResponse from the broker (the end of an IdP-initiated logout) is verified and returns "".
        """
        query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        if "SAMLResponse" in query:
            response = self.server.parse_logout_request_response(query["SAMLResponse"], BINDING_HTTP_REDIRECT)
            self._verify_query(query, response.response.issuer.text)
            return ""
        # pysaml2 verifies the query signature (it requires one: want_authn_requests_signed)
        req = self.server.parse_logout_request(query["SAMLRequest"], BINDING_HTTP_REDIRECT,
                                               relay_state=query.get("RelayState"), sigalg=query.get("SigAlg"),
                                               signature=query.get("Signature"))
        if req is None:
            raise ValueError("pysaml2 did not accept the LogoutRequest")
        self.last_logout_request = req.message
        with self._lock:
            for name, login in list(self.logins.items()):
                if login.name_id == req.message.name_id.text:
                    del self.logins[name]
        response = self.server.create_logout_response(req.message, [BINDING_HTTP_REDIRECT], sign=False)
        slo = self.server.metadata.single_logout_service(req.message.issuer.text, BINDING_HTTP_REDIRECT, "spsso")
        destination = slo[0].get("response_location") or slo[0]["location"]
        args = self.server.apply_binding(BINDING_HTTP_REDIRECT, str(response), destination,
                                         relay_state=query.get("RelayState", ""), response=True,
                                         sign=True, sigalg=xmldsig.SIG_RSA_SHA256)
        return str(dict(args["headers"])["Location"])


def _session_index(xml: bytes) -> str | None:
    root = etree.fromstring(xml)
    statement = root.find(f".//{{{SAML_NS}}}AuthnStatement")
    return statement.get("SessionIndex") if statement is not None else None


def encrypt_assertion(response_xml: bytes, certificate_pem: bytes, recipient: str) -> bytes:
    """Replace the Response's (signed) Assertion by an EncryptedAssertion (SAML Core §2.3.4) for the certificate,
    as the broker encrypts for its own SPs (AES-256-GCM, RSA-OAEP)."""
    root = etree.fromstring(response_xml)
    assertion = root.find(f"{{{SAML_NS}}}Assertion")
    if assertion is None:
        raise ValueError("the Response has no Assertion")
    encrypter = AssertionEncrypter(x509.load_pem_x509_certificate(certificate_pem), choose_encryption(()), recipient)
    encrypter.encrypt(assertion)
    return bytes(etree.tostring(root))


def demo_idp_app(idp: DemoIdp) -> Flask:
    """Kommun C's login pages, mounted at /demo-idp by the demo server: pick a demo user, log in."""
    app = Flask("broker.demo.idp")
    pending: dict[str, tuple[AuthnRequest, str | None]] = {}

    @app.route("/sso", methods=["GET", "POST"])
    def sso() -> Response:
        try:
            if request.method == "GET":
                req, relay = idp.parse_redirect(request.url)
            else:
                req, relay = idp.parse(request.form.to_dict(), BINDING_HTTP_POST)
        except Exception as exc:  # the demo shows pysaml2's verdict whatever it is
            return make_response(_page("Kommun C", f"<p>Refused: {html.escape(str(exc))}</p>"), 400)
        key = base64.urlsafe_b64encode(hashlib.sha256(req.message.id.encode()).digest()[:12]).decode()
        pending[key] = (req, relay)
        passive = req.message.is_passive == "true"
        if passive:
            post = idp.error(req, relay, samlp.STATUS_NO_PASSIVE, "no session at Kommun C")
            return make_response(_form(post), 200)
        buttons = "".join(
            f"<li><form method='post' action='login'><input type='hidden' name='login' value='{key}'>"
            f"<input type='hidden' name='user' value='{u.name}'><button type='submit'>{html.escape(u.name)}"
            f"</button> {html.escape(u.about)}</form></li>" for u in DEMO_IDP_USERS)
        return make_response(_page("Kommun C: log in", f"<p>Demo users of Kommun C's own IdP:</p><ul>{buttons}</ul>"))

    @app.route("/login", methods=["POST"])
    def login() -> Response:
        found = pending.pop(request.form.get("login", ""), None)
        user = next((u for u in DEMO_IDP_USERS if u.name == request.form.get("user")), None)
        if found is None or user is None:
            return make_response(_page("Kommun C", "<p>Unknown login; start again at the service.</p>"), 400)
        return make_response(_form(idp.respond(found[0], found[1], user)))

    @app.route("/slo", methods=["GET"])
    def slo() -> Response:
        try:
            location = idp.handle_slo(request.url)
        except Exception as exc:  # the demo shows pysaml2's verdict whatever it is
            return make_response(_page("Kommun C", f"<p>Refused: {html.escape(str(exc))}</p>"), 400)
        if not location:
            return make_response(_page("Kommun C", "<p>You are logged out.</p>"))
        response = make_response("", 303)
        response.headers["Location"] = location
        return response

    @app.route("/logout/<name>", methods=["GET"])
    def logout(name: str) -> Response:
        """Start an IdP-initiated single logout for a demo user."""
        user = next((u for u in DEMO_IDP_USERS if u.name == name), None)
        if user is None or user.name not in idp.logins:
            return make_response(_page("Kommun C", "<p>That user is not logged in here.</p>"), 404)
        response = make_response("", 303)
        response.headers["Location"] = idp.logout_request(user)
        return response

    @app.route("/metadata")
    def metadata() -> Response:
        response = make_response(idp_metadata(idp.settings))
        response.headers["Content-Type"] = "application/samlmetadata+xml"
        return response

    return app


def _form(post: FormPost) -> str:
    inputs = "".join(f"<input type='hidden' name='{html.escape(k)}' value='{html.escape(v)}'>"
                     for k, v in post.fields.items())
    return _page("Kommun C", f"<form method='post' action='{html.escape(post.url)}'>{inputs}"
                             "<button type='submit'>Continue</button></form>")


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"</head><body><main><h1>{html.escape(title)}</h1>{body}</main></body></html>")
