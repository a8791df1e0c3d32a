"""``explorer`` command line: one entry point, each subcommand owned by the module that does the work.

    explorer generate --model orders --sampler remdm-loop --steps 256 --num-samples 4 --out runs/trace.csv
    explorer train --task orders ...          (explorer.train)
    explorer sweep --model orders ...         (explorer.sweep)
    explorer judge train ...                  (explorer.judge)
    explorer evaluate-orders ...              (explorer.studies.orders.evaluate)
"""
from __future__ import annotations

import argparse
import json
import sys


def _generate(argv):
    import explorer
    from explorer.samplers import by_name

    p = argparse.ArgumentParser(prog="explorer generate", description="Generate, record and export a trace.")
    p.add_argument("--model", required=True, help="shipped name (orders, stories), local directory or hub id")
    p.add_argument("--sampler", default="remdm-loop", help="mdlm, remdm-cap, remdm-rescale, remdm-conf, "
                   "remdm-loop, remdm-switch, forward-backward, dfm, confidence")
    p.add_argument("--settings", default="{}", help='sampler settings as JSON, e.g. \'{"eta": 0.02}\'')
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--num-samples", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--allow-download", action="store_true", help="allow fetching a hub model")
    p.add_argument("--out", default=None, help="write the trace here (.csv or .parquet) with its .meta.json")
    a = p.parse_args(argv)
    try:
        settings = json.loads(a.settings)
    except json.JSONDecodeError as e:
        p.error(f"--settings is not valid JSON: {e}")
    model = explorer.load_model(a.model, device=a.device, allow_download=a.allow_download)
    trace = explorer.generate(model, by_name(a.sampler, **settings), a.steps, num_samples=a.num_samples,
                              seed=a.seed, batch_size=a.batch_size)
    for text in trace.texts:
        print(text)
    if a.out:
        path = trace.to_parquet(a.out) if a.out.endswith(".parquet") else trace.to_csv(a.out)
        print(f"wrote {path} and {path}.meta.json", file=sys.stderr)
    return 0


def _train(argv):
    from explorer.train import main
    main(argv)
    return 0


def _sweep(argv):
    return sweep_main(argv) or 0


def _judge(argv):
    from explorer.judge import main
    main(argv)
    return 0


def _evaluate_orders(argv):
    from explorer.studies.orders import evaluate
    print(evaluate(argv).to_string(index=False))
    return 0


def _default_metrics(name: str) -> list[str]:
    n = name.lower()
    if "orders" in n:
        return ["validity", "entropy"]
    if "stories" in n:
        return ["gen_ppl", "entropy"]
    return ["entropy"]


def sweep_main(argv=None) -> int:
    """``explorer sweep``: run a grid, write sweep.parquet, return_on_compute.parquet and report.html."""
    import numpy as np
    import pandas as pd
    from pathlib import Path

    import explorer
    from explorer.metrics.registry import higher_is_better
    from explorer.sweep import _as_samplers, _rank, _write_parquet_atomic, parse_steps, return_on_compute, summary, sweep
    from explorer.viz.sweep_report import report_html

    p = argparse.ArgumentParser(prog="explorer sweep", description=(
        "Run samplers x steps x seeds on a model, score the samples, and write sweep.parquet, "
        "return_on_compute.parquet and a standalone report.html to --out. Finished cells are "
        "cached (--cache-dir, default OUT/cache): run the same command again to resume."))
    p.add_argument("--model", required=True, help="shipped name (orders, stories), directory or hub id")
    p.add_argument("--samplers", default="mdlm,remdm-loop", help="comma-separated CLI sampler names, each optionally with settings: remdm-cap:eta=0.008")
    p.add_argument("--steps", default="L/4,L/2,L,2L", help="comma-separated T; 'L' = sequence length, e.g. L/2,2L")
    p.add_argument("--num-samples", type=int, default=64)
    p.add_argument("--seeds", default="0", help="comma-separated seeds")
    p.add_argument("--metrics", default=None, help="comma-separated: validity, entropy, gen_ppl, mauve "
                   "(default: validity,entropy for orders; gen_ppl,entropy for stories)")
    p.add_argument("--judge", default=None, help="judge causal LM for gen_ppl/mauve (default: shipped stories-judge)")
    p.add_argument("--nucleus-p", type=float, default=None, help="top-p for every sampler (the paper uses 0.9)")
    p.add_argument("--mauve-references", default=None,
                   help="MAUVE references: 'heldout' (stories held-out blocks, as many as --num-samples), "
                        "a .npy of judge features, or a .txt with one text per line "
                        "(default: mauve_reference_features.npy next to the judge)")
    p.add_argument("--baseline", default="mdlm")
    p.add_argument("--out", required=True)
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--allow-download", action="store_true", help="let load_model fetch a hub model")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)

    model = explorer.load_model(a.model, device=a.device, allow_download=a.allow_download)
    steps = parse_steps(a.steps, model.seq_len)
    metrics = a.metrics.split(",") if a.metrics else _default_metrics(a.model)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    opts = {"judge": a.judge} if a.judge else {}
    if a.mauve_references == "heldout":
        from explorer.tasks import stories
        opts["references"] = stories.heldout_texts(a.num_samples)
    elif a.mauve_references and a.mauve_references.endswith(".npy"):
        opts["references"] = np.load(a.mauve_references)
    elif a.mauve_references:
        opts["references"] = [t for t in Path(a.mauve_references).read_text().splitlines() if t.strip()]
    defaults = {} if a.nucleus_p is None else {"nucleus_p": a.nucleus_p}
    df = sweep(model, _as_samplers(a.samplers, **defaults), steps, num_samples=a.num_samples,
               seeds=[int(s) for s in a.seeds.split(",")], metrics=metrics,
               cache_dir=a.cache_dir or out / "cache", device=a.device, batch_size=a.batch_size,
               progress=not a.no_progress, metric_options=opts)
    if _rank() != 0:
        return 0
    _write_parquet_atomic(df, out / "sweep.parquet")
    command = "explorer sweep " + " ".join(sys.argv[1:] if argv is None else argv)
    if a.baseline in set(df["sampler"]):
        rocs = [return_on_compute(df, baseline=a.baseline, metric=m) for m in dict.fromkeys(df["metric"])
                if higher_is_better(m) is not None]
        if rocs:
            _write_parquet_atomic(pd.concat(rocs, ignore_index=True), out / "return_on_compute.parquet")
        for m in dict.fromkeys(df["metric"]):
            if higher_is_better(m) is not None and not m.startswith("violation:"):
                print(summary(df, baseline=a.baseline, metric=m))
    report = report_html(df, out / "report.html", baseline=a.baseline,
                         title=f"Sweep: {a.model}", command=command)
    print(f"wrote {out / 'sweep.parquet'} and {report}")
    return 0



COMMANDS = {"generate": _generate, "train": _train, "sweep": _sweep, "judge": _judge,
            "evaluate-orders": _evaluate_orders}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(__doc__.strip())
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nunknown command {argv[0]!r}; choose one of {', '.join(COMMANDS)}", file=sys.stderr)
            return 2
        return 0
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
