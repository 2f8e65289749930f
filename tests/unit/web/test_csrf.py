"""Form tokens (broker.web.csrf): bound to the browser's secret and the form's purpose, keyed by a key derived
from the configured secret, so that every instance checks every other's tokens."""

from __future__ import annotations

import pytest

from broker.errors import RequestRejected
from broker.web.csrf import DISCOVERY, FormTokens

SECRET = b"0123456789abcdef0123456789abcdef"   # a configured secret (idp.nameid_key)
BROWSER = FormTokens.new_secret()


def refused(tokens: FormTokens, cookie: str | None, presented: str | None, purpose: str = DISCOVERY) -> str:
    with pytest.raises(RequestRejected) as caught:
        tokens.verify(cookie, presented, purpose)
    assert caught.value.reason == "csrf_token_invalid"
    assert caught.value.row.http_status == 403
    return caught.value.detail


def test_a_token_verifies_on_any_instance_with_the_same_configured_secret() -> None:
    token = FormTokens.derived_from(SECRET).token(BROWSER, DISCOVERY)
    FormTokens.derived_from(SECRET).verify(BROWSER, token, DISCOVERY)


def test_the_key_is_derived_not_the_configured_secret_itself() -> None:
    assert FormTokens.derived_from(SECRET).token(BROWSER, DISCOVERY) != FormTokens(SECRET).token(BROWSER, DISCOVERY)


@pytest.mark.parametrize(("cookie", "presented", "purpose", "detail"), [
    pytest.param(None, "x", DISCOVERY, "no usable", id="no-cookie"),
    pytest.param("short", "x", DISCOVERY, "no usable", id="cookie-not-a-secret"),
    pytest.param(BROWSER, None, DISCOVERY, "carried no", id="no-token"),
    pytest.param(BROWSER, "", DISCOVERY, "carried no", id="empty-token"),
    pytest.param(BROWSER, "é" * 43, DISCOVERY, "does not belong", id="non-ascii-token"),
    pytest.param(FormTokens.new_secret(), "TOKEN", DISCOVERY, "does not belong", id="another-browsers-secret"),
    pytest.param(BROWSER, "TOKEN", "another-form", "does not belong", id="another-purpose"),
])
def test_what_is_refused(cookie: str | None, presented: str | None, purpose: str, detail: str) -> None:
    tokens = FormTokens.derived_from(SECRET)
    if presented == "TOKEN":
        presented = tokens.token(BROWSER, DISCOVERY)
    assert detail in refused(tokens, cookie, presented, purpose)


def test_another_configured_secret_makes_other_tokens() -> None:
    theirs = FormTokens.derived_from(b"f" * 32).token(BROWSER, DISCOVERY)
    refused(FormTokens.derived_from(SECRET), BROWSER, theirs)


def test_a_short_key_is_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        FormTokens(b"short")


def test_secrets_are_random_and_have_the_shape_checked() -> None:
    assert FormTokens.new_secret() != FormTokens.new_secret()
    assert FormTokens.usable_secret(BROWSER) == BROWSER
    assert FormTokens.usable_secret(BROWSER + ";") is None
