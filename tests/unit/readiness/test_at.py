"""`broker readiness --at INSTANT`: expiries judged as of the go-live date, not only as of today.

A CA, the broker's key or the sample certificate that is valid today and expires the week before go-live passes a
run today and fails the evening before: with ``--at`` every validity window (certificates, metadata validUntil,
CRL files' nextUpdate) is judged at the instant given, while the network is still asked now. Cases run readiness
offline on a copy of the example configuration with CAs the PKI factory made for the case.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from broker.cli import main
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
    write_certificate_municipality,
)

NOW = now_utc()
A = "kommun-a"


@pytest.fixture(autouse=True)
def no_redis_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("NO_COLOR", "1")


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def anchor_expiring_in_40_days(config_dir: Path) -> None:
    root = root_ca("Kommun A Root CA", NOW, days_left=40)
    write_certificate_municipality(config_dir, A, anchors=[root.certificate],
                                   intermediates=[issuing_ca(root, "Kommun A Person CA", days_left=39).certificate])
    set_readiness(config_dir, expiry_warning="30d")


@pytest.mark.parametrize(("at", "status", "title"), [
    (None, "pass", "trust anchor valid"),                   # 40 days left today: beyond the 30-day window
    (NOW + 20 * DAY, "warn", "trust anchor expires soon"),  # 20 days left at go-live
    (NOW + 60 * DAY, "fail", "trust anchor expired"),        # expired by go-live, valid today
], ids=["today", "go-live-within-the-window", "go-live-after-expiry"])
def test_trust_anchor_is_judged_at_the_instant_given(config_dir: Path, at: dt.datetime | None, status: str,
                                                     title: str) -> None:
    anchor_expiring_in_40_days(config_dir)
    settings = load(config_dir)

    report = readiness(settings, now=NOW, municipalities=[A], network=False, at=at)

    check = only(section(report, A), "trust.anchor")
    assert (check.status, check.title) == (status, title)
    assert report.to_json()["at"] == (at.isoformat() if at else None)
    assert report.generated == NOW


@pytest.mark.parametrize("check_id", ["broker.idp_signing", "broker.sp_signing", "broker.sp_decryption"])
def test_the_brokers_keys_are_judged_at_the_instant_given(config_dir: Path, check_id: str) -> None:
    set_readiness(config_dir)
    settings = load(config_dir)
    today = only(readiness(settings, now=NOW, network=False).broker, check_id)
    assert today.status == "pass"
    assert today.expires is not None

    later = only(readiness(settings, now=NOW, network=False, at=today.expires + DAY).broker, check_id)

    assert later.status == "fail"
    assert later.title.endswith("expired")


def test_the_sample_certificate_is_judged_at_the_instant_given(config_dir: Path, demo_material) -> None:  # type: ignore[no-untyped-def]
    """Anna (Kommun A's sample in the example) is accepted today; at a go-live after her certificate's end the
    sample.expiry check fails while the validation itself (revocation asked now) still passes."""
    set_readiness(config_dir)
    settings = load(config_dir)
    sample = settings.municipalities[A].config.readiness.sample_certificate
    assert sample is not None

    result = section(readiness(settings, now=NOW, municipalities=[A], network=False,
                               at=sample.certificate.not_valid_after_utc + DAY), A)

    assert only(result, "sample.certificate").status == "pass"
    expiry = only(result, "sample.expiry")
    assert (expiry.status, expiry.title) == ("fail", "sample certificate expired")


def test_cli_at_judges_the_go_live_date(config_dir: Path) -> None:
    anchor_expiring_in_40_days(config_dir)
    go_live = (NOW + 60 * DAY).strftime("%Y-%m-%d")

    result = cli("readiness", "--config", str(config_dir), "--offline", "--municipality", A, "--at", go_live,
                 "--json")

    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["at"] == f"{go_live}T00:00:00+00:00"
    anchor = next(c for c in report["municipalities"][0]["checks"] if c["id"] == "trust.anchor")
    assert (anchor["status"], anchor["title"]) == ("fail", "trust anchor expired")


def test_cli_text_names_the_instant_judged(config_dir: Path) -> None:
    anchor_expiring_in_40_days(config_dir)

    result = cli("readiness", "--config", str(config_dir), "--offline", "--municipality", A,
                 "--at", "2030-01-02T03:04:00+01:00")

    assert result.stdout.splitlines()[0].endswith("; expiries judged at 2030-01-02 02:04 UTC")


@pytest.mark.parametrize(("value", "message"), [
    ("next friday", "--at 'next friday' is not an ISO 8601 date-time"),
    ("0001-01-01T00:00+01:00", "--at '0001-01-01T00:00+01:00' is outside the years 1 to 9999 in UTC"),
], ids=["not-a-date", "outside-utc-years"])
def test_cli_at_that_is_no_instant_is_unusable_input(config_dir: Path, value: str, message: str) -> None:
    result = cli("readiness", "--config", str(config_dir), "--offline", "--at", value)

    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == f"unusable input: {message}\n"
