"""A native model's config.json as a dataclass: read it, write it, refuse what we do not implement.

Each family -- MDLM's DiT (:mod:`.dit`), LLaDA (:mod:`.llada`), Dream (:mod:`.dream`) -- is a
dataclass subclass of :class:`PublishedConfig` listing its published keys with the published
values as defaults. The families name the same quantities differently (``hidden_dim`` /
``d_model`` / ``hidden_size``) and share no default, so every family lists its own keys; what is
written once here is the path every config takes:

* :meth:`PublishedConfig.from_dict`, :meth:`~PublishedConfig.from_json_file` -- the keys the
  dataclass knows (the rest, e.g. ``auto_map``, is ignored), then :meth:`~PublishedConfig.validate`;
* :func:`fixed` -- marks a key whose only supported value is its published default (a setting
  that selects a code path the native model does not have); ``validate`` refuses any other value
  with one NotImplementedError naming each such key;
* ``WIDTH`` and ``HEADS`` -- the names of the family's model-width and query-head keys: the base
  derives :attr:`~PublishedConfig.head_dim` from them and ``validate`` checks that the width
  splits into heads of even size (RoPE rotates pairs);
* ``OUTPUT_ROWS`` -- the name of the key that counts the rows of the logits (LLaDA's
  ``embedding_size``, Dream's and the DiT's ``vocab_size``): ``validate`` checks that
  ``mask_token_id`` is one of them (the DiT's is ours and may be None: the last id), and the
  model's ``vocab_size`` is that key. A family's ``validate`` extends this one with its own checks;
* :meth:`PublishedConfig.to_dict` -- the published layout, minus ``auto_map``: no remote code is shipped.
"""
from __future__ import annotations

import os
from dataclasses import field, fields
from typing import Any

from .checkpoint import read_json


def fixed(value: Any) -> Any:
    """A dataclass field defaulting to ``value``, the only value the native model implements."""
    return field(default=value, metadata={"fixed": True})


def config_fields(cls, d: dict) -> dict:
    """The keys of config.json that the dataclass ``cls`` knows (the rest, e.g. auto_map, is ignored)."""
    known = set(cls.__dataclass_fields__)
    return {k: v for k, v in d.items() if k in known}


def require_settings(config: Any, required: dict, family: str) -> None:
    """Raise NotImplementedError naming each config key whose value this native model does not implement."""
    wrong = [f"{k}={getattr(config, k)!r} (supported: {v!r})" for k, v in required.items() if getattr(config, k) != v]
    if wrong:
        raise NotImplementedError(f"this {family} config uses settings the native model does not implement: "
                                  + "; ".join(wrong) + ". Only the published architecture is supported.")


class PublishedConfig:
    """Read, check and write a published config.json.

    A subclass is a dataclass with the family's keys (those marked :func:`fixed` are checked by
    :meth:`validate`), ``ARCHITECTURE`` (the ``architectures`` entry), ``FAMILY`` (the name in
    error messages), ``WIDTH`` and ``HEADS`` (its keys for the model width and the number of
    query heads) and ``OUTPUT_ROWS`` (its key for the number of rows of the logits, of which
    ``mask_token_id`` must be one); it extends :meth:`validate` with its own checks.
    """
    ARCHITECTURE = ""
    FAMILY = ""
    WIDTH = ""
    HEADS = ""
    OUTPUT_ROWS = ""

    @property
    def head_dim(self) -> int:
        return getattr(self, self.WIDTH) // getattr(self, self.HEADS)

    @property
    def output_rows(self) -> int:
        """The number of rows of the logits, the value of the ``OUTPUT_ROWS`` key."""
        return int(getattr(self, self.OUTPUT_ROWS))

    @classmethod
    def from_dict(cls, d: dict):
        return cls(**config_fields(cls, d)).validate()

    @classmethod
    def from_json_file(cls, path: str | os.PathLike):
        return cls.from_dict(read_json(path))

    def validate(self):
        """Refuse a :func:`fixed` key set to anything but its published value (NotImplementedError),
        a width that does not split into heads of even size and a ``mask_token_id`` (unless None)
        outside the ``OUTPUT_ROWS`` rows of the logits (ValueError); returns self."""
        require_settings(self, {f.name: f.default for f in fields(self) if f.metadata.get("fixed")}, self.FAMILY)
        width, heads = getattr(self, self.WIDTH), getattr(self, self.HEADS)
        if width % heads or (width // heads) % 2:
            raise ValueError(f"{self.WIDTH}={width} must split into {self.HEADS}={heads} heads of even size.")
        if self.mask_token_id is not None and not 0 <= self.mask_token_id < self.output_rows:
            raise ValueError(f"mask_token_id={self.mask_token_id} is outside the {self.output_rows} output rows "
                             f"({self.OUTPUT_ROWS}); set it to the id of the tokenizer's mask token.")
        return self

    def to_dict(self) -> dict:
        """The published config.json layout, minus ``auto_map``: no remote code is shipped."""
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["architectures"] = [self.ARCHITECTURE]
        return dict(sorted(d.items()))
