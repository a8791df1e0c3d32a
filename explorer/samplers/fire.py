"""FiRe (fill, then refine): the Tolerator corrector (Rachum et al., "Tolerator" manuscript).

Code: ``Rachum-thu/tolerator:eval/lm_eval/models/llada_denoise.py``
(``create_llada_denoise_func``, ``apply_random_sample_denoise``; the same rule for Dream).

First a T-step **fill** (the draft: MDLM unless ``draft=`` another sampler; upstream fills with
LLaDA's low-confidence decoder), then ``rounds`` **refine** rounds.  Round k = 0..R-1:

1. the remask ratio r_k anneals from ``start_ratio`` (0.8) to ``end_ratio`` (0.4) on a cosine:
   r_k = r_end + (r_start - r_end) (1 + cos(pi k / (R - 1))) / 2 (with ``rounds=1`` the one round
   uses ``end_ratio``);
2. of the n *unlocked* generated positions, floor(n (1 - r_k)) chosen at random keep their token
   and the other M are masked together (one random group, not a stride);
3. one forward on that state scores each masked position's *original* token,
   c_l = p_theta(x_l | x with the group masked) -- re-scoring, reason ``"rescore"``;
4. the max(1, floor(M ``update_rate``)) lowest-c_l positions are resampled from the same pass at
   temperature ``temperature`` (0.3); the other masked positions keep their original token
   (with the default update_rate = 1 every masked position is resampled);
5. a position whose resampled token came out the same ``lock_after`` (10) times in a row is
   locked: never masked again.  A row whose positions are all locked calls nothing.

The locks live in ``ctx.memory`` (per batch).  Upstream counts from a zero-filled "last token", so
token id 0 is taken as a repeat at the first resample; here nothing is a repeat at the first.
Upstream runs batch 1 and stops all rounds early when every position is locked; here each row
stops on its own.  Positions outside ``remaskable`` are never masked.

Cost per sequence: the draft's calls for T steps (T or fewer for MDLM), then one model call per
round: about T + ``rounds`` (+ 1 final argmax pass if the draft leaves masks, rarely).  Every
resample is a remask event carrying c_l; the rewrite is an unmask event at the same step.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .. import rng
from .base import _check_unit
from .draft import DraftThenCorrect
from .categorical import draw_tokens, subs_probs
from .ranked import top_n
from .settings import check_positive_int, check_temperature, open_unit
from .step import RESCORE, Decision, Write


@dataclass
class FiRe(DraftThenCorrect):
    """Fill with a T-step draft, then ``rounds`` refine rounds (module docstring)."""
    rounds: int = 16                 # R refine rounds after the fill
    start_ratio: float = open_unit(0.8, "r_0, the share of unlocked tokens masked in the first round "
                                        "(the paper anneals 0.8 -> 0.4).")
    end_ratio: float = open_unit(0.4, "the share of unlocked tokens masked in the last round (the paper "
                                      "anneals 0.8 -> 0.4).")
    update_rate: float = 1.0         # share of a round's masked tokens resampled, lowest c_l first
    temperature: float = 0.3         # of the resample (upstream's)
    lock_after: int = 10             # same token this many resamples in a row: locked
    name = "fire"
    remasks = True
    round_phase = "refine"

    def validate(self):
        super().validate()
        check_positive_int("lock_after", self.lock_after)
        _check_unit("update_rate", self.update_rate, low_open=True)
        check_temperature(self.temperature)

    def expected_calls(self, steps: int, gen_length: int) -> float:
        """The draft's calls, one per refine round, and the final argmax pass if the draft leaves masks."""
        return self.draft.expected_calls(steps, gen_length) + self.rounds + 1

    def ratio(self, k: int) -> float:
        """r_k, the cosine anneal from start_ratio (k = 0) to end_ratio (k = rounds - 1)."""
        if self.rounds <= 1:
            return self.end_ratio
        t = k / (self.rounds - 1)
        return self.end_ratio + (self.start_ratio - self.end_ratio) * 0.5 * (1 + math.cos(math.pi * t))

    def correct(self, ctx, k: int) -> Decision:
        """Refine round k (module docstring)."""
        B, L = ctx.x.shape
        mem = ctx.memory
        if "fire_locked" not in mem:
            mem["fire_locked"] = torch.zeros(B, L, dtype=torch.bool, device=ctx.x.device)
            mem["fire_last"] = torch.full((B, L), -1, dtype=torch.long, device=ctx.x.device)
            mem["fire_count"] = torch.zeros(B, L, dtype=torch.long, device=ctx.x.device)
        locked = mem["fire_locked"]
        avail = self.remaskable_in(ctx, (ctx.positions >= ctx.gen_start) & ~locked)
        n = avail.sum(-1)
        n_keep = (n.double() * (1.0 - self.ratio(k))).floor().long()
        # a random group: the n - n_keep available positions with the lowest uniforms are masked
        group = top_n(ctx.uniforms(rng.ORDER), avail, n - n_keep, largest=False)
        rows = group | ctx.masked & (ctx.positions >= ctx.gen_start)    # and anything the fill left masked
        b, pos = rows.nonzero(as_tuple=True)
        if not b.numel():
            return Decision(phase="refine")
        u = ctx.uniforms_at(rng.TOKEN, b, pos)
        orig = ctx.x[b, pos]

        def fn(logits, r):
            tok, prob, ci, cp = draw_tokens(logits, ctx.mask_id, self.nucleus_p, u[r], ctx.topk,
                                            temperature=self.temperature)
            c = subs_probs(logits, ctx.mask_id).gather(-1, orig[r].clamp(max=ctx.vocab_size - 1)[:, None])
            return tok, prob, ci, cp, c.squeeze(-1).double()
        tok, prob, ci, cp, c = ctx.draw(b, pos, fn, remasked=group)
        score = torch.full((B, L), math.inf, dtype=torch.float64, device=ctx.x.device)
        score[b, pos] = c
        M = group.sum(-1)
        n_update = torch.where(M > 0, (M.double() * self.update_rate).floor().long().clamp(min=1), 0)
        update = top_n(score, group, n_update, largest=False)
        redraw = (update | ctx.masked)[b, pos]
        write = Write(b, pos, tok, prob, 1.0, 0.0, RESCORE, ci, cp).keep(redraw)

        # locks: count identical consecutive resamples at the updated positions
        new = torch.full((B, L), -1, dtype=torch.long, device=ctx.x.device)
        new[b, pos] = tok
        same = update & (new == mem["fire_last"])
        mem["fire_count"] = torch.where(update, torch.where(same, mem["fire_count"] + 1, 1), mem["fire_count"])
        mem["fire_last"] = torch.where(update, new, mem["fire_last"])
        mem["fire_locked"] = locked | (update & (mem["fire_count"] >= self.lock_after))
        score = torch.where(ctx.masked, math.nan, score)
        return Decision(remask=update, remask_p=1.0, remask_sigma=math.nan, remask_score=score,
                        remask_reason=RESCORE, write=write, phase="refine")
