"""What a public login endpoint really asks of browsers (broker.readiness.endpoints), read in live handshakes
with real TLS servers on loopback (tests/factories/tls_servers.py, on the broker's own pyOpenSSL
``ClientCertTLS``).

The set-ups: the municipality's CA advertised in the CertificateRequest, missing from it, an empty list
(a certificate requested naming no CA), no request at all (with HTTP/2 or HTTP/1.1 chosen by ALPN), a list
larger than readiness.ca_list_warn_bytes, CA names no municipality uses, a server that demands a certificate
and aborts without one, and endpoints that give no handshake (closed port, plain HTTP, silence).
The municipalities' CAs are those of the example configuration (Kommun A and B), loaded by the real loader.
"""

from __future__ import annotations

import base64
import datetime as dt
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID
from OpenSSL import SSL

from broker.config.loader import Settings
from broker.config.schema import CertificateLogin
from broker.demo.certificates import SERVER_AUTH, CertificateAuthority, LeafProfile
from broker.pki.tls import EndpointProbe
from broker.readiness.endpoints import (
    AddressProbe,
    ProbedEndpoint,
    advertised_check,
    configured_names,
    endpoint_section,
    login_host_check,
    probe,
    server_roots,
    without_card,
)
from broker.readiness.model import Section
from broker.readiness.trust import name_of
from tests.factories.http_files import FileServer
from tests.factories.metadata import closed_port_https_url
from tests.factories.slow_resolver import resolve_slowly
from tests.factories.tls_servers import ServerIdentity, TlsEndpoint
from tests.unit.readiness.configs import (
    DAY,
    issuing_ca,
    load,
    now_utc,
    only,
    readiness,
    root_ca,
    section,
    set_readiness,
    statuses,
    write_certificate_municipality,
)

NOW = now_utc()
WARN_BYTES = 12288  # readiness.ca_list_warn_bytes' default
TIMEOUT = 3.0


@pytest.fixture(scope="module")
def identity() -> ServerIdentity:
    return ServerIdentity.generate(NOW)


@pytest.fixture(scope="module")
def settings(demo_material, tmp_path_factory: pytest.TempPathFactory) -> Settings:  # type: ignore[no-untyped-def]
    """The example configuration (not edited here: loaded once for the module)."""
    import shutil

    target = tmp_path_factory.mktemp("endpoints") / "config"
    shutil.copytree(demo_material.config, target)
    return load(target)


def login(settings: Settings, mid: str) -> CertificateLogin:
    cl = settings.municipalities[mid].config.certificate
    assert cl is not None
    return cl


def cas(settings: Settings, mid: str) -> list[x509.Certificate]:
    cl = login(settings, mid)
    return [*cl.anchors(), *cl.intermediate_certificates()]


def known(settings: Settings) -> dict[bytes, str]:
    return configured_names({mid: tuple(cas(settings, mid)) for mid in ("kommun-a", "kommun-b")})


@pytest.fixture
def serve(identity: ServerIdentity) -> Iterator[object]:
    """``serve(**TlsEndpoint options)``: a TLS endpoint on loopback, stopped after the test."""
    started: list[TlsEndpoint] = []

    def start(**options: object) -> TlsEndpoint:
        own = options.pop("identity", identity)  # another server certificate than the module's
        endpoint = TlsEndpoint(own, **options)  # type: ignore[arg-type]
        started.append(endpoint)
        return endpoint

    yield start
    for endpoint in started:
        endpoint.stop()


def probed(endpoint: TlsEndpoint) -> ProbedEndpoint:
    return probe(endpoint.url, TIMEOUT)


def endpoint_checks(settings: Settings, found: ProbedEndpoint, warn_bytes: int = WARN_BYTES) -> Section:
    return endpoint_section(found, known(settings), warn_bytes)


# --- the three set-ups: advertised, missing, empty ----------------------------------------------------------


def test_municipal_ca_advertised_passes(settings: Settings, serve) -> None:  # type: ignore[no-untyped-def]
    endpoint = serve(client_cas=[*cas(settings, "kommun-a"), *cas(settings, "kommun-b")])
    found = probed(endpoint)

    result = endpoint_checks(settings, found)
    assert [(c.id, c.status) for c in result.checks] == [("endpoint.handshake", "pass"), ("endpoint.ca_list", "pass")]
    assert only(result, "endpoint.handshake").evidence == "TLSv1.3, ALPN http/1.1"
    assert only(result, "endpoint.ca_list").evidence.startswith("4 CA names, ")
    assert result.details["certificate_requested"] is True
    assert result.details["advertised"] == [n.rfc4514_string() for n in endpoint.advertised]

    for mid in ("kommun-a", "kommun-b"):
        check = advertised_check(login(settings, mid), found)
        assert (check.id, check.status, check.subject) == ("endpoint.advertises", "pass", endpoint.url)
        assert check.fix is None


@pytest.mark.parametrize(("which", "status"), [("root", "pass"), ("issuing", "warn"), ("both", "pass")])
def test_root_or_issuing_ca_alone_offers_the_card(settings: Settings, serve, which: str,  # type: ignore[no-untyped-def]
                                                  status: str) -> None:
    """Either offers the card. The issuing CA without its root warns: a proxy that verifies with what it advertises
    (nginx ssl_client_certificate) cannot complete the chain and refuses every card ("unable to get issuer
    certificate", which optional_no_ca does not forgive) unless the root is in its trust store."""
    cl = login(settings, "kommun-a")
    advertised = {"root": cl.anchors(), "issuing": cl.intermediate_certificates(),
                  "both": (*cl.anchors(), *cl.intermediate_certificates())}[which]
    found = probed(serve(client_cas=list(advertised)))

    check = advertised_check(cl, found)

    assert check.status == status
    assert ("Kommun A Demo Root CA" if which == "root" else "Kommun A Demo Person CA") in check.evidence
    if status == "warn":
        assert check.title == "users will be offered their certificate; its root is not advertised"
        assert "ssl_trusted_certificate" in (check.fix or "")


def test_municipal_ca_missing_fails(settings: Settings, serve) -> None:  # type: ignore[no-untyped-def]
    """Only Kommun B's CAs are advertised: Kommun A's users are never offered their certificate."""
    found = probed(serve(client_cas=cas(settings, "kommun-b")))

    check_a = advertised_check(login(settings, "kommun-a"), found)
    assert (check_a.id, check_a.status, check_a.title) == ("endpoint.advertises", "fail",
                                                           "certificate will not be offered")
    assert "Kommun A Demo Root CA" in check_a.evidence
    assert "Kommun A Demo Person CA" in check_a.evidence
    assert check_a.fix is not None
    assert "proxy-config nginx" in check_a.fix
    assert advertised_check(login(settings, "kommun-b"), found).status == "pass"
    assert statuses(endpoint_checks(settings, found), "endpoint.ca_list") == ["pass"]


def test_empty_ca_list_warns(settings: Settings, serve) -> None:  # type: ignore[no-untyped-def]
    """A certificate is requested but no CA is named: browsers offer every certificate."""
    found = probed(serve(client_cas=[]))
    assert found.probe is not None
    assert found.probe.certificate_requested

    result = endpoint_checks(settings, found)
    assert [(c.id, c.status) for c in result.checks] == [("endpoint.handshake", "pass"),
                                                          ("endpoint.ca_list_empty", "warn")]
    assert result.details["advertised"] == []

    check = advertised_check(login(settings, "kommun-a"), found)
    assert (check.id, check.status, check.title) == ("endpoint.advertises", "warn", "any certificate offered")


# --- no certificate request ---------------------------------------------------------------------------------


def test_no_certificate_request_with_http2_fails(settings: Settings, serve) -> None:  # type: ignore[no-untyped-def]
    found = probed(serve(request_certificate=False, alpn=(b"h2", b"http/1.1")))

    result = endpoint_checks(settings, found)
    assert [(c.id, c.status) for c in result.checks] == [("endpoint.handshake", "pass"),
                                                          ("endpoint.http2_per_path", "fail")]
    assert only(result, "endpoint.handshake").evidence.endswith("ALPN h2")
    assert result.details["alpn"] == "h2"
    assert result.details["certificate_requested"] is False

    check = advertised_check(login(settings, "kommun-a"), found)
    assert (check.status, check.title) == ("fail", "no certificate requested")


@pytest.mark.parametrize("alpn", [(b"http/1.1",), ()], ids=["http/1.1", "no-alpn"])
def test_no_certificate_request_with_http1_fails(settings: Settings, serve, alpn: Sequence[bytes]) -> None:  # type: ignore[no-untyped-def]
    found = probed(serve(request_certificate=False, alpn=alpn))

    result = endpoint_checks(settings, found)
    assert [(c.id, c.status) for c in result.checks] == [("endpoint.handshake", "pass"),
                                                          ("endpoint.certificate_request", "fail")]
    assert advertised_check(login(settings, "kommun-b"), found).status == "fail"


def test_certificate_request_with_http2_is_fine(settings: Settings, serve) -> None:  # type: ignore[no-untyped-def]
    """HTTP/2 is no problem when the certificate is requested in the handshake itself."""
    found = probed(serve(client_cas=cas(settings, "kommun-a"), alpn=(b"h2",)))

    result = endpoint_checks(settings, found)
    assert statuses(result, "endpoint.http2_per_path") == []
    assert result.result == "pass"
    assert advertised_check(login(settings, "kommun-a"), found).status == "pass"


# --- the list's size and content ----------------------------------------------------------------------------


def test_ca_list_over_the_warning_size_warns(settings: Settings, serve) -> None:  # type: ignore[no-untyped-def]
    configured = [*cas(settings, "kommun-a"), *cas(settings, "kommun-b")]
    found = probed(serve(client_cas=configured))
    assert found.probe is not None
    size = found.probe.ca_list_bytes
    assert size == 2 + sum(2 + len(c.subject.public_bytes()) for c in configured)

    assert statuses(endpoint_checks(settings, found, warn_bytes=size + 1), "endpoint.ca_list_size") == []
    check = only(endpoint_checks(settings, found, warn_bytes=size), "endpoint.ca_list_size")
    assert (check.status, check.title) == ("warn", "CA list near the 16 KB limit")
    assert f"{size} bytes" in check.evidence


def test_ca_names_of_no_configured_municipality_warn(settings: Settings, serve) -> None:  # type: ignore[no-untyped-def]
    strangers = [root_ca(f"Elsewhere CA {i}", NOW, organization="Elsewhere").certificate for i in range(7)]
    found = probed(serve(client_cas=[*cas(settings, "kommun-a"), *strangers]))

    result = endpoint_checks(settings, found)
    check = only(result, "endpoint.ca_list_extra")
    assert (check.status, check.title) == ("warn", "CAs no municipality uses")
    assert check.evidence.startswith("7 advertised CA names belong to no configured municipality: ")
    assert "CN=Elsewhere CA 0,O=Elsewhere,C=SE" in check.evidence
    assert check.evidence.endswith(" ...")  # five named, the rest elided
    assert "Kommun A" not in check.evidence
    assert advertised_check(login(settings, "kommun-a"), found).status == "pass"


def reencoded(cert: x509.Certificate) -> x509.Certificate:
    """A self-signed stand-in whose subject has ``cert``'s attributes and values, CN and O as PrintableString
    (the configured certificates use UTF8String): the same name to a person, other bytes to a browser."""
    name = x509.Name([x509.NameAttribute(a.oid, str(a.value), _ASN1Type.PrintableString)
                      if a.oid in (NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME) else a for a in cert.subject])
    key = ec.generate_private_key(ec.SECP256R1())
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(NOW - dt.timedelta(days=1))
            .not_valid_after(NOW + dt.timedelta(days=100)).add_extension(x509.BasicConstraints(True, None), True)
            .sign(key, hashes.SHA256()))


def test_names_differing_only_in_their_encoding_are_explained(settings: Settings, serve) -> None:  # type: ignore[no-untyped-def]
    """The go-live failure's subtle form: the endpoint names Kommun A's CAs with the same text in other string
    types. Browsers compare the encoded bytes, so the cards are not offered: FAIL, saying why, and the names are
    not reported as strangers without it."""
    twins = [reencoded(c) for c in cas(settings, "kommun-a")]
    assert all(t.subject == c.subject and t.subject.public_bytes() != c.subject.public_bytes()
               for t, c in zip(twins, cas(settings, "kommun-a"), strict=True))
    found = probed(serve(client_cas=twins))

    check = advertised_check(login(settings, "kommun-a"), found)
    assert (check.status, check.title) == ("fail", "certificate will not be offered")
    assert "is advertised with the same text but another encoding (CN=PrintableString" in check.evidence
    assert "CN=UTF8String" in check.evidence
    assert check.fix is not None
    assert "browsers compare the encoded bytes" in check.fix
    extra = only(endpoint_checks(settings, found), "endpoint.ca_list_extra")
    assert "a configured CA's name in another encoding" in extra.evidence


def two_issuing_cas(config_dir: Path) -> tuple[CertificateLogin, list[x509.Certificate]]:
    """Kommun A with one root and two issuing CAs (like SITHS e-id's Person HSA-id 3 CA and Person ID 3 CA):
    its login and [root, first, second]."""
    root = root_ca("Kommun A Root CA", NOW)
    first, second = issuing_ca(root, "Kommun A Person HSA-id CA"), issuing_ca(root, "Kommun A Person ID CA")
    write_certificate_municipality(config_dir, "kommun-a", anchors=[root.certificate],
                                   intermediates=[first.certificate, second.certificate])
    return login(load(config_dir), "kommun-a"), [root.certificate, first.certificate, second.certificate]


def test_one_of_two_issuing_cas_missing_fails(config_dir: Path, serve) -> None:  # type: ignore[no-untyped-def]
    """The go-live failure itself: the endpoint names one issuing CA, not the other nor the root. Every holder of
    a card from the missing CA is never offered their certificate, so it FAILs (exit 1), naming the missing CA,
    the endpoint and the command that writes the bundle."""
    cl, (_, first, _) = two_issuing_cas(config_dir)
    endpoint = serve(client_cas=[first])

    check = advertised_check(cl, probed(endpoint))

    assert (check.id, check.status, check.title, check.subject) == (
        "endpoint.advertises", "fail", "some cards will not be offered", endpoint.url)
    assert check.evidence == (
        f"{endpoint.url} advertises neither the root (Kommun A Root CA) nor the issuing CA Kommun A Person ID CA: "
        "browsers will not show these card holders' certificates (of the municipality's issuing CAs only "
        "Kommun A Person HSA-id CA is offered)")
    assert check.fix == ("Regenerate the proxy's client-CA bundle from this configuration (`broker proxy-config "
                         "nginx --config DIR --out DIR`; `haproxy` or `apache` for those proxies), reload the "
                         "proxy, and run `broker readiness` again.")


def test_both_issuing_cas_advertised_passes(config_dir: Path, serve) -> None:  # type: ignore[no-untyped-def]
    cl, (root, first, second) = two_issuing_cas(config_dir)
    endpoint = serve(client_cas=[root, first, second])

    check = advertised_check(cl, probed(endpoint))

    assert (check.status, check.evidence) == (
        "pass", f"{endpoint.url} advertises Kommun A Person HSA-id CA, Kommun A Person ID CA")


@pytest.mark.parametrize(("advertised", "also"), [
    ([0], ""),
    ([0, 1], " and Kommun A Person HSA-id CA"),
], ids=["root-only", "root-and-one-issuing"])
def test_root_without_an_issuing_ca_passes_and_says_the_pcs_need_the_intermediate(  # type: ignore[no-untyped-def]
        config_dir: Path, serve, advertised: list[int], also: str) -> None:
    """Browsers match the root only when the PC can build the chain: PASS, and the evidence says so."""
    cl, certs = two_issuing_cas(config_dir)
    missing = "Kommun A Person HSA-id CA, Kommun A Person ID CA" if also == "" else "Kommun A Person ID CA"
    endpoint = serve(client_cas=[certs[i] for i in advertised])

    check = advertised_check(cl, probed(endpoint))

    assert (check.id, check.status, check.title) == ("endpoint.advertises", "pass",
                                                     "users will be offered their certificate")
    assert check.evidence == (
        f"{endpoint.url} advertises the root Kommun A Root CA{also}, not the issuing "
        f"CA{'s' if also == '' else ''} {missing}: browsers offer those cards only on PCs that hold {missing} to "
        "build the chain to the root (smart-card middleware usually installs it; /diagnose on a PC shows whether "
        "a certificate arrives)")
    assert check.fix is None


def test_one_of_two_issuing_cas_missing_fails_the_run(config_dir: Path, serve) -> None:  # type: ignore[no-untyped-def]
    """Through the runner: the municipality's result is FAIL, so `broker readiness` exits 1."""
    _, (_, first, _) = two_issuing_cas(config_dir)
    endpoint = serve(client_cas=[first])
    set_readiness(config_dir, endpoints=[endpoint.url])

    report = readiness(load(config_dir), municipalities=["kommun-a"])

    assert statuses(section(report, "kommun-a"), "endpoint.advertises") == ["fail"]
    assert report.result == "fail"


def two_hierarchies(config_dir: Path) -> tuple[CertificateLogin, list[x509.Certificate]]:
    """Kommun A during a change of CA generation: [old root, old issuing CA, new root, new issuing CA]."""
    old_root, new_root = root_ca("Kommun A Root CA v1", NOW), root_ca("Kommun A Root CA v2", NOW)
    old, new = issuing_ca(old_root, "Kommun A Person CA v1"), issuing_ca(new_root, "Kommun A Person CA v2")
    certs = [old_root.certificate, old.certificate, new_root.certificate, new.certificate]
    write_certificate_municipality(config_dir, "kommun-a", anchors=[certs[0], certs[2]],
                                   intermediates=[certs[1], certs[3]])
    return login(load(config_dir), "kommun-a"), certs


def test_root_of_one_hierarchy_does_not_cover_the_issuing_ca_of_another(  # type: ignore[no-untyped-def]
        config_dir: Path, serve) -> None:
    """The old hierarchy advertised, the new one not at all: the old root offers none of the new cards (they
    chain to the new root), so FAIL, naming the new issuing CA and its own root only."""
    cl, certs = two_hierarchies(config_dir)
    endpoint = serve(client_cas=[certs[0], certs[1]])

    check = advertised_check(cl, probed(endpoint))

    assert (check.status, check.title) == ("fail", "some cards will not be offered")
    assert check.evidence == (
        f"{endpoint.url} advertises neither the root (Kommun A Root CA v2) nor the issuing CA Kommun A Person CA "
        "v2: browsers will not show these card holders' certificates (of the municipality's issuing CAs only "
        "Kommun A Person CA v1 is offered)")


def test_each_hierarchy_covered_by_its_own_root_passes(config_dir: Path, serve) -> None:  # type: ignore[no-untyped-def]
    cl, certs = two_hierarchies(config_dir)
    endpoint = serve(client_cas=[certs[0], certs[2]])

    check = advertised_check(cl, probed(endpoint))

    assert (check.status, check.evidence) == ("pass", (
        f"{endpoint.url} advertises the roots Kommun A Root CA v1, Kommun A Root CA v2, not the issuing CAs "
        "Kommun A Person CA v1, Kommun A Person CA v2: browsers offer those cards only on PCs that hold Kommun A "
        "Person CA v1, Kommun A Person CA v2 to build the chain to the root (smart-card middleware usually "
        "installs it; /diagnose on a PC shows whether a certificate arrives)"))


@pytest.mark.parametrize(("with_root", "status"), [(True, "pass"), (False, "warn")], ids=["and-the-root", "alone"])
def test_a_middle_ca_covers_the_issuing_ca_below_it(config_dir: Path, serve, with_root: bool,  # type: ignore[no-untyped-def]
                                                    status: str) -> None:
    """Root, policy CA, issuing CA: a browser builds the chain to the named policy CA as it would to the root; a
    proxy verifying with the advertised CAs needs the root too (a CA between is no root: WARN without it)."""
    root = root_ca("Kommun A Root CA", NOW)
    middle = root.subordinate("Kommun A Policy CA", organization="Kommun A", path_length=1)
    issuing = issuing_ca(middle, "Kommun A Person CA")
    write_certificate_municipality(config_dir, "kommun-a", anchors=[root.certificate],
                                   intermediates=[middle.certificate, issuing.certificate])
    endpoint = serve(client_cas=[middle.certificate, *([root.certificate] if with_root else [])])

    check = advertised_check(login(load(config_dir), "kommun-a"), probed(endpoint))

    if not with_root:
        assert (check.status, check.title) == ("warn", "users will be offered their certificate; its root is not "
                                                       "advertised")
        assert "but not Kommun A Root CA" in check.evidence
        return
    assert (check.status, check.evidence) == ("pass", (
        f"{endpoint.url} advertises the CAs Kommun A Policy CA, Kommun A Root CA, not the issuing CA Kommun A "
        "Person CA: browsers offer those cards only on PCs that hold Kommun A Person CA to build the chain to them "
        "(smart-card middleware usually installs it; /diagnose on a PC shows whether a certificate arrives)"))


def test_a_policy_ca_advertised_with_the_issuing_ca_is_no_root(config_dir: Path, serve) -> None:  # type: ignore[no-untyped-def]
    """root -> policy CA -> issuing CA, the proxy advertising the policy and issuing CAs: a proxy verifying with
    them still cannot reach a self-signed root (OpenSSL error 2), so every card is refused: WARN, not PASS."""
    root = root_ca("Kommun A Root CA", NOW)
    middle = root.subordinate("Kommun A Policy CA", organization="Kommun A", path_length=1)
    issuing = issuing_ca(middle, "Kommun A Person CA")
    write_certificate_municipality(config_dir, "kommun-a", anchors=[root.certificate],
                                   intermediates=[middle.certificate, issuing.certificate])
    endpoint = serve(client_cas=[middle.certificate, issuing.certificate])

    check = advertised_check(login(load(config_dir), "kommun-a"), probed(endpoint))

    assert (check.status, check.title) == ("warn", "users will be offered their certificate; its root is not "
                                                   "advertised")
    assert "but not Kommun A Root CA" in check.evidence


@pytest.mark.parametrize("anchored", [
    pytest.param("issuing", id="issuing-ca-as-the-only-anchor"),
    pytest.param("policy", id="policy-ca-as-anchor-above-the-issuing-ca"),
])
def test_an_anchor_below_its_root_leaves_the_proxy_without_a_root(config_dir: Path, serve,  # type: ignore[no-untyped-def]
                                                                   anchored: str) -> None:
    """Only a branch of a hierarchy trusted (its issuing or policy CA the anchor, the root not configured), the
    proxy advertising every configured CA, as `broker proxy-config` writes them: the cards are offered, but a
    proxy that verifies with those CAs stops at the anchor, which is no self-signed root (OpenSSL error 2, "unable
    to get issuer certificate", which optional_no_ca does not forgive), and refuses every card: WARN, naming the
    root it needs, not PASS."""
    root = root_ca("Kommun A Root CA", NOW)
    if anchored == "issuing":
        anchor = issuing_ca(root, "Kommun A Person CA").certificate
        intermediates: list[x509.Certificate] = []
    else:
        middle = root.subordinate("Kommun A Policy CA", organization="Kommun A", path_length=1)
        anchor = middle.certificate
        intermediates = [issuing_ca(middle, "Kommun A Person CA").certificate]
    write_certificate_municipality(config_dir, "kommun-a", anchors=[anchor], intermediates=intermediates)
    endpoint = serve(client_cas=[anchor, *intermediates])

    check = advertised_check(login(load(config_dir), "kommun-a"), probed(endpoint))

    assert (check.status, check.title) == ("warn", "users will be offered their certificate; its root is not "
                                                   "advertised")
    assert f"but not the root above {name_of(anchor)} (CN=Kommun A Root CA,O=Kommun A,C=SE), which no " \
           "configured file holds" in check.evidence
    assert "ssl_trusted_certificate" in (check.fix or "")


def test_an_issuing_ca_configured_as_anchor_too_names_its_configured_root(config_dir: Path,  # type: ignore[no-untyped-def]
                                                                          serve) -> None:
    """The issuing CA among the anchors beside its own root (both configured): the root missing from the list is
    named as such, not as one no configured file holds."""
    root = root_ca("Kommun A Root CA", NOW)
    issuing = issuing_ca(root, "Kommun A Person CA")
    write_certificate_municipality(config_dir, "kommun-a", anchors=[root.certificate, issuing.certificate],
                                   intermediates=[issuing.certificate])
    endpoint = serve(client_cas=[issuing.certificate])

    check = advertised_check(login(load(config_dir), "kommun-a"), probed(endpoint))

    assert check.status == "warn"
    assert "but not Kommun A Root CA: " in check.evidence
    assert "no configured file holds" not in check.evidence


def _identity(*, days_left: int, san_dns: str | None = "localhost", san_ip: str | None = "127.0.0.1",
              valid_from_days: int = -30) -> ServerIdentity:
    ca = CertificateAuthority.root("Loopback TLS CA", NOW)
    leaf = ca.issue(LeafProfile(common_name="login", eku=(SERVER_AUTH,), san_dns=san_dns, san_ip=san_ip,
                                valid_from=NOW + dt.timedelta(days=valid_from_days),
                                valid_until=NOW + dt.timedelta(days=days_left)))
    return ServerIdentity(ca.certificate, (leaf.certificate, ca.certificate), leaf.key_pem())


@pytest.mark.parametrize(("identity_of", "url_host", "status", "title"), [
    (lambda: _identity(days_left=400), "127.0.0.1", "pass", "server certificate valid"),
    (lambda: _identity(days_left=400), "localhost", "pass", "server certificate valid"),
    (lambda: _identity(days_left=10), "127.0.0.1", "warn", "server certificate expires soon"),
    (lambda: _identity(days_left=-2, valid_from_days=-400), "127.0.0.1", "fail", "server certificate expired"),
    (lambda: _identity(days_left=400, san_dns="login.example.se", san_ip=None), "127.0.0.1", "fail",
     "server certificate for another host"),
    (lambda: _identity(days_left=400, san_dns="*.localhost", san_ip=None), "localhost", "fail",
     "server certificate for another host"),
], ids=["valid-ip", "valid-dns", "expiring", "expired", "another-host", "wildcard-is-not-the-bare-name"])
def test_the_endpoints_own_certificate_is_judged(settings: Settings, identity_of: Any, url_host: str, status: str,
                                                 title: str) -> None:
    """Browsers block an expired login page, or one for another host, before any card is asked for."""
    with TlsEndpoint(identity_of(), client_cas=cas(settings, "kommun-a")) as endpoint:
        found = probe(endpoint.url.replace("127.0.0.1", url_host), TIMEOUT)
    section = endpoint_section(found, known(settings), WARN_BYTES, now=NOW, window=dt.timedelta(days=30))

    check = only(section, "endpoint.server_certificate")
    assert (check.status, check.title) == (status, title)


@pytest.mark.parametrize("url_host", ["kommun-å.se", "KOMMUN-Å.se", "xn--kommun--kxa.se"],
                         ids=["u-label", "u-label-in-capitals", "a-label"])
def test_a_login_host_with_national_characters_is_matched_as_browsers_match_it(settings: Settings,
                                                                               url_host: str) -> None:
    """A host name with å, ä or ö is in the certificate as its A-label (RFC 5280 §7.2, RFC 6125 §6.4.2: compared
    after conversion to A-labels), whichever form the URL gives: the browser shows the page."""
    identity = _identity(days_left=400, san_dns="xn--kommun--kxa.se", san_ip=None)
    with TlsEndpoint(identity, client_cas=cas(settings, "kommun-a")) as endpoint:
        found = probe(f"https://{url_host}:{endpoint.port}", TIMEOUT, lambda _host, _port, _timeout: ["127.0.0.1"])
        endpoint.recorded(1)
        assert endpoint.server_names == ["xn--kommun--kxa.se"]
    section = endpoint_section(found, known(settings), WARN_BYTES, now=NOW, window=dt.timedelta(days=30),
                               roots=[identity.ca])

    check = only(section, "endpoint.server_certificate")
    assert (check.status, check.title) == ("pass", "server certificate valid")
    assert only(section, "endpoint.server_chain").status == "pass"


def test_an_endpoint_without_a_handshake_keeps_the_documented_keys(settings: Settings) -> None:
    section = endpoint_section(probe("https://127.0.0.1:1/", TIMEOUT), known(settings), WARN_BYTES, now=NOW)
    assert set(section.details) == {"tls_version", "alpn", "certificate_requested", "advertised", "ca_list_bytes",
                                    "addresses"}
    assert section.details["addresses"] == [
        {"address": "127.0.0.1", "error": section.details["addresses"][0]["error"], "advertised": []}]


# --- servers that demand a certificate, TLS 1.2 -------------------------------------------------------------


@pytest.mark.parametrize("max_version", [SSL.TLS1_2_VERSION, None], ids=["TLS1.2", "TLS1.3"])
def test_server_that_requires_a_certificate_still_shows_its_list(settings: Settings, serve,  # type: ignore[no-untyped-def]
                                                                 max_version: int | None) -> None:
    """nginx ``ssl_verify_client on``: the probe (which has no certificate) is refused after the request, yet
    the list was read."""
    endpoint = serve(client_cas=cas(settings, "kommun-a"), require_certificate=True, max_version=max_version)
    found = probed(endpoint)

    assert found.error is None
    assert advertised_check(login(settings, "kommun-a"), found).status == "pass"
    assert statuses(endpoint_checks(settings, found), "endpoint.ca_list") == ["pass"]
    assert endpoint.recorded(1)[0][0] is False  # the server did refuse the probe


NGINX_NO_CERTIFICATE = (b"HTTP/1.1 400 Bad Request\r\nServer: nginx\r\nContent-Type: text/html\r\n"
                        b"Content-Length: 230\r\nConnection: close\r\n\r\n<html>\r\n<head><title>400 No required "
                        b"SSL certificate was sent</title></head>\r\n")
A_400_OF_ITS_OWN = (b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 18\r\n"
                    b"Connection: close\r\n\r\nmissing SAMLRequest")


def _h2_frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


# nginx over HTTP/2: its SETTINGS, then on stream 1 :status 400 (HPACK static index 12) and the page
NGINX_H2_NO_CERTIFICATE = (_h2_frame(0x04, 0, 0, b"") + _h2_frame(0x01, 0x04, 1, b"\x8c")
                           + _h2_frame(0x00, 0x01, 1, b"<html><head><title>400 No required SSL certificate was "
                                                      b"sent</title></head></html>"))


@pytest.mark.parametrize(("options", "evidence"), [
    pytest.param({"alpn": (b"h2",), "http_answer": NGINX_H2_NO_CERTIFICATE},
                 "an HTTP/2 request without a certificate was answered 400 (the certificate missing)",
                 id="nginx-verify-client-on-http2"),
    pytest.param({"require_certificate": True, "max_version": SSL.TLS1_2_VERSION},
                 "the handshake was aborted after the certificate request", id="apache-require-tls1.2"),
    pytest.param({"require_certificate": True},
                 "the server ended the connection after the handshake (tlsv13 alert certificate required)",
                 id="apache-require-tls1.3"),
    pytest.param({"http_answer": NGINX_NO_CERTIFICATE},
                 "an HTTP request without a certificate was answered 'HTTP/1.1 400 Bad Request'",
                 id="nginx-verify-client-on"),
    pytest.param({"http_answer": NGINX_NO_CERTIFICATE.replace(b"400 Bad Request", b"496 SSL Certificate Required")},
                 "an HTTP request without a certificate was answered 'HTTP/1.1 496 SSL Certificate Required'",
                 id="status-496"),
])
@pytest.mark.parametrize(("saml", "status"), [([], "warn"), (["kommun-c"], "fail")],
                         ids=["certificate-municipalities-only", "a-saml-municipality"])
def test_an_endpoint_that_requires_a_certificate_is_found(settings: Settings, serve,  # type: ignore[no-untyped-def]
                                                          options: dict[str, Any], evidence: str, saml: list[str],
                                                          status: str) -> None:
    """A proxy that requires a client certificate (Apache ``SSLVerifyClient require``, nginx ``ssl_verify_client
    on``) still advertises the CA list, so every other check passes; but users without a card (a municipality's own
    IdP, the discovery page, a card not in the reader) are refused before the broker answers."""
    found = probed(serve(client_cas=cas(settings, "kommun-a"), **options))

    result = endpoint_section(found, known(settings), WARN_BYTES, without_card=without_card(saml))

    check = only(result, "endpoint.certificate_required")
    assert (check.status, check.title) == (status, "a client certificate is required")
    assert evidence in check.evidence
    assert ("the users of kommun-c" in check.evidence) == bool(saml)
    assert check.fix is not None
    assert "optional_no_ca" in check.fix
    assert advertised_check(login(settings, "kommun-a"), found).status == "pass"


@pytest.mark.parametrize("options", [
    pytest.param({}, id="optional"),
    pytest.param({"max_version": SSL.TLS1_2_VERSION}, id="optional-tls1.2"),
    pytest.param({"alpn": (b"h2",)}, id="optional-http2"),
    pytest.param({"alpn": (b"h2",), "http_answer": _h2_frame(0x04, 0, 0, b"") + _h2_frame(0x01, 0x05, 1, b"\x88")},
                 id="http2-answers-200"),
    pytest.param({"http_answer": A_400_OF_ITS_OWN}, id="a-400-for-another-reason"),
    pytest.param({"http_answer": b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"}, id="answers-200"),
])
def test_an_endpoint_that_goes_on_without_a_certificate_is_not_called_requiring(settings: Settings, serve,  # type: ignore[no-untyped-def]
                                                                               options: dict[str, Any]) -> None:
    found = probed(serve(client_cas=cas(settings, "kommun-a"), **options))

    assert found.probe is not None
    assert found.probe.required is None
    assert statuses(endpoint_checks(settings, found), "endpoint.certificate_required") == []


def test_readiness_fails_an_endpoint_requiring_a_certificate_when_a_municipality_logs_in_through_saml(
        settings: Settings, serve) -> None:  # type: ignore[no-untyped-def]
    """The example configuration has Kommun C, whose users log in through its own IdP: they have no card."""
    assert settings.municipalities["kommun-c"].config.saml is not None
    endpoint = serve(client_cas=cas(settings, "kommun-a"), http_answer=NGINX_NO_CERTIFICATE)

    report = readiness(settings, municipalities=["kommun-a"], endpoints=(endpoint.url,))

    (found,) = [s for s in report.endpoints if s.id == endpoint.url]
    check = only(found, "endpoint.certificate_required")
    assert check.status == "fail"
    assert "kommun-c" in check.evidence
    assert report.result == "fail"


def test_tls12_ca_list_is_read(settings: Settings, serve) -> None:  # type: ignore[no-untyped-def]
    found = probed(serve(client_cas=cas(settings, "kommun-b"), max_version=SSL.TLS1_2_VERSION))

    result = endpoint_checks(settings, found)
    assert only(result, "endpoint.handshake").evidence.startswith("TLSv1.2")
    assert advertised_check(login(settings, "kommun-b"), found).status == "pass"
    assert advertised_check(login(settings, "kommun-a"), found).status == "fail"


# --- no handshake -------------------------------------------------------------------------------------------


def test_unreachable_endpoint_fails(settings: Settings) -> None:
    url = closed_port_https_url().rstrip("/")
    found = probe(url, TIMEOUT)

    result = endpoint_checks(settings, found)
    assert [(c.id, c.status) for c in result.checks] == [("endpoint.handshake", "fail")]
    check = result.checks[0]
    assert check.subject == url
    assert "ConnectionRefusedError" in check.evidence
    adv = advertised_check(login(settings, "kommun-a"), found)
    assert (adv.id, adv.status, adv.title) == ("endpoint.advertises", "fail", "endpoint not reachable")


def test_the_login_host_is_resolved_within_the_timeout(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """readiness.timeout covers the login host's resolution, before any handshake: a resolver waiting on an
    unanswering DNS server held `broker readiness` for its own timeouts (a real delay in ``socket.getaddrinfo``)."""
    resolve_slowly(monkeypatch, "login.slow-resolver.test", 3)
    url = closed_port_https_url().replace("127.0.0.1", "login.slow-resolver.test").rstrip("/")
    started = time.monotonic()
    found = probe(url, 1.0)
    assert time.monotonic() - started < 2.0
    assert found.probe is None
    assert found.error == "ResolutionTimeout: name resolution of login.slow-resolver.test not complete within 1 s"
    assert [(c.id, c.status) for c in endpoint_checks(settings, found).checks] == [("endpoint.handshake", "fail")]


@pytest.mark.parametrize("url", ["https://127.0.0.1:99999", "https://a:b:c", "https://[[x]"])
def test_an_endpoint_url_without_a_usable_address_fails_and_the_run_goes_on(settings: Settings, url: str) -> None:
    # `broker readiness --endpoint URL` takes what the operator types; a port past 65535 crashed the whole run
    found = probe(url, TIMEOUT)
    assert found.probe is None
    assert found.error is not None
    assert found.error.startswith("ValueError")
    assert [(c.id, c.status) for c in endpoint_checks(settings, found).checks] == [("endpoint.handshake", "fail")]


@pytest.mark.parametrize("url", [
    pytest.param("localhost:8443", id="host-and-port-without-a-scheme"),
    pytest.param("login.example.se", id="a-host-name-alone"),
    pytest.param("http://127.0.0.1:8443", id="plain-http"),
])
def test_an_endpoint_that_is_no_https_url_is_named_so_not_a_dns_problem(settings: Settings, url: str) -> None:
    """What the operator typed is no https:// URL: without a scheme urlsplit sees no host at all, and the run said
    "gaierror: Name or service not known" with the fix "Check DNS"; an http:// URL was probed with TLS on port 443.
    The evidence says what was expected, and nothing is probed."""
    found = probe(url, TIMEOUT, resolve=lambda host, port: pytest.fail(f"{url} resolved as {host}:{port}"))

    assert (found.probe, found.addresses) == (None, ())
    assert found.error == f"ValueError: expected an https:// URL such as https://login.region.se, got {url!r}"
    assert [(c.id, c.status) for c in endpoint_checks(settings, found).checks] == [("endpoint.handshake", "fail")]


def test_plain_http_server_gives_no_handshake(settings: Settings) -> None:
    with FileServer() as plain:
        found = probe(plain.base_url.replace("http://", "https://").rstrip("/"), TIMEOUT)

    assert found.probe is None
    assert [(c.id, c.status) for c in endpoint_checks(settings, found).checks] == [("endpoint.handshake", "fail")]


def test_silent_server_times_out(settings: Settings, serve) -> None:  # type: ignore[no-untyped-def]
    found = probe(serve(silent=True).url, 0.5)

    assert found.probe is None
    assert [(c.id, c.status) for c in endpoint_checks(settings, found).checks] == [("endpoint.handshake", "fail")]


# --- through the runner: readiness.endpoints and --endpoint ---------------------------------------------------


def test_runner_probes_configured_and_extra_endpoints(config_dir: Path, serve, identity: ServerIdentity,  # type: ignore[no-untyped-def]
                                                      tmp_path: Path) -> None:
    """readiness.endpoints lists the good endpoint; an extra one (``--endpoint``) advertises nothing. The login
    page's CA is given with --ca-file, so its chain verifies."""
    settings0 = load(config_dir)
    good = serve(client_cas=cas(settings0, "kommun-a"))
    bare = serve(request_certificate=False, alpn=(b"h2",))
    set_readiness(config_dir, endpoints=[good.url])
    settings = load(config_dir)
    (tmp_path / "ca.pem").write_bytes(identity.ca_pem)

    report = readiness(settings, municipalities=["kommun-a"], endpoints=(bare.url, good.url),
                       ca_file=tmp_path / "ca.pem")

    assert [s.id for s in report.endpoints] == [good.url, bare.url]  # each endpoint once
    assert [(c.id, c.status) for c in report.endpoints[0].checks] == [
        ("endpoint.handshake", "pass"), ("endpoint.server_certificate", "pass"), ("endpoint.server_chain", "pass"),
        ("endpoint.ca_list", "pass")]
    assert statuses(report.endpoints[1], "endpoint.http2_per_path") == ["fail"]
    kommun_a = section(report, "kommun-a")
    assert [(c.status, c.subject) for c in kommun_a.checks if c.id == "endpoint.advertises"] == [
        ("pass", good.url), ("fail", bare.url)]


def test_an_extra_endpoint_written_with_a_trailing_slash_is_the_configured_one(  # type: ignore[no-untyped-def]
        config_dir: Path, serve) -> None:
    """readiness.endpoints keeps a URL without its trailing slash; the same URL given as `--endpoint URL/` is the
    same endpoint, probed and judged once, not a second section with a second endpoint.advertises."""
    good = serve(client_cas=cas(load(config_dir), "kommun-a"))
    set_readiness(config_dir, endpoints=[good.url + "/"])

    report = readiness(load(config_dir), municipalities=["kommun-a"], endpoints=(good.url + "/",))

    assert [s.id for s in report.endpoints] == [good.url]
    assert statuses(section(report, "kommun-a"), "endpoint.advertises") == ["pass"]


def test_runner_ca_list_size_from_the_configuration(config_dir: Path, serve) -> None:  # type: ignore[no-untyped-def]
    """ca_list_warn_bytes: 1024 and 20 CA names of about 60 bytes each on the wire."""
    strangers = [root_ca(f"Elsewhere Regional Person Certificates CA {i:02}", NOW,
                         organization="Elsewhere").certificate for i in range(20)]
    endpoint = serve(client_cas=strangers)
    set_readiness(config_dir, endpoints=[endpoint.url], ca_list_warn_bytes=1024)

    report = readiness(load(config_dir), municipalities=["kommun-a"])

    (result,) = report.endpoints
    assert result.details["ca_list_bytes"] > 1024
    assert statuses(result, "endpoint.ca_list_size") == ["warn"]
    assert statuses(result, "endpoint.ca_list_extra") == ["warn"]
    assert statuses(section(report, "kommun-a"), "endpoint.advertises") == ["fail"]


def test_no_endpoint_configured_warns(config_dir: Path) -> None:
    set_readiness(config_dir)

    report = readiness(load(config_dir), municipalities=["kommun-a"])

    assert report.endpoints == ()
    check = only(section(report, "kommun-a"), "endpoint.advertises")
    assert (check.status, check.title) == ("warn", "advertised CA list not checked")


def test_endpoints_are_not_probed_offline(config_dir: Path, serve) -> None:  # type: ignore[no-untyped-def]
    endpoint = serve(client_cas=[])
    set_readiness(config_dir, endpoints=[endpoint.url])

    report = readiness(load(config_dir), municipalities=["kommun-a"], network=False)

    assert report.endpoints == ()
    assert endpoint.handshakes == []


# --- a host name with several addresses (load balancer nodes, DNS round robin) ----------------------------------


@pytest.fixture
def nodes(serve):  # type: ignore[no-untyped-def]
    """``nodes(options_1, options_2, ...)``: one TLS endpoint per loopback address 127.0.0.N, all on one port, and
    the URL ``https://localhost:<port>`` with a resolver that gives those addresses in order (as DNS gives a
    load-balanced login host's nodes); an options value None leaves that address without a server."""
    def start(*options: dict[str, Any] | None) -> tuple[str, Any, list[TlsEndpoint]]:
        first = serve(**(options[0] or {}))
        port = first.port
        started = [first]
        for i, more in enumerate(options[1:], start=2):
            if more is not None:
                started.append(serve(host=f"127.0.0.{i}", port=port, **more))
        addresses = [f"127.0.0.{i}" for i in range(1, len(options) + 1)]
        if options[0] is None:
            first.stop()
        return (f"https://localhost:{port}", lambda host, _port, _timeout: addresses if host == "localhost" else [],
                started)

    return start


def test_every_address_of_the_login_host_is_probed(settings: Settings, nodes) -> None:  # type: ignore[no-untyped-def]
    url, resolve, endpoints = nodes(*[{"client_cas": cas(settings, "kommun-a")}] * 2)

    found = probe(url, TIMEOUT, resolve)
    result = endpoint_section(found, known(settings), WARN_BYTES, now=NOW)

    assert [a.address for a in found.addresses] == ["127.0.0.1", "127.0.0.2"]
    assert all(len(e.recorded(1)) == 1 for e in endpoints)  # both nodes saw a handshake
    check = only(result, "endpoint.addresses")
    assert (check.status, check.title) == ("pass", "every address answers alike")
    assert check.evidence == "2 addresses: 127.0.0.1, 127.0.0.2"
    assert [a["address"] for a in result.details["addresses"]] == ["127.0.0.1", "127.0.0.2"]
    assert advertised_check(login(settings, "kommun-a"), found).status == "pass"


def test_a_node_with_an_old_ca_bundle_fails_the_municipality_it_leaves_out(  # type: ignore[no-untyped-def]
        settings: Settings, nodes) -> None:
    """The go-live failure on one node of two: the first node is right, so probing the first address that
    answers passed while every user routed to the second was never offered their card."""
    url, resolve, _ = nodes({"client_cas": [*cas(settings, "kommun-a"), *cas(settings, "kommun-b")]},
                            {"client_cas": cas(settings, "kommun-b")})

    found = probe(url, TIMEOUT, resolve)
    result = endpoint_section(found, known(settings), WARN_BYTES, now=NOW)

    addresses = only(result, "endpoint.addresses")
    assert (addresses.status, addresses.title) == ("fail", "the addresses answer differently")
    assert "only 127.0.0.1 advertises CN=Kommun A Demo" in addresses.evidence
    check = advertised_check(login(settings, "kommun-a"), found)
    assert (check.status, check.title) == ("fail", "certificate will not be offered at some addresses")
    assert check.evidence.startswith(f"at 127.0.0.1: {url} advertises ")
    assert f"; at 127.0.0.2: {url} advertises neither the root" in check.evidence
    assert advertised_check(login(settings, "kommun-b"), found).status == "pass"  # alike everywhere: as it is
    assert "at 127.0.0.2" not in advertised_check(login(settings, "kommun-b"), found).evidence


def test_a_node_with_an_expired_server_certificate_is_named(settings: Settings, nodes) -> None:  # type: ignore[no-untyped-def]
    expired = _identity(days_left=-2, valid_from_days=-400)
    url, resolve, _ = nodes({"client_cas": cas(settings, "kommun-a")},
                            {"client_cas": cas(settings, "kommun-a"), "identity": expired})

    result = endpoint_section(probe(url, TIMEOUT, resolve), known(settings), WARN_BYTES, now=NOW,
                              window=dt.timedelta(days=30))

    check = only(result, "endpoint.server_certificate")
    assert (check.status, check.title) == ("fail", "server certificate expired at some addresses")
    assert "at 127.0.0.1: " in check.evidence
    assert "; at 127.0.0.2: " in check.evidence
    assert check.expires == expired.chain[0].not_valid_after_utc  # the earliest of the nodes' certificates
    addresses = only(result, "endpoint.addresses")  # the same cards offered: the certificate check says the rest
    assert addresses.status == "pass"
    assert "; they differ in server certificate (127.0.0.1: " in addresses.evidence
    assert only(result, "endpoint.handshake").status == "pass"


@pytest.mark.parametrize("requiring", [1, 2], ids=["first-node-requires", "second-node-requires"])
def test_a_node_that_requires_a_certificate_is_named(settings: Settings, nodes,  # type: ignore[no-untyped-def]
                                                     requiring: int) -> None:
    """One node left with nginx ``ssl_verify_client on`` behind the login host name, the same CA list, certificate
    and protocols as the others: the users it happens to serve without a card get nginx's 400."""
    options = [{"client_cas": cas(settings, "kommun-a")} for _ in range(2)]
    options[requiring - 1]["http_answer"] = NGINX_NO_CERTIFICATE
    url, resolve, _ = nodes(*options)

    result = endpoint_section(probe(url, TIMEOUT, resolve), known(settings), WARN_BYTES, now=NOW,
                              without_card=without_card(["kommun-c"]))

    check = only(result, "endpoint.certificate_required")
    assert (check.status, check.title) == ("fail", "a client certificate is required at some addresses")
    assert check.evidence.startswith(f"at 127.0.0.{requiring}: {url}: an HTTP request without a certificate")
    assert check.evidence.endswith(f" (not at 127.0.0.{3 - requiring})")
    addresses = only(result, "endpoint.addresses")  # the same cards offered: the certificate check says the rest
    assert addresses.status == "pass"
    assert "; they differ in whether a certificate is required (127.0.0.1: " in addresses.evidence


def test_an_address_without_a_server_warns_and_the_others_decide(settings: Settings, nodes) -> None:  # type: ignore[no-untyped-def]
    a = {"client_cas": cas(settings, "kommun-a")}
    url, resolve, _ = nodes(a, None, a)

    found = probe(url, TIMEOUT, resolve)
    result = endpoint_section(found, known(settings), WARN_BYTES, now=NOW)

    check = only(result, "endpoint.addresses")
    assert (check.status, check.title) == ("warn", "some addresses give no handshake")
    assert check.evidence.startswith("127.0.0.2: ConnectionRefusedError")
    assert check.evidence.endswith("(the other 2 answer alike)")
    assert [a["error"] is None for a in result.details["addresses"]] == [True, False, True]
    assert advertised_check(login(settings, "kommun-a"), found).status == "pass"


def test_no_address_answering_is_no_handshake(settings: Settings, nodes) -> None:  # type: ignore[no-untyped-def]
    url, resolve, _ = nodes(None, None)

    found = probe(url, TIMEOUT, resolve)
    result = endpoint_checks(settings, found)

    assert found.probe is None
    assert [(c.id, c.status) for c in result.checks] == [("endpoint.handshake", "fail")]
    assert found.error is not None
    assert found.error.startswith("127.0.0.1: ConnectionRefusedError")
    assert "; 127.0.0.2: ConnectionRefusedError" in found.error
    assert advertised_check(login(settings, "kommun-a"), found).title == "endpoint not reachable"


def test_a_host_name_without_addresses_is_no_handshake(settings: Settings) -> None:
    found = probe("https://login.invalid:8443", TIMEOUT, lambda _host, _port, _timeout: [])

    assert (found.probe, found.error) == (None, "OSError: login.invalid resolves to no address")
    assert found.addresses == ()


def test_the_host_name_is_sent_as_sni_to_each_address(settings: Settings, nodes) -> None:  # type: ignore[no-untyped-def]
    url, resolve, endpoints = nodes(*[{"client_cas": cas(settings, "kommun-a")}] * 2)

    probe(url, TIMEOUT, resolve)

    for e in endpoints:
        e.recorded(1)
    assert [e.server_names for e in endpoints] == [["localhost"], ["localhost"]]


# --- the chain the login page sends ---------------------------------------------------------------------------


def _two_level_identity(*, send_intermediate: bool) -> tuple[ServerIdentity, x509.Certificate]:
    """A login page certificate under an intermediate of a private root; the server sends the intermediate or
    not (the classic incomplete chain). Returns the identity and the root."""
    root = CertificateAuthority.root("Region TLS Root", NOW)
    issuing = root.subordinate("Region TLS Issuing CA")
    leaf = issuing.issue(LeafProfile(common_name="login", eku=(SERVER_AUTH,), san_dns="localhost",
                                     san_ip="127.0.0.1"))
    chain = (leaf.certificate, issuing.certificate) if send_intermediate else (leaf.certificate,)
    return ServerIdentity(root.certificate, chain, leaf.key_pem()), root.certificate


def chain_check(settings: Settings, identity: ServerIdentity, roots: Sequence[x509.Certificate]) -> Any:
    with TlsEndpoint(identity, client_cas=cas(settings, "kommun-a")) as endpoint:
        found = probe(endpoint.url, TIMEOUT)
    return only(endpoint_section(found, known(settings), WARN_BYTES, now=NOW, roots=roots), "endpoint.server_chain")


def test_a_chain_to_a_trusted_root_passes(settings: Settings) -> None:
    identity, root = _two_level_identity(send_intermediate=True)

    check = chain_check(settings, identity, [root])

    assert (check.status, check.title) == ("pass", "server certificate chain verifies")
    assert check.evidence == "login -> Region TLS Issuing CA -> Region TLS Root"


def test_a_missing_intermediate_warns_even_when_the_root_is_trusted(settings: Settings) -> None:
    """Chrome on Windows fetches the intermediate and shows the page; Firefox and other clients do not."""
    identity, root = _two_level_identity(send_intermediate=False)

    check = chain_check(settings, identity, [root])

    assert (check.status, check.title) == ("warn", "incomplete server certificate chain")
    assert check.evidence.startswith("login is issued by CN=Region TLS Issuing CA")
    assert "ssl_certificate" in (check.fix or "")


@pytest.mark.parametrize(("days_left", "at", "status", "title"), [
    (-10, None, "fail", "intermediate of the server certificate expired"),
    (10, None, "warn", "intermediate of the server certificate expires soon"),
    (40, NOW + 60 * DAY, "fail", "intermediate of the server certificate expired"),
    (400, None, "pass", "server certificate chain verifies"),
], ids=["expired", "expiring-within-the-window", "expired-by-go-live", "valid"])
def test_an_intermediate_of_the_login_pages_chain_is_judged_for_its_validity(
        settings: Settings, days_left: int, at: dt.datetime | None, status: str, title: str) -> None:
    """Browsers refuse the login page once a CA of its chain has expired, however long the page's own certificate
    is valid: said so, not "not trusted by this host, try --ca-file"."""
    root = CertificateAuthority.root("Region TLS Root", NOW)
    start = NOW - 400 * DAY
    issuing = root.subordinate("Region TLS Issuing CA", valid_from=start,
                               valid_days=(NOW + days_left * DAY - start).days)
    leaf = issuing.issue(LeafProfile(common_name="login", eku=(SERVER_AUTH,), san_dns="localhost",
                                     san_ip="127.0.0.1", valid_until=NOW + 700 * DAY))
    identity = ServerIdentity(root.certificate, (leaf.certificate, issuing.certificate), leaf.key_pem())
    with TlsEndpoint(identity, client_cas=cas(settings, "kommun-a")) as endpoint:
        found = probe(endpoint.url, TIMEOUT)

    section = endpoint_section(found, known(settings), WARN_BYTES, now=at or NOW, roots=[root.certificate])

    check = only(section, "endpoint.server_chain")
    assert (check.status, check.title) == (status, title)
    if status != "pass":
        assert check.evidence.startswith("Region TLS Issuing CA ")
        assert "ssl_certificate" in (check.fix or "")
        assert check.expires == issuing.certificate.not_valid_after_utc


def test_a_root_this_host_does_not_trust_warns(settings: Settings, identity: ServerIdentity) -> None:
    """The server sends its root too (as many do): the evidence names that root, the CA to give with --ca-file
    when the users' PCs trust it."""
    check = chain_check(settings, identity, server_roots())  # the system's roots: not the loopback CA

    assert (check.status, check.title) == ("warn", "server certificate not trusted by this host")
    assert check.evidence == ("127.0.0.1: the chain the server sends ends at the root Loopback TLS CA "
                              "(CN=Loopback TLS CA,C=SE), which this host does not trust")
    assert "--ca-file" in (check.fix or "")


def test_the_ca_file_adds_a_root(settings: Settings, identity: ServerIdentity, tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_bytes(identity.ca_pem)
    roots = server_roots(tmp_path / "ca.pem")

    assert identity.ca in roots
    assert len(roots) > 1  # the system's roots too
    assert chain_check(settings, identity, roots).status == "pass"


def test_an_expired_page_certificate_is_not_reported_again_as_untrusted(settings: Settings) -> None:
    expired = _identity(days_left=-2, valid_from_days=-400)

    check = chain_check(settings, expired, [])

    assert (check.status, check.title) == ("pass", "server sends its chain")  # endpoint.server_certificate FAILs


def test_an_address_family_nobody_serves_is_passed_over(settings: Settings, serve) -> None:  # type: ignore[no-untyped-def]
    """localhost resolving to ::1 and 127.0.0.1 with the server on IPv4 only (an AAAA record of a host that
    listens on IPv4): browsers go on to IPv4 at once (RFC 8305), so it is a note, not a warning."""
    endpoint = serve(client_cas=cas(settings, "kommun-a"))
    url = f"https://localhost:{endpoint.port}"

    found = probe(url, TIMEOUT, lambda _host, _port, _timeout: ["::1", "127.0.0.1"])
    check = only(endpoint_section(found, known(settings), WARN_BYTES), "endpoint.addresses")

    assert (check.status, check.title) == ("pass", "every address answers alike")
    assert check.evidence == ("1 address: 127.0.0.1; ::1 refuse connections or cannot be reached: browsers go on "
                              "to the other addresses at once (RFC 8305)")


def test_a_silent_address_warns_even_in_a_family_nobody_else_serves(settings: Settings, serve) -> None:  # type: ignore[no-untyped-def]
    """An address that takes the connection and never answers makes the browsers that reach it wait."""
    answering = serve(client_cas=cas(settings, "kommun-a"))
    serve(silent=True, host="127.0.0.2", port=answering.port)

    found = probe(f"https://localhost:{answering.port}", 0.5, lambda _host, _port, _timeout: ["127.0.0.2", "127.0.0.1"])
    check = only(endpoint_section(found, known(settings), WARN_BYTES), "endpoint.addresses")

    assert (check.status, check.title) == ("warn", "some addresses give no handshake")
    assert check.evidence.startswith("127.0.0.2: TimeoutError")


def _probe_of(names: Sequence[x509.Name], *, alpn: str = "http/1.1", version: str = "TLSv1.3") -> EndpointProbe:
    return EndpointProbe(tuple(names), True, alpn, version, ())


@pytest.mark.parametrize(("second", "differs"), [
    (lambda a, b: _probe_of([b, a]), None),
    (lambda a, b: _probe_of([a, b], alpn="h2"), "ALPN"),
    (lambda a, b: _probe_of([a, b], version="TLSv1.2"), "TLS version"),
], ids=["same-cas-another-order", "http2-on-one-node", "tls12-on-one-node"])
def test_nodes_offering_the_same_cards_answer_alike(second: Any, differs: str | None) -> None:
    """The CA list is a set of acceptable CAs (RFC 8446 §4.2.4), and HTTP/2 or the TLS version on one node
    changes no card's offer: no FAIL; what differs is said."""
    a = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Kommun A Person CA")])
    b = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Kommun B Person CA")])
    first = _probe_of([a, b])
    found = ProbedEndpoint("https://login.example.se", first, None,
                           (AddressProbe("192.0.2.10", first, None), AddressProbe("192.0.2.11", second(a, b), None)))

    check = only(endpoint_section(found, {a.public_bytes(): a, b.public_bytes(): b}, WARN_BYTES), "endpoint.addresses")

    assert (check.status, check.title) == ("pass", "every address answers alike")
    if differs is not None:
        assert f"; they differ in {differs} (192.0.2.10: " in check.evidence


def test_server_roots_are_the_store_openssl_resolves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    identity: ServerIdentity) -> None:
    """SSL_CERT_FILE replaces the built-in bundle (it is not added to it), and the hashed directory counts."""
    bundle = tmp_path / "only.pem"
    bundle.write_bytes(identity.ca_pem)
    hashed = tmp_path / "certs"
    hashed.mkdir()
    other = CertificateAuthority.root("Hashed Directory Root", NOW).certificate
    (hashed / "0badc0de.0").write_bytes(other.public_bytes(serialization.Encoding.PEM))
    (hashed / "README").write_text("not a certificate")
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    monkeypatch.setenv("SSL_CERT_DIR", str(hashed))

    assert server_roots() == (identity.ca, other)


def test_server_roots_pass_over_a_certificate_of_an_unknown_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    identity: ServerIdentity) -> None:
    """A file of the store holding a certificate whose version is no X.509 version (cryptography raises InvalidVersion,
    no ValueError) is passed over like any other unreadable one, not the end of the readiness run."""
    bundle = tmp_path / "only.pem"
    bundle.write_bytes(identity.ca_pem)
    hashed = tmp_path / "certs"
    hashed.mkdir()
    der = CertificateAuthority.root("Odd Root", NOW).certificate.public_bytes(serialization.Encoding.DER)
    at = der.index(b"\xa0\x03\x02\x01\x02")  # version v3, the first field of tbsCertificate
    odd = der[:at] + b"\xa0\x03\x02\x01\x05" + der[at + 5:]
    body = base64.encodebytes(odd).decode()
    (hashed / "0badc0de.0").write_text(f"-----BEGIN CERTIFICATE-----\n{body}-----END CERTIFICATE-----\n")
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    monkeypatch.setenv("SSL_CERT_DIR", str(hashed))

    assert server_roots() == (identity.ca,)


def test_without_any_roots_the_chain_check_says_so(settings: Settings, identity: ServerIdentity) -> None:
    check = chain_check(settings, identity, [])
    assert (check.status, check.title) == ("warn", "no roots to judge the server certificate by")


# --- the host the service providers send users to ------------------------------------------------------------------


@pytest.mark.parametrize(("probed", "status"), [
    (["https://login.region.se"], "pass"),
    (["https://LOGIN.region.se.:443/"], "pass"),
    (["https://other.region.se", "https://login.region.se/saml"], "pass"),
    (["https://login-test.region.se"], "warn"),
    (["https://login.region.se:8443"], "warn"),
], ids=["same", "same-origin-written-otherwise", "among-others", "another-host", "another-port"])
def test_the_login_host_must_be_among_the_endpoints(probed: list[str], status: str) -> None:
    check = login_host_check("https://login.region.se/", probed)
    assert (check.id, check.status) == ("endpoint.login_host", status)


@pytest.mark.parametrize(("base_url", "probed"), [
    ("https://login.xn--kommun--kxa.se", "https://login.kommun-å.se"),
    ("https://login.xn--kommun--kxa.se", "https://LOGIN.KOMMUN-Å.se"),
    ("https://login.xn--kommun--kxa.se", "https://login.xn--kommun--kxa.se"),
], ids=["u-label-probed", "u-label-in-capitals-probed", "a-label-probed"])
def test_the_login_host_with_national_characters_is_one_host_in_either_form(base_url: str, probed: str) -> None:
    """idp.base_url holds a host name with national characters as its A-label (the configuration takes ASCII
    only); `--endpoint` may give the same host as users read it: one host (RFC 5890 §2.3.2.1)."""
    check = login_host_check(base_url, [probed])
    assert (check.id, check.status) == ("endpoint.login_host", "pass")


def test_a_run_over_another_host_than_the_login_host_warns(config_dir: Path, serve) -> None:  # type: ignore[no-untyped-def]
    """The operator names a test host in readiness.endpoints; the SPs send users to idp.base_url."""
    endpoint = serve(client_cas=cas(load(config_dir), "kommun-a"))
    set_readiness(config_dir, endpoints=[endpoint.url])

    report = readiness(load(config_dir), municipalities=["kommun-a"])

    check = only(report.broker, "endpoint.login_host")
    assert (check.status, check.title) == ("warn", "the login host is not probed")
    assert endpoint.url in check.evidence


def test_an_issuing_ca_covered_beside_another_hierarchys_root_still_needs_its_own_root(  # type: ignore[no-untyped-def]
        config_dir: Path, serve) -> None:
    """A change of CA generation: the old issuing CA named with the new root only. The old cards are offered,
    but a proxy verifying with these CAs cannot reach the old root: WARN, naming it."""
    cl, (_, old_issuing, new_root, _) = two_hierarchies(config_dir)

    check = advertised_check(cl, probed(serve(client_cas=[old_issuing, new_root])))

    assert check.status == "warn"
    assert "Kommun A Root CA v1" in check.evidence
