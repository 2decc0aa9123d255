"""A pure model of a charger's smart-charging state: hardware, installed profiles, composite schedule.

Everything here is immutable: installing, clearing or ending a transaction returns a new
:class:`ChargerState`. The OCPP 1.6 and 2.0.1 shells map wire messages onto these calls; 1.6
"connector" and 2.0.1 "EVSE" are the same thing here (``connector_id``, 0 = the whole charger).

The composite schedule computed from this state lives in :mod:`charge_point_sim.composite`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from charge_point_sim.errors import InvalidModelError
from charge_point_sim.profiles import (
    DEFAULT_NUMBER_PHASES,
    ChargingProfile,
    Kind,
    Purpose,
    RateUnit,
    finite,
    is_aware,
)

DEFAULT_VOLTAGE_V = 230.0


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a (strict) charger accepts: the 1.6 configuration keys (3.13.5) / 2.0.1 device model.

    ``max_stack_level``: ChargeProfileMaxStackLevel / SmartChargingCtrlr.ProfileStackLevel.
    ``max_periods``: ChargingScheduleMaxPeriods / SmartChargingCtrlr.PeriodsPerSchedule.
    ``allowed_units``: ChargingScheduleAllowedChargingRateUnit / SmartChargingCtrlr.RateUnit.
    ``max_profiles``: MaxChargingProfilesInstalled / SmartChargingCtrlr.Entries (None: no limit).
    """

    supports_profiles: bool = True
    max_stack_level: int = 8
    max_periods: int = 24
    allowed_units: frozenset[RateUnit] = frozenset({RateUnit.A, RateUnit.W})
    max_profiles: int | None = None


@dataclass(frozen=True, slots=True)
class ConnectorSpec:
    """One connector (1.6) or EVSE (2.0.1): the most it can deliver and on how many phases."""

    max_power_w: float
    phases: int = DEFAULT_NUMBER_PHASES


@dataclass(frozen=True, slots=True)
class ChargerSpec:
    """A charger's hardware: connectors 1..n, line-to-neutral voltage, station max and capabilities.

    ``max_power_w`` is the station's own limit (its grid connection); None means the sum of its
    connectors.
    """

    connectors: tuple[ConnectorSpec, ...]
    voltage_v: float = DEFAULT_VOLTAGE_V
    max_power_w: float | None = None
    capabilities: Capabilities = field(default_factory=Capabilities)

    def __post_init__(self) -> None:
        if not self.connectors:
            raise InvalidModelError("a charger needs at least one connector")
        for i, c in enumerate(self.connectors, start=1):
            if not (finite(c.max_power_w) and c.max_power_w > 0):
                raise InvalidModelError(f"connector {i}: max_power_w must be > 0")
            if c.phases not in (1, 2, 3):
                raise InvalidModelError(f"connector {i}: phases must be 1, 2 or 3")
        if not (finite(self.voltage_v) and self.voltage_v > 0):
            raise InvalidModelError("voltage_v must be > 0")
        if self.max_power_w is not None and not (finite(self.max_power_w) and self.max_power_w > 0):
            raise InvalidModelError("max_power_w must be > 0 when given")

    @classmethod
    def uniform(
        cls,
        count: int,
        max_power_w: float,
        *,
        phases: int = DEFAULT_NUMBER_PHASES,
        voltage_v: float = DEFAULT_VOLTAGE_V,
        station_max_power_w: float | None = None,
        capabilities: Capabilities | None = None,
    ) -> ChargerSpec:
        """A charger with ``count`` identical connectors."""
        return cls(
            connectors=tuple(ConnectorSpec(max_power_w, phases) for _ in range(count)),
            voltage_v=voltage_v,
            max_power_w=station_max_power_w,
            capabilities=capabilities or Capabilities(),
        )

    @property
    def station_max_power_w(self) -> float:
        """The most the whole charger can draw."""
        if self.max_power_w is not None:
            return self.max_power_w
        return sum(c.max_power_w for c in self.connectors)

    def connector(self, connector_id: int) -> ConnectorSpec:
        """The spec of connector ``connector_id`` (1-based). Raises InvalidModelError."""
        if not 1 <= connector_id <= len(self.connectors):
            raise InvalidModelError(
                f"connector {connector_id} does not exist (1..{len(self.connectors)})"
            )
        return self.connectors[connector_id - 1]


@dataclass(frozen=True, slots=True)
class Transaction:
    """A running transaction on a connector."""

    connector_id: int
    transaction_id: str
    started_at: datetime


@dataclass(frozen=True, slots=True)
class InstalledProfile:
    """A profile installed on a connector (0 = the whole charger)."""

    connector_id: int
    profile: ChargingProfile


@dataclass(frozen=True, slots=True)
class ChargerState:
    """Installed profiles and running transactions. Every change returns a new state."""

    profiles: tuple[InstalledProfile, ...] = ()
    transactions: tuple[Transaction, ...] = ()

    def transaction_on(self, connector_id: int) -> Transaction | None:
        """The transaction running on ``connector_id``, if any."""
        return next((t for t in self.transactions if t.connector_id == connector_id), None)

    def profiles_on(
        self, connector_id: int, purpose: Purpose | None = None
    ) -> tuple[ChargingProfile, ...]:
        """Profiles installed on exactly ``connector_id`` (optionally of one purpose)."""
        return tuple(
            ip.profile
            for ip in self.profiles
            if ip.connector_id == connector_id
            and (purpose is None or ip.profile.purpose is purpose)
        )

    def start_transaction(
        self, connector_id: int, transaction_id: str, started_at: datetime
    ) -> ChargerState:
        """Record a transaction start. Raises InvalidModelError if one already runs there."""
        if not is_aware(started_at):
            raise InvalidModelError("started_at must be timezone-aware")
        if self.transaction_on(connector_id) is not None:
            raise InvalidModelError(f"connector {connector_id} already has a transaction")
        tx = Transaction(connector_id, transaction_id, started_at)
        return replace(self, transactions=(*self.transactions, tx))

    def end_transaction(self, connector_id: int) -> ChargerState:
        """End the transaction on ``connector_id`` and delete its TxProfiles.

        OCPP 1.6 3.13.1: a TxProfile applies "for the duration of the current transaction only".
        """
        return ChargerState(
            profiles=tuple(
                ip
                for ip in self.profiles
                if not (ip.connector_id == connector_id and ip.profile.purpose is Purpose.TX)
            ),
            transactions=tuple(t for t in self.transactions if t.connector_id != connector_id),
        )

    def rename_transaction(self, old: str, new: str) -> ChargerState:
        """Give transaction ``old`` (and the TxProfiles bound to it) the id ``new``: a 1.6
        charger that started offline learns the central system's id later."""
        return ChargerState(
            profiles=tuple(
                replace(ip, profile=replace(ip.profile, transaction_id=new))
                if ip.profile.transaction_id == old
                else ip
                for ip in self.profiles
            ),
            transactions=tuple(
                replace(t, transaction_id=new) if t.transaction_id == old else t
                for t in self.transactions
            ),
        )

    def install(self, connector_id: int, profile: ChargingProfile) -> ChargerState:
        """Install ``profile`` (already validated), replacing what it replaces.

        OCPP 1.6 5.16 / 2.0.1 K01.FR.05: a profile replaces an installed one with the same id
        (wherever it is); 1.6 3.13.2: also one with the same stackLevel and purpose, here on the same
        connector. (2.0.1 K01.FR.39 would reject a same-level TxProfile under another id instead.)
        """
        kept = tuple(ip for ip in self.profiles if not _replaced_by(ip, connector_id, profile))
        return replace(self, profiles=(*kept, InstalledProfile(connector_id, profile)))

    def clear(
        self,
        *,
        profile_id: int | None = None,
        connector_id: int | None = None,
        purpose: Purpose | None = None,
        stack_level: int | None = None,
    ) -> tuple[ChargerState, int]:
        """Clear matching profiles; return the new state and how many were removed.

        OCPP 1.6 5.5: with an id, only that profile is cleared and the other criteria are ignored;
        otherwise every given criterion must match (connector 0 means profiles installed on 0, not
        all connectors) and no criterion at all clears everything.
        """

        def matches(ip: InstalledProfile) -> bool:
            if profile_id is not None:
                return ip.profile.id == profile_id
            return (
                (connector_id is None or ip.connector_id == connector_id)
                and (purpose is None or ip.profile.purpose is purpose)
                and (stack_level is None or ip.profile.stack_level == stack_level)
            )

        kept = tuple(ip for ip in self.profiles if not matches(ip))
        return replace(self, profiles=kept), len(self.profiles) - len(kept)


def _replaced_by(ip: InstalledProfile, connector_id: int, new: ChargingProfile) -> bool:
    old = ip.profile
    return old.id == new.id or (
        ip.connector_id == connector_id
        and old.stack_level == new.stack_level
        and old.purpose is new.purpose
    )


def validate_profile(
    spec: ChargerSpec, state: ChargerState, connector_id: int, profile: ChargingProfile
) -> str | None:
    """Check an incoming profile as a strict charger would: None to accept, else the reason."""
    caps = spec.capabilities
    sched = profile.schedule
    if not caps.supports_profiles:
        return "this charger does not support smart charging profiles"
    if not 0 <= connector_id <= len(spec.connectors):  # 2.0.1 K01.FR.28
        return f"connector {connector_id} does not exist (0..{len(spec.connectors)})"
    # 1.6 3.13.1 / 2.0.1 K01.FR.03: the station maximum applies to the whole charger only.
    if profile.purpose is Purpose.CHARGE_POINT_MAX and connector_id != 0:
        return "ChargePointMaxProfile can only be set on connector 0"
    if profile.purpose is Purpose.TX:
        # 1.6 3.13.1 / 2.0.1 K01.FR.16, FR.09, FR.33: a TxProfile needs a connector > 0 with a
        # running transaction, and the transaction it names must be that one.
        if connector_id == 0:
            return "TxProfile cannot be set on connector 0"
        tx = state.transaction_on(connector_id)
        if tx is None:
            return f"TxProfile needs a running transaction on connector {connector_id}"
        if profile.transaction_id is not None and profile.transaction_id != tx.transaction_id:
            return (
                f"TxProfile is for transaction {profile.transaction_id} but connector "
                f"{connector_id} runs transaction {tx.transaction_id}"
            )
    if not 0 <= profile.stack_level <= caps.max_stack_level:
        return f"stackLevel {profile.stack_level} is outside 0..{caps.max_stack_level}"
    # 2.0.1 K01.FR.40 (1.6 ChargingSchedule says the same in prose).
    if profile.kind in (Kind.ABSOLUTE, Kind.RECURRING) and sched.start_schedule is None:
        return f"a {profile.kind} profile needs startSchedule"
    if profile.kind is Kind.RECURRING and profile.recurrency is None:
        return "a Recurring profile needs recurrencyKind"
    # 2.0.1 K01.FR.41 (and the meaning of 1.6 Relative): no startSchedule on a Relative schedule.
    if profile.kind is Kind.RELATIVE and sched.start_schedule is not None:
        return "a Relative profile must not have startSchedule"
    # 2.0.1 K01.FR.38: a station maximum is never Relative (there is no transaction to anchor it).
    if profile.purpose is Purpose.CHARGE_POINT_MAX and profile.kind is Kind.RELATIVE:
        return "ChargePointMaxProfile cannot be Relative"
    for name, t in (
        ("validFrom", profile.valid_from),
        ("validTo", profile.valid_to),
        ("startSchedule", sched.start_schedule),
    ):
        if not is_aware(t):
            return f"{name} must carry a UTC offset"
    if (
        profile.valid_from is not None
        and profile.valid_to is not None
        and profile.valid_to <= profile.valid_from
    ):
        return "validTo must be after validFrom"
    # 2.0.1 K01.FR.26 / 1.6 3.13.5 ChargingScheduleAllowedChargingRateUnit.
    if sched.unit not in caps.allowed_units:
        allowed = " or ".join(sorted(u.value for u in caps.allowed_units)) or "nothing"
        return f"chargingRateUnit {sched.unit} is not allowed (this charger takes {allowed})"
    if not sched.periods:
        return "the schedule has no periods"
    if len(sched.periods) > caps.max_periods:
        return f"the schedule has {len(sched.periods)} periods; at most {caps.max_periods} allowed"
    # 1.6 ChargingSchedule / 2.0.1 K01.FR.31, FR.35: the first period starts at 0, starts ascend.
    if sched.periods[0].start_period_s != 0:
        return "the first period must have startPeriod 0"
    for a, b in zip(sched.periods, sched.periods[1:], strict=False):
        if b.start_period_s <= a.start_period_s:
            return "startPeriod values must be strictly ascending"
    for i, p in enumerate(sched.periods):
        if not (finite(p.limit) and p.limit >= 0):
            return f"period {i}: limit must be a number >= 0"
        if p.number_phases is not None and p.number_phases not in (1, 2, 3):
            return f"period {i}: numberPhases must be 1, 2 or 3"
    if sched.duration_s is not None and sched.duration_s < 0:
        return "duration must be >= 0"
    if sched.min_charging_rate is not None and not (
        finite(sched.min_charging_rate) and sched.min_charging_rate >= 0
    ):
        return "minChargingRate must be a number >= 0"
    if caps.max_profiles is not None:
        kept = sum(1 for ip in state.profiles if not _replaced_by(ip, connector_id, profile))
        if kept + 1 > caps.max_profiles:
            return f"this charger holds at most {caps.max_profiles} profiles"
    return None


def set_charging_profile(
    spec: ChargerSpec, state: ChargerState, connector_id: int, profile: ChargingProfile
) -> tuple[ChargerState, str | None]:
    """Validate and install: the new state and None, or the unchanged state and the reason."""
    reason = validate_profile(spec, state, connector_id, profile)
    if reason is not None:
        return state, reason
    return state.install(connector_id, profile), None
