"""Positions x steps: the whole run of one sample in one picture."""
from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go

from .grid import _legend_traces
from .palette import PROB_COLORSCALE, STATE_NAMES, STATE_ZRANGE, discrete_colorscale


def _window(bounds, total: int, limit: int, lo: int = 0):
    """(start, stop) clipped to [lo, total), and the stride that keeps at most ``limit`` rows."""
    a, b = (lo, total) if bounds is None else (max(lo, int(bounds[0])), min(total, int(bounds[1])))
    if b <= a:
        raise ValueError(f"empty window {bounds!r}: valid range is 0..{total}.")
    stride = max(1, math.ceil((b - a) / limit))
    return np.arange(a, b, stride, dtype=np.int64), stride


def step_heatmap(trace, sample: int = 0, value: str = "state", positions=None, steps=None,
                 max_positions: int = 512, max_steps: int = 1000, step: int | None = None) -> go.Figure:
    """Heatmap of positions (rows) x steps (columns) for one sample.

    ``value="state"`` colours each cell by state (masked / unmasked this step / remasked this step
    / remasked and rewritten this step / stable / fixed); ``value="prob"`` by p(x0) of the token
    the position holds (blank while masked). ``positions`` and ``steps`` are (start, stop) windows;
    windows larger than ``max_positions`` x ``max_steps`` are drawn every n-th row/column (the state
    at the end of that step), so an L=1024, T=4096 run stays responsive. ``step`` draws a marker line there.
    """
    index = trace.index(sample)
    pos, pstride = _window(positions, index.seq_len, max_positions)
    stp, sstride = _window(steps, index.last_step + 1, max_steps, index.first_step)
    mat = index.matrix(pos, stp, "prob" if value == "prob" else "state")
    fig = go.Figure()
    if value == "prob":
        fig.add_trace(go.Heatmap(
            z=mat, x=stp, y=pos, colorscale=PROB_COLORSCALE, zmin=0, zmax=1,
            colorbar=dict(title="p(token)"), hoverongaps=False,
            hovertemplate="position %{y}<br>step %{x}<br>p(current token) %{z:.3f}<extra></extra>",
        ))
    elif value == "state":
        fig.add_trace(go.Heatmap(
            z=mat, x=stp, y=pos, colorscale=discrete_colorscale(), **STATE_ZRANGE,
            showscale=False,
            hovertemplate=("position %{y}<br>step %{x}<br>state %{z} ("
                           + ", ".join(f"{c} {name}" for c, name in sorted(STATE_NAMES.items())) + ")<extra></extra>"),
        ))
        for tr in _legend_traces():
            fig.add_trace(tr)
    else:
        raise ValueError(f"value must be 'state' or 'prob', got {value!r}.")
    note = []
    if sstride > 1:
        note.append(f"every {sstride}th step")
    if pstride > 1:
        note.append(f"every {pstride}th position")
    what = "state" if value == "state" else "p(current token)"
    title = f"{what} of each position over the steps" + (f" ({', '.join(note)})" if note else "")
    fig.update_layout(
        title=title, height=min(900, 140 + 4 * len(pos)) if len(pos) > 30 else 260,
        margin=dict(l=60, r=20, t=70, b=50), plot_bgcolor="#FFFFFF",
        legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="left", x=0),
        xaxis_title="step", yaxis_title="position",
    )
    fig.update_yaxes(autorange="reversed")
    if step is not None:
        fig.add_vline(x=step, line=dict(color="#000000", width=1, dash="dot"), name="step-marker")
    return fig
