"""Rescore: a draft, then rounds that re-score every decoded token and rewrite the worst ones.

Random remasking (ReMDM's sigma_t) does not know which tokens are wrong.  This corrector asks the
model.  One correction round, on the state x after the draft:

1. **score** every decoded token x_l by s_l = p_theta(x_l | x with l's group masked): the
   probability the model gives the token that is there when that position is hidden
   (leave-group-out: the positions are split into ``groups`` strided groups, l mod G, and each
   pass masks one group -- ``ctx.rescore``).  MDLM and LLaDA are trained only at masked
   positions, so the logits at a decoded position are no opinion of its token: the position must
   be masked to be judged;
2. **aim**: in every window of ``window`` consecutive positions, the decoded token with the lowest
   score is put back to [MASK] if s_l < ``threshold`` -- at most one per window, so two coupled
   tokens of one record or phrase (which both score low when they clash) are not redrawn
   independently again;
3. **rewrite** the remasked tokens (and any left masked by the draft) in one pass from
   p_theta(x0 | the state with them masked), nucleus-filtered as the draft.

A round costs G passes to score (a row whose state has not changed since it was last scored
reuses its scores: the network is deterministic) and one to rewrite.  With the defaults --
``rounds=4``, G = gen_length / 16, ``window=16``, ``threshold=0.1`` -- a T-step MDLM draft plus
its corrections costs about T_calls + 4 (L/16 + 1) model calls per sequence: ~100 on ``orders``
(L = 256, T = 32), ~120 on ``stories`` (L = 128, T = 128).  ``every=k`` also runs a round after
every k draft steps (a corrector phase inside the run; it rewrites only what it remasked and
leaves the draft's masks to the draft).

Trace: a correction round is one step with phase ``"rescore"``; each remask event carries the
score that chose it as its ``prob`` and the reason ``"rescore"``, and the rewrite is an unmask
event at the same step.  ``trace.nfe`` counts every pass, scoring included.

The rule is the leave-one-out verification of WINO (arXiv 2507.18578) and the re-scoring of
Tolerator / FiRe, with groups instead of one position per pass and a window instead of a global
top-k; see ``../shared/docs/anchors.md`` ("Update").
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .draft import DraftThenCorrect
from .settings import check_groups, check_positive_int, open_unit, rescore_groups
from .step import RESCORE, Decision, Write


def lowest_per_window(score: torch.Tensor, candidates: torch.Tensor, start: int, window: int) -> torch.Tensor:
    """BoolTensor[B, L]: in each window of ``window`` positions from ``start`` on, the candidate with
    the lowest score (ties: the first).  Windows without a candidate choose nothing."""
    B, L = score.shape
    n = L - start
    n_win = math.ceil(n / window)
    s = torch.full((B, n_win * window), math.inf, dtype=torch.float64, device=score.device)
    s[:, :n] = torch.where(candidates[:, start:], score[:, start:].double(), math.inf)
    v, i = s.view(B, n_win, window).min(-1)
    flat = torch.zeros(B, n_win * window, dtype=torch.bool, device=score.device)
    flat.view(B, n_win, window).scatter_(-1, i[..., None], torch.isfinite(v)[..., None])
    out = torch.zeros(B, L, dtype=torch.bool, device=score.device)
    out[:, start:] = flat[:, :n]
    return out


@dataclass
class Rescore(DraftThenCorrect):
    """A T-step draft (MDLM unless ``draft=`` another sampler), then ``rounds`` correction rounds
    (module docstring).  ``groups=None`` uses gen_length / 16 (at least 1)."""
    rounds: int = 4
    groups: int | None = None
    window: int = 16
    threshold: float = open_unit(0.1, "a token is rewritten only when the model gives it less than this "
                                      "probability (0.1 is the default).")
    every: int | None = None
    name = "rescore"
    remasks = True
    round_phase = "rescore"

    def validate(self):
        super().validate()
        check_positive_int("groups", self.groups, allow_none=True)
        check_positive_int("window", self.window)
        check_positive_int("every", self.every, allow_none=True)

    def groups_for(self, gen_length: int) -> int:
        return rescore_groups(self.groups, gen_length, 16)

    def check_shape(self, gen_length: int, steps: int) -> None:
        super().check_shape(gen_length, steps)
        check_groups(self.groups, gen_length, 16)

    def expected_calls(self, steps: int, gen_length: int) -> float:
        """The draft's calls plus, per round, G scoring passes and one rewrite (at most)."""
        rounds = sum(1 for _, own in self._plan(steps) if own is None)
        return self.draft.expected_calls(steps, gen_length) + rounds * (self.groups_for(gen_length) + 1)

    def correct(self, ctx, k: int) -> Decision:
        """One correction round: score, aim, rewrite (module docstring).  A round after the draft
        (k >= 0) also writes what the draft left masked; one inside it (``every``) leaves that to the draft."""
        decoded = self.remaskable_in(ctx)
        score = ctx.rescore(decoded, self.groups_for(ctx.gen_length))
        remask = lowest_per_window(score, decoded & (score < self.threshold), ctx.gen_start, self.window)
        redraw = remask | ctx.masked if k >= 0 else remask
        write = None
        b, pos = redraw.nonzero(as_tuple=True)
        if b.numel():
            tok, prob, ci, cp = self.draw_at(ctx, b, pos, remasked=remask)
            write = Write(b, pos, tok, prob, 1.0, 0.0, RESCORE, ci, cp)
        return Decision(remask=remask, remask_p=1.0, remask_sigma=math.nan, remask_score=score,
                        remask_reason=RESCORE, write=write, phase="rescore")
