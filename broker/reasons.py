"""The one table of reason codes.

Every rejection the broker makes (certificate, proxy header, SAML, session,
dependency) carries one of these stable snake_case codes. The same code appears
in the CLI's JSON, in the audit trail, in metrics labels and, translated into
plain words, on the user's error page. Codes are an interface: never rename
one; add a new code and retire the old one instead.

``python -m broker.reasons`` prints the table as Markdown (the README embeds it;
a test keeps the two identical).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

Family = Literal["certificate", "proxy", "saml", "upstream", "session", "dependency", "request", "operations"]

# SAML status codes (SAML Core §3.2.2.2): the top-level Requester where no second-level code says more, and
# second-level codes.
_ST = "urn:oasis:names:tc:SAML:2.0:status:"
REQUESTER: Final = _ST + "Requester"
AUTHN_FAILED: Final = _ST + "AuthnFailed"
NO_PASSIVE: Final = _ST + "NoPassive"
NO_AUTHN_CONTEXT: Final = _ST + "NoAuthnContext"
INVALID_NAMEID_POLICY: Final = _ST + "InvalidNameIDPolicy"
UNSUPPORTED_BINDING: Final = _ST + "UnsupportedBinding"
REQUEST_DENIED: Final = _ST + "RequestDenied"
REQUEST_UNSUPPORTED: Final = _ST + "RequestUnsupported"
PROXY_COUNT_EXCEEDED: Final = _ST + "ProxyCountExceeded"
REQUEST_VERSION_TOO_HIGH: Final = _ST + "RequestVersionTooHigh"


@dataclass(frozen=True)
class Reason:
    """One row of the table.

    ``http_status`` is the status of the error page; ``saml_status`` is the
    status code used when the broker answers the SP with a SAML error Response
    instead of a page (None: never answered that way): a second-level code, or
    the top-level Requester alone where none of them fits (a malformed request).
    """

    code: str
    family: Family
    http_status: int
    description: str
    hint: str
    saml_status: str | None = None


_ROWS: tuple[Reason, ...] = (
    # --- certificate (RFC 5280 path and the municipality's certificate profile) ---
    Reason("certificate_missing", "certificate", 401,
           "No client certificate reached the broker.",
           "The browser offered no certificate: is the card inserted and its middleware running, and does the "
           "TLS endpoint advertise the municipality's CA (broker readiness)?", AUTHN_FAILED),
    Reason("certificate_malformed", "certificate", 400,
           "The presented certificate could not be parsed as X.509.",
           "Check the certificate with `openssl x509 -text`; reissue it if it is damaged.", AUTHN_FAILED),
    Reason("issuer_unknown", "certificate", 403,
           "The certificate's issuer is not a CA of any configured municipality.",
           "Add the issuing CA to the municipality's trust anchors or intermediates, or the user picked a "
           "certificate from another hierarchy.", AUTHN_FAILED),
    Reason("organization_mismatch", "certificate", 403,
           "The certificate's CA issues to several municipalities (or its municipality only accepts certificates "
           "that name it), and the certificate names none of their organisation numbers.",
           "certificate.organization_from says where a certificate names its organisation (HSA-id prefix or "
           "organizationIdentifier); check the user's organisation is configured with its number.",
           AUTHN_FAILED),
    Reason("municipality_suspended", "certificate", 403,
           "The municipality that issued the certificate is suspended in the configuration.",
           "Set status: active in municipalities/<id>.yaml when the suspension is over.", AUTHN_FAILED),
    Reason("municipality_not_active", "certificate", 403,
           "The municipality is still onboarding and this service provider does not accept onboarding "
           "municipalities.",
           "Set status: active at go-live, or accept_onboarding: true on a test service provider.", AUTHN_FAILED),
    Reason("municipality_not_allowed", "certificate", 403,
           "The service provider is not open to users of this municipality.",
           "Add the municipality to the service provider's municipalities list if it should be.",
           REQUEST_DENIED),
    Reason("certificate_not_yet_valid", "certificate", 403,
           "The certificate's notBefore lies in the future (RFC 5280 §4.1.2.5).",
           "Check the broker's clock and the certificate's validity period.", AUTHN_FAILED),
    Reason("certificate_expired", "certificate", 403,
           "The certificate's notAfter has passed (RFC 5280 §4.1.2.5).",
           "The user needs a renewed card or certificate from the municipality's card administrator.",
           AUTHN_FAILED),
    Reason("weak_signature_algorithm", "certificate", 403,
           "A certificate in the path is signed with SHA-1 or a weaker algorithm.",
           "Reissue the certificate with SHA-256 or stronger.", AUTHN_FAILED),
    Reason("weak_key", "certificate", 403,
           "A key in the path is too weak (RSA under 2048 bits, DSA, or a curve other than P-256/384/521): the "
           "certificate's own, or its CA's.",
           "Reissue the certificate the detail names with an RSA key of at least 2048 bits or an ECDSA P-256+ key.",
           AUTHN_FAILED),
    Reason("chain_invalid", "certificate", 403,
           "No valid certification path to the municipality's trust anchors (RFC 5280 §6).",
           "Check that the municipality's intermediates are configured and current; the detail names the "
           "failing certificate.", AUTHN_FAILED),
    Reason("eku_not_client_auth", "certificate", 403,
           "The certificate has an extended key usage without id-kp-clientAuth (RFC 5280 §4.2.1.12).",
           "The user picked a signing or server certificate; use the card's authentication certificate.",
           AUTHN_FAILED),
    Reason("key_usage_not_digital_signature", "certificate", 403,
           "The certificate's key usage lacks digitalSignature (RFC 5280 §4.2.1.3).",
           "The user picked the card's signing (non-repudiation) certificate; use the authentication one.",
           AUTHN_FAILED),
    Reason("policy_not_accepted", "certificate", 403,
           "None of the certificate's policy OIDs is both on the municipality's allow-list and valid on the "
           "certificate's path (RFC 5280 §4.2.1.4, §6.1: every CA below the trust anchor must assert the policy, "
           "anyPolicy, or map to it).",
           "If the OID is missing, add the CA's policy OID with its assurance level to the municipality's "
           "certificate.policies; if the detail names a CA that does not assert it, the intermediate configured "
           "or sent is not the one that issues such certificates.",
           AUTHN_FAILED),
    Reason("revoked", "certificate", 403,
           "The certificate (or a CA certificate in its path) is revoked.",
           "The card has been revoked; the user needs a new one from the card administrator.", AUTHN_FAILED),
    Reason("revocation_unknown", "certificate", 403,
           "The OCSP responder does not know the certificate (status unknown), and no other source vouched "
           "for it.",
           "The certificate may not come from this CA at all; check it with `broker cert check`.", AUTHN_FAILED),
    Reason("revocation_response_invalid", "certificate", 503,
           "The revocation data could not be trusted: unparseable, wrongly signed, for another certificate, "
           "from the future, or with the wrong nonce.",
           "Check the responder (or CRL server) and its signing certificate; `broker revocation status`.",
           AUTHN_FAILED),
    Reason("revocation_stale", "certificate", 503,
           "The revocation data available for the certificate is past its nextUpdate.",
           "Publish a fresh CRL in the configured location (or fix the fetch); logins fail closed until then.",
           AUTHN_FAILED),
    Reason("revocation_unavailable", "certificate", 503,
           "No revocation data covers a certificate in the path, and the policy fails closed.",
           "Configure a CRL for every issuing CA of the municipality, or check the responder.", AUTHN_FAILED),
    Reason("identity_missing", "certificate", 403,
           "The certificate lacks the field the municipality's identity rule reads.",
           "Check the municipality's identity rule against a real certificate (`broker cert check`).",
           AUTHN_FAILED),
    Reason("identity_invalid", "certificate", 403,
           "The identity field does not hold a valid HSA-id or personnummer.",
           "The detail shows what failed (pattern, date or check digit); check the identity rule.",
           AUTHN_FAILED),
    Reason("loa_insufficient", "certificate", 403,
           "The certificate's assurance level is below what the service provider requires.",
           "The service requires a higher assurance level (e.g. a SITHS card instead of a soft certificate).",
           NO_AUTHN_CONTEXT),
    # --- proxy header (certificate forwarded by a TLS-terminating proxy) ---
    Reason("proxy_header_untrusted", "proxy", 400,
           "A client-certificate header arrived from an address outside the trusted proxy networks; it was "
           "ignored.",
           "If this is your proxy, add its network to client_certificate.proxy.trusted_networks; otherwise "
           "someone tried to forge a certificate."),
    Reason("proxy_header_malformed", "proxy", 400,
           "The trusted proxy's client-certificate header could not be decoded: not the configured format, "
           "or not exactly one certificate.",
           "Check that the proxy forwards the format configured in client_certificate.proxy.format "
           "(docs/proxies.md)."),
    Reason("proxy_header_too_large", "proxy", 400,
           "The trusted proxy's client-certificate header exceeds the configured size limit, or its chain "
           "holds more certificates than allowed.",
           "Raise client_certificate.proxy.max_bytes (or max_chain_certificates) only if real certificates and "
           "chains are that large."),
    # --- SAML (requests from service providers) ---
    Reason("saml_request_missing", "saml", 400,
           "The request carried no SAMLRequest.",
           "The user opened the SSO endpoint directly; start from the service provider."),
    Reason("saml_request_malformed", "saml", 400,
           "The SAML message could not be decoded or parsed (SAML Bindings §3.4.4, §3.5.4), or holds a value its "
           "schema does not allow; once the SP and its ACS are known, the SP gets an error Response (Requester).",
           "Check the SP's binding encoding; the detail names the failing step.", REQUESTER),
    Reason("saml_request_too_large", "saml", 400,
           "The SAML message exceeds the size limit (before or after inflation).",
           "Real AuthnRequests are a few kilobytes; this looks like an attack or a broken SP."),
    Reason("saml_binding_unsupported", "saml", 400,
           "The request asks for a binding the broker does not offer (responses go over HTTP-POST).",
           "Configure the SP to request ProtocolBinding HTTP-POST.", UNSUPPORTED_BINDING),
    Reason("sp_unknown", "saml", 403,
           "The request's Issuer is not a registered service provider.",
           "Register the SP with a file in service-providers/ (its metadata and release policy)."),
    Reason("saml_request_unsigned", "saml", 403,
           "The SP's metadata or configuration requires signed requests and this one is not signed.",
           "Configure the SP to sign its AuthnRequests, or correct AuthnRequestsSigned in its metadata."),
    Reason("saml_signature_invalid", "saml", 403,
           "The SAML message's signature does not verify with the SP's metadata keys.",
           "Check that the SP's current signing certificate is in its metadata file."),
    Reason("saml_algorithm_not_allowed", "saml", 403,
           "The message is signed or digested with an algorithm outside the allow-list (no SHA-1).",
           "Configure the SP to sign with RSA-SHA256 (or stronger) and SHA-256 digests."),
    Reason("saml_destination_mismatch", "saml", 400,
           "The message's Destination is not this endpoint (SAML Bindings §3.4.5.2, §3.5.5.2).",
           "Correct the broker SSO URL in the SP's configuration."),
    Reason("saml_request_stale", "saml", 400,
           "The request's IssueInstant is outside the accepted window.",
           "Check the clocks of the SP and the broker (clock_skew in broker.yaml)."),
    Reason("saml_version_unsupported", "saml", 400,
           "The message is not SAML 2.0. A registered SP asking in a higher version gets a VersionMismatch "
           "Response at its default ACS (SAML Core §3.2.2.2, §4.1.3); anything else gets this page.",
           "Only SAML 2.0 is supported.", REQUEST_VERSION_TOO_HIGH),
    Reason("acs_url_not_registered", "saml", 400,
           "The AssertionConsumerServiceURL/Index is not in the SP's metadata (SAML Profiles §4.1.4.1).",
           "Update the SP's metadata file with its current ACS endpoints."),
    Reason("nameid_format_unsupported", "saml", 400,
           "The requested NameIDPolicy Format is not offered for this SP.",
           "Request persistent or transient, or allow the format in the SP's nameid_formats.",
           INVALID_NAMEID_POLICY),
    Reason("authn_context_unsupported", "saml", 403,
           "The requested authentication context cannot be met by this login (SAML Core §3.3.2.2.1).",
           "The certificate's assurance level does not satisfy the SP's RequestedAuthnContext.",
           NO_AUTHN_CONTEXT),
    Reason("passive_login_impossible", "saml", 400,
           "IsPassive was requested and no session or valid certificate allows a login without user "
           "interaction.",
           "Expected when the user has no session; the SP should retry without IsPassive.", NO_PASSIVE),
    Reason("proxy_count_exceeded", "saml", 403,
           "The SP's AuthnRequest allows no proxying (Scoping ProxyCount=\"0\"), and the user's municipality "
           "logs in through its own IdP, which would be a proxied login (SAML Core §3.4.1.5.1).",
           "Expected for such requests without a certificate; the SP must allow a ProxyCount of at least 1 for "
           "users of municipal IdPs.", PROXY_COUNT_EXCEEDED),
    Reason("saml_feature_unsupported", "saml", 400,
           "The request uses a feature the broker does not support (a requested Subject, "
           "AuthnContextDeclRef).",
           "Configure the SP not to send the feature named in the detail.", REQUEST_UNSUPPORTED),
    Reason("relay_state_too_long", "saml", 400,
           "RelayState exceeds the size limit (SAML Bindings §3.4.3: at most 80 bytes).",
           "Configure the SP to send a short RelayState reference; an SP that cannot (SimpleSAMLphp sends its "
           "whole return URL) needs a higher idp.relay_state_max_bytes in broker.yaml."),
    Reason("login_unknown", "saml", 400,
           "The login being resumed is unknown, expired or already used.",
           "The user should start again from the service provider."),
    Reason("logout_request_invalid", "saml", 400,
           "The LogoutRequest could not be accepted (issuer, signature, destination or NameID).",
           "The detail names the failing check."),
    Reason("logout_response_invalid", "saml", 400,
           "A participant's LogoutResponse could not be accepted (issuer, signature, destination, InResponseTo); "
           "the participant counts as not logged out.",
           "The detail names the failing check; the logout goes on with the next participant."),
    Reason("logout_unknown", "saml", 400,
           "A LogoutResponse arrived for no single logout in progress (unknown, expired or finished RelayState).",
           "Nothing to continue; the broker session had already ended when the logout began."),
    # --- upstream (municipal IdPs; the broker as SAML SP) ---
    Reason("municipality_unknown", "upstream", 400,
           "The chosen municipality is not one this service provider accepts.",
           "Choose again from the list; the SP's municipalities list decides what is offered."),
    Reason("upstream_metadata_unavailable", "upstream", 503,
           "No valid metadata for the municipality's IdP (never loaded, unsigned, or past validUntil).",
           "Check `broker readiness` and the metadata URL, its signing certificate and its validUntil.",
           AUTHN_FAILED),
    Reason("upstream_response_malformed", "upstream", 400,
           "The IdP's Response could not be decoded or parsed, or lacks required parts.",
           "The detail names the failing part; compare with SAML Core §2.3, §3.2.", AUTHN_FAILED),
    Reason("upstream_response_too_large", "upstream", 400,
           "The IdP's Response exceeds the size limit.",
           "Real Responses are a few tens of kilobytes; this looks like an attack.", AUTHN_FAILED),
    Reason("upstream_version_unsupported", "upstream", 400,
           "The IdP's Response or Assertion is not SAML 2.0.",
           "Only SAML 2.0 is accepted.", AUTHN_FAILED),
    Reason("upstream_unsigned", "upstream", 403,
           "The part of the IdP's Response that must be signed (signed_element) is not.",
           "Configure the IdP to sign as required, or change signed_element for it.", AUTHN_FAILED),
    Reason("upstream_signature_invalid", "upstream", 403,
           "A signature in the IdP's Response does not verify with the keys in its metadata.",
           "The IdP may have rolled its key: refresh its metadata.", AUTHN_FAILED),
    Reason("upstream_algorithm_not_allowed", "upstream", 403,
           "The IdP signed or encrypted with an algorithm outside the allow-list (no SHA-1, no RSA 1.5, no "
           "3DES).",
           "Configure the IdP for RSA-SHA256, SHA-256 digests, RSA-OAEP and AES.", AUTHN_FAILED),
    Reason("upstream_issuer_mismatch", "upstream", 403,
           "The Response or Assertion was issued by another entity than the IdP the broker asked.",
           "Check the IdP's entity ID in the municipality file.", AUTHN_FAILED),
    Reason("upstream_destination_mismatch", "upstream", 403,
           "The Response's Destination is not the broker's ACS URL (SAML Bindings §3.5.5.2).",
           "Check the ACS URL registered at the IdP (`broker metadata --sp`).", AUTHN_FAILED),
    Reason("upstream_recipient_mismatch", "upstream", 403,
           "The bearer SubjectConfirmationData's Recipient is not the broker's ACS URL (Profiles §4.1.4.3).",
           "Check the ACS URL registered at the IdP.", AUTHN_FAILED),
    Reason("upstream_audience_mismatch", "upstream", 403,
           "The Assertion's AudienceRestriction does not name the broker's SP entity ID.",
           "Check the relying party identifier configured at the IdP.", AUTHN_FAILED),
    Reason("upstream_in_response_to_mismatch", "upstream", 403,
           "The Response answers no pending request of the broker (unknown, used or expired InResponseTo).",
           "The user should start again from the service; repeated, it may be an attack.", AUTHN_FAILED),
    Reason("upstream_browser_mismatch", "upstream", 403,
           "The municipal IdP's Response arrived in another browser than the one that started the login (a "
           "forged cross-site post, or the browser lost the broker's cookie).",
           "The user should start again from the service in one browser; repeated, it is an attack.",
           AUTHN_FAILED),
    Reason("upstream_unsolicited", "upstream", 403,
           "An unsolicited Response (no InResponseTo), and this IdP may not send those.",
           "Set allow_unsolicited for the IdP only if IdP-initiated login is wanted.", AUTHN_FAILED),
    Reason("upstream_expired", "upstream", 403,
           "The Assertion (or its subject confirmation) is past NotOnOrAfter, or the IdP answered from a sign-on "
           "(AuthnInstant) longer ago than session.absolute_timeout.",
           "Check the clocks of the IdP and the broker (clock_skew); for an old sign-on (the detail says so), the "
           "user must sign on at the IdP again (sign out there first).", AUTHN_FAILED),
    Reason("upstream_not_yet_valid", "upstream", 403,
           "The Response or Assertion lies in the future: NotBefore, IssueInstant or AuthnInstant past the clock skew.",
           "Check the clocks of the IdP and the broker (clock_skew).", AUTHN_FAILED),
    Reason("upstream_replay", "upstream", 403,
           "This Assertion was already used.",
           "A replayed Response is an attack or a double submit; the user should start again.", AUTHN_FAILED),
    Reason("upstream_logged_out", "upstream", 403,
           "The municipal IdP ended this login's session (its LogoutRequest) before its Response arrived.",
           "SAML Core §3.7.3.2: the logout applies to assertions that arrive after it; the user logs in again.",
           AUTHN_FAILED),
    Reason("upstream_subject_confirmation_invalid", "upstream", 403,
           "No usable bearer SubjectConfirmation (SAML Profiles §4.1.4.3).",
           "The detail names what is missing.", AUTHN_FAILED),
    Reason("upstream_assertion_invalid", "upstream", 403,
           "Not exactly one Assertion, or an Assertion outside its place (signature wrapping), or one without "
           "Subject/AuthnStatement.",
           "The detail names the problem; repeated, it may be an attack.", AUTHN_FAILED),
    Reason("upstream_decryption_failed", "upstream", 403,
           "The EncryptedAssertion could not be decrypted with the broker's keys.",
           "The IdP must encrypt to the certificate in the broker's SP metadata (`broker metadata --sp`).",
           AUTHN_FAILED),
    Reason("upstream_status", "upstream", 403,
           "The municipality's IdP answered with an error status instead of an assertion.",
           "The detail has the IdP's status codes and message.", AUTHN_FAILED),
    Reason("upstream_authn_context_insufficient", "upstream", 403,
           "The authentication context the IdP returned does not meet what the service provider required, or the "
           "IdP answered that it cannot give it (NoAuthnContext).",
           "The user must log in more strongly at the municipality's IdP.", NO_AUTHN_CONTEXT),
    Reason("upstream_force_authn_ignored", "upstream", 403,
           "The SP asked for a fresh authentication (ForceAuthn), but the municipal IdP answered with an earlier "
           "one (SAML Core §3.4.1).",
           "The IdP must honour ForceAuthn (ADFS: no integrated Windows authentication for this relying party).",
           AUTHN_FAILED),
    Reason("upstream_proxy_restricted", "upstream", 403,
           "The municipal IdP's assertion limits which services it may be passed on to (ProxyRestriction, SAML "
           "Core §2.5.1.6), and this service provider is not among them.",
           "The municipality's IdP must name the service provider in its ProxyRestriction for the broker, or "
           "leave the restriction out.", REQUEST_DENIED),
    Reason("upstream_authn_context_unknown", "upstream", 403,
           "The IdP returned an AuthnContextClassRef that the municipality's authn_contexts do not map to a LoA.",
           "Map the IdP's ClassRef in the municipality file (saml.authn_contexts).", AUTHN_FAILED),
    Reason("upstream_attribute_missing", "upstream", 403,
           "The municipality's IdP did not send an attribute the broker requires.",
           "Configure the IdP to release the named attribute (the detail names it).", AUTHN_FAILED),
    Reason("upstream_identity_invalid", "upstream", 403,
           "The identity attribute from the IdP is not a valid HSA-id, personnummer or opaque id.",
           "Check the identity rule and what the IdP sends.", AUTHN_FAILED),
    Reason("logout_partial", "upstream", 200,
           "Single logout did not reach every service (or the municipality's IdP).",
           "The user should close the browser; the detail names who did not confirm."),
    # --- session ---
    Reason("session_store_unavailable", "session", 503,
           "The session store (Redis) cannot be reached, or refuses the command (out of memory under "
           "noeviction, a read-only replica).",
           "Check Redis (`broker readiness` says which); the broker recovers by itself when it takes writes again."),
    Reason("session_configuration_changed", "session", 401,
           "The SSO session rests on a municipal IdP's answer judged by a configuration no longer in force (the "
           "municipality's IdP, its identity or attribute rules or its authentication contexts changed); its IdP "
           "is asked again.",
           "Nothing to do: the user's next request goes back to the municipality's IdP once, which usually "
           "answers from its own session."),
    # --- dependencies ---
    Reason("audit_unavailable", "dependency", 503,
           "The audit trail cannot be written, so the broker refuses logins (fail closed).",
           "Check the audit directory: disk space, permissions, I/O errors."),
    Reason("internal_error", "dependency", 500,
           "An unexpected error; the audit trail and the operator log hold the reference ID.",
           "Look up the reference ID in the operator log."),
    # --- plain HTTP ---
    Reason("request_too_large", "request", 413,
           "The request body exceeds the size limit.",
           "Real SAML messages are small; this looks like an attack or a broken client."),
    Reason("request_malformed", "request", 400,
           "The request's URL is not valid (bytes that are neither UTF-8 nor percent-encoded).",
           "Real SAML messages are percent-encoded ASCII; this looks like a broken client or an attack."),
    Reason("request_media_type_unsupported", "request", 415,
           "A POST to a form endpoint carried a body that is not an HTML form (Content-Type other than "
           "application/x-www-form-urlencoded or multipart/form-data; SAML Bindings §3.5.4), or one in a content "
           "coding (Content-Encoding gzip, ...).",
           "The sender is no browser posting the HTTP-POST binding's form: check the client, or look for an "
           "attack; Accept-Post names the types taken, Accept-Encoding the coding (identity)."),
    Reason("cross_site_request", "request", 403,
           "A form of the broker was submitted from another site's page (Origin / Sec-Fetch-Site).",
           "The user should start again from the service; repeated, it is an attack (login CSRF)."),
    Reason("csrf_token_invalid", "request", 403,
           "A form of the broker arrived without the token the broker's own page gave this browser (missing or "
           "wrong form token, or no form-token cookie).",
           "The user should start again from the service; repeated from one address, it is an attack (login "
           "CSRF). A browser that refuses the broker's cookies cannot choose a municipality."),
    Reason("request_uri_too_long", "request", 414,
           "The request's query string exceeds the size limit (8 KiB).",
           "Real HTTP-Redirect messages are a few kilobytes; an SP with larger requests should use HTTP-POST."),
    Reason("request_headers_too_large", "request", 431,
           "The request's headers (apart from the proxy's certificate headers) exceed the size limit (32 KiB).",
           "Usually a browser with too many cookies for the domain; the user can clear them."),
    Reason("rate_limited", "request", 429,
           "Too many failed logins from this client address or with this certificate in the current window; "
           "refused until the window ends (Retry-After).",
           "Look up the address or certificate in the audit trail (`broker audit query --reason rate_limited`); "
           "the limits are in broker.yaml rate_limit.", AUTHN_FAILED),
    Reason("page_not_found", "request", 404,
           "No such page.",
           "Check the link."),
    Reason("method_not_allowed", "request", 405,
           "The HTTP method is not allowed for this endpoint.",
           "SAML endpoints accept GET (HTTP-Redirect) and POST (HTTP-POST) only."),
    Reason("range_not_satisfiable", "request", 416,
           "The request's Range header asks for bytes the file does not have (RFC 9110 §15.5.17).",
           "A client or cache asked for a part of a static file that does not exist; nothing to do."),
    Reason("request_invalid", "request", 400,
           "The HTTP request could not be served as sent (another client error; the page has the HTTP status "
           "the server found, e.g. 411 for a body without a length).",
           "A broken client or an attack; the detail of the operator log names the status."),
    # --- operations (the audit trail and operators' tools; never a user's page) ---
    Reason("config_invalid", "operations", 500,
           "A configuration reload was refused because the configuration does not validate; the previous "
           "configuration keeps serving.",
           "Run `broker config check DIR`, fix what it names, and reload again."),
)

REASONS: Final = MappingProxyType({r.code: r for r in _ROWS})

if len(REASONS) != len(_ROWS):  # pragma: no cover - guards the table itself
    raise RuntimeError("duplicate reason code in broker.reasons")


def reason(code: str) -> Reason:
    """The row for ``code``; an unknown code is a programming error."""
    try:
        return REASONS[code]
    except KeyError:
        raise KeyError(f"unknown reason code {code!r}: add it to broker.reasons") from None


def markdown_table() -> str:
    """The table as Markdown, the form embedded in the README."""
    lines = [
        "| code | family | HTTP | SAML status | meaning | what to do |",
        "|---|---|---|---|---|---|",
    ]
    for r in _ROWS:
        status = r.saml_status.rsplit(":", 1)[-1] if r.saml_status else ""
        lines.append(
            f"| `{r.code}` | {r.family} | {r.http_status} | {status} | {r.description} | {r.hint} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover
    sys.stdout.write(markdown_table())
