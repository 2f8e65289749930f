"""Sending SAML messages through the browser: HTTP-Redirect with a query-string signature
(SAML Bindings §3.4.4.1) or HTTP-POST with an enveloped XML signature (§3.5)."""

from __future__ import annotations

import base64
import zlib
from dataclasses import dataclass
from urllib.parse import quote_plus

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from lxml import etree

from broker.config.values import SigningKey
from broker.saml.bindings import HTTP_POST, HTTP_REDIRECT
from broker.saml.xmldsig import ECDSA_SHA256, RSA_SHA256, XmlSigner

SAML_ASSERTION = "urn:oasis:names:tc:SAML:2.0:assertion"


@dataclass(frozen=True)
class OutboundMessage:
    """A message to deliver through the browser: POST form fields, or a Redirect URL."""

    binding: str
    url: str
    fields: dict[str, str]


class MessageSender:
    """Encodes and signs protocol messages with one key (the broker's IdP or SP signing key)."""

    def __init__(self, signer: XmlSigner, key: SigningKey) -> None:
        self._signer = signer
        self._key = key

    def encode(self, root: etree._Element, binding: str, url: str, parameter: str,
               relay_state: str | None) -> OutboundMessage:
        """``parameter`` is SAMLRequest or SAMLResponse."""
        if binding == HTTP_POST:
            self._signer.sign(root, after=root.find(f"{{{SAML_ASSERTION}}}Issuer"))
            xml = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
            fields = {parameter: base64.b64encode(xml).decode()}
            if relay_state is not None:
                fields["RelayState"] = relay_state
            return OutboundMessage(HTTP_POST, url, fields)
        if binding != HTTP_REDIRECT:
            raise ValueError(f"unsupported binding {binding}")
        return OutboundMessage(HTTP_REDIRECT, self.redirect_url(url, parameter, etree.tostring(root), relay_state),
                               {})

    def redirect_url(self, url: str, parameter: str, xml: bytes, relay_state: str | None) -> str:
        """DEFLATE, base64, URL-encode, then sign the query string exactly as sent (Bindings §3.4.4.1).

        Values are form-encoded (``quote_plus``: a space as ``+``), as Python's ``urlencode`` does: receivers
        should verify the octets as they arrived, but pysaml2 and, by default, python3-saml encode the decoded
        values again with ``urlencode`` and verify that, so with ``%20`` a RelayState holding a space would not
        verify there. The two encodings differ only in the space."""
        deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
        encoded = base64.b64encode(deflater.compress(xml) + deflater.flush()).decode()
        sig_alg = RSA_SHA256 if isinstance(self._key, rsa.RSAPrivateKey) else ECDSA_SHA256
        query = f"{parameter}=" + quote_plus(encoded, safe="")
        if relay_state is not None:
            query += "&RelayState=" + quote_plus(relay_state, safe="")
        query += "&SigAlg=" + quote_plus(sig_alg, safe="")
        if isinstance(self._key, rsa.RSAPrivateKey):
            signature = self._key.sign(query.encode(), padding.PKCS1v15(), hashes.SHA256())
        else:
            # XML-DSig ECDSA signature values are r || s (RFC 4051 §3.3), not DER
            r, s = decode_dss_signature(self._key.sign(query.encode(), ec.ECDSA(hashes.SHA256())))
            size = (self._key.curve.key_size + 7) // 8
            signature = r.to_bytes(size, "big") + s.to_bytes(size, "big")
        query += "&Signature=" + quote_plus(base64.b64encode(signature).decode(), safe="")
        return url + ("&" if "?" in url else "?") + query
