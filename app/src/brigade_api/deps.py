"""FastAPI dependencies: application context, DB session, authentication, roles.

One rule keeps the service alive under overload: **a request holds a pooled
database connection only while it runs in a thread.** FastAPI runs every plain
``def`` dependency and endpoint in the shared thread pool, one hop each. If a
dependency checked a connection out in its hop and the endpoint used it in the
next, a burst larger than the pool would fill every thread with requests
waiting for a connection, while the requests holding the connections wait for a
thread: nothing moves until the pool timeout turns them into 503s, and the
backlog keeps it that way long after the burst (seen at 400 orders/s).

So the dependencies here do no I/O (they are ``async`` and run on the event
loop): ``get_db`` makes a session that connects lazily, and the role checks
verify the token's signature only. The account is re-read from the database by
``Caller.confirm()``, which ``Router`` calls in the endpoint's own thread, on
the request's own transaction, just before the endpoint; the same thread closes
the session afterwards (rolling back whatever was left open), so the
connection is back in the pool before the request gives its thread up. It also
saves a thread hop per request.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import get_dependant
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import bindparam, event, select
from sqlalchemy.orm import Session

from brigade_api.context import AppContext
from brigade_api.errors import ApiError, unauthorized
from brigade_api.models import ROLE_RANK, Role, User
from brigade_api.security import InvalidToken

log = logging.getLogger("brigade.auth")

bearer_scheme = HTTPBearer(
    auto_error=False,
    description="Token from POST /api/v1/auth/token (valid for 15 minutes by default).",
)


async def get_ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


Ctx = Annotated[AppContext, Depends(get_ctx)]


def _close_quietly(session: Session) -> None:
    try:
        session.close()
    except Exception:
        log.debug("session close failed", exc_info=True)


async def get_db(ctx: Ctx) -> Session:
    """The request's session. It connects lazily, on its first statement, in the
    endpoint's thread, and that thread closes it (``in_one_thread``); so it is a
    plain function, not a generator with a teardown of its own (which would also
    cost an exit stack per request). Only sync endpoints may use it (``Router``
    refuses an async one)."""
    return ctx.session_factory()


DB = Annotated[Session, Depends(get_db)]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]


def _token_user_id(ctx: AppContext, credentials: HTTPAuthorizationCredentials | None) -> int:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise unauthorized()
    try:
        return ctx.tokens.verify(credentials.credentials).user_id
    except InvalidToken as exc:
        raise unauthorized(f"invalid token: {exc}") from exc


# One indexed primary-key read, no ORM object: the role of an active account.
_ACTIVE_ROLE = select(User.role).where(User.id == bindparam("user_id"), User.is_active)


# Session.info key: the request's callers, which must be confirmed before it commits.
_CALLERS = "brigade.callers"


class Caller:
    """Who is calling: a valid token's account, confirmed in the endpoint's thread.

    The role and the account are always re-read (``confirm``): a deactivated
    account or a changed role takes effect at once, not when the token expires.
    ``Router`` confirms a caller just before its endpoint runs, with one query of
    its own. A *deferred* caller (``OrderTaker``) is confirmed by the endpoint
    instead, from the role its first statement read along with its other work
    (``confirm_role``), which saves the hot path a round trip. Either way the
    request's session refuses to commit, and the endpoint's answer is replaced
    by an error, while a caller is unconfirmed.
    """

    __slots__ = ("_account", "_minimum", "_session", "confirmed", "deferred", "id", "role")

    def __init__(
        self, user_id: int, minimum: Role | None, session: Session, *, deferred: bool = False
    ) -> None:
        self.id = user_id
        self.role: Role | None = None
        self.confirmed = False
        self.deferred = deferred
        self._minimum = minimum
        self._session = session
        self._account: User | None = None
        session.info.setdefault(_CALLERS, []).append(self)

    def confirm(self) -> None:
        """Read the account's role and check it (``confirm_role``)."""
        if self._minimum is None:
            account = self._session.get(User, self.id)
            active_role = account.role if account is not None and account.is_active else None
            self._account = account
        else:
            active_role = (
                self._session.connection()
                .execute(_ACTIVE_ROLE, {"user_id": self.id})
                .scalar_one_or_none()
            )
        self.confirm_role(active_role)

    def confirm_role(self, active_role: str | None) -> None:
        """401 unless the account is active (``active_role`` is its role, None if it
        is disabled or gone); 403 below the route's minimum role."""
        if active_role is None:
            raise unauthorized("account disabled or removed")
        self.role = Role(active_role)
        if self._minimum is not None and ROLE_RANK[self.role] < ROLE_RANK[self._minimum]:
            raise ApiError(403, "forbidden", f"requires the {self._minimum.value} role or higher")
        self.confirmed = True

    @property
    def account(self) -> User:
        """The caller's User row (routes that take ``CurrentUser``)."""
        if self._account is None:
            raise RuntimeError("the caller was not confirmed with its account")
        return self._account


class UnconfirmedCaller(RuntimeError):
    """An endpoint committed or answered without confirming a deferred caller."""


@event.listens_for(Session, "before_commit")
def _refuse_unconfirmed_commit(session: Session) -> None:
    if any(not caller.confirmed for caller in session.info.get(_CALLERS, ())):
        raise UnconfirmedCaller("refusing to commit: the caller's role was not confirmed")


def require_role(minimum: Role | None, *, deferred: bool = False) -> Callable[..., Any]:
    async def check(ctx: Ctx, db: DB, credentials: Credentials) -> Caller:
        return Caller(_token_user_id(ctx, credentials), minimum, db, deferred=deferred)

    check.__name__ = f"require_{minimum.value if minimum else 'login'}"
    return check


CurrentUser = Annotated[Caller, Depends(require_role(None))]
StaffUser = Annotated[Caller, Depends(require_role(Role.staff))]
ManagerUser = Annotated[Caller, Depends(require_role(Role.manager))]
AdminUser = Annotated[Caller, Depends(require_role(Role.admin))]
# Staff or above, confirmed by the endpoint from its own first statement.
OrderTaker = Annotated[Caller, Depends(require_role(Role.staff, deferred=True))]


def in_one_thread(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a sync endpoint: confirm its callers first, close its sessions after,
    all in the thread it runs in. Async endpoints are returned unchanged."""
    if inspect.iscoroutinefunction(endpoint):
        return endpoint

    @functools.wraps(endpoint)
    def run(*args: Any, **kwargs: Any) -> Any:
        sessions: dict[int, Session] = {}
        callers: list[Caller] = []
        try:
            for value in kwargs.values():
                if isinstance(value, Session):
                    sessions[id(value)] = value
                elif isinstance(value, Caller):
                    sessions[id(value._session)] = value._session
                    callers.append(value)
                    if not value.deferred:
                        value.confirm()
            result = endpoint(*args, **kwargs)
            if not all(caller.confirmed for caller in callers):
                raise UnconfirmedCaller(f"{endpoint.__name__} did not confirm its caller")
            return result
        finally:
            for session in sessions.values():
                _close_quietly(session)

    return run


def _uses_db(dependant: Dependant) -> bool:
    return dependant.call is get_db or any(_uses_db(d) for d in dependant.dependencies)


class Router(APIRouter):
    """An APIRouter whose sync endpoints run as ``in_one_thread`` describes, and
    that refuses an async endpoint needing the database (nothing would close its
    session in a thread of its own)."""

    def add_api_route(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        if inspect.iscoroutinefunction(endpoint) and _uses_db(
            get_dependant(path=path, call=endpoint)
        ):
            raise TypeError(f"{path}: an async endpoint cannot use the database session")
        super().add_api_route(path, in_one_thread(endpoint), **kwargs)
