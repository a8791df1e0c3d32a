"""Wrap a native ``MDLM`` as a denoiser (the protocol of ``explorer.protocol``)."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch

from .dit import MDLM


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_tensors(state_dict: dict[str, torch.Tensor]) -> str:
    """A digest of named tensors (sorted by name), for models that were never saved to a file."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().to("cpu").contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


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
        sha = sha256_file(weights_path) if weights_path is not None else sha256_tensors(model.state_dict())
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
