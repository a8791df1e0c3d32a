"""Notebook 02 in a real browser: run it (nbclient, as nbmake does), open its static HTML export in
headless Debian Chromium with the network cut off, and check what a reader sees first.

* the first chart is the stories scaling picture, with both samplers' traces drawn;
* the repair picture shows the flagged record: its wrong value and "breaks: currency ≠ country".

Skipped only when /usr/bin/chromium is absent (``apt-get install -y chromium``); a screenshot goes to
build/browser/why_remasking.png (git-ignored).
"""
from __future__ import annotations

import shutil

import pytest

from browser_support import ARGS, CHROMIUM, MARKS, ROOT, SHOTS, offline_context, remote

pytestmark = MARKS


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """Notebook 02 run in a copy of notebooks/ (so its build/ export lands in a temporary folder)."""
    import nbformat
    from nbclient import NotebookClient

    work = tmp_path_factory.mktemp("nb02")
    src = ROOT / "notebooks" / "02_why_remasking.ipynb"
    shutil.copy(src, work / src.name)
    nb = nbformat.read(work / src.name, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(work)}}).execute()
    page = work / "build" / "why_remasking.html"
    assert page.is_file(), "notebook 02 did not write its static export build/why_remasking.html"
    return nb, page


def _plotly_outputs(nb):
    return [o["data"]["application/vnd.plotly.v1+json"] for c in nb.cells if c.cell_type == "code"
            for o in c.get("outputs", []) if "application/vnd.plotly.v1+json" in o.get("data", {})]


def test_first_chart_in_the_notebook_is_scaling_with_both_samplers(executed):
    nb, _ = executed
    first = _plotly_outputs(nb)[0]
    names = {t.get("name") for t in first["data"]}
    assert {"mdlm", "remdm-loop"} <= names, names
    assert "judge Gen PPL" in str(first["layout"]["annotations"])


def test_static_export_shows_scaling_and_the_flagged_record(executed):
    from playwright.sync_api import sync_playwright

    _, page_path = executed
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, timeout=60_000)
        context, requests = offline_context(browser, 1300, 1000)
        page = context.new_page()
        try:
            page.goto(page_path.as_uri(), timeout=60_000)
            page.wait_for_selector(".js-plotly-plot .scatterlayer", timeout=60_000)
            plots = page.locator(".js-plotly-plot")
            # the first chart: both samplers drawn (one trace each in the quality panel, one in NFE)
            names = page.evaluate("() => document.querySelectorAll('.js-plotly-plot')[0].data.map(t => t.name)")
            assert names.count("mdlm") == 2 and names.count("remdm-loop") == 2, names
            legend = plots.nth(0).locator(".legendtext").all_text_contents()
            assert {"mdlm", "remdm-loop"} <= set(legend), legend
            # the repair picture: the record's wrong value is flagged with the rule it breaks
            repair = plots.nth(1)
            repair.scroll_into_view_if_needed()
            page.wait_for_selector(".js-plotly-plot .heatmaplayer", timeout=30_000)
            notes = repair.locator(".annotation-text").all_text_contents()
            assert any(n.startswith("⚑ breaks: currency ≠ country") for n in notes), notes
            assert notes[-1] == "keeps every rule", notes
            meta = page.evaluate("() => document.querySelectorAll('.js-plotly-plot')[1].layout.meta")
            title = repair.locator(".gtitle").first.text_content()
            assert title.startswith(f"Sample {meta['sample']}, record {meta['record']}: planted currency"), title
            cells = repair.locator(".heatmaplayer text").all_text_contents()
            planted = title.split("planted currency ")[1].split(" ")[0]
            assert planted in cells, (planted, cells[:20])
            page.screenshot(path=str(SHOTS / "why_remasking.png"), full_page=True)
            assert remote(requests) == [], remote(requests)
        finally:
            context.close()
            browser.close()
