"""RCR: running confidence remasking (MDPO paper, Kirchenbauer et al., arXiv 2508.13148).

Code: ``jwkirchenbauer/mdpo`` (``test_llada.py --rcr``); the copy run in the Tolerator comparison is
``Rachum-thu/tolerator:eval/lm_eval/models/llada_rcr.py`` (``llada_rcr_generate``).

LLaDA's low-confidence decoder commits a token for good.  RCR keeps, for every decoded token of the
current block, the confidence c_l = p_theta(x_l | x_t) it had when it was written (the trace's
cached ``prob``), and lets a later, more confident draw take its place.  Per block of B positions
(semi-autoregressive, left to right; ``block_length=None``: one block over the generated part)
with s = steps / blocks steps and M free positions, the schedule is MaskGIT's linear one:
after step i (1..s) round(i / s * M) tokens of the block are decoded.  Each step:

1. **fill**: draw x0_l ~ p_theta(. | x_t) at every masked position of the block, with its
   confidence c_l = p_theta(x0_l | x_t) (nucleus / temperature as elsewhere; temperature 0 is the
   argmax, upstream's default);
2. **remask to the schedule**: of all the block's tokens -- the fresh ones and those decoded
   earlier, each with its cached c_l -- the M - round(i / s * M) with the *lowest* c_l are masked
   after the step: an old token among them goes back to [MASK] (reason ``"confidence"``, its
   cached c_l the score), a fresh one is simply not written.

Upstream writes every fresh token and then remasks; here the same end state is reached in one
decision (the engine applies remasks before writes, and a remask may only touch a token decoded
before the step).  Cached confidences are never refreshed while a token stays (that is the
"running" confidence); a token written with an unknown confidence (nan, e.g. planted by
``resume(replace=...)``) counts as 1 and is kept, as upstream's zero-means-unset.  Positions outside
``remaskable`` are never remasked.

Cost per sequence: at most T model calls (one per step; the last step of each block decodes
everything left, so the final argmax pass calls nothing).  A step that leaves the canvas unchanged
(more steps in a block than tokens to decode) is answered from the engine's cache (§1.7) and
calls nothing, so such runs cost fewer.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .blocks import FixedBlocks
from .ranked import top_n
from .step import CONFIDENCE, Decision, Write


@dataclass
class RCR(FixedBlocks):
    """Running confidence remasking (module docstring)."""
    name = "rcr"
    remasks = True
    ranks_written_confidence = True
    phase = "rcr"

    def step(self, ctx) -> Decision:
        window, _, i, s = self.block(ctx)
        free = window & ~ctx.fixed
        masked = ctx.masked & window
        decoded = self.remaskable_in(ctx, window)
        M = free.sum(-1)
        ratio = torch.linspace(0, 1, s + 1, dtype=torch.float32)[i + 1].item()   # upstream: float32
        stay_masked = M - (ratio * M.float()).round().long()

        score = torch.where(decoded, ctx.token_prob.double().nan_to_num(1.0),
                            torch.full(ctx.x.shape, math.inf, dtype=torch.float64, device=ctx.x.device))
        b, pos = masked.nonzero(as_tuple=True)
        write = None
        if b.numel():
            tok, conf, ci, cp = self.draw_at(ctx, b, pos, self.temperature)
            score[b, pos] = conf.double()
            write = Write(b, pos, tok, conf, 1.0, 0.0, CONFIDENCE, ci, cp)
        to_mask = top_n(score, masked | decoded, stay_masked, largest=False)
        if write is not None:
            write = write.keep(~to_mask[b, pos])
        return Decision(remask=to_mask & decoded, remask_p=1.0, remask_sigma=math.nan, remask_score=None,
                        remask_reason=CONFIDENCE, write=write)
