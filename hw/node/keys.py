"""Where a node's keys come from: ``KeySource`` and its two kinds.

- ``MountedKeys`` (every backend): the backend generated every identity before starting the nodes; each
  process's private keys are a file (``identity.json``: ``{name: Identity.export_private()}``; on Kubernetes a
  mounted Secret, locally ``keys/<process>/`` 0600 in a 0700 directory: hw/provision.py) and its peers'
  public keys another (``trust.json``: ``{name: public}``, with ``devices`` holding ``{device: public}``).
  A node trusts nothing else.
- ``GeneratedKeys``: each process generates its identities, publishes the public keys to
  ``keys/<owner>.json`` and waits for its peers' files. Trust on first appearance: for tests of the node
  program alone, never used by a backend.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Protocol

from hw.channel import Identity, Peer, Suite, load_trust
from hw.runconfig import ProvisionedKeys
from sim.contract import RunLayout, atomic_write

TRUST_TIMEOUT_S = 60.0


class KeysUnavailable(Exception):
    """Keys that cannot be had (missing, unreadable, peers that never published)."""


class KeySource(Protocol):
    def identity(self, name: str) -> Identity:
        """The long-term keys of ``name`` (this node, or a device it runs)."""
        ...

    def publish(self, owner: str, idents: list[Identity]) -> None:
        """Make the public keys of ``idents`` known to peers (under ``owner``: a pod, or ``devices``)."""
        ...

    def trust(self, names: list[str]) -> dict[str, Peer]:
        """Pinned public keys of the named peers (``devices``: every device reporting here)."""
        ...


class GeneratedKeys:
    def __init__(self, run_dir: Path, suite: Suite, timeout_s: float = TRUST_TIMEOUT_S):
        self.layout, self.suite, self.timeout_s = RunLayout(run_dir), suite, timeout_s

    def identity(self, name: str) -> Identity:
        return Identity.generate(name, self.suite)

    def publish(self, owner: str, idents: list[Identity]) -> None:
        table: Any = {i.name: i.public() for i in idents} if owner == "devices" else idents[0].public()
        atomic_write(self.layout.public_keys(owner), json.dumps(table))

    def trust(self, names: list[str]) -> dict[str, Peer]:
        deadline = time.monotonic() + self.timeout_s
        entries: dict[str, dict[str, str]] = {}
        loaded: set[str] = set()
        while True:
            for n in set(names) - loaded:
                f = self.layout.public_keys(n)
                if f.exists():  # written atomically: complete when it exists
                    published = json.loads(f.read_text())
                    entries.update(published if n == "devices" else {n: published})  # devices: one file for all
                    loaded.add(n)
            if loaded == set(names):
                return load_trust(self.suite, entries)
            if time.monotonic() > deadline:
                missing = [n for n in names if n not in loaded]
                raise KeysUnavailable(f"no published keys from {', '.join(missing)} after {self.timeout_s:.0f} s")
            time.sleep(0.02)


class MountedKeys:
    def __init__(self, run_dir: Path, where: ProvisionedKeys, suite: Suite, pod: str = ""):
        # ``{pod}`` in a path: each process its own files (local runs: hw/provision.py)
        self.identity_file = run_dir / where.identity.replace("{pod}", pod)
        self.trust_file = run_dir / where.trust.replace("{pod}", pod)
        self.suite = suite
        self._private: dict[str, dict[str, str]] | None = None

    def identity(self, name: str) -> Identity:
        try:
            if self._private is None:
                self._private = json.loads(self.identity_file.read_text())
            entry = self._private.get(name)
            if entry is None:
                raise ValueError(f"no provisioned private keys for {name} in {self.identity_file}")
            return Identity.import_private(name, entry, self.suite)
        except (OSError, ValueError) as exc:
            raise KeysUnavailable(f"provisioned keys: {exc}") from None

    def publish(self, owner: str, idents: list[Identity]) -> None:
        return None  # the peers were given our public keys when the run was provisioned

    def trust(self, names: list[str]) -> dict[str, Peer]:
        try:
            table = json.loads(self.trust_file.read_text())
        except (OSError, ValueError) as exc:
            raise KeysUnavailable(f"provisioned trust store: {exc}") from None
        if missing := [n for n in names if n not in table]:
            raise KeysUnavailable(f"no provisioned keys for {', '.join(missing)}")
        entries: dict[str, dict[str, str]] = {}
        for n in names:
            entries.update(table[n] if n == "devices" else {n: table[n]})
        return load_trust(self.suite, entries)
