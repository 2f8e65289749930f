"""The CRL store (broker.pki.revocation.crls.CrlStore): sources, refreshing, lookups, sharing through Redis.

Everything is real: CRL files in tmp_path, CRLs served over loopback HTTP
(tests.factories.http_files), a real Redis (tests/conftest.py). Time is a
FixedClock that the tests move; ``check`` takes its instant as an argument,
``due``/``refresh_due`` read the store's clock.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from broker.clock import FixedClock
from broker.demo.certificates import CertificateAuthority
from broker.errors import CertificateRejected
from broker.pki.revocation.crls import CrlSource, CrlStore, spki, verify_crl
from broker.pki.revocation.http import FetchLimits, HttpFetcher
from broker.session.store import RedisStore
from tests.factories.http_files import FileServer, closed_port_url
from tests.factories.pki import Hierarchy
from tests.factories.pki_cases import NOW, SECOND, crl, impostor, revoking

DAY = dt.timedelta(days=1)
MINUTE = dt.timedelta(minutes=1)
HOUR = dt.timedelta(hours=1)
SKEW = 300 * SECOND                    # the configuration's default clock_skew
RETRY_AFTER = 10 * SECOND              # CrlStore's default retry_after
LIMITS = FetchLimits(connect_timeout=2, total_timeout=5, max_bytes=64 * 1024 * 1024)
PATH = "/crl/issuing-ca.crl"


@pytest.fixture(scope="module")
def h() -> Hierarchy:
    return Hierarchy.build(NOW)


@pytest.fixture(scope="module")
def leaf(h: Hierarchy) -> x509.Certificate:
    return h.leaf().certificate


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def redis_store(redis_url: str, redis_prefix: str) -> Iterator[RedisStore]:
    store = RedisStore(redis_url, prefix=redis_prefix)
    yield store
    store.client.close()


@pytest.fixture
def files() -> Iterator[FileServer]:
    with FileServer() as server:
        yield server
    assert server.errors == []


def cas(h: Hierarchy) -> tuple[x509.Certificate, ...]:
    return (h.root.certificate, h.issuing.certificate)


def file_source(h: Hierarchy, path: Path, margin: dt.timedelta = HOUR) -> CrlSource:
    return CrlSource(str(path), "file", cas(h), LIMITS, margin)


def url_source(h: Hierarchy, url: str, margin: dt.timedelta = HOUR) -> CrlSource:
    return CrlSource(url, "url", cas(h), LIMITS, margin)


def write_crl(path: Path, revocation_list: x509.CertificateRevocationList, mtime: float) -> Path:
    """``revocation_list`` as DER at ``path``, with the modification time set to ``mtime``."""
    path.write_bytes(revocation_list.public_bytes(Encoding.DER))
    os.utime(path, (mtime, mtime))
    return path


def issuing_crl(h: Hierarchy, *revoked: x509.Certificate, this_update: dt.datetime = NOW - HOUR,
                next_update: dt.datetime = NOW + 7 * DAY) -> x509.CertificateRevocationList:
    return revoking(h.issuing, *revoked).crl(this_update=this_update, next_update=next_update)


def offline(clock: FixedClock) -> CrlStore:
    return CrlStore(clock, fetcher=None, shared=None)


def online(clock: FixedClock, shared: RedisStore | None = None) -> CrlStore:
    return CrlStore(clock, fetcher=HttpFetcher(), shared=shared)


def check(store: CrlStore, h: Hierarchy, cert: x509.Certificate, sources: Sequence[CrlSource],
          at: dt.datetime = NOW) -> str:
    """``good`` or the reason code of the rejection."""
    try:
        store.check(cert, h.issuing.certificate, sources, at, SKEW)
    except CertificateRejected as exc:
        return exc.reason
    return "good"


def rejection(store: CrlStore, h: Hierarchy, cert: x509.Certificate, sources: Sequence[CrlSource],
              at: dt.datetime = NOW) -> CertificateRejected:
    with pytest.raises(CertificateRejected) as caught:
        store.check(cert, h.issuing.certificate, sources, at, SKEW)
    return caught.value


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


# --- files: re-read when they change, never rolled back ---------------------------------------


def test_a_changed_file_is_read_again_and_an_older_crl_is_refused(tmp_path: Path, clock: FixedClock, h: Hierarchy,
                                                                  leaf: x509.Certificate) -> None:
    path = write_crl(tmp_path / "issuing.crl", issuing_crl(h, this_update=NOW - 2 * HOUR), mtime=1_000_000)
    source = file_source(h, path)
    store = offline(clock)
    state = store.add(source)

    assert store.refresh_due() == 1
    assert state.crl is not None
    assert (state.crl.this_update, state.file_mtime, state.last_error) == (NOW - 2 * HOUR, 1_000_000, None)
    assert check(store, h, leaf, [source]) == "good"
    clock.advance(RETRY_AFTER)
    assert not store.due(state, clock.now())
    assert store.refresh_due() == 0  # unchanged file, CRL far from expiry: nothing to do

    # the CA publishes a newer CRL that lists the certificate
    write_crl(path, issuing_crl(h, leaf, this_update=NOW - HOUR), mtime=1_000_100)
    assert store.due(state, clock.now())
    assert store.refresh_due() == 1
    assert (state.crl.this_update, state.file_mtime, state.last_error) == (NOW - HOUR, 1_000_100, None)
    assert check(store, h, leaf, [source], clock.now()) == "revoked"

    # an older CRL copied over it (a restored backup, an attacker): refused, the newer one stays
    clock.advance(RETRY_AFTER)
    write_crl(path, issuing_crl(h, this_update=NOW - 3 * HOUR), mtime=1_000_200)
    assert store.refresh_due() == 1
    assert state.crl.this_update == NOW - HOUR
    assert state.last_error is not None
    assert "older" in state.last_error
    assert check(store, h, leaf, [source], clock.now()) == "revoked"


def test_another_cas_newer_crl_at_the_same_place_is_no_rollback(tmp_path: Path, clock: FixedClock, h: Hierarchy,
                                                                leaf: x509.Certificate) -> None:
    """RFC 5280 §6.3.3: the no-rollback rule compares CRLs of one issuer. The root's (newer) CRL served once where
    the issuing CA's is expected must not make the issuing CA's genuine CRL look like a rollback."""
    path = write_crl(tmp_path / "issuing.crl", h.root.crl(this_update=NOW - 10 * SECOND), mtime=1_000_000)
    source = file_source(h, path)
    store = offline(clock)
    state = store.add(source)
    assert store.refresh_due() == 1
    assert check(store, h, leaf, [source]) == "revocation_unavailable"  # nothing from the issuing CA yet

    clock.advance(RETRY_AFTER)
    write_crl(path, issuing_crl(h, leaf, this_update=NOW - HOUR), mtime=1_000_100)
    assert store.refresh_due() == 1
    assert state.last_error is None
    assert check(store, h, leaf, [source], clock.now()) == "revoked"

    # and the root's CRL, served again, leaves the issuing CA's in place
    clock.advance(RETRY_AFTER)
    write_crl(path, h.root.crl(this_update=NOW), mtime=1_000_200)
    assert store.refresh_due() == 1
    assert check(store, h, leaf, [source], clock.now()) == "revoked"
    # an older CRL of the issuing CA is still a rollback
    clock.advance(RETRY_AFTER)
    write_crl(path, issuing_crl(h, this_update=NOW - 2 * HOUR), mtime=1_000_300)
    assert store.refresh_due() == 1
    assert state.last_error is not None
    assert "older" in state.last_error
    assert check(store, h, leaf, [source], clock.now()) == "revoked"


def test_a_file_with_garbage_written_over_it_keeps_the_crl_held(tmp_path: Path, clock: FixedClock, h: Hierarchy,
                                                               leaf: x509.Certificate) -> None:
    path = write_crl(tmp_path / "issuing.crl", issuing_crl(h, leaf), mtime=1_000_000)
    source = file_source(h, path)
    store = offline(clock)
    state = store.add(source)
    assert store.refresh_due() == 1

    path.write_bytes(b"not a CRL")
    os.utime(path, (1_000_100, 1_000_100))
    clock.advance(RETRY_AFTER)
    assert store.refresh_due() == 1
    assert state.crl is not None
    assert state.crl.this_update == NOW - HOUR
    assert state.last_error is not None
    assert check(store, h, leaf, [source], clock.now()) == "revoked"


# --- due(): when a source is refreshed ---------------------------------------------------------

# A CRL issued at T0 for 8 days: halfway is T0 + 4 days, long before nextUpdate - 1 h.
T0 = NOW - HOUR
EIGHT_DAYS = (T0, T0 + 8 * DAY, HOUR)
# A CRL issued at T0 for 2 hours with a 90-minute margin: the margin (T0 + 30 min) comes before halfway (T0 + 1 h).
SHORT_WITH_MARGIN = (T0, T0 + 2 * HOUR, 90 * 60 * SECOND)


@pytest.mark.parametrize(("validity", "at", "due"), [
    pytest.param(EIGHT_DAYS, T0 + HOUR, False, id="fresh"),
    pytest.param(EIGHT_DAYS, T0 + 4 * DAY - SECOND, False, id="one-second-before-half-the-validity"),
    pytest.param(EIGHT_DAYS, T0 + 4 * DAY, True, id="at-half-the-validity"),
    pytest.param(EIGHT_DAYS, T0 + 9 * DAY, True, id="past-next-update"),
    pytest.param(SHORT_WITH_MARGIN, T0 + 30 * 60 * SECOND - SECOND, False, id="one-second-before-the-margin"),
    pytest.param(SHORT_WITH_MARGIN, T0 + 30 * 60 * SECOND, True, id="within-the-margin-of-next-update"),
])
def test_due(clock: FixedClock, h: Hierarchy, validity: tuple[dt.datetime, dt.datetime, dt.timedelta],
             at: dt.datetime, due: bool) -> None:
    this_update, next_update, margin = validity
    held = verify_crl(issuing_crl(h, this_update=this_update, next_update=next_update), cas(h))
    store = offline(clock)
    state = store.add(url_source(h, "http://crl.kommun-a.example.se/issuing.crl", margin), held)
    assert state.crl is held
    assert store.due(state, at) is due


def test_nothing_held_is_due(clock: FixedClock, h: Hierarchy) -> None:
    store = offline(clock)
    state = store.add(url_source(h, "http://crl.kommun-a.example.se/issuing.crl"))
    assert state.crl is None
    assert store.due(state, NOW)


# --- check(): the answer for one certificate -------------------------------------------------------


def test_usable_crl_answers_good(tmp_path: Path, clock: FixedClock, h: Hierarchy, leaf: x509.Certificate) -> None:
    source = file_source(h, write_crl(tmp_path / "issuing.crl", issuing_crl(h), mtime=1_000_000))
    store = offline(clock)
    verified, state = store.check(leaf, h.issuing.certificate, [source], NOW, SKEW)
    assert state.source == source
    assert (verified.this_update, verified.next_update) == (NOW - HOUR, NOW + 7 * DAY)
    assert verified.signer_spki == spki(h.issuing.certificate)


def test_listed_serial_is_revoked_with_its_date(tmp_path: Path, clock: FixedClock, h: Hierarchy,
                                                leaf: x509.Certificate) -> None:
    revoked_crl = revoking(h.issuing, leaf, at=dt.datetime(2026, 2, 27, 8, tzinfo=dt.UTC)).crl()
    source = file_source(h, write_crl(tmp_path / "issuing.crl", revoked_crl, mtime=1_000_000))
    found = rejection(offline(clock), h, leaf, [source])
    assert found.reason == "revoked"
    assert found.params == {"revocation_date": "2026-02-27"}
    assert f"{leaf.serial_number:x}" in found.detail


def test_only_a_stale_crl_held_is_revocation_stale(tmp_path: Path, clock: FixedClock, h: Hierarchy,
                                                   leaf: x509.Certificate) -> None:
    stale = issuing_crl(h, this_update=NOW - 8 * DAY, next_update=NOW - DAY)
    source = file_source(h, write_crl(tmp_path / "issuing.crl", stale, mtime=1_000_000))
    store = offline(clock)
    found = rejection(store, h, leaf, [source])
    assert found.reason == "revocation_stale"
    assert found.params == {"next_update": (NOW - DAY).date().isoformat()}
    (state,) = store.states()
    assert state.crl is not None
    assert state.crl.next_update == NOW - DAY


def test_a_crl_within_the_clock_skew_of_next_update_is_still_used(tmp_path: Path, clock: FixedClock, h: Hierarchy,
                                                                  leaf: x509.Certificate) -> None:
    source = file_source(h, write_crl(tmp_path / "issuing.crl", issuing_crl(h), mtime=1_000_000))
    store = offline(clock)
    assert check(store, h, leaf, [source], NOW + 7 * DAY + SKEW) == "good"
    assert check(store, h, leaf, [source], NOW + 7 * DAY + SKEW + SECOND) == "revocation_stale"


def another_issuers_source(tmp_path: Path) -> list[CrlSource]:
    other = Hierarchy.build(NOW, "Kommun B")
    path = write_crl(tmp_path / "other.crl", other.issuing.crl(), mtime=1_000_000)
    return [CrlSource(str(path), "file", cas(other), LIMITS, HOUR)]


@pytest.mark.parametrize("sources", [
    pytest.param(lambda tmp_path: [], id="no-sources"),
    pytest.param(another_issuers_source, id="only-another-issuers-source"),
])
def test_no_source_for_the_issuer_is_revocation_unavailable(
        tmp_path: Path, clock: FixedClock, h: Hierarchy, leaf: x509.Certificate,
        sources: Callable[[Path], list[CrlSource]]) -> None:
    store = offline(clock)
    found = rejection(store, h, leaf, sources(tmp_path))
    assert found.reason == "revocation_unavailable"
    assert "no CRL source is configured for" in found.detail
    assert store.states() == []


def test_crl_signed_by_another_key_under_the_issuer_name_is_not_used(tmp_path: Path, clock: FixedClock,
                                                                     h: Hierarchy, leaf: x509.Certificate) -> None:
    # an empty CRL in the issuing CA's name, signed by a stranger's key: were it used, the leaf would be "good"
    forged = impostor(h.issuing).crl()
    assert forged.issuer == h.issuing.certificate.subject
    source = file_source(h, write_crl(tmp_path / "issuing.crl", forged, mtime=1_000_000))
    store = offline(clock)
    found = rejection(store, h, leaf, [source])
    assert found.reason == "revocation_unavailable"
    (state,) = store.states()
    assert state.crl is None
    assert state.last_error is not None
    assert "signature" in state.last_error


def test_crl_of_a_renewed_ca_key_does_not_answer_for_the_old_key(tmp_path: Path, clock: FixedClock, h: Hierarchy,
                                                                 leaf: x509.Certificate) -> None:
    # a genuine CRL, verified against a configured CA of the same name, but signed by the renewed key
    renewed = h.root.subordinate("Kommun A Test Person CA", organization="Kommun A")
    assert renewed.certificate.subject == h.issuing.certificate.subject
    path = write_crl(tmp_path / "renewed.crl", renewed.crl(), mtime=1_000_000)
    source = CrlSource(str(path), "file", (*cas(h), renewed.certificate), LIMITS, HOUR)
    store = offline(clock)
    found = rejection(store, h, leaf, [source])
    assert found.reason == "revocation_unavailable"
    (state,) = store.states()
    assert state.crl is not None
    assert state.crl.signer_spki == spki(renewed.certificate)


def test_crl_of_a_ca_sharing_the_key_under_another_name_does_not_answer(tmp_path: Path, clock: FixedClock,
                                                                         h: Hierarchy, leaf: x509.Certificate) -> None:
    # a renamed re-issue of the issuing CA keeps its key: its CRL verifies with that key, is fresher and lists
    # nobody, and must still not clear a certificate of the first CA, whose own CRL revokes it (RFC 5280
    # §6.3.3 (b)(1): the CRL issuer must be the certificate's issuer)
    renamed = h.renamed_issuing()
    listed = write_crl(tmp_path / "a.crl", issuing_crl(h, leaf, this_update=NOW - 2 * HOUR), 1_000_000)
    fresher = write_crl(tmp_path / "b.crl", renamed.crl(this_update=NOW - 10 * 60 * SECOND), 1_000_000)
    configured = (*cas(h), renamed.certificate)
    sources = [CrlSource(str(path), "file", configured, LIMITS, HOUR) for path in (fresher, listed)]
    assert check(offline(clock), h, leaf, sources) == "revoked"
    # and with only the renamed CA's CRL held, nothing answers for the first CA's certificate
    found = rejection(offline(clock), h, leaf, sources[:1])
    assert found.reason == "revocation_unavailable"


def test_the_newest_usable_crl_among_sources_decides(tmp_path: Path, clock: FixedClock, h: Hierarchy,
                                                     leaf: x509.Certificate) -> None:
    older = file_source(h, write_crl(tmp_path / "a.crl", issuing_crl(h, this_update=NOW - 2 * DAY), 1_000_000))
    newer = file_source(h, write_crl(tmp_path / "b.crl", issuing_crl(h, leaf), 1_000_000))
    assert check(offline(clock), h, leaf, [older, newer]) == "revoked"
    assert check(offline(clock), h, leaf, [newer, older]) == "revoked"


# --- shared through Redis -----------------------------------------------------------------------------


def test_a_second_instance_adopts_the_shared_copy_without_fetching(
        clock: FixedClock, h: Hierarchy, leaf: x509.Certificate, files: FileServer, redis_store: RedisStore) -> None:
    source = url_source(h, files.put_crl(PATH, issuing_crl(h, leaf)))
    first, second, third = online(clock, redis_store), online(clock, redis_store), online(clock, redis_store)
    first_state = first.add(source)

    assert first.refresh_due() == 1
    assert files.hits[PATH] == 1
    assert first_state.crl is not None
    assert first_state.last_error is None

    # the login path of another instance: nothing held, the shared copy is verified and adopted
    assert check(second, h, leaf, [source]) == "revoked"
    (second_state,) = second.states()
    assert second_state.crl is not None
    assert second_state.crl.this_update == first_state.crl.this_update
    # the background pass of a third
    third_state = third.add(source)
    assert third.refresh_due() == 1
    assert third_state.crl is not None
    assert third_state.crl.this_update == first_state.crl.this_update
    assert files.hits[PATH] == 1

    status = third.shared_status(source)
    assert status is not None
    assert (status["source"], status["this_update"], status["entries"], status["last_error"]) == (
        source.location, (NOW - HOUR).isoformat(), 1, None)


def test_the_fetch_lock_keeps_a_second_instance_from_fetching_during_a_background_refresh(
        clock: FixedClock, h: Hierarchy, leaf: x509.Certificate, files: FileServer, redis_store: RedisStore) -> None:
    source = url_source(h, files.put_crl(PATH, issuing_crl(h, leaf)))
    files.slow(PATH, 1.0)
    first, second = online(clock, redis_store), online(clock, redis_store)
    first_state, second_state = first.add(source), second.add(source)

    background = threading.Thread(target=first.refresh_due)
    background.start()
    try:
        wait_for(lambda: files.hits[PATH] == 1)  # the first instance holds the lock and is downloading
        assert second.refresh_due() == 1          # the second's pass looks, finds the lock taken ...
        assert files.hits[PATH] == 1              # ... and does not download
        assert (second_state.crl, second_state.last_error) == (None, None)
    finally:
        background.join()
    assert first_state.crl is not None
    assert first_state.last_error is None

    # its next pass adopts the first instance's copy, still without downloading
    clock.advance(RETRY_AFTER)
    assert second.refresh_due() == 1
    assert second_state.crl is not None
    assert second_state.crl.this_update == first_state.crl.this_update
    assert files.hits[PATH] == 1


def test_a_forged_shared_copy_is_not_adopted(clock: FixedClock, h: Hierarchy, leaf: x509.Certificate,
                                             files: FileServer, redis_store: RedisStore) -> None:
    # Someone who can write to Redis (here: an instance configured with a rogue CA of the issuing CA's name)
    # shares a newer, empty CRL for the same URL. An honest instance verifies the shared copy against its own
    # CAs, refuses it and downloads the genuine CRL.
    rogue = CertificateAuthority.root("Kommun A Test Person CA", NOW, organization="Kommun A")
    assert rogue.certificate.subject == h.issuing.certificate.subject
    url = files.put_crl(PATH, rogue.crl(this_update=NOW))
    rogue_store = online(clock, redis_store)
    rogue_state = rogue_store.add(CrlSource(url, "url", (rogue.certificate,), LIMITS, HOUR))
    assert rogue_store.refresh_due() == 1
    assert rogue_state.crl is not None
    assert rogue_state.last_error is None

    files.put_crl(PATH, issuing_crl(h, leaf))
    honest = online(clock, redis_store)
    source = url_source(h, url)
    assert check(honest, h, leaf, [source]) == "revoked"
    (state,) = honest.states()
    assert state.crl is not None
    assert (state.crl.this_update, state.crl.signer_spki) == (NOW - HOUR, spki(h.issuing.certificate))
    assert files.hits[PATH] == 2  # the rogue's download and the honest instance's own


# --- the retry throttle ----------------------------------------------------------------------------


def test_a_dead_crl_server_is_asked_at_most_once_per_retry_after(clock: FixedClock, h: Hierarchy,
                                                                  leaf: x509.Certificate) -> None:
    source = url_source(h, closed_port_url(PATH))
    store = online(clock)

    found = rejection(store, h, leaf, [source], clock.now())
    assert found.reason == "revocation_unavailable"
    (state,) = store.states()
    assert state.last_attempt == NOW
    assert state.last_error is not None
    assert state.crl is None

    clock.advance(RETRY_AFTER - SECOND)
    assert check(store, h, leaf, [source], clock.now()) == "revocation_unavailable"
    assert state.last_attempt == NOW  # not tried again

    clock.advance(SECOND)
    assert check(store, h, leaf, [source], clock.now()) == "revocation_unavailable"
    assert state.last_attempt == NOW + RETRY_AFTER  # tried again


@pytest.mark.parametrize("step", [pytest.param(MINUTE, id="a_minute"), pytest.param(HOUR, id="an_hour")])
@pytest.mark.parametrize("asked_by", ["login", "background_pass"])
def test_the_retry_throttle_lets_go_once_the_clock_is_stepped_back(
        clock: FixedClock, h: Hierarchy, leaf: x509.Certificate, files: FileServer, step: dt.timedelta,
        asked_by: str) -> None:
    """An attempt noted before the clock was stepped back (NTP correcting a clock that ran ahead) lies in the future
    of the clock now: the server is asked again, not left alone for the size of the step as well."""
    source = url_source(h, files.put_crl(PATH, issuing_crl(h)))
    files.status(PATH, 503)
    store = online(clock)
    assert check(store, h, leaf, [source], clock.now()) == "revocation_unavailable"
    assert files.hits[PATH] == 1

    files.status(PATH, None)  # the server is back
    clock.set(NOW - step)
    if asked_by == "background_pass":
        assert store.refresh_due() == 1
    assert check(store, h, leaf, [source], clock.now()) == "good"
    assert files.hits[PATH] == 2


def test_the_retry_throttle_counts_requests_to_a_failing_server(clock: FixedClock, h: Hierarchy,
                                                                leaf: x509.Certificate, files: FileServer) -> None:
    source = url_source(h, files.put_crl(PATH, issuing_crl(h)))
    files.status(PATH, 503)
    store = online(clock)
    for _ in range(5):
        assert check(store, h, leaf, [source], clock.now()) == "revocation_unavailable"
    assert files.hits[PATH] == 1

    clock.advance(RETRY_AFTER)
    files.status(PATH, None)  # the server is back
    assert check(store, h, leaf, [source], clock.now()) == "good"
    assert files.hits[PATH] == 2
    (state,) = store.states()
    assert state.last_error is None


def test_after_a_failed_background_fetch_the_next_pass_fetches_again(
        clock: FixedClock, h: Hierarchy, leaf: x509.Certificate, files: FileServer, redis_store: RedisStore) -> None:
    # The fetch lock is for the duration of a download. A download that failed must not keep it: otherwise every
    # instance's background refresh skips the source, silently, until the lock's TTL (timeout + 5 s) runs out.
    source = url_source(h, files.put_crl(PATH, issuing_crl(h)))
    files.status(PATH, 500)
    store, other = online(clock, redis_store), online(clock, redis_store)
    state, other_state = store.add(source), other.add(source)
    assert store.refresh_due() == 1
    assert files.hits[PATH] == 1
    assert state.last_error is not None

    files.status(PATH, None)  # the server is back
    clock.advance(RETRY_AFTER)
    assert store.refresh_due() == 1
    assert files.hits[PATH] == 2
    assert state.crl is not None
    assert state.last_error is None
    assert other.refresh_due() == 1  # the other instance adopts the copy now shared
    assert other_state.crl is not None
    assert files.hits[PATH] == 2


# --- a failed refresh keeps the last valid CRL ------------------------------------------------------


@pytest.mark.parametrize("shared", [pytest.param(False, id="alone"), pytest.param(True, id="shared-through-redis")])
def test_a_failed_refresh_keeps_the_last_valid_crl_until_its_next_update(
        clock: FixedClock, h: Hierarchy, leaf: x509.Certificate, files: FileServer, redis_store: RedisStore,
        shared: bool) -> None:
    next_update = NOW + 7 * DAY
    source = url_source(h, files.put_crl(PATH, issuing_crl(h, next_update=next_update)))
    store = online(clock, redis_store if shared else None)
    state = store.add(source)
    assert store.refresh_due() == 1
    assert state.crl is not None
    assert state.last_error is None

    files.status(PATH, 500)
    halfway = (NOW - HOUR) + (next_update - (NOW - HOUR)) / 2
    clock.set(halfway)
    assert store.due(state, clock.now())
    assert store.refresh_due() == 1
    assert files.hits[PATH] == 2
    assert state.last_error is not None
    assert "HTTP 500" in state.last_error
    assert state.last_attempt == halfway
    assert state.crl.this_update == NOW - HOUR  # the last valid CRL stays ...
    assert check(store, h, leaf, [source], halfway) == "good"
    assert check(store, h, leaf, [source], next_update) == "good"  # ... and answers until its nextUpdate
    assert files.hits[PATH] == 2  # while a usable CRL is held, logins do not fetch
    if shared:  # recorded where `broker revocation status` on any instance reads it
        status = online(clock, redis_store).shared_status(source)
        assert status is not None
        assert status["last_error"] == state.last_error

    clock.set(next_update + SKEW + SECOND)
    assert check(store, h, leaf, [source], clock.now()) == "revocation_stale"


# --- a large CRL ------------------------------------------------------------------------------------

EXTRA_SERIALS = 100_000


def test_a_100000_entry_crl_answers_by_serial(tmp_path: Path, clock: FixedClock) -> None:
    big_h = Hierarchy.build(NOW, "Kommun Stor")
    revoked_cert, good_cert = big_h.leaf().certificate, big_h.leaf().certificate
    padded = big_h.issuing.issue(big_h.profile(), serial=10**30 + EXTRA_SERIALS - 1).certificate  # an extra entry
    big = crl(revoking(big_h.issuing, revoked_cert), extra_serials=EXTRA_SERIALS)
    source = file_source(big_h, write_crl(tmp_path / "big.crl", big, mtime=1_000_000))
    store = offline(clock)

    verified, state = store.check(good_cert, big_h.issuing.certificate, [source], NOW, SKEW)
    assert len(verified) == EXTRA_SERIALS + 1
    assert state.crl is verified
    assert check(store, big_h, revoked_cert, [source]) == "revoked"
    assert check(store, big_h, padded, [source]) == "revoked"
    assert check(store, big_h, good_cert, [source]) == "good"


# --- bytes that only look like a CRL -------------------------------------------------------------------------------


def _with_version(der: bytes, version: int) -> bytes:
    """A CRL's DER with its version INTEGER (v2: 1) replaced: cryptography raises InvalidVersion, no ValueError."""
    at = der.index(b"\x02\x01\x01")
    assert at < 12  # the version is the first field of tbsCertList
    return der[:at] + b"\x02\x01" + bytes([version]) + der[at + 3:]


def test_a_crl_of_an_unknown_version_is_no_crl(clock: FixedClock, h: Hierarchy, leaf: x509.Certificate,
                                               files: FileServer) -> None:
    """A failure of the source, recorded, and the login's answer revocation_unavailable (it was an exception no
    caller expected: a 500 page, and soft_fail not honoured)."""
    url = files.put("/garbage.crl", _with_version(issuing_crl(h).public_bytes(Encoding.DER), 5))
    source = url_source(h, url)

    assert rejection(online(clock), h, leaf, [source]).reason == "revocation_unavailable"


def test_one_source_answering_garbage_does_not_stop_the_refresh_of_the_others(clock: FixedClock, h: Hierarchy,
                                                                             files: FileServer) -> None:
    good = issuing_crl(h).public_bytes(Encoding.DER)
    store = online(clock)
    garbage = store.add(url_source(h, files.put("/garbage.crl", _with_version(good, 5))))
    other = store.add(url_source(h, files.put("/good.crl", good)))

    store.refresh_due()

    assert garbage.crl is None
    assert garbage.last_error is not None
    assert "not a CRL (InvalidVersion" in garbage.last_error
    assert other.crl is not None


def _pem_after_text(revocation_list: x509.CertificateRevocationList) -> bytes:
    """The CRL as PEM after a text dump of it, as ``openssl crl -text`` writes it: RFC 7468 §2 lets data come before
    the encapsulation boundary ("parsers MUST NOT malfunction when processing such data")."""
    dump = "".join(f"        Revoked serial {entry.serial_number:x}\n" for entry in revocation_list)
    text = ("Certificate Revocation List (CRL):\n        Version 2 (0x1)\n"
            f"        Issuer: {revocation_list.issuer.rfc4514_string()}\n"
            f"        Last Update: {revocation_list.last_update_utc.isoformat()}\n{dump}")
    assert len(text) > 100
    return text.encode() + revocation_list.public_bytes(Encoding.PEM)


def test_a_pem_crl_file_after_explanatory_text_is_read(tmp_path: Path, clock: FixedClock, h: Hierarchy,
                                                       leaf: x509.Certificate) -> None:
    path = tmp_path / "issuing.crl"
    path.write_bytes(_pem_after_text(issuing_crl(h, leaf)))
    store = offline(clock)
    state = store.add(file_source(h, path))

    store.refresh(state, force=True)

    assert (state.last_error, state.crl is not None) == (None, True)
    assert check(store, h, leaf, [file_source(h, path)]) == "revoked"


def test_a_pem_crl_served_after_explanatory_text_is_read(clock: FixedClock, h: Hierarchy, leaf: x509.Certificate,
                                                         files: FileServer) -> None:
    source = url_source(h, files.put("/text.crl", _pem_after_text(issuing_crl(h, leaf))))

    assert check(online(clock), h, leaf, [source]) == "revoked"
