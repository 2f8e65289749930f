"""``broker config``: validate the configuration directory; print its schema and reference."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from broker.clock import SystemClock
from broker.config import schema
from broker.config.loader import load_settings
from broker.config.reference import markdown
from broker.config.schema import wide_trusted_networks
from broker.config.typed import json_schema
from broker.errors import ConfigError
from broker.readiness.expiries import expiries


@click.group()
def config() -> None:
    """Validate the configuration; print its JSON Schema or reference."""


@config.command("check")
@click.argument("directory", type=click.Path(path_type=Path))
def config_check(directory: Path) -> None:
    """Validate DIRECTORY (broker.yaml, municipalities/, service-providers/). Exit 0 if valid, 1 if not."""
    try:
        settings = load_settings(directory)
    except ConfigError as exc:
        for issue in exc.issues:
            # issues name files inside the directory, except when the directory itself is the problem
            click.echo(str(issue) if Path(issue.file).is_absolute() else f"{directory}/{issue}", err=True)
        click.echo(f"{len(exc.issues)} problem(s) found", err=True)
        sys.exit(1)
    muni = ", ".join(f"{m.id} ({m.status})" for m in settings.municipalities.values()) or "none"
    sps = ", ".join(settings.service_providers) or "none"
    click.echo(f"configuration OK: municipalities: {muni}; service providers: {sps}")
    # warnings name the file and key as problems do (without a line: the settings keep none), so that the
    # operator knows where to look
    broker_yaml = f"{directory}/broker.yaml"

    def municipality(mid: str) -> str:
        return f"{directory}/municipalities/{mid}.yaml"

    for network in wide_trusted_networks(settings.broker.client_certificate.proxy):
        click.echo(f"warning: {broker_yaml}: client_certificate.proxy.trusted_networks: {network} is wider than /8 "
                   "(IPv4) or /32 (IPv6): every address in it may send the certificate header; list the proxies' "
                   "own addresses", err=True)
    for m in settings.municipalities.values():
        if m.config.certificate is None:
            continue
        revocation = m.config.certificate.revocation
        if revocation.mode == "none":
            click.echo(f"warning: {municipality(m.id)}: certificate.revocation.mode: revocation checking is off "
                       "(mode: none)", err=True)
        elif revocation.failure == "soft_fail":
            click.echo(f"warning: {municipality(m.id)}: certificate.revocation.failure: revocation soft-fails "
                       "(logins pass when no source answers; each is audited)", err=True)
    # valid as configuration, but already past its end: what it stops is for `broker readiness` to say in full
    now = SystemClock().now()
    for e in sorted(expiries(settings, None), key=lambda e: (e.municipality, e.not_after)):
        if e.not_after <= now:
            where = f"{municipality(e.municipality)}: {_LAPSED_KEY[e.kind]}" if e.municipality \
                else f"{broker_yaml}: {_broker_key(e.subject)}"
            click.echo(f"warning: {where}: {_LAPSED[e.kind]} {e.subject} ended {e.not_after:%Y-%m-%d %H:%M} UTC; "
                       "run `broker readiness` for what it stops", err=True)


def _broker_key(what: str) -> str:
    """The key of one of the broker's own certificates (:func:`broker.readiness.expiries.expiries` names them
    "idp signing", "sp signing", "sp decryption N")."""
    if what.startswith("sp decryption "):
        return f"sp.decryption[{int(what.rsplit(' ', 1)[1]) - 1}].certificate"
    return f"{what.split(' ', maxsplit=1)[0]}.signing.certificate"

_LAPSED = {"trust_anchor": "trust anchor", "intermediate": "intermediate CA", "crl_file": "CRL file (nextUpdate)",
           "idp_metadata": "IdP metadata (validUntil)", "idp_signing_certificate": "IdP signing certificate",
           "broker_key": "certificate of the broker's key"}
_LAPSED_KEY = {"trust_anchor": "certificate.trust_anchors", "intermediate": "certificate.intermediates",
               "crl_file": "certificate.revocation.crl.files", "idp_metadata": "saml.metadata",
               "idp_signing_certificate": "saml.metadata"}


@config.command("schema")
@click.option("--kind", type=click.Choice(["broker", "municipality", "service-provider"]), default="broker",
              show_default=True, help="which file's schema")
def config_schema(kind: str) -> None:
    """Print the JSON Schema of a configuration file (for editors and CI)."""
    root: Any = {"broker": schema.BrokerConfig, "municipality": schema.MunicipalityConfig,
                 "service-provider": schema.ServiceProviderConfig}[kind]
    click.echo(json.dumps(json_schema(root, f"broker {kind} configuration"), indent=2, ensure_ascii=False))


@config.command("reference")
def config_reference() -> None:
    """Print the configuration reference (every key, type, default, meaning) as Markdown."""
    click.echo(markdown(), nl=False)
