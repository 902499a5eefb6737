"""The audit trail of operator actions (incidents, knowledge edits, labels, trainings)."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import sqlalchemy as sa

from support_desk.schema import audit_log
from support_desk.store import DeskStore, iso, utcnow


async def audit(conn, actor: str, action: str, target: str, detail: Optional[Dict[str, Any]]) -> int:  # noqa: ANN001
    """Keep who did what to which ``target`` ("incident:12", "terminal:pax_a920"), in the
    action's own transaction; the row's id."""
    result = await conn.execute(audit_log.insert().values(at=utcnow(), actor=actor, action=action, target=target, detail=detail))
    return int(result.inserted_primary_key[0])


async def audit_trail(store: DeskStore, limit: int = 100, target_prefix: Optional[str] = None) -> List[Dict[str, Any]]:
    """The newest audited operator actions, only those on targets starting with
    ``target_prefix`` when given ("incident:", "training:")."""
    query = sa.select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
    if target_prefix:
        query = query.where(audit_log.c.target.startswith(target_prefix, autoescape=True))
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query)).mappings()
        return [
            {"at": iso(r["at"]), "actor": r["actor"], "action": r["action"], "target": r["target"], "detail": r["detail"]} for r in rows
        ]
