"""What the public login endpoints really ask of browsers (the evening-before-go-live failure).

Browsers offer only certificates that chain to a CA named in the server's CertificateRequest
(TLS 1.2 certificate_authorities, RFC 5246 §7.4.4; TLS 1.3 extension, RFC 8446 §4.2.4). A live
handshake reads that list; each municipality's issuing or root CA must be in it. Client
authentication asked later, per path (renegotiation, post-handshake), is impossible over HTTP/2
(RFC 9113 §9.2.1) and unsupported by browsers over TLS 1.3.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from cryptography import x509

from broker.config.schema import CertificateLogin
from broker.pki.tls import EndpointProbe, probe_endpoint
from broker.readiness.model import Check, Section
from broker.readiness.trust import issuing_cas, name_of, validity_check


@dataclass(frozen=True)
class ProbedEndpoint:
    url: str
    probe: EndpointProbe | None
    error: str | None


def probe(url: str, timeout: float) -> ProbedEndpoint:
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port or 443  # .port raises for a port that is none
        return ProbedEndpoint(url, probe_endpoint(host, port, server_name=host, timeout=timeout), None)
    except (OSError, ValueError) as exc:  # no handshake at all (or no address to try one with): the finding
        return ProbedEndpoint(url, None, f"{type(exc).__name__}: {exc}")


def endpoint_section(found: ProbedEndpoint, known: dict[bytes, x509.Name], warn_bytes: int, *,
                     now: dt.datetime | None = None, window: dt.timedelta = dt.timedelta(days=30)) -> Section:
    """Checks about the endpoint itself; ``known``: the configured CAs' names (:func:`configured_names`). With
    ``now``, also its own server certificate (valid, not expiring within ``window``, for the URL's host)."""
    url = found.url
    p = found.probe
    if p is None:  # the documented keys, empty: a consumer of the JSON reads this endpoint like any other
        return Section("endpoint", url, url, (Check(
            "endpoint.handshake", "fail", "no TLS handshake", f"{url}: {found.error}",
            "Check DNS, firewall and the TLS server at this address.", url),),
            {"tls_version": None, "alpn": None, "certificate_requested": None, "advertised": [], "ca_list_bytes": 0})
    checks = [Check("endpoint.handshake", "pass", "TLS handshake", f"{p.tls_version}, ALPN {p.alpn or 'none'}",
                    None, url)]
    if now is not None and p.server_certificates:
        checks.append(_server_certificate(url, p.server_certificates[0], now, window))
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
        unknown = [n.rfc4514_string() + (f" (a configured CA's name in another encoding, {_string_types(n)}: "
                                         "browsers compare the bytes)" if n in known.values() else "")
                   for n in p.ca_names if n.public_bytes() not in known]
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


REGENERATE_BUNDLE = ("Regenerate the proxy's client-CA bundle from this configuration (`broker proxy-config nginx "
                     "--config DIR --out DIR`; `haproxy` or `apache` for those proxies), reload the proxy, and run "
                     "`broker readiness` again.")


def advertised_check(cl: CertificateLogin, found: ProbedEndpoint) -> Check:
    """Will each of the municipality's users be offered their certificate at this endpoint?

    A browser offers a certificate when the CertificateRequest names its issuer, or a CA it can build a path
    to from certificates it holds (RFC 5246 §7.4.4: the names "may specify a desired distinguished name for a
    root CA or for a subordinate CA"; RFC 8446 §4.2.4). So the municipality passes when every issuing CA is
    named, or a CA above it on its own path, such as its root (then the PCs must hold the intermediates, as
    smart-card middleware installs them). An issuing CA named neither itself nor through a CA above it is the
    go-live failure for every holder of its cards: FAIL, even when the other issuing CAs are advertised, or
    the root of another hierarchy of the municipality's.
    """
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
                     "Name the municipalities' CAs in the certificate request. " + REGENERATE_BUNDLE, url)
    names = {n.public_bytes() for n in p.ca_names}
    issuing = issuing_cas(cl)
    present = [c for c in issuing if c.subject.public_bytes() in names]
    missing = [c for c in issuing if c.subject.public_bytes() not in names]
    if not missing:
        return Check("endpoint.advertises", "pass", "users will be offered their certificate",
                     f"{url} advertises {_names(present)}", None, url)
    # an issuing CA not named itself is covered only by a CA above it on its own path: the root of another
    # hierarchy (a municipality changing CA generation has two) offers none of its cards
    covering = {id(c): [a for a in _above(c, cl) if a.subject.public_bytes() in names] for c in missing}
    uncovered = [c for c in missing if not covering[id(c)]]
    if not uncovered:
        above = _distinct(a for c in missing for a in covering[id(c)])
        all_roots = all(a in cl.anchors() for a in above)
        also = f" and {_names(present)}" if present else ""
        return Check("endpoint.advertises", "pass", "users will be offered their certificate",
                     f"{url} advertises the {'root' if all_roots else 'CA'}{'s' if len(above) > 1 else ''} "
                     f"{_names(above)}{also}, not the {_issuing(missing)}: browsers offer those cards only on PCs "
                     f"that hold {_names(missing)} to build the chain to {'the root' if all_roots else 'them'} "
                     "(smart-card middleware usually installs it; /diagnose on a PC shows whether a certificate "
                     "arrives)", None, url)
    covered = [c for c in issuing if c not in uncovered]
    title = "certificate will not be offered" if not covered else "some cards will not be offered"
    roots = _distinct(a for c in uncovered for a in _above(c, cl) if a in cl.anchors()) or list(cl.anchors())
    what = f"neither the root ({_names(roots)}) nor the {_issuing(uncovered)}" \
        if cl.intermediate_certificates() else f"not the root {_names(uncovered)}"
    twins = [twin for cert in [*roots, *uncovered] if (twin := encoding_twin(cert.subject, p.ca_names))]
    return Check("endpoint.advertises", "fail", title,
                 f"{url} advertises {what}: browsers will not show these card holders' certificates"
                 + (f" (of the municipality's issuing CAs only {_names(covered)} "
                    f"{'is' if len(covered) == 1 else 'are'} offered)" if covered else "")
                 + "".join(f"; {twin}" for twin in twins),
                 REGENERATE_BUNDLE + (" Take the names from the configured CA certificates themselves: browsers "
                                      "compare the encoded bytes." if twins else ""), url)


def _above(cert: x509.Certificate, cl: CertificateLogin) -> list[x509.Certificate]:
    """The configured CAs above ``cert`` on its paths, nearest first: those whose subject is its issuer's name,
    then theirs (RFC 5280 §4.1.2.4 name chaining; a browser offers a card whose chain it can build to a named
    CA). Self-issued certificates end the walk."""
    cas = [*cl.intermediate_certificates(), *cl.anchors()]
    found: list[x509.Certificate] = []
    level = [cert]
    while level:
        parents = _distinct(ca for child in level if child.issuer != child.subject
                          for ca in cas if ca.subject == child.issuer and ca not in found and ca is not cert)
        found += parents
        level = parents
    return found


def _distinct(certs: Iterable[x509.Certificate]) -> list[x509.Certificate]:
    return list(dict.fromkeys(certs))  # in order, each once


def _server_certificate(url: str, leaf: x509.Certificate, now: dt.datetime, window: dt.timedelta) -> Check:
    """The login page's own certificate: browsers block an expired one, or one for another host, before any
    client certificate is asked for (RFC 6125 §6.4: the subjectAltName's DNS names and IP addresses)."""
    host = urlsplit(url).hostname or ""
    fix = "Renew the login host's TLS certificate (for this host name) and reload the proxy."
    if not _names_host(leaf, host):
        return Check("endpoint.server_certificate", "fail", "server certificate for another host",
                     f"{name_of(leaf)} names {', '.join(_san_names(leaf)) or 'no subjectAltName'}, not {host}", fix,
                     url, leaf.not_valid_after_utc)
    found = validity_check("endpoint.server_certificate", "server certificate", leaf, now, window, fix=fix)
    return replace(found, subject=url)


def _san_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [*san.get_values_for_type(x509.DNSName), *(str(ip) for ip in san.get_values_for_type(x509.IPAddress))]


def _names_host(cert: x509.Certificate, host: str) -> bool:
    """Whether ``cert``'s subjectAltName names ``host``: an IP address exactly, a DNS name case-insensitively or
    through a wildcard for the leftmost label only (RFC 6125 §6.4.3)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    host = host.lower().rstrip(".")
    for name in _san_names(cert):
        if address is not None:
            if name == str(address):
                return True
            continue
        dns = name.lower().rstrip(".")
        if dns == host or (dns.startswith("*.") and "." in host and host.split(".", 1)[1] == dns[2:]):
            return True
    return False


def encoding_twin(configured: x509.Name, advertised: Sequence[x509.Name]) -> str | None:
    """Why a configured CA name that is not advertised byte for byte may look as if it were: an advertised name
    with the same attributes and values in another string encoding (PrintableString for UTF8String, say). A
    browser matches the CertificateRequest's names against its certificates' issuer names by their encoded
    bytes, so such a name does not offer the card; a certificate re-issued or copied with other string types
    is the usual cause."""
    for name in advertised:
        if name == configured and name.public_bytes() != configured.public_bytes():
            return (f"{configured.rfc4514_string()} is advertised with the same text but another encoding "
                    f"({_string_types(name)}, where the CA's own certificate has {_string_types(configured)})")
    return None


def _string_types(name: x509.Name) -> str:
    """Each attribute's ASN.1 string type, as ``CN=UTF8String, O=UTF8String, C=PrintableString``."""
    types = [(attribute.rfc4514_attribute_name, getattr(attribute, "_type", None)) for attribute in name]
    return ", ".join(f"{key}={kind.name}" for key, kind in reversed(types) if kind is not None) or "unknown types"


def _names(certs: Sequence[x509.Certificate]) -> str:
    return ", ".join(name_of(c) for c in certs)


def _issuing(certs: Sequence[x509.Certificate]) -> str:
    return f"issuing CA{'s' if len(certs) > 1 else ''} {_names(certs)}"


def configured_names(cas: dict[str, tuple[x509.Certificate, ...]]) -> dict[bytes, x509.Name]:
    """The configured CAs' names, by their encoded bytes (what a CertificateRequest's names are compared by)."""
    return {c.subject.public_bytes(): c.subject for certs in cas.values() for c in certs}
