"""The verifier accepts only SAML's transform chain (SAML Core §5.4.4): the enveloped-signature transform once,
at most one canonicalisation transform besides it. Each case is a signature libxmlsec1 itself makes and verifies,
so the refusal is for the transforms alone; a long chain is refused before any canonicalisation is done."""

from __future__ import annotations

import datetime as dt

import pytest
import xmlsec
from cryptography.hazmat.primitives.asymmetric import rsa
from lxml import etree

from broker.saml.xmldsig import SignatureRejected, XmlVerifier
from tests.factories.xml_keys import xml_signing_key

NOW = dt.datetime(2026, 11, 27, 9, 0, tzinfo=dt.UTC)
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
ENVELOPED = xmlsec.constants.TransformEnveloped
EXC = xmlsec.constants.TransformExclC14N
INCL = xmlsec.constants.TransformInclC14N


@pytest.fixture(scope="module")
def signer() -> tuple[xmlsec.Key, XmlVerifier]:
    key = xml_signing_key(rsa.generate_private_key(65537, 2048))
    return key.xmlsec_key, key.verifier


def _signed(key: xmlsec.Key, transforms: list[object], *, padding: int = 0) -> etree._Element:
    """An Assertion signed by libxmlsec1 with ``transforms`` on its Reference."""
    root = etree.Element(f"{{{SAML}}}Assertion", ID="_a1", nsmap={"saml2": SAML})
    issuer = etree.SubElement(root, f"{{{SAML}}}Issuer")
    issuer.text = "https://idp.example"
    etree.SubElement(root, f"{{{SAML}}}Subject").text = "x" * padding
    signature = xmlsec.template.create(root, EXC, xmlsec.constants.TransformRsaSha256, ns="ds")
    ref = xmlsec.template.add_reference(signature, xmlsec.constants.TransformSha256, uri="#_a1")
    for transform in transforms:
        xmlsec.template.add_transform(ref, transform)
    issuer.addnext(signature)
    ctx = xmlsec.SignatureContext()
    ctx.key = key
    ctx.register_id(root, "ID")
    ctx.sign(signature)
    return etree.fromstring(etree.tostring(root))  # as a peer's message arrives (the template's nodes, made by
    # libxmlsec1 before they joined the tree, are found by name only after a parse)


def _libxmlsec1_verifies(key: xmlsec.Key, root: etree._Element) -> bool:
    ctx = xmlsec.SignatureContext()
    ctx.key = key
    ctx.register_id(root, "ID")
    try:
        ctx.verify(root.find("{http://www.w3.org/2000/09/xmldsig#}Signature"))
    except xmlsec.Error:
        return False
    return True


@pytest.mark.parametrize("transforms", [
    pytest.param([ENVELOPED], id="enveloped"),
    pytest.param([ENVELOPED, EXC], id="enveloped-then-exc-c14n"),
    pytest.param([ENVELOPED, INCL], id="enveloped-then-c14n"),
])
def test_saml_transform_chains_verify(signer: tuple[xmlsec.Key, XmlVerifier], transforms: list[object]) -> None:
    key, verifier = signer
    verifier.verify(_signed(key, transforms))


@pytest.mark.parametrize("transforms", [
    pytest.param([ENVELOPED, EXC, EXC], id="a-second-canonicalisation"),
    pytest.param([ENVELOPED, ENVELOPED], id="enveloped-twice"),
    pytest.param([ENVELOPED, EXC, INCL], id="three"),
])
def test_longer_chains_are_refused_though_libxmlsec1_verifies_them(signer: tuple[xmlsec.Key, XmlVerifier],
                                                                     transforms: list[object]) -> None:
    key, verifier = signer
    root = _signed(key, transforms)
    assert _libxmlsec1_verifies(key, root)
    with pytest.raises(SignatureRejected, match="enveloped-signature transform and at most one"):
        verifier.verify(root)


@pytest.mark.parametrize("transforms", [
    pytest.param([], id="no-transforms"),
    pytest.param([EXC], id="canonicalisation-only"),
])
def test_a_signature_that_is_not_enveloped_is_refused(signer: tuple[xmlsec.Key, XmlVerifier],
                                                      transforms: list[object]) -> None:
    key, verifier = signer
    with pytest.raises(SignatureRejected, match="enveloped-signature transform and at most one"):
        verifier.verify(_signed(key, transforms))


def test_hundreds_of_transforms_are_refused_before_libxmlsec1_runs(signer: tuple[xmlsec.Key, XmlVerifier],
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The denial of service this closes: libxmlsec1 digests (canonicalising the whole element once per
    transform) before it tries the key, so 1,000 transforms on a 60 kB element cost seconds of CPU."""
    key, verifier = signer
    root = _signed(key, [ENVELOPED], padding=60_000)
    transforms = root.find(".//{http://www.w3.org/2000/09/xmldsig#}Transforms")
    assert transforms is not None
    for _ in range(1000):
        etree.SubElement(transforms, "{http://www.w3.org/2000/09/xmldsig#}Transform",
                         Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#")
    contexts: list[object] = []
    monkeypatch.setattr(xmlsec, "SignatureContext", lambda: contexts.append(1))
    refused = r"at most one canonicalisation transform \(found: http://www.w3.org/2000/09/xmldsig#enveloped-signature, "
    with pytest.raises(SignatureRejected, match=refused + r".* and 998 more\)"):
        verifier.verify(root)
    assert contexts == []
