"""The GIL is released while stepping, simulations step on threads at once,
Ctrl-C stops a long step(...) after a whole step, and memory stays flat."""

import os
import signal
import threading
import time

import numpy as np

import atheria_native as an
from conftest import rss_bytes


def _timed_steps(sim, n):
    t0 = time.perf_counter()
    sim.step(n)
    return time.perf_counter() - t0


def test_a_python_thread_runs_while_step_200_runs():
    sim = an.Simulation(grid=256, seed=1, threads=1)
    sim.step(2)  # warm up
    ticks = []
    stop = threading.Event()

    def count():
        while not stop.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)

    t = threading.Thread(target=count)
    t.start()
    time.sleep(0.05)
    start = time.perf_counter()
    sim.step(200)
    end = time.perf_counter()
    stop.set()
    t.join()
    during = [x for x in ticks if start <= x <= end]
    took = end - start
    assert took > 0.2, f"step(200) took {took:.3f} s: too short to tell"
    # With the GIL held the counter would stop for the whole call (or, held
    # but for step's signal checks every 50 ms, tick once or twice per 50
    # ms); released, it ticks about every millisecond. Allow a loaded
    # machine a fifth of that.
    gaps = np.diff([start, *during, end])
    assert len(during) >= 5 * took / 0.05, f"{len(during)} ticks in {took:.2f} s"
    assert gaps.max() < took / 3, f"the counter stalled {gaps.max():.3f} s of {took:.3f} s"
    assert sim.step_count == 202


def test_two_simulations_step_on_two_threads_at_once():
    def make():
        return an.Simulation(grid=192, seed=4, gamma=0.01, threads=1)

    sims = [make(), make()]
    windows = [None, None]

    def run(i):
        t0 = time.perf_counter()
        sims[i].step(300)
        windows[i] = (t0, time.perf_counter())

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    (a0, a1), (b0, b1) = windows
    overlap = min(a1, b1) - max(a0, b0)
    assert overlap > 0.5 * min(a1 - a0, b1 - b0), f"the runs did not overlap: {windows}"

    # Each equals the same run stepped alone.
    alone = make()
    alone.step(300)
    for s in sims:
        assert s.step_count == 300
        np.testing.assert_array_equal(s.psi, alone.psi)


def test_one_simulation_shared_by_threads_takes_turns():
    sim = an.Simulation(grid=32, seed=2, threads=1)
    errors = []

    def work():
        try:
            for _ in range(20):
                sim.step(2)
                assert sim.psi.shape == (32, 32, sim.d_state)
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sim.step_count == 3 * 20 * 2


def test_ctrl_c_stops_a_long_step_after_a_whole_step():
    sim = an.Simulation(grid=32, seed=6, gamma=0.01, threads=1)
    sent = []

    def interrupt():
        sent.append(time.perf_counter())
        os.kill(os.getpid(), signal.SIGINT)

    timer = threading.Timer(0.5, interrupt)
    timer.start()
    try:
        sim.step(10**6)
    except KeyboardInterrupt:
        stopped = time.perf_counter()
    else:
        raise AssertionError("step(10**6) finished: the interrupt was lost")
    finally:
        timer.cancel()
    assert stopped - sent[0] < 1.0, f"KeyboardInterrupt came {stopped - sent[0]:.2f} s after SIGINT"
    n = sim.step_count
    assert 0 < n < 10**6
    # The state is that of exactly n whole steps.
    again = an.Simulation(grid=32, seed=6, gamma=0.01, threads=1)
    again.step(n)
    np.testing.assert_array_equal(sim.psi, again.psi)
    # And the simulation goes on.
    assert sim.step(2) == n + 2


def test_memory_stays_flat_over_10000_steps_and_1000_psi_reads():
    sim = an.Simulation(grid=16, seed=1, threads=1)
    # Warm up: allocator pools, the backend's buffers, numpy's caches.
    sim.step(500)
    for _ in range(100):
        sim.psi
        sim.metrics()
        sim.field("density")
    before = rss_bytes()
    for _ in range(100):
        sim.step(100)
    for _ in range(1000):
        psi = sim.psi
        sim.metrics()
        sim.field("density")
    del psi
    after = rss_bytes()
    assert sim.step_count == 10_500
    # One psi of 16 x 16 x 4 complex64 is 8 KiB: 1000 leaked reads would be
    # 8 MB, 10,000 leaked steps far more.
    assert after - before < 4 * 2**20, f"resident memory grew {(after - before) / 2**20:.1f} MiB"
