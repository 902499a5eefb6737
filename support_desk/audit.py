"""The audit trail of operator actions (incidents, knowledge edits, labels, trainings)."""

from __future__ import annotations

from typing import Any, Dict, Optional

from support_desk.schema import audit_log
from support_desk.store import utcnow


async def audit(conn, actor: str, action: str, target: str, detail: Optional[Dict[str, Any]]) -> int:  # noqa: ANN001
    """Keep who did what to which ``target`` ("incident:12", "terminal:pax_a920"), in the
    action's own transaction; the row's id."""
    result = await conn.execute(audit_log.insert().values(at=utcnow(), actor=actor, action=action, target=target, detail=detail))
    return int(result.inserted_primary_key[0])
