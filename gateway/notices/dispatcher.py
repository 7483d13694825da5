"""The durable sender: due notices are delivered one transaction each, by whichever gateway process claims
them first (row lock on PostgreSQL, the single writer on SQLite); then pushed and announced to Rasa."""

import asyncio
import contextlib
import logging
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from common.db import session_scope, utcnow
from gateway.clients.rasa import RasaClient, RasaUnavailable
from gateway.delivery import Delivery
from gateway.notices import flows, service
from gateway.notices.models import Notice, NoticeStatus
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
    ):
        self._factory = session_factory
        self._settings = settings
        self._delivery = delivery
        self._rasa = rasa
        self._rasa_ready = rasa_ready
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
