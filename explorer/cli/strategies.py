"""``explorer strategies``: which tokens to remask -- strategies x budgets on one model, one seed.

Writes ``table.parquet`` (quality, model calls, wall seconds, remask precision / recall / fixes /
harms per strategy and budget), ``ledger.parquet`` (orders: one row per remask) and
``texts.parquet`` to ``--out``; finished cells are cached in ``OUT/cache`` (run the same command
again to resume).  :func:`explorer.studies.strategies.compare` is the library call.
"""
from __future__ import annotations

import math
import sys
from typing import Sequence

from explorer.cli._options import (add_allow_download, add_batch_size, add_no_progress, add_nucleus_p,
                                   add_num_samples, add_output_folder, library_bars, sampler_defaults)
from explorer.cli.common import (ArgumentParser, UsageError, at_most, device_from_cli, judge_from_cli, model_from_cli,
                                 list_items, no_repeats, output_dir, positive_int, samplers_from_cli, seed_int)


def parser() -> ArgumentParser:
    p = ArgumentParser(prog="explorer strategies", description=(
        "Compare remasking strategies on one model at the same budgets of model calls per sequence, the "
        "same seed and prompts: quality, model calls, wall seconds and (orders) the remask ledger. Each "
        "strategy's T is the largest whose calls on a 4-sequence probe fit the budget, so a cell's mean over "
        "all its sequences can run slightly over it: model_calls is what the cell spent (a note names any "
        "such cell)."))
    p.add_argument("--model", required=True, help="shipped name (orders, orders-oracle, stories), model folder or hub id")
    p.add_argument("--strategies", default="mdlm,remdm-loop,remdm-conf,rescore",
                   help="comma-separated sampler specs, e.g. mdlm,remdm-loop,rescore:rounds=8")
    p.add_argument("--budgets", default="80,128", help="comma-separated model calls per sequence (rescore on "
                   "orders needs 69 even at one step)")
    add_num_samples(p, default=32)
    p.add_argument("--seed", type=seed_int, default=0, help="the one seed every strategy uses")
    add_nucleus_p(p, help="top-p for every strategy whose spec does not set it (the paper uses 0.9)")
    p.add_argument("--prompt", default=None, help="prompt text, for models without a fixed length (LLaDA, Dream); "
                   "with --gen-length")
    p.add_argument("--gen-length", type=positive_int, default=None, help="tokens to generate after --prompt")
    p.add_argument("--judge", default=None, help="judge causal LM for stories' gen_ppl: a folder, a shipped "
                   "name or a hub id in the local cache (--allow-download fetches it) (default: stories-judge)")
    add_output_folder(p)
    p.add_argument("--device", default=None, help="torch device: cpu, cuda[:N], mps, or auto (a CUDA GPU when there is one, else cpu) (default: the model's)")
    add_batch_size(p)
    add_allow_download(p)
    add_no_progress(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from explorer.studies.strategies import BudgetTooSmall, compare, plan_cells, task_of
    from explorer.sweep import write_parquet_atomic

    argv = list(sys.argv[1:] if argv is None else argv)
    a = parser().parse_args(argv)
    out = output_dir(a.out)
    strategies = samplers_from_cli(a.strategies, "--strategies", "--strategies mdlm,rescore", **sampler_defaults(a))
    try:
        budgets = [int(b) for b in list_items(a.budgets)]
        if not budgets or min(budgets) < 1:
            raise ValueError
    except ValueError:
        raise UsageError(f"--budgets {a.budgets!r} is not a list of positive numbers of model calls.",
                         "write e.g. --budgets 80,128.") from None
    no_repeats("--budgets", a.budgets, budgets)
    at_most("--budgets", a.budgets, budgets, what="model calls per sequence")
    if (a.prompt is None) != (a.gen_length is None):
        raise UsageError("--prompt and --gen-length go together (a prompted model needs both).",
                         "give both, or neither for a fixed-length model.")
    a.device = device_from_cli(a.device)
    model = model_from_cli(a.model, device=a.device, allow_download=a.allow_download)
    if getattr(model, "seq_len", None) is None and a.prompt is None:
        raise UsageError(f"{a.model} has no fixed length: every strategy needs the same prompt.",
                         "add --prompt TEXT --gen-length N.")
    if getattr(model, "seq_len", None) is not None and a.gen_length is not None:
        raise UsageError(f"{a.model} always writes {model.seq_len} tokens; --prompt and --gen-length are for models "
                         "without a fixed length (LLaDA, Dream).", "drop --prompt and --gen-length.")
    length = model.seq_len if getattr(model, "seq_len", None) is not None else a.gen_length
    try:
        plan_cells(strategies, budgets, length)      # a budget no strategy can meet fails before any folder
    except BudgetTooSmall as e:
        raise UsageError(f"--budgets {a.budgets}: {e.strategy} needs {e.need:g} model calls per sequence even at 1 "
                         f"step on {a.model}, more than the budget of {e.budget}.",
                         f"give budgets of at least {math.ceil(e.need)} (e.g. --budgets {math.ceil(e.need)},"
                         f"{2 * math.ceil(e.need)}), or drop {e.strategy} from --strategies.") from None
    if task_of(model) == "stories":                  # scored by the judge's gen_ppl
        judge_from_cli(a.judge, allow_download=a.allow_download)
    elif a.judge is not None:
        raise UsageError(f"--judge is given but {a.model} is not scored by a judge (a judge's gen_ppl scores stories "
                         "models; orders counts valid records, any other model shows its texts).", "drop --judge.")
    out.mkdir(exist_ok=True)
    with library_bars(not a.no_progress):
        lab = compare(model, strategies, budgets, num_samples=a.num_samples, seed=a.seed, prompt=a.prompt,
                      gen_length=a.gen_length, cache=out / "cache", batch_size=a.batch_size, device=a.device,
                      judge=a.judge, progress=not a.no_progress)
    import datetime

    from explorer.models.checkpoint import model_sha256

    command = "explorer strategies " + " ".join(argv)
    stamp = {"command": command, "model": a.model, "model_sha256": model_sha256(model),
             "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    for name, df in (("table", lab.table), ("ledger", lab.ledger), ("texts", lab.texts)):
        df = df.copy()
        df.attrs = {}
        for k, v in stamp.items():
            df[k] = v
        write_parquet_atomic(df, out / f"{name}.parquet")
    cols = [c for c in ("strategy", "budget", "steps", "model_calls", "value", "stderr", "entropy", "precision",
                        "recall", "fixes", "harms") if c in lab.table]
    print(lab.table[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    over = lab.table[lab.table["model_calls"] > lab.table["budget"]]
    for r in over.itertuples():
        print(f"note: {r.strategy} at budget {r.budget} spent {r.model_calls:.4g} model calls per sequence on average "
              f"(T = {r.steps} fitted the budget on a 4-sequence probe).")
    print(f"wrote {out / 'table.parquet'}, ledger.parquet, texts.parquet")
    return 0
