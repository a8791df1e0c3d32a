"""``explorer sweep``: samplers x steps x seeds on a model; tidy results, return on compute, HTML report.

Under ``torchrun --nproc_per_node=K -m explorer.cli sweep ...`` the cells are spread over the ranks
(:func:`explorer.sweep.sweep`); only rank 0 writes.
"""
from __future__ import annotations

import sys
from typing import Sequence

from explorer.cli._options import (add_allow_download, add_batch_size, add_no_progress, add_nucleus_p,
                                   add_num_samples, add_output_folder, library_bars, sampler_defaults)
from explorer.cli.common import (MAX_SEED, ArgumentParser, UsageError, device_from_cli, judge_from_cli,
                                 list_items, model_from_cli, output_dir, samplers_from_cli)
from explorer.cli.common import no_repeats as _no_repeats


#: the metrics that read samples with the judge LM (--judge)
JUDGED = ("gen_ppl", "mauve")


def default_metrics(model) -> list[str]:
    """``--metrics`` when it is not given, chosen from the loaded model (the text of ``--model`` says
    nothing: an exported orders model may sit in any folder): validity,entropy for a model that writes
    orders records, gen_ppl,entropy for one that writes stories (:func:`explorer.tasks.stories.writes_stories`),
    entropy for any other."""
    from explorer.tasks import orders, stories

    if orders.writes_records(model):
        return ["validity", "entropy"]
    if stories.writes_stories(model):
        return ["gen_ppl", "entropy"]
    return ["entropy"]


def parser() -> ArgumentParser:
    p = ArgumentParser(prog="explorer sweep", description=(
        "Run samplers x steps x seeds on a model, score the samples, and write sweep.parquet, "
        "return_on_compute.parquet and a standalone report.html to --out. Finished cells are "
        "cached (--cache-dir, default OUT/cache): run the same command again to resume."))
    p.add_argument("--model", required=True, help="shipped name (orders, orders-oracle, stories), model folder or hub id")
    p.add_argument("--samplers", default="mdlm,remdm-loop", help="comma-separated sampler specs, each "
                   "optionally with settings: mdlm,remdm-cap:eta=0.008")
    p.add_argument("--steps", default="L/4,L/2,L,2L", help="comma-separated T; 'L' = sequence length, e.g. L/2,2L; each T at most 1,000,000")
    add_num_samples(p, default=64)
    p.add_argument("--seeds", default="0", help="comma-separated seeds")
    p.add_argument("--metrics", default=None, help="comma-separated: validity, entropy, gen_ppl, mauve "
                   "(default: chosen from the loaded model: validity,entropy for an orders model, gen_ppl,entropy "
                   "for a stories one, entropy for any other)")
    p.add_argument("--judge", default=None, help="judge causal LM for gen_ppl/mauve: a folder, a shipped "
                   "name or a hub id in the local cache (--allow-download fetches it) (default: stories-judge)")
    add_nucleus_p(p, help="top-p for every sampler (the paper uses 0.9)")
    p.add_argument("--mauve-references", default=None,
                   help="MAUVE references: 'heldout' (stories held-out blocks, as many as --num-samples), "
                        "a .npy of judge features, or a .txt with one text per line "
                        "(default: mauve_reference_features.npy next to the judge)")
    p.add_argument("--baseline", default=None, help="the sampler (its label in --samplers) the others are "
                   "compared with (default: mdlm, when it is among them)")
    add_output_folder(p)
    p.add_argument("--cache-dir", default=None, help="cache of finished cells; created if its parent exists "
                   "(default: OUT/cache)")
    p.add_argument("--device", default=None, help="torch device: cpu, cuda[:N], mps, or auto (a CUDA GPU when there is one, else cpu) (default: cpu; cuda:LOCAL_RANK under torchrun)")
    add_batch_size(p)
    add_allow_download(p)
    add_no_progress(p)
    return p


def resolved_steps(a, seq_len: int) -> list[int]:
    """``--steps`` at the model's length, checked before any folder is made: every T >= 1 and none twice."""
    from explorer.sweep import parse_steps

    try:
        steps = parse_steps(a.steps, seq_len)
    except ValueError as e:     # 2L at a long model's L can pass the limit that 2L at 1024 kept
        raise UsageError(f"--steps: {e}", f"give smaller multiples of L (L = {seq_len}).") from None
    said = f" (T = {', '.join(map(str, steps))} at L = {seq_len})"
    if min(steps) < 1:
        raise UsageError(f"--steps {a.steps!r}{said} asks for fewer than 1 step.",
                         "use larger fractions of L, e.g. --steps L/4,L.")
    _no_repeats("--steps", a.steps, steps, said)
    return steps


def metrics_fit(metrics: list[str], model, model_name: str, judge: str | None) -> None:
    """Refuse, once the model is loaded and before any cell, a metric that cannot read its samples:
    ``validity`` checks orders records (on any other model every sample breaks the format rule),
    and ``gen_ppl``/``mauve`` with the shipped stories judge read stories text, not orders records
    (another ``--judge`` is the user's choice). An orders model is known by its length and vocabulary."""
    from explorer.tasks import orders

    is_orders = orders.writes_records(model)
    if "validity" in metrics and not is_orders:
        raise UsageError(f"--metrics validity checks orders records, and {model_name} is not an orders model.",
                         f"drop validity (e.g. --metrics {','.join(default_metrics(model))}), "
                         "or sweep an orders model.")
    judged = [m for m in metrics if m in JUDGED]
    if judged and is_orders and judge is None:
        raise UsageError(f"--metrics {','.join(judged)}: the shipped judge (stories-judge) reads stories text, "
                         f"and {model_name} writes orders records.",
                         "use --metrics validity,entropy on an orders model, or pass a --judge that reads them.")


def judge_used(a, metrics: list[str], whose: str) -> None:
    """A ``--judge`` that no metric reads is refused, as ``--mauve-references`` without mauve is:
    silently unused, it would look like the judge of the results."""
    if a.judge is not None and not set(JUDGED) & set(metrics):
        raise UsageError(f"--judge is given but {whose} ({','.join(metrics)}) read no judge.",
                         "add gen_ppl or mauve to --metrics, or drop --judge.")


def mauve_references(a):
    """``--mauve-references``, read and checked (not empty; a .npy of float features [N, D] that loads
    without pickle; a text file with a text on some line) before the model loads or a folder is made."""
    if a.mauve_references == "heldout":
        from explorer.tasks import stories
        return stories.heldout_texts(a.num_samples)
    from explorer.metrics.mauve import read_references

    try:
        return read_references(a.mauve_references)
    except (OSError, ValueError) as e:
        raise UsageError(f"--mauve-references: {e}.".replace("..", "."),
                         "give a .npy of judge features [N, D], a text file with one reference text per line, "
                         "or heldout.") from None


def plan(a) -> tuple[dict, list[int], list[str] | None]:
    """Samplers, seeds and metrics of a sweep, checked before the model is loaded; metrics are None
    when ``--metrics`` is not given (the model's own, :func:`default_metrics`, once it is loaded)."""
    from explorer.metrics.registry import get_metric
    from explorer.samplers import MAX_STEPS
    from explorer.sweep import parse_steps

    samplers = samplers_from_cli(a.samplers, "--samplers", "--samplers mdlm,remdm-cap:eta=0.02", **sampler_defaults(a))
    try:
        steps = parse_steps(a.steps, 1024)
    except ValueError as e:     # a part it cannot read, or a T above the limit: its own words say which
        raise UsageError(f"--steps: {e}", "write e.g. --steps 16,32,64 or --steps L/4,L,2L (L = sequence length), "
                         f"each T at most {MAX_STEPS:,}.") from None
    if not steps or min(steps) < 1:
        raise UsageError(f"--steps {a.steps!r} is not a list of positive step counts.",
                         "write e.g. --steps 16,32,64 or --steps L/4,L,2L (L = sequence length).")
    _no_repeats("--steps", a.steps, list_items(a.steps))   # repeats at any L; more once L is known
    try:
        seeds = [int(s) for s in list_items(a.seeds)]
        if not seeds or min(seeds) < 0 or max(seeds) > MAX_SEED:
            raise ValueError
    except ValueError:
        raise UsageError(f"--seeds {a.seeds!r} is not a list of whole numbers >= 0 and <= 2**63 - 1.",
                         "write e.g. --seeds 0,1,2 (each seed from 0 to 2**63 - 1).") from None
    _no_repeats("--seeds", a.seeds, seeds)
    if a.baseline is not None and a.baseline not in samplers:
        raise UsageError(f"--baseline {a.baseline!r} is not one of the samplers ({', '.join(samplers)}).",
                         f"choose one of them, or add it to --samplers.")
    if a.metrics is None:
        return samplers, seeds, None
    metrics = list_items(a.metrics)
    if not metrics:
        raise UsageError(f"--metrics {a.metrics!r} names no metric.",
                         "name them, e.g. --metrics validity,entropy, or leave --metrics out for the model's own.")
    _no_repeats("--metrics", a.metrics, metrics)
    for m in metrics:
        try:
            get_metric(m)
        except (KeyError, ValueError) as e:
            raise UsageError(f"--metrics: {e}".rstrip("."), "choose from validity, entropy, gen_ppl, mauve.") from None
    return samplers, seeds, metrics


def main(argv: Sequence[str] | None = None) -> int:
    """Run a grid, write sweep.parquet, return_on_compute.parquet and report.html."""
    import pandas as pd

    from explorer.metrics.registry import higher_is_better
    from explorer.sweep import rank, return_on_compute, summary, sweep, write_parquet_atomic
    from explorer.viz.sweep_report import report_html

    argv = list(sys.argv[1:] if argv is None else argv)
    a = parser().parse_args(argv)
    out = output_dir(a.out)
    if a.cache_dir is not None:
        output_dir(a.cache_dir, "--cache-dir")   # missing parents are never created
    samplers, seeds, metrics = plan(a)
    if metrics is not None:
        judge_used(a, metrics, "the metrics")
    if a.judge is not None or (metrics and set(JUDGED) & set(metrics)):
        judge_from_cli(a.judge, allow_download=a.allow_download)     # its config.json: seconds, no weights
    opts = {"judge": a.judge} if a.judge else {}
    if a.mauve_references is not None:      # read before the model loads: a bad file fails in seconds
        if "mauve" not in (metrics or ()):
            said = ",".join(metrics) if metrics else "the model's own, as --metrics is not given"
            raise UsageError(f"--mauve-references is given but mauve is not among the metrics ({said}).",
                             "add mauve to --metrics, or drop --mauve-references.")
        opts["references"] = mauve_references(a)
    a.device = device_from_cli(a.device)
    model = model_from_cli(a.model, device=a.device, allow_download=a.allow_download)
    steps = resolved_steps(a, model.seq_len)
    if metrics is None:
        metrics = default_metrics(model)
        judge_used(a, metrics, f"the default metrics of {a.model}")
        if a.judge is None and set(JUDGED) & set(metrics):
            judge_from_cli(None)             # the shipped judge, there before any cell
    metrics_fit(metrics, model, a.model, a.judge)
    out.mkdir(exist_ok=True)
    with library_bars(not a.no_progress):
        df = sweep(model, samplers, steps, num_samples=a.num_samples, seeds=seeds, metrics=metrics,
                   cache_dir=a.cache_dir or out / "cache", device=a.device, batch_size=a.batch_size,
                   progress=not a.no_progress, metric_options=opts)
    if rank() != 0:
        return 0
    write_parquet_atomic(df, out / "sweep.parquet")
    command = "explorer sweep " + " ".join(argv)
    baseline = a.baseline or "mdlm"
    rocs = []
    if baseline in set(df["sampler"]):
        rocs = [return_on_compute(df, baseline=baseline, metric=m) for m in dict.fromkeys(df["metric"])
                if higher_is_better(m) is not None]
        for m in dict.fromkeys(df["metric"]):
            if higher_is_better(m) is not None and not m.startswith("violation:"):
                print(summary(df, baseline=baseline, metric=m))
    if rocs:
        write_parquet_atomic(pd.concat(rocs, ignore_index=True), out / "return_on_compute.parquet")
    else:  # none this time: an earlier run's table must not pass for this one's
        (out / "return_on_compute.parquet").unlink(missing_ok=True)
    report = report_html(df, out / "report.html", baseline=baseline,
                         title=f"Sweep: {a.model}", command=command)
    written = [out / "sweep.parquet"] + ([out / "return_on_compute.parquet"] if rocs else []) + [report]
    print("wrote " + ", ".join(map(str, written[:-1])) + f" and {written[-1]}")
    return 0
