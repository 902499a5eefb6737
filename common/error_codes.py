"""How an error code is written when NLU records it and the actions look it up."""

from __future__ import annotations


def canonical(code: str) -> str:
    """Upper case, no hyphen or spaces: ``err-12`` and ``ERR12`` are one code."""
    return code.replace("-", "").strip().upper()
