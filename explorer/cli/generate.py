"""``explorer generate``: samples from one sampler, printed numbered, optionally recorded as a trace."""
from __future__ import annotations

import sys
from typing import Sequence

from explorer.cli._options import add_allow_download, add_batch_size, add_num_samples
from explorer.cli.common import (STEPS_RANGE, ArgumentParser, UsageError, device_from_cli, model_from_cli,
                                 output_file, positive_int, sampler_from_cli, seed_int, steps_int)

TRACE_SUFFIXES = (".csv", ".parquet")


def parser() -> ArgumentParser:
    from explorer.samplers.spec import sampler_names

    p = ArgumentParser(prog="explorer generate", description=(
        "Generate samples with one sampler, print them numbered, and optionally record the run "
        "as a trace file (.csv or .parquet, with its .meta.json)."))
    p.add_argument("--model", required=True, help="shipped name (orders, stories, orders-oracle), a model "
                   "folder (config.json + weights) or a hub id in the local cache")
    p.add_argument("--sampler", default="remdm-loop", help="a sampler spec, name[:key=value...], e.g. "
                   f"remdm-cap:eta=0.02; names: {', '.join(sampler_names())}")
    p.add_argument("--settings", default="{}", help='more sampler settings as JSON, laid over the spec\'s, '
                   'e.g. \'{"eta": 0.02}\'')
    p.add_argument("--steps", type=steps_int, required=True, help=f"number of sampling steps T, {STEPS_RANGE}")
    add_num_samples(p, default=1, help="how many sequences to generate")
    p.add_argument("--seed", type=seed_int, default=0, help="random seed (same seed, same samples)")
    add_batch_size(p, help="sequences per model call (default: all at once; samples do not depend on it)")
    p.add_argument("--device", default=None, help="torch device: cpu, cuda[:N], mps, or auto (a CUDA GPU when there is one, else cpu) (default: cpu)")
    add_allow_download(p)
    p.add_argument("--out", default=None, help="write the trace here (.csv or .parquet) with its .meta.json; "
                   "the folder must exist")
    p.add_argument("--prompt", default=None, help="prompt text (tokenised with the model's tokenizer; "
                   "never changed by the sampler)")
    p.add_argument("--chat", action="store_true", help="send --prompt as one user message through the "
                   "tokenizer's chat template (instruct models such as LLaDA-8B-Instruct, Dream-Instruct)")
    p.add_argument("--gen-length", type=positive_int, default=None, help="tokens to generate after the prompt; "
                   "required for models without a fixed length (LLaDA, Dream)")
    return p


def format_samples(texts: Sequence[str]) -> str:
    """Samples numbered and separated: a header line per sample, a blank line between them."""
    n = len(texts)
    return "\n\n".join(f"--- sample {i + 1} of {n} ---\n{text}" for i, text in enumerate(texts))


def check_prompt(model, prompt, gen_length: int | None) -> None:
    """Read ``--prompt`` as generate will (the same functions), so that a word the model does not know
    or a prompt too long is told in the command line's terms, not the Python API's."""
    from explorer.engine import _resolve_prompt
    from explorer.prompts import PromptError, build_canvas

    try:
        if model.seq_len is None:
            build_canvas(model, prompt, gen_length)
        else:
            _resolve_prompt(model, prompt, model.seq_len, model.mask_id)
    except ValueError as e:
        kind, over = (e.problem, e.over) if isinstance(e, PromptError) else (None, None)
        problem = str(e).split(". ")[0].split("; ")[0].rstrip(".")     # the library's fix is for Python callers
        fix = {"unknown_words": "write --prompt in words the model knows (those in the samples it prints without "
                                "--prompt).",
               "too_long": f"shorten --prompt by {over} token(s).",
               "over_max_length": f"shorten --prompt, or give a --gen-length {over} smaller.",
               }.get(kind, "change --prompt (it is tokenised with the model's tokenizer).")
        said = problem.removeprefix("the prompt ")
        raise UsageError(f"--prompt {said}." if said != problem else f"--prompt: {problem}.", fix) from None


def main(argv: Sequence[str] | None = None) -> int:
    import explorer

    a = parser().parse_args(argv)
    out = output_file(a.out, suffixes=TRACE_SUFFIXES) if a.out is not None else None
    if out is not None:
        from explorer.trace_files import sidecar_path

        if sidecar_path(out).is_dir():   # found only after the whole run, when the sidecar is written
            raise UsageError(f"--out {out}: its sidecar {sidecar_path(out)} is a folder.",
                             "move that folder away, or choose another --out.")
    sampler = sampler_from_cli(a.sampler, a.settings)
    if a.chat and a.prompt is None:
        raise UsageError("--chat needs --prompt.", "add --prompt 'your question'.")
    a.device = device_from_cli(a.device)
    model = model_from_cli(a.model, device=a.device, allow_download=a.allow_download)
    if a.chat and getattr(model, "seq_len", None) is not None:
        raise UsageError(f"{a.model} is a fixed-length model without a chat template; --chat is for instruct "
                         "models (LLaDA-8B-Instruct, Dream-Instruct).", "drop --chat: --prompt is then the start "
                         "of the text.")
    prompt = [{"role": "user", "content": a.prompt}] if a.chat else a.prompt
    if getattr(model, "seq_len", 0) is None and a.gen_length is None:
        raise UsageError(f"{a.model} has no fixed length, so the number of tokens to write must be given.",
                         "add --gen-length N (e.g. --gen-length 32).")
    if getattr(model, "seq_len", None) is not None and a.gen_length is not None:
        raise UsageError(f"{a.model} always writes {model.seq_len} tokens; --gen-length is for LLaDA/Dream.",
                         "drop --gen-length.")
    extra = {} if a.gen_length is None else {"gen_length": a.gen_length}
    if prompt is not None:
        check_prompt(model, prompt, a.gen_length)
    trace = explorer.generate(model, sampler, a.steps, num_samples=a.num_samples, seed=a.seed,
                              batch_size=a.batch_size, prompt=prompt, **extra)
    if not trace.complete:  # Ctrl-C: a half-finished run is not printed or written as if real
        raise KeyboardInterrupt
    print(format_samples(trace.texts))
    if out is not None:
        path = trace.to_parquet(out) if out.suffix.lower() == ".parquet" else trace.to_csv(out)
        print(f"wrote {path} and {path}.meta.json", file=sys.stderr)
    return 0
