"""A straightforward, upstream-style sampling loop, kept as a yardstick.

It does what ``kuleshov-group/remdm``'s ``_ddpm_caching_update`` does at every step (reference
§1.4-§1.8, §2.1): full logits at every position, SUBS, nucleus, and one float64 exponential-race
draw over ``V + 1`` classes (the tokens and the mask) at every position, building ``[B, L, V+1]``
float64 weights. The engine (:mod:`explorer.engine`) must give the same *distribution*
(``tests/test_engine.py``); ``benchmarks/throughput.py`` times the two side by side. It lives with
the tests, not in the package: nothing in ``explorer`` runs it. Only rate samplers (not the
confidence-ordered baseline).
"""
from __future__ import annotations

import torch

from explorer.samplers import ranked
from explorer.samplers.base import Sampler, SamplerState
from explorer.samplers.categorical import nucleus, subs_probs


def exponential_race(weights: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """§1.6: argmax of w / E with E = 1e-10 - log(U + 1e-10), U ~ Uniform(0, 1) in float64
    (the race of :func:`explorer.samplers.ranked.exponential_race`, fed torch's own uniforms)."""
    u = torch.rand(weights.shape, dtype=torch.float64, generator=generator, device=weights.device)
    return ranked.exponential_race(weights, u)


@torch.no_grad()
def upstream_generate(model, sampler: Sampler, steps: int, num_samples: int = 1, seed: int = 0,
                      device=None) -> tuple[torch.Tensor, dict]:
    """Sample like upstream; returns the final tokens [N, L] and counters (model calls, head rows)."""
    if not sampler.draws_by_rates:
        raise ValueError("the upstream-style loop covers rate samplers only.")
    device = torch.device(device or "cpu")
    mask_id, L = model.mask_id, model.seq_len
    gen = torch.Generator(device=device).manual_seed(seed)
    x = torch.full((num_samples, L), mask_id, dtype=torch.long, device=device)
    token_prob = torch.full((num_samples, L), float("nan"), device=device)
    fixed = torch.zeros_like(x, dtype=torch.bool)
    stats = {"model_calls": 0, "head_rows": 0}
    p_x0 = None
    for st in sampler.grid(steps):
        if p_x0 is None:                       # §1.7: reuse p(x0) while the state is unchanged
            logits = model.logits(x)
            stats["model_calls"] += 1
            stats["head_rows"] += x.numel()
            p_x0 = nucleus(subs_probs(logits, mask_id), sampler.nucleus_p)          # [B, L, V] float64
        masked = x == mask_id
        r = sampler.rates(st, SamplerState(x=x, masked=masked, token_prob=token_prob, fixed=fixed, step=st))
        sigma = torch.as_tensor(r.remask, dtype=torch.float64, device=device).expand(x.shape)
        a_t, a_s = st.alpha_t, st.alpha_s
        # masked positions: p(x0) * [a_s - (1 - sigma) a_t] / (1 - a_t), mask: [1 - a_s - sigma a_t] / (1 - a_t)
        sig_m = torch.zeros_like(sigma) if sampler.name == "remdm-conf" else sigma
        w_tok = p_x0 * ((a_s - (1 - sig_m) * a_t) / (1 - a_t)).unsqueeze(-1)
        w_mask = ((1 - a_s - sig_m * a_t) / (1 - a_t)).unsqueeze(-1)
        masked_w = torch.cat([w_tok, w_mask], -1)
        # unmasked positions: keep with 1 - sigma, mask with sigma (no copy flag in ReMDM)
        onehot = torch.zeros_like(p_x0).scatter_(-1, x.clamp(max=p_x0.shape[-1] - 1).unsqueeze(-1), 1.0)
        unmasked_w = torch.cat([onehot * (1 - sigma).unsqueeze(-1), sigma.unsqueeze(-1)], -1)
        w = torch.where(masked.unsqueeze(-1), masked_w, unmasked_w)
        draw = exponential_race(w, gen)
        new = torch.where(draw == p_x0.shape[-1], torch.full_like(x, mask_id), draw)
        new_prob = torch.where(new == mask_id, torch.full_like(token_prob, float("nan")),
                               p_x0.gather(-1, new.clamp(max=p_x0.shape[-1] - 1).unsqueeze(-1)).squeeze(-1).float())
        token_prob = torch.where(masked & (new != mask_id), new_prob,
                                 torch.where(new == mask_id, torch.full_like(token_prob, float("nan")), token_prob))
        if not torch.equal(new, x):
            p_x0 = None
        x = new
    if (x == mask_id).any():                    # §1.8 final argmax
        logits = model.logits(x)
        stats["model_calls"] += 1
        stats["head_rows"] += x.numel()
        x = torch.where(x == mask_id, subs_probs(logits, mask_id).argmax(-1), x)
    return x, stats
