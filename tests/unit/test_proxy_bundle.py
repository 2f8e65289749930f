"""`broker proxy-config bundle`: the client-CA bundle for a proxy configured by hand (docs/proxies.md, Envoy)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.factories.cli import broker_cli as broker
from tests.unit.config.editing import replace_once


@pytest.mark.parametrize(("proxy_format", "header"), [
    pytest.param("envoy_xfcc", "X-Forwarded-Client-Cert", id="envoy"),
    pytest.param("rfc9440", "Client-Cert", id="rfc9440"),
])
def test_the_bundle_is_written_for_a_proxy_no_snippet_is_written_for(
        config_dir: Path, tmp_path: Path, proxy_format: str, header: str) -> None:
    """docs/proxies.md has Envoy advertise the bundle; `proxy-config nginx` refuses a format nginx cannot write,
    so the bundle needs a command of its own, and it is the same bundle nginx would get."""
    nginx_out = tmp_path / "nginx"
    assert broker("proxy-config", "nginx", "--config", str(config_dir), "--out", str(nginx_out)).returncode == 0
    replace_once(config_dir / "broker.yaml", "format: nginx_escaped_pem", f"format: {proxy_format}")
    replace_once(config_dir / "broker.yaml", "header: X-SSL-Client-Cert", f"header: {header}")
    refused = broker("proxy-config", "nginx", "--config", str(config_dir), "--out", str(tmp_path / "refused"))
    assert refused.returncode == 1
    assert f"{proxy_format}, which nginx does not write" in refused.stderr

    written = broker("proxy-config", "bundle", "--config", str(config_dir), "--out", str(tmp_path / "bundle"))

    assert written.returncode == 0, written.stdout + written.stderr
    assert sorted(p.name for p in (tmp_path / "bundle").iterdir()) == ["broker-client-cas.pem"]
    assert (tmp_path / "bundle" / "broker-client-cas.pem").read_text() == \
        (nginx_out / "broker-client-cas.pem").read_text()
    assert "kommun-a: 2 CA certificate(s)" in written.stdout
