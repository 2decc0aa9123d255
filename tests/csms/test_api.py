"""The HTTP API over a running central system (both databases)."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from ocpp.v16 import call as c16

from tests.csms.client import boot16, connect
from tests.csms.conftest import make_settings
from web.app import create_app


async def _authorize(app: FastAPI, http: httpx.AsyncClient) -> None:
    """The API needs a token (web.auth_required is on by default)."""
    token = await app.state.runtime.users.create_token("test", "operator")
    http.headers["Authorization"] = f"Bearer {token}"


async def test_api_reports_chargers_and_transactions(db_url: str) -> None:
    settings = make_settings(db_url, allow_unknown_chargers=True, accept_unknown_id_tokens=True)
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http,
    ):
        await _authorize(app, http)
        health = (await http.get("/api/health")).json()
        assert health["status"] == "ok"
        port = health["ocpp_port"]
        async with connect(port, "API-1", "ocpp1.6") as cp:
            await boot16(cp)
            r = await cp.call(
                c16.StartTransaction(
                    connector_id=2, id_tag="X", meter_start=100, timestamp="2026-01-05T08:00:00Z"
                ),
                suppress=False,
            )
            await cp.call(
                c16.MeterValues(
                    connector_id=2,
                    transaction_id=r.transaction_id,
                    meter_value=[
                        {"timestamp": "2026-01-05T08:10:00Z", "sampledValue": [{"value": "1100"}]}
                    ],
                ),
                suppress=False,
            )
            cps = (await http.get("/api/charge-points")).json()
            assert [c["id"] for c in cps] == ["API-1"]
            assert cps[0]["connected"] is True
            one = (await http.get("/api/charge-points/API-1")).json()
            assert one["vendor"] == "Acme"
            active = (await http.get("/api/transactions", params={"active": "true"})).json()
            assert [t["id"] for t in active] == [r.transaction_id]
            tx = (await http.get(f"/api/transactions/{r.transaction_id}")).json()
            assert tx["energy_wh"] == 1000.0
            assert tx["meter_values"][0]["value"] == 1100.0
            assert (await http.get("/api/transactions", params={"active": "false"})).json() == []


async def test_errors_are_problem_details(db_url: str) -> None:
    app = create_app(make_settings(db_url))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http,
    ):
        assert (await http.get("/api/charge-points")).status_code == 401
        await _authorize(app, http)
        r = await http.get("/api/charge-points/nope")
        assert r.status_code == 404
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["detail"] == "no charge point 'nope'"
        r = await http.get("/api/transactions/abc")
        assert r.status_code == 422
        assert r.json()["errors"][0]["field"] == "path.transaction_id"
        r = await http.get("/api/transactions", params={"limit": 0})
        assert r.status_code == 422
        assert (await http.get("/openapi.json")).status_code == 200
