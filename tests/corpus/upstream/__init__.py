"""Upstream SAML Responses: a negative corpus with expected reason codes (cases.json; generate.py)."""
