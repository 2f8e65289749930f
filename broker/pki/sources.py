"""Where a client certificate comes from: the broker's own TLS, or a trusted proxy's header.

Nothing is trusted by default: the header is honoured only from the configured
proxy networks. From any other address it is ignored (the caller audits the
attempt as ``proxy_header_untrusted``) and the user counts as having
presented no certificate.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

from cryptography import x509

from broker.config.schema import ProxyConfig
from broker.errors import CertificateRejected
from broker.lru import LruCache
from broker.pki.proxy_headers import ForwardedCertificate, HeaderLimits, decode
from broker.pki.reading import UnreadableCertificate, read_certificate

__all__ = ["CertificateSourceResolver", "PresentedCertificate", "Via"]

Via = Literal["tls", "proxy", "none"]

# Distinct certificates whose decoded form is kept: a certificate arrives with every login of its holder, and
# reading it from a header (URL or base64 decoding, the PEM and DER checks, X.509 parsing) costs about as much
# as the rest of the certificate's checks together.
DECODED_CERTIFICATES = 1024
TRUST_DECISIONS = 1024


@dataclass(frozen=True)
class PresentedCertificate:
    """The request's certificate, where it came from, and the intermediates sent with it.

    ``chain`` holds what a trusted proxy forwarded besides the leaf: untrusted path-building hints for
    :func:`broker.pki.path.verify_path`, never a source of trust.
    """

    certificate: x509.Certificate | None
    via: Via
    untrusted_header: bool = False
    chain: tuple[x509.Certificate, ...] = ()


def _address(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not text:
        return None
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _without_port(hop: str) -> str | None:
    """The address of a hop written with its port, as some proxies append it (Azure Application Gateway:
    ``203.0.113.9:52144``; IPv6 bracketed, ``[2001:db8::7]:52144``, the form of RFC 7239 §6) or of a bracketed IPv6
    address without one; None for anything else."""
    if hop.startswith("["):
        address, bracket, rest = hop[1:].partition("]")
        if not bracket or (rest and not (rest.startswith(":") and _is_port(rest[1:]))):
            return None
        version = 6
    else:
        address, colon, port = hop.partition(":")
        if not (colon and _is_port(port)):
            return None
        version = 4
    try:
        return address if ipaddress.ip_address(address).version == version else None
    except ValueError:
        return None


def _is_port(text: str) -> bool:
    return 0 < len(text) <= 5 and text.isascii() and text.isdigit() and 0 < int(text) <= 65535


class CertificateSourceResolver:
    """Decides which certificate (if any) a request presents."""

    def __init__(self, proxy: ProxyConfig) -> None:
        self._proxy = proxy
        self._limits = HeaderLimits(proxy.max_bytes, proxy.max_chain_certificates)
        self.header = proxy.header
        # Envoy carries the chain inside its one header; the configuration refuses chain_header there
        self.chain_header = proxy.chain_header
        # header values as received -> what they decode to; refusals are not kept (they raise every time)
        self._forwarded: LruCache[tuple[str | None, str | None], ForwardedCertificate] = \
            LruCache(DECODED_CERTIFICATES)
        self._tls: LruCache[str, x509.Certificate] = LruCache(DECODED_CERTIFICATES)
        # peer address as received -> whether it is a trusted proxy (asked twice a request, mostly for one
        # or a few proxy addresses; parsing the address each time cost more than the rest of the decision)
        self._trusted: LruCache[str, bool] = LruCache(TRUST_DECISIONS)

    def is_trusted_proxy(self, remote_addr: str | None) -> bool:
        if not remote_addr or not self._proxy.trusted_networks:
            return False
        trusted = self._trusted.get(remote_addr)
        if trusted is None:
            ip = _address(remote_addr)
            trusted = ip is not None and any(ip in net for net in self._proxy.trusted_networks)
            self._trusted.put(remote_addr, trusted)
        return trusted

    def client_address(self, remote_addr: str | None, forwarded_for: str | None) -> str | None:
        """The user's address: from a trusted proxy, the last hop it appended to X-Forwarded-For.

        From a trusted proxy without a readable last hop the address is unknown (None), never the proxy's own:
        every user behind it would otherwise share one address, in the audit trail and in the failed-login
        limit (where one user's failures would lock out all the others).
        """
        if not self.is_trusted_proxy(remote_addr):
            return remote_addr
        hop = forwarded_for.split(",")[-1].strip() if forwarded_for else ""
        if _address(hop) is not None:
            return hop
        return _without_port(hop)

    def resolve(self, remote_addr: str | None, header_value: str | None, tls_pem: str | None,
                chain_value: str | None = None) -> PresentedCertificate:
        """The certificate for this request.

        ``tls_pem`` is the peer certificate of the broker's own TLS connection
        (the demo server); ``header_value`` and ``chain_value`` the proxy's
        certificate and chain headers as received (in the configured format).
        Raises :class:`ProxyHeaderRejected` for a trusted proxy's bad header,
        :class:`CertificateRejected` (``certificate_malformed``) for an
        unreadable TLS certificate.
        """
        untrusted = False
        if header_value is not None or chain_value is not None:
            if self.is_trusted_proxy(remote_addr):
                forwarded = self._decoded(header_value, chain_value)
                if forwarded is None:
                    return PresentedCertificate(None, "none")
                return PresentedCertificate(forwarded.certificate, "proxy", chain=forwarded.chain)
            untrusted = True
        if tls_pem:
            cert = self._tls.get(tls_pem)
            if cert is None:
                try:
                    cert = read_certificate(tls_pem.encode("ascii", "replace"), pem=True)
                except UnreadableCertificate as exc:
                    raise CertificateRejected("certificate_malformed", str(exc)) from None
                self._tls.put(tls_pem, cert)
            return PresentedCertificate(cert, "tls", untrusted_header=untrusted)
        return PresentedCertificate(None, "none", untrusted_header=untrusted)

    def _decoded(self, header_value: str | None, chain_value: str | None) -> ForwardedCertificate | None:
        """:func:`decode` of a trusted proxy's headers, kept per distinct value (it is a function of the values
        and of this configuration alone)."""
        key = (header_value, chain_value)
        forwarded = self._forwarded.get(key)
        if forwarded is None:
            forwarded = decode(self._proxy.format, header_value, chain_value, self._limits)
            if forwarded is not None:
                self._forwarded.put(key, forwarded)
        return forwarded
