"""The wired core objects of one app instance, and per-request helpers for the blueprints."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app, g, has_request_context, request
from werkzeug.exceptions import UnsupportedMediaType

from broker.audit.events import new_correlation_id
from broker.audit.trail import AuditTrail
from broker.config.loader import Settings
from broker.flow import ClientContext, LoginFlow
from broker.flow.logout import LogoutFlow
from broker.pki.validator import CertificateValidator
from broker.saml.bindings import form_fields
from broker.saml.idp_metadata import IdpMetadata
from broker.saml.sp_metadata import SpMetadataDocument
from broker.session.sessions import SessionManager
from broker.web.csrf import FormTokens


@dataclass(frozen=True)
class Services:
    settings: Settings
    flow: LoginFlow
    logout: LogoutFlow
    audit: AuditTrail
    sessions: SessionManager
    validator: CertificateValidator
    metadata: IdpMetadata
    cookie_name: str
    form_tokens: FormTokens
    sp_metadata: SpMetadataDocument | None = None


# "__Host-" (RFC 6265bis §4.1.3.2): only this host, over HTTPS, at path "/", can set them, so a page on a sibling
# host cannot plant its own binding (its login at a municipal IdP finished in the victim's browser) or choice
BINDING_COOKIE = "__Host-broker_binding"
MUNICIPALITY_COOKIE = "__Host-broker_municipality"
# the WSGI environ key under which a request's correlation ID is left for the access log (broker.access_log)
CORRELATION_ENVIRON = "broker.correlation_id"


def services() -> Services:
    """The services of this request: taken once per request, so a configuration reload that happens meanwhile
    does not mix two configurations in one answer."""
    if not has_request_context():
        current: Services = current_app.extensions["broker"]
        return current
    svc: Services | None = getattr(g, "broker_services", None)
    if svc is None:
        svc = current_app.extensions["broker"]
        g.broker_services = svc
    return svc


def correlation_id() -> str:
    cid = getattr(g, "correlation_id", None)
    if cid is None:
        cid = new_correlation_id()
        use_correlation_id(cid)
    return str(cid)


def use_correlation_id(cid: str) -> None:
    """Record this request under ``cid`` from now on; the access line names it too (:data:`CORRELATION_ENVIRON`)."""
    g.correlation_id = cid
    if has_request_context():
        request.environ[CORRELATION_ENVIRON] = cid


def continuing(login_id: str) -> None:
    """This request continues pending login ``login_id``: record under its correlation ID."""
    if getattr(g, "correlation_id", None) is None:
        found = services().flow.correlation_of(login_id)
        if found is not None:
            use_correlation_id(found)


def client_address() -> str | None:
    """The user's address, through the trusted proxies (None when a trusted proxy did not say)."""
    return services().flow.certificate_sources.client_address(request.remote_addr,
                                                              request.headers.get("X-Forwarded-For"))


def client_context() -> ClientContext:
    """Who is asking: address, presented certificate (audited if forged), session cookie."""
    svc = services()
    req = request._get_current_object()  # type: ignore[attr-defined]  # one proxy lookup, not one per field
    sources = svc.flow.certificate_sources
    header = req.headers.get(sources.header)
    chain = req.headers.get(sources.chain_header) if sources.chain_header else None
    cid = correlation_id()
    address = client_address()
    presented = svc.flow.client_certificate(cid, req.remote_addr, header, req.environ.get("SSL_CLIENT_CERT"), chain,
                                            client_address=address)
    hint = query_parameter("municipality")
    cookies = req.cookies
    binding = cookies.get(BINDING_COOKIE)
    return ClientContext(cid, address, presented, cookies.get(svc.cookie_name),
                         municipality_hint=hint[:200] if hint else None,
                         remembered_municipality=cookies.get(MUNICIPALITY_COOKIE),
                         browser_binding=binding if binding and len(binding) <= 128 else None)


def query_parameter(name: str) -> str | None:
    """The first value of the query parameter ``name``, or None.

    The query is parsed (``request.args``) only when it may hold ``name``: a key written as ``name``, or one
    with escapes that could decode to it. Parsing decodes every value, and at the SSO endpoint those are the
    AuthnRequest and its signature, which the binding reads on its own (broker.saml.bindings): about 60 µs of a
    login, for parameters (``municipality``, ``lang``) that are rarely there."""
    known: tuple[frozenset[bytes], bool] | None = getattr(g, "query_keys", None)
    if known is None:
        keys = frozenset(part.partition(b"=")[0] for part in request.query_string.split(b"&"))
        # whether a key has escapes, decided once per request (each ``bytes in bytes`` costs CPython a TypeError
        # formatted and caught: it tries the needle as an integer first)
        known = g.query_keys = (keys, any(k.find(b"%") >= 0 or k.find(b"+") >= 0 for k in keys))
    keys, escaped = known
    if name.encode("ascii") not in keys and not escaped:
        return None
    value: str | None = request.args.get(name)
    return value


# the bodies of an HTML form (HTML §4.10.21.7), which the SAML HTTP-POST binding's form is (Bindings §3.5.4)
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def require_form() -> None:
    """Raise 415 (RFC 9110 §15.5.16) for a POST whose body is no HTML form: another Content-Type (JSON, XML,
    text/plain), or a body without one. Read as a form, such a body was empty, and the user was told the service
    sent no SAML message; a POST without any body is left to the endpoint, which says what is missing. So is a
    body in a content coding (RFC 9110 §8.4.1: gzip, deflate ...), which nothing here decodes: read as it came, a
    compressed form was a SAML message that could not be decoded."""
    coding = request.headers.get("Content-Encoding", "").strip().lower()
    if coding not in ("", "identity"):
        raise UnsupportedMediaType(f"a POST body in content coding {coding[:40]!r}; the endpoint takes the form "
                                   "as it is (identity)")
    if request.mimetype in FORM_TYPES:
        return
    if not request.mimetype and not request.content_length and "Transfer-Encoding" not in request.headers:
        return
    raise UnsupportedMediaType(f"a POST body of type {request.mimetype or 'unnamed'!r}; the endpoint takes "
                               f"{' or '.join(FORM_TYPES)}")


def posted_form() -> dict[str, list[str]]:
    """The fields of a SAML HTTP-POST binding's form. A urlencoded body (what browsers send) is decoded strictly
    (:func:`broker.saml.bindings.form_fields`): werkzeug would re-escape an octet that is not UTF-8, so that
    ``RelayState=%E5`` and ``RelayState=%25E5`` arrived alike and the SP got back a value it never sent. Other
    bodies (multipart) as werkzeug reads them. Read the form through this alone: once ``request.form`` has read
    the body, nothing is left here. A body that is no form is refused (:func:`require_form`)."""
    require_form()
    if request.mimetype == "application/x-www-form-urlencoded":
        return form_fields(request.get_data())
    return request.form.to_dict(flat=False)
