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
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from broker.config.redis_schema import HOST_PORT, RedisConfig
from broker.config.values import (
    CaCertificates,
    CertificateFile,
    CrlFile,
    Duration,
    Ed25519KeyFile,
    Ed25519PublicKeyFile,
    EntityId,
    HttpsQueryUrl,
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
from broker.pki.algorithms import weak_key_reason
from broker.pki.proxy_headers import FORMAT_DOCS, ProxyFormat
from broker.saml.attributes import ATTRIBUTES, BY_URI
from broker.saml.metadata import MetadataFile

# Upper bounds of the integers (`max`): past them a value is a slip of the keyboard, not a setting, and the code
# that uses it fails late (a message limit of 10^30 made zlib raise OverflowError on every HTTP-Redirect request)
MAX_RELAY_STATE_BYTES = 8192            # a RelayState travels in a URL: gunicorn's request line holds 8190 bytes
MAX_MESSAGE_BYTES = 16 * 1024 * 1024    # a SAML message, inflated; real ones are a few kilobytes
MAX_HEADER_BYTES = 1024 * 1024          # one certificate header (a chain of a few certificates is ~10 KB)
MAX_DOWNLOAD_BYTES = 1024 * 1024 * 1024  # a CRL, an OCSP response or metadata fetched over the network
MAX_COUNT = 1_000_000                   # failures allowed in a window, events queued

LoaName = Literal["loa2", "loa3", "loa4", "sambi-loa2", "sambi-loa3"]
NameIdFormatName = Literal["persistent", "transient"]


def doc(text: str, **extra: object) -> dict[str, object]:
    return {"doc": text, **extra}


def _spki(public: object) -> bytes:
    return public.public_bytes(  # type: ignore[attr-defined,no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


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
    backend: Literal["cryptography", "libxmlsec1", "xmlsec1"] = field(
        default="cryptography",
        metadata=doc("cryptography: sign in process, libxmlsec1's template filled with libxml2's exclusive "
                     "canonical form and OpenSSL's SHA-256 and RSA/ECDSA; libxmlsec1: sign in process through "
                     "python-xmlsec (the same signatures, 0.3-0.5 ms more CPU each); xmlsec1: start "
                     "pysaml2's default xmlsec1 program for every signature, as a plain pysaml2 IdP does (only "
                     "to measure against; about ten times slower)"),
    )

    also_published: tuple[CertificateFile, ...] = field(
        default=(), metadata=doc("more signing certificates published in the metadata, for a key rollover: the next "
                                 "key's before the switch (peers fetch it in time), the previous one's for a while "
                                 "after; nothing is signed with them. RSA >= 2048 bits or ECDSA P-256+, as the "
                                 "signing key"))

    def config_check(self) -> Iterator[tuple[KeyPath, str]]:
        if _spki(self.key.key.public_key()) != _spki(self.certificate.certificate.public_key()):
            yield ("certificate",), "the certificate does not belong to the configured key"
        yield from _published_twice(self.certificate, self.also_published)

    def published_certificates(self) -> tuple[x509.Certificate, ...]:
        """The signing certificate first, then the others to publish (SAML Metadata §2.4.1.1: each its own
        KeyDescriptor; peers accept a signature by any of them)."""
        return (self.certificate.certificate, *(c.certificate for c in self.also_published))


def _published_twice(signing: CertificateFile, also: tuple[CertificateFile, ...]) -> Iterator[tuple[KeyPath, str]]:
    """A key in ``also`` that is ``signing``'s, or listed before in ``also``, or too weak to sign with: peers
    accept a signature by any key the metadata publishes (SAML Metadata §2.4.1.1), and the next key is to become
    the signing key, which must be RSA >= 2048 bits or ECDSA P-256+ (:class:`PrivateKeyFile`)."""
    seen = {_spki(signing.certificate.public_key())}
    for i, extra in enumerate(also):
        if weak := weak_key_reason(extra.certificate):
            yield ("also_published", i), f"a signing key too weak to publish: {weak}"
            continue
        key = _spki(extra.certificate.public_key())
        if key in seen:
            yield ("also_published", i), "this key is published already (the signing key, or listed twice)"
        seen.add(key)


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
        default=80, metadata=doc("longest RelayState accepted (SAML Bindings §3.4.3 says 80)", min=1,
                                 max=MAX_RELAY_STATE_BYTES)
    )
    request_max_age: Duration = field(
        default=Duration(600), metadata=doc("oldest IssueInstant accepted on a request (plus clock_skew)")
    )
    max_message_bytes: int = field(
        default=65536, metadata=doc("largest SAML message accepted, after inflation", min=1024,
                                    max=MAX_MESSAGE_BYTES)
    )
    metadata_validity: Duration = field(
        default=Duration(7 * 86400), metadata=doc(
            "validUntil of the published metadata (IdP and SP), from the start of the current minute, so that every "
            "instance publishes the same document")
    )
    sign_metadata: bool = field(default=True, metadata=doc("sign the published metadata"))


@dataclass(frozen=True)
class SessionConfig:
    """SSO sessions (kept server-side; the browser holds only an opaque random cookie)."""

    idle_timeout: Duration = field(default=Duration(1800), metadata=doc("session ends after this idle time"))
    absolute_timeout: Duration = field(
        default=Duration(8 * 3600),
        metadata=doc("session ends this long after login (a municipal IdP's: after its AuthnInstant), whatever the "
                     "activity; sooner when what the login rests on "
                     "ends sooner (the certificate's validity, the municipal IdP's SessionNotOnOrAfter)")
    )
    pending_login_timeout: Duration = field(
        default=Duration(600), metadata=doc("how long an unfinished login (its AuthnRequest) is kept")
    )
    cookie_name: str = field(default="__Host-broker_session", metadata=doc(
        "name of the session cookie; keep the __Host- prefix, which stops sibling hosts from planting one"))

    def config_check(self) -> Iterator[tuple[KeyPath, str]]:
        if self.idle_timeout > self.absolute_timeout:
            yield ("idle_timeout",), "must not exceed absolute_timeout"
        if not re.fullmatch(r"[A-Za-z0-9_\-]+", self.cookie_name):
            yield ("cookie_name",), "letters, digits, '_' and '-' only"


@dataclass(frozen=True)
class ProxyConfig:
    """Client certificates forwarded by a TLS-terminating reverse proxy."""

    trusted_networks: tuple[IpNetwork, ...] = field(
        default=(),
        metadata=doc("addresses of the proxies allowed to send the certificate header; none by default. 0.0.0.0/0 "
                     "and ::/0 are refused; `broker config check` warns about a network wider than /8 (IPv4) or "
                     "/32 (IPv6)"),
    )
    header: str = field(default="X-SSL-Client-Cert", metadata=doc(
        "name of the certificate header (envoy_xfcc: X-Forwarded-Client-Cert; rfc9440: Client-Cert)"))
    format: ProxyFormat = field(
        default="nginx_escaped_pem",
        metadata=doc("how the proxy writes the certificate: "
                     + "; ".join(f"`{name}`: {text}" for name, text in FORMAT_DOCS.items())),
    )
    chain_header: str | None = field(default=None, metadata=doc(
        "name of a second header with the intermediates the client sent, in the same format (rfc9440: "
        "Client-Cert-Chain); only path-building hints, trust still comes from the municipality's anchors; "
        "not for envoy_xfcc, whose Chain travels in its one header"))
    max_bytes: int = field(default=16384, metadata=doc(
        "largest value accepted in each certificate header (envoy_xfcc: the whole header, chain included)",
        min=512, max=MAX_HEADER_BYTES))
    max_chain_certificates: int = field(default=8, metadata=doc(
        "most intermediates accepted from the chain header (or Envoy's Chain)", min=1))

    def config_check(self) -> Iterator[tuple[KeyPath, str]]:
        for i, trusted in enumerate(self.trusted_networks):
            if trusted.network.prefixlen == 0:
                # every address: any client could send a certificate header of its choosing and log in with it
                yield ("trusted_networks", i), (f"{trusted.network} is every address: any client could send the "
                                                "certificate header; list the proxies' own addresses")
        names = [("header", self.header)]
        if self.chain_header is not None:
            names.append(("chain_header", self.chain_header))
        for key, name in names:
            if not re.fullmatch(r"[A-Za-z0-9\-]+", name):
                yield (key,), "expected an HTTP header name (letters, digits, '-')"
        if self.chain_header is not None and self.chain_header.lower() == self.header.lower():
            yield ("chain_header",), "must differ from header"
        if self.format == "envoy_xfcc":
            if self.header.lower() != "x-forwarded-client-cert":
                yield ("header",), "Envoy writes the certificate to X-Forwarded-Client-Cert; set header to that name"
            if self.chain_header is not None:
                yield ("chain_header",), ("Envoy sends the chain inside X-Forwarded-Client-Cert (Chain=...; "
                                          "set_current_client_cert_details chain: true); remove chain_header")
        if self.format == "rfc9440":
            if self.header.lower() != "client-cert":
                yield ("header",), "RFC 9440 names the field Client-Cert; set header: Client-Cert"
            if self.chain_header is not None and self.chain_header.lower() != "client-cert-chain":
                yield ("chain_header",), "RFC 9440 names the field Client-Cert-Chain; set chain_header to that name"
        if self.max_chain_certificates > 32:
            yield ("max_chain_certificates",), "expected at most 32 (real chains have two or three)"


# narrower than every address, still wider than a proxy's network: `broker config check` warns
WIDE_PREFIX = {4: 8, 6: 32}


def wide_trusted_networks(proxy: ProxyConfig) -> list[str]:
    """The trusted networks wider than /8 (IPv4) or /32 (IPv6): whoever sends from them can present any
    certificate through the header. Allowed (a proxy pool in a large network), but worth a warning, as revocation
    ``mode: none`` is."""
    return [str(n.network) for n in proxy.trusted_networks if n.network.prefixlen < WIDE_PREFIX[n.network.version]]


@dataclass(frozen=True)
class ClientCertificateConfig:
    """Where client certificates come from."""

    proxy: ProxyConfig = field(default_factory=ProxyConfig, metadata=doc("reverse-proxy header"))


@dataclass(frozen=True)
class RateLimitConfig:
    """Failed logins counted per client address and per certificate in Redis (shared by every instance); at the
    limit, further logins from that address or with that certificate are refused (HTTP 429) until the window
    ends. Only failures count: rejected certificates and failed logins at a municipal IdP."""

    enabled: bool = field(default=True, metadata=doc("count failed logins and refuse at the limits"))
    failures_per_address: int = field(
        default=20, metadata=doc("failed logins allowed per client address (resolved through "
                                 "client_certificate.proxy.trusted_networks; IPv6 per /64) in one window; an "
                                 "office behind one NAT address shares it", min=1, max=MAX_COUNT))
    failures_per_certificate: int = field(
        default=10, metadata=doc("failed logins allowed per client certificate (SHA-256 fingerprint) in one "
                                 "window", min=1, max=MAX_COUNT))
    window: Duration = field(default=Duration(300), metadata=doc("length of the counting window (fixed windows)"))

    def config_check(self) -> Iterator[tuple[KeyPath, str]]:
        if self.window.seconds < 1:
            yield ("window",), "must be at least 1s"


_SYSLOG_APP_NAME = re.compile(r"[\x21-\x7e]{1,48}")


@dataclass(frozen=True)
class SyslogForward:
    """A copy of every audit event to syslog (RFC 5424 with structured data; RFC 6587 framing over TCP)."""

    address: str = field(metadata=doc("host:port of the syslog receiver (an IPv6 address in brackets: [::1]:514)",
                                      examples=("127.0.0.1:514",)))
    transport: Literal["udp", "tcp"] = field(default="udp", metadata=doc("udp or tcp"))
    facility: Literal["auth", "authpriv", "local0", "local1", "local2", "local3", "local4", "local5", "local6",
                      "local7"] = field(default="authpriv", metadata=doc("syslog facility"))
    app_name: str = field(default="broker", metadata=doc("APP-NAME in each message: 1 to 48 printable US-ASCII "
                                                         "characters, no space (RFC 5424)"))
    max_message_bytes: int = field(default=2048, metadata=doc(
        "over UDP, the longest message sent (one datagram; RFC 5426 §3.2: receivers must take 480 octets over IPv4, "
        "1180 over IPv6, and should take 2048): a longer one goes without the record's data and detail, marked "
        "truncated=", min=480, max=65507))

    def config_check(self) -> Iterator[tuple[KeyPath, str]]:
        # RFC 5424 §6.2.5: one with a space shifted every header field after it (its second word read as PROCID)
        if not _SYSLOG_APP_NAME.fullmatch(self.app_name):
            yield ("app_name",), ("RFC 5424 APP-NAME: 1 to 48 printable US-ASCII characters, no space; got "
                                  f"{self.app_name[:100]!r}")
        yield from self._address_issues()

    def _address_issues(self) -> Iterator[tuple[KeyPath, str]]:
        # the form of redis_schema.HostPort (RFC 3986 §3.2.2: an IPv6 literal in brackets), which the forwarder
        # reads: "::1" split at its last colon was host ":" and port 1
        found = HOST_PORT.match(self.address)
        if found is not None and 0 < int(found["port"]) < 65536:
            return
        if found is None and self.address.count(":") >= 2 and not self.address.startswith("["):
            yield ("address",), (f"expected host:port, got {self.address!r}, an IPv6 address whose port (if any) "
                                 "cannot be told from it: write the address in brackets and the port after them, "
                                 "e.g. [::1]:514")
        else:
            yield ("address",), f"expected host:port (port 1-65535; IPv6 as [::1]:514), got {self.address!r}"


@dataclass(frozen=True)
class ForwardConfig:
    """Copies of the audit events for a SIEM. Forwarding never blocks logins; failures are counted."""

    syslog: SyslogForward | None = field(default=None, metadata=doc("send to syslog"))
    stdout: bool = field(default=False, metadata=doc("write each event as a JSON line to standard output"))
    queue_size: int = field(default=10000, metadata=doc("events held while a receiver is slow", min=100,
                                                                                  max=MAX_COUNT))


@dataclass(frozen=True)
class AuditConfig:
    """The audit trail: hash-chained JSON lines with signed checkpoints, on disk before the user sees the outcome."""

    directory: WritableDirectory = field(metadata=doc("where the chains are written (one per broker process)"))
    signing_key: Ed25519KeyFile = field(metadata=doc("Ed25519 key that signs checkpoints (`broker audit keygen`)"))
    pseudonym_key: SecretFile = field(
        metadata=doc("secret for the HMAC pseudonym that replaces personnummer in the audit trail (and names "
                     "the session store's index of municipal IdPs' NameIDs); records keep the pseudonym they were "
                     "written with: keep an earlier key for `broker audit query --key-file` (docs/audit.md, "
                     "Privacy)")
    )
    verification_keys: tuple[Ed25519PublicKeyFile, ...] = field(
        default=(), metadata=doc("public halves of earlier signing keys, to verify older checkpoints"))
    client_address: Literal["clear", "truncated", "pseudonymised"] = field(
        default="clear", metadata=doc("how the client IP address is recorded (truncated: /24 or /48)")
    )
    checkpoint_interval: Duration = field(
        default=Duration(60), metadata=doc("longest time records stay unsealed by a signed checkpoint"))
    rotate_bytes: int = field(default=64 * 1024 * 1024, metadata=doc("start a new file past this size", min=4096,
                                                                                      max=2**40))
    rotate_interval: Duration = field(default=Duration(86400), metadata=doc("start a new file after this time"))
    forward: ForwardConfig = field(default_factory=ForwardConfig, metadata=doc("copies for a SIEM"))


@dataclass(frozen=True)
class KeyPair:
    """A private key and its certificate."""

    key: PrivateKeyFile = field(metadata=doc("PEM private key"))
    certificate: CertificateFile = field(metadata=doc("its certificate"))

    def config_check(self) -> Iterator[tuple[KeyPath, str]]:
        if _spki(self.key.key.public_key()) != _spki(self.certificate.certificate.public_key()):
            yield ("certificate",), "the certificate does not belong to the configured key"


@dataclass(frozen=True)
class SpSigningConfig(KeyPair):
    """The key the broker signs its AuthnRequests and LogoutRequests to municipal IdPs with, and the signing
    certificates its SP metadata publishes (SAML Metadata §2.4.1.1)."""

    also_published: tuple[CertificateFile, ...] = field(
        default=(), metadata=doc("more signing certificates published in the SP metadata, for a key rollover: the "
                                 "next key's before the switch (municipal IdPs that verify the broker's requests "
                                 "fetch it in time), the previous one's for a while after; nothing is signed with "
                                 "them. RSA >= 2048 bits or ECDSA P-256+, as the signing key"))

    def config_check(self) -> Iterator[tuple[KeyPath, str]]:
        yield from super().config_check()
        yield from _published_twice(self.certificate, self.also_published)

    def published_certificates(self) -> tuple[x509.Certificate, ...]:
        """The signing certificate first, then the others to publish (each its own KeyDescriptor)."""
        return (self.certificate.certificate, *(c.certificate for c in self.also_published))


@dataclass(frozen=True)
class SpConfig:
    """The broker as SAML SP toward municipal IdPs (needed when a municipality has login: saml)."""

    entity_id: EntityId = field(metadata=doc("the broker's SP entityID"))
    signing: SpSigningConfig = field(metadata=doc("signs AuthnRequests and LogoutRequests"))
    decryption: tuple[KeyPair, ...] = field(
        metadata=doc("keys for EncryptedAssertions (RSA >= 2048 bits: RSA-OAEP is the key transport): the first "
                     "is published in metadata; later ones are still accepted (key rollover)", min_items=1))
    max_message_bytes: int = field(default=262144, metadata=doc("largest Response accepted", min=4096,
                                                                                   max=MAX_MESSAGE_BYTES))
    login_timeout: Duration = field(default=Duration(600), metadata=doc("how long an upstream request may take"))

    def config_check(self) -> Iterator[tuple[KeyPath, str]]:
        for i, pair in enumerate(self.decryption):
            # the key transports accepted (broker.saml.xmlenc.ALLOWED_KEY_TRANSPORT) and offered in the SP
            # metadata are RSA-OAEP (XML Encryption 1.1 §5.5.2): an EC key was published with them, and no IdP
            # could encrypt to it (nor the broker decrypt)
            if not isinstance(pair.key.key, rsa.RSAPrivateKey):
                yield ("decryption", i, "key"), ("an RSA key is required: IdPs encrypt the assertion's key to it "
                                                  "with RSA-OAEP, the only key transport the broker accepts")


@dataclass(frozen=True)
class ReadinessConfig:
    """What `broker readiness` checks beyond the configuration itself."""

    environment: Literal["production", "test"] = field(
        default="production", metadata=doc("production: test hierarchies (TEST, PP, SYSTEMTEST CAs) are failures, "
                                           "a sample_key (a card's private key) a warning"))
    endpoints: tuple[HttpsUrl, ...] = field(
        default=(), metadata=doc("public URLs where municipal users log in: the CA names each advertises are "
                                 "checked live"))
    expiry_warning: Duration = field(
        default=Duration(30 * 86400), metadata=doc(
            "warn about certificates and metadata expiring sooner (a CRL is judged by its nextUpdate alone: fresh or "
            "stale)"))
    timeout: Duration = field(default=Duration(10), metadata=doc(
        "per network check; caps the municipalities' own CRL and OCSP timeouts"))
    ca_list_warn_bytes: int = field(
        default=12288, metadata=doc("warn when an advertised CA list is larger (some servers cut lists near 16 KB)",
                                    min=1024, max=65535))


@dataclass(frozen=True)
class AdminConfig:
    """The operators' endpoints /metrics, /admin/status and /admin/health: answered only with this bearer token."""

    token_file: SecretFile = field(metadata=doc("bearer token that /metrics, /admin/status and /admin/health "
                                                "require: 32+ random characters of a bearer token (RFC 6750: "
                                                "letters, digits, -._~+/), e.g. `openssl rand -hex 32`"))

    def config_check(self) -> Iterator[tuple[KeyPath, str]]:
        # sent as "Authorization: Bearer <token>", so a token68 (RFC 6750 §2.1); raw bytes or words never match
        if not re.fullmatch(rb"[A-Za-z0-9\-._~+/]+=*", self.token_file.value):
            yield ("token_file",), (f"the token in {self.token_file.path} cannot be sent as a bearer token (RFC 6750 "
                                    "§2.1: letters, digits, '-._~+/', then '='); write it as text, e.g. "
                                    "`openssl rand -hex 32`")


_BIND = re.compile(r"^(?:(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+):(?P<port>[0-9]{1,5})|unix:(?P<path>/.+))\Z")


@dataclass(frozen=True)
class ServerConfig:
    """`broker serve` (gunicorn): where it listens and how many processes answer. The command line's --bind,
    --workers and --threads override these. Read when the server starts: a reload (SIGHUP) keeps the running
    listener and worker count (gunicorn's TTIN/TTOU signals add or remove a worker)."""

    bind: str = field(
        default="127.0.0.1:8080",
        metadata=doc("address:port to listen on, plain HTTP behind the TLS-terminating proxy ([::1]:8080 for IPv6, "
                     "unix:/path for a socket)", examples=("0.0.0.0:8080",)))
    workers: int = field(
        default=2, metadata=doc("worker processes, each a copy of the preloaded app (about one per core)", min=1,
                               max=1024))
    threads: int = field(
        default=4, metadata=doc("threads per worker; 1 runs gunicorn's sync worker", min=1, max=1024))
    request_timeout: Duration = field(
        default=Duration(20),
        metadata=doc("time a client has to send a whole request (head and body) once a worker takes it up; a "
                     "slower one is disconnected, so slow clients cannot hold every worker thread"))

    def config_check(self) -> Iterator[tuple[KeyPath, str]]:
        if not 1 <= self.request_timeout.seconds <= 300:
            yield ("request_timeout",), f"expected 1s to 5m, got {self.request_timeout.seconds:g}s"
        found = _BIND.match(self.bind)
        if found is None or (found["port"] is not None and not 0 < int(found["port"]) < 65536):
            yield ("bind",), f"expected host:port (port 1-65535) or unix:/path, got {self.bind!r}"


@dataclass(frozen=True)
class BrokerConfig:
    """broker.yaml: global settings."""

    idp: IdpConfig = field(metadata=doc("the SAML IdP toward service providers"))
    audit: AuditConfig = field(metadata=doc("the audit trail"))
    session: SessionConfig = field(default_factory=SessionConfig, metadata=doc("SSO sessions"))
    redis: RedisConfig | None = field(
        default=None, metadata=doc("the shared Redis (docs/redis.md); REDIS_URL overrides url, and is refused "
                                   "together with sentinel or cluster"))
    client_certificate: ClientCertificateConfig = field(
        default_factory=ClientCertificateConfig, metadata=doc("where client certificates come from")
    )
    rate_limit: RateLimitConfig = field(default_factory=RateLimitConfig,
                                        metadata=doc("limits on failed logins per address and certificate"))
    sp: SpConfig | None = field(default=None, metadata=doc("the broker as SP toward municipal IdPs"))
    readiness: ReadinessConfig = field(default_factory=ReadinessConfig, metadata=doc("`broker readiness`"))
    admin: AdminConfig | None = field(
        default=None,
        metadata=doc("operators' endpoints (/metrics, /admin/status, /admin/health); absent: they answer 404"))
    server: ServerConfig = field(
        default_factory=ServerConfig, metadata=doc("`broker serve`: listen address, workers, threads"))

    def config_check(self) -> Iterator[tuple[KeyPath, str]]:
        if self.sp is not None and self.sp.entity_id == self.idp.entity_id:
            yield ("sp", "entity_id"), "must differ from idp.entity_id"
        if self.idp.nameid_key.value == self.audit.pseudonym_key.value:
            yield ("audit", "pseudonym_key"), "must differ from idp.nameid_key"
        if self.server.bind.startswith("unix:") and self.client_certificate.proxy.trusted_networks:
            # on a unix socket the peer has no address, so no proxy could ever be recognised as trusted
            yield ("server", "bind"), ("a unix socket gives the broker no peer address to match against "
                                       "client_certificate.proxy.trusted_networks; bind to host:port")


# --- municipalities/<id>.yaml -------------------------------------------------------


@dataclass(frozen=True)
class PolicyMapping:
    """A certificate policy OID accepted for login and the assurance level it stands for."""

    oid: Oid = field(metadata=doc("certificate policy OID (verify against the CA's published policy)"))
    loa: LoaName = field(metadata=doc("assurance level this policy gives"))

    def config_check(self) -> Iterator[tuple[KeyPath, str]]:
        # RFC 5280 §4.2.1.4: anyPolicy is no policy of its own ("any policy"), so it proves no assurance level
        if self.oid == "2.5.29.32.0":
            yield ("oid",), "anyPolicy (2.5.29.32.0) stands for no assurance level: name the CA's own policy OID"


IdentitySource = Literal["subject_serial_number", "san_upn", "san_email"]
OrganizationSource = Literal["none", "hsa_id", "organization_identifier"]


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
        default=None,
        metadata=doc("full-match pattern; default for hsa_id: ^SE[0-9]{10}-[A-Za-z0-9]{1,18}$ (at most 31 characters)"),
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
    http_method: Literal["auto", "get", "post"] = field(
        default="auto", metadata=doc(
            "how requests are sent (RFC 5019 §5, RFC 6960 Appendix A.1): auto: GET for a request without a nonce "
            "whose URL is at most 255 bytes, POST otherwise; get: GET whenever the URL is at most 255 bytes; post: "
            "always POST, nothing else tried. Under auto and get, a method the responder refuses (HTTP 405, 501; a "
            "GET also 400, 404, an OCSP malformedRequest or an answer that is no OCSP response) is tried once more "
            "by the other, and this process asks that responder that way from then on"))
    connect_timeout: Duration = field(default=Duration(2), metadata=doc("TCP connect timeout"))
    timeout: Duration = field(default=Duration(3), metadata=doc(
        "total time for one certificate's OCSP answer: the responders of its AIA are asked in turn, the next when "
        "one gives no usable answer, all within it"))
    max_response_bytes: int = field(default=65536, metadata=doc("largest response accepted", min=1024,
                                                                                      max=MAX_DOWNLOAD_BYTES))
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
    max_bytes: int = field(default=64 * 1024 * 1024, metadata=doc("largest CRL accepted", min=1024,
                                                                                       max=MAX_DOWNLOAD_BYTES))
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
    max_chain_depth: int = field(default=4, metadata=doc("maximum intermediates in a path", min=0,
                                                                                   max=16))
    organization_from: OrganizationSource = field(default="none", metadata=doc(
        "where a certificate names the municipality's organisation number, for CAs that issue to several "
        "municipalities (Efos, SITHS e-id): hsa_id (the HSA-id's SE<organization_number>- prefix) or "
        "organization_identifier (the subject's organizationIdentifier, 2.5.4.97); a certificate that names "
        "another organisation is refused. none: the configured CAs issue to this municipality alone"))

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
        if self.organization_from == "hsa_id" and self.identity.type != "hsa_id":
            yield ("organization_from",), "hsa_id needs identity.type hsa_id (the HSA-id names the organisation)"


@dataclass(frozen=True)
class MunicipalityReadiness:
    """Material `broker readiness` uses to prove a municipality's chain end to end."""

    sample_certificate: CertificateFile | None = field(
        default=None, metadata=doc("a real user certificate of the municipality (public part only): validated "
                                   "with revocation, its identity mapped"))
    sample_key: PrivateKeyFile | None = field(
        default=None, metadata=doc("its private key, only for `broker readiness --login` (a synthetic login "
                                   "through the live endpoints); keep it out of production configuration"))

    def config_check(self) -> Iterator[tuple[KeyPath, str]]:
        if self.sample_key is not None and self.sample_certificate is None:
            yield ("sample_key",), "a sample_key needs its sample_certificate"
        if self.sample_key is not None and self.sample_certificate is not None and \
                _spki(self.sample_key.key.public_key()) != _spki(self.sample_certificate.certificate.public_key()):
            yield ("sample_key",), "the key does not belong to sample_certificate"


@dataclass(frozen=True)
class MunicipalityConfig:
    """municipalities/<id>.yaml: one municipality; the file name is its id."""

    name: LocalizedText = field(metadata=doc("the municipality's name"))
    organization_number: OrganizationNumber = field(metadata=doc("organisationsnummer, 10 digits"))
    status: Literal["onboarding", "active", "suspended"] = field(
        metadata=doc("onboarding: only SPs with accept_onboarding; suspended: all logins refused")
    )
    login: Literal["certificate", "saml"] = field(
        metadata=doc("login method: certificate (municipal certificates) or saml (the municipality's own IdP)"))
    certificate: CertificateLogin | None = field(
        default=None, metadata=doc("certificate login settings (login: certificate)"))
    saml: UpstreamIdpConfig | None = field(default=None, metadata=doc("the municipality's IdP (login: saml)"))
    support: LocalizedText | None = field(
        default=None, metadata=doc("where users get help (shown on error pages), e.g. the card administrator")
    )
    readiness: MunicipalityReadiness = field(
        default_factory=MunicipalityReadiness, metadata=doc("material for `broker readiness`"))

    def config_check(self) -> Iterator[tuple[KeyPath, str]]:
        # reported at `login:`, the choice that needs the section (the missing section has no line of its own)
        if self.login == "certificate" and self.certificate is None:
            yield ("login",), "certificate needs a certificate section"
        if self.login == "saml" and self.saml is None:
            yield ("login",), "saml needs a saml section"
        if self.login == "certificate" and self.saml is not None:
            yield ("saml",), "a saml section is only used with login: saml"
        if self.login == "saml" and self.certificate is not None:
            yield ("certificate",), "a certificate section is only used with login: certificate"


# --- municipal IdPs (login: saml) -----------------------------------------------------------


@dataclass(frozen=True)
class UpstreamMetadataConfig:
    """Where the municipal IdP's metadata comes from: a local file, or a URL whose signature must verify."""

    file: MetadataFile | None = field(default=None, metadata=doc("local metadata file (trusted as configured)"))
    url: HttpsQueryUrl | None = field(default=None, metadata=doc(
        "metadata URL (https; a query such as Entra ID's ?appid=... is kept, a fragment is refused); used only if "
        "its signature verifies with signing_certificates"))
    signing_certificates: tuple[CertificateFile, ...] = field(
        default=(), metadata=doc("certificates that may sign the metadata at url (required with url; RSA >= 2048 "
                                 "bits or ECDSA P-256+)"))
    refresh_interval: Duration = field(default=Duration(6 * 3600), metadata=doc(
        "how often url is fetched (sooner when the metadata's cacheDuration is shorter, though not under 5m, and "
        "when three quarters of the time to its validUntil have passed)"))
    timeout: Duration = field(default=Duration(10), metadata=doc("total time for one fetch"))
    max_bytes: int = field(default=5 * 1024 * 1024, metadata=doc("largest metadata accepted", min=1024,
                                                                                        max=MAX_DOWNLOAD_BYTES))

    def config_check(self) -> Iterator[tuple[KeyPath, str]]:
        if (self.file is None) == (self.url is None):
            yield (), "give exactly one of file or url"
        if self.url is not None and not self.signing_certificates:
            yield ("signing_certificates",), "metadata fetched from a URL must be signed: name the signer's certificate"
        if self.file is not None and self.url is None and self.signing_certificates:
            yield ("signing_certificates",), "signing_certificates apply to url only (a local file is trusted as is)"
        # these certificates vouch for every signing key in the fetched metadata: one whose key is too weak lets
        # whoever breaks it publish keys of their own, so the rule of the keys in metadata holds here too
        # (broker.saml.metadata: RSA and ECDSA keys are checked, other types no verifier here uses)
        for i, signer in enumerate(self.signing_certificates):
            if weak := _weak_signer(signer.certificate):
                yield ("signing_certificates", i), f"{signer.certificate.subject.rfc4514_string()[:200]}: {weak}"


def _weak_signer(cert: x509.Certificate) -> str | None:
    """Why ``cert``'s key is too weak to trust a signature from (:func:`broker.pki.algorithms.weak_key_reason`,
    for the RSA and ECDSA keys signatures are verified with), or None."""
    try:
        checked = isinstance(cert.public_key(), rsa.RSAPublicKey | ec.EllipticCurvePublicKey)
    except (UnsupportedAlgorithm, ValueError):
        checked = True  # an unreadable key: weak_key_reason says so
    return weak_key_reason(cert) if checked else None



def _unknown_attribute(name: str) -> str:
    """Why ``name`` is no canonical attribute name, and which one the operator meant: the canonical name of a
    SAML attribute Name (its URI or a Sambi alias, which the configuration does not take) or of a name written
    in other letter cases, else the known names."""
    meant = BY_URI.get(name) or next((d for d in ATTRIBUTES.values() if d.name.lower() == name.lower()), None)
    if meant is not None:
        return f"unknown attribute {name!r}: write the canonical name {meant.name!r}"
    return f"unknown attribute {name!r} (known: {', '.join(ATTRIBUTES)})"

@dataclass(frozen=True)
class AttributeMapping:
    """An attribute name the IdP sends (an ADFS claim URI, a Sambi/Inera name ...) and the broker's name for it."""

    upstream: str = field(metadata=doc("the Name (or claim URI) the IdP sends"))
    canonical: str = field(metadata=doc("the broker's attribute name (see the attribute table)"))

    def config_check(self) -> Iterator[tuple[KeyPath, str]]:
        if self.canonical not in ATTRIBUTES:
            yield ("canonical",), _unknown_attribute(self.canonical)


@dataclass(frozen=True)
class AuthnContextMapping:
    """An AuthnContextClassRef the IdP uses and the assurance level it stands for."""

    upstream: str = field(metadata=doc("the IdP's AuthnContextClassRef URI"))
    loa: LoaName = field(metadata=doc("the assurance level it gives"))


@dataclass(frozen=True)
class UpstreamIdentity:
    """Which (canonical) attribute identifies the user, and how it is checked."""

    attribute: str = field(metadata=doc("canonical attribute name, e.g. employeeHsaId"))
    type: Literal["hsa_id", "personnummer", "opaque"] = field(metadata=doc("how the value is checked"))
    pattern: Regex | None = field(default=None, metadata=doc(
        "full-match pattern; default for hsa_id: the municipality's own HSA-ids, "
        "^SE<organization_number>-[A-Za-z0-9]{1,18}$ (at most 31 characters; set one to accept others, "
        "e.g. a joint HSA-id issuer); "
        "required for opaque; none for personnummer"))

    def config_check(self) -> Iterator[tuple[KeyPath, str]]:
        if self.attribute not in ATTRIBUTES:
            yield ("attribute",), _unknown_attribute(self.attribute)
        if self.type == "opaque" and self.pattern is None:
            yield ("pattern",), "an opaque identity needs a pattern, so nothing unexpected passes"
        if self.type == "personnummer" and self.pattern is not None:
            # never applied (and it could not tell municipalities sharing an IdP apart: the loader refuses that)
            yield ("pattern",), "personnummer is checked by date and check digit; no pattern applies"


@dataclass(frozen=True)
class UpstreamIdpConfig:
    """The municipality's own SAML IdP (often ADFS); the broker is its SP."""

    entity_id: EntityId = field(metadata=doc("the IdP's entityID"))
    metadata: UpstreamMetadataConfig = field(metadata=doc("where its metadata comes from"))
    identity: UpstreamIdentity = field(metadata=doc("which attribute identifies the user"))
    authn_contexts: tuple[AuthnContextMapping, ...] = field(
        metadata=doc("the IdP's AuthnContextClassRefs and their LoA (others are refused)", min_items=1))
    attributes: tuple[AttributeMapping, ...] = field(
        default=(), metadata=doc("attribute names beyond the standard URIs (which are always understood)"))
    required_attributes: tuple[str, ...] = field(
        default=(), metadata=doc("canonical attributes the IdP must send (besides the identity attribute)"))
    signed_element: Literal["assertion", "response", "both", "either"] = field(
        default="assertion", metadata=doc("which part of the Response must be signed by the IdP"))
    allow_unsolicited: bool = field(
        default=False, metadata=doc("accept IdP-initiated Responses (without InResponseTo)"))
    clock_skew: Duration = field(default=Duration(60), metadata=doc("tolerance on the assertion's times"))
    nameid_format: Literal["persistent", "transient", "unspecified"] = field(
        default="unspecified", metadata=doc("NameIDPolicy Format asked for (unspecified: the IdP decides)"))

    def config_check(self) -> Iterator[tuple[KeyPath, str]]:
        for i, name in enumerate(self.required_attributes):
            if name not in ATTRIBUTES:
                yield ("required_attributes", i), _unknown_attribute(name)
        # an attribute the IdP sends is read under one name (SAML Core §2.7.3.1: its Name): mapped a second time,
        # one of the two mappings would silently be ignored (broker.saml.upstream_mapping.canonical_attributes)
        mapped: dict[str, int] = {}
        for i, attribute in enumerate(self.attributes):
            if attribute.upstream in mapped:
                yield ("attributes", i, "upstream"), (f"mapped already (attributes[{mapped[attribute.upstream]}]): "
                                                      "an attribute the IdP sends has one name here")
            mapped.setdefault(attribute.upstream, i)
        seen: set[str] = set()
        for i, mapping in enumerate(self.authn_contexts):
            if mapping.upstream in seen:
                yield ("authn_contexts", i, "upstream"), "listed twice"
            seen.add(mapping.upstream)


# --- service-providers/<id>.yaml ----------------------------------------------------


@dataclass(frozen=True)
class ServiceProviderConfig:
    """service-providers/<id>.yaml: one regional SAML service provider."""

    entity_id: EntityId = field(metadata=doc("the SP's entityID; its metadata must describe it"))
    name: LocalizedText = field(metadata=doc("shown to users"))
    metadata: MetadataFile = field(metadata=doc("the SP's SAML metadata file"))
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
        metadata=doc("require signed AuthnRequests even if the metadata's AuthnRequestsSigned is false; while any "
                     "SP must sign, the broker's IdP metadata says WantAuthnRequestsSigned=\"true\" (one document "
                     "for all SPs)"),
    )
    sign_response: bool = field(
        default=False, metadata=doc("also sign the Response element (the Assertion is always signed)")
    )
    encrypt_assertions: bool = field(
        default=False,
        metadata=doc("encrypt the signed Assertion for the encryption key in the SP's metadata (SAML Core §6: "
                     "AES-GCM, the key by RSA-OAEP), so that the browser carries no readable personal data"),
    )
    minimum_loa: LoaName | None = field(default=None, metadata=doc("lowest assurance level this SP accepts"))

    def config_check(self) -> Iterator[tuple[KeyPath, str]]:
        for i, name in enumerate(self.release):
            if name not in ATTRIBUTES:
                yield ("release", i), _unknown_attribute(name)
        if len(set(self.release)) != len(self.release):
            yield ("release",), "an attribute is listed twice"
        for i, mid in enumerate(self.municipalities):
            if mid in self.municipalities[:i]:
                yield ("municipalities", i), f"municipality {mid!r} is listed twice"
        if not self.nameid_formats:
            yield ("nameid_formats",), "at least one NameID format is needed"
