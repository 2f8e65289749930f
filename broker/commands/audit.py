"""``broker audit``: verify the trail, query it, report on it, compute pseudonyms, make a signing key."""

from __future__ import annotations

import csv
import datetime as dt
import difflib
import json
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

import click
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from broker.audit import report as html_report
from broker.audit.events import as_reference
from broker.audit.keys import AuditKeyring, key_id, load_public_key, public_pem
from broker.audit.query import PSEUDONYM, Filter, parse_time, records, serial_hex, whole_logins
from broker.audit.schema import EVENTS
from broker.audit.trail import Pseudonymiser, holds_personnummer
from broker.audit.verify import Verification, verify
from broker.audit.verify import shown as terminal_text
from broker.commands.common import settings_or_exit
from broker.config.loader import Settings
from broker.config.values import luhn_valid
from broker.pki.identity import check_personnummer
from broker.reasons import REASONS


def _keyring(key_files: tuple[Path, ...], config_dir: Path | None) -> AuditKeyring:
    keys: list[Ed25519PublicKey] = []
    for path in key_files:
        try:
            keys.append(load_public_key(path.read_bytes()))
        except (OSError, ValueError) as exc:
            click.echo(f"--key {path}: {exc}", err=True)
            sys.exit(2)
    if config_dir is not None:
        audit = settings_or_exit(config_dir).broker.audit
        keys.append(audit.signing_key.key.public_key())
        keys += [k.key for k in audit.verification_keys]
    return AuditKeyring(keys)


def _paths_or_config(paths: tuple[Path, ...], config_dir: Path | None) -> list[Path]:
    if paths:
        return list(paths)
    if config_dir is not None:
        return [settings_or_exit(config_dir).broker.audit.directory.path]
    click.echo("give audit files or directories, or --config DIR", err=True)
    sys.exit(2)


@click.group()
def audit() -> None:
    """Tools for security reviewers: verify, query and report on the audit trail."""


_paths = click.argument("paths", nargs=-1, type=click.Path(path_type=Path, exists=True))
_config = click.option("--config", "config_dir", type=click.Path(path_type=Path),
                       help="configuration directory (its audit directory and keys)")


@audit.command("verify")
@_paths
@click.option("--key", "key_files", multiple=True, type=click.Path(path_type=Path),
              help="Ed25519 public key (PEM) trusted for checkpoints; repeatable")
@_config
@click.option("--json", "as_json", is_flag=True)
def verify_command(paths: tuple[Path, ...], key_files: tuple[Path, ...], config_dir: Path | None,
                   as_json: bool) -> None:
    """Prove the trail untouched. Exit 0 if intact; 1 naming the first problem (file, line, seq, what)."""
    result = _verified(_paths_or_config(paths, config_dir), key_files, config_dir)
    if as_json:
        click.echo(json.dumps(_verification_json(result), indent=2))
    else:
        for chain in result.chains:
            if chain.problems:  # the walk stopped at the first problem: its counts are not what the chain holds
                click.echo(f"{chain.chain}: NOT INTACT; {len(chain.files)} file(s), read up to its first problem: "
                           f"{chain.records} record(s) verify, {chain.checkpoints} checkpoint(s), sealed up to seq "
                           f"{chain.sealed_seq}{', closed' if chain.closed else ''}")
            else:
                click.echo(f"{chain.chain}: intact; {chain.records} records in {len(chain.files)} file(s), "
                           f"{chain.checkpoints} checkpoint(s), sealed up to seq {chain.sealed_seq}"
                           f"{', closed' if chain.closed else ''}")
            for chain_problem in chain.problems:  # each chain's, not only the first of all
                click.echo(f"  problem: {chain_problem}")
            for warning in chain.warnings:
                click.echo(f"  warning: {warning}")
        problem = result.first_problem()
        if problem is not None:
            click.secho(f"FIRST PROBLEM: {problem}", fg="red", bold=True, err=True)
    sys.exit(0 if result.ok else 1)


def _verified(sources: list[Path], key_files: tuple[Path, ...], config_dir: Path | None) -> Verification:
    """The chains in ``sources`` verified; exit 2 when that cannot start (no key: every checkpoint would be an
    unknown key, an intact trail reported as not intact; no chains: a wrong path)."""
    keyring = _keyring(key_files, config_dir)
    if not keyring.ids():
        click.echo("no verification key: give --key PUBLIC.pem or --config DIR", err=True)
        sys.exit(2)
    result = verify(sources, keyring)
    if not result.chains:
        click.echo("no audit chains found", err=True)
        sys.exit(2)
    return result


def _verification_json(result: Verification) -> dict[str, Any]:
    return {
        "intact": result.ok,
        "first_problem": vars(result.first_problem()) if result.first_problem() else None,
        "chains": [{"chain": c.chain, "files": c.files, "records": c.records, "last_seq": c.last_seq,
                    "checkpoints": c.checkpoints, "sealed_seq": c.sealed_seq, "closed": c.closed,
                    "key_ids": sorted(c.key_ids), "warnings": c.warnings,
                    "problems": [vars(p) for p in c.problems]} for c in result.chains],
    }


def _as_recorded(settings: Settings, sp: str | None, municipality: str | None) -> tuple[str | None, str | None]:
    """``--sp`` and ``--municipality`` as the records name them (an entityID, a municipality's id), from the names
    a reviewer knows them by in the configuration: an SP's file name or its name, a municipality's name (Swedish or
    English, in any letter case). One the configuration does not name is searched for as given (the records of
    years hold ones since removed), with a warning."""
    if sp is not None and settings.sp_by_entity_id(sp) is None:
        found = _by_name(sp, settings.service_providers.values())
        if len(found) == 1:
            click.echo(f"--sp: {sp} is {found[0].entity_id}", err=True)
            sp = found[0].entity_id
        elif found:
            both = "; ".join(f"{p.id}, {p.entity_id}" for p in found)
            click.echo(f"--sp: {sp!r} names {len(found)} service providers of the configuration ({both}): give its "
                       "entityID or its file's name; searched for as given", err=True)
        else:
            known = ", ".join(f"{p.id}, {p.entity_id}" for p in settings.service_providers.values())
            click.echo(f"--sp: {sp!r} is no service provider of the configuration (its entityID, its file's name or "
                       f"its name: {known}); searched for as given", err=True)
    if municipality is not None and municipality not in settings.municipalities:
        named = _by_name(municipality, settings.municipalities.values())
        if len(named) == 1:
            click.echo(f"--municipality: {municipality} is {named[0].id}", err=True)
            municipality = named[0].id
        elif named:
            click.echo(f"--municipality: {municipality!r} names {len(named)} municipalities of the configuration "
                       f"({', '.join(m.id for m in named)}): give its id; searched for as given", err=True)
        else:
            click.echo(f"--municipality: {municipality!r} is no municipality of the configuration (its id or its "
                       f"name: {', '.join(settings.municipalities)}); searched for as given", err=True)
    return sp, municipality


class _Named(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def config(self) -> Any: ...


_N = TypeVar("_N", bound=_Named)


def _by_name(given: str, entries: Iterable[_N]) -> list[_N]:
    """The ``entries`` (service providers, municipalities) ``given`` names by their id (a file's name) or their
    Swedish or English name, in any letter case, by id; the one whose id it is alone when there is one: an id is
    one entry's, a name two may share (a test and a production instance)."""
    folded = given.casefold()
    found = sorted((e for e in entries
                    if folded in (e.id.casefold(), e.config.name.sv.casefold(), e.config.name.en.casefold())),
                   key=lambda e: e.id)
    return [e for e in found if e.id.casefold() == folded] or found


def _meant(given: str, codes: list[str]) -> str:
    """Which of ``codes`` ``given`` likely means: one it holds or that holds it (certificate_revoked: revoked), or
    one spelt alike."""
    folded = given.lower().strip()
    near = [c for c in codes if c == folded] or [c for c in codes if c in folded or folded in c] or \
        difflib.get_close_matches(folded, codes, n=3)
    return f"did you mean {' or '.join(near[:3])}?" if near else "see `broker audit query --help`"


def _filter(user: tuple[str, ...], pseudonym_stdin: bool, config_dir: Path | None, municipality: str | None,
            sp: str | None, outcome: str | None, reason: str | None, event: tuple[str, ...],
            correlation_id: str | None, since: str | None, until: str | None, system: bool,
            key_files: tuple[Path, ...] = (), cert_serial: str | None = None,
            cert_issuer: str | None = None) -> Filter:
    for given in user:
        # any form a personnummer is written in (12 or 10 digits, - or +), also inside an identifier (an account
        # named by it, 191212121212@kommun.se): the query would find nothing. A pseudonym is taken as it is (its
        # hex digits may happen to read as one)
        if PSEUDONYM.fullmatch(given) or not holds_personnummer(given, dt.datetime.now(dt.UTC).date()):
            continue
        click.echo("--user: a personnummer is recorded as its pseudonym: give it on standard input with "
                   "--personnummer-stdin (it stays out of the shell's history), or its pnr: pseudonym; so is one "
                   "an identifier holds (an account named by it)", err=True)
        sys.exit(2)
    if reason is not None and reason not in REASONS:
        # not refused: a record from years ago may hold a code since retired; but "0 event(s)" for a guessed code
        # (certificate_revoked) reads as "there were none"
        click.echo(f"--reason: {reason!r} is no reason code of this broker (README, Reason codes): "
                   f"{_meant(reason, list(REASONS))}", err=True)
    unknown = sorted(set(event) - set(EVENTS))
    if unknown:
        click.echo(f"--event: unknown event {unknown[0]!r} (docs/audit.md, Schema: {', '.join(EVENTS)})", err=True)
        sys.exit(2)
    try:
        serial = serial_hex(cert_serial) if cert_serial is not None else None
    except ValueError as exc:
        click.echo(f"--cert-serial: {exc}", err=True)
        sys.exit(2)
    users = set(user)
    if pseudonym_stdin:
        users.update(_pseudonyms_from_stdin(config_dir, key_files))
    try:
        wanted = Filter(users=frozenset(users), municipality=municipality, sp=sp, outcome=outcome, reason=reason,
                        events=frozenset(event),
                        correlation_id=as_reference(correlation_id) if correlation_id else None,
                        cert_serial=serial, cert_issuer=cert_issuer,
                        since=parse_time(since) if since else None, until=parse_time(until) if until else None,
                        include_system=system)
    except ValueError as exc:
        click.echo(f"--since/--until: {exc}", err=True)
        sys.exit(2)
    if wanted.since is not None and wanted.until is not None and wanted.until <= wanted.since:
        # no instant is in it: "0 event(s)" would read as "nothing happened then"
        click.echo(f"--since/--until: --until must be after --since (--since is inclusive, --until exclusive); "
                   f"got {wanted.since.isoformat()} to {wanted.until.isoformat()}", err=True)
        sys.exit(2)
    return wanted


# who, where, with which certificate and at which level (the LoA of data.loa), for the table and the CSV; the CSV adds
# the detail and where the record is (its chain and seq: `verify` proves that line, jsonl gives the whole record)
_COLUMNS = ("time", "event", "outcome", "reason", "municipality", "user", "sp", "cert_issuer", "cert_serial", "loa",
            "correlation_id", "client")
_CSV_COLUMNS = (*_COLUMNS, "detail", "chain", "seq")


def _column(record: dict[str, Any], column: str) -> Any:
    if column == "loa":
        data = record.get("data")
        return data.get("loa") if isinstance(data, dict) else None
    if column == "chain":
        return record.get("_chain")
    return record.get(column)


@audit.command("query")
@_paths
@_config
@click.option("--user", multiple=True, help="HSA-id or pseudonym (pnr:...); repeatable")
@click.option("--personnummer-stdin", "pseudonym_stdin", is_flag=True,
              help="read a personnummer from standard input and match its pseudonym (needs --config or --key-file)")
@click.option("--key-file", "key_files", multiple=True, type=click.Path(path_type=Path, exists=True),
              help="a pseudonym key itself, for --personnummer-stdin, beside the one --config names (an earlier "
                   "audit.pseudonym_key: records written under it); repeatable")
@click.option("--municipality")
@click.option("--sp", help="service provider entityID")
@click.option("--outcome", type=click.Choice(["success", "failure", "info"]))
@click.option("--reason", help="reason code")
@click.option("--event", multiple=True, help="event type; repeatable")
@click.option("--correlation-id")
@click.option("--cert-serial", help="the user's certificate's serial number, in hexadecimal (1f, 00:1F)")
@click.option("--cert-issuer", help="the user's certificate's issuer (RFC 4514; any letter case, spaces after commas)")
@click.option("--since", help="from this ISO 8601 date or time (inclusive); without an offset it is UTC, like the "
                              "records' times (Swedish time: +01:00, in summer +02:00)")
@click.option("--until", help="to this ISO 8601 date or time (exclusive); without an offset UTC")
@click.option("--system", is_flag=True, help="include the chains' own records (checkpoints ...)")
@click.option("--whole-logins", "logins", is_flag=True,
              help="with every event of the logins the events found belong to (their correlation IDs), but none "
                   "naming another user: the evidence of a case")
@click.option("--format", "fmt", type=click.Choice(["table", "jsonl", "csv"]), default="table", show_default=True)
def query_command(paths: tuple[Path, ...], config_dir: Path | None, user: tuple[str, ...], pseudonym_stdin: bool,
                  key_files: tuple[Path, ...], municipality: str | None, sp: str | None, outcome: str | None,
                  reason: str | None, event: tuple[str, ...], correlation_id: str | None, cert_serial: str | None,
                  cert_issuer: str | None, since: str | None, until: str | None, system: bool, logins: bool,
                  fmt: str) -> None:
    """Find events: by user or pseudonym, municipality, SP, outcome, reason, certificate, time range or
    correlation ID."""
    if config_dir is not None:
        sp, municipality = _as_recorded(settings_or_exit(config_dir), sp, municipality)
    wanted = _filter(user, pseudonym_stdin, config_dir, municipality, sp, outcome, reason, event, correlation_id,
                     since, until, system, key_files, cert_serial, cert_issuer)
    # years of audit files hold millions of records: jsonl and csv print each match as it is found, and only the
    # table (whose columns are as wide as their widest value) keeps what it shows, its columns' text alone
    sources = _paths_or_config(paths, config_dir)
    named: set[Path] = set()

    def skipped(path: Path, why: str) -> None:
        if path not in named:  # --whole-logins reads the trail twice: each file is named once
            named.add(path)
            _skipped(path, why)

    def read() -> Iterator[dict[str, Any]]:
        return records(sources, skipped, since=wanted.since, until=wanted.until)

    found = whole_logins(read, wanted) if logins else (r for r in read() if wanted(r))
    issuers: set[str] = set()
    if wanted.cert_serial is not None and wanted.cert_issuer is None:
        found = _noting_issuers(found, wanted.cert_serial, issuers)
    if fmt == "jsonl":
        for record in found:
            click.echo(json.dumps({k: v for k, v in record.items() if k != "_chain"}, ensure_ascii=False,
                                  separators=(",", ":")))
    elif fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(_CSV_COLUMNS)
        for record in found:
            writer.writerow([_csv_cell(_column(record, c)) for c in _CSV_COLUMNS])
    else:
        # for a terminal: a value's control characters (an edited file, a peer's text) shown as escapes
        rows = [tuple(terminal_text(str(_column(record, c) or "")) for c in _COLUMNS) for record in found]
        widths = [max([len(c)] + [len(row[i]) for row in rows]) for i, c in enumerate(_COLUMNS)]
        shown = [i for i in range(len(_COLUMNS)) if any(row[i] for row in rows)] or [0, 1, 2]
        click.echo("  ".join(_COLUMNS[i].ljust(widths[i]) for i in shown).rstrip())
        for row in rows:
            click.echo("  ".join(row[i].ljust(widths[i]) for i in shown).rstrip())
        click.echo(f"{len(rows)} event(s)", err=True)
    if len(issuers) > 1:
        # RFC 5280 §4.1.2.2: a serial number is unique per issuer only; two issuers' certificates are two cards
        click.echo(f"--cert-serial: the events found name certificates of {len(issuers)} issuers with this serial "
                   f"number ({'; '.join(sorted(issuers))}), each another card: give --cert-issuer for one", err=True)


def _noting_issuers(found: Iterator[dict[str, Any]], serial: str, issuers: set[str]) -> Iterator[dict[str, Any]]:
    """``found`` as it is, adding to ``issuers`` the issuer of each record of the certificate serial ``serial``."""
    for record in found:
        if record.get("cert_serial") == serial and isinstance(record.get("cert_issuer"), str):
            issuers.add(record["cert_issuer"])
        yield record


# OWASP, CSV injection: a spreadsheet takes a cell starting with one of these as a formula (a detail quoting a peer's
# text, an SP's entityID): such a cell is prefixed with ' and read as text
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


@audit.command("report")
@_paths
@_config
@click.option("--html", "html_file", required=True, type=click.Path(path_type=Path), help="where to write it")
@click.option("--key", "key_files", multiple=True, type=click.Path(path_type=Path),
              help="Ed25519 public key (PEM) trusted for checkpoints; repeatable (or --config DIR)")
@click.option("--since", help="from this ISO 8601 date or time (inclusive); without an offset UTC")
@click.option("--until", help="to this ISO 8601 date or time (exclusive); without an offset UTC")
@click.option("--title", default="Authentication audit report", show_default=True)
def report_command(paths: tuple[Path, ...], config_dir: Path | None, html_file: Path, key_files: tuple[Path, ...],
                   since: str | None, until: str | None, title: str) -> None:
    """A self-contained HTML report: logins per municipality and day, failures by reason, integrity."""
    sources = _paths_or_config(paths, config_dir)
    wanted = _filter((), False, None, None, None, None, None, (), None, since, until, False)
    integrity = _verified(sources, key_files, config_dir)
    document = html_report.build((r for r in records(sources, _skipped, since=wanted.since, until=wanted.until)
                                  if wanted(r)), integrity, title=title,
                                 since=wanted.since, until=wanted.until)
    try:
        html_file.write_text(document, encoding="utf-8")
    except OSError as exc:  # a directory, a missing or read-only place: unusable input, not a traceback
        click.echo(f"--html: cannot write {html_file}: {exc.strerror}", err=True)
        sys.exit(2)
    click.echo(f"wrote {html_file} ({'intact' if integrity.ok else 'integrity problems: see the report'})")


def _skipped(path: Path, why: str) -> None:
    click.echo(f"skipped {path}: {why} (`broker audit verify` names it as a problem)", err=True)


def _pseudonym_keys(config_dir: Path | None, key_files: tuple[Path, ...]) -> list[bytes]:
    """The pseudonym keys to compute with: the configuration's ``audit.pseudonym_key`` (--config) and each
    --key-file (an earlier key: a record keeps the pseudonym it was written with, docs/audit.md, Privacy)."""
    keys: list[bytes] = []
    if config_dir is not None:
        keys.append(settings_or_exit(config_dir).broker.audit.pseudonym_key.value)
    for key_file in key_files:
        try:
            key = key_file.read_bytes()
        except OSError as exc:  # a directory, a file not readable to this user
            click.echo(f"--key-file: cannot read {key_file}: {exc.strerror}", err=True)
            sys.exit(2)
        key = key.strip() if key.isascii() else key  # as the configuration reads a secret file
        if key not in keys:
            keys.append(key)
    if not keys:
        click.echo("the pseudonym key is needed: --config DIR or --key-file F", err=True)
        sys.exit(2)
    return keys


def _pseudonyms_from_stdin(config_dir: Path | None, key_files: tuple[Path, ...] = ()) -> list[str]:
    """The pseudonyms of the personnummer read from standard input, one per key (:func:`_pseudonym_keys`)."""
    keys = _pseudonym_keys(config_dir, key_files)
    number = sys.stdin.readline().strip().replace("-", "")
    if len(number) == 10 and number.isdigit() and luhn_valid(number):
        click.echo("give the 12-digit form (YYYYMMDDNNNN)", err=True)
        sys.exit(2)
    try:
        check_personnummer(number, dt.datetime.now(dt.UTC).date())  # no one is logged in before birth
    except ValueError as exc:
        click.echo(f"not a personnummer: {exc}", err=True)
        sys.exit(2)
    return [Pseudonymiser(key).personnummer(number) for key in keys]


@audit.command("pseudonym")
@_config
@click.option("--key-file", "key_files", multiple=True, type=click.Path(path_type=Path, exists=True),
              help="a pseudonym key itself (an earlier audit.pseudonym_key too); repeatable")
def pseudonym_command(config_dir: Path | None, key_files: tuple[Path, ...]) -> None:
    """Print the audit pseudonym of a personnummer read from standard input (never from the command line,
    so it stays out of shell history): `broker audit pseudonym --config DIR` then type it, or pipe it. One line
    per key: the configuration's first, then each --key-file's."""
    for pseudonym in _pseudonyms_from_stdin(config_dir, key_files):
        click.echo(pseudonym)


@audit.command("keygen")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="private key file to write")
def keygen_command(out: Path) -> None:
    """Make an Ed25519 audit signing key (and OUT.pub, its public half for reviewers)."""
    public = out.with_name(out.name + ".pub")
    if out.exists():
        click.echo(f"{out} exists; not overwriting a signing key", err=True)
        sys.exit(2)
    if public.is_file() or public.is_symlink():  # the public half reviewers verify with, its key kept elsewhere
        click.echo(f"{public} exists; not overwriting the public key reviewers verify with", err=True)
        sys.exit(2)
    key = Ed25519PrivateKey.generate()
    created = False
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never readable by others, not even briefly
        created = True
        with os.fdopen(fd, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        public.write_bytes(public_pem(key.public_key()))
    except OSError as exc:  # under a file, a missing or read-only place: unusable input, not a traceback
        if created:  # ours (O_EXCL): a private key without its public half, or cut short, would block the next run
            out.unlink(missing_ok=True)
        click.echo(f"--out: cannot write {exc.filename or out}: {exc.strerror}", err=True)
        sys.exit(2)
    click.echo(f"wrote {out} (keep it secret) and {public}; key id {key_id(key.public_key())}")
