"""A chat panel: type a prompt, pick a sampler and its settings, watch the answer being written
(remasks included), then scrub it; run it again with another sampler to see both side by side."""
from __future__ import annotations

import dataclasses
import html

import ipywidgets as W

from ..samplers.spec import parse_sampler
from ..viz.checks import check_choice
from .compare import CompareViewer
from .live import LiveViewer, one_line

# settings the panel sets itself (the run's shape) or that are not a number or a word
OWN = {"remaskable", "block_length"}
# LLaDA's end-of-text switches (generate.py; llada-dream reference §4.1): shown for the LLaDA
# samplers, active where the sampler class has them as settings
EOS_SWITCHES = ("logits_eos_inf", "confidence_eos_eot_inf")
LLADA_SAMPLERS = ("llada", "remdm-llada")
_LABELS = {"nucleus_p": "top-p", "top_p": "top-p", "top_k": "top-k", "eta": "eta", "alg_temp": "alg_temp"}


def sampler_settings(cls) -> list[dataclasses.Field]:
    """The settings of a sampler class a user sets in the panel: the fields its constructor takes."""
    return [f for f in dataclasses.fields(cls) if f.init and f.name not in OWN]


def _kind(field) -> str:
    t = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", str(field.type))
    t = t.replace("typing.", "").replace("Optional[", "").replace(" ", "")
    if "Sampler" in t:      # a draft-then-correct strategy's draft, written as a sampler spec
        return "sampler"
    if "bool" in t:
        return "bool"
    if "float" in t:
        return "float"
    if "int" in t:
        return "int"
    return "str"


def _setting_widget(field, names=()):
    default = field.default if field.default is not dataclasses.MISSING else None
    label = _LABELS.get(field.name, field.name)
    if field.name == "nucleus_p" and "top_p" in names:
        label = "nucleus_p"   # Dream's own top-p is the one to use there
    style = {"description_width": "110px"}
    lay = W.Layout(width="250px")
    kind = _kind(field)
    if "choices" in field.metadata:       # a setting declared with samplers.settings.choice
        w = W.Dropdown(options=list(field.metadata["choices"]), value=default, description=label, style=style,
                       layout=lay)
    elif kind == "bool":
        w = W.Checkbox(value=bool(default), description=label, indent=False, layout=lay)
    elif kind == "sampler":  # empty: the strategy's default draft
        w = W.Text(value="", placeholder="mdlm (a sampler spec)", description=label, style=style, layout=lay,
                   tooltip="a sampler spec, e.g. remdm-loop:eta=0.05; empty for MDLM")
    elif default is None:  # optional: empty means "not set"
        w = W.Text(value="", placeholder="not set", description=label, style=style, layout=lay)
    elif kind == "float":
        w = W.FloatText(value=default, description=label, style=style, layout=lay)
    elif kind == "int":
        w = W.IntText(value=default, description=label, style=style, layout=lay)
    else:
        w = W.Text(value=str(default), description=label, style=style, layout=lay)
    if "open_unit" in field.metadata:     # a setting declared with samplers.settings.open_unit says what it is
        w.tooltip = f"in (0, 1): {field.metadata['open_unit']}"
    w.setting, w.kind = field.name, kind
    return w


def _read(w):
    if w.kind == "sampler":
        text = w.value.strip()
        return parse_sampler(text) if text else None
    if isinstance(w, W.Text) and w.placeholder == "not set":
        text = w.value.strip()
        if not text:
            return None
        try:
            return int(text) if w.kind == "int" else float(text) if w.kind == "float" else text
        except ValueError:
            raise ValueError(f"{w.setting} must be a {w.kind} number or empty, got {text!r}.") from None
    return w.value


class ChatPanel(W.VBox):
    """``ChatPanel(model)``: a prompt box (a chat history for chat models), every registered
    sampler with its settings, gen length, steps, block length, seed, Generate / Stop.

    The answer is written live (:class:`LiveViewer`), then opens in the scrubber with its remasks
    marked. **again with another sampler** runs the last prompt with the sampler now chosen, from
    the same seed, and shows both runs side by side (:class:`CompareViewer`). ``send(text)`` does
    what typing and pressing Generate does and returns the :class:`LiveViewer` (``.wait()`` for
    the trace). Bad requests (an empty message, a gen length over the model's maximum, a setting
    the sampler refuses) are answered in the status line with the fix, and nothing runs.
    """

    def __init__(self, model, sampler: str | None = None, steps: int | None = None, gen_length: int | None = None,
                 seed: int = 0, block_length: int | None = None, columns: int = 16, fps: float = 6.0,
                 debug: bool = False):
        from explorer.samplers import REGISTRY
        self.model = model
        self.fixed_length = getattr(model, "seq_len", None) is not None
        tk = getattr(model, "tokenizer", None)
        self.chat = not self.fixed_length and bool(getattr(tk, "chat_template", None))
        self.columns, self.fps, self.debug = columns, fps, debug   # debug: tracebacks under the status line
        self.messages: list[dict] = []      # the chat history (chat models)
        self.runs: list[dict] = []          # every answer: prompt, sampler label, trace
        self.live: LiveViewer | None = None
        self.compare: CompareViewer | None = None
        default_gen = gen_length or (64 if not self.fixed_length else model.seq_len)
        self.message = W.Textarea(placeholder=("your message" if self.chat else
                                               "the start of a text, e.g. 'Once upon a time'"),
                                  layout=W.Layout(width="100%", height="64px"))
        self.message.add_class("remdm-chat-message")
        names = list(REGISTRY)
        if sampler is None:
            sampler = "remdm-loop" if self.fixed_length else "remdm-llada"
        check_choice("sampler", sampler, names)
        self.sampler_box = W.Dropdown(options=names, value=sampler, description="sampler",
                                      layout=W.Layout(width="260px"))
        self.sampler_box.add_class("remdm-chat-sampler")
        style = {"description_width": "110px"}
        lay = W.Layout(width="250px")
        self.steps_box = W.IntText(value=steps or (128 if self.fixed_length else 32), description="steps",
                                   style=style, layout=lay)
        self.gen_box = W.IntText(value=default_gen, description="gen length", style=style, layout=lay)
        self.block_box = W.Text(value="" if block_length is None else str(block_length), placeholder="one block",
                                description="block length", style=style, layout=lay)
        self.seed_box = W.IntText(value=seed, description="seed", style=style, layout=lay)
        self.settings_box = W.HBox([], layout=W.Layout(flex_flow="row wrap"))
        self.generate_button = W.Button(description="Generate", button_style="primary", icon="play")
        self.generate_button.add_class("remdm-chat-generate")
        self.stop_button = W.Button(description="Stop", icon="stop", disabled=True)
        self.again_button = W.Button(description="again with another sampler", disabled=True,
                                     layout=W.Layout(width="230px"),
                                     tooltip="the last prompt and seed with the sampler chosen now, side by side")
        self.again_button.add_class("remdm-chat-again")
        self.generate_button.on_click(lambda _: self.send(self.message.value))
        self.stop_button.on_click(lambda _: self.live is not None and self.live.stop())
        self.again_button.on_click(lambda _: self.again())
        self.status = W.HTML("")
        self.status.add_class("remdm-chat-status")
        self.history = W.HTML("")
        self.history.add_class("remdm-chat-history")
        self.output = W.VBox([])
        self.sampler_box.observe(lambda _: self._build_settings(), "value")
        self._build_settings()
        shape = W.HBox([self.steps_box, self.gen_box, self.block_box, self.seed_box],
                       layout=W.Layout(flex_flow="row wrap"))
        if self.fixed_length:
            self.gen_box.disabled = True
            self.gen_box.tooltip = "this model always writes its whole length after the prompt"
            self.message.observe(lambda _: self._fixed_gen_length(), "value")
            self._fixed_gen_length()
        super().__init__([self.history, self.message, W.HBox([self.sampler_box]), self.settings_box, shape,
                          W.HBox([self.generate_button, self.stop_button, self.again_button]), self.status,
                          self.output])
        self.add_class("remdm-chat-panel")

    # -- settings -------------------------------------------------------------------------
    def _build_settings(self) -> None:
        from explorer.samplers import REGISTRY
        cls = REGISTRY[self.sampler_box.value]
        have = {f.name for f in dataclasses.fields(cls)}
        ws = [_setting_widget(f, have) for f in sampler_settings(cls)]
        if self.sampler_box.value in LLADA_SAMPLERS:
            for name in EOS_SWITCHES:
                if name not in have:  # shown, so it is known where they would go; not yet a setting
                    w = W.Checkbox(value=False, description=name, indent=False, disabled=True,
                                   layout=W.Layout(width="250px"),
                                   tooltip=f"{cls.__name__} does not offer {name} yet")
                    w.setting, w.kind = None, "bool"
                    ws.append(w)
        self.block_box.disabled = "block_length" not in have
        self.setting_widgets = ws
        self.settings_box.children = ws

    def sampler(self):
        """The sampler the panel's settings describe (raises ValueError with the sampler's message)."""
        from explorer.samplers import REGISTRY
        cls = REGISTRY[self.sampler_box.value]
        kw = {w.setting: _read(w) for w in self.setting_widgets if w.setting}
        if not self.block_box.disabled:
            kw["block_length"] = self.block_length()
        try:
            return cls(**kw)
        except TypeError as e:
            raise ValueError(f"bad settings for {cls.name}: {e}") from None

    def block_length(self):
        text = self.block_box.value.strip()
        if not text:
            return None
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"block length must be a whole number or empty (one block), got {text!r}.") from None

    # -- the request ----------------------------------------------------------------------
    def prompt_ids(self, text: str) -> list[int]:
        from explorer import prompts
        if self.fixed_length:
            return list(self.model.tokenizer(text, add_special_tokens=False)["input_ids"])
        return list(prompts.encode_prompt(self.model, self._prompt(text)))

    def max_gen_length(self, text: str) -> int:
        """The most tokens the model can write after this prompt."""
        n = len(self.prompt_ids(text))
        if self.fixed_length:
            return int(self.model.seq_len) - n
        return int(getattr(self.model, "max_length", 4096)) - n

    def _fixed_gen_length(self) -> None:
        try:
            self.gen_box.value = max(0, self.max_gen_length(self.message.value))
        except Exception:
            pass

    def _prompt(self, text: str):
        if self.chat:
            return self.messages + [{"role": "user", "content": text}]
        return text

    def check(self, text: str, gen_length: int) -> str | None:
        """Why this request cannot run, with the fix (None when it can)."""
        if getattr(self.model, "tokenizer", None) is None:
            return "this model has no tokenizer, so it cannot read a text prompt: use explorer.generate with token ids."
        if not text.strip():
            return "the message is empty: type a prompt first (e.g. 'Once upon a time')."
        most = self.max_gen_length(text)
        if most < 1:
            return (f"the prompt fills the model's whole length ({len(self.prompt_ids(text))} tokens): "
                    "shorten the prompt.")
        if gen_length > most:
            where = (f"this model writes {self.model.seq_len} tokens in all" if self.fixed_length else
                     f"the model's maximum is {self.model.max_length} tokens with the prompt")
            return f"gen length {gen_length} is over what fits after this prompt ({where}): use gen length <= {most}."
        if gen_length < 1:
            return f"gen length must be at least 1, got {gen_length}."
        return None

    def send(self, text: str, again: bool = False, seed: int | None = None) -> LiveViewer | None:
        """Run one message (what Generate does); returns the live view, or None when refused.
        ``seed`` defaults to the seed box (``again`` passes the last run's seed)."""
        if self.live is not None and self.live.running:
            self._say("a run is still going: press Stop or wait for it to finish.", error=True)
            return None
        text = text if text is not None else ""
        gen_length = int(self.gen_box.value)
        has_tokenizer = getattr(self.model, "tokenizer", None) is not None  # else check() says why
        if self.fixed_length and text.strip() and has_tokenizer:  # it writes all it has left after the prompt
            gen_length = max(0, self.max_gen_length(text))   # 0 when nothing fits: check() refuses it
            self.gen_box.value = gen_length                   # as typing the prompt shows it
        problem = self.check(text, gen_length)
        try:
            sampler = self.sampler() if problem is None else None
        except ValueError as exc:
            problem = one_line(exc)
        if problem is not None:
            self._say(html.escape(problem), error=True)
            return None
        label = sampler.name
        seed = int(self.seed_box.value if seed is None else seed)
        kwargs = dict(seed=seed, prompt=self._prompt(text))
        if not self.fixed_length:
            kwargs["gen_length"] = gen_length
        self._say(f"writing with {html.escape(label)} (seed {seed}) …")
        previous = self.runs[-1] if (again and self.runs) else None
        self.live = LiveViewer(self.model, sampler, int(self.steps_box.value), columns=self.columns,
                               fps=self.fps, label=label, start=False, text=True, debug=self.debug,
                               on_done=lambda lv: self._done(lv, text, label, previous, seed), **kwargs)
        self.live.stop_button.layout.display = "none"   # the panel's own Stop button stops it
        self.output.children = [self.live]
        self.stop_button.disabled = False
        self.generate_button.disabled = self.again_button.disabled = True
        self.live.start()
        return self.live

    def again(self) -> LiveViewer | None:
        """The last prompt again, with the last run's seed (whatever the seed box holds now) and the
        sampler now chosen; then both side by side."""
        if not self.runs:
            self._say("nothing to run again yet: send a message first.", error=True)
            return None
        last = self.runs[-1]
        if self.chat and self.messages[-2:] and self.messages[-1]["role"] == "assistant":
            self.messages = self.messages[:-2]   # the same turn, answered by another sampler
        return self.send(last["text"], again=True, seed=last["seed"])

    def _done(self, live: LiveViewer, text: str, label: str, previous, seed: int) -> None:
        self.stop_button.disabled = True
        self.generate_button.disabled = False
        if live.trace is None:
            self._say(f"could not run: {html.escape(one_line(live.error))}" if live.error else "nothing ran.",
                      error=True)
            self.again_button.disabled = not self.runs
            return
        trace = live.trace
        if live.text is not None:
            live.text.layout.display = "none"   # the answer is in the history above now
        answer = trace.texts[live.sample]
        run = {"text": text, "label": label, "trace": trace, "answer": answer, "sample": live.sample, "seed": seed}
        self.runs.append(run)
        if self.chat:
            self.messages += [{"role": "user", "content": text}, {"role": "assistant", "content": answer}]
        self.history.value += self.exchange_html(run)
        n_remasks = int((trace.events["kind"] == "remask").sum()) if len(trace.events) else 0
        self._say(f"{html.escape(label)}: {trace.model_calls} model calls, {n_remasks} remask(s)"
                  + ("" if trace.complete else " · stopped: partial trace") + ".")
        self.again_button.disabled = False
        if previous is not None and previous["text"] == text:
            self.compare = CompareViewer([previous["trace"], trace], labels=[previous["label"], label],
                                         sample=0, columns=self.columns,
                                         length=live.viewer.length if live.viewer else 128)
            self.output.children = [self.live, self.compare]

    def exchange_html(self, run) -> str:
        """One prompt and its answer. The answer is decoded as a whole, so it reads as
        ``trace.texts`` does (multi-byte characters and the tokenizer's spacing intact; an
        end-of-text token shows as a break mark). Text that remasking rewrote (the position held
        another token before it was taken back) is underlined in vermillion."""
        trace, sample = run["trace"], run.get("sample", 0)
        ids, rewritten = answer_tokens(trace, sample)
        text = trace.decode(ids) if ids else ""
        spans = []
        for a, b, marked in text_spans(trace, ids, rewritten, text):
            t = _with_end_marks(html.escape(text[a:b]))
            if marked:
                t = (f"<span style='text-decoration:underline;text-decoration-color:#D55E00;"
                     f"text-decoration-thickness:2px' title='rewritten after a remask'>{t}</span>")
            spans.append(t)
        return (f"<div class='remdm-chat-turn' style='margin:6px 0;padding:4px 8px;border-left:3px solid #0072B2'>"
                f"<div style='color:#555'><b>prompt</b> ({html.escape(run['label'])}): {html.escape(run['text'])}</div>"
                f"<div class='remdm-chat-answer' style='white-space:pre-wrap'>{''.join(spans)}</div></div>")

    def to_html(self, path, title: str = "ReMDM Explorer: chat", max_frames: int = 60):
        """A self-contained page, written atomically: the history, then the last run (its scrubber
        page) and the side-by-side comparison when one is shown; refused while a run is going."""
        from ..viz import export
        if self.live is not None and self.live.running:
            raise ValueError("a run is still going: wait for it or press Stop, then save the page.")
        parts = [self.history.value or "<p class='note'>no messages yet.</p>"]
        if self.live is not None:
            parts += self.live.page_parts(max_frames)
        if self.compare is not None and self.compare in self.output.children:
            parts += ["<h2>side by side</h2>"] + self.compare.page_parts(max_frames)
        return export.write_html(path, parts, title=title)

    def _say(self, text: str, error: bool = False) -> None:
        self.status.value = f"<span style='color:#D55E00'>{text}</span>" if error else text


def answer_tokens(trace, sample: int = 0) -> tuple[list[int], list[bool]]:
    """The answer's token ids in one sample and, for each, whether remasking rewrote it.

    A prompted canvas (LLaDA / Dream) answers from ``meta["gen_start"]`` up to its first stop id,
    as ``trace.texts``; a fixed-length model's answer follows its prompt (the leading fixed
    positions, shown on the prompt line)."""
    final, fixed = trace.final[sample].tolist(), trace.fixed[sample].tolist()
    start = trace.meta.get("gen_start")
    if start:
        stops = set(trace.meta.get("stop_ids") or [])
        end = next((p for p in range(start, len(final)) if final[p] in stops), len(final))
    else:
        start = next((p for p, f in enumerate(fixed) if not f), len(final))
        end = len(final)
    rewritten = set()
    ev = trace.events
    if len(ev):
        unm = ev[(ev["kind"] == "unmask") & (ev["sample"] == sample)]
        counts = unm.groupby("position")["token_id"].nunique()
        rewritten = set(counts[counts > 1].index.tolist())
    return final[start:end], [p in rewritten for p in range(start, end)]


def text_spans(trace, ids: list[int], marked: list[bool], text: str) -> list[tuple[int, int, bool]]:
    """``text`` (= ``trace.decode(ids)``) cut into ``(start, end, marked)`` character spans.

    A cut between tokens i-1 and i lies at ``len(decode(ids[:i]))``, where that prefix is a prefix
    of ``text``; where it is not (a character split across tokens, spacing the tokenizer fixes
    up), the cut moves outwards from the marked span to the nearest clean one, so a mark may cover
    a little more than its tokens but never cuts a character."""
    cuts = [(i, marked[i]) for i in range(1, len(ids)) if marked[i] != marked[i - 1]]
    offsets, spans, a = [], [], 0
    for i, starts_mark in cuts:
        step = -1 if starts_mark else 1    # widen the marked span, never the plain one
        while 0 < i < len(ids):
            prefix = trace.decode(ids[:i])
            if text.startswith(prefix):
                offsets.append(len(prefix))
                break
            i += step
        else:
            offsets.append(0 if i <= 0 else len(text))
    flags = [marked[0]] + [m for _, m in cuts] if ids else []
    for b, flag in zip(offsets + [len(text)], flags):
        b = max(a, b)
        if b > a:
            spans.append((a, b, flag))
        a = b
    return spans


def _with_end_marks(escaped: str) -> str:
    """End-of-text tokens in escaped answer text shown as a break mark and a line break."""
    from ..viz.grid import END_TOKENS
    for t in END_TOKENS:
        escaped = escaped.replace(html.escape(t), "<span class='remdm-end' title='end of text'> ¶<br></span>")
    return escaped
