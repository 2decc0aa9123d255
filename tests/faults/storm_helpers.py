"""Helpers of the PostgreSQL-restart and reconnect-storm tests: a PostgreSQL cluster that may be
restarted, a fresh database on it, and raw-frame chargers that keep a ledger of every message the
central system acknowledged (so a test can check that each one is stored exactly once).

The chargers here are deliberately not ``charge_point_sim``: a fault test needs to know exactly
which messages got a CALLRESULT, and to resend a message until it does (what OCPP asks of a
charger for transaction messages), whatever the answer was. They speak OCPP-J frames directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.typing import Subprotocol

PG_ADMIN = os.environ.get("CSMS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
# The cluster that serves PG_ADMIN, as pg_ctlcluster names it ("VERSION NAME").
PG_CLUSTER = os.environ.get("CSMS_TEST_PG_CLUSTER", "15 main").split()
PG_READY_TIMEOUT_S = 60.0
CALL, CALLRESULT, CALLERROR = 2, 3, 4


# --- PostgreSQL ----------------------------------------------------------------------------------


async def pg_problem() -> str | None:
    """Why PostgreSQL at PG_ADMIN cannot be used, or None."""
    import asyncpg  # type: ignore[import-untyped]

    try:
        conn = await asyncpg.connect(PG_ADMIN, timeout=3)
    except (OSError, asyncpg.PostgresError) as exc:
        return f"PostgreSQL not reachable at {PG_ADMIN}: {type(exc).__name__}: {exc}"
    await conn.close()
    return None


def restart_problem() -> str | None:
    """Why this test may not restart the cluster, or None (pg_ctlcluster present, we are root or
    postgres, the cluster exists)."""
    if shutil.which("pg_ctlcluster") is None or shutil.which("pg_lsclusters") is None:
        return "pg_ctlcluster not available (Debian's postgresql-common)"
    if os.geteuid() != 0 and os.environ.get("USER") != "postgres":
        return "restarting PostgreSQL needs root or the postgres user"
    listed = subprocess.run(
        ["pg_lsclusters", "--no-header", *PG_CLUSTER],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    if listed.returncode != 0 or "online" not in listed.stdout:
        return f"cluster {' '.join(PG_CLUSTER)} not online: {listed.stdout or listed.stderr}"
    return None


def pg_ctlcluster(action: str) -> None:
    """``pg_ctlcluster VERSION NAME action`` (``restart``: fast shutdown, then start)."""
    subprocess.run(
        ["pg_ctlcluster", *PG_CLUSTER, action], check=True, capture_output=True, timeout=120
    )


async def wait_pg_accepting(timeout_s: float = PG_READY_TIMEOUT_S) -> float:
    """Wait until PostgreSQL accepts connections again; returns the seconds waited."""
    import asyncpg

    start = time.monotonic()
    while True:
        try:
            conn = await asyncpg.connect(PG_ADMIN, timeout=2)
        except (OSError, asyncpg.PostgresError, TimeoutError):
            if time.monotonic() - start > timeout_s:
                raise
            await asyncio.sleep(0.05)
            continue
        await conn.close()
        return time.monotonic() - start


def ensure_postgres_running() -> None:
    """Start the cluster if it is down (after a failed restart); never raises."""
    listed = subprocess.run(
        ["pg_lsclusters", "--no-header", *PG_CLUSTER],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    if "online" not in listed.stdout:
        subprocess.run(["pg_ctlcluster", *PG_CLUSTER, "start"], check=False, timeout=120)


@contextlib.asynccontextmanager
async def fresh_pg_database() -> AsyncIterator[str]:
    """A new, empty database on PG_ADMIN's server (dropped afterwards); yields its URL."""
    import asyncpg

    name = f"csms_fault_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(PG_ADMIN, timeout=10)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}"
    finally:
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            await wait_pg_accepting()
            admin = await asyncpg.connect(PG_ADMIN, timeout=10)
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await admin.close()


# --- chargers that keep a ledger ----------------------------------------------------------------


@dataclass
class Ledger:
    """What the central system acknowledged (CALLRESULT), and what went wrong on the way."""

    # (charger, sample timestamp) -> energy register value of every acknowledged sample
    samples: dict[tuple[str, datetime], float] = field(default_factory=dict)
    # 1.6: (charger, transaction id it got, started_at, meter_start, meter_stop or None)
    tx16: dict[tuple[str, int], tuple[datetime, int, int | None]] = field(default_factory=dict)
    # 2.0.1: (charger, transaction id) -> acknowledged seqNos and whether Ended was acknowledged
    tx201: dict[tuple[str, str], set[int]] = field(default_factory=dict)
    ended201: set[tuple[str, str]] = field(default_factory=set)
    acked_calls: set[tuple[str, str]] = field(default_factory=set)  # (charger, unique id)
    # (sent, answered) monotonic times of every call (answered None: no CALLRESULT)
    spans: list[tuple[float, float | None]] = field(default_factory=list)
    call_errors: int = 0
    timeouts: int = 0
    resends: int = 0
    closed_by_server: int = 0
    reconnects: int = 0

    def calls_overlapping(self, start: float, end: float) -> int:
        """Calls in flight at some moment of [start, end]."""
        return sum(1 for s, a in self.spans if s <= end and (a is None or a >= start))


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class LedgerCharger:
    """One OCPP 1.6 or 2.0.1 charger over raw frames: transactions with meter values, each
    transaction message sent again until it gets a CALLRESULT (after a CALLERROR, a timeout or a
    reconnect), and a reconnect (no new boot) if the server closes the connection."""

    def __init__(
        self, cp_id: str, version: str, url: str, ledger: Ledger, call_timeout_s: float = 30.0
    ) -> None:
        self.cp_id = cp_id
        self.version = version  # "1.6" or "2.0.1"
        self.url = f"{url.rstrip('/')}/{cp_id}"
        self.ledger = ledger
        self.call_timeout_s = call_timeout_s
        self.ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._waiting: dict[str, asyncio.Future[list[Any]]] = {}
        self._ids = itertools.count(1)
        self._last_ts = datetime.now(UTC)
        self.energy_wh = 10_000
        self.pending_sample = (self._last_ts, 0)  # the reading in flight, ledgered once acked
        self.closing = False

    def _stamp(self) -> datetime:
        """Now, strictly after the previous stamp (samples are keyed by time)."""
        t = max(datetime.now(UTC), self._last_ts + timedelta(milliseconds=1))
        self._last_ts = t.replace(microsecond=t.microsecond // 1000 * 1000)
        return self._last_ts

    async def open(self, timeout_s: float = 60.0) -> None:
        """Connect (retrying until ``timeout_s``)."""
        proto = Subprotocol("ocpp1.6" if self.version == "1.6" else "ocpp2.0.1")
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self.ws = await connect(
                    self.url, subprotocols=[proto], proxy=None, open_timeout=10, ping_interval=None
                )
                break
            except (OSError, TimeoutError, InvalidHandshake):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
        self._reader = asyncio.create_task(self._read(self.ws))

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                msg = json.loads(raw)
                if msg[0] == CALL:
                    await ws.send(json.dumps([CALLRESULT, msg[1], _answer(msg[2], msg[3])]))
                elif (future := self._waiting.get(msg[1])) is not None and not future.done():
                    future.set_result(msg)
        except ConnectionClosed:
            pass
        finally:
            if not self.closing:
                self.ledger.closed_by_server += 1
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(ConnectionError("closed"))

    async def close(self) -> None:
        """Close the connection."""
        self.closing = True
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 5)
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    async def call(self, action: str, payload: dict[str, Any], deadline_s: float = 180.0) -> Any:
        """Send until a CALLRESULT comes back; returns its payload."""
        give_up = time.monotonic() + deadline_s
        first = True
        while True:
            if not first:
                self.ledger.resends += 1
            first = False
            if time.monotonic() > give_up:
                raise TimeoutError(f"{self.cp_id}: {action} never acknowledged")
            if self.ws is None or self._reader is None or self._reader.done():
                self.ledger.reconnects += 1
                await self.open()
            assert self.ws is not None
            uid = f"{self.cp_id}-{next(self._ids)}"
            future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
            self._waiting[uid] = future
            sent = time.monotonic()
            try:
                await self.ws.send(json.dumps([CALL, uid, action, payload]))
                answer = await asyncio.wait_for(future, self.call_timeout_s)
            except TimeoutError:
                self.ledger.timeouts += 1
                self.ledger.spans.append((sent, None))
                continue
            except (ConnectionError, ConnectionClosed):
                self.ledger.spans.append((sent, None))
                await asyncio.sleep(0.5)
                continue
            finally:
                self._waiting.pop(uid, None)
            if answer[0] == CALLRESULT:
                self.ledger.spans.append((sent, time.monotonic()))
                self.ledger.acked_calls.add((self.cp_id, uid))
                return answer[2]
            self.ledger.spans.append((sent, None))
            self.ledger.call_errors += 1
            await asyncio.sleep(0.5)  # a CALLERROR: send it again a little later

    async def boot(self) -> None:
        """BootNotification."""
        payload: dict[str, Any]
        if self.version == "1.6":
            payload = {"chargePointVendor": "Fault", "chargePointModel": "Ledger"}
        else:
            payload = {
                "reason": "PowerUp",
                "chargingStation": {"vendorName": "Fault", "model": "Ledger"},
            }
        await self.call("BootNotification", payload)

    def _sample(self, at: datetime) -> dict[str, Any]:
        self.energy_wh += 25
        self.pending_sample = (at, self.energy_wh)
        if self.version == "1.6":
            value: dict[str, Any] = {
                "value": str(self.energy_wh),
                "measurand": "Energy.Active.Import.Register",
                "unit": "Wh",
            }
        else:
            value = {
                "value": self.energy_wh,
                "measurand": "Energy.Active.Import.Register",
                "unitOfMeasure": {"unit": "Wh"},
            }
        return {"timestamp": _iso(at), "sampledValue": [value]}

    def _acked_sample(self) -> None:
        at, value = self.pending_sample
        self.ledger.samples[(self.cp_id, at)] = float(value)

    async def transaction(self, meter_values: int, pause_s: float) -> None:
        """One transaction: start, ``meter_values`` readings ``pause_s`` apart, stop."""
        if self.version == "1.6":
            await self._transaction16(meter_values, pause_s)
        else:
            await self._transaction201(meter_values, pause_s)

    async def _transaction16(self, meter_values: int, pause_s: float) -> None:
        started, meter_start = self._stamp(), self.energy_wh
        answer = await self.call(
            "StartTransaction",
            {
                "connectorId": 1,
                "idTag": "TAG1",
                "meterStart": meter_start,
                "timestamp": _iso(started),
            },
        )
        tx = int(answer["transactionId"])
        self.ledger.tx16[(self.cp_id, tx)] = (started, meter_start, None)
        for _ in range(meter_values):
            await asyncio.sleep(pause_s)
            sample = self._sample(self._stamp())
            await self.call(
                "MeterValues", {"connectorId": 1, "transactionId": tx, "meterValue": [sample]}
            )
            self._acked_sample()
        await asyncio.sleep(pause_s)
        stop = {
            "transactionId": tx,
            "meterStop": self.energy_wh,
            "timestamp": _iso(self._stamp()),
            "reason": "Local",
        }
        await self.call("StopTransaction", stop)
        self.ledger.tx16[(self.cp_id, tx)] = (started, meter_start, self.energy_wh)

    async def _transaction201(self, meter_values: int, pause_s: float) -> None:
        tx = uuid.uuid4().hex[:16]
        seqs = self.ledger.tx201.setdefault((self.cp_id, tx), set())
        for seq in range(meter_values + 2):
            if seq > 0:
                await asyncio.sleep(pause_s)
            kind = "Started" if seq == 0 else ("Ended" if seq == meter_values + 1 else "Updated")
            at = self._stamp()
            info: dict[str, Any] = {"transactionId": tx}
            event: dict[str, Any] = {
                "eventType": kind,
                "timestamp": _iso(at),
                "triggerReason": {"Started": "CablePluggedIn", "Updated": "MeterValuePeriodic"}.get(
                    kind, "StopAuthorized"
                ),
                "seqNo": seq,
                "transactionInfo": info,
                "evse": {"id": 1, "connectorId": 1},
                "meterValue": [self._sample(at)],
            }
            if kind == "Started":
                event["idToken"] = {"idToken": "TAG1", "type": "ISO14443"}
            if kind == "Ended":
                info["stoppedReason"] = "Local"
            await self.call("TransactionEvent", event)
            self._acked_sample()
            seqs.add(seq)
        self.ledger.ended201.add((self.cp_id, tx))

    async def run(self, stop: asyncio.Event, meter_values: int, pause_s: float) -> None:
        """Transactions one after another until ``stop`` is set (the last one is finished)."""
        while not stop.is_set():
            await self.transaction(meter_values, pause_s)


def _answer(action: str, request: dict[str, Any]) -> dict[str, Any]:
    """A valid answer to the central system's calls that matter at boot."""
    if action == "GetConfiguration":
        return {"configurationKey": [], "unknownKey": list(request.get("key") or [])}
    if action == "GetVariables":
        return {
            "getVariableResult": [
                {
                    "attributeStatus": "UnknownVariable",
                    "component": item["component"],
                    "variable": item["variable"],
                }
                for item in request.get("getVariableData") or []
            ]
        }
    if action in ("SetChargingProfile", "ClearChargingProfile", "ChangeConfiguration"):
        return {"status": "Accepted"}
    if action in ("GetCompositeSchedule", "TriggerMessage", "SetVariables"):
        return {"status": "Rejected"}
    return {}
