"""One way to write a sampler as text: ``name[:key=value[:key=value ...]]``.

    parse_sampler("remdm-cap:eta=0.02")               # ReMDMCap(eta=0.02)
    parse_sampler("remdm-loop", nucleus_p=0.9)        # defaults apply unless the spec sets them
    parse_samplers("mdlm,remdm-cap:eta=0.02")         # {"mdlm": MDLM(), "remdm-cap:eta=0.02": ReMDMCap(...)}
    SamplerSpec.parse("remdm_LOOP:eta=0.05")          # SamplerSpec(name="remdm-loop", settings={"eta": 0.05})

The grammar, used by every command line and every script that takes a sampler:

* ``name`` is a key of :data:`explorer.samplers.REGISTRY`; case and ``_`` / ``-`` do not matter.
* each setting is ``key=value``; a value is read as JSON when it is JSON (``0.02``, ``true``,
  ``null``, ``[1, 2]``, ``"text"``) and as a plain string otherwise (``remaskable=none``).
* a setting may also follow a comma (``remdm-loop:eta=0.05,nucleus_p=0.9``): in a list a comma
  starts a new sampler only when the next item is not a ``key=value`` (names never hold ``=``),
  so one spec reads the same alone and inside ``--samplers a,b,c``. Brackets protect commas
  inside a value (``remaskable=[1,2]``).

Every mistake is a :class:`SamplerSpecError` (a ``ValueError``) whose message names the spec and
what to write instead; command lines add the option to change.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

__all__ = ["SamplerSpec", "SamplerSpecError", "UnknownSamplerError", "parse_sampler", "parse_samplers", "split_specs",
           "sampler_names"]


class SamplerSpecError(ValueError):
    """A sampler spec that cannot be read or built; the message says what to write instead."""


class UnknownSamplerError(SamplerSpecError):
    """The spec's name is not in the registry (the message lists the names)."""


def sampler_names() -> list[str]:
    """The names a spec may start with (the registry's keys, in its order)."""
    from explorer.samplers import REGISTRY   # the package imports this module: read it when called

    return list(REGISTRY)


def _normalise(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def _split_top(text: str, sep: str) -> list[str]:
    """``text`` split at ``sep`` outside brackets and quotes."""
    parts, depth, quote, start = [], 0, None, 0
    for i, ch in enumerate(text):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _is_setting(item: str) -> bool:
    head = _split_top(item, ":")[0]
    return "=" in head


def split_specs(text: str | Iterable[str]) -> list[str]:
    """The specs of a comma-separated list (or of several such strings), each as ``name:k=v:...``.

    A comma followed by a ``key=value`` continues the spec before it, so
    ``"mdlm,remdm-loop:eta=0.05,nucleus_p=0.9"`` is two specs: ``mdlm`` and
    ``remdm-loop:eta=0.05:nucleus_p=0.9``."""
    texts = [text] if isinstance(text, str) else list(text)
    specs: list[str] = []
    for t in texts:
        for item in (x.strip() for x in _split_top(t, ",")):
            if not item:
                continue
            if _is_setting(item) and specs:
                specs[-1] = f"{specs[-1]}:{item}"
            else:
                specs.append(item)
    return specs


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text.strip()


@dataclass(frozen=True)
class SamplerSpec:
    """A parsed spec: the registry ``name`` and its ``settings``; :meth:`build` makes the sampler."""
    name: str
    settings: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> "SamplerSpec":
        """Read ``name[:key=value ...]`` (commas between settings allowed); checks the name and the
        ``key=value`` form, not the values (the sampler checks those when built)."""
        if not isinstance(text, str) or not text.strip():
            raise SamplerSpecError(f"empty sampler spec {text!r}; write a name such as remdm-loop "
                                   f"(names: {', '.join(sampler_names())}).")
        specs = split_specs(text)
        if len(specs) != 1:
            raise SamplerSpecError(f"{text!r} holds {len(specs)} samplers ({', '.join(specs)}); give one here.")
        name, *pairs = [p.strip() for p in _split_top(specs[0], ":")]
        key = _normalise(name)
        if key not in sampler_names():
            raise UnknownSamplerError(f"unknown sampler {name!r}; choose one of {', '.join(sampler_names())}.")
        settings: dict[str, Any] = {}
        for pair in pairs:
            k, sep, v = pair.partition("=")
            if not sep or not k.strip() or not v.strip():
                raise SamplerSpecError(f"bad sampler setting {pair!r} in {text!r}; write key=value, "
                                       f"e.g. {key}:eta=0.02.")
            if k.strip() in settings:   # last-wins would silently drop one of the two values
                raise SamplerSpecError(f"setting {k.strip()!r} is given twice in {text!r}; give each setting once.")
            settings[k.strip()] = _value(v)
        return cls(key, settings)

    def build(self, **defaults) -> Any:
        """The sampler: ``defaults`` first, then this spec's settings. A setting the sampler does
        not take (named with those it does), or a value out of its range, is a
        :class:`SamplerSpecError` naming the sampler."""
        from explorer.samplers import REGISTRY

        takes = settings_of(self.name)
        unknown = [k for k in self.settings if k not in takes]
        if unknown:
            raise SamplerSpecError(f"{self.name} has no setting {', '.join(map(repr, unknown))}; it takes "
                                   f"{', '.join(takes)}.")
        try:
            return REGISTRY[self.name](**{**defaults, **self.settings})
        except TypeError as e:
            raise SamplerSpecError(f"bad settings for {self.name}: {e}") from None
        except ValueError as e:
            raise SamplerSpecError(f"{self.name}: {e}") from None

    def __str__(self) -> str:
        return ":".join([self.name, *(f"{k}={json.dumps(v)}" for k, v in self.settings.items())])


def settings_of(name: str) -> list[str]:
    """The settings a registered sampler takes (its constructor's keyword arguments), in order."""
    import inspect

    from explorer.samplers import REGISTRY

    params = inspect.signature(REGISTRY[name]).parameters.values()
    return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def parse_sampler(spec: Any, **defaults) -> Any:
    """A sampler from a spec string, a :class:`SamplerSpec`, or a sampler (returned as it is)."""
    if isinstance(spec, SamplerSpec):
        return spec.build(**defaults)
    if isinstance(spec, str):
        return SamplerSpec.parse(spec).build(**defaults)
    if hasattr(spec, "config") and hasattr(spec, "name"):
        return spec
    raise SamplerSpecError(f"{spec!r} is not a sampler or a sampler spec; write e.g. 'remdm-cap:eta=0.02'.")


def parse_samplers(specs: Any, **defaults) -> dict[str, Any]:
    """``{label: sampler}`` from ``"a,b:k=v"``, a list of specs and samplers, or a dict whose values are
    specs or samplers. A spec's label is its text as written; a sampler's is its ``name``; two
    entries with one label, or one spec written two ways (``mdlm,MDLM``, ``eta=0.02`` and ``eta=2e-2``),
    are refused."""
    if isinstance(specs, Mapping):
        return {str(k): parse_sampler(v, **defaults) for k, v in specs.items()}
    if isinstance(specs, (str, SamplerSpec)) or hasattr(specs, "config"):
        specs = [specs]
    out: dict[str, Any] = {}
    seen: list[tuple[SamplerSpec, str]] = []   # specs as parsed, with their labels: mdlm and MDLM are one sampler
    for item in specs:
        entries = split_specs(item) if isinstance(item, str) else [item]
        for entry in entries:
            label = entry.config["name"] if hasattr(entry, "config") else str(entry)
            parsed = SamplerSpec.parse(entry) if isinstance(entry, str) else entry
            if label in out:
                raise SamplerSpecError(f"sampler {label!r} is listed twice; give each one once (from Python, "
                                       "a dict {label: sampler} gives two of one kind their own labels).")
            same = next((first for spec, first in seen if spec == parsed), None)
            if same is not None:
                raise SamplerSpecError(f"samplers {same!r} and {label!r} are the same sampler written two ways; "
                                       "give each one once.")
            out[label] = parse_sampler(parsed, **defaults)
            if isinstance(parsed, SamplerSpec):
                seen.append((parsed, label))
    if not out:
        raise SamplerSpecError(f"no sampler in {specs!r}; write e.g. 'mdlm,remdm-loop'.")
    return out
