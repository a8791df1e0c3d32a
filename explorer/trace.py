"""The record of one generation run: every token change at every step, compactly.

A trace stores *events* (one per token change), not a copy of the sequence per step, so a
T = 4096, L = 1024, 16-sample ReMDM-loop run stays in the tens of MB.  Any step's state is
rebuilt on demand from one event index (below).

Steps are numbered 1..T; step T+1 is the final argmax pass (reference §1.8), present only when
it filled at least one masked token.  Step 0 is the initial state (a resumed branch starts at
``first_step``).

Tidy views: ``trace.steps`` one row per step (``STEP_COLUMNS``), ``trace.events`` one row per
token change (``EVENT_COLUMNS``); ``trace.meta`` is the typed :class:`RunRecord` of the run (it
also reads as a dict).  Files: ``to_csv`` / ``to_parquet`` / ``Trace.read`` / ``Trace.verify``
(the formats and their integrity checks are in :mod:`explorer.trace_files`).

The event index
---------------
Events are sorted once by (sample, position, step, kind), and "what did position p of sample s
hold at the end of step k?" is a binary search for the last event at or before k.  Every reader
uses this one index: :meth:`Trace.state_at` / :meth:`Trace.prob_at` (all cells at one step) and
:meth:`Trace.index` (one sample: frames, positions x steps matrices and histories for the figures).

Tie rule: at one position and step, a remask sorts before an unmask.  A sampler that remasks a
token and decodes the position again in the same step (ReMDM-LLaDA, rescore) leaves it decoded, and
``trace.events`` lists the two rows in that order.

State codes of a position at the end of a step (one rule, for :meth:`SampleIndex.frame` and ``matrix``):
``FIXED`` (prompt / pinned) over ``UNMASKED`` / ``REMASKED`` / ``REWRITTEN`` (its last change happened
in this step; REWRITTEN: remasked and decoded again within it, so the remask is not lost from view)
over ``MASKED`` / ``STABLE``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from . import trace_files
# the file names and the schema, where ``from explorer.trace import ...`` has always found them
from .trace_files import (TraceFileError, TraceFileWarning, TraceSidecarMissing, Verification,  # noqa: F401
                          _sha256_file, neutralize, sidecar_path, unneutralize)
from .trace_schema import EVENT_COLUMNS, KINDS, REASONS, STEP_COLUMNS, STEP_DTYPES, RunRecord  # noqa: F401

MASKED, UNMASKED, REMASKED, STABLE, FIXED, REWRITTEN = range(6)   # a new state takes the next code
UNMASK = KINDS.index("unmask")


@dataclass(frozen=True)
class Frame:
    """Positions of one sample at the end of one step."""
    step: int
    positions: np.ndarray   # [W]
    tokens: np.ndarray      # [W] token id now (mask_id while masked)
    shown: np.ndarray       # [W] token to draw: the removed one where it was remasked this step
    codes: np.ndarray       # [W] state code (MASKED ... REWRITTEN, above)
    prob: np.ndarray        # [W] p(x0) of the current token when it was decoded; nan if masked or fixed
    event: np.ndarray       # [W] the sample's event number of the last change <= step, -1 if none


class SampleIndex:
    """One sample's slice of the trace's event index: ``trace.index(sample)``.

    Its events are numbered 0..n-1 in index order (position, step, remask before unmask); the
    arrays ``pos``, ``step``, ``tok``, ``prob``, ``is_unmask`` are indexed by that number, and the
    events of position p are ``history(p)`` (= ``range(pos_start[p], pos_end[p])``).
    """

    def __init__(self, trace: "Trace", sample: int):
        self.trace, self.sample = trace, int(sample)
        self.mask_id, self.seq_len = trace.mask_id, trace.seq_len
        self.first_step, self.last_step, self.num_steps = trace.first_step, trace.last_step, trace.num_steps
        self.final_step = trace.final_pass_step
        self.initial = trace.initial[sample].numpy()
        self.fixed = trace.fixed[sample].numpy()
        ix = trace._sorted_events()
        span = ix["span"] * self.seq_len
        self._lo, hi = (int(np.searchsorted(ix["key"], s * span)) for s in (sample, sample + 1))
        part = slice(self._lo, hi)
        self.pos, self.step, self.tok = ix["position"][part], ix["step"][part], ix["token_id"][part]
        self.prob, self.is_unmask, self._rows = ix["prob"][part], ix["unmask"][part], ix["order"][part]
        self.pos_start = np.searchsorted(self.pos, np.arange(self.seq_len), side="left")
        self.pos_end = np.searchsorted(self.pos, np.arange(self.seq_len), side="right")

    def text(self, token_id: int) -> str:
        return self.trace.token_text(token_id)

    def history(self, position: int) -> range:
        """The event numbers of one position, in order."""
        return range(int(self.pos_start[position]), int(self.pos_end[position]))

    def candidates(self, event: int) -> list[tuple[str, float]]:
        """Top-k (text, p) of p(x0) at the step of an unmask event ([] for a remask)."""
        ev = self.trace._ev
        row = int(ev["cand_row"][self._rows[event]])
        if row < 0:
            return []
        return [(self.text(int(t)), float(p)) for t, p in zip(ev["cand_ids"][row], ev["cand_probs"][row]) if t >= 0]

    @property
    def sampler_steps(self) -> int:
        """The last step of the sampler's own grid (T, or longer for DFM), before any final pass."""
        return self.final_step - 1 if self.final_step is not None else self.last_step

    def step_label(self, step: int) -> str:
        """How a step reads: "initial state", "step k of N", "final argmax pass" (N: T if the run stopped)."""
        if (step := int(step)) == self.first_step:
            return "initial state" if step == 0 else f"state at step {step} (branch start)"
        if self.final_step is not None and step == self.final_step:
            return f"final argmax pass (after step {self.sampler_steps})"
        stopped = "" if self.trace.complete else f" (stopped after step {self.last_step})"
        return f"step {step} of {max(self.sampler_steps, self.num_steps if stopped else 0)}{stopped}"

    def check_step(self, step: int) -> int:
        step = int(step)
        if not self.first_step <= step <= self.last_step:
            raise IndexError(f"step {step} is outside this trace: its states run {self.first_step}.."
                             f"{self.last_step} ({self.first_step} is the state before its first step).")
        return step

    def _cells(self, positions: np.ndarray, steps: np.ndarray) -> dict[str, np.ndarray]:
        """Token, state code, prob, shown token and event of each (position, step) pair (broadcast)."""
        idx, valid = self.trace._last_event(self.sample * self.seq_len + positions, steps)
        event = np.where(valid, idx - self._lo, -1)
        at = np.maximum(event, 0)
        pick = (lambda a, i=at: a[i]) if len(self.pos) else (lambda a, i=at: np.zeros(np.shape(i), a.dtype))
        unmask, tok = valid & pick(self.is_unmask), pick(self.tok).astype(np.int64)
        now = valid & (pick(self.step) == steps)
        before = np.maximum(event - 1, 0)     # the tie rule puts a same-step remask just before its unmask
        again = (now & unmask & (event > 0) & ~pick(self.is_unmask, before) & (pick(self.step, before) == steps)
                 & (pick(self.pos, before) == positions))
        fixed = np.broadcast_to(self.fixed[positions], np.shape(at))
        tokens = np.where(valid, np.where(unmask, tok, self.mask_id),
                          np.broadcast_to(self.initial[positions], np.shape(at)))
        codes = np.where(tokens == self.mask_id, MASKED, STABLE)
        codes = np.where(now, np.where(unmask, np.where(again, REWRITTEN, UNMASKED), REMASKED), codes)
        codes = np.where(fixed, FIXED, codes)
        held = np.where(valid, np.nan, self.trace.initial_prob[self.sample].numpy()[positions])   # inherited
        prob = np.where(unmask & ~fixed, pick(self.prob), np.where(fixed, np.nan, held))
        return {"tokens": tokens, "codes": codes, "prob": prob, "event": event,
                "shown": np.where(codes == REMASKED, tok, tokens)}

    def frame(self, step: int, start: int = 0, length: int | None = None) -> Frame:
        """State of positions [start, start+length) at the end of ``step``."""
        step = self.check_step(step)
        start = max(0, min(int(start), self.seq_len - 1))
        stop = self.seq_len if length is None else min(self.seq_len, start + int(length))
        positions = np.arange(start, stop, dtype=np.int64)
        return Frame(step, positions, **self._cells(positions, np.int64(step)))

    def matrix(self, positions, steps, value: str = "state") -> np.ndarray:
        """[len(positions), len(steps)] of state codes (value="state"), p(current token) ("prob")
        or token ids ("token") at the end of each step."""
        if value not in ("state", "prob", "token"):
            raise ValueError(f"value must be 'state', 'prob' or 'token', got {value!r}.")
        cells = self._cells(np.asarray(positions, np.int64)[:, None], np.asarray(steps, np.int64)[None, :])
        return cells[{"state": "codes", "prob": "prob", "token": "tokens"}[value]]


class Trace:
    """Everything one call of :func:`explorer.generate` (or :func:`explorer.resume`) did."""

    def __init__(self, *, initial: torch.Tensor, fixed: torch.Tensor, events: dict[str, np.ndarray],
                 steps: pd.DataFrame | dict, meta: RunRecord | dict, final: torch.Tensor | None = None,
                 tokenizer: Any = None, token_texts: dict[int, str] | None = None, column_docs: dict | None = None,
                 initial_prob: torch.Tensor | None = None):
        self.initial = initial.long().cpu()
        self.initial_prob = (torch.full(self.initial.shape, torch.nan) if initial_prob is None
                             else initial_prob.float().cpu())      # a branch's: what its parent recorded
        self.fixed = fixed.bool().cpu()
        self._ev = events
        self._steps = steps        # the DataFrame, or its columns until .steps is first read
        self.meta = meta if isinstance(meta, RunRecord) else RunRecord.from_dict(meta)
        self.tokenizer = tokenizer
        self._texts_cache: dict[int, str] = dict(token_texts or {})
        self._sorted: dict | None = None
        self._samples: dict[int, SampleIndex] = {}
        self._final = None if final is None else final.long().cpu()
        self.column_docs = column_docs   # a file's own column descriptions, written back as read (trace_files)

    # ------------------------------------------------------------------ basic facts
    @property
    def num_samples(self) -> int:
        return self.initial.shape[0]

    @property
    def seq_len(self) -> int:
        return self.initial.shape[1]

    @property
    def mask_id(self) -> int:
        return int(self.meta.mask_id)

    @property
    def num_steps(self) -> int:
        return int(self.meta.steps)

    @property
    def first_step(self) -> int:
        return int(self.meta.first_step or 0)

    @property
    def last_step(self) -> int:
        return int(self.meta.last_step)

    @property
    def final_pass_step(self) -> int | None:
        """The step of the final argmax pass (§1.8), or None when the run has none.  Read from the
        steps table's phase (else the events' reason), not from "step > T": DFM's grid is longer than T."""
        hit = np.asarray(self._steps["step"])[np.asarray(self._steps["phase"], dtype=object) == "final_argmax"]
        if len(self._steps["step"]):       # the DataFrame or the engine's columns: both index by name
            return int(hit[-1]) if len(hit) else None
        final = self._ev["step"][self._ev["reason"] == REASONS.index("final_argmax")]
        return int(final.max()) if len(final) else None

    @property
    def model_calls(self) -> int:
        return int(self.meta.model_calls)

    @property
    def nfe(self) -> torch.Tensor:
        """LongTensor[num_samples]: model calls each sample needs alone: only steps that draw, and the final
        pass only if masks are left (<= the paper's NFE, §1.7-1.8).  ``model_calls``: batched calls."""
        return torch.tensor(self.meta.nfe or [], dtype=torch.long)

    @property
    def complete(self) -> bool:
        return self.meta.complete is not False

    @property
    def recorded(self) -> bool:
        return self.meta.record is not False

    @property
    def run_id(self) -> str:
        return self.meta["run_id"]

    @property
    def topk(self) -> int:
        return int(self.meta.topk or 0)

    def __repr__(self) -> str:
        s = (self.meta.sampler or {}).get("name", "?")
        return (f"Trace({s}, T={self.num_steps}, samples={self.num_samples}, L={self.seq_len}, "
                f"events={len(self._ev['step'])}, model_calls={self.model_calls}"
                f"{'' if self.complete else ', INCOMPLETE'})")

    # ------------------------------------------------------------------ the event index
    def _sorted_events(self) -> dict[str, np.ndarray]:
        """The one event index: event columns sorted by ``key`` = (cell, step, kind), remask first."""
        if self._sorted is None:
            ev, span = self._ev, 2 * (self.last_step + 2)
            cell = ev["sample"].astype(np.int64) * self.seq_len + ev["position"].astype(np.int64)
            unmask = ev["kind"] == UNMASK
            key = cell * span + ev["step"].astype(np.int64) * 2 + unmask
            order = np.argsort(key, kind="stable")
            self._sorted = {"key": key[order], "order": order, "span": span, "unmask": unmask[order],
                            **{c: ev[c][order] for c in ("position", "step", "token_id", "prob")}}
            s = self._sorted     # what a cell holds after each event: its token (or [MASK]) and that token's p
            s["value"] = np.where(s["unmask"], s["token_id"].astype(np.int64), self.mask_id)
            s["held_prob"] = np.where(s["unmask"], s["prob"].astype(np.float64), np.nan)
        return self._sorted

    def _last_event(self, cells: np.ndarray, steps) -> tuple[np.ndarray, np.ndarray]:
        """For each cell (sample * L + position) and step (broadcast): the index-order number of its
        last event at or before that step, and whether it has one."""
        ix = self._sorted_events()
        q = cells * ix["span"] + np.asarray(steps, np.int64) * 2 + 1
        idx = np.searchsorted(ix["key"], q, side="right") - 1
        valid = idx >= 0
        valid[valid] = ix["key"][idx[valid]] // ix["span"] == np.broadcast_to(cells, q.shape)[valid]
        return idx, valid

    def _check_step(self, step: int) -> None:
        if not self.recorded and step not in (self.first_step, self.last_step):
            raise ValueError("this trace was generated with record=False: only the initial and final "
                             "states are kept. Generate again with record=True to scrub through steps.")
        if not isinstance(step, (int, np.integer)) or not self.first_step <= step <= self.last_step:
            raise ValueError(f"step={step!r} is outside this trace's steps "
                             f"[{self.first_step}, {self.last_step}].")

    def index(self, sample: int = 0) -> SampleIndex:
        """The event index of one sample (built once): frames, matrices and histories for the figures."""
        if not 0 <= sample < self.num_samples:
            raise IndexError(f"sample {sample} is out of range: this trace has {self.num_samples} sample(s).")
        if not self.recorded:
            raise ValueError("this trace was generated with record=False, so only its final state is "
                             "kept; generate again with record=True to see the steps.")
        if sample not in self._samples:
            self._samples[sample] = SampleIndex(self, sample)
        return self._samples[sample]

    def state_at(self, step: int) -> torch.Tensor:
        """LongTensor[num_samples, L]: the tokens after ``step`` steps (0 = initial state)."""
        if not self.recorded and step == self.last_step and self._final is not None:
            return self._final.clone()
        return self._held_at(step, "value", self.initial)

    def prob_at(self, step: int) -> torch.Tensor:
        """FloatTensor[num_samples, L]: p(x0) each current token had when it was decoded, in a branch's parent
        for a token it inherited (``initial_prob``); nan if masked or given."""
        return self._held_at(step, "held_prob", self.initial_prob.double())

    def _held_at(self, step: int, column: str, initial: torch.Tensor) -> torch.Tensor:
        """What every cell holds after ``step``: ``column`` of its last event, else its ``initial`` value."""
        self._check_step(step)
        idx, valid = self._last_event(np.arange(self.num_samples * self.seq_len, dtype=np.int64), step)
        out = initial.flatten().numpy().copy()
        out[valid] = self._sorted_events()[column][idx[valid]]
        return torch.from_numpy(out).view(self.num_samples, self.seq_len)

    @property
    def nbytes(self) -> int:
        """Memory held by the recorded events (the trace's dominant cost)."""
        return int(sum(a.nbytes for a in self._ev.values()))

    @property
    def final(self) -> torch.Tensor:
        if self._final is None:
            self._final = self.state_at(self.last_step)
        return self._final.clone()

    # ------------------------------------------------------------------ text
    def token_text(self, token_id: int) -> str:
        token_id = int(token_id)
        if token_id not in self._texts_cache:
            self._texts_cache[token_id] = ("[MASK]" if token_id == self.mask_id else str(token_id)
                                           if self.tokenizer is None else self.tokenizer.decode([token_id]))
        return self._texts_cache[token_id]

    def decode(self, ids) -> str | list[str]:
        """Text of a sequence of ids; a 2-D batch ``[N, L]`` gives one text per row."""
        ids = torch.as_tensor(ids)
        if ids.dim() == 2:
            return [self.decode(row) for row in ids]
        ids = [int(i) for i in ids.flatten().tolist()]
        if self.tokenizer is not None:
            return self.tokenizer.decode(ids)
        return " ".join(self.token_text(i) for i in ids)

    @property
    def texts(self) -> list[str]:
        """The final decoded samples.  For a prompted canvas (LLaDA / Dream: ``meta["gen_start"]``) the
        generated part only, cut before the first EOS / end-of-turn id (``meta["stop_ids"]``);
        ``trace.decode(trace.final)`` still decodes the whole canvases."""
        if self.meta.texts is not None and self.tokenizer is None:
            return list(self.meta.texts)
        start = self.meta.gen_start
        if start is None:
            return [self.decode(row) for row in self.final]
        stops = set(self.meta.stop_ids or [])
        rows = [row[start:] for row in self.final.tolist()]
        return [self.decode(row[:next((i for i, t in enumerate(row) if t in stops), len(row))]) for row in rows]

    # ------------------------------------------------------------------ tidy views
    @property
    def steps(self) -> pd.DataFrame:
        if not isinstance(self._steps, pd.DataFrame):      # the engine's columns: the frame is built once
            self._steps = pd.DataFrame(self._steps, columns=list(STEP_COLUMNS))
        return self._steps.copy()

    @property
    def events(self) -> pd.DataFrame:
        ev = self._ev
        df = pd.DataFrame({
            "sample": ev["sample"].astype(np.int64),
            "step": ev["step"].astype(np.int64),
            "position": ev["position"].astype(np.int64),
            "kind": pd.Categorical.from_codes(ev["kind"].astype(np.int8), categories=list(KINDS)),
            "token_id": ev["token_id"].astype(np.int64),
            "prob": ev["prob"],
            "p_transition": ev["p_transition"],
            "sigma": ev["sigma"],
            "reason": pd.Categorical.from_codes(ev["reason"].astype(np.int8), categories=list(REASONS)),
        })
        df.insert(5, "token", [self.token_text(i) for i in df["token_id"]] if len(df) else [])
        row, has = ev["cand_row"], ev["cand_row"] >= 0
        for i in range(self.topk):
            ids, probs = np.full(len(row), -1, np.int64), np.full(len(row), np.nan, np.float32)
            ids[has], probs[has] = ev["cand_ids"][row[has], i], ev["cand_probs"][row[has], i]
            df[f"cand{i + 1}_id"] = ids
            df[f"cand{i + 1}_token"] = [self.token_text(j) if j >= 0 else "" for j in ids]
            df[f"cand{i + 1}_prob"] = probs
        # by step, sample, position; then the tie rule: a remask before an unmask of the same cell
        order = np.lexsort((ev["kind"] == UNMASK, df["position"].to_numpy(), df["sample"].to_numpy(),
                            df["step"].to_numpy()))
        return df.iloc[order].reset_index(drop=True)

    def changes_at(self, step: int) -> pd.DataFrame:
        """Which tokens changed at ``step``: from what, to what, with what probability."""
        ev = self.events.loc[lambda df: df["step"] == step].copy()
        before = self.state_at(step - 1) if step - 1 >= self.first_step else self.initial
        after = self.state_at(step)
        b, p = ev["sample"].to_numpy().copy(), ev["position"].to_numpy().copy()
        ev.insert(3, "from_id", before[b, p].numpy() if len(ev) else [])
        ev.insert(4, "from_token", [self.token_text(i) for i in ev["from_id"]])
        ev.insert(5, "to_id", after[b, p].numpy() if len(ev) else [])
        ev.insert(6, "to_token", [self.token_text(i) for i in ev["to_id"]])
        return ev.reset_index(drop=True)

    @property
    def token_texts(self) -> dict[int, str]:
        """The texts of the token ids met so far (a trace file keeps them, to read without a tokenizer)."""
        return dict(self._texts_cache)

    # ------------------------------------------------------------------ files (explorer.trace_files)
    def to_csv(self, path, neutralize_formulas: bool = True):
        """Write the audit CSV (events) and its ``.meta.json`` sidecar, atomically, making missing
        folders (formula-looking text gets a leading ``'`` unless ``neutralize_formulas=False``)."""
        return trace_files.write(self, path, "csv", neutralize_formulas)

    def to_parquet(self, path):
        """Write the events as Parquet and the ``.meta.json`` sidecar, atomically, making missing folders."""
        return trace_files.write(self, path, "parquet")

    @staticmethod
    def verify(path) -> Verification:
        """Whether the data file still matches its sidecar's sha256, and the sidecar its own; never raises."""
        return trace_files.verify(path)

    @classmethod
    def read(cls, path, tokenizer: Any = None, verify: bool = True) -> "Trace":
        """Read a trace written by :meth:`to_csv` or :meth:`to_parquet`, refusing damage with a
        :class:`TraceFileError` naming the file and the first bad line, row, column or sidecar key
        (``verify=False`` loads a file that no longer matches its sidecar, marked incomplete; see
        :func:`explorer.trace_files.read`)."""
        return cls(**trace_files.read(path, verify), tokenizer=tokenizer)

    # ------------------------------------------------------------------ equality (tests, audits)
    def same_as(self, other: "Trace", rtol: float = 1e-5) -> bool:
        """Same states at every step and the same events; probabilities equal up to ``rtol``
        (a model run at another batch size may round its logits differently)."""
        if (self.initial.shape != other.initial.shape or not torch.equal(self.initial, other.initial)
                or self.last_step != other.last_step or len(self._ev["step"]) != len(other._ev["step"])):
            return False
        a, b = self.events, other.events
        if list(a.columns) != list(b.columns):
            return False
        for c in a.columns:
            x, y = a[c].to_numpy(), b[c].to_numpy()
            if x.dtype.kind == "f":
                if not np.allclose(x, y, rtol=rtol, atol=1e-7, equal_nan=True):
                    return False
            elif not (x.astype(str) == y.astype(str)).all():
                return False
        return True

