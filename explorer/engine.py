"""The generation engine: one loop for every sampler, on the model's device, recording everything.

The loop (reference §1.3-§1.8, §2.1):

1. the sampler gives this step's rates: unmask probability at masked positions, remask
   probability sigma at unmasked ones (selective remasking: positions outside ``remaskable``
   behave as in MDLM);
2. the engine draws those decisions first, from counter-based float64 uniforms
   (:mod:`explorer.rng`), so sample ``i`` depends only on ``(seed, i)``;
3. only where a token unmasks does it need p(x0): it runs the model body once for the current
   state (or reuses it: the exact p(x0) cache of §1.7 -- the network is time-independent, so
   an unchanged state has an unchanged output), then the output head, SUBS, nucleus and the
   float64 draw *only at those rows*;
4. after the last step, masked tokens left are filled by argmax (§1.8).

Two more kinds of sampler share this loop.  *Ordering* baselines (``ConfidenceOrdered``) commit
the most confident draws of a block.  *Ranked* samplers (:mod:`explorer.samplers.ranked`: LLaDA's
own sampler, ReMDM-LLaDA, Dream's algorithms; llada-dream reference §4.1-§4.3) replace steps 1-3:
the sampler plans the step (block window, counts), the engine remasks the lowest confidences cached
at decode time, draws at the masked positions of the window with the sampler's own rule (float64,
on those rows only, in chunks) and commits the positions the sampler selects.

Models without a fixed length (LLaDA, Dream: ``seq_len is None``) sample on a canvas of prompt +
``gen_length`` masks built by :mod:`explorer.prompts` (left padding passed to the model as
``pad=``); random numbers are counted from the first generated position, so a padded prompt draws
what the unpadded one draws.

Drawing the decision before the token is the same law as upstream's single categorical over
``V + 1`` classes (see :mod:`explorer.samplers.base`), and it never builds a ``[B, L, V]``
float64 tensor.  ``fast=False`` evaluates the full logits every time the state changes (the
straightforward path) with the same random streams, so both paths give identical samples.
"""
from __future__ import annotations

import datetime as _dt
import math
import platform
import time
import uuid
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from . import prompts, rng
from .protocol import check_denoiser, has_split, model_device, model_identity
from .samplers.base import Sampler, SamplerState, StepTimes, check_steps
from .samplers.categorical import nucleus, sample_rows, subs_probs
from .samplers.ranked import RACE, top_n
from .trace import STEP_COLUMNS, Trace

__all__ = ["generate", "resume", "StepUpdate", "StopGeneration"]


class StopGeneration(Exception):
    """Raise inside an ``on_step`` hook to end the run: ``generate`` returns the partial trace
    (``trace.complete is False``), as Ctrl-C does."""


@dataclass(frozen=True)
class StepUpdate:
    """What an ``on_step`` hook sees after each step of a batch (and after the final pass).

    Every tensor is a CPU copy: editing it never changes the run.
    """
    step: int                  # grid step; T + 1 for the final argmax pass
    phase: str
    samples: torch.Tensor      # LongTensor[B]: trace sample ids of this batch's rows
    x: torch.Tensor            # LongTensor[B, L]: the state after the step
    unmasked: torch.Tensor     # LongTensor[K, 2]: (row, position) written in this step
    remasked: torch.Tensor     # LongTensor[J, 2]: (row, position) put back to [MASK] in this step
    steps_done: int            # grid steps finished, over all batches
    steps_total: int           # grid steps of the whole run, over all batches
    model_calls: int           # model calls so far, all batches
    elapsed: float             # seconds since the run started


# ---------------------------------------------------------------------------- inputs
def _resolve_prompt(model, prompt, seq_len: int, mask_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens [L], fixed [L]) from a prompt: text or ids (a prefix), {position: token}, or a [L] tensor."""
    tokens = torch.full((seq_len,), mask_id, dtype=torch.long)
    fixed = torch.zeros(seq_len, dtype=torch.bool)
    for pos, tok in (getattr(model, "fixed_tokens", None) or {}).items():
        tokens[pos], fixed[pos] = int(tok), True
    if prompt is None:
        return tokens, fixed

    def to_id(tok):
        if isinstance(tok, str):
            tk = getattr(model, "tokenizer", None)
            if tk is None:
                raise ValueError("a text prompt needs a model with a tokenizer; pass token ids instead.")
            ids = tk.convert_tokens_to_ids(tok) if hasattr(tk, "convert_tokens_to_ids") else None
            if ids is None or (isinstance(ids, int) and ids == getattr(tk, "unk_token_id", -1) and tok != getattr(tk, "unk_token", None)):
                raise ValueError(f"{tok!r} is not a single token of this model's vocabulary.")
            return int(ids)
        return int(tok)

    if isinstance(prompt, str):
        tk = getattr(model, "tokenizer", None)
        if tk is None:
            raise ValueError("a text prompt needs a model with a tokenizer; pass token ids instead.")
        prompt = tk(prompt, add_special_tokens=False)["input_ids"]
    if isinstance(prompt, dict):
        items = [(int(p), to_id(t)) for p, t in prompt.items()]
    else:
        ids = torch.as_tensor(prompt).long().flatten()
        if ids.numel() == seq_len and (ids == mask_id).any():      # a full template with masks
            items = [(i, int(t)) for i, t in enumerate(ids.tolist()) if t != mask_id]
        else:
            start = int(fixed.long().argmin()) if fixed.any() and fixed[0] else 0   # after e.g. [CLS]
            items = [(start + i, int(t)) for i, t in enumerate(ids.tolist())]
    for pos, tok in items:
        if not 0 <= pos < seq_len:
            raise ValueError(f"prompt position {pos} is outside the sequence (length {seq_len}).")
        if not 0 <= tok < model.vocab_size or tok == mask_id:
            raise ValueError(f"prompt token id {tok} at position {pos} is not a valid non-mask token "
                             f"(vocabulary size {model.vocab_size}, mask id {mask_id}).")
        tokens[pos], fixed[pos] = tok, True
    return tokens, fixed


def _check_common(model, sampler, steps, num_samples, seed, batch_size, topk):
    check_denoiser(model)
    if not isinstance(sampler, Sampler):
        raise TypeError(f"sampler must be an explorer.samplers.Sampler (e.g. ReMDMLoop()), got "
                        f"{type(sampler).__name__}; build one by name with explorer.samplers.by_name().")
    check_steps(steps)
    for name, v, lo in (("num_samples", num_samples, 1), ("seed", seed, 0), ("topk", topk, 0)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}.")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}.")


# ---------------------------------------------------------------------------- recording
@dataclass
class _Recorder:
    record: bool
    topk: int
    parts: dict = field(default_factory=lambda: {k: [] for k in (
        "sample", "step", "position", "kind", "token_id", "prob", "p_transition", "sigma", "reason",
        "cand_row", "cand_ids", "cand_probs")})
    n_cands: int = 0

    def add(self, sample_ids, step, b, pos, kind, token, prob, p_tr, sigma, reason, cand_ids=None, cand_probs=None):
        if not self.record or b.numel() == 0:
            return
        n = b.numel()
        P = self.parts
        P["sample"].append(sample_ids[b].cpu().numpy().astype(np.int32))
        P["step"].append(np.full(n, step, np.int32))
        P["position"].append(pos.cpu().numpy().astype(np.int32))
        P["kind"].append(np.full(n, kind, np.int8))
        P["token_id"].append(token.cpu().numpy().astype(np.int32))
        P["prob"].append(prob.float().cpu().numpy())
        P["p_transition"].append(p_tr.float().cpu().numpy())
        P["sigma"].append(sigma.float().cpu().numpy())
        P["reason"].append(np.full(n, reason, np.int8))
        # top-k candidates are kept only for unmask events (remasks have none): saves memory
        if cand_ids is None or self.topk == 0:
            P["cand_row"].append(np.full(n, -1, np.int32))
        else:
            P["cand_row"].append(np.arange(self.n_cands, self.n_cands + n, dtype=np.int32))
            self.n_cands += n
            P["cand_ids"].append(cand_ids.cpu().numpy().astype(np.int32).reshape(n, self.topk))
            P["cand_probs"].append(cand_probs.float().cpu().numpy().reshape(n, self.topk))

    def arrays(self) -> dict[str, np.ndarray]:
        out = {}
        for k, v in self.parts.items():
            if v:
                out[k] = np.concatenate(v)
            elif k in ("cand_ids", "cand_probs"):
                out[k] = np.zeros((0, self.topk), np.int32 if k == "cand_ids" else np.float32)
            else:
                out[k] = np.zeros(0, {"sample": np.int32, "step": np.int32, "position": np.int32, "cand_row": np.int32,
                                      "kind": np.int8, "token_id": np.int32, "reason": np.int8}.get(k, np.float32))
        return out


# ---------------------------------------------------------------------------- p(x0) at selected rows
class _Px0:
    """The model's output for the current state, computed at most once per distinct state.

    ``pad`` (BoolTensor[B, L], left padding of prompts of different lengths) is passed to the model
    only when some row is padded, so every fixed-length model is called exactly as before.
    ``cfg = (scale, prompt)``: classifier-free guidance (LLaDA §4.1 item 1), a second pass with the
    prompt positions masked, combined as un + (scale + 1)(cond - un) at the selected rows only.
    """

    def __init__(self, model, fast: bool, batch: int = 0, device=None, pad=None, cfg=None):
        self.model, self.fast = model, fast and has_split(model)
        self.pad = pad if pad is not None and bool(pad.any()) else None
        self.cfg = cfg if cfg is not None and cfg[0] > 0 else None
        self.passes = 2 if self.cfg else 1     # model calls per evaluated state
        self.cache = None
        self.calls = 0
        # the calls each sample would need alone (batch size 1, the paper's NFE): one per step in
        # which it draws tokens, since every draw changes its state (§1.7)
        self.nfe = torch.zeros(batch, dtype=torch.long, device=device)

    def invalidate(self):
        self.cache = None

    def _forward(self, z):
        kw = {} if self.pad is None else {"pad": self.pad}
        return self.model.body(z, **kw) if self.fast else self.model.logits(z, **kw)

    def logits_at(self, x: torch.Tensor, b: torch.Tensor, pos: torch.Tensor) -> tuple[torch.Tensor, bool]:
        called = False
        with torch.no_grad():
            if self.cache is None:
                cond = self._forward(x)
                un = None
                if self.cfg:
                    un = self._forward(torch.where(self.cfg[1], torch.full_like(x, self.model.mask_id), x))
                self.cache = (cond, un)
                self.calls += self.passes
                called = True
            cond, un = self.cache
            rows = self.model.head(cond[b, pos]) if self.fast else cond[b, pos]
            if un is not None:
                un_rows = self.model.head(un[b, pos]) if self.fast else un[b, pos]
                rows = un_rows + (self.cfg[0] + 1) * (rows - un_rows)
            return rows, called


# rows x vocabulary entries handled at once: bounds the float64 work of a step, so no [B, L, V]
# float64 tensor is ever built (at L = 1024 on LLaDA that tensor alone is about 1 GB)
_ROW_BUDGET = 1 << 23


def _by_row_chunks(px0: _Px0, x, b, pos, draw) -> tuple[list, bool]:
    """``draw(logits, rows)`` on the logits at rows ``(b, pos)``, a chunk of rows at a time.

    ``rows`` is the chunk's slice of ``b``/``pos``; ``draw`` returns a tuple of per-row tensors
    (or None), concatenated over the chunks.  Every draw is per row, so chunking never changes a sample.
    """
    outs, called, lo = [], False, 0
    chunk = max(1, _ROW_BUDGET // px0.model.vocab_size)    # vocab_size is the logits' width (protocol)
    while lo < b.numel():
        rows = slice(lo, lo + chunk)
        logits, c = px0.logits_at(x, b[rows], pos[rows])
        called |= c
        outs.append(draw(logits, rows))
        lo = rows.stop
    return [None if parts[0] is None else torch.cat(parts) for parts in zip(*outs)], called


def _draw_tokens(logits, mask_id, nucleus_p, u, topk, temperature=1.0):
    """Draw a token per row: SUBS, nucleus, float64 inverse CDF.  Returns token, its prob, top-k."""
    p = subs_probs(logits, mask_id)
    q = nucleus(p if temperature == 1.0 else subs_probs(logits, mask_id, temperature), nucleus_p)
    token = sample_rows(q, u)
    # the prob recorded (and used by ReMDM-conf) is the post-nucleus p(x0), as upstream
    pq = nucleus(p, nucleus_p) if temperature != 1.0 else q
    prob = pq.gather(-1, token[:, None]).squeeze(-1)
    if topk:
        cp, ci = torch.topk(p, min(topk, p.shape[-1]), dim=-1)
    else:
        cp, ci = p.new_zeros((p.shape[0], 0)), torch.zeros((p.shape[0], 0), dtype=torch.long, device=p.device)
    return token, prob, ci, cp


# ---------------------------------------------------------------------------- ranked samplers
class _RowUniforms:
    """Counter-based uniforms at the N rows ``(b, position)`` a ranked sampler draws at."""

    def __init__(self, seed, sample_list, step, b, counter):
        self.seed, self.samples, self.step, self.b, self.counter = seed, sample_list, step, b, counter

    def one(self, purpose: int) -> torch.Tensor:
        """One float64 uniform per row."""
        return rng.uniforms_at(self.seed, self.samples, self.step, purpose, self.b, self.counter)

    def race(self, width: int) -> torch.Tensor:
        """``[N, width]`` float64 uniforms, one per (row, vocabulary entry): the exponential race."""
        v = torch.arange(width, device=self.b.device)
        flat = (self.counter[:, None] * width + v).reshape(-1)
        u = rng.uniforms_at(self.seed, self.samples, self.step, RACE, self.b.repeat_interleave(width), flat)
        return u.view(-1, width)


def _draw_ranked(sampler, px0: _Px0, x, b, pos, counters, seed, sample_list, step, mask_id, topk):
    """The sampler's token and confidence at rows (b, pos); top-k of p(x0) for the record."""
    def draw(logits, rows):
        tok, conf = sampler.draw(logits, mask_id, _RowUniforms(seed, sample_list, step, b[rows], counters[pos[rows]]))
        if not topk:
            return tok, conf.double(), None, None
        cp, ci = torch.topk(subs_probs(logits, mask_id), min(topk, logits.shape[-1]), dim=-1)
        return tok, conf.double(), ci, cp

    (tok, conf, ci, cp), called = _by_row_chunks(px0, x, b, pos, draw)
    return tok, conf, ci, cp, called


def _ranked_step(model, sampler, st, x, fixed, token_prob, sample_ids, sample_list, seed, rec, px0,
                 num_steps, gen_start, counters) -> tuple[int, int, bool, str]:
    """One step of a ranked sampler (:mod:`explorer.samplers.ranked`): remask, draw, select, commit.

    Returns (tokens decoded, tokens remasked, whether the model was called, the step's phase:
    ``"remask"`` in a remasking window, the grid's label otherwise)."""
    mask_id = model.mask_id
    B, L = x.shape
    device = x.device
    positions = counters + gen_start
    masked = x == mask_id
    plan = sampler.plan(st, masked, gen_start, L - gen_start, num_steps)
    window = (positions >= plan.start) & (positions < plan.end)
    n_re = n_un = 0
    called = False
    if plan.n_remask:   # §4.3 step 3a: lowest confidence cached at decode time, decoded in this block
        pool = ~masked & ~fixed & window & ~token_prob.isnan()
        # ranked on the float32 values the trace keeps, so a resumed branch replays the same choice
        chosen = top_n(token_prob, pool, torch.full((B,), plan.n_remask, device=device), largest=False)
        rb, rpos = chosen.nonzero(as_tuple=True)
        if rb.numel():
            cached = token_prob[rb, rpos]
            one = torch.ones_like(cached)
            rec.add(sample_ids, st.step, rb, rpos, 1, x[rb, rpos], cached, one, one * float("nan"), 1)
            x[chosen] = mask_id
            token_prob[chosen] = float("nan")
            n_re = int(rb.numel())
            masked = x == mask_id
            px0.invalidate()
    eligible = masked & window

    def uniforms(purpose):
        return rng.uniforms(seed, sample_list, st.step, purpose, counters)

    if not sampler.needs_confidence:           # decided by coins: draw tokens only where they land
        eligible = sampler.select(None, eligible, plan, st, uniforms)
    b, pos = eligible.nonzero(as_tuple=True)
    if b.numel():
        tok, conf, ci, cp, called = _draw_ranked(sampler, px0, x, b, pos, counters, seed, sample_list,
                                                 st.step, mask_id, rec.topk)
        px0.nfe += eligible.any(1) * px0.passes
        if sampler.needs_confidence:
            score = torch.full((B, L), -torch.inf, dtype=torch.float64, device=device)
            score[b, pos] = conf
            keep = sampler.select(score, eligible, plan, st, uniforms)[b, pos]
            b, pos, tok, conf = b[keep], pos[keep], tok[keep], conf[keep]
            if ci is not None:
                ci, cp = ci[keep], cp[keep]
            p_tr, reason = torch.ones_like(conf), 1
        else:
            p_tr, reason = torch.full_like(conf, plan.p_unmask), 0
        prob = sampler.recorded_prob(conf)
        rec.add(sample_ids, st.step, b, pos, 0, tok, prob, p_tr, torch.zeros_like(conf), reason, ci, cp)
        x[b, pos] = tok
        token_prob[b, pos] = prob.to(token_prob.dtype)
        n_un = int(b.numel())
    return n_un, n_re, called, ("remask" if plan.n_remask else st.phase)


# ---------------------------------------------------------------------------- the loop
class _Live:
    """Calls the ``on_step`` hook with copies of what changed (nothing when there is no hook)."""

    def __init__(self, hook, steps_total: int):
        self.hook, self.steps_total, self.done, self.calls = hook, steps_total, 0, 0
        self.t0 = time.perf_counter()

    def __call__(self, st_step: int, phase: str, sample_ids, before, x, mask_id, calls: int, grid_step=True):
        self.done += grid_step
        if self.hook is None:
            return
        x_cpu = x.detach().cpu().clone()
        prev = before.cpu()
        changed = x_cpu != prev
        self.hook(StepUpdate(step=st_step, phase=phase, samples=sample_ids.detach().cpu().clone(), x=x_cpu,
                             unmasked=(changed & (x_cpu != mask_id)).nonzero(),
                             remasked=(changed & (x_cpu == mask_id)).nonzero(),
                             steps_done=self.done, steps_total=self.steps_total, model_calls=self.calls + calls,
                             elapsed=time.perf_counter() - self.t0))


def _run_chunk(model, sampler: Sampler, grid: list[StepTimes], x, fixed, token_prob, sample_ids,
               seed, rec: _Recorder, step_rows: dict, px0: _Px0, bar, num_steps: int,
               gen_start: int = 0, rng_ids=None, live=None) -> None:
    """Run ``grid`` on one batch.  Mutates x / token_prob in place; px0 counts model calls.

    ``sample_ids`` are the rows' sample numbers in the trace; ``rng_ids`` the sample indices of
    their random streams (default: the same).  The generated part starts at ``gen_start``; random
    numbers are counted from there, so a left-padded prompt draws what the unpadded one draws.
    """
    mask_id = model.mask_id
    B, L = x.shape
    device = x.device
    positions = torch.arange(L, device=device)
    counters = positions - gen_start
    ordering = sampler.kind == "ordering"
    ranked = sampler.kind == "ranked"
    sample_list = (sample_ids if rng_ids is None else rng_ids).tolist()

    for st in grid:
        t0 = time.perf_counter()
        before = x.clone() if live is not None and live.hook is not None else x
        phase = st.phase
        masked = x == mask_id
        state = SamplerState(x=x, masked=masked, token_prob=token_prob, fixed=fixed, step=st)
        called = False
        n_un = n_re = 0

        if ordering:
            start, end, left = sampler.block_of_step(st.step, num_steps, L - gen_start)
            start, end = start + gen_start, end + gen_start
            in_block = (positions >= start) & (positions < end)
            eligible = masked & in_block
            b, pos = eligible.nonzero(as_tuple=True)
            if b.numel():
                px0.nfe += eligible.any(1) * px0.passes
                u = rng.uniforms_at(seed, sample_list, st.step, rng.ORDER, b, pos - gen_start)
                (tok, prob, ci, cp), called = _by_row_chunks(px0, x, b, pos, lambda lg, rows: _draw_tokens(
                    lg, mask_id, sampler.nucleus_p, u[rows], rec.topk, temperature=sampler.temperature))
                conf = torch.zeros(B, L, dtype=torch.float64, device=device)
                cand = torch.full((B, L), -1, dtype=torch.long, device=device)
                score = prob.double() if sampler.order == "confidence" else \
                    rng.uniforms_at(seed, sample_list, st.step, rng.RANK, b, pos - gen_start)
                conf[b, pos], cand[b, pos] = score, tok
                commit = sampler.commit(conf, eligible, left)
                keep = commit[b, pos]
                b, pos, tok, prob, ci, cp = b[keep], pos[keep], tok[keep], prob[keep], ci[keep], cp[keep]
                x[b, pos] = tok
                token_prob[b, pos] = prob.float()
                one = torch.ones_like(prob)
                rec.add(sample_ids, st.step, b, pos, 0, tok, prob, one, torch.zeros_like(prob), 1, ci, cp)
                n_un = int(b.numel())
            sigma_rec = float("nan")
        elif ranked:
            n_un, n_re, called, phase = _ranked_step(model, sampler, st, x, fixed, token_prob, sample_ids, sample_list,
                                              seed, rec, px0, num_steps, gen_start, counters)
            sigma_rec = float("nan")
        else:
            r = sampler.rates(st, state)
            unmask_p = r.unmask if isinstance(r.unmask, torch.Tensor) else torch.full((B, L), float(r.unmask), dtype=torch.float64, device=device)
            remask_p = r.remask if isinstance(r.remask, torch.Tensor) else torch.full((B, L), float(r.remask), dtype=torch.float64, device=device)
            unmask_p, remask_p = unmask_p.to(device, torch.float64), remask_p.to(device, torch.float64)
            allowed = sampler.remaskable_mask(state)
            if allowed is not None:   # selective remasking: elsewhere plain MDLM on the same schedule
                mdlm_u = min(1.0, max(0.0, (st.alpha_s - st.alpha_t) / (1.0 - st.alpha_t)))
                unmask_p = torch.where(allowed, unmask_p, torch.full_like(unmask_p, mdlm_u))
                remask_p = torch.where(allowed, remask_p, torch.zeros_like(remask_p))
            remask_p = torch.where(fixed, torch.zeros_like(remask_p), remask_p)
            u_un = rng.uniforms(seed, sample_list, st.step, rng.UNMASK, counters)
            u_re = rng.uniforms(seed, sample_list, st.step, rng.REMASK, counters)
            unmask = masked & (u_un < unmask_p)
            remask = ~masked & ~fixed & (u_re < remask_p)

            # compute everything first, then change the state and record it together, so an
            # interrupt (Ctrl-C) can never leave events that the state does not show
            if unmask.any():
                b, pos = unmask.nonzero(as_tuple=True)
                px0.nfe += unmask.any(1) * px0.passes
                u = rng.uniforms_at(seed, sample_list, st.step, rng.TOKEN, b, pos - gen_start)
                (tok, prob, ci, cp), called = _by_row_chunks(px0, x, b, pos, lambda lg, rows: _draw_tokens(
                    lg, mask_id, sampler.nucleus_p, u[rows], rec.topk))
                n_un = int(b.numel())
            if remask.any():
                rb, rpos = remask.nonzero(as_tuple=True)
                rec.add(sample_ids, st.step, rb, rpos, 1, x[rb, rpos], token_prob[rb, rpos],
                        remask_p[rb, rpos], remask_p[rb, rpos], 0)
                n_re = int(rb.numel())
                x[remask] = mask_id
                token_prob[remask] = float("nan")
            if n_un:
                rec.add(sample_ids, st.step, b, pos, 0, tok, prob, unmask_p[b, pos], remask_p[b, pos], 0, ci, cp)
                x[b, pos] = tok
                token_prob[b, pos] = prob.float()
            sigma_rec = r.sigma
        if n_un or n_re:
            px0.invalidate()

        row = step_rows.setdefault(st.step, {
            "step": st.step, "t": st.t, "s": st.s, "alpha_t": st.alpha_t, "alpha_s": st.alpha_s,
            "sigma": sigma_rec, "phase": phase, "model_called": False, "n_masked": 0,
            "n_unmasked": 0, "n_remasked": 0, "seconds": 0.0})
        row["model_called"] |= called
        row["n_masked"] += int((x == mask_id).sum()) if bar is not None or rec.record else 0
        row["n_unmasked"] += n_un
        row["n_remasked"] += n_re
        row["seconds"] += time.perf_counter() - t0
        if bar is not None:
            bar.update(1)
        if live is not None:
            live(st.step, phase, sample_ids, before, x, mask_id, px0.calls)

    # §1.8: fill what is still masked greedily (argmax of p(x0); the mask can never win)
    t0 = time.perf_counter()
    masked = x == mask_id
    if masked.any():
        before = x.clone() if live is not None and live.hook is not None else x
        b, pos = masked.nonzero(as_tuple=True)
        px0.nfe += masked.any(1) * px0.passes

        def greedy(logits, rows):
            p = subs_probs(logits, mask_id)
            prob, tok = p.max(-1)
            if not rec.topk:
                return prob, tok, None, None
            cp, ci = torch.topk(p, min(rec.topk, p.shape[-1]), dim=-1)
            return prob, tok, ci, cp

        (prob, tok, ci, cp), called = _by_row_chunks(px0, x, b, pos, greedy)
        last = grid[-1]
        rec.add(sample_ids, last.step + 1, b, pos, 0, tok, prob, torch.ones_like(prob), torch.zeros_like(prob), 2, ci, cp)
        x[b, pos] = tok
        token_prob[b, pos] = prob.float()
        row = step_rows.setdefault(last.step + 1, {
            "step": last.step + 1, "t": last.s, "s": 0.0, "alpha_t": last.alpha_s, "alpha_s": 1.0,
            "sigma": 0.0, "phase": "final_argmax", "model_called": False, "n_masked": 0,
            "n_unmasked": 0, "n_remasked": 0, "seconds": 0.0})
        row["model_called"] |= called
        row["n_unmasked"] += int(b.numel())
        row["seconds"] += time.perf_counter() - t0
        if live is not None:
            live(last.step + 1, "final_argmax", sample_ids, before, x, mask_id, px0.calls, grid_step=False)


def _versions() -> dict:
    out = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
           "pandas": pd.__version__}
    try:
        from importlib.metadata import version
        out["remdm-explorer"] = version("remdm-explorer")
    except Exception:  # not installed as a distribution
        out["remdm-explorer"] = "source"
    return out


def _loop(model, sampler, grid, steps, x0, fixed, token_prob0, seed, sample_offset, device, batch_size,
          record, progress, topk, fast, meta_extra, first_step=0, *, rng_ids=None, pad=None, gen_start=0,
          on_step=None):
    """Run ``grid`` over all rows in batches and assemble the Trace.

    Variable-length canvases (prompted LLaDA / Dream) add: ``rng_ids`` (LongTensor[N], the sample
    index of each row's random streams), ``pad`` (BoolTensor[N, L], left padding) and ``gen_start``.
    """
    N, L = x0.shape
    batch_size = batch_size or N
    rec = _Recorder(record=record, topk=topk)
    step_rows: dict[int, dict] = {}
    calls = 0
    nfe = torch.zeros(N, dtype=torch.long)
    complete = True
    final = x0.clone()
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(grid) * math.ceil(N / batch_size), desc=f"{sampler.name} T={steps}", leave=False)
    done = 0
    t_start = time.perf_counter()
    if on_step is not None and not callable(on_step):
        raise TypeError(f"on_step must be a function of one StepUpdate, got {type(on_step).__name__}.")
    live = _Live(on_step, len(grid) * math.ceil(N / batch_size))
    try:
        for lo in range(0, N, batch_size):
            hi = min(N, lo + batch_size)
            x = x0[lo:hi].to(device).clone()
            tp = token_prob0[lo:hi].to(device).clone()
            fx = fixed[lo:hi].to(device)
            ids = torch.arange(sample_offset + lo, sample_offset + hi, device=device)
            pd_ = None if pad is None else pad[lo:hi].to(device)
            px0 = _Px0(model, fast, hi - lo, device, pad=pd_, cfg=(getattr(sampler, "cfg_scale", 0.0), fx))
            try:
                _run_chunk(model, sampler, grid, x, fx, tp, ids, seed, rec, step_rows, px0, bar, steps,
                           gen_start=gen_start, rng_ids=None if rng_ids is None else rng_ids[lo:hi], live=live)
            finally:
                final[lo:hi] = x.cpu()
                calls += px0.calls
                live.calls = calls
                nfe[lo:hi] = px0.nfe.cpu()
            done = hi
    except (KeyboardInterrupt, StopGeneration):
        complete = False
        warnings.warn(f"generation interrupted: returning the partial trace ({done} of {N} samples finished; "
                      "the last batch stops mid-way). trace.complete is False.", stacklevel=3)
    finally:
        if bar is not None:
            bar.close()
    steps_df = pd.DataFrame([step_rows[k] for k in sorted(step_rows)], columns=list(STEP_COLUMNS))
    events = rec.arrays()
    last_step = max([first_step] + ([int(steps_df["step"].max())] if len(steps_df) else [])
                    + ([int(events["step"].max())] if len(events["step"]) else []))
    meta = {
        "run_id": uuid.uuid4().hex, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(),
        "sampler": sampler.config, "steps": steps, "grid_steps": len(grid), "seed": seed,
        "num_samples": N, "batch_size": batch_size, "seq_len": L, "vocab_size": model.vocab_size,
        "mask_id": model.mask_id, "model": model_identity(model), "device": str(device),
        "versions": _versions(), "record": record, "topk": topk, "fast": fast and has_split(model),
        "first_step": first_step, "last_step": max(last_step, first_step), "model_calls": calls,
        "nfe": nfe.tolist(),
        "complete": complete, "wall_seconds": time.perf_counter() - t_start, "parent": None,
    }
    meta.update(meta_extra)
    return Trace(initial=x0, fixed=fixed, events=events, steps=steps_df, meta=meta, final=final,
                 tokenizer=getattr(model, "tokenizer", None))


def _device(model, device):
    if device is None:
        return model_device(model)
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for but no CUDA GPU is available; use device='cpu'.")
    if hasattr(model, "to"):
        model.to(device)   # the models here move in place (nn.Module, MDLMDenoiser, StubDenoiser)
    return device


def generate(model, sampler: Sampler, steps: int, num_samples: int = 1, seed: int = 0, prompt=None,
             device=None, batch_size: int | None = None, record: bool = True, progress: bool = True,
             topk: int = 3, fast: bool = True, gen_length: int | None = None, on_step=None) -> Trace:
    """Sample ``num_samples`` sequences with ``sampler`` in ``steps`` steps and record every change.

    Fixed-length models (``seq_len`` an int): ``prompt`` is text or token ids (a prefix),
    ``{position: token}`` or a length-L tensor with the mask id at free positions.

    Variable-length models (LLaDA, Dream: ``seq_len is None``): the canvas is the prompt followed
    by ``gen_length`` masks.  ``prompt`` is text, token ids, chat messages
    (``[{"role": "user", "content": ...}]``, rendered with the chat template) or a list of those;
    prompts of different lengths are left-padded (:mod:`explorer.prompts`).  Rows are prompt-major
    (prompt p, sample s is row ``p * num_samples + s``) and row (p, s) draws from the streams of
    sample ``s``: it is the same whether prompt p runs alone or with others.  ``trace.texts``
    gives the generated part cut at EOS / end of turn; ``trace.decode(trace.final)`` the canvas.

    Prompt tokens are never remasked.  Sample ``i`` depends only on ``(seed, i)``: ``batch_size``
    changes memory use, never the samples.  Ctrl-C returns the partial trace
    (``trace.complete is False``).  ``fast=False`` computes full logits (same samples).

    ``on_step(update)`` is called after every step of every batch and after the final pass with a
    :class:`StepUpdate` (CPU copies: the hook cannot change the run); raising
    :class:`StopGeneration` in it ends the run like Ctrl-C.
    """
    _check_common(model, sampler, steps, num_samples, seed, batch_size, topk)
    if getattr(model, "seq_len", None) is None:
        return _generate_prompted(model, sampler, steps, num_samples, seed, prompt, device, batch_size,
                                  record, progress, topk, fast, gen_length, on_step)
    if gen_length is not None:
        raise ValueError(f"gen_length is for models without a fixed length (LLaDA, Dream); this model always "
                         f"writes seq_len={model.seq_len} tokens: drop gen_length=.")
    device = _device(model, device)
    L = model.seq_len
    if sampler.kind in ("ordering", "ranked"):     # a ranked sampler's blocks then span the whole canvas
        sampler.check_shape(L, steps)
    tokens, fixed = _resolve_prompt(model, prompt, L, model.mask_id)
    x0 = tokens.expand(num_samples, L).clone()
    fixed = fixed.expand(num_samples, L).clone()
    tp = torch.full((num_samples, L), float("nan"))
    grid = sampler.grid(steps)
    return _loop(model, sampler, grid, steps, x0, fixed, tp, seed, 0, device, batch_size, record, progress,
                 topk, fast, {"prompt": None if prompt is None else tokens.tolist()}, on_step=on_step)


def _generate_prompted(model, sampler, steps, num_samples, seed, prompt, device, batch_size, record,
                       progress, topk, fast, gen_length, on_step=None) -> Trace:
    """generate() for a variable-length model: prompts + gen_length masks, left-padded (reference §3, §4)."""
    canvas = prompts.build_canvas(model, prompt, gen_length)
    if sampler.kind in ("ordering", "ranked"):
        sampler.check_shape(canvas.gen_length, steps)
    device = _device(model, device)
    P, L = canvas.tokens.shape
    rows = torch.arange(P).repeat_interleave(num_samples)
    x0 = canvas.tokens[rows].clone()
    fixed = canvas.fixed[rows].clone()
    pad = canvas.pad[rows].clone()
    tp = torch.full((P * num_samples, L), float("nan"))
    rng_ids = torch.arange(num_samples).repeat(P)
    meta = {"prompt": canvas.tokens.tolist(), "num_prompts": P, "samples_per_prompt": num_samples,
            **canvas.meta(prompts.stop_ids(model))}
    return _loop(model, sampler, sampler.grid(steps), steps, x0, fixed, tp, seed, 0, device, batch_size, record,
                 progress, topk, fast, meta, rng_ids=rng_ids, pad=pad if pad.any() else None, on_step=on_step,
                 gen_start=canvas.gen_start)


def _positions_mask(spec, shape, what: str) -> torch.Tensor:
    N, L = shape
    if spec is None:
        return torch.zeros(N, L, dtype=torch.bool)
    t = torch.as_tensor(spec)
    if t.dtype == torch.bool:
        if t.dim() == 1 and t.numel() == L:
            return t.expand(N, L).clone()
        if tuple(t.shape) == (N, L):
            return t.clone()
        raise ValueError(f"{what} mask has shape {tuple(t.shape)}; expected [{L}] or [{N}, {L}].")
    t = t.long().flatten()
    if ((t < 0) | (t >= L)).any():
        raise ValueError(f"{what} positions {t.tolist()} must lie in [0, {L}).")
    m = torch.zeros(N, L, dtype=torch.bool)
    m[:, t] = True
    return m


def _replacements(model, replace, seq_len: int) -> dict[int, int]:
    """``{position: token id}`` from ``{position: id or single-token text}``, validated."""
    if replace is None:
        return {}
    if not isinstance(replace, dict):
        raise ValueError("replace must be a dict {position: token}, e.g. {12: 'EUR'} or {12: 431}.")
    out = {}
    for pos, tok in replace.items():
        if isinstance(pos, bool) or not isinstance(pos, (int, np.integer)) or not 0 <= pos < seq_len:
            raise ValueError(f"replace position {pos!r} must be an integer in [0, {seq_len}).")
        if isinstance(tok, str):
            tk = getattr(model, "tokenizer", None)
            tid = tk.convert_tokens_to_ids(tok) if tk is not None and hasattr(tk, "convert_tokens_to_ids") else None
            if not isinstance(tid, int) or (tid == getattr(tk, "unk_token_id", None) and tok != getattr(tk, "unk_token", None)):
                raise ValueError(f"replace token {tok!r} is not a single token of this model's vocabulary; "
                                 "pass a token id instead.")
            tok = tid
        if isinstance(tok, bool) or not isinstance(tok, (int, np.integer)) \
                or not 0 <= tok < model.vocab_size or tok == model.mask_id:
            raise ValueError(f"replace token {tok!r} at position {pos} must be a non-mask token id in "
                             f"[0, {model.vocab_size}) (mask id {model.mask_id}).")
        out[int(pos)] = int(tok)
    return out


def resume(model, trace: Trace, step: int, remask=None, pin=None, seed: int | None = None,
           sampler: Sampler | None = None, device=None, batch_size=None, progress: bool = True,
           record: bool = True, fast: bool = True, replace: dict | None = None, on_step=None) -> Trace:
    """Continue a trace from ``step`` as a *branch*, optionally editing the state first.

    ``remask``: positions (list of ints, or a boolean [L] / [N, L] mask) put back to [MASK];
    ``pin``: decoded positions frozen from now on (never remasked);
    ``replace``: ``{position: token}`` (token id or single-token text) written into every sample at
    that position *without* pinning it -- plant a mistake and watch what the sampler does with it.
    A replaced token counts as decoded with an unknown probability (nan), so a remasking sampler may
    revisit it; it cannot be combined with ``remask`` or ``pin`` at the same position.
    With no edit and the same seed the branch reproduces the parent exactly.  The branch records its
    parent and the edit.
    """
    from .samplers import from_config
    if not isinstance(trace, Trace):
        raise TypeError("resume() needs a Trace returned by explorer.generate().")
    if not trace.recorded:
        raise ValueError("this trace was generated with record=False, so its steps cannot be resumed.")
    sampler = sampler or from_config(trace.meta["sampler"])
    full_grid = sampler.grid(trace.num_steps)      # DFM's adaptive grid is longer than T
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) \
            or not trace.first_step <= step < len(full_grid):
        raise ValueError(f"step={step!r} must be an integer in [{trace.first_step}, {len(full_grid) - 1}] "
                         "(a step of the trace before its last sampler step).")
    seed = trace.meta["seed"] if seed is None else seed
    _check_common(model, sampler, trace.num_steps, trace.num_samples, seed, batch_size, trace.topk)
    prompted = "gen_start" in trace.meta      # a variable-length (LLaDA / Dream) canvas
    if model.mask_id != trace.mask_id or (model.seq_len != trace.seq_len and not
                                          (prompted and model.seq_len is None)):
        raise ValueError("this model does not match the trace (mask id or sequence length differ).")
    x = trace.state_at(step)
    tp = trace.prob_at(step).float()
    fixed = trace.fixed.clone()
    shape = x.shape
    rm = _positions_mask(remask, shape, "remask")
    pn = _positions_mask(pin, shape, "pin")
    if (rm & pn).any():
        raise ValueError("a position cannot be both remasked and pinned.")
    if (rm & fixed).any():
        raise ValueError("cannot remask prompt or pinned positions; they are fixed.")
    if (pn & (x == trace.mask_id)).any():
        raise ValueError(f"cannot pin a position that is masked at step {step}; pin decoded tokens only.")
    rp = _replacements(model, replace, trace.seq_len)
    for pos, tok in rp.items():
        if fixed[:, pos].any():
            raise ValueError(f"cannot replace position {pos}: it is a prompt or pinned position (fixed).")
        if rm[:, pos].any() or pn[:, pos].any():
            raise ValueError(f"position {pos} is both replaced and remasked/pinned; choose one edit per position.")
        x[:, pos] = tok
        tp[:, pos] = float("nan")
    x[rm] = trace.mask_id
    tp[rm] = float("nan")
    fixed |= pn
    device = _device(model, device)
    grid = [g for g in full_grid if g.step > step]
    edit = {"remask": rm.nonzero().tolist(), "pin": pn.nonzero().tolist(),
            "replace": {str(p): t for p, t in rp.items()}}
    extra, canvas = {"prompt": trace.meta.get("prompt")}, {}
    if prompted:
        m = trace.meta
        spp, gen_start = m["samples_per_prompt"], m["gen_start"]
        pad_rows = torch.tensor(m["pad_lengths"]).repeat_interleave(spp)
        pad = torch.arange(trace.seq_len)[None, :] < pad_rows[:, None]
        canvas = {"rng_ids": torch.arange(spp).repeat(m["num_prompts"]), "gen_start": gen_start,
                  "pad": pad if pad.any() else None}
        extra.update({k: m[k] for k in ("num_prompts", "samples_per_prompt", "gen_start", "gen_length",
                                        "prompt_lengths", "pad_lengths", "stop_ids")})
    branch = _loop(model, sampler, grid, trace.num_steps, x, fixed, tp, seed, 0, device, batch_size, record,
                   progress, trace.topk, fast, extra, first_step=step, on_step=on_step, **canvas)
    branch.meta["parent"] = {"run_id": trace.run_id, "step": int(step), "edit": edit}
    return branch
