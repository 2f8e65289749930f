"""What the public login endpoints really ask of browsers (the evening-before-go-live failure).

Browsers offer only certificates that chain to a CA named in the server's CertificateRequest
(TLS 1.2 certificate_authorities, RFC 5246 §7.4.4; TLS 1.3 extension, RFC 8446 §4.2.4). A live
handshake reads that list; each municipality's issuing or root CA must be in it. Client
authentication asked later, per path (renegotiation, post-handshake), is impossible over HTTP/2
(RFC 9113 §9.2.1) and unsupported by browsers over TLS 1.3.

A login host name behind a load balancer or DNS round robin resolves to several addresses, and each
browser reaches one of them: every address is probed (with the host name as SNI, RFC 6066 §3), so a
node still serving last year's CA bundle or certificate is found, not only the first one that answers.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import re
import ssl
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from broker.config.schema import CertificateLogin
from broker.origins import Origin, origin
from broker.pki.deadline import resolve_within
from broker.pki.tls import EndpointProbe, probe_endpoint
from broker.readiness.model import RANK, Check, Section, Status
from broker.readiness.trust import issuing_cas, name_of, validity_check

# more addresses than this behind one login host name are not probed (each may take the whole timeout)
MAX_ADDRESSES = 16

Resolver = Callable[[str, int, float], Sequence[str]]


def resolve_addresses(host: str, port: int, timeout: float) -> list[str]:
    """The distinct addresses ``host`` resolves to for TCP, in the resolver's order (a literal: itself), resolved
    within ``timeout`` (a resolver waiting on an unanswering DNS server would hold readiness for its own timeouts)."""
    return list(dict.fromkeys(str(info[4][0]) for info in resolve_within(host, port, timeout)))


@dataclass(frozen=True)
class AddressProbe:
    """One address of an endpoint's host name: what its handshake showed, or why there was none."""

    address: str
    probe: EndpointProbe | None
    error: str | None


@dataclass(frozen=True)
class ProbedEndpoint:
    """An endpoint URL probed at every address its host resolves to. ``probe`` is the first address that
    answered (``error`` the first failure when none did); ``addresses`` each address's own handshake, in the
    resolver's order (empty when the URL has no address to try)."""

    url: str
    probe: EndpointProbe | None
    error: str | None
    addresses: tuple[AddressProbe, ...] = ()
    unprobed: int = 0   # addresses past MAX_ADDRESSES

    def answers(self) -> list[tuple[list[str], EndpointProbe]]:
        """The distinct answers, each with the addresses that gave it, in order of first appearance (one entry
        when every address answers alike)."""
        grouped: dict[tuple[object, ...], tuple[list[str], EndpointProbe]] = {}
        for a in self.addresses:
            if a.probe is not None:
                grouped.setdefault(_answer_key(a.probe), ([], a.probe))[0].append(a.address)
        if not grouped and self.probe is not None:
            return [([], self.probe)]
        return list(grouped.values())


def _answer_key(p: EndpointProbe) -> tuple[object, ...]:
    """Everything the endpoint's checks judge in one answer (two addresses with equal keys get equal checks): the
    offer (:func:`_offer`), whether a browser without a certificate is refused, the protocol and the server's
    certificates."""
    return (_offer(p), p.required is not None, p.alpn, p.tls_version,
            tuple(c.fingerprint(hashes.SHA256()) for c in p.server_certificates))


def _offer(p: EndpointProbe) -> tuple[bool, frozenset[bytes]]:
    """What decides which cards a browser offers at an address: whether a certificate is asked for, and the CA
    names as encoded, as a set (RFC 8446 §4.2.4, RFC 5246 §7.4.4: acceptable CAs, in no meaningful order)."""
    return p.certificate_requested, frozenset(n.public_bytes() for n in p.ca_names)


def probe(url: str, timeout: float, resolve: Resolver = resolve_addresses) -> ProbedEndpoint:
    """Handshake with every address of ``url``'s host (each bounded by ``timeout``), the host name as SNI."""
    try:
        parts = urlsplit(url)
        if parts.scheme.lower() != "https" or not parts.netloc:
            # "localhost:8443" (no host to urlsplit) or "login.region.se" would be a name not found, http:// a
            # TLS handshake on port 443: say what was expected instead
            raise ValueError(f"expected an https:// URL such as https://login.region.se, got {url!r}")
        host, port = parts.hostname or "", parts.port or 443  # .port raises for a port that is none
        addresses = [host] if _ip(host) is not None else list(resolve(host, port, timeout))
        if not addresses:
            raise OSError(f"{host} resolves to no address")
    except (OSError, ValueError) as exc:  # no address to try a handshake with: the finding
        return ProbedEndpoint(url, None, f"{type(exc).__name__}: {exc}")
    found: list[AddressProbe] = []
    for address in addresses[:MAX_ADDRESSES]:
        try:
            found.append(AddressProbe(address, probe_endpoint(address, port, server_name=host, timeout=timeout),
                                      None))
        except (OSError, ValueError) as exc:  # no handshake at this address
            found.append(AddressProbe(address, None, f"{type(exc).__name__}: {exc}"))
    first = next((a for a in found if a.probe is not None), None)
    error = None
    if first is None:
        error = found[0].error if len(found) == 1 else "; ".join(f"{a.address}: {a.error}" for a in found)
    return ProbedEndpoint(url, first.probe if first else None, error, tuple(found),
                          max(0, len(addresses) - MAX_ADDRESSES))


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``host`` as an IP address when it is a literal one, else None (a name to resolve, or to match as DNS)."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def endpoint_section(found: ProbedEndpoint, known: dict[bytes, x509.Name], warn_bytes: int, *,
                     now: dt.datetime | None = None, window: dt.timedelta = dt.timedelta(days=30),
                     roots: Sequence[x509.Certificate] | None = None,
                     without_card: tuple[Status, str] = ("warn", "")) -> Section:
    """Checks about the endpoint itself; ``known``: the configured CAs' names (:func:`configured_names`). With
    ``now``, also its own server certificate (valid, not expiring within ``window``, for the URL's host), and
    with ``roots`` (:func:`server_roots`) the chain it sends (:func:`_server_chain`). ``without_card``: how bad an
    endpoint that refuses browsers without a certificate is, and who is then refused (:func:`without_card`)."""
    url = found.url
    p = found.probe
    addresses = [{"address": a.address, "error": a.error,
                  "advertised": [n.rfc4514_string() for n in a.probe.ca_names] if a.probe else []}
                 for a in found.addresses]
    if p is None:  # the documented keys, empty: a consumer of the JSON reads this endpoint like any other
        return Section("endpoint", url, url, (Check(
            "endpoint.handshake", "fail", "no TLS handshake", f"{url}: {found.error}",
            "Check DNS, firewall and the TLS server at this address.", url),),
            {"tls_version": None, "alpn": None, "certificate_requested": None, "advertised": [], "ca_list_bytes": 0,
             "addresses": addresses})
    answers = found.answers()
    checks = merged([(where, _answer_checks(url, answer, known, warn_bytes, now, window, roots, without_card))
                     for where, answer in answers])
    if len(found.addresses) > 1:
        checks.append(_addresses_check(found, answers))
    advertised = [n.rfc4514_string() for n in p.ca_names]
    return Section("endpoint", url, url, tuple(checks),
                   {"tls_version": p.tls_version, "alpn": p.alpn, "certificate_requested": p.certificate_requested,
                    "advertised": advertised, "ca_list_bytes": p.ca_list_bytes, "addresses": addresses})


def _answer_checks(url: str, p: EndpointProbe, known: dict[bytes, x509.Name], warn_bytes: int,
                   now: dt.datetime | None, window: dt.timedelta,
                   roots: Sequence[x509.Certificate] | None = None,
                   without_card: tuple[Status, str] = ("warn", "")) -> list[Check]:
    """The endpoint's checks on one answer (of one or more of its addresses)."""
    checks = [Check("endpoint.handshake", "pass", "TLS handshake", f"{p.tls_version}, ALPN {p.alpn or 'none'}",
                    None, url)]
    if p.required is not None:
        status, who = without_card
        checks.append(Check(
            "endpoint.certificate_required", status, "a client certificate is required",
            f"{url}: {p.required}: browsers without a certificate are refused by the proxy before the broker "
            f"answers: {who or 'users without a card in the reader'} get the proxy's error instead of the broker's "
            "pages (the explanation, /diagnose)",
            "Make the client certificate optional (nginx: ssl_verify_client optional_no_ca; Apache: SSLVerifyClient "
            "optional_no_ca; `broker proxy-config` writes it): the broker decides and explains.", url))
    if now is not None and p.server_certificates:
        own = _server_certificate(url, p.server_certificates[0], now, window)
        checks.append(own)
        if roots is not None:
            checks.append(_server_chain(url, p.server_certificates, roots, now, judge_trust=own.status != "fail",
                                        window=window))
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
                            "Advertise only the configured municipalities' CAs (`broker proxy-config`), not whole "
                            "bundles of others.", url))
    return checks


def without_card(saml_municipalities: Sequence[str]) -> tuple[Status, str]:
    """How bad an endpoint that requires a client certificate is: FAIL when municipalities log in through their own
    IdP (their users have no card, and the discovery page that sends them there is behind the same proxy), else
    WARN (a user without the card in the reader gets the proxy's error instead of the broker's explanation)."""
    if saml_municipalities:
        return "fail", (f"the users of {', '.join(saml_municipalities)} (they log in through their own IdP, without "
                        "a card, after the discovery page) and every user without a card")
    return "warn", ""


def merged(answers: Sequence[tuple[Sequence[str], Sequence[Check]]]) -> list[Check]:
    """One list of checks from the checks on each distinct answer of an endpoint's addresses: a check every
    answer gives alike once, as it is; otherwise, per check id, the worst of them, its evidence naming the
    addresses of each variant ("at 10.0.0.2: ..."), so the node to fix is in the report."""
    if len(answers) == 1:
        return list(answers[0][1])
    ids = list(dict.fromkeys(c.id for _, checks in answers for c in checks))
    out = []
    for check_id in ids:
        variants = [(where, c) for where, checks in answers for c in checks if c.id == check_id]
        if len(variants) == len(answers) and all(c == variants[0][1] for _, c in variants):
            out.append(variants[0][1])
            continue
        worst_one = max((c for _, c in variants), key=lambda c: RANK[c.status])
        evidence = "; ".join(f"at {', '.join(where)}: {c.evidence}" for where, c in variants)
        absent = [a for where, checks in answers if not any(c.id == check_id for c in checks) for a in where]
        if absent:
            evidence += f" (not at {', '.join(absent)})"
        some = len({c.status for _, c in variants}) > 1 or bool(absent)
        out.append(replace(worst_one, title=worst_one.title + (" at some addresses" if some else ""), evidence=evidence,
                           expires=min((c.expires for _, c in variants if c.expires is not None), default=None)))
    return out


def _addresses_check(found: ProbedEndpoint, answers: list[tuple[list[str], EndpointProbe]]) -> Check:
    """Whether every address of the endpoint's host name answers alike: each browser reaches one of them, so a
    node left with an old client-CA bundle or server certificate fails the users it happens to serve."""
    url = found.url
    silent = [a for a in found.addresses if a.probe is None]
    # an address family no address of the endpoint serves, refusing at once (an AAAA record of a host that
    # listens on IPv4 only, localhost's ::1): browsers go on to the other family without waiting (RFC 8305
    # Happy Eyeballs), so that is a note, not a finding
    served = {_family(a.address) for a in found.addresses if a.probe is not None}
    passed_over = [a for a in silent if _family(a.address) not in served
                   and (a.error or "").startswith(("ConnectionRefusedError", "OSError"))]
    silent = [a for a in silent if a not in passed_over]
    beyond = f"; {found.unprobed} more addresses not probed" if found.unprobed else ""
    if passed_over:
        beyond += (f"; {', '.join(a.address for a in passed_over)} refuse connections or cannot be reached: "
                   "browsers go on to the other addresses at once (RFC 8305)")
    if len({_offer(p) for _, p in answers}) > 1:
        described = "; ".join(f"{', '.join(where)}: {_describe(p)}" for where, p in answers)
        none = "".join(f"; {a.address} gives no handshake ({a.error})" for a in silent)
        return Check("endpoint.addresses", "fail", "the addresses answer differently",
                     f"{url} resolves to {len(found.addresses)} addresses, which answer differently ({described}"
                     f"{none}): users are offered their certificate, or see a valid login page, depending on the "
                     "node they reach" + _differences(answers) + beyond,
                     "Give every node behind this host name the same client-CA bundle (`broker proxy-config` "
                     "output) and server certificate, reload each, and run `broker readiness` again.", url)
    if silent:
        return Check("endpoint.addresses", "warn", "some addresses give no handshake",
                     "; ".join(f"{a.address}: {a.error}" for a in silent)
                     + f" (the other {len(found.addresses) - len(silent)} answer alike){beyond}",
                     "Fix the node at that address or remove it from DNS / the load balancer: browsers that reach "
                     "it wait, then try another address or fail.", url)
    answering = [a.address for a in found.addresses if a.probe is not None]
    if len(answers) > 1:  # the same offer; their own certificates, TLS versions or HTTP/2 are judged in each check
        beyond += "; they differ in " + ", ".join(what for what, differs in (
            ("server certificate", len({p.server_certificates[:1] for _, p in answers}) > 1),
            ("TLS version", len({p.tls_version for _, p in answers}) > 1),
            ("ALPN", len({p.alpn for _, p in answers}) > 1),
            ("whether a certificate is required", len({p.required is not None for _, p in answers}) > 1))
            if differs) + " (" \
            + "; ".join(f"{', '.join(where)}: {_describe(p)}" for where, p in answers) + ")"
    return Check("endpoint.addresses", "pass", "every address answers alike",
                 f"{len(answering)} address{'es' if len(answering) != 1 else ''}: {', '.join(answering)}{beyond}",
                 None, url)


def _family(address: str) -> int:
    ip = _ip(address)
    return ip.version if ip is not None else 0


def _describe(p: EndpointProbe) -> str:
    requested = f"{len(p.ca_names)} CA names" if p.certificate_requested else "no certificate request"
    if p.required is not None:
        requested += ", a certificate required"
    leaf = f", server certificate {name_of(p.server_certificates[0])} until " \
        f"{p.server_certificates[0].not_valid_after_utc:%Y-%m-%d}" if p.server_certificates else ""
    return f"{p.tls_version}, ALPN {p.alpn or 'none'}, {requested}{leaf}"


def _differences(answers: list[tuple[list[str], EndpointProbe]]) -> str:
    """The CA names some addresses advertise and others do not (what makes the difference for a card)."""
    everywhere = set.intersection(*({n.public_bytes() for n in p.ca_names} for _, p in answers))
    notes = []
    for where, p in answers:
        own = [n.rfc4514_string() for n in p.ca_names if n.public_bytes() not in everywhere]
        if own:
            notes.append(f"only {', '.join(where)} advertise{'s' if len(where) == 1 else ''} {'; '.join(own[:5])}"
                         + (" ..." if len(own) > 5 else ""))
    return (": " + "; ".join(notes)) if notes else ""


def login_host_check(base_url: str, probed: Sequence[str]) -> Check:
    """``endpoint.login_host``: the host the SPs send users to (``idp.base_url``: the SSO and ACS locations of the
    broker's metadata) is among the endpoints probed. Its CertificateRequest is the one that decides whether cards
    are offered; a readiness run over another host (a test name, the proxy's internal one) proves nothing there."""
    wanted = _ascii_origin(base_url)
    found = wanted is not None and any(_ascii_origin(url) == wanted for url in probed)
    if found:
        return Check("endpoint.login_host", "pass", "the login host is probed",
                     f"idp.base_url {base_url} is among the endpoints probed", None, base_url)
    return Check("endpoint.login_host", "warn", "the login host is not probed",
                 f"idp.base_url {base_url}, where the service providers send users, is not among the endpoints "
                 f"probed ({', '.join(probed)}): the CA list users meet there is not checked",
                 "Add the login host to readiness.endpoints (or --endpoint).", base_url)


def _ascii_origin(url: str) -> Origin | None:
    """``url``'s origin with its host in A-labels (RFC 5890 §2.3.2.1): ``https://login.kommun-å.se`` as given on the
    command line and ``https://login.xn--kommun--kxa.se`` as the configuration holds it are one host."""
    found = origin(url)
    return None if found is None else (found[0], _a_labels(found[1]), found[2])


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
    if found.probe is None:
        return Check("endpoint.advertises", "fail", "endpoint not reachable", f"{url}: {found.error}",
                     "Fix the endpoint first (see its own checks).", url)
    # a card must be offered at whichever address the browser reaches: the worst address decides
    return merged([(where, [_advertised(cl, url, p)]) for where, p in found.answers()])[0]


def _advertised(cl: CertificateLogin, url: str, p: EndpointProbe) -> Check:
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
    # an issuing CA not named itself is covered only by a CA above it on its own path: the root of another
    # hierarchy (a municipality changing CA generation has two) offers none of its cards
    covering = {id(c): [a for a in _above(c, cl) if a.subject.public_bytes() in names] for c in missing}
    uncovered = [c for c in missing if not covering[id(c)]]
    if not uncovered:
        rootless, unconfigured = _rootless(issuing, cl, names)
        if rootless is not None:
            named = [c for c in [*cl.anchors(), *cl.intermediate_certificates()] if c.subject.public_bytes() in names]
            fix = ("Put the roots in the proxy's verification store (nginx: ssl_trusted_certificate), or advertise "
                   "them too; `broker proxy-config` writes a bundle with both.")
            if unconfigured:
                fix = ("Get the root's certificate from the certificate issuer and put it in the proxy's verification "
                       "store (nginx: ssl_trusted_certificate): `broker proxy-config` writes the configured CAs only, "
                       "and the trust anchor stays the one configured.")
            return Check("endpoint.advertises", "warn", "users will be offered their certificate; its root is not "
                         "advertised",
                         f"{url} advertises {_names(named)} but not {rootless}: a proxy that verifies with the "
                         "advertised CAs only (nginx ssl_client_certificate, Apache SSLCACertificateFile) cannot "
                         "complete the cards' chain and refuses every one (Apache: the handshake fails; nginx: 400, "
                         "\"unable to get issuer certificate\", unless its error_page 495 hands the request on to "
                         "the broker, as `broker proxy-config nginx` writes it)",
                         fix + " `broker readiness --login` with a test card shows whether a certificate gets "
                         "through.", url)
        if not missing:
            return Check("endpoint.advertises", "pass", "users will be offered their certificate",
                         f"{url} advertises {_names(present)}", None, url)
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


def _rootless(offered: Sequence[x509.Certificate], cl: CertificateLogin,
              names: set[bytes]) -> tuple[str | None, bool]:
    """The roots not advertised above issuing CAs whose cards are offered, or None when each has its root named;
    and whether one of them is in no configured file. A card is offered through its issuing CA or a CA above it,
    but the proxy must also verify it up to a self-signed root: nginx and Apache with optional_no_ca forgive an
    unknown root (OpenSSL errors 18-21, 27), not a missing issuer (error 2, "unable to get issuer certificate"),
    so with the root neither advertised nor in their trust store every card is a 400. A CA between (a policy CA)
    is no root, and neither is an anchor below its root (only a branch of the hierarchy trusted): the root above
    it is then in no configured file, so no bundle written from the configuration holds it."""
    missing: list[str] = []
    unconfigured = False
    for c in offered:
        anchors = [a for a in (c, *_above(c, cl)) if a in cl.anchors()]
        if not anchors or any(a.issuer == a.subject and a.subject.public_bytes() in names for a in anchors):
            continue
        for a in anchors:
            if a.issuer == a.subject:
                text = name_of(a)
            elif any(ca.subject == a.issuer for ca in (*cl.anchors(), *cl.intermediate_certificates())):
                continue  # the CA above it is configured, on this path too: named itself
            else:
                text = f"the root above {name_of(a)} ({a.issuer.rfc4514_string()}), which no configured file holds"
                unconfigured = True
            if text not in missing:
                missing.append(text)
    return (", ".join(missing) if missing else None), unconfigured


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
    host = _a_labels(urlsplit(url).hostname or "")
    fix = "Renew the login host's TLS certificate (for this host name) and reload the proxy."
    if not _names_host(leaf, host):
        return Check("endpoint.server_certificate", "fail", "server certificate for another host",
                     f"{name_of(leaf)} names {', '.join(_san_names(leaf)) or 'no subjectAltName'}, not {host}", fix,
                     url, leaf.not_valid_after_utc)
    found = validity_check("endpoint.server_certificate", "server certificate", leaf, now, window, fix=fix)
    return replace(found, subject=url)


def server_roots(ca_file: Path | None = None) -> tuple[x509.Certificate, ...]:
    """The roots a login page's certificate is judged against: this host's store as OpenSSL resolves it by
    default (``SSL_CERT_FILE`` instead of the built-in bundle when set, and the hashed directory, ``SSL_CERT_DIR``
    or the built-in one: ``ssl.get_default_verify_paths``), and ``ca_file`` (a regional CA the users' PCs trust).
    Empty when none can be read."""
    found: list[x509.Certificate] = []
    paths = ssl.get_default_verify_paths()
    files = [Path(paths.cafile)] if paths.cafile else []
    if paths.capath and Path(paths.capath).is_dir():
        # OpenSSL looks certificates up there by subject hash: <8 hex digits>.<n>
        files += sorted(f for f in Path(paths.capath).iterdir() if _HASHED.match(f.name))
    if ca_file is not None:
        files.append(ca_file)
    for name in files:
        # InvalidVersion (a version no X.509 certificate has) is no ValueError: passed over all the same
        with contextlib.suppress(OSError, ValueError, x509.InvalidVersion), warnings.catch_warnings():
            # system stores carry old roots with non-positive serial numbers, which cryptography warns about
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            found += x509.load_pem_x509_certificates(name.read_bytes())
    return tuple(dict.fromkeys(found))


_HASHED = re.compile(r"[0-9a-f]{8}\.[0-9]+\Z")


def _server_chain(url: str, sent: Sequence[x509.Certificate], roots: Sequence[x509.Certificate], now: dt.datetime,
                  *, judge_trust: bool, window: dt.timedelta = dt.timedelta(0)) -> Check:
    """``endpoint.server_chain``: does the server send the intermediates its certificate needs, and does the
    chain lead to a root this host trusts? (RFC 8446 §4.4.2 / RFC 5246 §7.4.2: the server sends its certificate
    and the chain to a root, which may be left out.) A missing intermediate works in browsers that fetch it
    (AIA) or cached it, and fails elsewhere: the "works on my PC" go-live failure. WARN, not FAIL: this host's
    roots are not the users' PCs'. ``judge_trust``: False when the certificate itself failed its own check
    (expired, another host), which must not be reported twice."""
    fix_chain = ("Configure the server with the full chain (nginx: ssl_certificate holds the certificate followed by "
                 "its intermediates) and reload it.")
    leaf = sent[0]
    by_subject = {c.subject.public_bytes(): c for c in sent[1:]}
    root_names = {r.subject.public_bytes() for r in roots}
    cur, seen = leaf, {leaf}
    while cur.issuer != cur.subject and cur.issuer.public_bytes() not in root_names:
        parent = by_subject.get(cur.issuer.public_bytes())
        if parent is None or parent in seen:
            return Check("endpoint.server_chain", "warn", "incomplete server certificate chain",
                         f"{name_of(cur)} is issued by {cur.issuer.rfc4514_string()}, which the server does not send "
                         "and this host does not trust as a root: browsers that have not fetched or cached that "
                         "intermediate refuse the login page", fix_chain, url)
        seen.add(parent)
        cur = parent
        if parent.issuer != parent.subject:  # an intermediate the server sends (a root it sends, browsers ignore)
            # browsers refuse the page once a CA of its chain has expired, however long the server certificate
            # itself is valid
            found = validity_check("endpoint.server_chain", "intermediate of the server certificate", parent, now,
                                   window, fix="Install the CA's renewed intermediate certificate in the server's "
                                               "chain (nginx: ssl_certificate) and reload it.")
            if found.status != "pass":
                return replace(found, subject=url)
    if not judge_trust:
        return Check("endpoint.server_chain", "pass", "server sends its chain",
                     f"{len(sent)} certificates sent, ending at {name_of(cur)}", None, url)
    if not roots:
        return Check("endpoint.server_chain", "warn", "no roots to judge the server certificate by",
                     "this host's trust store could not be read (no system CA bundle) and no --ca-file was given",
                     "Install the system's CA certificates (Debian: ca-certificates), or give the roots the users' "
                     "PCs trust with --ca-file.", url)
    host = _a_labels(urlsplit(url).hostname or "")
    ip = _ip(host)
    subject: x509.verification.Subject = x509.IPAddress(ip) if ip is not None else x509.DNSName(host)
    try:
        verifier = PolicyBuilder().store(Store(list(roots))).time(now).build_server_verifier(subject)
        chain = verifier.verify(leaf, list(sent[1:]))
    except (VerificationError, ValueError) as exc:
        why = str(exc)
        if cur.issuer == cur.subject and cur is not leaf and cur not in roots:
            # the server sent its root (browsers ignore it): that root is what this host lacks, not what the
            # verifier's search through the chain reports ("chain construction exceeds max depth")
            why = (f"the chain the server sends ends at the root {name_of(cur)} ({cur.subject.rfc4514_string()}), "
                   "which this host does not trust")
        return Check("endpoint.server_chain", "warn", "server certificate not trusted by this host",
                     f"{name_of(leaf)}: {why}", "If the users' PCs trust its CA (a regional CA), give it to "
                     "readiness with --ca-file; otherwise use a certificate from a CA the browsers trust.", url)
    return Check("endpoint.server_chain", "pass", "server certificate chain verifies",
                 f"{' -> '.join(name_of(c) for c in chain)}", None, url)


def _san_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [*san.get_values_for_type(x509.DNSName), *(str(ip) for ip in san.get_values_for_type(x509.IPAddress))]


def _a_labels(host: str) -> str:
    """``host`` as certificates name it: a name with national characters (kommun-å.se) in A-labels
    (xn--kommun--kxa.se), as the probe sends it in SNI (RFC 5280 §7.2, RFC 6125 §6.4.2: DNS names are compared
    after conversion to A-labels); an IP address, or a name that is no IDN, as it is."""
    if host.isascii():
        return host
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return host


def _names_host(cert: x509.Certificate, host: str) -> bool:
    """Whether ``cert``'s subjectAltName names ``host``: an IP address exactly, a DNS name case-insensitively or
    through a wildcard for the leftmost label only (RFC 6125 §6.4.3)."""
    address = _ip(host)
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
