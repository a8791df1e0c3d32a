"""Grids with a built-in step slider and play button: the scrubber without a kernel.

The figure carries one frame per chosen step, so a saved page (``to_html``) can be scrubbed and
played in any browser, offline. Several traces side by side share one slider (comparison,
parent vs branch).
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .grid import _legend_traces, grid_arrays, grid_title, position_origin
from .palette import STATE_ZRANGE, discrete_colorscale


def changing_steps(traces, sample: int = 0, max_frames: int = 60) -> list[int]:
    """Steps worth a frame: the first state, every step where some trace changed (evenly
    thinned to ``max_frames``), and the last state."""
    idx = [t.index(sample) for t in traces]
    first = min(i.first_step for i in idx)
    last = max(i.last_step for i in idx)
    changed = np.unique(np.concatenate([i.step for i in idx] + [np.array([first, last])]))
    if len(changed) > max_frames:
        keep = np.linspace(0, len(changed) - 1, max_frames).round().astype(int)
        changed = changed[np.unique(keep)]
    return [int(s) for s in changed]


def _slider_label(step: int, indexes) -> str:
    """A frame's label on the slider: the step, and "(final pass)" for a final argmax pass (§1.8)."""
    return f"{step} (final pass)" if any(ix.final_step == step for ix in indexes) else str(step)


def grid_animation(traces, labels=None, sample: int = 0, start: int = 0, length: int = 256,
                   columns: int = 32, steps=None, max_frames: int = 60, frame_ms: int = 300,
                   cell_height: int = 26) -> go.Figure:
    """Token grids of one or more traces with a shared step slider and play/pause buttons.

    ``steps`` picks the frames (default: :func:`changing_steps`). A trace that has not reached a
    step yet (a branch) or is already done shows its nearest state.
    """
    if not isinstance(traces, (list, tuple)):
        traces = [traces]
    labels = list(labels) if labels is not None else (
        [None] if len(traces) == 1 else [f"run {i + 1}" for i in range(len(traces))])
    idx = [t.index(sample) for t in traces]
    steps = changing_steps(traces, sample, max_frames) if steps is None else [int(s) for s in steps]
    n = len(traces)
    fig = make_subplots(rows=1, cols=n, horizontal_spacing=0.04,
                        subplot_titles=[lab or "" for lab in labels]) if n > 1 else go.Figure()

    def heatmaps(step):
        out, titles = [], []
        for i, ix in enumerate(idx):
            k = min(max(step, ix.first_step), ix.last_step)
            a = grid_arrays(ix, k, start, length, columns, 8, position_origin(ix.trace))
            out.append(go.Heatmap(
                z=a["z"], text=a["text"], customdata=a["hover"], texttemplate="%{text}",
                hovertemplate="%{customdata}<extra></extra>", colorscale=discrete_colorscale(),
                **STATE_ZRANGE, showscale=False, xgap=2, ygap=2, textfont=dict(size=11),
                xaxis=f"x{i + 1 if i else ''}", yaxis=f"y{i + 1 if i else ''}", name=labels[i] or "tokens"))
            titles.append(grid_title(ix, k, a["counts"], labels[i]))
        return out, titles, a["rows"], a["row_labels"]

    first_maps, titles, rows, row_labels = heatmaps(steps[0])
    for hm in first_maps:
        fig.add_trace(hm)
    for tr in _legend_traces():
        fig.add_trace(tr)
    frames = []
    for s in steps:
        maps, ttl, _, _ = heatmaps(s)
        frames.append(go.Frame(name=str(s), data=maps, traces=list(range(n)),
                               layout=dict(title=dict(text=" | ".join(ttl)))))
    fig.frames = frames
    anim = dict(frame=dict(duration=frame_ms, redraw=True), transition=dict(duration=0), mode="immediate")
    height = 200 + rows * cell_height + (20 if n > 1 else 0)
    fig.update_layout(
        # legend on the first line, the step's title on the second, subplot labels below
        title=dict(text=" | ".join(titles), font=dict(size=13), yref="container", y=1 - 34 / height,
                   yanchor="top"),
        height=height, margin=dict(l=50, r=10, t=90 if n > 1 else 70, b=10), plot_bgcolor="#FFFFFF",
        legend=dict(orientation="h", yref="container", y=1, yanchor="top", xanchor="left", x=0),
        hoverlabel=dict(align="left"),
        updatemenus=[dict(type="buttons", direction="left", x=0, y=0, xanchor="left", yanchor="top",
                          pad=dict(t=8), showactive=False, buttons=[
                              dict(label="▶ play", method="animate", args=[None, {**anim, "fromcurrent": True}]),
                              dict(label="❚❚ pause", method="animate",
                                   args=[[None], dict(frame=dict(duration=0, redraw=False), mode="immediate")]),
                          ])],
        sliders=[dict(active=0, x=0.12, len=0.88, y=0, yanchor="top", pad=dict(t=8),
                      currentvalue=dict(prefix="step "),
                      steps=[dict(label=_slider_label(s, idx), method="animate", args=[[str(s)], anim])
                             for s in steps])],
    )
    for i in range(n):
        suffix = str(i + 1) if i else ""
        fig.layout[f"xaxis{suffix}"].update(showgrid=False, zeroline=False, showticklabels=False,
                                            range=[-0.5, columns - 0.5])
        fig.layout[f"yaxis{suffix}"].update(showgrid=False, zeroline=False, autorange="reversed",
                                            tickvals=list(range(rows)), ticktext=row_labels)
    fig.layout.meta = {"steps": steps}
    return fig
