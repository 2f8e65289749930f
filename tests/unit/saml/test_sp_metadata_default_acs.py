"""Which AssertionConsumerService answers a request that names none (SAML Metadata §2.2.3, Profiles §4.1.4.1):
the first endpoint with isDefault="true", else the first without isDefault="false", else the first."""

from __future__ import annotations

import pytest

from broker.saml.bindings import HTTP_POST
from broker.saml.metadata import parse_sp_metadata

ENTITY_ID = "https://sp.example/metadata"
ARTIFACT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Artifact"


def metadata(*endpoints: tuple[str, int, str | None]) -> bytes:
    """SP metadata with one HTTP-POST ACS per (path, index, isDefault) and an HTTP-Artifact one first."""
    acs = [f'<md:AssertionConsumerService Binding="{ARTIFACT}" Location="https://sp.example/artifact" index="9" '
           'isDefault="true"/>']
    for path, index, default in endpoints:
        marked = f' isDefault="{default}"' if default is not None else ""
        acs.append(f'<md:AssertionConsumerService Binding="{HTTP_POST}" Location="https://sp.example/{path}" '
                   f'index="{index}"{marked}/>')
    return (f'<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="{ENTITY_ID}">'
            '<md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
            + "".join(acs) + "</md:SPSSODescriptor></md:EntityDescriptor>").encode()


@pytest.mark.parametrize(("endpoints", "expected"), [
    pytest.param([("a", 1, None), ("b", 2, None)], "a", id="none-marked-first"),
    pytest.param([("a", 1, None), ("b", 2, "true")], "b", id="marked-true-wins-over-order"),
    pytest.param([("a", 1, "false"), ("b", 2, None)], "b", id="first-not-marked-false"),
    pytest.param([("a", 1, "false"), ("b", 2, "false")], "a", id="all-marked-false-first"),
    pytest.param([("a", 1, "0"), ("b", 2, "1")], "b", id="xs-boolean-digits"),
    pytest.param([("a", 1, "true"), ("b", 2, "true")], "a", id="two-marked-true-first"),
])
def test_default_acs(endpoints: list[tuple[str, int, str | None]], expected: str) -> None:
    default = parse_sp_metadata(metadata(*endpoints), ENTITY_ID).default_acs()
    assert default is not None
    assert default.location == f"https://sp.example/{expected}"
