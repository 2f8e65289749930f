"""The typed attributes of SP metadata are read as XML Schema types (Part 2 §3.2.2 boolean, §3.3.23
unsignedShort): a value outside the type is refused with the attribute's name, never read as a default. Read
loosely, AuthnRequestsSigned="yes" meant "requests need not be signed", and index="1_0" meant 10."""

from __future__ import annotations

import pytest

from broker.saml.bindings import HTTP_POST
from broker.saml.metadata import parse_sp_metadata

ENTITY_ID = "https://sp.example/metadata"


def metadata(descriptor: str = "", index: str = "0", is_default: str | None = None) -> bytes:
    marked = f' isDefault="{is_default}"' if is_default is not None else ""
    return (f'<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="{ENTITY_ID}">'
            f'<md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"{descriptor}>'
            f'<md:AssertionConsumerService Binding="{HTTP_POST}" Location="https://sp.example/acs" '
            f'index="{index}"{marked}/></md:SPSSODescriptor></md:EntityDescriptor>').encode()


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param(None, False, id="absent-is-false"),
    pytest.param("true", True, id="true"),
    pytest.param("1", True, id="one"),
    pytest.param("false", False, id="false"),
    pytest.param("0", False, id="zero"),
    pytest.param(" true\n", True, id="xml-white-space-around"),
])
@pytest.mark.parametrize("attribute", ["AuthnRequestsSigned", "WantAssertionsSigned"])
def test_a_boolean_is_read_as_xs_boolean(attribute: str, text: str | None, expected: bool) -> None:
    parsed = parse_sp_metadata(metadata("" if text is None else f' {attribute}="{text}"'), ENTITY_ID)
    field = "authn_requests_signed" if attribute == "AuthnRequestsSigned" else "want_assertions_signed"
    assert getattr(parsed, field) is expected


@pytest.mark.parametrize("text", [
    pytest.param("yes", id="yes"),
    pytest.param("", id="empty"),
    pytest.param("tru", id="typo"),
    pytest.param("TRUE", id="upper-case-is-no-xs-boolean"),
    pytest.param("\u00a0true", id="no-break-space-is-no-xml-white-space"),
])
@pytest.mark.parametrize("attribute", ["AuthnRequestsSigned", "WantAssertionsSigned"])
def test_a_value_outside_xs_boolean_is_refused(attribute: str, text: str) -> None:
    with pytest.raises(ValueError, match=rf"{attribute} .* is not an xs:boolean"):
        parse_sp_metadata(metadata(f' {attribute}="{text}"'), ENTITY_ID)


def test_an_is_default_outside_xs_boolean_is_refused() -> None:
    with pytest.raises(ValueError, match="isDefault 'yes' is not an xs:boolean"):
        parse_sp_metadata(metadata(is_default="yes"), ENTITY_ID)


@pytest.mark.parametrize("text", [
    pytest.param("1_0", id="underscore"),
    pytest.param("-1", id="negative"),
    pytest.param("\u0661", id="arabic-indic-digit"),
    pytest.param("65536", id="too-large"),
    pytest.param("", id="empty"),
])
def test_an_index_outside_xs_unsigned_short_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"has no valid index: index .* is not an xs:unsignedShort"):
        parse_sp_metadata(metadata(index=text), ENTITY_ID)


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param("0", 0, id="zero"), pytest.param("65535", 65535, id="largest"),
    pytest.param(" 7 ", 7, id="xml-white-space-around"), pytest.param("007", 7, id="leading-zeros"),
    pytest.param("+1", 1, id="plus-sign"),
])
def test_an_index_is_read_as_xs_unsigned_short(text: str, expected: int) -> None:
    assert parse_sp_metadata(metadata(index=text), ENTITY_ID).assertion_consumer_services[0].index == expected
