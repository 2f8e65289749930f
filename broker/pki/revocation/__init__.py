"""Revocation checking: OCSP (RFC 6960) and CRLs (RFC 5280 §5, §6.3), cached and shared through Redis."""
