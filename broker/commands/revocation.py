"""``broker revocation status``: per CA, the CRLs held (age, next update, last error) and the OCSP responders'
last error, as the broker instances recorded them in the shared store."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from broker.clock import SystemClock
from broker.commands.common import settings_or_exit
from broker.errors import DependencyUnavailable
from broker.pki.revocation.crls import CrlStore, parse_crl, verify_crl
from broker.pki.revocation.engine import RevocationChecker
from broker.pki.revocation.ocsp import responder_urls
from broker.session.redis_client import RedisChoiceRefused
from broker.session.redis_client import configured as redis_connector
from broker.session.store import KeyValueStore, RedisStore


def _age(text: str | None) -> str:
    if not text:
        return "-"
    delta = SystemClock().now() - dt.datetime.fromisoformat(text)
    return str(delta).split(".")[0]


@click.group()
def revocation() -> None:
    """Revocation data: what the broker holds and when it was last refreshed."""


@revocation.command("status")
@click.option("--config", "config_dir", required=True, type=click.Path(path_type=Path))
@click.option("--redis", "redis_url", default=None, help="the shared store (default: REDIS_URL or broker.yaml)")
@click.option("--json", "as_json", is_flag=True)
def status(config_dir: Path, redis_url: str | None, as_json: bool) -> None:
    """List per CA: CRL source, age, next update, last refresh error; OCSP responder and its last error."""
    settings = settings_or_exit(config_dir)
    try:
        connector = redis_connector(settings.broker.redis, redis_url or os.environ.get("REDIS_URL"))
    except RedisChoiceRefused as exc:  # unusable input, said as `broker readiness` says it (exit 2), not a traceback
        click.echo(f"unusable input: {exc}", err=True)
        sys.exit(2)
    shared: KeyValueStore | None = None
    if connector is not None:
        prefix = settings.broker.redis.key_prefix if settings.broker.redis else "broker:"
        shared = RedisStore(connector=connector, prefix=prefix)
        try:
            shared.ping()
        except DependencyUnavailable as exc:
            click.echo(f"warning: shared store unreachable ({exc.detail}); showing local files only", err=True)
            shared = None
    clock = SystemClock()
    crls = CrlStore(clock, fetcher=None, shared=shared)
    checker = RevocationChecker(clock, crls=crls, fetcher=None, shared=shared, refresh_interval=0)
    rows: list[dict[str, Any]] = []
    for m in settings.municipalities.values():
        domain = settings.trust.domains.get(m.id)
        if domain is None:
            continue
        if domain.revocation is None:
            rows.append({"municipality": m.id, "ca": "-", "crl_source": "revocation checking off"})
            continue
        policy = domain.revocation
        for ca in (*domain.anchors, *domain.intermediates):
            name = ca.subject.public_bytes()
            base: dict[str, Any] = {"municipality": m.id, "ca": ca.subject.rfc4514_string()}
            sources = [s for s in policy.crl_sources if name in s.issuer_names()]
            for source in sources:
                row: dict[str, Any] = dict(base, crl_source=source.location)
                if source.kind == "file":
                    try:
                        crl = verify_crl(parse_crl(Path(source.location).read_bytes()), source.cas)
                        if crl.issuer_der != name:
                            continue  # a file source may be signed by any of the municipality's CAs
                        row.update(this_update=crl.this_update.isoformat(),
                                   next_update=crl.next_update.isoformat() if crl.next_update else None,
                                   entries=len(crl), last_error=None)
                    except (OSError, ValueError) as exc:
                        row.update(last_error=str(exc))
                else:
                    meta = crls.shared_status(source) if shared is not None else None
                    if meta is None:
                        row.update(last_error="not fetched yet" if shared is not None else "no shared store")
                    else:
                        row.update({k: meta.get(k) for k in ("this_update", "next_update", "entries",
                                                             "fetched_at", "last_error")})
                row["crl_age"] = _age(row.get("this_update"))
                rows.append(row)
            responders = list(responder_urls(ca))
            if policy.config.ocsp.url:
                responders.append(policy.config.ocsp.url)
            for responder in responders:
                record = checker.ocsp_status(responder) if shared is not None else None
                rows.append(dict(base, ocsp_responder=responder,
                                 last_ok=(record or {}).get("last_ok"),
                                 last_ok_method=(record or {}).get("last_ok_method"),
                                 last_ocsp_error=(record or {}).get("last_error"),
                                 last_ocsp_error_at=(record or {}).get("last_error_at")))
            if not sources and not responders:
                rows.append(dict(base, crl_source="(certificates' distribution points / AIA only)"))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        head = f"{row['municipality']}  {row['ca']}"
        if "ocsp_responder" in row:
            error = row.get("last_ocsp_error")
            by = f" by {row['last_ok_method']}" if row.get("last_ok") and row.get("last_ok_method") else ""
            click.echo(f"{head}\n    OCSP {row['ocsp_responder']}: last ok {row.get('last_ok') or '-'}{by}; "
                       f"last error {error + ' at ' + str(row.get('last_ocsp_error_at')) if error else '-'}")
        else:
            click.echo(f"{head}\n    CRL {row.get('crl_source')}: age {row.get('crl_age', '-')}, "
                       f"next update {row.get('next_update') or '-'}, entries {row.get('entries', '-')}, "
                       f"last error {row.get('last_error') or '-'}")
