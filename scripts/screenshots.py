"""Make the README's screenshots from real runs in JupyterLab and headless Debian Chromium.

    .venv/bin/python scripts/screenshots.py            # writes docs/img/live_view.png and chat_panel.png

A throw-away notebook on the shipped ``stories`` model runs (1) a :class:`LiveViewer` of
ReMDM-loop, photographed while it writes, once a frame with a remask in it is on screen, and
(2) a :class:`ChatPanel` that answers one prompt. Each picture is the widget alone, at most
200 KB (the script says so and fails otherwise). Needs ``/usr/bin/chromium`` (``apt-get install -y
chromium``; no browser is ever downloaded) and the test extras (playwright). About a minute.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from browser_support import ARGS, CHROMIUM, jupyter_lab, open_and_run_all, write_notebook  # noqa: E402

LIMIT = 200_000
CELLS = [
    "import explorer\nfrom explorer import samplers, widgets\nmodel = explorer.load_model('stories')",
    "live = widgets.LiveViewer(model, samplers.ReMDMLoop(), 768, prompt='Once upon a time', columns=16, "
    "length=64, fps=4, text=True)\nlive",
    "live.wait()\npanel = widgets.ChatPanel(model, sampler='remdm-loop', steps=128, columns=16)\npanel",
]
# true while the live grid shows a cell that went back to [MASK] since the last frame
REMASK_ON_SCREEN = ("() => { const g = document.querySelector('.remdm-live-viewer .remdm-live-grid');"
                    " return !!(g && g.querySelector('.remdm-cell[data-state=\"remasked this step\"]')); }")


def shoot(locator, path: Path) -> int:
    locator.screenshot(path=str(path), animations="disabled")
    return check_size(path)


def check_size(path: Path) -> int:
    size = path.stat().st_size
    print(f"{path.relative_to(ROOT)}: {size / 1000:.0f} KB")
    if size > LIMIT:
        raise SystemExit(f"{path} is {size} bytes, over the {LIMIT} byte limit: shrink the viewport or the widget.")
    return size


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img", help="folder of the pictures (must exist)")
    a = ap.parse_args(argv)
    if not CHROMIUM.exists():
        raise SystemExit(f"{CHROMIUM} is missing: apt-get install -y chromium (no browser is downloaded).")
    if not a.out.is_dir():
        raise SystemExit(f"--out {a.out} is not a folder: create it first.")
    from playwright.sync_api import sync_playwright
    with tempfile.TemporaryDirectory() as tmp, jupyter_lab(Path(tmp)) as (url, token), sync_playwright() as p:
        write_notebook(Path(tmp), "screenshots.ipynb", CELLS)
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, timeout=60_000)
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.set_default_timeout(120_000)
        try:
            run(page, url, token, a.out)
        except Exception:
            (ROOT / "build").mkdir(exist_ok=True)
            page.screenshot(path=str(ROOT / "build" / "screenshots_failure.png"))
            raise
        finally:
            browser.close()


def run(page, url, token, out: Path) -> None:
    open_and_run_all(page, url, token, "screenshots.ipynb", wait=False)
    page.evaluate("window.jupyterapp.shell.collapseLeft()")
    live = page.locator(".remdm-live-viewer").first
    live.locator(".remdm-live-grid .remdm-cell").first.wait_for()
    page.wait_for_function("() => /step \\d+ of/.test(document.querySelector('.remdm-live-status').textContent)")
    page.wait_for_function(REMASK_ON_SCREEN, polling=50)
    live.scroll_into_view_if_needed()
    shoot(live, out / "live_view.png")

    panel = page.locator(".remdm-chat-panel")
    panel.wait_for()
    panel.scroll_into_view_if_needed()
    panel.locator(".remdm-chat-message textarea").fill("Once upon a time, a little dog")
    panel.get_by_role("button", name="Generate").click()
    panel.locator(".remdm-chat-history .remdm-chat-turn").wait_for()
    panel.locator(".remdm-trace-viewer .remdm-cell").first.wait_for()
    page.mouse.move(0, 0)
    # the panel from its history down to the finished run's grid (its details and curves
    # below are left out): prompt, answer with rewritten words, settings, the scrubbed run
    page.set_viewport_size({"width": 1100, "height": 1400})
    panel.evaluate("(el) => el.scrollIntoView({block: 'start'})")
    grid = panel.locator(".remdm-trace-viewer .remdm-token-grid").first
    top, bottom = panel.bounding_box(), grid.bounding_box()
    path = out / "chat_panel.png"
    page.screenshot(path=str(path), animations="disabled",
                    clip={"x": top["x"], "y": max(0, top["y"]), "width": top["width"],
                          "height": min(1400, bottom["y"] + bottom["height"]) - max(0, top["y"]) + 4})
    check_size(path)


if __name__ == "__main__":
    main()
