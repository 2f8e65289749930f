"""The collaborators every step of the flow uses, wired once by :func:`broker.app.create_app`."""

from __future__ import annotations

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
