"""The rules of the published remasking strategies (P2, RCR, WINO, FiRe), each on a small model whose
right answer is known, plus: every registered sampler round-trips its config and runs.

``PairModel`` wants the two tokens of each pair (2k, 2k + 1) to be equal: a token whose partner is
decoded has probability AGREE if it equals the partner and (1 - AGREE) / (V - 2) otherwise; with the
partner masked every token has 1 / (V - 1).  So every re-scored probability is known from the state.
"""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch

import explorer
import stub_models
from stub_models import PairModel
import explorer.models
from explorer.samplers import MDLM, P2, RCR, REGISTRY, WINO, FiRe, Saber, TokenSwap, from_config


def ContextModel(**kw):
    return stub_models.ContextModel(**{"L": 12, **kw})


class GrowingModel:
    """Every position prefers token 0 with p = 0.3 + 0.6 f, f the decoded share of its row: a token
    written early has a lower confidence than one written later, so RCR has something to take back."""

    def __init__(self, L=16, V=6):
        self.mask_id, self.vocab_size, self.seq_len, self.tokenizer = V - 1, V, L, None

    def logits(self, z):
        B, L = z.shape
        f = (z != self.mask_id).double().mean(1, keepdim=True)
        p = torch.zeros(B, L, self.vocab_size, dtype=torch.float64)
        p[..., 0] = 0.3 + 0.6 * f
        p[..., 1:-1] = ((0.7 - 0.6 * f) / (self.vocab_size - 2))[..., None]
        p[..., -1] = 1e-30
        return p.log().float()


BROKEN = (1 - PairModel.AGREE) / 4      # V = 6
BLIND = 1 / 5


def expected_score(x, pos, mask_id, hidden):
    """The PairModel probability of the token at ``pos`` (row-wise) with the positions ``hidden`` masked."""
    partner = pos ^ 1
    if hidden[partner] or x[partner] == mask_id:
        return BLIND
    return PairModel.AGREE if x[partner] == x[pos] else BROKEN


def step_events(tr, step, kind):
    ev = tr.events
    return ev[(ev.step == step) & (ev.kind == kind)]


# ------------------------------------------------------------------------------------------- P2
def test_p2_remasks_the_decoded_tokens_the_model_rejects_first():
    """T = 3 on 16 positions: step 1 decodes 6 blind tokens, step 2 keeps 5 masked.  Masked positions
    score log 0.2 (their partner is masked), a broken decoded token log 0.0075, an intact one log 0.97:
    the plan remasks exactly the broken decoded tokens (at most 5), each with its re-scored p."""
    m = PairModel()
    tr = explorer.generate(m, P2(groups=2), 3, num_samples=64, seed=0, progress=False)
    before = tr.state_at(1)
    rem = step_events(tr, 2, "remask")
    assert len(rem) and (rem.reason == "rescore").all()
    for s in range(64):
        x = before[s]
        dec = (x != m.mask_id).nonzero().flatten().tolist()
        broken = [p for p in dec if x[p ^ 1] != m.mask_id and x[p ^ 1] != x[p]]
        got = sorted(rem[rem["sample"] == s].position.tolist())
        assert len(got) == min(len(broken), 5) and set(got) <= set(broken)
    assert rem.prob.to_numpy() == pytest.approx(BROKEN, rel=1e-4)
    assert (tr.final != m.mask_id).all() and tr.steps.n_masked.tolist()[:3] == [64 * 10, 64 * 5, 0]
    # cost: 3 draws, plus 2 re-scoring passes at the steps that have decoded tokens
    assert (tr.nfe <= 3 + 2 * 2).all()
    # eta = 0: a decoded token scores 0 > log 0.2, so nothing is ever remasked
    assert not (explorer.generate(m, P2(groups=2, eta=0.0), 3, num_samples=8, progress=False)
                .events.kind == "remask").any()


def test_p2_upstream_scoring_and_remaskable():
    m = PairModel()
    tr = explorer.generate(m, P2(decoded="draw"), 4, num_samples=8, progress=False)
    assert tr.nfe.tolist() == [4] * 8          # no re-scoring pass: one forward per step
    rem = tr.events.query("kind == 'remask'")
    assert rem.empty or (rem.reason == "confidence").all()
    odd = torch.arange(16) % 2 == 1
    tr = explorer.generate(m, P2(groups=2, remaskable=odd), 3, num_samples=32, progress=False)
    rem = tr.events.query("kind == 'remask'")
    assert len(rem) and (rem.position % 2 == 1).all()


# ------------------------------------------------------------------------------------------ RCR
@pytest.mark.parametrize("block_length", [None, 8])
def test_rcr_keeps_the_most_confident_tokens_on_the_schedule(block_length):
    m = GrowingModel()
    T = 4 if block_length is None else 8
    s, L = T // (1 if block_length is None else 2), m.seq_len
    bl = L if block_length is None else block_length
    tr = explorer.generate(m, RCR(block_length=block_length), T, num_samples=16, seed=3, progress=False)
    assert (tr.final != m.mask_id).all() and tr.nfe.tolist() == [T] * 16
    ratio = torch.linspace(0, 1, s + 1)
    remasks = 0
    for step in range(1, T + 1):
        x0, p0, x1 = tr.state_at(step - 1), tr.prob_at(step - 1), tr.state_at(step)
        blk, i = divmod(step - 1, s)
        window = slice(blk * bl, (blk + 1) * bl)
        left = (x1[:, window] == m.mask_id).sum(-1)
        assert (left == bl - (ratio[i + 1] * bl).round().long()).all()      # the MaskGIT linear schedule
        rem, new = step_events(tr, step, "remask"), step_events(tr, step, "unmask")
        remasks += len(rem)
        assert (rem.reason == "confidence").all()
        for smp in range(16):
            r, n = rem[rem["sample"] == smp], new[new["sample"] == smp]
            # each remask carries its cached confidence, the lowest among all the tokens kept
            assert r.prob.to_numpy() == pytest.approx(p0[smp, r.position.tolist()].numpy())
            kept_old = [p0[smp, q].item() for q in range(window.start, window.stop)
                        if x0[smp, q] != m.mask_id and q not in set(r.position)]
            if len(r):
                assert r.prob.max() <= min(kept_old + n.prob.tolist()) + 1e-6
    assert remasks > 0


# ----------------------------------------------------------------------------------------- WINO
def test_wino_draft_accepts_above_threshold_and_verify_remasks_below():
    """Resume an MDLM run half way with WINO.  Draft: a masked position whose partner is decoded draws
    the partner's token with confidence 0.97 > 0.6 (a blind one has 0.2), so those are written.
    Verify (rows that accepted more than one): a decoded token is remasked iff its re-scored
    probability is below 0.9 -- its pair is broken or its partner is masked."""
    m = PairModel()
    base = explorer.generate(m, MDLM(), 8, num_samples=64, seed=1, progress=False)
    tr = explorer.resume(m, base, 4, sampler=WINO(groups=2), progress=False)
    x = base.state_at(4)
    new, rem = step_events(tr, 5, "unmask"), step_events(tr, 5, "remask")
    assert len(rem) and (rem.reason == "rescore").all()
    for s in range(64):
        n, r = new[new["sample"] == s], rem[rem["sample"] == s]
        assert len(n) >= 1
        if len(n) > 1:
            assert (n.prob > 0.6).all()
            expect = {p for p in range(16) if x[s, p] != m.mask_id
                      and expected_score(x[s], p, m.mask_id, torch.zeros(16, dtype=torch.bool)) < 0.9}
            assert set(r.position) == expect
            for p, prob in zip(r.position, r.prob):
                assert prob == pytest.approx(expected_score(x[s], p, m.mask_id, torch.zeros(16, dtype=torch.bool)),
                                             rel=1e-4)
        else:
            assert r.empty
    assert (tr.final != m.mask_id).all()


def test_wino_stops_calling_the_model_once_a_row_is_full():
    m = PairModel()
    tr = explorer.generate(m, WINO(groups=2, block_length=8), 40, num_samples=4, seed=0, progress=False)
    assert (tr.nfe < 40).all() and (tr.final != m.mask_id).all()
    assert not (tr.events.reason == "final_argmax").any()


# ----------------------------------------------------------------------------------------- FiRe
def test_fire_masks_a_random_share_and_rescores_the_original_tokens():
    """With update_rate = 1 a round resamples its whole random group, so the group is the round's
    remask set: its size is n - floor(n (1 - r_k)), and each remask carries p(original token | the
    group masked), known from the state before the round."""
    m = PairModel()
    sampler = FiRe(draft=MDLM(), rounds=4, lock_after=100)
    tr = explorer.generate(m, sampler, 1, num_samples=32, seed=0, progress=False)
    assert [round(sampler.ratio(k), 6) for k in (0, 3)] == [0.8, 0.4]
    for k in range(4):
        step = 2 + k
        before = tr.state_at(step - 1)
        rem = step_events(tr, step, "remask")
        assert (rem.reason == "rescore").all()
        for s in range(32):
            r = rem[rem["sample"] == s]
            assert len(r) == 16 - math.floor(16 * (1 - sampler.ratio(k)))
            hidden = torch.zeros(16, dtype=torch.bool)
            hidden[r.position.tolist()] = True
            for p, prob in zip(r.position, r.prob):
                assert prob == pytest.approx(expected_score(before[s], p, m.mask_id, hidden), rel=1e-4)
    assert tr.nfe.tolist() == [1 + 4] * 32


def test_fire_locks_a_position_after_identical_resamples():
    m = PairModel()
    tr = explorer.generate(m, FiRe(draft=MDLM(), rounds=12, lock_after=2, temperature=0.0), 1,
                           num_samples=16, seed=2, progress=False)
    ev = tr.events
    new = ev[(ev.kind == "unmask") & (ev.step >= 2)].sort_values("step")
    rem = ev[ev.kind == "remask"]
    locked_any = False
    for (s, p), g in new.groupby(["sample", "position"]):
        toks, steps = g.token_id.tolist(), g.step.tolist()
        for j in range(1, len(toks)):
            if toks[j] == toks[j - 1]:     # two identical resamples in a row: locked from then on
                later = rem[(rem["sample"] == s) & (rem.position == p) & (rem.step > steps[j])]
                assert later.empty
                locked_any = True
                break
    assert locked_any
    # fully locked rows stop calling the model
    assert (tr.nfe < 1 + 12).any()


# ---------------------------------------------------------------------------------------- Saber
def test_saber_unmasks_above_the_mean_confidence_and_takes_back_the_biggest_drops():
    """Resume an MDLM run half way with Saber (n = 2).  Acceleration: every written token beats
    tau, the mean cached confidence of the decoded tokens, unless only n were written.  Backtracking:
    k = min(max(n // 2, ceil(A / 8)), A - 1) decoded tokens go back, those whose re-scored p fell most
    below the confidence they were written with."""
    m = PairModel()
    base = explorer.generate(m, MDLM(), 8, num_samples=64, seed=5, progress=False)
    tr = explorer.resume(m, base, 4, sampler=Saber(groups=2), progress=False)
    x, cached = base.state_at(4), base.prob_at(4).double()
    new, rem = step_events(tr, 5, "unmask"), step_events(tr, 5, "remask")
    assert len(rem) and (rem.reason == "rescore").all()
    none = torch.zeros(16, dtype=torch.bool)
    for s in range(64):
        n, r = new[new["sample"] == s], rem[rem["sample"] == s]
        dec = [p for p in range(16) if x[s, p] != m.mask_id]
        masked = 16 - len(dec)
        tau = cached[s, dec].mean().item() if dec else 1.0
        A = len(n)
        assert A >= min(2, masked)
        if A > 2:
            assert (n.prob > tau - 1e-6).all()
        k = max(0, min(max(1, (A + 7) // 8), A - 1)) if dec else 0
        assert len(r) == min(k, len(dec))
        delta = {p: expected_score(x[s], p, m.mask_id, none) - cached[s, p].item() for p in dec}
        if len(r):
            taken = set(r.position)
            assert max(delta[p] for p in taken) <= min([delta[p] for p in dec if p not in taken] + [math.inf]) + 1e-5
            for p, prob in zip(r.position, r.prob):
                assert prob == pytest.approx(expected_score(x[s], p, m.mask_id, none), rel=1e-4)
    full = explorer.generate(m, Saber(groups=2), 64, num_samples=4, seed=0, progress=False)
    assert (full.nfe < 64).all() and (full.final != m.mask_id).all()


# ----------------------------------------------------------------------------------- token swap
def test_token_swap_replaces_confident_disagreements():
    """PairModel predicts a decoded position from its partner too (as a model trained for editing
    would): a broken pair's token draws the partner's token with p = 0.97 > 0.9 and is swapped; an
    intact or lonely token never is.  Masked positions whose partner is decoded are committed above 0.95."""
    m = PairModel()
    base = explorer.generate(m, MDLM(), 8, num_samples=64, seed=1, progress=False)
    tr = explorer.resume(m, base, 4, sampler=TokenSwap(), progress=False)
    x = base.state_at(4)
    ev = tr.events
    rem = ev[(ev.step == 5) & (ev.kind == "remask")]
    new = ev[(ev.step == 5) & (ev.kind == "unmask")]
    assert len(rem) and (rem.reason == "confidence").all()
    for (s, p), prob in zip(zip(rem["sample"], rem.position), rem.prob):
        partner = x[s, p ^ 1]
        assert partner != m.mask_id and partner != x[s, p] and prob > 0.9
        w = new[(new["sample"] == s) & (new.position == p)]
        assert len(w) == 1 and w.token_id.iloc[0] == partner
    for s in range(64):
        n = new[(new["sample"] == s) & ~new.position.isin(rem[rem["sample"] == s].position)]
        masked = int((x[s] == m.mask_id).sum())
        if len(n) > 16 // 8:            # more than the schedule's n_i (16 over 8 steps): all above 0.95
            assert (n.prob > 0.95).all()
        else:
            assert len(n) == min(16 // 8, masked)
    # a call per step (steps 5 to 8) and for the final argmax pass where the schedule left masks, but
    # a sample alone pays none for a draw whose state is unchanged since its last one (§1.7 cache)
    final = ev[ev.reason == "final_argmax"]
    for s in range(64):
        changed = set(ev.loc[(ev["sample"] == s) & (ev.reason != "final_argmax"), "step"])
        expect = 1 + sum(k - 1 in changed for k in (6, 7, 8)) + int((final["sample"] == s).any() and 8 in changed)
        assert tr.nfe[s] == expect, s
    assert (tr.nfe < 4).any() and (tr.final != m.mask_id).all()


@pytest.mark.parametrize("sampler, steps, model", [
    (P2(groups=2), 4, PairModel), (RCR(), 4, GrowingModel), (WINO(groups=2), 16, GrowingModel),
    (FiRe(rounds=3), 2, PairModel), (Saber(groups=2), 8, PairModel), (TokenSwap(editing_threshold=0.5), 4, PairModel),
])
def test_remaskable_is_honoured(sampler, steps, model):
    odd = torch.arange(16) % 2 == 1
    s = from_config({**sampler.config, "remaskable": odd.tolist()})
    tr = explorer.generate(model(), s, steps, num_samples=16, seed=0, progress=False)
    rem = tr.events.query("kind == 'remask'")
    assert len(rem) and (rem.position % 2 == 1).all()


# ------------------------------------------------------------------------------------ settings
@pytest.mark.parametrize("cls, kw, match", [
    (P2, {"eta": -1.0}, "eta"),
    (P2, {"groups": 0}, "groups must be an integer"),
    (P2, {"decoded": "fresh"}, "decoded must be 'rescore'"),
    (RCR, {"block_length": 0}, "block_length must be a positive integer"),
    (RCR, {"temperature": -0.5}, "temperature"),
    (WINO, {"threshold": 1.0}, "threshold=1.0 must be in \\(0, 1\\)"),
    (WINO, {"threshold_back": 0.0}, "threshold_back"),
    (WINO, {"max_accept": 0}, "max_accept must be an integer"),
    (FiRe, {"draft": "mdlm"}, "draft must be a sampler"),
    (FiRe, {"start_ratio": 1.0}, "start_ratio=1.0 must be in \\(0, 1\\)"),
    (FiRe, {"update_rate": 0.0}, "update_rate"),
    (FiRe, {"lock_after": 0}, "lock_after must be an integer"),
    (FiRe, {"rounds": -1}, "rounds must be an integer"),
    (Saber, {"n": 0}, "n must be an integer"),
    (Saber, {"groups": 0}, "groups must be an integer"),
    (Saber, {"block_length": True}, "block_length must be a positive integer"),
    (WINO, {"temperature": float("nan")}, "temperature must be a number"),
    (TokenSwap, {"editing_threshold": 1.5}, "editing_threshold"),
    (TokenSwap, {"threshold": 0.0}, "threshold"),
    (TokenSwap, {"block_length": 0}, "block_length must be a positive integer"),
])
def test_bad_settings_name_the_fix(cls, kw, match):
    with pytest.raises(ValueError, match=match):
        cls(**kw)


@pytest.mark.parametrize("cls", [RCR, TokenSwap, WINO, Saber])
def test_block_samplers_share_their_block_settings(cls):
    """block_length and temperature (and groups for WINO / Saber) come from samplers.blocks: the same
    defaults for every block sampler, set by keyword only, so a strategy's own settings keep their places."""
    s = cls()
    assert (s.block_length, s.temperature, getattr(s, "groups", None)) == (None, 1.0, None)
    own = cls(block_length=8, temperature=0.5)
    assert (own.config["block_length"], own.config["temperature"]) == (8, 0.5)
    assert from_config(own.config).config == own.config
    with pytest.raises(TypeError):
        cls(*[getattr(s, f.name) for f in dataclasses.fields(s) if not f.kw_only], 8)


def test_shape_errors_before_any_work():
    m = PairModel()
    with pytest.raises(ValueError, match="groups=17"):
        explorer.generate(m, P2(groups=17), 4, progress=False)
    with pytest.raises(ValueError, match="block_length"):
        explorer.generate(m, WINO(block_length=5), 4, progress=False)
    with pytest.raises(ValueError, match="not divisible by the number of blocks"):
        explorer.generate(m, RCR(block_length=8), 3, progress=False)


# ------------------------------------------------------------------------------- every sampler
@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_registered_sampler_round_trips_and_runs(name):
    s = explorer.samplers.by_name(name)
    again = from_config(s.config)
    assert type(again) is type(s) and again.config == s.config
    m = ContextModel()
    tr = explorer.generate(m, again, 4, num_samples=2, seed=0, progress=False)
    assert tr.complete and (tr.final != m.mask_id).all()
    assert tr.meta["sampler"] == s.config


def test_strategies_run_on_a_prompted_llada_checkpoint(tmp_path):
    explorer.models.write_random_checkpoint(tmp_path, "llada")
    m = explorer.load_model(tmp_path)
    for s in (P2(), RCR(block_length=4), WINO(block_length=4), FiRe(rounds=2), Saber(block_length=4),
              TokenSwap(block_length=4)):
        tr = explorer.generate(m, s, 4, prompt="hi", gen_length=8, num_samples=2, progress=False)
        assert tr.complete and (tr.final[:, -8:] != m.mask_id).all()
        assert not (tr.events.query("kind == 'remask'").position < tr.meta["gen_start"]).any()
