"""Ranked samplers: decode the most confident masked tokens of a window, maybe remask the least confident.

LLaDA's own sampler (reference §4.1), ReMDM-LLaDA (§4.3) and Dream's ``diffusion_generate``
(§4.2) all have this shape.  A ranked sampler never calls the model; its ``step(ctx)``
(:class:`RankedSampler.step`, on the one step protocol of :mod:`explorer.samplers.step`) asks
four things of the subclass:

1. ``plan(st, masked, gen_start, gen_length, steps)``: the window of positions that may be
   decoded (the current block), how many tokens each row decodes, and how many decoded tokens of
   the window it first puts back to [MASK];
2. it remasks, per row, the ``n_remask`` tokens of the window (inside ``remaskable``) with the
   *lowest* confidence cached when they were decoded (the trace's ``prob``; §4.3 step 3a);
3. ``draw(logits, mask_id, uniforms)`` at every masked position of the window, on the state after
   those remasks: a token and the confidence the sampler ranks by (the trace records it as
   ``prob``, through ``recorded_prob`` when the confidence is not a probability);
4. ``select(score, eligible, plan, st, uniforms)``: the positions that take their drawn token.

Random numbers come from the engine's counter-based streams (:mod:`explorer.rng`), so a sample
depends only on ``(seed, sample index)``.  Draws happen on the rows that need them only, in
float64 (no ``[B, L, V]`` float64 tensor).
"""
from __future__ import annotations

from dataclasses import dataclass

import math

import torch

from .base import Sampler, StepTimes
from .categorical import subs_probs, top_candidates
from .step import CONFIDENCE, POSTERIOR, Decision, Write

@dataclass(frozen=True)
class StepPlan:
    """What one step of a ranked sampler does (absolute canvas positions)."""
    start: int                  # the decode window is [start, end) (the current block)
    end: int
    n_decode: torch.Tensor      # LongTensor[B]: tokens each row decodes this step
    n_remask: int = 0           # decoded tokens of the window put back to [MASK] first
    p_unmask: float | None = None   # for samplers that unmask each position by a coin (Dream 'origin')


def top_n(score: torch.Tensor, eligible: torch.Tensor, n: torch.Tensor, largest: bool = True) -> torch.Tensor:
    """BoolTensor[B, L]: per row the ``n[b]`` eligible positions with the largest (smallest) score.

    Ties go to the lower position (a stable sort), so the choice never depends on the batch.  A tie
    is equality of the scores as given: a sampler's confidence p[x0] / sum(p) is computed in float64
    from the model's float32 softmax, so two positions whose float32 p is 1.0 may still differ here.
    """
    fill = -torch.inf if largest else torch.inf
    s = torch.where(eligible, score.double(), torch.full_like(score, fill, dtype=torch.float64))
    order = torch.argsort(s, dim=-1, descending=largest, stable=True)
    rank = torch.empty_like(order).scatter_(-1, order, torch.arange(s.shape[-1], device=s.device).expand_as(order))
    n = torch.as_tensor(n, device=s.device).reshape(-1, 1)
    return eligible & (rank < n)


def exponential_race(weights: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """argmax_v w_v / E_v with E_v = 1e-10 - log(u_v + 1e-10) ~ Exp(1): a draw from w / sum(w).

    ReMDM-LLaDA's ``_sample_categorical`` (§4.3), in float64.  With exact exponentials the index of
    the smallest E_v / w_v is distributed as w / sum(w) (the race of independent exponential clocks).
    """
    e = 1e-10 - torch.log(u.double() + 1e-10)
    return (weights.double() / e).argmax(-1)


def gumbel_argmax(logits: torch.Tensor, u: torch.Tensor, temperature: float) -> torch.Tensor:
    """LLaDA's ``add_gumbel_noise`` + argmax (§4.1 item 3): argmax_v exp(l_v) / (-log u_v)^T, float64.

    Computed in its log form l_v - T log(-log u_v) (the same argmax, no overflow of exp).  At
    T = 1 this is the exponential race, an exact draw from softmax(l); T = 0 is the argmax of l.
    """
    logits = logits.double()
    if temperature == 0:
        return logits.argmax(-1)
    return (logits - temperature * torch.log(-torch.log(u.double()))).argmax(-1)


class RankedSampler(Sampler):
    """Base class of the ranked samplers (see the module docstring)."""
    cfg_scale = 0.0          # classifier-free guidance (LLaDA §4.1 item 1); 0 = off
    # False: select() decides from coins alone, so the engine draws tokens only where it selected
    needs_confidence = True

    def check_shape(self, gen_length: int, steps: int) -> None:
        """Raise a clear error when ``gen_length`` / ``steps`` do not fit the sampler."""

    def grid(self, steps: int) -> list[StepTimes]:
        raise NotImplementedError

    def plan(self, st: StepTimes, masked: torch.Tensor, gen_start: int, gen_length: int, steps: int) -> StepPlan:
        raise NotImplementedError

    def draw(self, logits: torch.Tensor, mask_id: int, uniforms) -> tuple[torch.Tensor, torch.Tensor]:
        """(token [N], confidence [N] float64) at N masked positions from their logits [N, V]."""
        raise NotImplementedError

    def recorded_prob(self, confidence: torch.Tensor) -> torch.Tensor:
        """The trace's ``prob`` for a confidence: a number in [0, 1] that orders tokens as the sampler
        ranked them (the confidence itself when it is a probability)."""
        return confidence

    def select(self, score: torch.Tensor, eligible: torch.Tensor, plan: StepPlan, st: StepTimes,
               uniforms) -> torch.Tensor:
        """The positions that take their drawn token: by default the ``n_decode`` most confident."""
        return top_n(score, eligible, plan.n_decode)

    def step(self, ctx) -> Decision:
        st = ctx.st
        plan = self.plan(st, ctx.masked, ctx.gen_start, ctx.gen_length, ctx.num_steps)
        window = (ctx.positions >= plan.start) & (ctx.positions < plan.end)
        masked, remask = ctx.masked, None
        if plan.n_remask:    # §4.3 step 3a: lowest confidence cached at decode time, decoded in this block
            pool = self.remaskable_in(ctx, window) & ~ctx.token_prob.isnan()
            # ranked on the float32 values the trace keeps, so a resumed branch replays the same choice
            n = torch.full((ctx.x.shape[0],), plan.n_remask, device=ctx.x.device)
            remask = top_n(ctx.token_prob, pool, n, largest=False)
            masked = masked | remask
        eligible = masked & window
        if not self.needs_confidence:          # decided by coins: draw tokens only where they land
            eligible = self.select(None, eligible, plan, st, ctx.uniforms)
        write = None
        b, pos = eligible.nonzero(as_tuple=True)
        if b.numel():
            ru = ctx.row_uniforms(b, pos)

            def draw(logits, rows):
                tok, conf = self.draw(logits, ctx.mask_id, ru[rows])
                cp, ci = top_candidates(subs_probs(logits, ctx.mask_id), ctx.topk) if ctx.topk else (None, None)
                return tok, conf.double(), ci, cp
            tok, conf, ci, cp = ctx.draw(b, pos, draw, remasked=remask)
            if self.needs_confidence:
                score = torch.full(ctx.x.shape, -torch.inf, dtype=torch.float64, device=ctx.x.device)
                score[b, pos] = conf
                keep = self.select(score, eligible, plan, st, ctx.uniforms)[b, pos]
                write = Write(b, pos, tok, self.recorded_prob(conf), 1.0, 0.0, CONFIDENCE, ci, cp).keep(keep)
            else:
                write = Write(b, pos, tok, self.recorded_prob(conf), plan.p_unmask, 0.0, POSTERIOR, ci, cp)
        return Decision(remask=remask, remask_p=1.0, remask_sigma=math.nan, remask_reason=CONFIDENCE,
                        write=write, phase="remask" if plan.n_remask else None)


def block_plan(step: int, steps: int, gen_start: int, gen_length: int, block_length: int | None,
               iterations_per_block: int) -> tuple[int, int, int]:
    """(block start, block end, iteration index within the block) of a 1-based step (§4.1, §4.3)."""
    bl = gen_length if block_length is None else block_length
    j, i = divmod(step - 1, iterations_per_block)
    return gen_start + j * bl, gen_start + (j + 1) * bl, i


def check_blocks(name: str, block_length: int | None, gen_length: int, steps: int) -> int:
    """Number of blocks, after LLaDA's asserts (§4.1 "Canvas", §4.3): named errors with the fix."""
    bl = gen_length if block_length is None else block_length
    if gen_length % bl:
        raise ValueError(f"{name}: gen_length={gen_length} is not a multiple of block_length={bl}; use "
                         f"gen_length={bl * max(1, round(gen_length / bl))} or a block_length that divides it.")
    blocks = gen_length // bl
    if steps % blocks:
        raise ValueError(f"{name}: steps={steps} is not divisible by the number of blocks ({blocks} = "
                         f"gen_length / block_length); use steps={blocks * max(1, round(steps / blocks))}.")
    return blocks


def check_block_length(block_length) -> None:
    if block_length is not None and (isinstance(block_length, bool) or not isinstance(block_length, int)
                                     or block_length < 1):
        raise ValueError(f"block_length must be a positive integer (or None for one block over gen_length), "
                         f"got {block_length!r}.")
