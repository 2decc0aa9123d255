"""ACN-Data replay: our CSV reader, the local-date filter, the mapping onto chargers, and a whole
CLI run (site file + acn scenario + end-of-run summary) against the minimal server."""

from __future__ import annotations

import asyncio
import gzip
import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from charge_point_sim import ChargerSpec
from charge_point_sim.acn import (
    acn_arrivals,
    parse_acn_scenario,
    parse_sessions,
    read_sessions,
    sessions_on,
)
from charge_point_sim.cli import main, summary
from charge_point_sim.errors import InvalidModelError
from charge_point_sim.scenario import ChargerSlot
from tests.charge_point_sim.ocpp_server import ocpp_server

DATA = Path("/work/shared/data/acn/caltech_2019-05_2019-08.csv.gz")
HEADER = (
    "arrival,departure,requested_energy (kWh),delivered_energy (kWh),station_id,session_id,"
    "estimated_departure,claimed"
)
ROWS = [
    # 20:00 local on May 1st is already May 2nd in UTC: still a May 1st session.
    "2019-05-01 20:00:00-07:00,2019-05-01 23:00:00-07:00,10.0,5.0,CA-1,s1,,True",
    "2019-05-01 08:00:00-07:00,2019-05-01 09:00:00-07:00,20.0,4.0,CA-9,s2,,False",
    "2019-05-01 08:30:00-07:00,2019-05-01 10:00:00-07:00,8.0,2.5,CA-8,s3,,True",
    "2019-05-02 01:00:00-07:00,2019-05-02 05:00:00-07:00,8.0,3.0,CA-1,s4,,True",
    "2019-04-30 23:59:00-07:00,2019-05-01 05:00:00-07:00,8.0,3.0,CA-1,s5,,True",
]


def test_sessions_of_a_local_date() -> None:
    sessions = parse_sessions([HEADER, *ROWS])
    day = sessions_on(sessions, date(2019, 5, 1))
    assert [s.session_id for s in day] == ["s2", "s3", "s1"]
    assert day[0].delivered_kwh == 4.0
    assert day[0].requested_kwh == 20.0
    assert day[2].arrival == datetime(2019, 5, 2, 3, 0, tzinfo=UTC)


def test_bad_files_and_scenarios() -> None:
    with pytest.raises(InvalidModelError, match="missing columns"):
        parse_sessions(["arrival,departure", "x,y"])
    with pytest.raises(InvalidModelError, match="line 2"):
        parse_sessions([HEADER, "2019-05-01 08:00:00,2019-05-01 09:00:00-07:00,1,1,CA,s,,True"])
    assert parse_acn_scenario("random:1") is None
    sc = parse_acn_scenario("acn:/a/b:c.csv.gz:2019-05-01")
    assert sc is not None
    assert (str(sc.path), sc.day) == ("/a/b:c.csv.gz", date(2019, 5, 1))
    with pytest.raises(InvalidModelError):
        parse_acn_scenario("acn:file.csv.gz:May")


def test_the_real_file_has_a_caltech_day() -> None:
    day = sessions_on(read_sessions(DATA), date(2019, 5, 1))
    assert 10 <= len(day) <= 100
    assert all(s.delivered_kwh >= 0 and s.departure > s.arrival for s in day)


def test_sessions_go_to_their_station_else_round_robin_to_free_connectors() -> None:
    sessions = sessions_on(parse_sessions([HEADER, *ROWS]), date(2019, 5, 1))
    slots = [
        ChargerSlot("A", ChargerSpec.uniform(2, 7000.0, phases=1), ("CA-1",)),
        ChargerSlot("B", ChargerSpec.uniform(1, 11000.0)),
    ]
    arrivals = acn_arrivals(sessions, slots)
    got = {
        a.request.id_tag: (cid, a.request.connector_id) for cid, v in arrivals.items() for a in v
    }
    # s2 (CA-9) round-robin skips A/1 (bound to CA-1) -> A/2; s3 arrives while A/2 is busy
    # -> B/1; s1 (CA-1) -> A/1.
    assert got == {"ACN0001": ("A", 2), "ACN0002": ("B", 1), "ACN0003": ("A", 1)}
    first = arrivals["A"][0].request
    assert first.ev.needs_wh == pytest.approx(4000.0)
    assert first.ev.room_wh == pytest.approx(4000.0)  # it stops drawing once it got that
    assert first.ev.max_power_w == 7000.0
    assert first.connector_id == 2
    assert first.departure == sessions[0].departure


async def test_a_cli_run_replays_acn_sessions_on_a_site_and_prints_the_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "acn.csv.gz"
    rows = [
        "2019-05-01 08:00:00-07:00,2019-05-01 08:08:00-07:00,20.0,0.5,CA-9,s1,,True",
        "2019-05-01 08:01:00-07:00,2019-05-01 08:20:00-07:00,8.0,50.0,CA-1,s2,,True",
    ]
    data.write_bytes(gzip.compress("\n".join([HEADER, *rows]).encode()))
    site = tmp_path / "site.json"
    site.write_text(
        json.dumps(
            {
                "site_cap_kw": 10,
                "chargers": [
                    {"id": "A", "version": "2.0.1", "max_power_kw": 7, "stations": ["CA-1"]},
                    {
                        "id": "B",
                        "version": "1.6",
                        "max_power_kw": 11,
                        "quirks": {"only_amps": True},
                    },
                ],
            }
        )
    )
    report = tmp_path / "report.json"
    async with ocpp_server() as server:
        code = await asyncio.to_thread(
            main,
            [
                "run",
                "--url",
                server.url,
                "--site",
                str(site),
                "--scenario",
                f"acn:{data}:2019-05-01",
                "--start",
                "2019-05-01T08:00:00-07:00",
                "--duration",
                "600",
                "--speed",
                "600",
                "--quiet",
                "--report",
                str(report),
            ],
        )
    assert code == 0
    out = capsys.readouterr().out
    result = json.loads(report.read_text())
    sessions = {s["charger"]: s for s in result["sessions"]}
    assert sessions["B"]["met"]  # 0.5 kWh by 08:08
    assert sessions["B"]["delivered_kwh"] == pytest.approx(0.5, abs=0.002)  # and no more
    assert not sessions["A"]["met"]  # 50 kWh in 10 minutes: no
    assert sessions["A"]["requested_kwh"] == 50.0
    assert result["site_cap_kw"] == 10
    assert result["site_peak_kw"] > 10  # both charging at once: 7 + 11 kW
    assert "requested kWh" in out
    assert "departure met" in out
    assert "site metered peak" in out
    assert "EXCEEDED" in out
    assert summary(result) == out
