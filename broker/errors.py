"""The broker's exception tree.

Every rejection is a :class:`BrokerError` carrying a stable reason code from
:mod:`broker.reasons`. ``detail`` is for operators (technical, never secret);
``params`` are values safe to show to the user (dates, names) that the error
page weaves into its plain-words message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar

from broker.model import ReplyTarget
from broker.reasons import Family, Reason, reason


class BrokerError(Exception):
    """Base of every error the broker raises on purpose."""

    families: ClassVar[tuple[Family, ...]] = ()

    def __init__(self, code: str, detail: str = "", *, params: Mapping[str, str] | None = None) -> None:
        row = reason(code)
        if self.families and row.family not in self.families:
            raise TypeError(f"{type(self).__name__} cannot carry {row.family} reason {code!r}")
        super().__init__(f"{code}: {detail}" if detail else code)
        self.reason = code
        self.detail = detail
        self.params: Mapping[str, str] = MappingProxyType(dict(params or {}))

    @property
    def row(self) -> Reason:
        return reason(self.reason)


class CertificateRejected(BrokerError):
    """A presented certificate failed validation or profile checks."""

    families = ("certificate",)


class ProxyHeaderRejected(BrokerError):
    """The certificate header from a trusted proxy was unusable."""

    families = ("proxy",)


class SamlRejected(BrokerError):
    """A SAML message from a peer was refused.

    ``reply_to`` is set once the peer and its endpoint are trusted enough to
    receive a SAML error Response; otherwise the user gets an error page.
    ``issuer``: the known party (a registered SP, a municipal IdP) whose entity ID the message's Issuer names, once
    it is known (for the audit trail): the reply target's SP when there is one.
    """

    families = ("saml",)

    def __init__(self, code: str, detail: str = "", *, params: Mapping[str, str] | None = None,
                 reply_to: ReplyTarget | None = None, issuer: str | None = None) -> None:
        super().__init__(code, detail, params=params)
        self.reply_to = reply_to
        self.issuer = reply_to.sp_entity_id if reply_to is not None else issuer


class UpstreamRejected(BrokerError):
    """A municipal IdP's message (or the way to it) was refused."""

    families = ("upstream",)


class RequestRejected(BrokerError):
    """Plain HTTP-level refusals (size, method, origin), before any SAML is read."""

    families = ("request",)


class RateLimited(RequestRejected):
    """Too many failed logins from the client's address or with its certificate (HTTP 429).

    ``retry_after``: whole seconds until the counting window ends (the Retry-After header, RFC 9110 §10.2.3);
    the page tells the user the same in minutes.
    """

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__("rate_limited", detail, params={"minutes": str(max(1, -(-retry_after // 60)))})
        self.retry_after = retry_after


class DependencyUnavailable(BrokerError):
    """A dependency (Redis, audit disk) failed; the broker fails closed with a 503."""

    families = ("session", "dependency")


class SessionStoreUnavailable(DependencyUnavailable):
    """``answered``: the store was reached and refused the command (an error reply such as OOM or READONLY), as
    opposed to not reached in time at all; the operator's fix differs (Redis's memory or role, not its address)."""

    def __init__(self, detail: str = "", *, answered: bool = False) -> None:
        super().__init__("session_store_unavailable", detail)
        self.answered = answered


class AuditUnavailable(DependencyUnavailable):
    def __init__(self, detail: str = "") -> None:
        super().__init__("audit_unavailable", detail)


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in the configuration, located as precisely as the input allows."""

    file: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        key = f" {self.key}:" if self.key else ""
        return f"{where}:{key} {self.message}"


class ConfigError(Exception):
    """The configuration is invalid; ``issues`` lists every problem found."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = tuple(issues)
        super().__init__("\n".join(str(i) for i in issues))


class UnusableInput(Exception):
    """CLI input that cannot be examined at all (unreadable file, not a certificate): exit code 2."""
