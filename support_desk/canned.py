"""Canned replies for one case: from the terminal knowledge data and written by agents.

The knowledge ones are built from ``data/knowledge/terminals.yml`` (the file the bot's
diagnostics read, through the same reader) with the wording in
``support_desk/canned_replies.yml``, in the merchant's language. The terminal model is
not a field of a case: it is looked for in what the merchant wrote; when none is found,
the generic steps and every model's are offered.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml

from actions.knowledge import KnowledgeBase, TerminalModel, load_knowledge
from support_desk.config import in_language as _pick
from support_desk.store import DeskStore

HERE = Path(__file__).parent
WORDING_FILE = HERE / "canned_replies.yml"
KNOWLEDGE_FILE = HERE.parent / "data" / "knowledge" / "terminals.yml"
_STEPS = {"restart": "restart", "update": "update", "version": "version_location"}


@lru_cache(maxsize=1)
def wording() -> Dict[str, Any]:
    """The canned replies' wording (``canned_replies.yml``), read once."""
    return yaml.safe_load(WORDING_FILE.read_text(encoding="utf-8"))


def case_model(knowledge: KnowledgeBase, case: Dict[str, Any]) -> Optional[str]:
    """The terminal model the merchant named in the summary or a message, if any."""
    texts = [case.get("summary") or ""] + [m["text"] for m in case.get("transcript", []) if m["role"] == "user"]
    for text in texts:
        found = knowledge.match_model(text)
        if found:
            return found
    return None


def knowledge_replies(knowledge: KnowledgeBase, model_key: Optional[str], language: str) -> List[Dict[str, Any]]:
    """The restart / update / version replies for one model, or for all and the generic steps."""
    words = wording()
    models = [knowledge.model(model_key)] if model_key else [knowledge.model(None)] + [knowledge.model(key) for key in knowledge.model_keys]
    replies = []
    for kind, field in _STEPS.items():
        template = words["from_knowledge"][kind]
        for model in models:
            replies.append(_from_model(template, kind, field, model, language, words))
    for key, item in words["fixed"].items():
        replies.append(
            {"id": f"kb-{key}", "title": _pick(item["title"], language), "text": _pick(item["text"], language), "source": "knowledge"}
        )
    return replies


def _from_model(
    template: Dict[str, Any], kind: str, field: str, model: TerminalModel, language: str, words: Dict[str, Any]
) -> Dict[str, Any]:
    name = model.name or _pick(words["generic_model"], language)
    steps = _pick(getattr(model, field), language)
    latest = ""
    if kind == "version" and model.latest_version:
        latest = _pick(template["latest"], language).format(latest=model.latest_version)
    text = _pick(template["text"], language).format(steps=steps, latest=latest)
    return {
        "id": f"kb-{kind}-{model.key}",
        "title": _pick(template["title"], language).format(model=name),
        "text": text,
        "source": "knowledge",
    }


async def canned_for_case(store: DeskStore, case: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Every canned reply for this case, in the merchant's language: knowledge first, then agents'."""
    knowledge = load_knowledge(KNOWLEDGE_FILE)
    language = case["language"]
    replies = knowledge_replies(knowledge, case_model(knowledge, case), language)
    for own in await store.list_canned(language):
        replies.append(
            {"id": f"agent-{own['id']}", "title": own["title"], "text": own["text"], "source": "agent", "created_by": own["created_by"]}
        )
    return replies
