"""The widget's text: what react-markdown 4 (the stock rasa-webchat's renderer, run in
node from web/node_modules) makes of ``widget_markdown`` is the plain text as written."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import List

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channels.widget_text import widget_markdown, widget_parts
from tests.harness.examples import examples

ROOT = Path(__file__).resolve().parent.parent
RENDERER = ROOT / "tests" / "render_markdown.js"
pytestmark = pytest.mark.skipif(
    not shutil.which("node") or not (ROOT / "web" / "node_modules" / "react-markdown").exists(),
    reason="node and web/node_modules (make install) render the markdown",
)


def render(sources: List[str]) -> List[str]:
    """The HTML react-markdown 4 makes of each source, as the widget configures it."""
    done = subprocess.run(
        ["node", str(RENDERER)],
        input="".join(json.dumps(s) + "\n" for s in sources),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return [json.loads(line) for line in done.stdout.splitlines()]


def shown(markup: str) -> str:
    """The text a reader sees in the rendered HTML, a ``<br>`` as a line break."""
    assert re.fullmatch(r"<p>.*</p>", markup, re.S), markup  # one paragraph, nothing else
    inner = markup[3:-4].replace("<br/>", "\n")
    assert "<" not in inner, markup  # no element: no link, list, emphasis, code
    return html.unescape(inner)


def as_written(text: str) -> str:
    """The text as a reader sees it: lines without trailing blanks, outer newlines trimmed."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").strip("\n").split("\n")]
    return "\n".join(line or " " for line in lines)


MARKUP = [
    "第1步（共4步）：检查网络。\n• 流量卡：有信号吗？\n• Wi-Fi：能上网吗？",
    "1. first\n2. second\n- dash\n+ plus\n* star",
    "*not emphasis* _nor this_ **nor** `code` ~~strike~~",
    "<b>bold?</b> <script>alert(1)</script> &amp; &lt; &#42;",
    "[click](javascript:alert(1)) <javascript:alert(1)> <http://x.y> http://x.y/a_b mail@x.y",
    "# heading\nunderlined\n===\n> quote\n| a | b |\n|---|---|",
    "    indented code\n\ttab\n  two spaces",
    "\\*escaped\\* a\\\nb ![img](http://x/y.png)",
]


def test_markup_and_lines_show_as_written():
    for text, markup in zip(MARKUP, render([widget_markdown(t) for t in MARKUP])):
        assert shown(markup) == as_written(text)


def test_each_line_is_a_line_break():
    [markup] = render([widget_markdown(MARKUP[0])])
    assert markup.count("<br/>") == 2


# Printable text of one message part: ASCII (all of markdown's syntax), CJK, spaces,
# tabs and single line breaks (blank lines split a text into parts, below).
part_text = st.text(
    alphabet=st.one_of(st.characters(min_codepoint=0x20, max_codepoint=0x7E), st.sampled_from("\n\t 。，：•报错😀")),
    min_size=1,
    max_size=80,
).filter(lambda t: t.strip() and not re.search(r"\n[ \t]*\n", t.strip("\n")))


@settings(max_examples=examples(25), deadline=None)  # 1000 texts, one node run per example
@given(st.lists(part_text, min_size=40, max_size=40))
def test_any_text_renders_as_itself(texts):
    for text, markup in zip(texts, render([widget_markdown(t) for t in texts])):
        assert shown(markup) == as_written(text)


def test_blank_lines_split_the_text_into_messages_as_rasa_does():
    assert widget_parts("one\n\ntwo\n \nthree") == ["one", "two", "three"]
    assert widget_parts("  \n\n  ") == []
    assert widget_parts("a.\nb") == ["a&#46;  \nb"]
