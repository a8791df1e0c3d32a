"""The one place the figures and widgets check which sample, which window of positions, which
labels and which of their choices to draw: a zero or out-of-range layout argument would otherwise surface as a
ZeroDivisionError, an IndexError from numpy, or a figure of the wrong (or no) positions.
"""
from __future__ import annotations

import numbers


def check_sample(trace, sample: int) -> int:
    """``sample`` as an int if it is a row of ``trace``; the IndexError ``trace.index`` raises otherwise."""
    if not isinstance(sample, numbers.Integral) or not 0 <= sample < trace.num_samples:
        raise IndexError(f"sample {sample!r} is out of range: this trace has {trace.num_samples} sample(s); "
                         f"give sample=0..{trace.num_samples - 1}.")
    return int(sample)


def check_layout(length: int | None, columns: int | None = None) -> None:
    """Refuse a grid that would show no position, or fewer than one cell a row (None: not given)."""
    for name, value, what, example in (("length", length, "positions shown", "length=256"),
                                       ("columns", columns, "cells a row", "columns=32")):
        if value is not None and (not isinstance(value, numbers.Integral) or value < 1):
            raise ValueError(f"{name} ({what}) must be at least 1, got {value!r}; give e.g. {example}.")


def check_window(seq_len: int, start: int, length: int | None, columns: int | None = None) -> None:
    """:func:`check_layout`, and a window ``[start, start+length)`` that starts inside the sequence
    (``length`` may run past the end: it is cut there)."""
    check_layout(length, columns)
    if not isinstance(start, numbers.Integral) or not 0 <= start < seq_len:
        raise ValueError(f"start={start!r} is outside this trace's positions 0..{seq_len - 1}; give a start in "
                         "that range (the window shows positions [start, start+length)).")


def check_choice(name: str, value, choices) -> None:
    """Refuse an option that is not one of ``choices`` (a widget's dropdown would raise a bare TraitError)."""
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not one of the choices: {', '.join(map(repr, choices))}; pass one "
                         f"of them (or leave {name} out for the default).")


def check_labels(labels, traces) -> list:
    """``labels`` as a list, one per trace."""
    labels = list(labels)
    if len(labels) != len(traces):
        raise ValueError(f"got {len(labels)} labels for {len(traces)} trace(s); give one label per trace "
                         "(or none).")
    return labels
