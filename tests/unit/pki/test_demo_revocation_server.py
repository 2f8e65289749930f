"""The demo's OCSP responder (broker/demo/revocation_server.py) answers by GET as well as by POST (RFC 6960
Appendix A.1), as a real responder does: the broker asks by GET for a request without nonce (RFC 5019 §5)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from cryptography import x509
from cryptography.x509 import ocsp

from broker.demo.materials import DemoLayout
from broker.demo.revocation_server import DemoRevocationServer
from broker.pki.revocation.http import FetchLimits, HttpFetcher
from broker.pki.revocation.ocsp import build_request
from broker.pki.revocation.transport import OcspTransport

LIMITS = FetchLimits(2, 3, 65536)


@pytest.fixture
def server(demo_material: Any) -> Iterator[tuple[DemoRevocationServer, threading.Thread]]:
    served = DemoRevocationServer(demo_material, "127.0.0.1", 0)
    thread = served.start()
    yield served, thread
    served.shutdown()
    served.server_close()
    thread.join()


def _certificate(root: Path, name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((root / name).read_bytes())


@pytest.mark.parametrize(("setting", "nonce", "method"), [
    pytest.param("auto", None, "GET", id="get"),
    pytest.param("auto", b"n" * 16, "POST", id="post-with-nonce"),
    pytest.param("get", b"n" * 16, "GET", id="get-with-nonce"),
])
@pytest.mark.parametrize(("user", "status"), [
    pytest.param("bo", ocsp.OCSPCertStatus.GOOD, id="good"),
    pytest.param("greta", ocsp.OCSPCertStatus.REVOKED, id="revoked"),
])
def test_the_demo_responder_answers_get_and_post(demo_material: DemoLayout,
                                                 server: tuple[DemoRevocationServer, threading.Thread],
                                                 setting: Literal["auto", "get"], nonce: bytes | None, method: str,
                                                 user: str, status: ocsp.OCSPCertStatus) -> None:
    served, _ = server
    cert = _certificate(demo_material.users, f"{user}.pem")
    issuer = _certificate(demo_material.root / "pki" / "kommun-b", "issuing-ca.pem")
    url = f"http://127.0.0.1:{served.server_address[1]}/ocsp/kommun-b"
    request = build_request(cert, issuer, nonce=nonce, cert_id_hash="sha1")

    exchange = OcspTransport(HttpFetcher()).ask(url, request, setting=setting, nonced=nonce is not None,
                                                limits=LIMITS)

    assert exchange.method == method
    answer = ocsp.load_der_ocsp_response(exchange.der)
    assert answer.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    assert (answer.serial_number, answer.certificate_status) == (cert.serial_number, status)


def test_a_get_that_is_no_request_is_malformed(demo_material: DemoLayout,
                                               server: tuple[DemoRevocationServer, threading.Thread]) -> None:
    served, _ = server
    der = HttpFetcher().get(f"http://127.0.0.1:{served.server_address[1]}/ocsp/kommun-b/bm90LWRlcg%3D%3D", LIMITS,
                            "application/ocsp-response")
    assert ocsp.load_der_ocsp_response(der).response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST
