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
from urllib.parse import unquote

from cryptography import x509

from broker.config.schema import ProxyConfig
from broker.errors import CertificateRejected, ProxyHeaderRejected

Via = Literal["tls", "proxy", "none"]

_PEM_BEGIN = "-----BEGIN CERTIFICATE-----"


@dataclass(frozen=True)
class PresentedCertificate:
    certificate: x509.Certificate | None
    via: Via
    untrusted_header: bool = False


def parse_nginx_escaped_pem(value: str, max_bytes: int) -> x509.Certificate | None:
    """nginx ``$ssl_client_escaped_cert``: the URL-encoded PEM of the leaf only.

    An empty value means no certificate. Exactly one PEM certificate block is
    accepted; anything else is ``proxy_header_malformed``.
    """
    if len(value) > max_bytes:
        raise ProxyHeaderRejected("proxy_header_too_large", f"{len(value)} bytes (limit {max_bytes})")
    if value in ("", "-", "(null)"):
        return None
    try:
        pem = unquote(value, errors="strict") if "%" in value else value
    except UnicodeDecodeError:
        raise ProxyHeaderRejected("proxy_header_malformed", "percent-escapes do not decode as UTF-8") from None
    if pem.count(_PEM_BEGIN) != 1:
        raise ProxyHeaderRejected("proxy_header_malformed",
                                  f"expected one PEM certificate, found {pem.count(_PEM_BEGIN)}")
    try:
        return x509.load_pem_x509_certificate(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise ProxyHeaderRejected("proxy_header_malformed", f"not a PEM certificate ({exc})") from None


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


class CertificateSourceResolver:
    """Decides which certificate (if any) a request presents."""

    def __init__(self, proxy: ProxyConfig) -> None:
        self._proxy = proxy
        self.header = proxy.header

    def is_trusted_proxy(self, remote_addr: str | None) -> bool:
        ip = _address(remote_addr)
        return ip is not None and any(ip in net for net in self._proxy.trusted_networks)

    def client_address(self, remote_addr: str | None, forwarded_for: str | None) -> str | None:
        """The user's address: from a trusted proxy, the last hop it appended to X-Forwarded-For."""
        if forwarded_for and self.is_trusted_proxy(remote_addr):
            hop = forwarded_for.split(",")[-1].strip()
            if _address(hop) is not None:
                return hop
        return remote_addr

    def resolve(self, remote_addr: str | None, header_value: str | None, tls_pem: str | None) -> PresentedCertificate:
        """The certificate for this request.

        ``tls_pem`` is the peer certificate of the broker's own TLS connection
        (the demo server); ``header_value`` the proxy header as received.
        Raises :class:`ProxyHeaderRejected` for a trusted proxy's bad header,
        :class:`CertificateRejected` (``certificate_malformed``) for an
        unreadable TLS certificate.
        """
        untrusted = False
        if header_value is not None:
            if self.is_trusted_proxy(remote_addr):
                cert = parse_nginx_escaped_pem(header_value, self._proxy.max_bytes)
                return PresentedCertificate(cert, "proxy" if cert is not None else "none")
            untrusted = True
        if tls_pem:
            try:
                cert = x509.load_pem_x509_certificate(tls_pem.encode("ascii"))
            except ValueError as exc:
                raise CertificateRejected("certificate_malformed", str(exc)) from None
            return PresentedCertificate(cert, "tls", untrusted_header=untrusted)
        return PresentedCertificate(None, "none", untrusted_header=untrusted)
