"""What a session needs, merged from its sources with a fixed precedence. Pure.

Precedence, field by field (issue 5): the EV itself (ISO 15118 NotifyEVChargingNeeds, source
``ev``) > the driver or operator (API / console, source ``operator``) > the site's defaults
(source ``site_default``). A source that leaves a field empty does not hide a lower one: an EV that
sends only its departure time still gets the energy the driver typed in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal

Source = Literal["ev", "operator", "site_default"]
PRECEDENCE: Final[tuple[Source, ...]] = ("ev", "operator")


@dataclass(frozen=True, slots=True)
class NeedsValues:
    """What one source says; any field may be unknown."""

    departure: datetime | None = None
    energy_wh: float | None = None
    max_power_w: float | None = None
    min_power_w: float | None = None


@dataclass(frozen=True, slots=True)
class Needs:
    """The merged needs of a session, and where each field came from."""

    departure: datetime
    energy_wh: float
    max_power_w: float | None
    min_power_w: float | None
    departure_source: Source
    energy_source: Source
    power_source: Source | None


def resolve_needs(
    inputs: Mapping[str, NeedsValues],
    *,
    started_at: datetime,
    default_dwell: timedelta,
    default_energy_wh: float,
) -> Needs:
    """Merge the sources' values field by field (``PRECEDENCE``), the site's defaults last.

    The default departure is ``started_at + default_dwell``.
    """
    departure: tuple[datetime, Source] = (started_at + default_dwell, "site_default")
    energy: tuple[float, Source] = (default_energy_wh, "site_default")
    max_power: tuple[float | None, Source | None] = (None, None)
    min_power: float | None = None
    for source in reversed(PRECEDENCE):  # lowest first, so higher ones overwrite
        values = inputs.get(source)
        if values is None:
            continue
        if values.departure is not None:
            departure = (values.departure, source)
        if values.energy_wh is not None and values.energy_wh >= 0:
            energy = (values.energy_wh, source)
        if values.max_power_w is not None and values.max_power_w >= 0:
            max_power = (values.max_power_w, source)
        if values.min_power_w is not None and values.min_power_w >= 0:
            min_power = values.min_power_w
    return Needs(
        departure=departure[0],
        energy_wh=energy[0],
        max_power_w=max_power[0],
        min_power_w=min_power,
        departure_source=departure[1],
        energy_source=energy[1],
        power_source=max_power[1],
    )


def energy_still_needed_wh(needs: Needs, delivered_wh: float) -> float:
    """The session's energy need minus what the meter says was delivered (never below 0)."""
    return max(0.0, needs.energy_wh - max(0.0, delivered_wh))
