"""Command-line inputs the CLI audit found misread or unbounded (/tmp/audit_cli/report.md, F-gen-*, F-sw-*,
F-ev-1, F-rp-1): each is now refused before any work, with exit status 2, a short message naming the
option and its fix, and nothing written; a run that stops keeps the previous results file intact."""
from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest

from explorer import cli
from explorer.samplers.spec import SamplerSpecError, parse_samplers
from explorer.samplers import MAX_STEPS
from explorer.sweep import parse_steps
from test_cli_errors import GEN, files_under, no_model_loaded, refused  # noqa: F401  (a fixture)

ORDERS_SWEEP = ["sweep", "--model", "orders-oracle", "--num-samples", "2", "--no-progress"]


# ----------------------------------------------------------------------------- step counts

def test_parse_steps_reads_the_documented_forms_only():
    """2L2 ran T = 22 L (every L and * was dropped and the rest joined); LL ran L, L2 ran 2L."""
    assert parse_steps("L/4,L/2,L,2L,4L,8L", 256) == [64, 128, 256, 512, 1024, 2048]
    assert parse_steps("16, 32,64", 256) == [16, 32, 64]
    assert parse_steps("L*2,2*L,0.5L,3L/4", 256) == [512, 512, 128, 192]
    for steps in ["2L2", "LL", "L2", "2L*2", "L/", "1e1L"]:
        with pytest.raises(ValueError, match=re.escape(repr(steps))):
            parse_steps(steps, 256)


def test_parse_steps_refuses_a_step_count_above_the_limit():
    assert parse_steps(str(MAX_STEPS), 256) == [MAX_STEPS]
    with pytest.raises(ValueError, match="above the limit"):
        parse_steps(f"{MAX_STEPS + 1}", 256)
    with pytest.raises(ValueError, match="above the limit"):
        parse_steps("99999999L", 256)


@pytest.mark.parametrize("steps", ["2L2", "99999999999"])
def test_sweep_refuses_bad_steps_before_the_out_folder(capsys, tmp_path, no_model_loaded, steps):
    """2L2 ran T = 5632; 99999999999 was a traceback after OUT/cache was written."""
    refused(capsys, [*ORDERS_SWEEP, "--steps", steps, "--out", str(tmp_path / "sw")], "--steps", tmp_path)


def test_sweep_names_the_step_limit_and_strategies_the_budget_limit(capsys, tmp_path, no_model_loaded):
    """sweep said a T over the limit was 'not a list of positive step counts'; strategies ran a huge
    budget into a 100 TB allocation traceback, leaving an empty --out folder."""
    err = refused(capsys, [*ORDERS_SWEEP, "--steps", "99999999999", "--out", str(tmp_path / "sw")], "--steps", tmp_path)
    assert f"above the limit of {MAX_STEPS:,} steps" in err
    err = refused(capsys, ["strategies", "--model", "orders-oracle", "--strategies", "mdlm", "--budgets", "99999999999",
                           "--out", str(tmp_path / "st")], "--budgets", tmp_path)
    assert f"above the limit of {MAX_STEPS:,}" in err


@pytest.mark.parametrize("steps", ["99999999999", "9223372036854775807", "99999999999999999999"])
def test_generate_refuses_a_huge_step_count(capsys, tmp_path, no_model_loaded, steps):
    """It was a 400 GB allocation traceback, or 'Overflow when unpacking long long' naming no option."""
    err = refused(capsys, ["generate", "--model", "orders-oracle", "--steps", steps], "--help", tmp_path)
    assert "--steps" in err and f"{MAX_STEPS:,}" in err


@pytest.mark.parametrize("argv", [
    ["evaluate-orders", "--model", "orders-oracle", "--steps", "4", "99999999999"],
    ["repair", "--model", "orders-oracle", "--steps", "4", "99999999999"],
    ["evaluate-orders", "--model", "orders-oracle", "--samples", "1000000000"],
    ["repair", "--model", "orders-oracle", "--sequences", "1000000000"],
    [*GEN, "--num-samples", "1000000000"],
    [*ORDERS_SWEEP[:3], "--num-samples", "1000000000", "--out", "OUT"],
])
def test_huge_counts_are_refused_at_parse_time(capsys, tmp_path, no_model_loaded, argv):
    """evaluate-orders overwrote the old CSV and then failed; repair ran without end; generate gave a traceback."""
    argv = [str(tmp_path / "sw") if a == "OUT" else a for a in argv]
    err = refused(capsys, argv, "--help", tmp_path)
    assert "<=" in err


def test_a_failed_allocation_is_a_two_line_message(capsys, tmp_path, monkeypatch):
    """torch's 'can't allocate memory' (or CUDA out of memory) came out as a traceback."""
    import explorer

    def no_memory(*a, **k):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] data. DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 400000000000 bytes. Error code 12 (Cannot allocate memory)")
    monkeypatch.setattr(explorer, "generate", no_memory)
    err = refused(capsys, GEN, "--batch-size", tmp_path)
    assert "out of memory" in err and "372.5 GiB" in err and "--num-samples" in err


# ----------------------------------------------------------------------------- empty paths and names

@pytest.mark.parametrize("argv", [
    [*GEN, "--out", ""],
    ["evaluate-orders", "--model", "orders-oracle", "--steps", "4", "--out", ""],
    ["repair", "--model", "orders-oracle", "--steps", "4", "--out", ""],
    [*ORDERS_SWEEP, "--steps", "4", "--out", ""],
    ["strategies", "--model", "orders-oracle", "--out", ""],
    ["train", "--task", "orders", "--steps", "1", "--out", ""],
    ["generate", "--model", "", "--steps", "4"],
])
def test_an_empty_path_or_model_is_refused(capsys, tmp_path, monkeypatch, no_model_loaded, argv):
    """--out '' was ignored (generate, evaluate-orders, repair) or wrote into the current folder (sweep);
    --model '' was read as the current folder."""
    monkeypatch.chdir(tmp_path)
    err = refused(capsys, argv, "give" if "--out" in argv else "shipped name", tmp_path)
    assert "is empty" in err


@pytest.mark.parametrize("stray", ["file", "folder"])
def test_a_folder_without_config_json_says_so_whatever_other_json_it_holds(capsys, tmp_path, stray):
    """A stray y.json was reported as a damaged model file; a folder named sub.json as 'Is a directory'."""
    model = tmp_path / "m"
    model.mkdir()
    if stray == "file":
        (model / "y.json").write_text("garbage\n")
    else:
        (model / "sub.json").mkdir()
    err = refused(capsys, ["generate", "--model", str(model), "--steps", "4"], "config.json and the weights", tmp_path)
    assert "has no config.json" in err and "damaged" not in err and "directory" not in err


# ----------------------------------------------------------------------------- sampler specs

@pytest.mark.parametrize("specs", ["mdlm,MDLM", "remdm-cap:eta=0.02,remdm-cap:eta=2e-2",
                                   "remdm-cap:eta=0.02:nucleus_p=0.9,remdm_cap:nucleus_p=0.9:eta=0.02"])
def test_one_sampler_written_two_ways_is_refused(specs):
    """mdlm,mdlm was refused but mdlm,MDLM ran every cell twice; samplers that differ still pass."""
    with pytest.raises(SamplerSpecError, match="same sampler"):
        parse_samplers(specs)
    assert list(parse_samplers("mdlm,remdm-cap:eta=0.02,remdm-cap:eta=0.03")) == [
        "mdlm", "remdm-cap:eta=0.02", "remdm-cap:eta=0.03"]


def test_a_setting_given_twice_in_one_spec_is_refused(capsys, tmp_path, no_model_loaded):
    """remdm-cap:eta=0.1:eta=0.2 silently ran with eta=0.2."""
    err = refused(capsys, [*GEN, "--sampler", "remdm-cap:eta=0.1:eta=0.2"], "--sampler", tmp_path)
    assert "'eta' is given twice" in err


@pytest.mark.parametrize("command", ["sweep", "strategies"])
def test_nucleus_p_above_one_is_refused_as_itself(capsys, tmp_path, no_model_loaded, command):
    """--nucleus-p 1.5 was blamed on --samplers."""
    err = refused(capsys, [command, "--model", "orders-oracle", "--nucleus-p", "1.5", "--out", str(tmp_path / "o")],
                  "--help", tmp_path)
    assert "--nucleus-p" in err and "<= 1" in err and "--samplers" not in err


# ----------------------------------------------------------------------------- the prompt

@pytest.mark.parametrize("prompt, fix", [("zzzz qqqq", "write --prompt in words"),
                                         (" ".join(["order"] * 320), "shorten --prompt by 64 token(s)")])
def test_a_bad_prompt_is_told_in_command_line_terms(capsys, tmp_path, prompt, fix):
    """The fix said 'model.tokenizer.get_vocab(), or pass token ids' (the CLI takes no ids), or was missing."""
    err = refused(capsys, [*GEN, "--prompt", prompt], fix, tmp_path)
    assert "token ids" not in err and "get_vocab" not in err and "--debug" not in err


def test_the_library_says_which_prompt_problem_it_is():
    """The command line words its fix from PromptError.problem / .over, not from the message's text
    (it matched phrases of the message before, so rewording one broke the fix silently)."""
    import explorer
    from explorer.models import write_random_checkpoint
    from explorer.prompts import PromptError
    from explorer.samplers import MDLM, LLaDALowConfidence

    orders = explorer.load_model("orders")
    for prompt, problem, over in (("zzzz", "unknown_words", None), (" ".join(["order"] * 300), "too_long", 44),
                                  ({3: "zzzz"}, "unknown_words", None)):
        with pytest.raises(PromptError) as caught:
            explorer.generate(orders, MDLM(), 4, prompt=prompt, progress=False)
        assert (caught.value.problem, caught.value.over) == (problem, over) and isinstance(caught.value, ValueError)
    llada = explorer.load_model(write_random_checkpoint(Path(tempfile.mkdtemp()), "llada"))
    with pytest.raises(PromptError) as caught:
        explorer.generate(llada, LLaDALowConfidence(), 4, prompt="hello", gen_length=llada.max_length, progress=False)
    assert caught.value.problem == "over_max_length" and caught.value.over > 0


# ----------------------------------------------------------------------------- results CSV of a stopped run

@pytest.mark.parametrize("command, study, function", [
    ("evaluate-orders", "explorer.studies.orders", "evaluate"),
    ("repair", "explorer.studies.repair", "measure"),
])
def test_a_failed_run_keeps_the_previous_csv_and_leaves_a_partial(capsys, tmp_path, monkeypatch, command, study,
                                                                   function):
    """The first cell's rows replaced the previous CSV under its final name, then the run failed."""
    import importlib

    out = tmp_path / "rep.csv"
    out.write_text("steps,value\n4,0.9\n8,0.95\n")

    def first_cell_then_fail(*a, **k):
        Path(k["out"]).write_text("steps,value\n4,0.5\n")
        raise ValueError("the second cell failed.")
    monkeypatch.setattr(importlib.import_module(study), function, first_cell_then_fail)
    monkeypatch.setattr("explorer.cli.orders.orders_model", lambda *a, **k: object())
    capsys.readouterr()
    assert cli.main([command, "--steps", "4", "8", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert out.read_text() == "steps,value\n4,0.9\n8,0.95\n"
    assert (tmp_path / "rep.partial.csv").read_text() == "steps,value\n4,0.5\n"
    assert "rep.partial.csv" in err and "the second cell failed" in err


@pytest.mark.parametrize("command, study, function", [
    ("evaluate-orders", "explorer.studies.orders", "evaluate"),
    ("repair", "explorer.studies.repair", "measure"),
])
def test_the_previous_csv_stays_until_the_run_has_finished(capsys, tmp_path, monkeypatch, command, study, function):
    """A run's cells overwrote the previous CSV under its final name as they finished."""
    import importlib

    import pandas as pd

    out = tmp_path / "rep.csv"
    out.write_text("old\n")

    def both_cells(*a, **k):
        Path(k["out"]).write_text("steps,value\n4,0.5\n8,0.6\n")
        assert out.read_text() == "old\n"
        return pd.DataFrame({"steps": [4, 8], "value": [0.5, 0.6]})
    monkeypatch.setattr(importlib.import_module(study), function, both_cells)
    monkeypatch.setattr("explorer.cli.orders.orders_model", lambda *a, **k: object())
    assert cli.main([command, "--steps", "4", "8", "--out", str(out)]) == 0
    assert out.read_text() == "steps,value\n4,0.5\n8,0.6\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep.csv"]


def test_a_failed_hub_download_says_so_and_is_not_retried(capsys, tmp_path, monkeypatch):
    """With --allow-download and no network the command said 'add --allow-download' (given already),
    hid the network error, and tried the download a second time."""
    import explorer
    from explorer.models import loading

    calls = []

    def no_network(name, allow_download=False, **k):
        calls.append(allow_download)
        raise FileNotFoundError("An error happened while trying to locate the file on the Hub. ConnectError")
    monkeypatch.setattr(explorer, "load_model", lambda name, allow_download=False, **k: no_network(name, allow_download))
    monkeypatch.setattr(loading, "resolve_model_dir", no_network)
    err = refused(capsys, ["generate", "--model", "org/model", "--allow-download", "--steps", "4"],
                  "check the hub id and the network connection", tmp_path)
    assert "could not download 'org/model'" in err and "ConnectError" in err
    assert calls == [True, False]


# ----------------------------------------------------------------------------- list options
def test_every_list_option_reads_a_stray_comma_one_way(capsys, tmp_path, no_model_loaded):
    """--steps and --samplers skipped an empty item while --seeds refused '0,1,', --metrics 'validity,'
    looked up a metric named '' and --steps ',4,' was refused as 'repeats .': now every list option skips
    an empty item, and a list of nothing but commas is refused naming the option."""
    from explorer.cli import sweep as sweep_cli
    from explorer.cli.common import list_items

    assert list_items(" 16, 32,,64 , ") == ["16", "32", "64"] and list_items(",") == []
    a = sweep_cli.parser().parse_args(["--model", "orders", "--out", str(tmp_path), "--steps", ",4,8,", "--seeds", "0,1,",
                                       "--metrics", "validity,", "--samplers", "mdlm,"])
    samplers, seeds, metrics = sweep_cli.plan(a)
    assert list(samplers) == ["mdlm"] and seeds == [0, 1] and metrics == ["validity"]
    for option, value in (("--seeds", ","), ("--metrics", " , "), ("--steps", ",")):
        refused(capsys, [*ORDERS_SWEEP, option, value, "--out", str(tmp_path / "sw")], option, tmp_path)
    refused(capsys, ["strategies", "--model", "orders-oracle", "--strategies", "mdlm", "--budgets", ",",
                     "--out", str(tmp_path / "st")], "--budgets", tmp_path)
