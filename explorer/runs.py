"""What the two training recipes (:mod:`explorer.train`, the diffusion model; :mod:`explorer.judge`,
the causal judge) share around a run folder: the errors they raise, said as a problem and a fix
(the command line prints both, in its options' names), and the checks behind them.
"""
from __future__ import annotations

import math
import re
from pathlib import Path


class RunFolderError(ValueError):
    """A folder that cannot be used as asked (the run's, or the model ``init_from`` names):
    ``problem`` and ``fix`` (the command line prints both)."""

    def __init__(self, problem: str, fix: str):
        super().__init__(f"{problem} {fix}")
        self.problem, self.fix = problem, fix


class SettingError(ValueError):
    """A setting out of range, told with Python's names (``n_heads``); :meth:`options` tells it with
    the command line's (``--n-heads``), for the ``settings`` it names."""

    def __init__(self, settings: tuple[str, ...], problem: str, fix: str):
        super().__init__(f"{problem}; {fix}")
        self.settings, self.problem, self.fix = settings, problem, fix

    def options(self) -> tuple[str, str]:
        """(problem, fix) with each setting spelled as its option: ``n_heads`` -> ``--n-heads``."""
        def spelled(text: str) -> str:
            for name in self.settings:
                text = re.sub(rf"\b{name}\b", "--" + name.replace("_", "-"), text)
            return text
        return spelled(self.problem) + ".", spelled(self.fix)


def check_finite_nonnegative(name: str, value: float, fix: str) -> None:
    """A float setting (a learning rate, a decay) is a number >= 0: an infinite learning rate
    trains to NaN without an error, so it is refused here, before any step."""
    if not (math.isfinite(value) and value >= 0):
        raise SettingError((name,), f"{name} must be a finite number >= 0, got {value!r}", fix)


def damaged_checkpoint(path: Path, err: BaseException, fix: str) -> RunFolderError:
    """The error for a checkpoint that cannot be read back (truncated, overwritten, not torch's)."""
    first_sentence = (str(err).splitlines() or [""])[0].split(". ")[0].rstrip(".")
    return RunFolderError(f"{path} is damaged or not a checkpoint ({type(err).__name__}: {first_sentence}).", fix)
