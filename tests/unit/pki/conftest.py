"""Fixtures of the revocation tests: a user certificate of the module's ``ca`` (each module says which CA), a
fixed clock, a real loopback OCSP responder for that CA, and the revocation engine on the clock."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cryptography import x509

from broker.clock import FixedClock
from broker.demo.certificates import CertificateAuthority
from broker.pki.revocation.engine import RevocationChecker
from tests.factories.ocsp_responder import OcspResponder
from tests.factories.revocation import NOW, checker, leaf


@pytest.fixture
def cert(ca: CertificateAuthority) -> x509.Certificate:
    return leaf(ca).certificate


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def responder(ca: CertificateAuthority) -> Iterator[OcspResponder]:
    with OcspResponder(ca, now=NOW) as r:
        yield r
    assert r.errors == []


@pytest.fixture
def engine(clock: FixedClock) -> Iterator[RevocationChecker]:
    c = checker(clock)
    yield c
    c.close()
