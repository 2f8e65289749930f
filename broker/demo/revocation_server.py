"""The demo's revocation server: an OCSP responder and the CRLs, over plain HTTP on the demo port + 1.

Kommun B's demo certificates name it in their Authority Information Access
(OCSP) and CRL distribution point extensions, so the demo shows the broker's
OCSP path (with CRL fallback) working against a real responder, asked by GET
or POST (RFC 6960 Appendix A.1). Not for production: it signs with the
issuing CA's own key, from the demo's files.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from cryptography.x509 import ocsp

from broker.demo.materials import DemoLayout

MAX_REQUEST = 16 * 1024


class _Handler(BaseHTTPRequestHandler):
    server: DemoRevocationServer

    def log_message(self, format: str, *args: object) -> None:  # quiet: the demo prints its own summary
        return

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        parts = self.path.strip("/").split("/")
        if len(parts) >= 3 and parts[0] == "ocsp":  # RFC 6960 Appendix A.1: /ocsp/<municipality>/<base64 request>
            encoded = unquote(self.path.strip("/").split("/", 2)[2])  # (a "/" of the base64 may come unencoded)
            try:
                der = base64.b64decode(encoded, validate=True)
            except ValueError:
                der = b""
            self._ocsp(parts[1], der)
            return
        if len(parts) == 3 and parts[0] == "crl" and parts[2].endswith(".crl"):
            path = self.server.layout.config / "certs" / parts[1] / parts[2]
            if path.parent.parent == self.server.layout.config / "certs" and path.is_file():
                crl = x509.load_pem_x509_crl(path.read_bytes())
                self._send(200, crl.public_bytes(serialization.Encoding.DER), "application/pkix-crl")
                return
        self._send(404, b"not found", "text/plain")

    def do_POST(self) -> None:
        parts = self.path.strip("/").split("/")
        length = int(self.headers.get("Content-Length") or 0)
        if len(parts) != 2 or parts[0] != "ocsp" or not 0 < length <= MAX_REQUEST:
            self._send(404, b"not found", "text/plain")
            return
        self._ocsp(parts[1], self.rfile.read(length))

    def _ocsp(self, municipality: str, request: bytes) -> None:
        try:
            response = self.server.answer(municipality, ocsp.load_der_ocsp_request(request))
        except (ValueError, FileNotFoundError):
            response = ocsp.OCSPResponseBuilder.build_unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
        self._send(200, response.public_bytes(serialization.Encoding.DER), "application/ocsp-response")


class DemoRevocationServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, layout: DemoLayout, host: str, port: int) -> None:
        super().__init__((host, port), _Handler)
        self.layout = layout

    def answer(self, municipality: str, request: ocsp.OCSPRequest) -> ocsp.OCSPResponse:
        """RFC 6960 §4.2: signed by the issuing CA itself, valid for an hour, nonce echoed."""
        pki = self.layout.root / "pki" / municipality
        if not pki.is_dir() or pki.parent != self.layout.root / "pki":
            raise FileNotFoundError(municipality)
        issuer = x509.load_pem_x509_certificate((pki / "issuing-ca.pem").read_bytes())
        key = load_pem_private_key((pki / "issuing-ca.key").read_bytes(), password=None)
        revoked_file = pki / "revoked.json"
        revoked = set(json.loads(revoked_file.read_text())) if revoked_file.exists() else set()
        now = dt.datetime.now(dt.UTC)
        if request.hash_algorithm.name == "sha1":  # the common CertID: refuse questions about another CA
            issuer_key_hash = x509.SubjectKeyIdentifier.from_public_key(issuer.public_key()).digest
            if request.issuer_key_hash != issuer_key_hash:
                return ocsp.OCSPResponseBuilder.build_unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED)
        status = ocsp.OCSPCertStatus.REVOKED if request.serial_number in revoked else ocsp.OCSPCertStatus.GOOD
        builder = ocsp.OCSPResponseBuilder().add_response_by_hash(
            issuer_name_hash=request.issuer_name_hash,
            issuer_key_hash=request.issuer_key_hash,
            serial_number=request.serial_number,
            algorithm=request.hash_algorithm,
            cert_status=status,
            this_update=now - dt.timedelta(minutes=1),
            next_update=now + dt.timedelta(hours=1),
            revocation_time=now - dt.timedelta(days=2) if status == ocsp.OCSPCertStatus.REVOKED else None,
            revocation_reason=x509.ReasonFlags.key_compromise if status == ocsp.OCSPCertStatus.REVOKED else None,
        ).responder_id(ocsp.OCSPResponderEncoding.HASH, issuer)
        try:
            nonce = request.extensions.get_extension_for_class(x509.OCSPNonce).value
            builder = builder.add_extension(nonce, critical=False)
        except x509.ExtensionNotFound:
            pass
        return builder.sign(key, hashes.SHA256())  # type: ignore[arg-type]

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="demo-revocation", daemon=True)
        thread.start()
        return thread

