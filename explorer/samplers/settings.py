"""Checks of the settings several samplers share, for their ``validate()`` / ``check_shape()``, and
two declarations of a setting: :func:`choice` (one of a fixed set of words) and :func:`open_unit`
(a number in (0, 1), checked for every sampler by ``Sampler.__post_init__``).

Each raises a ``ValueError`` that names the setting and the fix.  The range checks of one number,
``_check_unit`` and ``check_open_unit``, are in :mod:`explorer.samplers.base`; the block checks
(``check_block_length``, ``check_blocks``) are in :mod:`explorer.samplers.ranked`.
"""
from __future__ import annotations

import math
from dataclasses import field

from .base import _check_unit, check_open_unit


def choice(default: str, options: tuple[str, ...]):
    """A dataclass field for a setting that takes one of ``options``: the chat panel offers them as a
    list (``field.metadata["choices"]``); the sampler's ``validate()`` checks the value and says
    what each option means."""
    if default not in options:
        raise ValueError(f"the default {default!r} is not one of the options {options}.")
    return field(default=default, metadata={"choices": tuple(options)})


def check_positive_int(name: str, v, allow_none=False, allow_zero=False) -> None:
    """An integer >= 1 (>= 0 with ``allow_zero``; None too with ``allow_none``)."""
    if v is None and allow_none:
        return
    lo = 0 if allow_zero else 1
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ValueError(f"{name} must be an integer >= {lo}" + (" or None" if allow_none else "") + f", got {v!r}.")


def open_unit(default: float, what: str):
    """A dataclass field for a setting in the open interval (0, 1) -- a probability threshold, a
    share.  ``what`` says what it is: the ValueError of a value outside (0, 1) ends with it and the
    chat panel shows it as the setting's tooltip (``field.metadata["open_unit"]``)."""
    check_open_unit("the default", default, what)
    return field(default=default, metadata={"open_unit": what})


def check_temperature(temperature) -> None:
    """A sampling temperature: a number >= 0 (0 is the argmax)."""
    _check_unit("temperature", temperature, high=math.inf)


def rescore_groups(groups: int | None, gen_length: int, per: int) -> int:
    """The number of leave-group-out passes of ``ctx.rescore``: ``groups``, or one group per ``per``
    positions of the generated part (at least 1) when it is None."""
    return groups if groups is not None else max(1, gen_length // per)


def check_groups(groups: int | None, gen_length: int, per: int) -> None:
    """``groups`` fits the canvas: no more groups than positions to score."""
    if groups is not None and groups > gen_length:
        raise ValueError(f"groups={groups} is more than the {gen_length} positions there are to score; "
                         f"use groups <= {gen_length} (None picks gen_length / {per}).")
