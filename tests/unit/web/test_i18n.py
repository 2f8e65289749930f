"""Choosing the language and explaining reason codes in plain Swedish and English."""

from __future__ import annotations

import re
import string

import pytest

from broker.reasons import REASONS
from broker.web.i18n import CATALOG, DEFAULT_LANGUAGE, LANGUAGES, UI, Explanation, explain, pick_language

# --- pick_language: ?lang= > cookie > Accept-Language (q-values) > Swedish -----------------


@pytest.mark.parametrize(
    ("query", "cookie", "accept", "expected"),
    [
        pytest.param(None, None, None, "sv", id="nothing-asked-swedish"),
        pytest.param(None, None, "", "sv", id="empty-accept-language"),
        pytest.param("en", "sv", "sv", "en", id="query-beats-cookie-and-header"),
        pytest.param("sv", "en", "en", "sv", id="query-sv-beats-english-cookie"),
        pytest.param(None, "en", "sv", "en", id="cookie-beats-header"),
        pytest.param("de", "en", "sv", "en", id="unknown-query-falls-to-cookie"),
        pytest.param("de", "fr", "en", "en", id="unknown-query-and-cookie-fall-to-header"),
        pytest.param(None, None, "en-GB,en;q=0.9", "en", id="regional-english"),
        pytest.param(None, None, "sv-SE", "sv", id="regional-swedish"),
        pytest.param(None, None, "EN-us", "en", id="tag-case-insensitive"),
        pytest.param(None, None, "en;q=0.4, sv;q=0.8", "sv", id="higher-q-wins"),
        pytest.param(None, None, "sv;q=0.2, en;q=0.7", "en", id="higher-q-wins-regardless-of-order"),
        pytest.param(None, None, "de, fr;q=0.9, en;q=0.1", "en", id="only-supported-tags-count"),
        pytest.param(None, None, "de, fr", "sv", id="nothing-supported-swedish"),
        pytest.param(None, None, "en;q=0", "sv", id="q-zero-means-not-acceptable"),
        pytest.param(None, None, "en;q=abc", "sv", id="broken-q-ignored"),
        pytest.param(None, None, "en;q=abc, en-GB;q=0.5", "en", id="broken-part-skipped-rest-used"),
        pytest.param(None, None, "*", "sv", id="wildcard-default"),
        pytest.param(None, None, "en, sv", "en", id="equal-weights-first-wins"),
        # RFC 9110 §12.4.2: weight = OWS ";" OWS "q=" qvalue, the parameter name case-insensitive
        pytest.param(None, None, "sv;q=0.1, en; q=0.5", "en", id="space-before-q"),
        pytest.param(None, None, "sv;q=0.1, en ;q=0.5", "en", id="space-before-semicolon"),
        pytest.param(None, None, "en;Q=0.5, sv;q=0.4", "en", id="q-name-case-insensitive"),
        pytest.param(None, None, "en;q=2, sv;q=0.4", "sv", id="q-past-one-is-no-qvalue"),
    ],
)
def test_pick_language(query: str | None, cookie: str | None, accept: str | None, expected: str) -> None:
    assert pick_language(query, cookie, accept) == expected


def test_default_language_is_swedish() -> None:
    assert DEFAULT_LANGUAGE == "sv"
    assert LANGUAGES == ("sv", "en")


# --- explain ---------------------------------------------------------------------------------


def test_explain_fills_placeholders() -> None:
    sv = explain("certificate_expired", "certificate", "sv", {"not_after": "2024-05-31"})
    en = explain("certificate_expired", "certificate", "en", {"not_after": "2024-05-31"})
    assert sv.what == "Ditt certifikat gick ut 2024-05-31."
    assert en.what == "Your certificate expired on 2024-05-31."
    assert sv.title == "Certifikatet har gått ut"


def test_explain_fills_several_placeholders() -> None:
    text = explain("loa_insufficient", "certificate", "en", {"loa": "loa2", "required": "loa3"}).what
    assert "(level 3)" in text
    assert "(level 2)" in text


@pytest.mark.parametrize(("loa", "required", "sv", "en"), [
    pytest.param("loa2", "loa3", "högre tillitsnivå (nivå 3) än din (nivå 2)",
                 "higher assurance level (level 3) than yours (level 2)", id="eid-framework"),
    pytest.param("sambi-loa2", "loa4", "högre tillitsnivå (nivå 4) än din (nivå 2)",
                 "higher assurance level (level 4) than yours (level 2)", id="sambi"),
    pytest.param("<b>", "loa3", "högre tillitsnivå (nivå 3) än din (okänd nivå)",
                 "higher assurance level (level 3) than yours (unknown level)", id="not-a-level-the-page-knows"),
])
def test_assurance_levels_are_put_into_words(loa: str, required: str, sv: str, en: str) -> None:
    """loa_insufficient names the levels as the user knows them (the eID framework's numbers), never the broker's
    configuration names ("loa3", "sambi-loa2"); its Swedish title uses the body's word for it, tillitsnivå."""
    params = {"loa": loa, "required": required}
    swedish = explain("loa_insufficient", "certificate", "sv", params)
    assert sv in swedish.what
    assert swedish.title == "Högre tillitsnivå krävs"
    assert en in explain("loa_insufficient", "certificate", "en", params).what


def test_explain_marks_a_missing_parameter_instead_of_failing() -> None:
    assert explain("certificate_expired", "certificate", "sv", {}).what == "Ditt certifikat gick ut -."
    assert explain("revoked", "certificate", "en", {"other": "x"}).what == "Your certificate was revoked on -."


def test_explain_ignores_extra_parameters() -> None:
    plain = explain("certificate_missing", "certificate", "sv", {})
    assert explain("certificate_missing", "certificate", "sv", {"unused": "x", "not_after": "y"}) == plain


def test_explain_does_not_interpret_parameter_values() -> None:
    what = explain("certificate_expired", "certificate", "en", {"not_after": "{not_after} {0} %s"}).what
    assert what == "Your certificate expired on {not_after} {0} %s."


@pytest.mark.parametrize(("idp_status", "sv", "en"), [
    pytest.param("AuthnFailed", "Inloggningen hos din kommun misslyckades.", "Logging in at your municipality failed.",
                 id="authn-failed"),
    pytest.param("RequestDenied", "Din kommun nekade inloggningen.", "Your municipality refused the login.",
                 id="request-denied"),
    pytest.param("UnknownPrincipal", "Din kommun känner inte igen användaren.",
                 "Your municipality does not recognise the user.", id="unknown-principal"),
    pytest.param("Responder", "Din kommuns inloggning avbröts eller nekades.",
                 "Your municipality's login was cancelled or refused.", id="top-level-only"),
    pytest.param("{idp_status} <b>", "Din kommuns inloggning avbröts eller nekades.",
                 "Your municipality's login was cancelled or refused.", id="not-a-code-the-page-knows"),
])
def test_the_idps_error_status_is_put_into_words(idp_status: str, sv: str, en: str) -> None:
    """upstream_status names what the IdP answered (SAML Core §3.2.2.2) in the reader's language; a value it has
    no words for gets the general ones, never shown as it came."""
    assert explain("upstream_status", "upstream", "sv", {"idp_status": idp_status}).what == sv
    assert explain("upstream_status", "upstream", "en", {"idp_status": idp_status}).what == en


def test_the_idps_error_status_without_a_code_gets_the_general_words() -> None:
    general = "Your municipality's login was cancelled or refused."
    assert explain("upstream_status", "upstream", "en", {}).what == general


@pytest.mark.parametrize("code", ["saml_signature_invalid", "sp_unknown", "acs_url_not_registered"])
def test_protocol_errors_without_own_entry_send_the_user_to_the_service(code: str) -> None:
    sv = explain(code, REASONS[code].family, "sv", {})
    en = explain(code, REASONS[code].family, "en", {})
    assert sv.title == "Tjänsten skickade en felaktig begäran"
    assert en.title == "The service sent an invalid request"
    assert "referensnumret" in sv.todo
    assert "reference number" in en.todo


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("code", ["logout_request_invalid", "logout_response_invalid"])
def test_a_refused_logout_says_the_user_may_still_be_logged_in(code: str, lang: str) -> None:
    """A logout that could not be carried out is no broken login request: the page says so, that the user may
    still be logged in, and how to be sure (close the browser), with the reference for the service's support."""
    explanation = explain(code, REASONS[code].family, lang, {})
    words = {"sv": ("Utloggningen", "Du kan fortfarande vara inloggad", "Stäng alla webbläsarfönster",
                    "referensnumret"),
             "en": ("Logout", "You may still be logged in", "Close all browser windows", "reference number")}[lang]
    assert explanation.title.startswith(words[0])
    assert words[1] in explanation.what
    assert explanation.todo.startswith(words[2])
    assert words[3] in explanation.todo


def test_unknown_language_falls_back_to_swedish() -> None:
    assert explain("certificate_missing", "certificate", "de", {}) == CATALOG["sv"]["certificate_missing"]
    assert explain("sp_unknown", "saml", "de", {}).title == "Tjänsten skickade en felaktig begäran"


def test_explanation_is_a_frozen_value() -> None:
    explanation = explain("certificate_missing", "certificate", "en", {})
    assert isinstance(explanation, Explanation)
    with pytest.raises(AttributeError):
        explanation.title = "changed"  # type: ignore[misc]


# --- the catalogs -----------------------------------------------------------------------------

# the families whose refusals the user can meet for reasons of their own browser, card or the broker (not a
# service's or municipal IdP's broken message, which share one explanation per family)
USER_FACING_FAMILIES = ("certificate", "proxy", "session", "dependency", "request")
USER_FACING = sorted(code for code, row in REASONS.items() if row.family in USER_FACING_FAMILIES)


def test_user_facing_codes_are_known() -> None:
    # guards the parametrisation below against an empty selection
    assert "certificate_expired" in USER_FACING
    assert "proxy_header_malformed" in USER_FACING
    assert "session_store_unavailable" in USER_FACING
    assert "audit_unavailable" in USER_FACING
    assert "request_malformed" in USER_FACING


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("code", USER_FACING)
def test_every_user_facing_reason_has_its_own_explanation(code: str, lang: str) -> None:
    entry = CATALOG[lang].get(code)
    assert entry is not None, f"{code} ({REASONS[code].family}) has no {lang} explanation"
    assert entry.title
    assert entry.what
    assert entry.todo


def test_catalogs_only_explain_existing_codes() -> None:
    for lang in LANGUAGES:
        assert set(CATALOG[lang]) <= set(REASONS), lang


def test_both_catalogs_cover_the_same_codes() -> None:
    assert set(CATALOG["sv"]) == set(CATALOG["en"])


def _placeholders(explanation: Explanation) -> set[str]:
    return {name for text in (explanation.title, explanation.what, explanation.todo)
            for _, name, _, _ in string.Formatter().parse(text) if name}


@pytest.mark.parametrize("code", sorted(CATALOG["sv"]))
def test_swedish_and_english_use_the_same_placeholders(code: str) -> None:
    assert _placeholders(CATALOG["sv"][code]) == _placeholders(CATALOG["en"][code])


def _swedish_texts() -> list[str]:
    texts = [part for e in CATALOG["sv"].values() for part in (e.title, e.what, e.todo)]
    texts += [part for code in ("sp_unknown", "upstream_unsigned")
              for part in vars(explain(code, REASONS[code].family, "sv", {})).values()]
    return texts + list(UI["sv"].values())


def test_swedish_logs_in_to_a_service_with_pa() -> None:
    """Natural Swedish logs in "på" a service ("logga in på tjänsten"), not "till" (an English calque)."""
    assert [t for t in _swedish_texts() if re.search(r"\blogga(?:r)? in till\b", t)] == []
    assert UI["sv"]["discovery_for"] == "Du loggar in på {sp}."


@pytest.mark.parametrize(("code", "sv", "en"), [
    pytest.param("municipality_not_active", "dess personal kan ännu inte logga in", "its staff cannot log in",
                 id="onboarding"),
    pytest.param("municipality_unknown", "Personal från den valda kommunen kan inte logga in",
                 "Staff of the chosen municipality cannot log in", id="not-offered"),
])
def test_staff_log_in_not_their_municipality(code: str, sv: str, en: str) -> None:
    assert sv in explain(code, REASONS[code].family, "sv", {}).what
    assert en in explain(code, REASONS[code].family, "en", {}).what


def test_the_audit_refusal_does_not_read_as_a_failed_login() -> None:
    """audit_unavailable: "Inloggningen kan inte loggas" read as "the login cannot be logged in"; the page says
    that the service cannot keep its log of logins."""
    assert "föra logg över inloggningar" in explain("audit_unavailable", "dependency", "sv", {}).what


def _english_texts() -> list[str]:
    texts = [part for e in CATALOG["en"].values() for part in (e.title, e.what, e.todo)]
    texts += [part for code in ("sp_unknown", "upstream_unsigned")
              for part in vars(explain(code, REASONS[code].family, "en", {})).values()]
    texts += [explain("upstream_status", "upstream", "en", {"idp_status": s}).what
              for s in ("AuthnFailed", "RequestDenied", "NoPassive", "UnknownPrincipal", "")]
    return texts + list(UI["en"].values())


@pytest.mark.parametrize("wrong", [pytest.param("sign-in", id="login-is-called-login"),
                                   pytest.param("another site than", id="other-than"),
                                   pytest.param("you are sent to the right", id="discovery-promise")])
def test_english_reads_as_english(wrong: str) -> None:
    assert [t for t in _english_texts() if wrong in t.lower()] == []


def test_ui_texts_exist_in_both_languages() -> None:
    assert set(UI["sv"]) == set(UI["en"])
    for lang in LANGUAGES:
        assert all(UI[lang].values()), lang
