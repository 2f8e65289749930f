"""Readiness of a municipality with its own IdP (broker.readiness.federation): Kommun C.

The IdP's metadata is what pysaml2 writes for the demo IdP, changed per case with lxml (attributes declared,
no SingleLogoutService, the SSO endpoint on a loopback server, an expired signing key ...), then either
written as Kommun C's local metadata file or signed with python-xmlsec and published on a real HTTPS server
on loopback (tests/factories/metadata.py). The broker's fetcher trusts OpenSSL's default store, pointed at
the test CA with ``SSL_CERT_FILE``; the SSO endpoint check trusts the system's roots plus ``ca_file``.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree

from broker.config.loader import Settings
from broker.readiness.model import Section
from tests.factories.metadata import (
    NS,
    HttpsFileServer,
    SigningKey,
    TlsMaterial,
    closed_port_https_url,
    prepare,
    pysaml2_idp_metadata,
    sign,
)
from tests.factories.slow_resolver import resolve_slowly
from tests.factories.trickling_proxy import TricklingProxy
from tests.unit.readiness.configs import (
    DAY,
    edit_municipality,
    load,
    now_utc,
    only,
    readiness,
    section,
    set_readiness,
    statuses,
)

NOW = now_utc()
C = "kommun-c"
IDP_BASE = "https://localhost:8443/demo-idp"   # config/example's kommun-c entity_id is <IDP_BASE>/metadata
SSO = f"{IDP_BASE}/sso"
PATH = "/FederationMetadata/2007-06/FederationMetadata.xml"
CONTENT_TYPE = "application/samlmetadata+xml"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
EMPLOYEE_HSA_ID = "urn:oid:1.2.752.29.6.2.1"
GIVEN_NAME = "urn:oid:2.5.4.42"
SN = "urn:oid:2.5.4.4"


def key_valid_until(name: str, not_after: dt.datetime) -> SigningKey:
    """An IdP signing key whose self-signed certificate ends at ``not_after`` (in the past: expired)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(min(NOW, not_after) - 400 * DAY).not_valid_after(not_after)
            .sign(key, hashes.SHA256()))
    return SigningKey(key, cert)


@dataclass(frozen=True)
class Material:
    tls: TlsMaterial
    signer: SigningKey        # signs metadata published at a URL
    stranger: SigningKey      # a key nobody configured
    idp: SigningKey           # the IdP's SAML signing key (valid a year)
    expired: SigningKey       # an IdP signing key that expired 10 days ago
    base: bytes               # pysaml2's metadata of the demo IdP, signing key ``idp``
    expired_base: bytes       # the same with signing key ``expired``


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> Material:
    root = tmp_path_factory.mktemp("federation-readiness")
    idp = SigningKey.generate("Kommun C IdP signing", NOW)
    expired = key_valid_until("Kommun C IdP signing 2024", NOW - 10 * DAY)
    return Material(
        tls=TlsMaterial.generate(root / "tls", NOW),
        signer=SigningKey.generate("Kommun C metadata signing", NOW),
        stranger=SigningKey.generate("Stranger", NOW),
        idp=idp,
        expired=expired,
        base=pysaml2_idp_metadata(IDP_BASE, idp, root / "idp"),
        expired_base=pysaml2_idp_metadata(IDP_BASE, expired, root / "idp-expired"),
    )


@pytest.fixture(scope="module")
def https(material: Material) -> Iterator[HttpsFileServer]:
    with HttpsFileServer(material.tls) as server:
        yield server


@pytest.fixture
def server(https: HttpsFileServer) -> Iterator[HttpsFileServer]:
    https.remove(PATH)
    https.hits.clear()
    https.errors.clear()
    https.tls_failures.clear()
    yield https
    assert https.errors == []


def edited(xml: bytes, *, attributes: Sequence[str] | None = None, slo: bool = True, sso: str | None = None) -> bytes:
    """``xml`` with saml:Attribute elements declared in its IDPSSODescriptor, without its SingleLogoutService,
    or with its SSO endpoints at ``sso``."""
    root = etree.fromstring(xml)
    idp = root.find("md:IDPSSODescriptor", NS)
    assert idp is not None
    if not slo:
        for e in idp.findall("md:SingleLogoutService", NS):
            idp.remove(e)
    if sso is not None:
        for e in idp.findall("md:SingleSignOnService", NS):
            e.set("Location", sso)
    for name in attributes or ():
        etree.SubElement(idp, f"{{{SAML}}}Attribute", Name=name,
                         NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:uri")
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def with_file(config_dir: Path, xml: bytes) -> Settings:
    """Kommun C's local metadata file (config/example: metadata/kommun-c-idp.xml) replaced by ``xml``."""
    (config_dir / "metadata" / "kommun-c-idp.xml").write_bytes(xml)
    set_readiness(config_dir)
    return load(config_dir)


def with_url(config_dir: Path, url: str, signers: Sequence[SigningKey]) -> Settings:
    """Kommun C's metadata from ``url``, signed by one of ``signers``."""
    certs = config_dir / "certs" / C
    certs.mkdir(parents=True, exist_ok=True)
    names = []
    for i, key in enumerate(signers):
        (certs / f"metadata-signing-{i}.pem").write_bytes(key.cert_pem)
        names.append(f"certs/{C}/metadata-signing-{i}.pem")
    edit_municipality(config_dir, C, lambda doc: doc["saml"].__setitem__(
        "metadata", {"url": url, "signing_certificates": names, "timeout": "3s"}))
    set_readiness(config_dir)
    return load(config_dir)


def kommun_c(settings: Settings, *, network: bool = True, ca_file: Path | None = None) -> Section:
    return section(readiness(settings, now=NOW, municipalities=[C], network=network, ca_file=ca_file), C)


@pytest.fixture
def trust_test_ca(monkeypatch: pytest.MonkeyPatch, material: Material) -> None:
    """The metadata fetcher trusts the platform's default CA store: make that the test CA."""
    monkeypatch.setenv("SSL_CERT_FILE", str(material.tls.ca_file))


# --- the metadata -------------------------------------------------------------------------------------------


def test_example_local_metadata_passes(config_dir: Path) -> None:
    set_readiness(config_dir)
    result = kommun_c(load(config_dir), network=False)

    check = only(result, "saml.metadata")
    assert (check.status, check.title) == ("pass", "IdP metadata loaded")
    assert "local file, trusted as configured; 1 signing key(s)" in check.evidence
    expiry = only(result, "saml.metadata_expiry")
    assert (expiry.status, expiry.title) == ("pass", "metadata has no validUntil")
    assert statuses(result, "saml.signing_key") == ["pass"]
    assert statuses(result, "saml.slo") == []
    assert statuses(result, "saml.attributes") == []  # the demo IdP declares none
    assert statuses(result, "saml.sso_endpoint") == []  # offline
    assert result.details["login"] == "saml"


@pytest.mark.usefixtures("trust_test_ca")
def test_signed_metadata_from_a_url_passes(config_dir: Path, material: Material, server: HttpsFileServer) -> None:
    until = NOW + 60 * DAY
    url = server.put(PATH, sign(prepare(material.base, valid_until=until), material.signer), CONTENT_TYPE)
    result = kommun_c(with_url(config_dir, url, [material.signer]))

    check = only(result, "saml.metadata")
    assert (check.status, check.expires) == ("pass", until)
    assert f"URL {url}: signature verified" in check.evidence
    expiry = only(result, "saml.metadata_expiry")
    assert (expiry.status, expiry.title, expiry.expires) == ("pass", "metadata valid", until)
    assert statuses(result, "saml.metadata_signer") == ["pass"]


@pytest.mark.usefixtures("trust_test_ca")
@pytest.mark.parametrize("how", ["not-found", "closed-port", "wrong-signer"])
def test_unavailable_metadata_fails(config_dir: Path, material: Material, server: HttpsFileServer,
                                    how: str) -> None:
    if how == "not-found":
        url = server.url(PATH)
    elif how == "closed-port":
        url = closed_port_https_url(PATH)
    else:
        url = server.put(PATH, sign(prepare(material.base, valid_until=NOW + 7 * DAY), material.stranger),
                         CONTENT_TYPE)
    result = kommun_c(with_url(config_dir, url, [material.signer]))

    assert [(c.id, c.status, c.title) for c in result.checks if c.id.startswith("saml.")] == [
        ("saml.metadata", "fail", "no usable IdP metadata")]
    assert result.checks[0].subject == f"URL {url}"
    assert result.checks[0].fix is not None


@pytest.mark.usefixtures("trust_test_ca")
def test_url_metadata_without_valid_until_warns(config_dir: Path, material: Material,
                                                server: HttpsFileServer) -> None:
    url = server.put(PATH, sign(prepare(material.base), material.signer), CONTENT_TYPE)
    result = kommun_c(with_url(config_dir, url, [material.signer]))

    assert only(result, "saml.metadata").status == "pass"
    check = only(result, "saml.metadata_expiry")
    assert (check.status, check.title) == ("warn", "signed metadata without validUntil")


@pytest.mark.usefixtures("trust_test_ca")
def test_url_metadata_valid_until_soon_warns(config_dir: Path, material: Material, server: HttpsFileServer) -> None:
    until = NOW + 5 * DAY
    url = server.put(PATH, sign(prepare(material.base, valid_until=until), material.signer), CONTENT_TYPE)
    result = kommun_c(with_url(config_dir, url, [material.signer]))

    check = only(result, "saml.metadata_expiry")
    assert (check.status, check.title, check.expires) == ("warn", "metadata expires soon", until)
    assert "(in 4 days)" in check.evidence or "(in 5 days)" in check.evidence


def test_local_metadata_valid_until_soon_warns(config_dir: Path, material: Material) -> None:
    result = kommun_c(with_file(config_dir, prepare(material.base, valid_until=NOW + 2 * DAY)), network=False)

    assert statuses(result, "saml.metadata_expiry") == ["warn"]


def test_local_metadata_expiring_before_the_date_given_fails(config_dir: Path, material: Material) -> None:
    """Nothing renews a local metadata file: past its validUntil every login through the IdP is refused."""
    until = NOW + 5 * DAY
    settings = with_file(config_dir, prepare(material.base, valid_until=until))

    result = section(readiness(settings, now=NOW, municipalities=[C], network=False, at=NOW + 10 * DAY), C)

    check = only(result, "saml.metadata_expiry")
    assert (check.status, check.title, check.expires) == ("fail", "metadata file expires before the date judged",
                                                          until)
    assert "upstream_metadata_unavailable" in check.evidence
    assert "in -" not in check.evidence
    assert only(result, "saml.metadata").status == "pass"   # usable today


@pytest.mark.usefixtures("trust_test_ca")
def test_metadata_signing_certificate_expiring_soon_warns(config_dir: Path, material: Material,
                                                          server: HttpsFileServer) -> None:
    signer = key_valid_until("Kommun C metadata signing", NOW + 12 * DAY)
    url = server.put(PATH, sign(prepare(material.base, valid_until=NOW + 60 * DAY), signer), CONTENT_TYPE)
    result = kommun_c(with_url(config_dir, url, [signer]))

    check = only(result, "saml.metadata_signer")
    assert (check.status, check.title) == ("warn", "metadata signing certificate expires soon")


def test_url_metadata_offline_is_not_a_failure(config_dir: Path, material: Material) -> None:
    """--offline (and /admin/status, which runs the offline checks): metadata that can only come from its URL
    cannot be judged without the network; like a CRL URL (``revocation.crl`` WARN "CRL not fetched"), that is
    a WARN, not a FAIL that would flag every URL-metadata municipality as broken."""
    result = kommun_c(with_url(config_dir, "https://adfs.kommun-c.example.se/metadata.xml", [material.signer]),
                      network=False)

    check = only(result, "saml.metadata")
    assert check.status != "fail", check


# --- the IdP's signing keys -----------------------------------------------------------------------------------


def test_expired_idp_signing_certificate_only_warns(config_dir: Path, material: Material) -> None:
    result = kommun_c(with_file(config_dir, material.expired_base), network=False)

    check = only(result, "saml.signing_key")
    assert (check.status, check.title) == ("warn", "IdP signing certificate expired")
    assert check.expires == material.expired.certificate.not_valid_after_utc
    assert result.result != "fail"


def test_idp_signing_certificate_expiring_soon_warns(config_dir: Path, material: Material,
                                                     tmp_path: Path) -> None:
    soon = key_valid_until("Kommun C IdP signing", NOW + 3 * DAY)
    result = kommun_c(with_file(config_dir, pysaml2_idp_metadata(IDP_BASE, soon, tmp_path / "idp")), network=False)

    check = only(result, "saml.signing_key")
    assert (check.status, check.title) == ("warn", "IdP signing certificate expires soon")


@pytest.mark.usefixtures("trust_test_ca")
def test_every_signing_key_in_a_rollover_is_checked(config_dir: Path, material: Material,
                                                    server: HttpsFileServer) -> None:
    xml = prepare(material.expired_base, valid_until=NOW + 60 * DAY, more_signing=[material.idp.certificate])
    url = server.put(PATH, sign(xml, material.signer), CONTENT_TYPE)
    result = kommun_c(with_url(config_dir, url, [material.signer]))

    assert statuses(result, "saml.signing_key") == ["warn", "pass"]


# --- declared attributes and logout ---------------------------------------------------------------------------


@pytest.mark.parametrize(("declared", "status", "missing"), [
    ([EMPLOYEE_HSA_ID, GIVEN_NAME, SN], "pass", ""),
    (["http://sambi.se/attributes/1/employeeHsaId",
      "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname",
      "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname"], "pass", ""),
    ([GIVEN_NAME, SN, "urn:oid:2.16.840.1.113730.3.1.241"], "fail", "employeeHsaId"),
    ([EMPLOYEE_HSA_ID, GIVEN_NAME], "fail", "sn"),
], ids=["standard-uris", "sambi-and-adfs-names", "identity-attribute-missing", "required-attribute-missing"])
def test_declared_attributes(config_dir: Path, material: Material, declared: list[str], status: str,
                             missing: str) -> None:
    """Kommun C's identity attribute is employeeHsaId; givenName and sn are required (config/example)."""
    result = kommun_c(with_file(config_dir, edited(material.base, attributes=declared)), network=False)

    check = only(result, "saml.attributes")
    assert check.status == status
    if missing:
        assert check.title == "required attributes not declared"
        assert check.evidence.endswith(f"but not {missing}")
        assert check.fix is not None


def test_no_single_logout_service_warns(config_dir: Path, material: Material) -> None:
    result = kommun_c(with_file(config_dir, edited(material.base, slo=False)), network=False)

    check = only(result, "saml.slo")
    assert (check.status, check.title) == ("warn", "no SingleLogoutService")


@pytest.mark.usefixtures("trust_test_ca")
def test_metadata_answered_a_byte_at_a_time_fails_at_the_timeout(config_dir: Path, material: Material,
                                                                 server: HttpsFileServer) -> None:
    """readiness.timeout bounds the whole metadata fetch (the fetcher's watchdog), not each read."""
    server.put(PATH, sign(prepare(material.base, valid_until=NOW + 7 * DAY), material.signer), CONTENT_TYPE)
    proxy = TricklingProxy(("127.0.0.1", server.port), gap=0.05)
    pool = ThreadPoolExecutor(max_workers=1)  # bounded here too, whatever the check does
    url = f"https://127.0.0.1:{proxy.port}{PATH}"
    try:
        with_url(config_dir, url, [material.signer])
        set_readiness(config_dir, timeout="1s")
        settings = load(config_dir)
        started = time.monotonic()
        result = pool.submit(kommun_c, settings).result(timeout=10)
        took = time.monotonic() - started
    finally:
        proxy.close()
        pool.shutdown()

    check = only(result, "saml.metadata")
    assert (check.status, check.title) == ("fail", "no usable IdP metadata")
    assert "no complete answer within 1 s" in check.evidence
    # trickled whole, the document would take minutes; the margin is the rest of the run on a busy machine
    assert took < 1 + 3.0


# --- the SSO endpoint -----------------------------------------------------------------------------------------


def test_sso_endpoint_reachable_over_verified_tls_passes(config_dir: Path, material: Material,
                                                        server: HttpsFileServer) -> None:
    sso = server.url("/adfs/ls/")
    result = kommun_c(with_file(config_dir, edited(material.base, sso=sso)), ca_file=material.tls.ca_file)

    check = only(result, "saml.sso_endpoint")
    assert (check.status, check.title, check.subject) == ("pass", "SSO endpoint answers", sso)
    assert "TLS verified" in check.evidence
    assert check.expires is not None


@pytest.mark.parametrize(("at", "status", "title"), [
    (None, "pass", "SSO endpoint answers"),
    (NOW + 70 * DAY, "warn", "SSO endpoint's TLS certificate expires soon"),
    (NOW + 100 * DAY, "fail", f"SSO endpoint's TLS certificate expired by {(NOW + 100 * DAY):%Y-%m-%d}"),
], ids=["today", "go-live-within-the-window", "go-live-after-its-expiry"])
def test_sso_endpoint_certificate_is_judged_at_the_date_given(config_dir: Path, material: Material,
                                                              server: HttpsFileServer, at: dt.datetime | None,
                                                              status: str, title: str) -> None:
    """The IdP's server certificate (here 90 days left) must outlast go-live: browsers refuse its login page once it
    has expired, and the municipality's users cannot log in at all."""
    sso = server.url("/adfs/ls/")
    settings = with_file(config_dir, edited(material.base, sso=sso))

    result = section(readiness(settings, now=NOW, municipalities=[C], ca_file=material.tls.ca_file, at=at), C)

    check = only(result, "saml.sso_endpoint")
    assert (check.status, check.title) == (status, title)
    assert (check.fix is not None) == (status != "pass")


def test_sso_endpoint_with_an_untrusted_certificate_fails(config_dir: Path, material: Material,
                                                          server: HttpsFileServer) -> None:
    """Without --ca-file the test CA is not among the roots: the browser would refuse the IdP too."""
    result = kommun_c(with_file(config_dir, edited(material.base, sso=server.url("/adfs/ls/"))))

    check = only(result, "saml.sso_endpoint")
    assert (check.status, check.title) == ("fail", "SSO endpoint not reachable")
    assert "certificate verify failed" in check.evidence


def test_sso_endpoint_unreachable_fails(config_dir: Path, material: Material) -> None:
    sso = closed_port_https_url("/adfs/ls/")
    result = kommun_c(with_file(config_dir, edited(material.base, sso=sso)), ca_file=material.tls.ca_file)

    check = only(result, "saml.sso_endpoint")
    assert (check.status, check.title, check.subject) == ("fail", "SSO endpoint not reachable", sso)


def test_sso_endpoint_answering_a_byte_at_a_time_fails_at_the_timeout(config_dir: Path, material: Material,
                                                                     server: HttpsFileServer) -> None:
    """readiness.timeout bounds the whole check: a server that trickles its handshake (each byte in time for a
    per-read timeout) does not hold `broker readiness`."""
    proxy = TricklingProxy(("127.0.0.1", server.port), gap=0.05)
    pool = ThreadPoolExecutor(max_workers=1)  # bounded here too, whatever the check does
    sso = f"https://127.0.0.1:{proxy.port}/adfs/ls/"
    try:
        (config_dir / "metadata" / "kommun-c-idp.xml").write_bytes(edited(material.base, sso=sso))
        set_readiness(config_dir, timeout="1s")
        settings = load(config_dir)
        started = time.monotonic()
        result = pool.submit(kommun_c, settings, ca_file=material.tls.ca_file).result(timeout=5)
        took = time.monotonic() - started
    finally:
        proxy.close()
        pool.shutdown()

    check = only(result, "saml.sso_endpoint")
    assert (check.status, check.title, check.subject) == ("fail", "SSO endpoint not reachable", sso)
    assert check.evidence == f"{sso}: no complete answer within 1 s"
    # the 1 s bound and the run's other checks (more than a second on a slow machine); a trickled handshake of a
    # few kilobytes at 50 ms a byte, unbounded, would take minutes
    assert took < 1 + 3.0


def test_sso_endpoint_whose_name_resolves_slowly_fails_at_the_timeout(config_dir: Path, material: Material,
                                                                      server: HttpsFileServer,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """readiness.timeout bounds connection and handshake together, the name's resolution included: it comes
    before any socket exists, so the watchdog alone would let a resolver waiting on an unanswering DNS server
    hold `broker readiness` for the resolver's own timeouts (a real delay in ``socket.getaddrinfo`` here)."""
    resolve_slowly(monkeypatch, "sso.slow-resolver.test", 8)
    sso = f"https://sso.slow-resolver.test:{server.port}/adfs/ls/"
    (config_dir / "metadata" / "kommun-c-idp.xml").write_bytes(edited(material.base, sso=sso))
    set_readiness(config_dir, timeout="1s")
    settings = load(config_dir)
    started = time.monotonic()
    result = kommun_c(settings, ca_file=material.tls.ca_file)
    took = time.monotonic() - started

    check = only(result, "saml.sso_endpoint")
    assert (check.status, check.title, check.subject) == ("fail", "SSO endpoint not reachable", sso)
    assert check.evidence == f"{sso}: no complete answer within 1 s"
    assert took < 1 + 3.0  # the run's other checks beside the bound; waiting for the resolver takes 8 s


def test_sso_endpoint_not_checked_offline(config_dir: Path, material: Material, server: HttpsFileServer) -> None:
    result = kommun_c(with_file(config_dir, edited(material.base, sso=server.url("/adfs/ls/"))), network=False,
                      ca_file=material.tls.ca_file)

    assert statuses(result, "saml.sso_endpoint") == []
    assert server.tls_failures == []


# --- how often the metadata is fetched ----------------------------------------------------------------------


@pytest.mark.usefixtures("trust_test_ca")
@pytest.mark.parametrize("served", [True, False], ids=["signed", "not-found"])
def test_url_metadata_is_fetched_once_per_run(config_dir: Path, material: Material, server: HttpsFileServer,
                                              served: bool) -> None:
    """One GET per run, also when it fails (it used to be fetched by refresh_all() and again by get())."""
    url = server.put(PATH, sign(prepare(material.base, valid_until=NOW + 60 * DAY), material.signer),
                     CONTENT_TYPE) if served else server.url(PATH)

    result = kommun_c(with_url(config_dir, url, [material.signer]))

    assert only(result, "saml.metadata").status == ("pass" if served else "fail")
    assert server.hits[PATH] == 1


@pytest.mark.usefixtures("trust_test_ca")
def test_metadata_of_a_municipality_not_checked_is_not_fetched(config_dir: Path, material: Material,
                                                                server: HttpsFileServer) -> None:
    """`--municipality kommun-a`: Kommun C's IdP metadata is none of the run's business."""
    url = server.put(PATH, sign(prepare(material.base, valid_until=NOW + 60 * DAY), material.signer), CONTENT_TYPE)
    settings = with_url(config_dir, url, [material.signer])

    report = readiness(settings, now=NOW, municipalities=["kommun-a"])

    assert [s.id for s in report.municipalities] == ["kommun-a"]
    assert server.hits[PATH] == 0
