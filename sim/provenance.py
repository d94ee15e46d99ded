"""Which library prices a scenario's suite, and which one the hardware twin would run it with.

A Pi 4 runs ML-DSA-65 sign in 1.6 ms with liboqs' NEON code and in 5.3 ms with OpenSSL 3.6: a profile priced
by one library predicts another library's twin run 2-3x wrong. Profiles name each crypto operation's
``provider`` (sim/profile.py); the scenario names the twin's (``workload.crypto.provider``, ``auto`` = the
registry's order, sim/catalogue.TWIN_PROVIDERS). `mismatches` lists every host profile whose suite is priced
by another provider than the twin would use, as one warning line per profile.
"""

from __future__ import annotations

from sim import catalogue
from sim.scenario import Scenario


def twin_provider(algorithm: str, preference: str = "auto") -> str | None:
    """The provider the twin runs ``algorithm`` with: the preferred one when it implements the algorithm,
    else the first in the registry's order; None when no twin provider implements it."""
    offered = catalogue.TWIN_PROVIDERS.get(algorithm, ())
    if preference in offered:
        return preference
    return offered[0] if offered else None


def suite_algorithms(s: Scenario) -> list[str]:
    """The suite's algorithms whose costs a host pays: KEM, signature (and its message hash), AEAD."""
    c = s.workload.crypto
    return [c.kem, c.signature, catalogue.get(c.signature).message_hash, c.aead]


def mismatches(s: Scenario) -> list[str]:
    """One line per host profile that prices part of the suite with another provider than the twin's."""
    preference = s.workload.crypto.provider
    by_profile: dict[str, list[str]] = {}
    for host in s.deployment.hosts:
        by_profile.setdefault(s.host_profile(host.name).profile, []).append(host.name)
    lines = []
    for name, hosts in by_profile.items():
        profile = s.host_profile(hosts[0])
        wrong: dict[tuple[str, str], list[str]] = {}  # (priced by, twin runs) -> algorithms
        for alg in suite_algorithms(s):
            ops = [f"{alg}.{op}" for op in catalogue.OPS[catalogue.get(alg).kind] if f"{alg}.{op}" in profile.ops]
            priced = {p for op in ops if (p := profile.ops[op].provider) is not None}
            twin = twin_provider(alg, preference)
            for provider in sorted(priced - {twin} if twin else priced):
                wrong.setdefault((provider, twin or "no provider"), []).append(alg)
        for (priced_by, twin), algs in wrong.items():
            lib = profile.platform.libraries[priced_by]
            switch = all(priced_by in catalogue.TWIN_PROVIDERS[a] for a in algs)
            lines.append(
                f"profile {name!r} (hosts {', '.join(hosts)}) prices {', '.join(algs)} with {priced_by} "
                f"({lib.library} {lib.version}), but the twin would run {'it' if len(algs) == 1 else 'them'} "
                f"with {twin} (workload.crypto.provider: {preference}): the simulated times are not the twin's; "
                f"use a profile priced by {twin}" + (f" or set workload.crypto.provider: {priced_by}" if switch else "")
            )
    return lines
