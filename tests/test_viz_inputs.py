"""Figure layout arguments that show nothing, lie past the sequence or miscount are refused by name,
instead of a ZeroDivisionError, a numpy IndexError or a figure of the wrong positions."""
from __future__ import annotations

import pytest
import torch

import explorer
from explorer import samplers, viz


@pytest.fixture(scope="module")
def trace():
    """Two samples of L = 16 from a stub model."""
    probs = torch.rand(16, 9, generator=torch.Generator().manual_seed(0))
    probs[:, -1] = 0
    return explorer.generate(explorer.StubDenoiser(probs), samplers.ReMDMCap(0.3), 6, num_samples=2, seed=0,
                             progress=False)


@pytest.mark.parametrize("figure", [viz.token_grid, lambda t, **kw: viz.grid_animation([t], **kw)])
@pytest.mark.parametrize("layout, expected", [
    (dict(columns=0), r"columns \(cells a row\) must be at least 1, got 0; give e.g. columns=32"),
    (dict(length=0), r"length \(positions shown\) must be at least 1, got 0; give e.g. length=256"),
])
def test_a_grid_window_that_shows_nothing_is_refused(trace, figure, layout, expected):
    with pytest.raises(ValueError, match=expected):
        figure(trace, **layout)


def test_a_window_starts_inside_the_sequence_and_may_run_past_its_end(trace):
    """token_grid(start=300) on L = 256 drew the last position alone, as if asked for it."""
    for start in (16, -1):
        for figure in (viz.token_grid, viz.token_text, lambda t, **kw: viz.grid_animation([t], **kw)):
            with pytest.raises(ValueError, match=rf"start={start} is outside this trace's positions 0\.\.15; "
                                                 "give a start in that range"):
                figure(trace, start=start)
    assert viz.token_grid(trace, start=15, length=256, columns=4).data[0].z.shape == (1, 4)


@pytest.mark.parametrize("sample", [2, 9, -1])
def test_step_curves_refuse_a_sample_the_trace_does_not_have(trace, sample):
    """It drew an all-zero figure; the other figures raise the IndexError of trace.index."""
    with pytest.raises(IndexError, match=rf"sample {sample} is out of range: this trace has 2 sample\(s\); "
                                         r"give sample=0\.\.1"):
        viz.step_curves(trace, sample=sample)
    with pytest.raises(IndexError, match="out of range"):
        viz.step_counts(trace, sample)
    assert viz.step_counts(trace, 1)["n_masked"].iloc[0] >= 0


def test_grid_animation_needs_one_label_per_trace(trace):
    with pytest.raises(ValueError, match=r"got 2 labels for 1 trace\(s\); give one label per trace"):
        viz.grid_animation([trace], labels=["x", "y"])
    assert viz.grid_animation([trace], labels=["only"]).layout.title.text.startswith("only")
