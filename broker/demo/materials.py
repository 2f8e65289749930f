"""The demo's generated material: PKI, keys, SP metadata and a working copy of config/example.

Layout of the working directory (default ``var/demo``, git-ignored)::

    config/            copy of config/example plus generated certs/, keys/, metadata/
    pki/               CA keys (to re-issue CRLs at every start)
    tls/               the demo server's TLS CA, certificate and key
    sp/                the demo SP's key and certificate
    users/<name>.pem|.key|.p12   client certificates (PKCS#12 password: "demo")

Material is generated once and reused (so a PKCS#12 imported into a browser
stays valid); CRLs are re-issued at every start so they never go stale.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from broker.demo.certificates import (
    EMAIL_PROTECTION,
    SERVER_AUTH,
    CertificateAuthority,
    Issued,
    LeafProfile,
    write_key,
    write_pem,
)
from broker.demo.idp import DemoIdpSettings, idp_metadata
from broker.demo.sp import DemoSpSettings, sp_metadata

P12_PASSWORD = b"demo"
EXAMPLE_BASE_URL = "https://localhost:8443"  # the address config/example is written for


@dataclass(frozen=True)
class DemoUser:
    name: str
    municipality: str | None
    expected: str          # "success" or the reason code the broker must give
    about: str


DEMO_USERS: tuple[DemoUser, ...] = (
    DemoUser("anna", "kommun-a", "success", "valid SITHS-style card, HSA-id, LoA 3"),
    DemoUser("bo", "kommun-b", "success", "valid Efos-style certificate, personnummer, LoA 2"),
    DemoUser("cecilia", "kommun-a", "revoked", "revoked (listed in Kommun A's CRL)"),
    DemoUser("david", "kommun-a", "certificate_expired", "expired last month"),
    DemoUser("erik", "kommun-b", "eku_not_client_auth", "e-mail protection certificate, not for login"),
    DemoUser("greta", "kommun-b", "revoked", "revoked; Kommun B's OCSP responder says so"),
    DemoUser("fatima", None, "issuer_unknown", "issued by a CA no municipality uses"),
)

_MUNICIPALITIES = {
    "kommun-a": ("Kommun A", "2.999.1.3"),
    "kommun-b": ("Kommun B", "2.999.2.2"),
}


@dataclass(frozen=True)
class DemoLayout:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config"

    @property
    def users(self) -> Path:
        return self.root / "users"

    @property
    def tls(self) -> Path:
        return self.root / "tls"

    @property
    def sp(self) -> DemoSpSettings:
        return DemoSpSettings(base_url="", key_file=self.root / "sp" / "sp.key",
                              cert_file=self.root / "sp" / "sp.crt")

    def sp_settings(self, base_url: str, xmlsec_binary: str | None) -> DemoSpSettings:
        return DemoSpSettings(base_url=base_url + "/demo-sp", key_file=self.root / "sp" / "sp.key",
                              cert_file=self.root / "sp" / "sp.crt", xmlsec_binary=xmlsec_binary)

    def idp_settings(self, base_url: str, xmlsec_binary: str | None) -> DemoIdpSettings:
        """Kommun C's own IdP (login: saml)."""
        return DemoIdpSettings(base_url=base_url + "/demo-idp", key_file=self.root / "idp" / "idp.key",
                               cert_file=self.root / "idp" / "idp.crt", xmlsec_binary=xmlsec_binary)


def revocation_base_url(base_url: str) -> str:
    """The demo's plain-HTTP revocation server (OCSP and CRLs): the HTTPS port plus one."""
    host_port = base_url.split("://", 1)[1]
    host, port = host_port.rsplit(":", 1)
    return f"http://{host}:{int(port) + 1}"


# test numbers (serial 98xx is reserved for tests by Skatteverket; 19121212-1212 is "Tolvan Tolvansson")
_PERSONNUMMER = {"bo": "191212121212", "erik": "191212121212", "greta": "198001019804"}


def _profile(user: DemoUser, now: dt.datetime, policy: str, revocation_url: str | None = None) -> LeafProfile:
    given, surname = user.name.capitalize(), "Demosson"
    # Kommun B's identity rule reads a personnummer (Skatteverket's test numbers); its certificates name the
    # demo's OCSP responder and CRL distribution point.
    kommun_b = user.municipality == "kommun-b"
    serial = _PERSONNUMMER.get(user.name, "191212121212") if kommun_b else f"SE2120001009-{user.name}"
    profile = LeafProfile(common_name=f"{given} {surname}", given_name=given, surname=surname,
                          serial_number=serial, policies=(policy,))
    if kommun_b and revocation_url:
        profile = replace(profile, ocsp_url=f"{revocation_url}/ocsp/kommun-b",
                          crl_url=f"{revocation_url}/crl/kommun-b/issuing-ca.crl")
    if user.expected == "certificate_expired":
        return replace(profile, valid_from=now - dt.timedelta(days=400), valid_until=now - dt.timedelta(days=30))
    if user.expected == "eku_not_client_auth":
        return replace(profile, eku=(EMAIL_PROTECTION,))
    return profile


def _load_ca(folder: Path, now: dt.datetime, parent: CertificateAuthority | None) -> CertificateAuthority:
    cert = x509.load_pem_x509_certificate((folder.with_suffix(".pem")).read_bytes())
    key = load_pem_private_key((folder.with_suffix(".key")).read_bytes(), password=None)
    return CertificateAuthority(cert, key, now, parent=parent)  # type: ignore[arg-type]


def _save_ca(ca: CertificateAuthority, pki_dir: Path, config_certs: Path, name: str) -> None:
    write_key(pki_dir / f"{name}.key", ca.key)
    write_pem(pki_dir / f"{name}.pem", ca.certificate)
    write_pem(config_certs / f"{name}.pem", ca.certificate)


def generate(workdir: Path, example: Path, now: dt.datetime, *, base_url: str = EXAMPLE_BASE_URL,
             regenerate: bool = False) -> DemoLayout:
    """Create (or refresh) the demo working directory; return its layout."""
    layout = DemoLayout(workdir)
    marker = workdir / "generated.json"
    if marker.exists() and json.loads(marker.read_text()).get("base_url") != base_url:
        regenerate = True  # the SP metadata and the TLS certificate name the address
    if regenerate and workdir.exists():
        shutil.rmtree(workdir)
    config = layout.config
    # The YAML always comes fresh from config/example, so the demo runs on exactly what is committed.
    for sub in ("", "municipalities", "service-providers"):
        (config / sub).mkdir(parents=True, exist_ok=True)
        for f in sorted((example / sub).glob("*.yaml")):
            text = f.read_text(encoding="utf-8").replace(EXAMPLE_BASE_URL, base_url)
            (config / sub / f.name).write_text(text, encoding="utf-8")
    (config / "audit").mkdir(exist_ok=True)

    fresh = not marker.exists()
    for mid, (label, policy) in _MUNICIPALITIES.items():
        pki = workdir / "pki" / mid
        certs = config / "certs" / mid
        if fresh:
            root = CertificateAuthority.root(f"{label} Demo Root CA", now, organization=label, key="ec384")
            issuing = root.subordinate(f"{label} Demo Person CA", organization=label, policies=(policy,))
            _save_ca(root, pki, certs, "root-ca")
            _save_ca(issuing, pki, certs, "issuing-ca")
        root = _load_ca(pki / "root-ca", now, None)
        issuing = _load_ca(pki / "issuing-ca", now, root)
        if fresh:
            for user in DEMO_USERS:
                if user.municipality != mid:
                    continue
                issued = issuing.issue(_profile(user, now, policy, revocation_base_url(base_url)))
                _write_user(layout, user.name, issued, issuing.chain())
                if user.expected == "revoked":
                    listed = json.loads((pki / "revoked.json").read_text()) if (pki / "revoked.json").exists() \
                        else []
                    (pki / "revoked.json").write_text(json.dumps([*listed, issued.certificate.serial_number]))
        revoked = json.loads((pki / "revoked.json").read_text()) if (pki / "revoked.json").exists() else []
        for serial in revoked:
            issuing.revoked[int(serial)] = now - dt.timedelta(days=2)
        # configured CRL files, which nothing renews until the demo is set up again: current beyond the example's
        # readiness.expiry_warning (30 days), as readiness asks of CRL files
        lasting = now + dt.timedelta(days=90)
        write_pem(certs / "issuing-ca.crl", issuing.crl(next_update=lasting))
        write_pem(certs / "root-ca.crl", root.crl(next_update=lasting))

    if fresh:
        stranger_root = CertificateAuthority.root("Unknown Demo Root CA", now, organization="Elsewhere")
        stranger_ca = stranger_root.subordinate("Unknown Demo Person CA", organization="Elsewhere",
                                                policies=("2.999.1.3",))
        fatima = stranger_ca.issue(_profile(DEMO_USERS[-1], now, "2.999.1.3"))
        _write_user(layout, "fatima", fatima, stranger_ca.chain())
        _generate_keys(layout, now, base_url)
        marker.write_text(json.dumps({"generated": now.isoformat(), "base_url": base_url}))
    _ensure_audit_key(config / "keys")
    _ensure_federation(layout, now, base_url)
    _ensure_operations(layout)
    return layout


def _write_user(layout: DemoLayout, name: str, issued: Issued, chain: list[x509.Certificate]) -> None:
    users = layout.users
    users.mkdir(parents=True, exist_ok=True)
    (users / f"{name}.pem").write_bytes(issued.pem())
    write_key(users / f"{name}.key", issued.key)
    (users / f"{name}.p12").write_bytes(issued.pkcs12(P12_PASSWORD, name, chain))


def _generate_keys(layout: DemoLayout, now: dt.datetime, base_url: str) -> None:
    keys = layout.config / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    # The IdP's signing certificate: RSA-2048 (what SAML SPs universally accept), self-signed.
    signing = CertificateAuthority.root("Demo Broker IdP signing", now, key="rsa2048", valid_days=3650)
    write_key(keys / "idp-signing.key", signing.key)
    write_pem(keys / "idp-signing.crt", signing.certificate)
    for name in ("nameid.key", "audit-pseudonym.key"):
        path = keys / name
        path.write_text(secrets.token_hex(32) + "\n")
        path.chmod(0o600)
    _ensure_audit_key(keys)

    # The demo SP's key and its metadata, as its vendor would deliver them.
    sp_dir = layout.root / "sp"
    sp_ca = CertificateAuthority.root("Demo SP signing", now, key="rsa2048", valid_days=3650)
    write_key(sp_dir / "sp.key", sp_ca.key)
    write_pem(sp_dir / "sp.crt", sp_ca.certificate)
    metadata = layout.config / "metadata"
    metadata.mkdir(parents=True, exist_ok=True)
    (metadata / "demo-sp.xml").write_bytes(sp_metadata(layout.sp_settings(base_url, None)))

    # TLS for the demo server: a demo CA and a certificate for the host of base_url.
    tls = layout.tls
    tls_ca = CertificateAuthority.root("Broker Demo TLS CA", now, valid_days=3650)
    host = base_url.split("://", 1)[1].split("/", maxsplit=1)[0].rsplit(":", 1)[0]
    server = tls_ca.issue(LeafProfile(common_name=host, eku=(SERVER_AUTH,), san_dns=host, san_ip="127.0.0.1",
                                      valid_until=now + dt.timedelta(days=397)))
    write_pem(tls / "ca.pem", tls_ca.certificate)
    write_pem(tls / "server.pem", server.certificate, tls_ca.certificate)
    write_key(tls / "server.key", server.key)


def _ensure_federation(layout: DemoLayout, now: dt.datetime, base_url: str) -> None:
    """The broker's SP keys and Kommun C's IdP (key, certificate, metadata), made when missing."""
    keys = layout.config / "keys"
    for name, label in (("sp-signing", "Demo Broker SP signing"), ("sp-encryption", "Demo Broker SP encryption")):
        if not (keys / f"{name}.key").exists():
            issued = CertificateAuthority.root(label, now, key="rsa2048", valid_days=3650)
            write_key(keys / f"{name}.key", issued.key)
            write_pem(keys / f"{name}.crt", issued.certificate)
    idp_dir = layout.root / "idp"
    if not (idp_dir / "idp.key").exists():
        issued = CertificateAuthority.root("Kommun C Demo IdP signing", now, key="rsa2048", valid_days=3650)
        write_key(idp_dir / "idp.key", issued.key)
        write_pem(idp_dir / "idp.crt", issued.certificate)
    metadata = layout.config / "metadata" / "kommun-c-idp.xml"
    if not metadata.exists():
        metadata.parent.mkdir(parents=True, exist_ok=True)
        metadata.write_bytes(idp_metadata(layout.idp_settings(base_url, None)))


def _ensure_operations(layout: DemoLayout) -> None:
    """The admin token, and each certificate municipality's readiness sample (a demo user's certificate)."""
    token = layout.config / "keys" / "admin.token"
    if not token.exists():
        token.write_text(secrets.token_hex(32) + "\n")
        token.chmod(0o600)
    for mid, user in (("kommun-a", "anna"), ("kommun-b", "bo")):
        certs = layout.config / "certs" / mid
        for suffix in ("pem", "key"):
            target = certs / f"sample.{suffix}"
            if not target.exists():
                shutil.copyfile(layout.users / f"{user}.{suffix}", target)
                if suffix == "key":
                    target.chmod(0o600)


def _ensure_audit_key(keys: Path) -> None:
    """The audit signing key (added after the first demo versions: made when missing)."""
    if not (keys / "audit-signing.key").exists():
        write_key(keys / "audit-signing.key", Ed25519PrivateKey.generate())
