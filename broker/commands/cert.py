"""``broker cert``: check a client certificate, statelessly or through the configured municipalities."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Any, Literal

import click

from broker.clock import FixedClock
from broker.commands.common import (
    emit,
    facts,
    instant,
    read_ca_bundle,
    read_certificate,
    read_crl,
    settings_or_exit,
    unusable,
)
from broker.config.schema import CrlConfig, OcspConfig, RevocationConfig
from broker.config.values import HttpUrl
from broker.errors import CertificateRejected, UnusableInput
from broker.pki.identity import display_identity, mask_personnummer
from broker.pki.path import first_unrevoked, operator_hint, verify_paths
from broker.pki.revocation.crls import CrlStore
from broker.pki.revocation.engine import RevocationChecker, RevocationOutcome
from broker.pki.revocation.http import HttpFetcher
from broker.pki.truststore import build_domain, revocation_policy
from broker.pki.validator import CertificateValidator
from broker.saml.release import available_attributes


def offline_checker(now: dt.datetime, *, online: bool) -> RevocationChecker:
    """A checker for one command run: no shared store, no background work; the network only if asked."""
    clock = FixedClock(now)
    fetcher = HttpFetcher() if online else None
    return RevocationChecker(clock, crls=CrlStore(clock, fetcher=fetcher, shared=None), fetcher=fetcher,
                             shared=None, refresh_interval=0)


def revocation_report(outcome: RevocationOutcome, now: dt.datetime) -> dict[str, Any]:
    """Which source answered for each certificate, and how old its data is."""
    return {
        "revocation": outcome.summary,
        "revocation_valid_until": outcome.valid_until.isoformat() if outcome.valid_until else None,
        "revocation_checked": [
            {**c.as_dict(), "age": str(now - c.this_update).split(".")[0]} for c in outcome.checked
        ],
        "revocation_soft_fail": f"{outcome.soft_fail.reason}: {outcome.soft_fail.detail}"
        if outcome.soft_fail else None,
    }


@click.group()
def cert() -> None:
    """Check client certificates: statelessly or through the configured municipalities."""


@cert.command("verify")
@click.argument("leaf", type=click.Path(path_type=Path))
@click.option("--trust-anchor", "anchors", multiple=True, required=True, type=click.Path(path_type=Path),
              help="root CA certificate file (PEM bundle or DER); repeatable")
@click.option("--intermediate", "intermediates", multiple=True, type=click.Path(path_type=Path),
              help="intermediate CA certificate file; repeatable")
@click.option("--crl", "crls", multiple=True, type=click.Path(path_type=Path),
              help="CRL file; with CRL checking on, every certificate below the anchor must be covered")
@click.option("--ocsp", is_flag=True, help="ask the OCSP responders named in the certificates (network)")
@click.option("--ocsp-url", help="OCSP responder for the leaf instead of its AIA URL (implies --ocsp)")
@click.option("--ocsp-nonce", is_flag=True, help="send a nonce and require it back (with --ocsp or --ocsp-url)")
@click.option("--ocsp-method", type=click.Choice(["auto", "get", "post"]), default="auto", show_default=True,
              help="how OCSP requests are sent, as certificate.revocation.ocsp.http_method: auto (GET without a "
                   "nonce, RFC 5019), get or post (with --ocsp or --ocsp-url)")
@click.option("--fetch-crl", is_flag=True, help="fetch the CRLs of the certificates' distribution points (network)")
@click.option("--at", "at", help="check at this ISO 8601 instant instead of now (UTC if no offset)")
@click.option("--json", "as_json", is_flag=True, help="one JSON object with accepted, reason, detail ...")
def cert_verify(leaf: Path, anchors: tuple[Path, ...], intermediates: tuple[Path, ...], crls: tuple[Path, ...],
                ocsp: bool, ocsp_url: str | None, ocsp_nonce: bool, ocsp_method: Literal["auto", "get", "post"],
                fetch_crl: bool, at: str | None, as_json: bool) -> None:
    """Validate LEAF's path (RFC 5280), login purpose and, if asked, revocation.

    Revocation is checked only with --crl, --fetch-crl, --ocsp or --ocsp-url (network access only when asked).
    Exit 0 accepted, 1 rejected, 2 unusable input.
    """
    try:
        leaf_cert = read_certificate(leaf)
        anchor_certs = [c for p in anchors for c in read_ca_bundle(p, "--trust-anchor")]
        inter_certs = [c for p in intermediates for c in read_ca_bundle(p, "--intermediate")]
        crl_files = [(p, read_crl(p)) for p in crls]
        now = instant(at)
        if ocsp_nonce and not (ocsp or ocsp_url):
            raise UnusableInput("--ocsp-nonce: the nonce goes in an OCSP request; give --ocsp or --ocsp-url too")
        given = click.get_current_context().get_parameter_source("ocsp_method")
        if given is not click.core.ParameterSource.DEFAULT and not (ocsp or ocsp_url):
            raise UnusableInput("--ocsp-method: it says how OCSP requests are sent; give --ocsp or --ocsp-url too")
        if ocsp_url is not None:
            try:
                HttpUrl.parse(ocsp_url)  # as a configured ocsp.url: a host, a port from 1 to 65535
            except ValueError as exc:
                raise UnusableInput(f"--ocsp-url: {exc}") from None
        methods: list[Any] = []
        if ocsp or ocsp_url:
            methods.append("ocsp")
        if crls or fetch_crl:
            methods.append("crl")
        policy = None
        if methods:
            config = RevocationConfig(
                mode="check", methods=tuple(methods),
                ocsp=OcspConfig(url=HttpUrl(ocsp_url) if ocsp_url else None, nonce=ocsp_nonce,
                                http_method=ocsp_method),
                crl=CrlConfig(distribution_points=fetch_crl))
            policy, problems = revocation_policy(config, [*anchor_certs, *inter_certs], crl_files)
            if problems:
                raise UnusableInput("; ".join(f"{crls[i]}: {message}" for i, message in problems))
        domain = build_domain("cli", anchor_certs, inter_certs, policy)
    except UnusableInput as exc:
        unusable(exc, as_json)
    result: dict[str, Any] = {"accepted": False, "reason": None, "detail": None, "checked_at": now.isoformat()}
    result.update(facts(leaf_cert))
    checker = offline_checker(now, online=bool(ocsp or ocsp_url or fetch_crl))
    try:
        paths = verify_paths(leaf_cert, domain, now)
        if policy is not None:
            checker.register(policy)
        path, outcome = first_unrevoked(paths, lambda candidate: checker.check(candidate.chain, policy))
    except CertificateRejected as exc:
        result.update(reason=exc.reason, detail=exc.detail, hint=operator_hint(exc, leaf_cert))
        emit(result, as_json)
        sys.exit(1)
    finally:
        checker.close()
    # the leaf first, named as ``subject`` names it: a personnummer in its serialNumber masked (the output goes to
    # terminals, tickets and logs); the CAs above it by their own subjects
    result.update(accepted=True, chain=[result["subject"], *(c.subject.rfc4514_string() for c in path.chain[1:])])
    result.update(revocation_report(outcome, now))
    emit(result, as_json)


@cert.command("check")
@click.argument("leaf", type=click.Path(path_type=Path))
@click.option("--config", "config_dir", required=True, type=click.Path(path_type=Path))
@click.option("--at", "at", help="check at this ISO 8601 instant instead of now")
@click.option("--offline", is_flag=True, help="no network: OCSP and CRL downloads fail (configured files work)")
@click.option("--json", "as_json", is_flag=True)
def cert_check(leaf: Path, config_dir: Path, at: str | None, offline: bool, as_json: bool) -> None:
    """Validate LEAF through the configured municipalities: municipality, identity, LoA, attributes and the
    revocation source, its age and the responder used.

    Exit 0 accepted, 1 rejected, 2 unusable input (LEAF, --at, or a configuration that does not load: its
    issues as `broker config check` lists them, with --json as `broker readiness --json` gives them).
    """
    try:
        leaf_cert = read_certificate(leaf)
        now = instant(at)
    except UnusableInput as exc:
        unusable(exc, as_json)
    settings = settings_or_exit(config_dir, as_json=as_json)
    checker = offline_checker(now, online=not offline)
    validator = CertificateValidator(settings.trust, FixedClock(now), checker)
    result: dict[str, Any] = {"accepted": False, "reason": None, "detail": None, "checked_at": now.isoformat()}
    result.update(facts(leaf_cert))
    try:
        validated = validator.validate(leaf_cert)
    except CertificateRejected as exc:
        try:
            chosen: str | None = settings.trust.for_issuer(leaf_cert).id
        except CertificateRejected:  # no municipality's (the reason says why)
            chosen = None
        result.update(reason=exc.reason, detail=exc.detail, hint=operator_hint(exc, leaf_cert), municipality=chosen)
        emit(result, as_json)
        sys.exit(1)
    finally:
        checker.close()
    ident = validated.identity
    municipality = settings.municipalities[validated.municipality_id]
    attrs = available_attributes(ident, municipality.config, "(per login)")
    if "personalIdentityNumber" in attrs:  # shown to the operator, but not in full on screen
        attrs["personalIdentityNumber"] = tuple(map(mask_personnummer, attrs["personalIdentityNumber"]))
    result.update(
        accepted=True, municipality=validated.municipality_id, identity_kind=ident.kind,
        identity=display_identity(ident.kind, ident.key),
        loa=validated.loa.uri, policy=validated.policy_oid,
        attributes={k: list(v) for k, v in attrs.items()},
    )
    result.update(revocation_report(validated.revocation, now))
    if not as_json:
        result["attributes"] = [f"{k}={'|'.join(v)}" for k, v in attrs.items()]
    emit(result, as_json)
