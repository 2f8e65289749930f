"""The audit event schema, version 1: every event type, its outcome, its fields and its ``data`` keys.

The single description of the records: :func:`validate` checks a record
against it (the tests run it over every line a login writes) and
:func:`markdown` renders the reference in docs/audit.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Final

SCHEMA_VERSION: Final = 1

CHAIN_FIELDS: Final = ("v", "seq", "prev", "time", "instance", "event", "outcome")

FIELDS: Final = {
    "v": "schema version (1)",
    "seq": "position in the writer's hash chain: 1, 2, 3 ...",
    "prev": "SHA-256 (hex) of the previous record's line; 64 zeros for the first",
    "time": "UTC, ISO 8601 with milliseconds and Z",
    "instance": "the broker instance that wrote it (one chain per process)",
    "event": "event type (below)",
    "outcome": "success, failure or info",
    "correlation_id": "ties the events of one login together; the reference number on the user's pages",
    "reason": "reason code (README, Reason codes)",
    "municipality": "municipality id",
    "user": "HSA-id in clear; `pnr:` + 32 hex HMAC pseudonym for a personnummer (also one an hsa_id or opaque "
            "rule read: `user_kind` names the rule); opaque ids in clear, a personnummer in one replaced by its "
            "pseudonym (`pnr:...@kommun.se`)",
    "user_kind": "hsa_id, personnummer or opaque",
    "cert_sha256": "SHA-256 fingerprint (hex) of the user's certificate",
    "cert_serial": "its serial number (hex)",
    "cert_issuer": "its issuer (RFC 4514)",
    "sp": "the service provider's entityID",
    "client": "the client address: clear, truncated (/24, /48) or `ip:` pseudonym, per audit.client_address; on "
              "every record of a user's request, absent only where the address is unknown (a trusted proxy that "
              "forwarded no usable X-Forwarded-For, docs/proxies.md)",
    "detail": "operator text, at most 2,000 characters (longer text ends in …): never a personnummer, an assertion, "
              "a certificate or an attribute value",
    "data": "event-specific values (below)",
}

# a user's request: its reference, and the client's address (optional: unknown behind a trusted proxy that forwarded
# none, and then left out rather than guessed; see _spec)
_LOGIN = frozenset({"correlation_id", "client"})
_USER = frozenset({"municipality", "user", "user_kind"})
_CERT = frozenset({"cert_sha256", "cert_serial", "cert_issuer"})


@dataclass(frozen=True)
class EventSpec:
    description: str
    outcomes: frozenset[str]
    required: frozenset[str] = frozenset()
    optional: frozenset[str] = frozenset()
    data: frozenset[str] = frozenset()
    data_required: frozenset[str] = field(default_factory=frozenset)


def _spec(description: str, outcomes: str, required: set[str] | frozenset[str] = frozenset(),
          optional: set[str] | frozenset[str] = frozenset(), data: str = "", data_required: str = "") -> EventSpec:
    # ``client`` is never required: where a record names it, it is there whenever the address is known
    return EventSpec(description, frozenset(outcomes.split()), frozenset(required) - {"client"},
                     frozenset(optional) | ({"client"} & frozenset(required)) | {"detail", "reason"},
                     frozenset(data.split()), frozenset(data_required.split()))


EVENTS: Final[dict[str, EventSpec]] = {
    "login_started": _spec("a registered SP's AuthnRequest was accepted", "info", _LOGIN | {"sp"},
                           data="request_id binding signed force_authn is_passive nameid_format requested_context"),
    "saml_request_rejected": _spec("a SAML message was refused", "failure", _LOGIN | {"reason"}, {"sp"},
                                   data="binding"),
    "certificate_presented": _spec("a client certificate arrived", "info", _LOGIN | _CERT | {"sp"}, data="via",
                                   data_required="via"),
    "certificate_accepted": _spec("the certificate passed every check", "success", _LOGIN | _CERT | _USER | {"sp"},
                                  data="loa policy revocation revocation_sources revocation_ocsp_methods",
                                  data_required="loa policy"),
    "certificate_rejected": _spec("the certificate failed a check (`user`: whose it is, when one of its "
                                  "municipality's configured CAs signed it)", "failure", _LOGIN | {"reason"},
                                  _CERT | _USER | {"sp"}),
    "login_refused": _spec("the login could not go on (no certificate, SP access rules, a forged or cross-site "
                           "form, failed-login limits, a dependency; a request to a login or logout endpoint "
                           "refused as such: its size, its encoding; internal_error: a defect, whose traceback "
                           "is in the log under the same reference)",
                           "failure", _LOGIN | {"reason"}, _USER | _CERT | {"sp"}),
    "upstream_authn_requested": _spec("the broker sent an AuthnRequest to a municipal IdP", "info",
                                      _LOGIN | {"municipality", "sp"},
                                      data="idp request_id force_authn is_passive requested_context",
                                      data_required="idp request_id"),
    "upstream_authn_result": _spec("a municipal IdP answered the broker (federated login)", "success failure",
                                   _LOGIN, _USER | {"sp", "municipality"},
                                   data="idp request_id loa authn_instant attributes"),
    "assertion_issued": _spec("a signed assertion went to the SP", "success", _LOGIN | _USER | {"sp"}, _CERT,
                              data="request_id loa nameid nameid_format attributes session encryption",
                              data_required="loa nameid nameid_format attributes session"),
    "error_response_issued": _spec("a signed SAML error Response went to the SP", "failure",
                                   _LOGIN | {"reason", "sp"}, data="status", data_required="status"),
    "session_reused": _spec("an SSO session answered a new AuthnRequest (`cert_*`: the certificate a session "
                            "opened by certificate rests on, as in its assertion_issued)", "success",
                            _LOGIN | _USER | {"sp"}, _CERT, data="session_login loa"),
    "session_insufficient": _spec("an SSO session's level did not do for the SP, or its municipality's IdP "
                                  "configuration changed since its login; its municipal IdP is asked again",
                                  "info", _LOGIN | _USER | {"sp", "reason"}, data="session_login loa",
                                  data_required="session_login loa"),
    "session_expired": _spec("an SSO session had timed out (`user`: whose, while the session is still kept for single "
                             "logout)", "info", _LOGIN),
    "session_unreadable": _spec("the browser's SSO session record could not be read (another release's stored "
                                "form during an upgrade, a damaged record): the login went on without it",
                                "failure", _LOGIN),
    "session_revoked": _spec("an SSO session answers no SP because its certificate no longer holds (it stays for "
                             "single logout until the next login replaces it)", "failure",
                             _LOGIN | _USER | {"reason"}, _CERT | {"sp"}, data="session_login"),
    "session_replaced": _spec("another user's login in the browser replaced an SSO session (a shared PC): not "
                              "taken over by the new session but kept apart, answering no SP, for its own user's "
                              "single logout (`user`: the replaced session's; `services`: the SPs it holds)",
                              "info", _LOGIN | _USER, data="session_login services",
                              data_required="session_login services"),
    "revocation_soft_fail": _spec("no revocation source answered; let through by a soft-fail policy",
                                  "failure", _LOGIN | _USER | {"reason"}, _CERT | {"sp"}),
    "logout": _spec("a LogoutRequest from an SP or a municipal IdP: the sessions it ended, who will hear of it "
                    "(`resumed`: a retry, after a failure of the session store, of one that had ended some already)",
                    "success failure", _LOGIN, _USER | {"sp"},
                    data="initiator peer request_id session_ended sessions propagate_to asynchronous unlocated "
                         "resumed"),
    "logout_propagated": _spec("a participant's answer to the broker's LogoutRequest (or why it could not be "
                               "asked)", "success failure", _LOGIN, _USER | {"sp"}, data="side peer status"),
    "logout_completed": _spec("single logout finished: the initiator gets Success or PartialLogout (`failed`: "
                              "the participants that did not confirm; `unlocated`: the principal's sessions could "
                              "not all be found)", "success failure", _LOGIN, _USER,
                              data="initiator peer confirmed failed unlocated"),
    "diagnose_viewed": _spec("someone opened /diagnose (no login happens; `user`: whose certificate it is, "
                             "when it was accepted or one of its municipality's configured CAs signed it)", "info",
                             _LOGIN, _CERT | _USER | {"municipality", "reason"}, data="accepted via",
                             data_required="accepted"),
    "proxy_header_untrusted": _spec("a certificate header from outside the trusted proxies was ignored",
                                    "failure", _LOGIN | {"reason"}),
    "proxy_header_rejected": _spec("a trusted proxy's certificate header was unusable (`client`: the user's "
                                   "address it forwarded, if any; `proxy`: the proxy's own)", "failure",
                                   {"correlation_id", "reason"}, {"client"}, data="proxy", data_required="proxy"),
    "configuration_loaded": _spec("a process loaded its configuration; what changed since the last load",
                                  "info", {"correlation_id"},
                                  data="config_sha256 municipalities service_providers files added removed "
                                       "modified restart_needed", data_required="config_sha256 files"),
    "configuration_rejected": _spec("a configuration reload was refused; the previous configuration keeps serving",
                                    "failure", {"correlation_id", "reason"}, data="issues directory"),
    "readiness_run": _spec("`broker readiness` ran", "success failure info", {"correlation_id"},
                           data="municipalities pass warn fail endpoints at"),
    "audit_chain_started": _spec("a writer started its hash chain", "info", data="chain key_id pid",
                                 data_required="chain key_id"),
    "audit_checkpoint": _spec("a signed checkpoint sealing every record before it", "info",
                              data="chain covers_seq covers_hash key_id final file signature",
                              data_required="chain covers_seq covers_hash key_id signature"),
    "audit_key_rotated": _spec("the audit signing key differs from the previous writer's", "info",
                               data="old_key_id new_key_id", data_required="old_key_id new_key_id"),
    "audit_chain_recovered": _spec("a writer attested a chain whose writer died without a final checkpoint",
                                   "info", data="chain file last_seq last_hash torn_bytes",
                                   data_required="chain last_seq last_hash"),
    "audit_file_abandoned": _spec("writing failed; the file was cut back (or, if that failed too, the part of "
                                  "the line written before the failure is left, torn_bytes long) and the chain "
                                  "goes on in a new file",
                                  "info", data="file bytes truncated_partial_line torn_bytes error"),
}

_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z\Z")
_HEX64 = re.compile(r"^[0-9a-f]{64}\Z")


def validate(record: dict[str, Any]) -> list[str]:
    """What is wrong with ``record`` against the schema (an empty list: nothing)."""
    problems: list[str] = []
    for name in CHAIN_FIELDS:
        if name not in record:
            problems.append(f"missing {name}")
    if problems:
        return problems
    if record["v"] != SCHEMA_VERSION:
        problems.append(f"unknown schema version {record['v']!r}")
    if not isinstance(record["seq"], int) or record["seq"] < 1:
        problems.append("seq must be a positive integer")
    if not isinstance(record["prev"], str) or not _HEX64.match(record["prev"]):
        problems.append("prev must be 64 hex digits")
    if not isinstance(record["time"], str) or not _ISO.match(record["time"]):
        problems.append(f"time {record['time']!r} is not UTC ISO 8601 with milliseconds")
    spec = EVENTS.get(record["event"])
    if spec is None:
        return [*problems, f"unknown event {record['event']!r}"]
    if record["outcome"] not in spec.outcomes:
        problems.append(f"outcome {record['outcome']!r} (expected {'/'.join(sorted(spec.outcomes))})")
    allowed = set(CHAIN_FIELDS) | spec.required | spec.optional | ({"data"} if spec.data else set())
    for name in spec.required:
        if record.get(name) in (None, ""):
            problems.append(f"missing {name}")
    for name in record:
        if name not in allowed:
            problems.append(f"field {name} does not belong to {record['event']}")
    data = record.get("data") or {}
    if not isinstance(data, dict):
        return [*problems, "data must be an object"]
    for key in data:
        if key not in spec.data:
            problems.append(f"data.{key} does not belong to {record['event']}")
    for key in spec.data_required:
        if key not in data:
            problems.append(f"missing data.{key}")
    return problems


def markdown() -> str:
    """The schema as the Markdown reference of docs/audit.md."""
    lines = ["| field | meaning |", "|---|---|"]
    lines += [f"| `{name}` | {text} |" for name, text in FIELDS.items()]
    lines += ["", "| event | outcome | fields | `data` | meaning |", "|---|---|---|---|---|"]
    for name, spec in EVENTS.items():
        required = ", ".join(f"`{f}`" for f in sorted(spec.required))
        data = ", ".join(f"`{d}`" + ("*" if d in spec.data_required else "") for d in sorted(spec.data))
        lines.append(f"| `{name}` | {'/'.join(sorted(spec.outcomes))} | {required} | {data} | {spec.description} |")
    return "\n".join(lines) + "\n"
