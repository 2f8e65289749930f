"""Audit events: typed, and redacted at the source.

An event never holds a certificate, an assertion or an attribute value. A
certificate appears as fingerprint, serial and issuer; a personnummer only
as a keyed pseudonym (done by :class:`broker.audit.trail.AuditTrail`); the
released attributes by name only.

Schema version 1 (documented in docs/audit.md). Fields:

``v`` schema version · ``time`` UTC, ISO 8601 with milliseconds · ``instance``
broker instance · ``event`` type · ``outcome`` success/failure/info ·
``reason`` reason code (failures) · ``correlation_id`` ties one login's
events together and is shown to the user · ``municipality`` · ``user`` HSA-id,
``pnr:<pseudonym>`` or opaque id · ``user_kind`` · ``cert_sha256``,
``cert_serial``, ``cert_issuer`` · ``sp`` entityID · ``client`` address (per
``audit.client_address``) · ``detail`` operator text · ``data`` event-specific
values (LoA, NameID as issued, attribute names, request ID ...).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from broker.model import CertificateFacts, Identity

SCHEMA_VERSION = 1

EventType = Literal[
    "login_started",
    "saml_request_rejected",
    "certificate_presented",
    "certificate_accepted",
    "certificate_rejected",
    "login_refused",
    "assertion_issued",
    "error_response_issued",
    "session_reused",
    "session_expired",
    "session_revoked",
    "revocation_soft_fail",
    "logout",
    "proxy_header_untrusted",
    "proxy_header_rejected",
    "configuration_loaded",
]

Outcome = Literal["success", "failure", "info"]
DataValue = str | int | bool | tuple[str, ...] | None


def new_correlation_id() -> str:
    """A reference a user can read aloud: 16 hex digits in groups, e.g. ``3F9A-C21B-77D0-1E2F``."""
    raw = secrets.token_hex(8).upper()
    return "-".join(raw[i:i + 4] for i in range(0, 16, 4))


@dataclass(frozen=True)
class AuditEvent:
    event: EventType
    outcome: Outcome
    correlation_id: str
    reason: str | None = None
    detail: str | None = None
    municipality: str | None = None
    identity: Identity | None = None
    certificate: CertificateFacts | None = None
    sp: str | None = None
    client_address: str | None = None
    data: Mapping[str, DataValue] = field(default_factory=lambda: MappingProxyType({}))
