"""The step scrubber: a token grid you can play, scrub, hover and click."""
from __future__ import annotations

import html
import json
import os
import time

from copy import deepcopy

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go

from ..trace import Trace
from ..viz import export
from ..viz.animation import grid_animation
from ..viz.checks import check_layout
from ..viz.curves import step_curves
from ..viz.grid import (absolute_note, grid_arrays, grid_title, longest_cell, position_name, position_origin,
                        readable_ends)
from ..viz.lifeline import lifelines
from .player import Player
from .token_grid import TokenGridWidget

# label -> (ms between frames, steps per frame): past 50 steps/s frames skip steps, so a
# T = 4096 run plays in well under a minute
SPEEDS = {"1 step/s": (1000, 1), "2 steps/s": (500, 1), "5 steps/s": (200, 1), "10 steps/s": (100, 1),
          "25 steps/s": (40, 1), "50 steps/s": (20, 1), "100 steps/s": (20, 2), "250 steps/s": (20, 5),
          "1000 steps/s": (20, 20)}


def set_speed(play, label: str) -> None:
    play.interval, play.step = SPEEDS[label]


def default_speed(num_steps: int) -> str:
    """About ten seconds for a whole run."""
    return min(SPEEDS, key=lambda k: abs(num_steps / 10 - SPEEDS[k][1] * 1000 / SPEEDS[k][0]))


def sync_figure_state(fig: go.FigureWidget) -> None:
    """Write a FigureWidget's current data and layout into its synced traits.

    plotly sends later edits (restyle, relayout) as one-off messages and leaves the synced
    ``_widget_data``/``_widget_layout`` as first displayed, so a browser reload would redraw the
    old figure. Its front end ignores changes of these two traits on a live view, so this only
    keeps the kernel's copy current for views built later.
    """
    fig._widget_data = deepcopy(fig._data)
    fig._widget_layout = deepcopy(fig._layout_obj._props)


def figure_output(fig: go.Figure) -> W.Output:
    """A static plotly figure as an ``Output`` widget holding the figure's JSON (plotly's mime type).

    The figure lives in the widget's synced ``outputs``, so a reloaded page draws it again, and it
    carries no JavaScript module of its own (a ``FigureWidget`` ships plotly.js with each one).
    Use it for figures that never change after they are drawn.
    """
    out = W.Output()
    out.outputs = ({"output_type": "display_data", "metadata": {},
                    "data": {"application/vnd.plotly.v1+json": json.loads(fig.to_json()),
                             "text/plain": f"<plotly figure: {fig.layout.title.text or 'untitled'}>"}},)
    out.figure = fig  # for scripts and tests
    return out


def move_step_marker(out: W.Output, step: int) -> None:
    """Move the dotted step marker of a figure shown by :func:`figure_output` to ``step``.

    A fresh dict goes into ``outputs`` (an edited copy of the same dict would compare equal and
    never be sent), so the browser redraws the small figure with the marker in its new place.
    """
    if not out.outputs:
        return
    (shown,) = out.outputs
    fig = shown["data"]["application/vnd.plotly.v1+json"]
    shapes = fig.get("layout", {}).get("shapes") or []
    if not any(sh.get("name") == "step-marker" for sh in shapes):
        return
    shapes = [dict(sh, x0=step, x1=step) if sh.get("name") == "step-marker" else sh for sh in shapes]
    fig = dict(fig, layout=dict(fig["layout"], shapes=shapes))
    out.outputs = ({**shown, "data": {**shown["data"], "application/vnd.plotly.v1+json": fig}},)


_CELL = "style='padding:1px 10px 1px 0;text-align:left;vertical-align:top'"


def position_history_html(index, position: int, upto: int | None = None, origin: int | None = None) -> str:
    """The full record of one position as a small HTML table: step, change, token, p, top-k.

    ``origin`` is the position numbered 0 (default: the first answer token of a prompted run)."""
    origin = position_origin(index.trace) if origin is None else int(origin)
    name = f"<b>{position_name(position, origin)}</b>"
    note = absolute_note(position, origin)
    hist = index.history(position)
    a = index.pos_start[position]
    rows = []
    for i in range(len(hist)):
        e = a + i
        s = int(index.step[e])
        if upto is not None and s > upto:
            break
        when = f"{s} (final pass)" if s == index.final_step else str(s)
        tok = readable_ends(html.escape(index.text(int(index.tok[e]))))
        if index.is_unmask[e]:
            cands = ", ".join(f"{html.escape(t)} {p:.2f}" for t, p in index.candidates(e))
            rows.append(f"<tr><td {_CELL}>{when}</td><td {_CELL}>decoded</td><td {_CELL}><code>{tok}</code></td>"
                        f"<td {_CELL}>{index.prob[e]:.3f}</td><td {_CELL}>{cands}</td></tr>")
        else:
            rows.append(f"<tr><td {_CELL}>{when}</td><td {_CELL}><span style='color:#D55E00'>remasked</span></td>"
                        f"<td {_CELL}><code>{tok}</code></td><td {_CELL}></td><td {_CELL}></td></tr>")
    if index.fixed[position]:
        return (f"{name} · sample {index.sample}: prompt / pinned token "
                f"<code>{html.escape(index.text(int(index.initial[position])))}</code>{note}")
    if not rows:
        return f"{name} · sample {index.sample}: no change yet{note}"
    head = "".join(f"<th {_CELL}>{h}</th>" for h in ("step", "change", "token", "p", "top-k then"))
    return (f"{name} · sample {index.sample}" +
            (f" · up to {index.step_label(upto)}" if upto is not None else "") + note +
            "<table class='remdm-history' style='font-size:12px;border-collapse:separate;border-spacing:0'>"
            f"<tr>{head}</tr>" + "".join(rows) + "</table>")


class TraceViewer(W.VBox):
    """Scrub through one sample of a trace: play/pause, speed, a window over long sequences,
    hover a token for p / top-k / history, click it for its lifeline.

    ``viewer.step = k`` (or the slider) moves to step k; ``viewer.to_html(path)`` writes a
    self-contained page with the same grid, a slider and a play button that needs no kernel.
    Every panel (grid, details, lifeline, curves) follows the step and the selected sample, and
    each is drawn from its widget's synced state, so a browser reload shows the same view.
    ``rows`` labels the sample box's entries as ``(label, row)`` pairs (a live run of several
    prompts passes "prompt p · sample s"); by default they are the row numbers. ``trace`` may be
    the path of a trace file (read with ``Trace.read``).
    """

    PLACEHOLDER = "<i>hover a token for its p, top-k and history; click it to keep it here with its lifeline</i>"

    def __init__(self, trace, sample: int = 0, step: int | None = None, start: int | None = None,
                 length: int = 256, columns: int = 32, label: str | None = None, curves: bool = True,
                 lifeline: bool = True, cell_chars: int | None = None, rows: list[tuple[str, int]] | None = None):
        if isinstance(trace, (str, os.PathLike)):
            trace = Trace.read(trace)
        elif not isinstance(trace, Trace):
            raise TypeError(f"TraceViewer shows a Trace (what explorer.generate returns) or a trace file's path, "
                            f"got {type(trace).__name__}.")
        self.trace = trace
        self.sample = sample
        self.index = trace.index(sample)
        ix = self.index
        self.origin = position_origin(trace)
        check_layout(length, columns)      # a start past the end is held to the last window, as paging is
        self.columns = int(columns)
        self.length = int(min(length, ix.seq_len))
        self.start = self.origin if start is None else int(start)
        if ix.seq_len > self.length:  # a window the "from pos." slider can show, so the two agree
            self.start = min(max(0, self.start), ix.seq_len - self.length)
        self.label = label
        step = ix.last_step if step is None else ix.check_step(step)
        self.last_render_s = 0.0
        self.selected: int | None = None   # the clicked position: kept in the details until another click

        self.grid = TokenGridWidget(origin=self.origin)
        self.fixed_cell_chars = cell_chars is not None   # else sized to what is shown (fit_cells)
        self.grid.cell_chars = longest_cell(ix, self.start, self.length) if cell_chars is None else int(cell_chars)
        self.grid.on_click(self._on_click)
        self.grid.on_hover(self._on_hover)
        # no numeric readout: the final pass is step T + 1, which a bare number would show as
        # "129" on a run "of 128"; the label beside the slider says what the step is
        self.slider = W.IntSlider(value=step, min=ix.first_step, max=ix.last_step, description="step",
                                  continuous_update=True, readout=False, layout=W.Layout(width="50%"))
        self.step_label = W.HTML(layout=W.Layout(min_width="220px"))
        self.step_label.add_class("remdm-step-label")
        self.play = Player(value=step, min=ix.first_step, max=ix.last_step, interval=200)
        W.jslink((self.play, "value"), (self.slider, "value"))
        self.speed = W.Dropdown(options=list(SPEEDS), value=default_speed(ix.last_step - ix.first_step),
                                description="speed", layout=W.Layout(width="180px"))
        self.speed.observe(lambda ch: set_speed(self.play, ch["new"]), "value")
        set_speed(self.play, self.speed.value)
        self.prev_button = W.Button(description="◀", layout=W.Layout(width="36px"), tooltip="previous step")
        self.next_button = W.Button(description="▶", layout=W.Layout(width="36px"), tooltip="next step")
        self.prev_button.on_click(lambda _: self._nudge(-1))
        self.next_button.on_click(lambda _: self._nudge(+1))
        self.controls = W.HBox([self.play, self.prev_button, self.slider, self.next_button, self.step_label,
                                self.speed])
        self.sample_box = None
        if trace.num_samples > 1:
            if rows is None:
                rows = [(str(r), r) for r in range(trace.num_samples)]
            elif sorted(r for _, r in rows) != list(range(trace.num_samples)):
                raise ValueError(f"rows names {len(rows)} rows, not each of the trace's {trace.num_samples} once; "
                                 "give one (label, row) per row, or none for the row numbers.")
            wide = not rows[-1][0].isdigit()
            self.sample_box = W.Dropdown(options=list(rows), value=sample, description="sample",
                                         layout=W.Layout(width="260px" if wide else "150px"))
            self.sample_box.observe(lambda ch: self.show_sample(int(ch["new"])), "value")
            self.sample_box.add_class("remdm-sample-box")
            self.controls.children += (self.sample_box,)
        self.window = None
        if ix.seq_len > self.length:
            self.window = W.IntSlider(value=self.start, min=0, max=max(0, ix.seq_len - self.length),
                                      step=self.columns, description="from pos.", continuous_update=False,
                                      layout=W.Layout(width="40%"))
            self.window.observe(self._on_window, "value")
            self.window.add_class("remdm-window-slider")
        self.details = W.HTML(self.PLACEHOLDER)
        self.details.add_class("remdm-details")
        self.slider.observe(self._on_step, "value")
        self.curves = go.FigureWidget(step_curves(trace, sample=sample, step=step)) if curves else None
        self._markers = [i for i, sh in enumerate(self.curves.layout.shapes) if sh.name == "step-marker"] \
            if curves else []
        self.lifeline_box = W.VBox([]) if lifeline else None
        if self.lifeline_box is not None:
            self.lifeline_box.add_class("remdm-lifeline")
        children = [self.controls]
        if self.window is not None:
            children.append(self.window)
        # stable CSS hooks for users' styling and for the browser test
        self.grid_box = W.Box([self.grid])
        self.grid_box.add_class("remdm-token-grid")
        self.slider.add_class("remdm-step-slider")
        children += [self.grid_box, self.details]
        if self.lifeline_box is not None:
            children.append(self.lifeline_box)
        if self.curves is not None:
            self.curves.add_class("remdm-step-curves")
            children.append(self.curves)
        super().__init__(children)
        self.add_class("remdm-trace-viewer")
        self.render(step)

    # -- stepping -----------------------------------------------------------------------
    @property
    def step(self) -> int:
        return int(self.slider.value)

    @step.setter
    def step(self, k: int) -> None:
        self.slider.value = self.index.check_step(k)

    def _nudge(self, d: int) -> None:
        self.slider.value = int(np.clip(self.slider.value + d, self.slider.min, self.slider.max))

    def _on_step(self, change) -> None:
        self.render(int(change["new"]))

    def _on_window(self, change) -> None:
        self.show_window(int(change["new"]))

    def show_window(self, start: int) -> None:
        """Page the grid to positions ``[start, start + length)`` (moves the window slider too)."""
        self.start = int(start)
        if self.window is not None and self.window.value != self.start:
            self.window.value = self.start  # observed: comes back here once, then renders
            return
        self.fit_cells()
        self.render(self.step)

    def show_sample(self, sample: int) -> None:
        """Switch every panel to another sample of the trace (same step, same position)."""
        self.sample = int(sample)
        self.index = self.trace.index(self.sample)
        if self.sample_box is not None and self.sample_box.value != self.sample:
            self.sample_box.value = self.sample  # observed: comes back here once
            return
        self.fit_cells()
        self.render(self.step)  # the grid and details first: the user is looking there
        if self.curves is not None:
            fresh = step_curves(self.trace, sample=self.sample, step=self.step)
            with self.curves.batch_update():
                for old, new in zip(self.curves.data, fresh.data):
                    old.y = new.y
                self.curves.layout.title.text = fresh.layout.title.text
            sync_figure_state(self.curves)
        if self.lifeline_box is not None and self.selected is not None and self.lifeline_box.children:
            self.show_position(self.selected, lifeline=True)

    def fit_cells(self) -> None:
        """Size the cells for the widest token of the sample and window now shown (unless the
        caller fixed ``cell_chars``), so another sample's longer tokens are not cut."""
        if not self.fixed_cell_chars:
            self.grid.cell_chars = longest_cell(self.index, self.start, self.length)

    def render(self, step: int) -> float:
        """Redraw the grid, the details and the curves' step marker for ``step``; returns the
        seconds it took."""
        t0 = time.perf_counter()
        a = grid_arrays(self.index, step, self.start, self.length, self.columns, origin=self.origin)
        self.grid.show(a, grid_title(self.index, step, a["counts"], self.label), self.start, self.columns)
        self.step_label.value = self.index.step_label(step)
        if self.selected is not None:
            self.details.value = position_history_html(self.index, self.selected, upto=step, origin=self.origin)
        if self.curves is not None and self._markers:
            self.curves.plotly_relayout({f"shapes[{i}].{k}": step for i in self._markers for k in ("x0", "x1")})
            sync_figure_state(self.curves)
        if self.lifeline_box is not None and self.lifeline_box.children:
            move_step_marker(self.lifeline_box.children[0], step)
        self.last_render_s = time.perf_counter() - t0
        return self.last_render_s

    # -- hover / click --------------------------------------------------------------------
    def _on_click(self, position: int) -> None:
        self.show_position(position, lifeline=True)

    def _on_hover(self, position: int) -> None:
        # the tooltip shows the hovered cell; the details keep a clicked cell until another click
        if self.selected is None:
            self.details.value = position_history_html(self.index, position, upto=self.step, origin=self.origin)

    def show_position(self, position: int, lifeline: bool = True) -> None:
        """Select ``position`` (outlined in the grid), fill the details panel with its history up
        to this step and draw its lifeline, whose marker then follows the step."""
        self.selected = int(position)
        self.grid.selected = [self.selected]
        self.details.value = position_history_html(self.index, position, upto=self.step, origin=self.origin)
        if lifeline and self.lifeline_box is not None:
            self.lifeline_box.children = [figure_output(
                lifelines(self.trace, [position], self.sample, step=self.step))]

    # -- static fallback ------------------------------------------------------------------
    def figure(self, max_frames: int = 60) -> go.Figure:
        """The grid as a plotly animation, from the position the grid shows (a window paged past the
        end of the trace shows its last position, as the index clips it)."""
        start = min(self.start, self.index.seq_len - 1)
        return grid_animation([self.trace], [self.label], self.sample, start, self.length,
                              self.columns, max_frames=max_frames)

    def page_parts(self, max_frames: int = 60) -> list:
        """What :meth:`to_html` draws (for pages that hold a viewer among other things)."""
        return [self.figure(max_frames), lifelines(self.trace, sample=self.sample, max_positions=20),
                step_curves(self.trace, sample=self.sample)]

    def to_html(self, path, title: str = "ReMDM Explorer: trace", max_frames: int = 60):
        """A self-contained page: the grid with slider and play button, the lifelines of the most
        remasked positions and the per-step curves. No kernel, no network needed."""
        return export.write_html(path, self.page_parts(max_frames), title=title)
