"""The smart-charging loop: needs → plan → charging profiles → confirmation → audit.

One loop per site. It re-plans when something happens (session start/end, needs, cap change,
charger offline/online, meter deviation, a failed dispatch) and every planning step; a burst of
events makes one plan (``smart_charging.coalesce_s``). The solver runs in a worker thread with a
time limit; if it fails, the heuristic plans; if everything fails, every session gets 0 W (safe).

Safety (issue 5; ``csms.services.site_plan``): reservations keep the planned total under the cap;
profiles that lower a charger's limit now are sent first, and those that raise one only once every
decrease was accepted; a charger that rejects or does not confirm its profile is unmanaged for that
session (its maximum is reserved) and the rest of the site is re-planned. At boot every charger gets
a TxDefaultProfile (``Site.tx_default_kw``, 0 by default) so the site stays safe if the central
system goes away: sessions running keep their last profile, new ones wait for a plan.

After a restart of the central system the loop remembers nothing, and chargers that stayed up only
reconnect (no BootNotification, so no capability read and no TxDefaultProfile install). A charger
that connects without booting is *reconciled* before it is planned again: its TxDefaultProfile is
installed again, and what is in force on each connector with a running transaction is read back
(2.0.1: GetChargingProfiles / ReportChargingProfiles, K09; 1.6, which cannot list profiles, and
2.0.1 stations that do not answer it: GetCompositeSchedule). Until then its sessions reserve their
maximum. Then every session's profile is sent again from a fresh plan, ordered by the limits read
back (decreases before increases, as always); what was only known within bounds is lowered first.
Sessions found non-compliant or that rejected their profile stay unmanaged across the restart (read
from the audit log). Not kept: the EVs' observed ceilings (meter deviation), which only make the
plan more generous to the others, and are learnt again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from csms.db.models import PlanAudit, ProfileAudit, Transaction
from csms.domain.clock import Clock
from csms.domain.commands import CommandResult, RawCall
from csms.domain.leadership import SoleLeader
from csms.domain.needs import resolve_needs
from csms.domain.profiles import ChargerLimits, PowerSchedule, RateUnit
from csms.domain.site_config import SiteConfig
from csms.ports import ChargerGateway, Leadership
from csms.services.audit import AuditLog
from csms.services.notifications import Notice, Notifier
from csms.services.profile_builder import (
    ProfileBuildError,
    build_tx_default_profile,
    build_tx_profile,
    choose_unit,
    limit_in_unit,
    limit_to_watts,
    same_profile,
)
from csms.services.site_plan import (
    ConnectorKey,
    ConnectorState,
    Direction,
    PlanInputs,
    SessionState,
    SiteSnapshot,
    committed_w,
    direction,
    grid_start,
    lowered,
    plan_inputs,
    schedules,
)
from csms.services.site_state import (
    ChargerInfo,
    LoadedSite,
    load_charger,
    load_site,
    site_ids,
    site_of,
)
from csms.settings import SmartChargingSettings
from optimizer.formulation import Weights
from optimizer.planner import solve
from optimizer.result import SolveResult
from optimizer.scenario_io import problem_to_dict

log = logging.getLogger(__name__)

TX_DEFAULT_PROFILE_ID: Final = 1
TX_PROFILE_ID_BASE: Final = 1000  # + connector / EVSE id: one id per connector, so updates replace
STACK_LEVEL: Final = 0  # valid on every charger; TxProfile outranks TxDefaultProfile by purpose
PRUNE_EVERY_S: Final = 3600.0
DEFAULT_INSTALLS: Final = 8  # TxDefaultProfile installs at a time
# Within a step, vehicles that leave first charge first: a stable order from plan to plan instead
# of arbitrary (often alternating) allocations among equivalent sessions, which would switch
# chargers on and off at every re-plan.
PLAN_WEIGHTS: Final = Weights(urgency=0.02)
RECONNECT_GRACE_S: Final = 1.0
"""Real seconds a charger that connected has to send its BootNotification (a booting charger sends
it first: 1.6 §4.2, 2.0.1 B01) before it is taken to have only reconnected and is reconciled."""
RECONCILING: Final = "reconnected: what it has installed is being read back"


@dataclass
class ChargerControl:
    """What the loop knows about a charger beyond the database."""

    info: ChargerInfo | None = None
    default_limit_w: float | None = None  # its TxDefaultProfile limit, once accepted
    controllable: bool = True
    composite_rejected: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # This process installed its TxDefaultProfile (at boot) or reconciled it (after a reconnect):
    # otherwise what it has installed is unknown (the central system restarted).
    known: bool = False
    reconciling: bool = False  # connected without booting: what is installed is being read back
    generation: int = 0  # reconciliations started, so that one for an older connection stops


@dataclass
class SessionControl:
    """What the loop knows about a running transaction."""

    key: ConnectorKey
    installed: dict[str, Any] | None = None  # the TxProfile payload last accepted
    schedule: PowerSchedule | None = None  # the planned watts behind it (the limits never exceed)
    # Set when the limits in force are known only within bounds (read back after a restart):
    # the lowest they may be, ``schedule`` being the highest. None: ``schedule`` is exact.
    floor: PowerSchedule | None = None
    read_back: bool = False  # ``schedule`` / ``floor`` are limits read back, not planned watts
    accepted_at: datetime | None = None
    sent_at: datetime | None = None  # the last profile sent (answered or not)
    audit_id: int | None = None
    unmanaged_reason: str | None = None
    unmanaged_until_reconnect: bool = False  # no answer: tried again once the charger is back
    ev_limit_w: float | None = None
    ev_limit_until: datetime | None = None
    low_since: datetime | None = None
    over_count: int = 0
    power_w: float | None = None


@dataclass
class _ProfileReports:
    """The ReportChargingProfiles answering one GetChargingProfiles: profiles by EVSE."""

    profiles: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    done: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class _SiteLoop:
    reasons: set[str] = field(default_factory=set)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass(frozen=True, slots=True)
class _Change:
    key: ConnectorKey
    transaction_id: int
    ocpp_transaction_id: str
    payload: dict[str, Any]
    schedule: PowerSchedule
    limit_w: float  # the limit in force now under the new profile (after truncation), in W


@dataclass
class _Outcome:
    change: _Change
    result: CommandResult
    attempts: int

    @property
    def accepted(self) -> bool:
        return self.result.ok and self.result.status == "Accepted"


def _is_transient(result: CommandResult) -> bool:
    """A timeout or a lost connection may succeed when resent; a CALLERROR or Rejected will not."""
    error = result.error or ""
    return not result.ok and (error.startswith("no answer") or error.startswith("connection lost"))


class SmartCharging:
    """Plans every site and keeps its chargers on the plan. One instance per process."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        gateway: ChargerGateway,
        notifier: Notifier,
        settings: SmartChargingSettings,
        leadership: Leadership | None = None,
    ) -> None:
        self._sessions = sessions
        # Single process: this one leads every site. Cluster: a site's lease holder alone plans
        # it and dispatches, every profile under the lease's fencing token.
        self._leadership: Leadership = leadership or SoleLeader()
        self._clock = clock
        self._gateway = gateway
        self._settings = settings
        self.audit = AuditLog(sessions)
        self._notifier = notifier
        self._notices: asyncio.Queue[Notice] = asyncio.Queue()
        notifier.subscribe(self._notices.put_nowait)
        self._loops: dict[str, _SiteLoop] = {}
        self._site_of: dict[str, str | None] = {}
        self.cp_control: dict[str, ChargerControl] = {}
        self.tx_control: dict[int, SessionControl] = {}
        self._tg: asyncio.TaskGroup | None = None
        self._early: list[Coroutine[Any, Any, None]] = []
        self._step_s: dict[str, float] = {}
        self._installs = asyncio.Semaphore(DEFAULT_INSTALLS)
        self._reports: dict[tuple[str, int], _ProfileReports] = {}
        self._request_id = 0

    # --- running ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Consume notices and run every site's loop until cancelled."""
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            for early in self._early:
                tg.create_task(early)
            self._early.clear()
            for site_id in await site_ids(self._sessions):
                self._loop(site_id)
            tg.create_task(self._prune_forever())
            while True:
                notice = await self._notices.get()
                try:
                    await self._handle(notice)
                except Exception:  # one bad notice must not stop the loop
                    log.exception("smart charging: handling %s failed", notice.kind)

    def _spawn(self, work: Coroutine[Any, Any, None], what: str) -> None:
        """Run ``work`` in the loop's task group; its failure is logged, never propagated (one
        charger's database timeout must not stop the central system)."""

        async def guarded() -> None:
            try:
                await work
            except Exception:
                log.exception("smart charging: %s failed", what)

        if self._tg is not None:
            self._tg.create_task(guarded())
        else:  # before run() (a lease gained at start-up): started with the loop
            self._early.append(guarded())

    def request(self, site_id: str, reason: str) -> None:
        """Ask for a re-plan of ``site_id`` soon (bursts coalesce into one plan)."""
        loop = self._loop(site_id)
        loop.reasons.add(reason)
        loop.wake.set()

    def _loop(self, site_id: str) -> _SiteLoop:
        loop = self._loops.get(site_id)
        if loop is None:
            loop = self._loops[site_id] = _SiteLoop()
            if self._tg is not None:
                self._tg.create_task(self._site_forever(site_id, loop))
        return loop

    async def _site_forever(self, site_id: str, loop: _SiteLoop) -> None:
        step_s = 900.0
        while True:
            wake = asyncio.ensure_future(loop.wake.wait())
            timer = asyncio.ensure_future(self._clock.sleep(step_s))
            try:
                await asyncio.wait({wake, timer}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (wake, timer):
                    task.cancel()
            if not loop.wake.is_set():
                loop.reasons.add("periodic")
            await asyncio.sleep(self._settings.coalesce_s)
            loop.wake.clear()
            reasons = ", ".join(sorted(loop.reasons))
            loop.reasons.clear()
            if not self._leadership.is_leader(site_id):
                continue  # another worker plans it (and hears the same events)
            try:
                await self.replan(site_id, reasons)
                step_s = self._step_s.get(site_id, step_s)
            except Exception:  # logged; the next event or period tries again
                log.exception("smart charging: planning site %s failed", site_id)

    async def _prune_forever(self) -> None:
        keep = timedelta(days=self._settings.audit_retention_days)
        while True:
            try:
                removed = await self.audit.prune(self._clock.now() - keep)
                if removed:
                    log.info("audit log: removed %d rows older than %s", removed, keep)
            except Exception:  # pruning must never stop the system
                log.exception("audit log pruning failed")
            await asyncio.sleep(PRUNE_EVERY_S)

    # --- leadership (cluster mode) ------------------------------------------------------------

    def leadership_gained(self, site_id: str, token: int) -> None:
        """This worker now leads ``site_id`` (a LeaseKeeper callback: takes note, works later).
        What the previous leader knew of the site's chargers is not known here: each connected
        charger is reconciled as after a restart (its TxDefaultProfile reinstalled, the limits in
        force read back; until then its sessions reserve their maximum) and the site re-planned."""
        log.info("leading site %s (fencing token %d): taking over its chargers", site_id, token)
        self._spawn(self._take_over(site_id), f"taking over site {site_id}")

    def leadership_lost(self, site_id: str) -> None:
        """Another worker leads ``site_id`` now (or may: the lease could not be renewed in time).
        Dispatches still under way are refused by their fence; what was known is dropped, since
        the new leader changes the chargers behind this worker's back."""
        for cp, site in list(self._site_of.items()):
            if site == site_id:
                self._forget(cp)

    async def _take_over(self, site_id: str) -> None:
        site = await load_site(self._sessions, site_id)
        if site is None or not self._leadership.is_leader(site_id):
            return
        for ch in site.chargers:
            self._site_of[ch.id] = site_id
            self._forget(ch.id)
            if self._settings.enabled and self._gateway.is_connected(ch.id):
                self._start_reconcile(site_id, ch.id)
        self.request(site_id, "leadership gained")

    def _forget(self, charge_point_id: str) -> None:
        """Know nothing of what the charger has installed (kept: its call lock)."""
        control = self.cp_control.get(charge_point_id)
        if control is not None:
            control.default_limit_w = None
            control.known = control.reconciling = False
            control.generation += 1  # a reconciliation under way stops
        for tx_id in [t for t, sc in self.tx_control.items() if sc.key[0] == charge_point_id]:
            del self.tx_control[tx_id]

    # --- notices -----------------------------------------------------------------------------

    async def _site(self, charge_point_id: str, *, refresh: bool = False) -> str | None:
        if refresh or charge_point_id not in self._site_of:
            self._site_of[charge_point_id] = await site_of(self._sessions, charge_point_id)
        return self._site_of[charge_point_id]

    async def _handle(self, n: Notice) -> None:
        if n.kind == "site":
            if n.site_id is not None:
                self._site_of.clear()  # chargers may have moved
                self.request(n.site_id, "site settings changed")
            return
        if n.kind == "replan":
            if n.site_id is not None and self._leadership.is_leader(n.site_id):
                self.request(n.site_id, str((n.data or {}).get("reason") or "asked by a worker"))
            return
        if n.kind == "meter":
            self._on_meter(n)
            return
        if n.kind == "profiles_reported":
            self._on_profiles_reported(n)
            return
        site_id = await self._site(n.charge_point_id, refresh=n.kind in ("connected", "booted"))
        # In a cluster every worker hears every charger (csms.cluster.events): only the site's
        # leader acts on them; the others would plan and dispatch against the leader.
        leads = site_id is not None and self._leadership.is_leader(site_id)
        if n.kind == "capabilities":
            if self._tg is not None and site_id is not None and leads:
                self._spawn(self._install_default(site_id, n.charge_point_id), "TxDefaultProfile")
            return
        if n.kind == "session_ended" and n.transaction_id is not None:
            self.tx_control.pop(n.transaction_id, None)
        if n.kind == "connected":
            for sc in self.tx_control.values():
                if sc.key[0] == n.charge_point_id and sc.unmanaged_until_reconnect:
                    sc.unmanaged_reason, sc.unmanaged_until_reconnect = None, False
        if n.kind == "booted":
            # A rebooted charger lost its transactions and may have lost its profiles: its
            # TxDefaultProfile counts again once it is confirmed (after the capability read).
            control = self.cp_control.get(n.charge_point_id)
            if control is not None:
                control.default_limit_w = None
                # Its boot is the news: the TxDefaultProfile install after the capability read
                # sets it up, not a reconciliation.
                control.known = control.reconciling = False
            for tx_id in [t for t, s in self.tx_control.items() if s.key[0] == n.charge_point_id]:
                del self.tx_control[tx_id]
        if site_id is None or not self._settings.enabled or not leads:
            return
        reason = {
            "connected": "charger online",
            "disconnected": "charger offline",
            "booted": "charger booted",
            "session_started": "session started",
            "session_ended": "session ended",
            "needs": "needs updated",
        }.get(n.kind)
        if reason is not None:
            self.request(site_id, reason)
        if n.kind == "connected":
            self._start_reconcile(site_id, n.charge_point_id)

    def _on_meter(self, n: Notice) -> None:
        """Compliance (draws over its limit) and deviation (draws well under it) from meters."""
        sc = self.tx_control.get(n.transaction_id or -1)
        if sc is None or n.power_w is None:
            return
        sc.power_w = n.power_w
        if sc.unmanaged_reason is not None or sc.schedule is None or sc.accepted_at is None:
            return
        # Judge the reading by the limits in force when it was taken (it may arrive late).
        now = n.at if n.at is not None else self._clock.now()
        cfg = self._settings
        grace = timedelta(seconds=cfg.compliance_grace_s)
        # A profile in flight may already be applied: judge only once the last one had time.
        if now - max(sc.accepted_at, sc.sent_at or sc.accepted_at) < grace:
            return
        # Limits change at step edges and chargers take a moment to follow: compare with the
        # highest limit of the grace period, and the lowest for deviation.
        window = [sc.schedule.watts_at(now - grace * (i / 4)) for i in range(5)]
        known = [w for w in window if w is not None]
        if not known:
            return
        high, low = max(known), min(known)
        site_id = self._site_of.get(n.charge_point_id)
        if n.power_w > high * (1 + cfg.compliance_tolerance) + cfg.compliance_margin_w:
            sc.over_count += 1
            if sc.over_count >= cfg.compliance_readings:
                sc.unmanaged_reason = (
                    f"non-compliant: draws {n.power_w:.0f} W over its limit of {high:.0f} W"
                )
                log.warning("%s", sc.unmanaged_reason, extra={"charge_point": n.charge_point_id})
                if sc.audit_id is not None:
                    self._spawn(
                        self.audit.set_verification(
                            sc.audit_id, sc.unmanaged_reason, self._clock.now(), overrides=True
                        ),
                        "non-compliance record",
                    )
                if site_id is not None:
                    self.request(site_id, "charger non-compliant")
            return
        sc.over_count = 0
        if (
            low > 0
            and n.power_w < cfg.deviation_ratio * low
            and low - n.power_w > cfg.compliance_margin_w
        ):
            sc.low_since = sc.low_since or now
            if now - sc.low_since >= timedelta(seconds=cfg.deviation_window_s):
                sc.ev_limit_w = max(n.power_w * 1.1, cfg.compliance_margin_w)
                sc.ev_limit_until = now + timedelta(seconds=cfg.deviation_hold_s)
                sc.low_since = None
                if site_id is not None:
                    self.request(site_id, "meter deviation")
        else:
            sc.low_since = None

    # --- planning ----------------------------------------------------------------------------

    def _snapshot(
        self, site: LoadedSite, now: datetime, *, assume_known: bool = False
    ) -> SiteSnapshot:
        cfg = site.config
        txs = {(t.charge_point_id, t.evse_id): t for t in site.transactions}
        connectors: list[ConnectorState] = []
        for ch in site.chargers:
            control = self.cp_control.setdefault(ch.id, ChargerControl())
            control.info = ch
            max_w = ch.limits.max_power_w or cfg.default_charger_max_kw * 1000.0
            # A charger that booted with us once (its capabilities are stored) but that this
            # process has neither set up at boot nor reconciled: the central system restarted and
            # what it has installed is not known yet (its "connected" notice may still be queued).
            unknown = not assume_known and (
                control.reconciling or (ch.capabilities_read and not control.known)
            )
            evses = sorted(set(ch.evse_ids) | {e for (cp, e) in txs if cp == ch.id})
            for evse in evses:
                tx = txs.get((ch.id, evse))
                session = None
                if tx is not None:
                    sc = self.tx_control.setdefault(tx.id, SessionControl((ch.id, evse)))
                    if sc.ev_limit_until is not None and now >= sc.ev_limit_until:
                        sc.ev_limit_w = sc.ev_limit_until = None  # probe: maybe it goes faster
                    needs = resolve_needs(
                        tx.needs,
                        started_at=tx.started_at or now,
                        default_dwell=timedelta(hours=cfg.default_dwell_hours),
                        default_energy_wh=cfg.default_energy_kwh * 1000.0,
                    )
                    session = SessionState(
                        transaction_id=tx.id,
                        ocpp_transaction_id=tx.ocpp_id,
                        started_at=tx.started_at or now,
                        needs=needs,
                        delivered_wh=tx.delivered_wh,
                        ev_limit_w=sc.ev_limit_w,
                        # Limits in force unknown: its maximum is reserved until reconciled.
                        unmanaged_reason=sc.unmanaged_reason or (RECONCILING if unknown else None),
                    )
                connectors.append(
                    ConnectorState(
                        charge_point_id=ch.id,
                        evse_id=evse,
                        ocpp_version=ch.ocpp_version,
                        connected=self._gateway.is_connected(ch.id),
                        controllable=ch.capabilities.enabled and control.controllable,
                        max_power_w=max_w,
                        min_power_w=min(ch.limits.min_power_w, max_w),
                        default_limit_w=control.default_limit_w,
                        session=session,
                    )
                )
        return SiteSnapshot(cfg, now, tuple(connectors))

    def _limit_now(self, key: ConnectorKey, tx_id: int, now: datetime, max_w: float) -> float:
        """The limit believed in force on a connector now: its accepted TxProfile, else its
        accepted TxDefaultProfile, else its maximum."""
        sc = self.tx_control.get(tx_id)
        if sc is not None and sc.schedule is not None:
            w = sc.schedule.watts_at(now)
            if w is not None:
                return min(w, max_w)
        control = self.cp_control.get(key[0])
        if control is not None and control.default_limit_w is not None:
            return min(control.default_limit_w, max_w)
        return max_w

    async def replan(self, site_id: str, trigger: str) -> int | None:
        """Plan the site now and dispatch the profiles (waits for the answers). Returns the plan's
        audit id, or None when the site does not exist or is not smart-charged."""
        loop = self._loop(site_id)
        async with loop.lock:
            if not self._leadership.is_leader(site_id):
                # Another worker plans it: ask it (the notice reaches every worker; only the
                # leader acts on it).
                self._notifier.publish(
                    Notice(
                        "replan", site_id=site_id, at=self._clock.now(), data={"reason": trigger}
                    )
                )
                return None
            site = await load_site(self._sessions, site_id)
            if site is None:
                return None
            self._step_s[site_id] = site.config.step_minutes * 60.0
            if not site.config.smart_charging or not self._settings.enabled:
                return None
            return await self._plan_and_dispatch(site, trigger)

    async def preview(self, site: LoadedSite, trigger: str = "what-if") -> PlanAudit:
        """Plan ``site`` (as loaded, or edited by a what-if) exactly as the loop would, with the
        same reservations, but store and dispatch nothing: the returned row is not saved. On a
        cluster worker that does not lead the site, what the leader knows of its chargers is not
        known here: their installed limits are taken to be as planned (the leader reserves the
        maximum of a charger it is still reconciling; this preview does not)."""
        t0 = time.perf_counter()
        now = self._clock.now()
        snap = self._snapshot(
            site, now, assume_known=not self._leadership.is_leader(site.config.id)
        )
        inputs = plan_inputs(snap, min_power=site.config.method == "milp")
        result, failure = await self._solve(inputs, site.config.method)
        scheds = schedules(inputs, result)
        plan_s = time.perf_counter() - t0
        return self._plan_row(site, inputs, result, failure, trigger, now, scheds, plan_s)

    async def _solve(
        self, inputs: PlanInputs, method: str
    ) -> tuple[SolveResult | None, str | None]:
        if inputs.problem is None:
            return None, None
        try:
            result = await asyncio.to_thread(
                solve,
                inputs.problem,
                method,
                weights=PLAN_WEIGHTS,
                time_limit_s=self._settings.solve_time_limit_s,
                fallback=True,
            )
        except Exception as exc:  # every planner failed: 0 W for everyone is safe
            log.exception("planning failed; every session gets 0 W until the next plan")
            return None, f"{type(exc).__name__}: {exc}"
        return result, None

    async def _plan_and_dispatch(self, site: LoadedSite, trigger: str) -> int:
        t0 = time.perf_counter()
        now = self._clock.now()
        snap = self._snapshot(site, now)
        cfg = site.config
        inputs = plan_inputs(snap, min_power=cfg.method == "milp")
        result, failure = await self._solve(inputs, cfg.method)
        scheds = schedules(inputs, result)
        plan_s = time.perf_counter() - t0
        plan_id = await self.audit.add_plan(
            self._plan_row(site, inputs, result, failure, trigger, now, scheds, plan_s)
        )
        await self._dispatch(site, snap, inputs, scheds, plan_id, now)
        return plan_id

    def _plan_row(
        self,
        site: LoadedSite,
        inputs: PlanInputs,
        result: SolveResult | None,
        failure: str | None,
        trigger: str,
        now: datetime,
        scheds: dict[ConnectorKey, PowerSchedule],
        plan_s: float,
    ) -> PlanAudit:
        warnings = list(inputs.warnings)
        if result is not None:
            warnings.extend(result.warnings)
        status = "no_sessions" if inputs.problem is None else "failed"
        if result is not None:
            status = result.status.value
        sessions_out: dict[str, Any] = {}
        for sid, key in inputs.planned.items():
            sched = scheds[key]
            sessions_out[sid] = {
                "charge_point_id": key[0],
                "evse_id": key[1],
                "transaction_id": inputs.transactions.get(sid),
                "power_kw": [round(w / 1000.0, 3) for w in sched.watts],
            }
        return PlanAudit(
            site_id=site.config.id,
            created_at=now,
            trigger=trigger[:255],
            method=(result.method.value if result is not None else site.config.method),
            status=status,
            fallback_reason=(result.solver.fallback_reason if result is not None else failure),
            objective=(result.solver.objective if result is not None else None),
            sessions=len(inputs.planned),
            capacity_kw=round(min(inputs.cap_kw), 3),
            reserved_kw=round(inputs.reserved_w / 1000.0, 3),
            kpis=result.kpis.to_dict() if result is not None else {},
            timings={
                **(dataclasses.asdict(result.timings) if result is not None else {}),
                "plan_s": round(plan_s, 4),
            },
            inputs={
                "problem": problem_to_dict(inputs.problem) if inputs.problem is not None else None,
                "reservations": [
                    {
                        "charge_point_id": r.key[0],
                        "evse_id": r.key[1],
                        "watts": r.watts,
                        "reason": r.reason,
                    }
                    for r in inputs.reservations
                ],
                "cap_kw": list(inputs.cap_kw),
            },
            plan={
                "start": inputs.start.isoformat(),
                "step_s": inputs.step_s,
                "sessions": sessions_out,
            },
            warnings=warnings,
        )

    # --- dispatch ----------------------------------------------------------------------------

    def _build(
        self,
        ch: ChargerInfo,
        key: ConnectorKey,
        session: SessionState,
        sched: PowerSchedule,
        now: datetime,
    ) -> _Change:
        payload = build_tx_profile(
            sched,
            now=now,
            version=ch.ocpp_version,
            transaction_id=session.ocpp_transaction_id,
            evse_or_connector_id=key[1],
            capabilities=ch.capabilities,
            limits=ch.limits,
            profile_id=TX_PROFILE_ID_BASE + key[1],
            stack_level=STACK_LEVEL,
        )
        unit = choose_unit(ch.capabilities)
        limit_w = limit_to_watts(
            limit_in_unit(sched.watts_at(now) or 0.0, unit=unit, limits=ch.limits),
            unit=unit,
            limits=ch.limits,
        )
        return _Change(
            key, session.transaction_id, session.ocpp_transaction_id, payload, sched, limit_w
        )

    def _changes(
        self,
        site: LoadedSite,
        snap: SiteSnapshot,
        scheds: dict[ConnectorKey, PowerSchedule],
        now: datetime,
    ) -> tuple[list[_Change], list[_Change], list[ProfileAudit]]:
        """The profiles to send in two phases, so that no moment of any dispatch, however slow,
        can overload the site (issue 5: decreases before increases).

        Phase 1 only lowers: a connector's new limits where they never exceed the old ones, or
        else the lower of old and new at every step ("mixed" changes). Whatever mix of old and
        phase-1 profiles the chargers hold, the site stays under the old plan. Phase 2, once every
        phase-1 profile was accepted, raises: each connector is then at its phase-1 limits or the
        new ones, never above the new plan, which is under the cap."""
        chargers = {c.id: c for c in site.chargers}
        decreases: list[_Change] = []
        increases: list[_Change] = []
        problems: list[ProfileAudit] = []
        states = {c.key: c for c in snap.connectors}
        for key, sched in scheds.items():
            ch, state = chargers[key[0]], states[key]
            session = state.session
            assert session is not None
            sc = self.tx_control.get(session.transaction_id)
            if sc is None:
                continue  # the session ended while the plan was made
            try:
                change = self._build(ch, key, session, sched, now)
                if sc.installed is not None and same_profile(sc.installed, change.payload):
                    sc.schedule, sc.floor = sched, None  # same limits: nothing to send
                    continue
                control = self.cp_control.get(key[0])
                fallback = state.max_power_w
                if control is not None and control.default_limit_w is not None:
                    fallback = min(control.default_limit_w, fallback)
                high = sc.schedule
                low = sc.floor if sc.floor is not None else high
                # The whole future of both profiles: the old one may raise a limit later on too.
                end = max([sched.end] + [old.end for old in (high, low) if old is not None])
                window = (now, end + timedelta(seconds=sched.step_s))
                # Limits read back from the charger are what it enforces, not planned watts:
                # compare them with what it will enforce under the new profile.
                new = _enforced(sched, ch) if sc.read_back else sched
                kind = direction_within(low, high, new, fallback, window)
                if kind == "mixed":
                    first = self._build(
                        ch, key, session, lowered(low, sched, fallback, window), now
                    )
                    if sc.installed is None or not same_profile(sc.installed, first.payload):
                        decreases.append(first)
                    increases.append(change)
                else:
                    (decreases if kind == "decrease" else increases).append(change)
            except ProfileBuildError as exc:
                sc.unmanaged_reason = f"no valid profile: {exc}"
                problems.append(
                    self._audit_row(
                        site.config.id,
                        key,
                        session.transaction_id,
                        session.ocpp_transaction_id,
                        "TxProfile",
                        "skipped",
                        {},
                        None,
                        CommandResult(ok=False, error=str(exc)),
                        0,
                        now,
                    )
                )
        return decreases, increases, problems

    async def _dispatch(
        self,
        site: LoadedSite,
        snap: SiteSnapshot,
        inputs: PlanInputs,
        scheds: dict[ConnectorKey, PowerSchedule],
        plan_id: int,
        now: datetime,
    ) -> None:
        verify: list[tuple[_Change, int]] = []
        try:
            await self._dispatch_phases(site, snap, inputs, scheds, plan_id, now, verify)
        finally:
            # Checked once the chargers are free: a composite request on a charger's one call
            # slot would hold up its next profile (OCPP_SMART_CHARGING.md: one call at a time).
            if self._settings.verify_composite:
                for change, audit_id in verify:
                    self._spawn(self._verify(site.config.id, change, audit_id), "verification")

    async def _dispatch_phases(
        self,
        site: LoadedSite,
        snap: SiteSnapshot,
        inputs: PlanInputs,
        scheds: dict[ConnectorKey, PowerSchedule],
        plan_id: int,
        now: datetime,
        verify: list[tuple[_Change, int]],
    ) -> None:
        site_id = site.config.id
        decreases, increases, problems = self._changes(site, snap, scheds, now)
        if problems:
            await self.audit.add_profiles(problems)
            self.request(site_id, "profile could not be built")
        failed = await self._send_phase(site_id, plan_id, decreases, "decrease", now, verify)
        if failed:
            # An unconfirmed decrease means the site may still be committed to the old, higher
            # limit: raising anyone now could overload it. Re-plan with that charger reserved.
            if increases:
                await self.audit.add_profiles(
                    [
                        self._audit_row(
                            site_id,
                            c.key,
                            c.transaction_id,
                            c.ocpp_transaction_id,
                            "TxProfile",
                            "increase",
                            c.payload,
                            plan_id,
                            CommandResult(
                                ok=False, error="held back: a decrease was not confirmed"
                            ),
                            0,
                            now,
                            status="held",
                        )
                        for c in increases
                    ]
                )
            self.request(site_id, "decrease not confirmed")
            return
        limits_now = {
            c.key: self._limit_now(c.key, c.session.transaction_id, now, c.max_power_w)
            for c in snap.connectors
            if c.session is not None
        }
        for c in increases:
            limits_now[c.key] = c.limit_w
        committed = committed_w(limits_now, inputs)
        cap = inputs.cap_kw[0] * 1000.0
        if increases and committed > cap + 1.0:
            log.error(
                "site %s: increases held back, %.0f W would be committed against %.0f W "
                "(reserved %.0f W; limits %s)",
                site_id,
                committed,
                cap,
                inputs.reserved_w,
                limits_now,
            )
            self.request(site_id, "increases held back")
            return
        if await self._send_phase(site_id, plan_id, increases, "increase", now, verify):
            self.request(site_id, "increase not confirmed")

    async def _send_phase(
        self,
        site_id: str,
        plan_id: int,
        changes: list[_Change],
        phase: str,
        now: datetime,
        verify: list[tuple[_Change, int]],
    ) -> bool:
        """Send one phase's profiles, concurrently across chargers; True if any failed. Accepted
        ones are added to ``verify``."""
        if not changes:
            return False
        outcomes = await asyncio.gather(*(self._send(site_id, c) for c in changes))
        rows = [
            self._audit_row(
                site_id,
                o.change.key,
                o.change.transaction_id,
                o.change.ocpp_transaction_id,
                "TxProfile",
                phase,
                o.change.payload,
                plan_id,
                o.result,
                o.attempts,
                now,
                limit_w=o.change.limit_w,
            )
            for o in outcomes
        ]
        ids = await self.audit.add_profiles(rows)
        failed = False
        for outcome, audit_id in zip(outcomes, ids, strict=True):
            sc = self.tx_control.get(outcome.change.transaction_id)
            if sc is None:
                continue  # the session ended meanwhile
            if outcome.accepted:
                sc.audit_id = audit_id
                verify.append((outcome.change, audit_id))
                continue
            failed = True
            answer = outcome.result.status if outcome.result.ok else outcome.result.error
            sc.unmanaged_reason = f"TxProfile not accepted ({answer})"
            sc.unmanaged_until_reconnect = not outcome.result.ok
            log.warning(
                "%s: unmanaged for this session, its maximum is reserved",
                sc.unmanaged_reason,
                extra={
                    "charge_point": outcome.change.key[0],
                    "transaction": outcome.change.ocpp_transaction_id,
                },
            )
        return failed

    async def _call(
        self, site_id: str, charge_point_id: str, action: str, payload: dict[str, Any]
    ) -> tuple[CommandResult, int]:
        """One call with bounded retries on timeouts and lost connections, serial per charger;
        made only while leading ``site_id``, under its fence (checked again by the gateway)."""
        cfg = self._settings
        control = self.cp_control.setdefault(charge_point_id, ChargerControl())
        attempts = 0
        async with control.lock:
            while True:
                fence = self._leadership.fence(site_id)
                if fence is None:
                    return CommandResult(
                        ok=False, error=f"not sent: this worker no longer leads site {site_id}"
                    ), attempts
                attempts += 1
                try:
                    result = await asyncio.wait_for(
                        self._gateway.send(charge_point_id, RawCall(action, payload), fence=fence),
                        cfg.call_timeout_s,
                    )
                except TimeoutError:
                    result = CommandResult(
                        ok=False, error=f"no answer within {cfg.call_timeout_s} s"
                    )
                if not _is_transient(result) or attempts > cfg.retries:
                    return result, attempts
                if not self._gateway.is_connected(charge_point_id):
                    return result, attempts
                await asyncio.sleep(cfg.retry_backoff_s * 2 ** (attempts - 1))

    async def _send(self, site_id: str, change: _Change) -> _Outcome:
        """Send one profile; once accepted, it is what the connector is believed to enforce (at
        once, not when the whole phase is done: meter checks must judge by it)."""
        sc = self.tx_control.get(change.transaction_id)
        if sc is not None:
            sc.sent_at = self._clock.now()
        result, attempts = await self._call(
            site_id, change.key[0], "SetChargingProfile", change.payload
        )
        if result.ok and result.status == "Rejected" and self.tx_control.get(change.transaction_id):
            # A TxProfile can cross the transaction's start on the wire (the charger has not
            # seen its StartTransaction answer yet; OCPP_SMART_CHARGING.md 1.6 #2): one more try
            # after a moment before the session counts as unmanaged.
            await asyncio.sleep(self._settings.retry_backoff_s)
            result, more = await self._call(
                site_id, change.key[0], "SetChargingProfile", change.payload
            )
            attempts += more
        outcome = _Outcome(change, result, attempts)
        if outcome.accepted and sc is not None and self.tx_control.get(change.transaction_id) is sc:
            sc.installed = change.payload
            sc.schedule, sc.floor, sc.read_back = change.schedule, None, False
            sc.accepted_at = self._clock.now()
            sc.over_count = 0
        return outcome

    def _audit_row(
        self,
        site_id: str | None,
        key: ConnectorKey,
        transaction_id: int | None,
        ocpp_transaction_id: str | None,
        purpose: str,
        phase: str,
        payload: dict[str, Any],
        plan_id: int | None,
        result: CommandResult,
        attempts: int,
        now: datetime,
        *,
        limit_w: float | None = None,
        status: str | None = None,
    ) -> ProfileAudit:
        return ProfileAudit(
            plan_id=plan_id,
            site_id=site_id,
            charge_point_id=key[0],
            evse_id=key[1],
            transaction_id=transaction_id,
            ocpp_transaction_id=ocpp_transaction_id,
            purpose=purpose,
            phase=phase,
            limit_w=limit_w,
            payload=payload,
            status=status or (result.status or "error" if result.ok else "error"),
            answer=result.payload,
            error=result.error,
            latency_s=round(result.latency_s, 4),
            attempts=attempts,
            created_at=now,
        )

    # --- TxDefaultProfile at boot and verification ------------------------------------------

    async def _install_default(self, site_id: str, charge_point_id: str) -> None:
        """Install the safety net on a charger that just booted, then re-plan its site. At most
        ``DEFAULT_INSTALLS`` at a time: a site of 1000 chargers booting together must not exhaust
        the database pool."""
        async with self._installs:
            loaded = await load_charger(self._sessions, site_id, charge_point_id)
            if loaded is None or not self._settings.enabled:
                return
            config, info = loaded
            await self._install_default_on(config, info)

    async def _install_default_on(
        self, config: SiteConfig, info: ChargerInfo, *, replan: bool = True
    ) -> None:
        site_id, charge_point_id = config.id, info.id
        control = self.cp_control.setdefault(charge_point_id, ChargerControl())
        control.info = info
        control.known = True
        now = self._clock.now()
        key = (charge_point_id, 0)
        if not info.capabilities.enabled:
            control.controllable = False
            row = self._audit_row(
                site_id,
                key,
                None,
                None,
                "TxDefaultProfile",
                "default",
                {},
                None,
                CommandResult(ok=False, error="smart charging disabled on the charger"),
                0,
                now,
                status="skipped",
            )
            await self.audit.add_profiles([row])
            if replan:
                self.request(site_id, "charger cannot do smart charging")
            return
        limit_w = config.tx_default_kw * 1000.0
        payload = build_tx_default_profile(
            version=info.ocpp_version,
            limit_w=limit_w,
            capabilities=info.capabilities,
            limits=info.limits,
            profile_id=TX_DEFAULT_PROFILE_ID,
            stack_level=STACK_LEVEL,
        )
        unit = choose_unit(info.capabilities)
        sent_w = limit_to_watts(
            limit_in_unit(limit_w, unit=unit, limits=info.limits), unit=unit, limits=info.limits
        )
        result, attempts = await self._call(site_id, charge_point_id, "SetChargingProfile", payload)
        accepted = result.ok and result.status == "Accepted"
        control.default_limit_w = sent_w if accepted else None
        if not result.ok and (result.error or "").startswith(("NotSupported", "NotImplemented")):
            control.controllable = False  # no SmartCharging feature profile
        elif accepted:
            control.controllable = True
        await self.audit.add_profiles(
            [
                self._audit_row(
                    site_id,
                    key,
                    None,
                    None,
                    "TxDefaultProfile",
                    "default",
                    payload,
                    None,
                    result,
                    attempts,
                    now,
                    limit_w=sent_w,
                )
            ]
        )
        if replan:
            self.request(site_id, "charger ready")

    # --- reconciliation: a charger that reconnected without booting ----------------------------

    def _start_reconcile(self, site_id: str, charge_point_id: str) -> None:
        """A charger connected: unless this process already knows what it has installed, read it
        back once it is clear that it is not booting (``_reconcile``); until then its sessions
        reserve their maximum."""
        control = self.cp_control.setdefault(charge_point_id, ChargerControl())
        if control.known or self._tg is None:
            return
        control.generation += 1
        control.reconciling = True
        self._spawn(self._reconcile(site_id, charge_point_id, control.generation), "reconciliation")

    async def _reconcile(self, site_id: str, charge_point_id: str, generation: int) -> None:
        """Re-establish a reconnected charger's smart charging as a new process finds it: the
        TxDefaultProfile installed again (1.6 cannot list profiles; installing ours again is
        harmless), the limits in force on each running transaction read back, and the sessions
        that were unmanaged before the restart unmanaged again. Then its site is re-planned."""
        control = self.cp_control.setdefault(charge_point_id, ChargerControl())
        try:
            await asyncio.sleep(RECONNECT_GRACE_S)
            if control.generation != generation or not control.reconciling:
                return  # it booted (the boot path sets it up), or connected again meanwhile
            async with self._installs:
                loaded = await load_charger(self._sessions, site_id, charge_point_id)
                if loaded is None or not loaded[1].capabilities_read:
                    return  # never booted with us: it must boot, which sets it up
                if not self._gateway.is_connected(charge_point_id):
                    return
                config, info = loaded
                t0 = time.perf_counter()
                await self._install_default_on(config, info, replan=False)
                if not control.controllable:
                    return
                running = await self._running(charge_point_id)
                bounds = await self._in_force(config, info, running)
                reasons = await self._unmanaged_before(list(bounds))
                for (tx_id, evse), (low, high) in bounds.items():
                    sc = self.tx_control.setdefault(tx_id, SessionControl((charge_point_id, evse)))
                    # Sent again from the next plan (reinstalled), ordered by these bounds.
                    sc.installed, sc.accepted_at, sc.audit_id = None, None, None
                    sc.schedule, sc.floor = high, (None if low == high else low)
                    sc.read_back = high is not None
                    if tx_id in reasons:
                        sc.unmanaged_reason = reasons[tx_id]
                log.info(
                    "reconciled after a reconnect without boot in %.2f s: %d running sessions, "
                    "%d unmanaged",
                    time.perf_counter() - t0,
                    len(bounds),
                    len(reasons),
                    extra={"charge_point": charge_point_id},
                )
                if not self._gateway.is_connected(charge_point_id) or (
                    control.controllable and control.default_limit_w is None
                ):
                    # Gone meanwhile, or its safety net not confirmed: read it all again when it
                    # is back (until then, it reserves its maximum).
                    control.known = False
        finally:
            if control.generation == generation and control.reconciling:
                control.reconciling = False
                self.request(site_id, "charger reconciled")

    async def _running(self, charge_point_id: str) -> list[tuple[int, str, int]]:
        """(id, OCPP id, connector / EVSE) of the charger's running transactions."""
        async with self._sessions() as s:
            rows = (
                await s.exec(
                    select(Transaction).where(
                        Transaction.charge_point_id == charge_point_id,
                        col(Transaction.active).is_(True),
                    )
                )
            ).all()
        return [
            (t.id, t.ocpp_id, t.evse_id or t.connector_id or 1) for t in rows if t.id is not None
        ]

    async def _in_force(
        self, config: SiteConfig, info: ChargerInfo, running: list[tuple[int, str, int]]
    ) -> dict[tuple[int, int], tuple[PowerSchedule | None, PowerSchedule | None]]:
        """(lowest, highest) limits in force per running transaction, (None, None) for "its
        TxDefaultProfile" (nothing of ours installed for it): what a 2.0.1 station reports
        installed (GetChargingProfiles), else what the charger says it will allow
        (GetCompositeSchedule), else anything between 0 and its maximum."""
        control = self.cp_control.setdefault(info.id, ChargerControl())
        max_w = info.limits.max_power_w or config.default_charger_max_kw * 1000.0
        fallback = max_w if control.default_limit_w is None else min(control.default_limit_w, max_w)
        step_s = max(1, round(config.step.total_seconds()))
        horizon_s = round(config.horizon_hours * 3600)
        now = self._clock.now()
        installed = None
        if info.ocpp_version == "ocpp2.0.1" and running:
            installed = await self._get_charging_profiles(config.id, info.id)
        out: dict[tuple[int, int], tuple[PowerSchedule | None, PowerSchedule | None]] = {}
        for tx_id, ocpp_id, evse in running:
            found: tuple[PowerSchedule, PowerSchedule] | None = None
            if installed is not None:
                profile = next(
                    (
                        p
                        for p in installed.get(evse, [])
                        if p.get("chargingProfilePurpose") == "TxProfile"
                        and str(p.get("transactionId")) == ocpp_id
                    ),
                    None,
                )
                if profile is None:
                    out[(tx_id, evse)] = (None, None)  # none of ours: its TxDefaultProfile
                    continue
                schedules = profile.get("chargingSchedule")
                if isinstance(schedules, list) and len(schedules) == 1:
                    found = schedule_bounds(
                        schedules[0],
                        limits=info.limits,
                        fallback_w=fallback,
                        step_s=step_s,
                        horizon_s=horizon_s,
                        since=now,
                    )
            if found is None:
                unit = choose_unit(info.capabilities)
                result, _ = await self._call(
                    config.id,
                    info.id,
                    "GetCompositeSchedule",
                    _composite_request(info.ocpp_version, evse, unit, horizon_s),
                )
                composite = result.payload.get("chargingSchedule") or result.payload.get("schedule")
                if result.ok and result.status == "Accepted" and isinstance(composite, dict):
                    found = schedule_bounds(
                        composite,
                        limits=info.limits,
                        fallback_w=fallback,
                        step_s=step_s,
                        horizon_s=horizon_s,
                        default_start=now,
                        since=now,
                    )
            if found is None:  # nothing readable: anything from 0 to its maximum
                start = grid_start(now, step_s)
                steps = max(1, horizon_s // step_s)
                found = (
                    PowerSchedule(start, step_s, (0.0,) * steps),
                    PowerSchedule(start, step_s, (max_w,) * steps),
                )
            out[(tx_id, evse)] = found
        return out

    async def _get_charging_profiles(
        self, site_id: str, charge_point_id: str
    ) -> dict[int, list[dict[str, Any]]] | None:
        """The TxProfiles a 2.0.1 station has installed, by EVSE (K09: GetChargingProfiles, then
        one ReportChargingProfiles per EVSE until ``tbc`` is false); None when it did not say."""
        self._request_id += 1
        key = (charge_point_id, self._request_id)
        reports = self._reports[key] = _ProfileReports()
        try:
            result, _ = await self._call(
                site_id,
                charge_point_id,
                "GetChargingProfiles",
                {
                    "requestId": self._request_id,
                    "chargingProfile": {"chargingProfilePurpose": "TxProfile"},
                },
            )
            if result.ok and result.status == "NoProfiles":
                return {}
            if not (result.ok and result.status == "Accepted"):
                return None
            try:
                await asyncio.wait_for(reports.done.wait(), self._settings.call_timeout_s)
            except TimeoutError:
                return None
            return reports.profiles
        finally:
            del self._reports[key]

    def _on_profiles_reported(self, n: Notice) -> None:
        report = n.data or {}
        reports = self._reports.get((n.charge_point_id, report.get("requestId", -1)))
        if reports is None:
            return  # not ours, or too late
        profiles = report.get("chargingProfile")
        if isinstance(profiles, list):
            reports.profiles.setdefault(n.evse_id, []).extend(
                p for p in profiles if isinstance(p, dict)
            )
        if not report.get("tbc"):
            reports.done.set()

    async def _unmanaged_before(self, sessions: list[tuple[int, int]]) -> dict[int, str]:
        """Why sessions were unmanaged before the restart, from the audit log: found
        non-compliant, or their profile Rejected. An error (no answer, a CALLERROR) made them
        unmanaged only until the charger reconnects, which it just did. Kept in memory only;
        forgetting it would plan a charger that ignores its limits again until the meters catch
        it anew."""
        tx_ids = [tx_id for tx_id, _ in sessions]
        if not tx_ids:
            return {}
        async with self._sessions() as s:
            rows = (
                await s.exec(
                    select(ProfileAudit)
                    .where(
                        col(ProfileAudit.transaction_id).in_(tx_ids),
                        ProfileAudit.purpose == "TxProfile",
                        col(ProfileAudit.status).not_in(["held"]),
                        ProfileAudit.phase != "skipped",
                    )
                    .order_by(col(ProfileAudit.id))
                )
            ).all()
        last = {row.transaction_id: row for row in rows if row.transaction_id is not None}
        out: dict[int, str] = {}
        for tx_id, row in last.items():
            if (row.verification or "").startswith("non-compliant"):
                out[tx_id] = row.verification or ""
            elif row.status == "Rejected":
                out[tx_id] = "TxProfile not accepted (Rejected)"
        return out

    async def _verify(
        self, site_id: str, change: _Change, audit_id: int, *, second_look: bool = True
    ) -> None:
        """Ask the charger what it will really allow (GetCompositeSchedule) and record whether it
        is within the profile just accepted. Chargers that reject the request are left to the meter
        check (OCPP_SMART_CHARGING.md: some chargers reject GetCompositeSchedule)."""
        cp_id, evse = change.key
        control = self.cp_control.get(cp_id)
        if control is None or control.info is None or control.composite_rejected:
            return
        unit = choose_unit(control.info.capabilities)

        def superseded() -> bool:
            sc = self.tx_control.get(change.transaction_id)
            return sc is None or sc.installed is not change.payload

        if superseded():
            await self.audit.set_verification(
                audit_id, "unverified: superseded before it was checked", self._clock.now()
            )
            return
        result, _ = await self._call(
            site_id,
            cp_id,
            "GetCompositeSchedule",
            _composite_request(control.info.ocpp_version, evse, unit),
        )
        now = self._clock.now()
        if superseded():  # the answer may describe the newer profile
            await self.audit.set_verification(
                audit_id, "unverified: superseded before it was checked", now
            )
            return
        if not (result.ok and result.status == "Accepted"):
            control.composite_rejected = True
            await self.audit.set_verification(
                audit_id,
                f"unverified: GetCompositeSchedule {result.status or result.error}; meters checked",
                now,
            )
            return
        limit = _composite_limit_now(result.payload)
        if limit is None:
            await self.audit.set_verification(audit_id, "unverified: no composite schedule", now)
            return
        value, unit, at = limit
        # The composite starts when the charger answered, maybe in a later step of the plan:
        # compare with what the profile allows then.
        planned = change.schedule.watts_at(at or now)
        if planned is None:
            await self.audit.set_verification(audit_id, "unverified: answer outside the plan", now)
            return
        info = control.info
        expected = limit_to_watts(
            limit_in_unit(planned, unit=choose_unit(info.capabilities), limits=info.limits),
            unit=choose_unit(info.capabilities),
            limits=info.limits,
        )
        watts = limit_to_watts(value, unit=unit, limits=info.limits)
        if watts <= expected * 1.01 + 1.0:
            verdict = f"applied: composite limit {watts:.0f} W"
        elif second_look:
            # "Not applied" is a serious finding: first rule out a race with the session's end or
            # a newer profile, which the charger may know of before we do.
            await asyncio.sleep(self._settings.retry_backoff_s)
            await self._verify(site_id, change, audit_id, second_look=False)
            return
        else:
            verdict = f"not applied: composite limit {watts:.0f} W above {expected:.0f} W"
        await self.audit.set_verification(audit_id, verdict, now)


def direction_within(
    low: PowerSchedule | None,
    high: PowerSchedule | None,
    new: PowerSchedule,
    fallback_w: float,
    window: tuple[datetime, datetime],
) -> Direction:
    """``direction`` when the limits in force are known only to lie between ``low`` and ``high``
    (read back after a restart): a decrease only if the new limits are never above the lowest
    they may be, an increase only if never below the highest; else "mixed" (lowered first to
    ``low``, which is below whatever is in force)."""
    if low is high:
        return direction(high, new, fallback_w, window)
    if direction(low, new, fallback_w, window) == "decrease":
        return "decrease"
    if direction(high, new, fallback_w, window) == "increase":
        return "increase"
    return "mixed"


def _enforced(schedule: PowerSchedule, ch: ChargerInfo) -> PowerSchedule:
    """The watts a charger enforces under a profile built from ``schedule`` (limits truncated
    down in its unit, 0 below its minimum current)."""
    unit = choose_unit(ch.capabilities)
    return PowerSchedule(
        schedule.start,
        schedule.step_s,
        tuple(
            limit_to_watts(
                limit_in_unit(w, unit=unit, limits=ch.limits), unit=unit, limits=ch.limits
            )
            for w in schedule.watts
        ),
    )


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo is not None else None


def schedule_bounds(
    schedule: dict[str, Any],
    *,
    limits: ChargerLimits,
    fallback_w: float,
    step_s: int,
    horizon_s: int,
    default_start: datetime | None = None,
    since: datetime | None = None,
) -> tuple[PowerSchedule, PowerSchedule] | None:
    """(lowest, highest) watts per planning step that a charging schedule allows (a profile's
    ``chargingSchedule`` or a composite schedule, camelCase, either version), on the site's grid
    of ``step_s``; before its start and after its end ``fallback_w`` applies (the
    TxDefaultProfile). Without a ``startSchedule`` it starts at ``default_start`` (a composite
    schedule starts now); without a ``duration`` it holds ``horizon_s``. Steps over before
    ``since`` are left out. None if unreadable."""
    start = _time(schedule.get("startSchedule") or schedule.get("scheduleStart")) or default_start
    periods = schedule.get("chargingSchedulePeriod")
    if start is None or not isinstance(periods, list) or not periods:
        return None
    unit: RateUnit = "W" if schedule.get("chargingRateUnit") == "W" else "A"
    try:
        points = sorted(
            (
                int(p["startPeriod"]),
                limit_to_watts(float(p["limit"]), unit=unit, limits=limits),
            )
            for p in periods
        )
        duration = schedule.get("duration")
        length = int(duration) if duration is not None else horizon_s
    except (KeyError, TypeError, ValueError):
        return None
    end = start + timedelta(seconds=max(length, 0))

    def at(t: datetime) -> float:
        if t < start or t >= end:
            return fallback_w
        offset = (t - start).total_seconds()
        watts = fallback_w  # before the first period (startPeriod should be 0)
        for begin, w in points:
            if begin <= offset:
                watts = w
        return watts

    changes = [start, end, *(start + timedelta(seconds=b) for b, _ in points)]
    first = grid_start(max(min(start, end), since or start), step_s)
    steps = max(1, math.ceil((end - first).total_seconds() / step_s))
    step = timedelta(seconds=step_s)
    lows, highs = [], []
    for k in range(steps):
        a, b = first + k * step, first + (k + 1) * step
        values = [at(a), *(at(c) for c in changes if a < c < b)]
        lows.append(max(0.0, min(values)))
        highs.append(max(0.0, *values))
    return PowerSchedule(first, step_s, tuple(lows)), PowerSchedule(first, step_s, tuple(highs))


def _composite_request(version: str, evse: int, unit: str, duration: int = 60) -> dict[str, Any]:
    if version == "ocpp1.6":
        return {"connectorId": evse, "duration": duration, "chargingRateUnit": unit}
    return {"evseId": evse, "duration": duration, "chargingRateUnit": unit}


def _composite_limit_now(answer: dict[str, Any]) -> tuple[float, RateUnit, datetime | None] | None:
    """(limit of the first period, unit, when the schedule starts) of a GetCompositeSchedule answer
    of either version."""
    schedule = answer.get("chargingSchedule") or answer.get("schedule")
    if not isinstance(schedule, dict):
        return None
    periods = schedule.get("chargingSchedulePeriod")
    if not isinstance(periods, list) or not periods:
        return None
    first = min(periods, key=lambda p: p.get("startPeriod", 0))
    unit: RateUnit = "W" if schedule.get("chargingRateUnit") == "W" else "A"
    start = schedule.get("startSchedule") or answer.get("scheduleStart")
    at: datetime | None = None
    if isinstance(start, str):
        try:
            at = datetime.fromisoformat(start.replace("Z", "+00:00"))
        except ValueError:
            at = None
    if at is not None and at.tzinfo is None:
        at = None
    try:
        return float(first["limit"]), unit, at
    except (KeyError, TypeError, ValueError):
        return None
