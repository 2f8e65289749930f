"""Rendering flow results as pages: the auto-submitting POST form, error pages, messages."""

from __future__ import annotations

import re
import unicodedata
from typing import Any
from urllib.parse import urlencode, urlsplit

from flask import Response, current_app, g, make_response, render_template, request, url_for
from markupsafe import Markup, escape
from werkzeug.exceptions import HTTPException

from broker.errors import BrokerError, RateLimited
from broker.flow import Discovery, LoginFailed, PostToSp, Redirect
from broker.flow.results import LogoutDone
from broker.web import csrf
from broker.web.i18n import LANGUAGES, UI, explain, pick_language
from broker.web.services import query_parameter, services

LANG_COOKIE = "broker_lang"


def language() -> str:
    lang = getattr(g, "lang", None)
    if lang is None:
        asked = query_parameter("lang")
        if asked is None and request.method == "POST":
            try:
                asked = request.form.get("lang")
            except HTTPException:  # e.g. 413: the error page must still render
                asked = None
        lang = pick_language(asked, request.cookies.get(LANG_COOKIE), request.headers.get("Accept-Language"))
        g.lang = lang
    return str(lang)


def _other(lang: str) -> str:
    return "en" if lang == "sv" else "sv"


def _with_lang(url: str, lang: str) -> str:
    parts = urlsplit(url)
    query = "&".join(p for p in parts.query.split("&") if p and not p.startswith("lang="))
    query = (query + "&" if query else "") + urlencode({"lang": lang})
    return f"{parts.path}?{query}"


def _render(template: str, status: int, *, switch_url: str | None = None, **context: Any) -> Response:
    lang = language()
    other = _other(lang)
    if switch_url is None and request.method == "GET":  # "" means: no language link
        # A query-only reference ("?...&lang=xx", RFC 3986 §5.2.2) keeps the page's own path without repeating
        # it: request.path is percent-decoded, and "/%5Cevil.example" written back as "/\evil.example" is a
        # link to another host for browsers (WHATWG URL: "\" is "/" in http(s) URLs). The query is repeated as
        # it arrived (percent-encoded); the template escapes it for the attribute.
        try:
            query = request.query_string.decode("utf-8")
        except UnicodeDecodeError:  # a query that is not UTF-8 (refused as request_malformed) is not repeated
            query = ""
        switch_url = _with_lang("?" + query, other)
    html = render_template(template, lang=lang, other_lang=other, ui=UI[lang],
                           lang_switch_url=switch_url, **context)
    return _html_response(html, status, lang)


def _html_response(html: str | bytes, status: int, lang: str) -> Response:
    response = make_response(html, status)
    response.headers["Content-Type"] = "text/html; charset=utf-8"
    if query_parameter("lang") in LANGUAGES:
        # SameSite=None: pages also answer cross-site POSTs (an SP's HTTP-POST AuthnRequest, a municipal IdP's
        # Response, a LogoutRequest), which carry no Lax cookie; the choice would be lost on exactly those pages
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, secure=True, httponly=True, samesite="None")
    return response


def hidden_inputs(fields: dict[str, str]) -> Markup:
    """The form's hidden inputs, every name and value HTML-escaped."""
    return Markup("").join(Markup('<input type="hidden" name="%s" value="%s">') % (name, value)
                           for name, value in fields.items())


# Where the per-login values go in the pre-rendered post page. NUL cannot come out of the template or the UI
# texts (the frame is checked to have exactly these slots when it is made), and every value put in a slot is escaped.
_SLOT = re.compile("\x00([a-z_]+)\x00")
_POST_SLOTS = ("title", "url", "sending_to", "inputs")


def _post_frame(lang: str) -> tuple[bytes | str, ...]:
    """post.html rendered once per language and app with markers for the values that change per login, split
    at them: text, slot name, text, slot name, ..., text; the text already encoded as UTF-8. Rendering through
    Jinja per login cost ~0.2 ms; and since the page's text holds a character beyond Latin-1 (the dash), a page
    joined as one str was stored two bytes a character, the SAMLResponse widened into it and the whole encoded
    again per login."""
    frames: dict[str, tuple[bytes | str, ...]] = current_app.extensions.setdefault("broker.post_frames", {})
    frame = frames.get(lang)
    if frame is None:
        marked = {name: Markup("\x00{}\x00").format(name) for name in _POST_SLOTS}
        html = render_template("post.html", lang=lang, other_lang=_other(lang), ui=UI[lang], lang_switch_url="",
                               **marked)
        parts = _SLOT.split(html)
        if sorted(parts[1::2]) != sorted(_POST_SLOTS):
            raise RuntimeError(f"post.html must use each of {_POST_SLOTS} once; found {parts[1::2]}")
        frame = frames[lang] = tuple(part.encode() if i % 2 == 0 else part for i, part in enumerate(parts))
    return frame


def post_page(result: PostToSp) -> Response:
    lang = language()
    sp = result.sp_name.get(lang) if result.sp_name else UI[lang]["back_to_sp_generic"]
    # no language link: the page submits itself at once, and the link would send the SAML request again
    sending_to = UI[lang]["sending_to"].format(sp=sp)
    # the page's title names it as its heading does (WCAG 2.1 SC 2.4.2)
    values = {"title": escape(sending_to.rstrip(".")), "url": escape(result.url), "sending_to": escape(sending_to),
              "inputs": hidden_inputs(result.fields)}
    # each value encoded on its own: the SAMLResponse, nearly all of the page, is ASCII and copied as it is
    body = b"".join(part if isinstance(part, bytes) else values[part].encode() for part in _post_frame(lang))
    response = _html_response(body, 200, lang)
    response.headers["X-Form-Target"] = " ".join(origin_of(url) for url in (result.url, *result.onward))
    return response


def error_page(error: BrokerError, correlation_id: str, failure: LoginFailed | None = None) -> Response:
    lang = language()
    row = error.row
    explanation = explain(error.reason, row.family, lang, dict(error.params))
    retry_url = None
    if failure is not None and failure.retry_login_id:
        retry_url = url_for("idp.resume", login_id=failure.retry_login_id)
    back = failure.back_to_sp if failure else None
    sp_name = failure.sp_name.get(lang) if failure and failure.sp_name else None
    ui = UI[lang]
    back_label = ui["back_to_sp"].format(sp=sp_name) if sp_name else ui["back_to_sp_generic"]
    municipality = failure.municipality if failure else None
    support = municipality.config.support.get(lang) if municipality and municipality.config.support else None
    support_label = ui["support"].format(municipality=municipality.config.name.get(lang)) if municipality else ""
    # a login may have gone to a municipality (its own IdP, or a card the browser lacks) by a remembered choice,
    # which skips the discovery page: without this link a wrong one could only be undone by clearing the
    # browser's cookies
    choose_url = url_for("discovery.show", login=failure.retry_login_id) \
        if retry_url and failure is not None and (failure.choose_again or (
            municipality is not None and municipality.config.login == "saml")) \
        else None
    switch = _with_lang(retry_url, _other(lang)) if retry_url else None
    # a page answering a POST (the ACS, a choice, a logout) has no link to the other language: it cannot be asked
    # for again; it says the same in the other language below
    other = explain(error.reason, row.family, _other(lang), dict(error.params)) \
        if switch is None and request.method != "GET" else None
    response = _render("error.html", row.http_status, switch_url=switch, explanation=explanation,
                       reason=error.reason, correlation_id=correlation_id, retry_url=retry_url,
                       choose_url=choose_url, back=back,
                       back_label=back_label, support=support, support_label=support_label,
                       other_explanation=other, other_lang_ui=UI[_other(lang)])
    if back is not None:
        response.headers["X-Form-Target"] = origin_of(back.url)
    response.headers["X-Broker-Reason"] = error.reason
    if isinstance(error, RateLimited):
        response.headers["Retry-After"] = str(error.retry_after)  # RFC 6585 §4, RFC 9110 §10.2.3
    return response


def _searchable(text: str) -> str:
    """``text`` as the discovery search compares it: NFKC (text pasted from a PDF or a Mac arrives decomposed,
    "a" + U+0308 for "ä") and case-folded (Unicode §3.13)."""
    return unicodedata.normalize("NFKC", text).casefold()


def discovery_page(result: Discovery, query: str = "") -> Response:
    """Choose a municipality: names in the page's language, filtered by ``query`` (works without scripts)."""
    lang = language()
    ui = UI[lang]
    wanted = _searchable(query.strip())
    options = [
        {"id": m.id, "name": m.config.name.get(lang),
         "method": ui["method_saml" if m.config.login == "saml" else "method_certificate"]}
        for m in result.options
        if not wanted or wanted in _searchable(m.config.name.sv) or wanted in _searchable(m.config.name.en)
    ]
    switch = _with_lang(url_for("discovery.show", login=result.login_id, q=query or None), _other(lang))
    # the choice posts back to the broker with a form token (broker.web.csrf); the secret cookie is kept while
    # the browser has one, so that pages in several tabs stay valid
    secret = csrf.FormTokens.usable_secret(request.cookies.get(csrf.COOKIE))
    fresh = secret is None
    secret = secret or csrf.FormTokens.new_secret()
    response = _render("discovery.html", 200, switch_url=switch, login_id=result.login_id, options=options,
                       query=query, preselected=result.preselected, correlation_id=result.correlation_id,
                       sp_name=result.sp_name.get(lang) if result.sp_name else None,
                       csrf_field=csrf.FIELD, csrf_token=services().form_tokens.token(secret, csrf.DISCOVERY))
    if fresh:
        # SameSite=Lax, not Strict: the page is often reached by a cross-site navigation from the SP, which
        # would not carry a Strict cookie, and a new secret would then replace the one other tabs' pages use
        response.set_cookie(csrf.COOKIE, secret, secure=True, httponly=True, samesite="Lax", path="/")
    if result.form_targets:
        response.headers["X-Form-Target"] = " ".join(origin_of(url) for url in result.form_targets)
    return response


def logged_out_page(result: LogoutDone) -> Response:
    """Logged out; if some participant did not confirm, say which, and hand back to the initiator on click."""
    lang = language()
    ui = UI[lang]
    partial = [name if isinstance(name, str) else name.get(lang) for name in result.partial]
    next_post = result.next if isinstance(result.next, PostToSp) else None
    next_url = result.next.url if isinstance(result.next, Redirect) else None
    # no language link: this page answers a one-time logout message, which cannot be replayed in another language
    response = _render("logged_out.html", 200, switch_url="",
                       heading=ui["logged_out_partial_heading" if partial else "logged_out"],
                       partial=partial, correlation_id=result.correlation_id, next_post=next_post, next_url=next_url)
    if next_post is not None:
        response.headers["X-Form-Target"] = origin_of(next_post.url)
    if partial:
        response.headers["X-Broker-Reason"] = "logout_partial"
    return response


def message_page(heading_key: str, paragraph_keys: list[str], status: int = 200) -> Response:
    ui = UI[language()]
    return _render("message.html", status, heading=ui[heading_key], paragraphs=[ui[k] for k in paragraph_keys])


def redirect_response(result: Redirect) -> Response:
    response = make_response("", 303)
    response.headers["Location"] = result.url
    return response


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def diagnose_page(rows: list[tuple[str, str]] | None, accepted: bool, error: BrokerError | None,
                  correlation_id: str) -> Response:
    """``rows``: (field key, value); the keys are shown with their label in the page's language."""
    lang = language()
    ui = UI[lang]
    explanation = explain(error.reason, error.row.family, lang, dict(error.params)) if error else None
    labelled = [(ui.get(f"diag_{key}", key), value) for key, value in rows] if rows is not None else None
    return _render("diagnose.html", 200, certificate=labelled, accepted=accepted, explanation=explanation,
                   correlation_id=correlation_id)


# an origin as CSP source expressions may name it: scheme, host (or [IPv6]) and port, nothing that could end the
# directive (";", ",", spaces) or the header
_ORIGIN = re.compile(r"^https?://(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?\Z")


_CSP = ("default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; form-action {form_action}; "
        "frame-ancestors 'none'; base-uri 'none'")
# SAML Bindings §3.4.5.1 and §3.5.5.1: responses carrying SAML messages SHOULD say "no-cache, no-store" and
# "Pragma: no-cache" (HTTP/1.0 caches); every page but the static files and the metadata says so
NO_CACHE = "no-cache, no-store"
_STATIC_HEADERS = (("X-Content-Type-Options", "nosniff"), ("X-Frame-Options", "DENY"),
                   ("Referrer-Policy", "no-referrer"), ("Strict-Transport-Security", "max-age=31536000"))


def security_headers(response: Response) -> Response:
    """Strict defaults for every response (pages, errors, redirects, static files): no framing, no referrer, no
    inline script or style, no caching of SAML material or personal data. A header the response set itself is
    kept.

    ``X-Form-Target`` (set by the page functions, removed here) names the other origins the page's forms post
    to, or redirects after its form post lead to; they join ``form-action``. Browsers differ on whether
    form-action also governs the redirects after a form submission (Chrome and Safari: yes), hence the latter.
    """
    headers = response.headers
    targets = headers.pop("X-Form-Target", None) or ""
    present = {name.lower() for name, _value in headers.items()}  # one pass, not a lookup per default
    if "content-security-policy" not in present:
        origins = dict.fromkeys(t for t in targets.split() if _ORIGIN.fullmatch(t))  # ordered, without repeats
        form_action = " ".join(["'self'", *origins])
        headers.add("Content-Security-Policy", _CSP.format(form_action=form_action))
    for name, value in _STATIC_HEADERS:
        if name.lower() not in present:
            headers.add(name, value)
    # static files are cached as sent; an error page at a static path is a page like any other
    if "cache-control" not in present and not (request.path.startswith("/static/") and response.status_code < 400):
        headers.add("Cache-Control", NO_CACHE)
    if headers.get("Cache-Control") == NO_CACHE and "pragma" not in present:
        headers.add("Pragma", "no-cache")
    return response
