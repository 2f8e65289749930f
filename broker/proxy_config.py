"""The reverse proxy's client-certificate configuration, written from the broker's own configuration.

The CA names the proxy advertises decide which certificates browsers offer; when they drift from the
municipalities configured here, users "do not see their certificate". Generating the proxy's bundle
from the same configuration removes the drift; `broker readiness` proves the live result.

nginx (http_ssl_module, http_proxy_module):

* ``ssl_verify_client optional_no_ca``: ask every browser for a certificate in the handshake (never
  per location: that would need renegotiation, impossible over HTTP/2 and TLS 1.3), advertise the
  bundle's CA names (``ssl_client_certificate``), and let the broker judge and explain;
* ``proxy_set_header <header> $ssl_client_escaped_cert``: forward the certificate; setting the header
  replaces any copy a client sent (and an empty value removes it), so only this proxy's view arrives;
* ``proxy_set_header X-Forwarded-For $remote_addr``: the client address, replaced, not appended to;
* /metrics and /admin/ are not for the public: 404 at the proxy.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from broker.config.loader import Settings

BUNDLE = "broker-client-cas.pem"
SNIPPET = "broker-client-auth.conf"
EXAMPLE = "broker-server.example.conf"


@dataclass(frozen=True)
class ProxyFiles:
    """File name → content; ``cas``: the certificates in the bundle, by municipality."""

    files: dict[str, str]
    cas: dict[str, tuple[x509.Certificate, ...]]


def client_cas(settings: Settings) -> dict[str, tuple[x509.Certificate, ...]]:
    """Every certificate municipality's anchors and intermediates (suspended ones too: their users get the
    broker's explanation instead of a browser that shows no certificate)."""
    return {m.id: (*m.config.certificate.anchors(), *m.config.certificate.intermediate_certificates())
            for m in sorted(settings.municipalities.values(), key=lambda m: m.id) if m.config.certificate is not None}


def nginx(settings: Settings, *, out_dir: str, upstream: str, now: dt.datetime) -> ProxyFiles:
    """The bundle, the snippet to include in the broker's ``server`` block, and a complete example server."""
    parts = urlsplit(upstream)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        raise ValueError(f"--upstream {upstream!r}: expected http://host:port (the address `broker serve` binds)")
    cas = client_cas(settings)
    if not cas:
        raise ValueError("no municipality logs in with certificates: nothing to advertise")
    bundle = []
    for mid, certs in cas.items():
        for cert in certs:
            until = cert.not_valid_after_utc
            bundle.append(f"# {mid}: {cert.subject.rfc4514_string()} (valid until {until:%Y-%m-%d})\n"
                          + cert.public_bytes(serialization.Encoding.PEM).decode())
    header = settings.broker.client_certificate.proxy.header
    depth = max(m.config.certificate.max_chain_depth for m in settings.municipalities.values()
                if m.config.certificate is not None) + 1
    stamp = f"# Written by `broker proxy-config nginx` on {now:%Y-%m-%d %H:%M} UTC: {sum(map(len, cas.values()))} " \
            f"CA certificates of {', '.join(cas)}.\n# Do not edit: change the broker's configuration and write again.\n"
    snippet = f"""{stamp}
# Include inside the server block (not a location) that serves the broker, e.g.
#     include {out_dir}/{SNIPPET};
# and list this proxy's address in broker.yaml client_certificate.proxy.trusted_networks.

# Ask for a client certificate in every handshake, advertising exactly the municipalities' CAs;
# the broker, not nginx, decides and explains (optional_no_ca: no verdict here).
ssl_verify_client      optional_no_ca;
ssl_client_certificate {out_dir}/{BUNDLE};
ssl_verify_depth       {depth};

# SAML messages travel in query strings of some kilobytes (HTTP-Redirect binding).
large_client_header_buffers 4 32k;

# Operators' endpoints are not for the public.
location = /metrics {{ return 404; }}
location ^~ /admin/ {{ return 404; }}

location / {{
    proxy_pass {parts.scheme}://{parts.netloc};
    # The certificate as nginx received it; this replaces any {header} a client sent.
    proxy_set_header {header} $ssl_client_escaped_cert;
    proxy_set_header X-Forwarded-For $remote_addr;
    proxy_set_header X-Forwarded-Proto $scheme;
    proxy_set_header Host $host;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_read_timeout 30s;
    # SAML messages travel in form posts of some tens of kilobytes
    client_max_body_size 1m;
}}
"""
    host = urlsplit(settings.broker.idp.base_url).hostname or "login.example.se"
    example = f"""{stamp}
# A complete server block for the broker's public address ({host}). HTTP/2 is fine here because
# the certificate is requested for the whole host, in the handshake.
server {{
    listen 443 ssl;
    http2 on;              # nginx >= 1.25.1; older: "listen 443 ssl http2;"
    server_name {host};

    ssl_certificate     /etc/nginx/tls/{host}.fullchain.pem;
    ssl_certificate_key /etc/nginx/tls/{host}.key;
    ssl_protocols       TLSv1.2 TLSv1.3;

    include {out_dir}/{SNIPPET};
}}
"""
    return ProxyFiles({BUNDLE: "".join(bundle), SNIPPET: snippet, EXAMPLE: example}, cas)
