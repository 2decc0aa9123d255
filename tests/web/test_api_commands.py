"""POST /api/charge-points/{id}/commands: the console's commands for machine clients, with the
same roles (a viewer's token may not), and errors in the documented shape."""

from __future__ import annotations

from tests.web.conftest import Console


async def _token(c: Console, role: str) -> dict[str, str]:
    return {"Authorization": "Bearer " + await c.rt.users.create_token(f"api-{role}", role)}


async def test_an_operator_token_sends_a_command_and_gets_the_chargers_answer(
    console: Console,
) -> None:
    async with console.client() as http:
        answer = await http.post(
            "/api/charge-points/W-1/commands",
            json={"action": "unlock", "evse_id": 1},
            headers=await _token(console, "operator"),
        )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["ok"] is True
    assert body["status"] == "Unlocked"
    assert body["latency_s"] >= 0


async def test_errors_say_what_was_wrong(console: Console) -> None:
    async with console.client() as http:
        operator = await _token(console, "operator")
        viewer = await http.post(
            "/api/charge-points/W-1/commands",
            json={"action": "reset"},
            headers=await _token(console, "viewer"),
        )
        unknown = await http.post(
            "/api/charge-points/NOPE/commands", json={"action": "reset"}, headers=operator
        )
        bad_action = await http.post(
            "/api/charge-points/W-1/commands", json={"action": "explode"}, headers=operator
        )
        bad_trigger = await http.post(
            "/api/charge-points/W-1/commands",
            json={"action": "trigger", "message": "Everything"},
            headers=operator,
        )
        await console.rt.stations.register_charge_point("W-2", site_id="S1")
        offline = await http.post(
            "/api/charge-points/W-2/commands", json={"action": "reset"}, headers=operator
        )
    assert viewer.status_code == 403
    assert unknown.status_code == 404
    assert "NOPE" in unknown.json()["detail"]
    assert bad_action.status_code == 422
    assert bad_trigger.status_code == 422
    assert "Heartbeat" in bad_trigger.text  # the allowed messages are listed
    assert offline.status_code == 409
    assert "not connected" in offline.json()["detail"]
    for r in (viewer, unknown, bad_action, bad_trigger, offline):
        assert r.headers["content-type"].startswith("application/problem+json")
