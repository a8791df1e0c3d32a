"""Strategies that choose which decoded tokens to remask, on the one step protocol.

The rules are tested on small models whose right answers are known: ``PairModel`` wants the two
tokens of each pair (2k, 2k + 1) to be equal, so a token's leave-group-out probability is
exactly computable and a "broken" pair is known.
"""
from __future__ import annotations

from dataclasses import dataclass

import re

import pytest
import torch

import explorer
import stub_models
from stub_models import PairModel
from explorer.samplers import MDLM, Rescore, ReMDMLoop, Sampler
from explorer.samplers.rescore import lowest_per_window
from explorer.samplers.step import Decision
from explorer.samplers.categorical import subs_probs


def ContextModel(**kw):
    return stub_models.ContextModel(**{"L": 12, **kw})


def broken_pairs(x):
    return x[:, 0::2] != x[:, 1::2]


@dataclass
class Probe(Sampler):
    """MDLM, plus one probe step that re-scores every decoded token and keeps what it saw."""
    groups: int = 3
    name = "probe-test"
    seen = []

    def grid(self, steps):
        return MDLM().grid(steps)

    def step(self, ctx):
        if ctx.st.step < ctx.num_steps:
            return MDLM().step(ctx)
        decoded = ~ctx.masked & ~ctx.fixed
        Probe.seen.append((ctx.x.clone(), decoded.clone(), ctx.rescore(decoded, self.groups),
                           ctx.rescore(decoded, self.groups), ctx.nfe.clone()))
        return MDLM().step(ctx)


def test_rescore_is_the_leave_group_out_probability_of_the_current_token():
    m = ContextModel()
    Probe.seen.clear()
    tr = explorer.generate(m, Probe(groups=3), 6, num_samples=4, seed=1, progress=False)
    x, decoded, score, again, _ = Probe.seen[0]
    assert decoded.any()
    assert torch.equal(score.isnan(), ~decoded)
    assert torch.equal(score.nan_to_num(-1), again.nan_to_num(-1))     # cached: same state, same ask
    for b in range(x.shape[0]):
        for g in range(3):
            z = x[b:b + 1].clone()
            group = decoded[b] & (torch.arange(x.shape[1]) % 3 == g)
            z[0, group] = m.mask_id
            p = subs_probs(m.logits(z)[0], m.mask_id)
            for pos in group.nonzero().flatten().tolist():
                assert score[b, pos].item() == pytest.approx(p[pos, x[b, pos]].item(), rel=1e-5)
    assert tr.complete


def test_rescore_passes_are_counted_once_per_row_and_group():
    m = ContextModel()
    Probe.seen.clear()
    tr = explorer.generate(m, Probe(groups=3), 6, num_samples=4, seed=1, progress=False)
    plain = explorer.generate(m, MDLM(), 6, num_samples=4, seed=1, progress=False)
    x, decoded, *_ = Probe.seen[0]
    groups_hit = torch.stack([(decoded & (torch.arange(x.shape[1]) % 3 == g)).any(1) for g in range(3)], 1).sum(1)
    # the second, cached re-scoring costs nothing; the MDLM draws are the same as MDLM alone
    assert torch.equal(tr.nfe - plain.nfe, groups_hit)
    assert torch.equal(tr.final, plain.final)
    # read mid-run (the last step, after its re-scoring, before its draw): the draws of steps 1-5,
    # one per sample and step with a write, plus the re-scoring passes
    ev = plain.events
    writes = ev[(ev.kind == "unmask") & (ev.step < 6)].groupby("sample").step.nunique()
    mid_run = Probe.seen[0][4]
    assert mid_run.tolist() == [int(writes.get(i, 0)) + int(groups_hit[i]) for i in range(4)]


def test_lowest_per_window_picks_one_candidate_per_window():
    score = torch.tensor([[0.5, 0.1, 0.3, 0.2, 0.9, 0.05, 0.7]], dtype=torch.float64)
    cand = torch.tensor([[True, True, True, True, False, True, True]])
    got = lowest_per_window(score, cand, start=1, window=3)
    # windows from position 1: [1, 2, 3] -> 1; [4, 5, 6] -> 5 (4 is no candidate); position 0 is before start
    assert got.tolist() == [[False, True, False, False, False, True, False]]
    assert not lowest_per_window(score, torch.zeros_like(cand), 0, 3).any()


def test_rescore_finds_and_fixes_every_broken_pair():
    """An MDLM draft in one step draws every token blind (uniform): about 80 % of the pairs break.
    Re-scoring flags exactly the broken pairs (a broken token scores (1 - AGREE) / (V - 2) = 0.0075,
    an intact one 0.97), one token per pair (window 2), and its rewrite agrees with the partner."""
    m = PairModel(L=16, V=6)
    sampler = Rescore(draft=MDLM(), rounds=4, groups=2, window=2, threshold=0.1)
    tr = explorer.generate(m, sampler, 1, num_samples=64, seed=0, progress=False)
    draft = tr.state_at(1)
    assert broken_pairs(draft).float().mean() > 0.6
    ev = tr.events
    rem = ev[ev.kind == "remask"]
    assert (rem.reason == "rescore").all() and len(rem)
    # every remask hit a broken pair (its state just before the round) and carried its exact score
    for step, grp in rem.groupby("step"):
        before = tr.state_at(int(step) - 1)
        s, p = torch.tensor(grp["sample"].to_numpy()), torch.tensor(grp["position"].to_numpy())
        assert broken_pairs(before)[s, p // 2].all()
        assert grp.prob.to_numpy() == pytest.approx((1 - PairModel.AGREE) / (m.vocab_size - 2), rel=1e-4)
        # one remask per broken pair in this round (recall 1, at most one per window)
        assert len(grp) == int(broken_pairs(before).sum())
    # P(a pair is still broken after 4 rounds) = 0.03^4 per pair: none of 512
    assert not broken_pairs(tr.final).any()
    calls = tr.steps.set_index("step")
    assert list(calls.phase.iloc[-4:]) == ["rescore"] * 4
    # cost: 1 draft call + per round, per row still changing: 2 scoring passes + 1 rewrite
    assert (tr.nfe <= 1 + 4 * 3).all() and (tr.nfe >= 1 + 3).all()


def test_rescore_draft_steps_are_the_draft_itself():
    m = ContextModel()
    a = explorer.generate(m, Rescore(rounds=2, groups=2), 8, num_samples=3, seed=4, progress=False)
    b = explorer.generate(m, MDLM(), 8, num_samples=3, seed=4, progress=False)
    assert torch.equal(a.state_at(8), b.state_at(8))
    assert a.num_steps == 8 and len(a.steps) >= 10


def test_rescore_corrector_inside_the_run_and_remaskable():
    m = PairModel(L=16, V=6)
    only_odd = torch.arange(16) % 2 == 1
    tr = explorer.generate(m, Rescore(draft=MDLM(), rounds=3, groups=2, window=2, every=2, remaskable=only_odd),
                           8, num_samples=16, seed=2, progress=False)
    rem = tr.events.query("kind == 'remask'")
    assert len(rem) and (rem.position % 2 == 1).all()
    phases = tr.steps.phase.tolist()
    assert phases[:3] == ["mdlm", "mdlm", "rescore"] and phases.count("rescore") == 3 + 3
    assert not broken_pairs(tr.final).any()


def test_rescore_config_round_trips_with_its_draft():
    s = Rescore(draft=ReMDMLoop(eta=0.01), rounds=2, threshold=0.2, nucleus_p=0.9)
    again = explorer.samplers.from_config(s.config)
    assert again.config == s.config and isinstance(again.draft, ReMDMLoop) and again.draft.eta == 0.01
    assert explorer.samplers.by_name("rescore").draft.name == "mdlm"
    assert explorer.samplers.by_name("rescore", nucleus_p=0.9).draft.nucleus_p == 0.9


@pytest.mark.parametrize("kw, match", [
    ({"draft": "mdlm"}, "draft must be a sampler"),
    ({"draft": 3}, "draft must be a sampler"),
    ({"rounds": -1}, "rounds must be an integer"),
    ({"groups": 0}, "groups must be an integer"),
    ({"window": 0}, "window must be an integer"),
    ({"threshold": 0.0}, "threshold"),
    ({"threshold": 1.0}, "threshold"),
    ({"threshold": 1.5}, "threshold"),
])
def test_rescore_bad_settings_name_the_fix(kw, match):
    with pytest.raises(ValueError, match=match):
        Rescore(**kw)


def test_every_declared_open_unit_setting_is_refused_outside_zero_one_with_its_meaning():
    """A setting declared with ``settings.open_unit`` (thresholds, FiRe's ratios) is checked for every
    sampler before its own validate(): 0 and below, 1 and above, NaN, a bool, a word and None are refused
    naming the setting and what it is; its default and values inside (0, 1) are accepted."""
    import dataclasses

    from explorer.samplers import REGISTRY
    from explorer.samplers.settings import open_unit
    declared = [(cls, f) for cls in REGISTRY.values() for f in dataclasses.fields(cls) if "open_unit" in f.metadata]
    assert {(cls.name, f.name) for cls, f in declared} == {
        ("llada21-swap", "threshold"), ("llada21-swap", "editing_threshold"), ("wino", "threshold"),
        ("wino", "threshold_back"), ("fire", "start_ratio"), ("fire", "end_ratio"), ("rescore", "threshold")}
    for cls, f in declared:
        assert getattr(cls(), f.name) == f.default
        assert getattr(cls(**{f.name: 0.37}), f.name) == 0.37
        what = re.escape(f.metadata["open_unit"])
        for bad in (0.0, -0.1, 1.0, 1.5, float("inf")):
            with pytest.raises(ValueError, match=f"^{f.name}={bad} must be in \\(0, 1\\): {what}$"):
                cls(**{f.name: bad})
        for bad in (float("nan"), True, "0.5", None):
            with pytest.raises(ValueError, match=f"^{f.name} must be a number in \\(0, 1\\), got .*: {what}$"):
                cls(**{f.name: bad})
    with pytest.raises(ValueError, match="must be in"):
        open_unit(1.0, "a default outside (0, 1) is a bug of the declaration")


def test_rescore_groups_beyond_the_length_is_refused_before_any_work():
    m = PairModel(L=16)
    with pytest.raises(ValueError, match="groups=17"):
        explorer.generate(m, Rescore(groups=17), 4, progress=False)


def test_a_sampler_cannot_remask_fixed_or_write_decoded_positions():
    m = ContextModel()

    @dataclass
    class Rogue(Sampler):
        name = "rogue-test"

        def step(self, ctx):
            return Decision(remask=ctx.masked.clone())       # masked positions: not decoded

    with pytest.raises(ValueError, match="remask only decoded positions"):
        explorer.generate(m, Rogue(), 2, progress=False)


# ------------------------------------------------------------------------------ the lab
from explorer.studies import strategies as lab_module  # noqa: E402
from explorer.studies.strategies import compare, steps_for_budget  # noqa: E402
from explorer.tasks import orders  # noqa: E402


@pytest.fixture(scope="module")
def oracle():
    return explorer.load_model("orders-oracle")


@pytest.fixture(scope="module")
def small_lab(oracle, tmp_path_factory):
    cache = tmp_path_factory.mktemp("lab")
    strategies = {"mdlm": MDLM(nucleus_p=0.9), "rescore": Rescore(nucleus_p=0.9, rounds=1)}
    return compare(oracle, strategies, budgets=[24], num_samples=2, seed=3, cache=cache, progress=False), \
        strategies, cache


def test_steps_for_budget_is_the_largest_affordable_step_count():
    r = Rescore(rounds=2, groups=4)                     # cost T + 2 * (4 + 1)
    assert steps_for_budget(r, 30, 64) == 20
    assert steps_for_budget(MDLM(), 30, 64) == 30
    assert steps_for_budget(ReMDMLoop(), 7, 64) == 7
    with pytest.raises(ValueError, match="more than the budget of 10"):
        steps_for_budget(r, 10, 64)
    with pytest.raises(ValueError, match="budget must be a positive"):
        steps_for_budget(MDLM(), 0, 64)


def test_lab_table_and_ledger_agree_with_the_runs_themselves(oracle, small_lab):
    lab, strategies, _ = small_lab
    t = lab.table.set_index("strategy")
    assert list(t.index) == ["mdlm", "rescore"] and (t.budget == 24).all()
    for name, s in strategies.items():
        steps = int(t.loc[name, "steps"])
        assert steps == steps_for_budget(s, 24, orders.SEQ_LEN)
        tr = explorer.generate(oracle, s, steps, num_samples=2, seed=3, progress=False)
        assert t.loc[name, "model_calls"] == pytest.approx(tr.nfe.double().mean().item())
        assert t.loc[name, "model_calls_max"] <= 24
        valid = [v for x in tr.final for v in orders.record_validity(orders.decode(x))]
        assert t.loc[name, "value"] == pytest.approx(sum(valid) / len(valid))
    assert t.loc["mdlm", "remasks"] == 0 and (lab.ledger.strategy == "rescore").all()
    # every remask of the correction round hit a record that was broken just before it
    tr = explorer.generate(oracle, strategies["rescore"], int(t.loc["rescore", "steps"]), num_samples=2, seed=3,
                           progress=False)
    led = lab.ledger
    assert len(led) == int(t.loc["rescore", "remasks"]) > 0
    for row in led.itertuples():
        before = orders.record_validity(orders.decode(tr.state_at(row.step - 1)[row.sample]))
        assert row.hit == (not before[row.record])
    assert t.loc["rescore", "precision"] == pytest.approx(led.hit.mean())
    assert len(lab.texts) == 4 and set(lab.texts.strategy) == {"mdlm", "rescore"}


def test_lab_cells_are_cached_and_resumed(oracle, small_lab, monkeypatch):
    lab, strategies, cache = small_lab

    def no_generation(*a, **k):
        raise AssertionError("a cached cell was generated again")
    monkeypatch.setattr(lab_module, "generate", no_generation)
    again = compare(oracle, strategies, budgets=[24], num_samples=2, seed=3, cache=cache, progress=False)
    pd_cols = ["strategy", "budget", "steps", "model_calls", "value", "precision"]
    assert again.table[pd_cols].equals(lab.table[pd_cols])
    assert len(again.ledger) == len(lab.ledger)


def test_lab_refuses_what_it_cannot_compare_before_any_work(oracle, monkeypatch):
    monkeypatch.setattr(lab_module, "generate", lambda *a, **k: pytest.fail("ran before checking"))
    with pytest.raises(ValueError, match="more than the budget"):
        compare(oracle, ["mdlm", "rescore"], budgets=[16], num_samples=1, progress=False)
    with pytest.raises(ValueError, match="at least one strategy"):
        compare(oracle, [], budgets=[16], progress=False)
    with pytest.raises(TypeError, match="give a sampler or a spec"):
        compare(oracle, {"x": 3}, budgets=[16], progress=False)
    # one way to read a list of samplers (parse_samplers): a sampler given twice was silently dropped
    with pytest.raises(ValueError, match="'remdm-loop' is listed twice.*a dict"):
        compare(oracle, [ReMDMLoop(eta=0.01), ReMDMLoop(eta=0.02)], budgets=[16], progress=False)
    with pytest.raises(ValueError, match="'mdlm' and 'MDLM' are the same sampler"):
        compare(oracle, ["mdlm", "MDLM"], budgets=[16], progress=False)


def test_rescore_on_a_context_free_model_is_refused_with_the_fix():
    stub = explorer.StubDenoiser(torch.full((8, 5), 0.25).index_fill_(1, torch.tensor([4]), 0.0))
    with pytest.raises(ValueError, match="context-free"):
        explorer.generate(stub, Rescore(groups=2), 2, progress=False)


def test_a_sampler_that_needs_a_prompt_is_refused_without_one():
    @dataclass
    class Prompted(Sampler):
        name = "prompted-test"
        needs_prompt = True

        def step(self, ctx):
            return MDLM().step(ctx)
    with pytest.raises(ValueError, match="pass prompt="):
        explorer.generate(ContextModel(), Prompted(), 2, progress=False)
    assert explorer.generate(ContextModel(), Prompted(), 2, prompt=[1, 2], progress=False).complete


def test_calibration_raises_a_loose_bound_but_stays_within_the_budget():
    from explorer.studies.strategies import calibrate_steps
    m = PairModel(L=16, V=6)
    s = Rescore(draft=MDLM(), rounds=4, groups=2, window=2)
    t0 = steps_for_budget(s, 30, 16)                    # bound: T + 4 * (2 + 1)
    assert t0 == 18
    t = calibrate_steps(m, s, 30, t0, seed=1, probe=4)
    tr = explorer.generate(m, s, t, num_samples=4, seed=1, progress=False, record=False)
    assert t > t0 and tr.nfe.double().mean() <= 30
    lab = compare(m, {"rescore": s}, budgets=[30], num_samples=4, seed=1, progress=False)
    assert int(lab.table.steps.iloc[0]) == t and lab.table.quality.iloc[0] == "texts"


def test_saber_on_orders_gains_one_token_a_step_and_leaves_the_rest_to_the_final_pass():
    """The numbers notebook 08 and the README give for Saber's 0 % on ``orders`` (nucleus 0.9,
    budget 80 = 27 steps, 4 samples, seed 0): its threshold is never beaten, so every step writes the
    minimum n = 2 tokens and, from the second step on, takes one back; a step costs one draw and
    two re-scoring passes; the final argmax pass writes 848 of the 960 writable tokens."""
    from explorer.samplers import Saber
    m = explorer.load_model("orders")
    tr = explorer.generate(m, Saber(nucleus_p=0.9), 27, num_samples=4, seed=0, progress=False)
    ev = tr.events
    per_step = ev[ev.reason != "final_argmax"].groupby(["sample", "step", "kind"]).size().unstack(fill_value=0)
    assert (per_step["unmask"] == 2).all() and len(per_step) == 4 * 27
    assert (per_step["remask"] == (per_step.index.get_level_values("step") > 1)).all()
    assert list(tr.nfe) == [80] * 4            # 27 draws + 26 x 2 re-scoring passes + the final pass
    final = ev[ev.reason == "final_argmax"]
    assert len(final) == 848 and 4 * (m.seq_len - len(m.fixed_tokens)) == 960


def test_a_budget_plans_the_largest_steps_the_blocks_accept():
    """ReMDM-LLaDA at gen_length 32 (Table 3): a budget of 80 allows T = 40 by cost, which its block
    rule refuses; the lab aborted with a fix ('use steps=32') the command has no option for."""
    from explorer.samplers import by_name
    from explorer.studies.strategies import plan_cells, steps_for_budget

    s = by_name("remdm-llada")
    (_, _, _, t80), (_, _, _, t16) = plan_cells({"remdm-llada": s}, [80, 16], 32)
    assert steps_for_budget(s, 80, 32) == 40 and t80 == 32 and t16 == 8
    for t in (t80, t16):
        s.check_shape(32, t)
