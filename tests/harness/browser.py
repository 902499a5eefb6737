"""Debian's chromium for Playwright (``scripts/system_packages.sh`` installs it)."""

from __future__ import annotations

import shutil
from typing import Any

from tests.harness.processes import ROOT

SHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Flags for a sandboxed machine without network: no background connections.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PAYLOAD = '<script>alert("pwned")</script><img src=x onerror=alert(1)>'


async def log_in(page: Any, base: str, username: str, password: str) -> None:
    """Sign in on the console's login page (``base`` is the desk's address)."""
    await page.goto(f"{base}/console/login")
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", password)
    await page.click("button[type=submit]")
