"""Widget options outside their choices are refused by name when the widget is built, instead of a
bare traitlets TraitError, a TypeError from deep inside, or an error only when the widget is used."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

import explorer
from explorer import samplers, widgets


@pytest.fixture(scope="module")
def model():
    probs = torch.rand(24, 9, generator=torch.Generator().manual_seed(0)) ** 4
    probs[:, -1] = 0
    return explorer.StubDenoiser(probs)


@pytest.fixture(scope="module")
def trace(model):
    return explorer.generate(model, samplers.ReMDMCap(eta=0.3), 6, seed=0, progress=False)


def test_chat_panel_names_the_samplers_it_offers(model):
    with pytest.raises(ValueError, match=r"sampler='zzz' is not one of the choices: 'mdlm', .*'remdm-loop'"):
        widgets.ChatPanel(model, sampler="zzz")
    assert widgets.ChatPanel(model, sampler="mdlm").sampler_box.value == "mdlm"


@pytest.fixture(scope="module")
def sweep_table():
    return pd.DataFrame({"sampler": ["mdlm", "remdm-cap"] * 2, "steps": [4, 4, 8, 8], "seed": 0,
                         "metric": "entropy", "value": [1.0, 1.1, 1.2, 1.3], "model_calls": [4, 4, 8, 8],
                         "seconds": 0.1})


@pytest.mark.parametrize("option, expected", [
    (dict(metric="zz"), r"metric='zz' is not one of the choices: 'entropy'"),
    (dict(baseline="zz"), r"baseline='zz' is not one of the choices: 'mdlm', 'remdm-cap'"),
])
def test_sweep_explorer_refuses_a_metric_or_baseline_the_sweep_lacks(sweep_table, option, expected):
    """A wrong baseline was accepted and only said 'select the baseline' in the return-on-compute view."""
    with pytest.raises(ValueError, match=expected + "; pass one of them"):
        widgets.SweepExplorer(sweep_table, **option)
    assert widgets.SweepExplorer(sweep_table, baseline="remdm-cap", metric="entropy").baseline == "remdm-cap"


def test_trace_viewer_opens_a_trace_file(tmp_path, trace):
    """TraceViewer("run.csv") failed with "must be str, not int"."""
    path = trace.to_csv(tmp_path / "run.csv")
    for given in (path, str(path)):
        v = widgets.TraceViewer(given, curves=False)
        assert v.trace.same_as(trace) and v.step == trace.last_step
    with pytest.raises(TypeError, match="TraceViewer shows a Trace .* or a trace file's path, got DataFrame"):
        widgets.TraceViewer(trace.events)


@pytest.mark.parametrize("option, expected", [
    (dict(fps=0), r"fps \(the most grid frames drawn a second\) must be above 0, got 0; give e\.g\. fps=6"),
    (dict(columns=0), r"columns \(cells a row\) must be at least 1, got 0"),
    (dict(length=0), r"length \(positions shown\) must be at least 1, got 0"),
])
def test_live_viewer_refuses_a_layout_that_cannot_draw(model, option, expected):
    with pytest.raises(ValueError, match=expected):
        widgets.LiveViewer(model, samplers.MDLM(), 4, start=False, **option)


def test_intervention_viewer_checks_its_seed_when_built(model, trace):
    """seed=-1 was accepted and failed only when a branch was run."""
    with pytest.raises(ValueError, match="seed must be an integer >= 0, got -1"):
        widgets.InterventionViewer(model, trace, seed=-1)
    assert widgets.InterventionViewer(model, trace, seed=2).branch(2, remask=[0]).meta["seed"] == 2


def test_waiting_on_a_refused_live_run_raises_generates_error(model):
    """wait() returned None, so `trace = live.wait()` went on with no trace; the status line says it too."""
    live = widgets.LiveViewer(model, samplers.MDLM(), 4, batch_size=0)
    with pytest.raises(ValueError, match="batch_size must be a positive integer or None, got 0") as refused:
        live.wait(timeout=60)
    assert refused.value is live.error and live.trace is None and "could not run" in live.status.value


def test_a_viewer_paged_past_the_end_exports_what_it_shows(tmp_path):
    """show_window past the end of a short trace clips to its last position (test_widgets); the
    page export then refused the same start that the grid had drawn."""
    probs = torch.rand(6, 5, generator=torch.Generator().manual_seed(0))
    probs[:, -1] = 0
    t = explorer.generate(explorer.StubDenoiser(probs), samplers.MDLM(), steps=4, seed=0, progress=False)
    v = widgets.TraceViewer(t, curves=False)
    v.show_window(100)
    assert list(v.grid.positions) == [5]
    v.to_html(tmp_path / "page.html")
    assert (tmp_path / "page.html").stat().st_size > 0
