"""Widgets build, the scrubber changes the figure, branches run, static fallbacks are self-contained."""
from __future__ import annotations

import re

import pandas as pd
import pytest
import torch

import explorer
from explorer import samplers, viz, widgets


@pytest.fixture(scope="module")
def model():
    g = torch.Generator().manual_seed(0)
    probs = torch.rand(48, 9, generator=g) ** 4
    probs[:, -1] = 0
    return explorer.StubDenoiser(probs)


@pytest.fixture(scope="module")
def pair(model):
    a = explorer.generate(model, samplers.MDLM(), steps=12, seed=3, progress=False)
    b = explorer.generate(model, samplers.ReMDMCap(eta=0.4), steps=12, seed=3, progress=False)
    return a, b


def test_scrubber_moves_the_grid(pair):
    a, b = pair
    v = widgets.TraceViewer(b, columns=16, step=0)
    z0 = list(v.grid.codes)
    assert len(z0) == b.seq_len and set(z0) == {0}  # everything masked before step 1
    v.step = 6
    assert v.grid.codes != z0
    assert v.grid.codes == b.index().frame(6).codes.tolist()
    assert "step 6 of 12" in v.grid.title
    assert v.last_render_s < 0.5
    assert set(s.x0 for s in v.curves.layout.shapes if s.name == "step-marker") == {6}
    v._nudge(+1)
    assert v.step == 7
    with pytest.raises(IndexError):
        v.step = 99


def test_hover_and_click_fill_details_and_lifeline(pair):
    _, b = pair
    v = widgets.TraceViewer(b, columns=16)
    hist = b.events[b.events["position"] == 5]

    v.grid.click(5)  # what a click on the cell drawn for position 5 sends
    assert v.selected == 5
    assert "position 5" in v.details.value
    assert v.details.value.count("<tr>") == len(hist) + 1  # header + one row per event
    assert len(v.lifeline_box.children) == 1
    assert v.lifeline_box.children[0].figure.layout.meta["positions"] == [5]
    # the lifeline is in the widget's synced state (plotly's mime type), so a reload redraws it
    (shown,) = v.lifeline_box.children[0].get_state()["outputs"]
    assert shown["data"]["application/vnd.plotly.v1+json"]["layout"]["meta"]["positions"] == [5]


def test_window_over_long_sequence(model):
    probs = torch.rand(600, 9) ** 4
    probs[:, -1] = 0
    m = explorer.StubDenoiser(probs)
    t = explorer.generate(m, samplers.MDLM(), steps=8, seed=0, progress=False)
    v = widgets.TraceViewer(t, length=128, columns=32, curves=False)
    assert len(v.grid.codes) == 128  # only the window is drawn
    v.window.value = 256
    assert v.grid.start == 256 and list(v.grid.positions) == list(range(256, 384))


def test_compare_and_static_page(pair, tmp_path):
    a, b = pair
    c = widgets.CompareViewer([a, b], columns=16)
    c.step = 3
    assert [v.step for v in c.viewers] == [3, 3]
    path = c.to_html(tmp_path / "cmp.html")
    page = path.read_text()
    assert not re.findall(r'<script[^>]*\bsrc=', page)
    assert page.count("Plotly.newPlot") == 3 and page.count("Plotly.addFrames(") == 1


def test_intervention_branches_beside_parent(model, pair):
    _, b = pair
    iv = widgets.InterventionViewer(model, b, step=6, columns=16)
    decoded = (b.state_at(6)[0] != b.mask_id).nonzero().flatten().tolist()
    iv.select(decoded[:2])
    assert iv.parent_view.grid.selected == sorted(decoded[:2])
    iv._continue()
    assert len(iv.branches) == 1, iv.status.value
    br = iv.branches[0]
    assert br.meta["parent"]["step"] == 6
    assert sorted(p for _, p in br.meta["parent"]["edit"]["remask"]) == sorted(decoded[:2])
    assert (br.state_at(6)[0, decoded[:2]] == b.mask_id).all()
    assert isinstance(iv.compare_box.children[0], widgets.CompareViewer)
    # pinning a masked position is refused with a visible message, not a silent failure
    masked = (b.state_at(6)[0] == b.mask_id).nonzero().flatten().tolist()
    if masked:
        iv.mode.value = "pin"
        iv.select(masked[:1])
        iv._continue()
        assert "could not branch" in iv.status.value and len(iv.branches) == 1


def test_sweep_explorer(tmp_path):
    rows = []
    for s, base in (("mdlm", 0.5), ("remdm-loop", 0.6)):
        for T, bump in ((8, 0.0), (16, 0.1), (32, 0.15)):
            for seed in (0, 1):
                rows.append(dict(sampler=s, steps=T, seed=seed, metric="validity", value=base + bump + seed * 0.01,
                                 stderr=0.01, model_calls=T, seconds=T / 100, tokens_per_second=1.0))
    df = pd.DataFrame(rows)
    sx = widgets.SweepExplorer(df)
    assert sx.out.children and sx.message.value == ""
    sx.view_box.value = "return on compute"
    assert sx.message.value == "" and sx.out.children
    sx.view_box.value = "table"
    sx.sampler_box.value = ("remdm-loop",)
    sx.view_box.value = "return on compute"
    assert "baseline" in sx.message.value  # says why, and the last view (another selection) is gone
    assert sx.out.children == ()
    sx.sampler_box.value = ()
    sx.view_box.value = "quality vs steps"
    assert "no sampler selected" in sx.message.value and sx.out.children == ()
    assert "no sampler selected" in sx.to_html(tmp_path / "none.html").read_text()
    sx.sampler_box.value = ("mdlm", "remdm-loop")
    sx.view_box.value = "table"
    assert "<table" in sx.out.children[0].value
    page = sx.to_html(tmp_path / "sweep.html").read_text()
    assert not re.findall(r'<script[^>]*\bsrc=', page)
    with pytest.raises(ValueError, match="not a sweep"):
        widgets.SweepExplorer(pd.DataFrame({"a": [1]}))


def test_sample_switch(model):
    t = explorer.generate(model, samplers.ReMDMCap(eta=0.4), steps=8, num_samples=2, seed=1, progress=False)
    v = widgets.TraceViewer(t, columns=16, step=4)
    z0 = list(v.grid.codes)
    v.sample_box.value = 1
    assert v.index.sample == 1
    assert v.grid.codes == t.index(1).frame(4).codes.tolist()
    assert v.grid.codes != z0


def test_speed_sets_play_interval_and_stride(pair):
    v = widgets.TraceViewer(pair[1], columns=16, curves=False)
    v.speed.value = "250 steps/s"
    assert (v.play.interval, v.play.step) == (20, 5)
    v.speed.value = "2 steps/s"
    assert (v.play.interval, v.play.step) == (500, 1)


def test_sweep_seconds_exclude_first_call_warm_up():
    """A model whose first forward pass costs 0.4 s (like a process's first CUDA call): the sweep's
    "seconds" must not charge it to the first cell, or T = 4 looks slower than T = 8."""
    import time

    class SlowStart(explorer.StubDenoiser):
        first = True

        @staticmethod
        def _first_call():
            if SlowStart.first:
                SlowStart.first = False
                time.sleep(0.4)

        def logits(self, z):
            self._first_call()
            return super().logits(z)

        def body(self, z):
            self._first_call()
            return super().body(z)

    probs = torch.rand(16, 9, generator=torch.Generator().manual_seed(0)) ** 4
    probs[:, -1] = 0
    df = explorer.sweep(SlowStart(probs), {"mdlm": samplers.MDLM()}, steps=[4, 8], num_samples=2,
                        metrics=["entropy"], progress=False)
    secs = df.groupby("steps")["seconds"].first()
    assert not SlowStart.first  # the slow call happened, outside the timed cells
    assert secs[4] < 0.2 and secs[8] < 0.2, secs.to_dict()


def _synced(widget) -> dict:
    """What a front end built after a browser reload receives: the widget's synced state."""
    own = ("title", "columns", "start", "texts", "codes", "hovers", "selected", "legend")
    state = widget.get_state()
    assert set(own) <= set(state)
    return {k: state[k] for k in own}


def test_grid_state_alone_rebuilds_the_view_after_scrubbing(pair):
    """After scrubbing, the synced state equals that of a viewer opened at that step, so a
    reloaded page (which sees only synced state) shows the current grid, not the first one."""
    _, b = pair
    v = widgets.TraceViewer(b, columns=16, step=2)
    v.step = 9
    v.grid.click(7)
    fresh = widgets.TraceViewer(b, columns=16, step=9)
    fresh.grid.click(7)
    assert _synced(v.grid) == _synced(fresh.grid)
    assert "step 9 of 12" in v.grid.title and v.slider.value == 9
    assert "up to step 9 of 12" in v.details.value  # details agree with the grid and slider
    # the curves' kernel-side copy (what a reloaded view draws) carries the step marker too
    shapes = v.curves.get_state()["_widget_layout"]["shapes"]
    assert {s["x0"] for s in shapes if s.get("name") == "step-marker"} == {9}
    v.step = 3
    assert "up to step 3 of 12" in v.details.value


def test_clicks_map_to_the_drawn_cell(model):
    probs = torch.rand(300, 9, generator=torch.Generator().manual_seed(2)) ** 4
    probs[:, -1] = 0
    t = explorer.generate(explorer.StubDenoiser(probs), samplers.MDLM(), steps=6, seed=0, progress=False)
    v = widgets.TraceViewer(t, length=64, columns=16, curves=False)
    v.window.value = 128
    v.grid.click(130)
    assert v.selected == 130 and "position 130" in v.details.value
    v.grid.click(5)  # a click from a frame no longer drawn (window 0..63) selects nothing
    assert v.selected == 130
    # the front end sends {"event": "click", "position": p} for the cell it drew at p
    v.grid._on_front_end_msg(v.grid, {"event": "click", "position": 140}, [])
    assert v.selected == 140
    v.grid._on_front_end_msg(v.grid, {"event": "click", "position": "junk"}, [])
    assert v.selected == 140


def test_every_panel_follows_the_sample(model):
    t = explorer.generate(model, samplers.ReMDMCap(eta=0.4), steps=8, num_samples=3, seed=1, progress=False)
    v = widgets.TraceViewer(t, columns=16, step=5)
    v.grid.click(4)
    assert "sample 0" in v.details.value and "(sample 0)" in v.curves.layout.title.text
    v.sample_box.value = 2
    assert "sample 2" in v.details.value and "position 4" in v.details.value
    assert v.details.value == widgets.scrubber.position_history_html(t.index(2), 4, upto=5)
    assert "(sample 2)" in v.curves.layout.title.text
    assert v.curves.get_state()["_widget_layout"]["title"]["text"].endswith("(sample 2)")
    assert v.lifeline_box.children[0].figure.layout.meta["sample"] == 2
    assert v.grid.codes == t.index(2).frame(5).codes.tolist()


def test_details_columns_are_separated(pair):
    _, b = pair
    v = widgets.TraceViewer(b, columns=16)
    v.grid.click(3)
    cells = re.findall(r"<t[dh]([^>]*)>", v.details.value)
    assert len(cells) >= 10
    for attrs in cells:  # every cell keeps a gap on its right, so "0.061" and "250 0.07" cannot touch
        pad = re.search(r"padding:\s*(\d+)px\s+(\d+)px", attrs)
        assert pad and int(pad.group(2)) >= 6, attrs


def test_compare_pages_grids_together_and_sits_side_by_side(model):
    probs = torch.rand(300, 9, generator=torch.Generator().manual_seed(3)) ** 4
    probs[:, -1] = 0
    m = explorer.StubDenoiser(probs)
    a = explorer.generate(m, samplers.MDLM(), steps=8, seed=0, progress=False)
    b = explorer.generate(m, samplers.ReMDMCap(eta=0.3), steps=8, seed=0, progress=False)
    c = widgets.CompareViewer([a, b], length=64, columns=16)
    assert c.window is not None
    assert all(v.window not in v.children and v.controls not in v.children for v in c.viewers)
    c.window.value = 192
    assert [v.grid.start for v in c.viewers] == [192, 192]
    c.show_window(64)
    assert [v.start for v in c.viewers] == [64, 64] and c.window.value == 64
    c.step = 4
    assert [v.grid.title.split(" · ")[1] for v in c.viewers] == ["step 4 of 8"] * 2
    # one row that wraps: each grid asks for ~32 px per column, so two 16-column grids share a 1250 px row
    assert c.grids.layout.flex_flow == "row wrap"
    need = [int(v.layout.min_width.rstrip("px")) for v in c.viewers]
    assert sum(need) + 24 < 1250


def test_branch_opens_at_the_edited_region(model):
    probs = torch.rand(300, 9, generator=torch.Generator().manual_seed(4)) ** 4
    probs[:, -1] = 0
    m = explorer.StubDenoiser(probs)
    t = explorer.generate(m, samplers.MDLM(), steps=8, seed=0, progress=False)
    iv = widgets.InterventionViewer(m, t, step=4, length=128, columns=16)
    decoded = (t.state_at(4)[0] != t.mask_id).nonzero().flatten()
    edit = [int(p) for p in decoded[decoded >= 200][:2]]
    iv.branch(4, remask=edit)
    for v in iv.compare.viewers:
        assert all(p in v.grid.positions for p in edit), (v.grid.start, edit)
        assert v.grid.selected == edit
    # parent and branch differ inside the window shown (the edit is what the user sees)
    p_codes, b_codes = (iv.compare.viewers[i].grid for i in (0, 1))
    iv.compare.step = 4
    assert p_codes.texts != b_codes.texts or p_codes.codes != b_codes.codes


def test_final_argmax_pass_is_labelled(model):
    loop = explorer.generate(model, samplers.ReMDMLoop(), steps=16, seed=0, progress=False)
    ix = loop.index()
    assert ix.final_step == loop.last_step == 17
    v = widgets.TraceViewer(loop, columns=16)
    assert "final argmax pass (after step 16)" in v.grid.title and "of 16" not in v.grid.title
    v.step = 16
    assert "step 16 of 16" in v.grid.title
    dfm = explorer.generate(model, samplers.DFMCorrector(), steps=16, seed=0, progress=False)
    ixd = dfm.index()
    # DFM's corrector steps run past T: they are real steps, not the final pass
    assert ixd.step_label(20) == f"step 20 of {ixd.final_step - 1}"
    assert ixd.step_label(ixd.final_step).startswith("final argmax pass")
    page_labels = [s["label"] for s in viz.grid_animation(loop).layout.sliders[0]["steps"]]
    assert page_labels[-1] == "17 (final pass)" and not any("final" in x for x in page_labels[:-1])


def test_cells_carry_the_positions_the_index_drew():
    """A window asked to start past the end of a shorter trace (compare views page traces of
    different lengths together) labels its cells with the positions actually drawn."""
    probs = torch.rand(20, 9, generator=torch.Generator().manual_seed(6)) ** 4
    probs[:, -1] = 0
    t = explorer.generate(explorer.StubDenoiser(probs), samplers.MDLM(), steps=4, seed=0, progress=False)
    v = widgets.TraceViewer(t, length=8, columns=4, curves=False)
    v.show_window(40)  # the window slider holds it to its last window, 12..19
    assert v.start == 12 and list(v.grid.positions) == list(range(12, 20))
    c = widgets.CompareViewer([t, t], length=32, columns=4)  # no window slider: the window is all of L
    c.viewers[1].show_window(18)
    fr = t.index().frame(c.step, 18, 32)
    assert list(c.viewers[1].grid.positions) == fr.positions.tolist() == [18, 19]
    assert c.viewers[1].grid.codes == fr.codes.tolist()
    c.viewers[1].show_window(40)  # past the end: the index clips to the last position
    assert list(c.viewers[1].grid.positions) == [19]


def test_compare_sample_box_switches_every_grid(model):
    a = explorer.generate(model, samplers.MDLM(), steps=6, num_samples=2, seed=0, progress=False)
    b = explorer.generate(model, samplers.ReMDMCap(eta=0.3), steps=6, num_samples=2, seed=0, progress=False)
    c = widgets.CompareViewer([a, b], columns=16, step=3)
    c.sample_box.value = 1
    assert [v.grid.codes for v in c.viewers] == [t.index(1).frame(3).codes.tolist() for t in (a, b)]
    assert all(v.sample == 1 for v in c.viewers)


# -- issue 19: a viewer that never gets in the way ------------------------------------------------
def test_click_outlines_the_cell_and_keeps_it_against_hovers(pair):
    _, b = pair
    v = widgets.TraceViewer(b, columns=16)
    v.grid.hover(3)  # nothing clicked yet: hovering previews a cell in the details
    assert "position 3" in v.details.value and v.grid.selected == []
    v.grid.click(5)
    assert v.grid.selected == [5]
    v.grid.hover(9)  # the tooltip shows the hovered cell; the clicked one stays in the details
    assert "position 5" in v.details.value and v.selected == 5
    v.grid.click(9)
    assert v.grid.selected == [9] and "position 9" in v.details.value


def test_lifeline_marker_follows_the_step(pair):
    _, b = pair
    v = widgets.TraceViewer(b, columns=16, step=4)
    v.grid.click(5)

    def marker():
        (shown,) = v.lifeline_box.children[0].outputs
        shapes = shown["data"]["application/vnd.plotly.v1+json"]["layout"]["shapes"]
        return {s["x0"] for s in shapes if s.get("name") == "step-marker"}
    assert marker() == {4}
    v.step = 9  # the slider (and play, which drives it) moves the marker too
    assert marker() == {9}


def test_final_pass_reads_as_final_pass_not_step_t_plus_one(model):
    loop = explorer.generate(model, samplers.ReMDMLoop(), steps=16, seed=0, progress=False)
    v = widgets.TraceViewer(loop, columns=16)
    assert v.slider.readout is False  # a bare "17" beside a run "of 16" read as an off-by-one
    assert v.step_label.value == "final argmax pass (after step 16)"
    v.step = 16
    assert v.step_label.value == "step 16 of 16"


@pytest.fixture(scope="module")
def tiny_llada(tmp_path_factory):
    from explorer.models.random_checkpoint import write_random_checkpoint
    return explorer.load_model(write_random_checkpoint(tmp_path_factory.mktemp("llada"), "llada"))


def test_prompted_runs_count_positions_from_the_answer(tiny_llada):
    """A batch of two prompts (left-padded) watched live, then scrubbed: one numbering, counted from
    the first answer token, in the live grid, the scrubber, tooltips, details and lifelines."""
    lv = widgets.LiveViewer(tiny_llada, samplers.ReMDMLLaDA(block_length=8), 8, prompt=["Hi", "A longer prompt"],
                            gen_length=8, fps=1000)
    trace = lv.wait(timeout=60)
    start = trace.meta["gen_start"]
    assert trace.num_samples == 2 and start > 0 and lv.frames > 0
    assert lv.states and len(lv.states[-1][1]) == 8  # the live grid showed the answer only
    v = lv.viewer
    assert v.start == start and v.grid.origin == start and v.grid.start == start
    v.grid.click(start + 2)
    assert "<b>position 2</b>" in v.details.value and f"absolute position {start + 2}" in v.details.value
    hover = v.grid.hovers[2]
    assert hover.startswith("<b>position 2</b>") and f"absolute position {start + 2}" in hover
    assert v.lifeline_box.children[0].figure.layout.yaxis.ticktext == ("pos 2",)
    assert viz.grid.position_name(3, 8) == "prompt position -5"


def test_every_sampler_runs_live(model):
    """Every registered sampler runs in a live view; one that generate refuses on the stub (a
    re-scoring rule on a context-free model) shows generate's own message and runs on orders."""
    from explorer.samplers import REGISTRY
    orders = None
    for name in REGISTRY:
        lv = widgets.LiveViewer(model, samplers.by_name(name), 8, fps=1000)
        try:
            trace = lv.wait(timeout=60)
        except ValueError:      # refused: wait() raises generate's error
            trace = None
        if trace is None:
            with pytest.raises(ValueError) as refused:
                explorer.generate(model, samplers.by_name(name), 8, progress=False)
            assert str(refused.value).splitlines()[0] in html_unescape(lv.status.value), name
            orders = orders or explorer.load_model("orders")
            lv = widgets.LiveViewer(orders, samplers.by_name(name), 8, fps=1000)
            trace = lv.wait(timeout=120)
        assert trace is not None and trace.complete and lv.error is None, (name, lv.status.value)
        assert lv.frames > 0 and isinstance(lv.viewer, widgets.TraceViewer), name


def test_compare_marks_differences_and_shares_one_cell_width(pair):
    a, b = pair
    c = widgets.CompareViewer([a, b], columns=16)
    fa, fb = a.final[0], b.final[0]
    want = sorted((fa != fb).nonzero().flatten().tolist())
    assert want, "the two runs should differ somewhere"
    assert [v.grid.differs for v in c.viewers] == [want, want]
    c.step = 0
    assert all(v.grid.differs == [] for v in c.viewers)  # both all masked
    assert len({v.grid.cell_chars for v in c.viewers}) == 1 and c.viewers[0].grid.cell_chars >= 1


def test_end_of_text_is_a_visible_break_not_markup():
    assert viz.grid.cell_text("<|endoftext|>") == "¶end"
    assert viz.grid.cell_text("a<b") == "a&lt;b"
    assert viz.grid.readable_ends("token &lt;|endoftext|&gt; p=0.9") == "token ¶end p=0.9"


# -- issue 19: the live view ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def slow_model():
    """A stub whose steps take a few ms, so a live view draws several frames."""
    import time

    class Slow(explorer.StubDenoiser):
        def logits(self, z):
            time.sleep(0.004)
            return super().logits(z)

        def body(self, z):
            time.sleep(0.004)
            return super().body(z)

    probs = torch.rand(48, 9, generator=torch.Generator().manual_seed(0)) ** 4
    probs[:, -1] = 0
    return Slow(probs)


def test_live_view_draws_states_then_becomes_the_scrubber(slow_model):
    from explorer.viz.palette import REMASKED
    lv = widgets.LiveViewer(slow_model, samplers.ReMDMCap(eta=0.3), 200, num_samples=2, columns=16, fps=50)
    trace = lv.wait(timeout=60)
    assert trace is not None and trace.complete and lv.error is None
    states = {codes for _, codes in lv.states}
    assert len(states) >= 3 and any(REMASKED in codes for codes in states)
    assert isinstance(lv.viewer, widgets.TraceViewer) and lv.viewer.trace is trace  # one trace, not two
    assert lv.viewer in lv.children and lv.grid_box not in lv.children
    assert "done" in lv.status.value and "model calls" in lv.status.value
    ref = explorer.generate(slow_model, samplers.ReMDMCap(eta=0.3), 200, num_samples=2, progress=False)
    assert torch.equal(ref.final, trace.final)  # watching changes nothing


def test_live_view_stop_keeps_a_partial_trace(slow_model):
    lv = widgets.LiveViewer(slow_model, samplers.MDLM(), 400, start=False)
    lv.stop()  # pressed before the first step ends: the run stops after it
    lv.start()
    trace = lv.wait(timeout=60)
    assert trace is not None and not trace.complete and trace.last_step == 1
    assert "stopped" in lv.status.value and isinstance(lv.viewer, widgets.TraceViewer)


def test_live_view_interrupt_while_waiting_keeps_a_partial_trace(slow_model, monkeypatch):
    lv = widgets.LiveViewer(slow_model, samplers.MDLM(), 400, start=False)
    lv.start()
    real_wait = lv._done.wait
    calls = []

    def interrupted(timeout=None):
        if not calls:
            calls.append(1)
            raise KeyboardInterrupt
        return real_wait(timeout)
    monkeypatch.setattr(lv._done, "wait", interrupted)
    trace = lv.wait()
    assert trace is not None and not trace.complete


def test_live_view_shows_generates_refusal_in_one_line(model):
    lv = widgets.LiveViewer(model, samplers.MDLM(), 0)
    with pytest.raises(ValueError):     # wait() raises the refusal, so a script does not go on with no trace
        lv.wait(timeout=30)
    with pytest.raises(ValueError) as refused:
        explorer.generate(model, samplers.MDLM(), 0, progress=False)
    assert str(refused.value).splitlines()[0] in html_unescape(lv.status.value)
    assert "Traceback" not in lv.status.value


def html_unescape(s):
    import html
    return html.unescape(s)


# -- issue 19: the chat panel -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def stories():
    try:
        return explorer.load_model("stories")
    except Exception as exc:  # pragma: no cover - the shipped model is in the repository
        pytest.skip(f"shipped stories model missing: {exc}")


def test_chat_panel_offers_every_sampler_and_refuses_bad_requests(stories):
    from explorer.samplers import REGISTRY
    cp = widgets.ChatPanel(stories, steps=16)
    assert list(cp.sampler_box.options) == list(REGISTRY)
    assert cp.send("   ") is None and "empty" in cp.status.value and "type a prompt" in cp.status.value
    long = " ".join(["the"] * 200)
    assert cp.send(long) is None and "shorten the prompt" in cp.status.value
    assert cp.gen_box.value == 0                 # nothing fits after it; the refused send left 1 there
    cp.message.value = long
    assert cp.gen_box.value == 0
    cp.generate_button.click()
    assert "shorten the prompt" in cp.status.value and cp.gen_box.value == 0
    cp.sampler_box.value = "dream"
    assert {"alg", "alg_temp", "temperature", "top_p", "top_k"} <= {w.setting for w in cp.setting_widgets}
    cp.sampler_box.value = "llada"
    switches = [w for w in cp.setting_widgets if w.description in ("logits_eos_inf", "confidence_eos_eot_inf")]
    assert len(switches) == 2 and not any(w.disabled for w in switches)     # settings of the llada sampler
    cp.sampler_box.value = "remdm-cap"
    [eta] = [w for w in cp.setting_widgets if w.setting == "eta"]
    eta.value = 7.0
    assert cp.send("Once upon a time") is None and "eta" in cp.status.value


def test_chat_panel_builds_every_sampler_and_lists_every_fixed_set(stories):
    """Built from the panel's widgets at their defaults, each registered sampler is that sampler with
    its defaults (no widget for a field the constructor does not take); every text setting with a
    fixed set of values is a list of exactly the values the sampler accepts; a draft is a sampler spec."""
    import dataclasses

    import ipywidgets as W
    from explorer.samplers import REGISTRY
    cp = widgets.ChatPanel(stories, steps=16)
    lists = 0
    for name, cls in REGISTRY.items():
        cp.sampler_box.value = name
        assert cp.sampler().config == cls().config, name
        declared = {f.name: f for f in dataclasses.fields(cls)}
        for w in cp.setting_widgets:
            if w.setting is None or w.kind != "str":
                continue
            assert isinstance(w, W.Dropdown), f"{name}.{w.setting} is free text; declare it with settings.choice"
            assert tuple(w.options) == declared[w.setting].metadata["choices"]
            lists += 1
            for option in w.options:
                w.value = option
                assert getattr(cp.sampler(), w.setting) == option
            with pytest.raises(ValueError, match=w.setting):
                cls(**{w.setting: "no-such-" + w.setting})
            w.value = declared[w.setting].default
    assert lists == 5       # confidence order, dream alg, llada remasking and confidence_dtype, p2 decoded
    cp.sampler_box.value = "wino"
    tips = {w.setting: w.tooltip for w in cp.setting_widgets if w.setting}
    assert tips["threshold_back"].startswith("in (0, 1): tau_2") and not tips["max_accept"]
    cp.sampler_box.value = "fire"
    [draft] = [w for w in cp.setting_widgets if w.setting == "draft"]
    draft.value = "remdm-loop:eta=0.01"
    assert cp.sampler().draft.config == samplers.ReMDMLoop(eta=0.01).config
    draft.value = "no-such-sampler"
    with pytest.raises(ValueError, match="no-such-sampler"):
        cp.sampler()


def test_chat_panel_answers_then_compares_two_samplers(stories):
    cp = widgets.ChatPanel(stories, sampler="remdm-loop", steps=16)
    live = cp.send("Once upon a time")
    assert live is not None
    trace = live.wait(timeout=60)
    assert trace is not None and trace.complete
    assert trace.decode(trace.final[0, :4]).startswith("once upon a time")
    assert "prompt" in cp.history.value and "once upon a time" not in cp.history.value.split("</b>")[-1][:40]
    assert isinstance(live.viewer, widgets.TraceViewer)
    cp.sampler_box.value = "llada"
    again = cp.again()
    again.wait(timeout=60)
    assert cp.compare is not None and [t.meta["sampler"]["name"] for t in cp.compare.traces] == ["remdm-loop", "llada"]
    assert len(cp.runs) == 2 and cp.compare in cp.output.children


def test_chat_panel_refuses_a_gen_length_over_the_maximum(tiny_llada):
    m = tiny_llada
    cp = widgets.ChatPanel(m, steps=4, gen_length=4)
    cp.gen_box.value = m.max_length + 10
    assert cp.send("hi") is None
    assert "over" in cp.status.value and "use gen length &lt;=" in cp.status.value


# -- audit of the widgets: the intervention panel -----------------------------------------------
def test_intervention_edits_and_compares_the_sample_shown(model):
    t = explorer.generate(model, samplers.ReMDMCap(eta=0.4), steps=8, num_samples=2, seed=1, progress=False)
    iv = widgets.InterventionViewer(model, t, step=4, columns=16)
    iv.parent_view.sample_box.value = 1  # the user switches to sample 1, then edits what is shown
    decoded = (t.state_at(4)[1] != t.mask_id).nonzero().flatten().tolist()[:2]
    iv.select(decoded)
    iv._continue()
    [br] = iv.branches
    assert sorted(br.meta["parent"]["edit"]["remask"]) == [[1, p] for p in sorted(decoded)]
    assert (br.state_at(4)[1, decoded] == t.mask_id).all() and torch.equal(br.state_at(4)[0], t.state_at(4)[0])
    assert iv.compare.sample == 1 and "sample 1" in iv.status.value


def test_intervention_opens_on_a_step_it_can_branch_from(model):
    loop = explorer.generate(model, samplers.ReMDMLoop(), steps=8, seed=0, progress=False)
    iv = widgets.InterventionViewer(model, loop, columns=16)
    assert iv.parent_view.step == 7  # step 8 is the last sampler step, 9 the final pass
    iv._continue()
    assert len(iv.branches) == 1, iv.status.value
    assert "no edit" in iv.status.value


def test_intervention_numbers_positions_as_the_grid_does(tiny_llada):
    t = explorer.generate(tiny_llada, samplers.LLaDALowConfidence(), 8, prompt="hi", gen_length=8,
                          seed=0, progress=False)
    g = t.meta["gen_start"]
    assert g > 0
    iv = widgets.InterventionViewer(tiny_llada, t, step=4, columns=8, length=64)
    iv.parent_view.grid.click(g)  # the first answer cell: "position 0" in the grid and details
    assert iv.status.value == "selected positions: [0]"
    iv.branch(4, remask=[g])
    assert iv.compare.labels[1] == "branch: remask [0] at step 4"
    assert "remask [0] at step 4" in iv.status.value and f"remask [{g}]" not in iv.status.value


# -- audit of the widgets: the chat panel ---------------------------------------------------------
def _answer_text(page: str) -> str:
    import html
    body = re.search(r"remdm-chat-answer'[^>]*>(.*?)</div></div>", page, re.S).group(1)
    return html.unescape(re.sub(r"<[^>]+>", "", body))


@pytest.mark.parametrize("target", ["3*5+7=22", "café au lait"])
def test_chat_history_reads_as_the_trace_texts(tiny_llada, target):
    """The answer is decoded as a whole: no space between tokens, no split multi-byte character."""
    tok = tiny_llada.tokenizer
    ids = tok(target, add_special_tokens=False)["input_ids"]
    probs = torch.zeros(len(ids), len(tok))
    probs[range(len(ids)), ids] = 1.0
    stub = explorer.StubDenoiser(probs, mask_id=tok.convert_tokens_to_ids("<|mdm_mask|>"), tokenizer=tok)
    t = explorer.generate(stub, samplers.MDLM(), 4, progress=False)
    cp = widgets.ChatPanel(stub, sampler="mdlm")
    shown = _answer_text(cp.exchange_html({"text": "", "label": "mdlm", "trace": t}))
    assert shown == t.texts[0] == target


def test_chat_marks_rewritten_text_without_cutting_a_character(tiny_llada):
    from explorer.widgets.chat import text_spans
    tok = tiny_llada.tokenizer
    mask = tok.convert_tokens_to_ids("<|mdm_mask|>")
    probs = torch.ones(4, len(tok))
    probs[:, mask] = 0
    stub = explorer.StubDenoiser(probs, mask_id=mask, tokenizer=tok)
    t = explorer.generate(stub, samplers.MDLM(), 2, progress=False)  # a trace that decodes with tok
    ids = tok("café au lait", add_special_tokens=False)["input_ids"]
    text = t.decode(ids)
    marked = [i == 4 for i in range(len(ids))]  # the second byte of "é" was rewritten
    spans = text_spans(t, ids, marked, text)
    assert "".join(text[a:b] for a, b, _ in spans) == text
    assert [text[a:b] for a, b, m in spans if m] == ["é"]  # widened to the whole character
    assert text_spans(t, ids, [False] * len(ids), text) == [(0, len(text), False)]


def test_chat_without_tokenizer_says_why_in_the_status_line():
    probs = torch.ones(16, 10)
    probs[:, 9] = 0
    cp = widgets.ChatPanel(explorer.StubDenoiser(probs))  # fixed length, no tokenizer
    assert cp.send("hello") is None
    assert "no tokenizer" in cp.status.value


def test_chat_again_reuses_the_seed_of_the_run_it_compares_with(stories):
    cp = widgets.ChatPanel(stories, sampler="remdm-loop", steps=8, fps=1000)
    cp.send("Once upon a time").wait(timeout=60)
    cp.seed_box.value = 7  # the user tries another seed later, then asks for the same run with MDLM
    cp.sampler_box.value = "mdlm"
    cp.again().wait(timeout=60)
    assert [r["trace"].meta["seed"] for r in cp.runs] == [0, 0]
    assert [t.meta["seed"] for t in cp.compare.traces] == [0, 0]


# -- audit of the widgets: the notebook stand-in ----------------------------------------------------
@pytest.mark.parametrize("name", ["orders", "stories"])
def test_notebook_standin_reads_a_text_prompt(name, monkeypatch, capsys):
    def missing(*args, **kwargs):
        raise FileNotFoundError(f"no shipped model {name!r} (simulated)")
    monkeypatch.setattr(explorer, "load_model", missing)
    m = widgets.notebook_model(name)
    assert "UNTRAINED" in capsys.readouterr().out
    if m.tokenizer is None:
        pytest.skip("the shipped stories tokenizer is missing")
    prompt = "once upon a time" if name == "stories" else "order"
    ids = m.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    t = explorer.generate(m, samplers.MDLM(), 4, prompt=prompt, progress=False)
    assert t.final[0, :len(ids)].tolist() == ids and bool(t.fixed[0, :len(ids)].all())
    assert m.tokenizer.mask_token_id == m.mask_id


# -- audit of the widgets: the live view -------------------------------------------------------------
def test_live_view_offers_every_row_of_a_list_of_prompts(tiny_llada):
    prompts = ["hi", "a longer question"]
    lv = widgets.LiveViewer(tiny_llada, samplers.LLaDALowConfidence(), 4, num_samples=2, prompt=prompts,
                            gen_length=8, sample=3, fps=1000, start=False)
    assert [row for _, row in lv.sample_box.options] == [0, 1, 2, 3]  # prompt-major, as generate
    assert lv.sample_box.options[2][0] == "prompt 1 · sample 0"
    got = []
    lv.progress_html = lambda u, real=lv.progress_html: got.append((u, real(u))) or got[-1][1]
    trace = lv.start().wait(timeout=60)
    assert trace.num_samples == 4 and lv.viewer.sample == 3
    assert lv.viewer.sample_box.options == lv.sample_box.options   # the scrubber names rows as the live view did
    u, line = got[-1]
    rate = float(re.search(r"([\d,]+) tokens/s", line).group(1).replace(",", ""))
    want = 4 * 8 * u.steps_done / u.steps_total / u.elapsed   # every row's tokens
    assert abs(rate - want) <= 0.01 * want + 1
    with pytest.raises(ValueError, match="0..3"):
        widgets.LiveViewer(tiny_llada, samplers.LLaDALowConfidence(), 4, num_samples=2, prompt=prompts,
                           gen_length=8, sample=4, start=False)


def test_live_view_final_status_counts_the_steps_run(model):
    lv = widgets.LiveViewer(model, samplers.by_name("fire"), 8, fps=1000)
    trace = lv.wait(timeout=60)
    ran = trace.last_step - (trace.final_pass_step is not None)
    assert ran > 8 and f"done</b>: {ran} steps (T = 8)" in lv.status.value


def test_a_stopped_run_reads_as_stopped_not_finished(model):
    def stop_at_3(u):
        if u.step == 3:
            raise explorer.StopGeneration("stop")
    with pytest.warns(UserWarning):
        t = explorer.generate(model, samplers.ReMDMLoop(), 16, on_step=stop_at_3, progress=False)
    assert not t.complete and t.last_step == 3
    v = widgets.TraceViewer(t, columns=16)
    assert v.step_label.value == "step 3 of 16 (stopped after step 3)"
    assert v.grid.title.startswith("step 3 of 16 (stopped after step 3) · ")
    v.step = 2
    assert v.step_label.value == "step 2 of 16 (stopped after step 3)"
    fig = viz.grid_animation(t)  # the static page's frame titles say the same
    assert fig.frames[-1].layout.title.text.startswith("step 3 of 16 (stopped after step 3)")


def test_live_view_and_chat_panel_save_static_pages(slow_model, stories, tmp_path):
    lv = widgets.LiveViewer(slow_model, samplers.MDLM(), 400, fps=1000)
    with pytest.raises(ValueError, match="still going"):
        lv.to_html(tmp_path / "early.html")
    lv.stop()
    trace = lv.wait(timeout=60)
    page = lv.to_html(tmp_path / "live.html").read_text()
    assert not re.findall(r'<script[^>]*\bsrc=', page) and "Plotly.addFrames(" in page
    assert "stopped" in page and f"stopped after step {trace.last_step}" in page
    cp = widgets.ChatPanel(stories, sampler="mdlm", steps=8, fps=1000)
    cp.send("Once upon a time").wait(timeout=60)
    page = cp.to_html(tmp_path / "chat.html").read_text()
    assert cp.history.value in page and "Once upon a time" in page  # the history, then the run
    assert "Plotly.addFrames(" in page and not re.findall(r'<script[^>]*\bsrc=', page)


def test_compare_step_label_speaks_for_every_grid(model):
    loop = explorer.generate(model, samplers.ReMDMLoop(), 8, seed=0, progress=False)  # 9: final pass
    mdlm = explorer.generate(model, samplers.MDLM(), 8, seed=0, progress=False)
    c = widgets.CompareViewer([loop, mdlm], labels=["loop", "mdlm"], columns=16)
    assert c.step == 9
    assert c.step_label.value == "loop: final argmax pass (after step 8) · mdlm: step 8 of 8"
    c.step = 4
    assert c.step_label.value == "step 4 of 8"


def test_cells_are_sized_for_the_sample_shown():
    from explorer.viz.grid import longest_cell
    probs = torch.zeros(48, 102)  # token texts are their ids: "10".."99", and "100" now and then
    probs[:, 10:100] = 1
    probs[5, 100] = 45
    t = explorer.generate(explorer.StubDenoiser(probs), samplers.MDLM(), 8, num_samples=6, seed=1, progress=False)
    need = [longest_cell(t.index(s), 0, 48) for s in range(6)]
    lo, hi = need.index(min(need)), need.index(max(need))
    assert need[lo] < need[hi], need
    v = widgets.TraceViewer(t, sample=lo, columns=16)
    v.sample_box.value = hi
    assert v.grid.cell_chars == need[hi]
    c = widgets.CompareViewer([t, t], sample=lo, columns=16)
    c.sample_box.value = hi
    assert [v.grid.cell_chars for v in c.viewers] == [need[hi]] * 2
    assert widgets.TraceViewer(t, sample=lo, cell_chars=3).grid.cell_chars == 3  # a chosen width stays


def test_viewer_window_agrees_with_its_slider_and_refuses_empty_grids(pair):
    probs = torch.rand(128, 9, generator=torch.Generator().manual_seed(5)) ** 4
    probs[:, -1] = 0
    t = explorer.generate(explorer.StubDenoiser(probs), samplers.MDLM(), 4, seed=0, progress=False)
    v = widgets.TraceViewer(t, start=120, length=64, curves=False)  # past the last full window
    assert v.start == v.window.value == v.grid.start == 64 and len(v.grid.codes) == 64
    for bad in (dict(length=0), dict(columns=0)):
        with pytest.raises(ValueError, match=f"{next(iter(bad))} .* must be at least 1"):
            widgets.TraceViewer(pair[0], **bad)


def test_trace_viewer_row_labels_must_name_each_row_once(model):
    trace = explorer.generate(model, samplers.MDLM(), 4, num_samples=2, seed=0, progress=False)
    v = widgets.TraceViewer(trace, rows=[("first", 0), ("second", 1)])
    v.sample_box.value = 1
    assert v.sample == 1
    with pytest.raises(ValueError, match="each of the trace's 2 once"):
        widgets.TraceViewer(trace, rows=[("first", 0), ("again", 0)])


# ---------------------------------------------------------------------- a remask rewritten within its step
def events_trace(rows, initial, mask_id=9, steps=3, texts=None):
    """A one-sample trace from (step, position, kind, token) rows."""
    import numpy as np
    from explorer.trace import Trace
    from explorer.trace_schema import KINDS, STEP_COLUMNS
    n = len(rows)
    col = lambda i: np.array([r[i] for r in rows], np.int32)  # noqa: E731
    events = {"sample": np.zeros(n, np.int32), "step": col(0), "position": col(1),
              "kind": np.array([KINDS.index(r[2]) for r in rows], np.int8), "token_id": col(3),
              "prob": np.full(n, 0.5, np.float32), "p_transition": np.ones(n, np.float32),
              "sigma": np.zeros(n, np.float32), "reason": np.zeros(n, np.int8), "cand_row": np.full(n, -1, np.int32),
              "cand_ids": np.zeros((0, 0), np.int32), "cand_probs": np.zeros((0, 0), np.float32)}
    table = pd.DataFrame({c: [] for c in STEP_COLUMNS}).astype({"step": int, "phase": str})
    return Trace(initial=torch.tensor([initial]), fixed=torch.zeros(1, len(initial), dtype=torch.bool),
                 events=events, steps=table, token_texts=texts or {3: "old", 4: "gone", 5: "new", 6: "later"},
                 meta={"mask_id": mask_id, "steps": steps, "last_step": steps, "model_calls": steps,
                       "run_id": "hand", "topk": 0})


# step 2: position 0 is remasked and rewritten (old -> new), position 1 only remasked (written at step 3)
REWRITE_ROWS = [(1, 0, "unmask", 3), (1, 1, "unmask", 4), (2, 0, "remask", 3), (2, 0, "unmask", 5),
                (2, 1, "remask", 4), (3, 1, "unmask", 6)]


def test_a_remask_rewritten_in_its_step_is_drawn_as_a_remask_everywhere(tmp_path):
    """ReMDM-LLaDA and rescore remask and rewrite a token within one step; the grid used to show it
    as a plain write (sky blue, "remasked now 0"). Every view now draws it as remasked and rewritten,
    counts it as a remask, and names the token it replaced."""
    import numpy as np
    from explorer.viz.palette import REMASKED, REWRITTEN, STATE_COLORS, STATE_NAMES, UNMASKED
    tr = events_trace(REWRITE_ROWS, [9, 9, 9, 9])
    v = widgets.TraceViewer(tr, columns=4, step=2)
    assert v.grid.codes[:2] == [REWRITTEN, REMASKED] and v.grid.texts[:2] == ["new", "gone"]
    title = "masked 3 · unmasked now 1 · remasked now 2 (1 rewritten in the same step)"
    assert title in v.grid.title
    assert "remasked and rewritten this step" in v.grid.hovers[0] and "it held old" in v.grid.hovers[0]
    # the browser grid's key: the state's name and colour, listed beside "remasked this step"
    assert v.grid.legend[REWRITTEN][:2] == [STATE_NAMES[REWRITTEN], STATE_COLORS[REWRITTEN]]
    order = list(v.grid.legend_order)
    assert sorted(order) == list(range(len(STATE_NAMES))) and order.index(REWRITTEN) == order.index(REMASKED) + 1
    # the plotly grid (notebook figures, saved pages) says the same, in the same colour
    fig = viz.token_grid(tr, 2, columns=4)
    hm = fig.data[0]
    assert np.asarray(hm.z).ravel()[:2].tolist() == [REWRITTEN, REMASKED] and title in fig.layout.title.text
    band = (REWRITTEN - hm.zmin) / (hm.zmax - hm.zmin)
    assert [c for (a, c), (b, _) in zip(hm.colorscale[:-1], hm.colorscale[1:]) if a <= band <= b][0] == \
        STATE_COLORS[REWRITTEN]
    assert STATE_NAMES[REWRITTEN] in [t.name for t in fig.data[1:]]
    heat = viz.step_heatmap(tr).data[0]
    assert np.asarray(heat.z)[0].tolist() == [0, UNMASKED, REWRITTEN, 3] and heat.zmax == hm.zmax
    text = viz.token_text(tr, 2)._repr_html_()
    assert f"background:{STATE_COLORS[REWRITTEN]}" in text and "it held old" in text
    # only a remask and an unmask of the same step: a rewrite one step later is a plain write
    assert v.index.frame(3).codes[:2].tolist() == [3, UNMASKED]
    page = (tmp_path / "p.html")
    v.to_html(page)
    assert STATE_NAMES[REWRITTEN] in page.read_text() and "(1 rewritten in the same step)" in page.read_text()


def test_live_view_draws_a_remask_rewritten_since_the_last_frame():
    """The live view marked vermillion only cells still masked at the frame, so a remask rewritten
    before the next frame (every remask of rescore / ReMDM-LLaDA) never showed, nor was counted."""
    from stub_models import ContextModel

    from explorer.viz.palette import REWRITTEN
    model = ContextModel(L=24)
    lv = widgets.LiveViewer(model, samplers.Rescore(), 12, seed=1, columns=8, length=24, fps=1e6)
    trace = lv.wait(timeout=60)
    assert trace is not None and lv.error is None
    ev = trace.events
    both = ev.groupby(["step", "position"])["kind"].nunique()
    assert (both == 2).any()                       # the run does remask and rewrite within steps
    drawn = [codes for _, codes in lv.states if REWRITTEN in codes]
    assert drawn, "no frame drew a remasked-and-rewritten cell"
    # and the title counts them as remasks
    lv2 = widgets.LiveViewer(model, samplers.Rescore(), 12, seed=1, columns=8, length=24, fps=1e6, start=False)
    titles = []
    lv2._draw = (lambda draw: lambda: (draw(), titles.append(lv2.grid.title)))(lv2._draw)
    lv2.start()
    lv2.wait(timeout=60)
    assert any("written again)" in t and "remasked since last frame 0" not in t for t in titles)


def test_fix_story_of_a_remask_rewritten_in_its_step_says_so():
    """notebook 08: rescore fixed a record by a remask rewritten in the same step (remask_step ==
    fixed_at); the story drew that step twice, as "put back to [MASK]" with no mask and as "fixed"."""
    from explorer.studies import find_fixes
    from explorer.tasks import orders
    from explorer.viz.palette import REWRITTEN
    good = orders.eval_tensor(1)[0].numpy()
    cur = 2                                          # record 0's currency
    wrong = orders.TOKEN_ID["jpy" if orders.VOCAB[good[cur]] != "jpy" else "eur"]
    rows = [(1, p, "unmask", int(wrong if p == cur else t)) for p, t in enumerate(good)]
    rows += [(2, cur, "remask", int(wrong)), (2, cur, "unmask", int(good[cur]))]
    tr = events_trace(rows, [orders.MASK_ID] * orders.SEQ_LEN, mask_id=orders.MASK_ID, steps=2,
                      texts=dict(enumerate(orders.VOCAB[:-1])))
    fix = find_fixes(tr).iloc[0]
    assert (fix["remask_step"], fix["fixed_at"], fix["position"]) == (2, 2, cur)
    report = viz.fix_story(tr, fix)
    assert len(report) == 4                          # the story, before, the one step, lifelines
    before, step = report[1], report[2]
    assert "before the remask" in before.layout.title.text and "step 1 of 2" in before.layout.title.text
    assert "remasked and rewritten in this one step" in step.layout.title.text
    assert "step 2 of 2" in step.layout.title.text and "remasked now 1" in step.layout.title.text
    assert REWRITTEN in [int(z) for z in step.data[0].z.ravel() if z == z]
    assert "within the same step" in report[0] and orders.VOCAB[good[cur]] in report[0]


def test_compare_aligns_runs_of_different_lengths_by_progress(model, tmp_path):
    """notebook 07: a 128-step baseline beside a 256-step ReMDM-LLaDA run, driven by one raw step,
    differed mid-run mostly because one was further along. Runs of different lengths from the same
    start now meet at the same share of each run; each grid still says its own step."""
    short = explorer.generate(model, samplers.MDLM(), 8, seed=0, progress=False)
    long = explorer.generate(model, samplers.MDLM(), 16, seed=0, progress=False)
    assert (short.last_step, long.last_step) == (8, 16)            # no final pass here: a clean 1:2
    c = widgets.CompareViewer([short, long], labels=["short", "long"], columns=16)
    assert c.align == "progress" and (c.slider.min, c.slider.max, c.step) == (0, 16, 16)
    c.step = 8
    assert [v.step for v in c.viewers] == [4, 8]
    assert c.step_label.value == "50% of each run · short: step 4 of 8 · long: step 8 of 16"
    c.step = 5
    assert [v.step for v in c.viewers] == [3, 5]                   # 2.5 rounds up, never past the end
    # the raw step is still there on request, as before
    raw = widgets.CompareViewer([short, long], labels=["short", "long"], columns=16, align="step", step=8)
    assert raw.align == "step" and [v.step for v in raw.viewers] == [8, 8]
    # runs of one length, and a branch beside its parent, keep one clock
    same = widgets.CompareViewer([short, explorer.generate(model, samplers.ReMDMCap(eta=0.4), 8, seed=0,
                                                           progress=False)], columns=16)
    assert same.align == "step"
    branch = explorer.resume(model, long, 6, remask=[0])
    assert widgets.CompareViewer([long, branch], columns=16).align == "step"
    with pytest.raises(ValueError, match="align must be one of"):
        widgets.CompareViewer([short, long], align="calls")
    # the saved page's frames are aligned the same way
    fig = c.figure()
    frame = [f for f in fig.frames if f.name == "8"][0]
    assert "step 4 of 8" in frame.layout.title.text and "step 8 of 16" in frame.layout.title.text
    assert fig.layout.sliders[0].currentvalue.prefix.startswith("same share of each run")
