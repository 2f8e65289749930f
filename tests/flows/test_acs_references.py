"""An EncryptedAssertion must never make the broker read from elsewhere (XML Encryption §3.3.1 CipherReference,
XML-DSig §4.4.3 RetrievalMethod): anyone can post to the ACS, and decryption comes before any signature check.

Each case starts a real login at Kommun C (the attacker's own: a pending request to answer), then posts an
unsigned Response whose EncryptedKey is encrypted to the broker's own encryption certificate (public, in its SP
metadata), the ciphertext or key placed behind a ``file://`` URI whose content would decrypt to a marker. The
broker refuses the message for the reference, without reading the file (the marker never appears in the audit
trail) and at once.
"""

from __future__ import annotations

import base64
import os
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from broker.demo.idp import DemoIdp
from broker.demo.sp import DemoSp
from tests.factories.idp import ACS_URL, IDP_ENTITY_ID, to_idp
from tests.factories.saml import Browser
from tests.flows.conftest import audit_lines

MARKER = b"<ReadFromLocalDisk/>"
XENC = "http://www.w3.org/2001/04/xmlenc#"


def aes_cbc(key: bytes, plain: bytes) -> bytes:
    iv = os.urandom(16)
    pad = 16 - len(plain) % 16
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return iv + encryptor.update(plain + bytes([pad]) * pad) + encryptor.finalize()


def wrapped_key(config_dir: Path, key: bytes) -> str:
    certificate = x509.load_pem_x509_certificate((config_dir / "keys" / "sp-encryption.crt").read_bytes())
    oaep = padding.OAEP(padding.MGF1(hashes.SHA1()), hashes.SHA1(), None)
    return base64.b64encode(certificate.public_key().encrypt(key, oaep)).decode()  # type: ignore[union-attr]


def response(request_id: str, key_info: str, cipher_data: str) -> str:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    xml = f"""<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol"
 xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_r1" Version="2.0" IssueInstant="{now}"
 Destination="{ACS_URL}" InResponseTo="{request_id}"><saml:Issuer>{IDP_ENTITY_ID}</saml:Issuer>
<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>
<saml:EncryptedAssertion><xenc:EncryptedData xmlns:xenc="{XENC}" Type="{XENC}Element">
<xenc:EncryptionMethod Algorithm="{XENC}aes128-cbc"/>
<ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#">{key_info}</ds:KeyInfo>
<xenc:CipherData>{cipher_data}</xenc:CipherData></xenc:EncryptedData></saml:EncryptedAssertion></samlp:Response>"""
    return base64.b64encode(xml.encode()).decode()


def encrypted_key(cipher_data: str, key_info: str = "") -> str:
    return (f'<xenc:EncryptedKey xmlns:xenc="{XENC}"><xenc:EncryptionMethod Algorithm="{XENC}rsa-oaep-mgf1p"/>'
            f"{key_info}<xenc:CipherData>{cipher_data}</xenc:CipherData></xenc:EncryptedKey>")


def cipher_value(data: bytes) -> str:
    return f"<xenc:CipherValue>{base64.b64encode(data).decode()}</xenc:CipherValue>"


def cipher_data_elsewhere(config_dir: Path, elsewhere: Path) -> tuple[str, str]:
    key = os.urandom(16)
    elsewhere.write_bytes(aes_cbc(key, MARKER))
    return (encrypted_key(cipher_value(base64.b64decode(wrapped_key(config_dir, key)))),
            f'<xenc:CipherReference URI="file://{elsewhere}"/>')


def key_elsewhere(config_dir: Path, elsewhere: Path) -> tuple[str, str]:
    key = os.urandom(16)
    elsewhere.write_bytes(encrypted_key(cipher_value(base64.b64decode(wrapped_key(config_dir, key)))).encode())
    return (f'<ds:RetrievalMethod URI="file://{elsewhere}" Type="{XENC}EncryptedKey"/>',
            cipher_value(aes_cbc(key, MARKER)))


def key_cipher_elsewhere(config_dir: Path, elsewhere: Path) -> tuple[str, str]:
    key = os.urandom(16)
    elsewhere.write_bytes(base64.b64decode(wrapped_key(config_dir, key)))
    return (encrypted_key(f'<xenc:CipherReference URI="file://{elsewhere}"/>'), cipher_value(aes_cbc(key, MARKER)))


@pytest.mark.parametrize(("make", "detail"), [
    pytest.param(cipher_data_elsewhere, "a CipherReference", id="ciphertext-behind-a-file-uri"),
    pytest.param(key_elsewhere, "a RetrievalMethod that is no same-document reference", id="key-behind-a-file-uri"),
    pytest.param(key_cipher_elsewhere, "a CipherReference", id="wrapped-key-behind-a-file-uri"),
])
def test_an_encrypted_assertion_pointing_elsewhere_is_refused_unread(
        browser: Browser, sp: DemoSp, idp: DemoIdp, config_dir: Path, tmp_path: Path, make: Any,
        detail: str) -> None:
    browser.certificate_pem = None
    at = to_idp(browser, idp, browser.get(sp.login_url()))
    key_info, cipher_data = make(config_dir, tmp_path / "elsewhere.bin")
    started = time.monotonic()
    page = browser.post(ACS_URL, {"SAMLResponse": response(at.request.message.id, key_info, cipher_data),
                                  "RelayState": at.relay_state or ""})
    assert time.monotonic() - started < 2
    assert page.status_code < 500
    assert page.headers.get("X-Broker-Reason") == "upstream_decryption_failed"
    (result,) = [r for r in audit_lines(config_dir) if r["event"] == "upstream_authn_result"]
    assert detail in str(result["detail"])
    assert "ReadFromLocalDisk" not in str(audit_lines(config_dir))
