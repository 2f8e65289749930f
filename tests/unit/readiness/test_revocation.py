"""Readiness of a municipality's revocation sources (broker.readiness.revocation).

Kommun A's configuration is rewritten per case with a hierarchy from the PKI factory and the revocation
block under test; readiness then runs on it. CRLs come from files on disk or from a real HTTP server on
loopback (tests/factories/http_files.py), OCSP answers from a real RFC 6960 responder on loopback
(tests/factories/ocsp_responder.py) named in the issuing CA's Authority Information Access; unreachable
sources are loopback ports where nothing listens.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from broker.config.loader import Settings
from broker.demo.certificates import CertificateAuthority, Issued, LeafProfile
from broker.readiness.model import Section
from tests.factories.http_files import FileServer, closed_port_url
from tests.factories.metadata import HttpsFileServer, TlsMaterial
from tests.factories.ocsp_responder import OcspResponder
from tests.factories.pki_cases import crl, impostor, window_inverted
from tests.factories.revocation import with_pointers
from tests.unit.readiness.configs import (
    DAY,
    HSA_ID,
    POLICY_A,
    issuing_ca,
    load,
    now_utc,
    only,
    pem,
    readiness,
    root_ca,
    section,
    set_readiness,
    statuses,
    user,
    write_certificate_municipality,
)

NOW = now_utc()
A = "kommun-a"
CRL_FILES = {"issuing-ca.crl": "certs/kommun-a/issuing-ca.crl", "root-ca.crl": "certs/kommun-a/root-ca.crl"}


@dataclass
class Pki:
    root: CertificateAuthority
    issuing: CertificateAuthority


@pytest.fixture
def pki() -> Pki:
    root = root_ca("Kommun A Root CA", NOW)
    return Pki(root, issuing_ca(root, "Kommun A Person CA"))


@pytest.fixture
def files() -> Iterator[FileServer]:
    with FileServer() as server:
        yield server
    assert server.errors == []


def crl_block(*, files: list[str] = (), urls: list[str] = (), distribution_points: bool = False,
              methods: list[str] = ("crl",), **more: Any) -> dict[str, Any]:
    return {"mode": "check", "methods": list(methods), **more,
            "crl": {"files": list(files), "urls": list(urls), "distribution_points": distribution_points}}


def configure(config_dir: Path, pki: Pki, revocation: dict[str, Any], *,
              crls: dict[str, x509.CertificateRevocationList] | None = None,
              sample: x509.Certificate | None = None, intermediates: list[x509.Certificate] | None = None
              ) -> Settings:
    write_certificate_municipality(
        config_dir, A, anchors=[pki.root.certificate],
        intermediates=intermediates if intermediates is not None else [pki.issuing.certificate],
        revocation=revocation, crls=crls, sample=sample)
    # a day's warning: the factory's CRLs (nextUpdate in 7 days) are current CRL files, not ones about to lapse
    set_readiness(config_dir, expiry_warning="1d")
    return load(config_dir)


def kommun_a(settings: Settings, *, network: bool = True) -> Section:
    return section(readiness(settings, now=NOW, municipalities=[A], network=network), A)


def fresh_crls(pki: Pki) -> dict[str, x509.CertificateRevocationList]:
    return {"issuing-ca.crl": pki.issuing.crl(), "root-ca.crl": pki.root.crl()}


# --- the mode -----------------------------------------------------------------------------------------------


def test_revocation_mode_none_warns(config_dir: Path, pki: Pki) -> None:
    result = kommun_a(configure(config_dir, pki, {"mode": "none"}))

    check = only(result, "revocation.mode")
    assert (check.status, check.title) == ("warn", "revocation checking is off")
    assert check.fix is not None
    assert [c.id for c in result.checks if c.id.startswith("revocation.")] == ["revocation.mode"]


def test_soft_fail_warns(config_dir: Path, pki: Pki) -> None:
    result = kommun_a(configure(config_dir, pki, crl_block(files=list(CRL_FILES.values()), failure="soft_fail"),
                                crls=fresh_crls(pki)))

    assert only(result, "revocation.mode").status == "pass"
    check = only(result, "revocation.failure")
    assert (check.status, check.title) == ("warn", "revocation soft-fail")


def test_fail_closed_has_no_failure_warning(config_dir: Path, pki: Pki) -> None:
    result = kommun_a(configure(config_dir, pki, crl_block(files=list(CRL_FILES.values())), crls=fresh_crls(pki)))

    assert only(result, "revocation.mode").status == "pass"
    assert statuses(result, "revocation.failure") == []


# --- CRL files ----------------------------------------------------------------------------------------------


def test_fresh_crl_files_pass(config_dir: Path, pki: Pki) -> None:
    crls = fresh_crls(pki)
    result = kommun_a(configure(config_dir, pki, crl_block(files=list(CRL_FILES.values())), crls=crls))

    checks = [c for c in result.checks if c.id == "revocation.crl"]
    assert [(c.status, c.title) for c in checks] == [("pass", "CRL fresh and signed")] * 2
    assert checks[0].subject is not None
    assert checks[0].subject.endswith("certs/kommun-a/issuing-ca.crl")
    assert checks[0].expires == crls["issuing-ca.crl"].next_update_utc


def test_stale_crl_file_fails(config_dir: Path, pki: Pki) -> None:
    crls = fresh_crls(pki)
    crls["issuing-ca.crl"] = crl(pki.issuing, this_update=NOW - 8 * DAY, next_update=NOW - DAY)
    result = kommun_a(configure(config_dir, pki, crl_block(files=list(CRL_FILES.values())), crls=crls))

    assert [(c.status, c.title) for c in result.checks if c.id == "revocation.crl"] == [
        ("fail", "CRL stale"), ("pass", "CRL fresh and signed")]
    stale = result.checks[[c.id for c in result.checks].index("revocation.crl")]
    assert "nextUpdate" in stale.evidence
    assert stale.fix is not None
    assert "replace the file" in stale.fix


def test_crl_past_next_update_within_clock_skew_still_passes(config_dir: Path, pki: Pki) -> None:
    """nextUpdate 2 minutes ago, clock_skew 5m: the broker would still use it, so readiness does not fail it (a
    file: it warns that the file is about to lapse)."""
    crls = {"issuing-ca.crl": crl(pki.issuing, this_update=NOW - DAY, next_update=NOW - dt.timedelta(minutes=2))}
    result = kommun_a(configure(config_dir, pki, crl_block(files=[CRL_FILES["issuing-ca.crl"]], clock_skew="5m"),
                                crls=crls))

    assert [(c.status, c.title) for c in result.checks if c.id == "revocation.crl"] == [
        ("warn", "CRL file lapses soon")]


@pytest.mark.parametrize(("warning", "at", "status", "title"), [
    ("1d", None, "pass", "CRL fresh and signed"),
    # a CRL file lives days: warned of a day ahead, not expiry_warning's month ahead (it would always warn)
    ("30d", None, "pass", "CRL fresh and signed"),                           # 7 days left
    ("30d", NOW + 6 * DAY + dt.timedelta(hours=1), "warn", "CRL file lapses soon"),  # under a day left at go-live
    ("1h", NOW + 6 * DAY + dt.timedelta(hours=1), "pass", "CRL fresh and signed"),   # a shorter window is kept
    ("1d", NOW + 10 * DAY, "fail", "CRL file lapses before the date judged"),        # lapsed by go-live
], ids=["current", "current-in-a-month-window", "lapses-the-day-of-go-live", "a-shorter-window", "lapsed-by-go-live"])
def test_crl_file_is_judged_through_the_window_and_the_date_given(config_dir: Path, pki: Pki, warning: str,
                                                                  at: dt.datetime | None, status: str,
                                                                  title: str) -> None:
    """Nothing fetches a configured CRL file: once its nextUpdate (here in 7 days) passes, every login it answers
    for is refused until the operator replaces it, so it must still be current at go-live (``--at``)."""
    crls = fresh_crls(pki)
    configure(config_dir, pki, crl_block(files=list(CRL_FILES.values())), crls=crls)
    set_readiness(config_dir, expiry_warning=warning)

    result = section(readiness(load(config_dir), now=NOW, municipalities=[A], at=at), A)

    checks = [c for c in result.checks if c.id == "revocation.crl"]
    assert [(c.status, c.title) for c in checks] == [(status, title)] * 2
    assert checks[0].expires == crls["issuing-ca.crl"].next_update_utc
    assert (checks[0].fix is not None) == (status != "pass")
    if status != "pass":
        assert checks[0].fix is not None
        assert "certificate.revocation.crl.urls" in checks[0].fix
        assert "replaced" in checks[0].evidence


def test_crl_at_a_url_is_judged_now_whatever_the_date_given(config_dir: Path, pki: Pki, files: FileServer) -> None:
    """A CRL the broker fetches is renewed by the CA before it lapses: its nextUpdate says nothing about go-live."""
    url = files.put_crl("/crl/issuing.crl", pki.issuing.crl())
    root_url = files.put_crl("/crl/root.crl", pki.root.crl())
    configure(config_dir, pki, crl_block(urls=[url, root_url]))

    result = section(readiness(load(config_dir), now=NOW, municipalities=[A], at=NOW + 60 * DAY), A)

    assert statuses(result, "revocation.crl") == ["pass", "pass"]


def test_crl_whose_next_update_is_before_its_this_update_fails_as_logins_cannot_use_it(config_dir: Path,
                                                                                        pki: Pki) -> None:
    """Both ends within the clock skew of now, but a window that holds no instant: the broker never takes such a CRL
    for "good" (broker.pki.revocation.crls), so readiness does not call it fresh."""
    crls = {"issuing-ca.crl": window_inverted(pki.issuing, NOW - dt.timedelta(minutes=1),
                                              NOW - dt.timedelta(minutes=2))}
    result = kommun_a(configure(config_dir, pki, crl_block(files=[CRL_FILES["issuing-ca.crl"]], clock_skew="5m"),
                                crls=crls))

    check = only(result, "revocation.crl")
    assert (check.status, check.title) == ("fail", "CRL window inverted")
    assert "before its thisUpdate" in check.evidence


def test_crl_with_next_update_in_year_9999_passes(config_dir: Path, pki: Pki) -> None:
    """The last instant a date holds as nextUpdate: fresh for as long as anyone cares, not an overflow."""
    last = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC)
    crls = {"issuing-ca.crl": crl(pki.issuing, this_update=NOW - DAY, next_update=last)}
    result = kommun_a(configure(config_dir, pki, crl_block(files=[CRL_FILES["issuing-ca.crl"]]), crls=crls))

    assert statuses(result, "revocation.crl") == ["pass"]


def test_crl_file_with_a_bad_signature_fails(config_dir: Path, pki: Pki) -> None:
    """The file was good when the configuration was loaded, then replaced by one its issuer did not sign."""
    settings = configure(config_dir, pki, crl_block(files=[CRL_FILES["issuing-ca.crl"]]),
                         crls={"issuing-ca.crl": pki.issuing.crl()})
    (config_dir / CRL_FILES["issuing-ca.crl"]).write_bytes(pem(impostor(pki.issuing).crl()))

    check = only(kommun_a(settings), "revocation.crl")

    assert (check.status, check.title) == ("fail", "CRL not valid")
    assert "signature" in check.evidence


def test_crl_file_of_an_unconfigured_issuer_fails(config_dir: Path, pki: Pki) -> None:
    settings = configure(config_dir, pki, crl_block(files=[CRL_FILES["issuing-ca.crl"]]),
                         crls={"issuing-ca.crl": pki.issuing.crl()})
    stranger = root_ca("Elsewhere Root CA", NOW, organization="Elsewhere")
    (config_dir / CRL_FILES["issuing-ca.crl"]).write_bytes(pem(stranger.crl()))

    check = only(kommun_a(settings), "revocation.crl")

    assert (check.status, check.title) == ("fail", "CRL not valid")
    assert "not a configured CA" in check.evidence


def test_missing_crl_file_fails(config_dir: Path, pki: Pki) -> None:
    settings = configure(config_dir, pki, crl_block(files=[CRL_FILES["issuing-ca.crl"]]),
                         crls={"issuing-ca.crl": pki.issuing.crl()})
    (config_dir / CRL_FILES["issuing-ca.crl"]).unlink()

    check = only(kommun_a(settings), "revocation.crl")

    assert (check.status, check.title) == ("fail", "CRL unreachable")
    assert check.fix == "Restore the CRL file."


# --- CRL URLs -----------------------------------------------------------------------------------------------


def test_crl_url_reachable_passes(config_dir: Path, pki: Pki, files: FileServer) -> None:
    url = files.put_crl("/crl/issuing.crl", pki.issuing.crl())
    result = kommun_a(configure(config_dir, pki, crl_block(urls=[url])))

    check = only(result, "revocation.crl")
    assert (check.status, check.title, check.subject) == ("pass", "CRL fresh and signed", url)
    assert files.hits["/crl/issuing.crl"] == 1


def test_crl_url_unreachable_fails(config_dir: Path, pki: Pki) -> None:
    url = closed_port_url("/crl/issuing.crl")
    check = only(kommun_a(configure(config_dir, pki, crl_block(urls=[url]))), "revocation.crl")

    assert (check.status, check.title, check.subject) == ("fail", "CRL unreachable", url)
    assert "cannot connect" in check.evidence
    assert check.fix is not None
    assert "firewall" in check.fix


def test_crl_url_with_an_untrusted_tls_certificate_says_so(config_dir: Path, pki: Pki, tmp_path: Path) -> None:
    # the server answers: the fix is about trust (or plain http, CRLs being signed), not about firewalls
    with HttpsFileServer(TlsMaterial.generate(tmp_path / "tls", dt.datetime.now(dt.UTC))) as https:
        url = https.put_crl("/crl/issuing.crl", pki.issuing.crl())
        check = only(kommun_a(configure(config_dir, pki, crl_block(urls=[url]))), "revocation.crl")

    assert (check.status, check.title) == ("fail", "CRL unreachable")
    assert "CERTIFICATE_VERIFY_FAILED" in check.evidence
    assert check.fix is not None
    assert check.fix.startswith("The CRL server's TLS certificate is not trusted by this host")


def test_crl_url_answering_404_fails(config_dir: Path, pki: Pki, files: FileServer) -> None:
    url = files.url("/crl/missing.crl")
    check = only(kommun_a(configure(config_dir, pki, crl_block(urls=[url]))), "revocation.crl")

    assert (check.status, check.title) == ("fail", "CRL unreachable")
    assert "404" in check.evidence


def test_stale_crl_at_a_url_fails(config_dir: Path, pki: Pki, files: FileServer) -> None:
    url = files.put_crl("/crl/issuing.crl", crl(pki.issuing, this_update=NOW - 9 * DAY, next_update=NOW - 2 * DAY))
    check = only(kommun_a(configure(config_dir, pki, crl_block(urls=[url]))), "revocation.crl")

    assert (check.status, check.title) == ("fail", "CRL stale")
    assert check.fix == "Ask the CA to publish a fresh CRL."


def test_crl_url_with_a_bad_signature_fails(config_dir: Path, pki: Pki, files: FileServer) -> None:
    url = files.put_crl("/crl/issuing.crl", impostor(pki.issuing).crl())
    check = only(kommun_a(configure(config_dir, pki, crl_block(urls=[url]))), "revocation.crl")

    assert (check.status, check.title) == ("fail", "CRL not valid")


def test_crl_url_is_not_fetched_offline(config_dir: Path, pki: Pki, files: FileServer) -> None:
    url = files.put_crl("/crl/issuing.crl", pki.issuing.crl())
    check = only(kommun_a(configure(config_dir, pki, crl_block(urls=[url])), network=False), "revocation.crl")

    assert (check.status, check.title) == ("warn", "CRL not fetched")
    assert files.hits["/crl/issuing.crl"] == 0


def test_sample_distribution_point_is_fetched(config_dir: Path, pki: Pki, files: FileServer) -> None:
    """The sample names its CRL distribution point; the root's CRL is configured by URL."""
    root_url = files.put_crl("/crl/root.crl", pki.root.crl())
    url = files.put_crl("/crl/issuing.crl", pki.issuing.crl())
    sample = pki.issuing.issue(LeafProfile(common_name="Sara", serial_number=HSA_ID, policies=(POLICY_A,),
                                           crl_url=url)).certificate
    result = kommun_a(configure(config_dir, pki, crl_block(urls=[root_url], distribution_points=True),
                                sample=sample))

    assert [(c.status, c.subject) for c in result.checks if c.id == "revocation.crl"] == [
        ("pass", root_url), ("pass", url)]
    assert only(result, "sample.certificate").status == "pass"


def test_distribution_points_off_are_not_fetched(config_dir: Path, pki: Pki, files: FileServer) -> None:
    root_url = files.put_crl("/crl/root.crl", pki.root.crl())
    url = files.put_crl("/crl/issuing.crl", pki.issuing.crl())
    sample = pki.issuing.issue(LeafProfile(common_name="Sara", serial_number=HSA_ID, policies=(POLICY_A,),
                                           crl_url=url)).certificate
    result = kommun_a(configure(config_dir, pki, crl_block(urls=[root_url], distribution_points=False),
                                sample=sample))

    assert [c.subject for c in result.checks if c.id == "revocation.crl" and c.status == "pass"] == [root_url]
    # and so, CRLs the only method, nothing answers for the issuing CA's cards: the go-live failure, said
    missing = [c for c in result.checks if c.id == "revocation.crl" and c.status == "fail"]
    assert [(c.title, c.subject) for c in missing] == [("no CRL source for the issuing CA", "Kommun A Person CA")]


def test_a_crl_from_the_future_fails_as_logins_cannot_use_it(config_dir: Path, pki: Pki, files: FileServer) -> None:
    """The broker does not adopt a CRL whose thisUpdate is more than 5 minutes ahead (broker.pki.revocation.crls):
    readiness says so, rather than "fresh and signed"."""
    url = files.put_crl("/crl/issuing.crl", pki.issuing.crl(this_update=NOW + 2 * DAY, next_update=NOW + 9 * DAY))
    root_url = files.put_crl("/crl/root.crl", pki.root.crl())
    result = kommun_a(configure(config_dir, pki, crl_block(urls=[url, root_url])))

    check, = [c for c in result.checks if c.subject == url]
    assert (check.status, check.title) == ("fail", "CRL not yet valid")
    assert "lies in the future: logins cannot use it" in check.evidence


def test_no_crl_source_known_warns(config_dir: Path, pki: Pki) -> None:
    """Only distribution points, and neither the CAs nor a sample name one: nothing can be checked."""
    check = only(kommun_a(configure(config_dir, pki, crl_block(distribution_points=True))), "revocation.crl")

    assert (check.status, check.title) == ("warn", "no CRL source known")


# --- the CA certificates' own status (every certificate below the root is checked at each login) -------------


def ca_status(result: Section) -> list[tuple[str, str | None, str]]:
    return [(c.status, c.subject, c.evidence) for c in result.checks if c.id == "revocation.ca_status"]


def test_no_crl_from_the_root_fails_as_every_login_would(config_dir: Path, pki: Pki) -> None:
    """CRLs the only method, the issuing CA's CRL configured and the root's not: the users' cards have a source,
    the issuing CA's own certificate none, and the engine refuses every login for it (the sample shows it)."""
    sample = user(pki.issuing).certificate
    result = kommun_a(configure(config_dir, pki, crl_block(files=[CRL_FILES["issuing-ca.crl"]]),
                                crls={"issuing-ca.crl": pki.issuing.crl()}, sample=sample))

    assert ca_status(result) == [("fail", "Kommun A Person CA", (
        "Kommun A Person CA: no CRL from Kommun A Root CA is configured (distribution_points: false); the broker "
        "checks every certificate below the root, so every login with a card below it is refused "
        "(revocation_unavailable)"))]
    assert only(result, "revocation.ca_status").fix == \
        "Add the CRL of Kommun A Root CA to certificate.revocation.crl (files or urls)."
    assert [c.status for c in result.checks if c.id == "revocation.crl"] == ["pass"]  # the one read is fine
    sample_check = only(result, "sample.certificate")
    assert sample_check.status == "fail"
    assert "revocation_unavailable" in sample_check.title + sample_check.evidence


def test_crls_from_both_cas_give_every_certificate_a_status(config_dir: Path, pki: Pki) -> None:
    result = kommun_a(configure(config_dir, pki, crl_block(files=list(CRL_FILES.values())), crls=fresh_crls(pki),
                                sample=user(pki.issuing).certificate))

    assert ca_status(result) == []
    assert only(result, "sample.certificate").status == "pass"


def _for_only(kind: str) -> x509.IssuingDistributionPoint:
    """An issuing distribution point naming no point, for end-entity ("users") or CA certificates only."""
    return x509.IssuingDistributionPoint(full_name=None, relative_name=None,
                                         only_contains_user_certs=kind == "users", only_contains_ca_certs=kind == "cas",
                                         only_some_reasons=None, indirect_crl=False,
                                         only_contains_attribute_certs=False)


def test_an_issuing_cas_crl_for_ca_certificates_only_gives_its_cards_no_status(config_dir: Path, pki: Pki) -> None:
    """RFC 5280 §5.2.5, §6.3.3 (b)(2)(iii): an ARL (onlyContainsCACerts) says nothing of the users' cards; read as
    the issuing CA's CRL, it passed, while every login with its cards is refused (revocation_unavailable)."""
    crls = {"issuing-ca.crl": crl(pki.issuing, extensions=[(_for_only("cas"), True)]), "root-ca.crl": pki.root.crl()}
    result = kommun_a(configure(config_dir, pki, crl_block(files=list(CRL_FILES.values())), crls=crls))

    missing = [c for c in result.checks if c.id == "revocation.crl" and c.status == "fail"]
    assert [(c.title, c.subject) for c in missing] == [("no CRL source for the issuing CA", "Kommun A Person CA")]
    assert ca_status(result) == []


def test_a_roots_crl_for_end_entities_only_gives_the_ca_certificate_no_status(config_dir: Path, pki: Pki) -> None:
    """The other way round: a root's CRL for end-entity certificates only (onlyContainsUserCerts) says nothing of the
    issuing CA's certificate, which the engine checks at every login."""
    crls = {"issuing-ca.crl": pki.issuing.crl(), "root-ca.crl": crl(pki.root, extensions=[(_for_only("users"), True)])}
    result = kommun_a(configure(config_dir, pki, crl_block(files=list(CRL_FILES.values())), crls=crls))

    assert [(status, subject) for status, subject, _ in ca_status(result)] == [("fail", "Kommun A Person CA")]


def test_ocsp_first_and_a_ca_certificate_without_a_responder_or_crl_fails(config_dir: Path, pki: Pki) -> None:
    """``ocsp.url`` serves the users' certificates; the issuing CA's own status comes from its own AIA (which it
    lacks) or a CRL from the root (not configured). (OCSP alone with such a CA the loader refuses.)"""
    result = kommun_a(configure(config_dir, pki, crl_block(files=[CRL_FILES["issuing-ca.crl"]], methods=["ocsp", "crl"],
                                                           ocsp={"url": "http://127.0.0.1:9/ocsp"}),
                                crls={"issuing-ca.crl": pki.issuing.crl()}))

    (status, subject, evidence), = ca_status(result)
    assert (status, subject) == ("fail", "Kommun A Person CA")
    assert evidence.startswith("Kommun A Person CA: it names no OCSP responder (Authority Information Access), and "
                               "no CRL from Kommun A Root CA is configured (distribution_points: false);")


def test_a_crl_from_the_root_answers_where_the_ca_names_no_responder(config_dir: Path, pki: Pki) -> None:
    result = kommun_a(configure(config_dir, pki, crl_block(files=list(CRL_FILES.values()), methods=["ocsp", "crl"]),
                                crls=fresh_crls(pki)))

    assert ca_status(result) == []


def test_the_ca_certificates_distribution_point_answers(config_dir: Path, pki: Pki, files: FileServer) -> None:
    root_url = files.put_crl("/crl/root.crl", pki.root.crl())
    issuing = issuing_ca(pki.root, "Kommun A Person CA", crl_url=root_url)
    result = kommun_a(configure(config_dir, Pki(pki.root, issuing),
                                crl_block(files=[CRL_FILES["issuing-ca.crl"]], distribution_points=True),
                                crls={"issuing-ca.crl": issuing.crl()}, intermediates=[issuing.certificate]))

    assert [(c.status, c.subject) for c in result.checks if c.id == "revocation.crl"] == [
        ("pass", f"file {config_dir / CRL_FILES['issuing-ca.crl']}"), ("pass", root_url)]
    assert ca_status(result) == []


def test_an_unreadable_crl_source_is_not_reported_twice(config_dir: Path, pki: Pki) -> None:
    """The root's CRL URL is down: that is the finding; whether it is the CA's source is not known."""
    result = kommun_a(configure(config_dir, pki, crl_block(files=[CRL_FILES["issuing-ca.crl"]],
                                                           urls=[closed_port_url("/root.crl")]),
                                crls={"issuing-ca.crl": pki.issuing.crl()}))

    assert "fail" in statuses(result, "revocation.crl")
    assert ca_status(result) == []


def test_under_soft_fail_the_missing_source_lets_logins_through_unchecked(config_dir: Path, pki: Pki) -> None:
    result = kommun_a(configure(config_dir, pki, crl_block(files=[CRL_FILES["issuing-ca.crl"]], failure="soft_fail"),
                                crls={"issuing-ca.crl": pki.issuing.crl()}))

    (status, _, evidence), = ca_status(result)
    assert status == "fail"
    assert evidence.endswith("so logins go on unchecked (soft_fail, audited)")


def test_no_crl_source_known_does_not_silence_the_ca_status(config_dir: Path, pki: Pki) -> None:
    """Only distribution points, and the issuing CA's certificate names none (nor a responder): a warning about
    the users' sources, and a FAIL for the CA certificate, whose status nothing gives."""
    result = kommun_a(configure(config_dir, pki, crl_block(distribution_points=True)))

    assert [(c.status, c.title) for c in result.checks if c.id == "revocation.crl"] == [
        ("warn", "no CRL source known")]
    assert [status for status, _, _ in ca_status(result)] == ["fail"]


def test_a_root_crl_url_not_fetched_offline_is_no_missing_source(config_dir: Path, pki: Pki,
                                                                 files: FileServer) -> None:
    root_url = files.put_crl("/crl/root.crl", pki.root.crl())
    result = kommun_a(configure(config_dir, pki, crl_block(files=[CRL_FILES["issuing-ca.crl"]], urls=[root_url]),
                                crls={"issuing-ca.crl": pki.issuing.crl()}), network=False)

    assert "warn" in statuses(result, "revocation.crl")  # "CRL not fetched"
    assert ca_status(result) == []


# --- OCSP for the CA certificates ---------------------------------------------------------------------------


@pytest.fixture
def responder(pki: Pki) -> Iterator[OcspResponder]:
    """Kommun A root's OCSP responder, answering about the issuing CA."""
    with OcspResponder(pki.root, now=NOW) as r:
        yield r
    assert r.errors == []


def ocsp_configured(config_dir: Path, pki: Pki, url: str, *, sample: Issued | None = None,
                    **more: Any) -> tuple[Settings, CertificateAuthority]:
    issuing = issuing_ca(pki.root, "Kommun A Person CA", ocsp_url=url)
    settings = configure(config_dir, pki, {"mode": "check", "methods": ["ocsp"], **more},
                         intermediates=[issuing.certificate], sample=sample.certificate if sample else None)
    return settings, issuing


def test_ocsp_responder_answering_good_passes(config_dir: Path, pki: Pki, responder: OcspResponder) -> None:
    settings, _ = ocsp_configured(config_dir, pki, responder.url)

    check = only(kommun_a(settings), "revocation.ocsp")

    assert (check.status, check.title, check.subject) == ("pass", "OCSP responder answers", responder.url)
    assert "Kommun A Person CA good" in check.evidence
    assert len(responder.requests) == 1


def test_ocsp_responder_refusing_get_is_asked_by_post(config_dir: Path, pki: Pki, responder: OcspResponder) -> None:
    """The CA's responder is asked as a login asks it (broker.pki.revocation.transport): GET first (no nonce),
    POST after a 405."""
    responder.refuse_method("GET")
    settings, _ = ocsp_configured(config_dir, pki, responder.url)

    check = only(kommun_a(settings), "revocation.ocsp")

    assert (check.status, check.title, check.subject) == ("pass", "OCSP responder answers", responder.url)
    assert "Kommun A Person CA good (asked by POST)" in check.evidence
    assert responder.methods_seen == ["GET", "POST"]


def test_ocsp_responder_refusing_post_fails_when_post_is_configured(config_dir: Path, pki: Pki,
                                                                    responder: OcspResponder) -> None:
    responder.refuse_method("POST")
    settings, _ = ocsp_configured(config_dir, pki, responder.url, ocsp={"http_method": "post"})

    check = only(kommun_a(settings), "revocation.ocsp")

    assert (check.status, check.title, check.subject) == ("fail", "OCSP responder unreachable", responder.url)
    assert f"POST {responder.url}: HTTP 405" in check.evidence
    assert responder.methods_seen == ["POST"]


def test_users_ocsp_responder_answering_get_only_passes_with_a_nonce(config_dir: Path, pki: Pki,
                                                                      users_responder: OcspResponder) -> None:
    users_responder.refuse_method("POST")
    result = users_ocsp(config_dir, pki, users_responder.url, methods=["ocsp", "crl"], ocsp={"nonce": True})

    check = only(result, "revocation.ocsp_users")
    assert (check.status, check.evidence) == (
        "pass", f"{users_responder.url}: asked about the sample Sara Svensson by GET: good")
    assert users_responder.methods_seen == ["POST", "GET"]


def test_ocsp_responder_unreachable_fails(config_dir: Path, pki: Pki) -> None:
    url = closed_port_url("/ocsp")
    settings, _ = ocsp_configured(config_dir, pki, url)

    check = only(kommun_a(settings), "revocation.ocsp")

    assert (check.status, check.title, check.subject) == ("fail", "OCSP responder unreachable", url)


def test_ocsp_says_the_ca_is_revoked_fails(config_dir: Path, pki: Pki, responder: OcspResponder) -> None:
    settings, issuing = ocsp_configured(config_dir, pki, responder.url)
    responder.set_status(issuing.certificate, "revoked")

    check = only(kommun_a(settings), "revocation.ocsp")

    assert (check.status, check.title) == ("fail", "OCSP says the CA is revoked")
    assert check.fix is not None


def test_ocsp_says_the_ca_is_unknown_fails(config_dir: Path, pki: Pki, responder: OcspResponder) -> None:
    settings, issuing = ocsp_configured(config_dir, pki, responder.url)
    responder.set_status(issuing.certificate, "unknown")

    check = only(kommun_a(settings), "revocation.ocsp")

    assert (check.status, check.title) == ("fail", "OCSP says the CA is unknown")


def test_ocsp_answer_signed_by_an_unrelated_key_fails(config_dir: Path, pki: Pki, responder: OcspResponder) -> None:
    settings, _ = ocsp_configured(config_dir, pki, responder.url)
    responder.sign_with_unrelated_key()

    check = only(kommun_a(settings), "revocation.ocsp")

    assert (check.status, check.title) == ("fail", "OCSP answer not valid")


def test_stale_ocsp_answer_fails(config_dir: Path, pki: Pki, responder: OcspResponder) -> None:
    settings, _ = ocsp_configured(config_dir, pki, responder.url)
    responder.stale()

    check = only(kommun_a(settings), "revocation.ocsp")

    assert (check.status, check.title) == ("fail", "OCSP answer not valid")


def test_ocsp_responder_not_asked_offline(config_dir: Path, pki: Pki, responder: OcspResponder) -> None:
    settings, _ = ocsp_configured(config_dir, pki, responder.url)

    check = only(kommun_a(settings, network=False), "revocation.ocsp")

    assert (check.status, check.title) == ("warn", "OCSP responder not asked")
    assert responder.hits == 0


def test_users_ocsp_responder_not_exercised_without_a_sample(config_dir: Path, pki: Pki,
                                                             responder: OcspResponder) -> None:
    settings, _ = ocsp_configured(config_dir, pki, responder.url)

    check = only(kommun_a(settings), "revocation.ocsp_users")

    assert (check.status, check.title) == ("warn", "the users' OCSP responder not exercised")
    assert "the responder named in the users' certificates" in check.evidence


def test_users_ocsp_warning_names_the_configured_responder(config_dir: Path, pki: Pki,
                                                           responder: OcspResponder) -> None:
    settings, _ = ocsp_configured(config_dir, pki, responder.url, ocsp={"url": "http://ocsp.example.se/users"})

    check = only(kommun_a(settings), "revocation.ocsp_users")

    assert "http://ocsp.example.se/users" in check.evidence


def test_users_ocsp_warning_goes_away_with_a_sample(config_dir: Path, pki: Pki, responder: OcspResponder) -> None:
    issuing = issuing_ca(pki.root, "Kommun A Person CA", ocsp_url=responder.url)
    sample = user(issuing)
    settings = configure(config_dir, pki, {"mode": "check", "methods": ["ocsp"], "failure": "soft_fail"},
                         intermediates=[issuing.certificate], sample=sample.certificate)

    assert statuses(kommun_a(settings), "revocation.ocsp_users") == []


# --- the users' OCSP responder, asked about the sample through the engine a login uses ----------------------


@pytest.fixture
def users_responder(pki: Pki) -> Iterator[OcspResponder]:
    """Kommun A issuing CA's OCSP responder, answering about its users' certificates."""
    with OcspResponder(pki.issuing, now=NOW) as r:
        yield r
    assert r.errors == []


def sample_with_responder(issuing: CertificateAuthority, url: str) -> x509.Certificate:
    """A user certificate whose Authority Information Access names the OCSP responder ``url``."""
    return issuing.issue(LeafProfile(common_name="Sara Svensson", serial_number=HSA_ID, policies=(POLICY_A,),
                                     ocsp_url=url)).certificate


def users_ocsp(config_dir: Path, pki: Pki, url: str, *, methods: list[str], network: bool = True,
               **more: Any) -> Section:
    """Kommun A with ``methods``, fresh CRL files for both CAs, and a sample naming the responder ``url``."""
    settings = configure(config_dir, pki, crl_block(files=list(CRL_FILES.values()), methods=methods, **more),
                         crls=fresh_crls(pki), sample=sample_with_responder(pki.issuing, url))
    return kommun_a(settings, network=network)


def ocsp_only(config_dir: Path, pki: Pki, ca_responder: OcspResponder, url: str, **more: Any) -> Section:
    """Kommun A with methods [ocsp] only: its issuing CA names the root's (working) responder, the sample
    ``url``."""
    issuing = issuing_ca(pki.root, "Kommun A Person CA", ocsp_url=ca_responder.url)
    settings = configure(config_dir, pki, {"mode": "check", "methods": ["ocsp"], **more},
                         intermediates=[issuing.certificate], sample=sample_with_responder(issuing, url))
    return kommun_a(settings)


def test_dead_users_ocsp_responder_behind_a_working_crl_warns(config_dir: Path, pki: Pki) -> None:
    """The review's s9: methods [ocsp, crl], nothing listens at the users' responder, the CRL answers. The sample
    passes by CRL, but every login would first wait for the responder: revocation.ocsp_users WARNs with the URL
    and the error."""
    url = closed_port_url("/ocsp")

    result = users_ocsp(config_dir, pki, url, methods=["ocsp", "crl"])

    check = only(result, "revocation.ocsp_users")
    assert (check.status, check.title, check.subject) == (
        "warn", "the users' OCSP responder fails; the CRL answers instead", url)
    assert check.evidence.startswith(f"{url} (asked about the sample Sara Svensson): cannot connect (")
    assert "Connection refused" in check.evidence
    assert check.evidence.endswith("Logins ask it first and, while it fails, wait for it (up to 2 s to connect "
                                   "and 3 s in all) before the CRL answers")
    assert check.fix is not None
    assert "list crl before ocsp in revocation.methods" in check.fix
    sample = only(result, "sample.certificate")
    assert sample.status == "pass"
    assert sample.evidence.endswith("revocation crl")
    assert result.result == "warn"


def test_users_ocsp_responder_refusing_both_methods_names_each(config_dir: Path, pki: Pki,
                                                               users_responder: OcspResponder) -> None:
    """The GET refused, then the POST after it: each failure with the method it met; the evidence read "HTTP 405;
    then POST <url>: HTTP 501 (by GET)", the POST's failure as the GET's."""
    users_responder.refuse_method("GET")
    users_responder.refuse_method("POST", 501)

    result = users_ocsp(config_dir, pki, users_responder.url, methods=["ocsp", "crl"])

    check = only(result, "revocation.ocsp_users")
    assert check.status == "warn"
    assert check.evidence.startswith(f"{users_responder.url} (asked about the sample Sara Svensson): HTTP 405 (by "
                                     "GET); then HTTP 501 (by POST). Logins ask it first")
    assert users_responder.methods_seen == ["GET", "POST"]


def test_dead_users_ocsp_responder_without_a_fallback_fails(config_dir: Path, pki: Pki,
                                                           responder: OcspResponder) -> None:
    url = closed_port_url("/ocsp")

    result = ocsp_only(config_dir, pki, responder, url)

    check = only(result, "revocation.ocsp_users")
    assert (check.status, check.title, check.subject) == (
        "fail", "the users' OCSP responder fails and nothing else answers", url)
    assert check.evidence.startswith(f"{url} (asked about the sample Sara Svensson): cannot connect (")
    assert check.evidence.endswith("; no other method is configured: logins are refused")
    assert only(result, "sample.certificate").title == "sample certificate refused: revocation_unavailable"


def test_dead_users_ocsp_responder_with_a_stale_crl_fails(config_dir: Path, pki: Pki) -> None:
    """methods [ocsp, crl]: the responder is dead and the issuing CA's CRL is past nextUpdate."""
    url = closed_port_url("/ocsp")
    crls = fresh_crls(pki)
    crls["issuing-ca.crl"] = crl(pki.issuing, this_update=NOW - 8 * DAY, next_update=NOW - DAY)
    settings = configure(config_dir, pki, crl_block(files=list(CRL_FILES.values()), methods=["ocsp", "crl"]),
                         crls=crls, sample=sample_with_responder(pki.issuing, url))

    result = kommun_a(settings)

    check = only(result, "revocation.ocsp_users")
    assert (check.status, check.title) == ("fail", "the users' OCSP responder fails and nothing else answers")
    assert check.evidence.endswith("; the CRL did not answer either: logins are refused")
    assert check.fix is not None
    assert check.fix.endswith("the revocation.crl checks say why the CRL did not answer.")
    assert only(result, "sample.certificate").title == "sample certificate refused: revocation_stale"


def test_dead_users_ocsp_responder_under_soft_fail_fails(config_dir: Path, pki: Pki,
                                                         responder: OcspResponder) -> None:
    """soft_fail lets the sample through, unchecked; the dead responder is still a FAIL."""
    url = closed_port_url("/ocsp")

    result = ocsp_only(config_dir, pki, responder, url, failure="soft_fail")

    check = only(result, "revocation.ocsp_users")
    assert check.status == "fail"
    assert check.evidence.endswith("; no other method is configured: logins go on unchecked (soft_fail, audited)")
    assert only(result, "sample.certificate").evidence.endswith("revocation soft_fail")


def test_working_users_ocsp_responder_passes(config_dir: Path, pki: Pki, users_responder: OcspResponder) -> None:
    result = users_ocsp(config_dir, pki, users_responder.url, methods=["ocsp", "crl"])

    check = only(result, "revocation.ocsp_users")
    assert (check.status, check.title, check.evidence) == (
        "pass", "the users' OCSP responder answers", f"{users_responder.url}: asked about the sample Sara Svensson "
                                                      "by GET: good")
    assert only(result, "sample.certificate").evidence.endswith("revocation crl+ocsp")  # the CA by its root's CRL
    assert len(users_responder.requests) == 1  # the sample's validation used the answer the check got


def test_a_dead_first_users_ocsp_responder_with_a_working_second_warns(config_dir: Path, pki: Pki,
                                                                        users_responder: OcspResponder) -> None:
    """The sample's AIA names two OCSP responders (RFC 5280 §4.2.2.1 alternatives), the first dead: the login asks
    the second and passes by OCSP, but waits for the first each time it is asked: a WARN naming both, not a PASS
    for the dead one nor "the OCSP answers instead"."""
    dead = closed_port_url("/ocsp")
    second = x509.AccessDescription(x509.oid.AuthorityInformationAccessOID.OCSP,
                                    x509.UniformResourceIdentifier(users_responder.url))
    sample = with_pointers(sample_with_responder(pki.issuing, dead), pki.issuing.key, ocsp_url=dead, access=[second])
    settings = configure(config_dir, pki, crl_block(files=list(CRL_FILES.values()), methods=["ocsp", "crl"]),
                         crls=fresh_crls(pki), sample=sample)

    result = kommun_a(settings)

    check = only(result, "revocation.ocsp_users")
    assert (check.status, check.title, check.subject) == (
        "warn", "the users' first OCSP responder fails; the next one in the certificate answers instead", dead)
    assert check.evidence.startswith(f"{dead} (asked about the sample Sara Svensson): cannot connect (")
    assert check.evidence.endswith(f"before {users_responder.url} answers")
    assert len(users_responder.requests) == 1


def test_users_ocsp_responder_answering_unknown_warns(config_dir: Path, pki: Pki,
                                                      users_responder: OcspResponder) -> None:
    users_responder.default = "unknown"

    check = only(users_ocsp(config_dir, pki, users_responder.url, methods=["ocsp", "crl"]), "revocation.ocsp_users")

    assert (check.status, check.title) == ("warn", "the users' OCSP responder fails; the CRL answers instead")
    assert "no definite answer (the responder does not know the sample: status unknown)" in check.evidence


def test_users_ocsp_answer_badly_signed_warns_with_its_reason(config_dir: Path, pki: Pki,
                                                              users_responder: OcspResponder) -> None:
    users_responder.sign_with_unrelated_key()

    check = only(users_ocsp(config_dir, pki, users_responder.url, methods=["ocsp", "crl"]), "revocation.ocsp_users")

    assert check.status == "warn"
    assert f"{users_responder.url} (asked about the sample Sara Svensson): revocation_response_invalid: " \
        in check.evidence


def test_users_ocsp_responder_revoking_the_sample_passes(config_dir: Path, pki: Pki,
                                                         users_responder: OcspResponder) -> None:
    """The responder works; that the sample is revoked is the sample check's FAIL."""
    sample = sample_with_responder(pki.issuing, users_responder.url)
    users_responder.set_status(sample, "revoked")
    settings = configure(config_dir, pki, crl_block(files=list(CRL_FILES.values()), methods=["ocsp", "crl"]),
                         crls=fresh_crls(pki), sample=sample)

    result = kommun_a(settings)

    assert only(result, "revocation.ocsp_users").evidence.endswith(": revoked")
    assert only(result, "revocation.ocsp_users").status == "pass"
    assert only(result, "sample.certificate").title == "sample certificate refused: revoked"


def test_users_ocsp_responder_not_asked_when_the_crl_comes_first(config_dir: Path, pki: Pki) -> None:
    """methods [crl, ocsp]: logins never reach the responder while the CRL answers, and neither does readiness."""
    result = users_ocsp(config_dir, pki, closed_port_url("/ocsp"), methods=["crl", "ocsp"])

    assert statuses(result, "revocation.ocsp_users") == []
    assert only(result, "sample.certificate").status == "pass"


def test_users_ocsp_responder_not_asked_offline(config_dir: Path, pki: Pki, users_responder: OcspResponder) -> None:
    result = users_ocsp(config_dir, pki, users_responder.url, methods=["ocsp", "crl"], network=False)

    assert statuses(result, "revocation.ocsp_users") == []
    assert users_responder.hits == 0
