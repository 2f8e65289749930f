"""Encrypted assertions toward an SP configured with ``encrypt_assertions`` (SAML Core §2.3.4, §6), checked by the
real pysaml2 SP, which decrypts with its own key through the ``xmlsec1`` program and then checks the signature of
what it decrypted.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from flask import Flask

from broker.config.loader import Settings, load_settings
from broker.demo.certificates import CertificateAuthority, write_key, write_pem
from broker.demo.sp import DemoSp, DemoSpSettings, sp_metadata
from tests.factories.authnrequests import (
    AuthnRequests,
    login,
    posted_response,
    sp_accepts,
    sp_verifies_response_signature,
)
from tests.factories.saml import BASE_URL, Browser, xmlsec_binary
from tests.factories.sp_files import register_sp
from tests.flows.conftest import audit_lines

IDP_ENTITY_ID = BASE_URL + "/saml/idp/metadata"
SEALED_SP_BASE = "https://sealed-sp.example/sp"
SEALED_SP_ENTITY_ID = SEALED_SP_BASE + "/metadata"
NS = {
    "saml": "urn:oasis:names:tc:SAML:2.0:assertion",
    "samlp": "urn:oasis:names:tc:SAML:2.0:protocol",
    "xenc": "http://www.w3.org/2001/04/xmlenc#",
    "ds": "http://www.w3.org/2000/09/xmldsig#",
}
AES256_GCM = "http://www.w3.org/2009/xmlenc11#aes256-gcm"
RSA_OAEP_MGF1P = "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p"
LOA2 = "http://id.elegnamnden.se/loa/1.0/loa2"


@pytest.fixture(scope="module")
def sealed_sp_settings(tmp_path_factory: pytest.TempPathFactory) -> DemoSpSettings:
    """A pysaml2 SP with a signing key and a separate encryption key, both in its metadata."""
    folder = tmp_path_factory.mktemp("sealed-sp")
    now = dt.datetime.now(dt.UTC)
    signing = CertificateAuthority.root("Sealed SP signing", now, key="rsa2048")
    encryption = CertificateAuthority.root("Sealed SP encryption", now, key="rsa2048")
    return DemoSpSettings(
        base_url=SEALED_SP_BASE, key_file=write_key(folder / "sp.key", signing.key),
        cert_file=write_pem(folder / "sp.crt", signing.certificate), xmlsec_binary=xmlsec_binary(),
        encryption=(write_key(folder / "enc.key", encryption.key),
                    write_pem(folder / "enc.crt", encryption.certificate)))


@pytest.fixture(params=[False, True], ids=["assertion-signed", "response-signed-too"])
def sign_response(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture
def settings(config_dir: Path, sealed_sp_settings: DemoSpSettings, sign_response: bool) -> Settings:
    register_sp(config_dir, "sealed-sp", entity_id=SEALED_SP_ENTITY_ID, name="Förseglade tjänsten",
                metadata=sp_metadata(sealed_sp_settings),
                release=["employeeHsaId", "personalIdentityNumber", "givenName", "sn"],
                sign_response=sign_response, encrypt_assertions=True)
    return load_settings(config_dir)


@pytest.fixture
def sealed_sp(app: Flask, sealed_sp_settings: DemoSpSettings) -> DemoSp:
    return DemoSp(sealed_sp_settings, app.extensions["broker"].metadata.document(), IDP_ENTITY_ID)


def test_the_sp_decrypts_a_signed_assertion_no_reader_on_the_way_can_read(
        browser: Browser, sealed_sp: DemoSp, sign_response: bool, users: Path) -> None:
    browser.certificate_pem = (users / "bo.pem").read_text()   # bo: a personnummer, LoA 2
    crafted, posted = login(browser, AuthnRequests(sealed_sp, sealed_sp.settings.key_file))

    assert posted.action == SEALED_SP_BASE + "/acs"
    assert posted.root.findall("saml:Assertion", NS) == []
    (encrypted,) = posted.root.findall("saml:EncryptedAssertion", NS)
    data = encrypted.find("xenc:EncryptedData", NS)
    assert data is not None
    assert data.get("Type") == "http://www.w3.org/2001/04/xmlenc#Element"
    assert data.find("xenc:EncryptionMethod", NS).get("Algorithm") == AES256_GCM  # type: ignore[union-attr]
    (key,) = data.findall("ds:KeyInfo/xenc:EncryptedKey", NS)
    assert key.get("Recipient") == SEALED_SP_ENTITY_ID
    assert key.find("xenc:EncryptionMethod", NS).get("Algorithm") == RSA_OAEP_MGF1P  # type: ignore[union-attr]
    # nothing of the user crosses the browser readable: not the personnummer, the attributes, nor the NameID
    for secret in (b"191212121212", b"urn:oid:1.2.752.29.4.13", b"AttributeValue", b"NameID"):
        assert secret not in posted.xml, secret
    assert (posted.root.find("ds:Signature", NS) is not None) == sign_response
    if sign_response:
        sp_verifies_response_signature(sealed_sp, posted.xml)

    accepted = sp_accepts(sealed_sp, posted.fields["SAMLResponse"], crafted.request_id)
    assertion = accepted.assertion
    assert assertion.signature is not None   # what the SP decrypted carries the broker's signature
    released = {a.name: [v.text for v in a.attribute_value]
                for statement in assertion.attribute_statement for a in statement.attribute}
    assert released["urn:oid:1.2.752.29.4.13"] == ["191212121212"]
    assert released["urn:oid:2.5.4.42"] == ["Bo"]
    assert assertion.authn_statement[0].authn_context.authn_context_class_ref.text == LOA2
    assert accepted.name_id.format == "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
    assert assertion.conditions.audience_restriction[0].audience[0].text == SEALED_SP_ENTITY_ID


def test_every_assertion_gets_its_own_key(browser: Browser, sealed_sp: DemoSp) -> None:
    craft = AuthnRequests(sealed_sp, sealed_sp.settings.key_file)
    values: set[str | None] = set()
    for _ in range(2):
        _, posted = login(browser, craft)   # the second answered from the SSO session
        values.update(v.text for v in posted.root.iterfind(".//xenc:CipherValue", NS))
    assert len(values) == 4   # two EncryptedKeys, two EncryptedData: none repeated


def test_the_audit_names_the_encryption(browser: Browser, sealed_sp: DemoSp, config_dir: Path) -> None:
    login(browser, AuthnRequests(sealed_sp, sealed_sp.settings.key_file))
    (issued,) = [r for r in audit_lines(config_dir) if r["event"] == "assertion_issued"]
    assert issued["sp"] == SEALED_SP_ENTITY_ID
    assert issued["data"]["encryption"] == AES256_GCM  # type: ignore[index]


def test_an_sp_without_encrypt_assertions_still_gets_a_readable_assertion(
        browser: Browser, sp: DemoSp, config_dir: Path) -> None:
    posted = posted_response(browser.get(sp.login_url()))
    assert len(posted.root.findall("saml:Assertion", NS)) == 1
    assert posted.root.findall("saml:EncryptedAssertion", NS) == []
    (issued,) = [r for r in audit_lines(config_dir) if r["event"] == "assertion_issued"]
    assert "encryption" not in issued["data"]  # type: ignore[operator]
