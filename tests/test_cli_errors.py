"""The command line refuses bad input with a short message: exit status 2, at most 4 lines on stderr,
no traceback, the fix named, and no file left behind. Most cases run ``explorer.cli.main`` in
process; one runs the real interpreter."""
from __future__ import annotations

import argparse
import re
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import explorer
from explorer import cli
from explorer.models.dit import MDLM, MDLMConfig
from explorer.cli.common import UsageError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def tiny_model(tmp_path_factory):
    """A small MDLM folder (config.json + model.safetensors) that a test may damage."""
    cfg = MDLMConfig(vocab_size=12, model_length=8, hidden_dim=16, cond_dim=8, n_blocks=1, n_heads=2)
    return MDLM(cfg).save_pretrained(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture
def no_model_loaded(monkeypatch):
    """Fails the test if a model is loaded: the argument checks must come first."""
    calls = []
    monkeypatch.setattr(explorer, "load_model", lambda *a, **k: calls.append(a) or pytest.fail("model loaded"))
    return calls


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")}


def refused(capsys, argv, fix: str, folder: Path) -> str:
    """Run the CLI; assert the short refusal naming ``fix`` and that ``folder`` did not change."""
    before = files_under(folder)
    capsys.readouterr()
    rc = cli.main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert 1 <= len(lines) <= 4, err
    assert "Traceback" not in err
    assert fix in err, err
    assert files_under(folder) == before, "a file was left behind"
    return err


GEN = ["generate", "--model", "orders-oracle", "--steps", "4"]


def test_unknown_model_names_the_cli_flag(capsys, tmp_path):
    err = refused(capsys, ["generate", "--model", "no-such-model", "--steps", "4"], "--allow-download", tmp_path)
    assert "unknown model 'no-such-model'" in err and "allow_download=True" not in err
    assert "orders" in err and "stories-judge" not in err   # a judge LM, refused as an architecture if tried


def test_negative_steps(capsys, tmp_path, no_model_loaded):
    err = refused(capsys, ["generate", "--model", "orders", "--steps", "-3"], "explorer generate --help", tmp_path)
    assert "--steps" in err and ">= 1" in err


def test_unknown_sampler(capsys, tmp_path, no_model_loaded):
    err = refused(capsys, [*GEN, "--sampler", "remdm-magic"], "choose one of", tmp_path)
    assert "remdm-magic" in err and "remdm-loop" in err


def test_eta_out_of_range(capsys, tmp_path, no_model_loaded):
    err = refused(capsys, [*GEN, "--sampler", "remdm-cap", "--settings", '{"eta": 5}'], "--settings", tmp_path)
    assert "eta" in err


def test_settings_that_are_not_json(capsys, tmp_path, no_model_loaded):
    err = refused(capsys, [*GEN, "--settings", "{eta: 0.02}"], """--settings '{"eta": 0.02}'""", tmp_path)
    assert "not valid JSON" in err


def test_out_in_a_missing_folder_is_refused_before_loading(capsys, tmp_path, no_model_loaded):
    out = tmp_path / "missing" / "deeper" / "trace.csv"
    err = refused(capsys, [*GEN, "--out", str(out)], "mkdir -p", tmp_path)
    assert "does not exist" in err and not (tmp_path / "missing").exists() and not no_model_loaded


def test_out_in_an_unwritable_folder(capsys, tmp_path, no_model_loaded):
    # /proc refuses new files even to root (a chmod'ed folder does not stop root)
    err = refused(capsys, [*GEN, "--out", "/proc/trace.csv"], "choose a folder you can write to", tmp_path)
    assert "cannot write in /proc" in err and not os.path.exists("/proc/trace.csv")


def test_out_with_an_unknown_suffix(capsys, tmp_path, no_model_loaded):
    refused(capsys, [*GEN, "--out", str(tmp_path / "trace.txt")], ".csv or .parquet", tmp_path)


def test_damaged_safetensors_names_the_file(capsys, tmp_path, tiny_model):
    weights = tiny_model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated
    err = refused(capsys, ["generate", "--model", str(tiny_model), "--steps", "2"], "complete copy", tmp_path)
    assert str(weights) in err and "damaged" in err


def test_damaged_config_json_names_the_file(capsys, tmp_path, tiny_model):
    config = tiny_model / "config.json"
    config.write_text(config.read_text()[:40])  # cut in the middle of an object
    err = refused(capsys, ["generate", "--model", str(tiny_model), "--steps", "2"], "config.json", tmp_path)
    assert "damaged" in err or "JSON" in err


def test_damaged_hugging_face_folder_names_the_file(capsys, tmp_path, tmp_path_factory, tiny_model):
    # an HF masked-LM folder (model_type bert) whose weights were cut short in a download
    folder = tmp_path_factory.mktemp("hf-model")
    (folder / "config.json").write_text('{"model_type": "bert", "vocab_size": 12}')
    (folder / "model.safetensors").write_bytes((tiny_model / "model.safetensors").read_bytes()[:-64])
    err = refused(capsys, ["generate", "--model", str(folder), "--steps", "2"], "complete copy", tmp_path)
    assert str(folder / "model.safetensors") in err


def test_unknown_command(capsys, tmp_path):
    err = refused(capsys, ["generat"], "choose one of generate, sweep", tmp_path)
    assert "unknown command 'generat'" in err


@pytest.mark.parametrize("option, value, fix", [
    ("--samplers", "mdlm,remdm-cap:0.02", "--samplers mdlm,remdm-cap:eta=0.02"),
    ("--steps", "L/zero,2L", "--steps 16,32,64"),
    ("--metrics", "validity,accuracy", "choose from validity, entropy"),
    ("--seeds", "0,one", "--seeds 0,1,2"),
])
def test_bad_sweep_spec(capsys, tmp_path, no_model_loaded, option, value, fix):
    out = tmp_path / "sweep"
    refused(capsys, ["sweep", "--model", "orders", "--out", str(out), option, value], fix, tmp_path)
    assert not out.exists()


def test_sweep_out_under_a_missing_folder(capsys, tmp_path, no_model_loaded):
    refused(capsys, ["sweep", "--model", "orders", "--out", str(tmp_path / "a" / "b")], "mkdir -p", tmp_path)


def test_train_with_an_unknown_task(capsys, tmp_path):
    err = refused(capsys, ["train", "--task", "poems", "--out", str(tmp_path / "run")], "explorer train --help",
                  tmp_path)
    assert "invalid choice: 'poems'" in err and "orders" in err


@pytest.mark.parametrize("argv, fix", [
    (["--n-heads", "5"], "choose a head count that divides the width"),
    (["--lr", "-1"], "explorer train --help"),
    (["--seed", "-1"], "explorer train --help"),
    (["--weight-decay", "-0.1"], "explorer train --help"),
    (["--ema", "1.5"], "give --ema a value in [0, 1)"),
    (["--init-from", "/no/such/model"], "pass the folder an earlier run exported"),
])
def test_train_with_a_bad_option(capsys, tmp_path, argv, fix):
    refused(capsys, ["train", "--task", "orders", "--out", str(tmp_path / "run"), "--steps", "1", *argv], fix,
            tmp_path)


def test_evaluate_orders_with_a_bad_sampler_spec(capsys, tmp_path, no_model_loaded):
    refused(capsys, ["evaluate-orders", "--samplers", "remdm-cap:eta", "--out", str(tmp_path / "v.csv")],
            'write e.g. --samplers mdlm "remdm-cap:eta=0.02"', tmp_path)


def test_judge_needs_a_subcommand(capsys, tmp_path):
    refused(capsys, ["judge"], "explorer judge --help", tmp_path)


def test_debug_shows_the_traceback(monkeypatch):
    with pytest.raises(UsageError, match="unknown model"):
        cli.main(["generate", "--model", "no-such-model", "--steps", "4", "--debug"])
    monkeypatch.setenv("EXPLORER_DEBUG", "1")
    with pytest.raises(UsageError, match="unknown command"):
        cli.main(["generat"])


def test_a_bug_keeps_its_traceback(monkeypatch):
    monkeypatch.setattr(cli.generate, "format_samples", lambda texts: 1 / 0)  # not a user error
    with pytest.raises(ZeroDivisionError):
        cli.main([*GEN, "--sampler", "mdlm"])


def test_the_real_command_is_short_too(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "explorer.cli", "generate", "--model", "no-such-model",
                           "--steps", "4"], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "EXPLORER_DEBUG": ""})
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("explorer generate: error: unknown model")
    assert "--allow-download" in lines[1]


# ----------------------------------------------------------------------------- help and output

def test_top_level_help_lists_every_command_with_one_line(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name, command in cli.COMMANDS.items():
        assert f"  {name}" in out and command.about in out
    assert "--debug" in out


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_each_command_has_help(capsys, command):
    with pytest.raises(SystemExit) as done:
        cli.main([command, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: explorer {command}") and "--debug" in out


def _parsers():
    """Every command's parser, and each subcommand's (judge train, judge eval), from the one table."""
    out = {}
    for name, command in cli.COMMANDS.items():
        parser = out[name] = command.parser()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                out.update({f"{name} {k}": v for k, v in action.choices.items()})
    return out


def test_the_package_docstring_names_every_command():
    documented = set(re.findall(r"^\* ``([a-z-]+)`` -- :mod:`explorer\.cli\.", cli.__doc__, re.MULTILINE))
    assert documented == set(cli.COMMANDS)


def test_the_table_holds_every_parser():
    assert {"generate", "sweep", "train", "judge", "evaluate-orders", "repair", "corpus", "strategies", "judge train",
            "judge eval"} \
        <= set(_parsers())


def test_every_option_has_help_text():
    for name, parser in _parsers().items():
        for action in parser._actions:
            assert action.help and action.help != argparse.SUPPRESS, f"{name} {action.option_strings} has no help"


def test_several_samples_print_numbered_and_separated(capsys, tmp_path):
    out = tmp_path / "trace.csv"
    assert cli.main([*GEN, "--sampler", "mdlm", "--num-samples", "3", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    blocks = printed.strip().split("\n\n")
    assert [b.splitlines()[0] for b in blocks] == [f"--- sample {i} of 3 ---" for i in (1, 2, 3)]
    assert all(len(b.splitlines()) == 2 and b.splitlines()[1].startswith("order") for b in blocks)
    assert out.is_file() and Path(f"{out}.meta.json").is_file()


@pytest.fixture(scope="module")
def tiny_llada(tmp_path_factory):
    from explorer.models.random_checkpoint import write_random_checkpoint
    return write_random_checkpoint(tmp_path_factory.mktemp("llada") / "tiny", "llada")


def test_variable_length_model_without_gen_length(capsys, tmp_path, tiny_llada):
    refused(capsys, ["generate", "--model", str(tiny_llada), "--steps", "4", "--prompt", "hi"],
            "--gen-length", tmp_path)


def test_gen_length_for_a_fixed_length_model(capsys, tmp_path):
    refused(capsys, GEN + ["--gen-length", "8"], "drop --gen-length", tmp_path)


def test_chat_without_a_prompt(capsys, tmp_path, tiny_llada):
    refused(capsys, ["generate", "--model", str(tiny_llada), "--steps", "4", "--gen-length", "4", "--chat"],
            "--prompt", tmp_path)


def test_chat_prompt_on_llada_writes_a_trace(capsys, tmp_path, tiny_llada):
    out = tmp_path / "run.csv"
    rc = cli.main(["generate", "--model", str(tiny_llada), "--sampler", "llada", "--settings",
                   '{"block_length": 4}', "--steps", "4", "--gen-length", "4", "--prompt", "hello",
                   "--chat", "--num-samples", "2", "--out", str(out)])
    assert rc == 0
    tr = explorer.Trace.read(out)
    assert tr.meta["gen_length"] == 4 and tr.num_samples == 2
    assert not (tr.final == tr.mask_id).any()
    printed = capsys.readouterr().out
    assert "--- sample 2 of 2 ---" in printed


# ----------------------------------------------------------------------------- the one sampler-spec syntax

def test_a_spec_reads_the_same_alone_and_in_a_list():
    from explorer.samplers.spec import SamplerSpec, parse_sampler, parse_samplers, split_specs

    assert split_specs("mdlm, remdm-loop:eta=0.05,nucleus_p=0.9 ,remdm-cap:eta=0.01") == \
        ["mdlm", "remdm-loop:eta=0.05:nucleus_p=0.9", "remdm-cap:eta=0.01"]
    assert split_specs(["mdlm", "remdm-cap:eta=0.02,nucleus_p=0.9"]) == ["mdlm", "remdm-cap:eta=0.02:nucleus_p=0.9"]
    assert SamplerSpec.parse("ReMDM_Loop:eta=0.05,nucleus_p=0.9") == \
        SamplerSpec("remdm-loop", {"eta": 0.05, "nucleus_p": 0.9})
    # JSON values where they are JSON (brackets keep their commas), plain strings otherwise
    assert SamplerSpec.parse("confidence:order=random:x=[1,2]:y=true").settings == \
        {"order": "random", "x": [1, 2], "y": True}
    one = parse_sampler("remdm-loop:eta=0.05,nucleus_p=0.9")
    assert one.config == parse_sampler("remdm-loop:eta=0.05:nucleus_p=0.9").config
    assert (one.eta, one.nucleus_p) == (0.05, 0.9)
    # defaults apply unless the spec sets them; a sampler object passes through
    got = parse_samplers("mdlm,remdm-cap:nucleus_p=0.5", nucleus_p=0.9)
    assert list(got) == ["mdlm", "remdm-cap:nucleus_p=0.5"]
    assert got["mdlm"].nucleus_p == 0.9 and got["remdm-cap:nucleus_p=0.5"].nucleus_p == 0.5
    assert parse_sampler(one) is one and parse_samplers({"a": one, "b": "mdlm"})["a"] is one
    assert str(SamplerSpec.parse("remdm-cap:eta=0.02")) == "remdm-cap:eta=0.02"


@pytest.mark.parametrize("spec, message", [
    ("remdm-magic", "unknown sampler 'remdm-magic'; choose one of mdlm"),
    ("remdm-cap:0.02", "write key=value"),
    ("remdm-cap:eta", "write key=value"),
    ("remdm-cap:eta=5", "remdm-cap: eta=5 is outside"),
    ("mdlm:eta=0.1", "mdlm has no setting 'eta'"),
    ("mdlm,remdm-cap", "holds 2 samplers"),
    ("", "empty sampler spec"),
])
def test_a_bad_spec_says_what_to_write(spec, message):
    from explorer.samplers.spec import SamplerSpecError, parse_sampler

    with pytest.raises(SamplerSpecError, match=re.escape(message)):
        parse_sampler(spec)
    assert issubclass(SamplerSpecError, ValueError)


def test_a_list_refuses_the_same_label_twice():
    from explorer.samplers.spec import SamplerSpecError, parse_samplers

    with pytest.raises(SamplerSpecError, match="listed twice"):
        parse_samplers("mdlm,mdlm")


def test_generate_takes_a_spec_and_json_settings_over_it(capsys, tmp_path):
    out = tmp_path / "t.csv"
    assert cli.main([*GEN, "--sampler", "remdm-cap:eta=0.5", "--settings", '{"nucleus_p": 0.9}', "--out", str(out)]) == 0
    assert explorer.Trace.read(out).meta["sampler"] == {"name": "remdm-cap", "eta": 0.5, "nucleus_p": 0.9}


def test_repair_refuses_a_bad_setting_before_loading(capsys, tmp_path, no_model_loaded):
    refused(capsys, ["repair", "--eta", "5", "--out", str(tmp_path / "r.csv")], "--alpha/--eta", tmp_path)
    refused(capsys, ["repair", "--steps", "0"], "explorer repair --help", tmp_path)


@pytest.fixture
def ctrl_c(monkeypatch):
    """Ctrl-C at the first step of every run: the engine then returns a partial trace."""
    from explorer import engine

    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(engine, "_run_chunk", interrupted)


@pytest.mark.parametrize("argv, out_name", [
    (["generate", "--model", "orders-oracle", "--steps", "4"], "trace.csv"),
    (["evaluate-orders", "--model", "orders-oracle", "--steps", "4", "--samples", "2"], "validity.csv"),
    (["repair", "--model", "orders-oracle", "--steps", "4", "--sequences", "2"], "repair.csv"),
])
def test_ctrl_c_stops_and_writes_nothing(capsys, tmp_path, ctrl_c, argv, out_name):
    out = tmp_path / out_name
    out.write_text("an earlier, finished run\n")
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        rc = cli.main([*argv, "--out", str(out)])
    assert rc == 130
    assert "interrupted" in capsys.readouterr().err
    # the library's "returning the partial trace" would contradict the command, which keeps nothing
    assert not [w for w in seen if "partial trace" in str(w.message)]
    assert out.read_text() == "an earlier, finished run\n"
    assert files_under(tmp_path) == {out}


@pytest.fixture
def ctrl_c_once(monkeypatch):
    """Ctrl-C in the first run only (a sweep's untimed warm-up, the lab's first calibration probe)."""
    from explorer import engine

    real, calls = engine._run_chunk, []

    def first_interrupted(*a, **k):
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return real(*a, **k)
    monkeypatch.setattr(engine, "_run_chunk", first_interrupted)


@pytest.mark.parametrize("argv", [
    ["sweep", "--model", "orders-oracle", "--samplers", "mdlm", "--steps", "4", "--num-samples", "2",
     "--metrics", "entropy", "--no-progress"],
    ["strategies", "--model", "orders-oracle", "--strategies", "mdlm", "--budgets", "8", "--num-samples", "2",
     "--no-progress"],
])
def test_ctrl_c_in_a_warm_up_or_probe_stops_the_study(capsys, tmp_path, ctrl_c_once, argv):
    out = tmp_path / "out"
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        rc = cli.main([*argv, "--out", str(out)])
    assert rc == 130, capsys.readouterr().err
    assert not [w for w in seen if "partial trace" in str(w.message)]
    assert not list(out.glob("*.parquet")), "a result was written after Ctrl-C"


@pytest.mark.parametrize("argv", [
    ["sweep", "--model", "stories", "--metrics", "gen_ppl"],
    ["sweep", "--model", "orders", "--metrics", "mauve,entropy"],
])
def test_a_judge_that_is_not_here_is_refused_before_any_work(capsys, tmp_path, no_model_loaded, monkeypatch, argv):
    import huggingface_hub
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)
    err = refused(capsys, [*argv, "--judge", "no-such-org/judge", "--out", str(tmp_path / "o")], "--allow-download",
                  tmp_path)
    assert "--judge" in err and "no-such-org/judge" in err


def test_a_judge_folder_that_is_not_there_is_named_as_a_folder(capsys, tmp_path, no_model_loaded):
    """huggingface_hub read the missing path as a hub id and said only 'Repo id must use ...'
    (strategies shares the check: cli.common.judge_from_cli)."""
    missing = tmp_path / "no" / "judge"
    err = refused(capsys, ["sweep", "--model", "stories", "--metrics", "gen_ppl", "--judge", str(missing),
                           "--out", str(tmp_path / "o")], "folder with config.json", tmp_path)
    assert str(missing) in err and "no such folder" in err and "Repo id" not in err


def test_the_lab_checks_its_judge_before_any_work(capsys, tmp_path, monkeypatch):
    import huggingface_hub
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)
    err = refused(capsys, ["strategies", "--model", "stories", "--strategies", "mdlm", "--budgets", "64",
                           "--judge", "no-such-org/judge", "--out", str(tmp_path / "o")], "--allow-download", tmp_path)
    assert "no-such-org/judge" in err


@pytest.mark.parametrize("argv, named", [
    (["sweep", "--model", "orders", "--seeds", "0,1,0"], "repeats 0"),
    (["sweep", "--model", "orders", "--steps", "8,16,8"], "repeats 8"),
    (["sweep", "--model", "orders", "--metrics", "validity,entropy,validity"], "repeats validity"),
    (["strategies", "--model", "orders", "--budgets", "64,128,64"], "repeats 64"),
    (["evaluate-orders", "--steps", "4", "8", "4"], "repeats 4"),
    (["repair", "--steps", "4", "4"], "repeats 4"),
])
def test_a_repeated_seed_step_or_budget_is_refused_before_loading(capsys, tmp_path, no_model_loaded, argv, named):
    out = tmp_path / ("o.csv" if argv[0] in ("evaluate-orders", "repair") else "o")
    err = refused(capsys, [*argv, "--out", str(out)], "give each", tmp_path)
    assert named in err


@pytest.mark.parametrize("steps, named", [("8,L/32", "T = 8, 8 at L = 256"), ("L/1000,L", "fewer than 1 step")])
def test_steps_that_repeat_or_vanish_at_the_models_length_leave_no_folder(capsys, tmp_path, steps, named):
    err = refused(capsys, ["sweep", "--model", "orders-oracle", "--steps", steps, "--out", str(tmp_path / "o")],
                  "--steps" if "fewer" in named else "give each", tmp_path)
    assert named in err


@pytest.mark.parametrize("argv", [
    ["generate", "--model", "orders", "--steps", "4"],
    ["sweep", "--model", "orders", "--out", "OUT"],
    ["strategies", "--model", "orders", "--out", "OUT"],
    ["train", "--task", "orders", "--out", "OUT"],
])
@pytest.mark.parametrize("device, fix", [("cuda", "--device cpu"), ("cuda:7", "--device cpu"),
                                         ("bogus", "--device cpu or --device cuda"),
                                         ("meta", "--device cpu or --device cuda")])
def test_a_device_this_machine_lacks_is_refused_before_loading(capsys, tmp_path, no_model_loaded, monkeypatch,
                                                               argv, device, fix):
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    argv = [str(tmp_path / "o") if w == "OUT" else w for w in argv]
    err = refused(capsys, [*argv, "--device", device], fix, tmp_path)
    assert device in err


@pytest.mark.parametrize("argv, module", [
    (["generate", "--model", "orders", "--steps", "4"], "generate"),
    (["sweep", "--model", "orders", "--out", "OUT"], "sweep"),
    (["strategies", "--model", "orders", "--out", "OUT"], "strategies"),
])
@pytest.mark.parametrize("cuda, local_rank, expected", [(False, None, "cpu"), (False, "1", "cpu"),
                                                        (True, None, "cuda"), (True, "1", "cuda:1")])
def test_device_auto_reaches_the_loader_as_the_device_this_machine_has(capsys, tmp_path, monkeypatch, argv, module,
                                                                        cuda, local_rank, expected):
    """--device auto was let through the check and handed to torch as a device name (a traceback)."""
    import importlib

    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2 if cuda else 0)
    if local_rank is None:
        monkeypatch.delenv("LOCAL_RANK", raising=False)
    else:
        monkeypatch.setenv("LOCAL_RANK", local_rank)
    seen = []

    def fake_model(name, device=None, **k):
        seen.append(device)
        raise UsageError("stop here.", "-")
    monkeypatch.setattr(importlib.import_module(f"explorer.cli.{module}"), "model_from_cli", fake_model)
    argv = [str(tmp_path / "o") if w == "OUT" else w for w in argv]
    refused(capsys, [*argv, "--device", "auto"], "-", tmp_path)
    assert seen == [expected]


def test_chat_on_a_fixed_length_model_is_refused(capsys, tmp_path):
    err = refused(capsys, [*GEN, "--prompt", "hi", "--chat"], "drop --chat", tmp_path)
    assert "chat template" in err and "dtype" not in err


@pytest.mark.parametrize("argv", [
    ["generate", "--model", "orders", "--steps", "4", "--seed", "-1"],
    ["sweep", "--model", "orders", "--seeds", "0,-1", "--out", "OUT"],
    ["strategies", "--model", "orders", "--seed", "-1", "--out", "OUT"],
    ["evaluate-orders", "--seed", "-1"],
    ["repair", "--data-seed", "-1"],
])
def test_a_negative_seed_is_refused_before_loading(capsys, tmp_path, no_model_loaded, argv):
    argv = [str(tmp_path / "o") if w == "OUT" else w for w in argv]
    err = refused(capsys, argv, "--", tmp_path)
    assert "-1" in err and ">= 0" in err


@pytest.mark.parametrize("command", ["evaluate-orders", "repair"])
def test_the_orders_studies_refuse_a_model_of_another_task(capsys, tmp_path, command):
    err = refused(capsys, [command, "--model", "stories", "--steps", "4"], "--model orders", tmp_path)
    assert "not an orders model" in err


def test_a_bad_setting_in_the_spec_names_the_spec(capsys, tmp_path, no_model_loaded):
    err = refused(capsys, [*GEN, "--sampler", "remdm-cap:eta=5"], "change the setting in --sampler", tmp_path)
    assert "--settings" not in err


def test_out_that_is_a_folder_says_so(capsys, tmp_path, no_model_loaded):
    err = refused(capsys, [*GEN, "--out", str(tmp_path)], "give a file name inside it", tmp_path)
    assert "is a folder" in err and "unknown file type" not in err


def test_help_says_each_default_once():
    for parser in _parsers().values():
        for action in parser._actions:
            text = parser.formatter_class("x")._get_help_string(action) or ""
            assert text.count("(default:") <= 1, (parser.prog, action.dest, text)


def test_python_dash_m_explorer_runs_the_cli():
    done = subprocess.run([sys.executable, "-m", "explorer", "--help"], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0 and "usage: explorer COMMAND" in done.stdout


@pytest.mark.parametrize("argv, seed", [
    (["generate", "--model", "orders", "--steps", "4", "--seed"], 2**64),
    (["generate", "--model", "orders", "--steps", "4", "--seed"], 2**63),
    (["sweep", "--model", "orders", "--out", "OUT", "--seeds"], f"0,{2**64}"),
    (["strategies", "--model", "orders", "--out", "OUT", "--seed"], 2**64),
    (["evaluate-orders", "--seed"], 2**64),
    (["repair", "--seed"], 2**64),
    (["repair", "--data-seed"], 2**64),
    (["train", "--task", "orders", "--out", "OUT", "--seed"], 2**64),
    (["judge", "train", "--steps", "2", "--out", "OUT", "--seed"], 2**32),
    (["judge", "train", "--steps", "2", "--out", "OUT", "--seed"], -5),
])
def test_a_seed_out_of_range_is_refused_before_any_work(capsys, tmp_path, no_model_loaded, argv, seed):
    """2**64 drew the same samples as 0 and crashed a sweep when its results were written; numpy
    refused judge train's seeds from 2**32 on without naming --seed, after making the run folder."""
    argv = [str(tmp_path / "o") if w == "OUT" else w for w in argv]
    err = refused(capsys, [*argv, str(seed)], "--", tmp_path)
    assert "seed" in err and ("2**63 - 1" in err or "2**32 - 1" in err), err


@pytest.mark.parametrize("argv, fix", [
    ([*GEN, "--sampler", "remdm-cap:bogus=1"], "eta, nucleus_p, remaskable"),
    ([*GEN, "--sampler", "remdm-cap", "--settings", '{"bogus": 1}'], "eta, nucleus_p, remaskable"),
    (["sweep", "--model", "orders", "--samplers", "mdlm,remdm-loop:bogus=1", "--out", "OUT"], "t_on"),
    (["evaluate-orders", "--samplers", "mdlm", "remdm-cap:bogus=1"], "eta, nucleus_p"),
])
def test_an_unknown_sampler_setting_lists_the_settings_it_takes(capsys, tmp_path, no_model_loaded, argv, fix):
    """It was the sampler's own 'ReMDMCap.__init__() got an unexpected keyword argument'."""
    argv = [str(tmp_path / "o") if w == "OUT" else w for w in argv]
    err = refused(capsys, argv, fix, tmp_path)
    assert "no setting 'bogus'" in err and "__init__" not in err, err


def test_judge_train_refuses_to_resume_a_run_of_another_architecture(capsys, tmp_path):
    """judge train resumes a folder with ckpt.pt; other --n-embd/--n-layer/--n-head was torch's
    size-mismatch traceback (exit 1). The same architecture passes the check."""
    import torch
    from explorer import judge

    run = tmp_path / "j1"
    run.mkdir()
    torch.save({"config": judge.judge_config(n_layer=1, n_embd=16, n_head=2).to_dict()}, run / "ckpt.pt")
    err = refused(capsys, ["judge", "train", "--steps", "4", "--n-layer", "1", "--n-embd", "32", "--n-head", "2",
                           "--eval-every", "0", "--out", str(run)], "another --out", tmp_path)
    assert "--n-embd 16" in err and "--n-embd 32" in err and "size mismatch" not in err
    from explorer.cli.judge import check_resume
    check_resume(run, judge.judge_config(n_layer=1, n_embd=16, n_head=2))


@pytest.mark.parametrize("model, metrics, named", [
    ("stories", "validity,entropy", "not an orders model"),
    ("orders-oracle", "gen_ppl", "reads stories text"),
    ("orders-oracle", "entropy,mauve", "reads stories text"),
])
def test_sweep_refuses_a_metric_of_another_task(capsys, tmp_path, model, metrics, named):
    """validity on stories scored 0 +- 0.05 (every sample broke the format rule) and gen_ppl on orders
    asked the stories judge about order records: both were printed as measurements."""
    err = refused(capsys, ["sweep", "--model", model, "--metrics", metrics, "--steps", "4", "--num-samples", "1",
                           "--out", str(tmp_path / "o")], "drop validity" if "validity" in metrics else "--judge",
                  tmp_path)
    assert named in err


def test_out_whose_sidecar_is_a_folder_is_refused_before_loading(capsys, tmp_path, no_model_loaded):
    """The whole run completed and printed before writing <out>.meta.json found the folder."""
    (tmp_path / "x.csv.meta.json").mkdir()
    err = refused(capsys, [*GEN, "--out", str(tmp_path / "x.csv")], "another --out", tmp_path)
    assert "x.csv.meta.json is a folder" in err


def test_judge_eval_of_a_run_folder_says_to_export_it(capsys, tmp_path):
    """It was transformers' 'Unrecognized model ... model_type', with no hint at --export."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "ckpt.pt").write_bytes(b"")
    err = refused(capsys, ["judge", "eval", str(run)], "--export DIR", tmp_path)
    assert "run folder" in err and "Unrecognized" not in err


@pytest.mark.parametrize("command, study, function", [
    ("evaluate-orders", "explorer.studies.orders", "evaluate"),
    ("repair", "explorer.studies.repair", "measure"),
])
def test_ctrl_c_after_a_cell_leaves_a_file_marked_partial(capsys, tmp_path, monkeypatch, command, study, function):
    """rep.csv kept the finished cells under the name asked for: it read as a run of those steps alone."""
    import importlib

    out = tmp_path / "rep.csv"

    def first_cell_then_ctrl_c(*a, **k):
        Path(k["out"]).write_text("steps,value\n4,0.5\n")
        raise KeyboardInterrupt
    monkeypatch.setattr(importlib.import_module(study), function, first_cell_then_ctrl_c)
    monkeypatch.setattr("explorer.cli.orders.orders_model", lambda *a, **k: object())
    capsys.readouterr()
    rc = cli.main([command, "--steps", "4", "3000", "--out", str(out)])
    assert rc == 130
    assert not out.exists() and (tmp_path / "rep.partial.csv").read_text() == "steps,value\n4,0.5\n"
    assert "rep.partial.csv" in capsys.readouterr().err


def test_judge_train_device_auto_is_a_device(capsys, tmp_path, monkeypatch):
    """device_from_cli lets 'auto' through; judge train passed it on to torch (a traceback)."""
    import torch
    from explorer import judge

    seen = []

    def fake_train(out, steps, device, **k):
        seen.append(device)
        raise UsageError("stop here.", "-")
    monkeypatch.setattr(judge, "train", fake_train)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    refused(capsys, ["judge", "train", "--steps", "1", "--device", "auto", "--out", str(tmp_path / "j")], "-", tmp_path)
    assert seen == ["cpu"]
