"""More than one path (broker.pki.path.verify_paths, the validator's choice among them): where a CA has two
certificates under one name (re-issued with other certificatePolicies, cross-certified, a root in two generations),
the card is judged on every valid path and the best one counts, whatever order the configuration lists them in.
cryptography's verifier returns the first path it builds; RFC 5280 §6.1 lets a relying party use any valid one."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from types import MappingProxyType

import pytest
from cryptography import x509
from cryptography.x509.verification import Store

from broker.errors import CertificateRejected
from broker.model import KNOWN_LOAS
from broker.pki import path as path_module
from broker.pki.path import VerifiedPath, verify_path, verify_paths
from broker.pki.truststore import TrustDomain
from tests.factories.pki import POLICY_LOA2, POLICY_LOA3, Hierarchy
from tests.factories.pki_cases import NOW, impostor, policies, reissue, validator

_SWEDEN = x509.DirectoryName(x509.Name([x509.NameAttribute(x509.NameOID.COUNTRY_NAME, "SE")]))
_NORWAY = x509.DirectoryName(x509.Name([x509.NameAttribute(x509.NameOID.COUNTRY_NAME, "NO")]))


@pytest.fixture(scope="module")
def h() -> Hierarchy:
    return Hierarchy.build(NOW)


@pytest.fixture(scope="module")
def loa2_copy(h: Hierarchy) -> x509.Certificate:
    """The issuing CA's certificate again (same name and key), re-issued asserting only the LoA 2 policy."""
    return reissue(h.issuing.certificate, h.root, extra=[policies(POLICY_LOA2)])


def _second(paths: tuple[VerifiedPath, ...]) -> list[x509.Certificate]:
    return [p.chain[1] for p in paths]


@pytest.mark.parametrize("restricted_first", [True, False], ids=["restricted-copy-first", "full-copy-first"])
def test_both_certificates_of_a_re_issued_ca_give_a_path(h: Hierarchy, loa2_copy: x509.Certificate,
                                                         restricted_first: bool) -> None:
    order = [loa2_copy, h.issuing.certificate] if restricted_first else [h.issuing.certificate, loa2_copy]
    paths = verify_paths(h.leaf().certificate, h.domain(intermediates=order), NOW)
    assert set(_second(paths)) == {loa2_copy, h.issuing.certificate}
    assert _second(paths)[0] == order[0]  # the verifier's own choice stays first (verify_path's answer)


@pytest.mark.parametrize("restricted_first", [True, False], ids=["restricted-copy-first", "full-copy-first"])
def test_the_card_gets_the_loa_of_its_best_path_whatever_the_order(h: Hierarchy, loa2_copy: x509.Certificate,
                                                                   restricted_first: bool) -> None:
    order = [loa2_copy, h.issuing.certificate] if restricted_first else [h.issuing.certificate, loa2_copy]
    leaf = h.leaf(policies=(POLICY_LOA3, POLICY_LOA2)).certificate
    validated = validator(h.domain(intermediates=order, crls=h.fresh_crls())).validate(leaf)
    assert validated.loa.name == "loa3"
    assert validated.policy_oid == POLICY_LOA3
    assert validated.path.chain[1] == h.issuing.certificate  # the path it was proved on


def test_a_card_only_the_other_certificate_carries_is_accepted(h: Hierarchy, loa2_copy: x509.Certificate) -> None:
    """Listed first, the LoA 2 copy made a LoA 3 card policy_not_accepted."""
    leaf = h.leaf(policies=(POLICY_LOA3,)).certificate
    domain = h.domain(intermediates=[loa2_copy, h.issuing.certificate], crls=h.fresh_crls())
    assert validator(domain).validate(leaf).loa.name == "loa3"


def test_the_first_paths_refusal_stands_when_no_path_carries_the_policy(h: Hierarchy,
                                                                      loa2_copy: x509.Certificate) -> None:
    other = reissue(h.issuing.certificate, h.root, extra=[policies("2.999.9.9")])
    leaf = h.leaf(policies=(POLICY_LOA3,)).certificate
    domain = h.domain(intermediates=[loa2_copy, other], crls=h.fresh_crls())
    with pytest.raises(CertificateRejected) as caught:
        validator(domain).validate(leaf)
    assert caught.value.reason == "policy_not_accepted"
    assert "its certificatePolicies: 2.999.2.2" in caught.value.detail  # the first path's explanation


def test_a_path_the_broker_refuses_after_the_verifier_gives_way_to_another(h: Hierarchy) -> None:
    """A copy whose non-critical directoryName constraints the card is outside of (the verifier ignores them, the
    broker applies them) is no reason to refuse a card the plain certificate of the same CA carries."""
    constrained = reissue(h.issuing.certificate, h.root, extra=[x509.NameConstraints([_NORWAY], None)])
    leaf = h.leaf().certificate
    paths = verify_paths(leaf, h.domain(intermediates=[constrained, h.issuing.certificate]), NOW)
    assert _second(paths) == [h.issuing.certificate]
    with pytest.raises(CertificateRejected) as caught:
        verify_path(leaf, h.domain(intermediates=[constrained]), NOW)
    assert caught.value.reason == "chain_invalid"
    assert "a directory name is outside every subtree" in caught.value.detail


@pytest.mark.parametrize("where", [
    pytest.param("configured-first", id="configured-first"),
    pytest.param("configured-last", id="configured-last"),
    pytest.param("plain-one-presented", id="plain-one-presented"),
])
def test_a_copy_the_verifier_stops_at_gives_way_to_another(h: Hierarchy, where: str) -> None:
    """A copy with critical directoryName constraints the card is outside of ends cryptography's search outright
    ("fatal error", no other candidate tried), whichever order it meets the certificates in; the broker's own
    path through it is refused: the plain certificate of the same CA still carries the card (RFC 5280 §6.1: any
    valid path), listed before or after the copy, or sent by the client."""
    constrained = reissue(h.issuing.certificate, h.root, extra=[x509.NameConstraints([_NORWAY], None)],
                          critical=True)
    leaf = h.leaf().certificate
    configured, presented = {
        "configured-first": ([constrained, h.issuing.certificate], []),
        "configured-last": ([h.issuing.certificate, constrained], []),
        "plain-one-presented": ([constrained], [h.issuing.certificate]),
    }[where]
    paths = verify_paths(leaf, h.domain(intermediates=configured), NOW, presented)
    assert _second(paths) == [h.issuing.certificate]
    with pytest.raises(CertificateRejected) as caught:
        verify_path(leaf, h.domain(intermediates=[constrained]), NOW)
    assert caught.value.reason == "chain_invalid"
    assert "a directory name is outside every subtree" in caught.value.detail


def test_a_cross_certified_ca_has_a_path_to_each_root(h: Hierarchy) -> None:
    """The issuing CA certified by the municipality's root and by a second configured root (a root rollover):
    a path ends at each, found by leaving the first root out of the store in turn."""
    new_root = Hierarchy.build(NOW, "Kommun A ny").root
    cross = reissue(h.issuing.certificate, new_root)
    base = h.domain(intermediates=[h.issuing.certificate, cross])
    domain = replace(base, anchors=(h.root.certificate, new_root.certificate),
                     store=Store([h.root.certificate, new_root.certificate]))
    paths = verify_paths(h.leaf().certificate, domain, NOW)
    assert {p.chain[-1] for p in paths} == {h.root.certificate, new_root.certificate}


def test_a_path_with_no_shared_name_is_built_once(h: Hierarchy, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nearly every card: no CA on the path has a second certificate, so nothing more is looked for."""
    builds: list[int] = []
    real = path_module._build

    def counting(*args: object, **kwargs: bool) -> tuple[x509.Certificate, ...]:
        builds.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(path_module, "_build", counting)
    assert len(verify_paths(h.leaf().certificate, h.domain(), NOW)) == 1
    assert len(builds) == 1


def test_the_search_is_bounded(h: Hierarchy) -> None:
    """Twenty certificates of one CA: at most ``limit`` paths, and no more verifier runs than twice that."""
    copies = [reissue(h.issuing.certificate, h.root, extra=[policies(POLICY_LOA3, f"2.999.7.{n}")])
              for n in range(20)]
    paths = verify_paths(h.leaf().certificate, h.domain(intermediates=copies), NOW, limit=4)
    assert len(paths) == 4
    assert len(set(_second(paths))) == 4


def test_a_refused_card_is_looked_at_a_bounded_number_of_times(h: Hierarchy, monkeypatch: pytest.MonkeyPatch
                                                                 ) -> None:
    """A card no key of its CA signed, sent with copies of that CA under stranger keys: every copy is a name
    with another certificate, but what the client sent does not multiply the work of a refusal (the configured
    certificate of the name is left out once); only the first verifier run is explained (its refusal is raised)."""
    builds: list[bool] = []
    real = path_module._build

    def counting(*args: object, **kwargs: bool) -> tuple[x509.Certificate, ...]:
        builds.append(kwargs.get("explain", True))
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(path_module, "_build", counting)
    copies = [reissue(h.issuing.certificate, impostor(h.root)) for _ in range(10)]
    leaf = impostor(h.issuing).issue(h.profile()).certificate
    with pytest.raises(CertificateRejected) as caught:
        verify_paths(leaf, h.domain(), NOW, copies, limit=4)
    assert caught.value.reason == "chain_invalid"
    assert len(builds) == 2
    assert builds[0]
    assert not any(builds[1:])


def test_a_presented_copy_of_the_ca_counts_too(h: Hierarchy, loa2_copy: x509.Certificate) -> None:
    """The client's chain may carry the restricted copy while the configuration holds the full one: the card
    keeps its LoA either way (the presented certificate is only a hint)."""
    leaf = h.leaf(policies=(POLICY_LOA3,)).certificate
    domain = h.domain(crls=h.fresh_crls())
    assert validator(domain).validate(leaf, [loa2_copy]).loa.name == "loa3"


def test_loa_ties_keep_the_verifiers_choice(h: Hierarchy) -> None:
    twin = reissue(h.issuing.certificate, h.root, extra=[policies(POLICY_LOA3, "2.999.8.1")])
    domain: TrustDomain = h.domain(intermediates=[twin, h.issuing.certificate], crls=h.fresh_crls())
    domain = replace(domain, policies=MappingProxyType({POLICY_LOA3: KNOWN_LOAS["loa3"]}))
    validated = validator(domain).validate(h.leaf().certificate)
    assert validated.path.chain[1] == twin


def test_a_revoked_certificate_of_the_ca_ends_its_path_not_the_card(h: Hierarchy) -> None:
    """The root revoked one of the issuing CA's two certificates (a superseded cross-certificate, say): the card
    is still good through the other (RFC 5280 §6.1.3 (a)(3) judges each path's certificates)."""
    withdrawn = reissue(h.issuing.certificate, h.root, serial=x509.random_serial_number())
    root = replace(h.root, revoked={withdrawn.serial_number: NOW - dt.timedelta(days=1)})
    crls = [h.issuing.crl(), root.crl()]
    leaf = h.leaf().certificate
    validated = validator(h.domain(intermediates=[withdrawn, h.issuing.certificate], crls=crls)).validate(leaf)
    assert validated.path.chain[1] == h.issuing.certificate
    with pytest.raises(CertificateRejected) as caught:
        validator(h.domain(intermediates=[withdrawn], crls=crls)).validate(leaf)
    assert caught.value.reason == "revoked"


def test_a_revoked_card_is_refused_on_every_path(h: Hierarchy, loa2_copy: x509.Certificate) -> None:
    leaf = h.leaf().certificate
    issuing = replace(h.issuing, revoked={leaf.serial_number: NOW - dt.timedelta(days=1)})
    domain = h.domain(intermediates=[h.issuing.certificate, loa2_copy], crls=[issuing.crl(), h.root.crl()])
    with pytest.raises(CertificateRejected) as caught:
        validator(domain).validate(leaf)
    assert caught.value.reason == "revoked"
