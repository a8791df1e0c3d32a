"""The orders studies on the command line: ``explorer evaluate-orders`` (validity of generated records,
:func:`explorer.studies.orders.evaluate`) and ``explorer repair`` (the planted-error repair study,
:func:`explorer.studies.repair.measure`)."""
from __future__ import annotations

from typing import Sequence

from explorer.cli._options import add_allow_download, add_threads, set_threads
from explorer.cli.common import (SAMPLES_RANGE, STEPS_RANGE, ArgumentParser, UsageError, model_from_cli, no_repeats,
                                 output_file, positive_float, sampler_from_cli, samplers_from_cli, samples_int,
                                 seed_int, steps_int)
from explorer.tasks.orders import RECORDS_PER_SEQ, SEQ_LEN, VOCAB_SIZE


def _log(line: str) -> None:
    print(line, flush=True)


def orders_model(name: str, allow_download: bool):
    """The model named by ``--model``, refused unless it writes orders records (their length and vocabulary)."""
    model = model_from_cli(name, allow_download=allow_download)
    shape = (getattr(model, "seq_len", None), getattr(model, "vocab_size", None))
    if shape != (SEQ_LEN, VOCAB_SIZE):
        raise UsageError(f"{name} is not an orders model (length {shape[0]}, vocabulary {shape[1]}; the orders "
                         f"task's are {SEQ_LEN} and {VOCAB_SIZE}): these studies read order records.",
                         "pass --model orders, orders-oracle or a folder from `explorer train --task orders`.")
    return model


def written_whole(out, run):
    """``run(path)`` with ``path`` the file to fill as cells finish: ``NAME.partial.csv`` beside ``out``,
    renamed ``out`` only once the run has finished, so that a file under the final name is always a
    whole run and the previous one stays there until then. On a failure or Ctrl-C the cut-short file
    keeps its partial name and stderr says so. ``out`` None: ``run(None)``."""
    import os
    import sys

    if out is None:
        return run(None)
    partial = out.with_name(f"{out.stem}.partial{out.suffix}")

    def written():
        return (partial.stat().st_ino, partial.stat().st_mtime_ns, partial.stat().st_size) if partial.is_file() else None

    before = written()
    try:
        result = run(partial)
    except BaseException:
        kept = "" if not out.is_file() else f"; {out} is as it was"
        if written() not in (None, before):
            print(f"the run stopped: its finished cells are in {partial}{kept}", file=sys.stderr)
        raise
    if partial.is_file():
        os.replace(partial, out)
    return result


# ----------------------------------------------------------------------------- evaluate-orders

def evaluate_parser() -> ArgumentParser:
    p = ArgumentParser(prog="explorer evaluate-orders", description=(
        "Validity of generated order records for a grid of samplers x steps, as a tidy CSV "
        "(one row per cell; rows are written as cells finish)."))
    p.add_argument("--model", default="orders", help="a shipped name (orders, orders-oracle) or a model folder")
    p.add_argument("--samplers", nargs="+", default=["mdlm"],
                   help='sampler specs, settings after colons: mdlm "remdm-cap:eta=0.02:nucleus_p=0.9"')
    p.add_argument("--steps", nargs="+", type=steps_int, default=[SEQ_LEN // 4, 4 * SEQ_LEN],
                   help=f"numbers of sampling steps T, each {STEPS_RANGE}")
    p.add_argument("--samples", type=samples_int, default=128,
                   help=f"sequences per cell ({RECORDS_PER_SEQ} records each), {SAMPLES_RANGE}")
    p.add_argument("--seed", type=seed_int, default=0, help="random seed of every cell")
    add_threads(p)
    p.add_argument("--out", default=None, help="CSV to write (its folder must exist); cells are written to "
                   "NAME.partial.csv as they finish, renamed NAME.csv when all have (a stopped run leaves the partial)")
    add_allow_download(p)
    p.add_argument("--repairs", action="store_true",
                   help="record each run and add what remasking did to the records (repair_ledger): "
                        "episodes, fixed, broken, remask hazard of valid vs invalid records")
    p.add_argument("--causes", action="store_true",
                   help="record each run and count the broken rules whose fields were unmasked in the "
                        "same step (error_causes): clashes of the schedule, not of the model")
    return p


def evaluate_main(argv: Sequence[str] | None = None) -> int:
    from explorer.studies.orders import evaluate

    a = evaluate_parser().parse_args(argv)
    no_repeats("--steps", " ".join(map(str, a.steps)), a.steps)
    out = output_file(a.out, suffixes=(".csv",)) if a.out is not None else None
    samplers = samplers_from_cli(a.samplers, example='--samplers mdlm "remdm-cap:eta=0.02"')
    set_threads(a.threads)
    model = orders_model(a.model, a.allow_download)
    table = written_whole(out, lambda path: evaluate(model, samplers, a.steps, samples=a.samples, seed=a.seed,
                                                     repairs=a.repairs, causes=a.causes, out=path, log=_log))
    print(table.to_string(index=False))
    return 0


# ----------------------------------------------------------------------------- repair

def repair_parser() -> ArgumentParser:
    p = ArgumentParser(prog="explorer repair", description=(
        "Plant one wrong coupled field in every other orders record, refine, and report the share "
        "repaired and the share of untouched records still valid, per number of steps (ReMDM-refine "
        "beside MDLM, which repairs nothing by construction)."))
    p.add_argument("--model", default="orders", help="a shipped name or a model folder")
    p.add_argument("--sequences", type=samples_int, default=64,
                   help=f"sequences ({RECORDS_PER_SEQ // 2} planted records each), {SAMPLES_RANGE}")
    p.add_argument("--steps", nargs="+", type=steps_int, default=[16, 32, 64, 128, 256, 512],
                   help=f"numbers of refine steps T, each {STEPS_RANGE}")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the refine run")
    p.add_argument("--data-seed", type=seed_int, default=0, help="seed of the sequences and of the plants")
    p.add_argument("--alpha", type=positive_float, default=None, help="ReMDM-refine alpha (default: its own)")
    p.add_argument("--eta", type=positive_float, default=None, help="ReMDM-refine eta (default: the bound)")
    add_threads(p)
    p.add_argument("--out", default=None, help="CSV to write (its folder must exist); cells are written to "
                   "NAME.partial.csv as they finish, renamed NAME.csv when all have (a stopped run leaves the partial)")
    add_allow_download(p)
    return p


def repair_main(argv: Sequence[str] | None = None) -> int:
    from explorer.samplers import MDLM
    from explorer.studies.repair import measure

    a = repair_parser().parse_args(argv)
    no_repeats("--steps", " ".join(map(str, a.steps)), a.steps)
    out = output_file(a.out, suffixes=(".csv",)) if a.out is not None else None
    settings = {k: v for k, v in (("alpha", a.alpha), ("eta", a.eta)) if v is not None}
    refine = sampler_from_cli("remdm-refine", settings, settings_option="--alpha/--eta")
    set_threads(a.threads)
    model = orders_model(a.model, a.allow_download)
    written_whole(out, lambda path: measure(model, a.steps, sequences=a.sequences, seed=a.seed,
                                            data_seed=a.data_seed,
                                            samplers={"remdm-refine": refine, "mdlm": MDLM()}, out=path))
    return 0
