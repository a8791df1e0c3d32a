"""The generation engine: one loop for every sampler, on the model's device, recording everything.

The loop (reference §1.3-§1.8, §2.1; the step protocol is :mod:`explorer.samplers.step`):

1. the engine moves the batch's read-only context to the next step of the sampler's grid;
2. the sampler's ``step(ctx)`` decides which decoded positions go back to [MASK] and which masked
   ones are written, with which tokens and why.  It asks the context for counter-based float64
   uniforms (:mod:`explorer.rng`: sample ``i`` depends only on ``(seed, i)``), for the model's
   p(x0) at the rows it draws at, and for re-scored probabilities of decoded tokens;
3. the engine computes p(x0) only where asked: the model body once per distinct state (the exact
   p(x0) cache of §1.7 -- the network is time-independent, so an unchanged state has an
   unchanged output), then the output head *only at those rows*, in chunks, so no ``[B, L, V]``
   float64 tensor is ever built; every pass is counted (``model_calls``, and ``nfe`` per sample);
4. it applies the decision -- remasks first, then writes -- records every change as an event,
   tells the ``on_step`` hook, and after the last step fills what is still masked by argmax (§1.8).

There is no branch per kind of sampler here: the ReMDM family draws by rates
(:meth:`Sampler.step <explorer.samplers.base.Sampler.step>`), the confidence-ordered baselines and
the LLaDA / Dream samplers rank (:mod:`explorer.samplers.ranked`), the correctors re-score
(:mod:`explorer.samplers.rescore`); all are one ``step(ctx)`` each.

Models without a fixed length (LLaDA, Dream: ``seq_len is None``) sample on a canvas of prompt +
``gen_length`` masks built by :mod:`explorer.prompts` (left padding passed to the model as
``pad=``); random numbers are counted from the first generated position, so a padded prompt draws
what the unpadded one draws.

Host synchronisation (GPU): finding the rows that draw is a ``nonzero`` -- one synchronisation per
step that draws, inherent in drawing only where tokens unmask.  Recording adds one more per step
that remasks (to list the remasked positions) and none when ``record=False``: the counters of
the steps table stay on the device until the run ends, and events are copied to the host once.
A decision is checked before it is applied (remasks only at decoded positions, writes only at
masked ones: one more synchronisation each); the built-in rate step builds its masks from
``ctx.masked`` / ``ctx.decoded`` and says so (``Decision.valid_by_construction``), so the ReMDM
family skips the check.

Bookkeeping per step: the random-stream keys of the whole grid are derived at once and each
purpose's uniforms are mixed for a block of steps (:meth:`_Context.uniforms`); draws are charged to
``nfe`` when it is read, and the steps table leaves as columns (the Trace builds its DataFrame on
first access), so a step of the ReMDM family costs about 40 small tensor operations beside the
model (``benchmarks/overhead.py --against REV`` measures it side by side with another commit).

``fast=False`` evaluates the full logits every time the state changes (the straightforward path)
with the same random streams, so both paths give identical samples.
"""
from __future__ import annotations

import datetime as _dt
import functools
import math
import platform
import time
import uuid
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from . import prompts, rng
from .protocol import check_denoiser, check_device, has_split, model_device, model_identity
from .samplers.base import Sampler, StepTimes, _at, as_int, check_steps
from .samplers.categorical import subs_probs, top_candidates
from .samplers.step import FINAL_ARGMAX, Decision, Write
from .trace import REASONS, STEP_COLUMNS, STEP_DTYPES, RunRecord, Trace

__all__ = ["generate", "resume", "fill_masked", "StepUpdate", "StopGeneration"]


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
    fixed: torch.Tensor        # BoolTensor[B, L]: prompt / pinned positions (never changed)
    gen_start: int             # first generated position (prompted canvases: after the prompt)


# ---------------------------------------------------------------------------- inputs
def _resolve_prompt(model, prompt, seq_len: int, mask_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens [L], fixed [L]) from a prompt: text or ids (a prefix), {position: token}, or a [L] tensor.

    A model's own fixed tokens (``model.fixed_tokens``, e.g. ``order`` at the start of each orders
    record) stay: a prefix goes after the leading ones unless it starts with them itself (the user
    typed the text from its start), and a prompt token that lands on another fixed token must be
    that token -- one that would overwrite it is refused, naming both.
    """
    tokens = torch.full((seq_len,), mask_id, dtype=torch.long)
    fixed = torch.zeros(seq_len, dtype=torch.bool)
    anchors = {int(p): int(t) for p, t in (getattr(model, "fixed_tokens", None) or {}).items()}
    for pos, tok in anchors.items():
        tokens[pos], fixed[pos] = tok, True
    if prompt is None:
        return tokens, fixed

    def to_id(tok):
        if isinstance(tok, str):
            tk = getattr(model, "tokenizer", None)
            if tk is None:
                raise ValueError("a text prompt needs a model with a tokenizer; pass token ids instead.")
            ids = tk.convert_tokens_to_ids(tok) if hasattr(tk, "convert_tokens_to_ids") else None
            unk = prompts.unknown_token(tk) if ids is not None else None
            if ids is None or (unk is not None and ids == unk[1] and tok != unk[0]):
                raise prompts.PromptError(f"{tok!r} is not a single token of this model's vocabulary.", "unknown_words")
            return int(ids)
        return int(tok)

    if isinstance(prompt, str):
        tk = getattr(model, "tokenizer", None)
        if tk is None:
            raise ValueError("a text prompt needs a model with a tokenizer; pass token ids instead.")
        prompt = prompts.text_ids(tk, prompt, add_special_tokens=False)
    if isinstance(prompt, dict):
        items = [(int(p), to_id(t)) for p, t in prompt.items()]
    else:
        ids = _prompt_ids(prompt, seq_len)
        if ids.numel() == seq_len and (ids == mask_id).any():      # a full template with masks
            items = [(i, int(t)) for i, t in enumerate(ids.tolist()) if t != mask_id]
        else:
            start = int(fixed.long().argmin()) if fixed.any() and fixed[0] else 0   # after e.g. [CLS]
            if start and ids[:start].tolist() == tokens[:start].tolist():
                start = 0                          # the prefix already holds the leading fixed tokens
            items = [(start + i, int(t)) for i, t in enumerate(ids.tolist())]
            if start + ids.numel() > seq_len:
                over = start + ids.numel() - seq_len
                raise prompts.PromptError(f"the prompt is {ids.numel()} tokens but the sequence holds {seq_len - start}"
                                          + (f" after its {start} leading fixed token(s)" if start else "")
                                          + f"; shorten it by {over} token(s).", "too_long", over=over)
    for pos, tok in items:
        if not 0 <= pos < seq_len:
            raise ValueError(f"prompt position {pos} is outside the sequence (length {seq_len}).")
        if not 0 <= tok < model.vocab_size or tok == mask_id:
            raise ValueError(f"prompt token id {tok} at position {pos} is not a valid non-mask token "
                             f"(vocabulary size {model.vocab_size}, mask id {mask_id}).")
        if pos in anchors and tok != anchors[pos]:
            raise ValueError(f"the prompt puts {_named(model, tok)} at position {pos}, where the model always has its "
                             f"fixed {_named(model, anchors[pos])}; shorten the prompt to end before position {pos}, "
                             "or write that token there (model.fixed_tokens lists them).")
        tokens[pos], fixed[pos] = tok, True
    return tokens, fixed


def _prompt_ids(prompt, seq_len: int) -> torch.Tensor:
    """LongTensor[n] of a fixed-length model's prompt given as token ids: a list, a 1-D tensor or
    array, or a [1, n] one (as a tokenizer returns it).  A batch of prompts, float ids or anything
    else is refused: it would be silently flattened, truncated, or fail inside torch."""
    accepted = (f"a fixed-length model takes one prompt: text, token ids (a prefix), {{position: token}} or a "
                f"length-{seq_len} template with the mask id at free positions")
    try:
        ids = torch.as_tensor(prompt)
    except (TypeError, ValueError, RuntimeError):      # e.g. a list of words, an arbitrary object
        raise TypeError(f"prompt={prompt!r:.80} is not a prompt; {accepted}.") from None
    if ids.dtype == torch.bool or (ids.numel() and (ids.dtype.is_floating_point or ids.dtype.is_complex)):
        raise TypeError(f"prompt token ids must be integers, got {ids.dtype}; {accepted}.")
    if ids.dim() > 2 or (ids.dim() == 2 and ids.shape[0] != 1):
        raise ValueError(f"prompt has shape {list(ids.shape)}, a batch of prompts; {accepted}. Generate once per "
                         "prompt (only models without a fixed length, LLaDA and Dream, take a batch).")
    return ids.long().flatten()


def _named(model, tok: int) -> str:
    """``token id 8 ('germany')`` where the model has a tokenizer that can say the word."""
    tk = getattr(model, "tokenizer", None)
    try:
        word = tk.convert_ids_to_tokens(int(tok)) if tk is not None else None
    except Exception:       # a tokenizer without the method, or one that refuses the id
        word = None
    return f"token id {tok}" + (f" ({word!r})" if isinstance(word, str) else "")


def _check_common(model, sampler, steps, num_samples, seed, batch_size, topk):
    """The settings every run shares, checked, as Python ints: (steps, num_samples, seed, batch_size, topk)."""
    check_denoiser(model)
    if not isinstance(sampler, Sampler):
        raise TypeError(f"sampler must be an explorer.samplers.Sampler (e.g. ReMDMLoop()), got "
                        f"{type(sampler).__name__}; build one by name with explorer.samplers.by_name().")
    steps, num_samples = check_steps(steps), as_int("num_samples", num_samples)
    seed, topk = as_int("seed", seed, 0), as_int("topk", topk, 0)
    if seed > rng.MAX_SEED:
        raise ValueError(f"seed={seed} is above 2**63 - 1; choose a seed in 0 .. 2**63 - 1.")
    if topk > model.vocab_size:
        raise ValueError(f"topk={topk} is more candidates than the vocabulary has ({model.vocab_size} tokens); "
                         f"choose topk <= {model.vocab_size} (0 records none).")
    if batch_size is not None:
        batch_size = as_int("batch_size", batch_size, must="a positive integer or None")
    return steps, num_samples, seed, batch_size, topk


# ---------------------------------------------------------------------------- recording
_REASON_CODES = {name: i for i, name in enumerate(REASONS)}


class _Recorder:
    """Events as a few tensors per step, kept on the model's device and converted once at the end
    (no host copy per step: on a GPU, recording costs no synchronisation beyond finding the rows)."""

    def __init__(self, record: bool, topk: int):
        self.record, self.topk = record, topk
        self.blocks: list[tuple[int, int, int, int]] = []     # (step, kind, reason, n) per add
        self.ids: list[tuple] = []                             # (the batch's sample ids, row, position, token)
        self.floats: list[tuple] = []                          # (prob, p_transition, sigma)
        self.cands: list[tuple | None] = []

    def add(self, sample_ids, step, b, pos, kind, token, prob, p_tr, sigma, reason: str, cand_ids=None,
            cand_probs=None):
        n = b.numel()
        if not self.record or n == 0:
            return
        self.blocks.append((step, kind, _REASON_CODES[reason], n))
        self.ids.append((sample_ids, b, pos, token))           # no tensor work per step: see arrays()
        self.floats.append((prob, p_tr, sigma))
        self.cands.append(None if cand_ids is None or not self.topk else (cand_ids, cand_probs))

    def arrays(self) -> dict[str, np.ndarray]:
        """The events as columns (numpy), each tensor list concatenated and copied to the host once."""
        def host(parts: list) -> np.ndarray:
            """The tensors of ``parts`` concatenated on their device and copied to the host once."""
            ts = [v for v in parts if isinstance(v, torch.Tensor) and v.dim()]     # each [n]
            return torch.cat(ts).float().cpu().numpy() if ts else np.zeros(0, np.float32)

        def column(parts, n_of):
            """One float32 column from per-add parts, each a tensor of its n values or one scalar."""
            is_tensor = np.array([isinstance(v, torch.Tensor) and v.dim() > 0 for v in parts], bool)
            out = np.repeat(np.array([np.nan if t else float(v) for v, t in zip(parts, is_tensor)], np.float32), n_of)
            if is_tensor.any():
                out[np.repeat(is_tensor, n_of)] = host(parts)
            return out
        n_of = np.array([blk[3] for blk in self.blocks], np.int64)
        out = {}
        if self.blocks:
            rows, pos, tok = (torch.cat([i[j] for i in self.ids]).cpu().numpy().astype(np.int32) for j in (1, 2, 3))
            table, offset, first = [], {}, []      # each batch's sample ids copied once, stacked in `table`
            for sids, *_ in self.ids:
                if id(sids) not in offset:
                    offset[id(sids)] = sum(len(t) for t in table)
                    table.append(sids.cpu().numpy().astype(np.int32))
                first.append(offset[id(sids)])
            out["sample"] = np.concatenate(table)[np.repeat(np.array(first, np.int64), n_of) + rows]
            out["position"], out["token_id"] = pos, tok
        else:
            out["sample"] = out["position"] = out["token_id"] = np.zeros(0, np.int32)
        out["step"] = np.repeat(np.array([blk[0] for blk in self.blocks], np.int32), n_of)
        out["kind"] = np.repeat(np.array([blk[1] for blk in self.blocks], np.int8), n_of)
        out["reason"] = np.repeat(np.array([blk[2] for blk in self.blocks], np.int8), n_of)
        for j, name in enumerate(("prob", "p_transition", "sigma")):
            out[name] = column([f[j] for f in self.floats], n_of)
        k = self.topk
        has = np.repeat(np.array([c is not None for c in self.cands], bool), n_of)   # per event
        out["cand_row"] = np.full(len(has), -1, np.int32)
        out["cand_row"][has] = np.arange(int(has.sum()), dtype=np.int32)     # kept rows, in event order
        kept = [c for c in self.cands if c is not None]
        out["cand_ids"] = (torch.cat([c[0] for c in kept]).cpu().numpy().astype(np.int32).reshape(-1, k) if kept
                           else np.zeros((0, k), np.int32))
        out["cand_probs"] = (torch.cat([c[1] for c in kept]).float().cpu().numpy().reshape(-1, k) if kept
                             else np.zeros((0, k), np.float32))
        return out


# ---------------------------------------------------------------------------- the model's outputs
# rows x vocabulary entries handled at once: bounds the float64 work of a step, so no [B, L, V]
# float64 tensor is ever built (at L = 1024 on LLaDA that tensor alone is about 1 GB)
_ROW_BUDGET = 1 << 23
# [B, L] uniforms mixed at once for a block of steps (entries); see _Context.uniforms
_UNIFORM_BUDGET = 1 << 16


def _rows(h: torch.Tensor, b: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """``h[b, pos]``: the rows of a ``[B, L, H]`` hidden state (or logits) at the given positions.
    For wide rows one ``index_select`` over the flattened ``B * L`` axis (on the CPU about 4x
    faster than advanced indexing at H = 4096, 1.5x at 768; slower below ~256, where the index
    arithmetic costs more than it saves)."""
    if h.dim() == 3 and h.shape[-1] >= 256 and h.is_contiguous():
        return h.flatten(0, 1).index_select(0, b * h.shape[1] + pos)
    return h[b, pos]


class _Px0:
    """The model's output for a state, computed at most once per distinct state (§1.7).

    The network is time-independent, so an unchanged state has an unchanged output: the engine
    calls :meth:`invalidate` whenever it changes the state in place, and a sampler asking about
    another state (remask-then-draw) gets a fresh forward.  ``pad`` (BoolTensor[B, L], left
    padding) is passed only when some row is padded, so fixed-length models are called as always.
    ``cfg = (scale, prompt)``: classifier-free guidance (LLaDA §4.1 item 1), a second pass with the
    prompt masked, combined as un + (scale + 1)(cond - un) at the selected rows only.
    """

    def __init__(self, model, fast: bool, pad=None, cfg=None):
        self.model, self.fast = model, fast and has_split(model)
        self.pad = pad if pad is not None and bool(pad.any()) else None
        self.cfg = cfg if cfg is not None and cfg[0] > 0 else None
        self.passes = 2 if self.cfg else 1     # model calls per evaluated state
        self.cache, self.cache_for = None, None
        self.calls = 0          # batched forward calls
        self.called = False     # whether this step ran the model (reset by the engine)

    def invalidate(self):
        self.cache, self.cache_for = None, None

    def forward(self, z, rows=None):
        """Body (fast path) or logits of ``z``; ``rows`` selects the padding rows for a sub-batch."""
        pad = self.pad if self.pad is None or rows is None else self.pad[rows]
        kw = {} if pad is None else {"pad": pad}
        return self.model.body(z, **kw) if self.fast else self.model.logits(z, **kw)

    def head(self, h):
        return self.model.head(h) if self.fast else h

    def logits_at(self, z: torch.Tensor, b: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():      # the engine's loops already run without autograd (one switch per batch)
            with torch.no_grad():
                return self.logits_at(z, b, pos)
        if self.cache is None or self.cache_for is not z:
            cond = self.forward(z)
            un = None
            if self.cfg:
                un = self.forward(torch.where(self.cfg[1], torch.full_like(z, self.model.mask_id), z))
            self.cache, self.cache_for = (cond, un), z
            self.calls += self.passes
            self.called = True
        cond, un = self.cache
        rows = self.head(_rows(cond, b, pos))
        if un is not None:
            un_rows = self.head(_rows(un, b, pos))
            rows = un_rows + (self.cfg[0] + 1) * (rows - un_rows)
        return rows


class _RowUniforms:
    """Counter-based uniforms at the N rows ``(b, counter)`` a ranked sampler draws at.

    ``keys(purpose)`` (optional) gives the batch's stream keys of this step, cached by the context.
    """

    def __init__(self, seed, sample_list, step, b, counter, keys=None):
        self.seed, self.samples, self.step, self.b, self.counter = seed, sample_list, step, b, counter
        self.keys = keys or (lambda purpose: rng.stream_keys(seed, sample_list, step, purpose, device=b.device))

    def __getitem__(self, rows: slice) -> "_RowUniforms":
        return _RowUniforms(self.seed, self.samples, self.step, self.b[rows], self.counter[rows], self.keys)

    def one(self, purpose: int) -> torch.Tensor:
        """One float64 uniform per row."""
        return rng.uniforms_from(self.keys(purpose)[self.b], rng.counter_term(self.counter))

    def race(self, width: int) -> torch.Tensor:
        """``[N, width]`` float64 uniforms, one per (row, vocabulary entry): the exponential race."""
        flat = self.counter[:, None] * width + torch.arange(width, device=self.b.device)
        return rng.uniforms_from(self.keys(rng.RACE)[self.b][:, None], rng.counter_term(flat))


class _Context:
    """The read-only view a sampler's ``step(ctx)`` gets (protocol: :mod:`explorer.samplers.step`).

    One per batch; :meth:`begin` moves it to the next step.  It also serves as the ``state``
    argument of ``rates(st, state)`` and of ``remaskable`` functions (same attribute names).
    """

    def __init__(self, model, x, fixed, token_prob, sample_ids, rng_list, seed, gen_start, num_steps, topk,
                 px0: _Px0):
        self.x, self.fixed, self.token_prob = x, fixed, token_prob
        self.mask_id, self.vocab_size = model.mask_id, model.vocab_size
        B, L = x.shape
        self.positions = torch.arange(L, device=x.device)
        self.counters = self.positions - gen_start
        self.gen_start, self.gen_length = gen_start, L - gen_start
        self.num_steps, self.topk, self.px0 = num_steps, topk, px0
        self.sample_ids, self.rng_list, self.seed = sample_ids, rng_list, seed
        self._nfe = torch.zeros(B, dtype=torch.long, device=x.device)
        self._drawn: list[tuple] = []   # (rows, charged) of each draw not yet counted (see nfe)
        self._fresh = torch.ones(B, dtype=torch.bool, device=x.device)   # rows changed since their last draw
        self._prefixes = [rng.sample_prefix(seed, s) for s in rng_list]
        self._order: dict[int, int] = {}   # step number -> its row in _keys_grid (see prepare)
        self._blocks: dict[int, tuple] = {}   # purpose -> (first row, n views [B, L]) of upcoming steps
        self._term = rng.counter_term(self.counters)
        self._rescored = None      # (state, ask, groups, scores) of the last rescore
        self.memory: dict = {}     # the sampler's scratch across the steps of this batch (see samplers.step)
        self.st, self.masked = None, None
        self._masked_after = None  # x == mask_id after the last applied step (see end_step)

    # --- per step ---------------------------------------------------------------------------------
    def begin(self, st: StepTimes) -> None:
        self.st = st
        masked, self._masked_after = self._masked_after, None
        self.masked = self.x == self.mask_id if masked is None else masked
        self.px0.called = False
        if st.step not in self._order:
            self.prepare([st.step])
        self._row = self._order[st.step]
        self._decoded = None

    def changed(self, rows: torch.Tensor) -> None:
        """The engine changed these rows' state (row indices, or a BoolTensor[B]): their next draw is
        charged to their ``nfe`` (see :meth:`draw`)."""
        if rows.dtype == torch.bool:
            self._fresh |= rows
        else:
            self._fresh.index_fill_(0, rows, True)

    def end_step(self) -> torch.Tensor:
        """After the engine applied a step: the positions still masked, kept for the next
        :meth:`begin` (the state changes only through the engine); returns their count."""
        self._masked_after = self.x == self.mask_id
        return self._masked_after.sum()

    @property
    def step(self) -> StepTimes:
        return self.st

    def prepare(self, steps: list[int]) -> None:
        """Derive the random-stream keys of these steps (a run's whole grid) in one pass.

        The ``[B, L]`` uniforms of a purpose are then mixed for a block of upcoming steps at once
        (:meth:`uniforms`): on a small batch a step's cost is the number of tensor operations, not
        their size.
        """
        order = list(dict.fromkeys(steps))
        self._order = {s: i for i, s in enumerate(order)}
        self._keys_grid = rng.step_keys(self._prefixes, order, device=self.x.device)   # [S, purposes, B]
        self._blocks = {}

    def _keys(self, purpose: int) -> torch.Tensor:
        return self._keys_grid[self._row, purpose - 1]

    @property
    def decoded(self) -> torch.Tensor:
        """The positions a sampler may remask: neither masked nor fixed (computed once per step)."""
        if self._decoded is None:
            self._decoded = ~(self.masked | self.fixed)
        return self._decoded

    @property
    def nfe(self) -> torch.Tensor:
        """LongTensor[B]: each sample's evaluations so far (its NFE; see Trace.nfe): ``passes`` per draw in
        which the row has at least one position and a state that changed since its last charged draw
        (alone, the row's unchanged state would be served by the cache, §1.7), plus its re-scoring
        passes.  The draws are counted here, all at once, rather than by tensor operations in every step."""
        if self._drawn:
            B, D, device = self._nfe.shape[0], len(self._drawn), self._nfe.device
            rows = torch.cat([b for b, _ in self._drawn])
            charged = torch.cat([c for _, c in self._drawn])
            sizes = torch.tensor([b.numel() for b, _ in self._drawn], device=device)
            draw = torch.repeat_interleave(torch.arange(D, device=device), sizes, output_size=rows.numel())
            # every entry of one row in one draw has the same ``charged``, so the duplicates agree
            hit = torch.zeros(D * B, dtype=torch.bool, device=device).index_put_((draw * B + rows,), charged)
            self._nfe += hit.view(D, B).sum(0) * self.px0.passes
            self._drawn.clear()
        return self._nfe

    def _block(self, purpose: int) -> torch.Tensor | None:
        """This step's ``[B, L]`` uniforms of ``purpose`` if its block holds them."""
        blk = self._blocks.get(purpose)
        if blk is not None and 0 <= self._row - blk[0] < len(blk[1]):
            return blk[1][self._row - blk[0]]
        return None

    def uniforms(self, *purposes: int):
        """``[B, L]`` uniforms of each purpose (a tuple when several are asked).  Each purpose is
        mixed for this step and the next ones together (up to ``_UNIFORM_BUDGET`` entries), so a
        run pays a few tensor operations per block of steps, not per step; the numbers are those
        of :func:`explorer.rng.uniforms` all the same (each is a function of its coordinates)."""
        out = []
        for p in purposes:
            u = self._block(p)
            if u is None:
                B, L = self.x.shape
                n = max(1, min(self._keys_grid.shape[0] - self._row, _UNIFORM_BUDGET // (B * L)))
                keys = self._keys_grid[self._row:self._row + n, p - 1]                      # [n, B]
                self._blocks[p] = (self._row, rng.uniforms_from(keys[:, :, None], self._term).unbind(0))
                u = self._block(p)
            out.append(u)
        return out[0] if len(out) == 1 else tuple(out)

    def uniforms_at(self, purpose: int, b: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        u = self._block(purpose)
        if u is not None:            # the same numbers: every uniform is elementwise in its counters
            return u[b, pos]
        return rng.uniforms_from(self._keys(purpose)[b], self._term[pos])

    def row_uniforms(self, b: torch.Tensor, pos: torch.Tensor) -> _RowUniforms:
        return _RowUniforms(self.seed, self.rng_list, self.st.step, b, self.counters[pos], self._keys)

    # --- the model ----------------------------------------------------------------------------------
    def draw(self, b: torch.Tensor, pos: torch.Tensor, fn, remasked: torch.Tensor | None = None) -> list:
        """``fn(logits, rows)`` at rows ``(b, pos)`` a chunk at a time; the outputs concatenated.
        The logits are ``fn``'s own (a new tensor per call): it may overwrite them.

        Every draw is per row, so chunking never changes a sample.  Each row's sample is charged
        one evaluation (its ``nfe``) when its state changed since its last charged draw, or is
        ``remasked`` here: otherwise the row alone would be served by the cache (§1.7), as when a
        ranked sampler's step wrote nothing.
        """
        z = self.x
        charged = self._fresh[b]
        self._fresh.index_fill_(0, b, False)
        if remasked is not None and bool(remasked.any()):
            z = self.x.masked_fill(remasked, self.mask_id)
            other = remasked.any(1)          # these rows were evaluated at a state that is not x
            charged = charged | other[b]
            self.changed(other)
        self._drawn.append((b, charged))     # counted when nfe is read: once per row and draw
        chunk = max(1, _ROW_BUDGET // self.vocab_size)     # vocab_size is the logits' width (protocol)
        if b.numel() <= chunk:
            return list(fn(self.px0.logits_at(z, b, pos), slice(None)))
        outs = [fn(self.px0.logits_at(z, b[lo:lo + chunk], pos[lo:lo + chunk]), slice(lo, lo + chunk))
                for lo in range(0, b.numel(), chunk)]
        if len(outs) == 1:
            return list(outs[0])
        return [None if parts[0] is None else torch.cat(parts) for parts in zip(*outs)]

    def rescore(self, ask: torch.Tensor, groups: int) -> torch.Tensor:
        """p(current token | the rest, its group masked) at the decoded positions ``ask``; nan elsewhere.

        Positions are split into ``groups`` strided groups (position - gen_start mod groups); one
        pass per (row, group) masks the asked positions of that group and reads, at each of them,
        the SUBS probability of the token that was there.  Passes are batched up to the batch's
        size.  A row whose state and ``ask`` are unchanged since the last re-scoring reuses it (the
        network is deterministic: the same inputs give the same scores) and costs nothing.
        """
        if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
            raise ValueError(f"groups must be a positive integer (the number of leave-group-out passes), "
                             f"got {groups!r}.")
        if getattr(self.px0.model, "context_free", False):
            raise ValueError(f"{type(self.px0.model).__name__} is context-free (its p(x0) ignores the other tokens), so "
                             "re-scoring a token with its position masked tells nothing; use a model with context "
                             "(e.g. explorer.load_model('orders')) or a sampler that does not re-score.")
        x, B = self.x, self.x.shape[0]
        ask = ask & ~self.masked
        out = torch.full(x.shape, math.nan, dtype=torch.float64, device=x.device)
        fresh = ask.any(1)
        last = self._rescored
        if last is not None and last[2] == groups:
            same = fresh & (x == last[0]).all(1) & (ask == last[1]).all(1)
            out[same] = last[3][same]
            fresh &= ~same
        rows = fresh.nonzero().flatten()
        if rows.numel():
            group = torch.remainder(self.counters, groups)
            present = torch.zeros(rows.numel(), groups, dtype=torch.bool, device=x.device)
            r, p = ask[rows].nonzero(as_tuple=True)
            present[r, group[p]] = True
            pr, pg = present.nonzero(as_tuple=True)
            with torch.no_grad():
                for lo in range(0, pr.numel(), B):
                    src, g = rows[pr[lo:lo + B]], pg[lo:lo + B]
                    sel = ask[src] & (group[None, :] == g[:, None])
                    try:
                        h = self.px0.forward(x[src].masked_fill(sel, self.mask_id), rows=src)
                    except (NotImplementedError, TypeError, AttributeError) as e:
                        raise ValueError(f"re-scoring needs the model's forward on a batch of masked copies, and "
                                         f"{type(self.px0.model).__name__} failed on it ({e}); give the model a "
                                         "logits(z) for any [N, L] batch (explorer.protocol).") from e
                    self.px0.calls += 1
                    rr, pp = sel.nonzero(as_tuple=True)
                    chunk = max(1, _ROW_BUDGET // self.vocab_size)
                    for c in range(0, rr.numel(), chunk):
                        a, q = rr[c:c + chunk], pp[c:c + chunk]
                        prob = subs_probs(self.px0.head(_rows(h, a, q)), self.mask_id)
                        out[src[a], q] = prob.gather(-1, x[src[a], q][:, None]).squeeze(-1).double()
            self._nfe.index_add_(0, rows[pr], torch.ones_like(pr))
            self.px0.called = True
        self._rescored = (x.clone(), ask.clone(), groups, out.clone())
        return out


# ---------------------------------------------------------------------------- the loop
class _Live:
    """Calls the ``on_step`` hook with CPU copies of what changed (nothing when there is no hook)."""

    def __init__(self, hook, steps_total: int):
        self.hook, self.steps_total, self.done, self.calls = hook, steps_total, 0, 0
        self.t0, self.grad = time.perf_counter(), torch.is_grad_enabled()

    def __call__(self, step: int, phase: str, ctx: "_Context", unmasked, remasked, calls: int, grid_step=True):
        self.done += grid_step
        if self.hook is None:
            return
        with torch.set_grad_enabled(self.grad):    # the caller's autograd mode; the loop itself runs without
            self.hook(StepUpdate(
                step=step, phase=phase, samples=ctx.sample_ids.detach().cpu().clone(),
                x=ctx.x.detach().cpu().clone(), unmasked=unmasked.cpu(), remasked=remasked.cpu(),
                steps_done=self.done, steps_total=self.steps_total, model_calls=self.calls + calls,
                elapsed=time.perf_counter() - self.t0, fixed=ctx.fixed.detach().cpu().clone(),
                gen_start=ctx.gen_start))


def _new_row(step: int, t: float, s: float, alpha_t: float, alpha_s: float, sigma: float, phase: str) -> dict:
    return {"step": step, "t": t, "s": s, "alpha_t": alpha_t, "alpha_s": alpha_s, "sigma": sigma,
            "phase": phase, "model_called": False, "n_masked": [], "n_unmasked": 0, "n_remasked": [],
            "seconds": 0.0}


_NO_ROWS = torch.zeros(0, 2, dtype=torch.long)     # (row, position) pairs of nothing (read-only)


def _apply(ctx: _Context, d: Decision, rec: _Recorder, step: int, live: bool):
    """Apply a step's decision to the state (remasks first, then writes) and record it.

    Returns (tokens written, remask count (int or 0-d tensor), (row, position) of the writes and of
    the remasks for the live hook, whether the state changed).
    """
    x, tp, fixed, mask_id = ctx.x, ctx.token_prob, ctx.fixed, ctx.mask_id
    n_re, changed = 0, False
    re_rows, un_rows = _NO_ROWS, _NO_ROWS
    remask = d.remask
    if remask is not None:
        if remask.dtype != torch.bool or remask.shape != x.shape:
            raise ValueError(f"a sampler's remask must be a BoolTensor{list(x.shape)}, got {remask.dtype} "
                             f"{list(remask.shape)}.")
        if rec.record or live or x.device.type == "cpu":
            rb, rpos = remask.nonzero(as_tuple=True)
            if rb.numel() and not d.valid_by_construction and not bool(ctx.decoded[rb, rpos].all()):
                raise ValueError("a sampler tried to remask a masked, prompt or pinned position; remask only "
                                 "decoded positions outside the fixed ones.")
            if rb.numel():
                if rec.record:
                    score = tp[rb, rpos] if d.remask_score is None else d.remask_score[rb, rpos]
                    rec.add(ctx.sample_ids, step, rb, rpos, 1, x[rb, rpos], score, _at(d.remask_p, rb, rpos),
                            _at(d.remask_sigma, rb, rpos), d.remask_reason)
                x.masked_fill_(remask, mask_id)
                tp.masked_fill_(remask, math.nan)
                ctx.changed(rb)
                n_re, changed = rb.numel(), True
                if live:
                    re_rows = torch.stack((rb, rpos), 1)
        else:     # on a GPU with nothing to record: no host synchronisation for the remasks
            remask = remask if d.valid_by_construction else remask & ctx.decoded
            x.masked_fill_(remask, mask_id)
            tp.masked_fill_(remask, math.nan)
            ctx.changed(remask.any(1))
            n_re, changed = remask.sum(), True
    w = d.write
    n_un = 0
    if w is not None and w.b.numel():
        if not d.valid_by_construction and not bool((x[w.b, w.pos] == mask_id).all()):
            raise ValueError("a sampler tried to write at a position that is not masked; write only masked "
                             "positions (remask first in the same decision).")
        rec.add(ctx.sample_ids, step, w.b, w.pos, 0, w.token, w.prob, w.p_transition, w.sigma, w.reason,
                w.cand_ids, w.cand_probs)
        x[w.b, w.pos] = w.token
        tp[w.b, w.pos] = w.prob.to(tp.dtype)
        ctx.changed(w.b)
        n_un, changed = w.b.numel(), True
        if live:
            un_rows = torch.stack((w.b, w.pos), 1)
    return n_un, n_re, un_rows, re_rows, changed


@torch.no_grad()
def _run_chunk(model, sampler: Sampler, grid: list[StepTimes], ctx: _Context, rec: _Recorder, step_rows: dict,
               bar, live: _Live) -> None:
    """Run ``grid`` on one batch: ask the sampler, apply its decision, record, report.  Mutates the
    context's state in place; ``ctx.px0`` counts the model calls and ``ctx.nfe`` each sample's."""
    px0, hook = ctx.px0, live.hook is not None
    mask_id = ctx.mask_id
    ctx.prepare([st.step for st in grid] + [grid[-1].step + 1])
    for st in grid:
        t0 = time.perf_counter()
        ctx.begin(st)
        d = sampler.step(ctx)
        n_un, n_re, un_rows, re_rows, changed = _apply(ctx, d, rec, st.step, hook)
        if changed:
            px0.invalidate()
        row = step_rows.get(st.step)
        if row is None:
            row = step_rows[st.step] = _new_row(st.step, st.t, st.s, st.alpha_t, st.alpha_s, d.sigma,
                                                d.phase or st.phase)
        row["model_called"] |= px0.called
        row["n_masked"].append(ctx.end_step())
        row["n_unmasked"] += n_un
        row["n_remasked"].append(n_re)
        row["seconds"] += time.perf_counter() - t0
        if bar is not None:
            bar.update(1)
        live(st.step, d.phase or st.phase, ctx, un_rows, re_rows, px0.calls)

    # §1.8: fill what is still masked greedily (argmax of p(x0); the mask can never win)
    t0 = time.perf_counter()
    last = grid[-1]
    ctx.begin(StepTimes(last.step + 1, last.s, 0.0, last.alpha_s, 1.0, "final_argmax"))
    w = _greedy(ctx)
    if w is not None:
        d = Decision(write=w, sigma=0.0, phase="final_argmax")
        n_un, _, un_rows, _, _ = _apply(ctx, d, rec, ctx.st.step, hook)
        px0.invalidate()
        row = step_rows.get(ctx.st.step)
        if row is None:
            row = step_rows[ctx.st.step] = _new_row(ctx.st.step, last.s, 0.0, last.alpha_s, 1.0, 0.0,
                                                    "final_argmax")
        row["model_called"] |= px0.called
        row["n_masked"].append((ctx.x == mask_id).sum())
        row["n_unmasked"] += n_un
        row["seconds"] += time.perf_counter() - t0
        live(ctx.st.step, "final_argmax", ctx, un_rows, _NO_ROWS,
             px0.calls, grid_step=False)


def _greedy(ctx: _Context) -> Write | None:
    """The final pass (§1.8): every masked position gets the argmax of its p(x0) (SUBS: never the mask)."""
    b, pos = ctx.masked.nonzero(as_tuple=True)
    if not b.numel():
        return None

    def argmax(logits, rows):
        p = subs_probs(logits, ctx.mask_id)
        prob, tok = p.max(-1)
        cp, ci = top_candidates(p, ctx.topk)
        return tok, prob, ci, cp
    tok, prob, ci, cp = ctx.draw(b, pos, argmax)
    return Write(b, pos, tok, prob, 1.0, 0.0, FINAL_ARGMAX, ci if ctx.topk else None, cp)


@torch.no_grad()
def fill_masked(model, z: torch.Tensor, batch_size: int | None = None, pad: torch.Tensor | None = None) -> torch.Tensor:
    """``z[N, L]`` with every masked position filled by argmax p(x0 | z): the engine's final pass
    (§1.8) on its own, with the same fast path, row budget and padding rules (``pad``: left padding)."""
    device = model_device(model)
    out = z.clone()
    bs = batch_size or max(1, z.shape[0])
    for lo in range(0, z.shape[0], bs):
        x = z[lo:lo + bs].to(device).clone()
        px0 = _Px0(model, True, pad=None if pad is None else pad[lo:lo + bs].to(device))
        ctx = _Context(model, x, torch.zeros_like(x, dtype=torch.bool), torch.full(x.shape, math.nan, device=device),
                       torch.arange(x.shape[0], device=device), list(range(x.shape[0])), 0, 0, 0, 0, px0)
        ctx.begin(StepTimes(1, 0.0, 0.0, 1.0, 1.0, "final_argmax"))
        w = _greedy(ctx)
        if w is not None:
            out[lo + w.b.cpu(), w.pos.cpu()] = w.token.cpu()
    return out


def _steps_table(step_rows: dict) -> dict:
    """The steps table as columns (the Trace makes its DataFrame when it is first asked for); the
    counters kept as tensors during the run are read out here, at once."""
    rows = [step_rows[k] for k in sorted(step_rows)]
    cols = {c: [r[c] for r in rows] for c in STEP_COLUMNS}
    for col in ("n_masked", "n_remasked"):
        tensors = [v for vs in cols[col] for v in vs if isinstance(v, torch.Tensor)]
        values = iter(torch.stack(tensors).cpu().tolist() if tensors else [])
        cols[col] = [int(sum(next(values) if isinstance(v, torch.Tensor) else v for v in vs)) for vs in cols[col]]
    return {c: v if c == "phase" else np.asarray(v, dtype=STEP_DTYPES[c]) for c, v in cols.items()}


def _versions() -> dict:
    return dict(_package_versions())


@functools.lru_cache(maxsize=1)
def _package_versions() -> dict:
    """The versions a trace records (looked up once per process: the metadata lookup costs ~1 ms)."""
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
    sampler.check_remaskable(L, {min(batch_size, N - lo) for lo in range(0, N, batch_size)})
    if device != model_device(model) and hasattr(model, "to"):
        model.to(device)   # in place (nn.Module, MDLMDenoiser, StubDenoiser): only once every input is checked
    live = _Live(on_step, len(grid) * math.ceil(N / batch_size))
    try:
        for lo in range(0, N, batch_size):
            hi = min(N, lo + batch_size)
            fx = fixed[lo:hi].to(device)
            px0 = _Px0(model, fast, pad=None if pad is None else pad[lo:hi].to(device),
                       cfg=(getattr(sampler, "cfg_scale", 0.0), fx))
            ids = torch.arange(sample_offset + lo, sample_offset + hi, device=device)
            rng_list = (ids if rng_ids is None else rng_ids[lo:hi]).tolist()
            ctx = _Context(model, x0[lo:hi].to(device).clone(), fx, token_prob0[lo:hi].to(device).clone(), ids,
                           rng_list, seed, gen_start, steps, topk if record else 0, px0)
            try:
                _run_chunk(model, sampler, grid, ctx, rec, step_rows, bar, live)
            finally:
                final[lo:hi] = ctx.x.cpu()
                calls += px0.calls
                live.calls = calls
                nfe[lo:hi] = ctx.nfe.cpu()
            done = hi
    except (KeyboardInterrupt, StopGeneration):
        complete = False
        warnings.warn(f"generation interrupted: returning the partial trace ({done} of {N} samples finished; "
                      "the last batch stops mid-way). trace.complete is False.", stacklevel=3)
    finally:
        if bar is not None:
            bar.close()
    step_table = _steps_table(step_rows)
    events = rec.arrays()
    last_step = max([first_step, *step_rows] + ([int(events["step"].max())] if len(events["step"]) else []))
    meta = RunRecord(
        run_id=uuid.uuid4().hex, created=_dt.datetime.now(_dt.timezone.utc).isoformat(),
        sampler=sampler.config, steps=steps, grid_steps=len(grid), seed=seed,
        num_samples=N, batch_size=batch_size, seq_len=L, vocab_size=model.vocab_size,
        mask_id=model.mask_id, model=model_identity(model), device=str(device),
        versions=_versions(), record=record, topk=topk, fast=fast and has_split(model),
        first_step=first_step, last_step=max(last_step, first_step), model_calls=calls,
        nfe=nfe.tolist(), complete=complete, wall_seconds=time.perf_counter() - t_start, parent=None,
        **meta_extra)
    return Trace(initial=x0, fixed=fixed, events=events, steps=step_table, meta=meta, final=final,
                 tokenizer=getattr(model, "tokenizer", None), initial_prob=token_prob0 if first_step > 0 else None)


def _device(model, device) -> torch.device:
    """The device a run asks for, checked without moving anything (the loop moves the model once
    every input is checked): the model's own (None), or one :func:`~explorer.protocol.check_device`
    accepts.  ``meta`` holds no weights: moving the caller's model there would destroy it."""
    return model_device(model) if device is None else check_device(device)


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

    ``device``: ``cpu``, ``cuda`` / ``cuda:N`` or ``mps`` (None: where the model is); the model moves
    there in place, once every other input has been checked.

    ``on_step(update)`` is called after every step of every batch and after the final pass with a
    :class:`StepUpdate` (CPU copies: the hook cannot change the run); raising
    :class:`StopGeneration` in it ends the run like Ctrl-C.
    """
    steps, num_samples, seed, batch_size, topk = _check_common(model, sampler, steps, num_samples, seed,
                                                               batch_size, topk)
    device = _device(model, device)
    if getattr(model, "seq_len", None) is None:
        return _generate_prompted(model, sampler, steps, num_samples, seed, prompt, device, batch_size,
                                  record, progress, topk, fast, gen_length, on_step)
    if gen_length is not None:
        raise ValueError(f"gen_length is for models without a fixed length (LLaDA, Dream); this model always "
                         f"writes seq_len={model.seq_len} tokens: drop gen_length=.")
    L = model.seq_len
    sampler.check_shape(L, steps)      # e.g. a ranked sampler's blocks, which then span the whole canvas
    if sampler.needs_prompt and prompt is None:
        raise ValueError(f"{sampler.name} decodes after a prompt and none was given: pass prompt=... (text or ids).")
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
    sampler.check_shape(canvas.gen_length, steps)
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


def _check_resumable(trace: Trace, step) -> None:
    """An incomplete trace is resumable only where every row reached ``step``: a run stopped while
    all its rows ran as one batch, up to its last step.  A run stopped in a later batch has rows
    that never ran (their state is the initial one), and a damaged file loaded with verify=False
    cannot be trusted at all."""
    if trace.complete:
        return
    reason = trace.meta.get("incomplete_reason")
    if reason:
        raise ValueError(f"this trace was loaded from a damaged file ({reason}), so its states cannot be "
                         "resumed; resume the original trace or generate it again.")
    rows, batch = trace.num_samples, trace.meta.get("batch_size")
    if batch is not None and batch < rows:
        raise ValueError(f"this trace was stopped before it finished and ran in batches of {batch}, so some of "
                         "its rows never reached the step; generate it again (or with batch_size >= "
                         "num_samples) before resuming it.")
    if isinstance(step, (int, np.integer)) and not isinstance(step, bool) and step > trace.last_step:
        raise ValueError(f"this trace was stopped after step {trace.last_step}; resume it from a step up to "
                         f"{trace.last_step}.")


def resume(model, trace: Trace, step: int, remask=None, pin=None, seed: int | None = None,
           sampler: Sampler | None = None, device=None, batch_size=None, progress: bool = True,
           record: bool = True, fast: bool = True, replace: dict | None = None, on_step=None) -> Trace:
    """Continue a trace from ``step`` as a *branch*, optionally editing the state first.

    ``remask``: positions (list of ints, or a boolean [L] / [N, L] mask) put back to [MASK];
    ``pin``: decoded positions frozen from now on (never remasked);
    ``replace``: ``{position: token}`` (token id or single-token text) written into every sample at
    that position *without* pinning it -- plant a mistake and watch what the sampler does with it.
    A replaced token counts as decoded with an unknown probability (nan), so a remasking sampler may
    revisit it -- except those that rank by the confidence a token was written with
    (``sampler.ranks_written_confidence``: ReMDM-conf, ReMDM-LLaDA, RCR), which leave it alone as
    upstream leaves a position it never wrote; it cannot be combined with ``remask`` or ``pin`` at
    the same position.
    With no edit and the same seed the branch reproduces the parent exactly.  The branch records its
    parent and the edit.
    """
    from .samplers import from_config
    if not isinstance(trace, Trace):
        raise TypeError("resume() needs a Trace returned by explorer.generate().")
    if not trace.recorded:
        raise ValueError("this trace was generated with record=False, so its steps cannot be resumed.")
    _check_resumable(trace, step)
    sampler = sampler or from_config(trace.meta["sampler"])
    full_grid = sampler.grid(trace.num_steps)      # DFM's adaptive grid is longer than T
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) \
            or not trace.first_step <= step < len(full_grid):
        raise ValueError(f"step={step!r} must be an integer in [{trace.first_step}, {len(full_grid) - 1}] "
                         "(a step of the trace before its last sampler step).")
    seed = trace.meta["seed"] if seed is None else seed
    _, _, seed, batch_size, _ = _check_common(model, sampler, trace.num_steps, trace.num_samples, seed, batch_size,
                                              trace.topk)
    device = _device(model, device)
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
