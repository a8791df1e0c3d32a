"""What the commands share: short user errors, and the checks made before any work starts.

* :class:`UsageError` -- a mistake of the user's: the problem and the fix, printed as two lines.
* :class:`ArgumentParser` -- argparse whose errors become a :class:`UsageError` (no usage dump)
  and which adds ``--debug`` to every command.
* :func:`run` -- the one place that turns exceptions into messages and exit status 2: a
  :class:`UsageError`, a ``ValueError`` or an ``OSError`` (a bad value, a missing or damaged
  file) or a failed allocation (too much asked of the memory) prints ``PROG: error: ...`` on
  stderr, with no traceback unless ``--debug`` or ``EXPLORER_DEBUG=1``; anything else is a bug
  and keeps its traceback.
* :func:`output_file`, :func:`output_dir`, :func:`positive_int`, :func:`steps_int`, :func:`samples_int`,
  :func:`at_most`, :func:`sampler_from_cli`,
  :func:`samplers_from_cli`, :func:`model_from_cli`, :func:`judge_from_cli`, :func:`device_from_cli` -- turn an argument into a checked value
  *before* a model is loaded or a sample is drawn, so a wrong ``--out`` does not cost a finished run.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

from explorer.rng import MAX_SEED
from explorer.samplers import MAX_STEPS

DEBUG_ENV = "EXPLORER_DEBUG"
MAX_PROBLEM_LINES = 2


class UsageError(Exception):
    """A user mistake: ``problem`` says what is wrong, ``fix`` what to do instead."""

    def __init__(self, problem: str, fix: str | None = None):
        super().__init__(problem)
        self.problem, self.fix = problem, fix

    def __str__(self) -> str:
        return self.problem + (f" Fix: {self.fix}" if self.fix else "")


class _DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds ``(default: ...)`` to an option's help unless the help already says its default."""

    def _get_help_string(self, action):
        if "(default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with short errors: ``error`` raises :class:`UsageError` (naming ``--help``) instead
    of printing the whole usage, and every parser accepts ``--debug``."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _DefaultsHelpFormatter)
        super().__init__(*args, **kwargs)
        self.add_argument("--debug", action="store_true",
                          help=f"show the full traceback of an error (or set {DEBUG_ENV}=1)")

    def error(self, message: str):
        raise UsageError(message + ".", f"see `{self.prog} --help`.")


def _number_at_least(kind: type, low, strict: bool, what: str, high=None):
    """An argparse ``type`` that parses ``kind`` and refuses values below ``low`` (or equal, if strict)
    and, when given, above ``high``."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if (value is None or not (value > low if strict else value >= low)   # also refuses nan
                or (high is not None and value > high)):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value
    parse.__name__ = what
    return parse


positive_int = _number_at_least(int, 1, False, "a whole number >= 1")
nonnegative_int = _number_at_least(int, 0, False, "a whole number >= 0")
#: Seeds are mixed as 64-bit integers (explorer/rng.py) and stored in int64 columns: a larger one
#: would draw the same samples as a small one (2**64 as 0) or fail when the results are written.
SEED_RANGE = "a whole number >= 0 and <= 2**63 - 1"
seed_int = _number_at_least(int, 0, False, SEED_RANGE, high=MAX_SEED)
nonnegative_float = _number_at_least(float, 0.0, False, "a number >= 0")
positive_float = _number_at_least(float, 0.0, True, "a number > 0")
probability = _number_at_least(float, 0.0, True, "a number > 0 and <= 1", high=1.0)
#: a mistyped T (99999999999) is refused here, not by a time grid that fills the memory
STEPS_RANGE = f"a whole number >= 1 and <= {MAX_STEPS:,} (the paper's largest T is 4096)"
steps_int = _number_at_least(int, 1, False, STEPS_RANGE, high=MAX_STEPS)
#: sequences per run or cell: far above the paper's (5000 for MAUVE), low enough that a mistyped
#: count is refused here instead of by a canvas of num_samples x L tokens that fills the memory
MAX_SAMPLES = 100_000
SAMPLES_RANGE = f"a whole number >= 1 and <= {MAX_SAMPLES:,}"
samples_int = _number_at_least(int, 1, False, SAMPLES_RANGE, high=MAX_SAMPLES)


def list_items(text: str) -> list[str]:
    """The items of a comma-separated option, stripped; an empty item (a stray comma, ``16,32,``) is
    skipped, as in ``--steps`` and ``--samplers``, so every list option reads one way."""
    return [item.strip() for item in text.split(",") if item.strip()]


def at_most(option: str, text: str, values: Sequence[int], most: int = MAX_STEPS, what: str = "steps") -> None:
    """Refuse, before any work, a value of a list option (``--budgets 64,99999999999``) above ``most``."""
    over = [v for v in values if v > most]
    if over:
        raise UsageError(f"{option} {text!r}: {', '.join(map(str, over))} is above the limit of {most:,} {what}.",
                         f"give at most {most:,} {what} (the paper's largest is 4096).")


def no_repeats(option: str, text: str, values: Sequence, resolved: str = "") -> None:
    """A value given twice runs its cells twice and counts them twice in the statistics: refused."""
    from explorer.sweep import repeated

    twice = repeated(values)
    if twice:
        raise UsageError(f"{option} {text!r}{resolved} repeats {', '.join(map(str, twice))}.",
                         "give each once (a repeat counts its cells twice and shrinks the standard errors).")


def _check_folder(folder: Path, option: str, what: str) -> None:
    """``folder`` exists, is a folder, and a file can be created in it (tried, then removed:
    ``os.access`` says yes to root even on a read-only mount)."""
    if not folder.exists():
        raise UsageError(f"{option}: the folder {folder} does not exist.",
                         f"create it first (mkdir -p {folder}) or choose another {what}.")
    if not folder.is_dir():
        raise UsageError(f"{option}: {folder} is not a folder.", f"choose another {what}.")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".explorer-write-check-"):
            pass
    except OSError as e:
        raise UsageError(f"{option}: cannot write in {folder} ({e.strerror or e}).",
                         "choose a folder you can write to, or change its permissions.") from None


def _given_path(path: str | os.PathLike, option: str, example: str) -> Path:
    """``path`` as a Path; an empty one is refused (``Path("")`` is the current folder, which the user
    did not name)."""
    if not str(path).strip():
        raise UsageError(f"{option} is empty.", f"give {example}.")
    return Path(path).expanduser()


def output_file(path: str | os.PathLike, option: str = "--out",
                suffixes: Sequence[str] = ()) -> Path:
    """Check an output file before any work: its folder exists and is writable, the path is not a
    folder, and its suffix is one of ``suffixes`` (when given). Missing folders are not created."""
    path = _given_path(path, option, "a file name" + (f" ending in {' or '.join(suffixes)}" if suffixes else ""))
    if path.is_dir():
        raise UsageError(f"{option} {path} is a folder.", "give a file name inside it"
                         + (f", ending in {' or '.join(suffixes)}." if suffixes else "."))
    if suffixes and path.suffix.lower() not in suffixes:
        raise UsageError(f"{option} {path}: unknown file type {path.suffix or '(none)'!r}.",
                         f"end the name with {' or '.join(suffixes)}.")
    _check_folder(path.parent if str(path.parent) else Path("."), option, f"{option} path")
    return path


def output_dir(path: str | os.PathLike, option: str = "--out") -> Path:
    """Check an output folder before any work: it exists and is writable, or its parent does (the
    command then creates this one folder, never missing parents)."""
    path = _given_path(path, option, "a folder name, e.g. runs/out")
    if path.exists():
        _check_folder(path, option, f"{option} folder")
    else:
        _check_folder(path.parent if str(path.parent) else Path("."), option, f"{option} folder")
    return path


def _settings_from_json(settings: str | dict | None, option: str) -> dict:
    if isinstance(settings, str):
        try:
            settings = json.loads(settings or "{}")
        except json.JSONDecodeError as e:
            raise UsageError(f"{option} is not valid JSON ({e.msg} at character {e.pos}).",
                             f"""write an object such as {option} '{{"eta": 0.02}}'.""") from None
    if not isinstance(settings or {}, dict):
        raise UsageError(f"{option} must be a JSON object, got {type(settings).__name__}.",
                         f"""write an object such as {option} '{{"eta": 0.02}}'.""")
    return dict(settings or {})


def _no_unknown_settings(name: str, settings: dict, where: str) -> None:
    """A setting the sampler ``name`` does not take is refused with the ones it does, naming the
    option it came from (``where``)."""
    from explorer.samplers.spec import settings_of

    takes = settings_of(name)
    unknown = [k for k in settings if k not in takes]
    if unknown:
        raise UsageError(f"{where}: {name} has no setting {', '.join(map(repr, unknown))}.",
                         f"use the settings {name} takes: {', '.join(takes)}.")


def sampler_from_cli(spec: str, settings: str | dict | None = None, option: str = "--sampler",
                     settings_option: str = "--settings") -> Any:
    """A sampler from one spec (``remdm-cap`` or ``remdm-cap:eta=0.02``, :mod:`explorer.samplers.spec`)
    and optional JSON settings laid over it; a bad name, bad JSON or a setting out of its range is
    a :class:`UsageError` naming the option to change."""
    from explorer.samplers.spec import SamplerSpec, SamplerSpecError, UnknownSamplerError, sampler_names

    extra = _settings_from_json(settings, settings_option)
    try:
        parsed = SamplerSpec.parse(spec)
    except UnknownSamplerError:
        raise UsageError(f"unknown sampler {spec!r}.", f"choose one of {', '.join(sampler_names())}.") from None
    except SamplerSpecError as e:
        raise UsageError(f"{option}: {e}", f"write e.g. {option} remdm-cap:eta=0.02.") from None
    _no_unknown_settings(parsed.name, extra, settings_option)   # the spec's own: SamplerSpec.build says them
    try:
        return SamplerSpec(parsed.name, {**parsed.settings, **extra}).build()
    except SamplerSpecError as e:
        try:  # which option holds the bad setting: the spec's own, or the ones laid over it?
            SamplerSpec(parsed.name, parsed.settings).build()
            where = settings_option
        except SamplerSpecError:
            where = option
        raise UsageError(str(e), f"change the setting in {where} (see the sampler's docstring).") from None


def samplers_from_cli(specs: str | Sequence[str], option: str = "--samplers", example: str | None = None,
                      **defaults) -> dict[str, Any]:
    """``{label: sampler}`` from a list of specs (``mdlm,remdm-cap:eta=0.02``, or several
    arguments); any mistake is a :class:`UsageError` whose fix shows ``example``."""
    from explorer.samplers.spec import SamplerSpecError, parse_samplers, sampler_names

    example = example or f"{option} mdlm,remdm-cap:eta=0.02"
    try:
        return parse_samplers(specs, **defaults)
    except SamplerSpecError as e:
        raise UsageError(f"{option}: {e}", f"write e.g. {example} (names: {', '.join(sampler_names())}).") from None


def model_from_cli(name: str, device: Any = None, allow_download: bool = False) -> Any:
    """``explorer.load_model`` for a command line: an unknown name becomes a :class:`UsageError`
    that names ``--allow-download`` (not the Python keyword); any other error (a damaged file,
    named by the loader) passes through unchanged."""
    import explorer
    from explorer.models.hf_adapter import damaged_file
    from explorer.models.loading import known_models, resolve_model_dir

    if not str(name).strip():   # Path("") would be the current folder
        raise UsageError("--model is empty.", "pass a shipped name (e.g. --model orders), a model folder or a hub id.")
    try:
        return explorer.load_model(name, device=device, allow_download=allow_download)
    except (FileNotFoundError, ValueError) as e:
        try:  # is it the name that is unknown, or a file inside a model folder that is wrong? (never a 2nd download)
            directory, _ = resolve_model_dir(name, allow_download=False)
        except FileNotFoundError:
            if allow_download and "/" in str(name) and not Path(name).exists():   # a hub id the hub did not give
                raise UsageError(f"could not download {str(name)!r} from the Hugging Face hub ({one_line(e)}).",
                                 "check the hub id and the network connection, or pass a local model folder.") from None
            from explorer.metrics._judge import DEFAULT_JUDGE

            # the judge LM is shipped beside the models but is no diffusion model: not offered here
            shipped = ", ".join(m for m in known_models() if m != DEFAULT_JUDGE.name)
            raise UsageError(
                f"unknown model {str(name)!r}: not a model folder, a shipped model ({shipped}) or a "
                "Hugging Face hub id in the local cache.",
                "pass a folder with config.json and weights, a shipped name, or add --allow-download "
                "to fetch a hub id.") from None
        except ValueError as not_a_folder:
            raise UsageError(str(not_a_folder), "pass the folder that holds config.json and the weights.") from None
        if not (Path(directory) / "config.json").is_file():   # then other JSON files there are not the model's
            raise UsageError(f"{name} has no config.json; cannot tell which kind of model it holds.",
                             "pass a folder with config.json and the weights (`explorer train --export DIR` "
                             "writes one) or a shipped name.") from None
        damaged = damaged_file(directory)
        if damaged is not None and damaged[0].name not in str(e):  # the loader did not name it
            raise UsageError(f"{damaged[0]} is damaged ({damaged[1]}).",
                             "replace it with a complete copy (download or export the model again).") from None
        raise e


def one_line(error: BaseException, most: int = 160) -> str:
    """The first line of an error's message, cut to ``most`` characters (a hub error runs to pages)."""
    line = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return line if len(line) <= most else line[:most - 3] + "..."


def device_from_cli(device: str | None, option: str = "--device") -> str | None:
    """Check ``--device`` before any model is loaded and return the device to use: cpu, cuda[:N] or
    mps, one this machine has; ``None`` passes (the command's default); ``auto`` is a CUDA GPU when
    there is one (the launch's ``cuda:LOCAL_RANK`` under torchrun), else cpu. A name torch does not
    know, or a GPU that is not there, is a :class:`UsageError` (it was an AssertionError or
    RuntimeError from deep in torch)."""
    if device is None:
        return None
    if device == "auto":
        return auto_device()
    from explorer.protocol import DeviceError, check_device

    try:
        check_device(device)         # the library's own check, said here in the options' terms
    except DeviceError as e:
        raise UsageError(f"{option} {device} {e.problem}.", "use " + " or ".join(f"{option} {u}" for u in e.use)
                         + ".") from None
    return device


def auto_device() -> str:
    """``--device auto``: ``cuda`` when torch sees a CUDA GPU (``cuda:LOCAL_RANK`` when torchrun set
    LOCAL_RANK, so each rank takes its own), else ``cpu``."""
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    rank = os.environ.get("LOCAL_RANK")
    return f"cuda:{int(rank) % torch.cuda.device_count()}" if rank is not None else "cuda"


def judge_from_cli(judge: str | None, allow_download: bool = False) -> None:
    """Check the ``--judge`` of gen_ppl / mauve before any work (:func:`explorer.metrics._judge.check_judge`):
    a folder, a shipped judge, or a hub name in the local cache (fetched now with ``--allow-download``)."""
    from explorer.metrics._judge import check_judge

    try:
        check_judge(judge, allow_download=allow_download)
    except FileNotFoundError as e:
        problem, _, fix = str(e).partition("; ")
        raise UsageError(f"--judge: {problem}.", fix) from None
    except ValueError:   # huggingface_hub's HFValidationError: a missing folder read as a malformed hub id
        raise UsageError(f"--judge {judge}: no such folder, and not a shipped judge (stories-judge) or a Hugging "
                         "Face hub id (org/name).",
                         "pass a folder with config.json and weights (`explorer judge train --export DIR` writes "
                         "one), stories-judge, or a hub id.") from None


def _debug(argv: Sequence[str]) -> bool:
    return "--debug" in argv or os.environ.get(DEBUG_ENV, "").strip() not in ("", "0")


def _out_of_memory(exc: BaseException) -> str | None:
    """What ran out, when ``exc`` is a failed allocation (MemoryError, torch's CPU allocator, CUDA
    out of memory); None otherwise."""
    text = str(exc)
    if not (isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError"
            or (isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text))):
        return None
    asked = re.search(r"allocate (\d+) bytes", text) or re.search(r"allocate ([\d.]+ [KMGT]i?B)", text)
    if asked is None:
        return "out of memory"
    size = asked.group(1)
    return f"out of memory (it asked for {int(size) / 2**30:,.1f} GiB)" if size.isdigit() else \
        f"out of memory (it asked for {size})"


def _message(exc: BaseException) -> tuple[str, str | None] | None:
    """(problem, fix) for a user error; None for a bug (which keeps its traceback)."""
    if isinstance(exc, UsageError):
        return exc.problem, exc.fix
    memory = _out_of_memory(exc)
    if memory is not None:   # too many sequences or steps at once for this machine
        return (f"{memory}.", "ask for less at once: lower --batch-size, --num-samples (--samples, --sequences) "
                "or --steps, whichever this command takes.")
    if isinstance(exc, json.JSONDecodeError):
        return f"a JSON file is damaged: {exc}.", "replace the file (run with --debug to see which)."
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.strerror or exc}: {exc.filename}", "check the path and its permissions."
    if isinstance(exc, (ValueError, OSError)):
        return str(exc), None
    return None


def run(prog: str, command: Callable[[list[str]], Any], argv: Sequence[str] | None = None) -> int:
    """Run ``command(argv)`` and turn a user error into ``PROG: error: ...`` on stderr and exit
    status 2 (see the module docstring). Returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        with warnings.catch_warnings():
            # the library keeps a stopped run's partial trace and says so; a command never saves one
            # as a result, so that warning would contradict the "interrupted" line below
            warnings.filterwarnings("ignore", message="generation interrupted")
            result = command(argv)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`explorer --help | head`): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second complaint at exit
        return 141
    except Exception as exc:  # noqa: BLE001 -- mapped below; anything unmapped is re-raised
        found = _message(exc)
        if found is None or _debug(argv):
            raise
        problem, fix = found
        lines = [ln for ln in str(problem).strip().splitlines() if ln.strip()] or [type(exc).__name__]
        if len(lines) > MAX_PROBLEM_LINES:
            lines = [*lines[:MAX_PROBLEM_LINES - 1], lines[MAX_PROBLEM_LINES - 1] + " ... (--debug shows all)"]
        print(f"{prog}: error: " + "\n".join(lines), file=sys.stderr)
        print(f"  fix: {fix}" if fix else "  (run with --debug for the traceback)", file=sys.stderr)
        return 2
    return result if isinstance(result, int) else 0
