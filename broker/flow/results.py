"""What the flow hands back to the web layer, and what it needs to know about the request."""

from __future__ import annotations

from dataclasses import dataclass

from broker.audit.events import new_correlation_id
from broker.config.loader import Municipality
from broker.config.schema import LocalizedText
from broker.errors import BrokerError
from broker.pki.sources import PresentedCertificate


@dataclass(frozen=True)
class ClientContext:
    """What the web layer knows about the request."""

    correlation_id: str
    client_address: str | None
    presented: PresentedCertificate
    session_token: str | None
    municipality_hint: str | None = None       # ?municipality= on the SSO URL
    remembered_municipality: str | None = None  # the discovery cookie
    browser_binding: str | None = None          # the cookie that ties logins at a municipal IdP to this browser


@dataclass(frozen=True)
class PostToSp:
    """Deliver a SAML message through an auto-submitting form (HTTP-POST binding): to an SP, or an IdP."""

    url: str
    fields: dict[str, str]
    correlation_id: str
    sp_name: LocalizedText | None
    set_session: str | None = None
    clear_session: bool = False
    remember_municipality: str | None = None
    bind_browser: str | None = None            # set the browser-binding cookie to this value
    # where the redirects that follow the form's submission may lead the browser on (the rest of a single logout:
    # the receiver's answer comes back to the broker, which sends the browser to the next participant)
    onward: tuple[str, ...] = ()


@dataclass(frozen=True)
class Redirect:
    url: str
    correlation_id: str
    clear_session: bool = False
    remember_municipality: str | None = None
    bind_browser: str | None = None


@dataclass(frozen=True)
class LoginFailed:
    """A refusal the user must see: what happened, what to do, and how to go on."""

    error: BrokerError
    correlation_id: str
    sp_name: LocalizedText | None = None
    municipality: Municipality | None = None
    retry_login_id: str | None = None
    back_to_sp: PostToSp | None = None
    # the login went to ``municipality`` by a choice (remembered or made on the page) among several: the pending
    # login ``retry_login_id`` may be taken to the discovery page to choose another
    choose_again: bool = False


@dataclass(frozen=True)
class Discovery:
    """The user must choose a municipality: the choices, and the pending login to continue."""

    login_id: str
    options: tuple[Municipality, ...]
    correlation_id: str
    sp_name: LocalizedText | None
    preselected: str | None = None
    # where a choice may send the browser by redirect (the municipal IdPs' HTTP-Redirect SSO endpoints): the
    # page's CSP form-action must name them, since browsers apply form-action to redirects after a form post
    form_targets: tuple[str, ...] = ()


@dataclass(frozen=True)
class LogoutDone:
    """Single logout finished here (no SP waiting for a LogoutResponse): what to tell the user."""

    correlation_id: str
    partial: tuple[LocalizedText | str, ...] = ()   # who did not confirm (names, or entity IDs)
    clear_session: bool = True
    next: PostToSp | Redirect | None = None          # the initiator's LogoutResponse, after the user has read


Result = PostToSp | LoginFailed | Redirect | Discovery | LogoutDone


def new_context(client_address: str | None, presented: PresentedCertificate, session_token: str | None,
                correlation_id: str | None = None) -> ClientContext:
    return ClientContext(correlation_id or new_correlation_id(), client_address, presented, session_token)
