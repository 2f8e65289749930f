"""What a municipal IdP's assertion says about passing it on (SAML Core §2.5.1.6 ProxyRestriction, §3.4.1.5.1
AuthenticatingAuthority), read from the verified Assertion: the corpus IdP's baseline Response, changed and
signed again by the IdP, judged as the corpus cases are."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from lxml import etree

from broker.errors import UpstreamRejected
from broker.model import ProxyRestriction
from broker.saml.upstream_response import ResponseValidator, UpstreamAssertion, parse_response
from broker.saml.xmldsig import XmlVerifier
from broker.saml.xmlenc import Decrypter
from tests.corpus.upstream import generate as corpus
from tests.corpus.upstream.generate import proxy_restriction
from tests.unit.saml.test_upstream_corpus import expectations

SAML = corpus.SAML
SP_A = "https://sp-a.example/metadata"
SP_B = "https://sp-b.example/metadata"


@pytest.fixture(scope="module")
def keys() -> corpus.Keys:
    return corpus.load_keys()


def authorities(*names: str) -> Callable[[etree._Element], None]:
    def change(assertion: etree._Element) -> None:
        context = assertion.find("saml:AuthnStatement/saml:AuthnContext", corpus.NS)
        assert context is not None
        for name in names:
            etree.SubElement(context, f"{{{SAML}}}AuthenticatingAuthority").text = name
    return change


def both(*changes: Callable[[etree._Element], None]) -> Callable[[etree._Element], None]:
    def change(assertion: etree._Element) -> None:
        for each in changes:
            each(assertion)
    return change


def judged(keys: corpus.Keys, change: Callable[[etree._Element], None]) -> UpstreamAssertion:
    xml = corpus.serialize(corpus._signed_changed(change)(keys))
    validator = ResponseValidator(XmlVerifier([keys.idp.certificate]), Decrypter([keys.sp.key_pem]))
    return validator.validate(parse_response(xml, corpus.MAX_BYTES), expectations())


@pytest.mark.parametrize(("change", "expected"), [
    pytest.param(lambda a: None, None, id="none"),
    pytest.param(proxy_restriction("2"), ProxyRestriction(2), id="count-only"),
    pytest.param(proxy_restriction("+01"), ProxyRestriction(1), id="count-signed-with-leading-zero"),
    pytest.param(proxy_restriction(None, SP_A, SP_B), ProxyRestriction(None, (SP_A, SP_B)), id="audiences-only"),
    pytest.param(proxy_restriction("1", SP_A), ProxyRestriction(1, (SP_A,)), id="count-and-audience"),
    pytest.param(proxy_restriction("9" * 5000), ProxyRestriction(1 << 31), id="count-of-5000-digits-no-limit"),
])
def test_proxy_restriction_is_read(keys: corpus.Keys, change: Callable[[etree._Element], None],
                                   expected: ProxyRestriction | None) -> None:
    assert judged(keys, change).proxy_restriction == expected


@pytest.mark.parametrize(("change", "detail"), [
    pytest.param(proxy_restriction("0"), "ProxyRestriction Count=0", id="count-zero"),
    pytest.param(proxy_restriction("00"), "ProxyRestriction Count=0", id="count-zero-written-long"),
    pytest.param(proxy_restriction("one"), "not an xs:nonNegativeInteger", id="count-not-a-number"),
    pytest.param(proxy_restriction("-1"), "not an xs:nonNegativeInteger", id="count-negative"),
    pytest.param(both(proxy_restriction("2"), proxy_restriction("1")), "more than one ProxyRestriction",
                 id="two-restrictions"),
    # stored with the session, an empty Audience would read back as "no audiences": unrestricted
    pytest.param(proxy_restriction("2", ""), "Audience is empty or holds whitespace", id="empty-audience"),
    pytest.param(proxy_restriction("2", "https://a.example/\nhttps://b.example/"),
                 "Audience is empty or holds whitespace", id="audience-with-a-newline"),
])
def test_a_restriction_that_cannot_be_honoured_refuses_the_assertion(
        keys: corpus.Keys, change: Callable[[etree._Element], None], detail: str) -> None:
    with pytest.raises(UpstreamRejected) as refused:
        judged(keys, change)
    assert refused.value.reason == "upstream_assertion_invalid"
    assert detail in refused.value.detail


def test_authenticating_authorities_are_read_in_order(keys: corpus.Keys) -> None:
    read = judged(keys, authorities("https://first.example/idp", "https://second.example/idp"))
    assert read.authenticating_authorities == ("https://first.example/idp", "https://second.example/idp")


@pytest.mark.parametrize(("restricted", "audience", "allowed", "onward"), [
    pytest.param(ProxyRestriction(2), SP_A, True, ProxyRestriction(1), id="count-2"),
    pytest.param(ProxyRestriction(1), SP_A, True, ProxyRestriction(0), id="count-1-onward-0"),
    pytest.param(ProxyRestriction(None, (SP_A,)), SP_A, True, ProxyRestriction(None, (SP_A,)), id="listed"),
    pytest.param(ProxyRestriction(None, (SP_A,)), SP_B, False, None, id="not-listed"),
    pytest.param(ProxyRestriction(0), SP_A, False, None, id="count-0"),
])
def test_what_a_restriction_allows(restricted: ProxyRestriction, audience: str, allowed: bool,
                                   onward: ProxyRestriction | None) -> None:
    assert restricted.allows(audience) is allowed
    if onward is not None:
        assert restricted.onward() == onward
    assert ProxyRestriction.from_fields(restricted.to_fields()) == restricted
