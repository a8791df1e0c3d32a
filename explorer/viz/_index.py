"""A searchable index over one sample's events, so any (position, step) window is one lookup.

``Trace.events`` has one row per token change. Sorting them by (position, step, kind) turns
"what did position p hold at the end of step k?" into a binary search for the last event at or
before k (``numpy.searchsorted``), vectorised over a whole window of positions x steps. The
scrubber, the heatmap and the hover text all read from here, and the per-step frames are cached,
so moving the scrubber costs one small search over the visible positions only.
"""
from __future__ import annotations

import html
import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from .palette import FIXED, MASKED, REMASKED, STABLE, STATE_NAMES, UNMASKED

_INDEX_ATTR = "_viz_indexes"


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def display_token(text: str, max_chars: int = 8) -> str:
    """Token text made safe and visible in a small cell: whitespace shown, HTML escaped once.

    Only ``&``, ``<`` and ``>`` are escaped: the result goes into HTML element content (the grid
    widget, tooltips) and into plotly text, which decodes ``&amp; &lt; &gt;`` but shows
    ``&quot;`` literally -- a quote must stay a quote.
    """
    if text is None or (isinstance(text, float) and math.isnan(text)):
        text = "?"
    text = str(text)
    shown = text.strip()
    if not shown:
        shown = "⏎" if "\n" in text else "␣"
    shown = shown.replace("\n", "⏎")
    if len(shown) > max_chars:
        shown = shown[: max_chars - 1] + "…"
    return html.escape(shown, quote=False)


@dataclass
class Frame:
    """The visible positions at the end of one step."""
    step: int
    positions: np.ndarray   # [W] int
    tokens: np.ndarray      # [W] token id now (mask_id when masked)
    shown: np.ndarray       # [W] token id to draw (the removed token for a remask this step)
    codes: np.ndarray       # [W] state code (palette.MASKED ...)
    prob: np.ndarray        # [W] p(x0) of the current token when it was decoded, NaN if masked
    event: np.ndarray       # [W] index (into the sorted events) of the last event <= step, -1 if none


def _final_pass_step(trace) -> int | None:
    """The step holding the final argmax pass (reference §1.8), or None when the run has none.

    Read from the data (``trace.steps``' phase, else the events' reason), not from "step > T":
    a sampler with a longer grid than T (DFM's corrector steps) has real steps past T.
    """
    steps = getattr(trace, "steps", None)
    if steps is not None and len(steps) and "phase" in steps:
        hit = steps.loc[steps["phase"] == "final_argmax", "step"]
        return int(hit.iloc[-1]) if len(hit) else None
    ev = trace.events
    if len(ev) and "reason" in ev:
        hit = ev.loc[ev["reason"] == "final_argmax", "step"]
        if len(hit):
            return int(hit.max())
    return None


class TraceIndex:
    """Event index of sample ``sample`` of ``trace``; build with :func:`index_for` to share it."""

    def __init__(self, trace, sample: int = 0, events=None, cache_size: int = 256):
        n = int(trace.num_samples)
        if not 0 <= sample < n:
            raise IndexError(f"sample {sample} is out of range: this trace has {n} sample(s).")
        if not getattr(trace, "recorded", True):
            raise ValueError("this trace was generated with record=False, so only its final state is "
                             "kept; generate again with record=True to see the steps.")
        self.trace = trace
        self.sample = int(sample)
        self.mask_id = int(trace.mask_id)
        self.seq_len = int(trace.seq_len)
        self.first_step = int(getattr(trace, "first_step", 0))  # a resumed branch starts later
        self.last_step = int(trace.last_step)
        self.num_steps = int(trace.num_steps)
        self.final_step = _final_pass_step(trace)
        self.initial = _np(trace.initial)[sample].astype(np.int64)
        self.fixed = _np(trace.fixed)[sample].astype(bool)

        ev = trace.events if events is None else events
        ev = ev[ev["sample"] == sample] if len(ev) else ev
        self._stride = 2 * (self.last_step + 2)
        pos = ev["position"].to_numpy(np.int64) if len(ev) else np.zeros(0, np.int64)
        step = ev["step"].to_numpy(np.int64) if len(ev) else np.zeros(0, np.int64)
        unmask = (ev["kind"] == "unmask").to_numpy(bool) if len(ev) else np.zeros(0, bool)
        # remask sorts before unmask within a step, so a same-step remask+re-decode ends decoded
        key = pos * self._stride + step * 2 + unmask.astype(np.int64)
        order = np.argsort(key, kind="stable")
        self.events = ev.iloc[order].reset_index(drop=True)
        self.key = key[order]
        self.pos = pos[order]
        self.step = step[order]
        self.is_unmask = unmask[order]
        self.tok = self.events["token_id"].to_numpy(np.int64) if len(ev) else np.zeros(0, np.int64)
        self.prob = self.events["prob"].to_numpy(np.float64) if len(ev) else np.zeros(0)
        self.pos_start = np.searchsorted(self.pos, np.arange(self.seq_len), side="left")
        self.pos_end = np.searchsorted(self.pos, np.arange(self.seq_len), side="right")

        cols = set(self.events.columns)
        k = 0
        while f"cand{k + 1}_id" in cols:
            k += 1
        self.topk = k
        e = len(self.events)
        self.cand_ids = np.stack([self.events[f"cand{j}_id"].to_numpy(np.int64) for j in range(1, k + 1)], 1) \
            if k else np.zeros((e, 0), np.int64)
        self.cand_probs = np.stack([self.events[f"cand{j}_prob"].to_numpy(np.float64) for j in range(1, k + 1)], 1) \
            if k else np.zeros((e, 0))
        self._texts: dict[int, str] = {}
        if e:
            for tid, txt in zip(self.tok, self.events["token"].to_numpy()):
                self._texts.setdefault(int(tid), txt)
            for j in range(1, k + 1):
                for tid, txt in zip(self.cand_ids[:, j - 1], self.events[f"cand{j}_token"].to_numpy()):
                    if tid >= 0:
                        self._texts.setdefault(int(tid), txt)
        self._frames: OrderedDict = OrderedDict()
        self._cache_size = cache_size
        self._hover_cache: dict = {}

    # -- token text -----------------------------------------------------------------------
    def text(self, token_id: int) -> str:
        token_id = int(token_id)
        if token_id == self.mask_id:
            return "[MASK]"
        t = self._texts.get(token_id)
        if t is None:
            try:
                t = self.trace.token_text(token_id)
            except Exception:  # a trace without a tokenizer still shows ids
                t = f"#{token_id}"
            self._texts[token_id] = t
        return t

    # -- lookups --------------------------------------------------------------------------
    def _last_event(self, positions: np.ndarray, steps) -> tuple[np.ndarray, np.ndarray]:
        """Index of the last event at or before ``steps`` for each position (broadcast), and validity."""
        q = positions * self._stride + np.asarray(steps, dtype=np.int64) * 2 + 1
        if len(self.key) == 0:
            idx = np.full(np.shape(q), -1, np.int64)
            return idx, np.zeros(np.shape(q), bool)
        idx = np.searchsorted(self.key, q, side="right") - 1
        safe = np.maximum(idx, 0)
        valid = (idx >= 0) & (self.pos[safe] == positions)
        return np.where(valid, idx, -1), valid

    @property
    def sampler_steps(self) -> int:
        """The last step of the sampler's own grid (T, or longer for DFM), before any final pass."""
        return self.final_step - 1 if self.final_step is not None else self.last_step

    def step_label(self, step: int) -> str:
        """How a step reads to a user: "initial state", "step k of N" or "final argmax pass"."""
        step = int(step)
        if step == self.first_step:
            return "initial state" if step == 0 else f"state at step {step} (branch start)"
        if self.final_step is not None and step == self.final_step:
            return f"final argmax pass (after step {self.sampler_steps})"
        return f"step {step} of {self.sampler_steps}"

    def check_step(self, step: int) -> int:
        step = int(step)
        if not self.first_step <= step <= self.last_step:
            raise IndexError(f"step {step} is outside this trace: its states run {self.first_step}.."
                             f"{self.last_step} ({self.first_step} is the state before its first step).")
        return step

    def frame(self, step: int, start: int = 0, length: int | None = None) -> Frame:
        """State of positions [start, start+length) at the end of ``step`` (cached)."""
        step = self.check_step(step)
        start = max(0, min(int(start), self.seq_len - 1))
        stop = self.seq_len if length is None else min(self.seq_len, start + int(length))
        key = (step, start, stop)
        hit = self._frames.get(key)
        if hit is not None:
            self._frames.move_to_end(key)
            return hit
        positions = np.arange(start, stop, dtype=np.int64)
        idx, valid = self._last_event(positions, step)
        safe = np.maximum(idx, 0)
        if len(self.key):
            is_unm = self.is_unmask[safe] & valid
            ev_tok = self.tok[safe]
            now = valid & (self.step[safe] == step)
            prob = np.where(is_unm, self.prob[safe], np.nan)
        else:
            is_unm = now = np.zeros(len(positions), bool)
            ev_tok = np.zeros(len(positions), np.int64)
            prob = np.full(len(positions), np.nan)
        tokens = np.where(valid, np.where(is_unm, ev_tok, self.mask_id), self.initial[positions])
        codes = np.where(tokens == self.mask_id, MASKED, STABLE)
        codes[now & is_unm] = UNMASKED
        codes[now & ~is_unm] = REMASKED
        codes[self.fixed[positions]] = FIXED
        shown = np.where(codes == REMASKED, ev_tok, tokens)
        fr = Frame(step, positions, tokens, shown, codes, prob, idx)
        self._frames[key] = fr
        if len(self._frames) > self._cache_size:
            self._frames.popitem(last=False)
        return fr

    def matrix(self, positions: np.ndarray, steps: np.ndarray, value: str = "state") -> np.ndarray:
        """[len(positions), len(steps)] of state codes (value="state"), p(current token) ("prob")
        or token ids ("token") at the end of each step."""
        positions = np.asarray(positions, np.int64)[:, None]
        steps = np.asarray(steps, np.int64)[None, :]
        idx, valid = self._last_event(positions, steps)
        safe = np.maximum(idx, 0)
        if len(self.key):
            is_unm = self.is_unmask[safe] & valid
            now = valid & (self.step[safe] == steps)
            ev_tok = self.tok[safe]
            ev_prob = self.prob[safe]
        else:
            is_unm = now = np.zeros(idx.shape, bool)
            ev_tok = np.zeros(idx.shape, np.int64)
            ev_prob = np.full(idx.shape, np.nan)
        if value == "prob":
            out = np.where(is_unm, ev_prob, np.nan)
            out[np.broadcast_to(self.fixed[positions], out.shape)] = np.nan
            return out
        tokens = np.where(valid, np.where(is_unm, ev_tok, self.mask_id),
                          np.broadcast_to(self.initial[positions], idx.shape))
        if value == "token":
            return tokens
        if value != "state":
            raise ValueError(f"value must be 'state', 'prob' or 'token', got {value!r}.")
        codes = np.where(tokens == self.mask_id, MASKED, STABLE)
        codes[now & is_unm] = UNMASKED
        codes[now & ~is_unm] = REMASKED
        codes[np.broadcast_to(self.fixed[positions], codes.shape)] = FIXED
        return codes

    # -- per-position history -------------------------------------------------------------
    def history(self, position: int):
        """The events of one position, in order (a DataFrame slice of the sorted events)."""
        a, b = self.pos_start[position], self.pos_end[position]
        return self.events.iloc[a:b]

    def candidates(self, event: int) -> list[tuple[str, float]]:
        """Top-k (text, p) of p(x0) at the step of an unmask event."""
        return [(self.text(int(t)), float(p)) for t, p in zip(self.cand_ids[event], self.cand_probs[event])
                if t >= 0]

    def hover(self, position: int, event: int, code: int, max_history: int = 8) -> str:
        """Hover text for one cell: state, token, p, top-k at its decoding step, its history so far."""
        position, event = int(position), int(event)
        head = f"<b>position {position}</b> · {STATE_NAMES[int(code)]}"
        key = (position, event)
        body = self._hover_cache.get(key)
        if body is None:
            body = self._hover_body(position, event, max_history)
            self._hover_cache[key] = body
        return head + body

    def _hover_body(self, position: int, event: int, max_history: int) -> str:
        esc = lambda t: display_token(t, 24)  # noqa: E731
        if event < 0:
            tid = int(self.initial[position])
            if self.fixed[position]:
                return f"<br>token {esc(self.text(tid))} (fixed)"
            if tid == self.mask_id:
                return "<br>not decoded yet"
            return f"<br>token {esc(self.text(tid))} (from the start)"
        lines = []
        s = int(self.step[event])
        tok = esc(self.text(int(self.tok[event])))
        if self.is_unmask[event]:
            p = self.prob[event]
            lines.append(f"token {tok}  p={p:.3f} (decoded at step {s})")
            cands = self.candidates(event)
            if cands:
                lines.append("top-k then: " + ", ".join(f"{esc(t)} {q:.2f}" for t, q in cands))
        else:
            lines.append(f"remasked at step {s}; it held {tok}")
        a = self.pos_start[position]
        first = max(a, event - max_history + 1)
        hist = []
        for i in range(first, event + 1):
            kind = "+" if self.is_unmask[i] else "−"
            hist.append(f"{kind}{esc(self.text(int(self.tok[i])))}@{int(self.step[i])}")
        more = "… " if first > a else ""
        lines.append("history: " + more + " ".join(hist))
        return "<br>" + "<br>".join(lines)


def index_for(trace, sample: int = 0) -> TraceIndex:
    """The shared index of ``trace``'s sample (built once per trace and sample)."""
    # traces are immutable once generated, so the index lives as long as the trace
    store = getattr(trace, _INDEX_ATTR, None)
    if store is None:
        store = {}
        try:
            setattr(trace, _INDEX_ATTR, store)
        except Exception:  # a frozen trace: no sharing, still correct
            pass
    idx = store.get(sample)
    if idx is None:
        if "events" not in store:  # Trace.events builds a DataFrame on each access: once is enough
            store["events"] = trace.events
        idx = TraceIndex(trace, sample, events=store["events"])
        store[sample] = idx
    return idx
