"""Training tasks: each module gives ``build_tokenizer()``, ``SEQ_LEN``,
``batches(split, batch_size, seed)`` and ``eval_tensor(n, seed)`` (see ``explorer.train``)."""
from __future__ import annotations

import importlib

TASKS = ("orders", "stories")


def get_task(name: str):
    """The task module called ``name`` (``"orders"`` or ``"stories"``)."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    return importlib.import_module(f"explorer.tasks.{name}")
