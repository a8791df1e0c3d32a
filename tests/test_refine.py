"""explorer.refine: ReMDM's loop phase at constant alpha on a given sequence (reference §2.1, §2.5).

Statistics use a context-free StubDenoiser, whose positions are independent chains; every
tolerance is stated in standard errors of the quantity tested, with a fixed seed.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import explorer
from explorer import samplers
from explorer.samplers import MDLM, ReMDMLoop, ReMDMRefine

L, V = 32, 6          # mask id = V - 1
N = 64                # 2048 independent chains


def stub(tokenizer=None):
    probs = torch.rand(L, V, generator=torch.Generator().manual_seed(3)) + 0.05
    probs[:, -1] = 0
    return explorer.StubDenoiser(probs, tokenizer=tokenizer)


def clean_ids(n=N, seed=0):
    return torch.randint(0, V - 1, (n, L), generator=torch.Generator().manual_seed(seed))


def recursion(alpha, eta, steps):
    """m_k: the expected masked fraction after k loop steps, from m_0 = 0 (a complete sequence)."""
    u = min(1.0, eta * alpha / (1 - alpha))
    m, out = 0.0, []
    for _ in range(steps):
        m = m * (1 - u) + (1 - m) * eta
        out.append(m)
    return np.array(out)


@pytest.mark.parametrize("alpha,eta", [(0.8, 0.1), (0.9, None)])   # u = 0.4; and the bound (u = 1)
def test_masked_fraction_follows_the_recursion(alpha, eta):
    steps = 30
    sampler = ReMDMRefine(alpha=alpha, eta=eta)
    trace = explorer.refine(stub(), clean_ids(), sampler=sampler, steps=steps, seed=11, progress=False)
    loop = trace.steps[trace.steps["phase"] == "loop"].sort_values("step")
    assert list(loop["step"]) == list(range(1, steps + 1))
    observed = loop["n_masked"].to_numpy() / (N * L)
    expected = recursion(alpha, sampler.eta, steps)
    se = np.sqrt(expected * (1 - expected) / (N * L))
    z = (observed - expected) / se
    assert np.abs(z).max() < 4.0, (observed, expected)
    # the states say the same as the per-step counts
    for k in (1, steps // 2, steps):
        assert int((trace.state_at(k) == trace.mask_id).sum()) == int(loop["n_masked"].iloc[k - 1])
    # it settles at m* = 1 - alpha
    tail = observed[-10:].mean()
    assert abs(tail - (1 - alpha)) < 4 * math.sqrt(alpha * (1 - alpha) / (N * L * 10)) + 0.01


def test_remask_and_unmask_rates_per_step():
    alpha, eta, steps = 0.8, 0.1, 40
    trace = explorer.refine(stub(), clean_ids(), sampler=ReMDMRefine(alpha=alpha, eta=eta), steps=steps,
                            seed=5, progress=False)
    loop = trace.steps[trace.steps["phase"] == "loop"].sort_values("step")
    masked_before = np.concatenate([[0], loop["n_masked"].to_numpy()[:-1]])
    exposed = (N * L - masked_before).sum()                 # decoded tokens that could be remasked
    rate = loop["n_remasked"].sum() / exposed
    assert abs(rate - eta) < 4 * math.sqrt(eta * (1 - eta) / exposed), rate
    u = eta * alpha / (1 - alpha)
    rate_u = loop["n_unmasked"].sum() / masked_before.sum()
    assert abs(rate_u - u) < 4 * math.sqrt(u * (1 - u) / masked_before.sum()), rate_u
    assert (loop["sigma"] == eta).all() and (loop["alpha_t"] == alpha).all() and (loop["alpha_s"] == alpha).all()


def test_default_is_the_bound_and_documents_revisits():
    s = ReMDMRefine()
    assert s.alpha == 0.98 and s.eta == pytest.approx(0.02 / 0.98)
    assert s.rates(s.grid(1)[0], None).unmask == pytest.approx(1.0)
    # a token is missed in T = 256 steps with probability (1 - eta)^256 < 1 %
    assert (1 - s.eta) ** 256 < 0.01


def test_selective_remasking_is_respected():
    x = clean_ids()
    allowed = list(range(0, L, 4))
    trace = explorer.refine(stub(), x, sampler=ReMDMRefine(alpha=0.7, eta=0.4), steps=20, seed=1,
                            remaskable=allowed, progress=False)
    ev = trace.events
    assert len(ev) > 0 and set(ev["position"]) <= set(allowed)
    others = [p for p in range(L) if p not in allowed]
    assert torch.equal(trace.final[:, others], x[:, others])
    assert (trace.final[:, allowed] != x[:, allowed]).any()       # the allowed ones did change
    # a per-sample mask: sample 0 may change position 3 only, the others nothing
    mask = torch.zeros(N, L, dtype=torch.bool)
    mask[0, 3] = True
    t2 = explorer.refine(stub(), x, sampler=ReMDMRefine(alpha=0.7, eta=0.4), steps=20, seed=1,
                         remaskable=mask, progress=False)
    ev2 = t2.events
    assert len(ev2) > 0 and set(zip(ev2["sample"], ev2["position"])) == {(0, 3)}


def test_same_seed_same_trace_and_another_seed_differs():
    kw = dict(sampler=ReMDMRefine(alpha=0.9), steps=25, progress=False)
    a = explorer.refine(stub(), clean_ids(), seed=7, **kw)
    b = explorer.refine(stub(), clean_ids(), seed=7, **kw)
    c = explorer.refine(stub(), clean_ids(), seed=8, **kw)
    assert a.same_as(b)
    assert a.events.drop(columns=[]).equals(b.events)
    assert not a.events[["sample", "step", "position"]].equals(c.events[["sample", "step", "position"]])


def test_final_pass_leaves_no_mask_and_keeps_the_input_as_step_zero():
    x = clean_ids()
    trace = explorer.refine(stub(), x, sampler=ReMDMRefine(alpha=0.5, eta=0.9), steps=10, seed=2,
                            progress=False)
    assert torch.equal(trace.state_at(0), x)
    assert int((trace.state_at(10) == trace.mask_id).sum()) > 0   # the loop leaves ~half masked
    assert trace.steps["phase"].iloc[-1] == "final_argmax"
    assert not (trace.final == trace.mask_id).any()
    assert trace.num_steps == 10 and trace.meta["refine"] is True


def test_mdlm_repairs_nothing_by_construction():
    x = clean_ids()
    trace = explorer.refine(stub(), x, sampler=MDLM(), steps=16, progress=False)
    assert torch.equal(trace.final, x) and len(trace.events) == 0 and int(trace.nfe.sum()) == 0


def test_other_remasking_samplers_and_resume_csv(tmp_path):
    model = stub()
    trace = explorer.refine(model, clean_ids(8), sampler=ReMDMLoop(eta=0.05), steps=40, seed=3, progress=False)
    assert (trace.events["kind"] == "remask").any()
    t = explorer.refine(model, clean_ids(8), sampler=ReMDMRefine(alpha=0.9), steps=12, seed=3, progress=False)
    rebuilt = samplers.from_config(t.meta["sampler"])
    assert isinstance(rebuilt, ReMDMRefine) and rebuilt.config == t.meta["sampler"]
    branch = explorer.resume(model, t, step=5, progress=False)      # no edit: reproduces the parent
    assert torch.equal(branch.final, t.final)
    planted = explorer.resume(model, t, step=5, replace={7: 0}, progress=False)
    assert (planted.state_at(5)[:, 7] == 0).all()
    path = t.to_csv(tmp_path / "refine.csv")
    assert explorer.Trace.read(path).same_as(t)
    # a remaskable restriction travels in the config
    r = explorer.refine(model, clean_ids(8), sampler=ReMDMRefine(alpha=0.9), steps=6, remaskable=[1, 2],
                        progress=False)
    assert samplers.from_config(r.meta["sampler"]).remaskable.tolist() == [i in (1, 2) for i in range(L)]


def test_text_input_and_the_models_fixed_tokens():
    from explorer.tasks import orders
    model = explorer.load_model("orders")
    text = orders.generate(1, seed=4)[0]
    trace = explorer.refine(model, text, steps=3, progress=False)
    assert orders.decode(trace.state_at(0)[0]) == text
    assert trace.fixed[0, 0] and trace.fixed[0, orders.RECORD_LEN]        # the record anchors
    assert (trace.final[0, list(orders.FIXED_TOKENS)] == orders.TOKEN_ID["order"]).all()
    with pytest.raises(ValueError, match="fixed tokens"):
        explorer.refine(model, text.replace("order", "x", 1), steps=2, progress=False)
    with pytest.raises(ValueError, match="exactly L = 256"):
        explorer.refine(model, text + " order", steps=2, progress=False)


@pytest.mark.parametrize("x,kw,match", [
    (torch.zeros(2, L + 1, dtype=torch.long), {}, r"shape \(2, 33\).*\[N, L\]"),
    (torch.zeros(2, 2, L, dtype=torch.long), {}, r"shape \(2, 2, 32\)"),
    (torch.zeros(2, L), {}, "integer token ids"),
    (torch.full((2, L), V - 1), {}, r"\[MASK\].*generate"),
    (torch.full((2, L), V + 3), {}, "outside the vocabulary"),
    ("a b c", {}, "no tokenizer"),
    (torch.zeros(2, L, dtype=torch.long), {"steps": 0}, "steps must be a positive integer"),
    (torch.zeros(2, L, dtype=torch.long), {"sampler": MDLM(), "remaskable": [1]}, "never remasks"),
    (torch.zeros(2, L, dtype=torch.long), {"remaskable": [L]}, r"remaskable positions.*\[0, 32\)"),
    (torch.zeros(2, L, dtype=torch.long), {"sampler": "remdm"}, "must be an explorer.samplers.Sampler"),
])
def test_bad_inputs_say_what_is_wrong(x, kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        explorer.refine(stub(), x, progress=False, **kw)


def test_eta_above_the_bound_and_bad_alpha():
    with pytest.raises(ValueError, match=r"eta=0.2 is outside \(0, 0.1111\].*\(1 - alpha\) / alpha"):
        ReMDMRefine(alpha=0.9, eta=0.2)
    with pytest.raises(ValueError, match="alpha=1.0 must be in"):
        ReMDMRefine(alpha=1.0)
    with pytest.raises(ValueError, match="alpha"):
        samplers.by_name("remdm-refine", alpha=0)


@pytest.mark.parametrize("alpha, eta", [(0.8, 0.25), (0.9, 1 / 9)])
def test_eta_exactly_at_the_validity_bound_is_accepted(alpha, eta):
    """eta = (1 - alpha) / alpha is allowed (§2.1, §2.5), although (1 - 0.8) / 0.8 rounds to
    0.24999999999999994 in floating point; anything clearly above it is refused."""
    assert ReMDMLoop(eta=eta, alpha_on=alpha).eta == eta
    assert ReMDMRefine(alpha=alpha, eta=eta).eta == eta
    with pytest.raises(ValueError, match="outside"):
        ReMDMLoop(eta=eta * 1.001, alpha_on=alpha)
    with pytest.raises(ValueError, match="outside"):
        ReMDMRefine(alpha=alpha, eta=eta * 1.001)


@pytest.mark.parametrize("name", ["remdm-conf", "rcr"])
def test_refine_refuses_samplers_that_rank_by_the_confidence_a_token_was_written_with(name):
    """The given tokens were not written by the sampler, so their confidence is unknown (nan) and
    ReMDM-conf / RCR would never pick them: refine() used to return x unchanged without a word."""
    model = explorer.load_model("orders")
    x = explorer.generate(model, MDLM(), 8, seed=0, progress=False).final
    with pytest.raises(ValueError, match=f"{name} picks the tokens to remask by the confidence.*remdm-refine"):
        explorer.refine(model, x, sampler=samplers.by_name(name), steps=4, progress=False)
