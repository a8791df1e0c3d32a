"""Token states and their colours.

The six states a position can be in at the end of a step, with an Okabe-Ito based palette
(Okabe & Ito, "Color Universal Design", 2008) chosen so the states stay apart for the common
forms of colour blindness (grey / white / sky blue / vermillion / yellow / orange). Orange is a
token remasked and written again within one step (ReMDM-LLaDA does this for most of its remasks):
it holds a token, but a remask happened, so it is drawn in the remask's hue, not as a plain write.
"""
from __future__ import annotations

from ..trace import FIXED, MASKED, REMASKED, REWRITTEN, STABLE, UNMASKED  # noqa: F401 -- the state codes the trace's index gives

STATE_NAMES = {
    MASKED: "masked",
    UNMASKED: "unmasked this step",
    REMASKED: "remasked this step",
    STABLE: "stable",
    FIXED: "prompt / pinned",
    REWRITTEN: "remasked and rewritten this step",
}

STATE_COLORS = {
    MASKED: "#BDBDBD",     # neutral grey
    UNMASKED: "#56B4E9",   # Okabe-Ito sky blue
    REMASKED: "#D55E00",   # Okabe-Ito vermillion
    STABLE: "#F4F4F4",     # near white: settled tokens recede
    FIXED: "#F0E442",      # Okabe-Ito yellow
    REWRITTEN: "#E69F00",  # Okabe-Ito orange: beside vermillion, the remask's hue
}

# the order legends list the states in: a remask's two forms side by side
STATE_ORDER = (MASKED, UNMASKED, REMASKED, REWRITTEN, STABLE, FIXED)

# Text drawn on each state's cells: dark on light fills, white on vermillion.
TEXT_COLORS = {MASKED: "#555555", UNMASKED: "#000000", REMASKED: "#FFFFFF",
               STABLE: "#000000", FIXED: "#000000", REWRITTEN: "#000000"}

EVENT_COLORS = {"unmask": "#0072B2", "remask": "#D55E00"}  # Okabe-Ito blue / vermillion

# Sequential scale for probabilities: cividis is designed to read the same under colour blindness.
PROB_COLORSCALE = "Cividis"

# Okabe-Ito qualitative cycle for lines (black first is skipped: it reads as an axis).
LINE_COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]


# the z range a heatmap of state codes needs with discrete_colorscale(): one band per code
STATE_ZRANGE = dict(zmin=-0.5, zmax=len(STATE_NAMES) - 0.5)


def discrete_colorscale(codes=tuple(sorted(STATE_NAMES))):
    """A plotly colorscale mapping the integer state codes 0..n-1 (with ``**STATE_ZRANGE``) to flat colours."""
    n = len(codes)
    scale = []
    for i, code in enumerate(codes):
        scale.append([i / n, STATE_COLORS[code]])
        scale.append([(i + 1) / n, STATE_COLORS[code]])
    return scale
