"""``explorer`` command line: one entry point (``explorer``, ``python -m explorer.cli``), every parser here.

Layout: one module per command group, each a parser function and a ``main(argv) -> int`` that checks
every argument before any work and then calls the library with typed arguments:

* ``generate`` -- :mod:`explorer.cli.generate`: :func:`explorer.generate`
* ``sweep`` -- :mod:`explorer.cli.sweep`: :func:`explorer.sweep.sweep`
* ``train`` -- :mod:`explorer.cli.train`: :func:`explorer.train.train` with a ``TrainConfig``
* ``judge`` -- :mod:`explorer.cli.judge`: :mod:`explorer.judge` ``train`` / ``heldout_report``
* ``evaluate-orders`` -- :mod:`explorer.cli.orders`: :func:`explorer.studies.orders.evaluate`
* ``repair`` -- :mod:`explorer.cli.orders`: :func:`explorer.studies.repair.measure`
* ``corpus`` -- :mod:`explorer.cli.corpus`: :mod:`explorer.tasks.stories` tokenizer and split sizes
* ``strategies`` -- :mod:`explorer.cli.strategies`: :func:`explorer.studies.strategies.compare`

**Adding a command** (as ``explorer strategies`` was added): write ``explorer/cli/NAME.py`` with
``parser() -> ArgumentParser`` (from :mod:`explorer.cli.common`, ``prog="explorer NAME"``, help
text on every option) and ``main(argv) -> int`` (parse, check files and sampler specs with
``output_file`` / ``samplers_from_cli`` / ``model_from_cli``, *then* load the model and call the
library); options that other commands take too come from :mod:`explorer.cli._options`. Import the
module below, add one row ``Command.of(NAME, about)`` to :data:`COMMANDS` and one line to the list above.
``explorer --help``, the error handling (two lines and exit status 2 for a user's mistake,
``--debug`` for the traceback) and the tests (every command has help, every option a help text,
this list names every command) pick it up from the table.

Errors: a mistake of the user's (unknown model, bad option, damaged file, an ``--out`` that cannot
be written) prints one or two lines on stderr and exits with status 2 (:func:`explorer.cli.common.run`,
the one place that maps exceptions to messages); ``--debug`` or ``EXPLORER_DEBUG=1`` shows the traceback.
Sampler specs are read one way everywhere: :mod:`explorer.samplers.spec`.

Nothing in the package imports this one: it is the top layer.
"""
from __future__ import annotations

import sys
from types import ModuleType
from typing import Callable, NamedTuple, Sequence

from explorer.cli import corpus, generate, judge, orders, strategies, sweep, train
from explorer.cli.common import ArgumentParser, UsageError, run


class Command(NamedTuple):
    about: str                                  # one line for `explorer --help`
    parser: Callable[[], ArgumentParser]        # the command's options (prog "explorer NAME")
    main: Callable[[list[str]], int]            # parse argv, check, run; returns the exit status

    @classmethod
    def of(cls, module: ModuleType, about: str) -> Command:
        """The command of a module that holds one, as ``parser()`` and ``main(argv)``."""
        return cls(about, module.parser, module.main)


# name -> the command; `explorer --help` lists them in this order
COMMANDS: dict[str, Command] = {
    "generate": Command.of(generate, "generate samples with one sampler and optionally record the trace"),
    "sweep": Command.of(sweep, "samplers x steps x seeds on a model: tidy results, return on compute, HTML report"),
    "train": Command.of(train, "train a small MDLM (DiT) on a task: orders or stories"),
    "judge": Command.of(judge, "train or evaluate the small causal judge LM used by gen_ppl and mauve"),
    # orders.py holds two commands
    "evaluate-orders": Command("validity of generated order records for samplers x steps (CSV)",
                               orders.evaluate_parser, orders.evaluate_main),
    "repair": Command("plant wrong fields in orders records, refine, report the share repaired (CSV)",
                      orders.repair_parser, orders.repair_main),
    "corpus": Command.of(corpus, "build the stories tokenizer and describe the corpus splits"),
    "strategies": Command.of(strategies, "which tokens to remask: strategies x budgets of model calls on one "
                             "model and seed"),
}


def help_text() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: explorer COMMAND [options]      (explorer COMMAND --help for its options)", "",
             "ReMDM Explorer: see and measure remasking in masked diffusion language models.", "",
             "commands:"]
    lines += [f"  {name:<{width}}  {command.about}" for name, command in COMMANDS.items()]
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
    return COMMANDS[name].main(rest + (["--debug"] if "--debug" in argv[:argv.index(name)] else []))


def main(argv: Sequence[str] | None = None) -> int:
    """The ``explorer`` console script: run one command; returns its exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    name = next((w for w in argv if not w.startswith("-")), None)
    prog = f"explorer {name}" if name in COMMANDS else "explorer"
    return run(prog, _dispatch, argv)


__all__ = ["COMMANDS", "Command", "help_text", "main"]
