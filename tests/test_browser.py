"""Real-browser checks: JupyterLab + headless Debian Chromium (Playwright, no browser download).

* the quickstart notebook runs in JupyterLab, its scrubber and token grid render, and moving the
  scrubber changes the grid;
* widgets survive a page reload with the kernel running (grid, title, details and slider agree,
  clicks select the cell shown), every panel follows the sample, and a branch made from cells
  past the first window opens with the edited cells in view, parent and branch side by side;
* a static HTML export opens with the network cut off and shows the grid;
* a live run on the shipped stories model draws several grid states, a remask among them, before
  it becomes the scrubber; Stop on a second run leaves an incomplete trace in the viewer; one
  message goes through the chat panel;
* the tooltips of a one-row grid and of a bottom-row cell stay inside the viewport, and the
  lifeline's step marker moves with play.

One JupyterLab server serves the whole module; each notebook opens in a reset workspace of its own.

Skipped only when /usr/bin/chromium is absent (``apt-get install -y chromium``). Screenshots go
to build/browser/ (git-ignored).
"""
from __future__ import annotations

import pytest

from browser_support import (ARGS, CHROMIUM, KERNEL_IDLE, MARKS, SHOTS, jupyter_lab, offline_context,
                             open_and_run_all, remote, write_notebook)

pytestmark = MARKS


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, timeout=60_000)
        yield b
        b.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab on a copy of notebooks/ (so autosave never rewrites the committed notebooks)."""
    work = tmp_path_factory.mktemp("lab")
    with jupyter_lab(work) as (url, token):
        yield url, token, work


GRID_TEXT = "() => { const g = document.querySelector('.remdm-token-grid'); return g ? g.textContent : ''; }"


def _type_into_readout(page, readout, value) -> None:
    """Set an ipywidgets slider the way a user can: type into its readout and press Enter."""
    readout.click()
    page.keyboard.press("Control+A")
    page.keyboard.type(str(value))
    page.keyboard.press("Enter")


def _set_step(page, scope, value: int) -> None:
    """Move a viewer's step slider (it has no numeric readout) the way a keyboard user does:
    focus its handle, Home to the first state, then one arrow press per step."""
    handle = scope.locator(".remdm-step-slider .noUi-handle").first
    handle.click()
    page.keyboard.press("Home")
    for _ in range(int(value)):
        page.keyboard.press("ArrowRight")


def test_quickstart_in_jupyterlab(browser, lab):
    url, token, work = lab
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(60_000)
    try:
        open_and_run_all(page, url, token, "01_quickstart.ipynb")
        page.wait_for_selector(".remdm-trace-viewer .remdm-step-slider", state="attached", timeout=60_000)
        page.locator(".remdm-trace-viewer").first.scroll_into_view_if_needed()
        page.wait_for_selector(".remdm-token-grid .remdm-cell", timeout=60_000)
        before = page.evaluate(GRID_TEXT)
        assert "step" in before and "masked" in before, before[:200]
        page.screenshot(path=str(SHOTS / "quickstart_before.png"))

        _set_step(page, page.locator(".remdm-trace-viewer").first, 3)
        page.wait_for_function(f"() => ({GRID_TEXT})().includes('step 3 of')", timeout=30_000)
        after = page.evaluate(GRID_TEXT)
        assert "step 3 of" in after, after[:200]
        page.screenshot(path=str(SHOTS / "quickstart_after.png"))

        # click a token: the kernel answers with that position's history and lifeline
        page.locator(".remdm-token-grid .remdm-cell[data-pos='0']").first.click()
        page.wait_for_function(
            "() => [...document.querySelectorAll('.remdm-trace-viewer .gtitle')]"
            ".some(t => t.textContent.startsWith('lifelines of 1'))", timeout=30_000)
        assert "position 0" in page.locator(".remdm-trace-viewer .remdm-details").first.text_content()
        assert (work / "notebooks" / "build" / "quickstart.html").is_file()
    except Exception:
        page.screenshot(path=str(SHOTS / "quickstart_failure.png"))
        raise
    finally:
        page.close()


WIDGETS_NOTEBOOK = [
    "import torch\nimport explorer\nfrom explorer import samplers, widgets",
    "probs = torch.rand(200, 9, generator=torch.Generator().manual_seed(0)) ** 4\n"
    "probs[:, -1] = 0\nmodel = explorer.StubDenoiser(probs)\n"
    "trace = explorer.generate(model, samplers.MDLM(), steps=12, num_samples=2, seed=0, progress=False)",
    "viewer = widgets.TraceViewer(trace, length=128, columns=16)\nviewer",
    "iv = widgets.InterventionViewer(model, trace, step=6, length=128, columns=16, seed=1)\niv",
]

TITLE_OF = "(el) => el.querySelector('.remdm-grid-title').textContent"


def test_widgets_survive_reload_follow_the_sample_and_open_branches_at_the_edit(browser, lab):
    """A stub-model notebook: scrub, save, reload the page (kernel still running), scrub again
    and click; switch the sample; select cells past the first window, branch, and find the
    edited cells in view in both grids, side by side."""
    import nbformat

    url, token, work = lab
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in WIDGETS_NOTEBOOK])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, work / "notebooks" / "widgets_check.ipynb")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(30_000)
    console = []
    page.on("console", lambda m: console.append(m.text))
    try:
        open_and_run_all(page, url, token, "widgets_check.ipynb")
        viewer = page.locator(".remdm-trace-viewer").first
        viewer.locator(".remdm-cell").first.wait_for()
        _set_step(page, viewer, 3)
        page.wait_for_function(f"(el) => ({TITLE_OF})(el).includes('step 3 of 12')", arg=viewer.element_handle())
        page.evaluate("window.jupyterapp.commands.execute('docmanager:save')")
        page.wait_for_function("() => !window.jupyterapp.shell.currentWidget.context.model.dirty")

        # reload with the kernel still running: every panel comes back as the kernel holds it
        console.clear()
        page.reload()
        page.wait_for_selector(".jp-NotebookPanel .jp-Notebook", timeout=90_000)
        page.wait_for_function(KERNEL_IDLE, timeout=60_000)
        viewer = page.locator(".remdm-trace-viewer").first
        viewer.locator(".remdm-cell").first.wait_for()
        viewer.scroll_into_view_if_needed()
        assert "step 3 of 12" in viewer.locator(".remdm-grid-title").text_content()
        assert viewer.locator(".remdm-step-label").text_content().strip() == "step 3 of 12"
        step_markers = ("(el) => [...el.querySelectorAll('.js-plotly-plot')].flatMap(p => ((p.layout || {}).shapes || [])"
                        ".filter(s => s.name === 'step-marker').map(s => s.x0))")
        # plotly draws the curves after the grid: wait for them (a race, not a missing marker)
        page.wait_for_function(f"(el) => ({step_markers})(el).length > 0", arg=viewer.element_handle(),
                               timeout=30_000)
        markers = viewer.evaluate(step_markers)
        assert markers and set(markers) == {3}, markers  # the curves' step marker came back too
        _set_step(page, viewer, 7)
        page.wait_for_function(f"(el) => ({TITLE_OF})(el).includes('step 7 of 12')", arg=viewer.element_handle())
        cell = viewer.locator(".remdm-cell[data-pos='37']")
        cell.click()
        details = viewer.locator(".remdm-details")
        page.wait_for_function("(el) => el.textContent.includes('position 37')", arg=details.element_handle())
        assert "up to step 7 of 12" in details.text_content()
        assert not [m for m in console if "Failed to initialize model" in m], console
        page.screenshot(path=str(SHOTS / "widgets_after_reload.png"))

        # switch the sample: grid, details and curve titles all follow
        before = viewer.locator(".remdm-grid-view").text_content()
        viewer.locator(".remdm-sample-box select").select_option("1")
        page.wait_for_function("(el) => el.textContent.includes('sample 1')", arg=details.element_handle())
        assert "position 37" in details.text_content()
        page.wait_for_function(
            "(el) => [...el.querySelectorAll('.gtitle')].some(t => t.textContent.includes('(sample 1)'))",
            arg=viewer.element_handle())
        page.wait_for_function("([el, before]) => el.textContent !== before",
                               arg=[viewer.locator(".remdm-grid-view").element_handle(), before])

        # branch from cells past the first window: the comparison opens where the edit is
        iv = page.locator(".remdm-trace-viewer").nth(1)
        iv.scroll_into_view_if_needed()
        _type_into_readout(page, iv.locator(".remdm-window-slider .widget-readout"), 72)  # the last window
        page.wait_for_function("(el) => el.querySelector('.remdm-cell[data-pos=\"199\"]')", arg=iv.element_handle())
        picked = iv.evaluate("(el) => [...el.querySelectorAll('.remdm-cell:not([data-state=\"masked\"])')]"
                             ".map(c => Number(c.dataset.pos)).filter(p => p >= 128).slice(0, 2)")
        assert len(picked) == 2, picked  # decoded cells that the first window (0..127) does not show
        for p in picked:
            iv.locator(f".remdm-cell[data-pos='{p}']").click()
        page.wait_for_function("(n) => document.querySelectorAll('.remdm-trace-viewer .remdm-selected').length >= n",
                               arg=2)
        page.get_by_role("button", name="continue as branch").click()
        # the file browser closed, a 1400 px window leaves room for two 16-column grids in a row
        page.evaluate("window.jupyterapp.shell.collapseLeft()")
        compare = page.locator(".remdm-compare-viewer")
        compare.wait_for(timeout=60_000)
        compare.scroll_into_view_if_needed()
        grids = compare.locator(".remdm-token-grid")
        assert grids.count() == 2
        for i in range(2):
            for p in picked:
                edited = grids.nth(i).locator(f".remdm-cell[data-pos='{p}']")
                assert "remdm-selected" in edited.get_attribute("class")
                assert edited.is_visible()
        a, b = (grids.nth(i).bounding_box() for i in range(2))
        assert abs(a["y"] - b["y"]) < 5 and b["x"] > a["x"] + a["width"] - 5, (a, b)  # side by side
        page.screenshot(path=str(SHOTS / "widgets_branch.png"))
    except Exception:
        page.screenshot(path=str(SHOTS / "widgets_failure.png"))
        raise
    finally:
        page.close()


def test_static_export_offline(browser, tmp_path):
    import torch

    import explorer
    from explorer import samplers, widgets

    probs = torch.rand(48, 9, generator=torch.Generator().manual_seed(0)) ** 4
    probs[:, -1] = 0
    trace = explorer.generate(explorer.StubDenoiser(probs), samplers.ReMDMCap(eta=0.3), steps=12,
                              seed=0, progress=False)
    path = widgets.TraceViewer(trace, columns=16).to_html(tmp_path / "trace.html")
    SHOTS.mkdir(parents=True, exist_ok=True)
    context, requests = offline_context(browser, 1300, 900)
    page = context.new_page()
    try:
        page.goto(path.as_uri(), timeout=30_000)
        page.wait_for_selector(".js-plotly-plot .heatmaplayer", timeout=30_000)
        assert page.evaluate("typeof window.Plotly") == "object"
        first = page.locator(".js-plotly-plot").first
        text = first.text_content()
        assert "masked" in text and "play" in text
        title = "() => document.querySelector('.js-plotly-plot .gtitle').textContent"
        assert page.evaluate(title).startswith("initial state")  # opens on the first frame
        page.screenshot(path=str(SHOTS / "static_export.png"), full_page=True)
        # the embedded play button animates the grid without a kernel
        page.locator(".js-plotly-plot .updatemenu-button").first.click()
        page.wait_for_function(f"() => !({title})().startsWith('initial state')", timeout=15_000)
        assert "step" in page.evaluate(title)
        assert remote(requests) == [], remote(requests)
    finally:
        context.close()


def test_static_grid_hover_shows_probability_and_candidates(browser, tmp_path):
    import torch

    import explorer
    from explorer import samplers, viz

    probs = torch.rand(32, 9, generator=torch.Generator().manual_seed(1)) ** 4
    probs[:, -1] = 0
    trace = explorer.generate(explorer.StubDenoiser(probs), samplers.MDLM(), steps=8, seed=0, progress=False)
    path = viz.to_html(viz.token_grid(trace, columns=16), tmp_path / "grid.html")
    context = browser.new_context(offline=True, viewport={"width": 1200, "height": 600})
    page = context.new_page()
    try:
        page.goto(path.as_uri(), timeout=30_000)
        box = page.locator(".js-plotly-plot .nsewdrag").first.bounding_box()
        page.mouse.move(box["x"] + box["width"] * 0.5 / 16, box["y"] + box["height"] * 0.5 / 2)
        page.wait_for_selector(".hoverlayer .hovertext", timeout=10_000)
        tip = page.locator(".hoverlayer .hovertext").first.text_content()
        assert "position 0" in tip and "p=" in tip and "top-k" in tip and "history" in tip, tip
    finally:
        context.close()



LIVE_NOTEBOOK = [
    "import explorer\nfrom explorer import samplers, widgets\nmodel = explorer.load_model('stories')",
    "live = widgets.LiveViewer(model, samplers.ReMDMLoop(), 256, prompt='Once upon a time', columns=16, fps=8)\nlive",
    # the second run starts when the first has ended, and runs long enough to be stopped
    "live.wait()\nsecond = widgets.LiveViewer(model, samplers.ReMDMLoop(), 4096, prompt='Once upon a time',"
    " columns=16, fps=8, start=False)\nsecond.start()\nsecond",
    "panel = widgets.ChatPanel(model, steps=32)\npanel",
]

# every live grid state drawn in the first live view, recorded in the page as it changes
WATCH_LIVE = """() => {
  window.__live = [];
  new MutationObserver(() => {
    const v = document.querySelector('.remdm-live-viewer');
    const g = v && v.querySelector('.remdm-live-grid');
    if (!g) return;
    const s = [...g.querySelectorAll('.remdm-cell')].map(c => c.dataset.state[0]).join('');
    if (s && window.__live[window.__live.length - 1] !== s) window.__live.push(s);
  }).observe(document.body, { subtree: true, childList: true, attributes: true });
}"""


def test_live_run_stop_and_a_chat_message(browser, lab):
    """On the shipped stories model: a live run draws several grid states, one with a remask,
    before it ends and becomes the scrubber; Stop on a second run leaves an incomplete trace in
    the viewer; one message goes through the chat panel and opens in the viewer."""
    url, token, work = lab
    write_notebook(work, "live_check.ipynb", LIVE_NOTEBOOK)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(60_000)
    try:
        open_and_run_all(page, url, token, "live_check.ipynb", before_run=lambda p: p.evaluate(WATCH_LIVE))
        first = page.locator(".remdm-live-viewer").nth(0)
        first.locator(".remdm-trace-viewer").wait_for(timeout=120_000)  # it became the scrubber
        assert "done" in first.locator(".remdm-live-status").text_content()
        states = page.evaluate("window.__live")
        assert len(set(states)) >= 3, states
        assert any("r" in s for s in states), "no remask was drawn while the run went"

        second = page.locator(".remdm-live-viewer").nth(1)
        second.scroll_into_view_if_needed()
        page.wait_for_function("(el) => /step \\d+ of/.test(el.textContent)",
                               arg=second.locator(".remdm-live-status").element_handle(), timeout=60_000)
        page.screenshot(path=str(SHOTS / "live_running.png"))
        second.locator(".remdm-stop").click()
        second.locator(".remdm-trace-viewer").wait_for(timeout=60_000)
        status = second.locator(".remdm-live-status").text_content()
        assert "stopped" in status and "partial trace" in status, status
        assert second.locator(".remdm-trace-viewer .remdm-cell").count() > 0

        chat = page.locator(".remdm-chat-panel")
        chat.scroll_into_view_if_needed()
        chat.locator(".remdm-chat-message textarea").fill("Once upon a time")
        chat.get_by_role("button", name="Generate").click()
        chat.locator(".remdm-chat-history .remdm-chat-turn").wait_for(timeout=120_000)
        chat.locator(".remdm-trace-viewer").wait_for(timeout=60_000)
        assert "Once upon a time" in chat.locator(".remdm-chat-history").text_content()
        page.screenshot(path=str(SHOTS / "chat_answered.png"))
    except Exception:
        page.screenshot(path=str(SHOTS / "live_failure.png"))
        raise
    finally:
        page.close()


VIEWER_NOTEBOOK = [
    "import torch\nimport explorer\nfrom explorer import samplers, widgets",
    "probs = torch.rand(128, 9, generator=torch.Generator().manual_seed(0)) ** 4\n"
    "probs[:, -1] = 0\nmodel = explorer.StubDenoiser(probs)\n"
    "trace = explorer.generate(model, samplers.ReMDMCap(eta=0.3), steps=24, seed=0, progress=False)",
    "widgets.TraceViewer(trace, length=16, columns=16, curves=False)   # a one-row grid",
    "viewer = widgets.TraceViewer(trace, length=128, columns=16, curves=False)\nviewer",
    "viewer   # the same viewer again: play must still play (ipywidgets#3967 stops W.Play after one step)",
]

SHOWN_TIP = ("() => [...document.querySelectorAll('.remdm-grid-tip')]"
             ".find(t => getComputedStyle(t).display === 'block')")

TIP_BOX = """() => { const t = [...document.querySelectorAll('.remdm-grid-tip')]
    .find(t => getComputedStyle(t).display === 'block');
  const r = t.getBoundingClientRect();
  return {display: getComputedStyle(t).display, left: r.left, top: r.top, right: r.right, bottom: r.bottom,
          width: document.documentElement.clientWidth, height: document.documentElement.clientHeight,
          text: t.textContent}; }"""

LIFELINE_MARKER = """(el) => { const p = el.querySelector('.remdm-lifeline .js-plotly-plot');
  const s = p && (p.layout.shapes || []).find(s => s.name === 'step-marker');
  return s ? s.x0 : null; }"""


def test_tooltips_stay_in_the_viewport_and_the_lifeline_follows_play(browser, lab):
    url, token, work = lab
    write_notebook(work, "viewer_check.ipynb", VIEWER_NOTEBOOK)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1300, "height": 800})
    page.set_default_timeout(30_000)
    try:
        open_and_run_all(page, url, token, "viewer_check.ipynb")
        viewers = page.locator(".remdm-trace-viewer")
        viewers.nth(1).locator(".remdm-cell").first.wait_for()
        # the one-row grid and the bottom row of the long one, each at the bottom edge of the window
        for viewer, pos in ((viewers.nth(0), 3), (viewers.nth(1), 125)):
            cell = viewer.locator(f".remdm-cell[data-pos='{pos}']")
            cell.evaluate("(c) => c.scrollIntoView({block: 'end'})")
            page.mouse.move(0, 0)
            cell.hover()
            page.wait_for_function(f"() => !!({SHOWN_TIP})()")
            box = page.evaluate(TIP_BOX)
            assert f"position {pos}" in box["text"] and "history" in box["text"], box
            assert 0 <= box["left"] and box["right"] <= box["width"], box
            assert 0 <= box["top"] and box["bottom"] <= box["height"], box  # fully inside the viewport
            page.screenshot(path=str(SHOTS / f"tooltip_{pos}.png"))

        viewer = viewers.nth(1)
        viewer.scroll_into_view_if_needed()
        viewer.locator(".remdm-cell[data-pos='5']").click()
        viewer.locator(".remdm-cell.remdm-selected[data-pos='5']").wait_for()  # outlined once the kernel answers
        page.wait_for_function(f"(el) => ({LIFELINE_MARKER})(el) === 24", arg=viewer.element_handle())
        _set_step(page, viewer, 0)
        page.wait_for_function(f"(el) => ({LIFELINE_MARKER})(el) === 0", arg=viewer.element_handle())
        viewers.nth(2).locator(".remdm-play-button").click()   # play in the second view of this viewer
        page.wait_for_function(f"(el) => ({LIFELINE_MARKER})(el) >= 6", arg=viewer.element_handle())
        viewer.locator(".remdm-cell[data-pos='9']").hover()  # a hover keeps the clicked cell in the details
        assert "position 5" in viewer.locator(".remdm-details").text_content()
    except Exception:
        page.screenshot(path=str(SHOTS / "viewer_failure.png"))
        raise
    finally:
        page.close()
