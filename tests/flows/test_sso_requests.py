"""Vetting AuthnRequests at the SSO endpoint (SAML Core §3.4, Bindings §3.4 / §3.5, Profiles §4.1.4.1).

Each case sends one request through the Flask app, crafted from the real pysaml2 SP's AuthnRequest
and encoded by the test itself. A refusal is either an error page (the reason code in
X-Broker-Reason and the HTTP status of broker.reasons) or, once the SP and its ACS are trusted, a
signed SAML error Response to the registered ACS with the exact second-level status code.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import rsa
from lxml import etree
from saml2 import BINDING_HTTP_ARTIFACT
from saml2.response import (
    StatusError,
    StatusInvalidNameidPolicy,
    StatusNoAuthnContext,
    StatusNoPassive,
    StatusUnsupportedBinding,
)
from saml2.saml import NAMEID_FORMAT_EMAILADDRESS, NameID, Subject
from werkzeug.test import TestResponse

from broker.config.loader import Settings, load_settings
from broker.demo.sp import DemoSp
from broker.saml.bindings import HTTP_POST
from broker.saml.xmlparse import parse_untrusted
from tests.factories.authnrequests import (
    ACS_URL,
    DIGEST_SHA1,
    DIGEST_SHA256,
    NS,
    RSA_SHA1,
    RSA_SHA256,
    SP_ENTITY_ID,
    SSO_URL,
    AuthnRequests,
    Crafted,
    PostedResponse,
    assert_refused,
    deflate,
    edit,
    error_page,
    post_fields,
    posted_response,
    redirect_url,
    replace_parameter,
    signature_algorithms,
    sp_accepts,
    sp_verifies_response_signature,
    status_codes,
    with_attributes,
    with_issuer,
)
from tests.factories.saml import Browser, forms
from tests.flows.conftest import audit_lines

LOA2 = "http://id.elegnamnden.se/loa/1.0/loa2"
LOA3 = "http://id.elegnamnden.se/loa/1.0/loa3"
LOA4 = "http://id.elegnamnden.se/loa/1.0/loa4"
MAX_MESSAGE_BYTES = 65536  # idp.max_message_bytes in config/example/broker.yaml


@pytest.fixture
def craft(sp: DemoSp, demo_material) -> AuthnRequests:  # type: ignore[no-untyped-def]
    return AuthnRequests(sp, demo_material.root / "sp" / "sp.key")


@pytest.fixture(scope="module")
def stranger_key() -> rsa.RSAPrivateKey:
    """A key that is not in the SP's metadata."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def instant(delta: dt.timedelta = dt.timedelta(0)) -> str:
    return (dt.datetime.now(dt.UTC) + delta).strftime("%Y-%m-%dT%H:%M:%SZ")


def send(browser: Browser, binding: str, craft: AuthnRequests, crafted: Crafted | bytes,
         relay_state: str | None = "/") -> TestResponse:
    """Send ``crafted`` signed the way its binding signs: query signature, or as built (enveloped)."""
    xml = crafted.xml if isinstance(crafted, Crafted) else crafted
    if binding == "redirect":
        return browser.get(craft.redirect(xml, relay_state=relay_state))
    return browser.post(SSO_URL, post_fields(xml, relay_state))


def error_response(response: TestResponse, sp: DemoSp, request_id: str) -> PostedResponse:
    """The signed SAML error Response the broker posts to the SP's registered ACS."""
    posted = posted_response(response)
    assert posted.action == ACS_URL
    assert posted.root.get("InResponseTo") == request_id
    assert posted.root.get("Destination") == ACS_URL
    assert posted.root.find("saml:Assertion", NS) is None
    assert signature_algorithms(posted.root)["signature"] == RSA_SHA256
    sp_verifies_response_signature(sp, posted.xml)
    return posted


# --- both bindings log in ------------------------------------------------------------------


def test_redirect_binding_with_query_signature_logs_in(browser: Browser, sp: DemoSp, craft: AuthnRequests) -> None:
    crafted = craft.build()
    posted = posted_response(browser.get(craft.redirect(crafted, relay_state="r-1")))
    result = sp_accepts(sp, posted.fields["SAMLResponse"], crafted.request_id)
    assert result.assertion.authn_statement[0].authn_context.authn_context_class_ref.text == LOA3
    assert posted.fields["RelayState"] == "r-1"


def test_post_binding_with_enveloped_signature_logs_in(browser: Browser, sp: DemoSp, craft: AuthnRequests) -> None:
    crafted = craft.build(sign=True)
    assert b"Signature" in crafted.xml
    posted = posted_response(browser.post(SSO_URL, post_fields(crafted.xml, "r-2")))
    result = sp_accepts(sp, posted.fields["SAMLResponse"], crafted.request_id)
    assert result.assertion.authn_statement[0].authn_context.authn_context_class_ref.text == LOA3
    assert posted.fields["RelayState"] == "r-2"


# --- who sent it, and is it signed ---------------------------------------------------------


@pytest.mark.parametrize("binding", ["redirect", "post"])
def test_unknown_issuer_is_refused(browser: Browser, craft: AuthnRequests, binding: str) -> None:
    crafted = craft.build(sign=binding == "post")
    xml = with_issuer(crafted.xml, "https://sp.elsewhere.example/metadata")
    assert_refused(send(browser, binding, craft, xml), "sp_unknown")


def test_unsigned_redirect_request_is_refused(browser: Browser, craft: AuthnRequests) -> None:
    assert_refused(browser.get(craft.redirect(craft.build(), signed=False)), "saml_request_unsigned")


def test_unsigned_post_request_is_refused(browser: Browser, craft: AuthnRequests) -> None:
    assert_refused(browser.post(SSO_URL, post_fields(craft.build().xml, "/")), "saml_request_unsigned")


def test_redirect_query_signature_by_a_key_outside_the_metadata_is_refused(
        browser: Browser, craft: AuthnRequests, stranger_key: rsa.RSAPrivateKey) -> None:
    url = craft.redirect(craft.build(), key=stranger_key)
    assert_refused(browser.get(url), "saml_signature_invalid")


@pytest.mark.parametrize(("parameter", "value"), [
    pytest.param("RelayState", "%2Fadmin", id="relay-state-changed"),
    pytest.param("SigAlg", quote("http://www.w3.org/2001/04/xmldsig-more#rsa-sha512", safe=""), id="sigalg-changed"),
])
def test_redirect_query_changed_after_signing_is_refused(browser: Browser, craft: AuthnRequests, parameter: str,
                                                         value: str) -> None:
    url = replace_parameter(craft.redirect(craft.build(), relay_state="/"), parameter, value)
    assert_refused(browser.get(url), "saml_signature_invalid")


def test_redirect_request_swapped_under_a_signature_is_refused(browser: Browser, craft: AuthnRequests) -> None:
    signed = craft.redirect(craft.build())
    other = base64.b64encode(deflate(craft.build(force_authn="true").xml)).decode()
    assert_refused(browser.get(replace_parameter(signed, "SAMLRequest", quote(other, safe=""))),
                   "saml_signature_invalid")


def test_post_request_changed_after_signing_is_refused(browser: Browser, craft: AuthnRequests) -> None:
    tampered = with_attributes(craft.build(sign=True).xml, ForceAuthn="true")
    assert_refused(browser.post(SSO_URL, post_fields(tampered, "/")), "saml_signature_invalid")


def test_redirect_signature_with_rsa_sha1_is_refused(browser: Browser, craft: AuthnRequests) -> None:
    url = craft.redirect(craft.build(), sig_alg=RSA_SHA1)
    assert_refused(browser.get(url), "saml_algorithm_not_allowed")


@pytest.mark.parametrize(("sign_alg", "digest_alg"), [
    pytest.param(RSA_SHA1, DIGEST_SHA1, id="rsa-sha1+sha1"),
    pytest.param(RSA_SHA1, DIGEST_SHA256, id="rsa-sha1+sha256"),
    pytest.param(RSA_SHA256, DIGEST_SHA1, id="rsa-sha256+sha1-digest"),
])
def test_enveloped_signature_with_sha1_is_refused(browser: Browser, craft: AuthnRequests, sign_alg: str,
                                                  digest_alg: str) -> None:
    crafted = craft.build(sign=True, sign_alg=sign_alg, digest_alg=digest_alg)
    assert_refused(browser.post(SSO_URL, post_fields(crafted.xml, "/")), "saml_algorithm_not_allowed")


# --- Destination, time, version --------------------------------------------------------------


@pytest.mark.parametrize("binding", ["redirect", "post"])
def test_signed_request_for_another_endpoint_is_refused(browser: Browser, craft: AuthnRequests, binding: str) -> None:
    crafted = craft.build(sign=binding == "post", destination="https://localhost:8443/saml/idp/sso-other")
    assert_refused(send(browser, binding, craft, crafted), "saml_destination_mismatch")


@pytest.mark.parametrize("binding", ["redirect", "post"])
def test_signed_request_without_destination_is_refused(browser: Browser, craft: AuthnRequests, binding: str) -> None:
    # Bindings §3.4.5.2 / §3.5.5.2: a signed message must name its Destination
    crafted = craft.build(sign=binding == "post", destination=None)
    assert b"Destination" not in crafted.xml
    assert_refused(send(browser, binding, craft, crafted), "saml_destination_mismatch")


def _to_sso_url_with(query: str, binding: str, craft: AuthnRequests, crafted: Crafted,
                     browser: Browser) -> TestResponse:
    """``crafted`` sent to the SSO URL with ``query`` (an SP configured with the URL ``/saml/idp/sso?<query>``, the
    ``?municipality=`` hint of docs/federation.md): the binding's parameters follow it (HTTP-Redirect), or it stays
    the whole query (HTTP-POST)."""
    if binding == "redirect":
        return browser.get(craft.redirect(crafted).replace("?", f"?{query}&", 1))
    return browser.client.post(f"/saml/idp/sso?{query}", data=post_fields(crafted.xml, "/"),
                               environ_base={"REMOTE_ADDR": browser.remote_addr,
                                             "SSL_CLIENT_CERT": browser.certificate_pem or ""})


@pytest.mark.parametrize("binding", ["redirect", "post"])
def test_signed_request_for_the_sso_url_with_its_query_is_answered(browser: Browser, sp: DemoSp,
                                                                   craft: AuthnRequests, binding: str) -> None:
    """Bindings §3.4.5.2 / §3.5.5.2: Destination names the location the message was sent to, which for an SP
    configured with ``?municipality=`` on the SSO URL is that URL; for HTTP-Redirect, without the binding's own
    parameters, which the SP appends to it."""
    crafted = craft.build(sign=binding == "post", destination=f"{SSO_URL}?municipality=kommun-a")
    posted = posted_response(_to_sso_url_with("municipality=kommun-a", binding, craft, crafted, browser))
    sp_accepts(sp, posted.fields["SAMLResponse"], crafted.request_id)


@pytest.mark.parametrize("binding", ["redirect", "post"])
@pytest.mark.parametrize(("destination", "query"), [
    pytest.param("municipality=kommun-a", "municipality=kommun-b", id="another-query"),
    pytest.param("municipality=kommun-a", "lang=en", id="a-query-the-url-did-not-have"),
    pytest.param("municipality=kommun-a&x=1", "municipality=kommun-a", id="more-than-the-url-had"),
])
def test_signed_request_for_the_sso_url_with_another_query_is_refused(browser: Browser, craft: AuthnRequests,
                                                                      binding: str, destination: str,
                                                                      query: str) -> None:
    crafted = craft.build(sign=binding == "post", destination=f"{SSO_URL}?{destination}")
    assert_refused(_to_sso_url_with(query, binding, craft, crafted, browser), "saml_destination_mismatch")


@pytest.mark.parametrize("age", [
    pytest.param(dt.timedelta(hours=1), id="issued-1h-ago"),
    pytest.param(dt.timedelta(minutes=-10), id="issued-10min-in-the-future"),
])
def test_request_outside_the_time_window_is_refused(browser: Browser, craft: AuthnRequests,
                                                    age: dt.timedelta) -> None:
    crafted = craft.build(issue_instant=instant(-age))
    assert_refused(browser.get(craft.redirect(crafted)), "saml_request_stale")


@pytest.mark.parametrize("age", [
    pytest.param(dt.timedelta(minutes=9), id="issued-9min-ago"),
    pytest.param(dt.timedelta(seconds=-30), id="issued-30s-ahead-within-skew"),
])
def test_request_inside_the_time_window_is_accepted(browser: Browser, sp: DemoSp, craft: AuthnRequests,
                                                    age: dt.timedelta) -> None:
    crafted = craft.build(issue_instant=instant(-age))
    posted = posted_response(browser.get(craft.redirect(crafted)))
    sp_accepts(sp, posted.fields["SAMLResponse"], crafted.request_id)


@pytest.mark.parametrize("request_id", [
    pytest.param("1abc", id="starts-with-a-digit"),
    pytest.param("a b", id="space"),
    pytest.param("id:with:colons", id="colons"),
    pytest.param("-abc", id="starts-with-a-hyphen"),
])
def test_request_id_that_is_no_xs_id_is_malformed(browser: Browser, craft: AuthnRequests, request_id: str) -> None:
    """SAML Core §3.2.1: ID is an xs:ID; the Response would repeat it as InResponseTo (an NCName, which a
    schema-validating SP refuses)."""
    xml = with_attributes(craft.build().xml, ID=request_id)
    assert_refused(browser.get(craft.redirect(xml)), "saml_request_malformed")


def test_saml_1_1_version_is_refused(browser: Browser, craft: AuthnRequests) -> None:
    crafted = craft.build(version="1.1")
    assert b'Version="1.1"' in crafted.xml
    assert_refused(browser.get(craft.redirect(crafted)), "saml_version_unsupported")


@pytest.mark.parametrize("version", ["2.1", "3.0"])
def test_a_higher_version_gets_version_mismatch_at_the_default_acs(browser: Browser, sp: DemoSp,
                                                                   craft: AuthnRequests, version: str) -> None:
    # SAML Core §4.1.3.2: the request is rejected with VersionMismatch / RequestVersionTooHigh (§3.2.2.2), sent
    # to the registered SP's default ACS since nothing else of a newer version's request is read
    crafted = craft.build(version=version, assertion_consumer_service_url="https://sp.elsewhere.example/acs")
    posted = posted_response(browser.get(craft.redirect(crafted, relay_state="keep")))
    assert posted.action == ACS_URL
    assert status_codes(posted.root) == ("urn:oasis:names:tc:SAML:2.0:status:VersionMismatch",
                                         "urn:oasis:names:tc:SAML:2.0:status:RequestVersionTooHigh")
    assert posted.root.get("InResponseTo") == crafted.request_id
    assert posted.fields["RelayState"] == "keep"
    sp_verifies_response_signature(sp, posted.xml)


# --- where the Response goes ----------------------------------------------------------------


@pytest.mark.parametrize("fields", [
    pytest.param({"assertion_consumer_service_url": "https://sp.elsewhere.example/acs"}, id="unregistered-url"),
    pytest.param({"assertion_consumer_service_url": "https://localhost:8443/demo-sp/acs/"}, id="url-trailing-slash"),
    pytest.param({"assertion_consumer_service_index": "2"}, id="unregistered-index"),
    # no xs:unsignedShort, though int() would read each of the first two as 1, the registered index
    pytest.param({"assertion_consumer_service_index": "0_1"}, id="index-with-underscore"),
    pytest.param({"assertion_consumer_service_index": "\u0661"}, id="index-in-arabic-indic-digits"),
    pytest.param({"assertion_consumer_service_index": "65537"}, id="index-past-unsigned-short"),
])
def test_unregistered_acs_is_refused(browser: Browser, craft: AuthnRequests, fields: dict[str, Any]) -> None:
    assert_refused(browser.get(craft.redirect(craft.build(**fields))), "acs_url_not_registered")


@pytest.mark.parametrize("index", ["1", "+1", "01"])  # xs:unsignedShort's lexical forms of 1
def test_registered_acs_index_is_accepted(browser: Browser, sp: DemoSp, craft: AuthnRequests, index: str) -> None:
    crafted = craft.build(assertion_consumer_service_index=index)
    posted = posted_response(browser.get(craft.redirect(crafted)))
    assert posted.action == ACS_URL
    sp_accepts(sp, posted.fields["SAMLResponse"], crafted.request_id)


def test_artifact_protocol_binding_gets_unsupported_binding_at_the_registered_acs(
        browser: Browser, sp: DemoSp, craft: AuthnRequests) -> None:
    crafted = craft.build(binding=BINDING_HTTP_ARTIFACT, assertion_consumer_service_url=ACS_URL)
    assert BINDING_HTTP_ARTIFACT.encode() in crafted.xml
    posted = error_response(browser.get(craft.redirect(crafted, relay_state="keep")), sp, crafted.request_id)
    assert posted.status == ("urn:oasis:names:tc:SAML:2.0:status:Requester",
                             "urn:oasis:names:tc:SAML:2.0:status:UnsupportedBinding")
    assert posted.fields["RelayState"] == "keep"
    with pytest.raises(StatusUnsupportedBinding):
        sp_accepts(sp, posted.fields["SAMLResponse"], crafted.request_id)


class TestSpListingOneAcsUrlForArtifactBeforePost:
    """SAML Metadata §2.2.3: an endpoint is a Location with a Binding. SimpleSAMLphp-style metadata lists its ACS
    URL for HTTP-Artifact (index 0) before HTTP-POST (index 1). The URL was looked up by Location alone, found the
    Artifact endpoint first, and a valid request for that URL (ProtocolBinding HTTP-POST, or none) was refused
    as acs_url_not_registered."""

    @pytest.fixture
    def settings(self, config_dir: Path) -> Settings:
        path = config_dir / "metadata" / "demo-sp.xml"
        text = path.read_text()
        post = re.search(r'<(\w+):AssertionConsumerService Binding="[^"]*HTTP-POST"[^>]*/>', text)
        assert post is not None
        artifact = post.group(0).replace(HTTP_POST, BINDING_HTTP_ARTIFACT).replace('index="1"', 'index="0"')
        path.write_text(text.replace(post.group(0), artifact + post.group(0)))
        settings = load_settings(config_dir)
        sp = settings.sp_by_entity_id(SP_ENTITY_ID)
        assert sp is not None
        assert [(e.binding, e.location) for e in sp.metadata.assertion_consumer_services] == [
            (BINDING_HTTP_ARTIFACT, ACS_URL), (HTTP_POST, ACS_URL)]
        return settings

    @pytest.mark.parametrize("fields", [
        pytest.param({"assertion_consumer_service_url": ACS_URL}, id="url-protocol-binding-post"),
        pytest.param({"assertion_consumer_service_url": ACS_URL, "binding": None}, id="url-no-protocol-binding"),
        pytest.param({"assertion_consumer_service_index": "1"}, id="index-of-the-post-endpoint"),
    ])
    def test_the_post_endpoint_at_that_url_is_answered(self, browser: Browser, sp: DemoSp, craft: AuthnRequests,
                                                       fields: dict[str, Any]) -> None:
        crafted = craft.build(**fields)
        assert (b"ProtocolBinding" in crafted.xml) == (fields.get("binding", HTTP_POST) is not None)
        posted = posted_response(browser.get(craft.redirect(crafted)))
        assert posted.action == ACS_URL
        sp_accepts(sp, posted.fields["SAMLResponse"], crafted.request_id)

    def test_artifact_protocol_binding_still_gets_unsupported_binding_there(
            self, browser: Browser, sp: DemoSp, craft: AuthnRequests) -> None:
        crafted = craft.build(binding=BINDING_HTTP_ARTIFACT, assertion_consumer_service_url=ACS_URL)
        posted = error_response(browser.get(craft.redirect(crafted)), sp, crafted.request_id)
        assert posted.status == ("urn:oasis:names:tc:SAML:2.0:status:Requester",
                                 "urn:oasis:names:tc:SAML:2.0:status:UnsupportedBinding")

    def test_the_index_of_the_artifact_endpoint_is_still_refused(self, browser: Browser,
                                                                 craft: AuthnRequests) -> None:
        assert_refused(browser.get(craft.redirect(craft.build(assertion_consumer_service_index="0"))),
                       "acs_url_not_registered")


# --- what the SP asks for -------------------------------------------------------------------


def test_email_nameid_format_gets_invalid_nameid_policy(browser: Browser, sp: DemoSp, craft: AuthnRequests) -> None:
    crafted = craft.build(nameid_format=NAMEID_FORMAT_EMAILADDRESS)
    posted = error_response(browser.get(craft.redirect(crafted)), sp, crafted.request_id)
    assert posted.status == ("urn:oasis:names:tc:SAML:2.0:status:Requester",
                             "urn:oasis:names:tc:SAML:2.0:status:InvalidNameIDPolicy")
    with pytest.raises(StatusInvalidNameidPolicy):
        sp_accepts(sp, posted.fields["SAMLResponse"], crafted.request_id)


@pytest.mark.parametrize(("qualifier", "accepted"), [
    pytest.param(SP_ENTITY_ID, True, id="the-sps-own-namespace"),
    pytest.param("https://affiliation.example/group", False, id="an-affiliations-namespace"),
])
def test_sp_name_qualifier_of_another_namespace_gets_invalid_nameid_policy(
        browser: Browser, sp: DemoSp, craft: AuthnRequests, qualifier: str, accepted: bool) -> None:
    # SAML Core §3.4.1.1: SPNameQualifier asks for an identifier in another SP's or an affiliation's namespace,
    # which the broker does not keep (its identifiers are per SP, §8.3.7)
    crafted = craft.build()
    xml = edit(crafted.xml, lambda root: root.find("samlp:NameIDPolicy", NS).set("SPNameQualifier", qualifier))
    posted = posted_response(browser.get(craft.redirect(xml)))
    if accepted:
        assert status_codes(posted.root) == ("urn:oasis:names:tc:SAML:2.0:status:Success", None)
        name_id = posted.root.find("saml:Assertion/saml:Subject/saml:NameID", NS)
        assert name_id is not None
        assert name_id.get("SPNameQualifier") == SP_ENTITY_ID
    else:
        assert status_codes(posted.root) == ("urn:oasis:names:tc:SAML:2.0:status:Requester",
                                             "urn:oasis:names:tc:SAML:2.0:status:InvalidNameIDPolicy")


@pytest.mark.parametrize("edit_context", [
    pytest.param(lambda rac: rac.set("Comparison", "at-least"), id="comparison-not-in-the-schema"),
    pytest.param(lambda rac: [rac.remove(ref) for ref in list(rac)], id="no-class-refs"),
])
def test_a_malformed_requested_authn_context_gets_a_requester_error_response(
        browser: Browser, sp: DemoSp, craft: AuthnRequests, config_dir: Path,
        edit_context: Callable[[etree._Element], object]) -> None:
    """A RequestedAuthnContext its schema does not allow, from a registered SP whose ACS is known: the SP gets a
    signed error Response (SAML Core §3.4.1.4) with the top-level Requester alone (§3.2.2.2: the request's fault,
    and no second-level code says more), not a dead end in the browser."""
    crafted = craft.build(requested_authn_context={"authn_context_class_ref": [LOA3], "comparison": "exact"})
    xml = edit(crafted.xml, lambda root: edit_context(root.find("samlp:RequestedAuthnContext", NS)))
    posted = error_response(browser.get(craft.redirect(xml)), sp, crafted.request_id)
    assert posted.status == ("urn:oasis:names:tc:SAML:2.0:status:Requester", None)
    with pytest.raises(StatusError):
        sp_accepts(sp, posted.fields["SAMLResponse"], crafted.request_id)
    (refusal,) = [e for e in audit_lines(config_dir) if e["event"] == "saml_request_rejected"]
    assert refusal["reason"] == "saml_request_malformed"
    assert "assertion_issued" not in [e["event"] for e in audit_lines(config_dir)]


@pytest.mark.parametrize("refs", [
    pytest.param([f"urn:example:loa:{i}" for i in range(32)] + [LOA3], id="thirty-three-class-refs"),
    pytest.param(["urn:" + "a" * 60_000, LOA3], id="a-class-ref-of-60-000-characters"),
])
def test_a_requested_authn_context_too_large_to_keep_gets_a_requester_error_response(
        browser: Browser, sp: DemoSp, craft: AuthnRequests, config_dir: Path, refs: list[str]) -> None:
    """The ClassRefs of a request are kept with the pending login and written into its login_started record, and
    a request may come from anyone where the SP need not sign (DEFLATE makes 60 kB of one letter a URL of a few
    hundred bytes): like the Scoping's lists, they are bounded (32 ClassRefs of at most 1,024 characters, far more
    than any SP asks for). Past that the SP gets a Requester error Response, and no audit record carries them."""
    crafted = craft.build(requested_authn_context={"authn_context_class_ref": refs, "comparison": "minimum"})
    url = craft.redirect(crafted)
    assert len(url) < 8192
    posted = error_response(browser.get(url), sp, crafted.request_id)
    assert posted.status == ("urn:oasis:names:tc:SAML:2.0:status:Requester", None)
    events = audit_lines(config_dir)
    (refusal,) = [e for e in events if e["event"] == "saml_request_rejected"]
    assert refusal["reason"] == "saml_request_malformed"
    assert "(at most" in str(refusal["detail"])
    assert "login_started" not in [e["event"] for e in events]
    assert max(len(json.dumps(e)) for e in events if e["event"] != "configuration_loaded") < 4096


def test_exact_loa4_gets_no_authn_context_for_a_loa3_card(browser: Browser, sp: DemoSp, craft: AuthnRequests,
                                                          config_dir: Path) -> None:
    crafted = craft.build(requested_authn_context={"authn_context_class_ref": [LOA4], "comparison": "exact"})
    posted = error_response(browser.get(craft.redirect(crafted)), sp, crafted.request_id)
    assert posted.status == ("urn:oasis:names:tc:SAML:2.0:status:Responder",
                             "urn:oasis:names:tc:SAML:2.0:status:NoAuthnContext")
    with pytest.raises(StatusNoAuthnContext):
        sp_accepts(sp, posted.fields["SAMLResponse"], crafted.request_id)
    refused = [e for e in audit_lines(config_dir) if e["event"] == "login_refused"]
    assert [e["reason"] for e in refused] == ["authn_context_unsupported"]


@pytest.mark.parametrize(("comparison", "requested"), [
    pytest.param("better", [LOA3], id="better-than-loa3"),
    pytest.param("maximum", [LOA2], id="maximum-loa2"),
    pytest.param("minimum", [LOA4, "urn:example:loa:unknown"], id="minimum-loa4-or-an-unknown-one"),
    # SAML Core §3.3.2.2.1: stronger than the contexts named, which a ClassRef the broker cannot rank is among
    pytest.param("better", ["urn:example:loa:unknown", LOA2], id="better-than-loa2-and-an-unknown-one"),
    pytest.param("better", ["urn:oasis:names:tc:SAML:2.0:ac:classes:Smartcard", LOA2],
                 id="better-than-loa2-and-a-smartcard"),
])
def test_requested_context_not_met_by_a_loa3_card_gets_no_authn_context(
        browser: Browser, sp: DemoSp, craft: AuthnRequests, config_dir: Path, comparison: str,
        requested: list[str]) -> None:
    crafted = craft.build(requested_authn_context={"authn_context_class_ref": requested, "comparison": comparison})
    posted = error_response(browser.get(craft.redirect(crafted)), sp, crafted.request_id)
    assert posted.status == ("urn:oasis:names:tc:SAML:2.0:status:Responder",
                             "urn:oasis:names:tc:SAML:2.0:status:NoAuthnContext")
    refused = [e for e in audit_lines(config_dir) if e["event"] == "login_refused"]
    assert [e["reason"] for e in refused] == ["authn_context_unsupported"]


@pytest.mark.parametrize(("comparison", "requested"), [
    pytest.param("minimum", [LOA2], id="minimum-loa2"),
    pytest.param("minimum", ["urn:example:loa:unknown", LOA2], id="minimum-an-unknown-one-or-loa2"),
    pytest.param("exact", [LOA3], id="exact-loa3"),
    pytest.param("exact", [LOA2, LOA3], id="exact-loa2-or-loa3"),
    pytest.param("better", [LOA2], id="better-than-loa2"),
    pytest.param("maximum", [LOA4], id="maximum-loa4"),
    pytest.param("maximum", [LOA2, LOA4], id="maximum-loa2-or-loa4"),
])
def test_requested_context_met_by_a_loa3_card(browser: Browser, sp: DemoSp, craft: AuthnRequests, comparison: str,
                                              requested: list[str]) -> None:
    crafted = craft.build(requested_authn_context={"authn_context_class_ref": requested, "comparison": comparison})
    posted = posted_response(browser.get(craft.redirect(crafted)))
    result = sp_accepts(sp, posted.fields["SAMLResponse"], crafted.request_id)
    assert result.assertion.authn_statement[0].authn_context.authn_context_class_ref.text == LOA3


def test_is_passive_without_certificate_gets_no_passive_and_no_page(browser: Browser, sp: DemoSp,
                                                                    craft: AuthnRequests) -> None:
    browser.certificate_pem = None
    crafted = craft.build(is_passive="true")
    posted = error_response(browser.get(craft.redirect(crafted, relay_state="p")), sp, crafted.request_id)
    assert posted.status == ("urn:oasis:names:tc:SAML:2.0:status:Responder",
                             "urn:oasis:names:tc:SAML:2.0:status:NoPassive")
    assert posted.fields["RelayState"] == "p"
    with pytest.raises(StatusNoPassive):
        sp_accepts(sp, posted.fields["SAMLResponse"], crafted.request_id)


def test_is_passive_without_certificate_is_audited_as_passive_login_impossible(
        browser: Browser, craft: AuthnRequests, config_dir: Path) -> None:
    # broker.reasons has a code for exactly this case; operators look for it in the audit trail
    browser.certificate_pem = None
    posted_response(browser.get(craft.redirect(craft.build(is_passive="true"))))
    issued = [e for e in audit_lines(config_dir) if e["event"] == "error_response_issued"]
    assert [(e["reason"], e["data"]["status"]) for e in issued] == [  # type: ignore[index]
        ("passive_login_impossible", "urn:oasis:names:tc:SAML:2.0:status:NoPassive")]


def test_requested_subject_gets_request_unsupported(browser: Browser, sp: DemoSp, craft: AuthnRequests) -> None:
    crafted = craft.build(subject=Subject(name_id=NameID(text="SE2120001009-anna")))
    posted = error_response(browser.get(craft.redirect(crafted)), sp, crafted.request_id)
    assert posted.status == ("urn:oasis:names:tc:SAML:2.0:status:Requester",
                             "urn:oasis:names:tc:SAML:2.0:status:RequestUnsupported")


# --- RelayState (Bindings §3.4.3: at most 80 bytes) -----------------------------------------


@pytest.mark.parametrize("relay_state", [
    pytest.param("r" * 81, id="81-ascii-bytes"),
    pytest.param("å" * 41, id="41-chars-82-utf8-bytes"),
])
def test_relay_state_over_80_bytes_is_refused(browser: Browser, craft: AuthnRequests, relay_state: str) -> None:
    assert_refused(browser.get(craft.redirect(craft.build(), relay_state=relay_state)), "relay_state_too_long")


@pytest.mark.parametrize("relay_state", [
    pytest.param("r" * 80, id="80-ascii-bytes"),
    pytest.param("å" * 40, id="40-chars-80-utf8-bytes"),
])
def test_relay_state_of_80_bytes_comes_back_unchanged(browser: Browser, craft: AuthnRequests,
                                                      relay_state: str) -> None:
    posted = posted_response(browser.get(craft.redirect(craft.build(), relay_state=relay_state)))
    assert posted.fields["RelayState"] == relay_state


@pytest.mark.parametrize("relay_state", [
    pytest.param("a\x00b", id="nul"),
    pytest.param("a\rb", id="cr"),
    pytest.param("a\nb", id="lf"),
    pytest.param("a\r\nb", id="cr-lf"),
])
def test_a_relay_state_a_browser_would_change_is_refused(browser: Browser, craft: AuthnRequests,
                                                         relay_state: str) -> None:
    """The auto-post form cannot carry it back exactly (Bindings §3.4.3): NUL becomes U+FFFD, CR LF and LF
    become CR LF on the way to the SP."""
    assert_refused(browser.get(craft.redirect(craft.build(), relay_state=relay_state)), "saml_request_malformed")


def test_a_relay_state_with_a_tab_and_other_controls_comes_back_unchanged(browser: Browser,
                                                                          craft: AuthnRequests) -> None:
    relay_state = "a\tb\x01c\x7f"
    posted = posted_response(browser.get(craft.redirect(craft.build(), relay_state=relay_state)))
    assert posted.fields["RelayState"] == relay_state


def _posted_with_relay_state(browser: Browser, craft: AuthnRequests, raw_relay_state: str) -> TestResponse:
    """An HTTP-POST AuthnRequest whose form body carries RelayState exactly as ``raw_relay_state`` (encoded)."""
    body = f"SAMLRequest={quote(base64.b64encode(craft.build(sign=True).xml).decode(), safe='')}" \
           f"&RelayState={raw_relay_state}"
    return browser.post_body(SSO_URL, body.encode("ascii"))


@pytest.mark.parametrize(("raw", "relay_state"), [
    pytest.param("%C3%A5", "å", id="utf8-octets"),
    pytest.param("%25E5", "%E5", id="an-escaped-percent"),
    pytest.param("a+b", "a b", id="plus-is-space"),
])
def test_a_posted_relay_state_comes_back_exactly(browser: Browser, craft: AuthnRequests, raw: str,
                                                 relay_state: str) -> None:
    assert posted_response(_posted_with_relay_state(browser, craft, raw)).fields["RelayState"] == relay_state


def test_a_posted_relay_state_that_is_not_utf8_is_refused(browser: Browser, craft: AuthnRequests,
                                                          config_dir: Path) -> None:
    """``%E5`` (Latin-1 "å" from an SP page in ISO-8859-1) decodes to nothing in UTF-8: refused, as on the
    HTTP-Redirect binding, not turned into the three characters ``%E5`` (which ``%25E5`` also is)."""
    assert_refused(_posted_with_relay_state(browser, craft, "%E5"), "saml_request_malformed")
    assert "not percent-encoded UTF-8: the octet 0xE5" in rejection_detail(config_dir)


# --- encoding and parsing -------------------------------------------------------------------

_DOCTYPE = (b'<?xml version="1.0"?>\n<!DOCTYPE samlp:AuthnRequest [<!ENTITY sp "https://localhost:8443/demo-sp/'
            b'metadata">]>\n<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" '
            b'xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_doctype" Version="2.0" '
            b'IssueInstant="2030-01-01T00:00:00Z"><saml:Issuer>&sp;</saml:Issuer></samlp:AuthnRequest>')


def rejection_detail(config_dir: Path) -> str:
    """The operator detail of the one saml_request_rejected event (says which step refused)."""
    rejected = [e for e in audit_lines(config_dir) if e["event"] == "saml_request_rejected"]
    assert len(rejected) == 1
    return str(rejected[0]["detail"])


@pytest.mark.parametrize(("encoded", "step"), [
    pytest.param("this is not base64!", "base64", id="not-base64"),
    pytest.param(base64.b64encode(b"\xff" * 32).decode(), "DEFLATE", id="not-deflate"),
    pytest.param(base64.b64encode(deflate(b"this is not XML at all")).decode(), "well-formed", id="not-xml"),
    pytest.param(base64.b64encode(deflate(_DOCTYPE)).decode(), "document type", id="doctype-with-entity"),
    # SAML Bindings §3.4.4.1: the message is the DEFLATE data (RFC 1951), which ends with its final block
    pytest.param(base64.b64encode(deflate(b"<x/>") + b"trailing").decode(), "8 octets follow the end of the DEFLATE",
                 id="octets-after-the-deflate-data"),
    pytest.param(base64.b64encode(zlib.compress(b"<x/>")[2:]).decode(), "4 octets follow the end of the DEFLATE",
                 id="a-zlib-trailer-after-the-deflate-data"),
])
def test_undecodable_redirect_request_is_malformed(browser: Browser, config_dir: Path, encoded: str,
                                                   step: str) -> None:
    assert_refused(browser.get(redirect_url(encoded=encoded, relay_state="/")), "saml_request_malformed")
    assert step in rejection_detail(config_dir)


def test_doctype_in_post_request_is_malformed(browser: Browser, config_dir: Path) -> None:
    assert_refused(browser.post(SSO_URL, post_fields(_DOCTYPE, "/")), "saml_request_malformed")
    assert "document type" in rejection_detail(config_dir)


def test_request_with_both_acs_url_and_index_is_malformed(browser: Browser, craft: AuthnRequests,
                                                          config_dir: Path) -> None:
    # SAML Core §3.4.1: the two are mutually exclusive
    xml = with_attributes(craft.build().xml, AssertionConsumerServiceURL=ACS_URL, AssertionConsumerServiceIndex="1")
    assert_refused(browser.get(craft.redirect(xml)), "saml_request_malformed")
    assert "mutually exclusive" in rejection_detail(config_dir)


@pytest.mark.parametrize(("value", "force_authn"), [
    pytest.param("true", True, id="true"),
    pytest.param(" true ", True, id="true-with-spaces"),
    pytest.param("1\n", True, id="one-with-a-newline"),
    pytest.param("\tfalse", False, id="false-with-a-tab"),
    pytest.param("0", False, id="zero"),
])
def test_force_authn_is_read_as_an_xs_boolean(browser: Browser, craft: AuthnRequests, config_dir: Path, value: str,
                                              force_authn: bool) -> None:
    """XML Schema Part 2 §3.2.2: xs:boolean is true, false, 1 or 0, its whitespace collapsed."""
    posted_response(browser.get(craft.redirect(with_attributes(craft.build().xml, ForceAuthn=value))))
    (started,) = [e for e in audit_lines(config_dir) if e["event"] == "login_started"]
    assert started["data"]["force_authn"] is force_authn  # type: ignore[index]


@pytest.mark.parametrize("value", ["yes", "TRUE", "", "t rue"])
def test_force_authn_that_is_no_xs_boolean_is_malformed(browser: Browser, sp: DemoSp, craft: AuthnRequests,
                                                        config_dir: Path, value: str) -> None:
    # read once the SP and its ACS are known: the SP gets a Requester error Response (SAML Core §3.4.1.4)
    crafted = craft.build()
    posted = error_response(browser.get(craft.redirect(with_attributes(crafted.xml, ForceAuthn=value))), sp,
                            crafted.request_id)
    assert posted.status == ("urn:oasis:names:tc:SAML:2.0:status:Requester", None)
    assert "is not an xs:boolean" in rejection_detail(config_dir)


def _set_allow_create(value: str) -> Callable[[etree._Element], None]:
    def change(root: etree._Element) -> None:
        policy = root.find("samlp:NameIDPolicy", NS)
        assert policy is not None
        policy.set("AllowCreate", value)
    return change


@pytest.mark.parametrize("value", [
    pytest.param(" true ", id="true-with-spaces"),
    pytest.param("0", id="zero"),
    pytest.param("1\n", id="one-with-a-newline"),
])
def test_allow_create_that_is_an_xs_boolean_is_accepted(browser: Browser, sp: DemoSp, craft: AuthnRequests,
                                                         value: str) -> None:
    # SAML Core §3.4.1.1: either value is answered, since a persistent NameID is a pseudonym the broker derives
    # (SAML Core §8.3.7), established for every user in advance, and a transient one is never "created" for good
    crafted = craft.build()
    posted = posted_response(browser.get(craft.redirect(edit(crafted.xml, _set_allow_create(value)))))
    sp_accepts(sp, posted.fields["SAMLResponse"], crafted.request_id)


@pytest.mark.parametrize(("name", "change"), [
    pytest.param("ForceAuthn", lambda xml: with_attributes(xml, ForceAuthn="yes"), id="force-authn"),
    pytest.param("IsPassive", lambda xml: with_attributes(xml, IsPassive="TRUE"), id="is-passive"),
    pytest.param("AllowCreate", lambda xml: edit(xml, _set_allow_create("yes")), id="allow-create-yes"),
    pytest.param("AllowCreate", lambda xml: edit(xml, _set_allow_create("")), id="allow-create-empty"),
    pytest.param("AllowCreate", lambda xml: edit(xml, _set_allow_create("t rue")), id="allow-create-split"),
])
def test_option_that_is_no_xs_boolean_is_refused_for_the_known_sp(
        browser: Browser, craft: AuthnRequests, config_dir: Path, name: str,
        change: Callable[[bytes], bytes]) -> None:
    """XML Schema Part 2 §3.2.2: ForceAuthn, IsPassive (SAML Core §3.4.1) and NameIDPolicy's AllowCreate
    (§3.4.1.1) are xs:boolean. They are read once the SP and its ACS are trusted, so the refusal names its SP
    (and carries where a SAML error Response goes, for a reason that has a SAML status)."""
    crafted = craft.build()
    posted = posted_response(browser.get(craft.redirect(change(crafted.xml))))
    assert posted.root.get("InResponseTo") == crafted.request_id
    assert posted.status == ("urn:oasis:names:tc:SAML:2.0:status:Requester", None)
    events = audit_lines(config_dir)
    (rejected,) = [e for e in events if e["event"] == "saml_request_rejected"]
    assert (rejected["reason"], rejected.get("sp")) == ("saml_request_malformed", SP_ENTITY_ID)
    assert f"{name}=" in str(rejected["detail"])
    assert "is not an xs:boolean" in str(rejected["detail"])
    assert not [e for e in events if e["event"] in ("login_started", "assertion_issued")]


def test_deflate_bomb_is_refused(browser: Browser, craft: AuthnRequests, config_dir: Path) -> None:
    bomb = craft.build().xml + b" " * (16 * MAX_MESSAGE_BYTES)
    url = craft.redirect(bomb)
    assert len(url) < 4 * 4096  # a few kilobytes on the wire
    assert_refused(browser.get(url), "saml_request_too_large")
    assert "inflated" in rejection_detail(config_dir)


def test_post_request_over_the_size_limit_is_refused(browser: Browser, craft: AuthnRequests) -> None:
    big = craft.build(sign=True).xml + b" " * MAX_MESSAGE_BYTES
    assert_refused(browser.post(SSO_URL, post_fields(big, "/")), "saml_request_too_large")


def test_request_body_over_the_http_limit_is_refused(browser: Browser, settings: Settings) -> None:
    # one HTTP limit for every endpoint, set by the largest message either side accepts: the municipal IdPs'
    # Responses at the ACS (sp.max_message_bytes) are larger than the SPs' AuthnRequests
    assert settings.broker.sp is not None
    largest = max(MAX_MESSAGE_BYTES, settings.broker.sp.max_message_bytes)
    assert_refused(browser.post(SSO_URL, {"SAMLRequest": "A" * (3 * largest)}), "request_too_large")


def two_blocks(xml: bytes, size: int) -> bytes:
    """``xml`` padded with spaces to inflate to exactly ``size`` bytes, DEFLATEd as two blocks (the
    request, a full flush, then the padding): legal RFC 1951 that any encoder may produce."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    raw = compressor.compress(xml) + compressor.flush(zlib.Z_FULL_FLUSH)
    raw += compressor.compress(b" " * (size - len(xml))) + compressor.flush()
    assert len(zlib.decompress(raw, -15)) == size
    return raw


def test_request_inflating_to_exactly_the_limit_is_accepted(browser: Browser, sp: DemoSp,
                                                            craft: AuthnRequests) -> None:
    crafted = craft.build()
    encoded = base64.b64encode(two_blocks(crafted.xml, MAX_MESSAGE_BYTES)).decode()
    posted = posted_response(browser.get(redirect_url(encoded=encoded, relay_state="/", key=craft.key)))
    sp_accepts(sp, posted.fields["SAMLResponse"], crafted.request_id)


def test_request_inflating_one_byte_past_the_limit_is_refused(browser: Browser, craft: AuthnRequests) -> None:
    encoded = base64.b64encode(two_blocks(craft.build().xml, MAX_MESSAGE_BYTES + 1)).decode()
    assert_refused(browser.get(redirect_url(encoded=encoded, relay_state="/", key=craft.key)),
                   "saml_request_too_large")


def test_sso_endpoint_without_parameters_is_saml_request_missing(browser: Browser) -> None:
    assert_refused(browser.get(SSO_URL), "saml_request_missing")
    assert_refused(browser.post(SSO_URL, {}), "saml_request_missing")


def test_duplicate_saml_request_parameter_is_malformed(browser: Browser, craft: AuthnRequests) -> None:
    url = craft.redirect(craft.build())
    first = url.split("?", 1)[1].split("&", 1)[0]
    assert_refused(browser.get(f"{url}&{first}"), "saml_request_malformed")


def test_duplicate_saml_request_form_field_is_malformed(browser: Browser, craft: AuthnRequests) -> None:
    fields = post_fields(craft.build(sign=True).xml)
    body = f"SAMLRequest={quote(fields['SAMLRequest'], safe='')}"
    response = browser.client.post(SSO_URL, data=f"{body}&{body}", content_type="application/x-www-form-urlencoded",
                                   environ_base={"REMOTE_ADDR": browser.remote_addr,
                                                 "SSL_CLIENT_CERT": browser.certificate_pem or ""})
    assert_refused(response, "saml_request_malformed")


# --- an SP allowed to send unsigned requests -------------------------------------------------


def _edit_sp(config_dir: Path, **changes: object) -> None:
    path = config_dir / "service-providers" / "demo-sp.yaml"
    data = yaml.safe_load(path.read_text())
    data.update(changes)
    path.write_text(yaml.safe_dump(data, allow_unicode=True))


def _metadata_without_signed_requests(config_dir: Path) -> None:
    path = config_dir / "metadata" / "demo-sp.xml"
    text = path.read_text()
    assert 'AuthnRequestsSigned="true"' in text
    path.write_text(text.replace('AuthnRequestsSigned="true"', 'AuthnRequestsSigned="false"'))


def _want_authn_requests_signed(browser: Browser) -> str | None:
    """WantAuthnRequestsSigned of the broker's IdP metadata (SAML Metadata §2.4.3)."""
    response = browser.get("/saml/idp/metadata")
    assert response.status_code == 200
    descriptor = parse_untrusted(response.get_data(), 1 << 20).find(
        "{urn:oasis:names:tc:SAML:2.0:metadata}IDPSSODescriptor")
    assert descriptor is not None
    return descriptor.get("WantAuthnRequestsSigned")


def test_the_idp_metadata_asks_for_signed_requests_when_an_sp_must_sign(browser: Browser) -> None:
    """SPs that let the IdP's metadata decide (python3-saml merges it over its own settings) must be told."""
    assert _want_authn_requests_signed(browser) == "true"


class TestSpThatMaySendUnsignedRequests:
    """require_signed_requests: false, and the SP's metadata says AuthnRequestsSigned="false"."""

    @pytest.fixture
    def settings(self, config_dir: Path) -> Settings:
        _edit_sp(config_dir, require_signed_requests=False)
        _metadata_without_signed_requests(config_dir)
        return load_settings(config_dir)

    @pytest.mark.parametrize("binding", ["redirect", "post"])
    def test_unsigned_request_is_accepted(self, browser: Browser, sp: DemoSp, craft: AuthnRequests,
                                          binding: str) -> None:
        crafted = craft.build()
        response = (browser.get(craft.redirect(crafted, signed=False)) if binding == "redirect"
                    else browser.post(SSO_URL, post_fields(crafted.xml, "/")))
        posted = posted_response(response)
        sp_accepts(sp, posted.fields["SAMLResponse"], crafted.request_id)

    def test_unsigned_request_without_destination_is_accepted(self, browser: Browser, sp: DemoSp,
                                                              craft: AuthnRequests) -> None:
        crafted = craft.build(destination=None)
        posted = posted_response(browser.get(craft.redirect(crafted, signed=False)))
        sp_accepts(sp, posted.fields["SAMLResponse"], crafted.request_id)

    def test_the_idp_metadata_does_not_ask_for_signed_requests(self, browser: Browser) -> None:
        assert _want_authn_requests_signed(browser) == "false"

    def test_a_signature_that_is_present_is_still_verified(self, browser: Browser, craft: AuthnRequests,
                                                           stranger_key: rsa.RSAPrivateKey) -> None:
        assert_refused(browser.get(craft.redirect(craft.build(), key=stranger_key)), "saml_signature_invalid")


class TestSpWhoseMetadataStillRequiresSignedRequests:
    """require_signed_requests: false in the broker's file does not override AuthnRequestsSigned="true"."""

    @pytest.fixture
    def settings(self, config_dir: Path) -> Settings:
        _edit_sp(config_dir, require_signed_requests=False)
        return load_settings(config_dir)

    def test_unsigned_request_is_refused(self, browser: Browser, craft: AuthnRequests) -> None:
        assert_refused(browser.get(craft.redirect(craft.build(), signed=False)), "saml_request_unsigned")

    def test_the_idp_metadata_asks_for_signed_requests(self, browser: Browser) -> None:
        assert _want_authn_requests_signed(browser) == "true"


# --- audit: one correlation ID per login, shown to the user ----------------------------------


@pytest.mark.parametrize(("send_request", "code"), [
    pytest.param(lambda browser, craft, key: browser.get(craft.redirect(craft.build(), signed=False)),
                 "saml_request_unsigned", id="unsigned"),
    pytest.param(lambda browser, craft, key: browser.get(craft.redirect(craft.build(), key=key)),
                 "saml_signature_invalid", id="signed-with-another-key"),
    pytest.param(lambda browser, craft, key: browser.get(craft.redirect(craft.build(), sig_alg=RSA_SHA1)),
                 "saml_algorithm_not_allowed", id="rsa-sha1"),
    pytest.param(lambda browser, craft, key: browser.get(craft.redirect(
        craft.build(destination="https://localhost:8443/saml/idp/sso-other"))),
                 "saml_destination_mismatch", id="another-destination"),
    pytest.param(lambda browser, craft, key: browser.get(craft.redirect(
        craft.build(issue_instant=instant(-dt.timedelta(hours=1))))), "saml_request_stale", id="an-hour-old"),
    pytest.param(lambda browser, craft, key: browser.get(craft.redirect(craft.build(), relay_state="r" * 81)),
                 "relay_state_too_long", id="relay-state-of-81-bytes"),
    pytest.param(lambda browser, craft, key: browser.get(craft.redirect(
        craft.build(assertion_consumer_service_url="https://localhost:8443/elsewhere/acs"))),
                 "acs_url_not_registered", id="acs-url-not-registered"),
])
def test_a_refusal_of_a_registered_sps_request_names_the_sp(
        browser: Browser, craft: AuthnRequests, config_dir: Path, stranger_key: rsa.RSAPrivateKey,
        send_request: Callable[[Browser, AuthnRequests, rsa.RSAPrivateKey], TestResponse], code: str) -> None:
    """Once the Issuer names a registered SP, a refusal says which SP's request it was (the sp field, which
    ``broker audit query --sp`` selects by): the operator's remedy is at that SP (its signing key, its algorithms,
    the broker URL and ACS in its configuration, its clock), and with several SPs the record must say which."""
    assert_refused(send_request(browser, craft, stranger_key), code)
    (rejected,) = [e for e in audit_lines(config_dir) if e["event"] == "saml_request_rejected"]
    assert (rejected["reason"], rejected.get("sp")) == (code, SP_ENTITY_ID)


def test_refused_login_shows_the_correlation_id_of_its_audit_events(browser: Browser, craft: AuthnRequests,
                                                                    users: Path, config_dir: Path) -> None:
    browser.certificate_pem = (users / "fatima.pem").read_text()
    response = browser.get(craft.redirect(craft.build()))
    assert_refused(response, "issuer_unknown")
    refid, _retry = error_page(response)
    events = audit_lines(config_dir)
    # the AuthnFailed Response is only offered on the page ("back to the service"), so it is not audited as sent
    assert [e["event"] for e in events] == ["login_started", "certificate_presented", "certificate_rejected"]
    assert {e["correlation_id"] for e in events} == {refid}
    assert events[2]["reason"] == "issuer_unknown"


def test_refused_request_shows_the_correlation_id_of_its_audit_event(browser: Browser, craft: AuthnRequests,
                                                                     config_dir: Path) -> None:
    response = browser.get(craft.redirect(craft.build(), signed=False))
    assert_refused(response, "saml_request_unsigned")
    refid, retry = error_page(response)
    assert retry is None  # nothing the user can retry: the SP must sign
    events = audit_lines(config_dir)
    assert [(e["event"], e["reason"], e["correlation_id"]) for e in events] == [
        ("saml_request_rejected", "saml_request_unsigned", refid)]


def test_successful_login_has_one_correlation_id_which_is_the_transaction_identifier(
        browser: Browser, sp: DemoSp, craft: AuthnRequests, config_dir: Path) -> None:
    crafted = craft.build()
    posted = posted_response(browser.get(craft.redirect(crafted)))
    result = sp_accepts(sp, posted.fields["SAMLResponse"], crafted.request_id)
    events = audit_lines(config_dir)
    ids = {e["correlation_id"] for e in events}
    assert len(events) == 4
    assert len(ids) == 1
    transaction = [a for s in result.assertion.attribute_statement for a in s.attribute
                   if a.name == "urn:oid:1.2.752.201.3.2"]
    assert [v.text for v in transaction[0].attribute_value] == list(ids)


class TestSpNotOpenToAMunicipality:
    """The demo SP without kommun-b: bo's card is refused for it."""

    @pytest.fixture
    def settings(self, config_dir: Path) -> Settings:
        _edit_sp(config_dir, municipalities=["kommun-a", "kommun-c"])
        return load_settings(config_dir)

    def test_the_offered_answer_is_responder_request_denied(self, browser: Browser, sp: DemoSp,
                                                             craft: AuthnRequests, users: Path) -> None:
        """SAML Core §3.2.2.2: refusing a user is the broker's policy decision (top-level Responder), not an
        error of the SP's request (Requester)."""
        browser.certificate_pem = (users / "bo.pem").read_text()
        crafted = craft.build()
        page = browser.get(craft.redirect(crafted))
        assert_refused(page, "municipality_not_allowed")
        answer = [fields for _, fields in forms(page) if "SAMLResponse" in fields]
        assert len(answer) == 1
        root = parse_untrusted(base64.b64decode(answer[0]["SAMLResponse"]), 1 << 20)
        assert status_codes(root) == ("urn:oasis:names:tc:SAML:2.0:status:Responder",
                                      "urn:oasis:names:tc:SAML:2.0:status:RequestDenied")
        assert root.get("InResponseTo") == crafted.request_id


_LONG = "a" * 30_000


@pytest.mark.parametrize(("xml", "code"), [
    pytest.param(f'<x:AuthnRequest xmlns:x="urn:{_LONG}" ID="_r" Version="2.0"/>', "saml_request_malformed",
                 id="root-element"),
    pytest.param(f'<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" '
                 f'xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_r" Version="2.0" '
                 f'IssueInstant="2026-01-01T00:00:00Z"><saml:Issuer>urn:{_LONG}</saml:Issuer></samlp:AuthnRequest>',
                 "sp_unknown", id="issuer"),
])
def test_what_anyone_sends_to_the_sso_endpoint_reaches_the_audit_trail_bounded(
        browser: Browser, config_dir: Path, xml: str, code: str) -> None:
    """Any web page can send its visitors to the SSO endpoint with a request of its making, refused before any
    signature is looked at: a root element with a 30 000-character namespace, or an Issuer that long (well inside
    max_message_bytes once inflated), reaches the saml_request_rejected record cut short, as at the ACS and the
    SingleLogoutService endpoints, not 30 kB per request."""
    assert_refused(browser.get(redirect_url(xml)), code)
    detail = rejection_detail(config_dir)
    assert "urn:aaaa" in detail
    assert len(detail) < 500, len(detail)
