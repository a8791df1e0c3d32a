"""The layers the native networks share: normalisations and the rotary position embedding.

Written once here; each model keeps its own *precision rule* around them, which is where the
published networks differ (the MDLM DiT rounds cos/sin to the activations' dtype and rotates in
fp32, LLaDA rotates in fp32, Dream in the hidden dtype).

* :class:`LayerNorm` -- weight-only LayerNorm computed in fp32 (the DiT, reference §5.2);
* :class:`RMSNorm` -- normalise in fp32, cast back, then multiply by the weight in the input dtype
  (llada-dream-reference §1.3 item 4 for LLaDA, §2.3 item 6 for Dream: the same rule);
* :func:`rope_inv_freq`, :func:`rope_cos_sin`, :func:`apply_rope` -- the rotate-half (GPT-NeoX /
  HF-Llama) rotary embedding, angles in fp32 (§5.2; llada-dream §1.3 item 6, §2.3 item 3).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class LayerNorm(nn.Module):
    """Weight-only LayerNorm (no bias), computed in fp32 whatever the autocast state."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            y = F.layer_norm(x.float(), (x.shape[-1],), eps=self.eps) * self.weight.float()
        return y.to(x.dtype) if x.dtype != torch.float32 else y


class RMSNorm(nn.Module):
    """y = weight * (x / sqrt(mean(x^2) + eps)) (llada-dream reference §1.3 item 4, §2.3 item 6).

    The normalisation runs in fp32 with autocast off; the result is cast back to the input
    dtype *before* the multiplication by ``weight`` (so in bf16 the product is bf16 * bf16).
    """

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = float(eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            xf = x.float()
            xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(x.dtype)


def rope_inv_freq(head_dim: int, theta: float = 10000.0, device: torch.device | str = "cpu") -> torch.Tensor:
    """inv_freq = 1 / theta^(arange(0, head_dim, 2) / head_dim), fp32, ``[head_dim / 2]``."""
    return 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim))


def rope_cos_sin(positions: torch.Tensor, inv_freq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of the rotate-half rotary embedding, fp32, shape ``positions.shape + (head_dim,)``:
    angles = pos * inv_freq, and the table is cat(angles, angles) (the two halves share them)."""
    angles = positions.to(torch.float32)[..., None] * inv_freq.to(device=positions.device, dtype=torch.float32)
    emb = torch.cat([angles, angles], dim=-1)
    return emb.cos(), emb.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(t: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """t * cos + rotate_half(t) * sin, in the dtype of its arguments (the caller chooses it)."""
    return t * cos + rotate_half(t) * sin
