"""The record of one generation run: every token change at every step, compactly.

A trace stores *events* (one per token change), not a copy of the sequence per step, so a
T = 4096, L = 1024, 16-sample ReMDM-loop run stays in the tens of MB.  Any step's state is
rebuilt on demand by :meth:`Trace.state_at` with one vectorised search.

Steps are numbered 1..T; step T+1 is the final argmax pass (reference §1.8), present only when
it filled at least one masked token.  Step 0 is the initial state.

Tidy views
----------
``trace.steps``   one row per step  (see ``STEP_COLUMNS``)
``trace.events``  one row per token change (see ``EVENT_COLUMNS``)

Files
-----
``to_csv(path)`` / ``to_parquet(path)`` write the events table plus a JSON sidecar
``<path>.meta.json`` (sampler settings, seed, model identity and weights sha256, package
versions, device, time, the steps table, the initial state and the sha256 of the data file).
``Trace.read(path)`` reads either back losslessly.  Both files are written atomically.

CSV safety: the CSV is UTF-8, RFC 4180 (CRLF rows, fields with commas, quotes or newlines are
quoted, quotes doubled).  Token text is attacker-controlled (a model can emit ``=HYPERLINK(...)``),
so by default every text cell that starts with ``= + - @``, a tab or a carriage return -- or with
the escape character ``'`` itself -- gets one leading ``'``, which spreadsheets show as text.
``Trace.read`` removes it again.  Pass ``neutralize_formulas=False`` to write raw text.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .io import atomic_write_many

FORMAT_VERSION = 1
KINDS = ("unmask", "remask")
REASONS = ("posterior", "confidence", "final_argmax")

STEP_COLUMNS = {
    "step": "1..T; T+1 is the final argmax pass",
    "t": "time at the start of the step",
    "s": "time at the end of the step",
    "alpha_t": "schedule alpha at t as the sampler uses it",
    "alpha_s": "schedule alpha at s",
    "sigma": "the step's remasking probability sigma_t (ReMDM-conf: sigma_max; nan for ordering samplers)",
    "phase": "sampler phase (e.g. ReMDM-loop: unmask / loop / finish)",
    "model_called": "whether the denoiser ran in this step (False: exact p(x0) cache hit or nothing to draw)",
    "n_masked": "masked tokens after the step, summed over samples",
    "n_unmasked": "tokens unmasked in the step, summed over samples",
    "n_remasked": "tokens remasked in the step, summed over samples",
    "seconds": "wall-clock seconds spent in the step",
}

EVENT_COLUMNS = {
    "sample": "sample index (depends only on the seed and this index)",
    "step": "step at which the change happened",
    "position": "token position",
    "kind": "unmask (mask -> token) or remask (token -> mask)",
    "token_id": "unmask: the decoded token; remask: the token that was removed",
    "token": "text of token_id",
    "prob": "unmask: p(x0) of the token (after nucleus filtering) at this step; remask: the prob it had when decoded",
    "p_transition": "probability the sampler gave this change (unmask prob of a masked position, or sigma)",
    "sigma": "remasking probability at this position at this step",
    "reason": "posterior (ancestral/ReMDM draw), confidence (ordering baseline), final_argmax (§1.8)",
}


def _cand_columns(k: int) -> list[str]:
    cols = []
    for i in range(1, k + 1):
        cols += [f"cand{i}_id", f"cand{i}_token", f"cand{i}_prob"]
    return cols


_DANGEROUS = ("=", "+", "-", "@", "\t", "\r", "'")


def neutralize(text: str) -> str:
    """Prefix one ``'`` to text a spreadsheet could read as a formula (and to text starting with ``'``)."""
    return "'" + text if text.startswith(_DANGEROUS) else text


def unneutralize(text: str) -> str:
    return text[1:] if text.startswith("'") else text


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_columns(df: pd.DataFrame, k: int, path) -> None:
    missing = [c for c in list(EVENT_COLUMNS) + _cand_columns(k) if c not in df.columns]
    if missing:
        raise ValueError(f"{path} lacks the trace columns {missing}; it was not written by "
                         "Trace.to_csv/to_parquet (or it was edited).")


def sidecar_path(path: str | os.PathLike) -> Path:
    return Path(str(path) + ".meta.json")


class Trace:
    """Everything one call of :func:`explorer.generate` (or :func:`explorer.resume`) did."""

    def __init__(self, *, initial: torch.Tensor, fixed: torch.Tensor, events: dict[str, np.ndarray],
                 steps: pd.DataFrame, meta: dict, final: torch.Tensor | None = None,
                 tokenizer: Any = None, token_texts: dict[int, str] | None = None):
        self.initial = initial.long().cpu()
        self.fixed = fixed.bool().cpu()
        self._ev = events
        self._steps = steps
        self.meta = meta
        self.tokenizer = tokenizer
        self._texts_cache: dict[int, str] = dict(token_texts or {})
        self._index = None
        self._final = None if final is None else final.long().cpu()

    # ------------------------------------------------------------------ basic facts
    @property
    def num_samples(self) -> int:
        return self.initial.shape[0]

    @property
    def seq_len(self) -> int:
        return self.initial.shape[1]

    @property
    def mask_id(self) -> int:
        return int(self.meta["mask_id"])

    @property
    def num_steps(self) -> int:
        return int(self.meta["steps"])

    @property
    def first_step(self) -> int:
        return int(self.meta.get("first_step", 0))

    @property
    def last_step(self) -> int:
        return int(self.meta["last_step"])

    @property
    def model_calls(self) -> int:
        return int(self.meta["model_calls"])

    @property
    def nfe(self) -> torch.Tensor:
        """LongTensor[num_samples]: model calls each sample would need on its own (batch size 1,
        the paper's NFE, with the exact cache of §1.7).  ``model_calls`` counts the batched calls."""
        return torch.tensor(self.meta.get("nfe", []), dtype=torch.long)

    @property
    def complete(self) -> bool:
        return bool(self.meta.get("complete", True))

    @property
    def recorded(self) -> bool:
        return bool(self.meta.get("record", True))

    @property
    def run_id(self) -> str:
        return self.meta["run_id"]

    @property
    def topk(self) -> int:
        return int(self.meta.get("topk", 0))

    def __repr__(self) -> str:
        s = self.meta.get("sampler", {}).get("name", "?")
        return (f"Trace({s}, T={self.num_steps}, samples={self.num_samples}, L={self.seq_len}, "
                f"events={len(self._ev['step'])}, model_calls={self.model_calls}"
                f"{'' if self.complete else ', INCOMPLETE'})")

    # ------------------------------------------------------------------ states
    def _build_index(self):
        if self._index is None:
            ev = self._ev
            span = self.last_step + 2
            key = (ev["sample"].astype(np.int64) * self.seq_len + ev["position"].astype(np.int64)) * span \
                + ev["step"].astype(np.int64)
            order = np.argsort(key, kind="stable")
            value = np.where(ev["kind"] == 0, ev["token_id"].astype(np.int64), self.mask_id)
            prob = np.where(ev["kind"] == 0, ev["prob"].astype(np.float64), np.nan)
            self._index = (key[order], value[order], prob[order], span)
        return self._index

    def _lookup(self, step: int):
        if not self.recorded and step not in (self.first_step, self.last_step):
            raise ValueError("this trace was generated with record=False: only the initial and final "
                             "states are kept. Generate again with record=True to scrub through steps.")
        if not isinstance(step, (int, np.integer)) or not self.first_step <= step <= self.last_step:
            raise ValueError(f"step={step!r} is outside this trace's steps "
                             f"[{self.first_step}, {self.last_step}].")
        keys, value, prob, span = self._build_index()
        cell = np.arange(self.num_samples * self.seq_len, dtype=np.int64)
        idx = np.searchsorted(keys, cell * span + int(step), side="right") - 1
        ok = idx >= 0
        ok[ok] = keys[idx[ok]] // span == cell[ok]
        return ok, idx, value, prob

    def state_at(self, step: int) -> torch.Tensor:
        """LongTensor[num_samples, L]: the tokens after ``step`` steps (0 = initial state)."""
        if not self.recorded and step == self.last_step and self._final is not None:
            return self._final.clone()
        ok, idx, value, _ = self._lookup(step)
        out = self.initial.flatten().numpy().copy()
        out[ok] = value[idx[ok]]
        return torch.from_numpy(out).view(self.num_samples, self.seq_len)

    def prob_at(self, step: int) -> torch.Tensor:
        """FloatTensor[num_samples, L]: p(x0) each current token had when it was decoded (nan if masked or given)."""
        ok, idx, _, prob = self._lookup(step)
        out = np.full(self.num_samples * self.seq_len, np.nan)
        out[ok] = prob[idx[ok]]
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
            if token_id == self.mask_id:
                text = "[MASK]"
            elif self.tokenizer is not None:
                text = self.tokenizer.decode([token_id])
            else:
                text = str(token_id)
            self._texts_cache[token_id] = text
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
        if "texts" in self.meta and self.tokenizer is None:
            return list(self.meta["texts"])
        start = self.meta.get("gen_start")
        if start is None:
            return [self.decode(row) for row in self.final]
        stops = set(self.meta.get("stop_ids") or [])
        rows = [row[start:] for row in self.final.tolist()]
        return [self.decode(row[:next((i for i, t in enumerate(row) if t in stops), len(row))]) for row in rows]

    # ------------------------------------------------------------------ tidy views
    @property
    def steps(self) -> pd.DataFrame:
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
        row = ev["cand_row"]
        has = row >= 0
        for i in range(self.topk):
            ids = np.full(len(row), -1, np.int64)
            probs = np.full(len(row), np.nan, np.float32)
            ids[has] = ev["cand_ids"][row[has], i]
            probs[has] = ev["cand_probs"][row[has], i]
            df[f"cand{i + 1}_id"] = ids
            df[f"cand{i + 1}_token"] = [self.token_text(j) if j >= 0 else "" for j in ids]
            df[f"cand{i + 1}_prob"] = probs
        order = np.lexsort((df["position"].to_numpy(), df["sample"].to_numpy(), df["step"].to_numpy()))
        return df.iloc[order].reset_index(drop=True)

    def changes_at(self, step: int) -> pd.DataFrame:
        """Which tokens changed at ``step``: from what, to what, with what probability."""
        ev = self.events
        ev = ev[ev["step"] == step].copy()
        before = self.state_at(step - 1) if step - 1 >= self.first_step else self.initial
        after = self.state_at(step)
        b, p = ev["sample"].to_numpy().copy(), ev["position"].to_numpy().copy()
        ev.insert(3, "from_id", before[b, p].numpy() if len(ev) else [])
        ev.insert(4, "from_token", [self.token_text(i) for i in ev["from_id"]])
        ev.insert(5, "to_id", after[b, p].numpy() if len(ev) else [])
        ev.insert(6, "to_token", [self.token_text(i) for i in ev["to_id"]])
        return ev.reset_index(drop=True)

    # ------------------------------------------------------------------ files
    def _sidecar(self, fmt: str, data_sha: str, neutralized: bool) -> dict:
        meta = dict(self.meta)
        meta.update({
            "format_version": FORMAT_VERSION, "data_format": fmt, "data_sha256": data_sha,
            "csv_formulas_neutralized": neutralized,
            "texts": self.texts,
            "initial": self.initial.tolist(), "fixed": self.fixed.tolist(),
            "final": None if self.recorded else self.final.tolist(),
            "steps_table": [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()}
                            for r in self._steps.to_dict(orient="records")],
            "event_columns": {**EVENT_COLUMNS, **{c: "top-k candidate of p(x0) before nucleus filtering "
                                                  "(unmask events only)" for c in _cand_columns(self.topk)}},
            "step_columns": STEP_COLUMNS,
            "token_texts": {str(k): v for k, v in self._texts_cache.items()},
        })
        return meta

    def _write(self, path, fmt: str, neutralize_formulas: bool = True) -> Path:
        path = Path(path)
        if path.is_dir():
            raise IsADirectoryError(f"{path} is a directory; give a file path such as {path / ('trace.' + fmt)}.")
        df = self.events
        df["kind"] = df["kind"].astype(str)
        df["reason"] = df["reason"].astype(str)
        text_cols = ["token"] + [f"cand{i + 1}_token" for i in range(self.topk)]
        state = {}

        def write_data(tmp: str):
            if fmt == "csv":
                out = df.copy()
                if neutralize_formulas:
                    for c in text_cols:
                        out[c] = [neutralize(v) for v in out[c]]
                out.to_csv(tmp, index=False, encoding="utf-8", lineterminator="\r\n",
                           quoting=csv.QUOTE_MINIMAL, na_rep="nan", float_format=None)
            else:
                df.to_parquet(tmp, index=False)
            state["sha"] = _sha256_file(Path(tmp))

        def write_meta(tmp: str):
            meta = self._sidecar(fmt, state["sha"], neutralize_formulas and fmt == "csv")
            Path(tmp).write_text(json.dumps(meta, indent=1, allow_nan=True), encoding="utf-8")

        atomic_write_many([(path, write_data), (sidecar_path(path), write_meta)])
        return path

    def to_csv(self, path, neutralize_formulas: bool = True) -> Path:
        """Write the audit CSV (events) and its ``.meta.json`` sidecar, atomically."""
        return self._write(path, "csv", neutralize_formulas)

    def to_parquet(self, path) -> Path:
        """Write the events as Parquet and the ``.meta.json`` sidecar, atomically."""
        return self._write(path, "parquet")

    @staticmethod
    def verify(path) -> bool:
        """True when the data file's sha256 matches the one recorded in its sidecar."""
        meta = json.loads(sidecar_path(path).read_text(encoding="utf-8"))
        return _sha256_file(Path(path)) == meta["data_sha256"]

    @classmethod
    def read(cls, path, tokenizer: Any = None) -> "Trace":
        """Read a trace written by :meth:`to_csv` or :meth:`to_parquet`."""
        path = Path(path)
        side = sidecar_path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no trace file at {path}.")
        if not side.is_file():
            raise FileNotFoundError(f"{path} has no metadata sidecar {side.name}; a trace is the data file "
                                    "plus <file>.meta.json written beside it by to_csv/to_parquet.")
        try:
            meta = json.loads(side.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{side} is not valid JSON ({e}); the sidecar is damaged.") from None
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{side} has format_version {meta.get('format_version')!r}; this explorer "
                             f"reads version {FORMAT_VERSION}.")
        k = int(meta.get("topk", 0))
        text_cols = ["token"] + [f"cand{i + 1}_token" for i in range(k)]
        float_cols = ["prob", "p_transition", "sigma"] + [f"cand{i + 1}_prob" for i in range(k)]
        if meta["data_format"] == "csv":
            df = pd.read_csv(path, encoding="utf-8", keep_default_na=False,
                             na_values={c: ["nan"] for c in float_cols},
                             dtype={**{c: str for c in text_cols}, **{c: np.float64 for c in float_cols}})
            _check_columns(df, k, path)
            if meta.get("csv_formulas_neutralized"):
                for c in text_cols:
                    df[c] = [unneutralize(v) for v in df[c]]
        else:
            df = pd.read_parquet(path)
        _check_columns(df, k, path)
        has = df["cand1_id"].to_numpy() >= 0 if k else np.zeros(len(df), bool)
        cand_row = np.full(len(df), -1, np.int32)
        cand_row[has] = np.arange(int(has.sum()), dtype=np.int32)
        events = {
            "cand_row": cand_row,
            "sample": df["sample"].to_numpy(np.int32), "step": df["step"].to_numpy(np.int32),
            "position": df["position"].to_numpy(np.int32),
            "kind": np.array([KINDS.index(v) for v in df["kind"].astype(str)], dtype=np.int8),
            "token_id": df["token_id"].to_numpy(np.int32),
            "prob": df["prob"].to_numpy(np.float32), "p_transition": df["p_transition"].to_numpy(np.float32),
            "sigma": df["sigma"].to_numpy(np.float32),
            "reason": np.array([REASONS.index(v) for v in df["reason"].astype(str)], dtype=np.int8),
            "cand_ids": np.stack([df[f"cand{i + 1}_id"].to_numpy(np.int32)[has] for i in range(k)], 1)
            if k else np.zeros((0, 0), np.int32),
            "cand_probs": np.stack([df[f"cand{i + 1}_prob"].to_numpy(np.float32)[has] for i in range(k)], 1)
            if k else np.zeros((0, 0), np.float32),
        }
        texts = {int(i): t for i, t in zip(df["token_id"], df["token"])}
        for i in range(k):
            texts.update({int(a): b for a, b in zip(df[f"cand{i + 1}_id"], df[f"cand{i + 1}_token"]) if a >= 0})
        texts.update({int(a): b for a, b in meta.get("token_texts", {}).items()})
        steps = pd.DataFrame.from_records(meta.pop("steps_table"), columns=list(STEP_COLUMNS))
        steps = steps.astype({"step": np.int64, "model_called": bool, "n_masked": np.int64,
                              "n_unmasked": np.int64, "n_remasked": np.int64, "phase": str})
        initial = torch.tensor(meta.pop("initial"), dtype=torch.long)
        fixed = torch.tensor(meta.pop("fixed"), dtype=torch.bool)
        final = meta.pop("final", None)
        for key in ("format_version", "data_format", "data_sha256", "csv_formulas_neutralized",
                    "event_columns", "step_columns", "token_texts"):
            meta.pop(key, None)
        return cls(initial=initial, fixed=fixed, events=events, steps=steps, meta=meta,
                   final=None if final is None else torch.tensor(final), tokenizer=tokenizer,
                   token_texts=texts)

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
