"""The demo merchant help page (``/chat``) with the chat widget.

The widget is rasa-webchat from npm (``web/``, installed by ``make``; never committed as
a bundle). It talks to Rasa's socket.io channel at ``public_rasa_url``; the page's
language (``?lang=zh|en``) sets the greeting's language, and the session is kept in
the browser's local storage so a reload keeps the conversation.
"""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp_jinja2
from aiohttp import web

from support_desk.api import SETTINGS, error

WIDGET = Path(__file__).resolve().parent.parent / "web" / "node_modules" / "rasa-webchat" / "lib" / "index.js"
routes = web.RouteTableDef()

PAGE_TEXT = {
    "zh": {
        "title": "POS机报错1000 帮助",
        "intro": "刷卡机显示错误码1000？点右下角和助手聊聊，它会一步步带您排查，必要时转人工客服。",
        "widget_title": "POS 1000 助手",
        "subtitle": "7×24 小时在线",
        "hint": "请输入您的问题…",
    },
    "en": {
        "title": "POS error 1000 help",
        "intro": (
            "Your terminal shows error 1000? Chat with the assistant (bottom right): it walks you "
            "through the checks and hands you to a person when needed."
        ),
        "widget_title": "POS 1000 assistant",
        "subtitle": "online 24/7",
        "hint": "Type your question…",
    },
}


@routes.get("/chat")
async def chat_page(request: web.Request) -> web.Response:
    """The help page in Chinese (default) or English."""
    lang = request.query.get("lang", "zh")
    lang = lang if lang in PAGE_TEXT else "zh"
    text = PAGE_TEXT[lang]
    config = {
        "socketUrl": request.app[SETTINGS].public_rasa_url,
        "socketPath": "/socket.io/",
        "initPayload": f'/greet{{"language": "{lang}"}}',
        "customData": {"language": lang},
        "title": text["widget_title"],
        "subtitle": text["subtitle"],
        "inputTextFieldHint": text["hint"],
        "params": {"storage": "local"},
        "showMessageDate": True,
    }
    return aiohttp_jinja2.render_template(
        "chat.html", request, {"lang": lang, "t": text, "config_json": json.dumps(config, ensure_ascii=False)}
    )


@routes.get("/chat/webchat.js")
async def widget_script(_: web.Request) -> web.StreamResponse:
    """The widget bundle from node_modules (``make`` installs it)."""
    if not WIDGET.exists():
        return error(503, "chat widget not installed: run `make install`")
    return web.FileResponse(WIDGET, headers={"Content-Type": "application/javascript"})
