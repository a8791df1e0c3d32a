"""Figure functions on a hand-built trace whose every state is known, then on a generated one."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import torch

import explorer
from explorer import samplers, viz
from explorer.trace import Trace
from explorer.viz.palette import FIXED, MASKED, REMASKED, STABLE, STATE_COLORS, UNMASKED

M = 9  # mask id of the hand-built traces


def trace_from_states(states, fixed=None, topk=2, mask_id=M, texts=None) -> Trace:
    """A real Trace whose state after step k is ``states[k]`` ([T+1, L], one sample).

    Every change becomes an event (mask->token: unmask with p = 0.5 + token/100; token->mask:
    remask), so the expected picture at every step is known by construction.
    """
    states = np.asarray(states, np.int64)
    T, L = states.shape[0] - 1, states.shape[1]
    ev = {k: [] for k in ("sample", "step", "position", "kind", "token_id", "prob", "p_transition",
                          "sigma", "reason")}
    cand_ids, cand_probs = [], []
    for k in range(1, T + 1):
        for p in range(L):
            a, b = states[k - 1, p], states[k, p]
            if a == b:
                continue
            unmask = a == mask_id
            ev["sample"].append(0); ev["step"].append(k); ev["position"].append(p)
            ev["kind"].append(0 if unmask else 1)
            ev["token_id"].append(int(b if unmask else a))
            ev["prob"].append(0.5 + int(b if unmask else a) / 100)
            ev["p_transition"].append(0.5); ev["sigma"].append(0.1); ev["reason"].append(0)
            cand_ids.append([int(b), (int(b) + 1) % mask_id] if unmask else [-1, -1])
            cand_probs.append([0.6, 0.3] if unmask else [np.nan, np.nan])
    events = {k: np.asarray(v) for k, v in ev.items()}
    for k, dt in (("sample", np.int32), ("step", np.int32), ("position", np.int32), ("kind", np.int8),
                  ("reason", np.int8), ("token_id", np.int32), ("prob", np.float32),
                  ("p_transition", np.float32), ("sigma", np.float32)):
        events[k] = events[k].astype(dt)
    # Trace's internal layout: candidates stored for unmask events only, cand_row points at them
    has = events["kind"] == 0
    events["cand_row"] = np.where(has, np.cumsum(has) - 1, -1).astype(np.int32)
    events["cand_ids"] = np.asarray(cand_ids, np.int32).reshape(-1, 2)[has][:, :topk]
    events["cand_probs"] = np.asarray(cand_probs, np.float32).reshape(-1, 2)[has][:, :topk]
    steps = pd.DataFrame({
        "step": np.arange(1, T + 1), "t": np.linspace(1, 1 / T, T), "s": np.linspace(1 - 1 / T, 0, T),
        "alpha_t": np.linspace(0, 1 - 1 / T, T), "alpha_s": np.linspace(1 / T, 1, T),
        "sigma": np.full(T, 0.1), "phase": ["main"] * T, "model_called": [True] * T,
        "n_masked": (states[1:] == mask_id).sum(1), "n_unmasked": np.zeros(T, int),
        "n_remasked": np.zeros(T, int), "seconds": np.zeros(T),
    })
    fixed = torch.zeros(1, L, dtype=torch.bool) if fixed is None else torch.as_tensor(fixed).view(1, L)
    meta = {"mask_id": mask_id, "steps": T, "last_step": T, "model_calls": T, "run_id": "hand",
            "topk": topk, "sampler": {"name": "hand"}}
    return Trace(initial=torch.as_tensor(states[:1]), fixed=fixed, events=events, steps=steps, meta=meta,
                 token_texts=texts or {i: f"t{i}" for i in range(mask_id)})


# position:      0  1  2  3   (3 is a prompt token)
STATES = [
    [M, M, M, 5],   # step 0
    [1, M, M, 5],   # step 1: 0 unmasked
    [1, 2, M, 5],   # step 2: 1 unmasked
    [M, 2, 3, 5],   # step 3: 0 remasked, 2 unmasked
    [4, 2, 3, 5],   # step 4: 0 re-decoded as a different token
]
FIXED_MASK = [False, False, False, True]


@pytest.fixture
def hand():
    return trace_from_states(STATES, fixed=FIXED_MASK)


def grid_codes(fig):
    return np.asarray(fig.data[0].z, float).ravel()[:4].astype(int).tolist()


def test_index_matches_trace_state_at(hand):
    idx = hand.index()
    for k in range(len(STATES)):
        fr = idx.frame(k)
        assert fr.tokens.tolist() == hand.state_at(k)[0].tolist() == STATES[k]
    mat = idx.matrix(np.arange(4), np.arange(5), "token")
    assert mat.T.tolist() == STATES


def test_grid_state_colours_per_step(hand):
    expect = {
        0: [MASKED, MASKED, MASKED, FIXED],
        1: [UNMASKED, MASKED, MASKED, FIXED],
        2: [STABLE, UNMASKED, MASKED, FIXED],
        3: [REMASKED, STABLE, UNMASKED, FIXED],
        4: [UNMASKED, STABLE, STABLE, FIXED],
    }
    for k, codes in expect.items():
        fig = viz.token_grid(hand, step=k, columns=4)
        assert grid_codes(fig) == codes, k
    # the colour a state is drawn in is the palette's colour for that state
    hm = viz.token_grid(hand, step=3, columns=4).data[0]
    scale = hm.colorscale
    for code in STATE_COLORS:           # every state, the remasked-and-rewritten one included
        pos = (code - hm.zmin) / (hm.zmax - hm.zmin)
        color = [c for (a, c), (b, _) in zip(scale[:-1], scale[1:]) if a <= pos <= b][0]
        assert color.upper() == STATE_COLORS[code].upper()
    legend = [t.name for t in viz.token_grid(hand, columns=4).data[1:]]
    assert "remasked this step" in legend and "masked" in legend


def test_grid_text_and_hover(hand):
    fig = viz.token_grid(hand, step=3, columns=4)
    text = np.asarray(fig.data[0].text).ravel().tolist()
    # a remasked cell shows the token that was removed
    assert text == ["t1", "t2", "t3", "t5"]
    hover = np.asarray(fig.data[0].customdata).ravel().tolist()
    assert "remasked at step 3" in hover[0] and "t1" in hover[0]
    assert "p=0.530" in hover[2] and "top-k" in hover[2] and "t4 0.30" in hover[2]
    fig4 = viz.token_grid(hand, step=4, columns=4)
    h = np.asarray(fig4.data[0].customdata).ravel()[0]
    assert "+t1@1" in h and "−t1@3" in h and "+t4@4" in h  # its history so far
    assert np.asarray(viz.token_grid(hand, step=1, columns=4).data[0].z).tolist() != \
        np.asarray(viz.token_grid(hand, step=2, columns=4).data[0].z).tolist()


def test_grid_escapes_token_text():
    t = trace_from_states([[M, M], [0, 1]])
    t._texts_cache.update({0: "<b>x", 1: "a&b"})
    text = np.asarray(viz.token_grid(t, step=1, columns=2).data[0].text).ravel().tolist()
    assert text == ["&lt;b&gt;x", "a&amp;b"]


def test_grid_window_only_draws_visible_positions():
    L = 300
    states = np.full((3, L), M)
    states[1, ::2] = 1
    states[2] = 2
    t = trace_from_states(states)
    fig = viz.token_grid(t, step=1, start=100, length=64, columns=16)
    z = np.asarray(fig.data[0].z)
    assert z.shape == (4, 16)
    assert z[0, 0] == UNMASKED and z[0, 1] == MASKED  # position 100 even, 101 odd
    assert list(fig.layout.yaxis.ticktext) == ["100", "116", "132", "148"]
    with pytest.raises(IndexError, match="outside this trace"):
        viz.token_grid(t, step=9)


def test_heatmap_state_and_prob(hand):
    fig = viz.step_heatmap(hand)
    z = np.asarray(fig.data[0].z)
    assert z.shape == (4, 5)  # positions x steps 0..4
    assert z[0].tolist() == [MASKED, UNMASKED, STABLE, REMASKED, UNMASKED]
    figp = viz.step_heatmap(hand, value="prob", step=2)
    zp = np.asarray(figp.data[0].z, float)
    assert np.isnan(zp[0, 0]) and zp[0, 1] == pytest.approx(0.51) and zp[0, 4] == pytest.approx(0.54)
    assert np.isnan(zp[3]).all()  # the prompt token was never decoded
    # big windows are strided, not dropped
    big = trace_from_states(np.full((2001, 2), M))
    assert np.asarray(viz.step_heatmap(big, max_steps=500).data[0].z).shape[1] <= 500


def test_lifelines(hand):
    assert viz.busiest_positions(hand, limit=1) == [0]
    fig = viz.lifelines(hand, positions=[0, 2])
    names = {t.name for t in fig.data}
    assert {"decoded", "remasked", "masked", "holding a token"} <= names
    dec = [t for t in fig.data if t.name == "decoded"][0]
    assert list(dec.x) == [1, 4, 3] and list(dec.text) == ["t1", "t4", "t3"]
    rem = [t for t in fig.data if t.name == "remasked"][0]
    assert list(rem.x) == [3] and list(rem.y) == [0]


def test_step_curves_counts(hand):
    c = viz.step_counts(hand, sample=0)
    assert c["n_unmasked"].tolist() == [0, 1, 1, 1, 1]
    assert c["n_remasked"].tolist() == [0, 0, 0, 1, 0]
    assert c["n_masked"].tolist() == [3, 2, 1, 1, 0]
    fig = viz.step_curves(hand, step=2, extra=pd.DataFrame({"step": [1, 2], "metric": "err", "value": [1.0, 0.5]}))
    assert {"masked (after step)", "remasked at step", "err", "alpha_t"} <= {t.name for t in fig.data}


def test_text_view(hand):
    h = viz.token_text(hand, step=3)
    assert re.search(r"line-through;[^>]*>t1</span>", h)  # the remasked token, struck through
    assert h._repr_html_() == str(h) and "t5" in h
    assert "[M]" in viz.token_text(hand, step=2)


def test_html_export_is_self_contained(hand, tmp_path):
    path = viz.to_html([viz.token_grid(hand), [viz.lifelines(hand), viz.step_curves(hand)],
                        viz.token_text(hand)], tmp_path / "out" / "page.html", title="hand")
    page = path.read_text()
    assert page.count("<script") >= 3
    srcs = re.findall(r'<script[^>]*\bsrc=["\']([^"\']+)', page)
    assert srcs == [], srcs  # plotly.js is inline, nothing is fetched
    assert "cdn" not in " ".join(re.findall(r"<script[^>]*>", page)).lower()
    assert page.count("Plotly.newPlot") == 3 and len(page) > 3_000_000
    assert not list(path.parent.glob("*.tmp"))


def test_index_agrees_with_generated_trace():
    import explorer
    from explorer import samplers

    probs = torch.rand(40, 9, generator=torch.Generator().manual_seed(2)) ** 4
    probs[:, -1] = 0
    model = explorer.StubDenoiser(probs)
    t = explorer.generate(model, samplers.ReMDMCap(eta=0.4), steps=10, num_samples=2, seed=0, progress=False,
                          prompt={0: 3, 1: 4})
    assert (t.events["kind"] == "remask").any()
    for s in range(2):
        idx = t.index(s)
        for k in range(t.last_step + 1):
            fr = idx.frame(k)
            assert fr.tokens.tolist() == t.state_at(k)[s].tolist()
            np.testing.assert_allclose(fr.prob[2:], t.prob_at(k)[s, 2:].numpy(), rtol=1e-6)
            assert (fr.codes[:2] == FIXED).all()
        counts = viz.step_counts(t, sample=s)
        assert counts["n_masked"].iloc[-1] == 0
    totals = viz.step_counts(t)
    steps = t.steps.set_index("step")
    np.testing.assert_array_equal(totals.set_index("step").loc[steps.index, "n_remasked"], steps["n_remasked"])
    np.testing.assert_array_equal(totals.set_index("step").loc[steps.index, "n_masked"], steps["n_masked"])
    # a branch starts at its parent's step and is drawn from there
    b = explorer.resume(model, t, 5, remask=[5], progress=False)
    assert b.index().first_step == 5
    assert "branch start" in viz.token_grid(b, step=5).layout.title.text


def test_find_fixes_on_an_order_record():
    from explorer.studies import broken_rules, find_fixes, suggest_revisit
    from explorer.tasks import orders

    good = orders.eval_tensor(1)[0].numpy()
    cur = 2  # record 0, slot 2 is the currency
    assert orders.TEMPLATE[cur] == "<currency>"
    wrong = orders.TOKEN_ID["jpy" if orders.VOCAB[good[cur]] != "jpy" else "eur"]
    s0 = np.full(orders.SEQ_LEN, orders.MASK_ID)
    s1 = good.copy(); s1[cur] = wrong          # everything written, currency disagrees with country
    s2 = s1.copy(); s2[cur] = orders.MASK_ID   # the currency is remasked
    s3 = good.copy()                            # and rewritten correctly
    t = trace_from_states([s0, s1, s2, s3], mask_id=orders.MASK_ID, texts=dict(enumerate(orders.VOCAB[:-1])))
    br = broken_rules(t)
    assert not br.query("step == 1 and record == 0 and rule == 'currency'")["ok"].item()
    fixes = find_fixes(t)
    assert fixes[["record", "rule", "broken_at", "remask_step", "position", "fixed_at"]].values.tolist() == \
        [[0, "currency", 1, 2, cur, 3]]
    assert fixes["removed"].item() == orders.VOCAB[wrong]
    report = viz.fix_story(t, fixes.iloc[0])
    assert "currency" in report[0] and len(report) == 5
    # a run left broken: the suggested revisit is the currency, at the step it was written
    broken = trace_from_states([s0, s1], mask_id=orders.MASK_ID, texts=dict(enumerate(orders.VOCAB[:-1])))
    assert find_fixes(broken).empty
    d = suggest_revisit(broken)
    assert (d["rule"], d["position"], d["step"], d["remask"]) == ("currency", cur, 0, [cur])


def test_unrecorded_trace_says_why():
    import explorer
    from explorer import samplers

    probs = torch.rand(8, 5) ** 2
    probs[:, -1] = 0
    t = explorer.generate(explorer.StubDenoiser(probs), samplers.MDLM(), steps=4, record=False, progress=False)
    with pytest.raises(ValueError, match="record=False"):
        viz.token_grid(t)


def test_token_text_is_escaped_once_in_grids_and_pages(tmp_path):
    """Story tokens carry quotes: they must reach the grid and the saved page as quotes, with
    only <, > and & escaped (plotly shows "&quot;" literally)."""
    import explorer
    from explorer import samplers, widgets
    from explorer.viz.cells import display_token

    vocab = ['"Hi"', "<b>", "a&b", "it's", "x", "y", "z", "w", "[MASK]"]

    class Tok:
        def decode(self, ids):
            return "".join(vocab[i] for i in ids)

    probs = torch.rand(16, 9, generator=torch.Generator().manual_seed(5)) + 0.5
    probs[:, -1] = 0
    trace = explorer.generate(explorer.StubDenoiser(probs, tokenizer=Tok()), samplers.MDLM(), steps=4,
                              seed=0, progress=False)
    assert display_token('"Hi"') == '"Hi"' and display_token("<b>") == "&lt;b&gt;"
    grid = widgets.TraceViewer(trace, columns=8, curves=False).grid
    shown = " ".join(grid.texts + grid.hovers)
    assert '"Hi"' in shown and "&lt;b&gt;" in shown and "a&amp;b" in shown
    assert "&quot;" not in shown and "&#x27;" not in shown and "&amp;lt;" not in shown
    page = viz.to_html(viz.grid_animation(trace, columns=8), tmp_path / "g.html").read_text()
    figure = page[page.index("Plotly.newPlot("):]  # the embedded plotly.js itself mentions &quot;
    assert "&quot;" not in figure and "&amp;amp;" not in figure and "&#x27;" not in figure
    assert '\\"Hi\\"' in figure  # the quote itself, inside the embedded JSON


def test_grid_title_counts_masked_as_the_steps_table_does():
    """Cells remasked at a step are masked after it: the title's count is the steps table's n_masked
    (the live view's title counts them the same way)."""
    probs = torch.rand(24, 9, generator=torch.Generator().manual_seed(0)) ** 4
    probs[:, -1] = 0
    t = explorer.generate(explorer.StubDenoiser(probs), samplers.ReMDMCap(eta=0.5), 12, seed=0, progress=False)
    st = t.steps.set_index("step")
    remasked_somewhere = False
    for k in st.index:
        a = viz.grid.grid_arrays(t.index(), int(k), 0, 24, 8)
        masked = int(re.search(r"· masked (\d+) ·", viz.grid.grid_title(t.index(), int(k), a["counts"])).group(1))
        assert masked == int(st.loc[k, "n_masked"]), k
        remasked_somewhere |= a["counts"][REMASKED] > 0
    assert remasked_somewhere


def _gen_ppl_sweep(values):
    """A tidy sweep of judge Gen PPL: ``{(sampler, T): (value, stderr)}``."""
    return pd.DataFrame([{"sampler": s, "steps": T, "seed": 0, "metric": "gen_ppl", "value": v, "stderr": se,
                          "model_calls": T, "nfe": T * 0.9, "seconds": 1.0} for (s, T), (v, se) in values.items()])


def test_scaling_note_says_worse_only_beyond_two_standard_errors():
    # the shipped stories sweep's shape: behind by 1.3 SE at the fewest steps, ahead by 0.8 SE next,
    # ahead by 2.8 SE after that
    noisy = viz.scaling_figure(_gen_ppl_sweep({
        ("mdlm", 32): (41.0, 2.2), ("mdlm", 64): (35.3, 2.0), ("mdlm", 128): (35.4, 1.8),
        ("remdm-loop", 32): (44.7, 1.9), ("remdm-loop", 64): (33.4, 1.5), ("remdm-loop", 128): (29.1, 1.4)}))
    notes = [a.text for a in noisy.layout.annotations if "T = 32" in a.text]
    assert notes == ["remdm-loop no better at T = 32 (within noise, 1.3 SE)"]
    assert "worse at" not in notes[0] and noisy.layout.meta["marker"] == notes[0]
    crossover = noisy.layout.meta["crossover"]
    assert crossover.startswith("at few steps remdm-loop is no better") and "within noise" in crossover
    assert crossover.endswith("it is ahead from T = 64, by more than 2 SE from T = 128")
    # the same gap with a quarter of the noise is beyond 2 SE: now it is called worse
    clear = viz.scaling_figure(_gen_ppl_sweep({
        ("mdlm", 32): (41.0, 0.5), ("mdlm", 128): (35.4, 0.5),
        ("remdm-loop", 32): (44.7, 0.5), ("remdm-loop", 128): (29.1, 0.5)}))
    assert clear.layout.meta["marker"] == "remdm-loop worse at T = 32 (5.2 SE)"
    assert clear.layout.meta["crossover"] == ("at few steps remdm-loop is worse: at T = 32 44.7 vs mdlm's 41.0 "
                                              "(5.2 SE); it is better from T = 128")
    # ahead at the larger T only within noise: never called better
    close = viz.scaling_figure(_gen_ppl_sweep({
        ("mdlm", 32): (41.0, 2.0), ("mdlm", 128): (35.0, 2.0),
        ("remdm-loop", 32): (42.0, 2.0), ("remdm-loop", 128): (34.0, 2.0)}))
    assert close.layout.meta["crossover"].endswith("it is ahead from T = 128, but within noise")
    assert "better" not in close.layout.meta["crossover"].replace("no better", "")


def _lab_rows(quality, rows):
    """A strategy-lab table: ``rows`` of (strategy, budget, calls, value, stderr, entropy)."""
    return pd.DataFrame([{"strategy": s, "budget": b, "steps": b, "model_calls": c, "quality": quality, "value": v,
                          "stderr": se, "entropy": e} for s, b, c, v, se, e in rows])


def test_strategy_quality_reads_gen_ppl_on_a_log_axis_with_the_entropy_beside_it():
    # the shipped stories table's shape: one degenerate cell 40 times above the others, and rules
    # whose low Gen PPL comes with a low entropy
    table = _lab_rows("gen_ppl", [("mdlm", 96, 89, 36.8, 2.1, 4.04), ("mdlm", 166, 120, 34.1, 2.0, 4.09),
                                  ("rescore", 96, 90, 22.6, 1.0, 3.99), ("p2", 96, 92, 6.1, 0.2, 3.47),
                                  ("wino", 96, 35, 907.8, 73.1, 1.84)])
    fig = viz.strategy_quality(table, entropy_reference=4.08)
    assert fig.layout.yaxis.type == "log" and fig.layout.meta["log_y"]
    assert "log scale" in fig.layout.yaxis.title.text
    # the entropy is drawn, not only hovered: a second panel against the same calls
    assert fig.layout.meta["entropy_panel"] and fig.layout.yaxis2.title.text.startswith("entropy")
    panel = {t.name: list(t.y) for t in fig.data if t.yaxis == "y2"}
    assert panel["p2"] == [3.47] and panel["wino"] == [1.84]
    assert any(s.y0 == 4.08 for s in fig.layout.shapes)
    # cells far below the reference entropy are hollow, named in meta, and the figure says what that means
    assert fig.layout.meta["low_entropy"] == ["wino @ 96", "p2 @ 96"]
    p2 = next(t for t in fig.data if t.name == "p2" and t.yaxis == "y")
    mdlm = next(t for t in fig.data if t.name == "mdlm" and t.yaxis == "y")
    assert list(p2.marker.color) == ["white"] and "white" not in list(mdlm.marker.color)
    assert any("repetitive" in a.text for a in fig.layout.annotations)
    # valid records: a share, linear, and no entropy panel when the table has none
    orders = _lab_rows("valid_records", [("mdlm", 80, 76, 0.95, 0.01, float("nan")),
                                         ("rescore", 80, 68, 1.0, 0.001, float("nan"))])
    fig = viz.strategy_quality(orders)
    assert fig.layout.yaxis.type == "linear" and not fig.layout.meta["entropy_panel"]
    assert "yaxis2" not in fig.layout.to_plotly_json()


def test_error_causes_headline_says_the_share_and_compares_runs_by_their_noise():
    from explorer.viz.repair import error_causes_figure

    def causes(per_sequence, clash_every=2):
        """Broken rules of one run: sequence i has per_sequence[i] broken records, one rule each."""
        rows = [{"sample": i, "record": r, "together": (i + r) % clash_every == 0}
                for i, n in enumerate(per_sequence) for r in range(n)]
        return pd.DataFrame(rows, columns=["sample", "record", "together"])

    # about half clashes is said as that, not "most"; the second bar is not called model error alone
    fig = error_causes_figure({"MDLM": causes([2] * 8), "ReMDM-loop": causes([2] * 8)})
    assert fig.layout.meta["headline"].startswith("About half of the broken rules are schedule clashes")
    assert "knock-on of an earlier clash" in fig.data[1].name and "remask" in fig.data[1].name
    assert error_causes_figure({"A": causes([3], clash_every=1)}).layout.meta["headline"].startswith("Most")
    # with the number of sequences, runs are compared by the share of records broken, 2 SE the line
    few, many = [3, 2, 4, 3, 2, 3, 4, 3], [5, 6, 4, 5, 6, 5, 4, 5]
    fig = error_causes_figure({"MDLM": causes(few), "ReMDM-loop": causes(many)}, sequences=8)
    meta = fig.layout.meta
    assert meta["broken_records"]["MDLM"][0] == 3 / 16 and meta["broken_records"]["ReMDM-loop"][0] == 5 / 16
    assert meta["z"]["ReMDM-loop"] > 2 and "ReMDM-loop leaves more records broken than MDLM" in meta["headline"]
    assert "MDLM 18.8% ± " in meta["takeaway"] and "of 128" in meta["takeaway"]
    close = error_causes_figure({"MDLM": causes(few), "ReMDM-loop": causes(few[::-1])}, sequences=8).layout.meta
    assert "leave about as many records broken (within noise" in close["headline"]
    # a sequence with no broken rule counts as zero, two rules of one record count one record
    two_rules = pd.DataFrame({"sample": [6, 6, 7], "record": [0, 0, 3], "together": [True, False, False]})
    sparse = error_causes_figure({"MDLM": two_rules}, sequences=8).layout.meta
    assert sparse["broken_records"]["MDLM"][0] == 2 / 8 / 16
    with pytest.raises(ValueError, match="beyond the 4 sequences"):
        error_causes_figure({"MDLM": two_rules}, sequences=4)
