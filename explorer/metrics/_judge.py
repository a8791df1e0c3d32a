"""Load and resolve a "judge" causal LM for the text metrics (Gen PPL, MAUVE features).

Loading lives here, below the metrics; *training* the shipped judge lives in :mod:`explorer.judge`,
which imports this module (and the metrics, for its ``eval`` command), never the other way round.

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
    """A causal LM with its tokenizer; ``model, tokenizer = judge`` unpacks. ``name`` is what it
    was loaded from (a directory for a local judge, else a hub name); ``path`` is the same."""

    model: Any
    tokenizer: Any
    name: str = ""

    def __iter__(self):
        return iter((self.model, self.tokenizer))

    @property
    def path(self) -> str:
        return self.name

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


def load_judge(name_or_path: str | Path = "stories-judge", device: str | torch.device | None = None) -> Judge:
    """Load a judge by shipped name (``data/models/<name>``) or by directory, offline, in float32."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(name_or_path)
    if not path.is_dir() and (DEFAULT_JUDGE.parent / str(name_or_path)).is_dir():
        path = DEFAULT_JUDGE.parent / str(name_or_path)
    if not path.is_dir():
        raise FileNotFoundError(
            f"no judge at {str(name_or_path)!r}: expected a shipped name (e.g. 'stories-judge') or a directory "
            "saved by `explorer judge train --export DIR`"
        )
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model.to(device or "cpu").eval()
    return Judge(model=model, tokenizer=tokenizer, name=str(path))


def _is_local(name: str) -> bool:
    return Path(name).is_dir() or (DEFAULT_JUDGE.parent / name).is_dir()


def _local_dir(name: str) -> Path:
    return Path(name) if Path(name).is_dir() else DEFAULT_JUDGE.parent / name


class NotAJudge(FileNotFoundError):
    """Where a judge was named there is a model, but not a causal LM (a diffusion model, say).
    A FileNotFoundError -- no judge is there -- so a caller that names a missing judge names this one
    the same way; the text is ``problem; fix``."""


#: what to pass instead of something that is not a judge
_A_JUDGE = "pass stories-judge, or a folder written by `explorer judge train --export DIR`."


def check_causal_lm(name: str, config_file: str | Path) -> None:
    """Raise :class:`NotAJudge` unless ``config_file`` (a judge's config.json) describes a causal LM
    that ``AutoModelForCausalLM`` loads: read before any weights, so a wrong folder fails in a moment
    instead of after sampling with transformers' 'upgrade transformers' advice."""
    import json

    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    config_file = Path(config_file)
    if not config_file.is_file():
        raise NotAJudge(f"{name} has no config.json, so it holds no judge (a causal LM); {_A_JUDGE}")
    try:
        config = json.loads(config_file.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        raise NotAJudge(f"{config_file} is not readable JSON, so {name} holds no usable judge; {_A_JUDGE}") from None
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return
    if not model_type:
        raise NotAJudge(f"{config_file} names no model_type, so {name} is not a judge (a causal LM); {_A_JUDGE}")
    kind = "a diffusion model" if str(model_type).lower() in ("mdlm", "llada", "dream") else "a model"
    raise NotAJudge(f"{name} is {kind} (model_type {model_type!r}), not a judge: a judge is a causal LM, which "
                    f"scores text left to right; {_A_JUDGE}")


def check_judge(judge: Any = None, allow_download: bool = False) -> None:
    """Before any work: a judge named by ``judge`` (``None``: the shipped one) can be loaded -- a
    local directory, a shipped name, or a hub name whose files are in the local HF cache; with
    ``allow_download`` a hub name not in the cache is fetched into it now. Its config.json must
    describe a causal LM (:func:`check_causal_lm`; no weights are read). A judge that is an object
    (a pair, a :class:`Judge`) passes. Raises ``FileNotFoundError`` saying what to pass instead."""
    if judge is not None and not isinstance(judge, (str, Path)):
        return
    name = "stories-judge" if judge is None else str(judge)
    if not name.strip():
        raise NotAJudge(f"the judge's name is empty; {_A_JUDGE}")
    if _is_local(name):
        check_causal_lm(name, _local_dir(name) / "config.json")
        return
    if judge is None:
        raise FileNotFoundError(f"the shipped judge is missing at {DEFAULT_JUDGE}; pass another judge "
                                "(a local causal LM folder, or a hub name in the local Hugging Face cache).")
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(name, "config.json")
    if isinstance(cached, str):
        if Path(cached).is_file():      # the cache's own copy; transformers says if it is gone
            check_causal_lm(name, cached)
        return
    if not allow_download:
        raise FileNotFoundError(f"judge {name!r} is not a folder, a shipped judge (stories-judge) or a hub name "
                                "in the local Hugging Face cache; pass one of those, or allow the download "
                                "(--allow-download).")
    from huggingface_hub import hf_hub_download

    check_causal_lm(name, hf_hub_download(name, "config.json"))    # its kind before its weights
    _load(name, allow_download=True)    # fetched into the HF cache, where later loads find it offline


def _load(judge: Any, allow_download: bool = False) -> tuple[Any, Any, str]:
    """Shipped names and local directories go through :func:`load_judge` (offline); anything else
    is a hub name, loaded from the local HF cache (fetched first only when ``allow_download``)."""
    name = "stories-judge" if judge is None else str(judge)
    if _is_local(name):
        j = load_judge(name)
        return j.model, j.tokenizer, j.path
    if not allow_download:
        check_judge(judge)              # a judge that is not here is named, not an HF stack trace
    from transformers import AutoModelForCausalLM, AutoTokenizer
    offline = not allow_download
    tok = AutoTokenizer.from_pretrained(name, local_files_only=offline)
    model = AutoModelForCausalLM.from_pretrained(name, dtype=torch.float32, local_files_only=offline)
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
