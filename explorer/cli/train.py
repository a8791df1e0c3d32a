"""``explorer train``: the options of :class:`explorer.train.TrainConfig`, checked, then :func:`explorer.train.train`."""
from __future__ import annotations

import dataclasses
import shlex
import sys
from pathlib import Path
from typing import Sequence

from explorer.cli._options import add_no_progress, add_threads
from explorer.cli.common import (ArgumentParser, UsageError, device_from_cli, nonnegative_float, nonnegative_int,
                                 output_dir, positive_int, seed_int)


def parser() -> ArgumentParser:
    from explorer.tasks import TASKS

    p = ArgumentParser(prog="explorer train", description="Train a masked diffusion LM (MDLM) on a task: "
                       "one recipe, readable in one sitting (explorer/train.py).")
    p.add_argument("--task", choices=TASKS, required=True, help="the task to learn")
    p.add_argument("--out", required=True, help="run folder (checkpoint, log); its parent must exist")
    p.add_argument("--steps", type=positive_int, default=20000, help="optimizer steps in all (a resumed run stops here too)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="sequences per step")
    p.add_argument("--lr", type=nonnegative_float, default=1e-3, help="peak learning rate (AdamW)")
    p.add_argument("--warmup", type=nonnegative_int, default=500, help="linear warm-up steps")
    p.add_argument("--schedule", choices=("constant", "cosine"), default="constant",
                   help="learning rate after the warm-up")
    p.add_argument("--weight-decay", type=nonnegative_float, default=0.0, help="AdamW weight decay")
    p.add_argument("--ema", type=float, default=0.9999, help="EMA decay (with warm-up)")
    p.add_argument("--hidden-dim", type=positive_int, default=192, help="DiT width")
    p.add_argument("--n-blocks", type=positive_int, default=4, help="DiT blocks")
    p.add_argument("--n-heads", type=positive_int, default=4, help="attention heads (must divide --hidden-dim)")
    p.add_argument("--cond-dim", type=positive_int, default=64, help="width of the time conditioning")
    p.add_argument("--dropout", type=float, default=0.0, help="dropout probability")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the data stream, the noise and the weights")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    add_threads(p)
    p.add_argument("--eval-every", type=positive_int, default=1000, help="steps between held-out evaluations")
    p.add_argument("--eval-n", type=positive_int, default=512, help="held-out sequences for the NELBO")
    p.add_argument("--ckpt-every", type=positive_int, default=1000, help="steps between checkpoints")
    p.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint.pt")
    p.add_argument("--init-from", type=Path, default=None,
                   help="start from the weights of an exported model (same architecture and "
                        "vocabulary; the length may differ: the DiT has no absolute positions)")
    p.add_argument("--export", default=None, help="write the EMA model here at the end")
    add_no_progress(p)
    return p


def config_from_args(a) -> "TrainConfig":  # noqa: F821 (imported below: torch loads only for the command)
    """The :class:`TrainConfig` of parsed options, refusing before any step what would fail late:
    output folders that cannot be written, a missing ``--init-from``, and every setting the config
    checks (heads that do not divide the width, ``--ema``/``--dropout`` outside [0, 1), an
    infinite ``--lr`` or ``--weight-decay``, ...)."""
    from explorer.runs import SettingError
    from explorer.train import TrainConfig

    a.out = output_dir(a.out, "--out")    # a str until here: "" would have been Path("."), the current folder
    device_from_cli(a.device)
    if a.export is not None:
        a.export = output_dir(a.export, "--export")
    if a.init_from is not None and not Path(a.init_from).is_dir():
        raise UsageError(f"--init-from {a.init_from}: no such model folder.",
                         "pass the folder an earlier run exported (config.json + model.safetensors).")
    values = {f.name: getattr(a, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(a, f.name)}
    try:
        return TrainConfig(**values, progress=not a.no_progress)
    except SettingError as e:  # said with the options' names: --n-heads, not n_heads
        raise UsageError(*e.options()) from None


def main(argv: Sequence[str] | None = None) -> int:
    from explorer.runs import RunFolderError
    from explorer.train import train

    argv = list(sys.argv[1:] if argv is None else argv)
    config = config_from_args(parser().parse_args(argv))
    try:
        train(config, command="explorer train " + shlex.join(a for a in argv if a != "--debug"))
    except RunFolderError as e:   # a run already there without --resume; --resume with another --hidden-dim
        # or a damaged checkpoint; an --init-from folder without weights, or of another architecture
        raise UsageError(e.problem, e.fix) from None
    return 0
