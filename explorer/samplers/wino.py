"""WINO: wide-in, narrow-out draft-and-verify decoding (Hong et al., arXiv 2507.18578).

Code: ``Feng-Hong/WINO-DLLM:LLaDA/decoding.py`` (``decoding_wino``).

Per block of the generated part (semi-autoregressive, left to right; ``block_length=None``: one
block), every step does both, on the same state x_t:

* **draft (wide in)**: draw x0_l ~ p_theta(. | x_t) at every masked position l of the block with
  its confidence c_l = p_theta(x0_l | x_t); write those with c_l > ``threshold`` (tau_1 = 0.6), at
  most K = min(max(floor(0.7 n_masked), 5), ``max_accept`` = 20) of them (the most confident), and
  at least the single most confident one;
* **verify (narrow out)**: when the draft accepted more than one token, re-score each token x_l
  decoded earlier in the block by v_l = p_theta(x_l | x_t with l hidden) and put it back to
  [MASK] if v_l < ``threshold_back`` (tau_2 = 0.9) -- at most A_prev - 1 of them, the lowest,
  where A_prev is the number the previous step accepted (30 at a block's start), so every step
  makes progress.

**How the verify differs from upstream's shadow block.**  Upstream appends a *shadow copy* of the
block to the sequence: all [MASK] tokens carrying the block's position ids, which attend to
everything except the one original position they stand for (a custom 2-D attention mask), while
nothing attends to them.  One forward then gives, at shadow position l, p(x_l | everything but
x_l) for every l of the block at once: exact leave-one-out, free, in the draft's own pass.  The
models here take only token ids and a padding mask (``model.logits(z, pad=)``), no attention mask
or position ids, so the verify is ``ctx.rescore``: leave-*group*-out, ``groups`` strided groups,
one extra forward per group.  A position is then judged with its group-mates hidden too (with
``groups`` = block length it is exact leave-one-out), and the verify costs G passes per step
instead of none.  Upstream also runs batch 1 with a global top-k; here every row plans alone.

The step count is adaptive: a row whose canvas is full calls nothing more.  ``steps=T`` is a cap
on the iterations; what is still masked after T steps is filled by the engine's final argmax pass.
Cost per sequence: at most T (1 + G) + 1 model calls, G = ``groups`` (``None``: gen_length / 64,
at least 1 -- 4 on ``orders``); a step whose draft accepts one token skips the verify.  Remasks
carry v_l as their ``prob`` and the reason ``"rescore"``.  ``temperature=1`` draws (our
unconditional tasks need it); upstream's default is 0, the argmax.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .blocks import AdaptiveBlocks, CurrentBlocks
from .ranked import top_n
from .settings import check_positive_int, open_unit
from .step import CONFIDENCE, RESCORE, Decision, Write

FIRST_LAST_ACCEPT = 30     # upstream's A_prev at the start of a block


@dataclass
class WINO(AdaptiveBlocks):
    """Draft-and-verify (module docstring)."""
    threshold: float = open_unit(0.6, "tau_1: a draft token more confident is accepted (the paper: 0.6).")
    threshold_back: float = open_unit(0.9, "tau_2: a decoded token re-scored below is remasked (the paper: 0.9).")
    max_accept: int = 20             # caps K, the draft tokens one step may accept
    name = "wino"
    remasks = True
    phase = "wino"

    def validate(self):
        check_positive_int("max_accept", self.max_accept)
        super().validate()

    def block_step(self, ctx, blocks: CurrentBlocks) -> Decision:
        window, block, masked, b, pos = blocks
        mem = ctx.memory
        if "wino_block" not in mem:
            mem["wino_block"] = torch.full_like(block, -1)
            mem["wino_last"] = torch.full_like(block, FIRST_LAST_ACCEPT)
        mem["wino_last"] = torch.where(block != mem["wino_block"], FIRST_LAST_ACCEPT, mem["wino_last"])
        mem["wino_block"] = block

        # draft
        tok, conf, ci, cp = self.draw_at(ctx, b, pos, self.temperature)
        score = torch.full(ctx.x.shape, -math.inf, dtype=torch.float64, device=ctx.x.device)
        score[b, pos] = conf.double()
        n_masked = masked.sum(-1)
        cap = (0.7 * n_masked.double()).floor().long().clamp(min=5).clamp(max=self.max_accept)
        above = ((score > self.threshold) & masked).sum(-1)
        n_take = torch.where(above > cap, cap, above.clamp(min=1)).clamp(max=n_masked)
        take = top_n(score, masked, n_take)
        write = Write(b, pos, tok, conf, 1.0, 0.0, CONFIDENCE, ci, cp).keep(take[b, pos])

        # verify: tokens decoded before this step, in rows whose draft accepted more than one
        decoded = self.remaskable_in(ctx, window) & (n_take > 1)[:, None]
        remask, v = None, None
        if bool(decoded.any()):
            v = ctx.rescore(decoded, self.groups_for(ctx.gen_length))
            low = decoded & (v < self.threshold_back)
            limit = (mem["wino_last"] - 1).clamp(min=0)
            remask = top_n(v, low, torch.minimum(low.sum(-1), limit), largest=False)
        mem["wino_last"] = torch.where(n_masked > 0, n_take, mem["wino_last"])
        return Decision(remask=remask, remask_p=1.0, remask_sigma=math.nan, remask_score=v,
                        remask_reason=RESCORE, write=write)
