"""Resolve a "judge" causal LM for the text metrics (Gen PPL, MAUVE features).

A judge is any Hugging Face causal LM. Users pass one of
* ``None`` -- the shipped small judge in ``data/models/stories-judge``;
* a name or local path (``"gpt2-large"`` for the paper's judge) -- loaded with
  ``AutoModelForCausalLM`` / ``AutoTokenizer``; nothing is downloaded unless the files are
  already in the local HF cache or the caller allows it (``HF_HUB_OFFLINE`` is respected);
* a ``(model, tokenizer)`` pair already in memory;
* any object with ``.model`` and ``.tokenizer`` attributes.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

DEFAULT_JUDGE = Path(__file__).resolve().parents[2] / "data" / "models" / "stories-judge"

_LOADED: dict[tuple[str, str], tuple[Any, Any]] = {}


@dataclass
class Judge:
    model: Any
    tokenizer: Any
    name: str

    @property
    def device(self) -> torch.device:
        for p in self.model.parameters():
            return p.device
        return torch.device("cpu")

    @property
    def context(self) -> int:
        """Longest sequence the judge accepts (its position-embedding size)."""
        cfg = getattr(self.model, "config", None)
        for key in ("n_positions", "max_position_embeddings", "n_ctx"):
            value = getattr(cfg, key, None)
            if isinstance(value, int) and value > 0:
                return value
        value = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(value, int) and 0 < value < 10**7:
            return value
        return 1024

    @property
    def eos_id(self) -> int:
        eos = self.tokenizer.eos_token_id
        if eos is None:
            raise ValueError(f"judge {self.name!r} has no eos token; Gen PPL's eos rule needs one.")
        return int(eos)


def _load(judge: Any) -> tuple[Any, Any, str]:
    """Shipped names and local directories go through :func:`explorer.judge.load_judge`
    (offline); anything else is a hub name, loaded from the local HF cache when present."""
    from explorer.judge import load_judge

    name = "stories-judge" if judge is None else str(judge)
    local = Path(name).is_dir() or (DEFAULT_JUDGE.parent / name).is_dir()
    if local:
        j = load_judge(name)
        return j.model, j.tokenizer, j.path
    if judge is None:
        raise FileNotFoundError(
            f"The shipped judge is missing at {DEFAULT_JUDGE}. Pass judge='gpt2-large' "
            "(or any local causal LM directory), or a (model, tokenizer) pair.")
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(name)
    model = AutoModelForCausalLM.from_pretrained(name, dtype=torch.float32)
    return model, tok, name


def resolve_judge(judge: Any = None, device: Any = None) -> Judge:
    """Return a :class:`Judge` in eval mode on ``device`` (the model's own device when None)."""
    if isinstance(judge, Judge):
        out = judge
    elif isinstance(judge, (tuple, list)) and len(judge) == 2:
        out = Judge(judge[0], judge[1], getattr(getattr(judge[0], "config", None), "_name_or_path", "") or type(judge[0]).__name__)
    elif judge is not None and hasattr(judge, "model") and hasattr(judge, "tokenizer"):
        out = Judge(judge.model, judge.tokenizer, getattr(judge, "path", None) or type(judge).__name__)
    else:
        key = (str(judge), str(device))
        if key not in _LOADED:
            _LOADED[key] = _load(judge)
        model, tok, name = _LOADED[key]
        out = Judge(model, tok, name)
    if device is not None:
        out.model.to(torch.device(device))
    out.model.eval()
    return out
