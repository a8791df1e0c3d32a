"""The layers the native networks share: normalisations, the rotary position embedding and the
bidirectional attention around them.

Written once here; each model keeps its own *precision rule* around them, which is where the
published networks differ (the MDLM DiT rounds cos/sin to the activations' dtype and rotates in
fp32, LLaDA rotates in fp32, Dream in the hidden dtype).

* :class:`LayerNorm` -- weight-only LayerNorm computed in fp32 (the DiT, reference §5.2);
* :class:`RMSNorm` -- normalise in fp32, cast back, then multiply by the weight in the input dtype
  (llada-dream-reference §1.3 item 4 for LLaDA, §2.3 item 6 for Dream: the same rule);
* :func:`rope_inv_freq`, :func:`rope_cos_sin`, :func:`apply_rope` -- the rotate-half (GPT-NeoX /
  HF-Llama) rotary embedding, angles in fp32 (§5.2; llada-dream §1.3 item 6, §2.3 item 3);
* :func:`split_heads`, :func:`bidirectional_attention` -- the head plumbing every block shares:
  [B, L, H * hd] projections to SDPA's [B, H, L, hd] and back, with no causal mask (§5.2;
  llada-dream §1.3 item 5, §2.3 items 4 and 7) and grouped kv heads repeated for Dream (§2.3 item 4).
  Each model projects and rotates q and k itself (its own names and precision), then calls these.
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


def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """A projection [B, L, n_heads * hd] as SDPA takes it: [B, n_heads, L, hd] (a view)."""
    b, L, _ = x.shape
    return x.view(b, L, n_heads, -1).transpose(1, 2)


def repeat_kv(x: torch.Tensor, groups: int) -> torch.Tensor:
    """[B, Hkv, L, hd] -> [B, Hkv * groups, L, hd]; kv head j becomes heads j*groups .. j*groups+groups-1."""
    b, h, L, hd = x.shape
    return x[:, :, None].expand(b, h, groups, L, hd).reshape(b, h * groups, L, hd)


def bidirectional_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                            mask: torch.Tensor | None = None) -> torch.Tensor:
    """SDPA with no causal mask: q [B, H, L, hd], k and v [B, Hkv, L, hd] with H a multiple of Hkv
    (each kv head serves H / Hkv consecutive query heads), ``mask`` SDPA's ``attn_mask`` (additive
    or bool) or None. Returns the heads merged back: [B, L, H * hd], ready for the output projection."""
    groups = q.shape[1] // k.shape[1]
    if groups > 1:
        k, v = repeat_kv(k, groups), repeat_kv(v, groups)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=0.0, is_causal=False)
    b, h, L, hd = out.shape
    return out.transpose(1, 2).reshape(b, L, h * hd)
