"""Training data for the twin: synthetic patient vitals with a deterioration label.

No medical data set ships with our dependencies, so the twin generates vitals-like features (heart rate,
SpO2, blood pressure, respiration, temperature, ECG-derived intervals and their trends; 30 features,
standardised) and a label from a fixed nonlinear early-warning-style rule with noise. Each client draws
from a shifted population (non-IID: different wards see different patients); the test set is drawn from
the mixture. Deterministic for a given seed.
"""

from __future__ import annotations

import numpy as np

FEATURES = 30
_RULE_SEED = 20260606  # the ground-truth rule is fixed across runs; only the samples depend on the seed


def _rule() -> tuple[np.ndarray, np.ndarray]:
    r = np.random.default_rng(_RULE_SEED)
    return r.normal(0, 1, FEATURES), r.normal(0, 1, (FEATURES, 4))


def sample(n: int, rng: np.random.Generator, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """n standardised feature rows and 0/1 labels; ``shift`` moves the population (non-IID clients)."""
    w, v = _rule()
    x = rng.normal(shift, 1.0, (n, FEATURES))
    score = x @ w / np.sqrt(FEATURES) + 0.8 * np.tanh(x @ v).sum(axis=1) + rng.normal(0, 0.3, n)
    return x.astype(np.float32), (score > 0).astype(np.float32)


def client_data(index: int, clients: int, samples: int, seed: np.random.SeedSequence) -> tuple[np.ndarray, np.ndarray]:
    shift = 0.5 * (index / max(1, clients - 1) - 0.5) if clients > 1 else 0.0
    return sample(samples, np.random.default_rng(seed), shift)


def holdout(seed: np.random.SeedSequence, n: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    return sample(n, np.random.default_rng(seed))
