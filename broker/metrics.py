"""Prometheus metrics: logins by outcome, reason and municipality; latency; revocation lookups; expiries.

Counts come from the audit trail's records (one source of truth: what is counted is what was recorded)
and from the revocation checker's lookups. Expiries are read from the live configuration at scrape
time. Under gunicorn the workers' counts are added up through prometheus_client's multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR``, set by ``broker serve``); in one process a registry of this object's own.

Label values are bounded: reasons are reason codes, municipalities are configured ids, endpoints are
route names.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import struct
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from broker.readiness.expiries import Expiry

log = logging.getLogger("broker")

# success: an assertion went to the SP; failure: the login stopped here, with this reason
_LOGIN_FAILURES = {"certificate_rejected", "login_refused", "saml_request_rejected", "session_revoked"}
_LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class MetricsUnavailable(Exception):
    """The workers' metrics cannot be read for a scrape (multiprocess mode: their directory has gone, or cannot
    be read). The message says so in an operator's words."""


class _ExpiryCollector(Collector):
    def __init__(self, expiries: Callable[[], list[Expiry]], now: Callable[[], dt.datetime]) -> None:
        self._expiries = expiries
        self._now = now

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "broker_days_until_expiry", "Days until a trust anchor, intermediate, CRL file (its nextUpdate), IdP "
            "metadata or broker key expires (negative: expired)", labels=["kind", "municipality", "subject"])
        now = self._now()
        for e in self._expiries():
            family.add_metric([e.kind, e.municipality, e.subject], (e.not_after - now).total_seconds() / 86400)
        yield family


class Metrics:
    """The broker's metrics; one per process (or per app in tests)."""

    def __init__(self, expiries: Callable[[], list[Expiry]], now: Callable[[], dt.datetime]) -> None:
        self._multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        if self._multiprocess:
            # prometheus_client picks its value class when imported; `broker serve` may set the directory later
            values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
        self._registry = None if self._multiprocess else CollectorRegistry()
        self._warned = self._unreadable_warned = False  # each said once per process in the log
        self.logins = Counter("broker_logins", "Logins answered: success (an assertion issued) or failure, with the "
                              "reason code and municipality", ["outcome", "reason", "municipality"],
                              registry=self._registry)
        self.events = Counter("broker_audit_events", "Audit events recorded, by type and outcome",
                              ["event", "outcome"], registry=self._registry)
        self.latency = Histogram("broker_request_duration_seconds", "Time to answer, by endpoint", ["endpoint"],
                                 buckets=_LATENCY_BUCKETS, registry=self._registry)
        self.audit_failures = Counter("broker_audit_write_failures", "Audit writes and syncs refused (a full or "
                                      "unwritable disk): each fails the request it belongs to closed, and leaves "
                                      "no audit record to count it by", registry=self._registry)
        self.revocation = Counter("broker_revocation_lookups", "Revocation lookups: cache_hit (this process), "
                                  "shared_hit (another instance's answer), fetched, error", ["method", "result"],
                                  registry=self._registry)
        self._expiry = _ExpiryCollector(expiries, now)
        self._children: dict[tuple[object, ...], Any] = {}
        if self._registry is not None:
            self._registry.register(self._expiry)

    def _child(self, metric: Counter, *labels: str) -> Any:
        """``metric.labels(*labels)``, looked up once: label values are bounded (see above), and the lookup
        with its validation and lock cost more than the increment."""
        key = (metric, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def observe_record(self, record: dict[str, Any]) -> None:
        """An audit record was written: count it."""
        event, outcome = str(record.get("event")), str(record.get("outcome"))
        self._child(self.events, event, outcome).inc()
        municipality = str(record.get("municipality") or "")
        if event == "assertion_issued":
            self._child(self.logins, "success", "", municipality).inc()
        elif outcome == "failure" and (event in _LOGIN_FAILURES or event == "upstream_authn_result"):
            self._child(self.logins, "failure", str(record.get("reason") or ""), municipality).inc()

    def observe_audit_failure(self, _reason: str) -> None:
        self.audit_failures.inc()

    def observe_revocation(self, method: str, result: str) -> None:
        """A revocation lookup, during a login: never fails it (:meth:`_uncounted`)."""
        try:
            self.revocation.labels(method, result).inc()
        except Exception as exc:
            self._uncounted(exc)

    def observe_latency(self, endpoint: str, seconds: float) -> None:
        """The time a request took, after every request: never fails it (:meth:`_uncounted`)."""
        try:
            self.latency.labels(endpoint).observe(seconds)
        except Exception as exc:
            self._uncounted(exc)

    def _uncounted(self, exc: Exception) -> None:
        """Counting must never cost a request (the audit trail's observers are guarded alike): in multiprocess
        mode every use of a metric raises in a worker forked after its directory went away (a clean-up of /tmp,
        an operator's PROMETHEUS_MULTIPROC_DIR unmounted) or on a full file system. Said once per process."""
        if not self._warned:
            self._warned = True
            log.warning("metrics cannot be counted in this process (%s: %s); requests are served without them",
                        type(exc).__name__, exc)

    def exposition(self) -> bytes:
        """The text format (version 0.0.4) for a scrape. Raises :class:`MetricsUnavailable` when the workers'
        files cannot be read (said once per process in the log): the directory was removed by a clean-up of
        /tmp or unmounted, a file went while it was read, or one is damaged."""
        if self._registry is not None:
            return bytes(generate_latest(self._registry))
        registry = CollectorRegistry()
        try:
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # ValueError: no such directory
            registry.register(self._expiry)
            return bytes(generate_latest(registry))
        except (OSError, ValueError, struct.error) as exc:  # struct.error: a worker's file torn or damaged
            if not self._unreadable_warned:
                self._unreadable_warned = True
                log.warning("metrics cannot be read in this process (%s: %s); /metrics answers 503 until the "
                            "broker is restarted", type(exc).__name__, exc)
            raise MetricsUnavailable(
                "the workers' metrics cannot be read: their directory (PROMETHEUS_MULTIPROC_DIR) is gone or "
                "unreadable, e.g. removed by a clean-up of the temporary directory; restart the broker, which "
                "makes a new one (docs/deployment.md)") from exc


def worker_exited(pid: int) -> None:
    """gunicorn's child_exit: a dead worker's live gauges no longer count (its counters do)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        mark_process_dead(pid)  # type: ignore[no-untyped-call]
