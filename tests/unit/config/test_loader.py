"""load_settings: the configuration directory, its file-backed values and the checks across files.

A configuration that loads is one whose files parse, whose keys belong to
their certificates, whose intermediates and CRLs verify against the
municipality's own CAs, and whose references between files resolve. Anything
else is a ConfigIssue pointing at the file, line and key to fix.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import ipaddress
import operator
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID

from broker.config.loader import Settings, load_settings
from broker.config.schema import IdentityRule, LocalizedText, PolicyMapping
from broker.config.values import Duration
from broker.demo.certificates import CertificateAuthority, LeafProfile, new_key, write_key, write_pem
from tests.factories.pki_cases import reissue, with_duplicate_extension
from tests.unit.config.editing import (
    BROKER,
    DEMO_SP,
    KOMMUN_A,
    KOMMUN_B,
    Edit,
    Expected,
    assert_issues,
    combined,
    load_issues,
    replace_once,
    replacing,
    replacing_block,
)

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)  # loading checks no validity dates; any instant will do
SP_ENTITY_ID = "https://localhost:8443/demo-sp/metadata"


def check(config_dir: Path, edit: Edit, expected: list[Expected]) -> None:
    edit(config_dir)
    assert_issues(load_issues(config_dir), expected, config_dir)


# --- certificate material for the cases -------------------------------------------------


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _stranger() -> CertificateAuthority:
    return CertificateAuthority.root("Stranger Root CA", NOW)


def _impostor(config_dir: Path, rel: str) -> CertificateAuthority:
    """A CA that copies the name (the whole certificate) of ``rel`` but holds a key of its own."""
    real = x509.load_pem_x509_certificate((config_dir / rel).read_bytes())
    return CertificateAuthority(real, new_key("ec256"), NOW)


def _self_signed(*, basic_constraints: x509.BasicConstraints | None, key_cert_sign: bool) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Odd Root CA")])
    builder = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=365))
        .add_extension(x509.KeyUsage(False, False, False, False, False, key_cert_sign, True, False, False),
                       critical=True)
    )
    if basic_constraints is not None:
        builder = builder.add_extension(basic_constraints, critical=True)
    return _pem(builder.sign(key, hashes.SHA256()))


def _leaf() -> bytes:
    return _pem(_stranger().issue(LeafProfile(common_name="Anna Andersson")).certificate)


def _ca_with_key_usage_twice() -> bytes:
    """A self-signed CA certificate with two keyUsage extensions (RFC 5280 §4.2: "MUST NOT include more than one
    instance of a particular extension"); cryptography loads it and fails only when the extensions are read."""
    ca = CertificateAuthority.root("Odd Root CA", NOW)
    with_san = reissue(ca.certificate, ca, extra=[x509.SubjectAlternativeName([x509.DNSName("ca.example")])])
    return _pem(with_duplicate_extension(with_san, ca))


def _key_pem(key: Any, encryption: serialization.KeySerializationEncryption | None = None) -> bytes:
    pem: bytes = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   encryption or serialization.NoEncryption())
    return pem


# --- the example configuration -------------------------------------------------------------


def test_the_example_configuration_loads(config_dir: Path, demo_material: Any) -> None:
    settings = load_settings(config_dir)

    assert settings.config_dir == config_dir.resolve()
    assert list(settings.municipalities) == ["kommun-a", "kommun-b", "kommun-c"]
    assert list(settings.service_providers) == ["demo-sp"]
    a = settings.municipalities["kommun-a"].config
    assert (a.name, a.organization_number, a.status, a.login) == (
        LocalizedText(sv="Kommun A", en="Municipality A"), "2120001009", "active", "certificate")
    assert a.certificate.policies == (PolicyMapping(oid="2.999.1.3", loa="loa3"),)  # type: ignore[arg-type]
    assert a.certificate.identity == IdentityRule(type="hsa_id", source="subject_serial_number")
    assert (a.certificate.revocation.mode, a.certificate.revocation.methods) == ("check", ("crl",))
    assert [f.path.name for f in a.certificate.revocation.crl.files] == ["issuing-ca.crl", "root-ca.crl"]
    b = settings.municipalities["kommun-b"].config
    assert (b.certificate.identity.type, b.certificate.max_chain_depth) == ("personnummer", 4)
    c = settings.municipalities["kommun-c"].config
    assert (c.login, c.certificate) == ("saml", None)
    assert c.saml is not None
    assert c.saml.entity_id == "https://localhost:8443/demo-idp/metadata"
    idp = settings.broker.idp
    assert (idp.entity_id, idp.base_url) == ("https://localhost:8443/saml/idp/metadata", "https://localhost:8443")
    assert (idp.assertion_lifetime, idp.clock_skew, idp.metadata_validity) == (
        Duration(300), Duration(60), Duration(7 * 86400))
    session = settings.broker.session
    assert (session.idle_timeout, session.absolute_timeout) == (Duration(1800), Duration(8 * 3600))
    assert settings.broker.redis is None
    assert settings.broker.client_certificate.proxy.trusted_networks == ()
    audit = settings.broker.audit
    assert audit.directory.path == config_dir.resolve() / "audit"
    assert audit.signing_key.path == config_dir.resolve() / "keys" / "audit-signing.key"
    assert isinstance(audit.signing_key.key, ed25519.Ed25519PrivateKey)
    assert audit.pseudonym_key.value == (config_dir / "keys" / "audit-pseudonym.key").read_bytes().strip()
    assert audit.verification_keys == ()
    assert (audit.client_address, audit.checkpoint_interval, audit.rotate_bytes, audit.rotate_interval) == (
        "clear", Duration(60), 64 * 1024 * 1024, Duration(86400))
    assert (audit.forward.syslog, audit.forward.stdout) == (None, False)
    sp = settings.sp_by_entity_id(SP_ENTITY_ID)
    assert sp is not None
    assert (sp.id, sp.config.municipalities, sp.metadata.authn_requests_signed) == (
        "demo-sp", ("kommun-a", "kommun-b", "kommun-c"), True)
    assert settings.sp_by_entity_id("https://unknown.example.se/sp") is None
    assert [f.path.name for f in b.certificate.revocation.crl.files] == ["issuing-ca.crl", "root-ca.crl"]
    a_policy, b_policy = settings.trust.domains["kommun-a"].revocation, settings.trust.domains["kommun-b"].revocation
    assert a_policy is not None
    assert b_policy is not None
    assert [(s.kind, Path(s.location).name) for s in a_policy.crl_sources] == [
        ("file", "issuing-ca.crl"), ("file", "root-ca.crl")]
    assert {source_id for source_id, _crl in a_policy.preloaded} == {s.id for s in a_policy.crl_sources}
    anna = x509.load_pem_x509_certificate((demo_material.users / "anna.pem").read_bytes())
    bo = x509.load_pem_x509_certificate((demo_material.users / "bo.pem").read_bytes())
    assert settings.trust.for_issuer(anna).id == "kommun-a"
    assert settings.trust.for_issuer(bo).id == "kommun-b"


def test_files_other_than_yaml_in_the_directories_are_ignored(config_dir: Path) -> None:
    (config_dir / "municipalities" / "README.md").write_text("# notes\n")
    shutil.copy(config_dir / KOMMUN_A, config_dir / "municipalities" / "kommun-a.yaml.bak")
    (config_dir / "service-providers" / ".demo-sp.yaml.swp").write_bytes(b"\x00\x01")

    assert list(load_settings(config_dir).municipalities) == ["kommun-a", "kommun-b", "kommun-c"]


def test_mode_none_without_crl_files_loads_without_revocation_data(config_dir: Path) -> None:
    replacing_block(KOMMUN_B, "  revocation:", "  revocation:\n    mode: none\n")(config_dir)

    settings = load_settings(config_dir)

    assert settings.trust.domains["kommun-b"].revocation is None
    assert settings.trust.domains["kommun-a"].revocation is not None


@pytest.mark.parametrize(
    ("crl_block", "sources"),
    [
        pytest.param("    crl:\n      urls: [http://crl.kommun-a.example.se/person-ca.crl]\n"
                     "      distribution_points: false\n",
                     [("url", "http://crl.kommun-a.example.se/person-ca.crl")], id="urls-only"),
        pytest.param("    crl:\n      distribution_points: true\n", [], id="distribution-points-only"),
        pytest.param("", [], id="crl-settings-absent-distribution-points-by-default"),
    ],
)
def test_crl_sources_other_than_files_are_enough_for_the_crl_method(
    config_dir: Path, crl_block: str, sources: list[tuple[str, str]]
) -> None:
    replacing_block(KOMMUN_A, "    crl:", crl_block)(config_dir)

    policy = load_settings(config_dir).trust.domains["kommun-a"].revocation

    assert policy is not None
    assert [(s.kind, s.location) for s in policy.crl_sources] == sources
    assert policy.preloaded == ()


MUTATIONS = [
    pytest.param(lambda s: setattr(s, "broker", None), id="settings-field"),
    pytest.param(lambda s: operator.setitem(s.municipalities, "kommun-x", s.municipalities["kommun-a"]),
                 id="municipality-added"),
    pytest.param(lambda s: operator.delitem(s.service_providers, "demo-sp"), id="service-provider-removed"),
    pytest.param(lambda s: setattr(s.broker.session, "idle_timeout", Duration(10**9)), id="session-timeout"),
    pytest.param(lambda s: setattr(s.broker.idp.signing, "key", None), id="signing-key"),
    pytest.param(lambda s: setattr(s.municipalities["kommun-a"].config, "status", "suspended"),
                 id="municipality-status"),
    pytest.param(lambda s: setattr(s.municipalities["kommun-a"].config.certificate.policies[0], "loa", "loa4"),
                 id="policy-loa"),
    pytest.param(lambda s: operator.setitem(s.service_providers["demo-sp"].config.release, 0, "x"),
                 id="released-attributes"),
    pytest.param(lambda s: setattr(s.service_providers["demo-sp"].metadata, "assertion_consumer_services", ()),
                 id="sp-metadata"),
    pytest.param(lambda s: operator.setitem(s.trust.domains, "kommun-x", s.trust.domains["kommun-a"]),
                 id="trust-domain-added"),
    pytest.param(lambda s: setattr(s.trust.domains["kommun-a"], "status", "active"), id="trust-domain-status"),
    pytest.param(lambda s: operator.setitem(s.trust.domains["kommun-a"].policies, "2.999.9", None),
                 id="trust-domain-policies"),
    pytest.param(lambda s: setattr(s.trust, "domains", MappingProxyType({})), id="trust-index-replaced"),
    pytest.param(lambda s: setattr(s.broker.client_certificate.proxy.trusted_networks[0], "network",
                                   ipaddress.ip_network("0.0.0.0/0")), id="trusted-proxy-network-widened"),
]


@pytest.mark.parametrize("mutate", MUTATIONS)
def test_settings_cannot_be_changed_after_loading(config_dir: Path, mutate: Callable[[Settings], None]) -> None:
    # STYLE §5: settings are shared by every request; no request may change them.
    replacing(BROKER, "trusted_networks: []", "trusted_networks: [10.20.0.0/16]")(config_dir)
    settings = load_settings(config_dir)

    with pytest.raises((AttributeError, TypeError)):
        mutate(settings)


def test_settings_containers_are_read_only_views_and_tuples(config_dir: Path) -> None:
    settings = load_settings(config_dir)

    assert isinstance(settings.municipalities, MappingProxyType)
    assert isinstance(settings.service_providers, MappingProxyType)
    assert dataclasses.is_dataclass(settings)
    assert isinstance(settings.municipalities["kommun-a"].config.certificate.trust_anchors, tuple)


# --- the directory layout ---------------------------------------------------------------------


def test_a_missing_configuration_directory_is_one_issue(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"

    assert_issues(load_issues(missing), [Expected(str(missing), None, "", "configuration directory not found")],
                  tmp_path)


def _copy(src: str, dst: str) -> Edit:
    def edit(config_dir: Path) -> None:
        shutil.copy(config_dir / src, config_dir / dst)

    return edit


def _move(src: str, dst: str) -> Edit:
    def edit(config_dir: Path) -> None:
        (config_dir / src).rename(config_dir / dst)

    return edit


def _remove(rel: str) -> Edit:
    def edit(config_dir: Path) -> None:
        path = config_dir / rel
        shutil.rmtree(path) if path.is_dir() else path.unlink()

    return edit


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        pytest.param(_remove(BROKER), [Expected(BROKER, None, "", "file not found")], id="no-broker-yaml"),
        pytest.param(
            _remove("municipalities"),
            [Expected("municipalities/", None, "", "directory not found"),
             Expected(DEMO_SP, "municipalities:", "municipalities[0]",
                      "no municipality 'kommun-a' (expected a file municipalities/kommun-a.yaml)"),
             Expected(DEMO_SP, "municipalities:", "municipalities[1]", "no municipality 'kommun-b'"),
             Expected(DEMO_SP, "municipalities:", "municipalities[2]", "no municipality 'kommun-c'")],
            id="no-municipalities-directory",
        ),
        pytest.param(_remove("service-providers"),
                     [Expected("service-providers/", None, "", "directory not found")],
                     id="no-service-providers-directory"),
        pytest.param(_copy(KOMMUN_A, "municipalities/kommun-d.yml"),
                     [Expected("municipalities/kommun-d.yml", None, "", "use the .yaml extension")],
                     id="yml-extension"),
        pytest.param(
            _move(KOMMUN_B, "municipalities/kommun-b.yml"),
            [Expected("municipalities/kommun-b.yml", None, "", "use the .yaml extension"),
             Expected(DEMO_SP, "municipalities:", "municipalities[1]", "no municipality 'kommun-b'")],
            id="yml-extension-hides-a-referenced-municipality",
        ),
        pytest.param(_copy(DEMO_SP, "service-providers/demo-sp2.yml"),
                     [Expected("service-providers/demo-sp2.yml", None, "", "use the .yaml extension")],
                     id="yml-extension-service-provider"),
    ],
)
def test_the_directory_layout_is_checked(config_dir: Path, edit: Edit, expected: list[Expected]) -> None:
    check(config_dir, edit, expected)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("Kommun-C.yaml", id="upper-case"),
        pytest.param("kommun_c.yaml", id="underscore"),
        pytest.param("-kommun-c.yaml", id="leading-hyphen"),
        pytest.param("kommun c.yaml", id="space"),
        pytest.param("kommun-ö.yaml", id="non-ascii"),
        pytest.param("k" * 64 + ".yaml", id="longer-than-63"),
        pytest.param("kommun-d\n.yaml", id="newline-before-the-extension"),
    ],
)
def test_a_file_name_that_is_not_an_id_is_refused(config_dir: Path, name: str) -> None:
    check(config_dir, _copy(KOMMUN_A, f"municipalities/{name}"),
          [Expected(f"municipalities/{name}", None, "",
                    "file name must be an id: lower-case letters, digits and '-'")])


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda d: (d / "municipalities/.#kommun-a.yaml").symlink_to("root@host.12345:1700000000"),
                     id="emacs-lock-a-dangling-link"),
        pytest.param(lambda d: (d / "service-providers/.#demo-sp.yaml").symlink_to("root@host.12345:1700000000"),
                     id="emacs-lock-of-a-service-provider"),
        pytest.param(lambda d: (d / "municipalities/.kommun-a.yaml").write_text("name: [unfinished\n"),
                     id="hidden-copy"),
    ],
)
def test_hidden_files_in_the_directories_are_ignored(config_dir: Path, make: Edit) -> None:
    """An editor's lock or backup next to the file being edited blocked every reload ("file name must be an
    id", or the file not found)."""
    expected = set(load_settings(config_dir).municipalities)
    make(config_dir)

    assert set(load_settings(config_dir).municipalities) == expected


# --- file-backed values --------------------------------------------------------------------------


def _writing(rel: str, make: Callable[[], bytes]) -> Edit:
    def edit(config_dir: Path) -> None:
        (config_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        (config_dir / rel).write_bytes(make())

    return edit


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        pytest.param(b"0123456789abcdef\n", "is 16 bytes; at least 32 random bytes are required", id="16-hex-chars"),
        pytest.param(bytes(range(128, 159)), "is 31 bytes; at least 32", id="31-random-bytes"),
        pytest.param(b"", "is 0 bytes", id="empty"),
        pytest.param(b"  \n\n", "is 0 bytes", id="only-whitespace"),
    ],
)
def test_a_secret_shorter_than_32_bytes_is_refused(config_dir: Path, content: bytes, fragment: str) -> None:
    check(config_dir, _writing("keys/nameid.key", lambda: content),
          [Expected(BROKER, "nameid_key:", "idp.nameid_key", fragment)])


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        pytest.param(_remove("keys/nameid.key"), "secret file not found", id="missing"),
        pytest.param(combined(_remove("keys/nameid.key"), lambda d: (d / "keys/nameid.key").mkdir()),
                     "cannot read secret file", id="a-directory"),
    ],
)
def test_an_unreadable_secret_is_refused(config_dir: Path, edit: Edit, fragment: str) -> None:
    check(config_dir, edit, [Expected(BROKER, "nameid_key:", "idp.nameid_key", fragment)])


INLINE_SECRET = "S3cr3t-0f-th3-adm1n-t0k3n-pasted-inl1ne"


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        pytest.param(INLINE_SECRET, "secret file not found (the value is not shown: it may be a secret written "
                     "inline)", id="pasted-in-place-of-the-path"),
        pytest.param(INLINE_SECRET * 10, "cannot read secret file: File name too long (the value is not shown",
                     id="too-long-for-a-file-name"),
        pytest.param("123456789012345678901234567890123456", "expected a path to a file holding the secret, got a "
                     "number (the value is not shown", id="a-number"),
    ],
)
def test_a_secret_written_in_place_of_its_file_is_never_repeated(config_dir: Path, value: str,
                                                                 fragment: str) -> None:
    check(config_dir, replacing(BROKER, "token_file: keys/admin.token", f"token_file: {value}"),
          [Expected(BROKER, "token_file:", "admin.token_file", fragment)])
    assert not [str(i) for i in load_issues(config_dir) if value in str(i) or value[:12] in str(i)]


@pytest.mark.parametrize("content", [
    pytest.param(bytes(range(128, 176)), id="raw-random-bytes"),
    pytest.param(b"correct horse battery staple, correct horse battery staple\n", id="words-with-spaces"),
])
def test_an_admin_token_no_client_can_send_is_refused(config_dir: Path, content: bytes) -> None:
    """A Bearer token is a token68 (RFC 6750 §2.1): letters, digits, '-._~+/' and '=' at the end. A token file of
    raw random bytes (as `head -c 32 /dev/urandom` writes) or of words could never be sent: /metrics and /admin/
    would answer 404 to everyone, the operator included, with nothing to say why. Refused, without the secret."""
    (config_dir / "keys" / "admin.token").write_bytes(content)
    check(config_dir, lambda _: None, [Expected(BROKER, "token_file:", "admin.token_file", "RFC 6750 §2.1")])
    assert not [str(i) for i in load_issues(config_dir) if "horse" in str(i)]


_PASTED_KEY = "-----BEGIN PRIVATE KEY-----\\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgPASTEDKEYMATERIAL\\n" \
              "-----END PRIVATE KEY-----\\n"


@pytest.mark.parametrize(("old", "key"), [
    pytest.param("key: keys/idp-signing.key", "idp.signing.key", id="idp-signing-key"),
    pytest.param("signing_key: keys/audit-signing.key", "audit.signing_key", id="audit-signing-key"),
])
def test_a_private_key_written_in_place_of_its_file_is_never_repeated(config_dir: Path, old: str, key: str) -> None:
    """The key's PEM pasted where its path goes: said without it (it went to the terminal, the reload log and
    the configuration_rejected audit record)."""
    replacing(BROKER, old, f'{old.partition(":")[0]}: "{_PASTED_KEY}"')(config_dir)
    issues = [i for i in load_issues(config_dir) if i.key == key]
    assert [i.message for i in issues] == [f"{'Ed25519 ' if 'audit' in key else ''}private key file not found "
                                           "(the value is not shown: it may be a secret written inline)"]
    assert not [str(i) for i in load_issues(config_dir) if "PASTEDKEYMATERIAL" in str(i) or "BEGIN" in str(i)]


@pytest.mark.parametrize(
    ("edit", "file", "line", "key", "fragment"),
    [
        pytest.param(replacing(KOMMUN_A, "- certs/kommun-a/root-ca.pem", "- /dev/zero"), KOMMUN_A, "- /dev/zero",
                     "certificate.trust_anchors[0]", "CA certificate file /dev/zero cannot be used: a character "
                     "device, not a regular file", id="trust-anchor-dev-zero"),
        pytest.param(combined(replacing(KOMMUN_A, "- certs/kommun-a/root-ca.pem", "- certs/kommun-a/fifo.pem"),
                              lambda d: os.mkfifo(d / "certs/kommun-a/fifo.pem")), KOMMUN_A,
                     "- certs/kommun-a/fifo.pem", "certificate.trust_anchors[0]",
                     "cannot be used: a FIFO (named pipe), not a regular file", id="trust-anchor-fifo"),
        pytest.param(combined(replacing(BROKER, "token_file: keys/admin.token", "token_file: keys/admin.fifo"),
                              lambda d: os.mkfifo(d / "keys/admin.fifo")), BROKER, "token_file:", "admin.token_file",
                     "admin.fifo cannot be used: a FIFO (named pipe), not a regular file", id="secret-fifo"),
        pytest.param(lambda d: os.mkfifo(d / "municipalities/kommun-i.yaml"), "municipalities/kommun-i.yaml", None,
                     "", "cannot read file: a FIFO (named pipe), not a regular file (a configuration file is a "
                     "regular file of at most 1 MiB)", id="municipality-file-fifo"),
    ],
)
def test_a_fifo_or_device_in_place_of_a_file_is_refused_without_reading(config_dir: Path, edit: Edit, file: str,
                                                                       line: str | None, key: str,
                                                                       fragment: str) -> None:
    """Reading one blocked for ever (a FIFO waits for a writer; /dev/zero has no end): `config check` hung, and
    so did the gunicorn master reloading on SIGHUP."""
    check(config_dir, edit, [Expected(file, line, key, fragment)])


def test_a_32_byte_secret_is_accepted_and_never_printed(config_dir: Path) -> None:
    secret = bytes(range(160, 192))
    (config_dir / "keys" / "nameid.key").write_bytes(secret)

    nameid_key = load_settings(config_dir).broker.idp.nameid_key

    assert nameid_key.value == secret
    assert repr(nameid_key) == f"SecretFile({config_dir.resolve() / 'keys' / 'nameid.key'})"


CERT = "keys/idp-signing.crt"
KEY = "keys/idp-signing.key"


def _certificate_of_version(data: bytes, version: int) -> bytes:
    """The DER of the (one) certificate in ``data`` with its version (v3: [0] INTEGER 2) replaced."""
    der = x509.load_pem_x509_certificate(data).public_bytes(serialization.Encoding.DER)
    at = der.index(b"\xa0\x03\x02\x01\x02")
    assert at < 12  # the version is the first field of tbsCertificate
    return der[:at] + b"\xa0\x03\x02\x01" + bytes([version]) + der[at + 5:]


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        pytest.param(_writing(CERT, lambda: b"not a certificate\n"),
                     "does not hold a readable X.509 certificate", id="not-a-certificate"),
        pytest.param(_writing(CERT, lambda: b""), "does not hold a readable X.509 certificate", id="empty"),
        pytest.param(_writing(CERT, lambda: _leaf() + _leaf()), "must hold exactly one certificate, found 2",
                     id="two-certificates"),
        pytest.param(lambda d: (d / CERT).write_bytes((d / KEY).read_bytes()),
                     "does not hold a readable X.509 certificate", id="the-private-key-instead"),
        pytest.param(_remove(CERT), "certificate file not found", id="missing"),
        # cryptography raises InvalidVersion (no ValueError) for a certificate version other than v1 to v3
        pytest.param(lambda d: (d / CERT).write_bytes(_certificate_of_version((d / CERT).read_bytes(), 5)),
                     "does not hold a readable X.509 certificate", id="an-unknown-version"),
    ],
)
def test_the_signing_certificate_must_be_one_readable_certificate(config_dir: Path, edit: Edit, fragment: str) -> None:
    check(config_dir, edit, [Expected(BROKER, "certificate: keys/idp-signing.crt", "idp.signing.certificate",
                                      fragment)])


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        pytest.param(lambda d: write_key(d / KEY, new_key("rsa1024")),
                     "RSA key of 1024 bits; at least 2048 are required", id="rsa-1024"),
        pytest.param(lambda d: write_key(d / KEY, new_key("ec192")),
                     "curve secp192r1 is not allowed (P-256, P-384, P-521)", id="ec-p192"),
        pytest.param(_writing(KEY, lambda: _key_pem(ed25519.Ed25519PrivateKey.generate())),
                     "only RSA and ECDSA signing keys are supported", id="ed25519"),
        pytest.param(_writing(KEY, lambda: _key_pem(new_key("ec256"),
                                                    serialization.BestAvailableEncryption(b"secret"))),
                     "does not hold an unencrypted PEM private key", id="encrypted"),
        pytest.param(lambda d: (d / KEY).write_bytes((d / CERT).read_bytes()),
                     "does not hold an unencrypted PEM private key", id="the-certificate-instead"),
        pytest.param(_remove(KEY), "private key file not found", id="missing"),
    ],
)
def test_a_weak_or_unusable_signing_key_is_refused(config_dir: Path, edit: Edit, fragment: str) -> None:
    check(config_dir, edit, [Expected(BROKER, "key: keys/idp-signing.key", "idp.signing.key", fragment)])


def test_a_signing_key_that_does_not_match_its_certificate_is_reported_at_the_certificate(config_dir: Path) -> None:
    write_key(config_dir / KEY, new_key("ec256"))

    assert_issues(load_issues(config_dir), [
        Expected(BROKER, "certificate: keys/idp-signing.crt", "idp.signing.certificate",
                 "the certificate does not belong to the configured key")], config_dir)


@pytest.mark.parametrize(("side", "certificate"), [
    pytest.param("idp", "keys/idp-signing.crt", id="idp"),
    pytest.param("sp", "keys/sp-signing.crt", id="sp"),
])
def test_a_certificate_published_beside_the_signing_one_must_be_another_key(
        config_dir: Path, side: str, certificate: str) -> None:
    replacing(BROKER, f"    certificate: {certificate}",
              f"    certificate: {certificate}\n    also_published: [{certificate}]")(config_dir)
    assert_issues(load_issues(config_dir), [
        Expected(BROKER, "also_published:", f"{side}.signing.also_published[0]",
                 "this key is published already (the signing key, or listed twice)")], config_dir)


@pytest.mark.parametrize("side", [pytest.param("idp", id="idp"), pytest.param("sp", id="sp")])
@pytest.mark.parametrize(("key", "fragment"), [
    pytest.param("rsa1024", "RSA key of 1024 bits (at least 2048 are required)", id="rsa-1024"),
    pytest.param("ec192", "elliptic curve secp192r1 is not accepted (P-256, P-384, P-521)", id="ec-p192"),
])
def test_a_weak_key_is_not_published_beside_the_signing_one(config_dir: Path, side: str, key: str,
                                                             fragment: str) -> None:
    """SAML Metadata §2.4.1.1: peers accept a signature by any signing key the metadata publishes; the next key
    was published whatever its size, though it could never become the signing key (idp.signing.key refuses it)."""
    nxt = CertificateAuthority.root("Broker signing 2", NOW, key=key)
    write_pem(config_dir / "keys" / "next-signing.crt", nxt.certificate)
    certificate = f"keys/{side}-signing.crt"
    replacing(BROKER, f"    certificate: {certificate}",
              f"    certificate: {certificate}\n    also_published: [keys/next-signing.crt]")(config_dir)
    assert_issues(load_issues(config_dir), [
        Expected(BROKER, "also_published:", f"{side}.signing.also_published[0]",
                 f"a signing key too weak to publish: {fragment}")], config_dir)


def test_an_ec_decryption_key_is_refused(config_dir: Path) -> None:
    """XML Encryption 1.1 §5.5.2: the key transports the broker accepts, and its SP metadata offers, are RSA-OAEP;
    an ECDSA key and its certificate were accepted in sp.decryption and published as the encryption key, which no
    IdP could encrypt to."""
    pair = CertificateAuthority.root("Broker SP encryption", NOW, key="ec256")
    write_key(config_dir / "keys" / "sp-encryption.key", pair.key)
    write_pem(config_dir / "keys" / "sp-encryption.crt", pair.certificate)

    assert_issues(load_issues(config_dir), [
        Expected(BROKER, "- key: keys/sp-encryption.key", "sp.decryption[0].key",
                 "an RSA key is required: IdPs encrypt the assertion's key to it with RSA-OAEP")], config_dir)


def test_an_ecdsa_p384_signing_key_with_its_certificate_is_accepted(config_dir: Path) -> None:
    signer = CertificateAuthority.root("Broker IdP signing", NOW, key="ec384")
    write_key(config_dir / KEY, signer.key)
    write_pem(config_dir / CERT, signer.certificate)

    assert load_settings(config_dir).broker.idp.signing.certificate.certificate == signer.certificate


ROOT_LINE = "- certs/kommun-a/root-ca.pem"
ANCHOR = "- certs/extra/anchor.pem"


def _p7b(encoding: serialization.Encoding) -> bytes:
    """A root CA certificate as a CA's download page offers it: a PKCS#7 certificate bundle (RFC 2315 signedData
    without signers), as Windows exports a chain."""
    root = _self_signed(basic_constraints=x509.BasicConstraints(ca=True, path_length=None), key_cert_sign=True)
    return pkcs7.serialize_certificates([x509.load_pem_x509_certificate(root)], encoding)


def _anchor(make: Callable[[], bytes]) -> Edit:
    return combined(_writing("certs/extra/anchor.pem", make),
                    replacing(KOMMUN_A, ROOT_LINE, "- certs/extra/anchor.pem"))


def test_a_sample_certificate_whose_extensions_cannot_be_read_is_a_configuration_problem(config_dir: Path) -> None:
    """Read whole as a presented certificate is (broker.pki.reading), not first where readiness validates it."""
    sample = x509.load_pem_x509_certificate((config_dir / "certs/kommun-a/sample.pem").read_bytes())
    signer = _stranger()
    with_san = reissue(sample, signer, extra=[x509.SubjectAlternativeName([x509.DNSName("anna.example")])])
    check(config_dir, _writing("certs/kommun-a/sample.pem", lambda: _pem(with_duplicate_extension(with_san, signer))),
          [Expected(KOMMUN_A, "sample_certificate: certs/kommun-a/sample.pem", "readiness.sample_certificate",
                    "malformed X.509 certificate: its extensions cannot be read (DuplicateExtension: "
                    "Duplicate 2.5.29.15 extension found)")])


@pytest.mark.parametrize(
    ("edit", "line", "fragment"),
    [
        pytest.param(_anchor(_leaf), ANCHOR,
                     "CN=Anna Andersson,C=SE is not a CA certificate (basicConstraints cA is false)",
                     id="leaf-certificate"),
        pytest.param(_anchor(lambda: _self_signed(basic_constraints=None, key_cert_sign=True)),
                     ANCHOR, "CN=Odd Root CA is not a CA certificate (no basicConstraints)", id="no-basic-constraints"),
        pytest.param(_anchor(lambda: _self_signed(basic_constraints=x509.BasicConstraints(ca=True, path_length=None),
                                                  key_cert_sign=False)),
                     ANCHOR, "may not sign certificates (key usage lacks keyCertSign)", id="ca-without-keyCertSign"),
        pytest.param(lambda d: _anchor(lambda: (d / "certs/kommun-a/root-ca.pem").read_bytes() + _leaf())(d),
                     ANCHOR, "is not a CA certificate", id="bundle-with-a-leaf-after-the-root"),
        pytest.param(_anchor(lambda: b"\x30\x82garbage"), ANCHOR, "does not hold readable X.509 certificates",
                     id="garbage"),
        pytest.param(_anchor(_ca_with_key_usage_twice), ANCHOR,
                     "malformed X.509 certificate: its extensions cannot be read (DuplicateExtension: "
                     "Duplicate 2.5.29.15 extension found)", id="key-usage-twice"),
        pytest.param(_anchor(lambda: b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n"),
                     ANCHOR, "does not hold readable X.509 certificates", id="broken-pem"),
        pytest.param(_anchor(lambda: _key_pem(new_key("ec256"))), ANCHOR,
                     "does not hold readable X.509 certificates", id="a-private-key"),
        pytest.param(_anchor(lambda: _key_pem(new_key("ec256"))), ANCHOR,
                     "does not hold readable X.509 certificates (it holds a private key (PRIVATE KEY), not a "
                     "certificate (-----BEGIN CERTIFICATE-----): give the certificate file)",
                     id="a-private-key-named-as-one"),
        pytest.param(lambda d: _anchor((d / "certs/kommun-a/root-ca.crl").read_bytes)(d), ANCHOR,
                     "does not hold readable X.509 certificates (it holds a CRL (X509 CRL), which goes where CRLs "
                     "are given, not a certificate (-----BEGIN CERTIFICATE-----): give the certificate file)",
                     id="a-crl"),
        pytest.param(lambda d: _anchor(lambda: _certificate_of_version(
            (d / "certs/kommun-a/root-ca.pem").read_bytes(), 5))(d),
            ANCHOR, "does not hold readable X.509 certificates", id="an-unknown-version"),
        pytest.param(replacing(KOMMUN_A, ROOT_LINE, "- certs/kommun-a/root.pem"), "- certs/kommun-a/root.pem",
                     "CA certificate file not found", id="missing"),
        pytest.param(_anchor(lambda: b""), ANCHOR, "does not hold readable X.509 certificates (the file is empty)",
                     id="empty-file"),
        pytest.param(_anchor(lambda: b"\n  \r\n"), ANCHOR,
                     "does not hold readable X.509 certificates (the file is empty)", id="only-white-space"),
        pytest.param(lambda d: _anchor(lambda: (d / "certs/kommun-a/root-ca.pem").read_text().encode("utf-16"))(d),
                     ANCHOR, "does not hold readable X.509 certificates (the file is UTF-16 text (Windows' "
                     "\"Unicode\", as PowerShell 5 writes it); save it as ASCII or UTF-8)", id="utf-16-pem"),
        pytest.param(_anchor(lambda: _p7b(serialization.Encoding.DER)), ANCHOR,
                     "does not hold readable X.509 certificates (a PKCS#7 bundle (.p7b) of 1 certificate(s); "
                     "write them as PEM: openssl pkcs7 -print_certs -inform DER -in FILE -out FILE.pem)",
                     id="pkcs7-der"),
        pytest.param(_anchor(lambda: _p7b(serialization.Encoding.PEM)), ANCHOR,
                     "does not hold readable X.509 certificates (a PKCS#7 bundle (.p7b) of 1 certificate(s); "
                     "write them as PEM: openssl pkcs7 -print_certs -in FILE -out FILE.pem)", id="pkcs7-pem"),
    ],
)
def test_a_trust_anchor_must_be_a_readable_ca_certificate(
    config_dir: Path, edit: Edit, line: str, fragment: str
) -> None:
    check(config_dir, edit, [Expected(KOMMUN_A, line, "certificate.trust_anchors[0]", fragment)])


@pytest.mark.parametrize("serial_number", [
    pytest.param("191212121212", id="twelve-digits"),
    pytest.param("19121212-1212", id="with-hyphen"),
])
def test_a_user_certificate_given_as_a_ca_is_named_with_its_personnummer_masked(config_dir: Path,
                                                                                serial_number: str) -> None:
    """A card's certificate in trust_anchors (the sample, say) is named by its subject so the operator sees which
    file is wrong; the message goes to the terminal, the log and (refusing a reload) the audit trail, which hold no
    personnummer in clear (REFERENCE.md, Logging law and privacy)."""
    def card() -> bytes:
        return _pem(_stranger().issue(LeafProfile(common_name="Bo Demosson", serial_number=serial_number))
                    .certificate)

    check(config_dir, _anchor(card), [Expected(
        KOMMUN_A, ANCHOR, "certificate.trust_anchors[0]",
        "CN=Bo Demosson,serialNumber=19121212-****,C=SE is not a CA certificate (basicConstraints cA is false)")])
    text = " ".join(issue.message for issue in load_issues(config_dir))
    assert "1212-1212" not in text
    assert "121212121212" not in text


def test_a_leaf_certificate_as_intermediate_is_refused(config_dir: Path) -> None:
    _writing("certs/kommun-a/issuing-ca.pem", _leaf)(config_dir)

    assert_issues(load_issues(config_dir), [
        Expected(KOMMUN_A, "- certs/kommun-a/issuing-ca.pem", "certificate.intermediates[0]",
                 "is not a CA certificate (basicConstraints cA is false)")], config_dir)


def test_trust_anchors_may_be_der_files(config_dir: Path) -> None:
    root = x509.load_pem_x509_certificate((config_dir / "certs/kommun-a/root-ca.pem").read_bytes())
    (config_dir / "certs/kommun-a/root-ca.der").write_bytes(root.public_bytes(serialization.Encoding.DER))
    replacing(KOMMUN_A, ROOT_LINE, "- certs/kommun-a/root-ca.der")(config_dir)

    assert load_settings(config_dir).municipalities["kommun-a"].config.certificate.anchors() == (root,)


def _crl_of_version(data: bytes, version: int) -> bytes:
    """The DER of the CRL in ``data`` (PEM or DER) with its version INTEGER (v2: 1) replaced."""
    crl = x509.load_pem_x509_crl(data) if b"-----BEGIN" in data else x509.load_der_x509_crl(data)
    der = crl.public_bytes(serialization.Encoding.DER)
    at = der.index(b"\x02\x01\x01")
    assert at < 12  # the version is the first field of tbsCertList
    return der[:at] + b"\x02\x01" + bytes([version]) + der[at + 3:]


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        pytest.param(_writing("certs/kommun-a/issuing-ca.crl", lambda: b"garbage"), "does not hold a readable CRL",
                     id="garbage"),
        pytest.param(lambda d: (d / "certs/kommun-a/issuing-ca.crl").write_bytes(
            (d / "certs/kommun-a/issuing-ca.pem").read_bytes()), "does not hold a readable CRL",
            id="a-certificate-instead"),
        pytest.param(_remove("certs/kommun-a/issuing-ca.crl"), "CRL file not found", id="missing"),
        # cryptography raises InvalidVersion (no ValueError) for a CRL version other than v1 and v2
        pytest.param(lambda d: (d / "certs/kommun-a/issuing-ca.crl").write_bytes(_crl_of_version(
            (d / "certs/kommun-a/issuing-ca.crl").read_bytes(), 5)), "does not hold a readable CRL",
            id="an-unknown-version"),
    ],
)
def test_a_crl_file_must_hold_a_crl(config_dir: Path, edit: Edit, fragment: str) -> None:
    check(config_dir, edit, [Expected(KOMMUN_A, "- certs/kommun-a/issuing-ca.crl",
                                      "certificate.revocation.crl.files[0]", fragment)])


@pytest.mark.parametrize(
    ("new", "fragment"),
    [
        pytest.param("directory: keys/nameid.key/audit", "cannot be created: ", id="under-a-regular-file"),
        pytest.param("directory: keys/nameid.key/2025/audit", "is not a directory",
                     id="deep-under-a-regular-file"),
        pytest.param("directory: keys/nameid.key", "exists and is not a directory", id="a-regular-file"),
    ],
)
def test_the_audit_directory_must_be_a_writable_directory(config_dir: Path, new: str, fragment: str) -> None:
    check(config_dir, replacing(BROKER, "directory: audit\n", new + "\n"),
          [Expected(BROKER, new, "audit.directory", fragment)])


def test_the_audit_directory_may_be_yet_to_be_created(config_dir: Path) -> None:
    replacing(BROKER, "directory: audit\n", "directory: audit/2025/broker\n")(config_dir)

    path = load_settings(config_dir).broker.audit.directory.path

    assert path == config_dir.resolve() / "audit" / "2025" / "broker"
    assert not (config_dir / "audit" / "2025").exists()  # checking a configuration writes nothing


def _public_pem(key: Any) -> bytes:
    pem: bytes = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem


_EARLIER_KEY = replacing(BROKER, "  # verification_keys: [keys/audit-2025.pub]",
                         "  verification_keys: [keys/audit-2025.pub]")


def _syslog_address(value: str) -> Edit:
    """broker.yaml forwarding the audit trail to syslog at ``value`` (as written in YAML)."""
    return replacing(BROKER, '  # forward:\n  #   syslog: {address: "127.0.0.1:514", transport: udp, '
                             'facility: authpriv}\n', f"  forward:\n    syslog:\n      address: {value}\n")


def _syslog_app_name(value: str) -> Edit:
    """broker.yaml forwarding the audit trail to syslog with APP-NAME ``value`` (as written in YAML)."""
    return replacing(BROKER, '  # forward:\n  #   syslog: {address: "127.0.0.1:514", transport: udp, '
                             'facility: authpriv}\n',
                     f'  forward:\n    syslog:\n      address: "127.0.0.1:514"\n      app_name: {value}\n')


@pytest.mark.parametrize(
    ("edit", "line", "key", "fragment"),
    [
        pytest.param(replacing(BROKER, "signing_key: keys/audit-signing.key", "signing_key: keys/idp-signing.key"),
                     "signing_key:", "audit.signing_key", "the audit signing key must be Ed25519, not RSA",
                     id="signing-key-rsa"),
        pytest.param(combined(replacing(BROKER, "signing_key: keys/audit-signing.key",
                                        "signing_key: keys/audit-ec.key"),
                              _writing("keys/audit-ec.key", lambda: _key_pem(ec.generate_private_key(ec.SECP256R1())))),
                     "signing_key:", "audit.signing_key", "the audit signing key must be Ed25519, not EC",
                     id="signing-key-ecdsa"),
        pytest.param(replacing(BROKER, "signing_key: keys/audit-signing.key", "signing_key: keys/idp-signing.crt"),
                     "signing_key:", "audit.signing_key", "does not hold an unencrypted PEM private key",
                     id="signing-key-a-certificate"),
        pytest.param(replacing(BROKER, "signing_key: keys/audit-signing.key", "signing_key: keys/audit-none.key"),
                     "signing_key:", "audit.signing_key", "not found", id="signing-key-missing"),
        pytest.param(combined(_EARLIER_KEY, _writing("keys/audit-2025.pub", lambda: _public_pem(
            ec.generate_private_key(ec.SECP256R1())))),
                     "verification_keys:", "audit.verification_keys[0]", "not an Ed25519 public key",
                     id="verification-key-ecdsa"),
        pytest.param(combined(_EARLIER_KEY, _writing("keys/audit-2025.pub", lambda: _key_pem(
            ed25519.Ed25519PrivateKey.generate()))),
                     "verification_keys:", "audit.verification_keys[0]", "does not hold a PEM public key",
                     id="verification-key-a-private-key"),
        pytest.param(_syslog_address('127.0.0.1'),
                     "address: 127.0.0.1", "audit.forward.syslog.address",
                     "expected host:port (port 1-65535; IPv6 as [::1]:514), got '127.0.0.1'",
                     id="syslog-address-without-port"),
        pytest.param(_syslog_address('"127.0.0.1:65536"'),
                     "address: ", "audit.forward.syslog.address", "expected host:port",
                     id="syslog-port-out-of-range"),
        pytest.param(_syslog_address('"::1"'),
                     "address: ", "audit.forward.syslog.address", "expected host:port, got '::1', an IPv6 address "
                     "whose port (if any) cannot be told from it: write the address in brackets and the port after "
                     "them, e.g. [::1]:514", id="syslog-bare-ipv6"),
        pytest.param(_syslog_address('"fd00::5:514"'),
                     "address: ", "audit.forward.syslog.address", "an IPv6 address whose port (if any) cannot be told",
                     id="syslog-bare-ipv6-with-a-port"),
        pytest.param(_syslog_address('"log host:514"'),
                     "address: ", "audit.forward.syslog.address", "expected host:port (port 1-65535; IPv6 as "
                     "[::1]:514), got 'log host:514'", id="syslog-host-with-a-space"),
        # RFC 5424 §6.2.5: APP-NAME is 1 to 48 printable US-ASCII characters; a space in it shifted every header
        # field after it (its second word read as PROCID): every message malformed
        pytest.param(_syslog_app_name('"regional broker"'), "app_name: ", "audit.forward.syslog.app_name",
                     "RFC 5424 APP-NAME: 1 to 48 printable US-ASCII characters, no space; got 'regional broker'",
                     id="syslog-app-name-with-a-space"),
        pytest.param(_syslog_app_name('"inloggningstjänst"'), "app_name: ", "audit.forward.syslog.app_name",
                     "RFC 5424 APP-NAME: 1 to 48 printable US-ASCII characters", id="syslog-app-name-not-ascii"),
        pytest.param(_syslog_app_name("b" * 49), "app_name: ", "audit.forward.syslog.app_name",
                     "RFC 5424 APP-NAME: 1 to 48 printable US-ASCII characters", id="syslog-app-name-too-long"),
    ],
)
def test_audit_keys_and_forwarding_are_checked(config_dir: Path, edit: Edit, line: str, key: str,
                                               fragment: str) -> None:
    check(config_dir, edit, [Expected(BROKER, line, key, fragment)])


def test_earlier_ed25519_keys_and_a_syslog_receiver_are_accepted(config_dir: Path) -> None:
    earlier = ed25519.Ed25519PrivateKey.generate()
    combined(
        _EARLIER_KEY, _writing("keys/audit-2025.pub", lambda: _public_pem(earlier)),
        replacing(BROKER, '  # forward:\n  #   syslog: {address: "127.0.0.1:514", transport: udp, '
                          'facility: authpriv}\n',
                  '  forward:\n    syslog: {address: "127.0.0.1:514", transport: tcp}\n'),
    )(config_dir)

    audit = load_settings(config_dir).broker.audit

    assert [k.path.name for k in audit.verification_keys] == ["audit-2025.pub"]
    assert audit.verification_keys[0].key.public_bytes_raw() == earlier.public_key().public_bytes_raw()
    assert audit.forward.syslog is not None
    assert (audit.forward.syslog.address, audit.forward.syslog.transport, audit.forward.syslog.facility) == (
        "127.0.0.1:514", "tcp", "authpriv")


def test_a_syslog_receiver_at_an_ipv6_address_in_brackets_is_accepted(config_dir: Path) -> None:
    replacing(BROKER, '  # forward:\n  #   syslog: {address: "127.0.0.1:514", transport: udp, facility: authpriv}\n',
              '  forward:\n    syslog: {address: "[::1]:514"}\n')(config_dir)

    syslog = load_settings(config_dir).broker.audit.forward.syslog

    assert syslog is not None
    assert syslog.address == "[::1]:514"


def test_a_missing_metadata_file_is_reported_at_the_metadata_key(config_dir: Path) -> None:
    check(config_dir, _remove("metadata/demo-sp.xml"),
          [Expected(DEMO_SP, "metadata:", "metadata", "metadata file not found")])


# --- checks across files: municipalities and their PKI ---------------------------------------


def test_a_ca_of_two_municipalities_that_do_not_say_how_it_names_them_is_reported_in_each(config_dir: Path) -> None:
    """A CA issuing to several municipalities (Efos, SITHS e-id) chooses none by itself: each of them must say
    where its certificates name it (certificate.organization_from)."""
    shutil.copy(config_dir / KOMMUN_A, config_dir / "municipalities" / "kommun-d.yaml")
    replace_once(config_dir / "municipalities" / "kommun-d.yaml", 'organization_number: "2120001009"',
                 'organization_number: "2120004003"')

    kommun_d = "municipalities/kommun-d.yaml"
    fix = "set certificate.organization_from (hsa_id or organization_identifier) in each of them"
    assert_issues(load_issues(config_dir), [
        Expected(kommun_d, ROOT_LINE, "certificate.trust_anchors[0]",
                 f"CA CN=Kommun A Demo Root CA,O=Kommun A,C=SE also issues to 'kommun-a': {fix}"),
        Expected(kommun_d, "- certs/kommun-a/issuing-ca.pem", "certificate.intermediates[0]",
                 f"CA CN=Kommun A Demo Person CA,O=Kommun A,C=SE also issues to 'kommun-a': {fix}"),
        Expected(KOMMUN_A, ROOT_LINE, "certificate.trust_anchors[0]",
                 f"CA CN=Kommun A Demo Root CA,O=Kommun A,C=SE also issues to 'kommun-d': {fix}"),
        Expected(KOMMUN_A, "- certs/kommun-a/issuing-ca.pem", "certificate.intermediates[0]",
                 f"CA CN=Kommun A Demo Person CA,O=Kommun A,C=SE also issues to 'kommun-d': {fix}"),
    ], config_dir)


def test_a_ca_of_two_municipalities_that_say_how_it_names_them_loads(config_dir: Path) -> None:
    shutil.copy(config_dir / KOMMUN_A, config_dir / "municipalities" / "kommun-d.yaml")
    replace_once(config_dir / "municipalities" / "kommun-d.yaml", 'organization_number: "2120001009"',
                 'organization_number: "2120004003"')
    for name in (KOMMUN_A, "municipalities/kommun-d.yaml"):
        replace_once(config_dir / name, "  max_chain_depth: 4", "  max_chain_depth: 4\n  organization_from: hsa_id")

    settings = load_settings(config_dir)

    assert {m: settings.municipalities[m].config.certificate.organization_from  # type: ignore[union-attr]
            for m in ("kommun-a", "kommun-d")} == {"kommun-a": "hsa_id", "kommun-d": "hsa_id"}


def test_municipalities_sharing_a_ca_check_its_status_the_same_way(config_dir: Path) -> None:
    """The shared CA's status is one answer, cached once: under one revocation policy, not two."""
    test_a_ca_of_two_municipalities_that_say_how_it_names_them_loads(config_dir)
    replace_once(config_dir / "municipalities" / "kommun-d.yaml", "failure: fail_closed", "failure: soft_fail")

    assert_issues(load_issues(config_dir), [
        Expected("municipalities/kommun-d.yaml", "revocation:", "certificate.revocation",
                 "CA CN=Kommun A Demo Root CA,O=Kommun A,C=SE also issues to 'kommun-a', whose revocation settings "
                 "differ: municipalities sharing a CA check its certificates' status the same way"),
    ], config_dir)


def test_the_same_crl_files_in_another_order_are_the_same_checks(config_dir: Path) -> None:
    test_a_ca_of_two_municipalities_that_say_how_it_names_them_loads(config_dir)
    replace_once(config_dir / "municipalities" / "kommun-d.yaml",
                 "        - certs/kommun-a/issuing-ca.crl\n        - certs/kommun-a/root-ca.crl",
                 "        - certs/kommun-a/root-ca.crl\n        - certs/kommun-a/issuing-ca.crl")

    assert load_settings(config_dir).municipalities["kommun-d"].config.organization_number == "2120004003"


def test_the_proxys_bundle_holds_a_shared_ca_once(config_dir: Path) -> None:
    """Named twice, the CA would only lengthen the list of names every handshake carries."""
    import datetime as dt

    from broker.proxy_config import BUNDLE, nginx
    test_a_ca_of_two_municipalities_that_say_how_it_names_them_loads(config_dir)
    bundle = nginx(load_settings(config_dir), out_dir="/etc/nginx/broker", upstream="http://broker",
                   now=dt.datetime(2026, 11, 28, tzinfo=dt.UTC)).files[BUNDLE]

    assert bundle.count("-----BEGIN CERTIFICATE-----") == len(set(bundle.split("-----BEGIN CERTIFICATE-----"))) - 1
    assert "# kommun-a, kommun-d: CN=Kommun A Demo Root CA,O=Kommun A,C=SE" in bundle
    assert "# kommun-a, kommun-d: CN=Kommun A Demo Person CA,O=Kommun A,C=SE" in bundle


def test_organization_from_hsa_id_needs_an_hsa_id_identity(config_dir: Path) -> None:
    replace_once(config_dir / KOMMUN_A, "  max_chain_depth: 4", "  max_chain_depth: 4\n  organization_from: hsa_id")
    replace_once(config_dir / KOMMUN_A, "type: hsa_id", "type: personnummer")
    issues = load_issues(config_dir)
    assert [(i.key, i.message) for i in issues if i.key == "certificate.organization_from"] == [
        ("certificate.organization_from", "hsa_id needs identity.type hsa_id (the HSA-id names the organisation)")]


def test_a_copied_municipality_file_keeping_the_organisation_number_is_reported(config_dir: Path) -> None:
    # SPs receive the number as the user's organisation: two municipalities with one number are one to them
    replace_once(config_dir / KOMMUN_B, 'organization_number: "2120002007"', 'organization_number: "2120001009"')
    assert_issues(load_issues(config_dir), [
        Expected(KOMMUN_B, "organization_number:", "organization_number",
                 "organisation number 2120001009 is already municipality 'kommun-a''s; each municipality has its own"),
    ], config_dir)


@pytest.mark.parametrize("name", ["kommun-d.YAML", "kommun-d.Yaml", "kommun-d.yml"])
def test_a_municipality_file_with_another_extension_is_reported_not_skipped(config_dir: Path, name: str) -> None:
    shutil.copy(config_dir / KOMMUN_A, config_dir / "municipalities" / name)
    assert any(i.file == f"municipalities/{name}" and "use the .yaml extension" in i.message
               for i in load_issues(config_dir))


def _extra_intermediate(make: Callable[[Path], bytes]) -> Edit:
    def edit(config_dir: Path) -> None:
        (config_dir / "certs/extra-ca.pem").write_bytes(make(config_dir))
        replace_once(config_dir / KOMMUN_A, "- certs/kommun-a/issuing-ca.pem",
                     "- certs/kommun-a/issuing-ca.pem\n    - certs/extra-ca.pem")

    return edit


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        pytest.param(_extra_intermediate(lambda d: _pem(_stranger().subordinate("Stranger Person CA").certificate)),
                     "CN=Stranger Person CA,C=SE: no configured CA (CN=Stranger Root CA,C=SE) signed this "
                     "intermediate", id="issuer-not-configured"),
        pytest.param(_extra_intermediate(lambda d: _pem(
            _impostor(d, "certs/kommun-a/root-ca.pem").subordinate("Forged Person CA").certificate)),
            "CN=Forged Person CA,C=SE: no configured CA (CN=Kommun A Demo Root CA,O=Kommun A,C=SE) signed this "
            "intermediate", id="issuer-name-matches-but-signature-does-not"),
    ],
)
def test_an_intermediate_must_be_signed_by_a_configured_ca(config_dir: Path, edit: Edit, fragment: str) -> None:
    check(config_dir, edit, [Expected(KOMMUN_A, "- certs/extra-ca.pem", "certificate.intermediates[1]", fragment)])


def test_a_trust_anchor_or_intermediate_with_an_rsa_key_under_2048_bits_is_refused(config_dir: Path) -> None:
    """The README's promise, no RSA under 2048 bits, holds for the CAs too: their keys sign every certificate
    below them (the path verifier refuses such chains at each login; the configuration says so at once)."""
    weak_root = CertificateAuthority.root("Weak Root CA", NOW, key="rsa1024")
    weak_issuing = weak_root.subordinate("Weak Issuing CA", key="rsa1024")

    def edit(config_dir: Path) -> None:
        write_pem(config_dir / "certs/weak-root.pem", weak_root.certificate)
        write_pem(config_dir / "certs/weak-issuing.pem", weak_issuing.certificate)
        replace_once(config_dir / KOMMUN_A, "- certs/kommun-a/root-ca.pem",
                     "- certs/kommun-a/root-ca.pem\n    - certs/weak-root.pem")
        replace_once(config_dir / KOMMUN_A, "- certs/kommun-a/issuing-ca.pem",
                     "- certs/kommun-a/issuing-ca.pem\n    - certs/weak-issuing.pem")

    check(config_dir, edit, [
        Expected(KOMMUN_A, "- certs/weak-root.pem", "certificate.trust_anchors[1]",
                 "CN=Weak Root CA,C=SE: RSA key of 1024 bits (at least 2048 are required)"),
        Expected(KOMMUN_A, "- certs/weak-issuing.pem", "certificate.intermediates[1]",
                 "CN=Weak Issuing CA,C=SE: RSA key of 1024 bits (at least 2048 are required)"),
    ])


def _foreign_crl(config_dir: Path) -> None:
    write_pem(config_dir / "certs/stranger.crl", _stranger().crl())
    replace_once(config_dir / KOMMUN_A, "- certs/kommun-a/root-ca.crl",
                 "- certs/kommun-a/root-ca.crl\n        - certs/stranger.crl")


def _forged_crl(config_dir: Path) -> None:
    write_pem(config_dir / "certs/kommun-a/issuing-ca.crl",
              _impostor(config_dir, "certs/kommun-a/issuing-ca.pem").crl())


@pytest.mark.parametrize(
    ("edit", "line", "key", "fragment"),
    [
        pytest.param(_foreign_crl, "- certs/stranger.crl", "certificate.revocation.crl.files[2]",
                     "CRL issuer CN=Stranger Root CA,C=SE is not a configured CA", id="crl-of-a-foreign-ca"),
        pytest.param(_forged_crl, "- certs/kommun-a/issuing-ca.crl", "certificate.revocation.crl.files[0]",
                     "the CRL's signature does not verify with its issuer's key", id="crl-with-a-bad-signature"),
    ],
)
def test_crl_files_are_checked_against_the_municipality_cas(
    config_dir: Path, edit: Edit, line: str, key: str, fragment: str
) -> None:
    check(config_dir, edit, [Expected(KOMMUN_A, line, key, fragment)])


@pytest.mark.parametrize(
    ("edit", "line", "key", "fragment"),
    [
        pytest.param(combined(replacing(KOMMUN_A, "methods: [crl]", "methods: []"),
                              replacing_block(KOMMUN_A, "    crl:", "    crl:\n      distribution_points: false\n")),
                     "methods:", "certificate.revocation.methods", "at least one method (ocsp, crl) is needed",
                     id="no-methods"),
        pytest.param(replacing(KOMMUN_A, "methods: [crl]", "methods: [crl, crl]"),
                     "methods:", "certificate.revocation.methods", "a method is listed twice",
                     id="duplicate-method"),
        pytest.param(replacing(KOMMUN_A, "methods: [crl]", "methods: [ocsp, crl, ocsp]"),
                     "methods:", "certificate.revocation.methods", "a method is listed twice",
                     id="duplicate-method-not-adjacent"),
        pytest.param(replacing_block(KOMMUN_A, "      files:", ""),
                     "crl:", "certificate.revocation.crl",
                     "crl is a method but no CRL source is configured (files, urls, distribution_points)",
                     id="crl-method-without-any-source"),
        pytest.param(replacing_block(KOMMUN_A, "      files:", "      files: []\n      urls: []\n"),
                     "crl:", "certificate.revocation.crl",
                     "crl is a method but no CRL source is configured (files, urls, distribution_points)",
                     id="crl-method-with-empty-lists"),
        pytest.param(replacing(KOMMUN_A, "mode: check", "mode: none"),
                     "crl:", "certificate.revocation.crl",
                     "CRL sources are configured but mode is none; set mode: check", id="mode-none-with-files"),
        pytest.param(combined(replacing(KOMMUN_A, "mode: check", "mode: none"),
                              replacing_block(KOMMUN_A, "      files:",
                                              "      urls: [http://crl.kommun-a.example.se/person-ca.crl]\n")),
                     "crl:", "certificate.revocation.crl",
                     "CRL sources are configured but mode is none; set mode: check", id="mode-none-with-urls"),
        pytest.param(replacing(KOMMUN_A, "methods: [crl]", "methods: [ocsp]"),
                     "crl:", "certificate.revocation.crl",
                     "CRL sources are configured but crl is not in methods", id="crl-sources-without-crl-method"),
    ],
)
def test_revocation_settings_must_agree_with_each_other(
    config_dir: Path, edit: Edit, line: str, key: str, fragment: str
) -> None:
    check(config_dir, edit, [Expected(KOMMUN_A, line, key, fragment)])


def test_no_methods_with_crl_files_names_both_problems(config_dir: Path) -> None:
    check(config_dir, replacing(KOMMUN_A, "methods: [crl]", "methods: []"), [
        Expected(KOMMUN_A, "methods:", "certificate.revocation.methods",
                 "at least one method (ocsp, crl) is needed"),
        Expected(KOMMUN_A, "crl:", "certificate.revocation.crl",
                 "CRL sources are configured but crl is not in methods"),
    ])


# --- checks across files: service providers ------------------------------------------------------


def _metadata(transform: Callable[[str], str]) -> Edit:
    def edit(config_dir: Path) -> None:
        path = config_dir / "metadata" / "demo-sp.xml"
        path.write_text(transform(path.read_text(encoding="utf-8")), encoding="utf-8")

    return edit


def _with_doctype(xml: str, internal_subset: str) -> str:
    body = xml.split("?>", 1)[1] if xml.startswith("<?xml") else xml
    return f'<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE ns0:EntityDescriptor{internal_subset}>\n{body}'


def _entity_in_entity_id(xml: str) -> str:
    doc = _with_doctype(xml, f' [<!ENTITY sp "{SP_ENTITY_ID}">]')
    return doc.replace(f'entityID="{SP_ENTITY_ID}"', 'entityID="&sp;"', 1)


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        pytest.param(_metadata(lambda xml: "this is not XML at all\n"), "metadata is not well-formed, safe XML",
                     id="garbage"),
        pytest.param(_metadata(lambda xml: xml[: len(xml) // 2]), "metadata is not well-formed, safe XML",
                     id="truncated"),
        # defusedxml refuses entity declarations; the operator must learn that the XML was refused as unsafe.
        pytest.param(_metadata(_entity_in_entity_id), "safe XML", id="doctype-with-an-entity"),
        # broker.saml.metadata promises "no DTDs, no entity expansion".
        pytest.param(_metadata(lambda xml: _with_doctype(xml, "")), "safe XML", id="doctype-without-entities"),
        pytest.param(_metadata(lambda xml: re.sub(r"<ns0:KeyDescriptor.*?</ns0:KeyDescriptor>", "", xml,
                                                  flags=re.DOTALL)),
                     "metadata says AuthnRequestsSigned but holds no signing key", id="signed-requests-without-key"),
        pytest.param(_metadata(lambda xml: xml.replace("bindings:HTTP-POST", "bindings:HTTP-Artifact")),
                     "the SP has no AssertionConsumerService with the HTTP-POST binding", id="no-http-post-acs"),
        pytest.param(replacing(DEMO_SP, f"entity_id: {SP_ENTITY_ID}", "entity_id: https://sp.example.se/metadata"),
                     f"metadata describes no entity 'https://sp.example.se/metadata' (found: {SP_ENTITY_ID})",
                     id="metadata-of-another-entity"),
        # SAML Bindings §3.5.4: the Response goes to the ACS in a form the browser posts to that HTTP endpoint
        pytest.param(_metadata(lambda xml: xml.replace('Location="https://localhost:8443/demo-sp/acs"',
                                                       'Location="javascript:alert(document.domain)//"')),
                     "AssertionConsumerService Location 'javascript:alert(document.domain)//' is no absolute http(s) "
                     "URL", id="acs-javascript-url"),
        pytest.param(_metadata(lambda xml: xml.replace('Location="https://localhost:8443/demo-sp/acs"',
                                                       'Location="/demo-sp/acs"')),
                     "AssertionConsumerService Location '/demo-sp/acs' is no absolute http(s) URL",
                     id="acs-relative-url"),
        pytest.param(_metadata(lambda xml: xml.replace('Location="https://localhost:8443/demo-sp/slo"',
                                                       'Location="data:text/html,hello"')),
                     "SingleLogoutService Location 'data:text/html,hello' is no absolute http(s) URL",
                     id="slo-data-url"),
    ],
)
def test_sp_metadata_must_parse_safely_and_describe_the_configured_entity(
    config_dir: Path, edit: Edit, fragment: str
) -> None:
    check(config_dir, edit, [Expected(DEMO_SP, "metadata:", "metadata", fragment)])


# --- encrypt_assertions: the SP's metadata must hold a key and algorithms the broker encrypts for ---------------

AES256_GCM = "http://www.w3.org/2009/xmlenc11#aes256-gcm"
AES128_GCM = "http://www.w3.org/2009/xmlenc11#aes128-gcm"
AES256_CBC = "http://www.w3.org/2001/04/xmlenc#aes256-cbc"
RSA_OAEP_MGF1P = "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p"
RSA_OAEP_11 = "http://www.w3.org/2009/xmlenc11#rsa-oaep"
RSA_1_5 = "http://www.w3.org/2001/04/xmlenc#rsa-1_5"
XENC11 = "http://www.w3.org/2009/xmlenc11#"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
ENCRYPTING = replacing(DEMO_SP, "sign_response: false", "sign_response: false\nencrypt_assertions: true")


def _oaep(algorithm: str, *, digest: str | None = None, mgf: str | None = None) -> str:
    """An RSA-OAEP EncryptionMethod with its settings (XML Encryption 1.1 §5.5.2), for ``_encryption_key``."""
    settings = (f'<ds:DigestMethod xmlns:ds="http://www.w3.org/2000/09/xmldsig#" Algorithm="{digest}"/>'
                if digest else "") + (f'<xenc11:MGF xmlns:xenc11="{XENC11}" Algorithm="{mgf}"/>' if mgf else "")
    return f'<ns0:EncryptionMethod Algorithm="{algorithm}">{settings}</ns0:EncryptionMethod>'


def _encryption_key(key: str, *methods: str) -> Callable[[str], str]:
    """Metadata with one more KeyDescriptor, for encryption: a new certificate with a ``key`` (new_key's kinds)
    and ``methods`` as its EncryptionMethods (algorithm URIs, or elements from ``_oaep``)."""
    der = CertificateAuthority.root("SP encryption", NOW, key=key).certificate.public_bytes(serialization.Encoding.DER)
    listed = "".join(m if m.startswith("<") else f'<ns0:EncryptionMethod Algorithm="{m}"/>' for m in methods)
    descriptor = (f'<ns0:KeyDescriptor use="encryption"><ns1:KeyInfo><ns1:X509Data><ns1:X509Certificate>'
                  f'{base64.b64encode(der).decode()}</ns1:X509Certificate></ns1:X509Data></ns1:KeyInfo>{listed}'
                  "</ns0:KeyDescriptor>")

    def transform(xml: str) -> str:
        end = xml.rindex("</ns0:KeyDescriptor>") + len("</ns0:KeyDescriptor>")   # after the last one
        return xml[:end] + descriptor + xml[end:]

    return transform


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        pytest.param(ENCRYPTING, 'the metadata has no encryption key (a KeyDescriptor with use="encryption"',
                     id="no-encryption-key"),
        pytest.param(combined(ENCRYPTING, _metadata(_encryption_key("ec256"))),
                     "the broker encrypts only for RSA keys (RSA-OAEP key transport)", id="ec-key"),
        pytest.param(combined(ENCRYPTING, _metadata(_encryption_key("rsa1024"))),
                     "the encryption certificate's RSA key has 1024 bits; at least 2048 are required",
                     id="rsa-1024"),
        pytest.param(combined(ENCRYPTING, _metadata(_encryption_key("rsa2048", AES256_CBC, RSA_OAEP_MGF1P))),
                     f"the metadata's EncryptionMethods name data encryption {AES256_CBC} only; the broker encrypts "
                     f"with {AES256_GCM}, {AES128_GCM}", id="cbc-only"),
        pytest.param(combined(ENCRYPTING, _metadata(_encryption_key("rsa2048", AES256_GCM, RSA_1_5))),
                     f"name key transport {RSA_1_5} only; the broker uses {RSA_OAEP_MGF1P}, {RSA_OAEP_11}",
                     id="rsa-1_5-only"),
        pytest.param(combined(ENCRYPTING, _metadata(_encryption_key(
                         "rsa2048", _oaep(RSA_OAEP_11, digest=SHA256, mgf=XENC11 + "mgf1sha3_256")))),
                     f"name key transport {RSA_OAEP_11} (digest {SHA256}) (MGF {XENC11}mgf1sha3_256) only",
                     id="rsa-oaep-with-an-unknown-mgf"),
        pytest.param(combined(ENCRYPTING, _metadata(_encryption_key(
                         "rsa2048", _oaep(RSA_OAEP_MGF1P, mgf=XENC11 + "mgf1sha256")))),
                     f"name key transport {RSA_OAEP_MGF1P} (MGF {XENC11}mgf1sha256) only",
                     id="mgf1p-with-another-mgf"),
    ],
)
def test_encrypt_assertions_needs_a_key_the_broker_can_encrypt_for(config_dir: Path, edit: Edit,
                                                                   fragment: str) -> None:
    check(config_dir, edit, [Expected(DEMO_SP, "encrypt_assertions:", "encrypt_assertions", fragment)])


def _certificate_der(modulus_bits: int | None = None) -> bytes:
    """A certificate for a new RSA-2048 key, or for a public key with an odd ``modulus_bits``-bit modulus of no
    known factors (issued by another key: a public key is all metadata carries, and making a real 16400-bit key
    takes minutes)."""
    signer = rsa.generate_private_key(65537, 2048)
    public = signer.public_key() if modulus_bits is None else rsa.RSAPublicNumbers(
        65537, secrets.randbits(modulus_bits) | (1 << (modulus_bits - 1)) | 1).public_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "SP key")])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(public)
            .serial_number(1).not_valid_before(NOW).not_valid_after(NOW + dt.timedelta(days=9))
            .sign(signer, hashes.SHA256())).public_bytes(serialization.Encoding.DER)


def _unknown_key_type() -> bytes:
    """The SubjectPublicKeyInfo's algorithm rsaEncryption changed to an OID no library knows."""
    return _certificate_der().replace(bytes.fromhex("06092a864886f70d010101"),
                                      bytes.fromhex("06092a864886f70d010163"), 1)


def _malformed_rsa_key() -> bytes:
    """publicExponent 65537 re-encoded as a non-minimal INTEGER: the certificate parses, its key does not."""
    return _certificate_der().replace(bytes.fromhex("0203010001"), bytes.fromhex("0203000003"), 1)


def _even_modulus() -> bytes:
    """A 2048-bit modulus made even: the key reads, but OpenSSL will not encrypt with it."""
    der = _certificate_der()
    end = der.index(bytes.fromhex("0282010100")) + 5 + 255
    return der[:end] + bytes([der[end] & 0xFE]) + der[end + 1:]


def _with_key_descriptor(use: str, der: bytes) -> Callable[[str], str]:
    descriptor = (f'<ns0:KeyDescriptor use="{use}"><ns1:KeyInfo><ns1:X509Data><ns1:X509Certificate>'
                  f"{base64.b64encode(der).decode()}</ns1:X509Certificate></ns1:X509Data></ns1:KeyInfo>"
                  "</ns0:KeyDescriptor>")

    def transform(xml: str) -> str:
        end = xml.rindex("</ns0:KeyDescriptor>") + len("</ns0:KeyDescriptor>")
        return xml[:end] + descriptor + xml[end:]

    return transform


@pytest.mark.parametrize("use", ["signing", "encryption"])
def test_a_metadata_key_that_cannot_be_read_is_a_config_issue(config_dir: Path, use: str) -> None:
    """A malformed key is refused at load with the file named, for signing and encryption keys alike: never a
    traceback at load, a crashed reload, or a 500 at the first message the key is needed for."""
    check(config_dir, _metadata(_with_key_descriptor(use, _malformed_rsa_key())),
          [Expected(DEMO_SP, "metadata:", "metadata", "a KeyDescriptor holds an unreadable certificate or key")])


@pytest.mark.parametrize("use", ["signing", "encryption"])
def test_a_metadata_certificate_of_an_unknown_version_is_a_config_issue(config_dir: Path, use: str) -> None:
    """cryptography raises InvalidVersion, no ValueError, for a version other than v1 to v3: refused like any other
    unreadable certificate, not a traceback at load."""
    pem = x509.load_der_x509_certificate(_certificate_der()).public_bytes(serialization.Encoding.PEM)
    check(config_dir, _metadata(_with_key_descriptor(use, _certificate_of_version(pem, 5))),
          [Expected(DEMO_SP, "metadata:", "metadata", "a KeyDescriptor holds an unreadable certificate or key")])


@pytest.mark.parametrize("use", ["signing", "encryption"])
def test_a_metadata_key_of_a_type_nobody_here_uses_is_passed_over(config_dir: Path, use: str) -> None:
    """A key type the broker cannot use at all (here an algorithm OID no library knows; in the wild a binary
    curve, SM2, GOST) is not one of the SP's keys, as a KeyDescriptor for another use is not: the SP loads with
    its usable keys. Were it the only encryption key, encrypt_assertions would say there is none."""
    _metadata(_with_key_descriptor(use, _unknown_key_type()))(config_dir)
    sp = load_settings(config_dir).service_providers["demo-sp"]
    assert len(sp.metadata.signing_certificates) == 1
    assert sp.metadata.encryption_keys == ()
    if use == "encryption":
        check(config_dir, ENCRYPTING,
              [Expected(DEMO_SP, "encrypt_assertions:", "encrypt_assertions", "the metadata has no encryption key")])


_WEAK_SIGNING_KEYS = [
    pytest.param("rsa1024", "RSA key of 1024 bits (at least 2048 are required)", id="rsa-1024"),
    pytest.param("ec192", "elliptic curve secp192r1 is not accepted", id="ec-p192"),
]


def _metadata_file(name: str, transform: Callable[[str], str]) -> Edit:
    def edit(config_dir: Path) -> None:
        path = config_dir / "metadata" / name
        path.write_text(transform(path.read_text(encoding="utf-8")), encoding="utf-8")

    return edit


@pytest.mark.parametrize(("key", "fragment"), _WEAK_SIGNING_KEYS)
@pytest.mark.parametrize(("name", "expected"), [
    pytest.param("demo-sp.xml", (DEMO_SP, "metadata:", "metadata"), id="sp-metadata"),
    pytest.param("kommun-c-idp.xml", ("municipalities/kommun-c.yaml", "file: metadata/kommun-c-idp.xml",
                                      "saml.metadata.file"), id="municipal-idp-metadata"),
])
def test_a_weak_signing_key_in_a_peers_metadata_is_refused(config_dir: Path, key: str, fragment: str, name: str,
                                                            expected: tuple[str, str, str]) -> None:
    """A signing key in a peer's metadata is what its signatures are checked with: an SP's AuthnRequests and
    LogoutRequests, a municipal IdP's assertions. One too weak to trust (RSA under 2048 bits, a small curve: the
    rule the CAs' keys follow) lets whoever breaks it sign as that peer: log anyone in through the IdP, or pass
    the SP's require_signed_requests. It is refused at load, also beside a good key."""
    der = CertificateAuthority.root("Peer signing", NOW, key=key).certificate.public_bytes(serialization.Encoding.DER)
    check(config_dir, _metadata_file(name, _with_key_descriptor("signing", der)),
          [Expected(*expected, f"a signing key is too weak: {fragment}")])


@pytest.mark.parametrize(("key", "fragment"), _WEAK_SIGNING_KEYS)
def test_a_weak_certificate_to_verify_fetched_idp_metadata_with_is_refused(config_dir: Path, key: str,
                                                                           fragment: str) -> None:
    """The certificates that verify a municipal IdP's metadata fetched from its URL vouch for every signing key in
    it: one too weak to trust (the rule of the keys in metadata, and of the CAs) lets whoever breaks it publish
    metadata with a key of their own, and so log anyone in through that IdP. Refused at load, beside a good one."""
    signer = CertificateAuthority.root("Metadata signer", NOW, key=key).certificate

    def edit(config_dir: Path) -> None:
        write_pem(config_dir / "certs/kommun-c/metadata-signing.pem", signer)
        replace_once(config_dir / "municipalities/kommun-c.yaml", "    file: metadata/kommun-c-idp.xml",
                     "    url: https://idp.kommun-c.example/metadata\n    signing_certificates:\n"
                     "      - certs/kommun-a/root-ca.pem\n      - certs/kommun-c/metadata-signing.pem")

    check(config_dir, edit, [Expected("municipalities/kommun-c.yaml", "- certs/kommun-c/metadata-signing.pem",
                                      "saml.metadata.signing_certificates[1]", f"CN=Metadata signer,C=SE: {fragment}")])


def _rsa_pss_key() -> bytes:
    """A certificate whose key is id-RSASSA-PSS (RFC 4055: for PSS signatures only), made by OpenSSL."""
    done = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa-pss", "-pkeyopt", "rsa_keygen_bits:2048",
                           "-nodes", "-keyout", "/dev/null", "-subj", "/CN=SP PSS key", "-days", "9",
                           "-outform", "DER"], capture_output=True, check=True)
    return done.stdout


def _only_signing_key(der: Callable[[], bytes] | None) -> Callable[[str], str]:
    """The demo SP's metadata without AuthnRequestsSigned, its signing KeyDescriptor holding ``der`` (None: gone)."""
    def transform(xml: str) -> str:
        xml = xml.replace('AuthnRequestsSigned="true"', 'AuthnRequestsSigned="false"')
        if der is None:
            return re.sub(r"<ns0:KeyDescriptor.*?</ns0:KeyDescriptor>", "", xml, flags=re.DOTALL)
        return re.sub(r"(<ns1:X509Certificate>)[^<]+", lambda m: m.group(1) + base64.b64encode(der()).decode(), xml,
                      count=1)

    return transform


@pytest.mark.parametrize("der", [pytest.param(None, id="no-signing-key"),
                                 pytest.param(_unknown_key_type, id="only-a-key-of-a-type-nobody-uses")])
def test_signed_requests_required_without_a_usable_signing_key_is_a_config_issue(
        config_dir: Path, der: Callable[[], bytes] | None) -> None:
    """require_signed_requests (demo-sp.yaml says true) with no signing key the broker can use: every AuthnRequest
    would be refused, so the file is refused instead."""
    check(config_dir, _metadata(_only_signing_key(der)),
          [Expected(DEMO_SP, "require_signed_requests:", "require_signed_requests",
                    "signed requests are required but the metadata holds no signing key the broker can use")])


@pytest.mark.parametrize(("der", "fragment"), [
    pytest.param(_even_modulus, "the encryption certificate's RSA key does not encrypt", id="even-modulus"),
    pytest.param(_rsa_pss_key, "holds an RSASSA-PSS key, which is for signatures only", id="rsa-pss-key"),
    pytest.param(lambda: _certificate_der(16400), "has 16400 bits; OpenSSL encrypts with at most 16384",
                 id="modulus-beyond-openssls-limit"),
])
def test_an_encryption_key_openssl_will_not_use_is_refused_at_load(config_dir: Path, der: Callable[[], bytes],
                                                                    fragment: str) -> None:
    """A key that reads but cannot encrypt would fail every login to the SP: it is refused when loading."""
    check(config_dir, combined(ENCRYPTING, _metadata(_with_key_descriptor("encryption", der()))),
          [Expected(DEMO_SP, "encrypt_assertions:", "encrypt_assertions", fragment)])


@pytest.mark.parametrize(
    ("edit", "data", "key_transport"),
    [
        pytest.param(_encryption_key("rsa2048"), AES256_GCM, RSA_OAEP_MGF1P, id="no-methods-listed"),
        pytest.param(_encryption_key("rsa2048", AES128_GCM, AES256_CBC, RSA_OAEP_MGF1P), AES128_GCM, RSA_OAEP_MGF1P,
                     id="aes128-gcm-listed"),
        pytest.param(_encryption_key("rsa2048", AES256_GCM, RSA_OAEP_11), AES256_GCM, RSA_OAEP_11,
                     id="xmlenc11-oaep-listed"),
        pytest.param(_encryption_key("rsa2048", AES128_GCM), AES128_GCM, RSA_OAEP_MGF1P,
                     id="data-only-listed-key-transport-the-brokers"),
        pytest.param(_encryption_key("rsa2048", RSA_OAEP_11), AES256_GCM, RSA_OAEP_11,
                     id="key-transport-only-listed-data-the-brokers"),
        pytest.param(lambda xml: _encryption_key("rsa2048")(_encryption_key("ec256")(xml)), AES256_GCM,
                     RSA_OAEP_MGF1P, id="first-key-ec-second-rsa"),
    ],
)
def test_encrypt_assertions_takes_the_first_usable_key_and_algorithm(config_dir: Path, edit: Callable[[str], str],
                                                                     data: str, key_transport: str) -> None:
    combined(ENCRYPTING, _metadata(edit))(config_dir)
    sp = load_settings(config_dir).service_providers["demo-sp"]
    assert sp.encrypter is not None
    assert (sp.encrypter.choice.data, sp.encrypter.choice.key_transport) == (data, key_transport)


def test_encrypt_assertions_uses_the_oaep_settings_the_metadata_names(config_dir: Path) -> None:
    """SAML Metadata §2.4.1.1: an EncryptionMethod names its settings too; RSA-OAEP with SHA-256 and MGF1 with
    SHA-256 is what the broker then wraps the key with (not the identifier's SHA-1 defaults)."""
    mgf = XENC11 + "mgf1sha256"
    combined(ENCRYPTING, _metadata(_encryption_key("rsa2048", _oaep(RSA_OAEP_11, digest=SHA256, mgf=mgf))))(
        config_dir)
    sp = load_settings(config_dir).service_providers["demo-sp"]
    assert sp.encrypter is not None
    assert (sp.encrypter.choice.key_transport, sp.encrypter.choice.digest, sp.encrypter.choice.mgf) == (
        RSA_OAEP_11, SHA256, mgf)


def test_without_encrypt_assertions_an_sp_has_no_encrypter(config_dir: Path) -> None:
    assert load_settings(config_dir).service_providers["demo-sp"].encrypter is None


def test_two_service_providers_with_one_entity_id_is_reported_in_the_second(config_dir: Path) -> None:
    check(config_dir, _copy(DEMO_SP, "service-providers/demo-sp2.yaml"),
          [Expected("service-providers/demo-sp2.yaml", "entity_id:", "entity_id",
                    "entity ID already used by service provider 'demo-sp'")])


def test_a_shared_entity_id_is_reported_even_when_the_first_service_provider_has_another_problem(
        config_dir: Path) -> None:
    check(config_dir, combined(_copy(DEMO_SP, "service-providers/demo-sp2.yaml"),
                               replacing(DEMO_SP, "municipalities: [kommun-a, kommun-b, kommun-c]",
                                         "municipalities: [kommun-a, kommun-x]")),
          [Expected(DEMO_SP, "municipalities:", "municipalities[1]", "no municipality 'kommun-x'"),
           Expected("service-providers/demo-sp2.yaml", "entity_id:", "entity_id",
                    "entity ID already used by service provider 'demo-sp'")])


def test_a_service_provider_naming_an_unknown_municipality_is_reported_at_that_item(config_dir: Path) -> None:
    check(config_dir,
          replacing(DEMO_SP, "municipalities: [kommun-a, kommun-b, kommun-c]",
                    "municipalities:\n  - kommun-a\n  - kommun-x\n  - kommun-c"),
          [Expected(DEMO_SP, "- kommun-x", "municipalities[1]",
                    "no municipality 'kommun-x' (expected a file municipalities/kommun-x.yaml)")])


def test_the_broker_entity_id_used_by_a_service_provider_is_reported_at_its_line(config_dir: Path) -> None:
    check(config_dir,
          replacing(BROKER, "entity_id: https://localhost:8443/saml/idp/metadata", f"entity_id: {SP_ENTITY_ID}"),
          [Expected(BROKER, f"entity_id: {SP_ENTITY_ID}", "idp.entity_id",
                    "the broker's entity ID is also used by a service provider")])


# --- cross-field rules of broker.yaml ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "line", "key", "fragment"),
    [
        pytest.param(replacing(BROKER, "pseudonym_key: keys/audit-pseudonym.key", "pseudonym_key: keys/nameid.key"),
                     "pseudonym_key:", "audit.pseudonym_key", "must differ from idp.nameid_key",
                     id="pseudonym-key-is-the-nameid-key-file"),
        pytest.param(_copy("keys/nameid.key", "keys/audit-pseudonym.key"),
                     "pseudonym_key:", "audit.pseudonym_key", "must differ from idp.nameid_key",
                     id="pseudonym-key-has-the-nameid-key-content"),
        pytest.param(replacing(BROKER, "idle_timeout: 30m", "idle_timeout: 9h"),
                     "idle_timeout:", "session.idle_timeout", "must not exceed absolute_timeout",
                     id="idle-timeout-above-absolute-timeout"),
        pytest.param(replacing(BROKER, "absolute_timeout: 8h", "absolute_timeout: 29m"),
                     "idle_timeout:", "session.idle_timeout", "must not exceed absolute_timeout",
                     id="absolute-timeout-below-idle-timeout"),
        pytest.param(replacing(BROKER, "cookie_name: __Host-broker_session", "cookie_name: broker session"),
                     "cookie_name:", "session.cookie_name", "letters, digits, '_' and '-' only",
                     id="cookie-name-with-a-space"),
        pytest.param(replacing(BROKER, "technical_contact: it-support@example.se", "technical_contact: IT support"),
                     "technical_contact:", "idp.organization.technical_contact", "expected an e-mail address",
                     id="technical-contact-not-an-address"),
        pytest.param(replacing(BROKER, "# redis:\n#   url: redis://127.0.0.1:6379/0",
                               "redis:\n  url: http://127.0.0.1:6379/0"),
                     "url: http://127.0.0.1", "redis.url", "expected a redis://, rediss:// or unix:// URL",
                     id="redis-url-scheme"),
        pytest.param(replacing(BROKER, "header: X-SSL-Client-Cert", "header: X_SSL_Client_Cert"),
                     "header:", "client_certificate.proxy.header", "expected an HTTP header name",
                     id="proxy-header-name"),
    ],
)
def test_cross_field_rules_of_broker_yaml(config_dir: Path, edit: Edit, line: str, key: str, fragment: str) -> None:
    check(config_dir, edit, [Expected(BROKER, line, key, fragment)])


def test_a_unix_socket_bind_cannot_recognise_a_trusted_proxy(config_dir: Path) -> None:
    replacing(BROKER, "trusted_networks: []", "trusted_networks: [10.0.0.0/8]")(config_dir)
    replacing(BROKER, "# server:\n#   bind: 127.0.0.1:8080", "server:\n  bind: unix:/run/broker.sock")(config_dir)
    check(config_dir, lambda _: None, [Expected(BROKER, "bind: unix:", "server.bind", "no peer address")])


def test_a_unix_socket_bind_without_proxies_is_accepted(config_dir: Path) -> None:
    replacing(BROKER, "# server:\n#   bind: 127.0.0.1:8080", "server:\n  bind: unix:/run/broker.sock")(config_dir)
    assert load_settings(config_dir).broker.server.bind == "unix:/run/broker.sock"


def test_an_idle_timeout_equal_to_the_absolute_timeout_is_accepted(config_dir: Path) -> None:
    replacing(BROKER, "idle_timeout: 30m", "idle_timeout: 8h")(config_dir)

    session = load_settings(config_dir).broker.session

    assert session.idle_timeout == session.absolute_timeout == Duration(8 * 3600)


def test_a_municipality_listed_twice_for_an_sp_is_reported(config_dir: Path) -> None:
    check(config_dir, replacing(DEMO_SP, "municipalities: [kommun-a, kommun-b, kommun-c]",
                                "municipalities: [kommun-a, kommun-b, kommun-c, kommun-a]"),
          [Expected(DEMO_SP, "municipalities:", "municipalities[3]", "municipality 'kommun-a' is listed twice")])


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        pytest.param(
            combined(replacing(DEMO_SP, "municipalities: [kommun-a, kommun-b, kommun-c]",
                               "municipalities: [kommun-a, kommun-z]"),
                     replacing(DEMO_SP, "sign_response: false", "sign_response: nope")),
            [Expected(DEMO_SP, "sign_response:", "sign_response", "expected true or false"),
             Expected(DEMO_SP, "municipalities:", "municipalities[1]", "no municipality 'kommun-z'")],
            id="unknown-municipality-beside-a-mistyped-value"),
        pytest.param(
            replacing(DEMO_SP, "municipalities: [kommun-a, kommun-b, kommun-c]",
                      "municipalities: [kommun-a, 5, kommun-z]"),
            [Expected(DEMO_SP, "municipalities:", "municipalities[1]", "expected a string, got a number (5)"),
             Expected(DEMO_SP, "municipalities:", "municipalities[2]", "no municipality 'kommun-z'")],
            id="unknown-municipality-beside-a-number-in-the-list"),
        pytest.param(
            combined(_copy(DEMO_SP, "service-providers/other-sp.yaml"),
                     replacing(DEMO_SP, "sign_response: false", "sign_response: nope")),
            [Expected(DEMO_SP, "sign_response:", "sign_response", "expected true or false"),
             Expected("service-providers/other-sp.yaml", "entity_id:", "entity_id",
                      "entity ID already used by service provider 'demo-sp'")],
            id="entity-id-of-a-service-provider-with-a-problem-of-its-own"),
    ],
)
def test_a_service_provider_with_problems_of_its_own_has_its_references_checked_too(
        config_dir: Path, edit: Edit, expected: list[Expected]) -> None:
    """Every problem at once (STYLE §4): a file the schema refuses still names municipalities and an entity ID."""
    check(config_dir, edit, expected)
