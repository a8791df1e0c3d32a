"""The token grid as a small anywidget whose front end draws from synced state alone.

Why not a plotly ``FigureWidget``: its synced traits (``_widget_data``, ``_widget_layout``) are
written only when the figure is built or displayed; later edits travel as one-off restyle and
relayout messages. After a browser reload (kernel still running) the front end asks the kernel for
the model state and gets the figure as first built -- a stale grid, whose clicks then map to
cells that are no longer shown. Each FigureWidget also ships plotly.js (about 5 MB) as its ES
module, and anywidget gives a model's ``initialize`` 2 s before it reports "[anywidget] Failed to
initialize model", which several grids on a busy machine exceed after a reload.

Here every piece of what is drawn (title, cell texts, state codes, hover texts, the selection)
is a synced traitlet, so any view -- the first one, a second one in another output, or one built
after a reload -- is the same function of the same state. ``render`` keeps nothing between
calls; the module is a few kilobytes. Clicks and hovers go to the kernel as messages carrying
the absolute position of the cell that was drawn.
"""
from __future__ import annotations

import anywidget
import traitlets as T
from ipywidgets import CallbackDispatcher

from ..viz.palette import STATE_COLORS, STATE_NAMES, STATE_ORDER, TEXT_COLORS

_ESM = r"""
function positionName(p, origin) {
  // prompted runs count from the first answer token; the absolute position is in the small print
  return p - origin;
}

function placeTip(tip, cell) {
  // drawn in <body> with position: fixed, so no scroll box or output area clips it; it goes
  // below the cell when there is room, else above, and is held inside the viewport
  const r = cell.getBoundingClientRect();
  const vw = document.documentElement.clientWidth || window.innerWidth;
  const vh = document.documentElement.clientHeight || window.innerHeight;
  tip.style.left = "0px"; tip.style.top = "0px"; tip.style.display = "block";
  const w = tip.offsetWidth, h = tip.offsetHeight;
  let top = r.bottom + 4;
  if (top + h > vh - 2) top = r.top - h - 4;
  top = Math.max(2, Math.min(top, vh - h - 2));
  let left = Math.max(2, Math.min(r.left, vw - w - 2));
  tip.style.left = `${left}px`; tip.style.top = `${top}px`;
}

function draw(model, el, tip) {
  const columns = Math.max(1, model.get("columns"));
  const start = model.get("start");
  const origin = model.get("origin");
  const texts = model.get("texts");
  const codes = model.get("codes");
  const hovers = model.get("hovers");
  const legend = model.get("legend");
  const chars = model.get("cell_chars");
  const selected = new Set(model.get("selected"));
  const differs = new Set(model.get("differs"));
  const root = document.createElement("div");
  root.className = "remdm-grid";
  const title = document.createElement("div");
  title.className = "remdm-grid-title";
  title.textContent = model.get("title");
  title.title = model.get("title");
  root.appendChild(title);
  const key = document.createElement("div");
  key.className = "remdm-grid-legend";
  const order = model.get("legend_order");
  (order.length ? order : legend.map((_, c) => c)).forEach((c) => {
    const [name, bg, fg] = legend[c] || ["?", "#FFFFFF", "#000000"];
    const s = document.createElement("span");
    s.style.background = bg; s.style.color = fg; s.textContent = name;
    key.appendChild(s);
  });
  if (differs.size) {
    const s = document.createElement("span");
    s.className = "remdm-differs-key"; s.textContent = "differs between the runs";
    key.appendChild(s);
  }
  root.appendChild(key);
  const grid = document.createElement("div");
  grid.className = "remdm-grid-cells";
  grid.style.setProperty("--remdm-columns", columns);
  // as wide as the longest token where the width allows; narrower (truncated) where it does not
  if (chars > 0) grid.style.setProperty("--remdm-cell", `minmax(30px, calc(${chars}ch + 8px))`);
  for (let i = 0; i < texts.length; i++) {
    if (i % columns === 0) {
      const lab = document.createElement("div");
      lab.className = "remdm-row-label";
      lab.textContent = String(positionName(start + i, origin));
      grid.appendChild(lab);
    }
    const [name, bg, fg] = legend[codes[i]] || ["?", "#FFFFFF", "#000000"];
    const cell = document.createElement("div");
    cell.className = "remdm-cell";
    cell.dataset.pos = String(start + i);
    cell.dataset.state = name;
    cell.style.background = bg; cell.style.color = fg;
    cell.innerHTML = texts[i];  // HTML-escaped once in Python (display_token)
    if (selected.has(start + i)) cell.classList.add("remdm-selected");
    if (differs.has(start + i)) cell.classList.add("remdm-differs");
    grid.appendChild(cell);
  }
  root.appendChild(grid);
  let last = -1;
  grid.addEventListener("mouseover", (e) => {
    const cell = e.target.closest(".remdm-cell");
    if (!cell) return;
    const i = Number(cell.dataset.pos) - start;
    tip.innerHTML = hovers[i] || "";
    placeTip(tip, cell);
    if (Number(cell.dataset.pos) !== last) {
      last = Number(cell.dataset.pos);
      model.send({ event: "hover", position: last });
    }
  });
  grid.addEventListener("mouseleave", () => { tip.style.display = "none"; last = -1; });
  grid.addEventListener("click", (e) => {
    const cell = e.target.closest(".remdm-cell");
    if (cell) model.send({ event: "click", position: Number(cell.dataset.pos) });
  });
  el.replaceChildren(root);
}

export default {
  render({ model, el }) {
    el.classList.add("remdm-grid-view");
    const tip = document.createElement("div");
    tip.className = "remdm-grid-tip";
    document.body.appendChild(tip);
    const redraw = () => { tip.style.display = "none"; draw(model, el, tip); };
    redraw();
    // one "change" event per state message, however many traits it carries
    model.on("change", redraw);
    return () => { model.off("change", redraw); tip.remove(); };
  },
};
"""

_CSS = """
.remdm-grid { position: relative; font-family: ui-sans-serif, system-ui, sans-serif; }
.remdm-grid-title { font-size: 13px; font-weight: 600; margin: 2px 0 4px 0; white-space: nowrap;
  overflow: hidden; text-overflow: ellipsis; }
.remdm-grid-legend { font-size: 11px; margin-bottom: 4px; display: flex; flex-wrap: wrap; gap: 4px; }
.remdm-grid-legend span { padding: 0 5px; border-radius: 3px; border: 1px solid #BBBBBB; }
.remdm-grid-legend .remdm-differs-key { box-shadow: inset 0 -3px 0 #CC79A7; }
.remdm-grid-cells { display: grid; gap: 2px;
  grid-template-columns: 3.2em repeat(var(--remdm-columns), var(--remdm-cell, minmax(30px, 5em))); }
.remdm-row-label { font-size: 11px; color: #666666; text-align: right; padding-right: 4px;
  line-height: 22px; }
.remdm-cell { height: 22px; line-height: 22px; font: 11px ui-monospace, monospace; text-align: center;
  overflow: hidden; text-overflow: ellipsis; white-space: nowrap; cursor: pointer; border-radius: 2px;
  padding: 0 2px; }
.remdm-cell:hover { outline: 2px solid #0072B2; }
.remdm-cell.remdm-differs { box-shadow: inset 0 -4px 0 #CC79A7; }
.remdm-cell.remdm-selected { outline: 3px solid #000000; outline-offset: -3px; }
.remdm-grid-tip { display: none; position: fixed; z-index: 100000; max-width: 480px; font-size: 12px;
  font-family: ui-sans-serif, system-ui, sans-serif; color: #222222;
  background: #FFFFFF; border: 1px solid #888888; border-radius: 3px; padding: 4px 6px;
  pointer-events: none; box-shadow: 0 1px 4px rgba(0,0,0,0.2); }
.remdm-grid-tip small { color: #666666; }
"""


class TokenGridWidget(anywidget.AnyWidget):
    """A grid of token cells; everything it draws is in the traits below.

    ``on_click(callback)`` / ``on_hover(callback)`` register ``callback(position)``; the position
    is the absolute sequence position of the cell the user saw. ``click(position)`` does what a
    click in the browser does (for tests and scripts).
    """

    _esm = _ESM
    _css = _CSS

    title = T.Unicode("").tag(sync=True)
    columns = T.Int(32).tag(sync=True)
    start = T.Int(0).tag(sync=True)                 # sequence position of the first cell
    texts = T.List(T.Unicode()).tag(sync=True)      # cell texts, HTML-escaped once
    codes = T.List(T.Int()).tag(sync=True)          # state codes (explorer.viz.palette)
    hovers = T.List(T.Unicode()).tag(sync=True)     # tooltip HTML per cell
    selected = T.List(T.Int()).tag(sync=True)       # positions drawn with a black outline
    differs = T.List(T.Int()).tag(sync=True)        # positions that differ from another run shown beside
    origin = T.Int(0).tag(sync=True)                # position shown as 0 (a prompted run: the first answer token)
    cell_chars = T.Int(0).tag(sync=True)            # cell width in characters (0: the CSS default)
    legend = T.List(T.List()).tag(sync=True)        # [name, background, text colour] per code
    legend_order = T.List(T.Int()).tag(sync=True)   # the codes in the order the key lists them

    def __init__(self, **kwargs):
        kwargs.setdefault("legend", [[STATE_NAMES[c], STATE_COLORS[c], TEXT_COLORS[c]]
                                     for c in sorted(STATE_NAMES)])
        kwargs.setdefault("legend_order", list(STATE_ORDER))
        super().__init__(**kwargs)
        self._click = CallbackDispatcher()
        self._hover = CallbackDispatcher()
        self.on_msg(self._on_front_end_msg)

    def show(self, arrays: dict, title: str, start: int, columns: int) -> None:
        """Draw one frame: ``arrays`` from :func:`explorer.viz.grid.grid_arrays` (one message)."""
        positions = arrays["frame"].positions
        w = len(positions)
        with self.hold_sync():
            self.title = title
            self.columns = int(columns)
            # the frame's own first position: the index clips a window that starts past the end
            self.start = int(positions[0]) if w else int(start)
            self.texts = [str(t) for t in arrays["text"].ravel()[:w]]
            self.codes = [int(c) for c in arrays["frame"].codes]
            self.hovers = [str(h) for h in arrays["hover"].ravel()[:w]]

    @property
    def positions(self) -> range:
        return range(self.start, self.start + len(self.texts))

    def on_click(self, callback, remove: bool = False) -> None:
        self._click.register_callback(callback, remove=remove)

    def on_hover(self, callback, remove: bool = False) -> None:
        self._hover.register_callback(callback, remove=remove)

    def click(self, position: int) -> None:
        self._dispatch("click", position)

    def hover(self, position: int) -> None:
        self._dispatch("hover", position)

    def _dispatch(self, event: str, position) -> None:
        position = int(position)
        if position not in self.positions:
            return  # a message about a cell from an older frame that is no longer drawn
        (self._click if event == "click" else self._hover)(position)

    def _on_front_end_msg(self, _widget, content, _buffers) -> None:
        if isinstance(content, dict) and content.get("event") in ("click", "hover"):
            try:
                self._dispatch(content["event"], content["position"])
            except (TypeError, ValueError, KeyError):
                pass  # malformed message from a stale front end: nothing to select
