"""The native networks behind the denoiser protocol (``explorer.protocol``, docs/CONTRACTS.md).

* :class:`MDLMDenoiser` -- the MDLM DiT: a fixed canvas (``seq_len``), float32 logits, and the
  ``body`` / ``head`` split for the fast path;
* :class:`DiffusionLMDenoiser` -- a LLaDA or Dream network behind the variable-length protocol
  (``seq_len=None``, ``max_length``, ``logits(z, pad)``, ``body(z, pad)``, ``head(h)``).

Both name their weights by :func:`~explorer.models.checkpoint.weights_sha256` (of the weights file
when there is one).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from .checkpoint import weights_sha256
from .dit import MDLM


class MDLMDenoiser:
    """A native MDLM DiT behind the denoiser protocol, with the body/head split for the fast path.

    ``logits``/``body``/``head`` run in eval mode without gradients and return float32.
    """

    def __init__(self, model: MDLM, tokenizer: Any = None, name: str | None = None,
                 weights_path: str | os.PathLike | None = None, mask_id: int | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.mask_id = int(model.config.mask_id if mask_id is None else mask_id)
        self.vocab_size = int(model.config.vocab_size)
        self.seq_len = int(model.config.model_length)
        sha = weights_sha256(weights_path if weights_path is not None else model)
        self.identity = {"name": name or (Path(weights_path).parent.name if weights_path else "mdlm"),
                         "sha256": sha}

    @property
    def device(self) -> torch.device:
        return self.model.backbone.vocab_embed.embedding.device

    @property
    def config(self):
        return self.model.config

    def to(self, device) -> "MDLMDenoiser":
        self.model.to(device)
        return self

    def _check(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() != 2:
            raise ValueError(f"expected token ids of shape [B, L], got {tuple(z.shape)}")
        return z.to(self.device, dtype=torch.long)

    @torch.no_grad()
    def logits(self, z: torch.Tensor) -> torch.Tensor:
        self.model.eval()
        return self.model(self._check(z)).float()

    @torch.no_grad()
    def body(self, z: torch.Tensor) -> torch.Tensor:
        self.model.eval()
        return self.model.hidden_states(self._check(z))

    @torch.no_grad()
    def head(self, h: torch.Tensor) -> torch.Tensor:
        return self.model.output_head(h).float()

    def __repr__(self) -> str:
        c = self.model.config
        return (f"MDLMDenoiser(name={self.identity['name']!r}, L={self.seq_len}, V={self.vocab_size}, "
                f"mask_id={self.mask_id}, blocks={c.n_blocks}, dim={c.hidden_dim}, device={self.device})")


class DiffusionLMDenoiser:
    """A LLaDA or Dream network behind the variable-length denoiser protocol.

    ``seq_len`` is None: the canvas is whatever the engine builds (prompt + ``gen_length`` masks),
    up to ``max_length``. ``logits(z, pad)[:, i]`` is the distribution of token i for both
    families (Dream's AR shift is inside the network). ``pad`` is None or a BoolTensor[B, L],
    True at left padding. Logits come out in the model dtype (bf16 on CUDA); the engine upcasts
    only the rows it uses. Everything runs in eval mode without gradients.
    """

    seq_len = None

    def __init__(self, model: nn.Module, *, family: str, max_length: int, mask_id: int, eos_id: int | None,
                 pad_id: int | None, eot_id: int | None, tokenizer: Any = None, name: str | None = None,
                 directory: str | os.PathLike | None = None, identity: dict | None = None):
        self.model = model.eval()
        self.family = family
        self.max_length = int(max_length)
        self.mask_id = int(mask_id)
        self.eos_id = None if eos_id is None else int(eos_id)
        self.pad_id = None if pad_id is None else int(pad_id)
        self.eot_id = None if eot_id is None else int(eot_id)
        self.vocab_size = int(model.vocab_size)
        self.tokenizer = tokenizer
        self.name = name or (Path(directory).name if directory is not None else family)
        self.directory = None if directory is None else Path(directory)
        self._identity: dict | None = identity   # given, or computed on first use

    @property
    def identity(self) -> dict:
        """name and sha256 of the weights (of the shards' digests, in name order), computed once,
        on first use: hashing 16 GB of shards takes a while, so loading does not pay for it."""
        if self._identity is None:
            sha = weights_sha256(self.directory if self.directory is not None else self.model)
            self._identity = {"name": self.name, "sha256": sha, "family": self.family}
        return self._identity

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def config(self):
        return self.model.config

    def to(self, device=None, dtype=None) -> "DiffusionLMDenoiser":
        self.model.to(device=device, dtype=dtype)
        return self

    def _inputs(self, z: torch.Tensor, pad: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        if z.dim() != 2:
            raise ValueError(f"expected token ids of shape [B, L], got {tuple(z.shape)}")
        if z.shape[1] > self.max_length:
            raise ValueError(f"a canvas of {z.shape[1]} tokens is longer than {self.family}'s maximum of "
                             f"{self.max_length}; shorten the prompt or gen_length.")
        z = z.to(self.device, dtype=torch.long)
        if pad is not None:
            if pad.shape != z.shape:
                raise ValueError(f"pad has shape {tuple(pad.shape)}; it must match the tokens' {tuple(z.shape)}.")
            pad = pad.to(self.device, dtype=torch.bool)
            if not pad.any():
                pad = None
        return z, pad

    @torch.no_grad()
    def logits(self, z: torch.Tensor, pad: torch.Tensor | None = None) -> torch.Tensor:
        z, pad = self._inputs(z, pad)
        return self.model.head(self.model.body(z, pad))

    @torch.no_grad()
    def body(self, z: torch.Tensor, pad: torch.Tensor | None = None) -> torch.Tensor:
        z, pad = self._inputs(z, pad)
        return self.model.body(z, pad)

    @torch.no_grad()
    def head(self, h: torch.Tensor) -> torch.Tensor:
        return self.model.head(h.to(self.device, self.dtype))

    def __repr__(self) -> str:
        return (f"DiffusionLMDenoiser(family={self.family!r}, name={self.name!r}, V={self.vocab_size}, "
                f"mask_id={self.mask_id}, max_length={self.max_length}, device={self.device}, dtype={self.dtype})")
