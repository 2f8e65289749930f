"""The demo's service provider: a real pysaml2 SP that logs in through the broker.

It signs its AuthnRequests (HTTP-Redirect, RSA-SHA256), validates the
broker's Response with pysaml2 (signature, audience, InResponseTo, times) and
shows the user's attributes and LoA. The test suite drives the same class.
"""

from __future__ import annotations

import base64
import html
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask, Response, make_response, redirect, request
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, xmldsig
from saml2.client import Saml2Client
from saml2.config import SPConfig
from saml2.metadata import entity_descriptor
from saml2.saml import NAMEID_FORMAT_PERSISTENT, NAMEID_FORMAT_TRANSIENT

from broker.saml.attributes import BY_URI


@dataclass(frozen=True)
class DemoSpSettings:
    base_url: str            # e.g. https://localhost:8443/demo-sp
    key_file: Path
    cert_file: Path
    xmlsec_binary: str | None = None   # pysaml2's default backend: the xmlsec1 program
    # a key pair for encrypted assertions (published as the metadata's encryption key), or none
    encryption: tuple[Path, Path] | None = None


def sp_config(settings: DemoSpSettings, idp_metadata: bytes | None) -> SPConfig:
    base = settings.base_url
    conf: dict[str, Any] = {
        "entityid": f"{base}/metadata",
        "key_file": str(settings.key_file),
        "cert_file": str(settings.cert_file),
        "service": {
            "sp": {
                "name": "Demo SP",
                "endpoints": {
                    "assertion_consumer_service": [(f"{base}/acs", BINDING_HTTP_POST)],
                    "single_logout_service": [(f"{base}/slo", BINDING_HTTP_REDIRECT)],
                },
                "authn_requests_signed": True,
                "want_assertions_signed": True,
                "want_response_signed": False,
                "allow_unsolicited": False,
                "logout_requests_signed": True,
                # algorithms must be set here, in service.sp: at the top level pysaml2 ignores them
                "signing_algorithm": xmldsig.SIG_RSA_SHA256,
                "digest_algorithm": xmldsig.DIGEST_SHA256,
                "name_id_format": [NAMEID_FORMAT_PERSISTENT, NAMEID_FORMAT_TRANSIENT],
            }
        },
        "allow_unknown_attributes": True,
        "metadata": {"inline": [idp_metadata.decode()]} if idp_metadata else {},
    }
    if settings.xmlsec_binary:
        conf["xmlsec_binary"] = settings.xmlsec_binary
    if settings.encryption is not None:
        key_file, cert_file = settings.encryption
        conf["encryption_keypairs"] = [{"key_file": str(key_file), "cert_file": str(cert_file)}]
    config = SPConfig()
    config.load(conf)
    return config


def sp_metadata(settings: DemoSpSettings) -> bytes:
    """The SP's metadata, as regional IT would receive it from the SP's vendor."""
    descriptor = entity_descriptor(sp_config(settings, None))
    return str(descriptor).encode()


@dataclass(frozen=True)
class LoginResult:
    name_id: str
    name_id_format: str
    loa: str | None
    attributes: dict[str, list[str]]
    session_index: str | None


class DemoSp:
    """A pysaml2 SP with memory for its outstanding requests."""

    def __init__(self, settings: DemoSpSettings, idp_metadata: bytes, idp_entity_id: str) -> None:
        self.settings = settings
        self.client = Saml2Client(config=sp_config(settings, idp_metadata))
        self.idp_entity_id = idp_entity_id
        self._outstanding: dict[str, str] = {}
        self._lock = threading.Lock()
        self.last_login: LoginResult | None = None

    def login_url(self, *, force_authn: bool = False, transient: bool = False, relay_state: str = "/") -> str:
        extra: dict[str, Any] = {}
        if force_authn:
            extra["force_authn"] = "true"
        req_id, info = self.client.prepare_for_authenticate(
            entityid=self.idp_entity_id,
            relay_state=relay_state,
            binding=BINDING_HTTP_REDIRECT,
            nameid_format=NAMEID_FORMAT_TRANSIENT if transient else NAMEID_FORMAT_PERSISTENT,
            sign=True,
            sigalg=xmldsig.SIG_RSA_SHA256,
            digest_alg=xmldsig.DIGEST_SHA256,
            **extra,
        )
        with self._lock:
            self._outstanding[req_id] = relay_state
        return str(dict(info["headers"])["Location"])

    def accept(self, saml_response: str) -> LoginResult:
        """Validate the broker's Response (pysaml2 raises on any problem)."""
        with self._lock:
            outstanding = dict(self._outstanding)
        response = self.client.parse_authn_request_response(saml_response, BINDING_HTTP_POST, outstanding)
        if response is None:
            raise ValueError("pysaml2 did not accept the Response")
        with self._lock:
            self._outstanding.pop(response.in_response_to, None)
        assertion = response.assertion
        loa = None
        if assertion.authn_statement and assertion.authn_statement[0].authn_context:
            ref = assertion.authn_statement[0].authn_context.authn_context_class_ref
            loa = ref.text if ref is not None else None
        attributes: dict[str, list[str]] = {}
        for statement in assertion.attribute_statement:
            for attribute in statement.attribute:
                known = BY_URI.get(attribute.name)
                name = known.name if known else attribute.name
                attributes[name] = [v.text for v in attribute.attribute_value]
        name_id = response.name_id
        result = LoginResult(
            name_id=name_id.text,
            name_id_format=name_id.format,
            loa=loa,
            attributes=attributes,
            session_index=assertion.authn_statement[0].session_index if assertion.authn_statement else None,
        )
        self.last_login = result
        return result


def demo_sp_app(sp: DemoSp) -> Flask:
    """The demo SP's pages, mounted at /demo-sp by the demo server."""
    app = Flask("broker.demo.sp")

    @app.route("/")
    def index() -> str:
        return _page("Demo service", """
<p>This service logs you in through the broker with your municipal certificate.</p>
<ul>
<li><a href="login">Log in</a> (persistent NameID)</li>
<li><a href="login?transient=1">Log in with a transient NameID</a></li>
<li><a href="login?force=1">Log in again, forcing authentication (ForceAuthn)</a></li>
</ul>""")

    @app.route("/login")
    def login() -> Response:
        url = sp.login_url(force_authn=request.args.get("force") == "1",
                           transient=request.args.get("transient") == "1")
        return redirect(url, 303)  # type: ignore[return-value]

    @app.route("/acs", methods=["POST"])
    def acs() -> Response:
        try:
            result = sp.accept(request.form.get("SAMLResponse", ""))
        except Exception as exc:  # the demo shows pysaml2's verdict whatever it is
            body = _page("Login failed", f"<p>The SP refused the response: {html.escape(str(exc))}</p>"
                         f"<pre>{html.escape(_status_of(request.form.get('SAMLResponse', '')))}</pre>")
            return make_response(body, 403)
        rows = "".join(f"<tr><th scope='row'>{html.escape(k)}</th><td>{html.escape(', '.join(v))}</td></tr>"
                       for k, v in result.attributes.items())
        body = _page("Logged in", f"""
<p>The broker's Response passed pysaml2's checks.</p>
<dl><dt>LoA (AuthnContextClassRef)</dt><dd class="loa">{html.escape(result.loa or '')}</dd>
<dt>NameID ({html.escape(result.name_id_format.rsplit(':', 1)[-1])})</dt>
<dd class="nameid">{html.escape(result.name_id)}</dd></dl>
<table><caption>Attributes</caption>{rows}</table>
<p><a href="./">Back</a></p>""")
        return make_response(body, 200)

    @app.route("/metadata")
    def metadata() -> Response:
        response = make_response(sp_metadata(sp.settings))
        response.headers["Content-Type"] = "application/samlmetadata+xml"
        return response

    return app


def _status_of(saml_response: str) -> str:
    try:
        xml = base64.b64decode(saml_response).decode("utf-8", "replace")
    except ValueError:
        return ""
    codes = re.findall(r'StatusCode Value="([^"]+)"', xml)
    return " / ".join(codes)


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"</head><body><main><h1>{html.escape(title)}</h1>{body}</main></body></html>")
