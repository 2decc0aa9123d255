"""``python -m csms.accounts``: add console users and API tokens to the central system's database
(settings from the environment, ``CSMS_DATABASE__URL``).

    python -m csms.accounts user alice --role operator      # asks for the password
    python -m csms.accounts token grafana --role viewer      # prints the token once
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Sequence

from csms.db.engine import create_engine, session_factory
from csms.db.migrate import upgrade_to_head
from csms.domain.clock import SystemClock
from csms.services.users import ROLES, UserError, UserService
from csms.settings import Settings


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m csms.accounts", description=__doc__.split("\n")[0])
    p.add_argument("--database-url", help="default: CSMS_DATABASE__URL or sqlite:///csms.db")
    sub = p.add_subparsers(dest="what", required=True)
    user = sub.add_parser("user", help="add a console user")
    user.add_argument("name")
    user.add_argument("--role", choices=ROLES, default="viewer")
    user.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    token = sub.add_parser("token", help="create an API token (printed once)")
    token.add_argument("name")
    token.add_argument("--role", choices=ROLES, default="viewer")
    return p


async def _run(args: argparse.Namespace, password: str | None) -> str:
    settings = Settings()
    engine = create_engine(args.database_url or settings.database.url)
    try:
        await upgrade_to_head(engine)
        users = UserService(session_factory(engine), SystemClock())
        if args.what == "user":
            assert password is not None
            await users.create(args.name, password, args.role)
            return f"user {args.name!r} added ({args.role})"
        return await users.create_token(args.name, args.role)
    finally:
        await engine.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: 0 done, 2 bad input."""
    args = _parser().parse_args(argv)
    password = None
    if args.what == "user":
        password = (
            sys.stdin.readline().rstrip("\n")
            if args.password_stdin
            else getpass.getpass(f"password for {args.name}: ")
        )
    try:
        print(asyncio.run(_run(args, password)))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
