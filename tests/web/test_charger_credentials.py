"""Charger registration and passwords from the console's settings page."""

from __future__ import annotations

import re

import pytest

from csms.domain.commands import CommandResult
from csms.services.credentials import (
    CredentialError,
    answer_status,
    check_password,
    new_password,
    password_call,
)
from tests.web.conftest import VIEWER, Console, csrf_of, sign_in

HX = {"HX-Request": "true", "HX-Target": "credentials"}
SHOWN = re.compile(r'<code id="new-password">([^<]+)</code>')


def test_passwords_are_random_and_within_the_whitepapers_bounds() -> None:
    a, b = new_password(), new_password()
    assert a != b
    check_password(a)
    for bad in ("short", "x" * 41, "sixteen chars ok", "ünïcödé-pässwörd-1"):
        with pytest.raises(CredentialError):
            check_password(bad)


def test_the_password_travels_as_each_version_wants() -> None:
    v16 = password_call("ocpp1.6", "abcdefghijklmnop")
    assert v16.action == "ChangeConfiguration"
    assert v16.payload == {"key": "AuthorizationKey", "value": b"abcdefghijklmnop".hex()}
    v201 = password_call("ocpp2.0.1", "abcdefghijklmnop")
    assert v201.action == "SetVariables"
    row = v201.payload["setVariableData"][0]
    assert row["variable"] == {"name": "BasicAuthPassword"}
    assert row["component"] == {"name": "SecurityCtrlr"}
    assert row["attributeValue"] == "abcdefghijklmnop"
    ok201 = CommandResult(ok=True, payload={"setVariableResult": [{"attributeStatus": "Accepted"}]})
    assert answer_status("ocpp2.0.1", ok201) == "Accepted"
    assert answer_status("ocpp1.6", CommandResult(ok=True, status="Rejected")) == "Rejected"
    assert answer_status("ocpp1.6", CommandResult(ok=False, error="timeout")) is None


async def test_register_a_charger_and_show_its_password_once(console: Console) -> None:
    page = await console.http.get("/console/sites/S1/settings")
    assert 'id="cred-W-1"' in page.text
    r = await console.http.post(
        "/console/sites/S1/chargers",
        data={"charge_point_id": "NEW-1", "max_power_kw": "7.4", "phases": "1"},
        headers=HX,
    )
    assert r.status_code == 200, r.text
    assert r.text.lstrip().startswith('<section id="credentials"')
    assert r.headers["cache-control"] == "no-store"
    shown = SHOWN.search(r.text)
    assert shown is not None
    assert await console.rt.stations.check_credentials("NEW-1", shown.group(1))
    assert not await console.rt.stations.check_credentials("NEW-1", "something-else-entirely")
    assert 'id="cred-NEW-1"' in r.text
    again = await console.http.get("/console/sites/S1/settings")
    assert shown.group(1) not in again.text  # shown once
    for data, message in [
        ({"charge_point_id": "NEW-1"}, "already registered"),
        ({"charge_point_id": "has space"}, "a charger id has 1 to 48"),
        ({"charge_point_id": "NEW-2", "password": "too-short"}, "16 to 40 characters"),
        (
            {"charge_point_id": "NEW-3", "max_power_kw": "lots"},
            "maximum power: &#39;lots&#39; is not a number",
        ),
    ]:
        bad = await console.http.post("/console/sites/S1/chargers", data=data, headers=HX)
        assert bad.status_code == 422, data
        assert message in bad.text, bad.text


async def test_a_new_password_is_stored_only_once_the_charger_takes_it(console: Console) -> None:
    await console.rt.stations.set_password("W-1", "the-old-password-1")
    console.cp.refuse_configuration = True
    r = await console.http.post("/console/sites/S1/chargers/W-1/password", headers=HX)
    assert r.status_code == 409
    assert "did not take the new password" in r.text
    assert await console.rt.stations.check_credentials("W-1", "the-old-password-1")
    console.cp.refuse_configuration = False
    r = await console.http.post("/console/sites/S1/chargers/W-1/password", headers=HX)
    assert r.status_code == 200, r.text
    assert "accepted its new password" in r.text
    shown = SHOWN.search(r.text)
    assert shown is not None
    assert console.cp.configuration["AuthorizationKey"] == shown.group(1).encode().hex()
    assert await console.rt.stations.check_credentials("W-1", shown.group(1))
    assert not await console.rt.stations.check_credentials("W-1", "the-old-password-1")
    # configured by hand: stored only, nothing sent
    r = await console.http.post(
        "/console/sites/S1/chargers/W-1/password",
        data={"store_only": "1", "password": "typed-by-the-operator"},
        headers=HX,
    )
    assert "stored: configure the charger with it" in r.text
    assert console.cp.configuration["AuthorizationKey"] == shown.group(1).encode().hex()
    assert await console.rt.stations.check_credentials("W-1", "typed-by-the-operator")
    r = await console.http.post("/console/sites/S1/chargers/NOPE/password", headers=HX)
    assert r.status_code == 404


async def test_viewers_see_credentials_state_but_change_nothing(console: Console) -> None:
    async with console.client() as http:
        await sign_in(http, *VIEWER)
        http.headers["X-CSRF-Token"] = await csrf_of(http)
        page = await http.get("/console/sites/S1/settings")
        assert 'id="cred-W-1"' in page.text
        assert "New password" not in page.text
        assert 'id="register-charger"' not in page.text
        r = await http.post("/console/sites/S1/chargers", data={"charge_point_id": "V-1"})
        assert r.status_code == 403
        r = await http.post("/console/sites/S1/chargers/W-1/password")
        assert r.status_code == 403
