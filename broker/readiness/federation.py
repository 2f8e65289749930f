"""A municipality with its own IdP: is its metadata there, signed, current, and does the IdP answer?"""

from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path
from urllib.parse import urlsplit

from broker.config.loader import Municipality
from broker.errors import UpstreamRejected
from broker.pki.deadline import SocketDeadline, connect_within
from broker.readiness.model import Check
from broker.readiness.trust import validity_check
from broker.saml.attributes import ATTRIBUTES
from broker.saml.metadata import IdpMetadata
from broker.saml.upstream_metadata import UpstreamMetadata


def federation_checks(m: Municipality, registry: UpstreamMetadata, now: dt.datetime, window: dt.timedelta,
                      timeout: float, network: bool, ca_file: Path | None = None) -> list[Check]:
    saml = m.config.saml
    assert saml is not None
    source = saml.metadata
    where = f"file {source.file.path}" if source.file is not None else f"URL {source.url}"
    try:
        idp = registry.get(m.id)
    except UpstreamRejected as exc:
        if not network and source.url is not None:
            # like a CRL URL offline: without the network the URL's metadata cannot be judged either way
            return [Check("saml.metadata", "warn", "IdP metadata not fetched (offline)",
                          f"{where}: not fetched, the check ran without the network",
                          "Run broker readiness without --offline to fetch and verify the metadata.", where)]
        return [Check("saml.metadata", "fail", "no usable IdP metadata", f"{where}: {exc.detail}",
                      "Check the metadata URL and its signing certificate with the municipality "
                      "(signature required, validUntil in the future).", where)]
    status = registry.status().get(m.id, {})
    how = "signature verified" if source.url is not None else "local file, trusted as configured"
    checks = [Check("saml.metadata", "pass", "IdP metadata loaded",
                    f"{where}: {how}; {len(idp.signing_certificates)} signing key(s)"
                    + (f"; last refresh error: {status['last_error']}" if status.get("last_error") else ""),
                    None, where, idp.valid_until)]
    checks.append(_valid_until(idp, source.url is not None, now, window, where))
    for cert in idp.signing_certificates:
        # keys in metadata are containers: an expired certificate still carries a usable key, so never FAIL
        checks.append(validity_check("saml.signing_key", "IdP signing certificate", cert, now, window,
                                     fix="Ask the municipality about its signing key rollover: publish the new "
                                         "key in the metadata next to the old one.", never_fail=True))
    for cert in (c.certificate for c in source.signing_certificates):
        checks.append(validity_check("saml.metadata_signer", "metadata signing certificate", cert, now, window,
                                     fix="Get the new metadata signing certificate from the municipality and add it "
                                         "to saml.metadata.signing_certificates."))
    checks += _attributes(m, idp)
    if idp.slo() is None:
        checks.append(Check("saml.slo", "warn", "no SingleLogoutService",
                            "the IdP's metadata has no HTTP-Redirect or HTTP-POST SingleLogoutService: logout will "
                            "not reach the municipality's IdP", "Ask the municipality to publish its SLO endpoint."))
    if network:
        checks.append(_reachable("saml.sso_endpoint", "SSO endpoint", idp.sso().location, timeout, ca_file,
                                 now, window))
    return checks


def _valid_until(idp: IdpMetadata, fetched: bool, now: dt.datetime, window: dt.timedelta, where: str) -> Check:
    until = idp.valid_until
    if until is None:
        if fetched:
            return Check("saml.metadata_expiry", "warn", "signed metadata without validUntil",
                         f"{where}: an old signed copy would stay acceptable forever",
                         "Ask the municipality to publish metadata with a validUntil (days to weeks).", where)
        return Check("saml.metadata_expiry", "pass", "metadata has no validUntil", f"{where}: a local file", None,
                     where)
    left = until - now
    if left <= dt.timedelta(0):  # valid now (loaded), past its validUntil at --at
        if not fetched:  # nothing renews a local file: logins through the IdP are refused from then
            return Check("saml.metadata_expiry", "fail", "metadata file expires before the date judged",
                         f"{where}: validUntil {until:%Y-%m-%d %H:%M} UTC is before {now:%Y-%m-%d %H:%M} UTC: from "
                         "then every login through the IdP is refused (upstream_metadata_unavailable) unless the "
                         "file is replaced",
                         "Get current metadata from the municipality and replace the file before then (or configure "
                         "its metadata URL, which the broker refreshes).", where, until)
        return Check("saml.metadata_expiry", "warn", "metadata expires before the date judged",
                     f"{where}: validUntil {until:%Y-%m-%d %H:%M} UTC is before {now:%Y-%m-%d %H:%M} UTC: logins "
                     "need a fresher copy published by then",
                     "Make sure the municipality publishes fresh metadata before then (the broker fetches it).",
                     where, until)
    if left <= window:
        return Check("saml.metadata_expiry", "warn", "metadata expires soon",
                     f"{where}: validUntil {until:%Y-%m-%d %H:%M} UTC (in {left.days} days)",
                     "Make sure fresh metadata is published before then (and fetched: `broker readiness`).", where,
                     until)
    return Check("saml.metadata_expiry", "pass", "metadata valid", f"{where}: validUntil {until:%Y-%m-%d}", None,
                 where, until)


def _attributes(m: Municipality, idp: IdpMetadata) -> list[Check]:
    """Where the metadata declares attributes, the ones the broker needs must be among them."""
    saml = m.config.saml
    assert saml is not None
    if not idp.attributes:
        return []
    by_canonical: dict[str, set[str]] = {}
    for mapping in saml.attributes:
        by_canonical.setdefault(mapping.canonical, set()).add(mapping.upstream)
    for definition in ATTRIBUTES.values():
        by_canonical.setdefault(definition.name, set()).update({definition.uri, *definition.aliases})
    needed = (saml.identity.attribute, *saml.required_attributes)
    declared = set(idp.attributes)
    missing = [name for name in needed if not by_canonical.get(name, set()) & declared]
    if missing:
        return [Check("saml.attributes", "fail", "required attributes not declared",
                      f"the IdP's metadata declares {len(declared)} attributes but not {', '.join(missing)}",
                      "Ask the municipality to release these attributes to the broker (claim rules), or map the "
                      "names it uses in saml.attributes.")]
    return [Check("saml.attributes", "pass", "required attributes declared", ", ".join(needed))]


def _reachable(check_id: str, what: str, url: str, timeout: float, ca_file: Path | None,
               at: dt.datetime | None = None, window: dt.timedelta = dt.timedelta(0)) -> Check:
    """A verified TLS handshake with the endpoint's host (the user's browser must get there too), connection and
    handshake within ``timeout`` together (a watchdog: each socket operation has the timeout of its own). With
    ``at``, its server certificate must also stay valid through ``window`` after it (the go-live date, ``--at``):
    browsers block an IdP login page whose certificate has expired."""
    context = ssl.create_default_context()
    if ca_file is not None:  # in addition to the system's roots
        context.load_verify_locations(cafile=str(ca_file))
    deadline = SocketDeadline(timeout)
    problem: Exception | None = None
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port or 443  # .port raises for a port that is none
        # the name resolved and each address tried within the time left too: before any socket exists, the
        # watchdog cannot cut a resolver waiting on an unanswering DNS server short
        with deadline, connect_within(host, port, deadline, timeout=timeout) as raw:
            deadline.attach_connection(raw)  # before ssl takes the socket over
            with context.wrap_socket(raw, server_hostname=host) as tls:
                cert = tls.getpeercert()
    except (OSError, ssl.SSLError, ValueError) as exc:  # ValueError: a metadata Location that is no URL
        problem = exc
    if deadline.expired or (problem is not None and deadline.remaining() <= 0):
        # a handshake cut short by the deadline, or a name not resolved before it (which no watchdog cuts): never
        # judged
        problem = TimeoutError(f"no complete answer within {timeout:g} s")
    if problem is not None:
        return Check(check_id, "fail", f"{what} not reachable", f"{url}: {problem}",
                     "Check that the IdP's address resolves and answers with a trusted certificate.", url)
    until = dt.datetime.strptime(str(cert["notAfter"]), "%b %d %H:%M:%S %Y %Z").replace(tzinfo=dt.UTC) \
        if cert and cert.get("notAfter") else None
    if until is not None and at is not None and until - at <= window:
        fix = ("Ask the municipality to renew its IdP's TLS certificate before then: browsers refuse the IdP's login "
               "page once it has expired.")
        if until <= at:
            return Check(check_id, "fail", f"{what}'s TLS certificate expired by {at:%Y-%m-%d}",
                         f"{url}: TLS verified now; its server certificate expires {until:%Y-%m-%d %H:%M} UTC",
                         fix, url, until)
        return Check(check_id, "warn", f"{what}'s TLS certificate expires soon",
                     f"{url}: TLS verified; its server certificate expires {until:%Y-%m-%d} (in "
                     f"{(until - at).days} days)", fix, url, until)
    return Check(check_id, "pass", f"{what} answers", f"{url}: TLS verified"
                 + (f", server certificate valid until {until:%Y-%m-%d}" if until else ""), None, url, until)
