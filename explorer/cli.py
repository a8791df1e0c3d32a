"""``explorer`` command line: one entry point, each subcommand owned by the module that does the work.

    explorer generate --model orders --sampler remdm-loop --steps 256 --num-samples 4 --out runs/trace.csv
    explorer train --task orders ...          (explorer.train)
    explorer sweep --model orders ...         (explorer.sweep)
    explorer judge train ...                  (explorer.judge)
    explorer evaluate-orders ...              (explorer.tasks.orders.evaluate)
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
    from explorer.sweep import main
    return main(argv) or 0


def _judge(argv):
    from explorer.judge import main
    main(argv)
    return 0


def _evaluate_orders(argv):
    from explorer.tasks.orders import evaluate
    print(evaluate(argv).to_string(index=False))
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
