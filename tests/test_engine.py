"""The engine's promises: determinism, batch independence, caching, prompts, branches, interrupts."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import explorer
from stub_models import ContextModel  # noqa: F401  (tests below build it)
from explorer.samplers import (MDLM, ConfidenceOrdered, DFMCorrector, ForwardBackward, ReMDMCap, ReMDMConf,
                               REGISTRY, ReMDMLoop, ReMDMRescale, ReMDMSwitch)

ALL = [MDLM(), ReMDMCap(0.05), ReMDMRescale(0.5), ReMDMConf(), ReMDMLoop(), ReMDMSwitch(0.05, 0.5),
       ForwardBackward(), DFMCorrector(), ConfidenceOrdered(block_length=5), MDLM(nucleus_p=0.9)]


def stub(L=8, V=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(L, V, generator=g) + 0.05
    p[:, -1] = 0
    return explorer.StubDenoiser(p)


@pytest.mark.parametrize("sampler", ALL, ids=lambda s: s.name + str(s.nucleus_p))
def test_same_seed_same_trace_and_batch_size_does_not_matter(sampler):
    m = ContextModel()
    a = explorer.generate(m, sampler, 16, num_samples=7, seed=3, progress=False)
    b = explorer.generate(m, sampler, 16, num_samples=7, seed=3, progress=False)
    c = explorer.generate(m, sampler, 16, num_samples=7, seed=3, batch_size=1, progress=False)
    assert a.same_as(b) and a.same_as(c)
    assert torch.equal(a.final, c.final)
    d = explorer.generate(m, sampler, 16, num_samples=7, seed=4, progress=False)
    assert not torch.equal(a.final, d.final)
    # sample i depends only on (seed, i): the first 3 of 7 equal a 3-sample run
    e = explorer.generate(m, sampler, 16, num_samples=3, seed=3, progress=False)
    assert torch.equal(e.final, a.final[:3])


@pytest.mark.parametrize("sampler", ALL, ids=lambda s: s.name + str(s.nucleus_p))
def test_fast_path_equals_full_logits_path(sampler):
    m = ContextModel()
    fast = explorer.generate(m, sampler, 12, num_samples=5, seed=1, progress=False, fast=True)
    full = explorer.generate(m, sampler, 12, num_samples=5, seed=1, progress=False, fast=False)
    assert fast.meta["fast"] and not full.meta["fast"]
    assert fast.same_as(full)


@pytest.mark.parametrize("sampler", ALL, ids=lambda s: s.name + str(s.nucleus_p))
def test_states_are_consistent_with_events(sampler):
    m = ContextModel()
    tr = explorer.generate(m, sampler, 12, num_samples=4, seed=2, progress=False)
    mask = m.mask_id
    assert (tr.state_at(0) == mask).all()
    assert not (tr.final == mask).any()
    assert torch.equal(tr.state_at(tr.last_step), tr.final)
    steps = tr.steps.set_index("step")
    for k in range(1, tr.last_step + 1):
        before, after = tr.state_at(k - 1), tr.state_at(k)
        ch = tr.changes_at(k)
        changed = (before != after).nonzero().tolist()
        assert sorted(map(list, zip(ch["sample"], ch["position"]))) == sorted(changed)
        assert ((ch.kind == "unmask") == (ch.from_id == mask)).all()
        assert ((ch.kind == "remask") == (ch.to_id == mask)).all()
        if k in steps.index:
            assert steps.loc[k, "n_masked"] == int((after == mask).sum()) or steps.loc[k, "phase"] == "final_argmax"
            assert steps.loc[k, "n_unmasked"] == int((ch.kind == "unmask").sum())
            assert steps.loc[k, "n_remasked"] == int((ch.kind == "remask").sum())
    assert tr.events.p_transition.between(0, 1).all()


def test_mdlm_at_4L_calls_the_model_at_most_L_plus_2_times():
    m = ContextModel(L=16)
    tr = explorer.generate(m, MDLM(), 64, num_samples=1, seed=0, progress=False)
    assert tr.model_calls == m.calls <= 16 + 2
    assert tr.steps.model_called.sum() == tr.model_calls


def test_cache_is_exact_and_counts_calls():
    """A step that changes nothing reuses p(x0): calls equal the number of distinct states sampled from."""
    m = ContextModel(L=12)
    tr = explorer.generate(m, ReMDMLoop(), 96, num_samples=2, seed=0, progress=False)
    changed = tr.steps[(tr.steps.n_unmasked + tr.steps.n_remasked) > 0]
    assert tr.model_calls <= len(changed) + 1
    assert tr.model_calls == m.calls


def test_prompt_tokens_are_never_changed():
    m = ContextModel(L=10)
    prompt = {0: 2, 4: 3, 9: 1}
    for s in [ReMDMCap(0.5), ReMDMConf(), ForwardBackward(), ConfidenceOrdered()]:
        tr = explorer.generate(m, s, 10, num_samples=6, seed=0, prompt=prompt, progress=False)
        assert tr.fixed[:, [0, 4, 9]].all() and tr.fixed.sum() == 18
        for k in range(tr.last_step + 1):
            st = tr.state_at(k)
            assert (st[:, 0] == 2).all() and (st[:, 4] == 3).all() and (st[:, 9] == 1).all()
        assert not tr.events.position.isin([0, 4, 9]).any()
    prefix = explorer.generate(m, MDLM(), 5, num_samples=2, prompt=[4, 5], progress=False)
    assert (prefix.final[:, :2] == torch.tensor([4, 5])).all()


def test_model_fixed_tokens_are_kept():
    m = ContextModel(L=8)
    m.fixed_tokens = {0: 0, 7: 1}
    tr = explorer.generate(m, ReMDMRescale(0.9), 8, num_samples=3, progress=False)
    assert (tr.final[:, 0] == 0).all() and (tr.final[:, 7] == 1).all()
    assert not tr.events.position.isin([0, 7]).any()


def test_selective_remasking_only_touches_allowed_positions():
    m = ContextModel(L=10)
    allowed = torch.zeros(10, dtype=torch.bool)
    allowed[3:6] = True
    tr = explorer.generate(m, ReMDMCap(0.3, remaskable=allowed), 30, num_samples=20, seed=1, progress=False)
    re = tr.events[tr.events.kind == "remask"]
    assert len(re) > 0 and re.position.between(3, 5).all()
    fn = lambda state: state.token_prob < 0.5          # noqa: E731 - remask only doubtful tokens
    tr2 = explorer.generate(m, ReMDMCap(0.3, remaskable=fn), 30, num_samples=20, seed=1, progress=False)
    re2 = tr2.events[tr2.events.kind == "remask"]
    assert len(re2) > 0 and (re2.prob < 0.5).all()
    assert tr2.meta["sampler"]["remaskable"] == {"callable": "test_selective_remasking_only_touches_allowed_positions.<locals>.<lambda>"}


def test_switch_never_remasks_before_t_switch():
    m = ContextModel()
    tr = explorer.generate(m, ReMDMSwitch(0.2, t_switch=0.5), 20, num_samples=10, progress=False)
    steps = tr.steps.set_index("step")
    re = tr.events[tr.events.kind == "remask"]
    assert len(re) > 0 and (steps.loc[re.step, "t"] < 0.5).all()


def test_resume_without_edit_reproduces_the_parent():
    m = ContextModel()
    parent = explorer.generate(m, ReMDMLoop(), 24, num_samples=4, seed=9, progress=False)
    branch = explorer.resume(m, parent, 10, progress=False)
    assert torch.equal(branch.final, parent.final)
    assert branch.meta["parent"] == {"run_id": parent.run_id, "step": 10, "edit": {"remask": [], "pin": [], "replace": {}}}
    for k in range(10, parent.last_step + 1):
        assert torch.equal(branch.state_at(k), parent.state_at(k))
    with pytest.raises(ValueError, match="outside"):
        branch.state_at(9)


def test_resume_with_remask_and_pin():
    m = ContextModel()
    parent = explorer.generate(m, ReMDMCap(0.2), 20, num_samples=3, seed=0, progress=False)
    k = 15
    st = parent.state_at(k)
    decoded = [p for p in range(m.seq_len) if (st[:, p] != m.mask_id).all()]
    rm, pin = decoded[:1], decoded[1:3]
    branch = explorer.resume(m, parent, k, remask=rm, pin=pin, progress=False)
    assert (branch.state_at(k)[:, rm] == m.mask_id).all()
    for j in range(k, branch.last_step + 1):
        assert torch.equal(branch.state_at(j)[:, pin], st[:, pin])
    assert branch.fixed[:, pin].all()
    assert branch.meta["parent"]["edit"]["remask"] == [[b, rm[0]] for b in range(3)]
    assert not (branch.final == m.mask_id).any()


class Interrupting(ContextModel):
    def __init__(self, after):
        super().__init__()
        self.after = after

    def body(self, z):
        if self.calls >= self.after:
            raise KeyboardInterrupt
        return super().body(z)


def test_ctrl_c_returns_the_partial_trace():
    m = Interrupting(after=5)
    with pytest.warns(UserWarning, match="interrupted"):
        tr = explorer.generate(m, MDLM(), 40, num_samples=2, seed=0, progress=False)
    assert not tr.complete and tr.model_calls == 5
    assert (tr.final == m.mask_id).any()
    assert torch.equal(tr.state_at(tr.last_step), tr.final)


@pytest.mark.parametrize("call,exc,msg", [
    (lambda m: explorer.generate(m, MDLM(), 0), ValueError, "steps"),
    (lambda m: explorer.generate(m, MDLM(), 2.5), ValueError, "steps"),
    (lambda m: explorer.generate(m, MDLM(), 4, num_samples=0), ValueError, "num_samples"),
    (lambda m: explorer.generate(m, MDLM(), 4, seed=-1), ValueError, "seed"),
    (lambda m: explorer.generate(m, MDLM(), 4, batch_size=0), ValueError, "batch_size"),
    (lambda m: explorer.generate(m, "mdlm", 4), TypeError, "Sampler"),
    (lambda m: explorer.generate(object(), MDLM(), 4), TypeError, "not a denoiser"),
    (lambda m: explorer.generate(m, MDLM(), 4, prompt={99: 1}), ValueError, "outside the sequence"),
    (lambda m: explorer.generate(m, MDLM(), 4, prompt=[m.mask_id]), ValueError, "non-mask token"),
    (lambda m: explorer.generate(m, MDLM(), 4, prompt="hello"), ValueError, "tokenizer"),
    (lambda m: explorer.generate(m, MDLM(), 4, device="cuda"), ValueError, "CUDA"),
    (lambda m: explorer.generate(m, ConfidenceOrdered(block_length=3), 4), ValueError, "divide"),
    (lambda m: explorer.resume(m, "trace", 1), TypeError, "Trace"),
])
def test_bad_inputs_give_clear_errors(call, exc, msg):
    if msg == "CUDA" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(exc, match=msg):
        call(ContextModel())


def test_bad_resume_edits():
    m = ContextModel()
    parent = explorer.generate(m, ReMDMCap(0.1), 10, num_samples=2, seed=0, progress=False)
    with pytest.raises(ValueError, match="step"):
        explorer.resume(m, parent, 10)
    with pytest.raises(ValueError, match="both"):
        explorer.resume(m, parent, 5, remask=[1], pin=[1])
    with pytest.raises(ValueError, match="pin"):
        explorer.resume(m, parent, 0, pin=[1])        # everything is masked at step 0
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        explorer.resume(m, parent, 5, remask=[10])
    quiet = explorer.generate(m, MDLM(), 10, record=False, progress=False)
    with pytest.raises(ValueError, match="record=False"):
        explorer.resume(m, quiet, 3)
    with pytest.raises(ValueError, match="record=False"):
        quiet.state_at(3)
    assert not (quiet.final == m.mask_id).any() and len(quiet.events) == 0


@pytest.mark.parametrize("sampler", [MDLM(), ReMDMCap(0.2), ReMDMLoop(eta=0.1, alpha_on=0.6), ReMDMConf(),
                                     ForwardBackward(), DFMCorrector(), MDLM(nucleus_p=0.8)],
                         ids=lambda s: s.name + str(s.nucleus_p))
def test_engine_matches_the_upstream_style_loop_in_distribution(sampler):
    """Joint law of a whole 3-token sequence under a context-dependent model: engine vs the
    straightforward upstream loop (full [B, L, V+1] float64 race).  Chi-square homogeneity test
    over the 64 outcomes, 3000 samples each, fixed seeds; a correct engine fails with p < 1e-4."""
    from scipy.stats import chi2_contingency

    from reference_loop import upstream_generate

    m = ContextModel(L=3, V=5, seed=1)
    n = 3000
    ours = explorer.generate(m, sampler, 6, num_samples=n, seed=0, progress=False, topk=0, record=False).final
    ref, _ = upstream_generate(m, sampler, 6, num_samples=n, seed=0)
    code = lambda x: (x[:, 0] * 16 + x[:, 1] * 4 + x[:, 2]).long()        # noqa: E731
    a = torch.bincount(code(ours), minlength=64)
    b = torch.bincount(code(ref), minlength=64)
    keep = (a + b) > 0
    table = torch.stack([a[keep], b[keep]]).numpy()
    assert chi2_contingency(table)[1] > 1e-4


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_per_sample_nfe_equals_batch_size_one_calls(name):
    """trace.nfe counts the calls each sample needs alone; batched calls hide MDLM's cache (§1.7).
    40 steps for 10 positions: the ranked samplers (P2, RCR, the swap, ...) have steps that write
    nothing, and the next step's draw, served by the cache, costs a sample alone no call."""
    m, sampler = ContextModel(L=10), REGISTRY[name]()
    steps = 10 if name == "remdm-llada" else 40     # its steps per block must divide the block
    batched = explorer.generate(m, sampler, steps, num_samples=5, seed=2, progress=False, record=False)
    one_by_one = explorer.generate(m, sampler, steps, num_samples=5, seed=2, progress=False, batch_size=1)
    assert batched.nfe.tolist() == one_by_one.nfe.tolist()
    assert one_by_one.model_calls == int(one_by_one.nfe.sum())
    assert batched.model_calls >= int(batched.nfe.max())


def test_package_api_survives_submodule_imports():
    import importlib

    importlib.import_module("explorer.sweep")
    import explorer.sweep  # noqa: F401
    assert callable(explorer.sweep) and callable(explorer.load_model) and callable(explorer.generate)


def test_decode_of_a_batch_gives_one_text_per_row():
    m = ContextModel()
    tr = explorer.generate(m, MDLM(), 8, num_samples=3, progress=False)
    texts = tr.decode(tr.final)
    assert isinstance(texts, list) and len(texts) == 3 and texts == tr.texts


def test_resume_with_replace_plants_a_token_without_pinning_it():
    m = ContextModel()
    parent = explorer.generate(m, ReMDMCap(0.3), 30, num_samples=4, seed=2, progress=False)
    k, pos = 20, 3
    st = parent.state_at(k)
    new = next(t for t in range(m.vocab_size) if t != m.mask_id and (st[:, pos] != t).all())
    branch = explorer.resume(m, parent, k, replace={pos: new}, progress=False)
    assert (branch.state_at(k)[:, pos] == new).all()              # planted in every sample
    assert not branch.fixed[:, pos].any()                           # ... but not pinned
    assert torch.isnan(branch.prob_at(k)[:, pos]).all()             # its probability is unknown
    assert branch.meta["parent"]["edit"]["replace"] == {str(pos): new}
    # a remasking sampler is free to revisit it: with sigma = 0.3 for 10 steps some sample does
    assert (branch.events.query("position == @pos and kind == 'remask'").shape[0]) > 0
    # plain MDLM never revisits a decoded token, so the planted token survives to the end
    frozen = explorer.resume(m, parent, k, replace={pos: new}, sampler=MDLM(), progress=False)
    assert (frozen.final[:, pos] == new).all()


@pytest.mark.parametrize("sampler", [ReMDMConf(), ReMDMCap(0.2)], ids=lambda s: s.name)
def test_a_branch_keeps_its_parents_confidences_and_resumes_like_itself(sampler, tmp_path):
    """A branch's tokens from before its start hold the p(x0) its parent recorded (prob_at, the viewer's
    frames, its files), so resuming a branch with no edit reproduces it. They were nan, so ReMDM-conf,
    which weighs remasks by that confidence (§2.4), never took them back: the sampler-math audit found
    resume(branch, 12) differing from the branch in 6 of 500 samples."""
    m = ContextModel()
    parent = explorer.generate(m, sampler, 20, num_samples=64, seed=2, progress=False)
    branch = explorer.resume(m, parent, 12, replace={3: 0}, progress=False)
    inherited = parent.prob_at(12)
    inherited[:, 3] = float("nan")                                   # the planted token has none
    start = branch.prob_at(12)                                        # the branch's first state
    assert inherited.isfinite().sum() > 50 and torch.equal(start.isnan(), inherited.isnan())
    assert torch.equal(start.nan_to_num(), inherited.double().nan_to_num())
    changed = torch.zeros(branch.num_samples, branch.seq_len, dtype=torch.bool)   # by the branch up to step 15
    ev = branch.events.query("step <= 15")
    changed[torch.tensor(ev["sample"].to_numpy()), torch.tensor(ev["position"].to_numpy())] = True
    untouched = ~changed & inherited.isfinite()                      # decoded before the branch, kept in it
    assert untouched.any()
    assert torch.equal(branch.prob_at(15)[untouched].isnan(), inherited[untouched].isnan())
    assert torch.allclose(branch.prob_at(15)[untouched].nan_to_num(), inherited[untouched].double().nan_to_num())
    frame = branch.index(0).frame(15)
    decoded = untouched[0] & ~branch.fixed[0]
    assert np.allclose(frame.prob[decoded.numpy()], inherited[0][decoded].numpy(), equal_nan=True)
    again = explorer.resume(m, branch, 15, progress=False)
    assert torch.equal(again.final, branch.final)
    for fmt in ("csv", "parquet"):                                   # and as read back from its files
        path = tmp_path / f"branch.{fmt}"
        getattr(branch, f"to_{fmt}")(path)
        read = explorer.Trace.read(path)
        assert torch.equal(read.prob_at(15).isnan(), branch.prob_at(15).isnan())
        assert torch.equal(read.prob_at(15).nan_to_num(), branch.prob_at(15).nan_to_num())
        assert torch.equal(explorer.resume(m, read, 15, progress=False).final, branch.final)
    # a run from step 0 inherits nothing: its sidecar has no initial_prob (the file format is unchanged)
    parent.to_csv(tmp_path / "parent.csv")
    assert "initial_prob" not in json.loads((tmp_path / "parent.csv.meta.json").read_text())


@pytest.mark.parametrize("replace,msg", [
    ([3, 4], "dict"),
    ({99: 1}, "position"),
    ({3: -1}, "token"),
    ({3: "not-a-token"}, "single token"),
])
def test_bad_replace_edits(replace, msg):
    m = ContextModel()
    parent = explorer.generate(m, ReMDMCap(0.1), 10, num_samples=2, seed=0, progress=False)
    if msg == "token":
        replace = {3: m.mask_id}
    with pytest.raises(ValueError, match=msg):
        explorer.resume(m, parent, 5, replace=replace, progress=False)
    with pytest.raises(ValueError, match="choose one edit"):
        explorer.resume(m, parent, 5, replace={1: 0 if m.mask_id else 1}, remask=[1], progress=False)


def test_on_step_hook_sees_every_change_and_cannot_change_the_run():
    m = ContextModel()
    plain = explorer.generate(m, ReMDMLoop(), 12, num_samples=3, seed=5, progress=False)
    updates = []

    def hook(u):
        updates.append(u)
        u.x.fill_(0)                       # a copy: the run must not see this
    tr = explorer.generate(m, ReMDMLoop(), 12, num_samples=3, seed=5, progress=False, on_step=hook,
                           batch_size=2)
    assert tr.same_as(plain)
    ev = tr.events
    assert sum(len(u.unmasked) for u in updates) == int((ev.kind == "unmask").sum())
    assert sum(len(u.remasked) for u in updates) == int((ev.kind == "remask").sum())
    grid_updates = [u for u in updates if u.phase != "final_argmax"]
    assert grid_updates[-1].steps_done == grid_updates[-1].steps_total == 2 * len(ReMDMLoop().grid(12))
    assert updates[-1].model_calls == tr.model_calls


def test_the_loop_runs_without_autograd_and_the_hook_in_the_callers_mode():
    seen = []

    class Watch(MDLM):
        def step(self, ctx):
            seen.append(("step", torch.is_grad_enabled()))
            return super().step(ctx)
    hook = lambda u: seen.append(("hook", torch.is_grad_enabled()))  # noqa: E731
    explorer.generate(stub(), Watch(), 4, num_samples=2, progress=False, on_step=hook)
    assert {k for k, _ in seen} == {"step", "hook"}
    assert not any(g for k, g in seen if k == "step") and all(g for k, g in seen if k == "hook")
    seen.clear()
    with torch.no_grad():
        explorer.generate(stub(), Watch(), 4, num_samples=2, progress=False, on_step=hook)
    assert seen and not any(g for _, g in seen)
    assert torch.is_grad_enabled()


def test_stop_generation_in_the_hook_returns_an_incomplete_trace():
    m = ContextModel()

    def stop(u):
        if u.step == 4:
            raise explorer.StopGeneration
    with pytest.warns(UserWarning, match="interrupted"):
        tr = explorer.generate(m, MDLM(), 12, num_samples=2, progress=False, on_step=stop)
    assert not tr.complete and tr.last_step == 4
    full = explorer.generate(m, MDLM(), 12, num_samples=2, progress=False)
    assert torch.equal(tr.state_at(4), full.state_at(4))


def _stopped(m, step, **kw):
    def stop(u):
        if u.step == step:
            raise explorer.StopGeneration
    with pytest.warns(UserWarning, match="interrupted"):
        return explorer.generate(m, ReMDMLoop(), 12, num_samples=4, seed=3, progress=False, on_step=stop, **kw)


def test_a_stopped_trace_resumes_only_where_every_row_reached_the_step():
    """Stopped while all rows ran as one batch, a trace resumes up to its last step and, with no edit,
    replays the uninterrupted run; stopped in a later batch (rows that never ran, still in their
    initial state), or past its last step, it is refused instead of giving wrong samples."""
    m = ContextModel()
    full = explorer.generate(m, ReMDMLoop(), 12, num_samples=4, seed=3, progress=False)
    one_batch = _stopped(m, 5)
    branch = explorer.resume(m, one_batch, 5, progress=False)
    assert branch.complete and torch.equal(branch.final, full.final)
    with pytest.raises(ValueError, match="stopped after step 5"):
        explorer.resume(m, one_batch, 6, progress=False)
    batched = _stopped(m, 5, batch_size=2)
    assert not torch.equal(batched.state_at(3)[2:], full.state_at(3)[2:])     # rows 2, 3 never ran
    with pytest.raises(ValueError, match="batches of 2"):
        explorer.resume(m, batched, 3, progress=False)


def test_steps_table_counts_masks_whether_or_not_the_run_is_recorded():
    """A sweep runs with record=False and no progress bar: its steps table used to say n_masked = 0."""
    m = ContextModel()
    on = explorer.generate(m, ReMDMLoop(), 12, num_samples=3, seed=1, progress=False, record=True)
    off = explorer.generate(m, ReMDMLoop(), 12, num_samples=3, seed=1, progress=False, record=False)
    cols = ["step", "n_masked", "n_unmasked", "n_remasked"]
    assert on.steps[cols].equals(off.steps[cols])
    for k in on.steps.step:
        assert int(on.steps.set_index("step").loc[k, "n_masked"]) == int((on.state_at(k) == m.mask_id).sum())
    assert off.steps.n_masked.iloc[0] > 0


def test_fill_masked_is_the_final_pass():
    from explorer.metrics import fill_argmax
    m = ContextModel()
    tr = explorer.generate(m, MDLM(), 4, num_samples=3, seed=2, progress=False)
    z = tr.state_at(2)
    filled = explorer.engine.fill_masked(m, z)
    assert torch.equal(filled[z != m.mask_id], z[z != m.mask_id]) and not (filled == m.mask_id).any()
    assert torch.equal(fill_argmax(m, z, batch_size=2), filled)
    # the trace's own final pass: resuming at step 3 of a 4-step run with one step left, then argmax
    last = tr.state_at(4)
    final = tr.final
    assert torch.equal(explorer.engine.fill_masked(m, last), final)


class _Misbehaving(MDLM):
    """A sampler whose decision breaks the protocol in the way ``how`` says."""
    name = "misbehaving"

    def __init__(self, how: str, promise: bool = False):
        super().__init__()
        self.how, self.promise = how, promise

    def step(self, ctx):
        from explorer.samplers.step import Decision, Write
        d = super().step(ctx)
        if ctx.st.step < 3:
            return d
        if self.how == "remask masked":          # a position that is already [MASK]
            return Decision(remask=ctx.masked.clone(), valid_by_construction=self.promise)
        if self.how == "remask fixed":           # a prompt position
            return Decision(remask=ctx.fixed & ~ctx.masked, valid_by_construction=self.promise)
        b, pos = (~ctx.masked).nonzero(as_tuple=True)         # "write decoded": over a decoded token
        return Decision(write=Write(b[:1], pos[:1], ctx.x[b[:1], pos[:1]], torch.ones(1)),
                        valid_by_construction=self.promise)


@pytest.mark.parametrize("how, msg", [("remask masked", "tried to remask a masked"),
                                      ("remask fixed", "tried to remask a masked, prompt"),
                                      ("write decoded", "write at a position that is not masked")])
def test_the_engine_refuses_a_decision_that_breaks_the_protocol(how, msg):
    m = ContextModel(L=12, V=6)
    prompt = torch.tensor([1, 2])
    with pytest.raises(ValueError, match=msg):
        explorer.generate(m, _Misbehaving(how), 8, num_samples=2, prompt=prompt if how == "remask fixed" else None,
                          progress=False)


def test_the_rate_step_promises_valid_decisions_and_keeps_them():
    # the built-in rate step builds its masks from ctx.masked / ctx.decoded, so the engine skips its
    # checks for it; the promise must hold on every step of every remasking sampler
    for sampler in (ReMDMLoop(), ReMDMCap(eta=0.05), ReMDMConf()):
        seen = []
        t = explorer.generate(ContextModel(L=16, V=6), sampler, 24, num_samples=3, progress=False,
                              on_step=lambda u: seen.append(u))
        assert len(seen) >= 24
        ev = t.events
        assert (ev.kind == "remask").any()
        for s, grp in ev.groupby("step"):
            before = t.state_at(int(s) - 1)
            re = grp[grp.kind == "remask"]
            assert (before[re["sample"].tolist(), re["position"].tolist()] != t.meta.mask_id).all()
            assert not t.fixed[re["sample"].tolist(), re["position"].tolist()].any()
            un = grp[grp.kind == "unmask"]
            was_masked = before[un["sample"].tolist(), un["position"].tolist()] == t.meta.mask_id
            taken_back = set(zip(re["sample"], re["position"]))
            assert all(m or (b, p) in taken_back for m, b, p in zip(was_masked.tolist(), un["sample"], un["position"]))
            assert not un.duplicated(["sample", "position"]).any()


def test_on_step_updates_say_which_positions_are_fixed():
    m = ContextModel(L=12, V=6)
    seen = []
    t = explorer.generate(m, ReMDMLoop(), 8, num_samples=2, prompt=torch.tensor([1, 2, 3]), progress=False,
                          on_step=seen.append)
    assert seen and all(u.gen_start == 0 for u in seen)
    for u in seen:
        assert u.fixed.shape == u.x.shape and u.fixed.dtype == torch.bool
        assert torch.equal(u.fixed, t.fixed[u.samples])          # the prompt, exactly


def test_a_text_prompt_with_words_the_vocabulary_lacks_is_refused_naming_them():
    """The orders tokenizer is word-level: an unknown word used to become [UNK] silently, so the
    prompt said something else than what was typed."""
    m = explorer.load_model("orders")
    with pytest.raises(ValueError, match=r"does not know \('Country', 'DE'\).*\[UNK\]"):
        explorer.generate(m, MDLM(), 4, prompt="order = Country DE", progress=False)
    tr = explorer.generate(m, MDLM(), 4, prompt="order =", progress=False)
    with pytest.raises(ValueError, match="'DE' is not a single token"):     # a {position: word} prompt too
        explorer.generate(m, MDLM(), 4, prompt={3: "DE"}, progress=False)
    ids, row = m.tokenizer("order =", add_special_tokens=False)["input_ids"], tr.final[0].tolist()
    assert any(row[i:i + 2] == ids for i in range(len(row) - 1))


def test_a_prefix_prompt_keeps_the_models_fixed_tokens():
    """orders writes 'order' at 0, 16, 32, ...: a prompt typed from the start of the text ('order
    france ...') used to go after the leading one ('order order france ...') and a 16-token prompt
    overwrote the fixed 'order' at 16, silently breaking the records."""
    m = explorer.load_model("orders")
    record = "order france eur 20% pan kitchen 48 x 2 = 96 ordered 05 shipped 13 ;"
    ids = m.tokenizer(record, add_special_tokens=False)["input_ids"]
    assert len(ids) == 16
    for prompt, at in ((record, 0), (record.removeprefix("order "), 1)):
        tr = explorer.generate(m, MDLM(), 4, prompt=prompt, progress=False)
        assert tr.final[0, :16].tolist() == ids and bool(tr.fixed[0, :16].all()), prompt
        assert tr.decode([int(tr.final[0, 16])]).strip() == "order"
    with pytest.raises(ValueError, match=r"token id \d+ \('spain'\) at position 16, where the model always has its "
                                         r"fixed token id \d+ \('order'\)"):
        explorer.generate(m, MDLM(), 4, prompt=record + " spain", progress=False)   # 'spain' where 'order' stands



def test_a_seed_beyond_the_streams_range_is_refused():
    """The random streams key on the seed mod 2**64, so seed 2**64 replayed seed 0's samples."""
    m = ContextModel(L=6, V=5)
    with pytest.raises(ValueError, match=r"seed=18446744073709551616 is above 2\*\*63 - 1"):
        explorer.generate(m, MDLM(), 2, seed=2 ** 64, progress=False)
    explorer.generate(m, MDLM(), 2, seed=2 ** 63 - 1, progress=False)


def test_a_prompt_longer_than_the_sequence_says_by_how_much():
    m = ContextModel(L=6, V=5)
    with pytest.raises(ValueError, match=r"the prompt is 8 tokens but the sequence holds 6; shorten it by 2 token"):
        explorer.generate(m, MDLM(), 2, prompt=torch.tensor([1, 2, 3, 1, 2, 3, 1, 2]), progress=False)
