"""Per-position lifelines: when each position was decoded, remasked and decoded again, and to what."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from .cells import display_token
from .grid import cell_hover, position_origin
from .palette import EVENT_COLORS, STATE_COLORS, FIXED, MASKED


def busiest_positions(trace, sample: int = 0, limit: int = 20) -> list[int]:
    """Positions with the most remasks (then the most events), the interesting ones to look at."""
    index = trace.index(sample)
    n_events = index.pos_end - index.pos_start
    remasks = np.bincount(index.pos[~index.is_unmask], minlength=index.seq_len)
    order = np.lexsort((np.arange(index.seq_len), -n_events, -remasks))
    return sorted(int(p) for p in order[:limit])


def lifelines(trace, positions=None, sample: int = 0, step: int | None = None,
              max_positions: int = 40, row_height: int = 34) -> go.Figure:
    """One horizontal line per position across the steps.

    Grey while masked, blue while holding a token; a triangle marks each decode (labelled with the
    token, hover for p and top-k), a cross each remask. ``positions`` defaults to the positions
    that were remasked most. ``step`` draws a marker line there.
    """
    index = trace.index(sample)
    if positions is None:
        positions = busiest_positions(trace, sample, max_positions)
    elif np.isscalar(positions):
        positions = [int(positions)]
    positions = [int(p) for p in positions][:max_positions]
    for p in positions:
        if not 0 <= p < index.seq_len:
            raise IndexError(f"position {p} is outside 0..{index.seq_len - 1}.")
    end = index.last_step
    origin = position_origin(trace)  # prompted runs count from the first answer token
    seg = {"masked": ([], [], []), "token": ([], [], []), "fixed": ([], [], [])}
    marks = {"unmask": ([], [], [], []), "remask": ([], [], [], [])}
    for row, p in enumerate(positions):
        a, b = index.pos_start[p], index.pos_end[p]
        cur_step = 0
        init = int(index.initial[p])
        cur = "fixed" if index.fixed[p] else ("masked" if init == index.mask_id else "token")
        for i in range(a, b + 1):
            nxt = int(index.step[i]) if i < b else end
            xs, ys, _ = seg[cur]
            xs += [cur_step, max(nxt, cur_step + 0.001), None]
            ys += [row, row, None]
            if i == b:
                break
            kind = "unmask" if index.is_unmask[i] else "remask"
            mx, my, mt, mh = marks[kind]
            mx.append(int(index.step[i]))
            my.append(row)
            mt.append(display_token(index.text(int(index.tok[i])), 10) if kind == "unmask" else "")
            mh.append(cell_hover(index, p, i, 1 if kind == "unmask" else 2, origin))
            cur_step = int(index.step[i])
            cur = "token" if kind == "unmask" else "masked"
    fig = go.Figure()
    styles = {"masked": (STATE_COLORS[MASKED], "masked"), "token": ("#0072B2", "holding a token"),
              "fixed": (STATE_COLORS[FIXED], "prompt / pinned")}
    for name, (xs, ys, _) in seg.items():
        if xs:
            color, label = styles[name]
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=label, hoverinfo="skip",
                                     line=dict(color=color, width=6 if name != "masked" else 3)))
    for kind, (mx, my, mt, mh) in marks.items():
        if mx:
            fig.add_trace(go.Scatter(
                x=mx, y=my, mode="markers+text" if kind == "unmask" else "markers",
                text=mt, textposition="top center", textfont=dict(size=10), customdata=mh,
                hovertemplate="%{customdata}<extra></extra>", name="decoded" if kind == "unmask" else "remasked",
                marker=dict(symbol="triangle-up" if kind == "unmask" else "x", size=10,
                            color=EVENT_COLORS[kind], line=dict(width=1, color="#FFFFFF"))))
    fig.update_layout(
        title=f"lifelines of {len(positions)} position(s)", height=120 + row_height * max(1, len(positions)),
        margin=dict(l=70, r=20, t=70, b=45), plot_bgcolor="#FFFFFF",
        legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="left", x=0),
        xaxis_title="step", hoverlabel=dict(align="left"),
    )
    fig.update_xaxes(range=[-0.5, end + 0.5], showgrid=True, gridcolor="#EEEEEE")
    fig.update_yaxes(tickvals=list(range(len(positions))), ticktext=[f"pos {p - origin}" for p in positions],
                     showgrid=False, range=[len(positions) - 0.5, -0.8])
    if step is not None:
        fig.add_vline(x=step, line=dict(color="#000000", width=1, dash="dot"), name="step-marker")
    fig.layout.meta = {"positions": positions, "sample": sample}
    return fig
