"""Native MDLM DiT, HF masked-LM adapter and load_model (reference §1.2, §5)."""
from __future__ import annotations

import hashlib
import json
import math

import pytest
import torch

from explorer.models import MDLM, HFMaskedLMDenoiser, MDLMConfig, MDLMDenoiser, load_model
from explorer.models.dit import Rotary, apply_rotary
from explorer.protocol import check_denoiser

TINY = dict(vocab_size=37, hidden_dim=32, cond_dim=16, n_blocks=2, n_heads=4, model_length=12)

MDLM_OWT_CONFIG = {  # config.json of kuleshov-group/mdlm-owt, key by key (§5.1)
    "architectures": ["MDLM"],
    "auto_map": {"AutoConfig": "configuration_mdlm.MDLMConfig",
                 "AutoModelForMaskedLM": "modeling_mdlm.MDLM"},
    "cond_dim": 128, "dropout": 0.1, "hidden_dim": 768, "model_length": 1024, "model_type": "mdlm",
    "n_blocks": 12, "n_heads": 12, "return_dict": False, "time_conditioning": False,
    "torch_dtype": "float32", "transformers_version": "4.38.2", "vocab_size": 50258,
}


def owt_shapes() -> dict[str, tuple]:
    """The state_dict table of §5.3."""
    s = {
        "backbone.vocab_embed.embedding": (50258, 768),
        "backbone.sigma_map.mlp.0.weight": (128, 256), "backbone.sigma_map.mlp.0.bias": (128,),
        "backbone.sigma_map.mlp.2.weight": (128, 128), "backbone.sigma_map.mlp.2.bias": (128,),
        "backbone.rotary_emb.inv_freq": (32,),
        "backbone.output_layer.norm_final.weight": (768,),
        "backbone.output_layer.linear.weight": (50258, 768), "backbone.output_layer.linear.bias": (50258,),
        "backbone.output_layer.adaLN_modulation.weight": (1536, 128),
        "backbone.output_layer.adaLN_modulation.bias": (1536,),
    }
    for i in range(12):
        b = f"backbone.blocks.{i}."
        s.update({
            b + "norm1.weight": (768,), b + "attn_qkv.weight": (2304, 768), b + "attn_out.weight": (768, 768),
            b + "norm2.weight": (768,), b + "mlp.0.weight": (3072, 768), b + "mlp.0.bias": (3072,),
            b + "mlp.2.weight": (768, 3072), b + "mlp.2.bias": (768,),
            b + "adaLN_modulation.weight": (4608, 128), b + "adaLN_modulation.bias": (4608,),
        })
    return s


def tiny_model(seed: int = 0, **overrides) -> MDLM:
    """A tiny MDLM with every weight random (the DiT init zeroes the adaLN and output layers)."""
    torch.manual_seed(seed)
    model = MDLM(MDLMConfig(**{**TINY, **overrides}))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    return model.eval()


def ids(model: MDLM, batch: int = 2, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, model.config.vocab_size, (batch, model.config.model_length), generator=g)


# ------------------------------------------------------------------------------ architecture

def test_mdlm_owt_keys_shapes_and_parameter_count():
    config = MDLMConfig.from_dict(MDLM_OWT_CONFIG)
    assert config == MDLMConfig() and config.cond_dim == 128 and config.mask_id == 50257
    with torch.device("meta"):
        model = MDLM(config)
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == owt_shapes()
    assert model.num_parameters() == 169_627_218


def test_config_json_layout_round_trip(tmp_path):
    d = MDLMConfig().to_dict()
    for key in ("architectures", "cond_dim", "dropout", "hidden_dim", "model_length", "model_type", "n_blocks",
                "n_heads", "return_dict", "time_conditioning", "torch_dtype", "vocab_size"):
        assert d[key] == MDLM_OWT_CONFIG[key], key
    assert "mask_token_id" not in d
    cfg = MDLMConfig(**TINY, mask_token_id=3)
    (tmp_path / "config.json").write_text(json.dumps(cfg.to_dict()))
    assert MDLMConfig.from_json_file(tmp_path / "config.json") == cfg
    with pytest.raises(NotImplementedError, match="time_conditioning"):
        MDLM(MDLMConfig(**TINY, time_conditioning=True))


def test_dit_mask_token_id_is_a_row_of_the_logits_or_none():
    """The DiT's own mask_token_id (None: the last id) is refused when the config is read or the
    model built if it is not a row of the logits, instead of failing later in the embedding."""
    assert MDLMConfig(**TINY).validate().mask_id == TINY["vocab_size"] - 1
    assert MDLMConfig(**TINY, mask_token_id=0).validate().mask_id == 0
    bad = TINY["vocab_size"]
    with pytest.raises(ValueError, match=rf"mask_token_id={bad} is outside the {bad} output rows \(vocab_size\)"):
        MDLMConfig.from_dict({**TINY, "mask_token_id": bad})
    with pytest.raises(ValueError, match="mask_token_id=-1"):
        MDLM(MDLMConfig(**TINY, mask_token_id=-1))


def test_conditioning_is_the_constant_silu_of_sigma_map_at_zero():
    model = tiny_model()
    features = torch.cat([torch.ones(1, 128), torch.zeros(1, 128)], dim=-1)  # embedding of sigma=0 (§5.2)
    expected = torch.nn.functional.silu(model.backbone.sigma_map.mlp(features))
    assert torch.allclose(model.backbone.conditioning(torch.device("cpu")), expected)


def test_hidden_states_then_output_head_equals_forward():
    model = tiny_model()
    z = ids(model)
    with torch.no_grad():
        logits = model(z)
        h = model.hidden_states(z)
        assert logits.shape == (2, 12, 37) and logits.dtype == torch.float32 and h.shape == (2, 12, 32)
        assert torch.equal(model.output_head(h.flatten(0, 1)).view_as(logits), logits)
        # a subset of rows: equal up to BLAS blocking (a different row count may change the kernel)
        rows = h[[0, 1, 1], [3, 0, 11]]
        assert torch.allclose(model.output_head(rows), logits[[0, 1, 1], [3, 0, 11]], atol=1e-5, rtol=0)


def test_attention_is_bidirectional_and_position_aware():
    model = tiny_model()
    z = ids(model)
    z2 = z.clone()
    z2[:, -1] = (z[:, -1] + 1) % 37
    with torch.no_grad():
        a, b = model(z), model(z2)
        # no causal mask: the last token changes the first position's logits
        assert not torch.allclose(a[:, 0], b[:, 0])
        # rotary: the same tokens in reversed order are not merely reversed outputs
        rev = model(z.flip(1)).flip(1)
        assert not torch.allclose(rev, a, atol=1e-4)


def test_rotary_is_rotate_half_and_relative():
    hd, L = 8, 6
    cos, sin = Rotary(hd)(L, torch.device("cpu"))
    torch.manual_seed(0)
    q, k = torch.randn(1, 1, L, hd), torch.randn(1, 1, L, hd)
    # GPT-NeoX convention: dims i and i + hd/2 form a pair rotated by angle pos * inv_freq[i]
    inv = 1.0 / 10000 ** (torch.arange(0, hd, 2).float() / hd)
    pos = 3
    qc = torch.complex(q[0, 0, pos, : hd // 2], q[0, 0, pos, hd // 2:]) * torch.polar(torch.ones(hd // 2), pos * inv)
    rq = apply_rotary(q, cos, sin)[0, 0, pos]
    assert torch.allclose(rq, torch.cat([qc.real, qc.imag]), atol=1e-6)
    # q_m . k_n depends on m - n only: same vectors at every position
    qs, ks = apply_rotary(q[:, :, :1].expand(1, 1, L, hd), cos, sin), apply_rotary(k[:, :, :1].expand(1, 1, L, hd), cos, sin)
    scores = qs[0, 0] @ ks[0, 0].T
    assert torch.allclose(scores[1, 0], scores[5, 4], atol=1e-5) and torch.allclose(scores[0, 2], scores[3, 5], atol=1e-5)


def test_adaln_chunk_order_gates_are_chunks_two_and_five():
    model = tiny_model()
    block = model.backbone.blocks[0]
    D = model.config.hidden_dim
    x = torch.randn(2, 12, D)
    c = model.backbone.conditioning(torch.device("cpu"))
    cos, sin = model.backbone.rotary_emb(12, x.device)
    with torch.no_grad():
        block.adaLN_modulation.weight.zero_()
        bias = torch.randn(6, D)
        bias[2] = 0.0  # gate_msa
        bias[5] = 0.0  # gate_mlp
        block.adaLN_modulation.bias.copy_(bias.flatten())
        assert torch.equal(block(x, c, cos, sin), x)  # both gates closed: the identity, whatever else
        bias[5] = 1.0
        block.adaLN_modulation.bias.copy_(bias.flatten())
        block.mlp[0].weight.zero_(); block.mlp[0].bias.zero_(); block.mlp[2].weight.zero_()
        assert torch.allclose(block(x, c, cos, sin), x + block.mlp[2].bias)  # mlp branch, gated by chunk 5


def test_fresh_model_follows_dit_init_and_dropout_only_in_training():
    torch.manual_seed(0)
    model = MDLM(MDLMConfig(**TINY))
    z = ids(model)
    with torch.no_grad():
        assert torch.equal(model(z), torch.zeros(2, 12, 37))  # zero-initialised output layer
    model = tiny_model(dropout=0.5)
    with torch.no_grad():
        assert torch.equal(model(z), model(z))
        model.train()
        assert not torch.equal(model(z), model(z))


# ------------------------------------------------------------------------------ checkpoints

def test_save_load_round_trip_identical_logits(tmp_path):
    model = tiny_model()
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "mdlm"
    loaded = MDLM.from_pretrained(tmp_path)
    assert not loaded.training
    z = ids(model)
    with torch.no_grad():
        assert torch.equal(loaded(z), model(z))


def test_pytorch_bin_without_inv_freq_loads(tmp_path):
    model = tiny_model()
    sd = {k: v for k, v in model.state_dict().items() if not k.endswith("inv_freq")}
    torch.save(sd, tmp_path / "pytorch_model.bin")
    (tmp_path / "config.json").write_text(json.dumps(model.config.to_dict()))
    loaded = MDLM.from_pretrained(tmp_path, dtype=torch.bfloat16)
    assert loaded.backbone.vocab_embed.embedding.dtype == torch.bfloat16
    assert loaded.backbone.rotary_emb.inv_freq.dtype == torch.float32
    z = ids(model)
    with torch.no_grad():
        assert torch.allclose(loaded(z), model(z), atol=0.5)  # bf16 weights: close, not equal


def test_mismatched_checkpoint_names_every_tensor(tmp_path):
    from safetensors.torch import save_file

    model = tiny_model()
    sd = dict(model.state_dict())
    del sd["backbone.blocks.1.attn_out.weight"]
    sd["backbone.blocks.0.norm1.bias"] = torch.zeros(32)
    sd["backbone.output_layer.linear.bias"] = torch.zeros(36)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(model.config.to_dict()))
    with pytest.raises(ValueError) as err:
        MDLM.from_pretrained(tmp_path)
    msg = str(err.value)
    assert "missing (1): backbone.blocks.1.attn_out.weight" in msg
    assert "unexpected (1): backbone.blocks.0.norm1.bias" in msg
    assert "backbone.output_layer.linear.bias: file (36,) vs model (37,)" in msg


# ------------------------------------------------------------------------------ denoisers and load_model

def write_word_tokenizer(directory, words, specials_first=("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate([*specials_first, *words])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    fast.save_pretrained(str(directory))
    return len(vocab)


def test_shipped_style_mdlm_loads_by_name_with_mask_tokenizer(tmp_path, monkeypatch):
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = [f"w{i}" for i in range(36)] + ["[MASK]"]  # [MASK] is the last id, as in the shipped models
    d = tmp_path / "models" / "tiny"
    tiny_model().save_pretrained(d)
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(d / "tokenizer.json"))
    monkeypatch.setenv("EXPLORER_DATA_DIR", str(tmp_path))

    den = load_model("tiny")
    assert isinstance(den, MDLMDenoiser)
    check_denoiser(den)
    assert (den.mask_id, den.vocab_size, den.seq_len) == (36, 37, 12)
    assert den.tokenizer.mask_token_id == 36 and den.tokenizer.decode([3, 36]) == "w3 [MASK]"
    assert den.identity == {"name": "tiny",
                            "sha256": hashlib.sha256((d / "model.safetensors").read_bytes()).hexdigest()}
    z = ids(den.model)
    logits = den.logits(z)
    assert logits.dtype == torch.float32 and not logits.requires_grad
    assert torch.allclose(den.head(den.body(z)[0]), logits[0], atol=1e-5, rtol=0)


def test_mdlm_without_tokenizer_warns_and_loads(tmp_path):
    tiny_model().save_pretrained(tmp_path)
    with pytest.warns(UserWarning, match="tokenizer=None"):
        den = load_model(tmp_path)
    assert den.tokenizer is None and den.mask_id == 36


def test_mdlm_owt_style_dir_gets_gpt2_from_the_cache_with_mask_50257(tmp_path, monkeypatch):
    import transformers
    from tokenizers import Tokenizer, models

    tiny_model(vocab_size=50258, hidden_dim=8, cond_dim=4, n_blocks=1, n_heads=2).save_pretrained(tmp_path)
    gpt2_like = transformers.PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(
        {**{f"t{i}": i for i in range(50256)}, "<|endoftext|>": 50256}, unk_token="<|endoftext|>")))
    asked = {}

    def cached_only(name, **kw):
        asked.update(name=name, **kw)
        return gpt2_like

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", cached_only)
    den = load_model(tmp_path)
    assert asked == {"name": "gpt2", "local_files_only": True}  # never a download
    assert den.mask_id == 50257 and den.tokenizer.mask_token_id == 50257

    def not_cached(name, **kw):
        raise OSError("not in the cache")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", not_cached)
    with pytest.warns(UserWarning, match="GPT-2's tokenizer is not in the local HF cache"):
        assert load_model(tmp_path).tokenizer is None


def test_unknown_hub_id_without_download_says_how():
    with pytest.raises(FileNotFoundError, match="allow_download=True"):
        load_model("nobody-here/no-such-model")
    with pytest.raises(FileNotFoundError, match="shipped"):
        load_model("no-such-shipped-model")


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory):
    from transformers import BertConfig, BertForMaskedLM

    d = tmp_path_factory.mktemp("tiny-bert")
    n = write_word_tokenizer(d, [f"w{i}" for i in range(20)])
    config = BertConfig(vocab_size=n, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=16)
    torch.manual_seed(0)
    BertForMaskedLM(config).save_pretrained(str(d))
    return d


def test_hf_masked_lm_adapter(tiny_bert_dir):
    den = load_model(tiny_bert_dir)
    assert isinstance(den, HFMaskedLMDenoiser)
    check_denoiser(den)
    assert (den.mask_id, den.vocab_size, den.seq_len) == (4, 25, 16)
    assert den.fixed_tokens == {0: 2, 15: 3}
    assert den.identity["sha256"] == hashlib.sha256((tiny_bert_dir / "model.safetensors").read_bytes()).hexdigest()
    z = torch.full((2, 16), 4)
    logits = den.logits(z)
    assert logits.shape == (2, 16, 25) and logits.dtype == torch.float32
    assert (logits[..., [0, 1, 2, 3]] < -1e5).all()  # specials other than [MASK] are never sampled
    assert load_model(tiny_bert_dir, seq_len=8).seq_len == 8
    with pytest.raises(ValueError, match="exceeds"):
        load_model(tiny_bert_dir, seq_len=17)


def test_hf_masked_lm_generates_with_every_sampler(tiny_bert_dir):
    """Every registered sampler (new ones included: the registry is iterated) runs on an HF masked
    LM and keeps its [CLS] / [SEP] in place at every step. L = 12, T = 6: ReMDM-LLaDA's plain steps
    need the block length to be a multiple of the steps per block."""
    import explorer
    from explorer.samplers import REGISTRY
    from explorer.samplers.spec import parse_sampler

    assert len(REGISTRY) >= 13
    den = load_model(tiny_bert_dir, seq_len=12)
    for name in REGISTRY:
        trace = explorer.generate(den, parse_sampler(name), steps=6, num_samples=2, seed=0, progress=False)
        for k in range(trace.last_step + 1):
            state = trace.state_at(k)
            assert (state[:, 0] == 2).all() and (state[:, 11] == 3).all(), (name, k)
        assert (trace.final != den.mask_id).all(), name
        assert trace.fixed[:, [0, 11]].all(), name


def test_allowed_download_fetches_only_what_loading_needs(tmp_path, monkeypatch):
    import huggingface_hub

    snapshot = tmp_path / "snapshot"
    model = tiny_model()
    calls = []

    def fake_snapshot_download(repo_id, local_files_only=False, allow_patterns=None, **kw):
        if local_files_only:
            raise FileNotFoundError("not cached")
        calls.append(allow_patterns)
        if "*.bin" in allow_patterns:  # the second, fallback call: an old repo with .bin weights only
            snapshot.mkdir()
            torch.save(model.state_dict(), snapshot / "pytorch_model.bin")
            (snapshot / "config.json").write_text(json.dumps(model.config.to_dict()))
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    with pytest.warns(UserWarning, match="tokenizer=None"):
        den = load_model("someone/tiny-mdlm", allow_download=True)
    assert den.identity["name"] == "someone/tiny-mdlm"
    assert calls[0] == ["*.json", "*.txt", "*.model", "*.safetensors"]  # no remote code, no .bin copy
    assert calls[1] == calls[0] + ["*.bin"]


@pytest.mark.parametrize("arch", ["distilbert", "roberta", "modernbert"])
def test_other_masked_lm_families(tmp_path, arch):
    import transformers as T

    n = write_word_tokenizer(tmp_path, [f"w{i}" for i in range(20)])
    small = dict(num_hidden_layers=1, num_attention_heads=2, hidden_size=16, intermediate_size=32)
    config = {
        "distilbert": lambda: T.DistilBertConfig(vocab_size=n, dim=16, n_layers=1, n_heads=2, hidden_dim=32,
                                                 max_position_embeddings=32),
        "roberta": lambda: T.RobertaConfig(vocab_size=n, max_position_embeddings=34, pad_token_id=0, **small),
        "modernbert": lambda: T.ModernBertConfig(vocab_size=n, max_position_embeddings=32, pad_token_id=0,
                                                 cls_token_id=2, sep_token_id=3, bos_token_id=2,
                                                 eos_token_id=3, **small),
    }[arch]()
    torch.manual_seed(0)
    T.AutoModelForMaskedLM.from_config(config).save_pretrained(str(tmp_path))
    den = load_model(tmp_path)
    assert den.seq_len == 32 and den.fixed_tokens == {0: 2, 31: 3}  # RoBERTa: 34 positions minus its offset
    assert den.logits(torch.full((1, 32), den.mask_id)).shape == (1, 32, n)


def test_load_model_applies_fixed_tokens_from_config(tmp_path):
    """config.json's fixed_tokens (written by explorer.train) reach the engine through load_model."""
    import json

    import explorer
    from explorer.models.dit import MDLM, MDLMConfig
    from explorer.samplers import ReMDMCap

    torch.manual_seed(0)
    net = MDLM(MDLMConfig(vocab_size=12, hidden_dim=32, cond_dim=16, n_blocks=1, n_heads=2, model_length=6,
                          dropout=0.0))
    net.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["fixed_tokens"] = {"0": 3}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.warns(UserWarning):
        model = explorer.load_model(str(tmp_path))
    assert model.fixed_tokens == {0: 3}
    tr = explorer.generate(model, ReMDMCap(0.5), 6, num_samples=4, progress=False)
    assert (tr.final[:, 0] == 3).all() and tr.fixed[:, 0].all()
