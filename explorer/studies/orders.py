"""Sampler studies on the orders task (``explorer.tasks.orders``): validity of the records a model
generates, why the broken ones broke, what remasking did to them, and the command that runs a grid.

    recs = sampler_validity(model, ReMDMLoop(eta=0.02), steps=1024, num_samples=64)
    summarise_validity(recs)        # fraction of valid records, cluster standard error, per-rule rates
    error_causes(trace)             # broken rules whose fields were unmasked in the same step (§1.2)
    repair_ledger(trace)            # each remask that re-opened a complete record, and its outcome

    explorer evaluate-orders --model orders --samplers mdlm "remdm-cap:eta=0.02" --steps 64 1024

The task's definition (vocabulary, generator, validator, ``RULES``, ``RULE_FIELDS``, ``FIELD_POS``)
stays in :mod:`explorer.tasks.orders`, which imports nothing above it; this module sits on the
engine and the metrics. The command line (``explorer evaluate-orders``) is ``explorer.cli.orders``.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd
import torch

from explorer.engine import generate
from explorer.io import atomic_write
from explorer.metrics.validity import cluster_stderr
from explorer.samplers.spec import parse_samplers
from explorer.tasks.orders import (FIXED_TOKENS, RECORD_LEN, RECORDS_PER_SEQ, RULE_FIELDS, RULES, FIELD_POS,
                                   SEQ_LEN, check_records, decode, parse, record_table, record_valid)

__all__ = ["sampler_validity", "summarise_validity", "error_causes", "repair_ledger", "summarise_repairs",
           "evaluate"]


def sampler_validity(model, sampler, steps: int, num_samples: int, seed: int = 0,
                     batch_size: int | None = None, repairs: bool = False,
                     causes: bool = False) -> pd.DataFrame:
    """Generate ``num_samples`` sequences and check every record: :func:`record_table` of them,
    with ``model_calls`` and ``seconds`` in ``attrs``. Diagnostics (they record the run):
    ``repairs=True`` adds the :func:`summarise_repairs` of its :func:`repair_ledger` as
    ``attrs["repairs"]``; ``causes=True`` adds ``attrs["causes"]``: how many rules the final records
    break and how many of those had fields unmasked in the same step (:func:`error_causes`)."""
    # a model that does not declare its fixed tokens gets the anchor as a prompt (same law)
    prompt = None if getattr(model, "fixed_tokens", None) else dict(FIXED_TOKENS)
    trace = generate(model, sampler, steps, num_samples=num_samples, seed=seed,
                     record=repairs or causes, progress=False, batch_size=batch_size, prompt=prompt)
    out = record_table([decode(ids) for ids in trace.final])
    out.attrs.update(model_calls=trace.model_calls, seconds=trace.meta.get("wall_seconds"))
    if repairs:
        out.attrs["repairs"] = summarise_repairs(repair_ledger(trace))
    if causes:
        c = error_causes(trace)
        out.attrs["causes"] = {"broken_rules": len(c), "decoded_together": int(c["together"].sum()),
                               "together_share": float(c["together"].mean()) if len(c) else float("nan")}
    return out


def summarise_validity(records: pd.DataFrame) -> dict:
    """Fraction of valid records with a standard error that treats each sequence as a cluster
    (its records share one generation; ``explorer.metrics.validity.cluster_stderr``), plus the
    violation rate of each rule."""
    by_seq = records.groupby("sample")["valid"]
    out = {
        "sequences": by_seq.ngroups,
        "records": len(records),
        "valid": float(records["valid"].mean()),
        "valid_se": cluster_stderr(by_seq.sum().to_numpy(), by_seq.size().to_numpy()),
        "sequence_valid": float(records.groupby("sample")["valid"].all().mean()),
    }
    for rule in RULES:
        out[f"broken_{rule}"] = float(1 - records[rule].mean())
    return out


def error_causes(trace) -> pd.DataFrame:
    """Why each broken rule in a recorded trace's final records broke: one row per (sample,
    record, rule) that the final record breaks, with ``steps`` (the step at which each of the
    rule's fields was last unmasked, in ``RULE_FIELDS`` order) and ``together``: True when two of
    those fields were unmasked **in the same step**. Such fields are drawn independently from
    their marginals (reference §1.2, the factorised reverse step), so a clash between them is a
    property of the schedule, not of the model; ``together=False`` means the model broke the
    rule while seeing the other field (a model error, or a remask that changed one side).
    """
    ev = trace.events
    ev = ev[ev["kind"] == "unmask"]
    last = ev.groupby(["sample", "position"])["step"].max()
    rows = []
    for i, ids in enumerate(trace.final):
        for _, bad in check_records(decode(ids)).query("not ok").iterrows():
            rule, r = bad["rule"], int(bad["record"])
            if rule not in RULE_FIELDS:
                continue
            steps = [int(last.get((i, r * RECORD_LEN + FIELD_POS[f]), -1)) for f in RULE_FIELDS[rule]]
            known = [s for s in steps if s >= 0]
            rows.append({"sample": i, "record": r, "rule": rule, "steps": steps,
                         "together": len(known) != len(set(known))})
    return pd.DataFrame(rows, columns=["sample", "record", "rule", "steps", "together"])


def repair_ledger(trace) -> pd.DataFrame:
    """What remasking did to each record, read off a recorded trace (``record=True``).

    A record is *complete* at step k when none of its 16 tokens is masked. Whenever a remask opens
    a complete record and later steps complete it again, that is one *episode*; the ledger has one
    row per episode: ``sample, record, opened`` (the step whose remask opened it), ``closed`` (the
    step that completed it again, -1 if it never was), ``before_valid``, ``after_valid`` and
    ``tokens_changed`` (positions that differ between the two complete versions). ``fixed`` =
    invalid before, valid after; ``broken`` = the reverse.

    ``ledger.attrs["exposure"]`` counts (record, step) pairs in which a complete record was
    valid / invalid and could have been remasked in the next step, so ``opened / exposure`` is the
    per-step remask hazard of valid and of invalid records: equal hazards mean the sampler does not
    aim its remasks at the broken records.
    """
    mask_id = int(trace.mask_id)
    cache: dict[tuple, bool] = {}

    def valid(rec: tuple) -> bool:
        if rec not in cache:
            cache[rec] = record_valid(parse(decode(rec))[0])
        return cache[rec]

    open_at: dict[tuple[int, int], tuple[int, tuple, bool]] = {}
    rows = []
    exposure = {"valid": 0, "invalid": 0}
    prev = None
    for k in range(trace.last_step + 1):
        z = trace.state_at(k).reshape(-1, RECORDS_PER_SEQ, RECORD_LEN)
        complete = (z != mask_id).all(-1)
        for i, r in zip(*torch.nonzero(complete | (prev if prev is not None else complete),
                                       as_tuple=True)):
            i, r = int(i), int(r)
            key = (i, r)
            if complete[i, r]:
                rec = tuple(z[i, r].tolist())
                if key in open_at:  # completed again: close the episode
                    opened, before, was_valid = open_at.pop(key)
                    rows.append({"sample": i, "record": r, "opened": opened, "closed": k,
                                 "before_valid": was_valid, "after_valid": valid(rec),
                                 "tokens_changed": sum(a != b for a, b in zip(before, rec))})
                if k < trace.last_step:
                    exposure["valid" if valid(rec) else "invalid"] += 1
            elif prev is not None and prev[i, r]:  # a remask opened a complete record
                before = tuple(prev_z[i, r].tolist())
                open_at[key] = (k, before, valid(before))
        prev, prev_z = complete, z
    for (i, r), (opened, before, was_valid) in open_at.items():
        rows.append({"sample": i, "record": r, "opened": opened, "closed": -1,
                     "before_valid": was_valid, "after_valid": False, "tokens_changed": -1})
    out = pd.DataFrame(rows, columns=["sample", "record", "opened", "closed", "before_valid",
                                      "after_valid", "tokens_changed"])
    out = out.sort_values(["sample", "record", "opened"], ignore_index=True)
    out.attrs["exposure"] = exposure
    return out


def summarise_repairs(ledger: pd.DataFrame) -> dict:
    """Counts from :func:`repair_ledger`: episodes, fixed, broken, and the per-step remask hazard
    of complete valid vs complete invalid records."""
    closed = ledger[ledger.closed >= 0]
    exp = ledger.attrs.get("exposure", {})
    opened_valid = int(ledger.before_valid.sum())
    opened_invalid = int((~ledger.before_valid.astype(bool)).sum())
    return {
        "episodes": len(ledger),
        "fixed": int((~closed.before_valid.astype(bool) & closed.after_valid.astype(bool)).sum()),
        "broken": int((closed.before_valid.astype(bool) & ~closed.after_valid.astype(bool)).sum()),
        "redrawn_same": int((closed.tokens_changed == 0).sum()),
        "hazard_valid": opened_valid / exp["valid"] if exp.get("valid") else float("nan"),
        "hazard_invalid": opened_invalid / exp["invalid"] if exp.get("invalid") else float("nan"),
    }


def evaluate(model, samplers, steps: Sequence[int] = (SEQ_LEN // 4, 4 * SEQ_LEN), samples: int = 128,
             seed: int = 0, repairs: bool = False, causes: bool = False, out: str | os.PathLike | None = None,
             log: Callable[[str], None] | None = print) -> pd.DataFrame:
    """Validity of generated records for a grid of samplers x steps: one row per cell, with
    :func:`summarise_validity`'s columns, model calls and seconds (and :func:`summarise_repairs` /
    the error causes when ``repairs`` / ``causes``). ``samplers``: ``{label: sampler or spec}`` or
    specs (``"mdlm,remdm-cap:eta=0.02"``, :mod:`explorer.samplers.spec`). ``out``: a CSV rewritten
    (atomically) as each cell finishes; ``log`` gets one line per cell."""
    rows = []
    for spec, sampler in parse_samplers(samplers).items():
        for T in steps:
            t0 = time.time()
            recs = sampler_validity(model, sampler, T, samples, seed=seed, repairs=repairs, causes=causes)
            row = {"sampler": sampler.name, "spec": spec, "settings": json.dumps(sampler.config),
                   "steps": T, "steps_over_L": T / SEQ_LEN, **summarise_validity(recs),
                   "model_calls": recs.attrs.get("model_calls"), "seconds": time.time() - t0,
                   "seed": seed, **recs.attrs.get("repairs", {}), **recs.attrs.get("causes", {})}
            rows.append(row)
            if log is not None:
                log(f"{spec:28s} T={T:4d}  valid {row['valid']:.4f} +- {row['valid_se']:.4f} "
                    f"({row['records']} records, {row['seconds']:.0f}s)")
            if out is not None:
                frame = pd.DataFrame(rows)
                atomic_write(Path(out), lambda tmp: frame.to_csv(tmp, index=False))
    return pd.DataFrame(rows)
