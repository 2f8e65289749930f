"""Regenerate the negative corpus of upstream Responses: ``.venv/bin/python -m tests.corpus.upstream.generate``.

Every file is a Response from the corpus IdP (``IDP_ENTITY_ID``, key and certificate in ``keys/``) to the
broker's SP (``SP_ENTITY_ID``, ``ACS_URL``) answering the fixed request ``REQUEST_ID``, issued at the fixed
``ISSUE_INSTANT``; the tests judge them at ``NOW`` (one minute later) with ``SKEW``. A baseline Response with
a signed Assertion (RSA-SHA256, SHA-256 digest, exclusive c14n, enveloped; python-xmlsec) is built first,
then each case changes it, re-signing where the attack needs a valid signature. ``cases.json`` maps every file
to the reason the broker must give (null: accepted) and a line about the case.

Keys are made once (RSA-2048, ``cryptography``) and reused on regeneration, so the signed files come out
byte for byte the same; ``--new-keys`` replaces them (and every file changes). The encrypted cases differ on
each run (a fresh session key and IV), as real encryption does.

The functions are also used by the flow tests to change and re-sign the demo IdP's real Responses.
"""

from __future__ import annotations

import argparse
import base64
import copy
import datetime as dt
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from lxml import etree

HERE = Path(__file__).resolve().parent
KEYS = HERE / "keys"
CASES = HERE / "cases.json"

IDP_ENTITY_ID = "https://idp.corpus.example/metadata"
IDP_SSO_URL = "https://idp.corpus.example/sso"
SP_ENTITY_ID = "https://localhost:8443/saml/sp/metadata"
ACS_URL = "https://localhost:8443/saml/sp/acs"
REQUEST_ID = "_corpus-request-7f3c1e2a9b"
RESPONSE_ID = "_corpus-response-0001"
ASSERTION_ID = "_corpus-assertion-0001"
EVIL_ASSERTION_ID = "_corpus-evil-assertion"
SESSION_INDEX = "_corpus-session-0001"

ISSUE_INSTANT = dt.datetime(2026, 1, 15, 9, 0, 0, tzinfo=dt.UTC)
NOW = ISSUE_INSTANT + dt.timedelta(minutes=1)           # when the tests judge the files
SKEW = dt.timedelta(seconds=60)                           # kommun-c's clock_skew
LIFETIME = dt.timedelta(minutes=5)
MAX_BYTES = 262144                                        # broker.sp.max_message_bytes (config/example)
FLOW_TESTS = "tests/flows/test_upstream_attacks.py"        # where the cases only the flow can judge are posted

NAME_ID = "k7Qe2corpusKarinPersistent01"
EVIL_NAME_ID = "admin"
HSA_ID = "SE2120003005-K001"
EVIL_HSA_ID = "SE2120003005-ADMIN"
CLASS_REF = "urn:oasis:names:tc:SAML:2.0:ac:classes:X509"
HSA_ATTRIBUTE = "http://sambi.se/attributes/1/employeeHsaId"
GIVEN_NAME = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname"
SURNAME = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname"
ATTRIBUTES: dict[str, tuple[str, ...]] = {HSA_ATTRIBUTE: (HSA_ID,), GIVEN_NAME: ("Karin",), SURNAME: ("Kommunsson",)}

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
DS = "http://www.w3.org/2000/09/xmldsig#"
XENC = "http://www.w3.org/2001/04/xmlenc#"
NS = {"samlp": SAMLP, "saml": SAML, "ds": DS, "xenc": XENC}

# comments and whitespace exactly as written: the corpus must keep what the cases put there
_RAW = etree.XMLParser(remove_comments=False, resolve_entities=False, no_network=True, load_dtd=False)


def instant(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse(xml: bytes) -> etree._Element:
    return etree.fromstring(xml, parser=_RAW)


def serialize(root: etree._Element) -> bytes:
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


# --- keys -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyPair:
    key_pem: bytes
    cert_pem: bytes

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)


@dataclass(frozen=True)
class Keys:
    idp: KeyPair        # the corpus IdP's signing key (its certificate is in idp-metadata.xml)
    sp: KeyPair         # the broker SP's decryption key for these files
    foreign: KeyPair    # an impostor's key: same subject name as the IdP's, not in the metadata


_KEY_FILES = {"idp": ("idp-signing", "idp.corpus.example"), "sp": ("sp-encryption", "localhost sp encryption"),
              "foreign": ("foreign-signing", "idp.corpus.example")}


def _self_signed(common_name: str) -> KeyPair:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Broker test corpus")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
            .not_valid_after(dt.datetime(2045, 1, 1, tzinfo=dt.UTC))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return KeyPair(key_pem, cert.public_bytes(serialization.Encoding.PEM))


def load_keys(*, create: bool = False, renew: bool = False) -> Keys:
    """The committed corpus keys; ``create`` makes missing ones, ``renew`` replaces all."""
    pairs: dict[str, KeyPair] = {}
    for role, (stem, common_name) in _KEY_FILES.items():
        key_file, cert_file = KEYS / f"{stem}.key", KEYS / f"{stem}.crt"
        if renew or (create and not (key_file.exists() and cert_file.exists())):
            KEYS.mkdir(parents=True, exist_ok=True)
            pair = _self_signed(common_name)
            key_file.write_bytes(pair.key_pem)
            cert_file.write_bytes(pair.cert_pem)
        pairs[role] = KeyPair(key_file.read_bytes(), cert_file.read_bytes())
    return Keys(**pairs)


def _cert_body(pair: KeyPair) -> str:
    lines = pair.cert_pem.decode().strip().splitlines()
    return "".join(line for line in lines if not line.startswith("-----"))


def idp_metadata(keys: Keys) -> bytes:
    """The corpus IdP's metadata (for pysaml2's SP in the gap tests)."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="{DS}" entityID="{IDP_ENTITY_ID}">
  <md:IDPSSODescriptor protocolSupportEnumeration="{SAMLP}" WantAuthnRequestsSigned="true">
    <md:KeyDescriptor use="signing">
      <ds:KeyInfo><ds:X509Data><ds:X509Certificate>{_cert_body(keys.idp)}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>
    </md:KeyDescriptor>
    <md:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:persistent</md:NameIDFormat>
    <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="{IDP_SSO_URL}"/>
  </md:IDPSSODescriptor>
</md:EntityDescriptor>
""".encode()


# --- the baseline -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Fields:
    """What a Response says; each case changes some of it."""

    response_id: str = RESPONSE_ID
    assertion_id: str = ASSERTION_ID
    destination: str | None = ACS_URL
    in_response_to: str | None = REQUEST_ID          # on the Response and the SubjectConfirmationData
    recipient: str = ACS_URL
    audience: str = SP_ENTITY_ID
    name_id: str = NAME_ID
    hsa_id: str = HSA_ID
    assertion_version: str = "2.0"
    issued: dt.datetime = ISSUE_INSTANT
    not_before: dt.datetime = ISSUE_INSTANT - SKEW
    not_on_or_after: dt.datetime = ISSUE_INSTANT + LIFETIME
    padding: str = ""                                 # an extra attribute's value (to make a message big)


def _irt(value: str | None) -> str:
    return f' InResponseTo="{value}"' if value is not None else ""


def assertion_xml(f: Fields) -> str:
    padding = (f'<saml:Attribute Name="urn:example:padding" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:'
               f'uri"><saml:AttributeValue>{f.padding}</saml:AttributeValue></saml:Attribute>') if f.padding else ""
    attributes = "".join(
        f'<saml:Attribute Name="{name}" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:uri">'
        + "".join(f'<saml:AttributeValue xsi:type="xs:string">{v}</saml:AttributeValue>' for v in values)
        + "</saml:Attribute>"
        for name, values in {**ATTRIBUTES, HSA_ATTRIBUTE: (f.hsa_id,)}.items())
    return f"""<saml:Assertion xmlns:saml="{SAML}" xmlns:xs="http://www.w3.org/2001/XMLSchema" \
xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" ID="{f.assertion_id}" Version="{f.assertion_version}" \
IssueInstant="{instant(f.issued)}">
    <saml:Issuer Format="urn:oasis:names:tc:SAML:2.0:nameid-format:entity">{IDP_ENTITY_ID}</saml:Issuer>
    <saml:Subject>
      <saml:NameID Format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent" \
SPNameQualifier="{SP_ENTITY_ID}">{f.name_id}</saml:NameID>
      <saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer">
        <saml:SubjectConfirmationData{_irt(f.in_response_to)} NotOnOrAfter="{instant(f.not_on_or_after)}" \
Recipient="{f.recipient}"/>
      </saml:SubjectConfirmation>
    </saml:Subject>
    <saml:Conditions NotBefore="{instant(f.not_before)}" NotOnOrAfter="{instant(f.not_on_or_after)}">
      <saml:AudienceRestriction><saml:Audience>{f.audience}</saml:Audience></saml:AudienceRestriction>
    </saml:Conditions>
    <saml:AuthnStatement AuthnInstant="{instant(f.issued)}" SessionIndex="{SESSION_INDEX}" \
SessionNotOnOrAfter="{instant(f.issued + dt.timedelta(hours=8))}">
      <saml:AuthnContext><saml:AuthnContextClassRef>{CLASS_REF}</saml:AuthnContextClassRef></saml:AuthnContext>
    </saml:AuthnStatement>
    <saml:AttributeStatement>{attributes}{padding}</saml:AttributeStatement>
  </saml:Assertion>"""


def response_xml(f: Fields, assertion: str | None = None) -> bytes:
    destination = f' Destination="{f.destination}"' if f.destination is not None else ""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<samlp:Response xmlns:samlp="{SAMLP}" xmlns:saml="{SAML}" ID="{f.response_id}" Version="2.0" \
IssueInstant="{instant(f.issued)}"{destination}{_irt(f.in_response_to)}>
  <saml:Issuer Format="urn:oasis:names:tc:SAML:2.0:nameid-format:entity">{IDP_ENTITY_ID}</saml:Issuer>
  <samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>
  {assertion if assertion is not None else assertion_xml(f)}
</samlp:Response>
""".encode()


# --- signing and encryption (python-xmlsec, i.e. libxmlsec1 as the broker uses it) --------------

SIGNATURE_ALGORITHMS = {
    "rsa-sha256": (xmlsec.constants.TransformRsaSha256, xmlsec.constants.TransformSha256),
    "rsa-sha1": (xmlsec.constants.TransformRsaSha1, xmlsec.constants.TransformSha1),
}


def sign(element: etree._Element, pair: KeyPair, *, algorithm: str = "rsa-sha256",
         inclusive_prefixes: str | None = None, enveloped_parameter: etree._Element | None = None) -> etree._Element:
    """Add an enveloped signature (exclusive c14n, the signer's certificate in KeyInfo) after the Issuer.

    ``inclusive_prefixes``: exc-c14n's ``InclusiveNamespaces PrefixList`` in the CanonicalizationMethod and the
    exc-c14n Transform (as Shibboleth signs). ``enveloped_parameter``: a child element (a transform parameter,
    e.g. ds:XPath) put into the enveloped-signature Transform before signing. An existing signature of
    ``element`` is replaced. Returns the ds:Signature.
    """
    for old in element.findall("ds:Signature", NS):
        element.remove(old)
    method, digest = SIGNATURE_ALGORITHMS[algorithm]
    template = xmlsec.template.create(element, xmlsec.constants.TransformExclC14N, method, ns="ds")
    ref = xmlsec.template.add_reference(template, digest, uri="#" + element.get("ID", ""))
    enveloped = xmlsec.template.add_transform(ref, xmlsec.constants.TransformEnveloped)
    c14n = xmlsec.template.add_transform(ref, xmlsec.constants.TransformExclC14N)
    if inclusive_prefixes is not None:
        c14n_method = template.find("ds:SignedInfo/ds:CanonicalizationMethod", NS)
        assert c14n_method is not None
        xmlsec.template.transform_add_c14n_inclusive_namespaces(c14n_method, inclusive_prefixes)
        xmlsec.template.transform_add_c14n_inclusive_namespaces(c14n, inclusive_prefixes)
    if enveloped_parameter is not None:
        enveloped.append(enveloped_parameter)
    xmlsec.template.add_x509_data(xmlsec.template.ensure_key_info(template))
    issuer = element.find("saml:Issuer", NS)
    if issuer is not None:
        issuer.addnext(template)
    else:
        element.insert(0, template)
    key = xmlsec.Key.from_memory(pair.key_pem, xmlsec.constants.KeyDataFormatPem)
    key.load_cert_from_memory(pair.cert_pem, xmlsec.constants.KeyDataFormatCertPem)
    ctx = xmlsec.SignatureContext()
    ctx.key = key
    ctx.register_id(element, "ID")
    ctx.sign(template)
    return template


ENCRYPTION = {
    "aes256-gcm": (xmlsec.constants.TransformAes256Gcm, xmlsec.constants.KeyDataAes, 256),
    "aes128-cbc": (xmlsec.constants.TransformAes128Cbc, xmlsec.constants.KeyDataAes, 128),
    "3des-cbc": (xmlsec.constants.TransformDes3Cbc, xmlsec.constants.KeyDataDes, 192),
}
KEY_TRANSPORT = {"rsa-oaep": xmlsec.constants.TransformRsaOaep, "rsa-1_5": xmlsec.constants.TransformRsaPkcs1}


def encrypt(root: etree._Element, recipient: KeyPair, *, data: str = "aes256-gcm",
            key_transport: str = "rsa-oaep") -> None:
    """Replace the Response's Assertion by an EncryptedAssertion (SAML Core §2.3.4) for ``recipient``."""
    assertion = root.find("saml:Assertion", NS)
    assert assertion is not None
    encrypt_element(root, assertion, recipient, data=data, key_transport=key_transport)


def encrypt_element(root: etree._Element, element: etree._Element, recipient: KeyPair, *, data: str = "aes256-gcm",
                    key_transport: str = "rsa-oaep", wrapper_tag: str = "EncryptedAssertion") -> None:
    """Replace ``element`` (in the Response ``root``) by an EncryptedAssertion (or another ``wrapper_tag`` of SAML
    Core §6: EncryptedAttribute) holding it, encrypted."""
    wrapper = etree.Element(f"{{{SAML}}}{wrapper_tag}")
    element.addprevious(wrapper)
    wrapper.append(element)
    transform, key_data, size = ENCRYPTION[data]
    template = xmlsec.template.encrypted_data_create(root, transform, type=xmlsec.constants.TypeEncElement,
                                                     ns="xenc")
    xmlsec.template.encrypted_data_ensure_cipher_value(template)
    key_info = xmlsec.template.encrypted_data_ensure_key_info(template, ns="ds")
    encrypted_key = xmlsec.template.add_encrypted_key(key_info, KEY_TRANSPORT[key_transport])
    xmlsec.template.encrypted_data_ensure_cipher_value(encrypted_key)
    manager = xmlsec.KeysManager()
    manager.add_key(xmlsec.Key.from_memory(recipient.cert_pem, xmlsec.constants.KeyDataFormatCertPem, None))
    ctx = xmlsec.EncryptionContext(manager)
    ctx.key = xmlsec.Key.generate(key_data, size, xmlsec.constants.KeyDataTypeSession)
    ctx.encrypt_xml(template, element)


def signed(f: Fields, keys: Keys, *, pair: KeyPair | None = None, algorithm: str = "rsa-sha256") -> etree._Element:
    """The Response for ``f`` with its Assertion signed (by the IdP unless ``pair``)."""
    root = parse(response_xml(f))
    assertion = root.find("saml:Assertion", NS)
    assert assertion is not None
    sign(assertion, pair or keys.idp, algorithm=algorithm)
    return root


def the_assertion(root: etree._Element) -> etree._Element:
    assertion = root.find("saml:Assertion", NS)
    assert assertion is not None
    return assertion


def evil_assertion(f: Fields = Fields()) -> etree._Element:
    """The attacker's Assertion: same IdP, another user (an administrator), unsigned."""
    evil = Fields(assertion_id=EVIL_ASSERTION_ID, name_id=EVIL_NAME_ID, hsa_id=EVIL_HSA_ID,
                  in_response_to=f.in_response_to)
    return parse(assertion_xml(evil).encode())


# --- the cases ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    file: str
    reason: str | None
    about: str
    build: Callable[[Keys], bytes]
    extra: dict[str, Any] | None = None


def _valid(keys: Keys) -> bytes:
    return serialize(signed(Fields(), keys))


def _valid_encrypted(keys: Keys) -> bytes:
    root = signed(Fields(), keys)
    encrypt(root, keys.sp, data="aes256-gcm", key_transport="rsa-oaep")
    return serialize(root)


def _unsigned(keys: Keys) -> bytes:
    return response_xml(Fields())


def _tampered(keys: Keys) -> bytes:
    root = signed(Fields(), keys)
    name_id = the_assertion(root).find("saml:Subject/saml:NameID", NS)
    assert name_id is not None
    name_id.text = EVIL_NAME_ID
    return serialize(root)


def _foreign_key(keys: Keys) -> bytes:
    return serialize(signed(Fields(), keys, pair=keys.foreign))


def _wrap_duplicated(keys: Keys) -> bytes:
    root = signed(Fields(), keys)
    the_assertion(root).addprevious(evil_assertion())
    return serialize(root)


def _wrap_extensions(keys: Keys) -> bytes:
    root = signed(Fields(), keys)
    original = the_assertion(root)
    extensions = etree.Element(f"{{{SAMLP}}}Extensions")
    root.find("saml:Issuer", NS).addnext(extensions)  # type: ignore[union-attr]
    original.addprevious(evil_assertion())
    extensions.append(original)  # moves it
    return serialize(root)


def _wrap_moved_into_evil(keys: Keys) -> bytes:
    root = signed(Fields(), keys)
    original = the_assertion(root)
    evil = evil_assertion()
    advice = etree.SubElement(evil, f"{{{SAML}}}Advice")
    evil.find("saml:Conditions", NS).addnext(advice)  # type: ignore[union-attr]
    original.addprevious(evil)
    advice.append(original)
    return serialize(root)


def _wrap_signature_object(keys: Keys) -> bytes:
    root = signed(Fields(), keys)
    original = the_assertion(root)
    signature = original.find("ds:Signature", NS)
    assert signature is not None
    evil = evil_assertion()
    evil.find("saml:Issuer", NS).addnext(signature)  # type: ignore[union-attr]  # the original signature moves
    obj = etree.SubElement(signature, f"{{{DS}}}Object")
    original.addprevious(evil)
    obj.append(original)  # the original (unchanged but for its signature) inside the signature's ds:Object
    return serialize(root)


def _comment_in_name_id(keys: Keys) -> bytes:
    root = signed(Fields(name_id="admin@evil"), keys)
    name_id = the_assertion(root).find("saml:Subject/saml:NameID", NS)
    assert name_id is not None
    name_id.text = "admin"
    comment = etree.Comment("")
    comment.tail = "@evil"
    name_id.append(comment)
    return serialize(root)


def _sha1(keys: Keys) -> bytes:
    return serialize(signed(Fields(), keys, algorithm="rsa-sha1"))


def _version(keys: Keys) -> bytes:
    return serialize(signed(Fields(assertion_version="1.1"), keys))


def _with_doctype(xml: bytes, doctype: str, name_id: str) -> bytes:
    text = xml.decode()
    body = text.split("?>", 1)[1].lstrip()
    body = body.replace(f">{NAME_ID}<", f">{name_id}<", 1)
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{doctype}\n{body}'.encode()


def _xxe(keys: Keys) -> bytes:
    doctype = '<!DOCTYPE samlp:Response [\n  <!ENTITY xxe SYSTEM "file:///etc/passwd">\n]>'
    return _with_doctype(_valid(keys), doctype, "&xxe;")


def _xxe_utf16(keys: Keys) -> bytes:
    doctype = '<!DOCTYPE samlp:Response [\n  <!ENTITY xxe SYSTEM "file:///etc/passwd">\n]>'
    text = _with_doctype(_valid(keys), doctype, "&xxe;").decode().replace('encoding="UTF-8"', 'encoding="UTF-16"', 1)
    return text.encode("utf-16")


def _billion_laughs(keys: Keys) -> bytes:
    entities = ['  <!ENTITY lol0 "lol">'] + [
        f'  <!ENTITY lol{i} "{"".join(f"&lol{i - 1};" for _ in range(10))}">' for i in range(1, 10)]
    doctype = "<!DOCTYPE samlp:Response [\n" + "\n".join(entities) + "\n]>"
    return _with_doctype(_valid(keys), doctype, "&lol9;")


def _oversized(keys: Keys) -> bytes:
    base = len(_valid(keys))
    pad = MAX_BYTES + 1024 - base - 200  # the padding attribute's markup is about 150 bytes
    xml = serialize(signed(Fields(padding="A" * pad), keys))
    assert MAX_BYTES < len(xml) < MAX_BYTES + 4096, len(xml)
    return xml


def _audience(keys: Keys) -> bytes:
    return serialize(signed(Fields(audience="https://sp.elsewhere.example/metadata"), keys))


def _recipient(keys: Keys) -> bytes:
    return serialize(signed(Fields(recipient="https://sp.elsewhere.example/acs"), keys))


def _destination(keys: Keys) -> bytes:
    root = signed(Fields(), keys)
    root.set("Destination", "https://sp.elsewhere.example/acs")  # the Response is not signed: no re-signing
    return serialize(root)


def _expired(keys: Keys) -> bytes:
    issued = NOW - dt.timedelta(minutes=30)
    return serialize(signed(Fields(issued=issued, not_before=issued - SKEW, not_on_or_after=issued + LIFETIME),
                            keys))


def _not_yet_valid(keys: Keys) -> bytes:
    return serialize(signed(Fields(not_before=NOW + dt.timedelta(minutes=10),
                                   not_on_or_after=NOW + dt.timedelta(minutes=15)), keys))


def _in_response_to(keys: Keys) -> bytes:
    return serialize(signed(Fields(in_response_to="_corpus-request-never-sent"), keys))


def _unsolicited(keys: Keys) -> bytes:
    return serialize(signed(Fields(in_response_to=None), keys))


def _replay(keys: Keys) -> bytes:
    """valid.xml's signed Assertion again, in a Response with another ID."""
    root = parse(_valid(keys))
    root.set("ID", "_corpus-response-0002")
    return serialize(root)


def _encrypted(data: str, key_transport: str) -> Callable[[Keys], bytes]:
    def build(keys: Keys) -> bytes:
        root = signed(Fields(), keys)
        encrypt(root, keys.sp, data=data, key_transport=key_transport)
        return serialize(root)

    return build


# --- hardening cases (1d707c9): encryption, conditions, confirmations, signature parameters ----------

OTHER_ACS = "https://sp.elsewhere.example/acs"
DELEGATION = "urn:oasis:names:tc:SAML:2.0:conditions:delegation"  # SAML V2.0 Condition for Delegation Restriction
XSI = "http://www.w3.org/2001/XMLSchema-instance"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"


def _reparsed(root: etree._Element) -> etree._Element:
    """``root`` serialised and parsed again: lxml's find() does not see the nodes libxmlsec1 made until then."""
    return parse(serialize(root))


def _encrypted_response(keys: Keys, root: etree._Element | None = None, *, data: str = "aes256-gcm"
                        ) -> etree._Element:
    """``root`` (valid.xml's Response by default) with its Assertion encrypted to the broker's SP key."""
    root = signed(Fields(), keys) if root is None else root
    encrypt(root, keys.sp, data=data)
    return _reparsed(root)


def _other_recipients_key(keys: Keys, model: etree._Element) -> etree._Element:
    """An EncryptedKey like ``model`` for another recipient (SAML Core §6.2): a session key under the foreign key
    (RSA-OAEP), which none of the broker's keys opens."""
    other = copy.deepcopy(model)
    public = keys.foreign.certificate.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    value = public.encrypt(os.urandom(32), padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(),
                                                        label=None))
    cipher = other.find("xenc:CipherData/xenc:CipherValue", NS)
    assert cipher is not None
    cipher.text = base64.b64encode(value).decode()
    return other


def _encrypted_keys(others: int, *, beside: bool = False) -> Callable[[Keys], bytes]:
    """valid.xml encrypted, with ``others`` EncryptedKeys of other recipients before the broker's own; ``beside``:
    all of them beside the EncryptedData (SAML Core §6.2), the KeyInfo pointing at the broker's by a
    ds:RetrievalMethod."""
    def build(keys: Keys) -> bytes:
        root = _encrypted_response(keys)
        wrapper = root.find("saml:EncryptedAssertion", NS)
        assert wrapper is not None
        data = wrapper.find("xenc:EncryptedData", NS)
        assert data is not None
        key_info = data.find("ds:KeyInfo", NS)
        assert key_info is not None
        own = key_info.find("xenc:EncryptedKey", NS)
        assert own is not None
        for _ in range(others):
            own.addprevious(_other_recipients_key(keys, own))
        if beside:
            data.set("Id", "_corpus-encrypted-data")
            own.set("Id", "_corpus-encrypted-key")
            for key in key_info.findall("xenc:EncryptedKey", NS):
                wrapper.append(key)  # moves it: EncryptedAssertion = EncryptedData, EncryptedKey*
            etree.SubElement(key_info, f"{{{DS}}}RetrievalMethod", URI="#_corpus-encrypted-key",
                             Type=XENC + "EncryptedKey")
            references = etree.SubElement(own, f"{{{XENC}}}ReferenceList")
            etree.SubElement(references, f"{{{XENC}}}DataReference", URI="#_corpus-encrypted-data")
        assert len(root.findall(".//xenc:EncryptedKey", NS)) == others + 1
        return serialize(root)

    return build


def _tampered_root(keys: Keys) -> etree._Element:
    root = signed(Fields(), keys)
    name_id = the_assertion(root).find("saml:Subject/saml:NameID", NS)
    assert name_id is not None
    name_id.text = EVIL_NAME_ID
    return root


def _encrypted_after(make: Callable[[Keys], etree._Element], *, sign_response: bool) -> Callable[[Keys], bytes]:
    """The Response ``make`` gives, its Assertion encrypted with AES-128-CBC (malleable: nothing but a signature
    authenticates the ciphertext); ``sign_response``: the Response then signed by the IdP, over the ciphertext."""
    def build(keys: Keys) -> bytes:
        root = _encrypted_response(keys, make(keys), data="aes128-cbc")
        if sign_response:
            sign(root, keys.idp)
        return serialize(root)

    return build


def _encrypted_attribute(data: str) -> Callable[[Keys], bytes]:
    """The baseline with its HSA-id Attribute in an EncryptedAttribute (SAML Core §2.7.3.2, §6.1; ``data``,
    RSA-OAEP to the broker's key), encrypted before the IdP signs the Assertion, as IdPs do."""
    def build(keys: Keys) -> bytes:
        root = parse(response_xml(Fields()))
        assertion = the_assertion(root)
        attribute = assertion.find(f"saml:AttributeStatement/saml:Attribute[@Name='{HSA_ATTRIBUTE}']", NS)
        assert attribute is not None
        encrypt_element(root, attribute, keys.sp, data=data, wrapper_tag="EncryptedAttribute")
        sign(assertion, keys.idp)
        return serialize(root)

    return build


def _encrypted_not_an_assertion(keys: Keys) -> bytes:
    """The EncryptedAssertion's plaintext is a NameID (as an EncryptedID would hold), not an Assertion."""
    root = parse(response_xml(Fields()))
    assertion = the_assertion(root)
    name_id = etree.Element(f"{{{SAML}}}NameID", Format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent")
    name_id.text = EVIL_NAME_ID
    assertion.addprevious(name_id)
    root.remove(assertion)
    encrypt_element(root, name_id, keys.sp, data="aes128-cbc")
    return serialize(root)


def _signed_changed(change: Callable[[etree._Element], None], f: Fields = Fields(),
                    **signing: Any) -> Callable[[Keys], etree._Element]:
    """The Response for ``f`` whose Assertion, changed by ``change``, the IdP signs (``signing``: sign()'s options)."""
    def build(keys: Keys) -> etree._Element:
        root = parse(response_xml(f))
        assertion = the_assertion(root)
        change(assertion)
        sign(assertion, keys.idp, **signing)
        return root

    return build


def _bytes(make: Callable[[Keys], etree._Element]) -> Callable[[Keys], bytes]:
    return lambda keys: serialize(make(keys))


def _unsigned_root(keys: Keys) -> etree._Element:
    return parse(response_xml(Fields()))


def _recipient_wrong_root(keys: Keys) -> etree._Element:
    return signed(Fields(recipient=OTHER_ACS), keys)


def _condition(tag: str, **attributes: str) -> Callable[[etree._Element], None]:
    """Add a condition (``tag`` in the SAML assertion namespace) after the AudienceRestriction."""
    def change(assertion: etree._Element) -> None:
        conditions = assertion.find("saml:Conditions", NS)
        assert conditions is not None
        etree.SubElement(conditions, f"{{{SAML}}}{tag}", attrib=attributes)

    return change


def proxy_restriction(count: str | None, *audiences: str) -> Callable[[etree._Element], None]:
    """Add a ProxyRestriction (SAML Core §2.5.1.6) with ``audiences`` and, unless None, ``count``."""
    def change(assertion: etree._Element) -> None:
        conditions = assertion.find("saml:Conditions", NS)
        assert conditions is not None
        element = etree.SubElement(conditions, f"{{{SAML}}}ProxyRestriction")
        for audience in audiences:
            etree.SubElement(element, f"{{{SAML}}}Audience").text = audience
        if count is not None:
            element.set("Count", count)

    return change


def _unknown_condition(assertion: etree._Element) -> None:
    """A condition of an extension the broker does not implement (SAML Core §2.5.1.1: an xsi:type of Condition)."""
    conditions = assertion.find("saml:Conditions", NS)
    assert conditions is not None
    condition = etree.SubElement(conditions, f"{{{SAML}}}Condition", nsmap={"del": DELEGATION})
    condition.set(f"{{{XSI}}}type", "del:DelegationRestrictionType")
    delegate = etree.SubElement(condition, f"{{{DELEGATION}}}Delegate")
    etree.SubElement(delegate, f"{{{SAML}}}NameID").text = "https://intermediary.example/metadata"


def _second_conditions(assertion: etree._Element) -> None:
    """A second Conditions after the first (the schema allows one: SAML Core §2.3.3), restricting the Assertion to
    another SP and to a time already past: a reader of only the first would miss both."""
    conditions = assertion.find("saml:Conditions", NS)
    assert conditions is not None
    second = etree.Element(f"{{{SAML}}}Conditions", NotOnOrAfter=instant(NOW - dt.timedelta(minutes=10)))
    restriction = etree.SubElement(second, f"{{{SAML}}}AudienceRestriction")
    etree.SubElement(restriction, f"{{{SAML}}}Audience").text = "https://sp.elsewhere.example/metadata"
    conditions.addnext(second)


def _second_authn_statement(assertion: etree._Element) -> None:
    """A second AuthnStatement after the first, of an earlier sign-on with a password: SAML Core §2.7.2 gives two
    no order and no combined meaning, so which login, at which level, the Assertion vouches for is undecided."""
    statement = assertion.find("saml:AuthnStatement", NS)
    assert statement is not None
    second = copy.deepcopy(statement)
    second.set("AuthnInstant", instant(ISSUE_INSTANT - dt.timedelta(hours=2)))
    class_ref = second.find("saml:AuthnContext/saml:AuthnContextClassRef", NS)
    assert class_ref is not None
    class_ref.text = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
    statement.addnext(second)


def _inverted_window(path: str) -> Callable[[etree._Element], None]:
    """The element at ``path`` valid from 30 s after now until 20 s after now: NotBefore not earlier than
    NotOnOrAfter (SAML Core §2.5.1.2, §2.4.1.2), so valid at no instant, though each bound alone is within the
    clock skew of now."""
    def change(assertion: etree._Element) -> None:
        element = assertion.find(path, NS)
        assert element is not None
        element.set("NotBefore", instant(NOW + dt.timedelta(seconds=30)))
        element.set("NotOnOrAfter", instant(NOW + dt.timedelta(seconds=20)))
    return change


def _issuer_format_unspecified(assertion: etree._Element) -> None:
    issuer = assertion.find("saml:Issuer", NS)
    assert issuer is not None
    issuer.set("Format", "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified")


def _two_confirmations(*, second_expired: bool) -> Callable[[etree._Element], None]:
    """A first bearer SubjectConfirmation for another SP's ACS before the baseline's one; ``second_expired``: the
    baseline's one is then expired too (so both fail, each for its own reason)."""
    def change(assertion: etree._Element) -> None:
        confirmation = assertion.find("saml:Subject/saml:SubjectConfirmation", NS)
        assert confirmation is not None
        first = copy.deepcopy(confirmation)
        first.find("saml:SubjectConfirmationData", NS).set("Recipient", OTHER_ACS)  # type: ignore[union-attr]
        confirmation.addprevious(first)
        if second_expired:
            data = confirmation.find("saml:SubjectConfirmationData", NS)
            assert data is not None
            data.set("NotOnOrAfter", instant(NOW - dt.timedelta(minutes=10)))

    return change


def _xpath_parameter() -> etree._Element:
    xpath = etree.Element(f"{{{DS}}}XPath", nsmap={"ds": DS})
    xpath.text = "not(ancestor-or-self::ds:Signature)"
    return xpath


def _inclusive_namespaces() -> etree._Element:
    return etree.Element(f"{{{EXC_C14N}}}InclusiveNamespaces", PrefixList="xs", nsmap={"ec": EXC_C14N})


CASE_LIST: tuple[Case, ...] = (
    Case("valid.xml", None, "baseline: Assertion signed RSA-SHA256 / SHA-256 / exc-c14n, everything as expected",
         _valid),
    Case("valid_encrypted_aes256gcm.xml", None,
         "the signed Assertion in an EncryptedAssertion (AES-256-GCM, RSA-OAEP to the broker's SP key)",
         _valid_encrypted),
    Case("unsigned.xml", "upstream_unsigned", "neither the Response nor the Assertion is signed", _unsigned),
    Case("tampered_after_signing.xml", "upstream_signature_invalid",
         "the NameID changed to 'admin' after the Assertion was signed", _tampered),
    Case("foreign_key_embedded_cert.xml", "upstream_signature_invalid",
         "signed by a key not in the IdP's metadata whose certificate (same subject name) is embedded in KeyInfo",
         _foreign_key),
    Case("wrap_duplicated.xml", "upstream_assertion_invalid",
         "signature wrapping: an unsigned evil Assertion inserted before the original signed one", _wrap_duplicated),
    Case("wrap_extensions.xml", "upstream_assertion_invalid",
         "signature wrapping: the signed Assertion moved into samlp:Extensions, an evil one in its place",
         _wrap_extensions),
    Case("wrap_moved_into_evil.xml", "upstream_assertion_invalid",
         "signature wrapping: the signed Assertion moved into the Advice of an evil Assertion in its place",
         _wrap_moved_into_evil),
    Case("wrap_signature_object.xml", "upstream_assertion_invalid",
         "signature wrapping: an evil Assertion carries the original signature, the original inside its ds:Object",
         _wrap_signature_object),
    Case("comment_in_name_id.xml", None,
         "<NameID>admin<!---->@evil</NameID>, validly signed: the broker must read all of 'admin@evil' (or refuse)",
         _comment_in_name_id, {"name_id": "admin@evil"}),
    Case("sha1_signature.xml", "upstream_algorithm_not_allowed",
         "the Assertion validly signed with RSA-SHA1 and a SHA-1 digest", _sha1),
    Case("version_1_1_assertion.xml", "upstream_version_unsupported",
         "a validly signed Assertion with Version=\"1.1\"", _version),
    Case("xxe_external_entity.xml", "upstream_response_malformed",
         "a DOCTYPE declaring an external entity (file:///etc/passwd) used in the NameID", _xxe),
    Case("xxe_utf16.xml", "upstream_response_malformed",
         "the external-entity payload encoded as UTF-16 (no ASCII '<!DOCTYPE' bytes to spot)", _xxe_utf16),
    Case("billion_laughs.xml", "upstream_response_malformed",
         "entity expansion: ten levels of ten-fold nested entities (10^9 'lol') in the NameID", _billion_laughs),
    Case("oversized.xml", "upstream_response_too_large",
         f"a validly signed Response just over max_message_bytes ({MAX_BYTES}) by a padding attribute", _oversized,
         {"flow_tests": [f"{FLOW_TESTS}::test_oversized_response_is_refused_for_its_size",
                         f"{FLOW_TESTS}::test_response_within_the_size_limit_is_accepted"]}),
    Case("audience_wrong.xml", "upstream_audience_mismatch",
         "validly signed for another SP's entity ID (AudienceRestriction)", _audience),
    Case("recipient_wrong.xml", "upstream_recipient_mismatch",
         "validly signed, SubjectConfirmationData Recipient is another SP's ACS", _recipient),
    Case("destination_wrong.xml", "upstream_destination_mismatch",
         "the (unsigned) Response's Destination is another SP's ACS", _destination),
    Case("expired.xml", "upstream_expired",
         "validly signed 30 minutes before now: NotOnOrAfter (Conditions, SubjectConfirmationData) passed", _expired),
    Case("not_yet_valid.xml", "upstream_not_yet_valid",
         "validly signed, Conditions NotBefore 10 minutes after now", _not_yet_valid),
    Case("in_response_to_mismatch.xml", "upstream_in_response_to_mismatch",
         "validly signed answer to a request the broker never sent (Response and SubjectConfirmationData)",
         _in_response_to, {"flow_tests": [f"{FLOW_TESTS}::test_response_to_a_request_never_sent_is_refused",
                                          f"{FLOW_TESTS}::test_response_moved_to_another_pending_request_is_refused"]}),
    Case("unsolicited.xml", "upstream_unsolicited",
         "validly signed, no InResponseTo anywhere: IdP-initiated, refused unless the IdP may send those",
         _unsolicited, {"decided_by": "flow", "validator_reason": "upstream_in_response_to_mismatch",
                        "flow_tests": [f"{FLOW_TESTS}::test_idp_initiated_response_is_refused_when_not_allowed",
                                       f"{FLOW_TESTS}::test_response_stripped_of_in_response_to_is_refused_as_unsolicited"]}),
    Case("replay.xml", "upstream_replay",
         "valid.xml's signed Assertion (same ID) in another Response: once valid.xml was used, the one-use cache "
         "of Assertion IDs refuses it",
         _replay, {"decided_by": "flow", "validator_reason": None,
                   "flow_tests": [f"{FLOW_TESTS}::test_replayed_idp_initiated_response_is_refused",
                                  f"{FLOW_TESTS}::test_assertion_reissued_for_a_new_request_is_refused_as_a_replay"]}),
    Case("encrypted_3des.xml", "upstream_algorithm_not_allowed",
         "the signed Assertion encrypted with 3DES-CBC (key transport RSA-OAEP)", _encrypted("3des-cbc", "rsa-oaep")),
    Case("encrypted_rsa15.xml", "upstream_algorithm_not_allowed",
         "the signed Assertion encrypted with AES-256-GCM, key transport RSA PKCS#1 v1.5",
         _encrypted("aes256-gcm", "rsa-1_5")),
    Case("encrypted_attribute.xml", None,
         "valid.xml with the HSA-id Attribute in an EncryptedAttribute (AES-256-GCM, RSA-OAEP to the broker's SP "
         "key) inside the signed Assertion (SAML Core §2.7.3.2)", _encrypted_attribute("aes256-gcm")),
    Case("encrypted_attribute_3des.xml", "upstream_algorithm_not_allowed",
         "encrypted_attribute.xml with the Attribute encrypted with 3DES-CBC: an EncryptedAttribute gets the "
         "EncryptedAssertion's algorithm allow-list", _encrypted_attribute("3des-cbc"),
         {"detail": "EncryptedAttribute"}),
    # encryption: how many EncryptedKeys, and where
    Case("encrypted_four_keys.xml", None,
         "valid_encrypted: four EncryptedKeys in the KeyInfo, three for other recipients (RSA-OAEP to the foreign "
         "key) before the broker's own: the limit is 4", _encrypted_keys(3)),
    Case("encrypted_five_keys.xml", "upstream_decryption_failed",
         "valid_encrypted with five EncryptedKeys (four for other recipients): each is an RSA decryption, at most "
         "4 are tried", _encrypted_keys(4), {"detail": "at most 4"}),
    Case("encrypted_key_beside_data.xml", None,
         "valid_encrypted with the EncryptedKey beside the EncryptedData (SAML Core §6.2), the KeyInfo pointing at "
         "it by ds:RetrievalMethod", _encrypted_keys(0, beside=True)),
    Case("encrypted_five_keys_beside_data.xml", "upstream_decryption_failed",
         "five EncryptedKeys beside the EncryptedData (the limit counts those too)", _encrypted_keys(4, beside=True),
         {"detail": "at most 4"}),
    # encryption: one answer for every failure after decryption when nothing signed the ciphertext
    Case("encrypted_cbc_tampered_unsigned_response.xml", "upstream_decryption_failed",
         "tampered_after_signing's Assertion encrypted (AES-128-CBC), the Response unsigned: the bad signature "
         "reports as a decryption failure (no oracle), the cause in the detail",
         _encrypted_after(_tampered_root, sign_response=False), {"detail": "upstream_signature_invalid"}),
    Case("encrypted_cbc_tampered_signed_response.xml", "upstream_signature_invalid",
         "the same, but the IdP signed the Response (over the ciphertext): the specific reason is kept",
         _encrypted_after(_tampered_root, sign_response=True)),
    Case("encrypted_not_an_assertion.xml", "upstream_decryption_failed",
         "the EncryptedAssertion decrypts (AES-128-CBC) to a NameID, not an Assertion; the Response is unsigned",
         _encrypted_not_an_assertion, {"detail": "NameID"}),
    Case("encrypted_cbc_unsigned_assertion.xml", "upstream_decryption_failed",
         "unsigned.xml's Assertion encrypted (AES-128-CBC), the Response unsigned: a missing signature after "
         "decryption is a failure after decryption too (docs/federation.md: every one reports alike)",
         _encrypted_after(_unsigned_root, sign_response=False), {"detail": "upstream_unsigned"}),
    Case("encrypted_cbc_recipient_wrong_unsigned_response.xml", "upstream_recipient_mismatch",
         "recipient_wrong's signed Assertion encrypted (AES-128-CBC), the Response unsigned: once the decrypted "
         "Assertion's signature holds its content is authentic, so the specific reason is given",
         _encrypted_after(_recipient_wrong_root, sign_response=False)),
    Case("encrypted_cbc_recipient_wrong_signed_response.xml", "upstream_recipient_mismatch",
         "the same with the Response signed by the IdP: the specific reason is kept",
         _encrypted_after(_recipient_wrong_root, sign_response=True)),
    # conditions (SAML Core §2.5.1)
    Case("proxy_restriction_count_0.xml", "upstream_assertion_invalid",
         "validly signed with <ProxyRestriction Count=\"0\"/>: the IdP forbids what the broker does (issue "
         "assertions of its own on the strength of this one)", _bytes(_signed_changed(
             _condition("ProxyRestriction", Count="0"))), {"detail": "ProxyRestriction"}),
    Case("proxy_restriction_count_2.xml", None,
         "validly signed with <ProxyRestriction Count=\"2\"/>: passing on once is allowed",
         _bytes(_signed_changed(_condition("ProxyRestriction", Count="2")))),
    Case("one_time_use.xml", None,
         "validly signed with <OneTimeUse/>: what the broker's replay cache does anyway",
         _bytes(_signed_changed(_condition("OneTimeUse")))),
    Case("one_time_use_twice.xml", "upstream_assertion_invalid",
         "validly signed with two <OneTimeUse/> (SAML Core §2.5.1.5: a SAML authority MUST NOT include more than "
         "one)", _bytes(_signed_changed(lambda a: (_condition("OneTimeUse")(a), _condition("OneTimeUse")(a)))),
         {"detail": "OneTimeUse"}),
    Case("two_conditions.xml", "upstream_assertion_invalid",
         "validly signed with a second <Conditions> (another SP's audience, a NotOnOrAfter past): the Assertion "
         "holds at most one (SAML Core §2.3.3)", _bytes(_signed_changed(_second_conditions)),
         {"detail": "Conditions"}),
    Case("two_authn_statements.xml", "upstream_assertion_invalid",
         "validly signed with two <AuthnStatement>s, the broker's X509 ClassRef and, after it, a password sign-on "
         "two hours earlier: which authentication (and level) the Assertion vouches for is ambiguous",
         _bytes(_signed_changed(_second_authn_statement)), {"detail": "AuthnStatement"}),
    Case("conditions_window_inverted.xml", "upstream_assertion_invalid",
         "validly signed, Conditions NotBefore 30 s after now and NotOnOrAfter 20 s after now: valid at no instant "
         "(SAML Core §2.5.1.2), though each bound alone passes within the clock skew",
         _bytes(_signed_changed(_inverted_window("saml:Conditions"))), {"detail": "not earlier than"}),
    Case("confirmation_window_inverted.xml", "upstream_subject_confirmation_invalid",
         "validly signed, the bearer SubjectConfirmationData's NotBefore 30 s after now and NotOnOrAfter 20 s after "
         "now (SAML Core §2.4.1.2)", _bytes(_signed_changed(_inverted_window(
             "saml:Subject/saml:SubjectConfirmation/saml:SubjectConfirmationData"))), {"detail": "not earlier than"}),
    Case("unknown_condition.xml", "upstream_assertion_invalid",
         "validly signed with a <Condition xsi:type=\"del:DelegationRestrictionType\"> the broker does not "
         "implement: the assertion is Indeterminate (§2.5.1.1)", _bytes(_signed_changed(_unknown_condition)),
         {"detail": "unknown condition"}),
    Case("assertion_issuer_format_unspecified.xml", "upstream_issuer_mismatch",
         "validly signed, the Assertion's Issuer with Format unspecified instead of entity (Profiles §4.1.4.2)",
         _bytes(_signed_changed(_issuer_format_unspecified)), {"detail": "Format"}),
    # several bearer SubjectConfirmations (Profiles §4.1.4.2: at least one must hold)
    Case("two_confirmations_first_other_recipient.xml", None,
         "validly signed, a bearer SubjectConfirmation for another SP's ACS before the one for the broker",
         _bytes(_signed_changed(_two_confirmations(second_expired=False)))),
    Case("two_confirmations_both_wrong.xml", "upstream_recipient_mismatch",
         "validly signed, two bearer SubjectConfirmations: the first for another SP's ACS, the second (the "
         "broker's) expired: the first one's reason is given", _bytes(_signed_changed(
             _two_confirmations(second_expired=True)))),
    # signature parameters
    Case("inclusive_namespaces.xml", None,
         "the Assertion signed with exclusive c14n carrying <ec:InclusiveNamespaces PrefixList=\"xs\"/> in the "
         "CanonicalizationMethod and the Transform (as Shibboleth signs)",
         _bytes(_signed_changed(lambda a: None, inclusive_prefixes="xs"))),
    Case("transform_xpath_parameter.xml", "upstream_signature_invalid",
         "validly signed, a ds:XPath parameter inside the enveloped-signature Transform (libxmlsec1 verifies it)",
         _bytes(_signed_changed(lambda a: None, enveloped_parameter=_xpath_parameter())),
         {"detail": "transform parameters are not allowed"}),
    Case("inclusive_namespaces_in_enveloped_transform.xml", "upstream_signature_invalid",
         "validly signed, InclusiveNamespaces inside the enveloped-signature Transform (it belongs to exc-c14n only)",
         _bytes(_signed_changed(lambda a: None, enveloped_parameter=_inclusive_namespaces())),
         {"detail": "transform parameters are not allowed"}),
)


def generate(*, renew_keys: bool = False) -> None:
    keys = load_keys(create=True, renew=renew_keys)
    (KEYS / "idp-metadata.xml").write_bytes(idp_metadata(keys))
    cases: dict[str, dict[str, Any]] = {}
    for case in CASE_LIST:
        (HERE / case.file).write_bytes(case.build(keys))
        cases[case.file] = {"reason": case.reason, "about": case.about, **(case.extra or {})}
    CASES.write_text(json.dumps(cases, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--new-keys", action="store_true", help="replace the corpus keys (every file changes)")
    args = parser.parse_args()
    generate(renew_keys=args.new_keys)
    print(f"wrote {len(CASE_LIST)} cases to {HERE}")


if __name__ == "__main__":
    main()

