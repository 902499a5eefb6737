"""The console's knowledge page: operators edit the terminal models and the merchant-number
prefixes of the region table (``support_desk/knowledge_edit.py``); every edit is audited
with what it changed, and the bot's next answer uses it (no restart)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from support_desk.api import STORE
from support_desk.console import agent_only, flash, page, word
from support_desk.incident_console import actor, operators_only
from support_desk.audit import audit, audit_trail
from support_desk.knowledge_edit import KnowledgeFiles, terminal_from_form
from support_desk.schema import audit_log

routes = web.RouteTableDef()
operator_only = operators_only("knowledge_operators_only")
KNOWLEDGE = web.AppKey("knowledge", KnowledgeFiles)
# The audit rows of this page: their targets are "knowledge:terminal:<key>", "knowledge:prefix:<digits>".
KNOWLEDGE_TARGET = "knowledge:"


@routes.get("/console/knowledge")
@agent_only
@operator_only
async def knowledge_page(request: web.Request) -> web.Response:
    """Every terminal model with its form, the form for a new one, the prefix table."""
    files = request.app[KNOWLEDGE]
    models, terminals_version = files.terminals()
    prefixes, regions, regions_version = files.prefixes()
    trail = await audit_trail(request.app[STORE], 20, target_prefix=KNOWLEDGE_TARGET)
    return await page(
        request,
        "knowledge.html",
        models=models,
        terminals_version=terminals_version,
        prefixes=sorted(prefixes.items()),
        regions=regions,
        regions_version=regions_version,
        audit=trail,
    )


@routes.post("/console/knowledge/terminals")
@agent_only
@operator_only
async def save_terminal(request: web.Request) -> web.StreamResponse:
    """Add or change a terminal model (every field checked; a stale page is refused)."""
    form = await request.post()
    entry = terminal_from_form(form)
    files = request.app[KNOWLEDGE]
    # The audit row is written first and committed after the file: a file that cannot be
    # written leaves no audit row, and a database that is down refuses the edit before the
    # file is touched (only a failed commit after the write could still lose the row).
    async with request.app[STORE].engine.begin() as conn:
        row = await audit(
            conn, await actor(request), "knowledge.terminal", f"{KNOWLEDGE_TARGET}terminal:{entry.key}", {"after": entry.as_yaml()}
        )
        before = await asyncio.to_thread(files.save_terminal, entry, str(form.get("version") or ""))
        await conn.execute(audit_log.update().where(audit_log.c.id == row).values(detail={"before": before, "after": entry.as_yaml()}))
    await flash(request, (await word(request, "knowledge_saved")).format(name=entry.name))
    raise web.HTTPFound("/console/knowledge")


@routes.post("/console/knowledge/prefixes")
@agent_only
@operator_only
async def save_prefix(request: web.Request) -> web.StreamResponse:
    """Map a merchant-number prefix to a region, or remove it (region left empty)."""
    form = await request.post()
    prefix, region = str(form.get("prefix") or ""), str(form.get("region") or "").strip() or None
    files = request.app[KNOWLEDGE]
    async with request.app[STORE].engine.begin() as conn:
        row = await audit(conn, await actor(request), "knowledge.prefix", f"{KNOWLEDGE_TARGET}prefix:{prefix.strip()}", {"after": region})
        before = await asyncio.to_thread(files.save_prefix, prefix, region, str(form.get("version") or ""))
        await conn.execute(audit_log.update().where(audit_log.c.id == row).values(detail={"before": before, "after": region}))
    await flash(request, (await word(request, "knowledge_saved")).format(name=prefix.strip()))
    raise web.HTTPFound("/console/knowledge")
