"""A synthetic login through a live endpoint: the sample certificate in a real TLS handshake, as a user's
browser would present it, and the running broker's verdict on it (its /diagnose page, as JSON).

This exercises the whole way in: DNS, the TLS server's CA list, the proxy's certificate header, the
broker's trust configuration and revocation sources, on the deployed system.
"""

from __future__ import annotations

import http.client
import json
import ssl
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from broker.pki.deadline import SocketDeadline, connect_within
from broker.readiness.endpoints import merged
from broker.readiness.model import Check


class _AddressConnection(http.client.HTTPSConnection):
    """HTTPS to the URL's host at one given address: the host name still names the server (SNI, the certificate's
    name, the Host header), the way a browser that DNS sent to that address speaks to it."""

    def __init__(self, host: str, port: int, address: str | None, context: ssl.SSLContext, timeout: float,
                 deadline: SocketDeadline) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._address = address
        self._tls = context
        self._deadline = deadline

    def connect(self) -> None:
        # the name resolved within the time left too (broker.pki.deadline.connect_within)
        raw = connect_within(self._address or self.host, self.port, self._deadline, timeout=self.timeout)
        self._deadline.attach_connection(raw)  # before ssl takes the socket over
        self.sock = self._tls.wrap_socket(raw, server_hostname=self.host)


def synthetic_login(endpoint: str, municipality_id: str, certificate: Path, key: Path, *, timeout: float,
                    ca_file: Path | None, addresses: Sequence[str] = ()) -> Check:
    """The sample presented at ``endpoint``'s /diagnose; with ``addresses`` (its host resolves to several: the
    nodes of a load balancer), at each of them, so a node whose proxy does not forward the certificate is found
    (the worst decides; each address named, :func:`broker.readiness.endpoints.merged`)."""
    context = ssl.create_default_context()
    if ca_file is not None:  # in addition to the system's roots
        context.load_verify_locations(cafile=str(ca_file))
    context.load_cert_chain(str(certificate), str(key))
    if len(addresses) <= 1:
        return _login_at(endpoint, None, municipality_id, context, timeout)
    return merged([([address], [_login_at(endpoint, address, municipality_id, context, timeout)])
                   for address in addresses])[0]


def _login_at(endpoint: str, address: str | None, municipality_id: str, context: ssl.SSLContext,
              timeout: float) -> Check:
    # below the SSO endpoint's path, where the SPs send users: a proxy route the operator added for /saml/ (one
    # that sets headers of its own loses the snippet's certificate header in nginx) is exercised as logins meet it
    url = endpoint.rstrip("/") + "/saml/idp/diagnose?format=json"
    # ``timeout`` bounds each socket operation; the deadline the whole exchange: a node answering a byte at a
    # time (each in time for a read) is cut off at ``timeout`` too, not when it is done
    deadline = SocketDeadline(timeout)
    problem: Exception | None = None
    try:
        parts = urlsplit(url)
        with deadline:
            connection = _AddressConnection(parts.hostname or "", parts.port or 443, address, context, timeout,
                                            deadline)
            try:
                connection.request("GET", f"{parts.path}?{parts.query}", headers={"Accept": "application/json"})
                answer = connection.getresponse()
                body = answer.read(1 << 20)
            finally:
                connection.close()
        if answer.status != 200:
            raise ValueError(f"HTTP {answer.status} {answer.reason}")
        verdict = json.loads(body.decode())
        if not isinstance(verdict, dict):
            raise ValueError("the answer is not a JSON object")
    except (OSError, ValueError, http.client.HTTPException) as exc:
        problem = exc
    if deadline.expired or (problem is not None and deadline.remaining() <= 0):
        # whatever came back was cut short by the deadline (or the name not resolved before it): never judged
        problem = TimeoutError(f"no complete answer within {timeout:g} s")
    if problem is not None:
        return Check("login.synthetic", "fail", "synthetic login failed", f"{url}: {problem}",
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
