"""Hostile input: malformed, type-confused, oversized and flooding OCPP frames at both versions, over
real websockets, on SQLite and PostgreSQL.

Whatever a charger sends, the central system answers a CALL with the CALLERROR the spec names (OCPP-J
1.6 §4.2.3 and its error table; 2.0.1 part 4 §4.2.3 and §4.3), drops what it must not answer (an
answer to a call it never made, a malformed CALLERROR), or closes that one connection (1009 for a
frame over the size limit). It never crashes, never stores anything from an invalid payload, and its
memory stays bounded; a well-behaved charger connected all along keeps working.

The fuzzing runs hypothesis in a worker thread with blocking websocket clients, while the central
system and the good charger run on the test's event loop: shrinking works, and after the storm the
test inspects the running system and its database.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import gc
import json
import logging
import re
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ocpp.charge_point import camel_to_snake_case
from ocpp.messages import get_validator
from ocpp.v16 import call as c16
from ocpp.v16.enums import Action as Action16
from ocpp.v201.enums import Action as Action201
from sqlmodel import col, select
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as sync_connect

from csms.db.models import ChargePoint, Connector, MeterValue, NeedsInput, Transaction
from csms.ocpp.frames import INT_MAX, INT_MIN, MAX_DEPTH, check_frame, for_package, parse_frame
from csms.ocpp.v16 import CentralSystem16
from csms.ocpp.v201 import CentralSystem201
from csms.runtime import Runtime
from tests.csms.client import Client16, boot16, connect
from tests.csms.conftest import RunCsms

OPEN = {"allow_unknown_chargers": True, "accept_unknown_id_tokens": True}
VERSIONS = ("ocpp1.6", "ocpp2.0.1")
EVIL = {"ocpp1.6": "EVIL-16", "ocpp2.0.1": "EVIL-201"}
GOOD = "GOOD-1"
EXAMPLES = 120  # per category: 2 round trips each, a few seconds per category
MAX_FRAME = 60_000  # stay under the default max_frame_bytes (65536) in the fuzzing

# The error codes each version's RPC framework allows (1.6 §4.2.3 table 7; 2.0.1 part 4 table 8).
CODES = {
    "ocpp1.6": frozenset(
        {
            "NotImplemented",
            "NotSupported",
            "InternalError",
            "ProtocolError",
            "SecurityError",
            "FormationViolation",
            "PropertyConstraintViolation",
            "OccurenceConstraintViolation",
            "TypeConstraintViolation",
            "GenericError",
        }
    ),
    "ocpp2.0.1": frozenset(
        {
            "FormatViolation",
            "GenericError",
            "InternalError",
            "MessageTypeNotSupported",
            "NotImplemented",
            "NotSupported",
            "OccurrenceConstraintViolation",
            "PropertyConstraintViolation",
            "ProtocolError",
            "RpcFrameworkError",
            "SecurityError",
            "TypeConstraintViolation",
        }
    ),
}


def fmt(version: str) -> str:
    """'Payload syntactically incorrect', as each version spells it."""
    return "FormationViolation" if version == "ocpp1.6" else "FormatViolation"


def rpc(version: str) -> str:
    """'Not a valid RPC request, e.g. the message id cannot be read' (2.0.1 only)."""
    return "FormationViolation" if version == "ocpp1.6" else "RpcFrameworkError"


def unknown_type(version: str) -> str:
    return "PropertyConstraintViolation" if version == "ocpp1.6" else "MessageTypeNotSupported"


def payload_codes(version: str) -> frozenset[str]:
    """Codes that blame the payload (never InternalError: a bad payload is not our failure)."""
    occurrence = "Occurence" if version == "ocpp1.6" else "Occurrence"  # 1.6's spelling
    return frozenset(
        {fmt(version), f"{occurrence}ConstraintViolation", "ProtocolError", "TypeConstraintViolation",
         "PropertyConstraintViolation"}
    )  # fmt: skip


# --- what is sent and what must come back ------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One frame and the answer it must get: a CALLERROR with one of ``codes`` and ``uid``, a
    CALLRESULT with ``uid`` (codes None, uid set), or nothing at all (codes None, uid None).
    ``alt_uid``: another right id (a frame so deep that whether Python's parser gives up first,
    losing the id, depends on the recursion limit, which pytest and hypothesis raise)."""

    version: str
    frame: str | bytes
    codes: frozenset[str] | None
    uid: str | None
    why: str
    alt_uid: str | None = None

    def check(self, replies: list[list[Any]]) -> None:
        """Assert the replies received to this frame (before the sentinel's answer)."""
        note = f"{self.why}: {self.frame[:300]!r} -> {replies!r:.600}"
        if self.uid is None:
            assert replies == [], note
            return
        assert len(replies) == 1, note
        reply = replies[0]
        if self.codes is None:
            assert reply[:2] == [3, self.uid], note
            return
        assert len(reply) == 5, note
        kind, uid, code, description, details = reply
        assert kind == 4, note
        assert uid in (self.uid, self.alt_uid), note
        assert code in self.codes, note
        assert code in CODES[self.version], note
        assert isinstance(description, str), note
        assert len(description) <= 255, note  # errorDescription is string[255]
        assert isinstance(details, dict), note


def error(
    version: str,
    frame: str | bytes,
    codes: set[str],
    uid: str,
    why: str,
    alt_uid: str | None = None,
) -> Case:
    return Case(version, frame, frozenset(codes), uid, why, alt_uid)


def silence(version: str, frame: str | bytes, why: str) -> Case:
    return Case(version, frame, None, None, why)


class Link:
    """A blocking client connection of a hostile charger (used from the fuzzing thread)."""

    def __init__(self, port: int, version: str) -> None:
        self.version = version
        self._stack = contextlib.ExitStack()
        self.ws: ClientConnection = self._stack.enter_context(
            sync_connect(
                f"ws://127.0.0.1:{port}/ocpp/{EVIL[version]}",
                subprotocols=[version],  # type: ignore[list-item]
                proxy=None,
                max_size=None,
                open_timeout=10,
            )
        )
        self._n = 0

    def exchange(self, frame: str | bytes) -> list[list[Any]]:
        """Send ``frame`` and a sentinel CALL; return what came back before the sentinel's answer
        (the server answers in order). The server's own CALLs are ignored."""
        self._n += 1
        sentinel = f"sentinel-{self._n}"
        self.ws.send(frame)
        self.ws.send(json.dumps([2, sentinel, "NoSuchAction", {}]))
        replies: list[list[Any]] = []
        while True:
            reply = json.loads(self.ws.recv(timeout=10))
            if reply[1] == sentinel:
                assert reply[:3] == [4, sentinel, "NotImplemented"], reply
                return replies
            if reply[0] != 2:
                replies.append(reply)

    def close(self) -> None:
        self._stack.close()


# --- strategies ----------------------------------------------------------------------------------

ids = st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1, max_size=36)
# Text without NUL (and, as hypothesis's default, without surrogates): values no OCPP message may
# hold have their own cases, with their own answer.
texts = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40)
json_leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(2**31), 2**31 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts
)
json_values = st.recursive(
    json_leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)
dicts = st.dictionaries(texts, json_values, max_size=4)
versions = st.sampled_from(VERSIONS)


def _python_reads(text: str) -> bool:
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return False
    return True


@st.composite
def not_json(draw: st.DrawFn) -> Case:
    version = draw(versions)
    good = json.dumps([2, draw(ids), "Heartbeat", {"a": draw(json_values)}])
    frame = draw(
        st.text(st.characters(codec="utf-8"), max_size=300).filter(lambda t: not _python_reads(t))
        | st.integers(0, len(good) - 1).map(lambda n: good[:n])  # truncated
        # deeper than any recursion limit in force (pytest and hypothesis raise it to ~3000)
        | st.integers(10_000, 25_000).map(lambda n: "[" * n + "]" * n)
        | st.integers(4400, 20_000).map(lambda n: f'[2, "x", "Heartbeat", {{"a": {"9" * n}}}]')
    )
    if _python_reads(frame):  # a truncation can still be JSON ("[2" is not, "2" is)
        frame = frame + "}{"
    binary = draw(st.booleans())
    return error(version, frame.encode() if binary else frame, {fmt(version)}, "-1", "not JSON")


@st.composite
def not_array(draw: st.DrawFn) -> Case:
    version = draw(versions)
    value = draw(json_values.filter(lambda v: not isinstance(v, list)) | st.just([]))
    return error(version, json.dumps(value), {rpc(version)}, "-1", "not a JSON array")


@st.composite
def bad_message_type(draw: st.DrawFn) -> Case:
    version = draw(versions)
    kind = draw(
        st.integers(-(10**12), 10**12).filter(lambda k: k not in (2, 3, 4))
        | st.floats(allow_nan=False, allow_infinity=False).filter(lambda k: k not in (2, 3, 4))
        | st.text(max_size=5)
        | st.none()
        | st.booleans()
        | st.lists(st.integers(0, 9), max_size=3)
    )
    uid = draw(ids | json_values)
    rest = draw(st.lists(json_values, max_size=3))
    readable = uid if isinstance(uid, str) and len(uid) <= 36 and "\x00" not in uid else "-1"
    if re.search("[\ud800-\udfff]", readable):
        readable = "-1"
    frame = json.dumps([kind, uid, *rest])
    return error(version, frame, {unknown_type(version)}, readable, "unknown message type")


bad_ids = (
    st.integers(-(2**31), 2**31 - 1)
    | st.none()
    | st.booleans()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.lists(ids, max_size=2)
    | st.dictionaries(ids, ids, max_size=2)
    | st.text(min_size=37, max_size=300)
    | ids.map(lambda s: s[:30] + "\x00")
)


@st.composite
def bad_id(draw: st.DrawFn) -> Case:
    version = draw(versions)
    uid = draw(bad_ids)
    kind = draw(st.sampled_from([2, 3, 4]))
    if kind == 4:
        return silence(version, json.dumps([4, uid, "GenericError", "", {}]), "CALLERROR, bad id")
    frame = [2, uid, "Heartbeat", {}] if kind == 2 else [3, uid, {}]
    return error(version, json.dumps(frame), {rpc(version)}, "-1", "unreadable message id")


@st.composite
def bad_structure(draw: st.DrawFn) -> Case:
    version = draw(versions)
    uid = draw(ids)
    extra = draw(st.lists(json_values, min_size=1, max_size=3))
    shapes: list[list[Any]] = [
        [2, uid],
        [2, uid, "Heartbeat"],
        [2, uid, "Heartbeat", {}, *extra],
        [2, uid, draw(json_values.filter(lambda v: not isinstance(v, str))), {}],
        [2, uid, "Heartbeat", draw(json_values.filter(lambda v: not isinstance(v, dict)))],
        [3, uid],
        [3, uid, draw(json_values.filter(lambda v: not isinstance(v, dict)))],
        [3, uid, {}, *extra],
    ]
    errors: list[list[Any]] = [
        [4, uid],
        [4, uid, draw(json_values.filter(lambda v: not isinstance(v, str))), "", {}],
        [4, uid, "GenericError", draw(st.integers() | st.lists(st.none(), max_size=1)), {}],
        [4, uid, "GenericError", "", draw(st.integers() | st.lists(st.none(), max_size=1))],
        [4, uid, "GenericError", "", {}, *extra],
    ]
    if draw(st.integers(0, 3)) == 0:
        return silence(version, json.dumps(draw(st.sampled_from(errors))), "malformed CALLERROR")
    frame = draw(st.sampled_from(shapes))
    return error(version, json.dumps(frame), {fmt(version)}, uid, "missing/extra elements")


KNOWN = {"ocpp1.6": {a.value for a in Action16}, "ocpp2.0.1": {a.value for a in Action201}}
HANDLED = {  # the actions with an @on handler
    version: {str(f._on_action) for f in vars(cls).values() if hasattr(f, "_on_action")}
    for version, cls in (("ocpp1.6", CentralSystem16), ("ocpp2.0.1", CentralSystem201))
}
# Actions we handle, with a payload the schema accepts; the fuzzing breaks it one place at a time.
T0 = "2026-01-05T08:00:00Z"
BASE: dict[str, dict[str, dict[str, Any]]] = {
    "ocpp1.6": {
        "BootNotification": {"chargePointVendor": "Acme", "chargePointModel": "AC22"},
        "StatusNotification": {"connectorId": 1, "errorCode": "NoError", "status": "Available"},
        "Authorize": {"idTag": "TAG1"},
        "StartTransaction": {"connectorId": 1, "idTag": "TAG1", "meterStart": 0, "timestamp": T0},
        "StopTransaction": {"transactionId": 1, "meterStop": 10, "timestamp": T0},
        "MeterValues": {
            "connectorId": 1,
            "transactionId": 1,
            "meterValue": [
                {
                    "timestamp": T0,
                    "sampledValue": [
                        {
                            "value": "12.5",
                            "measurand": "Energy.Active.Import.Register",
                            "unit": "kWh",
                        }
                    ],
                }
            ],
        },
        "DataTransfer": {"vendorId": "acme", "data": "x"},
    },
    "ocpp2.0.1": {
        "BootNotification": {
            "chargingStation": {"vendorName": "Acme", "model": "AC22"},
            "reason": "PowerUp",
        },
        "StatusNotification": {
            "timestamp": T0,
            "connectorStatus": "Available",
            "evseId": 1,
            "connectorId": 1,
        },
        "Authorize": {"idToken": {"idToken": "TAG1", "type": "ISO14443"}},
        "TransactionEvent": {
            "eventType": "Started",
            "timestamp": T0,
            "triggerReason": "Authorized",
            "seqNo": 0,
            "transactionInfo": {"transactionId": "T-1"},
            "evse": {"id": 1, "connectorId": 1},
            "meterValue": [{"timestamp": T0, "sampledValue": [{"value": 1.5}]}],
        },
        "MeterValues": {
            "evseId": 1,
            "meterValue": [
                {
                    "timestamp": T0,
                    "sampledValue": [
                        {
                            "value": 12.5,
                            "measurand": "Energy.Active.Import.Register",
                            "unitOfMeasure": {"unit": "kWh", "multiplier": 3},
                        }
                    ],
                }
            ],
        },
        "NotifyEVChargingNeeds": {
            "evseId": 1,
            "chargingNeeds": {
                "requestedEnergyTransfer": "AC_three_phase",
                "acChargingParameters": {
                    "energyAmount": 20000,
                    "evMinCurrent": 6,
                    "evMaxCurrent": 32,
                    "evMaxVoltage": 400,
                },
            },
        },
        "NotifyChargingLimit": {"chargingLimit": {"chargingLimitSource": "EMS"}},
        "NotifyReport": {"requestId": 1, "generatedAt": T0, "seqNo": 0},
        "DataTransfer": {"vendorId": "acme", "data": "x"},
    },
}


def _schema(version: str, action: str) -> dict[str, Any]:
    return get_validator(2, action, version.removeprefix("ocpp")).schema  # type: ignore[no-any-return]


def _resolve(root: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = root["definitions"][node["$ref"].rsplit("/", 1)[-1]]
    return node


@dataclass(frozen=True)
class Spot:
    """A place in a payload: its path, its schema and whether its parent requires it."""

    path: tuple[str | int, ...]
    schema: dict[str, Any]
    required: bool


def _spots(
    root: dict[str, Any], node: dict[str, Any], value: Any, path: tuple[Any, ...] = ()
) -> Iterator[Spot]:
    node = _resolve(root, node)
    if isinstance(value, dict):
        props = node.get("properties", {})
        for key, item in value.items():
            sub = props.get(key, {})
            yield Spot((*path, key), _resolve(root, sub), key in node.get("required", []))
            yield from _spots(root, sub, item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            sub = node.get("items", {})
            yield Spot((*path, i), _resolve(root, sub), False)
            yield from _spots(root, sub, item, (*path, i))


def _get(payload: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        payload = payload[key]
    return payload


def _set(payload: Any, path: tuple[Any, ...], value: Any) -> None:
    _get(payload, path[:-1])[path[-1]] = value


MARK = "@@mark@@"
WRONG: dict[str, st.SearchStrategy[Any]] = {
    "string": st.integers(0, 9) | st.booleans() | st.none() | st.just({}) | st.just([]),
    "integer": st.text(max_size=5) | st.booleans() | st.none() | st.just({}) | st.just([1]),
    "number": st.text(max_size=5) | st.booleans() | st.none() | st.just({}) | st.just([1]),
    "array": st.text(max_size=5) | st.integers(0, 9) | st.none() | st.just({"a": 1}),
    "object": st.text(max_size=5) | st.integers(0, 9) | st.none() | st.just([{}]),
    "boolean": st.text(max_size=5) | st.integers(0, 9) | st.none() | st.just({}),
}
WRONG["integer"] = WRONG["integer"] | st.just(1.5)  # 1.0 is an integer to draft-06


SCHEMA_KINDS = ("drop", "wrong_type", "extra_key", "too_long", "bad_enum")
VALUE_KINDS = ("nan", "huge_number", "deep", "bad_chars", "huge_valid")


@st.composite
def bad_payload(draw: st.DrawFn, wanted: tuple[str, ...]) -> Case:
    """A known action whose payload breaks the schema, or holds what no payload may hold (NaN,
    numbers beyond 32 bits or a double, deep nesting, NUL), in one place."""
    version = draw(versions)
    action = draw(st.sampled_from(sorted(BASE[version])))
    payload = copy.deepcopy(BASE[version][action])
    root = _schema(version, action)
    spots = list(_spots(root, root, payload))
    uid = draw(ids)
    v = version
    kinds = ["wrong_type", "extra_key", "nan", "huge_number", "deep", "bad_chars"]
    if any(s.required for s in spots):
        kinds.append("drop")
    if any("maxLength" in s.schema for s in spots):
        kinds.append("too_long")
    if any("enum" in s.schema for s in spots):
        kinds.append("bad_enum")
    if action == "DataTransfer":
        kinds.append("huge_valid")
    kind = draw(st.sampled_from([k for k in kinds if k in wanted] or ["wrong_type"]))
    raw: str | None = None  # replaces MARK in the frame text
    alt_uid: str | None = None
    codes = {fmt(v)}
    expected_uid = uid
    if kind == "drop":
        spot = draw(st.sampled_from([s for s in spots if s.required]))
        del _get(payload, spot.path[:-1])[spot.path[-1]]
        codes = set(payload_codes(v))
    elif kind == "wrong_type":
        spot = draw(st.sampled_from([s for s in spots if s.schema.get("type") in WRONG]))
        _set(payload, spot.path, draw(WRONG[spot.schema["type"]]))
        codes = set(payload_codes(v))
    elif kind == "extra_key":
        objects = [()] + [s.path for s in spots if isinstance(_get(payload, s.path), dict)]
        path = draw(st.sampled_from(objects))
        target = _get(payload, path)
        known = {camel_to_snake_case(k) for k in target} | {"custom_data"}
        key = draw(ids.filter(lambda k: camel_to_snake_case(k) not in known))
        target[key] = draw(json_values)
    elif kind == "too_long":
        spot = draw(st.sampled_from([s for s in spots if "maxLength" in s.schema]))
        size = draw(st.integers(spot.schema["maxLength"] + 1, 50_000))
        _set(payload, spot.path, "x" * size)
        codes = {"TypeConstraintViolation"}  # the ocpp package's answer to maxLength
    elif kind == "bad_enum":
        spot = draw(st.sampled_from([s for s in spots if "enum" in s.schema]))
        bad = draw(texts.filter(lambda t: t not in spot.schema["enum"]))
        _set(payload, spot.path, bad)
    elif kind == "huge_valid":
        _set(payload, ("data",), "d" * draw(st.integers(1000, 50_000)))
        codes = set()
    else:
        spot = draw(st.sampled_from(spots))
        _set(payload, spot.path, MARK)
        if kind == "nan":
            raw = draw(st.sampled_from(["NaN", "Infinity", "-Infinity"]))
        elif kind == "huge_number":
            big = draw(
                st.integers(2**31, 2**31 + 10**9)
                | st.integers(-(2**31) - 10**9, -(2**31) - 1)
                | st.integers(10, 4000).map(lambda n: 10**n)
            )
            raw = draw(st.sampled_from([str(big), "1e400", "-1e400"]))
            codes = {"TypeConstraintViolation"}
            if draw(st.integers(0, 9)) == 0:  # more digits than Python reads (> 4300)
                raw, expected_uid, codes = "7" * 5000, "-1", {fmt(v)}
        elif kind == "deep":
            depth = draw(st.integers(33, 800) | st.integers(1500, 9000))  # < 60 KB
            opener, closer = draw(st.sampled_from([('{"a":', "}"), ("[", "]")]))
            raw = opener * depth + "1" + closer * depth
            if depth > 800:  # Python's parser may give up first, and the id is lost too
                alt_uid = "-1"
        else:  # bad_chars
            bad = draw(st.sampled_from(["\x00", "\ud800", "\udfff"]))
            raw = json.dumps(draw(st.text(max_size=10)) + bad + draw(st.text(max_size=10)))
            codes = {"PropertyConstraintViolation"}
    text = json.dumps([2, uid, action, payload])
    if raw is not None:
        text = text.replace(json.dumps(MARK), raw, 1)
    if kind == "huge_valid":
        return Case(version, text, None, uid, "a big valid DataTransfer")
    return error(version, text, codes, expected_uid, f"{action}: {kind}", alt_uid)


@st.composite
def unknown_action(draw: st.DrawFn) -> Case:
    version = draw(versions)
    uid = draw(ids)
    # Actions no one knows, and known ones we do not handle (e.g. the CSMS's own, like Reset).
    action = draw(
        st.text(max_size=60).filter(lambda a: a not in KNOWN[version])
        | st.sampled_from(sorted(KNOWN[version] - HANDLED[version]))
    )
    frame = json.dumps([2, uid, action, draw(dicts)])
    return error(version, frame, {"NotImplemented"}, uid, "unknown or unhandled action")


@st.composite
def stray_answers(draw: st.DrawFn) -> Case:
    """CALLRESULTs and CALLERRORs for calls never made: nothing to answer (§4.1.4: an answer's id
    is that of the call it answers), and nothing may pile up (see test_memory_stays_bounded)."""
    version = draw(versions)
    uid = "never-" + draw(ids)[:30]
    frame = draw(
        st.builds(lambda p: [3, uid, p], dicts)
        | st.builds(
            lambda c, d, x: [4, uid, c, d, x],
            st.sampled_from(sorted(CODES[version])) | st.text(max_size=20),
            st.text(max_size=50),
            dicts,
        )
    )
    return silence(version, json.dumps(frame), "an answer to no call")


CATEGORIES: dict[str, st.SearchStrategy[Case]] = {
    "not_json": not_json(),
    "not_array": not_array(),
    "bad_message_type": bad_message_type(),
    "bad_id": bad_id(),
    "bad_structure": bad_structure(),
    "unknown_action": unknown_action(),
    "bad_payload_schema": bad_payload(SCHEMA_KINDS),
    "bad_payload_values": bad_payload(VALUE_KINDS),
    "stray_answers": stray_answers(),
}


def _nested(levels: int) -> str:
    """A CALL whose payload holds containers down to depth ``levels`` (the frame is depth 0)."""
    inner = "1"
    for _ in range(levels):  # the outermost is the payload, at depth 1
        inner = '{"a": ' + inner + "}"
    return f'[2, "d", "DataTransfer", {inner}]'


def test_the_value_checks_have_sharp_edges() -> None:
    """Pure: what the value checks refuse, and what they must still take."""
    ok = [
        f'[2, "a", "Heartbeat", {{"x": {INT_MAX}, "y": {INT_MIN}, "z": 1.7e308}}]',
        '[2, "a", "Heartbeat", {"x": "\\u0041\\u00e9\\ud83d\\ude00"}]',  # escapes, a valid pair
        '[2, "12345678901234567890", "Heartbeat", {"x": "2147483648"}]',  # digits in strings
        _nested(MAX_DEPTH - 1),
    ]
    for frame in ok:
        assert parse_frame(frame, "ocpp2.0.1")[1] is None, frame
    bad = {
        f'[2, "a", "Heartbeat", {{"x": {INT_MAX + 1}}}]': "TypeConstraintViolation",
        f'[2, "a", "Heartbeat", {{"x": {INT_MIN - 1}}}]': "TypeConstraintViolation",
        '[2, "a", "Heartbeat", {"x": -1e309}]': "TypeConstraintViolation",
        '[2, "a", "Heartbeat", {"x": [-Infinity]}]': "FormatViolation",
        '[2, "a", "Heartbeat", {"x\\u0000": 1}]': "PropertyConstraintViolation",
        '[2, "a", "Heartbeat", {"x": "\\udc00"}]': "PropertyConstraintViolation",
        _nested(MAX_DEPTH): "FormatViolation",
    }
    for frame, code in bad.items():
        reply = check_frame(frame, "ocpp2.0.1")
        assert reply is not None, frame
        assert json.loads(reply)[1:3] == [json.loads(frame.replace("Infinity", "0"))[1], code]


def test_malformed_callerrors_are_dropped_and_unknown_codes_renamed() -> None:
    assert parse_frame('[4, "a", "GenericError", "d", {}, 1]', "ocpp1.6") == (None, None)
    assert parse_frame('[4, "a", 7, "d", {}]', "ocpp1.6") == (None, None)
    assert parse_frame('[4, "a", "GenericError", "d\\u0000", {}]', "ocpp1.6") == (None, None)
    msg, reply = parse_frame('[4, "a", "NotSupported", null]', "ocpp1.6")  # tolerated
    assert (msg, reply) == ([4, "a", "NotSupported", None], None)
    assert for_package([4, "a", "NotSupported", "d", {}]) is None
    renamed = for_package([4, "a", "RpcFrameworkError", "x" * 300, {"k": 1}])
    assert renamed is not None
    kind, uid, code, description, details = json.loads(renamed)
    assert (kind, uid, code, details) == (4, "a", "GenericError", {"k": 1})
    assert description.startswith("RpcFrameworkError: x")
    assert len(description) == 255
    assert for_package([3, "a", {}]) is None


def test_the_base_payloads_are_valid() -> None:
    """The fuzzing breaks valid payloads: they must be valid to start with (so it can fail)."""
    for version, actions in BASE.items():
        for action, payload in actions.items():
            get_validator(2, action, version.removeprefix("ocpp")).validate(payload)


# --- the running system --------------------------------------------------------------------------


async def good_charger_session(good: Client16) -> int:
    """What a well-behaved 1.6 charger does before the storm; returns its transaction id."""
    await boot16(good)
    await good.call(
        c16.StatusNotification(connector_id=1, error_code="NoError", status="Charging"),
        suppress=False,
    )
    start = await good.call(
        c16.StartTransaction(connector_id=1, id_tag="TAG1", meter_start=1000, timestamp=T0),
        suppress=False,
    )
    for minute, wh in ((15, "2500"), (30, "4000")):
        await good.call(
            c16.MeterValues(
                connector_id=1,
                transaction_id=start.transaction_id,
                meter_value=[
                    {
                        "timestamp": f"2026-01-05T08:{minute}:00Z",
                        "sampledValue": [
                            {"value": wh, "measurand": "Energy.Active.Import.Register"},
                            {"value": "7400", "measurand": "Power.Active.Import", "unit": "W"},
                        ],
                    }
                ],
            ),
            suppress=False,
        )
    return int(start.transaction_id)


async def stored(rt: Runtime) -> dict[str, Any]:
    """Everything stored about each charger, as plain values."""
    out: dict[str, Any] = {}
    async with rt.sessions() as s:
        for cp in (await s.exec(select(ChargePoint))).all():
            txs = (
                await s.exec(select(Transaction).where(Transaction.charge_point_id == cp.id))
            ).all()
            mvs = (
                await s.exec(
                    select(MeterValue)
                    .where(MeterValue.charge_point_id == cp.id)
                    .order_by(col(MeterValue.id))
                )
            ).all()
            conns = (
                await s.exec(select(Connector).where(Connector.charge_point_id == cp.id))
            ).all()
            needs = (
                await s.exec(
                    select(NeedsInput).where(
                        col(NeedsInput.transaction_id).in_([t.id for t in txs])
                    )
                )
            ).all()
            out[cp.id] = {
                "vendor": cp.vendor,
                "booted_at": cp.booted_at,
                "transactions": [t.model_dump(exclude={"stopped_at"}) for t in txs],
                "meter_values": [m.model_dump() for m in mvs],
                "connectors": [c.model_dump(exclude={"updated_at"}) for c in conns],
                "needs": [n.model_dump() for n in needs],
            }
    return out


def assert_nothing_stored_for(db: dict[str, Any], cp_id: str) -> None:
    """A hostile charger that never sent a valid payload owns no rows beyond its registration."""
    if cp_id not in db:
        return
    row = db[cp_id]
    assert row["vendor"] is None, row
    assert row["booted_at"] is None, row
    assert row["transactions"] == row["meter_values"] == row["connectors"] == [], row


def close_all(links: dict[str, Link]) -> None:
    for link in links.values():
        link.close()


def fuzz(port: int, strategy: st.SearchStrategy[Case], examples: int) -> dict[str, Link]:
    """Run hypothesis over ``strategy`` against the server (blocking: call it in a thread)."""
    links = {v: Link(port, v) for v in VERSIONS}

    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.filter_too_much,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )
    @given(case=strategy)
    def one_frame(case: Case) -> None:
        link = links[case.version]
        try:
            replies = link.exchange(case.frame)
        except ConnectionClosed:
            links[case.version] = Link(port, case.version)  # let shrinking go on
            raise AssertionError(f"{case.why}: connection closed on {case.frame[:300]!r}") from None
        case.check(replies)

    try:
        one_frame()
    except BaseException:
        close_all(links)
        raise
    return links


@pytest.mark.parametrize("category", sorted(CATEGORIES))
async def test_fuzzed_frames_get_the_right_answer_and_harm_no_one(
    run_csms: RunCsms, category: str
) -> None:
    async with (
        run_csms(**OPEN, max_messages_per_s=0) as rt,
        connect(rt.ocpp.port, GOOD, "ocpp1.6") as good,
    ):
        tx = await good_charger_session(good)
        before = await stored(rt)
        examples = 2 * EXAMPLES if category.startswith("bad_payload") else EXAMPLES  # more kinds
        links = await asyncio.to_thread(fuzz, rt.ocpp.port, CATEGORIES[category], examples)
        try:
            # The hostile connections are still up, and nothing waits in their answer queues.
            for version, cp_id in EVIL.items():
                assert cp_id in rt.ocpp.connections, version
                assert rt.ocpp.connections[cp_id]._response_queue.qsize() == 0
            # The good charger was served all along and still is.
            hb = await good.call(c16.Heartbeat(), suppress=False)
            assert hb.current_time
            await rt.ocpp.writer.flush()
            after = await stored(rt)
            assert after[GOOD] == before[GOOD]
            assert [t["id"] for t in after[GOOD]["transactions"]] == [tx]
            assert len(after[GOOD]["meter_values"]) == 4
            for cp_id in EVIL.values():
                assert_nothing_stored_for(after, cp_id)
        finally:
            await asyncio.to_thread(close_all, links)


# --- deterministic regressions (each found by the fuzzing) ---------------------------------------

MV16 = (
    '{"connectorId": %s, "meterValue": [{"timestamp": "%s", "sampledValue": [{"value": "1"%s}]}]}'
)
MV201 = '{"evseId": 1, "meterValue": [{"timestamp": "%s", "sampledValue": [{"value": %s%s}]}]}'
REGRESSIONS: list[tuple[str, str, str | None, str | None]] = [
    # (version, frame, expected code (None: a CALLRESULT), expected id (None: no answer at all))
    # An integer of more digits than Python reads raised ValueError, not JSONDecodeError: the
    # connection handler died.
    ("ocpp1.6", '[2, "r1", "Heartbeat", {"x": ' + "1" * 5000 + "}]", "FormationViolation", "-1"),
    # NaN / Infinity are not JSON; PostgreSQL's json type refused the message-log row.
    ("ocpp1.6", '[2, "r2", "Heartbeat", {"x": NaN}]', "FormationViolation", "r2"),
    ("ocpp2.0.1", '[2, "r3", "Heartbeat", {"x": 1e400}]', "TypeConstraintViolation", "r3"),
    # Beyond 32 bits: SQLite / PostgreSQL refused the row, failing every charger's meter values
    # in the same batch (answered InternalError).
    ("ocpp1.6", '[2, "r4", "MeterValues", ' + MV16 % ("2147483648", T0, "") + "]",
     "TypeConstraintViolation", "r4"),
    ("ocpp2.0.1", '[2, "r5", "TransactionEvent", {"eventType": "Started", "timestamp": "' + T0
     + '", "triggerReason": "Authorized", "seqNo": 99999999999, "transactionInfo": '
     '{"transactionId": "T9"}}]', "TypeConstraintViolation", "r5"),
    # NUL: PostgreSQL text refused it, again failing the whole meter batch.
    ("ocpp1.6", '[2, "r6", "MeterValues", ' + MV16 % ("1", T0, ', "measurand": "x\\u0000"') + "]",
     "PropertyConstraintViolation", "r6"),
    ("ocpp1.6", '[2, "r7", "Authorize", {"idTag": "\\ud800"}]', "PropertyConstraintViolation",
     "r7"),
    # A date whose UTC is out of range raised OverflowError: InternalError. Now read as "unknown
    # time" like any other unreadable one (the tolerant parse_time), so taken.
    ("ocpp1.6", '[2, "r8", "MeterValues", ' + MV16 % ("1", "0001-01-01T00:00:00+01:00", "")
     + "]", None, "r8"),
    ("ocpp2.0.1", '[2, "r9", "NotifyEVChargingNeeds", {"evseId": 1, "chargingNeeds": '
     '{"requestedEnergyTransfer": "DC", "departureTime": "9999-12-31T23:59:59-10:00"}}]', None,
     "r9"),
    # 2.0.1 MeterValues skip the schema: a multiplier of 400 or "x" raised in the mapping.
    ("ocpp2.0.1", '[2, "r10", "MeterValues", ' + MV201 % (T0, "1", ', "unitOfMeasure": '
     '{"multiplier": 400}') + "]", "PropertyConstraintViolation", "r10"),
    ("ocpp2.0.1", '[2, "r11", "MeterValues", ' + MV201 % (T0, "1", ', "unitOfMeasure": '
     '{"multiplier": "x"}') + "]", "TypeConstraintViolation", "r11"),
    ("ocpp2.0.1", '[2, "r12", "MeterValues", ' + MV201 % (T0, "1e300", ', "unitOfMeasure": '
     '{"multiplier": 10}') + "]", "PropertyConstraintViolation", "r12"),
    # MeterValues skip the schema but must give its answers: unknown fields, enums.
    ("ocpp1.6", '[2, "r13", "MeterValues", ' + MV16 % ("1", T0, ', "measurand": "Bogus"') + "]",
     "FormationViolation", "r13"),
    ("ocpp1.6", '[2, "r14", "MeterValues", ' + MV16 % ("1", T0, ', "measurand": {"a": 1}') + "]",
     "TypeConstraintViolation", "r14"),
    ("ocpp1.6", '[2, "r15", "MeterValues", ' + MV16 % ("1", T0, ', "extra": 1') + "]",
     "FormationViolation", "r15"),
    ("ocpp2.0.1", '[2, "r16", "MeterValues", ' + MV201 % (T0, "1", ', "unitOfMeasure": '
     '{"unit": "' + "W" * 21 + '"}') + "]", "TypeConstraintViolation", "r16"),
    ("ocpp1.6", '[2, "r17", "Heartbeat", {"extra": 1}]', "FormationViolation", "r17"),
    # Deep payloads are refused before anything recurses over them.
    ("ocpp2.0.1", '[2, "r18", "Heartbeat", {"customData": {"vendorId": "v", "a": '
     + '{"a": ' * 900 + "1" + "}" * 900 + "}}]", "FormatViolation", "r18"),
    # 2.0.1: an unreadable message id is an RpcFrameworkError (part 4 §4.3).
    ("ocpp2.0.1", '[2, 5, "Heartbeat", {}]', "RpcFrameworkError", "-1"),
    ("ocpp2.0.1", '{"not": "an array"}', "RpcFrameworkError", "-1"),
    # Answers to calls never made are dropped, malformed CALLERRORs too (never answered).
    ("ocpp1.6", '[3, "never-1", {}]', None, None),
    ("ocpp2.0.1", '[4, "never-2", "GenericError", "", {}]', None, None),
    ("ocpp2.0.1", '[4, "never-3", 5]', None, None),
]  # fmt: skip


async def test_regressions_found_by_fuzzing(run_csms: RunCsms) -> None:
    async with run_csms(**OPEN, max_messages_per_s=0) as rt:
        links = await asyncio.to_thread(lambda: {v: Link(rt.ocpp.port, v) for v in VERSIONS})
        try:
            wrong: list[str] = []  # every line is checked, and every wrong one reported
            for version, frame, code, uid in REGRESSIONS:
                try:
                    replies = await asyncio.to_thread(links[version].exchange, frame)
                except ConnectionClosed:
                    wrong.append(f"the connection closed on {frame[:100]!r}")
                    links[version] = await asyncio.to_thread(Link, rt.ocpp.port, version)
                    continue
                if uid is None:
                    case = silence(version, frame, "regression")
                elif code is None:
                    case = Case(version, frame, None, uid, "regression")
                else:
                    case = error(version, frame, {code}, uid, "regression")
                try:
                    case.check(replies)
                except AssertionError as exc:
                    wrong.append(str(exc).splitlines()[0])
            assert not wrong, "\n".join(wrong)
            await rt.ocpp.writer.flush()
            db = await stored(rt)
            # The taken ones stored their samples with the time of arrival (unreadable stamp).
            assert len(db[EVIL["ocpp1.6"]]["meter_values"]) == 1
            assert db[EVIL["ocpp2.0.1"]]["meter_values"] == []
        finally:
            await asyncio.to_thread(close_all, links)


# --- answers to our own calls --------------------------------------------------------------------


async def test_an_answer_with_an_error_code_the_ocpp_package_does_not_know(
    run_csms: RunCsms,
) -> None:
    """2.0.1's RpcFrameworkError is not in the ocpp package's list: its call() raised
    UnknownCallErrorCodeError through the gateway, which promises never to raise for a charger's
    errors. It now comes back as a GenericError naming the code."""
    from csms.domain.commands import Reset

    async with run_csms(**OPEN, response_timeout_s=5) as rt:
        ws = await websockets.connect(
            f"ws://127.0.0.1:{rt.ocpp.port}/ocpp/CS-ERR",
            subprotocols=["ocpp2.0.1"],  # type: ignore[list-item]
            proxy=None,
        )
        try:
            await asyncio.sleep(0.2)
            sent = asyncio.create_task(rt.gateway.send("CS-ERR", Reset(hard=True)))
            request = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert request[:3] == [2, request[1], "Reset"]
            # A stray answer first (another id): dropped, the call still waits for its own.
            await ws.send(json.dumps([3, "not-" + request[1][:30], {"status": "Accepted"}]))
            await ws.send(json.dumps([4, request[1], "RpcFrameworkError", "bad frame", {}]))
            result = await asyncio.wait_for(sent, 5)
            assert not result.ok
            assert result.error == "GenericError: RpcFrameworkError: bad frame"
        finally:
            await ws.close()


# --- frame size, encoding --------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
async def test_frames_over_the_size_limit_close_that_connection_only(
    run_csms: RunCsms, version: str
) -> None:
    """websockets enforces max_frame_bytes (after decompression) and closes with 1009 (RFC 6455
    §7.4.1 "message too big"); the frame is never parsed. A frame just under it is answered."""
    limit = 4096
    async with (
        run_csms(**OPEN, max_frame_bytes=limit) as rt,
        connect(rt.ocpp.port, GOOD, "ocpp1.6") as good,
    ):
        await boot16(good)
        url = f"ws://127.0.0.1:{rt.ocpp.port}/ocpp/{EVIL[version]}"
        for compression in ("deflate", None):
            async with websockets.connect(
                url,
                subprotocols=[version],  # type: ignore[list-item]
                proxy=None,
                compression=compression,
            ) as ws:
                head = '[2, "big", "DataTransfer", {"vendorId": "v", "data": "'
                fits = head + "x" * (limit - len(head) - 3) + '"}]'
                assert len(fits.encode()) == limit
                await ws.send(fits)
                assert json.loads(await asyncio.wait_for(ws.recv(), 5))[:2] == [3, "big"]
                await ws.send(head + "x" * limit + '"}]')
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 5)
                assert ws.close_code == 1009
            # Text that is not UTF-8: 1007 (RFC 6455 §8.1), also before any parsing.
            async with websockets.connect(url, subprotocols=[version], proxy=None) as ws:  # type: ignore[list-item]
                await ws.send(b'[2, "u", "Heartbeat", {"a": "\xff\xfe"}]', text=True)
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 5)
                assert ws.close_code == 1007
        assert (await good.call(c16.Heartbeat(), suppress=False)).current_time
        assert GOOD in rt.ocpp.connections


# --- memory ----------------------------------------------------------------------------------------


def storm_frames(version: str, n: int) -> list[str]:
    """A mix of what a hostile charger sends: bad frames of every kind and answers to nothing."""
    pad = "p" * 2000  # makes anything retained per frame visible in the memory totals
    frames = [
        "not json " + pad,
        json.dumps({"an": "object", "pad": pad}),
        json.dumps([9, "t", pad]),
        json.dumps([2, 17, "Heartbeat", {"pad": pad}]),
        json.dumps([2, "u", "Teleport", {"pad": pad}]),
        json.dumps([2, "u", "Heartbeat", {"pad": pad}]),
        json.dumps([2, "u", "BootNotification", {"pad": pad}]),
        json.dumps([2, "u", "MeterValues", {"connectorId": 1, "meterValue": [{"pad": pad}]}]),
        '[2, "u", "Heartbeat", {"a": ' + '{"a": ' * 500 + "1" + "}" * 500 + "}]",
    ]
    out: list[str] = []
    for i in range(n):
        if i % 2:
            out.append(json.dumps([3, f"never-{i}", {"pad": pad}]))  # answers to no call of ours
        elif i % 7 == 0:
            out.append(json.dumps([4, f"never-{i}", "GenericError", pad[:200], {"pad": pad}]))
        else:
            out.append(frames[i % len(frames)])
    return out


async def send_storm(ws: Any, frames: list[str], window: int = 100) -> None:
    """Pipeline ``frames``; after each window, wait for a sentinel's answer (so the server keeps
    up and nothing is measured half-done)."""
    for start in range(0, len(frames), window):
        for frame in frames[start : start + window]:
            await ws.send(frame)
        sentinel = f"sentinel-{start}"
        await ws.send(json.dumps([2, sentinel, "NoSuchAction", {}]))
        while json.loads(await asyncio.wait_for(ws.recv(), 30))[1] != sentinel:
            pass


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


MEMORY: dict[str, float] = {}  # what the last run measured (printed with -s)


async def test_memory_stays_bounded_under_a_storm(
    run_csms: RunCsms, caplog: pytest.LogCaptureFixture
) -> None:
    """Thousands of hostile frames (half of them answers to calls never made, which the ocpp
    package queued forever) leave the traced heap where it was, and every queue empty."""
    # pytest keeps every captured log record: thousands of warnings would be measured as growth.
    for name in ("ocpp", "csms.ocpp"):
        caplog.set_level(logging.CRITICAL, logger=name)
    async with (
        run_csms(**OPEN, max_messages_per_s=0) as rt,
        connect(rt.ocpp.port, GOOD, "ocpp1.6") as good,
    ):
        await good_charger_session(good)
        sockets = {
            v: await websockets.connect(
                f"ws://127.0.0.1:{rt.ocpp.port}/ocpp/{EVIL[v]}",
                subprotocols=[v],  # type: ignore[list-item]
                proxy=None,
            )
            for v in VERSIONS
        }
        try:
            for v, ws in sockets.items():  # warm up: caches, pools, compiled statements
                await send_storm(ws, storm_frames(v, 600))
            await rt.ocpp.writer.flush()
            gc.collect()
            tracemalloc.start()
            try:
                rss_before = rss_mb()
                heap_before = tracemalloc.get_traced_memory()[0]
                for v, ws in sockets.items():
                    await send_storm(ws, storm_frames(v, 3000))
                await rt.ocpp.writer.flush()
                gc.collect()
                heap_growth = (tracemalloc.get_traced_memory()[0] - heap_before) / 2**20
                MEMORY.update(heap_growth_mb=heap_growth, rss_growth_mb=rss_mb() - rss_before)
            finally:
                tracemalloc.stop()
            print(f"\nmemory after 6000 hostile frames: {MEMORY}")
            for cp_id in EVIL.values():
                assert rt.ocpp.connections[cp_id]._response_queue.qsize() == 0
            assert rt.ocpp.writer._queue.qsize() == 0
            # 6000 frames of 2 KB: anything kept per frame would be several MB.
            assert heap_growth < 3.0, MEMORY
            assert (await good.call(c16.Heartbeat(), suppress=False)).current_time
        finally:
            for ws in sockets.values():
                await ws.close()
