"""When each municipality's users last logged in successfully, kept in the shared store (every instance's
logins count), for the operators' status page."""

from __future__ import annotations

from typing import Any

from broker.session.store import KeyValueStore

_KEY = "last-login:"
_KEEP_SECONDS = 400 * 86400


def remember_login(store: KeyValueStore, record: dict[str, Any]) -> None:
    """An audit record was written: if it is an issued assertion, note its time for its municipality."""
    if record.get("event") == "assertion_issued" and record.get("municipality"):
        store.put(f"{_KEY}{record['municipality']}", str(record["time"]).encode(), _KEEP_SECONDS)


def last_login(store: KeyValueStore, municipality_id: str) -> str | None:
    """ISO time of the last successful login of ``municipality_id``'s users, if any was recorded."""
    raw = store.get(f"{_KEY}{municipality_id}")
    return raw.decode() if raw else None
