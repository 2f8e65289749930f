"""Configurations for the readiness tests: a private copy of the example (tests/conftest.py ``config_dir``) with
one municipality's trust material, revocation or sample replaced by certificates the PKI factory made for the
case, loaded by the real loader; and small helpers to run readiness and pick checks out of the report.

Everything a check looks at is real: certificates and CRLs with chosen names and dates, files on disk, the
loader's settings and trust domains, servers on loopback.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from broker.clock import FixedClock
from broker.config.loader import Settings, load_settings
from broker.demo.certificates import CertificateAuthority, Issued, LeafProfile, write_key, write_pem
from broker.readiness.model import Check, Report, Section
from broker.readiness.runner import ReadinessOptions, run
from tests.unit.config.editing import replacing_block

DAY = dt.timedelta(days=1)
POLICY_A = "2.999.1.3"   # Kommun A's policy in config/example (loa3)
HSA_ID = "SE2120001009-sara"

# Revocation blocks (the ``certificate.revocation`` mapping of a municipality file)
REVOCATION_NONE: dict[str, Any] = {"mode": "none"}


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


# --- the PKI: CAs with chosen names and dates ----------------------------------------------------------------


def _period(now: dt.datetime, days_left: int) -> tuple[dt.datetime, int]:
    """(start, length in days) of a validity that ends ``days_left`` days after ``now`` (negative: before)."""
    start = now - 30 * DAY if days_left > -29 else now + (days_left - 365) * DAY
    return start, (now + days_left * DAY - start) // DAY


def root_ca(name: str, now: dt.datetime, *, days_left: int = 3650, organization: str = "Kommun A"
            ) -> CertificateAuthority:
    """A self-signed root CA named ``name`` that expires ``days_left`` days after ``now`` (negative: expired)."""
    start, days = _period(now, days_left)
    return CertificateAuthority.root(name, now, organization=organization, valid_from=start, valid_days=days)


def issuing_ca(parent: CertificateAuthority, name: str, *, days_left: int = 1800, organization: str = "Kommun A",
               ocsp_url: str | None = None, crl_url: str | None = None) -> CertificateAuthority:
    """An issuing CA under ``parent`` (path length 0) that expires ``days_left`` days after ``parent.now``; with
    ``ocsp_url``, its Authority Information Access names that OCSP responder (RFC 5280 §4.2.2.1); with
    ``crl_url``, its CRL distribution point is that URL (§4.2.1.13: where its own status is published)."""
    start, days = _period(parent.now, days_left)
    sub = parent.subordinate(name, organization=organization, valid_from=start, valid_days=days)
    extra: list[x509.ExtensionType] = []
    if ocsp_url is not None:
        extra.append(x509.AuthorityInformationAccess([x509.AccessDescription(
            x509.oid.AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp_url))]))
    if crl_url is not None:
        extra.append(x509.CRLDistributionPoints([x509.DistributionPoint(
            [x509.UniformResourceIdentifier(crl_url)], None, None, None)]))
    return replace(sub, certificate=_rebuilt(sub.certificate, parent, extra)) if extra else sub


def _rebuilt(cert: x509.Certificate, signer: CertificateAuthority,
             extra: Sequence[x509.ExtensionType]) -> x509.Certificate:
    """``cert`` with more extensions, signed again by ``signer`` (SHA-256)."""
    b = (x509.CertificateBuilder().subject_name(cert.subject).issuer_name(cert.issuer)
         .public_key(cert.public_key()).serial_number(cert.serial_number)
         .not_valid_before(cert.not_valid_before_utc).not_valid_after(cert.not_valid_after_utc))
    for ext in cert.extensions:
        b = b.add_extension(ext.value, critical=ext.critical)
    for value in extra:
        b = b.add_extension(value, critical=False)
    return b.sign(signer.key, hashes.SHA256())


def user(issuing: CertificateAuthority, *, serial_number: str = HSA_ID, policy: str = POLICY_A,
         valid_until: dt.datetime | None = None) -> Issued:
    """A valid login certificate of ``issuing`` (SITHS-like: HSA-id in the subject serialNumber)."""
    return issuing.issue(LeafProfile(common_name="Sara Svensson", given_name="Sara", surname="Svensson",
                                     serial_number=serial_number, policies=(policy,), valid_until=valid_until))


def pem(cert: x509.Certificate | x509.CertificateRevocationList) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


# --- the configuration ----------------------------------------------------------------------------------------


def set_readiness(config_dir: Path, **values: Any) -> None:
    """broker.yaml's ``readiness:`` mapping replaced by ``values`` (no endpoints unless given)."""
    block = {"readiness": {"endpoints": [], **values}}
    replacing_block("broker.yaml", "readiness:", yaml.safe_dump(block, sort_keys=False))(config_dir)


def write_certificate_municipality(
        config_dir: Path, mid: str, *, anchors: Sequence[x509.Certificate],
        intermediates: Sequence[x509.Certificate] = (), revocation: dict[str, Any] | None = None,
        crls: dict[str, x509.CertificateRevocationList] | None = None,
        sample: x509.Certificate | None = None, sample_key: Issued | None = None,
        identity: dict[str, Any] | None = None, policies: Sequence[tuple[str, str]] = ((POLICY_A, "loa3"),),
        name: str | None = None, status: str = "active", organization_number: str = "2120001009") -> Path:
    """``municipalities/<mid>.yaml`` for certificate login, its PEM files under ``certs/<mid>/``.

    ``crls``: file name -> CRL, written next to the certificates; a ``revocation`` block names them as
    ``certs/<mid>/<file name>``. Default revocation: ``mode: none``.
    """
    certs = config_dir / "certs" / mid
    for old in certs.glob("*") if certs.exists() else ():
        old.unlink()
    certs.mkdir(parents=True, exist_ok=True)
    (certs / "anchors.pem").write_bytes(b"".join(pem(c) for c in anchors))
    certificate: dict[str, Any] = {"trust_anchors": [f"certs/{mid}/anchors.pem"]}
    if intermediates:
        (certs / "intermediates.pem").write_bytes(b"".join(pem(c) for c in intermediates))
        certificate["intermediates"] = [f"certs/{mid}/intermediates.pem"]
    certificate["policies"] = [{"oid": oid, "loa": loa} for oid, loa in policies]
    certificate["identity"] = identity or {"type": "hsa_id"}
    certificate["revocation"] = revocation or REVOCATION_NONE
    for file_name, crl in (crls or {}).items():
        write_pem(certs / file_name, crl)
    doc: dict[str, Any] = {
        "name": {"sv": name or mid, "en": name or mid},
        "organization_number": organization_number,
        "status": status,
        "login": "certificate",
        "certificate": certificate,
    }
    if sample is not None:
        (certs / "sample.pem").write_bytes(pem(sample))
        doc["readiness"] = {"sample_certificate": f"certs/{mid}/sample.pem"}
        if sample_key is not None:
            write_key(certs / "sample.key", sample_key.key)
            doc["readiness"]["sample_key"] = f"certs/{mid}/sample.key"
    path = config_dir / "municipalities" / f"{mid}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def edit_municipality(config_dir: Path, mid: str, change: Any) -> None:
    """Load ``municipalities/<mid>.yaml``, let ``change(doc)`` edit the mapping, write it back."""
    path = config_dir / "municipalities" / f"{mid}.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")


def load(config_dir: Path) -> Settings:
    return load_settings(config_dir)


# --- running readiness and reading the report ---------------------------------------------------------------


def readiness(settings: Settings, *, now: dt.datetime | None = None, municipalities: Sequence[str] = (),
              network: bool = True, **options: Any) -> Report:
    """One run on a clock standing at ``now`` (default: the real time now)."""
    return run(settings, FixedClock(now or now_utc()),
               ReadinessOptions(municipalities=tuple(municipalities), network=network, **options))


def section(report: Report, mid: str) -> Section:
    found = [s for s in report.municipalities if s.id == mid]
    assert len(found) == 1, f"{mid} in {[s.id for s in report.municipalities]}"
    return found[0]


def having(checks: Sequence[Check] | Section, check_id: str) -> list[Check]:
    """The checks with id ``check_id``."""
    items = checks.checks if isinstance(checks, Section) else checks
    return [c for c in items if c.id == check_id]


def only(checks: Sequence[Check] | Section, check_id: str) -> Check:
    """The one check with id ``check_id``."""
    found = having(checks, check_id)
    items = checks.checks if isinstance(checks, Section) else checks
    assert len(found) == 1, f"{len(found)} checks {check_id}: {[(c.id, c.status, c.evidence) for c in items]}"
    return found[0]


def statuses(checks: Sequence[Check] | Section, check_id: str) -> list[str]:
    return [c.status for c in having(checks, check_id)]
