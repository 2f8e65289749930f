"""When each municipality's users last logged in successfully, kept in the shared store (every instance's
logins count), for the operators' status page."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from broker.session.store import KeyValueStore

_KEY = "last-login:"
_KEEP_SECONDS = 400 * 86400


class LoginActivity:
    """Notes the time of issued assertions per municipality, at most once per ``resolution`` seconds per
    municipality and process: the status page shows the last login to the minute, and a Redis write on every
    login would cost a round trip for nothing."""

    def __init__(self, store: KeyValueStore, *, resolution: float = 5.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._resolution = resolution
        self._monotonic = monotonic
        self._written: dict[str, float] = {}
        self._lock = threading.Lock()

    def __call__(self, record: dict[str, Any]) -> None:
        """An audit record was written: if it is an issued assertion, note its time for its municipality."""
        municipality = record.get("municipality")
        if record.get("event") != "assertion_issued" or not municipality:
            return
        now = self._monotonic()
        with self._lock:
            last = self._written.get(municipality)
            if last is not None and now - last < self._resolution:
                return
            self._written[municipality] = now
        try:
            self._store.put(f"{_KEY}{municipality}", str(record["time"]).encode(), _KEEP_SECONDS)
        except Exception:
            with self._lock:  # not noted: the next login tries again
                self._written.pop(municipality, None)
            raise


def last_login(store: KeyValueStore, municipality_id: str) -> str | None:
    """ISO time of the last successful login of ``municipality_id``'s users, if any was recorded."""
    raw = store.get(f"{_KEY}{municipality_id}")
    return raw.decode() if raw else None
