"""Logging setup: every line carries the charger id, OCPP version and transaction when known."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

CONTEXT_FIELDS = ("charge_point", "ocpp_version", "transaction")


class TextFormatter(logging.Formatter):
    """``time level logger [cp=… v=… tx=…] message``."""

    def format(self, record: logging.LogRecord) -> str:
        """Format one record."""
        base = super().format(record)
        ctx = " ".join(
            f"{name}={getattr(record, name)}"
            for name in CONTEXT_FIELDS
            if getattr(record, name, None) is not None
        )
        return f"{base} [{ctx}]" if ctx else base


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        """Format one record."""
        out = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup(level: str, fmt: str) -> None:
    """Configure the root logger (called once by the entry point)."""
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The ocpp package logs every frame at INFO; our message log already keeps them.
    logging.getLogger("ocpp").setLevel(max(logging.WARNING, root.level))
    # aiosqlite logs every statement with its parameters at DEBUG: password hashes and whatever
    # was typed into a sign-in form would reach the log (secrets are never logged).
    logging.getLogger("aiosqlite").setLevel(max(logging.INFO, root.level))
