"""Sampler studies on the orders task (``explorer.tasks.orders``): validity of the records a model
generates, why the broken ones broke, what remasking did to them, and the command that runs a grid.

    recs = sampler_validity(model, ReMDMLoop(eta=0.02), steps=1024, num_samples=64)
    summarise_validity(recs)        # fraction of valid records, cluster standard error, per-rule rates
    error_causes(trace)             # broken rules whose fields were unmasked in the same step (§1.2)
    repair_ledger(trace)            # each remask that re-opened a complete record, and its outcome

    explorer evaluate-orders --model orders --samplers mdlm "remdm-cap:eta=0.02" --steps 64 1024

The task's definition (vocabulary, generator, validator, ``RULES``, ``RULE_FIELDS``, ``FIELD_POS``)
stays in :mod:`explorer.tasks.orders`, which imports nothing above it; this module sits on the
engine, the sweep's sampler parser and the metrics.

``error_causes``, ``repair_ledger`` and ``summarise_repairs`` live in :mod:`explorer.studies.ledger`
(what remasking did, one vocabulary: hit / miss, fix / harm / neutral); they are imported here for
``sampler_validity``'s diagnostics and keep their names.
"""
from __future__ import annotations

import json
import time

import pandas as pd
import torch

from explorer.engine import generate
from explorer.io import atomic_write
from explorer.metrics.validity import cluster_stderr
from explorer.sweep import parse_sampler
from explorer.usage import ArgumentParser, UsageError, model_from_cli, output_file, positive_int, run
from explorer.studies.ledger import error_causes, repair_ledger, summarise_repairs
from explorer.tasks.orders import FIXED_TOKENS, RULES, SEQ_LEN, decode, record_table

__all__ = ["sampler_validity", "summarise_validity", "error_causes", "repair_ledger", "summarise_repairs",
           "parse_sampler_spec", "evaluate"]


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


def parse_sampler_spec(spec: str):
    """``"remdm-cap:eta=0.02"`` -> ``ReMDMCap(eta=0.02)``; ``"mdlm"`` -> ``MDLM()``. Settings are
    separated by ``:`` as in ``explorer sweep`` (``,`` is accepted too, since this CLI takes one
    spec per argument): ``"remdm-loop:eta=0.02:nucleus_p=0.9"``."""
    return parse_sampler(spec.replace(",", ":"))


def evaluate_parser() -> ArgumentParser:
    p = ArgumentParser(prog="explorer evaluate-orders", description=(
        "Validity of generated order records for a grid of samplers x steps, as a tidy CSV "
        "(one row per cell; rows are written as cells finish)."))
    p.add_argument("--model", default="orders", help="a shipped name (orders, orders-oracle) or a model folder")
    p.add_argument("--samplers", nargs="+", default=["mdlm"],
                   help='sampler specs, settings after colons: mdlm "remdm-cap:eta=0.02:nucleus_p=0.9"')
    p.add_argument("--steps", nargs="+", type=positive_int, default=[SEQ_LEN // 4, 4 * SEQ_LEN],
                   help="numbers of sampling steps T")
    p.add_argument("--samples", type=positive_int, default=128,
                   help=f"sequences per cell ({RECORDS_PER_SEQ} records each)")
    p.add_argument("--seed", type=int, default=0, help="random seed of every cell")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    p.add_argument("--out", default=None, help="CSV to write (its folder must exist)")
    p.add_argument("--allow-download", action="store_true", help="allow fetching a model from the Hugging Face hub")
    p.add_argument("--repairs", action="store_true",
                   help="record each run and add what remasking did to the records (repair_ledger): "
                        "episodes, fixed, broken, remask hazard of valid vs invalid records")
    p.add_argument("--causes", action="store_true",
                   help="record each run and count the broken rules whose fields were unmasked in the "
                        "same step (error_causes): clashes of the schedule, not of the model")
    return p


def evaluate(argv: list[str] | None = None) -> pd.DataFrame:
    """``explorer evaluate-orders``: validity of generated records for a grid of samplers x steps,
    as a tidy CSV. Every argument is checked before the model is loaded."""
    args = evaluate_parser().parse_args(argv)
    out = output_file(args.out, suffixes=(".csv",)) if args.out else None
    samplers = {}
    for spec in args.samplers:
        try:
            samplers[spec] = parse_sampler_spec(spec)
        except ValueError as e:
            raise UsageError(f"--samplers {spec!r}: {e}", 'write e.g. --samplers mdlm "remdm-cap:eta=0.02".') from None
    if args.threads:
        torch.set_num_threads(args.threads)
    model = model_from_cli(args.model, allow_download=args.allow_download)
    rows = []
    for spec, sampler in samplers.items():
        for steps in args.steps:
            t0 = time.time()
            recs = sampler_validity(model, sampler, steps, args.samples, seed=args.seed,
                                    repairs=args.repairs, causes=args.causes)
            row = {"sampler": sampler.name, "spec": spec, "settings": json.dumps(sampler.config),
                   "steps": steps, "steps_over_L": steps / SEQ_LEN, **summarise_validity(recs),
                   "model_calls": recs.attrs.get("model_calls"), "seconds": time.time() - t0,
                   "seed": args.seed, **recs.attrs.get("repairs", {}), **recs.attrs.get("causes", {})}
            rows.append(row)
            print(f"{spec:28s} T={steps:4d}  valid {row['valid']:.4f} +- {row['valid_se']:.4f} "
                  f"({row['records']} records, {row['seconds']:.0f}s)", flush=True)
            if out is not None:
                atomic_write(out, lambda tmp: pd.DataFrame(rows).to_csv(tmp, index=False))
    return pd.DataFrame(rows)


if __name__ == "__main__":  # python -m explorer.studies.orders evaluate ... (= explorer evaluate-orders ...)
    import sys

    argv = sys.argv[2:] if sys.argv[1:2] == ["evaluate"] else sys.argv[1:]
    sys.exit(run("explorer evaluate-orders", lambda a: print(evaluate(a).to_string(index=False)), argv))
