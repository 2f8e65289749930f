"""Audit events: typed, and redacted at the source.

An event never holds a certificate, an assertion or an attribute value. A
certificate appears as fingerprint, serial and issuer; a personnummer only
as a keyed pseudonym (done by :class:`broker.audit.trail.AuditTrail`); the
released attributes by name only. The fields and event types are described
once, in :mod:`broker.audit.schema`.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from broker.model import CertificateFacts, Identity

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
    "session_insufficient",
    "session_expired",
    "session_unreadable",
    "session_revoked",
    "session_replaced",
    "revocation_soft_fail",
    "logout",
    "diagnose_viewed",
    "logout_propagated",
    "logout_completed",
    "proxy_header_untrusted",
    "proxy_header_rejected",
    "configuration_loaded",
    "configuration_rejected",
    "readiness_run",
    "upstream_authn_requested",
    "upstream_authn_result",
    "audit_chain_started",
    "audit_checkpoint",
    "audit_key_rotated",
    "audit_chain_recovered",
    "audit_file_abandoned",
]

Outcome = Literal["success", "failure", "info"]
DataValue = str | int | bool | tuple[str, ...] | dict[str, str] | None


def new_correlation_id() -> str:
    """A reference a user can read aloud: 16 hex digits in groups, e.g. ``3F9A-C21B-77D0-1E2F``."""
    raw = secrets.token_hex(8).upper()
    return "-".join(raw[i:i + 4] for i in range(0, 16, 4))


def as_reference(text: str) -> str:
    """A reference as a user may read it out or an operator type it (lower case, spaces or no dashes:
    ``3f9a c21b 77d0 1e2f``) in the form :func:`new_correlation_id` gives; any other text as it is."""
    digits = re.sub(r"[\s-]", "", text)
    if re.fullmatch(r"[0-9A-Fa-f]{16}", digits):
        digits = digits.upper()
        return "-".join(digits[i:i + 4] for i in range(0, 16, 4))
    return text.strip()


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
