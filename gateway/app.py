"""The FastAPI application factory: builds engines, the index and routers inside the lifespan."""

import asyncio
import gc
import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress

from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from common.channels import InboundMessage, InboundResult
from common.db import make_engine, make_session_factory
from common.logging import configure_logging
from common.settings import CommonSettings
from connectors.outbound import sms
from connectors.rest import channel as rest_channel
from connectors.wechat import channel as wechat_channel
from connectors.wechat.settings import WechatSettings
from gateway import health, webchat
from gateway.admin import views as admin_views
from gateway.agent import pages as agent_pages
from gateway.agent import views as agent_views
from gateway.clients.rasa import RasaClient
from gateway.conversation import views as internal_views
from gateway.conversation.engine import ConversationEngine
from gateway.delivery import Delivery
from gateway.notices import views as notice_views
from gateway.notices.dispatcher import Dispatcher
from gateway.notices.settings import NoticeSettings, events_api_key
from gateway.settings import GatewaySettings
from knowledge import views as knowledge_views
from knowledge.flows import LiveIndex, install_live_sync
from knowledge.retrieval import Embedder, Normaliser, RetrievalConfig, make_embedder
from knowledge.settings import KnowledgeSettings

log = logging.getLogger(__name__)


def retrieval_config(kb_settings: KnowledgeSettings) -> RetrievalConfig:
    """The engine's config with the operator's overrides from settings."""
    overrides: dict[str, object] = {"embedder": kb_settings.embedder}
    if kb_settings.answer_threshold is not None:
        overrides["answer_threshold"] = kb_settings.answer_threshold
    if kb_settings.suggest_threshold is not None:
        overrides["suggest_threshold"] = kb_settings.suggest_threshold
    return RetrievalConfig.model_validate(overrides)


def open_live_index(
    *,
    common: CommonSettings,
    kb_settings: KnowledgeSettings,
    session_factory: sessionmaker[Session],
    embedder: Embedder | None = None,
) -> LiveIndex:
    """Load or rebuild the index for the current database (blocking; call from a thread)."""
    synonyms = Normaliser.load_synonyms(kb_settings.synonyms_in_force(common.var_dir))
    return LiveIndex.open(
        session_factory=session_factory,
        directory=kb_settings.index_dir or common.var_dir / "index",
        embedder=embedder or make_embedder(kb_settings.embedder),
        config=retrieval_config(kb_settings),
        synonyms=synonyms,
    )


def create_app(
    *,
    common: CommonSettings | None = None,
    kb_settings: KnowledgeSettings | None = None,
    gateway_settings: GatewaySettings | None = None,
    session_factory: sessionmaker[Session] | None = None,
    embedder: Embedder | None = None,
    wechat_settings: WechatSettings | None = None,
    notice_settings: NoticeSettings | None = None,
) -> FastAPI:
    """A gateway app; settings default to the environment and are validated here, at start-up.

    Tests inject a session factory (bound to a rolled-back transaction) and an already loaded embedder.
    """
    common = common or CommonSettings()
    kb_settings = kb_settings or KnowledgeSettings()
    gateway_settings = gateway_settings or GatewaySettings()
    wechat_settings = wechat_settings or WechatSettings()
    notice_settings = notice_settings or NoticeSettings()
    if notice_settings.api_key is None:
        notice_settings = notice_settings.model_copy(update={"api_key": events_api_key(common.var_dir)})

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(common.log_level, json_lines=common.log_json)
        owns_engine = session_factory is None
        factory = session_factory or make_session_factory(make_engine(common.resolved_database_url))
        engine = factory.kw["bind"]
        app.state.engine = engine
        app.state.session_factory = factory
        app.state.live_index = None
        app.state.index_error = None
        app.state.index_ready = threading.Event()
        app.state.gateway_settings = gateway_settings
        await run_in_threadpool(_check_schema, factory)
        rasa = RasaClient(gateway_settings.rasa_url, timeout=gateway_settings.rasa_timeout_s)
        app.state.rasa = rasa
        app.state.rasa_state = "loading"
        app.state.engine_ = ConversationEngine(
            session_factory=factory,
            index=lambda: app.state.live_index if app.state.index_ready.is_set() else None,
            rasa=rasa,
            settings=gateway_settings,
            rasa_ready=lambda: app.state.rasa_state == "ok",
        )

        app.state.notices = Dispatcher(
            session_factory=factory,
            settings=notice_settings,
            delivery=app.state.delivery,
            rasa=rasa,
            rasa_ready=lambda: app.state.rasa_state == "ok",
            zone=gateway_settings.zone,
        )

        def build() -> None:
            try:
                live = open_live_index(
                    common=common, kb_settings=kb_settings, session_factory=factory, embedder=embedder
                )
                install_live_sync(factory, live)
                app.state.live_index = live
                app.state.index_ready.set()
                log.info("knowledge index ready: %d entries", len(live.index))
                # What start-up built (index, dictionaries, models) lives as long as the process: keep the
                # cyclic GC from walking it again and again. A full pass over it stalled every request in
                # flight for ~135 ms, twice a minute under load (WeChat p95 45 ms -> 150-200 ms in those runs).
                gc.collect()
                gc.freeze()
            except Exception as exc:
                app.state.index_error = str(exc)
                log.exception("knowledge index failed to build")

        # The app answers (health, 503 on search) while a large index builds.
        await app.state.webchat.start()
        builder = threading.Thread(target=build, name="kb-index-build", daemon=True)
        builder.start()
        saver = asyncio.create_task(_save_periodically(app, kb_settings, gateway_settings.index_save_interval_s))
        watcher = asyncio.create_task(_watch_rasa(app, rasa))
        tasks = [saver, watcher]
        # An injected factory (tests) is one connection: no background thread may share it with requests.
        if notice_settings.poll_s > 0 and owns_engine:
            tasks.append(asyncio.create_task(app.state.notices.run()))
        if owns_engine:
            tasks.append(asyncio.create_task(_recover_inbox(app)))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task
            await rasa.close()
            await app.state.webchat.stop()
            if app.state.wechat is not None:
                await app.state.wechat.aclose()
            await run_in_threadpool(builder.join)
            await run_in_threadpool(_save_now, app, kb_settings)
            if owns_engine:
                engine.dispose()

    app = FastAPI(
        title="Kefu 客服",
        version="0.1.0",
        description="Self-hosted, multi-tier self-service customer service.",
        lifespan=lifespan,
    )
    # Channels register their push senders here while routers are built (see gateway/delivery.py).
    app.state.delivery = Delivery()
    app.state.notice_settings = notice_settings
    # No SMS gateway here: the demo records what would be sent (the operator plugs in its own gateway).
    app.state.sms = sms.RecordingSms(common.var_dir / "outbox" / "sms.jsonl")
    app.state.delivery.register(sms.CHANNEL, sms.SmsSender(app.state.sms))
    app.state.common = common
    app.state.kb_settings = kb_settings
    app.include_router(health.router)
    app.include_router(knowledge_views.router)

    async def handle(message: InboundMessage, /, *, stored: Callable[[], None] | None = None) -> InboundResult:
        # The engine is built in the lifespan; channels are wired before it exists.
        engine: ConversationEngine = app.state.engine_
        return await engine.handle(message, stored=stored)

    app.include_router(
        rest_channel.make_router(
            handle,
            lambda channel, sender, after: app.state.engine_.outbound(channel, sender, after),
        )
    )
    app.state.webchat = webchat.install(app, common, handle)
    app.state.wechat = wechat_channel.install(app, handle, settings=wechat_settings, redis_url=common.redis_url)
    app.include_router(agent_views.router)
    app.include_router(agent_pages.router)
    app.include_router(admin_views.router)
    app.include_router(admin_views.pages)
    app.include_router(internal_views.router)
    app.include_router(notice_views.router)
    return app


# Rasa takes about a minute to load its model; until it answers, the gateway degrades instead of waiting.
RASA_POLL_S = 2.0
RASA_GRACE_S = 300.0
# An inbox row this old is no live turn's (storing takes well under a second): a crash left it.
INBOX_RECOVER_AFTER_S = 30.0


async def _watch_rasa(app: FastAPI, rasa: RasaClient) -> None:
    started = asyncio.get_running_loop().time()
    while True:
        ok = await rasa.ready()
        if ok:
            app.state.rasa_state = "ok"
        elif app.state.rasa_state == "ok" or asyncio.get_running_loop().time() - started > RASA_GRACE_S:
            app.state.rasa_state = "down"
        await asyncio.sleep(RASA_POLL_S if not ok else RASA_POLL_S * 5)


def _check_schema(factory: sessionmaker[Session]) -> None:
    with factory() as db_session:
        try:
            db_session.execute(text("SELECT 1 FROM kb_entry LIMIT 1"))
        except Exception as exc:
            raise RuntimeError("the database has no Kefu schema: run `kefu db upgrade` first") from exc


async def _recover_inbox(app: FastAPI) -> None:
    """Answer what a crash left acknowledged but unstored, once the knowledge base can answer it."""
    while not app.state.index_ready.is_set() and app.state.index_error is None:
        await asyncio.sleep(1.0)
    while True:
        try:
            for message, result in await app.state.engine_.recover(older_than_s=INBOX_RECOVER_AFTER_S):
                log.warning("recovered message %s from %s:%s", message.message_id, message.channel, message.sender)
                if not result.replayed:
                    await app.state.delivery.deliver(message.channel, message.sender, result.replies)
        except Exception:
            log.exception("recovering the inbox failed; will retry")
        await asyncio.sleep(INBOX_RECOVER_AFTER_S)


async def _save_periodically(app: FastAPI, kb_settings: KnowledgeSettings, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await run_in_threadpool(_save_now, app, kb_settings)
        except Exception:
            log.exception("saving the knowledge index failed; will retry")


def _save_now(app: FastAPI, kb_settings: KnowledgeSettings) -> None:
    live: LiveIndex | None = app.state.live_index
    if live is not None:
        live.save_if_dirty(
            session_factory=app.state.session_factory,
            synonyms=Normaliser.load_synonyms(kb_settings.synonyms_in_force(app.state.common.var_dir)),
        )
