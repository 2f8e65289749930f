"""The examples of the operators' docs hold: broker.yaml examples load with the strict loader where the docs put
them, and the README's `broker config check` sample is what the command prints for the case it shows.

Every ```yaml block of the listed docs whose top-level keys are broker.yaml sections (the Prometheus and Envoy
blocks are other programs' configuration and are left out) replaces those sections of the demo configuration's
broker.yaml; the files the example names (Redis passwords, its TLS CA and client certificate) are made, and the
directory must load: an example with a key that no longer exists, or a value of the wrong type, fails here.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from click.testing import CliRunner

from broker.cli import main
from broker.config.loader import load_settings
from broker.config.schema import BrokerConfig

REPO = Path(__file__).resolve().parents[2]
DOCS = ("docs/deployment.md", "docs/redis.md", "docs/proxies.md")
SECTIONS = {f.name for f in dataclasses.fields(BrokerConfig)}


def broker_yaml_examples() -> list[Any]:
    found = []
    for name in DOCS:
        blocks = re.findall(r"^```yaml\n(.*?)^```", (REPO / name).read_text(encoding="utf-8"), re.S | re.M)
        for number, block in enumerate(blocks, 1):
            data = yaml.safe_load(block)
            # one broker.yaml section is enough to take the block for broker.yaml: a key beside it that is no
            # section (renamed, misspelt) then fails to load, instead of leaving the block out unchecked
            if isinstance(data, dict) and set(data) & SECTIONS:
                found.append(pytest.param(block, id=f"{name}#{number}"))
    return found


def test_the_docs_hold_broker_yaml_examples() -> None:
    assert {param.id.split("#")[0] for param in broker_yaml_examples()} == set(DOCS)


@pytest.mark.parametrize("block", broker_yaml_examples())
def test_broker_yaml_example_loads(block: str, config_dir: Path) -> None:
    keys = config_dir / "keys"
    for secret in ("redis-password", "sentinel-password"):
        (keys / secret).write_text("q" * 44)
        (keys / secret).chmod(0o600)
    (config_dir / "certs" / "redis-ca.crt").write_text((config_dir / "certs/kommun-a/root-ca.pem").read_text())
    shutil.copyfile(keys / "idp-signing.crt", keys / "redis-client.crt")
    shutil.copyfile(keys / "idp-signing.key", keys / "redis-client.key")
    settings = yaml.safe_load((config_dir / "broker.yaml").read_text(encoding="utf-8"))
    settings.update(yaml.safe_load(block))
    (config_dir / "broker.yaml").write_text(yaml.safe_dump(settings, sort_keys=False), encoding="utf-8")

    load_settings(config_dir)


def test_readme_config_check_sample_is_what_the_command_prints(config_dir: Path) -> None:
    """Kommun C configured with Kommun A's issuing CA as its anchor, and an SP naming a municipality that does not
    exist: the README's sample, line for line."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    sample = text.split("$ broker config check config/\n", 1)[1].split("```", 1)[0].splitlines()
    municipalities = config_dir / "municipalities"
    kommun_a = (municipalities / "kommun-a.yaml").read_text(encoding="utf-8")
    kommun_a = kommun_a.replace("    - certs/kommun-a/root-ca.pem\n  intermediates:\n", "")
    kommun_a = kommun_a.replace("        - certs/kommun-a/root-ca.crl\n", "")
    (municipalities / "kommun-a.yaml").write_text(kommun_a, encoding="utf-8")
    kommun_c = kommun_a.split("\n# For `broker readiness`", 1)[0].replace("Kommun A", "Kommun C")
    kommun_c = re.sub(r"^#.*\n", "", kommun_c.replace("Municipality A", "Municipality C"), flags=re.M)
    (municipalities / "kommun-c.yaml").write_text(kommun_c.replace("2120001009", "2120003005"), encoding="utf-8")
    providers = config_dir / "service-providers"
    sp = (providers / "demo-sp.yaml").read_text(encoding="utf-8")
    (providers / "demo-sp.yaml").unlink()
    (providers / "cosmic.yaml").write_text(sp.replace("[kommun-a, kommun-b, kommun-c]", "[kommun-a, kommun-x]"),
                                           encoding="utf-8")

    result = CliRunner().invoke(main, ["config", "check", str(config_dir)])

    assert result.exit_code == 1
    assert result.output.replace(f"{config_dir}/", "config/").splitlines() == sample


def test_readme_nginx_lines_are_what_proxy_config_writes(config_dir: Path, tmp_path: Path) -> None:
    """Each directive of the README's nginx example is in the snippet `broker proxy-config nginx --out
    /etc/nginx/broker/` writes (the bundle where that command puts it)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    example = text.split("```nginx\n", 1)[1].split("```", 1)[0]
    result = CliRunner().invoke(main, ["proxy-config", "nginx", "--config", str(config_dir), "--out", str(tmp_path),
                                       "--proxy-dir", "/etc/nginx/broker"])
    assert result.exit_code == 0, result.output

    def directives(nginx: str) -> set[str]:
        return {" ".join(line.split("#", 1)[0].split()) for line in nginx.splitlines() if line.split("#", 1)[0].strip()}

    written = directives((tmp_path / "broker-client-auth.conf").read_text(encoding="utf-8"))
    assert directives(example) <= written


def test_proxies_haproxy_lines_are_what_proxy_config_writes(config_dir: Path, tmp_path: Path) -> None:
    """The backend rules docs/proxies.md shows are those `broker proxy-config haproxy` writes for
    haproxy_base64_der with a chain_header."""
    text = (REPO / "docs" / "proxies.md").read_text(encoding="utf-8")
    example = text.split("```haproxy\n", 1)[1].split("```", 1)[0]
    path = config_dir / "broker.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["client_certificate"]["proxy"].update(format="haproxy_base64_der", chain_header="X-SSL-Client-Chain")
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    result = CliRunner().invoke(main, ["proxy-config", "haproxy", "--config", str(config_dir), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output

    def rules(haproxy: str) -> set[str]:
        return {" ".join(line.split(" # ", 1)[0].split()) for line in haproxy.splitlines()
                if line.strip() and not line.strip().startswith("#")}

    assert rules(example) <= rules((tmp_path / "broker-haproxy.cfg").read_text(encoding="utf-8"))


OPERATOR_DOCS = ("README.md", "docs/deployment.md", "docs/configuration.md", "docs/readiness.md", "docs/onboarding.md",
                 "docs/revocation.md", "docs/redis.md", "docs/proxies.md")


def documented_command_lines() -> list[Any]:
    """Every `broker ...` command the operators' docs show (in backticks, or a line of a code block, after a
    prompt or not), each alternative of `a|b` on its own, cut at `&&`, `|`, `<`, `>` and comments. A line of
    prose that happens to begin with "broker" is no command."""
    found = []
    for name in OPERATOR_DOCS:
        text = (REPO / name).read_text(encoding="utf-8").replace("\\|", "|")
        blocks = "\n".join(re.findall(r"^```[^\n]*\n(.*?)^```", text, re.S | re.M))
        spans = re.findall(r"`(broker [^`]+)`", text) + re.findall(r"^\s*(?:\$\s+)?(broker [^\n]+)$", blocks, re.M)
        for span in spans:
            for command in re.split(r"&&|\s[|<>#]\s?", span):
                words = command.split()
                if words[:1] == ["broker"]:
                    found.append(pytest.param(words[1:], id=f"{name}: {' '.join(words)[:60]}"))
    return found


@pytest.mark.parametrize("words", documented_command_lines())
def test_documented_commands_and_options_exist(words: list[str]) -> None:
    command: click.Command = main
    for word in words:
        if not isinstance(command, click.Group) or word.startswith("-") or word.startswith("["):
            break
        alternatives = word.split("|")
        known = [a for a in alternatives if a in command.commands]
        # a group's next word names one of its commands: a renamed or removed one named without options passed
        assert known == alternatives, f"no command {word} under {command.name}"
        command = command.commands[known[0]]
    options = {o for param in command.params for o in (*param.opts, *param.secondary_opts)}
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", " ".join(words)))
    assert named <= options, f"{' '.join(words)}: {sorted(named - options)} not options of {command.name}"


def test_python_m_broker_is_the_broker_command() -> None:
    """``python -m broker`` runs the same command line (a virtualenv whose scripts are not on PATH)."""
    done = subprocess.run([sys.executable, "-m", "broker", "config", "--help"], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Usage: broker config ")
