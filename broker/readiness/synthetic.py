"""A synthetic login through a live endpoint: the sample certificate in a real TLS handshake, as a user's
browser would present it, and the running broker's verdict on it (its /diagnose page, as JSON).

This exercises the whole way in: DNS, the TLS server's CA list, the proxy's certificate header, the
broker's trust configuration and revocation sources, on the deployed system.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path

from broker.readiness.model import Check


def synthetic_login(endpoint: str, municipality_id: str, certificate: Path, key: Path, *, timeout: float,
                    ca_file: Path | None) -> Check:
    url = endpoint.rstrip("/") + "/diagnose?format=json"
    context = ssl.create_default_context()
    if ca_file is not None:  # in addition to the system's roots
        context.load_verify_locations(cafile=str(ca_file))
    context.load_cert_chain(str(certificate), str(key))
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))
    try:
        with opener.open(urllib.request.Request(url, headers={"Accept": "application/json"}),  # noqa: S310
                         timeout=timeout) as answer:
            verdict = json.loads(answer.read().decode())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return Check("login.synthetic", "fail", "synthetic login failed", f"{url}: {exc}",
                     "Check the endpoint and the proxy in front of the broker.", endpoint)
    if not verdict.get("certificate"):
        return Check("login.synthetic", "fail", "the certificate did not reach the broker",
                     f"{url}: the broker saw no client certificate (reference {verdict.get('correlation_id')})",
                     "The TLS server did not forward it: check the proxy's certificate header and "
                     "client_certificate.proxy.trusted_networks.", endpoint)
    if not verdict.get("accepted"):
        return Check("login.synthetic", "fail", f"the broker refused the certificate: {verdict.get('reason')}",
                     f"{url}: reference {verdict.get('correlation_id')}", "See the sample certificate check.",
                     endpoint)
    if verdict.get("municipality") != municipality_id:
        return Check("login.synthetic", "fail", "mapped to another municipality",
                     f"{url}: {verdict.get('municipality')}", "Check the trust anchors of both municipalities.",
                     endpoint)
    return Check("login.synthetic", "pass", "synthetic login accepted",
                 f"{url}: {municipality_id}, {verdict.get('loa')} (reference {verdict.get('correlation_id')})",
                 None, endpoint)
