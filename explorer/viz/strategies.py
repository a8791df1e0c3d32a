"""Figures of the strategy lab (:mod:`explorer.studies.strategies`): pure functions of its tables.

* :func:`strategy_quality` -- quality vs model calls per sequence, one line per strategy (orders:
  valid records, higher is better; stories: judge Gen PPL on a log axis, lower is better, with the
  entropy in a panel below), with an optional ceiling line (the perfect model ``orders-oracle``
  sampled by MDLM);
* :func:`remask_precision` -- the share of remasks that hit a broken record, per strategy, with
  the share a blind remask would hit;
* :func:`ledger_view` -- the remask ledger summarised per strategy and budget, as a table.
"""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

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
                     subtitle: str | None = None, entropy_reference: float | None = None,
                     entropy_reference_label: str = "held-out text") -> go.Figure:
    """Quality vs measured model calls per sequence, one line per strategy, ± one standard error.

    ``ceiling``: another lab table (e.g. ``orders-oracle`` with ``mdlm``) drawn dashed as what a
    plain sampler reaches with a flawless model (a sampler that revisits tokens can go above it).

    Judge Gen PPL is drawn on a log axis (one degenerate cell can sit 100 times above the rest),
    and when the table has the samples' unigram entropy a second panel below draws it against the
    same calls: a low Gen PPL bought with a low entropy is repetitive text, not better text.
    ``entropy_reference`` (e.g. the held-out text's entropy, named by ``entropy_reference_label``)
    is drawn there as a dotted line, and every cell more than 0.25 nats below it is drawn with a
    hollow marker in both panels.
    ``fig.layout.meta``: ``quality``, ``log_y``, ``entropy_panel`` and ``low_entropy`` (the
    "strategy @ budget" cells drawn hollow).
    """
    if not len(table):
        raise ValueError("the strategy table is empty: run explorer.studies.strategies.compare first.")
    quality = str(table["quality"].iloc[0])
    label, scale, better = _QUALITY.get(quality, (quality, 1.0, ""))
    log_y = quality == "gen_ppl"
    entropy = table["entropy"] if "entropy" in table else pd.Series(float("nan"), index=table.index)
    with_entropy = bool(entropy.notna().any())
    rows = 2 if with_entropy else 1
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        row_heights=[0.68, 0.32] if with_entropy else [1.0])
    low_entropy: list[str] = []
    for i, (name, g) in enumerate(table.sort_values("model_calls").groupby("strategy", sort=False)):
        e = entropy.loc[g.index]
        hover = [f"{name}, budget {b}: T = {t}, {c:.0f} calls; {label} {v * scale:.2f} ± {se * scale:.2f}"
                 + (f"; entropy {h:.3f}" if pd.notna(h) else "")
                 for b, t, c, v, se, h in zip(g.budget, g.steps, g.model_calls, g.value, g.stderr, e)]
        hollow = [entropy_reference is not None and pd.notna(h) and h < entropy_reference - 0.25 for h in e]
        low_entropy += [f"{name} @ {b}" for b, h in zip(g.budget, hollow) if h]
        color = _color(i, name)
        marker = dict(size=9, color=["white" if h else color for h in hollow], line=dict(color=color, width=2))
        fig.add_trace(go.Scatter(x=g.model_calls, y=g.value * scale, name=name, legendgroup=name,
                                 mode="lines+markers", marker=marker,
                                 error_y=dict(type="data", array=g.stderr * scale, visible=True),
                                 line=dict(color=color, width=2), hovertext=hover, hoverinfo="text"), row=1, col=1)
        if with_entropy:
            fig.add_trace(go.Scatter(x=g.model_calls, y=e, name=name, legendgroup=name, showlegend=False,
                                     mode="lines+markers", marker=marker, line=dict(color=color, width=1.5),
                                     hovertext=hover, hoverinfo="text"), row=2, col=1)
    if ceiling is not None and len(ceiling):
        c = ceiling.sort_values("model_calls")
        fig.add_trace(go.Scatter(x=c.model_calls, y=c.value * scale, name="perfect model, MDLM",
                                 mode="lines", line=dict(color="#555555", dash="dash", width=1.5),
                                 hovertext=[f"perfect model (exact posterior) sampled by MDLM: {v * scale:.2f}"
                                            for v in c.value], hoverinfo="text"), row=1, col=1)
    if with_entropy and entropy_reference is not None:
        fig.add_hline(y=entropy_reference, line=dict(color="#555555", dash="dot"), row=2, col=1,
                      annotation_text=f"{entropy_reference_label} {entropy_reference:.2f}", annotation_position="top left")
    head = title or f"{label} vs model calls"
    if subtitle:
        head += f"<br><sup>{subtitle}</sup>"
    fig.update_yaxes(title_text=f"{label} ({better}{', log scale' if log_y else ''})" if better else label,
                     type="log" if log_y else "linear", row=1, col=1)
    if log_y:   # plain numbers on the log axis, 1-2-5 per decade
        fig.update_yaxes(tickvals=[m * 10 ** k for k in range(-1, 5) for m in (1, 2, 5)], row=1, col=1)
    fig.update_xaxes(title_text="model calls per sequence (measured mean)", row=rows, col=1)
    if with_entropy:
        fig.update_yaxes(title_text="entropy (nats; lower = repetitive)", row=2, col=1)
    if low_entropy:
        fig.add_annotation(text=f"hollow marker: entropy more than 0.25 nats below {entropy_reference_label} "
                                "(repetitive text)",
                           xref="paper", yref="paper", x=0, y=1.0, xanchor="left", yanchor="bottom",
                           showarrow=False, font=dict(size=11, color="#555"))
    fig.update_layout(title=head, template="plotly_white", legend=dict(orientation="h", y=-0.18 if with_entropy
                                                                       else -0.25),
                      height=600 if with_entropy else 430, margin=dict(t=90),
                      meta={"quality": quality, "log_y": log_y, "entropy_panel": with_entropy,
                            "low_entropy": low_entropy})
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
                      xaxis_title="model calls per sequence (measured mean)",
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
