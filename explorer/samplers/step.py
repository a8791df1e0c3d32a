"""The one step protocol: what a sampler is given at each step, and what it answers.

A sampler is a pure step unit (a diffusers scheduler is the model): ``sampler.step(ctx)`` looks at
a read-only :class:`StepContext` and returns a :class:`Decision` -- which decoded positions go
back to [MASK], which masked positions are written with which tokens, and why.  It never calls
the model and never changes the state; the engine (:mod:`explorer.engine`) owns the model calls,
the exact p(x0) cache, the counting of every pass, the random streams, the recording and the
final argmax pass, and applies the decision: first the remasks, then the writes.

What the context offers (``ctx.``):

==================================== ==========================================================
``st``, ``step``                     the step's :class:`~explorer.samplers.base.StepTimes`
``x``, ``masked``, ``fixed``         the state ``[B, L]`` (mask id where masked), its mask, and
                                     the prompt / pinned positions (never changed)
``decoded``                          neither masked nor fixed: what may be remasked (computed
                                     once a step; ``Sampler.remaskable_in`` adds ``remaskable``)
``token_prob``                       the confidence cached when each token was decoded (nan if
                                     masked or unknown): the score of ReMDM-conf, RCR, LLaDA
``num_steps``, ``gen_start``,        T as asked; the first generated position and how many
``gen_length``, ``positions``        there are; ``arange(L)``
``mask_id``, ``vocab_size``, ``topk`` the model's mask id and width; top-k candidates to record
``uniforms(purpose)``                ``[B, L]`` float64 counter-based uniforms of this step
``uniforms_at(purpose, b, pos)``     the same at rows ``(b, pos)`` only
``row_uniforms(b, pos)``             per-row uniforms and the exponential race (ranked draws)
``draw(b, pos, fn, remasked=None)``  ``fn(logits, rows)`` on the model's logits at rows
                                     ``(b, pos)``, in chunks, concatenated; with ``remasked``
                                     (BoolTensor[B, L]) the logits are those of the state with
                                     those positions masked (remask-then-draw samplers)
``rescore(ask, groups)``             the model's probability of each *current* token at the
                                     decoded positions ``ask`` with that position masked
                                     (leave-group-out: ``groups`` strided groups, batched); nan
                                     elsewhere.  Every pass is counted in ``nfe``
``memory``                           a dict kept across the steps of one batch, for a rule
                                     that counts something over time (e.g. FiRe's locks); fill
                                     it only from the context, so a run stays a function of
                                     (seed, sample)
==================================== ==========================================================

MDLM and LLaDA are trained only at masked positions, so the raw logits at a decoded position
are no opinion of that token: a "current probability" must come from ``rescore``, never from
``draw`` at a decoded position.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch

# why a token changed; the trace stores the index (``explorer.trace.REASONS`` lists the same names)
POSTERIOR, CONFIDENCE, FINAL_ARGMAX, RESCORE = "posterior", "confidence", "final_argmax", "rescore"


@dataclass
class Write:
    """Tokens written at masked rows ``(b, pos)`` (one entry per row, N in all)."""
    b: torch.Tensor                    # LongTensor[N]
    pos: torch.Tensor                  # LongTensor[N]
    token: torch.Tensor                # LongTensor[N]
    prob: torch.Tensor                 # [N]: p(x0) of the token (or the confidence ranked by)
    p_transition: torch.Tensor | float = 1.0   # probability the sampler gave this transition
    sigma: torch.Tensor | float = 0.0  # remask probability at the position (record only)
    reason: str = POSTERIOR
    cand_ids: torch.Tensor | None = None     # [N, k] top-k of p(x0), for the record
    cand_probs: torch.Tensor | None = None

    def keep(self, m: torch.Tensor) -> "Write":
        """The rows where ``m`` (BoolTensor[N]) is True."""
        def sel(v):
            return v[m] if isinstance(v, torch.Tensor) and v.dim() > 0 else v
        return Write(sel(self.b), sel(self.pos), sel(self.token), sel(self.prob), sel(self.p_transition),
                     sel(self.sigma), self.reason, sel(self.cand_ids), sel(self.cand_probs))


@dataclass
class Decision:
    """One step's answer.  ``None`` fields mean "nothing of that kind"."""
    remask: torch.Tensor | None = None          # BoolTensor[B, L]: decoded positions put back to [MASK]
    remask_p: torch.Tensor | float = 1.0        # probability of each remask ([B, L] or one number)
    remask_sigma: torch.Tensor | float = math.nan   # sigma at the remasked positions (record)
    remask_score: torch.Tensor | None = None    # [B, L]: the score that chose each remask; None: the
    #                                             confidence cached when the token was decoded
    remask_reason: str = POSTERIOR
    write: Write | None = None                  # applied after the remasks
    sigma: float = math.nan                     # the step's sigma_t for the steps table
    phase: str | None = None                    # the steps table's label (default: the grid's)
    # a promise that remask is a subset of ctx.decoded and the writes of ctx.masked, one write per
    # position (built from them, as Sampler.step does); the engine then skips checking it
    valid_by_construction: bool = False


class StepContext(Protocol):
    """What the engine hands a sampler each step (see the module docstring for every member)."""
    x: torch.Tensor
    masked: torch.Tensor
    fixed: torch.Tensor
    token_prob: torch.Tensor
    num_steps: int
    gen_start: int
    gen_length: int
    positions: torch.Tensor
    mask_id: int
    vocab_size: int
    topk: int
    memory: dict

    @property
    def st(self): ...

    def uniforms(self, purpose: int) -> torch.Tensor: ...

    def uniforms_at(self, purpose: int, b: torch.Tensor, pos: torch.Tensor) -> torch.Tensor: ...

    def row_uniforms(self, b: torch.Tensor, pos: torch.Tensor): ...

    def draw(self, b: torch.Tensor, pos: torch.Tensor, fn, remasked: torch.Tensor | None = None) -> list: ...

    def rescore(self, ask: torch.Tensor, groups: int) -> torch.Tensor: ...
