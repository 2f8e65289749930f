"""The ``broker`` command."""

from __future__ import annotations

import datetime as dt
import json
import re
import sys
from pathlib import Path
from typing import Any

import click
from cryptography import x509

from broker.clock import FixedClock, SystemClock
from broker.config.values import load_certificates
from broker.errors import CertificateRejected, ConfigError, UnusableInput


@click.group()
@click.version_option(package_name="broker")
def main() -> None:
    """Federated authentication broker for Swedish regional healthcare."""


# --- config ---------------------------------------------------------------------------


@main.group()
def config() -> None:
    """Validate the configuration; print its JSON Schema."""


@config.command("check")
@click.argument("directory", type=click.Path(path_type=Path))
def config_check(directory: Path) -> None:
    """Validate DIRECTORY (broker.yaml, municipalities/, service-providers/). Exit 0 if valid, 1 if not."""
    from broker.config.loader import load_settings

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
    for m in settings.municipalities.values():
        if m.config.certificate.revocation.mode == "none":
            click.echo(f"warning: municipality {m.id}: revocation checking is off (mode: none)", err=True)


@config.command("schema")
@click.option("--kind", type=click.Choice(["broker", "municipality", "service-provider"]), default="broker",
              show_default=True, help="which file's schema")
def config_schema(kind: str) -> None:
    """Print the JSON Schema of a configuration file (for editors and CI)."""
    from broker.config import schema
    from broker.config.typed import json_schema

    root: Any = {"broker": schema.BrokerConfig, "municipality": schema.MunicipalityConfig,
                 "service-provider": schema.ServiceProviderConfig}[kind]
    click.echo(json.dumps(json_schema(root, f"broker {kind} configuration"), indent=2, ensure_ascii=False))


@config.command("reference")
def config_reference() -> None:
    """Print the configuration reference (every key, type, default, meaning) as Markdown."""
    from broker.config.reference import markdown

    click.echo(markdown(), nl=False)


# --- cert -----------------------------------------------------------------------------


def _read_certificate(path: Path) -> x509.Certificate:
    try:
        certs = load_certificates(path.read_bytes())
    except OSError as exc:
        raise UnusableInput(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise UnusableInput(f"{path} is not an X.509 certificate ({exc})") from None
    if len(certs) != 1:
        raise UnusableInput(f"{path} holds {len(certs)} certificates; give the leaf alone")
    return certs[0]


def _read_bundle(path: Path) -> list[x509.Certificate]:
    try:
        return load_certificates(path.read_bytes())
    except OSError as exc:
        raise UnusableInput(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise UnusableInput(f"{path} is not a certificate file ({exc})") from None


def _read_crl(path: Path) -> x509.CertificateRevocationList:
    try:
        data = path.read_bytes()
        return x509.load_pem_x509_crl(data) if b"-----BEGIN" in data else x509.load_der_x509_crl(data)
    except OSError as exc:
        raise UnusableInput(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise UnusableInput(f"{path} is not a CRL ({exc})") from None


def _instant(text: str | None) -> dt.datetime:
    if text is None:
        return SystemClock().now()
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UnusableInput(f"--at {text!r} is not an ISO 8601 date-time") from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def mask_personnummer(value: str) -> str:
    """``19121212-****``: enough for an operator to recognise, not the whole number on screen."""
    return value[:8] + "-****"


def _display_subject(cert: x509.Certificate) -> str:
    """The subject as RFC 4514 text, with a personnummer serialNumber masked."""
    from cryptography.x509.oid import NameOID

    rdns = []
    for rdn in reversed(cert.subject.rdns):
        parts = []
        for attr in rdn:
            value = attr.value if isinstance(attr.value, str) else ""
            if attr.oid == NameOID.SERIAL_NUMBER and re.fullmatch(r"[0-9]{12}", value):
                parts.append(f"serialNumber={mask_personnummer(value)}")
            else:
                parts.append(attr.rfc4514_string())
        rdns.append("+".join(parts))
    return ",".join(rdns)


def _facts(cert: x509.Certificate) -> dict[str, Any]:
    from broker.model import CertificateFacts
    from broker.pki.validator import certificate_policies

    f = CertificateFacts.of(cert)
    return {"subject": _display_subject(cert), "issuer": f.issuer, "serial": f.serial_hex,
            "sha256": f.fingerprint_sha256, "not_before": f.not_before.isoformat(),
            "not_after": f.not_after.isoformat(), "policies": list(certificate_policies(cert))}


def _emit(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(result, indent=2, ensure_ascii=False))
        return
    if result["accepted"]:
        click.secho("ACCEPTED", fg="green", bold=True)
    else:
        click.secho(f"REJECTED: {result['reason']}", fg="red", bold=True)
        click.echo(f"  {result['detail']}")
        if result.get("hint"):
            click.echo(f"  what to do: {result['hint']}")
    for key, value in result.items():
        if key in ("accepted", "reason", "detail", "hint") or value in (None, [], ""):
            continue
        click.echo(f"  {key}: {', '.join(value) if isinstance(value, list) else value}")


@main.group()
def cert() -> None:
    """Check client certificates: statelessly or through the configured municipalities."""


@cert.command("verify")
@click.argument("leaf", type=click.Path(path_type=Path))
@click.option("--trust-anchor", "anchors", multiple=True, required=True, type=click.Path(path_type=Path),
              help="root CA certificate file (PEM bundle or DER); repeatable")
@click.option("--intermediate", "intermediates", multiple=True, type=click.Path(path_type=Path),
              help="intermediate CA certificate file; repeatable")
@click.option("--crl", "crls", multiple=True, type=click.Path(path_type=Path),
              help="CRL file; with any --crl every certificate below the anchor must be covered")
@click.option("--at", "at", help="check at this ISO 8601 instant instead of now (UTC if no offset)")
@click.option("--json", "as_json", is_flag=True, help="one JSON object with accepted, reason, detail ...")
def cert_verify(leaf: Path, anchors: tuple[Path, ...], intermediates: tuple[Path, ...], crls: tuple[Path, ...],
                at: str | None, as_json: bool) -> None:
    """Validate LEAF's path (RFC 5280) and login purpose. Exit 0 accepted, 1 rejected, 2 unusable input."""
    from broker.pki.path import verify_path
    from broker.pki.truststore import build_domain

    try:
        leaf_cert = _read_certificate(leaf)
        anchor_certs = [c for p in anchors for c in _read_bundle(p)]
        inter_certs = [c for p in intermediates for c in _read_bundle(p)]
        crl_list = [_read_crl(p) for p in crls]
        now = _instant(at)
        try:
            domain = build_domain("cli", anchor_certs, inter_certs, crl_list if crls else None)
        except ValueError as exc:
            raise UnusableInput(f"a CRL cannot be used: {exc}") from None
    except UnusableInput as exc:
        if as_json:
            click.echo(json.dumps({"accepted": False, "reason": "unusable_input", "detail": str(exc)}))
        else:
            click.echo(f"unusable input: {exc}", err=True)
        sys.exit(2)
    result: dict[str, Any] = {"accepted": False, "reason": None, "detail": None, "checked_at": now.isoformat()}
    result.update(_facts(leaf_cert))
    try:
        path = verify_path(leaf_cert, domain, now)
    except CertificateRejected as exc:
        result.update(reason=exc.reason, detail=exc.detail, hint=exc.row.hint)
        _emit(result, as_json)
        sys.exit(1)
    result.update(accepted=True, chain=[c.subject.rfc4514_string() for c in path.chain],
                  revocation=path.revocation)
    _emit(result, as_json)


@cert.command("check")
@click.argument("leaf", type=click.Path(path_type=Path))
@click.option("--config", "config_dir", required=True, type=click.Path(path_type=Path))
@click.option("--at", "at", help="check at this ISO 8601 instant instead of now")
@click.option("--json", "as_json", is_flag=True)
def cert_check(leaf: Path, config_dir: Path, at: str | None, as_json: bool) -> None:
    """Validate LEAF through the configured municipalities: municipality, identity, LoA, attributes."""
    from broker.config.loader import load_settings
    from broker.pki.validator import CertificateValidator
    from broker.saml.release import available_attributes

    try:
        leaf_cert = _read_certificate(leaf)
        now = _instant(at)
    except UnusableInput as exc:
        click.echo(f"unusable input: {exc}", err=True)
        sys.exit(2)
    try:
        settings = load_settings(config_dir)
    except ConfigError as exc:
        click.echo(f"the configuration is invalid ({len(exc.issues)} problem(s)); run `broker config check`",
                   err=True)
        sys.exit(2)
    validator = CertificateValidator(settings.trust, FixedClock(now))
    result: dict[str, Any] = {"accepted": False, "reason": None, "detail": None, "checked_at": now.isoformat()}
    result.update(_facts(leaf_cert))
    try:
        validated = validator.validate(leaf_cert)
    except CertificateRejected as exc:
        domain = settings.trust.for_issuer(leaf_cert)
        result.update(reason=exc.reason, detail=exc.detail, hint=exc.row.hint,
                      municipality=domain.id if domain else None)
        _emit(result, as_json)
        sys.exit(1)
    ident = validated.identity
    municipality = settings.municipalities[validated.municipality_id]
    attrs = available_attributes(ident, municipality.config, "(per login)")
    if ident.kind == "personnummer":  # shown to the operator, but not in full on screen
        attrs["personalIdentityNumber"] = (mask_personnummer(ident.key),)
    result.update(
        accepted=True, municipality=validated.municipality_id, identity_kind=ident.kind,
        identity=ident.key if ident.kind != "personnummer" else mask_personnummer(ident.key),
        loa=validated.loa.uri, policy=validated.policy_oid, revocation=validated.path.revocation,
        revocation_valid_until=(validated.path.revocation_valid_until.isoformat()
                                if validated.path.revocation_valid_until else None),
        attributes={k: list(v) for k, v in attrs.items()},
    )
    if not as_json:
        result["attributes"] = [f"{k}={'|'.join(v)}" for k, v in attrs.items()]
    _emit(result, as_json)


# --- demo and serving ------------------------------------------------------------------


@main.command()
@click.option("--workdir", type=click.Path(path_type=Path), default=None,
              help="where the demo material lives (default var/demo, or $BROKER_DEMO_DIR)")
@click.option("--example", type=click.Path(path_type=Path), default=None, help="the example config to run")
@click.option("--host", default="localhost", show_default=True)
@click.option("--port", default=8443, show_default=True, type=int)
@click.option("--check", is_flag=True, help="run every demo user's login, print a table, exit")
@click.option("--regenerate", is_flag=True, help="throw away the demo PKI and keys and make new ones")
def demo(workdir: Path | None, example: Path | None, host: str, port: int, check: bool, regenerate: bool) -> None:
    """Run the broker and a demo SP over HTTPS on localhost, on a generated demo PKI."""
    from broker.demo.server import default_workdir, run

    try:
        code = run(workdir or default_workdir(), example, host, port, check=check, regenerate=regenerate)
    except (RuntimeError, FileNotFoundError, OSError) as exc:
        click.echo(f"demo: {exc}", err=True)
        sys.exit(2)
    except ConfigError as exc:
        click.echo(f"demo: the example configuration is invalid:\n{exc}", err=True)
        sys.exit(2)
    sys.exit(code)


@main.command()
@click.option("--config", "config_dir", required=True, type=click.Path(path_type=Path))
@click.option("--bind", default="127.0.0.1:8080", show_default=True, help="address:port to listen on (HTTP)")
@click.option("--workers", default=2, show_default=True, type=int)
@click.option("--threads", default=4, show_default=True, type=int)
def serve(config_dir: Path, bind: str, workers: int, threads: int) -> None:
    """Serve the broker under gunicorn behind a TLS-terminating proxy (Redis required)."""
    from broker.serving import run_gunicorn

    sys.exit(run_gunicorn(config_dir, bind=bind, workers=workers, threads=threads))


@main.command()
@click.option("--config", "config_dir", required=True, type=click.Path(path_type=Path))
def metadata(config_dir: Path) -> None:
    """Print the broker's signed IdP metadata."""
    from broker.clock import SystemClock
    from broker.config.loader import load_settings
    from broker.saml.idp_metadata import IdpMetadata
    from broker.saml.xmldsig import XmlSigner

    settings = load_settings(config_dir)
    signing = settings.broker.idp.signing
    base = settings.broker.idp.base_url
    doc = IdpMetadata(settings, SystemClock(), XmlSigner(signing.key.pem, signing.certificate.certificate,
                                                          signing.key.key),
                      sso_url=base + "/saml/idp/sso", slo_url=base + "/saml/idp/slo").document()
    sys.stdout.buffer.write(doc)


if __name__ == "__main__":  # `python -m broker.cli`
    main()
