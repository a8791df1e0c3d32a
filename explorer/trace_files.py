"""Trace files: the events as CSV or Parquet beside a JSON sidecar, written atomically and read
back losslessly -- or refused, when damaged.

``write(trace, path, fmt)`` writes the events table plus a sidecar ``<path>.meta.json`` (the run
record: sampler settings, seed, model identity and weights sha256, package versions, device, time;
the steps table, the initial state -- for a resumed branch also ``initial_prob``, the p(x0) its
inherited tokens were decoded with -- and the sha256 of the data file), and the sha256 of the
sidecar's own content (``sidecar_sha256``), so an edit to either file is caught.  Both files are
written atomically.  ``Trace.to_csv`` / ``Trace.to_parquet`` / ``Trace.read`` / ``Trace.verify``
call the functions here.

Damage is refused, not loaded: :func:`read` checks the columns, every value's type and range
(integers, probabilities, kinds and reasons), the CSV quoting, the data against the sidecar
(event count and sha256), and the sidecar against its own sha256.  A damaged file raises
:class:`TraceFileError` (a ``ValueError``) naming the file and the first bad line (CSV, 1-based,
the header is line 1), row (Parquet, 1-based event row), column or sidecar key.
``read(path, verify=False)`` loads a file whose data no longer matches its sidecar (edited on
purpose, say) with a :class:`TraceFileWarning`, marked incomplete.  :func:`verify` never raises:
it returns a :class:`Verification`, falsy with a ``reason``.

CSV safety: the CSV is UTF-8, RFC 4180 (CRLF rows, fields with commas, quotes or newlines are
quoted, quotes doubled).  Token text is attacker-controlled (a model can emit ``=HYPERLINK(...)``),
so by default every text cell that starts with ``= + - @``, a tab or a carriage return -- or with
the escape character ``'`` itself -- gets one leading ``'``, which spreadsheets show as text.
:func:`read` removes it again.  Pass ``neutralize_formulas=False`` to write raw text.
"""
from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .io import atomic_write_many
from .trace_schema import EVENT_COLUMNS, KINDS, REASONS, STEP_COLUMNS, STEP_DTYPES, cand_columns

FORMAT_VERSION = 1

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


_CSV_HEAD = b"sample,step,position,kind,"


def _foreign_sidecar(path: Path, meta: dict) -> str | None:
    """Why the sidecar cannot be this file's (written for the other format), or None."""
    with open(path, "rb") as f:
        head = f.read(len(_CSV_HEAD))
    # every Parquet file starts with PAR1, every trace CSV with its header; anything else says nothing
    actual = "parquet" if head.startswith(b"PAR1") else "csv" if head == _CSV_HEAD else None
    if actual is None or actual == meta.get("data_format"):
        return None
    return (f"its sidecar was written for a {meta.get('data_format')} file, but {path.name} is a {actual} file: the "
            f"sidecar belongs to another file. Put beside it the {path.name}.meta.json written with it.")


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


def _initial_prob(side: Path, meta: dict, shape: tuple) -> torch.Tensor | None:
    """A branch's inherited p(x0) (null: nan), or None when the sidecar has none (a run from step 0, an older file)."""
    if meta.get("initial_prob") is None:
        return None
    prob = _sidecar_value(side, "initial_prob", lambda: torch.tensor(
        [[math.nan if p is None else float(p) for p in row] for row in meta["initial_prob"]], dtype=torch.float32))
    if tuple(prob.shape) != shape:
        raise TraceFileError(side, f"initial_prob has shape {list(prob.shape)}, initial {list(shape)}.",
                             key="initial_prob")
    return prob


def _steps_table(side: Path, records) -> pd.DataFrame:
    def convert():
        steps = pd.DataFrame.from_records(records, columns=list(STEP_COLUMNS))
        return steps.astype(STEP_DTYPES)
    return _sidecar_value(side, "steps_table", convert)


_INT_COLUMNS = ("sample", "step", "position", "token_id")
_FLOAT_COLUMNS = ("prob", "p_transition", "sigma")


def _columns(k: int) -> list[str]:
    return list(EVENT_COLUMNS) + cand_columns(k)


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
            raise TraceFileError(path, f"is not UTF-8 text ({e.reason}).", line=_first_non_utf8_line(path)) from None


def _first_non_utf8_line(path: Path) -> int:
    """The 1-based line holding the file's first byte sequence that is not UTF-8 (a line break is
    one byte in UTF-8, so no character spans two lines)."""
    with open(path, "rb") as f:
        for n, line in enumerate(f, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return n
    return n


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


def _check_record(side: Path, meta: dict, initial: torch.Tensor, ev: dict) -> None:
    """The run record's num_samples, seq_len and mask_id against the data they describe: an edited one
    would mislabel every text and mask of the trace, so it is refused even with verify=False."""
    fix = "Put back the sidecar written with this file (or set {key} to {actual})."
    for key, actual in (("num_samples", initial.shape[0]), ("seq_len", initial.shape[1])):
        if meta.get(key) is not None and meta[key] != actual:
            raise TraceFileError(side, f"{key} is {meta[key]!r}, but initial and fixed are "
                                 f"{list(initial.shape)} ([num_samples, L]).", key=key,
                                 fix=fix.format(key=key, actual=actual))
    # a position's first event, if an unmask, replaces the mask id that the initial state holds there
    cells, first = np.unique(ev["sample"] * initial.shape[1] + ev["position"], return_index=True)
    replaced = initial.flatten().numpy()[cells[ev["kind"][first] == KINDS.index("unmask")]]
    wrong = replaced[replaced != meta["mask_id"]]
    if len(wrong):
        raise TraceFileError(side, f"mask_id is {meta['mask_id']}, but the unmask events replace token "
                             f"{int(wrong[0])} of the initial state, so that is the run's mask id.", key="mask_id",
                             fix=fix.format(key="mask_id", actual=int(wrong[0])))


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
                        "recorded, so it changed after it was written (or the sidecar is another file's)")
    if _sidecar_edited(meta):
        problems.append("its sidecar's content no longer has the sidecar_sha256 recorded in it, so the sidecar "
                        "(settings, steps table or states) was edited after it was written")
    if not problems:
        return None
    odd = _first_out_of_order(steps)
    diff = _first_count_difference(steps, table) if meta.get("record", True) else None
    if odd is not None:    # events are written in step order: a row out of it had its step changed
        place = where(odd)
        problems.append(f"this row's step {int(steps[odd])} is out of the step order of the rows around it "
                        "(its step was changed)")
    elif diff is not None:   # point at the rows of the step whose count differs
        s, found, expected = diff
        at = np.flatnonzero(steps >= s)
        place = where(int(at[0]) if len(at) else len(steps))
        problems.append(f"step {s} has {found} event rows where the sidecar's steps table counts {expected} "
                        "(a row was deleted or added here)")
    return "; ".join(problems) + ".", place


def _first_out_of_order(steps: np.ndarray) -> int | None:
    """The first event row whose step breaks the file's step order, or None: of the first pair out
    of order, the row without which the order holds."""
    down = np.flatnonzero(np.diff(steps) < 0)
    if not len(down):
        return None
    i = int(down[0])            # steps[i] > steps[i + 1]
    return i if i == 0 or steps[i - 1] <= steps[i + 1] else i + 1



# ---------------------------------------------------------------------------- writing
def _sidecar(trace, events: pd.DataFrame, fmt: str, data_sha: str, neutralized: bool) -> dict:
    meta = {k: v for k, v in trace.meta.items() if k != "texts"}    # texts goes in its place below, also when read
    meta.update({
        "format_version": FORMAT_VERSION, "data_format": fmt, "data_sha256": data_sha,
        "csv_formulas_neutralized": neutralized, "num_events": len(events),
        "texts": trace.texts,
        "initial": trace.initial.tolist(), "fixed": trace.fixed.tolist(),
        "final": None if trace.recorded else trace.final.tolist(),
        # a branch's p(x0) of the tokens it inherited (resume reads them; nan written as null)
        **({} if trace.initial_prob.isnan().all() else {"initial_prob": [[None if math.isnan(p) else p for p in row]
                                                                           for row in trace.initial_prob.tolist()]}),
        "steps_table": [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()}
                        for r in trace.steps.to_dict(orient="records")],
        **(trace.column_docs or {
            "event_columns": {**EVENT_COLUMNS, **{c: "top-k candidate of p(x0) before nucleus filtering "
                                                  "(unmask events only)" for c in cand_columns(trace.topk)}},
            "step_columns": STEP_COLUMNS}),
        "token_texts": {str(k): v for k, v in trace.token_texts.items()},
    })
    return meta


def write(trace, path, fmt: str, neutralize_formulas: bool = True) -> Path:
    """Write ``trace``'s events as ``fmt`` ("csv" or "parquet") and its sidecar, atomically, creating
    missing parent folders (:mod:`explorer.io`)."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory; give a file path such as {path / ('trace.' + fmt)}.")
    df = trace.events
    df["kind"] = df["kind"].astype(str)
    df["reason"] = df["reason"].astype(str)
    text_cols = ["token"] + [f"cand{i + 1}_token" for i in range(trace.topk)]
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
        meta = _sidecar(trace, df, fmt, state["sha"], neutralize_formulas and fmt == "csv")
        meta = json.loads(json.dumps(meta, allow_nan=True))     # as a reader will parse it
        meta["sidecar_sha256"] = _sidecar_digest(meta)
        Path(tmp).write_text(json.dumps(meta, indent=1, allow_nan=True), encoding="utf-8")

    atomic_write_many([(path, write_data), (sidecar_path(path), write_meta)])
    return path


# ---------------------------------------------------------------------------- reading
def verify(path) -> Verification:
    """Whether the data file still matches the sha256 its sidecar recorded, and the sidecar its own.
    Never raises.

    Returns a :class:`Verification`: truthy when it matches; falsy, with ``.reason`` saying
    why, when the data file or the sidecar is missing or unreadable, the data changed, or the
    sidecar was edited.
    (:func:`read` checks much more: types, kinds, quoting and the event count.)
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
        foreign = _foreign_sidecar(path, meta)
        return Verification(False, f"{path}: {foreign}" if foreign else
                            f"{path} has sha256 {sha[:12]}..., its sidecar recorded {recorded[:12]}...: the file "
                            "changed after it was written (or the sidecar is another file's)")
    if _sidecar_edited(meta):
        return Verification(False, f"{side} no longer matches the sidecar_sha256 recorded in it: the sidecar "
                                   "was edited after it was written")
    if meta.get("sidecar_sha256") is None:
        return Verification(True, f"{path} matches the sha256 recorded in {side.name}; the sidecar itself records "
                            "no sidecar_sha256 (an older file, or one whose digest was removed), so its settings "
                            "and steps table are not checked")
    return Verification(True, f"{path} matches the sha256 recorded in {side.name}")


_FILE_KEYS = ("format_version", "data_format", "data_sha256", "sidecar_sha256", "csv_formulas_neutralized",
              "num_events", "event_columns", "step_columns", "token_texts", "steps_table", "initial", "fixed",
              "final", "initial_prob")


def read(path, verify: bool = True) -> dict:
    """The parts of a trace written by :func:`write` (the keyword arguments of ``Trace``), refusing damage.

    Raises :class:`TraceFileError` (a ``ValueError``) naming the file and the first bad line,
    row, column or sidecar key when the sidecar is missing or broken, a column is missing, a
    value has the wrong type, kind or range, the CSV quoting is broken, or the sidecar's
    num_samples, seq_len or mask_id contradict the data; and when the data
    no longer matches its sidecar (event count, sha256) or the sidecar its own recorded sha256
    (an edited setting or steps table) -- unless ``verify=False``, which loads
    such a file anyway with a :class:`TraceFileWarning`: the record's ``complete`` is then False
    and its ``incomplete_reason`` says why.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no trace file at {path}.")
    side = sidecar_path(path)
    meta = _read_sidecar(path)
    initial, fixed, final = _states(side, meta)
    initial_prob = _initial_prob(side, meta, tuple(initial.shape))
    steps = _steps_table(side, meta["steps_table"])
    sha = _sha256_file(path)
    foreign = _foreign_sidecar(path, meta) if sha != meta["data_sha256"] else None
    if foreign is not None:
        raise TraceFileError(path, foreign, key="data_format", fix=None)
    k = int(meta.get("topk", 0))
    if meta["data_format"] == "csv":   # a file that changed gets the strict RFC 4180 pass first
        df, where = _read_csv_events(path, k, bool(meta.get("csv_formulas_neutralized")),
                                     scan=sha != meta["data_sha256"])
    else:
        df, where = _read_parquet_events(path, k)
    ev = _event_arrays(path, df, meta, tuple(initial.shape), where)
    _check_record(side, meta, initial, ev)
    mismatch = _sidecar_mismatch(meta, sha, ev["step"], steps, where)
    if mismatch is not None:
        problem, place = mismatch
        if verify:
            raise TraceFileError(path, problem, **place, fix=_LOAD_ANYWAY)
        reason = str(TraceFileError(path, problem, **place, fix=None))
        warnings.warn(f"{reason} Loaded anyway (verify=False): trace.complete is False.", TraceFileWarning,
                      stacklevel=3)
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
    found = _texts_of(ev["token_id"], df["token"])
    for i in range(k):
        found.update(_texts_of(ev[f"cand{i + 1}_id"], df[f"cand{i + 1}_token"]))
    # the sidecar's texts win and keep the sidecar's order, so that writing the trace back gives the same bytes
    texts = _sidecar_value(side, "token_texts",
                           lambda: {int(a): str(b) for a, b in meta.get("token_texts", {}).items()})
    texts.update((i, text) for i, text in found.items() if i not in texts)
    # the file's own words for its columns, so that writing it back gives the same sidecar (their
    # wording has been corrected since some files were written)
    docs = {key: meta[key] for key in ("event_columns", "step_columns") if isinstance(meta.get(key), dict)}
    for key in _FILE_KEYS:
        meta.pop(key, None)
    return dict(initial=initial, fixed=fixed, events=events, steps=steps, meta=meta, final=final,
                token_texts=texts, column_docs=docs if len(docs) == 2 else None, initial_prob=initial_prob)
