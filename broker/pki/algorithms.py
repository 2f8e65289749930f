"""Algorithm and key-strength rules for certificates (no SHA-1, no short RSA)."""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa

MIN_RSA_BITS = 2048
ALLOWED_CURVES = frozenset({"secp256r1", "secp384r1", "secp521r1"})
_STRONG_HASHES = (hashes.SHA256, hashes.SHA384, hashes.SHA512)


def weak_signature_reason(cert: x509.Certificate | x509.CertificateRevocationList) -> str | None:
    """Why the certificate's (or CRL's) signature algorithm is unacceptable, or None.

    SHA-1 and MD5 are broken for signatures (collisions); SHA-224 is below
    the webpki floor that the path verifier enforces anyway. For RSASSA-PSS
    the hash of its parameters counts (RFC 4055 §3.1: SHA-1 by default).
    """
    try:
        algorithm = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:
        return f"unsupported signature algorithm {cert.signature_algorithm_oid.dotted_string}"
    if algorithm is None:  # Ed25519/Ed448: not used in the Swedish hierarchies, not accepted by webpki
        return f"signature algorithm {cert.signature_algorithm_oid.dotted_string} is not accepted"
    if not isinstance(algorithm, _STRONG_HASHES):
        return f"signed with {algorithm.name.upper()}, which is not accepted (SHA-256 or stronger is required)"
    return None


def weak_key_reason(cert: x509.Certificate) -> str | None:
    """Why the certificate's own public key is too weak, or None."""
    try:
        key = cert.public_key()
    except (UnsupportedAlgorithm, ValueError):
        return f"unsupported public key algorithm {cert.public_key_algorithm_oid.dotted_string}"
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            return f"RSA key of {key.key_size} bits (at least {MIN_RSA_BITS} are required)"
        return None
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in ALLOWED_CURVES:
            return f"elliptic curve {key.curve.name} is not accepted (P-256, P-384, P-521)"
        return None
    return f"{type(key).__name__.removeprefix('_')} keys are not accepted (RSA or ECDSA only)"
