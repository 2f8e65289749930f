"""What libxmlsec1 is asked to canonicalise is bounded before it verifies (broker.saml.xmldsig._check_namespace_load).

The digest of an enveloped signature is computed before the SignatureValue is checked, and for a message that
declares hundreds of namespaces over thousands of elements it took libxmlsec1 seconds of CPU: a forged signature,
or a genuine one copied from another message of the sender's, made it work for nothing. Every signature here is
libxmlsec1's own, in the styles peers write (namespaces and default namespaces where they put them, PrefixLists,
RSA and ECDSA): each verifies under the bound, and the expensive messages are refused in milliseconds.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

import pytest
import xmlsec
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from lxml import etree

from broker.saml.xmldsig import DS, SignatureRejected, XmlVerifier
from tests.factories.xml_keys import XmlSigningKey, xml_signing_key

NOW = dt.datetime(2026, 11, 27, 9, 0, tzinfo=dt.UTC)
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
C = xmlsec.constants


@pytest.fixture(scope="module")
def rsa_key() -> XmlSigningKey:
    return xml_signing_key(rsa.generate_private_key(65537, 2048), C.TransformRsaSha256)


KEYS: dict[str, Callable[[], XmlSigningKey]] = {
    "rsa-sha256": lambda: xml_signing_key(rsa.generate_private_key(65537, 2048), C.TransformRsaSha256),
    "rsa-sha512": lambda: xml_signing_key(rsa.generate_private_key(65537, 3072), C.TransformRsaSha512),
    "ecdsa-p256-sha256": lambda: xml_signing_key(ec.generate_private_key(ec.SECP256R1()), C.TransformEcdsaSha256),
    "ecdsa-p384-sha384": lambda: xml_signing_key(ec.generate_private_key(ec.SECP384R1()), C.TransformEcdsaSha384),
    "ecdsa-p521-sha512": lambda: xml_signing_key(ec.generate_private_key(ec.SECP521R1()), C.TransformEcdsaSha512),
}


def response(root_attributes: str = "", assertion_attributes: str = 'xmlns:saml="' + SAML + '"') -> str:
    return (f'<samlp:Response xmlns:samlp="{SAMLP}" {root_attributes} ID="_r1" Version="2.0">'
            f'<saml:Assertion {assertion_attributes} ID="_a1"><saml:Issuer>https://idp.example</saml:Issuer>'
            '<saml:AttributeStatement><saml:Attribute Name="x"><saml:AttributeValue xmlns:xs="http://www.w3.org/2001/'
            'XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="xs:string">v</saml:Attribute'
            'Value></saml:Attribute></saml:AttributeStatement></saml:Assertion></samlp:Response>')


def signed(key: XmlSigningKey, document: str, *, c14n: object = C.TransformExclC14N,
           signed_info_prefixes: str | None = None,
           transforms: tuple[object, ...] = (C.TransformEnveloped, C.TransformExclC14N), ds_as_default: bool = False,
           on: str = "assertion") -> etree._Element:
    """``document`` with an enveloped signature by libxmlsec1 on its Assertion (or Response), parsed again as a
    peer's message arrives; ``signed_info_prefixes`` is the PrefixList of SignedInfo's CanonicalizationMethod;
    ``ds_as_default`` writes the signature's elements without a prefix."""
    root = etree.fromstring(document.encode())
    target = root.find(f"{{{SAML}}}Assertion") if on == "assertion" else root
    assert target is not None
    signature = xmlsec.template.create(target, c14n, key.method, ns="ds")
    if signed_info_prefixes is not None:
        method = signature.find(f"{{{DS}}}SignedInfo/{{{DS}}}CanonicalizationMethod")
        xmlsec.template.transform_add_c14n_inclusive_namespaces(method, signed_info_prefixes)
    ref = xmlsec.template.add_reference(signature, C.TransformSha256, uri="#" + str(target.get("ID")))
    for transform in transforms:
        xmlsec.template.add_transform(ref, transform)
    issuer = target.find(f"{{{SAML}}}Issuer")
    if issuer is not None:
        issuer.addnext(signature)
    else:
        target.insert(0, signature)
    if ds_as_default:  # (the template's own ns=None leaves its Transforms in no namespace)
        text = etree.tostring(root).decode().replace("<ds:", "<").replace("</ds:", "</")
        root = etree.fromstring(text.replace(f'xmlns:ds="{DS}"', f'xmlns="{DS}"').encode())
        target = root.find(f"{{{SAML}}}Assertion") if on == "assertion" else root
        assert target is not None
        signature = target.find(f"{{{DS}}}Signature")
    ctx = xmlsec.SignatureContext()
    ctx.key = key.xmlsec_key
    ctx.register_id(target, "ID")
    ctx.sign(signature)
    return etree.fromstring(etree.tostring(root))


def assertion_of(root: etree._Element) -> etree._Element:
    found = root.find(f"{{{SAML}}}Assertion")
    assert found is not None
    return found


# documents as peers write them: where the namespaces are declared and which are in scope at SignedInfo
DOCUMENTS = {
    "prefixes-on-each-element": response(),
    "saml-declared-on-the-response": response(f'xmlns:saml="{SAML}"', ""),
    "unused-namespaces-on-the-response": response('xmlns:xs="http://www.w3.org/2001/XMLSchema" '
                                                  'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
                                                  'xmlns:foo="urn:foo"'),
    "ds-declared-on-the-response": response(f'xmlns:ds="{DS}"'),
    "a-default-namespace-on-the-response": response('xmlns="urn:oasis:names:tc:SAML:2.0:metadata"'),
    "the-assertion-in-the-default-namespace": response("", f'xmlns="{SAML}" xmlns:saml="{SAML}"'),
}


C14N_METHODS = {
    "exc-c14n": (C.TransformExclC14N, None),
    "exc-c14n-with-comments": (C.TransformExclC14NWithComments, None),
    "exc-c14n-with-a-prefix-list": (C.TransformExclC14N, "xs samlp"),
    "exc-c14n-listing-the-default-namespace": (C.TransformExclC14N, "#default saml"),
    "inclusive-c14n": (C.TransformInclC14N, None),
}


@pytest.mark.parametrize(("key_name", "document", "method"), [
    pytest.param(key_name, document, method, id=f"{method}-{document}-{key_name}")
    for key_name in KEYS for document in DOCUMENTS for method in C14N_METHODS
])
def test_libxmlsec1s_own_signatures_verify(key_name: str, document: str, method: str,
                                           keys: dict[str, XmlSigningKey]) -> None:
    key = keys[key_name]
    c14n, prefixes = C14N_METHODS[method]
    root = signed(key, DOCUMENTS[document], c14n=c14n, signed_info_prefixes=prefixes)
    key.verifier.verify(assertion_of(root))


@pytest.fixture(scope="module")
def keys() -> dict[str, XmlSigningKey]:
    return {name: make() for name, make in KEYS.items()}


@pytest.mark.parametrize("c14n", [pytest.param(C.TransformInclC14N, id="inclusive-c14n"),
                                  pytest.param(C.TransformExclC14N, id="exc-c14n")])
def test_a_signature_in_the_default_namespace_verifies(rsa_key: XmlSigningKey, c14n: object) -> None:
    """``<Signature xmlns="http://www.w3.org/2000/09/xmldsig#">``, as some peers write it, on the Response."""
    root = signed(rsa_key, response(), on="response", c14n=c14n, ds_as_default=True)
    assert root.find(f"{{{DS}}}Signature") is not None
    rsa_key.verifier.verify(root, signed_parts=True)


def forged(root: etree._Element) -> etree._Element:
    """The same document with another SignatureValue of the right length."""
    value = root.find(f".//{{{DS}}}SignatureValue")
    assert value is not None
    assert value.text is not None
    text = value.text.strip()
    value.text = ("B" if text[0] == "A" else "A") + text[1:]
    return root


def test_a_forged_signature_value_is_refused(rsa_key: XmlSigningKey) -> None:
    root = forged(signed(rsa_key, response()))
    with pytest.raises(SignatureRejected, match="does not verify with the sender's metadata keys"):
        rsa_key.verifier.verify(assertion_of(root))


def bloated(document: str, namespaces: int, elements: int) -> str:
    """``document`` with ``namespaces`` declarations on the Assertion and ``elements`` empty elements in its
    Advice: the shape that made libxmlsec1's digest expensive."""
    declarations = " ".join(f'xmlns:n{i}="urn:n:{i}"' for i in range(namespaces))
    opening = f'<saml:Assertion xmlns:saml="{SAML}"'
    advice = f"<saml:Advice>{'<a/>' * elements}</saml:Advice>"
    return document.replace(opening, f"{opening} {declarations}") \
        .replace("</saml:AttributeStatement>", "</saml:AttributeStatement>" + advice)


def test_a_forged_signature_over_an_expensive_digest_is_refused_at_once(rsa_key: XmlSigningKey) -> None:
    """200 namespaces over 10,000 elements, the enveloped-signature transform alone, a wrong SignatureValue:
    libxmlsec1 spent 9 s on the digest; refused in milliseconds (the bound is generous for a slow machine)."""
    root = forged(signed(rsa_key, bloated(response(), 200, 10_000), transforms=(C.TransformEnveloped,)))
    started = time.perf_counter()
    with pytest.raises(SignatureRejected, match="declares too many namespaces for its size"):
        rsa_key.verifier.verify(assertion_of(root))
    assert time.perf_counter() - started < 3.0  # libxmlsec1 took 9-21 s for these


def test_a_genuine_signature_copied_onto_an_expensive_message_is_refused_at_once(rsa_key: XmlSigningKey) -> None:
    """The sender's real signature over a small Assertion (from a Response that passed through a browser), put on
    a bloated Assertion with the same ID: its SignedInfo verifies, so only a bound before the digest helps."""
    genuine = signed(rsa_key, response())
    signature = assertion_of(genuine).find(f"{{{DS}}}Signature")
    assert signature is not None
    root = etree.fromstring(bloated(response(), 400, 10_000).encode())
    assertion_of(root)[0].addnext(signature)
    started = time.perf_counter()
    with pytest.raises(SignatureRejected, match="declares too many namespaces for its size"):
        rsa_key.verifier.verify(assertion_of(root))
    assert time.perf_counter() - started < 3.0  # libxmlsec1 took 9-21 s for these


def test_a_large_assertion_of_an_ordinary_kind_verifies(rsa_key: XmlSigningKey) -> None:
    """500 attributes, each value declaring xs and xsi as pysaml2 writes them: far below the bound."""
    attribute = ('<saml:Attribute Name="a"><saml:AttributeValue xmlns:xs="http://www.w3.org/2001/XMLSchema" '
                 'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="xs:string">v</saml:AttributeValue>'
                 '</saml:Attribute>')
    document = response().replace("<saml:AttributeStatement>", "<saml:AttributeStatement>" + attribute * 500)
    rsa_key.verifier.verify(assertion_of(signed(rsa_key, document)))


def test_metadata_may_be_large_by_nature(rsa_key: XmlSigningKey) -> None:
    """An aggregate from a configured URL is verified without the bound (broker.saml.metadata); a message never."""
    root = signed(rsa_key, bloated(response(), 200, 3_000))
    unbounded = XmlVerifier([rsa_key.certificate], max_namespace_load=None)
    assert unbounded.verify(assertion_of(root)) == rsa_key.certificate
    with pytest.raises(SignatureRejected, match="declares too many namespaces"):
        rsa_key.verifier.verify(assertion_of(root))
