"""Schema conformance (the OASIS SAML 2.0 XSDs, as bundled with python3-saml) of every message the broker emits.

Each test drives a real flow with the existing fixtures and factories, captures the message exactly as the broker
sends it (HTTP-POST form field, or the DEFLATEd HTTP-Redirect parameter, or the metadata document) and validates
it with lxml against:

* saml-schema-protocol-2.0.xsd (which imports the assertion schema, xmldsig and xenc) for protocol messages;
* saml-schema-metadata-2.0.xsd for metadata, wrapped in a schema that also imports the metadata extension schemas
  python3-saml ships (mdattr, mdui, algsupport, attribute-ext), so that the lax wildcard of md:Extensions actually
  validates the EntityAttributes etc. instead of skipping them.

A failure lists every schema error (line, element path, lxml message).
"""

from __future__ import annotations

import base64
import os
import re
from html import unescape
from pathlib import Path
from typing import Any

import onelogin.saml2  # type: ignore[import-untyped]
import pytest
from flask import Flask
from lxml import etree
from onelogin.saml2.xml_utils import OneLogin_Saml2_XML  # type: ignore[import-untyped]
from saml2.saml import NAMEID_FORMAT_PERSISTENT, NameID

from broker.config.loader import Settings, load_settings
from broker.demo.idp import DemoIdp
from broker.demo.sp import DemoSp, DemoSpSettings, sp_metadata
from tests.factories.authnrequests import (
    AuthnRequests,
    open_browser,
    posted_response,
    redirect_message,
    status_codes,
)
from tests.factories.idp import IDP_ENTITY_ID, KARIN, federated_login, to_idp
from tests.factories.saml import BASE_URL, Browser, saml_response_form
from tests.factories.sp_files import register_sp
from tests.flows.test_federation_logout import (
    KOMMUN_C_SLO,
    SP1_SLO,
    SP2_SLO,
    _add_sp,
    _pysaml2_sp,
    _sp_settings,
    _without_slo,
    hop,
    idp_answers,
    idp_logout_url,
    karin_login,
    sp_answers,
    sp_logout_url,
    sso_login,
)
from tests.flows.test_proxying import federated, proxy_restriction, scoped
from tests.flows.test_sso_encryption import (
    SEALED_SP_BASE,
    SEALED_SP_ENTITY_ID,
    sealed_sp_settings,  # noqa: F401  (a fixture, used by name)
)

SCHEMAS = Path(os.path.dirname(onelogin.saml2.__file__)) / "schemas"
STATUS = "urn:oasis:names:tc:SAML:2.0:status:"
LOA3 = "http://id.elegnamnden.se/loa/1.0/loa3"
IDP_SLO_URL = BASE_URL + "/saml/idp/slo"
LOA4 = "http://id.elegnamnden.se/loa/1.0/loa4"

_schemas: dict[str, etree.XMLSchema] = {}


def _schema(kind: str) -> etree.XMLSchema:
    if kind not in _schemas:
        if kind == "protocol":
            doc = etree.parse(str(SCHEMAS / "saml-schema-protocol-2.0.xsd"))
        else:  # metadata plus the extension schemas for md:Extensions' lax wildcard
            imports = [
                ("urn:oasis:names:tc:SAML:2.0:metadata", "saml-schema-metadata-2.0.xsd"),
                ("urn:oasis:names:tc:SAML:metadata:attribute", "sstc-metadata-attr.xsd"),
                ("urn:oasis:names:tc:SAML:metadata:ui", "sstc-saml-metadata-ui-v1.0.xsd"),
                ("urn:oasis:names:tc:SAML:metadata:algsupport", "sstc-saml-metadata-algsupport-v1.0.xsd"),
                ("urn:oasis:names:tc:SAML:attribute:ext", "sstc-saml-attribute-ext.xsd"),
            ]
            body = "".join(f'<xs:import namespace="{ns}" schemaLocation="{(SCHEMAS / f).as_uri()}"/>'
                           for ns, f in imports)
            doc = etree.ElementTree(etree.fromstring(
                '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" '
                f'targetNamespace="urn:x-test:wrapper">{body}</xs:schema>',
                base_url=(SCHEMAS / "wrapper.xsd").as_uri()))
        _schemas[kind] = etree.XMLSchema(doc)
    return _schemas[kind]


def schema_errors(xml: bytes, kind: str = "protocol") -> list[str]:
    """Every error of ``xml`` against the SAML schema ``kind`` (protocol or metadata)."""
    root = etree.fromstring(xml)
    schema = _schema(kind)
    if schema.validate(root):
        return []
    return [f"line {e.line}: {e.path}: {e.message}" for e in schema.error_log]  # type: ignore[attr-defined]


CAPTURED: list[tuple[str, bytes]] = []


def assert_valid(name: str, xml: bytes, kind: str = "protocol") -> None:
    CAPTURED.append((name, xml))
    out = os.environ.get("XSD_CAPTURE_DIR")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / f"{name}.xml").write_bytes(xml)
    errors = schema_errors(xml, kind)
    # the same check as tests/flows/test_interop_onelogin.py, as a cross-check of the validator above
    onelogin = OneLogin_Saml2_XML.validate_xml(
        etree.fromstring(xml), "saml-schema-protocol-2.0.xsd" if kind == "protocol" else "saml-schema-metadata-2.0.xsd")
    assert not errors, f"{name} violates the SAML {kind} schema:\n" + "\n".join(errors)
    assert not isinstance(onelogin, str), f"{name}: python3-saml says {onelogin}"


def form_xml(fields: dict[str, str]) -> bytes:
    return base64.b64decode(fields["SAMLResponse"])


def decrypted_assertion(response: etree._Element, settings: DemoSpSettings) -> bytes:
    """The plaintext of the EncryptedAssertion (RSA-OAEP-MGF1P key transport, AES-256-GCM: IV || data || tag)."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    ns = {"xenc": "http://www.w3.org/2001/04/xmlenc#", "ds": "http://www.w3.org/2000/09/xmldsig#",
          "saml": "urn:oasis:names:tc:SAML:2.0:assertion"}
    data = response.find("saml:EncryptedAssertion/xenc:EncryptedData", ns)
    assert data is not None
    assert settings.encryption is not None
    key = serialization.load_pem_private_key(settings.encryption[0].read_bytes(), password=None)
    wrapped = base64.b64decode(data.findtext("ds:KeyInfo/xenc:EncryptedKey/xenc:CipherData/xenc:CipherValue",
                                             namespaces=ns) or "")
    cek = key.decrypt(wrapped, padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(),  # type: ignore[union-attr]
                                            label=None))
    blob = base64.b64decode(data.findtext("xenc:CipherData/xenc:CipherValue", namespaces=ns) or "")
    plain = AESGCM(cek).decrypt(blob[:12], blob[12:], None)
    root = etree.fromstring(plain)
    assert root.tag == "{urn:oasis:names:tc:SAML:2.0:assertion}Assertion", root.tag
    return plain


# --- configuration ---------------------------------------------------------------------------------------------


@pytest.fixture
def sign_demo_response(request: pytest.FixtureRequest) -> bool:
    """``sign_response`` for the demo SP (the example says false); a test parametrises it indirectly."""
    return bool(getattr(request, "param", True))


@pytest.fixture
def config_dir(config_dir: Path, demo_material: Any, sign_demo_response: bool) -> Path:  # type: ignore[misc]
    """The example configuration, the demo SP's sign_response as asked, plus a second SP with SLO and a third
    without (test_federation_logout.py's peers)."""
    path = config_dir / "service-providers" / "demo-sp.yaml"
    text = path.read_text()
    assert "sign_response: false" in text
    path.write_text(text.replace("sign_response: false", f"sign_response: {str(sign_demo_response).lower()}"))
    _add_sp(config_dir, "second-sp", "Andra tjänsten", sp_metadata(_sp_settings(demo_material, "second-sp")))
    _add_sp(config_dir, "third-sp", "Tredje tjänsten",
            _without_slo(sp_metadata(_sp_settings(demo_material, "third-sp"))))
    return config_dir


@pytest.fixture
def sp2(app: Flask, settings: Settings, demo_material: Any) -> DemoSp:
    return _pysaml2_sp(app, settings, demo_material, "second-sp")


@pytest.fixture
def sp3(app: Flask, settings: Settings, demo_material: Any) -> DemoSp:
    return _pysaml2_sp(app, settings, demo_material, "third-sp")


@pytest.fixture
def craft(sp: DemoSp, demo_material: Any) -> AuthnRequests:
    return AuthnRequests(sp, demo_material.root / "sp" / "sp.key")


# --- 1. success Response after a certificate login ----------------------------------------------------------------


@pytest.mark.parametrize("sign_demo_response", [False, True], indirect=True,
                         ids=["assertion-signed", "response-signed"])
def test_certificate_login_response(browser: Browser, sp: DemoSp, sign_demo_response: bool) -> None:
    posted = posted_response(browser.get(sp.login_url()))
    assert status_codes(posted.root) == (STATUS + "Success", None)
    assert (posted.root.find("{http://www.w3.org/2000/09/xmldsig#}Signature") is not None) == sign_demo_response
    assert_valid(f"cert-login-response-{'signed' if sign_demo_response else 'unsigned'}", posted.xml)
    sp.accept(posted.fields["SAMLResponse"])


def test_certificate_login_response_transient(browser: Browser, sp: DemoSp) -> None:
    posted = posted_response(browser.get(sp.login_url(transient=True)))
    assert_valid("cert-login-response-transient", posted.xml)


@pytest.mark.parametrize("sign_response", [False, True], ids=["assertion-signed", "response-signed-too"])
def test_certificate_login_response_with_encrypted_assertion(
        config_dir: Path, sealed_sp_settings: DemoSpSettings,  # noqa: F811  (the imported fixture)
        redis_url: str, redis_prefix: str, users: Path, sign_response: bool) -> None:
    from broker.app import create_app
    from broker.session.store import RedisStore

    register_sp(config_dir, "sealed-sp", entity_id=SEALED_SP_ENTITY_ID, name="Förseglade tjänsten",
                metadata=sp_metadata(sealed_sp_settings),
                release=["employeeHsaId", "personalIdentityNumber", "givenName", "sn"],
                sign_response=sign_response, encrypt_assertions=True)
    app = create_app(load_settings(config_dir), store=RedisStore(redis_url, prefix=redis_prefix), instance_id="t")
    sealed = DemoSp(sealed_sp_settings, app.extensions["broker"].metadata.document(),
                    BASE_URL + "/saml/idp/metadata")
    browser = open_browser(app, (users / "bo.pem").read_text())
    craft = AuthnRequests(sealed, sealed_sp_settings.key_file)
    crafted = craft.build()
    posted = posted_response(browser.get(craft.redirect(crafted)))
    assert posted.action == SEALED_SP_BASE + "/acs"
    assert posted.root.find("{urn:oasis:names:tc:SAML:2.0:assertion}EncryptedAssertion") is not None
    assert_valid(f"cert-login-response-encrypted-{'signed' if sign_response else 'unsigned'}", posted.xml)
    # the Assertion inside, decrypted with the SP's own key, validated on its own
    assert_valid(f"encrypted-assertion-decrypted-{'signed' if sign_response else 'unsigned'}",
                 decrypted_assertion(posted.root, sealed_sp_settings))
    # the decrypted Assertion too (pysaml2 decrypts it)
    accepted = sealed.client.parse_authn_request_response(posted.fields["SAMLResponse"], "urn:oasis:names:tc:SAML:2.0:"
                                                          "bindings:HTTP-POST", {crafted.request_id: "/"})
    assert accepted is not None
    # and the SSO reuse from the session, encrypted
    again = posted_response(browser.get(craft.redirect(craft.build())))
    assert_valid(f"sso-reuse-response-encrypted-{'signed' if sign_response else 'unsigned'}", again.xml)


# --- 2. error Responses ------------------------------------------------------------------------------------------


def test_no_passive_error_response(browser: Browser, craft: AuthnRequests) -> None:
    browser.certificate_pem = None
    posted = posted_response(browser.get(craft.redirect(craft.build(is_passive="true"), relay_state="q")))
    assert status_codes(posted.root) == (STATUS + "Responder", STATUS + "NoPassive")
    assert_valid("error-response-no-passive", posted.xml)


def test_no_authn_context_error_response(browser: Browser, craft: AuthnRequests) -> None:
    browser.certificate_pem = None
    crafted = craft.build(requested_authn_context={"authn_context_class_ref": [LOA4], "comparison": "exact"})
    posted = posted_response(browser.get(craft.redirect(crafted) + "&municipality=kommun-c"))
    assert status_codes(posted.root) == (STATUS + "Responder", STATUS + "NoAuthnContext")
    assert_valid("error-response-no-authn-context", posted.xml)


def test_proxy_count_exceeded_error_response(browser: Browser, craft: AuthnRequests) -> None:
    browser.certificate_pem = None
    posted = posted_response(browser.get(craft.redirect(scoped(craft.build().xml, IDP_ENTITY_ID, proxy_count="0"))))
    assert status_codes(posted.root) == (STATUS + "Responder", STATUS + "ProxyCountExceeded")
    assert_valid("error-response-proxy-count-exceeded", posted.xml)


def test_refused_certificate_back_form_response(browser: Browser, sp: DemoSp, users: Path) -> None:
    """David's certificate has expired: the error page offers a signed error Response to take back to the SP."""
    browser.certificate_pem = (users / "david.pem").read_text()
    page = browser.get(sp.login_url())
    assert page.headers.get("X-Broker-Reason") == "certificate_expired"
    _, fields = saml_response_form(page)
    xml = form_xml(fields)
    codes = status_codes(etree.fromstring(xml))
    assert codes[0] == STATUS + "Responder", codes
    assert_valid("error-response-certificate-expired", xml)


# --- 3. the AuthnRequest to the municipal IdP ----------------------------------------------------------------


def test_upstream_authn_request(browser: Browser, sp: DemoSp, idp: DemoIdp) -> None:
    browser.certificate_pem = None
    at = to_idp(browser, idp, browser.get(sp.login_url()))
    assert_valid("upstream-authn-request", redirect_message(at.url, "SAMLRequest").xml)


def test_upstream_authn_request_with_everything(browser: Browser, craft: AuthnRequests, idp: DemoIdp) -> None:
    """ForceAuthn, RequestedAuthnContext and Scoping (ProxyCount, RequesterIDs) passed on."""
    browser.certificate_pem = None
    crafted = craft.build(force_authn="true",
                          requested_authn_context={"authn_context_class_ref": [LOA3], "comparison": "exact"})
    xml = scoped(crafted.xml, IDP_ENTITY_ID, proxy_count="2", requesters=("https://portal.example/",))
    page = browser.get(craft.redirect(xml))
    assert page.status_code == 303, page.headers.get("X-Broker-Reason")
    message = redirect_message(page.headers["Location"], "SAMLRequest")
    assert message.root.find("{urn:oasis:names:tc:SAML:2.0:protocol}Scoping") is not None
    assert message.root.find("{urn:oasis:names:tc:SAML:2.0:protocol}RequestedAuthnContext") is not None
    assert_valid("upstream-authn-request-scoped", message.xml)


def test_upstream_authn_request_passive(browser: Browser, craft: AuthnRequests) -> None:
    browser.certificate_pem = None
    page = browser.get(craft.redirect(craft.build(is_passive="true")) + "&municipality=kommun-c")
    if page.status_code != 303:
        pytest.skip(f"no passive upstream request here ({page.status_code}, {page.headers.get('X-Broker-Reason')})")
    assert_valid("upstream-authn-request-passive", redirect_message(page.headers["Location"], "SAMLRequest").xml)


# --- 4. single logout ------------------------------------------------------------------------------------------


def test_sp_initiated_federated_logout_messages(browser: Browser, sp: DemoSp, sp2: DemoSp, idp: DemoIdp) -> None:
    at_sp1 = karin_login(browser, sp, idp)
    sso_login(browser, sp2)
    to_sp2 = hop(browser.get(sp_logout_url(sp, at_sp1)), SP2_SLO, "SAMLRequest")
    assert_valid("logout-request-to-sp", to_sp2.message.xml)
    to_idp = hop(browser.get(sp_answers(sp2, to_sp2.location)), KOMMUN_C_SLO, "SAMLRequest")
    assert_valid("logout-request-to-idp", to_idp.message.xml)
    final = hop(browser.get(idp_answers(idp, to_idp.location)), SP1_SLO, "SAMLResponse")
    assert status_codes(final.root) == (STATUS + "Success", None)
    assert_valid("logout-response-to-sp-success", final.message.xml)


def test_partial_logout_response(browser: Browser, sp: DemoSp, sp2: DemoSp, sp3: DemoSp) -> None:
    at_sp1 = sso_login(browser, sp)
    sso_login(browser, sp2)
    sso_login(browser, sp3)
    to_sp2 = hop(browser.get(sp_logout_url(sp, at_sp1)), SP2_SLO, "SAMLRequest")
    page = browser.get(sp_answers(sp2, to_sp2.location, NameID(text="not-her", format=NAMEID_FORMAT_PERSISTENT)))
    assert page.headers.get("X-Broker-Reason") == "logout_partial"
    links = re.findall(r'<a[^>]*class="[^"]*button[^"]*"[^>]*href="([^"]+)"'
                       r'|<a[^>]*href="([^"]+)"[^>]*class="[^"]*button', page.get_data(as_text=True))
    urls = [unescape(a or b) for a, b in links]
    (url,) = [u for u in urls if "SAMLResponse=" in u]
    final = redirect_message(url, "SAMLResponse")
    assert status_codes(final.root) == (STATUS + "Success", STATUS + "PartialLogout")
    assert_valid("logout-response-to-sp-partial", final.xml)


def test_idp_initiated_logout_messages(app: Flask, browser: Browser, sp: DemoSp, sp2: DemoSp, idp: DemoIdp) -> None:
    karin_login(browser, sp, idp)
    sso_login(browser, sp2)
    other = open_browser(app, None)
    to_sp1 = hop(other.get(idp_logout_url(idp)), SP1_SLO, "SAMLRequest")
    assert_valid("logout-request-to-sp-idp-initiated", to_sp1.message.xml)
    to_sp2 = hop(other.get(sp_answers(sp, to_sp1.location)), SP2_SLO, "SAMLRequest")
    assert_valid("logout-request-to-sp2-idp-initiated", to_sp2.message.xml)
    to_idp = hop(other.get(sp_answers(sp2, to_sp2.location)), KOMMUN_C_SLO, "SAMLResponse")
    assert status_codes(to_idp.root) == (STATUS + "Success", None)
    assert_valid("logout-response-to-idp", to_idp.message.xml)


def test_logout_without_other_participants(browser: Browser, sp: DemoSp) -> None:
    """A logout where the broker answers the SP at once (no one else to ask)."""
    at_sp1 = sso_login(browser, sp)
    final = hop(browser.get(sp_logout_url(sp, at_sp1)), SP1_SLO, "SAMLResponse")
    assert_valid("logout-response-to-sp-direct", final.message.xml)


def _post_slo_only(metadata: bytes) -> bytes:
    root = etree.fromstring(metadata)
    for element in root.iter("{urn:oasis:names:tc:SAML:2.0:metadata}SingleLogoutService"):
        element.set("Binding", "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST")
    return bytes(etree.tostring(root))


def test_logout_messages_over_http_post(config_dir: Path, demo_material: Any, redis_url: str, redis_prefix: str,
                                        users: Path) -> None:
    """Participants whose SingleLogoutService is HTTP-POST only: the broker's LogoutRequest and LogoutResponse
    then carry an enveloped XML signature (outbound.MessageSender.encode, HTTP-POST branch)."""
    from broker.app import create_app
    from broker.session.store import RedisStore
    from tests.factories.saml import forms

    _add_sp(config_dir, "post-sp", "POST-tjänsten", _post_slo_only(sp_metadata(_sp_settings(demo_material, "post-sp"))))
    _add_sp(config_dir, "post-sp2", "POST-tjänsten 2",
            _post_slo_only(sp_metadata(_sp_settings(demo_material, "post-sp2"))))
    settings = load_settings(config_dir)
    app = create_app(settings, store=RedisStore(redis_url, prefix=redis_prefix), instance_id="t")
    one = _pysaml2_sp(app, settings, demo_material, "post-sp")
    two = _pysaml2_sp(app, settings, demo_material, "post-sp2")
    browser = open_browser(app, (users / "anna.pem").read_text())
    at_one = sso_login(browser, one)
    sso_login(browser, two)
    page = browser.get(sp_logout_url(one, at_one))
    assert page.status_code == 200, (page.status_code, page.headers.get("X-Broker-Reason"))
    (action, fields), = [(a, f) for a, f in forms(page) if "SAMLRequest" in f]
    assert action == BASE_URL + "/post-sp2/slo"
    request_xml = base64.b64decode(fields["SAMLRequest"])
    assert etree.fromstring(request_xml).find("{http://www.w3.org/2000/09/xmldsig#}Signature") is not None
    assert_valid("logout-request-to-sp-post", request_xml)
    # post-sp2 answers (its own Redirect LogoutResponse); the broker answers post-sp over HTTP-POST
    from saml2 import BINDING_HTTP_POST

    from tests.factories.authnrequests import RSA_SHA256

    request = two.client.parse_logout_request(fields["SAMLRequest"], BINDING_HTTP_POST)
    response = two.client.handle_logout_request(fields["SAMLRequest"], request.message.name_id,
                                                BINDING_HTTP_POST, sign=True, sign_alg=RSA_SHA256,
                                                relay_state=fields.get("RelayState"))
    body = response["data"]
    posted = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', body))
    final = browser.post(IDP_SLO_URL, posted)
    assert final.status_code == 200, (final.status_code, final.headers.get("X-Broker-Reason"))
    (action, fields), = [(a, f) for a, f in forms(final) if "SAMLResponse" in f]
    assert action == BASE_URL + "/post-sp/slo"
    assert_valid("logout-response-to-sp-post", base64.b64decode(fields["SAMLResponse"]))


# --- 5. metadata -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/saml/idp/metadata", "/saml/sp/metadata"])
def test_metadata(browser: Browser, path: str) -> None:
    response = browser.get(path)
    assert response.status_code == 200
    assert_valid("metadata-" + path.split("/")[2], response.get_data(), "metadata")


# --- 6. success Responses after a federated login and after SSO -----------------------------------------------


@pytest.mark.parametrize("sign_demo_response", [False, True], indirect=True,
                         ids=["assertion-signed", "response-signed"])
def test_federated_login_and_sso_responses(browser: Browser, sp: DemoSp, sp2: DemoSp, idp: DemoIdp,
                                           sign_demo_response: bool) -> None:
    browser.certificate_pem = None
    answer = federated_login(browser, sp, idp, KARIN)
    posted = posted_response(answer)
    assert status_codes(posted.root) == (STATUS + "Success", None)
    suffix = "signed" if sign_demo_response else "unsigned"
    assert_valid(f"federated-login-response-{suffix}", posted.xml)
    sp.accept(posted.fields["SAMLResponse"])
    # SSO from the federated session: the same SP again, and another SP
    again = posted_response(browser.get(sp.login_url()))
    assert_valid(f"sso-reuse-response-same-sp-{suffix}", again.xml)
    other = posted_response(browser.get(sp2.login_url()))
    assert_valid("sso-reuse-response-other-sp", other.xml)


def test_sso_reuse_after_certificate_login(browser: Browser, sp: DemoSp, sp2: DemoSp) -> None:
    sso_login(browser, sp)
    browser.certificate_pem = None
    posted = posted_response(browser.get(sp2.login_url()))
    assert_valid("sso-reuse-response-after-certificate", posted.xml)


def test_federated_response_with_proxy_restriction(browser: Browser, craft: AuthnRequests, idp: DemoIdp,
                                                   demo_material: Any) -> None:
    from tests.factories.authnrequests import SP_ENTITY_ID

    posted = posted_response(federated(browser, craft, idp, demo_material, proxy_restriction("2", SP_ENTITY_ID)))
    assert posted.root.find(".//{urn:oasis:names:tc:SAML:2.0:assertion}ProxyRestriction") is not None
    assert_valid("federated-response-proxy-restriction", posted.xml)


# --- the validator itself --------------------------------------------------------------------------------------


def test_the_validator_sees_a_violation() -> None:
    bad = (b'<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="_1" Version="2.0" '
           b'IssueInstant="2024-01-01T00:00:00Z"><samlp:Status/></samlp:Response>')
    errors = schema_errors(bad)
    assert errors
    assert "StatusCode" in errors[0]
    md_bad = (b'<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="x">'
              b'<md:Extensions><mdattr:EntityAttributes xmlns:mdattr="urn:oasis:names:tc:SAML:metadata:attribute">'
              b'<bogus/></mdattr:EntityAttributes></md:Extensions></md:EntityDescriptor>')
    assert any("bogus" in e for e in schema_errors(md_bad, "metadata"))
