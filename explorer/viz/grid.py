"""The token grid: every visible position at one step, coloured by its state."""
from __future__ import annotations

import html
import math
import weakref
from collections import OrderedDict

import numpy as np
import plotly.graph_objects as go

from ..trace import SampleIndex
from .cells import display_token, hover_text
from .checks import check_window
from .palette import (MASKED, REMASKED, REWRITTEN, STATE_COLORS, STATE_NAMES, STATE_ORDER, STATE_ZRANGE, UNMASKED,
                      discrete_colorscale)

GRID_UIREVISION = "token-grid"
# the drawn grids of each index, least recently used first: scrubbing back redraws nothing
GRID_CACHE_SIZE = 256
_GRIDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _legend_traces(codes=STATE_ORDER):
    """Heatmaps have no legend; one invisible marker per state gives a readable key."""
    return [
        go.Scatter(x=[None], y=[None], mode="markers", name=STATE_NAMES[c], showlegend=True,
                   marker=dict(symbol="square", size=14, color=STATE_COLORS[c],
                               line=dict(color="#888888", width=1)),
                   hoverinfo="skip")
        for c in codes
    ]


# end-of-text / end-of-turn tokens read as a break in the text, not as markup
END_TOKENS = frozenset({"<|endoftext|>", "<|eot_id|>", "<|im_end|>", "<|end_of_text|>", "</s>", "<eos>",
                        "<|eos|>", "<|end|>"})
END_MARK = "¶"


def cell_text(text, max_chars: int = 12) -> str:
    """A token as a cell shows it: an end-of-text token as a visible break mark, whitespace shown,
    HTML escaped once (see ``display_token``)."""
    if isinstance(text, str) and text.strip() in END_TOKENS:
        return END_MARK + "end"
    return display_token(text, max_chars)


def position_origin(trace) -> int:
    """The position numbered 0 in the views: the first answer token of a prompted canvas (LLaDA /
    Dream, ``meta["gen_start"]``), else 0. One numbering everywhere: grid rows, tooltips, details,
    lifelines and tables count from here; the absolute position is in the small print."""
    meta = getattr(trace, "meta", None) or {}
    return int(meta.get("gen_start") or 0)


def position_name(position: int, origin: int = 0) -> str:
    """How a position reads: "position 3", or "prompt position -5" before the answer."""
    rel = int(position) - int(origin)
    return f"position {rel}" if rel >= 0 else f"prompt position {rel}"


def absolute_note(position: int, origin: int = 0) -> str:
    return f"<br><small>absolute position {int(position)}</small>" if origin else ""


def readable_ends(html_text: str) -> str:
    """HTML text with each (escaped) end-of-text token shown as the break mark the cells use."""
    for t in END_TOKENS:
        html_text = html_text.replace(html.escape(t, quote=False), END_MARK + "end")
    return html_text


def cell_hover(index: SampleIndex, position: int, event: int, code: int, origin: int = 0) -> str:
    """Tooltip of one cell: the index's record of the position under this views' numbering."""
    full = hover_text(index, position, event, code)
    cut = full.find("<br>")
    body = readable_ends(full[cut:]) if cut >= 0 else ""
    return (f"<b>{position_name(position, origin)}</b> · {STATE_NAMES[int(code)]}{body}"
            + absolute_note(position, origin))


def longest_cell(index: SampleIndex, start: int = 0, length: int | None = None, max_chars: int = 12) -> int:
    """Characters of the widest cell any step of ``[start, start+length)`` shows (at most
    ``max_chars``): a grid sized by it never truncates within the run and keeps its width while
    scrubbing, and grids side by side sized by their common maximum line up row by row."""
    stop = index.seq_len if length is None else min(index.seq_len, start + int(length))
    sel = (index.pos >= start) & (index.pos < stop)
    ids = set(np.unique(index.tok[sel]).tolist()) | set(np.unique(index.initial[start:stop]).tolist())
    ids.discard(index.mask_id)
    widths = [len(html.unescape(cell_text(index.text(t), max_chars))) for t in ids]
    return max([1] + widths)


def grid_arrays(index: SampleIndex, step: int, start: int = 0, length: int = 256, columns: int = 32,
                max_chars: int = 12, origin: int = 0) -> dict:
    """z (state codes), text and hover strings for the grid of one step, shaped [rows, columns].

    This is the whole per-step cost of the scrubber: one cached index lookup over the visible
    positions plus string formatting for them.
    """
    key = ("grid", step, start, length, columns, max_chars, origin)
    cache = _GRIDS.setdefault(index, OrderedDict())
    hit = cache.get(key)
    if hit is not None:
        return hit
    fr = index.frame(step, start, length)
    w = len(fr.positions)
    rows = max(1, math.ceil(w / columns))
    size = rows * columns
    z = np.full(size, np.nan)
    z[:w] = fr.codes
    text = np.full(size, "", dtype=object)
    hover = np.full(size, "", dtype=object)
    mask_id = index.mask_id
    for i in range(w):
        tid = int(fr.shown[i])
        code = int(fr.codes[i])
        text[i] = "·" if (tid == mask_id) else cell_text(index.text(tid), max_chars)
        hover[i] = cell_hover(index, int(fr.positions[i]), int(fr.event[i]), code, origin)
    counts = {c: int((fr.codes == c).sum()) for c in (MASKED, UNMASKED, REMASKED, REWRITTEN)}
    out = {
        "z": z.reshape(rows, columns),
        "text": text.reshape(rows, columns),
        "hover": hover.reshape(rows, columns),
        "rows": rows,
        "row_labels": [str(int(fr.positions[0]) - origin + r * columns) for r in range(rows)],
        "counts": counts,
        "frame": fr,
    }
    cache[key] = out
    if len(cache) > GRID_CACHE_SIZE:
        cache.popitem(last=False)
    return out


def grid_title(index: SampleIndex, step: int, counts: dict, label: str | None = None) -> str:
    """The grid's heading. "masked" counts every masked cell shown, those remasked at this step
    included (as the steps table's ``n_masked`` and the live view count them); "unmasked now" and
    "remasked now" count events, as the steps table does, so a cell remasked and rewritten in this
    step counts in both, and the title says how many were."""
    what = index.step_label(step)
    head = f"{label} · " if label else ""
    masked = counts[MASKED] + counts[REMASKED]
    again = counts.get(REWRITTEN, 0)
    return (f"{head}{what} · masked {masked} · unmasked now {counts[UNMASKED] + again}"
            f" · remasked now {counts[REMASKED] + again}" + (f" ({again} rewritten in the same step)" if again else ""))


def token_grid(trace, step: int | None = None, sample: int = 0, start: int = 0, length: int = 256,
               columns: int = 32, label: str | None = None, max_chars: int = 8,
               cell_height: int = 26) -> go.Figure:
    """Positions ``[start, start+length)`` of one sample at the end of ``step``, coloured by state.

    States: masked, unmasked this step, remasked this step (the cell shows the token that was
    removed), remasked and rewritten this step (the cell shows the new token; its hover, the one
    removed), stable, and prompt/pinned. Hover a cell for p, the top-k at its decoding step and
    its history. ``step`` defaults to the last step; 0 is the state before the first step.
    Only the window is drawn, so long sequences stay fast; move ``start`` to page through.
    """
    index = trace.index(sample)
    step = index.last_step if step is None else index.check_step(step)
    check_window(index.seq_len, start, length, columns)
    a = grid_arrays(index, step, start, length, columns, max_chars, position_origin(trace))
    fig = go.Figure()
    fig.add_trace(go.Heatmap(
        z=a["z"], text=a["text"], customdata=a["hover"], texttemplate="%{text}",
        hovertemplate="%{customdata}<extra></extra>", colorscale=discrete_colorscale(),
        **STATE_ZRANGE, showscale=False, xgap=2, ygap=2, textfont=dict(size=11),
        name="tokens",
    ))
    for tr in _legend_traces():
        fig.add_trace(tr)
    rows = a["rows"]
    height = 110 + rows * cell_height
    fig.update_layout(
        title=dict(text=grid_title(index, step, a["counts"], label), font=dict(size=14),
                   yref="container", y=1 - 34 / height, yanchor="top"),
        height=height,
        margin=dict(l=50, r=10, t=70, b=10),
        plot_bgcolor="#FFFFFF",
        legend=dict(orientation="h", yref="container", y=1, yanchor="top", xanchor="left", x=0),
        uirevision=GRID_UIREVISION,
        hoverlabel=dict(align="left"),
    )
    fig.update_xaxes(showgrid=False, zeroline=False, showticklabels=False, range=[-0.5, columns - 0.5])
    fig.update_yaxes(showgrid=False, zeroline=False, autorange="reversed",
                     tickvals=list(range(rows)), ticktext=a["row_labels"], title=None)
    fig.layout.meta = {"step": step, "sample": sample, "start": int(start), "columns": columns}
    return fig
