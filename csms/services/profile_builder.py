"""Planned power → SetChargingProfile payloads (camelCase, as on the wire), per OCPP version. Pure.

The rules (issue 5, field notes ``OCPP_SMART_CHARGING.md``):

- TxProfile for the running transaction (1.6 ``transactionId`` int on connector N; 2.0.1
  ``transactionId`` string on EVSE N), ``Absolute``, ``startSchedule`` = now − 60 s on a whole
  second, UTC with ``Z``: the plan's current step runs from there, so a replacing profile leaves no
  gap and tolerates a charger clock a little behind ours. No ``validFrom``/``validTo``.
- The unit the charger accepts: watts (total) if allowed, else amps per phase =
  W / (voltage × phases); ``numberPhases`` is always sent (1.6 assumes 3 when absent).
- Every limit is capped at the charger's ``max_power_w``, truncated DOWN to a multiple of 0.1
  (exact rational arithmetic: never above the plan, not even by a float's last bit), and set to 0
  when below the charger's minimum current (6 A per phase by default, IEC 61851).
- Equal consecutive periods are merged. Steps already over are dropped; if the plan starts in the
  future the time before it gets a limit of 0 (nothing was planned for it).
- At most ``max_periods`` periods. When the plan has more, the first ones are sent as planned and
  the last period holds the *minimum* of the rest of the plan until the plan's end: the profile never
  allows more than planned, even if the refresh never comes. ``refresh_at`` says when the profile
  stops following the plan (always after now); send a fresh one before then. (With
  ``max_periods`` = 1, a current limit above a later one is sent alone with a ``duration`` ending
  at the next change, after which the TxDefaultProfile applies.)
- ``duration`` covers the periods sent (to the plan's end); afterwards the charger falls back to the
  TxDefaultProfile safety net (``build_tx_default_profile``).
- ``stackLevel`` is capped at the charger's maximum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any, Final, Literal

from csms.domain.events import OcppVersion
from csms.domain.profiles import ChargerCapabilities, ChargerLimits, PowerSchedule, RateUnit

BACKDATE_S: Final = 60
"""``startSchedule`` is this many seconds before now."""

ProfileKind = Literal["Absolute", "Relative"]
_SECOND: Final = timedelta(seconds=1)
_MAX_TX_ID_201: Final = 36  # 2.0.1 schema: transactionId maxLength


class ProfileBuildError(ValueError):
    """The inputs cannot make a valid profile; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class _Shaped:
    start_schedule: datetime
    periods: tuple[tuple[int, float], ...]  # (startPeriod s, limit in unit)
    duration_s: int
    follows_until_s: int  # seconds after start_schedule until which the plan is followed exactly


def ocpp_version(version: OcppVersion | str) -> OcppVersion:
    """``OcppVersion`` from an enum or a string ("ocpp1.6", "1.6", "ocpp2.0.1", "2.0.1")."""
    if isinstance(version, OcppVersion):
        return version
    text = version if version.startswith("ocpp") else f"ocpp{version}"
    try:
        return OcppVersion(text)
    except ValueError:
        raise ProfileBuildError(f"unknown OCPP version {version!r}: use 1.6 or 2.0.1") from None


def ocpp_utc(value: datetime) -> str:
    """UTC on a whole second with ``Z`` (``2026-01-05T07:59:00Z``)."""
    return value.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def choose_unit(capabilities: ChargerCapabilities) -> RateUnit:
    """Watts if the charger takes them, else amps per phase."""
    return capabilities.preferred_unit


def limit_in_unit(watts: float, *, unit: RateUnit, limits: ChargerLimits) -> float:
    """Planned watts (total) → the limit to send: capped at ``max_power_w``, converted to amps
    per phase when ``unit`` is "A", truncated down to 0.1, and 0 when below the minimum current."""
    if not (math.isfinite(watts) and watts >= 0):
        raise ProfileBuildError(f"planned power must be a finite number >= 0 W, not {watts!r}")
    w = Fraction(watts)
    if limits.max_power_w is not None:
        w = min(w, Fraction(limits.max_power_w))
    per_amp = Fraction(limits.voltage_v) * limits.phases  # W per A-per-phase
    minimum = Fraction(limits.min_current_a)
    if unit == "A":
        value = w / per_amp
    else:
        value, minimum = w, minimum * per_amp
    limit = Fraction(math.floor(value * 10), 10)
    return 0.0 if limit < minimum else float(limit)


def limit_to_watts(limit: float, *, unit: RateUnit, limits: ChargerLimits) -> float:
    """The most a charger may draw under ``limit`` (for reserving its power against the cap)."""
    return limit if unit == "W" else limit * limits.voltage_v * limits.phases


def _utc(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ProfileBuildError(f"now must be timezone-aware, not {now!r}")
    return now.astimezone(UTC)


def _start_schedule(now: datetime) -> datetime:
    return _utc(now).replace(microsecond=0) - timedelta(seconds=BACKDATE_S)


def _merge(periods: list[tuple[int, float]]) -> list[tuple[int, float]]:
    merged: list[tuple[int, float]] = []
    for start, limit in periods:
        if not merged or merged[-1][1] != limit:
            merged.append((start, limit))
    return merged


def _shape(
    schedule: PowerSchedule,
    now: datetime,
    unit: RateUnit,
    capabilities: ChargerCapabilities,
    limits: ChargerLimits,
) -> _Shaped:
    now = _utc(now)
    start_schedule = _start_schedule(now)
    step = timedelta(seconds=schedule.step_s)
    steps: list[tuple[int, float]] = []
    for i, watts in enumerate(schedule.watts):
        begin = schedule.start + i * step
        if begin + step <= now:
            continue  # already over
        if not steps and begin > now:
            steps.append((0, 0.0))  # the plan starts later: nothing is planned until then
        offset = 0 if begin <= now else (begin - start_schedule) // _SECOND
        steps.append((offset, limit_in_unit(watts, unit=unit, limits=limits)))
    if not steps:
        raise ProfileBuildError(
            f"the schedule ended at {ocpp_utc(schedule.end)}, before now ({ocpp_utc(now)}): "
            "re-plan the transaction before building its profile"
        )
    plan_end = (schedule.end - start_schedule) // _SECOND
    periods = _merge(steps)
    most = capabilities.max_periods
    if len(periods) <= most:
        return _Shaped(start_schedule, tuple(periods), plan_end, plan_end)
    # Too many changes: the first ones as planned, then one last period holding the minimum of the
    # rest of the plan (never above it), as late as the period budget allows.
    for keep in range(most, 0, -1):
        floor = min(limit for _, limit in periods[keep:])
        candidate = _merge([*periods[:keep], (periods[keep][0], floor)])
        if len(candidate) <= most:
            follows = next((start for start, limit in periods[keep:] if limit != floor), plan_end)
            return _Shaped(start_schedule, tuple(candidate), plan_end, follows)
    # One period only (max_periods == 1) and the current limit is above a later one.
    if periods[0][1] == min(limit for _, limit in periods):
        return _Shaped(start_schedule, (periods[0],), plan_end, periods[1][0])
    cut = periods[1][0]  # the current limit until it changes; then the TxDefaultProfile applies
    return _Shaped(start_schedule, (periods[0],), cut, cut)


def _periods_payload(
    periods: tuple[tuple[int, float], ...], limits: ChargerLimits
) -> list[dict[str, Any]]:
    return [
        {"startPeriod": start, "limit": limit, "numberPhases": limits.phases}
        for start, limit in periods
    ]


def _check_ids(profile_id: int, stack_level: int, target: int, *, minimum_target: int) -> None:
    if isinstance(profile_id, bool) or not isinstance(profile_id, int) or profile_id <= 0:
        raise ProfileBuildError(f"profile_id must be a positive integer, not {profile_id!r}")
    if isinstance(stack_level, bool) or not isinstance(stack_level, int) or stack_level < 0:
        raise ProfileBuildError(f"stack_level must be an integer >= 0, not {stack_level!r}")
    if isinstance(target, bool) or not isinstance(target, int) or target < minimum_target:
        raise ProfileBuildError(
            f"connector/EVSE id must be an integer >= {minimum_target} here, not {target!r}"
        )


def _wrap(
    version: OcppVersion,
    *,
    target: int,
    profile_id: int,
    stack_level: int,
    purpose: str,
    kind: ProfileKind,
    schedule: dict[str, Any],
    transaction_id: int | str | None,
) -> dict[str, Any]:
    if version is OcppVersion.V16:
        profile: dict[str, Any] = {
            "chargingProfileId": profile_id,
            "stackLevel": stack_level,
            "chargingProfilePurpose": purpose,
            "chargingProfileKind": kind,
            "chargingSchedule": schedule,
        }
        if transaction_id is not None:
            profile["transactionId"] = transaction_id
        return {"connectorId": target, "csChargingProfiles": profile}
    profile = {
        "id": profile_id,
        "stackLevel": stack_level,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": kind,
        "chargingSchedule": [{"id": profile_id, **schedule}],
    }
    if transaction_id is not None:
        profile["transactionId"] = transaction_id
    return {"evseId": target, "chargingProfile": profile}


def _transaction_id(version: OcppVersion, transaction_id: int | str) -> int | str:
    if isinstance(transaction_id, bool):
        raise ProfileBuildError(f"bad transaction id {transaction_id!r}")
    if version is OcppVersion.V16:
        if isinstance(transaction_id, int):
            return transaction_id
        text = transaction_id.strip()
        if not text.lstrip("-").isdigit():
            raise ProfileBuildError(f"1.6 transaction ids are integers, not {transaction_id!r}")
        return int(text)
    text = str(transaction_id)
    if not text or len(text) > _MAX_TX_ID_201:
        raise ProfileBuildError(
            f"2.0.1 transaction ids have 1 to {_MAX_TX_ID_201} characters, not {text!r}"
        )
    return text


def build_tx_profile(
    schedule: PowerSchedule,
    *,
    now: datetime,
    version: OcppVersion | str,
    transaction_id: int | str,
    evse_or_connector_id: int,
    capabilities: ChargerCapabilities,
    limits: ChargerLimits,
    profile_id: int,
    stack_level: int,
) -> dict[str, Any]:
    """The SetChargingProfile request (camelCase) enforcing ``schedule`` on one transaction.

    1.6: ``{"connectorId", "csChargingProfiles": {... "transactionId": int}}``;
    2.0.1: ``{"evseId", "chargingProfile": {... "chargingSchedule": [{...}], "transactionId": str}}``.
    Raises ``ProfileBuildError`` for inputs that cannot make a valid profile (a schedule already
    over, a connector/EVSE id < 1, a non-integer 1.6 transaction id, ...).
    """
    ver = ocpp_version(version)
    _check_ids(profile_id, stack_level, evse_or_connector_id, minimum_target=1)
    tx = _transaction_id(ver, transaction_id)
    unit = choose_unit(capabilities)
    shaped = _shape(schedule, now, unit, capabilities, limits)
    charging_schedule: dict[str, Any] = {
        "startSchedule": ocpp_utc(shaped.start_schedule),
        "duration": shaped.duration_s,
        "chargingRateUnit": unit,
        "chargingSchedulePeriod": _periods_payload(shaped.periods, limits),
    }
    return _wrap(
        ver,
        target=evse_or_connector_id,
        profile_id=profile_id,
        stack_level=min(stack_level, capabilities.max_stack_level),
        purpose="TxProfile",
        kind="Absolute",
        schedule=charging_schedule,
        transaction_id=tx,
    )


def refresh_at(
    schedule: PowerSchedule,
    *,
    now: datetime,
    capabilities: ChargerCapabilities,
    limits: ChargerLimits,
) -> datetime:
    """When the profile ``build_tx_profile`` makes from the same inputs stops following the plan:
    where the charger's period budget ran out (it holds the rest's minimum from then on), or the
    plan's end. Send a fresh profile before then."""
    shaped = _shape(schedule, now, choose_unit(capabilities), capabilities, limits)
    return shaped.start_schedule + timedelta(seconds=shaped.follows_until_s)


def build_tx_default_profile(
    *,
    version: OcppVersion | str,
    limit_w: float,
    capabilities: ChargerCapabilities,
    limits: ChargerLimits,
    profile_id: int,
    stack_level: int = 0,
    evse_or_connector_id: int = 0,
    kind: ProfileKind = "Relative",
    now: datetime | None = None,
) -> dict[str, Any]:
    """The boot-time safety net: a TxDefaultProfile with one constant limit (``limit_w`` total,
    converted like any limit), on connector/EVSE 0 (every connector) unless told otherwise.

    ``Relative`` (default): no ``startSchedule`` (2.0.1 forbids it), no ``duration``: it applies
    from the start of every transaction until replaced, whatever the charger's clock says.
    ``Absolute``: ``startSchedule`` = ``now`` − 60 s (``now`` required), no ``duration``.
    """
    ver = ocpp_version(version)
    _check_ids(profile_id, stack_level, evse_or_connector_id, minimum_target=0)
    unit = choose_unit(capabilities)
    charging_schedule: dict[str, Any] = {}
    if kind == "Absolute":
        if now is None:
            raise ProfileBuildError("an Absolute TxDefaultProfile needs now (for startSchedule)")
        charging_schedule["startSchedule"] = ocpp_utc(_start_schedule(now))
    elif kind != "Relative":
        raise ProfileBuildError(f"kind must be Absolute or Relative, not {kind!r}")
    limit = limit_in_unit(limit_w, unit=unit, limits=limits)
    charging_schedule["chargingRateUnit"] = unit
    charging_schedule["chargingSchedulePeriod"] = _periods_payload(((0, limit),), limits)
    return _wrap(
        ver,
        target=evse_or_connector_id,
        profile_id=profile_id,
        stack_level=min(stack_level, capabilities.max_stack_level),
        purpose="TxDefaultProfile",
        kind=kind,
        schedule=charging_schedule,
        transaction_id=None,
    )


# --- comparing an installed profile with a new one -------------------------------------------

_Segment = tuple[datetime, Any, Any]  # (absolute start, limit, numberPhases)


def _split(payload: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(everything but the schedule's timing, the schedule) of either version's payload."""
    if "csChargingProfiles" in payload:
        profile = dict(payload["csChargingProfiles"])
        schedule = dict(profile.pop("chargingSchedule"))
        target = ("connectorId", payload["connectorId"])
    else:
        profile = dict(payload["chargingProfile"])
        schedules = profile.pop("chargingSchedule")
        if not isinstance(schedules, list) or len(schedules) != 1:
            raise ValueError("not one schedule")
        schedule = dict(schedules[0])
        target = ("evseId", payload["evseId"])
    header = {**profile, "_target": target}
    header["_schedule"] = {
        k: v
        for k, v in schedule.items()
        if k not in ("startSchedule", "duration", "chargingSchedulePeriod")
    }
    return header, schedule


def _timeline(schedule: dict[str, Any]) -> tuple[list[_Segment], datetime | None]:
    start = datetime.fromisoformat(str(schedule["startSchedule"]))
    if start.tzinfo is None:
        raise ValueError("naive startSchedule")
    segments = [
        (
            start + timedelta(seconds=int(p["startPeriod"])),
            p["limit"],
            p.get("numberPhases"),
        )
        for p in schedule["chargingSchedulePeriod"]
    ]
    duration = schedule.get("duration")
    return segments, None if duration is None else start + timedelta(seconds=int(duration))


def _clip(segments: list[_Segment], since: datetime) -> list[tuple[datetime, Any, Any]]:
    kept: list[_Segment] = []
    for begin, limit, phases in segments:
        if begin <= since:
            kept = [(since, limit, phases)]  # the segment in force at ``since``
        else:
            kept.append((begin, limit, phases))
    out: list[_Segment] = []
    for seg in kept:
        if not out or out[-1][1:] != seg[1:]:
            out.append(seg)
    return out


def same_profile(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    """Would installing ``b`` over ``a`` change nothing (so it need not be sent)?

    Same version shape, target, ids, purpose, kind, stack level, transaction and unit, and, from the
    later of the two ``startSchedule`` on, the same limits at the same absolute times and the same
    end. So a profile rebuilt a minute later from the same plan (its ``startSchedule`` and offsets
    drifted) is the same. Anything unreadable counts as different (resend when unsure).
    """
    if a is None or b is None:
        return False
    try:
        header_a, sched_a = _split(a)
        header_b, sched_b = _split(b)
        if header_a != header_b:
            return False
        if "startSchedule" not in sched_a or "startSchedule" not in sched_b:
            keys = ("startSchedule", "duration", "chargingSchedulePeriod")
            return all(sched_a.get(k) == sched_b.get(k) for k in keys)
        segs_a, end_a = _timeline(sched_a)
        segs_b, end_b = _timeline(sched_b)
        since = max(segs_a[0][0], segs_b[0][0]) if segs_a and segs_b else None
        if since is None or end_a != end_b:
            return False
        return _clip(segs_a, since) == _clip(segs_b, since)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError):
        return False
