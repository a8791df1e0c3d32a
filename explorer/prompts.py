"""Prompts for variable-length models (LLaDA, Dream): text, token ids or chat, one or several.

The canvas of a model without a fixed length (``seq_len is None``) is the prompt followed by
``gen_length`` masks (reference §4.1 "Canvas", §4.2 "Setup").  Several prompts of different
lengths share one canvas width: the shorter ones are *left*-padded with ``model.pad_id``, as
LLaDA's ``generate.py`` batches (reference §3.1) and Dream's ``diffusion_generate`` accepts
(§4.2), so the generated part starts at the same position ``gen_start`` in every row.  The
padding positions are fixed (never masked, never decoded) and the model is told where they are
(``logits(z, pad=...)``) so it can apply its own rule: LLaDA masks padded keys and keeps the
positions 0..L-1 (§1.3 item 2), Dream masks them and restarts the position ids at the first real
token (§2.3 item 10), so a padded Dream row computes exactly what the unpadded row computes.

How a prompt becomes ids (as each family's first-party scripts do, §3.1, §3.2, §4.4):

* text: ``tokenizer(text)`` with the tokenizer's default special tokens (the Table-3 pipeline
  tokenises its Countdown/TruthfulQA contexts this way, §4.4);
* chat messages ``[{"role": "user", "content": ...}, ...]``: rendered with the tokenizer's chat
  template and the generation prompt, then tokenised *without* adding special tokens (the
  template already holds BOS; LLaDA ``generate.py``, Dream's README);
* token ids: used as given.
"""
from __future__ import annotations

import numbers
import operator
from dataclasses import dataclass

import torch

__all__ = ["Canvas", "PromptError", "encode_prompt", "prompt_list", "build_canvas", "is_chat", "stop_ids"]


class PromptError(ValueError):
    """A prompt this model cannot take, with ``problem`` saying which, so a caller (the command line)
    can word its own fix: ``"unknown_words"`` (not in the vocabulary), ``"too_long"`` (``over`` tokens
    more than the canvas holds) or ``"over_max_length"`` (the prompt plus ``gen_length`` is ``over``
    tokens past the model's maximum)."""

    def __init__(self, message: str, problem: str, over: int | None = None):
        super().__init__(message)
        self.problem, self.over = problem, over


def is_chat(prompt) -> bool:
    """True for a list of ``{"role": ..., "content": ...}`` messages."""
    return isinstance(prompt, (list, tuple)) and len(prompt) > 0 and all(isinstance(m, dict) for m in prompt)


def _is_ids(prompt) -> bool:
    if isinstance(prompt, torch.Tensor):
        return prompt.dim() == 1
    return isinstance(prompt, (list, tuple)) and len(prompt) > 0 and \
        all(isinstance(t, numbers.Integral) and not isinstance(t, bool) for t in prompt)


def prompt_list(prompt) -> list:
    """One prompt -> ``[prompt]``; a list of prompts (texts, id lists, chats) -> that list."""
    if prompt is None:
        raise ValueError("a variable-length model needs a prompt (text, token ids or chat messages); "
                         "pass prompt=... (an empty start is not a canvas this model was trained on).")
    if isinstance(prompt, str) or _is_ids(prompt) or is_chat(prompt):
        return [prompt]
    if isinstance(prompt, torch.Tensor) and prompt.dim() == 2:
        return [row for row in prompt]
    if isinstance(prompt, (list, tuple)) and len(prompt) > 0:
        for p in prompt:
            if not (isinstance(p, str) or _is_ids(p) or is_chat(p)):
                raise ValueError(f"prompt {p!r} is not text, a list of token ids or a list of chat messages "
                                 "({'role': ..., 'content': ...}).")
        return list(prompt)
    raise ValueError(f"prompt {prompt!r} is not text, token ids, chat messages or a list of those.")


def _tokenizer(model, what: str):
    tk = getattr(model, "tokenizer", None)
    if tk is None:
        raise ValueError(f"{what} needs a model with a tokenizer, and this model has none (its folder has no "
                         "tokenizer files); pass token ids instead, e.g. prompt=[126080, 3838, ...].")
    return tk


def unknown_token(tk) -> tuple[str, int] | None:
    """(text, id) of the token a tokenizer writes for what its vocabulary lacks, or None (byte-level
    tokenizers have none).  A word-level tokenizer may have one in its model only (``orders``)."""
    name = getattr(tk, "unk_token", None)
    if name is None:
        name = getattr(getattr(getattr(tk, "backend_tokenizer", None), "model", None), "unk_token", None)
    if name is None:
        return None
    tid = tk.convert_tokens_to_ids(name)
    return (name, int(tid)) if isinstance(tid, int) else None


def text_ids(tk, text: str, **kwargs) -> list[int]:
    """``tk(text, **kwargs)["input_ids"]``, refusing words the vocabulary does not know: they would
    all read as its unknown token, and the prompt would silently say something else."""
    ids = list(tk(text, **kwargs)["input_ids"])
    unk = unknown_token(tk)
    if unk is None or unk[1] not in ids or unk[0] in text:
        return ids
    try:
        spans = tk(text, return_offsets_mapping=True, **kwargs)["offset_mapping"]
        words = [text[a:b] for t, (a, b) in zip(ids, spans) if t == unk[1]]
    except (TypeError, ValueError, NotImplementedError, KeyError):   # a tokenizer without offsets
        words = []
    said = ", ".join(repr(w) for w in dict.fromkeys(words)) or "some words"
    raise PromptError(f"the prompt has words this model's vocabulary does not know ({said}); they would all "
                      f"read as {unk[0]}. Use words of its vocabulary (model.tokenizer.get_vocab()), or pass "
                      "token ids.", "unknown_words")


def encode_prompt(model, prompt) -> list[int]:
    """Token ids of one prompt (text, ids or chat messages), validated against the model."""
    if isinstance(prompt, str):
        ids = text_ids(_tokenizer(model, "a text prompt"), prompt)
    elif is_chat(prompt):
        tk = _tokenizer(model, "a chat prompt")
        for m in prompt:
            if not {"role", "content"} <= set(m):
                raise ValueError(f"chat message {m!r} needs the keys 'role' and 'content'.")
        if not getattr(tk, "chat_template", None):
            raise ValueError("chat messages need a tokenizer with a chat template, and this tokenizer has none "
                             "(a Base model?); pass the prompt as plain text or token ids, or load an Instruct "
                             "model whose tokenizer_config.json has a chat_template.")
        text = tk.apply_chat_template(list(prompt), add_generation_prompt=True, tokenize=False)
        ids = text_ids(tk, text, add_special_tokens=False)
    else:
        ids = torch.as_tensor(prompt).long().flatten().tolist()
    ids = [int(t) for t in ids]
    if not ids:
        raise ValueError("the prompt is empty; give at least one token (a BOS is enough).")
    for i, t in enumerate(ids):
        if not 0 <= t < model.vocab_size or t == model.mask_id:
            raise ValueError(f"prompt token id {t} at index {i} is not a valid non-mask token "
                             f"(vocabulary size {model.vocab_size}, mask id {model.mask_id}).")
    return ids


@dataclass
class Canvas:
    """Per-prompt starting canvas: ``[P, L]`` with ``L = gen_start + gen_length``."""
    tokens: torch.Tensor        # LongTensor[P, L]: pad ... prompt, then mask ids
    fixed: torch.Tensor         # BoolTensor[P, L]: padding and prompt positions
    pad: torch.Tensor           # BoolTensor[P, L]: left-padding positions
    gen_start: int              # first generated position (the same in every row)
    gen_length: int
    prompt_lengths: list[int]   # unpadded prompt lengths

    def meta(self, stop_ids: list[int]) -> dict:
        """What a trace records so that ``Trace.read`` can cut and rebuild the canvas."""
        return {"gen_start": self.gen_start, "gen_length": self.gen_length,
                "prompt_lengths": list(self.prompt_lengths),
                "pad_lengths": [self.gen_start - n for n in self.prompt_lengths],
                "stop_ids": list(stop_ids)}


def stop_ids(model) -> list[int]:
    """End-of-sequence and end-of-turn ids where the generated text stops (§3.1, §4.4)."""
    return sorted({int(t) for t in (getattr(model, "eos_id", None), getattr(model, "eot_id", None)) if t is not None})


def build_canvas(model, prompt, gen_length) -> Canvas:
    """The canvas of one or several prompts: left-padded prompts followed by ``gen_length`` masks."""
    given = gen_length
    if gen_length is None:
        raise ValueError("this model has no fixed length (seq_len is None): pass gen_length=<number of tokens "
                         "to generate>, e.g. gen_length=32.")
    try:        # numpy's integers too (a sweep table gives them), as steps and num_samples take them
        gen_length = None if isinstance(gen_length, bool) else operator.index(gen_length)
    except TypeError:
        gen_length = None
    if gen_length is None or gen_length < 1:
        raise ValueError(f"gen_length must be a positive integer, got {given!r}.")
    prompts = [encode_prompt(model, p) for p in prompt_list(prompt)]
    start = max(len(p) for p in prompts)
    L = start + gen_length
    max_length = getattr(model, "max_length", None)
    if isinstance(max_length, int) and L > max_length:
        raise PromptError(f"the prompt ({start} tokens) plus gen_length={gen_length} is {L} tokens, over this "
                          f"model's maximum of {max_length}; shorten the prompt or use gen_length <= "
                          f"{max(0, max_length - start)}.", "over_max_length", over=L - max_length)
    pad_id = getattr(model, "pad_id", None)
    if pad_id is None and any(len(p) < start for p in prompts):
        raise ValueError("prompts of different lengths are left-padded, but this model has no pad_id; "
                         "give prompts of equal length or set model.pad_id.")
    P = len(prompts)
    tokens = torch.full((P, L), model.mask_id, dtype=torch.long)
    pad = torch.zeros(P, L, dtype=torch.bool)
    for i, p in enumerate(prompts):
        n_pad = start - len(p)
        tokens[i, :n_pad] = pad_id if n_pad else 0
        pad[i, :n_pad] = True
        tokens[i, n_pad:start] = torch.tensor(p, dtype=torch.long)
    fixed = torch.zeros(P, L, dtype=torch.bool)
    fixed[:, :start] = True
    return Canvas(tokens=tokens, fixed=fixed, pad=pad, gen_start=start, gen_length=gen_length,
                  prompt_lengths=[len(p) for p in prompts])
