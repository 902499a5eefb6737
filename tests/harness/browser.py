"""Debian's chromium for Playwright (``scripts/system_packages.sh`` installs it)."""

from __future__ import annotations

import shutil

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
