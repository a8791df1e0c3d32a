"""Native LLaDA and Dream (llada-dream reference §1-§3): loading, forwards, padding, errors, sizes.

Every forward is checked against a straightforward reference written here with plain torch ops
from the reference text, reading the weights straight from the safetensors files.
"""
from __future__ import annotations

import json
import math
import warnings
from collections import Counter

import pytest
import torch
from safetensors.torch import load_file, save_file

from explorer.models import DreamConfig, DreamModel, LLaDAConfig, LLaDAModelLM, load_model, write_random_checkpoint
from explorer.models.random_checkpoint import special_ids
from explorer.protocol import check_denoiser

TOL = 1e-4


# ------------------------------------------------------------------------ reference forwards

def read_weights(directory) -> dict[str, torch.Tensor]:
    tensors = {}
    for f in sorted(directory.glob("*.safetensors")):
        tensors.update(load_file(str(f)))
    return {k: v.float() for k, v in tensors.items()}


def ref_rms(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def ref_rope(x, pos, theta):
    """x: [..., L, hd]; rotate-half with angles pos * theta^(-2j/hd), pos: [L] or [B, 1, L]."""
    hd = x.shape[-1]
    inv = 1.0 / theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    ang = pos.double()[..., None] * inv
    cos, sin = torch.cat([ang.cos(), ang.cos()], -1).float(), torch.cat([ang.sin(), ang.sin()], -1).float()
    rot = torch.cat([-x[..., hd // 2:], x[..., : hd // 2]], -1)
    return x * cos + rot * sin


def ref_attend(q, k, v, allowed=None):
    """softmax(q k^T / sqrt(hd)) v; ``allowed`` [B, 1 or L, L] bool (False = masked)."""
    s = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if allowed is not None:
        s = s.masked_fill(~allowed[:, None], float("-inf"))
    return torch.softmax(s, -1) @ v


def llada_reference(w, c: dict, ids, pad=None):
    """§1.3: pre-norm blocks, gate ff_proj, fp32 RoPE on positions 0..L-1, key mask, ln_f, ff_out; no shift."""
    B, L = ids.shape
    H, D = c["n_heads"], c["d_model"]
    hd = D // H
    x = w["model.transformer.wte.weight"][ids]
    pos = torch.arange(L)
    allowed = None if pad is None else (~pad)[:, None, :].expand(B, L, L)
    for i in range(c["n_layers"]):
        p = f"model.transformer.blocks.{i}."
        h = ref_rms(x, w[p + "attn_norm.weight"], c["rms_norm_eps"])
        q, k, v = ((h @ w[p + n + ".weight"].T).view(B, L, H, hd).transpose(1, 2) for n in ("q_proj", "k_proj", "v_proj"))
        q, k = ref_rope(q, pos, c["rope_theta"]), ref_rope(k, pos, c["rope_theta"])
        a = ref_attend(q, k, v, allowed).transpose(1, 2).reshape(B, L, D)
        x = x + a @ w[p + "attn_out.weight"].T
        g = ref_rms(x, w[p + "ff_norm.weight"], c["rms_norm_eps"])
        gate, up = g @ w[p + "ff_proj.weight"].T, g @ w[p + "up_proj.weight"].T
        x = x + (gate * torch.sigmoid(gate) * up) @ w[p + "ff_out.weight"].T
    x = ref_rms(x, w["model.transformer.ln_f.weight"], c["rms_norm_eps"])
    return x @ w["model.transformer.ff_out.weight"].T


def dream_reference(w, c: dict, ids, kv_head_of=None, shift=True):
    """§2.3: biased q/k/v, kv head j feeds q heads j*r..j*r+r-1, SiLU(gate)*up, norm, lm_head, then
    logits'[i] = logits[i-1] (position 0 keeps its own). ``kv_head_of`` overrides the head mapping."""
    B, L = ids.shape
    H, Hkv, D = c["num_attention_heads"], c["num_key_value_heads"], c["hidden_size"]
    hd, r = D // H, H // Hkv
    kv_head_of = kv_head_of or (lambda h: h // r)
    x = w["model.embed_tokens.weight"][ids]
    pos = torch.arange(L)
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = ref_rms(x, w[p + "input_layernorm.weight"], c["rms_norm_eps"])
        lin = {n: h @ w[f"{p}self_attn.{n}.weight"].T + w[f"{p}self_attn.{n}.bias"] for n in ("q_proj", "k_proj", "v_proj")}
        q = lin["q_proj"].view(B, L, H, hd).transpose(1, 2)
        k = lin["k_proj"].view(B, L, Hkv, hd).transpose(1, 2)
        v = lin["v_proj"].view(B, L, Hkv, hd).transpose(1, 2)
        q, k = ref_rope(q, pos, c["rope_theta"]), ref_rope(k, pos, c["rope_theta"])
        heads = [ref_attend(q[:, hh], k[:, kv_head_of(hh)], v[:, kv_head_of(hh)]) for hh in range(H)]
        a = torch.stack(heads, 1).transpose(1, 2).reshape(B, L, D)
        x = x + a @ w[p + "self_attn.o_proj.weight"].T
        m = ref_rms(x, w[p + "post_attention_layernorm.weight"], c["rms_norm_eps"])
        gate, up = m @ w[p + "mlp.gate_proj.weight"].T, m @ w[p + "mlp.up_proj.weight"].T
        x = x + (gate * torch.sigmoid(gate) * up) @ w[p + "mlp.down_proj.weight"].T
    logits = ref_rms(x, w["model.norm.weight"], c["rms_norm_eps"]) @ w["lm_head.weight"].T
    return torch.cat([logits[:, :1], logits[:, :-1]], 1) if shift else logits


@pytest.fixture(scope="module")
def llada_dir(tmp_path_factory):
    return write_random_checkpoint(tmp_path_factory.mktemp("llada"), "llada", num_shards=3, seed=1)


@pytest.fixture(scope="module")
def dream_dir(tmp_path_factory):
    return write_random_checkpoint(tmp_path_factory.mktemp("dream"), "dream", num_shards=2, seed=2)


def tokens(model, batch=2, length=11, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, model.vocab_size, (batch, length), generator=g)


def config_of(directory) -> dict:
    return json.loads((directory / "config.json").read_text())


# --------------------------------------------------------------------------- published layout

def test_random_checkpoints_have_the_published_layout(llada_dir, dream_dir):
    files = sorted(p.name for p in llada_dir.iterdir())
    assert [f for f in files if f.endswith(".safetensors")] == [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
    index = json.loads((llada_dir / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(read_weights(llada_dir))
    assert len(set(index["weight_map"].values())) == 3
    c = config_of(llada_dir)
    assert c["model_type"] == "llada" and c["architectures"] == ["LLaDAModelLM"]
    for key in ("d_model", "n_heads", "n_kv_heads", "n_layers", "mlp_hidden_size", "vocab_size", "embedding_size",
                "rope_theta", "rms_norm_eps", "mask_token_id", "eos_token_id", "pad_token_id", "weight_tying",
                "block_type", "activation_type", "max_sequence_length"):
        assert key in c
    assert "model.transformer.blocks.1.ff_proj.weight" in index["weight_map"]
    d = config_of(dream_dir)
    assert d["model_type"] == "Dream" and d["architectures"] == ["DreamModel"]
    assert "model.layers.0.self_attn.k_proj.bias" in read_weights(dream_dir)
    assert "lm_head.weight" in read_weights(dream_dir)
    # the config's special ids point at the tokenizer's special tokens (§3)
    tc = json.loads((llada_dir / "tokenizer_config.json").read_text())
    assert "<|start_header_id|>" in tc["chat_template"] and tc["mask_token"] == "<|mdm_mask|>"
    assert special_ids("llada")["<|mdm_mask|>"] == c["mask_token_id"]
    assert special_ids("dream")["<|mask|>"] == d["mask_token_id"]


# ----------------------------------------------------------------------------------- forwards

def test_llada_matches_the_reference_forward_in_float32(llada_dir):
    den = load_model(llada_dir)
    check_denoiser(den)
    assert den.seq_len is None and den.max_length == 4096 and den.family == "llada"
    assert den.dtype == torch.float32 and den.device.type == "cpu"
    z = tokens(den)
    got = den.logits(z)
    want = llada_reference(read_weights(llada_dir), config_of(llada_dir), z)
    assert got.shape == want.shape == (2, 11, den.vocab_size)
    assert (got - want).abs().max().item() < TOL
    # body/head split: the head on chosen rows gives the same logits
    h = den.body(z)
    assert torch.allclose(den.head(h[torch.tensor([0, 1]), torch.tensor([3, 7])]), got[[0, 1], [3, 7]], atol=1e-5)


def test_dream_matches_the_reference_forward_with_its_shift_in_float32(dream_dir):
    den = load_model(dream_dir)
    check_denoiser(den)
    assert den.max_length == 2048 and den.family == "dream"
    z = tokens(den, length=9)
    w, c = read_weights(dream_dir), config_of(dream_dir)
    got = den.logits(z)
    assert (got - dream_reference(w, c, z)).abs().max().item() < TOL
    # the shift: row i is the network's output at i - 1, not at i (position 0 keeps its own)
    raw = dream_reference(w, c, z, shift=False)
    assert torch.allclose(got[:, 1:], raw[:, :-1], atol=TOL) and torch.allclose(got[:, 0], raw[:, 0], atol=TOL)
    assert (got[:, 1:] - raw[:, 1:]).abs().max().item() > 0.1
    h = den.body(z)
    assert torch.allclose(den.head(h[:, 4]), got[:, 4], atol=1e-5)


def test_bf16_files_load_into_the_requested_dtype(tmp_path):
    """Published shards are bf16: they are read straight into float32 on the CPU (the default) or bf16."""
    d = write_random_checkpoint(tmp_path, "dream", num_shards=3, dtype=torch.bfloat16)
    assert config_of(d)["torch_dtype"] == "bfloat16"
    assert all(t.dtype == torch.bfloat16 for f in d.glob("*.safetensors") for t in load_file(str(f)).values())
    den = load_model(d)
    assert all(p.dtype == torch.float32 for p in den.model.parameters())
    z = tokens(den, length=8, seed=9)
    assert (den.logits(z) - dream_reference(read_weights(d), config_of(d), z)).abs().max().item() < TOL
    assert load_model(d, dtype=torch.bfloat16).dtype == torch.bfloat16


def test_a_folder_with_both_a_single_file_and_an_index_loads_the_file_its_digest_names(tmp_path):
    """A sharded checkpoint overwritten by a single-file one keeps the old index and shards: the index
    was read (the old weights) while the trace's sha256 named model.safetensors (the new ones).
    The single file wins, as in transformers, and it is the file the digest hashes."""
    from explorer.models.checkpoint import sha256_file

    write_random_checkpoint(tmp_path, "llada", num_shards=2, seed=0, with_tokenizer=False)
    write_random_checkpoint(tmp_path, "llada", num_shards=1, seed=1, with_tokenizer=False)
    assert (tmp_path / "model.safetensors.index.json").is_file() and (tmp_path / "model.safetensors").is_file()
    with pytest.warns(UserWarning, match="no tokenizer files"):
        den = load_model(tmp_path)
    written = load_file(str(tmp_path / "model.safetensors"))
    loaded = den.model.state_dict()
    assert all(torch.equal(loaded[k], v.to(loaded[k].dtype)) for k, v in written.items())
    assert den.identity["sha256"] == sha256_file(tmp_path / "model.safetensors")


@pytest.mark.parametrize("family", ["llada", "dream"])
def test_a_damaged_tokenizer_file_is_named_before_the_weights_are_read(tmp_path, family, monkeypatch):
    """tokenizers raised a bare 'Exception: EOF while parsing ...' naming no file, after every weight was read."""
    from explorer.models import loading

    d = write_random_checkpoint(tmp_path, family)
    (d / "tokenizer.json").write_text("")
    read = []
    monkeypatch.setattr(loading.DIFFUSION_LLMS[family][2], "from_pretrained", lambda *a, **k: read.append(a))
    with pytest.raises(ValueError, match=r"the tokenizer in .* cannot be read .*tokenizer\.json.*download them again"):
        load_model(d)
    assert read == []


def test_dream_grouped_kv_heads_feed_consecutive_query_heads(dream_dir):
    """kv head j feeds q heads j*r .. j*r+r-1 (§2.3 item 7): the interleaved order gives other logits."""
    den = load_model(dream_dir)
    c = config_of(dream_dir)
    assert c["num_attention_heads"] // c["num_key_value_heads"] == 2
    z = tokens(den, length=8, seed=3)
    w = read_weights(dream_dir)
    got = den.logits(z)
    interleaved = dream_reference(w, c, z, kv_head_of=lambda h: h % c["num_key_value_heads"])
    assert (got - dream_reference(w, c, z)).abs().max().item() < TOL
    assert (got - interleaved).abs().max().item() > 0.05
    # and swapping the two kv heads in the weights changes the output
    model = den.model
    hd = c["hidden_size"] // c["num_attention_heads"]
    perm = torch.cat([torch.arange(hd, 2 * hd), torch.arange(hd)])
    with torch.no_grad():
        for layer in model.model.layers:
            for proj in (layer.self_attn.k_proj, layer.self_attn.v_proj):
                proj.weight.copy_(proj.weight[perm])
                proj.bias.copy_(proj.bias[perm])
    assert (den.logits(z) - got).abs().max().item() > 0.05


def test_bf16_path_runs_and_stays_near_float32(llada_dir, dream_dir):
    for directory in (llada_dir, dream_dir):
        den32, den16 = load_model(directory), load_model(directory, dtype=torch.bfloat16)
        assert den16.dtype == torch.bfloat16
        assert all(p.dtype == torch.bfloat16 for p in den16.model.parameters())
        z = tokens(den32, length=10)
        lo, hi = den16.logits(z), den32.logits(z)
        assert lo.dtype == torch.bfloat16 and torch.isfinite(lo.float()).all()
        # bf16 keeps ~3 significant digits; tiny random models have logits of order 1
        assert (lo.float() - hi).abs().max().item() < 0.15 * hi.abs().max().item()


def _rope_inputs_and_outputs(den, module, monkeypatch, z):
    """(q before RoPE [B, H, L, hd], q as SDPA receives it) in the first layer, captured in bf16."""
    import torch.nn.functional as F

    seen, raw = [], []
    real = F.scaled_dot_product_attention
    monkeypatch.setattr(module.F, "scaled_dot_product_attention",
                        lambda q, k, v, **kw: (seen.append(q), real(q, k, v, **kw))[1])
    first = den.model.model.transformer.blocks[0] if den.family == "llada" else den.model.model.layers[0].self_attn
    handle = first.q_proj.register_forward_hook(lambda m, i, o: raw.append(o))
    den.logits(z)
    handle.remove()
    b, L, _ = raw[0].shape
    return raw[0].view(b, L, seen[0].shape[1], -1).transpose(1, 2), seen[0]


def _rotate(q, cos, sin):
    half = q.shape[-1] // 2
    return q * cos + torch.cat([-q[..., half:], q[..., :half]], -1) * sin


def test_each_model_rotates_in_its_own_precision(llada_dir, dream_dir, monkeypatch):
    """LLaDA rotates q, k in fp32 and casts back (§1.3 item 6); Dream casts cos/sin to bf16 and
    rotates in bf16 (§2.3 item 3). In bf16 the two rules give different bits."""
    from explorer.models import dream as dream_module
    from explorer.models import llada as llada_module

    for directory, module in ((llada_dir, llada_module), (dream_dir, dream_module)):
        den = load_model(directory, dtype=torch.bfloat16)
        c = config_of(directory)
        z = tokens(den, batch=1, length=24, seed=4)
        q_raw, q_rot = _rope_inputs_and_outputs(den, module, monkeypatch, z)
        assert q_raw.dtype == q_rot.dtype == torch.bfloat16
        hd = q_raw.shape[-1]
        inv = 1.0 / c["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd)
        ang = torch.arange(24, dtype=torch.float32)[:, None] * inv
        cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()
        fp32_rule = _rotate(q_raw.float(), cos, sin).to(torch.bfloat16)
        bf16_rule = _rotate(q_raw, cos.to(torch.bfloat16), sin.to(torch.bfloat16))
        assert not torch.equal(fp32_rule, bf16_rule)
        assert torch.equal(q_rot, fp32_rule if den.family == "llada" else bf16_rule), den.family


def test_rmsnorm_normalises_in_fp32_then_weights_in_the_input_dtype():
    """§1.3 item 4, §2.3 item 6: x / rms(x) in fp32, cast back, then weight * x in bf16 (not in fp32)."""
    from explorer.models.layers import RMSNorm

    g = torch.Generator().manual_seed(0)
    norm = RMSNorm(64, eps=1e-5).to(torch.bfloat16)
    with torch.no_grad():
        norm.weight.copy_(1 + torch.randn(64, generator=g))
    x = (3 * torch.randn(8, 64, generator=g)).to(torch.bfloat16)
    xf = x.float()
    normed = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-5)
    assert torch.equal(norm(x), norm.weight * normed.to(torch.bfloat16))
    assert not torch.equal(norm(x), (norm.weight.float() * normed).to(torch.bfloat16))


# ------------------------------------------------------------------------------------ padding

def test_dream_padded_row_equals_the_unpadded_row(dream_dir):
    """Outer-AND mask and position ids cumsum(valid) - 1 (§2.3 item 10): left padding changes nothing."""
    den = load_model(dream_dir)
    z = tokens(den, batch=1, length=7, seed=5)
    alone = den.logits(z)[0]
    n_pad = 4
    batch = torch.cat([torch.cat([torch.full((1, n_pad), den.pad_id), z], 1), tokens(den, 1, 7 + n_pad, 6)])
    pad = torch.zeros(batch.shape, dtype=torch.bool)
    pad[0, :n_pad] = True
    out = den.logits(batch, pad=pad)
    assert torch.isfinite(out).all()                 # padded query rows produce no NaN that could leak
    assert (out[0, n_pad:] - alone).abs().max().item() < TOL
    assert (den.logits(batch[1:])[0] - out[1]).abs().max().item() < TOL   # the unpadded row is untouched
    h = den.body(batch, pad=pad)
    assert torch.allclose(den.head(h[0, n_pad + 2]), out[0, n_pad + 2], atol=1e-5)


def test_llada_padding_is_an_additive_key_mask_without_position_shift(llada_dir):
    den = load_model(llada_dir)
    z = tokens(den, batch=2, length=9, seed=7)
    pad = torch.zeros(z.shape, dtype=torch.bool)
    pad[0, :3] = True
    out = den.logits(z, pad=pad)
    assert torch.isfinite(out).all()
    want = llada_reference(read_weights(llada_dir), config_of(llada_dir), z, pad=pad)
    assert (out - want).abs().max().item() < TOL
    # positions are not shifted, yet RoPE scores depend only on position differences, so the valid
    # part of the padded row still equals the same tokens alone
    alone = den.logits(z[:1, 3:])[0]
    assert (out[0, 3:] - alone).abs().max().item() < TOL
    # without the key mask the padding would be attended to
    assert (den.logits(z)[0, 3:] - alone).abs().max().item() > 0.01
    assert (out[1] - den.logits(z[1:])[0]).abs().max().item() < TOL


# ---------------------------------------------------------------------- tokenizer and special ids

_MEASURE_LOAD = """
import gc, resource, sys, warnings
warnings.simplefilter("ignore")
from explorer.models import load_model
load_model(sys.argv[2])                     # warm-up: lazy imports and allocator pools
gc.collect()
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
model = load_model(sys.argv[1])
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((peak - base) * 1024, sum(p.numel() * p.element_size() for p in model.model.parameters()))
"""


def test_loading_needs_about_the_model_size_in_host_memory(tmp_path):
    """Meta-device build + one tensor at a time: the peak RSS grows by the model plus the shard being
    read (its memory-mapped pages count in RSS), not by two copies of the model."""
    import subprocess
    import sys

    small = write_random_checkpoint(tmp_path / "small", "llada", num_shards=1, with_tokenizer=False)
    big = write_random_checkpoint(tmp_path / "big", "llada", num_shards=4, with_tokenizer=False, d_model=384,
                                  n_heads=6, n_kv_heads=6, n_layers=8, mlp_hidden_size=768)
    out = subprocess.run([sys.executable, "-c", _MEASURE_LOAD, str(big), str(small)], capture_output=True,
                         text=True, timeout=120, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr
    growth, size = map(int, out.stdout.split())
    assert size > 40 * 2**20
    assert growth < 1.5 * size, f"loading grew the peak RSS by {growth / size:.2f} x the model size"


def test_special_ids_come_from_config_and_tokenizer(llada_dir, dream_dir):
    llada, dream = load_model(llada_dir), load_model(dream_dir)
    ids = special_ids("llada")
    assert (llada.mask_id, llada.eos_id, llada.pad_id, llada.eot_id) == (
        ids["<|mdm_mask|>"], ids["<|endoftext|>"], ids["<|endoftext|>"], ids["<|eot_id|>"])
    assert llada.tokenizer.mask_token_id == llada.mask_id
    chat = llada.tokenizer.apply_chat_template([{"role": "user", "content": "2+2?"}], add_generation_prompt=True,
                                               tokenize=False)
    assert chat.startswith("<|startoftext|><|start_header_id|>user<|end_header_id|>")
    assert chat.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    ids = special_ids("dream")
    assert (dream.mask_id, dream.eos_id, dream.pad_id, dream.eot_id) == (
        ids["<|mask|>"], ids["<|endoftext|>"], ids["<|endoftext|>"], ids["<|im_end|>"])
    chat = dream.tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True,
                                               tokenize=False)
    assert chat.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nhi")
    assert dream.tokenizer.decode(dream.tokenizer("Answer: 42").input_ids) == "Answer: 42"


def test_tokenizer_is_optional(tmp_path):
    d = write_random_checkpoint(tmp_path, "llada", with_tokenizer=False, num_shards=1)
    with pytest.warns(UserWarning, match="no tokenizer files"):
        den = load_model(d)
    assert den.tokenizer is None and den.eot_id is None and den.mask_id == special_ids("llada")["<|mdm_mask|>"]


def test_dream_vocab_and_merges_tokenizer_loads_without_remote_code(tmp_path):
    """Dream's hub folder names a remote-code tokenizer class; its vocab.json + merges.txt are Qwen2 BPE."""
    d = write_random_checkpoint(tmp_path, "dream", num_shards=1)
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(d / "tokenizer.json"))
    vocab = tok.get_vocab(with_added_tokens=False)
    (d / "vocab.json").write_text(json.dumps(vocab))
    (d / "merges.txt").write_text("#version: 0.2\n")
    tc = json.loads((d / "tokenizer_config.json").read_text())
    tc.update(tokenizer_class="DreamTokenizer", auto_map={"AutoTokenizer": ["tokenization_dream.DreamTokenizer", None]})
    (d / "tokenizer_config.json").write_text(json.dumps(tc))
    (d / "tokenizer.json").unlink()
    den = load_model(d)
    assert den.tokenizer is not None and den.eot_id == special_ids("dream")["<|im_end|>"]
    assert den.tokenizer.convert_tokens_to_ids("<|mask|>") == den.mask_id
    assert den.tokenizer.decode(den.tokenizer("a b").input_ids) == "a b"


# ------------------------------------------------------------------------------- bad checkpoints

def _single(tmp_path, family="llada"):
    d = write_random_checkpoint(tmp_path, family, num_shards=1)
    return d, load_file(str(d / "model.safetensors"))


def test_strict_loading_names_missing_unexpected_and_misshaped_tensors(tmp_path):
    d, sd = _single(tmp_path)
    sd.pop("model.transformer.blocks.1.up_proj.weight")
    sd["model.transformer.blocks.0.extra.weight"] = torch.zeros(3)
    sd["model.transformer.ln_f.weight"] = torch.zeros(5)
    save_file(sd, str(d / "model.safetensors"))
    with pytest.raises(ValueError) as e:
        load_model(d)
    msg = str(e.value)
    assert "LLaDA architecture" in msg
    assert "missing (1): model.transformer.blocks.1.up_proj.weight" in msg
    assert "unexpected (1): model.transformer.blocks.0.extra.weight" in msg
    assert "model.transformer.ln_f.weight: file (5,) vs model (32,)" in msg


def test_one_weights_digest_for_files_shards_and_unsaved_models(llada_dir, dream_dir):
    """explorer.models.checkpoint.weights_sha256 is the digest recorded everywhere: the weights file's
    own sha256 (a shipped model's is in data/sweeps), the digest of the shards' digests in name order,
    or, for weights never saved, one over name, dtype, shape and bytes; sweeps use the same one."""
    import hashlib

    from explorer.models.checkpoint import model_sha256, weights_sha256
    from explorer.sweep import model_sha256 as sweep_sha256

    shards = sorted(llada_dir.glob("model-*.safetensors"))
    by_shard = "".join(hashlib.sha256(f.read_bytes()).hexdigest() for f in shards)
    den = load_model(llada_dir)
    assert den.identity["sha256"] == weights_sha256(llada_dir) == hashlib.sha256(by_shard.encode()).hexdigest()
    assert model_sha256(den) == sweep_sha256(den) == den.identity["sha256"]
    weights = load_model(dream_dir).model
    sd = weights.state_dict()
    assert weights_sha256(weights) == weights_sha256(sd)
    assert weights_sha256({k: v.to(torch.bfloat16) for k, v in sd.items()}) != weights_sha256(sd)
    assert model_sha256(weights) == weights_sha256(sd)   # no identity: the tensors are hashed
    with pytest.raises(ValueError, match="no identity"):
        model_sha256(object())


def test_mismatched_shards_name_the_file(tmp_path):
    d = write_random_checkpoint(tmp_path / "a", "dream", num_shards=2)
    shard = d / "model-00002-of-00002.safetensors"
    sd = load_file(str(shard))
    gone = sorted(sd)[0]
    sd.pop(gone)
    save_file(sd, str(shard))
    with pytest.raises(ValueError, match=rf"model-00002-of-00002.safetensors lacks tensor\(s\) .*{gone}"):
        load_model(d)
    sd[gone] = torch.zeros(1)
    sd["model.layers.0.stray.weight"] = torch.zeros(1)
    save_file(sd, str(shard))
    with pytest.raises(ValueError, match=r"model-00002-of-00002.safetensors holds tensor\(s\) that "
                                         r"model.safetensors.index.json does not list: model.layers.0.stray.weight"):
        load_model(d)
    shard.unlink()
    with pytest.raises(FileNotFoundError, match="missing from .*model-00002-of-00002.safetensors"):
        load_model(d)
    shard.write_bytes((d / "model-00001-of-00002.safetensors").read_bytes()[:40])   # cut short: no readable header
    with pytest.raises(ValueError, match=r"model-00002-of-00002.safetensors is not a readable safetensors file"):
        load_model(d)
    (d / "model.safetensors.index.json").unlink()
    with pytest.raises(FileNotFoundError, match="no model.safetensors.index.json saying which tensor"):
        load_model(d)


def test_unknown_architecture_lists_the_supported_ones(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "vit", "architectures": ["ViTModel"]}))
    with pytest.raises(ValueError, match=r"unsupported architecture \(model_type='vit'.*Supported: 'mdlm'.*'llada' "
                                         r"\(LLaDAModelLM\), 'Dream' \(DreamModel\)"):
        load_model(tmp_path)


@pytest.mark.parametrize("name", ["stories-judge", "mamba2"])
def test_a_causal_lm_is_told_to_be_a_judge(tmp_path, name):
    """The shipped judge (a GPT-2) or any causal LM given to load_model: not 'unsupported', but what
    it is and where it works (the docs audit: load_model('stories-judge') said only 'unsupported')."""
    if name == "mamba2":
        (tmp_path / "config.json").write_text(json.dumps({"model_type": "mamba2", "architectures": ["Mamba2ForCausalLM"]}))
        name = tmp_path
    with pytest.raises(ValueError, match=r"is a causal \(left-to-right\) language model \(model_type='(gpt2|mamba2)'\), "
                                         r"not a masked diffusion model.*explorer.judge.load_judge\('.*'\).*--judge"):
        load_model(name)


def test_architectures_alone_identify_the_family(tmp_path):
    d = write_random_checkpoint(tmp_path, "llada", num_shards=1, with_tokenizer=False)
    c = config_of(d)
    c.pop("model_type")
    (d / "config.json").write_text(json.dumps(c))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert load_model(d).family == "llada"


def test_damaged_config_names_the_file(tmp_path):
    d = write_random_checkpoint(tmp_path, "dream", num_shards=1)
    text = (d / "config.json").read_text()
    (d / "config.json").write_text(text[: len(text) // 2])
    with pytest.raises(ValueError, match=r"config.json is not valid JSON .* line \d+"):
        load_model(d)


def test_unimplemented_settings_are_refused_by_name():
    with pytest.raises(NotImplementedError, match=r"weight_tying=True \(supported: False\)"):
        LLaDAConfig.from_dict({**LLaDAConfig().to_dict(), "weight_tying": True})
    with pytest.raises(NotImplementedError, match="use_sliding_window=True"):
        DreamConfig.from_dict({"use_sliding_window": True})


def test_mask_token_id_must_be_a_row_of_the_logits():
    """PublishedConfig.validate checks each family against its own count of output rows: LLaDA's
    embedding_size (wider than its vocab_size), Dream's vocab_size; the model's vocab_size is that count."""
    with pytest.raises(ValueError, match=r"mask_token_id=126464 is outside the 126464 output rows \(embedding_size\)"):
        LLaDAConfig(mask_token_id=126464).validate()
    LLaDAConfig(vocab_size=100, embedding_size=126464).validate()    # a mask past vocab_size is a row
    with pytest.raises(ValueError, match=r"mask_token_id=152064 is outside the 152064 output rows \(vocab_size\)"):
        DreamConfig(mask_token_id=152064).validate()
    with pytest.raises(ValueError, match="mask_token_id=-1"):
        DreamConfig.from_dict({"mask_token_id": -1})
    with torch.device("meta"):
        assert LLaDAModelLM(LLaDAConfig(vocab_size=126000)).vocab_size == 126464
        assert DreamModel(DreamConfig()).vocab_size == 152064


def test_canvas_longer_than_max_length_is_refused(dream_dir):
    den = load_model(dream_dir)
    with pytest.raises(ValueError, match="longer than dream's maximum of 2048"):
        den.logits(torch.zeros(1, 2049, dtype=torch.long))


def test_hub_ids_need_allow_download_and_touch_no_network(monkeypatch, tmp_path):
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    calls = []
    real = huggingface_hub.snapshot_download

    def spy(*args, **kwargs):
        calls.append(kwargs.get("local_files_only", False))
        return real(*args, **kwargs)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", spy)
    for hub_id in ("GSAI-ML/LLaDA-8B-Instruct", "GSAI-ML/LLaDA-1.5", "Dream-org/Dream-v0-Instruct-7B"):
        with pytest.raises(FileNotFoundError, match=rf"load_model\('{hub_id}', allow_download=True\)"):
            load_model(hub_id)
    assert calls and all(calls)   # only cache look-ups, never a download


# --------------------------------------------------------------------------- published sizes

def test_published_configs_give_the_published_parameter_counts():
    """Counted by hand from the shapes tables (§1.2, §2.2) for the configs of §1.1, §2.1."""
    with torch.device("meta"):
        llada, dream = LLaDAModelLM(LLaDAConfig()), DreamModel(DreamConfig())
    # LLaDA-8B: wte and ff_out 126464 x 4096; per block q, k, v, attn_out 4096^2, ff_proj, up_proj,
    # ff_out 12288 x 4096, two norms of 4096; 32 blocks; ln_f 4096
    per_block = 4 * 4096 * 4096 + 3 * 12288 * 4096 + 2 * 4096
    assert per_block == 218_112_000
    assert llada.num_parameters() == 2 * 126464 * 4096 + 32 * per_block + 4096 == 8_015_581_184
    assert tuple(llada.model.transformer.ff_out.weight.shape) == (126464, 4096)
    # Dream-7B: embed_tokens and lm_head 152064 x 3584; per layer q 3584^2 + 3584, k and v 512 x 3584 + 512,
    # o 3584^2, gate/up/down 18944 x 3584, two norms; 28 layers; norm 3584
    per_layer = (3584 * 3584 + 3584) + 2 * (512 * 3584 + 512) + 3584 * 3584 + 3 * 18944 * 3584 + 2 * 3584
    assert per_layer == 233_057_792
    assert dream.num_parameters() == 2 * 152064 * 3584 + 28 * per_layer + 3584 == 7_615_616_512
    assert tuple(dream.model.layers[0].self_attn.k_proj.weight.shape) == (512, 3584)
    keys = set(llada.state_dict())
    assert {"model.transformer.wte.weight", "model.transformer.blocks.31.ff_proj.weight",
            "model.transformer.ln_f.weight", "model.transformer.ff_out.weight"} <= keys and len(keys) == 3 + 32 * 9
    keys = set(dream.state_dict())
    assert {"model.embed_tokens.weight", "model.layers.27.self_attn.q_proj.bias", "model.norm.weight",
            "lm_head.weight"} <= keys and len(keys) == 3 + 28 * 12


def test_check_denoiser_accepts_variable_length_models_only_with_max_length(llada_dir):
    den = load_model(llada_dir)
    check_denoiser(den)

    class NoLength:
        mask_id, vocab_size, seq_len, tokenizer = 1, 4, None, None

        def logits(self, z):
            return z

    with pytest.raises(TypeError, match="seq_len=None and an integer max_length"):
        check_denoiser(NoLength())
    empty = NoLength()
    empty.max_length = 0
    with pytest.raises(ValueError, match="max_length=0 must be positive"):
        check_denoiser(empty)


# --------------------------------------------------------------- Table-3 pipeline: Countdown, ROUGE

def _reproduce_module():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "reproduce_llada.py"
    spec = importlib.util.spec_from_file_location("reproduce_llada", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def rl():
    return _reproduce_module()


def test_countdown_generator_follows_its_rule_and_is_reproducible(rl):
    problems = rl.countdown_problems(200, seed=3)
    assert problems == rl.countdown_problems(200, seed=3)
    assert problems != rl.countdown_problems(200, seed=4)
    ops = Counter()
    for p in problems:
        a, b, c = p["numbers"]
        assert all(1 <= v <= 99 for v in p["numbers"])
        assert 0 < p["target"] <= 999 and p["target"] not in p["numbers"]
        assert rl.score_countdown(p["solution"], p["numbers"], p["target"])   # its own solution scores
        first, second = p["solution"].split(", ")
        x, op1, y, _, r = first.split()
        assert sorted([int(x), int(y), int(second.split()[2])]) == sorted(p["numbers"])
        ops.update([op1, second.split()[1]])
    assert set(ops) == {"+", "-", "*", "/"}   # every operator occurs


def test_countdown_scorer_applies_each_rule(rl):
    nums, target = [44, 19, 35], 28
    assert rl.score_countdown("44 + 19 = 63, 63 - 35 = 28", nums, target)
    assert rl.score_countdown(" 19 + 44 = 63, 63 - 35 = 28\n", nums, target)
    assert not rl.score_countdown("44 + 19 = 63, 63 - 35 = 27", nums, target)       # final number is not the target
    assert not rl.score_countdown("44 + 18 = 62, 62 - 34 = 28", nums, target)       # given numbers not all used
    assert not rl.score_countdown("44 + 19 - 35 = 28", nums, target)                # four numbers before the last =
    assert not rl.score_countdown("44 + 19 = 64, 64 - 35 = 29", nums, 29)           # a false equation
    assert not rl.score_countdown("44 + 19 = 63, 62 - 35 = 28", nums, target)       # intermediates used once
    assert not rl.score_countdown("28", nums, target)                               # no equation
    assert not rl.score_countdown("44 + 19 = 63, 63 - 35 = 28 = 28", nums, target)  # six numbers
    assert rl.score_countdown("12 / 4 = 3, 3 * 5 = 15", [12, 4, 5], 15)
    assert not rl.score_countdown("12 / 0 = 3, 3 * 5 = 15", [12, 0, 5], 15)         # division by zero is wrong
    assert not rl.score_countdown("__import__('os') = 3, 3 * 5 = 15", [12, 4, 5], 15)


def test_pass_at_1_is_the_fraction_correct(rl):
    for c in range(11):
        flags = [True] * c + [False] * (10 - c)
        assert rl.pass_at_1(flags) == pytest.approx(c / 10, abs=1e-12)


def test_countdown_prompt_format(rl, tmp_path):
    p = {"numbers": [3, 5, 7], "target": 22, "solution": "3 * 5 = 15, 15 + 7 = 22"}
    q = rl.countdown_question(p)
    assert q == "Question: Using the numbers [3, 5, 7], create an equation that equals 22.\nAnswer: "
    ctx = rl.countdown_context({"numbers": [1, 2, 3], "target": 9}, [p] * 4)
    assert ctx.count("Answer:  3 * 5 = 15, 15 + 7 = 22\n\n") == 4 and ctx.endswith("equals 9.\nAnswer: ")
    f = tmp_path / "cd3.jsonl"
    f.write_text('{"nums": [1, 2, 3], "target": 6}\n{"numbers": [4, 5, 6], "target": 15}\n')
    assert rl.read_countdown_file(f) == [{"numbers": [1, 2, 3], "target": 6}, {"numbers": [4, 5, 6], "target": 15}]
    f.write_text('[{"nums": [1, 2], "target": 6}]')
    with pytest.raises(ValueError, match=r"cd3.jsonl item 0 is not"):
        rl.read_countdown_file(f)


def test_rouge_scores_by_hand(rl):
    assert rl.rouge_n("The cat sat.", "the cat ran", 1) == pytest.approx(2 / 3)   # 2 of 3 unigrams each way
    assert rl.rouge_n("The cat sat.", "the cat ran", 2) == pytest.approx(1 / 2)   # 1 of 2 bigrams
    assert rl.rouge_lsum("a b c d", "a x c y d") == pytest.approx(2 * (3 / 5) * (3 / 4) / (3 / 5 + 3 / 4))
    # two reference lines: the union LCS of each line over the candidate lines
    assert rl.rouge_lsum("a b\nc d", "a c\nb d") == pytest.approx(1.0)
    s = rl.score_truthfulqa("I have no comment.", ["Paris is the capital."], ["Lyon is the capital."])
    assert s["rouge1"] == pytest.approx(100.0 - 100 * rl.rouge_n("Lyon is the capital.", "I have no comment.", 1))
    s = rl.score_truthfulqa("Lyon is the capital.", ["Paris is the capital."], ["Lyon is the capital."])
    assert s["rouge1"] == pytest.approx(100 * (3 / 4 - 1)) and s["rougeL"] == pytest.approx(-25.0)


def test_answers_are_cut_at_stop_strings_then_decoded_without_specials(rl, llada_dir):
    tok = load_model(llada_dir).tokenizer
    ids = tok("12 + 3 = 15\nQuestion: no", add_special_tokens=False)["input_ids"]
    assert rl.cut_answer(tok, ids, ["Question:"]) == "12 + 3 = 15\n"
    ids = tok("7 * 2 = 14<|eot_id|><|endoftext|>more", add_special_tokens=False)["input_ids"]
    assert rl.cut_answer(tok, ids, ["Question:"]) == "7 * 2 = 14"
    ids = tok("<|startoftext|>fine<|endoftext|>x", add_special_tokens=False)["input_ids"]
    assert rl.cut_answer(tok, ids, []) == "fine"


# ------------------------------------------------------------------------------ GPU (CUDA only)
# scripts/gpu_check.sh runs these with `pytest -m gpu` on a CUDA machine; elsewhere they are skipped.

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device: run scripts/gpu_check.sh")


def _agree(out: torch.Tensor, ref: torch.Tensor, rows: torch.Tensor) -> None:
    """bf16 logits against float32 ones: finite, probabilities within 0.05, mostly the same argmax."""
    out, ref = out.float().cpu()[rows], ref[rows]
    assert torch.isfinite(out).all()
    assert (torch.softmax(out, -1) - torch.softmax(ref, -1)).abs().max().item() < 0.05
    assert (out.argmax(-1) == ref.argmax(-1)).float().mean().item() > 0.8


@pytest.mark.gpu
@needs_cuda
def test_gpu_bf16_llada_and_dream_follow_cpu_float32(llada_dir, dream_dir):
    for directory in (llada_dir, dream_dir):
        cpu, gpu = load_model(directory), load_model(directory, device="cuda")
        assert gpu.dtype == torch.bfloat16 and gpu.device.type == "cuda"   # bf16 by default on CUDA
        assert all(p.device.type == "cuda" and p.dtype == torch.bfloat16 for p in gpu.model.parameters())
        z = tokens(cpu, batch=3, length=40, seed=11)
        pad = torch.zeros(z.shape, dtype=torch.bool)
        pad[0, :6] = True
        out = gpu.logits(z.cuda(), pad=pad.cuda())
        assert out.dtype == torch.bfloat16 and out.device.type == "cuda"
        _agree(out, cpu.logits(z, pad=pad), ~pad)
        h = gpu.body(z.cuda(), pad=pad.cuda())
        assert torch.allclose(gpu.head(h[1, 7:9]).float(), out[1, 7:9].float(), atol=0.05, rtol=0.02)


@pytest.mark.gpu
@needs_cuda
def test_gpu_mdlm_dit_follows_cpu_float32_and_samples():
    import copy

    import explorer
    from explorer.models import MDLM, MDLMConfig, MDLMDenoiser

    torch.manual_seed(0)
    net = MDLM(MDLMConfig(vocab_size=37, hidden_dim=32, cond_dim=16, n_blocks=2, n_heads=4, model_length=16))
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 0.3)
    cpu, gpu = MDLMDenoiser(net.eval()), MDLMDenoiser(copy.deepcopy(net).cuda().eval())   # bf16 autocast on CUDA
    z = torch.randint(0, 37, (4, 16), generator=torch.Generator().manual_seed(2))
    _agree(gpu.logits(z.cuda()), cpu.logits(z), torch.ones(4, 16, dtype=torch.bool))
    trace = explorer.generate(gpu, explorer.samplers.ReMDMLoop(), steps=16, num_samples=4, seed=0, progress=False)
    assert trace.complete and not (trace.final == gpu.mask_id).any()


@pytest.mark.gpu
@needs_cuda
def test_gpu_remdm_llada_table3_setting_on_a_tiny_llada(llada_dir):
    import explorer

    den = load_model(llada_dir, device="cuda")
    prompt = den.tokenizer("Question: Using the numbers [3, 5, 7], create an equation that equals 22.\nAnswer: ")
    trace = explorer.generate(den, explorer.samplers.ReMDMLLaDA(remdm_number=1, block_length=32), steps=32,
                              num_samples=2, seed=0, prompt=prompt["input_ids"], gen_length=32, progress=False)
    start = trace.meta["gen_start"]
    assert trace.model_calls == 64       # 2 x 32 iterations; the two rows share each call
    assert torch.equal(trace.final[:, :start], torch.tensor(prompt["input_ids"]).expand(2, -1))
    assert not (trace.final[:, start:] == den.mask_id).any()


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a CUDA machine the script runs the whole 8-minute check")
def test_gpu_check_without_cuda_says_so_and_exits_nonzero(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.sh"
    res = subprocess.run(["bash", str(script)], env={**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path)},
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert "no CUDA device here" in res.stderr
    assert list(tmp_path.iterdir()) == []       # no report pretending something was checked
