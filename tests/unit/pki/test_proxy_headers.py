"""Decoding the proxy's client-certificate headers, one strict parser per format (broker.pki.proxy_headers).

Per format: what the real proxy writes is accepted (with and without a chain); everything else is refused
with its reason code; and a corpus of hostile values never raises anything but ProxyHeaderRejected.
Envoy cannot be installed from Debian, so its format is proven here only (the others also run for real in
tests/flows/test_nginx.py and tests/flows/test_proxy_formats.py).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import get_args
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from cryptography.x509.oid import NameOID

from broker.errors import ProxyHeaderRejected
from broker.pki.proxy_headers import (
    FORMAT_DOCS,
    ForwardedCertificate,
    HeaderLimits,
    ProxyFormat,
    decode,
    xfcc_elements,
)
from tests.factories.pki import Hierarchy
from tests.factories.pki_cases import NOW
from tests.factories.proxy_headers import (
    apache,
    der,
    envoy_element,
    haproxy,
    headers_for,
    nginx,
    pem,
    sf_binary,
)

FORMATS: tuple[ProxyFormat, ...] = get_args(ProxyFormat)
SEPARATE_CHAIN = tuple(f for f in FORMATS if f != "envoy_xfcc")
LIMITS = HeaderLimits(max_bytes=16384, max_chain_certificates=8)


@dataclass(frozen=True)
class Pki:
    leaf: x509.Certificate
    issuing: x509.Certificate
    root: x509.Certificate
    other: x509.Certificate  # another user's certificate
    padded: x509.Certificate  # a leaf whose base64 ends in padding (ECDSA signatures vary in length)
    csr_der: bytes
    key_pem: str

    @property
    def leaf_der(self) -> bytes:
        return der(self.leaf)


@pytest.fixture(scope="module")
def pki() -> Pki:
    h = Hierarchy.build(NOW)
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Anna Andersson")])).sign(key, hashes.SHA256())
    key_pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    padded = next(c for c in (h.leaf().certificate for _ in range(100)) if len(der(c)) % 3)
    return Pki(h.leaf().certificate, h.issuing.certificate, h.root.certificate,
               h.leaf(common_name="Bo Berg", serial_number="SE2120001009-bo").certificate, padded,
               csr.public_bytes(Encoding.DER), key_pem)


def test_every_format_is_documented() -> None:
    assert set(FORMAT_DOCS) == set(FORMATS)


# --- accepted: what each proxy really writes ----------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_leaf_without_chain(pki: Pki, fmt: ProxyFormat) -> None:
    value, chain_value = headers_for(fmt, pki.leaf)
    assert decode(fmt, value, chain_value, LIMITS) == ForwardedCertificate(pki.leaf, ())


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("length", [1, 2], ids=["issuing-ca", "issuing-ca-and-root"])
def test_leaf_with_chain(pki: Pki, fmt: ProxyFormat, length: int) -> None:
    chain = (pki.issuing, pki.root)[:length]
    value, chain_value = headers_for(fmt, pki.leaf, chain)
    assert decode(fmt, value, chain_value, LIMITS) == ForwardedCertificate(pki.leaf, chain)


@pytest.mark.parametrize("fmt", FORMATS)
def test_no_certificate(fmt: ProxyFormat) -> None:
    value, chain_value = headers_for(fmt, None)
    assert decode(fmt, value, chain_value, LIMITS) is None


@pytest.mark.parametrize("fmt", FORMATS)
def test_empty_header_means_no_certificate(fmt: ProxyFormat) -> None:
    """A proxy setting the header from an empty variable sends it empty (HAProxy's set-header does)."""
    assert decode(fmt, "", None, LIMITS) is None
    assert decode(fmt, None, None, LIMITS) is None


Accept = Callable[[Pki], tuple[str, str | None, tuple[str, ...]]]  # (leaf, chain) → expected chain subjects


@pytest.mark.parametrize(("fmt", "make"), [
    pytest.param("nginx_escaped_pem", lambda p: (pem(p.leaf), None), id="nginx-pem-not-escaped"),
    pytest.param("nginx_escaped_pem", lambda p: ("-", None), id="nginx-dash-is-none"),
    pytest.param("nginx_escaped_pem", lambda p: (nginx([pem(p.leaf).replace("\n", "\r\n")]), None),
                 id="nginx-crlf-line-breaks"),
    pytest.param("apache_pem", lambda p: (pem(p.leaf), None), id="apache-line-breaks-kept"),
    pytest.param("apache_pem", lambda p: ("(null)", None), id="apache-null-without-chain-header"),
    pytest.param("apache_pem", lambda p: (apache([pem(p.leaf)]), "(null) (null)"), id="apache-chain-all-null"),
    pytest.param("apache_pem", lambda p: (apache([pem(p.leaf)]), pem(p.issuing) + pem(p.root)),
                 id="apache-chain-with-line-breaks"),
    pytest.param("rfc9440", lambda p: (" " + sf_binary(p.leaf_der) + " ", None), id="rfc9440-surrounding-spaces"),
    pytest.param("rfc9440", lambda p: (sf_binary(der(p.padded)).rstrip(":").rstrip("=") + ":", None),
                 id="rfc9440-padding-omitted"),
    pytest.param("rfc9440", lambda p: (_nonzero_pad_bits(sf_binary(der(p.padded)).strip(":")).join("::"), None),
                 id="rfc9440-non-zero-pad-bits-tolerated"),
    pytest.param("rfc9440", lambda p: (sf_binary(p.leaf_der), f"{sf_binary(der(p.issuing))}\t,  "
                                       f"{sf_binary(der(p.root))}"), id="rfc9440-chain-ows-around-comma"),
    pytest.param("rfc9440", lambda p: (sf_binary(p.leaf_der), ""), id="rfc9440-empty-chain-list"),
    pytest.param("haproxy_base64_der", lambda p: (haproxy([p.leaf_der]), ""), id="haproxy-empty-chain"),
    pytest.param("envoy_xfcc", lambda p: (envoy_element(p.leaf).replace("Hash=", "hash=").replace("Cert=", "cert="),
                                          None), id="envoy-keys-case-insensitive"),
    pytest.param("envoy_xfcc", lambda p: (f'Cert="{quote(pem(p.leaf), safe="")}"', None), id="envoy-cert-alone"),
    pytest.param("envoy_xfcc", lambda p: (f"Cert={quote(pem(p.leaf), safe='')}", None), id="envoy-cert-unquoted"),
    pytest.param("envoy_xfcc", lambda p: (envoy_element(p.leaf).split(";Subject=", 1)[0]
                                          + ';Subject="CN=a\\, b,O=\\"q\\"";URI=', None),
                 id="envoy-escapes-in-other-values"),
    pytest.param("envoy_xfcc", lambda p: (envoy_element(p.leaf) + ";DNS=a.example;DNS=b.example", None),
                 id="envoy-one-dns-pair-per-dns-name"),
    # Envoy (1.23+) writes By once per URI name of its own certificate, URI once per URI name of the client's
    pytest.param("envoy_xfcc", lambda p: (envoy_element(p.leaf) + ";By=spiffe://mesh/b;URI=urn:a;URI=urn:b", None),
                 id="envoy-repeated-by-and-uri"),
])
def test_accepted_variants(pki: Pki, fmt: ProxyFormat, make: Callable[[Pki], tuple[str, str | None]]) -> None:
    value, chain_value = make(pki)
    found = decode(fmt, value, chain_value, LIMITS)
    if value in ("-", "(null)"):
        assert found is None
    else:
        assert found is not None
        assert found.certificate in (pki.leaf, pki.padded)


# --- Envoy: several elements, one per proxy ---------------------------------------------------------------


@pytest.mark.parametrize("arrangement", ["forged-first", "forged-last"])
def test_envoy_refuses_more_than_one_element(pki: Pki, arrangement: str) -> None:
    """APPEND_FORWARD would put a client's forged element next to Envoy's: only SANITIZE_SET's one element."""
    forged, real = envoy_element(pki.other), envoy_element(pki.leaf)
    value = f"{forged},{real}" if arrangement == "forged-first" else f"{real},{forged}"
    with pytest.raises(ProxyHeaderRejected) as caught:
        decode("envoy_xfcc", value, None, LIMITS)
    assert caught.value.reason == "proxy_header_malformed"
    assert "SANITIZE_SET" in caught.value.detail


@pytest.mark.parametrize("twice", [pytest.param(';Subject="CN=b"', id="subject"),
                                   pytest.param(";Hash=" + "0" * 64, id="hash")])
def test_envoy_refuses_a_key_given_twice(pki: Pki, twice: str) -> None:
    """docs/proxies.md: Cert, Chain, Hash and Subject once each (Envoy repeats only By, URI and DNS)."""
    with pytest.raises(ProxyHeaderRejected) as caught:
        decode("envoy_xfcc", envoy_element(pki.leaf) + twice, None, LIMITS)
    assert caught.value.reason == "proxy_header_malformed"
    assert "twice in one element" in caught.value.detail


def test_envoy_an_unquoted_uri_cannot_start_an_element_of_its_own(pki: Pki) -> None:
    """Envoy writes URI= unquoted: a certificate whose URI SAN is ``urn:x,Cert=<victim>`` must not make the
    victim's certificate the presented one (envoyproxy/envoy#32945)."""
    victim = envoy_element(pki.other).split(";", 1)[0]  # its Cert="..." pair
    value = envoy_element(pki.leaf) + ";URI=urn:x," + victim
    with pytest.raises(ProxyHeaderRejected) as caught:
        decode("envoy_xfcc", value, None, LIMITS)
    assert caught.value.reason == "proxy_header_malformed"


def test_envoy_element_without_cert_means_none(pki: Pki) -> None:
    assert decode("envoy_xfcc", 'By=spiffe://edge;Hash=0123;Subject="CN=x";URI=', None, LIMITS) is None


def test_envoy_chain_starts_with_the_leaf_which_is_not_repeated(pki: Pki) -> None:
    found = decode("envoy_xfcc", envoy_element(pki.leaf, (pki.issuing,)), None, LIMITS)
    assert found == ForwardedCertificate(pki.leaf, (pki.issuing,))


def test_xfcc_grammar() -> None:
    assert xfcc_elements('By=a;Hash=1;Subject="CN=x\\, y,O=\\"z\\"";URI=,By=b;DNS=c;DNS=d') == [
        [("by", "a"), ("hash", "1"), ("subject", 'CN=x\\, y,O="z"'), ("uri", "")],
        [("by", "b"), ("dns", "c"), ("dns", "d")],
    ]


# --- refused, with the reason ------------------------------------------------------------------------------

Reject = Callable[[Pki], tuple[str | None, str | None]]


def _corrupt(text: str) -> str:
    lines = text.splitlines(keepends=True)
    lines[3] = "!!!!" + lines[3][4:]
    return "".join(lines)


REJECTED: list[object] = [
    # nginx
    pytest.param("nginx_escaped_pem", lambda p: (nginx([pem(p.leaf), pem(p.other)]), None), "proxy_header_malformed",
                 id="nginx-two-certificates"),
    pytest.param("nginx_escaped_pem", lambda p: (nginx([_corrupt(pem(p.leaf))]), None), "proxy_header_malformed",
                 id="nginx-broken-base64"),
    pytest.param("nginx_escaped_pem", lambda p: (nginx([_armour(p.leaf_der + der(p.other))]), None),
                 "proxy_header_malformed", id="nginx-two-certificates-in-one-pem-block"),
    pytest.param("nginx_escaped_pem", lambda p: (nginx([p.key_pem + pem(p.leaf)]), None), "proxy_header_malformed",
                 id="nginx-key-before-certificate"),
    pytest.param("nginx_escaped_pem", lambda p: (nginx(["junk " + pem(p.leaf)]), None), "proxy_header_malformed",
                 id="nginx-text-before-certificate"),
    pytest.param("nginx_escaped_pem", lambda p: ("%FF%FE" + nginx([pem(p.leaf)]), None), "proxy_header_malformed",
                 id="nginx-escapes-not-utf8"),
    pytest.param("nginx_escaped_pem", lambda p: ("", nginx([pem(p.issuing)])), "proxy_header_malformed",
                 id="nginx-chain-without-leaf"),
    pytest.param("nginx_escaped_pem", lambda p: (nginx([pem(p.leaf)]), "garbage"), "proxy_header_malformed",
                 id="nginx-garbage-chain"),
    # HAProxy
    pytest.param("haproxy_base64_der", lambda p: (haproxy([p.leaf_der, der(p.other)]), None),
                 "proxy_header_malformed", id="haproxy-two-certificates"),
    pytest.param("haproxy_base64_der", lambda p: (haproxy([der(p.padded)]).rstrip("="), None),
                 "proxy_header_malformed", id="haproxy-padding-missing"),
    pytest.param("haproxy_base64_der", lambda p: (haproxy([p.leaf_der]) + "====", None),
                 "proxy_header_malformed", id="haproxy-too-much-padding"),
    pytest.param("haproxy_base64_der", lambda p: (_nonzero_pad_bits(haproxy([der(p.padded)])), None),
                 "proxy_header_malformed", id="haproxy-non-zero-pad-bits"),
    pytest.param("haproxy_base64_der", lambda p: (haproxy([p.leaf_der])[:40] + " " + haproxy([p.leaf_der])[40:], None),
                 "proxy_header_malformed", id="haproxy-inner-whitespace"),
    pytest.param("haproxy_base64_der", lambda p: (base64.urlsafe_b64encode(p.leaf_der).decode(), None),
                 "proxy_header_malformed", id="haproxy-url-safe-alphabet"),
    pytest.param("haproxy_base64_der", lambda p: (haproxy([p.leaf_der[:-10]]), None), "proxy_header_malformed",
                 id="haproxy-truncated-der"),
    pytest.param("haproxy_base64_der", lambda p: (haproxy([p.leaf_der + b"\x00\x00"]), None),
                 "proxy_header_malformed", id="haproxy-trailing-bytes"),
    pytest.param("haproxy_base64_der", lambda p: (haproxy([p.csr_der]), None), "proxy_header_malformed",
                 id="haproxy-csr-instead-of-certificate"),
    pytest.param("haproxy_base64_der", lambda p: (nginx([pem(p.leaf)]), None), "proxy_header_malformed",
                 id="haproxy-given-nginx-format"),
    pytest.param("haproxy_base64_der", lambda p: ("(null)", None), "proxy_header_malformed",
                 id="haproxy-apaches-null-marker"),
    pytest.param("haproxy_base64_der", lambda p: (haproxy([p.leaf_der]), haproxy([der(p.issuing)])[:-8]),
                 "proxy_header_malformed", id="haproxy-truncated-chain"),
    # Apache
    pytest.param("apache_pem", lambda p: (apache([pem(p.leaf), pem(p.other)]), None), "proxy_header_malformed",
                 id="apache-two-certificates"),
    pytest.param("apache_pem", lambda p: (apache([pem(p.leaf)]).replace("-----END CERTIFICATE-----", ""), None),
                 "proxy_header_malformed", id="apache-without-end-line"),
    pytest.param("apache_pem", lambda p: (apache([pem(p.leaf)]).replace("CERTIFICATE", "X509 CRL"), None),
                 "proxy_header_malformed", id="apache-other-pem-type"),
    pytest.param("apache_pem", lambda p: (apache([pem(p.leaf)]) + " (null)", None), "proxy_header_malformed",
                 id="apache-null-marker-in-leaf-header"),
    pytest.param("apache_pem", lambda p: (nginx([pem(p.leaf)]), None), "proxy_header_malformed",
                 id="apache-given-nginx-format"),
    pytest.param("apache_pem", lambda p: ("(null)", apache([pem(p.issuing)], positions=2)), "proxy_header_malformed",
                 id="apache-chain-without-leaf"),
    # Envoy
    pytest.param("envoy_xfcc", lambda p: (envoy_element(p.leaf) + f';Cert="{quote(pem(p.other))}"', None),
                 "proxy_header_malformed", id="envoy-two-cert-keys"),
    pytest.param("envoy_xfcc", lambda p: (f'Cert="{nginx([pem(p.leaf), pem(p.other)])}"', None),
                 "proxy_header_malformed", id="envoy-two-certificates-in-cert"),
    pytest.param("envoy_xfcc", lambda p: (envoy_element(p.leaf).replace(
        hashlib.sha256(p.leaf_der).hexdigest(), hashlib.sha256(der(p.other)).hexdigest()), None),
                 "proxy_header_malformed", id="envoy-hash-of-another-certificate"),
    pytest.param("envoy_xfcc", lambda p: (envoy_element(p.leaf) + f';Chain="{nginx([pem(p.other), pem(p.issuing)])}"',
                                          None), "proxy_header_malformed", id="envoy-chain-of-another-leaf"),
    pytest.param("envoy_xfcc", lambda p: (f'Chain="{nginx([pem(p.leaf)])}"', None), "proxy_header_malformed",
                 id="envoy-chain-without-cert"),
    pytest.param("envoy_xfcc", lambda p: (envoy_element(p.leaf) + ",", None), "proxy_header_malformed",
                 id="envoy-trailing-comma"),
    pytest.param("envoy_xfcc", lambda p: ('Cert="' + nginx([pem(p.leaf)]), None), "proxy_header_malformed",
                 id="envoy-unterminated-quote"),
    pytest.param("envoy_xfcc", lambda p: ('Cert="x"y', None), "proxy_header_malformed",
                 id="envoy-text-after-quoted-value"),
    pytest.param("envoy_xfcc", lambda p: ("Cert", None), "proxy_header_malformed", id="envoy-key-without-value"),
    # RFC 9440
    pytest.param("rfc9440", lambda p: (f"{sf_binary(p.leaf_der)}, {sf_binary(der(p.other))}", None),
                 "proxy_header_malformed", id="rfc9440-two-field-lines"),
    pytest.param("rfc9440", lambda p: (sf_binary(p.leaf_der + der(p.other)), None), "proxy_header_malformed",
                 id="rfc9440-two-certificates-in-one-byte-sequence"),
    pytest.param("rfc9440", lambda p: (sf_binary(p.leaf_der) + ";a=1", None), "proxy_header_malformed",
                 id="rfc9440-parameters"),
    pytest.param("rfc9440", lambda p: (sf_binary(p.leaf_der).strip(":"), None), "proxy_header_malformed",
                 id="rfc9440-without-colons"),
    pytest.param("rfc9440", lambda p: (sf_binary(p.leaf_der).replace("+", "-").replace("/", "_"), None),
                 "proxy_header_malformed", id="rfc9440-url-safe-alphabet"),
    pytest.param("rfc9440", lambda p: (":" + base64.b64encode(p.leaf_der).decode()[:-3] + "==A:", None),
                 "proxy_header_malformed", id="rfc9440-padding-inside"),
    pytest.param("rfc9440", lambda p: (sf_binary(der(p.padded))[:-1] + "==:", None),
                 "proxy_header_malformed", id="rfc9440-too-much-padding"),
    pytest.param("rfc9440", lambda p: (_one_too_many(base64.b64encode(p.leaf_der).decode()).join("::"), None),
                 "proxy_header_malformed", id="rfc9440-impossible-length"),
    pytest.param("rfc9440", lambda p: (pem(p.leaf), None), "proxy_header_malformed", id="rfc9440-given-pem"),
    pytest.param("rfc9440", lambda p: ("-", None), "proxy_header_malformed", id="rfc9440-nginx-dash-marker"),
    pytest.param("rfc9440", lambda p: (sf_binary(p.csr_der), None), "proxy_header_malformed", id="rfc9440-csr"),
    pytest.param("rfc9440", lambda p: (None, sf_binary(der(p.issuing))), "proxy_header_malformed",
                 id="rfc9440-chain-without-client-cert"),
    pytest.param("rfc9440", lambda p: (sf_binary(p.leaf_der), sf_binary(der(p.issuing)) + ","),
                 "proxy_header_malformed", id="rfc9440-chain-trailing-comma"),
    pytest.param("rfc9440", lambda p: (sf_binary(p.leaf_der), f"({sf_binary(der(p.issuing))})"),
                 "proxy_header_malformed", id="rfc9440-chain-inner-list"),
    pytest.param("rfc9440", lambda p: (sf_binary(p.leaf_der), sf_binary(der(p.issuing)) + ";x"),
                 "proxy_header_malformed", id="rfc9440-chain-member-parameters"),
    pytest.param("rfc9440", lambda p: (sf_binary(p.leaf_der), '"' + sf_binary(der(p.issuing)) + '"'),
                 "proxy_header_malformed", id="rfc9440-chain-string-member"),
]


def _armour(data: bytes) -> str:
    """``data`` in one PEM CERTIFICATE block, whatever it is."""
    return f"-----BEGIN CERTIFICATE-----\n{base64.encodebytes(data).decode('ascii')}-----END CERTIFICATE-----\n"


def _one_too_many(value: str) -> str:
    """Base64 without padding, lengthened to 4n+1 characters: a length no byte string encodes to."""
    body = value.rstrip("=")
    return body + "A" * ((1 - len(body)) % 4)


def _nonzero_pad_bits(value: str) -> str:
    """The same length of base64 with the unused low bits of the last character set."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    body = value.rstrip("=")
    padding = value[len(body):]
    assert padding, "a DER whose base64 has padding"
    last = alphabet[alphabet.index(body[-1]) | 1]
    return body[:-1] + last + padding


@pytest.mark.parametrize(("fmt", "make", "reason"), REJECTED)
def test_refused(pki: Pki, fmt: ProxyFormat, make: Reject, reason: str) -> None:
    value, chain_value = make(pki)
    with pytest.raises(ProxyHeaderRejected) as caught:
        decode(fmt, value, chain_value, LIMITS)
    assert caught.value.reason == reason


# --- limits -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_header_at_the_size_limit_accepted_one_over_refused(pki: Pki, fmt: ProxyFormat) -> None:
    value, _ = headers_for(fmt, pki.leaf)
    assert value is not None
    assert decode(fmt, value, None, HeaderLimits(len(value))) == ForwardedCertificate(pki.leaf)
    with pytest.raises(ProxyHeaderRejected) as caught:
        decode(fmt, value, None, HeaderLimits(len(value) - 1))
    assert caught.value.reason == "proxy_header_too_large"


@pytest.mark.parametrize("fmt", SEPARATE_CHAIN)
def test_chain_header_over_the_size_limit_refused(pki: Pki, fmt: ProxyFormat) -> None:
    value, chain_value = headers_for(fmt, pki.leaf, (pki.issuing, pki.root))
    assert value is not None
    assert chain_value is not None
    with pytest.raises(ProxyHeaderRejected) as caught:
        decode(fmt, value, chain_value, HeaderLimits(max(len(value), len(chain_value) - 1)))
    assert caught.value.reason == "proxy_header_too_large"


@pytest.mark.parametrize("fmt", FORMATS)
def test_chain_longer_than_the_limit_refused(pki: Pki, fmt: ProxyFormat) -> None:
    value, chain_value = headers_for(fmt, pki.leaf, (pki.issuing, pki.root))
    assert decode(fmt, value, chain_value, HeaderLimits(65536, 2)) is not None
    with pytest.raises(ProxyHeaderRejected) as caught:
        decode(fmt, value, chain_value, HeaderLimits(65536, 1))
    assert (caught.value.reason, caught.value.detail) == ("proxy_header_too_large",
                                                          "2 chain certificates (limit 1)")


def test_size_is_checked_before_decoding() -> None:
    """A huge value is refused for its size, not parsed (so never slowly)."""
    for fmt in FORMATS:
        with pytest.raises(ProxyHeaderRejected) as caught:
            decode(fmt, "%" * 1_000_000, None, LIMITS)
        assert caught.value.reason == "proxy_header_too_large"


# --- hostile input: ProxyHeaderRejected or a result, never anything else -------------------------------------

GARBAGE_TEXT = [
    "", " ", "\t", "-", "(null)", "null", "garbage", "%", "%zz", "%FF%FE", "%00", "\x00", "A\x00B", "é", "Å" * 10,
    "\u2028", "\r\n", ":", "::", ":=:", ":AAAA", "AAAA:", ":AAAA:;a=1", ":AAAA:, :BBBB:", "(:AAAA:)", "=", "====",
    "A", "AA", "AAA", "AAAA", "AA==", "AA=A", "A===", "AAAA====", "=AAA", "-----BEGIN CERTIFICATE-----",
    "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----",
    "-----BEGIN CERTIFICATE-----AAAA-----END CERTIFICATE-----",
    "Cert=", 'Cert="', 'Cert="\\', 'Cert="\\"', "=", ";", ",", ",,", 'Cert="x";Cert="y"', "By=a,", ",By=a",
    'Cert="%"', 'Cert="%FF"', 'Chain="x"', "Hash=;Cert=", "a=b;c", '"quoted"', "\\", "A" * 16384,
]
# DER-level payloads, each encoded by every format's encoder
GARBAGE_DER: list[Callable[[Pki], bytes]] = [
    lambda p: b"",
    lambda p: b"\x30",
    lambda p: b"\x30\x80\x00\x00",                       # indefinite length (BER, not DER)
    lambda p: b"\x30\x84\xff\xff\xff\xff",              # a length past the data
    lambda p: b"\x30\x85" + b"\x01" * 5,                # a five-byte length
    lambda p: b"\x02\x01\x01",                          # an INTEGER, not a SEQUENCE
    lambda p: b"\x30\x00",                              # an empty SEQUENCE
    lambda p: p.leaf_der[:-1],
    lambda p: p.leaf_der[:100],
    lambda p: p.leaf_der + b"\x30\x00",
    lambda p: p.leaf_der + der(p.other),
    lambda p: p.csr_der,
    lambda p: bytes(range(256)),
    lambda p: p.leaf_der.replace(b"Anna", b"\xff\xfe\x00\x01", 1),
    lambda p: p.leaf_der[:4] + b"\x00" * (len(p.leaf_der) - 4),
]


def _encodings(data: bytes) -> dict[ProxyFormat, str]:
    text = base64.encodebytes(data).decode("ascii")
    armoured = f"-----BEGIN CERTIFICATE-----\n{text}-----END CERTIFICATE-----\n"
    return {
        "nginx_escaped_pem": quote(armoured, safe=""),
        "haproxy_base64_der": base64.b64encode(data).decode("ascii"),
        "apache_pem": armoured.replace("\n", " "),
        "envoy_xfcc": f'Hash=00;Cert="{quote(armoured, safe="")}"',
        "rfc9440": sf_binary(data),
    }


def _survives(fmt: ProxyFormat, value: str | None, chain_value: str | None) -> None:
    """A result, or ProxyHeaderRejected with one of the proxy reasons; any other exception fails the test."""
    reason = None
    try:
        result = decode(fmt, value, chain_value, LIMITS)
    except ProxyHeaderRejected as exc:
        reason = exc.reason
    if reason is None:
        assert result is None or isinstance(result, ForwardedCertificate)
    else:
        assert reason in ("proxy_header_malformed", "proxy_header_too_large")


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("value", [*GARBAGE_TEXT, "A" * 16385, "%" * 100_000],
                         ids=lambda v: repr(v[:20]) + (f"..{len(v)}" if len(v) > 20 else ""))
def test_garbage_text_never_raises_anything_else(pki: Pki, fmt: ProxyFormat, value: str) -> None:
    _survives(fmt, value, None)
    if fmt in SEPARATE_CHAIN:
        _survives(fmt, headers_for(fmt, pki.leaf)[0], value)
        _survives(fmt, None, value)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("make", GARBAGE_DER, ids=[f"der-{i}" for i in range(len(GARBAGE_DER))])
def test_garbage_der_never_raises_anything_else(pki: Pki, fmt: ProxyFormat, make: Callable[[Pki], bytes]) -> None:
    value = _encodings(make(pki))[fmt]
    _survives(fmt, value, None)
    if fmt in SEPARATE_CHAIN:
        _survives(fmt, headers_for(fmt, pki.leaf)[0], value)
    else:
        _survives(fmt, envoy_element(pki.leaf) + f';Chain="{quote(pem(pki.leaf))}{value.split(chr(34))[1]}"', None)
