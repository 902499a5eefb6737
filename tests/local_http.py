"""A real aiohttp server for tests, on 127.0.0.1 and a port the system picks."""

from __future__ import annotations

from typing import Tuple

from aiohttp import web


async def serve_locally(app: web.Application) -> Tuple[web.AppRunner, str]:
    """Start ``app``; return its runner (``await runner.cleanup()`` stops it) and base URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    return runner, f"http://127.0.0.1:{port}"


def serve_in_thread(app: web.Application) -> str:
    """Start ``app`` on an event loop in a daemon thread of its own (for servers that real
    Rasa processes call while the test blocks); return its base URL."""
    import asyncio
    import threading

    started: "dict[str, str]" = {}
    ready = threading.Event()

    def serve() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        started["url"] = loop.run_until_complete(serve_locally(app))[1]
        ready.set()
        loop.run_forever()

    threading.Thread(target=serve, daemon=True).start()
    if not ready.wait(10):
        raise RuntimeError("test server did not start")
    return started["url"]
