"""Serves ``support_desk/openapi.yml`` as ``GET /api/openapi.json``."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Dict

import yaml
from aiohttp import web

SPEC_FILE = Path(__file__).with_name("openapi.yml")


@lru_cache(maxsize=1)
def openapi_document() -> Dict[str, Any]:
    """The OpenAPI 3 document of the desk API."""
    return yaml.safe_load(SPEC_FILE.read_text(encoding="utf-8"))


async def serve_openapi(_: web.Request) -> web.Response:
    """The OpenAPI document as JSON."""
    return web.json_response(openapi_document())


OPENAPI_ROUTE = web.get("/api/openapi.json", serve_openapi)
