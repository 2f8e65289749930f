"""Everything in the configuration with an end date, for /metrics and the status page."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from broker.config.loader import Settings
from broker.readiness.trust import name_of
from broker.saml.upstream_metadata import UpstreamMetadata


@dataclass(frozen=True)
class Expiry:
    kind: str            # trust_anchor, intermediate, idp_metadata, idp_signing_certificate, broker_key
    subject: str
    municipality: str    # "" for the broker's own keys
    not_after: dt.datetime


def expiries(settings: Settings, metadata: UpstreamMetadata | None) -> list[Expiry]:
    found: list[Expiry] = []
    for m in settings.municipalities.values():
        cl = m.config.certificate
        if cl is not None:
            found += [Expiry("trust_anchor", name_of(c), m.id, c.not_valid_after_utc) for c in cl.anchors()]
            found += [Expiry("intermediate", name_of(c), m.id, c.not_valid_after_utc)
                      for c in cl.intermediate_certificates()]
        if m.config.saml is not None:
            idp = m.idp_metadata
            if metadata is not None:
                status = metadata.status().get(m.id, {})
                if status.get("valid_until"):
                    found.append(Expiry("idp_metadata", m.config.saml.entity_id, m.id,
                                        dt.datetime.fromisoformat(str(status["valid_until"]))))
                idp = metadata.current(m.id) or idp
            elif idp is not None and idp.valid_until is not None:
                found.append(Expiry("idp_metadata", m.config.saml.entity_id, m.id, idp.valid_until))
            if idp is not None:
                found += [Expiry("idp_signing_certificate", name_of(c), m.id, c.not_valid_after_utc)
                          for c in idp.signing_certificates]
    broker = settings.broker
    keys = [("idp signing", broker.idp.signing.certificate.certificate)]
    if broker.sp is not None:
        keys.append(("sp signing", broker.sp.signing.certificate.certificate))
        keys += [(f"sp decryption {i + 1}", pair.certificate.certificate)
                 for i, pair in enumerate(broker.sp.decryption)]
    found += [Expiry("broker_key", what, "", cert.not_valid_after_utc) for what, cert in keys]
    return found
