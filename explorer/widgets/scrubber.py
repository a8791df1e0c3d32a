"""The step scrubber: a token grid you can play, scrub, hover and click."""
from __future__ import annotations

import html
import time

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go

from ..viz import export
from ..viz._index import index_for
from ..viz.animation import grid_animation
from ..viz.curves import step_curves
from ..viz.grid import grid_arrays, grid_title, token_grid
from ..viz.lifeline import lifelines

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


def position_history_html(index, position: int, upto: int | None = None) -> str:
    """The full record of one position as a small HTML table: step, change, token, p, top-k."""
    hist = index.history(position)
    a = index.pos_start[position]
    rows = []
    for i in range(len(hist)):
        e = a + i
        s = int(index.step[e])
        if upto is not None and s > upto:
            break
        tok = html.escape(index.text(int(index.tok[e])))
        if index.is_unmask[e]:
            cands = ", ".join(f"{html.escape(t)} {p:.2f}" for t, p in index.candidates(e))
            rows.append(f"<tr><td>{s}</td><td>decoded</td><td><code>{tok}</code></td>"
                        f"<td>{index.prob[e]:.3f}</td><td>{cands}</td></tr>")
        else:
            rows.append(f"<tr><td>{s}</td><td style='color:#D55E00'>remasked</td><td><code>{tok}</code></td>"
                        "<td></td><td></td></tr>")
    if index.fixed[position]:
        return (f"<b>position {position}</b>: prompt / pinned token "
                f"<code>{html.escape(index.text(int(index.initial[position])))}</code>")
    if not rows:
        return f"<b>position {position}</b>: no change yet"
    return (f"<b>position {position}</b>" + (f" up to step {upto}" if upto is not None else "") +
            "<table style='font-size:12px;border-collapse:collapse'><tr><th>step</th><th>change</th>"
            "<th>token</th><th>p</th><th>top-k then</th></tr>" + "".join(rows) + "</table>")


class TraceViewer(W.VBox):
    """Scrub through one sample of a trace: play/pause, speed, a window over long sequences,
    hover a token for p / top-k / history, click it for its lifeline.

    ``viewer.step = k`` (or the slider) moves to step k; ``viewer.to_html(path)`` writes a
    self-contained page with the same grid, a slider and a play button that needs no kernel.
    """

    def __init__(self, trace, sample: int = 0, step: int | None = None, start: int = 0,
                 length: int = 256, columns: int = 32, label: str | None = None, curves: bool = True,
                 lifeline: bool = True):
        self.trace = trace
        self.sample = sample
        self.index = index_for(trace, sample)
        ix = self.index
        self.columns = int(columns)
        self.length = int(min(length, ix.seq_len))
        self.start = int(start)
        self.label = label
        step = ix.last_step if step is None else ix.check_step(step)
        self.last_render_s = 0.0
        self.selected: int | None = None

        # a fixed width (about 54 px per column, enough for an 8-character token) keeps cells
        # readable; side by side, viewers then wrap under each other instead of squeezing
        self.width = min(1200, 70 + self.columns * 54)
        self.grid = go.FigureWidget(token_grid(trace, step, sample, self.start, self.length, self.columns,
                                               label=label).update_layout(width=self.width, autosize=False))
        self.slider = W.IntSlider(value=step, min=ix.first_step, max=ix.last_step, description="step",
                                  continuous_update=True, layout=W.Layout(width="60%"))
        self.play = W.Play(value=step, min=ix.first_step, max=ix.last_step, interval=200,
                           description="play", show_repeat=False)
        W.jslink((self.play, "value"), (self.slider, "value"))
        self.speed = W.Dropdown(options=list(SPEEDS), value=default_speed(ix.last_step - ix.first_step),
                                description="speed", layout=W.Layout(width="180px"))
        self.speed.observe(lambda ch: set_speed(self.play, ch["new"]), "value")
        set_speed(self.play, self.speed.value)
        self.prev_button = W.Button(description="◀", layout=W.Layout(width="36px"), tooltip="previous step")
        self.next_button = W.Button(description="▶", layout=W.Layout(width="36px"), tooltip="next step")
        self.prev_button.on_click(lambda _: self._nudge(-1))
        self.next_button.on_click(lambda _: self._nudge(+1))
        controls = [self.play, self.prev_button, self.slider, self.next_button, self.speed]
        self.sample_box = None
        if trace.num_samples > 1:
            self.sample_box = W.Dropdown(options=list(range(trace.num_samples)), value=sample,
                                         description="sample", layout=W.Layout(width="150px"))
            self.sample_box.observe(lambda ch: self.show_sample(int(ch["new"])), "value")
            controls.append(self.sample_box)
        self.window = None
        if ix.seq_len > self.length:
            self.window = W.IntSlider(value=self.start, min=0, max=max(0, ix.seq_len - self.length),
                                      step=self.columns, description="from pos.", continuous_update=False,
                                      layout=W.Layout(width="40%"))
            self.window.observe(self._on_window, "value")
        self.details = W.HTML("<i>hover a token for its p, top-k and history; click it for its lifeline</i>")
        self.slider.observe(self._on_step, "value")
        hm = self.grid.data[0]
        hm.on_hover(self._on_hover)
        hm.on_click(self._on_click)
        self.curves = go.FigureWidget(step_curves(trace, sample=sample, step=step)) if curves else None
        self._markers = [i for i, sh in enumerate(self.curves.layout.shapes) if sh.name == "step-marker"] \
            if curves else []
        self.lifeline_box = W.VBox([]) if lifeline else None
        children = [W.HBox(controls)]
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
            children.append(self.curves)
        super().__init__(children)
        self.add_class("remdm-trace-viewer")

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
        self.start = int(change["new"])
        self.render(self.step)

    def show_sample(self, sample: int) -> None:
        """Switch to another sample of the trace (same step)."""
        self.sample = int(sample)
        self.index = index_for(self.trace, self.sample)
        if self.curves is not None:
            fresh = step_curves(self.trace, sample=self.sample, step=self.step)
            with self.curves.batch_update():
                for old, new in zip(self.curves.data, fresh.data):
                    old.y = new.y
        if self.lifeline_box is not None:
            self.lifeline_box.children = []
        self.render(self.step)

    def render(self, step: int) -> float:
        """Redraw the grid (and the step marker) for ``step``; returns the seconds it took."""
        t0 = time.perf_counter()
        a = grid_arrays(self.index, step, self.start, self.length, self.columns)
        with self.grid.batch_update():
            hm = self.grid.data[0]
            hm.z = a["z"]
            hm.text = a["text"]
            hm.customdata = a["hover"]
            self.grid.layout.title.text = grid_title(self.index, step, a["counts"], self.label)
            self.grid.layout.yaxis.ticktext = a["row_labels"]
        if self.curves is not None and self._markers:
            self.curves.plotly_relayout({f"shapes[{i}].{k}": step for i in self._markers for k in ("x0", "x1")})
        self.last_render_s = time.perf_counter() - t0
        return self.last_render_s

    # -- hover / click --------------------------------------------------------------------
    def _position_of(self, points) -> int | None:
        if not points.xs:
            return None
        col, row = int(points.xs[0]), int(points.ys[0])
        p = self.start + row * self.columns + col
        return p if p < min(self.index.seq_len, self.start + self.length) else None

    def _on_hover(self, trace, points, state) -> None:
        p = self._position_of(points)
        if p is not None:
            self.show_position(p, lifeline=False)

    def _on_click(self, trace, points, state) -> None:
        p = self._position_of(points)
        if p is not None:
            self.show_position(p, lifeline=True)

    def show_position(self, position: int, lifeline: bool = True) -> None:
        """Fill the details panel with the position's history up to this step; draw its lifeline."""
        self.selected = int(position)
        self.details.value = position_history_html(self.index, position, upto=self.step)
        if lifeline and self.lifeline_box is not None:
            self.lifeline_box.children = [go.FigureWidget(
                lifelines(self.trace, [position], self.sample, step=self.step))]

    # -- static fallback ------------------------------------------------------------------
    def figure(self, max_frames: int = 60) -> go.Figure:
        return grid_animation([self.trace], [self.label], self.sample, self.start, self.length,
                              self.columns, max_frames=max_frames)

    def to_html(self, path, title: str = "ReMDM Explorer: trace", max_frames: int = 60):
        """A self-contained page: the grid with slider and play button, the lifelines of the most
        remasked positions and the per-step curves. No kernel, no network needed."""
        parts = [self.figure(max_frames), lifelines(self.trace, sample=self.sample, max_positions=20),
                 step_curves(self.trace, sample=self.sample)]
        return export.write_html(path, parts, title=title)
