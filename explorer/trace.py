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
versions, device, time, the steps table, the initial state and the sha256 of the data file), and
the sha256 of the sidecar's own content (``sidecar_sha256``), so an edit to either file is caught.
``Trace.read(path)`` reads either back losslessly.  Both files are written atomically.

Damage is refused, not loaded: ``Trace.read`` checks the columns, every value's type and range
(integers, probabilities, kinds and reasons), the CSV quoting, the data against the sidecar
(event count and sha256), and the sidecar against its own sha256.  A damaged file raises :class:`TraceFileError` (a ``ValueError``) naming
the file and the first bad line (CSV, 1-based, the header is line 1), row (Parquet, 1-based event
row), column or sidecar key.  ``Trace.read(path, verify=False)`` loads a file whose data no longer
matches its sidecar (edited on purpose, say) with a :class:`TraceFileWarning`, marked incomplete.
``Trace.verify(path)`` never raises: it returns a :class:`Verification`, falsy with a ``reason``.

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
import warnings
from dataclasses import dataclass
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


def _sidecar_digest(meta: dict) -> str:
    """sha256 of a sidecar's own content (every key but ``sidecar_sha256``), as canonical JSON.

    ``meta`` must be as JSON gives it back (string keys, lists): the writer digests the round-tripped
    dict, so the reader, which has only the parsed file, computes the same value.
    """
    body = {k: v for k, v in meta.items() if k != "sidecar_sha256"}
    text = json.dumps(body, sort_keys=True, allow_nan=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _sidecar_edited(meta: dict) -> bool:
    """True when the sidecar records its own sha256 and its content no longer has it (older
    sidecars, written before the digest existed, record none and are taken as they are)."""
    recorded = meta.get("sidecar_sha256")
    return recorded is not None and recorded != _sidecar_digest(meta)


def sidecar_path(path: str | os.PathLike) -> Path:
    return Path(str(path) + ".meta.json")


# ---------------------------------------------------------------------------- checking trace files
_REWRITE = ("The file was changed or cut short after it was written: restore a copy, or write it again "
            "with Trace.to_csv / Trace.to_parquet.")
_LOAD_ANYWAY = ("If the change was on purpose, Trace.read(path, verify=False) loads it anyway, marked "
                "incomplete (trace.complete is False).")


class TraceFileError(ValueError):
    """A trace file or its sidecar is damaged, or the two no longer match.

    The message names the file and the first bad place that can be known: ``line`` (CSV, 1-based;
    the header is line 1; a quoted token with a line break spans two lines), ``row`` (Parquet,
    1-based event row), ``column``, or ``key`` (sidecar).  The same facts are attributes.
    """

    def __init__(self, path, problem: str, *, line: int | None = None, row: int | None = None,
                 column: str | None = None, key: str | None = None, fix: str | None = _REWRITE):
        self.path, self.problem = Path(path), problem
        self.line, self.row, self.column, self.key = line, row, column, key
        where = ", ".join(w for w in (f"line {line}" if line is not None else "",
                                      f"row {row}" if row is not None else "",
                                      f"column {column!r}" if column else "",
                                      f"key {key!r}" if key else "") if w)
        super().__init__(f"{path}{f' ({where})' if where else ''}: {problem}{f' {fix}' if fix else ''}")


class TraceSidecarMissing(TraceFileError, FileNotFoundError):
    """The data file has no ``<path>.meta.json`` beside it (also a ``FileNotFoundError``)."""


class TraceFileWarning(UserWarning):
    """``Trace.read(path, verify=False)`` loaded a data file that does not match its sidecar."""


@dataclass(frozen=True)
class Verification:
    """What :meth:`Trace.verify` found: truthy when the data file matches its sidecar; ``reason`` says why (not)."""

    ok: bool
    reason: str

    def __bool__(self) -> bool:
        return self.ok


_SIDECAR_KEYS = ("format_version", "data_format", "data_sha256", "run_id", "steps", "last_step", "mask_id",
                 "model_calls", "steps_table", "initial", "fixed")


def _read_sidecar(path: Path) -> dict:
    """The sidecar of ``path`` as a dict, its required keys present and typed; TraceFileError otherwise."""
    side = sidecar_path(path)
    if not side.is_file():
        raise TraceSidecarMissing(path, f"has no metadata sidecar {side.name}; a trace is the data file plus "
                                  "<file>.meta.json written beside it by to_csv/to_parquet.",
                                  fix="Copy the sidecar together with the data file.")
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise TraceFileError(side, f"is not valid JSON ({e.msg}, column {e.colno}); the sidecar is damaged.",
                             line=e.lineno) from None
    except (OSError, UnicodeDecodeError) as e:
        raise TraceFileError(side, f"cannot be read ({e}).") from None
    if not isinstance(meta, dict):
        raise TraceFileError(side, f"holds a JSON {type(meta).__name__}, not the object of a trace sidecar.")
    if meta.get("format_version") != FORMAT_VERSION:
        raise TraceFileError(side, f"has format_version {meta.get('format_version')!r}; this explorer reads "
                             f"version {FORMAT_VERSION}.", key="format_version", fix=None)
    missing = [k for k in _SIDECAR_KEYS if k not in meta]
    if missing:
        raise TraceFileError(side, f"lacks the keys {missing} that every trace sidecar has.", key=missing[0])
    for key in ("steps", "last_step", "mask_id", "model_calls", "first_step", "topk", "num_events", "vocab_size"):
        v = meta.get(key)
        if v is None and key not in _SIDECAR_KEYS:     # optional (older sidecars lack num_events)
            continue
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise TraceFileError(side, f"{key} is {v!r}, not an integer >= 0.", key=key)
    if meta["data_format"] not in ("csv", "parquet"):
        raise TraceFileError(side, f"data_format is {meta['data_format']!r}, not 'csv' or 'parquet'.",
                             key="data_format")
    if not isinstance(meta["data_sha256"], str):
        raise TraceFileError(side, f"data_sha256 is {meta['data_sha256']!r}, not a hex digest.", key="data_sha256")
    return meta


def _sidecar_value(side: Path, key: str, convert):
    """``convert(...)`` of one sidecar entry, a TraceFileError naming the key if it does not convert."""
    try:
        return convert()
    except (TypeError, ValueError, KeyError, RuntimeError, OverflowError) as e:
        raise TraceFileError(side, f"{key} cannot be read ({type(e).__name__}: {e}).", key=key) from None


def _states(side: Path, meta: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    initial = _sidecar_value(side, "initial", lambda: torch.tensor(meta["initial"], dtype=torch.long))
    fixed = _sidecar_value(side, "fixed", lambda: torch.tensor(meta["fixed"], dtype=torch.bool))
    final = meta.get("final")
    final = None if final is None else _sidecar_value(side, "final", lambda: torch.tensor(final, dtype=torch.long))
    if initial.dim() != 2:
        raise TraceFileError(side, f"initial has shape {list(initial.shape)}, not [num_samples, L].", key="initial")
    for key, t in (("fixed", fixed), ("final", final)):
        if t is not None and t.shape != initial.shape:
            raise TraceFileError(side, f"{key} has shape {list(t.shape)}, initial {list(initial.shape)}.", key=key)
    return initial, fixed, final


def _steps_table(side: Path, records) -> pd.DataFrame:
    def convert():
        steps = pd.DataFrame.from_records(records, columns=list(STEP_COLUMNS))
        return steps.astype({"step": np.int64, "model_called": bool, "n_masked": np.int64,
                             "n_unmasked": np.int64, "n_remasked": np.int64, "phase": str})
    return _sidecar_value(side, "steps_table", convert)


_INT_COLUMNS = ("sample", "step", "position", "token_id")
_FLOAT_COLUMNS = ("prob", "p_transition", "sigma")


def _columns(k: int) -> list[str]:
    return list(EVENT_COLUMNS) + _cand_columns(k)


def _int_columns(k: int) -> list[str]:
    return list(_INT_COLUMNS) + [f"cand{i + 1}_id" for i in range(k)]


def _float_columns(k: int) -> list[str]:
    return list(_FLOAT_COLUMNS) + [f"cand{i + 1}_prob" for i in range(k)]


def _check_columns(df: pd.DataFrame, k: int, path, line: int | None = None) -> None:
    expected = _columns(k)
    missing = [c for c in expected if c not in df.columns]
    extra = [c for c in df.columns if c not in expected]
    if missing or extra:
        what = (f"lacks the trace columns {missing}" if missing else "") + ("; " if missing and extra else "") \
            + (f"has columns a trace does not have {extra}" if extra else "")
        raise TraceFileError(path, f"{what}; it was not written by Trace.to_csv/to_parquet (or its header was "
                             f"edited; the sidecar says top-k = {k}).", line=line, column=(missing or extra)[0])


def _check_csv_structure(path: Path) -> None:
    """Refuse the first record that is not RFC 4180 (strict quoting) or has another field count than the header."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f, strict=True)
        end, width = 0, None
        try:
            for record in reader:
                start, end = end + 1, reader.line_num
                if width is None:
                    width = len(record)
                elif not record:
                    raise TraceFileError(path, "is an empty line; a trace CSV has none.", line=start)
                elif len(record) != width:
                    raise TraceFileError(path, f"has {len(record)} fields where the header has {width} (a field "
                                         "was cut off or added, or a comma is not inside quotes).", line=start)
        except csv.Error as e:
            problem = ("opens a quoted field that is never closed (the file ends inside quotes)"
                       if "end of data" in str(e) else
                       f"has broken CSV quoting ({e}): a field with a comma, quote or line break must be "
                       "enclosed in double quotes, with its quotes doubled")
            raise TraceFileError(path, problem + ".", line=end + 1) from None
        except UnicodeDecodeError as e:
            raise TraceFileError(path, f"is not UTF-8 text ({e.reason}, after line {end}).") from None


def _csv_line(path: Path, index: int) -> int:
    """The 1-based line on which event row ``index`` (0-based) starts; past the end, the line after the last."""
    end = 0
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.reader(f)
        try:
            for n, _ in enumerate(reader):
                if n == index + 1:
                    break
                end = reader.line_num
        except csv.Error:
            pass
    return end + 1


def _read_csv_events(path: Path, k: int, neutralized: bool, scan: bool):
    """The events table, and ``where(i)`` naming the line of event row i.

    Fast path: the columns parsed with their types.  If that fails, every cell is read as text so
    that the checks of :func:`_event_arrays` can name the first bad one.
    """
    if path.stat().st_size == 0:
        raise TraceFileError(path, "is empty (0 bytes); a trace CSV starts with its header line.")
    if scan:
        _check_csv_structure(path)
    floats = _float_columns(k)
    typed = {**{c: str for c in _columns(k)}, **{c: np.float64 for c in floats},
             **{c: np.int64 for c in _int_columns(k)}}
    try:
        df = pd.read_csv(path, encoding="utf-8", dtype=typed, keep_default_na=False,
                         na_values={c: ["nan"] for c in floats}, index_col=False)
    except (ValueError, TypeError, OverflowError, csv.Error):   # pandas' parser errors are ValueErrors
        try:
            df = pd.read_csv(path, encoding="utf-8", dtype=str, keep_default_na=False, na_filter=False,
                             index_col=False)
        except (ValueError, csv.Error) as e:
            _check_csv_structure(path)                 # names the line when it can
            raise TraceFileError(path, f"cannot be parsed as CSV ({type(e).__name__}: {e}).") from None
    _check_columns(df, k, path, line=1)
    if neutralized:
        for c in ["token"] + [f"cand{i + 1}_token" for i in range(k)]:
            df[c] = df[c].astype(str).str.removeprefix("'")     # unneutralize, column-wise
    return df, lambda i: {"line": _csv_line(path, i)}


def _read_parquet_events(path: Path, k: int):
    """The events table, and ``where(i)`` naming event row i (1-based)."""
    try:
        df = pd.read_parquet(path)
    except ImportError:
        raise
    except Exception as e:  # pyarrow reports damage as ArrowInvalid, OSError, ...: one clear error instead
        raise TraceFileError(path, f"is not a readable Parquet file ({type(e).__name__}: {e}).") from None
    _check_columns(df, k, path)
    return df, lambda i: {"row": i + 1}


def _int_column(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """int64 values, and a mask of the entries that are not integers."""
    if values.dtype.kind in "iu":
        return values.to_numpy(np.int64), np.zeros(len(values), bool)
    text = values.astype(str)
    ok = text.str.fullmatch(r"[+-]?[0-9]{1,18}").to_numpy(bool)
    out = np.zeros(len(values), np.int64)
    out[ok] = text[ok].astype(np.int64).to_numpy()
    return out, ~ok


def _float_column(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """float64 values, and a mask of the entries that are not numbers (``nan`` is a number here)."""
    if values.dtype.kind in "fiu":
        return values.to_numpy(np.float64), np.zeros(len(values), bool)
    text = values.astype(str)
    out = pd.to_numeric(text, errors="coerce").to_numpy(np.float64)
    return out, np.isnan(out) & (text.str.lower() != "nan").to_numpy(bool)


def _event_arrays(path: Path, df: pd.DataFrame, meta: dict, shape: tuple[int, int], where) -> dict:
    """Typed event columns; a TraceFileError at the first value of the wrong type, kind or range."""
    k = int(meta.get("topk", 0))
    n_samples, seq_len = shape
    top = int(meta["vocab_size"]) - 1 if meta.get("vocab_size") else np.iinfo(np.int32).max
    out, bad = {}, []

    def check(name, values, wrong, expected):
        out[name] = values
        hit = np.flatnonzero(wrong)
        if len(hit):
            bad.append((int(hit[0]), name, expected))

    ints = [("sample", 0, n_samples - 1), ("step", int(meta.get("first_step", 0)) + 1, int(meta["last_step"])),
            ("position", 0, seq_len - 1), ("token_id", 0, top)] + [(f"cand{i + 1}_id", -1, top) for i in range(k)]
    for name, lo, hi in ints:
        v, wrong = _int_column(df[name])
        check(name, v, wrong | (v < lo) | (v > hi), f"an integer in [{lo}, {hi}]")
    for name in _float_columns(k):
        v, wrong = _float_column(df[name])
        if name in ("p_transition", "sigma"):
            check(name, v, wrong, "a number (or nan)")
        else:   # p(x0) of a token
            check(name, v, wrong | (v < 0) | (v > 1), "a probability in [0, 1] (or nan)")
    for name, choices in (("kind", KINDS), ("reason", REASONS)):
        codes = pd.Index(list(choices)).get_indexer(df[name].astype(str))
        check(name, codes.astype(np.int8), codes < 0, "one of " + ", ".join(choices))
    if bad:
        i, name, expected = min(bad)
        raise TraceFileError(path, f"{name} is {str(df[name].iloc[i])!r}; expected {expected}.", column=name,
                             **where(i))
    return out


def _texts_of(ids: np.ndarray, texts: pd.Series) -> dict[int, str]:
    """{token id: its text} from an id column and its text column (ids < 0: no candidate)."""
    pairs = pd.DataFrame({"id": ids, "text": texts.to_numpy()}).drop_duplicates("id", keep="last")
    pairs = pairs[pairs["id"] >= 0]
    return dict(zip(pairs["id"].tolist(), pairs["text"].tolist()))


def _first_count_difference(steps: np.ndarray, table: pd.DataFrame):
    """(step, event rows found, rows the steps table counts) at the first step where they differ, or None."""
    expected = dict(zip(table["step"].tolist(), (table["n_unmasked"] + table["n_remasked"]).tolist()))
    found = dict(zip(*(a.tolist() for a in np.unique(steps, return_counts=True))))
    for s in sorted(set(expected) | set(found)):
        if found.get(s, 0) != expected.get(s, 0):
            return s, found.get(s, 0), expected.get(s, 0)
    return None


def _sidecar_mismatch(meta: dict, sha: str, steps: np.ndarray, table: pd.DataFrame, where):
    """How the data differs from what its sidecar recorded: (problem, place) or None when it matches."""
    problems, place = [], {}
    recorded = meta.get("num_events")
    if recorded is not None and recorded != len(steps):
        problems.append(f"it has {len(steps)} event rows but its sidecar recorded {recorded}")
    if sha != meta["data_sha256"]:
        problems.append(f"its sha256 {sha[:12]}... is not the {meta['data_sha256'][:12]}... its sidecar "
                        "recorded, so it changed after it was written")
    if _sidecar_edited(meta):
        problems.append("its sidecar's content no longer has the sidecar_sha256 recorded in it, so the sidecar "
                        "(settings, steps table or states) was edited after it was written")
    if not problems:
        return None
    diff = _first_count_difference(steps, table) if meta.get("record", True) else None
    if diff is not None:   # events are written in step order: point at the step whose rows differ
        s, found, expected = diff
        at = np.flatnonzero(steps >= s)
        place = where(int(at[0]) if len(at) else len(steps))
        problems.append(f"step {s} has {found} event rows where the sidecar's steps table counts {expected} "
                        "(a row was deleted or added here)")
    return "; ".join(problems) + ".", place


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
            "csv_formulas_neutralized": neutralized, "num_events": len(self._ev["step"]),
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
            meta = json.loads(json.dumps(meta, allow_nan=True))     # as a reader will parse it
            meta["sidecar_sha256"] = _sidecar_digest(meta)
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
    def verify(path) -> Verification:
        """Whether the data file still matches the sha256 its sidecar recorded, and the sidecar its own.
        Never raises.

        Returns a :class:`Verification`: truthy when it matches; falsy, with ``.reason`` saying
        why, when the data file or the sidecar is missing or unreadable, the data changed, or the
        sidecar was edited.
        (``Trace.read`` checks much more: types, kinds, quoting and the event count.)
        """
        path = Path(path)
        side = sidecar_path(path)
        if not path.is_file():
            return Verification(False, f"no data file at {path}")
        if not side.is_file():
            return Verification(False, f"{path} has no sidecar {side.name} beside it")
        try:
            meta = json.loads(side.read_text(encoding="utf-8"))
            sha = _sha256_file(path)
        except (OSError, ValueError, RecursionError) as e:    # JSON and UTF-8 errors are ValueErrors
            return Verification(False, f"{side} cannot be read ({type(e).__name__}: {e})")
        recorded = meta.get("data_sha256") if isinstance(meta, dict) else None
        if not isinstance(recorded, str):
            return Verification(False, f"{side} records no data_sha256")
        if sha != recorded:
            return Verification(False, f"{path} has sha256 {sha[:12]}..., its sidecar recorded {recorded[:12]}...: "
                                       "the file changed after it was written")
        if _sidecar_edited(meta):
            return Verification(False, f"{side} no longer matches the sidecar_sha256 recorded in it: the sidecar "
                                       "was edited after it was written")
        return Verification(True, f"{path} matches the sha256 recorded in {side.name}")

    @classmethod
    def read(cls, path, tokenizer: Any = None, verify: bool = True) -> "Trace":
        """Read a trace written by :meth:`to_csv` or :meth:`to_parquet`, refusing damage.

        Raises :class:`TraceFileError` (a ``ValueError``) naming the file and the first bad line,
        row, column or sidecar key when the sidecar is missing or broken, a column is missing, a
        value has the wrong type, kind or range, or the CSV quoting is broken; and when the data
        no longer matches its sidecar (event count, sha256) or the sidecar its own recorded sha256
        (an edited setting or steps table) -- unless ``verify=False``, which loads
        such a file anyway with a :class:`TraceFileWarning`: ``trace.complete`` is then False and
        ``trace.meta["incomplete_reason"]`` says why.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no trace file at {path}.")
        side = sidecar_path(path)
        meta = _read_sidecar(path)
        initial, fixed, final = _states(side, meta)
        steps = _steps_table(side, meta["steps_table"])
        sha = _sha256_file(path)
        k = int(meta.get("topk", 0))
        if meta["data_format"] == "csv":   # a file that changed gets the strict RFC 4180 pass first
            df, where = _read_csv_events(path, k, bool(meta.get("csv_formulas_neutralized")),
                                         scan=sha != meta["data_sha256"])
        else:
            df, where = _read_parquet_events(path, k)
        ev = _event_arrays(path, df, meta, tuple(initial.shape), where)
        mismatch = _sidecar_mismatch(meta, sha, ev["step"], steps, where)
        if mismatch is not None:
            problem, place = mismatch
            if verify:
                raise TraceFileError(path, problem, **place, fix=_LOAD_ANYWAY)
            reason = str(TraceFileError(path, problem, **place, fix=None))
            warnings.warn(f"{reason} Loaded anyway (verify=False): trace.complete is False.", TraceFileWarning,
                          stacklevel=2)
            meta["complete"], meta["incomplete_reason"] = False, reason
        has = ev["cand1_id"] >= 0 if k else np.zeros(len(df), bool)
        cand_row = np.full(len(df), -1, np.int32)
        cand_row[has] = np.arange(int(has.sum()), dtype=np.int32)
        events = {
            "cand_row": cand_row,
            **{c: ev[c].astype(np.int32) for c in _INT_COLUMNS},
            **{c: ev[c].astype(np.float32) for c in _FLOAT_COLUMNS},
            "kind": ev["kind"], "reason": ev["reason"],
            "cand_ids": np.stack([ev[f"cand{i + 1}_id"].astype(np.int32)[has] for i in range(k)], 1)
            if k else np.zeros((0, 0), np.int32),
            "cand_probs": np.stack([ev[f"cand{i + 1}_prob"].astype(np.float32)[has] for i in range(k)], 1)
            if k else np.zeros((0, 0), np.float32),
        }
        texts = _texts_of(ev["token_id"], df["token"])
        for i in range(k):
            texts.update(_texts_of(ev[f"cand{i + 1}_id"], df[f"cand{i + 1}_token"]))
        texts.update(_sidecar_value(side, "token_texts",
                                    lambda: {int(a): str(b) for a, b in meta.get("token_texts", {}).items()}))
        for key in ("format_version", "data_format", "data_sha256", "sidecar_sha256", "csv_formulas_neutralized",
                    "num_events",
                    "event_columns", "step_columns", "token_texts", "steps_table", "initial", "fixed", "final"):
            meta.pop(key, None)
        return cls(initial=initial, fixed=fixed, events=events, steps=steps, meta=meta,
                   final=final, tokenizer=tokenizer,
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
