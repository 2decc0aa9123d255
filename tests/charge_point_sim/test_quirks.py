"""Charger quirks, configured per charger, over the wire against the minimal server (both versions)."""

from __future__ import annotations

import asyncio
import time

import pytest
from ocpp.v16 import call as c16
from ocpp.v201 import call as c201

from charge_point_sim import Capabilities, RateUnit
from charge_point_sim.errors import InvalidModelError
from charge_point_sim.quirks import Quirks
from tests.charge_point_sim.test_protocol import (
    POWER,
    VERSIONS,
    charger,
    ev,
    meter_values,
    started,
    tx_profile,
    values,
)

FIELD = Quirks(
    only_amps=True,
    max_stack_level=3,
    max_periods=2,
    ignores_profiles=True,
    rejects_composite=True,
    answer_delay_s=60.0,  # 0.1 s real at 600x
)


def test_quirks_narrow_the_capabilities_and_parse_from_json() -> None:
    caps = FIELD.capabilities(Capabilities())
    assert caps.allowed_units == frozenset({RateUnit.A})
    assert (caps.max_stack_level, caps.max_periods) == (3, 2)
    assert Quirks().capabilities(Capabilities()) == Capabilities()
    q = Quirks.from_json({"only_amps": True, "max_periods": 20, "drop_every_s": 600})
    assert q == Quirks(only_amps=True, max_periods=20, drop_every_s=600.0)
    for bad in ({"nope": 1}, {"only_amps": 1}, {"max_periods": 2.5}, {"drop_every_s": 0}):
        with pytest.raises(InvalidModelError):
            Quirks.from_json(bad)


@pytest.mark.parametrize("version", VERSIONS)
async def test_a_field_charger_accepts_ignores_and_answers_slowly(version: str) -> None:
    async with charger(version, arrivals=[(0, 3600, ev())], quirks=FIELD) as (_, csms, run, _c):
        await csms.wait_for("StartTransaction" if version == "1.6" else "TransactionEvent")
        tx = started(csms, version)
        t0 = time.monotonic()
        watts = await csms.call(tx_profile(version, tx, 6000.0, unit="W"), suppress=False)
        assert time.monotonic() - t0 >= 0.09  # answer_delay_s
        assert watts.status == "Rejected"
        high = await csms.call(tx_profile(version, tx, 6.0, stack_level=4), suppress=False)
        assert high.status == "Rejected"
        periods = [{"start_period": 60 * i, "limit": 6.0} for i in range(3)]
        many = await csms.call(tx_profile(version, tx, 6.0, periods=periods), suppress=False)
        assert many.status == "Rejected"
        ok = await csms.call(tx_profile(version, tx, 6.0), suppress=False)
        assert ok.status == "Accepted"
        assert run.station.state.profiles  # installed and reported ...
        n = len(meter_values(csms, version))
        await csms.wait_for(
            "MeterValues" if version == "1.6" else "TransactionEvent",
            lambda _: len(meter_values(csms, version)) >= n + 2,
            timeout=5,
        )
        # ... but the charger keeps drawing the EV's maximum (11 kW), not 6 A x 3 x 230 V.
        assert values(meter_values(csms, version)[-1])[POWER] == pytest.approx(11000.0, abs=1)
        if version == "1.6":
            req: object = c16.GetCompositeSchedule(connector_id=1, duration=600)
        else:
            req = c201.GetCompositeSchedule(evse_id=1, duration=600)
        cs = await csms.call(req, suppress=False)
        assert cs.status == "Rejected"


@pytest.mark.parametrize("version", VERSIONS)
async def test_a_rebooting_charger_boots_again_and_stops_its_session(version: str) -> None:
    quirks = Quirks(reboot_every_s=120.0)
    async with charger(version, arrivals=[(0, 3600, ev())], quirks=quirks) as (_, csms, run, _c):
        await csms.wait_for("BootNotification", lambda _: len(csms.of("BootNotification")) >= 2)
        async with asyncio.timeout(5):
            while not any(r.reason == "Reboot" for r in run.driver.results):  # type: ignore[union-attr]
                await asyncio.sleep(0.01)
    if version == "1.6":
        assert csms.of("StopTransaction")[0]["reason"] == "Reboot"
    else:
        ended = [e for e in csms.of("TransactionEvent") if e["event_type"] == "Ended"]
        assert ended[0]["transaction_info"]["stopped_reason"] == "Reboot"
