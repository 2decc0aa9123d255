"""Real websockets on an ephemeral port, both OCPP versions, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import websockets
from ocpp.v16 import call as c16
from ocpp.v201 import call as c201
from sqlmodel import select
from websockets.exceptions import InvalidStatus

from csms.db.models import MessageLog, MeterValue
from csms.services.queries import Queries
from csms.services.stations import count_rows
from tests.csms.client import auth_header, boot16, boot201, connect
from tests.csms.conftest import RunCsms

OPEN = {"allow_unknown_chargers": True, "accept_unknown_id_tokens": True}


async def eventually(check: Any, timeout: float = 5.0) -> Any:
    """Poll an async check until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("version", ["ocpp1.6", "ocpp2.0.1"])
async def test_boot_registers_and_reads_capabilities(run_csms: RunCsms, version: str) -> None:
    async with run_csms(**OPEN) as rt, connect(rt.ocpp.port, "CP-1", version) as cp:
        reply = await (boot16(cp) if version == "ocpp1.6" else boot201(cp))
        assert reply.status == "Accepted"
        assert reply.interval == 300
        q = Queries(rt.sessions)

        async def caps() -> Any:
            view = await q.charge_point("CP-1")
            return view if view and view.capabilities else None

        view = await eventually(caps)
        assert view.vendor == "Acme"
        assert view.model == "AC22"
        assert view.connected
        assert view.ocpp_version == version
        assert version in view.capabilities


async def test_whole_transaction_16(run_csms: RunCsms) -> None:
    async with run_csms(**OPEN) as rt, connect(rt.ocpp.port, "CP-16", "ocpp1.6") as cp:
        await boot16(cp)
        await cp.call(
            c16.StatusNotification(connector_id=1, error_code="NoError", status="Preparing"),
            suppress=False,
        )
        auth = await cp.call(c16.Authorize(id_tag="TAG1"), suppress=False)
        assert auth.id_tag_info["status"] == "Accepted"
        start = c16.StartTransaction(
            connector_id=1, id_tag="TAG1", meter_start=10_000, timestamp="2026-01-05T08:00:00Z"
        )
        r = await cp.call(start, suppress=False)
        tx = r.transaction_id
        # Resent after a reconnect: same id, no second transaction.
        again = await cp.call(start, suppress=False)
        assert again.transaction_id == tx
        mv = [
            {
                "timestamp": "2026-01-05T08:15:00Z",
                "sampledValue": [
                    {"value": "12.5", "measurand": "Energy.Active.Import.Register", "unit": "kWh"},
                    {"value": "10000", "measurand": "Power.Active.Import", "unit": "W"},
                    {"value": "oops", "measurand": "Current.Import", "unit": "A"},
                ],
            }
        ]
        await cp.call(
            c16.MeterValues(connector_id=1, transaction_id=tx, meter_value=mv), suppress=False
        )
        await cp.call(
            c16.MeterValues(connector_id=1, transaction_id=tx, meter_value=mv), suppress=False
        )
        stop = c16.StopTransaction(
            transaction_id=tx,
            meter_stop=15_000,
            timestamp="2026-01-05T08:30:00Z",
            reason="EVDisconnected",
        )
        await cp.call(stop, suppress=False)
        await cp.call(stop, suppress=False)  # resent: answered, not double counted

        q = Queries(rt.sessions)
        view = await q.transaction(tx)
        assert view is not None
        assert not view.active
        assert view.energy_wh == 5000.0
        assert view.stop_reason == "EVDisconnected"
        assert (
            len(view.meter_values or []) == 2
        )  # the unreadable value is skipped, the resend ignored
        assert len(await q.transactions()) == 1
        cpv = await q.charge_point("CP-16")
        assert cpv is not None
        assert [(c.connector_id, c.status) for c in cpv.connectors] == [(1, "Preparing")]


async def test_whole_transaction_201_with_resent_events(run_csms: RunCsms) -> None:
    async with run_csms(**OPEN) as rt, connect(rt.ocpp.port, "CS-201", "ocpp2.0.1") as cs:
        await boot201(cs)

        def event(kind: str, seq: int, wh: float, ts: str, **extra: Any) -> Any:
            return c201.TransactionEvent(
                event_type=kind,
                timestamp=ts,
                trigger_reason="MeterValuePeriodic" if kind == "Updated" else "Authorized",
                seq_no=seq,
                transaction_info={"transactionId": "T-abc", **extra},
                evse={"id": 1, "connectorId": 1},
                id_token={"idToken": "TAG2", "type": "ISO14443"} if kind == "Started" else None,
                meter_value=[
                    {
                        "timestamp": ts,
                        "sampledValue": [
                            {"value": wh / 1000, "unitOfMeasure": {"unit": "Wh", "multiplier": 3}}
                        ],
                    }
                ],
            )

        started = await cs.call(event("Started", 0, 2000, "2026-01-05T08:00:00Z"), suppress=False)
        assert started.id_token_info["status"] == "Accepted"
        upd = event("Updated", 1, 4000, "2026-01-05T08:15:00Z")
        await cs.call(upd, suppress=False)
        await cs.call(upd, suppress=False)  # resent after a reconnect
        await cs.call(
            event("Ended", 2, 6500, "2026-01-05T08:30:00Z", stoppedReason="EVDisconnected"),
            suppress=False,
        )
        q = Queries(rt.sessions)
        [tx] = await q.transactions()
        assert tx.ocpp_id == "T-abc"
        assert not tx.active
        assert tx.meter_start_wh == 2000.0
        assert tx.energy_wh == 4500.0
        assert tx.stop_reason == "EVDisconnected"
        full = await q.transaction(tx.id)
        assert full is not None
        assert [m.value for m in full.meter_values or []] == [2000.0, 4000.0, 6500.0]


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "FormationViolation"),
        ('{"an": "object"}', "FormationViolation"),
        ('[2, "id-1", "Heartbeat"]', "FormationViolation"),
        ('[7, "id-2", "Heartbeat", {}]', "PropertyConstraintViolation"),
        ('[2, "id-3", "BootNotification", {"chargePointVendor": 5}]', "TypeConstraintViolation"),
        ('[2, "id-4", "NoSuchAction", {}]', "NotImplemented"),
        # MeterValues skip the schema (csms.ocpp.hot_checks) but get the same answers.
        ('[2, "id-5", "MeterValues", {"meterValue": []}]', "OccurenceConstraintViolation"),
        (
            '[2, "id-6", "MeterValues", {"connectorId": 1, "meterValue": '
            '[{"timestamp": "2026-01-01T00:00:00Z", "sampledValue": [{"value": 5}]}]}]',
            "TypeConstraintViolation",
        ),
        (
            '[2, "id-7", "MeterValues", {"connectorId": "one", "meterValue": [{}]}]',
            "TypeConstraintViolation",
        ),
    ],
)
async def test_malformed_frames_get_callerror_and_the_connection_stays(
    run_csms: RunCsms, frame: str, code: str
) -> None:
    async with (
        run_csms(**OPEN) as rt,
        websockets.connect(
            f"ws://127.0.0.1:{rt.ocpp.port}/ocpp/BAD-1",
            subprotocols=["ocpp1.6"],
            proxy=None,  # type: ignore[list-item]
        ) as ws,
    ):
        await ws.send(frame)
        reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert reply[0] == 4
        assert reply[2] == code
        await ws.send('[2, "hb", "Heartbeat", {}]')
        ok = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert ok[:2] == [3, "hb"]


async def test_unknown_chargers_and_wrong_passwords_are_refused(run_csms: RunCsms) -> None:
    async with run_csms() as rt:
        await rt.stations.register_charge_point("CP-A", password="s3cret-password")
        port = rt.ocpp.port
        with pytest.raises(InvalidStatus) as exc:
            async with connect(port, "CP-UNKNOWN", "ocpp1.6"):
                pass
        assert exc.value.response.status_code == 401
        with pytest.raises(InvalidStatus) as exc:
            async with connect(port, "CP-A", "ocpp1.6", password="wrong"):
                pass
        assert exc.value.response.status_code == 401
        async with connect(port, "CP-A", "ocpp1.6", password="s3cret-password") as cp:
            assert (await boot16(cp)).status == "Accepted"


async def test_unknown_subprotocol_and_bad_path_are_refused(run_csms: RunCsms) -> None:
    async with run_csms(**OPEN) as rt:
        for protocols, path, status in (
            (["ocpp1.5"], "/ocpp/CP-1", 400),
            ([], "/ocpp/CP-1", 400),
            (["ocpp1.6"], "/elsewhere/CP-1", 404),
        ):
            with pytest.raises(InvalidStatus) as exc:
                await websockets.connect(
                    f"ws://127.0.0.1:{rt.ocpp.port}{path}",
                    subprotocols=protocols,  # type: ignore[arg-type]
                    proxy=None,
                )
            assert exc.value.response.status_code == status


async def test_second_connection_replaces_the_first(run_csms: RunCsms) -> None:
    async with run_csms(**OPEN) as rt:
        port = rt.ocpp.port
        async with connect(port, "CP-2", "ocpp1.6") as first:
            await boot16(first)
            async with connect(port, "CP-2", "ocpp1.6") as second:
                assert (await boot16(second)).status == "Accepted"
                assert len(rt.ocpp.connections) == 1
                await asyncio.sleep(0.1)
                q = Queries(rt.sessions)
                view = await q.charge_point("CP-2")
                assert view is not None
                assert view.connected  # the old socket closing must not mark it offline
                assert first._connection.state.name == "CLOSED"  # the first one was dropped
                assert (await boot16(second)).status == "Accepted"  # the new one still works


async def test_state_survives_a_restart_and_reboot_closes_open_transactions(
    run_csms: RunCsms,
) -> None:
    async with run_csms(**OPEN) as rt, connect(rt.ocpp.port, "CP-R", "ocpp1.6") as cp:
        await boot16(cp)
        r = await cp.call(
            c16.StartTransaction(
                connector_id=1, id_tag="T", meter_start=0, timestamp="2026-01-05T08:00:00Z"
            ),
            suppress=False,
        )
    async with run_csms(**OPEN) as rt:
        q = Queries(rt.sessions)
        [tx] = await q.transactions(active=True)
        assert tx.id == r.transaction_id
        assert (await q.charge_point("CP-R")) is not None
        async with connect(rt.ocpp.port, "CP-R", "ocpp1.6") as cp:
            await boot16(cp)  # the charger rebooted: its transaction is gone
            assert await q.transactions(active=True) == []
            [closed] = await q.transactions()
            assert closed.stop_reason == "ChargerRebooted"
            # ... and if it sends the StopTransaction after all, that is accepted.
            await cp.call(
                c16.StopTransaction(
                    transaction_id=tx.id, meter_stop=900, timestamp="2026-01-05T09:00:00Z"
                ),
                suppress=False,
            )
            done = await q.transaction(tx.id)
            assert done is not None
            assert done.energy_wh == 900.0


async def test_every_frame_is_in_the_message_log(run_csms: RunCsms) -> None:
    from sqlmodel import select

    async with run_csms(**OPEN) as rt:
        async with connect(rt.ocpp.port, "CP-L", "ocpp1.6") as cp:
            await boot16(cp)
            await cp.call(c16.Heartbeat(), suppress=False)
            await eventually(lambda: _at_least(rt, 6))  # boot, GetConfiguration, heartbeat
        async with rt.sessions() as s:
            rows = (await s.exec(select(MessageLog).order_by(MessageLog.id))).all()
        seen = {(r.direction, r.message_type, r.action) for r in rows}
        assert ("in", 2, "BootNotification") in seen
        assert ("out", 3, None) in seen  # the answers
        assert ("out", 2, "GetConfiguration") in seen
        assert ("in", 2, "Heartbeat") in seen
        boot = next(r for r in rows if r.action == "BootNotification")
        assert boot.payload == {"chargePointVendor": "Acme", "chargePointModel": "AC22"}
        assert boot.charge_point_id == "CP-L"
        assert await count_rows(rt.sessions, MeterValue) == 0


async def _at_least(rt: Any, n: int) -> bool:
    return await count_rows(rt.sessions, MessageLog) >= n


async def test_data_transfer_is_unknown_vendor(run_csms: RunCsms) -> None:
    async with run_csms(**OPEN) as rt, connect(rt.ocpp.port, "CP-D", "ocpp1.6") as cp:
        r = await cp.call(c16.DataTransfer(vendor_id="com.example"), suppress=False)
        assert r.status == "UnknownVendorId"


def test_auth_header_helper() -> None:
    assert auth_header("a", "b") == {"Authorization": "Basic YTpi"}


async def test_offline_events_out_of_order_and_ev_needs_201(run_csms: RunCsms) -> None:
    from csms.db.models import NeedsInput

    async with run_csms(**OPEN) as rt, connect(rt.ocpp.port, "CS-OFF", "ocpp2.0.1") as cs:
        await boot201(cs)

        def event(kind: str, seq: int, wh: float, minute: int, offline: bool = False) -> Any:
            ts = f"2026-01-05T08:{minute:02d}:00Z"
            return c201.TransactionEvent(
                event_type=kind,
                timestamp=ts,
                trigger_reason="MeterValuePeriodic",
                seq_no=seq,
                offline=offline,
                transaction_info={"transactionId": "OFF-1"},
                evse={"id": 1, "connectorId": 1},
                meter_value=[{"timestamp": ts, "sampledValue": [{"value": wh}]}],
            )

        await cs.call(event("Started", 0, 1000, 0), suppress=False)
        needs = c201.NotifyEVChargingNeeds(
            evse_id=1,
            charging_needs={
                "requestedEnergyTransfer": "AC_three_phase",
                "departureTime": "2026-01-05T16:00:00Z",
                "acChargingParameters": {
                    "energyAmount": 20000,
                    "evMinCurrent": 6,
                    "evMaxCurrent": 16,
                    "evMaxVoltage": 400,
                },
            },
        )
        assert (await cs.call(needs, suppress=False)).status == "Accepted"
        # Queued while offline, delivered late and out of order.
        await cs.call(event("Updated", 2, 3000, 20, offline=True), suppress=False)
        await cs.call(event("Updated", 1, 2000, 10, offline=True), suppress=False)
        q = Queries(rt.sessions)
        [tx] = await q.transactions(active=True)
        assert tx.energy_wh == 2000.0  # 3000 - 1000: the late, older reading does not go back
        full = await q.transaction(tx.id)
        assert full is not None
        assert [m.value for m in full.meter_values or []] == [1000.0, 2000.0, 3000.0]
        async with rt.sessions() as s:
            stored = (
                await s.exec(select(NeedsInput).where(NeedsInput.transaction_id == tx.id))
            ).first()
        assert stored is not None
        assert (stored.energy_wh, stored.source) == (20000.0, "ev")
        # Needs for an EVSE without a transaction are refused.
        other = c201.NotifyEVChargingNeeds(
            evse_id=2, charging_needs={"requestedEnergyTransfer": "DC"}
        )
        assert (await cs.call(other, suppress=False)).status == "Rejected"


@pytest.mark.parametrize("version", ["ocpp1.6", "ocpp2.0.1"])
async def test_reconnect_and_resend_counts_nothing_twice(run_csms: RunCsms, version: str) -> None:
    async with run_csms(**OPEN) as rt:
        port = rt.ocpp.port
        if version == "ocpp1.6":
            start = c16.StartTransaction(
                connector_id=1, id_tag="T", meter_start=500, timestamp="2026-01-05T08:00:00Z"
            )
            stop_args = {"meter_stop": 2500, "timestamp": "2026-01-05T09:00:00Z"}
            async with connect(port, "RC-1", version) as cp:
                await boot16(cp)
                tx = (await cp.call(start, suppress=False)).transaction_id
            # The connection dropped before the charger saw the answer: it resends both.
            async with connect(port, "RC-1", version) as cp:
                assert (await cp.call(start, suppress=False)).transaction_id == tx
                stop = c16.StopTransaction(transaction_id=tx, **stop_args)
                await cp.call(stop, suppress=False)
            async with connect(port, "RC-1", version) as cp:
                await cp.call(stop, suppress=False)
        else:

            def ev(kind: str, seq: int, wh: float) -> Any:
                return c201.TransactionEvent(
                    event_type=kind,
                    timestamp=f"2026-01-05T0{8 + seq}:00:00Z",
                    trigger_reason="Authorized",
                    seq_no=seq,
                    transaction_info={"transactionId": "RC-T"},
                    evse={"id": 1, "connectorId": 1},
                    meter_value=[
                        {
                            "timestamp": f"2026-01-05T0{8 + seq}:00:00Z",
                            "sampledValue": [{"value": wh}],
                        }
                    ],
                )

            async with connect(port, "RC-1", version) as cs:
                await boot201(cs)
                await cs.call(ev("Started", 0, 500), suppress=False)
            async with connect(port, "RC-1", version) as cs:
                await cs.call(ev("Started", 0, 500), suppress=False)
                await cs.call(ev("Ended", 1, 2500), suppress=False)
            async with connect(port, "RC-1", version) as cs:
                await cs.call(ev("Ended", 1, 2500), suppress=False)
        q = Queries(rt.sessions)
        [tx_view] = await q.transactions()
        assert not tx_view.active
        assert tx_view.energy_wh == 2000.0
        full = await q.transaction(tx_view.id)
        assert full is not None
        assert len(full.meter_values or []) == (0 if version == "ocpp1.6" else 2)


async def test_meter_values_of_two_1_6_connectors_at_the_same_time(run_csms: RunCsms) -> None:
    async with run_csms(**OPEN) as rt, connect(rt.ocpp.port, "CP-2C", "ocpp1.6") as cp:
        await boot16(cp)
        for connector in (1, 2):
            mv = [
                {"timestamp": "2026-01-05T08:15:00Z", "sampledValue": [{"value": str(connector)}]}
            ]
            await cp.call(c16.MeterValues(connector_id=connector, meter_value=mv), suppress=False)
        assert await count_rows(rt.sessions, MeterValue) == 2


async def test_reconnect_is_served_at_once_when_the_old_socket_is_dead(run_csms: RunCsms) -> None:
    async with run_csms(**OPEN) as rt:
        port = rt.ocpp.port
        async with connect(port, "CP-HALF", "ocpp1.6") as old:
            await boot16(old)
            old._connection.transport.pause_reading()  # half-open: it will never answer a close
            t0 = asyncio.get_running_loop().time()
            async with connect(port, "CP-HALF", "ocpp1.6") as new:
                assert (await boot16(new)).status == "Accepted"
            assert asyncio.get_running_loop().time() - t0 < 3
            old._connection.transport.abort()  # end the test client quickly too


async def test_triggered_boot_keeps_transactions_and_energy_starts_at_first_reading(
    run_csms: RunCsms,
) -> None:
    async with run_csms(**OPEN) as rt, connect(rt.ocpp.port, "CS-TB", "ocpp2.0.1") as cs:
        await boot201(cs)

        def event(kind: str, seq: int, wh: float | None) -> Any:
            return c201.TransactionEvent(
                event_type=kind,
                timestamp=f"2026-01-05T08:0{seq}:00Z",
                trigger_reason="CablePluggedIn",
                seq_no=seq,
                transaction_info={"transactionId": "TB-1"},
                evse={"id": 1, "connectorId": 1},
                id_token={"idToken": "", "type": "NoAuthorization"} if seq == 0 else None,
                meter_value=None
                if wh is None
                else [{"timestamp": f"2026-01-05T08:0{seq}:00Z", "sampledValue": [{"value": wh}]}],
            )

        started = await cs.call(event("Started", 0, None), suppress=False)
        assert started.id_token_info is None  # NoAuthorization: nothing to refuse
        await cs.call(event("Updated", 1, 7000), suppress=False)
        await cs.call(event("Updated", 2, 9000), suppress=False)
        await cs.call(
            c201.BootNotification(
                charging_station={"vendor_name": "Acme", "model": "AC22"}, reason="Triggered"
            ),
            suppress=False,
        )
        q = Queries(rt.sessions)
        [tx] = await q.transactions(active=True)
        assert tx.meter_start_wh == 7000.0
        assert tx.energy_wh == 2000.0


async def test_connected_flags_are_reset_at_start(run_csms: RunCsms) -> None:
    async with run_csms(**OPEN) as rt:
        await rt.stations.register_charge_point("GHOST", site_id="depot")
        await rt.stations.connected("GHOST", "ocpp1.6", None)  # as a crash would leave it
    async with run_csms(**OPEN) as rt:
        view = await Queries(rt.sessions).charge_point("GHOST")
        assert view is not None
        assert not view.connected
        assert view.site_id == "depot"


async def test_self_registered_without_password_needs_self_registration_on(
    run_csms: RunCsms,
) -> None:
    async with (
        run_csms(allow_unknown_chargers=True) as rt,
        connect(rt.ocpp.port, "SR-1", "ocpp1.6") as cp,
    ):
        await boot16(cp)
    async with run_csms() as rt:  # self-registration switched off
        with pytest.raises(InvalidStatus) as exc:
            async with connect(rt.ocpp.port, "SR-1", "ocpp1.6"):
                pass
        assert exc.value.response.status_code == 401
        await rt.stations.register_charge_point("SR-1")  # an operator vouches for it
        async with connect(rt.ocpp.port, "SR-1", "ocpp1.6") as cp:
            assert (await boot16(cp)).status == "Accepted"
