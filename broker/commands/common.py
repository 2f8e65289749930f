"""Helpers shared by the subcommands: reading operator-supplied files, instants, output."""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, NoReturn

import click
from cryptography import x509

from broker.clock import SystemClock
from broker.config.loader import Settings, load_settings
from broker.config.values import load_certificates
from broker.errors import ConfigError, ConfigIssue, UnusableInput
from broker.model import CertificateFacts
from broker.pki.naming import display_subject, not_a_ca
from broker.pki.reading import UnreadableCertificate, check_each
from broker.pki.revocation.crls import parse_crl
from broker.pki.validator import certificate_policies
from broker.readiness.render import plain


def read_certificate(path: Path) -> x509.Certificate:
    """The one certificate in ``path`` (PEM or DER), every part of it readable; else :class:`UnusableInput`."""
    certs = _certificates(path, "an X.509 certificate")
    if len(certs) != 1:
        raise UnusableInput(f"{path} holds {len(certs)} certificates; give the leaf alone")
    return certs[0]


def read_ca_bundle(path: Path, option: str) -> list[x509.Certificate]:
    """The CA certificates in ``path`` (a PEM bundle or one DER certificate) given with ``option``, every part of
    each readable and each a CA (:func:`broker.pki.naming.not_a_ca`, the configuration's rule for trust anchors
    and intermediates: a login certificate given as its own anchor would otherwise be "accepted"); else
    :class:`UnusableInput`."""
    certs = _certificates(path, "a certificate file")
    for cert in certs:
        if problem := not_a_ca(cert):
            raise UnusableInput(f"{option} {path}: {display_subject(cert)[:200]} {problem}")
    return certs


def _certificates(path: Path, what: str) -> list[x509.Certificate]:
    """The certificates in ``path``, each checked as the login path checks a presented one
    (:func:`broker.pki.reading.check_fields`): a duplicated extension or an unreadable name is unusable input
    here, not a crash deep inside path validation."""
    try:
        certs = load_certificates(path.read_bytes())
    except OSError as exc:
        raise UnusableInput(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise UnusableInput(f"{path} is not {what} ({exc})") from None
    try:
        check_each(certs, path)
    except UnreadableCertificate as exc:
        raise UnusableInput(str(exc)) from None
    return certs


def read_crl(path: Path) -> x509.CertificateRevocationList:
    try:
        return parse_crl(path.read_bytes())
    except OSError as exc:
        raise UnusableInput(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise UnusableInput(f"{path} is not a CRL ({exc})") from None


def instant(text: str | None) -> dt.datetime:
    """``--at``: ISO 8601, UTC when no offset is given; now when absent."""
    if text is None:
        return SystemClock().now()
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UnusableInput(f"--at {text!r} is not an ISO 8601 date-time") from None
    value = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    try:
        value.astimezone(dt.UTC)  # the clock reads it in UTC, where 0001-01-01T00:00+01:00 is no date
    except OverflowError:
        raise UnusableInput(f"--at {text!r} is outside the years 1 to 9999 in UTC") from None
    return value


def facts(cert: x509.Certificate) -> dict[str, Any]:
    f = CertificateFacts.of(cert)
    return {"subject": display_subject(cert), "issuer": f.issuer, "serial": f.serial_hex,
            "sha256": f.fingerprint_sha256, "not_before": f.not_before.isoformat(),
            "not_after": f.not_after.isoformat(), "policies": list(certificate_policies(cert))}


def emit(result: dict[str, Any], as_json: bool) -> None:
    """A verdict: JSON, or a readable block with the reason, the operator's hint and the facts. The text quotes
    the certificate's names (and a responder's or CRL's words), which may come from anyone: each value is shown
    on its own line with control characters escaped, so none can forge a line or rewrite the terminal."""
    if as_json:
        click.echo(json.dumps(result, indent=2, ensure_ascii=False, default=str))
        return
    if result["accepted"]:
        click.secho("ACCEPTED", fg="green", bold=True)
    else:
        click.secho(f"REJECTED: {plain(result['reason'])}", fg="red", bold=True)
        click.echo(f"  {plain(result['detail'])}")
        if result.get("hint"):
            click.echo(f"  what to do: {plain(result['hint'])}")
    for key, value in result.items():
        if key in ("accepted", "reason", "detail", "hint") or value in (None, [], "", {}):
            continue
        if isinstance(value, list) and value and isinstance(value[0], dict):
            click.echo(f"  {key}:")
            for item in value:
                click.echo("    - " + ", ".join(f"{k}={plain(v)}" for k, v in item.items() if v is not None))
        else:
            click.echo(f"  {key}: {plain(', '.join(map(str, value)) if isinstance(value, list) else value)}")


def as_shown(directory: Path, issues: Sequence[ConfigIssue]) -> list[ConfigIssue]:
    """The issues with their files as `broker config check DIR` names them: inside ``directory``, except when
    the directory itself is the problem (an absolute path already)."""
    return [i if Path(i.file).is_absolute() else replace(i, file=f"{directory}/{i.file}") for i in issues]


def settings_or_exit(config_dir: Path, *, as_json: bool = False) -> Settings:
    """The configuration, or exit 2 listing every problem as `broker config check` does, one
    ``file:line: key: message`` a line on stderr; with ``as_json``, on stdout as ``{"version": 1, "result":
    "invalid", "issues": [{"file", "line", "key", "message"}, ...]}`` (the fields of :class:`ConfigIssue`)."""
    try:
        return load_settings(config_dir)
    except ConfigError as exc:
        issues = as_shown(config_dir, exc.issues)
        if as_json:
            click.echo(json.dumps({"version": 1, "result": "invalid", "issues": [asdict(i) for i in issues]},
                                  indent=2, ensure_ascii=False))
        else:
            for issue in issues:
                click.echo(str(issue), err=True)
        click.echo(f"the configuration is invalid: {len(issues)} problem(s) (`broker config check` lists the same)",
                   err=True)
        sys.exit(2)


def unusable(exc: UnusableInput, as_json: bool) -> NoReturn:
    if as_json:
        click.echo(json.dumps({"accepted": False, "reason": "unusable_input", "detail": str(exc)}))
    else:
        click.echo(f"unusable input: {exc}", err=True)
    sys.exit(2)
