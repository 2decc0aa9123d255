"""Schemathesis against the API's own OpenAPI spec, in process, on a seeded SQLite database: no
500s, every error an RFC 9457 problem, every answer (status, content type, body) as documented,
and mutations refused with a problem to anyone but an operator.

Examples per operation are bounded (``max_examples`` for the fuzzing phase; schemathesis adds its
spec examples and a few boundary cases); under ``CI`` the hypothesis profile is derandomized, so
the same cases run every time."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from ocpp.v16 import call as c16
from schemathesis import CheckContext, Response
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.generation.case import Case
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from csms import runtime as csms_runtime
from csms.settings import Settings
from tests.csms.client import boot16
from tests.csms.conftest import make_settings
from tests.web.conftest import connect
from web.app import create_app

PROBLEM = "application/problem+json"
BASE_URL = f"http://{asgi.HOST}"
MAX_EXAMPLES = 30

# The spec does not depend on the database, so it is read from an app that is never started
# (at import: schemathesis makes one test per operation from it).
schema = schemathesis.openapi.from_dict(create_app(make_settings("sqlite://")).openapi())

# Ids that exist in the seeded database, by path parameter name (filled in by ``api``).
KNOWN: dict[str, list[Any]] = {}
# Status codes answered to the operator, by operation (see the last test).
SEEN: dict[str, Counter[int]] = {}


@schema.hook
def flatmap_path_parameters(_: Any, path_parameters: dict[str, Any] | None) -> Any:
    """Random ids are nearly always unknown (a 404): half the cases use ids that exist, so the
    fuzzed bodies and queries reach the code behind the lookup."""
    known = {k: KNOWN[k] for k in path_parameters or {} if KNOWN.get(k)}
    if not known:
        return st.just(path_parameters)
    return st.one_of(
        st.just(path_parameters),
        st.fixed_dictionaries({k: st.sampled_from(v) for k, v in known.items()}).map(
            lambda ids: {**(path_parameters or {}), **ids}
        ),
    )


@dataclass(frozen=True)
class Api:
    """A client on the running app, its tokens, and the errors its runtime logged."""

    client: asgi.ASGIClient
    operator: dict[str, str]
    viewer: dict[str, str]
    logged: list[logging.LogRecord]


async def _seed(settings: Settings) -> tuple[str, str]:
    """Two sites (S2 not smart-charged), charger W-1 with a running and an ended session, a plan;
    returns the operator's and the viewer's token."""
    async with csms_runtime.run(settings) as rt:
        operator = await rt.users.create_token("fuzz-operator", "operator")
        viewer = await rt.users.create_token("fuzz-viewer", "viewer")
        await rt.sites.upsert("S1", {"capacity_kw": 22.0, "timezone": "Europe/Berlin"})
        await rt.sites.upsert("S2", {"capacity_kw": 11.0, "smart_charging": False})
        await rt.stations.register_charge_point("W-1", site_id="S1", max_power_w=11000)
        async with connect(rt.ocpp.port, "W-1") as cp:
            await boot16(cp)
            now = rt.clock.now().isoformat()
            tx = []
            for connector in (1, 2):
                started = await cp.call(
                    c16.StartTransaction(
                        connector_id=connector, id_tag="CARD", meter_start=0, timestamp=now
                    ),
                    suppress=False,
                )
                tx.append(started.transaction_id)
                await cp.call(
                    c16.MeterValues(
                        connector_id=connector,
                        transaction_id=started.transaction_id,
                        meter_value=[{"timestamp": now, "sampledValue": [{"value": "1000"}]}],
                    ),
                    suppress=False,
                )
            await cp.call(
                c16.StopTransaction(
                    transaction_id=tx[1], meter_stop=2000, timestamp=now, id_tag="CARD"
                ),
                suppress=False,
            )
            plan_id = await rt.smart.replan("S1", "seed")
            # let the charger answer what the plan sent before it goes away
            await asyncio.sleep(0.5)
    assert plan_id is not None
    KNOWN.update(
        site_id=["S1", "S2"], charge_point_id=["W-1"], transaction_id=tx, plan_id=[plan_id]
    )
    return operator, viewer


class _Errors(logging.Handler):
    """Keeps the central system's ERROR records (background work a request set off)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """The app over a seeded database (seeded by a runtime of its own, then stopped). Entering
    the client starts the app's lifespan (the runtime) on schemathesis' event loop, where every
    fuzzed request is then served."""
    db = Path(tmp_path_factory.mktemp("fuzz")) / "csms.db"
    settings = make_settings(f"sqlite:///{db}", accept_unknown_id_tokens=True)
    operator, viewer = asyncio.run(_seed(settings))
    errors = _Errors()
    for name in ("csms", "web"):
        logging.getLogger(name).addHandler(errors)
    try:
        app: Any = create_app(settings)  # an ASGI app; schemathesis types it more narrowly
        with asgi.get_client(app) as client:
            yield Api(
                client,
                {"Authorization": f"Bearer {operator}"},
                {"Authorization": f"Bearer {viewer}"},
                errors.records,
            )
    finally:
        asgi.shutdown_lifespans()
        for name in ("csms", "web"):
            logging.getLogger(name).removeHandler(errors)


@schemathesis.check
def problem_details(ctx: CheckContext, response: Response, case: Case[Any]) -> bool | None:
    """Every 4xx/5xx is an RFC 9457 problem: type, title, status (the HTTP status), and a detail
    that says what was wrong."""
    if response.status_code < 400:
        return None
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type == PROBLEM, f"error answered as {content_type!r}, not {PROBLEM}"
    body = json.loads(response.content)
    assert isinstance(body, dict), body
    for field, kind in (("type", str), ("title", str), ("status", int), ("detail", str)):
        assert isinstance(body.get(field), kind), f"{field} missing or not a {kind.__name__}"
    assert body["status"] == response.status_code, body
    assert body["detail"].strip(), "the detail must say what was wrong"
    assert "Traceback" not in body["detail"], body["detail"]
    if response.status_code == 422:
        assert body.get("errors"), "a 422 lists every wrong field"
    return None


CHECKS = [
    not_a_server_error,
    problem_details,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, suppress_health_check=[HealthCheck.too_slow])
def test_api_as_operator(case: Case[Any], api: Api) -> None:
    response = case.call(session=api.client, base_url=BASE_URL, headers=api.operator)
    SEEN.setdefault(case.operation.label, Counter())[response.status_code] += 1
    case.validate_response(response, headers=api.operator, checks=CHECKS)


def _decodable(body: object) -> bool:
    if body is not None and not isinstance(body, bytes | str):
        return True  # a stream: schemathesis sends none
    try:
        json.loads(body or "null")
    except ValueError:  # UnicodeDecodeError is one
        return False
    return True


def _refused(status: int) -> Callable[[CheckContext, Response, Case[Any]], bool | None]:
    """A check: the request was refused with ``status``."""

    def refused(ctx: CheckContext, response: Response, case: Case[Any]) -> bool | None:
        if case.method.upper() != case.operation.method.upper():
            return None  # a method the path does not have (schemathesis tries a few): a 405
        if response.status_code in (400, 422) and not _decodable(response.request.body):
            # FastAPI reads the body before it runs any dependency, the token check included:
            # a body that is not JSON at all is refused as such first (still a problem)
            return None
        assert response.status_code == status, (
            f"expected {status}, got {response.status_code}: {response.content[:300]!r}"
        )
        return None

    return refused


MUTATIONS = schema.include(method=["PUT", "POST", "PATCH", "DELETE"])
# Who may call does not depend on the input: generated cases only (no spec examples, no coverage
# phase's boundary cases, which the operator's run above already sends).
AUTH_ONLY = settings(
    max_examples=15, phases=[Phase.generate], suppress_health_check=[HealthCheck.too_slow]
)


@MUTATIONS.parametrize()
@AUTH_ONLY
def test_mutations_need_a_token(case: Case[Any], api: Api) -> None:
    case.call_and_validate(session=api.client, base_url=BASE_URL, checks=[*CHECKS, _refused(401)])


@MUTATIONS.parametrize()
@AUTH_ONLY
def test_mutations_are_refused_to_viewers(case: Case[Any], api: Api) -> None:
    case.call_and_validate(
        session=api.client, base_url=BASE_URL, headers=api.viewer, checks=[*CHECKS, _refused(403)]
    )


def test_fuzzing_reached_every_operation(api: Api) -> None:
    """The fuzzing above was not vacuous: every operation answered the operator with success at
    least once, and the runtime behind them logged no error."""
    if not SEEN:
        pytest.skip("runs after test_api_as_operator (in the same session)")
    operations = {o.ok().label for o in schema.get_all_operations() if isinstance(o, Ok)}
    assert set(SEEN) == operations
    never_ok = sorted(op for op, codes in SEEN.items() if not any(c < 300 for c in codes))
    # A command succeeds only with a charger connected, and the app's lifespan (its OCPP endpoint)
    # starts anew for every operation here: tests/web/test_api_commands.py covers its successes.
    assert never_ok in ([], ["POST /api/charge-points/{charge_point_id}/commands"]), never_ok
    assert [r.getMessage() for r in api.logged] == []
