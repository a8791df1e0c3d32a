"""Prompted, variable-length sampling on LLaDA / Dream (llada-dream reference §3, §4.1-§4.5).

Tiny random checkpoints in the published layouts (explorer.models.random_checkpoint) stand in
for the 8B models: the samplers' promises (counts, windows, confidences, padding, laws) do not
depend on the weights being trained.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import explorer
from explorer import engine, rng
from explorer.models import load_model
from explorer.models.random_checkpoint import special_ids, write_random_checkpoint
from explorer.samplers import (MDLM, ConfidenceOrdered, DreamSampler, LLaDALowConfidence, ReMDMCap, ReMDMConf, ReMDMLLaDA,
                               ReMDMLoop, by_name, from_config)
from explorer.prompts import prompt_list
from explorer.trace import Trace

COUNTDOWN = "Question: Using the numbers [3, 5, 7], create an equation that equals 22.\nAnswer: "


@pytest.fixture(scope="module")
def llada(tmp_path_factory):
    return load_model(write_random_checkpoint(tmp_path_factory.mktemp("llada"), "llada"))


@pytest.fixture(scope="module")
def dream(tmp_path_factory):
    return load_model(write_random_checkpoint(tmp_path_factory.mktemp("dream"), "dream"))


def gen(model, sampler, steps, prompt=COUNTDOWN, gen_length=32, n=2, seed=0, **kw):
    return explorer.generate(model, sampler, steps, num_samples=n, seed=seed, prompt=prompt,
                             gen_length=gen_length, progress=False, **kw)


def per_step(ev, kind, sample, steps):
    e = ev[(ev.kind == kind) & (ev["sample"] == sample)]
    return np.bincount(e.step, minlength=steps + 1)[1:steps + 1]


# ------------------------------------------------------------------ ReMDM-LLaDA at the Table-3 setting
@pytest.mark.parametrize("remdm_number", [1, 4])      # Countdown, TruthfulQA
def test_remdm_llada_table3_setting(llada, remdm_number):
    tr = gen(llada, ReMDMLLaDA(remdm_number=remdm_number, block_length=32), 32)
    g = tr.meta["gen_start"]
    assert tr.model_calls == 64 and tr.nfe.tolist() == [64, 64]          # 2 x steps per sample
    assert torch.equal(tr.final[:, :g], tr.initial[:, :g])               # prompt intact
    assert not (tr.final == llada.mask_id).any()
    ev = tr.events
    assert not (ev.reason == "final_argmax").any()
    for b in range(2):
        re, un = per_step(ev, "remask", b, 64), per_step(ev, "unmask", b, 64)
        window = np.zeros(64, bool)
        window[28:60] = True                                             # R = int(32 / 8 * 7) = 28
        assert (re[window] == remdm_number).all() and (re[~window] == 0).all()
        assert (un[window] == remdm_number).all() and (un[~window] == 1).all()
    assert (tr.steps.phase == "remask").to_numpy().tolist() == window.tolist()
    # every remask takes the lowest confidence cached at decode time among the decoded tokens
    remasks = ev[ev.kind == "remask"]
    for (b, k), grp in remasks.groupby(["sample", "step"]):
        before_prob = tr.prob_at(k - 1)[b].float()
        decoded = (tr.state_at(k - 1)[b] != llada.mask_id) & ~tr.fixed[b]
        chosen = torch.zeros_like(decoded)
        chosen[grp.position.tolist()] = True
        assert torch.equal(before_prob[chosen], torch.tensor(grp.sort_values("position").prob.tolist(), dtype=torch.float32))
        assert before_prob[chosen].max() <= before_prob[decoded & ~chosen].min()
    assert (remasks.position >= g).all() and (remasks.reason == "confidence").all()
    quiet = gen(llada, ReMDMLLaDA(remdm_number=remdm_number, block_length=32), 32, record=False)
    assert torch.equal(quiet.final, tr.final) and quiet.nfe.tolist() == [64, 64]


def test_remdm_llada_prob_is_the_float64_confidence_of_the_drawn_token(llada):
    tr = gen(llada, ReMDMLLaDA(remdm_number=1, block_length=32), 32, n=1)
    ev = tr.events[tr.events.kind == "unmask"]
    remasked = tr.events[tr.events.kind == "remask"]
    for _, e in ev[ev.step.isin([1, 30, 64])].iterrows():
        z = tr.state_at(int(e.step) - 1)                  # in the window the remask comes before the call
        z[0, remasked[remasked.step == e.step].position.tolist()] = llada.mask_id
        p = torch.softmax(llada.logits(z)[0, int(e.position)].double(), -1)   # full vocabulary (§4.3)
        assert e.prob == pytest.approx(float(p[int(e.token_id)]), rel=1e-5)


def test_llada_baseline_one_token_per_step_and_no_remask(llada):
    tr = gen(llada, LLaDALowConfidence(block_length=32, temperature=1.0, confidence_dtype="float64"), 32)
    assert tr.model_calls == 32 and tr.nfe.tolist() == [32, 32]
    ev = tr.events
    assert (ev.kind == "unmask").all() and not (ev.reason == "final_argmax").any()
    for b in range(2):
        assert (per_step(ev, "unmask", b, 32) == 1).all()
    assert not (tr.final == llada.mask_id).any()


def get_num_transfer_tokens(m: int, s: int) -> list[int]:
    """LLaDA's schedule (§4.1): floor(M / s) per step, one more in the first M mod s steps."""
    return [m // s + (i < m % s) for i in range(s)]


def test_llada_blocks_follow_get_num_transfer_tokens_and_stay_in_their_block(llada):
    tr = gen(llada, LLaDALowConfidence(block_length=10, temperature=0.5), 6, gen_length=20)
    g = tr.meta["gen_start"]
    ev = tr.events
    want = get_num_transfer_tokens(10, 3) * 2
    for b in range(2):
        assert per_step(ev, "unmask", b, 6).tolist() == want == [4, 3, 3, 4, 3, 3]
    block = (ev.position - g) // 10
    assert ((ev.step - 1) // 3 == block).all()            # nothing decoded beyond the current block


def test_confidence_in_the_logits_dtype_or_float64(llada):
    """generate.py ranks by softmax in the logits dtype (§4.1 item 4), llada_conf_sample in float64 (§4.3)."""
    logits = (torch.randn(3, 20, generator=torch.Generator().manual_seed(0)) * 3).to(torch.bfloat16)
    u = engine._RowUniforms(0, [0], 1, torch.zeros(3, dtype=torch.long), torch.arange(3))
    tok, c16 = LLaDALowConfidence(temperature=1.0).draw(logits, 19, u)
    tok64, c64 = LLaDALowConfidence(temperature=1.0, confidence_dtype="float64").draw(logits, 19, u)
    assert torch.equal(tok, tok64)
    assert torch.equal(c16, torch.softmax(logits, -1).gather(-1, tok[:, None]).squeeze(-1).double())
    assert torch.allclose(c64, torch.softmax(logits.double(), -1).gather(-1, tok[:, None]).squeeze(-1), rtol=1e-12)
    assert not torch.equal(c16, c64)
    with pytest.raises(ValueError, match="confidence_dtype must be 'logits'"):
        LLaDALowConfidence(confidence_dtype="bf16")


def test_llada_greedy_decodes_the_most_confident_argmax(llada):
    tr = gen(llada, LLaDALowConfidence(temperature=0.0), 8, gen_length=8, n=1)
    z = tr.initial
    p = torch.softmax(llada.logits(z)[0], -1)
    p[:, llada.mask_id] = 0
    conf, tok = p[tr.meta["gen_start"]:].max(-1)
    first = tr.events[tr.events.step == 1].iloc[0]
    assert first.position - tr.meta["gen_start"] == int(conf.argmax())
    assert first.token_id == int(tok[conf.argmax()])
    assert first.prob == pytest.approx(float(conf.max()), rel=1e-5)


def test_cfg_scale_second_pass_with_prompt_masked(llada):
    s = LLaDALowConfidence(temperature=0.0, cfg_scale=1.5)
    tr = gen(llada, s, 4, gen_length=4, n=1)
    assert tr.model_calls == 8 and tr.nfe.tolist() == [8]
    z = tr.initial
    un_z = torch.where(tr.fixed, torch.full_like(z, llada.mask_id), z)
    cond, un = llada.logits(z)[0], llada.logits(un_z)[0]
    logits = un + 2.5 * (cond - un)
    logits[:, llada.mask_id] = -torch.inf
    conf, tok = torch.softmax(logits, -1)[tr.meta["gen_start"]:].max(-1)
    first = tr.events[tr.events.step == 1].iloc[0]
    assert first.position - tr.meta["gen_start"] == int(conf.argmax()) and first.token_id == int(tok[conf.argmax()])


def test_random_remasking_variant_and_config_roundtrip(llada):
    for s in (LLaDALowConfidence(block_length=8, temperature=1.0, remasking="random"),
              ReMDMLLaDA(remdm_number=4, block_length=16), DreamSampler(alg="entropy", top_p=0.9, alg_temp=0.1)):
        again = from_config(s.config)
        assert again == s and by_name(s.name, **{k: v for k, v in s.config.items() if k != "name"}) == s
    tr = gen(llada, LLaDALowConfidence(block_length=8, temperature=1.0, remasking="random"), 8, gen_length=16)
    probs = tr.events.prob
    assert ((probs > 0) & (probs < 1)).all() and tr.events.kind.eq("unmask").all()


# ------------------------------------------------------------------ straightforward transcriptions of upstream
# Each loops over the whole canvas exactly as the upstream code reads (reference §4.1, §4.2, §4.3),
# with the engine's counter-based uniforms standing in for torch's generator, and the one
# documented change: the mask id is never drawn.
def race_uniforms(seed, step, gen_start, gen_length, width):
    u = engine._RowUniforms(seed, [0], step, torch.zeros(gen_length, dtype=torch.long), torch.arange(gen_length))
    return u.race(width)


def upstream_llada_generate(model, prompt, steps, gen_length, block_length, temperature, cfg_scale, seed=0,
                            remasking="low_confidence", logits_eos_inf=False, confidence_eos_eot_inf=False,
                            eos=None, eot=None):
    """LLaDA generate.py (§4.1), batch 1."""
    mask, P = model.mask_id, len(prompt)
    x = torch.tensor(prompt + [mask] * gen_length)[None]
    prompt_index = x != mask
    blocks = gen_length // block_length
    per_block = steps // blocks
    for b in range(blocks):
        m = int((x[:, P + b * block_length:P + (b + 1) * block_length] == mask).sum())
        schedule = get_num_transfer_tokens(m, per_block)
        for i in range(per_block):
            mask_index = x == mask
            logits = model.logits(x)
            if cfg_scale > 0:
                un_x = x.clone()
                un_x[prompt_index] = mask
                un = model.logits(un_x)
                logits = un + (cfg_scale + 1) * (logits - un)
            if logits_eos_inf:                            # L91-92
                logits = logits.clone()
                logits[..., eos] = -torch.inf
            noisy = logits.double().clone()
            noisy[..., mask] = -torch.inf                 # the documented change: never draw the mask
            if temperature > 0:
                u = torch.ones(x.shape[1], model.vocab_size, dtype=torch.float64) * 0.5
                u[P:] = race_uniforms(seed, b * per_block + i + 1, P, gen_length, model.vocab_size)
                noisy = noisy.exp() / (-torch.log(u)) ** temperature
            x0 = noisy.argmax(-1)
            if confidence_eos_eot_inf:                    # L98: EOS in the noisy logits (too late), EoT in logits
                noisy[..., eos] = -torch.inf
                logits = logits.clone()
                logits[..., eot] = -torch.inf
            x0_p = torch.softmax(logits, -1).gather(-1, x0[..., None]).squeeze(-1).double()
            if remasking == "random":
                x0_p = torch.zeros(x.shape, dtype=torch.float64)
                x0_p[0, P:] = engine._RowUniforms(seed, [0], b * per_block + i + 1, torch.zeros(gen_length, dtype=torch.long),
                                                  torch.arange(gen_length)).one(rng.RANK)
            x0_p[:, P + (b + 1) * block_length:] = -torch.inf
            x0 = torch.where(mask_index, x0, x)
            confidence = torch.where(mask_index, x0_p, torch.full_like(x0_p, -torch.inf))
            idx = torch.topk(confidence[0], schedule[i]).indices
            x[0, idx] = x0[0, idx]
    return x[0]


def upstream_remdm_llada(model, prompt, steps, gen_length, block_length, remdm_number, seed=0):
    """ReMDM-LLaDA llada_remdm_sample (§4.3), batch 1, with the window R = int(steps_per_block / 8 * 7)."""
    mask, P = model.mask_id, len(prompt)
    x = torch.tensor(prompt + [mask] * gen_length)[None]
    blocks = gen_length // block_length
    per_block = steps // blocks
    k = gen_length // steps
    for b in range(blocks):
        cache = torch.full(x.shape, torch.inf, dtype=torch.float64)
        r = int(per_block / 8 * 7)
        for i in range(2 * per_block):
            window = r <= i < r + per_block
            if window:
                idx = torch.topk(cache[0].float(), remdm_number, largest=False).indices
                cache[0, idx] = torch.inf
                x[0, idx] = mask
            mask_index = x == mask
            p = torch.softmax(model.logits(x).double(), -1)
            w = p[0, P:].clone()
            w[:, mask] = 0
            u = race_uniforms(seed, b * 2 * per_block + i + 1, P, gen_length, model.vocab_size)
            x0 = torch.cat([x[0, :P], (w / (1e-10 - torch.log(u + 1e-10))).argmax(-1)])[None]
            x0_p = p.gather(-1, x0[..., None]).squeeze(-1)
            x0_p[:, P + (b + 1) * block_length:] = -torch.inf
            x0 = torch.where(mask_index, x0, x)
            confidence = torch.where(mask_index, x0_p, torch.full_like(x0_p, -torch.inf))
            idx = torch.topk(confidence[0], remdm_number if window else k).indices
            x[0, idx] = x0[0, idx]
            cache[0, idx] = confidence[0, idx]
    return x[0]


@pytest.mark.parametrize("setting", [dict(steps=32, gen_length=32, block_length=32),
                                     dict(steps=16, gen_length=32, block_length=16)], ids=["table3", "two-blocks"])
def test_remdm_llada_equals_the_upstream_loop(llada, setting):
    prompt = llada.tokenizer(COUNTDOWN)["input_ids"]
    want = upstream_remdm_llada(llada, prompt, remdm_number=2, **setting)
    tr = gen(llada, ReMDMLLaDA(remdm_number=2, block_length=setting["block_length"]), setting["steps"],
             prompt=prompt, gen_length=setting["gen_length"], n=1)
    assert torch.equal(tr.final[0], want)


@pytest.mark.parametrize("temperature,cfg_scale,remasking", [(0.0, 0.0, "low_confidence"), (0.7, 0.0, "low_confidence"),
                                                             (0.0, 1.0, "low_confidence"), (1.0, 0.0, "random")])
def test_llada_low_confidence_equals_generate_py(llada, temperature, cfg_scale, remasking):
    prompt = llada.tokenizer(COUNTDOWN)["input_ids"]
    want = upstream_llada_generate(llada, prompt, 12, 24, 8, temperature, cfg_scale, remasking=remasking)
    s = LLaDALowConfidence(block_length=8, temperature=temperature, cfg_scale=cfg_scale, remasking=remasking)
    tr = gen(llada, s, 12, prompt=prompt, gen_length=24, n=1)
    assert torch.equal(tr.final[0], want)


def test_dream_maskgit_plus_equals_the_upstream_loop_with_padding(dream):
    """Dream _sample (§4.2) with alg maskgit_plus at temperature 0, two left-padded prompts; the
    per-row count is the documented change (upstream averages it over the batch)."""
    s = DreamSampler(alg="maskgit_plus")
    tr = gen(dream, s, 6, prompt=["Hi", COUNTDOWN], gen_length=12, n=1)
    x = tr.initial.clone()
    pad = torch.zeros_like(x, dtype=torch.bool)
    for r, n in enumerate(tr.meta["pad_lengths"]):
        pad[r, :n] = True
    ts = torch.linspace(1, s.eps, 7)
    for i in range(6):
        mask_index = x == dream.mask_id
        logits = dream.logits(x, pad=pad)
        logits[..., dream.mask_id] = -torch.inf
        confidence, x0 = torch.softmax(logits, -1).max(-1)
        full = torch.where(mask_index, confidence, torch.full_like(confidence, -torch.inf))
        for r in range(2):
            m = int(mask_index[r].sum())
            n = int(m * (1 - ts[i + 1] / ts[i])) if i < 5 else m
            idx = torch.topk(full[r], n).indices
            x[r, idx] = x0[r, idx]
    assert torch.equal(tr.final, x)


# ------------------------------------------------------------------ the draw's law
@pytest.mark.parametrize("sampler", [LLaDALowConfidence(temperature=1.0), ReMDMLLaDA()], ids=["gumbel", "race"])
def test_temperature_one_draw_has_the_exact_categorical_law(sampler):
    """Chi-square goodness of fit, 40,000 draws, fixed seed; df = 4, reject above the 0.999 quantile
    (18.47): a correct draw fails with probability 0.001 for a random seed, never for this one."""
    logits = torch.tensor([0.3, -1.2, 1.0, 2.0, 0.0, 0.7])      # class 5 is the mask
    mask_id, n = 5, 40_000
    rows = logits.expand(n, -1)
    u = engine._RowUniforms(seed=3, sample_list=[0], step=1, b=torch.zeros(n, dtype=torch.long),
                            counter=torch.arange(n))
    tok, conf = sampler.draw(rows, mask_id, u)
    counts = np.bincount(tok.numpy(), minlength=6)
    assert counts[mask_id] == 0                                   # the mask is never drawn
    p = torch.softmax(logits[:5].double(), -1).numpy()
    chi2 = ((counts[:5] - n * p) ** 2 / (n * p)).sum()
    assert chi2 < 18.47, (counts, n * p)
    full = torch.softmax(logits.double(), -1)                     # confidence: p[x0], full vocabulary
    assert torch.allclose(conf, full[tok].double(), rtol=1e-6)


@pytest.mark.parametrize("sampler", [ReMDMLLaDA(remdm_number=2, block_length=16), MDLM(),
                                     DreamSampler(alg="entropy", temperature=1.0)], ids=str)
def test_draw_rows_are_chunked_without_changing_the_samples(llada, sampler, monkeypatch):
    """The engine draws at most _ROW_BUDGET // V rows at once (the head sees no more), and
    chunking changes nothing: no [B, L, V] float64 tensor, same samples."""
    whole = gen(llada, sampler, 4, gen_length=16)            # 4 steps: several rows per step
    rows_seen = []
    real = type(llada).head
    monkeypatch.setattr(type(llada), "head", lambda self, h: (rows_seen.append(h.shape[0]), real(self, h))[1])
    monkeypatch.setattr(engine, "_ROW_BUDGET", 2 * llada.vocab_size)   # two rows per chunk
    chunked = gen(llada, sampler, 4, gen_length=16)
    assert torch.equal(whole.final, chunked.final) and whole.model_calls == chunked.model_calls
    assert max(rows_seen) == 2 and len(rows_seen) > whole.num_steps


# ------------------------------------------------------------------ §4.5 choices
def test_window_scales_with_steps_per_block_and_pool_is_the_current_block(llada):
    """steps != block length: R = int(7/8 * steps per block); two blocks: block 0 is never remasked
    while block 1 runs (the confidence cache is per block)."""
    s = ReMDMLLaDA(remdm_number=2, block_length=16)
    tr = gen(llada, s, 16, gen_length=32, n=1)            # 2 blocks, 8 steps per block, 2 tokens per step
    g = tr.meta["gen_start"]
    assert tr.nfe.tolist() == [32]
    ev = tr.events
    re = per_step(ev, "remask", 0, 32)
    window = np.zeros(16, bool)
    window[7:15] = True                                   # R = int(8 / 8 * 7) = 7, iterations 7..14
    assert (re.reshape(2, 16)[:, window] == 2).all() and (re.reshape(2, 16)[:, ~window] == 0).all()
    remasks = ev[ev.kind == "remask"]
    assert (((remasks.position - g) // 16) == ((remasks.step - 1) // 16)).all()
    assert not (tr.final == llada.mask_id).any()


def test_rows_are_independent_of_the_batch(llada):
    """Per row (§4.5 item 2): a prompt's samples are the same alone or batched with another prompt."""
    s = ReMDMLLaDA(remdm_number=2, block_length=16)
    a, b = COUNTDOWN, COUNTDOWN.replace("22", "31")
    alone = gen(llada, s, 16, prompt=b, gen_length=16, n=2)
    both = gen(llada, s, 16, prompt=[a, b], gen_length=16, n=2, batch_size=3)
    assert torch.equal(both.final[2:], alone.final) and not torch.equal(both.final[:2], alone.final)


class EOSEverywhere:
    """Wraps a model so EOS is by far the likeliest token at every position (no body/head split)."""
    body = head = None

    def __init__(self, model, boost=30.0):
        self.m, self.boost = model, boost

    def __getattr__(self, k):
        return getattr(self.m, k)

    def logits(self, z, pad=None):
        out = self.m.logits(z) if pad is None else self.m.logits(z, pad=pad)
        out = out.clone()
        out[..., self.m.eos_id] += self.boost
        return out


def test_no_eos_early_stop_and_texts_cut_at_eos(llada):
    m = EOSEverywhere(llada)
    tr = gen(m, ReMDMLLaDA(remdm_number=1, block_length=8), 16, gen_length=16, n=1)
    assert tr.nfe.tolist() == [32]                         # both blocks run although block 0 holds EOS
    g = tr.meta["gen_start"]
    gen_ids = tr.final[0, g:].tolist()
    assert llada.eos_id in gen_ids[:8]
    cut = gen_ids.index(llada.eos_id)
    assert tr.texts[0] == llada.tokenizer.decode(gen_ids[:cut])
    assert tr.decode(tr.final)[0] == llada.tokenizer.decode(tr.final[0].tolist())   # the whole canvas


class Boosted(EOSEverywhere):
    """EOS and one more token (standing for end-of-turn) both very likely everywhere."""

    def __init__(self, model, eot, eos_boost=4.0, eot_boost=4.0):
        super().__init__(model, eos_boost)
        self.eot, self.eot_boost = eot, eot_boost

    def logits(self, z, pad=None):
        out = super().logits(z, pad)
        out[..., self.eot] += self.eot_boost
        return out


@pytest.mark.parametrize("eos_inf,eot_inf,temperature", [(True, False, 0.0), (False, True, 0.0), (True, True, 1.0)])
def test_llada_end_of_text_switches_equal_generate_py(llada, eos_inf, eot_inf, temperature):
    eot = 7 if llada.eos_id != 7 else 8
    m = Boosted(llada, eot, eot_boost=8.0 if eot_inf and not eos_inf else 4.0)
    prompt = llada.tokenizer(COUNTDOWN)["input_ids"]
    want = upstream_llada_generate(m, prompt, 12, 24, 8, temperature, 0.0, logits_eos_inf=eos_inf,
                                   confidence_eos_eot_inf=eot_inf, eos=llada.eos_id, eot=eot)
    s = LLaDALowConfidence(block_length=8, temperature=temperature, logits_eos_inf=eos_inf,
                           confidence_eos_eot_inf=eot_inf, eos_id=llada.eos_id, eot_id=eot)
    tr = gen(m, s, 12, prompt=prompt, gen_length=24, n=1)
    assert torch.equal(tr.final[0], want)
    g = tr.meta["gen_start"]
    plain = gen(m, LLaDALowConfidence(block_length=8, temperature=temperature), 12, prompt=prompt, gen_length=24, n=1)
    if eos_inf:       # EOS is the likeliest token everywhere, and never written
        assert llada.eos_id in plain.final[0, g:].tolist() and llada.eos_id not in tr.final[0, g:].tolist()
    if eot_inf and not eos_inf:     # a drawn end-of-turn token has confidence 0: written last in its block
        ev = tr.events
        eot_probs = ev[(ev.kind == "unmask") & (ev.token_id == eot)]["prob"]
        assert len(eot_probs) and (eot_probs == 0).all()


def test_llada_end_of_text_ids_must_fit_the_model(llada):
    with pytest.raises(ValueError, match="eos_id=126081 is outside this model's"):
        gen(llada, LLaDALowConfidence(block_length=8, logits_eos_inf=True), 8, gen_length=8, n=1)
    with pytest.raises(ValueError, match="must be True or False"):
        LLaDALowConfidence(logits_eos_inf=1)


# ------------------------------------------------------------------ prompts
def test_chat_prompt_uses_the_template_and_generation_prompt(llada):
    msgs = [{"role": "user", "content": COUNTDOWN}]
    tk = llada.tokenizer
    want = tk(tk.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False), add_special_tokens=False)["input_ids"]
    tr = gen(llada, LLaDALowConfidence(), 8, prompt=msgs, gen_length=8, n=1)
    ids = special_ids("llada")
    assert tr.initial[0, :tr.meta["gen_start"]].tolist() == want
    assert want[0] == ids["<|startoftext|>"] and want.count(ids["<|startoftext|>"]) == 1
    assert tk.decode(want).endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert tr.meta["stop_ids"] == sorted({llada.eos_id, llada.eot_id})


def test_dream_chat_prompt_gets_the_default_system_turn(dream):
    tr = gen(dream, DreamSampler(), 4, prompt=[{"role": "user", "content": "Hi"}], gen_length=4, n=1)
    text = dream.tokenizer.decode(tr.initial[0, :tr.meta["gen_start"]].tolist())
    assert text == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    assert special_ids("dream")["<|im_end|>"] in tr.meta["stop_ids"]


def test_batched_prompts_of_different_lengths_left_padded(llada, monkeypatch):
    prompts = ["Hi", [{"role": "user", "content": "What is 3 + 4?"}], COUNTDOWN]
    seen = []
    real = type(llada).body
    monkeypatch.setattr(type(llada), "body", lambda self, z, pad=None: (seen.append(pad), real(self, z, pad=pad))[1])
    tr = gen(llada, ReMDMLLaDA(remdm_number=1, block_length=8), 8, prompt=prompts, gen_length=8, n=2)
    g = tr.meta["gen_start"]
    lens = tr.meta["prompt_lengths"]
    assert g == max(lens) and tr.meta["pad_lengths"] == [g - n for n in lens] and tr.num_samples == 6
    for p, n in enumerate(lens):
        for r in (2 * p, 2 * p + 1):                       # prompt-major rows
            assert (tr.initial[r, :g - n] == llada.pad_id).all() and tr.fixed[r, :g].all()
            assert torch.equal(tr.final[r, :g], tr.initial[r, :g])
    assert seen and all(p is not None and p[:, 0].any() and not p[:, g:].any() for p in seen)
    assert not (tr.final == llada.mask_id).any()


def test_prompt_forms():
    chat = [{"role": "user", "content": "a"}]
    assert prompt_list([1, 2]) == [[1, 2]] and prompt_list(chat) == [chat] and prompt_list("ab") == ["ab"]
    assert len(prompt_list(list(np.array([1, 2])))) == 1              # numpy integers are ids too
    assert len(prompt_list([[1, 2], [3]])) == 2 and len(prompt_list([chat, "b", [5]])) == 3
    assert len(prompt_list(torch.tensor([[1, 2], [3, 4]]))) == 2
    with pytest.raises(ValueError, match="not text, a list of token ids or a list of chat messages"):
        prompt_list(["a", 3.5])


def test_unpadded_batches_call_the_model_without_pad(llada, monkeypatch):
    seen = []
    real = type(llada).body
    monkeypatch.setattr(type(llada), "body", lambda self, z, pad=None: (seen.append(pad), real(self, z, pad=pad))[1])
    gen(llada, LLaDALowConfidence(), 4, gen_length=4)
    assert seen and all(p is None for p in seen)


@pytest.mark.parametrize("sampler", [DreamSampler(alg="entropy", temperature=0.7, top_p=0.9),
                                     DreamSampler(alg="origin", temperature=1.0, top_k=50),
                                     DreamSampler(alg="maskgit_plus", temperature=0.5, alg_temp=0.5)],
                         ids=["entropy", "origin", "maskgit-alg-temp"])
def test_dream_padded_row_equals_the_unpadded_row(dream, sampler):
    short, long = "Hi there", COUNTDOWN
    alone = gen(dream, sampler, 8, prompt=short, gen_length=16, n=2)
    both = gen(dream, sampler, 8, prompt=[long, short], gen_length=16, n=2)
    assert both.meta["pad_lengths"][1] > 0
    ga, gb = alone.meta["gen_start"], both.meta["gen_start"]
    assert torch.equal(both.final[2:, gb:], alone.final[:, ga:])
    assert both.texts[2:] == alone.texts
    pa = alone.events.sort_values(["sample", "step", "position"])
    pb = both.events[both.events["sample"] >= 2].sort_values(["sample", "step", "position"])
    assert np.allclose(pa.prob.to_numpy(), pb.prob.to_numpy(), rtol=1e-4, atol=1e-6)


def test_dream_counts_are_per_row_and_follow_the_schedule(dream):
    s = DreamSampler(alg="maskgit_plus", temperature=0.0)
    tr = gen(dream, s, 5, gen_length=16, n=1)
    grid = s.grid(5)
    m, want = 16, []
    for i, st in enumerate(grid):
        n = m if i == 4 else int(torch.tensor(m, dtype=torch.float32) * (1 - torch.tensor(st.s, dtype=torch.float32) / torch.tensor(st.t, dtype=torch.float32)))
        want.append(n)
        m -= n
    assert per_step(tr.events, "unmask", 0, 5).tolist() == want and m == 0
    margin = gen(dream, DreamSampler(alg="topk_margin"), 4, gen_length=8, n=1).events.prob
    assert ((margin >= 0) & (margin <= 1)).all()
    tr = gen(dream, DreamSampler(alg="entropy"), 4, gen_length=8, n=1)
    e = tr.events[tr.events.step == 1]
    p = torch.softmax(dream.logits(tr.initial)[0, e.position.tolist()].double().index_fill(-1, torch.tensor([dream.mask_id]), -torch.inf), -1)
    neg_entropy = (p * torch.log(p + 1e-10)).sum(-1)       # the ranked confidence; prob = exp of it
    assert np.allclose(e.prob.to_numpy(), neg_entropy.exp().numpy(), rtol=1e-4)
    assert ((tr.events.prob > 0) & (tr.events.prob <= 1)).all()


# ------------------------------------------------------------------ the paper's samplers on LLaDA / Dream
@pytest.mark.parametrize("sampler", [MDLM(), ReMDMCap(0.1), ReMDMLoop(eta=0.05), ReMDMConf()], ids=str)
def test_rate_samplers_run_on_prompted_canvases(llada, dream, sampler):
    for m in (llada, dream):
        tr = gen(m, sampler, 12, prompt=["Hi", COUNTDOWN], gen_length=12, n=2)
        g = tr.meta["gen_start"]
        assert torch.equal(tr.final[:, :g], tr.initial[:, :g]) and not (tr.final == m.mask_id).any()
        assert (tr.events.position >= g).all()
        if sampler.remasks and not isinstance(sampler, ReMDMConf):
            assert (tr.events.kind == "remask").any()


def test_ranked_samplers_on_a_fixed_length_model():
    """On a fixed canvas the blocks span the whole sequence; prompt positions are skipped."""
    p = torch.rand(16, 7, generator=torch.Generator().manual_seed(0))
    p[:, -1] = 0
    m = explorer.StubDenoiser(p)
    for s in (ReMDMLLaDA(remdm_number=2, block_length=8), LLaDALowConfidence(block_length=8, temperature=1.0),
              DreamSampler(alg="entropy", temperature=1.0)):
        tr = explorer.generate(m, s, 8, num_samples=3, prompt=[1, 2], progress=False)
        assert (tr.final[:, :2] == torch.tensor([1, 2])).all() and not (tr.final == m.mask_id).any()
        assert (tr.events.position >= 2).all() and (tr.events.reason != "final_argmax").all()


def test_confidence_ordered_blocks_start_after_the_prompt(llada):
    tr = gen(llada, ConfidenceOrdered(block_length=8), 4, prompt=["Hi", COUNTDOWN], gen_length=16)
    g = tr.meta["gen_start"]
    ev = tr.events
    assert (ev.position >= g).all() and (((ev.position - g) // 8) == ((ev.step - 1) // 2)).all()
    assert not (tr.final == llada.mask_id).any()


# ------------------------------------------------------------------ trace files and branches
@pytest.mark.parametrize("alg", ["entropy", "topk_margin"])
def test_dream_confidences_survive_the_trace_files(dream, alg, tmp_path):
    tr = gen(dream, DreamSampler(alg=alg), 4, gen_length=8)
    for path in (tr.to_csv(tmp_path / "t.csv"), tr.to_parquet(tmp_path / "t.parquet")):
        back = Trace.read(path)
        assert back.texts == tr.texts and np.allclose(back.events.prob, tr.events.prob)


def test_trace_roundtrip_and_resume_of_a_prompted_run(llada, tmp_path):
    tr = gen(llada, ReMDMLLaDA(remdm_number=2, block_length=16), 16, prompt=["Hi", COUNTDOWN], gen_length=16)
    for path in (tr.to_parquet(tmp_path / "t.parquet"), tr.to_csv(tmp_path / "t.csv")):
        back = Trace.read(path)
        for k in ("gen_start", "gen_length", "prompt_lengths", "pad_lengths", "stop_ids", "num_prompts",
                  "samples_per_prompt"):
            assert back.meta[k] == tr.meta[k]
        assert back.texts == tr.texts and torch.equal(back.final, tr.final)
    branch = explorer.resume(llada, tr, 10, progress=False)
    assert torch.equal(branch.final, tr.final)
    for k in range(10, tr.last_step + 1):
        assert torch.equal(branch.state_at(k), tr.state_at(k))


# ------------------------------------------------------------------ bad inputs
@pytest.fixture(scope="module")
def llada_no_tokenizer(tmp_path_factory):
    with pytest.warns(UserWarning, match="no tokenizer files"):
        return load_model(write_random_checkpoint(tmp_path_factory.mktemp("bare"), "llada", with_tokenizer=False))


def test_bad_inputs_name_the_fix(llada, llada_no_tokenizer):
    ok = LLaDALowConfidence(block_length=8)
    cases = [
        (lambda: gen(llada, ok, 8, gen_length=12), "not a multiple of block_length"),
        (lambda: gen(llada, ok, 3, gen_length=16), r"not divisible by the number of blocks.*steps=4"),
        (lambda: gen(llada, ok, 8, gen_length=5000), r"over this model's maximum of 4096.*gen_length <="),
        (lambda: gen(llada_no_tokenizer, ok, 8, prompt="hello", gen_length=8), "needs a model with a tokenizer.*token ids"),
        (lambda: gen(llada, ok, 8, gen_length=None), "pass gen_length="),
        (lambda: explorer.generate(explorer.StubDenoiser(torch.tensor([[0.5, 0.5, 0.0]] * 4)), MDLM(), 4,
                                   gen_length=4, progress=False), "drop gen_length"),
        (lambda: explorer.generate(explorer.StubDenoiser(torch.tensor([[0.5, 0.5, 0.0]] * 12)), ok, 4,
                                   progress=False), "gen_length=12 is not a multiple of block_length=8"),
        (lambda: gen(llada, ReMDMLLaDA(remdm_number=29, block_length=32), 32), r"too large for the window.*<= 28"),
        (lambda: gen(llada, ReMDMLLaDA(remdm_number=1, block_length=8), 16, gen_length=8), "one block|steps per block|multiple"),
        (lambda: DreamSampler(alg="greedy"), "unknown Dream alg.*entropy"),
        (lambda: DreamSampler(alg="entropy", alg_temp=-1.0), "alg_temp must be a number >= 0"),
        (lambda: DreamSampler(alg="origin", alg_temp=0.5), "no effect with alg='origin'"),
        (lambda: LLaDALowConfidence(remasking="lowest"), "low_confidence"),
        (lambda: ReMDMLLaDA(remdm_number=0), "positive integer"),
        (lambda: gen(llada, ok, 8, prompt=[1, 2, llada.mask_id], gen_length=8), "not a valid non-mask token"),
        (lambda: gen(llada, ok, 8, prompt=None, gen_length=8), "needs a prompt"),
        (lambda: gen(llada, ok, 8, prompt=[{"text": "hi"}], gen_length=8), "'role' and 'content'"),
    ]
    for fn, pattern in cases:
        with pytest.raises(ValueError, match=pattern):
            fn()


def test_chat_messages_without_a_chat_template(llada):
    bare = copy.copy(llada)
    bare.tokenizer = copy.deepcopy(llada.tokenizer)
    bare.tokenizer.chat_template = None
    with pytest.raises(ValueError, match="chat template.*plain text or token ids"):
        gen(bare, LLaDALowConfidence(), 4, prompt=[{"role": "user", "content": "hi"}], gen_length=4)
