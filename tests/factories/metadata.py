"""Signed SAML metadata of a municipal IdP, and an HTTPS loopback server to publish it.

Metadata is what pysaml2 writes for the demo IdP (``broker.demo.idp.idp_metadata``),
given an ``ID`` and optionally a ``validUntil`` and more signing keys (rollover), then
signed with python-xmlsec the way metadata signers do it: an enveloped signature as the
first child of the signed element, RSA-SHA256, exclusive canonicalisation, one
Reference to the element's ID. Every part of that can be varied, so tests can build
the signatures the broker must refuse (SHA-1, a Reference to another element, a
signature on a child element ...).

The broker fetches metadata only from https:// URLs (``UpstreamMetadataConfig.url``
is an ``HttpsUrl``), so ``HttpsFileServer`` is a ``FileServer`` speaking TLS with a
certificate for 127.0.0.1 from a private test CA (``TlsMaterial``). The broker's
``HttpFetcher`` trusts the platform's default CA store; tests point OpenSSL's
``SSL_CERT_FILE`` at the test CA (``monkeypatch.setenv``) to make that store the test CA.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from lxml import etree

from broker.clock import isoformat_z
from broker.demo.idp import DemoIdpSettings, idp_metadata
from tests.factories.http_files import HANDLER_SOCKET_TIMEOUT, FileServer, closed_port_url

MD = "urn:oasis:names:tc:SAML:2.0:metadata"
DS = "http://www.w3.org/2000/09/xmldsig#"
NS = {"md": MD, "ds": DS}
DAY = dt.timedelta(days=1)
SERVER_CERTIFICATE_DAYS = 90   # the HTTPS test server's certificate: beyond readiness' 30-day expiry_warning

RSA_SHA256 = (xmlsec.constants.TransformRsaSha256, xmlsec.constants.TransformSha256)
RSA_SHA1 = (xmlsec.constants.TransformRsaSha1, xmlsec.constants.TransformSha1)
RSA_SHA256_DIGEST_SHA1 = (xmlsec.constants.TransformRsaSha256, xmlsec.constants.TransformSha1)


# --- keys and certificates -------------------------------------------------------------------


@dataclass(frozen=True)
class SigningKey:
    """An RSA key and its self-signed certificate (a metadata signer's, or an IdP's signing key)."""

    key: rsa.RSAPrivateKey
    certificate: x509.Certificate

    @classmethod
    def generate(cls, name: str, now: dt.datetime) -> SigningKey:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        cert = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=365))
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())

    @property
    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def write(self, directory: Path, stem: str) -> tuple[Path, Path]:
        """``<stem>.key`` and ``<stem>.crt`` in ``directory``; returns (key file, certificate file)."""
        directory.mkdir(parents=True, exist_ok=True)
        key_file, cert_file = directory / f"{stem}.key", directory / f"{stem}.crt"
        key_file.write_bytes(self.key_pem)
        cert_file.write_bytes(self.cert_pem)
        return key_file, cert_file


@dataclass(frozen=True)
class TlsMaterial:
    """A private TLS CA and a server certificate it issued for 127.0.0.1, written to files."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    @classmethod
    def generate(cls, directory: Path, now: dt.datetime) -> TlsMaterial:
        ca = SigningKey.generate("Test Metadata TLS CA", now)
        ca_cert = (
            x509.CertificateBuilder().subject_name(ca.certificate.subject).issuer_name(ca.certificate.subject)
            .public_key(ca.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca.key.public_key()), critical=False)
            .sign(ca.key, hashes.SHA256())
        )
        server_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        server_cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_cert.subject).public_key(server_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + SERVER_CERTIFICATE_DAYS * DAY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
            .sign(ca.key, hashes.SHA256())
        )
        directory.mkdir(parents=True, exist_ok=True)
        ca_file, cert_file, key_file = directory / "ca.pem", directory / "server.pem", directory / "server.key"
        ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
        cert_file.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(server_key.private_bytes(serialization.Encoding.PEM,
                                                      serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption()))
        return cls(ca_file, cert_file, key_file)


# --- the HTTPS server ----------------------------------------------------------------------


class HttpsFileServer(FileServer):
    """``FileServer`` over TLS (https://127.0.0.1:<port>/...). The TLS handshake runs in the handler
    thread; a client that refuses the certificate, or gives up while the answer is sent, is counted in
    ``tls_failures`` (not in ``errors``)."""

    def __init__(self, tls: TlsMaterial) -> None:
        self.tls_failures: list[BaseException] = []
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls.cert_file, tls.key_file)
        super().__init__()
        httpd = self._httpd
        plain_get_request = httpd.get_request
        plain_finish_request = httpd.finish_request

        def get_request() -> tuple[Any, Any]:
            sock, address = plain_get_request()
            return context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address

        def finish_request(request: Any, client_address: Any) -> None:
            request.settimeout(HANDLER_SOCKET_TIMEOUT)
            try:
                request.do_handshake()
            except (ssl.SSLError, OSError) as exc:
                self.tls_failures.append(exc)
                return
            try:
                plain_finish_request(request, client_address)
            except (ssl.SSLEOFError, ssl.SSLZeroReturnError) as exc:  # the client gave up (timeout, size limit)
                self.tls_failures.append(exc)

        # No client can connect before the constructor returns, so the serving thread sees these first.
        httpd.get_request = get_request  # type: ignore[method-assign]
        httpd.finish_request = finish_request  # type: ignore[method-assign]

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}/"

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{self._norm(path)}"


def closed_port_https_url(path: str = "/") -> str:
    """An https URL on a loopback port with nothing listening (connections are refused)."""
    return "https://" + closed_port_url(path).removeprefix("http://")


# --- metadata documents --------------------------------------------------------------------


def pysaml2_idp_metadata(base_url: str, signing: SigningKey, directory: Path) -> bytes:
    """The metadata pysaml2 writes for the demo IdP at ``base_url`` (entityID ``<base_url>/metadata``)
    whose signing key is ``signing``: one KeyDescriptor use="signing", SSO (Redirect, POST) and SLO."""
    key_file, cert_file = signing.write(directory, "idp-signing")
    return idp_metadata(DemoIdpSettings(base_url=base_url, key_file=key_file, cert_file=cert_file))


def _key_descriptor(cert: x509.Certificate) -> etree._Element:
    kd = etree.Element(f"{{{MD}}}KeyDescriptor", use="signing")
    info = etree.SubElement(kd, f"{{{DS}}}KeyInfo")
    data = etree.SubElement(info, f"{{{DS}}}X509Data")
    etree.SubElement(data, f"{{{DS}}}X509Certificate").text = base64.b64encode(
        cert.public_bytes(serialization.Encoding.DER)).decode()
    return kd


def prepare(xml: bytes, *, document_id: str = "_metadata-1", valid_until: dt.datetime | None = None,
            more_signing: Sequence[x509.Certificate] = ()) -> bytes:
    """``xml`` (an EntityDescriptor) with an ``ID``, a ``validUntil`` if given, and a KeyDescriptor
    use="signing" for each of ``more_signing`` after the existing ones (key rollover)."""
    root = etree.fromstring(xml)
    root.set("ID", document_id)
    if valid_until is not None:
        root.set("validUntil", isoformat_z(valid_until))
    idp = root.find("md:IDPSSODescriptor", NS)
    assert idp is not None
    last = idp.findall("md:KeyDescriptor", NS)[-1]
    for cert in reversed(more_signing):
        last.addnext(_key_descriptor(cert))
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def sign(xml: bytes, signer: SigningKey, *, algorithms: tuple[Any, Any] = RSA_SHA256, target: str | None = None,
         reference: str | None = None) -> bytes:
    """``xml`` with an enveloped signature by ``signer`` (exclusive c14n, the signer's certificate in KeyInfo).

    ``target``: an XPath (prefixes md, ds) of the element to sign, the root by default; it gets an ID if it
    has none. ``reference``: the Reference URI, ``#<target's ID>`` by default. ``algorithms``: the
    (signature method, digest method) transforms.
    """
    root = etree.fromstring(xml)
    element = root
    if target is not None:
        found = root.xpath(target, namespaces=NS)
        assert isinstance(found, list), target
        assert len(found) == 1, f"{target} matches {found!r}"
        element = found[0]
        if not element.get("ID"):
            element.set("ID", "_signed-part")
    method, digest = algorithms
    template = xmlsec.template.create(element, xmlsec.constants.TransformExclC14N, method, ns="ds")
    ref = xmlsec.template.add_reference(template, digest, uri=reference or "#" + element.get("ID"))
    xmlsec.template.add_transform(ref, xmlsec.constants.TransformEnveloped)
    xmlsec.template.add_transform(ref, xmlsec.constants.TransformExclC14N)
    xmlsec.template.add_x509_data(xmlsec.template.ensure_key_info(template))
    element.insert(0, template)  # the first child: SAML Metadata's schema puts ds:Signature first
    ctx = xmlsec.SignatureContext()
    key = xmlsec.Key.from_memory(signer.key_pem, xmlsec.constants.KeyDataFormatPem)
    key.load_cert_from_memory(signer.cert_pem, xmlsec.constants.KeyDataFormatCertPem)
    ctx.key = key
    for node in root.iter():
        if isinstance(node.tag, str) and node.get("ID"):
            ctx.register_id(node, "ID")
    ctx.sign(template)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")
