"""Which provider implements algorithm X here: the registry of crypto providers.

The default registry holds, in order of preference, ``openssl`` (pyca/cryptography, always available)
and ``liboqs`` (when the C library and liboqs-python are installed). Providers are probed once, on first
use. `find` returns the algorithm object of the first available provider that implements the name
(``prefer`` moves named providers to the front); when none does it raises `UnsupportedAlgorithm` with one
line naming the algorithm and every provider that would implement it, with the reason each cannot::

    ML-KEM-512: not available here; provided by liboqs (unavailable: liboqs shared library not found; ...)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Literal, NamedTuple, overload

from hw.crypto.base import Aead, AlgorithmObject, Hash, Kem, Kind, Provider, Signer, UnsupportedAlgorithm
from sim.catalogue import CATALOGUE


class Offer(NamedTuple):
    """One provider's answer for one algorithm."""

    provider: str
    available: bool
    reason: str  # "" when available


class Registry:
    """An ordered set of providers (earlier = preferred)."""

    def __init__(self, providers: Sequence[Provider]) -> None:
        self._providers = list(providers)
        self._preferred: str | None = None
        names = [p.name for p in self._providers]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate provider names: {names}")

    def set_preference(self, provider: str) -> None:
        """Try ``provider`` first in every later `find` without ``prefer`` (``auto``: registry order). A twin
        process runs one suite, so its scenario's ``workload.crypto.provider`` is set once, at start."""
        if provider != "auto":
            self.provider(provider)  # ValueError naming the known ones
        self._preferred = None if provider == "auto" else provider

    @contextmanager
    def preferring(self, provider: str) -> Iterator[None]:
        """`set_preference` for a block (an orchestrator generating a run's keys), then the previous one."""
        before = self._preferred
        self.set_preference(provider)
        try:
            yield
        finally:
            self._preferred = before

    def providers(self) -> list[Provider]:
        return list(self._providers)

    def provider(self, name: str) -> Provider:
        for p in self._providers:
            if p.name == name:
                return p
        raise ValueError(f"unknown provider {name!r} (known: {', '.join(p.name for p in self._providers)})")

    def algorithms(self, kind: Kind | None = None) -> set[str]:
        """Every algorithm name (optionally of one kind) some available provider implements here."""
        return set().union(*(p.algorithms(kind) for p in self._providers))

    def which(self, name: str) -> list[Offer]:
        """Every provider that implements ``name`` when available, and whether it can here."""
        offers = []
        for p in self._providers:
            if name not in p.supported():
                continue
            if not p.available:
                offers.append(Offer(p.name, False, p.reason))
            elif name not in p.algorithms():
                offers.append(Offer(p.name, False, f"this {p.name} build does not enable {name}"))
            else:
                offers.append(Offer(p.name, True, ""))
        return offers

    @overload
    def find(self, name: str, kind: Literal["kem"], prefer: str | Sequence[str] | None = None) -> Kem: ...
    @overload
    def find(self, name: str, kind: Literal["signature"], prefer: str | Sequence[str] | None = None) -> Signer: ...
    @overload
    def find(self, name: str, kind: Literal["aead"], prefer: str | Sequence[str] | None = None) -> Aead: ...
    @overload
    def find(self, name: str, kind: Literal["hash"], prefer: str | Sequence[str] | None = None) -> Hash: ...
    @overload
    def find(self, name: str, kind: None = None, prefer: str | Sequence[str] | None = None) -> AlgorithmObject: ...

    def find(self, name: str, kind: Kind | None = None, prefer: str | Sequence[str] | None = None) -> AlgorithmObject:
        """The algorithm object for ``name`` from the first available provider that implements it.

        ``prefer``: a provider name, or names, tried first (in that order); the others follow in
        registry order. Raises `UnsupportedAlgorithm` (a ValueError) if no available provider has it,
        or if it is of another kind than ``kind``.
        """
        expected = self._kind_of(name)
        if kind is not None and expected is not None and expected != kind:
            raise UnsupportedAlgorithm(f"{name}: is a {expected}, not a {kind}")
        for p in self._ordered(prefer):
            if p.available and name in p.algorithms():
                return p.get(name, kind)
        raise UnsupportedAlgorithm(self._missing(name, kind))

    def _kind_of(self, name: str) -> Kind | None:
        alg = CATALOGUE.get(name)
        if alg is not None:
            return alg.kind
        for p in self._providers:
            k = p.supported().get(name)
            if k is not None:
                return k
        return None

    def _ordered(self, prefer: str | Sequence[str] | None) -> list[Provider]:
        prefer = prefer if prefer is not None else self._preferred
        if prefer is None:
            return self._providers
        first = [self.provider(n) for n in ([prefer] if isinstance(prefer, str) else prefer)]
        return first + [p for p in self._providers if p not in first]

    def _missing(self, name: str, kind: Kind | None) -> str:
        offers = self.which(name)
        if offers:
            who = ", ".join(f"{o.provider} (unavailable: {o.reason})" for o in offers)
            return f"{name}: not available here; provided by {who}"
        known = sorted(self.algorithms(kind))
        what = kind or "algorithm"
        return f"{name}: no provider implements this {what} (available {what}s: {', '.join(known)})"


_default: Registry | None = None


def default() -> Registry:
    """The process-wide registry (openssl, then liboqs), built and probed on first use."""
    global _default
    if _default is None:
        from hw.crypto.liboqs import LiboqsProvider
        from hw.crypto.openssl import OpensslProvider

        _default = Registry([OpensslProvider(), LiboqsProvider()])
    return _default


def providers() -> list[Provider]:
    """The default registry's providers, in order of preference."""
    return default().providers()


def which(name: str) -> list[Offer]:
    """`Registry.which` on the default registry."""
    return default().which(name)


@overload
def find(name: str, kind: Literal["kem"], prefer: str | Sequence[str] | None = None) -> Kem: ...
@overload
def find(name: str, kind: Literal["signature"], prefer: str | Sequence[str] | None = None) -> Signer: ...
@overload
def find(name: str, kind: Literal["aead"], prefer: str | Sequence[str] | None = None) -> Aead: ...
@overload
def find(name: str, kind: Literal["hash"], prefer: str | Sequence[str] | None = None) -> Hash: ...
@overload
def find(name: str, kind: None = None, prefer: str | Sequence[str] | None = None) -> AlgorithmObject: ...


def find(name: str, kind: Kind | None = None, prefer: str | Sequence[str] | None = None) -> AlgorithmObject:
    """`Registry.find` on the default registry."""
    return default().find(name, kind, prefer)
