"""The aggregator's pool of crypto workers (hw/node/delegation.py ``WorkerPool``) against a worker whose answers
open but are not answers: real channels over TCP on 127.0.0.1, the worker's own ``serve`` loop on a thread."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from hw import hopcal
from hw.channel import HEADER, Channel, Delegation, Identity, load_trust
from hw.node.delegation import DISTRIBUTE, DONE_OK, VERIFY, Job, WorkerPool, pack
from hw.node.worker import serve

MODEL_BYTES = 400  # the run's update size, as the aggregator gives it


@contextlib.contextmanager
def _pool(answer: Callable[[Job], memoryview | bytearray],
          local: Callable[[Job], memoryview | bytearray]) -> Iterator[WorkerPool]:  # fmt: skip
    """A pool of one worker that answers every job with ``answer``; ``local`` does a job with no worker left."""
    suite = hopcal._suite()
    assert suite is not None
    agg, worker = Identity.generate("aggregator", suite), Identity.generate("worker-1", suite)
    trust = load_trust(suite, {"aggregator": agg.public(), "worker-1": worker.public()})
    with socket.create_server(("127.0.0.1", 0)) as srv:

        def run_worker() -> None:
            ch = Channel(socket.create_connection(srv.getsockname()), worker, suite, trust, counters=Counter())
            ch.initiate("aggregator", lambda *_: contextlib.nullcontext())
            serve(hopcal._node("worker-1"), ch, "aggregator", hopcal.AEAD, answer)  # type: ignore[arg-type]

        thread = threading.Thread(target=run_worker, daemon=True)
        thread.start()
        sock, _ = srv.accept()
        node = hopcal._node("aggregator")
        ch = Channel(sock, agg, suite, trust, counters=node.counters)  # as the aggregator's: one count of the run's
        ch.accept(lambda *_: contextlib.nullcontext())
        pool = WorkerPool(node, {"worker-1": ch}, local, 10.0, MODEL_BYTES)  # type: ignore[arg-type]
        try:
            yield pool
        finally:
            pool.close()
            thread.join(timeout=10)  # the worker's loop ends with its channel
    assert not thread.is_alive()


def _job(kind: int) -> Job:
    header = bytes(HEADER.size) if kind == VERIFY else b""
    return Job(kind, 1, "client-1", Delegation(bytes(32), bytes(4), bytes(32), 1), header, memoryview(os.urandom(4000)))


@pytest.mark.parametrize("fields", [[b"a header of the wrong size", b"x"], [b"", b"no header"]])
def test_a_distribution_answered_without_a_sealed_model_loses_the_worker_and_is_sealed_here(fields):
    """It raised in the job thread, where nothing saw it: the client never had its model and the round waited for
    it to the deadline (600 s by default)."""
    here = bytes(range(HEADER.size))
    with _pool(lambda job: pack((DONE_OK, 0, job.round, 0, 0), fields),
               lambda job: pack((DONE_OK, 0, job.round, 0, 0), [here, b"sealed here"])) as pool:  # fmt: skip
        sealed = pool.distribute(_job(DISTRIBUTE), pool.node.now())
        assert sealed.header == here and [bytes(p) for p in sealed.parts] == [b"sealed here"]
        assert pool.live == 0 and pool.node.counters == Counter({"tampered": 1, "worker_lost": 1})


@pytest.mark.parametrize("answer", [
    lambda job: pack((DONE_OK, VERIFY, job.round, 0, 0), [b"", bytes(MODEL_BYTES - 4)]),  # an update too short
    lambda job: pack((DONE_OK + 7, VERIFY, job.round, 0, 0), [b"", bytes(MODEL_BYTES)]),  # no answer's type
])  # fmt: skip
def test_a_verification_answered_with_no_update_of_the_models_size_loses_the_worker_and_is_done_here(answer):
    """An update of another size reached FedAvg and failed the aggregator's main thread."""
    update = np.arange(MODEL_BYTES // 4, dtype=np.float32)
    with _pool(answer, lambda job: pack((DONE_OK, VERIFY, job.round, 0, 0), [b"", update.data.cast("B")])) as pool:
        got = pool.verify(_job(VERIFY), pool.node.now())
        assert isinstance(got, np.ndarray) and np.array_equal(got, update)
        assert pool.live == 0 and pool.node.counters == Counter({"tampered": 1, "worker_lost": 1})


def test_an_answer_of_the_right_shape_keeps_the_worker():
    here = bytes(range(HEADER.size))
    with _pool(lambda job: pack((DONE_OK, 0, job.round, 0, 0), [here, b"sealed there"]),
               lambda job: pytest.fail("the worker answered: nothing is done here")) as pool:  # fmt: skip
        for _ in range(2):
            assert [bytes(p) for p in pool.distribute(_job(DISTRIBUTE), pool.node.now()).parts] == [b"sealed there"]
        assert pool.live == 1 and not pool.node.counters


def test_a_job_threads_failure_is_said_and_its_round_does_not_wait_for_it(caplog):
    """The aggregator's pool jobs: an exception stayed in the job's future, unsaid, and the round waited to its
    deadline; now the model is sealed on the job thread itself, and an update counts as not valid."""
    import queue
    from types import SimpleNamespace

    from hw.node.aggregator import Aggregator, Arrival

    calls: list[float | None] = []

    def send_model(c: str, r: int, theta: np.ndarray, queued_at: float | None) -> None:
        calls.append(queued_at)
        if queued_at is not None:
            raise RuntimeError("a bug in the job's path")

    def verify_job(a: Arrival, r: int, queued_at: float) -> None:
        raise RuntimeError("a bug in the job's path")

    agg = SimpleNamespace(node=SimpleNamespace(name="aggregator"), _send_model=send_model, _verify_job=verify_job,
                          inbox=queue.Queue())  # fmt: skip
    Aggregator._model_job(agg, "client-1", 3, np.zeros(4, np.float32), 1.5)  # type: ignore[arg-type]
    assert calls == [1.5, None]  # the workers' way, then the job thread's own
    Aggregator._update_job(agg, Arrival("client-2", None), 3, 1.5)  # type: ignore[arg-type]
    got = agg.inbox.get_nowait()
    assert (got.client, got.verdict, got.from_worker, got.round) == ("client-2", None, True, 3)
    said = [r.getMessage() for r in caplog.records]
    assert said == ["aggregator: round 3: the model for client-1 failed in a job thread; sealed here instead",
                    "aggregator: round 3: the update of client-2 failed in a job thread; not counted"]  # fmt: skip


def test_a_workers_rejection_is_an_answer_whatever_bytes_it_names_its_kind_with():
    """A rejection's kind and detail are the worker's bytes: not UTF-8, they still read (replaced), the worker stays."""
    from hw.channel import SecurityError
    from hw.node.delegation import DONE_REJECTED

    with _pool(lambda job: pack((DONE_REJECTED, 0, job.round, 0, 0), [b"\xfftampered", b"\xfe bad signature"]),
               lambda job: pytest.fail("the worker answered: nothing is done here")) as pool:  # fmt: skip
        got = pool.verify(_job(VERIFY), pool.node.now())
        assert isinstance(got, SecurityError) and got.kind == "\ufffdtampered" and "bad signature" in str(got)
        assert pool.live == 1 and not pool.node.counters
