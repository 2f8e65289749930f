"""The municipal IdPs' metadata (broker.saml.upstream_metadata.UpstreamMetadata): from a local file or a URL.

The requirement: a municipality file can say ``login: saml`` with its IdP's
metadata from a local file (trusted as configured, parsed at load) or a URL.
Metadata from a URL is used only after its signature verifies with a
configured certificate (the signature element is required), while its
validUntil has not passed; it is refreshed on a schedule, a failed refresh
keeps the last good copy and is reported, and several signing keys in the
metadata (rollover) are all kept.

Everything is real: the example configuration (tests/conftest.py
``config_dir``) with municipalities/kommun-c.yaml edited to point at the
metadata, loaded by ``load_settings``; metadata written by pysaml2 for the
demo IdP and signed with python-xmlsec (tests/factories/metadata.py); an
HTTPS server on loopback (the metadata URL must be https), whose test CA the
broker's ``HttpFetcher`` trusts through OpenSSL's ``SSL_CERT_FILE``. Time is a
FixedClock the tests move.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree

from broker.clock import FixedClock, isoformat_z
from broker.config.loader import Municipality, load_settings
from broker.errors import UpstreamRejected
from broker.pki.revocation.http import HttpFetcher
from broker.saml.bindings import HTTP_POST, HTTP_REDIRECT
from broker.saml.metadata import Endpoint, IdpMetadata, parse_idp_metadata
from broker.saml.upstream_metadata import UpstreamMetadata
from tests.factories.metadata import (
    DS,
    MD,
    NS,
    RSA_SHA1,
    RSA_SHA256_DIGEST_SHA1,
    HttpsFileServer,
    SigningKey,
    TlsMaterial,
    closed_port_https_url,
    prepare,
    pysaml2_idp_metadata,
    sign,
)
from tests.unit.config.editing import Expected, assert_issues, load_issues, replacing_block

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)  # the TLS certificates are checked against the real time
SECOND = dt.timedelta(seconds=1)
MINUTE = dt.timedelta(minutes=1)
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
VALID_UNTIL = NOW + 7 * DAY

KOMMUN_C = "kommun-c"
KOMMUN_C_FILE = "municipalities/kommun-c.yaml"
IDP_BASE = "https://localhost:8443/demo-idp"  # config/example's kommun-c entity_id is <IDP_BASE>/metadata
ENTITY_ID = f"{IDP_BASE}/metadata"
SSO = f"{IDP_BASE}/sso"
SLO = f"{IDP_BASE}/slo"
PATH = "/FederationMetadata/2007-06/FederationMetadata.xml"
CONTENT_TYPE = "application/samlmetadata+xml"
UNAVAILABLE = "upstream_metadata_unavailable"

Kommun = Callable[..., Municipality]  # the kommun_c fixture: kommun-c configured with a metadata URL


# --- material ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Material:
    signer: SigningKey      # signs the metadata; its certificate is configured as signing_certificates
    signer_next: SigningKey  # the metadata signer's next key (the operator may configure both)
    stranger: SigningKey    # a key nobody configured
    idp: SigningKey         # the IdP's SAML signing key, published in the metadata
    idp_next: SigningKey    # the IdP's next signing key (rollover)
    tls: TlsMaterial
    base: bytes             # pysaml2's metadata of the demo IdP, signing key ``idp``


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> Material:
    root = tmp_path_factory.mktemp("upstream-metadata")
    idp = SigningKey.generate("Kommun C IdP signing", NOW)
    return Material(
        signer=SigningKey.generate("Kommun C metadata signing", NOW),
        signer_next=SigningKey.generate("Kommun C metadata signing 2", NOW),
        stranger=SigningKey.generate("Stranger", NOW),
        idp=idp,
        idp_next=SigningKey.generate("Kommun C IdP signing 2", NOW),
        tls=TlsMaterial.generate(root / "tls", NOW),
        base=pysaml2_idp_metadata(IDP_BASE, idp, root / "idp"),
    )


def signed(m: Material, *, valid_until: dt.datetime | None = VALID_UNTIL,
           more_signing: Sequence[SigningKey] = (), signer: SigningKey | None = None,
           cache_duration: str | None = None) -> bytes:
    """The IdP's metadata, signed as it should be (by ``m.signer`` unless another ``signer`` is given), with the
    ``cacheDuration`` given on its root."""
    xml = prepare(m.base, valid_until=valid_until, more_signing=[k.certificate for k in more_signing])
    if cache_duration is not None:
        root = etree.fromstring(xml)
        root.set("cacheDuration", cache_duration)
        xml = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return sign(xml, signer or m.signer)


def _der_b64(key: SigningKey) -> str:
    return base64.b64encode(key.certificate.public_bytes(serialization.Encoding.DER)).decode()


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def trust_test_ca(monkeypatch: pytest.MonkeyPatch, material: Material) -> None:
    """The fetcher trusts the platform's default CA store: make that the test CA."""
    monkeypatch.setenv("SSL_CERT_FILE", str(material.tls.ca_file))


@pytest.fixture(scope="module")
def shared_server(material: Material) -> Iterator[HttpsFileServer]:
    with HttpsFileServer(material.tls) as s:
        yield s


@pytest.fixture
def server(shared_server: HttpsFileServer) -> Iterator[HttpsFileServer]:
    """The module's HTTPS server (so that configurations naming it can be loaded once), emptied for this test."""
    shared_server.remove(PATH)
    shared_server.hits.clear()
    shared_server.errors.clear()
    yield shared_server
    assert shared_server.errors == []


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


def _metadata_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "idp-metadata"]


@pytest.fixture
def upstreams() -> Iterator[Callable[..., UpstreamMetadata]]:
    """Makes UpstreamMetadata instances and closes them afterwards; their refresh threads must end."""
    made: list[UpstreamMetadata] = []

    def make(municipality: Municipality, clock: FixedClock) -> UpstreamMetadata:
        upstream = UpstreamMetadata([municipality], clock, HttpFetcher())
        made.append(upstream)
        return upstream

    yield make
    for upstream in made:
        upstream.close()
    for thread in _metadata_threads():
        thread.join(timeout=2)
        assert not thread.is_alive(), "the metadata refresh thread outlived close()"


def configure_url(config_dir: Path, m: Material, url: str, *, signers: Sequence[SigningKey] | None = None,
                  extra: Sequence[str] = ()) -> Municipality:
    """kommun-c.yaml takes its IdP's metadata from ``url``, signed by one of ``signers`` (``m.signer``)."""
    certs = config_dir / "certs" / "kommun-c"
    certs.mkdir(parents=True, exist_ok=True)
    names = []
    for i, key in enumerate(signers if signers is not None else [m.signer]):
        (certs / f"metadata-signing-{i}.pem").write_bytes(key.cert_pem)
        names.append(f"certs/kommun-c/metadata-signing-{i}.pem")
    block = (f"  metadata:\n    url: {url}\n    signing_certificates: [{', '.join(names)}]\n"
             + "".join(f"    {line}\n" for line in extra))
    replacing_block(KOMMUN_C_FILE, "  metadata:", block)(config_dir)
    return load_settings(config_dir).municipalities[KOMMUN_C]


@pytest.fixture(scope="module")
def kommun_c(demo_material, material: Material, shared_server: HttpsFileServer,  # type: ignore[no-untyped-def]
             tmp_path_factory: pytest.TempPathFactory) -> Kommun:
    """kommun-c with its metadata at ``shared_server.url(PATH)``: ``kommun_c(signers=..., extra=...)`` loads
    each distinct configuration once per module (from a copy of the example, like ``config_dir``)."""
    loaded: dict[tuple[tuple[str, ...], tuple[str, ...]], Municipality] = {}

    def get(*, signers: Sequence[str] = ("signer",), extra: Sequence[str] = ()) -> Municipality:
        key = (tuple(signers), tuple(extra))
        if key not in loaded:
            target = tmp_path_factory.mktemp("config") / "config"
            shutil.copytree(demo_material.config, target)
            loaded[key] = configure_url(target, material, shared_server.url(PATH),
                                        signers=[getattr(material, name) for name in signers], extra=extra)
        return loaded[key]

    return get


def unavailable(upstream: UpstreamMetadata) -> UpstreamRejected:
    with pytest.raises(UpstreamRejected) as info:
        upstream.get(KOMMUN_C)
    assert info.value.reason == UNAVAILABLE
    return info.value


def status(upstream: UpstreamMetadata) -> dict[str, object]:
    return upstream.status()[KOMMUN_C]


def warnings_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "broker.upstream" and r.levelno == logging.WARNING]


# --- 1. signed metadata from a URL ---------------------------------------------------------


def test_signed_metadata_from_a_url_is_fetched_verified_and_used(
        config_dir: Path, material: Material, server: HttpsFileServer, clock: FixedClock,
        upstreams: Callable[..., UpstreamMetadata]) -> None:
    url = server.put(PATH, signed(material), CONTENT_TYPE)
    municipality = configure_url(config_dir, material, url)
    assert municipality.idp_metadata is None
    assert server.hits[PATH] == 0, "the configuration is loaded without fetching"
    upstream = upstreams(municipality, clock)

    md = upstream.get(KOMMUN_C)

    assert isinstance(md, IdpMetadata)
    assert md.entity_id == ENTITY_ID
    assert md.single_sign_on_services == (Endpoint(HTTP_REDIRECT, SSO), Endpoint(HTTP_POST, SSO))
    assert md.sso() == Endpoint(HTTP_REDIRECT, SSO)
    assert md.single_logout_services == (Endpoint(HTTP_REDIRECT, SLO),)
    assert md.signing_certificates == (material.idp.certificate,)
    assert md.want_authn_requests_signed is True
    assert md.valid_until == VALID_UNTIL
    assert status(upstream) == {"entity_id": ENTITY_ID, "valid_until": VALID_UNTIL.isoformat(),
                                "fetched_at": NOW.isoformat(), "last_error": None, "signing_keys": 1}
    assert upstream.by_entity_id(ENTITY_ID) is md
    assert upstream.get(KOMMUN_C) is md
    assert server.hits[PATH] == 1, "a good copy is not fetched again on the login path"


@pytest.mark.parametrize("which", [0, 1], ids=["first-configured-certificate", "second-configured-certificate"])
def test_metadata_signed_by_any_configured_certificate_is_used(
        kommun_c: Kommun, material: Material, server: HttpsFileServer, clock: FixedClock,
        upstreams: Callable[..., UpstreamMetadata], which: int) -> None:
    """The operator lists the metadata signer's current and next certificate (the signer's own rollover)."""
    signers = ["signer", "signer_next"]
    server.put(PATH, signed(material, signer=getattr(material, signers[which])), CONTENT_TYPE)
    upstream = upstreams(kommun_c(signers=signers), clock)

    assert upstream.get(KOMMUN_C).sso() == Endpoint(HTTP_REDIRECT, SSO)
    assert status(upstream)["last_error"] is None


# --- 2. what does not verify is not used -----------------------------------------------------


def _unsigned(m: Material) -> bytes:
    return prepare(m.base, valid_until=VALID_UNTIL)


def _by_stranger(m: Material) -> bytes:
    return signed(m, signer=m.stranger)


def _by_stranger_claiming_the_configured_certificate(m: Material) -> bytes:
    """A stranger's signature whose KeyInfo carries the configured certificate (KeyInfo is not signed)."""
    xml = signed(m, signer=m.stranger)
    stranger_b64 = _der_b64(m.stranger)
    root = etree.fromstring(xml)
    [cert] = root.xpath("ds:Signature/ds:KeyInfo/ds:X509Data/ds:X509Certificate", namespaces=NS)
    assert "".join(cert.text.split()) == stranger_b64
    cert.text = _der_b64(m.signer)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def _endpoint_changed_after_signing(m: Material) -> bytes:
    xml = signed(m)
    assert xml.count(f'Location="{SSO}"'.encode()) == 2
    return xml.replace(f'Location="{SSO}"'.encode(), b'Location="https://evil.example/sso"', 1)


def _key_added_after_signing(m: Material) -> bytes:
    root = etree.fromstring(signed(m))
    [kd] = root.xpath("md:IDPSSODescriptor/md:KeyDescriptor", namespaces=NS)
    kd.addnext(etree.fromstring(etree.tostring(kd).replace(_der_b64(m.idp).encode(), _der_b64(m.stranger).encode())))
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def _signature_on_the_idpssodescriptor(m: Material) -> bytes:
    return sign(_unsigned(m), m.signer, target="md:IDPSSODescriptor")


def _reference_to_a_child_element(m: Material) -> bytes:
    """The signature sits on the root, but its Reference names the IDPSSODescriptor."""
    root = etree.fromstring(_unsigned(m))
    root.find("md:IDPSSODescriptor", NS).set("ID", "_role")  # type: ignore[union-attr]
    return sign(etree.tostring(root), m.signer, reference="#_role")


def _signed_document_wrapped_with_a_forged_entity(m: Material) -> bytes:
    """Signature wrapping: an unsigned EntitiesDescriptor holding a forged entity and the signed original."""
    original = etree.fromstring(signed(m))
    forged = etree.fromstring(_unsigned(m).replace(f'Location="{SSO}"'.encode(), b'Location="https://evil.example/sso"'))
    forged.set("ID", "_forged")
    wrapper = etree.Element(f"{{{MD}}}EntitiesDescriptor", ID="_wrapper")
    wrapper.extend([forged, original])
    return etree.tostring(wrapper, xml_declaration=True, encoding="UTF-8")


def _rsa_sha1(m: Material) -> bytes:
    return sign(_unsigned(m), m.signer, algorithms=RSA_SHA1)


def _sha1_digest(m: Material) -> bytes:
    return sign(_unsigned(m), m.signer, algorithms=RSA_SHA256_DIGEST_SHA1)


NOT_VALID = "the metadata signature is not valid: "
NO_KEY = NOT_VALID + "the signature does not verify with the sender's metadata keys"
NOT_ON_ROOT = NOT_VALID + "a signature is present but not as a direct child of the signed element"


@pytest.mark.parametrize(("make", "cause"), [
    pytest.param(_unsigned, "the metadata is not signed (a signature is required)", id="unsigned"),
    pytest.param(_by_stranger, NO_KEY, id="other-key"),
    pytest.param(_by_stranger_claiming_the_configured_certificate, NO_KEY, id="other-key-configured-keyinfo"),
    pytest.param(_endpoint_changed_after_signing, NO_KEY, id="tampered-endpoint"),
    pytest.param(_key_added_after_signing, NO_KEY, id="tampered-key-added"),
    pytest.param(_signature_on_the_idpssodescriptor, NOT_ON_ROOT, id="signature-on-child"),
    pytest.param(_reference_to_a_child_element,
                 NOT_VALID + "the signature's Reference does not point at the signed element",
                 id="reference-not-to-root"),
    pytest.param(_signed_document_wrapped_with_a_forged_entity, NOT_ON_ROOT, id="wrapped"),
    pytest.param(_rsa_sha1, NOT_VALID + "signature algorithm http://www.w3.org/2000/09/xmldsig#rsa-sha1 is not allowed",
                 id="rsa-sha1"),
    pytest.param(_sha1_digest, NOT_VALID + "digest algorithm http://www.w3.org/2000/09/xmldsig#sha1 is not allowed",
                 id="sha1-digest"),
])
def test_metadata_whose_signature_does_not_verify_is_not_used(
        kommun_c: Kommun, material: Material, server: HttpsFileServer, clock: FixedClock,
        upstreams: Callable[..., UpstreamMetadata], caplog: pytest.LogCaptureFixture,
        make: Callable[[Material], bytes], cause: str) -> None:
    server.put(PATH, make(material), CONTENT_TYPE)
    upstream = upstreams(kommun_c(), clock)

    with caplog.at_level(logging.WARNING, logger="broker.upstream"):
        error = unavailable(upstream)

    assert error.detail == f"no metadata for kommun-c's IdP: {cause}"
    assert status(upstream) == {"entity_id": None, "valid_until": None, "fetched_at": None, "last_error": cause,
                                "signing_keys": 0}
    assert upstream.by_entity_id(ENTITY_ID) is None
    assert warnings_logged(caplog)[0] == f"metadata of kommun-c's IdP: {cause} (keeping the last good copy)"
    assert server.hits[PATH] >= 1


def test_an_idp_whose_metadata_cannot_be_had_is_not_asked_again_by_every_request(
        kommun_c: Kommun, material: Material, server: HttpsFileServer, clock: FixedClock,
        upstreams: Callable[..., UpstreamMetadata]) -> None:
    """Without a copy, a login (or an unauthenticated LogoutRequest naming the IdP) fetches on the request's own
    path; after a failed fetch, the requests of the next 10 s are refused at once with its cause instead of each
    waiting for another fetch (serialised behind one lock: every worker thread held while the IdP's server does
    not answer). The schedule in the background goes on as before."""
    server.put(PATH, _unsigned(material), CONTENT_TYPE)
    upstream = upstreams(kommun_c(), clock)
    first = unavailable(upstream)
    hits = server.hits[PATH]
    for _ in range(5):
        assert unavailable(upstream).detail == first.detail
    assert server.hits[PATH] == hits

    server.put(PATH, signed(material), CONTENT_TYPE)
    clock.set(clock.now() + 11 * SECOND)
    assert upstream.get(KOMMUN_C).entity_id == ENTITY_ID
    assert server.hits[PATH] == hits + 1


@pytest.mark.parametrize("step", [pytest.param(MINUTE, id="a-minute"), pytest.param(HOUR, id="an-hour")])
def test_a_fetch_that_failed_before_the_clock_was_stepped_back_does_not_hold_requests_off(
        kommun_c: Kommun, material: Material, server: HttpsFileServer, clock: FixedClock,
        upstreams: Callable[..., UpstreamMetadata], step: dt.timedelta) -> None:
    """A failure noted before the clock was stepped back (NTP correcting a clock that ran ahead) lies in the future
    of the clock now: the next request fetches again, rather than every request being refused with the old cause
    for the size of the step as well."""
    server.put(PATH, _unsigned(material), CONTENT_TYPE)
    upstream = upstreams(kommun_c(), clock)
    unavailable(upstream)
    hits = server.hits[PATH]

    server.put(PATH, signed(material), CONTENT_TYPE)
    clock.set(clock.now() - step)
    assert upstream.get(KOMMUN_C).entity_id == ENTITY_ID
    assert server.hits[PATH] == hits + 1


# --- 3. validUntil ------------------------------------------------------------------------------


@pytest.mark.parametrize("valid_until", [NOW - DAY, NOW - SECOND, NOW], ids=["a-day-ago", "a-second-ago", "now"])
def test_metadata_past_its_valid_until_at_fetch_time_is_not_used(
        kommun_c: Kommun, material: Material, server: HttpsFileServer, clock: FixedClock,
        upstreams: Callable[..., UpstreamMetadata], valid_until: dt.datetime) -> None:
    server.put(PATH, signed(material, valid_until=valid_until), CONTENT_TYPE)
    upstream = upstreams(kommun_c(), clock)

    error = unavailable(upstream)

    expected = f"the metadata expired at {valid_until.isoformat()} (validUntil)"
    assert error.detail == f"no metadata for kommun-c's IdP: {expected}"
    assert status(upstream)["last_error"] == expected
    assert status(upstream)["signing_keys"] == 0


def _expired_role(m: Material) -> bytes:
    """validUntil in the past on the IDPSSODescriptor (SAML Metadata §2.4.1: it ends that role's validity)."""
    root = etree.fromstring(prepare(m.base, valid_until=VALID_UNTIL))
    root.find("md:IDPSSODescriptor", NS).set("validUntil", "2020-01-01T00:00:00Z")  # type: ignore[union-attr]
    return sign(etree.tostring(root), m.signer)


def _expired_entity_in_a_valid_aggregate(m: Material) -> bytes:
    """A signed EntitiesDescriptor (valid a week) holding the IdP's EntityDescriptor, which expired in 2020
    (SAML Metadata §2.3.1: validUntil covers the element and everything it contains)."""
    entity = etree.fromstring(prepare(m.base, valid_until=dt.datetime(2020, 1, 1, tzinfo=dt.UTC)))
    return _aggregate(m, entity)


def _aggregate(m: Material, entity: etree._Element) -> bytes:
    """A signed EntitiesDescriptor (valid until VALID_UNTIL) holding ``entity`` (with no ID of its own)."""
    del entity.attrib["ID"]
    aggregate = etree.Element(f"{{{MD}}}EntitiesDescriptor", ID="_aggregate", validUntil=isoformat_z(VALID_UNTIL))
    aggregate.append(entity)
    return sign(etree.tostring(aggregate), m.signer)


def test_a_signed_aggregate_holding_the_idp_is_used(
        kommun_c: Kommun, material: Material, server: HttpsFileServer, clock: FixedClock,
        upstreams: Callable[..., UpstreamMetadata]) -> None:
    """The control for the aggregate case below: an EntitiesDescriptor document is accepted as such."""
    server.put(PATH, _aggregate(material, etree.fromstring(prepare(material.base))), CONTENT_TYPE)
    upstream = upstreams(kommun_c(), clock)

    md = upstream.get(KOMMUN_C)

    assert md.sso() == Endpoint(HTTP_REDIRECT, SSO)
    assert md.valid_until == VALID_UNTIL


def _nested(m: Material, *, group_valid_until: dt.datetime = VALID_UNTIL, twice: bool = False) -> bytes:
    """A signed EntitiesDescriptor holding, besides an SP of its own, an inner EntitiesDescriptor (a federation's
    group, valid until ``group_valid_until``) that holds the IdP's EntityDescriptor (SAML Metadata §2.3.1: groups
    nest); ``twice``: the IdP's EntityDescriptor also stands directly in the outer group, with another SSO URL."""
    entity = etree.fromstring(prepare(m.base))
    del entity.attrib["ID"]
    outer = etree.Element(f"{{{MD}}}EntitiesDescriptor", ID="_aggregate", validUntil=isoformat_z(VALID_UNTIL))
    other = etree.SubElement(outer, f"{{{MD}}}EntityDescriptor", entityID="https://sp.elsewhere.example/metadata")
    etree.SubElement(other, f"{{{MD}}}SPSSODescriptor",
                     protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol")
    if twice:
        copy = etree.fromstring(etree.tostring(entity))
        for sso in copy.iter(f"{{{MD}}}SingleSignOnService"):
            sso.set("Location", "https://evil.example/sso")
        outer.append(copy)
    group = etree.SubElement(outer, f"{{{MD}}}EntitiesDescriptor", Name="kommuner",
                             validUntil=isoformat_z(group_valid_until))
    group.append(entity)
    return sign(etree.tostring(outer), m.signer)


def test_an_idp_in_a_group_nested_in_the_signed_aggregate_is_used(
        kommun_c: Kommun, material: Material, server: HttpsFileServer, clock: FixedClock,
        upstreams: Callable[..., UpstreamMetadata]) -> None:
    """SAML Metadata §2.3.1: an EntitiesDescriptor holds EntityDescriptors and EntitiesDescriptors. Only the
    outer group's own EntityDescriptors were searched: an IdP in a nested group, under a valid signature on the
    root, was "no entity" of the metadata and every login to it refused (upstream_metadata_unavailable)."""
    server.put(PATH, _nested(material, group_valid_until=VALID_UNTIL - DAY), CONTENT_TYPE)
    upstream = upstreams(kommun_c(), clock)

    md = upstream.get(KOMMUN_C)

    assert md.sso() == Endpoint(HTTP_REDIRECT, SSO)
    assert md.valid_until == VALID_UNTIL - DAY   # the inner group's validUntil covers the IdP too


def test_an_idp_in_an_expired_nested_group_is_not_used(
        kommun_c: Kommun, material: Material, server: HttpsFileServer, clock: FixedClock,
        upstreams: Callable[..., UpstreamMetadata]) -> None:
    server.put(PATH, _nested(material, group_valid_until=dt.datetime(2020, 1, 1, tzinfo=dt.UTC)), CONTENT_TYPE)
    upstream = upstreams(kommun_c(), clock)

    error = unavailable(upstream)

    assert "expired at 2020-01-01T00:00:00+00:00" in error.detail


def test_an_idp_described_twice_in_an_aggregate_is_refused(
        kommun_c: Kommun, material: Material, server: HttpsFileServer, clock: FixedClock,
        upstreams: Callable[..., UpstreamMetadata]) -> None:
    """Two EntityDescriptors of the IdP (one nested, one not) leave which endpoints and keys are its own to the
    order a reader walks the document in: refused, rather than one of them chosen."""
    server.put(PATH, _nested(material, twice=True), CONTENT_TYPE)
    upstream = upstreams(kommun_c(), clock)

    error = unavailable(upstream)

    assert f"describes entity {ENTITY_ID!r} 2 times" in error.detail


@pytest.mark.parametrize("make", [_expired_role, _expired_entity_in_a_valid_aggregate],
                         ids=["on-the-idpssodescriptor", "on-the-entity-inside-an-aggregate"])
def test_a_valid_until_in_the_past_below_the_root_is_enforced_too(
        kommun_c: Kommun, material: Material, server: HttpsFileServer, clock: FixedClock,
        upstreams: Callable[..., UpstreamMetadata], make: Callable[[Material], bytes]) -> None:
    server.put(PATH, make(material), CONTENT_TYPE)
    upstream = upstreams(kommun_c(), clock)

    error = unavailable(upstream)

    assert "2020-01-01T00:00:00+00:00" in error.detail
    assert "expired" in error.detail


def test_a_good_copy_stops_being_used_when_its_valid_until_passes(
        kommun_c: Kommun, material: Material, server: HttpsFileServer, clock: FixedClock,
        upstreams: Callable[..., UpstreamMetadata]) -> None:
    url = server.put(PATH, signed(material), CONTENT_TYPE)
    upstream = upstreams(kommun_c(), clock)
    md = upstream.get(KOMMUN_C)

    clock.set(VALID_UNTIL - SECOND)
    assert upstream.get(KOMMUN_C) is md

    clock.set(VALID_UNTIL)
    error = unavailable(upstream)
    assert error.detail == (f"the metadata of kommun-c's IdP expired at {VALID_UNTIL.isoformat()} "
                            f"(not refreshed)")
    assert upstream.by_entity_id(ENTITY_ID) is None
    assert status(upstream)["valid_until"] == VALID_UNTIL.isoformat()  # what readiness shows

    # the refresh fails too (the IdP publishes nothing): the message says why it was not refreshed
    server.status(PATH, 500)
    upstream.refresh_all()
    error = unavailable(upstream)
    assert error.detail == (f"the metadata of kommun-c's IdP expired at {VALID_UNTIL.isoformat()} "
                            f"({url}: HTTP 500)")

    # fresh metadata: in use again
    later = VALID_UNTIL + 7 * DAY
    server.put(PATH, signed(material, valid_until=later), CONTENT_TYPE)
    server.status(PATH, None)
    upstream.refresh_all()
    assert upstream.get(KOMMUN_C).valid_until == later
    assert status(upstream)["last_error"] is None
    assert status(upstream)["fetched_at"] == VALID_UNTIL.isoformat()


# --- 4. refreshing ----------------------------------------------------------------------------


def test_refresh_picks_up_a_signing_key_rollover(
        kommun_c: Kommun, material: Material, server: HttpsFileServer, clock: FixedClock,
        upstreams: Callable[..., UpstreamMetadata]) -> None:
    server.put(PATH, signed(material), CONTENT_TYPE)
    upstream = upstreams(kommun_c(), clock)
    assert upstream.get(KOMMUN_C).signing_certificates == (material.idp.certificate,)

    # the IdP publishes its next key next to the current one
    server.put(PATH, signed(material, more_signing=[material.idp_next]), CONTENT_TYPE)
    clock.advance(HOUR)
    upstream.refresh_all()

    md = upstream.get(KOMMUN_C)
    assert md.signing_certificates == (material.idp.certificate, material.idp_next.certificate)
    assert status(upstream) == {"entity_id": ENTITY_ID, "valid_until": VALID_UNTIL.isoformat(),
                                     "fetched_at": (NOW + HOUR).isoformat(), "last_error": None,
                                     "signing_keys": 2}

    # ... and later drops the old one
    root = etree.fromstring(prepare(material.base, valid_until=VALID_UNTIL,
                                    more_signing=[material.idp_next.certificate]))
    first = root.find("md:IDPSSODescriptor/md:KeyDescriptor", NS)
    first.getparent().remove(first)  # type: ignore[union-attr]
    server.put(PATH, sign(etree.tostring(root), material.signer), CONTENT_TYPE)
    clock.advance(HOUR)
    upstream.refresh_all()

    assert upstream.get(KOMMUN_C).signing_certificates == (material.idp_next.certificate,)
    assert status(upstream)["signing_keys"] == 1
    assert server.hits[PATH] == 3


def _issued(name: str, issuer: SigningKey) -> SigningKey:
    """A new key and its certificate, ``issuer`` its CA (SigningKey.generate's are self-signed)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(issuer.certificate.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - DAY).not_valid_after(NOW + 365 * DAY)
            .sign(issuer.key, hashes.SHA256()))
    return SigningKey(key, cert)


def _one_x509_data(m: Material, certificates: Sequence[x509.Certificate]) -> bytes:
    """The IdP's metadata whose signing KeyDescriptor holds ``certificates`` in its one X509Data."""
    root = etree.fromstring(m.base)
    data = root.find("md:IDPSSODescriptor/md:KeyDescriptor[@use='signing']/ds:KeyInfo/ds:X509Data", NS)
    assert data is not None
    for old in list(data):
        data.remove(old)
    for cert in certificates:
        etree.SubElement(data, f"{{{DS}}}X509Certificate").text = base64.b64encode(
            cert.public_bytes(serialization.Encoding.DER)).decode()
    return etree.tostring(root)


@pytest.mark.parametrize("order", [
    pytest.param(("leaf", "ca"), id="leaf-then-its-ca"),
    pytest.param(("ca", "leaf"), id="ca-then-leaf"),
    pytest.param(("leaf", "intermediate", "ca"), id="leaf-intermediate-ca"),
    pytest.param(("own", "next"), id="two-self-signed"),
])
def test_every_certificate_of_an_x509_data_is_read_and_the_key_bearing_ones_kept(
        material: Material, order: tuple[str, ...]) -> None:
    """XML-DSig §4.4.4: an X509Data may hold several X509Certificate elements, the one bearing the key and those of
    its chain. The key-bearing ones are the IdP's signing keys (a CA's key signs no SAML message of the IdP's);
    which one that is does not depend on their order. Certificates that issue none of the others (self-signed key
    containers, as at a key rollover) are each a signing key."""
    ca = SigningKey.generate("Kommun C CA", NOW)
    intermediate = _issued("Kommun C Issuing CA", ca)
    leaf = _issued("Kommun C IdP signing", intermediate if "intermediate" in order else ca).certificate
    named = {"leaf": leaf, "ca": ca.certificate, "intermediate": intermediate.certificate,
             "own": material.idp.certificate, "next": material.idp_next.certificate}
    md = parse_idp_metadata(_one_x509_data(material, [named[n] for n in order]), ENTITY_ID)
    want = (leaf,) if "leaf" in order else (material.idp.certificate, material.idp_next.certificate)
    assert md.signing_certificates == want


def _serve_500(server: HttpsFileServer, m: Material) -> None:
    server.status(PATH, 500)


def _serve_404(server: HttpsFileServer, m: Material) -> None:
    server.remove(PATH)


def _serve_unsigned(server: HttpsFileServer, m: Material) -> None:
    server.put(PATH, _unsigned(m), CONTENT_TYPE)


def _serve_other_key(server: HttpsFileServer, m: Material) -> None:
    server.put(PATH, _by_stranger(m), CONTENT_TYPE)


def _serve_expired(server: HttpsFileServer, m: Material) -> None:
    server.put(PATH, signed(m, valid_until=NOW), CONTENT_TYPE)


def _serve_html(server: HttpsFileServer, m: Material) -> None:
    server.put(PATH, b"<html><body>Sign in to continue</body></html>", "text/html")


def _serve_other_entity(server: HttpsFileServer, m: Material) -> None:
    server.put(PATH, sign(prepare(m.base.replace(ENTITY_ID.encode(), b"https://other.example/idp")), m.signer),
               CONTENT_TYPE)


@pytest.mark.parametrize(("fail", "cause"), [
    pytest.param(_serve_500, ": HTTP 500", id="http-500"),
    pytest.param(_serve_404, ": HTTP 404", id="http-404"),
    pytest.param(_serve_unsigned, "the metadata is not signed (a signature is required)", id="now-unsigned"),
    pytest.param(_serve_other_key, "the signature does not verify with the sender's metadata keys", id="other-key"),
    pytest.param(_serve_expired, f"the metadata expired at {NOW.isoformat()} (validUntil)", id="expired"),
    pytest.param(_serve_html, "the metadata is not signed", id="html-page"),
    pytest.param(_serve_other_entity, f"metadata describes no entity '{ENTITY_ID}'", id="other-entity"),
])
def test_a_failed_refresh_keeps_the_last_good_copy_and_is_reported(
        kommun_c: Kommun, material: Material, server: HttpsFileServer, clock: FixedClock,
        upstreams: Callable[..., UpstreamMetadata], caplog: pytest.LogCaptureFixture,
        fail: Callable[[HttpsFileServer, Material], None], cause: str) -> None:
    server.put(PATH, signed(material), CONTENT_TYPE)
    upstream = upstreams(kommun_c(), clock)
    good = upstream.get(KOMMUN_C)

    fail(server, material)
    clock.advance(HOUR)
    with caplog.at_level(logging.WARNING, logger="broker.upstream"):
        upstream.refresh_all()

    assert upstream.get(KOMMUN_C) is good
    state = status(upstream)
    assert cause in str(state["last_error"])
    assert state | {"last_error": None} == {"entity_id": ENTITY_ID, "valid_until": VALID_UNTIL.isoformat(),
                                            "fetched_at": NOW.isoformat(), "last_error": None, "signing_keys": 1}
    logged = warnings_logged(caplog)
    assert len(logged) == 1
    assert logged[0].startswith("metadata of kommun-c's IdP: ")
    assert cause in logged[0]
    assert logged[0].endswith("(keeping the last good copy)")


def test_a_refresh_from_a_server_that_went_away_keeps_the_last_good_copy_and_is_reported(
        config_dir: Path, material: Material, clock: FixedClock, upstreams: Callable[..., UpstreamMetadata],
        caplog: pytest.LogCaptureFixture) -> None:
    with HttpsFileServer(material.tls) as private:
        url = private.put(PATH, signed(material), CONTENT_TYPE)
        upstream = upstreams(configure_url(config_dir, material, url), clock)
        good = upstream.get(KOMMUN_C)
    assert private.errors == []
    clock.advance(HOUR)

    with caplog.at_level(logging.WARNING, logger="broker.upstream"):
        upstream.refresh_all()  # nothing listens on the port any more

    assert upstream.get(KOMMUN_C) is good
    last_error = str(status(upstream)["last_error"])
    assert last_error.startswith(f"{url}: cannot connect")
    assert status(upstream)["fetched_at"] == NOW.isoformat()
    assert warnings_logged(caplog) == [f"metadata of kommun-c's IdP: {last_error} (keeping the last good copy)"]


def test_a_successful_refresh_after_a_failure_clears_the_error(
        kommun_c: Kommun, material: Material, server: HttpsFileServer, clock: FixedClock,
        upstreams: Callable[..., UpstreamMetadata]) -> None:
    url = server.put(PATH, signed(material), CONTENT_TYPE)
    upstream = upstreams(kommun_c(), clock)
    upstream.refresh_all()
    server.status(PATH, 500)
    clock.advance(HOUR)
    upstream.refresh_all()
    assert status(upstream)["last_error"] == f"{url}: HTTP 500"

    server.status(PATH, None)
    server.put(PATH, signed(material, more_signing=[material.idp_next]), CONTENT_TYPE)
    clock.advance(HOUR)
    upstream.refresh_all()

    assert status(upstream)["last_error"] is None
    assert status(upstream)["fetched_at"] == (NOW + 2 * HOUR).isoformat()
    assert len(upstream.get(KOMMUN_C).signing_certificates) == 2


@pytest.mark.parametrize(("where", "cause"), [
    pytest.param("closed-port", ": cannot connect", id="unreachable"),
    pytest.param("500", ": HTTP 500", id="http-500"),
    pytest.param("untrusted-tls", "CERTIFICATE_VERIFY_FAILED", id="untrusted-tls-certificate"),
])
def test_metadata_never_fetched_is_unavailable_with_the_cause(
        config_dir: Path, material: Material, server: HttpsFileServer, clock: FixedClock,
        upstreams: Callable[..., UpstreamMetadata], monkeypatch: pytest.MonkeyPatch, where: str,
        cause: str) -> None:
    url = server.put(PATH, signed(material), CONTENT_TYPE)
    if where == "closed-port":
        url = closed_port_https_url(PATH)
    elif where == "500":
        server.status(PATH, 500)
    else:  # the server's certificate is not from a CA the platform trusts
        monkeypatch.setenv("SSL_CERT_FILE", str(config_dir / "keys" / "sp-signing.crt"))
    upstream = upstreams(configure_url(config_dir, material, url), clock)

    error = unavailable(upstream)

    assert error.detail.startswith(f"no metadata for kommun-c's IdP: {url}")
    assert cause in error.detail
    assert cause in str(status(upstream)["last_error"])


# --- 5. the schedule --------------------------------------------------------------------------


class _OneTick:
    """Stands in for UpstreamMetadata's stop event so that ``_loop()`` runs exactly one round, now."""

    def __init__(self) -> None:
        self.rounds = 1

    def wait(self, timeout: float) -> bool:
        assert timeout > 0
        if self.rounds:
            self.rounds -= 1
            return False
        return True

    def set(self) -> None:
        self.rounds = 0


def one_round(upstream: UpstreamMetadata) -> None:
    """One round of the background refresh loop, in this thread (the real one waits 30 s between rounds)."""
    upstream._stop = _OneTick()  # type: ignore[assignment]
    upstream._loop()


def test_the_background_loop_refreshes_when_the_refresh_interval_has_passed(
        kommun_c: Kommun, material: Material, server: HttpsFileServer, clock: FixedClock,
        upstreams: Callable[..., UpstreamMetadata]) -> None:
    url = server.put(PATH, signed(material), CONTENT_TYPE)
    upstream = upstreams(kommun_c(extra=["refresh_interval: 1h"]), clock)
    upstream.refresh_all()
    assert server.hits[PATH] == 1
    server.put(PATH, signed(material, more_signing=[material.idp_next]), CONTENT_TYPE)

    clock.set(NOW + HOUR - SECOND)
    one_round(upstream)
    assert server.hits[PATH] == 1, "not due yet"
    assert status(upstream)["signing_keys"] == 1

    clock.set(NOW + HOUR)
    one_round(upstream)
    assert server.hits[PATH] == 2
    assert status(upstream)["signing_keys"] == 2
    assert status(upstream)["fetched_at"] == (NOW + HOUR).isoformat()

    # a failed scheduled refresh is recorded and retried at the next round, not an interval later
    server.status(PATH, 500)
    clock.set(NOW + 2 * HOUR)
    one_round(upstream)
    assert server.hits[PATH] == 3
    assert status(upstream)["last_error"] == f"{url}: HTTP 500"
    assert status(upstream)["fetched_at"] == (NOW + HOUR).isoformat()
    server.status(PATH, None)
    clock.advance(dt.timedelta(seconds=30))
    one_round(upstream)
    assert server.hits[PATH] == 4
    assert status(upstream)["last_error"] is None
    assert status(upstream)["fetched_at"] == (NOW + 2 * HOUR + dt.timedelta(seconds=30)).isoformat()


@pytest.mark.parametrize("step", [pytest.param(MINUTE, id="a-minute"), pytest.param(HOUR, id="an-hour")])
def test_the_background_loop_refreshes_a_copy_fetched_before_the_clock_was_stepped_back(
        kommun_c: Kommun, material: Material, server: HttpsFileServer, clock: FixedClock,
        upstreams: Callable[..., UpstreamMetadata], step: dt.timedelta) -> None:
    """A copy fetched before the clock was stepped back (NTP correcting a clock that ran ahead) has a fetch time in
    the future of the clock now, and no age to go by: it is fetched again, not left for the size of the step on
    top of refresh_interval (a clock that had run a week ahead would keep it past its validUntil)."""
    server.put(PATH, signed(material), CONTENT_TYPE)
    upstream = upstreams(kommun_c(extra=["refresh_interval: 1h"]), clock)
    upstream.refresh_all()
    assert server.hits[PATH] == 1
    server.put(PATH, signed(material, more_signing=[material.idp_next]), CONTENT_TYPE)

    clock.set(NOW - step)
    one_round(upstream)
    assert server.hits[PATH] == 2
    assert status(upstream)["signing_keys"] == 2
    assert status(upstream)["fetched_at"] == (NOW - step).isoformat()

    clock.advance(dt.timedelta(seconds=30))
    one_round(upstream)
    assert server.hits[PATH] == 2, "fetched at the clock's time now: due an interval later"


@pytest.mark.parametrize(("cache_duration", "due_after"), [
    pytest.param("PT1H", HOUR, id="an-hour"),
    pytest.param("P0Y0M0DT0H30M0.5S", dt.timedelta(minutes=30, seconds=1), id="all-fields-fraction"),
    pytest.param("PT1M", dt.timedelta(minutes=5), id="not-more-often-than-every-5-min"),
    pytest.param("P1D", 6 * HOUR, id="longer-than-the-refresh-interval"),
])
def test_the_background_loop_refreshes_when_the_metadata_cache_duration_has_passed(
        kommun_c: Kommun, material: Material, server: HttpsFileServer, clock: FixedClock,
        upstreams: Callable[..., UpstreamMetadata], cache_duration: str, due_after: dt.timedelta) -> None:
    """SAML Metadata §2.3.1 (errata E94): cacheDuration is how long a consumer should cache the copy before
    fetching it again; a shorter one than ``refresh_interval`` (6 h by default) brings the next fetch forward.
    The copy stays usable until its validUntil meanwhile (stale is not invalid)."""
    server.put(PATH, signed(material, cache_duration=cache_duration), CONTENT_TYPE)
    upstream = upstreams(kommun_c(), clock)
    upstream.refresh_all()
    assert server.hits[PATH] == 1
    server.put(PATH, signed(material, cache_duration=cache_duration, more_signing=[material.idp_next]),
               CONTENT_TYPE)

    clock.set(NOW + due_after - SECOND)
    one_round(upstream)
    assert server.hits[PATH] == 1, "not due yet"

    clock.set(NOW + due_after)
    one_round(upstream)
    assert server.hits[PATH] == 2
    assert status(upstream)["signing_keys"] == 2


@pytest.mark.parametrize(("lifetime", "due_after"), [
    pytest.param(4 * HOUR, 3 * HOUR, id="expires-before-the-refresh-interval"),
    pytest.param(20 * MINUTE, 15 * MINUTE, id="valid-for-20-minutes"),
    pytest.param(DAY, 6 * HOUR, id="expires-after-the-refresh-interval"),
])
def test_the_background_loop_refreshes_a_copy_before_its_valid_until_passes(
        kommun_c: Kommun, material: Material, server: HttpsFileServer, clock: FixedClock,
        upstreams: Callable[..., UpstreamMetadata], lifetime: dt.timedelta, due_after: dt.timedelta) -> None:
    """SAML Metadata §2.3.1: past validUntil the copy is no longer usable, so it is fetched again before then (when
    three quarters of its remaining validity have passed), whatever refresh_interval (6 h by default) says. A copy
    valid for 4 h was next fetched 6 h after its fetch: for 2 h every login to the IdP was refused
    (upstream_metadata_unavailable) though the IdP published a fresh copy all along."""
    server.put(PATH, signed(material, valid_until=NOW + lifetime), CONTENT_TYPE)
    upstream = upstreams(kommun_c(), clock)
    upstream.refresh_all()
    assert server.hits[PATH] == 1
    later = NOW + lifetime + DAY
    server.put(PATH, signed(material, valid_until=later), CONTENT_TYPE)

    clock.set(NOW + due_after - SECOND)
    one_round(upstream)
    assert server.hits[PATH] == 1, "not due yet"

    clock.set(NOW + due_after)
    one_round(upstream)
    assert server.hits[PATH] == 2
    clock.set(NOW + lifetime)
    assert upstream.get(KOMMUN_C).valid_until == later


@pytest.mark.parametrize("cache_duration", [
    pytest.param("1H", id="no-P"), pytest.param("PT", id="no-field"), pytest.param("-PT1H", id="negative"),
    pytest.param("P1H", id="hours-before-T"), pytest.param("PT1,5S", id="comma"),
])
def test_metadata_with_an_unreadable_cache_duration_is_not_used(
        kommun_c: Kommun, material: Material, server: HttpsFileServer, clock: FixedClock,
        upstreams: Callable[..., UpstreamMetadata], cache_duration: str) -> None:
    """As an unreadable validUntil: the copy cannot be cached as its publisher asked, so it is refused."""
    server.put(PATH, signed(material, cache_duration=cache_duration), CONTENT_TYPE)
    upstream = upstreams(kommun_c(), clock)
    error = unavailable(upstream)
    assert f"cacheDuration {cache_duration!r} is not a non-negative xs:duration" in error.detail


def test_the_background_loop_fetches_metadata_never_fetched(
        kommun_c: Kommun, material: Material, server: HttpsFileServer, clock: FixedClock,
        upstreams: Callable[..., UpstreamMetadata]) -> None:
    server.put(PATH, signed(material), CONTENT_TYPE)
    upstream = upstreams(kommun_c(), clock)

    one_round(upstream)

    assert server.hits[PATH] == 1
    assert status(upstream)["fetched_at"] == NOW.isoformat()


def test_the_first_use_starts_one_refresh_thread_and_close_ends_it(
        kommun_c: Kommun, material: Material, server: HttpsFileServer, clock: FixedClock,
        upstreams: Callable[..., UpstreamMetadata]) -> None:
    server.put(PATH, signed(material), CONTENT_TYPE)
    upstream = upstreams(kommun_c(), clock)
    assert _metadata_threads() == []

    upstream.get(KOMMUN_C)
    upstream.get(KOMMUN_C)

    [thread] = _metadata_threads()
    assert thread.daemon
    upstream.close()
    thread.join(timeout=1)
    assert not thread.is_alive()


# --- 6. size and time limits ---------------------------------------------------------------------


def test_metadata_larger_than_max_bytes_is_refused(
        kommun_c: Kommun, material: Material, server: HttpsFileServer, clock: FixedClock,
        upstreams: Callable[..., UpstreamMetadata]) -> None:
    xml = signed(material)
    assert len(xml) > 1024
    url = server.put(PATH, xml, CONTENT_TYPE)
    upstream = upstreams(kommun_c(extra=["max_bytes: 1024"]), clock)

    error = unavailable(upstream)

    assert error.detail == f"no metadata for kommun-c's IdP: {url}: {len(xml)} bytes exceed the limit of 1024"
    assert status(upstream)["last_error"] == f"{url}: {len(xml)} bytes exceed the limit of 1024"


def _padded(m: Material, size: int) -> bytes:
    """Signed metadata of at least ``size`` bytes (comments: outside what exclusive c14n signs)."""
    root = etree.fromstring(prepare(m.base, valid_until=VALID_UNTIL))
    for _ in range(size // 1024 + 1):
        root.append(etree.Comment("x" * 1020))
    return sign(etree.tostring(root), m.signer)


@pytest.mark.parametrize(("size", "extra"), [
    pytest.param(4 * 1024 * 1024, [], id="4MiB-default-limit-5MiB"),
    pytest.param(6 * 1024 * 1024, [f"max_bytes: {8 * 1024 * 1024}"], id="6MiB-limit-8MiB"),
])
def test_metadata_within_max_bytes_is_accepted(
        kommun_c: Kommun, material: Material, server: HttpsFileServer, clock: FixedClock,
        upstreams: Callable[..., UpstreamMetadata], size: int, extra: list[str]) -> None:
    """max_bytes is the "largest metadata accepted" (min 1024, no upper bound in the schema)."""
    xml = _padded(material, size)
    server.put(PATH, xml, CONTENT_TYPE)
    upstream = upstreams(kommun_c(extra=extra), clock)

    upstream.refresh_all()

    assert status(upstream)["last_error"] is None
    assert upstream.get(KOMMUN_C).signing_certificates == (material.idp.certificate,)


def test_a_slow_server_times_out_quickly_and_is_recorded(
        kommun_c: Kommun, material: Material, server: HttpsFileServer, clock: FixedClock,
        upstreams: Callable[..., UpstreamMetadata]) -> None:
    url = server.put(PATH, signed(material), CONTENT_TYPE)
    server.slow(PATH, 6)
    upstream = upstreams(kommun_c(extra=["timeout: 500ms"]), clock)

    started = time.monotonic()
    error = unavailable(upstream)
    elapsed = time.monotonic() - started

    assert elapsed < 3.0  # the 500 ms timeout, with room for a busy machine; waiting for the server takes 6 s
    assert error.detail.startswith(f"no metadata for kommun-c's IdP: {url}: timed out")
    assert str(status(upstream)["last_error"]).startswith(f"{url}: timed out")


def test_a_slow_refresh_keeps_the_last_good_copy(
        kommun_c: Kommun, material: Material, server: HttpsFileServer, clock: FixedClock,
        upstreams: Callable[..., UpstreamMetadata]) -> None:
    url = server.put(PATH, signed(material), CONTENT_TYPE)
    upstream = upstreams(kommun_c(extra=["timeout: 500ms"]), clock)
    good = upstream.get(KOMMUN_C)
    server.slow(PATH, 6)

    started = time.monotonic()
    upstream.refresh_all()

    assert time.monotonic() - started < 3.0
    assert upstream.get(KOMMUN_C) is good
    assert str(status(upstream)["last_error"]).startswith(f"{url}: timed out")


# --- 7. local metadata files ----------------------------------------------------------------------


def test_a_local_metadata_file_is_trusted_as_configured_and_loaded_with_the_configuration(
        config_dir: Path, material: Material, clock: FixedClock,
        upstreams: Callable[..., UpstreamMetadata]) -> None:
    xml = prepare(material.base, more_signing=[material.idp_next.certificate])  # unsigned, no validUntil
    assert b"Signature" not in xml
    (config_dir / "metadata" / "kommun-c-idp.xml").write_bytes(xml)

    municipality = load_settings(config_dir).municipalities[KOMMUN_C]

    md = municipality.idp_metadata
    assert isinstance(md, IdpMetadata)
    assert md.entity_id == ENTITY_ID
    assert md.sso() == Endpoint(HTTP_REDIRECT, SSO)
    assert md.signing_certificates == (material.idp.certificate, material.idp_next.certificate)
    upstream = UpstreamMetadata([municipality], clock, None)  # no network at all
    assert upstream.get(KOMMUN_C) is md
    upstream.refresh_all()
    assert upstream.get(KOMMUN_C) is md
    assert status(upstream) == {"entity_id": ENTITY_ID, "valid_until": None, "fetched_at": NOW.isoformat(),
                                "last_error": None, "signing_keys": 2}
    assert _metadata_threads() == [], "nothing to refresh: no background thread"


def _no_signing_key(m: Material) -> bytes:
    root = etree.fromstring(prepare(m.base))
    for kd in root.findall("md:IDPSSODescriptor/md:KeyDescriptor", NS):
        kd.getparent().remove(kd)  # type: ignore[union-attr]
    return etree.tostring(root)


@pytest.mark.parametrize(("name", "content", "message"), [
    pytest.param("broken.xml", lambda m: b"<md:EntityDescriptor", "{path}: metadata is not well-formed, safe XML",
                 id="not-xml"),
    pytest.param("doctype.xml",
                 lambda m: b'<?xml version="1.0"?>\n<!DOCTYPE x [<!ENTITY e "e">]>\n' + m.base,
                 "{path}: metadata is not well-formed, safe XML", id="doctype"),
    pytest.param("sp.xml", lambda m: m.base.replace(ENTITY_ID.encode(), b"https://other.example/idp"),
                 f"{{path}}: metadata describes no entity '{ENTITY_ID}' (found: https://other.example/idp)",
                 id="other-entity"),
    pytest.param("nokey.xml", _no_signing_key, f"{{path}}: the IdP '{ENTITY_ID}' publishes no signing key",
                 id="no-signing-key"),
    pytest.param("missing.xml", None, "metadata file not found: {path}", id="missing"),
])
def test_a_broken_local_metadata_file_is_a_configuration_error_naming_the_file(
        config_dir: Path, material: Material, name: str, content: Callable[[Material], bytes] | None,
        message: str) -> None:
    path = config_dir.resolve() / "metadata" / name
    if content is not None:
        path.write_bytes(content(material))
    replacing_block(KOMMUN_C_FILE, "  metadata:", f"  metadata:\n    file: metadata/{name}\n")(config_dir)

    assert_issues(load_issues(config_dir), [
        Expected(KOMMUN_C_FILE, f"file: metadata/{name}", "saml.metadata.file", message.format(path=path)),
    ], config_dir)


# --- 8. configuration rules -----------------------------------------------------------------------


@pytest.mark.parametrize(("block", "expected"), [
    pytest.param("  metadata:\n    url: https://adfs.kommun-c.example.se/FederationMetadata.xml\n",
                 Expected(KOMMUN_C_FILE, "metadata:", "saml.metadata.signing_certificates",
                          "metadata fetched from a URL must be signed: name the signer's certificate"),
                 id="url-without-signing-certificates"),
    pytest.param("  metadata:\n    file: metadata/kommun-c-idp.xml\n"
                 "    url: https://adfs.kommun-c.example.se/FederationMetadata.xml\n"
                 "    signing_certificates: [keys/sp-signing.crt]\n",
                 Expected(KOMMUN_C_FILE, "metadata:", "saml.metadata", "give exactly one of file or url"),
                 id="file-and-url"),
    pytest.param("  metadata:\n    refresh_interval: 1h\n",
                 Expected(KOMMUN_C_FILE, "metadata:", "saml.metadata", "give exactly one of file or url"),
                 id="neither-file-nor-url"),
    pytest.param("  metadata:\n    url: http://adfs.kommun-c.example.se/FederationMetadata.xml\n"
                 "    signing_certificates: [keys/sp-signing.crt]\n",
                 Expected(KOMMUN_C_FILE, "url: http://", "saml.metadata.url",
                          "expected an https:// URL without a fragment (#...), "
                          "got 'http://adfs.kommun-c.example.se/FederationMetadata.xml'"),
                 id="plain-http-url"),
])
def test_metadata_source_rules(config_dir: Path, block: str, expected: Expected) -> None:
    replacing_block(KOMMUN_C_FILE, "  metadata:", block)(config_dir)

    assert_issues(load_issues(config_dir), [expected], config_dir)


def test_an_unforeseen_failure_of_one_refresh_keeps_the_copy_and_the_refresher(
        kommun_c: Kommun, material: Material, server: HttpsFileServer, clock: FixedClock,
        upstreams: Callable[..., UpstreamMetadata], monkeypatch: pytest.MonkeyPatch) -> None:
    """A defect met while reading one IdP's metadata (here: the parser raising what it never should) is recorded
    like any failed refresh: the last good copy serves, and the refresh thread and the other IdPs go on."""
    server.put(PATH, signed(material), CONTENT_TYPE)
    upstream = upstreams(kommun_c(), clock)
    held = upstream.get(KOMMUN_C)

    def broken(*_args: object, **_kwargs: object) -> IdpMetadata:
        raise KeyError("unforeseen")

    monkeypatch.setattr("broker.saml.upstream_metadata.parse_idp_metadata", broken)
    upstream.refresh_all()

    assert str(status(upstream)["last_error"]).startswith("unexpected KeyError")
    assert upstream.get(KOMMUN_C) is held
