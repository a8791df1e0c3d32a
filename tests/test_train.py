"""The training recipe: loss, EMA warm-up, a tiny run that learns, exact resume, export."""
from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer

from explorer import cli
from explorer.models.dit import MDLM
from explorer.tasks import orders
from explorer.train import EMA, TrainConfig, heldout_nelbo, sample_times, train

TINY = dict(task="orders", batch_size=4, lr=3e-3, warmup=5, hidden_dim=32, n_blocks=1, n_heads=2, cond_dim=16,
            eval_n=32, threads=1, progress=False)


def main(**settings) -> dict:
    """A tiny training run through the library's typed entry point."""
    return train(TrainConfig(**{**TINY, **settings}))


def test_antithetic_times_cover_the_interval():
    t = sample_times(8, torch.Generator().manual_seed(0))
    assert t.min() >= 1e-3 and t.max() <= 1
    gaps = torch.sort(t).values.diff()
    assert torch.allclose(gaps, torch.full_like(gaps, (1 - 1e-3) / 8), atol=1e-6)


def test_ema_warm_up():
    model = torch.nn.Linear(2, 1)
    w0 = model.weight.detach().clone()
    ema = EMA(model, decay=0.9999)
    assert ema.current_decay() == 0.1  # (1 + 0) / (10 + 0): short runs are not stuck at init
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)  # first update uses decay (1 + 1) / (10 + 1)
    d = 2 / 11
    assert torch.allclose(ema.shadow["weight"], d * w0 + (1 - d) * torch.ones(1, 2))
    ema.num_updates = 10**6
    assert ema.current_decay() == 0.9999  # long runs: exactly upstream's decay


def test_tiny_run_lowers_the_loss(tmp_path):
    out = tmp_path / "run"
    summary = main(out=out, steps=60, eval_every=60, ckpt_every=60, export=tmp_path / "export")
    # an untrained SUBS model is uniform over the V-1 real tokens: NELBO = log(V-1) per token
    untrained = math.log(orders.VOCAB_SIZE - 1)
    assert summary["step"] == 60
    assert summary["val_nelbo"] < untrained - 0.3
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert any("val_nelbo" in r for r in rows)

    export = tmp_path / "export"
    assert {p.name for p in export.iterdir()} >= {"config.json", "model.safetensors", "tokenizer.json", "README.md"}
    model = MDLM.from_pretrained(export)
    config = json.loads((export / "config.json").read_text())
    # the template's anchors: "order" at each record start
    assert config["fixed_tokens"] == {str(p): orders.TOKEN_ID["order"] for p in range(0, orders.SEQ_LEN, 16)}
    assert model.config.vocab_size == orders.VOCAB_SIZE and model.config.model_length == orders.SEQ_LEN
    nelbo = heldout_nelbo(model, orders.eval_tensor(32, 0), orders.MASK_ID, seed=0)
    assert abs(nelbo - summary["val_nelbo"]) < 1e-4  # the exported weights are the EMA ones
    tok = Tokenizer.from_file(str(export / "tokenizer.json"))
    assert tok.token_to_id("[MASK]") == model.config.vocab_size - 1
    card = (export / "README.md").read_text()
    assert "explorer train --task orders" in card and "--hidden-dim 32" in card


def test_resume_continues_exactly(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    args = dict(eval_every=1000, ckpt_every=10)
    main(**args, out=straight, steps=20)
    main(**args, out=split, steps=10)
    summary = main(**args, out=split, steps=20, resume=True)
    assert summary["step"] == 20
    a = torch.load(straight / "checkpoint.pt", weights_only=False)
    b = torch.load(split / "checkpoint.pt", weights_only=False)
    assert a["step"] == b["step"] == 20
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for key in a["ema"]["shadow"]:
        assert torch.equal(a["ema"]["shadow"][key], b["ema"]["shadow"][key]), key


def test_init_from_starts_at_the_exported_weights(tmp_path):
    """--init-from: a fine-tune starts from an exported model's weights (here, checked at step 0
    through a zero learning rate), and a model of another architecture is refused by name."""
    from safetensors.torch import load_file

    main(out=tmp_path / "a", steps=5, eval_every=1000, ckpt_every=1000, export=tmp_path / "exp")
    main(out=tmp_path / "b", steps=1, lr=0, eval_every=1000, ckpt_every=1, init_from=tmp_path / "exp")
    main(out=tmp_path / "b", steps=1, resume=True, export=tmp_path / "exp_b", init_from=tmp_path / "exp")
    assert f"fine-tuned from the weights in `{tmp_path / 'exp'}`" in (tmp_path / "exp_b" / "README.md").read_text()
    start = load_file(str(tmp_path / "exp" / "model.safetensors"))
    after = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)["model"]
    assert start.keys() == after.keys()
    for key in start:
        assert torch.equal(start[key], after[key]), key
    with pytest.raises(ValueError, match="do not fit this architecture"):
        main(out=tmp_path / "c", steps=1, hidden_dim=48, init_from=tmp_path / "exp")
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        main(out=tmp_path / "d", steps=1, init_from=tmp_path)


def test_export_after_the_last_step_reads_the_loss_from_the_log(tmp_path):
    """Resuming at the last step only exports; the card's training loss then comes from the log
    (the mean of the 50-step rows in the last 500 steps), not NaN."""
    out = tmp_path / "run"
    args = dict(out=out, eval_every=1000, ckpt_every=50)
    first = main(**args, steps=100)
    again = main(**args, steps=100, resume=True, export=tmp_path / "export")
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    logged = [r["loss"] for r in rows if "loss" in r]
    assert len(logged) == 2 and again["loss_window"] == 100
    assert again["final_loss"] == pytest.approx(sum(logged) / 2)
    assert again["final_loss"] == pytest.approx(first["final_loss"], rel=1e-6)  # 100 steps either way
    card = (tmp_path / "export" / "README.md").read_text()
    assert "nan" not in card and "trained from scratch" in card


def test_the_config_refuses_bad_settings_by_name():
    for bad, match in ((dict(n_heads=5), "choose a head count"), (dict(ema=1.5), r"ema 1.5 is outside \[0, 1\)"),
                       (dict(task="poems"), "unknown task 'poems'"), (dict(steps=0), "steps must be"),
                       (dict(schedule="linear"), "schedule 'linear'")):
        with pytest.raises(ValueError, match=match):
            TrainConfig(**{**TINY, "out": "run", **bad})


def test_the_command_line_builds_the_same_config_and_names_the_command(tmp_path, capsys):
    argv = ["train", "--task", "orders", "--out", str(tmp_path / "run"), "--steps", "2", "--batch-size", "4",
            "--hidden-dim", "32", "--n-blocks", "1", "--n-heads", "2", "--cond-dim", "16", "--eval-n", "8",
            "--threads", "1", "--no-progress", "--export", str(tmp_path / "exp")]
    assert cli.main(argv) == 0
    card = (tmp_path / "exp" / "README.md").read_text()
    assert "Command: `explorer train --task orders --out" in card
    config = TrainConfig(task="orders", out=tmp_path / "run", steps=2, batch_size=4, hidden_dim=32, n_blocks=1,
                         n_heads=2, cond_dim=16, eval_n=8, threads=1, progress=False, export=tmp_path / "exp")
    parsed = cli.COMMANDS["train"].parser().parse_args(argv[1:])
    assert cli.train.config_from_args(parsed) == config
    assert config.command_line().startswith("explorer train --task orders --out ")


CLI_TINY = ["train", "--task", "orders", "--steps", "2", "--batch-size", "4", "--hidden-dim", "16", "--n-blocks",
            "1", "--n-heads", "2", "--cond-dim", "8", "--eval-n", "8", "--threads", "1", "--no-progress"]


def test_a_folder_that_holds_a_run_is_resumed_never_overwritten(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main([*CLI_TINY, "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    assert cli.main([*CLI_TINY, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "already holds a training run" in err and "--resume" in err and "Traceback" not in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    with pytest.raises(ValueError, match="already holds a training run"):
        main(out=out, steps=2)


def test_resume_with_another_architecture_names_the_settings(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main([*CLI_TINY, "--out", str(out)]) == 0
    capsys.readouterr()
    wider = [*CLI_TINY, "--out", str(out), "--resume", "--steps", "4"]
    wider[wider.index("--hidden-dim") + 1] = "32"
    assert cli.main(wider) == 2
    err = capsys.readouterr().err
    assert "another architecture" in err and "hidden_dim 16 there, 32 now" in err and "--hidden-dim 16" in err
    assert "size mismatch" not in err and len(err.strip().splitlines()) == 2


def test_summary_json_is_standard_json():
    """No NaN / Infinity (a summary before any evaluation): null, which every JSON reader parses."""
    from explorer.train import json_text

    def strict(word):
        raise ValueError(f"non-standard JSON {word}")
    back = json.loads(json_text({"val_nelbo": float("nan"), "ppl": float("inf"), "step": 3}), parse_constant=strict)
    assert back == {"val_nelbo": None, "ppl": None, "step": 3}
