"""Remasking as repair, measured on ``orders``: plant one wrong coupled field, refine, count.

The study (issue 13):

1. take valid sequences (drawn from the task's generator, so every record keeps every rule);
2. :func:`plant` one wrong coupled field in every other record -- a wrong ``currency`` (breaks the
   rule ``currency``: it is the country's) or a wrong ``total`` (breaks ``total`` = price x qty),
   chosen at random per record and recorded;
3. rewrite the sequences with :func:`explorer.refine` (ReMDM's loop phase at constant alpha,
   reference §2.5) for T steps;
4. :func:`outcomes` / :func:`summarise`: the share of planted records *repaired* (valid at the
   end, whichever side of the rule was rewritten) and the share of untouched records *still valid*,
   each with a standard error that treats a sequence as a cluster
   (:func:`explorer.metrics.validity.cluster_stderr`: its records share one run).

MDLM is measured the same way and repairs nothing, by construction: it only ever writes masked
positions, and a complete sequence has none.

Command line (the numbers in ``data/models/orders/README.md``, section "Repair"; the parser is
``explorer.cli.orders``)::

    nice -n 19 explorer repair --sequences 64 --steps 16 32 64 128 256 512 \\
        --out data/sweeps/orders_repair.csv
"""
from __future__ import annotations

import json
import time
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from ..io import atomic_write
from ..metrics.validity import cluster_stderr
from ..refine import refine
from ..samplers import MDLM, ReMDMRefine
from ..tasks import orders

__all__ = ["PLANT_FIELDS", "STRIP_KINDS", "plant", "planted_refine", "outcomes", "summarise", "measure", "rule_text",
           "record_status", "repair_story", "strip_table"]

# the planted field -> the rule it breaks (the field is the dependent side of that rule)
PLANT_FIELDS: dict[str, str] = {"currency": "currency", "total": "total"}


def rule_text(rule: str) -> str:
    """``"currency ≠ country"``, ``"total ≠ price, qty"``: the rule's dependent field against the
    fields it is computed from (``orders.RULE_FIELDS``)."""
    fields = orders.RULE_FIELDS[rule]
    dependent = rule if rule in fields else fields[-1]
    return f"{dependent} ≠ {', '.join(f for f in fields if f != dependent)}"


def _correct_value(field: str, words: list[str]) -> str:
    rec = orders.parse(" ".join(words))[0]
    if field == "currency":
        return orders.COUNTRIES[rec["country"]][0]
    if field == "total":
        return str(int(rec["price"]) * int(rec["qty"]))
    raise ValueError(f"cannot plant {field!r}; choose one of {sorted(PLANT_FIELDS)}.")


def plant(ids, seed: int = 0, fields: Sequence[str] = tuple(PLANT_FIELDS), every: int = 2,
          first: int = 1) -> tuple[torch.Tensor, pd.DataFrame]:
    """Plant one wrong coupled field in records ``first, first + every, ...`` of each sequence.

    ``ids``: LongTensor[N, SEQ_LEN] of valid sequences (checked). For each planted record a field
    is drawn uniformly from ``fields`` and its value uniformly from the field's vocabulary minus
    the value the rule requires, so exactly that one rule breaks. Returns the planted ids and one
    row per planted record: ``sample, record, field, rule, position, original, planted``.
    """
    ids = torch.as_tensor(ids).long()
    if ids.dim() != 2 or ids.shape[1] != orders.SEQ_LEN:
        raise ValueError(f"ids must be [N, {orders.SEQ_LEN}] orders sequences, got shape {tuple(ids.shape)}.")
    for f in fields:
        if f not in PLANT_FIELDS:
            raise ValueError(f"cannot plant {f!r}; choose among {sorted(PLANT_FIELDS)}.")
    if not (isinstance(every, int) and every >= 1 and isinstance(first, int) and 0 <= first < every):
        raise ValueError(f"need every >= 1 and 0 <= first < every, got every={every!r}, first={first!r}.")
    gen = np.random.default_rng(seed)
    out = ids.clone()
    rows = []
    for i in range(ids.shape[0]):
        text = orders.decode(ids[i])
        if not all(orders.record_validity(text)):
            raise ValueError(f"sequence {i} already breaks a rule; plant() needs valid sequences "
                             "(e.g. orders.eval_tensor(n, seed)).")
        words = text.split()
        for r in range(first, orders.RECORDS_PER_SEQ, every):
            field = fields[int(gen.integers(len(fields)))]
            rec = words[r * orders.RECORD_LEN:(r + 1) * orders.RECORD_LEN]
            want = _correct_value(field, rec)
            choices = [v for v in orders.FIELD_DOMAINS[field] if v != want]
            wrong = choices[int(gen.integers(len(choices)))]
            pos = r * orders.RECORD_LEN + orders.FIELD_POS[field]
            out[i, pos] = orders.TOKEN_ID[wrong]
            rows.append({"sample": i, "record": r, "field": field, "rule": PLANT_FIELDS[field],
                         "position": pos, "original": want, "planted": wrong})
    return out, pd.DataFrame(rows, columns=["sample", "record", "field", "rule", "position", "original", "planted"])


def outcomes(final, plants: pd.DataFrame) -> pd.DataFrame:
    """One row per record of ``final`` (ids [N, SEQ_LEN] after refining): ``sample, record, planted,
    field, valid`` and, for planted records, ``field_rewritten`` (the planted token is gone)."""
    final = torch.as_tensor(final).long()
    table = orders.record_table([orders.decode(row) for row in final])[["sample", "record", "valid"]]
    p = plants.set_index(["sample", "record"])
    key = list(zip(table["sample"], table["record"]))
    table.insert(2, "planted", [k in p.index for k in key])
    table.insert(3, "field", [p.loc[k, "field"] if k in p.index else "" for k in key])
    table["field_rewritten"] = [
        bool(orders.VOCAB[int(final[s, p.loc[(s, r), "position"]])] != p.loc[(s, r), "planted"])
        if (s, r) in p.index else False for s, r in key]
    return table


def _share(records: pd.DataFrame) -> tuple[float, float, int]:
    if records.empty:
        return float("nan"), float("nan"), 0
    by_seq = records.groupby("sample")["valid"]
    return (float(records["valid"].mean()),
            cluster_stderr(by_seq.sum().to_numpy(), by_seq.size().to_numpy()), len(records))


def summarise(table: pd.DataFrame) -> dict:
    """``repaired`` (share of planted records valid at the end) and ``kept`` (share of untouched
    records still valid), each with its cluster standard error (``*_se``) and count."""
    rep, rep_se, n_rep = _share(table[table["planted"]])
    kept, kept_se, n_kept = _share(table[~table["planted"]])
    return {"repaired": rep, "repaired_se": rep_se, "planted_records": n_rep,
            "kept": kept, "kept_se": kept_se, "untouched_records": n_kept,
            "sequences": int(table["sample"].nunique())}


def record_status(words: Sequence[str], field: str | None = None, mask: str = orders.MASK) -> str:
    """A record's state in words: ``"breaks: currency ≠ country"``, ``"keeps every rule"``,
    ``"currency put back to [MASK]"`` (when ``field`` is masked) or ``"2 tokens masked"``."""
    words = list(words)
    n_masked = sum(w == mask for w in words)
    if n_masked:
        if field is not None and words[orders.FIELD_POS[field]] == mask:
            return f"{field} put back to [MASK]" + (f" (+{n_masked - 1})" if n_masked > 1 else "")
        return f"{n_masked} token{'s' if n_masked > 1 else ''} masked"
    # checked as a full sequence of copies of itself, so the sequence-length check has nothing to say
    rows = orders.check_records(" ".join(words * orders.RECORDS_PER_SEQ)).query("record == 0")
    broken = [r for r in rows.loc[~rows["ok"], "rule"] if r in orders.RULE_FIELDS]
    if broken:
        return "breaks: " + "; ".join(rule_text(r) for r in broken)
    return "keeps every rule" if rows["ok"].all() else "breaks: format"


def repair_story(trace, plants: pd.DataFrame, sample: int | None = None, record: int | None = None,
                 field: str | None = None) -> dict:
    """The facts of one planted record's repair in a recorded refine trace.

    Without ``sample``/``record`` it picks, among planted records (of ``field``, if given) valid at
    the end whose planted token was remasked and rewritten, the one rewritten earliest (the shortest
    story). Returns
    ``sample, record, field, rule, position, planted, original, remasked_at, rewritten_at,
    rewritten_to, valid_end`` (steps are -1 when the planted token was never remasked).
    """
    if not trace.recorded:
        raise ValueError("repair_story needs a recorded trace (refine(..., record=True)).")
    ev = trace.events
    final = trace.final
    valid_end = {}
    candidates = []
    for p in plants.itertuples(index=False):
        if (sample is not None and (p.sample, p.record) != (sample, record)) or (field and p.field != field):
            continue
        e = ev[(ev["sample"] == p.sample) & (ev["position"] == p.position)].sort_values("step")
        rm = e[e["kind"] == "remask"]
        k1 = int(rm["step"].iloc[0]) if len(rm) else -1
        un = e[(e["kind"] == "unmask") & (e["step"] > k1)] if k1 >= 0 else e.iloc[0:0]
        k2 = int(un["step"].iloc[0]) if len(un) else -1
        to = trace.token_text(int(un["token_id"].iloc[0])) if len(un) else None
        lo = p.record * orders.RECORD_LEN
        ok = orders.record_valid(orders.parse(orders.decode(final[p.sample, lo:lo + orders.RECORD_LEN]))[0])
        valid_end[(p.sample, p.record)] = ok
        candidates.append({"sample": int(p.sample), "record": int(p.record), "field": p.field, "rule": p.rule,
                           "position": int(p.position), "planted": p.planted, "original": p.original,
                           "remasked_at": k1, "rewritten_at": k2, "rewritten_to": to, "valid_end": bool(ok)})
    if not candidates:
        raise ValueError(f"no planted record {(sample, record)} in plants; pick one of its (sample, record) rows.")
    if sample is not None:
        return candidates[0]
    good = [c for c in candidates if c["valid_end"] and c["rewritten_at"] >= 0 and c["rewritten_to"] != c["planted"]]
    if not good:
        raise ValueError("no planted record was rewritten into a valid one in this trace: refine with more steps.")
    return min(good, key=lambda c: (c["rewritten_at"], c["sample"], c["record"]))


# what each cell of the repair strip shows, in drawing order: (kind, legend text)
STRIP_KINDS: tuple[tuple[str, str], ...] = (
    ("wrong", "planted wrong value"),
    ("masked", "planted field put back to [MASK]"),
    ("repaired", "planted field rewritten"),
    ("revisit", "another field put back to [MASK]: a random revisit"),
    ("same", "random revisit, unchanged (the same token drawn again)"),
    ("changed", "another field rewritten to a new value"),
    ("given", "as given, never touched"),
    ("anchor", "fixed anchor ('order' starts every record; never remasked)"),
)


def _strip_steps(trace, story: dict, max_rows: int) -> list[int]:
    """Step 0, the steps that changed the record up to its repair, and the final state."""
    lo = story["record"] * orders.RECORD_LEN
    ev = trace.events
    ev = ev[(ev["sample"] == story["sample"]) & (ev["position"] >= lo) & (ev["position"] < lo + orders.RECORD_LEN)]
    k1, k2 = story["remasked_at"], story["rewritten_at"]
    upto = k2 if k2 >= 0 else trace.last_step
    changed = sorted(set(int(s) for s in ev["step"] if s <= upto))
    must = {0, trace.last_step} | ({k1 - 1, k1, k2} if k1 >= 0 else set())
    must = {k for k in must if 0 <= k <= trace.last_step}
    room = max(0, max_rows - len(must))
    others = [k for k in changed if k not in must]
    near = sorted(others, key=lambda k: abs(k - k1))[:room]   # the changes closest to the repair
    return sorted(must | set(near))


def _listed(items: list[str], most: int = 4) -> str:
    return ", ".join(items[:most]) + (f" and {len(items) - most} more" if len(items) > most else "")


def strip_table(trace, plants: pd.DataFrame, sample: int | None = None, record: int | None = None,
                field: str | None = None, max_rows: int = 10) -> pd.DataFrame:
    """One planted record's 16 cells at the steps that matter, as a tidy table for
    :func:`explorer.viz.repair_strip`: one row per (step, column) with ``step, label`` ("given",
    "step k", "final"), ``column, slot, token``, ``kind`` (one of :data:`STRIP_KINDS`: the planted
    value, its remask and rewrite, and every *other* field that was revisited -- masked, redrawn the
    same, or rewritten), ``status`` (the record's state at that step, :func:`record_status`) and
    ``note`` (what else changed in the record since the row above, in words: "random revisit:
    ship_day put back to [MASK]", "random revisit, unchanged: qty", "rewritten, still valid:
    ship_day 14 → 15").

    Without ``sample``/``record`` the earliest repair (of ``field``, if given) is shown
    (:func:`repair_story`); ``attrs["story"]`` holds that story.
    """
    story = repair_story(trace, plants, sample, record, field)
    i, r = story["sample"], story["record"]
    lo, R = r * orders.RECORD_LEN, orders.RECORD_LEN
    steps = _strip_steps(trace, story, max_rows)
    given = trace.state_at(0)[i, lo:lo + R].tolist()
    fixed = trace.fixed[i, lo:lo + R].tolist()
    ev = trace.events
    ev = ev[(ev["sample"] == i) & (ev["kind"] == "remask") & (ev["position"] >= lo) & (ev["position"] < lo + R)]
    first_remask = ev.groupby("position")["step"].min().to_dict()
    slots = [t.strip("<>") for t in orders.TEMPLATE]
    names = [t[1:-1] if t.startswith("<") else f'"{t}"' for t in orders.TEMPLATE]   # keywords quoted
    rows, prev_kinds, prev_words = [], None, None
    for k in steps:
        ids = trace.state_at(k)[i, lo:lo + R].tolist()
        words = [trace.token_text(t) for t in ids]
        status = record_status(words, story["field"])
        kinds = []
        for c, (t, g) in enumerate(zip(ids, given)):
            planted = lo + c == story["position"]
            if fixed[c]:
                kinds.append("anchor")
            elif t == trace.mask_id:
                kinds.append("masked" if planted else "revisit")
            elif planted:
                kinds.append("wrong" if words[c] == story["planted"] else "repaired")
            elif t != g:
                kinds.append("changed")
            else:
                kinds.append("same" if first_remask.get(lo + c, k + 1) <= k else "given")
        notes = []
        if prev_kinds is not None:
            masked, same, changed = [], [], []
            for c, (a, b) in enumerate(zip(prev_kinds, kinds)):
                if lo + c == story["position"] or (a == b and words[c] == prev_words[c]):
                    continue
                if b == "revisit":
                    masked.append(names[c])
                elif b == "same":
                    same.append(names[c])
                elif b == "changed":
                    changed.append(f"{names[c]} {trace.token_text(given[c])} → {words[c]}")
            if masked:
                notes.append(f"random revisit: {_listed(masked)} put back to [MASK]")
            if same:
                notes.append(f"random revisit, unchanged: {_listed(same)}")
            if changed:
                notes.append(("rewritten, still valid: " if status == "keeps every rule" else "rewritten: ")
                             + _listed(changed))
        label = "given" if k == 0 else ("final" if k == trace.last_step else f"step {k}")
        for c in range(R):
            rows.append({"step": k, "label": label, "column": c, "slot": slots[c], "token": words[c],
                         "kind": kinds[c], "status": status, "note": "; ".join(notes)})
        prev_kinds, prev_words = kinds, words
    out = pd.DataFrame(rows, columns=["step", "label", "column", "slot", "token", "kind", "status", "note"])
    out.attrs["story"] = story
    return out


def planted_refine(model, sequences: int = 2, steps: int | None = None, seed: int = 0, data_seed: int = 0,
                   sampler=None, record: bool = True, progress: bool = False):
    """``(trace, plants)``: ``sequences`` valid held-out sequences (``orders.eval_tensor``), one
    wrong field planted in every other record (:func:`plant`), refined by ``sampler`` (default
    ReMDM-refine) for ``steps`` (default L) -- one cell of the study, recorded for the pictures."""
    clean = orders.eval_tensor(sequences, seed=data_seed)
    planted, plants = plant(clean, seed=data_seed)
    trace = refine(model, planted, sampler=sampler, steps=steps, seed=seed, record=record, progress=progress)
    return trace, plants


def measure(model, steps: Sequence[int], sequences: int = 64, seed: int = 0, samplers: dict | None = None,
            data_seed: int = 0, progress: bool = False, out: str | None = None) -> pd.DataFrame:
    """Plant, refine with each sampler at each T, summarise: one row per (sampler, steps).

    ``samplers``: ``{label: sampler}``, default ReMDM-refine (its defaults) and MDLM.
    ``data_seed`` picks the sequences (``orders.eval_tensor``) and the plants; ``seed`` the refine
    run. Rows are written to ``out`` (CSV, atomically) as each cell finishes.
    """
    samplers = samplers or {"remdm-refine": ReMDMRefine(), "mdlm": MDLM()}
    rows = []
    for label, sampler in samplers.items():
        for T in steps:
            t0 = time.time()
            trace, plants = planted_refine(model, sequences, int(T), seed=seed, data_seed=data_seed,
                                           sampler=sampler, record=False, progress=progress)
            if not trace.complete:  # Ctrl-C: a half-finished cell is not counted as if real
                raise KeyboardInterrupt("interrupted; the cells finished before are in the CSV.")
            row = {"sampler": label, "steps": int(T), "steps_over_L": int(T) / orders.SEQ_LEN,
                   **summarise(outcomes(trace.final, plants)),
                   "nfe": float(trace.nfe.float().mean()), "seconds": time.time() - t0, "seed": seed,
                   "data_seed": data_seed, "settings": json.dumps(sampler.config)}
            rows.append(row)
            print(f"{label:14s} T={T:4d}  repaired {row['repaired']:.3f} ± {row['repaired_se']:.3f} "
                  f"({row['planted_records']})  kept {row['kept']:.3f} ± {row['kept_se']:.3f} "
                  f"({row['untouched_records']})  {row['seconds']:.0f}s", flush=True)
            if out:
                frame = pd.DataFrame(rows)
                atomic_write(out, lambda tmp: frame.to_csv(tmp, index=False))
    return pd.DataFrame(rows)
