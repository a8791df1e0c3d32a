"""Figures: pure functions from a Trace (or a sweep DataFrame) to a plotly figure or HTML.

* :func:`token_grid` -- every visible position at one step, coloured by state;
* :func:`token_text` -- the same as flowing, coloured text (plain HTML);
* :func:`step_heatmap` -- positions x steps, by state or by p(current token);
* :func:`lifelines` -- when each position was decoded, remasked, re-decoded, and to what;
* :func:`step_curves` -- counts, probabilities and schedule per step;
* sweep figures (quality vs steps, return on compute) from ``explorer.viz.sweep``;
* :func:`to_html` / :func:`write_html` -- self-contained pages with plotly.js embedded.
"""
from __future__ import annotations

from ._index import TraceIndex, index_for
from .curves import step_counts, step_curves
from .export import HTMLView, page_html, to_html, write_html
from .grid import token_grid
from .heatmap import step_heatmap
from .lifeline import busiest_positions, lifelines
from .palette import STATE_COLORS, STATE_NAMES
from .text import token_text

__all__ = [
    "TraceIndex", "index_for", "token_grid", "token_text", "step_heatmap", "lifelines",
    "busiest_positions", "step_curves", "step_counts", "to_html", "write_html", "page_html",
    "HTMLView", "STATE_COLORS", "STATE_NAMES",
]


def __getattr__(name):
    # The sweep figures live in explorer/viz/sweep.py (written alongside the metrics); import them
    # on first use so this package works before and without that module.
    if name.startswith("_"):
        raise AttributeError(name)
    try:
        from . import sweep as _sweep
    except ImportError as exc:
        raise AttributeError(f"explorer.viz has no attribute {name!r} ({exc})") from None
    if hasattr(_sweep, name):
        return getattr(_sweep, name)
    raise AttributeError(f"explorer.viz has no attribute {name!r}")


def __dir__():
    names = list(__all__)
    try:
        from . import sweep as _sweep
        names += [n for n in getattr(_sweep, "__all__", dir(_sweep)) if not n.startswith("_")]
    except ImportError:
        pass
    return sorted(set(names))
