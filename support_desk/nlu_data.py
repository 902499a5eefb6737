"""The NLU training data as the inbox reads and writes it: the intents a label may name (the
domain's), the examples already in the training data (a label of one is not written again),
the near-duplicate key of a text, and ``data/nlu/reviewed.yml``'s format. Files are re-read
only when they change."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import Dict, Iterable, List, Sequence, Tuple

import yaml

MAX_KEY = 255
REVIEWED_HEADER = (
    "# Written by the support desk's NLU inbox (/console/nlu) from the operators' labels and\n"
    "# rewritten on every label: change a label there, not here. Training reads this file.\n"
)

# Entity annotations of Rasa's training data ("[12345](merchant_id)"): their words count.
_ANNOTATION = re.compile(r"\[([^\]]*)\](?:\([^)]*\)|\{[^}]*\})")
_DIGITS = re.compile(r"\d+")
_ANNOTATION_START = re.compile(r"\]([({\[])")


def normalised(text: str) -> str:
    """The key near-duplicates share: full-width forms as half-width, lower case, without
    whitespace, punctuation or symbols, then each run of digits as one ``0`` (merchant
    numbers, amounts, grouped or masked card numbers alike: "138****5678" keys as
    "13812345678")."""
    folded = unicodedata.normalize("NFKC", text).lower()
    kept = "".join(ch for ch in folded if unicodedata.category(ch)[0] not in "PSZC")
    return _DIGITS.sub("0", kept)[:MAX_KEY]


# --- what labels are checked against: the domain, the training data, the held-out sets --


def _signature(paths: Iterable[Path]) -> Tuple[Tuple[str, int], ...]:
    # Files as (name, modification time): a changed file is read again, an unchanged one never.
    return tuple(sorted((str(p), p.stat().st_mtime_ns) for p in paths if p.is_file()))


def yaml_files(directory: Path) -> List[Path]:
    """The Rasa YAML files of a folder (not its subfolders), sorted."""
    return sorted(directory.glob("*.yml")) + sorted(directory.glob("*.yaml")) if directory.is_dir() else []


# Intents a component of config.yml sets by rule, never learnt from examples
# (nlu_components/error_codes.py: a question about 1001 reads like one about 1000, so
# examples of it would teach DIET to confuse the two). No label may name them.
RULE_INTENTS = frozenset({"other_error_code"})


def domain_intents(domain_dir: Path) -> List[str]:
    """The intents a label may name, sorted: the domain's (but ``RULE_INTENTS``), each
    retrieval intent as its ``<intent>/<key>`` of the domain's ``utter_<intent>/<key>`` responses."""
    return [intent for intent in _domain_intents(_signature(yaml_files(domain_dir))) if intent not in RULE_INTENTS]


@lru_cache(maxsize=8)
def _domain_intents(files: Tuple[Tuple[str, int], ...]) -> Tuple[str, ...]:
    intents: List[str] = []
    responses: List[str] = []
    for name, _ in files:
        data = yaml.safe_load(Path(name).read_text(encoding="utf-8")) or {}
        for item in data.get("intents") or []:
            intents.extend(item.keys() if isinstance(item, dict) else [str(item)])
        responses.extend(str(key) for key in (data.get("responses") or {}))
    found: set = set()
    for intent in intents:
        keys = [r[len(f"utter_{intent}/") :] for r in responses if r.startswith(f"utter_{intent}/")]
        if keys:
            found.update(f"{intent}/{key}" for key in keys)  # a bare retrieval intent labels nothing
        else:
            found.add(intent)
    return tuple(sorted(found))


def example_keys(files: Sequence[Path]) -> frozenset:
    """The normalised texts of every example in these Rasa NLU files."""
    return _example_keys(_signature(files))


@lru_cache(maxsize=8)
def _example_keys(files: Tuple[Tuple[str, int], ...]) -> frozenset:
    keys = set()
    for name, _ in files:
        data = yaml.safe_load(Path(name).read_text(encoding="utf-8")) or {}
        for entry in data.get("nlu") or []:
            if not isinstance(entry, dict) or "intent" not in entry:
                continue
            for line in str(entry.get("examples") or "").splitlines():
                text = line.strip()
                if text.startswith("- "):
                    keys.add(normalised(_ANNOTATION.sub(r"\1", text[2:])))
    keys.discard("")
    return frozenset(keys)


def reviewed_yaml(examples: Iterable[Tuple[str, str]]) -> str:
    """Rasa YAML training data (``version: "3.1"``) of (intent, text) pairs, sorted by
    intent and text: the same labels always give the same file (a reviewable diff)."""
    by_intent: Dict[str, set] = {}
    for intent, text in examples:
        line = " ".join(text.split())  # one line each: the block holds one example a line
        # "[x](y)" is Rasa's entity annotation: a merchant's brackets must stay words.
        line = _ANNOTATION_START.sub(r"] \1", line)
        if line:
            by_intent.setdefault(intent, set()).add(line)
    if not by_intent:
        return REVIEWED_HEADER + 'version: "3.1"\nnlu: []\n'
    parts = [REVIEWED_HEADER, 'version: "3.1"\n', "nlu:\n"]
    for intent in sorted(by_intent):
        parts.append(f"- intent: {intent}\n  examples: |\n")
        parts.extend(f"    - {line}\n" for line in sorted(by_intent[intent]))
    return "".join(parts)
