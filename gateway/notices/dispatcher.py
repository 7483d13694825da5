"""The durable sender: due notices are delivered one transaction each, by whichever gateway process claims
them first (row lock on PostgreSQL, the single writer on SQLite); then pushed and announced to Rasa."""

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, time
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from common.db import session_scope, utcnow
from gateway.clients.billing import BillingError
from gateway.clients.rasa import RasaClient, RasaUnavailable
from gateway.delivery import Delivery
from gateway.notices import flows, service
from gateway.notices.models import Notice, NoticeStatus, ScanRun
from gateway.notices.scans import SCANS, Scan
from gateway.notices.settings import NoticeSettings

log = logging.getLogger(__name__)


class Dispatcher:
    def __init__(
        self,
        *,
        session_factory: sessionmaker[Session],
        settings: NoticeSettings,
        delivery: Delivery,
        rasa: RasaClient | None,
        rasa_ready: Callable[[], bool],
        zone: ZoneInfo,
    ):
        self._factory = session_factory
        self._settings = settings
        self._delivery = delivery
        self._rasa = rasa
        self._rasa_ready = rasa_ready
        self._zone = zone
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Something is due now (a new event): do not wait for the next poll."""
        self._wake.set()

    def send_due(self) -> list[flows.Sent]:
        """Deliver every due notice (blocking; call from a thread)."""
        now = utcnow()
        with session_scope(self._factory) as db:
            flows.expire(db_session=db, now=now)
        with self._factory() as db:
            ids = service.get_due_ids(db_session=db, now=now, limit=self._settings.batch)
        return self.send_ids(ids)

    def send_ids(self, ids: list[int]) -> list[flows.Sent]:
        """Deliver these notices if they are still scheduled and due (blocking; call from a thread)."""
        now = utcnow()
        sent: list[flows.Sent] = []
        for notice_id in ids:
            with session_scope(self._factory) as db:
                notice = db.scalar(
                    select(Notice)
                    .where(
                        Notice.id == notice_id,
                        Notice.status == NoticeStatus.SCHEDULED.value,
                        Notice.next_attempt_at <= now,
                    )
                    .with_for_update(skip_locked=True)
                )
                if notice is None:
                    continue  # another process took it
                try:
                    with db.begin_nested():
                        sent.append(flows.send(db_session=db, notice=notice, settings=self._settings, now=now))
                except Exception as exc:
                    log.exception("notice %s could not be delivered; will retry", notice_id)
                    flows.fail(notice=notice, error=str(exc), settings=self._settings, now=now)
        return sent

    def run_due_scans(self, now: datetime | None = None) -> list[flows.ScanResult]:
        """Run today's scans once their time has come, each in the process that claims it (blocking)."""
        now = now or utcnow()
        if not self._settings.scan_at or now.astimezone(self._zone).time() < time.fromisoformat(self._settings.scan_at):
            return []
        today = now.astimezone(self._zone).date()
        results = []
        for scan in SCANS.values():
            with self._factory() as db:
                if db.scalar(select(ScanRun.id).where(ScanRun.scan == scan.name, ScanRun.run_on == today)):
                    continue  # the cheap check, every poll; the claim below is the real one
            results.append(self.run_scan(scan, now=now, claim=True))
        return results

    def run_scan(self, scan: Scan, *, now: datetime | None = None, claim: bool = True) -> flows.ScanResult:
        """One scan now; with `claim`, only if no process ran it today (a failed run is not retried by itself)."""
        now = now or utcnow()
        today = now.astimezone(self._zone).date()
        with session_scope(self._factory) as db:
            run = flows.claim_scan(db_session=db, scan=scan.name, run_on=today, now=now) if claim else None
            if claim and run is None:
                return flows.ScanResult(scan=scan.name, run_on=today, claimed=False)
            try:
                with db.begin_nested():
                    result = flows.run_scan(
                        db_session=db,
                        scan=scan,
                        billing=self._settings.billing(db),
                        settings=self._settings,
                        zone=self._zone,
                        now=now,
                    )
            except BillingError as exc:
                log.error("scan %s failed: %s (run it again with `kefu notices scan %s`)", scan.name, exc, scan.name)
                if run is not None:
                    run.error = str(exc)[:300]
                    run.finished_at = utcnow()
                return flows.ScanResult(scan=scan.name, run_on=today, claimed=claim)
            result.claimed = run is not None
            if run is not None:
                run.events = result.found
                run.finished_at = utcnow()
        log.info("scan %s: %d found, %d notices, %d ignored", scan.name, result.found, result.notices, result.ignored)
        return result

    async def announce(self, sent: list[flows.Sent]) -> None:
        """Tell Rasa a decision is pending and push the notice to live channels."""
        for item in sent:
            if item.pending_notice and self._rasa is not None and self._rasa_ready():
                try:
                    await self._rasa.append_events(
                        item.conversation_public_id,
                        [{"event": "slot", "name": "pending_notice", "value": item.pending_notice}],
                    )
                except RasaUnavailable as exc:
                    log.warning("pending notice not written into Rasa's tracker: %s", exc)
            await self._delivery.deliver(item.channel, item.source_id, [item.reply])

    async def run(self) -> None:
        """Poll for due notices until cancelled."""
        while True:
            try:
                await run_in_threadpool(self.run_due_scans)
                sent = await run_in_threadpool(self.send_due)
                if sent:
                    await self.announce(sent)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("notice dispatch failed; retrying")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._settings.poll_s)
