"""The deployment files agree with each other, with the configuration schema and with `broker proxy-config nginx`.

docker-compose.yml, the Dockerfile and deploy/ (nginx server, broker.yaml overlays, Sentinel) are read as
data: the services and profiles exist, every path the compose file mounts is in the repository or is one that
docs/deployment.md has the operator generate (and the generator really writes it), the overlays load with the
demo's material through the real loader, the one address trusted to send the certificate header is nginx's,
the Sentinel names agree. The nginx configuration is checked against what `broker proxy-config nginx` writes
for it and passes a real `nginx -t` (with the container's paths mapped to generated files, as in
tests/flows/test_nginx.py). Docker itself is not needed.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from broker.config.loader import load_settings
from tests.factories.cli import broker_cli as broker
from tests.factories.deploy import (
    COMPOSE_FILE,
    DEPLOYMENT_DOC,
    NGINX_CONF,
    OVERLAY,
    PROXY_CONFIG_COMMAND,
    PROXY_DIR_IN_CONTAINER,
    REPO,
    SENTINEL_CONF,
    SENTINEL_OVERLAY,
    UPSTREAM,
    bind_mounts,
    compose,
    default_of,
    nginx_conf_on_loopback,
    volume_parts,
)
from tests.factories.nginx import Nginx

ALWAYS = {"nginx", "broker", "redis"}
SENTINEL_PROFILE = {"redis-replica", "sentinel-1", "sentinel-2", "sentinel-3"}
# generated, never committed (var/ is git-ignored): what makes each one, as docs/deployment.md says
GENERATED = {
    "./var/demo/config": "broker demo --check",
    "./var/demo/tls": "broker demo --check",
    "./var/proxy": PROXY_CONFIG_COMMAND,
    "./var/compose/audit": "mkdir -p var/compose/audit",
}
SNIPPET_OWNS = ("ssl_verify_client", "ssl_client_certificate", "ssl_verify_depth", "proxy_pass",
                "proxy_set_header", "location")


def services() -> dict[str, Any]:
    found = compose()["services"]
    assert isinstance(found, dict)
    return found


def write_proxy_files(config: Path, out: Path, *extra: str) -> Path:
    written = broker("proxy-config", "nginx", "--config", str(config), "--out", str(out), *extra)
    assert written.returncode == 0, written.stdout + written.stderr
    return out


def directives(text: str) -> list[str]:
    """The directive names of an nginx configuration, comments removed."""
    lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    return [line.split()[0] for line in lines if line and line not in ("}", "{")]


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    joined, current = [], ""
    for line in (REPO / "Dockerfile").read_text(encoding="utf-8").splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line.rstrip("\\").strip() + " "
        if not line.endswith("\\"):
            joined.append(current.strip())
            current = ""
    return [(i.split(" ", 1)[0].upper(), i.split(" ", 1)[1] if " " in i else "") for i in joined]


# --- compose: services, profiles, paths ---------------------------------------------------------------------


def test_compose_runs_nginx_two_broker_replicas_and_redis_and_a_sentinel_profile() -> None:
    found = services()
    assert set(found) == ALWAYS | SENTINEL_PROFILE
    assert {name for name, s in found.items() if not s.get("profiles")} == ALWAYS
    assert all(found[name]["profiles"] == ["sentinel"] for name in SENTINEL_PROFILE)
    assert found["broker"]["deploy"]["replicas"] == 2
    assert "container_name" not in found["broker"]  # replicas need names of their own
    assert found["broker"]["build"] == "."
    assert found["nginx"]["ports"] == ["8443:443"]
    assert found["nginx"]["depends_on"] == {"broker": {"condition": "service_healthy"}}
    assert found["broker"]["depends_on"] == {"redis": {"condition": "service_healthy"}}


@pytest.mark.parametrize("service", sorted(ALWAYS | SENTINEL_PROFILE))
def test_every_path_compose_mounts_is_in_the_repository_or_generated(service: str) -> None:
    for target, source in bind_mounts(services()[service]).items():
        if source in GENERATED:
            assert GENERATED[source] in DEPLOYMENT_DOC.read_text(encoding="utf-8"), (source, GENERATED[source])
        else:
            assert (REPO / source).exists(), f"{service}: {source} (mounted at {target}) is not in the repository"
            assert not source.startswith("./var/"), source


def test_generated_mounts_hold_what_the_containers_read(demo_material: Any, tmp_path: Path) -> None:
    """The demo writes the configuration and TLS files compose mounts; proxy-config writes nginx's include."""
    assert (Path(demo_material.config) / "broker.yaml").is_file()
    for name in ("server.pem", "server.key"):
        assert (Path(demo_material.tls) / name).is_file()
        assert f"/etc/nginx/tls/{name}" in NGINX_CONF.read_text(encoding="utf-8")
    out = write_proxy_files(Path(demo_material.config), tmp_path / "proxy", "--proxy-dir", PROXY_DIR_IN_CONTAINER,
                            "--upstream", UPSTREAM)
    assert {"broker-client-auth.conf", "broker-client-cas.pem"} <= {p.name for p in out.iterdir()}
    assert bind_mounts(services()["nginx"]) == {
        "/etc/nginx/conf.d/default.conf": "./deploy/nginx/broker.conf",
        PROXY_DIR_IN_CONTAINER: "./var/proxy",
        "/etc/nginx/tls": "./var/demo/tls",
    }


def test_every_variable_the_compose_file_uses_has_a_documented_default() -> None:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    used = set(re.findall(r"\$\{([A-Z_]+)", text))
    assert used == {"BROKER_CONFIG_DIR", "BROKER_YAML", "BROKER_TLS_DIR", "BROKER_PROXY_DIR", "BROKER_AUDIT_DIR",
                    "BROKER_UID", "BROKER_GID"}
    assert not re.search(r"\$\{[A-Z_]+\}", text), "every variable needs a default (${NAME:-default})"
    doc = DEPLOYMENT_DOC.read_text(encoding="utf-8")
    for name in used:
        assert name in doc, f"{name} is not explained in docs/deployment.md"


# --- networks: only nginx may send the certificate header --------------------------------------------------


def test_the_one_trusted_proxy_is_nginx_and_redis_is_on_an_internal_network() -> None:
    data = compose()
    found = services()
    address = found["nginx"]["networks"]["edge"]["ipv4_address"]
    subnet = ipaddress.ip_network(data["networks"]["edge"]["ipam"]["config"][0]["subnet"])
    assert ipaddress.ip_address(address) in subnet
    for path in (OVERLAY, SENTINEL_OVERLAY):
        overlay = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert overlay["client_certificate"]["proxy"]["trusted_networks"] == [f"{address}/32"], path.name
        assert overlay["audit"]["directory"] == "/var/lib/broker/audit"
    assert sorted(found["broker"]["networks"]) == ["edge", "state"]
    assert data["networks"]["state"]["internal"] is True
    for name in ("redis", *SENTINEL_PROFILE):
        assert found[name]["networks"] == ["state"], name
    url = yaml.safe_load(OVERLAY.read_text(encoding="utf-8"))["redis"]["url"]
    assert url == "redis://redis:6379/0"


def test_broker_mounts_the_configuration_where_the_image_reads_it() -> None:
    mounts = bind_mounts(services()["broker"])
    assert mounts["/etc/broker"] == "./var/demo/config"
    assert mounts["/etc/broker/broker.yaml"] == "./deploy/compose/broker.yaml"
    assert mounts["/var/lib/broker/audit"] == "./var/compose/audit"
    sources = {target: source for source, target in map(volume_parts, services()["broker"]["volumes"])}
    assert default_of(sources["/etc/broker/broker.yaml"]) == ("BROKER_YAML", "./deploy/compose/broker.yaml")
    entrypoint = dict(dockerfile())["ENTRYPOINT"]
    assert entrypoint == '["broker", "serve", "--config", "/etc/broker"]'


# --- the broker.yaml overlays ------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", [OVERLAY, SENTINEL_OVERLAY], ids=["redis", "sentinel"])
def test_overlay_loads_with_the_demo_material(overlay: Path, demo_material: Any, tmp_path: Path) -> None:
    """What the replicas load: the demo's configuration directory with the overlay as broker.yaml."""
    config = tmp_path / "config"
    shutil.copytree(demo_material.config, config)
    shutil.copyfile(overlay, config / "broker.yaml")
    settings = load_settings(config)
    assert (settings.broker.server.workers, settings.broker.server.threads) == (2, 4)
    assert settings.broker.redis is not None
    assert settings.broker.redis.deployment == ("sentinel" if overlay == SENTINEL_OVERLAY else "url")


def test_overlays_differ_only_in_redis() -> None:
    plain = yaml.safe_load(OVERLAY.read_text(encoding="utf-8"))
    sentinel = yaml.safe_load(SENTINEL_OVERLAY.read_text(encoding="utf-8"))
    assert {k: v for k, v in plain.items() if k != "redis"} == {k: v for k, v in sentinel.items() if k != "redis"}
    assert plain["redis"] != sentinel["redis"]


def test_overlay_keeps_the_example_settings_apart_from_deployment_ones() -> None:
    """The overlay is config/example/broker.yaml with the deployment's changes: nothing else drifts."""
    example = yaml.safe_load((REPO / "config" / "example" / "broker.yaml").read_text(encoding="utf-8"))
    plain = yaml.safe_load(OVERLAY.read_text(encoding="utf-8"))
    changed = {"redis", "server", "audit", "client_certificate"}
    assert {k: v for k, v in plain.items() if k not in changed} == \
        {k: v for k, v in example.items() if k not in changed}
    assert {k: v for k, v in plain["audit"].items() if k != "directory"} == \
        {k: v for k, v in example["audit"].items() if k != "directory"}
    proxy = {k: v for k, v in plain["client_certificate"]["proxy"].items() if k != "trusted_networks"}
    assert proxy == {k: v for k, v in example["client_certificate"]["proxy"].items() if k != "trusted_networks"}


def test_sentinel_profile_runs_what_the_sentinel_overlay_names() -> None:
    found = services()
    sentinel = yaml.safe_load(SENTINEL_OVERLAY.read_text(encoding="utf-8"))["redis"]["sentinel"]
    conf = SENTINEL_CONF.read_text(encoding="utf-8")
    port = re.search(r"^port (\d+)$", conf, re.MULTILINE)
    monitor = re.search(r"^sentinel monitor (\S+) (\S+) (\d+) (\d+)$", conf, re.MULTILINE)
    assert port is not None
    assert monitor is not None
    name, host, redis_port, quorum = monitor.groups()
    assert sentinel["master"] == name
    assert sorted(sentinel["addresses"]) == sorted(f"{s}:{port[1]}" for s in found if s.startswith("sentinel-"))
    assert (host, redis_port) == ("redis", "6379")  # the always-on service is the first primary
    assert int(quorum) <= len(sentinel["addresses"]) // 2 + 1
    replica = found["redis-replica"]["command"]
    assert replica[replica.index("--replicaof") + 1:][:2] == ["redis", "6379"]
    for name in SENTINEL_PROFILE - {"redis-replica"}:
        assert bind_mounts(found[name]) == {"/etc/redis/sentinel.conf": "./deploy/redis/sentinel.conf"}


# --- nginx: what proxy-config writes, included; nginx -t ---------------------------------------------------------


def test_nginx_conf_is_the_server_around_the_generated_snippet(demo_material: Any, tmp_path: Path) -> None:
    out = write_proxy_files(Path(demo_material.config), tmp_path / "proxy", "--proxy-dir", PROXY_DIR_IN_CONTAINER,
                            "--upstream", UPSTREAM)
    snippet = (out / "broker-client-auth.conf").read_text(encoding="utf-8")
    assert f"ssl_client_certificate {PROXY_DIR_IN_CONTAINER}/broker-client-cas.pem;" in snippet
    assert f"proxy_pass {UPSTREAM};" in snippet

    conf = NGINX_CONF.read_text(encoding="utf-8")
    server = conf[conf.index("\nserver {"):]
    assert f"include {PROXY_DIR_IN_CONTAINER}/broker-client-auth.conf;" in server
    assert re.search(rf"^upstream {UPSTREAM.removeprefix('http://')} {{$", conf, re.MULTILINE)
    # the certificate handling is the generated snippet's alone, never repeated (or contradicted) here
    assert not set(directives(conf)) & set(SNIPPET_OWNS), set(directives(conf)) & set(SNIPPET_OWNS)
    # the server block is the one `proxy-config nginx` gives as its example, at the container's paths
    example = (out / "broker-server.example.conf").read_text(encoding="utf-8")
    assert {d for d in directives(example) if d != "http2"} <= set(directives(server))
    assert "ssl_protocols       TLSv1.2 TLSv1.3;" in example
    assert "ssl_protocols       TLSv1.2 TLSv1.3;" in server
    # the replicas listen where the image binds
    assert '"--bind", "0.0.0.0:8080"' in dict(dockerfile())["CMD"]
    assert re.search(r"^\s*server broker:8080\b", conf, re.MULTILINE)


def test_the_documented_proxy_config_command_is_the_one_tested() -> None:
    for path in (DEPLOYMENT_DOC, COMPOSE_FILE, NGINX_CONF):
        assert PROXY_CONFIG_COMMAND in path.read_text(encoding="utf-8"), path


def test_nginx_conf_passes_nginx_t(demo_material: Any, tmp_path: Path) -> None:
    out = write_proxy_files(Path(demo_material.config), tmp_path / "proxy", "--upstream", UPSTREAM)
    tls = Path(demo_material.tls)
    conf = nginx_conf_on_loopback(mounted={"/etc/nginx/tls": tls, PROXY_DIR_IN_CONTAINER: out}, port=8443,
                                  upstreams=["127.0.0.1:8080", "127.0.0.1:8081"])
    nginx = Nginx(tmp_path / "nginx", certificate=tls / "server.pem", key=tls / "server.key", http_body=conf)
    checked = nginx.check()
    assert checked.returncode == 0, checked.stderr
    assert "test is successful" in checked.stderr


# --- the image -----------------------------------------------------------------------------------------------


def test_dockerfile_builds_in_one_stage_and_runs_unprivileged_in_another() -> None:
    steps = dockerfile()
    stages = [args for instruction, args in steps if instruction == "FROM"]
    assert stages == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE}"]
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in (REPO / "Dockerfile").read_text(encoding="utf-8")
    final = steps[[i for i, (instruction, _) in enumerate(steps) if instruction == "FROM"][-1]:]
    runs = " ".join(args for instruction, args in final if instruction == "RUN")
    assert "apt-get" not in runs  # no compiler, no -dev package, no system library at all
    build = " ".join(args for instruction, args in steps if instruction == "RUN")
    assert "--only-binary=:all:" in build
    assert "--constraint deploy/constraints.txt" in build
    user = [args for instruction, args in final if instruction == "USER"]
    assert user == ["broker:broker"]
    health = dict(final)["HEALTHCHECK"]
    assert "http://127.0.0.1:8080/healthz" in health


def image_directories() -> dict[str, int]:
    """The directories the runtime stage makes with ``install -d ... -m MODE``: path → mode."""
    steps = dockerfile()
    final = steps[[i for i, (instruction, _) in enumerate(steps) if instruction == "FROM"][-1]:]
    made: dict[str, int] = {}
    for command in " ".join(args for instruction, args in final if instruction == "RUN").split("&&"):
        words = command.split()
        if words[:2] != ["install", "-d"]:
            continue
        mode = int(words[words.index("-m") + 1], 8) if "-m" in words else 0o755
        made.update({word: mode for word in words[2:] if word.startswith("/")})
    return made


def test_the_replicas_reach_their_mounts_as_whatever_user_they_run_as() -> None:
    """docs/deployment.md runs the replicas as BROKER_UID (the owner of the demo's keys, `id -u`), not as the
    image's user 10001: every directory the image makes above a path compose mounts into the broker must let any
    user pass (o+x), or the audit trail mounted at /var/lib/broker/audit cannot be opened and logins fail closed."""
    made = image_directories()
    assert "/var/lib/broker/audit" in made
    for target in bind_mounts(services()["broker"]):
        for parent in Path(target).parents:
            if str(parent) in made:
                assert made[str(parent)] & 0o001, (target, str(parent), oct(made[str(parent)]))


def test_build_context_holds_what_the_dockerfile_copies_and_nothing_else() -> None:
    ignore = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert ignore[[line.startswith("#") for line in ignore].index(False)] == "*"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copied = set()
    for instruction, args in dockerfile():
        if instruction == "COPY" and not args.startswith("--from"):
            copied.update(p.rstrip("/") for p in args.split()[:-1])
    assert copied == allowed
    for path in copied:
        assert (REPO / path).exists(), path


def test_constraints_pin_every_runtime_dependency() -> None:
    """The image installs with deploy/constraints.txt: every dependency of the broker (and theirs) is pinned
    there, and every pin satisfies pyproject.toml."""
    from importlib.metadata import distribution

    pins: dict[str, str] = {}
    for raw in (REPO / "deploy" / "constraints.txt").read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version
    declared = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    closure, todo = set(), [Requirement(r) for r in declared]
    for requirement in todo:
        assert canonicalize_name(requirement.name) in pins, f"{requirement.name} is not pinned"
    while todo:
        requirement = todo.pop()
        key = canonicalize_name(requirement.name)
        if key in closure or (requirement.marker and not requirement.marker.evaluate({"extra": ""})):
            continue
        closure.add(key)
        assert key in pins, f"{requirement.name} (needed by the broker) is not pinned"
        assert requirement.specifier.contains(pins[key], prereleases=True), (str(requirement), pins[key])
        todo.extend(Requirement(r) for r in distribution(requirement.name).requires or [])
    assert set(pins) == closure, f"pinned but not needed: {sorted(set(pins) - closure)}"


# --- the documentation -------------------------------------------------------------------------------------------


def test_readme_links_the_deployment_guide() -> None:
    assert "(docs/deployment.md)" in (REPO / "README.md").read_text(encoding="utf-8")
