"""The site description file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from charge_point_sim import RateUnit
from charge_point_sim.errors import InvalidModelError
from charge_point_sim.quirks import Quirks
from charge_point_sim.site import load_site, parse_site

SITE = {
    "name": "depot",
    "site_cap_kw": 150,
    "chargers": [
        {
            "id": "AC-1",
            "version": "2.0.1",
            "connectors": 2,
            "max_power_kw": 11,
            "phases": 1,
            "voltage": 240,
            "password": "s3cret",
            "quirks": {"only_amps": True, "max_stack_level": 3},
            "stations": ["CA-305", "CA-314"],
        },
        {"id": "P", "count": 12},
    ],
}


def test_a_site_file_is_read_with_defaults_and_quirks(tmp_path: Path) -> None:
    path = tmp_path / "site.json"
    path.write_text(json.dumps(SITE))
    site = load_site(path)
    assert site.name == "depot"
    assert site.cap_kw == 150.0
    first = site.chargers[0]
    assert first.stations == ("CA-305", "CA-314")
    cfg = first.config
    assert (cfg.charger_id, cfg.version, cfg.password) == ("AC-1", "2.0.1", "s3cret")
    assert cfg.quirks == Quirks(only_amps=True, max_stack_level=3)
    assert cfg.spec.voltage_v == 240.0
    assert [(c.max_power_w, c.phases) for c in cfg.spec.connectors] == [(11000.0, 1)] * 2
    assert cfg.quirks.capabilities(cfg.spec.capabilities).allowed_units == {RateUnit.A}
    rest = [c.config for c in site.chargers[1:]]
    assert [c.charger_id for c in rest][:2] == ["P01", "P02"]
    assert len(rest) == 12
    assert rest[0].version == "1.6"
    assert rest[0].spec.connectors[0].max_power_w == 22000.0
    assert rest[0].quirks == Quirks()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"chargers": []}, "non-empty"),
        ({"extra": 1}, "unknown keys extra"),
        ({"chargers": [{"id": "A", "version": "2.1"}]}, "version"),
        ({"chargers": [{"id": "A", "connectors": 0}]}, "connectors"),
        ({"chargers": [{"id": "A", "quirks": {"flaky": True}}]}, "unknown quirks: flaky"),
        ({"chargers": [{"id": "A"}, {"id": "A"}]}, "twice"),
        ({"chargers": [{"id": "A", "max_power_kw": -1}]}, "max_power_kw"),
        ({"chargers": [{"id": "A", "stations": ["x", "y"]}]}, "more stations"),
    ],
)
def test_a_bad_site_file_names_its_problem(change: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidModelError, match=message):
        parse_site({**SITE, **change})


def test_an_unreadable_site_file(tmp_path: Path) -> None:
    path = tmp_path / "site.json"
    path.write_text("{")
    with pytest.raises(InvalidModelError, match="site file"):
        load_site(path)


def test_the_iso15118_share_and_the_ca_file(tmp_path: Path) -> None:
    path = tmp_path / "site.json"
    path.write_text(json.dumps({**SITE, "iso15118_share": 0.25, "ca_file": "certs/ca.pem"}))
    site = load_site(path)
    assert site.iso15118_share == 0.25
    assert site.ca_file == tmp_path / "certs" / "ca.pem"  # relative to the site file
    absolute = parse_site({**SITE, "ca_file": "/etc/ocpp/ca.pem"})
    assert absolute.ca_file == Path("/etc/ocpp/ca.pem")
    assert (absolute.iso15118_share, parse_site(SITE).ca_file) == (None, None)
    for bad in (1.5, -0.1, True, "half"):
        with pytest.raises(InvalidModelError, match="iso15118_share"):
            parse_site({**SITE, "iso15118_share": bad})
    with pytest.raises(InvalidModelError, match="ca_file"):
        parse_site({**SITE, "ca_file": 3})
