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

``error_causes``, ``repair_ledger`` and ``summarise_repairs`` live in :mod:`explorer.studies.ledger`
(what remasking did, one vocabulary: hit / miss, fix / harm / neutral); they are imported here for
``sampler_validity``'s diagnostics and keep their names.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from explorer.engine import generate
from explorer.io import atomic_write
from explorer.metrics.validity import cluster_stderr
from explorer.samplers.spec import parse_samplers
from explorer.studies.ledger import error_causes, repair_ledger, summarise_repairs
from explorer.tasks.orders import FIXED_TOKENS, RULES, SEQ_LEN, decode, record_table

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
    if not trace.complete:  # Ctrl-C: a half-finished cell is not scored as if real
        raise KeyboardInterrupt("interrupted; the cells finished before are in the CSV.")
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
