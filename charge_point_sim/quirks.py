"""Charger quirks seen in the field (``../shared/OCPP_SMART_CHARGING.md``), configurable per charger.

A :class:`Quirks` value is part of a charger's configuration (the site file's ``quirks`` object,
same field names). The default is a well-behaved, strict charger.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from charge_point_sim.charger_model import Capabilities
from charge_point_sim.errors import InvalidModelError
from charge_point_sim.profiles import RateUnit


@dataclass(frozen=True, slots=True)
class Quirks:
    """How a charger misbehaves (all off by default). Durations are simulated seconds.

    ``only_amps``: accepts only profiles in A (ChargingScheduleAllowedChargingRateUnit =
    Current / SmartChargingCtrlr.RateUnit = A); W profiles are rejected.
    ``max_stack_level``: the highest stack level accepted (e.g. 3 on some ABB); None keeps the
    charger's own.
    ``max_periods``: the most schedule periods accepted per profile; None keeps the charger's own.
    ``ignores_profiles``: answers Accepted (and reports the profile in GetCompositeSchedule and
    GetChargingProfiles) but keeps drawing its maximum, like a charger whose firmware does not
    apply them. Only the meter values show it.
    ``rejects_composite``: answers Rejected to every GetCompositeSchedule.
    ``answer_delay_s``: waits this long before answering any request of the central system
    (while waiting it processes nothing else, as a busy charger does).
    ``drop_every_s``: closes its connection this often and reconnects (transaction messages are
    queued / resent, see :mod:`charge_point_sim.link`).
    ``reboot_every_s``: reboots this often: running sessions stop (reason Reboot) and it sends
    BootNotification again.
    """

    only_amps: bool = False
    max_stack_level: int | None = None
    max_periods: int | None = None
    ignores_profiles: bool = False
    rejects_composite: bool = False
    answer_delay_s: float = 0.0
    drop_every_s: float | None = None
    reboot_every_s: float | None = None

    def __post_init__(self) -> None:
        if self.max_stack_level is not None and self.max_stack_level < 0:
            raise InvalidModelError("max_stack_level must be >= 0")
        if self.max_periods is not None and self.max_periods < 1:
            raise InvalidModelError("max_periods must be >= 1")
        if not (math.isfinite(self.answer_delay_s) and self.answer_delay_s >= 0):
            raise InvalidModelError("answer_delay_s must be >= 0")
        for name in ("drop_every_s", "reboot_every_s"):
            v = getattr(self, name)
            if v is not None and not (math.isfinite(v) and v > 0):
                raise InvalidModelError(f"{name} must be > 0")

    def capabilities(self, base: Capabilities) -> Capabilities:
        """``base`` narrowed by the quirks that change what the charger accepts."""
        caps = base
        if self.only_amps:
            caps = replace(caps, allowed_units=frozenset({RateUnit.A}))
        if self.max_stack_level is not None:
            caps = replace(caps, max_stack_level=self.max_stack_level)
        if self.max_periods is not None:
            caps = replace(caps, max_periods=self.max_periods)
        return caps

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Quirks:
        """From a site file's ``quirks`` object. Raises InvalidModelError on unknown keys/types."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise InvalidModelError(f"unknown quirks: {', '.join(unknown)}")
        values: dict[str, Any] = {}
        for key, raw in data.items():
            value = raw
            default = known[key].default
            if isinstance(default, bool):
                if not isinstance(raw, bool):
                    raise InvalidModelError(f"quirk {key} must be true or false")
            elif raw is not None and (isinstance(raw, bool) or not isinstance(raw, int | float)):
                raise InvalidModelError(f"quirk {key} must be a number")
            if key in ("max_stack_level", "max_periods") and raw is not None:
                if not float(raw).is_integer():
                    raise InvalidModelError(f"quirk {key} must be an integer")
                value = int(raw)
            elif key == "answer_delay_s":
                value = float(raw)
            values[key] = value
        return cls(**values)
