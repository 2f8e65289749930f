"""Readiness with a municipality's sample certificate (broker.readiness.samples): one real user certificate
through the validator logins use (path, profile, revocation, identity, LoA).

The example configuration names the demo users anna (Kommun A) and bo (Kommun B) as samples; a case swaps in
another demo user's certificate (expired, revoked, of another municipality, of an unknown CA ...) and runs
readiness offline (CRL files only) on the copy.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from cryptography.x509.oid import NameOID

from broker.demo.certificates import CertificateAuthority, LeafProfile
from broker.readiness.model import Section
from broker.reasons import REASONS
from tests.factories.pki_cases import reissue
from tests.unit.readiness.configs import (
    DAY,
    edit_municipality,
    load,
    now_utc,
    only,
    pem,
    readiness,
    section,
    set_readiness,
    statuses,
)

NOW = now_utc()


@pytest.fixture
def users(demo_material) -> Path:  # type: ignore[no-untyped-def]
    """The demo users' certificates and keys (broker.demo.materials.DEMO_USERS)."""
    return Path(demo_material.users)


def run_offline(config_dir: Path, mid: str) -> Section:
    set_readiness(config_dir)
    return section(readiness(load(config_dir), now=NOW, municipalities=[mid], network=False), mid)


def use_sample(config_dir: Path, mid: str, certificate: Path | bytes) -> None:
    """``mid``'s readiness sample is now this certificate (without a key)."""
    target = config_dir / "certs" / mid / "case-sample.pem"
    if isinstance(certificate, Path):
        shutil.copyfile(certificate, target)
    else:
        target.write_bytes(certificate)
    edit_municipality(config_dir, mid, lambda doc: doc.__setitem__(
        "readiness", {"sample_certificate": f"certs/{mid}/case-sample.pem"}))


def test_kommun_b_sample_is_accepted_with_its_personnummer_masked(config_dir: Path) -> None:
    result = run_offline(config_dir, "kommun-b")

    check = only(result, "sample.certificate")
    assert (check.status, check.title, check.subject) == ("pass", "sample certificate accepted", "Bo Demosson")
    assert "personnummer 19121212-****" in check.evidence
    assert "loa2 (policy 2.999.2.2)" in check.evidence
    assert "revocation crl" in check.evidence
    assert statuses(result, "sample.expiry") == []
    report_text = json.dumps(result.to_json())
    assert "191212121212" not in report_text
    assert "19121212-1212" not in report_text


@pytest.mark.parametrize("refused", [pytest.param(False, id="accepted"), pytest.param(True, id="refused")])
def test_sample_without_common_name_is_named_with_its_personnummer_masked(config_dir: Path, demo_material,  # type: ignore[no-untyped-def]
                                                                          refused: bool) -> None:
    """A sample without a CN is named by its subject, whose serialNumber may be a personnummer: the report is
    operational output (pasted into tickets), so the number is masked there as everywhere
    (broker.pki.naming.display_subject)."""
    pki = Path(demo_material.root) / "pki" / "kommun-b"
    issuing = CertificateAuthority(
        x509.load_pem_x509_certificate((pki / "issuing-ca.pem").read_bytes()),
        load_pem_private_key((pki / "issuing-ca.key").read_bytes(), password=None),  # type: ignore[arg-type]
        NOW)
    bo = x509.load_pem_x509_certificate((Path(demo_material.users) / "bo.pem").read_bytes())
    without_cn = x509.Name([a for a in bo.subject if a.oid != NameOID.COMMON_NAME])
    assert without_cn.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value == "191212121212"
    signing_only = x509.KeyUsage(False, True, False, False, False, False, False, False, False)  # nonRepudiation
    sample = reissue(bo, issuing, subject=without_cn, extra=[signing_only] if refused else [])
    use_sample(config_dir, "kommun-b", pem(sample))

    result = run_offline(config_dir, "kommun-b")

    check = only(result, "sample.certificate")
    assert check.status == ("fail" if refused else "pass")
    assert check.subject is not None
    assert "serialNumber=19121212-****" in check.subject
    report_text = json.dumps(result.to_json())
    assert "191212121212" not in report_text


def test_kommun_a_sample_is_accepted_with_its_hsa_id(config_dir: Path) -> None:
    check = only(run_offline(config_dir, "kommun-a"), "sample.certificate")

    assert (check.status, check.subject) == ("pass", "Anna Demosson")
    assert "hsa_id SE2120001009-anna, loa3 (policy 2.999.1.3)" in check.evidence


@pytest.mark.parametrize(("mid", "user", "reason"), [
    ("kommun-a", "david", "certificate_expired"),
    ("kommun-a", "cecilia", "revoked"),
    ("kommun-b", "erik", "eku_not_client_auth"),
    ("kommun-a", "fatima", "issuer_unknown"),
])
def test_refused_sample_fails_with_its_reason(config_dir: Path, users: Path, mid: str, user: str,
                                              reason: str) -> None:
    use_sample(config_dir, mid, users / f"{user}.pem")

    result = run_offline(config_dir, mid)

    check = only(result, "sample.certificate")
    assert (check.status, check.title) == ("fail", f"sample certificate refused: {reason}")
    assert check.fix == REASONS[reason].hint
    assert result.result == "fail"


def test_an_expired_sample_fails_its_expiry_check_too(config_dir: Path, users: Path) -> None:
    """docs/readiness.md: sample.expiry FAILs for an expired sample. The refusal (certificate_expired) says what a
    user with such a card needs; sample.expiry says what the operator does: replace the sample."""
    use_sample(config_dir, "kommun-a", users / "david.pem")

    result = run_offline(config_dir, "kommun-a")

    assert statuses(result, "sample.certificate") == ["fail"]
    expiry = only(result, "sample.expiry")
    assert (expiry.status, expiry.title, expiry.subject) == ("fail", "sample certificate expired", "David Demosson")
    assert expiry.fix == "Replace the sample with a current certificate of the municipality."


def test_sample_of_another_municipality_fails(config_dir: Path, users: Path) -> None:
    use_sample(config_dir, "kommun-a", users / "bo.pem")

    check = only(run_offline(config_dir, "kommun-a"), "sample.certificate")

    assert (check.status, check.title) == ("fail", "sample certificate belongs to another municipality")
    assert "maps to kommun-b" in check.evidence


def test_missing_sample_warns(config_dir: Path) -> None:
    edit_municipality(config_dir, "kommun-a", lambda doc: doc.pop("readiness"))

    result = run_offline(config_dir, "kommun-a")

    check = only(result, "sample.certificate")
    assert (check.status, check.title) == ("warn", "no sample certificate")
    assert check.fix is not None


def test_sample_expiring_soon_passes_and_warns_about_its_expiry(config_dir: Path, demo_material) -> None:  # type: ignore[no-untyped-def]
    """A sample issued by Kommun A's demo CA that expires in 10 days: accepted, plus sample.expiry WARN."""
    pki = Path(demo_material.root) / "pki" / "kommun-a"
    issuing = CertificateAuthority(
        x509.load_pem_x509_certificate((pki / "issuing-ca.pem").read_bytes()),
        load_pem_private_key((pki / "issuing-ca.key").read_bytes(), password=None),  # type: ignore[arg-type]
        NOW)
    leaf = issuing.issue(LeafProfile(common_name="Sara Svensson", serial_number="SE2120001009-sara",
                                     policies=("2.999.1.3",), valid_until=NOW + 10 * DAY))
    use_sample(config_dir, "kommun-a", pem(leaf.certificate))

    result = run_offline(config_dir, "kommun-a")

    assert only(result, "sample.certificate").status == "pass"
    expiry = only(result, "sample.expiry")
    assert (expiry.status, expiry.title, expiry.subject) == ("warn", "sample certificate expires soon",
                                                               "Sara Svensson")
    assert expiry.expires == leaf.certificate.not_valid_after_utc


@pytest.mark.parametrize(("environment", "with_key", "found"), [
    ("production", True, ["warn"]),
    ("test", True, []),
    ("production", False, []),
], ids=["key-in-production", "key-in-a-test-installation", "no-key"])
def test_a_sample_key_in_a_production_configuration_warns(config_dir: Path, environment: str, with_key: bool,
                                                         found: list[str]) -> None:
    """A sample key is a real card's private key: in a production configuration anyone who reads it logs in as the
    card's holder (docs/configuration.md: keep it out of production)."""
    if not with_key:
        edit_municipality(config_dir, "kommun-a", lambda doc: doc["readiness"].pop("sample_key"))
    set_readiness(config_dir, environment=environment)

    result = section(readiness(load(config_dir), now=NOW, municipalities=["kommun-a"], network=False), "kommun-a")

    assert statuses(result, "sample.key") == found
    if found:
        check = only(result, "sample.key")
        assert check.title == "a card's private key in a production configuration"
        assert "certs/kommun-a/sample.key" in check.evidence
        assert check.fix is not None
        assert "Remove readiness.sample_key" in check.fix


def test_a_ca_certificate_as_the_sample_is_said_to_be_one(config_dir: Path) -> None:
    """The issuing CA's file configured as the sample: the fix is to configure a user's certificate, not to ask the
    user for the card's authentication certificate."""
    use_sample(config_dir, "kommun-a", config_dir / "certs" / "kommun-a" / "issuing-ca.pem")

    check = only(run_offline(config_dir, "kommun-a"), "sample.certificate")

    assert (check.status, check.title) == ("fail", "sample certificate refused: key_usage_not_digital_signature")
    assert "a CA certificate (basicConstraints cA=TRUE), not a user's" in check.evidence
    assert check.fix == ("This is a CA certificate, not a user's: check a user's certificate (from the card, or the "
                         "municipality's sample), not the CA's.")
