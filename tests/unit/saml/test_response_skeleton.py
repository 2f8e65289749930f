"""Success Responses are filled into a skeleton made once per builder (broker/saml/response.py): byte for byte the
Response built element by element in schema order (SAML Core §2.3.3, §3.3.3), for every optional part present or
not, hostile values included, and no Response sees another's values."""

from __future__ import annotations

import datetime as dt
import itertools
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree

from broker.clock import FixedClock
from broker.model import ProxyRestriction, ReplyTarget
from broker.saml import response as response_module
from broker.saml.authnrequest import SAML, SAMLP
from broker.saml.bindings import ATTRNAME_URI, CM_BEARER, NAMEID_ENTITY, STATUS_SUCCESS
from broker.saml.response import AssertionContent, ReleasedAttribute, ResponseBuilder
from broker.saml.xmldsig import XmlSigner, XmlVerifier
from broker.saml.xmltime import format_instant

NOW = dt.datetime(2026, 11, 27, 9, 0, tzinfo=dt.UTC)
ENTITY = "https://broker.example/idp"
LIFETIME = dt.timedelta(minutes=5)
SKEW = dt.timedelta(seconds=30)
HOSTILE = "Åsa & <Örjan> \"quoted\" 'apos' \t tab\r\nCRLF ]]> \u00a0nbsp \U0001f600"
XS = "http://www.w3.org/2001/XMLSchema"
XSI = "http://www.w3.org/2001/XMLSchema-instance"


@pytest.fixture(scope="module")
def signer() -> XmlSigner:
    key = rsa.generate_private_key(65537, 2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "broker signing")])
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(1).not_valid_before(NOW - dt.timedelta(days=1))
                   .not_valid_after(NOW + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    return XmlSigner(certificate, key)


def _element_by_element(signer: XmlSigner, target: ReplyTarget, content: AssertionContent, ids: list[str], *,
                        sign_response: bool) -> bytes:
    """The reference: every element and attribute made in schema order, as the builder did before the skeleton."""
    def p(name: str) -> str:
        return f"{{{SAMLP}}}{name}"

    def a(name: str) -> str:
        return f"{{{SAML}}}{name}"

    sub = etree.SubElement
    issued, not_before = format_instant(NOW), format_instant(NOW - SKEW)
    not_on_or_after = format_instant(NOW + LIFETIME)
    root = etree.Element(p("Response"), nsmap={"saml2p": SAMLP, "saml2": SAML})
    root.set("ID", ids[0])
    if target.in_response_to:
        root.set("InResponseTo", target.in_response_to)
    root.set("Version", "2.0")
    root.set("IssueInstant", issued)
    root.set("Destination", target.acs_url)
    response_issuer = sub(root, a("Issuer"), Format=NAMEID_ENTITY)
    response_issuer.text = ENTITY
    sub(sub(root, p("Status")), p("StatusCode"), Value=STATUS_SUCCESS)
    assertion = sub(root, a("Assertion"), Version="2.0", ID=ids[1], IssueInstant=issued)
    assertion_issuer = sub(assertion, a("Issuer"), Format=NAMEID_ENTITY)
    assertion_issuer.text = ENTITY
    subject = sub(assertion, a("Subject"))
    sub(subject, a("NameID"), NameQualifier=ENTITY, SPNameQualifier=target.sp_entity_id,
        Format=content.name_id_format).text = content.name_id
    data = sub(sub(subject, a("SubjectConfirmation"), Method=CM_BEARER), a("SubjectConfirmationData"),
               NotOnOrAfter=not_on_or_after, Recipient=target.acs_url)
    if target.in_response_to:
        data.set("InResponseTo", target.in_response_to)
    conditions = sub(assertion, a("Conditions"), NotBefore=not_before, NotOnOrAfter=not_on_or_after)
    sub(sub(conditions, a("AudienceRestriction")), a("Audience")).text = target.sp_entity_id
    if content.proxy_restriction is not None:
        restriction = sub(conditions, a("ProxyRestriction"))
        for audience in content.proxy_restriction.audiences:
            sub(restriction, a("Audience")).text = audience
        if content.proxy_restriction.count is not None:
            restriction.set("Count", str(content.proxy_restriction.count))
    statement = sub(assertion, a("AuthnStatement"), AuthnInstant=format_instant(content.authn_instant),
                    SessionIndex=content.session_index,
                    SessionNotOnOrAfter=format_instant(content.session_not_on_or_after))
    context = sub(statement, a("AuthnContext"))
    sub(context, a("AuthnContextClassRef")).text = content.loa_uri
    for authority in content.authenticating_authorities:
        sub(context, a("AuthenticatingAuthority")).text = authority
    if content.attributes:
        statement = sub(assertion, a("AttributeStatement"))
        for released in content.attributes:
            attribute = sub(statement, a("Attribute"), Name=released.uri, NameFormat=ATTRNAME_URI,
                            FriendlyName=released.friendly_name)
            for value in released.values:
                element = sub(attribute, a("AttributeValue"), nsmap={"xs": XS, "xsi": XSI})
                element.set(f"{{{XSI}}}type", "xs:string")
                element.text = value
    signer.sign(assertion, after=assertion_issuer)
    if sign_response:
        signer.sign(root, after=response_issuer)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def _content(*, restriction: ProxyRestriction | None, authorities: tuple[str, ...],
             attributes: tuple[ReleasedAttribute, ...], name_id: str = "pseudonym") -> AssertionContent:
    return AssertionContent(
        name_id=name_id, name_id_format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent",
        loa_uri="http://id.elegnamnden.se/loa/1.0/loa3", authn_instant=NOW - dt.timedelta(seconds=7),
        session_index="_s1", session_not_on_or_after=NOW + dt.timedelta(hours=8), attributes=attributes,
        authenticating_authorities=authorities, proxy_restriction=restriction)


ATTRIBUTES = (ReleasedAttribute("urn:oid:2.5.4.42", "givenName", ("Anna", HOSTILE, "")),
              ReleasedAttribute("urn:oid:1.2.752.29.6.2.1", "employeeHsaId", ("SE2321000016-1234",)))


@pytest.mark.parametrize("in_response_to", [pytest.param("_req<&>\"", id="solicited"),
                                            pytest.param(None, id="unsolicited")])
@pytest.mark.parametrize("restriction", [
    pytest.param(None, id="no-proxy-restriction"),
    pytest.param(ProxyRestriction(2, ("https://a.example", "https://b.example")), id="proxy-restriction"),
    pytest.param(ProxyRestriction(None, ("https://a.example",)), id="proxy-restriction-no-count"),
])
@pytest.mark.parametrize("authorities", [pytest.param((), id="no-authority"),
                                         pytest.param(("https://idp.kommun-c.example",), id="authority")])
@pytest.mark.parametrize("attributes", [pytest.param((), id="no-attributes"),
                                        pytest.param(ATTRIBUTES, id="attributes")])
@pytest.mark.parametrize("sign_response", [False, True], ids=["assertion-signed", "both-signed"])
def test_success_is_the_response_built_element_by_element(
        signer: XmlSigner, monkeypatch: pytest.MonkeyPatch, in_response_to: str | None,
        restriction: ProxyRestriction | None, authorities: tuple[str, ...],
        attributes: tuple[ReleasedAttribute, ...], sign_response: bool) -> None:
    counter = itertools.count()
    monkeypatch.setattr(response_module, "new_id", lambda: f"_id{next(counter)}")
    builder = ResponseBuilder(ENTITY, signer, FixedClock(NOW), assertion_lifetime=LIFETIME, clock_skew=SKEW)
    target = ReplyTarget(f"https://sp.example/sp?{HOSTILE}", "https://sp.example/acs?a=1&b=2", in_response_to, None)
    content = _content(restriction=restriction, authorities=authorities, attributes=attributes)
    for round_ in range(2):  # the second from the same skeleton: nothing of the first stays in it
        ids = [f"_id{2 * round_}", f"_id{2 * round_ + 1}"]
        made = builder.success(target, content, sign_response=sign_response)
        assert made == _element_by_element(signer, target, content, ids, sign_response=sign_response)


def test_responses_from_one_skeleton_in_threads_are_their_own(signer: XmlSigner) -> None:
    """Responses made at once in threads that did not make the skeleton each carry their own values, and each
    Assertion's signature verifies (lxml's names dictionaries are per thread)."""
    builder = ResponseBuilder(ENTITY, signer, FixedClock(NOW), assertion_lifetime=LIFETIME, clock_skew=SKEW)
    made: dict[int, bytes] = {}

    def issue(n: int) -> None:
        target = ReplyTarget(f"https://sp{n}.example", f"https://sp{n}.example/acs", f"_req{n}", None)
        made[n] = builder.success(target, _content(restriction=None, authorities=(), attributes=ATTRIBUTES,
                                                   name_id=f"user{n}"), sign_response=n % 2 == 0)

    threads = [threading.Thread(target=issue, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    verifier = XmlVerifier([signer.certificate])
    for n, xml in made.items():
        root = etree.fromstring(xml)
        assertion = root.find(f"{{{SAML}}}Assertion")
        assert assertion is not None
        verifier.verify(assertion)
        assert root.get("InResponseTo") == f"_req{n}"
        assert assertion.findtext(f"{{{SAML}}}Subject/{{{SAML}}}NameID") == f"user{n}"
        assert assertion.findtext(f"{{{SAML}}}Conditions/{{{SAML}}}AudienceRestriction/{{{SAML}}}Audience") \
            == f"https://sp{n}.example"
        assert b"xmlns:xs=" in xml
