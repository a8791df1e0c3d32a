"""The orders studies on the command line: ``explorer evaluate-orders`` (validity of generated records,
:func:`explorer.studies.orders.evaluate`) and ``explorer repair`` (the planted-error repair study,
:func:`explorer.studies.repair.measure`)."""
from __future__ import annotations

from typing import Sequence

from explorer.cli._options import add_allow_download, add_threads, set_threads
from explorer.cli.common import (ArgumentParser, UsageError, model_from_cli, no_repeats, output_file,
                                 positive_float, positive_int, sampler_from_cli, samplers_from_cli, seed_int)
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


def partial_on_interrupt(out, run):
    """``run()``; on Ctrl-C, a results CSV this run wrote (its finished cells only) is renamed
    ``NAME.partial.csv``, so that it cannot pass later for a finished run. A file this run did not
    touch (Ctrl-C before the first cell finished) stays as it was."""
    import os
    import sys

    def written(path):
        return (path.stat().st_ino, path.stat().st_mtime_ns, path.stat().st_size) if path.is_file() else None

    before = written(out) if out is not None else None
    try:
        return run()
    except KeyboardInterrupt:
        if out is not None and written(out) not in (None, before):
            partial = out.with_name(f"{out.stem}.partial{out.suffix}")
            os.replace(out, partial)
            print(f"{out} was cut short: its finished cells are in {partial}", file=sys.stderr)
        raise


# ----------------------------------------------------------------------------- evaluate-orders

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
    p.add_argument("--seed", type=seed_int, default=0, help="random seed of every cell")
    add_threads(p)
    p.add_argument("--out", default=None, help="CSV to write as cells finish (its folder must exist); on Ctrl-C it becomes NAME.partial.csv")
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
    out = output_file(a.out, suffixes=(".csv",)) if a.out else None
    samplers = samplers_from_cli(a.samplers, example='--samplers mdlm "remdm-cap:eta=0.02"')
    set_threads(a.threads)
    model = orders_model(a.model, a.allow_download)
    table = partial_on_interrupt(out, lambda: evaluate(model, samplers, a.steps, samples=a.samples, seed=a.seed,
                                                       repairs=a.repairs, causes=a.causes, out=out, log=_log))
    print(table.to_string(index=False))
    return 0


# ----------------------------------------------------------------------------- repair

def repair_parser() -> ArgumentParser:
    p = ArgumentParser(prog="explorer repair", description=(
        "Plant one wrong coupled field in every other orders record, refine, and report the share "
        "repaired and the share of untouched records still valid, per number of steps (ReMDM-refine "
        "beside MDLM, which repairs nothing by construction)."))
    p.add_argument("--model", default="orders", help="a shipped name or a model folder")
    p.add_argument("--sequences", type=positive_int, default=64,
                   help=f"sequences ({RECORDS_PER_SEQ // 2} planted records each)")
    p.add_argument("--steps", nargs="+", type=positive_int, default=[16, 32, 64, 128, 256, 512],
                   help="numbers of refine steps T")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the refine run")
    p.add_argument("--data-seed", type=seed_int, default=0, help="seed of the sequences and of the plants")
    p.add_argument("--alpha", type=positive_float, default=None, help="ReMDM-refine alpha (default: its own)")
    p.add_argument("--eta", type=positive_float, default=None, help="ReMDM-refine eta (default: the bound)")
    add_threads(p)
    p.add_argument("--out", default=None, help="CSV to write, rewritten as each cell finishes (its folder must exist); on "
                   "Ctrl-C it becomes NAME.partial.csv")
    add_allow_download(p)
    return p


def repair_main(argv: Sequence[str] | None = None) -> int:
    from explorer.samplers import MDLM
    from explorer.studies.repair import measure

    a = repair_parser().parse_args(argv)
    no_repeats("--steps", " ".join(map(str, a.steps)), a.steps)
    out = output_file(a.out, suffixes=(".csv",)) if a.out else None
    settings = {k: v for k, v in (("alpha", a.alpha), ("eta", a.eta)) if v is not None}
    refine = sampler_from_cli("remdm-refine", settings, settings_option="--alpha/--eta")
    set_threads(a.threads)
    model = orders_model(a.model, a.allow_download)
    partial_on_interrupt(out, lambda: measure(model, a.steps, sequences=a.sequences, seed=a.seed,
                                              data_seed=a.data_seed,
                                              samplers={"remdm-refine": refine, "mdlm": MDLM()}, out=out))
    return 0
