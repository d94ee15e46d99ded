"""Network model: routes from NetworkX, each link direction a FIFO server.

A message is cut into segments of ``segment_bytes`` that pipeline across hops. On each hop a segment
waits for the link (queue wait), holds it for its serialisation delay ``bytes * 8 / bandwidth_bps``, then
propagates for ``latency_s`` plus an exponential jitter of mean ``jitter_s`` (without holding the link).
With probability ``loss`` a segment is lost after serialisation and sent again after a retransmission
timeout of one round trip on that link (2 * latency_s + its serialisation delay), as a fast retransmit.
So an N-byte message over one idle, lossless, jitter-free link takes exactly N*8/bandwidth + latency.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import networkx as nx
import numpy as np
import simpy

from sim.scenario import lowest_latency_path
from sim.streams import stream


@dataclass(eq=False)
class LinkServer:
    """One direction of a link: a FIFO server with counters."""

    name: str
    bandwidth_bps: float
    latency_s: float
    jitter_s: float
    loss: float
    busy_s: float = 0.0  # serialising, including retransmissions
    demand_s: float = 0.0  # serialisation time asked for, including segments still queued at the end
    bytes_sent: int = 0
    retransmissions: int = 0
    # the FIFO server: when it has served everything asked so far (requests come in time order, so a request
    # starts at max(now, free_s): the queue without a queue object)
    free_s: float = 0.0
    series: np.ndarray | None = None  # busy seconds per time bin (shared links; Network.track)
    index: int = 0  # its random stream: the network seed's child of this index (Network.rng)
    rng: np.random.Generator | None = None
    # (asked_s, service_s, granted_s) of every transmission when set: the vectorized engine replays them
    log: list[tuple[float, float, float]] | None = None


class Network:
    """Links of a NetworkX graph whose edges carry ``params: LinkParams`` (``Scenario.graph``); messages take
    ``lowest_latency_path``, the routing rule the twin's backends use too."""

    def __init__(self, env: simpy.Environment, graph: nx.Graph, seed: np.random.SeedSequence, segment_bytes: int):
        self.env, self.seed, self.segment_bytes = env, seed, segment_bytes
        self.graph = graph
        self.links: dict[tuple[str, str], LinkServer] = {}
        for u, v, data in graph.edges(data=True):
            bw, lat, jit, loss = data["params"].resolved()
            for a, b in ((u, v), (v, u)):
                self.links[a, b] = LinkServer(f"{a}->{b}", bw, lat, jit, loss, index=len(self.links))
        self._routes: dict[tuple[str, str], list[LinkServer]] = {}
        self.bin_s = 1.0

    def rng(self, link: LinkServer) -> np.random.Generator:
        """A link's own random stream (loss, jitter): its draws follow its own transmissions, not every
        link's in event order, so a change of timing elsewhere does not reshuffle them."""
        if link.rng is None:
            link.rng = stream(self.seed, link.index)
        return link.rng

    def track(self, bin_s: float, bins: int) -> None:
        """Keep each link's busy seconds per ``bin_s`` bin (by service start), except devices' access links."""
        self.bin_s = bin_s
        for (a, b), link in self.links.items():
            if self.graph.nodes[a].get("kind") != "device" and self.graph.nodes[b].get("kind") != "device":
                link.series = np.zeros(bins)

    def route(self, src: str, dst: str) -> list[LinkServer]:
        """Link directions on the path from src to dst (cached). A leaf (a device) has one way in and out, so
        its routes are its access link plus its gateway's route: one search per gateway, not per device."""
        key = (src, dst)
        if key not in self._routes:
            g = self.graph
            if src != dst and g.degree(src) == 1:
                (hop,) = g.neighbors(src)
                self._routes[key] = (
                    [self.links[src, hop], *self.route(hop, dst)] if hop != dst else [self.links[src, hop]]
                )
            elif src != dst and g.degree(dst) == 1:
                (hop,) = g.neighbors(dst)
                self._routes[key] = (
                    [*self.route(src, hop), self.links[hop, dst]] if hop != src else [self.links[src, dst]]
                )
            else:
                path = lowest_latency_path(g, src, dst)
                self._routes[key] = [self.links[a, b] for a, b in itertools.pairwise(path)]
        return self._routes[key]

    def transfer(self, src: str, dst: str, nbytes: int) -> Generator[Any, Any, float]:
        """Carry nbytes from node src to node dst; returns the head segment's total queue wait (s)."""
        if src == dst or nbytes <= 0:
            return 0.0
        links = self.route(src, dst)
        if nbytes <= self.segment_bytes:  # one segment: carried in this process (no process, no condition)
            return (yield from self._carry(links, nbytes))
        n = max(1, math.ceil(nbytes / self.segment_bytes))
        sizes = [self.segment_bytes] * (n - 1) + [nbytes - self.segment_bytes * (n - 1)]
        procs = [self.env.process(self._carry(links, size)) for size in sizes]
        yield self.env.all_of(procs)
        return float(procs[0].value or 0.0)

    def _carry(self, links: list[LinkServer], size: int) -> Generator[Any, Any, float]:
        env, wait = self.env, 0.0
        for link in links:
            service = size * 8 / link.bandwidth_bps
            while True:
                link.demand_s += service
                asked = env.now
                start = link.free_s if link.free_s > asked else asked  # FIFO: after everything asked before
                link.free_s = start + service
                wait += start - asked
                if link.series is not None:
                    link.series[min(int(start / self.bin_s), link.series.size - 1)] += service
                if link.log is not None:
                    link.log.append((asked, service, start))
                yield env.timeout(link.free_s - asked)
                link.busy_s += service
                link.bytes_sent += size
                if link.loss and self.rng(link).random() < link.loss:
                    link.retransmissions += 1
                    yield env.timeout(2 * link.latency_s + service)
                    continue
                break
            delay = link.latency_s + (self.rng(link).exponential(link.jitter_s) if link.jitter_s else 0.0)
            yield env.timeout(delay)
        return wait
