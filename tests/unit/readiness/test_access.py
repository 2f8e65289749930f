"""Will any service provider let the municipality's users in (``access.service_providers``)? The chain, the
endpoint and revocation can all pass and every real login still end at the SP's rules: no SP lists the
municipality, every SP asks for a higher LoA than its cards or IdP give, or an onboarding municipality meets no
SP that lets onboarding users in. Checked offline, from the configuration (the example's Kommun B: loa2 cards,
listed by the demo SP; Kommun C: an IdP whose ClassRefs give up to loa3)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from broker.readiness.model import Check
from tests.unit.readiness.configs import edit_municipality, load, now_utc, readiness, section, set_readiness

NOW = now_utc()


def edit_sp(config_dir: Path, change: Callable[[dict[str, Any]], None]) -> None:
    path = config_dir / "service-providers" / "demo-sp.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")


def access(config_dir: Path, municipality: str = "kommun-b") -> Check:
    set_readiness(config_dir)
    report = readiness(load(config_dir), now=NOW, municipalities=[municipality], network=False)
    found = [c for c in section(report, municipality).checks if c.id == "access.service_providers"]
    assert len(found) == 1, found
    return found[0]


@pytest.mark.parametrize("municipality", ["kommun-b", "kommun-c"], ids=["certificates", "own-idp"])
def test_a_municipality_an_sp_lets_in_passes(config_dir: Path, municipality: str) -> None:
    check = access(config_dir, municipality)
    assert (check.status, check.title) == ("pass", "service providers accept its users")
    assert "accepted by demo-sp" in check.evidence


def test_a_municipality_no_sp_lists_fails(config_dir: Path) -> None:
    edit_sp(config_dir, lambda doc: doc.__setitem__("municipalities", ["kommun-a", "kommun-c"]))
    check = access(config_dir)
    assert (check.status, check.title) == ("fail", "no service provider accepts its users")
    assert "municipality_not_allowed" in check.evidence


def test_every_sp_asking_for_more_than_its_cards_give_fails(config_dir: Path) -> None:
    """Kommun B's only policy gives loa2; the demo SP, the only one listing it, requires loa3."""
    edit_sp(config_dir, lambda doc: doc.__setitem__("minimum_loa", "loa3"))
    check = access(config_dir)
    assert (check.status, check.title) == ("fail", "every service provider asks for more than its logins give")
    assert check.evidence == "its logins give at most loa2; demo-sp requires loa3 (loa_insufficient)"


def test_an_sp_asking_what_the_municipality_gives_passes(config_dir: Path) -> None:
    edit_sp(config_dir, lambda doc: doc.__setitem__("minimum_loa", "loa2"))
    assert access(config_dir).status == "pass"


def test_an_onboarding_municipality_no_sp_lets_in_warns(config_dir: Path) -> None:
    edit_municipality(config_dir, "kommun-b", lambda doc: doc.__setitem__("status", "onboarding"))
    check = access(config_dir)
    assert (check.status, check.title) == ("warn", "no service provider lets onboarding users in")
    assert "municipality_not_active" in check.evidence

    edit_sp(config_dir, lambda doc: doc.__setitem__("accept_onboarding", True))
    assert access(config_dir).status == "pass"


@pytest.mark.parametrize("municipality", ["kommun-b", "kommun-c"], ids=["certificates", "own-idp"])
def test_a_suspended_municipality_named_in_the_run_fails(config_dir: Path, municipality: str) -> None:
    """`broker readiness --municipality ID` of a suspended municipality: every login is refused
    (municipality_suspended), whatever its chain, IdP and SPs say."""
    edit_municipality(config_dir, municipality, lambda doc: doc.__setitem__("status", "suspended"))
    check = access(config_dir, municipality)
    assert (check.status, check.title) == ("fail", "the municipality is suspended")
    assert "municipality_suspended" in check.evidence


def test_a_municipality_named_twice_is_checked_once(config_dir: Path) -> None:
    """`broker readiness --municipality kommun-a --municipality kommun-b --municipality kommun-a` (a list pasted
    together from two runbooks): each municipality once, in the order first named, and counted once."""
    settings = load(config_dir)
    once = readiness(settings, network=False, municipalities=["kommun-a"])

    report = readiness(settings, network=False, municipalities=["kommun-a", "kommun-b", "kommun-a"])

    assert [s.id for s in report.municipalities] == ["kommun-a", "kommun-b"]
    assert len(section(report, "kommun-a").checks) == len(section(once, "kommun-a").checks)
