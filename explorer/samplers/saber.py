"""Saber: adaptive acceleration and backtracking remasking (Dong et al., arXiv 2510.18165, ACL 2026).

Code: ``zhaoyMa/Saber:decoding.py`` (``generate_with_saber``; batch 1, LLaDA).

Per block of the generated part (``block_length=None``: one block), every step, on the state x_t:

1. **adaptive acceleration**: draw x0_l ~ p_theta(. | x_t) with confidence c_l at every masked
   position of the block and write every one with c_l above the threshold
   tau = mean of the confidences cached when the tokens decoded so far (this block and the ones
   before it) were written (tau = 1 before any is), and at least the ``n`` most confident (n = 2).
   Early on few tokens pass; as the context firms up and confidences rise, many pass at once;
2. **backtracking**: each decoded token of the block is re-judged by v_l = p_theta(x_l | x_t with l's
   group masked) (``ctx.rescore``), and its change since the previous step,
   delta_l = v_l - v_l(previous step), is kept; the k tokens whose confidence *dropped most*
   (lowest delta_l) go back to [MASK], k = min(max(floor(n / 2), ceil(A / 8)), A - 1) with A the
   number written this step -- so every step gains at least one token.

Differences from upstream, each forced or chosen for the reason given:

* upstream judges a decoded position by a *fresh draw's* probability at that unmasked position
  (its logits are not trained there, ``../shared/docs/anchors.md``); v_l here masks the position;
* upstream compares with the previous step's value of the same position whatever it held (a masked
  position's fresh-draw confidence, or 0 at first); here a position's first v_l is compared with the
  confidence it was written with;
* upstream may take back a token written in the same step (its writes come before its remasks);
  the step protocol applies remasks first and only to tokens decoded before the step, so the
  backtracking pool is the block's tokens from earlier steps;
* tau averages the tokens decoded now (upstream also counts the confidence of tokens it has since
  taken back); rows plan alone (upstream runs batch 1).

Like WINO the step count is adaptive: ``steps=T`` caps the iterations, a full row calls nothing,
and what is left masked after T steps is filled by the engine's final argmax pass.  Cost per
sequence: at most T (1 + G) + 1 model calls, G = ``groups`` (``None``: gen_length / 64, at least 1).
Remasks carry v_l as their ``prob`` with the reason ``"rescore"``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .blocks import AdaptiveBlocks, CurrentBlocks
from .ranked import top_n
from .settings import check_positive_int
from .step import CONFIDENCE, RESCORE, Decision, Write


@dataclass
class Saber(AdaptiveBlocks):
    """Adaptive acceleration + backtracking (module docstring)."""
    n: int = 2
    name = "saber"
    remasks = True
    phase = "saber"

    def validate(self):
        check_positive_int("n", self.n)
        super().validate()

    def block_step(self, ctx, blocks: CurrentBlocks) -> Decision:
        window, _, masked, b, pos = blocks
        upto = window.flip(-1).cumsum(-1).flip(-1) > 0          # the current block and those before it
        so_far = ~ctx.masked & ~ctx.fixed & (ctx.positions >= ctx.gen_start) & upto
        cached = torch.where(so_far, ctx.token_prob.double(), math.nan)
        tau = torch.where(so_far.any(-1), cached.nanmean(-1), 1.0)

        tok, conf, ci, cp = self.draw_at(ctx, b, pos, self.temperature)
        score = torch.full(ctx.x.shape, -math.inf, dtype=torch.float64, device=ctx.x.device)
        score[b, pos] = conf.double()
        above = ((score > tau[:, None]) & masked).sum(-1)
        n_take = torch.maximum(above, torch.full_like(above, self.n)).minimum(masked.sum(-1))
        take = top_n(score, masked, n_take)
        write = Write(b, pos, tok, conf, 1.0, 0.0, CONFIDENCE, ci, cp).keep(take[b, pos])

        # backtracking: the k decoded tokens whose re-scored confidence dropped most since last step
        judged = self.remaskable_in(ctx, window)
        k = torch.maximum(torch.full_like(n_take, self.n // 2), (n_take + 7) // 8).minimum(n_take - 1).clamp(min=0)
        remask, v = None, None
        mem = ctx.memory
        if "saber_last" not in mem:
            mem["saber_last"] = torch.full(ctx.x.shape, math.nan, dtype=torch.float64, device=ctx.x.device)
        if bool((judged.any(-1) & (k > 0)).any()):
            v = ctx.rescore(judged & (k > 0)[:, None], self.groups_for(ctx.gen_length))
            last = torch.where(mem["saber_last"].isnan(), ctx.token_prob.double(), mem["saber_last"])
            delta = torch.where(judged & ~v.isnan(), v - last, math.inf)
            remask = top_n(delta, judged & ~v.isnan(), torch.minimum(k, judged.sum(-1)), largest=False)
            mem["saber_last"] = torch.where(v.isnan(), mem["saber_last"], v)
        # a position written or remasked now starts afresh
        mem["saber_last"] = mem["saber_last"].masked_fill(take | (remask if remask is not None else take), math.nan)
        return Decision(remask=remask, remask_p=1.0, remask_sigma=math.nan, remask_score=v,
                        remask_reason=RESCORE, write=write)
