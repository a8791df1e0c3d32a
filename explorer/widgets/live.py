"""Watch a run while it generates: the token grid and step curves drawn from the engine's
``on_step`` hook, a Stop button, and the ordinary scrubber on the finished trace.

``generate`` runs in a worker thread, so the notebook stays usable (the Stop button's click is
handled by the idle kernel). The hook does a few array operations per step and draws at most
``fps`` times a second; a draw shows every cell written since the last draw in sky blue, every
cell taken back (and still masked) in vermillion with the token it lost, and every cell taken back
and written again since then in orange (ReMDM-LLaDA remasks and rewrites within one step), so a
remask flashes even when many steps pass between two draws. When the run ends -- finished, stopped, or refused --
the same widget shows the finished (or partial) trace in a :class:`TraceViewer`: the trace is the
one ``generate`` returned, nothing is recorded twice.
"""
from __future__ import annotations

import html
import threading
import time
import traceback
import warnings

import ipywidgets as W
import numpy as np

from ..viz.checks import check_layout
from ..viz.grid import absolute_note, cell_text, position_name, readable_ends
from ..viz.palette import FIXED, MASKED, REMASKED, REWRITTEN, STABLE, STATE_COLORS, STATE_NAMES, UNMASKED
from .scrubber import TraceViewer
from .token_grid import TokenGridWidget


def one_line(exc: BaseException) -> str:
    """The first line of an error's message: what a status line shows (the traceback is opt-in)."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _fmt_seconds(s: float) -> str:
    if not np.isfinite(s):
        return "?"
    if s < 60:
        return f"{s:.1f} s"
    m, s = divmod(int(round(s)), 60)
    return f"{m} min {s:02d} s" if m < 60 else f"{m // 60} h {m % 60:02d} min"


# a masked token in the live text: a small box (a font-independent glyph)
_BOX = ("<span style='display:inline-block;width:0.9em;height:0.8em;margin:0 1px;vertical-align:-0.05em;"
        "border-radius:2px;background:{}'></span>")


class TokenTexts:
    """Token id -> cell text, cached; raw ids only where the model has no tokenizer."""

    def __init__(self, model):
        self.tokenizer = getattr(model, "tokenizer", None)
        self.mask_id = int(model.mask_id)
        self._cache: dict[int, str] = {}

    def text(self, token_id: int) -> str:
        t = self._cache.get(token_id)
        if t is None:
            if token_id == self.mask_id:
                t = "[MASK]"
            elif self.tokenizer is not None:
                try:
                    t = self.tokenizer.decode([token_id])
                except Exception:  # an id the tokenizer does not know still shows
                    t = f"#{token_id}"
            else:
                t = f"#{token_id}"
            self._cache[token_id] = t
        return t

    def cell(self, token_id: int) -> str:
        return cell_text(self.text(token_id))


def curves_svg(steps, masked, remasks, x_max: int, y_max: int, width: int = 420, height: int = 96,
               sample: int = 0) -> str:
    """Masked tokens after each step (grey line) and remasks per step (vermillion bars), as a small
    inline SVG: cheap enough to redraw on every live frame, no JavaScript."""
    x_max, y_max = max(1, int(x_max)), max(1, int(y_max))
    left, top, w, h = 34, 6, width - 40, height - 24
    sx = lambda s: left + w * s / x_max  # noqa: E731
    sy = lambda v: top + h * (1 - v / y_max)  # noqa: E731
    pts = " ".join(f"{sx(s):.1f},{sy(m):.1f}" for s, m in zip(steps, masked))
    bars = "".join(f'<line x1="{sx(s):.1f}" x2="{sx(s):.1f}" y1="{sy(0):.1f}" y2="{sy(r):.1f}" '
                   f'stroke="{STATE_COLORS[REMASKED]}" stroke-width="2"/>' for s, r in zip(steps, remasks) if r)
    return (f'<svg class="remdm-live-curves" width="{width}" height="{height}" '
            f'style="font:10px ui-sans-serif,system-ui,sans-serif">'
            f'<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="#FFFFFF" stroke="#DDDDDD"/>'
            f'{bars}<polyline points="{pts}" fill="none" stroke="#555555" stroke-width="1.5"/>'
            f'<text x="{left - 4}" y="{top + 8}" text-anchor="end">{y_max}</text>'
            f'<text x="{left - 4}" y="{top + h}" text-anchor="end">0</text>'
            f'<text x="{left}" y="{height - 4}">step 0</text>'
            f'<text x="{left + w}" y="{height - 4}" text-anchor="end">{x_max}</text>'
            f'<text x="{left + w / 2}" y="{height - 4}" text-anchor="middle">'
            f'<tspan fill="#555555">masked</tspan> · <tspan fill="{STATE_COLORS[REMASKED]}">remasked per step'
            f'</tspan> (sample {sample})</text></svg>')


def run_rows(model, prompt, num_samples: int) -> list[tuple[str, int]]:
    """The rows of a run as sample-box options ``(label, row)``: ``num_samples`` for one prompt;
    on a variable-length model a list of P prompts runs P x num_samples rows, prompt-major
    (row ``p * num_samples + s``), as :func:`explorer.generate` lays them out."""
    from explorer import prompts
    n, n_prompts = max(1, int(num_samples)), 1
    if getattr(model, "seq_len", None) is None and prompt is not None:
        try:
            n_prompts = len(prompts.prompt_list(prompt))
        except ValueError:
            pass   # generate refuses it with its own message, shown in the status line
    if n_prompts == 1:
        return [(str(s), s) for s in range(n)]
    return [(f"prompt {p} · sample {s}", p * n + s) for p in range(n_prompts) for s in range(n)]


class LiveViewer(W.VBox):
    """``LiveViewer(model, sampler, steps, num_samples=1, seed=0, prompt=None, ...)``: the
    arguments of :func:`explorer.generate`, run in a worker thread and drawn as it goes.

    While it runs: the token grid of one row (``sample``: a row of the trace; a box switches it
    when there are several, a list of prompts runs prompts x ``num_samples`` rows), masked / remasked-per-step curves, and a status line with steps done, model calls,
    tokens per second and ETA. **Stop** ends the run cleanly: the partial trace is kept
    (``trace.complete is False``), as Ctrl-C does. Afterwards the widget is a
    :class:`TraceViewer` of the trace (``.viewer``); ``.trace`` holds it.

    ``fps`` bounds the drawing rate. A run ``generate`` refuses shows its one-line error in the
    status line (``debug=True`` adds the traceback below it). ``wait()`` blocks until the run ends
    and returns the trace, or raises generate's error if it refused the run; a kernel interrupt
    while waiting stops the run and keeps the partial trace. ``start=False`` builds the widget
    without running (call ``start()``). Closing the browser tab does not end the run: ``.trace``
    holds it when it ends, and ``stop()`` from any cell ends it early. ``text=True`` adds the text
    so far above the grid; ``on_done(viewer)`` is called when the run has ended (finished, stopped
    or refused), before ``wait()`` returns.
    """

    def __init__(self, model, sampler, steps: int, num_samples: int = 1, seed: int = 0, prompt=None, *,
                 sample: int = 0, columns: int = 32, length: int = 256, fps: float = 6.0,
                 start: bool = True, debug: bool = False, label: str | None = None, text: bool = False,
                 on_done=None, **generate_kwargs):
        if generate_kwargs.pop("on_step", None) is not None:
            raise ValueError("LiveViewer sets on_step itself; use explorer.generate(on_step=...) for your own hook.")
        generate_kwargs.pop("progress", None)  # the live view is the progress display
        self.model, self.sampler, self.steps = model, sampler, steps
        self.kwargs = dict(num_samples=num_samples, seed=seed, prompt=prompt, **generate_kwargs)
        check_layout(length, columns)
        if not fps > 0:
            raise ValueError(f"fps (the most grid frames drawn a second) must be above 0, got {fps!r}; give e.g. "
                             "fps=6 (higher draws more often and slows the run more).")
        self.columns, self.length, self.fps = int(columns), int(length), float(fps)
        self.debug, self.label, self.on_done = debug, label, on_done
        self.sample = int(sample)
        self.rows = run_rows(model, prompt, num_samples)
        if not 0 <= self.sample < len(self.rows):
            raise ValueError(f"sample={sample} is not a row of this run (it has {len(self.rows)}: prompts x "
                             f"num_samples); use sample in 0..{len(self.rows) - 1}.")
        self.trace = None
        self.error: BaseException | None = None
        self.viewer: TraceViewer | None = None
        self.frames = 0                 # grid frames drawn while running
        self.draw_seconds = 0.0         # time spent drawing them (the live view's own cost)
        self.run_seconds = None         # wall time of the generate call (hook and drawing included)
        self.hook_seconds = 0.0         # time the run spent in this view's hook (bookkeeping and drawing)
        self.states: list[tuple] = []   # (step, codes) of each drawn frame, for tests and scripts
        self._texts = TokenTexts(model)
        self._stop = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._latest: dict[int, tuple] = {}   # sample -> (x, fixed of its batch, its row, gen_start)
        self._reset_tracking()
        self._progress = None
        self._last_draw = 0.0
        self.stopped_by_user = False

        self.status = W.HTML("<i>ready</i>")
        self.status.add_class("remdm-live-status")
        self.stop_button = W.Button(description="Stop", icon="stop", button_style="danger",
                                    tooltip="end the run now and keep the partial trace",
                                    layout=W.Layout(width="90px"))
        self.stop_button.add_class("remdm-stop")
        self.stop_button.on_click(lambda _: self.stop())
        self.sample_box = None
        head = [self.stop_button, self.status]
        if len(self.rows) > 1:
            self.sample_box = W.Dropdown(options=self.rows, value=self.sample,
                                         description="sample",
                                         layout=W.Layout(width="150px" if self.rows[-1][0].isdigit() else "260px"))
            self.sample_box.observe(lambda ch: self.watch(int(ch["new"])), "value")
            head.insert(1, self.sample_box)
        self.header = W.HBox(head, layout=W.Layout(align_items="center"))
        self.grid = TokenGridWidget()
        self.grid_box = W.Box([self.grid])
        self.grid_box.add_class("remdm-token-grid")
        self.grid_box.add_class("remdm-live-grid")
        self.curves = W.HTML("")
        self.debug_out = W.Output()
        self.text = W.HTML("") if text else None   # the answer as text, masks as boxes
        if self.text is not None:
            self.text.add_class("remdm-live-text")
        body = [self.text] if self.text is not None else []
        super().__init__([self.header] + body + [self.grid_box, self.curves, self.debug_out])
        self.add_class("remdm-live-viewer")
        if start:
            self.start()

    # -- running --------------------------------------------------------------------------
    def start(self) -> "LiveViewer":
        """Start the run in a worker thread (once)."""
        if self._thread is not None:
            raise RuntimeError("this LiveViewer has already run; build a new one for another run.")
        self.status.value = "<i>starting …</i>"
        self._thread = threading.Thread(target=self._run, name="remdm-live", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """End the run after the step in progress; the partial trace is kept."""
        if self._done.is_set():
            return
        self.stopped_by_user = True
        self._stop.set()
        self.stop_button.disabled = True
        self.status.value = "<i>stopping after this step …</i>"

    @property
    def running(self) -> bool:
        return self._thread is not None and not self._done.is_set()

    def wait(self, timeout: float | None = None):
        """Block until the run ends and return the trace (None if ``timeout`` passed first); raise the
        error of a run that generate refused, so a script does not go on with no trace. A kernel
        interrupt (Ctrl-C) while waiting stops the run and keeps the partial trace."""
        if self._thread is None:
            self.start()
        try:
            self._done.wait(timeout)
        except KeyboardInterrupt:
            self.stop()
            self._done.wait()
        if self.trace is None and self.error is not None:
            raise self.error
        return self.trace

    def _run(self) -> None:
        import explorer
        try:
            t0 = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                trace = explorer.generate(self.model, self.sampler, self.steps, on_step=self._on_step,
                                          progress=False, **self.kwargs)
            self.run_seconds = time.perf_counter() - t0   # generate with the hook and the drawing
            for w in caught:  # anything but the expected "interrupted" note is shown as usual
                if not str(w.message).startswith("generation interrupted"):
                    warnings.showwarning(w.message, w.category, w.filename, w.lineno)
        except Exception as exc:  # refused by generate: one line in the status, traceback on request
            self.error = exc
            self.status.value = (f"<span style='color:#D55E00'><b>could not run:</b> "
                                 f"{html.escape(one_line(exc))}</span>")
            if self.debug:
                self.debug_out.append_stderr(traceback.format_exc())
            self.stop_button.disabled = True
            self.stop_button.layout.display = "none"
            self._call_done()
            self._done.set()
            return
        try:
            self.trace = trace
            self._finish(trace)
        except Exception as exc:  # the trace is kept even if the scrubber cannot be built
            self.error = exc
            self.status.value += (f"<br><span style='color:#D55E00'>could not open the viewer: "
                                  f"{html.escape(one_line(exc))}</span>")
            if self.debug:
                self.debug_out.append_stderr(traceback.format_exc())
        finally:
            self._call_done()   # before wait() returns: whoever waits sees what on_done drew
            self._done.set()

    def _call_done(self) -> None:
        if self.on_done is not None:
            try:
                self.on_done(self)
            except Exception as exc:
                self.status.value += f"<br><span style='color:#D55E00'>{html.escape(one_line(exc))}</span>"
                if self.debug:
                    self.debug_out.append_stderr(traceback.format_exc())

    # -- the hook (worker thread) ---------------------------------------------------------
    def _reset_tracking(self) -> None:
        self._cur = None          # tokens of the watched sample now
        self._fixed = None        # prompt / fixed positions (never change)
        self._removed = None      # the token each position lost at its last remask
        self._un_tick = None      # draw tick at which a position was last written
        self._rem_tick = None     # draw tick at which a position was last remasked
        self._tick = 0
        self._gen = 0             # positions the run writes (for tokens/s and the curves' scale)
        self._curve = ([], [], [])
        self._start_pos = None

    def _track(self, x: np.ndarray, unmasked: np.ndarray, remasked: np.ndarray, step: int, fixed: np.ndarray,
               gen_start: int) -> None:
        mask_id = self._texts.mask_id
        if self._cur is None:
            L = len(x)
            self._fixed = fixed.copy()          # the engine says which positions are the prompt / pinned
            self._removed = np.full(L, mask_id, np.int64)
            self._un_tick = np.full(L, -1, np.int64)
            self._rem_tick = np.full(L, -1, np.int64)
            self._gen = int((~self._fixed).sum())
            if self._start_pos is None:
                self._start_pos = int(gen_start)    # a prompted canvas (LLaDA / Dream): show the answer
            prev = x.copy()
            prev[unmasked] = mask_id
        else:
            prev = self._cur
        self._removed[remasked] = prev[remasked]
        self._rem_tick[remasked] = self._tick
        self._un_tick[unmasked] = self._tick
        self._cur = x
        s, m, r = self._curve
        s.append(int(step))
        m.append(int((x[~self._fixed] == mask_id).sum()))
        r.append(int(len(remasked)))

    def _on_step(self, u) -> None:
        from explorer import StopGeneration
        t0 = time.perf_counter()
        try:
            rows = u.samples.tolist()
            x, fixed = u.x.numpy(), u.fixed.numpy()
            with self._lock:
                for r, s in enumerate(rows):
                    self._latest[s] = (x, fixed, r, u.gen_start)
                if self.sample in rows:
                    r = rows.index(self.sample)
                    un = u.unmasked.numpy()
                    rem = u.remasked.numpy()
                    self._track(x[r], un[un[:, 0] == r, 1], rem[rem[:, 0] == r, 1], u.step, fixed[r], u.gen_start)
                self._progress = u
            now = time.perf_counter()
            if now - self._last_draw >= 1.0 / self.fps:
                self._last_draw = now
                self._draw()
        except Exception as exc:  # a drawing problem must never end the run
            if self.error is None:
                self.error = exc
                if self.debug:
                    self.debug_out.append_stderr(traceback.format_exc())
        self.hook_seconds += time.perf_counter() - t0
        if self._stop.is_set():
            raise StopGeneration("stopped from the live view")

    def watch(self, sample: int) -> None:
        """Show another sample of the run (live: from its latest state on)."""
        self.sample = int(sample)
        if self.sample_box is not None and self.sample_box.value != self.sample:
            self.sample_box.value = self.sample
            return
        if self.viewer is not None:
            self.viewer.show_sample(self.sample)
            return
        with self._lock:
            start_pos = self._start_pos
            self._reset_tracking()
            self._start_pos = start_pos
            hit = self._latest.get(self.sample)
            if hit is not None:
                x, fixed, r, gen_start = hit
                self._track(x[r], np.zeros(0, np.int64), np.zeros(0, np.int64), 0, fixed[r], gen_start)
                self._curve = ([], [], [])
        self._draw()

    # -- drawing --------------------------------------------------------------------------
    def _draw(self) -> None:
        t0 = time.perf_counter()
        with self._lock:
            u = self._progress
            cur = None if self._cur is None else self._cur.copy()
            if cur is not None:
                fixed, removed = self._fixed, self._removed
                new = self._un_tick == self._tick
                gone = self._rem_tick == self._tick
                curve = tuple(list(c) for c in self._curve)
                self._tick += 1
        if u is not None:
            self.status.value = self.progress_html(u)
        if cur is None:
            return
        mask_id = self._texts.mask_id
        a = self._start_pos or 0
        b = min(len(cur), a + self.length)
        codes = np.full(len(cur), STABLE, np.int64)
        is_masked = cur == mask_id
        codes[is_masked] = MASKED
        codes[new & ~is_masked] = UNMASKED
        codes[gone & is_masked] = REMASKED
        codes[gone & ~is_masked] = REWRITTEN    # remasked and written again since the last frame
        codes[fixed] = FIXED
        shown = np.where(codes == REMASKED, removed, cur)
        texts, hovers = [], []
        for p in range(a, b):
            c, tid = int(codes[p]), int(shown[p])
            texts.append("·" if tid == mask_id else self._texts.cell(tid))
            what = ("not decoded yet" if c == MASKED else
                    f"remasked: it held {readable_ends(html.escape(self._texts.text(tid)))}" if c == REMASKED else
                    f"token {readable_ends(html.escape(self._texts.text(tid)))}")
            if c == REWRITTEN:
                what += (f"<br>remasked and written again since the last frame: it held "
                         f"{readable_ends(html.escape(self._texts.text(int(removed[p]))))}")
            hovers.append(f"<b>{position_name(p, a)}</b> · {STATE_NAMES[c]}<br>{what}{absolute_note(p, a)}")
        step = getattr(u, "step", 0)
        n = {c: int((codes[a:b] == c).sum()) for c in (MASKED, UNMASKED, REMASKED, REWRITTEN)}
        again = n[REWRITTEN]   # counted as written and as remasked, as the grid titles and steps table do
        title = (f"{self.label + ' · ' if self.label else ''}live · step {step} · masked {n[MASKED] + n[REMASKED]} · "
                 f"written since last frame {n[UNMASKED] + again} · "
                 f"remasked since last frame {n[REMASKED] + again}" + (f" ({again} written again)" if again else ""))
        with self.grid.hold_sync():
            self.grid.title = title
            self.grid.columns = self.columns
            self.grid.start = a
            self.grid.origin = a
            self.grid.texts = texts
            self.grid.codes = [int(c) for c in codes[a:b]]
            self.grid.hovers = hovers
        s, m, r = curve
        x_max = max([int(self.steps)] + s)
        self.curves.value = curves_svg(s, m, r, x_max, max([self._gen] + m), sample=self.sample)
        if self.text is not None:
            self.text.value = self.text_html(cur[a:b], codes[a:b])
        self.frames += 1
        self.states.append((step, tuple(self.grid.codes)))
        self.draw_seconds += time.perf_counter() - t0

    def text_html(self, ids, codes) -> str:
        """The answer so far as text: written runs decoded together, each mask a grey box, a
        token that just went back to [MASK] a vermillion one."""
        mask_id = self._texts.mask_id
        tk = self._texts.tokenizer
        out, run = [], []

        def flush():
            if run:
                t = tk.decode(run) if tk is not None else " ".join(self._texts.text(i) for i in run)
                out.append(html.escape(t).replace("&lt;|endoftext|&gt;", " ¶<br>"))
                run.clear()
        for tid, c in zip(ids.tolist(), codes.tolist()):
            if tid == mask_id:
                flush()
                out.append(_BOX.format(STATE_COLORS[REMASKED] if c == REMASKED else STATE_COLORS[MASKED]))
            else:
                run.append(tid)
        flush()
        return ("<div style='white-space:pre-wrap;font-size:13px;line-height:1.5;max-width:70em'>"
                + "".join(out) + "</div>")

    def progress_html(self, u) -> str:
        """Steps done, model calls, tokens per second and ETA of a StepUpdate, as one line."""
        done, total = int(u.steps_done), max(1, int(u.steps_total))
        elapsed = float(u.elapsed)
        n = len(self.rows)   # every row of the run writes its tokens
        per_sample = self._gen or int(self.kwargs.get("gen_length") or getattr(self.model, "seq_len", 0) or 0)
        tokens = n * per_sample * done / total
        rate = tokens / elapsed if elapsed > 0 else float("nan")
        eta = elapsed * (total - done) / done if done else float("nan")
        final = " (final pass)" if u.phase == "final_argmax" else ""
        return (f"<b>step {min(done, total)} of {total}</b>{final} · {u.model_calls} model calls · "
                f"{rate:,.0f} tokens/s · {_fmt_seconds(elapsed)} elapsed · ETA {_fmt_seconds(eta)}")

    def final_text_html(self, trace) -> str:
        text = trace.texts[self.sample]
        return ("<div style='white-space:pre-wrap;font-size:13px;line-height:1.5;max-width:70em'>"
                + html.escape(text).replace("&lt;|endoftext|&gt;", " ¶<br>") + "</div>")

    # -- static page ----------------------------------------------------------------------
    def page_parts(self, max_frames: int = 60) -> list:
        """What :meth:`to_html` draws: the status line, the answer text (``text=True``) and the
        finished (or stopped) run's scrubber page; refused while the run is going."""
        if self.running:
            raise ValueError("the run is still going: wait for it (viewer.wait()) or press Stop, then save the page.")
        parts = [f"<p class='note'>{self.status.value}</p>"]
        if self.text is not None and self.trace is not None:
            parts.append(self.final_text_html(self.trace))
        if self.viewer is not None:
            parts += self.viewer.page_parts(max_frames)
        return parts

    def to_html(self, path, title: str = "ReMDM Explorer: live run", max_frames: int = 60):
        """A self-contained page of the ended run (see :meth:`page_parts`), written atomically."""
        from ..viz import export
        return export.write_html(path, self.page_parts(max_frames), title=title)

    # -- the end --------------------------------------------------------------------------
    def _finish(self, trace) -> None:
        self.stop_button.disabled = True
        self.stop_button.layout.display = "none"   # nothing left to stop
        self._draw()  # the last state the hook saw, in case the scrubber cannot be built
        steps_done = int(self._progress.steps_done) if self._progress is not None else 0
        total = int(self._progress.steps_total) if self._progress is not None else 0
        secs = float(trace.meta.get("wall_seconds", 0.0))
        if trace.complete:
            final = trace.final_pass_step
            ran = (final - 1 if final is not None else trace.last_step) - trace.first_step
            steps = f"{ran} steps" + (f" (T = {trace.num_steps})" if ran != trace.num_steps else "")
            head = (f"<b>done</b>: {steps} · {trace.model_calls} model calls · "
                    f"{_fmt_seconds(secs)}")
        else:
            head = (f"<b style='color:#D55E00'>stopped</b> after {steps_done} of {total} steps · "
                    f"{trace.model_calls} model calls · {_fmt_seconds(secs)}: the partial trace is kept "
                    "(<code>trace.complete</code> is False)")
        if not getattr(trace, "recorded", True) or trace.meta.get("record") is False:
            self.status.value = head + " · generated with record=False: only the final state is kept."
            return
        # the scrubber opens where the live view stood: the same sample and window
        rows = self.rows if len(self.rows) == trace.num_samples else None
        self.viewer = TraceViewer(trace, sample=self.sample, columns=self.columns, length=self.length,
                                  label=self.label, rows=rows)
        self.status.value = head
        body = [self.text] if self.text is not None else []
        if self.text is not None:
            self.text.value = self.final_text_html(trace)
        self.children = [self.header] + body + [self.viewer, self.debug_out]
        if self.sample_box is not None:
            self.header.children = tuple(c for c in self.header.children if c is not self.sample_box)
