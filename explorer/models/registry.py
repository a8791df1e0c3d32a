"""Built-in models: names that :func:`~explorer.models.loading.load_model` builds in code, with no
checkpoint folder.

Shipped checkpoints (``data/models/<name>``) are found on disk by
:func:`~explorer.models.loading.resolve_model_dir`; the models here have no weights at all. Today
there is one: ``orders-oracle``, the exact posterior of the orders generator
(:mod:`explorer.tasks.orders_oracle`), the ceiling any trained model could reach with a given
sampler. A new one is one more entry in :data:`BUILTIN_MODELS`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class BuiltinModel:
    """A model built in code: ``build()`` returns a denoiser on the CPU."""
    name: str
    summary: str
    build: Callable[[], Any]


def _orders_oracle() -> Any:
    from explorer.tasks.orders_oracle import OrdersOracle

    return OrdersOracle()


BUILTIN_MODELS: dict[str, BuiltinModel] = {m.name: m for m in (
    BuiltinModel("orders-oracle", "the exact posterior of the orders task: a perfect model, no weights",
                 _orders_oracle),
)}
