"""Readiness of a municipality's trust anchors and intermediates (broker.readiness.trust).

Each case writes CAs the PKI factory made with chosen names and dates into a copy of the example
configuration (kommun-a), loads it with the real loader and runs readiness offline on it: when each CA
expires (PASS, WARN within readiness.expiry_warning, FAIL once expired), whether a test hierarchy (TEST, PP,
SYSTEMTEST in a CA's name) slipped into production, and whether an anchor is a self-signed root.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509

from broker.config.loader import Settings
from broker.demo.certificates import CertificateAuthority
from broker.readiness.model import Section
from broker.readiness.trust import trust_checks
from tests.factories.pki import sha1_resign
from tests.unit.readiness.configs import (
    DAY,
    issuing_ca,
    load,
    now_utc,
    only,
    readiness,
    root_ca,
    section,
    set_readiness,
    statuses,
    write_certificate_municipality,
)

NOW = now_utc()
A = "kommun-a"


def configure(config_dir: Path, anchors: list[x509.Certificate], intermediates: list[x509.Certificate] = (),
              **readiness_values: object) -> Settings:
    write_certificate_municipality(config_dir, A, anchors=anchors, intermediates=list(intermediates))
    set_readiness(config_dir, **readiness_values)
    return load(config_dir)


def kommun_a(settings: Settings) -> Section:
    return section(readiness(settings, now=NOW, municipalities=[A], network=False), A)


# --- expiry -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("days_left", "status", "title"), [
    (3000, "pass", "trust anchor valid"),
    (10, "warn", "trust anchor expires soon"),
    (30, "warn", "trust anchor expires soon"),      # the window's edge counts as within it
    (-5, "fail", "trust anchor expired"),
], ids=["valid", "expiring-in-10-days", "expiring-at-window-edge", "expired"])
def test_trust_anchor_expiry(config_dir: Path, days_left: int, status: str, title: str) -> None:
    root = root_ca("Kommun A Root CA", NOW, days_left=days_left)
    issuing = issuing_ca(root, "Kommun A Person CA", days_left=min(days_left, 1000))
    settings = configure(config_dir, [root.certificate], [issuing.certificate], expiry_warning="30d")

    check = only(kommun_a(settings), "trust.anchor")

    assert (check.status, check.title) == (status, title)
    assert check.subject == "Kommun A Root CA"
    assert check.expires == root.certificate.not_valid_after_utc
    assert (check.fix is not None) == (status != "pass")


@pytest.mark.parametrize(("days_left", "status", "title"), [
    (900, "pass", "intermediate CA valid"),
    (7, "warn", "intermediate CA expires soon"),
    (-1, "fail", "intermediate CA expired"),
], ids=["valid", "expiring-in-7-days", "expired"])
def test_intermediate_expiry(config_dir: Path, days_left: int, status: str, title: str) -> None:
    root = root_ca("Kommun A Root CA", NOW)
    issuing = issuing_ca(root, "Kommun A Person CA", days_left=days_left)
    settings = configure(config_dir, [root.certificate], [issuing.certificate])

    result = kommun_a(settings)

    check = only(result, "trust.intermediate")
    assert (check.status, check.title, check.subject) == (status, title, "Kommun A Person CA")
    assert check.expires == issuing.certificate.not_valid_after_utc
    assert only(result, "trust.anchor").status == "pass"


@pytest.mark.parametrize("which", ["anchor", "intermediate"])
def test_an_expired_ca_is_to_be_removed_not_kept(config_dir: Path, which: str) -> None:
    """Beside its renewed successor, an expired CA is kept by the advice for one that expires soon ("keep the old
    one until every card issued under it has expired"): no card validates under it any more, and the run would
    FAIL until it is removed. The fix for an expired CA says to remove it."""
    old_root = root_ca("Kommun A Root CA", NOW, days_left=-3 if which == "anchor" else 3000)
    new_root = root_ca("Kommun A Root CA v2", NOW)
    old = issuing_ca(old_root, "Kommun A Person CA", days_left=-3 if which == "intermediate" else -4)
    new = issuing_ca(new_root, "Kommun A Person CA v2")
    settings = configure(config_dir, [old_root.certificate, new_root.certificate], [old.certificate, new.certificate])

    failed = [c for c in kommun_a(settings).checks if c.id == f"trust.{which}" and c.status == "fail"]

    assert [c.subject for c in failed] == ["Kommun A Root CA" if which == "anchor" else "Kommun A Person CA"]
    assert failed[0].fix == (f"Remove it from {'trust_anchors' if which == 'anchor' else 'intermediates'}: no card "
                             "validates under an expired CA any more. If its cards are still in use, get the "
                             "CA's renewed certificate from the certificate issuer and configure it.")


def test_expiry_warning_window_comes_from_the_configuration(config_dir: Path) -> None:
    """The same CA (60 days left) is PASS with the default 30d window and WARN with expiry_warning: 90d."""
    root = root_ca("Kommun A Root CA", NOW, days_left=60)
    write_certificate_municipality(config_dir, A, anchors=[root.certificate])
    set_readiness(config_dir)
    assert only(kommun_a(load(config_dir)), "trust.anchor").status == "pass"
    set_readiness(config_dir, expiry_warning="90d")
    assert only(kommun_a(load(config_dir)), "trust.anchor").status == "warn"


def test_anchor_not_yet_valid_fails(config_dir: Path) -> None:
    root = CertificateAuthority.root("Kommun A Root CA", NOW, organization="Kommun A", valid_from=NOW + 3 * DAY)
    settings = configure(config_dir, [root.certificate])

    check = only(kommun_a(settings), "trust.anchor")

    assert (check.status, check.title) == ("fail", "trust anchor not yet valid")


def test_every_anchor_and_intermediate_is_checked(config_dir: Path) -> None:
    old_root = root_ca("Kommun A Root CA 2016", NOW, days_left=20)
    new_root = root_ca("Kommun A Root CA 2026", NOW, days_left=3650)
    old_issuing = issuing_ca(old_root, "Kommun A Person CA 1", days_left=-2)
    new_issuing = issuing_ca(new_root, "Kommun A Person CA 2", days_left=1000)
    settings = configure(config_dir, [old_root.certificate, new_root.certificate],
                         [old_issuing.certificate, new_issuing.certificate])

    result = kommun_a(settings)

    assert statuses(result, "trust.anchor") == ["warn", "pass"]
    assert statuses(result, "trust.intermediate") == ["fail", "pass"]
    assert result.result == "fail"


# --- test hierarchies ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("root_name", "issuing_name", "marker"), [
    ("SITHS e-id Root CA v2 TEST", "SITHS e-id Person HSA-id 3 CA v1", "TEST"),
    ("SITHS e-id Root CA v2", "SITHS e-id Person HSA-id 3 CA v1 PP", "PP"),
    ("Efos SYSTEMTEST Root CA", "Efos Person CA", "SYSTEMTEST"),
    ("Kommun A Root CA", "Kommun A test Person CA", "test"),
], ids=["TEST-in-root", "PP-in-intermediate", "SYSTEMTEST", "lower-case-test"])
def test_test_hierarchy_fails_in_production_and_passes_in_a_test_environment(
        config_dir: Path, root_name: str, issuing_name: str, marker: str) -> None:
    root = root_ca(root_name, NOW)
    issuing = issuing_ca(root, issuing_name)
    test_ca = root_name if marker in root_name else issuing_name

    production = kommun_a(configure(config_dir, [root.certificate], [issuing.certificate]))
    check = only(production, "trust.test_hierarchy")
    assert (check.status, check.subject) == ("fail", test_ca)
    assert repr(marker) in check.evidence
    assert check.fix is not None

    test = kommun_a(configure(config_dir, [root.certificate], [issuing.certificate], environment="test"))
    check = only(test, "trust.test_hierarchy")
    assert (check.status, check.subject) == ("pass", test_ca)
    assert test.result != "fail" or [c for c in test.checks if c.status == "fail"] == []


def test_an_anchor_issued_by_a_test_root_is_a_test_hierarchy(config_dir: Path) -> None:
    """The issuing CA configured as the anchor (the path stops there), its own name without a marker: the test
    root above it, named in its issuer, makes it a test CA all the same."""
    root = root_ca("SITHS e-id Root CA v2 TEST", NOW)
    issuing = issuing_ca(root, "SITHS e-id Person HSA-id 3 CA v1")
    result = kommun_a(configure(config_dir, [issuing.certificate]))

    check = only(result, "trust.test_hierarchy")
    assert (check.status, check.subject) == ("fail", "SITHS e-id Person HSA-id 3 CA v1")
    assert check.evidence == ("SITHS e-id Person HSA-id 3 CA v1 carries 'TEST' in the name of its issuer "
                              "CN=SITHS e-id Root CA v2 TEST,O=Kommun A,C=SE: a test CA")


def test_production_hierarchy_passes(config_dir: Path) -> None:
    root = root_ca("SITHS e-id Root CA v2", NOW, organization="Inera AB")
    issuing = issuing_ca(root, "SITHS e-id Person HSA-id 3 CA v1", organization="Inera AB")
    result = kommun_a(configure(config_dir, [root.certificate], [issuing.certificate]))

    check = only(result, "trust.test_hierarchy")
    assert (check.status, check.title) == ("pass", "no test hierarchy")


@pytest.mark.parametrize("name", ["Kommun A Protest CA", "Appliance Root CA", "Kommun A Testbädd CA",
                                  "Kommun A Contest2 CA", "Kommun A Teståtkomst CA", "Region Knäpp CA",
                                  "Kommun A Åtest CA"])
def test_test_marker_inside_a_word_is_not_a_test_hierarchy(config_dir: Path, name: str) -> None:
    root = root_ca(name, NOW)
    result = kommun_a(configure(config_dir, [root.certificate]))

    assert statuses(result, "trust.test_hierarchy") == ["pass"]


def test_every_test_ca_is_named(config_dir: Path) -> None:
    root = root_ca("SITHS Root CA TEST", NOW)
    issuing = issuing_ca(root, "SITHS Person CA TEST")
    result = kommun_a(configure(config_dir, [root.certificate], [issuing.certificate]))

    assert [(c.status, c.subject) for c in result.checks if c.id == "trust.test_hierarchy"] == [
        ("fail", "SITHS Root CA TEST"), ("fail", "SITHS Person CA TEST")]


# --- the anchor itself ---------------------------------------------------------------------------------------


def test_anchor_that_is_not_a_self_signed_root_warns(config_dir: Path) -> None:
    """Configuring the issuing CA itself as the anchor works (the path stops there) but is worth a WARN."""
    root = root_ca("Kommun A Root CA", NOW)
    issuing = issuing_ca(root, "Kommun A Person CA")
    result = kommun_a(configure(config_dir, [issuing.certificate]))

    check = only(result, "trust.anchor_self_signed")
    assert (check.status, check.subject) == ("warn", "Kommun A Person CA")
    assert "CN=Kommun A Root CA" in check.evidence
    assert only(result, "trust.anchor").status == "pass"
    # the bundle `broker proxy-config` writes then holds no root: a proxy verifying with it refuses every card
    assert check.fix == ("Prefer the self-signed root of the hierarchy as anchor, unless trusting only this branch "
                         "is intended; then put that root (CN=Kommun A Root CA,O=Kommun A,C=SE) in the proxy's "
                         "verification store (nginx: ssl_trusted_certificate), as no bundle written from this "
                         "configuration holds it and Apache ends the handshake of every card without it.")


def test_a_sha1_signed_root_is_not_called_issued_by_itself(config_dir: Path) -> None:
    # its own name as issuer, a signature nothing checks any more: the warning says which, not "issued by" itself
    root = root_ca("Kommun A Root CA", NOW)
    sha1_root = sha1_resign(root.certificate, root.key)
    result = kommun_a(configure(config_dir, [sha1_root]))

    check = only(result, "trust.anchor_self_signed")
    assert "names itself as issuer, but its signature cannot be checked" in check.evidence
    assert "is issued by" not in check.evidence


def test_self_signed_root_anchor_has_no_self_signed_warning(config_dir: Path) -> None:
    root = root_ca("Kommun A Root CA", NOW)
    result = kommun_a(configure(config_dir, [root.certificate]))

    assert statuses(result, "trust.anchor_self_signed") == []


def test_trust_checks_on_the_example_configuration(config_dir: Path) -> None:
    """The demo hierarchies (Kommun A and B) are production-named, current roots with their issuing CAs."""
    settings = load(config_dir)
    for mid in ("kommun-a", "kommun-b"):
        cl = settings.municipalities[mid].config.certificate
        assert cl is not None
        checks = trust_checks(cl, NOW, dt.timedelta(days=30), "production")
        assert [(c.id, c.status) for c in checks] == [
            ("trust.anchor", "pass"), ("trust.intermediate", "pass"), ("trust.test_hierarchy", "pass")]
