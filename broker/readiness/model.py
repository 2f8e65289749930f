"""What a readiness run finds: checks with PASS / WARN / FAIL, their evidence and the fix, per subject.

The JSON form (:meth:`Report.to_json`) is a stable interface (docs/readiness.md): keys are only ever
added, and check ids and their meaning do not change.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["pass", "warn", "fail"]
RANK: dict[Status, int] = {"pass": 0, "warn": 1, "fail": 2}
JSON_VERSION = 1


@dataclass(frozen=True)
class Check:
    """One finding. ``id`` is stable (e.g. ``trust.anchor``); ``subject`` names the thing checked (a CA, a URL)."""

    id: str
    status: Status
    title: str
    evidence: str
    fix: str | None = None
    subject: str | None = None
    expires: dt.datetime | None = None   # when what was checked stops being valid, if it has such a date

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status, "title": self.title, "evidence": self.evidence,
                "fix": self.fix, "subject": self.subject,
                "expires": self.expires.isoformat() if self.expires else None}


def worst(checks: tuple[Check, ...] | list[Check]) -> Status:
    found: Status = "pass"
    for c in checks:
        if RANK[c.status] > RANK[found]:
            found = c.status
    return found


@dataclass(frozen=True)
class Section:
    """The checks about one subject: a municipality, a public endpoint, or the broker itself."""

    kind: Literal["municipality", "endpoint", "broker"]
    id: str
    name: str
    checks: tuple[Check, ...]
    details: dict[str, Any] = field(default_factory=dict)   # kind-specific: status, login, advertised CAs ...

    @property
    def result(self) -> Status:
        return worst(self.checks)

    def counts(self) -> dict[str, int]:
        return {s: sum(1 for c in self.checks if c.status == s) for s in ("pass", "warn", "fail")}

    @property
    def next_expiry(self) -> dt.datetime | None:
        dates = [c.expires for c in self.checks if c.expires is not None]
        return min(dates) if dates else None

    def to_json(self) -> dict[str, Any]:
        expiry = self.next_expiry
        return {"id": self.id, "name": self.name, "result": self.result, "counts": self.counts(),
                "next_expiry": expiry.isoformat() if expiry else None, **self.details,
                "checks": [c.to_json() for c in self.checks]}


@dataclass(frozen=True)
class Report:
    generated: dt.datetime
    environment: str
    broker: Section
    municipalities: tuple[Section, ...]
    endpoints: tuple[Section, ...]
    at: dt.datetime | None = None   # --at: the instant validity windows were judged at (None: at ``generated``)

    @property
    def sections(self) -> tuple[Section, ...]:
        return (self.broker, *self.endpoints, *self.municipalities)

    @property
    def result(self) -> Status:
        return worst([c for s in self.sections for c in s.checks])

    def counts(self) -> dict[str, int]:
        total = {"pass": 0, "warn": 0, "fail": 0}
        for s in self.sections:
            for k, v in s.counts().items():
                total[k] += v
        return total

    def to_json(self) -> dict[str, Any]:
        return {
            "version": JSON_VERSION,
            "generated": self.generated.isoformat(),
            "at": self.at.isoformat() if self.at else None,
            "environment": self.environment,
            "result": self.result,
            "counts": self.counts(),
            "broker": self.broker.to_json(),
            "endpoints": [s.to_json() for s in self.endpoints],
            "municipalities": [s.to_json() for s in self.municipalities],
        }
