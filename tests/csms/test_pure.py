"""Pure pieces of the OCPP adapter: frame checks, payload mapping, auth headers, paths, settings."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from websockets.datastructures import Headers

from csms.__main__ import build_settings, main
from csms.db.engine import DatabaseUrlError, async_url
from csms.domain.events import MeterSample, energy_register_wh
from csms.ocpp import mapping16, mapping201
from csms.ocpp.frames import check_frame, fix_outgoing
from csms.ocpp.parsing import ocpp_time, parse_float, parse_time
from csms.ocpp.server import basic_auth, charge_point_id_from_path, offered_subprotocols
from csms.services.passwords import hash_password, verify_password

NOW = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("frame", "version", "code", "uid"),
    [
        ("nope", "ocpp1.6", "FormationViolation", "-1"),
        ("nope", "ocpp2.0.1", "FormatViolation", "-1"),
        ("[]", "ocpp1.6", "FormationViolation", "-1"),
        ('[9, "u1"]', "ocpp2.0.1", "MessageTypeNotSupported", "u1"),
        ('[2, "u2", "Heartbeat", []]', "ocpp1.6", "FormationViolation", "u2"),
        ('[3, "u3"]', "ocpp1.6", "FormationViolation", "u3"),
        ('[2, 17, "Heartbeat", {}]', "ocpp1.6", "FormationViolation", "-1"),
        ("[" * 100000 + "]" * 100000, "ocpp1.6", "FormationViolation", "-1"),
    ],
)
def test_bad_frames(frame: str, version: str, code: str, uid: str) -> None:
    reply = check_frame(frame, version)
    assert reply is not None
    kind, got_uid, got_code, _desc, details = json.loads(reply)
    assert (kind, got_uid, got_code, details) == (4, uid, code, {})


def test_good_frames_and_unknown_actions() -> None:
    assert check_frame('[2, "a", "Heartbeat", {}]', "ocpp1.6") is None
    assert check_frame('[3, "a", {}]', "ocpp1.6") is None
    assert check_frame('[4, "a", "InternalError", "x", {}]', "ocpp1.6") is None
    reply = check_frame('[2, "a", "Teleport", {}]', "ocpp1.6", frozenset({"Heartbeat"}))
    assert reply is not None
    assert json.loads(reply)[2] == "NotImplemented"


def test_outgoing_1_6_error_codes_use_the_1_6_spelling() -> None:
    out = fix_outgoing('[4,"x","FormatViolation","bad",{}]', "ocpp1.6")
    assert '"FormationViolation"' in out
    assert (
        fix_outgoing('[4,"x","FormatViolation","bad",{}]', "ocpp2.0.1").count("FormatViolation")
        == 1
    )


def test_mapping_16() -> None:
    boot = mapping16.boot(
        {"charge_point_vendor": "V", "charge_point_model": "M", "firmware_version": "1"}
    )
    assert (boot.vendor, boot.model, boot.firmware_version) == ("V", "M", "1")
    st = mapping16.status({"connector_id": 2, "error_code": "NoError", "status": "Charging"}, NOW)
    # 1.6 connector N is EVSE N; no timestamp sent: None (the newest status wins).
    assert (st.evse_id, st.connector_id, st.status, st.error_code, st.timestamp) == (
        2,
        2,
        "Charging",
        None,
        None,
    )
    samples = mapping16.samples(
        [
            {
                "timestamp": "2026-01-05T09:00:00+01:00",
                "sampled_value": [{"value": "7"}, {"value": "x"}],
            },
            {
                "sampled_value": [
                    {"value": "1", "format": "SignedData"},
                    {"value": "3", "measurand": "SoC", "unit": "Percent"},
                ]
            },
        ],
        NOW,
    )
    assert [(s.measurand, s.value, s.unit, s.timestamp) for s in samples] == [
        ("Energy.Active.Import.Register", 7.0, "Wh", NOW),
        ("SoC", 3.0, "Percent", NOW),
    ]
    stop = mapping16.stop({"transaction_id": 5, "meter_stop": 120, "timestamp": "bad"}, NOW)
    assert (stop.ocpp_id, stop.meter_stop_wh, stop.timestamp) == ("5", 120.0, NOW)


def test_mapping_201() -> None:
    ev = mapping201.transaction_event(
        {
            "event_type": "Updated",
            "timestamp": "2026-01-05T08:00:00Z",
            "trigger_reason": "MeterValuePeriodic",
            "seq_no": 4,
            "offline": True,
            "transaction_info": {"transaction_id": "T1", "charging_state": "Charging"},
            "evse": {"id": 2},
            "meter_value": [
                {
                    "timestamp": "2026-01-05T08:00:00Z",
                    "sampled_value": [{"value": 1.5, "unit_of_measure": {"unit": "kWh"}}],
                }
            ],
        },
        NOW,
    )
    assert (ev.ocpp_id, ev.seq_no, ev.offline, ev.evse_id, ev.connector_id) == ("T1", 4, True, 2, 1)
    assert energy_register_wh(ev.samples) == 1500.0
    needs = mapping201.needs(
        {
            "evse_id": 1,
            "charging_needs": {
                "requested_energy_transfer": "AC_three_phase",
                "departure_time": "2026-01-05T17:00:00Z",
                "ac_charging_parameters": {
                    "energy_amount": 30000,
                    "ev_min_current": 6,
                    "ev_max_current": 32,
                    "ev_max_voltage": 230,
                },
            },
        },
        NOW,
    )
    assert needs.energy_wh == 30000.0
    assert needs.departure == datetime(2026, 1, 5, 17, tzinfo=UTC)
    # AC limits are per phase (2.0.1 ACChargingParametersType): three phases here.
    assert needs.max_power_w == 32 * 230 * 3
    assert needs.min_power_w == 6 * 230 * 3


@pytest.mark.parametrize(
    ("transfer", "volts", "watts"),
    [
        ("AC_single_phase", 230, 16 * 230),
        ("AC_two_phase", 230, 16 * 230 * 2),
        ("AC_three_phase", 400, 16 * 400 / 3**0.5 * 3),  # line-to-line voltage
        (None, 230, 16 * 230),  # unknown: one phase, the cautious reading
    ],
)
def test_ev_ac_limits_count_the_phases(transfer: str | None, volts: float, watts: float) -> None:
    needs = mapping201.needs(
        {
            "evse_id": 1,
            "charging_needs": {
                "requested_energy_transfer": transfer,
                "ac_charging_parameters": {
                    "energy_amount": 1,
                    "ev_min_current": 6,
                    "ev_max_current": 16,
                    "ev_max_voltage": volts,
                },
            },
        },
        NOW,
    )
    assert needs.max_power_w == pytest.approx(watts)


def test_parsing_helpers() -> None:
    assert parse_time("2026-01-05T08:00:00", NOW) == NOW  # naive: taken as UTC
    assert parse_time(17, NOW) == NOW
    assert parse_float("1e400") is None
    assert parse_float(True) is None
    assert ocpp_time(NOW) == "2026-01-05T08:00:00.000Z"
    assert energy_register_wh([MeterSample(NOW, "Power.Active.Import", 5.0)]) is None


def test_paths_auth_and_subprotocols() -> None:
    assert charge_point_id_from_path("/ocpp/CP%201") == "CP 1"
    assert charge_point_id_from_path("/ocpp/") is None
    assert charge_point_id_from_path("/ocpp/a/b") is None
    assert charge_point_id_from_path("/other/CP") is None
    assert charge_point_id_from_path("/ocpp/" + "x" * 65) is None
    h = Headers({"Authorization": "Basic Q1AxOnNlY3JldA=="})  # CP1:secret
    assert basic_auth(h, "CP1") == "secret"
    assert basic_auth(h, "CP2") is None  # user must be the charger id
    assert basic_auth(Headers({"Authorization": "Basic !!!"}), "CP1") is None
    assert offered_subprotocols(Headers([("Sec-WebSocket-Protocol", "ocpp1.6, ocpp2.0.1")])) == [
        "ocpp1.6",
        "ocpp2.0.1",
    ]


def test_passwords_are_hashed() -> None:
    stored = hash_password("correct horse")
    assert "correct horse" not in stored
    assert verify_password("correct horse", stored)
    assert not verify_password("wrong", stored)
    assert not verify_password("x", "garbage")


def test_database_urls() -> None:
    assert async_url("sqlite:///x.db") == "sqlite+aiosqlite:///x.db"
    assert async_url("postgresql://u:p@h/db") == "postgresql+asyncpg://u:p@h/db"
    with pytest.raises(DatabaseUrlError, match="unsupported database 'mysql'"):
        async_url("mysql://h/db")
    with pytest.raises(DatabaseUrlError, match="cannot read"):
        async_url("::::")
    # A password in a URL that cannot be used is not echoed.
    with pytest.raises(DatabaseUrlError) as refused:
        async_url("mysql://u:hunter2@h/db")
    assert "hunter2" not in str(refused.value)


def test_flags_override_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CSMS_OCPP__PORT", "9100")
    monkeypatch.setenv("CSMS_DATABASE__URL", "sqlite:///env.db")
    s = build_settings([])
    assert s.ocpp.port == 9100
    assert s.database.url == "sqlite:///env.db"
    s = build_settings(
        ["--ocpp-port", "9200", "--database-url", "sqlite:///flag.db", "--allow-unknown-chargers"]
    )
    assert (s.ocpp.port, s.database.url, s.ocpp.allow_unknown_chargers) == (
        9200,
        "sqlite:///flag.db",
        True,
    )
    assert not build_settings([]).ocpp.allow_unknown_chargers


def test_bad_settings_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--database-url", "mysql://x/y"]) == 2
    assert "unsupported database" in capsys.readouterr().err
    assert main(["--ocpp-port", "70000"]) == 2
    assert "port" in capsys.readouterr().err


def test_every_setting_is_documented_in_the_readme() -> None:
    from pathlib import Path

    from csms.settings import Settings

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for name, field in Settings.model_fields.items():
        section = field.annotation
        subfields = getattr(section, "model_fields", None)
        if subfields is None:
            assert f"`CSMS_{name.upper()}`" in readme, name
            continue
        for sub in subfields:
            assert f"`CSMS_{name.upper()}__{sub.upper()}`" in readme, f"{name}.{sub}"


@pytest.mark.parametrize(
    ("payload", "version", "code"),
    [
        (
            {"meter_value": [{"timestamp": "t", "sampled_value": [{"value": "1"}]}]},
            "ocpp1.6",
            "OccurenceConstraintViolation",
        ),
        ({"evse_id": 1}, "ocpp2.0.1", "OccurrenceConstraintViolation"),
        ({"connector_id": -1, "meter_value": []}, "ocpp1.6", "TypeConstraintViolation"),
        ({"connector_id": 1, "meter_value": []}, "ocpp1.6", "TypeConstraintViolation"),
        (
            {"connector_id": 1, "transaction_id": "7", "meter_value": [{}]},
            "ocpp1.6",
            "TypeConstraintViolation",
        ),
        (
            {"connector_id": 1, "meter_value": [{"sampled_value": [{"value": "1"}]}]},
            "ocpp1.6",
            "OccurenceConstraintViolation",
        ),
        (
            {"evse_id": 1, "meter_value": [{"timestamp": "t", "sampled_value": [{"value": "1"}]}]},
            "ocpp2.0.1",
            "TypeConstraintViolation",
        ),
        (
            {"evse_id": 1, "meter_value": [{"timestamp": "t", "sampled_value": [{}]}]},
            "ocpp2.0.1",
            "OccurrenceConstraintViolation",
        ),
    ],
)
def test_hot_message_checks(payload: dict[str, object], version: str, code: str) -> None:
    from ocpp.exceptions import OCPPError

    from csms.ocpp.hot_checks import check_meter_values

    with pytest.raises(OCPPError) as exc:
        check_meter_values(payload, version)
    assert exc.value.code == code


def test_hot_message_checks_accept_valid_payloads() -> None:
    from csms.ocpp.hot_checks import check_meter_values

    sv16 = {"timestamp": "2026-01-01T00:00:00Z", "sampled_value": [{"value": "1.5", "unit": "kWh"}]}
    check_meter_values({"connector_id": 0, "transaction_id": 3, "meter_value": [sv16]}, "ocpp1.6")
    sv201 = {"timestamp": "2026-01-01T00:00:00Z", "sampled_value": [{"value": 1.5}]}
    check_meter_values({"evse_id": 0, "meter_value": [sv201]}, "ocpp2.0.1")


def test_register_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from csms.register import main as register

    url = f"sqlite:///{tmp_path / 'r.db'}"
    assert register(["CP-9", "--password", "short", "--database-url", url]) == 2
    assert "at least 16" in capsys.readouterr().err
    assert (
        register(
            [
                "CP-9",
                "--password",
                "sixteen-chars-ok",
                "--max-power-kw",
                "22",
                "--database-url",
                url,
            ]
        )
        == 0
    )
    assert "registered CP-9 with a password" in capsys.readouterr().out
    assert register(["CP-9", "--no-password", "--database-url", "mysql://x/y"]) == 2
    # A new site has no cap until one is given: said, not silently planned at 0 W.
    assert register(["CP-8", "--no-password", "--site", "depot", "--database-url", url]) == 0
    assert "cap of 0 kW" in capsys.readouterr().err
    args = ["CP-7", "--no-password", "--site", "depot", "--site-cap-kw", "50"]
    assert register([*args, "--database-url", url]) == 0
    assert "cap of 0 kW" not in capsys.readouterr().err
    assert register(["CP-7", "--no-password", "--site-cap-kw", "5", "--database-url", url]) == 2
    assert "needs --site" in capsys.readouterr().err


def test_port_in_use_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["--host", "127.0.0.1", "--ocpp-port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err
    assert "--ocpp-port" in err
