"""The reverse proxy's client-certificate configuration, written from the broker's own configuration.

The CA names the proxy advertises decide which certificates browsers offer; when they drift from the
municipalities configured here, users "do not see their certificate". Generating the proxy's bundle
from the same configuration removes the drift; `broker readiness` proves the live result.

nginx (http_ssl_module, http_proxy_module):

* ``ssl_verify_client optional_no_ca``: ask every browser for a certificate in the handshake (never
  per location: that would need renegotiation, impossible over HTTP/2 and TLS 1.3), advertise the
  bundle's CA names (``ssl_client_certificate``), and let the broker judge and explain;
* ``proxy_set_header <header> $ssl_client_escaped_cert``: forward the certificate; setting the header
  replaces any copy a client sent (and an empty value removes it), so only this proxy's view arrives. That holds
  in the snippet's own locations only (nginx gives a location none of another's proxy_set_header), so a request
  carrying a client's copy is refused (400) in the server block, before any location is chosen;
* ``proxy_set_header X-Forwarded-For $remote_addr``: the client address, replaced, not appended to;
* /metrics and /admin/ are not for the public: 404 at the proxy.

HAProxy and Apache get the same bundle and the same rules in their words (:func:`haproxy`, :func:`apache`):
ask every client in the handshake without judging, advertise the bundle, replace the client's copy of the
header, forward the certificate in the format the broker is configured for (refused when that proxy cannot
write it), and close the operators' endpoints.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from broker.config.loader import Settings
from broker.config.schema import ProxyConfig
from broker.pki.proxy_headers import ProxyFormat
from broker.slow_clients import longest_request_seconds

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


def client_ca_bundle(settings: Settings) -> ProxyFiles:
    """The client-CA bundle alone, whatever ``client_certificate.proxy.format`` says: for a proxy whose
    configuration is written by hand (Envoy's ``validation_context.trusted_ca``, a load balancer sending RFC
    9440 headers), which must advertise the same CA names (docs/proxies.md)."""
    cas = client_cas(settings)
    return ProxyFiles({BUNDLE: _bundle(cas)}, cas)


def nginx(settings: Settings, *, out_dir: str, upstream: str, now: dt.datetime,
          upstream_ca: str | None = None) -> ProxyFiles:
    """The bundle, the snippet to include in the broker's ``server`` block, and a complete example server.

    An https ``upstream`` is verified: nginx does not check a backend's certificate unless told to
    (``proxy_ssl_verify`` is off by default), and the certificate header the broker trusts travels over that
    connection. ``upstream_ca`` (the file, as nginx opens it, of the CAs that issued the backend's certificate)
    is then required; the backend's certificate must name the host of ``upstream``."""
    proxy = _proxy_settings(settings, "nginx")
    # nginx has no variable for the client's chain: a configured chain header is only cleared of client copies
    chain = f'\n    proxy_set_header {proxy.chain_header} "";' if proxy.chain_header is not None else ""
    # an upstream block's name (http://broker) or an https backend will do for nginx
    parts = _upstream(upstream, ("http", "https"), port_required=False)
    if parts.scheme == "https" and not upstream_ca:
        raise ValueError(f"--upstream {upstream!r} is https: nginx must verify the backend's certificate; give "
                         "--upstream-ca, the file of the CA certificates that issued it")
    if parts.scheme != "https" and upstream_ca:
        raise ValueError(f"--upstream-ca is for an https upstream; {upstream!r} is not one")
    verify_backend = "" if parts.scheme != "https" else f"""\
    # the backend's certificate verified (nginx's default is not to) under the upstream's name
    proxy_ssl_verify on;
    proxy_ssl_trusted_certificate {upstream_ca};
    proxy_ssl_verify_depth 3;
    proxy_ssl_server_name on;
    proxy_ssl_protocols TLSv1.2 TLSv1.3;
"""
    cas = client_cas(settings)
    bundle = _bundle(cas)
    header = proxy.header
    depth = _verify_depth(settings)
    wait = _upstream_wait(settings)
    stamp = _stamp("nginx", now, cas)
    refusals = "".join(f'if ($http_{name.lower().replace("-", "_")} != "") {{ return 400; }}\n'
                       for name in (header, proxy.chain_header) if name is not None)
    forward = f"""    proxy_pass {parts.scheme}://{parts.netloc};
{verify_backend}    # The certificate as nginx received it; this replaces any {header} a client sent.
    proxy_set_header {header} $ssl_client_escaped_cert;{chain}
    proxy_set_header X-Forwarded-For $remote_addr;
    proxy_set_header X-Forwarded-Proto $scheme;
    proxy_set_header Host $host;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    # as long as a login may take (revocation sources asked in turn), so the user gets the broker's answer
    proxy_read_timeout {wait}s;
    # SAML messages travel in form posts of some tens of kilobytes
    client_max_body_size 1m;
"""
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

# A client's own copy of the certificate header is refused here, before any location is chosen: the
# proxy_set_header lines below replace it only in these locations, and any other (one of your own) would pass it
# on to the broker, which believes this proxy.
{refusals}
# A location of your own for the broker's paths (/saml/ ...) inherits none of the proxy_set_header below (they
# are this location's): repeat them there, or every login through it arrives without the certificate
# (`broker readiness --login` asks below /saml/idp/ and shows it).
location / {{
{forward}}}

# A certificate OpenSSL finds fault with other than by its unknown CA (expired, not yet valid, a signature that
# does not verify, an issuer missing above an advertised CA) is no error optional_no_ca forgives: nginx would
# answer 495 with its own bare "400 The SSL certificate error" page. The request goes to the broker instead,
# as it came (method, body, the certificate), so that the user learns why; the operators' endpoints stay closed.
error_page 495 = @broker_certificate_error;
location @broker_certificate_error {{
    if ($uri ~ "^/metrics$|^/admin/") {{ return 404; }}
{forward}}}
"""
    host = _host(settings)
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
    return ProxyFiles({BUNDLE: bundle, SNIPPET: snippet, EXAMPLE: example}, cas)


# --- HAProxy and Apache: the same material, in their words ------------------------------------------------------

HAPROXY = "broker-haproxy.cfg"
APACHE = "broker-apache.conf"
APACHE_EXAMPLE = "broker-apache-vhost.example.conf"

# the formats each proxy can write from its own variables, first the one it writes natively
PROXY_FORMATS: dict[str, tuple[ProxyFormat, ...]] = {
    "nginx": ("nginx_escaped_pem",),
    "haproxy": ("haproxy_base64_der", "rfc9440"),
    "apache": ("apache_pem",),
}


def _proxy_settings(settings: Settings, proxy: str) -> ProxyConfig:
    """The broker's proxy settings, refused when ``proxy`` cannot write the configured format."""
    configured = settings.broker.client_certificate.proxy
    if configured.format not in PROXY_FORMATS[proxy]:
        wanted = " or ".join(PROXY_FORMATS[proxy])
        raise ValueError(f"client_certificate.proxy.format is {configured.format}, which {proxy} does not write; "
                         f"set it to {wanted}")
    return configured


def _upstream(upstream: str, schemes: tuple[str, ...] = ("http",), *, port_required: bool = True) -> SplitResult:
    """``--upstream``: where the proxy sends requests (scheme, host and, for HAProxy and Apache, port)."""
    parts = urlsplit(upstream)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in schemes or not parts.hostname or (port_required and not port) \
            or parts.path not in ("", "/"):
        raise ValueError(f"--upstream {upstream!r}: expected http://host:port (the address `broker serve` binds)")
    return parts


def _bundle(cas: dict[str, tuple[x509.Certificate, ...]]) -> str:
    """Each CA once, named with the municipalities it issues to: a CA shared by several (Efos, SITHS e-id) listed
    twice would only lengthen the CertificateRequest's list of names."""
    if not cas:
        raise ValueError("no municipality logs in with certificates: nothing to advertise")
    return "".join(f"# {', '.join(mids)}: {cert.subject.rfc4514_string()} (valid until "
                   f"{cert.not_valid_after_utc:%Y-%m-%d})\n" + cert.public_bytes(serialization.Encoding.PEM).decode()
                   for cert, mids in _owned(cas))


def _owned(cas: dict[str, tuple[x509.Certificate, ...]]) -> list[tuple[x509.Certificate, list[str]]]:
    """Each distinct CA certificate of ``cas``, with the municipalities that configure it, in their order."""
    owners: dict[bytes, tuple[x509.Certificate, list[str]]] = {}
    for mid, certs in cas.items():
        for cert in certs:
            owners.setdefault(cert.public_bytes(serialization.Encoding.DER), (cert, []))[1].append(mid)
    return list(owners.values())


def _upstream_wait(settings: Settings) -> int:
    """Seconds the proxy waits for the broker's answer: as long as a request may take within the configuration's
    own deadlines (:func:`broker.slow_clients.longest_request_seconds`: a certificate login asking its revocation
    sources in turn, each within its timeout, which gunicorn lets run), so that the user gets the broker's answer
    (a login, or the refusal that says why) rather than the proxy's 504 while the broker still works."""
    return math.ceil(longest_request_seconds(settings, settings.broker.server.request_timeout.seconds))


def _verify_depth(settings: Settings) -> int:
    return max(m.config.certificate.max_chain_depth for m in settings.municipalities.values()
               if m.config.certificate is not None) + 1


def _stamp(command: str, now: dt.datetime, cas: dict[str, tuple[x509.Certificate, ...]]) -> str:
    return (f"# Written by `broker proxy-config {command}` on {now:%Y-%m-%d %H:%M} UTC: "
            f"{len(_owned(cas))} CA certificates of {', '.join(cas)}.\n"
            "# Do not edit: change the broker's configuration and write again.\n")


def _host(settings: Settings) -> str:
    return urlsplit(settings.broker.idp.base_url).hostname or "login.example.se"


def haproxy(settings: Settings, *, out_dir: str, upstream: str, now: dt.datetime, bind: str = ":443",
            certificate: str | None = None) -> ProxyFiles:
    """The bundle and a frontend and backend to load after the main configuration (HAProxy >= 2.4).

    HAProxy has no include inside a section, and the client-certificate settings belong on the ``bind``
    line, so the file holds the whole frontend: ``crt`` (``certificate``: the server certificate, chain and
    key in one PEM file) and ``ca-file`` (the bundle: the CA names advertised); ``verify optional`` with
    ``ca-ignore-err all crt-ignore-err all`` asks every client and lets every certificate through, as
    nginx's ``optional_no_ca`` does. The header is deleted before it is set, so a client's copy never
    passes, and set only when the client used a certificate; both in the backend, so that they hold for any
    frontend that routes to it, not only the generated one.
    """
    proxy = _proxy_settings(settings, "haproxy")
    netloc = _upstream(upstream).netloc
    if proxy.format == "rfc9440" and proxy.chain_header is not None:
        raise ValueError("HAProxy cannot write Client-Cert-Chain (ssl_c_chain_der is one byte string, not a "
                         "list); remove client_certificate.proxy.chain_header")
    cas = client_cas(settings)
    bundle = _bundle(cas)
    host = _host(settings)
    crt = certificate or f"/etc/haproxy/tls/{host}.pem"
    if proxy.format == "rfc9440":
        forward = [f"http-request set-header {proxy.header} :%[ssl_c_der,base64]: if {{ ssl_c_used }}"]
    else:
        forward = [f"http-request set-header {proxy.header} %[ssl_c_der,base64] if {{ ssl_c_used }}"]
    headers = [proxy.header]
    if proxy.chain_header is not None:
        headers.append(proxy.chain_header)
        forward.append(f"http-request set-header {proxy.chain_header} %[ssl_c_chain_der,base64] if {{ ssl_c_used }}")
    verify = "verify optional ca-ignore-err all crt-ignore-err all"
    removals = "".join(f"    http-request del-header {name}\n" for name in headers)
    setters = "".join(f"    {line}\n" for line in forward)
    config = f"""{_stamp("haproxy", now, cas)}
# Load after the main configuration (its global and defaults sections):
#     haproxy -f /etc/haproxy/haproxy.cfg -f {out_dir}/{HAPROXY}
# and list this proxy's address in broker.yaml client_certificate.proxy.trusted_networks.

frontend broker_https
    mode http
    # Ask for a client certificate in every handshake, advertising exactly the municipalities' CAs (ca-file);
    # the broker, not HAProxy, decides and explains: every verification error is ignored here.
    # crt: the server certificate for {host}, its chain and its key, in one PEM file.
    bind {bind} ssl crt {crt} alpn h2,http/1.1 ca-file {out_dir}/{BUNDLE} {verify}
    timeout client 30s
    # SAML messages travel in query strings and form posts of some kilobytes (tune.bufsize, default 16k)

    # Operators' endpoints are not for the public: 404 for any spelling of them (percent-escapes, dot
    # segments, doubled slashes), judged on the decoded path.
    http-request deny deny_status 404 if {{ path,url_dec -m reg -i (^|/)(metrics|admin)(/|$) }}
    http-request set-header X-Forwarded-Proto https
    default_backend broker

backend broker
    mode http
    # The certificate as HAProxy received it; a client's own {" or ".join(headers)} never passes. Here in the
    # backend, so that this holds for every frontend that routes to the broker (one of your own, say, that
    # serves several sites on port 443 and picks this backend by host name).
{removals}{setters}    http-request set-header X-Forwarded-For %[src]
    timeout connect 5s
    # as long as a login may take (revocation sources asked in turn), so the user gets the broker's answer
    timeout server {_upstream_wait(settings)}s
    server broker1 {netloc}
"""
    return ProxyFiles({BUNDLE: bundle, HAPROXY: config}, cas)


def apache(settings: Settings, *, out_dir: str, upstream: str, now: dt.datetime) -> ProxyFiles:
    """The bundle, a snippet for the broker's ``<VirtualHost>`` and an example virtual host (Apache 2.4).

    ``SSLVerifyClient optional_no_ca`` with ``SSLCACertificateFile`` (the bundle: the CA names advertised)
    asks every client and lets the broker judge. ``RequestHeader set`` replaces any copy of the header a
    client sent; mod_headers writes ``%{SSL_CLIENT_CERT}s`` with its line breaks as spaces, ``(null)`` for
    none. mod_proxy appends the client's address to X-Forwarded-For; the broker reads the last hop.
    """
    proxy = _proxy_settings(settings, "apache")
    netloc = _upstream(upstream).netloc
    cas = client_cas(settings)
    bundle = _bundle(cas)
    depth = _verify_depth(settings)
    headers = [f'RequestHeader set {proxy.header} "%{{SSL_CLIENT_CERT}}s"']
    if proxy.chain_header is not None:
        # one variable per position of the chain the client sent; "(null)" past its end
        positions = " ".join(f"%{{SSL_CLIENT_CERT_CHAIN_{n}}}s" for n in range(depth - 1))
        headers.append(f'RequestHeader set {proxy.chain_header} "{positions}"')
    forward = "".join(f"{line}\n" for line in headers)
    snippet = f"""{_stamp("apache", now, cas)}
# Include inside the <VirtualHost *:443> that serves the broker (mod_ssl, mod_headers, mod_proxy,
# mod_proxy_http and mod_alias loaded), e.g.
#     Include {out_dir}/{APACHE}
# and list this proxy's address in broker.yaml client_certificate.proxy.trusted_networks.

# Ask for a client certificate in every handshake, advertising exactly the municipalities' CAs;
# the broker, not Apache, decides and explains (optional_no_ca: no verdict here).
SSLVerifyClient optional_no_ca
SSLCACertificateFile {out_dir}/{BUNDLE}
SSLVerifyDepth {depth}

# SAML messages travel in query strings of some kilobytes (HTTP-Redirect binding).
LimitRequestLine 32768

# Operators' endpoints are not for the public (Apache matches the decoded, normalised path).
<Location "/metrics">
    Redirect 404
</Location>
<Location "/admin/">
    Redirect 404
</Location>

# The certificate as Apache received it; "set" replaces any copy a client sent.
{forward}RequestHeader set X-Forwarded-Proto https
ProxyPreserveHost On
# as long as a login may take (revocation sources asked in turn), so the user gets the broker's answer
ProxyTimeout {_upstream_wait(settings)}
ProxyPass / http://{netloc}/
ProxyPassReverse / http://{netloc}/
# SAML messages travel in form posts of some tens of kilobytes
LimitRequestBody 1048576
"""
    host = _host(settings)
    example = f"""{_stamp("apache", now, cas)}
# A complete virtual host for the broker's public address ({host}). The certificate is requested for the
# whole host, in the handshake (never per <Location>: that would need renegotiation, impossible over
# HTTP/2 and TLS 1.3).
<VirtualHost *:443>
    ServerName {host}
    SSLEngine on
    SSLCertificateFile    /etc/apache2/tls/{host}.fullchain.pem
    SSLCertificateKeyFile /etc/apache2/tls/{host}.key
    SSLProtocol           -all +TLSv1.2 +TLSv1.3

    Include {out_dir}/{APACHE}
</VirtualHost>
"""
    return ProxyFiles({BUNDLE: bundle, APACHE: snippet, APACHE_EXAMPLE: example}, cas)
