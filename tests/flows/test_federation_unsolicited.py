"""IdP-initiated login (SAML Profiles §4.1.5): an unsolicited Response from a municipal IdP is refused unless
the municipality's file allows it, and then only for the SP its RelayState names."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from flask import Flask
from saml2 import saml

from broker.app import create_app
from broker.config.loader import load_settings
from broker.demo.idp import DemoIdp, IdpUser
from broker.demo.sp import DemoSp
from broker.session.store import RedisStore
from tests.factories.authnrequests import open_browser
from tests.factories.idp import ACS_URL, KARIN, make_idp
from tests.factories.saml import BASE_URL, Browser, make_sp, saml_response_form
from tests.flows.conftest import audit_lines
from tests.flows.test_federation_hardening import (
    _OWN_C,
    _OWN_D,
    KOMMUN_D_ORG,
    _identity_rules,
    _kommun_d_sharing_kommun_c_idp,
)

SP_ENTITY_ID = BASE_URL + "/demo-sp/metadata"
BROKER_SP = BASE_URL + "/saml/sp/metadata"


def unsolicited(idp: DemoIdp, relay_state: str | None, user: IdpUser = KARIN) -> dict[str, str]:
    """A signed Response for ``user`` that answers no request (no InResponseTo anywhere)."""
    response = idp.server.create_authn_response(
        user.attributes, in_response_to=None, destination=ACS_URL, sp_entity_id=BROKER_SP,
        name_id=saml.NameID(format=saml.NAMEID_FORMAT_PERSISTENT, text=idp.name_id_of(user)),
        authn={"class_ref": user.class_ref, "authn_auth": idp.entity_id}, sign_assertion=True)
    xml = str(response).encode()
    assert b"InResponseTo" not in xml
    fields = {"SAMLResponse": base64.b64encode(xml).decode()}
    if relay_state is not None:
        fields["RelayState"] = relay_state
    return fields


def build(config_dir: Path, store: RedisStore, allow: bool) -> Flask:
    path = config_dir / "municipalities" / "kommun-c.yaml"
    text = path.read_text()
    path.write_text(text.replace("allow_unsolicited: false", f"allow_unsolicited: {'true' if allow else 'false'}"))
    return create_app(load_settings(config_dir), store=store, instance_id="test")


@pytest.fixture
def client_for(config_dir: Path, store: RedisStore, demo_material):  # type: ignore[no-untyped-def]
    def make(allow: bool) -> tuple[Browser, DemoIdp, DemoSp]:
        app = build(config_dir, store, allow)
        services = app.extensions["broker"]
        idp = make_idp(demo_material.root, services.sp_metadata.document())
        sp = make_sp(demo_material.root, services.metadata.document(), services.settings.broker.idp.entity_id)
        client = app.test_client()
        client.environ_base["wsgi.url_scheme"] = "https"
        client.environ_base["HTTP_HOST"] = BASE_URL.split("://", 1)[1]
        return Browser(client, None), idp, sp
    return make


def test_unsolicited_response_is_refused_by_default(client_for, config_dir: Path) -> None:  # type: ignore[no-untyped-def]
    browser, idp, _ = client_for(False)
    page = browser.post(ACS_URL, unsolicited(idp, SP_ENTITY_ID))
    assert page.headers["X-Broker-Reason"] == "upstream_unsolicited"
    assert any(r["event"] == "upstream_authn_result" and r["reason"] == "upstream_unsolicited"
               for r in audit_lines(config_dir))


def test_allowed_unsolicited_response_logs_in_at_the_sp_named_by_relay_state(client_for) -> None:  # type: ignore[no-untyped-def]
    browser, idp, sp = client_for(True)
    answer = browser.post(ACS_URL, unsolicited(idp, SP_ENTITY_ID))
    action, fields = saml_response_form(answer)
    assert action == BASE_URL + "/demo-sp/acs"
    xml = base64.b64decode(fields["SAMLResponse"])
    assert b"InResponseTo" not in xml
    sp.client.allow_unsolicited = True  # pysaml2 reads the setting once, at construction
    result = sp.accept(fields["SAMLResponse"])
    assert result.attributes["employeeHsaId"] == ["SE2120003005-K001"]


def test_an_unsolicited_login_is_audited_without_a_request_id(client_for, config_dir: Path) -> None:  # type: ignore[no-untyped-def]
    """The IdP's answer names no request of the broker's (SAML Profiles §4.1.5): its audit record names none
    either (not the text "None", which an operator would search for as a request ID), the IdP it came from and
    the level it gave all the same."""
    browser, idp, _ = client_for(True)
    saml_response_form(browser.post(ACS_URL, unsolicited(idp, SP_ENTITY_ID)))
    [result] = [r for r in audit_lines(config_dir) if r["event"] == "upstream_authn_result"]
    assert result["outcome"] == "success"
    data = result["data"]
    assert isinstance(data, dict)
    assert "request_id" not in data, data
    assert data["idp"] == idp.entity_id
    assert data["loa"] == "http://id.elegnamnden.se/loa/1.0/loa3"


@pytest.mark.parametrize("relay_state", [None, "https://unknown-sp.example/metadata"], ids=["none", "unknown-sp"])
def test_allowed_unsolicited_response_needs_a_known_sp_as_relay_state(client_for, relay_state: str | None
                                                                      ) -> None:  # type: ignore[no-untyped-def]
    browser, idp, _ = client_for(True)
    page = browser.post(ACS_URL, unsolicited(idp, relay_state))
    assert page.headers["X-Broker-Reason"] == "upstream_unsolicited"


def test_an_unsolicited_response_cannot_be_replayed(client_for) -> None:  # type: ignore[no-untyped-def]
    browser, idp, _ = client_for(True)
    fields = unsolicited(idp, SP_ENTITY_ID)
    saml_response_form(browser.post(ACS_URL, fields))
    assert browser.post(ACS_URL, fields).headers["X-Broker-Reason"] == "upstream_replay"


DORA = IdpUser("dora", "home care at Kommun D, which shares Kommun C's IdP", KARIN.class_ref, {
    **KARIN.attributes, "http://sambi.se/attributes/1/employeeHsaId": [f"SE{KOMMUN_D_ORG}-D001"]})


@pytest.mark.parametrize(("user", "municipality", "hsa_id"), [
    pytest.param(KARIN, "kommun-c", "SE2120003005-K001", id="a-user-of-the-first-municipality"),
    pytest.param(DORA, "kommun-d", f"SE{KOMMUN_D_ORG}-D001", id="a-user-of-the-second-municipality"),
])
def test_an_unsolicited_login_at_a_shared_idp_is_for_the_municipality_whose_user_it_is(
        config_dir: Path, store: RedisStore, demo_material, user: IdpUser, municipality: str,  # type: ignore[no-untyped-def]
        hsa_id: str) -> None:
    """Kommun C and Kommun D share an IdP and both allow IdP-initiated logins (SAML Profiles §4.1.5), and the SP
    accepts both: no request and no discovery page say which municipality the user is of, so it is the one whose
    identity rule takes her (each rule matches only its own staff: the configuration check sees to that). The
    first municipality listed was taken for everyone, and Kommun D's staff were refused."""
    _kommun_d_sharing_kommun_c_idp(config_dir)
    _identity_rules(config_dir, {"kommun-c": _OWN_C, "kommun-d": _OWN_D})
    sp_file = config_dir / "service-providers" / "demo-sp.yaml"
    sp_file.write_text(sp_file.read_text().replace("[kommun-a, kommun-b, kommun-d]",
                                                   "[kommun-a, kommun-b, kommun-c, kommun-d]"))
    path = config_dir / "municipalities" / "kommun-d.yaml"
    path.write_text(path.read_text().replace("allow_unsolicited: false", "allow_unsolicited: true"))
    app = build(config_dir, store, True)
    services = app.extensions["broker"]
    idp = make_idp(demo_material.root, services.sp_metadata.document())
    sp = make_sp(demo_material.root, services.metadata.document(), services.settings.broker.idp.entity_id)
    browser = open_browser(app, None)

    _, fields = saml_response_form(browser.post(ACS_URL, unsolicited(idp, SP_ENTITY_ID, user)))
    sp.client.allow_unsolicited = True
    assert sp.accept(fields["SAMLResponse"]).attributes["employeeHsaId"] == [hsa_id]
    [issued] = [r for r in audit_lines(config_dir) if r["event"] == "assertion_issued"]
    assert issued["municipality"] == municipality
