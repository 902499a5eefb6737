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
