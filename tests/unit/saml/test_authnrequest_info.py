"""A vetted AuthnRequest as a pending login is stored in Redis, which instances of the previous release read too
during a rolling upgrade (and this release reads theirs)."""

from __future__ import annotations

import dataclasses

import pytest

from broker.saml.authnrequest import AuthnRequestInfo

PLAIN = AuthnRequestInfo("_r1", "https://sp.example/", "https://sp.example/acs", "redirect", "persistent", False,
                         False, ("http://id.elegnamnden.se/loa/1.0/loa3",), "minimum", "/page", True)
# the fields the previous release stored, and all its from_dict accepts
PREVIOUS_RELEASE_FIELDS = {f.name for f in dataclasses.fields(AuthnRequestInfo)} - {
    "idp_hints", "proxy_count", "requester_ids"} | {"idp_hint"}


@pytest.mark.parametrize("info", [
    pytest.param(PLAIN, id="no-scoping"),
    pytest.param(PLAIN.with_hint("kommun-c"), id="one-hint"),
    pytest.param(dataclasses.replace(PLAIN, idp_hints=("a", "b"), proxy_count=2, requester_ids=("https://r/",)),
                 id="scoping"),
])
def test_a_stored_login_reads_back_as_it_was(info: AuthnRequestInfo) -> None:
    assert AuthnRequestInfo.from_dict(info.to_dict()) == info


@pytest.mark.parametrize("info", [pytest.param(PLAIN, id="no-scoping"),
                                  pytest.param(PLAIN.with_hint("kommun-c"), id="one-hint")])
def test_without_scoping_the_stored_form_is_the_previous_releases(info: AuthnRequestInfo) -> None:
    stored = info.to_dict()
    assert set(stored) == PREVIOUS_RELEASE_FIELDS
    assert stored["idp_hint"] == (info.idp_hints[0] if info.idp_hints else None)


def test_a_login_the_previous_release_stored_is_read() -> None:
    stored = PLAIN.to_dict()
    stored["idp_hint"] = "kommun-c"
    assert AuthnRequestInfo.from_dict(stored) == PLAIN.with_hint("kommun-c")
