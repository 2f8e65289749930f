"""The municipal IdPs' metadata: local files (trusted as configured) or URLs (trusted only when signed).

Metadata from a URL is used only after its signature verifies with one of the
configured certificates (the signature element is required) and while its
validUntil has not passed. It is refreshed on a schedule in the background; a
failed refresh keeps the last good copy (until its validUntil) and is
recorded for `broker readiness` and the operator log. Every signing key in
the metadata is accepted (key rollover).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Any

from broker.clock import Clock, passed
from broker.config.loader import Municipality
from broker.errors import UpstreamRejected
from broker.forks import reset_in_child
from broker.pki.revocation.http import FetchError, FetchLimits, HttpFetcher
from broker.saml.metadata import IdpMetadata, parse_idp_metadata, verify_metadata_signature

log = logging.getLogger("broker.upstream")

# a copy is fetched again no sooner than this, whatever cacheDuration its publisher wrote (PT0S would mean a fetch at
# every round of the refresh loop)
MIN_CACHE_DURATION = dt.timedelta(minutes=5)
# a request that finds no copy of an IdP's metadata fetches it on its own path, but not within this long of a fetch
# that failed (the background schedule goes on): as a responder that just failed is not asked again for 10 s
ON_DEMAND_RETRY_AFTER = dt.timedelta(seconds=10)
# a copy with a validUntil is fetched again once this share of the time from its fetch to its validUntil has passed
# (the delay factor of Shibboleth's metadata providers): early enough to replace it before it expires, and again
# sooner after each fetch that brought the same copy back
VALIDITY_REFRESH_FACTOR = 0.75


@dataclass
class MetadataState:
    municipality: Municipality
    metadata: IdpMetadata | None = None
    fetched_at: Any = None
    last_attempt: dt.datetime | None = None
    last_error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class UpstreamMetadata:
    """Current, verified metadata of every municipality with login: saml."""

    def __init__(self, municipalities: list[Municipality], clock: Clock, fetcher: HttpFetcher | None, *,
                 background: bool = True) -> None:
        """``background``: refresh URL metadata on a schedule in a thread (a server); off for one-shot tools."""
        self._clock = clock
        self._fetcher = fetcher
        self._background = background
        self._states = {m.id: MetadataState(m, m.idp_metadata) for m in municipalities if m.config.saml is not None}
        now = clock.now()
        for state in self._states.values():
            if state.metadata is not None:
                state.fetched_at = now
        self._pid: int | None = None
        self._stop = threading.Event()
        # gunicorn forks workers from the master, maybe while the master's start-up fetch holds a state's lock:
        # a child must not inherit a lock held by a thread it does not have
        reset_in_child(self, UpstreamMetadata._reset_after_fork)

    def _reset_after_fork(self) -> None:
        for state in self._states.values():
            state.lock = threading.Lock()
        self._pid = None
        self._stop = threading.Event()

    def get(self, municipality_id: str) -> IdpMetadata:
        """Usable metadata, fetching on the login path only if none was ever loaded."""
        state = self._states.get(municipality_id)
        if state is None:
            raise UpstreamRejected("upstream_metadata_unavailable", f"{municipality_id} has no SAML IdP")
        self._ensure_background()
        if state.metadata is None:
            self.refresh(state, on_demand=True)
        metadata = state.metadata
        if metadata is None:
            raise UpstreamRejected("upstream_metadata_unavailable",
                                   f"no metadata for {municipality_id}'s IdP: {state.last_error}")
        if metadata.valid_until is not None and metadata.valid_until <= self._clock.now():
            raise UpstreamRejected("upstream_metadata_unavailable",
                                   f"the metadata of {municipality_id}'s IdP expired at "
                                   f"{metadata.valid_until.isoformat()} ({state.last_error or 'not refreshed'})")
        return metadata

    def current(self, municipality_id: str) -> IdpMetadata | None:
        """The metadata held now (possibly expired), without fetching: for reports."""
        state = self._states.get(municipality_id)
        return state.metadata if state is not None else None

    def held(self, municipality_id: str) -> IdpMetadata | None:
        """The metadata held now, without fetching (None: none yet, or no such IdP); may be past validUntil."""
        state = self._states.get(municipality_id)
        return state.metadata if state is not None else None

    def by_entity_id(self, entity_id: str) -> IdpMetadata | None:
        """Usable metadata of the municipal IdP ``entity_id`` (None: not configured, or no valid metadata)."""
        for mid, state in self._states.items():
            saml = state.municipality.config.saml
            if saml is not None and saml.entity_id == entity_id:
                try:
                    return self.get(mid)
                except UpstreamRejected:
                    return None
        return None

    def refresh(self, state: MetadataState, *, on_demand: bool = False) -> None:
        """Fetch and verify URL metadata; keep the last good copy on failure (recorded). ``on_demand``: for a
        request that found no copy, which neither fetches again within :data:`ON_DEMAND_RETRY_AFTER` of a failed
        fetch nor after waiting for one that succeeded: every request naming an IdP whose server does not answer
        would otherwise wait for a fetch of its own, one after another behind the lock."""
        source = state.municipality.config.saml.metadata if state.municipality.config.saml else None
        if source is None or source.url is None:
            return
        if on_demand and self._failed_lately(state):
            return
        if not state.lock.acquire(timeout=source.timeout.seconds + 1):
            state.last_error = "a refresh already running did not finish in time"
            log.warning("metadata of %s's IdP: %s", state.municipality.id, state.last_error)
            return
        try:
            if on_demand and (state.metadata is not None or self._failed_lately(state)):
                return  # fetched, or failed, while this request waited for the lock
            state.last_attempt = self._clock.now()
            if self._fetcher is None:
                raise FetchError("network fetching is off")
            limits = FetchLimits(min(5.0, source.timeout.seconds), source.timeout.seconds, source.max_bytes)
            xml = self._fetcher.get(source.url, limits, accept="application/samlmetadata+xml")
            certs = tuple(c.certificate for c in source.signing_certificates)
            entity_id = state.municipality.config.saml.entity_id  # type: ignore[union-attr]
            verify_metadata_signature(xml, certs, self._clock.now(), entity_id, source.max_bytes)
            fetched = parse_idp_metadata(xml, entity_id, source.max_bytes)
            held = state.metadata
            if held is not None and held.valid_until and fetched.valid_until and fetched.valid_until < held.valid_until:
                # an older signed copy replayed (e.g. one listing a key since withdrawn) must not roll us back
                raise ValueError(f"the fetched metadata is older than the copy held (validUntil "
                                 f"{fetched.valid_until.isoformat()} < {held.valid_until.isoformat()})")
            if held is not None and held.valid_until and not fetched.valid_until:
                # nor one without validUntil (SAML Metadata §2.3.1), which would never expire: an IdP whose copies
                # carry one does not drop it, an older copy replayed from before it did may well
                raise ValueError(f"the fetched metadata has no validUntil, the copy held has one "
                                 f"({held.valid_until.isoformat()}); kept the copy held")
            state.metadata = fetched
            state.fetched_at = self._clock.now()
            state.last_error = None
        except (FetchError, ValueError) as exc:
            state.last_error = str(exc)
            log.warning("metadata of %s's IdP: %s (keeping the last good copy)", state.municipality.id, exc)
        except Exception as exc:  # one IdP's surprise must not end the refresh thread, nor the others' refresh
            state.last_error = f"unexpected {type(exc).__name__}: {exc}"
            log.exception("metadata of %s's IdP: refresh failed unexpectedly (keeping the last good copy)",
                          state.municipality.id)
        finally:
            state.lock.release()

    def _failed_lately(self, state: MetadataState) -> bool:
        attempt = state.last_attempt
        return state.last_error is not None and attempt is not None \
            and not passed(attempt, ON_DEMAND_RETRY_AFTER, self._clock.now())

    def status(self) -> dict[str, dict[str, Any]]:
        out = {}
        for mid, state in self._states.items():
            m = state.metadata
            out[mid] = {
                "entity_id": m.entity_id if m else None,
                "valid_until": m.valid_until.isoformat() if m and m.valid_until else None,
                "fetched_at": state.fetched_at.isoformat() if state.fetched_at else None,
                "last_error": state.last_error,
                "signing_keys": len(m.signing_certificates) if m else 0,
            }
        return out

    def _ensure_background(self, initial: bool = False) -> None:
        """One refresh thread per process (a forked worker starts its own)."""
        pid = os.getpid()
        fetched = any(s.municipality.config.saml and s.municipality.config.saml.metadata.url
                      for s in self._states.values())
        if not self._background or self._pid == pid or not fetched:
            return
        self._pid = pid
        threading.Thread(target=self._loop, args=(initial,), name="idp-metadata", daemon=True).start()

    def start(self) -> None:
        """Fetch URL metadata in the background now (at start-up, not on the first login)."""
        self._ensure_background(initial=True)

    def _loop(self, initial: bool = False) -> None:
        if initial:
            self.refresh_all()
        intervals = [s.municipality.config.saml.metadata.refresh_interval.seconds for s in self._states.values()
                     if s.municipality.config.saml is not None and s.municipality.config.saml.metadata.url]
        period = max(1.0, min([30.0, *intervals]))
        while not self._stop.wait(period):
            now = self._clock.now()
            for state in self._states.values():
                saml = state.municipality.config.saml
                if saml is None or saml.metadata.url is None:
                    continue
                if state.fetched_at is None or passed(state.fetched_at, self.refresh_due(state), now):
                    self.refresh(state)

    @staticmethod
    def refresh_due(state: MetadataState) -> dt.timedelta:
        """How long after its fetch the copy held is fetched again: ``refresh_interval``, or sooner when

        * the copy's cacheDuration is shorter (SAML Metadata §2.3.1: the longest a consumer should cache it; errata
          E94: past it the copy is stale, still usable until its validUntil), though not under
          :data:`MIN_CACHE_DURATION`;
        * its validUntil comes first: past it the copy is no longer usable (§2.3.1), so it is fetched again when
          :data:`VALIDITY_REFRESH_FACTOR` of the time from its fetch to its validUntil has passed. A copy that
          expired before its next scheduled fetch left every login to the IdP refused until then, though the IdP
          published a fresh one."""
        saml = state.municipality.config.saml
        assert saml is not None
        due = saml.metadata.refresh_interval.timedelta
        held = state.metadata
        if held is not None and held.cache_duration is not None:
            due = min(due, max(held.cache_duration, MIN_CACHE_DURATION))
        if held is not None and held.valid_until is not None and isinstance(state.fetched_at, dt.datetime):
            due = min(due, max((held.valid_until - state.fetched_at) * VALIDITY_REFRESH_FACTOR, dt.timedelta(0)))
        return due

    def refresh_all(self) -> None:
        """Fetch every URL source now (start-up, operators' tools, tests)."""
        for state in self._states.values():
            self.refresh(state)

    def close(self) -> None:
        self._stop.set()
