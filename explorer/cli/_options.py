"""Options that several commands take, declared here once each: the flag, its type, its default and
its help text, so that ``--threads`` or ``--allow-download`` means the same in every command. A
command passes in only what it says differently (its own default, its own wording of the help); an
option that one command alone takes stays in that command's parser.

Three options are also read back here: :func:`sampler_defaults` (``--nucleus-p``),
:func:`set_threads` (``--threads``) and :func:`library_bars` (``--no-progress``)."""
from __future__ import annotations

from argparse import Namespace
from contextlib import contextmanager

from explorer.cli.common import MAX_SAMPLES, ArgumentParser, positive_int, probability, samples_int


def add_allow_download(p: ArgumentParser) -> None:
    p.add_argument("--allow-download", action="store_true", help="allow fetching a model from the Hugging Face hub")


def add_batch_size(p: ArgumentParser, help: str = "sequences per model call") -> None:
    p.add_argument("--batch-size", type=positive_int, default=None, help=help)


def add_no_progress(p: ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


@contextmanager
def library_bars(shown: bool):
    """``--no-progress`` for the bars of the libraries too: transformers draws one while it loads a
    judge ('Loading weights'), huggingface_hub while it fetches, and neither read our flag. Off for the
    block when ``shown`` is False, then as they were."""
    if shown:
        yield
        return
    import huggingface_hub.utils as hub
    from transformers.utils import logging as tf

    tf_was, hub_was_off = tf.is_progress_bar_enabled(), hub.are_progress_bars_disabled()
    tf.disable_progress_bar()
    hub.disable_progress_bars()
    try:
        yield
    finally:
        if tf_was:
            tf.enable_progress_bar()
        if not hub_was_off:
            hub.enable_progress_bars()


def add_num_samples(p: ArgumentParser, default: int, help: str = "sequences per cell") -> None:
    p.add_argument("--num-samples", type=samples_int, default=default, help=f"{help} (at most {MAX_SAMPLES:,})")


def add_output_folder(p: ArgumentParser) -> None:
    """``--out``, a folder: check it with :func:`explorer.cli.common.output_dir` before any work."""
    p.add_argument("--out", required=True, help="output folder (created if its parent exists)")


def add_nucleus_p(p: ArgumentParser, help: str) -> None:
    """``--nucleus-p``, read back by :func:`sampler_defaults`."""
    p.add_argument("--nucleus-p", type=probability, default=None, help=f"{help}; in (0, 1]")


def sampler_defaults(a: Namespace) -> dict:
    """The settings ``--nucleus-p`` lays under every sampler spec (none when it is not given), for
    :func:`explorer.cli.common.samplers_from_cli`."""
    return {} if a.nucleus_p is None else {"nucleus_p": a.nucleus_p}


def add_threads(p: ArgumentParser, default: int | None = None) -> None:
    """``--threads``, applied by :func:`set_threads`."""
    p.add_argument("--threads", type=positive_int, default=default, help="torch CPU threads")


def set_threads(threads: int | None) -> None:
    """torch's CPU threads as ``--threads`` says; left as they are when it is not given."""
    if threads:
        import torch

        torch.set_num_threads(threads)
