"""The scheduler trace of a twin run (hw/schedtrace.py): parsing the kernel's events, and recording them for real."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time

import pytest

from hw import schedtrace
from sim.contract import MachineLoad


def sw(cpu: int, t: float, prev: int, state: str, nxt: int) -> str:
    return (f"  x-1 [{cpu:03d}] d..2. {t:.6f}: sched_switch: prev_comm=x prev_pid={prev} prev_prio=120 "
            f"prev_state={state} ==> next_comm=x next_pid={nxt} next_prio=120\n")  # fmt: skip


def wake(cpu: int, t: float, pid: int) -> str:
    return f"  x-1 [{cpu:03d}] d..2. {t:.6f}: sched_wakeup: comm=x pid={pid} prio=120 target_cpu={cpu:03d}\n"


def waking(cpu: int, t: float, pid: int) -> str:
    """A ``sched_waking`` traced on ``cpu`` (the waker's)."""
    return f"  x-1 [{cpu:03d}] d..2. {t:.6f}: sched_waking: comm=x pid={pid} prio=120 target_cpu=001\n"


def woke(cpu: int, t: float, pid: int, target: int) -> str:
    """A ``sched_wakeup`` traced on ``cpu`` that queued ``pid`` on ``target``."""
    return f"  x-1 [{cpu:03d}] d..2. {t:.6f}: sched_wakeup: comm=x pid={pid} prio=120 target_cpu={target:03d}\n"


# two CPUs; node "a" (pid 100) forks thread 101; pid 300 belongs to no node
LINES = "".join([
    "  x-1 [000] d..2. 10.000000: sched_process_fork: comm=x pid=100 child_comm=x child_pid=101\n",
    sw(0, 10.1, 0, "R", 100), sw(1, 10.1, 0, "R", 300), wake(0, 10.2, 101), sw(1, 10.25, 300, "S", 0),
    sw(0, 10.4, 100, "R", 101), sw(1, 10.45, 0, "R", 100), wake(0, 10.5, 300), wake(0, 10.6, 100),
    sw(0, 10.7, 101, "S", 300),
])  # fmt: skip


def test_waits_count_runnable_time_and_the_part_while_a_core_idled():
    """Thread 101 (node a's, by its fork) is woken at 10.2 and runs at 10.4: 0.2 s, of which 10.25-10.4 with CPU 1
    idle; pid 100, preempted at 10.4, runs again at 10.45 on the idle CPU: 0.05 s, all of it while CPU 1 idled.
    Pid 300 is no node's; a wakeup of a thread that is running (100 at 10.6) is no wait."""
    w = schedtrace.waits(LINES, {"a": 100}, (10.0, 11.0))
    assert w is not None
    assert w.runnable_wait_s == pytest.approx(0.25) and w.by_node_wait_s == {"a": pytest.approx(0.25)}
    assert w.idle_core_wait_s == pytest.approx(0.15 + 0.05)
    # by how each wait began: 101's after a wake-up, 100's after a preemption
    assert w.by_cause_wait_s == {"woken": pytest.approx(0.2), "preempted": pytest.approx(0.05)}
    assert w.by_cause_idle_core_wait_s == {"woken": pytest.approx(0.15), "preempted": pytest.approx(0.05)}
    # node a ran: 100 on CPU 0 10.1-10.4 and on CPU 1 from 10.45 (to the window's end), 101 on CPU 0 10.4-10.7
    assert w.by_node_cpu_s == {"a": pytest.approx(0.3 + 0.55 + 0.3)}
    clipped = schedtrace.waits(LINES, {"a": 100}, (10.3, 10.42))  # only what lies in the rounds' window
    assert clipped is not None and clipped.runnable_wait_s == pytest.approx(0.1 + 0.02)
    assert schedtrace.waits(LINES, {"a": 100}, (9.0, 11.0)) is None  # the trace starts after the window


def test_a_wakeup_on_an_idle_cpu_whose_switch_in_was_not_traced_ran_from_the_wakeup():
    """The kernel sometimes traces no switch from idle to the task it woke there: the task switching out itself
    shows it ran from its wakeup, so the cpu was idle only until then, and the wakeup was no wait."""
    text = "".join([
        "  x-1 [000] d..2. 10.000000: sched_process_fork: comm=x pid=100 child_comm=x child_pid=101\n",
        sw(0, 10.1, 0, "R", 100), sw(1, 10.1, 0, "R", 0),  # cpu 1 idle from 10.1
        wake(1, 10.3, 101), sw(1, 10.5, 101, "S", 0),  # 101 woken on idle cpu 1 at 10.3, seen leaving at 10.5
        wake(0, 10.6, 101), sw(0, 10.7, 100, "R", 101),  # woken while 100 runs: waits 0.1 beside idle cpu 1
    ])  # fmt: skip
    w = schedtrace.waits(text, {"a": 100}, (10.0, 11.0))
    assert w is not None
    assert w.runnable_wait_s == pytest.approx(0.1 + 0.3)  # 101 at 10.6-10.7; 100 preempted at 10.7 (to 11.0)
    assert w.idle_core_wait_s == pytest.approx(0.1 + 0.3)  # cpu 1 idle 10.1-10.3 and from 10.5
    assert w.by_cause_idle_core_wait_s == {"woken": pytest.approx(0.1), "preempted": pytest.approx(0.3)}
    assert w.by_node_cpu_s == {"a": pytest.approx(0.6 + 0.2 + 0.3)}  # 100 10.1-10.7, 101 10.3-10.5, 10.7-11.0


def test_a_machine_load_says_what_the_scheduler_made_the_twin_wait():
    waited = schedtrace.SchedWaits(window_s=2.0, runnable_wait_s=1.0, idle_core_wait_s=0.4)
    load = MachineLoad(cores=2, loadavg_1m_start=0.1, loadavg_1m_end=0.1, twin_cpu_cores=1.0, foreign_cpu_cores=0.0,
                       steal_fraction=0.0, quiet=True, sched=waited)  # fmt: skip
    assert "waited for a core 0.50 s per s of rounds, 0.20 s while a core was idle (scheduler" in load.describe()
    waited.by_cause_idle_core_wait_s = {"woken": 0.1, "preempted": 0.3}  # a run that recorded the split says it
    assert "0.20 s while a core was idle (0.05 after a wake-up, 0.15 after a preemption)" in load.describe()


REAL = """\
  <idle>-0       [001] dNh2. 20.000000: sched_wakeup: comm=my worker [w=2]-x pid=7 prio=120 target_cpu=001
  <idle>-0       [001] d..2. 20.000010: sched_switch: prev_comm=swapper/1 prev_pid=0 prev_prio=120 prev_state=R \
==> next_comm=my worker [w=2]-x next_pid=7 next_prio=120
 my worker [w=2]-x-7     [001] d..2. 20.500000: sched_switch: prev_comm=my worker [w=2]-x prev_pid=7 prev_prio=120 \
prev_state=R+ ==> next_comm=swapper/1 next_pid=0 next_prio=120
"""


def test_real_lines_parse_whatever_the_task_is_called():
    """tracefs lines as the kernel prints them; a comm may hold spaces, dashes, brackets and '='."""
    w = schedtrace.waits(REAL, {"n": 7}, (20.0, 21.0))  # (the backslashes join each event's line)
    assert w is not None and w.by_node_cpu_s == {"n": pytest.approx(0.49999)}
    assert w.runnable_wait_s == pytest.approx(0.5 + 0.00001)  # its wake-up, and preempted (R+) to the end
    assert w.idle_core_wait_s == 0.0  # only its own cpu idled: its wake-up, not a placement


def test_events_of_one_instant_keep_the_kernels_order():
    """Two switches in the same microsecond on one cpu, 100 out then 101 in: replayed in the file's order the
    cpu never idles, and 101 runs 0.3 s."""
    text = sw(0, 10.0, 0, "R", 100) + sw(0, 10.2, 100, "S", 0) + sw(0, 10.2, 0, "R", 101) + sw(0, 10.5, 101, "S", 0)
    w = schedtrace.waits(text, {"a": 100, "b": 101}, (10.0, 11.0))
    assert w is not None and w.by_node_cpu_s == {"a": pytest.approx(0.2), "b": pytest.approx(0.3)}


def test_only_cores_a_node_may_run_on_count_as_idle_beside_it():
    w = schedtrace.waits(LINES, {"a": 100}, (10.0, 11.0), allowed={"a": {0}})
    assert w is not None and w.idle_core_wait_s == 0.0 and w.runnable_wait_s == pytest.approx(0.25)


def test_a_buffer_that_lost_events_gives_no_figures(tmp_path):
    stats = tmp_path / "stats"
    stats.write_text("entries: 12\noverrun: 0\ncommit overrun: 0\n")
    assert not schedtrace._overrun(stats)
    stats.write_text("entries: 12\noverrun: 3\ncommit overrun: 0\n")
    assert schedtrace._overrun(stats)


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


SPIN = "import os, time\nos.sched_setaffinity(0, {%d})\nend = time.monotonic() + %f\nwhile time.monotonic() < end: pass"


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs Linux CPU affinity")
def test_the_kernel_trace_sees_three_spinners_share_one_cpu():
    """Real tracefs (root): three processes spinning on one CPU take turns, so about two of them wait at any
    time; an instance left by a killed run is removed, and so is this one."""
    orphan = schedtrace.TRACEFS / "instances" / f"{schedtrace.PREFIX}{dead_pid()}-test"
    with contextlib.suppress(OSError):
        orphan.mkdir()
    trace = schedtrace.SchedTrace.start()
    if trace is None:
        pytest.skip("no scheduler trace here (not root, or no tracefs)")
    try:
        assert not orphan.exists()
        cpu = min(os.sched_getaffinity(0))
        t0 = time.monotonic()
        procs = [subprocess.Popen([sys.executable, "-c", SPIN % (cpu, 0.6)]) for _ in range(3)]
        for p in procs:
            p.wait()
        t1 = time.monotonic()
    finally:
        text = trace.stop()
    assert not trace.root.exists() and text is not None
    w = schedtrace.waits(text, {f"spin{i}": p.pid for i, p in enumerate(procs)}, (t0 + 0.2, t1 - 0.1))
    assert w is not None and set(w.by_node_wait_s) == {"spin0", "spin1", "spin2"}
    # ~2 of 3 waiting; at most all 3 (another process on this cpu, e.g. the suite's other worker, makes all wait)
    assert 0.8 < w.runnable_wait_s / w.window_s <= 3.0
    assert sum(w.by_node_cpu_s.values()) / w.window_s < 1.05  # they shared one cpu


def test_a_kept_trace_reads_back_as_the_run_measured_it(tmp_path):
    """A run keeps its trace gzipped with its rounds' window and nodes; read back, it gives the same waits. A file
    that is no kept trace says so."""
    path = tmp_path / "sched_trace.txt.gz"
    schedtrace.keep(LINES, (10.0, 11.0), {"a": 100}, path)
    text, window, nodes = schedtrace.read_kept(path)
    assert window == (10.0, 11.0) and nodes == {"a": 100, "runner": os.getpid()}
    assert schedtrace.waits(text, {"a": nodes["a"]}, window) == schedtrace.waits(LINES, {"a": 100}, (10.0, 11.0))
    other = tmp_path / "other.gz"
    import gzip

    with gzip.open(other, "wt") as f:
        f.write(LINES)
    with pytest.raises(ValueError, match="not a kept scheduler trace"):
        schedtrace.read_kept(other)


def test_a_trace_that_cannot_be_kept_leaves_no_half_file_and_the_run_its_results(tmp_path):
    """Keeping the trace is for a later analysis: where it cannot be written (a full disk; here a directory that
    is not there, or a read-only one) no partial file is left, and a run's machine load is still measured."""
    from hw.machine import LoadMonitor

    with pytest.raises(OSError):
        schedtrace.keep(LINES, (10.0, 11.0), {"a": 100}, tmp_path / "missing" / "t.gz")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):  # root writes anywhere: a full disk is what this stands for
            (ro / "t.gz.tmp").mkdir()  # the temporary name taken: the write fails the same way
        with pytest.raises(OSError):
            schedtrace.keep(LINES, (10.0, 11.0), {"a": 100}, ro / "t.gz")
        assert not (ro / "t.gz").exists()
        monitor = LoadMonitor().start()
        load = monitor.stop((time.monotonic() - 0.1, time.monotonic()), {"a": os.getpid()},
                            keep_trace=tmp_path / "missing" / "t.gz")  # fmt: skip
        assert load.cores >= 1 and not (tmp_path / "missing").exists()
    finally:
        ro.chmod(0o700)


def test_an_idle_core_beside_waiting_threads_is_told_by_what_came_next():
    """Three times CPU 0 goes idle while a thread waits on CPU 1: its own core runs it first (own), CPU 0 takes
    it 50 µs later (pulled, as a new-idle balance would), CPU 0 runs a thread woken onto it (other). A core
    going idle with nothing waiting, or outside the window, is no case; a thread preempted within HOT_S is hot."""
    text = "".join([
        sw(0, 1.000, 0, "R", 10), sw(1, 1.000, 0, "R", 11),
        wake(1, 1.001, 12), sw(0, 1.002, 10, "S", 0), sw(1, 1.003, 11, "S", 12),  # own, 1 ms on
        wake(0, 1.0095, 10), sw(0, 1.0096, 0, "R", 10), wake(1, 1.010, 15),
        sw(0, 1.011, 10, "S", 0), sw(0, 1.01105, 0, "R", 15),  # pulled after 50 us
        wake(1, 1.020, 16), sw(0, 1.021, 15, "S", 0), wake(0, 1.0215, 17), sw(0, 1.0216, 0, "R", 17),  # other
        sw(1, 1.025, 12, "R", 16), sw(0, 1.0251, 17, "S", 0), sw(0, 1.0255, 0, "R", 12),  # 12 preempted: hot
        sw(0, 1.030, 12, "S", 0), sw(0, 1.031, 0, "R", 12),  # idle with nothing waiting elsewhere
        sw(0, 1.049, 12, "S", 19), wake(1, 1.050, 18), sw(0, 1.051, 19, "S", 0),  # after the window
    ])  # fmt: skip
    got = schedtrace.idle_pulls(text, (1.0, 1.045))
    assert [(p.outcome, round(p.after_s * 1e6), p.hot) for p in got] == [
        ("own", 1000, False),
        ("pulled", 50, False),
        ("other", 600, False),
        ("pulled", 400, True),
    ]
    assert [p.at_s for p in got] == pytest.approx([1.002, 1.011, 1.021, 1.0251])


def test_wake_placements_count_where_a_woken_thread_was_queued():
    """Thread 20 last ran on CPU 1; woken by thread 10 on CPU 0 (``sched_waking`` traced there): while CPU 1 runs
    11 it is queued on CPU 0 (the waker's), then on CPU 1 (its own); with CPU 1 idle, on CPU 1 -- a wake-up Linux
    hands to that idle cpu, so its ``sched_wakeup`` is traced there. Woken on its own last cpu: stays. Not
    counted: a wake-up from an idle cpu (an interrupt's), of a thread still running, one outside the window, and
    a ``sched_wakeup`` without its ``sched_waking`` (older traces)."""

    text = "".join([
        sw(0, 1.0, 0, "R", 10), sw(1, 1.0, 0, "R", 20), sw(1, 1.1, 20, "S", 11),
        waking(0, 1.2, 20), woke(0, 1.2, 20, 0), sw(0, 1.25, 10, "R", 20), sw(0, 1.3, 20, "S", 10),  # to the waker's
        sw(1, 1.35, 0, "R", 20), sw(1, 1.36, 20, "S", 11),  # 20 runs on CPU 1 again
        waking(0, 1.4, 20), woke(0, 1.4, 20, 1), sw(1, 1.45, 11, "S", 20), sw(1, 1.5, 20, "S", 0),  # busy: its own
        waking(0, 1.6, 20), woke(1, 1.6001, 20, 1), sw(1, 1.61, 0, "R", 20),  # idle: its own, traced on CPU 1
        waking(0, 1.615, 20), sw(1, 1.62, 20, "S", 0),  # woken while still running: not counted
        waking(1, 1.7, 20), woke(1, 1.7, 20, 1),  # from idle CPU 1: an interrupt's
        sw(1, 1.71, 0, "R", 20), sw(1, 1.72, 20, "S", 11), waking(1, 1.8, 20), woke(1, 1.8, 20, 1),  # by 11, there
        woke(0, 1.9, 20, 0),  # no sched_waking
        waking(0, 2.5, 20), woke(0, 2.5, 20, 0),  # after the window
    ])  # fmt: skip
    got = schedtrace.wake_placements(text, (1.0, 2.0))
    assert got == {("other cpu, busy", "waker's"): 1, ("other cpu, busy", "its own"): 1,
                   ("other cpu, idle", "its own"): 1, ("waker's cpu", "its own"): 1}  # fmt: skip


def fork(t: float, parent: int, child: int) -> str:
    return f"  x-1 [000] d..2. {t:.6f}: sched_process_fork: comm=x pid={parent} child_comm=x child_pid={child}\n"


def test_handed_on_counts_where_the_second_job_thread_of_a_round_was_queued():
    """Node "aggregator" (main thread 100, job threads 101 and 102; 300 another process's). Round at 1.0: main on CPU 0
    wakes 101 (last on CPU 1, idle), which runs and wakes 102 (last on CPU 0) onto CPU 1, its own: counted (other
    cpu, waker's). Round at 2.0: main wakes 102 onto CPU 1; 102 wakes 101 (last on CPU 1) there: (waker's cpu,
    waker's); a later wake by 102 in the same round is not counted. Round at 3.0: 101, woken by main, wakes 102,
    which stays on CPU 0: (other cpu, elsewhere). Not counted: a wake after ``within_s``, one by another process's
    thread, and a wake by the first job thread of a thread it was not handed (none in the round: no start)."""
    text = "".join([
        fork(0.1, 100, 101), fork(0.1, 100, 102),
        sw(0, 0.5, 0, "R", 102), sw(0, 0.6, 102, "S", 0), sw(1, 0.5, 0, "R", 101), sw(1, 0.6, 101, "S", 0),
        sw(0, 0.9, 0, "R", 100),
        waking(0, 1.0001, 101), woke(1, 1.0001, 101, 1), sw(1, 1.0002, 0, "R", 101),
        waking(1, 1.0003, 102), woke(1, 1.0003, 102, 1), sw(0, 1.0004, 100, "S", 0),
        sw(1, 1.0005, 101, "S", 102), sw(1, 1.0009, 102, "S", 0),
        sw(0, 1.9, 0, "R", 100), waking(0, 2.0001, 102), woke(0, 2.0001, 102, 1), sw(1, 2.0002, 0, "R", 102),
        waking(1, 2.0003, 101), woke(1, 2.0003, 101, 1), sw(1, 2.0004, 102, "S", 101), sw(1, 2.0005, 101, "S", 102),
        waking(1, 2.0006, 101), woke(1, 2.0006, 101, 1),  # a second wake in the round: not counted
        sw(1, 2.0007, 102, "S", 0), sw(0, 2.0008, 100, "S", 0),
        sw(0, 2.9, 0, "R", 100), sw(1, 2.9, 0, "R", 300), waking(0, 3.0001, 101), woke(0, 3.0001, 101, 0),
        sw(0, 3.0002, 100, "S", 101), waking(0, 3.0003, 102), woke(0, 3.0003, 102, 1), sw(0, 3.0004, 101, "S", 0),
        sw(1, 3.0005, 300, "S", 102), sw(1, 3.0006, 102, "S", 0),
        sw(1, 3.9, 0, "R", 300), waking(1, 4.0001, 101), woke(1, 4.0001, 101, 1),  # by another process's thread
        sw(1, 4.001, 300, "S", 0), sw(0, 4.9, 0, "R", 100), waking(0, 5.01, 101), woke(0, 5.01, 101, 0),  # too late
    ])  # fmt: skip
    got = schedtrace.handed_on(text, {"aggregator": 100, "other": 300}, [1.0, 2.0, 3.0, 4.0, 5.0])
    assert got == {("other cpu", "waker's"): 1, ("waker's cpu", "waker's"): 1, ("other cpu", "elsewhere"): 1}


def test_preemptions_count_woken_threads_that_ran_at_once_and_slices_run_beside_a_waiting_one():
    """CPU 0 runs 10; 20, woken onto it, runs 50 µs later in 10's place (10 stays runnable): preempted at once.
    21, woken onto it while 10 runs, gets it 3.4 ms later: not at once (a slice's end), and 10 had run before
    21 waited, so no slice either. 21 then runs 3 ms while 10 waits all along: a slice of 3 ms. Not counted: a
    wake-up onto an idle cpu, one after the window; with ``nodes``, the threads of other nodes."""
    text = "".join([
        sw(0, 1.0, 0, "R", 10), wake(0, 1.1, 20), sw(0, 1.10005, 10, "R", 20), sw(0, 1.2, 20, "S", 10),
        wake(0, 1.3, 21), sw(0, 1.3034, 10, "R", 21), sw(0, 1.3064, 21, "R", 10),
        wake(1, 1.4, 22),  # CPU 1 idle
        wake(0, 2.5, 23),  # after the window
    ])  # fmt: skip
    got = schedtrace.preemptions(text, (1.0, 2.0))
    assert (got.busy_wakeups, got.preempted) == (2, 1) and got.slices_s == pytest.approx([0.003])
    mine = schedtrace.preemptions(text, (1.0, 2.0), {"n": 21})
    assert (mine.busy_wakeups, mine.preempted) == (1, 0) and mine.slices_s == pytest.approx([0.003])


def test_a_woken_thread_that_ran_elsewhere_or_after_a_sleep_preempted_nothing_and_a_move_is_no_slice():
    """20, woken onto busy CPU 0, runs on CPU 1 at once: not a preemption. 21, woken onto CPU 0, runs there once 10
    sleeps: not one either. 22 waits on CPU 1 from before 11 ran there, then runs on CPU 0 in 10's place: 10 made
    way for a thread that waited elsewhere, no slice; 11 did not make way."""
    text = "".join([
        sw(0, 1.0, 0, "R", 10), sw(1, 1.0, 0, "R", 11), sw(1, 1.05, 11, "S", 0),
        wake(0, 1.1, 20), sw(1, 1.10002, 0, "R", 20), sw(1, 1.2, 20, "S", 11),  # ran on CPU 1
        wake(0, 1.3, 21), sw(0, 1.30001, 10, "S", 21), sw(0, 1.31, 21, "S", 10),  # 10 slept first
        woke(1, 1.4, 22, 1), sw(0, 1.5, 10, "R", 22),  # waited on CPU 1, moved to CPU 0
    ])  # fmt: skip
    got = schedtrace.preemptions(text, (1.0, 2.0))
    assert (got.busy_wakeups, got.preempted, got.slices_s) == (3, 0, ())


def test_preemptions_of_a_trace_that_starts_mid_stream():
    """A trace whose first switch on a cpu is a preemption (the buffer began mid-run): nothing to count, no error."""
    got = schedtrace.preemptions(wake(0, 1.0, 20) + sw(0, 1.1, 10, "R", 20), (0.0, 2.0))
    assert (got.busy_wakeups, got.preempted, got.slices_s) == (0, 0, ())


def test_sibling_waits_say_whether_two_workers_ran_side_by_side_or_one_behind_the_other():
    """Workers 30 and 31 (two nodes named worker-*; 40 is not one): side by side on CPUs 0 and 1 for 0.1 s; then 31
    queued on CPU 0 behind 30 while CPU 1 idles for 0.05 s and while 40 runs there for 0.05 s; 30 behind 40 is no
    sibling's wait. Outside the window nothing counts."""
    nodes = {"worker-1.1": 30, "worker-1.2": 31, "client-1": 40}
    text = "".join([
        sw(0, 1.0, 0, "R", 30), sw(1, 1.0, 0, "R", 31),  # side by side
        sw(1, 1.1, 31, "S", 0), woke(0, 1.1, 31, 0),  # 31 sleeps, then is queued on CPU 0 behind 30, CPU 1 idle
        sw(1, 1.15, 0, "R", 40),  # CPU 1 busy with 40 from now
        sw(0, 1.2, 30, "S", 31),  # 31 runs
        sw(0, 1.3, 31, "S", 0), woke(1, 1.3, 30, 1),  # 30 queued behind 40 (not a sibling)
        sw(1, 1.4, 40, "S", 30), sw(1, 1.5, 30, "S", 0),
    ])  # fmt: skip
    got = schedtrace.sibling_waits(text, (1.0, 1.45), nodes, "worker")
    assert got.together_s == pytest.approx(0.1)
    assert got.behind_idle_s == pytest.approx(0.05) and got.behind_busy_s == pytest.approx(0.05)
    assert schedtrace.sibling_waits(text, (2.0, 3.0), nodes, "worker") == schedtrace.SiblingWaits(0.0, 0.0, 0.0)
