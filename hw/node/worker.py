"""The worker role: a crypto worker process of a concurrent run (hw/node/delegation.py has the protocol).

It connects to the aggregator, authenticates like any pod, receives the aggregator's identity, then serves
one job at a time until the aggregator closes the channel: ``VERIFY`` opens a client's record (decapsulate,
decrypt), verifies the client's signature and deserialises the update; ``DISTRIBUTE`` serialises the
global model into the client's message, signs it as the aggregator, (encapsulates,) encrypts it. Its spans
carry its scenario worker pod's name, as the simulator's do.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hw import fl
from hw.channel import Channel, ConnectionClosed, Identity, Peer, SecurityError
from hw.node.client import open_session
from hw.node.common import MODEL, UPDATE, Node, log, message, model_of, protect, shape_of, unprotect, warm_up
from hw.node.delegation import DISTRIBUTE, DONE_OK, DONE_REJECTED, Job, decode_grant, decode_job, pack, record_of
from hw.rundir import NodeResult


def run_worker(node: Node) -> NodeResult:
    cfg = node.cfg
    ident = node.identity()
    shape = shape_of(node)
    warm_up(node.suite, cfg.fl.model_parameters * 4, shape)
    node.keys.publish(node.name, [ident])
    agg = cfg.aggregator
    trust = node.trust([agg, *cfg.fl.clients])
    ch, first = open_session(node, ident, trust, cfg.routes[node.name][agg], agg, cfg.connect_timeout_s)
    grant = decode_grant(memoryview(ch.open(first)))
    if grant["name"] != agg:
        raise SecurityError("identity", f"granted the identity of {grant['name']!r}, not of {agg!r}")
    owner = Identity.import_private(agg, grant, node.suite)
    jobs = serve(node, ch, agg, node.suite.aead, lambda job: do_job(node, owner, job, trust))
    return NodeResult(state="completed", rounds=jobs)


def serve(node: Node, ch: Channel, agg: str, aead: str, answer: Callable[[Job], bytearray],
          served: Callable[[Job], None] | None = None) -> int:  # fmt: skip
    """Serve jobs one at a time until the aggregator closes the channel: open each, ``answer`` it, seal and send
    the answer (``served`` is told after each; ``pqtwin calibrate`` times this loop). The jobs served. A worker the
    aggregator dropped (stopped past the round's deadline, then resumed) ends at its answer's write."""
    jobs = 0
    while True:
        try:
            rec = ch.read_record()
        except ConnectionClosed:
            break
        arrived = node.now()
        job = decode_job(memoryview(ch.open(rec)))  # its phase and round are known once it is open
        node.round, phase = job.round, "verify" if job.kind != DISTRIBUTE else "distribute"
        node.transfer(rec, agg, phase, arrived)
        node.add(node.pod, node.host, phase, f"{aead}.decrypt", arrived, node.now(), 0.0, len(job.payload))
        try:
            ch.write_sealed(ch.seal(answer(job), None, node.timer_for(job.round, phase), phase))
        except OSError as exc:  # the aggregator dropped this worker (it did not answer in time): as the channel's end
            log.warning("%s: the aggregator took no answer to a job of round %d (%s)", node.name, job.round, exc)
            break
        jobs += 1
        if served is not None:
            served(job)
    return jobs


def do_job(node: Node, owner: Identity, job: Job, trust: dict[str, Peer]) -> bytearray:
    """The answer to one job, packed (hw/node/delegation.py)."""
    return _distribute(node, owner, job, trust) if job.kind == DISTRIBUTE else _verify(node, owner, job, trust)


def _verify(node: Node, owner: Identity, job: Job, trust: dict[str, Peer]) -> bytearray:
    """A client's update: (decapsulate,) decrypt, verify, deserialise; or why it is rejected."""
    session = Channel.delegated(
        owner, node.suite, job.grant, sending=False, peer=job.client, counters=node.counters, clock=node.now
    )
    try:
        kind, rnd, payload = unprotect(node, session, record_of(job), trust[job.client].sig, "verify")
        # a straggler's update is checked too: a malformed one is an attack whenever it comes
        update = model_of(node, session, payload, shape_of(node), "verify") if kind == UPDATE else None
    except KeyError:
        return pack((DONE_REJECTED, 0, job.round, 0, 0), [b"identity", f"no client {job.client!r}".encode()])
    except SecurityError as exc:
        return pack((DONE_REJECTED, 0, job.round, 0, 0), [exc.kind.encode(), str(exc).encode()])
    if update is None or rnd != job.round:  # a straggler's update from an earlier round: not counted
        return pack((DONE_REJECTED, 0, job.round, 0, 0), [b"stale", f"an update of round {rnd}".encode()])
    with node.timer("verify", "serialize", nbytes=update.nbytes):  # the answer: one copy, as the hop is priced
        return pack((DONE_OK, kind, job.round, 0, 0), [b"", update.data.cast("B")])


def _distribute(node: Node, owner: Identity, job: Job, trust: dict[str, Peer]) -> bytearray:
    """The global model, sealed for one client as the aggregator would have."""
    session = Channel.delegated(
        owner, node.suite, job.grant, sending=True, peer=job.client, counters=node.counters, clock=node.now
    )
    theta = np.frombuffer(job.payload, fl.DTYPE)
    buf = message(node, MODEL, job.round, theta, "distribute")
    kem_pk = trust[job.client].kem if node.cfg.rekey == "per_message" else None
    sealed = protect(node, session, owner, buf, "distribute", kem_pk)
    body = sum(len(p) for p in sealed.parts)
    with node.timer("distribute", "serialize", nbytes=body):  # the answer: one copy, as the hop is priced
        return pack((DONE_OK, 0, job.round, 0, 0), [sealed.header, tuple(sealed.parts)])
