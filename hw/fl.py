"""The twin's real FL model: a NumPy two-layer perceptron, local SGD training and FedAvg.

The hidden width is chosen so the parameter count matches the scenario's ``model_parameters`` (as
closely as whole units allow), so payload sizes on the wire match what the simulator assumed.
Parameters travel as one flat float32 vector: W1 (d×h), b1 (h), w2 (h), b2 (1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DTYPE = np.float32


@dataclass(frozen=True)
class Shape:
    features: int
    hidden: int

    @property
    def parameters(self) -> int:
        return self.features * self.hidden + 2 * self.hidden + 1

    @classmethod
    def for_parameters(cls, target: int, features: int) -> Shape:
        """The shape whose parameter count is closest to ``target`` (at least one hidden unit)."""
        return cls(features, max(1, round((target - 1) / (features + 2))))


def init(shape: Shape, rng: np.random.Generator) -> np.ndarray:
    """Glorot-scaled initial parameters as one flat float32 vector."""
    d, h = shape.features, shape.hidden
    w1 = rng.normal(0, np.sqrt(2 / (d + h)), size=d * h)
    w2 = rng.normal(0, np.sqrt(2 / (h + 1)), size=h)
    return np.concatenate([w1, np.zeros(h), w2, np.zeros(1)]).astype(DTYPE)


def _split(shape: Shape, theta: np.ndarray) -> tuple[np.ndarray, ...]:
    d, h = shape.features, shape.hidden
    w1 = theta[: d * h].reshape(d, h)
    b1 = theta[d * h : d * h + h]
    w2 = theta[d * h + h : d * h + 2 * h]
    return w1, b1, w2, theta[-1:]


def predict(shape: Shape, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Probability of the positive class for each row of x."""
    w1, b1, w2, b2 = _split(shape, theta)
    z = np.maximum(x @ w1 + b1, 0) @ w2 + b2
    return 1 / (1 + np.exp(-z))


def train(
    shape: Shape, theta: np.ndarray, x: np.ndarray, y: np.ndarray, epochs: int, rng: np.random.Generator,
    lr: float = 0.05, batch: int = 32,
) -> np.ndarray:  # fmt: skip
    """Local minibatch SGD on binary cross-entropy; returns new parameters (input untouched)."""
    theta = theta.copy()
    w1, b1, w2, b2 = _split(shape, theta)  # views into theta: updated in place
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for start in range(0, len(x), batch):
            idx = order[start : start + batch]
            xb, yb = x[idx], y[idx]
            hidden = np.maximum(xb @ w1 + b1, 0)
            p = 1 / (1 + np.exp(-(hidden @ w2 + b2)))
            g = ((p - yb) / len(idx)).astype(DTYPE)
            gh = np.outer(g, w2) * (hidden > 0)
            w2 -= lr * (hidden.T @ g)
            b2 -= lr * g.sum(keepdims=True)
            w1 -= lr * (xb.T @ gh)
            b1 -= lr * gh.sum(axis=0)
    return theta


def fedavg(updates: list[np.ndarray], weights: list[float]) -> np.ndarray:
    """Weighted average of parameter vectors (weights: samples per client)."""
    if not updates or len(updates) != len(weights):
        raise ValueError("fedavg needs one weight per update and at least one update")
    total = float(sum(weights))
    out = np.zeros_like(updates[0])
    for u, w in zip(updates, weights, strict=True):
        out += u * DTYPE(w / total)
    return out


def accuracy(shape: Shape, theta: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    return float(((predict(shape, theta, x) >= 0.5) == (y >= 0.5)).mean())


def serialize(theta: np.ndarray) -> bytes:
    return np.ascontiguousarray(theta, dtype=DTYPE).tobytes()


class NotAModel(ValueError):
    """Bytes that are no model of the run: another size, or a value that is not finite."""


def deserialize(data: bytes | bytearray | memoryview, parameters: int | None = None) -> np.ndarray:
    """The vector in ``data``, any bytes-like (the nodes pass a view of their record buffer), as a copy.

    An authenticated peer (a compromised pod) can still send a vector of another size, which would end FedAvg, or
    with NaN or infinity, which would poison the global model for good: ``NotAModel`` for a size other than
    ``parameters`` (when given), and for a value that is not finite or values too large to average (their squares
    sum beyond float32's range, 3.4e38). One BLAS pass finds both: the vector's dot product with itself is then NaN
    or infinite, and it costs less than the copy (1 M parameters: ~130 against ~140 µs here)."""
    nbytes = memoryview(data).nbytes  # len() of a memoryview counts items, not bytes
    if nbytes % np.dtype(DTYPE).itemsize:
        raise NotAModel(f"a payload of {nbytes} bytes is not a whole number of float32 values")
    if parameters is not None and nbytes // np.dtype(DTYPE).itemsize != parameters:
        raise NotAModel(f"{nbytes // np.dtype(DTYPE).itemsize:,} parameters where the run's model has {parameters:,}")
    theta = np.frombuffer(data, dtype=DTYPE).copy()
    if not np.isfinite(np.dot(theta, theta)):
        raise NotAModel("a parameter that is not finite (NaN or infinity), or parameters too large to average")
    return theta
