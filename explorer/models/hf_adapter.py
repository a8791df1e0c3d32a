"""Any Hugging Face masked LM (BERT, RoBERTa, DistilBERT, ModernBERT, ...) as a denoiser.

A BERT-style MLM is a one-step denoiser: given a partly masked sequence it returns logits over
the vocabulary at every position, which is all the samplers need (``logits`` only; no
body/head split). The mask id and special tokens come from the model's tokenizer.

The sequence is framed like a BERT input, ``[CLS] x_1 ... x_{L-2} [SEP]``; those two positions
are ``fixed_tokens`` so the engine never masks or changes them. Other special tokens
(``[PAD]``, ``[UNK]``, ``[CLS]``, ``[SEP]``, ...) get a -1e6 logit so they are never sampled in
the body of the text; the mask logit is left to the engine's SUBS step (reference §1.2).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .checkpoint import weights_sha256

DEFAULT_MAX_SEQ_LEN = 512
NEG_INF = -1e6  # the reference's "neg_infinity" (§1.2): exp() underflows to exactly 0 in fp32

# Models whose position ids start after the padding index (max_position_embeddings counts it).
_POSITION_OFFSET = {"roberta": 2, "xlm-roberta": 2, "camembert": 2, "longformer": 2, "data2vec-text": 2,
                    "xmod": 2, "roberta-prelayernorm": 2}


def _dtype_kwarg() -> str:
    """``dtype`` since transformers 4.56; ``torch_dtype`` before."""
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"


def usable_positions(config: Any) -> int | None:
    n = getattr(config, "max_position_embeddings", None)
    if n is None:
        return None
    return int(n) - _POSITION_OFFSET.get(getattr(config, "model_type", ""), 0)


def damaged_file(directory: str | os.PathLike) -> tuple[Path, str] | None:
    """The first JSON or safetensors file in ``directory`` that does not parse, with the reason
    (safetensors: only the header is read); None when all do. Used to name the file when
    transformers' own error does not."""
    import json

    from safetensors import safe_open

    for path in sorted(Path(directory).glob("*.json")):
        if not path.is_file():   # a folder named x.json (a trace's sidecar folder) is no model file
            continue
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            return path, f"not valid JSON: {e}"
    for path in sorted(Path(directory).glob("*.safetensors")):
        if not path.is_file():
            continue
        try:
            with safe_open(str(path), framework="pt") as f:
                names = list(f.keys())
                if names:
                    f.get_slice(names[-1])[...]  # the last tensor ends at the end of the file
        except Exception as e:  # SafetensorError and friends
            return path, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return None


class HFMaskedLMDenoiser:
    """Wrap ``model`` (an ``AutoModelForMaskedLM``) and its ``tokenizer`` as a denoiser.

    ``seq_len`` defaults to the model's usable positions capped at 512 (ModernBERT's 8192 would
    make every step very slow); pass ``seq_len`` to choose another length within the limit.
    """

    def __init__(self, model: Any, tokenizer: Any, seq_len: int | None = None, name: str | None = None,
                 sha256: str | None = None, suppress_special_tokens: bool = True):
        if tokenizer is None:
            raise ValueError("an HF masked LM needs its tokenizer: the mask id and special tokens come from it.")
        mask_id = getattr(tokenizer, "mask_token_id", None)
        if mask_id is None:
            raise ValueError(f"tokenizer {type(tokenizer).__name__} has no mask token; a masked LM needs one "
                             "(set tokenizer.mask_token, e.g. to '[MASK]' or '<mask>').")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.mask_id = int(mask_id)
        self.vocab_size = int(model.get_output_embeddings().weight.shape[0]
                              if model.get_output_embeddings() is not None else model.config.vocab_size)
        if not 0 <= self.mask_id < self.vocab_size:
            raise ValueError(f"mask id {self.mask_id} is outside the model's {self.vocab_size} output classes.")

        limit = usable_positions(model.config)
        if seq_len is None:
            seq_len = min(limit or DEFAULT_MAX_SEQ_LEN, DEFAULT_MAX_SEQ_LEN)
        elif limit is not None and seq_len > limit:
            raise ValueError(f"seq_len={seq_len} exceeds the {limit} positions this model supports.")
        if seq_len < 3:
            raise ValueError("seq_len must leave room for [CLS], [SEP] and at least one token.")
        self.seq_len = int(seq_len)

        cls_id = _first_id(tokenizer, "cls_token_id", "bos_token_id")
        sep_id = _first_id(tokenizer, "sep_token_id", "eos_token_id")
        self.fixed_tokens: dict[int, int] = {}
        if cls_id is not None:
            self.fixed_tokens[0] = cls_id
        if sep_id is not None:
            self.fixed_tokens[self.seq_len - 1] = sep_id

        special = {int(i) for i in getattr(tokenizer, "all_special_ids", []) if i is not None}
        self.suppressed_ids = sorted(i for i in special if i != self.mask_id and 0 <= i < self.vocab_size)
        self._suppress = suppress_special_tokens and bool(self.suppressed_ids)
        self._bias = None

        if sha256 is None:
            sha256 = weights_sha256(model)
        self.identity = {"name": name or getattr(model.config, "_name_or_path", None) or type(model).__name__,
                         "sha256": sha256}

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str | torch.device | None = None,
                        dtype: torch.dtype | None = None, trust_remote_code: bool = False,
                        seq_len: int | None = None, name: str | None = None) -> "HFMaskedLMDenoiser":
        """Load a local directory offline (``local_files_only``); never prompts for remote code."""
        from transformers import AutoModelForMaskedLM, AutoTokenizer

        kw = dict(trust_remote_code=bool(trust_remote_code), local_files_only=True)
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(path), **kw)
            model = AutoModelForMaskedLM.from_pretrained(str(path), **{_dtype_kwarg(): dtype or torch.float32}, **kw)
        except Exception as e:
            damaged = damaged_file(path)
            if damaged is None:
                raise
            raise ValueError(f"{damaged[0]} is damaged ({damaged[1]}). Replace it with a complete copy "
                             "(download the model again).") from e
        if device is not None:
            model.to(device)
        try:
            sha256 = weights_sha256(path)
        except FileNotFoundError:   # weights under a name we do not look for: digest the tensors
            sha256 = None
        return cls(model, tokenizer, seq_len=seq_len, name=name or Path(path).name, sha256=sha256)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device) -> "HFMaskedLMDenoiser":
        self.model.to(device)
        self._bias = None
        return self

    def _logit_bias(self, device) -> torch.Tensor:
        if self._bias is None or self._bias.device != torch.device(device):
            bias = torch.zeros(self.vocab_size, device=device)
            bias[self.suppressed_ids] = NEG_INF
            self._bias = bias
        return self._bias

    @torch.no_grad()
    def logits(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() != 2:
            raise ValueError(f"expected token ids of shape [B, L], got {tuple(z.shape)}")
        self.model.eval()
        z = z.to(self.device, dtype=torch.long)
        out = self.model(input_ids=z, attention_mask=torch.ones_like(z)).logits.float()
        out = out[..., : self.vocab_size]
        if self._suppress:
            out = out + self._logit_bias(out.device)
        return out

    def __repr__(self) -> str:
        return (f"HFMaskedLMDenoiser(name={self.identity['name']!r}, L={self.seq_len}, V={self.vocab_size}, "
                f"mask_id={self.mask_id}, fixed={self.fixed_tokens}, device={self.device})")


def _first_id(tokenizer: Any, *attrs: str) -> int | None:
    for a in attrs:
        v = getattr(tokenizer, a, None)
        if v is not None:
            return int(v)
    return None
