"""User-facing words in Swedish and English: page texts and plain-words explanations of reason codes.

Each explanation says what happened and what to do; ``{placeholders}`` are
filled from the error's safe ``params`` (dates, names). Protocol errors the
user cannot fix share one explanation per family that sends them to the
service's support with the reference ID.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

LANGUAGES: Final = ("sv", "en")
DEFAULT_LANGUAGE: Final = "sv"


@dataclass(frozen=True)
class Explanation:
    title: str
    what: str
    todo: str


_E = Explanation

_SV: dict[str, Explanation] = {
    "certificate_missing": _E(
        "Inget certifikat valdes",
        "Inloggningstjänsten fick inget e-legitimationscertifikat från din webbläsare.",
        "Kontrollera att ditt kort sitter i läsaren och att kortprogrammet (t.ex. Net iD) är igång. "
        "Stäng alla webbläsarfönster och försök igen; välj ditt kommunkort när webbläsaren frågar."),
    "certificate_malformed": _E(
        "Certifikatet kunde inte läsas",
        "Certifikatet som webbläsaren skickade är skadat eller har fel format.",
        "Kontakta din kommuns kortadministratör och uppge referensnumret."),
    "issuer_unknown": _E(
        "Certifikatet är inte från en ansluten kommun",
        "Certifikatet du valde är utfärdat av en utfärdare som inte är ansluten till tjänsten.",
        "Stäng webbläsaren och försök igen med ditt kommunkort (SITHS eller Efos). "
        "Om du valde rätt kort: kontakta din kommuns IT-support."),
    "organization_mismatch": _E(
        "Certifikatet är inte från en ansluten kommun",
        "Certifikatet är utfärdat av en utfärdare som flera organisationer använder, men den organisation "
        "certifikatet anger är inte ansluten till tjänsten.",
        "Försök igen med ditt kommunkort. Om du valde rätt kort: kontakta din kommuns IT-support och ange "
        "referensnumret."),
    "municipality_suspended": _E(
        "Inloggning för din kommun är tillfälligt stängd",
        "Regionen har tillfälligt stängt inloggning för användare från din kommun.",
        "Kontakta din kommuns IT-support."),
    "municipality_not_active": _E(
        "Din kommun är inte ansluten ännu",
        "Din kommun håller på att anslutas, och dess personal kan ännu inte logga in på den här tjänsten.",
        "Kontakta din kommuns IT-support för att få veta när anslutningen är klar."),
    "municipality_not_allowed": _E(
        "Tjänsten är inte öppen för din kommun",
        "Den här tjänsten tar inte emot användare från din kommun.",
        "Kontakta din kommuns IT-support om du behöver tillgång."),
    "certificate_not_yet_valid": _E(
        "Certifikatet gäller inte ännu",
        "Ditt certifikat börjar gälla {not_before}.",
        "Försök igen när certifikatet börjar gälla, eller kontakta din kommuns kortadministratör."),
    "certificate_expired": _E(
        "Certifikatet har gått ut",
        "Ditt certifikat gick ut {not_after}.",
        "Kontakta din kommuns kortadministratör för att få ett nytt kort eller certifikat."),
    "weak_signature_algorithm": _E(
        "Certifikatet är för svagt",
        "Certifikatet är signerat med en algoritm som inte längre godtas (SHA-1).",
        "Kontakta din kommuns kortadministratör för att få ett nytt certifikat."),
    "weak_key": _E(
        "Certifikatet är för svagt",
        "Certifikatets nyckel är för kort för att godtas.",
        "Kontakta din kommuns kortadministratör för att få ett nytt certifikat."),
    "chain_invalid": _E(
        "Certifikatet kunde inte kontrolleras",
        "Kedjan från ditt certifikat till kommunens utfärdare gick inte att kontrollera.",
        "Kontakta din kommuns IT-support och uppge referensnumret."),
    "eku_not_client_auth": _E(
        "Fel certifikat valt",
        "Certifikatet du valde är inte avsett för inloggning (det är t.ex. ett underskriftscertifikat).",
        "Stäng webbläsaren, försök igen och välj kortets certifikat för legitimering."),
    "key_usage_not_digital_signature": _E(
        "Fel certifikat valt",
        "Certifikatet du valde är kortets underskriftscertifikat, inte legitimeringscertifikatet.",
        "Stäng webbläsaren, försök igen och välj kortets certifikat för legitimering."),
    "policy_not_accepted": _E(
        "Certifikatet godtas inte för inloggning",
        "Certifikatets typ (certifikatpolicy) är inte godkänd för den här tjänsten.",
        "Kontakta din kommuns kortadministratör och uppge referensnumret."),
    "revoked": _E(
        "Certifikatet är spärrat",
        "Ditt certifikat spärrades {revocation_date}.",
        "Kontakta din kommuns kortadministratör för att få ett nytt kort."),
    "revocation_unknown": _E(
        "Certifikatet är okänt för utfärdaren",
        "Utfärdarens spärrtjänst känner inte till ditt certifikat.",
        "Kontakta din kommuns kortadministratör och uppge referensnumret."),
    "revocation_response_invalid": _E(
        "Spärrkontrollen kunde inte göras",
        "Svaret från spärrtjänsten kunde inte godtas.",
        "Försök igen om en stund. Kvarstår felet: kontakta regionens support och uppge referensnumret."),
    "revocation_stale": _E(
        "Spärrkontrollen kunde inte göras",
        "Inloggningstjänsten kunde inte kontrollera om ditt certifikat är spärrat, eftersom spärrlistan är "
        "för gammal.",
        "Försök igen om en stund. Kvarstår felet: kontakta regionens support och uppge referensnumret."),
    "revocation_unavailable": _E(
        "Spärrkontrollen kunde inte göras",
        "Inloggningstjänsten kunde inte kontrollera om ditt certifikat är spärrat.",
        "Försök igen om en stund. Kvarstår felet: kontakta regionens support och uppge referensnumret."),
    "identity_missing": _E(
        "Certifikatet saknar identitet",
        "Ditt certifikat saknar uppgiften ({field}) som tjänsten använder för att känna igen dig.",
        "Kontakta din kommuns kortadministratör och uppge referensnumret."),
    "identity_invalid": _E(
        "Certifikatets identitet är ogiltig",
        "Identiteten i ditt certifikat har fel format.",
        "Kontakta din kommuns kortadministratör och uppge referensnumret."),
    "loa_insufficient": _E(
        "Högre tillitsnivå krävs",
        "Tjänsten kräver en e-legitimation med högre tillitsnivå ({required}) än din ({loa}).",
        "Logga in med ditt SITHS-kort i stället för ett mjukt certifikat, eller kontakta din kommun."),
    "authn_context_unsupported": _E(
        "Högre tillitsnivå krävs",
        "Tjänsten kräver en e-legitimation med högre tillitsnivå än den du använde.",
        "Logga in med ditt SITHS-kort, eller kontakta din kommuns IT-support."),
    "proxy_header_untrusted": _E(
        "Certifikatet kom inte fram",
        "Certifikatet kom en väg som inloggningstjänsten inte litar på och användes därför inte.",
        "Gå till tjänsten via regionens vanliga adress och försök igen. Kvarstår felet: kontakta regionens "
        "support och uppge referensnumret."),
    "proxy_header_malformed": _E(
        "Certifikatet kunde inte tas emot",
        "Certifikatet kom fram i ett format som inte kunde läsas.",
        "Kontakta regionens support och uppge referensnumret."),
    "proxy_header_too_large": _E(
        "Certifikatet kunde inte tas emot",
        "Certifikatet som kom fram var för stort.",
        "Kontakta regionens support och uppge referensnumret."),
    "session_store_unavailable": _E(
        "Tjänsten är tillfälligt otillgänglig",
        "Inloggningstjänsten har ett tillfälligt tekniskt fel.",
        "Försök igen om en stund. Kvarstår felet: kontakta regionens support och uppge referensnumret."),
    "session_configuration_changed": _E(
        "Logga in igen",
        "Inställningarna för din kommuns inloggning har ändrats sedan du loggade in.",
        "Gå tillbaka till tjänsten och logga in igen."),
    "audit_unavailable": _E(
        "Tjänsten är tillfälligt otillgänglig",
        "Inloggningstjänsten kan just nu inte föra logg över inloggningar och stoppar därför alla inloggningar.",
        "Försök igen om en stund. Kvarstår felet: kontakta regionens support och uppge referensnumret."),
    "internal_error": _E(
        "Något gick fel",
        "Ett oväntat fel inträffade i inloggningstjänsten.",
        "Försök igen. Kvarstår felet: kontakta regionens support och uppge referensnumret."),
    "login_unknown": _E(
        "Inloggningen har gått ut",
        "Inloggningen du försöker fortsätta är för gammal eller redan använd.",
        "Gå tillbaka till tjänsten och logga in igen."),
    "municipality_unknown": _E(
        "Kommunen kan inte väljas",
        "Personal från den valda kommunen kan inte logga in på den här tjänsten.",
        "Välj din kommun igen i listan. Saknas den: kontakta din kommuns IT-support."),
    "upstream_metadata_unavailable": _E(
        "Kommunens inloggning är inte tillgänglig",
        "Inloggningstjänsten kan just nu inte ansluta till din kommuns inloggning.",
        "Försök igen om en stund. Kvarstår felet: kontakta din kommuns IT-support och uppge referensnumret."),
    "upstream_status": _E(
        "Inloggningen hos kommunen misslyckades",
        "{idp_status}",
        "Försök igen. Kvarstår felet: kontakta din kommuns IT-support och uppge referensnumret."),
    "upstream_attribute_missing": _E(
        "Uppgifter saknas från din kommun",
        "Din kommuns inloggning skickade inte uppgiften {attribute}, som tjänsten behöver.",
        "Kontakta din kommuns IT-support och be dem skicka {attribute}; uppge referensnumret."),
    "upstream_authn_context_insufficient": _E(
        "Högre tillitsnivå krävs",
        "Tjänsten kräver en starkare inloggning än den din kommun gjorde.",
        "Logga in igen med en starkare metod (t.ex. ditt SITHS-kort) hos din kommun."),
    "logout_partial": _E(
        "Utloggningen blev inte fullständig",
        "Alla tjänster bekräftade inte utloggningen.",
        "Stäng webbläsaren för att vara säker på att du är utloggad."),
    "logout_unknown": _E(
        "Utloggningen kunde inte fortsätta",
        "Du är utloggad från inloggningstjänsten, men utloggningen från de andra tjänsterna kunde inte slutföras.",
        "Stäng webbläsaren för att vara säker på att du är utloggad överallt."),
    "logout_request_invalid": _E(
        "Utloggningen kunde inte genomföras",
        "En tjänst bad inloggningstjänsten att logga ut dig, men begäran kunde inte godtas. Du kan fortfarande "
        "vara inloggad.",
        "Stäng alla webbläsarfönster för att vara säker på att du är utloggad. Kvarstår felet: kontakta "
        "tjänstens support och uppge referensnumret."),
    "logout_response_invalid": _E(
        "Utloggningen blev kanske inte fullständig",
        "En tjänst svarade på utloggningen, men svaret kunde inte godtas. Du kan fortfarande vara inloggad där.",
        "Stäng alla webbläsarfönster för att vara säker på att du är utloggad överallt. Kvarstår felet: kontakta "
        "tjänstens support och uppge referensnumret."),
    "saml_request_missing": _E(
        "Börja från tjänsten",
        "Den här sidan öppnas av tjänsten du vill logga in på, inte direkt.",
        "Gå till tjänsten och välj att logga in där."),
    "page_not_found": _E(
        "Sidan finns inte",
        "Adressen pekar inte på någon sida i inloggningstjänsten.",
        "Gå till tjänsten du vill logga in på och börja därifrån."),
    "request_too_large": _E(
        "Begäran var för stor",
        "Inloggningstjänsten tar inte emot så stora begäranden.",
        "Gå tillbaka till tjänsten och försök igen."),
    "method_not_allowed": _E(
        "Sidan kan inte användas så",
        "Sidan öppnades på ett sätt som den inte stöder.",
        "Gå tillbaka till tjänsten och försök igen."),
    "range_not_satisfiable": _E(
        "Delen av filen finns inte",
        "Webbläsaren bad om en del av en fil som filen inte har.",
        "Ladda om sidan."),
    "request_invalid": _E(
        "Begäran kunde inte tas emot",
        "Webbläsaren skickade en begäran som inloggningstjänsten inte kan ta emot.",
        "Gå tillbaka till tjänsten och försök igen. Kvarstår felet: kontakta tjänstens support."),
    "request_malformed": _E(
        "Adressen kunde inte läsas",
        "Webbläsaren skickade en adress eller ett formulär som inloggningstjänsten inte kan läsa (tecken som inte "
        "är rätt kodade).",
        "Gå tillbaka till tjänsten och försök igen. Kvarstår felet: kontakta tjänstens support och uppge "
        "referensnumret."),
    "request_media_type_unsupported": _E(
        "Formuläret kunde inte tas emot",
        "Inloggningstjänsten fick något annat än ett formulär från webbläsaren.",
        "Gå tillbaka till tjänsten och försök igen. Kvarstår felet: kontakta tjänstens support och uppge "
        "referensnumret."),
    "request_uri_too_long": _E(
        "Adressen var för lång",
        "Inloggningstjänsten tar inte emot så långa adresser.",
        "Gå tillbaka till tjänsten och försök igen. Kvarstår felet: kontakta tjänstens support."),
    "request_headers_too_large": _E(
        "Webbläsaren skickade för mycket",
        "Webbläsaren skickade fler eller större kakor (cookies) än inloggningstjänsten tar emot.",
        "Rensa webbläsarens kakor för den här webbplatsen, gå tillbaka till tjänsten och försök igen."),
    "cross_site_request": _E(
        "Valet kom från en annan webbplats",
        "Ett formulär skickades till inloggningstjänsten från en annan webbplats än inloggningstjänstens egen. "
        "Det godtas inte, för att ingen annan ska kunna logga in i ditt namn.",
        "Gå till tjänsten du vill använda och logga in därifrån. Om du inte själv försökte logga in: stäng "
        "webbläsaren."),
    "csrf_token_invalid": _E(
        "Valet kunde inte godtas",
        "Formuläret kom inte från inloggningstjänstens sida i den här webbläsaren, eller webbläsaren skickade "
        "inte tillbaka inloggningstjänstens kaka (cookie).",
        "Gå till tjänsten du vill använda och logga in därifrån. Tillåt kakor för inloggningstjänsten. Om du "
        "inte själv försökte logga in: stäng webbläsaren."),
    "rate_limited": _E(
        "För många misslyckade inloggningar",
        "Inloggningen har misslyckats för många gånger från din dator eller med ditt kort, så den är tillfälligt "
        "spärrad.",
        "Försök igen om {minutes} min. Kontrollera att du använder rätt kort. Kvarstår felet: kontakta din "
        "IT-support och uppge referensnumret."),
}

_EN: dict[str, Explanation] = {
    "certificate_missing": _E(
        "No certificate was chosen",
        "The login service received no e-identity certificate from your browser.",
        "Check that your card is in the reader and that the card software (e.g. Net iD) is running. Close "
        "all browser windows and try again; choose your municipality card when the browser asks."),
    "certificate_malformed": _E(
        "The certificate could not be read",
        "The certificate your browser sent is damaged or in the wrong format.",
        "Contact your municipality's card administrator and give the reference number."),
    "issuer_unknown": _E(
        "The certificate is not from a connected municipality",
        "The certificate you chose was issued by an authority that is not connected to this service.",
        "Close the browser and try again with your municipality card (SITHS or Efos). If you chose the "
        "right card, contact your municipality's IT support."),
    "organization_mismatch": _E(
        "The certificate is not from a connected municipality",
        "The certificate was issued by an authority that several organisations use, but the organisation the "
        "certificate names is not connected to this service.",
        "Try again with your municipality card. If you chose the right card, contact your municipality's IT "
        "support and give them the reference number."),
    "municipality_suspended": _E(
        "Login for your municipality is temporarily closed",
        "The region has temporarily closed login for users from your municipality.",
        "Contact your municipality's IT support."),
    "municipality_not_active": _E(
        "Your municipality is not connected yet",
        "Your municipality is being connected, and its staff cannot log in to this service yet.",
        "Contact your municipality's IT support to learn when the connection is complete."),
    "municipality_not_allowed": _E(
        "The service is not open to your municipality",
        "This service does not accept users from your municipality.",
        "Contact your municipality's IT support if you need access."),
    "certificate_not_yet_valid": _E(
        "The certificate is not valid yet",
        "Your certificate becomes valid on {not_before}.",
        "Try again when it is valid, or contact your municipality's card administrator."),
    "certificate_expired": _E(
        "The certificate has expired",
        "Your certificate expired on {not_after}.",
        "Contact your municipality's card administrator for a new card or certificate."),
    "weak_signature_algorithm": _E(
        "The certificate is too weak",
        "The certificate is signed with an algorithm that is no longer accepted (SHA-1).",
        "Contact your municipality's card administrator for a new certificate."),
    "weak_key": _E(
        "The certificate is too weak",
        "The certificate's key is too short to be accepted.",
        "Contact your municipality's card administrator for a new certificate."),
    "chain_invalid": _E(
        "The certificate could not be checked",
        "The chain from your certificate to your municipality's certificate authority could not be verified.",
        "Contact your municipality's IT support and give the reference number."),
    "eku_not_client_auth": _E(
        "Wrong certificate chosen",
        "The certificate you chose is not meant for login (it is, for example, a signing certificate).",
        "Close the browser, try again and choose the card's authentication certificate."),
    "key_usage_not_digital_signature": _E(
        "Wrong certificate chosen",
        "The certificate you chose is the card's signing certificate, not its authentication certificate.",
        "Close the browser, try again and choose the card's authentication certificate."),
    "policy_not_accepted": _E(
        "The certificate is not accepted for login",
        "The certificate's type (certificate policy) is not approved for this service.",
        "Contact your municipality's card administrator and give the reference number."),
    "revoked": _E(
        "The certificate is revoked",
        "Your certificate was revoked on {revocation_date}.",
        "Contact your municipality's card administrator for a new card."),
    "revocation_unknown": _E(
        "The certificate is unknown to its issuer",
        "The issuer's revocation service does not know your certificate.",
        "Contact your municipality's card administrator and give the reference number."),
    "revocation_response_invalid": _E(
        "The revocation check could not be made",
        "The answer from the revocation service could not be accepted.",
        "Try again in a while. If it persists, contact the region's support and give the reference number."),
    "revocation_stale": _E(
        "The revocation check could not be made",
        "The login service could not check whether your certificate is revoked: the revocation list is "
        "out of date.",
        "Try again in a while. If it persists, contact the region's support and give the reference number."),
    "revocation_unavailable": _E(
        "The revocation check could not be made",
        "The login service could not check whether your certificate is revoked.",
        "Try again in a while. If it persists, contact the region's support and give the reference number."),
    "identity_missing": _E(
        "The certificate has no identity",
        "Your certificate lacks the field ({field}) the service uses to recognise you.",
        "Contact your municipality's card administrator and give the reference number."),
    "identity_invalid": _E(
        "The certificate's identity is invalid",
        "The identity in your certificate has the wrong format.",
        "Contact your municipality's card administrator and give the reference number."),
    "loa_insufficient": _E(
        "A higher assurance level is required",
        "The service requires an e-identity of a higher assurance level ({required}) than yours ({loa}).",
        "Log in with your SITHS card instead of a soft certificate, or contact your municipality."),
    "authn_context_unsupported": _E(
        "A higher assurance level is required",
        "The service requires an e-identity of a higher assurance level than the one you used.",
        "Log in with your SITHS card, or contact your municipality's IT support."),
    "proxy_header_untrusted": _E(
        "The certificate did not arrive",
        "The certificate came by a route the login service does not trust, so it was not used.",
        "Open the service at the region's usual address and try again. If it persists, contact the "
        "region's support and give the reference number."),
    "proxy_header_malformed": _E(
        "The certificate could not be received",
        "The certificate arrived in a format that could not be read.",
        "Contact the region's support and give the reference number."),
    "proxy_header_too_large": _E(
        "The certificate could not be received",
        "The certificate that arrived was too large.",
        "Contact the region's support and give the reference number."),
    "session_store_unavailable": _E(
        "The service is temporarily unavailable",
        "The login service has a temporary technical problem.",
        "Try again in a while. If it persists, contact the region's support and give the reference number."),
    "session_configuration_changed": _E(
        "Log in again",
        "The settings of your municipality's login have changed since you logged in.",
        "Go back to the service and log in again."),
    "audit_unavailable": _E(
        "The service is temporarily unavailable",
        "Logins cannot be recorded right now, so all logins are stopped.",
        "Try again in a while. If it persists, contact the region's support and give the reference number."),
    "internal_error": _E(
        "Something went wrong",
        "An unexpected error occurred in the login service.",
        "Try again. If it persists, contact the region's support and give the reference number."),
    "login_unknown": _E(
        "The login has expired",
        "The login you are trying to continue is too old or already used.",
        "Go back to the service and log in again."),
    "municipality_unknown": _E(
        "This municipality cannot be chosen",
        "Staff of the chosen municipality cannot log in to this service.",
        "Choose your municipality again from the list. If it is missing, contact your municipality's IT support."),
    "upstream_metadata_unavailable": _E(
        "Your municipality's login is unavailable",
        "The login service cannot reach your municipality's login right now.",
        "Try again in a while. If it persists, contact your municipality's IT support with the reference number."),
    "upstream_status": _E(
        "The login at your municipality failed",
        "{idp_status}",
        "Try again. If it persists, contact your municipality's IT support and give the reference number."),
    "upstream_attribute_missing": _E(
        "Information missing from your municipality",
        "Your municipality's login did not send {attribute}, which the service needs.",
        "Contact your municipality's IT support and ask them to send {attribute}; give the reference number."),
    "upstream_authn_context_insufficient": _E(
        "A higher assurance level is required",
        "The service requires a stronger login than the one your municipality made.",
        "Log in again with a stronger method (e.g. your SITHS card) at your municipality."),
    "logout_partial": _E(
        "Logout was not complete",
        "Not every service confirmed the logout.",
        "Close the browser to be sure you are logged out."),
    "logout_unknown": _E(
        "Logout could not continue",
        "You are logged out of the login service, but logging out of the other services could not be finished.",
        "Close the browser to be sure you are logged out everywhere."),
    "logout_request_invalid": _E(
        "Logout could not be carried out",
        "A service asked the login service to log you out, but the request could not be accepted. You may still "
        "be logged in.",
        "Close all browser windows to be sure you are logged out. If it persists, contact the service's support "
        "and give the reference number."),
    "logout_response_invalid": _E(
        "Logout may not be complete",
        "A service answered the logout, but its answer could not be accepted. You may still be logged in there.",
        "Close all browser windows to be sure you are logged out everywhere. If it persists, contact the "
        "service's support and give the reference number."),
    "saml_request_missing": _E(
        "Start from the service",
        "This page is opened by the service you want to log in to, not directly.",
        "Go to the service and choose to log in there."),
    "page_not_found": _E(
        "Page not found",
        "The address does not point to a page of the login service.",
        "Go to the service you want to log in to and start from there."),
    "request_too_large": _E(
        "The request was too large",
        "The login service does not accept requests that large.",
        "Go back to the service and try again."),
    "method_not_allowed": _E(
        "This page cannot be used that way",
        "The page was opened in a way it does not support.",
        "Go back to the service and try again."),
    "range_not_satisfiable": _E(
        "That part of the file does not exist",
        "The browser asked for a part of a file that the file does not have.",
        "Reload the page."),
    "request_invalid": _E(
        "The request could not be accepted",
        "The browser sent a request the login service cannot accept.",
        "Go back to the service and try again. If it persists, contact the service's support."),
    "request_malformed": _E(
        "The address could not be read",
        "Your browser sent an address or a form the login service cannot read (characters that are not encoded "
        "correctly).",
        "Go back to the service and try again. If it persists, contact the service's support and give the "
        "reference number."),
    "request_media_type_unsupported": _E(
        "The form could not be accepted",
        "The login service received something other than a form from your browser.",
        "Go back to the service and try again. If it persists, contact the service's support and give the "
        "reference number."),
    "request_uri_too_long": _E(
        "The address was too long",
        "The login service does not accept addresses that long.",
        "Go back to the service and try again. If it persists, contact the service's support."),
    "request_headers_too_large": _E(
        "Your browser sent too much",
        "Your browser sent more or larger cookies than the login service accepts.",
        "Clear the browser's cookies for this site, go back to the service and try again."),
    "cross_site_request": _E(
        "The choice came from another site",
        "A form was sent to the login service from a site other than the login service's own. It is not "
        "accepted, so that nobody else can log in in your name.",
        "Go to the service you want to use and log in from there. If you did not try to log in yourself, close "
        "the browser."),
    "csrf_token_invalid": _E(
        "The choice could not be accepted",
        "The form did not come from the login service's page in this browser, or the browser did not send back "
        "the login service's cookie.",
        "Go to the service you want to use and log in from there. Allow cookies for the login service. If you "
        "did not try to log in yourself, close the browser."),
    "rate_limited": _E(
        "Too many failed logins",
        "Logging in has failed too many times from your computer or with your card, so it is blocked for a "
        "while.",
        "Try again in {minutes} min. Check that you use the right card. If it persists, contact your IT "
        "support and give the reference number."),
}

_UPSTREAM = {
    "sv": _E("Inloggningen hos din kommun kunde inte godtas",
             "Svaret från din kommuns inloggning kunde inte godtas av säkerhetsskäl.",
             "Försök igen från tjänsten. Kvarstår felet: kontakta din kommuns IT-support och uppge "
             "referensnumret."),
    "en": _E("Your municipality's login could not be accepted",
             "The answer from your municipality's login could not be accepted, for security reasons.",
             "Try again from the service. If it persists, contact your municipality's IT support and give the "
             "reference number."),
}

_PROTOCOL = {
    "sv": _E("Tjänsten skickade en felaktig begäran",
             "Tjänsten du kom från skickade en inloggningsbegäran som inloggningstjänsten inte kan godta.",
             "Kontakta tjänstens support och uppge referensnumret."),
    "en": _E("The service sent an invalid request",
             "The service you came from sent a login request that the login service cannot accept.",
             "Contact the service's support and give the reference number."),
}

CATALOG: Final = {"sv": _SV, "en": _EN}

UI: Final = {
    "sv": {
        "service": "Inloggning för kommunal personal",
        "reference": "Referensnummer",
        "reference_help": "Uppge referensnumret om du kontaktar support.",
        "try_again": "Försök igen",
        "back_to_sp": "Tillbaka till {sp}",
        "back_to_sp_generic": "Tillbaka till tjänsten",
        "support": "Support för {municipality}",
        "what_happened": "Vad hände?",
        "what_to_do": "Vad kan du göra?",
        "continue": "Fortsätt",
        "continue_help": "Din webbläsare skickar dig vidare. Om inget händer: tryck på Fortsätt.",
        "sending_to": "Du skickas vidare till {sp}.",
        "language": "Language: English",
        "in_other_language": "In English",
        "skip": "Hoppa till innehållet",
        "index_title": "Inloggningstjänst för kommunal personal",
        "index_text": "Här loggar personal i kommunerna in till regionens tjänster med sitt kommunkort. "
                      "Börja från tjänsten du vill använda; den skickar dig hit.",
        "diagnose_title": "Vad ser inloggningstjänsten?",
        "diagnose_link": "Se vad inloggningstjänsten tar emot från din webbläsare",
        "diagnose_none": "Din webbläsare skickade inget certifikat.",
        "diagnose_ok": "Certifikatet godtas.",
        "diagnose_bad": "Certifikatet godtas inte.",
        "diagnose_none_help": "Vanliga orsaker: kortet sitter inte i läsaren, kortläsarens program (t.ex. Net iD) "
                              "saknas, du valde inget certifikat när webbläsaren frågade, eller din kommuns "
                              "certifikatutfärdare är inte anmäld hos inloggningstjänsten. Stäng webbläsaren, sätt i "
                              "kortet och öppna sidan igen. Hjälper det inte: kontakta din IT-support och uppge "
                              "referensnumret.",
        "diag_subject": "Innehavare",
        "diag_issuer": "Utfärdare",
        "diag_serial": "Serienummer",
        "diag_valid_from": "Giltigt från",
        "diag_valid_until": "Giltigt till",
        "diag_policies": "Certifikatpolicy",
        "diag_sha256": "Fingeravtryck (SHA-256)",
        "diag_via": "Mottaget via",
        "diag_municipality": "Kommun",
        "diag_loa": "Tillitsnivå",
        "diag_reason": "Orsakskod",
        "logged_out": "Du är utloggad.",
        "logged_out_partial_heading": "Utloggningen blev inte fullständig",
        "logged_out_partial_intro": "Du är utloggad från inloggningstjänsten, men de här tjänsterna bekräftade "
                                    "inte att du är utloggad där:",
        "logged_out_close_browser": "Stäng webbläsaren för att vara säker på att du är utloggad överallt.",
        "discovery_title": "Välj din kommun",
        "discovery_text": "Välj den kommun du arbetar för, så skickas du till rätt inloggning.",
        "discovery_for": "Du loggar in på {sp}.",
        "discovery_search": "Sök kommun",
        "discovery_search_button": "Sök",
        "discovery_legend": "Kommun",
        "discovery_none": "Ingen kommun matchar sökningen.",
        "discovery_show_all": "Visa alla kommuner",
        "discovery_remember": "Kom ihåg mitt val på den här datorn",
        "choose_other_municipality": "Välj en annan kommun",
        "method_certificate": "logga in med kort",
        "method_saml": "kommunens egen inloggning",
    },
    "en": {
        "service": "Login for municipal staff",
        "reference": "Reference number",
        "reference_help": "Give the reference number if you contact support.",
        "try_again": "Try again",
        "back_to_sp": "Back to {sp}",
        "back_to_sp_generic": "Back to the service",
        "support": "Support for {municipality}",
        "what_happened": "What happened?",
        "what_to_do": "What can you do?",
        "continue": "Continue",
        "continue_help": "Your browser is taking you onward. If nothing happens, press Continue.",
        "sending_to": "You are being sent to {sp}.",
        "language": "Språk: svenska",
        "in_other_language": "På svenska",
        "skip": "Skip to content",
        "index_title": "Login service for municipal staff",
        "index_text": "Municipal staff log in to the region's services here with their municipality card. "
                      "Start from the service you want to use; it sends you here.",
        "diagnose_title": "What does the login service see?",
        "diagnose_link": "See what the login service receives from your browser",
        "diagnose_none": "Your browser sent no certificate.",
        "diagnose_ok": "The certificate is accepted.",
        "diagnose_bad": "The certificate is not accepted.",
        "diagnose_none_help": "Common causes: the card is not in the reader, the card reader software (e.g. Net iD) "
                              "is missing, no certificate was chosen when the browser asked, or your municipality's "
                              "certificate issuer is not registered with the login service. Close the browser, "
                              "insert the card and open this page again. If that does not help, contact your IT "
                              "support and give the reference number.",
        "diag_subject": "Holder",
        "diag_issuer": "Issuer",
        "diag_serial": "Serial number",
        "diag_valid_from": "Valid from",
        "diag_valid_until": "Valid until",
        "diag_policies": "Certificate policy",
        "diag_sha256": "Fingerprint (SHA-256)",
        "diag_via": "Received via",
        "diag_municipality": "Municipality",
        "diag_loa": "Assurance level",
        "diag_reason": "Reason code",
        "logged_out": "You are logged out.",
        "logged_out_partial_heading": "Logout was not complete",
        "logged_out_partial_intro": "You are logged out of the login service, but these services did not confirm "
                                    "that you are logged out there:",
        "logged_out_close_browser": "Close the browser to be sure you are logged out everywhere.",
        "discovery_title": "Choose your municipality",
        "discovery_text": "Choose the municipality you work for, and you will be sent to its login.",
        "discovery_for": "You are logging in to {sp}.",
        "discovery_search": "Search municipality",
        "discovery_search_button": "Search",
        "discovery_legend": "Municipality",
        "discovery_none": "No municipality matches the search.",
        "discovery_show_all": "Show all municipalities",
        "discovery_remember": "Remember my choice on this computer",
        "choose_other_municipality": "Choose another municipality",
        "method_certificate": "log in with your card",
        "method_saml": "the municipality's own login",
    },
}


# the assurance levels of loa_insufficient (broker.model.KNOWN_LOAS names), as the eID framework numbers them
_LEVELS_SV: Final = {"loa2": "nivå 2", "loa3": "nivå 3", "loa4": "nivå 4", "sambi-loa2": "nivå 2",
                     "sambi-loa3": "nivå 3", "": "okänd nivå"}
_LEVELS_EN: Final = {"loa2": "level 2", "loa3": "level 3", "loa4": "level 4", "sambi-loa2": "level 2",
                     "sambi-loa3": "level 3", "": "unknown level"}

# Parameters whose value is a code the page puts into words in the reader's language: the IdP's error status
# (upstream_status), named by its SAML status code's local name (SAML Core §3.2.2.2), and the assurance levels of
# loa_insufficient (the user reads "nivå 3", not "loa3" or "sambi-loa3"). Any other value (a code of the IdP's own,
# none) gets the general words under "": what an IdP, or anyone posting to the ACS, wrote is never shown.
_WORDED: Final[dict[str, dict[str, dict[str, str]]]] = {
    "sv": {"loa": _LEVELS_SV, "required": _LEVELS_SV, "idp_status": {
        "AuthnFailed": "Inloggningen hos din kommun misslyckades.",
        "RequestDenied": "Din kommun nekade inloggningen.",
        "NoPassive": "Din kommun kunde inte logga in dig utan att fråga dig.",
        "UnknownPrincipal": "Din kommun känner inte igen användaren.",
        "": "Din kommuns inloggning avbröts eller nekades.",
    }},
    "en": {"loa": _LEVELS_EN, "required": _LEVELS_EN, "idp_status": {
        "AuthnFailed": "Logging in at your municipality failed.",
        "RequestDenied": "Your municipality refused the login.",
        "NoPassive": "Your municipality could not log you in without asking you.",
        "UnknownPrincipal": "Your municipality does not recognise the user.",
        "": "Your municipality's login was cancelled or refused.",
    }},
}


class _Params(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "-"


def explain(code: str, family: str, lang: str, params: dict[str, str]) -> Explanation:
    """The plain-words explanation of ``code`` in ``lang``, with ``params`` filled in."""
    catalog = CATALOG.get(lang, CATALOG[DEFAULT_LANGUAGE])
    fallback = _UPSTREAM if family == "upstream" else _PROTOCOL
    base = catalog.get(code) or fallback.get(lang, fallback[DEFAULT_LANGUAGE])
    values = _Params(params)
    for name, words in _WORDED.get(lang, _WORDED[DEFAULT_LANGUAGE]).items():
        values[name] = words.get(params.get(name, ""), words[""])
    return Explanation(base.title.format_map(values), base.what.format_map(values), base.todo.format_map(values))


_QVALUE: Final = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")


def pick_language(query_lang: str | None, cookie_lang: str | None, accept: str | None) -> str:
    """``?lang=`` beats the language cookie, which beats Accept-Language; Swedish by default."""
    for candidate in (query_lang, cookie_lang):
        if candidate in LANGUAGES:
            return candidate
    if accept:
        best: tuple[float, str] | None = None
        for part in accept.split(","):
            tag, *parameters = part.split(";")
            primary = tag.strip().lower().split("-")[0]
            weight = 1.0
            for parameter in parameters:
                # RFC 9110 §12.4.2: OWS around ";", "q" in either case, a qvalue of 0 to 1 with up to 3 decimals;
                # a part with a weight that is no qvalue is skipped
                name, _, value = parameter.strip().partition("=")
                if name.lower() == "q":
                    weight = float(value) if _QVALUE.fullmatch(value) else -1.0
            if weight < 0:
                continue
            if primary in LANGUAGES and (best is None or weight > best[0]):
                best = (weight, primary)
        if best is not None and best[0] > 0:
            return best[1]
    return DEFAULT_LANGUAGE
