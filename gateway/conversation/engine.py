"""The per-message routing flow: persist, then the human, the knowledge base or Rasa answers."""

import asyncio
import contextlib
import functools
import json
import logging
import re
import uuid
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar, get_args

from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from common.channels import HandoffInfo, InboundMessage, InboundResult, Reply, ReplyKind, ReplyOption
from common.db import read_only_factory, session_scope, utcnow
from gateway.clients.billing import DemoBilling
from gateway.clients.rasa import RasaClient, RasaUnavailable
from gateway.conversation import flows, routing, service, texts
from gateway.conversation.models import (
    Conversation,
    Direction,
    HandoffReason,
    Message,
    Priority,
    SenderType,
    Status,
    Tier,
)
from gateway.notices import flows as notice_flows
from gateway.notices import service as notice_service
from gateway.settings import GatewaySettings
from knowledge import service as kb_service
from knowledge.flows import LiveIndex
from knowledge.retrieval import SearchOutcome

log = logging.getLogger(__name__)
T = TypeVar("T")

REPLY_KINDS = frozenset(get_args(ReplyKind))
HUMAN_HOLDS = (Status.PENDING_HUMAN.value, Status.HUMAN.value)
CHOOSE_KB = re.compile(r"^/choose_kb(\{.*\})$")
# Words that make a short follow-up lean on what was said before (那一天多少钱, 这种状态下…).
_ELLIPTIC = re.compile(r"^(那|这|那个|这个|那边|这边|这种|那种|它|他们|可以|能|还|要|关了|以后|在那)")
_PAYLOAD_INTENT = re.compile(r"^/(\w+)(\{.*\})?$")
MAX_TEXT = 2000
FOLLOW_UP_MAX_CHARS = 20
# Answers wait at most this long for the messages being stored to be stored (acknowledgements first).
STORE_PRIORITY_S = 0.25
# Messages stored in one transaction at most.
STORE_BATCH = 64
INTAKE_BATCH = 256

# Degraded mode: without Rasa the gateway still recognises the commands that must never be lost.
_FALLBACK_INTENTS = (
    ("request_voice", re.compile(r"(打|回|来)(个)?电话|电话(联系|回访|回复)|回电|打我手机")),
    ("request_human", re.compile(r"人工|真人|客服人员|转接|接线员")),
    ("complain", re.compile(r"投诉")),
    ("goodbye", re.compile(r"再见|拜拜|88$|bye", re.I)),
    ("thank", re.compile(r"谢谢|多谢|感谢|谢啦|thx|thanks", re.I)),
    ("greet", re.compile(r"^(你好|您好|在吗|hi|hello|哈喽)", re.I)),
    ("feedback_negative", re.compile(r"没用|不对|没解决|还是不行")),
)


@dataclass
class Begun:
    """What the first transaction established about an inbound message."""

    inbound_id: int
    conversation_id: int
    public_id: str
    status: str
    elderly: bool
    failure_streak: int
    last_kb_id: str | None
    last_kb_title: str | None
    # The proactive notice waiting for this customer's confirm / decline, if any (from our database).
    pending_notice: str | None = None
    # The knowledge categories the bot's previous turn was about (its answer, or the choices it offered).
    topic: frozenset[str] = frozenset()


@dataclass
class Outcome:
    replies: list[Reply]
    handoff: HandoffInfo | None = None
    reset_streak: bool = False
    failure: bool = False
    tracker_events: list[dict[str, Any]] = field(default_factory=list)
    # helpful | unhelpful: recorded on the last answer when the gateway itself (not Rasa) took the feedback.
    feedback: str | None = None
    # confirm | decline: the gateway records the customer's answer to a notice itself (Rasa unavailable).
    notice_decision: str | None = None


class _GroupCommit(Generic[T]):
    """Messages submitted while a write runs are written together by the next one (group commit).

    `write` takes a batch and returns, per message, its result or the exception that message met; it runs
    on `executor` (a thread of its own) or, without one, in the shared threadpool.
    """

    def __init__(
        self,
        write: Callable[[list[InboundMessage]], list[T | Exception]],
        *,
        batch: int,
        executor: ThreadPoolExecutor | None = None,
    ) -> None:
        self._write = write
        self._batch = batch
        self._executor = executor
        self._queue: list[tuple[InboundMessage, asyncio.Future[T]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, message: InboundMessage) -> T:
        """The message's result once the batch it joined is written."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append((message, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[: self._batch], self._queue[self._batch :]
            messages = [message for message, _ in batch]
            results: list[T | Exception]
            try:
                if self._executor is None:
                    results = await run_in_threadpool(self._write, messages)
                else:
                    results = await asyncio.get_running_loop().run_in_executor(self._executor, self._write, messages)
            except Exception as exc:
                results = [exc] * len(batch)
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)


class ConversationEngine:
    """Every channel's inbound messages, one at a time per sender."""

    def __init__(
        self,
        *,
        session_factory: sessionmaker[Session],
        index: Callable[[], LiveIndex | None],
        rasa: RasaClient | None,
        settings: GatewaySettings,
        rasa_ready: Callable[[], bool] = lambda: True,
        clock: Callable[[], datetime] = utcnow,
    ):
        self._factory = session_factory
        # Reads that must not queue behind (or hold up) the writers storing inbound messages.
        self._reads = read_only_factory(session_factory)
        self._index = index
        self._rasa = rasa
        self._rasa_ready = rasa_ready
        self._settings = settings
        self._clock = clock
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._tracker_writes: dict[str, asyncio.Task[None]] = {}
        self._answering = asyncio.Semaphore(settings.max_concurrent_turns)
        self._storing = 0
        self._stores_done = asyncio.Event()
        self._stores_done.set()
        # Looked up at each write (not bound here), so a test can slow one down.
        self._stores = _GroupCommit(lambda batch: self._store_many(batch), batch=STORE_BATCH)
        # The inbox writer has its own thread: acknowledgements must not queue for the shared threadpool's
        # tokens behind answering work (searches, reply writes).
        self._intake = _GroupCommit(
            lambda batch: self._inbox_many(batch),
            batch=INTAKE_BATCH,
            executor=ThreadPoolExecutor(max_workers=1, thread_name_prefix="kefu-inbox"),
        )

    async def handle(self, message: InboundMessage, /, *, stored: Callable[[], None] | None = None) -> InboundResult:
        """Persist the message (then call `stored`), answer it (or pass it to the human), persist the replies."""
        if message.message_id is None:
            # The inbox row and the stored message must share one key (a crash between them is recovered by it).
            message = message.model_copy(update={"message_id": uuid.uuid4().hex})
        if stored is not None:
            # Durable in the inbox before anything else, and before the previous turn of this sender is over:
            # the channel may acknowledge now, whatever the rest costs. A channel that answers in the same
            # exchange (REST, the widget) waits for the proper store anyway: one write less per turn.
            await self._intake.submit(message)
            stored()
        lock = self._locks.get(f"{message.channel}:{message.sender}")
        if lock is None:
            lock = asyncio.Lock()
            self._locks[f"{message.channel}:{message.sender}"] = lock
        key = f"{message.channel}:{message.sender}"
        async with lock:
            # The previous turn's tracker write must land before this turn reads Rasa's state.
            pending = self._tracker_writes.get(key)
            if pending is not None:
                await asyncio.wait([pending])
            self._storing += 1
            self._stores_done.clear()
            try:
                inbound_id, replay = await self._stores.submit(message)
            finally:
                self._storing -= 1
                if not self._storing:
                    self._stores_done.set()
            if replay is not None:
                return replay
            # Answering is CPU-bound threadpool work: unbounded, it starves the event loop and every channel's
            # acknowledgements queue behind it. Storing comes first (a burst is stored, and can be acknowledged,
            # before its answers take the CPU), for a moment at most so that answers are never starved.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stores_done.wait(), timeout=STORE_PRIORITY_S)
            async with self._answering:
                begun = await run_in_threadpool(self._begin, inbound_id)
                try:
                    outcome = await self._respond(begun, message.text.strip()[:MAX_TEXT])
                except Exception:
                    log.exception("answering message %s failed; it stays stored for a human", begun.inbound_id)
                    outcome = Outcome(replies=[Reply(kind="info", text=texts.ERROR)])
                result = await run_in_threadpool(self._finish, begun, outcome)
            if outcome.tracker_events and self._rasa is not None and self._rasa_ready():
                # Written after the customer has the answer: the KB turn does not wait on Rasa's tracker.
                task = asyncio.create_task(self._write_tracker(begun.public_id, outcome.tracker_events))
                self._tracker_writes[key] = task
                task.add_done_callback(functools.partial(self._forget_write, key))
            return result

    def _forget_write(self, key: str, done: "asyncio.Task[None]") -> None:
        if self._tracker_writes.get(key) is done:
            del self._tracker_writes[key]

    async def _write_tracker(self, public_id: str, events: list[dict[str, Any]]) -> None:
        assert self._rasa is not None
        try:
            await self._rasa.append_events(public_id, events)
        except RasaUnavailable as exc:
            log.warning("could not write a KB turn into Rasa's tracker: %s", exc)

    async def outbound(self, channel: str, sender: str, after_id: int) -> list[Reply]:
        """Messages the customer was sent after a message id, across their conversations on a channel."""
        return await run_in_threadpool(self._outbound, channel, sender, after_id)

    def _outbound(self, channel: str, sender: str, after_id: int) -> list[Reply]:
        with self._reads() as db:
            messages = service.get_sent(db_session=db, channel=channel, source_id=sender, after_id=after_id)
            return [reply_from_message(m) for m in messages]

    # -- transactions ---------------------------------------------------------------------------

    def _inbox_many(self, batch: list[InboundMessage]) -> list[Exception | None]:
        """Insert a burst into the inbox in one statement; if it fails, each message is tried alone (savepoints)."""
        try:
            with session_scope(self._factory) as db:
                service.add_to_inbox(db_session=db, messages=batch, received_at=self._clock())
            return [None] * len(batch)
        except Exception:
            if len(batch) == 1:
                raise
        results: list[Exception | None] = []
        with session_scope(self._factory) as db:
            for message in batch:
                try:
                    with db.begin_nested():
                        service.add_to_inbox(db_session=db, messages=[message], received_at=self._clock())
                    results.append(None)
                except Exception as exc:
                    log.exception("message from %s:%s could not be received", message.channel, message.sender)
                    results.append(exc)
        return results

    async def recover(self, *, older_than_s: float) -> list[tuple[InboundMessage, InboundResult]]:
        """Store and answer what a crash left in the inbox (received, acknowledged, never stored)."""
        left = await run_in_threadpool(self._inbox_left, older_than_s)
        results = []
        for message in left:
            try:
                results.append((message, await self.handle(message)))
            except Exception:
                log.exception(
                    "recovering message %s from %s failed; it stays in the inbox", message.message_id, message.channel
                )
        return results

    def _inbox_left(self, older_than_s: float) -> list[InboundMessage]:
        before = self._clock() - timedelta(seconds=older_than_s)
        with self._reads() as db:
            return [
                InboundMessage.model_validate(payload) for payload in service.get_inbox(db_session=db, before=before)
            ]

    def _store_many(self, batch: list[InboundMessage]) -> list[tuple[int, InboundResult | None] | Exception]:
        """Store a burst in one transaction; if any message fails, each is stored again alone (savepoints)."""
        try:
            with session_scope(self._factory) as db:
                return [self._store(db, message) for message in batch]
        except Exception:
            if len(batch) == 1:
                raise
        results: list[tuple[int, InboundResult | None] | Exception] = []
        with session_scope(self._factory) as db:
            for message in batch:
                try:
                    with db.begin_nested():
                        results.append(self._store(db, message))
                except Exception as exc:
                    log.exception("message from %s:%s could not be stored", message.channel, message.sender)
                    results.append(exc)
        return results

    def _store(self, db: Session, message: InboundMessage) -> tuple[int, InboundResult | None]:
        """Store the customer's message (idempotent on channel + source id): its id, or the earlier answers."""
        source_id = message.message_id
        assert source_id is not None  # handle() gives every message a key
        service.remove_from_inbox(db_session=db, channel=message.channel, source_id=source_id)
        inbound = service.get_inbound(db_session=db, channel=message.channel, source_id=source_id)
        if inbound is not None:
            if inbound.processed_at is None:
                return inbound.id, None  # stored by a turn that never finished: answer it now
            conversation = db.get(Conversation, inbound.conversation_id)
            assert conversation is not None
            replies = service.get_replies(db_session=db, inbound_id=inbound.id)
            return inbound.id, _result(conversation, replies, True, inbound_id=inbound.id)
        contact = service.get_or_create_contact(db_session=db, channel=message.channel, source_id=message.sender)
        _apply_metadata(contact, message.metadata)
        conversation = service.get_or_open(db_session=db, contact_id=contact.id, channel=message.channel)
        inbound = service.add_message(
            db_session=db,
            conversation=conversation,
            direction=Direction.IN,
            sender_type=SenderType.CUSTOMER,
            text=message.text,
            source_id=source_id,
        )
        return inbound.id, None

    def _begin(self, inbound_id: int) -> Begun:
        """What answering needs to know about the stored message's conversation."""
        with self._reads() as db:
            inbound = db.get(Message, inbound_id)
            assert inbound is not None
            conversation = db.get(Conversation, inbound.conversation_id)
            assert conversation is not None
            return self._snapshot(db, conversation, inbound)

    def _snapshot(self, db: Session, conversation: Conversation, inbound: Message) -> Begun:
        last = service.get_last_answer(db_session=db, conversation_id=conversation.id)
        pending = notice_service.get_open_decision(db_session=db, contact_id=conversation.contact_id)
        last_entry = (
            kb_service.get_by_external_id(db_session=db, external_id=last.kb_entry_id)
            if last and last.kb_entry_id
            else None
        )
        topic: set[str] = set()
        previous = service.get_last_kb_reply(db_session=db, conversation_id=conversation.id, before_id=inbound.id)
        if previous is not None:
            shown = [previous.kb_entry_id] if previous.kb_entry_id else _option_kb_ids(previous)
            for kb_id in shown:
                entry = kb_service.get_by_external_id(db_session=db, external_id=kb_id)
                if entry is not None:
                    topic.add(entry.category)
        return Begun(
            topic=frozenset(topic),
            inbound_id=inbound.id,
            conversation_id=conversation.id,
            public_id=conversation.public_id,
            status=conversation.status,
            elderly=conversation.contact.elderly,
            failure_streak=conversation.failure_streak,
            last_kb_id=last.kb_entry_id if last else None,
            last_kb_title=last_entry.title if last_entry else None,
            pending_notice=pending.name if pending is not None else None,
        )

    def _finish(self, begun: Begun, outcome: Outcome) -> InboundResult:
        with session_scope(self._factory) as db:
            conversation = db.get(Conversation, begun.conversation_id)
            inbound = db.get(Message, begun.inbound_id)
            assert conversation is not None and inbound is not None
            replies = list(outcome.replies)
            if outcome.handoff is not None:
                replies = self._apply_handoff(db, conversation, outcome.handoff, replies)
            if outcome.notice_decision is not None:
                replies = [*replies, self._decide_notice(db, conversation, outcome.notice_decision)]
            if outcome.reset_streak:
                conversation.failure_streak = 0
            elif outcome.failure:
                conversation.failure_streak += 1
            stored = [
                service.add_message(
                    db_session=db,
                    conversation=conversation,
                    direction=Direction.OUT,
                    sender_type=SenderType.BOT,
                    text=reply.text,
                    kind=reply.kind,
                    reply_to_id=inbound.id,
                    kb_entry_id=reply.kb_id,
                    payload=_payload(reply),
                )
                for reply in replies
            ]
            if outcome.feedback is not None:
                service.record_feedback(db_session=db, conversation=conversation, kind=outcome.feedback)
            service.mark_processed(db_session=db, message=inbound)
            return _result(conversation, stored, False, inbound_id=inbound.id)

    def _decide_notice(self, db: Session, conversation: Conversation, decision: str) -> Reply:
        notice = notice_service.get_open_decision(db_session=db, contact_id=conversation.contact_id)
        if notice is None:
            return Reply(kind="info", text=texts.NOTICE_NONE)
        notice = notice_flows.decide(db_session=db, notice=notice, decision=decision, billing=DemoBilling(db))
        if notice.status == "confirmed":
            return Reply(kind="notice_confirmed", text=texts.NOTICE_CONFIRMED)
        if notice.status == "declined":
            return Reply(kind="notice_declined", text=texts.NOTICE_DECLINED)
        return Reply(kind="info", text=texts.NOTICE_NONE)

    def _apply_handoff(
        self, db: Session, conversation: Conversation, handoff: HandoffInfo, replies: list[Reply]
    ) -> list[Reply]:
        tier = Tier(handoff.tier)
        try:
            ahead = flows.hand_off(
                db_session=db,
                conversation=conversation,
                tier=tier,
                reason=_reason(handoff.reason),
                priority=Priority(handoff.priority),
            )
        except flows.IllegalTransition as exc:
            log.warning("handoff ignored: %s", exc)
            return replies
        if tier is Tier.HUMAN_TEXT:
            queued = texts.QUEUED_NEXT if ahead == 0 else texts.QUEUED.format(ahead=ahead)
            # The queue position is the gateway's knowledge: it replaces whatever Rasa said.
            return [r for r in replies if r.kind != "handoff"] + [Reply(kind="handoff", text=queued, handoff=handoff)]
        return replies

    # -- answering ------------------------------------------------------------------------------

    async def _respond(self, begun: Begun, text: str) -> Outcome:
        if begun.status in HUMAN_HOLDS:
            # A human holds the conversation: the bot stays silent; the agent sees the message.
            return Outcome(replies=[])
        if begun.elderly and begun.status == Status.BOT.value:
            handoff = HandoffInfo(tier="human_text", reason=HandoffReason.ELDERLY.value, priority="high")
            return Outcome(replies=[Reply(kind="handoff", text="", handoff=handoff)], handoff=handoff)
        chosen = CHOOSE_KB.match(text)
        if chosen:
            return await self._chosen(chosen.group(1), text)

        rasa_up = self._rasa is not None and self._rasa_ready()
        kb_task = asyncio.create_task(self._search(text, begun))
        nlu = routing.Nlu("nlu_fallback", 0.0)
        state = routing.DialogueState(pending_notice=begun.pending_notice is not None, last_kb_id=begun.last_kb_id)
        if rasa_up:
            assert self._rasa is not None
            try:
                parsed, tracker = await asyncio.gather(self._rasa.parse(text), self._rasa.tracker(begun.public_id))
                nlu = routing.Nlu.from_parse(parsed)
                state = routing.DialogueState.from_tracker(tracker)
                state = routing.DialogueState(
                    state.active_loop,
                    state.pending_notice or begun.pending_notice is not None,
                    state.offered_human,
                    state.last_kb_id or begun.last_kb_id,
                )
            except RasaUnavailable as exc:
                log.warning("Rasa unavailable, degrading: %s", exc)
                rasa_up = False
        else:
            nlu = _fallback_nlu(text)
        alone, follow_up = await kb_task
        route = routing.decide(
            text=text,
            nlu=nlu,
            kb_tier=alone.tier if alone else "none",
            kb_top=alone.hits[0].external_id if alone and alone.hits else None,
            follow_up_tier=follow_up.tier if follow_up else None,
            state=state,
            command_min=self._settings.command_min_confidence,
        )
        kb = _prefer(alone, follow_up, text)
        if route is routing.Route.KB and kb is not None:
            if kb.tier == "suggest" and begun.topic:
                kb = await run_in_threadpool(self._on_topic, kb, follow_up, begun.topic)
            return await self._kb_outcome(kb, text)
        if route is routing.Route.CLARIFY:
            # Rasa's own intent syntax: its clarify flow (counting failures, offering a human at the
            # second) runs without acting on the reading the router did not trust.
            text, nlu = "/nlu_fallback", routing.Nlu("nlu_fallback", 0.0)
        if rasa_up:
            return await self._via_rasa(begun, text, kb)
        return self._degraded(begun, nlu)

    async def _search(self, text: str, begun: Begun) -> tuple[SearchOutcome | None, SearchOutcome | None]:
        """The question alone, and (for a short follow-up) read in the light of the previous answer."""
        live = self._index()
        if live is None:
            return None, None
        try:
            alone = await run_in_threadpool(kb_service.search, index=live.index, query=text, audience="customer")
        except ValueError:
            return None, None
        if not begun.last_kb_title or len(text) > FOLLOW_UP_MAX_CHARS:
            return alone, None
        if alone.tier == "answer" and not _ELLIPTIC.search(text):
            return alone, None
        # 那一天多少钱 after a 港澳日套餐 answer means the day pass: search with the previous question too.
        follow_up = await run_in_threadpool(
            kb_service.search, index=live.index, query=f"{begun.last_kb_title} {text}", audience="customer"
        )
        if _echo(follow_up, alone, begun.last_kb_id, text):
            return alone, None
        return alone, follow_up

    async def _kb_outcome(self, kb: SearchOutcome, text: str) -> Outcome:
        shown = kb.hits[:1] if kb.tier == "answer" else kb.hits
        entries = await run_in_threadpool(self._entries, [h.entry_id for h in shown])
        if kb.tier == "answer" and shown[0].entry_id in entries:
            entry = entries[shown[0].entry_id]
            return self._answer(entry.external_id, entry.title, entry.answer, text)
        options = [
            ReplyOption(title=entries[h.entry_id].title, payload=f'/choose_kb{{"kb_id": "{h.external_id}"}}')
            for h in shown
            if h.entry_id in entries
        ]
        reply = Reply(kind="suggest", text=texts.SUGGEST, options=options)
        return Outcome(replies=[reply], tracker_events=_kb_turn_events(text, reply, None))

    def _on_topic(self, kb: SearchOutcome, follow_up: SearchOutcome | None, topic: frozenset[str]) -> SearchOutcome:
        """Choices, but the conversation has a topic: the one choice that stays on it is the answer.

        A customer who just read about data add-ons and asks 那个一天2块的怎么扣钱 means the data day pass,
        not a billing dispute, though the words alone fit both; a human agent reads it the same way. With
        several choices on the topic, the follow-up reading (previous question + this one) decides if it
        ranks one of them first with at least suggestion-level confidence.
        """
        entries = self._entries(
            [h.entry_id for h in kb.hits] + [h.entry_id for h in (follow_up.hits if follow_up else [])]
        )
        on_topic = [h for h in kb.hits if h.entry_id in entries and entries[h.entry_id].category in topic]
        if len(on_topic) == 1:
            return replace(kb, tier="answer", hits=[on_topic[0]])
        if follow_up is not None and follow_up.tier == "suggest" and follow_up.hits:
            first = follow_up.hits[0]
            if first.entry_id in entries and entries[first.entry_id].category in topic:
                return replace(follow_up, tier="answer", hits=[first])
        return kb

    def _entries(self, ids: list[int]) -> dict[int, Any]:
        with self._reads() as db:
            return kb_service.hydrate(db_session=db, entry_ids=ids)

    def _answer(self, kb_id: str, title: str, answer: str, text: str) -> Outcome:
        reply = Reply(
            kind="answer",
            text=answer,
            kb_id=kb_id,
            options=[
                ReplyOption(title="有用", payload="/feedback_positive"),
                ReplyOption(title="没用", payload="/feedback_negative"),
            ],
        )
        return Outcome(replies=[reply], reset_streak=True, tracker_events=_kb_turn_events(text, reply, kb_id))

    async def _chosen(self, raw: str, text: str) -> Outcome:
        try:
            kb_id = str(json.loads(raw)["kb_id"])
        except (ValueError, KeyError, TypeError):
            return Outcome(replies=[Reply(kind="clarify", text=texts.CLARIFY)], failure=True)
        entry = await run_in_threadpool(self._servable, kb_id)
        if entry is None:
            return Outcome(replies=[Reply(kind="clarify", text=texts.CLARIFY)], failure=True)
        return self._answer(entry.external_id, entry.title, entry.answer, text)

    def _servable(self, kb_id: str) -> Any:
        # A suggestion button's payload comes back from the customer: check it as untrusted input.
        with self._reads() as db:
            return kb_service.get_servable(db_session=db, external_id=kb_id, now=self._clock())

    async def _via_rasa(self, begun: Begun, text: str, kb: SearchOutcome | None) -> Outcome:
        assert self._rasa is not None
        metadata = {
            "kb": {
                "tier": kb.tier if kb else "none",
                "hits": [{"id": h.external_id, "confidence": round(h.confidence, 4)} for h in (kb.hits if kb else [])][
                    :4
                ]
                if kb and kb.tier != "none"
                else [],
            },
            "channel": "gateway",
            "now": self._clock().astimezone(self._settings.zone).isoformat(),
            "conversation_id": begun.public_id,
        }
        try:
            messages = await self._rasa.send(begun.public_id, text, metadata)
        except RasaUnavailable as exc:
            log.warning("Rasa failed mid-turn, degrading: %s", exc)
            return self._degraded(begun, _fallback_nlu(text))
        replies = [_reply_from_rasa(m) for m in messages]
        replies = [r for r in replies if r.text or r.handoff]
        handoff = next((r.handoff for r in replies if r.handoff), None)
        failure = any(r.kind in ("clarify",) for r in replies)
        return Outcome(replies=replies, handoff=handoff, failure=failure)

    def _degraded(self, begun: Begun, nlu: routing.Nlu) -> Outcome:
        intent = nlu.intent
        if intent in ("request_human", "request_voice", "complain"):
            reason = HandoffReason.COMPLAINT if intent == "complain" else HandoffReason.CUSTOMER_REQUEST
            handoff = HandoffInfo(
                tier="human_text", reason=reason.value, priority="high" if intent == "complain" else "normal"
            )
            return Outcome(
                replies=[Reply(kind="handoff", text=texts.DEGRADED_QUEUED, handoff=handoff)], handoff=handoff
            )
        if intent in ("notice_confirm", "notice_decline") and begun.pending_notice:
            decision = "confirm" if intent == "notice_confirm" else "decline"
            return Outcome(replies=[], notice_decision=decision)
        if intent == "greet":
            return Outcome(replies=[Reply(kind="greet", text=texts.GREET)])
        if intent == "thank":
            return Outcome(replies=[Reply(kind="thanks", text=texts.THANKS)])
        if intent == "goodbye":
            return Outcome(replies=[Reply(kind="goodbye", text=texts.GOODBYE)])
        if intent == "feedback_negative" and begun.last_kb_id:
            return Outcome(
                replies=[Reply(kind="feedback_recorded", text=texts.FEEDBACK_SORRY)], failure=True, feedback="unhelpful"
            )
        if intent == "feedback_positive" and begun.last_kb_id:
            return Outcome(
                replies=[Reply(kind="feedback_recorded", text=texts.FEEDBACK_THANKS)],
                reset_streak=True,
                feedback="helpful",
            )
        if begun.failure_streak >= 1:
            offer = [ReplyOption(title=texts.HANDOFF_OFFER, payload="/request_human")]
            return Outcome(replies=[Reply(kind="clarify", text=texts.CLARIFY_OFFER_HUMAN, options=offer)], failure=True)
        return Outcome(replies=[Reply(kind="clarify", text=texts.CLARIFY)], failure=True)


def _echo(follow_up: SearchOutcome, alone: SearchOutcome, last_kb_id: str | None, text: str) -> bool:
    """The follow-up reading only repeats the previous answer: the previous question in the query
    found itself, while the new question alone (not leaning on context) does not point there at all.
    抬头开错了能改吗 after the invoice-types answer asks something new."""
    if follow_up.tier == "none" or not follow_up.hits or follow_up.hits[0].external_id != last_kb_id:
        return False
    return not _ELLIPTIC.search(text) and all(hit.external_id != last_kb_id for hit in alone.hits)


def _prefer(alone: SearchOutcome | None, follow_up: SearchOutcome | None, text: str) -> SearchOutcome | None:
    """The follow-up reading wins when it answers and the question alone does not (or leans on context)."""
    if (
        follow_up is not None
        and follow_up.tier == "answer"
        and (alone is None or alone.tier != "answer" or _ELLIPTIC.search(text))
    ):
        return follow_up
    return alone


def _reason(value: str) -> HandoffReason:
    try:
        return HandoffReason(value)
    except ValueError:
        return HandoffReason.CUSTOMER_REQUEST


def _fallback_nlu(text: str) -> routing.Nlu:
    # A button's payload names its intent (Rasa's own `/intent` syntax): no guessing needed.
    payload = _PAYLOAD_INTENT.match(text)
    if payload:
        return routing.Nlu(payload.group(1), 1.0)
    for intent, pattern in _FALLBACK_INTENTS:
        if pattern.search(text):
            return routing.Nlu(intent, 0.9)
    return routing.Nlu("nlu_fallback", 0.0)


def _apply_metadata(contact: Any, metadata: dict[str, Any]) -> None:
    customer = metadata.get("customer") if isinstance(metadata.get("customer"), dict) else {}
    age = customer.get("age") if customer else None
    if isinstance(age, int) and age >= 65:
        contact.elderly = True
    if customer and isinstance(customer.get("name"), str):
        contact.display_name = customer["name"][:100]


def _reply_from_rasa(message: dict[str, Any]) -> Reply:
    custom = message.get("custom") if isinstance(message.get("custom"), dict) else None
    buttons = [
        ReplyOption(title=b.get("title", ""), payload=b.get("payload", "")) for b in message.get("buttons") or []
    ]
    if custom is None:
        return Reply(kind="info", text=str(message.get("text") or ""), options=buttons)
    kind = custom.get("kind", "info")
    if kind not in REPLY_KINDS:
        kind = "info"
    options = [ReplyOption(**o) for o in custom.get("options") or []] or buttons
    handoff = HandoffInfo(**custom["handoff"]) if isinstance(custom.get("handoff"), dict) else None
    return Reply(
        kind=kind,
        text=str(custom.get("text") or message.get("text") or ""),
        options=options,
        handoff=handoff,
        kb_id=custom.get("kb_id"),
    )


def _kb_turn_events(text: str, reply: Reply, kb_id: str | None) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = [
        {
            "event": "user",
            "text": text,
            "parse_data": {"text": text, "intent": {"name": "faq", "confidence": 1.0}, "entities": []},
        },
        {"event": "bot", "text": reply.text, "data": {"custom": {"kind": reply.kind, "kb_id": kb_id}}},
    ]
    if kb_id:
        events += [
            {"event": "slot", "name": "last_kb_id", "value": kb_id},
            {"event": "slot", "name": "failure_count", "value": 0},
            {"event": "slot", "name": "offered_human", "value": False},
        ]
    events.append({"event": "action", "name": "action_listen"})
    return events


def _payload(reply: Reply) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if reply.options:
        data["options"] = [o.model_dump() for o in reply.options]
    if reply.handoff:
        data["handoff"] = reply.handoff.model_dump()
    if reply.url:
        data["url"] = reply.url
    return data


def _option_kb_ids(message: Message) -> list[str]:
    """The entries a suggestion offered (from its `/choose_kb{"kb_id": …}` option payloads)."""
    ids = []
    for option in (message.payload or {}).get("options", []):
        chosen = CHOOSE_KB.match(str(option.get("payload", "")))
        if chosen:
            try:
                ids.append(str(json.loads(chosen.group(1))["kb_id"]))
            except (ValueError, KeyError, TypeError):
                continue
    return ids


def reply_from_message(m: Message) -> Reply:
    kind = m.kind if m.kind in REPLY_KINDS else "agent" if m.sender_type == SenderType.AGENT.value else "info"
    return Reply(
        text=m.text,
        kind=kind,  # type: ignore[arg-type]
        kb_id=m.kb_entry_id,
        options=[ReplyOption(**o) for o in (m.payload or {}).get("options", [])],
        handoff=HandoffInfo(**m.payload["handoff"]) if (m.payload or {}).get("handoff") else None,
        message_id=m.id,
        url=(m.payload or {}).get("url"),
    )


def _result(
    conversation: Conversation, messages: list[Message], replayed: bool, *, inbound_id: int | None = None
) -> InboundResult:
    replies = [reply_from_message(m) for m in messages]
    return InboundResult(
        conversation_id=conversation.public_id,
        status=conversation.status,
        replies=replies,
        replayed=replayed,
        message_id=inbound_id,
    )
