"""``explorer`` command line: one entry point; each command checks its arguments before any work.

A mistake of the user's (unknown model, bad option, damaged file, an ``--out`` that cannot be
written) prints one or two lines on stderr and exits with status 2 (``explorer.usage.run``, the
one place that maps exceptions to messages); ``--debug`` or ``EXPLORER_DEBUG=1`` shows the traceback.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Sequence

from explorer.samplers import REGISTRY
from explorer.usage import (ArgumentParser, UsageError, model_from_cli, output_dir, output_file, positive_float,
                            positive_int, run, sampler_from_cli)

SAMPLER_NAMES = ", ".join(REGISTRY)
TRACE_SUFFIXES = (".csv", ".parquet")


# ----------------------------------------------------------------------------- generate

def generate_parser() -> ArgumentParser:
    p = ArgumentParser(prog="explorer generate", description=(
        "Generate samples with one sampler, print them numbered, and optionally record the run "
        "as a trace file (.csv or .parquet, with its .meta.json)."))
    p.add_argument("--model", required=True, help="shipped name (orders, stories, orders-oracle), a model "
                   "folder (config.json + weights) or a hub id in the local cache")
    p.add_argument("--sampler", default="remdm-loop", help=f"one of: {SAMPLER_NAMES}")
    p.add_argument("--settings", default="{}", help='sampler settings as JSON, e.g. \'{"eta": 0.02}\'')
    p.add_argument("--steps", type=positive_int, required=True, help="number of sampling steps T (>= 1)")
    p.add_argument("--num-samples", type=positive_int, default=1, help="how many sequences to generate")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same samples)")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="sequences per model call (default: all at once; samples do not depend on it)")
    p.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda (default: cpu)")
    p.add_argument("--allow-download", action="store_true", help="allow fetching a model from the Hugging Face hub")
    p.add_argument("--out", default=None, help="write the trace here (.csv or .parquet) with its .meta.json; "
                   "the folder must exist")
    p.add_argument("--prompt", default=None, help="prompt text (tokenised with the model's tokenizer; "
                   "never changed by the sampler)")
    p.add_argument("--chat", action="store_true", help="send --prompt as one user message through the "
                   "tokenizer's chat template (instruct models such as LLaDA-8B-Instruct, Dream-Instruct)")
    p.add_argument("--gen-length", type=positive_int, default=None, help="tokens to generate after the prompt; "
                   "required for models without a fixed length (LLaDA, Dream)")
    return p


def format_samples(texts: Sequence[str]) -> str:
    """Samples numbered and separated: a header line per sample, a blank line between them."""
    n = len(texts)
    return "\n\n".join(f"--- sample {i + 1} of {n} ---\n{text}" for i, text in enumerate(texts))


def generate_main(argv: Sequence[str] | None = None) -> int:
    import explorer

    a = generate_parser().parse_args(argv)
    out = output_file(a.out, suffixes=TRACE_SUFFIXES) if a.out else None
    sampler = sampler_from_cli(a.sampler, a.settings)
    model = model_from_cli(a.model, device=a.device, allow_download=a.allow_download)
    if a.chat and a.prompt is None:
        raise UsageError("--chat needs --prompt.", "add --prompt 'your question'.")
    prompt = [{"role": "user", "content": a.prompt}] if a.chat else a.prompt
    if getattr(model, "seq_len", 0) is None and a.gen_length is None:
        raise UsageError(f"{a.model} has no fixed length, so the number of tokens to write must be given.",
                         "add --gen-length N (e.g. --gen-length 32).")
    if getattr(model, "seq_len", None) is not None and a.gen_length is not None:
        raise UsageError(f"{a.model} always writes {model.seq_len} tokens; --gen-length is for LLaDA/Dream.",
                         "drop --gen-length.")
    extra = {} if a.gen_length is None else {"gen_length": a.gen_length}
    trace = explorer.generate(model, sampler, a.steps, num_samples=a.num_samples, seed=a.seed,
                              batch_size=a.batch_size, prompt=prompt, **extra)
    print(format_samples(trace.texts))
    if out is not None:
        path = trace.to_parquet(out) if out.suffix.lower() == ".parquet" else trace.to_csv(out)
        print(f"wrote {path} and {path}.meta.json", file=sys.stderr)
    return 0


# ----------------------------------------------------------------------------- sweep

def _default_metrics(name: str) -> list[str]:
    n = name.lower()
    if "orders" in n:
        return ["validity", "entropy"]
    if "stories" in n:
        return ["gen_ppl", "entropy"]
    return ["entropy"]


def sweep_parser() -> ArgumentParser:
    p = ArgumentParser(prog="explorer sweep", description=(
        "Run samplers x steps x seeds on a model, score the samples, and write sweep.parquet, "
        "return_on_compute.parquet and a standalone report.html to --out. Finished cells are "
        "cached (--cache-dir, default OUT/cache): run the same command again to resume."))
    p.add_argument("--model", required=True, help="shipped name (orders, stories), model folder or hub id")
    p.add_argument("--samplers", default="mdlm,remdm-loop", help="comma-separated sampler names, each "
                   "optionally with settings: remdm-cap:eta=0.008")
    p.add_argument("--steps", default="L/4,L/2,L,2L", help="comma-separated T; 'L' = sequence length, e.g. L/2,2L")
    p.add_argument("--num-samples", type=positive_int, default=64, help="sequences per cell")
    p.add_argument("--seeds", default="0", help="comma-separated seeds")
    p.add_argument("--metrics", default=None, help="comma-separated: validity, entropy, gen_ppl, mauve "
                   "(default: validity,entropy for orders; gen_ppl,entropy for stories)")
    p.add_argument("--judge", default=None, help="judge causal LM for gen_ppl/mauve (default: shipped stories-judge)")
    p.add_argument("--nucleus-p", type=positive_float, default=None,
                   help="top-p for every sampler (the paper uses 0.9)")
    p.add_argument("--mauve-references", default=None,
                   help="MAUVE references: 'heldout' (stories held-out blocks, as many as --num-samples), "
                        "a .npy of judge features, or a .txt with one text per line "
                        "(default: mauve_reference_features.npy next to the judge)")
    p.add_argument("--baseline", default="mdlm", help="sampler the others are compared with")
    p.add_argument("--out", required=True, help="output folder (created if its parent exists)")
    p.add_argument("--cache-dir", default=None, help="cache of finished cells (default: OUT/cache)")
    p.add_argument("--device", default=None, help="torch device (default: cpu; cuda:LOCAL_RANK under torchrun)")
    p.add_argument("--batch-size", type=positive_int, default=None, help="sequences per model call")
    p.add_argument("--allow-download", action="store_true", help="allow fetching a model from the Hugging Face hub")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _sweep_plan(a) -> tuple[dict, list[int], list[str]]:
    """Samplers, seeds and metrics of a sweep, checked before the model is loaded."""
    from explorer.metrics.registry import get_metric
    from explorer.sweep import _as_samplers, parse_steps

    defaults = {} if a.nucleus_p is None else {"nucleus_p": a.nucleus_p}
    try:
        samplers = _as_samplers(a.samplers, **defaults)
    except ValueError as e:
        raise UsageError(f"--samplers: {e}", "write e.g. --samplers mdlm,remdm-cap:eta=0.02 "
                         f"(names: {SAMPLER_NAMES}).") from None
    try:
        steps = parse_steps(a.steps, 1024)
        if not steps or min(steps) < 1:
            raise ValueError
    except ValueError:
        raise UsageError(f"--steps {a.steps!r} is not a list of positive step counts.",
                         "write e.g. --steps 16,32,64 or --steps L/4,L,2L (L = sequence length).") from None
    try:
        seeds = [int(s) for s in a.seeds.split(",")]
    except ValueError:
        raise UsageError(f"--seeds {a.seeds!r} is not a list of whole numbers.", "write e.g. --seeds 0,1,2.") from None
    metrics = a.metrics.split(",") if a.metrics else _default_metrics(a.model)
    for m in metrics:
        try:
            get_metric(m)
        except (KeyError, ValueError) as e:
            raise UsageError(f"--metrics: {e}".rstrip("."), "choose from validity, entropy, gen_ppl, mauve.") from None
    return samplers, seeds, metrics


def sweep_main(argv: Sequence[str] | None = None) -> int:
    """``explorer sweep``: run a grid, write sweep.parquet, return_on_compute.parquet and report.html."""
    import numpy as np
    import pandas as pd

    import explorer
    from explorer.metrics.registry import higher_is_better
    from explorer.sweep import _rank, _write_parquet_atomic, parse_steps, return_on_compute, summary, sweep
    from explorer.viz.sweep_report import report_html

    argv = list(sys.argv[1:] if argv is None else argv)
    a = sweep_parser().parse_args(argv)
    out = output_dir(a.out)
    samplers, seeds, metrics = _sweep_plan(a)
    model = model_from_cli(a.model, device=a.device, allow_download=a.allow_download)
    steps = parse_steps(a.steps, model.seq_len)
    out.mkdir(exist_ok=True)
    opts = {"judge": a.judge} if a.judge else {}
    if a.mauve_references == "heldout":
        from explorer.tasks import stories
        opts["references"] = stories.heldout_texts(a.num_samples)
    elif a.mauve_references and a.mauve_references.endswith(".npy"):
        opts["references"] = np.load(a.mauve_references)
    elif a.mauve_references:
        opts["references"] = [t for t in Path(a.mauve_references).read_text().splitlines() if t.strip()]
    df = sweep(model, samplers, steps, num_samples=a.num_samples, seeds=seeds, metrics=metrics,
               cache_dir=a.cache_dir or out / "cache", device=a.device, batch_size=a.batch_size,
               progress=not a.no_progress, metric_options=opts)
    if _rank() != 0:
        return 0
    _write_parquet_atomic(df, out / "sweep.parquet")
    command = "explorer sweep " + " ".join(argv)
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


# ----------------------------------------------------------------------------- the other commands

def _train(argv):
    from explorer.train import main
    main(argv)
    return 0


def _judge(argv):
    from explorer.judge import main
    main(argv)
    return 0


def _evaluate_orders(argv):
    from explorer.studies.orders import evaluate
    print(evaluate(argv).to_string(index=False))
    return 0


# name -> (one line of help, the command)
COMMANDS: dict[str, tuple[str, Callable[[list[str]], int]]] = {
    "generate": ("generate samples with one sampler and optionally record the trace", generate_main),
    "sweep": ("samplers x steps x seeds on a model: tidy results, return on compute, HTML report", sweep_main),
    "train": ("train a small MDLM (DiT) on a task: orders or stories", _train),
    "judge": ("train or evaluate the small causal judge LM used by gen_ppl and mauve", _judge),
    "evaluate-orders": ("validity of generated order records for samplers x steps (CSV)", _evaluate_orders),
}


def help_text() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: explorer COMMAND [options]      (explorer COMMAND --help for its options)", "",
             "ReMDM Explorer: see and measure remasking in masked diffusion language models.", "",
             "commands:"]
    lines += [f"  {name:<{width}}  {about}" for name, (about, _) in COMMANDS.items()]
    lines += ["", "options:", "  -h, --help   show this help", "  --debug      show the full traceback of an "
              "error (or set EXPLORER_DEBUG=1)", "",
              "example: explorer generate --model orders --sampler remdm-loop --steps 256 --num-samples 2"]
    return "\n".join(lines)


def _dispatch(argv: list[str]) -> int:
    words = [w for w in argv if w != "--debug"]
    if not words or words[0] in ("-h", "--help"):
        print(help_text())
        return 0
    name = words[0]
    if name not in COMMANDS:
        raise UsageError(f"unknown command {name!r}.",
                         f"choose one of {', '.join(COMMANDS)} (explorer --help lists them).")
    rest = argv[argv.index(name) + 1:]
    return COMMANDS[name][1](rest + (["--debug"] if "--debug" in argv[:argv.index(name)] else []))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    name = next((w for w in argv if not w.startswith("-")), None)
    prog = f"explorer {name}" if name in COMMANDS else "explorer"
    return run(prog, _dispatch, argv)


if __name__ == "__main__":
    sys.exit(main())
