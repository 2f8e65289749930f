"""One readiness run over the configuration: the broker, the public endpoints, every municipality."""

from __future__ import annotations

import datetime as dt
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from broker.clock import Clock
from broker.config.loader import Municipality, Settings
from broker.config.values import HttpsUrl
from broker.errors import UnusableInput
from broker.pki.revocation.crls import CrlStore
from broker.pki.revocation.engine import RevocationChecker
from broker.pki.revocation.http import HttpFetcher
from broker.pki.validator import CertificateValidator
from broker.readiness.access import access_check
from broker.readiness.broker_keys import broker_checks
from broker.readiness.endpoints import (
    ProbedEndpoint,
    advertised_check,
    configured_names,
    endpoint_section,
    login_host_check,
    probe,
    server_roots,
    without_card,
)
from broker.readiness.federation import federation_checks
from broker.readiness.host_clock import ServerDates, clock_check
from broker.readiness.model import Check, Report, Section
from broker.readiness.revocation import CRL_FILE_WARNING, RevocationLookups, UsersRevocation, revocation_checks
from broker.readiness.samples import sample_checks, sample_key_check
from broker.readiness.synthetic import synthetic_login
from broker.readiness.trust import trust_checks
from broker.saml.upstream_metadata import UpstreamMetadata
from broker.session.store import KeyValueStore


@dataclass(frozen=True)
class ReadinessOptions:
    municipalities: tuple[str, ...] = ()    # empty: every onboarding and active municipality
    endpoints: tuple[str, ...] = ()         # in addition to readiness.endpoints
    network: bool = True                    # False: offline checks only (the status page)
    login: bool = False                     # synthetic logins with the sample certificates and keys
    ca_file: Path | None = None             # more roots for verifying servers (login pages, synthetic logins, IdPs)
    at: dt.datetime | None = None           # judge validity windows (expiries) at this instant: the go-live date


def selected(settings: Settings, wanted: tuple[str, ...]) -> list[Municipality]:
    unknown = [m for m in wanted if m not in settings.municipalities]
    if unknown:
        raise UnusableInput(f"no municipality {', '.join(unknown)} in the configuration "
                            f"(known: {', '.join(sorted(settings.municipalities))})")
    if wanted:  # each once, in the order first named (a repeated --municipality is no second subject)
        return [settings.municipalities[m] for m in dict.fromkeys(wanted)]
    return [m for m in settings.municipalities.values() if m.status in ("onboarding", "active")]


def _usable_ca_file(path: Path) -> None:
    """``--ca-file`` as every TLS check of the run loads it (beside the system's roots); raise
    :class:`UnusableInput` when it gives no certificate, before any check: ssl refuses such a file only when a
    check loads it, mid-run, and the run crashed there."""
    try:
        ssl.create_default_context().load_verify_locations(cafile=str(path))
    except OSError as exc:  # ssl.SSLError too: no PEM certificate in it
        raise UnusableInput(f"--ca-file {path}: no PEM certificate could be read from it "
                            f"({getattr(exc, 'reason', None) or exc.strerror or exc})") from None


def run(settings: Settings, clock: Clock, options: ReadinessOptions, *, store: KeyValueStore | None = None,
        progress: Callable[[str], None] = lambda _: None) -> Report:
    if options.ca_file is not None:
        _usable_ca_file(options.ca_file)
    cfg = settings.broker.readiness
    now = clock.now()
    # certificates, metadata and CRL files are judged at --at (the go-live date); what is fetched or asked over the
    # network (CRLs at URLs, OCSP answers, signed metadata, the host clock) is judged now, as logins now judge it
    at = options.at or now
    window = cfg.expiry_warning.timedelta
    timeout = cfg.timeout.seconds
    dates = ServerDates(clock)
    fetcher = HttpFetcher(observe=dates.observe, max_timeout=timeout) if options.network else None
    municipalities = selected(settings, options.municipalities)

    progress("the broker's keys")
    broker_found = broker_checks(settings, at, window, store)

    # an --endpoint as readiness.endpoints keeps it (HttpsUrl: no trailing slash), so that one URL is one endpoint
    extra = [HttpsUrl.normalise(url) if url.lower().startswith("https://") else url for url in options.endpoints]
    urls = list(dict.fromkeys([*map(str, cfg.endpoints), *extra]))
    probed: list[ProbedEndpoint] = []
    if options.network:
        for url in urls:
            progress(f"TLS handshake with {url}")
            probed.append(probe(url, timeout))
    cas = {m.id: (*m.config.certificate.anchors(), *m.config.certificate.intermediate_certificates())
           for m in settings.municipalities.values() if m.config.certificate is not None}
    roots = server_roots(options.ca_file) if probed else ()
    # the users of a SAML municipality reach the broker through the same endpoints without any card
    cardless = without_card([m.id for m in settings.municipalities.values()
                             if m.config.saml is not None and m.status in ("onboarding", "active")])
    endpoints = tuple(endpoint_section(p, configured_names(cas), cfg.ca_list_warn_bytes, now=at, window=window,
                                       roots=roots, without_card=cardless) for p in probed)

    crls = CrlStore(clock, fetcher=fetcher, shared=None)
    lookups = RevocationLookups()
    checker = RevocationChecker(clock, crls=crls, fetcher=fetcher, shared=None, refresh_interval=0, observe=lookups)
    validator = CertificateValidator(settings.trust, clock, checker)
    users = UsersRevocation(checker, lookups)
    # only the municipalities checked, and no refresh_all(): URL metadata is not loaded before (the loader reads
    # local files only), so get() in federation_checks fetches each once; offline there is no fetcher
    registry = UpstreamMetadata([m for m in municipalities if m.config.saml is not None], clock, fetcher,
                                background=False)

    sections = []
    for m in municipalities:
        checks: list[Check] = []
        cl = m.config.certificate
        if cl is not None:
            progress(f"{m.id}: trust anchors and revocation")
            sample = m.config.readiness.sample_certificate
            domain = settings.trust.domains.get(m.id)
            checks += trust_checks(cl, at, window, cfg.environment)
            # a CRL file lives days, not months: warned of a day ahead (its replacement due), not expiry_warning's
            # month ahead, which every such file would always be within
            checks += revocation_checks(cl, domain.revocation if domain else None, fetcher, now,
                                        sample.certificate if sample else None, users, at=at,
                                        window=min(window, CRL_FILE_WARNING))
            progress(f"{m.id}: sample certificate")
            checks += sample_checks(m.id, sample.certificate if sample else None, validator, at, window)
            if not urls:
                checks.append(Check("endpoint.advertises", "warn", "advertised CA list not checked",
                                    "no public endpoint is configured (readiness.endpoints, or --endpoint)",
                                    "Name the URL where users log in, so readiness reads the CA names it "
                                    "advertises."))
            for found in probed:
                checks.append(advertised_check(cl, found))
            key = m.config.readiness.sample_key
            if key is not None and cfg.environment == "production":
                checks.append(sample_key_check(m.id, str(key.path)))
            if options.login and sample is not None and key is not None:
                answering = {p.url: [a.address for a in p.addresses if a.probe is not None] for p in probed}
                for url in urls:
                    progress(f"{m.id}: synthetic login at {url}")
                    checks.append(synthetic_login(url, m.id, sample.path, key.path, timeout=timeout,
                                                  ca_file=options.ca_file, addresses=answering.get(url, ())))
            elif options.login:  # asked for, and not run: say so rather than nothing
                missing = "readiness.sample_certificate and sample_key" if sample is None \
                    else "readiness.sample_key"
                checks.append(Check("login.synthetic", "warn", "synthetic login not run",
                                    f"--login was asked for, but {m.id} has no {missing}",
                                    "Add a test card's certificate and key (test installations only) to run it."))
        elif m.config.saml is not None:
            progress(f"{m.id}: IdP metadata")
            checks += federation_checks(m, registry, at, window, timeout, options.network, options.ca_file)
        checks.append(access_check(m, settings))
        sections.append(Section("municipality", m.id, m.config.name.en, tuple(checks), {
            "names": {"sv": m.config.name.sv, "en": m.config.name.en}, "status": m.status,
            "login": m.config.login}))
    if probed:
        broker_found.append(login_host_check(str(settings.broker.idp.base_url), [p.url for p in probed]))
    if options.network:  # after every fetch: the servers asked on the way are the clocks compared
        broker_found.append(clock_check(dates, _tolerance(settings, municipalities)))
    broker = Section("broker", "broker", "broker", tuple(broker_found))
    return Report(now, cfg.environment, broker, tuple(sections), endpoints, options.at)


def _tolerance(settings: Settings, municipalities: list[Municipality]) -> dt.timedelta:
    """The smallest clock skew the configuration allows anywhere (the SSO endpoint's, each IdP's, each
    revocation policy's): a host clock off by more fails logins somewhere even when every peer is in step."""
    skews = [settings.broker.idp.clock_skew.timedelta]
    for m in municipalities:
        if m.config.saml is not None:
            skews.append(m.config.saml.clock_skew.timedelta)
        if m.config.certificate is not None:
            skews.append(m.config.certificate.revocation.clock_skew.timedelta)
    return min(skews)
