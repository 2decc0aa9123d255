"""``python -m csms`` / ``csms``: run the central system (OCPP endpoint + HTTP API).

Settings come from the environment (``CSMS_…``, see csms.settings) and these flags, which win.
"""

from __future__ import annotations

import argparse
import socket
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from csms.db.engine import DatabaseUrlError, async_url
from csms.settings import Settings


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="csms", description="EV smart-charging central system (OCPP 1.6J and 2.0.1)."
    )
    p.add_argument(
        "--host", help="address for both endpoints (default: OCPP 0.0.0.0, HTTP 127.0.0.1)"
    )
    p.add_argument("--ocpp-port", type=int, help="OCPP websocket port (default 9000)")
    p.add_argument("--http-port", type=int, help="HTTP API port (default 8000)")
    p.add_argument(
        "--database-url",
        help="sqlite:///path.db (default sqlite:///csms.db) or postgresql://user@host/db",
    )
    p.add_argument(
        "--allow-unknown-chargers",
        action="store_true",
        default=None,
        help="let unregistered chargers connect and self-register (off by default)",
    )
    p.add_argument(
        "--accept-unknown-id-tokens",
        action="store_true",
        default=None,
        help="accept any id token (free charging; off by default)",
    )
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--log-format", choices=["text", "json"])
    return p


def build_settings(argv: Sequence[str] | None = None) -> Settings:
    """Settings from the environment, overridden by command-line flags (all validated)."""
    args = _parser().parse_args(argv)
    env = Settings().model_dump()
    flags = {
        "ocpp": {
            "host": args.host,
            "port": args.ocpp_port,
            "allow_unknown_chargers": args.allow_unknown_chargers,
            "accept_unknown_id_tokens": args.accept_unknown_id_tokens,
        },
        "web": {"host": args.host, "port": args.http_port},
        "database": {"url": args.database_url},
        "log_level": args.log_level,
        "log_format": args.log_format,
    }
    for key, value in flags.items():
        if isinstance(value, dict):
            env[key].update({k: v for k, v in value.items() if v is not None})
        elif value is not None:
            env[key] = value
    return Settings.model_validate(env)


def _port_problem(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on, or None (checked up front for a clear message)."""
    if port == 0:
        return None
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    try:
        settings = build_settings(argv)
        async_url(settings.database.url)  # fail early, with a clear message
    except (ValidationError, DatabaseUrlError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for flag, host, port in (
        ("--ocpp-port", settings.ocpp.host, settings.ocpp.port),
        ("--http-port", settings.web.host, settings.web.port),
    ):
        problem = _port_problem(host, port)
        if problem:
            print(
                f"error: cannot listen on {host}:{port} ({problem}); choose another {flag}",
                file=sys.stderr,
            )
            return 2
    if settings.cluster.enabled:
        from csms.cluster.node import redis_problem

        problem = redis_problem(settings.cluster)
        if problem:
            print(
                f"error: {problem}; start Redis or fix CSMS_CLUSTER__REDIS_URL (unset it for "
                "single-process mode)",
                file=sys.stderr,
            )
            return 2
    import uvicorn

    from csms import logs
    from web.app import create_app

    logs.setup(settings.log_level, settings.log_format)
    app = create_app(settings)
    # uvicorn handles SIGINT/SIGTERM: the lifespan then closes every charger connection and
    # flushes the message log before the process exits.
    uvicorn.run(
        app,
        host=settings.web.host,
        port=settings.web.port,
        log_config=None,
        lifespan="on",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
