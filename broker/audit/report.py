"""A self-contained HTML report for reviewers: logins per municipality and day, failures by reason, a chart,
and the integrity of the files read. No scripts, no external resources: one file to archive or mail."""

from __future__ import annotations

import datetime as dt
import html
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

from broker.audit.verify import Verification

_CSS = """
body{font:15px/1.5 system-ui,sans-serif;color:#1b1b1b;max-width:70rem;margin:2rem auto;padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem}table{border-collapse:collapse;margin:.5rem 0}
th,td{border:1px solid #ccc;padding:.25rem .6rem;text-align:left}th{background:#f3f5f8}
td.n{text-align:right;font-variant-numeric:tabular-nums}.ok{color:#14632f;font-weight:600}
.bad{color:#8a1c1c;font-weight:600}.warn{color:#8a5a00}figure{margin:1rem 0}
"""


def _esc(value: object) -> str:
    return html.escape(str(value))


def _day(record: dict[str, Any]) -> str:
    return str(record.get("time", ""))[:10]


def _instant(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def build(records: Iterable[dict[str, Any]], integrity: Verification, *, title: str,
          since: dt.datetime | None, until: dt.datetime | None) -> str:
    logins: dict[str, Counter[str]] = defaultdict(Counter)     # day -> municipality -> logins
    failures: Counter[str] = Counter()
    refused_by_municipality: Counter[str] = Counter()
    sps: Counter[str] = Counter()
    total = 0
    for record in records:
        event = record.get("event")
        if event == "assertion_issued":
            logins[_day(record)][str(record.get("municipality", "-"))] += 1
            sps[str(record.get("sp", "-"))] += 1
            total += 1
        elif record.get("outcome") == "failure" and record.get("reason") and event != "error_response_issued":
            # (an error Response tells the SP of a refusal recorded already, under the same correlation ID)
            failures[str(record["reason"])] += 1
            if record.get("municipality"):
                refused_by_municipality[str(record["municipality"])] += 1
    municipalities = sorted({m for counts in logins.values() for m in counts})
    days = sorted(logins)
    # exact instants in UTC, like the records and the days below: --until is exclusive, and a date alone read as
    # a period that included that day
    period = (f"from {_instant(since) if since else 'the start'} up to (not including) "
              f"{_instant(until) if until else 'now'}")

    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{_esc(title)}</title>"
             f"<style>{_CSS}</style></head><body><main>",
             f"<h1>{_esc(title)}</h1><p>Period: {_esc(period)}. Assertions issued: <strong>{total}</strong>. "
             f"Failures: <strong>{sum(failures.values())}</strong>.</p>"]

    parts.append("<h2>Integrity of the files read</h2>")
    status = "<span class='ok'>intact</span>" if integrity.ok else "<span class='bad'>NOT intact</span>"
    parts.append(f"<p>Audit trail: {status} ({len(integrity.chains)} chain(s)).</p>")
    parts.append("<table><tr><th>chain</th><th>files</th><th>records verified (up to a problem)</th>"
                 "<th>sealed up to</th><th>keys</th><th>status</th></tr>")
    for chain in integrity.chains:
        if chain.problems:
            state = f"<span class='bad'>{_esc(chain.problems[0])}</span>"
        elif chain.warnings:
            state = f"<span class='warn'>{_esc('; '.join(chain.warnings))}</span>"
        else:
            state = "<span class='ok'>intact</span>"
        parts.append(f"<tr><td>{_esc(chain.chain)}</td><td class='n'>{len(chain.files)}</td>"
                     f"<td class='n'>{chain.records}</td><td class='n'>{chain.sealed_seq}</td>"
                     f"<td>{_esc(', '.join(sorted(chain.key_ids)))}</td><td>{state}</td></tr>")
    parts.append("</table>")

    parts.append("<h2>Logins per municipality and day</h2>")
    parts.append(_chart(days, municipalities, logins))
    parts.append("<table><tr><th>day</th>" + "".join(f"<th>{_esc(m)}</th>" for m in municipalities)
                 + "<th>total</th></tr>")
    for day in days:
        row = logins[day]
        parts.append(f"<tr><td>{_esc(day)}</td>" + "".join(f"<td class='n'>{row[m]}</td>" for m in municipalities)
                     + f"<td class='n'>{sum(row.values())}</td></tr>")
    parts.append("</table>")

    parts.append("<h2>Failures by reason</h2><table><tr><th>reason</th><th>count</th></tr>")
    for reason, count in failures.most_common():
        parts.append(f"<tr><td><code>{_esc(reason)}</code></td><td class='n'>{count}</td></tr>")
    parts.append("</table>")
    if refused_by_municipality:
        parts.append("<h2>Failures by municipality</h2><table><tr><th>municipality</th><th>count</th></tr>")
        for municipality, count in refused_by_municipality.most_common():
            parts.append(f"<tr><td>{_esc(municipality)}</td><td class='n'>{count}</td></tr>")
        parts.append("</table>")
    parts.append("<h2>Assertions per service provider</h2><table><tr><th>SP</th><th>count</th></tr>")
    for sp, count in sps.most_common():
        parts.append(f"<tr><td>{_esc(sp)}</td><td class='n'>{count}</td></tr>")
    parts.append("</table></main></body></html>")
    return "\n".join(parts)


_COLOURS = ("#0b5394", "#e69138", "#38761d", "#990000", "#674ea7", "#45818e", "#bf9000", "#a64d79")


def _chart(days: list[str], municipalities: list[str], logins: dict[str, Counter[str]]) -> str:
    """A stacked bar chart as inline SVG (accessible: a title and a description; the table holds the data)."""
    if not days:
        return "<p>No logins in the period.</p>"
    width, height, pad = 760, 240, 40
    peak = max(sum(logins[d].values()) for d in days) or 1
    bar = max(4, (width - 2 * pad) // len(days) - 4)
    out = [f"<figure><svg role='img' aria-labelledby='chart-title' viewBox='0 0 {width} {height + 40}' "
           f"width='{width}' height='{height + 40}' xmlns='http://www.w3.org/2000/svg'>",
           "<title id='chart-title'>Logins per day, stacked by municipality</title>"]
    for i, day in enumerate(days):
        x = pad + i * (bar + 4)
        y = height
        for j, municipality in enumerate(municipalities):
            count = logins[day][municipality]
            if not count:
                continue
            h = max(1, round((height - pad) * count / peak))
            y -= h
            colour = _COLOURS[j % len(_COLOURS)]
            out.append(f"<rect x='{x}' y='{y}' width='{bar}' height='{h}' fill='{colour}'>"
                       f"<title>{_esc(day)} {_esc(municipality)}: {count}</title></rect>")
        if len(days) <= 31:
            out.append(f"<text x='{x}' y='{height + 14}' font-size='9'>{_esc(day[5:])}</text>")
    for j, municipality in enumerate(municipalities):
        out.append(f"<rect x='{pad + j * 130}' y='{height + 22}' width='10' height='10' "
                   f"fill='{_COLOURS[j % len(_COLOURS)]}'/><text x='{pad + j * 130 + 14}' y='{height + 31}' "
                   f"font-size='11'>{_esc(municipality)}</text>")
    out.append(f"<text x='4' y='{pad - 8}' font-size='11'>max {peak}/day</text></svg></figure>")
    return "".join(out)
