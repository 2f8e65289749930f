"""Revocation test material: certificates that name loopback OCSP responders and CRL servers, and policies.

The demo's certificate builder issues certificates without Authority
Information Access or CRL distribution points. ``with_pointers`` re-signs a
certificate with those extensions added (RFC 5280 §4.2.2.1 id-ad-ocsp,
§4.2.1.13), so the engine's discovery from the certificate itself can be
driven against the servers of tests/factories (``OcspResponder``,
``FileServer``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import AuthorityInformationAccessOID

from broker.clock import Clock
from broker.config.schema import CrlConfig, OcspConfig, RevocationConfig
from broker.config.values import Duration, HttpUrl
from broker.demo.certificates import CertificateAuthority, Issued, LeafProfile, PrivateKey
from broker.errors import CertificateRejected
from broker.pki.revocation.crls import CrlStore
from broker.pki.revocation.engine import RevocationChecker, RevocationOutcome, RevocationPolicy
from broker.pki.revocation.http import HttpFetcher
from broker.pki.truststore import revocation_policy
from broker.session.store import KeyValueStore
from tests.factories.pki import HSA_ID, POLICY_LOA3

NOW = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC)
SECOND = dt.timedelta(seconds=1)
MINUTE = dt.timedelta(minutes=1)
HOUR = dt.timedelta(hours=1)

Method = Literal["ocsp", "crl"]


def with_pointers(cert: x509.Certificate, signer_key: PrivateKey, *, ocsp_url: str | None = None,
                  crl_url: str | None = None, access: Sequence[x509.AccessDescription] = ()) -> x509.Certificate:
    """``cert`` (same subject, key, serial, validity and extensions) re-signed by ``signer_key`` with an
    AuthorityInformationAccess (the OCSP responder, then ``access``) and CRLDistributionPoints naming the
    given URLs."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(cert.subject)
        .issuer_name(cert.issuer)
        .public_key(cert.public_key())
        .serial_number(cert.serial_number)
        .not_valid_before(cert.not_valid_before_utc)
        .not_valid_after(cert.not_valid_after_utc)
    )
    for ext in cert.extensions:
        if isinstance(ext.value, x509.AuthorityInformationAccess | x509.CRLDistributionPoints):
            continue
        builder = builder.add_extension(ext.value, critical=ext.critical)
    descriptions = list(access)
    if ocsp_url is not None:
        descriptions.insert(0, x509.AccessDescription(AuthorityInformationAccessOID.OCSP,
                                                      x509.UniformResourceIdentifier(ocsp_url)))
    if descriptions:
        builder = builder.add_extension(x509.AuthorityInformationAccess(descriptions), critical=False)
    if crl_url is not None:
        point = x509.DistributionPoint(full_name=[x509.UniformResourceIdentifier(crl_url)], relative_name=None,
                                       reasons=None, crl_issuer=None)
        builder = builder.add_extension(x509.CRLDistributionPoints([point]), critical=False)
    return builder.sign(signer_key, hashes.SHA256())


def person_ca(now: dt.datetime = NOW, name: str = "Kommun A") -> CertificateAuthority:
    """A CA that issues client certificates directly under it (the path is leaf, anchor)."""
    return CertificateAuthority.root(f"{name} Person CA", now, organization=name)


def issuing_under(root: CertificateAuthority, *, ocsp_url: str | None = None, crl_url: str | None = None,
                  name: str = "Kommun A") -> CertificateAuthority:
    """An issuing CA below ``root`` whose own certificate names the root's OCSP responder and CRL."""
    sub = root.subordinate(f"{name} Issuing CA", organization=name)
    return replace(sub, certificate=with_pointers(sub.certificate, root.key, ocsp_url=ocsp_url, crl_url=crl_url))


def leaf(ca: CertificateAuthority, *, ocsp_url: str | None = None, crl_url: str | None = None,
         serial: int | None = None, **profile: object) -> Issued:
    """A login certificate from ``ca`` (Anna, HSA-id, LoA 3 policy) naming the given responder and CRL."""
    base = LeafProfile(common_name="Anna Andersson", given_name="Anna", surname="Andersson",
                       serial_number=HSA_ID, policies=(POLICY_LOA3,))
    issued = ca.issue(replace(base, **profile), serial=serial)  # type: ignore[arg-type]
    if ocsp_url is None and crl_url is None:
        return issued
    return Issued(with_pointers(issued.certificate, ca.key, ocsp_url=ocsp_url, crl_url=crl_url), issued.key)


def impostor(ca: CertificateAuthority) -> CertificateAuthority:
    """A CA with ``ca``'s name but a key of its own: what it signs must not verify as ``ca``'s."""
    twin = CertificateAuthority.root("impostor", ca.now)
    return replace(twin, certificate=ca.certificate)


def policy(cas: Sequence[x509.Certificate], *, methods: tuple[Method, ...] = ("ocsp",),
           ocsp_url: str | None = None, failure: Literal["fail_closed", "soft_fail"] = "fail_closed",
           nonce: bool = False, ocsp_timeout: float = 3.0, max_response_bytes: int = 65536,
           cert_id_hash: Literal["sha1", "sha256"] = "sha1", distribution_points: bool = True,
           crl_urls: Sequence[str] = (), crl_files: Sequence[tuple[Path, x509.CertificateRevocationList]] = (),
           max_cache_time: float = 3600, clock_skew: float = 300,
           http_method: Literal["auto", "get", "post"] = "auto") -> RevocationPolicy:
    """A municipality's revocation policy as the loader builds it from ``revocation:`` in its file."""
    config = RevocationConfig(
        mode="check", methods=methods, failure=failure, clock_skew=Duration(clock_skew),
        max_cache_time=Duration(max_cache_time),
        ocsp=OcspConfig(url=HttpUrl(ocsp_url) if ocsp_url else None, nonce=nonce, cert_id_hash=cert_id_hash,
                        timeout=Duration(ocsp_timeout), connect_timeout=Duration(min(ocsp_timeout, 2.0)),
                        max_response_bytes=max_response_bytes, http_method=http_method),
        crl=CrlConfig(urls=tuple(HttpUrl(u) for u in crl_urls), distribution_points=distribution_points,
                      timeout=Duration(10)),
    )
    built, problems = revocation_policy(config, cas, crl_files)
    if problems:
        raise ValueError("; ".join(message for _, message in problems))
    return built


def checker(clock: Clock, *, shared: KeyValueStore | None = None,
            retry_after: dt.timedelta = dt.timedelta(seconds=10), refresh_interval: float = 0) -> RevocationChecker:
    """A checker with network access as one broker process builds it; no background work unless asked."""
    fetcher = HttpFetcher()
    return RevocationChecker(clock, crls=CrlStore(clock, fetcher=fetcher, shared=shared, retry_after=retry_after),
                             fetcher=fetcher, shared=shared, retry_after=retry_after,
                             refresh_interval=refresh_interval)


def check(engine: RevocationChecker, cert: x509.Certificate, ca: CertificateAuthority,
          pol: RevocationPolicy) -> RevocationOutcome:
    """The leaf directly under its trust anchor: one certificate to establish."""
    engine.register(pol)
    return engine.check((cert, ca.certificate), pol)


def refused(engine: RevocationChecker, cert: x509.Certificate, ca: CertificateAuthority,
            pol: RevocationPolicy) -> CertificateRejected:
    with pytest.raises(CertificateRejected) as caught:
        check(engine, cert, ca, pol)
    return caught.value


# --- the example configuration's Kommun A, pointed at loopback revocation servers ---------------------


def load_ca(folder: Path, name: str, now: dt.datetime, parent: CertificateAuthority | None = None
            ) -> CertificateAuthority:
    """A CA of the generated demo PKI (``<folder>/<name>.pem`` and ``.key``) as a CertificateAuthority."""
    cert = x509.load_pem_x509_certificate((folder / f"{name}.pem").read_bytes())
    key = serialization.load_pem_private_key((folder / f"{name}.key").read_bytes(), password=None)
    return CertificateAuthority(cert, key, now, parent=parent)  # type: ignore[arg-type]


def demo_cas(demo_root: Path, municipality: str, now: dt.datetime) -> tuple[CertificateAuthority,
                                                                            CertificateAuthority]:
    """(root CA, issuing CA) of a municipality of the generated demo material."""
    folder = demo_root / "pki" / municipality
    root = load_ca(folder, "root-ca", now)
    return root, load_ca(folder, "issuing-ca", now, parent=root)


def point_issuing_ca_at(config_dir: Path, municipality: str, root: CertificateAuthority,
                        issuing: CertificateAuthority, *, ocsp_url: str | None = None,
                        crl_url: str | None = None) -> CertificateAuthority:
    """Replace the configured issuing CA certificate by the same one (name, key, serial) with AIA/CDP pointing at
    the root's revocation servers: with OCSP only, every certificate below the anchor needs its own responder."""
    cert = with_pointers(issuing.certificate, root.key, ocsp_url=ocsp_url, crl_url=crl_url)
    (config_dir / "certs" / municipality / "issuing-ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return replace(issuing, certificate=cert)


def set_revocation(config_dir: Path, municipality: str, revocation: dict[str, Any]) -> None:
    """Write ``certificate.revocation`` of municipalities/<municipality>.yaml."""
    path = config_dir / "municipalities" / f"{municipality}.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["certificate"]["revocation"] = revocation
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def set_shared_redis(config_dir: Path, url: str, prefix: str) -> None:
    """broker.yaml's redis section: what `broker revocation status` reads the shared records with."""
    path = config_dir / "broker.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["redis"] = {"url": url, "key_prefix": prefix}
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
