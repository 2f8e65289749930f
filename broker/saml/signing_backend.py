"""The IdP's signer, as ``idp.signing.backend`` chooses it."""

from __future__ import annotations

from broker.config.schema import SigningConfig
from broker.saml.xmldsig import Libxmlsec1Signer, XmlSigner
from broker.saml.xmlsec1_signer import Xmlsec1Signer


def signer_for(signing: SigningConfig) -> XmlSigner:
    """``cryptography`` (the default): :class:`XmlSigner`; ``libxmlsec1``: :class:`Libxmlsec1Signer`;
    ``xmlsec1``: :class:`Xmlsec1Signer`. All three write the same signatures."""
    certificate, key = signing.certificate.certificate, signing.key.key
    if signing.backend == "xmlsec1":
        return Xmlsec1Signer(signing.key.path, certificate, key)
    if signing.backend == "libxmlsec1":
        return Libxmlsec1Signer(signing.key.pem, certificate, key)
    return XmlSigner(certificate, key)
