"""The command line: plan, compare, scenario; exit codes and messages."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from optimizer.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
WORKPLACE = str(EXAMPLES / "workplace_40.json")


def test_plan_prints_kpis_and_writes_the_plan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sub" / "plan.json"
    assert main(["plan", WORKPLACE, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "served ratio" in text
    assert "optimal" in text
    assert "Sessions, least served first" in text
    plan = json.loads(out.read_text())
    assert plan["status"] == "optimal"
    assert plan["method"] == "lp"


def test_plan_progress_goes_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", WORKPLACE, "--method", "milp"]) == 0
    captured = capsys.readouterr()
    assert "LP relaxation" in captured.err
    assert "LP relaxation" not in captured.out
    assert main(["plan", WORKPLACE, "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_compare_shows_every_method(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", WORKPLACE, "--quiet"]) == 0
    text = capsys.readouterr().out
    for name in ("lp", "milp", "heuristic", "earliest_deadline", "equal_share", "uncontrolled"):
        assert name in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["plan", "missing.json"], "missing.json: no such file"),
        (["plan", WORKPLACE, "--method", "magic"], "unknown method 'magic'"),
        (["plan", WORKPLACE, "--gap", "2"], "mip_gap"),
        (["plan", WORKPLACE, "--peak-weight", "0.95"], "energy always comes first"),
    ],
)
def test_bad_input_exits_2_with_a_message(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_malformed_scenario_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(
        '{"site": {"start": "2026-01-01T00:00Z", "capacity_kw": 5}, "sessions": [{"id": "x"}]}'
    )
    assert main(["plan", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "sessions[0].arrival: is required" in err
    assert "sessions[0].energy_kwh: is required" in err


def _acn_file(path: Path) -> Path:
    rows = [
        "arrival,departure,requested_energy (kWh),delivered_energy (kWh),station_id,session_id,"
        "estimated_departure,claimed",
        "2019-06-14 07:10:00-07:00,2019-06-14 15:00:00-07:00,30.0,12.5,CA-1,x1,"
        "2019-06-14 16:00:00-07:00,True",
        "2019-06-14 07:10:30-07:00,2019-06-14 09:00:00-07:00,10.0,8.0,CA-1,x2,,False",
        "2019-06-15 08:00:00-07:00,2019-06-15 12:00:00-07:00,10.0,8.0,CA-2,x3,,True",
    ]
    f = path / "acn.csv.gz"
    f.write_bytes(gzip.compress(("\n".join(rows) + "\n").encode()))
    return f


def test_scenario_from_acn(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _acn_file(tmp_path)
    out = tmp_path / "day.json"
    code = main(
        [
            "scenario",
            "--from-acn",
            str(src),
            "--date",
            "2019-06-14",
            "--capacity-kw",
            "20",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    data = json.loads(out.read_text())
    assert "CC BY 4.0" in data["source"]
    assert data["site"]["start"] == "2019-06-14T00:00:00-07:00"
    assert [s["id"] for s in data["sessions"]] == ["CA-1@07:10", "CA-1@07:10#2"]
    assert [s["energy_kwh"] for s in data["sessions"]] == [12.5, 8.0]
    assert data["sessions"][0]["max_power_kw"] == 6.6
    assert main(["plan", str(out), "--quiet"]) == 0


def test_scenario_requested_energy_and_estimated_departure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = _acn_file(tmp_path)
    code = main(
        [
            "scenario",
            "--from-acn",
            str(src),
            "--date",
            "2019-06-14",
            "--capacity-kw",
            "20",
            "--energy",
            "requested",
            "--departure",
            "estimated",
        ]
    )
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["sessions"][0]["energy_kwh"] == 30.0
    assert data["sessions"][0]["departure"] == "2019-06-14T16:00:00-07:00"
    assert data["sessions"][1]["departure"] == "2019-06-14T09:00:00-07:00"  # no estimate: actual


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--date", "2019-07-01"],
            "no sessions arrive on 2019-07-01; the file covers 2019-06-14 to 2019-06-15",
        ),
        (["--date", "14/06/2019"], "YYYY-MM-DD"),
        (["--date", "2019-06-14", "--from-acn", "nope.csv.gz"], "no such file"),
    ],
)
def test_scenario_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    src = _acn_file(tmp_path)
    base = ["scenario", "--from-acn", str(src), "--capacity-kw", "20"]
    assert main(base + args) == 2
    assert message in capsys.readouterr().err


def test_acn_file_that_is_not_acn(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "other.csv"
    f.write_text("a,b\n1,2\n")
    assert (
        main(["scenario", "--from-acn", str(f), "--date", "2019-06-14", "--capacity-kw", "5"]) == 2
    )
    assert "lacks the ACN columns" in capsys.readouterr().err


def test_module_entry_point_runs() -> None:
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "optimizer", "plan", WORKPLACE, "--quiet", "--sessions", "0"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0
    assert proc.stdout.startswith(
        "Site workplace"
    )  # nothing printed before: HiGHS's banner is kept off stdout
    assert "Running HiGHS" not in proc.stdout


def test_scenario_on_a_daylight_saving_day_spans_25_hours(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 3 November 2019: California falls back from -07:00 to -08:00 at 02:00.
    f = tmp_path / "dst.csv"
    f.write_text(
        "arrival,departure,requested_energy (kWh),delivered_energy (kWh),station_id,session_id,"
        "estimated_departure,claimed\n"
        "2019-11-03 00:30:00-07:00,2019-11-03 09:00:00-08:00,10,8,CA-1,x,,True\n"
        "2019-11-03 23:30:00-08:00,2019-11-04 06:00:00-08:00,10,8,CA-2,y,,True\n"
    )
    assert (
        main(["scenario", "--from-acn", str(f), "--date", "2019-11-03", "--capacity-kw", "9"]) == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert data["site"]["start"] == "2019-11-03T00:00:00-07:00"
    assert data["site"]["horizon_steps"] == 100  # 25 h of 15 min
    assert len(data["sessions"]) == 2
    assert (
        main(
            [
                "scenario",
                "--from-acn",
                str(f),
                "--date",
                "2019-11-03",
                "--capacity-kw",
                "9",
                "--timezone",
                "Mars/Olympus",
            ]
        )
        == 2
    )
    assert "unknown time zone" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (gzip.compress(b"arrival,departure\n")[:-6], "not a readable (gzip) CSV"),
        (b"\xff\xfe\x00bad", "not a readable"),
        (
            b"arrival,departure,requested_energy (kWh),delivered_energy (kWh),station_id,session_id,"
            b"estimated_departure,claimed\n2019-06-14 07:00:00-07:00,2019-06-14 09:00:00-07:00\n",
            "line 2",
        ),
        (
            b"arrival,departure,requested_energy (kWh),delivered_energy (kWh),station_id,session_id,"
            b"estimated_departure,claimed\n2019-06-14 07:00:00,2019-06-14 09:00:00-07:00,1,1,A,x,,T\n",
            "no UTC offset",
        ),
    ],
)
def test_broken_acn_files_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, message: str
) -> None:
    f = tmp_path / "broken.csv.gz"
    f.write_bytes(content)
    assert (
        main(["scenario", "--from-acn", str(f), "--date", "2019-06-14", "--capacity-kw", "5"]) == 2
    )
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--step-minutes", "0"], "--step-minutes"),
        (["--step-minutes", "nan"], "--step-minutes"),
        (["--horizon-steps", "100000000"], "horizon_steps"),
    ],
)
def test_bad_scenario_flags_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    src = _acn_file(tmp_path)
    args = ["scenario", "--from-acn", str(src), "--date", "2019-06-14", "--capacity-kw", "5"]
    assert main(args + flags) == 2
    assert message in capsys.readouterr().err


def test_numbers_beyond_float_range_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "huge.json"
    f.write_text('{"site": {"start": "2026-01-01T00:00Z", "capacity_kw": 1' + "0" * 400 + "}}")
    assert main(["plan", str(f)]) == 2
    assert "site.capacity_kw" in capsys.readouterr().err
