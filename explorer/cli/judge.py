"""``explorer judge train|eval``: the small causal judge LM behind gen_ppl and mauve (:mod:`explorer.judge`)."""
from __future__ import annotations

import json
import math
import platform
from pathlib import Path
from typing import Sequence

from explorer.cli._options import add_threads, set_threads
from explorer.cli.common import (ArgumentParser, UsageError, _number_at_least, device_from_cli, nonnegative_float,
                                 nonnegative_int, output_dir, positive_int)

#: explorer.judge.train seeds numpy's legacy generator, which takes 0 to 2**32 - 1.
judge_seed = _number_at_least(int, 0, False, "a whole number >= 0 and <= 2**32 - 1", high=2**32 - 1)


def parser() -> ArgumentParser:
    p = ArgumentParser(prog="explorer judge", description="A small causal judge LM on the stories tokenizer: "
                       "generative perplexity and MAUVE features offline.")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="{train,eval}",
                           help="train: train (or resume) a judge; eval: its held-out perplexity")
    t = sub.add_parser("train", help="train (or resume) the stories judge",
                       description="Train (or resume) the stories judge; --export writes it in the HF format.")
    t.add_argument("--out", required=True, help="run folder (checkpoint, history), e.g. runs/judge; its parent "
                   "must exist")
    t.add_argument("--steps", type=positive_int, required=True, help="optimizer steps in all")
    t.add_argument("--batch-size", type=positive_int, default=32, help="blocks per step")
    t.add_argument("--lr", type=nonnegative_float, default=1e-3, help="peak learning rate")
    t.add_argument("--warmup", type=nonnegative_int, default=200, help="linear warm-up steps")
    t.add_argument("--seed", type=judge_seed, default=0, help="seed of the data stream and the weights")
    t.add_argument("--eval-every", type=nonnegative_int, default=250, help="steps between held-out evaluations (0: never)")
    t.add_argument("--ckpt-every", type=positive_int, default=50, help="steps between checkpoints")
    add_threads(t, default=1)
    t.add_argument("--n-layer", type=positive_int, default=4, help="transformer layers")
    t.add_argument("--n-embd", type=positive_int, default=256, help="width (must be divisible by --n-head)")
    t.add_argument("--n-head", type=positive_int, default=4, help="attention heads")
    t.add_argument("--device", default="cpu", help="torch device: cpu, cuda[:N], mps or auto")
    t.add_argument("--export", default=None, help="folder to write the HF model + tokenizer to")
    e = sub.add_parser("eval", help="held-out perplexity of a judge",
                       description="Held-out perplexity of a judge (shipped name or folder).")
    e.add_argument("path", nargs="?", default="stories-judge", help="shipped judge name or folder")
    add_threads(e, default=1)
    return p


_ARCHITECTURE = {"n_layer": "--n-layer", "n_embd": "--n-embd", "n_head": "--n-head"}


def check_resume(out: str | Path, config) -> None:
    """``judge train`` resumes a run folder that holds ``ckpt.pt``: refused before any work when the
    checkpoint's architecture is not the one asked for (it was torch's size-mismatch traceback)."""
    ckpt = Path(out) / "ckpt.pt"
    if not ckpt.is_file():
        return
    import torch

    try:
        saved = torch.load(ckpt, map_location="cpu", weights_only=False, mmap=True)
    except Exception:   # noqa: BLE001 -- a damaged checkpoint is reported by judge.train, which reads it
        return
    old = saved.get("config") if isinstance(saved, dict) else None
    if not isinstance(old, dict):
        return
    new = config.to_dict()
    differ = [k for k in _ARCHITECTURE if k in old and old[k] != new.get(k)]
    if differ:
        was = ", ".join(f"{_ARCHITECTURE[k]} {old[k]}" for k in differ)
        asked = ", ".join(f"{_ARCHITECTURE[k]} {new.get(k)}" for k in differ)
        raise UsageError(f"--out {out} holds a judge run with {was} (judge train resumes it), but this command "
                         f"asks for {asked}.",
                         f"give {was} to resume that run, or choose another --out for a new judge.")


def _train(a) -> None:
    import torch

    from explorer import judge
    from explorer.io import write_text_atomic
    from explorer.runs import RunFolderError, SettingError
    from explorer.train import json_text

    output_dir(a.out, "--out")
    if a.export:
        output_dir(a.export, "--export")
    device = device_from_cli(a.device)
    if a.n_embd % a.n_head:
        raise UsageError(f"--n-head {a.n_head} does not divide --n-embd {a.n_embd}.",
                         "choose a head count that divides the width.")
    config = judge.judge_config(n_layer=a.n_layer, n_embd=a.n_embd, n_head=a.n_head)
    check_resume(a.out, config)
    set_threads(a.threads)
    try:
        res = judge.train(a.out, a.steps, batch_size=a.batch_size, lr=a.lr, warmup=a.warmup, seed=a.seed,
                          eval_every=a.eval_every, ckpt_every=a.ckpt_every, device=device, config=config)
    except SettingError as e:       # said with the options' names (--lr), as explorer train does
        raise UsageError(*e.options()) from None
    except RunFolderError as e:     # a damaged ckpt.pt in --out
        raise UsageError(e.problem, e.fix) from None
    st = res["state"]
    summary = {"steps": st["step"], "seconds": round(st["seconds"], 1),
               "best_step": st.get("best_step"), "best_heldout_loss": st["best_loss"],
               "best_heldout_ppl": math.exp(st["best_loss"]), "hardware": platform.processor() or platform.machine(),
               "threads": a.threads, "torch": torch.__version__}
    text = json_text(summary)
    write_text_atomic(Path(a.out) / "summary.json", text)
    print(text, end="")
    if a.export:
        print("exported to", judge.export(a.out, a.export))


def _eval(a) -> None:
    from explorer import judge
    from explorer.metrics._judge import NotAJudge, check_judge

    set_threads(a.threads)
    folder = Path(a.path)
    if (folder / "ckpt.pt").is_file() and not (folder / "config.json").is_file():
        raise UsageError(f"{a.path} is a `judge train` run folder (ckpt.pt), not an exported judge.",
                         f"export it first (explorer judge train --out {a.path} --steps N --export DIR, with the "
                         "run's N and settings) and pass DIR.")
    missing = UsageError(f"no judge at {a.path!r}.", "pass a shipped name (stories-judge) or a folder "
                         "written by `explorer judge train --export DIR`.")
    try:
        check_judge(a.path)             # its config.json, before any weights
    except NotAJudge as e:
        problem, _, fix = str(e).partition("; ")
        raise UsageError(problem + ".", fix) from None
    except (FileNotFoundError, ValueError):   # ValueError: huggingface_hub read a missing path as a bad hub id
        raise missing from None
    try:
        judge.load_judge(a.path)
    except FileNotFoundError:
        raise missing from None
    print(json.dumps(judge.heldout_report(a.path), indent=1))


def main(argv: Sequence[str] | None = None) -> int:
    a = parser().parse_args(argv)
    (_train if a.cmd == "train" else _eval)(a)
    return 0
