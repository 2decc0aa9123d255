"""What-if: a site's plan under a changed cap or changed session needs, previewed before anything
is stored or sent, then applied through the same services an operator's edit goes through."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from csms.domain.needs import NeedsValues
from csms.domain.site_config import SiteConfigError, parse_schedule
from csms.services.site_state import LoadedSite


@dataclass(frozen=True, slots=True)
class NeedsEdit:
    """What the operator would say a session needs (None: as now)."""

    departure: datetime | None = None
    energy_wh: float | None = None


@dataclass(frozen=True, slots=True)
class WhatIf:
    """Changes to try: the base cap and its time-of-day schedule (None: as now), and needs per
    transaction (database id)."""

    capacity_kw: float | None = None
    capacity_schedule: list[dict[str, Any]] | None = None
    needs: Mapping[int, NeedsEdit] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        """Nothing would change."""
        return self.capacity_kw is None and self.capacity_schedule is None and not self.needs


def apply_what_if(site: LoadedSite, what: WhatIf) -> LoadedSite:
    """The site as it would be with ``what`` applied (pure). The needs edits enter as the
    operator's source, exactly as an applied edit would: an EV's own ISO 15118 values still win.
    Raises ``SiteConfigError`` naming the bad value; unknown transactions are ignored (the session
    may have ended since the form was drawn)."""
    config = site.config
    if what.capacity_kw is not None:
        if not what.capacity_kw >= 0 or what.capacity_kw == float("inf"):
            raise SiteConfigError(f"capacity_kw must be a number >= 0, not {what.capacity_kw!r}")
        config = dataclasses.replace(config, capacity_kw=what.capacity_kw)
    if what.capacity_schedule is not None:
        schedule = parse_schedule(
            what.capacity_schedule, "kw", field_name="capacity_schedule", minimum=0.0
        )
        config = dataclasses.replace(config, capacity_schedule=schedule)
    transactions = []
    for tx in site.transactions:
        edit = what.needs.get(tx.id)
        if edit is not None and (edit.departure is not None or edit.energy_wh is not None):
            if edit.energy_wh is not None and not edit.energy_wh >= 0:
                raise SiteConfigError(f"energy of session {tx.id} must be >= 0 kWh")
            old = tx.needs.get("operator", NeedsValues())
            new = dataclasses.replace(
                old,
                departure=edit.departure if edit.departure is not None else old.departure,
                energy_wh=edit.energy_wh if edit.energy_wh is not None else old.energy_wh,
            )
            transactions.append(dataclasses.replace(tx, needs={**tx.needs, "operator": new}))
        else:
            transactions.append(tx)
    return dataclasses.replace(site, config=config, transactions=tuple(transactions))
