"""The broker's own side: its signing and decryption certificates, and the shared session store."""

from __future__ import annotations

import dataclasses
import datetime as dt
import stat
from pathlib import Path

from broker.config.loader import ServiceProvider, Settings
from broker.config.values import Ed25519KeyFile, PrivateKeyFile, SecretFile
from broker.errors import DependencyUnavailable, SessionStoreUnavailable
from broker.readiness.model import Check
from broker.readiness.trust import validity_check
from broker.session.store import KeyValueStore


def broker_checks(settings: Settings, now: dt.datetime, window: dt.timedelta,
                  store: KeyValueStore | None) -> list[Check]:
    broker = settings.broker
    idp_renew = ("Make a new key and certificate and list the certificate in idp.signing.also_published (the metadata "
                 "then carries both); once every SP has fetched it, make it idp.signing and list the old one there "
                 "instead (docs/deployment.md, Key rollover).")
    checks = [validity_check("broker.idp_signing", "IdP signing certificate",
                             broker.idp.signing.certificate.certificate, now, window, fix=idp_renew)]
    if broker.sp is not None:
        checks.append(validity_check("broker.sp_signing", "SP signing certificate",
                                     broker.sp.signing.certificate.certificate, now, window,
                                     fix="Make a new key and certificate and list the certificate in "
                                         "sp.signing.also_published (the SP metadata then carries both); once "
                                         "every municipal IdP has fetched it, make it sp.signing and list the old "
                                         "one there instead (docs/deployment.md, Key rollover)."))
        checks.append(validity_check("broker.sp_decryption", "SP decryption certificate",
                                     broker.sp.decryption[0].certificate.certificate, now, window,
                                     fix="List a new decryption key first in sp.decryption (keep the old one "
                                         "second until every IdP encrypts to the new certificate)."))
    for sp in settings.service_providers.values():
        checks.append(_sp_metadata_check(sp, now, window))
        checks.append(_sp_endpoints_check(sp))
        if sp.encrypter is not None:
            # keys in metadata are containers: an expired certificate still carries a usable key, so never FAIL
            checks.append(validity_check("broker.sp_encryption_key", f"{sp.id}: encryption certificate",
                                         sp.encrypter.certificate, now, window, never_fail=True,
                                         fix="Ask the SP's vendor about its encryption key rollover, then update the "
                                             f"metadata file {sp.config.metadata.path.name}."))
    checks.extend(secret_file_checks(settings))
    checks.append(_session_cookie_check(settings.broker.session.cookie_name))
    if store is not None:
        checks.append(_session_store_check(store))
    return checks


def _session_store_check(store: KeyValueStore) -> Check:
    """The store takes a write, as every login needs (:meth:`KeyValueStore.ping` writes a key): a server that is
    not reached, and one that answers but refuses the write, fail with their own titles and fixes."""
    try:
        store.ping()
    except DependencyUnavailable as exc:
        if isinstance(exc, SessionStoreUnavailable) and exc.answered:
            return Check("broker.session_store", "fail", "session store refuses writes", exc.detail,
                         "Redis is reached but refuses the write every login needs. Used memory over maxmemory: "
                         "give it more memory or find what fills it; keep noeviction, since evicting the broker's "
                         "keys would drop sessions, replay records and rate-limit counters. A read only replica: "
                         "point the broker at the primary (or repair the failover). No permissions: let the ACL "
                         "user write the broker's key_prefix.")
        return Check("broker.session_store", "fail", "session store unreachable", exc.detail,
                     "Start Redis or fix redis in broker.yaml / REDIS_URL; the broker refuses logins without it.")
    return Check("broker.session_store", "pass", "session store takes writes", "a Redis write (SET) succeeded")


def _session_cookie_check(name: str) -> Check:
    """The session cookie's name keeps the ``__Host-`` prefix (RFC 6265bis §4.1.3.2), without which a page on a
    sibling host can plant its own session in a user's browser (docs/security.md, Cookies)."""
    if name.startswith("__Host-"):
        return Check("broker.session_cookie", "pass", "session cookie host-only", f"{name}: only this host sets it")
    return Check("broker.session_cookie", "warn", "session cookie can be planted",
                 f"{name}: without the __Host- prefix, any host under the same domain can set this cookie in a "
                 "user's browser and log the user in as someone else",
                 "Set session.cookie_name to __Host-broker_session (users log in once more after the change).")


def _sp_metadata_check(sp: ServiceProvider, now: dt.datetime, window: dt.timedelta) -> Check:
    """An SP's metadata file past its validUntil (SAML Metadata §2.3.1) is stale: the broker still uses it (regional
    IT configured it), but the SP's keys or endpoints may have moved on."""
    until = sp.metadata.valid_until
    where = f"service-providers/{sp.id}.yaml: {sp.config.metadata.path.name}"
    fix = "Get current metadata from the SP's vendor and replace the file (`broker config check`, then reload)."
    if until is None:
        return Check("broker.sp_metadata", "pass", f"{sp.id}: metadata has no validUntil", where, None, sp.id)
    left = until - now
    if left <= dt.timedelta(0):
        return Check("broker.sp_metadata", "fail", f"{sp.id}: metadata expired",
                     f"{where}: validUntil {until:%Y-%m-%d %H:%M} UTC ({(now - until).days} days ago)", fix, sp.id,
                     until)
    if left <= window:
        return Check("broker.sp_metadata", "warn", f"{sp.id}: metadata expires soon",
                     f"{where}: validUntil {until:%Y-%m-%d %H:%M} UTC (in {left.days} days)", fix, sp.id, until)
    return Check("broker.sp_metadata", "pass", f"{sp.id}: metadata valid", f"{where}: validUntil {until:%Y-%m-%d}",
                 None, sp.id, until)


def _sp_endpoints_check(sp: ServiceProvider) -> Check:
    """The browser posts the SP's assertions (personal data, a bearer credential) to its AssertionConsumerService
    and its logout messages to its SingleLogoutService: over plain http, anyone on the way reads and replays them
    (SAML Bindings §3.5.5.1, Profiles §4.1.4.5 ask for TLS)."""
    plain = sorted({e.location for e in (*sp.metadata.assertion_consumer_services, *sp.metadata.single_logout_services,)
                    if not e.location.lower().startswith("https://")}
                   | {e.response_location for e in sp.metadata.single_logout_services
                      if e.response_location and not e.response_location.lower().startswith("https://")})
    where = f"service-providers/{sp.id}.yaml: {sp.config.metadata.path.name}"
    if plain:
        return Check("broker.sp_endpoints", "warn", f"{sp.id}: endpoints without TLS",
                     f"{where}: {', '.join(plain)}",
                     "Ask the SP's vendor for https:// endpoints: assertions and logout messages carry personal "
                     "data and log users in.", sp.id)
    return Check("broker.sp_endpoints", "pass", f"{sp.id}: endpoints use https", where, None, sp.id)


_SECRET_TYPES = (PrivateKeyFile, SecretFile, Ed25519KeyFile)


def secret_file_checks(settings: Settings) -> list[Check]:
    """Every private key and secret the configuration names (signing and decryption keys, the NameID and
    pseudonym keys, the audit signing key, the metrics token, sample keys) must be readable by its owner only:
    a key others on the host can read is a key they can sign or decrypt with. WARN, not FAIL: the broker works,
    and some platforms mount secrets readable by all (Kubernetes' defaultMode 0644)."""
    found: dict[Path, str] = {}

    def walk(value: object, where: str) -> None:
        if isinstance(value, _SECRET_TYPES):
            found.setdefault(value.path, where)
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            for f in dataclasses.fields(value):
                walk(getattr(value, f.name), f"{where}.{f.name}" if where else f.name)
        elif isinstance(value, tuple | list):
            for i, item in enumerate(value):
                walk(item, f"{where}[{i}]")

    walk(settings.broker, "")
    for mid, municipality in settings.municipalities.items():
        walk(municipality.config, f"municipalities/{mid}.yaml: ")
    checks = []
    for path, where in sorted(found.items()):
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except OSError as exc:
            checks.append(Check("broker.secret_permissions", "warn", "secret file not readable now",
                                f"{where.rstrip(': ')}: {path}: {exc.strerror}", "Check the file.", str(path)))
            continue
        if mode & 0o077:
            checks.append(Check("broker.secret_permissions", "warn", "secret file readable by others",
                                f"{where.rstrip(': ')}: {path} has mode {mode:04o}: readable by "
                                + " and ".join(w for w, bits in (("its group", 0o070), ("all users", 0o007))
                                               if mode & bits),
                                f"chmod 600 {path} (owned by the user the broker runs as; Kubernetes: "
                                "defaultMode 0400 on the secret volume).", str(path)))
    if not checks and found:
        checks.append(Check("broker.secret_permissions", "pass", "secret files private",
                            f"{len(found)} key and secret files readable by their owner only"))
    return checks
