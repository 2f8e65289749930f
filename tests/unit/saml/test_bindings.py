"""Reading HTTP-Redirect parameters (SAML Bindings §3.4.4): percent-encoded UTF-8, decoded strictly."""

from __future__ import annotations

import pytest

from broker.errors import SamlRejected
from broker.saml.bindings import form_fields, from_post, from_redirect, names_endpoint


@pytest.mark.parametrize(("raw", "relay_state"), [
    pytest.param("abc", "abc", id="ascii"),
    pytest.param("%C3%A9", "\u00e9", id="utf8-two-octets"),
    pytest.param("a+b%20c", "a b c", id="plus-and-percent-20"),
    pytest.param("%F0%9F%94%91", "\U0001f511", id="utf8-four-octets"),
    pytest.param("%25FF", "%FF", id="percent-encoded-percent"),
    pytest.param("", "", id="empty"),
])
def test_relay_state_is_returned_exactly(raw: str, relay_state: str) -> None:
    assert from_redirect(f"SAMLRequest=abc&RelayState={raw}", "SAMLRequest").relay_state == relay_state


@pytest.mark.parametrize(("query", "named"), [
    pytest.param("SAMLRequest=abc&RelayState=%FF%FE", "RelayState", id="relay-state-ff-fe"),
    pytest.param("SAMLRequest=abc&RelayState=ok%C3", "RelayState", id="relay-state-truncated-sequence"),
    pytest.param("SAMLRequest=abc&RelayState=%ED%A0%80", "RelayState", id="relay-state-surrogate"),
    pytest.param("SAMLRequest=ab%FF", "SAMLRequest", id="saml-request"),
    pytest.param("SAMLRequest=abc&SigAlg=%FF&Signature=x", "SigAlg", id="sig-alg"),
    pytest.param("SAMLRequest=abc&SigAlg=x&Signature=%C0%AF", "Signature", id="signature-overlong"),
    pytest.param("SAMLRequest=abc&%FF=1", "a parameter name", id="parameter-name"),
])
def test_a_parameter_that_is_not_utf8_is_malformed(query: str, named: str) -> None:
    """unquote_plus's default replaced such octets with U+FFFD: the value the broker used (and returned, for
    RelayState, Bindings §3.4.3) was not the one sent, and different values decoded alike."""
    with pytest.raises(SamlRejected) as refused:
        from_redirect(query, "SAMLRequest")
    assert refused.value.reason == "saml_request_malformed"
    assert refused.value.detail.startswith(f"{named} is not percent-encoded UTF-8")


@pytest.mark.parametrize(("raw", "octet"), [
    pytest.param("%FF", "0xFF", id="ff"),
    pytest.param("ok%E2%82", "0xE2", id="truncated-euro-sign"),
])
def test_the_detail_names_the_octet_that_does_not_decode(raw: str, octet: str) -> None:
    with pytest.raises(SamlRejected) as refused:
        from_redirect(f"SAMLRequest=abc&RelayState={raw}", "SAMLRequest")
    assert f"the octet {octet} does not decode" in refused.value.detail


def test_the_signed_octets_stay_as_sent() -> None:
    """Strict decoding changes nothing of what the signature covers: the raw, still encoded parameters."""
    message = from_redirect("SAMLRequest=a%2Bb&RelayState=%C3%A9&SigAlg=alg&Signature=sig", "SAMLRequest")
    assert message.signed_octets == b"SAMLRequest=a%2Bb&RelayState=%C3%A9&SigAlg=alg"
    assert (message.encoded, message.relay_state) == ("a+b", "\u00e9")


@pytest.mark.parametrize("encoding", [
    "urn:oasis:names:tc:SAML:2.0:bindings:URL-Encoding:DEFLATE",
    "urn%3Aoasis%3Anames%3Atc%3ASAML%3A2.0%3Abindings%3AURL-Encoding%3ADEFLATE",
], ids=["plain", "percent-encoded"])
def test_the_deflate_encoding_may_be_named(encoding: str) -> None:
    message = from_redirect(f"SAMLRequest=abc&SAMLEncoding={encoding}&SigAlg=alg&Signature=sig", "SAMLRequest")
    assert message.signed_octets == b"SAMLRequest=abc&SigAlg=alg"  # outside the signature (§3.4.4.1)


@pytest.mark.parametrize("encoding", ["urn:example:gzip", "", "DEFLATE"], ids=["another", "empty", "not-the-uri"])
def test_another_encoding_is_refused(encoding: str) -> None:
    """Bindings §3.4.4: an encoding other than DEFLATE names itself in SAMLEncoding; the broker reads DEFLATE only
    and does not read such a message as DEFLATE anyway."""
    with pytest.raises(SamlRejected) as refused:
        from_redirect(f"SAMLRequest=abc&SAMLEncoding={encoding}", "SAMLRequest")
    assert refused.value.reason == "saml_request_malformed"
    assert "is not supported (only DEFLATE" in refused.value.detail


@pytest.mark.parametrize(("body", "fields"), [
    pytest.param(b"SAMLResponse=PHg%2B&RelayState=a+b", {"SAMLResponse": ["PHg+"], "RelayState": ["a b"]},
                 id="escapes-and-plus"),
    pytest.param(b"a=1&a=2&&b=", {"a": ["1", "2"], "b": [""]}, id="repeats-kept-empty-pairs-skipped"),
    pytest.param(b"RelayState=%C3%A5", {"RelayState": ["\u00e5"]}, id="utf8"),
])
def test_form_fields_are_decoded_strictly(body: bytes, fields: dict[str, list[str]]) -> None:
    assert form_fields(body) == fields


@pytest.mark.parametrize(("body", "detail"), [
    pytest.param(b"RelayState=%E5", "a form field is not percent-encoded UTF-8: the octet 0xE5", id="latin1-octet"),
    pytest.param(b"Relay%FFState=x", "a form field's name is not percent-encoded UTF-8", id="in-a-name"),
    pytest.param("RelayState=\u00e5".encode(), "octets that are not percent-encoded", id="raw-non-ascii"),
])
def test_form_fields_that_do_not_decode_are_refused(body: bytes, detail: str) -> None:
    with pytest.raises(SamlRejected) as refused:
        form_fields(body)
    assert refused.value.reason == "saml_request_malformed"
    assert detail in refused.value.detail


SSO = "https://idp.example/saml/idp/sso"


@pytest.mark.parametrize(("destination", "query", "named"), [
    pytest.param(SSO, "SAMLRequest=abc&municipality=x", True, id="the-url-itself"),
    pytest.param(SSO + "?municipality=x", "municipality=x&SAMLRequest=abc&SigAlg=a&Signature=s", True,
                 id="the-url-with-its-query-and-the-binding-parameters"),
    pytest.param(SSO + "?municipality=x", "municipality=x&SAMLRequest=abc&lang=en", True, id="and-a-language-link"),
    pytest.param(SSO + "?municipality=x", "SAMLRequest=abc&municipality=y", False, id="another-value"),
    pytest.param(SSO + "?municipality=x", "SAMLRequest=abc", False, id="sent-without-it"),
    pytest.param(SSO + "?RelayState=r", "SAMLRequest=abc&RelayState=r", False, id="a-binding-parameter"),
    pytest.param(SSO + "?", "SAMLRequest=abc", False, id="an-empty-query"),
    pytest.param(SSO + "?municipality=x#f", "municipality=x%23f&SAMLRequest=abc", False, id="a-fragment"),
    pytest.param(SSO + "-other?municipality=x", "municipality=x&SAMLRequest=abc", False, id="another-path"),
])
def test_a_destination_names_the_url_the_message_was_sent_to(destination: str, query: str, named: bool) -> None:
    """Bindings §3.4.5.2: the location the message was received at, for HTTP-Redirect without the binding's own
    parameters (which the sender appends to the URL it was configured with)."""
    assert names_endpoint(destination, SSO, from_redirect(query, "SAMLRequest")) is named


def test_a_posted_message_is_received_at_the_url_with_its_whole_query() -> None:
    message = from_post({"SAMLRequest": ["abc"]}, "SAMLRequest", "municipality=x&RelayState=r")
    assert names_endpoint(SSO + "?municipality=x&RelayState=r", SSO, message)
