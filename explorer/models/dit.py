"""The MDLM diffusion transformer (DiT), readable top to bottom.

A clean-room re-implementation of the network behind ``kuleshov-group/mdlm-owt``
(reference §5.2). The attribute names of the modules *are* the checkpoint keys (§5.3), so
``MDLM.from_pretrained`` maps weights by name with shape checks and nothing else.

Shape of the computation (x: [B, L, D], c: [cond_dim])::

    x = vocab_embed[ids]                         # no positional embedding: rotary only
    c = SiLU(sigma_map(0))                       # time_conditioning=False: a constant (§1.2)
    for block in blocks:                         # adaLN-modulated pre-norm transformer block
        x = x + gate_msa * attn(modulate(norm1(x), shift_msa, scale_msa))
        x = x + gate_mlp * mlp(modulate(norm2(x), shift_mlp, scale_mlp))
    h = modulate(norm_final(x), shift, scale)    # = hidden_states(ids)
    logits = linear(h)                           # = output_head(h); raw logits, no SUBS

Blocks and the output layer run under bf16 autocast on CUDA, as upstream does; LayerNorms are
always computed in fp32. On CPU everything is fp32.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..io import atomic_write, write_text_atomic
from .checkpoint import CONFIG_NAME, WEIGHTS_NAME, check_state_dict, load_state_dict_file, weights_file
from .config import PublishedConfig
from .layers import LayerNorm, apply_rope, bidirectional_attention, rope_cos_sin, rope_inv_freq


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------

@dataclass
class MDLMConfig(PublishedConfig):
    """Hyper-parameters of the DiT; defaults are ``mdlm-owt``'s config.json (§5.1).

    ``cond_dim`` is 128 there (the upstream ``configuration_mdlm.py`` default of 129 is a trap).
    ``mask_token_id`` is ours: ``None`` means the last id (``vocab_size - 1``), as in mdlm-owt.
    """
    vocab_size: int = 50258                         # GPT-2's 50257 tokens and [MASK]
    hidden_dim: int = 768                           # model width D
    cond_dim: int = 128                             # width of c, the sigma embedding (not the .py's 129)
    n_blocks: int = 12                              # DiT blocks
    n_heads: int = 12                               # attention heads (head_dim = hidden_dim / n_heads)
    model_length: int = 1024                        # L: the canvas the model generates
    dropout: float = 0.1                            # training only; sampling runs in eval mode
    time_conditioning: bool = False                 # True is refused: sigma is ignored (§5.2)
    model_type: str = "mdlm"                        # the AutoConfig name upstream registers
    mask_token_id: int | None = None                # ours; None: the last id, as in mdlm-owt

    ARCHITECTURE = "MDLM"
    FAMILY = "MDLM"
    WIDTH, HEADS = "hidden_dim", "n_heads"
    OUTPUT_ROWS = "vocab_size"

    @property
    def mask_id(self) -> int:
        return self.vocab_size - 1 if self.mask_token_id is None else int(self.mask_token_id)

    def validate(self) -> "MDLMConfig":
        if self.time_conditioning:
            raise NotImplementedError(
                "time_conditioning=True is not supported: the explorer's DiT is time-independent "
                "(reference §1.2), as every MDLM/ReMDM checkpoint we know of is.")
        return super().validate()

    def to_dict(self) -> dict:
        """The mdlm-owt config.json layout (§5.1), minus ``auto_map``: we ship no remote code. Like
        upstream's, it has ``return_dict`` and ``torch_dtype``; ``mask_token_id`` (ours) only when set."""
        d = super().to_dict()
        mask_token_id = d.pop("mask_token_id")
        d = dict(sorted({**d, "return_dict": False, "torch_dtype": "float32"}.items()))
        if mask_token_id is not None:
            d["mask_token_id"] = int(mask_token_id)
        return d


# --------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------

def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


class EmbeddingLayer(nn.Module):
    """Token embedding as a raw Parameter (key ``vocab_embed.embedding``); lookup is indexing."""

    def __init__(self, dim: int, vocab_size: int):
        super().__init__()
        self.embedding = nn.Parameter(torch.empty(vocab_size, dim))
        nn.init.kaiming_uniform_(self.embedding, a=math.sqrt(5))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.embedding[ids]


class TimestepEmbedder(nn.Module):
    """Sinusoidal features of sigma (dim 256) -> Linear -> SiLU -> Linear (§5.2)."""

    def __init__(self, hidden_size: int, frequency_embedding_size: int = 256):
        super().__init__()
        self.frequency_embedding_size = frequency_embedding_size
        self.mlp = nn.Sequential(
            nn.Linear(frequency_embedding_size, hidden_size),
            nn.SiLU(),
            nn.Linear(hidden_size, hidden_size),
        )

    @staticmethod
    def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        args = t[:, None].float() * freqs[None]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)

    def forward(self, sigma: torch.Tensor) -> torch.Tensor:
        features = self.timestep_embedding(sigma, self.frequency_embedding_size)
        return self.mlp(features.to(self.mlp[0].weight.dtype))


class Rotary(nn.Module):
    """Rotary position embedding; ``inv_freq`` is a persistent buffer, as in the checkpoint."""

    def __init__(self, head_dim: int, base: float = 10000.0):
        super().__init__()
        # computed on the CPU, then moved to the default device: arange on "meta" is slow (imports sympy)
        inv_freq = self.compute_inv_freq(head_dim, base).to(torch.empty(0).device)
        self.register_buffer("inv_freq", inv_freq, persistent=True)

    @staticmethod
    def compute_inv_freq(head_dim: int, base: float = 10000.0) -> torch.Tensor:
        return rope_inv_freq(head_dim, base, device="cpu")

    def forward(self, seq_len: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin of shape [L, head_dim] (angles duplicated for the two halves), fp32."""
        return rope_cos_sin(torch.arange(seq_len, device=device), self.inv_freq)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Non-interleaved (GPT-NeoX, rotate-half) rotary on x: [B, H, L, hd].

    Like the flash-attn kernel upstream: cos/sin rounded to x's dtype, arithmetic in fp32.
    """
    cos, sin = cos.to(x.dtype).float(), sin.to(x.dtype).float()
    return apply_rope(x.float(), cos, sin).to(x.dtype)


class DDiTBlock(nn.Module):
    """Pre-norm transformer block with adaLN modulation from the conditioning vector c."""

    def __init__(self, dim: int, n_heads: int, cond_dim: int, mlp_ratio: int = 4, dropout: float = 0.1):
        super().__init__()
        self.n_heads = n_heads
        self.dropout = dropout
        self.norm1 = LayerNorm(dim)
        self.attn_qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.attn_out = nn.Linear(dim, dim, bias=False)
        self.norm2 = LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_ratio * dim, bias=True),
            nn.GELU(approximate="tanh"),
            nn.Linear(mlp_ratio * dim, dim, bias=True),
        )
        self.adaLN_modulation = nn.Linear(cond_dim, 6 * dim, bias=True)
        # DiT init: every block starts as the identity.
        nn.init.zeros_(self.adaLN_modulation.weight)
        nn.init.zeros_(self.adaLN_modulation.bias)

    def attention(self, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, L, d = h.shape
        qkv = self.attn_qkv(h).view(b, L, 3, self.n_heads, d // self.n_heads)  # (3, heads, head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)                           # each [B, H, L, hd]
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        return self.attn_out(bidirectional_attention(q, k, v))

    def forward(self, x: torch.Tensor, c: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        (shift_msa, scale_msa, gate_msa,
         shift_mlp, scale_mlp, gate_mlp) = self.adaLN_modulation(c)[:, None].chunk(6, dim=-1)
        attn = self.attention(modulate(self.norm1(x), shift_msa, scale_msa), cos, sin)
        x = x + gate_msa * F.dropout(attn, p=self.dropout, training=self.training)
        mlp = self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))
        x = x + gate_mlp * F.dropout(mlp, p=self.dropout, training=self.training)
        return x


class DDitFinalLayer(nn.Module):
    """adaLN-modulated final norm, then the vocabulary projection (split for the fast path)."""

    def __init__(self, dim: int, out_channels: int, cond_dim: int):
        super().__init__()
        self.norm_final = LayerNorm(dim)
        self.linear = nn.Linear(dim, out_channels)
        self.adaLN_modulation = nn.Linear(cond_dim, 2 * dim, bias=True)
        for p in (self.linear.weight, self.linear.bias,
                  self.adaLN_modulation.weight, self.adaLN_modulation.bias):
            nn.init.zeros_(p)

    def modulated(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c)[:, None].chunk(2, dim=-1)
        return modulate(self.norm_final(x), shift, scale)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.linear(self.modulated(x, c))


class DITBackbone(nn.Module):
    def __init__(self, config: MDLMConfig):
        super().__init__()
        self.config = config.validate()
        self.vocab_embed = EmbeddingLayer(config.hidden_dim, config.vocab_size)
        self.sigma_map = TimestepEmbedder(config.cond_dim)
        self.rotary_emb = Rotary(config.head_dim)
        self.blocks = nn.ModuleList([
            DDiTBlock(config.hidden_dim, config.n_heads, config.cond_dim, dropout=config.dropout)
            for _ in range(config.n_blocks)
        ])
        self.output_layer = DDitFinalLayer(config.hidden_dim, config.vocab_size, config.cond_dim)
        # bf16 autocast for blocks + output layer on CUDA, like upstream; None = plain fp32.
        self.amp_dtype: torch.dtype | None = torch.bfloat16

    def conditioning(self, device: torch.device) -> torch.Tensor:
        """c = SiLU(sigma_map(0)), shape [1, cond_dim]: the same for every input."""
        sigma = torch.zeros(1, device=device)
        return F.silu(self.sigma_map(sigma))

    def _autocast(self, device: torch.device):
        enabled = device.type == "cuda" and self.amp_dtype is not None
        return torch.autocast(device_type=device.type, dtype=self.amp_dtype or torch.bfloat16, enabled=enabled)

    def hidden_states(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.vocab_embed(ids)
        c = self.conditioning(ids.device)
        cos, sin = self.rotary_emb(ids.shape[1], ids.device)
        with self._autocast(ids.device):
            for block in self.blocks:
                x = block(x, c, cos, sin)
            return self.output_layer.modulated(x, c)

    def output_head(self, h: torch.Tensor) -> torch.Tensor:
        with self._autocast(h.device):
            return self.output_layer.linear(h)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.output_head(self.hidden_states(ids))


# --------------------------------------------------------------------------------------------
# The model (checkpoint keys are prefixed "backbone.", as in the HF MDLM wrapper)
# --------------------------------------------------------------------------------------------

class MDLM(nn.Module):
    def __init__(self, config: MDLMConfig):
        super().__init__()
        self.config = config
        self.backbone = DITBackbone(config)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Raw logits [B, L, V] in float32 (no SUBS: the engine applies it, §1.2)."""
        return self.output_head(self.hidden_states(input_ids).flatten(0, 1)).view(*input_ids.shape, -1)

    def hidden_states(self, input_ids: torch.Tensor) -> torch.Tensor:
        """[B, L, D]: the input of ``output_layer.linear`` (after final norm and modulation)."""
        return self.backbone.hidden_states(input_ids)

    def output_head(self, h: torch.Tensor) -> torch.Tensor:
        """[N, D] -> [N, V] float32 logits; ``output_head(hidden_states(z)[b, l]) == forward(z)[b, l]``."""
        return self.backbone.output_head(h).float()

    @property
    def amp_dtype(self) -> torch.dtype | None:
        return self.backbone.amp_dtype

    @amp_dtype.setter
    def amp_dtype(self, value: torch.dtype | None) -> None:
        self.backbone.amp_dtype = value

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ---------------------------------------------------------------------- checkpoints
    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write config.json and model.safetensors (fp32 layout of §5.3), each atomically."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in self.state_dict().items()}
        atomic_write(directory / WEIGHTS_NAME, lambda p: save_file(tensors, str(p), metadata={"format": "pt"}))
        write_text_atomic(directory / CONFIG_NAME, json.dumps(self.config.to_dict(), indent=2, sort_keys=True) + "\n")
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, device: str | torch.device | None = None,
                        dtype: torch.dtype | None = None) -> "MDLM":
        """Load config.json + model.safetensors (or pytorch_model.bin) with a strict key/shape check."""
        directory = Path(directory)
        config_path = directory / CONFIG_NAME
        if not config_path.is_file():
            raise FileNotFoundError(f"{directory} has no {CONFIG_NAME}; is this an MDLM checkpoint directory?")
        config = MDLMConfig.from_json_file(config_path)
        state_dict = load_state_dict_file(weights_file(directory))

        with torch.device("meta"):
            model = cls(config)
        expected = model.state_dict()
        inv_freq_key = "backbone.rotary_emb.inv_freq"
        if inv_freq_key not in state_dict:  # optional in the file: it is a pure function of head_dim
            state_dict[inv_freq_key] = Rotary.compute_inv_freq(config.head_dim)
        check_state_dict(state_dict, {k: tuple(v.shape) for k, v in expected.items()}, source=directory)
        # Fresh, aligned fp32 copies: tensors viewing the file's buffer can sit at offsets that send
        # matmuls down other kernels, so results would differ from the model that was saved (~1e-7).
        state_dict = {k: _fresh_fp32(state_dict.pop(k)) for k in list(state_dict)}  # pop: one copy at a time
        model.load_state_dict(state_dict, strict=True, assign=True)
        model.to(device=device or "cpu", dtype=dtype)
        model.backbone.rotary_emb.inv_freq = model.backbone.rotary_emb.inv_freq.float()
        return model.eval()


def _fresh_fp32(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.float32 if t.is_floating_point() else t.dtype, copy=True)
