"""What the public login endpoints really ask of browsers (the evening-before-go-live failure).

Browsers offer only certificates that chain to a CA named in the server's CertificateRequest
(TLS 1.2 certificate_authorities, RFC 5246 §7.4.4; TLS 1.3 extension, RFC 8446 §4.2.4). A live
handshake reads that list; each municipality's issuing or root CA must be in it. Client
authentication asked later, per path (renegotiation, post-handshake), is impossible over HTTP/2
(RFC 9113 §9.2.1) and unsupported by browsers over TLS 1.3.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography import x509

from broker.config.schema import CertificateLogin
from broker.pki.tls import EndpointProbe, probe_endpoint
from broker.readiness.model import Check, Section, Status
from broker.readiness.trust import issuing_cas, name_of


@dataclass(frozen=True)
class ProbedEndpoint:
    url: str
    probe: EndpointProbe | None
    error: str | None


def probe(url: str, timeout: float) -> ProbedEndpoint:
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        return ProbedEndpoint(url, probe_endpoint(host, parts.port or 443, server_name=host, timeout=timeout), None)
    except OSError as exc:  # no handshake at all: that is the finding
        return ProbedEndpoint(url, None, f"{type(exc).__name__}: {exc}")


def endpoint_section(found: ProbedEndpoint, known: dict[bytes, str], warn_bytes: int) -> Section:
    """Checks about the endpoint itself; ``known`` maps the configured CAs' DER names to their municipality."""
    url = found.url
    p = found.probe
    if p is None:
        return Section("endpoint", url, url, (Check(
            "endpoint.handshake", "fail", "no TLS handshake", f"{url}: {found.error}",
            "Check DNS, firewall and the TLS server at this address.", url),))
    checks = [Check("endpoint.handshake", "pass", "TLS handshake", f"{p.tls_version}, ALPN {p.alpn or 'none'}",
                    None, url)]
    if not p.certificate_requested:
        if p.alpn == "h2":
            checks.append(Check("endpoint.http2_per_path", "fail", "HTTP/2 without a certificate request",
                                "the handshake asks for no client certificate while HTTP/2 is offered: asking per "
                                "path later is impossible over HTTP/2, users never see their certificate",
                                "Request client certificates in the handshake for the whole host "
                                "(nginx: ssl_verify_client optional_no_ca in the server block; `broker proxy-config "
                                "nginx`), or use a separate host name for certificate login.", url))
        else:
            checks.append(Check("endpoint.certificate_request", "fail", "no certificate request in the handshake",
                                "the handshake asks for no client certificate; a per-path request (renegotiation) "
                                "fails with TLS 1.3 and HTTP/2 clients",
                                "Request client certificates in the handshake for the whole host "
                                "(`broker proxy-config nginx`).", url))
    elif not p.ca_names:
        checks.append(Check("endpoint.ca_list_empty", "warn", "empty CA list",
                            "a certificate is requested without naming any CA: browsers offer every certificate, "
                            "and users pick the wrong one", "Advertise exactly the municipalities' CAs "
                            "(`broker proxy-config nginx` writes the bundle).", url))
    else:
        checks.append(Check("endpoint.ca_list", "pass", "CA list advertised",
                            f"{len(p.ca_names)} CA names, {p.ca_list_bytes} bytes", None, url))
        unknown = [n.rfc4514_string() for n in p.ca_names if n.public_bytes() not in known]
        if unknown:
            checks.append(Check("endpoint.ca_list_extra", "warn", "CAs no municipality uses",
                                f"{len(unknown)} advertised CA names belong to no configured municipality: "
                                + "; ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else ""),
                                "Advertise only the configured CAs (`broker proxy-config nginx`), so users are not "
                                "offered certificates the broker refuses.", url))
    if p.ca_list_bytes >= warn_bytes:
        checks.append(Check("endpoint.ca_list_size", "warn", "CA list near the 16 KB limit",
                            f"{p.ca_list_bytes} bytes advertised; some servers and clients cut lists near 16 KB",
                            "Advertise only the issuing CAs, not whole bundles.", url))
    advertised = [n.rfc4514_string() for n in p.ca_names]
    return Section("endpoint", url, url, tuple(checks),
                   {"tls_version": p.tls_version, "alpn": p.alpn, "certificate_requested": p.certificate_requested,
                    "advertised": advertised, "ca_list_bytes": p.ca_list_bytes})


def advertised_check(cl: CertificateLogin, found: ProbedEndpoint) -> Check:
    """Will the municipality's users be offered their certificate at this endpoint?"""
    url = found.url
    p = found.probe
    if p is None:
        return Check("endpoint.advertises", "fail", "endpoint not reachable", f"{url}: {found.error}",
                     "Fix the endpoint first (see its own checks).", url)
    if not p.certificate_requested:
        return Check("endpoint.advertises", "fail", "no certificate requested",
                     f"{url} asks for no client certificate in the handshake", "See the endpoint's checks.", url)
    if not p.ca_names:
        return Check("endpoint.advertises", "warn", "any certificate offered",
                     f"{url} names no CA: the users' certificates are offered among all others",
                     "Advertise the municipalities' CAs (`broker proxy-config nginx`).", url)
    names = {n.public_bytes() for n in p.ca_names}
    anchors = [c for c in cl.anchors() if c.subject.public_bytes() in names]
    issuing = issuing_cas(cl)
    missing = [c for c in issuing if c.subject.public_bytes() not in names]
    if anchors or not missing:
        shown = anchors or list(issuing)
        return Check("endpoint.advertises", "pass", "users will be offered their certificate",
                     f"{url} advertises {', '.join(name_of(c) for c in shown)}", None, url)
    status: Status = "fail" if len(missing) == len(issuing) else "warn"
    return Check("endpoint.advertises", status, "certificate will not be offered" if status == "fail"
                 else "some cards will not be offered",
                 f"{url} advertises neither the root ({', '.join(name_of(c) for c in cl.anchors())}) nor "
                 f"{', '.join(name_of(c) for c in missing)}: browsers will not show these users' certificates",
                 "Add the municipality's CA certificates to the endpoint's client-CA bundle (`broker proxy-config "
                 "nginx --out DIR` writes it from this configuration) and reload the proxy.", url)


def configured_names(cas: dict[str, tuple[x509.Certificate, ...]]) -> dict[bytes, str]:
    return {c.subject.public_bytes(): mid for mid, certs in cas.items() for c in certs}
