"""Outbound commands through the gateway: both versions, answers, errors and timeouts recorded."""

from __future__ import annotations

import pytest
from sqlmodel import select

from csms.db.models import OutboundCall
from csms.domain.commands import (
    GetCompositeSchedule,
    RawCall,
    Reset,
    StartCharging,
    StopCharging,
    TriggerMessage,
)
from csms.ocpp.commands import CommandMappingError, to_call_16, to_call_201
from tests.csms.client import boot16, boot201, connect
from tests.csms.conftest import RunCsms

OPEN = {"allow_unknown_chargers": True, "accept_unknown_id_tokens": True}


async def _calls(rt: object) -> list[OutboundCall]:
    async with rt.sessions() as s:  # type: ignore[attr-defined]
        return list((await s.exec(select(OutboundCall).order_by(OutboundCall.id))).all())


async def test_commands_16(run_csms: RunCsms) -> None:
    async with (
        run_csms(**OPEN, response_timeout_s=1) as rt,
        connect(rt.ocpp.port, "C16", "ocpp1.6") as cp,
    ):
        await boot16(cp)
        gw = rt.gateway
        assert gw.is_connected("C16")
        r = await gw.send("C16", StartCharging(id_tag="T1", evse_id=1))
        assert (r.ok, r.status) == (True, "Accepted")
        assert (await gw.send("C16", StartCharging(id_tag="NO"))).status == "Rejected"
        assert (await gw.send("C16", StopCharging("7"))).status == "Accepted"
        assert (await gw.send("C16", Reset(hard=True))).status == "Accepted"
        assert (await gw.send("C16", TriggerMessage("StatusNotification", 1))).status == "Accepted"
        # Not handled by the client: NotImplemented comes back as an error, recorded.
        r = await gw.send("C16", RawCall("ClearCache"))
        assert not r.ok
        assert r.error is not None
        assert "NotImplemented" in r.error
        # Invalid payload: refused before sending.
        r = await gw.send("C16", RawCall("Reset", {"type": "Sideways"}))
        assert not r.ok
        # Slow answer: timeout, recorded.
        cp.slow_answer_s = 2.0
        r = await gw.send("C16", GetCompositeSchedule(evse_id=1, duration_s=3600))
        assert not r.ok
        assert r.error == "no answer within 1.0 s"
        calls = await _calls(rt)
        assert [c.action for c in calls] == [
            "RemoteStartTransaction",
            "RemoteStartTransaction",
            "RemoteStopTransaction",
            "Reset",
            "TriggerMessage",
            "ClearCache",
            "Reset",
            "GetCompositeSchedule",
        ]
        assert calls[0].request == {"idTag": "T1", "connectorId": 1}
        assert calls[0].response == {"status": "Accepted"}
        assert calls[-1].error == "no answer within 1.0 s"
        assert all(c.latency_s >= 0 for c in calls)
    r = await rt.gateway.send("C16", Reset())
    assert r.error == "charger is not connected"


async def test_commands_201(run_csms: RunCsms) -> None:
    async with run_csms(**OPEN) as rt, connect(rt.ocpp.port, "C201", "ocpp2.0.1") as cs:
        await boot201(cs)
        gw = rt.gateway
        assert (await gw.send("C201", StartCharging(id_tag="T", evse_id=1))).status == "Accepted"
        assert (await gw.send("C201", StopCharging("tx-9"))).status == "Accepted"
        assert (await gw.send("C201", Reset())).status == "Scheduled"
        r = await gw.send("C201", RawCall("NoSuchThing"))
        assert r.error == "NoSuchThing does not exist in ocpp2.0.1"


def test_command_mapping() -> None:
    assert to_call_16(StartCharging("T", 2)) == (
        "RemoteStartTransaction",
        {"idTag": "T", "connectorId": 2},
    )
    assert to_call_201(StartCharging("T", 2, remote_start_id=5)) == (
        "RequestStartTransaction",
        {"idToken": {"idToken": "T", "type": "Central"}, "remoteStartId": 5, "evseId": 2},
    )
    assert to_call_16(Reset(hard=False)) == ("Reset", {"type": "Soft"})
    assert to_call_201(Reset(hard=True)) == ("Reset", {"type": "Immediate"})
    assert to_call_201(TriggerMessage("MeterValues", 3)) == (
        "TriggerMessage",
        {"requestedMessage": "MeterValues", "evse": {"id": 3}},
    )
    assert to_call_16(GetCompositeSchedule(1, 600, "W")) == (
        "GetCompositeSchedule",
        {"connectorId": 1, "duration": 600, "chargingRateUnit": "W"},
    )
    with pytest.raises(CommandMappingError, match="integers"):
        to_call_16(StopCharging("abc"))
