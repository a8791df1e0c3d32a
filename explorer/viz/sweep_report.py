"""The sweep's standalone HTML report: summary sentences, the figures of :mod:`explorer.viz.sweep`
and the tables, in one page with plotly.js embedded once (no CDN).

    df = explorer.sweep(model, samplers, steps=[16, 32, 64], num_samples=256, metrics=["validity"])
    report_html(df, "runs/sweep/report.html", baseline="mdlm")

``explorer sweep`` writes it next to ``sweep.parquet``. It lives here, above :mod:`explorer.sweep`,
because it draws figures that read the sweep's statistics: the sweep itself draws nothing.
"""
from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

import pandas as pd

from ..metrics.registry import higher_is_better
from ..sweep import fmt_value, return_on_compute, summary
from .export import write_html
from .sweep import quality_vs_steps, return_on_compute_figure

__all__ = ["report_html"]


def report_html(df: pd.DataFrame, path: str | os.PathLike, baseline: str = "mdlm",
                title: str = "Sweep report", command: str | None = None) -> Path:
    """A standalone HTML page (plotly.js embedded once, no CDN): summary, figures, tables."""
    parts: list[Any] = []
    metrics = list(dict.fromkeys(df["metric"]))
    primary = [m for m in metrics if not m.startswith("violation:")]
    lines = []
    for m in primary:
        if baseline in set(df["sampler"]) and higher_is_better(m) is not None:
            lines.append(summary(df, baseline=baseline, metric=m))
    parts.append("<p>" + "<br>".join(html.escape(x) for x in lines) + "</p>")
    if command:
        parts.append(f'<p class="note">{html.escape(command)}</p>')
    for m in primary:
        parts.append(quality_vs_steps(df, m))
        if baseline in set(df["sampler"]) and higher_is_better(m) is not None:
            parts.append(return_on_compute_figure(return_on_compute(df, baseline=baseline, metric=m)))
    violations = [m for m in metrics if m.startswith("violation:")]
    if violations:
        parts.append(quality_vs_steps(df, violations))
    table = df.copy()
    table["value ± stderr"] = [fmt_value(v, s) for v, s in zip(table["value"], table["stderr"])]
    piv = table.pivot_table(index=["metric", "sampler"], columns="steps", values="value ± stderr",
                            aggfunc="first")
    parts.append("<h2>All cells (seed 0 shown when several)</h2>" + piv.to_html(border=0))
    cost = df.groupby(["sampler", "steps"])[["nfe", "model_calls", "seconds", "tokens_per_second"]].mean()
    parts.append("<h2>Cost</h2>" + cost.round(3).to_html(border=0))
    return write_html(path, parts, title=title)
