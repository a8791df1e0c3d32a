"""Figures: pure functions from a Trace (or a sweep DataFrame) to a plotly figure or HTML.

* :func:`token_grid` -- every visible position at one step, coloured by state;
* :func:`token_text` -- the same as flowing, coloured text (plain HTML);
* :func:`step_heatmap` -- positions x steps, by state or by p(current token);
* :func:`lifelines` -- when each position was decoded, remasked, re-decoded, and to what;
* :func:`grid_animation` -- grids of one or more traces with a step slider and play button
  that work in a saved page;
* :func:`step_curves` -- counts, probabilities and schedule per step;
* :func:`fix_story` -- one remask that repaired a broken rule (orders task; found by ``explorer.studies.find_fixes``);
* :func:`by_step_figure` -- a metric "if stopped after step k", several runs;
* :func:`strategy_quality`, :func:`remask_precision`, :func:`ledger_view` -- the strategy lab's
  quality and remask precision vs model calls, and its ledger;
* sweep figures (quality vs steps, return on compute) from ``explorer.viz.sweep``;
* :func:`to_html` / :func:`write_html` -- self-contained pages with plotly.js embedded.
"""
from __future__ import annotations

from .animation import changing_steps, grid_animation
from .curves import by_step_figure, step_counts, step_curves
from .fixes import fix_story
from .export import HTMLView, Report, page_html, to_html, write_html
from .grid import token_grid
from .heatmap import step_heatmap
from .lifeline import busiest_positions, lifelines
from .palette import STATE_COLORS, STATE_NAMES
from .repair import error_causes_figure, repair_rate_figure, repair_strip, revised_text
from .scaling import scaling_figure
from .strategies import ledger_view, remask_precision, strategy_quality
from .sweep import knee_takeaway, quality_vs_steps, return_on_compute_figure
from .text import token_text

__all__ = [
    "token_grid", "grid_animation", "changing_steps", "token_text", "step_heatmap", "lifelines",
    "busiest_positions", "step_curves", "step_counts", "by_step_figure",
    "fix_story", "to_html", "write_html", "page_html",
    "HTMLView", "Report", "STATE_COLORS", "STATE_NAMES", "repair_strip", "repair_rate_figure", "error_causes_figure",
    "revised_text", "scaling_figure", "strategy_quality", "remask_precision", "ledger_view", "quality_vs_steps", "return_on_compute_figure", "knee_takeaway",
]

