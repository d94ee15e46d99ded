"""Random streams: the child of a seed that a link, host, device, server or pass draws from.

A child is named by its key under its parent (``SeedSequence.spawn`` numbers them in order; naming one directly
lets a stream be made lazily, or made again for the next pass, without spawning all before it).

``Streams`` makes the children ``key + (i,)`` of one parent for many ``i`` at once (a device's access link each,
20,000 at 10,000 devices): numpy's SeedSequence hashing (bit_generator.pyx: ``mix_entropy``,
``generate_state``), computed for all of them in vector operations, then each generator seeded with its words.
The same generators, draw for draw, as ``stream`` makes one by one (tests/test_streams.py checks them against
numpy's), at a tenth of the cost: ~1 µs a stream instead of ~11.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from numpy.random.bit_generator import ISeedSequence


def child(seed: np.random.SeedSequence, *key: int) -> np.random.SeedSequence:
    """The child ``key`` of ``seed`` (no key: a fresh copy of ``seed``, whose spawns restart from the first)."""
    return np.random.SeedSequence(seed.entropy, spawn_key=(*seed.spawn_key, *key))


def stream(seed: np.random.SeedSequence, *key: int) -> np.random.Generator:
    """A generator on the child ``key`` of ``seed``."""
    return np.random.default_rng(child(seed, *key))


# numpy's SeedSequence constants (numpy/random/bit_generator.pyx)
_INIT_A, _MULT_A = np.uint32(0x43B0D7E5), np.uint32(0x931E8875)
_INIT_B, _MULT_B = np.uint32(0x8B51F9DD), np.uint32(0x58F38DED)
_MIX_L, _MIX_R = np.uint32(0xCA01F9DD), np.uint32(0x4973F715)
_SHIFT = np.uint32(16)
_POOL = 4
_WORDS = 8  # PCG64 asks for 4 uint64, as 8 uint32


def _words(n: int) -> list[int]:
    """A non-negative int as numpy's SeedSequence reads it: little-endian 32-bit words, 0 as one word."""
    out = [n & 0xFFFFFFFF]
    n >>= 32
    while n:
        out.append(n & 0xFFFFFFFF)
        n >>= 32
    return out


class _Seeded(ISeedSequence):
    """A seed sequence that hands out one generator's precomputed state words."""

    __slots__ = ("state",)

    def __init__(self, state: np.ndarray):
        self.state = state

    def generate_state(self, n_words: int, dtype: Any = np.uint32) -> np.ndarray:
        assert n_words == _WORDS // 2 and np.dtype(dtype) == np.uint64, "PCG64's request only"
        return self.state


BANK_MIN = 16  # children below which making them one by one costs less than a bank (~0.15 ms)


class Streams:
    """The generators of the children ``key + (i,)`` of ``seed``, i in [0, n), each made when first asked for:
    from the bank, computed at the first, where there are ``BANK_MIN`` or more; else one by one (``stream``)."""

    def __init__(self, seed: np.random.SeedSequence, key: tuple[int, ...], n: int):
        entropy = seed.entropy
        if not isinstance(entropy, int) or entropy < 0 or seed.pool_size != _POOL:
            raise ValueError("Streams needs a SeedSequence of one non-negative int entropy and the default pool")
        if n - 1 > 0xFFFFFFFF:
            raise ValueError("Streams numbers children below 2**32")
        self.seed, self.key, self.n, self._entropy = seed, key, n, entropy
        self._made: dict[int, np.random.Generator] = {}

    @functools.cached_property
    def _state(self) -> np.ndarray:
        """Every child's PCG64 seed words (numpy's ``generate_state(4, np.uint64)``), one row each."""
        run = _words(self._entropy)
        prefix = [w for k in (*self.seed.spawn_key, *self.key) for w in _words(int(k))]
        run += [0] * (_POOL - len(run))  # a spawn key follows the entropy padded to the pool (numpy does the same)
        fixed = np.array(run + prefix, dtype=np.uint32)
        entropy_words = np.empty((self.n, fixed.size + 1), dtype=np.uint32)
        entropy_words[:, :-1] = fixed
        entropy_words[:, -1] = np.arange(self.n, dtype=np.uint32)
        return _generate_state(_mix_entropy(entropy_words))

    def __getitem__(self, i: int) -> np.random.Generator:
        rng = self._made.get(i)
        if rng is None:
            if self.n < BANK_MIN:
                rng = stream(self.seed, *self.key, i)
            else:  # numpy's bit generators take any ISeedSequence (its stubs name SeedSequence only)
                rng = np.random.Generator(np.random.PCG64(_Seeded(self._state[i])))  # type: ignore[arg-type]
            self._made[i] = rng
        return rng


def _hashmix(value: np.ndarray, const: np.uint32) -> tuple[np.ndarray, np.uint32]:
    value = value ^ const
    const = np.uint32(const * _MULT_A)
    value = value * const
    return value ^ (value >> _SHIFT), const


def _mix(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    result: np.ndarray = _MIX_L * x - _MIX_R * y
    return result ^ (result >> _SHIFT)  # type: ignore[no-any-return]


def _mix_entropy(entropy: np.ndarray) -> np.ndarray:
    """numpy's ``SeedSequence.mix_entropy`` of each row of ``entropy`` (rows of at least the pool's length)."""
    with np.errstate(over="ignore"):
        const = _INIT_A
        pool = []
        for i in range(_POOL):
            word, const = _hashmix(entropy[:, i], const)
            pool.append(word)
        for src in range(_POOL):
            for dst in range(_POOL):
                if src != dst:
                    hashed, const = _hashmix(pool[src], const)
                    pool[dst] = _mix(pool[dst], hashed)
        for src in range(_POOL, entropy.shape[1]):
            for dst in range(_POOL):
                hashed, const = _hashmix(entropy[:, src], const)
                pool[dst] = _mix(pool[dst], hashed)
    return np.stack(pool, axis=1)


def _generate_state(pool: np.ndarray) -> np.ndarray:
    """numpy's ``SeedSequence.generate_state(4, np.uint64)`` of each row of ``pool``."""
    out = np.empty((pool.shape[0], _WORDS), dtype=np.uint32)
    with np.errstate(over="ignore"):
        const = _INIT_B
        for i in range(_WORDS):
            word = pool[:, i % _POOL] ^ const
            const = np.uint32(const * _MULT_B)
            word = word * const
            out[:, i] = word ^ (word >> _SHIFT)
    return out.astype("<u4").view("<u8").astype(np.uint64)
