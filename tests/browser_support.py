"""What the real-browser tests share: Debian's chromium (never a downloaded browser), its flags,
where screenshots go, and the marks that skip them where chromium is not installed."""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
SHOTS = ROOT / "build" / "browser"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]

MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian chromium: apt-get install -y chromium"),
]

LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:")


def offline_context(browser, width: int, height: int):
    """A browser context with the network off and every requested URL recorded:
    ``(context, requests)``; :func:`remote` of ``requests`` must stay empty."""
    context = browser.new_context(offline=True, viewport={"width": width, "height": height})
    requests: list[str] = []
    context.on("request", lambda r: requests.append(r.url))
    return context, requests


def remote(requests: list[str]) -> list[str]:
    """The URLs a self-contained page should never have asked for (anything not local)."""
    return [u for u in requests if not u.startswith(LOCAL_SCHEMES)]
