"""Bad input gets a clear 4xx problem (RFC 9457) saying what was wrong, never a 500; the spec says
so. One regression test per bug the OpenAPI fuzzing (tests/web/test_openapi_fuzz.py) or probing
around it found."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from csms.runtime import Runtime
from tests.csms.conftest import make_settings
from web.app import create_app

PROBLEM = "application/problem+json"


@dataclass
class Api:
    """The running app, its runtime, and a client sending an operator's token."""

    app: FastAPI
    rt: Runtime
    http: httpx.AsyncClient


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    """Site S1 on a fresh SQLite database, and an operator's client."""
    app = create_app(make_settings(f"sqlite:///{tmp_path / 'csms.db'}"))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http,
    ):
        rt: Runtime = app.state.runtime
        await rt.sites.upsert("S1", {"capacity_kw": 22.0})
        http.headers["Authorization"] = f"Bearer {await rt.users.create_token('t', 'operator')}"
        yield Api(app, rt, http)


def problem_of(r: httpx.Response, status: int) -> dict[str, Any]:
    """The response's problem, checked to be one with this status."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body: dict[str, Any] = r.json()
    assert body["type"] == "about:blank"
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    return body


def fields(body: dict[str, Any]) -> list[str]:
    """The wrong fields a 422 lists."""
    return [e["field"] for e in body["errors"]]


async def test_the_spec_documents_every_error_as_a_problem(api: Api) -> None:
    spec = (await api.http.get("/openapi.json")).json()
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    problem = spec["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail"} <= set(problem["required"])
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            errors = {s: r for s, r in op["responses"].items() if s[0] in "45"}
            assert "500" in errors, (method, path)
            if path != "/api/health":
                assert "401" in errors, (method, path)
            if method != "get":
                assert "403" in errors, (method, path)
            if "requestBody" in op:
                assert "400" in errors, (method, path)
            for status, response in errors.items():
                assert response["content"] == {
                    PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}
                }, (method, path, status)


async def test_an_unexpected_error_is_a_problem_without_internals(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken() -> None:
        raise RuntimeError("secret internals /etc/csms.conf")

    monkeypatch.setattr(api.rt.sites, "all_sites", broken)
    transport = httpx.ASGITransport(app=api.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        r = await c.get("/api/sites", headers={"Authorization": api.http.headers["Authorization"]})
    problem_of(r, 500)
    assert "secret" not in r.text
    assert "Traceback" not in r.text


@pytest.mark.parametrize(
    "url",
    [
        "/api/transactions/9223372036854775808",
        "/api/transactions?offset=9223372036854775808",
        "/api/charge-points?offset=9223372036854775808",
        "/api/audit/plans/9223372036854775808",
        "/api/audit/profiles?transaction_id=9223372036854775808",
    ],
)
async def test_ids_beyond_64_bits_are_refused_not_crashed(api: Api, url: str) -> None:
    # was a 500: the SQLite driver cannot bind an integer of more than 64 bits
    body = problem_of(await api.http.get(url), 422)
    assert body["errors"][0]["message"].startswith("Input should be")


async def test_a_needs_update_beyond_64_bit_ids_is_refused(api: Api) -> None:
    r = await api.http.put("/api/transactions/9223372036854775808/needs", json={})
    assert fields(problem_of(r, 422)) == ["path.transaction_id"]


@pytest.mark.parametrize(
    ("url", "field"),
    [
        # were 500s: shifting these to UTC, or by the default 24 hours, leaves the calendar
        ("/api/audit/plans?since=0001-01-01T00:00:00%2B01:00", "query.since"),
        ("/api/audit/profiles?until=9999-12-31T23:59:59-01:00", "query.until"),
        ("/api/sites/S1/kpis?until=0001-01-01T00:00:00Z", "query.until"),
        ("/api/sites/S1/kpis?since=1969-12-31T23:59:59Z", "query.since"),
    ],
)
async def test_times_out_of_range_are_refused(api: Api, url: str, field: str) -> None:
    body = problem_of(await api.http.get(url), 422)
    assert fields(body) == [field]
    assert "between 1970-01-01 and 2200-01-01" in body["detail"]


async def test_a_departure_out_of_range_is_refused(api: Api) -> None:
    # was stored, and broke every later plan of the site
    r = await api.http.put(
        "/api/transactions/1/needs", json={"departure": "9999-12-31T23:59:59-01:00"}
    )
    assert fields(problem_of(r, 422)) == ["body.departure"]


async def test_a_body_that_is_not_json_says_so(api: Api) -> None:
    headers = {"Content-Type": "application/json"}
    r = await api.http.put("/api/sites/S1", content=b"\x80{}", headers=headers)
    assert "must be JSON encoded as UTF-8" in problem_of(r, 400)["detail"]
    r = await api.http.put("/api/sites/S1", content=b'{"name": ', headers=headers)
    body = problem_of(r, 422)
    assert body["errors"] == [
        {"field": "body", "message": "invalid JSON at character 9: Expecting value"}
    ]


async def test_every_422_lists_the_wrong_fields(api: Api) -> None:
    r = await api.http.get(
        "/api/sites/S1/kpis",
        params={"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
    )
    body = problem_of(r, 422)
    assert fields(body) == ["query.since"]
    assert "must be before until" in body["detail"]
    r = await api.http.get(
        "/api/audit/plans", params={"since": "2026-01-01T00:00Z", "until": "2026-01-01T00:00Z"}
    )
    assert fields(problem_of(r, 422)) == ["query.since"]
    r = await api.http.put("/api/sites/S1", json={"timezone": "Mars/Olympus"})
    body = problem_of(r, 422)
    assert fields(body) == ["body"]
    assert "not an IANA time zone" in body["detail"]


async def test_a_folder_of_zones_is_not_a_time_zone(api: Api) -> None:
    # was a 500: ZoneInfo("America") fails opening a directory (OSError), not as an unknown zone
    r = await api.http.put("/api/sites/S1", json={"timezone": "America"})
    assert "'America' is not an IANA time zone" in problem_of(r, 422)["detail"]
    r = await api.http.put("/api/sites/S1", json={"timezone": "a" * 10_000})
    assert fields(problem_of(r, 422)) == ["body.timezone"]


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        # were stored, then broke the site's plans and KPIs (timedelta or float overflow)
        ({"default_dwell_hours": 1e300}, "body.default_dwell_hours"),
        ({"default_energy_kwh": 1e308}, "body.default_energy_kwh"),
        ({"capacity_kw": 1e308}, "body.capacity_kw"),
        ({"price_schedule": [{"from": "00:00", "price": -1e308}]}, "body.price_schedule.0.price"),
        ({"capacity_schedule": [{"from": "00:00", "kw": 1e308}]}, "body.capacity_schedule.0.kw"),
    ],
)
async def test_site_settings_too_large_to_compute_with_are_refused(
    api: Api, settings: dict[str, Any], field: str
) -> None:
    r = await api.http.put("/api/sites/S1", json=settings)
    assert fields(problem_of(r, 422)) == [field]
    assert (await api.http.get("/api/sites/S1/kpis")).status_code == 200


async def test_schedules_in_site_settings_are_still_accepted(api: Api) -> None:
    r = await api.http.put(
        "/api/sites/S1",
        json={
            "capacity_schedule": [{"from": "07:00", "kw": 11}, {"from": "19:00", "kw": 22}],
            "price_schedule": [{"from": "00:00", "price": -0.05}],
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["capacity_schedule"] == [
        {"from": "07:00", "kw": 11.0},
        {"from": "19:00", "kw": 22.0},
    ]
    assert r.json()["price_schedule"] == [{"from": "00:00", "price": -0.05}]


@pytest.mark.parametrize("site_id", ["S" * 65, "S%01", "%7F"])
async def test_site_ids_must_fit_the_database(api: Api, site_id: str) -> None:
    # PostgreSQL refuses an id over 64 characters, or with a NUL, with an error (a 500)
    r = await api.http.put(f"/api/sites/{site_id}", json={})
    assert fields(problem_of(r, 422)) == ["path.site_id"]


def _scenario(**site: Any) -> dict[str, Any]:
    return {
        "site": {"id": "x", "start": "2026-01-05T07:00:00+01:00", "capacity_kw": 22, **site},
        "sessions": [
            {
                "id": "car",
                "arrival": "2026-01-05T07:00:00+01:00",
                "departure": "2026-01-05T09:00:00+01:00",
                "energy_kwh": 20,
                "max_power_kw": 11,
            }
        ],
    }


@pytest.mark.parametrize(
    ("scenario", "field"),
    [
        # were 500s: a start that leaves the calendar in UTC, and a price whose cost is infinite
        (_scenario(start="0001-01-01T00:00:00+01:00"), "site.start"),
        (_scenario(start="9999-12-31T23:00:00-01:00"), "site.start"),
        (_scenario(horizon_steps=4, price_per_kwh=[0.1, 1e308, 0.1, 0.1]), "site.price_per_kwh[1]"),
        (_scenario(capacity_kw=1e308), "site.capacity_kw"),
    ],
)
async def test_plan_scenarios_out_of_range_are_refused(
    api: Api, scenario: dict[str, Any], field: str
) -> None:
    body = problem_of(await api.http.post("/api/plan", json=scenario), 422)
    assert body["title"] == "Invalid scenario"
    assert fields(body) == [field]


async def test_a_plan_scenario_in_range_is_planned(api: Api) -> None:
    r = await api.http.post("/api/plan", json=_scenario(horizon_steps=8))
    assert r.status_code == 200, r.text
    assert r.json()["sessions"][0]["delivered_kwh"] == 20.0


async def test_unknown_paths_and_methods_say_what_exists(api: Api) -> None:
    body = problem_of(await api.http.get("/api/nope"), 404)
    assert body["detail"] == "there is no /api/nope: the API's endpoints are listed at /docs"
    body = problem_of(await api.http.delete("/api/sites/S1"), 405)
    assert body["detail"] == "DELETE is not allowed on /api/sites/S1; allowed: GET, PUT"
    body = problem_of(await api.http.get("/api/sites/S9"), 404)
    assert body["detail"] == "no site 'S9'"  # a route's own 404 keeps its words
