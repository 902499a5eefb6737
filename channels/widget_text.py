"""Plain text as markdown that the website widget displays exactly as written.

rasa-webchat renders every bot text with react-markdown 4 (``escapeHtml`` on, but
``transformLinkUri={null}``, so a ``[x](javascript:...)`` would become a live link).
Plain text read as markdown loses its shape: single line breaks collapse into one
paragraph, ``1.`` lines become lists, ``*``/``_`` emphasis, indentation code blocks.

``widget_markdown`` turns one message part into markdown whose rendering is the text
itself: every character markdown could read as syntax is written as a numeric
character reference (remark decodes those into literal text, they never start a
construct), leading whitespace too (else a paragraph line loses it or becomes code),
and each line break is a hard break (two spaces before the newline, which
react-markdown 4 renders as ``<br>``). Only the socket.io output uses it; WeCom,
WeChat and REST send the plain text.
"""

from __future__ import annotations

import re
from typing import List

# Characters with a meaning somewhere in remark-parse 5 (gfm mode): emphasis, code,
# links and autolinks (``<``, ``:`` of a bare URL), headings, lists, block quotes,
# setext underlines, tables, strikethrough, escapes and entities.
_SYNTAX = frozenset("\\`*_{}[]()<>#+-.!~|&:=\"'$%@^")
_LEADING_BLANKS = re.compile(r"^[ \t]+")
_BLANK_LINE = re.compile(r"\n[ \t]*\n")


def _reference(char: str) -> str:
    return f"&#{ord(char)};"


def _line(line: str) -> str:
    line = line.rstrip()
    lead = _LEADING_BLANKS.match(line)
    body_start = lead.end() if lead else 0
    escaped = "".join(_reference(c) if c in _SYNTAX else c for c in line[body_start:])
    # An empty line would end the paragraph; a referenced space keeps it a line.
    return "".join(_reference(c) for c in line[:body_start]) + escaped or "&#32;"


def widget_markdown(text: str) -> str:
    """Markdown that react-markdown 4 renders as exactly ``text`` (lines kept, no markup)."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").strip("\n").split("\n")
    return "  \n".join(_line(line) for line in lines)


def widget_parts(text: str) -> List[str]:
    """The text as the widget's messages: one per blank-line separated part, as markdown.

    Rasa's socket.io output also sends each blank-line separated part as a message of
    its own; a part that is only whitespace is dropped rather than sent empty.
    """
    parts = [part for part in _BLANK_LINE.split(text.strip()) if part.strip()]
    return [widget_markdown(part) for part in parts]
