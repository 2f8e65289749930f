"""The collaborators every step of the flow uses, wired once by :func:`broker.app.create_app`."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from broker.audit.trail import AuditTrail
from broker.clock import Clock
from broker.config.loader import Settings
from broker.pki.sources import CertificateSourceResolver
from broker.pki.validator import CertificateValidator
from broker.saml.authnrequest import AuthnRequestParser
from broker.saml.nameid import NameIdIssuer
from broker.saml.response import ResponseBuilder
from broker.session.rate_limit import FailureLimiter
from broker.session.sessions import SessionManager


@dataclass(frozen=True)
class FlowDeps:
    settings: Settings
    clock: Clock
    validator: CertificateValidator
    sessions: SessionManager
    audit: AuditTrail
    parser: AuthnRequestParser
    responses: ResponseBuilder
    nameids: NameIdIssuer
    certificate_sources: CertificateSourceResolver
    limiter: FailureLimiter


def upstream_answer_window(deps: FlowDeps) -> dt.timedelta:
    """How long a municipal IdP's answer is accepted at the ACS: a pending login's life (``sp.login_timeout``), which
    also bounds the age of an unsolicited Response (:meth:`broker.flow.upstream.UpstreamStep.complete`), so that the
    logouts remembered for that long cover every answer still accepted (:mod:`broker.flow.logout`)."""
    sp = deps.settings.broker.sp
    return sp.login_timeout.timedelta if sp is not None else deps.sessions.pending_timeout
