"""What the central system does with what chargers tell it: boot, status, transactions, meter values.

Version-neutral: it takes domain events (csms.domain.events) and never sees OCPP payloads. Every
operation is idempotent where a charger may resend (after a reconnect), so nothing is counted twice.
That is also what lets the operations marked ``@retried`` run again while the database is away for
a moment (a PostgreSQL restart): a commit whose answer was lost may have been applied.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import delete, func, insert, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from csms.db.engine import retried, retry_transient
from csms.db.models import (
    ChargePoint,
    Connector,
    IdToken,
    MessageLog,
    MeterValue,
    NeedsInput,
    OutboundCall,
    Site,
    Transaction,
    TransactionEventLog,
    as_utc,
)
from csms.domain.clock import Clock
from csms.domain.commands import CommandResult
from csms.domain.events import (
    Booted,
    MeterSample,
    NeedsReported,
    StatusChanged,
    TransactionEnded,
    TransactionEventReceived,
    TransactionStarted,
    active_power_w,
    energy_register_wh,
)
from csms.services.notifications import Notice, Notifier
from csms.services.passwords import hash_password, verify_password

log = logging.getLogger(__name__)

CLOSED_BY_REBOOT = "ChargerRebooted"
# Password hashes (scrypt, ~50 ms of CPU and 16 MB each) computed at once: one per core.
SCRYPT_SLOTS = max(1, os.cpu_count() or 1)

T = TypeVar("T")


@functools.cache
def _dummy_hash() -> str:
    return hash_password("no charger has this password")


@dataclass(frozen=True, slots=True)
class StartResult:
    """Answer to a 1.6 StartTransaction: our transaction id and the token's status."""

    transaction_id: int
    id_tag_status: str
    duplicate: bool


@dataclass(frozen=True, slots=True)
class EventResult:
    """Answer to a 2.0.1 TransactionEvent."""

    id_token_status: str | None
    duplicate: bool


class StationService:
    """Persistence and rules for charger state. One instance per process."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        *,
        allow_unknown_chargers: bool = False,
        accept_unknown_id_tokens: bool = False,
        notifier: Notifier | None = None,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self.notifier = notifier or Notifier()
        self.allow_unknown_chargers = allow_unknown_chargers
        self.accept_unknown_id_tokens = accept_unknown_id_tokens
        self._verified: dict[str, tuple[str, bytes]] = {}  # see _remembered
        self._verified_key = secrets.token_bytes(32)
        self._scrypt_slots = asyncio.Semaphore(SCRYPT_SLOTS)
        # Connections begun per charger, and a lock per charger: see disconnected().
        self._connects: dict[str, int] = {}
        self._connection_locks: dict[str, asyncio.Lock] = {}

    # --- registration and authentication (security profile 1) ------------------------------

    async def set_password(self, charge_point_id: str, password: str) -> None:
        """Store a registered charger's new password (hashed); raises ``LookupError`` for an
        unknown charger."""
        hashed = await asyncio.to_thread(hash_password, password)  # scrypt: off the event loop
        async with self._sessions.begin() as s:
            cp = await s.get(ChargePoint, charge_point_id)
            if cp is None:
                raise LookupError(f"no charger {charge_point_id!r}")
            cp.password_hash = hashed
            cp.self_registered = False  # an operator vouches for it now
            s.add(cp)

    async def register_charge_point(
        self,
        charge_point_id: str,
        *,
        password: str | None = None,
        site_id: str | None = None,
        max_power_w: float | None = None,
        phases: int = 3,
        voltage_v: float = 230.0,
    ) -> None:
        """Create or update a charger's registration (password stored hashed)."""
        async with self._sessions.begin() as s:
            if site_id is not None and await s.get(Site, site_id) is None:
                s.add(Site(id=site_id, name=site_id))  # sites are configured later (cap etc.)
                await s.flush()
            cp = await s.get(ChargePoint, charge_point_id)
            if cp is None:
                cp = ChargePoint(id=charge_point_id)
            if password is not None:
                cp.password_hash = hash_password(password)
            cp.self_registered = False  # an operator vouches for it now
            cp.site_id = site_id if site_id is not None else cp.site_id
            cp.max_power_w = max_power_w if max_power_w is not None else cp.max_power_w
            cp.phases = phases
            cp.voltage_v = voltage_v
            s.add(cp)

    @retried
    async def check_credentials(self, charge_point_id: str, password: str | None) -> bool:
        """May this charger connect? Unknown chargers only with self-registration on."""
        async with self._sessions() as s:
            cp = await s.get(ChargePoint, charge_point_id)
        stored = cp.password_hash if cp is not None else _dummy_hash()
        if cp is not None and stored is None:
            # Registered by an operator without a password: security profile 0. Self-registered
            # without one: only while self-registration is allowed.
            return not cp.self_registered or self.allow_unknown_chargers
        assert stored is not None
        if cp is not None and password is not None and self._remembered(cp.id, stored, password):
            return True  # verified before by this process (a reconnect): no scrypt again
        # scrypt takes tens of milliseconds: off the event loop. Unknown ids pay the same cost so
        # that the answer's timing does not tell which ids exist.
        ok = password is not None and await self._scrypt(verify_password, password, stored)
        if ok and cp is not None and password is not None:
            self._remember(cp.id, stored, password)
        return ok if cp is not None else self.allow_unknown_chargers

    # A reconnect storm (every charger back at once after a network blip) would cost one scrypt
    # per charger: tens of seconds of CPU for a thousand. A password this process has verified is
    # remembered as an HMAC under a random per-process key, with the hash it was checked against,
    # so a reconnect with the same password is checked in microseconds. Only a correct password
    # can match (a wrong one takes the full scrypt path, timing unchanged), and a changed
    # password changes the stored hash, so the old entry no longer matches.

    def _remembered(self, charge_point_id: str, stored: str, password: str) -> bool:
        entry = self._verified.get(charge_point_id)
        return (
            entry is not None
            and entry[0] == stored
            and hmac.compare_digest(entry[1], self._mac(password))
        )

    def _remember(self, charge_point_id: str, stored: str, password: str) -> None:
        self._verified[charge_point_id] = (stored, self._mac(password))

    def _mac(self, password: str) -> bytes:
        return hmac.digest(self._verified_key, password.encode(), "sha256")

    async def _scrypt(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a password hash in a worker thread, at most SCRYPT_SLOTS at a time. Waiting for a
        slot here, not in the thread pool's queue, means a handshake abandoned meanwhile (its
        charger timed out) is cancelled before it costs any CPU, and the pool stays free for
        other work (the planner's solves)."""
        async with self._scrypt_slots:
            return await asyncio.to_thread(fn, *args)

    async def may_connect_with_certificate(self, charge_point_id: str) -> bool:
        """Security profile 3: TLS has verified the charger's certificate and the server its
        commonName; is this charger known (or may it register itself)? The certificate is its
        credential, as a password is under profiles 1 and 2."""
        async with self._sessions() as s:
            cp = await s.get(ChargePoint, charge_point_id)
        return cp is not None or self.allow_unknown_chargers

    # --- connection and boot --------------------------------------------------------------

    async def connected(self, charge_point_id: str, version: str, password: str | None) -> None:
        """A charger connected (self-registering it when allowed and unknown)."""
        # Counted before any await, so that the disconnect of this charger's previous connection,
        # if still being written, sees that a newer one has begun (see disconnected).
        self._connects[charge_point_id] = self._connects.get(charge_point_id, 0) + 1
        await retry_transient(
            functools.partial(self._connected, charge_point_id, version, password),
            "StationService.connected",
        )

    async def _connected(self, charge_point_id: str, version: str, password: str | None) -> None:
        now = self._clock.now()
        hashed: str | None = None
        if password:
            async with self._sessions() as s:
                known = await s.get(ChargePoint, charge_point_id) is not None
            if not known:  # scrypt: off the event loop, and outside the transaction
                hashed = await self._scrypt(hash_password, password)
        async with self._connection_lock(charge_point_id), self._sessions.begin() as s:
            cp = await s.get(ChargePoint, charge_point_id)
            if cp is None:
                cp = ChargePoint(id=charge_point_id, password_hash=hashed, self_registered=True)
                log.info("self-registered new charger", extra={"charge_point": charge_point_id})
            cp.connected = True
            cp.ocpp_version = version
            cp.last_seen = now
            s.add(cp)
        self.notifier.publish(Notice("connected", charge_point_id, at=now))

    @retried
    async def mark_all_disconnected(self) -> None:
        """At start (single process): no charger is connected yet, whatever a crash left behind.
        (A cluster worker must not: other workers serve chargers; see csms.cluster.sweeper.)"""
        async with self._sessions.begin() as s:
            await (await s.connection()).execute(update(ChargePoint).values(connected=False))

    @retried
    async def connected_ids(self) -> list[str]:
        """Chargers recorded as connected (to any process), sorted."""
        async with self._sessions() as s:
            rows = await s.exec(select(ChargePoint.id).where(col(ChargePoint.connected)))
            return sorted(rows.all())

    @retried
    async def mark_disconnected(self, seen_before: dict[str, datetime]) -> list[str]:
        """Record chargers as disconnected that no process serves (cluster mode: their worker was
        killed and they did not come back), each only if it has not been seen since the time
        given: a charger that connected again meanwhile stays connected. Returns those marked."""
        marked: list[str] = []
        now = self._clock.now()
        async with self._sessions.begin() as s:
            conn = await s.connection()
            for charge_point_id, cutoff in sorted(seen_before.items()):
                done = await conn.execute(
                    update(ChargePoint)
                    .where(
                        col(ChargePoint.id) == charge_point_id,
                        col(ChargePoint.connected),
                        col(ChargePoint.last_seen).is_(None)
                        | (col(ChargePoint.last_seen) < cutoff),
                    )
                    .values(connected=False)
                )
                if done.rowcount:
                    marked.append(charge_point_id)
        for charge_point_id in marked:
            self.notifier.publish(Notice("disconnected", charge_point_id, at=now))
        return marked

    async def disconnected(self, charge_point_id: str) -> None:
        """A charger's connection closed.

        A charger that reconnects at once (a network blip) may have its new connection recorded
        while the old one's disconnect is still waiting for the database; written after it, that
        disconnect would mark a connected charger offline. So the disconnect is skipped when a
        newer connection began since it was called, and both writes of one charger take turns.
        """
        ticket = self._connects.get(charge_point_id, 0)
        await retry_transient(
            functools.partial(self._disconnected, charge_point_id, ticket),
            "StationService.disconnected",
        )

    async def _disconnected(self, charge_point_id: str, ticket: int) -> None:
        async with self._connection_lock(charge_point_id):
            if self._connects.get(charge_point_id, 0) != ticket:
                return  # a newer connection of this charger began meanwhile
            async with self._sessions.begin() as s:
                await (await s.connection()).execute(
                    update(ChargePoint)
                    .where(col(ChargePoint.id) == charge_point_id)
                    .values(connected=False)
                )
        self.notifier.publish(Notice("disconnected", charge_point_id, at=self._clock.now()))

    def _connection_lock(self, charge_point_id: str) -> asyncio.Lock:
        return self._connection_locks.setdefault(charge_point_id, asyncio.Lock())

    @retried
    async def booted(self, charge_point_id: str, boot: Booted) -> list[int]:
        """BootNotification: store identity; close transactions the reboot cut short.

        Returns the ids of the transactions it closed.
        """
        now = self._clock.now()
        async with self._sessions.begin() as s:
            cp = await s.get(ChargePoint, charge_point_id) or ChargePoint(id=charge_point_id)
            cp.vendor = boot.vendor
            cp.model = boot.model
            cp.serial_number = boot.serial_number
            cp.firmware_version = boot.firmware_version
            cp.booted_at = now
            cp.last_seen = now
            s.add(cp)
            closed: list[int] = []
            if boot.reason == "Triggered":
                return closed  # asked by us (TriggerMessage), not a reboot: nothing was lost
            open_txs = (
                await s.exec(
                    select(Transaction).where(
                        Transaction.charge_point_id == charge_point_id,
                        col(Transaction.active).is_(True),
                    )
                )
            ).all()
            for tx in open_txs:
                # A rebooted charger has lost its running transactions. If it later sends their
                # StopTransaction / TransactionEvent after all, those are still accepted.
                tx.active = False
                tx.stopped_at = now
                tx.stop_reason = CLOSED_BY_REBOOT
                tx.meter_stop_wh = tx.last_energy_wh
                s.add(tx)
                if tx.id is not None:
                    closed.append(tx.id)
        self.notifier.publish(Notice("booted", charge_point_id, at=now))
        return closed

    @retried
    async def seen(self, charge_point_id: str) -> None:
        """Heartbeat or any message: the charger is alive."""
        async with self._sessions.begin() as s:
            await (await s.connection()).execute(
                update(ChargePoint)
                .where(col(ChargePoint.id) == charge_point_id)
                .values(last_seen=self._clock.now())
            )

    @retried
    async def save_capabilities(self, charge_point_id: str, capabilities: dict[str, Any]) -> None:
        """Store what the charger said it can do for smart charging."""
        async with self._sessions.begin() as s:
            cp = await s.get(ChargePoint, charge_point_id)
            if cp is not None:
                cp.capabilities = {**(cp.capabilities or {}), **capabilities}
                s.add(cp)
        self.notifier.publish(Notice("capabilities", charge_point_id, at=self._clock.now()))

    @retried
    async def status_changed(self, charge_point_id: str, status: StatusChanged) -> None:
        """StatusNotification: keep the newest status per connector (older ones are ignored)."""
        async with self._sessions.begin() as s:
            row = (
                await s.exec(
                    select(Connector).where(
                        Connector.charge_point_id == charge_point_id,
                        Connector.evse_id == status.evse_id,
                        Connector.connector_id == status.connector_id,
                    )
                )
            ).first()
            if row is None:
                row = Connector(
                    charge_point_id=charge_point_id,
                    evse_id=status.evse_id,
                    connector_id=status.connector_id,
                )
            elif status.timestamp is not None and row.updated_at is not None:
                previous = as_utc(row.updated_at)
                if previous is not None and previous > status.timestamp:
                    return  # a late, resent notification must not overwrite a newer status
            row.status = status.status
            row.error_code = status.error_code
            # Without a charger time, "received now" is the best we know.
            row.updated_at = status.timestamp or self._clock.now()
            s.add(row)

    # --- tokens --------------------------------------------------------------------------

    @retried
    async def authorize(self, id_tag: str | None) -> str:
        """Accepted, Blocked or Invalid (unknown tokens: per accept_unknown_id_tokens)."""
        if id_tag is None:
            return "Accepted"
        async with self._sessions() as s:
            token = await s.get(IdToken, id_tag)
        if token is None:
            return "Accepted" if self.accept_unknown_id_tokens else "Invalid"
        return token.status

    async def add_id_token(self, id_tag: str, status: str = "Accepted") -> None:
        """Register a token."""
        async with self._sessions.begin() as s:
            s.add(IdToken(id_token=id_tag, status=status))

    # --- transactions ----------------------------------------------------------------------

    @retried
    async def start_transaction(
        self, charge_point_id: str, version: str, start: TransactionStarted
    ) -> StartResult:
        """1.6 StartTransaction. A resend (same connector, time and meter) gets the same id."""
        status = await self.authorize(start.id_tag)
        async with self._sessions.begin() as s:
            same = (
                await s.exec(
                    select(Transaction).where(
                        Transaction.charge_point_id == charge_point_id,
                        Transaction.connector_id == start.connector_id,
                        Transaction.started_at == start.timestamp,
                        Transaction.meter_start_wh == start.meter_start_wh,
                    )
                )
            ).first()
            if same is not None and same.id is not None:
                return StartResult(same.id, status, duplicate=True)
            tx = Transaction(
                charge_point_id=charge_point_id,
                ocpp_id="pending",
                ocpp_version=version,
                evse_id=start.evse_id,
                connector_id=start.connector_id,
                id_tag=start.id_tag,
                started_at=start.timestamp,
                meter_start_wh=start.meter_start_wh,
                last_energy_wh=start.meter_start_wh,
                active=status == "Accepted",
                stop_reason=None if status == "Accepted" else f"IdTag{status}",
            )
            s.add(tx)
            await s.flush()
            assert tx.id is not None
            tx.ocpp_id = str(tx.id)  # 1.6: the integer we assign is the id on the wire
            s.add(tx)
            result = StartResult(tx.id, status, duplicate=False)
        if tx.active:
            self.notifier.publish(
                Notice(
                    "session_started",
                    charge_point_id,
                    tx.evse_id,
                    result.transaction_id,
                    at=start.timestamp,
                )
            )
        return result

    @retried
    async def stop_transaction(self, charge_point_id: str, end: TransactionEnded) -> bool:
        """1.6 StopTransaction (or a 2.0.1 Ended event). Idempotent; False if unknown."""
        async with self._sessions.begin() as s:
            tx = await self._find(s, charge_point_id, end.ocpp_id)
            if tx is None or tx.id is None:
                return False
            await self._store_samples(s, charge_point_id, tx.evse_id, tx.id, list(end.samples))
            if not tx.active and tx.stop_reason != CLOSED_BY_REBOOT:
                return True  # already stopped: a resend changes nothing
            tx.active = False
            tx.stopped_at = end.timestamp
            tx.stop_reason = end.reason or "Local"
            if end.meter_stop_wh is not None:
                tx.meter_stop_wh = end.meter_stop_wh
                tx.last_energy_wh = end.meter_stop_wh
            s.add(tx)
            notice = Notice("session_ended", charge_point_id, tx.evse_id, tx.id)
        self.notifier.publish(notice)
        return True

    @retried
    async def transaction_event(
        self, charge_point_id: str, version: str, ev: TransactionEventReceived
    ) -> EventResult:
        """2.0.1 TransactionEvent: Started/Updated/Ended, each seqNo processed once."""
        status = await self.authorize(ev.id_tag) if ev.id_tag is not None else None
        async with self._sessions.begin() as s:
            tx = await self._find(s, charge_point_id, ev.ocpp_id)
            new = tx is None
            if tx is None:
                # Started, or the first event we see of a transaction begun while we were away.
                tx = Transaction(
                    charge_point_id=charge_point_id,
                    ocpp_id=ev.ocpp_id,
                    ocpp_version=version,
                    evse_id=ev.evse_id,
                    connector_id=ev.connector_id,
                    id_tag=ev.id_tag,
                    started_at=ev.timestamp,
                    meter_start_wh=energy_register_wh(ev.samples),
                )
                s.add(tx)
                await s.flush()
            assert tx.id is not None
            seen = (
                await s.exec(
                    select(TransactionEventLog).where(
                        TransactionEventLog.transaction_id == tx.id,
                        TransactionEventLog.seq_no == ev.seq_no,
                    )
                )
            ).first()
            if seen is not None:
                return EventResult(status, duplicate=True)
            s.add(
                TransactionEventLog(
                    transaction_id=tx.id,
                    seq_no=ev.seq_no,
                    event_type=ev.event_type,
                    trigger_reason=ev.trigger_reason,
                    offline=ev.offline,
                    timestamp=ev.timestamp,
                )
            )
            if ev.id_tag is not None and tx.id_tag is None:
                tx.id_tag = ev.id_tag
            if ev.evse_id and not tx.evse_id:
                tx.evse_id, tx.connector_id = ev.evse_id, ev.connector_id
            await self._store_samples(s, charge_point_id, tx.evse_id, tx.id, list(ev.samples))
            energy = energy_register_wh(ev.samples)
            if tx.meter_start_wh is None and energy is not None:
                tx.meter_start_wh = energy  # a Started event often carries no reading
            # Offline events arrive late and out of order: only move forward.
            if energy is not None and (tx.last_energy_wh is None or energy >= tx.last_energy_wh):
                tx.last_energy_wh = energy
            tx.last_seq_no = max(tx.last_seq_no or 0, ev.seq_no)
            if ev.event_type == "Ended":
                tx.active = False
                tx.stopped_at = ev.timestamp
                tx.stop_reason = ev.stopped_reason or "Local"
                tx.meter_stop_wh = energy if energy is not None else tx.last_energy_wh
            elif tx.stop_reason == CLOSED_BY_REBOOT:
                tx.active, tx.stopped_at, tx.stop_reason = True, None, None  # it came back
            s.add(tx)
            # 2.0.1 numbers EVSEs; the planner keys a 2.0.1 session by its EVSE.
            notice = Notice(
                "session_ended"
                if ev.event_type == "Ended"
                else ("session_started" if new else "meter"),
                charge_point_id,
                tx.evse_id,
                tx.id,
                power_w=active_power_w(ev.samples),
                energy_wh=tx.last_energy_wh,
                at=ev.timestamp,
            )
        self.notifier.publish(notice)
        return EventResult(status, duplicate=False)

    @retried
    async def meter_values(
        self,
        charge_point_id: str,
        evse_id: int,
        ocpp_transaction_id: str | None,
        samples: list[MeterSample],
    ) -> int:
        """Store one call's samples (duplicates ignored). Returns how many were new."""
        return await self.meter_values_batch(
            [MeterCall(charge_point_id, evse_id, ocpp_transaction_id, samples)]
        )

    async def meter_values_batch(self, calls: Sequence[MeterCall]) -> int:
        """Store many calls' samples in one database transaction. Returns how many were new."""
        async with self._sessions.begin() as s:
            tx_ids: dict[tuple[str, str], Transaction | None] = {}
            rows: list[dict[str, Any]] = []
            notices: list[Notice] = []
            for call in calls:
                tx_id: int | None = None
                if call.ocpp_transaction_id is not None:
                    key = (call.charge_point_id, call.ocpp_transaction_id)
                    if key not in tx_ids:
                        tx_ids[key] = await self._find(s, *key)
                    tx = tx_ids[key]
                    if tx is not None and tx.id is not None:
                        tx_id = tx.id
                        energy = energy_register_wh(call.samples)
                        # Late (offline) readings never move the register back.
                        if energy is not None and (
                            tx.last_energy_wh is None or energy >= tx.last_energy_wh
                        ):
                            tx.last_energy_wh = energy
                            s.add(tx)
                rows.extend(_rows(call.charge_point_id, call.evse_id, tx_id, call.samples))
                if tx_id is not None:
                    notices.append(
                        Notice(
                            "meter",
                            call.charge_point_id,
                            call.evse_id,
                            tx_id,
                            power_w=active_power_w(call.samples),
                            energy_wh=energy_register_wh(call.samples),
                            at=max((x.timestamp for x in call.samples), default=None),
                        )
                    )
            stored = await self._insert_samples(s, rows)
        for notice in notices:
            self.notifier.publish(notice)
        return stored

    def profiles_reported(self, charge_point_id: str, report: dict[str, Any]) -> None:
        """ReportChargingProfiles (2.0.1 K09): what a station says is installed, for whoever asked
        with GetChargingProfiles (the planning loop, after a restart). Nothing is stored."""
        evse = report.get("evseId")
        self.notifier.publish(
            Notice(
                "profiles_reported",
                charge_point_id,
                evse if isinstance(evse, int) else 0,
                at=self._clock.now(),
                data=report,
            )
        )

    @retried
    async def needs_reported(self, charge_point_id: str, needs: NeedsReported) -> bool:
        """NotifyEVChargingNeeds: attach to the active transaction on that EVSE."""
        async with self._sessions.begin() as s:
            tx = (
                await s.exec(
                    select(Transaction).where(
                        Transaction.charge_point_id == charge_point_id,
                        Transaction.evse_id == needs.evse_id,
                        col(Transaction.active).is_(True),
                    )
                )
            ).first()
            if tx is None or tx.id is None:
                return False
            row = (
                await s.exec(
                    select(NeedsInput).where(
                        NeedsInput.transaction_id == tx.id, NeedsInput.source == "ev"
                    )
                )
            ).first() or NeedsInput(transaction_id=tx.id, source="ev")
            row.departure = needs.departure
            row.energy_wh = needs.energy_wh
            row.max_power_w = needs.max_power_w
            row.min_power_w = needs.min_power_w
            row.updated_at = self._clock.now()
            s.add(row)
            notice = Notice("needs", charge_point_id, tx.evse_id, tx.id)
        self.notifier.publish(notice)
        return True

    # --- raw message log ----------------------------------------------------------------

    async def log_messages_raw(self, rows: list[dict[str, Any]]) -> None:
        """Append raw OCPP frames (dicts of MessageLog fields; written in batches by the server)."""
        if not rows:
            return
        async with self._sessions.begin() as s:
            # Core executemany: building ORM objects cost more than the insert itself.
            await (await s.connection()).execute(insert(MessageLog), rows)

    async def prune_message_log(self, older_than: datetime) -> int:
        """Delete raw frames older than the retention. Returns how many."""
        async with self._sessions.begin() as s:
            result = await (await s.connection()).execute(
                delete(MessageLog).where(col(MessageLog.created_at) < older_than)
            )
            return int(result.rowcount or 0)

    @retried
    async def record_command(
        self, charge_point_id: str, action: str, request: dict[str, Any], result: CommandResult
    ) -> None:
        """Append one outbound call and what came of it."""
        async with self._sessions.begin() as s:
            s.add(
                OutboundCall(
                    charge_point_id=charge_point_id,
                    action=action,
                    request=request,
                    ok=result.ok,
                    status=result.status,
                    response=result.payload or None,
                    error=result.error,
                    latency_s=result.latency_s,
                    created_at=self._clock.now(),
                )
            )

    # --- helpers ---------------------------------------------------------------------------

    async def _find(
        self, s: AsyncSession, charge_point_id: str, ocpp_id: str
    ) -> Transaction | None:
        return (
            await s.exec(
                select(Transaction).where(
                    Transaction.charge_point_id == charge_point_id,
                    Transaction.ocpp_id == ocpp_id,
                )
            )
        ).first()

    async def _store_samples(
        self,
        s: AsyncSession,
        charge_point_id: str,
        evse_id: int,
        transaction_id: int | None,
        samples: list[MeterSample],
    ) -> int:
        return await self._insert_samples(
            s, _rows(charge_point_id, evse_id, transaction_id, samples)
        )

    async def _insert_samples(self, s: AsyncSession, rows: list[dict[str, Any]]) -> int:
        """Insert sample rows; ones already stored (a resend) are skipped by the unique index."""
        if not rows:
            return 0
        dialect = s.get_bind().dialect.name
        upsert = pg_insert if dialect == "postgresql" else sqlite_insert
        # executemany with one cached statement (a multi-row VALUES is recompiled every time).
        stmt = upsert(MeterValue).on_conflict_do_nothing()
        result = await (await s.connection()).execute(stmt, rows)
        return max(int(result.rowcount or 0), 0)  # -1 where the driver does not count


@dataclass(frozen=True, slots=True)
class MeterCall:
    """One MeterValues call's worth of samples (``evse_id``: 1.6 connector N is EVSE N)."""

    charge_point_id: str
    evse_id: int
    ocpp_transaction_id: str | None
    samples: list[MeterSample]


def _rows(
    charge_point_id: str, evse_id: int, transaction_id: int | None, samples: list[MeterSample]
) -> list[dict[str, Any]]:
    return [
        {
            "charge_point_id": charge_point_id,
            "transaction_id": transaction_id,
            "evse_id": evse_id,
            "timestamp": x.timestamp,
            "measurand": x.measurand,
            "phase": x.phase,
            "location": x.location,
            "context": x.context,
            "unit": x.unit,
            "value": x.value,
        }
        for x in samples
    ]


async def count_rows(sessions: async_sessionmaker[AsyncSession], table: Any) -> int:
    """Number of rows in a table (tests and health checks)."""
    async with sessions() as s:
        conn = await s.connection()
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())
