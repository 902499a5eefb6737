"""The support desk service: ``python -m support_desk`` (port 8080 by default)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import AsyncIterator, Optional

from aiohttp import web

from support_desk.accounts import ensure_first_agent
from support_desk.api import RELAY, SETTINGS, STORE, bearer_auth, json_errors, routes
from support_desk.channel_api import routes as channel_routes
from support_desk.chat import routes as chat_routes
from support_desk.config import DeskSettings, load_settings
from support_desk.console import setup_console
from support_desk.db import create_engine, migrate
from support_desk.events_in import routes as rasa_event_routes
from support_desk.incident_api import BOARD, NOTICES, routes as incident_routes
from support_desk import incident_input
from support_desk.incident_console import routes as incident_console_routes
from support_desk.knowledge_console import KNOWLEDGE, routes as knowledge_console_routes
from support_desk.knowledge_edit import KnowledgeFiles
from support_desk.incident_notices import IncidentNotices
from support_desk.incidents import IncidentBoard
from support_desk.live_bus import RedisBus
from support_desk.live_stream import routes as live_routes
from support_desk.nlu_inbox import INBOX, NluInbox
from support_desk.nlu_console import routes as nlu_routes
from support_desk.openapi import OPENAPI_ROUTE
from support_desk.rasa_client import RasaClient
from support_desk.relay import RasaRelay
from support_desk.store import DeskStore
from support_desk.training import TRAINING, TrainingJobs
from support_desk.training_console import api_routes as training_api_routes, console_routes as training_console_routes

logger = logging.getLogger(__name__)


def create_app(settings: DeskSettings, run_migrations: bool = True) -> web.Application:
    """The aiohttp application; the database is migrated and opened on startup."""
    app = web.Application(middlewares=[json_errors, bearer_auth], client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    app.router.add_routes(routes)
    app.router.add_routes(incident_routes)
    app.router.add_routes(channel_routes)
    app.router.add_routes(training_api_routes)
    app.router.add_routes([OPENAPI_ROUTE])
    if not settings.secret_key:
        raise SystemExit("DESK_SECRET_KEY is not set (make run writes it into .env)")
    setup_console(app, settings.secret_key)
    app.router.add_routes(incident_console_routes)
    app.router.add_routes(knowledge_console_routes)
    # The files the desk's own incident forms read, and the action server too.
    app[KNOWLEDGE] = KnowledgeFiles(incident_input.TERMINALS_FILE, incident_input.REGIONS_FILE)
    app.router.add_routes(training_console_routes)
    app.router.add_routes(chat_routes)
    app.router.add_routes(rasa_event_routes)
    app.router.add_routes(live_routes)
    app.router.add_routes(nlu_routes)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        if run_migrations:
            await asyncio.get_running_loop().run_in_executor(None, migrate, settings.database_url)
        engine = create_engine(settings.database_url)
        store = DeskStore(engine)
        app[STORE] = store
        app[INBOX] = NluInbox(store, settings)
        rasa = RasaClient(settings.rasa_url, settings.rasa_token)
        app[RELAY] = RasaRelay(store, rasa)
        app[BOARD] = IncidentBoard(store)
        app[TRAINING] = TrainingJobs(store, settings)
        # A training this desk (or another of this host, now gone) left running failed.
        await app[TRAINING].recover()
        app[NOTICES] = IncidentNotices(app[BOARD], rasa, settings.notice_concurrency, settings.notice_recheck_seconds)
        bus = RedisBus(store.hub, settings.redis_url) if settings.redis_url else None
        if bus is not None:
            await bus.start()
        password = await ensure_first_agent(store)
        if password:
            print(f"First run: agent 'admin' created, password (shown once): {password}", flush=True)
        retry = asyncio.create_task(app[RELAY].run_forever(settings.delivery_retry_seconds))
        # Its first round resumes the notices of an incident closed before a restart.
        notices = asyncio.create_task(app[NOTICES].run_forever(settings.delivery_retry_seconds))
        yield
        await app[TRAINING].close()
        for task in (retry, notices):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await app[RELAY].rasa.close()
        if bus is not None:
            await bus.close()
        await engine.dispose()

    async def end_streams(app: web.Application) -> None:
        # Open console streams would hold the shutdown for its whole timeout.
        if STORE in app:
            app[STORE].hub.drop_all()

    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(end_streams)  # type: ignore[arg-type]  # aiohttp 3.8's Signal type is one level off
    return app


def main(settings: Optional[DeskSettings] = None) -> None:
    """Run the desk until interrupted."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = settings or load_settings()
    if not settings.api_token:
        raise SystemExit("DESK_API_TOKEN is not set (make run writes it into .env)")
    web.run_app(create_app(settings), host=settings.host, port=settings.port, print=None)


if __name__ == "__main__":
    main()
