"""Which OAuth flow each CRM uses, decided from the settings that are set. Pure, no I/O.

Salesforce orgs connect integrations in one of four ways (crm-api.md A.3, A.3.1):

========================  ===========================================================
``jwt``                   JWT bearer: client id + integration user's username + the private
                          key whose certificate is uploaded to the connected app
``refresh_token``         a refresh token from a one-time web-server (authorization code)
                          install: client id (+ secret unless the app waives it)
``client_credentials``    client id + secret, run as the app's "Run As" user; My Domain only
``session``               a pasted access token (session id) and its instance URL: tests only,
                          since nothing can renew it; ``CRMSYNC_ENV=prod`` refuses it
========================  ===========================================================

HubSpot: a ``private_app`` token (never expires) or an ``oauth`` app's refresh token, whose
access tokens live 30 minutes (crm-api.md B.2, B.2.1).

``CRMSYNC_<CRM>_AUTH`` names the flow; when it is absent the flow is inferred from the
credentials that are set (a private key or username means JWT, a refresh token means the refresh
flow, a client id and secret mean client credentials, an access token alone means a session).
:func:`salesforce_problems` / :func:`hubspot_problems` name each missing setting, so a half-set
configuration stops at start-up (exit 2) instead of at the first CRM call.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args
from urllib.parse import urlsplit

SalesforceAuth = Literal["jwt", "refresh_token", "client_credentials", "session"]
HubSpotAuth = Literal["private_app", "oauth"]
SALESFORCE_AUTHS: tuple[str, ...] = get_args(SalesforceAuth)
HUBSPOT_AUTHS: tuple[str, ...] = get_args(HubSpotAuth)

PRODUCTION_LOGIN_URL = "https://login.salesforce.com"
SANDBOX_LOGIN_URL = "https://test.salesforce.com"
# Hosts that serve every org's login but not the client-credentials grant ("request not
# supported on this domain", crm-api.md A.1.1): that grant needs the org's My Domain.
GENERIC_LOGIN_HOSTS = frozenset({"login.salesforce.com", "test.salesforce.com"})

P = "CRMSYNC_SALESFORCE_"
H = "CRMSYNC_HUBSPOT_"


@dataclass(frozen=True)
class SalesforceAuthFields:
    """The Salesforce settings that decide the flow (secrets reduced to "is it set")."""

    auth: SalesforceAuth | None = None
    login_url: str | None = None
    instance_url: str | None = None
    client_id: str | None = None
    client_secret: bool = False
    username: str | None = None
    private_key_file: Path | None = None
    refresh_token: bool = False
    access_token: bool = False

    @property
    def any_credential(self) -> bool:
        return bool(
            self.client_id
            or self.client_secret
            or self.username
            or self.private_key_file
            or self.refresh_token
            or self.access_token
        )


def salesforce_mode(f: SalesforceAuthFields) -> SalesforceAuth | None:
    """The flow named by ``CRMSYNC_SALESFORCE_AUTH``, else the one the credentials imply."""
    if f.auth is not None:
        return f.auth
    if f.private_key_file is not None or f.username:
        return "jwt"
    if f.refresh_token:
        return "refresh_token"
    if f.client_id or f.client_secret:
        return "client_credentials"
    if f.access_token:
        return "session"
    return None


def salesforce_login_url(f: SalesforceAuthFields, mode: SalesforceAuth | None) -> str | None:
    """Where the token request goes: the setting, else the usual host for the flow.

    JWT and refresh-token logins default to ``login.salesforce.com``; client credentials default
    to the instance URL (the org's My Domain), which is where crmsync sent them before
    ``CRMSYNC_SALESFORCE_LOGIN_URL`` existed.
    """
    if f.login_url:
        return f.login_url
    if mode in ("jwt", "refresh_token"):
        return PRODUCTION_LOGIN_URL
    if mode == "client_credentials":
        return f.instance_url
    return None


def _host(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def salesforce_problems(f: SalesforceAuthFields) -> list[str]:
    """Each setting the chosen flow lacks, named; empty when the flow is complete (or unused)."""
    mode = salesforce_mode(f)
    if mode is None:
        return []
    explicit = f.auth is not None
    why = f"{P}AUTH={mode}" if explicit else f"the {mode} flow (inferred; set {P}AUTH to choose)"
    need: list[str] = []
    if mode == "jwt":
        need += [] if f.client_id else [f"{P}CLIENT_ID (the connected app's consumer key)"]
        need += [] if f.username else [f"{P}USERNAME (the integration user)"]
        if f.private_key_file is None:
            need.append(f"{P}PRIVATE_KEY_FILE (PEM key of the app's certificate)")
    elif mode == "refresh_token":
        need += [] if f.client_id else [f"{P}CLIENT_ID"]
        need += [] if f.refresh_token else [f"{P}REFRESH_TOKEN"]
    elif mode == "client_credentials":
        need += [] if f.client_id else [f"{P}CLIENT_ID"]
        need += [] if f.client_secret else [f"{P}CLIENT_SECRET"]
        if salesforce_login_url(f, mode) is None:
            need.append(f"{P}LOGIN_URL (your My Domain, https://<domain>.my.salesforce.com)")
    else:  # session
        need += [] if f.access_token else [f"{P}ACCESS_TOKEN"]
        need += [] if f.instance_url else [f"{P}INSTANCE_URL"]
    problems = [f"{why} needs {', '.join(need)}"] if need else []
    if (
        mode == "jwt"
        and f.private_key_file is not None
        and not f.private_key_file.expanduser().is_file()
    ):
        problems.append(f"{P}PRIVATE_KEY_FILE: no file at {f.private_key_file}")
    login = salesforce_login_url(f, mode)
    if mode == "client_credentials" and login and _host(login) in GENERIC_LOGIN_HOSTS:
        problems.append(
            f"{P}LOGIN_URL {login} does not serve the client credentials flow; "
            "use your My Domain (https://<domain>.my.salesforce.com)"
        )
    return problems


def jwt_audience(login_url: str) -> str:
    """The ``aud`` claim Salesforce expects for a JWT posted to ``login_url``.

    Salesforce accepts only ``https://login.salesforce.com``, ``https://test.salesforce.com`` or
    an Experience Cloud site URL (Help ``remoteaccess_oauth_jwt_flow.htm``), whatever host the
    request is posted to: a production My Domain means ``login``, a sandbox My Domain
    (``*.sandbox.my.salesforce.com``) or ``test.salesforce.com`` means ``test``; any other host
    (a site, or an emulator) is its own audience.
    """
    host = _host(login_url)
    if host == "test.salesforce.com" or host.endswith(".sandbox.my.salesforce.com"):
        return SANDBOX_LOGIN_URL
    if host == "login.salesforce.com" or host.endswith(".salesforce.com"):
        return PRODUCTION_LOGIN_URL
    return login_url.rstrip("/")


@dataclass(frozen=True)
class HubSpotAuthFields:
    auth: HubSpotAuth | None = None
    access_token: bool = False
    client_id: str | None = None
    client_secret: bool = False
    refresh_token: bool = False


def hubspot_mode(f: HubSpotAuthFields) -> HubSpotAuth | None:
    """``CRMSYNC_HUBSPOT_AUTH``, else ``oauth`` when app credentials are set, else private app."""
    if f.auth is not None:
        return f.auth
    if f.refresh_token or f.client_id or f.client_secret:
        return "oauth"
    if f.access_token:
        return "private_app"
    return None


def hubspot_problems(f: HubSpotAuthFields) -> list[str]:
    mode = hubspot_mode(f)
    if mode is None:
        return []
    explicit = f.auth is not None
    why = f"{H}AUTH={mode}" if explicit else f"the {mode} flow (inferred; set {H}AUTH to choose)"
    need: list[str] = []
    if mode == "oauth":
        need += [] if f.client_id else [f"{H}CLIENT_ID"]
        need += [] if f.client_secret else [f"{H}CLIENT_SECRET"]
        need += [] if f.refresh_token else [f"{H}REFRESH_TOKEN"]
    else:
        need += [] if f.access_token else [f"{H}ACCESS_TOKEN (the private app's token)"]
    return [f"{why} needs {', '.join(need)}"] if need else []
