"""Grids with a built-in step slider and play button: the scrubber without a kernel.

The figure carries one frame per chosen step, so a saved page (``to_html``) can be scrubbed and
played in any browser, offline. Several traces side by side share one slider (comparison,
parent vs branch).
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .checks import check_labels, check_window
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


ALIGNMENTS = ("step", "progress")


def default_alignment(indexes) -> str:
    """"progress" for runs of different lengths from the same start (a 128-step baseline beside a
    256-step ReMDM-LLaDA run: at one raw step they differ mostly by how far along they are), else
    "step" (same length, or a branch beside its parent, which shares the parent's clock)."""
    same_start = len({ix.first_step for ix in indexes}) == 1
    return "progress" if same_start and len({ix.sampler_steps for ix in indexes}) > 1 else "step"


def align_steps(indexes, step: int, align: str = "step") -> list[int]:
    """The step each run shows when a shared slider stands at ``step``.

    ``"step"``: the same step number, held to each run's own steps. ``"progress"``: the same share
    of each run: the slider counts the steps of the longest run, and a run of ``first..last`` shows
    ``first + round(share * (last - first))``.
    """
    if align not in ALIGNMENTS:
        raise ValueError(f"align must be one of {ALIGNMENTS}, got {align!r}.")
    if align == "step":
        return [int(np.clip(step, ix.first_step, ix.last_step)) for ix in indexes]
    ref = max(indexes, key=lambda ix: ix.last_step - ix.first_step)
    share = float(np.clip((step - ref.first_step) / max(1, ref.last_step - ref.first_step), 0, 1))
    return [ix.first_step + int(np.floor(share * (ix.last_step - ix.first_step) + 0.5)) for ix in indexes]


def _slider_label(step: int, indexes) -> str:
    """A frame's label on the slider: the step, and "(final pass)" for a final argmax pass (§1.8)."""
    return f"{step} (final pass)" if any(ix.final_step == step for ix in indexes) else str(step)


def grid_animation(traces, labels=None, sample: int = 0, start: int = 0, length: int = 256,
                   columns: int = 32, steps=None, max_frames: int = 60, frame_ms: int = 300,
                   cell_height: int = 26, align: str = "step") -> go.Figure:
    """Token grids of one or more traces with a shared step slider and play/pause buttons.

    ``steps`` picks the frames (default: :func:`changing_steps`). A trace that has not reached a
    step yet (a branch) or is already done shows its nearest state. ``align="progress"`` shows each
    trace at the same share of its run instead (:func:`align_steps`; the slider counts the longest
    run's steps, each grid's title its own step).
    """
    if not isinstance(traces, (list, tuple)):
        traces = [traces]
    labels = check_labels(labels, traces) if labels is not None else (
        [None] if len(traces) == 1 else [f"run {i + 1}" for i in range(len(traces))])
    idx = [t.index(sample) for t in traces]
    check_window(max(ix.seq_len for ix in idx), start, length, columns)   # a shorter trace shows its last cells
    align_steps(idx, 0, align)                  # an unknown alignment is refused before any work
    counted, prefix = list(range(len(traces))), "step "   # the traces the slider's step numbers are of
    if align == "progress":                     # the longest run's steps
        counted = [max(counted, key=lambda i: idx[i].last_step - idx[i].first_step)]
        prefix = f"same share of each run · {labels[counted[0]] or 'longest run'}: step "
    if steps is None:
        steps = changing_steps([traces[i] for i in counted], sample, max_frames)
    steps = [int(s) for s in steps]
    n = len(traces)
    fig = make_subplots(rows=1, cols=n, horizontal_spacing=0.04,
                        subplot_titles=[lab or "" for lab in labels]) if n > 1 else go.Figure()

    def heatmaps(step):
        out, titles = [], []
        for i, (ix, k) in enumerate(zip(idx, align_steps(idx, step, align))):
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
                      currentvalue=dict(prefix=prefix),
                      steps=[dict(label=_slider_label(s, [idx[i] for i in counted]), method="animate",
                                  args=[[str(s)], anim])
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
