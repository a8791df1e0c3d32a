"""Notebook 02: run it (nbclient, as nbmake does) and check

* that the figures kept in the file (what a reader sees before running anything) are the figures a
  fresh run draws now -- if not, ``python scripts/keep_outputs.py notebooks/02_why_remasking.ipynb``;
* that each picture is preceded by its explanation and the page to share carries them;
* in headless Debian Chromium with the network cut off, its static HTML export: the first chart is
  the stories scaling picture with both samplers drawn; the repair picture shows the flagged record,
  its wrong value, "breaks: currency ≠ country" and a legend entry for every kind of cell.

The browser test is skipped only when /usr/bin/chromium is absent (``apt-get install -y chromium``);
a screenshot goes to build/browser/why_remasking.png (git-ignored).
"""
from __future__ import annotations

import re
import shutil

import pytest

from browser_support import ARGS, CHROMIUM, MARKS, ROOT, SHOTS, offline_context, remote

NOTEBOOK = ROOT / "notebooks" / "02_why_remasking.ipynb"


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """Notebook 02 run in a copy of notebooks/ (so its build/ export lands in a temporary folder)."""
    import nbformat
    from nbclient import NotebookClient

    work = tmp_path_factory.mktemp("nb02")
    src = NOTEBOOK
    shutil.copy(src, work / src.name)
    nb = nbformat.read(work / src.name, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(work)}}).execute()
    page = work / "build" / "why_remasking.html"
    assert page.is_file(), "notebook 02 did not write its static export build/why_remasking.html"
    return nb, page


def _plotly_outputs(nb):
    return [o["data"]["application/vnd.plotly.v1+json"] for c in nb.cells if c.cell_type == "code"
            for o in c.get("outputs", []) if "application/vnd.plotly.v1+json" in o.get("data", {})]


def _drawn(fig: dict) -> dict:
    """What a figure shows: its traces' data and its title, subtitle, annotations and meta (not the
    plotly template, which is the same every time)."""
    layout = fig.get("layout", {})
    return {"data": fig.get("data"), "title": layout.get("title"), "annotations": layout.get("annotations"),
            "meta": layout.get("meta")}


def test_kept_figures_are_what_a_fresh_run_draws(executed):
    import nbformat

    kept = _plotly_outputs(nbformat.read(NOTEBOOK, as_version=4))
    fresh = _plotly_outputs(executed[0])
    assert len(kept) == len(fresh) >= 4, "the file must keep every figure: run scripts/keep_outputs.py"
    for i, (k, f) in enumerate(zip(kept, fresh)):
        assert _drawn(k) == _drawn(f), (f"figure {i + 1} kept in {NOTEBOOK.name} differs from a fresh run's: "
                                        "python scripts/keep_outputs.py notebooks/02_why_remasking.ipynb")


def test_each_picture_follows_its_explanation_and_the_page_carries_them(executed):
    nb, page = executed
    cells = nb.cells
    pictures = [i for i, c in enumerate(cells) if c.cell_type == "code"
                and any("application/vnd.plotly.v1+json" in o.get("data", {}) for o in c.get("outputs", []))]
    assert len(pictures) >= 4
    for i in pictures:
        before = cells[i - 1]
        assert before.cell_type == "markdown" and "explains" in before.metadata and len(before.source) > 300, i
    text = page.read_text()
    assert "generative perplexity" in text                                 # the words, defined once
    for c in cells:
        if c.metadata.get("explains") in ("scaling", "repair", "rate", "causes", "aimed"):
            first = c.source.split("\n\n")[1].split("\n")[0]   # the paragraph's first line
            start = re.match(r"[A-Za-z ,]+", first).group(0)[:30]
            assert start in text, start
    # the notebook links to the page instead of printing a path object
    link = cells[-1].outputs[-1]["data"]
    assert "text/html" in link and 'href="build/why_remasking.html"' in link["text/html"]
    assert "PosixPath" not in str(link)


def test_first_chart_in_the_notebook_is_scaling_with_both_samplers(executed):
    nb, _ = executed
    first = _plotly_outputs(nb)[0]
    names = {t.get("name") for t in first["data"]}
    assert {"mdlm", "remdm-loop"} <= names, names
    assert "judge Gen PPL" in str(first["layout"]["annotations"])
    assert "lower is better" in first["layout"]["yaxis"]["title"]["text"]
    assert "worse" in first["layout"]["title"]["subtitle"]["text"]           # the crossover is said


@MARKS[0]
@MARKS[1]
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
            assert notes[-1].startswith("keeps every rule"), notes
            meta = page.evaluate("() => document.querySelectorAll('.js-plotly-plot')[1].layout.meta")
            title = repair.locator(".gtitle").first.text_content()
            assert title.startswith("A wrong currency is taken back and rewritten right"), title
            assert meta["takeaway"].startswith(f"Sample {meta['sample']}, record {meta['record']}: planted currency")
            cells = repair.locator(".heatmaplayer text").all_text_contents()
            planted = meta["takeaway"].split("planted currency ")[1].split(" ")[0]
            assert planted in cells, (planted, cells[:20])
            legend = repair.locator(".legendtext").all_text_contents()
            assert any("fixed anchor" in t for t in legend), legend            # the yellow column
            page.screenshot(path=str(SHOTS / "why_remasking.png"), full_page=True)
            assert remote(requests) == [], remote(requests)
        finally:
            context.close()
            browser.close()
