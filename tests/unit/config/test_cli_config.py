"""`broker config check` and `broker config schema`, driven through click's test runner.

`config check DIR` is regional IT's tool: exit 0 and a summary when the
directory is valid; exit 1 and one ``<dir>/<file>:<line>: <key>: <message>``
line per problem when it is not. `config schema` prints the JSON Schema that
editors and CI validate the YAML files with.

jsonschema is not installed in the project's environment, so the schema tests
assert its structure (closed objects, required keys, enums) and walk the
example files through it instead of running a validator.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from lxml import etree

from broker.cli import main
from broker.config import schema
from broker.config.typed import json_schema
from tests.conftest import EXAMPLE
from tests.unit.config.editing import (
    BROKER,
    DEMO_SP,
    KOMMUN_A,
    KOMMUN_B,
    Edit,
    combined,
    line_of,
    replacing,
    replacing_block,
)

ISSUE_LINE = re.compile(r"^(?P<file>.+?):(?:(?P<line>\d+):)? (?:(?P<key>[\w.\[\]\-]+): )?(?P<message>.+)$")


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


# --- config check ----------------------------------------------------------------------------


def test_check_of_the_example_exits_0_and_names_what_it_found(config_dir: Path) -> None:
    result = run("config", "check", str(config_dir))

    assert result.exit_code == 0, result.output
    assert result.stdout == ("configuration OK: municipalities: kommun-a (active), kommun-b (active), "
                             "kommun-c (active); service providers: demo-sp\n")
    assert result.stderr == ""


def test_check_warns_when_a_municipality_has_no_revocation_checking(config_dir: Path) -> None:
    combined(
        replacing_block(KOMMUN_B, "  revocation:", "  revocation:\n    mode: none\n"),
        replacing(KOMMUN_B, "status: active", "status: onboarding"),
    )(config_dir)

    result = run("config", "check", str(config_dir))

    assert result.exit_code == 0, result.output
    assert "kommun-b (onboarding)" in result.stdout
    assert result.stderr == (f"warning: {config_dir}/municipalities/kommun-b.yaml: certificate.revocation.mode: "
                             "revocation checking is off (mode: none)\n")


def test_check_warns_of_a_local_idp_metadata_file_past_its_valid_until(config_dir: Path) -> None:
    # valid configuration, but logins through Kommun C's IdP are refused until the file is replaced
    path = config_dir / "metadata" / "kommun-c-idp.xml"
    root = etree.fromstring(path.read_bytes())
    root.set("validUntil", "2020-01-02T03:04:05Z")
    path.write_bytes(etree.tostring(root))

    result = run("config", "check", str(config_dir))

    assert result.exit_code == 0, result.output
    assert result.stderr == (f"warning: {config_dir}/municipalities/kommun-c.yaml: saml.metadata: IdP metadata "
                             "(validUntil) https://localhost:8443/demo-idp/metadata ended 2020-01-02 03:04 UTC; "
                             "run `broker readiness` for what it stops\n")


def test_check_warns_of_an_expired_trust_anchor_at_its_file_and_key(config_dir: Path) -> None:
    """Valid as configuration (its cards no longer log in); the warning says where it is configured."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Kommun A Old Root CA")])
    ended = dt.datetime(2020, 1, 2, 3, 4, tzinfo=dt.UTC)
    old = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
           .serial_number(1).not_valid_before(ended - dt.timedelta(days=365)).not_valid_after(ended)
           .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
           .sign(key, hashes.SHA256()))
    (config_dir / "certs/kommun-a/old-root.pem").write_bytes(old.public_bytes(serialization.Encoding.PEM))
    replacing(KOMMUN_A, "    - certs/kommun-a/root-ca.pem",
              "    - certs/kommun-a/root-ca.pem\n    - certs/kommun-a/old-root.pem")(config_dir)

    result = run("config", "check", str(config_dir))

    assert result.exit_code == 0, result.output
    assert result.stderr == (f"warning: {config_dir}/municipalities/kommun-a.yaml: certificate.trust_anchors: trust "
                             "anchor Kommun A Old Root CA ended 2020-01-02 03:04 UTC; run `broker readiness` for what "
                             "it stops\n")


@pytest.mark.parametrize(("what", "key"), [
    pytest.param("idp signing", "idp.signing.certificate", id="idp-signing"),
    pytest.param("sp signing", "sp.signing.certificate", id="sp-signing"),
    pytest.param("sp decryption 2", "sp.decryption[1].certificate", id="second-sp-decryption-key"),
])
def test_a_lapsed_broker_certificate_is_named_by_its_key(what: str, key: str) -> None:
    from broker.commands.config import _broker_key

    assert _broker_key(what) == key


@pytest.mark.parametrize(("networks", "index", "every"), [("[0.0.0.0/0]", 0, "0.0.0.0/0"), ("['::/0']", 0, "::/0"),
                                                         ("[10.0.0.5, '::/0']", 1, "::/0")])
def test_check_refuses_trusting_every_address_with_the_certificate_header(config_dir: Path, networks: str,
                                                                          index: int, every: str) -> None:
    """Every client could send the header with a certificate of its choosing (it is public) and log in as its
    holder."""
    replacing(BROKER, "trusted_networks: []", f"trusted_networks: {networks}")(config_dir)

    result = run("config", "check", str(config_dir))

    assert result.exit_code == 1
    assert (f"broker.yaml:{line_of(config_dir / BROKER, 'trusted_networks:')}: "
            f"client_certificate.proxy.trusted_networks[{index}]: {every} is every address: any client could send the "
            "certificate header; list the proxies' own addresses") in result.stderr


def test_check_warns_about_a_trusted_network_wider_than_a_slash_8_or_32(config_dir: Path) -> None:
    replacing(BROKER, "trusted_networks: []", "trusted_networks: [10.0.0.0/8, 10.0.0.0/7, '2001:db8::/31', "
                                              "'2001:db8::/32']")(config_dir)

    result = run("config", "check", str(config_dir))

    assert result.exit_code == 0, result.output
    assert result.stderr == "".join(
        f"warning: {config_dir}/broker.yaml: client_certificate.proxy.trusted_networks: {n} is wider than /8 "
        "(IPv4) or /32 (IPv6): every address in it may send the certificate header; list the proxies' own "
        "addresses\n"
        for n in ("10.0.0.0/7", "2001:db8::/31"))


def test_check_warns_when_a_municipality_lets_logins_through_without_a_revocation_answer(config_dir: Path) -> None:
    replacing(KOMMUN_A, "failure: fail_closed", "failure: soft_fail")(config_dir)

    result = run("config", "check", str(config_dir))

    assert result.exit_code == 0, result.output
    assert result.stderr == (f"warning: {config_dir}/municipalities/kommun-a.yaml: certificate.revocation.failure: "
                             "revocation soft-fails (logins pass when no source "
                             "answers; each is audited)\n")


def test_check_exits_1_with_one_line_per_issue_naming_file_line_and_key(config_dir: Path) -> None:
    combined(
        replacing(BROKER, "cookie_name: __Host-broker_session", "cookie_name: 123"),
        replacing(KOMMUN_A, "loa: loa3", "loa: loa5"),
        replacing(DEMO_SP, "municipalities: [kommun-a, kommun-b, kommun-c]",
                  "municipalities: [kommun-a, kommun-x, kommun-c]"),
    )(config_dir)
    d = str(config_dir)

    result = run("config", "check", d)

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"{d}/broker.yaml:{line_of(config_dir / BROKER, 'cookie_name:')}: session.cookie_name: "
        "expected a string, got a number (123) (quote the value in YAML)",
        f"{d}/municipalities/kommun-a.yaml:{line_of(config_dir / KOMMUN_A, 'loa: loa5')}: "
        "certificate.policies[0].loa: expected one of: loa2, loa3, loa4, sambi-loa2, sambi-loa3; "
        "got a string ('loa5')",
        f"{d}/service-providers/demo-sp.yaml:{line_of(config_dir / DEMO_SP, 'municipalities:')}: "
        "municipalities[1]: no municipality 'kommun-x' (expected a file municipalities/kommun-x.yaml)",
        "3 problem(s) found",
    ]


@pytest.mark.parametrize(
    ("edit", "file", "line", "key", "fragment"),
    [
        pytest.param(replacing(KOMMUN_A, "status: active", "status: activ"), KOMMUN_A, "status: activ", "status",
                     "expected one of", id="top-level-key"),
        pytest.param(replacing(KOMMUN_A, "loa: loa3", "loa: loa5"), KOMMUN_A, "loa: loa5",
                     "certificate.policies[0].loa", "expected one of", id="nested-key-with-index"),
        pytest.param(replacing(BROKER, "idle_timeout: 30m", "idle_timout: 30m"), BROKER, "idle_timout:",
                     "session.idle_timout", "did you mean 'idle_timeout'?", id="unknown-key"),
        pytest.param(replacing(KOMMUN_A, "status: active", "status: [active"), KOMMUN_A, "login:", None,
                     "YAML syntax error", id="syntax-error-without-key"),
    ],
)
def test_every_issue_line_has_the_documented_shape(
    config_dir: Path, edit: Edit, file: str, line: str, key: str | None, fragment: str
) -> None:
    edit(config_dir)

    result = run("config", "check", str(config_dir))

    first = result.stderr.splitlines()[0]
    match = ISSUE_LINE.match(first)
    assert match is not None, first
    assert (match["file"], match["line"], match["key"]) == (
        f"{config_dir}/{file}", str(line_of(config_dir / file, line)), key)
    assert fragment in match["message"]
    assert result.exit_code == 1


def test_check_of_a_directory_without_broker_yaml_names_the_file(config_dir: Path) -> None:
    (config_dir / BROKER).unlink()

    result = run("config", "check", str(config_dir))

    assert result.exit_code == 1
    assert result.stderr.splitlines() == [f"{config_dir}/broker.yaml: file not found", "1 problem(s) found"]


def test_check_of_a_missing_directory_names_it_once(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"

    result = run("config", "check", str(missing))

    assert result.exit_code == 1
    first = result.stderr.splitlines()[0]
    assert first.endswith(": configuration directory not found")
    assert first.count(str(missing)) == 1, first


# --- config schema -------------------------------------------------------------------------------

KINDS = [
    pytest.param("broker", schema.BrokerConfig, id="broker"),
    pytest.param("municipality", schema.MunicipalityConfig, id="municipality"),
    pytest.param("service-provider", schema.ServiceProviderConfig, id="service-provider"),
]


def printed_schema(kind: str) -> dict[str, Any]:
    result = run("config", "schema", "--kind", kind)
    assert result.exit_code == 0, result.output
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


@pytest.mark.parametrize(("kind", "root"), KINDS)
def test_schema_prints_the_json_schema_of_each_kind(kind: str, root: type[Any]) -> None:
    doc = printed_schema(kind)

    assert doc == json.loads(json.dumps(json_schema(root, f"broker {kind} configuration")))
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert doc["$ref"] == f"#/$defs/{root.__name__}"
    for name, definition in doc["$defs"].items():
        assert definition["additionalProperties"] is False, name


def test_schema_without_kind_is_the_broker_schema() -> None:
    result = run("config", "schema")

    assert result.exit_code == 0
    assert json.loads(result.stdout) == printed_schema("broker")


def test_schema_of_an_unknown_kind_is_a_usage_error() -> None:
    result = run("config", "schema", "--kind", "municipalities")

    assert result.exit_code == 2
    assert "'municipalities' is not one of 'broker', 'municipality', 'service-provider'" in result.stderr


@pytest.mark.parametrize(
    ("kind", "definition", "required"),
    [
        pytest.param("broker", "BrokerConfig", ["idp", "audit"], id="broker"),
        pytest.param("broker", "IdpConfig", ["entity_id", "base_url", "signing", "nameid_key", "organization"],
                     id="broker-idp"),
        pytest.param("broker", "AuditConfig", ["directory", "signing_key", "pseudonym_key"], id="broker-audit"),
        pytest.param("municipality", "MunicipalityConfig",
                     ["name", "organization_number", "status", "login"], id="municipality"),
        pytest.param("municipality", "CertificateLogin", ["trust_anchors", "policies", "identity", "revocation"],
                     id="municipality-certificate"),
        pytest.param("service-provider", "ServiceProviderConfig", ["entity_id", "name", "metadata", "municipalities"],
                     id="service-provider"),
    ],
)
def test_schema_lists_the_required_keys(kind: str, definition: str, required: list[str]) -> None:
    assert printed_schema(kind)["$defs"][definition]["required"] == required


def test_schema_enumerates_the_municipality_status() -> None:
    status = printed_schema("municipality")["$defs"]["MunicipalityConfig"]["properties"]["status"]

    assert status["enum"] == ["onboarding", "active", "suspended"]


# A structural walk of a YAML document through the printed schema: which keys the schema does not allow,
# and which required keys are absent. Enough to show that the schema and the example agree, without a
# JSON Schema validator in the environment.


def _resolve(node: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = doc["$defs"][node["$ref"].removeprefix("#/$defs/")]
    return node


def schema_problems(value: Any, node: dict[str, Any], doc: dict[str, Any], path: str = "") -> list[str]:
    node = _resolve(node, doc)
    if "anyOf" in node:
        if value is None:
            return []
        node = _resolve(node["anyOf"][0], doc)
    problems: list[str] = []
    if node.get("type") == "object" and isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else key
            if key not in node["properties"]:
                if node["additionalProperties"] is False:
                    problems.append(f"{where}: not allowed")
                continue
            problems += schema_problems(item, node["properties"][key], doc, where)
        problems += [f"{path}: {key} required" for key in node.get("required", []) if key not in value]
    elif node.get("type") == "array" and isinstance(value, list):
        for i, item in enumerate(value):
            problems += schema_problems(item, node["items"], doc, f"{path}[{i}]")
    elif "enum" in node and value not in node["enum"]:
        problems.append(f"{path}: {value!r} not in enum")
    return problems


EXAMPLES = [
    pytest.param("broker", "broker.yaml", id="broker"),
    pytest.param("municipality", "municipalities/kommun-a.yaml", id="kommun-a"),
    pytest.param("municipality", "municipalities/kommun-b.yaml", id="kommun-b"),
    pytest.param("service-provider", "service-providers/demo-sp.yaml", id="demo-sp"),
]


@pytest.mark.parametrize(("kind", "file"), EXAMPLES)
def test_the_example_files_fit_the_printed_schema(kind: str, file: str) -> None:
    data = yaml.safe_load((EXAMPLE / file).read_text(encoding="utf-8"))

    assert schema_problems(data, printed_schema(kind), printed_schema(kind)) == []


@pytest.mark.parametrize(
    ("kind", "file", "where", "problem"),
    [
        pytest.param("municipality", "municipalities/kommun-a.yaml", ("certificate",), "certificate.colour",
                     id="nested-unknown-key"),
        pytest.param("broker", "broker.yaml", (), "colour", id="top-level-unknown-key"),
        pytest.param("service-provider", "service-providers/demo-sp.yaml", ("name",), "name.colour",
                     id="unknown-key-in-localized-text"),
    ],
)
def test_an_unknown_key_does_not_fit_the_printed_schema(
    kind: str, file: str, where: tuple[str, ...], problem: str
) -> None:
    data = yaml.safe_load((EXAMPLE / file).read_text(encoding="utf-8"))
    target = data
    for key in where:
        target = target[key]
    target["colour"] = "blue"
    doc = printed_schema(kind)

    assert schema_problems(data, doc, doc) == [f"{problem}: not allowed"]


def test_a_status_outside_the_enum_does_not_fit_the_printed_schema() -> None:
    data = yaml.safe_load((EXAMPLE / "municipalities/kommun-a.yaml").read_text(encoding="utf-8"))
    data["status"] = "activ"
    doc = printed_schema("municipality")

    assert schema_problems(data, doc, doc) == ["status: 'activ' not in enum"]
