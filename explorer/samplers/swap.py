"""The LLaDA 2.1 token swap: commit by confidence, and edit a committed token the model now
predicts differently with high confidence.

Code: diffusers ``src/diffusers/schedulers/scheduling_block_refinement.py``
(``BlockRefinementScheduler.step``, mask mode, used by ``LLaDA2Pipeline``); the same rule in
``ZHZisZZ/dllm:dllm/pipelines/llada21/sampler.py``.

**This rule assumes a model trained for it.**  LLaDA 2.1 is trained to predict tokens at unmasked
positions too ("token editing"), so its logits at a decoded position are an opinion of that token.
MDLM, LLaDA 1.x and Dream are trained only at masked positions: their logits there are no
calibrated opinion (MDLM's SUBS parameterisation may even copy the input), so on those models the
edit step below measures nothing useful -- run it to see that, not to compare strategies.

Per block of the generated part (``block_length=None``: one block), with s = T / blocks steps per
block and the block's B positions spread evenly over them (n_i = floor(B / s), one more in the
first B mod s steps), each step, from one forward on x_t:

1. draw x0_l ~ p_theta(. | x_t) with confidence c_l at *every* position l of the block, masked or
   decoded (nucleus / temperature as elsewhere; upstream's default temperature is 0);
2. **commit**: if at least n_i masked positions have c_l > ``threshold`` (0.95), write all of
   them; otherwise write the n_i most confident masked positions;
3. **edit (swap)**: every decoded, non-prompt position of the block whose draw differs from its token,
   x0_l != x_l, with c_l > ``editing_threshold`` (0.9) takes x0_l: a remask and a write at the same
   step, the remask carrying c_l (the confidence of the replacement that chose it) with the reason
   ``"confidence"``.

The pipeline's extra post-block editing steps (``max_post_steps``) are not offered: editing happens
within the block's own s steps.  Cost per sequence: at most T model calls (plus the final argmax
pass if a block is left unfinished, which the schedule never does); a step that commits nothing and
swaps nothing leaves the canvas unchanged and the next is answered from the engine's cache (§1.7).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .blocks import FixedBlocks
from .ranked import top_n
from .settings import open_unit
from .step import CONFIDENCE, Decision, Write


@dataclass
class TokenSwap(FixedBlocks):
    """Commit by confidence, swap confident disagreements (module docstring)."""
    threshold: float = open_unit(0.95, "a masked draw more confident is committed (diffusers: 0.95).")
    editing_threshold: float = open_unit(0.9, "a decoded token is swapped for a draw more confident (LLaDA 2.1: 0.9).")
    name = "llada21-swap"
    remasks = True
    phase = "swap"

    def step(self, ctx) -> Decision:
        window, bl, i, s = self.block(ctx)
        n_i = bl // s + (1 if i < bl % s else 0)
        masked = ctx.masked & window
        decoded = self.remaskable_in(ctx, window)
        b, pos = (masked | decoded).nonzero(as_tuple=True)
        if not b.numel():
            return Decision()
        tok, conf, ci, cp = self.draw_at(ctx, b, pos, self.temperature)
        score = torch.full(ctx.x.shape, -math.inf, dtype=torch.float64, device=ctx.x.device)
        score[b, pos] = conf.double()
        drawn = ctx.x.clone()
        drawn[b, pos] = tok
        high = (score > self.threshold) & masked
        n_high = high.sum(-1)
        commit = torch.where((n_high >= n_i)[:, None], high, top_n(score, masked, torch.full_like(n_high, n_i)))
        swap = decoded & (drawn != ctx.x) & (score > self.editing_threshold)
        write = Write(b, pos, tok, conf, 1.0, 0.0, CONFIDENCE, ci, cp).keep((commit | swap)[b, pos])
        return Decision(remask=swap, remask_p=1.0, remask_sigma=math.nan, remask_score=score.clamp(min=0),
                        remask_reason=CONFIDENCE, write=write)
