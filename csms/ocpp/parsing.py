"""Tolerant parsing of values chargers send: be strict in what we send, tolerant in what we accept."""

from __future__ import annotations

import math
from datetime import UTC, datetime


def parse_time(value: object, default: datetime) -> datetime:
    """An OCPP date-time (UTC on the wire) as an aware datetime; ``default`` if unreadable."""
    if not isinstance(value, str):
        return default
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: e.g. year 1 at +01:00 is year 0 in UTC
        return default


def parse_float(value: object) -> float | None:
    """A finite number from a number or numeric string, else None."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def ocpp_time(value: datetime) -> str:
    """UTC, ISO 8601 with Z, millisecond precision (what chargers parse most reliably)."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
