"""The dispatch publishes through the broker; on the embedded broker the first publishes of
processes that start at once race to create the queue's row, and none of them may fail for it
(the known flake of a first `erasure submit` beside a starting worker)."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from kombu import Connection

from tests.helpers import stub, write_config

PROCESSES = 4
TRIALS = 6  # without the fix about one trial in five lost a publish: six make a miss unlikely


def publish_first(config: Path, request_id: str, barrier: multiprocessing.synchronize.Barrier) -> None:
    """In a process of its own: the dispatch a `erasure submit` builds, publishing its first message."""
    from worker.config import load
    from worker.queue.dispatch import CeleryDispatch

    dispatch = CeleryDispatch(load(config))
    barrier.wait(timeout=60)  # a process that failed before it breaks the barrier, never hangs the rest
    dispatch.start(request_id)


def test_processes_publishing_first_at_once_all_succeed(tmp_path: Path) -> None:
    """Four processes publishing their first message to a new embedded broker at the same moment all
    succeed, trial after trial, and every message is on the intake queue."""
    spawn = multiprocessing.get_context("spawn")
    for trial in range(TRIALS):
        folder = tmp_path / f"trial-{trial}"
        folder.mkdir()
        config = write_config(folder, stub("vault"))
        barrier = spawn.Barrier(PROCESSES)
        workers = [spawn.Process(target=publish_first, args=(config, f"r{n}", barrier)) for n in range(PROCESSES)]
        for process in workers:
            process.start()
        for process in workers:
            process.join(90)
        for process in workers:
            if process.is_alive():
                process.kill()
        assert [p.exitcode for p in workers] == [0] * PROCESSES, f"trial {trial}"
        with Connection(f"sqla+sqlite:///{folder}/queue.db") as conn:
            queue = conn.SimpleQueue("erasure.intake")
            assert queue.qsize() == PROCESSES
            queue.close()
