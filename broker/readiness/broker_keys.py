"""The broker's own side: its signing and decryption certificates, and the shared session store."""

from __future__ import annotations

import datetime as dt

from broker.config.loader import Settings
from broker.errors import DependencyUnavailable
from broker.readiness.model import Check
from broker.readiness.trust import validity_check
from broker.session.store import KeyValueStore


def broker_checks(settings: Settings, now: dt.datetime, window: dt.timedelta,
                  store: KeyValueStore | None) -> list[Check]:
    broker = settings.broker
    renew = "Make a new key and certificate, publish it in the broker's metadata next to the old one, wait until " \
            "every {peer} has fetched it, then switch."
    checks = [validity_check("broker.idp_signing", "IdP signing certificate",
                             broker.idp.signing.certificate.certificate, now, window, fix=renew.format(peer="SP"))]
    if broker.sp is not None:
        checks.append(validity_check("broker.sp_signing", "SP signing certificate",
                                     broker.sp.signing.certificate.certificate, now, window,
                                     fix=renew.format(peer="municipal IdP")))
        checks.append(validity_check("broker.sp_decryption", "SP decryption certificate",
                                     broker.sp.decryption[0].certificate.certificate, now, window,
                                     fix="List a new decryption key first in sp.decryption (keep the old one "
                                         "second until every IdP encrypts to the new certificate)."))
    if store is not None:
        try:
            store.ping()
            checks.append(Check("broker.session_store", "pass", "session store answers", "Redis PING answered"))
        except DependencyUnavailable as exc:
            checks.append(Check("broker.session_store", "fail", "session store unreachable", exc.detail,
                                "Start Redis or fix redis in broker.yaml / REDIS_URL; the broker refuses logins "
                                "without it."))
    return checks
