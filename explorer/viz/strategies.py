"""Figures of the strategy lab (:mod:`explorer.studies.strategies`): pure functions of its tables.

* :func:`strategy_quality` -- quality vs model calls per sequence, one line per strategy (orders:
  valid records, higher is better; stories: judge Gen PPL, lower is better, entropy in the hover),
  with an optional ceiling line (the perfect model ``orders-oracle`` sampled by MDLM);
* :func:`remask_precision` -- the share of remasks that hit a broken record, per strategy, with
  the share a blind remask would hit;
* :func:`ledger_view` -- the remask ledger summarised per strategy and budget, as a table.
"""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from .palette import LINE_COLORS

_QUALITY = {"valid_records": ("valid records (%)", 100.0, "higher is better"),
            "gen_ppl": ("judge Gen PPL", 1.0, "lower is better")}


# one colour per strategy in every figure: random remasking in warm colours, aimed rules in cool ones
STRATEGY_COLORS = {"mdlm": "#000000", "remdm-loop": "#D55E00", "remdm-conf": "#E69F00", "rescore": "#009E73",
                   "p2": "#0072B2", "wino": "#56B4E9", "fire": "#CC79A7", "saber": "#8C564B", "rcr": "#999999",
                   "llada21-swap": "#F0E442"}


def _color(i: int, name: str) -> str:
    return STRATEGY_COLORS.get(name.split(":")[0], LINE_COLORS[i % len(LINE_COLORS)])


def strategy_quality(table: pd.DataFrame, ceiling: pd.DataFrame | None = None, title: str | None = None,
                     subtitle: str | None = None) -> go.Figure:
    """Quality vs measured model calls per sequence, one line per strategy, ± one standard error.

    ``ceiling``: another lab table (e.g. ``orders-oracle`` with ``mdlm``) drawn dashed as the
    best any sampler can do with that model's knowledge.
    """
    if not len(table):
        raise ValueError("the strategy table is empty: run explorer.studies.strategies.compare first.")
    quality = str(table["quality"].iloc[0])
    label, scale, better = _QUALITY.get(quality, (quality, 1.0, ""))
    fig = go.Figure()
    for i, (name, g) in enumerate(table.sort_values("model_calls").groupby("strategy", sort=False)):
        hover = [f"{name}, budget {b}: T = {t}, {c:.0f} calls; {label} {v * scale:.2f} ± {se * scale:.2f}"
                 + (f"; entropy {e:.3f}" if pd.notna(e) else "")
                 for b, t, c, v, se, e in zip(g.budget, g.steps, g.model_calls, g.value, g.stderr,
                                              g.get("entropy", pd.Series([float("nan")] * len(g))))]
        fig.add_trace(go.Scatter(x=g.model_calls, y=g.value * scale, name=name, mode="lines+markers",
                                 error_y=dict(type="data", array=g.stderr * scale, visible=True),
                                 line=dict(color=_color(i, name), width=2), hovertext=hover, hoverinfo="text"))
    if ceiling is not None and len(ceiling):
        c = ceiling.sort_values("model_calls")
        fig.add_trace(go.Scatter(x=c.model_calls, y=c.value * scale, name="perfect model, MDLM",
                                 mode="lines", line=dict(color="#555555", dash="dash", width=1.5),
                                 hovertext=[f"perfect model (exact posterior) sampled by MDLM: {v * scale:.2f}"
                                            for v in c.value], hoverinfo="text"))
    head = title or f"{label} vs model calls"
    if subtitle:
        head += f"<br><sup>{subtitle}</sup>"
    fig.update_layout(title=head, xaxis_title="model calls per sequence (measured)",
                      yaxis_title=f"{label} ({better})" if better else label, template="plotly_white",
                      legend=dict(orientation="h", y=-0.25), height=430, margin=dict(t=80))
    return fig


def remask_precision(table: pd.DataFrame, blind: float | None = None, title: str | None = None) -> go.Figure:
    """Remask precision (hits / remasks) vs model calls, per strategy that remasked anything.

    ``blind``: the precision of remasking a uniformly chosen token, i.e. the share of tokens that
    sit in broken records -- what random remasking (ReMDM's sigma) should score.
    """
    t = table[table["remasks"].fillna(0) > 0].sort_values("model_calls")
    fig = go.Figure()
    for i, (name, g) in enumerate(t.groupby("strategy", sort=False)):
        fig.add_trace(go.Scatter(x=g.model_calls, y=g.precision, name=name, mode="lines+markers",
                                 line=dict(color=_color(i, name), width=2),
                                 hovertext=[f"{name}: {int(r)} remasks, precision {p:.3f}, recall {rc:.3f}"
                                            for r, p, rc in zip(g.remasks, g.precision, g.recall)],
                                 hoverinfo="text"))
    if blind is not None:
        fig.add_hline(y=blind, line=dict(color="#555555", dash="dot"),
                      annotation_text=f"a blind remask: {blind:.3f}", annotation_position="top left")
    fig.update_layout(title=title or "How often a remask hits a broken record",
                      xaxis_title="model calls per sequence (measured)",
                      yaxis_title="remask precision (hits / remasks; higher is better)",
                      yaxis_range=[0, 1.05], template="plotly_white", legend=dict(orientation="h", y=-0.25),
                      height=400)
    return fig


def ledger_view(table: pd.DataFrame) -> pd.DataFrame:
    """The ledger columns of a lab table, one row per strategy and budget, rounded for reading."""
    cols = ["strategy", "budget", "steps", "model_calls", "value", "remasks", "precision", "recall", "fixes",
            "harms", "fixes_per_100_calls", "harms_per_100_calls"]
    out = table[[c for c in cols if c in table]].copy()
    out = out.rename(columns={"value": "valid" if table["quality"].iloc[0] == "valid_records" else "quality"})
    return out.round(3).reset_index(drop=True)
