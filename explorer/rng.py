"""Counter-based random numbers: every uniform is a pure function of (seed, sample, step, purpose, position).

Why not ``torch.Generator``? Two promises of the engine need more than one stream per batch:

* sample ``i`` depends only on ``(seed, i)`` -- the same samples whatever the batch size;
* resuming from step ``k`` replays exactly the draws the parent run would have made.

A hash of the coordinates gives both, on any device, with no state to carry.  The mixer is
SplitMix64's finaliser (Steele et al., 2014), computed in wrapping int64 arithmetic; uniforms
take its top 53 bits, so they are exact float64 values in (0, 1).
"""
from __future__ import annotations

import torch

_MASK64 = (1 << 64) - 1
#: the largest seed: the streams key on the seed mod 2**64, so 2**64 would replay seed 0; the
#: engine and the command line refuse seeds above this (numpy's range for the judge's seed too)
MAX_SEED = 2**63 - 1
_C1 = 0xBF58476D1CE4E5B9
_C2 = 0x94D049BB133111EB
_GOLDEN = 0x9E3779B97F4A7C15

# what a uniform is used for; each purpose has its own independent stream (RACE: the
# per-(position, vocabulary entry) uniforms of the exponential race of the ranked samplers)
UNMASK, REMASK, TOKEN, ORDER, RANK, RACE = 1, 2, 3, 4, 5, 6
PURPOSES = (UNMASK, REMASK, TOKEN, ORDER, RANK, RACE)


def _signed(x: int) -> int:
    x &= _MASK64
    return x - (1 << 64) if x >= 1 << 63 else x


def mix64(x: int) -> int:
    """SplitMix64 finaliser on a Python int (reference implementation, also used for keys)."""
    x &= _MASK64
    x = ((x ^ (x >> 30)) * _C1) & _MASK64
    x = ((x ^ (x >> 27)) * _C2) & _MASK64
    return x ^ (x >> 31)


def _shr(z: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's >> is arithmetic)."""
    return (z >> k) & ((1 << (64 - k)) - 1)


def mix64_tensor(z: torch.Tensor) -> torch.Tensor:
    """SplitMix64 finaliser on an int64 tensor, bit-identical to :func:`mix64`."""
    return _mix64_(z.clone())


def _mix64_(z: torch.Tensor) -> torch.Tensor:
    """:func:`mix64_tensor` in place on a tensor the caller owns (fewer buffers)."""
    z ^= _shr(z, 30)
    z *= _signed(_C1)
    z ^= _shr(z, 27)
    z *= _signed(_C2)
    z ^= _shr(z, 31)
    return z


def stream_key(seed: int, sample: int, step: int, purpose: int) -> int:
    """A 64-bit key for one (seed, sample, step, purpose) stream."""
    k = mix64(seed * _GOLDEN + 0x632BE59BD9B4E019)
    k = mix64(k ^ (sample * _GOLDEN + 1))
    k = mix64(k ^ (step * _GOLDEN + 2))
    return mix64(k ^ (purpose * _GOLDEN + 3))


def uniforms(seed: int, samples: torch.Tensor | list[int], step: int, purpose: int,
             positions: torch.Tensor, device=None) -> torch.Tensor:
    """Float64 uniforms in (0, 1), shape ``[len(samples), len(positions)]``.

    ``samples`` are global sample indices, ``positions`` any int64 counters (sequence positions).
    """
    device = positions.device if device is None else device
    keys = stream_keys(seed, samples, step, purpose, device=device)
    return uniforms_from(keys[:, None], counter_term(positions.to(device))[None, :])


def sample_prefix(seed: int, sample: int) -> int:
    """The step-independent half of :func:`stream_key` for one sample (computed once per run)."""
    return mix64(mix64(seed * _GOLDEN + 0x632BE59BD9B4E019) ^ (sample * _GOLDEN + 1))


def step_keys(prefixes: list[int], steps: list[int], device=None) -> torch.Tensor:
    """int64 keys ``[S, len(PURPOSES), B]`` of every (step, purpose, sample), computed at once on
    the device; entry ``[i, p - 1, j]`` equals ``stream_key`` of ``steps[i]``, purpose ``p`` and the
    sample of ``prefixes[j]`` (:func:`sample_prefix`).  A run derives all its keys in one pass
    instead of hashing Python integers at every step."""
    pre = torch.tensor([_signed(k) for k in prefixes], dtype=torch.int64, device=device)
    st = torch.tensor([_signed(s * _GOLDEN + 2) for s in steps], dtype=torch.int64, device=device)
    pu = torch.tensor([_signed(p * _GOLDEN + 3) for p in PURPOSES], dtype=torch.int64, device=device)
    return mix64_tensor(mix64_tensor(st[:, None] ^ pre[None, :])[:, None, :] ^ pu[None, :, None])


def counter_term(counters: torch.Tensor) -> torch.Tensor:
    """(counter + 1) * golden in wrapping int64: the per-position half of every uniform."""
    return (counters.to(torch.int64) + 1) * _signed(_GOLDEN)


def uniforms_from(keys: torch.Tensor, term: torch.Tensor) -> torch.Tensor:
    """Float64 uniforms of ``keys + term`` (broadcast): the top 53 bits of the mixed sum, k, as
    (k + 0.5) / 2**53 (``term = counter_term(counters)``; every uniform of the package is made here)."""
    z = _mix64_(keys + term)
    z >>= 11                       # arithmetic shift; the mask below makes it logical
    z &= (1 << 53) - 1
    u = z.to(torch.float64)
    u += 0.5                       # k + 0.5 rounds (to even) once k >= 2**52: the top k would give 1.0
    u *= 2.0 ** -53
    return u.clamp_(max=1.0 - 2.0 ** -53)


def stream_keys(seed: int, samples, step: int, purpose: int, device=None) -> torch.Tensor:
    """int64 keys of the (seed, sample, step, purpose) streams, one per sample."""
    return torch.tensor([_signed(stream_key(seed, int(s), step, purpose)) for s in samples],
                        dtype=torch.int64, device=device)


def uniforms_at(seed: int, samples, step: int, purpose: int, row: torch.Tensor,
                position: torch.Tensor) -> torch.Tensor:
    """One uniform per selected ``(samples[row[i]], position[i])``, equal to the matching entry of
    :func:`uniforms`; ``row`` indexes the list ``samples`` of global sample indices."""
    keys = stream_keys(seed, samples, step, purpose, device=position.device)[row]
    return uniforms_from(keys, counter_term(position))
