"""What one cell of a figure shows: its token text made safe, and its hover text.

The facts come from the trace's event index (:meth:`explorer.Trace.index`); this module only words
them, for the grid, the lifelines and the repair strips.
"""
from __future__ import annotations

import html
import math
import weakref

from .palette import STATE_NAMES

# hover text of each index, by (position, event): the same cell is hovered again and again
_HOVERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def display_token(text: str, max_chars: int = 8) -> str:
    """Token text made safe and visible in a small cell: whitespace shown, HTML escaped once.

    Only ``&``, ``<`` and ``>`` are escaped: the result goes into HTML element content (the grid
    widget, tooltips) and into plotly text, which decodes ``&amp; &lt; &gt;`` but shows
    ``&quot;`` literally -- a quote must stay a quote.
    """
    if text is None or (isinstance(text, float) and math.isnan(text)):
        text = "?"
    text = str(text)
    shown = text.strip()
    if not shown:
        shown = "⏎" if "\n" in text else "␣"
    shown = shown.replace("\n", "⏎")
    if len(shown) > max_chars:
        shown = shown[: max_chars - 1] + "…"
    return html.escape(shown, quote=False)


def hover_text(index, position: int, event: int, code: int, max_history: int = 8) -> str:
    """Hover text for one cell of ``index`` (a :class:`~explorer.trace.SampleIndex`): state, token,
    p, the top-k at its decoding step and its history up to ``event`` (-1: no change yet)."""
    position, event = int(position), int(event)
    cache = _HOVERS.setdefault(index, {})
    body = cache.get((position, event))
    if body is None:
        body = cache[(position, event)] = _hover_body(index, position, event, max_history)
    return f"<b>position {position}</b> · {STATE_NAMES[int(code)]}" + body


def _hover_body(index, position: int, event: int, max_history: int) -> str:
    esc = lambda t: display_token(t, 24)  # noqa: E731
    if event < 0:
        tid = int(index.initial[position])
        if index.fixed[position]:
            return f"<br>token {esc(index.text(tid))} (fixed)"
        if tid == index.mask_id:
            return "<br>not decoded yet"
        return f"<br>token {esc(index.text(tid))} (from the start)"
    lines = []
    s = int(index.step[event])
    tok = esc(index.text(int(index.tok[event])))
    if index.is_unmask[event]:
        lines.append(f"token {tok}  p={index.prob[event]:.3f} (decoded at step {s})")
        if event > index.pos_start[position] and not index.is_unmask[event - 1] and index.step[event - 1] == s:
            lines.append(f"remasked at step {s} just before (rewritten in the same step); "
                         f"it held {esc(index.text(int(index.tok[event - 1])))}")
        cands = index.candidates(event)
        if cands:
            lines.append("top-k then: " + ", ".join(f"{esc(t)} {q:.2f}" for t, q in cands))
    else:
        lines.append(f"remasked at step {s}; it held {tok}")
    a = index.pos_start[position]
    first = max(a, event - max_history + 1)
    hist = [f"{'+' if index.is_unmask[i] else '−'}{esc(index.text(int(index.tok[i])))}@{int(index.step[i])}"
            for i in range(first, event + 1)]
    lines.append("history: " + ("… " if first > a else "") + " ".join(hist))
    return "<br>" + "<br>".join(lines)
