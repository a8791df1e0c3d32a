"""P2: path planning with the model as its own planner (Peng et al., arXiv 2502.03540).

Code: ``pengzhangzhi/path_planning:path_planning/p2_sampling.py`` (``p2_sampling``, ``planner=None``).

P2 treats every step as a plan over *all* generated positions, masked or decoded.  At step
i = 1..T of a run with N free (non-prompt) positions, with kappa_i = i / T the share that is
decoded after the step (upstream's default linear ``kappa_fn``):

1. **draw** x0_l ~ p_theta(. | x_t) at every masked position l (nucleus / temperature tau as the
   other samplers here); its score is s_l = log p_theta(x0_l | x_t);
2. **re-judge** every decoded position l by s_l = eta * log p_theta(x_l | x_t with l's group masked)
   (``ctx.rescore``, leave-group-out, ``groups`` strided groups): the model's own opinion of the
   token that is there, with the position hidden -- the model is its own planner;
3. **plan**: the floor(N (1 - kappa_i)) positions with the lowest s_l are masked after the step:
   decoded ones among them go back to [MASK] ("remask", their score the reason), masked ones stay
   masked; every other masked position takes its x0_l.  At i = T nothing stays masked.

eta > 1 makes a decoded token look worse than its probability (more revisiting); eta = 1 compares
decoded and fresh tokens by their probabilities; eta = 0 never remasks (plain greedy-by-confidence
MDLM-style ordering).

**What upstream does at decoded positions** (``decoded="draw"``, offered for comparison): it scores
a decoded position by a *freshly drawn* token x0_l from the logits of the unmasked state at l, not
by the token that is there, and keeps the old token when the position is not remasked.  MDLM and
LLaDA are trained only at masked positions, so those logits are no calibrated opinion (MDLM's SUBS
parameterisation even copies the input token there); the default ``decoded="rescore"`` masks the
position to judge its current token, which is what the paper's planner is meant to estimate.

Cost per sequence: T draw passes, plus, per step, one re-scoring pass per group that holds a
decoded position (none at the first step): at most T (1 + G) model calls, G = ``groups``
(``None``: gen_length / 64, at least 1 -- 4 on ``orders``).  ``decoded="draw"`` costs T.
The trace's remask events carry exp(s_l) = p^eta as their ``prob`` with the reason ``"rescore"``
(``"confidence"`` for ``decoded="draw"``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .base import Sampler, StepTimes, _check_unit, linear_grid
from .ranked import top_n
from .settings import check_groups, check_positive_int, check_temperature, choice, rescore_groups
from .step import CONFIDENCE, RESCORE, Decision, Write

DECODED = ("rescore", "draw")


@dataclass
class P2(Sampler):
    """Path planning, self-planner (module docstring)."""
    eta: float = 1.0
    temperature: float = 1.0
    groups: int | None = None
    decoded: str = choice("rescore", DECODED)
    name = "p2"
    remasks = True

    def validate(self):
        _check_unit("eta", self.eta, high=math.inf)
        check_temperature(self.temperature)
        check_positive_int("groups", self.groups, allow_none=True)
        if self.decoded not in DECODED:
            raise ValueError(f"decoded must be 'rescore' (judge a decoded token with its position masked, the "
                             f"default) or 'draw' (upstream: a fresh draw at the unmasked position), got "
                             f"{self.decoded!r}.")

    def groups_for(self, gen_length: int) -> int:
        return rescore_groups(self.groups, gen_length, 64)

    def check_shape(self, gen_length: int, steps: int) -> None:
        check_groups(self.groups, gen_length, 64)

    def expected_calls(self, steps: int, gen_length: int) -> float:
        """At most T draws plus G re-scoring passes per step (none with decoded='draw')."""
        return steps * (1 + (0 if self.decoded == "draw" else self.groups_for(gen_length)))

    def grid(self, steps: int) -> list[StepTimes]:
        return [StepTimes(i, t, s, 1.0 - t, 1.0 - s, "p2") for i, t, s in linear_grid(steps)]

    def step(self, ctx) -> Decision:
        gen = ctx.positions >= ctx.gen_start
        free = gen & ~ctx.fixed
        masked = ctx.masked & gen
        judged = self.remaskable_in(ctx, gen)
        kappa = ctx.st.step / ctx.num_steps
        n_mask = (free.sum(-1).double() * (1.0 - kappa)).floor().long()

        score = torch.full(ctx.x.shape, math.inf, dtype=torch.float64, device=ctx.x.device)
        upstream = self.decoded == "draw"
        rows = (masked | judged) if upstream else masked
        b, pos = rows.nonzero(as_tuple=True)
        tok = prob = ci = cp = None
        if b.numel():
            tok, prob, ci, cp = self.draw_at(ctx, b, pos, self.temperature)
            score[b, pos] = prob.double().clamp_min(1e-300).log()
        if not upstream and judged.any() and n_mask.any():
            p = ctx.rescore(judged, self.groups_for(ctx.gen_length))
            score = torch.where(judged, p.clamp_min(1e-300).log(), score)
        score = torch.where(judged, self.eta * score, score)

        # the plan: the n_mask lowest scores among masked and judged positions stay / go masked
        to_mask = top_n(score, masked | judged, n_mask, largest=False)
        remask = to_mask & judged
        write = None
        if tok is not None:
            keep = (masked & ~to_mask)[b, pos]
            write = Write(b, pos, tok, prob, 1.0, 0.0, CONFIDENCE, ci, cp).keep(keep)
        return Decision(remask=remask, remask_p=1.0, remask_sigma=math.nan,
                        remask_score=score.exp(), remask_reason=CONFIDENCE if upstream else RESCORE,
                        write=write, phase="p2")
