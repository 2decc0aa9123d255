"""The login throttle, pure: a manual clock, no sockets."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from csms.domain.clock import ManualClock
from csms.domain.login_throttle import (
    LoginGuard,
    LoginThrottle,
    ThrottlePolicy,
    address_key,
    retry_after_header,
)

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
POLICY = ThrottlePolicy(max_failures=3, window_s=60.0, lockout_s=10.0, max_lockout_s=80.0)


def make(policy: ThrottlePolicy = POLICY) -> tuple[LoginThrottle, ManualClock]:
    clock = ManualClock(T0)
    return LoginThrottle(policy, clock), clock


def fail(t: LoginThrottle, key: str, times: int) -> list[float | None]:
    return [t.failure(key) for _ in range(times)]


def test_the_nth_failure_within_the_window_locks_the_key_out() -> None:
    t, clock = make()
    assert fail(t, "cp", 2) == [None, None]
    assert t.retry_after("cp") is None
    assert t.failure("cp") == 10.0
    assert t.retry_after("cp") == 10.0
    clock.advance(4)
    assert t.retry_after("cp") == pytest.approx(6.0)
    assert t.retry_after("other") is None  # keys are independent
    clock.advance(6)
    assert t.retry_after("cp") is None  # the lockout ends exactly on time


def test_failures_older_than_the_window_do_not_count() -> None:
    t, clock = make()
    fail(t, "cp", 2)
    clock.advance(60)  # the first two are now exactly one window old: out
    assert t.failure("cp") is None
    clock.advance(30)
    assert t.failure("cp") is None
    assert t.failure("cp") == 10.0  # three within 30 s


def test_lockouts_in_a_row_double_up_to_the_maximum() -> None:
    t, clock = make()
    lockouts = []
    for _ in range(6):
        lockouts.append(fail(t, "cp", 3)[-1])
        clock.advance(t.retry_after("cp") or 0)
    assert lockouts == [10.0, 20.0, 40.0, 80.0, 80.0, 80.0]


def test_the_streak_is_forgotten_after_a_quiet_period_as_long_as_the_longest_lockout() -> None:
    t, clock = make()
    assert fail(t, "cp", 3)[-1] == 10.0
    clock.advance(10)
    assert fail(t, "cp", 3)[-1] == 20.0
    clock.advance(20 + 80)  # ended 80 s ago: still within the streak
    assert fail(t, "cp", 3)[-1] == 40.0
    clock.advance(40 + 80.5)
    assert fail(t, "cp", 3)[-1] == 10.0


def test_failures_while_locked_out_are_not_counted_and_do_not_extend_it() -> None:
    t, clock = make()
    fail(t, "cp", 3)
    clock.advance(5)
    assert fail(t, "cp", 10) == [None] * 10
    assert t.retry_after("cp") == pytest.approx(5.0)
    clock.advance(5)
    assert fail(t, "cp", 2) == [None, None]  # the count started afresh at the lockout


def test_success_forgets_failures_and_the_streak() -> None:
    t, clock = make()
    fail(t, "cp", 3)
    clock.advance(10)
    fail(t, "cp", 2)
    t.success("cp")
    assert "cp" not in t
    assert fail(t, "cp", 3) == [None, None, 10.0]  # not 20: the streak is gone too


def test_memory_is_bounded_and_the_least_recently_touched_key_goes_first() -> None:
    t, _ = make(ThrottlePolicy(max_failures=3, max_keys=3))
    for key in ("a", "b", "c"):
        t.failure(key)
    t.failure("a")  # a is now the most recent
    t.failure("d")
    assert len(t) == 3
    assert "b" not in t
    assert {"a", "c", "d"} == {k for k in "abcd" if k in t}
    for i in range(1000):
        t.failure(f"flood-{i}")
    assert len(t) == 3


def test_an_entry_with_nothing_left_to_remember_is_dropped_when_looked_at() -> None:
    t, clock = make()
    t.failure("cp")
    clock.advance(59)
    assert t.retry_after("cp") is None
    assert "cp" in t  # its failure still counts
    clock.advance(1)
    assert t.retry_after("cp") is None
    assert "cp" not in t
    fail(t, "x", 3)
    clock.advance(10 + 80)
    assert t.retry_after("x") is None
    assert "x" in t  # the streak still matters
    clock.advance(1)
    assert t.retry_after("x") is None
    assert "x" not in t


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_failures": 0}, "max_failures must be at least 1"),
        ({"window_s": 0}, "window_s must be > 0"),
        ({"lockout_s": -1}, "lockout_s must be > 0"),
        ({"lockout_s": 100, "max_lockout_s": 50}, r"max_lockout_s \(50\) must be at least"),
        ({"max_keys": 0}, "max_keys must be at least 1"),
        ({"window_s": float("nan")}, "window_s must be > 0"),
    ],
)
def test_a_bad_policy_is_refused_with_a_clear_message(
    kwargs: dict[str, float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        ThrottlePolicy(**kwargs)  # type: ignore[arg-type]


def test_the_guard_refuses_while_either_key_is_locked() -> None:
    clock = ManualClock(T0)
    guard = LoginGuard.create(
        POLICY, ThrottlePolicy(max_failures=5, window_s=60, lockout_s=30, max_lockout_s=60), clock
    )
    # Three wrong passwords for one id lock the id, from anywhere.
    assert [guard.failed("cp1", "10.0.0.1") for _ in range(3)] == [None, None, 10.0]
    assert guard.retry_after("cp1", "10.0.0.9") == 10.0
    assert guard.retry_after("cp2", "10.0.0.1") is None  # the address has 3 of 5
    # Guessing other ids from that address locks the address for every id.
    assert guard.failed("cp2", "10.0.0.1") is None
    assert guard.failed("cp3", "10.0.0.1") == 30.0
    assert guard.retry_after("cp4", "10.0.0.1") == 30.0
    assert guard.retry_after("cp4", "10.0.0.2") is None
    assert guard.retry_after("cp4", None) is None  # unknown address: the id alone decides


def test_a_success_resets_the_identity_but_not_the_address() -> None:
    clock = ManualClock(T0)
    guard = LoginGuard.create(POLICY, POLICY, clock)
    guard.failed("mallory-target", "10.0.0.1")
    guard.failed("mallory-target", "10.0.0.1")
    guard.succeeded("mallory-target")
    assert guard.failed("mallory-target", "10.0.0.1") == 10.0  # the address's third
    assert guard.by_address is not None
    assert "10.0.0.1" in guard.by_address
    assert guard.by_identity.retry_after("mallory-target") is None


def test_without_an_address_policy_only_identities_are_throttled() -> None:
    guard = LoginGuard.create(POLICY, None, ManualClock(T0))
    for i in range(100):
        assert guard.failed(f"cp{i}", "10.0.0.1") is None
    assert guard.retry_after("cp100", "10.0.0.1") is None


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("testclient", "testclient"),
        ("", None),
        (None, None),
    ],
)
def test_address_keys(host: str | None, key: str | None) -> None:
    assert address_key(host) == key


@pytest.mark.parametrize(("seconds", "header"), [(0.01, "1"), (1.0, "1"), (59.2, "60"), (0, "1")])
def test_retry_after_header_is_whole_seconds_rounded_up(seconds: float, header: str) -> None:
    assert retry_after_header(seconds) == header


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("fail"), st.sampled_from("abcdef")),
        st.tuples(st.just("ok"), st.sampled_from("abcdef")),
        st.tuples(st.just("wait"), st.floats(0, 200)),
    ),
    max_size=200,
)


@settings(max_examples=200, deadline=None)
@given(OPS)
def test_invariants_under_any_sequence(ops: list[tuple[str, object]]) -> None:
    policy = ThrottlePolicy(max_failures=3, window_s=60, lockout_s=10, max_lockout_s=80, max_keys=4)
    t, clock = make(policy)
    failures = dict.fromkeys("abcdef", 0)
    lockouts = dict.fromkeys("abcdef", 0)
    for op, arg in ops:
        if op == "wait":
            assert isinstance(arg, float)
            clock.advance(arg)
        elif op == "ok":
            assert isinstance(arg, str)
            t.success(arg)
            assert t.retry_after(arg) is None
            failures[arg] = lockouts[arg] = 0
        else:
            assert isinstance(arg, str)
            was_locked = t.retry_after(arg) is not None
            started = t.failure(arg)
            if was_locked:
                assert started is None
            failures[arg] += 1
            if started is not None:
                lockouts[arg] += 1
                assert policy.lockout_s <= started <= policy.max_lockout_s
        assert len(t) <= policy.max_keys
        for key in "abcdef":
            wait = t.retry_after(key)
            assert wait is None or 0 < wait <= policy.max_lockout_s
            # Never locked out more often than the failures allow.
            assert lockouts[key] * policy.max_failures <= failures[key]
