"""Who is calling: agents and admins, by bearer token (API clients) or session cookie (the console pages).

Cookie sessions carry a CSRF token (double submit): every unsafe request authenticated by the cookie must
echo the readable `kefu_csrf` cookie in the `X-CSRF-Token` header. Bearer requests need no CSRF token,
since a browser never attaches a bearer header on its own.
"""

import hmac
import secrets
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request, Response

from common.web import DbSession
from gateway.agent import service
from gateway.agent.models import Agent, Role

SESSION_COOKIE = "kefu_session"
CSRF_COOKIE = "kefu_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def set_session_cookies(response: Response, request: Request, token: str) -> str:
    """Put the session token in an HttpOnly cookie and a fresh CSRF token beside it; returns the CSRF token."""
    csrf = secrets.token_urlsafe(24)
    secure = request.url.scheme == "https"
    max_age = int(service.SESSION_TTL.total_seconds())
    response.set_cookie(
        SESSION_COOKIE, token, max_age=max_age, httponly=True, secure=secure, samesite="strict", path="/"
    )
    # Readable by the page's script on purpose: it echoes it in the header (double submit).
    response.set_cookie(CSRF_COOKIE, csrf, max_age=max_age, httponly=False, secure=secure, samesite="strict", path="/")
    return csrf


def clear_session_cookies(response: Response) -> None:
    """Forget the console session in the browser."""
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")


def session_token(request: Request, authorization: str | None) -> str | None:
    """The caller's session token, from the bearer header first, else the cookie."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() == "bearer" and token:
        return token
    return request.cookies.get(SESSION_COOKIE)


def current_agent(
    request: Request,
    db_session: DbSession,
    authorization: Annotated[str | None, Header()] = None,
    x_csrf_token: Annotated[str | None, Header()] = None,
) -> Agent:
    """The agent behind the bearer token or session cookie, or 401; cookie writes without CSRF get 403."""
    scheme, _, bearer = (authorization or "").partition(" ")
    by_cookie = not (scheme.lower() == "bearer" and bearer)
    token = request.cookies.get(SESSION_COOKIE) if by_cookie else bearer
    agent = service.get_by_token(db_session=db_session, token=token) if token else None
    if agent is None:
        raise HTTPException(status_code=401, detail="agent login required", headers={"WWW-Authenticate": "Bearer"})
    if by_cookie and request.method not in SAFE_METHODS:
        expected = request.cookies.get(CSRF_COOKIE) or ""
        if not expected or not hmac.compare_digest(expected, x_csrf_token or ""):
            raise HTTPException(status_code=403, detail="missing or wrong CSRF token")
    return agent


CurrentAgent = Annotated[Agent, Depends(current_agent)]


def current_admin(agent: CurrentAgent) -> Agent:
    """An agent with the admin role, or 403."""
    if agent.role != Role.ADMIN.value:
        raise HTTPException(status_code=403, detail="admin role required")
    return agent


CurrentAdmin = Annotated[Agent, Depends(current_admin)]
