"""Random streams: the child of a seed that a link, host, device, server or pass draws from.

A child is named by its key under its parent (``SeedSequence.spawn`` numbers them in order; naming one directly
lets a stream be made lazily, or made again for the next pass, without spawning all before it).
"""

from __future__ import annotations

import numpy as np


def child(seed: np.random.SeedSequence, *key: int) -> np.random.SeedSequence:
    """The child ``key`` of ``seed`` (no key: a fresh copy of ``seed``, whose spawns restart from the first)."""
    return np.random.SeedSequence(seed.entropy, spawn_key=(*seed.spawn_key, *key))


def stream(seed: np.random.SeedSequence, *key: int) -> np.random.Generator:
    """A generator on the child ``key`` of ``seed``."""
    return np.random.default_rng(child(seed, *key))
