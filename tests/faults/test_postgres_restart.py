"""PostgreSQL restarted under load: the central system keeps every charger connected and loses
nothing a charger was told was stored.

The central system (``python -m csms``) runs as a child process on a fresh PostgreSQL database.
60 chargers (OCPP 1.6 and 2.0.1 alternating, raw frames: tests/faults/storm_helpers.py) run
transactions back to back: a start, four meter readings 0.4 s apart, a stop (1.6 StartTransaction,
MeterValues, StopTransaction; 2.0.1 TransactionEvent Started/Updated/Ended, each with a reading),
about 130 messages a second in all. After 3 s of that, PostgreSQL is restarted (``pg_ctlcluster
15 main restart``: fast shutdown, which ends every session, then start; or, in the second case,
stopped for 20 s, longer than the central system's 15 s retry budget) and 4 new chargers connect
and boot while it is down; the load goes on for 6 s after it is back, then each charger finishes
its transaction.

A charger sends each message again until it gets a CALLRESULT (after a CALLERROR or a timeout),
as OCPP asks of transaction messages. Checked afterwards:

- no connection was closed by the server, the chargers that connected during the outage got in
  and booted, and the central system is still running;
- when the outage is shorter than the central system's retry budget (15 s), no call got a
  CALLERROR: each waited and was answered once its data was stored; when it is longer, the calls
  that waited out the budget got a CALLERROR and were sent again;
- calls were in flight during the outage (the test did exercise it);
- every reading the central system acknowledged is stored exactly once, with its value, and
  nothing else is (every reading sent was eventually acknowledged);
- every acknowledged 1.6 transaction is stored once, under the id the charger was given, with
  its start and stop registers; every acknowledged 2.0.1 event is stored once (by seqNo) and
  every ended transaction is closed;
- every acknowledged call is in the raw message log (the log writer retried, it did not drop).

Skipped, with the reason, when PostgreSQL is not reachable or this process may not restart it.
PostgreSQL is always running again when the test ends (a fixture makes sure, pass or fail).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import pytest

from csms.db.engine import RETRY_BUDGET_S
from tests.faults.processes import CsmsProcess
from tests.faults.storm_helpers import (
    Ledger,
    LedgerCharger,
    ensure_postgres_running,
    fresh_pg_database,
    pg_ctlcluster,
    pg_problem,
    restart_problem,
    wait_pg_accepting,
)

CHARGERS = 60
LATE = 4  # chargers that connect for the first time during the outage
LATE_AFTER_S = 0.3  # after the restart began: PostgreSQL is shutting down or starting
STOPPED_S = RETRY_BUDGET_S + 5.0  # the long outage: calls in flight give up and are resent
METER_VALUES = 4
PAUSE_S = 0.4
BEFORE_S = 3.0
AFTER_S = 6.0
FINISH_TIMEOUT_S = 240.0
LOG_FLUSH_TIMEOUT_S = 60.0


@pytest.fixture
def postgres_restored() -> Iterator[None]:
    """Whatever happens in the test, PostgreSQL runs again at its end."""
    try:
        yield
    finally:
        ensure_postgres_running()
        asyncio.run(wait_pg_accepting())


async def _outage(kind: str) -> None:
    """``restart``: fast shutdown and start (a few seconds); ``stopped``: down for longer than
    the central system's retry budget."""
    if kind == "restart":
        await asyncio.to_thread(pg_ctlcluster, "restart")
        return
    await asyncio.to_thread(pg_ctlcluster, "stop")
    await asyncio.sleep(STOPPED_S)
    await asyncio.to_thread(pg_ctlcluster, "start")


async def _join(
    charger: LedgerCharger, stop: asyncio.Event, runs: list[asyncio.Task[None]]
) -> None:
    """Connect, boot and join the load."""
    await charger.open()
    await charger.boot()
    runs.append(asyncio.create_task(charger.run(stop, METER_VALUES, PAUSE_S)))


def _utc(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


@pytest.mark.parametrize("outage", ["restart", "stopped"])
async def test_postgres_restart_under_load_loses_nothing(
    tmp_path: Path, postgres_restored: None, outage: str
) -> None:
    if (problem := await pg_problem()) is not None:
        pytest.skip(problem)
    if (problem := restart_problem()) is not None:
        pytest.skip(problem)

    async with fresh_pg_database() as db_url:
        csms = CsmsProcess(
            tmp_path,
            database_url=db_url,
            settings={
                "CSMS_OCPP__ALLOW_UNKNOWN_CHARGERS": "true",
                "CSMS_OCPP__ACCEPT_UNKNOWN_ID_TOKENS": "true",
            },
        )
        csms.start()
        ledger = Ledger()
        chargers = [
            LedgerCharger(f"PGR{i:03d}", "1.6" if i % 2 == 0 else "2.0.1", csms.url, ledger)
            for i in range(CHARGERS + LATE)
        ]
        chargers, late = chargers[:CHARGERS], chargers[CHARGERS:]
        try:
            await asyncio.to_thread(csms.wait_ready)
            await asyncio.gather(*(c.open() for c in chargers))
            await asyncio.gather(*(c.boot() for c in chargers))
            stop = asyncio.Event()
            runs = [asyncio.create_task(c.run(stop, METER_VALUES, PAUSE_S)) for c in chargers]
            await asyncio.sleep(BEFORE_S)

            down = time.monotonic()
            restart = asyncio.create_task(_outage(outage))
            # New chargers connect while PostgreSQL goes down: their handshake (credential check,
            # registration) and boot must wait for it rather than fail.
            await asyncio.sleep(LATE_AFTER_S)
            joining = asyncio.gather(*(_join(c, stop, runs) for c in late))
            await restart
            await wait_pg_accepting()
            back = time.monotonic()
            await asyncio.wait_for(joining, FINISH_TIMEOUT_S)

            await asyncio.sleep(AFTER_S)
            stop.set()
            await asyncio.wait_for(asyncio.gather(*runs), FINISH_TIMEOUT_S)
            closed_by_server = ledger.closed_by_server  # before we close them ourselves
            alive = csms.alive
            db_rows = await _read_back(db_url, ledger)
        finally:
            await asyncio.gather(*(c.close() for c in chargers + late))
            csms.stop()
        log_text = "".join(p.read_text(errors="replace") for p in tmp_path.glob("csms-*.log"))

    retries = log_text.count("database unavailable, retrying")
    in_outage = ledger.calls_overlapping(down, back)
    longest = max((a - s for s, a in ledger.spans if a is not None), default=0.0)
    print(
        f"\n{outage}: outage {back - down:.2f} s; longest answered call {longest:.2f} s; "
        f"calls {len(ledger.spans)}, in flight during the "
        f"outage {in_outage}; CALLERRORs {ledger.call_errors}, timeouts {ledger.timeouts}, "
        f"charger resends {ledger.resends}; operations the central system retried {retries}; "
        f"readings {len(ledger.samples)}, 1.6 transactions {len(ledger.tx16)}, 2.0.1 "
        f"transactions {len(ledger.tx201)}"
    )

    assert alive, csms.output()
    if back - down < RETRY_BUDGET_S - 5.0:
        # Shorter than the central system's retry budget: every call waited and succeeded.
        assert ledger.call_errors == 0, "CALLERRORs although the outage was short"
    if back - down > RETRY_BUDGET_S + 2.0:
        # Longer: calls in flight got a CALLERROR once the budget was spent (and were resent):
        # the path the checks below prove loses nothing was taken.
        assert ledger.call_errors > 0
    assert closed_by_server == 0, "the server closed connections during the restart"
    assert ledger.reconnects == 0
    assert in_outage > 0, "no call was in flight while PostgreSQL was down: nothing was tested"
    assert "connection handler failed" not in log_text

    counts = Counter(db_rows.samples)
    assert [k for k, n in counts.items() if n > 1] == [], "readings stored twice"
    assert set(counts) == set(ledger.samples), "readings lost or unexpected"
    assert db_rows.values == ledger.samples

    assert len(db_rows.tx16) == len(ledger.tx16), "1.6 transactions lost or stored twice"
    assert db_rows.tx16 == ledger.tx16

    event_counts = Counter(db_rows.events201)
    assert [k for k, n in event_counts.items() if n > 1] == [], "events stored twice"
    assert set(event_counts) == {
        (cp, tx, seq) for (cp, tx), seqs in ledger.tx201.items() for seq in seqs
    }
    assert db_rows.ended201 == ledger.ended201

    assert db_rows.missing_log == set(), "acknowledged calls missing from the message log"


@dataclass
class Stored:
    """What the database holds after the run."""

    samples: list[tuple[str, datetime]]  # every energy reading row (duplicates would repeat)
    values: dict[tuple[str, datetime], float]
    tx16: dict[tuple[str, int], tuple[datetime, int, int | None]]
    events201: list[tuple[str, str, int]]
    ended201: set[tuple[str, str]]
    missing_log: set[tuple[str, str]]  # acknowledged calls not in the message log


async def _read_back(db_url: str, ledger: Ledger) -> Stored:
    conn = await asyncpg.connect(db_url, timeout=10)
    try:
        rows = await conn.fetch(
            "SELECT charge_point_id, timestamp, value FROM meter_value "
            "WHERE measurand = 'Energy.Active.Import.Register'"
        )
        tx_rows = await conn.fetch(
            "SELECT charge_point_id, ocpp_id, started_at, meter_start_wh, meter_stop_wh "
            "FROM \"transaction\" WHERE ocpp_version = 'ocpp1.6'"
        )
        ev_rows = await conn.fetch(
            "SELECT t.charge_point_id, t.ocpp_id, e.seq_no FROM transaction_event e "
            'JOIN "transaction" t ON t.id = e.transaction_id'
        )
        ended_rows = await conn.fetch(
            'SELECT charge_point_id, ocpp_id FROM "transaction" '
            "WHERE ocpp_version = 'ocpp2.0.1' AND NOT active"
        )
        # The message log is written behind the answers: wait (bounded) until it has caught up.
        deadline = time.monotonic() + LOG_FLUSH_TIMEOUT_S
        while True:
            logged = {
                (r["charge_point_id"], r["unique_id"])
                for r in await conn.fetch(
                    "SELECT charge_point_id, unique_id FROM message_log WHERE direction = 'in'"
                )
            }
            missing = ledger.acked_calls - logged
            if not missing or time.monotonic() > deadline:
                break
            await asyncio.sleep(1.0)
    finally:
        await conn.close()
    return Stored(
        samples=[(r["charge_point_id"], _utc(r["timestamp"])) for r in rows],
        values={(r["charge_point_id"], _utc(r["timestamp"])): r["value"] for r in rows},
        tx16={
            (r["charge_point_id"], int(r["ocpp_id"])): (
                _utc(r["started_at"]),
                int(r["meter_start_wh"]),
                None if r["meter_stop_wh"] is None else int(r["meter_stop_wh"]),
            )
            for r in tx_rows
        },
        events201=[(r["charge_point_id"], r["ocpp_id"], int(r["seq_no"])) for r in ev_rows],
        ended201={(r["charge_point_id"], r["ocpp_id"]) for r in ended_rows},
        missing_log=missing,
    )
