"""``python -m csms.register CP-001``: register a charger and its password (security profile 1).

Works next to a running central system: it only opens the database (migrating it if needed).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from csms.db.engine import DatabaseUrlError, create_engine, session_factory
from csms.db.migrate import upgrade_to_head
from csms.domain.clock import SystemClock
from csms.domain.site_config import SiteConfigError
from csms.services.notifications import Notifier
from csms.services.sites import SiteService
from csms.services.stations import StationService
from csms.settings import Settings

MIN_PASSWORD = 16  # OCPP security whitepaper: basic-auth passwords of 16 to 40 characters


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m csms.register", description="Register a charger (or change its password)."
    )
    p.add_argument("charge_point_id", help="the id the charger uses in ws://…/ocpp/{id}")
    p.add_argument(
        "--password", help="basic-auth password (default: asked, or none with --no-password)"
    )
    p.add_argument("--no-password", action="store_true", help="no authentication (profile 0)")
    p.add_argument("--site", help="site id (created if new)")
    p.add_argument(
        "--site-cap-kw",
        type=float,
        help="set the site's transformer cap (kW); a new site has 0 kW until it is set",
    )
    p.add_argument("--max-power-kw", type=float, help="max power per connector/EVSE")
    p.add_argument("--phases", type=int, default=3, choices=(1, 2, 3))
    p.add_argument("--voltage", type=float, default=230.0, help="phase voltage (default 230)")
    p.add_argument("--database-url", help="as for python -m csms (default from CSMS_DATABASE__URL)")
    return p


async def _register(
    settings: Settings, args: argparse.Namespace, password: str | None
) -> float | None:
    """Register; returns the site's cap (None without a site)."""
    engine = create_engine(settings.database.url)
    try:
        await upgrade_to_head(engine)
        sessions = session_factory(engine)
        service = StationService(sessions, SystemClock())
        await service.register_charge_point(
            args.charge_point_id,
            password=password,
            site_id=args.site,
            max_power_w=None if args.max_power_kw is None else args.max_power_kw * 1000,
            phases=args.phases,
            voltage_v=args.voltage,
        )
        if args.site is None:
            return None
        sites = SiteService(sessions, SystemClock(), Notifier())
        if args.site_cap_kw is not None:
            await sites.set_capacity(args.site, args.site_cap_kw, None)
        site = await sites.get(args.site)
        return None if site is None else site.capacity_kw
    finally:
        await engine.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; exit 2 on bad input."""
    args = _parser().parse_args(argv)
    try:
        settings = Settings()
        if args.database_url:
            settings = Settings.model_validate(
                {
                    **settings.model_dump(),
                    "database": {**settings.database.model_dump(), "url": args.database_url},
                }
            )
    except (ValidationError, DatabaseUrlError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    password: str | None = None
    if not args.no_password:
        password = args.password
        if password is None:
            if not sys.stdin.isatty():
                print("error: give --password, or --no-password", file=sys.stderr)
                return 2
            password = getpass.getpass(f"password for {args.charge_point_id}: ")
        if len(password) < MIN_PASSWORD:
            print(f"error: use a password of at least {MIN_PASSWORD} characters", file=sys.stderr)
            return 2
    if args.site_cap_kw is not None and (args.site is None or not args.site_cap_kw >= 0):
        print("error: --site-cap-kw needs --site and a number >= 0", file=sys.stderr)
        return 2
    try:
        cap = asyncio.run(_register(settings, args, password))
    except (DatabaseUrlError, SiteConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"registered {args.charge_point_id}" + (" with a password" if password else ""))
    if cap is not None and cap <= 0:
        print(
            f"note: site {args.site} has a cap of 0 kW, so its chargers get 0 W: set it with "
            f"--site-cap-kw or PUT /api/sites/{args.site}/capacity",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
