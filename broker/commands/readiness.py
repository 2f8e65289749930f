"""``broker readiness``: is every municipality ready for go-live? PASS / WARN / FAIL with evidence and fixes."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from types import MappingProxyType

import click

from broker.app import build_audit_trail
from broker.audit.events import AuditEvent, new_correlation_id
from broker.clock import SystemClock
from broker.commands.common import instant, settings_or_exit
from broker.config.loader import Settings
from broker.errors import AuditUnavailable, UnusableInput
from broker.readiness.model import Report
from broker.readiness.render import html_dashboard, text
from broker.readiness.runner import ReadinessOptions, run
from broker.session.redis_client import RedisChoiceRefused
from broker.session.redis_client import configured as redis_connector
from broker.session.store import KeyValueStore, RedisStore


@click.command()
@click.option("--config", "config_dir", required=True, envvar="BROKER_CONFIG", type=click.Path(path_type=Path),
              help="configuration directory (or BROKER_CONFIG)")
@click.option("--municipality", "municipalities", multiple=True, metavar="ID",
              help="check only these (default: every onboarding and active municipality)")
@click.option("--endpoint", "endpoints", multiple=True, metavar="URL",
              help="a public login URL to check besides readiness.endpoints")
@click.option("--json", "as_json", is_flag=True, help="the report as JSON (docs/readiness.md)")
@click.option("--html", "html_file", type=click.Path(path_type=Path, dir_okay=False),
              help="also write a self-contained HTML dashboard")
@click.option("--offline", is_flag=True, help="no network: configuration and files only")
@click.option("--login", is_flag=True, help="synthetic logins with each municipality's sample certificate and key")
@click.option("--ca-file", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="CA certificates that verify servers besides the system's (login pages, synthetic logins, IdPs)")
@click.option("--at", "at", metavar="INSTANT",
              help="judge expiries (certificates, metadata, CRL files) at this ISO 8601 instant, e.g. the go-live "
                   "date (UTC if no offset); the network is still asked now")
def readiness(config_dir: Path, municipalities: tuple[str, ...], endpoints: tuple[str, ...], as_json: bool,
              html_file: Path | None, offline: bool, login: bool, ca_file: Path | None, at: str | None) -> None:
    """Check every link a municipality's go-live depends on; exit 0 only when nothing FAILs.

    Certificate municipalities: trust anchors and intermediates (expiry, test hierarchies), CRLs and
    OCSP responders (reachable, signed, fresh), a sample certificate through the full validation, and
    the CA names each public endpoint really advertises (a live TLS handshake). Municipalities with
    their own IdP: metadata (signature, validUntil, keys), declared attributes, the IdP's endpoint.
    """
    try:
        judged_at = instant(at) if at is not None else None
    except UnusableInput as exc:
        click.echo(f"unusable input: {exc}", err=True)
        sys.exit(2)
    settings = settings_or_exit(config_dir, as_json=as_json)
    options = ReadinessOptions(municipalities=municipalities, endpoints=endpoints, network=not offline,
                               login=login, ca_file=ca_file, at=judged_at)
    show_progress = sys.stderr.isatty() and not as_json

    def progress(step: str) -> None:
        if show_progress:
            click.echo(f"\r\x1b[2K  checking {step} ...", err=True, nl=False)

    try:
        report = run(settings, SystemClock(), options, store=_store(settings, offline), progress=progress)
    except UnusableInput as exc:
        click.echo(f"unusable input: {exc}", err=True)
        sys.exit(2)
    if show_progress:
        click.echo("\r\x1b[2K", err=True, nl=False)
    if html_file is not None:
        try:
            html_file.write_text(html_dashboard(report), encoding="utf-8")
        except OSError as exc:  # 2: the run could not report, which says nothing about readiness
            click.echo(f"cannot write the dashboard to {html_file}: {exc.strerror}", err=True)
            sys.exit(2)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
    else:
        colour = sys.stdout.isatty() and "NO_COLOR" not in os.environ
        click.echo(text(report, colour=colour), nl=False)
        if html_file is not None:
            click.echo(f"dashboard written to {html_file}")
    _audit(settings, report)
    sys.exit(1 if report.result == "fail" else 0)


def _store(settings: Settings, offline: bool) -> KeyValueStore | None:
    if offline:
        return None
    try:
        connector = redis_connector(settings.broker.redis, os.environ.get("REDIS_URL"))
    except RedisChoiceRefused as exc:
        raise UnusableInput(str(exc)) from None
    if connector is None:
        return None
    prefix = settings.broker.redis.key_prefix if settings.broker.redis else "broker:"
    return RedisStore(connector=connector, prefix=prefix)


def _audit(settings: Settings, report: Report) -> None:
    """`readiness_run` in the audit trail: who checked what, and the verdict (never blocks the report)."""
    counts = report.counts()
    try:
        trail = build_audit_trail(settings, SystemClock(), f"readiness-{socket.gethostname()}")
        try:
            trail.record(AuditEvent(
                "readiness_run", "failure" if report.result == "fail" else "success", new_correlation_id(),
                detail=f"{counts['fail']} failed, {counts['warn']} warnings",
                data=MappingProxyType({"municipalities": tuple(s.id for s in report.municipalities),
                                       "pass": counts["pass"], "warn": counts["warn"], "fail": counts["fail"],
                                       "endpoints": tuple(s.id for s in report.endpoints),
                                       # --at: the expiries were judged at that instant, not at the run's time
                                       **({"at": report.at.isoformat()} if report.at else {})})))
            trail.sync()
        finally:
            trail.close()
    except (AuditUnavailable, OSError) as exc:
        click.echo(f"warning: the run could not be recorded in the audit trail ({exc})", err=True)
