"""Decoding a TLS-terminating proxy's client-certificate header: one strict parser per format.

The proxy that terminated the browser's TLS connection forwards the client certificate in a header of its
own format; ``client_certificate.proxy.format`` says which. Every parser here

* checks the size limit before it decodes anything (``proxy_header_too_large``);
* accepts exactly one leaf certificate: two, a truncated one, a CSR, a key or any other bytes are
  ``proxy_header_malformed``;
* reads an optional chain (the intermediates the client sent) from the format's own place: a second
  header (``chain_header``), or for Envoy the ``Chain`` key of the same header; at most
  ``max_chain_certificates`` of them. The chain is only ever a path-building hint: trust comes from the
  municipality's anchors (:func:`broker.pki.path.verify_path`);
* raises nothing but :class:`ProxyHeaderRejected` on any input.

Whether the header may be believed at all (the sender's address) is :mod:`broker.pki.sources`' concern.
An empty value means "no certificate" in every format (a proxy that sets the header from an empty
variable sends it empty); so does each format's own marker for none, listed per parser.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from broker.errors import ProxyHeaderRejected
from broker.pki.der import SEQUENCE, der_items
from broker.pki.reading import UnreadableCertificate, read_certificate

ProxyFormat = Literal["nginx_escaped_pem", "haproxy_base64_der", "apache_pem", "envoy_xfcc", "rfc9440"]

FORMAT_DOCS: dict[ProxyFormat, str] = {
    "nginx_escaped_pem": "nginx `$ssl_client_escaped_cert` (the URL-encoded PEM)",
    "haproxy_base64_der": "HAProxy `%[ssl_c_der,base64]` (base64 of the DER, no PEM armour)",
    "apache_pem": "Apache `%{SSL_CLIENT_CERT}s` through mod_headers (PEM, line breaks arriving as spaces; "
                  "`(null)` for none)",
    "envoy_xfcc": "Envoy `x-forwarded-client-cert` (the `Cert` and optional `Chain` keys of its one element: "
                  "`forward_client_cert_details: SANITIZE_SET`)",
    "rfc9440": "RFC 9440 `Client-Cert` (a Structured Field Byte Sequence of the DER) and `Client-Cert-Chain`",
}

_WS = "[ \t\r\n]"
_PEM_BLOCK = r"-----BEGIN CERTIFICATE-----([A-Za-z0-9+/= \t\r\n]*)-----END CERTIFICATE-----"
_PEM_BODY = re.compile(_PEM_BLOCK)
_PEM_ONLY = re.compile(rf"{_WS}*(?:{_PEM_BLOCK}{_WS}*)+")
_PEM_OR_NULL = re.compile(rf"{_WS}*(?:(?:{_PEM_BLOCK}|\(null\)){_WS}*)+")
_B64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_SF_BINARY = re.compile(r":([A-Za-z0-9+/=]*):")
_SF_B64 = re.compile(r"([A-Za-z0-9+/]*)(=*)")
_XFCC_KEY = re.compile(r"[ \t]*([A-Za-z][A-Za-z0-9_-]*)=")
_XFCC_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"', re.DOTALL)
_XFCC_BARE = re.compile(r'[^",;]*')
_XFCC_ESCAPED_QUOTE = re.compile(r'\\"')
# "no certificate" in each format: empty everywhere, plus the proxy's own marker (nginx's old parser also
# took "-" and "(null)"; Apache's mod_headers writes "(null)" for an unset variable)
_NGINX_NONE = ("", "-", "(null)")
_APACHE_NONE = ("", "(null)")


@dataclass(frozen=True)
class HeaderLimits:
    """``max_bytes``: the largest value of each header; ``max_chain_certificates``: the longest chain."""

    max_bytes: int
    max_chain_certificates: int = 8


@dataclass(frozen=True)
class ForwardedCertificate:
    """The leaf a proxy forwarded and the intermediates the client sent with it (untrusted, maybe none)."""

    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...] = ()


def _malformed(detail: str) -> ProxyHeaderRejected:
    return ProxyHeaderRejected("proxy_header_malformed", detail)


def _check_size(value: str, limit: int, what: str) -> None:
    if len(value) > limit:
        raise ProxyHeaderRejected("proxy_header_too_large", f"{what}: {len(value)} bytes (limit {limit})")


def _certificate(der: bytes) -> x509.Certificate:
    """One DER certificate, read whole (:func:`read_certificate`), so that a broken one fails here."""
    try:
        return read_certificate(der)
    except UnreadableCertificate as exc:
        raise _malformed(str(exc)) from None


def _der_elements(data: bytes) -> list[bytes]:
    """Split concatenated DER SEQUENCEs (X.690 §8.1: tag, definite length, contents) without parsing them."""
    try:
        items = der_items(data)
    except ValueError as exc:
        raise _malformed(f"DER data that is not a sequence of certificates ({exc})") from None
    if any(tag != SEQUENCE for tag, _, _ in items):
        raise _malformed("DER data that is not a sequence of certificates")
    bounds = [0, *(end for _, _, end in items)]
    return [data[begin:end] for begin, end in itertools.pairwise(bounds)]


def _one_der(elements: list[bytes], what: str) -> bytes:
    if len(elements) != 1:
        raise _malformed(f"{what}: expected one certificate, found {len(elements)}")
    return elements[0]


def _strict_base64(text: str) -> bytes:
    """RFC 4648 §4 base64 with its padding and canonical (zero) pad bits, nothing else."""
    if not _B64.fullmatch(text):
        raise _malformed("not base64 (RFC 4648 §4 alphabet and padding)")
    data = binascii.a2b_base64(text, strict_mode=True) if text else b""
    if base64.b64encode(data).decode("ascii") != text:
        raise _malformed("base64 with non-zero pad bits")
    return data


def _pem_certificates(text: str, *, null_tokens: bool = False) -> list[x509.Certificate]:
    """Text made only of PEM CERTIFICATE blocks (RFC 7468 §5) and whitespace, in any line breaks or none;
    with ``null_tokens``, also Apache's ``(null)`` for an empty position."""
    pattern = _PEM_OR_NULL if null_tokens else _PEM_ONLY
    if not pattern.fullmatch(text):
        raise _malformed("expected PEM certificates and nothing else")
    certs = []
    for body in _PEM_BODY.findall(text):
        der = _one_der(_der_elements(_strict_base64(re.sub(_WS, "", body))), "PEM block")
        certs.append(_certificate(der))
    return certs


def _one(certs: list[x509.Certificate], what: str) -> x509.Certificate:
    if len(certs) != 1:
        raise _malformed(f"{what}: expected one certificate, found {len(certs)}")
    return certs[0]


def _chain(certs: list[x509.Certificate], limits: HeaderLimits) -> tuple[x509.Certificate, ...]:
    if len(certs) > limits.max_chain_certificates:
        raise ProxyHeaderRejected("proxy_header_too_large",
                                  f"{len(certs)} chain certificates (limit {limits.max_chain_certificates})")
    return tuple(certs)


def _url_decoded(value: str) -> str:
    try:
        return unquote(value, errors="strict")
    except UnicodeDecodeError:
        raise _malformed("percent-escapes do not decode as UTF-8") from None


# --- nginx: $ssl_client_escaped_cert ---------------------------------------------------------------------


def _nginx_leaf(value: str) -> x509.Certificate:
    return _one(_pem_certificates(_url_decoded(value)), "leaf header")


def _nginx_chain(value: str) -> list[x509.Certificate]:
    return _pem_certificates(_url_decoded(value))


# --- HAProxy: %[ssl_c_der,base64] and %[ssl_c_chain_der,base64] -------------------------------------------


def _haproxy_leaf(value: str) -> x509.Certificate:
    return _certificate(_one_der(_der_elements(_strict_base64(value)), "leaf header"))


def _haproxy_chain(value: str) -> list[x509.Certificate]:
    """``ssl_c_chain_der``: the DER certificates the client sent after its own, concatenated."""
    return [_certificate(der) for der in _der_elements(_strict_base64(value))]


# --- Apache: RequestHeader set ... "%{SSL_CLIENT_CERT}s" -----------------------------------------------------


def _apache_leaf(value: str) -> x509.Certificate:
    """mod_headers replaces the PEM's line breaks with spaces; either form is accepted."""
    return _one(_pem_certificates(value), "leaf header")


def _apache_chain(value: str) -> list[x509.Certificate]:
    """``%{SSL_CLIENT_CERT_CHAIN_0}s %{SSL_CLIENT_CERT_CHAIN_1}s ...``: ``(null)`` past the chain's end."""
    return _pem_certificates(value, null_tokens=True)


# --- RFC 9440: Client-Cert and Client-Cert-Chain -------------------------------------------------------------


def _sf_binary(text: str) -> bytes:
    """RFC 8941 §4.2.7 (Parsing a Byte Sequence), content between the colons already cut out: the base64
    alphabet only; missing ``=`` padding is synthesised and non-zero pad bits tolerated, as §4.2.7 asks."""
    m = _SF_B64.fullmatch(text)
    if m is None:
        raise _malformed("Byte Sequence that is not base64 (RFC 4648 §4)")
    body, padding = m.groups()
    if len(body) % 4 == 1 or (padding and (len(body) + len(padding)) % 4 != 0) or len(padding) > 2:
        raise _malformed("Byte Sequence of a length base64 cannot have")
    try:
        return binascii.a2b_base64(body + "=" * (-len(body) % 4), strict_mode=True)
    except binascii.Error:
        raise _malformed("Byte Sequence that is not base64") from None


def _rfc9440_leaf(value: str) -> x509.Certificate:
    """``Client-Cert = sf-binary`` (RFC 9440 §2.2): one Item, a Byte Sequence without parameters. The field
    is a singleton; two field lines arrive joined by a comma and are refused. Leading and trailing spaces
    are discarded (RFC 8941 §4.2)."""
    m = _SF_BINARY.fullmatch(value.strip(" "))
    if m is None:
        raise _malformed("Client-Cert: expected one Byte Sequence (:base64:) without parameters")
    return _certificate(_one_der(_der_elements(_sf_binary(m.group(1))), "Client-Cert"))


def _rfc9440_chain(value: str) -> list[x509.Certificate]:
    """``Client-Cert-Chain = sf-list`` of Byte Sequences (RFC 9440 §2.3; RFC 8941 §4.2.1): members separated
    by a comma with optional spaces or tabs around it, no trailing comma, no inner lists, no parameters."""
    certs = []
    for member in value.strip(" ").split(","):
        m = _SF_BINARY.fullmatch(member.strip(" \t"))
        if m is None:
            raise _malformed("Client-Cert-Chain: expected a list of Byte Sequences (:base64:) without parameters")
        certs.append(_certificate(_one_der(_der_elements(_sf_binary(m.group(1))), "Client-Cert-Chain member")))
    return certs


# --- Envoy: x-forwarded-client-cert ----------------------------------------------------------------------


def xfcc_elements(value: str) -> list[list[tuple[str, str]]]:
    """The XFCC header as elements of (lower-case key, value) pairs.

    Envoy's grammar (configuration/http/http_conn_man/headers, x-forwarded-client-cert): elements separated
    by ``,``, each of ``key=value`` pairs separated by ``;``; keys case-insensitive; a value containing
    ``,``, ``;`` or ``=`` is double-quoted, a double quote inside it escaped as ``\\"``. Other backslash
    pairs (a Subject's RFC 4514 ``\\,``) stay as they are. Spaces before a key are tolerated.
    """
    elements: list[list[tuple[str, str]]] = []
    pairs: list[tuple[str, str]] = []
    at = 0
    while True:
        key = _XFCC_KEY.match(value, at)
        if key is None:
            raise _malformed(f"x-forwarded-client-cert: expected key=value at offset {at}")
        at = key.end()
        quoted = _XFCC_QUOTED.match(value, at)
        if quoted is not None:
            text = _XFCC_ESCAPED_QUOTE.sub('"', quoted.group(1))
            at = quoted.end()
        elif at < len(value) and value[at] == '"':
            raise _malformed(f"x-forwarded-client-cert: unterminated quoted value at offset {at}")
        else:
            bare = _XFCC_BARE.match(value, at)
            assert bare is not None  # the pattern matches the empty string
            text, at = bare.group(0), bare.end()
        pairs.append((key.group(1).lower(), text))
        if at == len(value):
            elements.append(pairs)
            return elements
        if value[at] == ",":
            elements.append(pairs)
            pairs = []
        elif value[at] != ";":
            raise _malformed(f"x-forwarded-client-cert: expected ';' or ',' at offset {at}")
        at += 1


_XFCC_REPEATED = frozenset({"by", "uri", "dns"})


def _envoy(value: str, limits: HeaderLimits) -> ForwardedCertificate | None:
    """The one element Envoy wrote with ``forward_client_cert_details: SANITIZE_SET``.

    Exactly one element is accepted. With ``APPEND_FORWARD`` the elements before Envoy's own come from
    farther proxies or from the client; and Envoy writes the ``URI``, ``DNS`` and ``By`` values without
    quoting (envoyproxy/envoy#32945), so a certificate whose URI holds ``,Cert=...`` would itself start
    an element that "the last one" would trust. One element only (and Cert, Chain, Hash and Subject at most
    once; Envoy repeats By, URI and DNS, one per name) leaves the client nothing to inject. An element
    without ``Cert`` means no certificate; ``Chain`` holds the client's chain, the leaf first.
    """
    elements = xfcc_elements(value)
    if len(elements) != 1:
        raise _malformed(f"x-forwarded-client-cert: {len(elements)} elements; the edge Envoy must replace the "
                         "header (forward_client_cert_details: SANITIZE_SET), leaving one")
    element = elements[0]
    # Envoy repeats By (one per URI name of its own certificate), URI and DNS (one per name of the client's);
    # the others it writes once, and the broker reads Cert, Chain and Hash
    keys = [k for k, _ in element if k not in _XFCC_REPEATED]
    if len(keys) != len(set(keys)):
        twice = sorted({k for k in keys if keys.count(k) > 1})
        raise _malformed(f"x-forwarded-client-cert: {', '.join(twice)} twice in one element")
    certs = [v for k, v in element if k == "cert"]
    chains = [v for k, v in element if k == "chain"]
    hashes = [v for k, v in element if k == "hash"]
    if not certs or certs[0] == "":
        if chains and chains[0] != "":
            raise _malformed("x-forwarded-client-cert: Chain without Cert (set cert: true in Envoy)")
        return None
    leaf = _one(_pem_certificates(_url_decoded(certs[0])), "x-forwarded-client-cert Cert")
    if hashes:
        digest = hashlib.sha256(leaf.public_bytes(serialization.Encoding.DER)).hexdigest()
        if not hmac.compare_digest(hashes[0].lower().encode("ascii", "replace"), digest.encode("ascii")):
            raise _malformed("x-forwarded-client-cert: Hash is not the SHA-256 of Cert")
    chain: list[x509.Certificate] = []
    if chains and chains[0] != "":
        chain = _pem_certificates(_url_decoded(chains[0]))
        if chain[0] != leaf:
            raise _malformed("x-forwarded-client-cert: Chain does not start with Cert")
        chain = chain[1:]
    return ForwardedCertificate(leaf, _chain(chain, limits))


# --- selection by format -----------------------------------------------------------------------------------

_Leaf = Callable[[str], x509.Certificate]
_Chain = Callable[[str], list[x509.Certificate]]
_SEPARATE: dict[ProxyFormat, tuple[_Leaf, _Chain]] = {
    "nginx_escaped_pem": (_nginx_leaf, _nginx_chain),
    "haproxy_base64_der": (_haproxy_leaf, _haproxy_chain),
    "apache_pem": (_apache_leaf, _apache_chain),
    "rfc9440": (_rfc9440_leaf, _rfc9440_chain),
}
_EMPTY = re.compile(r"[ \t]*")
_CHAIN_NONE: dict[ProxyFormat, re.Pattern[str]] = {"apache_pem": re.compile(r"(?:\(null\)|[ \t])*")}
_LEAF_NONE: dict[ProxyFormat, tuple[str, ...]] = {"nginx_escaped_pem": _NGINX_NONE, "apache_pem": _APACHE_NONE}


def decode(fmt: ProxyFormat, value: str | None, chain_value: str | None,
           limits: HeaderLimits) -> ForwardedCertificate | None:
    """The certificate (and chain) in a trusted proxy's headers, or None when they say there is none.

    ``value`` is the leaf header as received, ``chain_value`` the chain header (None when absent or not
    configured; always None for ``envoy_xfcc``). Raises :class:`ProxyHeaderRejected`.
    """
    if value is not None:
        _check_size(value, limits.max_bytes, "certificate header")
    if chain_value is not None:
        _check_size(chain_value, limits.max_bytes, "chain header")
    if fmt == "envoy_xfcc":
        return _envoy(value, limits) if value else None
    leaf_parser, chain_parser = _SEPARATE[fmt]
    has_chain = chain_value is not None and not _CHAIN_NONE.get(fmt, _EMPTY).fullmatch(chain_value)
    if value is None or value.strip(" \t") in _LEAF_NONE.get(fmt, ("",)):
        if has_chain:
            raise _malformed("a chain header without a certificate header")
        return None
    leaf = leaf_parser(value)
    chain = chain_parser(chain_value) if has_chain and chain_value is not None else []
    return ForwardedCertificate(leaf, _chain(chain, limits))
