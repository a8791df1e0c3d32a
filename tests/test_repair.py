"""The repair study on orders (explorer.studies.repair) and the figures of issue 13
(explorer.viz.repair, explorer.viz.scaling)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

import explorer
from explorer.metrics.validity import cluster_stderr
from explorer.samplers import MDLM
from explorer.studies import repair
from explorer.tasks import orders


@pytest.fixture(scope="module")
def planted():
    clean = orders.eval_tensor(6, seed=3)
    ids, plants = repair.plant(clean, seed=1)
    return clean, ids, plants


# ------------------------------------------------------------------------------------ planting
def test_plant_breaks_exactly_one_coupled_field_per_planted_record(planted):
    clean, ids, plants = planted
    assert len(plants) == 6 * orders.RECORDS_PER_SEQ // 2
    assert set(plants["record"]) == set(range(1, orders.RECORDS_PER_SEQ, 2))     # every other record
    assert set(plants["field"]) == {"currency", "total"}                         # both kinds drawn
    changed = (ids != clean).nonzero().tolist()
    assert sorted(map(tuple, changed)) == sorted(zip(plants["sample"], plants["position"]))
    for p in plants.itertuples():
        assert p.position == p.record * orders.RECORD_LEN + orders.FIELD_POS[p.field]
        assert orders.VOCAB[int(clean[p.sample, p.position])] == p.original != p.planted
        assert p.planted in orders.FIELD_DOMAINS[p.field]
    table = orders.validity_table([orders.decode(r) for r in ids])
    broken = table[~table["ok"]]
    got = sorted(zip(broken["sample"], broken["record"], broken["rule"]))
    assert got == sorted(zip(plants["sample"], plants["record"], plants["rule"]))   # one rule each, the right one


def test_plant_refuses_bad_input():
    clean = orders.eval_tensor(1, seed=0)
    bad = clean.clone()
    bad[0, orders.FIELD_POS["currency"]] = orders.TOKEN_ID["jpy"] if orders.VOCAB[int(clean[0, 2])] != "jpy" \
        else orders.TOKEN_ID["eur"]
    with pytest.raises(ValueError, match="already breaks a rule"):
        repair.plant(bad)
    with pytest.raises(ValueError, match="cannot plant 'tax'"):
        repair.plant(clean, fields=("tax",))
    with pytest.raises(ValueError, match=r"\[N, 256\]"):
        repair.plant(clean[:, :100])


def test_rule_text_and_record_status():
    assert repair.rule_text("currency") == "currency ≠ country"
    assert repair.rule_text("total") == "total ≠ price, qty"
    words = orders.generate(1, seed=2)[0].split()[:orders.RECORD_LEN]
    assert repair.record_status(words) == "keeps every rule"
    wrong = list(words)
    want = orders.COUNTRIES[words[orders.FIELD_POS["country"]]][0]
    wrong[orders.FIELD_POS["currency"]] = next(c for c in orders.FIELD_DOMAINS["currency"] if c != want)
    assert repair.record_status(wrong) == "breaks: currency ≠ country"
    wrong[orders.FIELD_POS["currency"]] = orders.MASK
    assert repair.record_status(wrong, "currency") == "currency put back to [MASK]"
    assert repair.record_status(wrong) == "1 token masked"


# ------------------------------------------------------------------------------------ bookkeeping
def test_outcomes_and_summary_on_a_hand_built_case(planted):
    clean, ids, plants = planted
    final = ids.clone()
    fixed = plants.iloc[::2]                             # put every other planted record right
    for p in fixed.itertuples():
        final[p.sample, p.position] = clean[p.sample, p.position]
    # ... and repair one by rewriting the *other* side: a country whose currency is the planted one
    other = plants.iloc[1::2].query("field == 'currency'").iloc[0]
    country = next(c for c, (cur, _) in orders.COUNTRIES.items() if cur == other["planted"])
    lo = int(other["record"]) * orders.RECORD_LEN
    final[other["sample"], lo + orders.FIELD_POS["country"]] = orders.TOKEN_ID[country]
    final[other["sample"], lo + orders.FIELD_POS["tax"]] = orders.TOKEN_ID[orders.COUNTRIES[country][1]]
    final[0, 0 * orders.RECORD_LEN + orders.FIELD_POS["ship_day"]] = orders.TOKEN_ID["01"]   # break untouched record 0
    table = repair.outcomes(final, plants)
    assert len(table) == 6 * orders.RECORDS_PER_SEQ and table["planted"].sum() == len(plants)
    s = repair.summarise(table)
    n_fixed = len(fixed) + 1
    assert s["repaired"] == pytest.approx(n_fixed / len(plants))
    assert s["kept"] == pytest.approx((len(plants) - 1) / len(plants))
    # cluster standard errors by sequence, computed by hand
    hits = np.zeros(6)
    for p in fixed.itertuples():
        hits[p.sample] += 1
    hits[other["sample"]] += 1
    assert s["repaired_se"] == pytest.approx(cluster_stderr(hits, np.full(6, 8)))
    kept_hits = np.full(6, 8.0)
    kept_hits[0] -= 1
    assert s["kept_se"] == pytest.approx(cluster_stderr(kept_hits, np.full(6, 8)))
    rewritten = table[table["planted"]].set_index(["sample", "record"])["field_rewritten"]
    assert rewritten[(fixed.iloc[0]["sample"], fixed.iloc[0]["record"])]
    assert not rewritten[(other["sample"], other["record"])]    # repaired without touching the planted field


# ------------------------------------------------------------------------------------ a real run
@pytest.fixture(scope="module")
def real_run():
    model = explorer.load_model("orders")
    clean = orders.eval_tensor(2, seed=0)
    ids, plants = repair.plant(clean, seed=0)
    trace = explorer.refine(model, ids, steps=64, seed=0, progress=False)
    return model, ids, plants, trace


def test_tiny_real_run(real_run, tmp_path):
    model, ids, plants, trace = real_run
    s = repair.summarise(repair.outcomes(trace.final, plants))
    # 64 steps leave a planted token unvisited with probability (1 - eta)^64 = 0.27; 16 planted
    assert 0.4 <= s["repaired"] <= 1.0 and s["kept"] >= 0.8
    story = repair.repair_story(trace, plants)
    assert story["valid_end"] and 0 < story["remasked_at"] < story["rewritten_at"]
    assert story["rewritten_to"] != story["planted"]
    df = repair.measure(model, [4], sequences=1, out=str(tmp_path / "r.csv"))
    back = pd.read_csv(tmp_path / "r.csv")
    assert list(back["sampler"]) == ["remdm-refine", "mdlm"] and len(df) == 2
    mdlm = back[back["sampler"] == "mdlm"].iloc[0]
    assert mdlm["repaired"] == 0.0 and mdlm["kept"] == 1.0 and mdlm["nfe"] == 0   # nothing, by construction
    assert json.loads(back["settings"].iloc[0]) == df["settings"].map(json.loads).iloc[0]   # JSON, as evaluate-orders
    assert json.loads(mdlm["settings"]) == MDLM().config


# ------------------------------------------------------------------------------------ figures
def test_repair_strip_flags_masks_and_rewrites(real_run):
    from explorer.viz.repair import repair_strip
    _, _, plants, trace = real_run
    table = repair.strip_table(trace, plants)
    story = repair.repair_story(trace, plants)
    assert table.attrs["story"] == story
    assert set(table["kind"]) <= {k for k, _ in repair.STRIP_KINDS}
    rows = table.drop_duplicates("step")
    assert len(table) == len(rows) * orders.RECORD_LEN
    kind = table.pivot(index="step", columns="column", values="kind")
    col = orders.FIELD_POS[story["field"]]
    k1, k2 = story["remasked_at"], story["rewritten_at"]
    assert (kind.iloc[0, col], kind.loc[k1, col], kind.loc[k2, col]) == ("wrong", "masked", "repaired")
    assert (kind[0] == "anchor").all()                               # 'order' is fixed: the yellow column
    # every other cell says what happened to it: untouched, or revisited (masked / redrawn / rewritten)
    lo = story["record"] * orders.RECORD_LEN
    for k in kind.index:
        state = trace.state_at(int(k))[story["sample"], lo:lo + orders.RECORD_LEN]
        given = trace.state_at(0)[story["sample"], lo:lo + orders.RECORD_LEN]
        for c in range(1, orders.RECORD_LEN):
            if c == col:
                continue
            want = ("revisit" if int(state[c]) == trace.mask_id else "changed" if state[c] != given[c]
                    else ("same", "given"))
            assert kind.loc[k, c] in (want if isinstance(want, tuple) else (want,)), (k, c)
    revisited = table[table["kind"] == "revisit"]
    for r in revisited.drop_duplicates("step").itertuples():
        assert "random revisit" in table.loc[table["step"] == r.step, "note"].iloc[0] or r.step == rows["step"].iloc[0]

    fig = repair_strip(table)
    meta = fig.layout.meta
    assert (meta["sample"], meta["record"]) == (story["sample"], story["record"])
    assert meta["status"][0] == "breaks: " + repair.rule_text(story["rule"])
    assert meta["status"][meta["steps"].index(k1)].startswith(f"{story['field']} put back to [MASK]")
    assert meta["status"][-1] == "keeps every rule"
    z = np.array(fig.data[0].z)
    names = [k for k, _ in repair.STRIP_KINDS]
    assert [names[int(v)] for v in z[:, col][[0, meta["steps"].index(k1), meta["steps"].index(k2)]]] == \
        ["wrong", "masked", "repaired"]
    assert fig.layout.title.text.startswith(f"A wrong {story['field']} is taken back and rewritten right")
    assert f"planted {story['field']} {story['planted']}" in meta["takeaway"]
    assert f"rewritten as {story['rewritten_to']} at step {k2}" in fig.layout.title.subtitle.text
    legend = {d.name for d in fig.data[1:]}
    assert dict(repair.STRIP_KINDS)["anchor"] in legend                # the yellow column has its entry
    assert legend == {dict(repair.STRIP_KINDS)[k] for k in set(table["kind"])}


def test_repair_rate_figure_takeaway_from_its_numbers():
    from explorer.viz.repair import repair_rate_figure
    df = pd.DataFrame({"sampler": ["remdm-refine"] * 2 + ["mdlm"] * 2, "steps": [64, 256, 64, 256],
                       "repaired": [0.7, 0.95, 0.0, 0.0], "repaired_se": [0.02, 0.01, 0.0, 0.0],
                       "kept": [0.99, 0.985, 1.0, 1.0], "kept_se": [0.005, 0.006, 0.0, 0.0],
                       "planted_records": [512] * 4})
    fig = repair_rate_figure(df)
    t = fig.layout.meta["takeaway"]
    assert "T = 256" in t and "95.0% ± 1.0%" in t and "98.5% ± 0.6%" in t and "mdlm repairs 0.0%" in t
    assert any("MDLM repairs nothing, by construction" in a.text for a in fig.layout.annotations)
    names = [d.name for d in fig.data]
    assert "mdlm: planted errors repaired" in names and "remdm-refine: untouched records still valid" in names


def _sweep_rows(values):
    rows = []
    for (s, T), (v, se) in values.items():
        rows.append({"sampler": s, "steps": T, "seed": 0, "metric": "gen_ppl", "value": v, "stderr": se,
                     "model_calls": T, "nfe": T * 0.9, "seconds": 1.0})
    return pd.DataFrame(rows)


def test_scaling_figure_and_its_takeaway():
    from explorer.viz.scaling import scaling_figure, steps_label
    df = _sweep_rows({("mdlm", 128): (88, 3), ("mdlm", 512): (76, 3),
                      ("remdm-loop", 128): (90, 3), ("remdm-loop", 512): (51, 3.5)})
    fig = scaling_figure(df, seq_len=128)
    t = fig.layout.meta["takeaway"]
    z = (51 - 76) / np.hypot(3, 3.5)
    assert t.startswith("At T = 512 (4L): mdlm 76 ± 3") and f"{abs(z):.1f} SE below mdlm (better)" in t
    assert "mdlm goes from 88 at T = 128 to 76" in t
    assert {d.name for d in fig.data} == {"mdlm", "remdm-loop"} and len(fig.data) == 4   # quality + NFE
    # the title says it in words, the subtitle the numbers; the axis says which way is better
    meta = fig.layout.meta
    assert fig.layout.title.text == meta["headline"] + "." and meta["takeaway"] in fig.layout.title.subtitle.text
    assert meta["headline"] == ("More steps keep paying only with remdm-loop (still improving at T = 512, the most "
                                "measured); mdlm is still improving at T = 512, the most measured")
    assert meta["crossover"] == ("at few steps remdm-loop is no better: at T = 128 90.0 vs mdlm's 88.0 (0.5 SE worse, "
                                 "within noise); it is better from T = 512")
    assert fig.layout.yaxis.title.text == "judge Gen PPL (lower is better)"
    flat = _sweep_rows({("mdlm", 128): (80, 3), ("mdlm", 512): (79, 3),
                        ("remdm-loop", 128): (70, 3), ("remdm-loop", 512): (50, 3)})
    words = scaling_figure(flat).layout.meta
    assert words["headline"].endswith("mdlm levels off after T = 128") and words["crossover"] == ""
    close = _sweep_rows({("mdlm", 128): (80, 3), ("remdm-loop", 128): (78, 3)})
    assert "within noise of mdlm" in scaling_figure(close).layout.meta["takeaway"]
    assert steps_label(32, 128) == "T = 32 (L/4)" and steps_label(128, 128) == "T = 128 (L)"
    with pytest.raises(ValueError, match="no rows for metric 'mauve'"):
        scaling_figure(df, metric="mauve")


def test_error_causes_figure_counts_clashes_and_model_errors():
    from explorer.viz.repair import error_causes_figure
    a = pd.DataFrame({"together": [True, True, False]})
    b = pd.DataFrame({"together": [False, True]})
    fig = error_causes_figure({"MDLM": a, "ReMDM-loop": b})
    assert list(fig.data[0].y) == [2, 1] and list(fig.data[1].y) == [1, 1]
    assert fig.layout.meta["takeaway"] == ("Broken rules whose fields were written in the same step -- "
                                           "MDLM: 2 of 3 (67%); ReMDM-loop: 1 of 2 (50%).")
    # with the remasked column, rules written apart split into remasked and never remasked
    a["remasked"] = [True, False, False]          # a clash counts as a clash even if remasked
    b = pd.DataFrame({"together": [False, False, True], "remasked": [True, False, True]})
    fig = error_causes_figure({"MDLM": a, "ReMDM-loop": b})
    assert [list(d.y) for d in fig.data] == [[2, 1], [0, 1], [1, 1]]
    assert "remasked" in fig.data[1].name and "never remasked" in fig.data[2].name
    assert fig.layout.meta["remasked"] == [0, 1]
    assert fig.layout.meta["takeaway"].endswith("Written apart with a remasked field -- MDLM: 0 of 3; "
                                                "ReMDM-loop: 1 of 3.")


def test_revised_text_marks_what_the_loop_changed():
    from explorer.samplers import ReMDMLoop
    from explorer.viz.repair import _words, revised_text
    probs = torch.rand(24, 7, generator=torch.Generator().manual_seed(0)) + 0.1
    probs[:, -1] = 0
    trace = explorer.generate(explorer.StubDenoiser(probs), ReMDMLoop(eta=0.1, alpha_on=0.8), steps=40, seed=1,
                              progress=False)
    start = int(trace.steps.loc[trace.steps["phase"] == "loop", "step"].min()) - 1
    old, new = trace.state_at(start)[0], trace.final[0]
    masked = old == trace.mask_id
    changed = int(((old != new) & ~masked).sum())
    assert changed > 0 and int(masked.sum()) > 0
    html = revised_text(trace)
    written = 24 - int(masked.sum())
    assert (f"the loop phase (steps {start + 1} to {trace.last_step}) rewrote {changed} of the {written} words "
            f"already written ({changed / written:.0%}) and filled {int(masked.sum())} blanks") in html
    assert html.count("<s style='color:#D55E00'>") == changed + 1           # + the legend
    with pytest.raises(ValueError, match="no loop phase"):
        revised_text(explorer.generate(explorer.StubDenoiser(probs), explorer.samplers.MDLM(), steps=4,
                                       progress=False))
    # words of BPE-style text: a word starts at a space, a line break or an end-of-text token
    words = _words([" the", " cat", "s", ".", "\n", "it", "<|endoftext|>", "once"])
    assert words == [[0], [1, 2, 3], [4], [5], [6], [7]]


# ------------------------------------------------------------------------------------ the remask ledger
class StatesTrace:
    """A hand-built trace: ``states[k]`` is the state after step k (one sequence), every change an
    event. Just the public members the ledger reads."""

    mask_id = orders.MASK_ID
    first_step = 0
    recorded = True

    def __init__(self, states, nfe=40):
        self.states = [torch.as_tensor(np.asarray(s), dtype=torch.long).reshape(1, -1) for s in states]
        self.last_step = self.num_steps = len(states) - 1
        self.num_samples, self.seq_len = self.states[0].shape
        self.initial, self.final = self.states[0].clone(), self.states[-1].clone()
        self.nfe = torch.tensor([nfe])
        rows = []
        for k in range(1, len(states)):
            a, b = self.states[k - 1][0], self.states[k][0]
            for p in (a != b).nonzero().flatten().tolist():
                unmask = int(a[p]) == self.mask_id
                rows.append({"sample": 0, "step": k, "position": p, "kind": "unmask" if unmask else "remask",
                             "token_id": int(b[p] if unmask else a[p])})
        self.events = pd.DataFrame(rows, columns=["sample", "step", "position", "kind", "token_id"])

    def state_at(self, k):
        return self.states[k].clone()


def _pos(record, field):
    return record * orders.RECORD_LEN + orders.FIELD_POS[field]


def _other(field, value):
    return orders.TOKEN_ID[next(v for v in orders.FIELD_DOMAINS[field] if v != value)]


def test_remask_ledger_hits_and_outcomes_on_a_hand_built_trace():
    """Known by construction: record 0 written half-way with a wrong currency (broken), remasked
    and rewritten right (hit, fix); record 1's ship day remasked while valid and rewritten out of
    range (miss, harm), then remasked again while broken and never rewritten (hit, neutral);
    record 2's country redrawn the same (miss, neutral); record 3's currency rewritten wrong
    (miss, harm)."""
    from explorer.studies import ledger_summary, remask_ledger

    M = orders.MASK_ID
    good = orders.eval_tensor(1, seed=5)[0].numpy()
    word = lambda p: orders.VOCAB[int(good[p])]   # noqa: E731
    s1 = good.copy()
    s1[_pos(0, "currency")] = _other("currency", word(_pos(0, "currency")))
    s1[_pos(0, "tax")] = M                                   # half-written, already broken
    s2 = s1.copy()
    s2[[_pos(0, "currency"), _pos(1, "ship_day"), _pos(2, "country")]] = M
    s3 = good.copy()
    s3[_pos(1, "ship_day")] = orders.TOKEN_ID["01"]       # ships before it is ordered (order days are 01..21)
    s4 = s3.copy()
    s4[[_pos(1, "ship_day"), _pos(3, "currency")]] = M
    s5 = s4.copy()
    s5[_pos(3, "currency")] = _other("currency", word(_pos(3, "currency")))
    trace = StatesTrace([np.full(orders.SEQ_LEN, M), s1, s2, s3, s4, s5], nfe=40)
    led = remask_ledger(trace)
    got = led[["step", "record", "field", "hit", "rewritten_at", "outcome"]].values.tolist()
    assert got == [[2, 0, "currency", True, 3, "fix"], [2, 1, "ship_day", False, 3, "harm"],
                   [2, 2, "country", False, 3, "neutral"], [4, 1, "ship_day", True, -1, "neutral"],
                   [4, 3, "currency", False, 5, "harm"]]
    assert led["broken"].tolist() == ["currency", "", "", "dates", ""]
    assert led.loc[0, "removed"] == orders.VOCAB[int(s1[_pos(0, "currency")])]
    assert led.loc[0, "rewritten_to"] == word(_pos(0, "currency"))
    assert led.attrs["broken_records"] == 3 and led.attrs["model_calls"] == 40
    s = ledger_summary(led)
    assert (s["remasks"], s["hits"], s["misses"], s["fixes"], s["harms"], s["neutral"]) == (5, 2, 3, 1, 2, 2)
    assert s["precision"] == pytest.approx(2 / 5) and s["recall"] == pytest.approx(2 / 3)
    assert s["fixes_per_100_calls"] == pytest.approx(2.5) and s["harms_per_100_calls"] == pytest.approx(5.0)
    assert ledger_summary(led, model_calls=200)["harms_per_100_calls"] == pytest.approx(1.0)
    # the same facts per rule, for a story: the currency fix, and nothing suggested where all ends valid
    from explorer.studies import find_fixes
    fixes = find_fixes(trace)
    assert fixes[["record", "rule", "broken_at", "remask_step", "fixed_at", "outcome"]].values.tolist() == \
        [[0, "currency", 1, 2, 3, "fix"]]
    # ... and the edit that would revisit what is still broken at the end: record 3's currency
    from explorer.studies import suggest_revisit
    d = suggest_revisit(trace)
    assert (d["record"], d["rule"], d["field"], d["position"], d["remask"]) == \
        (3, "currency", "currency", _pos(3, "currency"), [_pos(3, "currency")])
    assert d["token"] == orders.VOCAB[int(s5[_pos(3, "currency")])]
    assert d["step"] == 4            # written at step 5, the last: a branch starts one step before


def test_remask_ledger_reads_a_swap_within_one_step():
    """A strategy may take a token back and write its replacement in the same step (a swap): the
    rewrite is that step's, judged against the token it replaced, whatever order the two events
    are listed in."""
    from explorer.studies import remask_ledger

    good = orders.eval_tensor(1, seed=5)[0].numpy()
    cur = _pos(0, "currency")
    bad = good.copy()
    bad[cur] = _other("currency", orders.VOCAB[int(good[cur])])
    trace = StatesTrace([bad, bad])
    for rows in ([("remask", int(bad[cur])), ("unmask", int(good[cur]))],
                 [("unmask", int(good[cur])), ("remask", int(bad[cur]))]):
        trace.events = pd.DataFrame([{"sample": 0, "step": 1, "position": cur, "kind": k, "token_id": t}
                                     for k, t in rows])
        led = remask_ledger(trace)
        assert led[["step", "hit", "rewritten_at", "outcome"]].values.tolist() == [[1, True, 1, "fix"]]


def test_remask_ledger_on_a_generated_run_with_a_planted_coin_flip():
    """A stub model that writes one valid sequence except record 0's currency, a coin flip between
    the right one and a wrong one: only record 0 can ever be broken, so every remask in another record
    is a miss with a neutral rewrite, a remask of record 0's currency is a hit exactly when it took the
    wrong one back beside a written country, a fix puts the right one in and a harm the wrong one.
    MDLM never remasks."""
    from explorer.protocol import StubDenoiser
    from explorer.samplers import MDLM, ReMDMLoop
    from explorer.studies import ledger_summary, remask_ledger

    good = orders.eval_tensor(1, seed=7)[0]
    cur = _pos(0, "currency")
    right, wrong = orders.VOCAB[int(good[cur])], orders.VOCAB[int(_other("currency", orders.VOCAB[int(good[cur])]))]
    probs = torch.zeros(orders.SEQ_LEN, orders.VOCAB_SIZE, dtype=torch.float64)
    probs[torch.arange(orders.SEQ_LEN), good] = 1.0
    probs[cur] = 0.0
    probs[cur, orders.TOKEN_ID[right]] = probs[cur, orders.TOKEN_ID[wrong]] = 0.5
    model = StubDenoiser(probs, mask_id=orders.MASK_ID)
    trace = explorer.generate(model, ReMDMLoop(eta=0.1), 96, num_samples=6, seed=0, progress=False,
                              prompt=dict(orders.FIXED_TOKENS))
    led = remask_ledger(trace)
    assert len(led) == int((trace.events["kind"] == "remask").sum()) > 0
    elsewhere = led[led["record"] != 0]
    assert len(elsewhere) and not elsewhere["hit"].any() and (elsewhere["outcome"] == "neutral").all()
    at = led[led["position"] == cur]
    country_seen = np.array([int(trace.state_at(r.step - 1)[r.sample, _pos(0, "country")]) != orders.MASK_ID
                             for r in at.itertuples()])   # the currency rule is judged once both fields are written
    assert (at["hit"] == ((at["removed"] == wrong) & country_seen)).all()
    assert at["hit"].any() and not at["hit"].all()
    assert (at.loc[at["outcome"] == "fix", ["removed", "rewritten_to"]].values.tolist()
            == [[wrong, right]] * int((at["outcome"] == "fix").sum()))
    assert (at.loc[at["outcome"] == "harm", ["removed", "rewritten_to"]].values.tolist()
            == [[right, wrong]] * int((at["outcome"] == "harm").sum()))
    assert set(led["outcome"]) <= {"fix", "harm", "neutral"} and (led["outcome"] == "fix").any()
    s = ledger_summary(led)
    assert s["precision"] == pytest.approx(led["hit"].mean()) and 0 < s["recall"] <= 1
    assert led.attrs["model_calls"] == int(trace.nfe.sum())
    mdlm = explorer.generate(model, MDLM(), 32, num_samples=4, seed=0, progress=False,
                             prompt=dict(orders.FIXED_TOKENS))
    none = ledger_summary(remask_ledger(mdlm))
    assert none["remasks"] == 0 and np.isnan(none["precision"])
    assert none["broken_records"] > 0 and none["recall"] == 0.0      # broken records, none revisited


def test_remask_ledger_refuses_a_trace_that_is_not_orders():
    from explorer.studies import remask_ledger

    probs = torch.rand(24, 7) + 0.1
    probs[:, -1] = 0
    t = explorer.generate(explorer.StubDenoiser(probs), explorer.samplers.MDLM(), steps=4, progress=False)
    with pytest.raises(ValueError, match="orders records"):
        remask_ledger(t)


def test_knee_takeaway_is_true_at_the_edge_of_the_measured_range():
    from explorer.viz.sweep import knee_takeaway
    roc = pd.DataFrame({"sampler": ["mdlm"] * 3 + ["remdm-loop"] * 3, "steps": [8, 16, 32] * 2,
                        "calls": [8, 16, 32, 8, 16, 32], "is_knee": [False, True, False, False, False, True]})
    text = knee_takeaway(roc)
    assert "mdlm stops paying beyond T = 16" in text
    assert "remdm-loop is still improving at T = 32, the most steps measured" in text
    assert "stops paying beyond T = 32" not in text
