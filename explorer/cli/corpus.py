"""``explorer corpus``: the stories tokenizer and the sizes of the corpus splits (:mod:`explorer.tasks.stories`)."""
from __future__ import annotations

import json
from typing import Sequence

from explorer.cli.common import ArgumentParser, UsageError


def parser() -> ArgumentParser:
    p = ArgumentParser(prog="explorer corpus", description=(
        "Build the stories tokenizer (the shipped tokenizer.json, or trained again on the train split "
        "with --retrain) and print its size, the stories and tokens of each split and one held-out story. "
        "Needs the corpus in ../shared/corpus (or $EXPLORER_CORPUS_DIR)."))
    p.add_argument("--retrain", action="store_true",
                   help="train the tokenizer again on the train split and overwrite the shipped tokenizer.json")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from explorer.tasks import stories

    a = parser().parse_args(argv)
    try:
        stories.corpus_dir()
    except FileNotFoundError as e:
        raise UsageError(str(e).rstrip("."), "put the TinyStories files where the message says, then run it again.") \
            from None
    tok = stories.build_tokenizer(retrain=a.retrain)
    print(json.dumps({"vocab_size": tok.get_vocab_size(), "tokenizer": str(stories.TOKENIZER_PATH),
                      **stories.stats()}, indent=1))
    print(repr(stories.heldout_texts(1)[0]))
    return 0
