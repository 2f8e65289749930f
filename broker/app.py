"""``create_app``: the one place that wires the broker together.

Keys, trust stores and SP metadata are loaded once (they are already parsed in
:class:`Settings`; here the signing and verification keys are bound); requests
only use the objects built here.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, fields, is_dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from flask import Flask, Response, g, request
from werkzeug.datastructures import ImmutableMultiDict
from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import Rule

from broker.audit.chain import ChainSettings, ChainWriter
from broker.audit.events import AuditEvent
from broker.audit.forward import Forwarder, StdoutForwarder, SyslogForwarder
from broker.audit.keys import AuditSigner
from broker.audit.query import last_event
from broker.audit.trail import AuditSink, AuditTrail
from broker.clock import Clock, SystemClock
from broker.config.loader import Settings, load_settings
from broker.config.summary import changes, summary
from broker.errors import AuditUnavailable, BrokerError, ConfigError, DependencyUnavailable, RequestRejected
from broker.flow import LoginFlow
from broker.flow.answers import Answers
from broker.flow.deps import FlowDeps
from broker.flow.logout import LogoutFlow
from broker.flow.upstream import UpstreamStep
from broker.metrics import Metrics
from broker.pki.revocation.crls import CrlStore
from broker.pki.revocation.engine import RevocationChecker
from broker.pki.revocation.http import HttpFetcher
from broker.pki.sources import CertificateSourceResolver
from broker.pki.validator import CertificateValidator
from broker.readiness.expiries import Expiry, expiries
from broker.saml.authnrequest import AuthnRequestParser
from broker.saml.idp_metadata import IdpMetadata
from broker.saml.logout import LogoutMessages, LogoutPeer
from broker.saml.nameid import NameIdIssuer
from broker.saml.outbound import MessageSender
from broker.saml.response import ResponseBuilder
from broker.saml.signing_backend import signer_for
from broker.saml.sp_metadata import SpMetadataDocument
from broker.saml.upstream_metadata import UpstreamMetadata
from broker.saml.xmldsig import XmlSigner
from broker.saml.xmlenc import Decrypter
from broker.session.activity import LoginActivity
from broker.session.rate_limit import FailureLimiter, RateLimitPolicy
from broker.session.redis_client import configured as redis_connector
from broker.session.sessions import SessionManager
from broker.session.store import KeyValueStore, MemoryStore, RedisStore
from broker.web import admin, idp, ops, sp
from broker.web.csrf import FormTokens
from broker.web.limits import (
    MAX_FORM_PARTS,
    ServerRefusal,
    buffer_streamed_body,
    certificate_header_room,
    check_request_size,
    header_field_size,
)
from broker.web.pages import error_page, security_headers
from broker.web.services import FORM_TYPES, Services, client_address, correlation_id

log = logging.getLogger("broker")

SSO_PATH = "/saml/idp/sso"
SLO_PATH = "/saml/idp/slo"
SP_ACS_PATH = "/saml/sp/acs"
SP_SLO_PATH = "/saml/sp/slo"


# GET endpoints with effects (a login, a pending login used up, a logout, an audited visit): no HEAD
_NO_HEAD = frozenset({"idp.sso", "idp.resume", "idp.slo", "sp.slo", "ops.diagnose", "ops.diagnose_below_saml",
                      "discovery.show"})

# The endpoints of a login or logout: a request refused there before its view runs (its size, its encoding, a
# form werkzeug cannot read) is audited under the page's reference, as every other refusal of a login is, so
# that the reference a user reads out to support leads to an event
_LOGIN_ENDPOINTS = frozenset({"idp.sso", "idp.resume", "idp.slo", "sp.acs", "sp.slo", "discovery.show",
                              "discovery.choose"})


def _idp_peer(metadata: UpstreamMetadata) -> Callable[[str], LogoutPeer | None]:
    """The municipal IdP ``entity_id`` as a logout peer, from its current verified metadata."""
    def peer(entity_id: str) -> LogoutPeer | None:
        idp = metadata.by_entity_id(entity_id)
        return LogoutPeer(idp.entity_id, idp.signing_certificates, idp.slo()) if idp is not None else None
    return peer


class MemoryStoreRefused(RuntimeError):
    """Raised when no Redis is configured outside the demo."""


def build_store(settings: Settings, redis_url: str | None, *, allow_memory: bool) -> KeyValueStore:
    """Redis from ``redis_url`` (REDIS_URL) or broker.yaml (one server, Sentinel or Cluster); the embedded
    store only when allowed. Raises :class:`RedisChoiceRefused` for REDIS_URL next to Sentinel or Cluster."""
    cfg = settings.broker.redis
    connector = redis_connector(cfg, redis_url)
    if connector is not None:
        return RedisStore(connector=connector, prefix=cfg.key_prefix if cfg else "broker:")
    if not allow_memory:
        raise MemoryStoreRefused(
            "no Redis configured: set redis in broker.yaml (url, sentinel or cluster) or REDIS_URL; the embedded "
            "session store serves only the single-process demo")
    return MemoryStore()


@dataclass(frozen=True)
class Runtime:
    """What a configuration reload keeps: the clock, the session store, the audit trail, the revocation
    checker (its caches stay warm) and the instance's name."""

    clock: Clock
    store: KeyValueStore
    audit: AuditTrail
    revocation: RevocationChecker
    instance: str
    metrics: Metrics
    started_with: Settings   # what the kept parts were built from (a reload's restart_needed compares with it)


def create_app(settings: Settings, *, clock: Clock | None = None, store: KeyValueStore | None = None,
               audit_sink: AuditSink | None = None, instance_id: str | None = None,
               allow_memory_store: bool = False, revocation: RevocationChecker | None = None) -> Flask:
    clock = clock or SystemClock()
    instance = instance_id or socket.gethostname()
    if store is None:
        store = build_store(settings, os.environ.get("REDIS_URL"), allow_memory=allow_memory_store)
    audit = build_audit_trail(settings, clock, instance, audit_sink)
    app = Flask("broker.web", static_folder="static", template_folder="templates",
                root_path=os.path.join(os.path.dirname(__file__), "web"))
    # Werkzeug answers a doubled slash with a 308 to an absolute URL it builds from the request's Host header (and,
    # behind the TLS proxy, with http:), to which a browser re-sends a POSTed SAML message: the broker builds
    # nothing on that header (broker.serving). Such a path is not found instead. (Its other redirect, to a route's
    # trailing slash, has no route to apply to: only "/" ends in one.)
    app.url_map.merge_slashes = False

    def current_expiries() -> list[Expiry]:
        services: Services = app.extensions["broker"]
        runtime: Runtime = app.extensions["broker_runtime"]
        return expiries(services.settings, services.flow.upstream.metadata if services.flow.upstream else None,
                        runtime.revocation.crls)

    metrics = Metrics(current_expiries, clock.now)
    audit.observe(metrics.observe_record)
    audit.observe_failures(metrics.observe_audit_failure)
    audit.observe(LoginActivity(store))
    if revocation is None:
        # one fetcher and one CRL store per process; the session store doubles as the shared revocation cache
        fetcher = HttpFetcher()
        revocation = RevocationChecker(clock, crls=CrlStore(clock, fetcher=fetcher, shared=store),
                                       fetcher=fetcher, shared=store, observe=metrics.observe_revocation)
    runtime = Runtime(clock, store, audit, revocation, instance, metrics, settings)
    app.extensions["broker_runtime"] = runtime
    _install(app, build_services(settings, runtime))
    app.register_blueprint(idp.bp)
    app.register_blueprint(sp.bp)
    app.register_blueprint(sp.discovery)
    app.register_blueprint(ops.bp)
    app.register_blueprint(admin.bp)

    @app.errorhandler(BrokerError)
    def broker_error(exc: BrokerError) -> Response:
        cid = correlation_id()
        if isinstance(exc, DependencyUnavailable):
            log.error("[%s] %s: %s", cid, exc.reason, exc.detail)
            if not isinstance(exc, AuditUnavailable):
                _try_audit(audit, AuditEvent("login_refused", "failure", cid, reason=exc.reason,
                                             detail=exc.detail, client_address=client_address()))
        else:
            try:
                audit.sync()
            except AuditUnavailable as failed:
                return error_page(failed, cid)
        return error_page(exc, cid)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        if status == 405 and (rule := _route_of(request.path)) is not None and admin.hidden(rule.endpoint):
            return http_error(NotFound())  # the operators' endpoints do not exist but for GET with the token
        code = exc.reason if isinstance(exc, ServerRefusal) else \
            {400: "request_malformed", 404: "page_not_found", 405: "method_not_allowed",
             413: "request_too_large", 415: "request_media_type_unsupported",
             416: "range_not_satisfiable"}.get(status)
        if code is None:  # another client error keeps its status; anything else is the server's
            code = "request_invalid" if 400 <= status < 500 else "internal_error"
        response = _refused_page(_PlainError(code, exc.description or ""))
        if code == "request_invalid" or isinstance(exc, ServerRefusal):
            response.status_code = status
        for name, value in exc.get_headers():
            # RFC 9110 §15.5.6: a 405 names the allowed methods; §15.5.17: a 416 the file's length
            if name.lower() in ("allow", "content-range"):
                response.headers[name] = value
        if status == 415:  # what a POST may carry (W3C LDP §7.1 Accept-Post; RFC 9110 §15.5.16, §12.5.3)
            response.headers["Accept-Post"] = ", ".join(FORM_TYPES)
            response.headers["Accept-Encoding"] = "identity"
        return response

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        cid = correlation_id()
        log.error("[%s] unexpected error\n%s", cid, "".join(traceback.format_exception(exc)))
        # the reference on the page must lead to an outcome in the audit trail too, beside what the request
        # recorded before it failed (made durable with it); the traceback stays in the log, under the same ID
        _try_audit(audit, AuditEvent("login_refused", "failure", cid, reason="internal_error",
                                     detail=f"unexpected {type(exc).__name__}; the log has the details under this "
                                            "reference", client_address=client_address()))
        return error_page(_PlainError("internal_error"), cid)

    @app.before_request
    def start_timer() -> Response | None:
        g.started = time.perf_counter()
        if request.method == "HEAD" and request.endpoint in _NO_HEAD and request.url_rule is not None:
            # Flask answers HEAD wherever GET is allowed, by running the GET view: here that would log in, use
            # up a pending login or log out for a link checker or a proxy (RFC 9110 §9.3.2: HEAD is safe)
            # every route of the path counts (RFC 9110 §15.5.6): /discovery's GET and its choice's POST are two
            allowed = sorted(_methods_of(request.path) - {"HEAD", "OPTIONS"})
            # no page (a HEAD response has no body) and no audit record (nothing was attempted), but the reason code
            # every refusal carries (README, Reason codes)
            return Response(status=405, headers={"Allow": ", ".join(allowed), "X-Broker-Reason": "method_not_allowed"})
        try:
            proxy = app.extensions["broker"].settings.broker.client_certificate.proxy
            check_request_size(request.query_string, request.headers.items(),
                               [name for name in (proxy.header, proxy.chain_header) if name],
                               certificate_header_room(proxy.max_bytes))
            buffer_streamed_body(request.environ, app.config["MAX_CONTENT_LENGTH"])
        except RequestRejected as refused:
            request.query_string = b""  # nothing below may read the refused query, nor the page repeat it
            return _refused_page(refused)
        try:
            request.query_string.decode("utf-8")
        except UnicodeDecodeError:  # werkzeug would fail reading request.args anywhere below
            # nothing below may read the raw query (its ?lang= neither); the page's language still follows the
            # browser's cookie and Accept-Language (broker.web.pages.language)
            request.args = ImmutableMultiDict()
            return _refused_page(RequestRejected("request_malformed", "the query string is not UTF-8"))
        return None

    def _refused_page(error: BrokerError) -> Response:
        """The error page for a request refused as such; audited at the login endpoints (``_LOGIN_ENDPOINTS``)."""
        cid = correlation_id()
        rule = request.url_rule or _route_of(request.path)  # none yet when the method is not the route's
        if rule is not None and rule.endpoint in _LOGIN_ENDPOINTS:
            # the route, not the path: a pending login's path names its id
            _try_audit(audit, AuditEvent("login_refused", "failure", cid, reason=error.reason,
                                         detail=f"{request.method} {rule.rule}: {error.detail}"[:300],
                                         client_address=client_address()))
        return error_page(error, cid)

    def _methods_of(path: str) -> set[str]:
        """The methods of every route at ``path`` (werkzeug's answer to OPTIONS, before Flask adds its own)."""
        return set(app.url_map.bind("broker.invalid").allowed_methods(path))

    def _route_of(path: str) -> Rule | None:
        """The route ``path`` names by another method than the request's (a 405: a municipal IdP sending its
        Response to the ACS by HTTP-Redirect, say), so that its refusal is audited as a login endpoint's."""
        adapter = app.url_map.bind("broker.invalid")
        for method in ("GET", "POST"):
            try:
                rule, _ = adapter.match(path, method=method, return_rule=True)
            except HTTPException:
                continue
            return rule
        return None

    @app.after_request
    def observe_latency(response: Response) -> Response:
        started = getattr(g, "started", None)
        if started is not None and request.endpoint and not request.endpoint.startswith(("static", "admin.")):
            metrics.observe_latency(request.endpoint, time.perf_counter() - started)
        return response

    @app.after_request
    def allow_without_head(response: Response) -> Response:
        """RFC 9110 §10.2.1: Allow lists the methods the resource supports. Flask names HEAD wherever GET is
        allowed, in its answer to OPTIONS and in a 405; the endpoints of ``_NO_HEAD`` refuse HEAD (start_timer)."""
        allow = response.headers.get("Allow")
        if allow is not None and "HEAD" in allow:
            rule = request.url_rule or _route_of(request.path)
            if rule is not None and rule.endpoint in _NO_HEAD:
                response.headers["Allow"] = ", ".join(m for m in (m.strip() for m in allow.split(",")) if m != "HEAD")
        return response

    app.after_request(security_headers)
    _record_configuration(app, settings, audit)
    atexit.register(audit.close)  # a clean shutdown seals the chain with a final checkpoint
    return app


def build_services(settings: Settings, runtime: Runtime) -> Services:
    """Everything that follows from a configuration: trust, SPs, municipal IdPs, keys, the login flows."""
    clock = runtime.clock
    broker = settings.broker
    idp_cfg = broker.idp
    base = idp_cfg.base_url
    sso_url, slo_url = base + SSO_PATH, base + SLO_PATH
    sessions = SessionManager(
        runtime.store, clock,
        idle_timeout=broker.session.idle_timeout.timedelta,
        absolute_timeout=broker.session.absolute_timeout.timedelta,
        pending_timeout=broker.session.pending_login_timeout.timedelta,
        # the pseudonym key the audit trail started with (kept on reload, as the trail keeps it): a NameID, personal
        # data, names no key in the store in clear or as a plain hash
        index_key=runtime.started_with.broker.audit.pseudonym_key.value,
    )
    signing = idp_cfg.signing
    signer = signer_for(signing)
    validator = CertificateValidator(settings.trust, clock, runtime.revocation)
    deps = FlowDeps(
        settings=settings,
        clock=clock,
        validator=validator,
        sessions=sessions,
        audit=runtime.audit,
        parser=AuthnRequestParser(settings, clock, sso_url),
        responses=ResponseBuilder(idp_cfg.entity_id, signer, clock,
                                  assertion_lifetime=idp_cfg.assertion_lifetime.timedelta,
                                  clock_skew=idp_cfg.clock_skew.timedelta),
        nameids=NameIdIssuer(idp_cfg.nameid_key.value),
        certificate_sources=CertificateSourceResolver(broker.client_certificate.proxy),
        limiter=FailureLimiter(runtime.store, clock, RateLimitPolicy(
            enabled=broker.rate_limit.enabled, failures_per_address=broker.rate_limit.failures_per_address,
            failures_per_certificate=broker.rate_limit.failures_per_certificate,
            window=broker.rate_limit.window.timedelta)),
    )
    sp_peers = {sp.entity_id: LogoutPeer(sp.entity_id, sp.metadata.signing_certificates, sp.metadata.slo())
                for sp in settings.service_providers.values()}
    toward_sps = LogoutMessages(
        entity_id=idp_cfg.entity_id, slo_url=slo_url, sender=MessageSender(signer, signing.key.key), clock=clock,
        max_bytes=idp_cfg.max_message_bytes, skew=idp_cfg.clock_skew.timedelta,
        max_age=idp_cfg.request_max_age.timedelta, peer=sp_peers.get, unknown_issuer_reason="sp_unknown",
        relay_state_max_bytes=idp_cfg.relay_state_max_bytes)
    sp_metadata = None
    upstream = None
    toward_idps = None
    if broker.sp is not None:
        sp_cfg = broker.sp
        sp_signer = XmlSigner(sp_cfg.signing.certificate.certificate, sp_cfg.signing.key.key)
        sp_sender = MessageSender(sp_signer, sp_cfg.signing.key.key)
        sp_metadata = SpMetadataDocument(sp_cfg, clock, sp_signer, acs_url=base + SP_ACS_PATH,
                                         slo_url=base + SP_SLO_PATH, validity=idp_cfg.metadata_validity.timedelta)
        idp_metadata = UpstreamMetadata(list(settings.municipalities.values()), clock, HttpFetcher())
        decrypter = Decrypter([pair.key.pem for pair in sp_cfg.decryption])
        upstream = UpstreamStep(
            deps, Answers(deps), metadata=idp_metadata, sender=sp_sender, decrypter=decrypter,
            sp_entity_id=sp_cfg.entity_id, acs_url=base + SP_ACS_PATH)
        toward_idps = LogoutMessages(
            entity_id=sp_cfg.entity_id, slo_url=base + SP_SLO_PATH, sender=sp_sender, clock=clock,
            max_bytes=sp_cfg.max_message_bytes, skew=idp_cfg.clock_skew.timedelta,
            max_age=idp_cfg.request_max_age.timedelta, peer=_idp_peer(idp_metadata),
            unknown_issuer_reason="logout_request_invalid", decrypter=decrypter)
    services = Services(
        settings=settings, flow=LoginFlow(deps, upstream), logout=LogoutFlow(deps, sp_side=toward_sps,
                                                                              idp_side=toward_idps),
        audit=runtime.audit, sessions=sessions, validator=validator,
        metadata=IdpMetadata(settings, clock, signer, sso_url=sso_url, slo_url=slo_url),
        cookie_name=broker.session.cookie_name,
        form_tokens=FormTokens.derived_from(idp_cfg.nameid_key.value),
        sp_metadata=sp_metadata,
    )
    # the metadata refresher starts last: a configuration that fails to build leaves no thread behind
    if upstream is not None:
        upstream.metadata.start()
    return services


def _install(app: Flask, services: Services) -> None:
    """Make ``services`` the ones new requests use (one reference swap: a request keeps what it started with)."""
    settings = services.settings
    # base64 of the largest message either side accepts, plus the other form fields
    largest = max(settings.broker.idp.max_message_bytes, settings.broker.sp.max_message_bytes
                  if settings.broker.sp else 0)
    app.config["MAX_CONTENT_LENGTH"] = 2 * largest + 16384
    # what form parsing may hold: one field as large as the whole body, and few fields (broker.web.limits)
    app.config["MAX_FORM_MEMORY_SIZE"] = app.config["MAX_CONTENT_LENGTH"]
    app.config["MAX_FORM_PARTS"] = MAX_FORM_PARTS
    app.extensions["broker"] = services


def reload_configuration(app: Flask, config_dir: Path | None = None, *,
                         server_kept: Callable[[Settings], bool] = lambda _settings: False) -> bool:
    """Load the configuration again, validate all of it, and swap it in; sessions in the store are untouched.

    An invalid configuration is refused: the running one keeps serving, the problems are logged and audited
    (``configuration_rejected``). Returns whether the new configuration is in use. ``server_kept``: whether the
    HTTP server running the app (``broker serve``, which knows its command line's overrides) keeps a ``server``
    section that differs from the loaded one; it is then logged and recorded as needing a restart like the
    sections :func:`restart_needed` finds.
    """
    runtime: Runtime = app.extensions["broker_runtime"]
    old: Services = app.extensions["broker"]
    directory = config_dir or old.settings.config_dir
    try:
        settings = load_settings(directory)
        services = build_services(settings, runtime)
    except ConfigError as exc:
        log.error("configuration reload refused, the previous configuration keeps serving:\n%s", exc)
        _try_audit(runtime.audit, AuditEvent(
            "configuration_rejected", "failure", "-", reason="config_invalid",
            detail="; ".join(str(i) for i in exc.issues[:5])[:1000],
            data=MappingProxyType({"issues": len(exc.issues), "directory": str(directory)})))
        return False
    except Exception as exc:
        # a fault the loader did not foresee must not take the serving configuration (or gunicorn's master,
        # which calls this on SIGHUP) down with it: refused like an invalid configuration
        log.exception("configuration reload failed unexpectedly, the previous configuration keeps serving")
        _try_audit(runtime.audit, AuditEvent(
            "configuration_rejected", "failure", "-", reason="config_invalid",
            detail=f"unexpected {type(exc).__name__} while loading (the log has the traceback)",
            data=MappingProxyType({"issues": 1, "directory": str(directory)})))
        return False
    _install(app, services)
    if old.flow.upstream is not None:
        old.flow.upstream.metadata.close()
    kept = restart_needed(runtime.started_with, settings) + (("server",) if server_kept(settings) else ())
    for section in kept:
        log.warning("broker.yaml's %s section changed; it takes effect when the broker restarts (a reload keeps the "
                    "running %s)", section, _KEPT_ON_RELOAD[section])
    _record_configuration(app, settings, runtime.audit, restart_needed=kept)
    log.info("configuration reloaded from %s", directory)
    return True


# what a reload keeps (Runtime, and broker serve's HTTP server): the sections that configure it apply when the
# process starts
_KEPT_ON_RELOAD = {"audit": "audit trail: its directory, signing key, pseudonym key, client address mode and copies",
                   "redis": "session store",
                   "server": "HTTP server: its listen address, workers, threads and request timeout",
                   "client_certificate.proxy": "HTTP server's header line limit (gunicorn's "
                                               "limit_request_field_size, sized for the max_bytes and header names it "
                                               "started with): a longer certificate header is refused as headers too "
                                               "large"}


def restart_needed(running: Settings, loaded: Settings) -> tuple[str, ...]:
    """The sections of broker.yaml that differ between the configuration the process started with (``running``:
    every reload since compares with it, not with the one before) and the ``loaded`` one and that a reload does
    not apply (``audit``, ``redis``, and ``client_certificate.proxy`` when its header needs more room than
    ``broker serve``'s HTTP server started with; ``server`` is :mod:`broker.serving`'s). The audit
    section's ``verification_keys`` only serve ``broker audit verify``: changing them needs nothing."""
    changed = []
    if _comparable(replace(running.broker.audit, verification_keys=())) != \
            _comparable(replace(loaded.broker.audit, verification_keys=())):
        changed.append("audit")
    if _comparable(running.broker.redis) != _comparable(loaded.broker.redis):
        changed.append("redis")
    # broker serve sizes gunicorn's header line limit from the proxy section at start (broker.serving): a header
    # that needs more room than that is refused by gunicorn before the app sees it (a smaller one is the app's to
    # refuse, which applies at once)
    if _header_room(loaded) > _header_room(running):
        changed.append("client_certificate.proxy")
    return tuple(changed)


def _header_room(settings: Settings) -> int:
    proxy = settings.broker.client_certificate.proxy
    return header_field_size(proxy.max_bytes, proxy.header, proxy.chain_header)


def _comparable(value: object) -> object:
    """``value`` (a configuration object) as plain values that compare equal across two loads of the same files:
    key objects compare by identity, so a private key stands for its public half."""
    if is_dataclass(value) and not isinstance(value, type):
        return tuple((f.name, _comparable(getattr(value, f.name))) for f in fields(value))
    if isinstance(value, tuple | list):
        return tuple(_comparable(v) for v in value)
    if isinstance(value, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
        return value.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return value


def build_audit_trail(settings: Settings, clock: Clock, instance: str, sink: AuditSink | None = None) -> AuditTrail:
    """The audit trail of this process: its hash chain in the audit directory, and the configured copies."""
    cfg = settings.broker.audit
    forwarders: list[Forwarder] = []
    if cfg.forward.syslog is not None:
        s = cfg.forward.syslog
        forwarders.append(SyslogForwarder(s.address, s.transport, s.facility, s.app_name, cfg.forward.queue_size,
                                          max_message_bytes=s.max_message_bytes))
    if cfg.forward.stdout:
        forwarders.append(StdoutForwarder(cfg.forward.queue_size))
    if sink is None:
        chain = ChainSettings(cfg.directory.path, instance, cfg.checkpoint_interval.timedelta, cfg.rotate_bytes,
                              cfg.rotate_interval.timedelta)
        checkpoint_copies = [f.submit for f in forwarders]  # checkpoints leave the host too (truncation)

        def forward_checkpoint(record: dict[str, object]) -> None:
            for submit in checkpoint_copies:
                submit(dict(record))

        sink = ChainWriter(chain, AuditSigner(cfg.signing_key.key), clock, on_checkpoint=forward_checkpoint)
    return AuditTrail(sink, clock, pseudonym_key=cfg.pseudonym_key.value, instance_id=instance,
                      client_address=cfg.client_address, forwarders=forwarders)


_RECORDED_CONFIGURATION = "broker_recorded_configuration"


def _record_configuration(app: Flask, settings: Settings, audit: AuditTrail,
                          restart_needed: tuple[str, ...] = ()) -> None:
    """`configuration_loaded`: what this process runs on, and what changed since the last recorded load (this
    process's own, kept in ``app``; at the start, the newest among the heads of the chains in the audit
    directory); ``restart_needed``: the changed sections a reload did not apply."""
    current = summary(settings)
    recorded: dict[str, Any] | None = app.extensions.get(_RECORDED_CONFIGURATION)
    if recorded is None:
        try:
            found = last_event(settings.broker.audit.directory.path, "configuration_loaded")
        except OSError:
            found = None
        recorded = (found or {}).get("data")
    changed = changes(recorded, current)
    try:
        audit.record(AuditEvent("configuration_loaded", "info", "-", data=MappingProxyType({
            "config_sha256": current["config_sha256"],
            "municipalities": tuple(f"{k}:{v}" for k, v in current["municipalities"].items()),
            "service_providers": tuple(current["service_providers"]),
            "files": current["files"],
            "added": tuple(changed["added"]), "removed": tuple(changed["removed"]),
            "modified": tuple(changed["modified"]),
            **({"restart_needed": restart_needed} if restart_needed else {}),
        })))
        audit.sync()
    except AuditUnavailable as exc:  # logins will fail closed with the same error; starting up is fine
        log.error("could not record configuration_loaded: %s", exc.detail)
        return
    # the next reload says what changed since this load (the chain's head holds only the start's)
    app.extensions[_RECORDED_CONFIGURATION] = current


class _PlainError(BrokerError):
    """Errors of plain HTTP (404, 405, 413, 415, 416 and other client errors) and the unexpected 500, for the error
    page."""


def _try_audit(audit: AuditTrail, event: AuditEvent) -> None:
    try:
        audit.record(event)
        audit.sync()
    except AuditUnavailable:
        log.error("audit unavailable while recording %s", event.event)
