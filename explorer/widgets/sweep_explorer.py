"""Sweep explorer: pick a metric and a view of a sweep's tidy results."""
from __future__ import annotations

import html

import ipywidgets as W
import pandas as pd
import plotly.graph_objects as go

from ..viz import export
from ..viz.checks import check_choice
from .scrubber import figure_output


def _figures():
    from ..viz.sweep import quality_vs_steps, return_on_compute_figure
    return quality_vs_steps, return_on_compute_figure


class SweepExplorer(W.VBox):
    """Metric and view selectors over ``explorer.sweep(...)`` results (columns sampler, steps,
    seed, metric, value, model_calls, seconds, tokens_per_second, ...).

    Views: quality vs steps; return on compute (quality vs model calls and seconds, knee starred,
    against ``baseline``); the table of per-setting means.
    """

    VIEWS = ("quality vs steps", "return on compute", "table")

    def __init__(self, df: pd.DataFrame, baseline: str | None = None, metric: str | None = None):
        need = {"sampler", "steps", "seed", "metric", "value", "model_calls", "seconds"}
        missing = need - set(df.columns)
        if missing:
            raise ValueError(f"this is not a sweep result: it lacks columns {sorted(missing)} "
                             "(make one with explorer.sweep).")
        self.df = df
        samplers = list(dict.fromkeys(df["sampler"]))
        metrics = list(dict.fromkeys(df["metric"]))
        for name, value, choices in (("baseline", baseline, samplers), ("metric", metric, metrics)):
            if value is not None:
                check_choice(name, value, choices)
        self.baseline = baseline if baseline is not None else ("mdlm" if "mdlm" in samplers else samplers[0])
        self.metric_box = W.Dropdown(options=metrics, value=metric or metrics[0], description="metric")
        self.view_box = W.ToggleButtons(options=list(self.VIEWS), value=self.VIEWS[0])
        self.sampler_box = W.SelectMultiple(options=samplers, value=tuple(samplers), description="samplers",
                                            rows=min(6, len(samplers)))
        self.out = W.VBox([])
        self.message = W.HTML("")
        for box in (self.metric_box, self.view_box, self.sampler_box):
            box.observe(lambda _: self.refresh(), "value")
        super().__init__([W.HBox([self.metric_box, self.sampler_box]), self.view_box, self.message, self.out])
        self.refresh()

    def _subset(self) -> pd.DataFrame:
        return self.df[self.df["sampler"].isin(self.sampler_box.value)]

    def figure(self, view: str | None = None, metric: str | None = None):
        """The current view as a static figure (or an HTML table for ``"table"``); ValueError
        saying what to select when it cannot be drawn."""
        view = view or self.view_box.value
        metric = metric or self.metric_box.value
        quality_vs_steps, roc_figure = _figures()
        d = self._subset()
        if d.empty:
            raise ValueError("no sampler selected: select one or more in the samplers box.")
        if view == "quality vs steps":
            return quality_vs_steps(d, metric)
        if view == "return on compute":
            from ..sweep import return_on_compute
            base = self.baseline if self.baseline in set(d["sampler"]) else None
            if base is None:
                raise ValueError(f"select the baseline sampler {self.baseline!r} to see the return on compute.")
            return roc_figure(return_on_compute(d, baseline=base, metric=metric))
        table = (d[d["metric"] == metric].groupby(["sampler", "steps"], sort=False)
                 [["value", "model_calls", "seconds"]].mean().reset_index())
        return export.HTMLView(table.to_html(index=False, float_format=lambda x: f"{x:.4g}"))

    def refresh(self) -> None:
        try:
            fig = self.figure()
        except Exception as exc:  # e.g. the baseline deselected: say so instead of failing silently
            self.message.value = f"<span style='color:#D55E00'>{html.escape(str(exc))}</span>"
            self.out.children = []   # the last view drew other settings: not left under the message
            return
        self.message.value = ""
        # static figures: kept in the widget state (a reload redraws them), no FigureWidget needed
        self.out.children = [figure_output(fig) if isinstance(fig, go.Figure) else W.HTML(str(fig))]

    def to_html(self, path, title: str = "ReMDM Explorer: sweep"):
        """Self-contained page: quality vs steps for every metric, return on compute for the
        selected metric, and the table."""
        quality_vs_steps, _ = _figures()
        metrics = list(dict.fromkeys(self.df["metric"]))
        parts = [quality_vs_steps(self.df, metrics)]
        for view in ("return on compute", "table"):
            try:
                parts.append(self.figure(view))
            except ValueError as exc:
                parts.append(f"<p>{view} unavailable: {html.escape(str(exc))}</p>")
        return export.write_html(path, parts, title=title)
