"""Console users (viewer or operator, scrypt password hashes) and API tokens for machine clients
(same roles; only a SHA-256 of each token is stored)."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from dataclasses import dataclass
from typing import Final, Literal

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from csms.db.models import ApiToken, User
from csms.domain.clock import Clock
from csms.services.passwords import hash_password, verify_password

Role = Literal["viewer", "operator"]
ROLES: Final = ("viewer", "operator")
MIN_PASSWORD: Final = 10
TOKEN_PREFIX: Final = "csms_"
_DUMMY_HASH: Final = hash_password(secrets.token_urlsafe(16))  # equal work for unknown users


class UserError(ValueError):
    """A user or token that cannot be created as asked; the message says why."""


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is asking and in which role."""

    name: str
    role: Role


def _role(role: str) -> Role:
    if role == "operator":
        return "operator"
    if role == "viewer":
        return "viewer"
    raise UserError(f"role {role!r} is not one of {', '.join(ROLES)}")


def token_hash(secret: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(secret.encode()).hexdigest()


class UserService:
    """Users and API tokens."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock

    async def count(self) -> int:
        """How many users exist."""
        async with self._sessions() as s:
            return int((await s.exec(select(func.count()).select_from(User))).one())

    async def create(self, username: str, password: str, role: str) -> User:
        """Add a user; ``UserError`` for a taken name, a bad role or a short password."""
        username = username.strip()
        if not username or len(username) > 64:
            raise UserError("a username has 1 to 64 characters")
        if len(password) < MIN_PASSWORD:
            raise UserError(f"a password has at least {MIN_PASSWORD} characters")
        user = User(
            username=username,
            password_hash=hash_password(password),
            role=_role(role),
            created_at=self._clock.now(),
        )
        try:
            async with self._sessions.begin() as s:
                s.add(user)
        except IntegrityError:
            raise UserError(f"user {username!r} exists") from None
        return user

    async def first_run_admin(self, username: str = "admin") -> tuple[str, str] | None:
        """When there is no user yet, create an operator with a random password and return
        (username, password) — shown once; None when users exist."""
        if await self.count() > 0:
            return None
        password = secrets.token_urlsafe(12)
        try:
            await self.create(username, password, "operator")
        except UserError:
            return None  # another cluster worker starting at the same time created it first
        return username, password

    async def authenticate(self, username: str, password: str) -> Identity | None:
        """The user's identity when the password matches (and the user is enabled)."""
        async with self._sessions() as s:
            user = (await s.exec(select(User).where(User.username == username))).first()
        # scrypt takes tens of milliseconds: off the event loop, so sign-ins do not stall the
        # chargers; an unknown user costs the same as a wrong password
        known = user is not None and not user.disabled
        stored = user.password_hash if user is not None and known else _DUMMY_HASH
        if not await asyncio.to_thread(verify_password, password, stored) or not known:
            return None
        async with self._sessions.begin() as s:
            user = (await s.exec(select(User).where(User.username == username))).first()
            if user is None or user.disabled:
                return None
            user.last_login = self._clock.now()
            s.add(user)
            return Identity(user.username, _role(user.role))

    async def identity(self, username: str) -> Identity | None:
        """A signed-in user's current role (None once removed or disabled)."""
        async with self._sessions() as s:
            user = (await s.exec(select(User).where(User.username == username))).first()
        if user is None or user.disabled:
            return None
        return Identity(user.username, _role(user.role))

    async def create_token(self, name: str, role: str) -> str:
        """A new API token (returned once; only its hash is kept)."""
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        async with self._sessions.begin() as s:
            s.add(
                ApiToken(
                    name=name[:64],
                    token_hash=token_hash(secret),
                    role=_role(role),
                    created_at=self._clock.now(),
                )
            )
        return secret

    async def token_identity(self, secret: str) -> Identity | None:
        """Who holds this token (None if unknown or revoked)."""
        async with self._sessions() as s:
            row = (
                await s.exec(select(ApiToken).where(ApiToken.token_hash == token_hash(secret)))
            ).first()
        if row is None or row.revoked:
            return None
        return Identity(f"token:{row.name}", _role(row.role))

    async def revoke_token(self, name: str) -> int:
        """Revoke every token with this name; returns how many."""
        async with self._sessions.begin() as s:
            rows = (await s.exec(select(ApiToken).where(ApiToken.name == name))).all()
            for row in rows:
                row.revoked = True
                s.add(row)
        return len(rows)
