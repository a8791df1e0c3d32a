"""LLaDA-8B (Base, Instruct, 1.5), natively: no remote code, readable top to bottom.

Module names are the checkpoint keys of the published ``LLaDAModelLM`` (reference §1.2), so
:meth:`LLaDAModelLM.from_pretrained` maps weights by name and nothing else. The forward is
reference §1.3, in order::

    x = wte[ids]                                   # no scaling, no positional embedding
    for block in blocks:                           # LLaDALlamaBlock, pre-norm
        h = attn_norm(x)
        q, k, v = q_proj(h), k_proj(h), v_proj(h)  # RoPE on q, k (fp32, theta 500000)
        x = x + attn_out(SDPA(q, k, v))            # bidirectional: no causal mask
        g = ff_norm(x)
        x = x + ff_out(SiLU(ff_proj(g)) * up_proj(g))   # the gate is ff_proj
    h = ln_f(x)                                    # = body(ids)
    logits = ff_out(h)                             # = head(h); untied, no shift, model dtype

LLaDA predicts token i at position i (no AR shift, §1.3 item 7). With left padding the keys
at padded positions get an additive finfo(float32).min and the positions are *not* shifted
(§1.3 items 2 and 6); a padded query row still sees the valid keys, so it stays finite.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .checkpoint import PublishedModel
from .config import PublishedConfig, fixed
from .layers import RMSNorm, apply_rope, bidirectional_attention, rope_cos_sin, rope_inv_freq, split_heads

MODEL_TYPE = "llada"
ARCHITECTURE = "LLaDAModelLM"


@dataclass
class LLaDAConfig(PublishedConfig):
    """The config.json keys of LLaDA-8B; defaults are the published values (reference §1.1).

    Keys that select code paths (block_type, activation_type, weight_tying, ...) are kept, marked
    :func:`fixed` at the value of every published LLaDA checkpoint, so that :meth:`validate` can
    refuse a config this native model does not implement.
    """
    d_model: int = 4096                             # model width
    n_heads: int = 32                               # query heads (head_dim 128)
    n_kv_heads: int = 32                            # must equal n_heads: no grouped KV
    n_layers: int = 32                              # transformer blocks
    mlp_hidden_size: int = 12288                    # the MLP width that is used ...
    mlp_ratio: int = 4                              # ... so this one is ignored
    vocab_size: int = 126464                        # tokenizer ids
    embedding_size: int = 126464                    # rows of the embedding and the logits
    max_sequence_length: int = 4096                 # the longest canvas (prompt + answer)
    rms_norm_eps: float = 1e-05                     # epsilon of every RMSNorm
    rope: bool = fixed(True)                        # rotary positions, no learned ones
    rope_full_precision: bool = fixed(True)         # rotate q and k in fp32
    rope_theta: float = 500000.0                    # rotary base (from checkers; HF tail unseen)
    mask_token_id: int = 126336                     # [MASK]
    eos_token_id: int = 126081                      # <|endoftext|> (the turn end <|eot_id|> is 126348)
    pad_token_id: int = 126081                      # SFT answers are padded with it
    activation_type: str = fixed("silu")            # SiLU-gated MLP
    block_type: str = fixed("llama")                # LLaDALlamaBlock
    layer_norm_type: str = fixed("rms")             # RMSNorm ...
    layer_norm_with_affine: bool = fixed(True)      # ... with a weight ...
    bias_for_layer_norm: bool = fixed(False)        # ... and no bias
    include_bias: bool = fixed(False)               # no Linear has a bias ...
    include_qkv_bias: bool = fixed(False)           # ... q, k and v included
    attention_layer_norm: bool = fixed(False)       # no q/k norm
    alibi: bool = fixed(False)                      # no ALiBi bias
    flash_attention: bool = False                   # a kernel choice: SDPA runs either way
    weight_tying: bool = fixed(False)               # separate output matrix
    scale_logits: bool = fixed(False)               # logits not scaled by 1/sqrt(d)
    input_emb_norm: bool = fixed(False)             # embeddings not scaled by sqrt(d)
    block_group_size: int = fixed(1)                # blocks are not grouped
    attention_dropout: float = 0.0                  # the dropouts act in training only;
    residual_dropout: float = 0.0                   # the native model runs inference ...
    embedding_dropout: float = 0.0                  # ... and never applies them
    use_cache: bool = False                         # no KV cache: attention is bidirectional
    model_type: str = MODEL_TYPE                    # "llada", as upstream's remote code names it

    ARCHITECTURE = ARCHITECTURE
    FAMILY = "LLaDA"
    WIDTH, HEADS = "d_model", "n_heads"
    OUTPUT_ROWS = "embedding_size"      # the logits' rows; may exceed vocab_size (padding)

    @property
    def max_length(self) -> int:
        """The longest canvas (§1.1 max_sequence_length)."""
        return int(self.max_sequence_length)

    def validate(self) -> "LLaDAConfig":
        super().validate()
        if self.n_kv_heads != self.n_heads:
            raise NotImplementedError(f"n_kv_heads={self.n_kv_heads} != n_heads={self.n_heads}: published LLaDA is "
                                      "plain multi-head attention (§1.1); grouped KV is not implemented for it.")
        if self.embedding_size < self.vocab_size:
            raise ValueError(f"embedding_size={self.embedding_size} is smaller than vocab_size={self.vocab_size}.")
        return self



class LLaDALlamaBlock(nn.Module):
    """Pre-norm block with rotary bidirectional attention and a SiLU-gated MLP (§1.3 items 3-6)."""

    def __init__(self, config: LLaDAConfig):
        super().__init__()
        d, hidden = config.d_model, config.mlp_hidden_size
        self.n_heads = config.n_heads
        self.attn_norm = RMSNorm(d, config.rms_norm_eps)
        self.q_proj = nn.Linear(d, d, bias=False)
        self.k_proj = nn.Linear(d, d, bias=False)
        self.v_proj = nn.Linear(d, d, bias=False)
        self.attn_out = nn.Linear(d, d, bias=False)
        self.ff_norm = RMSNorm(d, config.rms_norm_eps)
        self.ff_proj = nn.Linear(d, hidden, bias=False)   # the gate
        self.up_proj = nn.Linear(d, hidden, bias=False)   # the up
        self.ff_out = nn.Linear(hidden, d, bias=False)    # the down

    def attention(self, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                  key_bias: torch.Tensor | None) -> torch.Tensor:
        q, k, v = (split_heads(proj(h), self.n_heads) for proj in (self.q_proj, self.k_proj, self.v_proj))
        # rope_full_precision: rotate in fp32, cast back (§1.3 item 6)
        q = apply_rope(q.float(), cos, sin).to(v.dtype)
        k = apply_rope(k.float(), cos, sin).to(v.dtype)
        return self.attn_out(bidirectional_attention(q, k, v, key_bias))

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                key_bias: torch.Tensor | None) -> torch.Tensor:
        x = x + self.attention(self.attn_norm(x), cos, sin, key_bias)
        g = self.ff_norm(x)
        return x + self.ff_out(F.silu(self.ff_proj(g)) * self.up_proj(g))


class LLaDAModel(nn.Module):
    """Holds ``transformer`` = {wte, blocks, ln_f, ff_out} as in the checkpoint (§1.2)."""

    def __init__(self, config: LLaDAConfig):
        super().__init__()
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.embedding_size, config.d_model),
            blocks=nn.ModuleList(LLaDALlamaBlock(config) for _ in range(config.n_layers)),
            ln_f=RMSNorm(config.d_model, config.rms_norm_eps),
            ff_out=nn.Linear(config.d_model, config.embedding_size, bias=False),
        ))


class LLaDAModelLM(PublishedModel):
    """The published wrapper (``base_model_prefix = "model"``): keys start with ``model.transformer.``."""
    config_class = LLaDAConfig

    def __init__(self, config: LLaDAConfig):
        super().__init__(config)
        self.model = LLaDAModel(config)

    def body(self, ids: torch.Tensor, pad: torch.Tensor | None = None) -> torch.Tensor:
        """[B, L, D] after ln_f: everything but the LM head. ``pad`` is True at left padding."""
        t = self.model.transformer
        x = t.wte(ids)
        positions = torch.arange(ids.shape[1], device=ids.device)     # never shifted for padding
        cos, sin = rope_cos_sin(positions, rope_inv_freq(self.config.head_dim, self.config.rope_theta, ids.device))
        key_bias = None
        if pad is not None and pad.any():  # additive key mask [B, 1, 1, L]: finfo.min at padding (§1.3 item 2)
            key_bias = torch.zeros(pad.shape, dtype=x.dtype, device=x.device)
            key_bias = key_bias.masked_fill(pad, torch.finfo(x.dtype).min)[:, None, None, :]
        for block in t.blocks:
            x = block(x, cos, sin, key_bias)
        return t.ln_f(x)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """The untied LM head (126,464 x 4,096 for LLaDA-8B): logits in the model dtype."""
        return self.model.transformer.ff_out(h)

