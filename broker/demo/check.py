"""``broker demo --check``: every demo user's SP-initiated login over real HTTPS, as a table.

Each login starts at the demo SP, follows its signed AuthnRequest to the
broker with the user's client certificate, and posts the broker's answer back
to the SP, which validates it with pysaml2. Kommun C's users go without a
certificate through the discovery page and Kommun C's own IdP. Exit status 1
on any surprise.
"""

from __future__ import annotations

import http.cookiejar
import ssl
import urllib.error
import urllib.request
from html.parser import HTMLParser
from typing import TextIO
from urllib.parse import urlencode, urljoin

from broker.demo.idp import DEMO_IDP_USERS
from broker.demo.materials import DEMO_USERS, DemoLayout


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}
        self.loa: str | None = None
        self._in_loa = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form" and self.action is None:
            self.action = a.get("action")
        if tag == "input" and a.get("type") == "hidden" and a.get("name"):
            self.fields[str(a["name"])] = a.get("value") or ""
        if tag == "dd" and a.get("class") == "loa":
            self._in_loa = True

    def handle_data(self, data: str) -> None:
        if self._in_loa:
            self.loa = data.strip()
            self._in_loa = False


def login(layout: DemoLayout, base_url: str, user: str) -> tuple[str, str]:
    """Run one login; return (outcome, detail): outcome is "success" or the broker's reason code."""
    ctx = ssl.create_default_context(cafile=str(layout.tls / "ca.pem"))
    ctx.load_cert_chain(str(layout.users / f"{user}.pem"), str(layout.users / f"{user}.key"))
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=ctx),
                                         urllib.request.HTTPCookieProcessor(jar))
    try:
        with opener.open(f"{base_url}/demo-sp/login", timeout=30) as page:
            body = page.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.headers.get("X-Broker-Reason") or f"http_{exc.code}", ""
    form = _FormParser()
    form.feed(body)
    if not form.action or "SAMLResponse" not in form.fields:
        return "no_response_form", body[:200]
    data = urlencode(form.fields).encode()
    try:
        # the form's target is the demo SP's ACS on the demo server itself (https only)
        if not form.action.startswith(base_url + "/"):
            return "unexpected_form_target", form.action
        with opener.open(urllib.request.Request(form.action, data=data), timeout=30) as page:  # noqa: S310
            result = _FormParser()
            result.feed(page.read().decode())
            return "success", result.loa or ""
    except urllib.error.HTTPError as exc:
        return f"sp_refused_{exc.code}", exc.read().decode(errors="replace")[:300]


class _Forms(HTMLParser):
    """Every form of a page: (method, action, hidden and preset fields)."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form":
            self.forms.append(((a.get("method") or "get").lower(), a.get("action") or "", {}))
        elif tag == "input" and self.forms and a.get("name") and a.get("type") in ("hidden", None):
            self.forms[-1][2][str(a["name"])] = a.get("value") or ""


def _submit(opener: urllib.request.OpenerDirector, base_url: str, page: tuple[str, str], *, has: str,
            extra: dict[str, str] | None = None, only: dict[str, str] | None = None) -> tuple[str, str]:
    """POST the form of ``page`` (its URL, its text) that has field ``has`` and the values ``only`` (plus
    ``extra``) to the demo server; the next page as (URL, text)."""
    parser = _Forms()
    parser.feed(page[1])
    found = [(action, fields) for method, action, fields in parser.forms
             if method == "post" and has in fields and all(fields.get(k) == v for k, v in (only or {}).items())]
    if not found:
        raise ValueError(f"no form with {has} on {page[0]}")
    action, fields = found[0]
    target = urljoin(page[0], action)
    if not target.startswith(base_url + "/"):
        raise ValueError(f"unexpected form target {target}")
    data = urlencode({**fields, **(extra or {})}).encode()
    with opener.open(urllib.request.Request(target, data=data), timeout=30) as answer:  # noqa: S310
        return answer.geturl(), str(answer.read().decode())


def federated_login(layout: DemoLayout, base_url: str, user: str) -> tuple[str, str]:
    """A Kommun C user without a certificate: demo SP, discovery, Kommun C's IdP, broker, demo SP."""
    ctx = ssl.create_default_context(cafile=str(layout.tls / "ca.pem"))
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=ctx),
                                         urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    try:
        with opener.open(f"{base_url}/demo-sp/login", timeout=30) as answer:
            discovery = answer.geturl(), answer.read().decode()
        idp_page = _submit(opener, base_url, discovery, has="login", extra={"municipality": "kommun-c"})
        to_broker = _submit(opener, base_url, idp_page, has="user", only={"user": user})
        to_sp = _submit(opener, base_url, to_broker, has="SAMLResponse")
        result = _FormParser()
        result.feed(_submit(opener, base_url, to_sp, has="SAMLResponse")[1])
        return "success", result.loa or ""
    except urllib.error.HTTPError as exc:
        return exc.headers.get("X-Broker-Reason") or f"http_{exc.code}", ""
    except ValueError as exc:
        return "unexpected_page", str(exc)


def run_checks(layout: DemoLayout, base_url: str, out: TextIO) -> int:
    rows = []
    failures = 0
    for user in DEMO_USERS:
        actual, detail = login(layout, base_url, user.name)
        ok = actual == user.expected
        failures += not ok
        rows.append((user.name, user.municipality or "-", user.expected, actual, "ok" if ok else "SURPRISE",
                     detail if actual == "success" else ""))
    for idp_user in DEMO_IDP_USERS:
        actual, detail = federated_login(layout, base_url, idp_user.name)
        ok = actual == "success"
        failures += not ok
        rows.append((idp_user.name, "kommun-c", "success", actual, "ok" if ok else "SURPRISE", detail))
    header = ("user", "municipality", "expected", "actual", "", "LoA")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(6)]
    for r in [header, *rows]:
        out.write("  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() + "\n")
    out.write(f"\n{len(rows) - failures}/{len(rows)} as expected\n")
    return 1 if failures else 0
