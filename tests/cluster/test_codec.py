"""The JSON codec of commands, results and notices: pure, no Redis."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, get_args

import pytest
from hypothesis import given
from hypothesis import strategies as st

from csms.cluster.codec import (
    COMMAND_TYPES,
    CodecError,
    decode_command,
    decode_notice,
    decode_result,
    dumps,
    encode_command,
    encode_notice,
    encode_result,
    loads,
)
from csms.domain.commands import (
    Command,
    CommandResult,
    GetCompositeSchedule,
    RawCall,
    Reset,
    StartCharging,
    StopCharging,
    TriggerMessage,
    UnlockConnector,
)
from csms.services.notifications import Notice, NoticeKind

ints = st.integers(min_value=-(2**53), max_value=2**53)
texts = st.text(max_size=30)
floats = st.floats(allow_nan=False, allow_infinity=False)
json_values = st.recursive(
    st.none() | st.booleans() | ints | floats | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=20,
)
json_objects = st.dictionaries(texts, json_values, max_size=5)

COMMAND_STRATEGIES: dict[type[Any], st.SearchStrategy[Any]] = {
    StartCharging: st.builds(
        StartCharging, id_tag=texts, evse_id=st.none() | ints, remote_start_id=ints
    ),
    StopCharging: st.builds(StopCharging, transaction_id=texts),
    Reset: st.builds(Reset, hard=st.booleans()),
    UnlockConnector: st.builds(UnlockConnector, connector_id=ints, evse_id=ints),
    TriggerMessage: st.builds(TriggerMessage, message=texts, evse_id=st.none() | ints),
    GetCompositeSchedule: st.builds(
        GetCompositeSchedule,
        evse_id=ints,
        duration_s=ints,
        unit=st.none() | st.sampled_from(["A", "W"]),
    ),
    RawCall: st.builds(RawCall, action=texts, payload=json_objects),
}
commands = st.one_of(*COMMAND_STRATEGIES.values())


def test_every_command_type_has_a_codec_and_a_strategy() -> None:
    # A command added to the union without a codec test fails here.
    assert set(COMMAND_STRATEGIES) == set(get_args(Command))
    assert set(COMMAND_TYPES.values()) == set(get_args(Command))


@given(commands)
def test_commands_round_trip_through_json(command: Any) -> None:
    wire = dumps(encode_command(command))
    back = decode_command(loads(wire))
    assert back == command
    assert type(back) is type(command)


@given(
    st.builds(
        CommandResult,
        ok=st.booleans(),
        status=st.none() | texts,
        payload=json_objects,
        error=st.none() | texts,
        latency_s=floats,
    )
)
def test_results_round_trip_through_json(result: CommandResult) -> None:
    assert decode_result(loads(dumps(encode_result(result)))) == result


aware_times = st.datetimes(
    min_value=datetime(2000, 1, 1),
    max_value=datetime(2100, 1, 1),
    timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=-7)), timezone(timedelta(hours=5, minutes=30))]
    ),
)


@given(
    st.builds(
        Notice,
        kind=st.sampled_from(get_args(NoticeKind)),
        charge_point_id=texts,
        evse_id=ints,
        transaction_id=st.none() | ints,
        power_w=st.none() | floats,
        energy_wh=st.none() | floats,
        at=st.none() | aware_times,
        site_id=st.none() | texts,
        data=st.none() | json_objects,
    )
)
def test_notices_round_trip_through_json(notice: Notice) -> None:
    back = decode_notice(loads(dumps(encode_notice(notice))))
    assert back == notice
    if notice.at is not None:
        assert back.at is not None
        assert back.at.utcoffset() == notice.at.utcoffset()


def test_the_wire_form_is_tagged_and_flat() -> None:
    assert encode_command(StopCharging("42")) == {"type": "StopCharging", "transaction_id": "42"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"type": "Explode"}, "unknown command type"),
        ({"transaction_id": "1"}, "unknown command type"),
        ({"type": "StopCharging"}, "transaction_id"),  # missing field
        ({"type": "StopCharging", "transaction_id": 1}, "expected a string"),
        ({"type": "Reset", "hard": 1}, "expected a boolean"),
        ({"type": "UnlockConnector", "connector_id": True}, "expected an integer"),
        ({"type": "UnlockConnector", "connector_id": 1.0}, "expected an integer"),
        ({"type": "RawCall", "action": "X", "payload": []}, "expected an object"),
        ({"type": "Reset", "hard": True, "soft": True}, "unknown fields"),
        ([1, 2], "JSON object"),
    ],
)
def test_decoding_is_strict(data: Any, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        decode_command(data)


def test_bad_results_and_notices_are_refused() -> None:
    with pytest.raises(CodecError, match="expected a number"):
        decode_result({"ok": True, "latency_s": "fast"})
    with pytest.raises(CodecError, match="is not one of"):
        decode_notice({"kind": "exploded"})
    with pytest.raises(CodecError, match="ISO 8601"):
        decode_notice({"kind": "meter", "at": 12})
    with pytest.raises(CodecError):
        decode_notice({"kind": "meter", "at": "yesterday"})


def test_what_json_cannot_carry_is_refused_on_the_sending_side() -> None:
    with pytest.raises(CodecError, match="JSON"):
        dumps(encode_command(RawCall("X", {"limit": math.nan})))
    with pytest.raises(CodecError, match="JSON"):
        dumps(encode_command(RawCall("X", {"when": datetime.now(UTC)})))


def test_loads_wants_a_json_object() -> None:
    with pytest.raises(CodecError, match="not JSON"):
        loads("{")
    with pytest.raises(CodecError, match="JSON object"):
        loads("[]")


def test_integers_for_floats_are_accepted_as_floats() -> None:
    # json.dumps(1.0) is "1.0", but another JSON writer may send "1".
    result = decode_result({"ok": True, "latency_s": 1})
    assert result.latency_s == 1.0
    assert isinstance(result.latency_s, float)
