"""What the broker's Response says (SAML Core §2.3.3, §2.7.2, §3.3.3; Profiles §4.1.4.2), read off the
decoded SAMLResponse form field with lxml, and checked by the real pysaml2 SP where it has a say.

Covers the signature algorithms, the bearer confirmation, audience and validity window, the
Swedish eID framework's LoA URIs and attribute names (REFERENCE.md), the SP's release list, the
RelayState, and the NameID formats (persistent: a pseudonym per user and SP; transient: new each time).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from flask import Flask
from lxml import etree

from broker.config.loader import Settings, load_settings
from broker.demo.certificates import CertificateAuthority, write_key, write_pem
from broker.demo.sp import DemoSp, DemoSpSettings, sp_metadata
from broker.saml.xmltime import parse_instant
from tests.factories.authnrequests import (
    ACS_URL,
    DIGEST_SHA256,
    NS,
    RSA_SHA256,
    SP_ENTITY_ID,
    SSO_URL,
    AuthnRequests,
    PostedResponse,
    all_algorithms,
    login,
    open_browser,
    post_fields,
    posted_response,
    signature_algorithms,
    sp_accepts,
    sp_verifies_response_signature,
)
from tests.factories.saml import BASE_URL, Browser, xmlsec_binary

IDP_ENTITY_ID = BASE_URL + "/saml/idp/metadata"
LOA2 = "http://id.elegnamnden.se/loa/1.0/loa2"
LOA3 = "http://id.elegnamnden.se/loa/1.0/loa3"
URI = "urn:oasis:names:tc:SAML:2.0:attrname-format:uri"
PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
TRANSIENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"

EMPLOYEE_HSA_ID = "urn:oid:1.2.752.29.6.2.1"
PERSONAL_IDENTITY_NUMBER = "urn:oid:1.2.752.29.4.13"
GIVEN_NAME = "urn:oid:2.5.4.42"
ORG_AFFILIATION = "urn:oid:1.2.752.201.3.1"
# REFERENCE.md, "SAML attribute names": every Name the broker may emit
REFERENCE_NAMES = {
    PERSONAL_IDENTITY_NUMBER, EMPLOYEE_HSA_ID, GIVEN_NAME, "urn:oid:2.5.4.4", "urn:oid:2.16.840.1.113730.3.1.241",
    "urn:oid:2.5.4.10", "urn:oid:2.5.4.11", "urn:oid:2.5.4.97", ORG_AFFILIATION, "urn:oid:1.2.752.201.3.2",
}

SECOND_SP_BASE = BASE_URL + "/second-sp"
SECOND_SP_ENTITY_ID = SECOND_SP_BASE + "/metadata"


@pytest.fixture
def craft(sp: DemoSp, demo_material) -> AuthnRequests:  # type: ignore[no-untyped-def]
    return AuthnRequests(sp, demo_material.root / "sp" / "sp.key")


@pytest.fixture
def new_browser(app: Flask) -> Callable[[str | None], Browser]:
    """Another browser (no cookies) on the same broker."""
    return lambda certificate_pem: open_browser(app, certificate_pem)


def the(root: etree._Element, path: str) -> etree._Element:
    found = root.findall(path, NS)
    assert len(found) == 1, f"expected one {path}, found {len(found)}"
    return found[0]


def attributes(posted: PostedResponse) -> dict[str, tuple[str | None, list[str]]]:
    """Attribute Name -> (NameFormat, values)."""
    out = {}
    for a in posted.root.findall("saml:Assertion/saml:AttributeStatement/saml:Attribute", NS):
        out[str(a.get("Name"))] = (a.get("NameFormat"), [v.text or "" for v in a.findall("saml:AttributeValue", NS)])
    return out


def name_id(posted: PostedResponse) -> etree._Element:
    return the(posted.root, "saml:Assertion/saml:Subject/saml:NameID")


# --- signatures ------------------------------------------------------------------------------


def test_assertion_is_signed_with_rsa_sha256_and_sha256_digest(browser: Browser, sp: DemoSp,
                                                               craft: AuthnRequests) -> None:
    crafted, posted = login(browser, craft)
    assertion = the(posted.root, "saml:Assertion")
    algorithms = signature_algorithms(assertion)
    assert algorithms == {
        "c14n": "http://www.w3.org/2001/10/xml-exc-c14n#",
        "signature": "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
        "digest": "http://www.w3.org/2001/04/xmlenc#sha256",
        "reference": "#" + str(assertion.get("ID")),
    }
    every = all_algorithms(posted.root)
    assert every, "no signature algorithms found"
    assert not [a for a in every if "sha1" in a.lower()]
    # sign_response: false in demo-sp.yaml: only the Assertion is signed
    assert posted.root.find("ds:Signature", NS) is None
    sp_accepts(sp, posted.fields["SAMLResponse"], crafted.request_id)


def test_key_info_carries_exactly_the_signing_certificate(settings: Settings, browser: Browser,
                                                           craft: AuthnRequests) -> None:
    """KeyInfo/X509Data holds the broker's signing certificate, once (SAML Metadata §2.4.1.1 names the same
    certificate); the SP verifies with the key from metadata, never from KeyInfo."""
    import base64

    from cryptography.hazmat.primitives import serialization

    _, posted = login(browser, craft)
    certificates = the(posted.root, "saml:Assertion").findall("ds:Signature/ds:KeyInfo/ds:X509Data/ds:X509Certificate",
                                                               NS)
    assert len(certificates) == 1
    der = settings.broker.idp.signing.certificate.certificate.public_bytes(serialization.Encoding.DER)
    assert base64.b64decode(certificates[0].text or "") == der


def test_the_xs_namespace_of_attribute_types_is_signed(browser: Browser, sp: DemoSp, craft: AuthnRequests) -> None:
    """xs appears only inside xsi:type values, which exclusive c14n does not count as use: the signature's
    exc-c14n transform names it (InclusiveNamespaces PrefixList="xs"), so re-binding it breaks the signature."""
    import base64

    crafted, posted = login(browser, craft)
    transforms = the(posted.root, "saml:Assertion").findall("ds:Signature/ds:SignedInfo/ds:Reference/"
                                                              "ds:Transforms/ds:Transform", NS)
    prefixes = [t[0].get("PrefixList") for t in transforms if len(t)]
    assert prefixes == ["xs"]
    assert b'xmlns:xs="http://www.w3.org/2001/XMLSchema"' in posted.xml
    tampered = posted.xml.replace(b'xmlns:xs="http://www.w3.org/2001/XMLSchema"', b'xmlns:xs="urn:elsewhere"')
    with pytest.raises(Exception, match=r"(?i)signature"):
        sp_accepts(sp, base64.b64encode(tampered).decode(), crafted.request_id)


# --- to whom, for what, until when ---------------------------------------------------------


def test_response_is_addressed_to_the_acs_of_the_requesting_sp(browser: Browser, craft: AuthnRequests) -> None:
    crafted, posted = login(browser, craft)
    root = posted.root
    assert posted.action == ACS_URL
    assert (root.get("Destination"), root.get("InResponseTo")) == (ACS_URL, crafted.request_id)
    assert posted.status == ("urn:oasis:names:tc:SAML:2.0:status:Success", None)
    for issuer in (the(root, "saml:Issuer"), the(root, "saml:Assertion/saml:Issuer")):
        assert issuer.text == IDP_ENTITY_ID
    assert the(root, "saml:Assertion/saml:Conditions/saml:AudienceRestriction/saml:Audience").text == SP_ENTITY_ID
    confirmation = the(root, "saml:Assertion/saml:Subject/saml:SubjectConfirmation")
    assert confirmation.get("Method") == "urn:oasis:names:tc:SAML:2.0:cm:bearer"
    data = the(confirmation, "saml:SubjectConfirmationData")
    assert (data.get("Recipient"), data.get("InResponseTo")) == (ACS_URL, crafted.request_id)


def test_validity_window_is_present_and_consistent(browser: Browser, craft: AuthnRequests,
                                                  settings: Settings) -> None:
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    _, posted = login(browser, craft)
    after = dt.datetime.now(dt.UTC)
    idp = settings.broker.idp
    assertion = the(posted.root, "saml:Assertion")
    issued = parse_instant(assertion.get("IssueInstant") or "")
    conditions = the(assertion, "saml:Conditions")
    not_before = parse_instant(conditions.get("NotBefore") or "")
    not_on_or_after = parse_instant(conditions.get("NotOnOrAfter") or "")
    confirmation = the(assertion, "saml:Subject/saml:SubjectConfirmation/saml:SubjectConfirmationData")
    assert before <= issued <= after
    assert not_before == issued - idp.clock_skew.timedelta
    assert not_on_or_after == issued + idp.assertion_lifetime.timedelta
    assert parse_instant(confirmation.get("NotOnOrAfter") or "") == not_on_or_after
    assert not_before < issued < not_on_or_after
    assert parse_instant(posted.root.get("IssueInstant") or "") == issued


def test_authn_statement_carries_a_session_index_and_the_session_end(browser: Browser, craft: AuthnRequests,
                                                                     settings: Settings) -> None:
    _, posted = login(browser, craft)
    statement = the(posted.root, "saml:Assertion/saml:AuthnStatement")
    assert len(statement.get("SessionIndex") or "") >= 16
    authn_instant = parse_instant(statement.get("AuthnInstant") or "")
    session_end = parse_instant(statement.get("SessionNotOnOrAfter") or "")
    assert session_end - authn_instant == settings.broker.session.absolute_timeout.timedelta


# --- who, and how sure ---------------------------------------------------------------------


def test_anna_gets_loa3_and_her_hsa_id_under_uri_names(browser: Browser, craft: AuthnRequests) -> None:
    _, posted = login(browser, craft)
    class_ref = the(posted.root, "saml:Assertion/saml:AuthnStatement/saml:AuthnContext/saml:AuthnContextClassRef")
    assert class_ref.text == LOA3
    released = attributes(posted)
    assert released[EMPLOYEE_HSA_ID] == (URI, ["SE2120001009-anna"])
    assert released[ORG_AFFILIATION] == (URI, ["SE2120001009-anna@2120001009"])
    assert released[GIVEN_NAME] == (URI, ["Anna"])
    assert PERSONAL_IDENTITY_NUMBER not in released
    assert {fmt for fmt, _ in released.values()} == {URI}
    assert set(released) <= REFERENCE_NAMES


def test_bo_gets_loa2_and_his_personnummer_under_uri_names(browser: Browser, craft: AuthnRequests,
                                                          users: Path) -> None:
    browser.certificate_pem = (users / "bo.pem").read_text()
    _, posted = login(browser, craft)
    class_ref = the(posted.root, "saml:Assertion/saml:AuthnStatement/saml:AuthnContext/saml:AuthnContextClassRef")
    assert class_ref.text == LOA2
    released = attributes(posted)
    assert released[PERSONAL_IDENTITY_NUMBER] == (URI, ["191212121212"])
    assert EMPLOYEE_HSA_ID not in released
    assert ORG_AFFILIATION not in released  # uid@orgnr would carry the personnummer
    assert {fmt for fmt, _ in released.values()} == {URI}
    assert set(released) <= REFERENCE_NAMES


class TestReleaseListSubset:
    """An SP whose release list is [employeeHsaId, givenName] gets nothing else."""

    @pytest.fixture
    def settings(self, config_dir: Path) -> Settings:
        path = config_dir / "service-providers" / "demo-sp.yaml"
        data = yaml.safe_load(path.read_text())
        data["release"] = ["employeeHsaId", "givenName"]
        path.write_text(yaml.safe_dump(data, allow_unicode=True))
        return load_settings(config_dir)

    def test_anna_gets_only_the_listed_attributes(self, browser: Browser, craft: AuthnRequests) -> None:
        _, posted = login(browser, craft)
        assert attributes(posted) == {EMPLOYEE_HSA_ID: (URI, ["SE2120001009-anna"]), GIVEN_NAME: (URI, ["Anna"])}

    def test_bo_personnummer_is_not_released(self, browser: Browser, craft: AuthnRequests, users: Path) -> None:
        browser.certificate_pem = (users / "bo.pem").read_text()
        _, posted = login(browser, craft)
        assert attributes(posted) == {GIVEN_NAME: (URI, ["Bo"])}
        assert b"191212121212" not in posted.xml


class TestSignedResponse:
    """sign_response: true signs the Response as well as the Assertion."""

    @pytest.fixture
    def settings(self, config_dir: Path) -> Settings:
        path = config_dir / "service-providers" / "demo-sp.yaml"
        data = yaml.safe_load(path.read_text())
        data["sign_response"] = True
        path.write_text(yaml.safe_dump(data, allow_unicode=True))
        return load_settings(config_dir)

    def test_response_and_assertion_are_both_signed(self, browser: Browser, sp: DemoSp, craft: AuthnRequests) -> None:
        crafted, posted = login(browser, craft)
        for element in (posted.root, the(posted.root, "saml:Assertion")):
            algorithms = signature_algorithms(element)
            assert (algorithms["signature"], algorithms["digest"]) == (RSA_SHA256, DIGEST_SHA256)
        sp_verifies_response_signature(sp, posted.xml)
        sp_accepts(sp, posted.fields["SAMLResponse"], crafted.request_id)


class TestSigningBackends:
    """idp.signing.backend: libxmlsec1 (python-xmlsec) and xmlsec1 (the program pysaml2 starts; the baseline of
    docs/performance.md) sign the same Responses as the default; the SP cannot tell them apart."""

    @pytest.fixture(params=["libxmlsec1", "xmlsec1"])
    def backend(self, request: pytest.FixtureRequest) -> str:
        return str(request.param)

    @pytest.fixture(params=[False, True], ids=["assertion-signed", "response-and-assertion-signed"])
    def settings(self, request: pytest.FixtureRequest, config_dir: Path, backend: str) -> Settings:
        broker_yaml = config_dir / "broker.yaml"
        data = yaml.safe_load(broker_yaml.read_text())
        data["idp"]["signing"]["backend"] = backend
        broker_yaml.write_text(yaml.safe_dump(data, allow_unicode=True))
        path = config_dir / "service-providers" / "demo-sp.yaml"
        data = yaml.safe_load(path.read_text())
        data["sign_response"] = request.param
        path.write_text(yaml.safe_dump(data, allow_unicode=True))
        return load_settings(config_dir)

    def test_signed_by_the_backend_and_accepted(self, settings: Settings, backend: str, browser: Browser,
                                                sp: DemoSp, craft: AuthnRequests) -> None:
        assert settings.broker.idp.signing.backend == backend
        crafted, posted = login(browser, craft)
        signed = [the(posted.root, "saml:Assertion")]
        if posted.root.find("ds:Signature", NS) is not None:
            signed.append(posted.root)
            sp_verifies_response_signature(sp, posted.xml)
        assert len(signed) == (2 if settings.service_providers["demo-sp"].config.sign_response else 1)
        for element in signed:
            algorithms = signature_algorithms(element)
            assert (algorithms["signature"], algorithms["digest"]) == (RSA_SHA256, DIGEST_SHA256)
            assert algorithms["reference"] == "#" + str(element.get("ID"))
        sp_accepts(sp, posted.fields["SAMLResponse"], crafted.request_id)


# --- RelayState (Bindings §3.4.3, §3.5.3) ---------------------------------------------------

RELAY_STATE = "https://sp.example/x?a=1&b=två ord#frag+%20"


def test_relay_state_comes_back_unchanged_over_redirect(browser: Browser, craft: AuthnRequests) -> None:
    _, posted = login(browser, craft, relay_state=RELAY_STATE)
    assert posted.fields["RelayState"] == RELAY_STATE


def test_relay_state_comes_back_unchanged_over_post(browser: Browser, craft: AuthnRequests) -> None:
    crafted = craft.build(sign=True)
    posted = posted_response(browser.post(SSO_URL, post_fields(crafted.xml, RELAY_STATE)))
    assert posted.fields["RelayState"] == RELAY_STATE


def test_no_relay_state_in_no_relay_state_out(browser: Browser, craft: AuthnRequests) -> None:
    _, posted = login(browser, craft, relay_state=None)
    assert "RelayState" not in posted.fields


# --- NameID (SAML Core §8.3.7 persistent, §8.3.8 transient) -----------------------------------


def test_persistent_nameid_is_a_pseudonym_qualified_by_both_entities(browser: Browser, craft: AuthnRequests) -> None:
    _, posted = login(browser, craft)
    nid = name_id(posted)
    assert nid.get("Format") == PERSISTENT
    assert (nid.get("NameQualifier"), nid.get("SPNameQualifier")) == (IDP_ENTITY_ID, SP_ENTITY_ID)
    assert nid.text
    assert "anna" not in nid.text.lower()
    assert "2120001009" not in nid.text


def test_persistent_nameid_is_stable_across_logins(craft: AuthnRequests, new_browser: Callable[[str | None], Browser],
                                                   users: Path) -> None:
    anna = (users / "anna.pem").read_text()
    first = name_id(login(new_browser(anna), craft)[1]).text
    second = name_id(login(new_browser(anna), craft)[1]).text  # another browser: a second, separate session
    assert first == second


def test_persistent_nameid_differs_between_users(craft: AuthnRequests, new_browser: Callable[[str | None], Browser],
                                                 users: Path) -> None:
    anna = name_id(login(new_browser((users / "anna.pem").read_text()), craft)[1]).text
    bo = name_id(login(new_browser((users / "bo.pem").read_text()), craft)[1]).text
    assert anna != bo


def test_transient_nameid_differs_each_time(browser: Browser, sp: DemoSp, craft: AuthnRequests) -> None:
    seen = []
    for _ in range(3):
        crafted, posted = login(browser, craft, nameid_format=TRANSIENT)
        result = sp_accepts(sp, posted.fields["SAMLResponse"], crafted.request_id)
        assert result.name_id.format == TRANSIENT
        seen.append(result.name_id.text)
    assert len(set(seen)) == 3


@pytest.fixture(scope="module")
def second_sp_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[DemoSpSettings, bytes]:
    """Key, certificate and metadata of a second SP, as its vendor would deliver them."""
    folder = tmp_path_factory.mktemp("second-sp")
    ca = CertificateAuthority.root("Second SP signing", dt.datetime.now(dt.UTC), key="rsa2048")
    settings = DemoSpSettings(base_url=SECOND_SP_BASE, key_file=write_key(folder / "sp.key", ca.key),
                              cert_file=write_pem(folder / "sp.crt", ca.certificate),
                              xmlsec_binary=xmlsec_binary())
    return settings, sp_metadata(settings)


class TestTwoServiceProviders:
    @pytest.fixture
    def settings(self, config_dir: Path, second_sp_files: tuple[DemoSpSettings, bytes]) -> Settings:
        _, metadata = second_sp_files
        (config_dir / "metadata" / "second-sp.xml").write_bytes(metadata)
        (config_dir / "service-providers" / "second-sp.yaml").write_text(yaml.safe_dump({
            "entity_id": SECOND_SP_ENTITY_ID,
            "name": {"sv": "Andra tjänsten", "en": "The second service"},
            "metadata": "metadata/second-sp.xml",
            "municipalities": ["kommun-a", "kommun-b"],
            "release": ["employeeHsaId"],
            "require_signed_requests": True,
        }, allow_unicode=True))
        return load_settings(config_dir)

    @pytest.fixture
    def second_sp(self, app: Flask, second_sp_files: tuple[DemoSpSettings, bytes]) -> DemoSp:
        settings, _ = second_sp_files
        return DemoSp(settings, app.extensions["broker"].metadata.document(), IDP_ENTITY_ID)

    def test_persistent_nameid_differs_between_sps(self, browser: Browser, sp: DemoSp, craft: AuthnRequests,
                                                   second_sp: DemoSp) -> None:
        crafted, posted = login(browser, craft)
        at_first = sp_accepts(sp, posted.fields["SAMLResponse"], crafted.request_id)

        other = AuthnRequests(second_sp, second_sp.settings.key_file)
        crafted, posted = login(browser, other)  # same browser: single sign-on at the second SP
        assert posted.action == SECOND_SP_BASE + "/acs"
        assert the(posted.root, "saml:Assertion/saml:Conditions/saml:AudienceRestriction/saml:Audience").text == \
            SECOND_SP_ENTITY_ID
        at_second = sp_accepts(second_sp, posted.fields["SAMLResponse"], crafted.request_id)

        assert at_first.name_id.format == at_second.name_id.format == PERSISTENT
        assert at_first.name_id.text != at_second.name_id.text
        assert name_id(posted).get("SPNameQualifier") == SECOND_SP_ENTITY_ID
        assert set(attributes(posted)) == {EMPLOYEE_HSA_ID}
