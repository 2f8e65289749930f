"""The federation hardening of 1d707c9 that the corpus (tests/corpus/upstream) cannot show as a file and a reason.

* the corpus's new encrypted and signature-parameter cases are what they claim to be: refused for the one thing
  each changes (the EncryptedKey limit, a transform parameter), the signed-Response variants really signed;
* metadata from a URL does not roll back: a correctly signed copy older (validUntil) than the one held is refused
  on refresh and the held copy stays (broker/saml/upstream_metadata.py ``refresh``);
* an HTTP-Redirect query with raw (not percent-encoded) non-ASCII characters is malformed
  (broker/saml/bindings.py ``from_redirect``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import xmlsec
from lxml import etree

import broker.saml.xmlenc
from broker.clock import FixedClock
from broker.config.loader import Municipality, load_settings
from broker.errors import SamlRejected, UpstreamRejected
from broker.pki.revocation.http import HttpFetcher
from broker.saml.bindings import from_redirect
from broker.saml.upstream_metadata import UpstreamMetadata
from broker.saml.upstream_response import Expectations, ResponseValidator, SignedElement, parse_response
from broker.saml.xmldsig import SignatureRejected, XmlVerifier
from broker.saml.xmlenc import MAX_ENCRYPTED_KEYS, Decrypter, DecryptionRefused
from tests.corpus.upstream import generate as corpus
from tests.factories.metadata import HttpsFileServer, SigningKey, TlsMaterial, prepare, pysaml2_idp_metadata, sign
from tests.unit.config.editing import replacing_block
from tests.unit.saml.test_upstream_corpus import expectations
from tests.unit.saml.test_xmlparse import resident_kib

# --- the corpus's new files are what they claim ------------------------------------------------------------------


@pytest.fixture(scope="module")
def keys() -> corpus.Keys:
    return corpus.load_keys()


def _root(name: str) -> etree._Element:
    return parse_response((corpus.HERE / name).read_bytes(), corpus.MAX_BYTES)


def _validator(keys: corpus.Keys) -> ResponseValidator:
    return ResponseValidator(XmlVerifier([keys.idp.certificate]), Decrypter([keys.sp.key_pem]))


@pytest.mark.parametrize("name", ["encrypted_five_keys.xml", "encrypted_five_keys_beside_data.xml"])
def test_five_encrypted_keys_are_refused_for_their_number_alone(keys: corpus.Keys, monkeypatch: pytest.MonkeyPatch,
                                                                name: str) -> None:
    """Refused before any RSA decryption, with the limit in the detail; with the limit lifted the same file
    decrypts to the IdP's signed Assertion (the broker's own key is the fifth)."""
    root = _root(name)
    assert len(root.findall(".//xenc:EncryptedKey", corpus.NS)) == MAX_ENCRYPTED_KEYS + 1
    with pytest.raises(UpstreamRejected) as refused:
        _validator(keys).validate(root, expectations())
    assert refused.value.reason == "upstream_decryption_failed"
    assert f"at most {MAX_ENCRYPTED_KEYS}" in refused.value.detail

    monkeypatch.setattr(broker.saml.xmlenc, "MAX_ENCRYPTED_KEYS", MAX_ENCRYPTED_KEYS + 1)
    verdict = _validator(keys).validate(_root(name), expectations())
    assert verdict.name_id == corpus.NAME_ID


def test_the_encrypted_key_beside_the_data_is_only_there(keys: corpus.Keys) -> None:
    """encrypted_key_beside_data.xml: the KeyInfo holds a RetrievalMethod and no EncryptedKey; the broker's
    EncryptedKey is the EncryptedData's sibling (SAML Core §6.2). libxmlsec1 alone does not find it there."""
    root = _root("encrypted_key_beside_data.xml")
    wrapper = root.find("saml:EncryptedAssertion", corpus.NS)
    assert wrapper is not None
    assert [child.tag for child in wrapper] == [f"{{{corpus.XENC}}}EncryptedData", f"{{{corpus.XENC}}}EncryptedKey"]
    key_info = wrapper.find("xenc:EncryptedData/ds:KeyInfo", corpus.NS)
    assert key_info is not None
    assert key_info.find(".//xenc:EncryptedKey", corpus.NS) is None
    retrieval = key_info.find("ds:RetrievalMethod", corpus.NS)
    assert retrieval is not None
    assert retrieval.get("URI") == "#" + str(wrapper[1].get("Id"))
    manager = xmlsec.KeysManager()
    manager.add_key(xmlsec.Key.from_memory(keys.sp.key_pem, xmlsec.constants.KeyDataFormatPem))
    with pytest.raises(xmlsec.Error):
        xmlsec.EncryptionContext(manager).decrypt(wrapper[0])


def test_four_encrypted_keys_hold_three_other_recipients_before_the_brokers() -> None:
    root = _root("encrypted_four_keys.xml")
    assert len(root.findall(".//xenc:EncryptedKey", corpus.NS)) == MAX_ENCRYPTED_KEYS


@pytest.mark.parametrize("name", ["transform_xpath_parameter.xml", "inclusive_namespaces_in_enveloped_transform.xml"])
def test_transform_parameter_files_verify_with_libxmlsec1_alone(keys: corpus.Keys, name: str) -> None:
    """The parameter is the only thing wrong: libxmlsec1 itself verifies these signatures."""
    assertion = _root(name).find("saml:Assertion", corpus.NS)
    assert assertion is not None
    signature = assertion.find("ds:Signature", corpus.NS)
    assert signature is not None
    enveloped = signature.find("ds:SignedInfo/ds:Reference/ds:Transforms/ds:Transform", corpus.NS)
    assert enveloped is not None
    assert enveloped.get("Algorithm") == "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
    assert len(enveloped) == 1
    ctx = xmlsec.SignatureContext()
    ctx.key = xmlsec.Key.from_memory(keys.idp.cert_pem, xmlsec.constants.KeyDataFormatCertPem)
    ctx.register_id(assertion, "ID")
    ctx.verify(signature)


def test_inclusive_namespaces_file_carries_the_prefix_list_in_both_places() -> None:
    signed_info = _root("inclusive_namespaces.xml").find("saml:Assertion/ds:Signature/ds:SignedInfo", corpus.NS)
    assert signed_info is not None
    lists = signed_info.findall(f".//{{{corpus.EXC_C14N}}}InclusiveNamespaces")
    assert [(e.getparent().tag, e.get("PrefixList")) for e in lists] == [  # type: ignore[union-attr]
        (f"{{{corpus.DS}}}CanonicalizationMethod", "xs"), (f"{{{corpus.DS}}}Transform", "xs")]


@pytest.mark.parametrize("name", ["encrypted_cbc_tampered_signed_response.xml",
                                  "encrypted_cbc_recipient_wrong_signed_response.xml"])
def test_signed_response_variants_are_signed_by_the_idp_over_the_ciphertext(keys: corpus.Keys, name: str) -> None:
    root = _root(name)
    assert root.find("saml:EncryptedAssertion", corpus.NS) is not None
    assert XmlVerifier([keys.idp.certificate]).verify(root, signed_parts=True) == keys.idp.certificate
    method = root.find("saml:EncryptedAssertion/xenc:EncryptedData/xenc:EncryptionMethod", corpus.NS)
    assert method is not None
    assert method.get("Algorithm") == corpus.XENC + "aes128-cbc"


# --- metadata from a URL does not roll back ------------------------------------------------------------------------

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)  # the TLS certificates are checked against the real time
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
KOMMUN_C = "kommun-c"
IDP_BASE = "https://localhost:8443/demo-idp"  # config/example's kommun-c entity_id is <IDP_BASE>/metadata
PATH = "/FederationMetadata/2007-06/FederationMetadata.xml"
CONTENT_TYPE = "application/samlmetadata+xml"


@dataclass(frozen=True)
class MetadataMaterial:
    signer: SigningKey      # signs the metadata (configured as signing_certificates)
    idp: SigningKey         # the IdP's signing key, in every copy
    withdrawn: SigningKey   # a key the IdP published once and withdrew (compromised, say)
    tls: TlsMaterial
    base: bytes


@pytest.fixture(scope="module")
def metadata_material(tmp_path_factory: pytest.TempPathFactory) -> MetadataMaterial:
    root = tmp_path_factory.mktemp("rollback")
    idp = SigningKey.generate("Kommun C IdP signing", NOW)
    return MetadataMaterial(signer=SigningKey.generate("Kommun C metadata signing", NOW), idp=idp,
                            withdrawn=SigningKey.generate("Kommun C IdP signing (withdrawn)", NOW),
                            tls=TlsMaterial.generate(root / "tls", NOW),
                            base=pysaml2_idp_metadata(IDP_BASE, idp, root / "idp"))


def _signed_metadata(m: MetadataMaterial, valid_until: dt.datetime | None, *more: SigningKey) -> bytes:
    return sign(prepare(m.base, valid_until=valid_until, more_signing=[k.certificate for k in more]), m.signer)


def _kommun_c_from(config_dir: Path, m: MetadataMaterial, url: str) -> Municipality:
    certs = config_dir / "certs" / "kommun-c"
    certs.mkdir(parents=True, exist_ok=True)
    (certs / "metadata-signing.pem").write_bytes(m.signer.cert_pem)
    block = f"  metadata:\n    url: {url}\n    signing_certificates: [certs/kommun-c/metadata-signing.pem]\n"
    replacing_block("municipalities/kommun-c.yaml", "  metadata:", block)(config_dir)
    return load_settings(config_dir).municipalities[KOMMUN_C]


@pytest.fixture
def https_server(metadata_material: MetadataMaterial, monkeypatch: pytest.MonkeyPatch) -> Iterator[HttpsFileServer]:
    monkeypatch.setenv("SSL_CERT_FILE", str(metadata_material.tls.ca_file))  # the fetcher trusts the test CA
    with HttpsFileServer(metadata_material.tls) as server:
        yield server
    assert server.errors == []


def test_an_older_correctly_signed_metadata_copy_does_not_replace_the_one_held(  # type: ignore[no-untyped-def]
        demo_material, tmp_path: Path, metadata_material: MetadataMaterial, https_server: HttpsFileServer) -> None:
    """The IdP published a copy valid until T1 that listed a signing key it has since withdrawn, then one valid
    until T2 > T1 without it. Whoever can answer for the metadata URL (a stale mirror or cache, DNS, a proxy)
    serves the T1 copy again: its signature is the metadata signer's own and T1 has not passed, but it is older
    than the copy held, so the refresh refuses it (last_error says so) and the T2 copy stays in use."""
    m = metadata_material
    config_dir = tmp_path / "config"
    shutil.copytree(demo_material.config, config_dir)
    t1, t2 = NOW + 7 * DAY, NOW + 14 * DAY
    url = https_server.put(PATH, _signed_metadata(m, t2), CONTENT_TYPE)
    clock = FixedClock(NOW)
    upstream = UpstreamMetadata([_kommun_c_from(config_dir, m, url)], clock, HttpFetcher(), background=False)
    try:
        held = upstream.get(KOMMUN_C)
        assert held.valid_until == t2
        assert held.signing_certificates == (m.idp.certificate,)

        https_server.put(PATH, _signed_metadata(m, t1, m.withdrawn), CONTENT_TYPE)  # the replayed older copy
        clock.advance(HOUR)
        upstream.refresh_all()

        assert upstream.get(KOMMUN_C) is held
        assert m.withdrawn.certificate not in upstream.get(KOMMUN_C).signing_certificates
        status = upstream.status()[KOMMUN_C]
        assert "older" in str(status["last_error"]), status
        assert (status["valid_until"], status["fetched_at"]) == (t2.isoformat(), NOW.isoformat())
        assert https_server.hits[PATH] == 2

        # the IdP's next copy (a later validUntil) is taken as usual
        https_server.put(PATH, _signed_metadata(m, t2 + DAY), CONTENT_TYPE)
        clock.advance(HOUR)
        upstream.refresh_all()
        assert upstream.get(KOMMUN_C).valid_until == t2 + DAY
        assert upstream.status()[KOMMUN_C]["last_error"] is None
    finally:
        upstream.close()


def test_a_signed_copy_without_valid_until_does_not_replace_one_with_it(  # type: ignore[no-untyped-def]
        demo_material, tmp_path: Path, metadata_material: MetadataMaterial, https_server: HttpsFileServer) -> None:
    """SAML Metadata §2.3.1: a copy without validUntil never expires. Replayed from before the IdP began to set
    one (ADFS sets none by default), it would bring a withdrawn key back for good, unnoticed."""
    m = metadata_material
    config_dir = tmp_path / "config"
    shutil.copytree(demo_material.config, config_dir)
    url = https_server.put(PATH, _signed_metadata(m, NOW + 14 * DAY), CONTENT_TYPE)
    clock = FixedClock(NOW)
    upstream = UpstreamMetadata([_kommun_c_from(config_dir, m, url)], clock, HttpFetcher(), background=False)
    try:
        held = upstream.get(KOMMUN_C)
        https_server.put(PATH, _signed_metadata(m, None, m.withdrawn), CONTENT_TYPE)
        clock.advance(HOUR)
        upstream.refresh_all()
        assert upstream.get(KOMMUN_C) is held
        assert m.withdrawn.certificate not in upstream.get(KOMMUN_C).signing_certificates
        assert "no validUntil" in str(upstream.status()[KOMMUN_C]["last_error"])
    finally:
        upstream.close()


# --- HTTP-Redirect queries are percent-encoded ASCII ---------------------------------------------------------------


@pytest.mark.parametrize("query", [
    "SAMLRequest=fZBBa4MwFIDv%2Bwvi7pqo1bWENUNhl4KDst122C&RelayState=\u00e9",
    "SAMLRequest=fZBBa4MwFIDv%2Bwvi7pqo1bWENUNhl4KDst122C&RelayState=\u00c3\u00a9",  # UTF-8 octets read as latin-1
    "SAMLRequest=fZBB\u00e9a4Mw&SigAlg=x&Signature=y",
], ids=["relay-state-latin-1", "relay-state-utf-8-octets", "in-the-message"])
def test_a_redirect_query_with_raw_non_ascii_characters_is_malformed(query: str) -> None:
    with pytest.raises(SamlRejected) as refused:
        from_redirect(query, "SAMLRequest")
    assert refused.value.reason == "saml_request_malformed"


def test_percent_encoded_non_ascii_is_fine() -> None:
    message = from_redirect("SAMLRequest=abc&RelayState=%C3%A9", "SAMLRequest")
    assert message.relay_state == "\u00e9"


@pytest.mark.parametrize(("content", "reason"), [
    pytest.param("<saml:EncryptedAssertion/>", "upstream_issuer_mismatch", id="encrypted-assertion-refused"),
    pytest.param("", None, id="plain-and-unsigned-may-leave-it-out"),
])
def test_a_response_with_an_encrypted_assertion_names_its_issuer(content: str, reason: str | None) -> None:
    """SAML Profiles §4.1.4.2 (errata): the Response's Issuer MUST be present when the Response is signed or an
    enclosed assertion is encrypted (nothing else then tells which IdP the ciphertext claims to come from)."""
    now = dt.datetime.now(dt.UTC)
    acs = "https://broker.example/saml/sp/acs"
    root = etree.fromstring(
        f'<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" '
        f'xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_r" Version="2.0" '
        f'IssueInstant="{now.strftime("%Y-%m-%dT%H:%M:%SZ")}" Destination="{acs}" InResponseTo="_req">'
        '<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>'
        f'{content}</samlp:Response>'.encode())
    expect = Expectations("https://idp.example", "https://broker.example/sp", acs, "_req", "assertion",
                          dt.timedelta(minutes=3), now)
    if reason is None:
        ResponseValidator.check_response(root, expect)
        return
    with pytest.raises(UpstreamRejected) as refused:
        ResponseValidator.check_response(root, expect)
    assert refused.value.reason == reason


# --- an unsigned Response where the IdP must sign it: refused before anything is decrypted ----------------------


class _NoDecryption(Decrypter):
    """Fails the test if the validator asks it to decrypt anything."""

    def decrypt(self, encrypted: etree._Element, max_bytes: int = 1 << 20) -> etree._Element:
        raise AssertionError("the validator decrypted ciphertext that nothing it requires had signed")

    def decrypt_detached(self, encrypted: etree._Element, max_bytes: int = 1 << 20) -> etree._Element:
        raise AssertionError("the validator decrypted ciphertext that nothing it requires had signed")


@pytest.mark.parametrize("required", ["response", "both"])
@pytest.mark.parametrize("recipient", ["broker", "someone-else"])
def test_an_unsigned_response_is_refused_as_unsigned_before_its_assertion_is_decrypted(
        keys: corpus.Keys, required: SignedElement, recipient: str) -> None:
    """With ``signed_element: response`` or ``both`` the Response's signature covers the EncryptedAssertion, which is
    what makes ``both`` the stronger setting for IdPs that encrypt with CBC (docs/federation.md): an unsigned
    Response is refused for that alone (``upstream_unsigned``, what the operator must fix at the IdP), whatever its
    ciphertext holds, and the ciphertext is never decrypted (no RSA and AES work, no parse of a plaintext nobody
    signed, for anyone who can post to the ACS)."""
    root = corpus.signed(corpus.Fields(), keys)
    corpus.encrypt(root, keys.sp if recipient == "broker" else keys.foreign, data="aes128-cbc")
    root = parse_response(corpus.serialize(root), corpus.MAX_BYTES)
    validator = ResponseValidator(XmlVerifier([keys.idp.certificate]), _NoDecryption([keys.sp.key_pem]))
    with pytest.raises(UpstreamRejected) as refused:
        validator.validate(root, dataclasses.replace(expectations(), signed_element=required))
    assert refused.value.reason == "upstream_unsigned"
    assert refused.value.detail == f"the IdP must sign: {required}"


# --- an encrypted Assertion verifies with the prefixes it was signed with -----------------------------------------


def _encrypted_where_it_stands(xml: bytes, recipient: corpus.KeyPair) -> bytes:
    """``xml`` (a Response with a signed Assertion) with that Assertion replaced, as text, by an EncryptedAssertion
    of its serialisation (AES-256-GCM, RSA-OAEP to ``recipient``), as an IdP writes it: nothing in the Response
    moves, so every prefix stays as the IdP signed it."""
    root = corpus.parse(xml)
    assertion = corpus.the_assertion(root)
    template = xmlsec.template.encrypted_data_create(etree.Element("holder"), xmlsec.constants.TransformAes256Gcm,
                                                     type=xmlsec.constants.TypeEncElement, ns="xenc")
    xmlsec.template.encrypted_data_ensure_cipher_value(template)
    key_info = xmlsec.template.encrypted_data_ensure_key_info(template, ns="ds")
    xmlsec.template.encrypted_data_ensure_cipher_value(
        xmlsec.template.add_encrypted_key(key_info, xmlsec.constants.TransformRsaOaep))
    manager = xmlsec.KeysManager()
    manager.add_key(xmlsec.Key.from_memory(recipient.cert_pem, xmlsec.constants.KeyDataFormatCertPem, None))
    context = xmlsec.EncryptionContext(manager)
    context.key = xmlsec.Key.generate(xmlsec.constants.KeyDataAes, 256, xmlsec.constants.KeyDataTypeSession)
    encrypted = etree.tostring(context.encrypt_binary(template, etree.tostring(assertion, with_tail=False)))
    text = xml.decode()
    start = text.index(f"<{assertion.prefix}:Assertion " if assertion.prefix else "<Assertion ")
    closing = f"</{assertion.prefix}:Assertion>" if assertion.prefix else "</Assertion>"
    end = text.index(closing) + len(closing)
    return (text[:start] + f'<EncryptedAssertion xmlns="{corpus.SAML}">' + encrypted.decode() + "</EncryptedAssertion>"
            + text[end:]).encode()


def _assertion_as(prefix: str | None) -> str:
    """The corpus Assertion written with ``prefix`` for its namespace (None: the default namespace)."""
    written = corpus.assertion_xml(corpus.Fields())
    if prefix is None:
        return written.replace("<saml:", "<").replace("</saml:", "</").replace("xmlns:saml=", "xmlns=")
    return written.replace("<saml:", f"<{prefix}:").replace("</saml:", f"</{prefix}:").replace(
        "xmlns:saml=", f"xmlns:{prefix}=")


@pytest.mark.parametrize("prefix", [
    pytest.param(None, id="the-assertion-in-the-default-namespace-as-dotnet-writes-it"),
    pytest.param("saml2", id="the-assertion-under-another-prefix-than-the-response-declares"),
    pytest.param("saml", id="the-assertion-under-the-responses-own-prefix"),
])
def test_a_decrypted_assertion_verifies_with_the_prefixes_the_idp_signed(keys: corpus.Keys, prefix: str | None
                                                                         ) -> None:
    """The Response declares ``saml`` for the assertion namespace; the IdP wrote its Assertion with another binding
    for it, signed it (exc-c14n: the canonical form holds the prefixes as written) and encrypted it. The decrypted
    Assertion's signature is verified on the elements as they were decrypted (XML Encryption §4.1), not after lxml
    has rebound them to the Response's prefix (broker.saml.xmlenc ``Decrypter.decrypt_detached``)."""
    root = corpus.parse(corpus.response_xml(corpus.Fields(), _assertion_as(prefix)))
    corpus.sign(corpus.the_assertion(root), keys.idp)
    plain = corpus.serialize(root)
    encrypted = _encrypted_where_it_stands(plain, keys.sp)
    assert b"EncryptedAssertion" in encrypted
    assert b"AttributeStatement" not in encrypted
    for xml in (plain, encrypted):
        assertion = _validator(keys).validate(parse_response(xml, corpus.MAX_BYTES), expectations())
        assert assertion.name_id == corpus.NAME_ID
        assert assertion.attributes[corpus.HSA_ATTRIBUTE] == (corpus.HSA_ID,)


def test_a_decrypted_assertion_whose_id_the_response_already_has_is_refused(keys: corpus.Keys) -> None:
    # an xs:ID is unique in its document (SAML Core §1.3.4): verified apart from the Response, the decrypted
    # Assertion's ID is checked again once it stands in it
    fields = dataclasses.replace(corpus.Fields(), assertion_id=corpus.RESPONSE_ID)
    root = corpus.parse(corpus.response_xml(fields, corpus.assertion_xml(fields)))
    corpus.sign(corpus.the_assertion(root), keys.idp)
    encrypted = _encrypted_where_it_stands(corpus.serialize(root), keys.sp)
    with pytest.raises(UpstreamRejected) as refused:
        _validator(keys).validate(parse_response(encrypted, corpus.MAX_BYTES), expectations())
    assert refused.value.reason == "upstream_assertion_invalid"
    assert corpus.RESPONSE_ID in refused.value.detail


def test_names_never_seen_before_inside_the_encrypted_data_do_not_grow_the_process_for_good(keys: corpus.Keys) -> None:
    """What anyone can post to the ACS of an IdP whose Assertion alone is signed (the default): an EncryptedData
    carrying 9,000 element names never seen before is copied for libxmlsec1 before any signature is looked at. A
    copy made in the request's thread kept every name for the thread's life (broker.saml.xmlparse), as parsing it
    there did: 300 such messages grew the process by ~90 MB for good."""
    template = (corpus.HERE / "encrypted_cbc_unsigned_assertion.xml").read_bytes()
    assert template.count(b"</ds:KeyInfo>") == 1
    decrypter = Decrypter([keys.sp.key_pem])

    def post(n: int) -> None:
        names = "".join(f"<n{n}x{i}/>" for i in range(9000)).encode()
        root = parse_response(template.replace(b"</ds:KeyInfo>", b"</ds:KeyInfo>" + names), corpus.MAX_BYTES)
        encrypted = root.find("saml:EncryptedAssertion", corpus.NS)
        assert encrypted is not None
        with contextlib.suppress(DecryptionRefused):
            decrypter.decrypt_detached(encrypted)

    for n in range(300):  # what the process holds at most (parsers' dictionaries, allocator arenas) is reached
        post(n)
    before = resident_kib()
    for n in range(300, 600):
        post(n)
    assert resident_kib() - before < 40_000


def test_prefixes_never_seen_before_in_a_prefix_list_do_not_grow_the_process_for_good(keys: corpus.Keys) -> None:
    """What anyone can post to the ACS naming a known IdP: a signature whose canonicalisation lists 20,000 prefixes
    never seen before in its PrefixList (exc-c14n §4), checked over SignedInfo before any key has verified
    anything. Each prefix was made an element of the request's thread for lxml's canonicalisation, which kept the
    name for the thread's life (broker.saml.xmlparse): 100 such messages grew the process by ~60 MB for good."""
    template = (corpus.HERE / "inclusive_namespaces.xml").read_bytes()
    assert template.count(b'PrefixList="xs"') == 2
    verifier = XmlVerifier([keys.idp.certificate])

    def post(n: int) -> None:
        prefixes = " ".join(f"p{n}x{i}" for i in range(20000)).encode()
        root = parse_response(template.replace(b'PrefixList="xs"', b'PrefixList="xs ' + prefixes + b'"', 1),
                              corpus.MAX_BYTES)
        assertion = root.find("saml:Assertion", corpus.NS)
        assert assertion is not None
        with pytest.raises(SignatureRejected):
            verifier.verify(assertion)

    for n in range(60):  # what the process holds at most (parsers' dictionaries, allocator arenas) is reached
        post(n)
    before = resident_kib()
    for n in range(60, 160):
        post(n)
    assert resident_kib() - before < 20_000
