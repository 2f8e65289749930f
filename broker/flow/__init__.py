"""The login state machine: from an AuthnRequest to a signed Response (or a clear refusal), by certificate or
through a municipal IdP, and single logout. No Flask here: the web layer turns HTTP into calls on
:class:`LoginFlow` and its results into pages."""

from broker.flow.login import LoginFlow, satisfies
from broker.flow.results import ClientContext, Discovery, LoginFailed, PostToSp, Redirect, Result, new_context

__all__ = ["ClientContext", "Discovery", "LoginFailed", "LoginFlow", "PostToSp", "Redirect", "Result",
           "new_context", "satisfies"]
