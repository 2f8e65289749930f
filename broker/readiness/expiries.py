"""Everything in the configuration with an end date, for /metrics and the status page."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from broker.config.loader import Settings
from broker.pki.revocation.crls import CrlStore
from broker.readiness.trust import name_of
from broker.saml.upstream_metadata import UpstreamMetadata


@dataclass(frozen=True)
class Expiry:
    kind: str            # trust_anchor, intermediate, crl_file, idp_metadata, idp_signing_certificate, broker_key
    subject: str
    municipality: str    # "" for the broker's own keys
    not_after: dt.datetime


def expiries(settings: Settings, metadata: UpstreamMetadata | None, crls: CrlStore | None = None) -> list[Expiry]:
    """``crls``: the process's CRL store, whose copy of a CRL file is the one re-read when the file changed (else
    the copy read with the configuration). A CRL file's end is its nextUpdate (RFC 5280 §5.1.2.5): nothing renews
    it but the operator, and past it a login that needs it fails closed."""
    found: list[Expiry] = []
    held = {} if crls is None else {s.source.location: s.crl for s in crls.states()
                                    if s.source.kind == "file" and s.crl is not None}
    for m in settings.municipalities.values():
        cl = m.config.certificate
        if cl is not None:
            found += [Expiry("trust_anchor", name_of(c), m.id, c.not_valid_after_utc) for c in cl.anchors()]
            found += [Expiry("intermediate", name_of(c), m.id, c.not_valid_after_utc)
                      for c in cl.intermediate_certificates()]
            if cl.revocation.mode == "check" and "crl" in cl.revocation.methods:
                for f in cl.revocation.crl.files:
                    current = held.get(str(f.path))
                    until = current.next_update if current is not None else f.crl.next_update_utc
                    if until is not None:
                        found.append(Expiry("crl_file", str(f.path), m.id, until))
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
