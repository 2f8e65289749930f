"""What each reverse proxy writes into its client-certificate header, for tests of the broker's parsers.

Each encoder is the proxy's own transformation, as its documentation and source describe it:

* nginx ``$ssl_client_escaped_cert``: the PEM, URL-encoded;
* HAProxy ``%[ssl_c_der,base64]`` / ``%[ssl_c_chain_der,base64]``: base64 of the DER (the chain's
  certificates concatenated);
* Apache ``%{SSL_CLIENT_CERT}s`` through mod_headers: the PEM with its line breaks turned into spaces;
  ``SSL_CLIENT_CERT_CHAIN_n`` one per position, ``(null)`` past the end;
* Envoy ``x-forwarded-client-cert``: ``By``, ``Hash``, ``Cert`` (URL-encoded PEM), ``Chain`` (the URL-encoded
  PEM of the leaf and the chain), ``Subject``, ``URI``;
* RFC 9440: ``:base64(DER):`` and a comma-separated list of them.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from urllib.parse import quote

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from broker.pki.proxy_headers import ProxyFormat


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(Encoding.PEM).decode("ascii")


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


def nginx(pems: Sequence[str]) -> str:
    return quote("".join(pems), safe="")


def haproxy(ders: Sequence[bytes]) -> str:
    return base64.b64encode(b"".join(ders)).decode("ascii")


def apache(pems: Sequence[str], positions: int = 0) -> str:
    """One PEM, or a chain of ``positions`` variables (``(null)`` where the chain has ended)."""
    values = [p.replace("\n", " ") for p in pems]
    values += ["(null)"] * (positions - len(values))
    return " ".join(values) if values else "(null)"


def sf_binary(data: bytes) -> str:
    return ":" + base64.b64encode(data).decode("ascii") + ":"


def envoy_element(cert: x509.Certificate, chain: Sequence[x509.Certificate] = (), *,
                  by: str = "spiffe://proxy.example.se/envoy") -> str:
    """One XFCC element as Envoy writes it with ``set_current_client_cert_details`` cert, chain, subject, uri."""
    parts = [f"By={by}", f"Hash={hashlib.sha256(der(cert)).hexdigest()}", f'Cert="{quote(pem(cert), safe="")}"']
    if chain:
        parts.append(f'Chain="{quote("".join(pem(c) for c in (cert, *chain)), safe="")}"')
    subject = cert.subject.rfc4514_string().replace('"', '\\"')
    parts += [f'Subject="{subject}"', "URI="]
    return ";".join(parts)


def headers_for(fmt: ProxyFormat, cert: x509.Certificate | None,
                chain: Sequence[x509.Certificate] = ()) -> tuple[str | None, str | None]:
    """(leaf header value, chain header value) as the proxy of ``fmt`` sends them; None: not sent."""
    if fmt == "envoy_xfcc":
        return (envoy_element(cert, chain) if cert is not None else None), None
    if cert is None:
        return {"nginx_escaped_pem": ("", None), "haproxy_base64_der": ("", None),
                "apache_pem": ("(null)", "(null) (null)"), "rfc9440": (None, None)}[fmt]
    leaf, chain_value = {
        "nginx_escaped_pem": (nginx([pem(cert)]), nginx([pem(c) for c in chain])),
        "haproxy_base64_der": (haproxy([der(cert)]), haproxy([der(c) for c in chain])),
        "apache_pem": (apache([pem(cert)]), apache([pem(c) for c in chain], positions=2)),
        "rfc9440": (sf_binary(der(cert)), ", ".join(sf_binary(der(c)) for c in chain)),
    }[fmt]
    return leaf, (chain_value if chain else None)
