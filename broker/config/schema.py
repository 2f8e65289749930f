"""The shape of the configuration directory, as frozen dataclasses.

Layout (paths inside files are relative to the configuration directory)::

    broker.yaml                      BrokerConfig
    municipalities/<id>.yaml         MunicipalityConfig (one per municipality)
    service-providers/<id>.yaml      ServiceProviderConfig (one per SP)

These classes are the single description of the files: the loader parses
with them, error messages name their keys, and ``broker config schema``
derives the JSON Schema from them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from broker.config.values import (
    CaCertificates,
    CertificateFile,
    CrlFile,
    Duration,
    Ed25519KeyFile,
    Ed25519PublicKeyFile,
    EntityId,
    HttpsUrl,
    HttpUrl,
    IpNetwork,
    Oid,
    OrganizationNumber,
    PrivateKeyFile,
    Regex,
    SecretFile,
    WritableDirectory,
)
from broker.config.yamlsource import KeyPath
from broker.saml.attributes import ATTRIBUTES
from broker.saml.metadata import SpMetadataFile

LoaName = Literal["loa2", "loa3", "loa4", "sambi-loa2", "sambi-loa3"]
NameIdFormatName = Literal["persistent", "transient"]


def doc(text: str, **extra: object) -> dict[str, object]:
    return {"doc": text, **extra}


@dataclass(frozen=True)
class LocalizedText:
    """Text in Swedish and English."""

    sv: str = field(metadata=doc("Swedish"))
    en: str = field(metadata=doc("English"))

    def get(self, lang: str) -> str:
        return self.sv if lang == "sv" else self.en


# --- broker.yaml -------------------------------------------------------------------


@dataclass(frozen=True)
class SigningConfig:
    """The key and certificate the broker signs assertions and metadata with."""

    key: PrivateKeyFile = field(metadata=doc("PEM private key (RSA >= 2048 bits or ECDSA P-256+)"))
    certificate: CertificateFile = field(metadata=doc("certificate of that key, published in metadata"))

    def config_check(self) -> Iterator[tuple[KeyPath, str]]:
        pub = self.certificate.certificate.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        mine = self.key.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if pub != mine:
            yield ("certificate",), "the certificate does not belong to the configured key"


@dataclass(frozen=True)
class OrganizationConfig:
    """Who runs the broker; published in metadata."""

    name: LocalizedText = field(metadata=doc("organisation name"))
    url: HttpsUrl = field(metadata=doc("organisation web site"))
    technical_contact: str = field(metadata=doc("e-mail address of technical support"))

    def config_check(self) -> Iterator[tuple[KeyPath, str]]:
        if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", self.technical_contact):
            yield ("technical_contact",), f"expected an e-mail address, got {self.technical_contact!r}"


@dataclass(frozen=True)
class IdpConfig:
    """The broker as SAML IdP toward the regional service providers."""

    entity_id: EntityId = field(metadata=doc("the broker's entityID"))
    base_url: HttpsUrl = field(metadata=doc("public base URL; the endpoints are below it (/saml/idp/sso ...)",
                                            examples=("https://idp.region.example.se",)))
    signing: SigningConfig = field(metadata=doc("assertion and metadata signing key"))
    nameid_key: SecretFile = field(
        metadata=doc("secret for persistent pseudonymous NameIDs; changing it changes every user's NameID")
    )
    organization: OrganizationConfig = field(metadata=doc("published in metadata"))
    assertion_lifetime: Duration = field(default=Duration(300), metadata=doc("assertion validity window"))
    clock_skew: Duration = field(
        default=Duration(60), metadata=doc("tolerated clock difference for IssueInstant and NotBefore")
    )
    relay_state_max_bytes: int = field(
        default=80, metadata=doc("longest RelayState accepted (SAML Bindings §3.4.3 says 80)", min=1)
    )
    request_max_age: Duration = field(
        default=Duration(600), metadata=doc("oldest IssueInstant accepted on a request (plus clock_skew)")
    )
    max_message_bytes: int = field(
        default=65536, metadata=doc("largest SAML message accepted, after inflation", min=1024)
    )
    metadata_validity: Duration = field(
        default=Duration(7 * 86400), metadata=doc("validUntil of the published metadata, from now")
    )
    sign_metadata: bool = field(default=True, metadata=doc("sign the published metadata"))


@dataclass(frozen=True)
class SessionConfig:
    """SSO sessions (kept server-side; the browser holds only an opaque random cookie)."""

    idle_timeout: Duration = field(default=Duration(1800), metadata=doc("session ends after this idle time"))
    absolute_timeout: Duration = field(
        default=Duration(8 * 3600), metadata=doc("session ends this long after login, whatever the activity")
    )
    pending_login_timeout: Duration = field(
        default=Duration(600), metadata=doc("how long an unfinished login (its AuthnRequest) is kept")
    )
    cookie_name: str = field(default="broker_session", metadata=doc("name of the session cookie"))

    def config_check(self) -> Iterator[tuple[KeyPath, str]]:
        if self.idle_timeout > self.absolute_timeout:
            yield ("idle_timeout",), "must not exceed absolute_timeout"
        if not re.fullmatch(r"[A-Za-z0-9_\-]+", self.cookie_name):
            yield ("cookie_name",), "letters, digits, '_' and '-' only"


@dataclass(frozen=True)
class RedisConfig:
    """The shared Redis (sessions, pending logins). Without it, only the demo runs (embedded store)."""

    url: str = field(metadata=doc("redis://, rediss:// or unix:// URL", examples=("redis://127.0.0.1:6379/0",)))
    key_prefix: str = field(default="broker:", metadata=doc("prefix of every key the broker writes"))
    socket_timeout: Duration = field(
        default=Duration(0.5), metadata=doc("per-command timeout; a slow Redis yields a 503, not a hang")
    )

    def config_check(self) -> Iterator[tuple[KeyPath, str]]:
        if not re.match(r"^(redis|rediss|unix)://", self.url):
            yield ("url",), f"expected a redis://, rediss:// or unix:// URL, got {self.url!r}"


@dataclass(frozen=True)
class ProxyConfig:
    """Client certificates forwarded by a TLS-terminating reverse proxy."""

    trusted_networks: tuple[IpNetwork, ...] = field(
        default=(),
        metadata=doc("addresses of the proxies allowed to send the certificate header; none by default"),
    )
    header: str = field(default="X-SSL-Client-Cert", metadata=doc("name of the certificate header"))
    format: Literal["nginx_escaped_pem"] = field(
        default="nginx_escaped_pem", metadata=doc("nginx_escaped_pem: nginx's $ssl_client_escaped_cert")
    )
    max_bytes: int = field(default=16384, metadata=doc("largest header value accepted", min=512))

    def config_check(self) -> Iterator[tuple[KeyPath, str]]:
        if not re.fullmatch(r"[A-Za-z0-9\-]+", self.header):
            yield ("header",), "expected an HTTP header name (letters, digits, '-')"


@dataclass(frozen=True)
class ClientCertificateConfig:
    """Where client certificates come from."""

    proxy: ProxyConfig = field(default_factory=ProxyConfig, metadata=doc("reverse-proxy header"))


@dataclass(frozen=True)
class SyslogForward:
    """A copy of every audit event to syslog (RFC 5424 with structured data; RFC 6587 framing over TCP)."""

    address: str = field(metadata=doc("host:port of the syslog receiver", examples=("127.0.0.1:514",)))
    transport: Literal["udp", "tcp"] = field(default="udp", metadata=doc("udp or tcp"))
    facility: Literal["auth", "authpriv", "local0", "local1", "local2", "local3", "local4", "local5", "local6",
                      "local7"] = field(default="authpriv", metadata=doc("syslog facility"))
    app_name: str = field(default="broker", metadata=doc("APP-NAME in each message"))

    def config_check(self) -> Iterator[tuple[KeyPath, str]]:
        host, _, port = self.address.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            yield ("address",), f"expected host:port, got {self.address!r}"


@dataclass(frozen=True)
class ForwardConfig:
    """Copies of the audit events for a SIEM. Forwarding never blocks logins; failures are counted."""

    syslog: SyslogForward | None = field(default=None, metadata=doc("send to syslog"))
    stdout: bool = field(default=False, metadata=doc("write each event as a JSON line to standard output"))
    queue_size: int = field(default=10000, metadata=doc("events held while a receiver is slow", min=100))


@dataclass(frozen=True)
class AuditConfig:
    """The audit trail: hash-chained JSON lines with signed checkpoints, on disk before the user sees the outcome."""

    directory: WritableDirectory = field(metadata=doc("where the chains are written (one per broker process)"))
    signing_key: Ed25519KeyFile = field(metadata=doc("Ed25519 key that signs checkpoints (`broker audit keygen`)"))
    pseudonym_key: SecretFile = field(
        metadata=doc("secret for the HMAC pseudonym that replaces personnummer in the audit trail")
    )
    verification_keys: tuple[Ed25519PublicKeyFile, ...] = field(
        default=(), metadata=doc("public halves of earlier signing keys, to verify older checkpoints"))
    client_address: Literal["clear", "truncated", "pseudonymised"] = field(
        default="clear", metadata=doc("how the client IP address is recorded (truncated: /24 or /48)")
    )
    checkpoint_interval: Duration = field(
        default=Duration(60), metadata=doc("longest time records stay unsealed by a signed checkpoint"))
    rotate_bytes: int = field(default=64 * 1024 * 1024, metadata=doc("start a new file past this size", min=4096))
    rotate_interval: Duration = field(default=Duration(86400), metadata=doc("start a new file after this time"))
    forward: ForwardConfig = field(default_factory=ForwardConfig, metadata=doc("copies for a SIEM"))


@dataclass(frozen=True)
class BrokerConfig:
    """broker.yaml: global settings."""

    idp: IdpConfig = field(metadata=doc("the SAML IdP toward service providers"))
    audit: AuditConfig = field(metadata=doc("the audit trail"))
    session: SessionConfig = field(default_factory=SessionConfig, metadata=doc("SSO sessions"))
    redis: RedisConfig | None = field(default=None, metadata=doc("the shared Redis; REDIS_URL overrides url"))
    client_certificate: ClientCertificateConfig = field(
        default_factory=ClientCertificateConfig, metadata=doc("where client certificates come from")
    )

    def config_check(self) -> Iterator[tuple[KeyPath, str]]:
        if self.idp.nameid_key.value == self.audit.pseudonym_key.value:
            yield ("audit", "pseudonym_key"), "must differ from idp.nameid_key"


# --- municipalities/<id>.yaml -------------------------------------------------------


@dataclass(frozen=True)
class PolicyMapping:
    """A certificate policy OID accepted for login and the assurance level it stands for."""

    oid: Oid = field(metadata=doc("certificate policy OID (verify against the CA's published policy)"))
    loa: LoaName = field(metadata=doc("assurance level this policy gives"))


IdentitySource = Literal["subject_serial_number", "san_upn", "san_email"]


@dataclass(frozen=True)
class IdentityRule:
    """How the user's identity is read from the certificate."""

    type: Literal["hsa_id", "personnummer", "opaque"] = field(
        metadata=doc("hsa_id (pattern-checked), personnummer (date and check digit) or opaque")
    )
    source: IdentitySource = field(
        default="subject_serial_number",
        metadata=doc("subject serialNumber (2.5.4.5), or a subjectAltName UPN / e-mail"),
    )
    pattern: Regex | None = field(
        default=None, metadata=doc("full-match pattern; default for hsa_id: ^SE[0-9]{10}-[A-Za-z0-9]+$")
    )

    def config_check(self) -> Iterator[tuple[KeyPath, str]]:
        if self.type == "personnummer" and self.pattern is not None:
            yield ("pattern",), "personnummer is checked by date and check digit; no pattern applies"
        if self.type == "opaque" and self.pattern is None:
            yield ("pattern",), "an opaque identity needs a pattern, so nothing unexpected passes"


@dataclass(frozen=True)
class OcspConfig:
    """OCSP (RFC 6960) for this municipality's certificates."""

    url: HttpUrl | None = field(
        default=None, metadata=doc("responder for the users' certificates instead of their AIA URL "
                                   "(CA certificates always use their own AIA)"))
    nonce: bool = field(default=False, metadata=doc("send a nonce and require it back (some responders "
                                                    "reject nonces or answer from a pre-signed cache)"))
    cert_id_hash: Literal["sha1", "sha256"] = field(
        default="sha1", metadata=doc("hash naming the certificate in requests (an identifier, not a signature; "
                                     "most responders only know sha1)"))
    connect_timeout: Duration = field(default=Duration(2), metadata=doc("TCP connect timeout"))
    timeout: Duration = field(default=Duration(3), metadata=doc("total time for one request and answer"))
    max_response_bytes: int = field(default=65536, metadata=doc("largest response accepted", min=1024))
    max_age_without_next_update: Duration = field(
        default=Duration(300), metadata=doc("how long an answer without nextUpdate counts as fresh"))


@dataclass(frozen=True)
class CrlConfig:
    """Certificate revocation lists (RFC 5280 §5) for this municipality's certificates."""

    files: tuple[CrlFile, ...] = field(default=(), metadata=doc("CRL files, PEM or DER (re-read when changed)"))
    urls: tuple[HttpUrl, ...] = field(default=(), metadata=doc("CRLs fetched over HTTP(S)"))
    distribution_points: bool = field(
        default=True, metadata=doc("also fetch the CRLs named in the certificates' CRL distribution points"))
    connect_timeout: Duration = field(default=Duration(3), metadata=doc("TCP connect timeout"))
    timeout: Duration = field(default=Duration(30), metadata=doc("total time for one CRL download"))
    max_bytes: int = field(default=64 * 1024 * 1024, metadata=doc("largest CRL accepted", min=1024))
    refresh_margin: Duration = field(
        default=Duration(3600), metadata=doc("refresh in the background when nextUpdate is this close "
                                             "(or half the CRL's validity has passed, if sooner)"))


@dataclass(frozen=True)
class RevocationConfig:
    """Revocation checking for this municipality's certificates."""

    mode: Literal["check", "none"] = field(
        metadata=doc("check: every certificate below the trust anchor must have a definite status; "
                     "none: no revocation checking (explicit, warned about)")
    )
    methods: tuple[Literal["ocsp", "crl"], ...] = field(
        default=("ocsp", "crl"), metadata=doc("sources tried in order until one gives a definite answer"))
    failure: Literal["fail_closed", "soft_fail"] = field(
        default="fail_closed", metadata=doc("when no source answers: refuse the login (fail_closed) or let it "
                                            "through and audit it as revocation_soft_fail (soft_fail)"))
    clock_skew: Duration = field(default=Duration(300), metadata=doc("tolerance on thisUpdate/nextUpdate"))
    max_cache_time: Duration = field(
        default=Duration(3600), metadata=doc("longest time a status is cached, even if nextUpdate is later"))
    ocsp: OcspConfig = field(default_factory=OcspConfig, metadata=doc("OCSP settings"))
    crl: CrlConfig = field(default_factory=CrlConfig, metadata=doc("CRL settings"))

    def config_check(self) -> Iterator[tuple[KeyPath, str]]:
        if self.mode == "none":
            if self.crl.files or self.crl.urls:
                yield ("crl",), "CRL sources are configured but mode is none; set mode: check"
            return
        if not self.methods:
            yield ("methods",), "at least one method (ocsp, crl) is needed"
        if len(set(self.methods)) != len(self.methods):
            yield ("methods",), "a method is listed twice"
        if "crl" in self.methods and not (self.crl.files or self.crl.urls or self.crl.distribution_points):
            yield ("crl",), "crl is a method but no CRL source is configured (files, urls, distribution_points)"
        if "crl" not in self.methods and (self.crl.files or self.crl.urls):
            yield ("crl",), "CRL sources are configured but crl is not in methods"


@dataclass(frozen=True)
class CertificateLogin:
    """Certificate login: trust, profile and identity rule."""

    trust_anchors: tuple[CaCertificates, ...] = field(
        metadata=doc("root CA certificate files", min_items=1)
    )
    policies: tuple[PolicyMapping, ...] = field(
        metadata=doc("accepted certificate policy OIDs and their LoA", min_items=1)
    )
    identity: IdentityRule = field(metadata=doc("how the identity is read"))
    revocation: RevocationConfig = field(metadata=doc("revocation checking"))
    intermediates: tuple[CaCertificates, ...] = field(default=(), metadata=doc("issuing/intermediate CAs"))
    max_chain_depth: int = field(default=4, metadata=doc("maximum intermediates in a path", min=0))

    def anchors(self) -> tuple[x509.Certificate, ...]:
        return tuple(c for f in self.trust_anchors for c in f.certificates)

    def intermediate_certificates(self) -> tuple[x509.Certificate, ...]:
        return tuple(c for f in self.intermediates for c in f.certificates)

    def config_check(self) -> Iterator[tuple[KeyPath, str]]:
        seen: dict[str, int] = {}
        for i, p in enumerate(self.policies):
            if p.oid in seen:
                yield ("policies", i, "oid"), f"duplicate policy OID (also policies[{seen[p.oid]}])"
            seen[p.oid] = i


@dataclass(frozen=True)
class MunicipalityConfig:
    """municipalities/<id>.yaml: one municipality; the file name is its id."""

    name: LocalizedText = field(metadata=doc("the municipality's name"))
    organization_number: OrganizationNumber = field(metadata=doc("organisationsnummer, 10 digits"))
    status: Literal["onboarding", "active", "suspended"] = field(
        metadata=doc("onboarding: only SPs with accept_onboarding; suspended: all logins refused")
    )
    login: Literal["certificate"] = field(metadata=doc("login method"))
    certificate: CertificateLogin = field(metadata=doc("certificate login settings"))
    support: LocalizedText | None = field(
        default=None, metadata=doc("where users get help (shown on error pages), e.g. the card administrator")
    )


# --- service-providers/<id>.yaml ----------------------------------------------------


@dataclass(frozen=True)
class ServiceProviderConfig:
    """service-providers/<id>.yaml: one regional SAML service provider."""

    entity_id: EntityId = field(metadata=doc("the SP's entityID; its metadata must describe it"))
    name: LocalizedText = field(metadata=doc("shown to users"))
    metadata: SpMetadataFile = field(metadata=doc("the SP's SAML metadata file"))
    municipalities: tuple[str, ...] = field(
        metadata=doc("ids of the municipalities whose users may log in to this SP")
    )
    release: tuple[str, ...] = field(
        default=(), metadata=doc("canonical attribute names released to this SP", examples=(list(ATTRIBUTES),))
    )
    nameid_formats: tuple[NameIdFormatName, ...] = field(
        default=("persistent", "transient"),
        metadata=doc("NameID formats offered; the first is used when the request names none"),
    )
    accept_onboarding: bool = field(
        default=False, metadata=doc("let users of onboarding municipalities in (test and acceptance SPs)")
    )
    require_signed_requests: bool = field(
        default=False,
        metadata=doc("require signed AuthnRequests even if the metadata's AuthnRequestsSigned is false"),
    )
    sign_response: bool = field(
        default=False, metadata=doc("also sign the Response element (the Assertion is always signed)")
    )
    minimum_loa: LoaName | None = field(default=None, metadata=doc("lowest assurance level this SP accepts"))

    def config_check(self) -> Iterator[tuple[KeyPath, str]]:
        for i, name in enumerate(self.release):
            if name not in ATTRIBUTES:
                yield ("release", i), f"unknown attribute {name!r} (known: {', '.join(ATTRIBUTES)})"
        if len(set(self.release)) != len(self.release):
            yield ("release",), "an attribute is listed twice"
        if not self.nameid_formats:
            yield ("nameid_formats",), "at least one NameID format is needed"
