"""Federated authentication broker for Swedish regional healthcare.

Municipal staff log in to regional SAML service providers with their municipal
X.509 certificate (SITHS e-id, Efos) or through their municipality's SAML IdP.
"""

__version__ = "0.1.0"
