"""The cache of verified paths (broker.pki.path.PathCache): a success is reused only while every certificate on
the path is in date, only for the same leaf, presented intermediates and domain; refusals are never kept."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from broker.errors import CertificateRejected
from broker.pki import path as path_module
from broker.pki.path import PathCache, VerifiedPath
from broker.pki.truststore import TrustDomain
from tests.factories.pki import Hierarchy
from tests.factories.pki_cases import NOW, SECOND

DAY = dt.timedelta(days=1)
NOT_AFTER = NOW + 2 * DAY


@pytest.fixture(scope="module")
def h() -> Hierarchy:
    return Hierarchy.build(NOW)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[dt.datetime]:
    """The instants at which the full validation really ran."""
    seen: list[dt.datetime] = []
    real = path_module.verify_paths

    def counting(leaf: x509.Certificate, domain: TrustDomain, now: dt.datetime,
                 presented: Sequence[x509.Certificate] = ()) -> tuple[VerifiedPath, ...]:
        seen.append(now)
        return real(leaf, domain, now, presented)

    monkeypatch.setattr(path_module, "verify_paths", counting)
    return seen


def test_a_card_seen_before_is_not_validated_again(h: Hierarchy, calls: list[dt.datetime]) -> None:
    cache, domain, leaf = PathCache(), h.domain(), h.leaf().certificate
    (first,) = cache.verify(leaf, domain, NOW)
    (later,) = cache.verify(leaf, domain, NOW + 60 * SECOND)
    assert calls == [NOW]
    assert later.chain == first.chain
    assert later.checked_at == NOW + 60 * SECOND  # the answer is stated for the instant asked about


def test_the_same_card_decoded_again_finds_its_paths(h: Hierarchy, calls: list[dt.datetime]) -> None:
    """The key is the certificates' DER: a card decoded again (the decoded headers' cache forgot it) is the same
    card, and a different card under the same CA is not."""
    cache, domain, leaf = PathCache(), h.domain(), h.leaf().certificate
    issuing = h.issuing.certificate
    cache.verify(leaf, domain, NOW, [issuing])
    again = x509.load_der_x509_certificate(leaf.public_bytes(serialization.Encoding.DER))
    issuing_again = x509.load_der_x509_certificate(issuing.public_bytes(serialization.Encoding.DER))
    assert cache.verify(again, domain, NOW + SECOND, [issuing_again])[0].chain[0] == leaf
    assert calls == [NOW]
    cache.verify(h.leaf().certificate, domain, NOW + 2 * SECOND, [issuing])
    assert calls == [NOW, NOW + 2 * SECOND]


def test_the_window_ends_with_the_leaf_and_then_the_full_validation_refuses(h: Hierarchy,
                                                                          calls: list[dt.datetime]) -> None:
    cache, domain = PathCache(), h.domain()
    leaf = h.leaf(valid_from=NOW - DAY, valid_until=NOT_AFTER).certificate
    cache.verify(leaf, domain, NOW)
    assert cache.verify(leaf, domain, NOT_AFTER)[0].checked_at == NOT_AFTER  # inclusive (RFC 5280 §4.1.2.5)
    with pytest.raises(CertificateRejected) as caught:
        cache.verify(leaf, domain, NOT_AFTER + SECOND)
    assert caught.value.reason == "certificate_expired"
    assert calls == [NOW, NOT_AFTER + SECOND]


def test_a_time_before_the_window_is_validated_afresh(h: Hierarchy, calls: list[dt.datetime]) -> None:
    """An injected clock may go back (tests, a corrected system clock): the window has a start too."""
    cache, domain = PathCache(), h.domain()
    leaf = h.leaf(valid_from=NOW - 60 * SECOND).certificate
    cache.verify(leaf, domain, NOW)
    with pytest.raises(CertificateRejected) as caught:
        cache.verify(leaf, domain, NOW - 61 * SECOND)
    assert caught.value.reason == "certificate_not_yet_valid"
    assert len(calls) == 2


def test_refusals_are_never_kept(h: Hierarchy, calls: list[dt.datetime]) -> None:
    cache, domain = PathCache(), h.domain()
    leaf = h.leaf(eku=(ExtendedKeyUsageOID.EMAIL_PROTECTION,)).certificate
    for _ in range(2):
        with pytest.raises(CertificateRejected) as caught:
            cache.verify(leaf, domain, NOW)
        assert caught.value.reason == "eku_not_client_auth"
    assert len(calls) == 2
    assert len(cache) == 0


def test_the_presented_intermediates_are_part_of_the_key(h: Hierarchy) -> None:
    """A path that needed an intermediate the client sent proves nothing about the leaf sent alone."""
    cache = PathCache()
    domain = h.domain(intermediates=())  # the issuing CA is known only when the client sends it
    leaf = h.leaf().certificate
    assert cache.verify(leaf, domain, NOW, [h.issuing.certificate])[0].chain[1] == h.issuing.certificate
    with pytest.raises(CertificateRejected) as caught:
        cache.verify(leaf, domain, NOW)
    assert caught.value.reason == "chain_invalid"


def test_the_domain_is_part_of_the_key(h: Hierarchy) -> None:
    other = Hierarchy.build(NOW, "Kommun B")
    cache, leaf = PathCache(), h.leaf().certificate
    cache.verify(leaf, h.domain(), NOW)
    foreign = other.domain()
    foreign = TrustDomain(**{**foreign.__dict__, "id": "kommun-b"})
    with pytest.raises(CertificateRejected) as caught:
        cache.verify(leaf, foreign, NOW)
    assert caught.value.reason == "chain_invalid"


def test_the_least_recently_used_paths_make_room(h: Hierarchy, calls: list[dt.datetime]) -> None:
    cache, domain = PathCache(max_entries=2), h.domain()
    first, second, third = (h.leaf(serial_number=f"SE2321000016-{n:04d}").certificate for n in range(3))
    for leaf in (first, second, first, third):  # `second` is now the least recently used
        cache.verify(leaf, domain, NOW)
    assert len(cache) == 2
    calls.clear()
    cache.verify(first, domain, NOW)
    cache.verify(third, domain, NOW)
    assert calls == []
    cache.verify(second, domain, NOW)
    assert calls == [NOW]
