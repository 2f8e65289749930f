"""The in-process signer (broker/saml/xmldsig.py ``XmlSigner``) against libxmlsec1 (``Libxmlsec1Signer``).

XmlSigner fills libxmlsec1's template with values it computes itself (libxml2's exclusive canonical form,
OpenSSL's SHA-256 and RSA). RSA PKCS#1 v1.5 is deterministic, so for every document below both signers must
write the same bytes; ECDSA is randomised, so there the digest must agree and libxmlsec1 must verify the value.
The documents are what the broker signs (Responses, error Responses, metadata) and what could trip up a
canonicaliser: escaped and non-ASCII text, carriage returns, comments, namespaces declared far away or not
used, the xs prefix used only inside attribute values, an element signed beside an already signed one.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import threading
from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from lxml import etree

from broker.clock import FixedClock
from broker.model import ReplyTarget
from broker.saml.response import AssertionContent, ReleasedAttribute, ResponseBuilder
from broker.saml.xmldsig import (
    DS,
    ECDSA_SHA256,
    RSA_SHA256,
    Libxmlsec1Signer,
    SignatureRejected,
    XmlSigner,
    XmlVerifier,
)

NS = {"ds": DS, "saml2": "urn:oasis:names:tc:SAML:2.0:assertion", "saml2p": "urn:oasis:names:tc:SAML:2.0:protocol"}
NOW = dt.datetime(2026, 11, 27, 9, 0, tzinfo=dt.UTC)
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def _certificate(key: PrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "broker signing")])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))


def _pem(key: PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class Signers:
    def __init__(self, key: PrivateKey) -> None:
        self.certificate = _certificate(key)
        self.ours = XmlSigner(self.certificate, key)
        self.libxmlsec1 = Libxmlsec1Signer(_pem(key), self.certificate, key)
        self.verifier = XmlVerifier([self.certificate])


@pytest.fixture(scope="module")
def rsa_signers() -> Signers:
    return Signers(rsa.generate_private_key(65537, 2048))


# --- the documents -----------------------------------------------------------------------------------------------

Document = Callable[[XmlSigner], tuple[etree._Element, etree._Element, etree._Element | None]]
"""Builds a document with the signer's help where needed; returns (root, element to sign, sign after)."""

HOSTILE = "Åsa & <Örjan> \"quoted\" 'apos' \t tab\r\nCRLF ]]> \u00a0nbsp \U0001f600"


def _target() -> ReplyTarget:
    return ReplyTarget("https://sp.example/sp?a=1&b=2", "https://sp.example/acs", "_req<&>\"", None)


def _content(*values: str) -> AssertionContent:
    return AssertionContent(
        name_id="pseudonym", name_id_format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent",
        loa_uri="http://id.elegnamnden.se/loa/1.0/loa3", authn_instant=NOW, session_index="_s1",
        session_not_on_or_after=NOW + dt.timedelta(hours=8),
        attributes=[ReleasedAttribute("urn:oid:2.5.4.42", "givenName", values or ("Anna",)),
                    ReleasedAttribute("urn:oid:1.2.752.29.6.2.1", "employeeHsaId", ("SE2321000016-1234",))])


def _unsigned_assertion(signer: XmlSigner, *values: str) -> tuple[etree._Element, etree._Element, etree._Element]:
    """The broker's own Response, its Assertion's signature taken off again."""
    builder = ResponseBuilder("https://broker.example/idp", signer, FixedClock(NOW),
                              assertion_lifetime=dt.timedelta(minutes=5), clock_skew=dt.timedelta(seconds=30))
    root = etree.fromstring(builder.success(_target(), _content(*values), sign_response=False))
    assertion = root.find("saml2:Assertion", NS)
    assert assertion is not None
    signature = assertion.find("ds:Signature", NS)
    assert signature is not None
    assertion.remove(signature)
    return root, assertion, assertion[0]


def assertion_in_response(signer: XmlSigner) -> tuple[etree._Element, etree._Element, etree._Element | None]:
    return _unsigned_assertion(signer)


def hostile_attribute_values(signer: XmlSigner) -> tuple[etree._Element, etree._Element, etree._Element | None]:
    return _unsigned_assertion(signer, HOSTILE, "", "  leading and trailing  ")


def response_around_signed_assertion(signer: XmlSigner
                                     ) -> tuple[etree._Element, etree._Element, etree._Element | None]:
    root, assertion, issuer = _unsigned_assertion(signer)
    signer.sign(assertion, after=issuer)
    return root, root, root[0]


def comments_and_processing_instructions(signer: XmlSigner
                                         ) -> tuple[etree._Element, etree._Element, etree._Element | None]:
    root, assertion, issuer = _unsigned_assertion(signer)
    assertion.insert(2, etree.Comment(" a comment is not signed (XML-DSig §4.3.3.3) "))
    assertion.insert(3, etree.ProcessingInstruction("keep", "but this is"))
    return root, assertion, issuer


def namespaces_declared_above_and_unused(signer: XmlSigner
                                         ) -> tuple[etree._Element, etree._Element, etree._Element | None]:
    outer = etree.Element("{urn:example:outer}Envelope", nsmap={
        "o": "urn:example:outer", "unused": "urn:example:unused", "xs": "http://www.w3.org/2001/XMLSchema",
        None: "urn:example:default"})
    element = etree.SubElement(outer, "{urn:example:default}Signed", ID="_signed-1")
    etree.SubElement(element, "{urn:example:default}Issuer").text = "x"
    child = etree.SubElement(element, "{urn:example:outer}Value", {"{urn:example:unused}flag": "1"})
    child.set("{http://www.w3.org/2001/XMLSchema-instance}type", "xs:string")
    child.text = HOSTILE
    etree.SubElement(outer, "{urn:example:default}After").text = "outside the signed element"
    return outer, element, element[0]


def metadata_document(signer: XmlSigner) -> tuple[etree._Element, etree._Element, etree._Element | None]:
    md = "urn:oasis:names:tc:SAML:2.0:metadata"
    root = etree.Element(f"{{{md}}}EntityDescriptor", nsmap={"md": md, "mdui": "urn:oasis:names:tc:SAML:metadata:ui"},
                         entityID="https://broker.example/idp", ID="_metadata")
    idp = etree.SubElement(root, f"{{{md}}}IDPSSODescriptor",
                           protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol")
    ui = etree.SubElement(etree.SubElement(idp, f"{{{md}}}Extensions"),
                          "{urn:oasis:names:tc:SAML:metadata:ui}UIInfo")
    name = etree.SubElement(ui, "{urn:oasis:names:tc:SAML:metadata:ui}DisplayName")
    name.set("{http://www.w3.org/XML/1998/namespace}lang", "sv")
    name.text = "Regionens inloggning för kommuner"
    return root, root, None


DOCUMENTS = [
    pytest.param(assertion_in_response, id="assertion-in-response"),
    pytest.param(hostile_attribute_values, id="hostile-attribute-values"),
    pytest.param(response_around_signed_assertion, id="response-around-signed-assertion"),
    pytest.param(comments_and_processing_instructions, id="comments-and-processing-instructions"),
    pytest.param(namespaces_declared_above_and_unused, id="namespaces-declared-above-and-unused"),
    pytest.param(metadata_document, id="metadata-document"),
]


def in_new_threads(*targets: Callable[[], None]) -> None:
    """Run each target in a thread of its own, all at once, and wait for them."""
    threads = [threading.Thread(target=target) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _sign_both(signers: Signers, document: Document) -> tuple[etree._Element, etree._Element]:
    """The same document signed once by each signer; returns the two signed elements."""
    root, element, after = document(signers.ours)
    twin = copy.deepcopy(root)
    twin_element = twin if element is root else twin.xpath("//*[@ID=$id]", id=element.get("ID"))[0]
    twin_after = None if after is None else twin_element[list(element).index(after)]
    signers.ours.sign(element, after=after)
    signers.libxmlsec1.sign(twin_element, after=twin_after)
    return element, twin_element


@pytest.mark.parametrize("document", DOCUMENTS)
def test_rsa_signature_is_byte_for_byte_libxmlsec1s(rsa_signers: Signers, document: Document) -> None:
    ours, theirs = _sign_both(rsa_signers, document)
    assert etree.tostring(ours.getroottree()) == etree.tostring(theirs.getroottree())
    assert ours.find("ds:Signature/ds:SignedInfo/ds:SignatureMethod", NS).get("Algorithm") == RSA_SHA256  # type: ignore[union-attr]
    assert rsa_signers.verifier.verify(ours, signed_parts=True) == rsa_signers.certificate


@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP384R1()], ids=["p256", "p384"])
@pytest.mark.parametrize("document", DOCUMENTS)
def test_ecdsa_digest_is_libxmlsec1s_and_libxmlsec1_verifies(curve: ec.EllipticCurve, document: Document) -> None:
    signers = Signers(ec.generate_private_key(curve))
    ours, theirs = _sign_both(signers, document)
    digest = "ds:Signature/ds:SignedInfo/ds:Reference/ds:DigestValue"
    assert ours.findtext(digest, namespaces=NS) == theirs.findtext(digest, namespaces=NS)
    assert ours.find("ds:Signature/ds:SignedInfo/ds:SignatureMethod", NS).get("Algorithm") == ECDSA_SHA256  # type: ignore[union-attr]
    value = "".join(ours.findtext("ds:Signature/ds:SignatureValue", namespaces=NS, default="").split())
    assert len(base64.b64decode(value)) == 2 * ((curve.key_size + 7) // 8)  # r || s (XML-DSig 1.1 §6.4.3)
    assert signers.verifier.verify(ours, signed_parts=True) == signers.certificate


@pytest.mark.parametrize("change", [
    pytest.param(lambda e: e.find(".//saml2:AttributeValue", NS).__setattr__("text", "Mallory"), id="text"),
    pytest.param(lambda e: e.find("saml2:Subject/saml2:NameID", NS).set("Format", "x"), id="attribute"),
    pytest.param(lambda e: e.find(".//saml2:AttributeValue", NS).set(
        "{http://www.w3.org/2001/XMLSchema-instance}type", "xs:integer"), id="xs-prefixed-value"),
])
def test_a_change_after_signing_does_not_verify(rsa_signers: Signers, change: Callable[[etree._Element], None]
                                                ) -> None:
    _, assertion, issuer = _unsigned_assertion(rsa_signers.ours)
    rsa_signers.ours.sign(assertion, after=issuer)
    change(assertion)
    with pytest.raises(SignatureRejected, match="does not verify"):
        rsa_signers.verifier.verify(assertion)


def test_an_element_without_id_or_already_signed_is_refused(rsa_signers: Signers) -> None:
    with pytest.raises(ValueError, match="no ID"):
        rsa_signers.ours.sign(etree.Element("NoId"))
    _, assertion, issuer = _unsigned_assertion(rsa_signers.ours)
    rsa_signers.ours.sign(assertion, after=issuer)
    with pytest.raises(ValueError, match="signed already"):
        rsa_signers.ours.sign(assertion, after=issuer)


def test_signs_from_many_threads_at_once(rsa_signers: Signers) -> None:
    """No lock: each signature works on its own document and its own copy of the template."""
    signed: list[etree._Element] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(10):
                _, assertion, issuer = _unsigned_assertion(rsa_signers.ours)
                rsa_signers.ours.sign(assertion, after=issuer)
                signed.append(assertion)
        except BaseException as exc:  # reported below
            errors.append(exc)

    in_new_threads(*[work] * 6)
    assert not errors
    assert len(signed) == 60
    for assertion in signed:
        assert rsa_signers.verifier.verify(assertion) == rsa_signers.certificate


def test_the_first_signature_in_a_new_thread_covers_the_xs_declarations(rsa_signers: Signers) -> None:
    """lxml keeps a dictionary of names per thread and leaves out of exc-c14n's PrefixList any prefix that its
    dictionary has not seen; a namespace declared through nsmap never enters it. A thread whose first lxml
    work is building and signing a Response would then digest the Assertion without the xs declarations that
    the serialised Response carries, and every SP would refuse the signature."""
    results: list[bytes] = []

    def first_work_of_a_thread() -> None:
        builder = ResponseBuilder("https://broker.example/idp", rsa_signers.ours, FixedClock(NOW),
                                  assertion_lifetime=dt.timedelta(minutes=5), clock_skew=dt.timedelta(seconds=30))
        results.append(builder.success(_target(), _content(), sign_response=True))

    in_new_threads(first_work_of_a_thread)
    root = etree.fromstring(results[0])  # as the SP sees it
    assertion = root.find("saml2:Assertion", NS)
    assert assertion is not None
    assert assertion.find(".//saml2:AttributeValue", NS) is not None
    assert rsa_signers.verifier.verify(assertion) == rsa_signers.certificate
    assert rsa_signers.verifier.verify(root, signed_parts=True) == rsa_signers.certificate


def xs_declared_below_a_root_built_elsewhere(signer: XmlSigner
                                              ) -> tuple[etree._Element, etree._Element, etree._Element | None]:
    root = etree.Element("{urn:example:default}Signed", ID="_root", nsmap={None: "urn:example:default"})
    etree.SubElement(root, "{urn:example:default}Issuer").text = "x"
    value = etree.SubElement(root, "{urn:example:default}Value", nsmap={"xs": "http://www.w3.org/2001/XMLSchema"})
    value.set("{http://www.w3.org/2001/XMLSchema-instance}type", "xs:string")
    value.text = "built in one thread, signed in another"
    return root, root, root[0]


@pytest.mark.parametrize("document", [
    *DOCUMENTS, pytest.param(xs_declared_below_a_root_built_elsewhere, id="xs-declared-below-a-root-built-elsewhere")])
def test_a_document_built_in_one_thread_and_signed_in_another(rsa_signers: Signers, document: Document) -> None:
    """Both threads new: the document's names dictionary is the first's, the signing thread's is empty. The
    signed document, serialised and parsed again as a peer would, verifies and is libxmlsec1's byte for byte."""
    built: list[tuple[etree._Element, etree._Element, etree._Element | None]] = []
    serialised: list[bytes] = []

    def build() -> None:
        built.append(document(rsa_signers.ours))

    def sign() -> None:
        root, element, after = built[0]
        rsa_signers.ours.sign(element, after=after)
        serialised.append(etree.tostring(root))

    in_new_threads(build)
    in_new_threads(sign)
    root = etree.fromstring(serialised[0])
    element_id = built[0][1].get("ID")
    element = root if root.get("ID") == element_id else root.xpath("//*[@ID=$id]", id=element_id)[0]
    assert rsa_signers.verifier.verify(element, signed_parts=True) == rsa_signers.certificate
    twin = etree.fromstring(serialised[0])
    twin_element = twin if twin.get("ID") == element_id else twin.xpath("//*[@ID=$id]", id=element_id)[0]
    signature = twin_element.find("ds:Signature", NS)
    previous = signature.getprevious()
    twin_element.remove(signature)
    rsa_signers.libxmlsec1.sign(twin_element, after=previous)
    assert etree.tostring(twin) == etree.tostring(root)


def test_a_canonical_form_without_the_prefix_list_namespace_is_refused(rsa_signers: Signers,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Should lxml drop the PrefixList anyway (as it does for a prefix its dictionary lacks), the signer fails
    instead of writing a signature nobody verifies."""
    tostring = etree.tostring

    def dropping_the_prefix_list(element: etree._Element, **options: object) -> bytes:
        options.pop("inclusive_ns_prefixes", None)
        return tostring(element, **options)  # type: ignore[call-overload, no-any-return]

    monkeypatch.setattr(etree, "tostring", dropping_the_prefix_list)
    _, assertion, issuer = _unsigned_assertion(rsa_signers.libxmlsec1)
    with pytest.raises(RuntimeError, match="exc-c14n left out the PrefixList namespace 'xs'"):
        rsa_signers.ours.sign(assertion, after=issuer)
    xs_in_scope = namespaces_declared_above_and_unused(rsa_signers.ours)  # declared above: refused too
    with pytest.raises(RuntimeError):
        rsa_signers.ours.sign(xs_in_scope[1], after=xs_in_scope[2])
    metadata = metadata_document(rsa_signers.ours)  # no xs anywhere: the PrefixList changes nothing
    rsa_signers.ours.sign(metadata[1], after=metadata[2])
