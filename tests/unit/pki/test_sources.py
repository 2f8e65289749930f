"""Where the client certificate comes from: the broker's TLS or a trusted proxy's header (broker.pki.sources)."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import replace
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from broker.config.schema import ProxyConfig
from broker.config.values import IpNetwork
from broker.errors import CertificateRejected, ProxyHeaderRejected
from broker.pki.proxy_headers import HeaderLimits, ProxyFormat, decode
from broker.pki.sources import CertificateSourceResolver
from tests.factories.pki import Hierarchy
from tests.factories.pki_cases import NOW
from tests.factories.proxy_headers import envoy_element, headers_for

MAX = 16384


def parse_nginx_escaped_pem(value: str, max_bytes: int) -> x509.Certificate | None:
    """The nginx format's leaf, as the resolver decodes it from a trusted proxy."""
    found = decode("nginx_escaped_pem", value, None, HeaderLimits(max_bytes))
    return found.certificate if found is not None else None
PROXY = ProxyConfig(trusted_networks=(IpNetwork(ipaddress.ip_network("10.20.0.0/16")),
                                      IpNetwork(ipaddress.ip_network("2001:db8::/32"))))


@pytest.fixture(scope="module")
def cert() -> x509.Certificate:
    return Hierarchy.build(NOW).leaf().certificate


@pytest.fixture(scope="module")
def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def nginx_escaped(pem: str) -> str:
    """What nginx's $ssl_client_escaped_cert holds: the PEM, URL-encoded."""
    return quote(pem, safe="")


# --- parse_nginx_escaped_pem ---


def test_escaped_pem_parsed(cert: x509.Certificate, pem: str) -> None:
    value = nginx_escaped(pem)
    assert value.startswith("-----BEGIN%20CERTIFICATE-----%0A")
    assert parse_nginx_escaped_pem(value, MAX) == cert


def test_unescaped_pem_parsed(cert: x509.Certificate, pem: str) -> None:
    assert parse_nginx_escaped_pem(pem, MAX) == cert


@pytest.mark.parametrize("value", [
    pytest.param("", id="empty"),
    pytest.param("-", id="dash"),
    pytest.param("(null)", id="null"),
])
def test_no_certificate_values(value: str) -> None:
    assert parse_nginx_escaped_pem(value, MAX) is None


def _garbled(pem: str) -> str:
    lines = pem.splitlines()
    lines[3] = "!!!!" + lines[3][4:]
    return "\n".join(lines)


@pytest.mark.parametrize("make_value", [
    pytest.param(lambda pem: nginx_escaped(pem + pem), id="two-pem-blocks"),
    pytest.param(lambda pem: "garbage", id="garbage"),
    pytest.param(lambda pem: nginx_escaped("not a certificate at all"), id="escaped-garbage"),
    pytest.param(lambda pem: nginx_escaped(_garbled(pem)), id="pem-with-broken-base64"),
    pytest.param(lambda pem: nginx_escaped(pem.replace("-----END CERTIFICATE-----", "")), id="pem-without-end"),
    pytest.param(lambda pem: nginx_escaped(pem.replace("CERTIFICATE", "PRIVATE KEY")), id="pem-of-another-type"),
    pytest.param(lambda pem: nginx_escaped(pem).replace("%0A", "%0Aé", 1), id="non-ascii-character"),
    # %FF%FE decodes to bytes that are not UTF-8: a malformed header, not an internal error.
    pytest.param(lambda pem: "%FF%FE" + nginx_escaped(pem), id="percent-escapes-not-utf8"),
])
def test_malformed_header(pem: str, make_value: Callable[[str], str]) -> None:
    value = make_value(pem)
    with pytest.raises(ProxyHeaderRejected) as caught:
        parse_nginx_escaped_pem(value, MAX)
    assert caught.value.reason == "proxy_header_malformed"


def test_header_at_size_limit_accepted(cert: x509.Certificate, pem: str) -> None:
    value = nginx_escaped(pem)
    assert parse_nginx_escaped_pem(value, len(value)) == cert


@pytest.mark.parametrize("make_value", [
    pytest.param(nginx_escaped, id="one-byte-over-limit"),
    pytest.param(lambda pem: "A" * 100_000, id="garbage-far-over-limit"),
])
def test_oversized_header(pem: str, make_value: Callable[[str], str]) -> None:
    value = make_value(pem)
    limit = len(nginx_escaped(pem)) - 1
    with pytest.raises(ProxyHeaderRejected) as caught:
        parse_nginx_escaped_pem(value, limit)
    assert caught.value.reason == "proxy_header_too_large"


# --- CertificateSourceResolver ---


@pytest.mark.parametrize("remote", [
    pytest.param("10.20.3.4", id="ipv4-in-trusted-network"),
    pytest.param("::ffff:10.20.3.4", id="ipv4-mapped-ipv6"),
    pytest.param("::ffff:a14:304", id="ipv4-mapped-ipv6-in-hex"),
    pytest.param("2001:db8::7", id="ipv6-in-trusted-network"),
])
def test_header_from_trusted_proxy_used(cert: x509.Certificate, pem: str, remote: str) -> None:
    presented = CertificateSourceResolver(PROXY).resolve(remote, nginx_escaped(pem), None)
    assert (presented.certificate, presented.via, presented.untrusted_header) == (cert, "proxy", False)


@pytest.mark.parametrize("remote", [
    pytest.param("10.21.0.1", id="ipv4-outside-trusted-networks"),
    pytest.param("::ffff:10.21.0.1", id="ipv4-mapped-ipv6-outside"),
    pytest.param("2001:db9::7", id="ipv6-outside-trusted-networks"),
    pytest.param(None, id="no-remote-address"),
    pytest.param("10.20.3.4.evil", id="not-an-address"),
])
def test_header_from_untrusted_address_ignored(pem: str, remote: str | None) -> None:
    presented = CertificateSourceResolver(PROXY).resolve(remote, nginx_escaped(pem), None)
    assert (presented.certificate, presented.via, presented.untrusted_header) == (None, "none", True)


def test_no_network_trusted_by_default(pem: str) -> None:
    resolver = CertificateSourceResolver(ProxyConfig())
    presented = resolver.resolve("127.0.0.1", nginx_escaped(pem), None)
    assert (presented.certificate, presented.via, presented.untrusted_header) == (None, "none", True)
    assert not resolver.is_trusted_proxy("::1")


def test_untrusted_header_does_not_hide_the_tls_certificate(cert: x509.Certificate, pem: str) -> None:
    forged = Hierarchy.build(NOW, "Forger").leaf().certificate.public_bytes(serialization.Encoding.PEM)
    presented = CertificateSourceResolver(PROXY).resolve("192.0.2.1", nginx_escaped(forged.decode()), pem)
    assert (presented.certificate, presented.via, presented.untrusted_header) == (cert, "tls", True)


def test_tls_certificate_without_header(cert: x509.Certificate, pem: str) -> None:
    presented = CertificateSourceResolver(PROXY).resolve("192.0.2.1", None, pem)
    assert (presented.certificate, presented.via, presented.untrusted_header) == (cert, "tls", False)


def test_trusted_proxy_with_empty_header_means_no_certificate() -> None:
    presented = CertificateSourceResolver(PROXY).resolve("10.20.3.4", "", None)
    assert (presented.certificate, presented.via, presented.untrusted_header) == (None, "none", False)


def test_trusted_proxy_with_malformed_header_rejected() -> None:
    with pytest.raises(ProxyHeaderRejected) as caught:
        CertificateSourceResolver(PROXY).resolve("10.20.3.4", "garbage", None)
    assert caught.value.reason == "proxy_header_malformed"


def test_unreadable_tls_certificate_rejected() -> None:
    with pytest.raises(CertificateRejected) as caught:
        CertificateSourceResolver(PROXY).resolve("192.0.2.1", None, "-----BEGIN CERTIFICATE-----\nAAAA\n")
    assert caught.value.reason == "certificate_malformed"


def _duplicate_key_usage(h: Hierarchy) -> bytes:
    """A leaf's DER with its subjectAltName renamed keyUsage: two keyUsage extensions (RFC 5280 §4.2 forbids it),
    which cryptography reports only when the extensions are first read."""
    der = h.leaf(san_dns="anna.example").certificate.public_bytes(serialization.Encoding.DER)
    san, key_usage = b"\x06\x03\x55\x1d\x11", b"\x06\x03\x55\x1d\x0f"
    assert der.count(san) == 1
    return der.replace(san, key_usage)


def test_tls_certificate_with_a_duplicate_extension_is_malformed() -> None:
    cert = x509.load_der_x509_certificate(_duplicate_key_usage(Hierarchy.build(NOW)))
    with pytest.raises(CertificateRejected) as caught:
        CertificateSourceResolver(PROXY).resolve("192.0.2.1", None, cert.public_bytes(serialization.Encoding.PEM)
                                                 .decode())
    assert caught.value.reason == "certificate_malformed"
    assert "DuplicateExtension" in caught.value.detail


def test_proxy_header_certificate_with_a_duplicate_extension_is_malformed() -> None:
    cert = x509.load_der_x509_certificate(_duplicate_key_usage(Hierarchy.build(NOW)))
    with pytest.raises(ProxyHeaderRejected) as caught:
        CertificateSourceResolver(PROXY).resolve("10.20.3.4", nginx_escaped(cert.public_bytes(
            serialization.Encoding.PEM).decode()), None)
    assert caught.value.reason == "proxy_header_malformed"
    assert "DuplicateExtension" in caught.value.detail


def test_decoded_headers_are_kept_per_value_and_refusals_are_not(pem: str) -> None:
    """A repeated header is not decoded again (the same objects come back); a different value is decoded on its
    own; a malformed header and an untrusted sender are refused every time, not only the first."""
    resolver = CertificateSourceResolver(PROXY)
    first = resolver.resolve("10.20.3.4", nginx_escaped(pem), None)
    again = resolver.resolve("10.20.3.9", nginx_escaped(pem), None)
    assert again.certificate is first.certificate
    assert again.via == "proxy"
    other = Hierarchy.build(NOW).leaf().certificate
    other_pem = other.public_bytes(serialization.Encoding.PEM).decode("ascii")
    assert resolver.resolve("10.20.3.4", nginx_escaped(other_pem), None).certificate == other
    for _ in range(2):
        with pytest.raises(ProxyHeaderRejected):
            resolver.resolve("10.20.3.4", nginx_escaped(pem)[:-12], None)
        assert resolver.resolve("192.0.2.1", nginx_escaped(pem), None).via == "none"


def test_tls_certificates_are_kept_per_value_and_refusals_are_not(pem: str) -> None:
    resolver = CertificateSourceResolver(PROXY)
    first = resolver.resolve("192.0.2.1", None, pem)
    assert resolver.resolve("192.0.2.1", None, pem).certificate is first.certificate
    for _ in range(2):
        with pytest.raises(CertificateRejected):
            resolver.resolve("192.0.2.1", None, "-----BEGIN CERTIFICATE-----\nAAAA\n")


@pytest.mark.parametrize(("remote", "forwarded_for", "expected"), [
    pytest.param("10.20.3.4", "198.51.100.7, 203.0.113.9", "203.0.113.9", id="trusted-proxy-last-hop"),
    pytest.param("192.0.2.1", "203.0.113.9", "192.0.2.1", id="untrusted-sender-ignored"),
    pytest.param("10.20.3.4", "unknown", None, id="trusted-proxy-garbage-hop-is-unknown"),
    pytest.param("10.20.3.4", "198.51.100.7, 203.0.113.9:52144", "203.0.113.9", id="ipv4-hop-with-port"),
    pytest.param("10.20.3.4", "[2001:db8::7]:52144", "2001:db8::7", id="bracketed-ipv6-hop-with-port"),
    pytest.param("10.20.3.4", "[2001:db8::7]", "2001:db8::7", id="bracketed-ipv6-hop"),
    pytest.param("10.20.3.4", "2001:db8::7", "2001:db8::7", id="ipv6-hop"),
    pytest.param("10.20.3.4", "198.51.100.7:", None, id="hop-with-empty-port-is-unknown"),
    pytest.param("10.20.3.4", "198.51.100.7:65536", None, id="hop-with-port-out-of-range-is-unknown"),
    pytest.param("10.20.3.4", "198.51.100.7:0", None, id="hop-with-port-0-is-unknown"),
    pytest.param("10.20.3.4", "198.51.100.7:+80", None, id="hop-with-signed-port-is-unknown"),
    pytest.param("10.20.3.4", "example.org:443", None, id="hop-naming-a-host-is-unknown"),
    pytest.param("10.20.3.4", "[198.51.100.7]:80", None, id="bracketed-ipv4-is-unknown"),
    pytest.param("10.20.3.4", "[2001:db8::7]x", None, id="bracketed-ipv6-with-junk-is-unknown"),
    pytest.param("10.20.3.4", "[2001:db8::7", None, id="unclosed-bracket-is-unknown"),
    pytest.param("10.20.3.4", None, None, id="trusted-proxy-without-forwarded-for-is-unknown"),
])
def test_client_address(remote: str, forwarded_for: str | None, expected: str | None) -> None:
    assert CertificateSourceResolver(PROXY).client_address(remote, forwarded_for) == expected


# --- formats and the forwarded chain ---


@pytest.mark.parametrize("fmt", ["nginx_escaped_pem", "haproxy_base64_der", "apache_pem", "rfc9440"])
def test_trusted_proxy_chain_header_fills_the_chain(fmt: ProxyFormat) -> None:
    h = Hierarchy.build(NOW)
    leaf = h.leaf().certificate
    value, chain_value = headers_for(fmt, leaf, (h.issuing.certificate,))
    header = "Client-Cert" if fmt == "rfc9440" else "X-SSL-Client-Cert"
    proxy = replace(PROXY, format=fmt, header=header, chain_header=header + "-Chain")
    presented = CertificateSourceResolver(proxy).resolve("10.20.3.4", value, None, chain_value)
    assert (presented.certificate, presented.via, presented.chain) == (leaf, "proxy", (h.issuing.certificate,))


def test_envoy_chain_travels_in_the_one_header() -> None:
    h = Hierarchy.build(NOW)
    leaf = h.leaf().certificate
    proxy = replace(PROXY, format="envoy_xfcc", header="X-Forwarded-Client-Cert")
    resolver = CertificateSourceResolver(proxy)
    assert resolver.chain_header is None
    presented = resolver.resolve("10.20.3.4", envoy_element(leaf, (h.issuing.certificate,)), None)
    assert (presented.certificate, presented.chain) == (leaf, (h.issuing.certificate,))


def test_chain_header_alone_from_an_untrusted_address_is_ignored_and_flagged(pem: str) -> None:
    proxy = replace(PROXY, chain_header="X-SSL-Client-Chain")
    presented = CertificateSourceResolver(proxy).resolve("192.0.2.1", None, pem, nginx_escaped(pem))
    assert (presented.via, presented.untrusted_header, presented.chain) == ("tls", True, ())


def test_tls_certificate_has_no_chain(cert: x509.Certificate, pem: str) -> None:
    assert CertificateSourceResolver(PROXY).resolve("192.0.2.1", None, pem).chain == ()


@pytest.mark.parametrize(("changes", "key", "fragment"), [
    pytest.param({"chain_header": "X_Chain"}, ("chain_header",), "expected an HTTP header name",
                 id="chain-header-name"),
    pytest.param({"chain_header": "x-ssl-client-cert"}, ("chain_header",), "must differ from header",
                 id="chain-header-same-as-header"),
    pytest.param({"format": "envoy_xfcc"}, ("header",), "X-Forwarded-Client-Cert", id="envoy-needs-xfcc-name"),
    pytest.param({"format": "envoy_xfcc", "header": "X-Forwarded-Client-Cert", "chain_header": "X-Chain"},
                 ("chain_header",), "remove chain_header", id="envoy-has-no-chain-header"),
    pytest.param({"format": "rfc9440"}, ("header",), "set header: Client-Cert", id="rfc9440-default-header-name"),
    pytest.param({"format": "rfc9440", "header": "Client-Cert", "chain_header": "X-Chain"}, ("chain_header",),
                 "Client-Cert-Chain", id="rfc9440-chain-field-name"),
    pytest.param({"max_chain_certificates": 33}, ("max_chain_certificates",), "at most 32", id="chain-limit"),
])
def test_proxy_configuration_rules(changes: dict[str, object], key: tuple[str, ...], fragment: str) -> None:
    problems = list(replace(PROXY, **changes).config_check())  # type: ignore[arg-type]
    assert [k for k, _ in problems] == [key], problems
    assert fragment in problems[0][1]


@pytest.mark.parametrize("changes", [
    pytest.param({}, id="defaults"),
    pytest.param({"chain_header": "X-SSL-Client-Chain"}, id="nginx-with-chain-header"),
    pytest.param({"format": "haproxy_base64_der", "chain_header": "X-SSL-Client-Chain"}, id="haproxy"),
    pytest.param({"format": "apache_pem"}, id="apache"),
    pytest.param({"format": "envoy_xfcc", "header": "x-forwarded-client-cert"}, id="envoy"),
    pytest.param({"format": "rfc9440", "header": "Client-Cert", "chain_header": "Client-Cert-Chain"}, id="rfc9440"),
])
def test_proxy_configurations_accepted(changes: dict[str, object]) -> None:
    assert list(replace(PROXY, **changes).config_check()) == []  # type: ignore[arg-type]
