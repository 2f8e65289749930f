"""A readiness report for people: a terminal table (colour on a terminal) and a self-contained HTML dashboard."""

from __future__ import annotations

import datetime as dt
import html
import re
import textwrap

from broker.readiness.model import RANK, Check, Report, Section, Status

_COLOUR = {"pass": "\x1b[32m", "warn": "\x1b[33m", "fail": "\x1b[31;1m"}
_RESET = "\x1b[0m"
_LABEL = {"pass": "PASS", "warn": "WARN", "fail": "FAIL"}
# C0 and C1 controls (line breaks, ESC and CSI sequences), the Unicode line separators and the bidirectional
# overrides and isolates: in a CA's name or a server's answer they would forge lines or rewrite the terminal
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _label(status: Status, colour: bool) -> str:
    text = _LABEL[status]
    return f"{_COLOUR[status]}{text}{_RESET}" if colour else text


def plain(value: object) -> str:
    """``value`` as text on one line of the report (or of a ``broker cert`` verdict): the characters of
    :data:`_UNPRINTABLE` escaped (``\\n``, ``\\u001b``), as the HTML dashboard escapes markup. Evidence quotes
    certificates and remote servers."""
    def escaped(found: re.Match[str]) -> str:
        char = found.group()
        return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char) or f"\\u{ord(char):04x}"
    return _UNPRINTABLE.sub(escaped, str(value))


def _utc(instant: dt.datetime) -> str:
    return f"{instant.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC"


def _heading(section: Section) -> str:
    if section.kind == "municipality":
        return plain(f"{section.name} ({section.id}, {section.details.get('status')}, "
                      f"login: {section.details.get('login')})")
    if section.kind == "endpoint":
        return f"endpoint {plain(section.id)}"
    return "the broker"


def text(report: Report, *, colour: bool, width: int = 110) -> str:
    """One block per subject: its checks as STATUS, title, evidence, and the fix under each WARN and FAIL."""
    lines: list[str] = [f"Readiness {report.generated:%Y-%m-%d %H:%M} UTC ({plain(report.environment)})"
                        + (f"; expiries judged at {_utc(report.at)}" if report.at else ""), ""]
    for section in report.sections:
        lines.append(f"{_label(section.result, colour)}  {_heading(section)}")
        for check in section.checks:
            lines.append(f"  {_label(check.status, colour)}  {plain(check.title)}: " + plain(check.evidence))
            if check.fix and check.status != "pass":
                lines += textwrap.wrap(f"fix: {plain(check.fix)}", width=width, initial_indent=" " * 8,
                                       subsequent_indent=" " * 13)
        lines.append("")
    counts = report.counts()
    lines.append(f"{_label(report.result, colour)}  {counts['pass']} passed, {counts['warn']} warnings, "
                 f"{counts['fail']} failed")
    return "\n".join(lines) + "\n"


_CSS = """
body{font:15px/1.45 system-ui,sans-serif;margin:2rem;color:#1d1d1b;background:#fafaf7}
h1{font-size:1.5rem}table{border-collapse:collapse;width:100%;background:#fff}
th,td{text-align:left;padding:.45rem .6rem;border-bottom:1px solid #ddd;vertical-align:top}
th{background:#f0efe9}.pass{color:#0b6b2b}.warn{color:#8a5a00}.fail{color:#a11;font-weight:600}
.badge{display:inline-block;min-width:3.2rem;text-align:center;border-radius:3px;padding:0 .3rem;color:#fff}
.badge.pass{background:#0b6b2b}.badge.warn{background:#b07800}.badge.fail{background:#a11}
details{margin:.2rem 0}summary{cursor:pointer}ul{margin:.3rem 0 .3rem 1rem;padding:0}
li{margin:.25rem 0}.fix{color:#444;font-style:italic}.muted{color:#666}
"""


def _badge(status: Status) -> str:
    return f'<span class="badge {status}">{_LABEL[status]}</span>'


def _check_item(check: Check) -> str:
    fix = f'<br><span class="fix">Fix: {html.escape(check.fix)}</span>' if check.fix and check.status != "pass" \
        else ""
    return (f'<li>{_badge(check.status)} <strong>{html.escape(check.title)}</strong>: '
            f'{html.escape(check.evidence)}{fix}</li>')


def _row(section: Section) -> str:
    counts = section.counts()
    expiry = section.next_expiry
    ordered = sorted(section.checks, key=lambda c: -RANK[c.status])
    items = "".join(_check_item(c) for c in ordered)
    return (f"<tr><td>{_badge(section.result)}</td>"
            f"<td><strong>{html.escape(section.name)}</strong><br>"
            f"<span class='muted'>{html.escape(section.id)}</span></td>"
            f"<td>{html.escape(str(section.details.get('status', '')))}</td>"
            f"<td>{html.escape(str(section.details.get('login', '')))}</td>"
            f"<td>{counts['pass']} / {counts['warn']} / {counts['fail']}</td>"
            f"<td>{f'{expiry:%Y-%m-%d}' if expiry else '&ndash;'}</td>"
            f"<td><details><summary>{len(section.checks)} checks</summary><ul>{items}</ul></details></td></tr>")


def html_dashboard(report: Report) -> str:
    """Self-contained (inline CSS, no scripts, no external resources): one row per municipality, then the
    endpoints and the broker."""
    counts = report.counts()
    municipalities = "".join(_row(s) for s in report.municipalities)
    others = "".join(_row(s) for s in (*report.endpoints, report.broker))
    head = ("<tr><th>Result</th><th>Subject</th><th>Status</th><th>Login</th><th>Pass / warn / fail</th>"
            "<th>Next expiry</th><th>Checks</th></tr>")
    at = f" (expiries judged at {_utc(report.at)})" if report.at else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>Broker readiness {report.generated:%Y-%m-%d}</title><style>{_CSS}</style></head>
<body><main>
<h1>Readiness {_badge(report.result)}</h1>
<p class="muted">{report.generated:%Y-%m-%d %H:%M} UTC{at}, environment {html.escape(report.environment)}:
{counts['pass']} passed, {counts['warn']} warnings, {counts['fail']} failed.</p>
<h2>Municipalities</h2>
<table>{head}{municipalities}</table>
<h2>Endpoints and the broker</h2>
<table>{head}{others}</table>
</main></body></html>
"""
