"""Sampler math against reference §1-§2, and statistical checks with a context-free stub.

Statistical tolerances: every frequency is compared with its expectation at 5 standard errors
(binomial), with fixed seeds, so a correct sampler fails with probability < 1e-5 per cell.
"""
from __future__ import annotations

import math
from collections import Counter

import pytest
import numpy as np
import torch

import explorer
from explorer import rng
from explorer.samplers import (MDLM, ConfidenceOrdered, DFMCorrector, ForwardBackward, ReMDMCap, ReMDMConf,
                               ReMDMLoop, ReMDMRescale, ReMDMSwitch, by_name, from_config, sigma_max)
from explorer.samplers.base import SamplerState, linear_grid, mdlm_unmask, remdm_unmask
from explorer.samplers.categorical import nucleus, sample_rows, top_candidates

L, V = 6, 5          # 4 real tokens + mask
N = 1500


def stub(seed=0, L=L, V=V):
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(L, V, generator=g) + 0.05
    p[:, -1] = 0
    return explorer.StubDenoiser(p / p.sum(-1, keepdim=True))


def z_ok(observed, expected_p, n, z=5.0):
    sd = math.sqrt(max(expected_p * (1 - expected_p), 1e-12) / n)
    return abs(observed - expected_p) <= z * sd + 1e-12


# ----------------------------------------------------------------------------- time grid and phases
def test_linear_grid_matches_upstream():
    g = linear_grid(1024)
    assert len(g) == 1024 and g[0][1] == 1.0
    dt = (1 - 1e-5) / 1024
    assert g[0][2] == pytest.approx(1 - dt)
    assert g[-1][2] == pytest.approx(1e-5, abs=1e-7)


@pytest.mark.parametrize("T,phases", [(128, (58, 64, 6)), (1024, (461, 512, 51)), (4096, (1844, 2048, 204))])
def test_loop_phase_lengths(T, phases):
    c = Counter(st.phase for st in ReMDMLoop().grid(T))
    assert (c["unmask"], c["loop"], c["finish"]) == phases


def test_loop_phase_alphas():
    s = ReMDMLoop(eta=0.02, t_on=0.55, t_off=0.05, alpha_on=0.9)
    g = s.grid(1024)
    assert g[0].alpha_t == 0.0
    loop = [st for st in g if st.phase == "loop"]
    assert all(st.alpha_t == st.alpha_s == 0.9 for st in loop)
    fin = [st for st in g if st.phase == "finish"]
    assert fin[0].alpha_t == pytest.approx(1 - fin[0].t * 0.1 / 0.05)
    r = s.rates(loop[0], None)
    assert r.remask == 0.02 and r.unmask == pytest.approx(0.02 * 0.9 / 0.1)


def test_sigma_schedules_match_reference():
    st = ReMDMCap().grid(100)[60]
    smax = min(1.0, (1 - st.alpha_s) / st.alpha_t)
    assert sigma_max(st.alpha_t, st.alpha_s) == pytest.approx(smax)
    assert ReMDMCap(0.3).rates(st, None).remask == pytest.approx(min(0.3, smax))
    assert ReMDMRescale(0.5).rates(st, None).remask == pytest.approx(0.5 * smax)
    first = ReMDMCap().grid(100)[0]
    assert ReMDMCap(0.3).rates(first, None).remask == 0.3          # alpha_t = 0: sigma = eta
    assert ForwardBackward().rates(first, None).remask == 1.0
    fb = ForwardBackward().rates(st, None)
    assert fb.remask == pytest.approx((st.alpha_s - st.alpha_t) / st.alpha_t)
    # unmask probability of the generic ReMDM posterior, §2.1
    sig = 0.1
    assert remdm_unmask(st.alpha_t, st.alpha_s, sig) == pytest.approx(
        (st.alpha_s - (1 - sig) * st.alpha_t) / (1 - st.alpha_t))
    assert MDLM().rates(st, None).unmask == pytest.approx((st.alpha_s - st.alpha_t) / (1 - st.alpha_t))


def test_switch_is_zero_before_t_switch():
    s = ReMDMSwitch(eta=0.05, t_switch=0.4)
    for st in s.grid(50):
        r = s.rates(st, None)
        if st.t >= 0.4:
            assert r.remask == 0.0 and r.unmask == pytest.approx(mdlm_unmask(st.alpha_t, st.alpha_s))
        else:
            assert r.remask == pytest.approx(min(0.05, sigma_max(st.alpha_t, st.alpha_s)))


def test_dfm_grid_is_adaptive_and_longer_than_T():
    g = DFMCorrector().grid(64)
    assert len(g) > 64
    assert g[0].t == 1.0 and g[0].phase == "mdlm" and g[0].s == pytest.approx(1 - 1 / 64)
    assert all(a.s == pytest.approx(b.t) for a, b in zip(g, g[1:]))
    assert g[-1].t > (1 - 1e-5) / 64 >= g[-1].s
    for st in g[1:]:
        a = 10 * st.t ** 0.25 * (1 - st.t) ** 0.25 + 1
        assert st.t - st.s == pytest.approx(min(1 / 64, 1 / (a / st.t + (a - 1) / (1 - st.t))))


# ----------------------------------------------------------------------------- nucleus and draws
def test_nucleus_keeps_exactly_the_upstream_set():
    p = torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.95, 0.03, 0.01, 0.01], [0.25, 0.25, 0.25, 0.25]])
    q = nucleus(p, 0.9)
    # row 0: cumsum 0.5, 0.8, 0.95 -> the crossing token (0.15) is dropped (HF would keep it)
    assert torch.allclose(q[0], torch.tensor([0.5, 0.3, 0, 0], dtype=torch.float64) / 0.8)
    # row 1: the top-1 alone crosses 0.9 and is always kept
    assert torch.equal(q[1] > 0, torch.tensor([True, False, False, False]))
    # row 2: 0.25, 0.5, 0.75 <= 0.9; 1.0 > 0.9
    assert torch.equal(q[2] > 0, torch.tensor([True, True, True, False]))
    assert torch.allclose(q.sum(-1), torch.ones(3, dtype=torch.float64))
    assert torch.allclose(nucleus(p, 1.0), p.double())


def test_nucleus_is_order_independent():
    p = torch.tensor([[0.05, 0.15, 0.3, 0.5]])
    assert torch.equal(nucleus(p, 0.9) > 0, torch.tensor([[False, False, True, True]]))


@pytest.mark.parametrize("scratch", [False, True])
def test_top_candidates_equal_a_stable_descending_sort(scratch):
    """The trace's candidates (numpy argmax passes on the CPU) are torch's stable descending sort's
    first k, ties lowest index first; also on a non-contiguous view, and the input is left alone
    unless it is scratch."""
    g = torch.Generator().manual_seed(5)
    rows = [torch.softmax(torch.randn(40, 1000, generator=g), -1),
            torch.softmax(torch.randn(7, 4000, generator=g), -1)[:, ::4],           # a strided view
            torch.tensor([[0.2, 0.3, 0.3, 0.2], [0.25, 0.25, 0.25, 0.25]]),         # ties
            torch.softmax(torch.randn(3, 5, generator=g, dtype=torch.float64), -1)]
    for p in rows:
        for k in (1, 2, 3, 4):
            before = p.clone()
            vals, ids = top_candidates(p.clone() if scratch else p, k, scratch=scratch)
            want_v, want_i = torch.sort(p, dim=-1, descending=True, stable=True)
            assert torch.equal(ids, want_i[:, :k]) and torch.equal(vals, want_v[:, :k]), (p.shape, k)
            assert torch.equal(p, before)


def test_inverse_cdf_draws_match_weights():
    w = torch.tensor([0.1, 0.0, 0.6, 0.3], dtype=torch.float64)
    u = rng.uniforms(3, [0], 1, rng.TOKEN, torch.arange(40000))[0]
    idx = sample_rows(w.expand(40000, -1), u)
    assert (idx != 1).all()                       # zero weight never drawn
    freq = torch.bincount(idx, minlength=4).double() / 40000
    for k in (0, 2, 3):
        assert z_ok(freq[k].item(), w[k].item(), 40000)


def test_uniforms_are_the_documented_function_of_their_coordinates():
    """Each uniform is (k + 0.5) / 2**53 with k the top 53 bits of mix64(key + (position + 1) * golden),
    computed here with Python integers only; the engine's grid of keys equals the per-stream keys."""
    seed, samples, step, positions = 5, [0, 3, 9], 11, [0, 1, 7, 127, 1000]
    u = rng.uniforms(seed, samples, step, rng.REMASK, torch.tensor(positions))
    for i, s in enumerate(samples):
        key = rng.stream_key(seed, s, step, rng.REMASK)
        for j, pos in enumerate(positions):
            k = rng.mix64((key + (pos + 1) * rng._GOLDEN) & rng._MASK64) >> 11
            assert u[i, j].item() == (k + 0.5) / 2 ** 53
    prefixes = [rng.sample_prefix(seed, s) for s in samples]
    grid = rng.step_keys(prefixes, [1, step, 10 ** 6])
    for i, st in enumerate([1, step, 10 ** 6]):
        for p in rng.PURPOSES:
            assert torch.equal(grid[i, p - 1], rng.stream_keys(seed, samples, st, p))


def test_the_top_uniform_is_below_one(monkeypatch):
    """(k + 0.5) / 2**53 rounds to 1.0 at k = 2**53 - 1 in float64; a coin u < 1 must never fail and
    an inverse CDF never land past the last weight, so the top value is held just below 1."""
    monkeypatch.setattr(rng, "_mix64_", lambda z: z)        # the mixed word is then the key itself
    top = rng.uniforms_from(torch.tensor([-1], dtype=torch.int64), torch.tensor([0], dtype=torch.int64))
    assert float(top) < 1.0 and float(top) == 1.0 - 2.0 ** -53
    low = rng.uniforms_from(torch.tensor([0], dtype=torch.int64), torch.tensor([0], dtype=torch.int64))
    assert float(low) == 0.5 * 2.0 ** -53


def test_rng_matches_reference_mixer_and_is_uniform():
    vals = [0, 1, 2 ** 63 - 1, 2 ** 63, 2 ** 64 - 1, 123456789123456789]
    t = torch.tensor([rng._signed(v) for v in vals])
    got = [int(v) & rng._MASK64 for v in rng.mix64_tensor(t).tolist()]
    assert got == [rng.mix64(v) for v in vals]
    u = rng.uniforms(0, [0, 1], 7, rng.UNMASK, torch.arange(50000))
    assert 0 < u.min() and u.max() < 1
    for row in u:   # 10 equal bins, each within 5 sd of 0.1
        counts = torch.histc(row.float(), bins=10, min=0, max=1) / row.numel()
        assert all(z_ok(c.item(), 0.1, row.numel()) for c in counts)
    assert abs(torch.corrcoef(u)[0, 1]) < 0.03     # streams of different samples are unrelated


# ----------------------------------------------------------------------------- statistical behaviour
MARGINAL = [MDLM(), ReMDMCap(0.05), ReMDMRescale(0.5), ReMDMSwitch(0.05, 0.6), DFMCorrector(),
            ReMDMLoop(eta=0.05, t_on=0.55, t_off=0.05, alpha_on=0.8)]


def expected_mask_fraction(sampler, T):
    """The exact recursion m' = m (1 - u) + (1 - m) sigma over the sampler's own rates."""
    m, out = 1.0, []
    for st in sampler.grid(T):
        r = sampler.rates(st, None)
        m = m * (1 - r.unmask) + (1 - m) * r.remask
        out.append((st, m))
    return out


@pytest.mark.parametrize("sampler", MARGINAL, ids=lambda s: s.name)
def test_schedule_is_marginal_preserving(sampler):
    """The sampler's rates keep the masked fraction at 1 - alpha_s.

    ReMDM-loop only approximately (§2.5, upstream behaviour): the last phase-1 step overshoots
    alpha_on by up to alpha_on*dt/(1-t_on), and phase 3 starts from alpha(t) < t_off's formula
    while the state still has 1-alpha_on masked, a relative gap of at most dt/(t_off-dt) that
    phase 3 carries to the end.
    """
    T = 256
    dt = 1 / T
    for st, m in expected_mask_fraction(sampler, T):
        target = 1 - st.alpha_s
        if sampler.name != "remdm-loop":
            # 1e-6: the grid reads t from a float32 linspace and s = t - dt in float64 (as upstream, §1.3)
            assert m == pytest.approx(target, abs=1e-6), st
        elif st.phase == "finish":
            assert abs(m / target - 1) <= dt / (sampler.t_off - dt) + 1e-6, st
        else:
            assert abs(m - target) <= sampler.alpha_on * dt / (1 - sampler.t_on) + 1e-6, st


@pytest.mark.parametrize("sampler", MARGINAL, ids=lambda s: s.name)
def test_mask_fraction_and_final_frequencies(sampler):
    model = stub()
    T = 24
    tr = explorer.generate(model, sampler, T, num_samples=N, seed=11, progress=False, topk=0)
    n = N * L
    steps = tr.steps.set_index("step")
    for st, m in expected_mask_fraction(sampler, T):
        observed = steps.loc[st.step, "n_masked"] / n if st.step in steps.index else 1.0
        assert z_ok(observed, min(max(m, 0.0), 1.0), n), (st, observed, m)
        if sampler.name != "remdm-loop":
            assert z_ok(observed, min(max(1 - st.alpha_s, 0), 1), n)
    final = tr.final
    assert (final != model.mask_id).all()
    for pos in range(L):
        freq = torch.bincount(final[:, pos], minlength=V).double() / N
        for v in range(V - 1):
            assert z_ok(freq[v].item(), model.probs[pos, v].item(), N), (pos, v)


def test_forward_backward_last_step_leaves_the_validity_bound():
    """Documented behaviour (§2.6): at the last step FB's sigma > sigma_max, so every masked token
    unmasks and unmasked ones are remasked with prob dt/(1-t): about dt of the tokens end masked
    (instead of s = 1e-5) and the final argmax fills them."""
    T = 16
    fb = ForwardBackward()
    last = fb.grid(T)[-1]
    r = fb.rates(last, None)
    assert r.unmask == 1.0
    assert r.remask == pytest.approx((last.t - last.s) / (1 - last.t))
    assert r.remask > sigma_max(last.alpha_t, last.alpha_s)
    tr = explorer.generate(stub(), fb, T, num_samples=N, seed=5, progress=False, topk=0)
    steps = tr.steps.set_index("step")
    frac = steps.loc[T, "n_masked"] / (N * L)
    assert z_ok(frac, r.remask, N * L)
    assert frac > 10 * last.s
    assert (steps.loc[T + 1, "phase"] == "final_argmax") and steps.loc[T + 1, "n_unmasked"] == steps.loc[T, "n_masked"]
    # up to that step FB preserves the marginals
    for st, m in expected_mask_fraction(fb, T)[:-1]:
        assert m == pytest.approx(1 - st.alpha_s, abs=1e-6)


def test_conf_remasks_low_probability_tokens_more_often():
    p = torch.zeros(64, 3)
    p[:, 0], p[:, 1] = 0.8, 0.2          # token 1 is the low-probability one
    model = explorer.StubDenoiser(p)
    tr = explorer.generate(model, ReMDMConf(), 32, num_samples=100, seed=2, progress=False, topk=0)
    ev = tr.events
    # per-step hazard: remasks of each token / copies of it present before the step. Within a
    # sample both share the softmax denominator, so the ratio is about exp(0.8 - 0.2) = 1.82
    # where sigma is far from 1 (many tokens unmasked: the second half of the steps).
    present = {0: 0, 1: 0}
    ev = ev[ev.step > tr.num_steps // 2]
    for k in range(tr.num_steps // 2 + 1, tr.num_steps + 1):
        before = tr.state_at(k - 1)
        for v in (0, 1):
            present[v] += int((before == v).sum())
    re = ev[ev.kind == "remask"].token_id.value_counts()
    hazard_low, hazard_high = re.get(1, 0) / present[1], re.get(0, 0) / present[0]
    assert hazard_low > 1.4 * hazard_high, (hazard_low, hazard_high)
    # eta_conf is a softmax over unmasked positions of -psi
    x = torch.tensor([[0, 1, 2]])
    state = SamplerState(x=x, masked=x == 2, token_prob=torch.tensor([[0.8, 0.2, float("nan")]]),
                         fixed=torch.zeros(1, 3, dtype=torch.bool))
    eta = ReMDMConf().eta_conf(state)[0]
    assert eta[2] == 0 and eta[:2].sum() == pytest.approx(1.0)
    assert eta[1] / eta[0] == pytest.approx(math.exp(0.6))


def test_conf_leaves_a_token_of_unknown_confidence_alone_and_the_rest_as_before():
    """A decoded token with no psi (nan: planted by resume(replace=...)) gets weight 0, as a position
    upstream never wrote (conf = -inf); the softmax over the others still sums to 1 (§2.4). It used
    to turn the whole row's softmax into nan and so switch remasking off for the row."""
    x = torch.tensor([[0, 1, 0, 1, 2]])
    tp = torch.tensor([[0.9, 0.2, 0.5, float("nan"), float("nan")]])
    state = SamplerState(x=x, masked=x == 2, token_prob=tp, fixed=torch.zeros(1, 5, dtype=torch.bool))
    eta = ReMDMConf().eta_conf(state)[0]
    assert eta[3] == 0 and eta[4] == 0 and eta[:3].sum() == pytest.approx(1.0)
    want = torch.softmax(-torch.tensor([0.9, 0.2, 0.5], dtype=torch.float64), 0)
    assert torch.allclose(eta[:3], want)
    # end to end: a replaced token is never remasked, the others are, about as often as without the edit
    p = torch.zeros(16, 3)
    p[:, 0], p[:, 1] = 0.8, 0.2
    model = explorer.StubDenoiser(p)
    tr = explorer.generate(model, ReMDMConf(), 16, num_samples=200, seed=0, progress=False, topk=0)
    edited = explorer.resume(model, tr, 8, replace={0: 1}, progress=False)
    plain = explorer.resume(model, tr, 8, progress=False)
    re_e, re_p = (t.events.query("kind == 'remask'") for t in (edited, plain))
    assert (re_e.position == 0).sum() == 0 and (re_p.position == 0).sum() > 0
    # 15 of 16 positions stay eligible: the count of other remasks stays within noise (Poisson, 4 SE)
    n_e, n_p = int((re_e.position != 0).sum()), int((re_p.position != 0).sum())
    assert n_p > 50 and abs(n_e - n_p) < 4 * math.sqrt(n_e + n_p), (n_e, n_p)


def test_a_tempered_draw_never_records_confidence_zero_and_t_below_one_is_unchanged():
    """draw_tokens with a temperature reads the token's untempered p(x0), renormalised over the union
    of the untempered nucleus and the tempered one it was drawn from: at T > 1 a token only the
    tempered nucleus keeps gets its p(x0), not 0; at T < 1 (tempered nucleus inside) the old value."""
    from explorer.samplers.categorical import draw_tokens
    probs = torch.tensor([0.55, 0.25, 0.12, 0.05, 0.03, 0.0])
    logits = torch.log(probs.clamp(min=1e-30))[None]
    u = torch.linspace(0.005, 0.995, 199, dtype=torch.float64)
    for T, kept in ((3.0, [0, 1]), (0.5, [0])):      # nucleus 0.7 of p keeps {0}; of p^(1/3) {0, 1}
        seen = {}
        for ui in u:
            tok, prob, _, _ = draw_tokens(logits.clone(), 5, 0.7, ui[None], 0, temperature=T)
            seen[int(tok)] = float(prob)
        assert set(seen) == set(kept) and min(seen.values()) > 0
        union = probs[:2].sum() if T > 1 else probs[0]
        for t, pr in seen.items():
            assert pr == pytest.approx(float(probs[t] / union), rel=1e-6)


def test_confidence_ordered_commits_even_counts_and_never_remasks():
    model = stub(L=8)
    s = ConfidenceOrdered(block_length=4)
    tr = explorer.generate(model, s, 4, num_samples=3, seed=0, progress=False)
    st = tr.steps
    assert list(st.n_unmasked) == [6, 6, 6, 6] and (st.n_remasked == 0).all()
    ev = tr.events
    assert set(ev[ev.step <= 2].position) <= {0, 1, 2, 3}        # block 0 first
    assert set(ev[ev.step > 2].position) <= {4, 5, 6, 7}
    # commits the most confident: with temperature 0 candidates are argmaxes, ranked by prob
    tr0 = explorer.generate(model, ConfidenceOrdered(temperature=0.0), 8, num_samples=1, seed=0, progress=False)
    first = tr0.events.query("step == 1")
    best = model.probs[:, :-1].max(-1)
    assert first.position.iloc[0] == int(best.values.argmax())
    with pytest.raises(ValueError, match="multiple"):
        explorer.generate(model, s, 3, progress=False)


def test_random_order_commits_one_uniform_position_per_step_and_draws_from_p():
    """order="random", one position per step: any-order sampling. Over 3000 samples (seed 0) the
    position committed first is uniform over the 8 positions (chi-square, p > 1e-4), every step
    commits exactly one token per sample, and each position's final token follows the stub's p
    (5 standard errors)."""
    from scipy.stats import chisquare

    model = stub(L=8)
    n = 3000
    tr = explorer.generate(model, ConfidenceOrdered(order="random"), 8, num_samples=n, seed=0,
                           progress=False, record=True)
    assert (tr.steps.n_unmasked == n).all() and (tr.steps.n_remasked == 0).all()
    first = tr.events.query("step == 1")
    assert len(first) == n
    counts = np.bincount(first.position.to_numpy(), minlength=8)
    assert chisquare(counts).pvalue > 1e-4
    final = tr.final
    p = model.probs[:, :-1].double()
    p = p / p.sum(-1, keepdim=True)
    for pos in range(8):
        freq = torch.bincount(final[:, pos], minlength=p.shape[1]).double() / n
        se = (p[pos] * (1 - p[pos]) / n).sqrt()
        assert ((freq[:p.shape[1]] - p[pos]).abs() <= 5 * se + 1e-12).all()
    # the confidence order is unchanged, and a bad order is a clear error
    assert ConfidenceOrdered().config["order"] == "confidence"
    with pytest.raises(ValueError, match="order must be"):
        ConfidenceOrdered(order="left-to-right")


def test_config_roundtrip_and_registry():
    for s in [ReMDMLoop(0.01, nucleus_p=0.9), ReMDMCap(0.2), DFMCorrector(), ConfidenceOrdered(block_length=4)]:
        again = from_config(s.config)
        assert type(again) is type(s) and again.config == s.config
    assert by_name("remdm_loop", eta=0.03).eta == 0.03


@pytest.mark.parametrize("make,msg", [
    (lambda: ReMDMCap(-0.1), "eta"),
    (lambda: ReMDMCap(1.5), "eta"),
    (lambda: ReMDMRescale(2.0), "eta"),
    (lambda: ReMDMLoop(eta=0.2, alpha_on=0.9), "eta"),
    (lambda: ReMDMLoop(t_on=0.05, t_off=0.55), "t_off < t_on"),
    (lambda: ReMDMLoop(t_on=0.3, t_off=0.3), "t_off < t_on"),
    (lambda: ReMDMLoop(alpha_on=1.0), "alpha_on"),
    (lambda: ReMDMLoop(alpha_on=0.0), "alpha_on"),
    (lambda: MDLM(nucleus_p=0.0), "nucleus_p"),
    (lambda: MDLM(nucleus_p=1.2), "nucleus_p"),
    (lambda: ReMDMSwitch(0.1, t_switch=0.0), "t_switch"),
    (lambda: ConfidenceOrdered(block_length=0), "block_length"),
    (lambda: MDLM(remaskable=torch.ones(4, dtype=torch.bool)), "never remasks"),
    (lambda: ReMDMCap(0.1, remaskable=torch.ones(4)), "boolean"),
    (lambda: by_name("nope"), "unknown sampler"),
    (lambda: by_name("mdlm", eta=0.1), "bad settings"),
    (lambda: from_config({"eta": 0.1}), "name"),
])
def test_bad_settings_raise_clear_errors(make, msg):
    with pytest.raises(ValueError, match=msg):
        make()


def test_uniforms_at_selects_the_same_numbers():
    u = rng.uniforms(4, [10, 11, 12], 9, rng.TOKEN, torch.arange(50))
    row, pos = torch.tensor([0, 2, 2, 1]), torch.tensor([3, 0, 49, 7])
    assert torch.equal(rng.uniforms_at(4, [10, 11, 12], 9, rng.TOKEN, row, pos), u[row, pos])


def test_a_spec_with_a_setting_the_sampler_lacks_names_those_it_takes():
    """The library (not only the CLI) refuses an unknown setting with the list, instead of the
    constructor's 'unexpected keyword argument'; a sampler's private init=False fields are not offered."""
    from explorer.samplers.spec import SamplerSpecError, parse_sampler, settings_of
    with pytest.raises(SamplerSpecError, match=r"remdm-cap has no setting 'bogus'; it takes eta, nucleus_p, remaskable"):
        parse_sampler("remdm-cap:bogus=1")
    assert "_grids" not in settings_of("fire") and "rounds" in settings_of("fire")
    assert parse_sampler("remdm-cap:eta=0.01").eta == 0.01
