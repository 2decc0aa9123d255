"""A strict charger rejects what is invalid, with a reason (OCPP 1.6 3.13 / 5.16, 2.0.1 K01)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import pytest

from charge_point_sim.charger_model import (
    Capabilities,
    ChargerSpec,
    ChargerState,
    ConnectorSpec,
    set_charging_profile,
    validate_profile,
)
from charge_point_sim.errors import InvalidModelError
from charge_point_sim.profiles import (
    ChargingProfile,
    Kind,
    Purpose,
    RateUnit,
    Recurrency,
    Schedule,
    SchedulePeriod,
)
from tests.charge_point_sim.helpers import T0, profile, spec

STRICT = Capabilities(
    max_stack_level=3, max_periods=4, allowed_units=frozenset({RateUnit.A}), max_profiles=3
)
CHARGER = spec(capabilities=STRICT)
WITH_TX = ChargerState().start_transaction(1, "tx-1", T0)
GOOD = profile(1, [(0, 16), (600, 10)], start=T0)


def sched(p: ChargingProfile, **changes: object) -> ChargingProfile:
    return replace(p, schedule=replace(p.schedule, **changes))


def periods_of(*pairs: tuple[int, float]) -> tuple[SchedulePeriod, ...]:
    return tuple(SchedulePeriod(s, lim) for s, lim in pairs)


def test_a_good_profile_is_accepted_everywhere_it_may_go() -> None:
    assert validate_profile(CHARGER, WITH_TX, 0, GOOD) is None
    assert validate_profile(CHARGER, WITH_TX, 2, GOOD) is None
    cp_max = replace(GOOD, purpose=Purpose.CHARGE_POINT_MAX)
    assert validate_profile(CHARGER, WITH_TX, 0, cp_max) is None
    tx = profile(2, [(0, 16)], purpose=Purpose.TX, kind=Kind.RELATIVE, transaction_id="tx-1")
    assert validate_profile(CHARGER, WITH_TX, 1, tx) is None
    # 1.6: a TxProfile without transactionId applies to the running transaction.
    assert validate_profile(CHARGER, WITH_TX, 1, replace(tx, transaction_id=None)) is None
    recurring = replace(GOOD, kind=Kind.RECURRING, recurrency=Recurrency.WEEKLY)
    assert validate_profile(CHARGER, WITH_TX, 0, recurring) is None


@pytest.mark.parametrize(
    ("connector_id", "bad", "reason"),
    [
        (3, GOOD, "connector 3 does not exist"),
        (-1, GOOD, "connector -1 does not exist"),
        (1, replace(GOOD, purpose=Purpose.CHARGE_POINT_MAX), "only be set on connector 0"),
        (0, replace(GOOD, purpose=Purpose.TX), "TxProfile cannot be set on connector 0"),
        (2, replace(GOOD, purpose=Purpose.TX), "needs a running transaction on connector 2"),
        (1, replace(GOOD, purpose=Purpose.TX, transaction_id="other"), "runs transaction tx-1"),
        (0, replace(GOOD, stack_level=4), "stackLevel 4 is outside 0..3"),
        (0, replace(GOOD, stack_level=-1), "stackLevel -1"),
        (0, sched(GOOD, start_schedule=None), "Absolute profile needs startSchedule"),
        (
            0,
            sched(
                replace(GOOD, kind=Kind.RECURRING, recurrency=Recurrency.DAILY), start_schedule=None
            ),
            "Recurring profile needs startSchedule",
        ),
        (0, replace(GOOD, kind=Kind.RECURRING), "needs recurrencyKind"),
        (0, replace(GOOD, kind=Kind.RELATIVE), "Relative profile must not have startSchedule"),
        (
            0,
            sched(
                replace(GOOD, kind=Kind.RELATIVE, purpose=Purpose.CHARGE_POINT_MAX),
                start_schedule=None,
            ),
            "ChargePointMaxProfile cannot be Relative",
        ),
        (0, sched(GOOD, start_schedule=datetime(2026, 3, 2)), "startSchedule must carry a UTC"),
        (0, replace(GOOD, valid_from=datetime(2026, 3, 2)), "validFrom must carry a UTC"),
        (0, replace(GOOD, valid_to=datetime(2026, 3, 2)), "validTo must carry a UTC"),
        (0, replace(GOOD, valid_from=T0, valid_to=T0), "validTo must be after validFrom"),
        (
            0,
            sched(GOOD, unit=RateUnit.W),
            "chargingRateUnit W is not allowed (this charger takes A)",
        ),
        (0, sched(GOOD, periods=()), "no periods"),
        (0, sched(GOOD, periods=periods_of((0, 1), (1, 1), (2, 1), (3, 1), (4, 1))), "5 periods"),
        (0, sched(GOOD, periods=periods_of((60, 16))), "first period must have startPeriod 0"),
        (0, sched(GOOD, periods=periods_of((0, 16), (600, 8), (300, 6))), "strictly ascending"),
        (0, sched(GOOD, periods=periods_of((0, 16), (0, 8))), "strictly ascending"),
        (0, sched(GOOD, periods=periods_of((0, -1))), "period 0: limit must be a number >= 0"),
        (0, sched(GOOD, periods=periods_of((0, 1), (5, float("nan")))), "period 1: limit"),
        (0, sched(GOOD, periods=(SchedulePeriod(0, 16, 4),)), "numberPhases must be 1, 2 or 3"),
        (0, sched(GOOD, duration_s=-5), "duration must be >= 0"),
        (0, sched(GOOD, min_charging_rate=-1.0), "minChargingRate"),
    ],
)
def test_rejections_say_why(connector_id: int, bad: ChargingProfile, reason: str) -> None:
    got = validate_profile(CHARGER, WITH_TX, connector_id, bad)
    assert got is not None
    assert reason in got
    # A rejected profile leaves the state as it was.
    state, why = set_charging_profile(CHARGER, WITH_TX, connector_id, bad)
    assert (state, why) == (WITH_TX, got)


def test_a_charger_without_smart_charging_rejects_everything() -> None:
    c = spec(capabilities=Capabilities(supports_profiles=False))
    reason = validate_profile(c, WITH_TX, 0, GOOD)
    assert reason is not None
    assert "does not support" in reason


def test_max_profiles_counts_what_a_new_profile_replaces() -> None:
    state = WITH_TX
    for pid in (1, 2, 3):
        state, why = set_charging_profile(CHARGER, state, 0, replace(GOOD, id=pid, stack_level=pid))
        assert why is None
    reason = validate_profile(CHARGER, state, 0, replace(GOOD, id=4, stack_level=0))
    assert reason is not None
    assert "at most 3 profiles" in reason
    # Replacing by id or by stack level and purpose does not add a profile: accepted.
    assert validate_profile(CHARGER, state, 0, replace(GOOD, id=2, stack_level=0)) is None
    assert validate_profile(CHARGER, state, 0, replace(GOOD, id=9, stack_level=3)) is None


def test_stack_level_limit_of_an_abb_like_charger() -> None:
    # Field quirk (OCPP_SMART_CHARGING.md): ChargeProfileMaxStackLevel 3 on some chargers.
    assert validate_profile(CHARGER, WITH_TX, 0, replace(GOOD, stack_level=3)) is None


def test_charger_spec_rejects_nonsense() -> None:
    with pytest.raises(InvalidModelError):
        ChargerSpec(connectors=())
    with pytest.raises(InvalidModelError):
        ChargerSpec(connectors=(ConnectorSpec(0.0),))
    with pytest.raises(InvalidModelError):
        ChargerSpec(connectors=(ConnectorSpec(7000.0, phases=4),))
    with pytest.raises(InvalidModelError):
        ChargerSpec(connectors=(ConnectorSpec(7000.0),), voltage_v=0)
    with pytest.raises(InvalidModelError):
        ChargerSpec(connectors=(ConnectorSpec(7000.0),), max_power_w=-1)
    with pytest.raises(InvalidModelError, match="connector 5 does not exist"):
        spec().connector(5)


def test_purpose_parses_both_version_names() -> None:
    assert Purpose("ChargingStationMaxProfile") is Purpose.CHARGE_POINT_MAX
    assert Purpose("ChargePointMaxProfile") is Purpose.CHARGE_POINT_MAX
    assert Purpose.CHARGING_STATION_MAX is Purpose.CHARGE_POINT_MAX
    with pytest.raises(ValueError, match="'Nope' is not a valid Purpose"):
        Purpose("Nope")


def test_schedule_period_phases_default_to_three() -> None:
    assert SchedulePeriod(0, 16).phases == 3
    assert SchedulePeriod(0, 16, 1).phases == 1
    assert Schedule(RateUnit.A, ()).duration_s is None
