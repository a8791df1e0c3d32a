"""Remasking as repair: rewrite a *finished* sequence with the loop phase of ReMDM (reference §2.5).

    trace = explorer.refine(model, "order france jpy 20% ...")        # or ids [N, L]
    trace.final                                                         # the revised sequences

ReMDM-loop (§2.5) unmasks to alpha_on, then *loops* at constant alpha: each step remasks a decoded
token with probability sigma = eta and rewrites masked ones from p(x0), which now sees the rest of
the sequence. :func:`refine` starts that loop from a sequence you give -- generated, written by
hand, or with a planted mistake -- runs ``steps`` loop steps and then the engine's final pass
(§1.8: whatever is still masked gets the model's argmax). It is the same engine loop as
:func:`explorer.generate` (``explorer.engine._loop``), so the result is an ordinary
:class:`~explorer.trace.Trace`: the widgets, ``to_csv`` and :func:`explorer.resume` work on it,
and ``trace.state_at(0)`` is the sequence you gave.

A sampler that never remasks leaves a complete sequence as it is: MDLM repairs nothing, by
construction (it only ever writes masked positions).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from .engine import _check_common, _device, _loop, _positions_mask, _resolve_prompt
from .protocol import check_denoiser
from .samplers.base import Sampler
from .samplers.refine import ReMDMRefine
from .trace import Trace

__all__ = ["refine"]


def _as_ids(model, x) -> torch.Tensor:
    """LongTensor[N, L] from text (a string or a list of strings) or token ids ([L] or [N, L])."""
    L = model.seq_len
    if isinstance(x, str) or (isinstance(x, (list, tuple)) and x and all(isinstance(t, str) for t in x)):
        tk = getattr(model, "tokenizer", None)
        if tk is None:
            raise ValueError("refine() got text but this model has no tokenizer; pass token ids [N, L] instead.")
        texts = [x] if isinstance(x, str) else list(x)
        rows = []
        for i, text in enumerate(texts):
            ids = tk(text, add_special_tokens=False)["input_ids"]
            if len(ids) != L:
                raise ValueError(f"text {i} is {len(ids)} tokens long; refine() rewrites complete sequences "
                                 f"of exactly L = {L} tokens (use generate(prompt=...) to complete a shorter one).")
            rows.append(ids)
        return torch.tensor(rows, dtype=torch.long)
    if isinstance(x, Trace):
        raise TypeError("refine() takes sequences, not a Trace: pass trace.final (or trace.state_at(k)).")
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if t.dtype.is_floating_point or t.dtype == torch.bool or t.dtype.is_complex:
        raise ValueError(f"x must hold integer token ids, got dtype {t.dtype}.")
    if t.dim() == 1:
        t = t[None]
    if t.dim() != 2 or t.shape[1] != L or t.shape[0] < 1:
        raise ValueError(f"x has shape {tuple(t.shape)}; refine() needs token ids [N, L] (or [L]) with "
                         f"L = {L}, the model's sequence length.")
    return t.long().cpu().clone()


def refine(model, x, sampler: Sampler | None = None, steps: int | None = None, seed: int = 0,
           remaskable=None, record: bool = True, progress: bool = True, device=None, topk: int = 3,
           fast: bool = True) -> Trace:
    """Rewrite complete sequences ``x`` with ``steps`` remasking steps at constant alpha, then the
    final pass; returns the recorded :class:`~explorer.trace.Trace` (as :func:`explorer.generate`).

    ``x``: text (a string or a list of strings, each exactly L tokens) or token ids ``[N, L]`` /
    ``[L]``; no [MASK] allowed. The model's fixed tokens (e.g. the orders anchors) must be in place
    and are never touched.
    ``sampler``: default :class:`~explorer.samplers.ReMDMRefine` ``(alpha=0.98, eta=bound)`` -- about
    2 % of the tokens masked at a time, every token revisited eta * T times on average (see its
    docstring for why). Any remasking sampler that does not rank by the confidence a token was
    written with works (ReMDM-loop's own loop phase, ReMDM-cap, ...); one that never remasks (MDLM)
    returns ``x`` unchanged. ReMDM-conf, ReMDM-LLaDA and RCR are refused: the given tokens were not
    written by them, so they have no such confidence, and these samplers would never pick them.
    ``steps``: loop steps, default L (a token is then missed with probability (1 - eta)^L, 0.5 % at
    L = 256 with the defaults).
    ``remaskable``: positions (list of ints) or a boolean mask ``[L]`` / ``[N, L]``: only these may
    be remasked (selective remasking); every other position keeps its token.
    Sample ``i`` depends only on ``(seed, i)``.
    """
    check_denoiser(model)
    if model.seq_len is None:
        raise ValueError("refine() rewrites complete sequences of a fixed-length model (seq_len an int), and this "
                         "model has none (LLaDA, Dream); to revise one of its answers, resume its trace with "
                         "remasking: explorer.resume(model, trace, step, remask=[positions]).")
    sampler = ReMDMRefine() if sampler is None else sampler
    if getattr(sampler, "ranks_written_confidence", False):
        raise ValueError(f"{sampler.name} picks the tokens to remask by the confidence each was written with, and "
                         "the tokens refine() is given have none (this sampler did not write them), so it would "
                         "never remask them; use remdm-refine (the default), remdm-cap, remdm-loop or rescore.")
    steps = model.seq_len if steps is None else steps
    steps, _, seed, _, topk = _check_common(model, sampler, steps, 1, seed, None, topk)
    device = _device(model, device)
    ids = _as_ids(model, x)
    N, L = ids.shape
    mask_id = model.mask_id
    bad = ((ids < 0) | (ids >= model.vocab_size)).nonzero()
    if len(bad):
        i, p = bad[0].tolist()
        raise ValueError(f"token id {int(ids[i, p])} at sample {i}, position {p} is outside the vocabulary "
                         f"[0, {model.vocab_size}).")
    masked = (ids == mask_id).nonzero()
    if len(masked):
        raise ValueError(f"x holds [MASK] (id {mask_id}) at {len(masked)} place(s), first sample "
                         f"{masked[0, 0].item()} position {masked[0, 1].item()}; refine() rewrites complete "
                         "sequences -- fill masks with explorer.generate(model, ..., prompt=ids) first.")
    anchors, fixed1 = _resolve_prompt(model, None, L, mask_id)
    wrong = (fixed1 & (ids != anchors)).nonzero()
    if len(wrong):
        i, p = wrong[0].tolist()
        raise ValueError(f"position {p} of sample {i} is one of the model's fixed tokens (id {int(anchors[p])}) "
                         f"but x has {int(ids[i, p])} there; keep the model's fixed tokens in place.")
    if remaskable is not None:
        if sampler.remaskable is not None:
            raise ValueError("the sampler already has a remaskable restriction; pass remaskable once.")
        allowed = _positions_mask(remaskable, (N, L), "remaskable")
        allowed = allowed[0] if bool((allowed == allowed[:1]).all()) else allowed
        sampler = dataclasses.replace(sampler, remaskable=allowed)   # raises if it never remasks
    sampler.check_shape(L, steps)
    fixed = fixed1.expand(N, L).clone()
    token_prob = torch.full((N, L), float("nan"))   # given tokens: their p(x0) is unknown
    return _loop(model, sampler, sampler.grid(steps), steps, ids, fixed, token_prob, seed, 0, device, None,
                 record, progress, topk, fast, {"prompt": None, "refine": True})
