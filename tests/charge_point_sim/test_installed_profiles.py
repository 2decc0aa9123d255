"""Installing, replacing and clearing profiles; transactions (OCPP 1.6 3.13, 5.5, 5.16; 2.0.1 K01, K10)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from charge_point_sim.charger_model import ChargerState, InstalledProfile
from charge_point_sim.composite import limit_at
from charge_point_sim.errors import InvalidModelError
from charge_point_sim.profiles import Kind, Purpose, RateUnit
from tests.charge_point_sim.helpers import (
    HOUR,
    MAX_3PH_W,
    T0,
    V,
    install_all,
    periods,
    profile,
    spec,
)

EMPTY = ChargerState()


def installed(state: ChargerState) -> list[tuple[int, int, int, Purpose]]:
    """(connector, id, stack, purpose) of each installed profile, sorted."""
    return sorted(
        (ip.connector_id, ip.profile.id, ip.profile.stack_level, ip.profile.purpose)
        for ip in state.profiles
    )


def test_same_id_replaces_wherever_it_was() -> None:
    c = spec()
    state = install_all(c, EMPTY, (1, profile(7, [(0, 10)], stack=0)))
    state = install_all(c, state, (2, profile(7, [(0, 12)], stack=3)))
    assert installed(state) == [(2, 7, 3, Purpose.TX_DEFAULT)]
    assert periods(c, state, 1, T0, HOUR) == [(0.0, 32.0)]
    assert periods(c, state, 2, T0, HOUR) == [(0.0, 12.0)]


def test_same_stack_and_purpose_on_same_connector_replaces() -> None:
    c = spec()
    state = install_all(c, EMPTY, (1, profile(1, [(0, 10)], stack=2)))
    state = install_all(c, state, (1, profile(2, [(0, 14)], stack=2)))
    assert installed(state) == [(1, 2, 2, Purpose.TX_DEFAULT)]
    assert periods(c, state, 1, T0, HOUR) == [(0.0, 14.0)]


def test_same_stack_and_purpose_elsewhere_or_other_purpose_is_kept() -> None:
    c = spec()
    state = EMPTY.start_transaction(1, "tx", T0)
    state = install_all(
        c,
        state,
        (1, profile(1, [(0, 10)], stack=2)),
        (2, profile(2, [(0, 14)], stack=2)),  # other connector
        (1, profile(3, [(0, 8)], stack=2, purpose=Purpose.TX, kind=Kind.RELATIVE)),  # other purpose
        (1, profile(4, [(0, 9)], stack=1)),  # other stack level
    )
    assert [i[1] for i in installed(state)] == [1, 3, 4, 2]


def test_clear_by_id_ignores_the_other_criteria() -> None:
    c = spec()
    state = install_all(c, EMPTY, (1, profile(1, [(0, 10)])), (2, profile(2, [(0, 10)])))
    # OCPP 1.6 5.5: with an id, the other fields do not narrow the match.
    new, n = state.clear(profile_id=2, connector_id=1, purpose=Purpose.TX, stack_level=9)
    assert n == 1
    assert installed(new) == [(1, 1, 0, Purpose.TX_DEFAULT)]


def test_clear_by_purpose_stack_level_and_connector() -> None:
    c = spec()
    state = EMPTY.start_transaction(1, "tx", T0)
    state = install_all(
        c,
        state,
        (0, profile(1, [(0, 30000)], purpose=Purpose.CHARGE_POINT_MAX, unit=RateUnit.W)),
        (0, profile(2, [(0, 16)], stack=0)),
        (0, profile(3, [(0, 12)], stack=1)),
        (1, profile(4, [(0, 10)], stack=1)),
        (1, profile(5, [(0, 8)], stack=1, purpose=Purpose.TX, kind=Kind.RELATIVE)),
    )
    new, n = state.clear(purpose=Purpose.TX_DEFAULT)
    assert (n, [i[1] for i in installed(new)]) == (3, [1, 5])
    new, n = state.clear(stack_level=1)
    assert (n, [i[1] for i in installed(new)]) == (3, [1, 2])
    # Connector 0 means profiles installed on 0, not every connector.
    new, n = state.clear(connector_id=0)
    assert (n, [i[1] for i in installed(new)]) == (3, [4, 5])
    new, n = state.clear(connector_id=1, purpose=Purpose.TX_DEFAULT, stack_level=1)
    assert (n, [i[1] for i in installed(new)]) == (1, [1, 2, 3, 5])
    new, n = state.clear()
    assert (n, new.profiles) == (5, ())


def test_clear_that_matches_nothing_changes_nothing() -> None:
    c = spec()
    state = install_all(c, EMPTY, (1, profile(1, [(0, 10)])))
    new, n = state.clear(profile_id=99)
    assert (n, new) == (0, state)
    new, n = state.clear(purpose=Purpose.CHARGE_POINT_MAX)
    assert (n, new) == (0, state)


def test_clearing_restores_the_lower_limit() -> None:
    c = spec()
    state = install_all(c, EMPTY, (0, profile(1, [(0, 16)])), (0, profile(2, [(0, 8)], stack=1)))
    assert periods(c, state, 1, T0, HOUR) == [(0.0, 8.0)]
    state, _ = state.clear(stack_level=1)
    assert periods(c, state, 1, T0, HOUR) == [(0.0, 16.0)]


def test_tx_profiles_are_removed_when_the_transaction_ends() -> None:
    c = spec()
    state = EMPTY.start_transaction(1, "a", T0).start_transaction(2, "b", T0)
    tx = profile(3, [(0, 6)], purpose=Purpose.TX, kind=Kind.RELATIVE)
    tx2 = profile(4, [(0, 7)], purpose=Purpose.TX, kind=Kind.RELATIVE)
    state = install_all(c, state, (0, profile(1, [(0, 16)])), (1, tx), (2, tx2))
    assert periods(c, state, 1, T0, HOUR) == [(0.0, 6.0)]
    state = state.end_transaction(1)
    assert state.transaction_on(1) is None
    assert [i[1] for i in installed(state)] == [1, 4]
    assert periods(c, state, 1, T0, HOUR) == [(0.0, 16.0)]
    assert periods(c, state, 2, T0, HOUR) == [(0.0, 7.0)]


def test_tx_profile_of_another_transaction_does_not_apply() -> None:
    # Installed directly (bypassing validation), as if left over: it must not govern a new session.
    state = EMPTY.start_transaction(1, "new", T0)
    stale = profile(3, [(0, 6)], purpose=Purpose.TX, kind=Kind.RELATIVE, transaction_id="old")
    state = state.install(1, stale)
    assert limit_at(spec(), state, 1, T0) == pytest.approx(MAX_3PH_W)


def test_transactions_are_one_per_connector_and_aware() -> None:
    state = EMPTY.start_transaction(1, "a", T0)
    with pytest.raises(InvalidModelError, match="already has a transaction"):
        state.start_transaction(1, "b", T0)
    with pytest.raises(InvalidModelError, match="timezone-aware"):
        EMPTY.start_transaction(1, "a", datetime(2026, 3, 2))
    # Ending a transaction that does not exist is harmless (a repeated StopTransaction).
    assert EMPTY.end_transaction(1) == EMPTY


def test_profiles_on_filters_by_connector_and_purpose() -> None:
    c = spec()
    state = install_all(c, EMPTY, (0, profile(1, [(0, 16)])), (1, profile(2, [(0, 10)])))
    assert [p.id for p in state.profiles_on(0)] == [1]
    assert [p.id for p in state.profiles_on(1, Purpose.TX_DEFAULT)] == [2]
    assert state.profiles_on(1, Purpose.TX) == ()
    assert state.profiles[0] == InstalledProfile(0, profile(1, [(0, 16)]))


def test_time_boundaries_use_microsecond_precision() -> None:
    c = spec()
    edge = T0 + timedelta(seconds=1800, microseconds=500_000)
    state = install_all(c, EMPTY, (0, profile(1, [(0, 10)], start=edge)))
    assert limit_at(c, state, 1, edge - timedelta(microseconds=1)) == pytest.approx(MAX_3PH_W)
    assert limit_at(c, state, 1, edge) == pytest.approx(10 * V * 3)
    assert periods(c, state, 1, T0, HOUR) == [(0.0, 32.0), (1800.5, 10.0)]
