"""Before libxmlsec1 computes a Reference's digest (which it does before it checks the SignatureValue, and which
some messages made cost seconds of CPU): the SignatureValue is checked over SignedInfo with the sender's keys
(a forged signature goes no further), and what the message asks of the canonicalisation is bounded (for a
genuine signature copied onto another message). broker.saml.xmldsig: XmlVerifier._signers_of_signed_info,
_check_work.

The check over SignedInfo canonicalises SignedInfo itself, so it must make the bytes libxmlsec1 makes: every
signature here is libxmlsec1's own, in the styles peers write (namespaces and default namespaces where they put
them, PrefixLists, inclusive and exclusive canonicalisation, RSA and ECDSA up to P-521), and each must verify.
"""

from __future__ import annotations

import base64
import datetime as dt
import time
from collections.abc import Callable

import pytest
import xmlsec
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from lxml import etree

from broker.saml.xmldsig import DS, MAX_ATTRIBUTES, MAX_DEPTH, SignatureRejected, XmlVerifier
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
           on: str = "assertion", ds_declared_above: str | None = None) -> etree._Element:
    """``document`` with an enveloped signature by libxmlsec1 on its Assertion (or Response), parsed again as a
    peer's message arrives; ``signed_info_prefixes`` is the PrefixList of SignedInfo's CanonicalizationMethod;
    ``ds_as_default`` writes the signature's elements without a prefix; ``ds_declared_above`` (declarations for
    the Assertion's start tag) leaves the ds prefix undeclared on the signature, bound where ``document`` declares
    it, and adds those declarations (written as text: lxml's tree API would rebind the signature to them)."""
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
    if ds_declared_above is not None:
        text = etree.tostring(root).decode().replace(f'<ds:Signature xmlns:ds="{DS}"', "<ds:Signature")
        text = text.replace("<saml:Assertion ", f"<saml:Assertion {ds_declared_above} ")
        root = etree.fromstring(text.encode())
        target = root.find(f"{{{SAML}}}Assertion") if on == "assertion" else root
        assert target is not None
        signature = target.find(f"{{{DS}}}Signature")
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


# a PrefixList naming "#default" where a default namespace other than ds's is in scope is refused as unsupported
# (test_a_prefix_list_naming_a_foreign_default_namespace_is_refused)
FOREIGN_DEFAULT = ("a-default-namespace-on-the-response", "the-assertion-in-the-default-namespace")


@pytest.mark.parametrize(("key_name", "document", "method"), [
    pytest.param(key_name, document, method, id=f"{method}-{document}-{key_name}")
    for key_name in KEYS for document in DOCUMENTS for method in C14N_METHODS
    if not (method == "exc-c14n-listing-the-default-namespace" and document in FOREIGN_DEFAULT)
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


@pytest.mark.parametrize("method", [pytest.param(method, id=method) for method in C14N_METHODS])
@pytest.mark.parametrize("alias", [pytest.param("dsig", id="another-prefix"),
                                   pytest.param(None, id="the-default-namespace")])
def test_a_second_binding_of_the_signature_namespace_nearer_than_its_own_verifies(
        rsa_key: XmlSigningKey, method: str, alias: str | None) -> None:
    """The Response declares ``ds``, which the signature's elements use; the Assertion binds the signature namespace
    once more (``xmlns:dsig`` or ``xmlns``). libxmlsec1 canonicalises SignedInfo with the prefixes as written
    (exc-c14n §3, C14N 1.0 §2.3), and so must the check over SignedInfo: a copy made through lxml's tree API takes
    the nearest binding of the namespace instead (it matches namespaces by URI)."""
    c14n, prefixes = C14N_METHODS[method]
    declaration = f'xmlns:{alias}="{DS}"' if alias else f'xmlns="{DS}"'
    root = signed(rsa_key, response(f'xmlns:ds="{DS}"'), c14n=c14n, signed_info_prefixes=prefixes,
                  ds_declared_above=declaration)
    signature = assertion_of(root).find(f"{{{DS}}}Signature")
    assert signature is not None
    assert signature.prefix == "ds"
    assert assertion_of(root).nsmap[alias] == DS
    if alias is None and method == "exc-c14n-listing-the-default-namespace":
        # the default namespace, ds's own but unused by a ds: SignedInfo, rendered because listed: not supported
        with pytest.raises(SignatureRejected, match="foreign default namespace is not supported"):
            rsa_key.verifier.verify(assertion_of(root))
        return
    rsa_key.verifier.verify(assertion_of(root))


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


def copied_onto(rsa_key: XmlSigningKey, document: str) -> etree._Element:
    """``document`` carrying the sender's genuine signature of a small Assertion with the same ID (taken from a
    Response that passed through a browser; inclusive canonicalisation and the enveloped-signature transform
    alone, the styles that cost libxmlsec1 most): its SignedInfo verifies, its digest may not."""
    genuine = signed(rsa_key, response(), c14n=C.TransformInclC14N, transforms=(C.TransformEnveloped,))
    signature = assertion_of(genuine).find(f"{{{DS}}}Signature")
    assert signature is not None
    root = etree.fromstring(document.encode())
    assertion_of(root)[0].addnext(signature)
    return root


def deep(levels: int) -> str:
    return response().replace("</saml:AttributeStatement>",
                              "</saml:AttributeStatement><saml:Advice>" + "<b>" * levels + "</b>" * levels +
                              "</saml:Advice>")


def many_attributes(count: int) -> str:
    names = " ".join(f'a{i}="x"' for i in range(count))
    return response().replace("</saml:AttributeStatement>", f"</saml:AttributeStatement><saml:Advice {names}/>")


@pytest.mark.parametrize(("document", "refusal"), [
    pytest.param(bloated(response(), 400, 10_000), "declares too many namespaces for its size",
                 id="400-namespaces-over-10000-elements"),
    pytest.param(deep(40), f"nests elements deeper than {MAX_DEPTH} levels", id="40-levels-deep"),
    pytest.param(many_attributes(24_000), f"carries more than {MAX_ATTRIBUTES} attributes",
                 id="24000-attributes-on-one-element"),
    # outside the signed element, and the digest still matches: libxml2 canonicalises the whole document (11 s)
    pytest.param(response().replace("<saml:Assertion ", "<samlp:Extensions " + " ".join(
        f'xmlns:n{i}="urn:n:{i}"' for i in range(400)) + ">" + "<a/>" * 10_000 + "</samlp:Extensions><saml:Assertion ",
        1), "declares too many namespaces for its size", id="400-namespaces-over-10000-elements-beside-it"),
])
def test_a_genuine_signature_on_an_expensive_message_is_refused_at_once(rsa_key: XmlSigningKey, document: str,
                                                                      refusal: str) -> None:
    """Each shape cost libxmlsec1 seconds (9 s, 1.8 s at 250 levels, 2.5 s) with the signature copied on."""
    root = copied_onto(rsa_key, document)
    started = time.perf_counter()
    with pytest.raises(SignatureRejected, match=refusal):
        rsa_key.verifier.verify(assertion_of(root))
    assert time.perf_counter() - started < 3.0


@pytest.mark.parametrize("document", [
    pytest.param(bloated(response(), 15, 2_000), id="15-namespaces-over-2000-elements"),
    pytest.param(many_attributes(MAX_ATTRIBUTES), id="64-attributes"),
    pytest.param(deep(20), id="20-levels-deep"),
])
def test_a_forged_signature_goes_no_further_than_signed_info(rsa_key: XmlSigningKey, document: str) -> None:
    root = forged(signed(rsa_key, document, transforms=(C.TransformEnveloped,)))
    with pytest.raises(SignatureRejected, match="does not verify with the sender's metadata keys"):
        rsa_key.verifier.verify(assertion_of(root))


def test_a_signature_value_that_is_not_base64_is_refused(rsa_key: XmlSigningKey) -> None:
    root = signed(rsa_key, response())
    value = root.find(f".//{{{DS}}}SignatureValue")
    assert value is not None
    value.text = "not*base64"
    with pytest.raises(SignatureRejected, match="the SignatureValue is not base64"):
        rsa_key.verifier.verify(assertion_of(root))


@pytest.mark.parametrize("prefix_list", ["a:b", "1x", "xs <", "&amp;"])
def test_a_prefix_list_entry_that_is_no_prefix_is_refused(rsa_key: XmlSigningKey, prefix_list: str) -> None:
    root = signed(rsa_key, response(), signed_info_prefixes="xs")
    listed = root.find(f".//{{{DS}}}CanonicalizationMethod/{{http://www.w3.org/2001/10/xml-exc-c14n#}}"
                       "InclusiveNamespaces")
    assert listed is not None
    listed.set("PrefixList", prefix_list)
    with pytest.raises(SignatureRejected, match="which is no namespace prefix"):
        rsa_key.verifier.verify(assertion_of(root))


@pytest.mark.parametrize("document", FOREIGN_DEFAULT)
def test_a_prefix_list_naming_a_foreign_default_namespace_is_refused(rsa_key: XmlSigningKey, document: str) -> None:
    root = signed(rsa_key, DOCUMENTS[document], signed_info_prefixes="#default")
    with pytest.raises(SignatureRejected, match="foreign default namespace is not supported") as refused:
        rsa_key.verifier.verify(assertion_of(root))
    assert refused.value.algorithm


def test_an_ecdsa_value_without_its_leading_zero_octets_verifies(keys: dict[str, XmlSigningKey]) -> None:
    """Java signers write r and s without leading zero octets; libxmlsec1 splits any even length in half."""
    key = keys["ecdsa-p521-sha512"]
    for _ in range(64):
        root = signed(key, response())
        value = root.find(f".//{{{DS}}}SignatureValue")
        assert value is not None
        octets = base64.b64decode("".join((value.text or "").split()))
        r, s = octets[:66], octets[66:]
        if r[0] == 0 and s[0] == 0:
            value.text = base64.b64encode(r[1:] + s[1:]).decode()
            key.verifier.verify(assertion_of(root))
            return
    pytest.fail("no signature with both halves below 2^520 in 64 tries (each is one in four)")


def test_a_large_assertion_of_an_ordinary_kind_verifies(rsa_key: XmlSigningKey) -> None:
    """500 attributes, each value declaring xs and xsi as pysaml2 writes them: far below the bound."""
    attribute = ('<saml:Attribute Name="a"><saml:AttributeValue xmlns:xs="http://www.w3.org/2001/XMLSchema" '
                 'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="xs:string">v</saml:AttributeValue>'
                 '</saml:Attribute>')
    document = response().replace("<saml:AttributeStatement>", "<saml:AttributeStatement>" + attribute * 500)
    rsa_key.verifier.verify(assertion_of(signed(rsa_key, document)))


def test_metadata_may_be_large_by_nature(rsa_key: XmlSigningKey) -> None:
    """An aggregate from a configured URL is verified without the bound (broker.saml.metadata); a message never."""
    root = signed(rsa_key, bloated(response(), 50, 3_000))
    unbounded = XmlVerifier([rsa_key.certificate], bounded=False)
    assert unbounded.verify(assertion_of(root)) == rsa_key.certificate
    with pytest.raises(SignatureRejected, match="declares too many namespaces"):
        rsa_key.verifier.verify(assertion_of(root))
