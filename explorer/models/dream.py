"""Dream-v0 (7B, Qwen2.5 layout made bidirectional), natively: no remote code.

Module names are the checkpoint keys of the published ``DreamModel`` (reference §2.2). The
forward is reference §2.3::

    h = embed_tokens[ids]
    for layer in layers:                                   # pre-norm Qwen2 decoder layer
        a = input_layernorm(h)
        q, k, v = q_proj(a), k_proj(a), v_proj(a)          # with biases; k, v have 4 heads
        q, k = rope(q), rope(k)                            # cos/sin cast to the hidden dtype
        k, v = repeat_kv(k), repeat_kv(v)                  # kv head j feeds q heads j*r .. j*r+r-1
        h = h + o_proj(SDPA(q, k, v))                      # is_causal=False: bidirectional
        m = post_attention_layernorm(h)
        h = h + down_proj(SiLU(gate_proj(m)) * up_proj(m))
    out = norm(h)
    out = shift(out)                                       # = body(ids): row i is the output at i-1
    logits = lm_head(out)                                  # = head(out); untied, model dtype

Dream keeps the AR convention: the network's output at j predicts token j+1, and every Dream
sampler realigns with cat(logits[:, :1], logits[:, :-1]) (§2.3 item 9). That shift is applied
here, inside ``body``, so that ``logits(z)[:, i]`` is the distribution of token i, as for every
other model; position 0 keeps its own output (a dummy: it is always a prompt token).

Left padding (§2.3 item 10, §4.2): position ids are cumsum(valid) - 1 and the attention mask is
the outer AND of valid queries and valid keys, so a padded row's valid positions see exactly
what the unpadded row sees. Two deliberate details keep that equality exact and finite:

* a padded *query* row would have no key at all, and SDPA returns NaN there; in the next layer
  that NaN sits in V at a masked key and 0 * NaN leaks into every valid row. Padded query rows
  therefore attend to all keys (their output is never read by a valid position);
* the first valid position keeps its own output under the shift (upstream shifts the whole row,
  so it would take the last pad's output; it is a prompt token either way, never sampled).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .checkpoint import PublishedModel
from .config import PublishedConfig, fixed
from .layers import RMSNorm, apply_rope, bidirectional_attention, rope_cos_sin, rope_inv_freq, split_heads

MODEL_TYPE = "Dream"
ARCHITECTURE = "DreamModel"
# "the context length (input+output) of Dream currently is 2048" (reference §2.1, DR README)
DREAM_MAX_LENGTH = 2048


@dataclass
class DreamConfig(PublishedConfig):
    """The config.json keys of Dream-v0-7B; defaults are the values of reference §2.1 (the keys
    marked :func:`fixed` select code paths the native model implements only at that value)."""
    hidden_size: int = 3584                         # model width
    intermediate_size: int = 18944                  # SiLU-gated MLP width
    num_hidden_layers: int = 28                     # transformer blocks
    num_attention_heads: int = 28                   # query heads (head_dim 128)
    num_key_value_heads: int = 4                    # grouped KV: 7 query heads per kv head
    vocab_size: int = 152064                        # rows of the embedding and the logits
    rms_norm_eps: float = 1e-06                     # epsilon of every RMSNorm
    rope_theta: float = 1000000.0                   # rotary base
    rope_scaling: dict | None = fixed(None)         # no RoPE scaling
    tie_word_embeddings: bool = fixed(False)        # separate output matrix
    hidden_act: str = fixed("silu")                 # SiLU gate
    use_sliding_window: bool = fixed(False)         # full attention over the canvas
    attention_dropout: float = 0.0                  # training only: never applied here
    mask_token_id: int = 151666                     # <|mask|>
    bos_token_id: int = 151643                      # <|endoftext|> begins ...
    eos_token_id: int = 151643                      # ... ends ...
    pad_token_id: int = 151643                      # ... and pads
    model_type: str = MODEL_TYPE                    # "Dream", capital D as upstream writes it

    ARCHITECTURE = ARCHITECTURE
    FAMILY = "Dream"
    WIDTH, HEADS = "hidden_size", "num_attention_heads"
    OUTPUT_ROWS = "vocab_size"

    @property
    def kv_groups(self) -> int:
        """Query heads per kv head (7 for Dream-7B)."""
        return self.num_attention_heads // self.num_key_value_heads

    @property
    def max_length(self) -> int:
        return DREAM_MAX_LENGTH

    def validate(self) -> "DreamConfig":
        super().validate()
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(f"num_attention_heads={self.num_attention_heads} must be a multiple of "
                             f"num_key_value_heads={self.num_key_value_heads}.")
        return self



class DreamAttention(nn.Module):
    def __init__(self, config: DreamConfig):
        super().__init__()
        d, hd = config.hidden_size, config.head_dim
        self.n_heads, self.n_kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.q_proj = nn.Linear(d, self.n_heads * hd, bias=True)
        self.k_proj = nn.Linear(d, self.n_kv_heads * hd, bias=True)
        self.v_proj = nn.Linear(d, self.n_kv_heads * hd, bias=True)
        self.o_proj = nn.Linear(self.n_heads * hd, d, bias=False)

    def forward(self, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                mask: torch.Tensor | None) -> torch.Tensor:
        q = split_heads(self.q_proj(h), self.n_heads)
        k = split_heads(self.k_proj(h), self.n_kv_heads)
        v = split_heads(self.v_proj(h), self.n_kv_heads)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)   # in the hidden dtype (§2.3 item 3)
        return self.o_proj(bidirectional_attention(q, k, v, mask))   # kv heads repeated (§2.3 item 4)


class DreamMLP(nn.Module):
    def __init__(self, config: DreamConfig):
        super().__init__()
        d, hidden = config.hidden_size, config.intermediate_size
        self.gate_proj = nn.Linear(d, hidden, bias=False)
        self.up_proj = nn.Linear(d, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))   # §2.3 item 5


class DreamDecoderLayer(nn.Module):
    def __init__(self, config: DreamConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = DreamAttention(config)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = DreamMLP(config)

    def forward(self, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                mask: torch.Tensor | None) -> torch.Tensor:
        h = h + self.self_attn(self.input_layernorm(h), cos, sin, mask)
        return h + self.mlp(self.post_attention_layernorm(h))


class DreamBaseModel(nn.Module):
    """``model.`` in the checkpoint: embed_tokens, layers, norm (§2.2)."""

    def __init__(self, config: DreamConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(DreamDecoderLayer(config) for _ in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)


def padded_positions_and_mask(pad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Position ids cumsum(valid) - 1 (1 at padding, as upstream) and the bool mask [B, 1, L, L]:
    outer AND of valid queries and keys, with padded query rows opened to every key (see module doc)."""
    valid = ~pad
    positions = (valid.long().cumsum(-1) - 1).masked_fill(pad, 1)
    mask = (valid[:, None, :, None] & valid[:, None, None, :]) | pad[:, None, :, None]
    return positions, mask


def shift_sources(pad: torch.Tensor | None, batch: int, length: int, device) -> torch.Tensor:
    """For each position i, the position whose output gives token i's logits: i - 1, except at
    position 0 and at the first valid position of a left-padded row, which keep their own (§2.3 item 9)."""
    i = torch.arange(length, device=device).expand(batch, length)
    if pad is None:
        return (i - 1).clamp_min(0)
    prev_valid = torch.zeros_like(pad)
    prev_valid[:, 1:] = ~pad[:, :-1]
    return torch.where(prev_valid, i - 1, i)


class DreamModel(PublishedModel):
    """The published wrapper: ``model`` (DreamBaseModel) and an untied ``lm_head``."""
    config_class = DreamConfig

    def __init__(self, config: DreamConfig):
        super().__init__(config)
        self.model = DreamBaseModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)

    def body(self, ids: torch.Tensor, pad: torch.Tensor | None = None) -> torch.Tensor:
        """[B, L, D] after the final norm, already shifted: row i is the network's output at i-1."""
        if pad is not None and not pad.any():
            pad = None
        b, L = ids.shape
        h = self.model.embed_tokens(ids)
        if pad is None:
            positions, mask = torch.arange(L, device=ids.device), None
        else:
            positions, mask = padded_positions_and_mask(pad)
        cos, sin = rope_cos_sin(positions, rope_inv_freq(self.config.head_dim, self.config.rope_theta, ids.device))
        cos, sin = cos.to(h.dtype), sin.to(h.dtype)          # Dream rotates in the hidden dtype
        if cos.dim() == 3:                                   # per-row positions: [B, 1, L, hd] for the heads
            cos, sin = cos[:, None], sin[:, None]
        for layer in self.model.layers:
            h = layer(h, cos, sin, mask)
        h = self.model.norm(h)
        src = shift_sources(pad, b, L, ids.device)
        return torch.gather(h, 1, src[..., None].expand(b, L, h.shape[-1]))

    def head(self, h: torch.Tensor) -> torch.Tensor:
        return self.lm_head(h)

