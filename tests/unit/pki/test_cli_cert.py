"""`broker cert verify` (stateless path check) and `broker cert check` (through the configuration)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from broker.cli import main
from broker.demo.certificates import write_pem
from broker.pki.naming import display_subject
from broker.pki.policy import ANY_POLICY
from tests.factories.pki import POLICY_LOA2, POLICY_LOA3, Hierarchy
from tests.factories.pki_cases import (
    NOW,
    SECOND,
    crl,
    policies,
    policy_mappings,
    reissue,
    resigned,
    revoking,
    with_duplicate_extension,
)
from tests.unit.config.editing import KOMMUN_A, line_of, replacing

DAY = dt.timedelta(days=1)
AT_NOW = ["--at", NOW.isoformat()]


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def as_json(result: Result) -> dict[str, Any]:
    data = json.loads(result.stdout)
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def h() -> Hierarchy:
    return Hierarchy.build(NOW)


@pytest.fixture
def trust(h: Hierarchy, tmp_path: Path) -> list[str | Path]:
    """--trust-anchor and --intermediate options for ``h``, as files."""
    return ["--trust-anchor", write_pem(tmp_path / "root.pem", h.root.certificate),
            "--intermediate", write_pem(tmp_path / "issuing.pem", h.issuing.certificate)]


def crl_options(tmp_path: Path, issuing: x509.CertificateRevocationList,
                root: x509.CertificateRevocationList) -> list[str | Path]:
    return ["--crl", write_pem(tmp_path / "issuing.crl", issuing), "--crl", write_pem(tmp_path / "root.crl", root)]


# --- cert verify ---


def test_verify_valid_leaf_exit_0(h: Hierarchy, trust: list[str | Path], tmp_path: Path) -> None:
    leaf = write_pem(tmp_path / "leaf.pem", h.leaf().certificate)
    result = run("cert", "verify", leaf, *trust, *AT_NOW)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("ACCEPTED")


def test_verify_valid_leaf_json(h: Hierarchy, trust: list[str | Path], tmp_path: Path) -> None:
    cert = h.leaf().certificate
    leaf = write_pem(tmp_path / "leaf.pem", cert)
    result = run("cert", "verify", leaf, *trust, *AT_NOW, "--json")
    assert result.exit_code == 0, result.output
    data = as_json(result)
    assert (data["accepted"], data["reason"], data["revocation"]) == (True, None, "not_checked")
    assert (data["revocation_checked"], data["revocation_valid_until"]) == ([], None)
    assert data["chain"][0] == "CN=Anna Andersson,serialNumber=SE2120001009-anna,givenName=Anna,surname=Andersson,C=SE"
    assert data["chain"] == [display_subject(cert),
                             h.issuing.certificate.subject.rfc4514_string(),
                             h.root.certificate.subject.rfc4514_string()]
    assert data["checked_at"] == NOW.isoformat()


@pytest.mark.parametrize("serial_number", [
    pytest.param("191212121212", id="twelve-digits"),
    pytest.param("19121212-1212", id="with-hyphen"),
    pytest.param("PNOSE-191212121212", id="etsi-prefix"),
])
@pytest.mark.parametrize("json_flag", [pytest.param([], id="text"), pytest.param(["--json"], id="json")])
def test_verify_never_shows_a_personnummer_in_full(h: Hierarchy, trust: list[str | Path], tmp_path: Path,
                                                    serial_number: str, json_flag: list[str]) -> None:
    """The leaf's subject is named masked wherever the verdict names it: as ``subject`` and as the first of
    ``chain`` (REFERENCE.md, Logging law and privacy: the output goes to terminals, tickets and logs)."""
    cert = h.leaf(serial_number=serial_number).certificate
    leaf = write_pem(tmp_path / "leaf.pem", cert)
    result = run("cert", "verify", leaf, *trust, *AT_NOW, *json_flag)
    assert result.exit_code == 0, result.output
    assert "19121212-****" in result.output
    assert "191212121212" not in result.output
    assert "19121212-1212" not in result.output
    if json_flag:
        data = as_json(result)
        assert data["chain"] == [data["subject"], h.issuing.certificate.subject.rfc4514_string(),
                                 h.root.certificate.subject.rfc4514_string()]


def test_verify_der_leaf_with_crls_exit_0(h: Hierarchy, trust: list[str | Path], tmp_path: Path) -> None:
    cert = h.leaf().certificate
    leaf = tmp_path / "leaf.der"
    leaf.write_bytes(cert.public_bytes(Encoding.DER))
    crls = crl_options(tmp_path, h.issuing.crl(), h.root.crl())
    result = run("cert", "verify", leaf, *trust, *crls, *AT_NOW, "--json")
    assert result.exit_code == 0, result.output
    data = as_json(result)
    assert data["revocation"] == "crl"
    assert [(c["serial"], c["status"], c["method"], c["source"]) for c in data["revocation_checked"]] == [
        (f"{cert.serial_number:x}", "good", "crl", str(tmp_path / "issuing.crl")),
        (f"{h.issuing.certificate.serial_number:x}", "good", "crl", str(tmp_path / "root.crl"))]


def test_verify_expired_leaf_exit_1(h: Hierarchy, trust: list[str | Path], tmp_path: Path) -> None:
    leaf = write_pem(tmp_path / "leaf.pem", h.leaf(valid_from=NOW - 400 * DAY, valid_until=NOW - DAY).certificate)
    result = run("cert", "verify", leaf, *trust, *AT_NOW, "--json")
    assert result.exit_code == 1
    data = as_json(result)
    assert (data["accepted"], data["reason"]) == (False, "certificate_expired")


def test_verify_revoked_leaf_with_crl_exit_1(h: Hierarchy, trust: list[str | Path], tmp_path: Path) -> None:
    cert = h.leaf().certificate
    leaf = write_pem(tmp_path / "leaf.pem", cert)
    crls = crl_options(tmp_path, revoking(h.issuing, cert).crl(), h.root.crl())
    result = run("cert", "verify", leaf, *trust, *crls, *AT_NOW, "--json")
    assert result.exit_code == 1
    data = as_json(result)
    assert (data["accepted"], data["reason"]) == (False, "revoked")


def test_verify_reads_a_pem_crl_after_explanatory_text(h: Hierarchy, trust: list[str | Path], tmp_path: Path) -> None:
    """RFC 7468 §2: text may precede the PEM (``openssl crl -text`` writes its dump there); the configuration reads
    such a file, and so does --crl."""
    cert = h.leaf().certificate
    leaf = write_pem(tmp_path / "leaf.pem", cert)
    crls = crl_options(tmp_path, revoking(h.issuing, cert).crl(), h.root.crl())
    issuing = tmp_path / "issuing.crl"
    issuing.write_bytes(b"Certificate Revocation List (CRL):\n" + b"        (text dump)\n" * 8 + issuing.read_bytes())
    result = run("cert", "verify", leaf, *trust, *crls, *AT_NOW, "--json")
    assert (result.exit_code, as_json(result)["reason"]) == (1, "revoked"), result.output


def test_verify_takes_the_path_around_a_revoked_ca_certificate(h: Hierarchy, tmp_path: Path) -> None:
    """Of the issuing CA's two certificates the root revoked one: the card's path goes through the other."""
    withdrawn = reissue(h.issuing.certificate, h.root, serial=x509.random_serial_number())
    root = revoking(h.root, withdrawn)
    bundle = tmp_path / "issuing.pem"
    write_pem(bundle, withdrawn, h.issuing.certificate)
    leaf = write_pem(tmp_path / "leaf.pem", h.leaf().certificate)
    trust = ["--trust-anchor", write_pem(tmp_path / "root.pem", h.root.certificate), "--intermediate", bundle]
    crls = crl_options(tmp_path, h.issuing.crl(), root.crl())
    result = run("cert", "verify", leaf, *trust, *crls, *AT_NOW, "--json")
    assert (result.exit_code, as_json(result)["accepted"]) == (0, True), result.output
    write_pem(bundle, withdrawn)
    result = run("cert", "verify", leaf, *trust, *crls, *AT_NOW, "--json")
    assert (result.exit_code, as_json(result)["reason"]) == (1, "revoked")


@pytest.mark.parametrize(("extensions", "reason", "detail"), [
    # requireExplicitPolicy 0 in the issuing CA, which asserts only LoA 2 while the card asserts LoA 3: the
    # valid_policy_tree is NULL with explicit_policy 0 (RFC 5280 §6.1.3 (f), §6.1.5)
    pytest.param((policies(POLICY_LOA2), x509.PolicyConstraints(require_explicit_policy=0,
                                                                inhibit_policy_mapping=None)),
                 "policy_not_accepted", "requires an explicit policy", id="require-explicit-policy-unmet"),
    # a CA mapping a policy to anyPolicy makes the path invalid (RFC 5280 §6.1.4 (a))
    pytest.param((policy_mappings((POLICY_LOA3, ANY_POLICY)),), "chain_invalid", "must not involve anyPolicy",
                 id="policy-mapped-to-any-policy"),
])
def test_verify_refuses_a_path_that_policy_processing_refuses(h: Hierarchy, tmp_path: Path,
                                                              extensions: tuple[x509.ExtensionType, ...],
                                                              reason: str, detail: str) -> None:
    """The stateless check validates the path as RFC 5280 §6.1 does, certificate policy processing included (as a
    login does): without a municipality's policy list, a path that processing finds invalid is still refused."""
    issuing = resigned(h.issuing, *extensions, critical=True)
    leaf = write_pem(tmp_path / "leaf.pem", issuing.issue(h.profile()).certificate)
    trust = ["--trust-anchor", write_pem(tmp_path / "root.pem", h.root.certificate),
             "--intermediate", write_pem(tmp_path / "issuing.pem", issuing.certificate)]
    result = run("cert", "verify", leaf, *trust, *AT_NOW, "--json")
    data = as_json(result)
    assert (result.exit_code, data["accepted"], data["reason"]) == (1, False, reason), result.output
    assert detail in data["detail"]


def test_verify_rejection_in_words(h: Hierarchy, trust: list[str | Path], tmp_path: Path) -> None:
    leaf = write_pem(tmp_path / "leaf.pem", h.leaf(valid_from=NOW - 400 * DAY, valid_until=NOW - DAY).certificate)
    result = run("cert", "verify", leaf, *trust, *AT_NOW)
    assert result.exit_code == 1
    assert result.stdout.startswith("REJECTED: certificate_expired")
    assert "what to do:" in result.stdout


@pytest.mark.parametrize("name", [
    pytest.param("Mallory\nACCEPTED", id="line-break"),
    pytest.param("Mallory\x1b[1A\x1b[2KACCEPTED", id="terminal-escape"),
    pytest.param("Mallory\u2028ACCEPTED", id="unicode-line-separator"),
    pytest.param("Mallory\u202eDETCEPCCA", id="bidirectional-override"),
])
def test_verify_text_shows_a_certificates_names_on_their_own_lines(h: Hierarchy, trust: list[str | Path],
                                                                    tmp_path: Path, name: str) -> None:
    """The text verdict quotes the certificate's names, which RFC 4514 strings do not escape beyond its own
    specials; the certificate is whatever someone sent the operator: a line break in its subject must not forge a
    line of the verdict (an ACCEPTED under the REJECTED) nor an escape sequence rewrite it on the terminal."""
    leaf = write_pem(tmp_path / "leaf.pem", h.leaf(common_name=name, valid_from=NOW - 400 * DAY,
                                                   valid_until=NOW - DAY).certificate)
    result = run("cert", "verify", leaf, *trust, *AT_NOW)
    assert result.exit_code == 1
    assert result.stdout.startswith("REJECTED: certificate_expired")
    assert not [line for line in result.stdout.splitlines() if not line.startswith(("REJECTED", "  "))]
    assert not {"\x1b", "\u202e"} & set(result.stdout)
    assert "subject: CN=Mallory\\" in result.stdout  # shown escaped


@pytest.mark.parametrize(("at", "exit_code", "reason"), [
    pytest.param(NOW, 0, None, id="at-now"),
    pytest.param(NOW + 5 * 365 * DAY, 1, "certificate_expired", id="at-five-years-on"),
    pytest.param(NOW - 2 * DAY - SECOND, 1, "certificate_not_yet_valid", id="before-issue"),
])
def test_verify_at_moves_the_check_time(h: Hierarchy, trust: list[str | Path], tmp_path: Path,
                                        at: dt.datetime, exit_code: int, reason: str | None) -> None:
    leaf = write_pem(tmp_path / "leaf.pem", h.leaf(valid_from=NOW - 2 * DAY).certificate)
    result = run("cert", "verify", leaf, *trust, "--at", at.isoformat(), "--json")
    assert result.exit_code == exit_code, result.output
    data = as_json(result)
    assert (data["reason"], data["checked_at"]) == (reason, at.isoformat())


def test_verify_at_without_offset_is_utc(h: Hierarchy, trust: list[str | Path], tmp_path: Path) -> None:
    leaf = write_pem(tmp_path / "leaf.pem", h.leaf().certificate)
    result = run("cert", "verify", leaf, *trust, "--at", "2026-03-02T09:30:00", "--json")
    assert result.exit_code == 0, result.output
    assert as_json(result)["checked_at"] == NOW.isoformat()


def _text_file(path: Path) -> Path:
    path.write_text("this is neither a certificate nor a CRL\n")
    return path


def _two_certificates(tmp_path: Path, h: Hierarchy) -> Path:
    return write_pem(tmp_path / "leaf.pem", h.leaf().certificate, h.issuing.certificate)


def _crl_issuer_as_bit_string(path: Path, h: Hierarchy) -> Path:
    """The issuing CA's CRL at ``path`` with the organizationName of its issuer retagged as a BIT STRING, which
    cryptography reads with a TypeError (no ValueError)."""
    der = h.issuing.crl().public_bytes(Encoding.DER)
    organization = b"\x06\x03\x55\x04\x0a\x0c"  # organizationName, UTF8String
    at = der.index(organization) + len(organization) - 1
    path.write_bytes(der[:at] + b"\x03" + der[at + 1:])
    return path


def _of_version(path: Path, cert: x509.Certificate, version: int) -> Path:
    """``cert`` as DER at ``path`` with its version (v3: [0] INTEGER 2) replaced: cryptography raises InvalidVersion,
    no ValueError, when it reads it."""
    der = cert.public_bytes(Encoding.DER)
    at = der.index(b"\xa0\x03\x02\x01\x02")
    assert at < 12  # the version is the first field of tbsCertificate
    path.write_bytes(der[:at] + b"\xa0\x03\x02\x01" + bytes([version]) + der[at + 5:])
    return path


@pytest.mark.parametrize("make_leaf", [
    pytest.param(lambda tmp_path, h: _text_file(tmp_path / "leaf.pem"), id="not-a-certificate"),
    pytest.param(lambda tmp_path, h: tmp_path / "missing.pem", id="no-such-file"),
    pytest.param(lambda tmp_path, h: tmp_path, id="a-directory"),
    pytest.param(_two_certificates, id="two-certificates-in-leaf-file"),
    pytest.param(lambda tmp_path, h: _of_version(tmp_path / "leaf.der", h.leaf().certificate, 5),
                 id="a-certificate-of-an-unknown-version"),
])
@pytest.mark.parametrize("json_flag", [pytest.param([], id="text"), pytest.param(["--json"], id="json")])
def test_verify_unusable_leaf_exit_2(h: Hierarchy, trust: list[str | Path], tmp_path: Path,
                                     make_leaf: Any, json_flag: list[str]) -> None:
    result = run("cert", "verify", make_leaf(tmp_path, h), *trust, *AT_NOW, *json_flag)
    assert result.exit_code == 2, result.output
    if json_flag:
        assert as_json(result)["reason"] == "unusable_input"
    else:
        assert result.stderr.startswith("unusable input: ")


DUPLICATE_KEY_USAGE = ("malformed X.509 certificate: its extensions cannot be read "
                       "(DuplicateExtension: Duplicate 2.5.29.15 extension found)")


@pytest.mark.parametrize("json_flag", [pytest.param([], id="text"), pytest.param(["--json"], id="json")])
def test_verify_leaf_with_duplicate_extension_exit_2(h: Hierarchy, trust: list[str | Path], tmp_path: Path,
                                                     json_flag: list[str]) -> None:
    """RFC 5280 §4.2: "A certificate MUST NOT include more than one instance of a particular extension".
    cryptography notices only when the extensions are read: the file is refused as it is read, as the login
    path refuses such a certificate (broker.pki.reading), not with a traceback and exit 1 ("rejected")."""
    leaf = write_pem(tmp_path / "leaf.pem", with_duplicate_extension(h.leaf(san_dns="anna.example").certificate,
                                                                     h.issuing))
    result = run("cert", "verify", leaf, *trust, *AT_NOW, *json_flag)
    assert result.exit_code == 2, result.output
    if json_flag:
        assert as_json(result) == {"accepted": False, "reason": "unusable_input",
                                   "detail": f"{leaf}: {DUPLICATE_KEY_USAGE}"}
    else:
        assert result.stderr == f"unusable input: {leaf}: {DUPLICATE_KEY_USAGE}\n"


def test_verify_intermediate_bundle_with_duplicate_extension_exit_2(h: Hierarchy, trust: list[str | Path],
                                                                    tmp_path: Path) -> None:
    """The same check for every certificate of --trust-anchor and --intermediate bundles, naming which one."""
    broken = with_duplicate_extension(Hierarchy.build(NOW, "Kommun B").leaf(san_dns="b.example").certificate,
                                      h.issuing)
    bundle = write_pem(tmp_path / "bundle.pem", h.issuing.certificate, broken)
    leaf = write_pem(tmp_path / "leaf.pem", h.leaf().certificate)
    result = run("cert", "verify", leaf, *trust, "--intermediate", bundle, *AT_NOW, "--json")
    assert result.exit_code == 2, result.output
    assert as_json(result) == {"accepted": False, "reason": "unusable_input",
                               "detail": f"certificate 2 of 2 in {bundle}: {DUPLICATE_KEY_USAGE}"}


@pytest.mark.parametrize(("extra", "detail"), [
    pytest.param(lambda tmp_path, h: ["--trust-anchor", tmp_path / "missing-root.pem"], "cannot read",
                 id="missing-anchor-file"),
    pytest.param(lambda tmp_path, h: ["--crl", _text_file(tmp_path / "issuing.crl")], "is not a CRL",
                 id="crl-file-not-a-crl"),
    pytest.param(lambda tmp_path, h: ["--crl", write_pem(tmp_path / "x.crl", Hierarchy.build(NOW, "X").root.crl())],
                 "is not a configured CA", id="crl-of-unknown-issuer"),
    # anchors and intermediates are CA certificates, as in the configuration: a login certificate given as its
    # own anchor was "accepted"
    pytest.param(lambda tmp_path, h: ["--trust-anchor", write_pem(tmp_path / "self.pem", h.leaf().certificate)],
                 "is not a CA certificate (basicConstraints cA is false)", id="a-leaf-as-trust-anchor"),
    pytest.param(lambda tmp_path, h: ["--intermediate", write_pem(tmp_path / "mid.pem", h.leaf().certificate)],
                 "is not a CA certificate", id="a-leaf-as-intermediate"),
    pytest.param(lambda tmp_path, h: ["--trust-anchor", _of_version(tmp_path / "v6.der", h.root.certificate, 5)],
                 "is not a certificate file", id="a-trust-anchor-of-an-unknown-version"),
    pytest.param(lambda tmp_path, h: ["--at", "next tuesday"], "not an ISO 8601 date-time", id="at-not-iso-8601"),
    # ISO 8601, but with no instant in UTC (year 0 or 10000 there): refused as read, not an OverflowError
    pytest.param(lambda tmp_path, h: ["--at", "0001-01-01T00:00:00+01:00"], "outside the years 1 to 9999 in UTC",
                 id="at-before-year-1-in-utc"),
    pytest.param(lambda tmp_path, h: ["--at", "9999-12-31T23:30:00-01:00"], "outside the years 1 to 9999 in UTC",
                 id="at-after-year-9999-in-utc"),
    # an issuer name cryptography fails to read with a TypeError: refused as the file is read, not with a traceback
    pytest.param(lambda tmp_path, h: ["--crl", _crl_issuer_as_bit_string(tmp_path / "bits.crl", h)],
                 "the CRL cannot be read", id="crl-whose-issuer-cannot-be-read"),
    # signed by the CA, but with cRLNumber twice: refused as the file is read, not with a traceback
    pytest.param(lambda tmp_path, h: ["--crl", write_pem(tmp_path / "twice.crl",
                                                         crl(h.issuing, extensions=[(x509.CRLNumber(5), False)]))],
                 "the CRL has extension 2.5.29.20 more than once", id="crl-with-an-extension-twice"),
])
def test_verify_unusable_options_exit_2(h: Hierarchy, trust: list[str | Path], tmp_path: Path,
                                        extra: Any, detail: str) -> None:
    leaf = write_pem(tmp_path / "leaf.pem", h.leaf().certificate)
    result = run("cert", "verify", leaf, *trust, *extra(tmp_path, h), "--json")
    assert result.exit_code == 2, result.output
    data = as_json(result)
    assert data["reason"] == "unusable_input"
    assert detail in data["detail"]


# --- cert check: through the example configuration and the demo users ---


@pytest.mark.parametrize(("user", "municipality", "loa"), [
    pytest.param("anna", "kommun-a", "http://id.elegnamnden.se/loa/1.0/loa3", id="anna-hsa-id-kommun-a"),
    pytest.param("bo", "kommun-b", "http://id.elegnamnden.se/loa/1.0/loa2", id="bo-personnummer-kommun-b"),
])
def test_check_accepted(demo_material: Any, demo_now: dt.datetime, config_dir: Path, user: str,
                        municipality: str, loa: str) -> None:
    result = run("cert", "check", demo_material.users / f"{user}.pem", "--config", config_dir,
                 "--at", demo_now.isoformat(), "--json")
    assert result.exit_code == 0, result.output
    data = as_json(result)
    assert (data["accepted"], data["municipality"], data["loa"], data["revocation"]) == (
        True, municipality, loa, "crl")
    crl_dir = config_dir / "certs" / municipality
    assert [(c["status"], c["method"], Path(c["source"]).resolve()) for c in data["revocation_checked"]] == [
        ("good", "crl", (crl_dir / "issuing-ca.crl").resolve()), ("good", "crl", (crl_dir / "root-ca.crl").resolve())]


@pytest.mark.parametrize(("user", "reason"), [
    pytest.param("cecilia", "revoked", id="cecilia-revoked"),
    pytest.param("david", "certificate_expired", id="david-expired"),
    pytest.param("erik", "eku_not_client_auth", id="erik-email-protection"),
    pytest.param("fatima", "issuer_unknown", id="fatima-unknown-issuer"),
])
def test_check_rejected(demo_material: Any, demo_now: dt.datetime, config_dir: Path, user: str,
                        reason: str) -> None:
    result = run("cert", "check", demo_material.users / f"{user}.pem", "--config", config_dir,
                 "--at", demo_now.isoformat(), "--json")
    assert result.exit_code == 1, result.output
    data = as_json(result)
    assert (data["accepted"], data["reason"]) == (False, reason)


@pytest.mark.parametrize("ca", ["root-ca.pem", "issuing-ca.pem"], ids=["root", "issuing-ca"])
@pytest.mark.parametrize("json_flag", [pytest.param([], id="text"), pytest.param(["--json"], id="json")])
def test_check_of_a_ca_certificate_says_it_is_one(demo_now: dt.datetime, config_dir: Path, ca: str,
                                                  json_flag: list[str]) -> None:
    """A CA certificate given by mistake (the configured CA file instead of a user's) lacks digitalSignature like a
    card's signing certificate, but the hint must not send the operator after the user's choice of certificate."""
    result = run("cert", "check", config_dir / "certs" / "kommun-a" / ca, "--config", config_dir,
                 "--at", demo_now.isoformat(), *json_flag)

    assert result.exit_code == 1, result.output
    if json_flag:
        data = as_json(result)
        assert data["reason"] == "key_usage_not_digital_signature"
        assert data["detail"].startswith("a CA certificate (basicConstraints cA=TRUE), not a user's: ")
        assert data["hint"] == ("This is a CA certificate, not a user's: check a user's certificate (from the card, "
                                "or the municipality's sample), not the CA's.")
    else:
        assert "signing" not in result.output
        assert "This is a CA certificate, not a user's" in result.output


PERSONNUMMER_OF_BO_AND_ERIK = "191212121212"


@pytest.mark.parametrize(("user", "exit_code"), [pytest.param("bo", 0, id="bo-accepted"),
                                                 pytest.param("erik", 1, id="erik-rejected")])
@pytest.mark.parametrize("json_flag", [pytest.param([], id="text"), pytest.param(["--json"], id="json")])
def test_check_never_shows_personnummer_in_full(demo_material: Any, demo_now: dt.datetime, config_dir: Path,
                                                user: str, exit_code: int, json_flag: list[str]) -> None:
    result = run("cert", "check", demo_material.users / f"{user}.pem", "--config", config_dir,
                 "--at", demo_now.isoformat(), *json_flag)
    assert result.exit_code == exit_code, result.output
    assert PERSONNUMMER_OF_BO_AND_ERIK not in result.output


def test_check_shows_masked_personnummer(demo_material: Any, demo_now: dt.datetime, config_dir: Path) -> None:
    result = run("cert", "check", demo_material.users / "bo.pem", "--config", config_dir,
                 "--at", demo_now.isoformat(), "--json")
    data = as_json(result)
    assert (data["identity_kind"], data["identity"]) == ("personnummer", "19121212-****")
    assert data["attributes"]["personalIdentityNumber"] == ["19121212-****"]


def test_check_at_moves_the_check_time(demo_material: Any, demo_now: dt.datetime, config_dir: Path) -> None:
    result = run("cert", "check", demo_material.users / "anna.pem", "--config", config_dir,
                 "--at", (demo_now + 5 * 365 * DAY).isoformat(), "--json")
    assert result.exit_code == 1, result.output
    assert as_json(result)["reason"] == "certificate_expired"


def test_check_unreadable_leaf_exit_2(config_dir: Path, tmp_path: Path) -> None:
    result = run("cert", "check", tmp_path / "missing.pem", "--config", config_dir)
    assert result.exit_code == 2


def test_check_leaf_with_duplicate_extension_exit_2(h: Hierarchy, config_dir: Path, tmp_path: Path) -> None:
    leaf = write_pem(tmp_path / "leaf.pem", with_duplicate_extension(h.leaf(san_dns="anna.example").certificate,
                                                                     h.issuing))
    result = run("cert", "check", leaf, "--config", config_dir, "--json")
    assert result.exit_code == 2, result.output
    assert as_json(result) == {"accepted": False, "reason": "unusable_input",
                               "detail": f"{leaf}: {DUPLICATE_KEY_USAGE}"}


@pytest.mark.parametrize("json_flag", [pytest.param([], id="text"), pytest.param(["--json"], id="json")])
def test_check_with_an_invalid_configuration_exit_2_with_the_issues(demo_material: Any, config_dir: Path,
                                                                    json_flag: list[str]) -> None:
    """A configuration that does not load is unusable input (exit 2); its issues are listed as `broker config
    check` lists them, and with --json as `broker readiness --json` gives them, on stdout."""
    replacing(KOMMUN_A, "status: active", "status: live")(config_dir)
    line = line_of(config_dir / KOMMUN_A, "status: live")
    message = "expected one of: onboarding, active, suspended; got a string ('live')"

    result = run("cert", "check", demo_material.users / "anna.pem", "--config", config_dir, *json_flag)

    assert result.exit_code == 2, result.output
    if json_flag:
        assert as_json(result) == {"version": 1, "result": "invalid", "issues": [
            {"file": f"{config_dir}/{KOMMUN_A}", "line": line, "key": "status", "message": message}]}
    else:
        assert result.stdout == ""
        assert result.stderr.splitlines()[0] == f"{config_dir}/{KOMMUN_A}:{line}: status: {message}"
