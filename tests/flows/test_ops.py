"""Endpoints for operators, probes and SP administrators: health, readiness, metadata, diagnosis."""

from __future__ import annotations

import base64
import datetime as dt
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from lxml import etree

from broker.app import create_app
from broker.cli import main
from broker.clock import FixedClock
from broker.config.loader import Settings, load_settings
from broker.saml.idp_metadata import IdpMetadata
from broker.saml.sp_metadata import SpMetadataDocument
from broker.session.store import RedisStore
from broker.web.services import Services
from tests.factories.saml import BASE_URL, Browser, xmlsec_binary
from tests.flows.conftest import audit_lines

MD = "urn:oasis:names:tc:SAML:2.0:metadata"
DS = "http://www.w3.org/2000/09/xmldsig#"
NS = {"md": MD, "ds": DS, "saml": "urn:oasis:names:tc:SAML:2.0:assertion",
      "mdattr": "urn:oasis:names:tc:SAML:metadata:attribute"}
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
REDIRECT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
POST = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
LOA2 = "http://id.elegnamnden.se/loa/1.0/loa2"
LOA3 = "http://id.elegnamnden.se/loa/1.0/loa3"

Document = IdpMetadata | SpMetadataDocument | None


# --- health and readiness ----------------------------------------------------------------------


def test_healthz_answers_json_and_tells_nothing_more(browser: Browser) -> None:
    """Public: the IdPs' metadata state and audit forwarding are /admin/health's (fetch errors name internal
    addresses)."""
    response = browser.get("/healthz")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.get_json() == {"status": "ok"}


def test_readyz_is_ready_when_redis_answers(browser: Browser) -> None:
    response = browser.get("/readyz")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.get_json() == {"status": "ok", "checks": {"session_store": "ok", "audit": "ok"}}


def test_probes_write_nothing_to_the_audit(browser: Browser, config_dir: Path) -> None:
    at_start = audit_lines(config_dir, system=True)  # the chain's start and the configuration_loaded of the app
    assert "configuration_loaded" in [e["event"] for e in at_start]
    for path in ("/healthz", "/readyz", "/saml/idp/metadata"):
        assert browser.get(path).status_code == 200
    assert audit_lines(config_dir, system=True) == at_start
    assert audit_lines(config_dir) == []


# --- IdP metadata --------------------------------------------------------------------------------


@pytest.fixture
def metadata_xml(browser: Browser) -> bytes:
    response = browser.get("/saml/idp/metadata")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/samlmetadata+xml"
    return response.get_data()


def _parse(xml: bytes) -> etree._Element:
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    return etree.fromstring(xml, parser)


def test_metadata_is_well_formed_and_names_the_broker(metadata_xml: bytes, config_dir: Path) -> None:
    root = _parse(metadata_xml)
    assert root.tag == f"{{{MD}}}EntityDescriptor"
    assert root.get("entityID") == "https://localhost:8443/saml/idp/metadata"
    assert root.get("ID")
    idp = root.find("md:IDPSSODescriptor", NS)
    assert idp is not None
    assert idp.get("protocolSupportEnumeration") == "urn:oasis:names:tc:SAML:2.0:protocol"


def test_metadata_lists_sso_and_slo_for_both_bindings(metadata_xml: bytes) -> None:
    idp = _parse(metadata_xml).find("md:IDPSSODescriptor", NS)
    assert idp is not None
    sso = {(e.get("Binding"), e.get("Location")) for e in idp.findall("md:SingleSignOnService", NS)}
    assert sso == {(REDIRECT, BASE_URL + "/saml/idp/sso"), (POST, BASE_URL + "/saml/idp/sso")}
    slo = {(e.get("Binding"), e.get("Location")) for e in idp.findall("md:SingleLogoutService", NS)}
    assert slo == {(REDIRECT, BASE_URL + "/saml/idp/slo"), (POST, BASE_URL + "/saml/idp/slo")}


def test_metadata_has_a_bounded_valid_until(metadata_xml: bytes) -> None:
    before = dt.datetime.now(dt.UTC)
    valid_until = _parse(metadata_xml).get("validUntil")
    assert valid_until is not None
    until = dt.datetime.fromisoformat(valid_until.replace("Z", "+00:00"))
    # metadata_validity: 7d in config/example
    assert before + dt.timedelta(days=7) - dt.timedelta(minutes=5) <= until
    assert until <= before + dt.timedelta(days=7, minutes=5)


def test_metadata_carries_the_configured_signing_certificate(metadata_xml: bytes, config_dir: Path) -> None:
    configured = x509.load_pem_x509_certificate((config_dir / "keys" / "idp-signing.crt").read_bytes())
    expected = base64.b64encode(configured.public_bytes(serialization.Encoding.DER)).decode()
    key_descriptors = _parse(metadata_xml).findall("md:IDPSSODescriptor/md:KeyDescriptor", NS)
    assert [k.get("use") for k in key_descriptors] == ["signing"]
    published = key_descriptors[0].findtext("ds:KeyInfo/ds:X509Data/ds:X509Certificate", namespaces=NS)
    assert published is not None
    assert "".join(published.split()) == expected


def test_metadata_is_signed_with_rsa_sha256(metadata_xml: bytes) -> None:
    root = _parse(metadata_xml)
    signature = root[0]
    assert signature.tag == f"{{{DS}}}Signature"  # SAML Metadata §3.1: the first child
    method = signature.find("ds:SignedInfo/ds:SignatureMethod", NS)
    assert method is not None
    assert method.get("Algorithm") == RSA_SHA256
    reference = signature.find("ds:SignedInfo/ds:Reference", NS)
    assert reference is not None
    assert reference.get("URI") == "#" + str(root.get("ID"))
    digest = reference.find("ds:DigestMethod", NS)
    assert digest is not None
    assert digest.get("Algorithm") == "http://www.w3.org/2001/04/xmlenc#sha256"


def test_metadata_signature_verifies_with_xmlsec1(metadata_xml: bytes, config_dir: Path, tmp_path: Path) -> None:
    """An independent check: the xmlsec1 program, with only the configured certificate as key."""
    document = tmp_path / "metadata.xml"
    document.write_bytes(metadata_xml)
    command = [xmlsec_binary(), "--verify", "--pubkey-cert-pem", str(config_dir / "keys" / "idp-signing.crt"),
               "--id-attr:ID", f"{MD}:EntityDescriptor", str(document)]
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=30)
    assert result.returncode == 0, result.stderr

    tampered = tmp_path / "tampered.xml"
    tampered.write_bytes(metadata_xml.replace(b"/saml/idp/sso", b"/saml/idp/evil", 1))
    command[-1] = str(tampered)
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=30)
    assert result.returncode != 0


def test_metadata_announces_the_assurance_levels_of_the_municipalities(metadata_xml: bytes) -> None:
    values = _parse(metadata_xml).findall(
        "md:Extensions/mdattr:EntityAttributes/saml:Attribute[@Name="
        "'urn:oasis:names:tc:SAML:attribute:assurance-certification']/saml:AttributeValue", NS)
    assert sorted(v.text or "" for v in values) == [LOA2, LOA3]


def test_metadata_may_be_cached_by_sps(browser: Browser) -> None:
    response = browser.get("/saml/idp/metadata")
    assert response.headers["Cache-Control"] == "public, max-age=3600"


class TestShortMetadataValidity:
    """idp.metadata_validity of 20 minutes: each document is built anew after 10."""

    @pytest.fixture
    def settings(self, config_dir: Path) -> Settings:
        path = config_dir / "broker.yaml"
        data = yaml.safe_load(path.read_text())
        data["idp"]["metadata_validity"] = "20m"
        path.write_text(yaml.safe_dump(data, allow_unicode=True))
        return load_settings(config_dir)

    @pytest.mark.parametrize("path", ["/saml/idp/metadata", "/saml/sp/metadata"], ids=["idp", "sp"])
    def test_no_cache_keeps_the_metadata_past_its_valid_until(self, browser: Browser, path: str) -> None:
        """SAML Metadata §2.2.1: a copy past validUntil is refused; a cache may keep the document for max-age."""
        response = browser.get(path)
        assert response.status_code == 200
        max_age = int(re.fullmatch(r"public, max-age=(\d+)", response.headers["Cache-Control"]).group(1))  # type: ignore[union-attr]
        valid_until = _parse(response.get_data()).get("validUntil")
        assert valid_until is not None
        until = dt.datetime.fromisoformat(valid_until.replace("Z", "+00:00"))
        assert 9 * 60 <= max_age <= 10 * 60  # as long as the document is the one served, at most half its validity
        assert dt.datetime.now(dt.UTC) + dt.timedelta(seconds=max_age) < until


@pytest.mark.parametrize("published", [
    pytest.param(lambda services: services.metadata, id="idp"),
    pytest.param(lambda services: services.sp_metadata, id="sp"),
])
def test_instances_started_apart_publish_one_document(
        settings: Settings, store: RedisStore, published: Callable[[Services], Document]) -> None:
    """SAML Metadata §2.3.1: one EntityDescriptor for the broker, whichever instance an SP or a federation fetches
    it from, and whenever that instance started: its ID and validUntil were the starting instance's own (a random
    ID, validUntil from the instant it built its copy), so every instance, and every restart, published another
    document."""
    start = dt.datetime.now(dt.UTC).replace(second=10, microsecond=0)
    documents = []
    for instance, offset in (("a", 0), ("b", 20), ("a-restarted", 40)):
        clock = FixedClock(start + dt.timedelta(seconds=offset))
        app = create_app(settings, clock=clock, store=store, instance_id=instance)
        document = published(app.extensions["broker"])
        assert document is not None
        documents.append(document.current()[0])
    assert documents[1] == documents[0]
    assert documents[2] == documents[0]
    root = _parse(documents[0])
    assert root.get("validUntil") == (start.replace(second=0) + dt.timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%SZ")


class TestSpSigningRollover:
    """sp.signing.also_published: the SP metadata carries the next signing key before the broker signs its
    AuthnRequests with it, so a municipal IdP that verifies them (ADFS) has it by the switch."""

    @pytest.fixture
    def settings(self, config_dir: Path) -> Settings:
        from broker.demo.certificates import CertificateAuthority, write_pem

        nxt = CertificateAuthority.root("Demo Broker SP signing 2", dt.datetime.now(dt.UTC), key="rsa2048")
        write_pem(config_dir / "keys" / "sp-signing-2.crt", nxt.certificate)
        path = config_dir / "broker.yaml"
        data = yaml.safe_load(path.read_text())
        data["sp"]["signing"]["also_published"] = ["keys/sp-signing-2.crt"]
        path.write_text(yaml.safe_dump(data, allow_unicode=True))
        return load_settings(config_dir)

    def test_the_sp_metadata_publishes_the_next_signing_key(self, browser: Browser, config_dir: Path) -> None:
        response = browser.get("/saml/sp/metadata")
        assert response.status_code == 200
        descriptors = _parse(response.get_data()).findall("md:SPSSODescriptor/md:KeyDescriptor", NS)
        published = {use: [] for use in ("signing", "encryption")}  # type: dict[str | None, list[str]]
        for descriptor in descriptors:
            text = descriptor.findtext("ds:KeyInfo/ds:X509Data/ds:X509Certificate", namespaces=NS) or ""
            published[descriptor.get("use")].append("".join(text.split()))

        def der(name: str) -> str:
            cert = x509.load_pem_x509_certificate((config_dir / "keys" / name).read_bytes())
            return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()

        assert published == {"signing": [der("sp-signing.crt"), der("sp-signing-2.crt")],
                              "encryption": [der("sp-encryption.crt")]}


# --- diagnosis ------------------------------------------------------------------------------------


def test_diagnose_shows_the_accepted_certificate(browser: Browser, users: Path, config_dir: Path) -> None:
    response = browser.get("/diagnose")
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert "Certifikatet godtas." in body
    assert "<dd>Kommun A / Municipality A (kommun-a)</dd>" in body
    assert f"<dd>{LOA3}</dd>" in body
    assert "<dt>Certifikatpolicy</dt><dd>2.999.1.3</dd>" in body
    cert = x509.load_pem_x509_certificate((users / "anna.pem").read_bytes())
    assert format(cert.serial_number, "x") in body
    assert 'class="refid"' in body
    # looking is not logging in, but the visit is on record
    events = audit_lines(config_dir)
    assert [e["event"] for e in events] == ["diagnose_viewed"]
    assert events[0]["data"] == {"accepted": True, "via": "tls"}
    assert events[0]["municipality"] == "kommun-a"
    assert events[0]["cert_sha256"] == cert.fingerprint(hashes.SHA256()).hex()


@pytest.mark.parametrize(("card", "accepted", "user"), [
    pytest.param("anna", True, ("SE2120001009-anna", "hsa_id", "kommun-a"), id="accepted-hsa-id"),
    pytest.param("bo", True, ("191212121212", "personnummer", "kommun-b"), id="accepted-personnummer"),
    pytest.param("david", False, ("SE2120001009-david", "hsa_id", "kommun-a"), id="expired"),
    # an unknown CA's certificate says whatever its maker chose: nobody is named from it
    pytest.param("fatima", False, None, id="unknown-issuer"),
])
def test_diagnose_viewed_names_whose_certificate_it_is(browser: Browser, users: Path, config_dir: Path, card: str,
                                                       accepted: bool,
                                                       user: tuple[str, str, str] | None) -> None:
    """The visit is found by `broker audit query --user` (or --personnummer-stdin) like the card's logins: its user
    as certificate_accepted and certificate_rejected record it, a personnummer only as its pseudonym."""
    browser.certificate_pem = (users / f"{card}.pem").read_text()
    assert browser.get("/diagnose?format=json").get_json()["accepted"] is accepted
    (viewed,) = audit_lines(config_dir)
    assert viewed["event"] == "diagnose_viewed"
    if user is None:
        assert ("user" in viewed, "user_kind" in viewed) == (False, False)
        return
    key, kind, municipality = user
    if kind == "personnummer":
        pseudonym = CliRunner().invoke(main, ["audit", "pseudonym", "--config", str(config_dir)],
                                       input=key + "\n").stdout.strip()
        assert (viewed["user"], viewed["user_kind"], viewed["municipality"]) == (pseudonym, kind, municipality)
        assert key not in str(viewed)
    else:
        assert (viewed["user"], viewed["user_kind"], viewed["municipality"]) == (key, kind, municipality)


def test_diagnose_answers_json_for_tools(browser: Browser, users: Path) -> None:
    browser.certificate_pem = (users / "bo.pem").read_text()
    response = browser.get("/diagnose?format=json")
    assert response.headers["Content-Type"] == "application/json"
    verdict = response.get_json()
    assert verdict["certificate"] is True
    assert verdict["accepted"] is True
    assert verdict["municipality"] == "kommun-b"
    assert verdict["loa"] == LOA2
    assert verdict["reason"] is None
    assert "191212121212" not in verdict["subject"]  # Bo's personnummer is masked
    assert "serialNumber=19121212-****" in verdict["subject"]
    assert verdict["policies"] == ["2.999.2.2"]


def test_the_diagnosis_below_the_saml_path_is_the_same_page(browser: Browser, users: Path,
                                                            config_dir: Path) -> None:
    """/saml/idp/diagnose (where `broker readiness --login` asks: a proxy route for /saml/ is the one a login
    takes) answers as /diagnose, audited alike; HEAD writes nothing, as there."""
    browser.certificate_pem = (users / "bo.pem").read_text()
    here = browser.get("/saml/idp/diagnose?format=json").get_json()
    there = browser.get("/diagnose?format=json").get_json()
    assert {k: v for k, v in here.items() if k != "correlation_id"} == \
        {k: v for k, v in there.items() if k != "correlation_id"}
    assert here["accepted"] is True
    assert [e["event"] for e in audit_lines(config_dir)].count("diagnose_viewed") == 2
    assert browser.client.head("/saml/idp/diagnose").status_code == browser.client.head("/diagnose").status_code
    assert [e["event"] for e in audit_lines(config_dir)].count("diagnose_viewed") == 2


def test_diagnose_json_names_the_reason(browser: Browser, users: Path) -> None:
    browser.certificate_pem = (users / "david.pem").read_text()
    browser.headers["Accept"] = "application/json"
    verdict = browser.get("/diagnose").get_json()
    assert (verdict["accepted"], verdict["reason"], verdict["municipality"]) == (
        False, "certificate_expired", "kommun-a")


def test_diagnose_shows_bo_with_loa2_in_english(browser: Browser, users: Path) -> None:
    browser.certificate_pem = (users / "bo.pem").read_text()
    browser.headers["Accept-Language"] = "en"
    body = browser.get("/diagnose").get_data(as_text=True)
    assert "The certificate is accepted." in body
    assert "<dd>Kommun B / Municipality B (kommun-b)</dd>" in body
    assert "<dt>Holder</dt>" in body
    assert f"<dd>{LOA2}</dd>" in body


def test_diagnose_explains_an_expired_certificate(browser: Browser, users: Path) -> None:
    browser.certificate_pem = (users / "david.pem").read_text()
    response = browser.get("/diagnose")
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    not_after = x509.load_pem_x509_certificate((users / "david.pem").read_bytes()).not_valid_after_utc
    assert "Certifikatet godtas inte." in body
    assert "Certifikatet har gått ut" in body
    assert f"Ditt certifikat gick ut {not_after.date().isoformat()}." in body
    assert "<dd>certificate_expired</dd>" in body
    assert "<dd>Kommun A / Municipality A (kommun-a)</dd>" in body  # whose card it is, although refused
    assert "Vad kan du göra?" in body


def test_diagnose_without_certificate_says_so(browser: Browser) -> None:
    browser.certificate_pem = None
    response = browser.get("/diagnose")
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert "Din webbläsare skickade inget certifikat." in body
    assert "Vanliga orsaker: kortet sitter inte i läsaren" in body
    assert "<dl>" not in body
    assert 'class="refid"' in body


def test_diagnose_audits_a_forged_proxy_header(browser: Browser, users: Path, config_dir: Path) -> None:
    # default config: no trusted proxy, so the header is a forgery and is ignored
    browser.certificate_pem = None
    browser.headers["X-SSL-Client-Cert"] = quote((users / "anna.pem").read_text())
    body = browser.get("/diagnose").get_data(as_text=True)
    assert "Din webbläsare skickade inget certifikat." in body
    assert [e["event"] for e in audit_lines(config_dir)] == ["proxy_header_untrusted", "diagnose_viewed"]


def test_pages_name_an_icon_the_broker_serves(browser: Browser) -> None:
    """A browser asks for one (Chromium logs a 404 for /favicon.ico on every page otherwise); the CSP's img-src
    'self' allows it."""
    page = browser.get("/").get_data(as_text=True)
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in page
    icon = browser.get("/static/favicon.svg")
    try:
        assert icon.status_code == 200
        assert icon.headers["Content-Type"].startswith("image/svg+xml")
        assert icon.get_data().startswith(b"<svg ")
    finally:
        icon.close()
