"""A play / pause button that steps an integer ``value`` in the browser, for the step sliders.

Why not ``ipywidgets.Play``: its timer is started by each *view* when ``playing`` turns on, and a
second view of the same widget (the notebook shows a viewer in two cells, or a live view that
became a scrubber is displayed again) sees the change after the first view's tick has already
set ``value``, reads ``previous("playing")`` as true and pauses: play moves one step and stops
(jupyter-widgets/ipywidgets#3967, open). Here the timer belongs to the *model*: anywidget's
``initialize`` runs once per widget in a page, whatever the number of views, and views only
draw the button and flip ``playing``. Link ``value`` to a slider with ``ipywidgets.jslink`` so
playing needs no kernel round trip.
"""
from __future__ import annotations

import anywidget
import traitlets as T

_ESM = r"""
function tick(model) {
  if (!model.get("playing")) return;
  const next = model.get("value") + model.get("step");
  if (next <= model.get("max")) {
    model.set("value", next);
  } else {
    model.set("value", model.get("max"));
    model.set("playing", false);     // stops at the end, as a video does
  }
  model.save_changes();
}

export default {
  initialize({ model }) {
    // one timer per widget, whatever the number of views
    let timer = null;
    const stop = () => { if (timer !== null) { clearInterval(timer); timer = null; } };
    const start = () => { stop(); timer = setInterval(() => tick(model), Math.max(10, model.get("interval"))); };
    const onPlaying = () => {
      if (!model.get("playing")) { stop(); return; }
      if (model.get("value") >= model.get("max")) {   // pressed at the end: from the start again
        model.set("value", model.get("min"));
        model.save_changes();
      }
      start();
    };
    model.on("change:playing", onPlaying);
    model.on("change:interval", () => { if (timer !== null) start(); });
    if (model.get("playing")) onPlaying();     // a page reloaded while playing goes on playing
    return () => stop();
  },
  render({ model, el }) {
    const button = document.createElement("button");
    button.className = "jupyter-button remdm-play-button";
    const draw = () => {
      const playing = model.get("playing");
      button.textContent = playing ? "\u275A\u275A" : "\u25B6";
      button.title = playing ? "pause" : "play";
      button.setAttribute("aria-label", button.title);
      button.disabled = model.get("disabled");
    };
    button.addEventListener("click", () => {
      model.set("playing", !model.get("playing"));
      model.save_changes();
    });
    model.on("change:playing", draw);
    model.on("change:disabled", draw);
    draw();
    el.classList.add("remdm-play");
    el.appendChild(button);
    return () => {
      model.off("change:playing", draw);
      model.off("change:disabled", draw);
    };
  },
};
"""

_CSS = """
.remdm-play-button { width: 36px; min-width: 36px; padding: 0; font-size: 12px; }
"""


class Player(anywidget.AnyWidget):
    """Play / pause over ``min .. max``: every ``interval`` ms ``value`` advances by ``step``;
    it stops at ``max``, and play pressed there starts again from ``min``.

    The same traits as ``ipywidgets.Play`` that the viewers use, so ``jslink`` and the speed
    table (:data:`explorer.widgets.scrubber.SPEEDS`) work unchanged; ``playing`` can be set from
    Python too.
    """

    _esm = _ESM
    _css = _CSS

    value = T.Int(0).tag(sync=True)
    min = T.Int(0).tag(sync=True)
    max = T.Int(100).tag(sync=True)
    step = T.Int(1).tag(sync=True)
    interval = T.Int(100).tag(sync=True)       # milliseconds between steps
    playing = T.Bool(False).tag(sync=True)
    disabled = T.Bool(False).tag(sync=True)

    @T.validate("step", "interval")
    def _positive(self, proposal):
        if proposal["value"] < 1:
            raise T.TraitError(f"{proposal['trait'].name} must be >= 1, got {proposal['value']}.")
        return proposal["value"]

    @T.validate("max")
    def _max_not_below_min(self, proposal):
        if proposal["value"] < self.min:
            raise T.TraitError(f"max={proposal['value']} is below min={self.min}.")
        return proposal["value"]
